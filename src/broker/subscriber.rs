//! The broker's handle on one local connection: a bounded queue plus a cut-off signal.
//!
//! Fan-out never waits on a socket. When a connection's queue is full it is marked slow and told to
//! go away (close 1013); it resumes with `since` on reconnect, so cutting it loses nothing, and it
//! never slows the other subscribers of the channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};

use super::Event;
use crate::config::ExcludeOrigin;
use crate::ws::outlet::Outlet;

pub type ConnId = u64;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Cheap to clone; the broker keeps one clone per subscribed channel.
#[derive(Debug, Clone)]
pub struct Subscriber {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    id: ConnId,
    client_id: Arc<str>,
    user: Option<Arc<str>>,
    exclude: ExcludeOrigin,
    tx: mpsc::Sender<Arc<Event>>,
    /// The event loop the connection lives on (`workers`), where offers to it are made.
    home: Option<usize>,
    /// Where events may be written at once, skipping the queue (a WebSocket; see `ws::outlet`).
    outlet: Option<Arc<Outlet>>,
    /// `LIVE`, or the `CutOff` it was sent away for (set once: the first reason wins).
    state: AtomicU8,
    cut_off: Notify,
}

/// Why a subscriber was told to go away; picks the close reason and the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CutOff {
    /// Its queue was full: it could not keep up.
    SlowConsumer = 1,
    /// The broker lost track of what it delivered (e.g. Redis was down): resume to repair it.
    Resync = 2,
}

/// `Inner::state` of a subscriber nobody has cut off.
const LIVE: u8 = 0;

impl CutOff {
    /// The `syncgate_ws_dropped_total{reason}` label.
    pub fn label(self) -> &'static str {
        match self {
            CutOff::SlowConsumer => "slow_consumer",
            CutOff::Resync => "resync",
        }
    }

    /// The close frame's reason text.
    pub fn close_reason(self) -> &'static str {
        match self {
            CutOff::SlowConsumer => "send queue full; reconnect and resume",
            CutOff::Resync => "delivery interrupted; reconnect and resume",
        }
    }
}

/// The result of offering an event to a subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Queued,
    /// `exclude_origin` says this subscriber caused the event.
    Skipped,
    /// The queue was full: the subscriber has been told to disconnect.
    CutOff,
    /// The connection is gone; drop this subscriber.
    Gone,
}

impl Subscriber {
    /// Returns the handle and the receiving end the connection drains.
    pub fn new(
        client_id: Arc<str>,
        user: Option<Arc<str>>,
        exclude: ExcludeOrigin,
        queue: usize,
    ) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
        Subscriber::with_outlet(client_id, user, exclude, queue, None)
    }

    /// A subscriber whose connection can also take events directly (`ws::outlet`).
    pub fn with_outlet(
        client_id: Arc<str>,
        user: Option<Arc<str>>,
        exclude: ExcludeOrigin,
        queue: usize,
        outlet: Option<Arc<Outlet>>,
    ) -> (Subscriber, mpsc::Receiver<Arc<Event>>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let inner = Inner {
            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
            client_id,
            user,
            exclude,
            tx,
            home: crate::workers::current_loop(),
            outlet,
            state: AtomicU8::new(LIVE),
            cut_off: Notify::new(),
        };
        (
            Subscriber {
                inner: Arc::new(inner),
            },
            rx,
        )
    }

    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    pub fn home(&self) -> Option<usize> {
        self.inner.home
    }

    /// The connection has dropped its queue (it is gone).
    pub fn is_gone(&self) -> bool {
        self.inner.tx.is_closed()
    }

    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    pub fn user(&self) -> Option<&str> {
        self.inner.user.as_deref()
    }

    /// Whether `exclude_origin` hides this event from this subscriber.
    pub fn excludes(&self, event: &Event) -> bool {
        event.excluded_for(self.inner.exclude, &self.inner.client_id, self.user())
    }

    /// Never waits: a full queue cuts the subscriber off instead.
    pub fn offer(&self, event: &Arc<Event>) -> Delivery {
        if self.excludes(event) {
            return Delivery::Skipped;
        }
        if self.is_cut_off() {
            return Delivery::CutOff;
        }
        match &self.inner.outlet {
            Some(outlet) => outlet.offer(event, || self.enqueue(event)),
            None => self.enqueue(event),
        }
    }

    fn enqueue(&self, event: &Arc<Event>) -> Delivery {
        match self.inner.tx.try_send(Arc::clone(event)) {
            Ok(()) => Delivery::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.cut_off(CutOff::SlowConsumer);
                Delivery::CutOff
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Gone,
        }
    }

    /// Marks the subscriber cut off and wakes its connection, which closes with 1013 so the client
    /// reconnects and resumes. The first reason given wins.
    pub fn cut_off(&self, why: CutOff) {
        let set =
            self.inner
                .state
                .compare_exchange(LIVE, why as u8, Ordering::AcqRel, Ordering::Acquire);
        if set.is_ok() {
            self.inner.cut_off.notify_one();
        }
    }

    /// Why it was cut off (meaningful once `cut_off_signal` completed).
    pub fn cut_off_reason(&self) -> CutOff {
        if self.inner.state.load(Ordering::Acquire) == CutOff::Resync as u8 {
            CutOff::Resync
        } else {
            CutOff::SlowConsumer
        }
    }

    pub fn is_cut_off(&self) -> bool {
        self.inner.state.load(Ordering::Relaxed) != LIVE
    }

    /// Completes once the subscriber has been cut off.
    pub async fn cut_off_signal(&self) {
        self.inner.cut_off.notified().await
    }
}
