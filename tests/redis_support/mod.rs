//! Shared pieces of the Redis tests: the shared Redis on 127.0.0.1:6379, a private key prefix per
//! test (deleted on drop), a private `redis-server` that a test may kill, and a broker "replica".
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use syncgate::broker::{Broker, RedisBroker};
use syncgate::config::{HistoryConfig, RedisConfig};

pub const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

/// A key prefix no other test (or parallel run) uses; its keys are deleted when this drops.
pub struct Prefix {
    pub prefix: String,
    pub url: String,
}

impl Prefix {
    pub fn new(url: &str) -> Prefix {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Prefix {
            prefix: format!("syncgate-test-{}-{n}-{nanos}:", std::process::id()),
            url: url.to_owned(),
        }
    }

    pub fn shared() -> Prefix {
        Prefix::new(SHARED_REDIS)
    }

    pub fn config(&self, stream_maxlen: u64) -> RedisConfig {
        RedisConfig {
            url: self.url.clone(),
            key_prefix: self.prefix.clone(),
            stream_maxlen,
        }
    }

    /// Runs a command against this prefix's Redis (blocking client; tests only).
    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .unwrap_or_else(|e| {
                panic!(
                    "no Redis at {}: {e} (scripts/test-all.sh starts one)",
                    self.url
                )
            })
    }

    pub fn keys(&self) -> Vec<String> {
        let mut conn = match redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        {
            Ok(c) => c,
            Err(_) => return Vec::new(),
        };
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        if let Ok(mut conn) = redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(1)))
        {
            let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

pub fn history() -> HistoryConfig {
    HistoryConfig {
        size: 1000,
        ttl: Duration::from_secs(600),
    }
}

/// A broker as one replica would run it, once it reports up.
pub async fn replica(cfg: &RedisConfig) -> Arc<RedisBroker> {
    let broker = RedisBroker::new(cfg, history()).expect("valid redis config");
    wait_until("the broker to connect", || broker.is_up()).await;
    broker
}

/// Polls `cond` until it holds, failing after 10 s.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports that were free a moment ago (all are held until all are chosen, so none
/// repeats). Another process may still take one before it is used: starters retry on that.
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local_addr").port())
}

/// A `redis-server` of this test's own, without persistence, killed on drop.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        const ATTEMPTS: usize = 5;
        for _ in 0..ATTEMPTS {
            let mut redis = PrivateRedis {
                port: free_port(),
                child: None,
            };
            if redis.try_start() {
                return redis;
            }
        }
        panic!("redis-server found its port taken {ATTEMPTS} times in a row");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty: what a Redis without persistence looks like.
    pub fn restart(&mut self) {
        assert!(
            self.try_start(),
            "redis-server could not listen on port {} (taken by another process)",
            self.port
        );
    }

    /// Starts redis-server on `self.port`; false if it exited at once (the port was taken).
    fn try_start(&mut self) -> bool {
        let mut child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test-all.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(5);
        // Whatever answers must be this redis-server: another test's may hold the port.
        loop {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            match redis_pid(self.port) {
                Some(pid) if pid == child.id() => break,
                Some(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                None => {}
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        true
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The process id of the Redis answering on `port`, from `INFO server`.
fn redis_pid(port: u16) -> Option<u32> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"INFO server\r\n").ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got);
        if let Some(at) = text.find("process_id:") {
            let rest = &text[at + "process_id:".len()..];
            if let Some(end) = rest.find("\r\n") {
                return rest[..end].parse().ok();
            }
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `syncgate` binary with the Redis broker, its config in a temp file; killed on drop, its
/// stderr (kept in a temp file) printed when the test fails.
pub struct Replica {
    pub name: &'static str,
    child: Option<Child>,
    pub public: u16,
    pub admin: u16,
    pub config: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Replica {
    /// Starts the binary and waits until `/readyz` answers 200 (upstream and Redis reachable).
    pub async fn start(
        name: &'static str,
        upstream: std::net::SocketAddr,
        extra_yaml: &str,
    ) -> Replica {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let [public, admin] = free_ports::<2>();
            let mut replica = Replica::spawn(name, public, admin, upstream, extra_yaml);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Some(Ok(Some(exit))) = replica.child.as_mut().map(Child::try_wait) {
                    let log = replica.log();
                    if log.contains("cannot listen") && attempt < ATTEMPTS {
                        break; // a port was taken in between: new ports, new process
                    }
                    panic!("{name} exited at start ({exit}):\n{log}");
                }
                // Ready, and listening itself (not some other process on a reused port).
                if replica.log().contains("syncgate listening")
                    && status(&replica.admin_url("/readyz")).await == Some(200)
                {
                    return replica;
                }
                assert!(
                    Instant::now() < deadline,
                    "{name} not ready within 15 s:\n{}",
                    replica.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("the last attempt panics or returns")
    }

    fn spawn(
        name: &'static str,
        public: u16,
        admin: u16,
        upstream: std::net::SocketAddr,
        extra_yaml: &str,
    ) -> Replica {
        let dir = std::env::temp_dir();
        let tag = format!("syncgate-redis-{}-{name}-{public}", std::process::id());
        let config = dir.join(format!("{tag}.yaml"));
        let log = dir.join(format!("{tag}.log"));
        std::fs::write(&config, replica_yaml(public, admin, upstream, extra_yaml))
            .expect("config file");
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_syncgate"))
            .arg("--config")
            .arg(&config)
            .env_remove("SYNCGATE_CONFIG")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start syncgate");
        Replica {
            name,
            child: Some(child),
            public,
            admin,
            config,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.public)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.public)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// SIGKILL: the replica vanishes without a goodbye, as in a node failure.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {} failed", self.pid());
    }

    /// Waits for the process to end by itself.
    pub async fn wait_exit(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{} never logged {needle:?}:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- {} log -----\n{}----- end -----",
                self.name,
                self.log()
            );
        }
        let _ = std::fs::remove_file(&self.config);
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn replica_yaml(
    public: u16,
    admin: u16,
    upstream: std::net::SocketAddr,
    extra_yaml: &str,
) -> String {
    format!(
        "listen: \"127.0.0.1:{public}\"\nadmin_listen: \"127.0.0.1:{admin}\"\n\
         upstream:\n  url: \"http://{upstream}\"\n{extra_yaml}"
    )
}

/// The broker section for a prefix.
pub fn broker_yaml(p: &Prefix, stream_maxlen: u64) -> String {
    format!(
        "broker:\n  kind: redis\n  redis: {{ url: \"{}\", key_prefix: \"{}\", stream_maxlen: {stream_maxlen} }}\n",
        p.url, p.prefix
    )
}

/// One GET's status code, or `None` when nothing answers.
pub async fn status(url: &str) -> Option<u16> {
    get_text(url).await.map(|(s, _)| s)
}

/// One GET: status and body, or `None` when nothing answers within 2 s.
pub async fn get_text(url: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let uri = url.parse().ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(2), client.get(uri))
        .await
        .ok()?
        .ok()?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}
