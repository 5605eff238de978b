//! The JSON envelope of SPEC, serialized once per (event, channel) and shared by every subscriber.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{EventDraft, Text};

/// Serializes the frame a subscriber of `channel` receives.
///
/// Written by hand rather than through serde: the shape is fixed, `data` is already JSON text,
/// and most strings need no escaping, so this is one pass of copies (a quarter of what serde's
/// struct serializer cost per event).
pub fn serialize(draft: &EventDraft, channel: &str, seq: u64, id: &str) -> Utf8Bytes {
    let mut out = String::with_capacity(capacity(draft));
    write(&mut out, draft, channel, seq, id);
    Utf8Bytes::from(out)
}

/// An envelope as a WebSocket text frame (unmasked, final), with its JSON text inside.
///
/// Why one buffer: a socket that takes an event directly is written the whole frame
/// (`ws::outlet`), and an SSE stream or a queued socket the text behind its header; keeping a
/// second copy for either cost an allocation and a copy per event. The buffer is allocated at
/// its exact size, so `Bytes` takes it over without an allocation of its own.
#[derive(Debug, Clone)]
pub struct Framed {
    ws: Bytes,
    /// Where the JSON text starts (the header's length).
    text_at: usize,
}

impl Framed {
    /// Frames JSON text made elsewhere (room messages, events read back from Redis).
    pub fn from_text(text: &str) -> Framed {
        frame_of(&[text])
    }

    /// The whole WebSocket frame.
    pub fn ws(&self) -> &[u8] {
        &self.ws
    }

    /// The JSON text, sharing the frame's buffer.
    pub fn text(&self) -> Bytes {
        self.ws.slice(self.text_at..)
    }

    /// The JSON text as a tungstenite message payload. It checks the text is UTF-8 again (it
    /// always is: every constructor takes a `str`), so it is for the queued path, not the
    /// direct one.
    pub fn utf8(&self) -> Utf8Bytes {
        Utf8Bytes::try_from(self.text()).unwrap_or_default()
    }

    /// The JSON text as a `str`, checked again as `utf8` is.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.ws[self.text_at..]).unwrap_or_default()
    }
}

/// The frame carrying `parts` one after the other as its text.
fn frame_of(parts: &[&str]) -> Framed {
    let len = parts.iter().map(|p| p.len()).sum();
    let (header, header_len) = ws_header(len);
    // Exactly this capacity: a `Vec` whose length is its capacity becomes `Bytes` as it is.
    let mut out = Vec::with_capacity(header_len + len);
    out.extend_from_slice(&header[..header_len]);
    for part in parts {
        out.extend_from_slice(part.as_bytes());
    }
    Framed {
        ws: Bytes::from(out),
        text_at: header_len,
    }
}

/// The longest frame header (2 + 8 bytes).
const MAX_HEADER: usize = 10;

/// Serializes the envelope as its WebSocket frame.
pub fn framed(draft: &EventDraft, channel: &str, seq: u64, id: &str) -> Framed {
    Unnumbered::new(draft, channel, id).framed(seq)
}

/// An envelope written but for its `seq`, which only the channel's lock can give.
///
/// Why: the broker numbers an event, stores it and hands it to subscribers under its channel's
/// lock, which every loop publishing on the channel takes; written under the lock, the
/// envelope's ~750 instructions were time the other loops could wait through. Written before,
/// what is left under the lock is the frame's allocation and three copies.
pub struct Unnumbered {
    /// Everything before the `seq` digits, then everything after them, in a buffer this thread
    /// reuses.
    text: String,
    /// Where the `seq` digits go.
    at: usize,
}

thread_local! {
    /// The last `Unnumbered`'s buffer, kept for the next one on this thread.
    static SCRATCH: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

/// Past this a scratch buffer is freed rather than kept (one large `data` must not pin memory).
const SCRATCH_KEPT: usize = 64 * 1024;

impl Unnumbered {
    pub fn new(draft: &EventDraft, channel: &str, id: &str) -> Unnumbered {
        let mut text = SCRATCH.take();
        text.clear();
        text.reserve(capacity(draft));
        write_before_seq(&mut text, draft, channel);
        let at = text.len();
        write_after_seq(&mut text, draft, id);
        Unnumbered { text, at }
    }

    /// The text before the `seq`'s digits (ending `"seq":`) and after them.
    pub fn halves(&self) -> (&str, &str) {
        self.text.split_at(self.at)
    }

    /// The envelope with `seq`, as its frame.
    pub fn framed(&self, seq: u64) -> Framed {
        let (before, after) = self.halves();
        frame_of(&[before, itoa::Buffer::new().format(seq), after])
    }
}

impl Drop for Unnumbered {
    fn drop(&mut self) {
        if self.text.capacity() <= SCRATCH_KEPT {
            SCRATCH.set(std::mem::take(&mut self.text));
        }
    }
}

/// The header of an unmasked, final text frame carrying `len` bytes, and how long it is.
fn ws_header(len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut header = [0u8; MAX_HEADER];
    header[0] = 0x81; // FIN, text
    let used = match len {
        0..=125 => {
            header[1] = len as u8;
            2
        }
        126..=0xffff => {
            header[1] = 126;
            header[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            header[1] = 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (header, used)
}

fn capacity(draft: &EventDraft) -> usize {
    256 + draft.data.as_json().len()
}

fn write(out: &mut String, draft: &EventDraft, channel: &str, seq: u64, id: &str) {
    write_before_seq(out, draft, channel);
    number(out, seq);
    write_after_seq(out, draft, id);
}

/// The envelope up to its `seq`'s digits.
fn write_before_seq(out: &mut String, draft: &EventDraft, channel: &str) {
    match draft.prerendered.0.as_deref() {
        Some(fixed) => out.push_str(&fixed.head),
        None => write_head(out, &draft.event_type),
    }
    push_string(out, channel);
    out.push_str(",\"seq\":");
}

/// The envelope after its `seq`'s digits.
fn write_after_seq(out: &mut String, draft: &EventDraft, id: &str) {
    let fixed = draft.prerendered.0.as_deref();
    out.push_str(",\"id\":");
    push_string(out, id);
    match fixed {
        Some(fixed) => out.push_str(&fixed.resource),
        None => write_resource(out, draft.resource.as_ref()),
    }
    match &draft.resource_id {
        Some(id) => push_string(out, id),
        None => out.push_str("null"),
    }
    match fixed.and_then(|fixed| fixed.keys.as_deref()) {
        Some(keys) => out.push_str(keys),
        None => write_keys(out, draft.action.as_ref(), &draft.invalidate),
    }
    out.push_str(draft.data.as_json());
    out.push_str(",\"actor\":");
    optional(out, draft.actor.as_ref());
    out.push_str(",\"ts\":");
    number(out, draft.ts);
    out.push('}');
}

/// The envelope's text for the fields a plan knows before any request: its type, resource and
/// action, and its invalidation keys when they do not depend on the answer.
///
/// Why: a rule's event writes the same type, resource, action and keys into every envelope,
/// and writing them field by field was most of the envelope's cost (about 1.1k instructions a
/// POST); written once per plan, each event copies three runs of text. The text is made by the
/// same functions `write` uses for a draft without it, so both give the same bytes.
#[derive(Debug)]
pub(super) struct Fixed {
    /// `{"type":T,"channel":`
    head: String,
    /// `,"resource":R,"resource_id":`
    resource: String,
    /// `,"action":A,"invalidate":[…],"data":`, or `None` when the keys name the answer's id.
    keys: Option<String>,
}

impl Fixed {
    /// `keys`: the invalidation keys every event of the plan carries, if it knows them now.
    pub(super) fn new(
        event_type: &Text,
        resource: Option<&Text>,
        action: Option<&Text>,
        keys: Option<&[Vec<Text>]>,
    ) -> Fixed {
        let mut head = String::new();
        write_head(&mut head, event_type);
        let mut resource_text = String::new();
        write_resource(&mut resource_text, resource);
        Fixed {
            head,
            resource: resource_text,
            keys: keys.map(|keys| {
                let mut out = String::new();
                write_keys(&mut out, action, keys);
                out
            }),
        }
    }
}

fn write_head(out: &mut String, event_type: &Text) {
    out.push_str("{\"type\":");
    push_text(out, event_type);
    out.push_str(",\"channel\":");
}

fn write_resource(out: &mut String, resource: Option<&Text>) {
    out.push_str(",\"resource\":");
    optional(out, resource);
    out.push_str(",\"resource_id\":");
}

fn write_keys(out: &mut String, action: Option<&Text>, invalidate: &[Vec<Text>]) {
    out.push_str(",\"action\":");
    optional(out, action);
    out.push_str(",\"invalidate\":[");
    for (i, key) in invalidate.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, part) in key.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_text(out, part);
        }
        out.push(']');
    }
    out.push_str("],\"data\":");
}

/// Appends `s` as a JSON string.
pub(super) fn push_string(out: &mut String, s: &str) {
    push_json_string(out, s, is_plain(s));
}

/// Appends a `Text`, which knows whether it needs escaping.
fn push_text(out: &mut String, t: &Text) {
    push_json_string(out, t, t.is_plain());
}

/// `plain`: `s` has nothing to escape (`is_plain`), so it is copied between quotes.
#[inline]
fn push_json_string(out: &mut String, s: &str, plain: bool) {
    if plain {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        // A string always has a JSON form.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn optional(out: &mut String, t: Option<&Text>) {
    match t {
        Some(t) => push_text(out, t),
        None => out.push_str("null"),
    }
}

/// True when `s` has no byte JSON must escape (a control character, `"` or `\`). Eight bytes
/// at a time, the last few padded into a word of their own: every envelope checks about a
/// hundred bytes of names, ids and keys this way, most of them shorter than eight bytes.
pub(super) fn is_plain(s: &str) -> bool {
    let mut chunks = s.as_bytes().chunks_exact(8);
    let mut special = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        special |= needs_escape(u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    let mut word = [b' '; 8];
    word[..rest.len()].copy_from_slice(rest);
    special |= needs_escape(u64::from_le_bytes(word));
    special == 0
}

/// Non-zero when some byte of the word is a control character, `"` or `\`.
fn needs_escape(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Non-zero exactly when some byte of `x` is below `n` (n <= 128); bytes of multi-byte UTF-8
    // characters (0x80 and up) never count.
    let any_below = |x: u64, n: u64| x.wrapping_sub(n * ONES) & !x & HIGHS;
    any_below(x, 0x20)
        | any_below(x ^ (u64::from(b'"') * ONES), 1)
        | any_below(x ^ (u64::from(b'\\') * ONES), 1)
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
    fn a_framed_envelope_is_its_text_behind_a_text_frame_header_at_every_length_class() {
        // Payloads around the 125 / 65,535 byte steps between header lengths.
        for data_len in [0, 10, 120, 200, 65_300, 65_600, 70_000] {
            let data = serde_json::json!({ "s": "x".repeat(data_len) });
            let draft = EventDraft {
                event_type: "t".into(),
                channels: vec!["c".into()].into(),
                resource: None,
                resource_id: None,
                action: None,
                invalidate: vec![].into(),
                data: Data::from_value(&data),
                actor: None,
                ts: 5,
                origin_client: None,
                prerendered: Default::default(),
            };
            let text = serialize(&draft, "c", 3, "id");
            for framed in [framed(&draft, "c", 3, "id"), Framed::from_text(&text)] {
                assert_eq!(framed.as_str(), text.as_str());
                assert_eq!(&framed.text()[..], text.as_bytes());
                assert_eq!(framed.utf8(), text);
                let ws = framed.ws();
                assert_eq!(ws[0], 0x81, "FIN and text");
                let (len, header) = match ws[1] {
                    126 => (usize::from(u16::from_be_bytes([ws[2], ws[3]])), 4),
                    127 => (
                        u64::from_be_bytes(ws[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    n => (usize::from(n), 2),
                };
                assert_eq!(len, text.len(), "{data_len}");
                assert_eq!(&ws[header..], text.as_bytes());
                // The shortest header is used, as RFC 6455 requires.
                let expected = match text.len() {
                    0..=125 => 2,
                    126..=0xffff => 4,
                    _ => 10,
                };
                assert_eq!(header, expected);
            }
        }
    }

    #[test]
    fn an_envelope_written_before_its_seq_is_the_same_text_for_any_seq() {
        let draft = |data: serde_json::Value| EventDraft {
            event_type: "project_created".into(),
            channels: vec!["projects".into()].into(),
            resource: Some("projects".into()),
            resource_id: Some("7".into()),
            action: Some("created".into()),
            invalidate: vec![vec!["projects".into()]].into(),
            data: Data::from_value(&data),
            actor: Some("u\"1".into()),
            ts: 5,
            origin_client: None,
            prerendered: Default::default(),
        };
        // The second envelope reuses the first's buffer on this thread, the third a buffer
        // that grew for a long one.
        let long = draft(serde_json::json!({ "s": "x".repeat(70_000) }));
        let short = draft(serde_json::json!({ "id": 7 }));
        for d in [&short, &short, &long, &short] {
            let unnumbered = Unnumbered::new(d, "projects", "id-1");
            for seq in [0, 1, 99, 12_345_678_901, u64::MAX] {
                let text = serialize(d, "projects", seq, "id-1");
                assert_eq!(unnumbered.framed(seq).as_str(), text.as_str());
            }
        }
    }

    #[test]
    fn envelope_has_every_spec_field() {
        let draft = EventDraft {
            event_type: "project_created".into(),
            channels: vec!["projects".into()].into(),
            resource: Some("projects".into()),
            resource_id: Some("42".into()),
            action: Some("created".into()),
            invalidate: vec![vec!["projects".into()], vec!["project".into(), "42".into()]].into(),
            data: Data::NULL,
            actor: Some("7".into()),
            ts: 1_764_000_000_123,
            origin_client: Some("c1".into()),
            prerendered: Default::default(),
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
            channels: vec!["c".into()].into(),
            resource: None,
            resource_id: Some("line\nbreak\ttab\u{1}é✓".into()),
            action: None,
            invalidate: vec![vec![], vec!["a\"b".into()]].into(),
            data: Data::from_value(&serde_json::json!({"n":[1,2.5,"x"]})),
            actor: None,
            ts: 0,
            origin_client: None,
            prerendered: Default::default(),
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
