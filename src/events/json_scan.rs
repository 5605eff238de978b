//! One pass over a response body that checks it is JSON and finds its top-level members.
//!
//! A rule reads two or three top-level fields of a small body. serde_json's visitor API did the
//! same job through a key and a raw value per member, at about thirty instructions per byte; a
//! scanner that only checks the grammar and records where things are does it in a few. Nothing is
//! decoded here: a key with escapes is reported as such, and `body.rs` decodes it.

/// The most containers one inside another: as many as serde_json builds into a document (its
/// recursion limit is 128, the step that fails included), so that no body it could read is
/// refused here, and no body can exhaust the stack.
const MAX_NESTING: u32 = 127;

/// A top-level member: the key's text between its quotes (escapes not decoded), whether it had
/// any, and the value's text.
pub(super) struct Member<'a> {
    pub(super) key: &'a str,
    pub(super) key_escaped: bool,
    pub(super) value: &'a str,
}

impl Member<'_> {
    /// The key as text: as written, or decoded when it had escapes (`None` if it cannot be,
    /// e.g. a lone surrogate).
    pub(super) fn key_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        if !self.key_escaped {
            return Some(self.key.into());
        }
        serde_json::from_str::<String>(&format!("\"{}\"", self.key))
            .ok()
            .map(Into::into)
    }
}

/// What a valid JSON text is at its top.
pub(super) enum Top<'a> {
    /// An object, with its members in order.
    Object(Vec<Member<'a>>),
    /// An array, a string, a number, `true`, `false` or `null`.
    Other,
}

/// A valid JSON text, read.
pub(super) struct Scanned<'a> {
    pub(super) top: Top<'a>,
    /// No line break anywhere in the text. Strings escape theirs, so a break is always
    /// whitespace between tokens; without one, any part of the text fits on one SSE `data:`
    /// line as it is.
    pub(super) one_line: bool,
}

/// `None` when `text` is not one JSON value (with whitespace around it allowed).
pub(super) fn scan(text: &str) -> Option<Scanned<'_>> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        at: 0,
        line_break: false,
    };
    s.skip_space();
    let top = if s.peek()? == b'{' {
        Top::Object(s.top_object()?)
    } else {
        s.value(0)?;
        Top::Other
    };
    s.skip_space();
    (s.at == s.bytes.len()).then_some(Scanned {
        top,
        one_line: !s.line_break,
    })
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
    /// A `\n` or `\r` was skipped as whitespace.
    line_break: bool,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while let Some(byte @ (b' ' | b'\t' | b'\n' | b'\r')) = self.peek() {
            self.line_break |= matches!(byte, b'\n' | b'\r');
            self.at += 1;
        }
    }

    /// Consumes `byte`, or fails.
    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn top_object(&mut self) -> Option<Vec<Member<'a>>> {
        let mut members = Vec::with_capacity(8);
        self.expect(b'{')?;
        self.skip_space();
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(members);
        }
        loop {
            self.skip_space();
            let key_start = self.at + 1;
            let key_escaped = self.string()?;
            // The closing quote is the byte before `at`; both ends are at ASCII quotes, so the
            // slice falls on character boundaries.
            let key = self.text.get(key_start..self.at - 1)?;
            self.skip_space();
            self.expect(b':')?;
            self.skip_space();
            let value_start = self.at;
            self.value(1)?;
            let value = self.text.get(value_start..self.at)?;
            members.push(Member {
                key,
                key_escaped,
                value,
            });
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(members);
                }
                _ => return None,
            }
        }
    }

    /// One value starting at `at` (no leading space), `depth` containers deep.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'{' => self.container(depth, b'}', true),
            b'[' => self.container(depth, b']', false),
            b'"' => self.string().map(drop),
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// An object (`keyed`) or an array, whose opening byte is at `at`, inside `depth` others.
    fn container(&mut self, depth: u32, close: u8, keyed: bool) -> Option<()> {
        if depth >= MAX_NESTING {
            return None;
        }
        self.at += 1;
        self.skip_space();
        if self.peek()? == close {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip_space();
            if keyed {
                self.string()?;
                self.skip_space();
                self.expect(b':')?;
                self.skip_space();
            }
            self.value(depth + 1)?;
            self.skip_space();
            match self.peek()? {
                b',' => self.at += 1,
                c if c == close => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string whose opening quote is at `at`; whether it had escapes.
    fn string(&mut self) -> Option<bool> {
        self.expect(b'"')?;
        let mut escaped = false;
        loop {
            let byte = self.peek()?;
            self.at += 1;
            match byte {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 1,
                        b'u' => {
                            let hex = self.bytes.get(self.at + 1..self.at + 5)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.at += 5;
                        }
                        _ => return None,
                    }
                }
                // Control characters must be escaped.
                0..=0x1f => return None,
                _ => {}
            }
        }
    }

    fn word(&mut self, word: &[u8]) -> Option<()> {
        let end = self.at + word.len();
        (self.bytes.get(self.at..end)? == word).then(|| self.at = end)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.at;
        self.digits();
        (self.at > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::IgnoredAny;
    use serde_json::value::RawValue;

    /// serde_json's reading of the same text: valid or not, and the top-level members of an
    /// object as (decoded key, raw value).
    fn reference(text: &str) -> Option<Option<Vec<(String, String)>>> {
        serde_json::from_str::<IgnoredAny>(text).ok()?;
        let object = text.trim_start().starts_with('{');
        Some(object.then(|| ordered_members(text).expect("a valid object reads as members")))
    }

    fn ordered_members(text: &str) -> Option<Vec<(String, String)>> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<&RawValue>()?;
                    out.push((key, value.get().to_owned()));
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_str(text);
        serde::Deserializer::deserialize_map(&mut de, Members).ok()
    }

    fn ours(text: &str) -> Option<Option<Vec<(String, String)>>> {
        Some(match scan(text)?.top {
            Top::Object(members) => Some(
                members
                    .iter()
                    .map(|m| {
                        let key = m
                            .key_text()
                            .expect("an escaped key the scanner let through decodes");
                        (key.into_owned(), m.value.to_owned())
                    })
                    .collect(),
            ),
            Top::Other => None,
        })
    }

    #[test]
    fn reads_as_serde_json_does_on_hand_picked_texts() {
        for text in [
            r#"{"id":14959,"name":"bench","t":1796117221897646}"#,
            " { \"a\" : [1, 2.5e-3, -0, \"x\\\"y\"] , \"b\":{\"c\":null}, \"a\": true }\n",
            r#"{"k\u00e9y":"v","\n":1}"#,
            r#"{}"#,
            r#"[]"#,
            r#"[{"id":1}]"#,
            r#""text""#,
            "-12.5E+7",
            "true",
            "null",
            r#"{"a":1,}"#,
            r#"{"a":1"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":tru}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1} {"b":2}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":[1 2]}"#,
            "",
            "   ",
            r#"{"é":"ü✓"}"#,
        ] {
            assert_eq!(ours(text), reference(text), "{text:?}");
        }
    }

    #[test]
    fn a_text_is_on_one_line_unless_whitespace_between_tokens_breaks_it() {
        let one_line = |text: &str| scan(text).map(|s| s.one_line);
        assert_eq!(one_line(r#"{"a":"x\ny","b":[1, 2]}"#), Some(true));
        assert_eq!(one_line("{\"a\":[1,\n2]}"), Some(false));
        assert_eq!(one_line("{\"a\":1}\r\n"), Some(false));
        assert_eq!(one_line("\n[1]"), Some(false));
        assert_eq!(one_line("{\"a\":\t1}"), Some(true));
        // A raw break inside a string is not JSON at all.
        assert_eq!(one_line("{\"a\":\"x\ny\"}"), None);
    }

    #[test]
    fn nesting_is_limited_where_serde_json_limits_a_document() {
        // serde_json skips a raw value without a depth limit, but refuses to build a document
        // deeper than its limit; a scan that recurses needs one, and takes the same.
        let value = |text: &str| serde_json::from_str::<serde_json::Value>(text).is_ok();
        for depth in 120..140 {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert_eq!(ours(&text).is_some(), value(&text), "arrays {depth} deep");
            let text = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            assert_eq!(ours(&text).is_some(), value(&text), "objects {depth} deep");
        }
        // Far past it, the answer is no, not a stack overflow.
        let deep = "[".repeat(1 << 20);
        assert!(ours(&deep).is_none());
    }

    #[test]
    fn reads_as_serde_json_does_on_mutated_texts() {
        let seeds = [
            r#"{"id":42,"name":"a \"b\"","tags":["x",{"y":[1.5e3,-0.25,true,false,null]}],"e":"\u00e9\n"}"#,
            r#"[{"id":"a1"},{"id":2},[],{}]"#,
            r#"{"a":{"b":{"c":[0,10,-7E-2]}},"a":"again"}"#,
        ];
        const ALPHABET: &[u8] = b"{}[]\",:\\/ \t\n0123456789.eE+-tfnulrsab\x01\x7f";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut agreed_valid = 0;
        for i in 0..20_000 {
            let mut bytes = seeds[i % seeds.len()].as_bytes().to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() as usize) % (bytes.len() + 1);
                let byte = ALPHABET[(next() as usize) % ALPHABET.len()];
                match next() % 3 {
                    0 => bytes.insert(at, byte),
                    1 if at < bytes.len() => drop(bytes.remove(at)),
                    _ if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.push(byte),
                }
            }
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            let expected = reference(&text);
            agreed_valid += usize::from(expected.is_some());
            assert_eq!(ours(&text), expected, "{text:?}");
        }
        // Mutations that keep the text valid (a digit for a digit, a space added) were met too.
        assert!(agreed_valid > 1000, "only {agreed_valid} valid texts");
    }
}
