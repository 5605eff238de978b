//! Accepting a WebSocket on our own paths: checks first (draining, origin, version, identity,
//! connection limit), then a 101 answer and the upgraded connection handed to `connection::serve`.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::access;
use super::connection::{self, Session};
use super::outlet::{Outlet, OutletIo};
use crate::body::{Body, empty, json_error};
use crate::config::OriginPolicy;
use crate::state::Shared;

/// Which of our socket paths was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketKind {
    Generic,
    /// Auto-subscribed to the caller's own `user:{id}`.
    Notifications,
    /// `room_path` with its room name: joins `room:{room}` on connect.
    Room(String),
}

/// `Connection: upgrade` + `Upgrade: websocket`, whatever the path.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// Cross-site WebSocket hijacking defence: a browser always sends `Origin`, so a foreign page's
/// socket is refused; clients without `Origin` (tools, servers) are not browsers and pass.
pub fn origin_allowed(policy: &OriginPolicy, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    match policy {
        OriginPolicy::Any => true,
        OriginPolicy::List(allowed) => allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)),
        OriginPolicy::SameHost => {
            let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| !host.is_empty() && host.eq_ignore_ascii_case(origin_host))
        }
    }
}

/// Socket buffers sized for many mostly-idle connections: the library defaults (128 KiB each way)
/// would cost far more per socket than the frames we send.
fn socket_config(max_message_bytes: usize) -> WebSocketConfig {
    let mut cfg = WebSocketConfig::default();
    // tungstenite zero-fills up to this much before every read attempt, so it is kept small:
    // clients send short commands.
    cfg.read_buffer_size = 512;
    // Frames fed in one batch go out in one write up to this size (0 wrote each frame alone).
    cfg.write_buffer_size = 2 * 1024;
    cfg.max_write_buffer_size = (max_message_bytes * 4).max(1 << 20);
    cfg.max_message_size = Some(max_message_bytes);
    cfg.max_frame_size = Some(max_message_bytes);
    cfg
}

pub async fn accept(
    mut req: Request<Body>,
    shared: Arc<Shared>,
    kind: SocketKind,
) -> Response<Body> {
    let settings = shared.settings();
    let cfg = &settings.config;
    let slot = match access::admit(&shared, cfg, req.headers()) {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let headers = req.headers();
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut resp = json_error(
            StatusCode::UPGRADE_REQUIRED,
            "bad_websocket_version",
            "only WebSocket version 13 is supported",
        );
        resp.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return resp;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_websocket_key",
            "missing Sec-WebSocket-Key",
        );
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let (user, creds) = match access::identify(&shared, &settings, headers, req.uri().query()).await
    {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    let mut auto_channels = Vec::new();
    let mut room = None;
    match kind {
        SocketKind::Generic => {}
        SocketKind::Notifications => {
            let Some(user) = &user else {
                return json_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the notifications socket needs an authenticated user",
                );
            };
            auto_channels.push(format!("{}{}", cfg.channels.user_prefix, user));
        }
        SocketKind::Room(name) => room = Some(name),
    }
    let ws_config = socket_config(cfg.limits.max_message_bytes);
    let session = Session {
        client_id: Arc::from(uuid::Uuid::now_v7().simple().to_string()),
        user,
        auto_channels,
        creds,
        room,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(settings);
    tokio::spawn(async move {
        let _slot = slot;
        match on_upgrade.await {
            // The server's own socket type: the outlet can then write to it directly.
            Ok(upgraded) => match upgraded.downcast::<crate::drained::ServedIo>() {
                Ok(parts) => {
                    // Copied out, so hyper's whole read buffer, which `read_buf` is a slice of,
                    // is not kept for the life of the socket.
                    let mut early = parts.read_buf.to_vec();
                    drop(parts.read_buf);
                    let (stream, unread) = parts.io.into_inner().into_inner();
                    early.extend_from_slice(&unread);
                    let stream = Arc::new(stream);
                    let metrics = Arc::clone(&shared.metrics);
                    let outlet = Arc::new(Outlet::new(Some(Arc::clone(&stream)), metrics));
                    let io = OutletIo::new(stream, Arc::clone(&outlet));
                    let ws = WebSocketStream::from_partially_read(
                        io,
                        early,
                        Role::Server,
                        Some(ws_config),
                    )
                    .await;
                    connection::serve(ws, shared, session, outlet).await;
                }
                Err(upgraded) => {
                    // Not the type `server` serves: every event goes through the socket's task.
                    tracing::warn!("websocket served without direct writes");
                    let outlet = Arc::new(Outlet::new(None, Arc::clone(&shared.metrics)));
                    let io = TokioIo::new(upgraded);
                    let ws =
                        WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config)).await;
                    connection::serve(ws, shared, session, outlet).await;
                }
            },
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_host_policy_compares_origin_with_host() {
        let p = OriginPolicy::SameHost;
        assert!(origin_allowed(
            &p,
            &headers(&[
                ("host", "app.test:8080"),
                ("origin", "http://app.test:8080")
            ])
        ));
        assert!(!origin_allowed(
            &p,
            &headers(&[("host", "app.test:8080"), ("origin", "https://evil.test")])
        ));
        assert!(
            origin_allowed(&p, &headers(&[("host", "app.test:8080")])),
            "no Origin: not a browser"
        );
    }

    #[test]
    fn listed_origins_only() {
        let p = OriginPolicy::List(vec!["https://app.example.com".into()]);
        assert!(origin_allowed(
            &p,
            &headers(&[("origin", "https://app.example.com")])
        ));
        assert!(!origin_allowed(
            &p,
            &headers(&[("origin", "https://app.example.com.evil.test")])
        ));
    }

    #[test]
    fn upgrade_detection_reads_token_lists() {
        assert!(is_websocket_upgrade(&headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket")
        ])));
        assert!(!is_websocket_upgrade(&headers(&[(
            "connection",
            "keep-alive"
        )])));
    }
}
