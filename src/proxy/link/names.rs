//! The header names the proxy acts on, told from the bytes of a head.
//!
//! Both hops pass most header lines on as the bytes they came in (`proxy::verbatim`) and act on
//! a handful by name. Making a `HeaderName` of each line to compare it (a lower-cased copy and a
//! table search, about 150 instructions) cost more than the rest of reading it; here one length
//! comparison rules out almost every name, and a case-blind comparison decides the rest.

/// What a header's name is to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    /// Another header of one hop only (RFC 9110 §7.6.1, with the customary `Keep-Alive` and
    /// `Proxy-Connection`): it is not passed on.
    HopByHop,
    Expect,
    Host,
    Date,
    CacheControl,
    XSyncEvent,
    XSyncPosition,
    XSyncClient,
    /// `Access-Control-Allow-Origin` or `Access-Control-Expose-Headers`.
    Cors,
    /// `X-Forwarded-For`, `-Proto` or `-Host`.
    Forwarded,
    Other,
}

/// `name` is a token (`httparse` has read it as one). Setting bit 5 of a token's byte lower-cases
/// a letter and leaves `-` as it is, and turns no other token byte into either, so one OR and
/// one comparison per byte, without a branch, tell a known name in any case.
pub fn known(name: &[u8]) -> Known {
    // The first byte alone rules out most names of a known one's length.
    let is = |known: &str| {
        let known = known.as_bytes();
        (name[0] | 0x20) == known[0]
            && name
                .iter()
                .zip(known)
                .fold(0, |differ, (b, k)| differ | ((b | 0x20) ^ k))
                == 0
    };
    match name.len() {
        2 if is("te") => Known::HopByHop,
        4 if is("host") => Known::Host,
        4 if is("date") => Known::Date,
        6 if is("expect") => Known::Expect,
        7 if is("upgrade") => Known::Upgrade,
        7 if is("trailer") => Known::HopByHop,
        10 if is("connection") => Known::Connection,
        10 if is("keep-alive") => Known::HopByHop,
        12 if is("x-sync-event") => Known::XSyncEvent,
        13 if is("cache-control") => Known::CacheControl,
        13 if is("x-sync-client") => Known::XSyncClient,
        14 if is("content-length") => Known::ContentLength,
        15 if is("x-sync-position") => Known::XSyncPosition,
        15 if is("x-forwarded-for") => Known::Forwarded,
        16 if is("proxy-connection") => Known::HopByHop,
        16 if is("x-forwarded-host") => Known::Forwarded,
        17 if is("transfer-encoding") => Known::TransferEncoding,
        17 if is("x-forwarded-proto") => Known::Forwarded,
        18 if is("proxy-authenticate") => Known::HopByHop,
        19 if is("proxy-authorization") => Known::HopByHop,
        27 if is("access-control-allow-origin") => Known::Cors,
        29 if is("access-control-expose-headers") => Known::Cors,
        _ => Known::Other,
    }
}

/// What a `Connection` header says, token by token.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    /// It names another header, which is then of this hop only.
    pub names_others: bool,
}

impl ConnectionTokens {
    pub fn read(&mut self, value: &[u8]) {
        for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !token.is_empty() {
                self.names_others = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_known_whatever_their_case_and_others_are_not() {
        assert_eq!(known(b"Content-Length"), Known::ContentLength);
        assert_eq!(known(b"HOST"), Known::Host);
        assert_eq!(known(b"x-Forwarded-Proto"), Known::Forwarded);
        assert_eq!(known(b"Proxy-Authorization"), Known::HopByHop);
        assert_eq!(known(b"X-Sync-Client"), Known::XSyncClient);
        // Same length as a known name, different letters.
        assert_eq!(known(b"hose"), Known::Other);
        assert_eq!(known(b"content-lengthx"), Known::Other);
        assert_eq!(known(b"Content-Type"), Known::Other);
        // Token bytes that are neither letters nor `-` never pass for one.
        assert_eq!(known(b"Content_Length"), Known::Other);
        assert_eq!(known(b"x.sync.client"), Known::Other);
    }

    #[test]
    fn connection_tokens_are_read_one_by_one() {
        let mut t = ConnectionTokens::default();
        t.read(b"Keep-Alive, ");
        assert!(t.keep_alive && !t.close && !t.names_others);
        t.read(b" close ,x-secret");
        assert!(t.close && t.names_others);
    }
}
