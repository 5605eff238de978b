//! What a GET is owed besides the upstream's answer: its `Cache-Control` rule and the channels of
//! its `X-Sync-Position`, worked out once per path (`memo.rs`).

use std::sync::Arc;

use http::Method;

use super::cache_control;
use crate::config::CacheRule;
use crate::events::EventMatcher;
use crate::memo::PathMemo;

/// Built with the config's other parts, so a reload starts with an empty memory.
#[derive(Debug, Default)]
pub struct Reads(PathMemo<ReadFacts>);

#[derive(Debug, Clone)]
pub struct ReadFacts {
    /// The first `cache_control.rules` entry for a GET of the path.
    pub cache_rule: Option<usize>,
    /// The channels a GET of the path belongs to (`EventMatcher::read_channels`).
    pub channels: Arc<[String]>,
}

impl Reads {
    pub fn facts(&self, path: &str, rules: &[CacheRule], matcher: &EventMatcher) -> ReadFacts {
        self.0.get_or_work(path, || ReadFacts {
            cache_rule: cache_control::rule_for(rules, &Method::GET, path),
            channels: matcher.read_channels(path),
        })
    }
}
