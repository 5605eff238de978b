//! SKELETON — Prometheus metrics (prometheus-client), names per SPEC.

use std::time::Duration;

use http::Method;

/// Every metric the sidecar exports, registered once and shared (`Arc<Metrics>`).
#[derive(Debug)]
pub struct Metrics {}

impl Metrics {
    pub fn new() -> Metrics {
        todo!()
    }
    /// `syncgate_http_requests_total{method,status}` and `syncgate_http_request_duration_seconds`.
    pub fn observe_http(&self, _method: &Method, _status: u16, _elapsed: Duration) {
        todo!()
    }
    /// `syncgate_upstream_errors_total{kind}`; kind is `connect`, `timeout` or `protocol`.
    pub fn upstream_error(&self, _kind: &'static str) {
        todo!()
    }
    /// `syncgate_ws_connections` gauge (+1 / -1).
    pub fn ws_opened(&self) {
        todo!()
    }
    pub fn ws_closed(&self) {
        todo!()
    }
    /// `syncgate_sse_connections` gauge.
    pub fn sse_opened(&self) {
        todo!()
    }
    pub fn sse_closed(&self) {
        todo!()
    }
    /// `syncgate_events_published_total{type}`.
    pub fn event_published(&self, _event_type: &str) {
        todo!()
    }
    /// `syncgate_event_delivery_seconds`: from the upstream's answer (event ts) to the frame being written.
    pub fn observe_delivery(&self, _elapsed: Duration) {
        todo!()
    }
    /// `syncgate_ws_dropped_total{reason}`; reason is `slow_consumer`, `message_too_big`, `max_connections`, …
    pub fn ws_dropped(&self, _reason: &'static str) {
        todo!()
    }
    /// `syncgate_broker_up` gauge (1/0).
    pub fn set_broker_up(&self, _up: bool) {
        todo!()
    }
    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        todo!()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
