//! A cursor over the parsed YAML tree that always knows its key path.
//!
//! The YAML text is first read into a generic `serde_json::Value` (any YAML type mistakes are then
//! ours to explain, not serde's). Every read goes through a [`Node`], so every error names the exact
//! key (`events.rules[1].channels[0]`), and every mapping is opened with the list of keys it allows, so
//! an unknown key anywhere is reported with that list. This module knows YAML shapes (text, lists,
//! mappings, durations, sizes) but nothing about what the keys mean; `load` and `rules` do.
//!
//! A key whose value is YAML `null` (`key:` with nothing after it) is treated as absent, so a section
//! with every line commented out still loads with its defaults.

use std::time::Duration;

use serde_json::{Map, Value};

use super::ConfigError;
use super::units::{parse_duration, parse_size};

pub(super) type Result<T> = std::result::Result<T, ConfigError>;

/// One place in the document: its value (`None` when the key is absent or null) and its key path.
#[derive(Debug, Clone)]
pub(super) struct Node<'a> {
    value: Option<&'a Value>,
    path: String,
}

/// An opened mapping whose keys have been checked against the allowed set.
#[derive(Debug)]
pub(super) struct Section<'a> {
    map: Option<&'a Map<String, Value>>,
    path: String,
    allowed: &'static [&'static str],
}

impl<'a> Node<'a> {
    pub(super) fn root(value: &'a Value) -> Self {
        Node {
            value: Some(value).filter(|v| !v.is_null()),
            path: String::new(),
        }
    }

    /// An error about this node.
    pub(super) fn err(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path.clone(), message)
    }

    /// Opens a mapping; an absent node is an empty mapping. Any key outside `allowed` is an error.
    pub(super) fn section(&self, allowed: &'static [&'static str]) -> Result<Section<'a>> {
        let map = match self.value {
            None => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                return Err(self.err(format!(
                    "expected a mapping with keys {}, found {}",
                    allowed.join(", "),
                    describe(other)
                )));
            }
        };
        if let Some(map) = map
            && let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str()))
        {
            return Err(ConfigError::at(
                join_key(&self.path, key),
                format!("unknown key; allowed keys: {}", allowed.join(", ")),
            ));
        }
        Ok(Section {
            map,
            path: self.path.clone(),
            allowed,
        })
    }

    /// The items of a list, each with its `[i]` path; `None` when absent.
    pub(super) fn list(&self) -> Result<Option<Vec<Node<'a>>>> {
        match self.value {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Node {
                        value: Some(v).filter(|v| !v.is_null()),
                        path: format!("{}[{i}]", self.path),
                    })
                    .collect(),
            )),
            Some(other) => Err(self.err(format!("expected a list, found {}", describe(other)))),
        }
    }

    /// Text; numbers are taken as their digits (`invalidate: [[project, 1]]`). `None` when absent.
    pub(super) fn text(&self) -> Result<Option<String>> {
        match self.value {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.err(format!("expected text, found {}", describe(other)))),
        }
    }

    /// Text that must be present (a list item, or a key a rule cannot do without).
    pub(super) fn required_text(&self) -> Result<String> {
        self.text()?
            .ok_or_else(|| self.err("is required and has no value"))
    }

    pub(super) fn text_or(&self, default: &str) -> Result<String> {
        Ok(self.text()?.unwrap_or_else(|| default.to_owned()))
    }

    /// Text that may not be empty.
    pub(super) fn non_empty_text_or(&self, default: &str) -> Result<String> {
        let text = self.text_or(default)?;
        if text.is_empty() {
            return Err(self.err("must not be empty"));
        }
        Ok(text)
    }

    /// A list of text items, each checked by `check` (which gets the item's node for errors).
    pub(super) fn text_list<T>(
        &self,
        mut check: impl FnMut(&Node<'a>, String) -> Result<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(items) = self.list()? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|item| check(item, item.required_text()?))
            .collect::<Result<Vec<T>>>()
            .map(Some)
    }

    pub(super) fn bool_or(&self, default: bool) -> Result<bool> {
        match self.value {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => {
                Err(self.err(format!("expected true or false, found {}", describe(other))))
            }
        }
    }

    /// A whole number of at least `min`.
    pub(super) fn count_or(&self, default: u64, min: u64) -> Result<u64> {
        let n = match self.value {
            None => default,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                self.err(format!(
                    "{n} is not a whole number ≥ 0; use one like {default}"
                ))
            })?,
            Some(other) => {
                return Err(self.err(format!(
                    "expected a whole number like {default}, found {}",
                    describe(other)
                )));
            }
        };
        self.at_least(n, min, &n.to_string())
    }

    /// A count that is held in memory as `usize`.
    pub(super) fn usize_or(&self, default: u64, min: u64) -> Result<usize> {
        let n = self.count_or(default, min)?;
        usize::try_from(n).map_err(|_| self.err(format!("{n} is too large for this machine")))
    }

    /// A byte size: `64KiB`, `1MiB`, or a plain integer of bytes; at least `min` bytes.
    pub(super) fn size_or(&self, default: u64, min: u64) -> Result<usize> {
        let (n, shown) = match self.value {
            None => (default, default.to_string()),
            Some(Value::Number(n)) => {
                let bytes = n.as_u64().ok_or_else(|| {
                    self.err(format!(
                        "{n} is not a size; use bytes or a unit, like 64KiB"
                    ))
                })?;
                (bytes, n.to_string())
            }
            Some(Value::String(s)) => (parse_size(s).map_err(|m| self.err(m))?, format!("{s:?}")),
            Some(other) => {
                return Err(self.err(format!(
                    "expected a size like 64KiB, found {}",
                    describe(other)
                )));
            }
        };
        let n = self.at_least(n, min, &shown)?;
        usize::try_from(n).map_err(|_| self.err(format!("{shown} is too large for this machine")))
    }

    /// A duration like `30s`. With `positive`, zero is refused (a zero timeout fails everything).
    pub(super) fn duration_or(&self, default: Duration, positive: bool) -> Result<Duration> {
        let d = match self.value {
            None => return Ok(default),
            Some(Value::String(s)) => parse_duration(s).map_err(|m| self.err(m))?,
            Some(other) => {
                return Err(self.err(format!(
                    "{} is not a duration; use a number with ms, s, m or h, like 250ms, 30s, 5m",
                    short(other)
                )));
            }
        };
        if positive && d.is_zero() {
            return Err(self.err("must be longer than zero, like 250ms, 30s, 5m"));
        }
        Ok(d)
    }

    /// One of a closed set of words, matched exactly; the error lists them.
    pub(super) fn choice_or<T: Copy>(&self, choices: &[(&str, T)], default: T) -> Result<T> {
        let Some(word) = self.text()? else {
            return Ok(default);
        };
        choices
            .iter()
            .find(|(name, _)| *name == word)
            .map(|(_, value)| *value)
            .ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                self.err(format!(
                    "{word:?} is not allowed; use one of: {}",
                    names.join(", ")
                ))
            })
    }

    fn at_least(&self, n: u64, min: u64, shown: &str) -> Result<u64> {
        if n < min {
            return Err(self.err(format!("{shown} is too small; use at least {min}")));
        }
        Ok(n)
    }
}

impl<'a> Section<'a> {
    /// The value under `key` (absent when the key is missing or null).
    pub(super) fn get(&self, key: &'static str) -> Node<'a> {
        debug_assert!(self.allowed.contains(&key), "{key} read but not allowed");
        Node {
            value: self.map.and_then(|m| m.get(key)).filter(|v| !v.is_null()),
            path: join_key(&self.path, key),
        }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// How a wrong value is named in a type error: its kind, and the value itself when short.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("{b} (a boolean; quote it if you meant text)"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("text ({s:?})"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// The value as the user wrote it, when that is short; otherwise its kind.
fn short(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => describe(other),
    }
}
