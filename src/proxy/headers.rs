//! Header hygiene between client and upstream: hop-by-hop headers stay on their hop, and the
//! upstream learns who the real client was.

use http::{HeaderMap, HeaderName, HeaderValue, header};

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes RFC 9110 hop-by-hop headers, including any the `Connection` header names.
/// `Upgrade` is removed too unless `keep_upgrade` (a pass-through upgrade needs it end to end).
///
/// Most messages carry none of them, so one pass over the names (pointer-cheap comparisons of
/// standard names) decides whether any hashed removal is needed at all.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let present = headers
        .keys()
        .any(|name| *name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if present {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for name in named {
            if keep_upgrade && name == header::UPGRADE {
                continue;
            }
            headers.remove(name);
        }
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        if !keep_upgrade {
            headers.remove(header::UPGRADE);
        }
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The `X-Forwarded-For` value: the lines a proxy in front sent, joined into one list, then the
/// peer, as nginx's `$proxy_add_x_forwarded_for`. One line, because readers such as Starlette's
/// take the first line only. Blank lines and lines that are not plain text are dropped.
pub fn write_forwarded_for<'a>(
    prior: impl IntoIterator<Item = &'a HeaderValue>,
    peer_ip: &HeaderValue,
    out: &mut Vec<u8>,
) {
    for list in prior {
        let list = list.as_bytes().trim_ascii();
        if !list.is_empty() && list.iter().all(|b| (0x20..0x7f).contains(b)) {
            out.extend_from_slice(list);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(peer_ip.as_bytes());
}

/// Sets `X-Forwarded-For` (see `write_forwarded_for`) and fills `-Proto`/`-Host` unless a proxy
/// in front did. For the pooled client; the client connection's own link writes the same headers
/// with the request head.
pub fn add_forwarded(headers: &mut HeaderMap, peer_ip: &HeaderValue) {
    let mut list = Vec::new();
    write_forwarded_for(headers.get_all(X_FORWARDED_FOR), peer_ip, &mut list);
    let value = HeaderValue::from_bytes(&list).unwrap_or_else(|_| peer_ip.clone());
    headers.insert(X_FORWARDED_FOR, value);
    headers
        .entry(X_FORWARDED_PROTO)
        .or_insert(HeaderValue::from_static("http"));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.entry(X_FORWARDED_HOST).or_insert(host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("app.test"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.append("x-forwarded-for", HeaderValue::from_static(" 10.0.0.2"));
        add_forwarded(&mut h, &HeaderValue::from_static("127.0.0.9"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 127.0.0.9");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }
}
