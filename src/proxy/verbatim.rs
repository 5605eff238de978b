//! The upstream answer's header lines, passed to the client as the bytes they arrived in.
//!
//! Most answers need none of their headers edited by name: the proxy phases drop the hop-by-hop
//! ones, may replace `Cache-Control`, and may add `X-Sync-Position`. Building a `HeaderMap` of
//! every line only to write it out again cost about 2k instructions of a GET's 16k (a name
//! lookup, a hash and an insertion per header, two allocations per map). So the upstream link
//! keeps an answer's lines as spans of its head, the phases set their two headers beside them,
//! and the client loop writes the lines, then those two, then anything in the response's own map
//! (empty for such answers). An answer carrying a header the phases edit in place
//! (`X-Sync-Event`, CORS, a `Connection` that names other headers) gets a full map instead, as
//! before (see `link::wire`).
//!
//! The lines travel beside the response (`proxy::Answer`), which folds them into the map for
//! whoever writes answers from the map alone (hyper, on connections `front` hands over).
//!
//! A plain request's lines go the other way the same way: `front` keeps them as spans of the
//! client's head, the request's own map holds only the few headers the phases read
//! (`X-Forwarded-*`, `X-Sync-Client`), and the link writes both. Whoever needs every header of
//! such a request by name (identity, our socket and SSE paths) folds them into one map first.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::link::{Span, header_line};

/// The kept header lines of one answer or request, as spans of its head.
#[derive(Clone, Debug)]
pub struct Verbatim {
    head: Bytes,
    lines: Vec<Line>,
    /// The one `Content-Length` kept, when the body is framed by it.
    pub length: Option<u64>,
    /// A line of each kind was kept (set by `keep`, so they cannot disagree with the lines).
    has_date: bool,
    has_cache_control: bool,
    /// A rule's `Cache-Control`, written in place of the upstream's.
    pub cache_control: Option<HeaderValue>,
    /// The `X-Sync-Position` of a read.
    pub position: Option<HeaderValue>,
}

/// What a kept line is to the writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Plain,
    /// `Date`: none is added.
    Date,
    /// `Cache-Control`: a rule's value replaces it.
    CacheControl,
    /// `Content-Length`: left out when the body is coded.
    Length,
    /// A request's `Host`: the link names it in `X-Forwarded-Host`.
    Host,
}

#[derive(Clone, Copy, Debug)]
struct Line {
    span: Span,
    kind: Kind,
}

impl Verbatim {
    /// Room for `lines` lines is made at once: an answer's lines are counted before they are
    /// kept.
    pub fn new(head: Bytes, lines: usize) -> Verbatim {
        Verbatim {
            head,
            lines: Vec::with_capacity(lines),
            length: None,
            has_date: false,
            has_cache_control: false,
            cache_control: None,
            position: None,
        }
    }

    pub fn keep(&mut self, span: Span, kind: Kind) {
        self.has_date |= kind == Kind::Date;
        self.has_cache_control |= kind == Kind::CacheControl;
        self.lines.push(Line { span, kind });
    }

    /// The upstream sent a `Date`.
    pub fn has_date(&self) -> bool {
        self.has_date
    }

    /// The upstream sent a `Cache-Control` (a rule may defer to it).
    pub fn has_cache_control(&self) -> bool {
        self.has_cache_control
    }

    /// A request's last `Host` line's value (the link names it in `X-Forwarded-Host`).
    pub fn host(&self) -> Option<&[u8]> {
        self.lines
            .iter()
            .rev()
            .find(|line| line.kind == Kind::Host)
            .map(|line| &self.head[line.span.value.0..line.span.value.1])
    }

    /// The lines' names and values, counted as `proxy`'s head-size check counts a map's.
    pub fn size(&self) -> usize {
        self.lines
            .iter()
            .map(|line| {
                line.span.name.1 - line.span.name.0 + line.span.value.1 - line.span.value.0 + 4
            })
            .sum()
    }

    /// How many lines are kept.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// `lines` (a request's, `None` when it has none apart) and `map` as one map, neither
    /// consumed: for what reads every header by name while both still go upstream.
    pub fn joined(lines: Option<&Verbatim>, map: &HeaderMap) -> HeaderMap {
        match lines {
            Some(lines) => lines.clone().fold(map.clone()),
            None => map.clone(),
        }
    }

    /// Leaves the `Content-Length` line out: a coded body is framed by its coding.
    pub fn forget_length(&mut self) {
        self.lines.retain(|line| line.kind != Kind::Length);
        self.length = None;
    }

    /// The lines that reach the client: all but the upstream's `Cache-Control` when a rule
    /// replaces it.
    fn passed(&self) -> impl Iterator<Item = &Span> {
        let replaced = self.cache_control.is_some();
        self.lines
            .iter()
            .filter(move |line| !(replaced && line.kind == Kind::CacheControl))
            .map(|line| &line.span)
    }

    /// Writes the kept lines as `name: value\r\n`, with the upstream's spelling, then what the
    /// phases set beside them.
    pub fn write(&self, out: &mut Vec<u8>) {
        for span in self.passed() {
            out.extend_from_slice(&self.head[span.name.0..span.value.1]);
            out.extend_from_slice(b"\r\n");
        }
        for (name, value) in self.set() {
            header_line(out, name, value.as_bytes());
        }
    }

    /// The headers the phases set beside the lines.
    fn set(&self) -> impl Iterator<Item = (&'static str, &HeaderValue)> {
        let cache_control = self.cache_control.as_ref().map(|v| ("cache-control", v));
        let position = self.position.as_ref().map(|v| ("x-sync-position", v));
        cache_control.into_iter().chain(position)
    }

    /// The kept lines, what the phases set, and `additions` (the response's own map) as one map:
    /// what the client loop would have written.
    pub fn fold(self, additions: HeaderMap) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.lines.len() + 2 + additions.len());
        // `httparse` has checked every line already; one neither type takes is dropped.
        for (name, value) in self.passed().filter_map(|span| span.header(&self.head)) {
            map.append(name, value);
        }
        for (name, value) in self.set() {
            map.append(HeaderName::from_static(name), value.clone());
        }
        let mut last = None;
        for (name, value) in additions {
            if let Some(name) = name {
                last = Some(name);
            }
            if let Some(name) = &last {
                map.append(name.clone(), value);
            }
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::CACHE_CONTROL;

    fn sample() -> Verbatim {
        let head =
            Bytes::from_static(b"HTTP/1.1 200 OK\r\nX-A:  1\r\ncache-control: max-age=9\r\n\r\n");
        let mut v = Verbatim::new(head, 2);
        v.keep(
            Span {
                name: (17, 20),
                value: (23, 24),
            },
            Kind::Plain,
        );
        v.keep(
            Span {
                name: (26, 39),
                value: (41, 50),
            },
            Kind::CacheControl,
        );
        v
    }

    #[test]
    fn lines_are_written_as_sent_and_a_rule_replaces_cache_control() {
        let mut out = Vec::new();
        sample().write(&mut out);
        assert_eq!(out, b"X-A:  1\r\ncache-control: max-age=9\r\n");
        let mut v = sample();
        v.cache_control = Some(HeaderValue::from_static("no-store"));
        v.position = Some(HeaderValue::from_static("p=1"));
        out.clear();
        v.write(&mut out);
        assert_eq!(
            out,
            b"X-A:  1\r\ncache-control: no-store\r\nx-sync-position: p=1\r\n"
        );
    }

    #[test]
    fn fold_joins_the_lines_what_was_set_and_the_additions() {
        let mut v = sample();
        v.cache_control = Some(HeaderValue::from_static("no-store"));
        v.position = Some(HeaderValue::from_static("p=1"));
        let mut additions = HeaderMap::new();
        additions.append("x-b", HeaderValue::from_static("2"));
        additions.append("x-b", HeaderValue::from_static("3"));
        let h = v.fold(additions);
        assert_eq!(h["x-a"], "1");
        assert_eq!(h.get_all(CACHE_CONTROL).iter().count(), 1);
        assert_eq!(h[CACHE_CONTROL], "no-store");
        assert_eq!(h["x-sync-position"], "p=1");
        let b: Vec<_> = h.get_all("x-b").iter().collect();
        assert_eq!(b, ["2", "3"]);
        let h = sample().fold(HeaderMap::new());
        assert_eq!(h[CACHE_CONTROL], "max-age=9");
    }
}
