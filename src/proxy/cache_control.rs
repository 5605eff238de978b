//! `Cache-Control` rewriting by path rules: first match wins, so realtime data is never served stale.

use http::{HeaderValue, Method};

use crate::config::CacheRule;

/// The index of the first rule for this method and path; an index, so that what a read is owed
/// can be remembered by path (`proxy::reads`) without copying rules.
pub fn rule_for(rules: &[CacheRule], method: &Method, path: &str) -> Option<usize> {
    rules.iter().position(|r| {
        r.methods.as_ref().is_none_or(|m| m.contains(method)) && r.path.is_match(path)
    })
}

/// The value the answer gets from the rule: none when the rule defers to a `Cache-Control` the
/// upstream chose itself (`upstream_set`: the caller has looked through the answer's headers
/// already). It replaces any the upstream sent.
pub fn replacement(rule: &CacheRule, upstream_set: bool) -> Option<&HeaderValue> {
    (!(rule.only_if_missing && upstream_set)).then_some(&rule.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, header};
    use regex::Regex;

    fn apply(rules: &[CacheRule], method: &Method, path: &str, headers: &mut HeaderMap) {
        if let Some(rule) = rule_for(rules, method, path).and_then(|i| rules.get(i)) {
            let upstream_set = headers.contains_key(header::CACHE_CONTROL);
            if let Some(value) = replacement(rule, upstream_set) {
                headers.insert(header::CACHE_CONTROL, value.clone());
            }
        }
    }

    fn rule(
        path: &str,
        methods: Option<Vec<Method>>,
        value: &'static str,
        only: bool,
    ) -> CacheRule {
        CacheRule {
            path: Regex::new(path).unwrap(),
            methods,
            value: HeaderValue::from_static(value),
            only_if_missing: only,
        }
    }

    #[test]
    fn first_matching_rule_wins_and_respects_methods() {
        let rules = [
            rule("^/static/", Some(vec![Method::GET]), "immutable", false),
            rule("^/", None, "no-store", false),
        ];
        let mut h = HeaderMap::new();
        apply(&rules, &Method::GET, "/static/a.js", &mut h);
        assert_eq!(h[header::CACHE_CONTROL], "immutable");
        apply(&rules, &Method::POST, "/static/a.js", &mut h);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn only_if_missing_keeps_the_upstream_header() {
        let rules = [rule("^/api", None, "no-cache", true)];
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        apply(&rules, &Method::GET, "/api/x", &mut h);
        assert_eq!(h[header::CACHE_CONTROL], "max-age=5");
        let mut h = HeaderMap::new();
        apply(&rules, &Method::GET, "/api/x", &mut h);
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    }
}
