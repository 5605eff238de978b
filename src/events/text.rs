//! Shared text for the fields of an event.
//!
//! An event's type, channels, invalidation keys, resource and action mostly come from its rule or
//! its path, the same for every event of that path. A plan is remembered per path
//! (`EventMatcher::plan`), so it renders them once and every event shares them: a clone here is a
//! reference count, where a `String` was an allocation and a copy per field per event, and again
//! when the broker stored the event.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text {
    text: Arc<str>,
    /// Nothing in `text` needs escaping in JSON, found once when it is made: the envelope of
    /// every event writes these fields, and each had been checked again each time.
    plain: bool,
}

impl Text {
    fn new(text: Arc<str>) -> Text {
        let plain = super::envelope::is_plain(&text);
        Text { text, plain }
    }

    /// The same text as the broker's events hold it.
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.text)
    }

    /// True when the text has nothing JSON must escape.
    pub fn is_plain(&self) -> bool {
        self.plain
    }
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text::new(Arc::from(s))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text::new(Arc::from(s))
    }
}

impl From<Arc<str>> for Text {
    fn from(s: Arc<str>) -> Text {
        Text::new(s)
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        *self.text == *other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        *self.text == **other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.text == **other
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        String::deserialize(d).map(Text::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_allocation_and_compare_as_text() {
        let a = Text::from("projects");
        let b = a.clone();
        assert!(Arc::ptr_eq(&a.shared(), &b.shared()));
        assert_eq!(a, "projects");
        assert_eq!(a, "projects".to_owned());
        assert_eq!(vec![a.clone()], ["projects"]);
        assert_eq!(format!("{a} {a:?}"), "projects \"projects\"");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"projects\"");
        let back: Text = serde_json::from_str("\"projects\"").unwrap();
        assert_eq!(back, a);
        assert!(a.is_plain());
        assert!(!Text::from("a\"b").is_plain());
        assert!(!Text::from("line\nbreak").is_plain());
    }
}
