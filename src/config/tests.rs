//! Loading tests: defaults, the SPEC example, the shipped example file, and the errors of the small
//! sections (rule lists and socket paths are tested next to their code). Each error test checks the
//! key path and the hint a user would act on.

use std::time::Duration;

use http::Method;

use super::load::from_yaml_str_with_env;
use super::*;

pub(super) fn load(yaml: &str) -> Config {
    match Config::from_yaml_str(yaml, "test.yaml") {
        Ok(config) => config,
        Err(e) => panic!("{e}"),
    }
}

/// Loads `yaml`, expects an error at `key_path` whose message contains every `hints` fragment.
pub(super) fn fails_at(yaml: &str, key_path: &str, hints: &[&str]) -> ConfigError {
    let err = Config::from_yaml_str(yaml, "test.yaml").expect_err("config should be refused");
    assert_eq!(err.file, "test.yaml");
    assert_eq!(err.key_path, key_path, "{err}");
    for hint in hints {
        assert!(err.message.contains(hint), "missing {hint:?} in: {err}");
    }
    err
}

const SPEC_EXAMPLE: &str = r#"
listen: "0.0.0.0:8080"
admin_listen: "127.0.0.1:9901"
upstream:
  url: "http://127.0.0.1:8000"
  connect_timeout: 2s
  request_timeout: 30s
cache_control:
  rules:
    - path: "^/api/(projects|dashboard|notifications)(/.*)?$"
      value: "no-cache, no-store, must-revalidate"
    - path: "^/static/"
      methods: [GET, HEAD]
      value: "public, max-age=31536000, immutable"
      only_if_missing: false
events:
  auto:
    enabled: true
    prefix: "/api"
    exclude: ["^/api/auth/"]
  rules:
    - methods: [POST]
      path: "^/api/projects/?$"
      type: project_created
      channels: ["projects"]
      invalidate: [["projects"], ["dashboard"]]
      id: "/id"
      data: ["id", "name", "description"]
    - methods: [PUT, PATCH]
      path: "^/api/projects/(?P<id>[^/]+)$"
      type: project_updated
      channels: ["projects", "project:{id}"]
      invalidate: [["projects"], ["project", "{id}"], ["dashboard"]]
  exclude_origin: connection
websocket:
  path: "/api/ws"
  notifications_path: "/api/ws/notifications"
  room_path: "/api/ws/room/{room}"
  allowed_origins: ["https://app.example.com"]
  ping_interval: 25s
sse:
  path: "/api/sse"
auth:
  mode: upstream
  upstream: { path: "/api/auth/me", user_id: "/id", cache_ttl: 30s }
  jwt: { secret_env: SYNCGATE_JWT_SECRET, algorithms: [HS256], user_id_claim: sub }
  header: { name: "X-User-Id" }
  token_query_param: access_token
rooms:
  authorize:
    - room: "^project:(?P<id>.+)$"
      path: "/api/projects/{id}"
  client_publish: true
channels:
  user_prefix: "user:"
history: { size: 1000, ttl: 10m }
limits:
  max_connections: 100000
  max_message_bytes: 64KiB
  send_queue: 1024
  max_subscriptions: 100
  event_body_max_bytes: 1MiB
publish:
  token_env: SYNCGATE_PUBLISH_TOKEN
broker:
  kind: memory
  redis: { url: "redis://127.0.0.1:6379", key_prefix: "syncgate:", stream_maxlen: 10000 }
shutdown_grace: 20s
log: { format: json }
"#;

#[test]
fn empty_file_and_empty_document_take_every_default() {
    for text in ["", "# nothing yet\n", "---\n", "upstream:\n"] {
        let c = load(text);
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:8000");
    }
}

#[test]
fn defaults_are_the_ones_spec_promises() {
    let c = Config::default();
    assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
    assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.upstream.authority.as_str(), "127.0.0.1:8000");
    assert_eq!(c.upstream.base_path, "");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(2));
    assert_eq!(c.upstream.request_timeout, Duration::from_secs(30));
    let [rule] = c.cache_control.rules.as_slice() else {
        panic!("one default cache rule expected");
    };
    assert_eq!(rule.path.as_str(), "^/api(/|$)");
    assert_eq!(rule.methods, Some(vec![Method::GET, Method::HEAD]));
    assert_eq!(rule.value, "no-cache");
    assert!(rule.only_if_missing);
    assert!(c.events.auto.enabled);
    assert_eq!(c.events.auto.prefix, "/api");
    let excludes: Vec<&str> = c.events.auto.exclude.iter().map(|r| r.as_str()).collect();
    assert_eq!(excludes, ["^/api/auth/"]);
    assert!(c.events.rules.is_empty());
    assert_eq!(c.events.exclude_origin, ExcludeOrigin::Connection);
    assert_eq!(c.websocket.path, "/api/ws");
    assert_eq!(c.websocket.notifications_path, "/api/ws/notifications");
    let room = RoomPath {
        prefix: "/api/ws/room/".into(),
        suffix: String::new(),
    };
    assert_eq!(c.websocket.room_path, room);
    assert_eq!(c.websocket.allowed_origins, OriginPolicy::SameHost);
    assert_eq!(c.websocket.ping_interval, Duration::from_secs(25));
    assert_eq!(c.sse.path, "/api/sse");
    assert_eq!(c.auth.mode, AuthMode::None);
    assert_eq!(c.auth.upstream.path, "/api/auth/me");
    assert_eq!(c.auth.upstream.user_id, "/id");
    assert_eq!(c.auth.upstream.cache_ttl, Duration::from_secs(30));
    assert_eq!(c.auth.jwt.secret_env, "SYNCGATE_JWT_SECRET");
    assert_eq!(c.auth.jwt.algorithms, ["HS256"]);
    assert_eq!(c.auth.jwt.user_id_claim, "sub");
    assert_eq!(c.auth.header.name, "x-user-id");
    assert_eq!(c.auth.token_query_param, "access_token");
    assert!(c.rooms.authorize.is_empty());
    assert!(c.rooms.client_publish);
    assert_eq!(c.channels.user_prefix, "user:");
    assert_eq!(c.history.size, 1000);
    assert_eq!(c.history.ttl, Duration::from_secs(600));
    assert_eq!(c.limits.max_connections, 100_000);
    assert_eq!(c.limits.max_message_bytes, 65_536);
    assert_eq!(c.limits.send_queue, 1024);
    assert_eq!(c.limits.max_subscriptions, 100);
    assert_eq!(c.limits.event_body_max_bytes, 1_048_576);
    assert_eq!(c.publish.token_env, "SYNCGATE_PUBLISH_TOKEN");
    assert_eq!(c.broker.kind, BrokerKind::Memory);
    assert_eq!(c.broker.redis.url, "redis://127.0.0.1:6379");
    assert_eq!(c.broker.redis.key_prefix, "syncgate:");
    assert_eq!(c.broker.redis.stream_maxlen, 10_000);
    assert_eq!(c.shutdown_grace, Duration::from_secs(20));
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn spec_example_loads_with_its_values() {
    let c = load(SPEC_EXAMPLE);
    assert_eq!(c.cache_control.rules.len(), 2);
    assert_eq!(c.cache_control.rules[0].methods, None);
    assert!(!c.cache_control.rules[0].only_if_missing);
    assert_eq!(c.events.rules.len(), 2);
    let created = &c.events.rules[0];
    assert_eq!(created.methods, [Method::POST]);
    assert_eq!(created.event_type.as_str(), "project_created");
    assert_eq!(created.id.as_deref(), Some("/id"));
    assert_eq!(created.data, ["id", "name", "description"]);
    let updated = &c.events.rules[1];
    assert_eq!(updated.methods, [Method::PUT, Method::PATCH]);
    let channels: Vec<&str> = updated.channels.iter().map(|t| t.as_str()).collect();
    assert_eq!(channels, ["projects", "project:{id}"]);
    assert_eq!(updated.invalidate[1][1].as_str(), "{id}");
    assert_eq!(updated.id, None);
    assert!(updated.data.is_empty());
    let origins = OriginPolicy::List(vec!["https://app.example.com".into()]);
    assert_eq!(c.websocket.allowed_origins, origins);
    assert_eq!(c.auth.mode, AuthMode::Upstream);
    assert_eq!(c.rooms.authorize[0].path.as_str(), "/api/projects/{id}");
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn shipped_example_file_loads() {
    let c = load(include_str!("../../config.example.yaml"));
    assert_eq!(c.auth.mode, AuthMode::None);
    assert_eq!(c.websocket.allowed_origins, OriginPolicy::SameHost);
    assert_eq!(c.cache_control.rules.len(), 2);
    assert_eq!(c.events.rules.len(), 2);
    assert_eq!(c.limits.max_message_bytes, 65_536);
    assert_eq!(c.history.ttl, Duration::from_secs(600));
    assert_eq!(c.log.format, LogFormat::Text);
}

#[test]
fn unknown_nested_key_names_its_path_and_allowed_keys() {
    let yaml = "events:\n  rules:\n    - methodz: [POST]\n      path: x\n";
    let err = fails_at(
        yaml,
        "events.rules[0].methodz",
        &["unknown key; allowed keys: methods, path, type, channels, invalidate, id, data"],
    );
    assert_eq!(
        err.to_string(),
        "test.yaml: events.rules[0].methodz: unknown key; allowed keys: \
         methods, path, type, channels, invalidate, id, data"
    );
    fails_at(
        "listen_addr: x",
        "listen_addr",
        &["allowed keys: listen, admin_listen"],
    );
    fails_at(
        "log: { level: debug }",
        "log.level",
        &["allowed keys: format"],
    );
}

#[test]
fn wrong_value_types_say_what_was_expected() {
    fails_at(
        "upstream: http://x",
        "upstream",
        &["expected a mapping", "url"],
    );
    fails_at(
        "events: { rules: { a: 1 } }",
        "events.rules",
        &["expected a list"],
    );
    fails_at(
        "rooms: { client_publish: maybe }",
        "rooms.client_publish",
        &["true or false"],
    );
    fails_at("history: { size: 10.5 }", "history.size", &["whole number"]);
    fails_at("- listen", "", &["expected a mapping"]);
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let err = fails_at("listen: [1\n", "", &["invalid YAML at line 1, column 9"]);
    assert!(
        err.to_string()
            .starts_with("test.yaml: invalid YAML at line"),
        "{err}"
    );
    fails_at(
        "a: 1\na: 2\n",
        "",
        &["line 2, column 1", "duplicate mapping key: a"],
    );
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let path = std::path::Path::new("/nonexistent/syncgate/cfg.yaml");
    let err = Config::load(path).unwrap_err();
    assert_eq!(err.file, "/nonexistent/syncgate/cfg.yaml");
    assert_eq!(err.key_path, "");
    assert!(
        err.to_string().contains("cannot read the config file"),
        "{err}"
    );
}

#[test]
fn bad_durations_and_zero_timeouts_are_refused() {
    let err = fails_at(
        "upstream: { connect_timeout: 2 sec }",
        "upstream.connect_timeout",
        &["\"2 sec\" is not a duration; use a number with ms, s, m or h, like 250ms, 30s, 5m"],
    );
    assert_eq!(
        err.to_string(),
        "test.yaml: upstream.connect_timeout: \"2 sec\" is not a duration; \
         use a number with ms, s, m or h, like 250ms, 30s, 5m"
    );
    fails_at(
        "websocket: { ping_interval: 25 }",
        "websocket.ping_interval",
        &["25 is not a duration"],
    );
    fails_at("history: { ttl: 0s }", "history.ttl", &["longer than zero"]);
    fails_at(
        "auth: { upstream: { cache_ttl: 0ms } }",
        "auth.upstream.cache_ttl",
        &["longer than zero"],
    );
    assert_eq!(load("shutdown_grace: 0s").shutdown_grace, Duration::ZERO);
    assert_eq!(
        load("upstream: { request_timeout: 1.5s }")
            .upstream
            .request_timeout,
        Duration::from_millis(1500)
    );
}

#[test]
fn sizes_and_counts_have_lower_bounds() {
    let c = load("limits: { max_message_bytes: 1MiB, event_body_max_bytes: 4096, send_queue: 8 }");
    assert_eq!(c.limits.max_message_bytes, 1 << 20);
    assert_eq!(c.limits.event_body_max_bytes, 4096);
    assert_eq!(c.limits.send_queue, 8);
    fails_at(
        "limits: { max_message_bytes: 64 }",
        "limits.max_message_bytes",
        &["at least 128"],
    );
    fails_at(
        "limits: { max_message_bytes: 64K }",
        "limits.max_message_bytes",
        &["is not a size", "64KiB"],
    );
    fails_at(
        "limits: { send_queue: 0 }",
        "limits.send_queue",
        &["at least 1"],
    );
    fails_at(
        "limits: { max_connections: -5 }",
        "limits.max_connections",
        &["whole number"],
    );
    fails_at("history: { size: 0 }", "history.size", &["at least 1"]);
    fails_at(
        "broker: { redis: { stream_maxlen: 0 } }",
        "broker.redis.stream_maxlen",
        &["at least 1"],
    );
}

#[test]
fn listen_addresses_must_be_ip_port_and_distinct() {
    fails_at(
        "listen: localhost:8080",
        "listen",
        &["not an IP:PORT address", "0.0.0.0:8080"],
    );
    fails_at("listen: 8080", "listen", &["not an IP:PORT address"]);
    fails_at(
        "admin_listen: 0.0.0.0:8080",
        "admin_listen",
        &["collides with listen"],
    );
    fails_at(
        "listen: 127.0.0.1:9901",
        "admin_listen",
        &["collides with listen 127.0.0.1:9901"],
    );
    let c = load("listen: \"[::]:80\"\nadmin_listen: 127.0.0.1:81");
    assert_eq!(c.listen.port(), 80);
}

#[test]
fn upstream_url_is_split_into_authority_and_base_path() {
    let c = load("upstream: { url: \"http://api.internal/v1/\" }");
    assert_eq!(c.upstream.authority.as_str(), "api.internal:80");
    assert_eq!(c.upstream.base_path, "/v1");
    let c = load("upstream: { url: \"http://[::1]:9000\" }");
    assert_eq!(c.upstream.authority.as_str(), "[::1]:9000");
    assert_eq!(c.upstream.base_path, "");
    assert_eq!(
        load("upstream: { url: \"http://[::1]/\" }")
            .upstream
            .authority
            .as_str(),
        "[::1]:80"
    );
}

#[test]
fn upstream_url_refuses_https_queries_and_other_schemes() {
    fails_at(
        "upstream: { url: \"https://api\" }",
        "upstream.url",
        &["https is not supported", "beside the sidecar"],
    );
    fails_at(
        "upstream: { url: \"http://api/?x=1\" }",
        "upstream.url",
        &["query or fragment"],
    );
    fails_at(
        "upstream: { url: \"ftp://api\" }",
        "upstream.url",
        &["not an http:// URL"],
    );
    fails_at(
        "upstream: { url: \"http://\" }",
        "upstream.url",
        &["needs a host"],
    );
    fails_at(
        "upstream: { url: \"http://api:99999\" }",
        "upstream.url",
        &["invalid host or port"],
    );
}

#[test]
fn enum_values_list_what_is_allowed() {
    fails_at(
        "events: { exclude_origin: tab }",
        "events.exclude_origin",
        &["\"tab\" is not allowed; use one of: connection, user, none"],
    );
    fails_at(
        "auth: { mode: oauth }",
        "auth.mode",
        &["use one of: none, jwt, upstream, header"],
    );
    fails_at(
        "broker: { kind: kafka }",
        "broker.kind",
        &["use one of: memory, redis"],
    );
    fails_at(
        "log: { format: yaml }",
        "log.format",
        &["use one of: text, json"],
    );
    for mode in ["none", "jwt", "upstream", "header"] {
        load(&format!("auth: {{ mode: {mode} }}"));
    }
    assert_eq!(
        load("events: { exclude_origin: none }")
            .events
            .exclude_origin,
        ExcludeOrigin::None
    );
    assert_eq!(
        load("broker: { kind: redis }").broker.kind,
        BrokerKind::Redis
    );
}

#[test]
fn auth_header_prefix_and_token_param_are_checked() {
    fails_at(
        "auth: { header: { name: \"X User\" } }",
        "auth.header.name",
        &["not a valid header name"],
    );
    fails_at(
        "auth: { token_query_param: \"a&b\" }",
        "auth.token_query_param",
        &["query parameter name"],
    );
    fails_at(
        "auth: { jwt: { algorithms: [none] } }",
        "auth.jwt.algorithms[0]",
        &["not a supported JWT algorithm", "HS256"],
    );
    fails_at(
        "auth: { jwt: { algorithms: [] } }",
        "auth.jwt.algorithms",
        &["at least one"],
    );
    assert_eq!(
        load("auth: { jwt: { algorithms: [hs512, hs256] } }")
            .auth
            .jwt
            .algorithms,
        ["HS512", "HS256"]
    );
    fails_at(
        "auth: { jwt: { algorithms: [HS256, EdDSA] } }",
        "auth.jwt.algorithms",
        &["one algorithm family"],
    );
    fails_at(
        "channels: { user_prefix: \"\" }",
        "channels.user_prefix",
        &["must not be empty"],
    );
    fails_at(
        "events: { auto: { prefix: api } }",
        "events.auto.prefix",
        &["must start with /"],
    );
    assert_eq!(
        load("events: { auto: { prefix: /v1/ } }")
            .events
            .auto
            .prefix,
        "/v1"
    );
}

#[test]
fn redis_url_needs_a_redis_scheme() {
    fails_at(
        "broker: { redis: { url: \"http://r:6379\" } }",
        "broker.redis.url",
        &["redis://", "rediss://"],
    );
    assert_eq!(
        load("broker: { redis: { url: \"rediss://r:6380\" } }")
            .broker
            .redis
            .url,
        "rediss://r:6380"
    );
}

#[test]
fn publish_token_is_read_from_the_named_environment_variable() {
    let env = |name: &str| match name {
        "MY_TOKEN" => Some("s3cret".to_owned()),
        "EMPTY_TOKEN" => Some(String::new()),
        _ => None,
    };
    let load_with = |yaml: &str| from_yaml_str_with_env(yaml, "test.yaml", &env).unwrap();
    let c = load_with("publish: { token_env: MY_TOKEN }");
    assert_eq!(c.publish.token.as_deref(), Some("s3cret"));
    assert_eq!(
        load_with("publish: { token_env: EMPTY_TOKEN }")
            .publish
            .token,
        None
    );
    assert_eq!(load_with("").publish.token, None);
}

#[test]
fn scheme_is_case_insensitive_and_booleans_are_not_text() {
    let c = load("upstream: { url: \"HTTP://api:81\" }");
    assert_eq!(c.upstream.authority.as_str(), "api:81");
    fails_at(
        "auth: { mode: yes }",
        "auth.mode",
        &["expected text", "quote it"],
    );
}

#[test]
fn jwt_key_comes_from_the_secret_env_variable_or_a_readable_file() {
    let env = |name: &str| (name == "JWT_KEY").then(|| "hmac-secret".to_owned());
    let c = from_yaml_str_with_env("auth: { jwt: { secret_env: JWT_KEY } }", "test.yaml", &env)
        .unwrap();
    assert_eq!(c.auth.jwt.key.as_deref(), Some(&b"hmac-secret"[..]));
    let c =
        from_yaml_str_with_env("auth: { jwt: { secret_env: UNSET } }", "test.yaml", &env).unwrap();
    assert!(c.auth.jwt.key.is_none());
    fails_at(
        "auth: { jwt: { key_file: /nonexistent/syncgate.pem } }",
        "auth.jwt.key_file",
        &["cannot read", "/nonexistent/syncgate.pem"],
    );
}
