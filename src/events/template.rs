//! `{name}` / `{body.field}` / `{user}` templates used in event rules and room rules.
//!
//! Parsed once at config load so a typo is a config error, not a silent empty channel at runtime.
//! Rendering never fails loudly: a variable with no value makes `render` return `None` and the caller
//! decides what to drop.

use std::fmt;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    /// A named capture of the rule's path regex.
    Capture(String),
    /// A field of the response JSON; `body.a.b` is the path `["a", "b"]`.
    Body(Vec<String>),
    /// The acting user's id.
    User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unclosed '{{' at byte {0}")]
    Unclosed(usize),
    #[error("stray '}}' at byte {0}")]
    Stray(usize),
    #[error("empty variable '{{}}' at byte {0}")]
    Empty(usize),
    #[error("bad variable '{{{0}}}': use {{name}} for a path capture, {{body.FIELD}} or {{user}}")]
    BadVariable(String),
}

/// Where a template's variables come from when it is rendered.
pub trait Vars {
    fn capture(&self, name: &str) -> Option<&str>;
    /// The response field at `path`, as text (strings unquoted, numbers and booleans printed).
    fn body_field(&self, path: &[String]) -> Option<String>;
    fn user(&self) -> Option<&str>;
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = source.char_indices().peekable();
        while let Some((at, ch)) = rest.next() {
            match ch {
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, c) in rest.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(TemplateError::Unclosed(at));
                    }
                    if name.is_empty() {
                        return Err(TemplateError::Empty(at));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(parse_variable(&name)?);
                }
                '}' => return Err(TemplateError::Stray(at)),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template {
            source: source.to_owned(),
            parts,
        })
    }

    /// The text as written in the config.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Names of the path captures the template needs, so config can check the regex defines them.
    pub fn captures(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Capture(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// True when the template reads the response body (so the proxy must keep a bounded copy).
    pub fn uses_body(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Body(_)))
    }

    /// True when the template reads the requesting user (so it cannot be rendered ahead).
    pub fn uses_user(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::User))
    }

    /// `None` when any variable has no value.
    pub fn render(&self, vars: &dyn Vars) -> Option<String> {
        if let [Part::Lit(text)] = self.parts.as_slice() {
            return Some(text.clone());
        }
        let mut out = String::with_capacity(self.source.len() + 8);
        for part in &self.parts {
            match part {
                Part::Lit(text) => out.push_str(text),
                Part::Capture(name) => out.push_str(vars.capture(name)?),
                Part::Body(path) => out.push_str(&vars.body_field(path)?),
                Part::User => out.push_str(vars.user()?),
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_variable(name: &str) -> Result<Part, TemplateError> {
    let valid_ident = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if name == "user" {
        return Ok(Part::User);
    }
    if let Some(field) = name.strip_prefix("body.") {
        let path: Vec<String> = field.split('.').map(str::to_owned).collect();
        if path.iter().all(|s| valid_ident(s)) {
            return Ok(Part::Body(path));
        }
        return Err(TemplateError::BadVariable(name.to_owned()));
    }
    if valid_ident(name) && !name.contains('-') {
        return Ok(Part::Capture(name.to_owned()));
    }
    Err(TemplateError::BadVariable(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V;
    impl Vars for V {
        fn capture(&self, name: &str) -> Option<&str> {
            (name == "id").then_some("42")
        }
        fn body_field(&self, path: &[String]) -> Option<String> {
            (path == ["owner", "id"]).then(|| "7".to_owned())
        }
        fn user(&self) -> Option<&str> {
            None
        }
    }

    #[test]
    fn renders_captures_and_body_fields() {
        let t = Template::parse("project:{id}:owner:{body.owner.id}").unwrap();
        assert_eq!(t.render(&V).as_deref(), Some("project:42:owner:7"));
        assert_eq!(t.captures().collect::<Vec<_>>(), ["id"]);
        assert!(t.uses_body());
    }

    #[test]
    fn missing_variable_renders_nothing() {
        let t = Template::parse("user:{user}").unwrap();
        assert_eq!(t.render(&V), None);
    }

    #[test]
    fn malformed_templates_are_rejected() {
        assert_eq!(Template::parse("a{b"), Err(TemplateError::Unclosed(1)));
        assert_eq!(Template::parse("a}b"), Err(TemplateError::Stray(1)));
        assert_eq!(Template::parse("{}"), Err(TemplateError::Empty(0)));
        assert!(matches!(
            Template::parse("{body.}"),
            Err(TemplateError::BadVariable(_))
        ));
        assert!(matches!(
            Template::parse("{a b}"),
            Err(TemplateError::BadVariable(_))
        ));
    }
}
