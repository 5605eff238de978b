//! Delivering events to browsers: WebSocket handshake and per-connection loop, the socket protocol,
//! channel access rules, and SSE.

pub mod access;
pub mod connection;
pub mod handshake;
pub mod outlet;
pub mod protocol;
pub mod rooms;
pub mod sse;
