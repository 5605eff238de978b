//! Remembering what the config says about a path.
//!
//! What a write to a path emits, and what a read of it is owed (its `Cache-Control` rule, its
//! `X-Sync-Position` channels), depend only on the method, the path and the config, which a reload
//! replaces whole with everything built from it. Working them out (rule regexes, the convention's
//! parse, name checks) cost more than the rest of our own work on a request, and an API is called
//! on the same few paths over and over, so the answers are kept by path.

use std::sync::{Mutex, PoisonError};

use crate::per_loop::PerLoop;

/// Paths remembered per loop; past this the loop's memory starts over, so paths with ids in
/// them (one entry per item) cannot grow it without bound.
pub(crate) const REMEMBERED: usize = 4096;

/// Answers by path, one memory per event loop.
///
/// Why not one for all loops: an answer is handed out as a clone (an `Arc`), and every request
/// asks. Shared, the lock and each answer's reference count were written by both cores on
/// every request, and everything an answer holds that an event clones (its type, channels,
/// keys) with them; each loop working out its own answers keeps all of that on its own core
/// (BENCHMARKS.md, fifteenth pass). A loop's answers cost it once per path.
///
/// The map is keyed by text the client chose, so it uses a seeded hash (foldhash's per-process
/// random state): a few times cheaper than std's SipHash on short keys, and still not something a
/// client can aim collisions at without knowing the seed.
#[derive(Debug)]
pub(crate) struct PathMemo<T> {
    answers: PerLoop<Mutex<foldhash::HashMap<Box<str>, T>>>,
}

impl<T> Default for PathMemo<T> {
    fn default() -> PathMemo<T> {
        PathMemo {
            answers: PerLoop::default(),
        }
    }
}

impl<T: Clone> PathMemo<T> {
    /// This loop's remembered answer for `path`, or `work`'s, which is then remembered. The
    /// lock is the loop's own (threads outside the loops share one), and `work` runs without
    /// it held.
    pub(crate) fn get_or_work(&self, path: &str, work: impl FnOnce() -> T) -> T {
        let here = self.answers.here();
        if let Some(known) = lock(here).get(path) {
            return known.clone();
        }
        let answer = work();
        let mut answers = lock(here);
        if answers.len() >= REMEMBERED {
            answers.clear();
        }
        answers.insert(path.into(), answer.clone());
        answer
    }

    /// How many paths this thread's loop remembers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(self.answers.here()).len()
    }
}

fn lock<T>(map: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    map.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn an_answer_is_worked_out_once_per_path() {
        let memo = PathMemo::default();
        let runs = Cell::new(0);
        let work = |n: u32| {
            runs.set(runs.get() + 1);
            n
        };
        assert_eq!(memo.get_or_work("/a", || work(1)), 1);
        assert_eq!(memo.get_or_work("/a", || work(2)), 1);
        assert_eq!(memo.get_or_work("/b", || work(3)), 3);
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn each_loop_works_out_and_keeps_its_own_answers() {
        let memo = PathMemo::default();
        let runs = std::sync::atomic::AtomicUsize::new(0);
        let work = || runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let first = memo.get_or_work("/a", work);
        std::thread::scope(|s| {
            s.spawn(|| {
                crate::workers::enter(1);
                let own = memo.get_or_work("/a", work);
                assert_ne!(own, first, "loop 1 worked out its own");
                assert_eq!(memo.get_or_work("/a", work), own, "and keeps it");
            });
        });
        assert_eq!(memo.get_or_work("/a", work), first);
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[test]
    fn the_memory_starts_over_when_full() {
        let memo = PathMemo::default();
        for i in 0..REMEMBERED {
            memo.get_or_work(&format!("/items/{i}"), || i);
        }
        assert_eq!(memo.len(), REMEMBERED);
        memo.get_or_work("/one/more", || 0);
        assert_eq!(memo.len(), 1);
        // Forgotten: worked out again.
        assert_eq!(memo.get_or_work("/items/0", || 7), 7);
    }
}
