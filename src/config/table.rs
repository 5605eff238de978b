//! SKELETON
use super::Config;
/// The resolved rule table `syncgate check` prints.
pub fn render_rule_table(_config: &Config) -> String { todo!() }
