//! Server-Sent Events on `sse.path`: the same channels and resume rules as the generic socket, for
//! clients that only read.
//!
//! `GET /api/sse?channel=a&channel=b`. Each event's `id:` is the stream's whole position
//! (`a=17,b=3`, the `X-Sync-Position` format), so the browser's automatic `Last-Event-ID` on
//! reconnect resumes every channel at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::{mpsc, watch};
use tokio::time::{Interval, MissedTickBehavior};

use super::access;
use super::protocol::valid_channel;
use crate::body::{Body, json_error};
use crate::broker::{Event, Resume, Subscriber};
use crate::state::{Shared, SocketSlot};

pub async fn serve(req: Request<Body>, shared: Arc<Shared>) -> Response<Body> {
    let settings = shared.settings();
    let cfg = &settings.config;
    let query = req.uri().query().unwrap_or("");
    let mut channels = query_values(query, "channel");
    let mut seen = std::collections::HashSet::new();
    channels.retain(|c| seen.insert(c.clone()));
    if channels.is_empty() {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name at least one ?channel=",
        );
    }
    if channels.len() > cfg.limits.max_subscriptions {
        return json_error(
            StatusCode::BAD_REQUEST,
            "too_many",
            "more channels than limits.max_subscriptions",
        );
    }
    let (user, _creds) =
        match access::identify(&shared, &settings, req.headers(), req.uri().query()).await {
            Ok(who) => who,
            Err(refused) => return refused,
        };
    for channel in &channels {
        if !valid_channel(channel) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "invalid channel name",
            );
        }
        if let Err(e) = access::may_read(
            channel,
            user.as_deref(),
            &cfg.channels.user_prefix,
            "subscribe",
        ) {
            return json_error(StatusCode::FORBIDDEN, "forbidden", &e.message);
        }
    }
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_values(query, "last_event_id").pop());
    let resume_from = last_event_id
        .as_deref()
        .map(parse_positions)
        .unwrap_or_default();
    let slot = match access::admit(&shared, cfg, req.headers()) {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };

    let client_id: Arc<str> = Arc::from(uuid::Uuid::now_v7().simple().to_string());
    let (sub, queue) = Subscriber::new(
        client_id,
        user,
        cfg.events.exclude_origin,
        cfg.limits.send_queue,
    );
    let mut pending = VecDeque::new();
    pending.push_back(Bytes::from_static(b"retry: 1000\n\n"));
    let mut positions = Vec::with_capacity(channels.len());
    let mut replay = Vec::new();
    let mut subscribed: Vec<String> = Vec::with_capacity(channels.len());
    for channel in channels {
        let since = resume_from
            .iter()
            .find(|(c, _)| *c == channel)
            .map(|(_, s)| *s);
        let outcome = match shared.broker.subscribe(&channel, since, &sub).await {
            Ok(o) => o,
            Err(e) => {
                for c in &subscribed {
                    shared.broker.unsubscribe(c, sub.id());
                }
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "broker_unavailable",
                    &e.to_string(),
                );
            }
        };
        subscribed.push(channel.clone());
        let start = match (outcome.resume, since) {
            (Resume::Recovered, Some(since)) => since,
            _ => outcome.seq,
        };
        if outcome.resume == Resume::Reset {
            let msg = serde_json::json!({"op": "reset", "channel": channel}).to_string();
            pending.push_back(Bytes::from(format!("data: {msg}\n\n")));
        }
        positions.push((channel, start));
        replay.extend(outcome.replay);
    }
    let mut ping = tokio::time::interval(cfg.websocket.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    shared.metrics.sse_opened();
    let mut state = SseStream {
        queue,
        guard: Guard {
            shared: Arc::clone(&shared),
            sub,
            channels: subscribed,
            _slot: slot,
        },
        positions,
        pending,
        ping,
        shutdown: shared.shutdown_signal(),
    };
    for event in replay {
        if let Some(frame) = state.format(&event) {
            state.pending.push_back(frame);
        }
    }
    drop(settings);

    let body = StreamBody::new(stream::unfold(state, |mut s| async move {
        let bytes = s.next_chunk().await?;
        Some((Ok::<_, Infallible>(Frame::data(bytes)), s))
    }));
    let mut resp = Response::new(body.map_err(|never| match never {}).boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

struct SseStream {
    queue: mpsc::Receiver<Arc<Event>>,
    guard: Guard,
    /// Each channel's last delivered `seq`, in subscription order (the `id:` line).
    positions: Vec<(String, u64)>,
    pending: VecDeque<Bytes>,
    ping: Interval,
    shutdown: watch::Receiver<bool>,
}

impl SseStream {
    /// The next bytes to send, or `None` to end the stream (the browser reconnects and resumes).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            if *self.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => return None,
                _ = self.guard.sub.cut_off_signal() => {
                    let why = self.guard.sub.cut_off_reason();
                    self.guard.shared.metrics.ws_dropped(why.label());
                    return None;
                }
                Some(event) = self.queue.recv() => {
                    if let Some(frame) = self.format(&event) {
                        self.guard.shared.metrics.observe_delivery(event.published_at.elapsed());
                        return Some(frame);
                    }
                }
                _ = self.ping.tick() => return Some(Bytes::from_static(b": ping\n\n")),
            }
        }
    }

    fn format(&mut self, event: &Event) -> Option<Bytes> {
        let (_, last) = self
            .positions
            .iter_mut()
            .find(|(c, _)| **c == *event.channel)?;
        if event.seq <= *last {
            return None;
        }
        *last = event.seq;
        if self.guard.sub.excludes(event) {
            return None;
        }
        let id = format_positions(self.positions.iter().map(|(c, seq)| (c.as_str(), *seq)));
        let text = event.frame.text();
        let mut out = Vec::with_capacity(id.len() + text.len() + 14);
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(&text);
        out.extend_from_slice(b"\n\n");
        Some(Bytes::from(out))
    }
}

/// Unsubscribes and frees the connection slot however the stream ends (client gone, shutdown).
struct Guard {
    shared: Arc<Shared>,
    sub: Subscriber,
    channels: Vec<String>,
    _slot: SocketSlot,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &self.channels {
            self.shared.broker.unsubscribe(c, self.sub.id());
        }
        self.shared.metrics.sse_closed();
    }
}

/// `a=17,b=3`: the `X-Sync-Position` and SSE id format.
pub fn format_positions<'a>(positions: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    let positions = positions.into_iter();
    // Room for a short name and a large seq each, so that the common case allocates once.
    let mut out = String::with_capacity(32 * positions.size_hint().0);
    for (channel, seq) in positions {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(channel);
        out.push('=');
        crate::events::envelope::number(&mut out, seq);
    }
    out
}

/// Parses `a=17,b=3`; malformed parts are ignored (that channel starts fresh).
pub fn parse_positions(text: &str) -> Vec<(String, u64)> {
    text.split(',')
        .filter_map(|part| {
            let (channel, seq) = part.trim().rsplit_once('=')?;
            Some((channel.to_owned(), seq.parse().ok()?))
        })
        .collect()
}

/// All values of `name` in a query string, percent-decoded (`+` is a space).
pub fn query_values(query: &str, name: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == name).then(|| decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        let p = vec![("projects".to_owned(), 17), ("project:4".to_owned(), 3)];
        let text = format_positions(p.iter().map(|(c, seq)| (c.as_str(), *seq)));
        assert_eq!(text, "projects=17,project:4=3");
        assert_eq!(parse_positions(&text), p);
        assert_eq!(parse_positions("junk,a=x,b=2"), vec![("b".to_owned(), 2)]);
        let (channels, seqs) = (["a".to_owned(), "b".to_owned()], [0, u64::MAX]);
        assert_eq!(
            format_positions(channels.iter().map(String::as_str).zip(seqs)),
            format!("a=0,b={}", u64::MAX)
        );
    }

    #[test]
    fn query_values_decode() {
        assert_eq!(
            query_values("channel=projects&x=1&channel=project%3A4", "channel"),
            ["projects", "project:4"]
        );
    }
}
