//! Turning a successful mutation into an event.
//!
//! The proxy asks `EventMatcher::plan` before forwarding (method and path only), keeps a bounded copy
//! of the response body if the plan wants one, and calls `EventPlan::build` when the body has ended.
//! This module knows nothing about sockets or brokers: it produces `EventDraft`s, and the broker gives
//! them a `seq` and an envelope (`envelope.rs`).

mod body;
pub mod envelope;
pub mod external;
mod matcher;
mod rest;
pub mod template;

pub use matcher::{EventMatcher, EventPlan};

/// An event before the broker has numbered it. One draft fans out to each of its `channels`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDraft {
    pub event_type: String,
    pub channels: Vec<String>,
    pub resource: Option<String>,
    pub resource_id: Option<String>,
    /// `created` / `updated` / `deleted`, or `None` for published events.
    pub action: Option<String>,
    pub invalidate: Vec<Vec<String>>,
    pub data: serde_json::Value,
    pub actor: Option<String>,
    /// Milliseconds since the epoch when the sidecar saw the upstream's answer.
    pub ts: u64,
    /// The `X-Sync-Client` of the request that caused it, for `exclude_origin: connection`.
    pub origin_client: Option<String>,
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
    pub actor: Option<&'a str>,
    pub origin_client: Option<&'a str>,
    pub ts: u64,
}

/// Milliseconds since the Unix epoch, as events carry them.
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
