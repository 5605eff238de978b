//! SKELETON
use super::{Config, ConfigError};
pub(super) fn from_yaml_str(_text: &str, _source: &str) -> Result<Config, ConfigError> { todo!() }
pub(super) fn from_path(_path: &std::path::Path) -> Result<Config, ConfigError> { todo!() }
pub(super) fn defaults() -> Config { todo!() }
