//! A connection that hears of shutdown without asking on every wake-up.
//!
//! Every client connection must start a graceful shutdown when the process is told to stop, even
//! while idle between requests. Racing the connection against `watch::Receiver::changed` in a
//! `select!` does that, but polls the shutdown signal (a waiter registered, a lock taken) and
//! draws a random branch order each time the connection wakes, which is twice per proxied request:
//! a cost of several hundred instructions per request for a signal that fires once. Here the
//! signal gets a waker of its own, and is polled again only when that waker has fired.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

pin_project! {
    /// Runs `conn` to its end; when `signal` completes, calls `on_signal` on it once (hyper's
    /// `graceful_shutdown`) and goes on running it.
    pub struct UntilSignal<C, S, F> {
        #[pin]
        conn: C,
        #[pin]
        signal: S,
        on_signal: Option<F>,
        heard: Arc<Heard>,
        signal_waker: Waker,
    }
}

/// Set by the signal's waker; the connection task's own waker, to pass the wake-up on.
#[derive(Default)]
struct Heard {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Heard {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<C, S, F> UntilSignal<C, S, F>
where
    C: Future,
    S: Future<Output = ()>,
    F: FnOnce(Pin<&mut C>),
{
    pub fn new(conn: C, signal: S, on_signal: F) -> UntilSignal<C, S, F> {
        let heard = Arc::new(Heard::default());
        // Polled the first time, so that the signal registers its waker.
        heard.woken.store(true, Ordering::Relaxed);
        UntilSignal {
            conn,
            signal,
            on_signal: Some(on_signal),
            signal_waker: Waker::from(Arc::clone(&heard)),
            heard,
        }
    }
}

impl<C, S, F> Future for UntilSignal<C, S, F>
where
    C: Future,
    S: Future<Output = ()>,
    F: FnOnce(Pin<&mut C>),
{
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if this.on_signal.is_some() {
            this.heard.task.register(cx.waker());
            if this.heard.woken.swap(false, Ordering::Acquire) {
                let mut signal_cx = Context::from_waker(this.signal_waker);
                if this.signal.as_mut().poll(&mut signal_cx).is_ready()
                    && let Some(on_signal) = this.on_signal.take()
                {
                    on_signal(this.conn.as_mut());
                }
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::{oneshot, watch};

    /// A connection that counts its polls and ends when released, saying whether it was told to
    /// shut down by then.
    struct Conn {
        polls: Arc<AtomicUsize>,
        shutting_down: bool,
        release: oneshot::Receiver<()>,
    }

    impl Future for Conn {
        type Output = bool;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            match Pin::new(&mut self.release).poll(cx) {
                Poll::Ready(_) => Poll::Ready(self.shutting_down),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    fn until_signal(
        conn: Conn,
        mut rx: watch::Receiver<bool>,
    ) -> UntilSignal<Conn, impl Future<Output = ()>, impl FnOnce(Pin<&mut Conn>)> {
        let signal = async move {
            let _ = rx.changed().await;
        };
        UntilSignal::new(conn, signal, |conn: Pin<&mut Conn>| {
            conn.get_mut().shutting_down = true;
        })
    }

    #[tokio::test]
    async fn an_idle_connection_hears_the_signal_and_finishes_after_it() {
        let (tx, rx) = watch::channel(false);
        let (release, released) = oneshot::channel();
        let polls = Arc::new(AtomicUsize::new(0));
        let conn = Conn {
            polls: Arc::clone(&polls),
            shutting_down: false,
            release: released,
        };
        let task = tokio::spawn(until_signal(conn, rx));
        tokio::task::yield_now().await;
        let idle_polls = polls.load(Ordering::Relaxed);
        assert!(idle_polls > 0, "never polled");
        tx.send(true).expect("receiver alive");
        // The signal woke the idle connection, which was told to shut down, and polled it.
        for _ in 0..100 {
            if polls.load(Ordering::Relaxed) > idle_polls {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            polls.load(Ordering::Relaxed) > idle_polls,
            "not woken by the signal"
        );
        release.send(()).expect("connection alive");
        assert!(
            task.await.expect("no panic"),
            "ended without hearing the signal"
        );
    }

    #[tokio::test]
    async fn a_connection_that_ends_first_never_hears_it() {
        let (_tx, rx) = watch::channel(false);
        let (release, released) = oneshot::channel();
        release.send(()).expect("receiver alive");
        let conn = Conn {
            polls: Arc::default(),
            shutting_down: false,
            release: released,
        };
        assert!(!until_signal(conn, rx).await);
    }
}
