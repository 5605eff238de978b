//! The admin listener (health, readiness, metrics, `POST /publish`) and `X-Sync-Event` publishing,
//! driven through the real sidecar.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};

const TOKEN: &str = "t0k";

/// Sets `publish.token` on the live settings (the env var is read only at load time).
fn set_publish_token(h: &Harness, token: Option<&str>) {
    let mut cfg = h.sidecar.shared.settings().config.clone();
    cfg.publish.token = token.map(Into::into);
    h.sidecar.reload(cfg).unwrap();
}

async fn publish(h: &Harness, headers: &[(&str, &str)], body: &str) -> Reply {
    http(Method::POST, &h.admin_url("/publish"), headers, body).await
}

/// GETs `url` until `accept(reply)` holds; the last reply fails the test after `WAIT`.
async fn poll_until(url: &str, accept: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = get(url).await;
        if accept(&reply) {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition never held for {url}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the sample whose name and labels are exactly `series`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

fn metrics_text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok() {
    let h = Harness::start("").await;
    let r = get(&h.admin_url("/healthz")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_ok_when_upstream_answers() {
    let h = Harness::start("").await;
    let r = poll_until(&h.admin_url("/readyz"), |r| r.status == StatusCode::OK).await;
    let body = r.json();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["reason"], Value::Null, "{body}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_upstream_down() {
    let dead = dead_upstream();
    let h = Harness::start_with_upstream(dead.addr, "").await;
    // Readiness starts pessimistic, so a single 503 proves little: it must stay 503 while the
    // probe (run at start) keeps failing to connect.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while tokio::time::Instant::now() < deadline {
        let r = get(&h.admin_url("/readyz")).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
        let body = r.json();
        assert_eq!(body["ready"], false, "{body}");
        assert_eq!(body["reason"], "upstream_unavailable", "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_draining() {
    let h = Harness::start("").await;
    poll_until(&h.admin_url("/readyz"), |r| r.status == StatusCode::OK).await;
    h.sidecar.shared.start_draining();
    let r = get(&h.admin_url("/readyz")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = r.json();
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["reason"], "draining", "{body}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_every_spec_name() {
    let h = Harness::start("").await;
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "projects", None).await;
    assert_eq!(get(&h.url("/api/projects")).await.status, StatusCode::OK);
    let created = http(
        Method::POST,
        &h.url("/api/projects"),
        &[("content-type", "application/json")],
        r#"{"name":"Apollo"}"#,
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let ev = recv_json(&mut ws).await;
    assert_eq!(ev["type"], "project_created", "{ev}");

    // Delivery is observed as the frame is written, which may land just after the client reads it.
    let r = poll_until(&h.admin_url("/metrics"), |r| {
        sample(&metrics_text(r), "syncgate_event_delivery_seconds_count").is_some_and(|n| n >= 1.0)
    })
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let content_type = r.headers.get("content-type").unwrap().to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = metrics_text(&r);

    let get_200 = r#"syncgate_http_requests_total{method="GET",status="200"}"#;
    assert_eq!(sample(&text, get_200), Some(1.0), "{text}");
    let post_201 = r#"syncgate_http_requests_total{method="POST",status="201"}"#;
    assert_eq!(sample(&text, post_201), Some(1.0), "{text}");
    assert!(
        sample(&text, "syncgate_http_request_duration_seconds_count").is_some_and(|n| n >= 2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, r#"syncgate_upstream_errors_total{kind="connect"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "syncgate_ws_connections"),
        Some(1.0),
        "{text}"
    );
    let published = r#"syncgate_events_published_total{type="project_created"}"#;
    assert_eq!(sample(&text, published), Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE syncgate_event_delivery_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"syncgate_ws_dropped_total{reason="slow_consumer"}"#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "syncgate_broker_up"), Some(1.0), "{text}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_errors_are_counted() {
    let dead = dead_upstream();
    let h = Harness::start_with_upstream(dead.addr, "").await;
    let r = get(&h.url("/api/projects")).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.json()["error"], "upstream_unavailable");
    let text = metrics_text(&get(&h.admin_url("/metrics")).await);
    let connect = r#"syncgate_upstream_errors_total{kind="connect"}"#;
    assert!(sample(&text, connect).is_some_and(|n| n >= 1.0), "{text}");
    let bad_gateway = r#"syncgate_http_requests_total{method="GET",status="502"}"#;
    assert_eq!(sample(&text, bad_gateway), Some(1.0), "{text}");
    h.sidecar.shutdown().await;
}

const ALERT: &str =
    r#"{"channel":"alerts","type":"alert_raised","data":{"x":1},"invalidate":[["alerts"]]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_token_is_401() {
    let h = Harness::start("").await;
    set_publish_token(&h, Some(TOKEN));
    let r = publish(&h, &[], ALERT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_wrong_token_is_401() {
    let h = Harness::start("").await;
    set_publish_token(&h, Some(TOKEN));
    for auth in ["Bearer t0", "Bearer t0k2", "t0k", "Basic t0k", "Bearer "] {
        let r = publish(&h, &[("authorization", auth)], ALERT).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(r.json()["error"], "unauthorized", "{auth:?}");
    }
    // Nothing was published by the refused calls.
    let seqs = h
        .sidecar
        .shared
        .broker
        .positions(&["alerts".to_owned()])
        .await;
    assert_eq!(seqs, [0]);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_when_disabled_is_401_with_hint() {
    let h = Harness::start("").await;
    set_publish_token(&h, None);
    let r = publish(&h, &[("authorization", "Bearer anything")], ALERT).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let body = r.json();
    assert_eq!(body["error"], "publish_disabled", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("SYNCGATE_PUBLISH_TOKEN"), "{message}");
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_bad_body_is_400_with_clear_message() {
    let h = Harness::start("").await;
    set_publish_token(&h, Some(TOKEN));
    let auth = [("authorization", "Bearer t0k")];
    let cases = [
        ("{", "invalid event JSON"),
        (r#"{"type":"alert_raised"}"#, "channel"),
        (
            r#"{"channel":"alerts","type":"alert_raised","extra":1}"#,
            "unknown field `extra`",
        ),
    ];
    for (body, expected) in cases {
        let r = publish(&h, &auth, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
        let answer = r.json();
        assert_eq!(answer["error"], "bad_request", "{body}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_delivers_to_subscribers_and_returns_seq() {
    let h = Harness::start("").await;
    set_publish_token(&h, Some(TOKEN));
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "alerts", None).await;

    let r = publish(&h, &[("authorization", "Bearer t0k")], ALERT).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let answer = r.json();
    assert_eq!(answer["channel"], "alerts", "{answer}");
    assert_eq!(answer["seq"], 1, "{answer}");

    let ev = recv_json(&mut ws).await;
    assert_eq!(ev["type"], "alert_raised", "{ev}");
    assert_eq!(ev["channel"], "alerts", "{ev}");
    assert_eq!(ev["seq"], 1, "{ev}");
    assert_eq!(ev["data"], json!({"x": 1}), "{ev}");
    assert_eq!(ev["invalidate"], json!([["alerts"]]), "{ev}");
    assert!(ev["id"].as_str().is_some_and(|id| !id.is_empty()), "{ev}");

    let r = publish(&h, &[("authorization", "Bearer t0k")], ALERT).await;
    assert_eq!(r.json()["seq"], 2);
    assert_eq!(recv_json(&mut ws).await["seq"], 2);
    h.sidecar.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_sync_event_headers_are_published_and_stripped() {
    let h = Harness::start("auth: { mode: header }\n").await;
    let (mut ws, welcome) = h
        .socket_with(&h.ws_url("/api/ws"), &[("x-user-id", "7")])
        .await;
    assert_eq!(welcome["user"], "7", "{welcome}");
    subscribe(&mut ws, "user:7", None).await;
    subscribe(&mut ws, "audit", None).await;

    let r = http(Method::POST, &h.url("/api/notify"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("x-sync-event").is_none(), "{:?}", r.headers);

    let mut by_channel = std::collections::HashMap::new();
    for _ in 0..2 {
        let ev = recv_json(&mut ws).await;
        let channel = ev["channel"].as_str().unwrap().to_owned();
        assert!(
            by_channel.insert(channel, ev).is_none(),
            "one event per channel"
        );
    }
    let notification = &by_channel["user:7"];
    assert_eq!(
        notification["type"], "notification_created",
        "{notification}"
    );
    assert_eq!(notification["data"]["title"], "hi", "{notification}");
    assert_eq!(
        notification["invalidate"],
        json!([["notifications"]]),
        "{notification}"
    );
    assert_eq!(notification["seq"], 1, "{notification}");
    let audit = &by_channel["audit"];
    assert_eq!(audit["type"], "audit_logged", "{audit}");
    assert_eq!(audit["seq"], 1, "{audit}");
    h.sidecar.shutdown().await;
}
