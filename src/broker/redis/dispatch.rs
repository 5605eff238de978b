//! The replica's one Redis listener: live fan-out, gap repair, health and recovery.
//!
//! One task owns everything that delivers Redis events locally, so per-channel order needs no
//! further coordination: pub/sub messages are offered in `seq` order, a gap is filled from the
//! stream before the next event goes out (or, if the stream cannot fill it, the channel's local
//! subscribers are cut off so they resume and get `reset`), and after Redis comes back the task
//! re-subscribes, fences channels numbered locally meanwhile, and catches up from the streams.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::{Inner, LocalChannel, lock, read, wire, write};
use crate::broker::Event;

/// How often the task checks Redis (and how soon it notices it is back).
const HEALTH_EVERY: Duration = Duration::from_millis(500);

pub(super) fn spawn(
    inner: Weak<Inner>,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    mut idle: mpsc::UnboundedReceiver<Arc<str>>,
) {
    tokio::spawn(async move {
        let mut health = tokio::time::interval(HEALTH_EVERY);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let (Some(push), Some(inner)) = (push, inner.upgrade()) else { return };
                    on_push(&inner, push).await;
                }
                channel = idle.recv() => {
                    let (Some(channel), Some(inner)) = (channel, inner.upgrade()) else { return };
                    forget_if_idle(&inner, channel).await;
                }
                _ = health.tick() => {
                    let Some(inner) = inner.upgrade() else { return };
                    check_health(&inner).await;
                }
            }
        }
    });
}

async fn on_push(inner: &Inner, push: PushInfo) {
    match push.kind {
        PushKind::Message => {}
        PushKind::Disconnection => {
            if inner.up.swap(false, Ordering::SeqCst) {
                tracing::warn!(
                    "redis pub/sub connection lost; delivering locally until it returns"
                );
            }
            return;
        }
        _ => return,
    }
    let (Some(name), Some(payload)) = (
        push.data.first().and_then(wire::bytes_of),
        push.data.get(1).and_then(wire::bytes_of),
    ) else {
        return;
    };
    let Some(channel) = std::str::from_utf8(name)
        .ok()
        .and_then(|n| inner.keys.channel_of_live(n))
    else {
        return;
    };
    let Some(event) = wire::parse_live(channel, payload) else {
        tracing::warn!(channel, "unreadable event on redis pub/sub; skipped");
        return;
    };
    let Some(state) = inner.existing(channel) else {
        return;
    };
    let event = Arc::new(event);
    let (in_order, from) = {
        let mut st = lock(&state);
        (st.offer_next(&event), st.dispatched.unwrap_or(0))
    };
    if !in_order {
        repair(inner, channel, &state, from, Some(&event)).await;
    }
}

/// Delivers what the channel's local subscribers missed after `from`, then `next`; cuts them off
/// when the stream cannot cover the gap.
async fn repair(
    inner: &Inner,
    channel: &str,
    state: &std::sync::Mutex<LocalChannel>,
    from: u64,
    next: Option<&Arc<Event>>,
) {
    let read = inner.read_since(channel, from).await;
    let mut st = lock(state);
    if st.dispatched.is_none() {
        st.dispatched = Some(from);
    }
    match read {
        Ok((position, Some(replay))) => {
            st.known = st.known.max(position);
            for event in &replay {
                st.offer_next(event);
            }
            if let Some(event) = next {
                st.offer_next(event);
            }
        }
        Ok((position, None)) => {
            tracing::info!(
                channel,
                from,
                position,
                "history cannot cover a gap; local subscribers resume"
            );
            st.cut_off_all();
            // Nobody is left whose stream could have a gap: whoever subscribes next starts from
            // what Redis tells it, and pub/sub delivers everything after that in order.
            st.dispatched = None;
            st.known = st.known.max(position);
        }
        Err(e) => {
            tracing::warn!(channel, error = %e, "cannot repair a gap; local subscribers resume");
            st.cut_off_all();
            st.dispatched = None;
        }
    }
}

/// Drops a channel nobody here listens to any more, and its Redis subscription.
async fn forget_if_idle(inner: &Inner, channel: Arc<str>) {
    let _order = inner.control.lock().await;
    {
        let mut map = write(&inner.channels);
        let idle = map
            .get(&channel)
            .is_some_and(|st| lock(st).subscribers.is_empty());
        if !idle {
            return;
        }
        map.remove(&channel);
    }
    let mut conn = inner.pubsub.clone();
    let live = inner.keys.live(&channel);
    let _ = tokio::time::timeout(super::OP_TIMEOUT, conn.unsubscribe(live)).await;
}

async fn ping(conn: &redis::aio::ConnectionManager) -> bool {
    let mut conn = conn.clone();
    matches!(
        tokio::time::timeout(
            super::OP_TIMEOUT,
            redis::cmd("PING").query_async::<Value>(&mut conn)
        )
        .await,
        Ok(Ok(_))
    )
}

async fn check_health(inner: &Inner) {
    let reachable = ping(&inner.cmd).await && ping(&inner.pubsub).await;
    let was_up = inner.up.load(Ordering::SeqCst);
    if !reachable {
        if was_up {
            inner.up.store(false, Ordering::SeqCst);
            tracing::warn!("redis unreachable; delivering locally until it returns");
        }
        return;
    }
    if !was_up {
        recover(inner).await;
    } else {
        fence_diverged(inner).await;
    }
}

fn local_channels(inner: &Inner) -> Vec<(Arc<str>, Arc<std::sync::Mutex<LocalChannel>>)> {
    read(&inner.channels)
        .iter()
        .map(|(k, v)| (Arc::clone(k), Arc::clone(v)))
        .collect()
}

/// Redis is reachable again: listen again, fence, catch up, then publish through Redis again.
async fn recover(inner: &Inner) {
    let channels = local_channels(inner);
    for (channel, _) in &channels {
        if inner.listen(channel).await.is_err() {
            return; // gone again; the next health check retries
        }
    }
    inner.up.store(true, Ordering::SeqCst);
    fence_diverged(inner).await;
    for (channel, state) in &channels {
        let from = {
            let st = lock(state);
            if st.subscribers.is_empty() {
                continue;
            }
            st.dispatched.unwrap_or(st.known)
        };
        repair(inner, channel, state, from, None).await;
    }
    tracing::info!(
        channels = channels.len(),
        "redis broker back; local channels caught up"
    );
}

/// Channels this replica numbered on its own: move Redis's counter past both numberings and send
/// their local subscribers to resume (they get `reset`).
async fn fence_diverged(inner: &Inner) {
    for (channel, state) in local_channels(inner) {
        let Some(local_max) = lock(&state).diverged else {
            continue;
        };
        let mut call = inner.fence_script.prepare_invoke();
        call.key(inner.keys.meta(&channel)).arg(local_max);
        let mut conn = inner.cmd.clone();
        let Ok(fenced) = inner.timed(call.invoke_async::<u64>(&mut conn)).await else {
            return;
        };
        let mut st = lock(&state);
        tracing::info!(channel = %channel, local_max, fenced, "channel numbered locally while redis was away; subscribers resume with reset");
        st.cut_off_all();
        // Local events after `local_max` (published meanwhile) keep the channel diverged.
        if st.diverged == Some(local_max) {
            st.diverged = None;
        }
        st.known = st.known.max(fenced);
        st.dispatched = None;
        let _ = inner.idle_tx.send(channel);
    }
}
