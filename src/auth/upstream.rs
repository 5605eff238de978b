//! Identity from the API itself: `GET auth.upstream.path` with the caller's `Authorization` and
//! `Cookie`, a 2xx answer giving the user id by JSON pointer.
//!
//! Answers are cached per credential (by SHA-256, never the credential itself) for `cache_ttl`, and
//! concurrent first calls for one credential share a single upstream request. Failures to reach the
//! API are not cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::{AuthError, Credentials, user_id_from_json};
use crate::body::empty;
use crate::config::{UpstreamAuthConfig, UpstreamConfig};
use crate::proxy::upstream::Upstream;

/// Cached credentials at most; past it expired entries go, and if none had, the cache restarts.
const MAX_ENTRIES: usize = 50_000;
/// Largest `/api/auth/me` answer read.
const MAX_BODY: usize = 64 * 1024;

type Answer = Option<Arc<str>>;

pub struct UpstreamAuth {
    uri: String,
    pointer: String,
    ttl: Duration,
    timeout: Duration,
    cache: Mutex<HashMap<[u8; 32], Arc<Slot>>>,
}

struct Slot {
    born: Instant,
    answer: OnceCell<Answer>,
}

impl UpstreamAuth {
    pub fn new(cfg: &UpstreamAuthConfig, upstream: &UpstreamConfig) -> UpstreamAuth {
        UpstreamAuth {
            uri: format!(
                "http://{}{}{}",
                upstream.authority, upstream.base_path, cfg.path
            ),
            pointer: cfg.user_id.clone(),
            ttl: cfg.cache_ttl,
            timeout: upstream.request_timeout,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn identify(
        &self,
        creds: &Credentials,
        client: &Upstream,
    ) -> Result<Answer, AuthError> {
        if creds.is_empty() {
            return Ok(None);
        }
        let slot = self.slot(creds.cache_key());
        slot.answer
            .get_or_try_init(|| self.ask(creds, client))
            .await
            .cloned()
    }

    fn slot(&self, key: [u8; 32]) -> Arc<Slot> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(slot) = cache.get(&key)
            && now.duration_since(slot.born) < self.ttl
        {
            return Arc::clone(slot);
        }
        if cache.len() >= MAX_ENTRIES {
            cache.retain(|_, s| now.duration_since(s.born) < self.ttl);
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
        }
        let slot = Arc::new(Slot {
            born: now,
            answer: OnceCell::new(),
        });
        cache.insert(key, Arc::clone(&slot));
        slot
    }

    async fn ask(&self, creds: &Credentials, client: &Upstream) -> Result<Answer, AuthError> {
        let mut req = Request::new(empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = self
            .uri
            .parse()
            .map_err(|_| AuthError::Unavailable("bad auth.upstream.path".into()))?;
        creds.apply(req.headers_mut());
        req.headers_mut().insert(
            header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
        let resp = client
            .send(req, self.timeout)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!(
                "{} answered {status}",
                self.uri
            )));
        }
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| AuthError::Unavailable(format!("reading the auth answer: {e}")))?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| AuthError::Unavailable(format!("the auth answer is not JSON: {e}")))?;
        Ok(json.pointer(&self.pointer).and_then(user_id_from_json))
    }
}
