//! The generic socket protocol, its limits, and who gets which event.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use http::Method;
use serde_json::{Value, json};
use syncgate::events::EventDraft;
use tokio_tungstenite::tungstenite::Message;

fn draft(channel: &str, data: Value) -> EventDraft {
    EventDraft {
        event_type: "thing_happened".into(),
        channels: vec![channel.into()].into(),
        resource: None,
        resource_id: None,
        action: None,
        invalidate: vec![vec![channel.into()]].into(),
        data: syncgate::events::Data::from_value(&data),
        actor: None,
        ts: syncgate::events::now_millis(),
        origin_client: None,
        prerendered: Default::default(),
    }
}

async fn publish(h: &Harness, channel: &str, data: Value) {
    h.sidecar
        .shared
        .broker
        .publish(draft(channel, data))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_names_the_client_and_user() {
    let open = Harness::start("").await;
    let (_, anon) = open.socket().await;
    assert_eq!(anon["user"], Value::Null, "auth.mode none: anonymous");
    assert!(anon["client_id"].as_str().is_some_and(|id| id.len() >= 16));
    let h = Harness::start("auth: { mode: header }\n").await;
    let (_, seven) = h
        .socket_with(&h.ws_url("/api/ws"), &[("x-user-id", "7")])
        .await;
    assert_eq!(seven["user"], "7");
    assert_ne!(anon["client_id"], seven["client_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_configured_anonymous_sockets_are_refused_with_401() {
    let h = Harness::start("auth: { mode: header }\n").await;
    for path in ["/api/ws", "/api/ws/notifications", "/api/ws/room/doc1"] {
        let err = connect(&h.ws_url(path), &[]).await.expect_err(path);
        assert!(
            matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401),
            "{path}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_error_frames_and_the_connection_stays() {
    let h = Harness::start("").await;
    let (mut ws, _) = h.socket().await;
    for bad in [
        "not json",
        "[]",
        r#"{"op":"jump"}"#,
        r#"{"op":"subscribe"}"#,
    ] {
        ws.send(Message::Text(bad.into())).await.unwrap();
        let err = recv_json(&mut ws).await;
        assert_eq!(err["op"], "error", "{bad}");
        assert_eq!(err["code"], "bad_request", "{bad}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let err = recv_after(&mut ws, Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(err["code"], "bad_request");
    let unknown = recv_after(&mut ws, Message::Text(r#"{"op":"jump"}"#.into())).await;
    assert_eq!(unknown["ref"], "jump");
    // A flood of garbage is answered frame by frame, slows nobody else, and the socket still works.
    let (mut bystander, _) = h.socket().await;
    subscribe(&mut bystander, "alerts", None).await;
    for _ in 0..500 {
        ws.feed(Message::Text("{{{{".into())).await.unwrap();
    }
    ws.flush().await.unwrap();
    let sent = std::time::Instant::now();
    publish(&h, "alerts", json!("still here")).await;
    assert_eq!(recv_json(&mut bystander).await["data"], "still here");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "delivery took {:?} during the flood",
        sent.elapsed()
    );
    for _ in 0..500 {
        assert_eq!(recv_json(&mut ws).await["op"], "error");
    }
    assert_eq!(
        recv_after(&mut ws, Message::Text(r#"{"op":"ping"}"#.into())).await,
        json!({"op":"pong"})
    );
    subscribe(&mut ws, "projects", None).await;
}

async fn recv_after(ws: &mut Ws, msg: Message) -> Value {
    ws.send(msg).await.unwrap();
    recv_json(ws).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let h = Harness::start("").await;
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "alerts", None).await;
    let ack = recv_after(
        &mut ws,
        Message::Text(r#"{"op":"unsubscribe","channel":"alerts"}"#.into()),
    )
    .await;
    assert_eq!(ack, json!({"op":"unsubscribed","channel":"alerts"}));
    publish(&h, "alerts", json!(1)).await;
    assert_silent(&mut ws, Duration::from_millis(200)).await;
    let again = recv_after(
        &mut ws,
        Message::Text(r#"{"op":"unsubscribe","channel":"alerts"}"#.into()),
    )
    .await;
    assert_eq!(again["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_since_recovers_missed_events_in_order() {
    let h = Harness::start("").await;
    for i in 1..=4 {
        publish(&h, "projects", json!(i)).await;
    }
    let (mut ws, _) = h.socket().await;
    let sub = subscribe(&mut ws, "projects", Some(1)).await;
    assert_eq!(
        sub,
        json!({"op":"subscribed","channel":"projects","seq":4,"recovered":true})
    );
    for seq in 2..=4 {
        let ev = recv_json(&mut ws).await;
        assert_eq!(
            (ev["seq"].as_u64(), ev["data"].as_u64()),
            (Some(seq), Some(seq))
        );
    }
    publish(&h, "projects", json!(5)).await;
    assert_eq!(
        recv_json(&mut ws).await["seq"],
        5,
        "live events follow the replay without a gap"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_since_beyond_history_gets_reset() {
    let h = Harness::start("history: { size: 2, ttl: 10m }\n").await;
    for i in 1..=5 {
        publish(&h, "projects", json!(i)).await;
    }
    let (mut ws, _) = h.socket().await;
    let sub = subscribe(&mut ws, "projects", Some(1)).await;
    assert_eq!(sub["recovered"], false);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"op":"reset","channel":"projects"})
    );
    publish(&h, "projects", json!(6)).await;
    assert_eq!(recv_json(&mut ws).await["seq"], 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009() {
    let h = Harness::start("limits: { max_message_bytes: 1KiB }\n").await;
    let (mut ws, _) = h.socket().await;
    let big = format!(r#"{{"op":"ping","pad":"{}"}}"#, "x".repeat(4096));
    ws.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(recv_close_code(&mut ws).await, 1009);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_subscriptions_are_refused() {
    let h = Harness::start("limits: { max_subscriptions: 2 }\n").await;
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "a", None).await;
    subscribe(&mut ws, "b", None).await;
    let err = recv_after(
        &mut ws,
        Message::Text(r#"{"op":"subscribe","channel":"c"}"#.into()),
    )
    .await;
    assert_eq!(
        (err["code"].as_str(), err["ref"].as_str()),
        (Some("too_many"), Some("subscribe"))
    );
    subscribe(&mut ws, "a", None).await; // re-subscribing an existing channel is fine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_get_503() {
    let h = Harness::start("limits: { max_connections: 2 }\n").await;
    let _a = h.socket().await;
    let _b = h.socket().await;
    let err = connect(&h.ws_url("/api/ws"), &[])
        .await
        .expect_err("third socket must be refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        other => panic!("expected an HTTP 503, got {other}"),
    }
    drop(_a);
    let deadline = tokio::time::Instant::now() + WAIT;
    while connect(&h.ws_url("/api/ws"), &[]).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slot never freed after a socket closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Events meet a socket whose reader has stalled: the fan-out's direct writes fill it, frames
/// are cut mid-way, the rest waits in the connection's queue. When the reader resumes it gets
/// every event whole, once, in order, with the answer to its own request among them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stalls_then_catches_up_gets_every_event_whole_and_in_order() {
    let h = Harness::start("limits: { send_queue: 4096 }\n").await;
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "firehose", None).await;
    const EVENTS: u64 = 300;
    for i in 0..EVENTS {
        // Sizes vary so frames are cut at every kind of offset, headers included.
        let pad = char::from(b'a' + (i % 26) as u8)
            .to_string()
            .repeat(20_000 + (i as usize * 797) % 45_000);
        publish(&h, "firehose", json!({"i": i, "pad": pad})).await;
        if i == EVENTS / 2 {
            ws.send(Message::Text(r#"{"op":"ping"}"#.into()))
                .await
                .unwrap();
        }
    }
    let mut next = 1;
    let mut pongs = 0;
    while next <= EVENTS {
        let msg = recv_json(&mut ws).await;
        if msg == json!({"op":"pong"}) {
            pongs += 1;
            continue;
        }
        assert_eq!(msg["seq"], next, "events arrive once each, in order");
        let i = next - 1;
        let pad = msg["data"]["pad"].as_str().expect("a whole payload");
        assert_eq!(msg["data"]["i"], i);
        assert_eq!(pad.len(), 20_000 + (i as usize * 797) % 45_000);
        assert!(pad.bytes().all(|b| b == b'a' + (i % 26) as u8));
        next += 1;
    }
    if pongs == 0 {
        assert_eq!(recv_json(&mut ws).await, json!({"op":"pong"}));
        pongs = 1;
    }
    assert_eq!(pongs, 1);
    assert_silent(&mut ws, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_cut_off_with_1013_and_others_get_everything() {
    let h = Harness::start("limits: { send_queue: 8 }\n").await;
    let (mut slow, _) = h.socket().await;
    subscribe(&mut slow, "firehose", None).await;
    let (mut fast, _) = h.socket().await;
    subscribe(&mut fast, "firehose", None).await;
    let pad = "x".repeat(32 * 1024);
    // 400 × 32 KiB = 12.5 MiB: far more than socket buffers hold while `slow` reads nothing.
    // The fast reader takes each event before the next is published, so only `slow` falls behind,
    // however loaded the machine is.
    for i in 0..400u64 {
        publish(&h, "firehose", json!({"i": i, "pad": pad})).await;
        let ev = recv_json(&mut fast).await;
        assert_eq!(
            ev["seq"],
            i + 1,
            "the fast subscriber gets every event, in order"
        );
    }
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(20), slow.next())
            .await
            .expect("slow socket never ended")
        {
            Some(Ok(Message::Close(Some(f)))) => break Some(u16::from(f.code)),
            Some(Err(_)) | None | Some(Ok(Message::Close(None))) => break None,
            Some(Ok(_)) => continue,
        }
    };
    assert_eq!(code, Some(1013));
    let metrics = get(&h.admin_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("syncgate_ws_dropped_total{reason=\"slow_consumer\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_at_the_configured_interval() {
    let h = Harness::start("websocket: { ping_interval: 100ms }\n").await;
    let (mut ws, _) = h.socket().await;
    let frame = tokio::time::timeout(Duration::from_secs(2), ws.next())
        .await
        .expect("no ping")
        .unwrap()
        .unwrap();
    assert!(matches!(frame, Message::Ping(_)), "{frame:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_private_channel_is_forbidden() {
    let h = Harness::start("auth: { mode: header }\n").await;
    let (mut ws, _) = h
        .socket_with(&h.ws_url("/api/ws"), &[("x-user-id", "7")])
        .await;
    let err = recv_after(
        &mut ws,
        Message::Text(r#"{"op":"subscribe","channel":"user:8"}"#.into()),
    )
    .await;
    assert_eq!(err["code"], "forbidden");
    subscribe(&mut ws, "user:7", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_socket_is_auto_subscribed_to_the_users_channel() {
    let h = Harness::start("auth: { mode: header }\n").await;
    let (mut ws, _) = h
        .socket_with(&h.ws_url("/api/ws/notifications"), &[("x-user-id", "7")])
        .await;
    assert_eq!(recv_json(&mut ws).await["channel"], "user:7");
    publish(&h, "user:8", json!("not yours")).await;
    publish(&h, "user:7", json!("yours")).await;
    assert_eq!(recv_json(&mut ws).await["data"], "yours");
    let err = connect(&h.ws_url("/api/ws/notifications"), &[])
        .await
        .expect_err("anonymous");
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_socket_is_refused() {
    let h = Harness::start("").await;
    let err = connect(&h.ws_url("/api/ws"), &[("origin", "https://evil.example")])
        .await
        .expect_err("hijack");
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403));
    let same = format!("http://{}", h.sidecar.public_addr);
    h.socket_with(&h.ws_url("/api/ws"), &[("origin", same.as_str())])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn originating_tab_is_skipped_and_other_tabs_update() {
    let h = Harness::start("").await;
    let (mut tab_a, welcome_a) = h.socket().await;
    let (mut tab_b, _) = h.socket().await;
    subscribe(&mut tab_a, "projects", None).await;
    subscribe(&mut tab_b, "projects", None).await;
    let client_a = welcome_a["client_id"].as_str().unwrap().to_owned();
    http(
        Method::POST,
        &h.url("/api/projects"),
        &[("x-sync-client", &client_a)],
        "{}",
    )
    .await;
    assert_eq!(recv_json(&mut tab_b).await["type"], "project_created");
    assert_silent(&mut tab_a, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_origin_none_echoes_to_the_originating_tab() {
    let h = Harness::start("events: { exclude_origin: none }\n").await;
    let (mut tab_a, welcome_a) = h.socket().await;
    subscribe(&mut tab_a, "projects", None).await;
    let client_a = welcome_a["client_id"].as_str().unwrap().to_owned();
    http(
        Method::POST,
        &h.url("/api/projects"),
        &[("x-sync-client", &client_a)],
        "{}",
    )
    .await;
    assert_eq!(recv_json(&mut tab_a).await["type"], "project_created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_broadcast_reaches_other_members_only() {
    let h = Harness::start("").await;
    let (mut a, _) = h.socket().await;
    let (mut b, _) = h.socket().await;
    let (mut outsider, _) = h.socket().await;
    subscribe(&mut a, "room:doc1", None).await;
    assert_eq!(recv_json(&mut a).await["type"], "presence");
    subscribe(&mut b, "room:doc1", None).await;
    assert_eq!(recv_json(&mut b).await["type"], "presence");
    assert_eq!(recv_json(&mut a).await["type"], "user_joined");
    send_json(
        &mut a,
        json!({"op":"publish","channel":"room:doc1","type":"document_updated","data":{"v":2}}),
    )
    .await;
    let got = recv_json(&mut b).await;
    assert_eq!(
        (got["type"].as_str(), got["data"]["v"].as_u64()),
        (Some("document_updated"), Some(2))
    );
    assert_silent(&mut a, Duration::from_millis(200)).await;
    let err = recv_after(
        &mut outsider,
        Message::Text(r#"{"op":"publish","channel":"room:doc1","type":"x"}"#.into()),
    )
    .await;
    assert_eq!(err["code"], "forbidden", "publishing needs membership");
    let err = recv_after(
        &mut outsider,
        Message::Text(r#"{"op":"publish","channel":"projects","type":"x"}"#.into()),
    )
    .await;
    assert_eq!(
        err["code"], "forbidden",
        "only rooms take client broadcasts"
    );
}
