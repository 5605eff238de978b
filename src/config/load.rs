//! Turning YAML text into a [`Config`]: the entry points, the defaults, and the small sections.
//!
//! The text is parsed by `serde-saphyr` into a generic tree, then each section is read through a
//! [`Node`] (see `raw`), which makes every key optional with a default, refuses unknown keys and names
//! the key path in every error. Rule lists live in `rules`, socket endpoints in `sockets`.
//! `Config::default()` is the same code run on an empty document, so the defaults exist in one place.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use http::uri::Authority;
use serde_json::Value;

use super::raw::{Node, Result};
use super::rules::{self, json_pointer};
use super::sockets::{self, absolute_path};
use super::{
    AuthConfig, AuthMode, BrokerConfig, BrokerKind, ChannelsConfig, Config, ConfigError,
    HeaderAuthConfig, HistoryConfig, JwtAuthConfig, LimitsConfig, LogConfig, LogFormat,
    PublishConfig, RedisConfig, UpstreamAuthConfig, UpstreamConfig,
};

/// Reads environment variables named by the config (`publish.token_env`); a parameter so tests
/// need not touch the process environment.
pub(super) type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

const TOP_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "upstream",
    "cache_control",
    "events",
    "websocket",
    "sse",
    "auth",
    "rooms",
    "channels",
    "history",
    "limits",
    "publish",
    "broker",
    "shutdown_grace",
    "log",
];

const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

pub(super) fn from_yaml_str(text: &str, source: &str) -> std::result::Result<Config, ConfigError> {
    from_yaml_str_with_env(text, source, &process_env)
}

pub(super) fn from_yaml_str_with_env(
    text: &str,
    source: &str,
    env: Env<'_>,
) -> std::result::Result<Config, ConfigError> {
    let tree: Value = serde_saphyr::from_str(text).map_err(|e| syntax_error(&e).in_file(source))?;
    build(&Node::root(&tree), env).map_err(|e| e.in_file(source))
}

pub(super) fn from_path(path: &Path) -> std::result::Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(&name, "", format!("cannot read the config file: {e}")))?;
    from_yaml_str(&text, &name)
}

pub(super) fn defaults() -> Config {
    match build(&Node::root(&Value::Null), &process_env) {
        Ok(config) => config,
        // The empty document only takes the defaults below; a unit test loads it.
        Err(e) => unreachable!("the built-in defaults are invalid: {e}"),
    }
}

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The library's message with the position first and its advice about its own options removed.
fn syntax_error(e: &serde_saphyr::Error) -> ConfigError {
    let plain = e.without_snippet().to_string();
    let plain = plain.replace(", set DuplicateKeyPolicy in Options if acceptable", "");
    let message = match e.location() {
        Some(at) => {
            let (line, column) = (at.line(), at.column());
            let suffix = format!(" at line {line}, column {column}");
            let what = plain.strip_suffix(&suffix).unwrap_or(&plain);
            format!("invalid YAML at line {line}, column {column}: {what}")
        }
        None => format!("invalid YAML: {plain}"),
    };
    ConfigError::at("", message)
}

fn build(root: &Node<'_>, env: Env<'_>) -> Result<Config> {
    let top = root.section(TOP_KEYS)?;
    let listen = socket_addr(&top.get("listen"), "0.0.0.0:8080")?;
    let admin_node = top.get("admin_listen");
    let admin_listen = socket_addr(&admin_node, "127.0.0.1:9901")?;
    if collides(listen, admin_listen) {
        return Err(admin_node.err(format!(
            "{admin_listen} collides with listen {listen}; the admin listener needs its own port"
        )));
    }
    let websocket = sockets::websocket(&top.get("websocket"))?;
    let sse = sockets::sse(&top.get("sse"))?;
    sockets::check_distinct(&websocket, &sse)?;
    Ok(Config {
        listen,
        admin_listen,
        upstream: upstream(&top.get("upstream"))?,
        cache_control: rules::cache_control(&top.get("cache_control"))?,
        events: rules::events(&top.get("events"))?,
        websocket,
        sse,
        auth: auth(&top.get("auth"), env)?,
        rooms: rules::rooms(&top.get("rooms"))?,
        channels: ChannelsConfig {
            user_prefix: top
                .get("channels")
                .section(&["user_prefix"])?
                .get("user_prefix")
                .non_empty_text_or("user:")?,
        },
        history: history(&top.get("history"))?,
        limits: limits(&top.get("limits"))?,
        publish: publish(&top.get("publish"), env)?,
        broker: broker(&top.get("broker"))?,
        shutdown_grace: top
            .get("shutdown_grace")
            .duration_or(Duration::from_secs(20), false)?,
        log: LogConfig {
            format: top
                .get("log")
                .section(&["format"])?
                .get("format")
                .choice_or(
                    &[("text", LogFormat::Text), ("json", LogFormat::Json)],
                    LogFormat::Text,
                )?,
        },
    })
}

fn socket_addr(node: &Node<'_>, default: &str) -> Result<SocketAddr> {
    let text = node.text_or(default)?;
    text.parse().map_err(|_| {
        node.err(format!(
            "{text:?} is not an IP:PORT address; use one like \"0.0.0.0:8080\", \
             \"127.0.0.1:9901\" or \"[::]:8080\""
        ))
    })
}

/// Two listeners on one port collide when their IPs are equal or either is a wildcard.
fn collides(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn upstream(node: &Node<'_>) -> Result<UpstreamConfig> {
    let s = node.section(&["url", "connect_timeout", "request_timeout"])?;
    let url_node = s.get("url");
    let (authority, base_path) =
        upstream_url(&url_node, &url_node.text_or("http://127.0.0.1:8000")?)?;
    Ok(UpstreamConfig {
        authority,
        base_path,
        connect_timeout: s
            .get("connect_timeout")
            .duration_or(Duration::from_secs(2), true)?,
        request_timeout: s
            .get("request_timeout")
            .duration_or(Duration::from_secs(30), true)?,
    })
}

/// `http://host[:port][/base]` → (`host:port`, `/base`), with port 80 filled in.
fn upstream_url(node: &Node<'_>, url: &str) -> Result<(Authority, String)> {
    let hint = "use http://host[:port][/base], like \"http://127.0.0.1:8000\"";
    if url.to_ascii_lowercase().starts_with("https://") {
        return Err(node.err(format!(
            "{url:?}: https is not supported: the API runs beside the sidecar, so it is reached \
             over plain http://, like \"http://127.0.0.1:8000\""
        )));
    }
    let scheme_ok = url
        .get(..7)
        .is_some_and(|s| s.eq_ignore_ascii_case("http://"));
    let Some(rest) = url.get(7..).filter(|_| scheme_ok) else {
        return Err(node.err(format!("{url:?} is not an http:// URL; {hint}")));
    };
    if rest.contains(['?', '#']) {
        return Err(node.err(format!("{url:?} must not have a query or fragment; {hint}")));
    }
    let (host_port, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if host_port.is_empty() || host_port.contains('@') {
        return Err(node.err(format!("{url:?} needs a host and no user:password; {hint}")));
    }
    let parsed: Authority = host_port
        .parse()
        .map_err(|e| node.err(format!("{url:?} has an invalid host or port ({e}); {hint}")))?;
    let authority = match parsed.port_u16() {
        Some(_) => parsed,
        // Text after the host that is not a valid port: "api:" or "api:99999".
        None if parsed.as_str().len() > parsed.host().len() => {
            return Err(node.err(format!(
                "{url:?} has an invalid host or port (a port is 1 to 65535); {hint}"
            )));
        }
        None => format!("{}:80", parsed.host())
            .parse()
            .map_err(|e| node.err(format!("{url:?} has an invalid host ({e}); {hint}")))?,
    };
    if path.contains(char::is_whitespace) {
        return Err(node.err(format!("{url:?} has spaces in its path; {hint}")));
    }
    Ok((authority, path.trim_end_matches('/').to_owned()))
}

fn auth(node: &Node<'_>, env: Env<'_>) -> Result<AuthConfig> {
    let s = node.section(&["mode", "upstream", "jwt", "header", "token_query_param"])?;
    let mode = s.get("mode").choice_or(
        &[
            ("none", AuthMode::None),
            ("jwt", AuthMode::Jwt),
            ("upstream", AuthMode::Upstream),
            ("header", AuthMode::Header),
        ],
        AuthMode::None,
    )?;

    let up = s
        .get("upstream")
        .section(&["path", "user_id", "cache_ttl"])?;
    let user_id_node = up.get("user_id");
    let upstream = UpstreamAuthConfig {
        path: absolute_path(&up.get("path"), "/api/auth/me")?,
        user_id: json_pointer(&user_id_node, user_id_node.text_or("/id")?)?,
        cache_ttl: up
            .get("cache_ttl")
            .duration_or(Duration::from_secs(30), true)?,
    };

    let jwt = s
        .get("jwt")
        .section(&["secret_env", "key_file", "algorithms", "user_id_claim"])?;
    let algorithms_node = jwt.get("algorithms");
    let algorithms = algorithms_node
        .text_list(|n, name| {
            JWT_ALGORITHMS
                .iter()
                .find(|a| a.eq_ignore_ascii_case(&name))
                .map(|a| (*a).to_owned())
                .ok_or_else(|| {
                    n.err(format!(
                        "{name:?} is not a supported JWT algorithm; use {}",
                        JWT_ALGORITHMS.join(", ")
                    ))
                })
        })?
        .unwrap_or_else(|| vec!["HS256".to_owned()]);
    if algorithms.is_empty() {
        return Err(algorithms_node.err("must list at least one algorithm, like [HS256]"));
    }
    let families: std::collections::BTreeSet<&str> =
        algorithms.iter().map(|a| jwt_family(a)).collect();
    if families.len() > 1 {
        return Err(algorithms_node.err(
            "one key verifies one algorithm family: list only HS*, only RS*/PS*, only ES*, or only EdDSA",
        ));
    }
    let secret_env = jwt
        .get("secret_env")
        .non_empty_text_or("SYNCGATE_JWT_SECRET")?;
    let key_file_node = jwt.get("key_file");
    let key_file = key_file_node.text()?.map(std::path::PathBuf::from);
    let key = match &key_file {
        Some(path) => Some(Arc::from(std::fs::read(path).map_err(|e| {
            key_file_node.err(format!("cannot read {}: {e}", path.display()))
        })?)),
        None => env(&secret_env)
            .filter(|k| !k.is_empty())
            .map(|k| Arc::from(k.into_bytes())),
    };
    let jwt = JwtAuthConfig {
        secret_env,
        key_file,
        key,
        algorithms,
        user_id_claim: jwt.get("user_id_claim").non_empty_text_or("sub")?,
    };

    let header_node = s.get("header").section(&["name"])?.get("name");
    let header_name = header_node.text_or("X-User-Id")?;
    let header = HeaderAuthConfig {
        name: HeaderName::from_bytes(header_name.as_bytes()).map_err(|_| {
            header_node.err(format!(
                "{header_name:?} is not a valid header name; \
                 use letters, digits and -, like \"X-User-Id\""
            ))
        })?,
    };

    let param_node = s.get("token_query_param");
    let token_query_param = param_node.non_empty_text_or("access_token")?;
    if !token_query_param
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(param_node.err(format!(
            "{token_query_param:?} is not a plain query parameter name; \
             use letters, digits, _ - or ., like \"access_token\""
        )));
    }
    Ok(AuthConfig {
        mode,
        upstream,
        jwt,
        header,
        token_query_param,
    })
}

/// HS*, RS*/PS* (RSA), ES* and EdDSA need different kinds of key.
fn jwt_family(alg: &str) -> &'static str {
    match &alg[..2] {
        "HS" => "hmac",
        "RS" | "PS" => "rsa",
        "ES" => "ec",
        _ => "ed",
    }
}

fn history(node: &Node<'_>) -> Result<HistoryConfig> {
    let s = node.section(&["size", "ttl"])?;
    Ok(HistoryConfig {
        size: s.get("size").usize_or(1000, 1)?,
        ttl: s.get("ttl").duration_or(Duration::from_secs(600), true)?,
    })
}

fn limits(node: &Node<'_>) -> Result<LimitsConfig> {
    let s = node.section(&[
        "max_connections",
        "max_message_bytes",
        "send_queue",
        "max_subscriptions",
        "event_body_max_bytes",
    ])?;
    Ok(LimitsConfig {
        max_connections: s.get("max_connections").usize_or(100_000, 1)?,
        max_message_bytes: s.get("max_message_bytes").size_or(64 << 10, 128)?,
        send_queue: s.get("send_queue").usize_or(1024, 1)?,
        max_subscriptions: s.get("max_subscriptions").usize_or(100, 1)?,
        event_body_max_bytes: s.get("event_body_max_bytes").size_or(1 << 20, 1)?,
    })
}

fn publish(node: &Node<'_>, env: Env<'_>) -> Result<PublishConfig> {
    let s = node.section(&["token_env"])?;
    let token_env = s
        .get("token_env")
        .non_empty_text_or("SYNCGATE_PUBLISH_TOKEN")?;
    let token = env(&token_env).filter(|t| !t.is_empty()).map(Arc::from);
    Ok(PublishConfig { token_env, token })
}

fn broker(node: &Node<'_>) -> Result<BrokerConfig> {
    let s = node.section(&["kind", "redis"])?;
    let kind = s.get("kind").choice_or(
        &[("memory", BrokerKind::Memory), ("redis", BrokerKind::Redis)],
        BrokerKind::Memory,
    )?;
    let redis = s
        .get("redis")
        .section(&["url", "key_prefix", "stream_maxlen"])?;
    let url_node = redis.get("url");
    let url = url_node.text_or("redis://127.0.0.1:6379")?;
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"));
    if rest.is_none_or(str::is_empty) {
        return Err(url_node.err(format!(
            "{url:?} is not a Redis URL; use redis://host:port or rediss://host:port (TLS), \
             like \"redis://127.0.0.1:6379\""
        )));
    }
    Ok(BrokerConfig {
        kind,
        redis: RedisConfig {
            url,
            key_prefix: redis.get("key_prefix").text_or("syncgate:")?,
            stream_maxlen: redis.get("stream_maxlen").count_or(10_000, 1)?,
        },
    })
}
