//! A request body of declared length, read off the client's socket as the upstream takes it.
//!
//! The connection lends its socket to the body for the length of the request: it reads nothing
//! itself until the body has been read to its end (`Left` says how far that is), so body and
//! connection never race for bytes. A body nobody read to its end leaves the connection unusable
//! for another request, and the connection closes instead.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::drained;

/// Largest read for a body; a larger body comes in several frames.
const MAX_READ: u64 = 64 * 1024;

/// How many bytes of the current request's body are still unread, shared by the body and the
/// connection (one per connection, reused by each request).
#[derive(Default)]
pub struct Left(AtomicU64);

impl Left {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, n: u64) {
        self.0.store(n, Ordering::Release);
    }
}

pub struct Upload {
    stream: Arc<TcpStream>,
    /// Body bytes that came with the head.
    early: Bytes,
    /// Bytes still to read from the socket.
    remaining: u64,
    left: Arc<Left>,
    forget: bool,
}

impl Upload {
    /// `early` holds the body bytes read with the head (at most `length` of them).
    pub fn new(stream: Arc<TcpStream>, early: Bytes, length: u64, left: Arc<Left>) -> Upload {
        left.set(length);
        Upload {
            remaining: length - early.len() as u64,
            stream,
            early,
            left,
            forget: drained::may_forget_readiness(),
        }
    }
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if !this.early.is_empty() {
            let early = std::mem::take(&mut this.early);
            this.left.set(this.remaining);
            return Poll::Ready(Some(Ok(Frame::data(early))));
        }
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = this.remaining.min(MAX_READ) as usize;
        let mut chunk = BytesMut::with_capacity(want);
        loop {
            match drained::try_read(&this.stream, &mut chunk, want, this.forget) {
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection inside the request body",
                    );
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Ok(n) => {
                    this.remaining -= n as u64;
                    this.left.set(this.remaining);
                    return Poll::Ready(Some(Ok(Frame::data(chunk.freeze()))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = std::task::ready!(this.stream.poll_read_ready(cx)) {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                }
                Err(e) => return Poll::Ready(Some(Err(Box::new(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.early.is_empty() && self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.early.len() as u64 + self.remaining)
    }
}
