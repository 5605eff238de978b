//! One upstream connection: its socket, the bytes read and not used yet, and the request upload.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use http_body::Body as _;
use tokio::net::TcpStream;

use super::wire;
use crate::body::Body;
use crate::drained;

/// First read size; doubled while reads fill it (a download), up to `MAX_READ`.
const FIRST_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;
/// Body bytes gathered behind the head before a write, so a small request is one `write`.
const GATHER: usize = 64 * 1024;

pub struct Conn {
    tcp: TcpStream,
    /// Read from the upstream and not consumed yet.
    pub rd: BytesMut,
    read_size: usize,
    /// The upstream hung up while we wrote (see `Upload::poll`).
    hung_up: bool,
    /// Where the headers of the answer being read lie (kept to save an allocation per answer).
    pub spans: Vec<wire::Span>,
    /// A short read may drop the socket's readiness (see `crate::drained`).
    forget: bool,
}

impl Conn {
    pub fn new(tcp: TcpStream) -> Conn {
        Conn {
            tcp,
            rd: BytesMut::new(),
            read_size: FIRST_READ,
            hung_up: false,
            spans: Vec::new(),
            forget: drained::may_forget_readiness(),
        }
    }

    /// Whether an idle connection can carry another request: the upstream has neither closed it
    /// (its keep-alive ran out) nor sent anything unasked. Costs one `recv` at most, and none
    /// when the last read emptied the socket (see `crate::drained`) and nothing came since.
    pub fn still_open(&mut self) -> bool {
        if self.hung_up || !self.rd.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.tcp.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.tcp.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads what the upstream has sent into `rd`; `Ok(0)` when it closed the connection.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            if self.rd.capacity() - self.rd.len() < self.read_size / 2 {
                self.rd.reserve(self.read_size);
            }
            let room = self.rd.capacity() - self.rd.len();
            match drained::try_read(&self.tcp, &mut self.rd, room, self.forget) {
                Ok(n) => {
                    if n == room && self.read_size < MAX_READ {
                        self.read_size *= 2;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// A write error that means the upstream is gone: its answer, if it sent one first, is still in
/// our receive queue.
fn hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

/// Why an upload stopped.
#[derive(Debug)]
pub enum UploadError {
    /// The client's body failed (it went away, or sent less than it announced).
    Client(String),
    Write(io::Error),
}

/// The request going upstream: the head, then the client's body as it arrives.
///
/// An upstream may answer before it has read the body (a 404, a 413, a 401) and then close its
/// socket with the body unread, which resets the connection: the answer is by then in our
/// receive queue, and a write error must not hide it. So a write to an upstream that hung up
/// drops the rest of the upload, and the reader gets the answer, or the reset if there was none.
pub struct Upload {
    out: Vec<u8>,
    sent: usize,
    body: Option<Body>,
    chunked: bool,
}

impl Upload {
    /// `head` is the serialized request head; `body` is `None` for a request without one.
    pub fn new(head: Vec<u8>, body: Option<Body>, chunked: bool) -> Upload {
        Upload {
            out: head,
            sent: 0,
            body,
            chunked,
        }
    }

    /// A bodiless request, to be sent again on a fresh connection: its head is still whole (a
    /// request with a body is never sent twice, see `link::exchange`).
    pub fn rewind(&mut self) {
        debug_assert!(
            self.body.is_none() && !self.chunked,
            "only a bodiless request"
        );
        self.sent = 0;
    }

    pub fn is_done(&self) -> bool {
        self.body.is_none() && self.sent == self.out.len()
    }

    /// Sends what it can; ready once everything is sent (or dropped because the upstream hung up).
    pub fn poll(&mut self, conn: &mut Conn, cx: &mut Context<'_>) -> Poll<Result<(), UploadError>> {
        loop {
            while let Some(body) = self.body.as_mut() {
                if self.out.len() - self.sent >= GATHER {
                    break;
                }
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => break,
                    Poll::Ready(Some(Ok(frame))) => {
                        // Trailers of the client's body are not forwarded.
                        if let Ok(data) = frame.into_data() {
                            if self.chunked {
                                wire::chunk(&data, &mut self.out);
                            } else {
                                self.out.extend_from_slice(&data);
                            }
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.body = None;
                        return Poll::Ready(Err(UploadError::Client(e.to_string())));
                    }
                    Poll::Ready(None) => {
                        if self.chunked {
                            self.out.extend_from_slice(wire::LAST_CHUNK);
                        }
                        self.body = None;
                    }
                }
            }
            if conn.hung_up {
                self.body = None;
                self.sent = self.out.len();
            }
            if self.sent == self.out.len() {
                if self.body.is_none() {
                    return Poll::Ready(Ok(()));
                }
                // Waiting for the client's next bytes (its body registered the waker).
                self.out.clear();
                self.sent = 0;
                return Poll::Pending;
            }
            match conn.tcp.try_write(&self.out[self.sent..]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(conn.tcp.poll_write_ready(cx)).map_err(UploadError::Write)?;
                }
                Err(e) if hung_up(&e) => {
                    tracing::debug!(error = %e, "the upstream hung up while we wrote; reading its answer");
                    conn.hung_up = true;
                }
                Err(e) => return Poll::Ready(Err(UploadError::Write(e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The peer answers, then resets the connection with our bytes unread: the upload ends
    /// without an error and the answer is still read whole.
    #[tokio::test]
    async fn an_answer_sent_before_a_reset_is_still_read_after_writes_fail() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 4];
            s.read_exact(&mut head).await.unwrap();
            s.write_all(b"answer").await.unwrap();
            // Unread bytes at close make the kernel send a reset.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            drop(s);
        });
        let mut conn = Conn::new(TcpStream::connect(addr).await.unwrap());
        let big = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(
            futures_util::stream::iter((0..128).map(|_| {
                Ok(http_body::Frame::data(bytes::Bytes::from(vec![
                    b'x';
                    64 * 1024
                ])))
            })),
        ));
        let mut upload = Upload::new(b"head".to_vec(), Some(big), false);
        std::future::poll_fn(|cx| upload.poll(&mut conn, cx))
            .await
            .unwrap();
        peer.await.unwrap();
        assert!(conn.hung_up, "the reset never surfaced as a write error");
        assert!(upload.is_done());
        while conn.rd.len() < 6 {
            let n = std::future::poll_fn(|cx| conn.poll_fill(cx)).await.unwrap();
            assert!(n > 0, "the answer was lost");
        }
        assert_eq!(&conn.rd[..6], b"answer");
    }
}
