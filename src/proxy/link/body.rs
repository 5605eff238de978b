//! The upstream's answer body, read straight off its connection as the client takes it.
//!
//! When the body ends as its framing says, the connection goes back to its link for the client
//! connection's next request, before the last bytes are handed on: by the time the client can
//! send that request, the connection is there. Anything else (the client went away, the
//! upstream closed early, the upload was cut short) drops the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::conn::{Conn, Upload};
use super::wire::{Chunked, Framing, Step};
use super::{Home, Idle};
use crate::body::BoxError;

pub struct UpstreamBody {
    conn: Option<Conn>,
    reading: Reading,
    /// The rest of the request, when the upstream answered before reading all of it.
    upload: Option<Upload>,
    keep_alive: bool,
    home: Home,
    authority: http::uri::Authority,
}

enum Reading {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

impl UpstreamBody {
    pub(super) fn new(
        conn: Conn,
        framing: Framing,
        upload: Option<Upload>,
        keep_alive: bool,
        home: Home,
        authority: http::uri::Authority,
    ) -> UpstreamBody {
        let reading = match framing {
            Framing::Empty => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Chunked::Size),
            Framing::UntilClose => Reading::UntilClose,
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            reading,
            upload,
            keep_alive,
            home,
            authority,
        };
        if matches!(body.reading, Reading::Done) {
            body.finish();
        }
        body
    }

    /// The body is whole: the connection goes home if it can carry another request.
    fn finish(&mut self) {
        self.reading = Reading::Done;
        let Some(conn) = self.conn.take() else {
            return;
        };
        let upload_done = self.upload.as_ref().is_none_or(Upload::is_done);
        if self.keep_alive && upload_done && conn.rd.is_empty() {
            self.home.put(Idle {
                authority: self.authority.clone(),
                conn,
            });
        }
    }

    /// Moves the upload on while the answer streams; a failed upload only means the connection
    /// cannot be reused.
    fn drive_upload(&mut self, cx: &mut Context<'_>) {
        let (Some(upload), Some(conn)) = (self.upload.as_mut(), self.conn.as_mut()) else {
            return;
        };
        match upload.poll(conn, cx) {
            Poll::Ready(Ok(())) => self.upload = None,
            Poll::Ready(Err(e)) => {
                tracing::debug!(error = ?e, "upload ended under a streaming answer");
                self.upload = None;
                self.keep_alive = false;
            }
            Poll::Pending => {}
        }
    }

    fn next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, io::Error>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(left) => {
                    if !conn.rd.is_empty() {
                        let take =
                            usize::try_from(*left).map_or(conn.rd.len(), |l| l.min(conn.rd.len()));
                        let data = conn.rd.split_to(take).freeze();
                        *left -= take as u64;
                        if *left == 0 {
                            self.finish();
                        }
                        return Poll::Ready(Some(Ok(data)));
                    }
                }
                Reading::UntilClose => {
                    if !conn.rd.is_empty() {
                        return Poll::Ready(Some(Ok(conn.rd.split().freeze())));
                    }
                }
                Reading::Chunked(state) => match state.step(&mut conn.rd) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(data))),
                    Ok(Step::Moved) => {
                        if *state == Chunked::Done {
                            self.finish();
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    Ok(Step::NeedMore) => {}
                    Err(e) => return Poll::Ready(Some(Err(io::Error::other(e)))),
                },
            }
            // Nothing buffered: read more.
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(self.reading, Reading::UntilClose) => {
                    self.reading = Reading::Done;
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the end of the body",
                    ))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.upload.is_some() {
            this.drive_upload(cx);
        }
        match ready!(this.next(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => {
                this.reading = Reading::Done;
                this.conn = None;
                Poll::Ready(Some(Err(Box::new(e))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
