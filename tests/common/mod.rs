//! Test harness: an in-process upstream that behaves like a small REST API, the real syncgate server
//! on ephemeral ports in front of it, and real HTTP and WebSocket clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Message, protocol::WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use syncgate::config::Config;
use syncgate::{Listeners, Running};

pub type UpBody = BoxBody<Bytes, Infallible>;
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any "eventually" in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

fn full(b: impl Into<Bytes>) -> UpBody {
    Full::new(b.into()).boxed()
}

fn json_resp(status: StatusCode, v: Value) -> Response<UpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap()
}

/// Per-upstream counters tests read.
#[derive(Debug, Default)]
pub struct ApiState {
    next_id: AtomicU64,
    /// How many times `/api/auth/me` was called.
    pub auth_calls: AtomicU64,
    /// The next `GET /api/projects`, held (see `hold_next_list_read`).
    held: std::sync::Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
}

/// A list read the test API has arrived at, and answers only once released.
pub struct HeldRead {
    /// Fires when the API has the request: what it answers is what it has at that moment.
    pub arrived: oneshot::Receiver<()>,
    pub release: oneshot::Sender<()>,
}

impl ApiState {
    /// Holds the next `GET /api/projects` between reading its data and answering, as a slow
    /// query or a busy server would.
    pub fn hold_next_list_read(&self) -> HeldRead {
        let (arrived_tx, arrived) = oneshot::channel();
        let (release, release_rx) = oneshot::channel();
        *self.held.lock().unwrap() = Some((arrived_tx, release_rx));
        HeldRead { arrived, release }
    }
}

/// Who the test API thinks is calling: `session=alice|bob` cookies or `Bearer alice-token|bob-token`.
fn caller(req: &Request<Incoming>) -> Option<&'static str> {
    let cookie = req
        .headers()
        .get("cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if cookie.contains("session=alice") || auth == "Bearer alice-token" {
        Some("7")
    } else if cookie.contains("session=bob") || auth == "Bearer bob-token" {
        Some("8")
    } else {
        None
    }
}

/// The test API. Routes mimic a FastAPI app plus a few that provoke proxy edge cases.
async fn test_api(
    req: Request<Incoming>,
    state: Arc<ApiState>,
) -> Result<Response<UpBody>, Infallible> {
    let next_id = &state.next_id;
    let who = caller(&req);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resp = match (&method, segs.as_slice()) {
        (&Method::GET, ["api", "auth", "me"]) => {
            state.auth_calls.fetch_add(1, Ordering::SeqCst);
            // Slow enough that concurrent first calls overlap (single-flight is observable).
            tokio::time::sleep(Duration::from_millis(50)).await;
            match who {
                Some(id) => json_resp(StatusCode::OK, json!({"id": id, "name": format!("user {id}")})),
                None => json_resp(StatusCode::UNAUTHORIZED, json!({"detail": "Not authenticated"})),
            }
        }
        // Project `secret` is visible to user 7 only; the API hides it from everyone else.
        (&Method::GET, ["api", "projects", "secret"]) => match who {
            Some("7") => json_resp(StatusCode::OK, json!({"id": "secret"})),
            _ => json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
        },
        (&Method::GET, ["api", "projects"]) => {
            let held = state.held.lock().unwrap().take();
            if let Some((arrived, release)) = held {
                let _ = arrived.send(());
                let _ = release.await;
            }
            json_resp(
                StatusCode::OK,
                json!([{"id": 1, "name": "Apollo", "description": "first project, with a description long enough to look real"},
                       {"id": 2, "name": "Gemini", "description": "second project, with a description long enough to look real"}]),
            )
        }
        (&Method::POST, ["api", "projects"]) => {
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let mut v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            v["id"] = json!(next_id.fetch_add(1, Ordering::SeqCst));
            json_resp(StatusCode::CREATED, v)
        }
        (&Method::POST, ["api", "projects", pid, "tasks"]) => {
            json_resp(StatusCode::CREATED, json!({"id": 7, "project_id": pid}))
        }
        (m, ["api", "projects", "404"]) if m != Method::GET => {
            json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not Found"}))
        }
        (&Method::GET | &Method::PUT | &Method::PATCH | &Method::DELETE, ["api", "projects", id]) => {
            json_resp(StatusCode::OK, json!({"id": id.parse::<u64>().unwrap_or(0), "name": "renamed", "secret": "s3cr3t"}))
        }
        (&Method::POST, ["api", "auth", "login"]) => json_resp(StatusCode::OK, json!({"ok": true})),
        (&Method::GET, ["api", "headers"]) => {
            let mut map = serde_json::Map::new();
            for (k, v) in req.headers() {
                map.insert(k.as_str().to_owned(), json!(v.to_str().unwrap_or("")));
            }
            json_resp(StatusCode::OK, Value::Object(map))
        }
        (&Method::GET, ["api", "hop"]) => Response::builder()
            .header("connection", "x-internal")
            .header("x-internal", "1")
            .header("keep-alive", "timeout=5")
            .header("x-public", "1")
            .body(full("ok"))
            .unwrap(),
        (&Method::GET, ["api", "cached"]) => Response::builder()
            .header("cache-control", "max-age=60")
            // A hop-by-hop header without a `Connection` naming others: the answer's lines pass
            // on as bytes (`proxy::verbatim`), and this one must stay behind.
            .header("keep-alive", "timeout=5")
            .header("x-custom", "a,  b")
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .body(full("cached"))
            .unwrap(),
        // A CORS answer, as FastAPI's CORSMiddleware gives one, exposing a header of its own.
        (&Method::GET, ["api", "teams"]) => Response::builder()
            .header("content-type", "application/json")
            .header("access-control-allow-origin", "https://app.example")
            .header("access-control-expose-headers", "X-Total-Count")
            .header("x-total-count", "0")
            .body(full("[]"))
            .unwrap(),
        (&Method::GET, ["static", "app.js"]) => Response::builder().body(full("js")).unwrap(),
        (&Method::GET, ["api", "slow"]) => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            json_resp(StatusCode::OK, json!({}))
        }
        (&Method::POST, ["api", "notify"]) => Response::builder()
            .header("x-sync-event", r#"{"channel":"user:7","type":"notification_created","data":{"title":"hi"},"invalidate":[["notifications"]]}"#)
            .header("x-sync-event", r#"{"channel":"audit","type":"audit_logged"}"#)
            .header("content-type", "application/json")
            .body(full("{}"))
            .unwrap(),
        (&Method::GET | &Method::HEAD, ["api", "big"]) => {
            // Streams `?bytes=N` bytes in 64 KiB chunks without ever holding more than one;
            // `&chunked=1` leaves the length out, so the answer goes chunked.
            let total: u64 = query
                .split('&')
                .find_map(|pair| pair.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let chunked = query.split('&').any(|pair| pair == "chunked=1");
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(chunk.len() as u64) as usize;
                    Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n as u64))
                }
            });
            let mut resp = Response::builder();
            if !chunked {
                resp = resp.header("content-length", total.to_string());
            }
            resp.body(BodyExt::boxed(StreamBody::new(stream))).unwrap()
        }
        (&Method::POST, ["api", "upload"]) => {
            // Counts an upload as it streams, answering with the byte count.
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            json_resp(StatusCode::OK, json!({"bytes": n}))
        }
        (&Method::GET, ["api", "own-ws"]) => return Ok(upstream_websocket(req)),
        _ => json_resp(StatusCode::NOT_FOUND, json!({"detail": "Not Found"})),
    };
    Ok(resp)
}

/// The API's own WebSocket (an echo), which syncgate must pass through untouched.
fn upstream_websocket(mut req: Request<Incoming>) -> Response<UpBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .cloned()
        .unwrap_or(HeaderValue::from_static(""));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(up) = on_upgrade.await {
            let mut ws = WebSocketStream::from_raw_socket(
                TokioIo::new(up),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Text(t) = msg {
                    let _ = ws.send(Message::Text(format!("echo:{t}").into())).await;
                }
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", accept)
        .body(full(""))
        .unwrap()
}

/// Starts the test API on an ephemeral port.
pub async fn start_upstream() -> SocketAddr {
    start_upstream_with_state().await.0
}

/// The test API and its counters.
pub async fn start_upstream_with_state() -> (SocketAddr, Arc<ApiState>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(ApiState {
        next_id: AtomicU64::new(42),
        ..ApiState::default()
    });
    let served = Arc::clone(&state);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&served);
            tokio::spawn(async move {
                let svc = service_fn(move |req| test_api(req, Arc::clone(&state)));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, state)
}

/// An address nothing listens on (bound, then released).
/// An address where nothing listens, and nothing will while this lives: the port stays bound
/// (without listening, so connections are refused). A port merely bound and released could be
/// handed to another test's listener running in parallel, which would then answer.
pub struct DeadUpstream {
    pub addr: SocketAddr,
    _bound: tokio::net::TcpSocket,
}

pub fn dead_upstream() -> DeadUpstream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    DeadUpstream {
        addr: socket.local_addr().unwrap(),
        _bound: socket,
    }
}

pub struct Harness {
    pub upstream: SocketAddr,
    pub sidecar: Running,
}

impl Harness {
    /// The sidecar with `extra_yaml` appended to a config pointing at a fresh test API.
    pub async fn start(extra_yaml: &str) -> Harness {
        let upstream = start_upstream().await;
        Self::start_with_upstream(upstream, extra_yaml).await
    }

    pub async fn start_with_upstream(upstream: SocketAddr, extra_yaml: &str) -> Harness {
        let yaml = format!(
            "listen: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:1\"\nupstream:\n  url: \"http://{upstream}\"\n{extra_yaml}"
        );
        let mut h = Self::start_raw(&yaml).await;
        h.upstream = upstream;
        h
    }

    /// The sidecar with exactly this YAML (listeners are replaced by ephemeral ones).
    pub async fn start_raw(yaml: &str) -> Harness {
        let config = Config::from_yaml_str(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}"));
        let listeners = Listeners {
            public: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            admin: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        };
        let upstream = format!("{}", config.upstream.authority)
            .parse()
            .unwrap_or(([127, 0, 0, 1], 0).into());
        let sidecar = syncgate::start_with(config, listeners).await.unwrap();
        Harness { upstream, sidecar }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.public_addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.sidecar.admin_addr, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.sidecar.public_addr, path)
    }

    /// A generic socket, past its `welcome`.
    pub async fn socket(&self) -> (Ws, Value) {
        self.socket_with(&self.ws_url("/api/ws"), &[]).await
    }

    pub async fn socket_with(&self, url: &str, headers: &[(&'static str, &str)]) -> (Ws, Value) {
        let mut ws = connect(url, headers)
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        let welcome = recv_json(&mut ws).await;
        assert_eq!(welcome["op"], "welcome", "{welcome}");
        (ws, welcome)
    }
}

pub async fn connect(
    url: &str,
    headers: &[(&'static str, &str)],
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let (ws, _) =
        tokio_tungstenite::connect_async_with_config(req, Some(WebSocketConfig::default()), false)
            .await?;
    Ok(ws)
}

/// The next text frame as JSON (pings and pongs skipped); fails the test after `WAIT`.
pub async fn recv_json(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for a frame")
            .expect("socket ended")
            .expect("socket error");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).expect("frame is JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame: {other:?}"),
        }
    }
}

/// Asserts no text frame arrives within `within`.
pub async fn assert_silent(ws: &mut Ws, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected silence, got {other:?}"),
        }
    }
}

/// The close frame's code, reading past any other frames.
pub async fn recv_close_code(ws: &mut Ws) -> u16 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("timed out waiting for close")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a close code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("socket error before close: {e}"),
        }
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Subscribes and returns the `subscribed` answer.
pub async fn subscribe(ws: &mut Ws, channel: &str, since: Option<u64>) -> Value {
    let mut op = json!({"op": "subscribe", "channel": channel});
    if let Some(s) = since {
        op["since"] = json!(s);
    }
    send_json(ws, op).await;
    let v = recv_json(ws).await;
    assert_eq!(v["op"], "subscribed", "{v}");
    v
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP request with a fresh client.
pub async fn http(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(30), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

pub async fn get(url: &str) -> Reply {
    http(Method::GET, url, &[], "").await
}
