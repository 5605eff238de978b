//! Turning a successful mutation into an event.
//!
//! The proxy asks `EventMatcher::plan` before forwarding (method and path only), keeps a bounded copy
//! of the response body if the plan wants one, and calls `EventPlan::build` when the body has ended.
//! This module knows nothing about sockets or brokers: it produces `EventDraft`s, and the broker gives
//! them a `seq` and an envelope (`envelope.rs`).

mod body;
pub mod envelope;
pub mod external;
mod json_scan;
mod matcher;
mod rest;
pub mod template;
mod text;

pub use matcher::{EventMatcher, EventPlan};
pub use text::Text;

use std::sync::Arc;

use serde_json::value::RawValue;

/// An event before the broker has numbered it. One draft fans out to each of its `channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub event_type: Text,
    /// Shared with the plan that made the draft, as `invalidate` is: a rule's lists are the
    /// same for every event of a path, so an event takes a reference, not a copy.
    pub channels: Arc<[Text]>,
    pub resource: Option<Text>,
    pub resource_id: Option<String>,
    /// `created` / `updated` / `deleted`, or `None` for published events.
    pub action: Option<Text>,
    pub invalidate: Arc<[Vec<Text>]>,
    pub data: Data,
    pub actor: Option<Text>,
    /// Milliseconds since the epoch when the sidecar saw the upstream's answer.
    pub ts: u64,
    /// The `X-Sync-Client` of the request that caused it, for `exclude_origin: connection`.
    pub origin_client: Option<Text>,
    /// What its plan wrote of the envelope ahead; `Prerendered::default()` everywhere else.
    pub prerendered: Prerendered,
}

/// The envelope text of a draft's fields that its plan wrote once for all its events
/// (`envelope::Fixed`), or nothing (the envelope writes the fields themselves).
///
/// A cache of the draft's own fields, set only by `EventPlan::build` from the plan the fields
/// came from, so drafts that differ only in it are equal.
#[derive(Debug, Clone, Default)]
pub struct Prerendered(Option<Arc<envelope::Fixed>>);

impl Prerendered {
    fn new(fixed: envelope::Fixed) -> Prerendered {
        Prerendered(Some(Arc::new(fixed)))
    }
}

impl PartialEq for Prerendered {
    fn eq(&self, _: &Prerendered) -> bool {
        true
    }
}

/// An event's `data`: compact JSON text, written into the envelope as it is.
///
/// Why text and not a `serde_json::Value`: `data` is copied from the API's answer or from a
/// publisher and never looked into, so a tree would be built only to be printed again.
#[derive(Debug, Clone, Default)]
pub struct Data(Option<String>);

impl Data {
    /// `null`: no data.
    pub const NULL: Data = Data(None);

    pub fn from_value(value: &serde_json::Value) -> Data {
        if value.is_null() {
            return Data::NULL;
        }
        Data(serde_json::to_string(value).ok())
    }

    /// From JSON text `body.rs` assembled out of validated values; it is kept only if it is on
    /// one line (see `from_raw`), which is not checked again when the caller knows it is
    /// (`one_line`: cut from a body the scanner saw no break in).
    fn from_json_text(text: String, one_line: bool) -> Data {
        if !one_line && text.bytes().any(|b| matches!(b, b'\n' | b'\r')) {
            return serde_json::from_str::<serde_json::Value>(&text)
                .map_or(Data::NULL, |v| Data::from_value(&v));
        }
        Data(Some(text))
    }

    /// Keeps the text unless it spans lines: a line break (only ever whitespace between tokens,
    /// as strings escape theirs) would end an SSE `data:` line early, so that JSON is reprinted
    /// compact.
    fn from_raw(raw: &RawValue) -> Data {
        match raw.get() {
            "null" => Data::NULL,
            text => Data::from_json_text(text.to_owned(), false),
        }
    }

    /// The JSON text (`null` for none).
    pub fn as_json(&self) -> &str {
        self.0.as_deref().unwrap_or("null")
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.as_json()).unwrap_or(serde_json::Value::Null)
    }
}

impl<'de> serde::Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Data, D::Error> {
        Box::<RawValue>::deserialize(d).map(|raw| Data::from_raw(&raw))
    }
}

/// Equal when they are the same JSON, whatever the spacing or key order.
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for Data {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

/// The bounded copy of a response body the proxy kept while streaming it.
#[derive(Debug, Clone, Copy)]
pub struct BodyPrefix<'a> {
    pub bytes: &'a [u8],
    /// False when the body was longer than `limits.event_body_max_bytes` (then it is not parsed).
    pub complete: bool,
}

/// Facts about the request that are not in the path.
#[derive(Debug, Clone, Copy, Default)]
pub struct EmitContext<'a> {
    pub actor: Option<&'a Text>,
    pub origin_client: Option<&'a Text>,
    pub ts: u64,
}

/// Milliseconds since the Unix epoch, as events carry them.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
