//! The one error a config load can fail with.
//!
//! `syncgate check` and startup print it as is, so it carries everything a user needs to fix the file
//! without reading our code: which file, which key (as a dotted path with list indexes), what is wrong
//! and what would be accepted instead.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {}{message}", key_path_prefix(.key_path))]
pub struct ConfigError {
    /// The path of the file, or whatever name the caller gave an in-memory text.
    pub file: String,
    /// Where in the file, e.g. `events.rules[1].path`; empty for whole-file (syntax, IO) errors.
    pub key_path: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ConfigError {
    pub fn new(
        file: impl Into<String>,
        key_path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            file: file.into(),
            key_path: key_path.into(),
            message: message.into(),
        }
    }

    /// An error found while walking the document, before the file name is attached by the loader.
    pub(super) fn at(key_path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::new("", key_path, message)
    }

    pub(super) fn in_file(mut self, file: &str) -> Self {
        file.clone_into(&mut self.file);
        self
    }
}

/// `<key_path>: `, or nothing for whole-file errors, so those read `<file>: <message>`.
fn key_path_prefix(key_path: &str) -> String {
    if key_path.is_empty() {
        String::new()
    } else {
        format!("{key_path}: ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_key_path_and_message() {
        let err = ConfigError::new("cfg.yaml", "upstream.url", "must be http://");
        assert_eq!(err.to_string(), "cfg.yaml: upstream.url: must be http://");
    }

    #[test]
    fn display_omits_an_empty_key_path() {
        let err = ConfigError::new("cfg.yaml", "", "line 1, column 4: unclosed bracket");
        assert_eq!(
            err.to_string(),
            "cfg.yaml: line 1, column 4: unclosed bracket"
        );
    }
}
