//! Each client connection forwards over an upstream connection of its own, spoken by hand.
//!
//! Why not the pooled client for every request: it hands each request to a separate connection
//! task and the response head back (two task wake-ups, across threads about half the time, plus
//! a pool lock and a key hash), which cost more CPU per request than parsing. An HTTP/1 client
//! connection sends one request at a time, so one upstream connection per client connection
//! never queues. And why not hyper's client connection on it: its dispatch channel, connection
//! future and request/response conversions cost as much again as the bytes on the wire. The
//! request is written straight from its head (`wire`), the answer read into a buffer whose slices
//! become the header values and the body (`body`), all inside the client connection's task.
//!
//! The upstream connection opens on the client connection's first forwarded request and closes
//! with it, or earlier when the upstream ends it (its keep-alive timeout); the next request then
//! opens a fresh one. A reused connection the upstream has closed is noticed before the request
//! goes out and replaced; a bodiless GET, HEAD, OPTIONS, PUT or DELETE whose reused connection
//! fails after it went out (the upstream's keep-alive ran out just then) is sent again on a fresh
//! one, as nginx does. A POST or PATCH never is.

mod body;
mod conn;
pub mod names;
mod wire;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;

use http::uri::Authority;
use http::{HeaderValue, Method, Response, header, request};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Answer;
use super::upstream::UpstreamError;
use super::verbatim::Verbatim;
use crate::body::Body;
use crate::config::UpstreamConfig;
use crate::timer::Spare;
use body::UpstreamBody;
use conn::{Conn, Upload, UploadError};
/// The answer's head reader, for the fuzz harness (`fuzz/src/lib.rs`, `answer_head`).
pub use wire::{Head, Lines, response_head};
/// The client side (`crate::front`) frames its answers and reads its lengths the same way.
pub use wire::{Span, chunk, chunk_size_line, header_line, locate, parse_length, spans_to_map};

/// The request side, shared by the requests of one client connection.
pub struct Link {
    home: Home,
    /// The `request_timeout` timer, kept from one request to the next (see `crate::timer`).
    timer: Spare,
}

/// Where the connection waits between two requests: the link takes it for a request, the
/// answer's body puts it back once it has been read to its end.
#[derive(Clone, Default)]
struct Home(Arc<Mutex<Option<Idle>>>);

/// An upstream connection between two requests, with the target it was opened to (a reload may
/// change the upstream).
struct Idle {
    authority: Authority,
    conn: Conn,
}

impl Home {
    fn put(&self, idle: Idle) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(idle);
    }

    fn take(&self) -> Option<Idle> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// How one attempt failed, and whether the upstream can have seen any of its answer.
struct Failure {
    error: UpstreamError,
    before_answer: bool,
}

impl Default for Link {
    fn default() -> Self {
        Self::new()
    }
}

impl Link {
    pub fn new() -> Link {
        Link {
            home: Home::default(),
            timer: Spare::default(),
        }
    }

    /// Sends a request whose URI is in origin form; `cfg.request_timeout` bounds the connect and
    /// the wait for the response head, so long downloads still stream.
    ///
    /// `X-Forwarded-For` (with `peer_ip`), `-Proto`, `-Host` and a missing `Host` are added as
    /// the head is written. `lines`: the request's header lines that `front` kept as bytes.
    pub async fn send(
        &self,
        parts: &request::Parts,
        body: Body,
        lines: Option<Box<Verbatim>>,
        cfg: &UpstreamConfig,
        peer_ip: &HeaderValue,
    ) -> Result<Answer, UpstreamError> {
        let deadline = Instant::now() + cfg.request_timeout;
        let mut timer = self.timer.take(deadline);
        let mut exchange = std::pin::pin!(self.exchange(parts, body, lines, cfg, peer_ip));
        let result = std::future::poll_fn(|cx| {
            if let Poll::Ready(result) = exchange.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            match Pin::new(&mut timer).poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(UpstreamError::Timeout(cfg.request_timeout))),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        self.timer.put(timer);
        result
    }

    async fn exchange(
        &self,
        parts: &request::Parts,
        body: Body,
        lines: Option<Box<Verbatim>>,
        cfg: &UpstreamConfig,
        peer_ip: &HeaderValue,
    ) -> Result<Answer, UpstreamError> {
        let has_body = !body.is_end_stream();
        // A body without a declared length (the client sent it chunked) goes on chunked.
        let chunked = has_body
            && lines.as_ref().is_none_or(|l| l.length.is_none())
            && !parts.headers.contains_key(header::CONTENT_LENGTH);
        // Room for the head, the lines the link adds (about 100 bytes) and a small body, which
        // goes out in the same write: growing the buffer costs a copy and a reallocation.
        let kept = lines.as_ref().map_or(0, |l| l.len());
        let small_body = lines
            .as_ref()
            .and_then(|l| l.length)
            .filter(|n| *n <= 1024)
            .unwrap_or(0) as usize;
        let mut head = Vec::with_capacity(192 + 48 * (parts.headers.len() + kept) + small_body);
        let fwd = wire::Forwarded {
            peer_ip,
            default_host: cfg.authority.as_str(),
        };
        wire::request_head(parts, lines.as_deref(), chunked, &fwd, &mut head);
        drop(lines);
        let replayable = !has_body && idempotent(&parts.method);
        let mut upload = Upload::new(head, has_body.then_some(body), chunked);
        let (mut conn, mut reused) = match self.reusable(&cfg.authority) {
            Some(conn) => (conn, true),
            None => (connect(cfg).await?, false),
        };
        loop {
            match roundtrip(&mut conn, &mut upload, &parts.method).await {
                Ok(head) => return Ok(self.answer(conn, upload, head, &cfg.authority)),
                Err(f) if reused && f.before_answer && replayable => {
                    tracing::debug!(error = %f.error, "reused upstream connection failed; sending again");
                    upload.rewind();
                    conn = connect(cfg).await?;
                    reused = false;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// The idle connection, if it still leads to `authority` and the upstream has not closed it.
    fn reusable(&self, authority: &Authority) -> Option<Conn> {
        let mut idle = self.home.take()?;
        // Byte for byte first: it is the same config's text nearly always, and `Authority`'s
        // own comparison folds case byte by byte (a few hundred instructions per request).
        let same = idle.authority.as_str() == authority.as_str() || idle.authority == *authority;
        (same && idle.conn.still_open()).then_some(idle.conn)
    }

    fn answer(&self, conn: Conn, upload: Upload, head: Head, authority: &Authority) -> Answer {
        let upload = (!upload.is_done()).then_some(upload);
        let body = UpstreamBody::new(
            conn,
            head.framing,
            upload,
            head.keep_alive,
            self.home.clone(),
            authority.clone(),
        );
        let body: Body = if body.is_end_stream() {
            crate::body::empty()
        } else {
            body.boxed_unsync()
        };
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        match head.lines {
            Lines::Verbatim(lines) => Answer {
                response,
                lines: Some(lines),
            },
            Lines::Map(map) => {
                *response.headers_mut() = map;
                Answer::from(response)
            }
        }
    }
}

/// Sends the request (the upload may still be going when the answer's head arrives) and reads
/// the answer's head.
async fn roundtrip(conn: &mut Conn, upload: &mut Upload, method: &Method) -> Result<Head, Failure> {
    let protocol = |before_answer: bool, e: String| Failure {
        error: UpstreamError::Protocol(e),
        before_answer,
    };
    let mut uploading = true;
    std::future::poll_fn(|cx| {
        if uploading {
            match upload.poll(conn, cx) {
                Poll::Ready(Ok(())) => uploading = false,
                Poll::Ready(Err(UploadError::Client(e))) => {
                    return Poll::Ready(Err(protocol(false, format!("client body: {e}"))));
                }
                Poll::Ready(Err(UploadError::Write(e))) => {
                    return Poll::Ready(Err(protocol(true, e.to_string())));
                }
                Poll::Pending => {}
            }
        }
        loop {
            match wire::response_head(&mut conn.rd, method, &mut conn.spans) {
                Ok(Some(head)) => return Poll::Ready(Ok(head)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(protocol(false, e.to_string()))),
            }
            let nothing_yet = conn.rd.is_empty();
            match std::task::ready!(conn.poll_fill(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(protocol(
                        nothing_yet,
                        "the upstream closed the connection without answering".into(),
                    )));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(protocol(nothing_yet, e.to_string()))),
            }
        }
    })
    .await
}

async fn connect(cfg: &UpstreamConfig) -> Result<Conn, UpstreamError> {
    let target = cfg.authority.as_str();
    let stream = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(target)).await {
        Err(_) => {
            return Err(UpstreamError::Connect(format!(
                "{target}: no answer within {:?}",
                cfg.connect_timeout
            )));
        }
        Ok(Err(e)) => return Err(UpstreamError::Connect(format!("{target}: {e}"))),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    Ok(Conn::new(stream))
}

/// Methods that may be sent twice: POST, PATCH and LOCK never are, as the upstream may have acted
/// on the first one.
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}
