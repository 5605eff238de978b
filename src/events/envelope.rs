//! The JSON envelope of SPEC, serialized once per (event, channel) and shared by every subscriber.

use bytes::Bytes;
use serde::Serialize;

use super::EventDraft;

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    channel: &'a str,
    seq: u64,
    id: &'a str,
    resource: Option<&'a str>,
    resource_id: Option<&'a str>,
    action: Option<&'a str>,
    invalidate: &'a [Vec<String>],
    data: &'a serde_json::Value,
    actor: Option<&'a str>,
    ts: u64,
}

/// Serializes the frame a subscriber of `channel` receives.
pub fn serialize(draft: &EventDraft, channel: &str, seq: u64, id: &str) -> Bytes {
    let envelope = Envelope {
        event_type: &draft.event_type,
        channel,
        seq,
        id,
        resource: draft.resource.as_deref(),
        resource_id: draft.resource_id.as_deref(),
        action: draft.action.as_deref(),
        invalidate: &draft.invalidate,
        data: &draft.data,
        actor: draft.actor.as_deref(),
        ts: draft.ts,
    };
    // Serializing plain strings, numbers and an already-valid Value cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_every_spec_field() {
        let draft = EventDraft {
            event_type: "project_created".into(),
            channels: vec!["projects".into()],
            resource: Some("projects".into()),
            resource_id: Some("42".into()),
            action: Some("created".into()),
            invalidate: vec![vec!["projects".into()], vec!["project".into(), "42".into()]],
            data: serde_json::Value::Null,
            actor: Some("7".into()),
            ts: 1_764_000_000_123,
            origin_client: Some("c1".into()),
        };
        let frame = serialize(&draft, "projects", 17, "01JD3");
        let v: serde_json::Value = serde_json::from_slice(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"project_created","channel":"projects","seq":17,"id":"01JD3",
                "resource":"projects","resource_id":"42","action":"created",
                "invalidate":[["projects"],["project","42"]],"data":null,"actor":"7","ts":1764000000123u64})
        );
    }
}
