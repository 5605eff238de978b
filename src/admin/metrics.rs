//! Prometheus metrics for the whole sidecar: one `Metrics` value, registered once at start and shared as
//! `Arc<Metrics>` by the proxy, the sockets, the broker and the admin listener.
//!
//! The metric names are part of the external contract (SPEC "Admin endpoints"); dashboards and tests
//! match on them, so they are spelled out in one place here. This module only counts and encodes; it
//! does not serve HTTP (the admin listener does, with [`CONTENT_TYPE`]).

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::Method;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::counter::ShardedCounter;
use super::histogram::{BOUNDS, ShardedHistogram};
use crate::per_loop::PerLoop;

/// Content type of [`Metrics::encode`]'s output.
///
/// We expose the classic Prometheus text format (0.0.4) rather than OpenMetrics: every Prometheus
/// version and every scraper understands it, and counters keep their `_total` name on the `# TYPE`
/// line too, so `curl /metrics | grep syncgate_http_requests_total` finds the whole family.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds for request latency through the proxy: sub-millisecond cache hits up to the default
/// 30 s upstream timeout, so timeouts land in a bucket of their own rather than only in `+Inf`.
const HTTP_BUCKETS: [f64; BOUNDS] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds for event delivery: in-process fan-out is tens of microseconds, a Redis hop a few
/// milliseconds; anything beyond 5 s is a stuck consumer and only needs to show up as `+Inf`.
const DELIVERY_BUCKETS: [f64; BOUNDS] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Upstream error kinds and drop reasons known up front; their series are created at start so a
/// dashboard's `rate()` sees a 0 before the first incident instead of a missing series.
const UPSTREAM_ERROR_KINDS: [&str; 3] = ["connect", "timeout", "protocol"];
const WS_DROP_REASONS: [&str; 4] = [
    "slow_consumer",
    "resync",
    "message_too_big",
    "max_connections",
];

/// The request method as a label value without allocating: the standard methods are a closed set,
/// and anything else is folded into `OTHER` so a client cannot mint unbounded series.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[repr(u8)]
enum MethodLabel {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
    Other,
}

impl MethodLabel {
    fn from_method(method: &Method) -> MethodLabel {
        match *method {
            Method::GET => MethodLabel::Get,
            Method::HEAD => MethodLabel::Head,
            Method::POST => MethodLabel::Post,
            Method::PUT => MethodLabel::Put,
            Method::PATCH => MethodLabel::Patch,
            Method::DELETE => MethodLabel::Delete,
            Method::OPTIONS => MethodLabel::Options,
            Method::CONNECT => MethodLabel::Connect,
            Method::TRACE => MethodLabel::Trace,
            _ => MethodLabel::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            MethodLabel::Get => "GET",
            MethodLabel::Head => "HEAD",
            MethodLabel::Post => "POST",
            MethodLabel::Put => "PUT",
            MethodLabel::Patch => "PATCH",
            MethodLabel::Delete => "DELETE",
            MethodLabel::Options => "OPTIONS",
            MethodLabel::Connect => "CONNECT",
            MethodLabel::Trace => "TRACE",
            MethodLabel::Other => "OTHER",
        }
    }
}

impl EncodeLabelValue for MethodLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// `Copy` on purpose: building it on every request costs nothing.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: MethodLabel,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Event types are not `'static` (they come from config and URL paths), so this one label owns its
/// value; events are far rarer than requests, and their types are bounded by config and routes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    r#type: String,
}

/// Statuses whose `http_requests` series are kept at hand (`Metrics::http_series`).
const KEPT_STATUSES: std::ops::Range<u16> = 100..600;
const METHOD_LABELS: usize = MethodLabel::Other as usize + 1;

/// Event types whose series are kept at hand; past this, types are counted through the family.
const KEPT_EVENT_TYPES: usize = 1024;

/// Every metric the sidecar exports, registered once and shared (`Arc<Metrics>`).
///
/// The handles below are cheap clones of what the registry holds (prometheus-client metrics are
/// `Arc`s of atomics), so recording never touches the registry; only families take their own
/// read lock to find a label set's series.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, ShardedCounter>,
    /// `http_requests`' series by method and status, each found in the family once. A family
    /// lookup hashes the labels with SipHash under a lock, a cost on every request that this
    /// index of handles to the same counters does not have.
    http_series: Box<[OnceLock<ShardedCounter>]>,
    http_duration: ShardedHistogram,
    upstream_errors: Family<KindLabel, Counter>,
    ws_connections: Gauge,
    sse_connections: Gauge,
    events_published: Family<TypeLabel, ShardedCounter>,
    /// `events_published`' series by type, likewise (the family's lookup also copies the type),
    /// each loop with its own map: a map shared by the loops had its lock's line written by
    /// both on every event.
    event_series: PerLoop<Mutex<foldhash::HashMap<Box<str>, ShardedCounter>>>,
    event_delivery: ShardedHistogram,
    ws_dropped: Family<ReasonLabel, Counter>,
    broker_up: Gauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();

        // Counters are registered without `_total`: prometheus-client appends it on encode.
        let http_requests = Family::<HttpLabels, ShardedCounter>::default();
        registry.register(
            "syncgate_http_requests",
            "HTTP requests answered by the proxy, by method and status",
            http_requests.clone(),
        );
        let http_duration = ShardedHistogram::new(HTTP_BUCKETS);
        registry.register(
            "syncgate_http_request_duration_seconds",
            "Time from receiving a request to sending the response head",
            http_duration.clone(),
        );
        let upstream_errors = Family::<KindLabel, Counter>::default();
        registry.register(
            "syncgate_upstream_errors",
            "Requests that failed to reach the upstream or get a valid answer, by kind",
            upstream_errors.clone(),
        );
        let ws_connections = Gauge::default();
        registry.register(
            "syncgate_ws_connections",
            "Open WebSocket connections",
            ws_connections.clone(),
        );
        let sse_connections = Gauge::default();
        registry.register(
            "syncgate_sse_connections",
            "Open server-sent event streams",
            sse_connections.clone(),
        );
        let events_published = Family::<TypeLabel, ShardedCounter>::default();
        registry.register(
            "syncgate_events_published",
            "Events published to the broker, by event type",
            events_published.clone(),
        );
        let event_delivery = ShardedHistogram::new(DELIVERY_BUCKETS);
        registry.register(
            "syncgate_event_delivery_seconds",
            "Time from the upstream's answer (event ts) to the event frame being written to a client",
            event_delivery.clone(),
        );
        let ws_dropped = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "syncgate_ws_dropped",
            "WebSocket connections refused or cut off by the sidecar, by reason",
            ws_dropped.clone(),
        );
        let broker_up = Gauge::default();
        registry.register(
            "syncgate_broker_up",
            "1 while the broker is connected, 0 otherwise",
            broker_up.clone(),
        );

        for kind in UPSTREAM_ERROR_KINDS {
            drop(upstream_errors.get_or_create(&KindLabel { kind }));
        }
        for reason in WS_DROP_REASONS {
            drop(ws_dropped.get_or_create(&ReasonLabel { reason }));
        }

        Metrics {
            registry,
            http_requests,
            http_series: (0..METHOD_LABELS * KEPT_STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            http_duration,
            upstream_errors,
            ws_connections,
            sse_connections,
            events_published,
            event_series: PerLoop::default(),
            event_delivery,
            ws_dropped,
            broker_up,
        }
    }

    /// `syncgate_http_requests_total{method,status}` and `syncgate_http_request_duration_seconds`.
    pub fn observe_http(&self, method: &Method, status: u16, elapsed: Duration) {
        let labels = HttpLabels {
            method: MethodLabel::from_method(method),
            status,
        };
        let family = || self.http_requests.get_or_create(&labels).clone();
        if KEPT_STATUSES.contains(&status) {
            let at = labels.method as usize * KEPT_STATUSES.len()
                + usize::from(status - KEPT_STATUSES.start);
            if let Some(series) = self.http_series.get(at) {
                series.get_or_init(family).inc();
            }
        } else {
            family().inc();
        }
        self.http_duration.observe(elapsed);
    }

    /// `syncgate_upstream_errors_total{kind}`; kind is `connect`, `timeout` or `protocol`.
    pub fn upstream_error(&self, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&KindLabel { kind })
            .inc();
    }

    /// `syncgate_ws_connections` gauge (+1 / -1).
    pub fn ws_opened(&self) {
        self.ws_connections.inc();
    }

    pub fn ws_closed(&self) {
        self.ws_connections.dec();
    }

    /// `syncgate_sse_connections` gauge.
    pub fn sse_opened(&self) {
        self.sse_connections.inc();
    }

    pub fn sse_closed(&self) {
        self.sse_connections.dec();
    }

    /// `syncgate_events_published_total{type}`.
    pub fn event_published(&self, event_type: &str) {
        let mut kept = self
            .event_series
            .here()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = kept.get(event_type) {
            series.inc();
            return;
        }
        let labels = TypeLabel {
            r#type: event_type.to_owned(),
        };
        let series = self.events_published.get_or_create(&labels).clone();
        series.inc();
        if kept.len() < KEPT_EVENT_TYPES {
            kept.insert(event_type.into(), series);
        }
    }

    /// `syncgate_event_delivery_seconds`: from the upstream's answer (event ts) to the frame being written.
    pub fn observe_delivery(&self, elapsed: Duration) {
        self.event_delivery.observe(elapsed);
    }

    /// `syncgate_ws_dropped_total{reason}`; reason is `slow_consumer`, `resync`, `message_too_big`, `max_connections`, …
    pub fn ws_dropped(&self, reason: &'static str) {
        self.ws_dropped.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// `syncgate_broker_up` gauge (1/0). Starts at 0: only the broker knows when it is connected.
    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.set(i64::from(up));
    }

    /// Prometheus text exposition (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a `String` cannot fail; an `Err` could only come from a label encoder, and
        // ours are plain strings and integers. A partial page beats a panicking admin endpoint.
        if let Err(err) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!(error = %err, "encoding metrics failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample line that starts with `series ` (name plus labels, exactly).
    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    #[test]
    fn bucket_bounds_ascend_as_the_sharded_histogram_needs() {
        for bounds in [HTTP_BUCKETS, DELIVERY_BUCKETS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn every_spec_metric_name_is_exposed_after_one_call_of_each_method() {
        let m = Metrics::new();
        m.observe_http(&Method::GET, 200, Duration::from_millis(3));
        m.upstream_error("timeout");
        m.ws_opened();
        m.sse_opened();
        m.event_published("project_created");
        m.observe_delivery(Duration::from_micros(150));
        m.ws_dropped("slow_consumer");
        m.set_broker_up(true);
        let text = m.encode();

        for name in [
            "syncgate_http_requests_total",
            "syncgate_http_request_duration_seconds",
            "syncgate_upstream_errors_total",
            "syncgate_ws_connections",
            "syncgate_sse_connections",
            "syncgate_events_published_total",
            "syncgate_event_delivery_seconds",
            "syncgate_ws_dropped_total",
            "syncgate_broker_up",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "missing {name} in:\n{text}"
            );
        }
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn counters_carry_the_spec_labels() {
        let m = Metrics::new();
        m.observe_http(&Method::POST, 201, Duration::from_millis(1));
        m.observe_http(&Method::POST, 201, Duration::from_millis(1));
        m.observe_http(&Method::from_bytes(b"PURGE").unwrap(), 405, Duration::ZERO);
        m.upstream_error("connect");
        m.event_published("project_created");
        m.ws_dropped("message_too_big");
        let text = m.encode();

        let http = r#"syncgate_http_requests_total{method="POST",status="201"}"#;
        assert_eq!(sample(&text, http).as_deref(), Some("2"), "{text}");
        let other = r#"syncgate_http_requests_total{method="OTHER",status="405"}"#;
        assert_eq!(sample(&text, other).as_deref(), Some("1"), "{text}");
        let upstream = r#"syncgate_upstream_errors_total{kind="connect"}"#;
        assert_eq!(sample(&text, upstream).as_deref(), Some("1"), "{text}");
        let published = r#"syncgate_events_published_total{type="project_created"}"#;
        assert_eq!(sample(&text, published).as_deref(), Some("1"), "{text}");
        let dropped = r#"syncgate_ws_dropped_total{reason="message_too_big"}"#;
        assert_eq!(sample(&text, dropped).as_deref(), Some("1"), "{text}");
    }

    #[test]
    fn series_kept_at_hand_count_into_the_exported_ones() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe_http(&Method::GET, 200, Duration::ZERO);
            m.observe_http(&Method::DELETE, 599, Duration::ZERO);
            m.event_published("task_updated");
        }
        // Outside the statuses kept at hand: counted through the family alone.
        m.observe_http(&Method::GET, 999, Duration::ZERO);
        m.observe_http(&Method::GET, 999, Duration::ZERO);
        // Past the event types kept at hand, too.
        for i in 0..KEPT_EVENT_TYPES {
            m.event_published(&format!("type_{i}"));
        }
        m.event_published("one_more");
        m.event_published("one_more");
        let text = m.encode();

        for (series, count) in [
            (
                r#"syncgate_http_requests_total{method="GET",status="200"}"#,
                "3",
            ),
            (
                r#"syncgate_http_requests_total{method="DELETE",status="599"}"#,
                "3",
            ),
            (
                r#"syncgate_http_requests_total{method="GET",status="999"}"#,
                "2",
            ),
            (
                r#"syncgate_events_published_total{type="task_updated"}"#,
                "3",
            ),
            (r#"syncgate_events_published_total{type="type_0"}"#, "1"),
            (r#"syncgate_events_published_total{type="one_more"}"#, "2"),
        ] {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some(count),
                "{series} in:\n{text}"
            );
        }
    }

    #[test]
    fn known_error_kinds_and_drop_reasons_start_at_zero() {
        let text = Metrics::new().encode();
        for series in [
            r#"syncgate_upstream_errors_total{kind="timeout"}"#,
            r#"syncgate_ws_dropped_total{reason="slow_consumer"}"#,
        ] {
            assert_eq!(sample(&text, series).as_deref(), Some("0"), "{text}");
        }
    }

    #[test]
    fn histograms_use_proxy_sized_buckets() {
        let m = Metrics::new();
        m.observe_http(&Method::GET, 200, Duration::from_millis(20));
        m.observe_delivery(Duration::from_micros(50));
        let text = m.encode();

        let lowest = r#"syncgate_http_request_duration_seconds_bucket{le="0.0005"}"#;
        assert_eq!(sample(&text, lowest).as_deref(), Some("0"), "{text}");
        let highest = r#"syncgate_http_request_duration_seconds_bucket{le="30"}"#;
        assert_eq!(sample(&text, highest).as_deref(), Some("1"), "{text}");
        let fast = r#"syncgate_event_delivery_seconds_bucket{le="0.0001"}"#;
        assert_eq!(sample(&text, fast).as_deref(), Some("1"), "{text}");
        let slow = r#"syncgate_event_delivery_seconds_bucket{le="5"}"#;
        assert_eq!(sample(&text, slow).as_deref(), Some("1"), "{text}");
        let count = "syncgate_http_request_duration_seconds_count";
        assert_eq!(sample(&text, count).as_deref(), Some("1"), "{text}");
    }

    #[test]
    fn gauges_go_up_and_down() {
        let m = Metrics::new();
        m.ws_opened();
        m.ws_opened();
        m.ws_closed();
        m.sse_opened();
        m.sse_closed();
        let text = m.encode();
        assert_eq!(
            sample(&text, "syncgate_ws_connections").as_deref(),
            Some("1")
        );
        assert_eq!(
            sample(&text, "syncgate_sse_connections").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn broker_up_starts_at_zero_and_follows_the_broker() {
        let m = Metrics::new();
        assert_eq!(
            sample(&m.encode(), "syncgate_broker_up").as_deref(),
            Some("0")
        );
        m.set_broker_up(true);
        assert_eq!(
            sample(&m.encode(), "syncgate_broker_up").as_deref(),
            Some("1")
        );
        m.set_broker_up(false);
        assert_eq!(
            sample(&m.encode(), "syncgate_broker_up").as_deref(),
            Some("0")
        );
    }

    #[test]
    fn content_type_matches_the_text_format() {
        assert!(CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    }
}
