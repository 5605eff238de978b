//! The one response body type every handler returns, and small constructors for our own answers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Streams proxied bodies and carries our own small answers alike.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A request body hyper read; one without bytes (most reads) becomes `empty()`, with nothing to
/// poll.
pub fn from_incoming(body: hyper::body::Incoming) -> Body {
    if http_body::Body::is_end_stream(&body) {
        empty()
    } else {
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
    }
}

/// `{"error": code, "message": …}` with `x-syncgate-error: code`, so a client can tell our answers
/// from the upstream's.
pub fn json_error(status: StatusCode, code: &'static str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert("x-syncgate-error", HeaderValue::from_static(code));
    resp
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
