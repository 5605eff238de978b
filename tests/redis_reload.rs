//! Live reload of a Redis-broker replica when its config file changes (no SIGHUP): new rules apply
//! without dropping sockets, an invalid file is refused and the old config keeps serving, and a
//! broker change says it needs a restart.

mod common;
mod redis_support;

use std::time::{Duration, Instant};

use http::Method;

use common::{connect, http, recv_json, start_upstream, subscribe};
use redis_support::{Prefix, Replica, broker_yaml, replica_yaml};

fn rules(value: &str) -> String {
    format!("cache_control:\n  rules:\n    - path: \"^/api/projects\"\n      value: \"{value}\"\n")
}

/// Replaces the file the way editors and ConfigMaps do: a new file renamed over the old one.
fn replace_file(path: &std::path::Path, contents: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, contents).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename over config");
}

async fn cache_control(url: &str) -> String {
    let reply = http(Method::GET, url, &[], "").await;
    reply
        .headers
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_changes_reload_without_sighup_and_keep_sockets() {
    let upstream = start_upstream().await;
    let p = Prefix::shared();
    let broker = broker_yaml(&p, 1000);
    let replica = Replica::start(
        "replica",
        upstream,
        &format!("{broker}{}", rules("private, max-age=1")),
    )
    .await;
    let projects = replica.url("/api/projects");
    assert_eq!(cache_control(&projects).await, "private, max-age=1");
    let mut ws = connect(&replica.ws_url("/api/ws"), &[])
        .await
        .expect("socket");
    assert_eq!(recv_json(&mut ws).await["op"], "welcome");
    subscribe(&mut ws, "projects", None).await;

    // A valid new file, renamed into place: applied within the debounce, socket kept.
    let yaml = |extra: &str| replica_yaml(replica.public, replica.admin, upstream, extra);
    replace_file(
        &replica.config,
        &yaml(&format!("{broker}{}", rules("private, max-age=2"))),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache_control(&projects).await != "private, max-age=2" {
        assert!(
            Instant::now() < deadline,
            "file change not applied:\n{}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica
        .wait_log("file changed", Duration::from_secs(5))
        .await;
    let created = http(
        Method::POST,
        &replica.url("/api/projects"),
        &[("content-type", "application/json")],
        "{\"name\":\"x\"}",
    )
    .await;
    assert_eq!(created.status, 201);
    let event = recv_json(&mut ws).await;
    assert_eq!(
        event["type"], "project_created",
        "the socket survived the reload: {event}"
    );

    // An invalid file: refused with a log line naming the problem; the last good rules keep serving.
    replace_file(
        &replica.config,
        &yaml(&format!(
            "{broker}cache_control:\n  rules:\n    - path: \"^/api/([\"\n      value: \"x\"\n"
        )),
    );
    replica
        .wait_log("config reload refused", Duration::from_secs(10))
        .await;
    assert!(
        replica.log().contains("cache_control.rules[0].path"),
        "{}",
        replica.log()
    );
    assert_eq!(cache_control(&projects).await, "private, max-age=2");

    // A broker change cannot be applied live: it says so.
    let other = Prefix::shared();
    replace_file(
        &replica.config,
        &yaml(&format!(
            "{}{}",
            broker_yaml(&other, 1000),
            rules("private, max-age=3")
        )),
    );
    replica
        .wait_log("restart syncgate to apply", Duration::from_secs(10))
        .await;
    assert_eq!(cache_control(&projects).await, "private, max-age=2");
}
