//! The REST convention of SPEC: how a path such as `/api/projects/42/tasks/7` names a resource.
//!
//! Segments after the prefix alternate collection / id; the last collection is the resource and every
//! earlier collection/id pair is an ancestor whose channel and query key also hear about the change.
//! This module only reads paths and names things (no regexes, rules, bodies or exclusion lists): the
//! matcher decides *whether* the convention applies and fills in what the path cannot know (a POST's id).
//! Segments are used exactly as written: percent-encoding is not decoded, so the names in events match
//! the URLs the browser used as query keys.

use std::borrow::Cow;

use http::Method;

/// What a successful mutation did, as the envelope's `action` and the suffix of the event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Created,
    Updated,
    Deleted,
}

impl Action {
    /// `None` for methods that do not mutate by convention (GET, HEAD, custom methods, …).
    pub(super) fn from_method(method: &Method) -> Option<Action> {
        match *method {
            Method::POST => Some(Action::Created),
            Method::PUT | Method::PATCH => Some(Action::Updated),
            Method::DELETE => Some(Action::Deleted),
            _ => None,
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Deleted => "deleted",
        }
    }
}

/// A collection/id pair that encloses the resource, e.g. `project`/`42` in `/api/projects/42/tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ancestor {
    pub(super) singular: String,
    pub(super) id: String,
}

/// A path read by the convention. Owned because it travels in an `EventPlan` until the body has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RestTarget {
    /// The last collection segment, e.g. `tasks`.
    pub(super) collection: String,
    /// `collection` made singular, e.g. `task`.
    pub(super) singular: String,
    /// The segment after `collection`, when the path names one item.
    pub(super) path_id: Option<String>,
    /// Enclosing collection/id pairs, outermost first (path order).
    pub(super) ancestors: Vec<Ancestor>,
}

/// The part of `path` after `prefix` (starting with `/`), or `None` when `path` is not below it.
///
/// `/api` is below `/api` only as `/api/...`: `/apiary` shares the letters, not the prefix. The bare
/// prefix (`/api`) gives `None` too, since it names no collection. `prefix` has no trailing slash
/// (`""` means the whole path space).
pub(super) fn below_prefix<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    rest.starts_with('/').then_some(rest)
}

impl RestTarget {
    /// Reads `path` by the convention; `None` when it is not below `prefix` or has an empty segment
    /// (`/api/`, `/api//x`). One trailing slash is ignored, as most frameworks route it the same way.
    pub(super) fn parse(prefix: &str, path: &str) -> Option<RestTarget> {
        let rest = below_prefix(prefix, path)?;
        let rest = &rest[1..];
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return None;
        }
        let segments: Vec<&str> = rest.split('/').collect();
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        // Pairs: (collection, optional id). Every pair but the last has an id.
        let mut pairs = segments.chunks(2);
        let last = pairs.next_back()?;
        let ancestors = pairs
            .filter_map(|pair| match pair {
                [collection, id] => Some(Ancestor {
                    singular: singular(collection).into_owned(),
                    id: (*id).to_owned(),
                }),
                _ => None,
            })
            .collect();
        let (collection, path_id) = match last {
            [collection, id] => (*collection, Some((*id).to_owned())),
            [collection] => (*collection, None),
            _ => return None,
        };
        Some(RestTarget {
            collection: collection.to_owned(),
            singular: singular(collection).into_owned(),
            path_id,
            ancestors,
        })
    }

    /// The event type, e.g. `task_created`.
    pub(super) fn event_type(&self, action: Action) -> String {
        format!("{}_{}", self.singular, action.as_str())
    }

    /// Channels a change publishes to: the collection, the item itself when `item_id` is given, then
    /// each ancestor's item channel. Also what a GET of the same path belongs to.
    pub(super) fn channels(&self, item_id: Option<&str>) -> Vec<String> {
        let mut out = Vec::with_capacity(2 + self.ancestors.len());
        out.push(self.collection.clone());
        if let Some(id) = item_id {
            out.push(format!("{}:{}", self.singular, id));
        }
        for a in &self.ancestors {
            out.push(format!("{}:{}", a.singular, a.id));
        }
        dedup(out)
    }

    /// Query keys to invalidate: the collection, the item (when its id is known), then each ancestor.
    pub(super) fn invalidate(&self, item_id: Option<&str>) -> Vec<Vec<String>> {
        let mut out = Vec::with_capacity(2 + self.ancestors.len());
        out.push(vec![self.collection.clone()]);
        if let Some(id) = item_id {
            out.push(vec![self.singular.clone(), id.to_owned()]);
        }
        for a in &self.ancestors {
            out.push(vec![a.singular.clone(), a.id.clone()]);
        }
        dedup(out)
    }
}

/// SPEC's singular: `ies` → `y`, a trailing `s` dropped, otherwise unchanged. Deliberately naive
/// (`statuses` → `statuse`): a predictable rule users can reason about beats a clever one; explicit
/// rules cover the exceptions. A name is never made empty (`s` stays `s`).
pub(super) fn singular(collection: &str) -> Cow<'_, str> {
    if let Some(stem) = collection.strip_suffix("ies") {
        return Cow::Owned(format!("{stem}y"));
    }
    match collection.strip_suffix('s') {
        Some(stem) if !stem.is_empty() => Cow::Borrowed(stem),
        _ => Cow::Borrowed(collection),
    }
}

/// Removes repeats, keeping first occurrences: publishing twice to one channel would spend two `seq`s
/// on one change (e.g. `/api/projects/1/projects` with a new id of 1).
pub(super) fn dedup<T: PartialEq>(mut items: Vec<T>) -> Vec<T> {
    // In place: the lists are a handful of items, and most have no duplicate at all.
    let mut i = 1;
    while i < items.len() {
        if items[..i].contains(&items[i]) {
            items.remove(i);
        } else {
            i += 1;
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Option<RestTarget> {
        RestTarget::parse("/api", path)
    }

    #[test]
    fn singular_follows_spec_rules() {
        assert_eq!(singular("categories"), "category");
        assert_eq!(singular("projects"), "project");
        assert_eq!(singular("dashboard"), "dashboard");
        assert_eq!(singular("staff"), "staff");
        assert_eq!(singular("s"), "s");
    }

    #[test]
    fn collection_path_has_no_id() {
        let t = parse("/api/projects").unwrap();
        assert_eq!(t.collection, "projects");
        assert_eq!(t.singular, "project");
        assert_eq!(t.path_id, None);
        assert!(t.ancestors.is_empty());
    }

    #[test]
    fn item_path_has_id() {
        let t = parse("/api/projects/42").unwrap();
        assert_eq!(t.path_id.as_deref(), Some("42"));
    }

    #[test]
    fn nested_paths_of_any_depth_record_ancestors_in_path_order() {
        let t = parse("/api/orgs/1/projects/42/tasks/7").unwrap();
        assert_eq!(t.collection, "tasks");
        assert_eq!(t.path_id.as_deref(), Some("7"));
        let anc: Vec<_> = t
            .ancestors
            .iter()
            .map(|a| (a.singular.as_str(), a.id.as_str()))
            .collect();
        assert_eq!(anc, [("org", "1"), ("project", "42")]);
    }

    #[test]
    fn trailing_slash_is_ignored() {
        assert_eq!(parse("/api/projects/"), parse("/api/projects"));
        assert_eq!(parse("/api/projects/42/"), parse("/api/projects/42"));
    }

    #[test]
    fn empty_segments_and_bare_prefix_parse_to_nothing() {
        assert_eq!(parse("/api"), None);
        assert_eq!(parse("/api/"), None);
        assert_eq!(parse("/api//projects"), None);
        assert_eq!(parse("/api/projects//"), None);
        assert_eq!(parse("/api/projects//tasks"), None);
    }

    #[test]
    fn prefix_must_end_at_a_segment_boundary() {
        assert_eq!(parse("/apiary/bees"), None);
        assert_eq!(parse("/other/projects"), None);
        assert!(RestTarget::parse("", "/projects").is_some());
    }

    #[test]
    fn percent_encoded_segments_are_kept_verbatim() {
        let t = parse("/api/files/a%2Fb").unwrap();
        assert_eq!(t.path_id.as_deref(), Some("a%2Fb"));
        assert_eq!(t.channels(Some("a%2Fb")), ["files", "file:a%2Fb"]);
    }

    #[test]
    fn repeated_channels_and_keys_are_published_once() {
        let t = parse("/api/projects/1/projects").unwrap();
        assert_eq!(t.channels(Some("1")), ["projects", "project:1"]);
        assert_eq!(
            t.invalidate(Some("1")),
            [
                vec!["projects".to_owned()],
                vec!["project".into(), "1".into()]
            ]
        );
    }
}
