//! Who is calling: the user id behind a socket handshake or a REST mutation.
//!
//! Modes `none` and `header` are resolved here without I/O. `jwt` and `upstream` are refused at
//! start-up (see `check_supported`) until they are implemented, rather than silently treating every
//! caller as anonymous.

use std::sync::Arc;

use http::HeaderMap;

use crate::config::{AuthConfig, AuthMode};

/// Longest user id accepted from a header; ids end up in channel names and event envelopes.
const MAX_USER_ID: usize = 128;

/// Fails for auth modes this build cannot enforce, so a misconfigured deployment never runs open.
pub fn check_supported(auth: &AuthConfig) -> Result<(), String> {
    match auth.mode {
        AuthMode::None | AuthMode::Header => Ok(()),
        AuthMode::Jwt | AuthMode::Upstream => Err(format!(
            "auth.mode {:?} is not available in this version yet; use none or header (behind a trusted auth proxy)",
            format!("{:?}", auth.mode).to_lowercase()
        )),
    }
}

/// The caller's user id, or `None` for an anonymous caller.
pub fn identify(auth: &AuthConfig, headers: &HeaderMap) -> Option<Arc<str>> {
    match auth.mode {
        AuthMode::Header => headers
            .get(&auth.header.name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= MAX_USER_ID)
            .map(Arc::from),
        AuthMode::None | AuthMode::Jwt | AuthMode::Upstream => None,
    }
}
