//! The `syncgate` command line: parse arguments, load config, run. Everything else is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use syncgate::config::{Config, LogFormat};
use syncgate::reload::ConfigWatch;

mod allocator;

/// mimalloc, for the reasons `allocator` gives.
#[global_allocator]
static ALLOC: allocator::Mimalloc = allocator::Mimalloc;

#[derive(Parser)]
#[command(
    name = "syncgate",
    version,
    about = "Realtime sync for an unchanged REST API: a reverse-proxy sidecar"
)]
struct Cli {
    /// YAML config file; without one, the embedded defaults (listen 0.0.0.0:8080, upstream
    /// http://127.0.0.1:8000, memory broker, automatic events).
    #[arg(long, env = "SYNCGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar (the default).
    Run,
    /// Validate a config and print the resolved rule table; exit 1 on any error.
    Check,
    /// Connect like a browser would and print every event of CHANNELs as one JSON line.
    Tail {
        /// The sidecar (http://host:8080) or its socket URL (ws://host:8080/api/ws).
        #[arg(long)]
        url: String,
        /// Access token sent as the token query parameter (browsers cannot set socket headers).
        #[arg(long)]
        token: Option<String>,
        /// Origin header to send (defaults to the URL's own origin).
        #[arg(long)]
        origin: Option<String>,
        #[arg(required = true)]
        channels: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(cli.config.as_deref()),
        Command::Run => run(cli.config),
        Command::Tail {
            url,
            token,
            origin,
            channels,
        } => tail(syncgate::tail::TailOptions {
            url,
            channels,
            token,
            origin,
        }),
    }
}

fn load(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None => Ok(Config::default()),
    }
}

fn check(path: Option<&Path>) -> ExitCode {
    match load(path) {
        Ok(config) => {
            let source = path.map_or("<embedded defaults>".into(), |p| p.display().to_string());
            println!("config OK: {source}\n");
            print!("{}", syncgate::config::render_rule_table(&config));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// `SYNCGATE_WORKERS`, or the CPUs this process may use (cgroup quotas included), as nginx's
/// `worker_processes auto`. Several sidecars sharing a few cores run better with fewer each.
fn loop_count(setting: Option<&str>) -> Result<usize, String> {
    match setting {
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=256).contains(n))
            .ok_or_else(|| {
                format!("SYNCGATE_WORKERS must be a whole number of event loops from 1 to 256, got {v:?}")
            }),
    }
}

/// `count` single-threaded loops (see `syncgate::workers`): this thread's, returned to run the
/// server on, and one thread for each further loop, serving the connections dealt to it.
fn event_loops(count: usize) -> Result<tokio::runtime::Runtime, std::io::Error> {
    let build = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let main = build()?;
    let mut handles = vec![main.handle().clone()];
    for i in 1..count {
        let rt = build()?;
        handles.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("syncgate-loop-{i}"))
            .spawn(move || {
                syncgate::workers::enter(i);
                rt.block_on(std::future::pending::<()>())
            })?;
    }
    syncgate::workers::enter(0);
    syncgate::workers::install(handles);
    Ok(main)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; systemd, Docker and pipes get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_logs(config.log.format);
    let loops = match loop_count(std::env::var("SYNCGATE_WORKERS").ok().as_deref()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match event_loops(loops) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let running = match syncgate::start(config).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        signals(running, path).await;
        ExitCode::SUCCESS
    })
}

/// SIGTERM/SIGINT drain and stop; SIGHUP, or a change of the config file's content, reloads it,
/// keeping the old config if the new one is invalid.
async fn signals(running: syncgate::Running, path: Option<PathBuf>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; running until killed");
        running.wait().await;
        return;
    };
    let mut watch = path.as_deref().and_then(|p| match ConfigWatch::start(p) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(path = %p.display(), error = %e, "cannot watch the config file; reload with SIGHUP");
            None
        }
    });
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                if let Some(w) = watch.as_mut() {
                    w.seen();
                }
                reload(&running, path.as_deref(), "SIGHUP");
            }
            _ = changed(watch.as_mut()) => reload(&running, path.as_deref(), "file changed"),
        }
    }
    tracing::info!("shutting down: draining connections");
    running.shutdown().await;
    tracing::info!("stopped");
}

/// Completes when the watched config file changed; never without a watch.
async fn changed(watch: Option<&mut ConfigWatch>) {
    match watch {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

fn reload(running: &syncgate::Running, path: Option<&Path>, trigger: &'static str) {
    let Some(path) = path else {
        tracing::warn!("SIGHUP ignored: running on embedded defaults, no file to reload");
        return;
    };
    match Config::load(path)
        .map_err(|e| e.to_string())
        .and_then(|c| running.reload(c))
    {
        Ok(()) => tracing::info!(path = %path.display(), trigger, "config reloaded"),
        Err(e) => {
            tracing::error!(path = %path.display(), trigger, error = %e, "config reload refused; the old config keeps serving")
        }
    }
}

fn tail(opts: syncgate::tail::TailOptions) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(syncgate::tail::run(opts, async {
        let _ = tokio::signal::ctrl_c().await;
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
