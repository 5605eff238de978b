//! Deciding what a request will emit: explicit rules first (first match wins), then the REST convention.
//!
//! `EventMatcher` is compiled once per config and asked on every proxied request, so `plan` is cheap:
//! safe methods return at once without allocating, and all rule paths are tried in one `RegexSet`
//! pass. An `EventPlan` carries what the path already told us until the response body has ended;
//! `build` then fills in what only the body knows. This module does not buffer bodies, number events
//! or deliver them (proxy and broker do), and it never panics on any path or body.

use crate::ws::protocol::valid_channel;
use std::sync::Arc;

use http::Method;
use regex::{Regex, RegexSet};

use super::body::{self, DataFields, Doc, Pointer};
use super::envelope::Fixed;
use super::rest::{self, Action, RestTarget, dedup};
use super::template::Vars;
use super::{BodyPrefix, Data, EmitContext, EventDraft, Prerendered, Text};
use crate::config::{EventRule, EventsConfig};
use crate::memo::PathMemo;

/// Compiled event rules; built once per config.
#[derive(Debug)]
pub struct EventMatcher {
    rules: Vec<Arc<CompiledRule>>,
    rule_paths: PathSet,
    /// `None` when `events.auto.enabled` is false.
    auto: Option<PathSet>,
    /// `events.auto.prefix` without a trailing slash. Also used to name the resource of rule events,
    /// so it is kept even when the automatic convention is off.
    prefix: String,
    /// The plans of paths written lately, one memory per method of `MEMO_METHODS`.
    plans: [PathMemo<Option<Arc<EventPlan>>>; MEMO_METHODS.len()],
}

/// The methods whose plans are remembered: the ones that emit by the convention. A rule may list
/// others; their plans are worked out each time.
const MEMO_METHODS: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

/// What one request will emit if its answer is 2xx; decided before the request is forwarded.
#[derive(Debug, Clone)]
pub struct EventPlan {
    kind: PlanKind,
    wants_body: bool,
}

#[derive(Debug, Clone)]
enum PlanKind {
    Rule(RulePlan),
    Auto(AutoPlan),
}

#[derive(Debug, Clone)]
struct RulePlan {
    rule: Arc<CompiledRule>,
    /// Named captures that took part in the match, as (name, text).
    captures: Vec<(String, String)>,
    /// The path read by the convention, for `resource` and as the last source of `resource_id`.
    target: Option<RestTarget>,
    /// `target`'s collection.
    resource: Option<Text>,
    action: Option<Text>,
    method_is_post: bool,
    parts: Parts,
    /// The envelope's text of `parts`, `resource` and `action`, when `parts` are rendered ahead.
    prerendered: Prerendered,
}

/// When a rule's type, channels and keys are rendered.
#[derive(Debug, Clone)]
enum Parts {
    /// When the plan was made, since none of their templates reads the body or the user;
    /// `None`: they cannot render, so the path emits nothing.
    Ahead(Option<RuleParts>),
    /// For each event.
    PerEvent,
}

/// A rule's type, channels and invalidation keys, rendered.
#[derive(Debug, Clone)]
struct RuleParts {
    event_type: Text,
    channels: Arc<[Text]>,
    invalidate: Arc<[Vec<Text>]>,
}

/// An event by the REST convention: all but an item's new id is known from the path.
#[derive(Debug, Clone)]
struct AutoPlan {
    target: RestTarget,
    action: Action,
    event_type: Text,
    channels: Arc<[Text]>,
    resource: Text,
    /// `action` as the event's text.
    action_text: Text,
    /// The invalidation keys, when the path alone decides them (all but a POST that learns its
    /// id from the answer).
    keys: Option<Arc<[Vec<Text>]>>,
    prerendered: Prerendered,
}

#[derive(Debug)]
struct CompiledRule {
    rule: EventRule,
    /// Named groups of `rule.path`, so `plan` copies only those out of the match.
    capture_names: Vec<String>,
    /// `id`, `data` or a `{body.x}` template: the rule cannot be built without the body.
    reads_body: bool,
    /// Its type, channel or key templates read the body or the user, so they are rendered per
    /// event rather than once per plan.
    parts_read_request: bool,
    /// `rule.data` and `rule.id`, prepared for reading bodies.
    data: DataFields,
    id: Option<Pointer>,
}

/// Regexes tried together. The `RegexSet` finds every candidate in one pass; the individual `Regex`
/// stays authoritative (captures, and a fallback scan if the set could not be built, e.g. when the
/// combined program exceeds the regex size limit although each pattern alone did not).
#[derive(Debug, Clone)]
struct PathSet {
    set: Option<RegexSet>,
    regexes: Vec<Regex>,
}

impl PathSet {
    fn new(regexes: Vec<Regex>) -> PathSet {
        let set = if regexes.is_empty() {
            None
        } else {
            match RegexSet::new(regexes.iter().map(Regex::as_str)) {
                Ok(set) => Some(set),
                Err(error) => {
                    tracing::warn!(%error, "path regexes could not be combined; trying them one by one");
                    None
                }
            }
        };
        PathSet { set, regexes }
    }

    fn is_match(&self, path: &str) -> bool {
        match &self.set {
            Some(set) => set.is_match(path),
            None => self.regexes.iter().any(|re| re.is_match(path)),
        }
    }

    /// The first result of `f` over candidate patterns in index order. `f` must confirm the match
    /// with the regex it is given (via `captures`), since without a set every pattern is a candidate.
    fn find_map<T>(&self, path: &str, mut f: impl FnMut(usize, &Regex) -> Option<T>) -> Option<T> {
        match &self.set {
            Some(set) => set
                .matches(path)
                .into_iter()
                .find_map(|i| self.regexes.get(i).and_then(|re| f(i, re))),
            None => self.regexes.iter().enumerate().find_map(|(i, re)| f(i, re)),
        }
    }
}

/// Methods that never change anything: answered without a single allocation on the hot path.
fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::CONNECT
    )
}

impl EventMatcher {
    pub fn new(cfg: &EventsConfig) -> EventMatcher {
        let rules: Vec<Arc<CompiledRule>> = cfg
            .rules
            .iter()
            .map(|rule| {
                let templates = || {
                    std::iter::once(&rule.event_type)
                        .chain(&rule.channels)
                        .chain(rule.invalidate.iter().flatten())
                };
                let reads_body = rule.id.is_some()
                    || !rule.data.is_empty()
                    || templates().any(|t| t.uses_body());
                let parts_read_request = templates().any(|t| t.uses_body() || t.uses_user());
                Arc::new(CompiledRule {
                    capture_names: rule
                        .path
                        .capture_names()
                        .flatten()
                        .map(str::to_owned)
                        .collect(),
                    reads_body,
                    parts_read_request,
                    data: DataFields::new(&rule.data),
                    id: rule.id.as_deref().map(Pointer::parse),
                    rule: rule.clone(),
                })
            })
            .collect();
        let rule_paths = PathSet::new(cfg.rules.iter().map(|r| r.path.clone()).collect());
        let auto = cfg
            .auto
            .enabled
            .then(|| PathSet::new(cfg.auto.exclude.clone()));
        EventMatcher {
            rules,
            rule_paths,
            auto,
            prefix: cfg.auto.prefix.trim_end_matches('/').to_owned(),
            plans: Default::default(),
        }
    }

    /// `None` when this method and path can never emit (GET, excluded, outside the prefix, …).
    ///
    /// `path` is the request path without its query string. GET/HEAD/OPTIONS/TRACE/CONNECT never emit,
    /// even if a rule lists them: SPEC says reads emit nothing, and this keeps reads allocation-free.
    /// A plan depends only on the method, the path and this matcher, so it is remembered by path
    /// (`memo.rs`): a second POST to `/api/projects` skips the regexes and the parse.
    pub fn plan(&self, method: &Method, path: &str) -> Option<Arc<EventPlan>> {
        if is_safe(method) {
            return None;
        }
        let work = || {
            self.rule_plan(method, path)
                .or_else(|| self.auto_plan(method, path))
                .map(Arc::new)
        };
        match MEMO_METHODS.iter().position(|m| m == method) {
            Some(i) => self.plans[i].get_or_work(path, work),
            None => work(),
        }
    }

    /// The channels a GET of `path` belongs to by the REST convention (for `X-Sync-Position`).
    ///
    /// The same channels a PUT to that path would publish to: a collection reads from its collection
    /// channel (and its ancestors'), an item also from its own. Empty outside the prefix, on excluded
    /// paths, or when the convention is disabled. Explicit rules are not consulted: they describe
    /// mutations, and a read has no response-dependent template values to render them with.
    ///
    /// Worked out each time: the proxy remembers them with the rest of what a read is owed
    /// (`proxy::reads`).
    pub fn read_channels(&self, path: &str) -> Arc<[String]> {
        self.auto_target_channels(path)
            .map(|(_, channels)| channels.into())
            .unwrap_or_default()
    }

    /// The lowest-index rule whose methods contain `method` and whose path matches.
    fn rule_plan(&self, method: &Method, path: &str) -> Option<EventPlan> {
        let (rule, captures) = self.rule_paths.find_map(path, |i, re| {
            let rule = self.rules.get(i)?;
            if !rule.rule.methods.contains(method) {
                return None;
            }
            let caps = re.captures(path)?;
            let captures: Vec<(String, String)> = rule
                .capture_names
                .iter()
                .filter_map(|name| Some((name.clone(), caps.name(name)?.as_str().to_owned())))
                .collect();
            Some((Arc::clone(rule), captures))
        })?;
        let target = RestTarget::parse(&self.prefix, path);
        let method_is_post = *method == Method::POST;
        let has_id_capture = captures.iter().any(|(name, _)| name == "id");
        // Without an id from the rule or the path, the convention reads a POST's id from the body.
        let convention_reads_body = method_is_post
            && !has_id_capture
            && target.as_ref().is_some_and(|t| t.path_id.is_none());
        let parts = if rule.parts_read_request {
            Parts::PerEvent
        } else {
            let vars = RuleVars {
                captures: &captures,
                body: None,
                user: None,
            };
            Parts::Ahead(render_parts(&rule.rule, &vars))
        };
        let resource = target.as_ref().map(|t| Text::from(t.collection.as_str()));
        let action = Action::from_method(method).map(|a| Text::from(a.as_str()));
        let prerendered = match &parts {
            Parts::Ahead(Some(parts)) => Prerendered::new(Fixed::new(
                &parts.event_type,
                resource.as_ref(),
                action.as_ref(),
                Some(&parts.invalidate),
            )),
            _ => Prerendered::default(),
        };
        Some(EventPlan {
            wants_body: rule.reads_body || convention_reads_body,
            kind: PlanKind::Rule(RulePlan {
                resource,
                action,
                rule,
                captures,
                target,
                method_is_post,
                parts,
                prerendered,
            }),
        })
    }

    fn auto_plan(&self, method: &Method, path: &str) -> Option<EventPlan> {
        let action = Action::from_method(method)?;
        let target = self.auto_target(path)?;
        // A new item has no subscribers yet, so a POST publishes only to its collection and
        // ancestors.
        let item_channel = match action {
            Action::Created => None,
            Action::Updated | Action::Deleted => target.path_id.as_deref(),
        };
        // Only a new item's id is not in the path; it is read from the answer.
        let wants_body = action == Action::Created && target.path_id.is_none();
        let keys = (!wants_body).then(|| invalidate_keys(&target, target.path_id.as_deref()));
        let event_type: Text = target.event_type(action).into();
        let resource = Text::from(target.collection.as_str());
        let action_text = Text::from(action.as_str());
        let prerendered = Prerendered::new(Fixed::new(
            &event_type,
            Some(&resource),
            Some(&action_text),
            keys.as_deref(),
        ));
        Some(EventPlan {
            wants_body,
            kind: PlanKind::Auto(AutoPlan {
                event_type,
                channels: texts(target.channels(item_channel)).into(),
                resource,
                action_text,
                keys,
                prerendered,
                target,
                action,
            }),
        })
    }

    /// The path read by the convention, if the convention applies to it at all.
    fn auto_target(&self, path: &str) -> Option<RestTarget> {
        self.auto_target_channels(path).map(|(target, _)| target)
    }

    /// The target and the channels a read of it watches (its collection, the item, ancestors).
    fn auto_target_channels(&self, path: &str) -> Option<(RestTarget, Vec<String>)> {
        let excludes = self.auto.as_ref()?;
        // Cheap checks before the exclude regexes and before `parse` allocates.
        rest::below_prefix(&self.prefix, path)?;
        if excludes.is_match(path) {
            return None;
        }
        let target = RestTarget::parse(&self.prefix, path)?;
        // A segment with ',', '=' or spaces, or a very long one, would make a channel no client can
        // subscribe to and garble `X-Sync-Position`; such paths stay outside the convention.
        let channels = target.channels(target.path_id.as_deref());
        channels
            .iter()
            .all(|c| valid_channel(c))
            .then_some((target, channels))
    }
}

impl EventPlan {
    /// True when `build` needs the response body (ids, `data`, `{body.x}` templates).
    pub fn wants_body(&self) -> bool {
        self.wants_body
    }

    /// Called only for 2xx answers. `None` when nothing can be emitted (e.g. every channel failed to render).
    ///
    /// The body is parsed only when `wants_body` said so; a truncated or non-JSON body simply has no
    /// values, so ids are missing, `{body.x}` templates fail to render and `data` is null.
    pub fn build(&self, body: BodyPrefix<'_>, ctx: &EmitContext<'_>) -> Option<EventDraft> {
        let json = if self.wants_body {
            body::parse(body)
        } else {
            None
        };
        match &self.kind {
            PlanKind::Auto(plan) => Some(build_auto(plan, json.as_ref(), ctx)),
            PlanKind::Rule(plan) => build_rule(plan, json.as_ref(), ctx),
        }
    }
}

fn build_auto(plan: &AutoPlan, json: Option<&Doc<'_>>, ctx: &EmitContext<'_>) -> EventDraft {
    let resource_id = match (&plan.target.path_id, plan.action) {
        (Some(id), _) => Some(id.clone()),
        (None, Action::Created) => body::top_level_id(json),
        (None, _) => None,
    };
    let invalidate = match &plan.keys {
        Some(keys) => Arc::clone(keys),
        None => invalidate_keys(&plan.target, resource_id.as_deref()),
    };
    EventDraft {
        event_type: plan.event_type.clone(),
        channels: plan.channels.clone(),
        resource: Some(plan.resource.clone()),
        invalidate,
        resource_id,
        action: Some(plan.action_text.clone()),
        data: Data::NULL,
        actor: ctx.actor.cloned(),
        ts: ctx.ts,
        origin_client: ctx.origin_client.cloned(),
        prerendered: plan.prerendered.clone(),
    }
}

fn build_rule(
    plan: &RulePlan,
    json: Option<&Doc<'_>>,
    ctx: &EmitContext<'_>,
) -> Option<EventDraft> {
    let rule = &plan.rule.rule;
    let parts = match &plan.parts {
        Parts::Ahead(rendered) => rendered.clone(),
        Parts::PerEvent => {
            let vars = RuleVars {
                captures: &plan.captures,
                body: json,
                user: ctx.actor.map(|a| &**a),
            };
            render_parts(rule, &vars)
        }
    }?;
    Some(EventDraft {
        event_type: parts.event_type,
        channels: parts.channels,
        resource: plan.resource.clone(),
        resource_id: rule_resource_id(plan, json),
        action: plan.action.clone(),
        invalidate: parts.invalidate,
        data: body::pick_data(json, &plan.rule.data),
        actor: ctx.actor.cloned(),
        ts: ctx.ts,
        origin_client: ctx.origin_client.cloned(),
        prerendered: plan.prerendered.clone(),
    })
}

/// Renders a rule's type, channels and keys; `None` (nothing to emit) when the type does not
/// render or no channel does. Run once per plan when the templates read only the path.
fn render_parts(rule: &EventRule, vars: &RuleVars<'_>) -> Option<RuleParts> {
    let Some(event_type) = rule.event_type.render(vars).filter(|t| !t.is_empty()) else {
        tracing::debug!(
            rule = rule.path.as_str(),
            "event type did not render; no event"
        );
        return None;
    };
    let channels = dedup(
        rule.channels
            .iter()
            .filter_map(|t| t.render(vars))
            .filter(|c| valid_channel(c))
            .map(Text::from)
            .collect(),
    );
    if channels.is_empty() {
        tracing::debug!(rule = rule.path.as_str(), "no channel rendered; no event");
        return None;
    }
    let invalidate = dedup(
        rule.invalidate
            .iter()
            .filter_map(|key| {
                key.iter()
                    .map(|part| part.render(vars).map(Text::from))
                    .collect()
            })
            .collect(),
    );
    Some(RuleParts {
        event_type: event_type.into(),
        channels: channels.into(),
        invalidate: invalidate.into(),
    })
}

/// The convention's invalidation keys for `target`, as an event carries them.
fn invalidate_keys(target: &RestTarget, item_id: Option<&str>) -> Arc<[Vec<Text>]> {
    target.invalidate(item_id).into_iter().map(texts).collect()
}

fn texts(items: Vec<String>) -> Vec<Text> {
    items.into_iter().map(Text::from).collect()
}

/// The rule's `id` pointer, else the `id` capture, else what the convention gives for the path (the
/// path's id, or a POST's top-level body `id`). Later sources also stand in when an earlier one has no
/// value, e.g. `id: /id` on a PUT answered 204: the path still names the item.
fn rule_resource_id(plan: &RulePlan, json: Option<&Doc<'_>>) -> Option<String> {
    plan.rule
        .id
        .as_ref()
        .and_then(|pointer| body::id_at_pointer(json, pointer))
        .or_else(|| RuleVars::find(&plan.captures, "id").map(str::to_owned))
        .or_else(|| {
            let target = plan.target.as_ref()?;
            match &target.path_id {
                Some(id) => Some(id.clone()),
                None if plan.method_is_post => body::top_level_id(json),
                None => None,
            }
        })
}

/// Template variables for one rule event.
struct RuleVars<'a> {
    captures: &'a [(String, String)],
    body: Option<&'a Doc<'a>>,
    user: Option<&'a str>,
}

impl RuleVars<'_> {
    fn find<'c>(captures: &'c [(String, String)], name: &str) -> Option<&'c str> {
        captures
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Vars for RuleVars<'_> {
    fn capture(&self, name: &str) -> Option<&str> {
        RuleVars::find(self.captures, name)
    }

    fn body_field(&self, path: &[String]) -> Option<String> {
        body::field(self.body?, path).and_then(body::scalar_text)
    }

    fn user(&self) -> Option<&str> {
        self.user
    }
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "matcher_rule_tests.rs"]
mod rule_tests;
