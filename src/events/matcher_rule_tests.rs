//! Tests of `EventMatcher` with explicit rules: precedence, templates, ids, `data` and body needs.

use http::Method;
use serde_json::{Value, json};

use super::tests::{cfg, ctx, emit, keys, must_emit, rule, t};
use super::*;

#[test]
fn explicit_rule_wins_over_convention() {
    let mut r = rule(
        &[Method::POST],
        "^/api/projects/?$",
        "project_created",
        &["projects"],
    );
    r.invalidate = vec![vec![t("projects")], vec![t("dashboard")]];
    let m = EventMatcher::new(&cfg(vec![r]));
    let d = must_emit(&m, Method::POST, "/api/projects", r#"{"id":42}"#);
    assert_eq!(*d.invalidate, keys(&[&["projects"], &["dashboard"]]));
    assert_eq!(d.resource.as_deref(), Some("projects"));
    assert_eq!(d.resource_id.as_deref(), Some("42"));
    assert_eq!(d.action.as_deref(), Some("created"));
}

#[test]
fn first_matching_rule_wins() {
    let m = EventMatcher::new(&cfg(vec![
        rule(&[Method::POST], "^/api/projects$", "first", &["a"]),
        rule(&[Method::POST], "^/api/", "second", &["b"]),
    ]));
    assert_eq!(
        must_emit(&m, Method::POST, "/api/projects", "").event_type,
        "first"
    );
    assert_eq!(
        must_emit(&m, Method::POST, "/api/tasks", "").event_type,
        "second"
    );
}

#[test]
fn rule_for_other_method_falls_through() {
    let m = EventMatcher::new(&cfg(vec![
        rule(&[Method::POST], "^/api/projects", "posted", &["p"]),
        rule(&[Method::DELETE], "^/api/projects", "removed", &["p"]),
    ]));
    assert_eq!(
        must_emit(&m, Method::DELETE, "/api/projects/1", "").event_type,
        "removed"
    );
    // No rule for PATCH: the convention answers.
    assert_eq!(
        must_emit(&m, Method::PATCH, "/api/projects/1", "").event_type,
        "project_updated"
    );
}

#[test]
fn rule_wins_even_on_excluded_path() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/api/auth/logout$",
        "logged_out",
        &["user:{user}"],
    )]));
    let d = must_emit(&m, Method::POST, "/api/auth/logout", "");
    assert_eq!(d.event_type, "logged_out");
    assert_eq!(*d.channels, ["user:7"]);
}

#[test]
fn rule_templates_render_captures_body_and_user() {
    let mut r = rule(
        &[Method::PUT],
        "^/api/projects/(?P<pid>[^/]+)$",
        "{body.kind}_changed",
        &["project:{pid}", "owner:{body.owner.id}", "user:{user}"],
    );
    r.invalidate = vec![
        vec![t("project"), t("{pid}")],
        vec![t("flag"), t("{body.on}")],
    ];
    let m = EventMatcher::new(&cfg(vec![r]));
    let body = r#"{"kind":"project","owner":{"id":5},"on":true}"#;
    let d = must_emit(&m, Method::PUT, "/api/projects/42", body);
    assert_eq!(d.event_type, "project_changed");
    assert_eq!(*d.channels, ["project:42", "owner:5", "user:7"]);
    assert_eq!(
        *d.invalidate,
        keys(&[&["project", "42"], &["flag", "true"]])
    );
}

#[test]
fn missing_capture_drops_only_that_channel() {
    let r = rule(
        &[Method::POST],
        "^/api/things(/(?P<id>[^/]+))?$",
        "thing",
        &["things", "thing:{id}", "owner:{body.owner}", "user:{user}"],
    );
    let m = EventMatcher::new(&cfg(vec![r]));
    let plan = m.plan(&Method::POST, "/api/things").unwrap();
    let anonymous = EmitContext::default();
    let d = plan
        .build(
            BodyPrefix {
                bytes: b"{}",
                complete: true,
            },
            &anonymous,
        )
        .unwrap();
    assert_eq!(*d.channels, ["things"]);
}

#[test]
fn invalidate_key_with_missing_part_is_dropped() {
    let mut r = rule(&[Method::POST], "^/api/things$", "thing", &["things"]);
    r.invalidate = vec![vec![t("things")], vec![t("thing"), t("{body.id}")]];
    let m = EventMatcher::new(&cfg(vec![r]));
    let d = must_emit(&m, Method::POST, "/api/things", r#"{"name":"x"}"#);
    assert_eq!(*d.invalidate, keys(&[&["things"]]));
}

#[test]
fn unrenderable_type_emits_nothing() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/api/things$",
        "{body.kind}_created",
        &["things"],
    )]));
    assert!(emit(&m, Method::POST, "/api/things", r#"{"name":"x"}"#).is_none());
}

#[test]
fn no_channel_left_emits_nothing() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/api/things$",
        "thing",
        &["user:{user}"],
    )]));
    let plan = m.plan(&Method::POST, "/api/things").unwrap();
    let body = BodyPrefix {
        bytes: b"",
        complete: true,
    };
    assert!(plan.build(body, &EmitContext::default()).is_none());
}

#[test]
fn repeated_rendered_channels_are_published_once() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::DELETE],
        "^/api/p/(?P<a>[^/]+)/(?P<b>[^/]+)$",
        "x",
        &["p:{a}", "p:{b}"],
    )]));
    assert_eq!(
        *must_emit(&m, Method::DELETE, "/api/p/1/1", "").channels,
        ["p:1"]
    );
}

#[test]
fn rule_id_pointer_reads_body() {
    let mut r = rule(&[Method::POST], "^/api/projects$", "made", &["projects"]);
    r.id = Some("/project/id".into());
    let m = EventMatcher::new(&cfg(vec![r]));
    let d = must_emit(
        &m,
        Method::POST,
        "/api/projects",
        r#"{"id":1,"project":{"id":"p9"}}"#,
    );
    assert_eq!(d.resource_id.as_deref(), Some("p9"));
}

#[test]
fn rule_without_id_uses_the_id_capture() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::PUT],
        "^/api/projects/(?P<id>[^/]+)/rename$",
        "renamed",
        &["project:{id}"],
    )]));
    let d = must_emit(&m, Method::PUT, "/api/projects/42/rename", "");
    assert_eq!(d.resource_id.as_deref(), Some("42"));
    // The convention still names the resource from the path.
    assert_eq!(d.resource.as_deref(), Some("rename"));
    assert_eq!(d.action.as_deref(), Some("updated"));
}

#[test]
fn rule_id_pointer_without_value_falls_back_to_the_path() {
    let mut r = rule(
        &[Method::PUT],
        "^/api/projects/(?P<id>[^/]+)$",
        "up",
        &["p:{id}"],
    );
    r.id = Some("/id".into());
    let m = EventMatcher::new(&cfg(vec![r]));
    let d = must_emit(&m, Method::PUT, "/api/projects/42", "");
    assert_eq!(d.resource_id.as_deref(), Some("42"));
}

#[test]
fn rule_without_id_or_capture_uses_the_convention() {
    let m = EventMatcher::new(&cfg(vec![
        rule(&[Method::POST], "^/api/projects$", "made", &["projects"]),
        rule(
            &[Method::PATCH],
            "^/api/projects/[^/]+$",
            "changed",
            &["projects"],
        ),
    ]));
    let post = m.plan(&Method::POST, "/api/projects").unwrap();
    assert!(
        post.wants_body(),
        "the convention reads a POST's id from the body"
    );
    let d = must_emit(&m, Method::POST, "/api/projects", r#"{"id":3}"#);
    assert_eq!(d.resource_id.as_deref(), Some("3"));
    let d = must_emit(&m, Method::PATCH, "/api/projects/9", "");
    assert_eq!(d.resource_id.as_deref(), Some("9"));
}

#[test]
fn rule_outside_the_prefix_has_no_resource() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/rpc/",
        "rpc_called",
        &["rpc"],
    )]));
    let d = must_emit(&m, Method::POST, "/rpc/do_thing", r#"{"id":1}"#);
    assert_eq!(d.resource, None);
    assert_eq!(d.resource_id, None);
    assert_eq!(d.action.as_deref(), Some("created"));
}

#[test]
fn rule_data_copies_listed_fields() {
    let mut r = rule(&[Method::POST], "^/api/projects$", "made", &["projects"]);
    r.data = vec!["id".into(), "name".into(), "description".into()];
    let m = EventMatcher::new(&cfg(vec![r]));
    let d = must_emit(
        &m,
        Method::POST,
        "/api/projects",
        r#"{"id":1,"name":"n","secret":"s"}"#,
    );
    assert_eq!(d.data, json!({"id":1,"name":"n"}));
}

#[test]
fn empty_data_list_gives_null_data() {
    let m = EventMatcher::new(&cfg(vec![rule(&[Method::POST], "^/api/x$", "x", &["x"])]));
    assert_eq!(
        must_emit(&m, Method::POST, "/api/x", r#"{"id":1}"#).data,
        Value::Null
    );
}

#[test]
fn truncated_body_gives_null_data() {
    let mut r = rule(&[Method::POST], "^/api/x$", "x", &["x"]);
    r.data = vec!["id".into()];
    let m = EventMatcher::new(&cfg(vec![r]));
    let plan = m.plan(&Method::POST, "/api/x").unwrap();
    let body = BodyPrefix {
        bytes: br#"{"id":1}"#,
        complete: false,
    };
    assert_eq!(plan.build(body, &ctx()).unwrap().data, Value::Null);
}

#[test]
fn non_json_or_fieldless_body_gives_null_data() {
    let mut r = rule(&[Method::POST], "^/api/x$", "x", &["x"]);
    r.data = vec!["id".into()];
    let m = EventMatcher::new(&cfg(vec![r]));
    assert_eq!(
        must_emit(&m, Method::POST, "/api/x", "<html>").data,
        Value::Null
    );
    assert_eq!(
        must_emit(&m, Method::POST, "/api/x", r#"{"n":1}"#).data,
        Value::Null
    );
    assert_eq!(
        must_emit(&m, Method::POST, "/api/x", "[1]").data,
        Value::Null
    );
}

#[test]
fn rule_wants_body_only_when_it_reads_it() {
    let plain = rule(&[Method::PUT], "^/api/a/(?P<id>[^/]+)$", "a", &["a"]);
    let mut with_id = rule(&[Method::PUT], "^/api/b/", "b", &["b"]);
    with_id.id = Some("/id".into());
    let mut with_data = rule(&[Method::PUT], "^/api/c/", "c", &["c"]);
    with_data.data = vec!["id".into()];
    let with_template = rule(&[Method::PUT], "^/api/d/", "d", &["d:{body.x}"]);
    let mut with_key = rule(&[Method::PUT], "^/api/e/", "e", &["e"]);
    with_key.invalidate = vec![vec![t("{body.x}")]];
    let m = EventMatcher::new(&cfg(vec![
        plain,
        with_id,
        with_data,
        with_template,
        with_key,
    ]));
    let wants = |path: &str| m.plan(&Method::PUT, path).unwrap().wants_body();
    assert!(!wants("/api/a/1"));
    assert!(wants("/api/b/1"));
    assert!(wants("/api/c/1"));
    assert!(wants("/api/d/1"));
    assert!(wants("/api/e/1"));
}

#[test]
fn body_is_not_parsed_when_the_plan_did_not_want_it() {
    // The proxy may pass bytes anyway; a plan that said it does not read them must not depend on them.
    let m = EventMatcher::new(&cfg(vec![rule(&[Method::PUT], "^/api/a$", "a", &["a"])]));
    let plan = m.plan(&Method::PUT, "/api/a").unwrap();
    assert!(!plan.wants_body());
    let d = plan
        .build(
            BodyPrefix {
                bytes: b"{\"id\":1}",
                complete: true,
            },
            &ctx(),
        )
        .unwrap();
    assert_eq!(d.resource_id, None);
}

#[test]
fn many_rules_still_match_in_order() {
    let rules = (0..200)
        .map(|i| {
            rule(
                &[Method::POST],
                &format!("^/api/r{i}$"),
                &format!("t{i}"),
                &["c"],
            )
        })
        .collect();
    let m = EventMatcher::new(&cfg(rules));
    assert_eq!(
        must_emit(&m, Method::POST, "/api/r137", "").event_type,
        "t137"
    );
}

#[test]
fn parts_from_the_path_are_rendered_once_per_path_and_shared_by_its_events() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::PUT],
        "^/api/boards/(?P<b>[^/]+)$",
        "board_{b}_changed",
        &["board:{b}"],
    )]));
    let first = must_emit(&m, Method::PUT, "/api/boards/1", "");
    let second = must_emit(&m, Method::PUT, "/api/boards/1", "");
    assert_eq!(first.event_type, "board_1_changed");
    assert!(Arc::ptr_eq(
        &first.event_type.shared(),
        &second.event_type.shared()
    ));
    assert!(Arc::ptr_eq(
        &first.channels[0].shared(),
        &second.channels[0].shared()
    ));
    let other = must_emit(&m, Method::PUT, "/api/boards/2", "");
    assert_eq!(other.event_type, "board_2_changed");
    assert_eq!(*other.channels, ["board:2"]);
}

#[test]
fn user_templates_render_for_each_event_of_a_remembered_path() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/api/notes$",
        "note_by_{user}",
        &["user:{user}"],
    )]));
    let plan = m.plan(&Method::POST, "/api/notes").unwrap();
    let body = BodyPrefix {
        bytes: b"",
        complete: true,
    };
    for user in ["7", "8", "7"] {
        let actor = Text::from(user);
        let ctx = EmitContext {
            actor: Some(&actor),
            ..EmitContext::default()
        };
        let d = plan.build(body, &ctx).unwrap();
        assert_eq!(d.event_type, format!("note_by_{user}"));
        assert_eq!(*d.channels, [format!("user:{user}")]);
    }
}

#[test]
fn a_path_whose_parts_cannot_render_emits_nothing_every_time() {
    let m = EventMatcher::new(&cfg(vec![rule(
        &[Method::POST],
        "^/api/x(/(?P<id>[0-9]+))?$",
        "x_{id}",
        &["x"],
    )]));
    for _ in 0..3 {
        assert!(emit(&m, Method::POST, "/api/x", "").is_none());
    }
    assert_eq!(
        must_emit(&m, Method::POST, "/api/x/4", "").event_type,
        "x_4"
    );
}

/// Every plan that writes part of its envelope ahead gives the bytes its draft's own fields give,
/// for rules rendered ahead or per event and for the convention's plans of every method.
#[test]
fn an_envelope_written_partly_ahead_is_the_one_its_fields_give() {
    let mut ahead = rule(
        &[Method::POST],
        r"^/api/orgs/(?P<org>[^/]+)/items/?$",
        "item_added",
        &["org:{org}", "items"],
    );
    ahead.invalidate = vec![vec![t("org"), t("{org}")], vec![t("items"), t("q\"uote")]];
    ahead.id = Some("/id".into());
    ahead.data = vec!["id".into(), "name".into()];
    let mut per_event = rule(
        &[Method::PUT],
        r"^/api/orgs/[^/]+/items/[^/]+$",
        "item_{body.kind}",
        &["items"],
    );
    per_event.invalidate = vec![vec![t("item"), t("{body.id}")]];
    let m = EventMatcher::new(&cfg(vec![ahead, per_event]));
    let body = r#"{"id":"i-9","name":"n\u00e9","kind":"moved"}"#;
    let cases = [
        (Method::POST, "/api/orgs/o1/items", true),
        (Method::PUT, "/api/orgs/o1/items/i-9", false),
        (Method::POST, "/api/projects/4/tasks", true),
        (Method::PATCH, "/api/projects/4/tasks/7", true),
        (Method::DELETE, "/api/projects/4", true),
    ];
    for (method, path, written_ahead) in cases {
        let draft = must_emit(&m, method.clone(), path, body);
        assert_eq!(
            draft.prerendered.0.is_some(),
            written_ahead,
            "{method} {path}"
        );
        let mut by_fields = draft.clone();
        by_fields.prerendered = Prerendered::default();
        for channel in draft.channels.iter() {
            let ahead = crate::events::envelope::serialize(&draft, channel, 12, "01JD3-id");
            let fields = crate::events::envelope::serialize(&by_fields, channel, 12, "01JD3-id");
            assert_eq!(ahead, fields, "{method} {path} on {channel}");
            let v: Value = serde_json::from_str(&ahead).unwrap();
            assert_eq!(v["type"], *draft.event_type, "{method} {path}");
            assert_eq!(v["channel"], **channel);
        }
    }
}
