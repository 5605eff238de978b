//! The admin listener: health, readiness, metrics and the publish API.
//!
//! Bound to loopback by default: it answers to the kubelet, Prometheus and the backend, never to
//! browsers.

mod counter;
mod histogram;
pub mod metrics;

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::body::{Body, full, json, json_error};
use crate::events::{EmitContext, external, now_millis};
use crate::publisher::publish_now;
use crate::state::Shared;

/// Largest `POST /publish` body accepted.
const MAX_PUBLISH_BODY: usize = 1024 * 1024;

pub async fn handle(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &json!({"status": "ok"}))
        }
        (&Method::GET | &Method::HEAD, "/readyz") => readiness(&shared),
        (&Method::GET, "/metrics") => {
            shared.metrics.set_broker_up(shared.broker.is_up());
            let mut resp = Response::new(full(shared.metrics.encode()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        (&Method::POST, "/publish") => publish(req, &shared).await,
        (_, "/healthz" | "/readyz" | "/metrics" | "/publish") => json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "see SPEC: GET /healthz, /readyz, /metrics; POST /publish",
        ),
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "admin endpoints: /healthz, /readyz, /metrics, /publish",
        ),
    };
    Ok(resp)
}

fn readiness(shared: &Shared) -> Response<Body> {
    let broker_up = shared.broker.is_up();
    shared.metrics.set_broker_up(broker_up);
    let upstream_up = shared.upstream_up();
    let reason = if shared.is_draining() {
        Some("draining")
    } else if !upstream_up {
        Some("upstream_unavailable")
    } else if !broker_up {
        Some("broker_down")
    } else {
        None
    };
    let body = json!({"ready": reason.is_none(), "reason": reason, "upstream": upstream_up, "broker": broker_up});
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}

async fn publish(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let settings = shared.settings();
    let Some(token) = settings.config.publish.token.clone() else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "publish_disabled",
            &format!(
                "publishing is disabled: set the {} environment variable",
                settings.config.publish.token_env
            ),
        );
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        let mut resp = json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let body = match Limited::new(req.into_body(), MAX_PUBLISH_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "publish bodies are limited to 1 MiB",
            );
        }
    };
    let ctx = EmitContext {
        actor: None,
        origin_client: None,
        ts: now_millis(),
    };
    let draft = match external::parse(&body, &ctx) {
        Ok(d) => d,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    match publish_now(&*shared.broker, &shared.metrics, draft).await {
        Some(published) => {
            let first = published.first();
            json(
                StatusCode::ACCEPTED,
                &json!({"channel": first.map(|p| &p.channel), "seq": first.map(|p| p.seq), "published": published}),
            )
        }
        None => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "broker_unavailable",
            "the broker could not take the event; retry",
        ),
    }
}
