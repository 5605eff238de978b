//! A response body wrapper that keeps a bounded prefix of what streams through it.
//!
//! The client gets every frame as soon as the upstream sends it; the prefix (at most
//! `event_body_max_bytes`) is handed to a callback when the body is dropped, with whether the
//! body had ended whole by then, so an event is built without the client waiting for it.
//!
//! Why at the drop and not at the end: the writer drops the body once the answer's last bytes
//! are written, and the end comes before that, with the last frame. Called at the end, the
//! event's work (reading the body, numbering, storing, handing to subscribers) ran between the
//! last frame and the write that sends it, and every mutation's answer waited for it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

pin_project! {
    /// `F` is called once with the kept prefix and whether it is the whole body. A type rather
    /// than a boxed closure: one allocation less per tapped answer.
    pub struct Tap<B, F: FnOnce(&[u8], bool)> {
        #[pin]
        inner: B,
        kept: Kept,
        limit: usize,
        on_done: Option<F>,
        // Set when the body has ended: whether `kept` is all of it.
        ended: Option<bool>,
    }

    impl<B, F: FnOnce(&[u8], bool)> PinnedDrop for Tap<B, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Not ended: the client went away first, and the mutation still happened upstream.
            if let Some(done) = this.on_done.take() {
                done(this.kept.bytes(), this.ended.unwrap_or(false));
            }
        }
    }
}

/// What has been kept of the body so far. Most JSON answers come in one frame, which is kept
/// as it is (a reference count); only a second frame makes a copy.
enum Kept {
    Nothing,
    One(Bytes),
    Copied(Vec<u8>),
    /// Over the limit: nothing is kept, and the event gets no body.
    TooLong,
}

impl Kept {
    fn add(&mut self, data: &Bytes, limit: usize) {
        let len = match self {
            Kept::Nothing => 0,
            Kept::One(b) => b.len(),
            Kept::Copied(v) => v.len(),
            Kept::TooLong => return,
        };
        if len + data.len() > limit {
            *self = Kept::TooLong;
            return;
        }
        match self {
            Kept::Nothing => *self = Kept::One(data.clone()),
            Kept::One(first) => {
                let mut copy = Vec::with_capacity(len + data.len());
                copy.extend_from_slice(first);
                copy.extend_from_slice(data);
                *self = Kept::Copied(copy);
            }
            Kept::Copied(v) => v.extend_from_slice(data),
            Kept::TooLong => {}
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Kept::One(b) => b,
            Kept::Copied(v) => v,
            Kept::Nothing | Kept::TooLong => &[],
        }
    }

    fn whole(&self) -> bool {
        !matches!(self, Kept::TooLong)
    }
}

impl<B, F: FnOnce(&[u8], bool)> Tap<B, F> {
    pub fn new(inner: B, limit: usize, on_done: F) -> Tap<B, F> {
        Tap {
            inner,
            kept: Kept::Nothing,
            limit,
            on_done: Some(on_done),
            ended: None,
        }
    }
}

impl<B, F> Body for Tap<B, F>
where
    B: Body<Data = Bytes>,
    F: FnOnce(&[u8], bool),
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        if this.ended.is_some() {
            return polled;
        }
        let ended = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.kept.add(data, *this.limit);
                }
                // hyper stops polling once a sized body reports its end, so `None` may never come.
                this.inner.is_end_stream().then(|| this.kept.whole())
            }
            Poll::Ready(None) => Some(this.kept.whole()),
            Poll::Ready(Some(Err(_))) => Some(false),
            Poll::Pending => None,
        };
        *this.ended = ended;
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};
    use std::sync::{Arc, Mutex};

    async fn run(chunks: &[&'static str], limit: usize) -> (String, Option<(Vec<u8>, bool)>) {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        let body = StreamBody::new(futures_util::stream::iter(frames));
        let tap = Tap::new(body, limit, move |b: &[u8], complete| {
            *seen2.lock().unwrap() = Some((b.to_vec(), complete));
        });
        let out = tap.collect().await.unwrap().to_bytes();
        let got = seen.lock().unwrap().take();
        (String::from_utf8(out.to_vec()).unwrap(), got)
    }

    #[tokio::test]
    async fn client_gets_everything_and_copy_is_whole_under_the_limit() {
        let (out, seen) = run(&["{\"id\":", "42}"], 100).await;
        assert_eq!(out, "{\"id\":42}");
        assert_eq!(seen, Some((b"{\"id\":42}".to_vec(), true)));
        let (out, seen) = run(&["{\"id\":", "4", "2}"], 9).await;
        assert_eq!(out, "{\"id\":42}");
        assert_eq!(seen, Some((b"{\"id\":42}".to_vec(), true)));
    }

    /// A sized body that ends with its one frame, as hyper hands over most JSON answers.
    async fn run_whole(body: &'static str, limit: usize) -> (String, Option<(Vec<u8>, bool)>) {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        let tap = Tap::new(
            http_body_util::Full::new(Bytes::from_static(body.as_bytes())),
            limit,
            move |b: &[u8], complete| {
                *seen2.lock().unwrap() = Some((b.to_vec(), complete));
            },
        );
        let out = tap.collect().await.unwrap().to_bytes();
        let got = seen.lock().unwrap().take();
        (String::from_utf8(out.to_vec()).unwrap(), got)
    }

    #[tokio::test]
    async fn a_body_in_one_frame_is_handed_over_whole_or_marked_incomplete_over_the_limit() {
        let (out, seen) = run_whole("{\"id\":7}", 100).await;
        assert_eq!(out, "{\"id\":7}");
        assert_eq!(seen, Some((b"{\"id\":7}".to_vec(), true)));
        let (out, seen) = run_whole("{\"id\":7}", 7).await;
        assert_eq!(out, "{\"id\":7}");
        assert_eq!(seen.map(|(_, complete)| complete), Some(false));
    }

    #[tokio::test]
    async fn the_copy_is_handed_over_when_the_writer_drops_the_ended_body_not_before() {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        let mut tap = Box::pin(Tap::new(
            http_body_util::Full::new(Bytes::from_static(b"{\"id\":7}")),
            100,
            move |b: &[u8], complete| {
                *seen2.lock().unwrap() = Some((b.to_vec(), complete));
            },
        ));
        let frame = tap.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "{\"id\":7}");
        assert!(tap.is_end_stream());
        // The writer has the whole answer and has yet to send it: no event work yet.
        assert_eq!(*seen.lock().unwrap(), None);
        assert!(tap.frame().await.is_none());
        assert_eq!(*seen.lock().unwrap(), None);
        drop(tap);
        assert_eq!(*seen.lock().unwrap(), Some((b"{\"id\":7}".to_vec(), true)));
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_hands_over_an_incomplete_copy() {
        let seen = Arc::new(Mutex::new(None));
        let seen2 = Arc::clone(&seen);
        let frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = ["{\"id\":", "7}"]
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        let mut tap = Box::pin(Tap::new(
            StreamBody::new(futures_util::stream::iter(frames)),
            100,
            move |b: &[u8], complete| {
                *seen2.lock().unwrap() = Some((b.to_vec(), complete));
            },
        ));
        tap.frame().await.unwrap().unwrap();
        drop(tap);
        assert_eq!(*seen.lock().unwrap(), Some((b"{\"id\":".to_vec(), false)));
    }

    #[tokio::test]
    async fn over_the_limit_the_copy_is_marked_incomplete() {
        let (out, seen) = run(&["0123456789", "abcdef"], 12).await;
        assert_eq!(out, "0123456789abcdef");
        assert_eq!(seen.map(|(_, complete)| complete), Some(false));
    }
}
