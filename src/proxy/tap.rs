//! A response body wrapper that keeps a bounded copy of what streams through it.
//!
//! The client gets every frame as soon as the upstream sends it; the copy (at most
//! `event_body_max_bytes`) is handed to a callback once the body ends, or is dropped early, so an
//! event can be built without the client ever waiting for it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// Called once with the copied prefix and whether it is the whole body.
pub type OnDone = Box<dyn FnOnce(&[u8], bool) + Send>;

pin_project! {
    pub struct Tap<B> {
        #[pin]
        inner: B,
        copy: Vec<u8>,
        limit: usize,
        truncated: bool,
        on_done: Option<OnDone>,
    }

    impl<B> PinnedDrop for Tap<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // The client went away before the end: the mutation still happened upstream.
            if let Some(done) = this.on_done.take() {
                done(this.copy, false);
            }
        }
    }
}

impl<B> Tap<B> {
    pub fn new(inner: B, limit: usize, on_done: OnDone) -> Tap<B> {
        Tap {
            inner,
            copy: Vec::new(),
            limit,
            truncated: false,
            on_done: Some(on_done),
        }
    }
}

impl<B> Body for Tap<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let mut this = this;
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && !*this.truncated
                {
                    if this.copy.len() + data.len() > *this.limit {
                        *this.truncated = true;
                        *this.copy = Vec::new();
                    } else {
                        this.copy.extend_from_slice(data);
                    }
                }
                // hyper stops polling once a sized body reports its end, so `None` may never come.
                if this.inner.is_end_stream()
                    && let Some(done) = this.on_done.take()
                {
                    done(this.copy, !*this.truncated);
                }
            }
            Poll::Ready(None) => {
                if let Some(done) = this.on_done.take() {
                    done(this.copy, !*this.truncated);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(done) = this.on_done.take() {
                    done(this.copy, false);
                }
            }
            Poll::Pending => {}
        }
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
        let tap = Tap::new(
            body,
            limit,
            Box::new(move |b, complete| {
                *seen2.lock().unwrap() = Some((b.to_vec(), complete));
            }),
        );
        let out = tap.collect().await.unwrap().to_bytes();
        let got = seen.lock().unwrap().take();
        (String::from_utf8(out.to_vec()).unwrap(), got)
    }

    #[tokio::test]
    async fn client_gets_everything_and_copy_is_whole_under_the_limit() {
        let (out, seen) = run(&["{\"id\":", "42}"], 100).await;
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
            Box::new(move |b: &[u8], complete| {
                *seen2.lock().unwrap() = Some((b.to_vec(), complete));
            }),
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
    async fn over_the_limit_the_copy_is_marked_incomplete() {
        let (out, seen) = run(&["0123456789", "abcdef"], 12).await;
        assert_eq!(out, "0123456789abcdef");
        assert_eq!(seen.map(|(_, complete)| complete), Some(false));
    }
}
