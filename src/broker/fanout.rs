//! One fan-out's offers, made on the event loop each subscriber lives on.
//!
//! Why: waking a task that lives on another single-threaded loop costs that loop a wake-up
//! syscall per task; a fan-out to 10,000 sockets spread over two loops made 5,000 of them, and
//! cost more CPU per delivery than the loops saved. Offers to another loop's subscribers are
//! collected and handed over in one message per loop, whose relay task then offers them (local
//! wake-ups, no syscall). Without loops (the library inside a test's runtime) offers are direct.
//!
//! Subscribers on the loop that publishes are offered the event at once, with no hand-over,
//! when nothing handed to that loop earlier is still waiting there (`workers::settled`), and at
//! most `DIRECT` of them, so that a large fan-out does not hold the channel's lock for long.
//!
//! Order: a `FanOut` hands its batches over when dropped, and every caller drops it while still
//! holding the lock that numbered the event, so a subscriber's offers reach it in `seq` order. A
//! direct offer keeps that order: under the same lock, no earlier event for its loop is waiting,
//! and a later one can only be offered after this one.

use std::sync::Arc;

use super::{Delivery, Event, Subscriber};
use crate::workers;

/// Most subscribers offered an event at once by the loop that publishes it.
const DIRECT: usize = 64;

pub struct FanOut {
    /// One batch per loop, made at the first offer that needs one.
    batches: Vec<Vec<workers::Offer>>,
    /// The loop this runs on, when its subscribers may be offered the event at once.
    here: Option<usize>,
    direct_left: usize,
}

impl FanOut {
    pub fn new() -> FanOut {
        FanOut {
            batches: Vec::new(),
            here: workers::current_loop().filter(|&l| workers::settled(l)),
            direct_left: DIRECT,
        }
    }

    /// Offers `event` to `sub` now, or queues it for `sub`'s loop; a queued offer answers
    /// `Queued` (its queue-full cut-off is decided on arrival).
    pub fn offer(&mut self, sub: &Subscriber, event: &Arc<Event>) -> Delivery {
        let loops = workers::loop_count();
        let Some(home) = sub.home().filter(|&home| home < loops) else {
            return sub.offer(event);
        };
        if self.here == Some(home) && self.direct_left > 0 {
            self.direct_left -= 1;
            return sub.offer(event);
        }
        if self.batches.is_empty() {
            self.batches.resize_with(loops, Vec::new);
        }
        let Some(batch) = self.batches.get_mut(home) else {
            return sub.offer(event);
        };
        if sub.is_gone() {
            return Delivery::Gone;
        }
        if sub.is_cut_off() {
            return Delivery::CutOff;
        }
        batch.push((sub.clone(), Arc::clone(event)));
        Delivery::Queued
    }
}

impl Default for FanOut {
    fn default() -> Self {
        FanOut::new()
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        for (home, batch) in self.batches.iter_mut().enumerate() {
            if !batch.is_empty() {
                workers::relay(home, std::mem::take(batch));
            }
        }
    }
}
