//! What a GET is owed besides the upstream's answer: its `Cache-Control` rule and its
//! `X-Sync-Position`, the first worked out once per path (`memo.rs`), the second remembered
//! for as long as no event has moved the broker's positions.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{HeaderValue, Method};

use super::cache_control;
use crate::broker::Broker;
use crate::config::CacheRule;
use crate::events::EventMatcher;
use crate::memo::PathMemo;
use crate::ws::sse;

/// Built with the config's other parts, so a reload starts with an empty memory.
#[derive(Debug, Default)]
pub struct Reads(PathMemo<ReadFacts>);

#[derive(Debug, Clone)]
pub struct ReadFacts {
    /// The first `cache_control.rules` entry for a GET of the path.
    pub cache_rule: Option<usize>,
    /// The path's `X-Sync-Position`, if a GET of it belongs to any channel.
    pub position: Option<Arc<Position>>,
}

/// The channels a GET of one path belongs to (`EventMatcher::read_channels`), and the header
/// last made for them.
#[derive(Debug)]
pub struct Position {
    channels: Arc<[String]>,
    /// The value, and the broker's `positions_version` it was read at. An API is read far more
    /// often than it is written to: between two events, every GET of a path carries the same
    /// positions, so they are read and formatted once.
    last: Mutex<Option<(u64, HeaderValue)>>,
}

impl Reads {
    pub fn facts(&self, path: &str, rules: &[CacheRule], matcher: &EventMatcher) -> ReadFacts {
        self.0.get_or_work(path, || {
            let channels = matcher.read_channels(path);
            ReadFacts {
                cache_rule: cache_control::rule_for(rules, &Method::GET, path),
                position: (!channels.is_empty()).then(|| {
                    Arc::new(Position {
                        channels,
                        last: Mutex::default(),
                    })
                }),
            }
        })
    }
}

impl Position {
    /// `projects=17,…`: each channel's latest `seq` as the broker has it now. Read before the
    /// request goes upstream (see `proxy::forward`).
    pub async fn read(&self, broker: &dyn Broker) -> Option<HeaderValue> {
        let version = broker.positions_version();
        if let Some(version) = version
            && let Some((made_at, value)) = self.lock().as_ref()
            && *made_at == version
        {
            return Some(value.clone());
        }
        let seqs = broker.positions(&self.channels).await;
        let text = sse::format_positions(self.channels.iter().map(String::as_str).zip(seqs));
        let value = HeaderValue::from_maybe_shared(Bytes::from(text)).ok()?;
        if let Some(version) = version {
            *self.lock() = Some((version, value.clone()));
        }
        Some(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, HeaderValue)>> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
