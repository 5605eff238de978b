//! HTTP/1.1 on the upstream hop, written and read by hand.
//!
//! The hop has one shape: our own request, already cleaned by the proxy phases, and the answer of
//! the API beside us. Writing the head is a loop over the headers into one buffer; reading the
//! answer is one `httparse` pass whose header values are slices of the bytes read, as hyper does,
//! without hyper's per-request dispatch channel, connection task and header re-validation.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, request};

use super::names::{ConnectionTokens, Known, known};
use crate::proxy::headers::write_forwarded_for;
use crate::proxy::verbatim::{Kind, Verbatim};

/// Most headers an answer may carry (hyper's default too).
const MAX_HEADERS: usize = 100;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Longest answer head; larger ones are refused rather than buffered.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line (with extensions) and longest trailer section of a chunked answer.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;

/// Why an answer cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid response header {0}")]
    Header(String),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("the upstream switched protocols unasked")]
    UnaskedUpgrade,
    #[error("malformed chunked body")]
    Chunk,
}

/// What the proxy adds to a request on its way upstream, written with the head instead of being
/// inserted into the header map first (each insert hashes a name and may grow the map).
pub struct Forwarded<'a> {
    /// The client's address, appended to `X-Forwarded-For`.
    pub peer_ip: &'a HeaderValue,
    /// `Host` when the client sent none (HTTP/1.0): the upstream's own name.
    pub default_host: &'a str,
}

/// Writes the request line and headers (the map's, then the lines `front` kept as bytes);
/// `chunked` adds the framing of a body of unknown length.
///
/// `X-Forwarded-For` is one line (see `headers::write_forwarded_for`); `X-Forwarded-Proto` and
/// `X-Forwarded-Host` are set unless a proxy in front set them.
pub fn request_head(
    parts: &request::Parts,
    lines: Option<&Verbatim>,
    chunked: bool,
    fwd: &Forwarded,
    out: &mut Vec<u8>,
) {
    let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host: Option<&[u8]> = None;
    let mut has_proto = false;
    let mut has_fwd_host = false;
    let mut has_xff = false;
    for (name, value) in &parts.headers {
        if *name == X_FORWARDED_FOR {
            has_xff = true;
            continue;
        }
        if *name == HOST {
            host = Some(value.as_bytes());
        } else if *name == X_FORWARDED_PROTO {
            has_proto = true;
        } else if *name == X_FORWARDED_HOST {
            has_fwd_host = true;
        }
        header_line(out, name.as_str(), value.as_bytes());
    }
    if let Some(lines) = lines {
        lines.write(out);
        host = lines.host().or(host);
    }
    let host = match host {
        Some(host) => host,
        None => {
            header_line(out, "host", fwd.default_host.as_bytes());
            fwd.default_host.as_bytes()
        }
    };
    out.extend_from_slice(b"x-forwarded-for: ");
    // The lookup only when a proxy in front sent some.
    let prior = has_xff.then(|| parts.headers.get_all(X_FORWARDED_FOR));
    write_forwarded_for(prior.into_iter().flatten(), fwd.peer_ip, out);
    out.extend_from_slice(b"\r\n");
    if !has_proto {
        out.extend_from_slice(b"x-forwarded-proto: http\r\n");
    }
    if !has_fwd_host {
        header_line(out, "x-forwarded-host", host);
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// One header line, `name: value\r\n` (both hops write their own headers this way).
pub fn header_line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// One chunk of a body of unknown length, framed.
pub fn chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    chunk_size_line(data.len(), out);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The line before a chunk of `len` bytes: its size in hex.
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: an answer to HEAD, a 204 or a 304.
    Empty,
    Length(u64),
    Chunked,
    /// Everything until the upstream closes (no length given); the connection ends with it.
    UntilClose,
}

/// An answer's head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub lines: Lines,
    pub framing: Framing,
    /// HTTP/1.1 without `Connection: close`: the connection may carry the next request.
    pub keep_alive: bool,
}

/// Takes the answer's head off the front of `buf` once it is complete, skipping interim (1xx)
/// answers; `Ok(None)` means more bytes are needed. `spans` is scratch space the connection keeps
/// from one answer to the next.
pub fn response_head(
    buf: &mut BytesMut,
    method: &Method,
    spans: &mut Vec<Span>,
) -> Result<Option<Head>, WireError> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            buf,
            &mut slots,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(WireError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(WireError::Header(format!("count over {MAX_HEADERS}")));
            }
            Err(e) => return Err(WireError::Head(e)),
        };
        let code = parsed.code.unwrap_or(0);
        if code == 101 {
            return Err(WireError::UnaskedUpgrade);
        }
        if (100..200).contains(&code) {
            buf.advance(len);
            continue;
        }
        let status =
            StatusCode::from_u16(code).map_err(|_| WireError::Header(format!("status {code}")))?;
        let http11 = parsed.version == Some(1);
        locate(buf, parsed.headers, spans);
        let head = buf.split_to(len).freeze();
        return interpret(status, http11, &head, spans, method).map(Some);
    }
}

/// Byte ranges of one header's name and value in a head (a connection keeps a list of them from
/// one head to the next, so finding them allocates nothing).
#[derive(Clone, Copy, Debug)]
pub struct Span {
    pub name: (usize, usize),
    pub value: (usize, usize),
}

impl Span {
    /// The header this span locates in `head`, as the `http` types; `None` when either part is
    /// not a valid name or value (`httparse` has checked both; the types check again).
    pub fn header(&self, head: &Bytes) -> Option<(HeaderName, HeaderValue)> {
        let name = HeaderName::from_bytes(&head[self.name.0..self.name.1]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(self.value.0..self.value.1)).ok()?;
        Some((name, value))
    }
}

/// Where each header `httparse` found in `buf` lies, so that names and values can be slices of the
/// head once it is split off as shared bytes (both hops read heads this way).
pub fn locate(buf: &[u8], headers: &[httparse::Header<'_>], spans: &mut Vec<Span>) {
    let base = buf.as_ptr() as usize;
    spans.clear();
    spans.extend(headers.iter().map(|h| {
        let name = h.name.as_ptr() as usize - base;
        let value = h.value.as_ptr() as usize - base;
        Span {
            name: (name, name + h.name.len()),
            value: (value, value + h.value.len()),
        }
    }));
}

/// Headers the proxy may add to an answer (`Cache-Control`, `X-Sync-Position`,
/// `Access-Control-Expose-Headers`): room is made for them up front, so the map never grows.
const ROOM_FOR_OURS: usize = 3;

/// An answer's header lines: most pass on as the bytes they came in (`Verbatim`); an answer
/// with a header the proxy phases edit by name comes as a map.
#[derive(Debug)]
pub enum Lines {
    Verbatim(Box<Verbatim>),
    Map(HeaderMap),
}

fn interpret(
    status: StatusCode,
    http11: bool,
    head: &Bytes,
    spans: &[Span],
    method: &Method,
) -> Result<Head, WireError> {
    let mut verbatim = Verbatim::new(head.clone(), spans.len());
    let mut needs_map = false;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut other_coding = false;
    let mut connection = ConnectionTokens::default();
    for span in spans {
        let value = &head[span.value.0..span.value.1];
        match known(&head[span.name.0..span.name.1]) {
            Known::ContentLength => {
                let n = parse_length(value).ok_or(WireError::ContentLength)?;
                // Repeated lengths must agree (RFC 9112 §6.3), or the framing is ambiguous.
                match length {
                    Some(prev) if prev != n => return Err(WireError::ContentLength),
                    Some(_) => {}
                    None => verbatim.keep(*span, Kind::Length),
                }
                length = Some(n);
            }
            Known::TransferEncoding => {
                // Only a final `chunked` delimits the body; any other coding means "until close".
                let last = value.rsplit(|b| *b == b',').next().map(<[u8]>::trim_ascii);
                chunked = last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked"));
                other_coding = !chunked;
            }
            // A `Connection` that names a header of this hop needs `strip_hop_by_hop`.
            Known::Connection => connection.read(value),
            Known::Upgrade | Known::HopByHop => {}
            Known::Date => verbatim.keep(*span, Kind::Date),
            Known::CacheControl => verbatim.keep(*span, Kind::CacheControl),
            // Headers the proxy phases edit by name.
            Known::XSyncEvent | Known::XSyncPosition | Known::Cors => needs_map = true,
            Known::Expect | Known::Host | Known::XSyncClient | Known::Forwarded | Known::Other => {
                verbatim.keep(*span, Kind::Plain)
            }
        }
    }
    let needs_map = needs_map || connection.names_others;
    // HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
    let close = connection.close || (!http11 && !connection.keep_alive);
    let framing = if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if other_coding {
        Framing::UntilClose
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    // A Transfer-Encoding overrides any Content-Length (RFC 9112 §6.3).
    let coded = chunked || other_coding;
    let lines = if needs_map {
        Lines::Map(header_map(head, spans, coded)?)
    } else {
        if coded {
            verbatim.forget_length();
        } else {
            verbatim.length = length;
        }
        Lines::Verbatim(Box::new(verbatim))
    };
    Ok(Head {
        status,
        lines,
        framing,
        keep_alive: !close && framing != Framing::UntilClose,
    })
}

/// Every header of the answer in a map, for the proxy phases to edit by name (they drop the
/// hop-by-hop ones). A coded body's `Content-Length` is left out.
fn header_map(head: &Bytes, spans: &[Span], coded: bool) -> Result<HeaderMap, WireError> {
    spans_to_map(head, spans, ROOM_FOR_OURS, |name| {
        !(coded && *name == CONTENT_LENGTH)
    })
    .map_err(|span| {
        WireError::Header(String::from_utf8_lossy(&head[span.name.0..span.name.1]).into_owned())
    })
}

/// The headers `spans` locate in `head` that `keep` accepts, as a map with room for `room` more
/// (both hops build their full maps this way); the first span the `http` types refuse is the
/// error.
pub fn spans_to_map(
    head: &Bytes,
    spans: &[Span],
    room: usize,
    keep: impl Fn(&HeaderName) -> bool,
) -> Result<HeaderMap, Span> {
    let mut headers = HeaderMap::with_capacity(spans.len() + room);
    for span in spans {
        let (name, value) = span.header(head).ok_or(*span)?;
        if keep(&name) {
            headers.append(name, value);
        }
    }
    Ok(headers)
}

/// A `Content-Length` value: digits only (no sign, no spaces), at most 19 of them.
pub fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    v.iter().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Where a chunked body's reader stands between reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes to go.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last chunk, before the end of the trailers.
    Trailers,
    Done,
}

impl Chunked {
    /// Advances over `buf`: returns body bytes when some are ready, `Ok(None)` when the state moved
    /// without any (call again) or more bytes are needed (`buf` unchanged, state unchanged).
    pub fn step(&mut self, buf: &mut BytesMut) -> Result<Step, WireError> {
        match *self {
            Chunked::Size => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                    Ok(Step::Moved)
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                    Err(WireError::Chunk)
                }
                Ok(httparse::Status::Partial) => Ok(Step::NeedMore),
                Err(_) => Err(WireError::Chunk),
            },
            Chunked::Data(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                let data = buf.split_to(take).freeze();
                let left = left - take as u64;
                *self = if left == 0 {
                    Chunked::DataEnd
                } else {
                    Chunked::Data(left)
                };
                Ok(Step::Data(data))
            }
            Chunked::DataEnd => {
                if buf.len() < 2 {
                    return Ok(Step::NeedMore);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(WireError::Chunk);
                }
                buf.advance(2);
                *self = Chunked::Size;
                Ok(Step::Moved)
            }
            Chunked::Trailers => {
                // Trailers are read and dropped; the client's own framing ends with the body.
                let end = if buf.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    buf.windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|at| at + 4)
                };
                match end {
                    Some(end) => {
                        buf.advance(end);
                        *self = Chunked::Done;
                        Ok(Step::Moved)
                    }
                    None if buf.len() > MAX_TRAILERS => Err(WireError::Chunk),
                    None => Ok(Step::NeedMore),
                }
            }
            Chunked::Done => Ok(Step::Moved),
        }
    }
}

/// What one `Chunked::step` produced.
#[derive(Debug)]
pub enum Step {
    Data(Bytes),
    Moved,
    NeedMore,
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Head {
        /// Every header the client would get, however the answer carries them.
        fn map(&self) -> HeaderMap {
            match &self.lines {
                Lines::Verbatim(v) => (**v).clone().fold(HeaderMap::new()),
                Lines::Map(m) => m.clone(),
            }
        }
    }

    #[test]
    fn only_answers_the_phases_edit_by_name_get_a_map() {
        let verbatim = [
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nCache-Control: max-age=5\r\nDate: x\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
        ];
        for text in verbatim {
            let h = head(text, Method::GET).unwrap().unwrap();
            assert!(matches!(h.lines, Lines::Verbatim(_)), "{text}");
        }
        let mapped = [
            "HTTP/1.1 201 Created\r\nX-Sync-Event: {}\r\n\r\n",
            "HTTP/1.1 200 OK\r\naccess-control-allow-origin: *\r\n\r\n",
            "HTTP/1.1 200 OK\r\nAccess-Control-Expose-Headers: x-a\r\n\r\n",
            "HTTP/1.1 200 OK\r\nX-Sync-Position: a=1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nConnection: close, x-secret\r\nX-Secret: 1\r\n\r\n",
        ];
        for text in mapped {
            let h = head(text, Method::GET).unwrap().unwrap();
            assert!(matches!(h.lines, Lines::Map(_)), "{text}");
        }
    }

    #[test]
    fn verbatim_lines_leave_out_this_hop_and_keep_the_rest_as_sent() {
        let h = head(
            "HTTP/1.1 200 OK\r\nX-Kept:  a b\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
             TE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\n\
             Content-Length: 3\r\nContent-Length: 3\r\nDate: d\r\nCache-Control: no-cache\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let Lines::Verbatim(v) = h.lines else {
            panic!("a map")
        };
        assert_eq!(v.length, Some(3));
        assert!(v.has_date() && v.has_cache_control());
        let mut out = Vec::new();
        v.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-Kept:  a b\r\nContent-Length: 3\r\nDate: d\r\nCache-Control: no-cache\r\n"
        );
        // A coded body is framed by its coding, never by a length beside it.
        let coded = head(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n",
            Method::GET,
        )
        .unwrap()
        .unwrap();
        let Lines::Verbatim(v) = coded.lines else {
            panic!("a map")
        };
        assert_eq!(v.length, None);
        let mut out = Vec::new();
        v.write(&mut out);
        assert_eq!(out, b"X-A: 1\r\n");
    }

    fn head(text: &str, method: Method) -> Result<Option<Head>, WireError> {
        let mut buf = BytesMut::from(text.as_bytes());
        response_head(&mut buf, &method, &mut Vec::new())
    }

    fn encode(req: http::Request<()>, chunked: bool) -> String {
        let mut out = Vec::new();
        let fwd = Forwarded {
            peer_ip: &HeaderValue::from_static("127.0.0.9"),
            default_host: "api:8000",
        };
        request_head(&req.into_parts().0, None, chunked, &fwd, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_head_is_the_request_line_and_headers_in_order_then_ours() {
        let req = http::Request::post("/api/items?x=1")
            .header("host", "app.test")
            .header("x-a", "1")
            .header("x-a", "2")
            .body(())
            .unwrap();
        assert_eq!(
            encode(req, true),
            "POST /api/items?x=1 HTTP/1.1\r\nhost: app.test\r\nx-a: 1\r\nx-a: 2\r\n\
             x-forwarded-for: 127.0.0.9\r\nx-forwarded-proto: http\r\nx-forwarded-host: app.test\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn forwarded_headers_append_to_what_a_proxy_in_front_set() {
        let req = http::Request::get("/")
            .header("x-forwarded-for", "10.0.0.1")
            .header("x-forwarded-for", "10.0.0.2 ")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "front.test")
            .body(())
            .unwrap();
        let head = encode(req, false);
        assert!(
            head.contains("x-forwarded-for: 10.0.0.1, 10.0.0.2, 127.0.0.9\r\n"),
            "{head}"
        );
        assert_eq!(head.matches("x-forwarded-for").count(), 1, "{head}");
        assert!(head.contains("x-forwarded-proto: https\r\n"), "{head}");
        assert!(!head.contains("x-forwarded-proto: http\r\n"), "{head}");
        assert!(head.contains("x-forwarded-host: front.test\r\n"), "{head}");
        // No Host from the client (HTTP/1.0): the upstream's own name.
        assert!(head.contains("host: api:8000\r\n"), "{head}");
        let blank = http::Request::get("/")
            .header("x-forwarded-for", " ")
            .body(())
            .unwrap();
        assert!(encode(blank, false).contains("x-forwarded-for: 127.0.0.9\r\n"));
    }

    #[test]
    fn chunks_carry_their_length_in_hex() {
        let mut out = Vec::new();
        chunk(&[b'x'; 26], &mut out);
        chunk(b"", &mut out);
        assert_eq!(&out[..4], b"1a\r\n");
        assert_eq!(out.len(), 4 + 26 + 2);
    }

    #[test]
    fn a_head_split_anywhere_waits_for_the_rest_and_keeps_the_body_bytes() {
        let text = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        for cut in 1..text.len() - 5 {
            let mut buf = BytesMut::from(&text.as_bytes()[..cut]);
            assert!(
                response_head(&mut buf, &Method::GET, &mut Vec::new())
                    .unwrap()
                    .is_none(),
                "{cut}"
            );
        }
        let mut buf = BytesMut::from(text.as_bytes());
        let h = response_head(&mut buf, &Method::GET, &mut Vec::new())
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(5));
        assert!(h.keep_alive);
        assert_eq!(h.map()["x-a"], "b");
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn interim_answers_are_skipped() {
        let h = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
             HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            Method::POST,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.status, 201);
        assert_eq!(h.framing, Framing::Empty);
        assert!(!h.map().contains_key("link"));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |text: &str, m: Method| head(text, m).unwrap().unwrap();
        let chunked = f(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            Method::GET,
        );
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(!chunked.map().contains_key(CONTENT_LENGTH));
        let close = f("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(close.framing, Framing::UntilClose);
        assert!(!close.keep_alive);
        let head_answer = f("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", Method::HEAD);
        assert_eq!(head_answer.framing, Framing::Empty);
        assert_eq!(head_answer.map()[CONTENT_LENGTH], "9");
        let not_modified = f("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET);
        assert_eq!(not_modified.framing, Framing::Empty);
        assert!(not_modified.keep_alive);
        let closing = f(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
        );
        assert!(!closing.keep_alive);
        let old = f("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET);
        assert!(!old.keep_alive);
        let old_kept = f(
            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            Method::GET,
        );
        assert!(old_kept.keep_alive);
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_errors() {
        for text in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "NOPE\r\n\r\n",
        ] {
            assert!(head(text, Method::GET).is_err(), "{text}");
        }
        let agreeing = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        assert_eq!(
            head(agreeing, Method::GET).unwrap().unwrap().framing,
            Framing::Length(2)
        );
        let mut huge = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        huge.extend_from_slice(&vec![b'a'; MAX_HEAD_BYTES + 1]);
        assert!(matches!(
            response_head(&mut huge, &Method::GET, &mut Vec::new()),
            Err(WireError::HeadTooLarge)
        ));
    }

    /// Decodes `wire` fed in pieces of `piece` bytes.
    fn decode(wire: &[u8], piece: usize) -> Result<(Vec<u8>, BytesMut), WireError> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut fed = 0;
        while state != Chunked::Done {
            match state.step(&mut buf)? {
                Step::Data(d) => out.extend_from_slice(&d),
                Step::Moved => {}
                Step::NeedMore => {
                    assert!(fed < wire.len(), "ran out of input in {state:?}");
                    let end = (fed + piece).min(wire.len());
                    buf.extend_from_slice(&wire[fed..end]);
                    fed = end;
                }
            }
        }
        buf.extend_from_slice(&wire[fed..]);
        Ok((out, buf))
    }

    #[test]
    fn chunked_bodies_decode_however_they_are_split() {
        let wire =
            b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for piece in [1, 2, 3, 7, 64] {
            let (body, rest) = decode(wire, piece).unwrap();
            assert_eq!(body, b"helloabcdefghijklmnopqrstuvwxyz", "{piece}");
            assert_eq!(&rest[..], b"NEXT", "{piece}");
        }
        let (body, _) = decode(b"0\r\n\r\n", 1).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn malformed_chunked_bodies_are_errors() {
        for wire in [&b"zz\r\n"[..], b"5\r\nhelloXX", b"fffffffffffffffff\r\n"] {
            assert!(
                decode(wire, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut long = BytesMut::from(&b"5;"[..]);
        long.extend_from_slice(&vec![b'e'; MAX_CHUNK_LINE + 1]);
        assert!(Chunked::Size.step(&mut long).is_err());
    }
}
