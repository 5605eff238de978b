//! Reading the bounded copy of a response body: ids, `{body.x}` fields and rule `data`.
//!
//! Everything here is forgiving by design: a body that is truncated, not JSON, or shaped differently
//! than a rule expects yields "no value" and the matcher decides what to drop. Nothing here decides
//! *whether* a body is kept; that is `EventPlan::wants_body`.
//!
//! The body is validated once and then read in place, never built into a `serde_json::Value`: a
//! rule reads two or three fields of it, and building the tree (a map, a string per key) and
//! dropping it again cost more than the rest of turning a POST into an event. Values are copied
//! as the API wrote them: `data` carries the API's own JSON text, and a number keeps its spelling
//! (`1.50` stays `1.50` in an id or a template).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::json_scan::{self, Member, Top};
use super::{BodyPrefix, Data};

/// A complete body that is valid JSON, with its top-level members found in the same pass.
pub(super) struct Doc<'a> {
    text: &'a str,
    /// The members, in order, when the body is an object.
    top: Option<Vec<Member<'a>>>,
    /// No line break anywhere in the body (see `json_scan::Scanned`).
    one_line: bool,
}

/// The text of a valid JSON value inside a `Doc`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Json<'a>(&'a str);

/// The body as JSON, or `None` when it was cut off at `event_body_max_bytes` (half a document would
/// give wrong values, not fewer) or is not JSON (e.g. a 204 or a plain-text answer).
pub(super) fn parse(body: BodyPrefix<'_>) -> Option<Doc<'_>> {
    if !body.complete || body.bytes.is_empty() {
        return None;
    }
    let text = std::str::from_utf8(body.bytes).ok()?;
    let scanned = json_scan::scan(text)?;
    let top = match scanned.top {
        Top::Object(members) => Some(members),
        Top::Other => None,
    };
    Some(Doc {
        text,
        top,
        one_line: scanned.one_line,
    })
}

impl<'a> Doc<'a> {
    /// A top-level member (the last one, if the API repeated it) or array element.
    fn get(&self, key: &str) -> Option<Json<'a>> {
        match &self.top {
            // A key without escapes is compared as written: no `Cow` to make and drop.
            Some(members) => members
                .iter()
                .rev()
                .find(|m| match m.key_escaped {
                    false => m.key == key,
                    true => m.key_text().is_some_and(|k| k == key),
                })
                .map(|m| Json(m.value)),
            None => Json(self.text).child(key),
        }
    }
}

impl<'a> Json<'a> {
    /// The member `key` of an object (the last one, if the API repeated it), or the element at
    /// index `key` of an array.
    fn child(self, key: &str) -> Option<Json<'a>> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        de.deserialize_any(Child { key })
            .ok()
            .flatten()
            .map(|v| Json(v.get()))
    }

    fn scalar(self) -> Scalar<'a> {
        let text = self.0.trim();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<Key<'a>>(text).map_or(Scalar::Other, Scalar::Text),
            Some(b'-' | b'0'..=b'9') => Scalar::Number(text),
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            _ => Scalar::Other,
        }
    }
}

enum Scalar<'a> {
    Text(Key<'a>),
    /// As the API spelled it.
    Number(&'a str),
    Bool(bool),
    /// null, an array or an object.
    Other,
}

/// The value at `path` (`body.a.b` → `["a", "b"]`). A numeric segment also indexes an array, so
/// `{body.items.0.id}` works as a user would expect.
pub(super) fn field<'a>(body: &Doc<'a>, path: &[String]) -> Option<Json<'a>> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(body.get(first)?, |v, key| v.child(key))
}

/// Text for a template: strings unquoted, numbers and booleans printed; null, arrays and objects have
/// no sensible single-token text, so they have no value.
pub(super) fn scalar_text(v: Json<'_>) -> Option<String> {
    match v.scalar() {
        Scalar::Text(s) => Some(s.into_string()),
        Scalar::Number(n) => Some(n.to_owned()),
        Scalar::Bool(b) => Some(b.to_string()),
        Scalar::Other => None,
    }
}

/// Text for a `resource_id`: a string or a number. An empty string is no id (it would make a key
/// like `["project", ""]` that matches nothing the browser cached).
pub(super) fn id_text(v: Json<'_>) -> Option<String> {
    match v.scalar() {
        Scalar::Text(s) if !s.as_str().is_empty() => Some(s.into_string()),
        Scalar::Number(n) => Some(n.to_owned()),
        _ => None,
    }
}

/// The response's top-level `id`, as the REST convention reads it for a POST.
pub(super) fn top_level_id(body: Option<&Doc<'_>>) -> Option<String> {
    body?.get("id").and_then(id_text)
}

/// A JSON pointer such as `/id` or `/project/id`, split into its keys once, when the rule is
/// compiled (RFC 6901: `~1` is `/`, `~0` is `~`).
#[derive(Debug, Clone)]
pub(super) struct Pointer(Option<Vec<String>>);

impl Pointer {
    pub(super) fn parse(pointer: &str) -> Pointer {
        if pointer.is_empty() {
            return Pointer(Some(Vec::new()));
        }
        Pointer(
            pointer
                .strip_prefix('/')
                .map(|keys| keys.split('/').map(|k| unescape(k).into_owned()).collect()),
        )
    }
}

/// The id at `pointer`; the empty pointer is the whole body.
pub(super) fn id_at_pointer(body: Option<&Doc<'_>>, pointer: &Pointer) -> Option<String> {
    let body = body?;
    let keys = pointer.0.as_deref()?;
    let Some((first, rest)) = keys.split_first() else {
        return id_text(Json(body.text));
    };
    let at = rest
        .iter()
        .try_fold(body.get(first)?, |at, key| at.child(key))?;
    id_text(at)
}

/// A JSON pointer token as a key (RFC 6901: `~1` is `/`, `~0` is `~`).
fn unescape(token: &str) -> Cow<'_, str> {
    if token.contains('~') {
        Cow::Owned(token.replace("~1", "/").replace("~0", "~"))
    } else {
        Cow::Borrowed(token)
    }
}

/// A rule's `data` list, ready to copy: each field once, in order, with its key already written
/// as JSON.
#[derive(Debug, Clone, Default)]
pub(super) struct DataFields(Vec<(String, String)>);

impl DataFields {
    pub(super) fn new(names: &[String]) -> DataFields {
        let mut fields: Vec<(String, String)> = Vec::with_capacity(names.len());
        for name in names {
            if fields.iter().any(|(n, _)| n == name) {
                continue;
            }
            let mut key = String::with_capacity(name.len() + 3);
            super::envelope::push_string(&mut key, name);
            key.push(':');
            fields.push((name.clone(), key));
        }
        DataFields(fields)
    }
}

/// A rule's `data`: the listed top-level fields copied into an object, absent ones omitted. `null`
/// when the list is empty, the body is unusable or not an object, or none of the fields exist: an
/// empty object would look like "the resource has no fields", which is a different statement.
pub(super) fn pick_data(body: Option<&Doc<'_>>, fields: &DataFields) -> Data {
    let Some(body) = body.filter(|b| b.top.is_some()) else {
        return Data::NULL;
    };
    let mut out = String::with_capacity(64);
    for (name, key) in &fields.0 {
        let Some(value) = body.get(name) else {
            continue;
        };
        out.push(if out.is_empty() { '{' } else { ',' });
        out.push_str(key);
        out.push_str(value.0);
    }
    if out.is_empty() {
        return Data::NULL;
    }
    out.push('}');
    Data::from_json_text(out, body.one_line)
}

/// An object key or string value, borrowed from the body unless it had escapes.
enum Key<'a> {
    Borrowed(&'a str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_owned(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Finds one member or element, skipping the rest without building anything.
struct Child<'k> {
    key: &'k str,
}

impl<'de> Visitor<'de> for Child<'_> {
    type Value = Option<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or an array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            if key.as_str() == self.key {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let wanted = self.key.parse::<usize>().ok();
        let mut found = None;
        let mut index = 0;
        loop {
            if Some(index) == wanted {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => found = Some(v),
                    None => break,
                }
            } else if seq.next_element::<IgnoredAny>()?.is_none() {
                break;
            }
            index += 1;
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn complete(bytes: &[u8]) -> BodyPrefix<'_> {
        BodyPrefix {
            bytes,
            complete: true,
        }
    }

    fn doc(text: &str) -> Doc<'_> {
        parse(complete(text.as_bytes())).expect("valid JSON")
    }

    #[test]
    fn truncated_or_non_json_bodies_do_not_parse() {
        let truncated = BodyPrefix {
            bytes: br#"{"id":1}"#,
            complete: false,
        };
        assert!(parse(truncated).is_none());
        assert!(parse(complete(b"not json")).is_none());
        assert!(parse(complete(b"")).is_none());
        assert!(parse(complete(br#"{"id":1} trailing"#)).is_none());
        assert!(parse(complete(br#"{"id":1,}"#)).is_none());
        assert!(parse(complete(b" {\"id\":1}\n")).is_some());
    }

    #[test]
    fn fields_print_scalars_and_skip_structures() {
        let body = doc(
            r#"{"a":{"b":"x","n":3,"f":1.50,"t":true,"z":null,"o":{},"l":[{"id":9},{"id":10}],"e":"a\"b"}}"#,
        );
        let text = |p: &[&str]| {
            let path: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            field(&body, &path).and_then(scalar_text)
        };
        assert_eq!(text(&["a", "b"]).as_deref(), Some("x"));
        assert_eq!(text(&["a", "n"]).as_deref(), Some("3"));
        assert_eq!(text(&["a", "f"]).as_deref(), Some("1.50"));
        assert_eq!(text(&["a", "t"]).as_deref(), Some("true"));
        assert_eq!(text(&["a", "e"]).as_deref(), Some("a\"b"));
        assert_eq!(text(&["a", "z"]), None);
        assert_eq!(text(&["a", "o"]), None);
        assert_eq!(text(&["a", "l", "0", "id"]).as_deref(), Some("9"));
        assert_eq!(text(&["a", "l", "1", "id"]).as_deref(), Some("10"));
        assert_eq!(text(&["a", "l", "2", "id"]), None);
        assert_eq!(text(&["a", "l", "x"]), None);
        assert_eq!(text(&["a", "missing"]), None);
        assert_eq!(text(&["a", "b", "deeper"]), None);
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value_like_a_parsed_document() {
        let body = doc(r#"{"id":1,"id":2}"#);
        assert_eq!(top_level_id(Some(&body)).as_deref(), Some("2"));
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(
            top_level_id(Some(&doc(r#"{"id":42}"#))).as_deref(),
            Some("42")
        );
        assert_eq!(
            top_level_id(Some(&doc(r#"{"id":"a1"}"#))).as_deref(),
            Some("a1")
        );
        assert_eq!(top_level_id(Some(&doc(r#"{"id":""}"#))), None);
        assert_eq!(top_level_id(Some(&doc(r#"{"id":true}"#))), None);
        assert_eq!(top_level_id(Some(&doc("[1]"))), None);
        assert_eq!(top_level_id(None), None);
        let nested = doc(r#"{"project":{"id":5},"a/b":{"~k":"x"},"items":[{"id":"i0"}]}"#);
        assert_eq!(
            id_at_pointer(Some(&nested), &Pointer::parse("/project/id")).as_deref(),
            Some("5")
        );
        assert_eq!(
            id_at_pointer(Some(&nested), &Pointer::parse("/a~1b/~0k")).as_deref(),
            Some("x")
        );
        assert_eq!(
            id_at_pointer(Some(&nested), &Pointer::parse("/items/0/id")).as_deref(),
            Some("i0")
        );
        let at =
            |body: &Doc<'_>, pointer: &str| id_at_pointer(Some(body), &Pointer::parse(pointer));
        assert_eq!(at(&nested, "/project/missing"), None);
        assert_eq!(at(&nested, "no-slash"), None);
        assert_eq!(at(&doc("7"), "").as_deref(), Some("7"));
    }

    #[test]
    fn data_copies_listed_fields_or_is_null() {
        let body = doc(r#"{"id":1,"name":"n","secret":"s","nested":{"a":[1,2]}}"#);
        let fields =
            |f: &[&str]| DataFields::new(&f.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            pick_data(Some(&body), &fields(&["id", "name", "absent", "nested"])),
            json!({"id":1,"name":"n","nested":{"a":[1,2]}})
        );
        assert_eq!(
            pick_data(Some(&body), &fields(&["id", "id"])),
            json!({"id":1})
        );
        // A key that needs escaping is written as JSON.
        let quoted = doc(r#"{"a\"b":1}"#);
        assert_eq!(
            pick_data(Some(&quoted), &fields(&["a\"b"])).as_json(),
            r#"{"a\"b":1}"#
        );
        // Line breaks in the API's own formatting would break an SSE `data:` line.
        let pretty = doc("{\n  \"id\": 1,\n  \"tags\": [\n    \"a b\"\n  ]\n}");
        let data = pick_data(Some(&pretty), &fields(&["id", "tags"]));
        assert_eq!(data, json!({"id":1,"tags":["a b"]}));
        let text = data.as_json();
        assert!(!text.contains('\n'), "{text}");
        assert_eq!(pick_data(Some(&body), &fields(&[])), Data::NULL);
        assert_eq!(pick_data(Some(&body), &fields(&["absent"])), Data::NULL);
        assert_eq!(pick_data(Some(&doc("[1]")), &fields(&["id"])), Data::NULL);
        assert_eq!(pick_data(None, &fields(&["id"])), Data::NULL);
    }
}
