//! Reading the bounded copy of a response body: ids, `{body.x}` fields and rule `data`.
//!
//! Everything here is forgiving by design: a body that is truncated, not JSON, or shaped differently
//! than a rule expects yields "no value" and the matcher decides what to drop. Nothing here decides
//! *whether* a body is kept; that is `EventPlan::wants_body`.

use serde_json::{Map, Value};

use super::BodyPrefix;

/// The body as JSON, or `None` when it was cut off at `event_body_max_bytes` (half a document would
/// give wrong values, not fewer) or is not JSON (e.g. a 204 or a plain-text answer).
pub(super) fn parse(body: BodyPrefix<'_>) -> Option<Value> {
    if !body.complete || body.bytes.is_empty() {
        return None;
    }
    serde_json::from_slice(body.bytes).ok()
}

/// The value at `path` (`body.a.b` → `["a", "b"]`). A numeric segment also indexes an array, so
/// `{body.items.0.id}` works as a user would expect.
pub(super) fn field<'a>(body: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(body, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Text for a template: strings unquoted, numbers and booleans printed; null, arrays and objects have
/// no sensible single-token text, so they have no value.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Text for a `resource_id`: a string or a number. An empty string is no id (it would make a key
/// like `["project", ""]` that matches nothing the browser cached).
pub(super) fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The response's top-level `id`, as the REST convention reads it for a POST.
pub(super) fn top_level_id(body: Option<&Value>) -> Option<String> {
    body?.get("id").and_then(id_text)
}

/// The id at a JSON pointer such as `/id` or `/project/id`.
pub(super) fn id_at_pointer(body: Option<&Value>, pointer: &str) -> Option<String> {
    body?.pointer(pointer).and_then(id_text)
}

/// A rule's `data`: the listed top-level fields copied into an object, absent ones omitted. `null`
/// when the list is empty, the body is unusable or not an object, or none of the fields exist: an
/// empty object would look like "the resource has no fields", which is a different statement.
pub(super) fn pick_data(body: Option<&Value>, fields: &[String]) -> Value {
    let Some(Value::Object(src)) = body else {
        return Value::Null;
    };
    let picked: Map<String, Value> = fields
        .iter()
        .filter_map(|f| src.get(f).map(|v| (f.clone(), v.clone())))
        .collect();
    if picked.is_empty() {
        Value::Null
    } else {
        Value::Object(picked)
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

    #[test]
    fn truncated_or_non_json_bodies_do_not_parse() {
        let truncated = BodyPrefix {
            bytes: br#"{"id":1}"#,
            complete: false,
        };
        assert_eq!(parse(truncated), None);
        assert_eq!(parse(complete(b"not json")), None);
        assert_eq!(parse(complete(b"")), None);
        assert_eq!(parse(complete(br#"{"id":1}"#)), Some(json!({"id":1})));
    }

    #[test]
    fn fields_print_scalars_and_skip_structures() {
        let body = json!({"a":{"b":"x","n":3,"t":true,"z":null,"o":{},"l":[{"id":9}]}});
        let text = |p: &[&str]| {
            let path: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            field(&body, &path).and_then(scalar_text)
        };
        assert_eq!(text(&["a", "b"]).as_deref(), Some("x"));
        assert_eq!(text(&["a", "n"]).as_deref(), Some("3"));
        assert_eq!(text(&["a", "t"]).as_deref(), Some("true"));
        assert_eq!(text(&["a", "z"]), None);
        assert_eq!(text(&["a", "o"]), None);
        assert_eq!(text(&["a", "l", "0", "id"]).as_deref(), Some("9"));
        assert_eq!(text(&["a", "missing"]), None);
    }

    #[test]
    fn ids_are_strings_or_numbers() {
        assert_eq!(top_level_id(Some(&json!({"id":42}))).as_deref(), Some("42"));
        assert_eq!(
            top_level_id(Some(&json!({"id":"a1"}))).as_deref(),
            Some("a1")
        );
        assert_eq!(top_level_id(Some(&json!({"id":""}))), None);
        assert_eq!(top_level_id(Some(&json!({"id":true}))), None);
        assert_eq!(top_level_id(Some(&json!([1]))), None);
        assert_eq!(top_level_id(None), None);
        let nested = json!({"project":{"id":5}});
        assert_eq!(
            id_at_pointer(Some(&nested), "/project/id").as_deref(),
            Some("5")
        );
        assert_eq!(id_at_pointer(Some(&nested), "no-slash"), None);
    }

    #[test]
    fn data_copies_listed_fields_or_is_null() {
        let body = json!({"id":1,"name":"n","secret":"s"});
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            pick_data(Some(&body), &fields(&["id", "name", "absent"])),
            json!({"id":1,"name":"n"})
        );
        assert_eq!(pick_data(Some(&body), &[]), Value::Null);
        assert_eq!(pick_data(Some(&body), &fields(&["absent"])), Value::Null);
        assert_eq!(pick_data(Some(&json!([1])), &fields(&["id"])), Value::Null);
        assert_eq!(pick_data(None, &fields(&["id"])), Value::Null);
    }
}
