//! Identity, private channels, rooms and the doors an attacker would try (issue 4).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use http::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

const UPSTREAM_AUTH: &str = r#"auth: { mode: upstream }
rooms:
  authorize:
    - room: "^project:(?P<id>.+)$"
      path: "/api/projects/{id}"
"#;

const ALICE: (&str, &str) = ("cookie", "session=alice");
const BOB: (&str, &str) = ("cookie", "session=bob");

fn refused_with(err: &WsError, status: u16) -> bool {
    matches!(err, WsError::Http(r) if r.status() == status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_mode_identifies_sockets_by_the_callers_own_credentials() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let (_, welcome) = h.socket_with(&h.ws_url("/api/ws"), &[ALICE]).await;
    assert_eq!(welcome["user"], "7");
    let (_, welcome) = h
        .socket_with(&h.ws_url("/api/ws?access_token=bob-token"), &[])
        .await;
    assert_eq!(
        welcome["user"], "8",
        "browsers pass the token as a query parameter"
    );
    for headers in [vec![], vec![("cookie", "session=mallory")]] {
        let err = connect(&h.ws_url("/api/ws"), &headers)
            .await
            .expect_err("anonymous");
        assert!(refused_with(&err, 401), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_for_one_credential_share_one_auth_request() {
    let (up, api) = start_upstream_with_state().await;
    let h = Harness::start_with_upstream(up, UPSTREAM_AUTH).await;
    let url = h.ws_url("/api/ws");
    let opens = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { connect(&url, &[ALICE]).await.map(|_| ()) })
    });
    for open in futures_util::future::join_all(opens).await {
        open.unwrap().expect("every socket is admitted");
    }
    assert_eq!(
        api.auth_calls.load(Ordering::SeqCst),
        1,
        "one upstream call for 20 sockets"
    );
    h.socket_with(&url, &[BOB]).await;
    assert_eq!(
        api.auth_calls.load(Ordering::SeqCst),
        2,
        "another credential is asked once"
    );
    h.socket_with(&url, &[ALICE]).await;
    assert_eq!(
        api.auth_calls.load(Ordering::SeqCst),
        2,
        "cached for cache_ttl"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutations_carry_the_actor_from_upstream_auth() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let (mut ws, _) = h.socket_with(&h.ws_url("/api/ws"), &[BOB]).await;
    subscribe(&mut ws, "projects", None).await;
    http(Method::POST, &h.url("/api/projects"), &[ALICE], "{}").await;
    assert_eq!(recv_json(&mut ws).await["actor"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_7_cannot_read_user_8_notifications() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let (mut alice, _) = h
        .socket_with(&h.ws_url("/api/ws/notifications"), &[ALICE])
        .await;
    assert_eq!(recv_json(&mut alice).await["channel"], "user:7");
    send_json(&mut alice, json!({"op":"subscribe","channel":"user:8"})).await;
    assert_eq!(recv_json(&mut alice).await["code"], "forbidden");
    let (mut bob, _) = h
        .socket_with(&h.ws_url("/api/ws/notifications"), &[BOB])
        .await;
    assert_eq!(recv_json(&mut bob).await["channel"], "user:8");

    // The API tells bob something through the response header; only bob's tabs hear it.
    let publish = |to: &str| json!({"channel": format!("user:{to}"), "type": "notification_created", "data": {"for": to}});
    let broker = &h.sidecar.shared.broker;
    let draft = syncgate::events::external::parse(
        publish("8").to_string().as_bytes(),
        &syncgate::events::EmitContext::default(),
    )
    .unwrap();
    broker.publish(draft).await.unwrap();
    assert_eq!(recv_json(&mut bob).await["data"]["for"], "8");
    assert_silent(&mut alice, Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_the_api_hides_cannot_be_joined_or_observed() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let (mut alice, _) = h
        .socket_with(&h.ws_url("/api/ws/room/project:secret"), &[ALICE])
        .await;
    assert_eq!(recv_json(&mut alice).await["op"], "subscribed");
    let presence = recv_json(&mut alice).await;
    assert_eq!(
        presence,
        json!({"type":"presence","room":"project:secret","users":[{"id":"7"}]})
    );

    // Bob through the room path: accepted, then closed with 4403 and a reason he can show.
    let mut bob = connect(&h.ws_url("/api/ws/room/project:secret"), &[BOB])
        .await
        .unwrap();
    assert_eq!(recv_json(&mut bob).await["op"], "welcome");
    let closed = loop {
        match tokio::time::timeout(WAIT, bob.next()).await.unwrap() {
            Some(Ok(Message::Close(Some(frame)))) => break frame,
            Some(Ok(Message::Text(t))) => panic!("bob learned something: {t}"),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(closed.code), 4403);
    assert!(closed.reason.contains("not allowed"), "{}", closed.reason);

    // Bob through the generic socket: an error, no presence, and alice sees nobody join.
    let (mut bob, _) = h.socket_with(&h.ws_url("/api/ws"), &[BOB]).await;
    send_json(
        &mut bob,
        json!({"op":"subscribe","channel":"room:project:secret"}),
    )
    .await;
    let err = recv_json(&mut bob).await;
    assert_eq!(
        (err["op"].as_str(), err["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    assert_silent(&mut bob, Duration::from_millis(200)).await;
    assert_silent(&mut alice, Duration::from_millis(100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_three_tabs_is_present_once_and_leaves_with_the_last() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let room = h.ws_url("/api/ws/room/project:1");
    let (mut bob, _) = h.socket_with(&room, &[BOB]).await;
    recv_json(&mut bob).await; // subscribed
    recv_json(&mut bob).await; // presence: bob alone
    let mut tabs = Vec::new();
    for _ in 0..3 {
        let (mut tab, _) = h.socket_with(&room, &[ALICE]).await;
        recv_json(&mut tab).await;
        let presence = recv_json(&mut tab).await;
        assert_eq!(
            presence["users"],
            json!([{"id":"8"},{"id":"7"}]),
            "alice once, however many tabs"
        );
        tabs.push(tab);
    }
    assert_eq!(
        recv_json(&mut bob).await,
        json!({"type":"user_joined","room":"project:1","user":{"id":"7"}})
    );
    assert_silent(&mut bob, Duration::from_millis(150)).await;
    for mut tab in tabs.drain(..2) {
        tab.close(None).await.unwrap();
    }
    assert_silent(&mut bob, Duration::from_millis(300)).await;
    let mut last = tabs.pop().unwrap();
    last.close(None).await.unwrap();
    assert_eq!(
        recv_json(&mut bob).await,
        json!({"type":"user_left","room":"project:1","user_id":"7"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_frames_are_relayed_to_the_others_only_when_client_publish_allows() {
    let h = Harness::start(UPSTREAM_AUTH).await;
    let room = h.ws_url("/api/ws/room/project:1");
    let (mut alice, _) = h.socket_with(&room, &[ALICE]).await;
    let (mut bob, _) = h.socket_with(&room, &[BOB]).await;
    for _ in 0..3 {
        recv_json(&mut alice).await; // subscribed, presence, user_joined(bob)
    }
    recv_json(&mut bob).await;
    recv_json(&mut bob).await;
    send_json(
        &mut alice,
        json!({"type":"document_updated","data":{"rev":3}}),
    )
    .await;
    assert_eq!(
        recv_json(&mut bob).await,
        json!({"type":"document_updated","room":"project:1","user":{"id":"7"},"data":{"rev":3}})
    );
    assert_silent(&mut alice, Duration::from_millis(200)).await;

    let closed = Harness::start(&format!("{UPSTREAM_AUTH}  client_publish: false\n")).await;
    let (mut carol, _) = closed
        .socket_with(&closed.ws_url("/api/ws/room/project:1"), &[ALICE])
        .await;
    recv_json(&mut carol).await;
    recv_json(&mut carol).await;
    send_json(&mut carol, json!({"type":"document_updated","data":{}})).await;
    assert_eq!(recv_json(&mut carol).await["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclude_origin_user_skips_every_tab_of_the_actor() {
    let h = Harness::start(&format!(
        "{UPSTREAM_AUTH}events: {{ exclude_origin: user }}\n"
    ))
    .await;
    let (mut alice1, _) = h.socket_with(&h.ws_url("/api/ws"), &[ALICE]).await;
    let (mut alice2, _) = h.socket_with(&h.ws_url("/api/ws"), &[ALICE]).await;
    let (mut bob, _) = h.socket_with(&h.ws_url("/api/ws"), &[BOB]).await;
    for ws in [&mut alice1, &mut alice2, &mut bob] {
        subscribe(ws, "projects", None).await;
    }
    http(Method::POST, &h.url("/api/projects"), &[ALICE], "{}").await;
    assert_eq!(recv_json(&mut bob).await["actor"], "7");
    assert_silent(&mut alice1, Duration::from_millis(200)).await;
    assert_silent(&mut alice2, Duration::from_millis(50)).await;
}

fn jwt(secret: &str, claims: serde_json::Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_checks_signature_and_expiry() {
    let key = std::env::temp_dir().join(format!("syncgate-jwt-{}.key", std::process::id()));
    std::fs::write(&key, "test-secret").unwrap();
    let h = Harness::start(&format!(
        "auth: {{ mode: jwt, jwt: {{ key_file: \"{}\", algorithms: [HS256] }} }}\n",
        key.display()
    ))
    .await;
    let now = jsonwebtoken::get_current_timestamp();
    let good = jwt("test-secret", json!({"sub": "7", "exp": now + 60}));
    let (_, welcome) = h
        .socket_with(&h.ws_url(&format!("/api/ws?access_token={good}")), &[])
        .await;
    assert_eq!(welcome["user"], "7");
    let bearer = format!("Bearer {good}");
    let (_, welcome) = h
        .socket_with(&h.ws_url("/api/ws"), &[("authorization", bearer.as_str())])
        .await;
    assert_eq!(welcome["user"], "7");
    for bad in [
        jwt("other-secret", json!({"sub": "7", "exp": now + 60})),
        jwt("test-secret", json!({"sub": "7", "exp": now - 120})),
        jwt(
            "test-secret",
            json!({"sub": "7", "exp": now + 600, "nbf": now + 300}),
        ),
    ] {
        let err = connect(&h.ws_url(&format!("/api/ws?access_token={bad}")), &[])
            .await
            .expect_err("bad token");
        assert!(refused_with(&err, 401), "{err}");
    }
    let _ = std::fs::remove_file(key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_without_a_key_refuses_to_start() {
    let up = start_upstream().await;
    let config = syncgate::config::Config::from_yaml_str(
        &format!("upstream: {{ url: \"http://{up}\" }}\nauth: {{ mode: jwt, jwt: {{ secret_env: SYNCGATE_TEST_NO_SUCH_VAR }} }}\n"),
        "t.yaml",
    )
    .unwrap();
    let listeners = syncgate::Listeners {
        public: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        admin: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let err = syncgate::start_with(config, listeners)
        .await
        .err()
        .expect("must not start open");
    assert!(
        err.to_string().contains("SYNCGATE_TEST_NO_SUCH_VAR"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_headers_get_431() {
    let h = Harness::start("").await;
    let big = "x".repeat(100 * 1024);
    let r = http(
        Method::GET,
        &h.url("/api/projects"),
        &[("x-big", big.as_str())],
        "",
    )
    .await;
    assert_eq!(r.status, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_handshake_is_dropped() {
    let h = Harness::start("").await;
    let mut tcp = tokio::net::TcpStream::connect(h.sidecar.public_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /api/ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    // Never finish the head: the server must give up on its own.
    let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf))
        .await
        .expect("the half-open handshake was kept for 30 s");
    let elapsed = started.elapsed();
    assert!(matches!(n, Ok(_) | Err(_)));
    assert!(
        elapsed < Duration::from_secs(20),
        "dropped after {elapsed:?}"
    );
}

/// The header-read timer is lent to each request of a connection in turn: a keep-alive
/// connection whose second head never ends is dropped too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_second_request_on_a_kept_alive_connection_is_dropped() {
    let h = Harness::start("").await;
    let mut tcp = tokio::net::TcpStream::connect(h.sidecar.public_addr)
        .await
        .unwrap();
    tcp.write_all(b"GET /api/projects HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("Gemini") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the first answer");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    tcp.write_all(b"GET /api/projects HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf))
        .await
        .expect("the half-sent second head was kept for 30 s");
    assert!(matches!(n, Ok(0) | Err(_)), "an answer came: {n:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "dropped after {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_mode_verifies_rs256_and_es256_with_public_keys() {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({"sub": 42, "exp": now + 60});
    type Loader = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;
    let cases: [(&str, Algorithm, &str, Loader); 2] = [
        ("RS256", Algorithm::RS256, "rsa", EncodingKey::from_rsa_pem),
        ("ES256", Algorithm::ES256, "ec", EncodingKey::from_ec_pem),
    ];
    for (name, alg, kind, encoding_key) in cases {
        let public = fixtures.join(format!("{kind}-public.pem"));
        let private = std::fs::read(fixtures.join(format!("{kind}-private.pem"))).unwrap();
        let h = Harness::start(&format!(
            "auth: {{ mode: jwt, jwt: {{ key_file: \"{}\", algorithms: [{name}] }} }}\n",
            public.display()
        ))
        .await;
        let token = encode(&Header::new(alg), &claims, &encoding_key(&private).unwrap()).unwrap();
        let (_, welcome) = h
            .socket_with(&h.ws_url(&format!("/api/ws?access_token={token}")), &[])
            .await;
        assert_eq!(
            welcome["user"], "42",
            "{name}: numeric sub claims become string ids"
        );
        // A token signed with HS256 and the public key as the secret (the classic confusion attack).
        let forged = jwt(
            &String::from_utf8(std::fs::read(&public).unwrap()).unwrap(),
            json!({"sub": "1", "exp": now + 60}),
        );
        let err = connect(&h.ws_url(&format!("/api/ws?access_token={forged}")), &[])
            .await
            .expect_err("algorithm confusion");
        assert!(refused_with(&err, 401), "{name}: {err}");
    }
}
