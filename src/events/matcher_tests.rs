//! Tests of `EventMatcher` under the REST convention, and the helpers the rule tests share.
//!
//! Configs are built by hand (not from YAML) so these tests depend only on the config structs.

use http::Method;
use regex::Regex;
use serde_json::Value;

use super::*;
use crate::config::{AutoEventsConfig, EventRule, EventsConfig, ExcludeOrigin};
use crate::events::template::Template;
use crate::memo::REMEMBERED;

pub(super) fn cfg(rules: Vec<EventRule>) -> EventsConfig {
    EventsConfig {
        auto: AutoEventsConfig {
            enabled: true,
            prefix: "/api".into(),
            exclude: vec![Regex::new("^/api/auth/").unwrap()],
        },
        rules,
        exclude_origin: ExcludeOrigin::Connection,
    }
}

pub(super) fn auto() -> EventMatcher {
    EventMatcher::new(&cfg(vec![]))
}

pub(super) fn t(s: &str) -> Template {
    Template::parse(s).unwrap()
}

pub(super) fn rule(methods: &[Method], path: &str, ty: &str, channels: &[&str]) -> EventRule {
    EventRule {
        methods: methods.to_vec(),
        path: Regex::new(path).unwrap(),
        event_type: t(ty),
        channels: channels.iter().map(|c| t(c)).collect(),
        invalidate: vec![],
        id: None,
        data: vec![],
    }
}

pub(super) fn keys(k: &[&[&str]]) -> Vec<Vec<Text>> {
    k.iter()
        .map(|key| key.iter().map(|p| Text::from(*p)).collect())
        .collect()
}

static ACTOR: std::sync::LazyLock<Text> = std::sync::LazyLock::new(|| Text::from("7"));
static ORIGIN: std::sync::LazyLock<Text> = std::sync::LazyLock::new(|| Text::from("tab-1"));

pub(super) fn ctx() -> EmitContext<'static> {
    EmitContext {
        actor: Some(&*ACTOR),
        origin_client: Some(&*ORIGIN),
        ts: 1_764_000_000_123,
    }
}

/// Plans and builds with a complete body.
pub(super) fn emit(m: &EventMatcher, method: Method, path: &str, body: &str) -> Option<EventDraft> {
    let plan = m.plan(&method, path)?;
    plan.build(
        BodyPrefix {
            bytes: body.as_bytes(),
            complete: true,
        },
        &ctx(),
    )
}

pub(super) fn must_emit(m: &EventMatcher, method: Method, path: &str, body: &str) -> EventDraft {
    emit(m, method.clone(), path, body)
        .unwrap_or_else(|| panic!("{method} {path} should emit an event"))
}

// ---- REST convention ----

#[test]
fn post_to_collection_creates_with_id_from_body() {
    let d = must_emit(
        &auto(),
        Method::POST,
        "/api/projects",
        r#"{"id":42,"name":"x"}"#,
    );
    assert_eq!(d.event_type, "project_created");
    assert_eq!(*d.channels, ["projects"]);
    assert_eq!(*d.invalidate, keys(&[&["projects"], &["project", "42"]]));
    assert_eq!(d.resource.as_deref(), Some("projects"));
    assert_eq!(d.resource_id.as_deref(), Some("42"));
    assert_eq!(d.action.as_deref(), Some("created"));
    assert_eq!(d.data, Value::Null);
}

#[test]
fn post_without_body_id_invalidates_only_the_collection() {
    for body in [r#"{"name":"x"}"#, "", "created"] {
        let d = must_emit(&auto(), Method::POST, "/api/projects", body);
        assert_eq!(d.resource_id, None);
        assert_eq!(*d.invalidate, keys(&[&["projects"]]));
    }
}

#[test]
fn post_with_truncated_body_has_no_id() {
    let plan = auto().plan(&Method::POST, "/api/projects").unwrap();
    let body = BodyPrefix {
        bytes: br#"{"id":42}"#,
        complete: false,
    };
    let d = plan.build(body, &ctx()).unwrap();
    assert_eq!(d.resource_id, None);
    assert_eq!(*d.invalidate, keys(&[&["projects"]]));
}

#[test]
fn put_and_patch_on_item_update_it() {
    for method in [Method::PUT, Method::PATCH] {
        let d = must_emit(&auto(), method, "/api/projects/42", "");
        assert_eq!(d.event_type, "project_updated");
        assert_eq!(*d.channels, ["projects", "project:42"]);
        assert_eq!(*d.invalidate, keys(&[&["projects"], &["project", "42"]]));
        assert_eq!(d.resource_id.as_deref(), Some("42"));
        assert_eq!(d.action.as_deref(), Some("updated"));
    }
}

#[test]
fn delete_on_item_deletes_it() {
    let d = must_emit(&auto(), Method::DELETE, "/api/projects/42", "");
    assert_eq!(d.event_type, "project_deleted");
    assert_eq!(*d.channels, ["projects", "project:42"]);
    assert_eq!(*d.invalidate, keys(&[&["projects"], &["project", "42"]]));
    assert_eq!(d.action.as_deref(), Some("deleted"));
}

#[test]
fn nested_post_invalidates_parent() {
    let d = must_emit(
        &auto(),
        Method::POST,
        "/api/projects/42/tasks",
        r#"{"id":7}"#,
    );
    assert_eq!(d.event_type, "task_created");
    assert_eq!(*d.channels, ["tasks", "project:42"]);
    assert_eq!(
        *d.invalidate,
        keys(&[&["tasks"], &["task", "7"], &["project", "42"]])
    );
    assert_eq!(d.resource.as_deref(), Some("tasks"));
    assert_eq!(d.resource_id.as_deref(), Some("7"));
}

#[test]
fn nested_patch_publishes_to_item_and_parent() {
    let d = must_emit(&auto(), Method::PATCH, "/api/projects/42/tasks/7", "");
    assert_eq!(d.event_type, "task_updated");
    assert_eq!(*d.channels, ["tasks", "task:7", "project:42"]);
    assert_eq!(
        *d.invalidate,
        keys(&[&["tasks"], &["task", "7"], &["project", "42"]])
    );
}

#[test]
fn deep_nesting_lists_every_ancestor_in_path_order() {
    let d = must_emit(
        &auto(),
        Method::DELETE,
        "/api/orgs/1/projects/42/tasks/7",
        "",
    );
    assert_eq!(*d.channels, ["tasks", "task:7", "org:1", "project:42"]);
    assert_eq!(
        *d.invalidate,
        keys(&[
            &["tasks"],
            &["task", "7"],
            &["org", "1"],
            &["project", "42"]
        ])
    );
}

#[test]
fn event_type_uses_the_singular() {
    let m = auto();
    let ty = |path: &str| must_emit(&m, Method::DELETE, path, "").event_type;
    assert_eq!(ty("/api/categories/1"), "category_deleted");
    assert_eq!(ty("/api/dashboard"), "dashboard_deleted");
    assert_eq!(ty("/api/staff/3"), "staff_deleted");
}

#[test]
fn string_ids_in_body_are_used_as_is() {
    let d = must_emit(&auto(), Method::POST, "/api/projects", r#"{"id":"p-1"}"#);
    assert_eq!(d.resource_id.as_deref(), Some("p-1"));
}

#[test]
fn trailing_slash_is_the_same_path() {
    let d = must_emit(&auto(), Method::PATCH, "/api/projects/42/", "");
    assert_eq!(*d.channels, ["projects", "project:42"]);
}

#[test]
fn percent_encoded_segments_are_not_decoded() {
    let d = must_emit(&auto(), Method::PUT, "/api/files/a%20b", "");
    assert_eq!(*d.channels, ["files", "file:a%20b"]);
    assert_eq!(d.resource_id.as_deref(), Some("a%20b"));
}

#[test]
fn safe_methods_plan_nothing() {
    let m = auto();
    for method in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
        assert!(m.plan(&method, "/api/projects").is_none(), "{method}");
    }
}

#[test]
fn safe_methods_plan_nothing_even_if_a_rule_lists_them() {
    let m = EventMatcher::new(&cfg(vec![rule(&[Method::GET], "^/api/", "x", &["x"])]));
    assert!(m.plan(&Method::GET, "/api/projects").is_none());
}

#[test]
fn paths_outside_the_prefix_plan_nothing() {
    let m = auto();
    for path in ["/apiary/bees", "/other/projects", "/", "api/projects"] {
        assert!(m.plan(&Method::POST, path).is_none(), "{path}");
    }
}

#[test]
fn bare_prefix_and_empty_segments_plan_nothing() {
    let m = auto();
    for path in ["/api", "/api/", "/api//projects", "/api/projects//tasks"] {
        assert!(m.plan(&Method::POST, path).is_none(), "{path}");
    }
}

#[test]
fn excluded_path_emits_nothing() {
    let m = auto();
    assert!(m.plan(&Method::POST, "/api/auth/login").is_none());
    assert!(m.read_channels("/api/auth/me").is_empty());
}

#[test]
fn disabled_convention_emits_nothing_but_rules_still_apply() {
    let mut c = cfg(vec![rule(
        &[Method::POST],
        "^/api/things$",
        "thing_made",
        &["things"],
    )]);
    c.auto.enabled = false;
    let m = EventMatcher::new(&c);
    assert!(m.plan(&Method::POST, "/api/projects").is_none());
    assert!(m.read_channels("/api/projects").is_empty());
    let d = must_emit(&m, Method::POST, "/api/things", "");
    assert_eq!(d.event_type, "thing_made");
    assert_eq!(d.resource.as_deref(), Some("things"));
}

#[test]
fn unknown_methods_do_not_use_the_convention() {
    let purge = Method::from_bytes(b"PURGE").unwrap();
    assert!(auto().plan(&purge, "/api/projects/1").is_none());
}

#[test]
fn context_is_copied_into_the_draft() {
    let d = must_emit(&auto(), Method::DELETE, "/api/projects/1", "");
    assert_eq!(d.actor.as_deref(), Some("7"));
    assert_eq!(d.origin_client.as_deref(), Some("tab-1"));
    assert_eq!(d.ts, 1_764_000_000_123);
}

#[test]
fn convention_wants_body_only_for_post_to_a_collection() {
    let m = auto();
    let wants = |method: Method, path: &str| m.plan(&method, path).unwrap().wants_body();
    assert!(wants(Method::POST, "/api/projects"));
    assert!(wants(Method::POST, "/api/projects/42/tasks"));
    assert!(!wants(Method::POST, "/api/projects/42"));
    assert!(!wants(Method::PATCH, "/api/projects/42"));
    assert!(!wants(Method::DELETE, "/api/projects/42"));
}

// ---- read channels ----

#[test]
fn read_channels_follow_the_convention() {
    let m = auto();
    assert_eq!(*m.read_channels("/api/projects"), ["projects"]);
    assert_eq!(
        *m.read_channels("/api/projects/42"),
        ["projects", "project:42"]
    );
    assert_eq!(
        *m.read_channels("/api/projects/42/tasks"),
        ["tasks", "project:42"]
    );
    assert!(m.read_channels("/apiary").is_empty());
    assert!(m.read_channels("/api").is_empty());
}

#[test]
fn a_remembered_plan_belongs_to_its_method_and_path() {
    let m = auto();
    let event = |method: Method, path: &str| {
        m.plan(&method, path)
            .and_then(|p| {
                p.build(
                    BodyPrefix {
                        bytes: b"{\"id\":7}",
                        complete: true,
                    },
                    &ctx(),
                )
            })
            .map(|d| (d.event_type, d.resource_id))
    };
    for _ in 0..2 {
        assert_eq!(
            event(Method::PUT, "/api/projects/42"),
            Some(("project_updated".into(), Some("42".into())))
        );
        assert_eq!(
            event(Method::DELETE, "/api/projects/42"),
            Some(("project_deleted".into(), Some("42".into())))
        );
        assert_eq!(
            event(Method::POST, "/api/projects"),
            Some(("project_created".into(), Some("7".into())))
        );
        assert_eq!(event(Method::POST, "/elsewhere"), None);
        assert_eq!(event(Method::GET, "/api/projects"), None);
    }
    for id in 0..2 * REMEMBERED {
        let path = format!("/api/tasks/{id}");
        assert_eq!(
            event(Method::PATCH, &path),
            Some(("task_updated".into(), Some(id.to_string())))
        );
    }
    assert!(m.plans.iter().all(|memo| memo.len() <= REMEMBERED));
}

#[test]
fn paths_that_would_make_unsubscribable_channels_stay_outside_the_convention() {
    // Found by fuzzing: ',' and '=' are legal in paths but separate `X-Sync-Position` entries.
    let m = auto();
    for path in ["/api/a=b,c/1", "/api/projects/4 2"] {
        assert!(m.read_channels(path).is_empty(), "{path}");
        assert!(m.plan(&Method::PUT, path).is_none(), "{path}");
    }
    let long = format!("/api/{}", "x".repeat(300));
    assert!(m.plan(&Method::POST, &long).is_none());
    assert_eq!(
        *m.read_channels("/api/projects/42"),
        ["projects", "project:42"]
    );
}
