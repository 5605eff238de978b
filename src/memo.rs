//! Remembering what the config says about a path.
//!
//! What a write to a path emits, and what a read of it is owed (its `Cache-Control` rule, its
//! `X-Sync-Position` channels), depend only on the method, the path and the config, which a reload
//! replaces whole with everything built from it. Working them out (rule regexes, the convention's
//! parse, name checks) cost more than the rest of our own work on a request, and an API is called
//! on the same few paths over and over, so the answers are kept by path.

use std::sync::{Mutex, PoisonError};

/// Paths remembered; past this the memory starts over, so paths with ids in them (one entry per
/// item) cannot grow it without bound.
pub(crate) const REMEMBERED: usize = 4096;

/// Answers by path, shared by every loop.
///
/// The map is keyed by text the client chose, so it uses a seeded hash (foldhash's per-process
/// random state): a few times cheaper than std's SipHash on short keys, and still not something a
/// client can aim collisions at without knowing the seed.
#[derive(Debug)]
pub(crate) struct PathMemo<T> {
    answers: Mutex<foldhash::HashMap<Box<str>, T>>,
}

impl<T> Default for PathMemo<T> {
    fn default() -> PathMemo<T> {
        PathMemo {
            answers: Mutex::default(),
        }
    }
}

impl<T: Clone> PathMemo<T> {
    /// The remembered answer for `path`, or `work`'s, which is then remembered. `work` runs
    /// without the lock held: two loops asking at once both work it out, and one answer stays.
    pub(crate) fn get_or_work(&self, path: &str, work: impl FnOnce() -> T) -> T {
        if let Some(known) = self.lock().get(path) {
            return known.clone();
        }
        let answer = work();
        let mut answers = self.lock();
        if answers.len() >= REMEMBERED {
            answers.clear();
        }
        answers.insert(path.into(), answer.clone());
        answer
    }

    /// How many paths are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<Box<str>, T>> {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
