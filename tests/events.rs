//! Mutations through the proxy become SPEC events on subscribed sockets.

mod common;

use std::time::Duration;

use common::*;
use http::Method;
use serde_json::json;

#[tokio::test]
async fn create_update_delete_emit_spec_envelopes() {
    let h = Harness::start("auth: { mode: header }\n").await;
    let (mut ws, _) = h
        .socket_with(&h.ws_url("/api/ws"), &[("x-user-id", "8")])
        .await;
    let sub = subscribe(&mut ws, "projects", None).await;
    assert_eq!(
        sub,
        json!({"op":"subscribed","channel":"projects","seq":0,"recovered":false})
    );

    let created = http(
        Method::POST,
        &h.url("/api/projects"),
        &[("x-user-id", "7"), ("content-type", "application/json")],
        r#"{"name":"Apollo"}"#,
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].to_string();
    let ev = recv_json(&mut ws).await;
    assert_eq!(ev["type"], "project_created");
    assert_eq!(ev["channel"], "projects");
    assert_eq!(ev["seq"], 1);
    assert_eq!(ev["resource"], "projects");
    assert_eq!(ev["resource_id"], id.as_str());
    assert_eq!(ev["action"], "created");
    assert_eq!(ev["invalidate"], json!([["projects"], ["project", id]]));
    assert_eq!(ev["data"], json!(null));
    assert_eq!(ev["actor"], "7");
    let now = syncgate::events::now_millis();
    let ts = ev["ts"].as_u64().unwrap();
    assert!(ts <= now && now - ts < 5_000, "ts {ts} vs now {now}");
    let first_id = ev["id"].as_str().unwrap().to_owned();

    http(
        Method::PATCH,
        &h.url(&format!("/api/projects/{id}")),
        &[],
        r#"{"name":"x"}"#,
    )
    .await;
    let ev = recv_json(&mut ws).await;
    assert_eq!(
        (ev["type"].as_str(), ev["seq"].as_u64()),
        (Some("project_updated"), Some(2))
    );
    assert_eq!(ev["invalidate"], json!([["projects"], ["project", id]]));
    assert_ne!(ev["id"], first_id);

    http(
        Method::DELETE,
        &h.url(&format!("/api/projects/{id}")),
        &[],
        "",
    )
    .await;
    let ev = recv_json(&mut ws).await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["seq"].as_u64(),
            ev["action"].as_str()
        ),
        (Some("project_deleted"), Some(3), Some("deleted"))
    );
    h.sidecar.shutdown().await;
}

#[tokio::test]
async fn failed_mutations_reads_and_excluded_paths_emit_nothing() {
    let h = Harness::start("").await;
    let (mut ws, _) = h.socket().await;
    subscribe(&mut ws, "projects", None).await;
    subscribe(&mut ws, "auth", None).await;
    let r = http(Method::PATCH, &h.url("/api/projects/404"), &[], "{}").await;
    assert_eq!(r.status, 404);
    assert_eq!(get(&h.url("/api/projects")).await.status, 200);
    assert_eq!(
        http(Method::POST, &h.url("/api/auth/login"), &[], "{}")
            .await
            .status,
        200
    );
    assert_silent(&mut ws, Duration::from_millis(300)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_rule_renders_templates_and_copies_only_listed_fields() {
    let h = Harness::start(
        r#"auth: { mode: header }
events:
  rules:
    - methods: [PUT, PATCH]
      path: "^/api/projects/(?P<id>[^/]+)$"
      type: project_renamed
      channels: ["project:{id}", "user:{user}"]
      invalidate: [["projects"], ["project", "{id}"], ["by-name", "{body.name}"]]
      id: "/id"
      data: ["id", "name"]
"#,
    )
    .await;
    let (mut ws, _) = h
        .socket_with(&h.ws_url("/api/ws"), &[("x-user-id", "7")])
        .await;
    subscribe(&mut ws, "project:5", None).await;
    subscribe(&mut ws, "user:7", None).await;
    http(
        Method::PATCH,
        &h.url("/api/projects/5"),
        &[("x-user-id", "7")],
        "{}",
    )
    .await;
    let mut got = vec![recv_json(&mut ws).await, recv_json(&mut ws).await];
    got.sort_by_key(|e| e["channel"].as_str().unwrap_or("").to_owned());
    assert_eq!(got[0]["channel"], "project:5");
    assert_eq!(got[1]["channel"], "user:7");
    for ev in &got {
        assert_eq!(ev["type"], "project_renamed");
        assert_eq!(ev["resource_id"], "5");
        assert_eq!(ev["actor"], "7");
        assert_eq!(
            ev["invalidate"],
            json!([["projects"], ["project", "5"], ["by-name", "renamed"]])
        );
        assert_eq!(
            ev["data"],
            json!({"id": 5, "name": "renamed"}),
            "the upstream's `secret` field must not leak"
        );
    }
    assert_eq!(
        got[0]["id"], got[1]["id"],
        "one mutation, one id across its channels"
    );
}
