//! SKELETON
use std::time::Duration;
pub fn parse_duration(_s: &str) -> Result<Duration, String> { todo!() }
pub fn parse_size(_s: &str) -> Result<u64, String> { todo!() }
