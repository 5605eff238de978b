//! The admin listener: health, readiness, metrics and the publish API.

pub mod metrics;
