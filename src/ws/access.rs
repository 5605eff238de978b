//! Who may read which channel. Kept apart from the socket loop so SSE and WebSocket share one rule.

use super::protocol::{ErrorCode, ProtocolError};

/// Channels of collaboration rooms; client broadcasts are allowed only there.
pub const ROOM_PREFIX: &str = "room:";

/// `user:{id}` channels are private to that user; everything else is readable by any caller the
/// origin check and authentication let in.
pub fn may_read(
    channel: &str,
    user: Option<&str>,
    user_prefix: &str,
    op: &str,
) -> Result<(), ProtocolError> {
    match channel.strip_prefix(user_prefix) {
        Some(owner) if Some(owner) != user => Err(ProtocolError::new(
            ErrorCode::Forbidden,
            format!("{channel:?} belongs to another user"),
            Some(op),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_channels_are_private() {
        assert!(may_read("user:7", Some("7"), "user:", "subscribe").is_ok());
        assert!(may_read("user:7", Some("8"), "user:", "subscribe").is_err());
        assert!(may_read("user:7", None, "user:", "subscribe").is_err());
        assert!(may_read("projects", None, "user:", "subscribe").is_ok());
    }
}
