//! The public listener's HTTP/1.1 server, by hand for plain requests, hyper for everything else.
//!
//! Why: hyper's server side was about half of the instructions of a proxied GET (its dispatch
//! state machine, the service and body plumbing, a header map re-validated, a clock read on every
//! poll), for requests that are nearly all the same shape: a small head, a body of declared length
//! or none, an answer of known length. This loop reads such a head with `httparse` into the
//! connection's buffer (header values are slices of it), lends the socket to the body, and writes
//! the answer's head and a small body in one `write`.
//!
//! Whatever is not plain (see `head`: HTTP/1.0, upgrades, `Expect`, chunked uploads, malformed or
//! oversized heads) is handed to hyper with every byte read so far, and hyper serves the rest of
//! the connection exactly as it served all of them before: WebSocket handshakes, its 400 and 431
//! answers. A connection is handed over at most once, between two requests.
//!
//! Kept from hyper's behaviour: a head must arrive within 15 s of the connection waiting for it
//! (also between two requests of a kept-alive connection); `Date` is added when the answer has
//! none, and the length when it is known; HEAD, 204 and 304 answers carry no body; a client that
//! closes its side while a streamed answer (SSE) waits for its next bytes ends the answer; on
//! shutdown an idle connection closes and a busy one finishes its request with
//! `Connection: close`.

mod answer;
pub mod head;
mod upload;

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{Body, empty, from_incoming};
use crate::drained::{self, ClientSocket};
use crate::graceful::UntilSignal;
use crate::server::{self, ClientConn, HEADER_READ_TIMEOUT, MAX_HEAD_BYTES};
use crate::state::Shared;
use crate::timer::{Armed, Spare};
use answer::Framing;
use head::Parsed;
use upload::{Left, Upload};

/// First size of a connection's read buffer; heads are read into it, up to `MAX_HEAD_BYTES`.
const READ_SIZE: usize = 8 * 1024;
/// Answer bytes gathered before a write: a head and a body up to this size leave in one `write`.
const GATHER: usize = 16 * 1024;
/// Largest rest of an unread request body that is read and dropped to keep the connection.
const DRAIN_MAX: u64 = 1024 * 1024;
/// How long a closing connection reads and drops what its client still sends (see `linger`).
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
/// Bytes a client may send ahead (pipelined requests) while its answer streams; past them the
/// connection stops reading until the answer is done.
const READ_AHEAD: usize = MAX_HEAD_BYTES;

/// Serves one public connection until it ends, the shutdown signal included.
pub async fn serve(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = Arc::new(ClientConn::new(peer));
    let closing = Arc::new(AtomicBool::new(false));
    // For hyper, if the connection is handed over: it hears of the shutdown on its own.
    let handoff_shutdown = shutdown.clone();
    let conn = Conn {
        stream: Arc::new(tcp),
        buf: BytesMut::with_capacity(READ_SIZE),
        spans: Vec::new(),
        out: Vec::new(),
        left: Arc::new(Left::default()),
        forget: drained::may_forget_readiness(),
        timer: Spare::default(),
        closing: Arc::clone(&closing),
    };
    let run = conn.run(shared, client, handoff_shutdown);
    let signal = async move {
        let _ = shutdown.changed().await;
    };
    UntilSignal::new(run, signal, move |_| closing.store(true, Ordering::Release)).await;
}

struct Conn {
    stream: Arc<TcpStream>,
    /// Read and not yet used: the start of the next head, or pipelined requests.
    buf: BytesMut,
    spans: Vec<head::Span>,
    /// The answer's bytes not yet written.
    out: Vec<u8>,
    left: Arc<Left>,
    forget: bool,
    /// The header-read timeout, one timer lent to each wait for a head (see `crate::timer`).
    timer: Spare,
    /// Shutdown: finish the request in flight, take no other.
    closing: Arc<AtomicBool>,
}

/// How a wait for bytes ended.
enum Filled {
    Bytes,
    /// The client closed, the socket failed, the head took too long, or shutdown began.
    Over,
}

impl Conn {
    async fn run(
        mut self,
        shared: Arc<Shared>,
        client: Arc<ClientConn>,
        handoff_shutdown: watch::Receiver<bool>,
    ) {
        loop {
            let mut timer: Option<Armed> = None;
            let plain = loop {
                if !self.buf.is_empty() {
                    match head::parse(&mut self.buf, &mut self.spans, MAX_HEAD_BYTES) {
                        Parsed::Plain(plain) => break Some(plain),
                        Parsed::Partial => {}
                        Parsed::Handoff(taken) => {
                            // hyper has its own header-read timer.
                            drop(timer);
                            return self
                                .hand_over(taken, shared, client, handoff_shutdown)
                                .await;
                        }
                    }
                }
                // The next bytes may be there already (a busy client): no timer for them.
                if let Some(filled) = self.try_fill() {
                    match filled {
                        Filled::Bytes => continue,
                        Filled::Over => break None,
                    }
                }
                let armed = timer.get_or_insert_with(|| {
                    self.timer
                        .take(tokio::time::Instant::now() + HEADER_READ_TIMEOUT)
                });
                match self.fill(armed).await {
                    Filled::Bytes => {}
                    Filled::Over => break None,
                }
            };
            if let Some(timer) = timer {
                self.timer.put(timer);
            }
            let Some(plain) = plain else { return };

            let length = plain.length;
            let body: Body = if length == 0 {
                empty()
            } else {
                let early = self.buf.split_to(self.buf.len().min(length as usize));
                Upload::new(
                    Arc::clone(&self.stream),
                    early.freeze(),
                    length,
                    Arc::clone(&self.left),
                )
                .boxed_unsync()
            };
            let request = plain.request.map(|()| body);
            let method = request.method().clone();
            // Pinned where it is made: the future is large, and moving it costs a copy.
            let mut handling =
                std::pin::pin!(crate::proxy::handle(request, plain.lines, &shared, &client));
            // A bodiless request is given up when its client hangs up while the upstream works
            // on it (as nginx does, and hyper did); a body's reads are the body's own.
            let resp = poll_fn(|cx| {
                if let Poll::Ready(resp) = handling.as_mut().poll(cx) {
                    return Poll::Ready(Some(resp));
                }
                if length == 0 && self.gone(cx) {
                    return Poll::Ready(None);
                }
                Poll::Pending
            })
            .await;
            let (resp, lines) = match resp {
                Some(Ok(answer)) => (answer.response, answer.lines),
                Some(Err(never)) => match never {},
                None => return,
            };
            let unread = self.unread(length);
            // The rest of a body the upstream answered without reading is read and dropped
            // after the answer, as long as it is small enough to be worth the connection.
            let keep = !plain.close && unread <= DRAIN_MAX && !self.closing.load(Ordering::Acquire);
            let (parts, body) = resp.into_parts();
            let framing = answer::head(
                &parts,
                lines.as_deref(),
                &method,
                body.size_hint().exact(),
                !keep,
                &mut self.out,
            );
            drop((parts, lines));
            if self.send_body(body, framing, unread == 0).await.is_err() {
                return;
            }
            let unread = self.unread(length);
            if !keep {
                if unread > 0 {
                    self.linger().await;
                }
                return;
            }
            if unread > 0 && !self.drain(unread).await {
                return;
            }
        }
    }

    /// Bytes of the request's body (of `length`) nobody has read yet.
    fn unread(&self, length: u64) -> u64 {
        // `left` is the last body's: a request without one has none unread.
        if length == 0 { 0 } else { self.left.get() }
    }

    /// Reads and drops the `unread` bytes left of a request body; false when they do not come
    /// within the header-read timeout.
    async fn drain(&mut self, mut unread: u64) -> bool {
        let mut timer = self
            .timer
            .take(tokio::time::Instant::now() + HEADER_READ_TIMEOUT);
        let drained = loop {
            let n = self.buf.len().min(unread as usize);
            let _ = self.buf.split_to(n);
            unread -= n as u64;
            if unread == 0 {
                break true;
            }
            if let Filled::Over = self.fill(&mut timer).await {
                break false;
            }
        };
        self.timer.put(timer);
        drained
    }

    /// Closes a connection whose client may still be sending a body nobody will read: closed at
    /// once with bytes unread, the socket would send a reset, and a client still writing could
    /// lose the answer before reading it. So the write side closes first and what still comes is
    /// read and dropped for a short while (nginx's lingering close).
    async fn linger(&mut self) {
        use tokio::io::AsyncWriteExt;
        let Some(stream) = Arc::get_mut(&mut self.stream) else {
            return;
        };
        let _ = stream.shutdown().await;
        let mut timer = self.timer.take(tokio::time::Instant::now() + LINGER);
        loop {
            self.buf.clear();
            if let Filled::Over = self.fill(&mut timer).await {
                break;
            }
        }
        self.timer.put(timer);
    }

    /// Reads what the socket holds without waiting; `None` when it holds nothing.
    fn try_fill(&mut self) -> Option<Filled> {
        self.make_room();
        match drained::try_read(&self.stream, &mut self.buf, usize::MAX, self.forget) {
            Ok(0) => Some(Filled::Over),
            Ok(_) => Some(Filled::Bytes),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(_) => Some(Filled::Over),
        }
    }

    /// Reads what the socket holds, or registers the task to be woken by its next bytes.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Filled> {
        loop {
            if let Some(filled) = self.try_fill() {
                return Poll::Ready(filled);
            }
            match self.stream.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(Filled::Over),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Waits for bytes of a head, until `timer` fires or shutdown begins.
    async fn fill(&mut self, timer: &mut Armed) -> Filled {
        poll_fn(|cx| {
            if self.closing.load(Ordering::Acquire) {
                return Poll::Ready(Filled::Over);
            }
            if let Poll::Ready(filled) = self.poll_fill(cx) {
                return Poll::Ready(filled);
            }
            match Pin::new(&mut *timer).poll(cx) {
                Poll::Ready(()) => {
                    tracing::debug!("request head not received in time");
                    Poll::Ready(Filled::Over)
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Room for a read; a buffer whose earlier heads are all dropped is reused from its start.
    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
    }

    /// Writes the body after the head in `out`, as `framing` says; an error ends the connection
    /// (the client cannot tell a cut answer from a whole one otherwise).
    async fn send_body(&mut self, body: Body, framing: Framing, watch: bool) -> io::Result<()> {
        let mut body = std::pin::pin!(body);
        let mut sent = 0u64;
        if let Framing::Length(_) | Framing::Chunked = framing {
            loop {
                let polled = poll_fn(|cx| Poll::Ready(body.as_mut().poll_frame(cx))).await;
                let frame = match polled {
                    Poll::Ready(frame) => frame,
                    Poll::Pending => {
                        self.flush().await?;
                        self.next_frame(body.as_mut(), watch).await?
                    }
                };
                let data = match frame {
                    None => break,
                    Some(Err(e)) => return Err(io::Error::other(e)),
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if !data.is_empty() => data,
                        // Trailers are not forwarded (as hyper did not, for HTTP/1.1 answers).
                        _ => continue,
                    },
                };
                sent += data.len() as u64;
                if let Framing::Length(n) = framing
                    && sent > n
                {
                    return Err(io::Error::other("answer body longer than its length"));
                }
                if data.len() < GATHER {
                    match framing {
                        Framing::Chunked => crate::proxy::link::chunk(&data, &mut self.out),
                        _ => self.out.extend_from_slice(&data),
                    }
                    if self.out.len() >= GATHER {
                        self.flush().await?;
                    }
                    continue;
                }
                // A large frame goes out from where it is, not through `out`, which stays small.
                if framing == Framing::Chunked {
                    crate::proxy::link::chunk_size_line(data.len(), &mut self.out);
                }
                self.flush().await?;
                write_all(&self.stream, &data).await?;
                if framing == Framing::Chunked {
                    self.out.extend_from_slice(b"\r\n");
                }
            }
        }
        match framing {
            Framing::Length(n) if sent != n => {
                return Err(io::Error::other("answer body shorter than its length"));
            }
            Framing::Chunked => self.out.extend_from_slice(b"0\r\n\r\n"),
            _ => {}
        }
        self.flush().await
    }

    /// The body's next frame; meanwhile, when the request has been read whole, the client is
    /// watched (see `gone`).
    async fn next_frame(
        &mut self,
        mut body: Pin<&mut Body>,
        watch: bool,
    ) -> io::Result<Option<Result<http_body::Frame<Bytes>, crate::body::BoxError>>> {
        poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                return Poll::Ready(Ok(frame));
            }
            if watch && self.gone(cx) {
                return Poll::Ready(Err(io::Error::other("the client went away")));
            }
            Poll::Pending
        })
        .await
    }

    /// Whether the client has hung up (or its socket failed), reading what it sends ahead
    /// (pipelined requests) into the buffer meanwhile, up to `READ_AHEAD`; when it has not, the
    /// task is woken by its next bytes.
    fn gone(&mut self, cx: &mut Context<'_>) -> bool {
        while self.buf.len() < READ_AHEAD {
            match self.poll_fill(cx) {
                Poll::Ready(Filled::Bytes) => continue,
                Poll::Ready(Filled::Over) => return true,
                Poll::Pending => break,
            }
        }
        false
    }

    async fn flush(&mut self) -> io::Result<()> {
        write_all(&self.stream, &self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// Hyper serves the rest of the connection, starting with the bytes read so far.
    async fn hand_over(
        self,
        taken: Bytes,
        shared: Arc<Shared>,
        client: Arc<ClientConn>,
        shutdown: watch::Receiver<bool>,
    ) {
        // Nothing of this loop's is kept while hyper serves the connection.
        let Some(socket) = self.into_socket(taken) else {
            return;
        };
        let handler = move |req: http::Request<hyper::body::Incoming>| {
            let (shared, client) = (Arc::clone(&shared), Arc::clone(&client));
            // Hyper writes the map only: the upstream's verbatim lines go into it.
            async move {
                crate::proxy::handle(req.map(from_incoming), None, &shared, &client)
                    .await
                    .map(crate::proxy::Answer::into_response)
            }
        };
        server::serve_hyper(socket, handler, shutdown).await;
    }

    /// The socket for hyper, starting with the bytes read so far; `None` when the connection
    /// is closing instead.
    fn into_socket(self, taken: Bytes) -> Option<ClientSocket> {
        if self.closing.load(Ordering::Acquire) {
            return None;
        }
        let early = if taken.is_empty() {
            self.buf.freeze()
        } else {
            let mut early = BytesMut::with_capacity(taken.len() + self.buf.len());
            early.extend_from_slice(&taken);
            early.extend_from_slice(&self.buf);
            early.freeze()
        };
        // No body holds the socket between two requests.
        let tcp = Arc::try_unwrap(self.stream).ok()?;
        Some(ClientSocket::with_early(tcp, early))
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
