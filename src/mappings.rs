//! The receiver's table of regions: what is mapped, what was rejected and
//! why, the highest generation seen per map_id, and the live views of each
//! mapping. It applies the ATTACH validation and the resolution checks of
//! `docs/protocol.md`; the attachments feed it from their link.

use crate::hash::FastMap;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd};

use tracing::{info, warn};

use crate::error::{Error, Result, Status};
use crate::region::{Limits, Mapping};
use crate::wire::{Attach, Ref};

/// Most distinct map_ids remembered (mapped, rejected or retired). A sender
/// reuses the map_ids of retired regions, so only a hostile one gets near.
pub const MAX_KNOWN_MAP_IDS: usize = 1 << 16;

struct Mapped {
    generation: u32,
    map: Mapping,
    /// Live views per (offset, len): the RELEASE goes out when the last
    /// view of a reference is released.
    views: FastMap<(u64, u32), u32>,
    retire_pending: bool,
    /// When a view of it was last taken (a counter), for eviction.
    last_used: u64,
    /// The furthest byte any reference into it reached: a region used up
    /// to its end is the first to go.
    seen_end: u64,
}

/// What a RETIRE did.
#[derive(Debug, PartialEq, Eq)]
pub enum Retired {
    /// Unmapped now (or never mapped: it was rejected): acknowledge it.
    Now,
    /// Unmapped when its last view is released.
    Later,
}

/// What releasing a view did.
#[derive(Debug, PartialEq, Eq)]
pub struct Released {
    /// It was the last view of its reference: tell the sender.
    pub last_of_ref: bool,
    /// Its region retired with it: acknowledge the RETIRE.
    pub retired: bool,
}

fn protocol(msg: String) -> Error {
    Error::new(Status::Protocol, msg)
}

/// The receiver's regions.
pub struct Mappings {
    limits: Limits,
    maps: FastMap<u32, Mapped>,
    /// The highest generation ever attached (mapped or rejected) for each
    /// map_id. An ATTACH must carry a higher one, so a retired generation
    /// can never be mapped again and its references stay stale, whatever
    /// the sender does (ABA protection does not rest on the sender alone).
    highest: FastMap<u32, u32>,
    /// Regions whose ATTACH was rejected, with the rejection: references
    /// into them fail at once with it, and their RETIRE is acknowledged.
    rejected: FastMap<u32, (u32, Error)>,
    /// Vox compatibility: a vox sender never retires a region, so when the
    /// limits are reached the mappings no view holds are unmapped, used-up
    /// and least recently used first. Evicted regions, by map_id (with
    /// their generation): a reference into one fails with
    /// `VOXSHM_TOO_MANY_MAPPINGS` at once.
    evict: bool,
    evicted: BTreeMap<u32, u32>,
    uses: u64,
    pub regions_evicted: u64,
    mapped_bytes: u64,
    pub attaches_received: u64,
    pub attaches_rejected: u64,
    pub regions_retired: u64,
}

impl Mappings {
    /// `evict`: make room by unmapping what no view holds (vox
    /// compatibility) instead of refusing new regions at the limits.
    pub fn new(limits: Limits, evict: bool) -> Mappings {
        Mappings {
            limits,
            maps: FastMap::default(),
            highest: FastMap::default(),
            rejected: FastMap::default(),
            evict,
            evicted: BTreeMap::new(),
            uses: 0,
            regions_evicted: 0,
            mapped_bytes: 0,
            attaches_received: 0,
            attaches_rejected: 0,
            regions_retired: 0,
        }
    }

    pub fn count(&self) -> usize {
        self.maps.len()
    }

    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// An ATTACH with its fd: validated and mapped read-only, or rejected
    /// (remembered, and returned). A mapping_length of 0 and a map_id past
    /// `MAX_KNOWN_MAP_IDS` are protocol errors.
    pub fn attach(&mut self, a: Attach, fd: OwnedFd) -> Result<()> {
        self.attaches_received += 1;
        if a.mapping_length == 0 {
            // Malformed whatever the fd is: no region has 0 bytes.
            return Err(protocol(format!(
                "ATTACH of region {}/{} with mapping_length 0",
                a.map_id, a.map_generation
            )));
        }
        self.check_new_region(&a)?;
        // Room is made only for a region that will be accepted: a refused
        // one must not cost the mappings in place.
        if self.evict && Mapping::check_file(fd.as_raw_fd(), a.mapping_length, &self.limits).is_ok()
        {
            self.make_room(a.mapping_length);
        }
        let map = Mapping::validate_and_map(
            fd,
            a.mapping_length,
            &self.limits,
            self.maps.len(),
            self.mapped_bytes,
        );
        match map {
            Ok(map) => {
                info!(
                    map_id = a.map_id,
                    generation = a.map_generation,
                    bytes = a.mapping_length,
                    "ATTACH received, region mapped"
                );
                self.mapped_bytes += map.len();
                self.highest.insert(a.map_id, a.map_generation);
                self.rejected.remove(&a.map_id);
                self.evicted.remove(&a.map_id);
                self.uses += 1;
                self.maps.insert(
                    a.map_id,
                    Mapped {
                        generation: a.map_generation,
                        map,
                        views: FastMap::default(),
                        retire_pending: false,
                        last_used: self.uses,
                        seen_end: 0,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let e = Error::new(
                    e.status,
                    format!("region {}/{}: {}", a.map_id, a.map_generation, e.message),
                );
                self.reject(&a, e)
            }
        }
    }

    /// An ATTACH whose fd this process could not receive (no free fd): not
    /// the sender's fault, only this region is lost.
    pub fn attach_lost(&mut self, a: Attach) -> Result<()> {
        self.attaches_received += 1;
        self.check_new_region(&a)?;
        let e = Error::new(
            Status::ResourceExhausted,
            format!(
                "region {}/{}: its fd could not be received, this process has no free file descriptor",
                a.map_id, a.map_generation
            ),
        );
        self.reject(&a, e)
    }

    /// Checks that an ATTACH may introduce region `a` at all: a map_id
    /// mapped now is a duplicate; a generation not higher than every one
    /// seen for its map_id (a retired one, or one from before a wrap of the
    /// counter) is refused, so a stale reference can never resolve again.
    fn check_new_region(&mut self, a: &Attach) -> Result<()> {
        let (id, generation) = (a.map_id, a.map_generation);
        // Vox compatibility: a vox-compatible voxshm sender closes idle
        // regions without a word and brings their map_id back with a
        // higher generation. The old one is superseded: unmapped if no
        // view holds it (a reference into it is then stale).
        if self.evict
            && self
                .maps
                .get(&id)
                .is_some_and(|m| m.generation < generation && m.views.is_empty())
        {
            self.unmap(id);
            self.regions_evicted += 1;
        }
        if self.maps.contains_key(&id) {
            self.attaches_rejected += 1;
            return Err(Error::new(
                Status::DuplicateAttach,
                format!("ATTACH of region {id}/{generation} while map_id {id} is still mapped"),
            ));
        }
        let known = self.highest.get(&id).copied();
        if known.is_none()
            && self.highest.len() >= MAX_KNOWN_MAP_IDS
            && self.forget_oldest_evicted()
        {
            return Ok(());
        }
        match known {
            Some(h) if generation <= h => {
                self.attaches_rejected += 1;
                Err(Error::new(
                    Status::StaleGeneration,
                    format!(
                        "ATTACH of region {id}/{generation}: generation {h} of map_id {id} was attached before, a new region must carry a higher one"
                    ),
                ))
            }
            None if self.highest.len() >= MAX_KNOWN_MAP_IDS => Err(protocol(format!(
                "ATTACH of region {id}/{generation}: the sender used more than {MAX_KNOWN_MAP_IDS} distinct map_ids"
            ))),
            _ => Ok(()),
        }
    }

    /// Unmaps mappings no view holds until a region of `len` more bytes
    /// fits the limits: first those used up to their end (a vox sender
    /// places nothing more there), then the least recently used.
    fn make_room(&mut self, len: u64) {
        let max_count = self.limits.max_mappings as usize;
        let max_bytes = self.limits.max_mapped_bytes;
        let mut count = self.maps.len();
        let mut bytes = self.mapped_bytes;
        if count < max_count && bytes.saturating_add(len) <= max_bytes {
            return;
        }
        let mut candidates: Vec<(bool, u64, u32, u64)> = self
            .maps
            .iter()
            .filter(|(_, m)| m.views.is_empty() && !m.retire_pending)
            .map(|(id, m)| (m.seen_end < m.map.len(), m.last_used, *id, m.map.len()))
            .collect();
        candidates.sort_unstable();
        // Chosen first, unmapped only if they make enough room: a region
        // that cannot fit anyway must not cost the mappings in place.
        let mut victims = Vec::new();
        for (_, _, id, size) in candidates {
            if count < max_count && bytes.saturating_add(len) <= max_bytes {
                break;
            }
            victims.push(id);
            count -= 1;
            bytes -= size;
        }
        if count >= max_count || bytes.saturating_add(len) > max_bytes {
            return;
        }
        for id in victims {
            let generation = self.maps.get(&id).map_or(0, |m| m.generation);
            self.unmap(id);
            self.evicted.insert(id, generation);
            self.regions_evicted += 1;
            info!(
                map_id = id,
                generation, "region unmapped to make room (vox compatibility)"
            );
        }
    }

    /// At the limit of known map_ids (vox compatibility): forgets the
    /// oldest evicted one (a vox sender counts map_ids up and never reuses
    /// one), so a session of any length stays within it. False: none.
    fn forget_oldest_evicted(&mut self) -> bool {
        if !self.evict {
            return false;
        }
        match self.evicted.pop_first() {
            Some((id, _)) => {
                self.highest.remove(&id);
                true
            }
            None => false,
        }
    }

    /// Remembers a rejected region, so its references fail with `e` at
    /// once and its RETIRE is acknowledged; returns `e`.
    fn reject(&mut self, a: &Attach, e: Error) -> Result<()> {
        self.attaches_rejected += 1;
        warn!(map_id = a.map_id, generation = a.map_generation, error = %e, "ATTACH rejected");
        self.highest.insert(a.map_id, a.map_generation);
        self.rejected
            .insert(a.map_id, (a.map_generation, e.clone()));
        Err(e)
    }

    /// A RETIRE. Only a region that is mapped (and not retiring already)
    /// or was rejected can be retired; anything else is a protocol error,
    /// so what a sender can make this side queue is bounded by the regions
    /// it has.
    pub fn retire(&mut self, map_id: u32, generation: u32) -> Result<Retired> {
        match self.maps.get_mut(&map_id) {
            Some(m) if m.generation == generation && !m.retire_pending => {
                if m.views.is_empty() {
                    self.unmap(map_id);
                    self.regions_retired += 1;
                    Ok(Retired::Now)
                } else {
                    m.retire_pending = true;
                    Ok(Retired::Later)
                }
            }
            _ if self
                .rejected
                .get(&map_id)
                .is_some_and(|r| r.0 == generation) =>
            {
                // Never mapped: nothing to unmap, acknowledge at once.
                self.rejected.remove(&map_id);
                Ok(Retired::Now)
            }
            _ => Err(protocol(format!(
                "RETIRE of region {map_id}/{generation}, which is neither mapped nor rejected (or is retiring already)"
            ))),
        }
    }

    fn unmap(&mut self, map_id: u32) {
        if let Some(m) = self.maps.remove(&map_id) {
            self.mapped_bytes -= m.map.len();
        }
    }

    /// Checks a reference against the mappings, in the documented order,
    /// and returns where its bytes are. `sender_gone`: a region that is not
    /// mapped can never arrive any more.
    pub fn check(&self, r: &Ref, sender_gone: bool) -> Result<*const u8> {
        let Some(m) = self.maps.get(&r.map_id) else {
            if self.evicted.get(&r.map_id) == Some(&r.map_generation) {
                return Err(Error::new(
                    Status::TooManyMappings,
                    format!(
                        "region {}/{} was unmapped to make room for newer ones (vox compatibility: max_mappings {}, max_mapped_bytes {})",
                        r.map_id,
                        r.map_generation,
                        self.limits.max_mappings,
                        self.limits.max_mapped_bytes
                    ),
                ));
            }
            if let Some((g, e)) = self.rejected.get(&r.map_id)
                && *g == r.map_generation
            {
                return Err(e.clone());
            }
            return Err(match self.highest.get(&r.map_id) {
                Some(&g) if r.map_generation <= g => Error::new(
                    Status::StaleGeneration,
                    format!(
                        "map_id {} generation {} was retired (newest generation: {g})",
                        r.map_id, r.map_generation
                    ),
                ),
                _ if sender_gone => Error::new(
                    Status::PeerGone,
                    format!(
                        "region {}/{} is not attached, and the sender is gone",
                        r.map_id, r.map_generation
                    ),
                ),
                _ => Error::new(
                    Status::UnknownMap,
                    format!("map_id {} is not attached", r.map_id),
                ),
            });
        };
        if r.map_generation < m.generation {
            return Err(Error::new(
                Status::StaleGeneration,
                format!(
                    "map_id {} generation {} is stale (mapped: {})",
                    r.map_id, r.map_generation, m.generation
                ),
            ));
        }
        if r.map_generation > m.generation {
            return Err(Error::new(
                Status::UnknownMap,
                format!(
                    "map_id {} generation {} is not attached yet (mapped: {})",
                    r.map_id, r.map_generation, m.generation
                ),
            ));
        }
        if r.payload_len == 0 {
            return Err(Error::new(
                Status::ZeroLength,
                format!(
                    "reference of 0 bytes at offset {} of region {}/{}",
                    r.map_offset, r.map_id, r.map_generation
                ),
            ));
        }
        let end = r
            .map_offset
            .checked_add(r.payload_len as u64)
            .ok_or_else(|| {
                Error::new(
                    Status::RefOverflow,
                    format!(
                        "offset {} + length {} overflows",
                        r.map_offset, r.payload_len
                    ),
                )
            })?;
        if end > m.map.len() {
            return Err(Error::new(
                Status::OutOfBounds,
                format!(
                    "bytes {}..{end} lie beyond the {}-byte mapping of map_id {}",
                    r.map_offset,
                    m.map.len(),
                    r.map_id
                ),
            ));
        }
        // SAFETY: map_offset + payload_len <= mapping length was checked
        // just above, so the pointer is inside the mapping.
        Ok(unsafe { m.map.base().add(r.map_offset as usize) })
    }

    /// Counts a view of `r`, which `check` accepted.
    pub fn add_view(&mut self, r: &Ref) {
        self.uses += 1;
        if let Some(m) = self.maps.get_mut(&r.map_id) {
            *m.views.entry((r.map_offset, r.payload_len)).or_insert(0) += 1;
            m.last_used = self.uses;
            m.seen_end = m.seen_end.max(r.map_offset + u64::from(r.payload_len));
        }
    }

    /// Ends a view of `r` whose address is `data`. `unmap_if_unviewed`:
    /// the sender is gone and nothing else may need the region, so it is
    /// unmapped once no view is left.
    pub fn end_view(
        &mut self,
        r: &Ref,
        data: *const u8,
        len: u64,
        unmap_if_unviewed: impl FnOnce() -> bool,
    ) -> Result<Released> {
        let key = (r.map_offset, r.payload_len);
        let m = self
            .maps
            .get_mut(&r.map_id)
            .filter(|m| m.generation == r.map_generation && m.views.contains_key(&key))
            .ok_or_else(|| {
                Error::new(
                    Status::InvalidView,
                    format!("the view of {r} is not held: it was never resolved, or was released already"),
                )
            })?;
        // The view must point where its reference says (a caller may have
        // changed the struct); only addresses are compared, nothing is read.
        if data != m.map.base().wrapping_add(r.map_offset as usize) || len != r.payload_len as u64 {
            return Err(Error::new(
                Status::InvalidView,
                "view's pointer or length does not match its reference",
            ));
        }
        let c = m.views.get_mut(&key).expect("checked above");
        *c -= 1;
        let last_of_ref = *c == 0;
        if last_of_ref {
            m.views.remove(&key);
        }
        let retired = m.retire_pending && m.views.is_empty();
        if m.views.is_empty() && (retired || unmap_if_unviewed()) {
            self.unmap(r.map_id);
        }
        Ok(Released {
            last_of_ref,
            retired,
        })
    }

    /// The receiving side closes while the sender goes on (a duplex
    /// channel whose attachments were freed): unmaps every region and
    /// returns a reference for each payload a view still held, to release,
    /// and the regions whose retirement waited for those views, to
    /// acknowledge.
    pub fn close(&mut self) -> (Vec<Ref>, Vec<(u32, u32, u64)>) {
        let mut refs = Vec::new();
        let mut acks = Vec::new();
        for (&map_id, m) in &self.maps {
            for &(map_offset, payload_len) in m.views.keys() {
                refs.push(Ref {
                    map_id,
                    map_generation: m.generation,
                    map_offset,
                    payload_len,
                });
            }
            if m.retire_pending {
                acks.push((map_id, m.generation, m.map.len()));
            }
        }
        let ids: Vec<u32> = self.maps.keys().copied().collect();
        for id in ids {
            self.unmap(id);
        }
        (refs, acks)
    }

    /// The sender is gone: unmaps every region no view holds and `keep`
    /// does not ask for. Those regions are not retired: a reference into
    /// them is answered "sender gone", not "stale".
    pub fn drop_unviewed(&mut self, keep: impl Fn(u32, u32) -> bool) {
        let gone: Vec<u32> = self
            .maps
            .iter()
            .filter(|(id, m)| m.views.is_empty() && !keep(**id, m.generation))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.unmap(id);
            self.highest.remove(&id);
        }
    }
}
