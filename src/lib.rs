//! syncgate: a reverse-proxy sidecar that turns an unchanged REST API's mutations into realtime events.
//!
//! The data path reads top to bottom: `front` reads a request off the client's connection (hyper
//! takes the rare shapes), `proxy` forwards it and, for a successful mutation, asks
//! `events` for a draft; the `publisher` hands it to the `broker`, which numbers it and fans it out;
//! `ws` delivers it to sockets and SSE streams. `config` is parsed once and trusted everywhere;
//! `admin` serves health, metrics and publish; `reload` notices config file changes. `start` is the
//! one entry point, for `main` and tests.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod broker;
pub mod config;
pub mod drained;
pub mod events;
pub mod front;
pub mod graceful;
pub mod memo;
pub mod one_or_many;
pub mod per_loop;
pub mod proxy;
pub mod publisher;
pub mod reload;
pub(crate) mod server;
pub mod state;
pub mod tail;
pub mod timer;
pub mod workers;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use admin::metrics::Metrics;
use broker::{Broker, MemoryBroker, RedisBroker};
use config::{BrokerKind, Config};
use drained::ClientSocket;
use state::{Settings, Shared};

/// How long `shutdown` waits for sockets to send their close frames (each write is bounded at 1 s).
const SOCKET_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Unsupported(String),
}

/// The two listening sockets, bound before `start_with` so tests can use port 0.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        Ok(Listeners {
            public: bind("listen", config.listen).await?,
            admin: bind("admin_listen", config.admin_listen).await?,
        })
    }
}

/// A running sidecar. Dropping it does not stop it; call `shutdown`.
pub struct Running {
    pub public_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    shutdown_tx: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// SPEC shutdown: readiness 503, sockets closed with 1001, in-flight requests finished within
    /// `shutdown_grace`, then the admin listener closes.
    pub async fn shutdown(self) {
        self.shared.start_draining();
        let _ = self.shutdown_tx.send(true);
        let _ = self.task.await;
        // Upgraded sockets run outside the HTTP server's bookkeeping: give them the moment they
        // need to write their 1001 close frame before the process exits.
        let deadline = tokio::time::Instant::now() + SOCKET_CLOSE_WAIT;
        while self.shared.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Completes when the servers have stopped.
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    /// Swaps in a new config for rules, headers, limits and auth; listeners and broker stay.
    pub fn reload(&self, config: Config) -> Result<(), String> {
        let current = self.shared.settings();
        let old = &current.config;
        if config.listen != old.listen || config.admin_listen != old.admin_listen {
            return Err("listen addresses changed: restart syncgate to apply".into());
        }
        if config.broker.kind != old.broker.kind {
            return Err("broker.kind changed: restart syncgate to apply".into());
        }
        let (new_redis, old_redis) = (&config.broker.redis, &old.broker.redis);
        if config.broker.kind == BrokerKind::Redis
            && (new_redis.url != old_redis.url
                || new_redis.key_prefix != old_redis.key_prefix
                || new_redis.stream_maxlen != old_redis.stream_maxlen)
        {
            return Err("broker.redis changed: restart syncgate to apply".into());
        }
        self.shared.replace_settings(Settings::new(config)?);
        Ok(())
    }
}

/// Binds the configured addresses and starts serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let listeners = Listeners::bind(&config).await?;
    start_with(config, listeners).await
}

pub async fn start_with(config: Config, listeners: Listeners) -> Result<Running, StartError> {
    let public_addr = local_addr(&listeners.public, "listen", config.listen)?;
    let admin_addr = local_addr(&listeners.admin, "admin_listen", config.admin_listen)?;
    let metrics = Arc::new(Metrics::new());
    let broker = make_broker(&config)?;
    metrics.set_broker_up(broker.is_up());
    let grace = config.shutdown_grace;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let settings = Settings::new(config).map_err(StartError::Unsupported)?;
    let shared = Arc::new(Shared::new(settings, broker, metrics, shutdown_rx.clone()));
    spawn_upstream_probe(Arc::clone(&shared), shutdown_rx.clone());

    let public = {
        let shared = Arc::clone(&shared);
        server::serve(
            "public",
            listeners.public,
            move |stream, peer, shutdown| front::serve(stream, peer, Arc::clone(&shared), shutdown),
            shutdown_rx.clone(),
            grace,
        )
    };
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let admin = {
        let shared = Arc::clone(&shared);
        server::serve(
            "admin",
            listeners.admin,
            move |stream, _peer, shutdown| {
                let shared = Arc::clone(&shared);
                let handler = move |req| admin::handle(req, Arc::clone(&shared));
                server::serve_hyper(ClientSocket::new(stream), handler, shutdown)
            },
            admin_stop_rx,
            Duration::from_secs(1),
        )
    };
    let admin_task = tokio::spawn(admin);
    let task = tokio::spawn(async move {
        public.await;
        let _ = admin_stop_tx.send(true);
        let _ = admin_task.await;
    });
    tracing::info!(%public_addr, %admin_addr, "syncgate listening");
    Ok(Running {
        public_addr,
        admin_addr,
        shared,
        shutdown_tx,
        task,
    })
}

/// The broker `broker.kind` asks for. Redis connects in the background: the sidecar starts (and
/// delivers locally, `/readyz` 503 `broker_down`) even while Redis is not there yet.
fn make_broker(config: &Config) -> Result<Arc<dyn Broker>, StartError> {
    match config.broker.kind {
        BrokerKind::Memory => {
            let memory = MemoryBroker::new(config.history);
            memory.spawn_sweeper(
                config
                    .history
                    .ttl
                    .clamp(Duration::from_secs(1), Duration::from_secs(30)),
            );
            Ok(memory)
        }
        BrokerKind::Redis => {
            let redis = RedisBroker::new(&config.broker.redis, config.history)
                .map_err(|e| StartError::Unsupported(e.to_string()))?;
            Ok(redis)
        }
    }
}

fn local_addr(
    listener: &TcpListener,
    what: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// `/readyz` needs to know whether the upstream answers; a TCP connect every two seconds tells.
fn spawn_upstream_probe(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            let settings = shared.settings();
            let target = settings.config.upstream.authority.to_string();
            let timeout = settings.config.upstream.connect_timeout;
            drop(settings);
            let up = matches!(
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(target)).await,
                Ok(Ok(_))
            );
            if up != shared.upstream_up() {
                tracing::info!(upstream_up = up, "upstream reachability changed");
            }
            shared.set_upstream_up(up);
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}
