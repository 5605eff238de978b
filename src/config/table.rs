//! The resolved configuration as `syncgate check` prints it after "config OK".
//!
//! It shows what the sidecar will actually do, defaults included, so a user can see which rule a path
//! hits without starting the proxy. Plain aligned columns for a terminal; not a machine format.

use std::fmt::Write as _;

use super::units::{format_duration, format_size};
use super::{AuthMode, BrokerKind, Config, ExcludeOrigin, LogFormat, OriginPolicy};

/// The resolved rule table `syncgate check` prints.
pub fn render_rule_table(config: &Config) -> String {
    let mut out = String::new();
    let up = &config.upstream;
    out += &columns(
        None,
        vec![
            row([
                "listen",
                &format!("{} (REST proxy, WebSocket, SSE)", config.listen),
            ]),
            row([
                "admin_listen",
                &format!(
                    "{} (/metrics, /healthz, /readyz, POST /publish)",
                    config.admin_listen
                ),
            ]),
            row([
                "upstream",
                &format!(
                    "http://{}{} (connect timeout {}, response timeout {})",
                    up.authority,
                    up.base_path,
                    format_duration(up.connect_timeout),
                    format_duration(up.request_timeout)
                ),
            ]),
        ],
    );

    out += "\ncache-control rules (first match wins):\n";
    let cache_rows = config
        .cache_control
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let methods = match &rule.methods {
                Some(list) => join(list.iter().map(http::Method::as_str)),
                None => "*".to_owned(),
            };
            let value = String::from_utf8_lossy(rule.value.as_bytes()).into_owned();
            let keep = if rule.only_if_missing { "yes" } else { "no" };
            vec![
                (i + 1).to_string(),
                methods,
                rule.path.to_string(),
                value,
                keep.to_owned(),
            ]
        });
    out += &columns(
        Some(&["#", "METHODS", "PATH", "VALUE", "ONLY_IF_MISSING"]),
        cache_rows.collect(),
    );

    out += "\nevent rules (first match wins; checked before the REST convention):\n";
    let event_rows = config.events.rules.iter().enumerate().map(|(i, rule)| {
        let invalidate = rule
            .invalidate
            .iter()
            .map(|key| format!("[{}]", join(key.iter().map(|t| t.as_str()))))
            .collect::<Vec<_>>()
            .join(" ");
        vec![
            (i + 1).to_string(),
            join(rule.methods.iter().map(http::Method::as_str)),
            rule.path.to_string(),
            rule.event_type.to_string(),
            join(rule.channels.iter().map(|t| t.as_str())),
            dash_if_empty(invalidate),
            rule.id
                .clone()
                .map_or_else(|| "-".to_owned(), |id| format!("{id:?}")),
            dash_if_empty(rule.data.join(",")),
        ]
    });
    out += &columns(
        Some(&[
            "#",
            "METHODS",
            "PATH",
            "TYPE",
            "CHANNELS",
            "INVALIDATE",
            "ID",
            "DATA",
        ]),
        event_rows.collect(),
    );

    let auto = &config.events.auto;
    let excludes = if auto.exclude.is_empty() {
        "no exclusions".to_owned()
    } else {
        format!(
            "except {}",
            join(auto.exclude.iter().map(regex::Regex::as_str))
        )
    };
    let prefix = if auto.prefix.is_empty() {
        "/"
    } else {
        &auto.prefix
    };
    let _ = writeln!(
        out,
        "\nautomatic events (REST convention): {}",
        if auto.enabled {
            format!("on for mutations below {prefix}, {excludes}")
        } else {
            "off".to_owned()
        }
    );
    let echo = match config.events.exclude_origin {
        ExcludeOrigin::Connection => "skips the connection that made the change",
        ExcludeOrigin::User => "skips every connection of the user who made the change",
        ExcludeOrigin::None => "goes to everyone, the author included",
    };
    let _ = writeln!(out, "echo of a mutation: {echo}\n");

    out += &columns(None, endpoint_rows(config));

    if !config.rooms.authorize.is_empty() {
        out += "\nroom authorization (first match wins; 2xx from the upstream = may join):\n";
        let room_rows = config.rooms.authorize.iter().enumerate().map(|(i, rule)| {
            vec![
                (i + 1).to_string(),
                rule.room.to_string(),
                format!("GET {}", rule.path),
            ]
        });
        out += &columns(Some(&["#", "ROOM", "CHECK"]), room_rows.collect());
    }
    out
}

/// Sockets, auth, broker and limits: one `name  value` line each.
fn endpoint_rows(config: &Config) -> Vec<Vec<String>> {
    let ws = &config.websocket;
    let origins = match &ws.allowed_origins {
        OriginPolicy::SameHost => "same host only".to_owned(),
        OriginPolicy::Any => "any (\"*\")".to_owned(),
        OriginPolicy::List(list) => list.join(", "),
    };
    let auth = &config.auth;
    let auth_line = match auth.mode {
        AuthMode::None => "none: every caller is anonymous".to_owned(),
        AuthMode::Jwt => format!(
            "jwt: {} signed with ${}, user id from claim {:?}",
            auth.jwt.algorithms.join(","),
            auth.jwt.secret_env,
            auth.jwt.user_id_claim
        ),
        AuthMode::Upstream => format!(
            "upstream: GET {} with the caller's credentials, user id at {:?}, cached {}",
            auth.upstream.path,
            auth.upstream.user_id,
            format_duration(auth.upstream.cache_ttl)
        ),
        AuthMode::Header => format!(
            "header: user id from {} (only behind a trusted auth proxy)",
            auth.header.name
        ),
    };
    let broker = match config.broker.kind {
        BrokerKind::Memory => "memory (this process only)".to_owned(),
        BrokerKind::Redis => format!(
            "redis {} (key prefix {:?}, streams capped at {})",
            config.broker.redis.url,
            config.broker.redis.key_prefix,
            config.broker.redis.stream_maxlen
        ),
    };
    let limits = &config.limits;
    let size = |n: usize| format_size(u64::try_from(n).unwrap_or(u64::MAX));
    let rooms = format!(
        "{}{}{} (client broadcast {})",
        ws.room_path.prefix,
        "{room}",
        ws.room_path.suffix,
        if config.rooms.client_publish {
            "on"
        } else {
            "off"
        }
    );
    vec![
        row(["websocket", &ws.path]),
        row([
            "notifications",
            &format!(
                "{} (channel {}{{user_id}})",
                ws.notifications_path, config.channels.user_prefix
            ),
        ]),
        row(["rooms", &rooms]),
        row(["sse", &config.sse.path]),
        row(["origins", &origins]),
        row([
            "ping",
            &format!("every {}", format_duration(ws.ping_interval)),
        ]),
        row(["auth", &auth_line]),
        row(["token param", &format!("?{}=", auth.token_query_param)]),
        row([
            "publish",
            &match &config.publish.token {
                Some(_) => format!(
                    "POST /publish enabled (token from ${})",
                    config.publish.token_env
                ),
                None => format!(
                    "POST /publish refused: ${} is not set",
                    config.publish.token_env
                ),
            },
        ]),
        row(["broker", &broker]),
        row([
            "history",
            &format!(
                "{} events per channel, kept {}",
                config.history.size,
                format_duration(config.history.ttl)
            ),
        ]),
        row([
            "limits",
            &format!(
                "{} connections, {} per client frame, send queue {}, {} subscriptions per \
                 connection, {} of response body for event data",
                limits.max_connections,
                size(limits.max_message_bytes),
                limits.send_queue,
                limits.max_subscriptions,
                size(limits.event_body_max_bytes)
            ),
        ]),
        row([
            "shutdown",
            &format!("{} grace", format_duration(config.shutdown_grace)),
        ]),
        row([
            "log",
            match config.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            },
        ]),
    ]
}

fn row<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

fn dash_if_empty(text: String) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// Left-aligned columns two spaces apart; tables (with a header) are indented and say `(none)` when
/// empty. The last column is not padded, so lines carry no trailing spaces.
fn columns(header: Option<&[&str]>, rows: Vec<Vec<String>>) -> String {
    let indent = if header.is_some() { "  " } else { "" };
    if rows.is_empty() {
        return format!("{indent}(none)\n");
    }
    let mut all: Vec<Vec<String>> = Vec::with_capacity(rows.len() + 1);
    if let Some(header) = header {
        all.push(header.iter().map(|h| (*h).to_owned()).collect());
    }
    all.extend(rows);
    let count = all.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            all.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in &all {
        out += indent;
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                out += cell;
            } else {
                let _ = write!(out, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_table_shows_the_default_cache_rule_and_auto_events() {
        let table = render_rule_table(&Config::default());
        assert!(table.contains("0.0.0.0:8080"), "{table}");
        assert!(
            table.contains("http://127.0.0.1:8000 (connect timeout 2s"),
            "{table}"
        );
        assert!(
            table.contains("1  GET,HEAD  ^/api(/|$)  no-cache  yes"),
            "{table}"
        );
        assert!(
            table.contains("on for mutations below /api, except ^/api/auth/"),
            "{table}"
        );
        assert!(table.contains("(none)"), "{table}");
        assert!(
            table.contains("1000 events per channel, kept 10m"),
            "{table}"
        );
        assert!(
            !table.lines().any(|l| l.ends_with(' ')),
            "trailing spaces:\n{table}"
        );
    }

    #[test]
    fn event_rules_are_listed_in_aligned_columns() {
        let yaml = r#"
events:
  rules:
    - methods: [put, PATCH]
      path: "^/api/projects/(?P<id>[^/]+)$"
      type: project_updated
      channels: [projects, "project:{id}"]
      invalidate: [[projects], [project, "{id}"]]
      id: /id
      data: [id, name]
"#;
        let config = Config::from_yaml_str(yaml, "test.yaml").unwrap();
        let table = render_rule_table(&config);
        let header = table.lines().find(|l| l.contains("INVALIDATE")).unwrap();
        let line = table
            .lines()
            .find(|l| l.contains("project_updated"))
            .unwrap();
        assert_eq!(header.find("TYPE"), line.find("project_updated"), "{table}");
        assert!(line.contains("PUT,PATCH"), "{line}");
        assert!(line.contains("projects,project:{id}"), "{line}");
        assert!(line.contains("[projects] [project,{id}]"), "{line}");
        assert!(line.contains("\"/id\"  id,name"), "{line}");
    }
}
