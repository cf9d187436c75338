//! Dense permission sets: one bit per catalog permission.

use std::fmt;

/// Index of a permission in its catalog. Dense: `0..catalog.permission_count()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PermId(pub u16);

impl PermId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A set of permissions as a bitset. The default Maestra catalog fits in three words, so a
/// membership test is one load and one mask.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct PermSet {
    words: Vec<u64>,
}

impl PermSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty set with room for `n` permissions without reallocating.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            words: Vec::with_capacity(n.div_ceil(64)),
        }
    }

    pub fn contains(&self, p: PermId) -> bool {
        let i = p.index();
        match self.words.get(i / 64) {
            Some(w) => w & (1u64 << (i % 64)) != 0,
            None => false,
        }
    }

    /// Adds `p`; returns true when it was not there before.
    pub fn insert(&mut self, p: PermId) -> bool {
        let i = p.index();
        let w = i / 64;
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        let was = self.words[w] & bit != 0;
        self.words[w] |= bit;
        !was
    }

    /// Removes `p`; returns true when it was there.
    pub fn remove(&mut self, p: PermId) -> bool {
        let i = p.index();
        match self.words.get_mut(i / 64) {
            Some(w) => {
                let bit = 1u64 << (i % 64);
                let was = *w & bit != 0;
                *w &= !bit;
                self.trim();
                was
            }
            None => false,
        }
    }

    pub fn union_with(&mut self, other: &PermSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= *b;
        }
    }

    /// Removes every permission of `other`.
    pub fn difference_with(&mut self, other: &PermSet) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !*b;
        }
        self.trim();
    }

    /// True when every permission of `self` is in `other`.
    pub fn is_subset(&self, other: &PermSet) -> bool {
        self.words.iter().enumerate().all(|(i, w)| {
            let o = other.words.get(i).copied().unwrap_or(0);
            w & !o == 0
        })
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The bytes its words take on the heap (for a cache's estimate of its size).
    pub fn heap_bytes(&self) -> usize {
        self.words.capacity() * 8
    }

    pub fn iter(&self) -> impl Iterator<Item = PermId> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                // A catalog never holds more than u16::MAX permissions (checked at load).
                u16::try_from(wi * 64 + bit).ok().map(PermId)
            })
        })
    }

    /// Trailing zero words are dropped so equal sets compare and hash equal.
    fn trim(&mut self) {
        while self.words.last() == Some(&0) {
            self.words.pop();
        }
    }
}

impl FromIterator<PermId> for PermSet {
    fn from_iter<I: IntoIterator<Item = PermId>>(iter: I) -> Self {
        let mut set = PermSet::new();
        for p in iter {
            set.insert(p);
        }
        set
    }
}

impl fmt::Debug for PermSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|p| p.0)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u16]) -> PermSet {
        ids.iter().map(|&i| PermId(i)).collect()
    }

    #[test]
    fn insert_contains_remove() {
        let mut s = PermSet::new();
        assert!(s.insert(PermId(130)));
        assert!(!s.insert(PermId(130)));
        assert!(s.contains(PermId(130)));
        assert!(!s.contains(PermId(129)));
        assert!(!s.contains(PermId(5000)));
        assert!(s.remove(PermId(130)));
        assert!(s.is_empty());
        assert_eq!(s, PermSet::new(), "removal trims so equal sets are equal");
    }

    #[test]
    fn set_algebra() {
        let mut a = set(&[1, 64, 200]);
        let b = set(&[1, 2]);
        assert!(!b.is_subset(&a));
        a.union_with(&b);
        assert_eq!(
            a.iter().map(|p| p.0).collect::<Vec<_>>(),
            vec![1, 2, 64, 200]
        );
        assert!(b.is_subset(&a));
        assert_eq!(a.len(), 4);
        a.difference_with(&set(&[200, 64]));
        assert_eq!(a, set(&[1, 2]));
        assert!(PermSet::new().is_subset(&PermSet::new()));
    }
}
