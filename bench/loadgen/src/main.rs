//! syncgate's benchmark load generator: the fast upstream every peer proxies to, and the socket
//! fan-out client that measures delivery delay and the peer's memory. Driven by `bench/run.sh`.

mod clock;
mod fanout;
mod floor;
mod held;
mod peer;
mod rss;
mod stats;
mod subscribe;
mod upstream;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use peer::Peer;

#[derive(Parser)]
#[command(name = "syncgate-loadgen", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the fast upstream until killed.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Runtime worker threads (the upstream must not crowd out the peer on a small box).
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Open N subscribed sockets, fire K mutations, print one JSON line of figures.
    Fanout {
        #[arg(long, value_enum)]
        peer: Peer,
        /// Label printed with the result.
        #[arg(long, default_value = "")]
        label: String,
        /// Subscriber URLs (comma-separated; sockets are spread over them).
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        sockets: usize,
        /// Subscriber processes (each stays under the per-process open-file cap).
        #[arg(long)]
        procs: Option<usize>,
        #[arg(long, default_value_t = 20)]
        mutations: usize,
        /// Pause between mutations, so each one's fan-out is measured alone.
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// Where a mutation is POSTed (through syncgate, or straight to the upstream).
        #[arg(long)]
        trigger: String,
        /// Where the upstream's answer is then published (nchan, pushpin, floor; comma-separated
        /// to publish to each of several floor shards).
        #[arg(long, value_delimiter = ',')]
        publish: Vec<String>,
        /// PIDs whose process trees' RSS is the peer's memory.
        #[arg(long, value_delimiter = ',')]
        rss_pids: Vec<u32>,
        #[arg(long, default_value_t = 1000)]
        settle_ms: u64,
        /// How long to wait for stragglers after the last mutation.
        #[arg(long, default_value_t = 3000)]
        grace_ms: u64,
    },
    /// Serve the fan-out floor until killed: one thread sending one frame to every socket (see
    /// `floor.rs`); driven by `fanout --peer floor`.
    Floor {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// One shard of subscribers (started by `fanout`; also usable to hold sockets open).
    Subscribe {
        #[arg(long, value_enum)]
        peer: Peer,
        #[arg(long, value_delimiter = ',', required = true)]
        urls: Vec<String>,
        #[arg(long, default_value_t = 1)]
        sockets: usize,
        #[arg(long, default_value_t = 3000)]
        grace_ms: u64,
        /// Hold the sockets open until killed, drained without decoding (`held.rs`; no result
        /// is printed).
        #[arg(long)]
        hold: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Cmd::Subscribe {
        peer,
        urls,
        sockets,
        hold: true,
        ..
    } = &cli.command
    {
        if let Err(e) = held::run(*peer, urls, *sockets) {
            eprintln!("syncgate-loadgen: {e}");
            std::process::exit(1);
        }
        return;
    }
    let threads = match &cli.command {
        Cmd::Upstream { threads, .. } => (*threads).max(1),
        _ => 1,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("syncgate-loadgen: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = rt.block_on(async move {
        match cli.command {
            Cmd::Upstream { listen, .. } => {
                upstream::serve(listen).await.map_err(|e| e.to_string())
            }
            Cmd::Fanout {
                peer,
                label,
                urls,
                sockets,
                procs,
                mutations,
                interval_ms,
                trigger,
                publish,
                rss_pids,
                settle_ms,
                grace_ms,
            } => {
                let run = fanout::Run {
                    peer,
                    label,
                    sub_urls: urls,
                    sockets,
                    procs: procs.unwrap_or(sockets.div_ceil(18_000)),
                    mutations,
                    interval: Duration::from_millis(interval_ms),
                    trigger_url: trigger,
                    publish_urls: publish,
                    rss_pids,
                    settle: Duration::from_millis(settle_ms),
                    grace: Duration::from_millis(grace_ms),
                };
                fanout::run(run).await.map(|v| println!("{v}"))
            }
            Cmd::Floor { listen } => floor::serve(listen).await,
            Cmd::Subscribe {
                peer,
                urls,
                sockets,
                grace_ms,
                ..
            } => {
                subscribe::run(subscribe::Shard {
                    peer,
                    urls,
                    sockets,
                    grace: Duration::from_millis(grace_ms),
                })
                .await
            }
        }
    });
    if let Err(e) = outcome {
        eprintln!("syncgate-loadgen: {e}");
        std::process::exit(1);
    }
}
