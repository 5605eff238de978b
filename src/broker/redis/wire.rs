//! What the Redis broker stores and sends: key names, the Lua scripts, and the entry format.
//!
//! Per channel `C` under `key_prefix` `P`:
//! - `P{meta}:C`: a hash with `seq` (the channel's counter) and `floor` (positions below it cannot be
//!   resumed: they may belong to numbering that a replica did on its own while Redis was away);
//! - `P{stream}:C`: a Redis Stream whose entry ids are `<seq>-0`, so "everything after seq S" is one
//!   `XRANGE`; each entry holds the ready-made frame (`f`), a small JSON meta (`m`) and Redis's clock
//!   in milliseconds when it was added (`at`);
//! - `P{live}:C`: the pub/sub channel that carries the same entry to every replica subscribed to it.
//!
//! This module is not where anything is sent: it only builds commands and parses replies.

use std::sync::Arc;

use redis::Value;
use serde::{Deserialize, Serialize};

use crate::broker::Event;
use crate::events::EventDraft;
use crate::events::envelope::{self, Framed};

/// Names every key of one deployment from its `key_prefix`.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn meta(&self, channel: &str) -> String {
        format!("{}meta:{channel}", self.prefix)
    }

    pub fn stream(&self, channel: &str) -> String {
        format!("{}stream:{channel}", self.prefix)
    }

    pub fn live(&self, channel: &str) -> String {
        format!("{}live:{channel}", self.prefix)
    }

    /// The channel a pub/sub message name belongs to, if it is one of ours.
    pub fn channel_of_live<'a>(&self, live: &'a str) -> Option<&'a str> {
        live.strip_prefix(&self.prefix)?.strip_prefix("live:")
    }
}

/// Numbers and stores one draft on each of its channels, atomically per channel, and announces
/// each entry on the channel's pub/sub name.
///
/// KEYS: meta, stream per channel. ARGV: 1 trim mode (`~` or `=`), 2 maxlen, 3 stream ttl ms,
/// 4 meta ttl ms, 5 event meta JSON, then per channel: live name, frame prefix, frame suffix.
///
/// A channel's first number is Redis's clock in microseconds, not 1: when the counter is gone
/// (expired, or Redis lost its data) the new numbering starts above anything the old one handed
/// out (unless that channel averaged over a million events a second), so an old position can never
/// be mistaken for a new one and resumes with `reset`. Such numbers stay below 2^53 (exact in
/// JavaScript) until the year 2255.
pub const PUBLISH: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = string.format('%.0f', now)
local era = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
local out = {}
local n = #KEYS / 2
for i = 1, n do
  local meta, stream = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 5 + 3 * (i - 1)
  local seq
  if redis.call('EXISTS', meta) == 1 then
    seq = redis.call('HINCRBY', meta, 'seq', 1)
  else
    seq = tonumber(era)
    redis.call('HSET', meta, 'seq', era)
  end
  local s = string.format('%.0f', seq)
  local frame = ARGV[base + 2] .. s .. ARGV[base + 3]
  local ok = redis.pcall('XADD', stream, 'MAXLEN', ARGV[1], ARGV[2], s .. '-0',
    'f', frame, 'm', ARGV[5], 'at', at)
  if type(ok) == 'table' and ok.err then
    -- A stream that outlived its counter holds ids above the new numbering: it is stale.
    redis.call('DEL', stream)
    redis.call('XADD', stream, 'MAXLEN', ARGV[1], ARGV[2], s .. '-0', 'f', frame, 'm', ARGV[5], 'at', at)
  end
  redis.call('PEXPIRE', stream, ARGV[3])
  redis.call('PEXPIRE', meta, ARGV[4])
  redis.call('PUBLISH', ARGV[base + 1], s .. ' ' .. at .. ' ' .. #ARGV[5] .. ' ' .. ARGV[5] .. frame)
  out[i] = seq
end
return out
"#;

/// After a replica numbered events on its own while Redis was away: moves the counter past both
/// numberings and sets `floor` there, so every position from the ambiguous stretch resumes with
/// `reset`. One number is skipped. A missing counter is left alone (the next publish starts a new
/// numbering, which is safe on its own).
///
/// KEYS: meta. ARGV: 1 the highest seq this replica handed out locally. Returns the new counter or 0.
pub const FENCE: &str = r#"
local c = redis.call('HGET', KEYS[1], 'seq')
if not c then return 0 end
local f = math.max(tonumber(c), tonumber(ARGV[1])) + 1
redis.call('HSET', KEYS[1], 'seq', f, 'floor', f)
return f
"#;

/// The per-event facts a receiving replica needs besides the frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct Meta<'a> {
    #[serde(rename = "t", borrow)]
    pub event_type: std::borrow::Cow<'a, str>,
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none", borrow)]
    pub origin: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none", borrow)]
    pub actor: Option<std::borrow::Cow<'a, str>>,
}

pub fn meta_json(draft: &EventDraft) -> String {
    let meta = Meta {
        event_type: (&*draft.event_type).into(),
        origin: draft.origin_client.as_deref().map(Into::into),
        actor: draft.actor.as_deref().map(Into::into),
    };
    serde_json::to_string(&meta).unwrap_or_else(|_| "{\"t\":\"\"}".into())
}

/// The frame of `draft` on `channel` split around its `seq` value, which the script fills in.
pub fn frame_halves(draft: &EventDraft, channel: &str, id: &str) -> (Vec<u8>, Vec<u8>) {
    let envelope = envelope::Unnumbered::new(draft, channel, id);
    let (head, tail) = envelope.halves();
    (head.as_bytes().to_vec(), tail.as_bytes().to_vec())
}

/// Builds an event from an entry's parts; `at_ms` is Redis's clock when it was added.
pub fn event(channel: &str, seq: u64, at_ms: u64, meta: &[u8], frame: &[u8]) -> Option<Event> {
    let meta: Meta<'_> = serde_json::from_slice(meta).ok()?;
    let frame = Framed::from_text(std::str::from_utf8(frame).ok()?);
    let age = crate::events::now_millis().saturating_sub(at_ms);
    let now = std::time::Instant::now();
    let published_at = now
        .checked_sub(std::time::Duration::from_millis(age))
        .unwrap_or(now);
    Some(Event {
        channel: Arc::from(channel),
        seq,
        event_type: Arc::from(&*meta.event_type),
        frame,
        origin_client: meta.origin.as_deref().map(Arc::from),
        actor: meta.actor.as_deref().map(Arc::from),
        published_at,
    })
}

/// Parses a pub/sub payload: `<seq> <at> <meta len> <meta><frame>`.
pub fn parse_live(channel: &str, payload: &[u8]) -> Option<Event> {
    let mut rest = payload;
    let mut next_number = || -> Option<u64> {
        let space = rest.iter().position(|b| *b == b' ')?;
        let n = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        rest = &rest[space + 1..];
        Some(n)
    };
    let seq = next_number()?;
    let at = next_number()?;
    let meta_len = usize::try_from(next_number()?).ok()?;
    let (meta, frame) = (rest.get(..meta_len)?, rest.get(meta_len..)?);
    event(channel, seq, at, meta, frame)
}

/// One stream entry as `XRANGE` returns it: `[id, [field, value, …]]`.
pub struct Entry {
    pub seq: u64,
    pub at_ms: u64,
    pub event: Option<Event>,
}

/// Parses an `XRANGE` reply into entries, oldest first.
pub fn parse_range(channel: &str, reply: &Value) -> Vec<Entry> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else {
                return None;
            };
            let id = bytes_of(parts.first()?)?;
            let seq = std::str::from_utf8(id)
                .ok()?
                .split('-')
                .next()?
                .parse()
                .ok()?;
            let fields = match parts.get(1)? {
                Value::Array(f) => f.as_slice(),
                Value::Map(_) => return None,
                _ => return None,
            };
            let (mut frame, mut meta, mut at) = (None, None, 0u64);
            for pair in fields.chunks(2) {
                let (Some(k), Some(v)) = (pair.first().and_then(bytes_of), pair.get(1)) else {
                    continue;
                };
                match k {
                    b"f" => frame = bytes_of(v),
                    b"m" => meta = bytes_of(v),
                    b"at" => {
                        at = bytes_of(v)
                            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
                            .unwrap_or(0)
                    }
                    _ => {}
                }
            }
            let event = match (meta, frame) {
                (Some(m), Some(f)) => event(channel, seq, at, m, f),
                _ => None,
            };
            Some(Entry {
                seq,
                at_ms: at,
                event,
            })
        })
        .collect()
}

pub fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Reads an optional integer reply (a missing hash field is nil).
pub fn opt_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => std::str::from_utf8(bytes_of(other)?).ok()?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> EventDraft {
        EventDraft {
            event_type: "x\"seq\":0,".into(),
            channels: vec!["a".into()].into(),
            resource: None,
            resource_id: None,
            action: None,
            invalidate: vec![].into(),
            data: crate::events::Data::NULL,
            actor: Some("7".into()),
            ts: 1,
            origin_client: None,
            prerendered: Default::default(),
        }
    }

    #[test]
    fn frame_halves_join_around_the_real_seq() {
        let (head, tail) = frame_halves(&draft(), "ch,\"seq\":0,", "id1");
        let mut frame = head;
        frame.extend_from_slice(b"1764000000123");
        frame.extend_from_slice(&tail);
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(v["seq"], 1_764_000_000_123u64);
        assert_eq!(v["type"], "x\"seq\":0,");
        assert_eq!(v["channel"], "ch,\"seq\":0,");
        assert_eq!(v["id"], "id1");
    }

    #[test]
    fn live_payload_round_trips() {
        let meta = meta_json(&draft());
        let payload = format!("42 1000 {} {meta}{{\"seq\":42}}", meta.len());
        let e = parse_live("a", payload.as_bytes()).unwrap();
        assert_eq!((e.seq, &*e.event_type), (42, "x\"seq\":0,"));
        assert_eq!(e.actor.as_deref(), Some("7"));
        assert_eq!(e.frame.as_str(), "{\"seq\":42}");
    }
}
