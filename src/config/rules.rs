//! The rule lists of the config: `cache_control.rules`, `events` (explicit rules and the automatic
//! REST convention) and `rooms.authorize`.
//!
//! These are where a typo silently breaks realtime sync (a regex that never matches, a `{id}` that is
//! never captured), so everything that can be checked at load time is: regexes compile, templates
//! parse, and every `{name}` a template uses is a named group of the regex it is rendered against.

use http::{HeaderValue, Method};
use regex::Regex;

use super::raw::{Node, Result};
use super::{
    AutoEventsConfig, CacheControlConfig, CacheRule, EventRule, EventsConfig, ExcludeOrigin,
    RoomRule, RoomsConfig,
};
use crate::events::template::Template;

/// The rule SPEC promises without config: API responses are revalidated unless the API said otherwise.
pub(super) const DEFAULT_CACHE_PATH: &str = "^/api(/|$)";
pub(super) const DEFAULT_CACHE_VALUE: &str = "no-cache";
pub(super) const DEFAULT_AUTO_EXCLUDE: &str = "^/api/auth/";

const EVENT_RULE_KEYS: &[&str] = &[
    "methods",
    "path",
    "type",
    "channels",
    "invalidate",
    "id",
    "data",
];

const METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
    Method::TRACE,
    Method::CONNECT,
];

pub(super) fn cache_control(node: &Node<'_>) -> Result<CacheControlConfig> {
    let section = node.section(&["rules"])?;
    let Some(items) = section.get("rules").list()? else {
        return Ok(CacheControlConfig {
            rules: vec![CacheRule {
                path: regex(node, DEFAULT_CACHE_PATH)?,
                methods: Some(vec![Method::GET, Method::HEAD]),
                value: HeaderValue::from_static(DEFAULT_CACHE_VALUE),
                only_if_missing: true,
            }],
        });
    };
    let rules = items.iter().map(cache_rule).collect::<Result<_>>()?;
    Ok(CacheControlConfig { rules })
}

fn cache_rule(node: &Node<'_>) -> Result<CacheRule> {
    let rule = node.section(&["path", "methods", "value", "only_if_missing"])?;
    let path_node = rule.get("path");
    let path = regex(&path_node, &path_node.required_text()?)?;
    let methods = methods(&rule.get("methods"), "omit methods to match every method")?;
    let value_node = rule.get("value");
    let value = HeaderValue::from_str(&value_node.required_text()?).map_err(|_| {
        value_node.err("is not a valid header value; use visible ASCII text like \"no-cache\"")
    })?;
    Ok(CacheRule {
        path,
        methods,
        value,
        only_if_missing: rule.get("only_if_missing").bool_or(false)?,
    })
}

pub(super) fn events(node: &Node<'_>) -> Result<EventsConfig> {
    let section = node.section(&["auto", "rules", "exclude_origin"])?;
    let rules = match section.get("rules").list()? {
        Some(items) => items.iter().map(event_rule).collect::<Result<_>>()?,
        None => Vec::new(),
    };
    Ok(EventsConfig {
        auto: auto_events(&section.get("auto"))?,
        rules,
        exclude_origin: section.get("exclude_origin").choice_or(
            &[
                ("connection", ExcludeOrigin::Connection),
                ("user", ExcludeOrigin::User),
                ("none", ExcludeOrigin::None),
            ],
            ExcludeOrigin::Connection,
        )?,
    })
}

fn auto_events(node: &Node<'_>) -> Result<AutoEventsConfig> {
    let section = node.section(&["enabled", "prefix", "exclude"])?;
    let exclude = match section.get("exclude").text_list(|n, s| regex(n, &s))? {
        Some(list) => list,
        None => vec![regex(node, DEFAULT_AUTO_EXCLUDE)?],
    };
    Ok(AutoEventsConfig {
        enabled: section.get("enabled").bool_or(true)?,
        prefix: path_prefix(&section.get("prefix"), "/api")?,
        exclude,
    })
}

fn event_rule(node: &Node<'_>) -> Result<EventRule> {
    let rule = node.section(EVENT_RULE_KEYS)?;
    let methods_node = rule.get("methods");
    let methods = methods(&methods_node, "omit methods for POST, PUT, PATCH, DELETE")?
        .unwrap_or_else(|| vec![Method::POST, Method::PUT, Method::PATCH, Method::DELETE]);
    let path_node = rule.get("path");
    let path = regex(&path_node, &path_node.required_text()?)?;
    let groups = group_names(&path);
    let checked = |n: &Node<'_>, source: String| template(n, &source, &groups, "path");

    let type_node = rule.get("type");
    let event_type = checked(&type_node, type_node.required_text()?)?;
    let channels_node = rule.get("channels");
    let channels = channels_node
        .text_list(checked)?
        .ok_or_else(|| channels_node.err("is required: list the channels the event goes to"))?;
    if channels.is_empty() {
        return Err(channels_node.err("must list at least one channel, like [\"projects\"]"));
    }
    let mut invalidate = Vec::new();
    for key_node in rule.get("invalidate").list()?.unwrap_or_default() {
        let key = key_node.text_list(checked)?.unwrap_or_default();
        if key.is_empty() {
            return Err(key_node
                .err("an invalidation key needs at least one part, like [\"project\", \"{id}\"]"));
        }
        invalidate.push(key);
    }
    let id_node = rule.get("id");
    let id = match id_node.text()? {
        Some(pointer) => Some(json_pointer(&id_node, pointer)?),
        None => None,
    };
    let data = rule
        .get("data")
        .text_list(|n, field| {
            if field.is_empty() {
                return Err(n.err("must be a response field name, not empty"));
            }
            Ok(field)
        })?
        .unwrap_or_default();
    Ok(EventRule {
        methods,
        path,
        event_type,
        channels,
        invalidate,
        id,
        data,
    })
}

pub(super) fn rooms(node: &Node<'_>) -> Result<RoomsConfig> {
    let section = node.section(&["authorize", "client_publish"])?;
    let mut authorize = Vec::new();
    for rule_node in section.get("authorize").list()?.unwrap_or_default() {
        let rule = rule_node.section(&["room", "path"])?;
        let room_node = rule.get("room");
        let room = regex(&room_node, &room_node.required_text()?)?;
        let path_node = rule.get("path");
        let path = template(
            &path_node,
            &path_node.required_text()?,
            &group_names(&room),
            "room",
        )?;
        if path.uses_body() {
            return Err(path_node.err(
                "may use {name} captures of the room regex and {user}, not {body.…}: \
                 there is no response body when a member joins",
            ));
        }
        if !path.as_str().starts_with('/') {
            return Err(path_node.err("must be an upstream path starting with /"));
        }
        authorize.push(RoomRule { room, path });
    }
    Ok(RoomsConfig {
        authorize,
        client_publish: section.get("client_publish").bool_or(true)?,
    })
}

/// A path prefix like `/api`: starts with `/`, stored without a trailing slash.
pub(super) fn path_prefix(node: &Node<'_>, default: &str) -> Result<String> {
    let prefix = node.text_or(default)?;
    if !prefix.starts_with('/') {
        return Err(node.err(format!("{prefix:?} must start with /, like \"/api\"")));
    }
    Ok(prefix.trim_end_matches('/').to_owned())
}

/// A JSON pointer (RFC 6901): `""` for the whole document, otherwise `/a/b` with `~0`/`~1` escapes.
pub(super) fn json_pointer(node: &Node<'_>, pointer: String) -> Result<String> {
    let hint = "must be a JSON pointer like \"/id\" or \"/data/id\" (\"\" = the whole body)";
    if !(pointer.is_empty() || pointer.starts_with('/')) {
        return Err(node.err(format!("{pointer:?} {hint}")));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(node.err(format!(
                "{pointer:?}: '~' must be followed by 0 or 1; {hint}"
            )));
        }
    }
    Ok(pointer)
}

fn regex(node: &Node<'_>, source: &str) -> Result<Regex> {
    Regex::new(source).map_err(|e| node.err(regex_error(&e)))
}

/// The regex crate's message, reordered as "invalid regex: <what>" followed by its caret snippet.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let Some(body) = text.strip_prefix("regex parse error:\n") else {
        return format!("invalid regex: {text}");
    };
    match body.rsplit_once("\nerror: ") {
        Some((snippet, what)) => format!("invalid regex: {what}\n{snippet}"),
        None => format!("invalid regex: {body}"),
    }
}

fn group_names(regex: &Regex) -> Vec<String> {
    regex.capture_names().flatten().map(str::to_owned).collect()
}

/// Parses a template and checks that each `{name}` it uses is a named group of the `against` regex.
fn template(node: &Node<'_>, source: &str, groups: &[String], against: &str) -> Result<Template> {
    let template = Template::parse(source)
        .map_err(|e| node.err(format!("invalid template {source:?}: {e}")))?;
    if let Some(missing) = template.captures().find(|c| !groups.iter().any(|g| g == c)) {
        let its_groups = if groups.is_empty() {
            "none".to_owned()
        } else {
            groups.join(", ")
        };
        return Err(node.err(format!(
            "template uses {{{missing}}} but the {against} regex has no (?P<{missing}>...) group; \
             its groups: {its_groups}"
        )));
    }
    Ok(template)
}

/// `None` when absent (the caller's default applies); an explicit empty list is refused.
fn methods(node: &Node<'_>, empty_hint: &str) -> Result<Option<Vec<Method>>> {
    let list = node.text_list(|n, name| {
        let upper = name.to_ascii_uppercase();
        METHODS
            .iter()
            .find(|m| m.as_str() == upper)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<&str> = METHODS.iter().map(Method::as_str).collect();
                n.err(format!(
                    "{name:?} is not an HTTP method; use {}",
                    names.join(", ")
                ))
            })
    })?;
    if list.as_ref().is_some_and(Vec::is_empty) {
        return Err(node.err(format!("must not be empty; {empty_hint}")));
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use crate::config::tests::{fails_at, load};

    #[test]
    fn explicit_empty_cache_rules_mean_no_rewriting() {
        assert!(
            load("cache_control: { rules: [] }")
                .cache_control
                .rules
                .is_empty()
        );
        assert!(
            load("events: { auto: { exclude: [] } }")
                .events
                .auto
                .exclude
                .is_empty()
        );
    }

    #[test]
    fn invalid_regexes_show_the_regex_error() {
        let rule = "cache_control: { rules: [ { path: \"^/api/(\", value: no-cache } ] }";
        fails_at(
            rule,
            "cache_control.rules[0].path",
            &["invalid regex: unclosed group\n", "^/api/("],
        );
        fails_at(
            "events: { auto: { exclude: [ok, \"[\"] } }",
            "events.auto.exclude[1]",
            &["invalid regex:"],
        );
        fails_at(
            "rooms: { authorize: [ { room: \"(\", path: /x } ] }",
            "rooms.authorize[0].room",
            &["invalid regex:"],
        );
    }

    #[test]
    fn methods_are_case_insensitive_and_checked() {
        let c = load("cache_control: { rules: [ { path: x, value: v, methods: [get, Head] } ] }");
        assert_eq!(
            c.cache_control.rules[0].methods,
            Some(vec![Method::GET, Method::HEAD])
        );
        let rule = "events: { rules: [ { path: x, type: t, channels: [c] } ] }";
        assert_eq!(
            load(rule).events.rules[0].methods,
            [Method::POST, Method::PUT, Method::PATCH, Method::DELETE]
        );
        let bad =
            "events: { rules: [ { methods: [POST, GTE], path: x, type: t, channels: [c] } ] }";
        fails_at(
            bad,
            "events.rules[0].methods[1]",
            &["\"GTE\" is not an HTTP method", "PATCH"],
        );
        let empty = "events: { rules: [ { methods: [], path: x, type: t, channels: [c] } ] }";
        fails_at(empty, "events.rules[0].methods", &["must not be empty"]);
    }

    #[test]
    fn cache_rule_needs_path_and_a_valid_header_value() {
        fails_at(
            "cache_control: { rules: [ { value: x } ] }",
            "cache_control.rules[0].path",
            &["required"],
        );
        fails_at(
            "cache_control: { rules: [ { path: x } ] }",
            "cache_control.rules[0].value",
            &["required"],
        );
        let bad = "cache_control: { rules: [ { path: x, value: \"no-cache\\nx\" } ] }";
        fails_at(
            bad,
            "cache_control.rules[0].value",
            &["not a valid header value"],
        );
    }

    #[test]
    fn template_capture_must_be_a_group_of_the_path_regex() {
        let yaml = r#"
events:
  rules:
    - path: "^/api/projects/(?P<pid>[^/]+)/(?P<tid>[^/]+)$"
      type: task_updated
      channels: ["tasks", "project:{id}"]
"#;
        fails_at(
            yaml,
            "events.rules[0].channels[1]",
            &[
                "template uses {id} but the path regex has no (?P<id>...) group; its groups: pid, tid",
            ],
        );
        let yaml = "events: { rules: [ { path: x, type: t, channels: [c], invalidate: [[a, \"{n}\"]] } ] }";
        fails_at(
            yaml,
            "events.rules[0].invalidate[0][1]",
            &["{n}", "its groups: none"],
        );
        let yaml = "rooms: { authorize: [ { room: \"^p:(?P<id>.+)$\", path: \"/api/p/{pid}\" } ] }";
        fails_at(
            yaml,
            "rooms.authorize[0].path",
            &[
                "uses {pid} but the room regex has no (?P<pid>...)",
                "its groups: id",
            ],
        );
        let ok = "events: { rules: [ { path: x, type: \"{body.kind}_changed\", channels: [\"user:{user}\"] } ] }";
        assert_eq!(
            load(ok).events.rules[0].event_type.as_str(),
            "{body.kind}_changed"
        );
    }

    #[test]
    fn malformed_templates_report_the_template_error() {
        let yaml = "events: { rules: [ { path: x, type: \"a{b\", channels: [c] } ] }";
        fails_at(
            yaml,
            "events.rules[0].type",
            &["invalid template \"a{b\"", "unclosed"],
        );
        let yaml = "rooms: { authorize: [ { room: x, path: \"/a/{body.id}\" } ] }";
        fails_at(yaml, "rooms.authorize[0].path", &["not {body.…}"]);
        let yaml = "rooms: { authorize: [ { room: x, path: \"api/x\" } ] }";
        fails_at(yaml, "rooms.authorize[0].path", &["starting with /"]);
    }

    #[test]
    fn event_rule_requires_path_type_and_channels() {
        fails_at(
            "events: { rules: [ { type: t, channels: [c] } ] }",
            "events.rules[0].path",
            &["required"],
        );
        fails_at(
            "events: { rules: [ { path: x, channels: [c] } ] }",
            "events.rules[0].type",
            &["required"],
        );
        fails_at(
            "events: { rules: [ { path: x, type: t } ] }",
            "events.rules[0].channels",
            &["required"],
        );
        fails_at(
            "events: { rules: [ { path: x, type: t, channels: [] } ] }",
            "events.rules[0].channels",
            &["at least one channel"],
        );
        let yaml = "events: { rules: [ { path: x, type: t, channels: [c], invalidate: [[]] } ] }";
        fails_at(
            yaml,
            "events.rules[0].invalidate[0]",
            &["at least one part"],
        );
    }

    #[test]
    fn id_must_be_a_json_pointer_and_data_field_names() {
        let rule = |extra: &str| {
            format!("events: {{ rules: [ {{ path: x, type: t, channels: [c], {extra} }} ] }}")
        };
        fails_at(
            &rule("id: id"),
            "events.rules[0].id",
            &["JSON pointer", "\"/id\""],
        );
        fails_at(
            &rule("id: /a~2"),
            "events.rules[0].id",
            &["'~' must be followed by 0 or 1"],
        );
        assert_eq!(
            load(&rule("id: \"\"")).events.rules[0].id.as_deref(),
            Some("")
        );
        fails_at(
            &rule("data: [id, \"\"]"),
            "events.rules[0].data[1]",
            &["field name"],
        );
        fails_at(
            "auth: { upstream: { user_id: id } }",
            "auth.upstream.user_id",
            &["JSON pointer"],
        );
    }
}
