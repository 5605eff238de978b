//! The single-node broker: per-channel counters, a bounded history ring and local fan-out.
//!
//! Each channel has its own mutex, held only for the few microseconds of numbering an event and
//! offering it to the channel's queues (never across an await), so channels never contend with each
//! other. Channels with no subscribers and no live history are pruned, so names like `project:{id}`
//! never leak; a client resuming on a pruned channel gets `reset`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::{
    Broker, BrokerError, ConnId, Delivery, Event, FanOut, Published, Resume, SubscribeOutcome,
    Subscriber, Subscribers, lock, read, write,
};
use crate::config::HistoryConfig;
use crate::events::{EventDraft, Text, envelope};
use crate::one_or_many::OneOrMany;
use crate::per_loop::PerLoop;

#[derive(Debug)]
pub struct MemoryBroker {
    /// By name, hashed with foldhash: every publish and every GET's `X-Sync-Position` looks a
    /// channel up here, and std's SipHash was most of that lookup's cost. Names come from
    /// clients, so the hash is seeded per process.
    channels: RwLock<foldhash::HashMap<Arc<str>, Arc<Mutex<ChannelState>>>>,
    /// Each loop's own handles to the channels it publishes on, with its own copy of each
    /// name (which its events carry).
    ///
    /// Why: found through `channels`, every publish wrote the map lock's line and the name's
    /// reference count, shared by every loop; with two loops publishing, those lines moved
    /// between the cores on every event. What the loops must share (a channel's numbering,
    /// history and subscribers) stays behind the channel's own lock.
    handles: PerLoop<Mutex<Handles>>,
    history: HistoryConfig,
    /// `positions_version`: moved after every numbered event and every forgotten channel, each
    /// loop on its own count (summed when read; every count only grows, so the sum moves
    /// whenever one does).
    moves: PerLoop<AtomicU64>,
}

type Handles = foldhash::HashMap<Arc<str>, Arc<Mutex<ChannelState>>>;

#[derive(Debug, Default)]
struct ChannelState {
    /// Forgotten by `sweep`: a loop still holding a handle to it looks the channel up again.
    removed: bool,
    last_seq: u64,
    history: VecDeque<(Instant, Arc<Event>)>,
    subscribers: Subscribers,
}

/// Events trimmed off a history, freed when this is dropped: after the channel's lock, by
/// whoever trimmed them. An event another loop made is freed into that loop's memory, a write
/// to lines of the other core, which the lock need not wait for.
type Trimmed = Option<OneOrMany<Arc<Event>>>;

impl ChannelState {
    #[must_use = "the trimmed events are freed where this is dropped"]
    fn trim(&mut self, history: HistoryConfig, now: Instant) -> Trimmed {
        let mut trimmed = None;
        while self.history.len() > history.size {
            if let Some((_, event)) = self.history.pop_front() {
                trimmed = Some(OneOrMany::push(trimmed, event));
            }
        }
        while let Some((at, _)) = self.history.front() {
            if now.saturating_duration_since(*at) <= history.ttl {
                break;
            }
            if let Some((_, event)) = self.history.pop_front() {
                trimmed = Some(OneOrMany::push(trimmed, event));
            }
        }
        trimmed
    }

    /// Events after `since`, if the history still holds all of them.
    fn since(&self, since: u64) -> Option<Vec<Arc<Event>>> {
        if since == self.last_seq {
            return Some(Vec::new());
        }
        if since > self.last_seq {
            // A position from before a restart or a prune: nothing here can vouch for the gap.
            return None;
        }
        let first = self.history.front()?.1.seq;
        if first > since + 1 {
            return None;
        }
        Some(
            self.history
                .iter()
                .filter(|(_, e)| e.seq > since)
                .map(|(_, e)| Arc::clone(e))
                .collect(),
        )
    }
}

impl MemoryBroker {
    pub fn new(history: HistoryConfig) -> Arc<MemoryBroker> {
        Arc::new(MemoryBroker {
            channels: RwLock::default(),
            handles: PerLoop::default(),
            history,
            moves: PerLoop::default(),
        })
    }

    /// The channel's state, and its name as the map holds it (which events share).
    fn channel(&self, name: &str) -> (Arc<str>, Arc<Mutex<ChannelState>>) {
        if let Some((key, ch)) = read(&self.channels).get_key_value(name) {
            return (Arc::clone(key), Arc::clone(ch));
        }
        let mut map = write(&self.channels);
        let key: Arc<str> = Arc::from(name);
        let ch = Arc::clone(map.entry(Arc::clone(&key)).or_default());
        (key, ch)
    }

    /// The channel's state through this loop's handles, and the loop's copy of its name.
    fn handle(&self, name: &str) -> (Arc<str>, Arc<Mutex<ChannelState>>) {
        let mut handles = lock(self.handles.here());
        if let Some((key, ch)) = handles.get_key_value(name) {
            return (Arc::clone(key), Arc::clone(ch));
        }
        let (_, ch) = self.channel(name);
        let key: Arc<str> = Arc::from(name);
        handles.insert(Arc::clone(&key), Arc::clone(&ch));
        (key, ch)
    }

    /// Marks a position moved (see `moves`).
    fn moved(&self) {
        self.moves.here().fetch_add(1, Ordering::Release);
    }

    fn existing(&self, name: &str) -> Option<Arc<Mutex<ChannelState>>> {
        read(&self.channels).get(name).cloned()
    }

    /// Numbers, stores and fans out one event on one channel; its `seq`. What does not need
    /// the channel's lock (the envelope's text, the clock, freeing trimmed events) is done
    /// outside it.
    fn publish_one(&self, draft: &EventDraft, channel: &str, id: &str) -> u64 {
        let envelope = envelope::Unnumbered::new(draft, channel, id);
        // One clock read for both: the history's age and the delivery-delay metric.
        let now = Instant::now();
        let (seq, trimmed) = self.number(draft, channel, &envelope, now);
        drop(trimmed);
        seq
    }

    /// `publish_one`'s part under the channel's lock.
    fn number(
        &self,
        draft: &EventDraft,
        channel: &str,
        envelope: &envelope::Unnumbered,
        now: Instant,
    ) -> (u64, Trimmed) {
        loop {
            let (name, state) = self.handle(channel);
            let mut st = lock(&state);
            if st.removed {
                // Forgotten since this loop took its handle: the map has the channel's new state.
                drop(st);
                lock(self.handles.here()).remove(channel);
                continue;
            }
            st.last_seq += 1;
            let seq = st.last_seq;
            // After the new seq, so that whoever reads the count then reads that seq or a
            // later one.
            self.moved();
            let event = Arc::new(Event {
                channel: name,
                seq,
                event_type: draft.event_type.shared(),
                frame: envelope.framed(seq),
                origin_client: draft.origin_client.as_ref().map(Text::shared),
                actor: draft.actor.as_ref().map(Text::shared),
                published_at: now.into_std(),
            });
            if self.history.size > 0 {
                st.history.push_back((now, Arc::clone(&event)));
            }
            let trimmed = st.trim(self.history, now);
            // Dropped before `st`: its hand-overs happen under the channel's lock (see FanOut).
            let mut fan = FanOut::new();
            st.subscribers
                .retain(|sub| fan.offer(sub, &event) != Delivery::Gone);
            drop(fan);
            return (seq, trimmed);
        }
    }

    /// Publishes `draft` on each of its channels under one event id, telling `each` the new
    /// `seq` of each channel.
    fn publish_all(&self, draft: &EventDraft, mut each: impl FnMut(&Text, u64)) {
        let mut id = [0; uuid::fmt::Hyphenated::LENGTH];
        let id = super::event_id(draft.ts, &mut id);
        for channel in draft.channels.iter() {
            each(channel, self.publish_one(draft, channel, id));
        }
    }

    /// Drops expired history and forgets channels nobody uses; run periodically.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = Vec::new();
        for (name, state) in read(&self.channels).iter() {
            let mut st = lock(state);
            drop(st.trim(self.history, now));
            st.subscribers.retain(|s| !s.is_cut_off());
            if st.subscribers.is_empty() && st.history.is_empty() {
                idle.push(Arc::clone(name));
            }
        }
        if idle.is_empty() {
            return;
        }
        let mut forgotten = Vec::with_capacity(idle.len());
        let mut map = write(&self.channels);
        for name in idle {
            let still_idle = map.get(&name).is_some_and(|state| {
                let mut st = lock(state);
                let idle = st.subscribers.is_empty() && st.history.is_empty();
                st.removed = idle;
                idle
            });
            if still_idle {
                map.remove(&name);
                forgotten.push(name);
                // Its position goes back to 0.
                self.moved();
            }
        }
        drop(map);
        // Not under the map's lock, which nothing else needs here.
        for handles in self.handles.all() {
            let mut handles = lock(handles);
            for name in &forgotten {
                handles.remove(name);
            }
        }
    }

    /// How many channels are tracked (tests check that pruning works).
    pub fn channel_count(&self) -> usize {
        read(&self.channels).len()
    }

    /// Runs `sweep` every `every` until the broker is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(broker) => broker.sweep(),
                    None => return,
                }
            }
        });
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, draft: EventDraft) -> BoxFuture<'_, Result<Vec<Published>, BrokerError>> {
        let mut published = Vec::with_capacity(draft.channels.len());
        self.publish_all(&draft, |channel, seq| {
            published.push(Published {
                channel: channel.to_string(),
                seq,
            });
        });
        Box::pin(std::future::ready(Ok(published)))
    }

    fn publish_here(&self, draft: &EventDraft) -> bool {
        self.publish_all(draft, |_, _| {});
        true
    }

    fn subscribe<'a>(
        &'a self,
        channel: &'a str,
        since: Option<u64>,
        subscriber: &'a Subscriber,
    ) -> BoxFuture<'a, Result<SubscribeOutcome, BrokerError>> {
        let (_, state) = self.channel(channel);
        let mut st = lock(&state);
        drop(st.trim(self.history, Instant::now()));
        st.subscribers.insert(subscriber);
        let (replay, resume) = match since {
            None => (Vec::new(), Resume::Fresh),
            Some(since) => match st.since(since) {
                Some(replay) => (replay, Resume::Recovered),
                None => (Vec::new(), Resume::Reset),
            },
        };
        let outcome = SubscribeOutcome {
            seq: st.last_seq,
            replay,
            resume,
        };
        Box::pin(std::future::ready(Ok(outcome)))
    }

    fn unsubscribe(&self, channel: &str, id: ConnId) {
        if let Some(state) = self.existing(channel) {
            lock(&state).subscribers.remove(id);
        }
    }

    fn positions<'a>(&'a self, channels: &'a [String]) -> BoxFuture<'a, Vec<u64>> {
        let map = read(&self.channels);
        let seqs = channels
            .iter()
            .map(|c| map.get(c.as_str()).map_or(0, |st| lock(st).last_seq))
            .collect();
        Box::pin(std::future::ready(seqs))
    }

    fn positions_version(&self) -> Option<u64> {
        Some(
            self.moves
                .all()
                .map(|m| m.load(Ordering::Acquire))
                .fold(0, u64::wrapping_add),
        )
    }

    fn is_up(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExcludeOrigin;

    fn draft(channels: &[&str]) -> EventDraft {
        EventDraft {
            event_type: "project_updated".into(),
            channels: channels.iter().map(|c| Text::from(*c)).collect(),
            resource: None,
            resource_id: None,
            action: None,
            invalidate: vec![].into(),
            data: crate::events::Data::NULL,
            actor: Some("7".into()),
            ts: 1,
            origin_client: Some("tab-a".into()),
            prerendered: Default::default(),
        }
    }

    fn broker(size: usize) -> Arc<MemoryBroker> {
        MemoryBroker::new(HistoryConfig {
            size,
            ttl: Duration::from_secs(600),
        })
    }

    fn sub(client: &str, queue: usize) -> (Subscriber, tokio::sync::mpsc::Receiver<Arc<Event>>) {
        Subscriber::new(Arc::from(client), None, ExcludeOrigin::Connection, queue)
    }

    #[tokio::test]
    async fn seq_has_no_gaps_per_channel() {
        let b = broker(10);
        for _ in 0..3 {
            b.publish(draft(&["a", "b"])).await.unwrap();
        }
        let p = b.publish(draft(&["a"])).await.unwrap();
        assert_eq!(
            p,
            vec![Published {
                channel: "a".into(),
                seq: 4
            }]
        );
        assert_eq!(
            b.positions(&["a".into(), "b".into(), "c".into()]).await,
            [4, 3, 0]
        );
    }

    #[tokio::test]
    async fn resume_replays_exactly_what_was_missed() {
        let b = broker(10);
        for _ in 0..5 {
            b.publish(draft(&["a"])).await.unwrap();
        }
        let (s, _rx) = sub("tab-b", 8);
        let out = b.subscribe("a", Some(2), &s).await.unwrap();
        assert_eq!(out.resume, Resume::Recovered);
        assert_eq!(
            out.replay.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(out.seq, 5);
    }

    #[tokio::test]
    async fn resume_beyond_history_is_a_reset() {
        let b = broker(2);
        for _ in 0..5 {
            b.publish(draft(&["a"])).await.unwrap();
        }
        let (s, _rx) = sub("tab-b", 8);
        assert_eq!(
            b.subscribe("a", Some(1), &s).await.unwrap().resume,
            Resume::Reset
        );
        // Position 3 is still covered: 4 and 5 are in the ring.
        assert_eq!(b.subscribe("a", Some(3), &s).await.unwrap().replay.len(), 2);
        // A position from the future (another process's numbering) cannot be trusted.
        assert_eq!(
            b.subscribe("a", Some(99), &s).await.unwrap().resume,
            Resume::Reset
        );
    }

    #[tokio::test(start_paused = true)]
    async fn history_older_than_ttl_cannot_be_replayed() {
        let b = MemoryBroker::new(HistoryConfig {
            size: 100,
            ttl: Duration::from_secs(10),
        });
        for _ in 0..3 {
            b.publish(draft(&["a"])).await.unwrap();
        }
        let (s, _rx) = sub("late", 8);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            b.subscribe("a", Some(1), &s).await.unwrap().resume,
            Resume::Recovered
        );
        tokio::time::advance(Duration::from_secs(6)).await;
        let out = b.subscribe("a", Some(1), &s).await.unwrap();
        assert_eq!((out.resume, out.seq), (Resume::Reset, 3));
    }

    #[tokio::test]
    async fn full_queue_cuts_off_only_the_slow_subscriber() {
        let b = broker(10);
        let (slow, _slow_rx) = sub("slow", 1);
        let (fast, mut fast_rx) = sub("fast", 8);
        b.subscribe("a", None, &slow).await.unwrap();
        b.subscribe("a", None, &fast).await.unwrap();
        for _ in 0..3 {
            b.publish(draft(&["a"])).await.unwrap();
        }
        assert!(slow.is_cut_off());
        assert_eq!(slow.cut_off_reason(), crate::broker::CutOff::SlowConsumer);
        assert!(!fast.is_cut_off());
        for seq in 1..=3 {
            assert_eq!(fast_rx.recv().await.unwrap().seq, seq);
        }
    }

    #[tokio::test]
    async fn every_subscriber_shares_one_serialized_frame() {
        let b = broker(10);
        let (one, mut one_rx) = sub("one", 8);
        let (two, mut two_rx) = sub("two", 8);
        b.subscribe("a", None, &one).await.unwrap();
        b.subscribe("a", None, &two).await.unwrap();
        b.publish(draft(&["a"])).await.unwrap();
        let (e1, e2) = (one_rx.recv().await.unwrap(), two_rx.recv().await.unwrap());
        assert!(
            Arc::ptr_eq(&e1, &e2),
            "one event, not a copy per subscriber"
        );
        assert_eq!(e1.frame.as_str().as_ptr(), e2.frame.as_str().as_ptr());
    }

    #[tokio::test]
    async fn origin_connection_is_skipped() {
        let b = broker(10);
        let (origin, mut origin_rx) = sub("tab-a", 8);
        let (other, mut other_rx) = sub("tab-b", 8);
        b.subscribe("a", None, &origin).await.unwrap();
        b.subscribe("a", None, &other).await.unwrap();
        b.publish(draft(&["a"])).await.unwrap();
        assert_eq!(other_rx.recv().await.unwrap().seq, 1);
        assert!(origin_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn idle_channels_are_pruned() {
        let b = MemoryBroker::new(HistoryConfig {
            size: 10,
            ttl: Duration::from_millis(1),
        });
        let (s, _rx) = sub("x", 8);
        b.subscribe("project:1", None, &s).await.unwrap();
        b.publish(draft(&["project:2"])).await.unwrap();
        std::thread::sleep(Duration::from_millis(5));
        b.sweep();
        assert_eq!(b.channel_count(), 1, "only the subscribed channel is kept");
        b.unsubscribe("project:1", s.id());
        b.sweep();
        assert_eq!(b.channel_count(), 0);
    }

    /// A read's `X-Sync-Position` is reused while this version holds, so it must move whenever
    /// any answer of `positions` would: a numbered event, a channel forgotten (back to 0).
    #[tokio::test]
    async fn the_positions_version_moves_whenever_a_position_does() {
        let b = MemoryBroker::new(HistoryConfig {
            size: 10,
            ttl: Duration::from_millis(1),
        });
        let version = || b.positions_version().expect("kept in this process");
        let start = version();
        let (s, _rx) = sub("x", 8);
        b.subscribe("a", None, &s).await.unwrap();
        b.sweep();
        assert_eq!(version(), start, "nothing moved");
        b.publish(draft(&["a", "b"])).await.unwrap();
        let published = version();
        assert_ne!(published, start);
        assert!(b.publish_here(&draft(&["a"])));
        assert_ne!(
            version(),
            published,
            "the response path's publish moves it too"
        );
        let before_sweep = version();
        assert_eq!(b.positions(&["b".into()]).await, [1]);
        std::thread::sleep(Duration::from_millis(5));
        b.sweep();
        assert_eq!(b.positions(&["b".into()]).await, [0], "b was forgotten");
        assert_ne!(version(), before_sweep);
        // A loop's publish moves it as much as one outside the loops.
        let before_loop = version();
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::workers::enter(5);
                b.publish_here(&draft(&["c"]));
            });
        });
        assert_ne!(version(), before_loop);
    }

    #[tokio::test]
    async fn a_channel_forgotten_while_a_loop_holds_its_handle_still_reaches_new_subscribers() {
        let b = MemoryBroker::new(HistoryConfig {
            size: 10,
            ttl: Duration::from_millis(1),
        });
        // This thread's loop takes a handle to "a" and keeps it.
        assert!(b.publish_here(&draft(&["a"])));
        std::thread::sleep(Duration::from_millis(5));
        b.sweep();
        assert_eq!(b.channel_count(), 0, "a was forgotten");
        // A new subscriber makes the channel anew; the loop's next event must reach it, as the
        // channel's first.
        let (s, mut rx) = sub("tab-b", 8);
        b.subscribe("a", None, &s).await.unwrap();
        assert!(b.publish_here(&draft(&["a"])));
        let got = rx.try_recv().expect("delivered to the subscriber");
        assert_eq!(got.seq, 1);
        assert_eq!(b.positions(&["a".into()]).await, [1]);
    }
}
