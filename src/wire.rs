//! Byte layouts of every message voxshm sends or accepts.
//!
//! ATTACH and the MMAP_REF frame are vox-shm 0.3.1's formats, kept
//! byte-exact. Everything else is a voxshm extension message: it starts with
//! the 4-byte magic `VXSM`, is never 16 bytes long, and never carries an fd.
//! `docs/protocol.md` has the byte tables; the tests below pin the bytes.

use crate::error::{Error, Result, Status};

/// A reference to `payload_len` bytes at `map_offset` in region
/// `(map_id, map_generation)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Ref {
    pub map_id: u32,
    pub map_generation: u32,
    pub map_offset: u64,
    pub payload_len: u32,
}

/// Length of an ATTACH body.
pub const ATTACH_LEN: usize = 16;
/// Length of an MMAP_REF frame.
pub const FRAME_LEN: usize = 32;
/// MMAP_REF flag bit.
pub const FLAG_MMAP_REF: u8 = 0x02;
/// SLOT_REF flag bit (must be clear in an MMAP_REF frame).
pub const FLAG_SLOT_REF: u8 = 0x01;

/// `VXSM` as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VXSM");
/// Length of the extension header.
pub const HEADER_LEN: usize = 8;
/// The extension protocol version this library speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Most entries one RELEASE message may carry.
pub const MAX_RELEASE_ENTRIES: usize = 255;
/// Length of one RELEASE entry.
pub const RELEASE_ENTRY_LEN: usize = 24;
/// Longest message either side ever sends.
pub const MAX_MESSAGE_LEN: usize = HEADER_LEN + MAX_RELEASE_ENTRIES * RELEASE_ENTRY_LEN;

/// HELLO role: the sender (registry) side.
pub const ROLE_SENDER: u32 = 1;
/// HELLO role: the receiver (attachments) side.
pub const ROLE_RECEIVER: u32 = 2;

/// Extension message kinds (byte 4 of the header).
pub mod kind {
    pub const HELLO: u8 = 1;
    pub const REF: u8 = 2;
    pub const RELEASE: u8 = 3;
    pub const RETIRE: u8 = 4;
    pub const RETIRE_ACK: u8 = 5;
    pub const SEGMENT: u8 = 6;
    pub const WAKE: u8 = 7;
}

/// HELLO feature bit: this side can carry references and releases through
/// a ring segment (`docs/protocol.md`, "The ring path").
pub const FEATURE_RING: u64 = 1;

/// The ATTACH body: the fd it rides with is handled by the channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attach {
    pub map_id: u32,
    pub map_generation: u32,
    pub mapping_length: u64,
}

/// A voxshm extension message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ext {
    Hello {
        version: u32,
        role: u32,
        features: u64,
    },
    Ref(Ref),
    Release(Vec<Ref>),
    Retire {
        map_id: u32,
        map_generation: u32,
        mapping_length: u64,
    },
    RetireAck {
        map_id: u32,
        map_generation: u32,
        mapping_length: u64,
    },
    /// The ring segment (sender to receiver); the one extension message
    /// that carries an fd, exactly one.
    Segment {
        segment_len: u64,
        refs_capacity: u32,
        releases_capacity: u32,
    },
    /// "Look at the ring": sent only to a peer that announced in the
    /// segment that it sleeps.
    Wake,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl Attach {
    pub fn encode(&self) -> [u8; ATTACH_LEN] {
        let mut b = [0u8; ATTACH_LEN];
        b[0..4].copy_from_slice(&self.map_id.to_le_bytes());
        b[4..8].copy_from_slice(&self.map_generation.to_le_bytes());
        b[8..16].copy_from_slice(&self.mapping_length.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Attach> {
        if b.len() != ATTACH_LEN {
            return Err(Error::new(
                Status::Protocol,
                format!("ATTACH body is {} bytes, expected 16", b.len()),
            ));
        }
        Ok(Attach {
            map_id: u32_at(b, 0),
            map_generation: u32_at(b, 4),
            mapping_length: u64_at(b, 8),
        })
    }
}

impl Ref {
    /// Encodes the 32-byte vox MMAP_REF frame.
    pub fn encode_frame(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        b[0..4].copy_from_slice(&(FRAME_LEN as u32).to_le_bytes());
        b[4] = FLAG_MMAP_REF;
        b[8..12].copy_from_slice(&self.map_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.map_generation.to_le_bytes());
        b[16..24].copy_from_slice(&self.map_offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.payload_len.to_le_bytes());
        b
    }

    /// Decodes a 32-byte MMAP_REF frame; `b` must hold at least 32 bytes
    /// (bytes past the frame are ignored).
    pub fn decode_frame(b: &[u8]) -> Result<Ref> {
        let bad = |why: String| Err(Error::new(Status::BadFrame, why));
        if b.len() < FRAME_LEN {
            return bad(format!("frame is {} bytes, expected 32", b.len()));
        }
        let total = u32_at(b, 0);
        if total != FRAME_LEN as u32 {
            return bad(format!("frame total_len is {total}, expected 32"));
        }
        if b[4] != FLAG_MMAP_REF {
            return bad(format!(
                "frame flags are {:#04x}, expected 0x02 (MMAP_REF)",
                b[4]
            ));
        }
        if b[5..8] != [0, 0, 0] || b[28..32] != [0, 0, 0, 0] {
            return bad("frame reserved bytes are not zero".into());
        }
        Ok(Ref {
            map_id: u32_at(b, 8),
            map_generation: u32_at(b, 12),
            map_offset: u64_at(b, 16),
            payload_len: u32_at(b, 24),
        })
    }

    fn put_entry(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.map_id.to_le_bytes());
        out.extend_from_slice(&self.map_generation.to_le_bytes());
        out.extend_from_slice(&self.map_offset.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
}

/// How messages name a reference: "region 7/2, 4096 bytes at offset 64".
impl std::fmt::Display for Ref {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "region {}/{}, {} bytes at offset {}",
            self.map_id, self.map_generation, self.payload_len, self.map_offset
        )
    }
}

fn header(out: &mut Vec<u8>, kind: u8, count: u16) {
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(&count.to_le_bytes());
}

fn region_body(out: &mut Vec<u8>, map_id: u32, map_generation: u32, mapping_length: u64) {
    out.extend_from_slice(&map_id.to_le_bytes());
    out.extend_from_slice(&map_generation.to_le_bytes());
    out.extend_from_slice(&mapping_length.to_le_bytes());
}

impl Ext {
    /// Encodes the message. A RELEASE must carry 1..=255 entries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        match self {
            Ext::Hello {
                version,
                role,
                features,
            } => {
                header(&mut out, kind::HELLO, 0);
                out.extend_from_slice(&version.to_le_bytes());
                out.extend_from_slice(&role.to_le_bytes());
                out.extend_from_slice(&features.to_le_bytes());
            }
            Ext::Ref(r) => {
                header(&mut out, kind::REF, 0);
                out.extend_from_slice(&r.encode_frame());
            }
            Ext::Release(refs) => {
                assert!(!refs.is_empty() && refs.len() <= MAX_RELEASE_ENTRIES);
                header(&mut out, kind::RELEASE, refs.len() as u16);
                for r in refs {
                    r.put_entry(&mut out);
                }
            }
            Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            } => {
                header(&mut out, kind::RETIRE, 0);
                region_body(&mut out, *map_id, *map_generation, *mapping_length);
            }
            Ext::RetireAck {
                map_id,
                map_generation,
                mapping_length,
            } => {
                header(&mut out, kind::RETIRE_ACK, 0);
                region_body(&mut out, *map_id, *map_generation, *mapping_length);
            }
            Ext::Segment {
                segment_len,
                refs_capacity,
                releases_capacity,
            } => {
                header(&mut out, kind::SEGMENT, 0);
                out.extend_from_slice(&segment_len.to_le_bytes());
                out.extend_from_slice(&refs_capacity.to_le_bytes());
                out.extend_from_slice(&releases_capacity.to_le_bytes());
            }
            Ext::Wake => header(&mut out, kind::WAKE, 0),
        }
        debug_assert_ne!(out.len(), ATTACH_LEN);
        out
    }

    /// True when `b` starts with the extension magic.
    pub fn is_ext(b: &[u8]) -> bool {
        b.len() >= 4 && u32_at(b, 0) == MAGIC
    }

    /// Decodes an extension message. Any deviation from the layout is a
    /// protocol error that says what was wrong.
    pub fn decode(b: &[u8]) -> Result<Ext> {
        let bad = |why: String| Err(Error::new(Status::Protocol, why));
        if b.len() < HEADER_LEN || !Self::is_ext(b) {
            return bad(format!(
                "{}-byte message without fd is not a voxshm message",
                b.len()
            ));
        }
        let k = b[4];
        if b[5] != 0 {
            return bad(format!(
                "message kind {k}: reserved header byte is {}",
                b[5]
            ));
        }
        let count = u16::from_le_bytes([b[6], b[7]]) as usize;
        let body = &b[HEADER_LEN..];
        let want = match k {
            kind::HELLO | kind::RETIRE | kind::RETIRE_ACK | kind::SEGMENT => 16,
            kind::WAKE => 0,
            kind::REF => FRAME_LEN,
            kind::RELEASE => {
                if count == 0 || count > MAX_RELEASE_ENTRIES {
                    return bad(format!("RELEASE with {count} entries (1..=255 allowed)"));
                }
                count * RELEASE_ENTRY_LEN
            }
            other => return bad(format!("unknown message kind {other}")),
        };
        if k != kind::RELEASE && count != 0 {
            return bad(format!("message kind {k} has count {count}, expected 0"));
        }
        if body.len() != want {
            return bad(format!(
                "message kind {k} has a {}-byte body, expected {want}",
                body.len()
            ));
        }
        Ok(match k {
            kind::HELLO => Ext::Hello {
                version: u32_at(body, 0),
                role: u32_at(body, 4),
                features: u64_at(body, 8),
            },
            kind::REF => match Ref::decode_frame(body) {
                Ok(r) => Ext::Ref(r),
                Err(e) => return bad(format!("REF carries a bad frame: {}", e.message)),
            },
            kind::RELEASE => {
                let mut refs = Vec::with_capacity(count);
                for e in body.chunks_exact(RELEASE_ENTRY_LEN) {
                    if u32_at(e, 20) != 0 {
                        return bad("RELEASE entry reserved bytes are not zero".into());
                    }
                    refs.push(Ref {
                        map_id: u32_at(e, 0),
                        map_generation: u32_at(e, 4),
                        map_offset: u64_at(e, 8),
                        payload_len: u32_at(e, 16),
                    });
                }
                Ext::Release(refs)
            }
            kind::RETIRE => Ext::Retire {
                map_id: u32_at(body, 0),
                map_generation: u32_at(body, 4),
                mapping_length: u64_at(body, 8),
            },
            kind::SEGMENT => Ext::Segment {
                segment_len: u64_at(body, 0),
                refs_capacity: u32_at(body, 8),
                releases_capacity: u32_at(body, 12),
            },
            kind::WAKE => Ext::Wake,
            _ => Ext::RetireAck {
                map_id: u32_at(body, 0),
                map_generation: u32_at(body, 4),
                mapping_length: u64_at(body, 8),
            },
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bytes from hex digits, spaces ignored (the golden vectors' form).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const R: Ref = Ref {
        map_id: 7,
        map_generation: 2,
        map_offset: 0x1_0000_0040,
        payload_len: 4096,
    };

    // Each vector below is also printed in docs/protocol.md.

    #[test]
    fn golden_attach() {
        let a = Attach {
            map_id: 7,
            map_generation: 2,
            mapping_length: 64 << 20,
        };
        let g = hex("07000000 02000000 00000004 00000000");
        assert_eq!(a.encode().to_vec(), g);
        assert_eq!(Attach::decode(&g).unwrap(), a);
        for n in [0, 15, 17, 32] {
            let e = Attach::decode(&vec![0; n]).unwrap_err();
            assert_eq!(e.status, Status::Protocol);
        }
    }

    #[test]
    fn golden_frame() {
        let g = hex("20000000 02000000 07000000 02000000 40000000 01000000 00100000 00000000");
        assert_eq!(R.encode_frame().to_vec(), g);
        assert_eq!(Ref::decode_frame(&g).unwrap(), R);
    }

    #[test]
    fn frame_rejects_each_deviation() {
        let good = R.encode_frame();
        let mut cases: Vec<Vec<u8>> = vec![good[..31].to_vec(), Vec::new()];
        let mut b = good;
        b[0] = 33;
        cases.push(b.to_vec());
        for flags in [0x00, 0x01, 0x03, 0x06] {
            let mut b = good;
            b[4] = flags;
            cases.push(b.to_vec());
        }
        for at in [5, 6, 7, 28, 29, 30, 31] {
            let mut b = good;
            b[at] = 1;
            cases.push(b.to_vec());
        }
        for c in cases {
            assert_eq!(Ref::decode_frame(&c).unwrap_err().status, Status::BadFrame);
        }
    }

    #[test]
    fn golden_hello() {
        let m = Ext::Hello {
            version: PROTOCOL_VERSION,
            role: ROLE_RECEIVER,
            features: 0,
        };
        let g = hex("5658534d 01 00 0000 01000000 02000000 0000000000000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
    }

    #[test]
    fn golden_ref() {
        let g = hex("5658534d 02 00 0000
             20000000 02000000 07000000 02000000 40000000 01000000 00100000 00000000");
        assert_eq!(Ext::Ref(R).encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), Ext::Ref(R));
    }

    #[test]
    fn golden_release() {
        let r2 = Ref {
            map_id: 1,
            map_generation: 1,
            map_offset: 0,
            payload_len: 1,
        };
        let m = Ext::Release(vec![R, r2]);
        let g = hex("5658534d 03 00 0200
             07000000 02000000 4000000001000000 00100000 00000000
             01000000 01000000 0000000000000000 01000000 00000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
    }

    #[test]
    fn golden_retire_and_ack() {
        let m = Ext::Retire {
            map_id: 7,
            map_generation: 2,
            mapping_length: 64 << 20,
        };
        let g = hex("5658534d 04 00 0000 07000000 02000000 0000000400000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
        let m = Ext::RetireAck {
            map_id: 7,
            map_generation: 2,
            mapping_length: 64 << 20,
        };
        let g = hex("5658534d 05 00 0000 07000000 02000000 0000000400000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
    }

    #[test]
    fn golden_hello_with_ring_and_segment_and_wake() {
        let m = Ext::Hello {
            version: PROTOCOL_VERSION,
            role: ROLE_SENDER,
            features: FEATURE_RING,
        };
        let g = hex("5658534d 01 00 0000 01000000 01000000 0100000000000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
        // A duplex side takes both roles.
        let m = Ext::Hello {
            version: PROTOCOL_VERSION,
            role: ROLE_SENDER | ROLE_RECEIVER,
            features: FEATURE_RING,
        };
        let g = hex("5658534d 01 00 0000 01000000 03000000 0100000000000000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
        let m = Ext::Segment {
            segment_len: 0x13000,
            refs_capacity: 1024,
            releases_capacity: 2048,
        };
        let g = hex("5658534d 06 00 0000 0030010000000000 00040000 00080000");
        assert_eq!(m.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), m);
        let g = hex("5658534d 07 00 0000");
        assert_eq!(Ext::Wake.encode(), g);
        assert_eq!(Ext::decode(&g).unwrap(), Ext::Wake);
        assert!(Ext::decode(&hex("5658534d 07 00 0000 00")).is_err());
        assert!(Ext::decode(&hex("5658534d 06 00 0000 00000000")).is_err());
    }

    #[test]
    fn extension_messages_are_never_16_bytes() {
        let msgs = [
            Ext::Hello {
                version: 1,
                role: 1,
                features: 0,
            },
            Ext::Ref(R),
            Ext::Release(vec![R]),
            Ext::Release(vec![R; MAX_RELEASE_ENTRIES]),
            Ext::Retire {
                map_id: 1,
                map_generation: 1,
                mapping_length: 1,
            },
            Ext::RetireAck {
                map_id: 1,
                map_generation: 1,
                mapping_length: 1,
            },
            Ext::Segment {
                segment_len: 1,
                refs_capacity: 1,
                releases_capacity: 1,
            },
            Ext::Wake,
        ];
        for m in msgs {
            let b = m.encode();
            assert_ne!(b.len(), ATTACH_LEN);
            assert!(b.len() <= MAX_MESSAGE_LEN);
            assert_eq!(Ext::decode(&b).unwrap(), m);
        }
    }

    #[test]
    fn malformed_extensions_are_protocol_errors() {
        let good = Ext::Release(vec![R]).encode();
        let mut cases = vec![
            Vec::new(),
            b"VXS".to_vec(),
            b"XXXXXXXX".to_vec(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
        ];
        let mut b = good.clone();
        b[4] = 99; // unknown kind
        cases.push(b);
        let mut b = good.clone();
        b[5] = 1; // reserved header byte
        cases.push(b);
        let mut b = good.clone();
        b[6] = 0; // zero entries
        cases.push(b);
        let mut b = good.clone();
        b[6] = 2; // count says 2, body has 1
        cases.push(b);
        let mut b = good.clone();
        b[8 + 20] = 1; // entry reserved bytes
        cases.push(b);
        let mut h = Ext::Hello {
            version: 1,
            role: 1,
            features: 0,
        }
        .encode();
        h[6] = 1; // count on a non-RELEASE message
        cases.push(h);
        let mut r = Ext::Ref(R).encode();
        r[8] = 31; // inner frame total_len
        cases.push(r);
        for c in cases {
            assert_eq!(
                Ext::decode(&c).unwrap_err().status,
                Status::Protocol,
                "{c:?}"
            );
        }
    }
}
