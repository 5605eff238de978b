//! Tests for `syncgate tail`: URL normalization, and the client against a scripted in-process server.

// The handshake callbacks return tungstenite's `ErrorResponse`; its size is not ours to choose.
#![allow(clippy::result_large_err)]

use super::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

const LIMIT: Duration = Duration::from_secs(10);

#[test]
fn urls_are_normalized_to_the_socket_a_browser_would_open() {
    let table = [
        (
            "http://localhost:8080",
            None,
            "ws://localhost:8080/api/ws",
            "http://localhost:8080",
        ),
        (
            "http://localhost:8080/",
            None,
            "ws://localhost:8080/api/ws",
            "http://localhost:8080",
        ),
        (
            "HTTP://h:1/custom/ws",
            None,
            "ws://h:1/custom/ws",
            "http://h:1",
        ),
        ("http://h:1/?x=1", None, "ws://h:1/api/ws?x=1", "http://h:1"),
        ("ws://h:1/api/ws", None, "ws://h:1/api/ws", "http://h:1"),
        ("ws://h:1/", None, "ws://h:1/", "http://h:1"),
        (
            "ws://h:1/api/ws#frag",
            None,
            "ws://h:1/api/ws",
            "http://h:1",
        ),
        (
            "http://h:1",
            Some("a b/+="),
            "ws://h:1/api/ws?access_token=a%20b%2F%2B%3D",
            "http://h:1",
        ),
        (
            "ws://h:1/s?x=1",
            Some("t"),
            "ws://h:1/s?x=1&access_token=t",
            "http://h:1",
        ),
    ];
    for (input, token, url, origin) in table {
        let got = socket_url(input, token).unwrap();
        assert_eq!(got, (url.to_owned(), origin.to_owned()), "for {input}");
    }
}

#[test]
fn tls_and_garbage_urls_are_refused_clearly() {
    let err = socket_url("wss://h/api/ws", None).unwrap_err().to_string();
    assert_eq!(err, "wss:// is not supported by tail; use ws://");
    assert!(socket_url("https://h", None).is_err());
    assert!(socket_url("localhost:8080", None).is_err());
    assert!(socket_url("ftp://h", None).is_err());
    assert!(socket_url("http:///api", None).is_err());
}

#[test]
fn explicit_origin_wins_over_the_urls_own() {
    let opts = options("http://h:1".into(), Some("https://app.example.com"));
    assert_eq!(
        Target::new(&opts).unwrap().origin,
        "https://app.example.com"
    );
}

fn options(url: String, origin: Option<&str>) -> TailOptions {
    TailOptions {
        url,
        channels: vec!["projects".into(), "tasks".into()],
        token: Some("s3cret/+".into()),
        origin: origin.map(str::to_owned),
    }
}

type ServerWs = WebSocketStream<TcpStream>;

/// Accepts one socket, returning it with the request's path+query and `Origin`.
async fn accept(listener: &TcpListener) -> (ServerWs, String, String) {
    let (tcp, _) = listener.accept().await.unwrap();
    let (tx, rx) = oneshot::channel();
    let ws = tokio_tungstenite::accept_hdr_async(tcp, |req: &Request, resp: Response| {
        let origin = req
            .headers()
            .get(ORIGIN)
            .map(|o| o.to_str().unwrap().to_owned());
        let _ = tx.send((req.uri().to_string(), origin.unwrap_or_default()));
        Ok(resp)
    })
    .await
    .unwrap();
    let (uri, origin) = rx.await.unwrap();
    (ws, uri, origin)
}

async fn send(ws: &mut ServerWs, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

async fn recv_json(ws: &mut ServerWs) -> Value {
    loop {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Close(_) => panic!("client closed while the server expected a frame"),
            _ => {}
        }
    }
}

/// Welcome, then answer the client's two subscribes; returns them.
async fn handshake(ws: &mut ServerWs, seqs: [u64; 2]) -> Vec<Value> {
    send(ws, r#"{"op":"welcome","client_id":"c1","user":"7"}"#).await;
    let mut subs = Vec::new();
    for seq in seqs {
        let sub = recv_json(ws).await;
        let reply = json!({"op":"subscribed","channel":sub["channel"],"seq":seq,"recovered":true});
        send(ws, &reply.to_string()).await;
        subs.push(sub);
    }
    subs
}

fn event(channel: &str, seq: u64) -> String {
    // Odd spacing on purpose: the line printed must be the frame, not a re-serialization.
    format!(r#"{{"type":"x_updated", "channel":"{channel}","seq":{seq}}}"#)
}

#[tokio::test]
async fn reconnects_with_since_and_never_prints_an_event_twice() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drop_tx, drop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let (mut ws, uri, origin) = accept(&listener).await;
        let first = handshake(&mut ws, [0, 0]).await;
        for (channel, seq) in [("projects", 1), ("projects", 2), ("tasks", 1)] {
            send(&mut ws, &event(channel, seq)).await;
        }
        // Drop without a close frame once the client has printed them: a lost connection.
        drop_rx.await.unwrap();
        drop(ws);

        let (mut ws, _, _) = accept(&listener).await;
        let second = handshake(&mut ws, [2, 1]).await;
        for (channel, seq) in [("projects", 2), ("projects", 3), ("tasks", 1), ("tasks", 2)] {
            send(&mut ws, &event(channel, seq)).await;
        }
        let closed = loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                _ => break None,
            }
        };
        (uri, origin, first, second, closed)
    });

    let (line_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let client = tokio::spawn(run_with_output(
        options(format!("http://{addr}"), None),
        async move {
            let _ = stop_rx.await;
        },
        move |line| {
            line_tx
                .send(line.to_owned())
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
        },
    ));

    let mut printed = Vec::new();
    for _ in 0..3 {
        printed.push(timeout(LIMIT, lines.recv()).await.unwrap().unwrap());
    }
    drop_tx.send(()).unwrap();
    for _ in 0..2 {
        printed.push(timeout(LIMIT, lines.recv()).await.unwrap().unwrap());
    }
    stop_tx.send(()).unwrap();
    timeout(LIMIT, client).await.unwrap().unwrap().unwrap();
    let (uri, origin, first, second, closed) = timeout(LIMIT, server).await.unwrap().unwrap();

    let expected: Vec<String> = [
        ("projects", 1),
        ("projects", 2),
        ("tasks", 1),
        ("projects", 3),
        ("tasks", 2),
    ]
    .iter()
    .map(|(channel, seq)| event(channel, *seq))
    .collect();
    assert_eq!(printed, expected);
    assert!(lines.try_recv().is_err(), "nothing else may be printed");
    assert_eq!(uri, "/api/ws?access_token=s3cret%2F%2B");
    assert_eq!(origin, format!("http://{addr}"));
    assert_eq!(
        first,
        vec![
            json!({"op":"subscribe","channel":"projects"}),
            json!({"op":"subscribe","channel":"tasks"})
        ]
    );
    assert_eq!(
        second,
        vec![
            json!({"op":"subscribe","channel":"projects","since":2}),
            json!({"op":"subscribe","channel":"tasks","since":1})
        ]
    );
    assert_eq!(closed, Some(1000), "shutdown sends a normal close");
}

#[tokio::test]
async fn policy_close_ends_the_tail_without_retrying() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut ws, _, _) = accept(&listener).await;
        handshake(&mut ws, [0, 0]).await;
        let frame = CloseFrame {
            code: CloseCode::Policy,
            reason: "forbidden".into(),
        };
        ws.close(Some(frame)).await.unwrap();
        listener
    });
    let tail = run_with_output(
        options(format!("ws://{addr}/api/ws"), None),
        std::future::pending(),
        |_| Ok(()),
    );
    let err = timeout(LIMIT, tail).await.unwrap().unwrap_err().to_string();
    assert!(err.contains("1008") && err.contains("forbidden"), "{err}");
    timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn refused_handshake_is_an_error_not_a_retry_loop() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let refuse = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
            let mut resp = ErrorResponse::new(Some("bad token".into()));
            *resp.status_mut() = StatusCode::UNAUTHORIZED;
            Err(resp)
        };
        let _ = tokio_tungstenite::accept_hdr_async(tcp, refuse).await;
    });
    let tail = run_with_output(
        options(format!("http://{addr}"), None),
        std::future::pending(),
        |_| Ok(()),
    );
    let err = timeout(LIMIT, tail).await.unwrap().unwrap_err().to_string();
    assert!(err.contains("401") && err.contains("--token"), "{err}");
}

#[test]
fn status_lines_never_show_the_token() {
    let target = Target::new(&options("http://h:1".into(), None)).unwrap();
    assert_eq!(target.url, "ws://h:1/api/ws?access_token=s3cret%2F%2B");
    assert_eq!(target.shown, "ws://h:1/api/ws?access_token=***");
}

#[test]
fn run_can_be_spawned_on_a_multithreaded_runtime() {
    fn assert_send<T: Send>(_: &T) {}
    let future = run(options("http://h:1".into(), None), async {});
    assert_send(&future);
}
