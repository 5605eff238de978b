//! The fast upstream every peer proxies to: a stand-in for the FastAPI app that costs almost
//! nothing, so the benchmark measures the proxies, not the app.
//!
//! - `GET /api/projects…` answers a fixed ~300-byte JSON list.
//! - `POST|PUT|PATCH|DELETE /api/…` answers 201/200 JSON `{"id":N,"name":"bench","t":µs}`, where `t`
//!   is the upstream's clock when it answered: subscribers measure delivery delay from it.
//! - `POST /grip/ws` speaks Pushpin's WebSocket-over-HTTP: on `OPEN` it accepts the socket,
//!   subscribes it to channel `bench` and sends it `{"op":"subscribed"}`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::clock::now_us;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

const LIST: &str = r#"[{"id":1,"name":"Website redesign","owner":"alice","status":"active","tasks":12},{"id":2,"name":"Mobile app","owner":"bob","status":"active","tasks":30},{"id":3,"name":"Data warehouse","owner":"carol","status":"paused","tasks":7},{"id":4,"name":"Billing v2","owner":"dave","status":"active","tasks":19},{"id":5,"name":"Docs","owner":"erin","status":"done","tasks":3}]"#;

/// Serves until the process is killed.
pub async fn serve(listen: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    println!("upstream listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Read the request body whole: the bench only sends small ones.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path();
    if path == "/grip/ws" {
        return Ok(grip_ws(&body));
    }
    if !path.starts_with("/api/") {
        return Ok(json(StatusCode::NOT_FOUND, r#"{"detail":"Not Found"}"#));
    }
    let mutation = |status| {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let body = format!(r#"{{"id":{id},"name":"bench","t":{}}}"#, now_us());
        json(status, body)
    };
    Ok(match parts.method {
        Method::GET | Method::HEAD => json(StatusCode::OK, LIST),
        Method::POST => mutation(StatusCode::CREATED),
        Method::PUT | Method::PATCH | Method::DELETE => mutation(StatusCode::OK),
        _ => json(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"detail":"Method Not Allowed"}"#,
        ),
    })
}

/// Pushpin's WebSocket-over-HTTP: events arrive as `OPEN\r\n`, `TEXT <hex len>\r\n…`, `CLOSE…`.
fn grip_ws(events: &[u8]) -> Response<Full<Bytes>> {
    let mut out = String::new();
    if events.starts_with(b"OPEN") {
        out.push_str("OPEN\r\n");
        for msg in [
            r#"c:{"type":"subscribe","channel":"bench"}"#,
            r#"{"op":"subscribed"}"#,
        ] {
            out.push_str(&format!("TEXT {:x}\r\n{msg}\r\n", msg.len()));
        }
    } else if events.windows(5).any(|w| w == b"CLOSE") {
        out.push_str("CLOSE\r\n");
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/websocket-events"),
    );
    h.insert(
        "sec-websocket-extensions",
        // No prefix on plain messages (GRIP's default is `m:`); `c:` still marks control ones.
        http::HeaderValue::from_static("grip; message-prefix=\"\""),
    );
    resp
}
