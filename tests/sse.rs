//! Server-Sent Events on `sse.path`: position ids, resume with `Last-Event-ID`, access checks and shutdown.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// One open event stream, read frame by frame (the body never ends on its own).
struct Sse {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Incoming,
    buf: BytesMut,
}

/// One SSE block: its `field: value` lines in order (`:` comments have an empty field name).
#[derive(Debug)]
struct Block(Vec<(String, String)>);

impl Block {
    fn field(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn data(&self) -> Value {
        let data = self
            .field("data")
            .unwrap_or_else(|| panic!("no data line in {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}"))
    }

    fn is_comment(&self) -> bool {
        self.0.iter().all(|(k, _)| k.is_empty())
    }
}

fn parse_block(text: &str) -> Block {
    let lines = text.lines().map(|line| match line.split_once(':') {
        Some((field, value)) => (
            field.to_owned(),
            value.strip_prefix(' ').unwrap_or(value).to_owned(),
        ),
        None => (line.to_owned(), String::new()),
    });
    Block(lines.collect())
}

/// Opens `GET path` on the public listener with a plain HTTP/1 connection of its own.
async fn open(h: &Harness, path: &str, headers: &[(&str, &str)]) -> Sse {
    let addr = h.sidecar.public_addr;
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header("host", addr.to_string())
        .header("accept", "text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("response head timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    Sse {
        status: parts.status,
        headers: parts.headers,
        body,
        buf: BytesMut::new(),
    }
}

impl Sse {
    /// The next block, comments (`: ping`) included; `None` when the stream ended. Fails after `WAIT`.
    async fn next_raw(&mut self) -> Option<Block> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = self.buf.split_to(end + 2);
                let text = std::str::from_utf8(&block[..end]).expect("SSE is UTF-8");
                return Some(parse_block(text));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for an SSE block; have {:?}", self.buf)
                });
            match frame {
                None => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended mid-block: {:?}",
                        self.buf
                    );
                    return None;
                }
                Some(frame) => {
                    if let Ok(data) = frame.expect("body error").into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next block that is not a comment.
    async fn next_block(&mut self) -> Block {
        loop {
            let block = self.next_raw().await.expect("stream ended");
            if !block.is_comment() {
                return block;
            }
        }
    }

    /// The next event block (skipping `retry:` and comments).
    async fn next_event(&mut self) -> Block {
        loop {
            let block = self.next_block().await;
            if block.field("data").is_some() {
                return block;
            }
        }
    }

    /// Asserts that the stream stays open and sends no event within `within`.
    async fn assert_no_event(&mut self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block = self.buf.split_to(end + 2);
                let block = parse_block(std::str::from_utf8(&block[..end]).unwrap());
                assert!(block.field("data").is_none(), "unexpected event {block:?}");
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return,
                Ok(None) => panic!("stream ended"),
                Ok(Some(frame)) => {
                    if let Ok(data) = frame.expect("body error").into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

async fn create_project(h: &Harness, name: &str) {
    let r = http(
        Method::POST,
        &h.url("/api/projects"),
        &[("content-type", "application/json")],
        &json!({ "name": name }).to_string(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

/// Waits until the broker has numbered `seq` events on `channel` (publishing is asynchronous).
async fn wait_for_seq(h: &Harness, channel: &str, seq: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let channels = [channel.to_owned()];
    loop {
        let now = h.sidecar.shared.broker.positions(&channels).await;
        if now == [seq] {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{channel} stuck at {now:?}, want {seq}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_events_with_position_ids() {
    let h = Harness::start("").await;
    let mut sse = open(&h, "/api/sse?channel=projects&channel=tasks", &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(
        sse.headers.get("content-type").unwrap(),
        "text/event-stream"
    );
    assert_eq!(sse.headers.get("cache-control").unwrap(), "no-cache");
    let first = sse.next_block().await;
    assert_eq!(first.field("retry"), Some("1000"), "{first:?}");

    create_project(&h, "Apollo").await;
    let ev = sse.next_event().await;
    assert_eq!(ev.field("id"), Some("projects=1,tasks=0"), "{ev:?}");
    let data = ev.data();
    assert_eq!(data["type"], "project_created", "{data}");
    assert_eq!(data["channel"], "projects", "{data}");
    assert_eq!(data["seq"], 1, "{data}");

    create_project(&h, "Gemini").await;
    let ev = sse.next_event().await;
    assert_eq!(ev.field("id"), Some("projects=2,tasks=0"), "{ev:?}");
    assert_eq!(ev.data()["seq"], 2);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id() {
    let h = Harness::start("").await;
    for name in ["a", "b", "c"] {
        create_project(&h, name).await;
    }
    wait_for_seq(&h, "projects", 3).await;

    let mut sse = open(
        &h,
        "/api/sse?channel=projects",
        &[("last-event-id", "projects=1")],
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    for seq in [2, 3] {
        let ev = sse.next_event().await;
        assert_eq!(
            ev.field("id"),
            Some(format!("projects={seq}").as_str()),
            "{ev:?}"
        );
        let data = ev.data();
        assert_eq!(data["type"], "project_created", "{data}");
        assert_eq!(data["seq"], seq, "{data}");
    }
    sse.assert_no_event(Duration::from_millis(300)).await;

    // The query parameter works the same for clients that cannot set headers.
    let mut sse = open(
        &h,
        "/api/sse?channel=projects&last_event_id=projects%3D2",
        &[],
    )
    .await;
    let ev = sse.next_event().await;
    assert_eq!(ev.field("id"), Some("projects=3"), "{ev:?}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resume_beyond_history_sends_reset() {
    let h = Harness::start("history: { size: 1, ttl: 10m }\n").await;
    for name in ["a", "b", "c"] {
        create_project(&h, name).await;
    }
    wait_for_seq(&h, "projects", 3).await;

    let mut sse = open(
        &h,
        "/api/sse?channel=projects",
        &[("last-event-id", "projects=0")],
    )
    .await;
    assert_eq!(sse.status, StatusCode::OK);
    let ev = sse.next_event().await;
    assert_eq!(
        ev.data(),
        json!({"op": "reset", "channel": "projects"}),
        "{ev:?}"
    );
    sse.assert_no_event(Duration::from_millis(300)).await;

    // After the reset the stream continues from the current position.
    create_project(&h, "d").await;
    let ev = sse.next_event().await;
    assert_eq!(ev.field("id"), Some("projects=4"), "{ev:?}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_private_channels_of_other_users() {
    let h = Harness::start("auth: { mode: header }\n").await;
    let other = open(&h, "/api/sse?channel=user:7", &[("x-user-id", "8")]).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let anonymous = open(&h, "/api/sse?channel=projects&channel=user:7", &[]).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "auth is on: identify first"
    );
    let owner = open(&h, "/api/sse?channel=user:7", &[("x-user-id", "7")]).await;
    assert_eq!(owner.status, StatusCode::OK);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_refuses_cross_origin() {
    let h = Harness::start("").await;
    let evil = open(
        &h,
        "/api/sse?channel=projects",
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(evil.status, StatusCode::FORBIDDEN);
    let same_host = format!("http://{}", h.sidecar.public_addr);
    let own = open(&h, "/api/sse?channel=projects", &[("origin", &same_host)]).await;
    assert_eq!(own.status, StatusCode::OK);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_without_channel_is_400() {
    let h = Harness::start("").await;
    let r = get(&h.url("/api/sse")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["error"], "bad_request");
    let r = get(&h.url("/api/sse?other=1")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_stream_ends_on_shutdown() {
    let h = Harness::start("").await;
    let mut sse = open(&h, "/api/sse?channel=projects", &[]).await;
    assert_eq!(sse.status, StatusCode::OK);
    assert_eq!(sse.next_block().await.field("retry"), Some("1000"));

    let shutdown = tokio::spawn(h.sidecar.shutdown());
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Some(block) = sse.next_raw().await {
        assert!(block.field("data").is_none(), "unexpected event {block:?}");
        assert!(tokio::time::Instant::now() < deadline, "stream did not end");
    }
    tokio::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown did not finish")
        .unwrap();
}
