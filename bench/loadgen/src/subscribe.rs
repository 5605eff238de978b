//! One shard of subscribers (a child process of `fanout`, so each stays under the per-process
//! open-file cap): opens the sockets, says `READY` on stdout, records every message's delay until
//! stdin says `DONE` and the stragglers' grace has passed, then prints one JSON result line.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::clock::now_us;
use crate::peer::Peer;

pub struct Shard {
    pub peer: Peer,
    pub urls: Vec<String>,
    pub sockets: usize,
    pub grace: Duration,
}

/// What one socket saw: (mutation id, delay µs) per message.
type Seen = Vec<(u64, u32)>;

pub async fn run(shard: Shard) -> Result<(), String> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(1024);
    // Bounded handshakes in flight: a burst of thousands overflows listen backlogs.
    let gate = Arc::new(Semaphore::new(256));
    let mut tasks = Vec::with_capacity(shard.sockets);
    for i in 0..shard.sockets {
        let url = shard.urls[i % shard.urls.len()].clone();
        let (peer, gate, ready, stop) =
            (shard.peer, gate.clone(), ready_tx.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            socket(peer, url, gate, ready, stop).await
        }));
    }
    drop(ready_tx);
    let (mut connected, mut failed) = (0usize, 0usize);
    while connected + failed < shard.sockets {
        match ready_rx.recv().await {
            Some(true) => connected += 1,
            Some(false) => failed += 1,
            None => break,
        }
    }
    say(&format!("READY {connected} {failed}"));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "DONE" {
            break;
        }
    }
    tokio::time::sleep(shard.grace).await;
    let _ = stop_tx.send(true);

    let mut delays: Vec<u32> = Vec::new();
    let mut last: HashMap<u64, u32> = HashMap::new();
    let mut per_socket: Vec<usize> = Vec::with_capacity(tasks.len());
    let mut duplicates = 0usize;
    for t in tasks {
        let seen = t.await.unwrap_or_default();
        let mut ids: Vec<u64> = seen.iter().map(|s| s.0).collect();
        ids.sort_unstable();
        let before = ids.len();
        ids.dedup();
        duplicates += before - ids.len();
        per_socket.push(ids.len());
        for (id, d) in seen {
            delays.push(d);
            let e = last.entry(id).or_insert(0);
            *e = (*e).max(d);
        }
    }
    let result = serde_json::json!({
        "connected": connected,
        "failed": failed,
        "duplicates": duplicates,
        "per_socket": per_socket,
        "delays": delays,
        "last": last.into_iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v))).collect::<serde_json::Map<_, _>>(),
    });
    say(&format!("RESULT {result}"));
    Ok(())
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn client_config() -> WebSocketConfig {
    // Small buffers: the load generator holds tens of thousands of sockets too, and tungstenite
    // zero-fills up to this much before every read, so a large one costs every message. (The
    // REST scenario's held socket, which gets a run of events per wake-up, is `held.rs`'s.)
    let mut cfg = WebSocketConfig::default();
    cfg.read_buffer_size = 512;
    cfg.write_buffer_size = 0;
    cfg
}

async fn socket(
    peer: Peer,
    url: String,
    gate: Arc<Semaphore>,
    ready: tokio::sync::mpsc::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::new();
    let permit = gate.acquire_owned().await;
    let Some(mut ws) = connect(&url).await else {
        let _ = ready.send(false).await;
        return seen;
    };
    if peer == Peer::Syncgate {
        let sub = r#"{"op":"subscribe","channel":"projects"}"#;
        if ws.send(Message::Text(sub.into())).await.is_err() {
            let _ = ready.send(false).await;
            return seen;
        }
    }
    // nchan and the floor confirm nothing: the open socket is subscribed. The others answer
    // `subscribed`.
    let mut ready = Some(ready);
    if matches!(peer, Peer::Nchan | Peer::Floor)
        && let Some(r) = ready.take()
    {
        let _ = r.send(true).await;
    }
    drop(permit);
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = stop.changed() => break,
        };
        let arrived = now_us();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(_)) => continue,
            _ => break,
        };
        if ready.is_some() && text.contains(r#""op":"subscribed""#) {
            if let Some(r) = ready.take() {
                let _ = r.send(true).await;
            }
            continue;
        }
        if let Some((id, t)) = stamp(&text) {
            seen.push((id, arrived.saturating_sub(t).min(u32::MAX as u64) as u32));
        }
    }
    if let Some(r) = ready.take() {
        let _ = r.send(false).await;
    }
    seen
}

async fn connect(url: &str) -> Option<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let authority = url.strip_prefix("ws://")?.split('/').next()?;
    let stream = TcpStream::connect(authority).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(client_config()))
        .await
        .ok()?;
    Some(ws)
}

/// The mutation's id and the upstream's answer time, wherever the peer put them (syncgate's event
/// `data`, or the raw answer body the others publish). A plain scan, not a JSON parse: the load
/// generator shares the box with the peer, so its own cost per message must stay tiny.
fn stamp(text: &str) -> Option<(u64, u64)> {
    Some((
        number_after(text, "\"id\":")?,
        number_after(text, "\"t\":")?,
    ))
}

/// The unsigned integer right after the last occurrence of `key` (the `data` object comes after the
/// envelope's own `id`, which is a string and so never matches as a number).
fn number_after(text: &str, key: &str) -> Option<u64> {
    text.rmatch_indices(key).find_map(|(at, _)| {
        let digits: &str = &text[at + key.len()..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        digits[..end].parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::stamp;

    #[test]
    fn finds_the_stamp_in_an_event_and_in_a_raw_answer() {
        let event = r#"{"type":"project_created","channel":"projects","seq":3,"id":"0192-ab","data":{"id":41,"t":1700000000123456},"ts":1}"#;
        assert_eq!(stamp(event), Some((41, 1700000000123456)));
        assert_eq!(stamp(r#"{"id":7,"name":"bench","t":99}"#), Some((7, 99)));
        assert_eq!(
            stamp(r#"{"op":"subscribed","channel":"projects","seq":0}"#),
            None
        );
    }
}
