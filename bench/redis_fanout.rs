//! Fan-out benchmark: the Redis broker across two replicas against the memory broker, same run.
//!
//! Starts real `syncgate` processes (release build, path in `--bin`), connects WebSocket
//! subscribers, publishes through `POST /publish` on one replica, and measures what subscribers
//! see: deliveries per second and the delay from the publish request to the frame arriving
//! (`data.t`, microseconds, same machine clock). Memory: one replica with every subscriber. Redis:
//! replicas A and B with half the subscribers each, publishing on A, so B's numbers are the
//! cross-replica path. Run it with `bench/redis-fanout.sh`; not part of `cargo test`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message;

struct Opts {
    bin: String,
    redis: String,
    subscribers: usize,
    events: usize,
    publishers: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        bin: "target/release/syncgate".into(),
        redis: "redis://127.0.0.1:6379".into(),
        subscribers: 100,
        events: 2000,
        publishers: 4,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let (k, v) = (pair[0].as_str(), pair.get(1).cloned().unwrap_or_default());
        match k {
            "--bin" => o.bin = v,
            "--redis" => o.redis = v,
            "--subscribers" => o.subscribers = v.parse().expect("--subscribers N"),
            "--events" => o.events = v.parse().expect("--events N"),
            "--publishers" => o.publishers = v.parse().expect("--publishers N"),
            _ => panic!("unknown option {k}; see bench/redis-fanout.sh"),
        }
    }
    o
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

struct Replica {
    child: Child,
    public: u16,
    admin: u16,
    config: std::path::PathBuf,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config);
    }
}

async fn start(bin: &str, broker: &str) -> Replica {
    let (public, admin, upstream) = (free_port(), free_port(), free_port());
    let config = std::env::temp_dir().join(format!(
        "syncgate-bench-{}-{public}.yaml",
        std::process::id()
    ));
    let yaml = format!(
        "listen: \"127.0.0.1:{public}\"\nadmin_listen: \"127.0.0.1:{admin}\"\n\
         upstream:\n  url: \"http://127.0.0.1:{upstream}\"\nlimits:\n  send_queue: 65536\n{broker}"
    );
    std::fs::write(&config, yaml).expect("config");
    let child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .env("SYNCGATE_PUBLISH_TOKEN", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e} (build it with --release)"));
    let r = Replica {
        child,
        public,
        admin,
        config,
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = get(&format!("http://127.0.0.1:{admin}/metrics")).await;
        if metrics.contains("syncgate_broker_up 1") {
            return r;
        }
        assert!(Instant::now() < deadline, "replica did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn get(url: &str) -> String {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let Ok(uri) = url.parse() else {
        return String::new();
    };
    match client.get(uri).await {
        Ok(resp) => resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// One subscriber: connects, subscribes, signals ready, then records each event's delay (µs).
async fn subscriber(
    port: u16,
    channel: String,
    events: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Vec<u64> {
    let url = format!("ws://127.0.0.1:{port}/api/ws");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("socket");
    let sub = format!("{{\"op\":\"subscribe\",\"channel\":\"{channel}\"}}");
    ws.send(Message::Text(sub.into())).await.expect("subscribe");
    let mut lat = Vec::with_capacity(events);
    let mut ready = Some(ready);
    while lat.len() < events {
        let msg = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
        if v["op"] == "subscribed" {
            if let Some(r) = ready.take() {
                let _ = r.send(()).await;
            }
            continue;
        }
        if let Some(t) = v["data"]["t"].as_u64() {
            lat.push(now_us().saturating_sub(t));
        }
    }
    lat
}

async fn publish_all(admin: u16, channel: &str, events: usize, publishers: usize) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let n = events / publishers + usize::from(p < events % publishers);
        let url = format!("http://127.0.0.1:{admin}/publish");
        let channel = channel.to_owned();
        tasks.push(tokio::spawn(async move {
            let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
            for _ in 0..n {
                let body = format!(
                    "{{\"channel\":\"{channel}\",\"type\":\"tick\",\"data\":{{\"t\":{}}}}}",
                    now_us()
                );
                let req = http::Request::post(&url)
                    .header("authorization", "Bearer bench")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .expect("request");
                let resp = client.request(req).await.expect("publish");
                assert_eq!(resp.status(), 202, "publish refused");
                let _ = resp.into_body().collect().await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    started.elapsed()
}

struct Figures {
    label: &'static str,
    publish: Duration,
    deliver: Duration,
    lat: Vec<u64>,
    expected: usize,
}

impl Figures {
    fn print(&mut self, events: usize) {
        self.lat.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.lat.is_empty() {
                return f64::NAN;
            }
            let i = ((self.lat.len() as f64 - 1.0) * p).round() as usize;
            self.lat[i] as f64 / 1000.0
        };
        println!(
            "| {:<28} | {:>8.0} | {:>10.0} | {:>7.2} | {:>7.2} | {:>7.2} | {:>8} |",
            self.label,
            events as f64 / self.publish.as_secs_f64(),
            self.lat.len() as f64 / self.deliver.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            pct(1.0),
            format!("{}/{}", self.lat.len(), self.expected),
        );
    }
}

/// Runs one scenario: `groups` are (replica public port, subscribers), publishing on `admin`.
async fn scenario(
    o: &Opts,
    channel: &str,
    admin: u16,
    groups: &[(u16, usize)],
) -> (Duration, Duration, Vec<Vec<u64>>) {
    let mut handles = Vec::new();
    let total: usize = groups.iter().map(|g| g.1).sum();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(total.max(1));
    for (port, n) in groups {
        let mut group = Vec::new();
        for _ in 0..*n {
            group.push(tokio::spawn(subscriber(
                *port,
                channel.to_owned(),
                o.events,
                ready_tx.clone(),
            )));
        }
        handles.push(group);
    }
    for _ in 0..total {
        ready_rx.recv().await.expect("subscribers ready");
    }
    let started = Instant::now();
    let publish = publish_all(admin, channel, o.events, o.publishers).await;
    let mut results = Vec::new();
    for group in handles {
        let mut lat = Vec::new();
        for h in group {
            lat.extend(h.await.expect("subscriber"));
        }
        results.push(lat);
    }
    (publish, started.elapsed(), results)
}

#[tokio::main]
async fn main() {
    let o = opts();
    let prefix = format!("syncgate-bench-{}:", std::process::id());
    let half = o.subscribers / 2;
    println!(
        "{} events, {} publishers (POST /publish), {} subscribers in total\n",
        o.events, o.publishers, o.subscribers
    );
    println!(
        "| broker / subscribers          | publish/s | deliveries/s | p50 ms | p99 ms | max ms | received |"
    );
    println!(
        "|------------------------------|----------:|-------------:|-------:|-------:|-------:|---------:|"
    );

    let memory = start(&o.bin, "broker:\n  kind: memory\n").await;
    let (publish, deliver, mut lat) = scenario(
        &o,
        "bench-memory",
        memory.admin,
        &[(memory.public, o.subscribers)],
    )
    .await;
    Figures {
        label: "memory, 1 replica",
        publish,
        deliver,
        lat: lat.remove(0),
        expected: o.events * o.subscribers,
    }
    .print(o.events);
    drop(memory);

    let broker = format!(
        "broker:\n  kind: redis\n  redis: {{ url: \"{}\", key_prefix: \"{prefix}\", stream_maxlen: 10000 }}\n",
        o.redis
    );
    let a = start(&o.bin, &broker).await;
    let b = start(&o.bin, &broker).await;
    let (publish, deliver, mut lat) = scenario(
        &o,
        "bench-redis",
        a.admin,
        &[(a.public, half), (b.public, o.subscribers - half)],
    )
    .await;
    let (on_a, on_b) = (lat.remove(0), lat.remove(0));
    let mut all = on_a.clone();
    all.extend(&on_b);
    for (label, lat, n) in [
        ("redis, A+B (all)", all, o.subscribers),
        ("redis, A (publishing replica)", on_a, half),
        ("redis, B (other replica)", on_b, o.subscribers - half),
    ] {
        Figures {
            label,
            publish,
            deliver,
            lat,
            expected: o.events * n,
        }
        .print(o.events);
    }
    drop((a, b));
    // Leave nothing behind in the shared Redis.
    if let Ok(mut conn) = redis::Client::open(o.redis.as_str()).and_then(|c| c.get_connection()) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}
