//! SKELETON — to be implemented: explicit rules (RegexSet) first, then the REST convention.

use http::Method;

use super::{BodyPrefix, EmitContext, EventDraft};
use crate::config::EventsConfig;

/// Compiled event rules; built once per config.
#[derive(Debug, Clone)]
pub struct EventMatcher {}

/// What one request will emit if its answer is 2xx; decided before the request is forwarded.
#[derive(Debug, Clone)]
pub struct EventPlan {}

impl EventMatcher {
    pub fn new(_cfg: &EventsConfig) -> EventMatcher {
        todo!()
    }

    /// `None` when this method and path can never emit (GET, excluded, outside the prefix, …).
    pub fn plan(&self, _method: &Method, _path: &str) -> Option<EventPlan> {
        todo!()
    }

    /// The channels a GET of `path` belongs to by the REST convention (for `X-Sync-Position`).
    pub fn read_channels(&self, _path: &str) -> Vec<String> {
        todo!()
    }
}

impl EventPlan {
    /// True when `build` needs the response body (ids, `data`, `{body.x}` templates).
    pub fn wants_body(&self) -> bool {
        todo!()
    }

    /// Called only for 2xx answers. `None` when nothing can be emitted (e.g. every channel failed to render).
    pub fn build(&self, _body: BodyPrefix<'_>, _ctx: &EmitContext<'_>) -> Option<EventDraft> {
        todo!()
    }
}
