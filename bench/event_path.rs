//! The event path alone: what one POST's event costs a loop (its plan, the draft built from the
//! answer's body, the sidecar's counter, the broker's numbering and history), on one thread and
//! on two at once, with the REST scenario's rule and answer.
//!
//! Why two: the loops share a channel and, wherever the code lets them, cache lines; a line both
//! cores write moves between them on every write, which a run on one thread never shows. The
//! nanoseconds per event with two threads against one are that cost (BENCHMARKS.md, fifteenth
//! pass). Each stage adds one step, so the step that does not scale stands out:
//!
//!   cargo run --release --example event_path -- CONFIG [threads] [stage]
//!
//! where CONFIG is a sidecar config (the bench's: `source bench/lib.sh; syncgate_yaml 1 2
//! 127.0.0.1:3`) and stage is `plan`, `build`, `count`, `broker` or `all` (the default). Built,
//! never run, by `cargo test`.

use std::sync::Arc;
use std::time::Instant;

use syncgate::broker::Broker;
use syncgate::events::{BodyPrefix, EmitContext};

const EVENTS: usize = 1_000_000;
/// The bench upstream's answer to a POST.
const ANSWER: &[u8] = br#"{"id":12345,"name":"bench","t":1700000000000000}"#;

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Stage {
    Plan,
    Build,
    Count,
    Broker,
    All,
}

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: event_path CONFIG [threads] [stage]")?;
    let threads: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|_| format!("threads: not a number: {n}"))?,
        None => 1,
    };
    let stage = match args.next().as_deref() {
        Some("plan") => Stage::Plan,
        Some("build") => Stage::Build,
        Some("count") => Stage::Count,
        Some("broker") => Stage::Broker,
        Some("all") | None => Stage::All,
        Some(other) => return Err(format!("unknown stage {other}")),
    };
    let config =
        syncgate::config::Config::load(std::path::Path::new(&path)).map_err(|e| e.to_string())?;
    let settings = syncgate::state::Settings::new(config.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let _entered = runtime.enter();
    let metrics = Arc::new(syncgate::admin::metrics::Metrics::new());
    let broker = syncgate::broker::memory::MemoryBroker::new(config.history);
    let publisher = syncgate::publisher::Publisher::spawn(
        Arc::clone(&broker) as Arc<dyn Broker>,
        Arc::clone(&metrics),
    );
    let method = http::Method::POST;
    let start = Instant::now();
    std::thread::scope(|s| {
        for i in 0..threads {
            let (settings, publisher, broker, metrics, method) =
                (&settings, &publisher, &broker, &metrics, &method);
            s.spawn(move || {
                syncgate::workers::enter(i);
                for _ in 0..EVENTS {
                    let Some(plan) = settings.matcher.plan(method, "/api/projects") else {
                        return;
                    };
                    if stage == Stage::Plan {
                        continue;
                    }
                    let ctx = EmitContext {
                        actor: None,
                        origin_client: None,
                        ts: 1_700_000_000_000,
                    };
                    let body = BodyPrefix {
                        bytes: ANSWER,
                        complete: true,
                    };
                    let Some(draft) = plan.build(body, &ctx) else {
                        return;
                    };
                    match stage {
                        Stage::Count => metrics.event_published(&draft.event_type),
                        Stage::Broker => {
                            broker.publish_here(&draft);
                        }
                        Stage::All => publisher.publish(draft),
                        Stage::Plan | Stage::Build => {}
                    }
                }
            });
        }
    });
    let per_event = start.elapsed().as_nanos() as f64 / EVENTS as f64;
    println!("{threads} thread(s): {per_event:.0} ns per event on each");
    Ok(())
}
