//! `syncgate tail --url URL CHANNEL...`: a debugging client that watches channels the way a browser
//! would and prints every event as one JSON line on stdout.
//!
//! It speaks the generic socket protocol (SPEC "Generic socket protocol") from the outside: it sends
//! the same `Origin` a same-host page would, subscribes after the `welcome`, and on a lost connection
//! dials again with `since` so nothing is missed or printed twice. Status goes to stderr so stdout stays
//! pipeable into `jq`. It is not a library for applications and shares no code with the server side on
//! purpose: it tests the wire contract, not our own types.

use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header::ORIGIN};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

/// Where the generic socket lives unless the config moved it (`websocket.path`).
const DEFAULT_SOCKET_PATH: &str = "/api/ws";
/// Browsers cannot set headers on a WebSocket, so the token rides in the query (`auth.token_query_param`).
const TOKEN_PARAM: &str = "access_token";
const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Our own `{"op":"ping"}` keeps idle proxies from dropping the socket and proves the server is alive.
const PING_EVERY: Duration = Duration::from_secs(20);
/// With a ping every 20 s, a minute of silence means the connection is dead even without a FIN.
const IDLE_LIMIT: Duration = Duration::from_secs(60);
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Characters left bare in a query value: RFC 3986 unreserved; everything else is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// What `syncgate tail` was asked to watch.
#[derive(Clone, Debug)]
pub struct TailOptions {
    pub url: String,
    pub channels: Vec<String>,
    pub token: Option<String>,
    pub origin: Option<String>,
}

/// Watches the channels until `shutdown` completes (then closes the socket politely and returns
/// `Ok`), stdout is closed (e.g. piped into `head`), or the server refuses us for good.
pub async fn run(opts: TailOptions, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let stdout = io::stdout();
    run_with_output(opts, shutdown, move |line| {
        // Flush per line: someone is watching this live, often through a pipe.
        let mut out = stdout.lock();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()
    })
    .await
}

/// [`run`] with the event sink injected, so tests can capture exactly what would be printed.
/// A `BrokenPipe` from the sink ends the tail quietly; any other sink error is returned.
pub(crate) async fn run_with_output(
    opts: TailOptions,
    shutdown: impl Future<Output = ()>,
    out: impl FnMut(&str) -> io::Result<()>,
) -> anyhow::Result<()> {
    if opts.channels.is_empty() {
        bail!("tail needs at least one channel to subscribe to");
    }
    let target = Target::new(&opts)?;
    let mut tail = Tail {
        channels: opts.channels,
        last_seq: HashMap::new(),
        out,
    };
    tokio::pin!(shutdown);
    let mut backoff = BACKOFF_START;
    loop {
        let attempt = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            attempt = dial(&target) => attempt,
        };
        match attempt {
            Attempt::Connected(ws) => {
                status(format_args!("connected to {}", target.shown));
                match tail.session(ws, shutdown.as_mut()).await? {
                    SessionEnd::Shutdown | SessionEnd::OutputClosed => return Ok(()),
                    SessionEnd::Lost { why, welcomed } => {
                        status(format_args!("disconnected: {why}"));
                        if welcomed {
                            backoff = BACKOFF_START;
                        }
                    }
                }
            }
            Attempt::Retry(why) => status(format_args!("cannot connect: {why}")),
            Attempt::Fatal(err) => return Err(err),
        }
        status(format_args!("reconnecting in {backoff:?}"));
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// The socket URL and `Origin` header, worked out once from the options.
#[derive(Debug, PartialEq)]
struct Target {
    url: String,
    origin: String,
    /// `url` with the token masked: status lines end up in terminals, logs and bug reports.
    shown: String,
}

impl Target {
    fn new(opts: &TailOptions) -> anyhow::Result<Target> {
        let (url, default_origin) = socket_url(&opts.url, opts.token.as_deref())?;
        let origin = opts.origin.clone().unwrap_or(default_origin);
        let (shown, _) = build_socket_url(&opts.url, opts.token.as_ref().map(|_| "***"))?;
        Ok(Target { url, origin, shown })
    }
}

/// Turns what a user types (`http://localhost:8080`, `ws://host/api/ws/notifications`) into the
/// `ws://` URL to dial, plus the origin a page served by that same host would send.
fn socket_url(input: &str, token: Option<&str>) -> anyhow::Result<(String, String)> {
    let token = token.map(|token| utf8_percent_encode(token, QUERY_VALUE).to_string());
    build_socket_url(input, token.as_deref())
}

/// [`socket_url`] with the token already in its query form (or masked, for display).
fn build_socket_url(input: &str, token: Option<&str>) -> anyhow::Result<(String, String)> {
    let input = input.trim();
    let (scheme, rest) = input.split_once("://").with_context(|| {
        format!("{input:?} is not a URL; expected http://host:port or ws://host:port/path")
    })?;
    let is_http = match scheme.to_ascii_lowercase().as_str() {
        "ws" => false,
        "http" => true,
        "wss" => bail!("wss:// is not supported by tail; use ws://"),
        "https" => bail!("https:// is not supported by tail (no TLS); use http:// or ws://"),
        other => bail!("unsupported scheme {other}:// in {input:?}; use http:// or ws://"),
    };
    // A fragment never reaches the server, so it has no place in a socket URL.
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path_and_query) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.is_empty() {
        bail!("{input:?} has no host");
    }
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, query),
        None => (path_and_query, ""),
    };
    let path = if is_http && (path.is_empty() || path == "/") {
        DEFAULT_SOCKET_PATH
    } else {
        path
    };

    let mut url = format!("ws://{authority}{path}");
    let mut params: Vec<String> = Vec::new();
    if !query.is_empty() {
        params.push(query.to_owned());
    }
    if let Some(token) = token {
        params.push(format!("{TOKEN_PARAM}={token}"));
    }
    if !params.is_empty() {
        url.push('?');
        url.push_str(&params.join("&"));
    }
    Ok((url, format!("http://{host}")))
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

enum Attempt {
    Connected(Box<Socket>),
    /// Worth trying again: the server may be restarting or the network flapping.
    Retry(String),
    /// Trying again would get the same answer (bad URL, refused credentials or origin).
    Fatal(anyhow::Error),
}

async fn dial(target: &Target) -> Attempt {
    let mut request = match target.url.as_str().into_client_request() {
        Ok(request) => request,
        Err(err) => return Attempt::Fatal(anyhow!("invalid socket URL {}: {err}", target.shown)),
    };
    match HeaderValue::from_str(&target.origin) {
        Ok(origin) => request.headers_mut().insert(ORIGIN, origin),
        Err(_) => return Attempt::Fatal(anyhow!("invalid origin {:?}", target.origin)),
    };
    match timeout(HANDSHAKE_TIMEOUT, connect_async(request)).await {
        Err(_) => Attempt::Retry(format!("handshake timed out after {HANDSHAKE_TIMEOUT:?}")),
        Ok(Ok((ws, _response))) => Attempt::Connected(Box::new(ws)),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .and_then(|body| std::str::from_utf8(body).ok())
                .map(|body| body.trim().chars().take(200).collect::<String>())
                .filter(|body| !body.is_empty())
                .map(|body| format!(": {body}"))
                .unwrap_or_default();
            let transient = matches!(
                status,
                StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS
            );
            if status.is_client_error() && !transient {
                let hint = match status {
                    StatusCode::UNAUTHORIZED => " (check --token)",
                    StatusCode::FORBIDDEN => " (check --token and --origin)",
                    StatusCode::NOT_FOUND => " (is the socket path right?)",
                    _ => "",
                };
                Attempt::Fatal(anyhow!(
                    "{} refused the socket with HTTP {status}{hint}{body}",
                    target.shown
                ))
            } else {
                Attempt::Retry(format!("HTTP {status}{body}"))
            }
        }
        Ok(Err(err @ tungstenite::Error::Url(_))) => {
            Attempt::Fatal(anyhow!("cannot dial {}: {err}", target.shown))
        }
        Ok(Err(err)) => Attempt::Retry(err.to_string()),
    }
}

enum SessionEnd {
    Shutdown,
    OutputClosed,
    /// `welcomed` says the server accepted us, so the backoff can start over.
    Lost {
        why: String,
        welcomed: bool,
    },
}

/// What survives reconnects: the channels and the last `seq` printed on each.
struct Tail<O> {
    channels: Vec<String>,
    last_seq: HashMap<String, u64>,
    out: O,
}

impl<O: FnMut(&str) -> io::Result<()>> Tail<O> {
    /// One connection's life, from handshake to close; `Err` only for a refusal worth exiting on.
    async fn session<F: Future<Output = ()>>(
        &mut self,
        mut ws: Box<Socket>,
        mut shutdown: Pin<&mut F>,
    ) -> anyhow::Result<SessionEnd> {
        let ws: &mut Socket = &mut ws;
        let mut welcomed = false;
        // The `since` sent per channel on this connection, to judge the `subscribed` answer.
        let mut sent_since: HashMap<String, Option<u64>> = HashMap::new();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let idle = sleep(IDLE_LIMIT);
        tokio::pin!(idle);
        let lost = |why: String, welcomed: bool| Ok(SessionEnd::Lost { why, welcomed });

        loop {
            let frame = tokio::select! {
                _ = &mut shutdown => {
                    close_politely(ws).await;
                    return Ok(SessionEnd::Shutdown);
                }
                _ = ping.tick() => {
                    if let Err(err) = ws.send(Message::text(r#"{"op":"ping"}"#)).await {
                        return lost(err.to_string(), welcomed);
                    }
                    continue;
                }
                _ = &mut idle => {
                    return lost(format!("no frame from the server for {IDLE_LIMIT:?}"), welcomed);
                }
                frame = ws.next() => frame,
            };
            idle.as_mut().reset(Instant::now() + IDLE_LIMIT);
            let text = match frame {
                None => return lost("connection closed".into(), welcomed),
                Some(Err(err)) => return lost(err.to_string(), welcomed),
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    // Lets tungstenite send its close reply before we drop the socket.
                    let _ = timeout(CLOSE_WAIT, ws.close(None)).await;
                    return close_outcome(frame, welcomed);
                }
                Some(Ok(Message::Binary(_))) => {
                    status(format_args!("ignoring a binary frame"));
                    continue;
                }
                Some(Ok(_)) => continue,
            };
            let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
                status(format_args!(
                    "ignoring a frame that is not JSON: {}",
                    text.as_str()
                ));
                continue;
            };
            let op = value.get("op").and_then(Value::as_str);
            match op {
                Some("welcome") => {
                    let user = value.get("user").and_then(Value::as_str);
                    status(format_args!(
                        "welcome: client_id={} user={}",
                        str_field(&value, "client_id"),
                        user.unwrap_or("anonymous")
                    ));
                    if !welcomed {
                        welcomed = true;
                        if let Err(err) = self.subscribe_all(ws, &mut sent_since).await {
                            return lost(err.to_string(), welcomed);
                        }
                    }
                }
                Some("subscribed") => self.on_subscribed(&value, &sent_since),
                Some("reset") => {
                    let channel = str_field(&value, "channel");
                    // The server's numbering no longer connects to ours (history gap or restart):
                    // accept whatever seq comes next instead of skipping it as a duplicate.
                    self.last_seq.remove(channel);
                    status(format_args!(
                        "reset on {channel}: events were missed, a real client would refetch"
                    ));
                }
                Some("error") => status(format_args!(
                    "server error {} (ref {}): {}",
                    str_field(&value, "code"),
                    str_field(&value, "ref"),
                    str_field(&value, "message")
                )),
                Some("pong") => {}
                Some(other) => status(format_args!("ignoring unknown op {other:?}")),
                None => {
                    if !self.on_event(&value, text.as_str())? {
                        close_politely(ws).await;
                        return Ok(SessionEnd::OutputClosed);
                    }
                }
            }
        }
    }

    async fn subscribe_all(
        &self,
        ws: &mut Socket,
        sent_since: &mut HashMap<String, Option<u64>>,
    ) -> Result<(), tungstenite::Error> {
        for channel in &self.channels {
            let since = self.last_seq.get(channel).copied();
            let mut op = json!({"op": "subscribe", "channel": channel});
            if let Some(since) = since {
                op["since"] = since.into();
            }
            // `send` flushes, so the subscribe is on the wire before we wait for answers.
            ws.send(Message::text(op.to_string())).await?;
            sent_since.insert(channel.clone(), since);
        }
        Ok(())
    }

    fn on_subscribed(&mut self, value: &Value, sent_since: &HashMap<String, Option<u64>>) {
        let channel = str_field(value, "channel");
        let seq = value.get("seq").and_then(Value::as_u64);
        let recovered = value.get("recovered").and_then(Value::as_bool) == Some(true);
        let since = sent_since.get(channel).copied().flatten();
        let note = match (since, seq) {
            (Some(since), Some(seq)) if seq < since => {
                // The server counts from below what we saw: it lost its history (restart of a
                // memory broker). Follow its numbering or every new event would look old.
                self.last_seq.insert(channel.to_owned(), seq);
                ", behind what we saw (server restarted?); following from there"
            }
            (Some(_), _) if recovered => ", missed events replayed",
            (Some(_), _) => ", missed events could NOT be replayed",
            (None, Some(seq)) => {
                // Events after this point start at seq+1; knowing that lets a later resume ask
                // for exactly the gap even if no event arrived before the connection dropped.
                self.last_seq.entry(channel.to_owned()).or_insert(seq);
                ""
            }
            (None, None) => "",
        };
        let at = seq.map(|seq| format!(" at seq {seq}")).unwrap_or_default();
        status(format_args!("subscribed to {channel}{at}{note}"));
    }

    /// Prints an event unless it was already printed; `Ok(false)` when stdout has gone away.
    fn on_event(&mut self, value: &Value, text: &str) -> anyhow::Result<bool> {
        let channel = value.get("channel").and_then(Value::as_str);
        let seq = value.get("seq").and_then(Value::as_u64);
        if let (Some(channel), Some(seq)) = (channel, seq) {
            match self.last_seq.get(channel).copied() {
                Some(last) if seq <= last => return Ok(true),
                Some(last) if seq > last + 1 => status(format_args!(
                    "gap on {channel}: seq {} to {} never arrived",
                    last + 1,
                    seq - 1
                )),
                _ => {}
            }
            self.last_seq.insert(channel.to_owned(), seq);
        }
        match (self.out)(text) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(err) => Err(anyhow!(err).context("writing an event to stdout")),
        }
    }
}

/// Policy-style closes mean "you may not have this": reconnecting would loop on the same refusal.
fn close_outcome(frame: Option<CloseFrame>, welcomed: bool) -> anyhow::Result<SessionEnd> {
    let Some(frame) = frame else {
        return Ok(SessionEnd::Lost {
            why: "server closed the socket".into(),
            welcomed,
        });
    };
    let code = u16::from(frame.code);
    let reason = if frame.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", frame.reason)
    };
    if matches!(code, 1002 | 1003 | 1007 | 1008 | 1009 | 1010 | 4000..=4999) {
        bail!("server closed the socket with code {code}{reason}; not retrying");
    }
    Ok(SessionEnd::Lost {
        why: format!("server closed the socket with code {code}{reason}"),
        welcomed,
    })
}

/// Sends our close and waits briefly for the server's, so the server logs a clean goodbye.
async fn close_politely(ws: &mut Socket) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "tail stopped".into(),
    };
    let _ = timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(message)) = ws.next().await {
                if message.is_close() {
                    break;
                }
            }
        }
    })
    .await;
}

fn str_field<'v>(value: &'v Value, key: &str) -> &'v str {
    value.get(key).and_then(Value::as_str).unwrap_or("?")
}

fn status(message: std::fmt::Arguments<'_>) {
    eprintln!("tail: {message}");
}

#[cfg(test)]
mod tests;
