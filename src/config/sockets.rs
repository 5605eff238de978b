//! The `websocket` and `sse` sections: endpoint paths and the browser-origin policy.
//!
//! The paths are matched exactly by the listener, so they are checked against each other here: two
//! endpoints on one path, or a room path pattern that swallows another endpoint, would make one of them
//! unreachable with no error at runtime.

use std::time::Duration;

use super::raw::{Node, Result};
use super::{ConfigError, OriginPolicy, RoomPath, SseConfig, WebSocketConfig};

pub(super) fn websocket(node: &Node<'_>) -> Result<WebSocketConfig> {
    let s = node.section(&[
        "path",
        "notifications_path",
        "room_path",
        "allowed_origins",
        "ping_interval",
    ])?;
    Ok(WebSocketConfig {
        path: absolute_path(&s.get("path"), "/api/ws")?,
        notifications_path: absolute_path(&s.get("notifications_path"), "/api/ws/notifications")?,
        room_path: room_path(&s.get("room_path"))?,
        allowed_origins: origins(&s.get("allowed_origins"))?,
        ping_interval: s
            .get("ping_interval")
            .duration_or(Duration::from_secs(25), true)?,
    })
}

pub(super) fn sse(node: &Node<'_>) -> Result<SseConfig> {
    let s = node.section(&["path"])?;
    Ok(SseConfig {
        path: absolute_path(&s.get("path"), "/api/sse")?,
    })
}

/// Refuses endpoint paths that collide, naming the later key (the one more likely just edited).
pub(super) fn check_distinct(ws: &WebSocketConfig, sse: &SseConfig) -> Result<()> {
    let fixed = [
        ("websocket.path", ws.path.as_str()),
        (
            "websocket.notifications_path",
            ws.notifications_path.as_str(),
        ),
        ("sse.path", sse.path.as_str()),
    ];
    for (i, (key, path)) in fixed.iter().enumerate() {
        if let Some((other, _)) = fixed[..i].iter().find(|(_, p)| p == path) {
            return Err(ConfigError::at(
                *key,
                format!("{path:?} is also {other}; each endpoint needs its own path"),
            ));
        }
        let RoomPath { prefix, suffix } = &ws.room_path;
        if path.len() > prefix.len() + suffix.len()
            && path.starts_with(prefix.as_str())
            && path.ends_with(suffix.as_str())
        {
            return Err(ConfigError::at(
                "websocket.room_path",
                format!(
                    "\"{prefix}{{room}}{suffix}\" would also match {key} {path:?}; \
                     give rooms their own prefix, like \"/api/ws/room/{{room}}\""
                ),
            ));
        }
    }
    Ok(())
}

/// A request path the listener answers on: starts with `/`, no query.
pub(super) fn absolute_path(node: &Node<'_>, default: &str) -> Result<String> {
    let path = node.text_or(default)?;
    if !path.starts_with('/') || path.contains(['?', '#']) || path.contains(char::is_whitespace) {
        return Err(node.err(format!(
            "{path:?} must be a path starting with /, without query or spaces, like {default:?}"
        )));
    }
    Ok(path)
}

fn room_path(node: &Node<'_>) -> Result<RoomPath> {
    let template = absolute_path(node, "/api/ws/room/{room}")?;
    let hint = "must contain {room} exactly once, like \"/api/ws/room/{room}\"";
    let Some((prefix, suffix)) = template.split_once("{room}") else {
        return Err(node.err(format!("{template:?} {hint}")));
    };
    if suffix.contains("{room}") {
        return Err(node.err(format!("{template:?} {hint}")));
    }
    if prefix.contains(['{', '}']) || suffix.contains(['{', '}']) {
        return Err(node.err(format!(
            "{template:?}: only {{room}} may be a variable; it {hint}"
        )));
    }
    Ok(RoomPath {
        prefix: prefix.to_owned(),
        suffix: suffix.to_owned(),
    })
}

fn origins(node: &Node<'_>) -> Result<OriginPolicy> {
    let items = node
        .text_list(|n, text| Ok((n.clone(), text)))?
        .unwrap_or_default();
    if items.is_empty() {
        return Ok(OriginPolicy::SameHost);
    }
    if items.iter().any(|(_, text)| text == "*") {
        if items.len() == 1 {
            return Ok(OriginPolicy::Any);
        }
        return Err(node.err(
            "\"*\" allows every origin and cannot be mixed with listed origins; \
             use [\"*\"] alone, or list the origins",
        ));
    }
    items
        .iter()
        .map(|(n, text)| origin(n, text))
        .collect::<Result<_>>()
        .map(OriginPolicy::List)
}

/// An origin as browsers send it: `scheme://host[:port]`, stored lowercase for exact comparison.
fn origin(node: &Node<'_>, text: &str) -> Result<String> {
    let bad = || {
        node.err(format!(
            "{text:?} is not an origin; use scheme://host[:port] with no path or trailing slash, \
             like \"https://app.example.com\" or \"http://localhost:3000\" \
             ([] = same host only, [\"*\"] = any)"
        ))
    };
    let (scheme, host) = text.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || host.is_empty() || host.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    host.parse::<http::uri::Authority>().map_err(|_| bad())?;
    Ok(text.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{fails_at, load};
    use crate::config::{OriginPolicy, RoomPath};

    #[test]
    fn socket_paths_must_be_absolute_and_distinct() {
        fails_at(
            "websocket: { path: api/ws }",
            "websocket.path",
            &["must be a path starting with /"],
        );
        fails_at(
            "sse: { path: /api/ws }",
            "sse.path",
            &["also websocket.path", "its own path"],
        );
        fails_at(
            "websocket: { notifications_path: /api/sse }",
            "sse.path",
            &["also websocket.notifications_path"],
        );
        fails_at(
            "websocket: { room_path: \"/api/ws/{room}\" }",
            "websocket.room_path",
            &["would also match websocket.notifications_path"],
        );
        fails_at(
            "auth: { upstream: { path: me } }",
            "auth.upstream.path",
            &["starting with /"],
        );
    }

    #[test]
    fn room_path_contains_room_exactly_once() {
        let c = load("websocket: { room_path: \"/rooms/{room}/socket\" }");
        let want = RoomPath {
            prefix: "/rooms/".into(),
            suffix: "/socket".into(),
        };
        assert_eq!(c.websocket.room_path, want);
        fails_at(
            "websocket: { room_path: /rooms }",
            "websocket.room_path",
            &["{room} exactly once"],
        );
        fails_at(
            "websocket: { room_path: \"/r/{room}/{room}\" }",
            "websocket.room_path",
            &["{room} exactly once"],
        );
        fails_at(
            "websocket: { room_path: \"/r/{id}/{room}\" }",
            "websocket.room_path",
            &["only {room} may be a variable"],
        );
    }

    #[test]
    fn allowed_origins_map_to_an_origin_policy() {
        assert_eq!(
            load("websocket: { allowed_origins: [\"*\"] }")
                .websocket
                .allowed_origins,
            OriginPolicy::Any
        );
        let c = load(
            "websocket: { allowed_origins: [\"HTTPS://App.example.com\", \"http://localhost:3000\"] }",
        );
        let want = vec![
            "https://app.example.com".to_owned(),
            "http://localhost:3000".to_owned(),
        ];
        assert_eq!(c.websocket.allowed_origins, OriginPolicy::List(want));
        fails_at(
            "websocket: { allowed_origins: [\"*\", \"https://a.b\"] }",
            "websocket.allowed_origins",
            &["cannot be mixed"],
        );
        fails_at(
            "websocket: { allowed_origins: [\"https://a.b/\"] }",
            "websocket.allowed_origins[0]",
            &["not an origin", "no path or trailing slash"],
        );
        fails_at(
            "websocket: { allowed_origins: [app.example.com] }",
            "websocket.allowed_origins[0]",
            &["scheme://host[:port]"],
        );
    }
}
