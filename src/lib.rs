//! syncgate: a reverse-proxy sidecar that turns an unchanged REST API's mutations into realtime events.
//!
//! The data path reads top to bottom: `proxy` forwards a request and, for a successful mutation, asks
//! `events` for a draft; the `broker` numbers it and fans it out; `ws` delivers it to sockets and SSE
//! streams. `config` is parsed once and trusted everywhere; `admin` serves health, metrics and publish.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod events;
pub mod tail;
