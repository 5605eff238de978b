//! The public listener's own HTTP/1.1 server (`front`): pipelined requests, the requests it hands
//! to hyper, connection close, HEAD, and a client hanging up on a streamed answer. Raw sockets,
//! so that every byte on the wire is what a client would see.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as it came off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The values of every line named `name`.
    fn all(&self, name: &str) -> Vec<String> {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A client on one connection, reading answers framed by length or in chunks.
struct Client {
    stream: TcpStream,
    got: Vec<u8>,
}

impl Client {
    async fn open(h: &Harness) -> Client {
        Client {
            stream: TcpStream::connect(h.sidecar.public_addr).await.unwrap(),
            got: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes; false when the sidecar closed the connection.
    async fn more(&mut self) -> bool {
        let mut buf = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
            .await
            .expect("bytes or a close within 10 s")
            .unwrap_or(0);
        self.got.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// The next answer to a request of `method`.
    async fn answer(&mut self, method: &str) -> Answer {
        let at = loop {
            if let Some(at) = self.got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            assert!(self.more().await, "closed before an answer's head");
        };
        let head = String::from_utf8(self.got[..at].to_vec()).unwrap();
        self.got.drain(..at + 4);
        let mut answer = Answer {
            status: head[9..12].parse().expect("status code"),
            head,
            body: Vec::new(),
        };
        if method == "HEAD" || answer.status < 200 || answer.status == 204 || answer.status == 304 {
            return answer;
        }
        if let Some(len) = answer.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.got.len() < len {
                assert!(self.more().await, "closed inside a body");
            }
            answer.body = self.got.drain(..len).collect();
        } else {
            assert_eq!(
                answer.header("transfer-encoding").as_deref(),
                Some("chunked"),
                "{answer:?}"
            );
            loop {
                let line_end = loop {
                    if let Some(at) = self.got.windows(2).position(|w| w == b"\r\n") {
                        break at;
                    }
                    assert!(self.more().await, "closed inside a chunk size");
                };
                let size = std::str::from_utf8(&self.got[..line_end]).unwrap();
                let size = usize::from_str_radix(size, 16).unwrap();
                while self.got.len() < line_end + 2 + size + 2 {
                    assert!(self.more().await, "closed inside a chunk");
                }
                answer
                    .body
                    .extend_from_slice(&self.got[line_end + 2..line_end + 2 + size]);
                self.got.drain(..line_end + 2 + size + 2);
                if size == 0 {
                    break;
                }
            }
        }
        answer
    }

    /// Whether the sidecar closes the connection (without sending anything more) within 5 s.
    async fn closes(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.got.is_empty(),
            _ => false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    // Three requests in one write, the middle one with a body.
    let body = r#"{"name":"piped"}"#;
    c.send(
        format!(
            "GET /api/projects HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /api/projects HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
             GET /api/headers HTTP/1.1\r\nHost: third\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let first = c.answer("GET").await;
    assert_eq!(first.status, 200);
    assert!(first.json().is_array(), "{first:?}");
    let second = c.answer("POST").await;
    assert_eq!(second.status, 201);
    assert_eq!(second.json()["name"], "piped");
    let third = c.answer("GET").await;
    assert_eq!(third.json()["host"], "third");
    // Every answer is dated, as hyper's were.
    assert!(
        third.header("date").is_some_and(|d| d.ends_with(" GMT")),
        "{third:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_arrives_in_pieces_reaches_the_upstream_whole() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    const LEN: usize = 300_000;
    c.send(
        format!("POST /api/upload HTTP/1.1\r\nHost: a\r\nContent-Length: {LEN}\r\n\r\n").as_bytes(),
    )
    .await;
    for _ in 0..(LEN / 30_000) {
        c.send(&[b'x'; 30_000]).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer = c.answer("POST").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["bytes"], LEN);
    // And the connection goes on.
    c.send(b"GET /api/headers HTTP/1.1\r\nHost: after\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.json()["host"], "after");
}

/// Chunked uploads, `Expect: 100-continue` and HTTP/1.0 are served by hyper, which then keeps
/// the connection: what a client sees is the same as before the hand-written path existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_of_other_shapes_are_served_by_hyper_on_the_same_connection() {
    let h = Harness::start("").await;

    // A plain request first, then a chunked upload, then plain again.
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/headers HTTP/1.1\r\nHost: one\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.json()["host"], "one");
    c.send(b"POST /api/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        .await;
    let answer = c.answer("POST").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["bytes"], 11);
    c.send(b"GET /api/headers HTTP/1.1\r\nHost: three\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.json()["host"], "three");

    // Expect: 100-continue gets its interim answer before the body is sent.
    let mut c = Client::open(&h).await;
    c.send(b"POST /api/upload HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        .await;
    let interim = c.answer("POST").await;
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(b"abcd").await;
    assert_eq!(c.answer("POST").await.json()["bytes"], 4);

    // HTTP/1.0: answered, then closed.
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/headers HTTP/1.0\r\nHost: old\r\n\r\n")
        .await;
    let mut all = Vec::new();
    while c.more().await {}
    all.extend_from_slice(&c.got);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.contains("\"old\""), "{text}");

    // A malformed head gets hyper's 400.
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/headers HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_is_honoured_and_said() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/projects HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await;
    let answer = c.answer("GET").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("connection").as_deref(), Some("close"));
    assert!(c.closes().await, "the connection stayed open");
}

/// The upstream's header lines reach the client as sent, without this hop's, and a rule's
/// `Cache-Control` takes the place of the upstream's (never beside it), whether this loop writes
/// the answer (HTTP/1.1) or hyper does (HTTP/1.0), and whether the lines passed on as bytes
/// (`/api/cached`) or went through a map (`/api/hop`: its `Connection` names a header).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_headers_pass_on_without_this_hops_and_with_the_rules_value() {
    let h = Harness::start(
        "cache_control:\n  rules:\n    - path: \"^/api/cached\"\n      value: \"no-store\"\n",
    )
    .await;
    for version in ["1.1", "1.0"] {
        let mut c = Client::open(&h).await;
        c.send(format!("GET /api/cached HTTP/{version}\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        let answer = c.answer("GET").await;
        assert_eq!(answer.body, b"cached", "{version}");
        assert_eq!(
            answer.all("cache-control"),
            ["no-store"],
            "{version}: {answer:?}"
        );
        assert_eq!(answer.all("x-custom"), ["a,  b"], "{version}: {answer:?}");
        // Repeated lines stay separate lines, in order (cookies cannot be joined with commas).
        assert_eq!(
            answer.all("set-cookie"),
            ["a=1; Path=/", "b=2; Path=/"],
            "{version}: {answer:?}"
        );
        assert_eq!(answer.all("date").len(), 1, "{version}: {answer:?}");
        assert_eq!(answer.all("content-length"), ["6"], "{version}: {answer:?}");
        assert!(answer.all("keep-alive").is_empty(), "{version}: {answer:?}");
        assert_eq!(
            answer.all("x-sync-position").len(),
            1,
            "{version}: {answer:?}"
        );

        let mut c = Client::open(&h).await;
        c.send(format!("GET /api/hop HTTP/{version}\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        let answer = c.answer("GET").await;
        assert_eq!(answer.body, b"ok", "{version}");
        assert!(answer.all("x-internal").is_empty(), "{version}: {answer:?}");
        assert!(answer.all("keep-alive").is_empty(), "{version}: {answer:?}");
        assert_eq!(answer.all("x-public"), ["1"], "{version}: {answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_carry_the_length_and_no_body() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    c.send(b"HEAD /api/big?bytes=5000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    let answer = c.answer("HEAD").await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("content-length").as_deref(), Some("5000"));
    // No body bytes came: the next answer starts right after the head.
    c.send(b"GET /api/headers HTTP/1.1\r\nHost: next\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.json()["host"], "next");
}

/// An upstream answer longer than this path buffers goes out whole, in order, on a kept-alive
/// connection, whether it declares its length or comes in chunks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_stream_whole_and_the_connection_goes_on() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    for path in ["/api/big?bytes=1000000", "/api/big?bytes=1000000&chunked=1"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
            .await;
        let answer = c.answer("GET").await;
        assert_eq!(answer.body.len(), 1_000_000, "{path}");
        assert!(answer.body.iter().all(|b| *b == b'x'));
    }
}

/// A client that hangs up while its answer streams and waits for more (an SSE stream between
/// events) ends the answer at once, not at the next event or ping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_ends_its_waiting_stream() {
    let h = Harness::start("websocket:\n  ping_interval: 60s\n").await;
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/sse?channel=projects HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    while !String::from_utf8_lossy(&c.got).contains("retry: 1000") {
        assert!(c.more().await);
    }
    let open = || {
        let metrics = h.sidecar.shared.metrics.encode();
        metrics
            .lines()
            .find(|l| l.starts_with("syncgate_sse_connections "))
            .map(|l| l.to_owned())
    };
    assert_eq!(open().as_deref(), Some("syncgate_sse_connections 1"));
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while open().as_deref() != Some("syncgate_sse_connections 0") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream outlived its client: {:?}",
            open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The upstream answers without reading the body: a small rest of it is read and dropped so the
/// connection serves the next request (a large one closes it, see `tests/proxy.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_small_body_is_dropped_and_the_connection_goes_on() {
    let h = Harness::start("").await;
    let mut c = Client::open(&h).await;
    const LEN: usize = 200_000;
    c.send(
        format!("POST /api/projects/404 HTTP/1.1\r\nHost: a\r\nContent-Length: {LEN}\r\n\r\n")
            .as_bytes(),
    )
    .await;
    let answer = c.answer("POST").await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("connection"), None, "{answer:?}");
    // The body is sent after the answer came, then a request behind it.
    let mut rest = vec![b'x'; LEN];
    rest.extend_from_slice(b"GET /api/headers HTTP/1.1\r\nHost: behind\r\n\r\n");
    c.send(&rest).await;
    assert_eq!(c.answer("GET").await.json()["host"], "behind");
}

/// A client that hangs up while the upstream works on its request: the request is given up and
/// its upstream connection closed (as nginx does), not left to run to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_gives_up_its_request_upstream() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<bool>();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        // The first connection that sends a request head (the sidecar's health probe only
        // connects).
        let mut s = 'accept: loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => continue 'accept,
                }
            }
            break s;
        };
        // Never answer; say whether the sidecar closed the connection within 5 s.
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        );
        let _ = closed_tx.send(closed);
    });
    let h = Harness::start_with_upstream(upstream, "").await;
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/projects HTTP/1.1\r\nHost: a\r\n\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(c);
    assert!(
        closed_rx.await.unwrap(),
        "the upstream connection outlived the client"
    );
}

/// An upstream that records each request's head and body as they came off the wire, and answers
/// every one `200 ok`, on as many connections as it is given.
async fn recording_upstream() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<(String, Vec<u8>)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    while let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&got[..at]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if got.len() < at + 4 + len {
                            break;
                        }
                        let body = got[at + 4..at + 4 + len].to_vec();
                        got.drain(..at + 4 + len);
                        let _ = tx.send((head, body));
                        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The lines of a recorded head named `name`, as `name: value` with the spelling they came in.
fn lines_named<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .skip(1)
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.eq_ignore_ascii_case(name))
        })
        .collect()
}

/// A plain request's header lines reach the upstream as the client wrote them (spelling,
/// spacing, repeated lines in order), without this hop's, and with the proxy's `X-Forwarded-*`
/// added to what a proxy in front sent. A `Connection` that names a header of this hop still
/// keeps that header back, and a request hyper serves (HTTP/1.0) is forwarded the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_header_lines_reach_the_upstream_as_sent_without_this_hops() {
    let (up, mut seen) = recording_upstream().await;
    let h = Harness::start_with_upstream(up, "").await;
    let mut c = Client::open(&h).await;
    c.send(
        b"POST /api/things HTTP/1.1\r\nHost: app.test\r\nX-Custom: A\r\nx-custom:  b, c\r\n\
          Keep-Alive: timeout=5\r\nProxy-Authorization: Basic eA==\r\nTE: trailers\r\n\
          X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nX-Sync-Client: tab-1\r\n\
          Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(c.answer("POST").await.body, b"ok");
    let (head, body) = seen.recv().await.unwrap();
    assert!(head.starts_with("POST /api/things HTTP/1.1\r\n"), "{head}");
    assert_eq!(body, b"{}");
    assert_eq!(
        lines_named(&head, "x-custom"),
        ["X-Custom: A", "x-custom:  b, c"],
        "{head}"
    );
    assert_eq!(lines_named(&head, "host"), ["Host: app.test"], "{head}");
    assert_eq!(
        lines_named(&head, "content-type"),
        ["Content-Type: application/json"],
        "{head}"
    );
    assert_eq!(
        lines_named(&head, "content-length"),
        ["Content-Length: 2"],
        "{head}"
    );
    for hop in [
        "keep-alive",
        "proxy-authorization",
        "te",
        "connection",
        "transfer-encoding",
    ] {
        assert!(
            lines_named(&head, hop).is_empty(),
            "{hop} went upstream: {head}"
        );
    }
    assert_eq!(
        lines_named(&head, "x-forwarded-for"),
        ["x-forwarded-for: 10.0.0.1, 127.0.0.1"],
        "{head}"
    );
    assert_eq!(lines_named(&head, "x-forwarded-proto").len(), 1, "{head}");
    assert!(
        lines_named(&head, "x-forwarded-proto")[0].ends_with("https"),
        "{head}"
    );
    assert_eq!(
        lines_named(&head, "x-forwarded-host"),
        ["x-forwarded-host: app.test"],
        "{head}"
    );
    assert_eq!(lines_named(&head, "x-sync-client").len(), 1, "{head}");

    // The same connection: a `Connection` naming a header keeps it on this hop.
    c.send(
        b"GET /api/things HTTP/1.1\r\nHost: app.test\r\nConnection: keep-alive, X-Secret\r\n\
          X-Secret: s\r\nX-Kept: k\r\n\r\n",
    )
    .await;
    assert_eq!(c.answer("GET").await.body, b"ok");
    let (head, _) = seen.recv().await.unwrap();
    assert!(lines_named(&head, "x-secret").is_empty(), "{head}");
    assert!(lines_named(&head, "connection").is_empty(), "{head}");
    assert_eq!(lines_named(&head, "x-kept").len(), 1, "{head}");
    assert_eq!(lines_named(&head, "host").len(), 1, "{head}");

    // HTTP/1.0 goes to hyper, whose map writes names in lower case; the same headers pass.
    let mut c = Client::open(&h).await;
    c.send(b"GET /api/things HTTP/1.0\r\nHost: app.test\r\nX-Custom: A\r\nTE: trailers\r\n\r\n")
        .await;
    assert_eq!(c.answer("GET").await.body, b"ok");
    let (head, _) = seen.recv().await.unwrap();
    assert_eq!(lines_named(&head, "x-custom").len(), 1, "{head}");
    assert!(lines_named(&head, "te").is_empty(), "{head}");
    assert_eq!(
        lines_named(&head, "x-forwarded-host"),
        ["x-forwarded-host: app.test"],
        "{head}"
    );
}
