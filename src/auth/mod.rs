//! Who is calling: the user id behind a socket handshake, an SSE stream or a REST mutation.
//!
//! One `Authenticator` per loaded config (rebuilt on reload) picks the mode: `none` (anonymous),
//! `header` (a trusted proxy in front sets it), `jwt` (a bearer token verified locally) or
//! `upstream` (the API's own `/api/auth/me`, asked with the caller's credentials and cached).
//! Credentials are never logged; the upstream cache keys on their SHA-256.

mod jwt;
mod upstream;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header};

use crate::config::{AuthConfig, AuthMode, UpstreamConfig};
use crate::proxy::upstream::Upstream;

/// Longest user id accepted from any source; ids end up in channel names and event envelopes.
const MAX_USER_ID: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The credentials were presented but are not valid (bad signature, expired, …).
    #[error("invalid credentials: {0}")]
    Invalid(String),
    /// The identity could not be checked right now (upstream auth endpoint down).
    #[error("cannot check credentials: {0}")]
    Unavailable(String),
}

/// What a caller presented: the headers an API would look at, plus the token query parameter
/// browsers must use on sockets (they cannot set headers there).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    authorization: Option<HeaderValue>,
    cookie: Option<HeaderValue>,
}

impl Credentials {
    /// `query_token_param`: the name of the token query parameter, honoured only on socket and SSE
    /// paths; `None` elsewhere.
    pub fn from_request(
        headers: &HeaderMap,
        query: Option<&str>,
        query_token_param: Option<&str>,
    ) -> Credentials {
        let mut authorization = headers.get(header::AUTHORIZATION).cloned();
        if authorization.is_none()
            && let (Some(query), Some(param)) = (query, query_token_param)
            && let Some(token) = crate::ws::sse::query_values(query, param).pop()
        {
            authorization = HeaderValue::from_str(&format!("Bearer {token}")).ok();
        }
        Credentials {
            authorization,
            cookie: headers.get(header::COOKIE).cloned(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.authorization.is_none() && self.cookie.is_none()
    }

    /// The bearer token, when `Authorization: Bearer …` (or the query parameter) carried one.
    pub fn bearer(&self) -> Option<&str> {
        self.authorization
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// Copies the credentials onto a request to the API (room authorization, `/api/auth/me`).
    pub fn apply(&self, headers: &mut HeaderMap) {
        if let Some(v) = &self.authorization {
            headers.insert(header::AUTHORIZATION, v.clone());
        }
        if let Some(v) = &self.cookie {
            headers.insert(header::COOKIE, v.clone());
        }
    }

    fn cache_key(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(
            self.authorization
                .as_ref()
                .map_or(&b""[..], HeaderValue::as_bytes),
        );
        h.update([0u8]);
        h.update(self.cookie.as_ref().map_or(&b""[..], HeaderValue::as_bytes));
        h.finalize().into()
    }
}

/// The compiled auth settings of one config.
pub struct Authenticator {
    mode: AuthMode,
    header_name: http::HeaderName,
    jwt: Option<jwt::Verifier>,
    upstream: Option<upstream::UpstreamAuth>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Fails when the mode cannot work as configured (no JWT key, a key that does not parse).
    pub fn new(cfg: &AuthConfig, upstream_cfg: &UpstreamConfig) -> Result<Authenticator, String> {
        Ok(Authenticator {
            mode: cfg.mode,
            header_name: cfg.header.name.clone(),
            jwt: match cfg.mode {
                AuthMode::Jwt => Some(jwt::Verifier::new(&cfg.jwt)?),
                _ => None,
            },
            upstream: match cfg.mode {
                AuthMode::Upstream => {
                    Some(upstream::UpstreamAuth::new(&cfg.upstream, upstream_cfg))
                }
                _ => None,
            },
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Whether sockets and streams must carry an identity (every mode but `none`); when false every
    /// caller is anonymous, so the proxy skips copying a mutation's headers for `identify`.
    pub fn required(&self) -> bool {
        self.mode != AuthMode::None
    }

    /// `Ok(None)` for an anonymous caller (no credentials presented, or rejected by the upstream).
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        creds: &Credentials,
        client: &Upstream,
    ) -> Result<Option<Arc<str>>, AuthError> {
        match self.mode {
            AuthMode::None => Ok(None),
            AuthMode::Header => Ok(headers
                .get(&self.header_name)
                .and_then(|v| v.to_str().ok())
                .and_then(user_id)),
            AuthMode::Jwt => match (&self.jwt, creds.bearer()) {
                (Some(verifier), Some(token)) => verifier.verify(token).map(Some),
                _ => Ok(None),
            },
            AuthMode::Upstream => match &self.upstream {
                Some(up) => up.identify(creds, client).await,
                None => Ok(None),
            },
        }
    }
}

/// A user id as syncgate accepts it: trimmed, non-empty, bounded, printable.
fn user_id(raw: &str) -> Option<Arc<str>> {
    let id = raw.trim();
    (!id.is_empty()
        && id.len() <= MAX_USER_ID
        && !id.chars().any(|c| c.is_control() || c == ',' || c == '='))
    .then(|| Arc::from(id))
}

/// A claim or JSON field as a user id: strings as they are, integers printed.
fn user_id_from_json(v: &serde_json::Value) -> Option<Arc<str>> {
    match v {
        serde_json::Value::String(s) => user_id(s),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => user_id(&n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_token_becomes_a_bearer_only_where_allowed() {
        let h = HeaderMap::new();
        let c = Credentials::from_request(&h, Some("access_token=abc&x=1"), Some("access_token"));
        assert_eq!(c.bearer(), Some("abc"));
        let c = Credentials::from_request(&h, Some("access_token=abc"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn cache_key_depends_on_every_credential() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("session=a"));
        let a = Credentials::from_request(&h, None, None).cache_key();
        h.insert(header::COOKIE, HeaderValue::from_static("session=b"));
        let b = Credentials::from_request(&h, None, None).cache_key();
        assert_ne!(a, b);
    }

    #[test]
    fn user_ids_are_bounded_and_printable() {
        assert_eq!(user_id(" 7 ").as_deref(), Some("7"));
        assert!(user_id("").is_none());
        assert!(user_id(&"x".repeat(200)).is_none());
        assert!(user_id("a\nb").is_none());
        assert_eq!(
            user_id_from_json(&serde_json::json!(42)).as_deref(),
            Some("42")
        );
        assert!(user_id_from_json(&serde_json::json!(true)).is_none());
    }
}
