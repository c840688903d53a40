//! `ThreadSet`: a set of thread ids as a bitmap, for the pending set of a
//! transition. Thread ids are small, dense and increasing, so membership,
//! insertion and removal are a shift and a mask: checking and switching
//! 10,000 threads costs no hashing and no tree rebalancing.

/// A set of thread ids.
#[derive(Clone, Debug, Default)]
pub struct ThreadSet {
    /// Id of bit 0 of `words[0]` (a multiple of 64).
    base: u32,
    words: Vec<u64>,
    len: usize,
}

impl ThreadSet {
    /// The set of `ids` (any order, duplicates allowed).
    pub fn from_ids(ids: impl IntoIterator<Item = u32> + Clone) -> ThreadSet {
        let (lo, hi) = ids
            .clone()
            .into_iter()
            .fold((u32::MAX, 0), |(lo, hi), id| (lo.min(id), hi.max(id)));
        let mut set = ThreadSet::default();
        if lo > hi {
            return set;
        }
        set.base = lo & !63;
        set.words = vec![0; ((hi - set.base) / 64 + 1) as usize];
        for id in ids {
            set.insert(id);
        }
        set
    }

    fn slot(&self, id: u32) -> Option<(usize, u64)> {
        let rel = id.checked_sub(self.base)?;
        let w = (rel / 64) as usize;
        (w < self.words.len()).then_some((w, 1u64 << (rel % 64)))
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: u32) -> bool {
        self.slot(id).is_some_and(|(w, b)| self.words[w] & b != 0)
    }

    /// Add `id`, which must lie within the ids the set was built from
    /// (others are ignored); returns whether it was newly added.
    fn insert(&mut self, id: u32) -> bool {
        let Some((w, b)) = self.slot(id) else {
            return false;
        };
        let new = self.words[w] & b == 0;
        self.words[w] |= b;
        self.len += new as usize;
        new
    }

    /// Remove `id`; returns whether it was there.
    pub fn remove(&mut self, id: u32) -> bool {
        let Some((w, b)) = self.slot(id) else {
            return false;
        };
        let was = self.words[w] & b != 0;
        self.words[w] &= !b;
        self.len -= was as usize;
        was
    }

    /// Number of ids in the set.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ids, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(move |(w, &bits)| {
            let base = self.base + 64 * w as u32;
            (0..64)
                .filter(move |i| bits & (1u64 << i) != 0)
                .map(move |i| base + i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ThreadSet;

    #[test]
    fn behaves_like_a_set_of_ids() {
        let ids = [70u32, 3, 200, 64, 65, 3];
        let mut s = ThreadSet::from_ids(ids);
        assert_eq!(s.len(), 5);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 64, 65, 70, 200]);
        assert!(s.contains(200) && s.contains(3) && !s.contains(4));
        assert!(!s.contains(0) && !s.contains(100_000));
        assert!(s.remove(64));
        assert!(!s.remove(64));
        assert!(!s.remove(9_999));
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().collect::<Vec<_>>(), [3, 65, 70, 200]);
        for id in [3, 65, 70, 200] {
            s.remove(id);
        }
        assert!(s.is_empty());
        assert!(ThreadSet::from_ids(std::iter::empty()).is_empty());
    }
}
