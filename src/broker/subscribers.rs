//! A channel's local subscribers: a dense list for the fan-out loop plus an index by connection,
//! so joining and leaving stay O(1) when a channel holds tens of thousands of sockets (a linear
//! duplicate check made opening N sockets cost O(N²)).

use super::{ConnId, Subscriber};

#[derive(Debug, Default)]
pub struct Subscribers {
    list: Vec<Subscriber>,
    index: foldhash::HashMap<ConnId, usize>,
}

impl Subscribers {
    /// Adds `sub` unless its connection is already here.
    pub fn insert(&mut self, sub: &Subscriber) {
        if self.index.contains_key(&sub.id()) {
            return;
        }
        self.index.insert(sub.id(), self.list.len());
        self.list.push(sub.clone());
    }

    pub fn remove(&mut self, id: ConnId) {
        let Some(at) = self.index.remove(&id) else {
            return;
        };
        self.list.swap_remove(at);
        if let Some(moved) = self.list.get(at) {
            self.index.insert(moved.id(), at);
        }
    }

    /// Keeps the subscribers `keep` says yes to (the fan-out loop: it offers and answers).
    pub fn retain(&mut self, mut keep: impl FnMut(&Subscriber) -> bool) {
        let before = self.list.len();
        self.list.retain(|s| keep(s));
        if self.list.len() != before {
            self.reindex();
        }
    }

    pub fn drain(&mut self) -> Vec<Subscriber> {
        self.index.clear();
        std::mem::take(&mut self.list)
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    fn reindex(&mut self) {
        self.index.clear();
        for (at, s) in self.list.iter().enumerate() {
            self.index.insert(s.id(), at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExcludeOrigin;

    fn sub(name: &str) -> Subscriber {
        Subscriber::new(name.into(), None, ExcludeOrigin::None, 4).0
    }

    #[test]
    fn insert_is_idempotent_and_remove_keeps_the_others_findable() {
        let (a, b, c) = (sub("a"), sub("b"), sub("c"));
        let mut set = Subscribers::default();
        for s in [&a, &b, &c, &a] {
            set.insert(s);
        }
        assert_eq!(set.len(), 3);
        set.remove(a.id());
        assert_eq!(set.len(), 2);
        // c moved into a's slot; removing it by id must still work.
        set.remove(c.id());
        assert_eq!(set.len(), 1);
        set.remove(c.id());
        assert_eq!(set.len(), 1);
        set.retain(|s| s.id() != b.id());
        assert!(set.is_empty());
        set.insert(&b);
        set.insert(&c);
        set.retain(|s| s.id() == c.id());
        set.remove(c.id());
        assert!(set.is_empty());
    }
}
