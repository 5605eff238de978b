//! What differs between the peers a fan-out runs against: how a socket subscribes, and how a
//! mutation becomes a message.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// syncgate: generic socket, `subscribe` to `projects`; mutations go through the proxy and
    /// the sidecar turns them into events (with `data: [id, t]`).
    Syncgate,
    /// nginx + nchan: a WebSocket subscriber location; the mutation goes to the upstream, then its
    /// answer is POSTed to nchan's publisher location (what an app using nchan does).
    Nchan,
    /// Pushpin: WebSocket-over-HTTP to the upstream, which subscribes the socket to `bench`; the
    /// mutation's answer is published through Pushpin's HTTP publish endpoint.
    Pushpin,
    /// The machine's floor (`syncgate-loadgen floor`): nchan's interface, served by one thread
    /// writing one frame to every socket in a loop.
    Floor,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Peer::Syncgate => "syncgate",
            Peer::Nchan => "nchan",
            Peer::Pushpin => "pushpin",
            Peer::Floor => "floor",
        }
    }
}
