//! Who may read which channel. Kept apart from the socket loop so SSE and WebSocket share one rule.

use std::sync::Arc;

use http::{HeaderMap, Response, StatusCode};

use super::handshake::origin_allowed;
use super::protocol::{ErrorCode, ProtocolError};
use crate::auth::{AuthError, Credentials};
use crate::body::{Body, json_error};
use crate::config::Config;
use crate::state::{Settings, Shared, SocketSlot};

/// Channels of collaboration rooms; client broadcasts are allowed only there.
pub const ROOM_PREFIX: &str = "room:";

/// `user:{id}` channels are private to that user; everything else is readable by any caller the
/// origin check and authentication let in.
pub fn may_read(
    channel: &str,
    user: Option<&str>,
    user_prefix: &str,
    op: &str,
) -> Result<(), ProtocolError> {
    match channel.strip_prefix(user_prefix) {
        Some(owner) if Some(owner) != user => Err(ProtocolError::new(
            ErrorCode::Forbidden,
            format!("{channel:?} belongs to another user"),
            Some(op),
        )),
        _ => Ok(()),
    }
}

/// The checks every socket and event stream passes before anything is allocated for it: the
/// replica is not draining, the Origin is allowed, and a connection slot is free.
/// Who is opening a socket or stream: credentials from headers or the token query parameter.
/// With authentication configured, an unidentified caller is refused (401) before any upgrade.
#[allow(clippy::result_large_err)] // refusals are rare; boxing would cost each one an allocation
pub async fn identify(
    shared: &Shared,
    settings: &Settings,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(Option<Arc<str>>, Credentials), Response<Body>> {
    let creds = Credentials::from_request(
        headers,
        query,
        Some(&settings.config.auth.token_query_param),
    );
    match settings
        .auth
        .identify(headers, &creds, &shared.upstream)
        .await
    {
        Ok(Some(user)) => Ok((Some(user), creds)),
        Ok(None) if !settings.auth.required() => Ok((None, creds)),
        Ok(None) => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in first: sockets and event streams need an authenticated user",
        )),
        Err(AuthError::Invalid(_)) => Err(json_error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the credentials were refused",
        )),
        Err(AuthError::Unavailable(e)) => {
            tracing::warn!(error = %e, "cannot identify a socket caller");
            Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "identity cannot be checked right now; retry",
            ))
        }
    }
}

#[allow(clippy::result_large_err)] // refused handshakes are rare; boxing would cost every refusal an allocation for nothing
pub fn admit(
    shared: &Arc<Shared>,
    cfg: &Config,
    headers: &HeaderMap,
) -> Result<SocketSlot, Response<Body>> {
    if shared.is_draining() {
        return Err(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this replica is shutting down; reconnect elsewhere",
        ));
    }
    if !origin_allowed(&cfg.websocket.allowed_origins, headers) {
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this Origin may not open sockets or event streams here (websocket.allowed_origins)",
        ));
    }
    shared
        .try_open_socket(cfg.limits.max_connections)
        .ok_or_else(|| {
            shared.metrics.ws_dropped("max_connections");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                "connection limit reached (limits.max_connections)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_channels_are_private() {
        assert!(may_read("user:7", Some("7"), "user:", "subscribe").is_ok());
        assert!(may_read("user:7", Some("8"), "user:", "subscribe").is_err());
        assert!(may_read("user:7", None, "user:", "subscribe").is_err());
        assert!(may_read("projects", None, "user:", "subscribe").is_ok());
    }
}
