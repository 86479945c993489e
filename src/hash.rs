//! A fast keyed hash for the lookup tables on the per-payload path (leases,
//! mappings, views). std's default, SipHash-1-3, costs a measurable part of
//! a small payload's time. Keys here are small integers; some are chosen by
//! the peer (a reference names map_id, offset and length), so the hash is
//! keyed with a per-process random seed: a peer cannot aim for collisions.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// A `HashMap` with the fast keyed hash.
pub type FastMap<K, V> = HashMap<K, V, FastState>;

/// Builds `FastHasher`s with the process's seed.
#[derive(Clone, Copy, Debug)]
pub struct FastState {
    seed: u64,
}

impl Default for FastState {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        let seed = *SEED.get_or_init(|| RandomState::new().hash_one(0x766f_7873_686du64) | 1);
        FastState { seed }
    }
}

impl BuildHasher for FastState {
    type Hasher = FastHasher;

    fn build_hasher(&self) -> FastHasher {
        FastHasher { h: self.seed }
    }
}

/// Folds each word in with a multiply and a rotate (a 64-bit
/// multiply-xorshift mix), finished with a final mix so every input bit
/// reaches the low bits the table uses.
#[derive(Clone, Copy, Debug)]
pub struct FastHasher {
    h: u64,
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(K).rotate_left(29);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.word(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }

    fn finish(&self) -> u64 {
        let mut x = self.h;
        x ^= x >> 32;
        x = x.wrapping_mul(K);
        x ^ (x >> 29)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_small_keys_over_the_low_bits() {
        // Offsets that differ only in high bits (64-byte aligned, region
        // sized) still land in different buckets of a small table.
        let s = FastState::default();
        let mut buckets = std::collections::HashSet::new();
        for i in 0..256u64 {
            buckets.insert(s.hash_one((1u32, i << 20)) & 1023);
        }
        assert!(buckets.len() > 200, "{} buckets of 256 keys", buckets.len());
    }
}
