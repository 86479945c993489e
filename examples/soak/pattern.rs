//! What a payload holds, derived from numbers both sides know, so the
//! receiver can recompute every byte the sender wrote.
//!
//! Each connection is one *session*. Its first payload is a 16-byte header
//! that carries the session's seed (and a check of it). From the seed both
//! sides derive the same sequence of payload lengths (log-uniform from 1 B
//! to 16 MiB) and, for payload number `seq`, the same contents: 64-bit words
//! that depend on the seed, on `seq` and on the word's offset. A payload
//! that is stale (another `seq`), shifted, from another session, or has a
//! single wrong byte does not match.

/// Largest payload: 16 MiB.
pub const MAX_LEN: u64 = 16 << 20;

/// Length of the header payload that starts every session.
pub const HEADER_LEN: u64 = 16;

/// Distance between consecutive words of a payload (odd, so the words of
/// one payload never repeat).
const STEP: u64 = 0x9E37_79B9_7F4A_7C15;

/// Scrambles a 64-bit value (the finaliser of MurmurHash3).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    z = (z ^ (z >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    z ^ (z >> 33)
}

/// A small deterministic random generator: a Weyl sequence scrambled by
/// `mix`. Good enough for sizes, delays and coin flips.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(STEP);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Log-uniform in `lo..=hi` (`1 <= lo <= hi`): every power of two in the
    /// range is about as likely as any other.
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), ((hi + 1) as f64).ln());
        let x = (a + (b - a) * self.unit()).exp() as u64;
        x.clamp(lo, hi)
    }
}

/// The lengths of a session's payloads, in order, after the header.
pub struct Session {
    sizes: Rng,
    next_seq: u64,
}

impl Session {
    pub fn new(seed: u64) -> Session {
        Session {
            sizes: Rng::new(seed ^ 0x5E55_1075_12E5),
            next_seq: 1,
        }
    }

    /// Sequence number and length of the next payload.
    pub fn next(&mut self) -> (u64, u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        (seq, self.sizes.log_uniform(1, MAX_LEN))
    }
}

fn header_check(seed: u64) -> u64 {
    mix(seed ^ 0x0A11_CE0F_5E55_10A0)
}

/// The header payload of a session with this seed.
pub fn header(seed: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(&seed.to_le_bytes());
    h[8..].copy_from_slice(&header_check(seed).to_le_bytes());
    h
}

/// The seed in a header payload, if the header is intact.
pub fn parse_header(h: &[u8; HEADER_LEN as usize]) -> Option<u64> {
    let seed = u64::from_le_bytes(h[..8].try_into().ok()?);
    let check = u64::from_le_bytes(h[8..].try_into().ok()?);
    (check == header_check(seed)).then_some(seed)
}

/// Word 0 of payload `seq`; word `k` is `first + k * STEP`.
fn first_word(seed: u64, seq: u64) -> u64 {
    mix(seed ^ seq.wrapping_mul(0xD6E8_FEB8_6659_FD93))
}

fn word(seed: u64, seq: u64, k: u64) -> u64 {
    first_word(seed, seq).wrapping_add(k.wrapping_mul(STEP))
}

/// Writes payload `seq` of session `seed` into `len` bytes at `dst`.
///
/// # Safety
/// `dst` must be valid for writes of `len` bytes.
pub unsafe fn fill(dst: *mut u8, len: u64, seed: u64, seq: u64) {
    let words = (len / 8) as usize;
    let mut w = first_word(seed, seq);
    for k in 0..words {
        // SAFETY: word k covers bytes 8k..8k+8, all below `len`.
        unsafe { dst.cast::<u64>().add(k).write_unaligned(w.to_le()) };
        w = w.wrapping_add(STEP);
    }
    // `w` is now word number `words`: the tail takes its first bytes.
    for (i, b) in w.to_le_bytes().iter().take((len % 8) as usize).enumerate() {
        // SAFETY: this byte is at 8 * words + i < len.
        unsafe { dst.add(words * 8 + i).write(*b) };
    }
}

/// Checks bytes `from..to` of payload `seq` of session `seed`, which is
/// `len` bytes at `src`. `from` must be a multiple of 8 and `to <= len`.
/// Reads through the raw pointer only (the memory is shared with another
/// process); on a mismatch names the first wrong byte.
///
/// # Safety
/// `src` must be valid for reads of `len` bytes.
pub unsafe fn check(
    src: *const u8,
    len: u64,
    seed: u64,
    seq: u64,
    from: u64,
    to: u64,
) -> Result<(), String> {
    debug_assert!(from.is_multiple_of(8) && from <= to && to <= len);
    let first = first_word(seed, seq);
    let wrong = |off: u64, got: u8| {
        let want = word(seed, seq, off / 8).to_le_bytes()[(off % 8) as usize];
        format!(
            "wrong byte: session {seed:#018x} payload {seq} ({len} bytes): \
             byte {off} is {got:#04x}, expected {want:#04x}"
        )
    };
    // Whole words, a chunk at a time: OR the differences together (which
    // the compiler vectorises) and look for the culprit only on a mismatch.
    const CHUNK: u64 = 1024;
    let end_word = to / 8;
    let mut k0 = from / 8;
    while k0 < end_word {
        let k1 = (k0 + CHUNK).min(end_word);
        let mut diff = 0u64;
        let mut w = first.wrapping_add(k0.wrapping_mul(STEP));
        for k in k0..k1 {
            // SAFETY: word k covers bytes 8k..8k+8 <= to <= len.
            diff |= unsafe { src.cast::<u64>().add(k as usize).read_unaligned() } ^ w.to_le();
            w = w.wrapping_add(STEP);
        }
        if diff != 0 {
            for off in k0 * 8..k1 * 8 {
                // SAFETY: off < 8 * k1 <= to <= len.
                let got = unsafe { src.add(off as usize).read() };
                if got != word(seed, seq, off / 8).to_le_bytes()[(off % 8) as usize] {
                    return Err(wrong(off, got));
                }
            }
        }
        k0 = k1;
    }
    // The bytes after the last whole word.
    for off in (end_word * 8).max(from)..to {
        // SAFETY: off < to <= len.
        let got = unsafe { src.add(off as usize).read() };
        if got != word(seed, seq, off / 8).to_le_bytes()[(off % 8) as usize] {
            return Err(wrong(off, got));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    // Run by `cargo test --all-targets` (or `--example soak`).
    use super::*;

    #[test]
    fn fill_then_check_finds_every_wrong_byte() {
        let mut rng = Rng::new(1);
        for len in [1u64, 7, 8, 9, 63, 64, 65, 4096, 8191, 70_000] {
            let mut buf = vec![0u8; len as usize];
            // SAFETY: buf holds len bytes.
            unsafe { fill(buf.as_mut_ptr(), len, 42, 3) };
            // SAFETY: as above.
            assert_eq!(unsafe { check(buf.as_ptr(), len, 42, 3, 0, len) }, Ok(()));
            // SAFETY: as above.
            assert!(unsafe { check(buf.as_ptr(), len, 42, 4, 0, len) }.is_err());
            let at = rng.below(len) as usize;
            buf[at] ^= 1;
            // SAFETY: as above.
            let e = unsafe { check(buf.as_ptr(), len, 42, 3, 0, len) }.unwrap_err();
            assert!(e.contains(&format!("byte {at} ")), "{e}");
        }
    }

    #[test]
    fn headers_and_sizes() {
        assert_eq!(parse_header(&header(77)), Some(77));
        let mut h = header(77);
        h[3] ^= 0x10;
        assert_eq!(parse_header(&h), None);
        let mut s = Session::new(5);
        let lens: Vec<u64> = (0..10_000).map(|_| s.next().1).collect();
        assert!(lens.iter().all(|&l| (1..=MAX_LEN).contains(&l)));
        assert!(lens.iter().any(|&l| l < 16));
        assert!(lens.iter().any(|&l| l > MAX_LEN / 2));
    }
}
