//! One value or several, where one is the usual case and should cost no `Vec`.
//!
//! Why: the fan-out's offers for one loop (one socket there, most of the time) and the events a
//! publish trims off a full history (one each time) were each a `Vec` per event, an allocation
//! and a free on every POST.

use std::iter::Chain;

pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// `few` with `item` added (`None`: nothing yet).
    pub fn push(few: Option<OneOrMany<T>>, item: T) -> OneOrMany<T> {
        match few {
            None => OneOrMany::One(item),
            Some(OneOrMany::One(first)) => OneOrMany::Many(vec![first, item]),
            Some(OneOrMany::Many(mut items)) => {
                items.push(item);
                OneOrMany::Many(items)
            }
        }
    }
}

impl<T> IntoIterator for OneOrMany<T> {
    type Item = T;
    type IntoIter = Chain<std::option::IntoIter<T>, std::vec::IntoIter<T>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            OneOrMany::One(item) => Some(item).into_iter().chain(Vec::new()),
            OneOrMany::Many(items) => None.into_iter().chain(items),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_needs_no_vec_and_items_come_back_in_the_order_they_were_pushed() {
        assert!(matches!(OneOrMany::push(None, 7), OneOrMany::One(7)));
        let mut few = None;
        for i in 0..3 {
            few = Some(OneOrMany::push(few, i));
        }
        let items: Vec<i32> = few.into_iter().flatten().collect();
        assert_eq!(items, [0, 1, 2]);
    }
}
