//! Header hygiene between client and upstream: hop-by-hop headers stay on their hop, and the
//! upstream learns who the real client was.

use http::header::Entry;
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

/// Appends the peer (its IP, formatted once per connection) to `X-Forwarded-For` and fills
/// `-Proto`/`-Host` unless a proxy in front did.
pub fn add_forwarded(headers: &mut HeaderMap, peer_ip: &HeaderValue) {
    // One lookup per header through `entry`: each costs a hash of the name.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut prev) => {
            let appended = match prev.get().to_str() {
                Ok(list) if !list.trim().is_empty() => HeaderValue::from_str(&format!(
                    "{list}, {}",
                    peer_ip.to_str().unwrap_or("unknown")
                ))
                .ok(),
                _ => Some(peer_ip.clone()),
            };
            if let Some(v) = appended {
                prev.insert(v);
            }
        }
        Entry::Vacant(slot) => {
            slot.insert(peer_ip.clone());
        }
    }
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
        add_forwarded(&mut h, &HeaderValue::from_static("127.0.0.9"));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "app.test");
    }
}
