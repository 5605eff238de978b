//! One fan-out's offers, made on the event loop each subscriber lives on.
//!
//! Why: waking a task that lives on another single-threaded loop costs that loop a wake-up
//! syscall per task; a fan-out to 10,000 sockets spread over two loops made 5,000 of them, and
//! cost more CPU per delivery than the loops saved. Offers to another loop's subscribers are
//! collected and handed over in one message per loop, whose relay task then offers them (local
//! wake-ups, no syscall). Without loops (the library inside a test's runtime) offers are direct.
//!
//! Order: a `FanOut` hands its batches over when dropped, and every caller drops it while still
//! holding the lock that numbered the event, so a subscriber's offers reach it in `seq` order.

use std::sync::Arc;

use super::{Delivery, Event, Subscriber};
use crate::workers;

pub struct FanOut {
    /// One batch per loop once an offer is queued (every event is fanned out, most channels
    /// have nobody on them, and an empty fan-out then costs no allocation); empty until then.
    batches: Vec<Vec<workers::Offer>>,
}

impl FanOut {
    pub fn new() -> FanOut {
        FanOut {
            batches: Vec::new(),
        }
    }

    /// Offers `event` to `sub` now, or queues it for `sub`'s loop; a queued offer answers
    /// `Queued` (its queue-full cut-off is decided on arrival).
    pub fn offer(&mut self, sub: &Subscriber, event: &Arc<Event>) -> Delivery {
        let Some(home) = sub.home() else {
            return sub.offer(event);
        };
        if self.batches.is_empty() {
            self.batches = (0..workers::loop_count()).map(|_| Vec::new()).collect();
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
