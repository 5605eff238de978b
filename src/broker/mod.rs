//! The one seam for scale-out: numbering, remembering and fanning out events.
//!
//! A `Broker` gives each event a per-channel `seq` with no gaps, keeps a bounded history per channel
//! for resume, and pushes events to the local subscribers (sockets and SSE streams) of this process.
//! Everything above this trait is the same on one node or fifty; `memory.rs` is the single-node
//! implementation, `redis/` the one for many replicas sharing a Redis.

mod fanout;
pub mod memory;
pub mod redis;
mod subscriber;
mod subscribers;

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;

use crate::config::ExcludeOrigin;
use crate::events::EventDraft;
use crate::events::envelope::Framed;

pub use fanout::FanOut;
pub use memory::MemoryBroker;
pub use redis::RedisBroker;
pub use subscriber::{ConnId, CutOff, Delivery, Subscriber};
pub(crate) use subscribers::Subscribers;

/// A numbered event on one channel, serialized once and shared by every subscriber.
#[derive(Debug)]
pub struct Event {
    pub channel: Arc<str>,
    pub seq: u64,
    pub event_type: Arc<str>,
    /// The JSON envelope and the WebSocket frame around it, shared by every subscriber.
    pub frame: Framed,
    pub origin_client: Option<Arc<str>>,
    pub actor: Option<Arc<str>>,
    /// When this process published it: the start of `syncgate_event_delivery_seconds`.
    pub published_at: Instant,
}

impl Event {
    /// The event as a server's WebSocket text frame, written as it is to every socket that
    /// takes it directly (`ws::outlet`).
    pub fn ws_frame(&self) -> &[u8] {
        self.frame.ws()
    }

    /// Whether `exclude_origin` keeps this event from a subscriber (the echo of its own mutation).
    pub fn excluded_for(&self, policy: ExcludeOrigin, client_id: &str, user: Option<&str>) -> bool {
        match policy {
            ExcludeOrigin::None => false,
            ExcludeOrigin::Connection => self.origin_client.as_deref() == Some(client_id),
            ExcludeOrigin::User => match (self.actor.as_deref(), user) {
                (Some(actor), Some(user)) => actor == user,
                _ => false,
            },
        }
    }
}

/// A new event's `id`: a UUIDv7 of the event's own time (`ts`, milliseconds) with random bits,
/// written into `buf`.
///
/// Why not `Uuid::now_v7`: it reads the clock again and orders ids within a millisecond through a
/// context shared by every event loop; ids only need to be unique (the `seq` orders events), and
/// the draft already carries the time.
pub fn event_id(ts: u64, buf: &mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &str {
    let nanos = (ts % 1000) as u32 * 1_000_000;
    let at = uuid::Timestamp::from_unix(uuid::NoContext, ts / 1000, nanos);
    uuid::Uuid::new_v7(at).hyphenated().encode_lower(buf)
}

/// What `subscribe` found: the channel's current position and what the subscriber missed.
#[derive(Debug)]
pub struct SubscribeOutcome {
    /// The channel's latest `seq` when the subscription took effect.
    pub seq: u64,
    /// Events after `since`, oldest first, to deliver before anything live.
    pub replay: Vec<Arc<Event>>,
    pub resume: Resume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// No `since` was given: live events only.
    Fresh,
    /// Every event after `since` is in `replay`.
    Recovered,
    /// History cannot cover the gap: the client must refetch everything, then live events follow.
    Reset,
}

/// A published event's position on one of its channels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    pub channel: String,
    pub seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Numbering, history and local fan-out. Methods never hold a lock across an await.
pub trait Broker: Send + Sync + 'static {
    /// Publishes one draft to each of its channels and returns their new positions.
    fn publish(&self, draft: EventDraft) -> BoxFuture<'_, Result<Vec<Published>, BrokerError>>;

    /// Registers `subscriber` on `channel` and collects what it missed after `since`, atomically:
    /// no event is both replayed and delivered live, and none falls between the two.
    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
        since: Option<u64>,
        subscriber: &'a Subscriber,
    ) -> BoxFuture<'a, Result<SubscribeOutcome, BrokerError>>;

    fn unsubscribe(&self, channel: &str, id: ConnId);

    /// The latest `seq` of each channel (0 for one never published to), for `X-Sync-Position`.
    fn positions<'a>(&'a self, channels: &'a [String]) -> BoxFuture<'a, Vec<u64>>;

    /// A number that changes whenever any channel's position may have changed, for a broker whose
    /// positions all change in this process; then a `positions` answer stays true for as long as
    /// this number does. `None` (the default) when another process may move them (Redis).
    fn positions_version(&self) -> Option<u64> {
        None
    }

    /// Whether the broker can publish right now (`/readyz`, `syncgate_broker_up`).
    fn is_up(&self) -> bool;

    /// What `publish` does, done before returning, for a broker with no I/O to wait for: the
    /// response path then publishes itself instead of handing the draft to the publisher's task,
    /// without the future and the list of positions nobody there reads. False (the default),
    /// having done nothing, when the broker must go through `publish`.
    fn publish_here(&self, _draft: &EventDraft) -> bool {
        false
    }
}

// A panic while a lock is held cannot leave channel state half-written in a way later readers would
// trip on (every update is a single push or counter bump), so a poisoned lock is still usable.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_distinct_v7_uuids_of_the_event_time() {
        let ts = 1_764_000_000_123;
        let (mut a, mut b) = ([0; 36], [0; 36]);
        let (a, b) = (event_id(ts, &mut a), event_id(ts, &mut b));
        assert_ne!(a, b);
        for id in [a, b] {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version_num(), 7);
            let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
            assert_eq!(secs * 1000 + u64::from(nanos) / 1_000_000, ts);
            assert_eq!(id, uuid.hyphenated().to_string());
        }
    }
}
