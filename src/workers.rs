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

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::broker::{Event, Subscriber};
use crate::one_or_many::OneOrMany;

/// An event for one subscriber, carried to the subscriber's loop (see `broker::FanOut`).
pub type Offer = (Subscriber, Arc<Event>);

/// One fan-out's offers for one loop. Most fan-outs reach one socket per loop (one user's tab,
/// the REST benchmark's subscriber), and such an offer travels without a `Vec`: allocating one
/// per event and loop, and freeing it on the other loop, cost about 130 instructions a POST
/// (BENCHMARKS.md, fourteenth pass).
pub type Batch = OneOrMany<Offer>;

struct Loops {
    handles: Vec<Handle>,
    next: AtomicUsize,
    relays: Vec<mpsc::UnboundedSender<Batch>>,
}

static LOOPS: OnceLock<Loops> = OnceLock::new();

thread_local! {
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Makes `spawn_connection` deal connections over these loops, round-robin, and starts each
/// loop's relay task. Only the first call counts. Each loop's thread must call `enter` with its
/// index before it runs anything.
pub fn install(handles: Vec<Handle>) {
    if handles.is_empty() {
        return;
    }
    let relays = handles
        .iter()
        .map(|handle| {
            let (tx, rx) = mpsc::unbounded_channel();
            handle.spawn(relay_task(rx));
            tx
        })
        .collect();
    let _ = LOOPS.set(Loops {
        handles,
        next: AtomicUsize::new(0),
        relays,
    });
}

/// Marks this thread as running loop `index`.
pub fn enter(index: usize) {
    CURRENT.with(|c| c.set(Some(index)));
}

/// The loop this thread runs, if any.
pub fn current_loop() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// How many loops are installed (0 without them).
pub fn loop_count() -> usize {
    LOOPS.get().map_or(0, |l| l.handles.len())
}

/// Hands a batch of offers to loop `home`'s relay task.
pub fn relay(home: usize, batch: Batch) {
    if let Some(tx) = LOOPS.get().and_then(|l| l.relays.get(home)) {
        let _ = tx.send(batch);
    }
}

/// Batches handled as one burst at most (so the first socket of a long burst does not wait for
/// all of it).
const BURST_BATCHES: usize = 64;

/// Offers the batches handed to this loop, once per turn of the loop.
///
/// Why it waits for the turn's end: a loop serving requests publishes an event every few
/// microseconds, and a socket written once per event woke its reader once per event. The relay
/// lets the turn's other ready tasks run first (`yield_now`, which tokio resumes after its
/// next look at the sockets), so what they publish goes out in the same write. On the REST
/// benchmark's POST with one subscriber, writes to the subscriber fell from 0.105 to 0.034 per
/// POST, wake-ups of the other loop from 0.042 to 0.011, and the CPU per POST by about 3%
/// (BENCHMARKS.md, tenth pass). An idle loop's turn ends at once, so an event alone waits one
/// look at the sockets (no timer). Behind by a whole burst, it does not wait again until it
/// has caught up.
async fn relay_task(mut rx: mpsc::UnboundedReceiver<Batch>) {
    let mut caught_up = true;
    while let Some(batch) = rx.recv().await {
        if caught_up {
            tokio::task::yield_now().await;
        }
        caught_up = true;
        let Ok(next) = rx.try_recv() else {
            // One event's fan-out: each socket gets its frame at once.
            offer_all(batch);
            continue;
        };
        // Several events waiting: each idle socket gets theirs in one write.
        crate::ws::outlet::corked(|| {
            offer_all(batch);
            offer_all(next);
            for _ in 2..BURST_BATCHES {
                match rx.try_recv() {
                    Ok(batch) => offer_all(batch),
                    // Caught up: leaves the burst, `caught_up` still true.
                    Err(_) => return,
                }
            }
            caught_up = false;
        });
    }
}

fn offer_all(batch: Batch) {
    for (sub, event) in batch {
        sub.offer(&event);
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
