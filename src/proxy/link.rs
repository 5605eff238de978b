//! Each client connection forwards over an upstream connection of its own, driven by the
//! client connection's task.
//!
//! Why not the pooled client for every request: it hands each request to a separate connection
//! task and the response head back (two task wake-ups, across threads about half the time, plus
//! a pool lock and a key hash), which cost more CPU per request than hyper's parsing. An HTTP/1
//! client connection sends one request at a time, so one upstream connection per client
//! connection never queues, and polling it from the same task keeps every wake-up local.
//!
//! The upstream connection opens on the client connection's first forwarded request and closes
//! with it, or earlier when the upstream ends it (its keep-alive timeout); the next request then
//! opens a fresh one. A request the upstream never saw, because a reused connection was closed
//! under it, is retried once on a fresh connection, as the pooled client does; so is a bodiless
//! GET, HEAD, OPTIONS, PUT or DELETE whose reused connection failed after it went out (the
//! upstream's keep-alive ran out just then), as nginx does. A POST or PATCH never is.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::early_answer::UpstreamStream;
use super::upstream::UpstreamError;
use crate::body::Body;
use crate::config::UpstreamConfig;

type Driven = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The request side, shared by the requests of one client connection.
pub struct Link {
    idle: Mutex<Option<Idle>>,
    opened: Arc<Opened>,
}

/// Connections opened since the driver last looked. They are only ever opened while the client
/// connection's task polls its service, so the task polls the driver right after (see
/// `server::serve`) and no waker is needed: a flag makes the common case one atomic load.
#[derive(Default)]
struct Opened {
    any: AtomicBool,
    list: Mutex<Vec<Driven>>,
}

/// An upstream connection between two requests, with the target it was opened to (a reload may
/// change the upstream).
struct Idle {
    authority: Authority,
    sender: http1::SendRequest<Body>,
}

/// Polls the link's upstream connections; the client connection's task polls it beside hyper's
/// server connection, and dropping it closes them.
pub struct Driver {
    opened: Arc<Opened>,
    running: FuturesUnordered<Driven>,
}

/// A link and the driver that must be polled, in the same task and after every poll of the
/// link's user, for its connections to make progress.
pub fn pair() -> (Link, Driver) {
    let opened = Arc::new(Opened::default());
    (
        Link {
            idle: Mutex::new(None),
            opened: Arc::clone(&opened),
        },
        Driver {
            opened,
            running: FuturesUnordered::new(),
        },
    )
}

impl Link {
    /// Sends a request whose URI is in origin form; `cfg.request_timeout` bounds the connect and
    /// the wait for the response head, so long downloads still stream.
    pub async fn send(
        &self,
        req: Request<Body>,
        cfg: &UpstreamConfig,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(cfg.request_timeout, self.exchange(req, cfg)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(cfg.request_timeout)),
        }
    }

    async fn exchange(
        &self,
        req: Request<Body>,
        cfg: &UpstreamConfig,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let (mut sender, reused) = match self.reusable(&cfg.authority).await {
            Some(sender) => (sender, true),
            None => (self.connect(cfg).await?, false),
        };
        let again = if reused { replayable(&req) } else { None };
        let req = match sender.try_send_request(req).await {
            Ok(resp) => return Ok(self.keep(sender, &cfg.authority, resp)),
            Err(mut e) => match (e.take_message(), again) {
                // The upstream closed the reused connection before reading this request.
                (Some(req), _) if reused => req,
                // It closed it as the request went out (its keep-alive ran out just then): a
                // request that changes nothing and has no body is sent again, as nginx does.
                (None, Some(again)) => {
                    tracing::debug!(error = %e.into_error(), "reused upstream connection failed; sending again");
                    again
                }
                _ => return Err(UpstreamError::Protocol(e.into_error().to_string())),
            },
        };
        let mut sender = self.connect(cfg).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.keep(sender, &cfg.authority, resp)),
            Err(e) => Err(UpstreamError::Protocol(e.to_string())),
        }
    }

    /// The idle connection, once it has finished its previous exchange, if it still leads to
    /// `authority`.
    async fn reusable(&self, authority: &Authority) -> Option<http1::SendRequest<Body>> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        if idle.authority != *authority || idle.sender.is_closed() {
            return None;
        }
        let mut sender = idle.sender;
        sender.ready().await.ok()?;
        Some(sender)
    }

    fn keep(
        &self,
        sender: http1::SendRequest<Body>,
        authority: &Authority,
        resp: Response<Incoming>,
    ) -> Response<Incoming> {
        *self.idle.lock().unwrap_or_else(PoisonError::into_inner) = Some(Idle {
            authority: authority.clone(),
            sender,
        });
        resp
    }

    async fn connect(
        &self,
        cfg: &UpstreamConfig,
    ) -> Result<http1::SendRequest<Body>, UpstreamError> {
        let target = cfg.authority.as_str();
        let stream =
            match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(target)).await {
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
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(UpstreamStream::new(stream)))
            .await
            .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        let driven: Driven = Box::pin(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        self.opened
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(driven);
        self.opened.any.store(true, Ordering::Release);
        Ok(sender)
    }
}

/// A copy of a bodiless request whose method is idempotent, to send again if a reused
/// connection fails under it. POST, PATCH and LOCK are never repeated: the upstream may have
/// acted on the first one.
fn replayable(req: &Request<Body>) -> Option<Request<Body>> {
    use http::Method;
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    if !idempotent || !req.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(crate::body::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

impl Driver {
    /// Polls every connection the link opened; never finishes (the connections end with the
    /// client connection's task, which drops the driver).
    pub fn poll_connections(&mut self, cx: &mut Context<'_>) {
        if self.opened.any.swap(false, Ordering::Acquire) {
            let fresh = std::mem::take(
                &mut *self
                    .opened
                    .list
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            self.running.extend(fresh);
        }
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {}
    }
}
