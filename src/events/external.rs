//! Events the application publishes itself: the `X-Sync-Event` response header and `POST /publish`.

use super::{Data, EmitContext, EventDraft, Text};
use crate::ws::protocol::valid_channel;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct External {
    channel: Option<String>,
    channels: Option<Vec<String>>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Data,
    #[serde(default)]
    invalidate: Vec<Vec<String>>,
    resource: Option<String>,
    resource_id: Option<String>,
}

/// Parses `{"channel":"user:7","type":"…","data":{…},"invalidate":[[…]]}` (or `"channels":[…]`).
/// The error says what is wrong in words a backend developer can act on.
pub fn parse(json: &[u8], ctx: &EmitContext<'_>) -> Result<EventDraft, String> {
    let ext: External = serde_json::from_slice(json).map_err(|e| {
        format!(
            "invalid event JSON ({e}); expected {{\"channel\":\"…\",\"type\":\"…\",\"data\":…,\"invalidate\":[[…]]}}"
        )
    })?;
    let mut channels = ext.channels.unwrap_or_default();
    channels.extend(ext.channel);
    if channels.is_empty() {
        return Err("the event needs a \"channel\" (or \"channels\")".into());
    }
    if let Some(bad) = channels.iter().find(|c| !valid_channel(c)) {
        return Err(format!(
            "invalid channel {bad:?}: 1 to 200 printable characters, no spaces, commas or '='"
        ));
    }
    if ext.event_type.is_empty() {
        return Err("\"type\" must not be empty".into());
    }
    Ok(EventDraft {
        event_type: ext.event_type.into(),
        channels: channels.into_iter().map(Text::from).collect(),
        resource: ext.resource.map(Text::from),
        resource_id: ext.resource_id,
        action: None,
        invalidate: ext
            .invalidate
            .into_iter()
            .map(|key| key.into_iter().map(Text::from).collect())
            .collect(),
        data: ext.data,
        actor: ctx.actor.cloned(),
        ts: ctx.ts,
        origin_client: ctx.origin_client.cloned(),
        prerendered: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_publish_body_parses() {
        let body = br#"{"channel":"user:7","type":"notification_created","data":{"t":1},"invalidate":[["notifications"]]}"#;
        let d = parse(body, &EmitContext::default()).unwrap();
        assert_eq!(*d.channels, ["user:7"]);
        assert_eq!(*d.invalidate, vec![vec!["notifications".to_owned()]]);
        assert_eq!(d.data, serde_json::json!({"t":1}));
    }

    #[test]
    fn published_data_is_kept_on_one_line_and_null_is_no_data() {
        let ctx = EmitContext::default();
        let pretty = b"{\"channel\":\"a\",\"type\":\"x\",\"data\": {\n  \"t\": [1,\n 2]\n}}";
        let d = parse(pretty, &ctx).unwrap();
        assert_eq!(d.data.as_json(), r#"{"t":[1,2]}"#);
        let d = parse(br#"{"channel":"a","type":"x","data":null}"#, &ctx).unwrap();
        assert_eq!(d.data, Data::NULL);
        assert_eq!(d.data.as_json(), "null");
        let d = parse(br#"{"channel":"a","type":"x","data":"s"}"#, &ctx).unwrap();
        assert_eq!(d.data.as_json(), r#""s""#);
    }

    #[test]
    fn bad_bodies_are_explained() {
        let ctx = EmitContext::default();
        assert!(
            parse(b"{", &ctx)
                .unwrap_err()
                .contains("invalid event JSON")
        );
        assert!(
            parse(br#"{"type":"x"}"#, &ctx)
                .unwrap_err()
                .contains("channel")
        );
        assert!(
            parse(br#"{"channel":"a b","type":"x"}"#, &ctx)
                .unwrap_err()
                .contains("invalid channel")
        );
        assert!(
            parse(br#"{"channel":"a","type":"x","extra":1}"#, &ctx)
                .unwrap_err()
                .contains("unknown field")
        );
    }
}
