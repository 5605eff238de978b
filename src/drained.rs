//! A short read means the socket is drained: said to tokio, it saves the read that would only
//! have answered "would block".
//!
//! Tokio forgets a socket's readiness only when a read fails with `WouldBlock`, so after the read
//! that takes a request (or an upstream answer) whole, the next attempt is a `recv` that fails:
//! one wasted system call per request on each side. With edge-triggered epoll a read that
//! returns less than it asked for has emptied the receive queue (nginx relies on the same rule),
//! so the readiness can be dropped at once. Dropping it is safe only where no other thread can
//! record a new readiness between the read and the drop: on our single-threaded loops (see
//! `workers`), where the I/O driver runs only between task polls. Elsewhere (the library in a
//! test's multi-threaded runtime) nothing changes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Whether sockets polled on this thread may drop their readiness after a short read.
pub fn may_forget_readiness() -> bool {
    crate::workers::current_loop().is_some()
}

/// Tells tokio the socket's receive queue is empty, without a system call.
pub fn forget_readiness(tcp: &TcpStream) {
    let _ = tcp.try_io(Interest::READABLE, || {
        Err::<(), _>(io::ErrorKind::WouldBlock.into())
    });
}

/// Reads what `tcp` holds into `buf`'s spare room, at most `max` bytes, without waiting; a short
/// read drops the socket's readiness when `forget` (see `may_forget_readiness`). `Ok(0)` is the
/// end of the stream; `WouldBlock` means nothing is there.
#[inline]
pub fn try_read(
    tcp: &TcpStream,
    buf: &mut BytesMut,
    max: usize,
    forget: bool,
) -> io::Result<usize> {
    let room = max.min(buf.capacity() - buf.len());
    let n = tcp.try_read_buf(&mut (&mut *buf).limit(room))?;
    // Nothing read is the end of the stream, not an empty queue.
    if forget && n > 0 && n < room {
        forget_readiness(tcp);
    }
    Ok(n)
}

/// What hyper serves a client connection over; an upgraded WebSocket is downcast back to it to get
/// the socket for direct writes (`ws::handshake`), so both name this one type.
pub type ServedIo = hyper_util::rt::TokioIo<ClientSocket>;

/// A client connection's socket that drops its readiness after a short read.
pub struct ClientSocket {
    tcp: TcpStream,
    forget: bool,
    /// Bytes read off the socket before hyper took it over (see `front`), read first.
    early: Bytes,
}

impl ClientSocket {
    pub fn new(tcp: TcpStream) -> ClientSocket {
        ClientSocket::with_early(tcp, Bytes::new())
    }

    pub fn with_early(tcp: TcpStream, early: Bytes) -> ClientSocket {
        ClientSocket {
            tcp,
            forget: may_forget_readiness(),
            early,
        }
    }

    /// The socket, for a WebSocket's direct writes, and the early bytes hyper has not read yet.
    /// Its reads keep the short-read rule only through this wrapper; the WebSocket reads through
    /// `ws::outlet::OutletIo` instead.
    pub fn into_inner(self) -> (TcpStream, Bytes) {
        (self.tcp, self.early)
    }
}

impl AsyncRead for ClientSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.early.is_empty() {
            let n = self.early.len().min(buf.remaining());
            buf.put_slice(&self.early.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let room = buf.remaining();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if self.forget && matches!(result, Poll::Ready(Ok(()))) {
            let read = room - buf.remaining();
            // Nothing read is the end of the stream, not an empty queue.
            if read > 0 && read < room {
                forget_readiness(&self.tcp);
            }
        }
        result
    }
}

impl AsyncWrite for ClientSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// After the readiness is dropped, data that arrives later still wakes the reader: the
    /// next edge sets it again.
    #[tokio::test(flavor = "current_thread")]
    async fn a_forgotten_readiness_comes_back_with_the_next_bytes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut peer = TcpStream::connect(addr).await.unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        peer.write_all(b"one").await.unwrap();
        tcp.readable().await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(tcp.try_read(&mut buf).unwrap(), 3);
        forget_readiness(&tcp);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(
            tcp.poll_read_ready(&mut cx).is_pending(),
            "the readiness was kept"
        );
        peer.write_all(b"two").await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.readable())
            .await
            .expect("new bytes did not wake the reader")
            .unwrap();
        assert_eq!(tcp.try_read(&mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"two");
    }
}
