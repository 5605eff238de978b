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

use std::cell::Cell;
use std::sync::Arc;

use super::{Delivery, Event, Subscriber};
use crate::one_or_many::OneOrMany;
use crate::workers::{self, Batch};

pub struct FanOut {
    /// A slot per loop once an offer is queued (every event is fanned out, most channels have
    /// nobody on them, and an empty fan-out then costs nothing); empty until then.
    batches: Vec<Option<Batch>>,
}

thread_local! {
    /// The last fan-out's slots, every one emptied: the next fan-out on this thread takes them
    /// rather than allocating its own (the batches leave for other loops; the slots never do).
    static SPARE: Cell<Vec<Option<Batch>>> = const { Cell::new(Vec::new()) };
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
            self.batches = SPARE.take();
            self.batches.resize_with(workers::loop_count(), || None);
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
        *batch = Some(OneOrMany::push(
            batch.take(),
            (sub.clone(), Arc::clone(event)),
        ));
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
        if self.batches.is_empty() {
            return;
        }
        for (home, batch) in self.batches.iter_mut().enumerate() {
            if let Some(batch) = batch.take() {
                workers::relay(home, batch);
            }
        }
        SPARE.set(std::mem::take(&mut self.batches));
    }
}
