//! The proxy half: forwarding, header hygiene, Cache-Control rules, failures and pass-through.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_is_forwarded_with_its_body() {
    let h = Harness::start("").await;
    let r = http(
        Method::POST,
        &h.url("/api/projects"),
        &[("content-type", "application/json")],
        r#"{"name":"Apollo"}"#,
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        r.json()["name"],
        "Apollo",
        "the request body reached the upstream"
    );
    for m in [Method::PUT, Method::PATCH, Method::DELETE, Method::GET] {
        assert_eq!(
            http(m.clone(), &h.url("/api/projects/5"), &[], "{}")
                .await
                .status,
            200,
            "{m}"
        );
    }
    let r = http(Method::OPTIONS, &h.url("/api/projects"), &[], "").await;
    assert_eq!(
        r.status, 404,
        "OPTIONS reached the upstream, which has no such route"
    );
    assert_eq!(r.json()["detail"], "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_and_forwarded_headers_set() {
    let h = Harness::start("").await;
    let r = http(
        Method::GET,
        &h.url("/api/headers"),
        &[
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("te", "trailers"),
            ("x-end-to-end", "kept"),
            ("host", "app.example.com"),
        ],
        "",
    )
    .await;
    let seen = r.json();
    assert!(
        seen.get("x-hop").is_none(),
        "header named by Connection must not be forwarded: {seen}"
    );
    assert!(seen.get("te").is_none(), "{seen}");
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "app.example.com");

    let r = get(&h.url("/api/hop")).await;
    assert!(
        r.headers.get("x-internal").is_none(),
        "response header named by Connection leaked"
    );
    assert!(r.headers.get("keep-alive").is_none());
    assert_eq!(r.headers["x-public"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_control_rules_first_match_methods_and_only_if_missing() {
    let h = Harness::start(
        r#"cache_control:
  rules:
    - path: "^/static/"
      methods: [GET, HEAD]
      value: "public, max-age=31536000, immutable"
    - path: "^/api/cached"
      value: "no-store"
      only_if_missing: true
    - path: "^/api/(projects|dashboard)(/.*)?$"
      value: "no-cache, no-store, must-revalidate"
    - path: "^/"
      value: "private"
"#,
    )
    .await;
    assert_eq!(
        get(&h.url("/static/app.js")).await.headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(
        get(&h.url("/api/projects")).await.headers["cache-control"],
        "no-cache, no-store, must-revalidate"
    );
    assert_eq!(
        get(&h.url("/api/cached")).await.headers["cache-control"],
        "max-age=60",
        "upstream's header kept"
    );
    let post = http(Method::POST, &h.url("/static/app.js"), &[], "").await;
    assert_eq!(
        post.headers["cache-control"], "private",
        "POST skips the GET-only rule and falls through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rule_marks_api_responses_no_cache() {
    let h = Harness::start("").await;
    assert_eq!(
        get(&h.url("/api/projects")).await.headers["cache-control"],
        "no-cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_upstream_is_502_json() {
    let dead = dead_upstream();
    let h = Harness::start_with_upstream(dead.addr, "").await;
    let r = get(&h.url("/api/projects")).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.headers["x-syncgate-error"], "upstream_unavailable");
    assert_eq!(r.json()["error"], "upstream_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_504_json() {
    // request_timeout lives under `upstream`, which `Harness::start` writes; give the whole YAML.
    let up = start_upstream().await;
    let h = Harness::start_raw(&format!(
        "listen: \"127.0.0.1:0\"\nupstream:\n  url: \"http://{up}\"\n  request_timeout: 200ms\n"
    ))
    .await;
    let started = std::time::Instant::now();
    let r = get(&h.url("/api/slow")).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "timed out at request_timeout, not at the upstream's pace"
    );
}

/// A browser reads only the headers a CORS answer exposes: the position is added to the
/// upstream's own list, and only on CORS answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_position_is_exposed_on_cors_answers() {
    let h = Harness::start("").await;
    let teams = http(
        Method::GET,
        &h.url("/api/teams"),
        &[("origin", "https://app.example")],
        "",
    )
    .await;
    assert_eq!(teams.headers["x-sync-position"], "teams=0");
    assert_eq!(
        teams.headers["access-control-expose-headers"],
        "X-Total-Count, X-Sync-Position"
    );
    let projects = get(&h.url("/api/projects")).await;
    assert_eq!(projects.headers["x-sync-position"], "projects=0");
    assert!(
        projects
            .headers
            .get("access-control-expose-headers")
            .is_none(),
        "not a CORS answer"
    );
}

/// A project created while the list is being read is not in that list; the list's position must
/// be before its event, so that a client subscribing from there is sent it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_a_list_is_read_comes_after_its_position() {
    let (up, api) = start_upstream_with_state().await;
    let h = Harness::start_with_upstream(up, "").await;
    let (mut watcher, _) = h.socket().await;
    subscribe(&mut watcher, "projects", None).await;
    let held = api.hold_next_list_read();
    let url = h.url("/api/projects");
    let list = tokio::spawn(async move { get(&url).await });
    held.arrived.await.unwrap();
    // The upstream has its data; a project is created before it answers.
    let created = http(Method::POST, &h.url("/api/projects"), &[], "{}").await;
    assert_eq!(created.status, 201);
    let event = recv_json(&mut watcher).await;
    assert_eq!(
        (event["type"].as_str(), event["seq"].as_u64()),
        (Some("project_created"), Some(1)),
        "{event}"
    );
    held.release.send(()).unwrap();
    let list = list.await.unwrap();
    assert_eq!(list.status, 200);
    assert_eq!(
        list.headers["x-sync-position"], "projects=0",
        "the list does not show project 1"
    );
    // What the client library does with it: subscribe from there, and be sent what it missed.
    let (mut page, _) = h.socket().await;
    let subscribed = subscribe(&mut page, "projects", Some(0)).await;
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    let missed = recv_json(&mut page).await;
    assert_eq!(missed["seq"], 1, "{missed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_under_prefix_carries_sync_position() {
    let h = Harness::start("").await;
    let r = get(&h.url("/api/projects")).await;
    assert_eq!(r.headers["x-sync-position"], "projects=0");
    http(Method::POST, &h.url("/api/projects"), &[], "{}").await;
    http(Method::POST, &h.url("/api/projects"), &[], "{}").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = get(&h.url("/api/projects")).await;
        if r.headers["x-sync-position"] == "projects=2" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "position never reached 2: {:?}",
            r.headers["x-sync-position"]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let item = get(&h.url("/api/projects/5")).await;
    assert_eq!(item.headers["x-sync-position"], "projects=2,project:5=0");
    assert!(
        get(&h.url("/static/app.js"))
            .await
            .headers
            .get("x-sync-position")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_to_paths_that_are_not_ours_reach_the_upstream() {
    let h = Harness::start("").await;
    let mut ws = connect(&h.ws_url("/api/own-ws"), &[])
        .await
        .expect("the API's own socket works through syncgate");
    ws.send(Message::Text("hello".into())).await.unwrap();
    let reply = tokio::time::timeout(WAIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(reply, Message::Text("echo:hello".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_socket_path_without_upgrade_is_426() {
    let h = Harness::start("").await;
    let r = get(&h.url("/api/ws")).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json()["error"], "upgrade_required");
}

/// A client that keeps (at most) one connection open and sends its requests over it in turn.
/// One client connection to the sidecar, written by hand so that every request goes over it (a
/// pooled client may open another connection whenever the last one is not back in its pool yet,
/// and the tests below are about what one connection sees).
struct OneConnection {
    stream: tokio::net::TcpStream,
    got: Vec<u8>,
}

impl OneConnection {
    async fn open(h: &Harness) -> Self {
        let stream = tokio::net::TcpStream::connect(h.sidecar.public_addr)
            .await
            .unwrap();
        OneConnection {
            stream,
            got: Vec::new(),
        }
    }

    /// Sends `head` (request line and headers, without the blank line) with `body` (none if
    /// empty), and reads
    /// one answer, which must carry a Content-Length: its status and body.
    async fn exchange(&mut self, head: &str, body: &str) -> (u16, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = if body.is_empty() {
            format!("{head}\r\n\r\n")
        } else {
            format!("{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 8192];
        loop {
            if let Some(at) = self.got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.got[..at]).into_owned();
                let status: u16 = head[9..12].parse().expect("status code");
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .expect("the answer has a Content-Length");
                if self.got.len() >= at + 4 + len {
                    let body = self.got[at + 4..at + 4 + len].to_vec();
                    self.got.drain(..at + 4 + len);
                    return (status, body);
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            assert!(n > 0, "the sidecar closed the connection before answering");
            self.got.extend_from_slice(&buf[..n]);
        }
    }
}

/// An upstream written by hand: `serve` runs on each connection it accepts.
async fn raw_upstream<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// An upstream that answers one request per connection and then hangs up without saying so (as
/// an idle keep-alive timeout does), counting the connections it accepted.
async fn one_shot_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let addr = raw_upstream(move |mut s| {
        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => head.extend_from_slice(&buf[..k]),
                }
            }
            let body = format!("{{\"conn\":{n}}}");
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    (addr, accepted)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_survives_the_upstream_closing_its_connection() {
    let (upstream, accepted) = one_shot_upstream().await;
    let h = Harness::start_with_upstream(upstream, "").await;
    // One client connection, several requests: each finds its upstream connection closed (just
    // now, or a moment ago) and must be answered on a fresh one, never with a 502.
    let mut conn = OneConnection::open(&h).await;
    for i in 1..=5 {
        let (status, _) = conn
            .exchange("GET /api/items HTTP/1.1\r\nHost: app.test", "")
            .await;
        assert_eq!(status, 200, "request {i}");
        if i % 2 == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // At least one connection per request (the readiness probe opens more).
    assert!(
        accepted.load(std::sync::atomic::Ordering::SeqCst) >= 5,
        "each request needed a connection of its own"
    );
}

/// An upstream that answers the first request on each connection and hangs up on the second
/// after reading it: the request was sent, and the connection failed under it.
async fn hangs_up_on_second_request_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw_upstream(|mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        for answered in 0..2 {
            loop {
                let heads = got.windows(4).filter(|w| w == b"\r\n\r\n").count();
                if heads > answered {
                    break;
                }
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(k) => got.extend_from_slice(&buf[..k]),
                }
            }
            if answered == 1 {
                return; // read the second request, then hang up without an answer
            }
            let answer =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            if s.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_whose_reused_upstream_connection_fails_is_sent_again_but_a_post_is_not() {
    let h = Harness::start_with_upstream(hangs_up_on_second_request_upstream().await, "").await;
    let mut conn = OneConnection::open(&h).await;
    // One client connection: the first request opens an upstream connection, the second reuses
    // it and the upstream hangs up under it.
    for i in 1..=4 {
        let (status, _) = conn
            .exchange("GET /api/items HTTP/1.1\r\nHost: app.test", "")
            .await;
        assert_eq!(status, 200, "GET {i} is answered on a fresh connection");
    }
    // The POST is the second request on the last GET's upstream connection: it fails there,
    // and a fresh connection (which would answer 200) is not tried.
    let (status, _) = conn
        .exchange(
            "POST /api/items HTTP/1.1\r\nHost: app.test\r\nContent-Type: application/json",
            "{}",
        )
        .await;
    assert_eq!(
        status, 502,
        "a POST the upstream may have acted on is not repeated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_each_reach_the_upstream_with_their_own_headers() {
    let h = Harness::start("").await;
    // Raw keep-alive requests on one socket (so on one upstream connection): each arrives with the
    // client's Host and names the client once in X-Forwarded-For.
    let mut conn = OneConnection::open(&h).await;
    for _ in 0..3 {
        let (status, body) = conn
            .exchange("GET /api/headers HTTP/1.1\r\nHost: app.test", "")
            .await;
        assert_eq!(status, 200);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["x-forwarded-for"], "127.0.0.1");
        assert_eq!(body["host"], "app.test");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_a_large_upload_leaves_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start("").await;
    // The test API answers this POST 404 without reading its body, then closes with the body's
    // bytes unread, which resets the connection while the sidecar is still writing the upload.
    // The 404 must still reach the client (it used to turn into a 502 about a quarter of the
    // time, whichever of the answer and the write error hyper saw first).
    const BODY: usize = 4 * 1024 * 1024;
    let s = tokio::net::TcpStream::connect(h.sidecar.public_addr)
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "POST /api/projects/404 HTTP/1.1\r\nHost: app.test\r\nContent-Length: {BODY}\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await?;
        wr.write_all(&vec![b'x'; BODY]).await?;
        wr.write_all(b"GET /api/projects HTTP/1.1\r\nHost: app.test\r\n\r\n")
            .await?;
        Ok::<_, std::io::Error>(wr)
    });
    // Both answers arrive on the same connection, the second one promptly: the upload's
    // upstream connection must not hold up the next request.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if text.matches("HTTP/1.1 ").count() >= 2 && text.contains("Gemini") {
            break;
        }
        let n = tokio::time::timeout_at(deadline, rd.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no second answer within 10 s; got so far:\n{text}"))
            .unwrap();
        if n == 0 {
            // The sidecar may close a connection whose request body it did not read; then the
            // first answer must still have been complete.
            assert!(text.starts_with("HTTP/1.1 404"), "{text}");
            println!("the sidecar closed the connection after the early answer");
            return;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
    println!("both answers on one connection");
    let _ = writer.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_answer_reaches_the_client_whole() {
    let h = Harness::start("").await;
    // The upstream sends 300,000 bytes in chunks of 64 KiB without a length: the sidecar reads
    // them off its upstream connection by their chunked framing and streams them on.
    for _ in 0..3 {
        let r = common::get(&h.url("/api/big?bytes=300000&chunked=1")).await;
        assert_eq!(r.status, 200);
        assert!(r.headers.get("content-length").is_none(), "{:?}", r.headers);
        assert_eq!(r.body.len(), 300_000);
        assert!(r.body.iter().all(|b| *b == b'x'));
    }
    // The length-delimited answer of the same size too.
    let r = common::get(&h.url("/api/big?bytes=300000")).await;
    assert_eq!(r.headers["content-length"], "300000");
    assert_eq!(r.body.len(), 300_000);
}

/// An upstream that sends its answer's head as soon as a request's head is in, then reads the
/// whole body (its `Content-Length`) before it sends the answer's body: the byte count.
async fn answers_while_reading_upstream() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw_upstream(|mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        let head_end = loop {
            if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => got.extend_from_slice(&buf[..k]),
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\n";
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let mut body = got.len() - head_end;
        while body < length {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => body += k,
            }
        }
        let _ = s.write_all(format!("{body:07}").as_bytes()).await;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_goes_on_while_the_answer_that_came_early_streams() {
    let h = Harness::start_with_upstream(answers_while_reading_upstream().await, "").await;
    // 4 MiB is more than the sockets' buffers hold: the answer's head arrives while most of the
    // upload is still to be sent, and its body only once the upload is whole.
    let upload = "x".repeat(4 * 1024 * 1024);
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        common::http(Method::POST, &h.url("/api/upload"), &[], &upload),
    )
    .await
    .expect("the upload stalled once the answer's head had arrived");
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"4194304");
}
