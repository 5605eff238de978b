//! The scale-out broker: numbering and history in Redis, fan-out to this replica's subscribers.
//!
//! Publishing runs one Lua script (`wire::PUBLISH`) that bumps the channel's counter, appends the
//! frame to the channel's stream (capped at `stream_maxlen`) and announces it on the channel's
//! pub/sub name, all atomically, so every replica sees the same gap-free `seq`. A replica subscribes
//! (pub/sub, RESP3) only to channels its own sockets use; one task (`dispatch.rs`) receives those
//! messages and offers them to the local subscribers, repairing any gap from the stream.
//!
//! `subscribe` registers the local subscriber first, then waits until Redis confirms the pub/sub
//! subscription, then reads the counter (and, with `since`, the stream range): anything published
//! after the confirmation arrives live, anything before it is in the read, and the connection drops
//! the overlap by `seq`.
//!
//! When Redis is unreachable, a replica keeps serving its own sockets: events are numbered locally
//! (continuing from the last `seq` it knew) and delivered to local subscribers only. When Redis
//! returns, such channels are fenced (`wire::FENCE`) and their local subscribers are cut off, so
//! they resume and get `reset` instead of a silent hole.

mod dispatch;
mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ProtocolVersion, PushInfo, Value};
use tokio::sync::mpsc;

use super::{Broker, BrokerError, ConnId, Delivery, Event, Published, Resume, SubscribeOutcome};
use super::{CutOff, FanOut, Subscriber, Subscribers, lock, read, write};
use crate::config::{HistoryConfig, RedisConfig};
use crate::events::{EventDraft, Text};
use wire::Keys;

/// No Redis call may hold up a request longer than this.
const OP_TIMEOUT: Duration = Duration::from_secs(2);
/// Counters outlive the history so a quiet channel keeps its numbering for a week.
const META_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct RedisBroker {
    inner: Arc<Inner>,
}

struct Inner {
    cmd: ConnectionManager,
    pubsub: ConnectionManager,
    keys: Keys,
    publish_script: redis::Script,
    fence_script: redis::Script,
    trim: &'static str,
    maxlen: u64,
    history: HistoryConfig,
    channels: RwLock<HashMap<Arc<str>, Arc<Mutex<LocalChannel>>>>,
    /// Orders SUBSCRIBE/UNSUBSCRIBE so a late UNSUBSCRIBE never undoes a newer SUBSCRIBE.
    control: tokio::sync::Mutex<()>,
    up: AtomicBool,
    /// Channels whose last local subscriber left: the dispatcher unsubscribes them in Redis.
    idle_tx: mpsc::UnboundedSender<Arc<str>>,
}

/// This replica's view of one channel it has local subscribers on.
#[derive(Debug, Default)]
struct LocalChannel {
    subscribers: Subscribers,
    /// The last `seq` offered to local subscribers: the dispatcher's dedupe and gap check.
    dispatched: Option<u64>,
    /// The highest `seq` this replica knows of (counter reads and deliveries).
    known: u64,
    /// Set when this replica numbered events on its own while Redis was away.
    diverged: Option<u64>,
}

impl LocalChannel {
    /// Offers `event` in order: drops duplicates, returns `false` if it would leave a gap.
    fn offer_next(&mut self, event: &Arc<Event>) -> bool {
        if let Some(last) = self.dispatched {
            if event.seq <= last {
                return true;
            }
            if event.seq != last + 1 {
                return false;
            }
        }
        self.offer(event);
        true
    }

    fn offer(&mut self, event: &Arc<Event>) {
        self.dispatched = Some(event.seq);
        self.known = self.known.max(event.seq);
        let mut fan = FanOut::new();
        self.subscribers
            .retain(|sub| fan.offer(sub, event) != Delivery::Gone);
    }

    /// Tells every local subscriber to reconnect and resume (they get `reset` if history is gone).
    fn cut_off_all(&mut self) {
        for sub in self.subscribers.drain() {
            sub.cut_off(CutOff::Resync);
        }
    }
}

impl RedisBroker {
    /// Creates the broker without waiting for Redis: it connects (and reconnects) in the background,
    /// and reports down until it has.
    pub fn new(cfg: &RedisConfig, history: HistoryConfig) -> Result<Arc<RedisBroker>, BrokerError> {
        let bad = |e: redis::RedisError| BrokerError::Unavailable(format!("broker.redis.url: {e}"));
        let client = redis::Client::open(cfg.url.as_str()).map_err(bad)?;
        let info = client.get_connection_info().clone();
        let resp3 = info.clone().set_redis_settings(
            info.redis_settings()
                .clone()
                .set_protocol(ProtocolVersion::RESP3),
        );
        let pubsub_client = redis::Client::open(resp3).map_err(bad)?;
        let manager_config = || {
            ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(100))
                .set_max_delay(Duration::from_millis(500))
                .set_connection_timeout(Some(Duration::from_secs(1)))
                .set_response_timeout(Some(OP_TIMEOUT))
        };
        let cmd = ConnectionManager::new_lazy_with_config(client, manager_config()).map_err(bad)?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let pubsub = ConnectionManager::new_lazy_with_config(
            pubsub_client,
            manager_config().set_push_sender(push_tx),
        )
        .map_err(bad)?;
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            cmd,
            pubsub,
            keys: Keys::new(&cfg.key_prefix),
            publish_script: redis::Script::new(wire::PUBLISH),
            fence_script: redis::Script::new(wire::FENCE),
            // Approximate trimming only removes whole stream nodes (100 entries): exact below that.
            trim: if cfg.stream_maxlen >= 1000 { "~" } else { "=" },
            maxlen: cfg.stream_maxlen.max(1),
            history,
            channels: RwLock::new(HashMap::new()),
            control: tokio::sync::Mutex::new(()),
            up: AtomicBool::new(false),
            idle_tx,
        });
        dispatch::spawn(Arc::downgrade(&inner), push_rx, idle_rx);
        Ok(Arc::new(RedisBroker { inner }))
    }

    /// How many channels this replica tracks (tests check that idle ones are dropped).
    pub fn local_channel_count(&self) -> usize {
        read(&self.inner.channels).len()
    }
}

impl Inner {
    fn existing(&self, channel: &str) -> Option<Arc<Mutex<LocalChannel>>> {
        read(&self.channels).get(channel).cloned()
    }

    fn mark_down(&self, why: &redis::RedisError) {
        if self.up.swap(false, Ordering::SeqCst) {
            tracing::warn!(error = %why, "redis broker down; delivering locally until it returns");
        }
    }

    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        match tokio::time::timeout(OP_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.mark_down(&e);
                }
                Err(BrokerError::Unavailable(e.to_string()))
            }
            Err(_) => {
                self.up.store(false, Ordering::SeqCst);
                Err(BrokerError::Unavailable(
                    "redis did not answer in time".into(),
                ))
            }
        }
    }

    async fn publish_redis(&self, draft: &EventDraft) -> Result<Vec<Published>, BrokerError> {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        let id = super::event_id(draft.ts, &mut id);
        let mut call = self.publish_script.prepare_invoke();
        call.arg(self.trim)
            .arg(self.maxlen)
            .arg(self.history.ttl.as_millis().max(1) as u64)
            .arg(META_TTL.max(self.history.ttl).as_millis() as u64)
            .arg(wire::meta_json(draft));
        for channel in draft.channels.iter() {
            let (head, tail) = wire::frame_halves(draft, channel, id);
            call.key(self.keys.meta(channel))
                .key(self.keys.stream(channel))
                .arg(self.keys.live(channel))
                .arg(head)
                .arg(tail);
        }
        let mut conn = self.cmd.clone();
        let seqs: Vec<u64> = self.timed(call.invoke_async(&mut conn)).await?;
        Ok(draft
            .channels
            .iter()
            .zip(seqs)
            .map(|(channel, seq)| Published {
                channel: channel.to_string(),
                seq,
            })
            .collect())
    }

    /// Redis is away: number on this replica and deliver to its own subscribers only.
    fn publish_local(&self, draft: &EventDraft) -> Vec<Published> {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        let id = super::event_id(draft.ts, &mut id);
        let mut out = Vec::with_capacity(draft.channels.len());
        for channel in draft.channels.iter() {
            let Some(state) = self.existing(channel) else {
                // Nobody here listens, and nobody elsewhere can hear it: it reaches no one.
                out.push(Published {
                    channel: channel.to_string(),
                    seq: 0,
                });
                continue;
            };
            let mut st = lock(&state);
            let seq = st.known.max(st.dispatched.unwrap_or(0)) + 1;
            let event = Arc::new(Event {
                channel: channel.shared(),
                seq,
                event_type: draft.event_type.shared(),
                frame: crate::events::envelope::framed(draft, channel, seq, id),
                origin_client: draft.origin_client.as_ref().map(Text::shared),
                actor: draft.actor.as_ref().map(Text::shared),
                published_at: std::time::Instant::now(),
            });
            st.offer(&event);
            st.diverged = Some(seq);
            out.push(Published {
                channel: channel.to_string(),
                seq,
            });
        }
        out
    }

    /// What a subscriber that has seen `since` missed, read atomically with the counter.
    async fn read_since(
        &self,
        channel: &str,
        since: u64,
    ) -> Result<(u64, Option<Vec<Arc<Event>>>), BrokerError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(self.keys.meta(channel))
            .arg("seq")
            .arg("floor")
            .cmd("XRANGE")
            .arg(self.keys.stream(channel))
            .arg(format!("{}-0", since.saturating_add(1)))
            .arg("+")
            .cmd("TIME");
        let mut conn = self.cmd.clone();
        let (meta, range, time): (Vec<Value>, Value, Vec<u64>) =
            self.timed(pipe.query_async(&mut conn)).await?;
        let counter = meta.first().and_then(wire::opt_u64).unwrap_or(0);
        let floor = meta.get(1).and_then(wire::opt_u64).unwrap_or(0);
        let now_ms =
            time.first().copied().unwrap_or(0) * 1000 + time.get(1).copied().unwrap_or(0) / 1000;
        let entries = wire::parse_range(channel, &range);
        let position = counter.max(entries.last().map_or(0, |e| e.seq));
        if since < floor || since > counter {
            return Ok((position, None));
        }
        if since == counter {
            return Ok((position, Some(Vec::new())));
        }
        let oldest_allowed = now_ms.saturating_sub(self.history.ttl.as_millis() as u64);
        let mut expect = since + 1;
        let mut replay = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some(event) = entry.event else {
                return Ok((position, None));
            };
            if entry.seq != expect || (expect == since + 1 && entry.at_ms < oldest_allowed) {
                return Ok((position, None));
            }
            expect += 1;
            replay.push(Arc::new(event));
        }
        if expect <= counter {
            return Ok((position, None)); // trimmed or expired: the range does not reach `since`
        }
        Ok((position, Some(replay)))
    }

    /// SUBSCRIBEs this replica to the channel's pub/sub name and waits for Redis to confirm.
    async fn listen(&self, channel: &str) -> Result<(), BrokerError> {
        let _order = self.control.lock().await;
        let mut conn = self.pubsub.clone();
        let live = self.keys.live(channel);
        self.timed(async move { conn.subscribe(live).await }).await
    }
}

impl Broker for RedisBroker {
    fn publish(&self, draft: EventDraft) -> BoxFuture<'_, Result<Vec<Published>, BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            if inner.up.load(Ordering::SeqCst) {
                match inner.publish_redis(&draft).await {
                    Ok(published) => return Ok(published),
                    Err(e) => {
                        tracing::warn!(error = %e, "publish to redis failed; delivering locally")
                    }
                }
            }
            tracing::debug!(event_type = %draft.event_type, "redis down: event delivered on this replica only");
            Ok(inner.publish_local(&draft))
        })
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
        since: Option<u64>,
        subscriber: &'a Subscriber,
    ) -> BoxFuture<'a, Result<SubscribeOutcome, BrokerError>> {
        Box::pin(async move {
            let inner = &self.inner;
            // Registered under the map lock, so the idle sweep cannot drop the channel between
            // our lookup and our push.
            let state = {
                let mut map = write(&inner.channels);
                let state = Arc::clone(map.entry(Arc::from(channel)).or_default());
                let mut st = lock(&state);
                st.subscribers.insert(subscriber);
                drop(st);
                state
            };
            let local_known = lock(&state).known;
            let down = SubscribeOutcome {
                seq: local_known,
                replay: Vec::new(),
                resume: if since.is_some() {
                    Resume::Reset
                } else {
                    Resume::Fresh
                },
            };
            if !inner.up.load(Ordering::SeqCst) {
                // Local events still arrive; the recovery after Redis returns re-subscribes.
                return Ok(down);
            }
            if inner.listen(channel).await.is_err() {
                // Without the pub/sub subscription this channel would go quiet: treat Redis as
                // down, so the health check re-subscribes everything once it answers.
                inner.up.store(false, Ordering::SeqCst);
                return Ok(down);
            }
            let read = match since {
                Some(since) => inner.read_since(channel, since).await,
                None => inner.read_since(channel, u64::MAX).await,
            };
            let Ok((seq, replay)) = read else {
                return Ok(down);
            };
            {
                let mut st = lock(&state);
                st.known = st.known.max(seq);
            }
            let (replay, resume) = match (since, replay) {
                (None, _) => (Vec::new(), Resume::Fresh),
                (Some(_), Some(replay)) => (replay, Resume::Recovered),
                (Some(_), None) => (Vec::new(), Resume::Reset),
            };
            Ok(SubscribeOutcome {
                seq,
                replay,
                resume,
            })
        })
    }

    fn unsubscribe(&self, channel: &str, id: ConnId) {
        let Some(state) = self.inner.existing(channel) else {
            return;
        };
        let mut st = lock(&state);
        st.subscribers.remove(id);
        if st.subscribers.is_empty() {
            let _ = self.inner.idle_tx.send(Arc::from(channel));
        }
    }

    fn positions<'a>(&'a self, channels: &'a [String]) -> BoxFuture<'a, Vec<u64>> {
        Box::pin(async move {
            let inner = &self.inner;
            let local = || {
                channels
                    .iter()
                    .map(|c| inner.existing(c).map_or(0, |st| lock(&st).known))
                    .collect()
            };
            if channels.is_empty() || !inner.up.load(Ordering::SeqCst) {
                return local();
            }
            let mut pipe = redis::pipe();
            for c in channels {
                pipe.cmd("HGET").arg(inner.keys.meta(c)).arg("seq");
            }
            let mut conn = inner.cmd.clone();
            match inner.timed(pipe.query_async::<Vec<Value>>(&mut conn)).await {
                Ok(values) => values
                    .iter()
                    .map(|v| wire::opt_u64(v).unwrap_or(0))
                    .collect(),
                Err(_) => local(),
            }
        })
    }

    fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::SeqCst)
    }
}
