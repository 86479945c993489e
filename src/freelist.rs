//! Free space of one region: non-overlapping `(offset, len)` extents kept
//! coalesced, allocated first-fit.

use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct FreeList {
    /// offset -> length of each free extent.
    extents: BTreeMap<u64, u64>,
    free: u64,
    size: u64,
}

impl FreeList {
    /// A list for a region of `size` bytes, all free.
    pub fn new(size: u64) -> FreeList {
        let mut extents = BTreeMap::new();
        if size > 0 {
            extents.insert(0, size);
        }
        FreeList {
            extents,
            free: size,
            size,
        }
    }

    pub fn free_bytes(&self) -> u64 {
        self.free
    }

    #[cfg(test)]
    pub fn is_all_free(&self) -> bool {
        self.free == self.size
    }

    /// Takes `len` bytes (a multiple of the caller's alignment) from the
    /// lowest extent that holds them.
    pub fn alloc(&mut self, len: u64) -> Option<u64> {
        if len == 0 || len > self.free {
            return None;
        }
        let (&off, &ext) = self.extents.iter().find(|(_, l)| **l >= len)?;
        self.extents.remove(&off);
        if ext > len {
            self.extents.insert(off + len, ext - len);
        }
        self.free -= len;
        Some(off)
    }

    /// Gives `[off, off+len)` back, merging with free neighbours.
    /// Panics (in debug builds) on a double free or an overlap: the
    /// registry's lease table makes both impossible.
    pub fn release(&mut self, off: u64, len: u64) {
        debug_assert!(len > 0 && off + len <= self.size);
        let mut start = off;
        let mut end = off + len;
        if let Some((&p, &pl)) = self.extents.range(..off).next_back() {
            debug_assert!(p + pl <= off, "overlapping free");
            if p + pl == off {
                self.extents.remove(&p);
                start = p;
            }
        }
        if let Some(&nl) = self.extents.get(&end) {
            self.extents.remove(&end);
            end += nl;
        }
        debug_assert!(
            self.extents.range(start..end).next().is_none(),
            "overlapping free"
        );
        self.extents.insert(start, end - start);
        self.free += len;
    }

    #[cfg(test)]
    pub fn extent_count(&self) -> usize {
        self.extents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_fit_and_coalescing() {
        let mut f = FreeList::new(1000);
        let a = f.alloc(100).unwrap();
        let b = f.alloc(200).unwrap();
        let c = f.alloc(300).unwrap();
        assert_eq!((a, b, c), (0, 100, 300));
        assert_eq!(f.free_bytes(), 400);
        assert_eq!(f.alloc(401), None);
        f.release(b, 200);
        assert_eq!(f.extent_count(), 2);
        // A hole of 200 is reused before the tail.
        assert_eq!(f.alloc(150), Some(100));
        f.release(100, 150);
        f.release(a, 100);
        assert_eq!(f.extent_count(), 2); // [0,300) and [600,1000)
        f.release(c, 300);
        assert_eq!(f.extent_count(), 1);
        assert!(f.is_all_free());
        assert_eq!(f.alloc(1000), Some(0));
        assert_eq!(f.alloc(1), None);
    }

    #[test]
    fn random_alloc_free_keeps_accounting() {
        let mut f = FreeList::new(1 << 20);
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if !x.is_multiple_of(3) || live.is_empty() {
                let len = (x >> 20) % 8192 + 1;
                if let Some(off) = f.alloc(len) {
                    for &(o, l) in &live {
                        assert!(off + len <= o || o + l <= off, "overlap");
                    }
                    live.push((off, len));
                }
            } else {
                let (o, l) = live.swap_remove((x as usize >> 3) % live.len());
                f.release(o, l);
            }
            let used: u64 = live.iter().map(|p| p.1).sum();
            assert_eq!(f.free_bytes() + used, 1 << 20);
        }
        for (o, l) in live.drain(..) {
            f.release(o, l);
        }
        assert!(f.is_all_free());
        assert_eq!(f.extent_count(), 1);
    }
}
