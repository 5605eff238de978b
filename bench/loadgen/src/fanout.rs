//! One fan-out run: subscriber shards in child processes, memory sampled at rest and with the
//! sockets idle, then K mutations paced apart, and one JSON line of figures.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::peer::Peer;
use crate::rss;
use crate::stats::percentile;

pub struct Run {
    pub peer: Peer,
    pub label: String,
    pub sub_urls: Vec<String>,
    pub sockets: usize,
    pub procs: usize,
    pub mutations: usize,
    pub interval: Duration,
    pub trigger_url: String,
    /// Where the answer is published; several (floor shards) each get it, concurrently.
    pub publish_urls: Vec<String>,
    pub rss_pids: Vec<u32>,
    pub settle: Duration,
    pub grace: Duration,
}

struct ShardProc {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub async fn run(r: Run) -> Result<serde_json::Value, String> {
    let rest_kib = rss::tree_kib(&r.rss_pids);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let procs = r.procs.max(1);
    let mut shards = Vec::new();
    for i in 0..procs {
        let n = r.sockets / procs + usize::from(i < r.sockets % procs);
        // Each shard connects to the next URL first, so several listeners share the load.
        let mut urls = r.sub_urls.clone();
        let turn = i % urls.len().max(1);
        urls.rotate_left(turn);
        let mut child = Command::new(&exe)
            .arg("subscribe")
            .arg("--peer")
            .arg(r.peer.name())
            .arg("--urls")
            .arg(urls.join(","))
            .arg("--sockets")
            .arg(n.to_string())
            .arg("--grace-ms")
            .arg(r.grace.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a subscriber shard: {e}"))?;
        let stdin = child.stdin.take().ok_or("shard stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("shard stdout")?).lines();
        shards.push(ShardProc {
            child,
            stdin,
            stdout,
        });
    }
    let opening = Instant::now();
    let (mut connected, mut failed) = (0usize, 0usize);
    for s in &mut shards {
        let line = next_line(s, "READY").await?;
        let mut it = line.split_whitespace().skip(1);
        connected += it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        failed += it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    }
    let open_secs = opening.elapsed().as_secs_f64();
    tokio::time::sleep(r.settle).await;
    let idle_kib = rss::tree_kib(&r.rss_pids);

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    // The shards' own work is measured too: they read every delivery on the same cores, so what
    // they spend per message bounds from below how fast any peer can reach N sockets here.
    let shard_pids: Vec<u32> = shards.iter().filter_map(|s| s.child.id()).collect();
    let client_before = rss::tree_cpu_ticks(&shard_pids);
    let cpu_before = rss::tree_cpu_ticks(&r.rss_pids);
    let mut round_trips = Vec::with_capacity(r.mutations);
    let mut errors = 0usize;
    for _ in 0..r.mutations {
        let started = Instant::now();
        match mutate(&client, &r).await {
            Ok(()) => round_trips.push(started.elapsed().as_micros() as u32),
            Err(e) => {
                errors += 1;
                eprintln!("mutation failed: {e}");
            }
        }
        tokio::time::sleep(r.interval).await;
    }

    let mut delays: Vec<u32> = Vec::new();
    let mut last: HashMap<String, u32> = HashMap::new();
    let mut received = 0usize;
    let mut duplicates = 0usize;
    let mut short = 0usize;
    let sent = r.mutations - errors;
    // Read before `DONE`: a shard exits once it has reported. The pause after the last mutation
    // (`interval`) has let its deliveries in.
    let client_ticks = rss::tree_cpu_ticks(&shard_pids).saturating_sub(client_before);
    for s in &mut shards {
        let _ = s.stdin.write_all(b"DONE\n").await;
        let _ = s.stdin.flush().await;
    }
    for mut s in shards {
        let line = next_line(&mut s, "RESULT").await?;
        let v: serde_json::Value = serde_json::from_str(line.trim_start_matches("RESULT "))
            .map_err(|e| format!("bad shard result: {e}"))?;
        duplicates += v["duplicates"].as_u64().unwrap_or(0) as usize;
        for n in v["per_socket"].as_array().into_iter().flatten() {
            let n = n.as_u64().unwrap_or(0) as usize;
            received += n;
            short += usize::from(n < sent);
        }
        for d in v["delays"].as_array().into_iter().flatten() {
            delays.push(d.as_u64().unwrap_or(0) as u32);
        }
        for (id, d) in v["last"].as_object().into_iter().flatten() {
            let d = d.as_u64().unwrap_or(0) as u32;
            let e = last.entry(id.clone()).or_insert(0);
            *e = (*e).max(d);
        }
        let _ = s.child.wait().await;
    }
    // After the stragglers' grace: every delivery's work is in, and idle time adds nothing.
    let cpu_ticks = rss::tree_cpu_ticks(&r.rss_pids).saturating_sub(cpu_before);
    delays.sort_unstable();
    let mut lasts: Vec<u32> = last.into_values().collect();
    lasts.sort_unstable();
    round_trips.sort_unstable();
    let expected = sent * connected;
    let per_socket_bytes = if connected > 0 {
        (idle_kib.saturating_sub(rest_kib) * 1024) as f64 / connected as f64
    } else {
        0.0
    };
    Ok(serde_json::json!({
        "peer": r.peer.name(),
        "label": r.label,
        "sockets": r.sockets,
        "procs": procs,
        "connected": connected,
        "failed": failed,
        "open_secs": open_secs,
        "mutations": sent,
        "mutation_errors": errors,
        "expected": expected,
        "received": received,
        "lost": expected.saturating_sub(received),
        "sockets_missing_some": short,
        "duplicates": duplicates,
        "delay_ms": {
            "p50": percentile(&delays, 0.5),
            "p99": percentile(&delays, 0.99),
            "max": percentile(&delays, 1.0),
        },
        "last_socket_ms": {
            "p50": percentile(&lasts, 0.5),
            "p99": percentile(&lasts, 0.99),
            "max": percentile(&lasts, 1.0),
        },
        "mutation_round_trip_ms": {
            "p50": percentile(&round_trips, 0.5),
            "p99": percentile(&round_trips, 0.99),
        },
        "rss_rest_kib": rest_kib,
        "rss_idle_kib": idle_kib,
        "rss_per_socket_bytes": per_socket_bytes,
        "cpu_us_per_delivery": per_delivery_us(cpu_ticks, received),
        "client_cpu_us_per_delivery": per_delivery_us(client_ticks, received),
    }))
}

/// Ticks are 10 ms: meaningful over many deliveries, not a handful.
fn per_delivery_us(ticks: u64, received: usize) -> f64 {
    if received > 0 {
        (ticks * 10_000) as f64 / received as f64
    } else {
        0.0
    }
}

async fn next_line(s: &mut ShardProc, want: &str) -> Result<String, String> {
    loop {
        match s.stdout.next_line().await {
            Ok(Some(line)) if line.starts_with(want) => return Ok(line),
            Ok(Some(_)) => continue,
            Ok(None) => return Err(format!("a subscriber shard exited before {want}")),
            Err(e) => return Err(format!("reading a subscriber shard: {e}")),
        }
    }
}

/// One mutation: through the peer (syncgate) or to the upstream then published (the others).
async fn mutate(client: &HttpClient, r: &Run) -> Result<(), String> {
    let answer = post(
        client,
        &r.trigger_url,
        Bytes::from_static(br#"{"name":"bench"}"#),
    )
    .await?;
    if r.publish_urls.is_empty() {
        return Ok(());
    }
    let body = match r.peer {
        Peer::Pushpin => {
            let content = String::from_utf8_lossy(&answer).into_owned();
            Bytes::from(
                serde_json::json!({"items": [{"channel": "bench", "formats": {"ws-message": {"content": content}}}]})
                    .to_string(),
            )
        }
        _ => answer,
    };
    let posts = r
        .publish_urls
        .iter()
        .map(|url| post(client, url, body.clone()));
    for outcome in futures_util::future::join_all(posts).await {
        outcome?;
    }
    Ok(())
}

async fn post(client: &HttpClient, url: &str, body: Bytes) -> Result<Bytes, String> {
    let req = http::Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "{url}: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(body)
}
