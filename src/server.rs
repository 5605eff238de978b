//! Accept loops for the public and admin listeners, with graceful shutdown designed in.
//!
//! Each connection runs its own task; on shutdown the listener closes, every HTTP connection is told
//! to finish its in-flight request and close, and `serve` returns once all have ended or the grace
//! period is over, whichever comes first.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::body::Body;
use crate::drained::{ClientSocket, ServedIo};
use crate::graceful::UntilSignal;
use crate::proxy::link::Link;
use crate::timer::ConnTimer;

/// What the requests of one client connection share.
pub struct ClientConn {
    /// The peer's address as the `X-Forwarded-For` entry, formatted once per connection.
    pub peer_ip: HeaderValue,
    /// This connection's own upstream connection (see `proxy::link`).
    pub link: Link,
}

/// A client that has not sent its request head within this time is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Request heads larger than this are refused with 431 (see `proxy::survey`).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

pub async fn serve<H, F>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) where
    H: Fn(Request<Incoming>, Arc<ClientConn>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .writev(false)
        .keep_alive(true);
    // Every connection task holds a sender; when all are dropped, `recv` returns None.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(listener = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The socket is registered with this loop's poller; taken out of it here and registered
        // with the poller of the loop that serves it, or every readiness event would reach that
        // loop through this one (an eventfd write and a second wake-up each time).
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(listener = name, %peer, error = %e, "accepted socket unusable");
                continue;
            }
        };
        let handler = handler.clone();
        let mut builder = builder.clone();
        // Each connection lends its one header-read timer to each request (see `crate::timer`).
        builder.timer(ConnTimer::default());
        let mut conn_shutdown = shutdown.clone();
        let alive = alive_tx.clone();
        crate::workers::spawn_connection(async move {
            let _alive = alive;
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot register the accepted socket");
                    return;
                }
            };
            let client = Arc::new(ClientConn {
                peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                    .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
                link: Link::new(),
            });
            let service = service_fn(move |req| handler(req, Arc::clone(&client)));
            let conn = builder
                .serve_connection(ServedIo::new(ClientSocket::new(stream)), service)
                .with_upgrades();
            let signal = async move {
                let _ = conn_shutdown.changed().await;
            };
            let conn = UntilSignal::new(conn, signal, |conn: Pin<&mut _>| {
                conn.graceful_shutdown();
            });
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    drop(alive_tx);
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        tracing::warn!(
            listener = name,
            ?grace,
            "shutdown grace elapsed with requests still in flight"
        );
    }
}
