//! The public listener's request pipeline.
//!
//! A request's life, in named phases over one `Exchange`:
//! 1. `route`: our own socket and SSE paths are served here; everything else is forwarded;
//! 2. `upstream_request`: hop-by-hop headers off, `X-Forwarded-*` on, the event plan decided;
//! 3. `upstream_response`: `X-Sync-Event` published, `Cache-Control` rewritten, `X-Sync-Position`;
//! 4. `response_body`: the body streams to the client while a tap keeps what the event needs;
//! 5. logging: one metric observation and one trace line per request.

pub mod cache_control;
pub mod headers;
pub mod link;
pub mod reads;
mod tap;
pub mod upgrade;
pub mod upstream;
pub mod verbatim;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;

use crate::auth::Credentials;
use crate::body::{Body, BoxError, empty, json_error};
use crate::events::{BodyPrefix, EmitContext, EventPlan, Text, external, now_millis};
use crate::server::ClientConn;
use crate::state::{Settings, Shared};
use crate::ws::handshake::{self, SocketKind, is_websocket_upgrade};
use crate::ws::sse;
use upstream::UpstreamError;
use verbatim::Verbatim;

const X_SYNC_CLIENT: HeaderName = HeaderName::from_static("x-sync-client");
const X_SYNC_EVENT: HeaderName = HeaderName::from_static("x-sync-event");
const X_SYNC_POSITION: HeaderName = HeaderName::from_static("x-sync-position");

/// Longest `X-Sync-Client` honoured; longer values are ignored rather than stored.
const MAX_CLIENT_ID: usize = 128;

/// What the pipeline answers: the response, and the upstream's header lines when they pass on
/// as the bytes they came in (`verbatim`; the response's own map is then empty). They travel
/// beside the response rather than in its extensions, whose map costs three allocations per
/// answer.
pub struct Answer {
    pub response: Response<Body>,
    /// Boxed: the answer is moved several times on its way out, and a bigger one is copied
    /// with `memcpy` each time (more than the allocation costs).
    pub lines: Option<Box<Verbatim>>,
}

impl From<Response<Body>> for Answer {
    fn from(response: Response<Body>) -> Answer {
        Answer {
            response,
            lines: None,
        }
    }
}

impl Answer {
    /// The answer as one response, its verbatim lines moved into the map (for hyper, which
    /// writes the map only).
    pub fn into_response(self) -> Response<Body> {
        let mut response = self.response;
        if let Some(lines) = self.lines {
            let additions = std::mem::take(response.headers_mut());
            *response.headers_mut() = lines.fold(additions);
        }
        response
    }
}

/// The pipeline's entry point, for `front` and for the connections it hands to hyper: never
/// fails, every error is an HTTP answer. `lines`: the request's header lines `front` kept as
/// bytes, beside the few in its map (see `verbatim`).
///
/// Borrows what the connection holds: a clone of `shared` per request wrote its reference count,
/// a line every loop writes, on every request.
pub async fn handle(
    req: Request<Body>,
    lines: Option<Box<Verbatim>>,
    shared: &Arc<Shared>,
    client: &ClientConn,
) -> Result<Answer, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let answer = route(req, lines, shared, client).await;
    let status = answer.response.status().as_u16();
    shared
        .metrics
        .observe_http(&method, status, start.elapsed());
    tracing::debug!(%method, status, elapsed_us = start.elapsed().as_micros() as u64, "request");
    Ok(answer)
}

async fn route(
    req: Request<Body>,
    lines: Option<Box<Verbatim>>,
    shared: &Arc<Shared>,
    client: &ClientConn,
) -> Answer {
    let head = survey(&req, lines.as_deref());
    if head.too_large {
        return json_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "request headers are limited to 64 KiB",
        )
        .into();
    }
    // Loaded, not cloned: see `Shared::settings_now`.
    let settings = shared.settings_now();
    let cfg = &settings.config;
    let path = req.uri().path();
    let socket_kind = if path == cfg.websocket.path {
        Some(SocketKind::Generic)
    } else if path == cfg.websocket.notifications_path {
        Some(SocketKind::Notifications)
    } else {
        room_name(path, &cfg.websocket.room_path).map(SocketKind::Room)
    };
    if socket_kind
        .as_ref()
        .is_some_and(|k| matches!(k, SocketKind::Room(n) if n.is_empty()))
    {
        return json_error(StatusCode::NOT_FOUND, "bad_room", "invalid room name").into();
    }
    if let Some(kind) = socket_kind {
        let req = whole(req, lines);
        if !is_websocket_upgrade(req.headers()) {
            return json_error(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                "this path serves WebSockets only",
            )
            .into();
        }
        return handshake::accept(req, Arc::clone(shared), kind)
            .await
            .into();
    }
    if path == cfg.sse.path && req.method() == Method::GET {
        return sse::serve(whole(req, lines), Arc::clone(shared))
            .await
            .into();
    }
    forward(req, lines, head, shared, &settings, client).await
}

/// The request with every header in its map, for what reads headers by name (our own socket and
/// SSE endpoints, the pooled client).
fn whole<B>(mut req: Request<B>, lines: Option<Box<Verbatim>>) -> Request<B> {
    if let Some(lines) = lines {
        let read = std::mem::take(req.headers_mut());
        *req.headers_mut() = lines.fold(read);
    }
    req
}

/// What the pipeline asks of a request's headers, answered in the one pass that sizes the head:
/// a request has few headers, and a hashed lookup per question cost more than the whole pass.
struct RequestHead {
    /// hyper bounds a head only while it is still incomplete after a read, so a large head that
    /// arrives in one read gets through; this check is exact.
    too_large: bool,
    upgrade: bool,
    /// The first `X-Sync-Client`, when it is usable as a client id.
    origin_client: Option<Text>,
}

fn survey<B>(req: &Request<B>, lines: Option<&Verbatim>) -> RequestHead {
    let mut size = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    size += lines.map_or(0, Verbatim::size);
    let mut head = RequestHead {
        too_large: false,
        upgrade: false,
        origin_client: None,
    };
    let mut client_seen = false;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len() + 4;
        if *name == header::UPGRADE {
            head.upgrade = true;
        } else if *name == X_SYNC_CLIENT && !client_seen {
            client_seen = true;
            head.origin_client = value
                .to_str()
                .ok()
                .filter(|v| !v.is_empty() && v.len() <= MAX_CLIENT_ID)
                .map(Text::from);
        }
    }
    head.too_large = size > crate::server::MAX_HEAD_BYTES;
    head
}

/// The room of a `room_path` request (`/api/ws/room/{room}`), percent-decoded; `Some("")` when the
/// path has the room shape but the name is not a valid channel name.
fn room_name(path: &str, room_path: &crate::config::RoomPath) -> Option<String> {
    let name = path
        .strip_prefix(room_path.prefix.as_str())?
        .strip_suffix(room_path.suffix.as_str())?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .ok()?;
    let channel = format!("{}{decoded}", crate::ws::access::ROOM_PREFIX);
    Some(if crate::ws::protocol::valid_channel(&channel) {
        decoded.into_owned()
    } else {
        String::new()
    })
}

/// Everything the later phases need to know about the request once it has been handed upstream.
struct Exchange {
    method: Method,
    path: String,
    plan: Option<Arc<EventPlan>>,
    /// A GET's remembered facts, and its `X-Sync-Position` as read before it went upstream.
    read: Option<(reads::ReadFacts, Option<HeaderValue>)>,
    actor: Option<Text>,
    origin_client: Option<Text>,
    client_upgrade: Option<OnUpgrade>,
}

async fn forward(
    req: Request<Body>,
    lines: Option<Box<Verbatim>>,
    head: RequestHead,
    shared: &Arc<Shared>,
    settings: &Settings,
    client: &ClientConn,
) -> Answer {
    let cfg = &settings.config;
    let is_upgrade = head.upgrade;
    // An upgrade goes through the pooled client, which writes the map alone.
    let (req, lines) = if is_upgrade {
        (whole(req, lines), None)
    } else {
        (req, lines)
    };
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let plan = if is_upgrade {
        None
    } else {
        settings.matcher.plan(&parts.method, &path)
    };
    // Only a mutation that may emit needs to know its actor; GETs never pay for identity.
    let identity = plan.as_ref().filter(|_| settings.auth.required()).map(|_| {
        let headers = Verbatim::joined(lines.as_deref(), &parts.headers);
        let creds = Credentials::from_request(&headers, None, None);
        (headers, creds)
    });
    let mut ex = Exchange {
        plan,
        actor: None,
        origin_client: head.origin_client,
        client_upgrade: if is_upgrade {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        },
        method: parts.method.clone(),
        path,
        read: None,
    };
    if ex.method == Method::GET && !is_upgrade {
        let facts = settings
            .reads
            .facts(&ex.path, &cfg.cache_control.rules, &settings.matcher);
        // Read before the request goes upstream, never after its answer: an event numbered in
        // between may be for a change the answer does not show, and a client that resumed after
        // it would never see it. Read before, every event at or below the position is for a
        // change the upstream had made when it read; later ones are replayed, at worst twice.
        let position = match &facts.position {
            Some(position) => position.read(shared.broker.as_ref()).await,
            None => None,
        };
        ex.read = Some((facts, position));
    }

    // Phase: upstream request. Plain requests go in origin form over the client connection's own
    // upstream connection; upgrades take a pooled one, which the tunnel then keeps.
    let Some(uri) = upstream_uri(&parts.uri, &cfg.upstream, is_upgrade) else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "request target cannot be forwarded",
        )
        .into();
    };
    parts.uri = uri;
    parts.version = http::Version::HTTP_11;
    headers::strip_hop_by_hop(&mut parts.headers, is_upgrade);
    // The client connection's own link writes these with the head; the pooled client needs them
    // in the map.
    if is_upgrade {
        headers::add_forwarded(&mut parts.headers, &client.peer_ip);
        if !parts.headers.contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(cfg.upstream.authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
    }
    // An upgrade's body is the tunnel, not a request body.
    let body: Body = if is_upgrade { empty() } else { body };
    // The link reads the request's parts where they are: moving them into a request and out
    // again costs a copy each way.
    // The rare parts (an identity lookup, an upgrade through the pooled client) are boxed: their
    // futures are several times the size of the common path's, and every future here is moved a
    // few times between the loop and hyper, at a cost in copies that grows with its size. The
    // common path awaits the link's future where it is made: held in a variable first, it was
    // copied whole (about 2 KiB) into the place it is awaited from, on every request.
    let sent = if is_upgrade {
        let upstream_req = Request::from_parts(parts, body);
        Box::pin(
            shared
                .upstream
                .send(upstream_req, cfg.upstream.request_timeout),
        )
        .await
        .map(|resp| {
            Answer::from(resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
        })
    } else if let Some((headers, creds)) = identity.as_ref() {
        // The actor is looked up while the upstream works on the request, adding no latency.
        let identify = async {
            match Box::pin(settings.auth.identify(headers, creds, &shared.upstream)).await {
                Ok(user) => user,
                Err(e) => {
                    tracing::warn!(error = %e, "actor unknown for this mutation");
                    None
                }
            }
        };
        let send = client
            .link
            .send(&parts, body, lines, &cfg.upstream, &client.peer_ip);
        let (sent, actor) = tokio::join!(send, identify);
        ex.actor = actor.map(Text::from);
        sent
    } else {
        client
            .link
            .send(&parts, body, lines, &cfg.upstream, &client.peer_ip)
            .await
    };
    match sent {
        Ok(answer) => upstream_response(answer, ex, shared, settings),
        Err(e) => upstream_failure(shared, &e).into(),
    }
}

/// The target as the upstream sees it: `base_path` prefixed, in origin form for the client
/// connection's own link, absolute for the pooled client. `None` when it cannot be expressed.
fn upstream_uri(
    uri: &Uri,
    upstream: &crate::config::UpstreamConfig,
    absolute: bool,
) -> Option<Uri> {
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if absolute {
        return format!(
            "http://{}{}{}",
            upstream.authority, upstream.base_path, path_and_query
        )
        .parse()
        .ok();
    }
    if upstream.base_path.is_empty() {
        if uri.scheme().is_none() && uri.authority().is_none() {
            return Some(uri.clone());
        }
        return path_and_query.parse().ok();
    }
    format!("{}{}", upstream.base_path, path_and_query)
        .parse()
        .ok()
}

/// One place turns upstream failures into answers: 504 for a timeout, 502 for everything else.
fn upstream_failure(shared: &Shared, e: &UpstreamError) -> Response<Body> {
    shared.metrics.upstream_error(e.kind());
    tracing::warn!(error = %e, kind = e.kind(), "upstream failed");
    match e {
        UpstreamError::Timeout(_) => json_error(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            &e.to_string(),
        ),
        _ => json_error(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            &e.to_string(),
        ),
    }
}

fn upstream_response(
    answer: Answer,
    ex: Exchange,
    shared: &Arc<Shared>,
    settings: &Settings,
) -> Answer {
    let Answer {
        response: mut resp,
        mut lines,
    } = answer;
    let cfg = &settings.config;
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = ex.client_upgrade {
            let upstream = resp.extensions_mut().remove::<OnUpgrade>();
            upgrade::tunnel(client, upstream);
        }
        let (mut parts, _) = resp.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, true);
        return Response::from_parts(parts, empty()).into();
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    let present = match &lines {
        // An answer with none of the headers the phases edit in place passes its lines on as
        // bytes (its map is empty); of those, only a `Cache-Control` matters here.
        Some(lines) => ResponseHead {
            cache_control: lines.has_cache_control(),
            ..ResponseHead::default()
        },
        None => ResponseHead::survey(&parts.headers),
    };
    // When the application publishes for this response itself, its events replace the automatic one.
    let app_published = present.sync_event;
    if app_published {
        publish_sync_event_headers(&mut parts.headers, &ex, shared);
    }
    let rules = &cfg.cache_control.rules;
    let (cache_rule, position) = match ex.read {
        Some((facts, position)) => (facts.cache_rule, position),
        None => (cache_control::rule_for(rules, &ex.method, &ex.path), None),
    };
    // Verbatim lines take what the phases add beside them, so that their answer needs no map.
    if let Some(value) = cache_rule
        .and_then(|i| rules.get(i))
        .and_then(|rule| cache_control::replacement(rule, present.cache_control))
    {
        match &mut lines {
            Some(lines) => lines.cache_control = Some(value.clone()),
            None => {
                parts.headers.insert(header::CACHE_CONTROL, value.clone());
            }
        }
    }
    if let Some(position) = position.filter(|_| status.is_success()) {
        match &mut lines {
            // Verbatim lines are never CORS (`link::wire` maps those): nothing to expose.
            Some(lines) => lines.position = Some(position),
            None => stamp_position(&mut parts.headers, position, present.cors),
        }
    }
    let body = match ex.plan {
        Some(plan) if status.is_success() && !app_published => emit_on_success(
            plan,
            ex.actor,
            ex.origin_client,
            now_millis(),
            body,
            shared,
            cfg.limits.event_body_max_bytes,
        ),
        _ => body,
    };
    Answer {
        response: Response::from_parts(parts, body),
        lines,
    }
}

/// Which of the headers the answer's phases ask about the upstream's answer carries, found in one
/// pass over its names (standard names compare as a tag) rather than a hashed lookup each.
#[derive(Default)]
struct ResponseHead {
    sync_event: bool,
    cache_control: bool,
    /// `Access-Control-Allow-Origin`: the answer is CORS.
    cors: bool,
}

impl ResponseHead {
    fn survey(headers: &HeaderMap) -> ResponseHead {
        let mut head = ResponseHead::default();
        for name in headers.keys() {
            if *name == header::CACHE_CONTROL {
                head.cache_control = true;
            } else if *name == header::ACCESS_CONTROL_ALLOW_ORIGIN {
                head.cors = true;
            } else if *name == X_SYNC_EVENT {
                head.sync_event = true;
            }
        }
        head
    }
}

/// `X-Sync-Event` is the application's own way to publish (the caller has seen one); it never
/// reaches the client.
fn publish_sync_event_headers(headers: &mut HeaderMap, ex: &Exchange, shared: &Shared) {
    let ts = now_millis();
    let values: Vec<HeaderValue> = headers.get_all(&X_SYNC_EVENT).iter().cloned().collect();
    headers.remove(&X_SYNC_EVENT);
    let ctx = EmitContext {
        actor: ex.actor.as_ref(),
        origin_client: ex.origin_client.as_ref(),
        ts,
    };
    for value in values {
        match external::parse(value.as_bytes(), &ctx) {
            Ok(draft) => shared.publisher.publish(draft),
            Err(e) => tracing::warn!(path = %ex.path, error = %e, "ignored X-Sync-Event header"),
        }
    }
}

/// `X-Sync-Position: projects=17` closes the fetch-then-subscribe race (SPEC).
fn stamp_position(headers: &mut HeaderMap, value: HeaderValue, cors: bool) {
    headers.insert(X_SYNC_POSITION, value);
    if cors {
        let exposed = match headers
            .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
            .and_then(|v| v.to_str().ok())
        {
            Some(prev) if !prev.is_empty() => format!("{prev}, X-Sync-Position"),
            _ => "X-Sync-Position".to_owned(),
        };
        if let Ok(v) = HeaderValue::from_str(&exposed) {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

/// Emits at once when the event needs nothing from the body; otherwise when the body has streamed.
fn emit_on_success(
    plan: Arc<EventPlan>,
    actor: Option<Text>,
    origin_client: Option<Text>,
    ts: u64,
    body: Body,
    shared: &Arc<Shared>,
    limit: usize,
) -> Body {
    let wants_body = plan.wants_body();
    let publisher = shared.publisher.clone();
    let emit = move |bytes: &[u8], complete: bool| {
        let ctx = EmitContext {
            actor: actor.as_ref(),
            origin_client: origin_client.as_ref(),
            ts,
        };
        if let Some(draft) = plan.build(BodyPrefix { bytes, complete }, &ctx) {
            publisher.publish(draft);
        }
    };
    if !wants_body {
        emit(&[], true);
        return body;
    }
    tap::Tap::new(body, limit, emit).boxed_unsync()
}
