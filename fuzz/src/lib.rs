//! The six fuzz entry points, shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and the stable
//! regression test (`tests/fuzz_regressions.rs`, which includes this file as a module), so a saved
//! input replays on stable exactly as the fuzzer ran it.
//!
//! Each function takes raw fuzzer bytes, decodes them the same way every time, calls syncgate's public
//! API and checks a few cheap invariants. An `Err` from syncgate is an expected answer to bad input;
//! only a panic, a hang or a broken invariant is a finding. This file depends on `syncgate` and `std`
//! only, so the root crate's test can compile it without new dev-dependencies.

use std::sync::OnceLock;

use bytes::BytesMut;

use http::Method;
use syncgate::config::Config;
use syncgate::events::template::{Part, Template, Vars};
use syncgate::events::{BodyPrefix, EmitContext, EventDraft, EventMatcher, Text};
use syncgate::front::head::{self, Parsed};
use syncgate::proxy::link::{Lines, response_head};
use syncgate::ws::protocol::{self, ClientOp, MAX_CHANNEL_LEN};

/// (a) Config loader: arbitrary UTF-8 as a YAML file. A config that loads is then used once, so a
/// value that passes validation but breaks the request path is found too.
pub fn config_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_yaml_str(text, "fuzz.yaml") {
        Ok(config) => {
            let matcher = EventMatcher::new(&config.events);
            let _ = syncgate::config::render_rule_table(&config);
            for (method, path) in [
                (Method::POST, "/api/projects"),
                (Method::PUT, "/api/projects/1"),
                (Method::DELETE, "/api/projects/1/tasks/2"),
            ] {
                if let Some(plan) = matcher.plan(&method, path) {
                    let body = BodyPrefix {
                        bytes: br#"{"id":1,"name":"n","owner":{"id":"u"}}"#,
                        complete: true,
                    };
                    let _ = plan.build(body, &EmitContext::default());
                }
                let _ = matcher.read_channels(path);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// (b) Socket message parser: arbitrary UTF-8 as one client text frame.
pub fn socket_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match protocol::parse(text) {
        Ok(ClientOp::Subscribe { channel, .. })
        | Ok(ClientOp::Unsubscribe { channel })
        | Ok(ClientOp::Publish { channel, .. }) => {
            assert!(
                protocol::valid_channel(&channel) && channel.len() <= MAX_CHANNEL_LEN,
                "parse accepted an invalid channel {channel:?}"
            );
        }
        Ok(ClientOp::Ping) => {}
        Err(e) => {
            // The error frame the connection would send must serialize.
            let frame = protocol::ServerMsg::from(&e).to_json();
            assert!(!frame.is_empty(), "error frame did not serialize: {e:?}");
        }
    }
}

/// (c) Rule templates. Input: `template text` `\0` `value` `\0` `value` … The values answer the
/// template's variables (which name gets which value, or none, is a fixed hash of the name).
pub fn template(data: &[u8]) {
    let (source, rest) = split_nul(data);
    let source = String::from_utf8_lossy(source);
    let Ok(template) = Template::parse(&source) else {
        return;
    };
    assert_eq!(
        template.as_str(),
        source,
        "as_str must give the source back"
    );
    assert_eq!(
        Template::parse(template.as_str()).as_ref(),
        Ok(&template),
        "parse(as_str) must round-trip"
    );
    for pair in template.parts().windows(2) {
        assert!(
            !matches!(pair, [Part::Lit(_), Part::Lit(_)]),
            "adjacent literals in {source:?}"
        );
    }
    let _ = template.captures().count();
    let _ = template.uses_body();

    let values: Vec<String> = rest
        .map(|rest| {
            rest.split(|&b| b == 0)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        })
        .unwrap_or_default();
    let vars = FuzzVars { values };
    let rendered = template.render(&vars);
    // An independent rendering from the parts: the fast path for a lone literal must agree.
    let expected: Option<String> = template
        .parts()
        .iter()
        .map(|part| match part {
            Part::Lit(text) => Some(text.clone()),
            Part::Capture(name) => vars.capture(name).map(str::to_owned),
            Part::Body(path) => vars.body_field(path),
            Part::User => vars.user().map(str::to_owned),
        })
        .collect();
    assert_eq!(
        rendered, expected,
        "render disagrees with the parts of {source:?}"
    );
}

/// `Vars` answered from fuzzer bytes: a name hashes to one value or to "no value".
struct FuzzVars {
    values: Vec<String>,
}

impl FuzzVars {
    fn pick(&self, key: &str) -> Option<&str> {
        let hash = key
            .bytes()
            .fold(key.len(), |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
        self.values
            .get(hash % (self.values.len() + 1))
            .map(String::as_str)
    }
}

impl Vars for FuzzVars {
    fn capture(&self, name: &str) -> Option<&str> {
        self.pick(name)
    }
    fn body_field(&self, path: &[String]) -> Option<String> {
        self.pick(&format!("body.{}", path.join(".")))
            .map(str::to_owned)
    }
    fn user(&self) -> Option<&str> {
        self.pick("{user}")
    }
}

/// (d) The auto-event path parser and explicit rules, through `EventMatcher`. Input: a method byte,
/// a flags byte, then `path` `\0` `response body`. Flags: bits 0-1 pick the matcher (`matchers`),
/// bit 2 = body complete, bit 3 = an actor, bit 4 = an `X-Sync-Client`.
pub fn rest_path(data: &[u8]) {
    let [method_byte, flags, rest @ ..] = data else {
        return;
    };
    let methods = methods();
    let method = &methods[usize::from(*method_byte) % methods.len()];
    let matchers = matchers();
    let matcher = &matchers[usize::from(flags & 0b11) % matchers.len()];
    let (path, body) = split_nul(rest);
    let path = String::from_utf8_lossy(path);
    let body = body.unwrap_or_default();

    let read = matcher.read_channels(&path);
    assert_distinct_nonempty(&read, &path);

    let Some(plan) = matcher.plan(method, &path) else {
        return;
    };
    assert!(
        !matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::CONNECT
        ),
        "a safe method {method} got a plan for {path:?}"
    );
    let _ = plan.wants_body();
    let (actor, origin) = (Text::from("user-7"), Text::from("tab-1"));
    let ctx = EmitContext {
        actor: (flags & 0b1000 != 0).then_some(&actor),
        origin_client: (flags & 0b1_0000 != 0).then_some(&origin),
        ts: 1,
    };
    let prefix = BodyPrefix {
        bytes: body,
        complete: flags & 0b100 != 0,
    };
    if let Some(draft) = plan.build(prefix, &ctx) {
        check_draft(&draft, &ctx, &path);
    }
}

fn check_draft(draft: &EventDraft, ctx: &EmitContext<'_>, path: &str) {
    assert!(
        !draft.event_type.is_empty(),
        "empty event type for {path:?}"
    );
    assert!(
        !draft.channels.is_empty(),
        "an event with no channel for {path:?}"
    );
    assert_distinct_nonempty(&draft.channels, path);
    assert_eq!(draft.actor.as_ref(), ctx.actor);
    assert_eq!(draft.origin_client.as_ref(), ctx.origin_client);
    assert_eq!(draft.ts, ctx.ts);
    // The envelope is written by hand: whatever the body held, it must be one line of JSON
    // carrying the draft's strings and data unchanged.
    let frame = syncgate::events::envelope::serialize(draft, &draft.channels[0], 7, "id-1");
    assert!(
        !frame.contains('\n'),
        "a line break in the frame for {path:?}: {frame}"
    );
    let v: serde_json::Value = serde_json::from_str(&frame)
        .unwrap_or_else(|e| panic!("invalid envelope for {path:?} ({e}): {frame}"));
    assert_eq!(v["type"].as_str(), Some(&*draft.event_type));
    assert_eq!(v["resource_id"].as_str(), draft.resource_id.as_deref());
    assert_eq!(v["data"], draft.data.to_value());
}

/// Documented by the matcher: channels are deduplicated (one `seq` per change) and never empty.
fn assert_distinct_nonempty<C: AsRef<str> + PartialEq>(channels: &[C], path: &str) {
    for (i, channel) in channels.iter().enumerate() {
        let c = channel.as_ref();
        assert!(!c.is_empty(), "empty channel for {path:?}");
        assert!(
            syncgate::ws::protocol::valid_channel(c),
            "channel {c:?} for {path:?} cannot be subscribed to"
        );
        assert!(
            !channels[..i].contains(channel),
            "channel {c:?} twice for {path:?}"
        );
    }
}

fn methods() -> &'static [Method] {
    static METHODS: OnceLock<Vec<Method>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let mut all = vec![
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ];
        all.extend(Method::from_bytes(b"PURGE"));
        all
    })
}

/// Explicit rules exercising captures (one may be empty), `{body.x}` (nested and indexed), `{user}`,
/// an `id` pointer and `data`, in front of the convention under `/api/`.
pub const RULES_YAML: &str = r#"
events:
  auto:
    prefix: "/api/"
    exclude: ["^/api/auth/", "/internal(/|$)"]
  rules:
    - methods: [POST]
      path: "^/api/projects/?$"
      type: "{body.kind}_created"
      channels: ["projects", "user:{user}", "org:{body.org.id}"]
      invalidate: [["projects"], ["project", "{body.id}"]]
      id: "/id"
      data: ["id", "name"]
    - methods: [PUT, PATCH, DELETE]
      path: "^/api/projects/(?P<id>[^/]+)/members/(?P<member>[^/]+)$"
      type: member_changed
      channels: ["project:{id}", "member:{member}", "project:{id}"]
      invalidate: [["project", "{id}", "members"]]
    - path: "^/api/(?P<coll>[a-z]+)/(?P<id>[^/]*)/archive$"
      type: "{coll}_archived"
      channels: ["{coll}:{id}", "{body.items.0.id}"]
      id: "/data/items/0/id"
"#;

/// The convention over the whole path space (prefix `/` is stored as `""`), behind a rule whose
/// capture can be empty and whose type is only that capture.
pub const ROOT_PREFIX_YAML: &str = r#"
events:
  auto:
    prefix: "/"
    exclude: []
  rules:
    - methods: [DELETE]
      path: "^/(?P<kind>[^/]*)$"
      type: "{kind}"
      channels: ["{kind}", "{user}"]
      id: ""
"#;

/// The matchers `rest_path` chooses from: the defaults, `RULES_YAML`, `ROOT_PREFIX_YAML`.
pub fn matchers() -> &'static [EventMatcher] {
    static MATCHERS: OnceLock<Vec<EventMatcher>> = OnceLock::new();
    MATCHERS.get_or_init(|| {
        let load = |yaml: &str| match Config::from_yaml_str(yaml, "fuzz-rules.yaml") {
            Ok(config) => EventMatcher::new(&config.events),
            Err(e) => panic!("the fixed fuzz config must load: {e}"),
        };
        vec![
            EventMatcher::new(&Config::default().events),
            load(RULES_YAML),
            load(ROOT_PREFIX_YAML),
        ]
    })
}

/// `(before the first NUL, Some(after it))`, or `(all, None)` without a NUL.
fn split_nul(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    }
}

/// The headers of one hop only (RFC 9110 §7.6.1, with `Keep-Alive` and `Proxy-Connection`),
/// which neither hop passes on.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// (e) The public listener's request-head reader (`front::head::parse`), on bytes as a client
/// could send them. Input: a cut byte, then the bytes, which arrive in two reads split where the
/// cut byte says. Whatever the answer, no byte may be lost or invented: a partial head leaves the
/// buffer alone, a hand-over to hyper gives back every byte it took, and a plain request takes
/// exactly its head and never one of the shapes that must go to hyper.
pub fn request_head(data: &[u8]) {
    /// Small, so that inputs the fuzzer can reach cross it.
    const MAX_HEAD: usize = 1024;
    let [cut, input @ ..] = data else {
        return;
    };
    let cut = usize::from(*cut) % (input.len() + 1);
    let mut spans = Vec::new();
    let mut buf = BytesMut::from(&input[..cut]);
    let mut offered = cut;
    let mut parsed = head::parse(&mut buf, &mut spans, MAX_HEAD);
    if matches!(parsed, Parsed::Partial) {
        assert_eq!(&buf[..], &input[..cut], "a partial head changed the buffer");
        buf.extend_from_slice(&input[cut..]);
        offered = input.len();
        parsed = head::parse(&mut buf, &mut spans, MAX_HEAD);
    }
    let offered = &input[..offered];
    match parsed {
        Parsed::Partial => {
            assert_eq!(&buf[..], offered, "a partial head changed the buffer");
            assert!(
                offered.len() <= MAX_HEAD,
                "an incomplete head over the limit waits"
            );
        }
        Parsed::Handoff(taken) => {
            let mut whole = taken.to_vec();
            whole.extend_from_slice(&buf);
            assert_eq!(whole, offered, "a hand-over lost or changed bytes");
        }
        Parsed::Plain(plain) => {
            let used = offered.len() - buf.len();
            assert_eq!(&buf[..], &offered[used..], "bytes after the head changed");
            // httparse takes a bare LF as a line end, as RFC 9112 allows a recipient to.
            assert!(
                offered[..used].ends_with(b"\n\n") || offered[..used].ends_with(b"\n\r\n"),
                "a head that does not end with an empty line"
            );
            assert_ne!(
                plain.request.method(),
                http::Method::CONNECT,
                "CONNECT served by hand"
            );
            let headers = plain.headers();
            for name in ["transfer-encoding", "upgrade", "expect"] {
                assert!(!headers.contains_key(name), "{name} served by hand");
            }
            // Lines kept as bytes go upstream as they are: none may be of this hop only.
            if plain.lines.is_some() {
                for name in HOP_BY_HOP {
                    assert!(!headers.contains_key(name), "{name} kept for the upstream");
                }
            }
            let lengths: Vec<Option<u64>> = headers
                .get_all("content-length")
                .iter()
                .map(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok())
                .collect();
            if lengths.is_empty() {
                assert_eq!(plain.length, 0, "a length without a Content-Length");
            }
            for length in lengths {
                assert_eq!(
                    length,
                    Some(plain.length),
                    "the body's length is not the header's"
                );
            }
        }
    }
}

/// (f) The upstream answer's head reader (`proxy::link::response_head`), on bytes an upstream
/// could send. Input: a byte choosing the request's method, then the answer. An answer's header
/// lines may pass to the client as the bytes they came in (`proxy::verbatim`), so what is kept
/// must be whole lines: no line break inside one, none of this hop's headers, one length at most,
/// every line one a header map takes, and the lines read back the same when written out.
pub fn answer_head(data: &[u8]) {
    let [method, input @ ..] = data else {
        return;
    };
    let method = match method % 3 {
        0 => Method::GET,
        1 => Method::HEAD,
        _ => Method::POST,
    };
    let mut buf = BytesMut::from(input);
    let Ok(Some(head)) = response_head(&mut buf, &method, &mut Vec::new()) else {
        return;
    };
    let Lines::Verbatim(lines) = head.lines else {
        return;
    };
    let mut written = Vec::new();
    lines.write(&mut written);
    let text: Vec<&[u8]> = written.split(|b| *b == b'\n').collect();
    let (last, text) = text.split_last().expect("split gives one piece at least");
    assert!(last.is_empty(), "the lines do not end with a line end");
    let mut lengths = 0;
    for line in text {
        let line = line.strip_suffix(b"\r").expect("a line ends with LF alone");
        assert!(!line.contains(&b'\r'), "a CR inside a line");
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .expect("a line without a colon");
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        assert!(!HOP_BY_HOP.contains(&name.as_str()), "{name} passed on");
        lengths += usize::from(name == "content-length");
    }
    assert!(lengths <= 1, "{lengths} lengths passed on");
    assert_eq!(
        lengths == 1,
        lines.length.is_some(),
        "the length kept is not the line kept"
    );
    assert_eq!(
        (*lines).clone().fold(http::HeaderMap::new()).len(),
        text.len(),
        "a line no header map takes"
    );
    let mut again = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    again.extend_from_slice(&written);
    again.extend_from_slice(b"\r\n");
    let Ok(Some(reread)) = response_head(&mut again, &Method::GET, &mut Vec::new()) else {
        panic!("the lines written do not read back");
    };
    let Lines::Verbatim(reread) = reread.lines else {
        panic!("the lines written read back as a map");
    };
    let mut twice = Vec::new();
    reread.write(&mut twice);
    assert_eq!(twice, written, "the lines read back differently");
}
