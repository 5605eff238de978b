//! A client's request head, read by hand when it has the plain shape nearly every API call has.
//!
//! Plain means: HTTP/1.1, not CONNECT, no `Upgrade`, `Expect` or `Transfer-Encoding`, at most one
//! `Content-Length` value, and a head the limits allow. Anything else, including a head that
//! `httparse` refuses, is handed with its bytes untouched to hyper (see `front`), which serves or
//! refuses it exactly as before this path existed.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Uri};

pub use crate::proxy::link::Span;
use crate::proxy::link::names::{ConnectionTokens, Known, known};
use crate::proxy::link::{locate, parse_length, spans_to_map};
use crate::proxy::verbatim::{Kind, Verbatim};

/// Most headers a request may carry (hyper's default, so a longer head gets hyper's 431).
const MAX_HEADERS: usize = 100;

/// What the bytes read so far hold.
// Made and taken apart once per request: boxing the request would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
pub enum Parsed {
    /// Not a whole head yet.
    Partial,
    /// A plain request; its body is yet to be attached.
    Plain(Plain),
    /// Hyper takes the connection over: these bytes (taken off the buffer) come first, then the
    /// rest of the buffer.
    Handoff(Bytes),
}

pub struct Plain {
    /// Its map holds only the headers the proxy phases read by name; the rest are in `lines`.
    pub request: Request<()>,
    /// The header lines that pass upstream as the bytes they came in (`None` when a `Connection`
    /// header names other headers: every header is then in the map, for `strip_hop_by_hop`).
    pub lines: Option<Box<Verbatim>>,
    /// The body's length (0 without one).
    pub length: u64,
    /// The client asked to close the connection after this request.
    pub close: bool,
}

impl Plain {
    /// Every header of the request, as one map (tests and the fuzz harness check them).
    pub fn headers(&self) -> HeaderMap {
        Verbatim::joined(self.lines.as_deref(), self.request.headers())
    }
}

/// Takes a request head off the front of `buf` once it is whole. `max_head` bounds a head that is
/// still incomplete: past it, hyper answers (431).
pub fn parse(buf: &mut BytesMut, spans: &mut Vec<Span>, max_head: usize) -> Parsed {
    let mut slots = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut parsed,
        buf,
        &mut slots,
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Parsed::Partial,
        _ => return Parsed::Handoff(Bytes::new()),
    };
    if parsed.version != Some(1) {
        return Parsed::Handoff(Bytes::new());
    }
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return Parsed::Handoff(Bytes::new());
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Handoff(Bytes::new());
    };
    // CONNECT is a tunnel in hyper's hands, as it always was here.
    if method == Method::CONNECT {
        return Parsed::Handoff(Bytes::new());
    }
    let path_at = path.as_ptr() as usize - buf.as_ptr() as usize;
    let path_range = path_at..path_at + path.len();
    locate(buf, parsed.headers, spans);
    let head = buf.split_to(len).freeze();
    match interpret(method, &head, path_range, spans) {
        Some(plain) => Parsed::Plain(plain),
        None => Parsed::Handoff(head),
    }
}

/// The request, when the head is plain; `None` hands it to hyper.
fn interpret(
    method: Method,
    head: &Bytes,
    path: std::ops::Range<usize>,
    spans: &[Span],
) -> Option<Plain> {
    let uri = Uri::from_maybe_shared(head.slice(path)).ok()?;
    let mut lines = Verbatim::new(head.clone(), spans.len());
    // Empty maps allocate nothing: most requests carry none of these.
    let mut read = HeaderMap::new();
    let mut length: Option<u64> = None;
    let mut connection = ConnectionTokens::default();
    for span in spans {
        let value = &head[span.value.0..span.value.1];
        match known(&head[span.name.0..span.name.1]) {
            Known::ContentLength => {
                let n = parse_length(value)?;
                // Repeated lengths must agree (RFC 9112 §6.3); hyper refuses the rest.
                if length.is_some_and(|prev| prev != n) {
                    return None;
                }
                length = Some(n);
                lines.keep(*span, Kind::Length);
            }
            Known::TransferEncoding | Known::Upgrade | Known::Expect => return None,
            Known::Connection => connection.read(value),
            Known::HopByHop => {}
            Known::Host => lines.keep(*span, Kind::Host),
            // What the phases read by name.
            Known::XSyncClient | Known::Forwarded => {
                let (name, value) = span.header(head)?;
                read.append(name, value);
            }
            _ => lines.keep(*span, Kind::Plain),
        }
    }
    let lines = if connection.names_others {
        // Every header goes in the map, for `strip_hop_by_hop` to remove the named ones.
        read = spans_to_map(head, spans, 0, |_| true).ok()?;
        None
    } else {
        lines.length = length;
        Some(Box::new(lines))
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = read;
    Some(Plain {
        request,
        lines,
        length: length.unwrap_or(0),
        close: connection.close,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse(&mut buf, &mut Vec::new(), 64 * 1024);
        (parsed, buf)
    }

    #[test]
    fn a_plain_head_becomes_a_request_and_leaves_its_body_bytes() {
        let (parsed, rest) = parse_all(
            b"POST /api/projects?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nX-A: 1\r\nx-a: 2\r\n\r\nbodyGET",
        );
        let Parsed::Plain(plain) = parsed else {
            panic!("not plain")
        };
        assert_eq!(plain.request.method(), Method::POST);
        assert_eq!(plain.request.uri().path(), "/api/projects");
        assert_eq!(plain.request.uri().query(), Some("x=1"));
        let headers = plain.headers();
        let values: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(plain.length, 4);
        assert!(!plain.close);
        assert_eq!(&rest[..], b"bodyGET");
    }

    /// The map holds what the phases read by name; other lines stay bytes, this hop's are gone.
    #[test]
    fn header_lines_stay_bytes_but_those_the_phases_read() {
        let (parsed, _) = parse_all(
            b"GET / HTTP/1.1\r\nHost: a\r\nX-Sync-Client: t\r\nKeep-Alive: 5\r\n\
              X-Forwarded-For: 1.2.3.4\r\nAccept: */*\r\nHost: b\r\n\r\n",
        );
        let Parsed::Plain(plain) = parsed else {
            panic!("not plain")
        };
        let read: Vec<_> = plain.request.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(read, ["x-sync-client", "x-forwarded-for"]);
        let lines = plain.lines.as_deref().expect("lines kept");
        assert_eq!(lines.len(), 3, "Host twice and Accept");
        assert_eq!(lines.host(), Some(&b"b"[..]), "the last Host");
        let all = plain.headers();
        assert!(all.get("keep-alive").is_none());
        assert_eq!(all["accept"], "*/*");

        // A `Connection` that names a header: every header goes in the map, for the phases to
        // strip by name.
        let (parsed, _) =
            parse_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n");
        let Parsed::Plain(plain) = parsed else {
            panic!("not plain")
        };
        assert!(plain.lines.is_none());
        assert_eq!(plain.request.headers().len(), 3);
    }

    #[test]
    fn a_head_split_anywhere_waits_for_the_rest() {
        let text = b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, close\r\n\r\n";
        for cut in 1..text.len() {
            let mut buf = BytesMut::from(&text[..cut]);
            assert!(
                matches!(parse(&mut buf, &mut Vec::new(), 1024), Parsed::Partial),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "bytes were taken at {cut}");
            buf.extend_from_slice(&text[cut..]);
            let Parsed::Plain(plain) = parse(&mut buf, &mut Vec::new(), 1024) else {
                panic!("not plain once whole (cut at {cut})")
            };
            assert!(plain.close);
            assert!(buf.is_empty());
        }
    }

    /// Every shape the hand-written path does not serve goes to hyper with its bytes intact.
    #[test]
    fn other_heads_are_handed_over_whole() {
        let cases: [&[u8]; 10] = [
            b"GET / HTTP/1.0\r\n\r\n",
            b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n",
            b"GET /api/ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ];
        for text in cases {
            let (parsed, rest) = parse_all(text);
            let Parsed::Handoff(taken) = parsed else {
                panic!("served by hand: {}", String::from_utf8_lossy(text))
            };
            let mut whole = taken.to_vec();
            whole.extend_from_slice(&rest);
            assert_eq!(whole, text, "bytes lost: {}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn an_incomplete_head_over_the_limit_is_handed_over() {
        let mut text = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        text.extend(std::iter::repeat_n(b'x', 2000));
        let mut buf = BytesMut::from(&text[..]);
        assert!(matches!(
            parse(&mut buf, &mut Vec::new(), 1024),
            Parsed::Handoff(taken) if taken.is_empty()
        ));
        assert_eq!(buf.len(), text.len());
    }

    #[test]
    fn more_headers_than_allowed_are_handed_over() {
        let mut text = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            text.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        text.extend_from_slice(b"\r\n");
        assert!(matches!(parse_all(&text).0, Parsed::Handoff(_)));
    }
}
