//! A response head written by hand, and the `Date` it carries.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CONTENT_LENGTH, DATE};
use http::{Method, StatusCode, response};

use crate::proxy::link::{header_line, parse_length};
use crate::proxy::verbatim::Verbatim;

/// How the body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body bytes follow (HEAD, 204, 304, or an empty body).
    None,
    /// The head carries this length: the one the answer declared, or the body's exact size.
    Length(u64),
    /// A body of unknown length, sent in chunks.
    Chunked,
}

/// Writes the status line and headers: the upstream's verbatim lines if the answer has them
/// (`proxy::verbatim`), then the map's. `exact` is the body's size when it is known, `close` adds
/// `Connection: close`. Like hyper, a `Date` is added when the answer has none, and a body's
/// length when the answer declares none but it is known.
pub fn head(
    parts: &response::Parts,
    lines: Option<&Verbatim>,
    method: &Method,
    exact: Option<u64>,
    close: bool,
    out: &mut Vec<u8>,
) -> Framing {
    let status = parts.status;
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        status
            .canonical_reason()
            .unwrap_or("<unknown status code>")
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let mut has_date = false;
    let mut declared: Option<u64> = None;
    // The upstream's own lines as they came; the map then holds what the proxy added.
    if let Some(lines) = lines {
        lines.write(out);
        has_date = lines.has_date();
        declared = lines.length;
    }
    for (name, value) in &parts.headers {
        if *name == DATE {
            has_date = true;
        } else if *name == CONTENT_LENGTH {
            // One length only, and only one that parses: the body is framed by it.
            match parse_length(value.as_bytes()) {
                Some(n) if declared.is_none() => declared = Some(n),
                _ => continue,
            }
        }
        header_line(out, name.as_str(), value.as_bytes());
    }
    if !has_date {
        out.extend_from_slice(b"date: ");
        write_date(out);
        out.extend_from_slice(b"\r\n");
    }
    // A HEAD answer's headers describe the GET's body (the upstream's length is kept as it
    // is), so none is added: its own body is always empty.
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || *method == Method::HEAD;
    let length = if bodiless || declared.is_some() {
        declared
    } else {
        exact.inspect(|n| {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes());
            out.extend_from_slice(b"\r\n");
        })
    };
    let framing = match length {
        _ if bodiless => Framing::None,
        Some(0) => Framing::None,
        Some(n) => Framing::Length(n),
        None => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            Framing::Chunked
        }
    };
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    framing
}

thread_local! {
    /// The second the cached `Date` text is for, and the text.
    static DATE_TEXT: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), formatted once a second
/// per thread.
fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_TEXT.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            *cached = (now, imf_fixdate(now));
        }
        out.extend_from_slice(&cached.1);
    });
}

fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut text = [0u8; 29];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        text[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let two = |n: u64| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    put(DAYS[(days % 7) as usize]);
    put(b", ");
    put(&two(day));
    put(b" ");
    put(MONTHS[(month - 1) as usize]);
    put(b" ");
    put(&[
        b'0' + (year / 1000 % 10) as u8,
        b'0' + (year / 100 % 10) as u8,
        b'0' + (year / 10 % 10) as u8,
        b'0' + (year % 10) as u8,
    ]);
    put(b" ");
    put(&two(rem / 3600));
    put(b":");
    put(&two(rem / 60 % 60));
    put(b":");
    put(&two(rem % 60));
    put(b" GMT");
    text
}

/// Year, month (1–12) and day (1–31) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Response};

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        // A leap day, and the last second of a year.
        assert_eq!(
            &imf_fixdate(1_709_164_800),
            b"Thu, 29 Feb 2024 00:00:00 GMT"
        );
        assert_eq!(
            &imf_fixdate(1_798_761_599),
            b"Thu, 31 Dec 2026 23:59:59 GMT"
        );
    }

    fn written(
        status: u16,
        headers: &[(&str, &str)],
        method: Method,
        exact: Option<u64>,
        close: bool,
    ) -> (String, Framing) {
        let mut resp = Response::new(());
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (parts, ()) = resp.into_parts();
        let mut out = Vec::new();
        let framing = head(&parts, None, &method, exact, close, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn the_body_is_framed_by_its_length_when_known_and_in_chunks_when_not() {
        let (text, framing) = written(200, &[("x-a", "1")], Method::GET, Some(12), false);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: "),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\ncontent-length: 12\r\n\r\n"),
            "{text}"
        );
        assert_eq!(framing, Framing::Length(12));

        let (text, framing) = written(200, &[], Method::GET, None, true);
        assert!(
            text.ends_with("transfer-encoding: chunked\r\nconnection: close\r\n\r\n"),
            "{text}"
        );
        assert_eq!(framing, Framing::Chunked);

        // The upstream's own length and date are kept as they are.
        let (text, framing) = written(
            201,
            &[("content-length", "3"), ("date", "then")],
            Method::POST,
            Some(3),
            false,
        );
        assert_eq!(
            text,
            "HTTP/1.1 201 Created\r\ncontent-length: 3\r\ndate: then\r\n\r\n"
        );
        assert_eq!(framing, Framing::Length(3));
    }

    #[test]
    fn bodiless_answers_send_no_body() {
        let (text, framing) = written(204, &[("date", "d")], Method::DELETE, None, false);
        assert_eq!(text, "HTTP/1.1 204 No Content\r\ndate: d\r\n\r\n");
        assert_eq!(framing, Framing::None);
        let (text, framing) = written(
            200,
            &[("content-length", "367"), ("date", "d")],
            Method::HEAD,
            Some(367),
            false,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-length: 367\r\ndate: d\r\n\r\n"
        );
        assert_eq!(framing, Framing::None);
        // A HEAD answer the upstream gave no length gets none (not a 0 that would be wrong).
        let (text, framing) = written(200, &[("date", "d")], Method::HEAD, Some(0), false);
        assert_eq!(text, "HTTP/1.1 200 OK\r\ndate: d\r\n\r\n");
        assert_eq!(framing, Framing::None);
        let (text, framing) = written(200, &[("date", "d")], Method::GET, Some(0), false);
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ndate: d\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(framing, Framing::None);
    }
}
