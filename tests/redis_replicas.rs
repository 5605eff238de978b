//! Several real `syncgate` processes sharing one Redis, driven like browsers would: fan-out across
//! replicas, a replica killed while events flow, SIGTERM with the Redis broker, and Redis itself
//! going away under an in-process sidecar (readiness, metrics, local delivery, reconnection).

mod common;
mod redis_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use http::{Method, StatusCode};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::{Harness, Ws, connect, http, recv_json, start_upstream, subscribe};
use redis_support::{Prefix, PrivateRedis, Replica, broker_yaml, get_text};

/// The next event (a frame with `seq`) or the socket's end: `None` once the replica is gone.
async fn next_event(ws: &mut Ws, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("no frame within {within:?}"),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).expect("JSON frame");
                if v.get("seq").is_some() && v.get("op").is_none() {
                    return Some(v);
                }
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn socket(url: &str) -> Ws {
    let mut ws = connect(url, &[])
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    let welcome = recv_json(&mut ws).await;
    assert_eq!(welcome["op"], "welcome", "{welcome}");
    ws
}

async fn create_project(base: &str, n: usize) -> StatusCode {
    http(
        Method::POST,
        &format!("{base}/api/projects"),
        &[("content-type", "application/json")],
        &format!("{{\"name\":\"p{n}\"}}"),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_flow_loses_no_event_once_the_client_resumes_elsewhere() {
    const EVENTS: usize = 200;
    let upstream = start_upstream().await;
    let p = Prefix::shared();
    let mut a = Replica::start("replica-a", upstream, &broker_yaml(&p, 10_000)).await;
    let b = Replica::start("replica-b", upstream, &broker_yaml(&p, 10_000)).await;

    let mut ws = socket(&a.ws_url("/api/ws")).await;
    let sub = subscribe(&mut ws, "projects", None).await;
    let mut last = sub["seq"].as_u64().expect("seq");

    // Mutations go through replica b, in the background, while the client listens on a.
    let b_url = b.url("");
    let writer = tokio::spawn(async move {
        for n in 0..EVENTS {
            assert_eq!(create_project(&b_url, n).await, StatusCode::CREATED);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });

    let mut seqs = Vec::new();
    let mut ids = HashSet::new();
    let mut take = |v: Value, last: &mut u64, seqs: &mut Vec<u64>| {
        let seq = v["seq"].as_u64().expect("seq");
        assert!(
            ids.insert(v["id"].as_str().expect("id").to_owned()),
            "event delivered twice: {v}"
        );
        *last = seq;
        seqs.push(seq);
    };
    while seqs.len() < EVENTS / 3 {
        let v = next_event(&mut ws, Duration::from_secs(10))
            .await
            .expect("replica a is up");
        take(v, &mut last, &mut seqs);
    }
    a.kill();
    // Whatever a had already written may still be read; then the socket ends.
    while let Some(v) = next_event(&mut ws, Duration::from_secs(10)).await {
        take(v, &mut last, &mut seqs);
    }
    let killed_at = seqs.len();

    // The client moves to b and resumes from the last seq it saw.
    let mut ws = socket(&b.ws_url("/api/ws")).await;
    let resumed = subscribe(&mut ws, "projects", Some(last)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    while seqs.len() < EVENTS {
        let v = next_event(&mut ws, Duration::from_secs(10))
            .await
            .expect("replica b is up");
        take(v, &mut last, &mut seqs);
    }
    writer.await.expect("all mutations answered");
    let first = seqs[0];
    let expected: Vec<u64> = (first..first + EVENTS as u64).collect();
    assert_eq!(
        seqs, expected,
        "every event once, in order (replica a killed after {killed_at})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_a_redis_replica_sends_1001_and_the_client_resumes_on_another() {
    let upstream = start_upstream().await;
    let p = Prefix::shared();
    let mut a = Replica::start("replica-a", upstream, &broker_yaml(&p, 1000)).await;
    let b = Replica::start("replica-b", upstream, &broker_yaml(&p, 1000)).await;
    let mut ws = socket(&a.ws_url("/api/ws")).await;
    subscribe(&mut ws, "projects", None).await;
    assert_eq!(create_project(&a.url(""), 0).await, StatusCode::CREATED);
    let seen = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("event");
    let last = seen["seq"].as_u64().expect("seq");

    a.signal("TERM");
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1001);
    // Written on b while the client was between replicas.
    assert_eq!(create_project(&b.url(""), 1).await, StatusCode::CREATED);
    assert!(
        a.wait_exit(Duration::from_secs(10)).await,
        "replica a did not exit after SIGTERM"
    );

    let mut ws = socket(&b.ws_url("/api/ws")).await;
    let resumed = subscribe(&mut ws, "projects", Some(last)).await;
    assert_eq!(resumed["recovered"], true, "{resumed}");
    let missed = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("replayed");
    assert_eq!(missed["seq"].as_u64(), Some(last + 1));
}

async fn readyz(h: &Harness) -> (u16, Value) {
    let (status, body) = get_text(&h.admin_url("/readyz"))
        .await
        .expect("admin answers");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn broker_up_metric(h: &Harness) -> String {
    let (_, body) = get_text(&h.admin_url("/metrics")).await.expect("metrics");
    body.lines()
        .find(|l| l.starts_with("syncgate_broker_up"))
        .unwrap_or("")
        .to_owned()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_local_delivery_reports_it_and_reconnects_by_itself() {
    let mut server = PrivateRedis::start();
    let p = Prefix::new(&server.url());
    let h = Harness::start(&broker_yaml(&p, 1000)).await;
    eventually("readiness", || async { readyz(&h).await.0 == 200 }).await;
    assert_eq!(broker_up_metric(&h).await, "syncgate_broker_up 1");

    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "projects", None).await;
    assert_eq!(create_project(&h.url(""), 0).await, StatusCode::CREATED);
    let first = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("event")["seq"]
        .as_u64()
        .expect("seq");

    server.kill();
    eventually("readyz to report the broker down", || async {
        let (status, body) = readyz(&h).await;
        status == 503 && body["reason"] == "broker_down"
    })
    .await;
    assert_eq!(broker_up_metric(&h).await, "syncgate_broker_up 0");
    // Local delivery goes on, numbered on from the last seq this replica knew.
    assert_eq!(create_project(&h.url(""), 1).await, StatusCode::CREATED);
    let local = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("local event");
    assert_eq!(local["seq"].as_u64(), Some(first + 1));
    // A slow upstream request in flight does not hold up event delivery.
    let slow_url = h.url("/api/slow");
    let slow = tokio::spawn(async move { http(Method::GET, &slow_url, &[], "").await.status });
    assert_eq!(create_project(&h.url(""), 2).await, StatusCode::CREATED);
    let started = Instant::now();
    let next = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("local event");
    assert_eq!(next["seq"].as_u64(), Some(first + 2));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "delivery waited on the slow request"
    );

    // Redis returns (empty: no persistence). The replica reconnects by itself; the socket that
    // saw locally numbered events is sent to resume, and resuming says reset.
    server.restart();
    eventually("readiness after Redis returns", || async {
        readyz(&h).await.0 == 200
    })
    .await;
    assert_eq!(broker_up_metric(&h).await, "syncgate_broker_up 1");
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => break u16::from(frame.code),
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(code, 1013, "sent away to resume");
    let (mut ws, _) = h.socket().await;
    let resumed = subscribe(&mut ws, "projects", Some(first + 2)).await;
    assert_eq!(resumed["recovered"], false);
    assert_eq!(recv_json(&mut ws).await["op"], "reset");
    assert_eq!(create_project(&h.url(""), 3).await, StatusCode::CREATED);
    let after = next_event(&mut ws, Duration::from_secs(5))
        .await
        .expect("event through Redis");
    assert!(after["seq"].as_u64().expect("seq") > first + 2);
    let _ = slow.await;
}

/// Reads an SSE body until `n` `data:` lines carrying events arrive; returns their JSON.
async fn sse_events(url: &str, last_event_id: &str, n: usize) -> Vec<Value> {
    use http_body_util::{BodyExt, Empty};
    let client: hyper_util::client::legacy::Client<_, Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let req = http::Request::get(url)
        .header("last-event-id", last_event_id)
        .body(Empty::new())
        .expect("request");
    let resp = client.request(req).await.expect("SSE answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let (mut text, mut out) = (String::new(), Vec::new());
    while out.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("SSE data in time")
            .expect("stream open")
            .expect("frame");
        if let Some(data) = frame.data_ref() {
            text.push_str(&String::from_utf8_lossy(data));
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            for line in block.lines() {
                if let Some(json) = line.strip_prefix("data: ") {
                    let v: Value = serde_json::from_str(json).expect("JSON data");
                    if v.get("seq").is_some() {
                        out.push(v);
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_last_event_id_and_sync_position_work_across_replicas() {
    let p = Prefix::shared();
    let upstream = start_upstream().await;
    let a = Harness::start_with_upstream(upstream, &broker_yaml(&p, 1000)).await;
    let b = Harness::start_with_upstream(upstream, &broker_yaml(&p, 1000)).await;
    eventually("both replicas ready", || async {
        readyz(&a).await.0 == 200 && readyz(&b).await.0 == 200
    })
    .await;
    for n in 0..3 {
        assert_eq!(create_project(&a.url(""), n).await, StatusCode::CREATED);
    }
    // b reports a's numbering for the fetch-then-subscribe handshake.
    let listed = http(Method::GET, &b.url("/api/projects"), &[], "").await;
    let position = listed
        .headers
        .get("x-sync-position")
        .and_then(|v| v.to_str().ok())
        .expect("X-Sync-Position")
        .to_owned();
    let last: u64 = position
        .strip_prefix("projects=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected position {position}"));
    // The browser's automatic Last-Event-ID, on the other replica, replays what it missed.
    let events = sse_events(
        &b.url("/api/sse?channel=projects"),
        &format!("projects={}", last - 2),
        2,
    )
    .await;
    let seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(seqs, [last - 1, last]);
}
