//! Accept loops for the public and admin listeners, with graceful shutdown designed in.
//!
//! Each connection runs its own task; on shutdown the listener closes, every HTTP connection is told
//! to finish its in-flight request and close, and `serve` returns once all have ended or the grace
//! period is over, whichever comes first.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
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

impl ClientConn {
    pub fn new(peer: SocketAddr) -> ClientConn {
        ClientConn {
            peer_ip: HeaderValue::from_str(&peer.ip().to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
            link: Link::new(),
        }
    }
}

/// A client that has not sent its request head within this time is dropped (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Request heads larger than this are refused with 431 (see `proxy::survey`).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Accepts connections until shutdown and runs `connection` for each on an event loop (see
/// `workers`); then waits up to `grace` for the connections to end.
pub async fn serve<C, F>(
    name: &'static str,
    listener: TcpListener,
    connection: C,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) where
    C: Fn(TcpStream, SocketAddr, watch::Receiver<bool>) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    let mut shutdown = shutdown;
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
        let connection = connection.clone();
        let conn_shutdown = shutdown.clone();
        let alive = alive_tx.clone();
        crate::workers::spawn_connection(async move {
            let _alive = alive;
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot register the accepted socket");
                    return;
                }
            };
            connection(stream, peer, conn_shutdown).await;
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

/// Serves a connection with hyper until it ends: the admin listener's connections, and public
/// ones `front` hands over (with the bytes it read first in `socket`).
pub async fn serve_hyper<H, F>(socket: ClientSocket, handler: H, shutdown: watch::Receiver<bool>)
where
    H: Fn(Request<Incoming>) -> F + Send + 'static,
    F: Future<Output = Result<Response<Body>, Infallible>> + Send + 'static,
{
    let mut shutdown = shutdown;
    let mut builder = http1::Builder::new();
    builder
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES)
        .writev(false)
        .keep_alive(true)
        // Each connection lends its one header-read timer to each request (see `crate::timer`).
        .timer(ConnTimer::default());
    let conn = builder
        .serve_connection(ServedIo::new(socket), service_fn(handler))
        .with_upgrades();
    let signal = async move {
        let _ = shutdown.changed().await;
    };
    let conn = UntilSignal::new(conn, signal, |conn: Pin<&mut _>| {
        conn.graceful_shutdown();
    });
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
