//! Typed, validated configuration.
//!
//! YAML is read once (see `load`) into the plain structs below; every duration, size, regex, URL and
//! template is parsed here, so nothing on the request path ever re-validates or fails on config.
//! This module is not where config is *used*: each part of the sidecar reads the fields it needs.

mod error;
mod load;
mod raw;
mod rules;
mod sockets;
mod table;
#[cfg(test)]
mod tests;
mod units;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use regex::Regex;

use crate::events::template::Template;

pub use error::ConfigError;
pub use table::render_rule_table;
pub use units::{parse_duration, parse_size};

/// The whole resolved configuration. `Default` is the configuration SPEC promises without a file.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub upstream: UpstreamConfig,
    pub cache_control: CacheControlConfig,
    pub events: EventsConfig,
    pub websocket: WebSocketConfig,
    pub sse: SseConfig,
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub channels: ChannelsConfig,
    pub history: HistoryConfig,
    pub limits: LimitsConfig,
    pub publish: PublishConfig,
    pub broker: BrokerConfig,
    pub shutdown_grace: Duration,
    pub log: LogConfig,
}

/// Where requests go. Only plain `http://` is accepted: the API runs beside the sidecar.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `host:port` of the upstream, used as the connection target.
    pub authority: http::uri::Authority,
    /// Path prefix of the URL without a trailing slash (`""` for `http://127.0.0.1:8000`).
    pub base_path: String,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream's response head; bodies stream without a deadline.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct CacheControlConfig {
    pub rules: Vec<CacheRule>,
}

#[derive(Debug, Clone)]
pub struct CacheRule {
    pub path: Regex,
    /// `None` = every method.
    pub methods: Option<Vec<Method>>,
    pub value: HeaderValue,
    pub only_if_missing: bool,
}

#[derive(Debug, Clone)]
pub struct EventsConfig {
    pub auto: AutoEventsConfig,
    pub rules: Vec<EventRule>,
    pub exclude_origin: ExcludeOrigin,
}

#[derive(Debug, Clone)]
pub struct AutoEventsConfig {
    pub enabled: bool,
    /// Without a trailing slash, e.g. `/api`.
    pub prefix: String,
    pub exclude: Vec<Regex>,
}

#[derive(Debug, Clone)]
pub struct EventRule {
    /// Never empty: the config default is `[POST, PUT, PATCH, DELETE]`.
    pub methods: Vec<Method>,
    pub path: Regex,
    pub event_type: Template,
    pub channels: Vec<Template>,
    pub invalidate: Vec<Vec<Template>>,
    /// JSON pointer into the response body giving `resource_id` (e.g. `/id`).
    pub id: Option<String>,
    /// Top-level response fields copied into `data`; empty = `data: null`.
    pub data: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExcludeOrigin {
    Connection,
    User,
    None,
}

#[derive(Debug, Clone)]
pub struct WebSocketConfig {
    pub path: String,
    pub notifications_path: String,
    /// The `room_path` template split around `{room}`.
    pub room_path: RoomPath,
    pub allowed_origins: OriginPolicy,
    pub ping_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPath {
    pub prefix: String,
    pub suffix: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Empty list: the Origin's host must equal the request's Host.
    SameHost,
    /// `"*"` given explicitly.
    Any,
    /// Exact origins such as `https://app.example.com` (scheme://host[:port], no trailing slash).
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct SseConfig {
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub mode: AuthMode,
    pub upstream: UpstreamAuthConfig,
    pub jwt: JwtAuthConfig,
    pub header: HeaderAuthConfig,
    pub token_query_param: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Jwt,
    Upstream,
    Header,
}

#[derive(Debug, Clone)]
pub struct UpstreamAuthConfig {
    pub path: String,
    /// JSON pointer into the auth endpoint's answer.
    pub user_id: String,
    pub cache_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct JwtAuthConfig {
    pub secret_env: String,
    /// A PEM public key (RS*/PS*/ES*/EdDSA) or an HMAC secret (HS*), read at load time; when absent
    /// the key comes from the `secret_env` variable.
    pub key_file: Option<std::path::PathBuf>,
    /// The resolved key material; `None` = no key configured (jwt mode then cannot start).
    pub key: Option<Arc<[u8]>>,
    pub algorithms: Vec<String>,
    pub user_id_claim: String,
}

#[derive(Debug, Clone)]
pub struct HeaderAuthConfig {
    pub name: HeaderName,
}

#[derive(Debug, Clone, Default)]
pub struct RoomsConfig {
    pub authorize: Vec<RoomRule>,
    pub client_publish: bool,
}

#[derive(Debug, Clone)]
pub struct RoomRule {
    pub room: Regex,
    pub path: Template,
}

#[derive(Debug, Clone)]
pub struct ChannelsConfig {
    pub user_prefix: String,
}

#[derive(Debug, Clone, Copy)]
pub struct HistoryConfig {
    pub size: usize,
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct LimitsConfig {
    pub max_connections: usize,
    pub max_message_bytes: usize,
    pub send_queue: usize,
    pub max_subscriptions: usize,
    pub event_body_max_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub token_env: String,
    /// Resolved from `token_env` at load time; `None` = `POST /publish` refuses everything.
    pub token: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    pub redis: RedisConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub key_prefix: String,
    pub stream_maxlen: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Config {
    /// Parses YAML text; `source` names it in errors (a path, or `<inline>` in tests).
    pub fn from_yaml_str(text: &str, source: &str) -> Result<Config, ConfigError> {
        load::from_yaml_str(text, source)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        load::from_path(path)
    }
}

impl Default for Config {
    fn default() -> Self {
        load::defaults()
    }
}
