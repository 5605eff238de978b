//! What every request and connection shares: the live settings, the broker, metrics and counters.
//!
//! Settings sit behind an `ArcSwap` so a reload can replace rules and limits atomically while
//! requests in flight keep the snapshot they started with.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::admin::metrics::Metrics;
use crate::auth::Authenticator;
use crate::broker::Broker;
use crate::config::Config;
use crate::events::EventMatcher;
use crate::proxy::reads::Reads;
use crate::proxy::upstream::Upstream;
use crate::publisher::Publisher;
use crate::ws::rooms::Rooms;

/// A config together with what is compiled from it.
#[derive(Debug)]
pub struct Settings {
    pub config: Config,
    pub matcher: EventMatcher,
    pub auth: Authenticator,
    pub reads: Reads,
}

impl Settings {
    /// Fails when the config cannot work at runtime (e.g. jwt mode without a usable key).
    pub fn new(config: Config) -> Result<Settings, String> {
        let matcher = EventMatcher::new(&config.events);
        let auth = Authenticator::new(&config.auth, &config.upstream)?;
        Ok(Settings {
            config,
            matcher,
            auth,
            reads: Reads::default(),
        })
    }
}

pub struct Shared {
    settings: ArcSwap<Settings>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    /// Orders proxy-built events by response completion.
    pub publisher: Publisher,
    /// Room membership and presence on this replica.
    pub rooms: Rooms,
    /// Open WebSocket and SSE connections, checked against `limits.max_connections`.
    open_sockets: AtomicUsize,
    /// Set on SIGTERM: `/readyz` answers 503 and new sockets are refused.
    draining: AtomicBool,
    /// Last result of the upstream probe, for `/readyz`.
    upstream_up: AtomicBool,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    pub fn new(
        settings: Settings,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> Shared {
        let upstream = Upstream::new(&settings.config.upstream);
        let publisher = Publisher::spawn(Arc::clone(&broker), Arc::clone(&metrics));
        Shared {
            publisher,
            rooms: Rooms::default(),
            settings: ArcSwap::from_pointee(settings),
            broker,
            metrics,
            upstream,
            open_sockets: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            upstream_up: AtomicBool::new(false),
            shutdown,
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The current settings for the length of one request, without a clone.
    ///
    /// Why: `settings` clones the `Arc`, a write to its reference count, which every loop
    /// writes on every request; the line moved between the cores each time. A load leaves its
    /// mark in this thread's own slots (arc-swap's debts), and a reload meanwhile only makes
    /// the guard hold the old settings as a clone would.
    pub fn settings_now(&self) -> arc_swap::Guard<Arc<Settings>> {
        self.settings.load()
    }

    pub fn replace_settings(&self, settings: Settings) {
        self.settings.store(Arc::new(settings));
    }

    /// Takes one connection slot, or `None` when `limits.max_connections` are open.
    pub fn try_open_socket(self: &Arc<Self>, max: usize) -> Option<SocketSlot> {
        let mut current = self.open_sockets.load(Ordering::Relaxed);
        loop {
            if current >= max {
                return None;
            }
            match self.open_sockets.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Some(SocketSlot {
                        shared: Arc::clone(self),
                    });
                }
                Err(now) => current = now,
            }
        }
    }

    pub fn open_sockets(&self) -> usize {
        self.open_sockets.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn set_upstream_up(&self, up: bool) {
        self.upstream_up.store(up, Ordering::Relaxed);
    }

    pub fn upstream_up(&self) -> bool {
        self.upstream_up.load(Ordering::Relaxed)
    }

    /// A receiver that changes to `true` when connections must close.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }
}

/// Frees its connection slot when the socket ends, however it ends.
pub struct SocketSlot {
    shared: Arc<Shared>,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.shared.open_sockets.fetch_sub(1, Ordering::AcqRel);
    }
}
