//! Timers kept per connection and lent out again with a new deadline.
//!
//! A tokio timer is a timer-wheel insert on its first poll and a removal (under the driver's
//! lock) when dropped, while moving a registered timer's deadline later only records the new
//! deadline. A timer made and dropped for every request (hyper's header-read timeout, our
//! upstream request timeout) paid the insert and the removal each time; a connection's requests
//! come one after another, so one timer per connection, lent out and handed back, serves them all.
//! Even recording a later deadline (a clock-to-tick conversion and an atomic update) is skipped:
//! the timer stays set for the earliest deadline it was lent with, and when it fires before the
//! deadline of the loan that holds it, it is moved then, once per timeout's length instead of
//! once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// A connection's spare timer, between two uses.
#[derive(Default)]
pub struct Spare(Mutex<Option<Pin<Box<Sleep>>>>);

impl Spare {
    /// A timer that completes at `deadline`: the spare one when it is in, or a new one when it is
    /// out (lent, or never made).
    pub fn take(&self, deadline: tokio::time::Instant) -> Armed {
        let spare = self.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        let sleep = match spare {
            // Set later than this loan ends: only moving it earlier keeps the loan's deadline.
            Some(mut sleep) if sleep.deadline() > deadline => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            Some(sleep) => sleep,
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Armed { sleep, deadline }
    }

    pub fn put(&self, armed: Armed) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(armed.sleep);
    }
}

/// A timer on loan until `deadline`. The timer under it may be set earlier: then it fires early,
/// and is moved to `deadline` and waited on again.
pub struct Armed {
    sleep: Pin<Box<Sleep>>,
    deadline: tokio::time::Instant,
}

impl Future for Armed {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if self.sleep.deadline() >= self.deadline {
                return Poll::Ready(());
            }
            let deadline = self.deadline;
            self.sleep.as_mut().reset(deadline);
        }
    }
}

/// hyper's timer for one server connection, lending out the connection's spare.
#[derive(Clone, Default)]
pub struct ConnTimer(Arc<Spare>);

impl hyper::rt::Timer for ConnTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    /// Tokio's clock, which a test may pause.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Lent {
            sleep: Some(self.0.take(deadline.into())),
            home: Arc::clone(&self.0),
        })
    }
}

/// A spare out on loan; it goes back to its connection when hyper drops it.
struct Lent {
    sleep: Option<Armed>,
    home: Arc<Spare>,
}

impl Future for Lent {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.sleep.as_mut() {
            Some(sleep) => Pin::new(sleep).poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for Lent {}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.home.put(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[tokio::test(start_paused = true)]
    async fn a_lent_timer_fires_at_its_new_deadline_each_time_it_is_lent() {
        let timer = ConnTimer::default();
        let start = tokio::time::Instant::now();
        // Lent, dropped before it fires, lent again: the second loan keeps its own deadline,
        // though the timer under it is still set for the first's and fires then.
        let first = timer.sleep(Duration::from_secs(5));
        drop(first);
        assert!(timer.0.0.lock().unwrap().is_some(), "the timer came back");
        // Timers fire on the millisecond after their deadline.
        let about = |secs: u64| {
            let elapsed = start.elapsed();
            assert!(
                elapsed >= Duration::from_secs(secs)
                    && elapsed <= Duration::from_secs(secs) + Duration::from_millis(5),
                "{elapsed:?} instead of {secs} s"
            );
        };
        let mut second = timer.sleep(Duration::from_secs(15));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            futures_util::FutureExt::now_or_never(&mut second).is_none(),
            "past the first loan's deadline, not the second's"
        );
        second.await;
        about(15);
        // A fired timer lent again waits again.
        timer.sleep(Duration::from_secs(2)).await;
        about(17);
        // An earlier deadline than the last one is honoured too.
        let spare = Spare::default();
        let late = spare.take(tokio::time::Instant::now() + Duration::from_secs(60));
        spare.put(late);
        let early = spare.take(tokio::time::Instant::now() + Duration::from_secs(1));
        early.await;
        about(18);
    }
}
