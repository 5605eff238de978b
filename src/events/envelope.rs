//! The JSON envelope of SPEC, serialized once per (event, channel) and shared by every subscriber.

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::EventDraft;

/// Serializes the frame a subscriber of `channel` receives.
///
/// Written by hand rather than through serde: the shape is fixed, `data` is already JSON text,
/// and most strings need no escaping, so this is one pass of copies (a quarter of what serde's
/// struct serializer cost per event).
pub fn serialize(draft: &EventDraft, channel: &str, seq: u64, id: &str) -> Utf8Bytes {
    let mut out = String::with_capacity(256 + draft.data.as_json().len());
    out.push_str("{\"type\":");
    push_string(&mut out, &draft.event_type);
    out.push_str(",\"channel\":");
    push_string(&mut out, channel);
    out.push_str(",\"seq\":");
    number(&mut out, seq);
    out.push_str(",\"id\":");
    push_string(&mut out, id);
    out.push_str(",\"resource\":");
    optional(&mut out, draft.resource.as_deref());
    out.push_str(",\"resource_id\":");
    optional(&mut out, draft.resource_id.as_deref());
    out.push_str(",\"action\":");
    optional(&mut out, draft.action.as_deref());
    out.push_str(",\"invalidate\":[");
    for (i, key) in draft.invalidate.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, part) in key.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_string(&mut out, part);
        }
        out.push(']');
    }
    out.push_str("],\"data\":");
    out.push_str(draft.data.as_json());
    out.push_str(",\"actor\":");
    optional(&mut out, draft.actor.as_deref());
    out.push_str(",\"ts\":");
    number(&mut out, draft.ts);
    out.push('}');
    Utf8Bytes::from(out)
}

/// Appends `s` as a JSON string.
pub(super) fn push_string(out: &mut String, s: &str) {
    if is_plain(s) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // A string always has a JSON form.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn optional(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_string(out, s),
        None => out.push_str("null"),
    }
}

/// True when `s` has no byte JSON must escape (a control character, `"` or `\`). Eight bytes
/// at a time: every envelope checks about a hundred bytes of names, ids and keys this way.
fn is_plain(s: &str) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is below `n` (n <= 128); bytes of multi-byte UTF-8
    // characters (0x80 and up) never count.
    let any_below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGHS;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let special = any_below(x, 0x20)
            | any_below(x ^ (u64::from(b'"') * ONES), 1)
            | any_below(x ^ (u64::from(b'\\') * ONES), 1);
        if special != 0 {
            return false;
        }
    }
    chunks
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// Appends `n` in decimal. `itoa` writes two digits per step from a table, where the formatting
/// machinery (or a digit-by-digit loop) took a few hundred instructions for a millisecond `ts`;
/// it runs twice per envelope and once per `X-Sync-Position` entry.
pub(crate) fn number(out: &mut String, n: u64) {
    out.push_str(itoa::Buffer::new().format(n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Data;

    #[test]
    fn plain_strings_are_told_apart_from_ones_to_escape_at_every_position() {
        let slow = |s: &str| s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        for len in 0..20 {
            for at in 0..len {
                for special in [0u8, 0x1f, b'"', b'\\', 0x20, b'!', b'#', b'[', b']', 0x7f] {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = special;
                    let s = String::from_utf8(bytes).unwrap();
                    assert_eq!(is_plain(&s), slow(&s), "{s:?}");
                }
            }
            let s = "é✓".repeat(len);
            assert!(is_plain(&s));
        }
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 1_764_000_000_123, u64::MAX] {
            let mut out = String::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn envelope_has_every_spec_field() {
        let draft = EventDraft {
            event_type: "project_created".into(),
            channels: vec!["projects".into()],
            resource: Some("projects".into()),
            resource_id: Some("42".into()),
            action: Some("created".into()),
            invalidate: vec![vec!["projects".into()], vec!["project".into(), "42".into()]],
            data: Data::NULL,
            actor: Some("7".into()),
            ts: 1_764_000_000_123,
            origin_client: Some("c1".into()),
        };
        let frame = serialize(&draft, "projects", 17, "01JD3");
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"project_created","channel":"projects","seq":17,"id":"01JD3",
                "resource":"projects","resource_id":"42","action":"created",
                "invalidate":[["projects"],["project","42"]],"data":null,"actor":"7","ts":1764000000123u64})
        );
    }

    #[test]
    fn strings_that_need_escaping_are_escaped_and_data_is_copied_as_is() {
        let draft = EventDraft {
            event_type: "quote\"back\\slash".into(),
            channels: vec!["c".into()],
            resource: None,
            resource_id: Some("line\nbreak\ttab\u{1}é✓".into()),
            action: None,
            invalidate: vec![vec![], vec!["a\"b".into()]],
            data: Data::from_value(&serde_json::json!({"n":[1,2.5,"x"]})),
            actor: None,
            ts: 0,
            origin_client: None,
        };
        let frame = serialize(&draft, "c", u64::MAX, "id");
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "quote\"back\\slash");
        assert_eq!(v["resource_id"], "line\nbreak\ttab\u{1}é✓");
        assert_eq!(v["invalidate"], serde_json::json!([[], ["a\"b"]]));
        assert_eq!(v["data"], serde_json::json!({"n":[1,2.5,"x"]}));
        assert_eq!(v["seq"], u64::MAX);
        assert_eq!(v["ts"], 0);
        assert_eq!(v["resource"], serde_json::Value::Null);
        assert!(!frame.contains('\n'));
    }
}
