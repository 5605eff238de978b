//! One value per event loop, each on cache lines of its own.
//!
//! Why: a cache line written by both cores moves between them on every write, and a move costs
//! about 60 ns on this kind of machine (a contended `fetch_add` from two threads: 78.5 ns an
//! iteration against 18.6 on lines of their own). A reference count, a lock word or a counter
//! touched on every request from both loops pays that each time; one per loop pays it never.
//! Values that must be shared (a channel's numbering) stay shared; values any loop can keep
//! its own copy of (what the config says about a path, counters summed when read) live here.

use crate::workers;

/// Slots: event loops beyond this many share them (a loop's index modulo this), which costs
/// nothing in correctness, only some of the sharing this type exists to avoid.
pub const SLOTS: usize = 16;

/// The calling thread's slot: its loop's, or slot 0 for threads outside the loops (tests, the
/// runtime's blocking pool), which then share it.
pub fn slot() -> usize {
    workers::current_loop().map_or(0, |i| (i + 1) % SLOTS)
}

/// Two 64-byte lines per slot: a neighbour's writes never touch them, whichever way the
/// hardware prefetches pairs of lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

#[derive(Debug)]
pub struct PerLoop<T> {
    slots: Box<[Padded<T>]>,
}

impl<T: Default> Default for PerLoop<T> {
    fn default() -> PerLoop<T> {
        PerLoop {
            slots: (0..SLOTS).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> PerLoop<T> {
    /// The calling loop's value.
    pub fn here(&self) -> &T {
        // `slot()` is below SLOTS, the length of `slots`.
        &self.slots[slot() % self.slots.len()].0
    }

    /// Every loop's value, for what sums or clears them.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn each_loop_gets_its_own_value_and_threads_outside_share_one() {
        let per: PerLoop<AtomicUsize> = PerLoop::default();
        per.here().fetch_add(1, Ordering::Relaxed);
        std::thread::scope(|s| {
            s.spawn(|| {
                workers::enter(3);
                per.here().fetch_add(10, Ordering::Relaxed);
            });
            s.spawn(|| per.here().fetch_add(100, Ordering::Relaxed));
        });
        let values: Vec<usize> = per.all().map(|v| v.load(Ordering::Relaxed)).collect();
        assert_eq!(values[0], 101, "outside the loops: slot 0");
        assert_eq!(values[4], 10, "loop 3: slot 4");
        assert_eq!(values.iter().sum::<usize>(), 111);
    }

    #[test]
    fn slots_do_not_share_cache_lines() {
        let per: PerLoop<u8> = PerLoop::default();
        let addrs: Vec<usize> = per.all().map(|v| v as *const u8 as usize).collect();
        assert!(addrs.windows(2).all(|w| w[1] - w[0] >= 128));
    }
}
