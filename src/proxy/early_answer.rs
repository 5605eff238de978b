//! An upstream socket that keeps an early answer readable after the upstream hangs up.
//!
//! An upstream may answer a request before reading its body (a 404, a 413, a 401) and then close
//! its socket with the body's unread bytes still queued, which resets the connection. The
//! answer is by then in our receive queue, but hyper's client fails the whole exchange on the
//! first write error, and which comes first, reading the answer or the next body write failing,
//! is a race: the client got a 502 about a quarter of the time. So a write to an upstream that
//! reset or closed the connection is reported as done and its bytes dropped; the read side then
//! yields the queued answer, or the reset if there was none, and hyper reports that instead.
//! Nothing can hang on this: once the peer is gone the read side ends too.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream to the upstream whose writes stop failing once the upstream has hung up.
pub struct UpstreamStream {
    stream: TcpStream,
    hung_up: bool,
}

impl UpstreamStream {
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            hung_up: false,
        }
    }

    /// Turns a write error meaning "the upstream is gone" into a write of the whole buffer.
    fn absorb(&mut self, result: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match result {
            Poll::Ready(Err(e)) if hung_up(&e) => {
                tracing::debug!(error = %e, "the upstream hung up while we wrote; reading its answer");
                self.hung_up = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

fn hung_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
    )
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.hung_up {
            return Poll::Ready(Ok(buf.len()));
        }
        let result = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.absorb(result, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.hung_up {
            return Poll::Ready(Ok(len));
        }
        let result = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.absorb(result, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hung_up {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.hung_up {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The peer answers, then resets the connection with our bytes unread: every later write
    /// "succeeds" and the answer is still read whole.
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
        let mut up = UpstreamStream::new(TcpStream::connect(addr).await.unwrap());
        up.write_all(b"head").await.unwrap();
        up.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        peer.await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for _ in 0..64 {
            up.write_all(&[b'x'; 64 * 1024]).await.unwrap();
        }
        assert!(up.hung_up, "the reset never surfaced as a write error");
        let mut answer = [0u8; 6];
        up.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"answer");
    }
}
