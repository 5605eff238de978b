//! Client connections spread over one single-threaded event loop per core, as nginx spreads them
//! over its worker processes.
//!
//! Why not tokio's work-stealing scheduler for them: a proxied request wakes its connection's task
//! several times (request in, upstream answer, body), and with work stealing those wake-ups often
//! hop threads, with the atomics and futex calls that brings; measured on the benchmark's GET that
//! cost a third of syncgate's user CPU per request. A connection, its upstream connection and its
//! socket task now stay on the loop that accepted it; only the fan-out crosses loops.
//!
//! The binary installs the loops at start-up; without them (the library inside a test's runtime)
//! connections are spawned on the ambient runtime as before.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;

struct Loops {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

static LOOPS: OnceLock<Loops> = OnceLock::new();

/// Makes `spawn_connection` deal connections over these loops, round-robin. Only the first call
/// counts.
pub fn install(handles: Vec<Handle>) {
    if !handles.is_empty() {
        let _ = LOOPS.set(Loops {
            handles,
            next: AtomicUsize::new(0),
        });
    }
}

/// Spawns a client connection's task on the next loop, or on the current runtime when none are
/// installed.
pub fn spawn_connection<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match LOOPS.get() {
        Some(loops) => {
            let i = loops.next.fetch_add(1, Ordering::Relaxed) % loops.handles.len();
            loops.handles[i].spawn(task);
        }
        None => {
            tokio::spawn(task);
        }
    }
}
