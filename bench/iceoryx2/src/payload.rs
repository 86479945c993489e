//! The payload work of voxshm-latency, the same bytes in the same places:
//! a 64-byte header (magic "bxch", flags, sequence number, length,
//! timestamp), and for the round trip the last cache line, for the full
//! stream every byte, filled with words `base(seq) + i * STEP` whose sum
//! has a closed form.

pub const HEADER_LEN: usize = 64;
const MAGIC: u32 = 0x6863_7862;

pub const F_MEASURED: u32 = 1;
pub const F_LAST: u32 = 2;
pub const F_WARM_END: u32 = 4;

const FILL_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
const FILL_ADD: u64 = 0x0123_4567_89AB_CDEF;
const FILL_STEP: u64 = 0x0000_0100_0000_01B3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    RoundTrip,
    StreamHeader,
    StreamFull,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::RoundTrip, Shape::StreamHeader, Shape::StreamFull];

    pub fn name(self) -> &'static str {
        match self {
            Shape::RoundTrip => "roundtrip",
            Shape::StreamHeader => "stream-header",
            Shape::StreamFull => "stream-full",
        }
    }

    pub fn is_stream(self) -> bool {
        self != Shape::RoundTrip
    }
}

fn base(seq: u64) -> u64 {
    seq.wrapping_mul(FILL_MUL).wrapping_add(FILL_ADD)
}

fn fill(body: &mut [u8], seq: u64) {
    let b = base(seq);
    for (i, w) in body.chunks_exact_mut(8).enumerate() {
        w.copy_from_slice(
            &b.wrapping_add((i as u64).wrapping_mul(FILL_STEP))
                .to_le_bytes(),
        );
    }
}

fn checksum(body: &[u8]) -> u64 {
    body.chunks_exact(8).fold(0u64, |s, w| {
        s.wrapping_add(u64::from_le_bytes(w.try_into().expect("8 bytes")))
    })
}

fn expected_checksum(len: usize, seq: u64) -> u64 {
    let n = (len / 8) as u64;
    // n (n - 1) / 2 modulo 2^64, halving the even factor first.
    let tri = if n.is_multiple_of(2) {
        (n / 2).wrapping_mul(n.wrapping_sub(1))
    } else {
        n.wrapping_mul((n - 1) / 2)
    };
    n.wrapping_mul(base(seq))
        .wrapping_add(FILL_STEP.wrapping_mul(tri))
}

/// The part of the payload beyond the header that the shape writes and
/// reads: the last cache line (round trip), every byte (full), nothing.
fn body_range(shape: Shape, len: usize) -> Option<std::ops::Range<usize>> {
    match shape {
        Shape::StreamFull => Some(HEADER_LEN..len),
        Shape::RoundTrip if len >= 2 * HEADER_LEN => Some(len - HEADER_LEN..len),
        _ => None,
    }
}

/// Writes payload `seq` into `p` (all of its `len` bytes are the payload).
pub fn put(shape: Shape, p: &mut [u8], seq: u64, flags: u32, now_ns: u64) {
    if let Some(r) = body_range(shape, p.len()) {
        fill(&mut p[r], seq);
    }
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&flags.to_le_bytes());
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    h[16..24].copy_from_slice(&(p.len() as u64).to_le_bytes());
    h[24..32].copy_from_slice(&now_ns.to_le_bytes());
    p[..HEADER_LEN].copy_from_slice(&h);
}

/// Reads what `put` wrote: the header's flags, or an error when the header
/// is not payload `seq`'s. A wrong body only counts in `bad`.
pub fn take(shape: Shape, p: &[u8], seq: u64, bad: &mut u64) -> Result<u32, String> {
    let word = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    let magic = u32::from_le_bytes(p[0..4].try_into().expect("4 bytes"));
    let flags = u32::from_le_bytes(p[4..8].try_into().expect("4 bytes"));
    if magic != MAGIC || word(8) != seq || word(16) != p.len() as u64 {
        return Err(format!(
            "payload {seq}: bad header (magic {magic:#x}, seq {}, len {})",
            word(8),
            word(16)
        ));
    }
    if let Some(r) = body_range(shape, p.len()) {
        let len = r.len();
        if checksum(&p[r]) != expected_checksum(len, seq) {
            *bad += 1;
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_payloads_check() {
        for shape in Shape::ALL {
            for len in [64, 128, 4096, 4104] {
                let mut p = vec![0u8; len];
                put(shape, &mut p, 7, F_LAST, 1);
                let mut bad = 0;
                assert_eq!(take(shape, &p, 7, &mut bad), Ok(F_LAST));
                assert_eq!(bad, 0);
                assert!(take(shape, &p, 8, &mut bad).is_err());
            }
        }
    }
}
