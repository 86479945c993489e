//! A sender's lease table, shared by the one-receiver registry and the
//! fan-out sender: which space is handed out (an allocation not yet
//! published) and which payload is held, by which receivers.

use crate::error::{Error, Result, Status};
use crate::hash::FastMap;
use crate::pool::{ALIGN, Pool};
use crate::registry::Allocation;
use crate::sys;
use crate::wire::Ref;

#[derive(Debug)]
pub(crate) struct Lease {
    pub len: u64,
    pub token: u64,
    /// Published as this many bytes.
    pub published: Option<u32>,
    /// The receivers holding it, one bit each (a registry's one receiver
    /// is bit 0).
    pub holders: u64,
}

/// Space handed out, by `(map_id, map_offset)`: allocations not yet
/// published, and payloads receivers hold.
pub(crate) struct Leases {
    pub map: FastMap<(u32, u64), Lease>,
    next_token: u64,
}

impl Leases {
    pub fn new() -> Leases {
        Leases {
            map: FastMap::default(),
            next_token: 1,
        }
    }

    /// Hands out `need` bytes from a region of `pool` that has them.
    pub fn take(&mut self, pool: &mut Pool, need: u64) -> Option<Allocation> {
        let e = pool.take(need)?;
        let token = self.next_token;
        self.next_token += 1;
        self.map.insert(
            (e.map_id, e.offset),
            Lease {
                len: e.len,
                token,
                published: None,
                holders: 0,
            },
        );
        Some(Allocation {
            data: e.data,
            capacity: e.len,
            map_id: e.map_id,
            map_generation: e.generation,
            map_offset: e.offset,
            token,
        })
    }

    /// The unpublished lease of allocation `a`.
    pub fn unpublished(&mut self, pool: &Pool, a: &Allocation) -> Result<&mut Lease> {
        // Another sender numbers its regions, offsets and tokens the same
        // way: only the address tells its allocations apart.
        let here = pool.address(a.map_id, a.map_generation, a.map_offset) == Some(a.data);
        self.map
            .get_mut(&(a.map_id, a.map_offset))
            .filter(|l| here && l.token == a.token && l.len == a.capacity && l.published.is_none())
            .ok_or_else(|| {
                Error::new(
                    Status::InvalidAllocation,
                    format!(
                        "allocation {}/{}+{} is unknown, already published or aborted",
                        a.map_id, a.map_generation, a.map_offset
                    ),
                )
            })
    }

    /// Whether `r` names a payload the receivers of `bit` hold: published
    /// with exactly this length at this place of this generation.
    pub fn held(&self, pool: &Pool, r: &Ref, bit: u64) -> bool {
        pool.holds(r.map_id, r.map_generation)
            && self
                .map
                .get(&(r.map_id, r.map_offset))
                .is_some_and(|l| l.published == Some(r.payload_len) && l.holders & bit != 0)
    }
}

/// The reference publishing `len` bytes of `a` (whose lease is `lease`)
/// would make, if it may.
pub(crate) fn reference(lease: &Lease, a: &Allocation, len: u64) -> Result<Ref> {
    if len == 0 {
        return Err(Error::new(Status::ZeroLength, "publish of 0 bytes"));
    }
    if len > lease.len || len > u32::MAX as u64 {
        return Err(Error::new(
            Status::TooLarge,
            format!("publish of {len} bytes from an allocation of {}", lease.len),
        ));
    }
    Ok(Ref {
        map_id: a.map_id,
        map_generation: a.map_generation,
        map_offset: a.map_offset,
        payload_len: len as u32,
    })
}

/// Marks `lease` published as `r` and held by `holders`, keeping what the
/// payload needs; returns the bytes it holds and the tail it gave up (for
/// the caller to give back to its pool after them).
pub(crate) fn mark_published(lease: &mut Lease, r: &Ref, holders: u64) -> (u64, u64) {
    lease.published = Some(r.payload_len);
    lease.holders = holders;
    let keep = sys::round_up(r.payload_len as u64, ALIGN).unwrap_or(lease.len);
    let tail = lease.len.saturating_sub(keep);
    if tail > 0 {
        lease.len = keep;
    }
    (lease.len, tail)
}
