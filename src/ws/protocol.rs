//! The generic socket protocol of SPEC: client ops in, server messages out.
//!
//! Parsing never fails hard: any bad frame becomes a `ProtocolError` that the connection answers with
//! an `error` frame while keeping the connection open.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A well-formed client message.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientOp {
    Subscribe {
        channel: String,
        since: Option<u64>,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        event_type: String,
        data: Value,
    },
    Ping,
}

/// Why a client frame was refused; becomes `{"op":"error",…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: ErrorCode,
    pub message: String,
    /// The op the error answers, when known.
    pub op_ref: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Forbidden,
    BadRequest,
    NotFound,
    TooMany,
    /// The broker cannot take the request right now (Redis down); retry later.
    Unavailable,
}

/// Longest channel name accepted; names are map keys and metric-free, but still bounded.
pub const MAX_CHANNEL_LEN: usize = 200;

#[derive(Deserialize)]
struct Wire {
    op: Option<Value>,
    channel: Option<Value>,
    since: Option<Value>,
    #[serde(rename = "type")]
    event_type: Option<Value>,
    data: Option<Value>,
}

impl ProtocolError {
    pub fn new(code: ErrorCode, message: impl Into<String>, op_ref: Option<&str>) -> Self {
        ProtocolError {
            code,
            message: message.into(),
            op_ref: op_ref.map(str::to_owned),
        }
    }

    fn bad(message: impl Into<String>, op_ref: Option<&str>) -> Self {
        Self::new(ErrorCode::BadRequest, message, op_ref)
    }
}

pub fn parse(text: &str) -> Result<ClientOp, ProtocolError> {
    let wire: Wire = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => serde_json::from_value(Value::Object(map))
            .map_err(|e| ProtocolError::bad(format!("invalid message: {e}"), None))?,
        Ok(_) => {
            return Err(ProtocolError::bad(
                "expected a JSON object with an \"op\"",
                None,
            ));
        }
        Err(e) => return Err(ProtocolError::bad(format!("invalid JSON: {e}"), None)),
    };
    let op = match &wire.op {
        Some(Value::String(op)) => op.as_str(),
        Some(_) => return Err(ProtocolError::bad("\"op\" must be a string", None)),
        None => return Err(ProtocolError::bad("missing \"op\"", None)),
    };
    match op {
        "subscribe" => {
            let channel = channel(&wire, op)?;
            let since = match wire.since {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
                Some(_) => {
                    return Err(ProtocolError::bad(
                        "\"since\" must be a non-negative integer seq",
                        Some(op),
                    ));
                }
            };
            Ok(ClientOp::Subscribe { channel, since })
        }
        "unsubscribe" => Ok(ClientOp::Unsubscribe {
            channel: channel(&wire, op)?,
        }),
        "publish" => {
            let channel = channel(&wire, op)?;
            let event_type = match &wire.event_type {
                Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_CHANNEL_LEN => t.clone(),
                _ => {
                    return Err(ProtocolError::bad(
                        "publish needs a non-empty string \"type\"",
                        Some(op),
                    ));
                }
            };
            Ok(ClientOp::Publish {
                channel,
                event_type,
                data: wire.data.unwrap_or(Value::Null),
            })
        }
        "ping" => Ok(ClientOp::Ping),
        other => Err(ProtocolError::bad(
            format!("unknown op {other:?}; allowed: subscribe, unsubscribe, publish, ping"),
            Some(other),
        )),
    }
}

fn channel(wire: &Wire, op: &str) -> Result<String, ProtocolError> {
    match &wire.channel {
        Some(Value::String(c)) if valid_channel(c) => Ok(c.clone()),
        Some(Value::String(_)) => Err(ProtocolError::bad(
            format!(
                "invalid channel name: 1 to {MAX_CHANNEL_LEN} printable characters, no spaces, commas or '='"
            ),
            Some(op),
        )),
        _ => Err(ProtocolError::bad(
            format!("{op} needs a string \"channel\""),
            Some(op),
        )),
    }
}

/// Channel names travel in `X-Sync-Position` and SSE ids as `name=seq,…`, so those separators are out.
pub fn valid_channel(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CHANNEL_LEN
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ',' && c != '=')
}

/// Messages the server sends besides events (events are pre-serialized envelopes).
#[derive(Debug, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ServerMsg<'a> {
    Welcome {
        client_id: &'a str,
        user: Option<&'a str>,
    },
    Subscribed {
        channel: &'a str,
        seq: u64,
        recovered: bool,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Reset {
        channel: &'a str,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref")]
        op_ref: Option<&'a str>,
    },
    Pong,
}

impl ServerMsg<'_> {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl<'a> From<&'a ProtocolError> for ServerMsg<'a> {
    fn from(e: &'a ProtocolError) -> Self {
        ServerMsg::Error {
            code: e.code,
            message: &e.message,
            op_ref: e.op_ref.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_op() {
        assert_eq!(
            parse(r#"{"op":"subscribe","channel":"projects","since":17}"#),
            Ok(ClientOp::Subscribe {
                channel: "projects".into(),
                since: Some(17)
            })
        );
        assert_eq!(
            parse(r#"{"op":"unsubscribe","channel":"projects"}"#),
            Ok(ClientOp::Unsubscribe {
                channel: "projects".into()
            })
        );
        assert_eq!(parse(r#"{"op":"ping"}"#), Ok(ClientOp::Ping));
        assert!(matches!(
            parse(r#"{"op":"publish","channel":"room:x","type":"t","data":{"a":1}}"#),
            Ok(ClientOp::Publish { .. })
        ));
    }

    #[test]
    fn malformed_frames_are_explained() {
        let cases = [
            ("not json", "invalid JSON", None),
            ("[1,2]", "JSON object", None),
            (r#"{"channel":"x"}"#, "missing \"op\"", None),
            (r#"{"op":"jump"}"#, "unknown op", Some("jump")),
            (
                r#"{"op":"subscribe"}"#,
                "needs a string \"channel\"",
                Some("subscribe"),
            ),
            (
                r#"{"op":"subscribe","channel":"a b"}"#,
                "invalid channel",
                Some("subscribe"),
            ),
            (
                r#"{"op":"subscribe","channel":"a","since":-1}"#,
                "since",
                Some("subscribe"),
            ),
        ];
        for (text, needle, op_ref) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{text}");
            assert!(err.message.contains(needle), "{text}: {}", err.message);
            assert_eq!(err.op_ref.as_deref(), op_ref, "{text}");
        }
    }

    #[test]
    fn server_messages_match_spec_shapes() {
        let err = ProtocolError::new(ErrorCode::TooMany, "too many", Some("subscribe"));
        assert_eq!(
            ServerMsg::from(&err).to_json(),
            r#"{"op":"error","code":"too_many","message":"too many","ref":"subscribe"}"#
        );
        assert_eq!(ServerMsg::Pong.to_json(), r#"{"op":"pong"}"#);
        assert_eq!(
            ServerMsg::Subscribed {
                channel: "p",
                seq: 3,
                recovered: true
            }
            .to_json(),
            r#"{"op":"subscribed","channel":"p","seq":3,"recovered":true}"#
        );
    }
}
