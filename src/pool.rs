//! The sender's shared memory: regions and their free space, the budget,
//! keep-warm, map_ids and generations, and which regions are retiring. It
//! knows nothing about peers or leases: the registry decides who holds
//! what, and tells the pool when space comes back.

use std::collections::BTreeMap;
use std::os::fd::RawFd;

use tracing::{info, warn};

use crate::error::{Error, Result, Status};
use crate::freelist::FreeList;
use crate::region::{Region, RegionSpec};
use crate::sys;

/// Payload space is handed out in multiples of this many bytes, so every
/// payload starts on a cache line.
pub const ALIGN: u64 = 64;

/// How the pool is sized.
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Size of a new region (whole pages, at most the budget).
    pub region_size: u64,
    /// Most bytes of regions held at once.
    pub budget: u64,
    /// Bytes of fully free regions kept for reuse.
    pub keep_warm: u64,
    /// How regions are made and sealed.
    pub spec: RegionSpec,
}

/// Space taken from a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub map_id: u32,
    pub generation: u32,
    pub offset: u64,
    pub len: u64,
    pub data: *mut u8,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    region: Region,
    free: FreeList,
    retiring: bool,
}

impl Slot {
    fn idle(&self) -> bool {
        !self.retiring && self.free.free_bytes() == self.region.len()
    }
}

/// A region that is retiring or may retire: `(map_id, generation, len)`.
pub type RegionId = (u32, u32, u64);

/// The sender's regions.
#[derive(Debug)]
pub struct Pool {
    opts: PoolOptions,
    regions: BTreeMap<u32, Slot>,
    /// map_ids whose region was closed, with the generation their next
    /// region carries.
    reusable: BTreeMap<u32, u32>,
    next_id: u32,
    total_bytes: u64,
    created: u64,
    retired: u64,
}

/// The generation a map_id's next region carries, or None when the counter
/// is used up (the map_id is then retired for good: wrapping would make old
/// references name new bytes).
fn next_generation(g: u32) -> Option<u32> {
    g.checked_add(1)
}

impl Pool {
    pub fn new(opts: PoolOptions) -> Pool {
        Pool {
            opts,
            regions: BTreeMap::new(),
            reusable: BTreeMap::new(),
            next_id: 1,
            total_bytes: 0,
            created: 0,
            retired: 0,
        }
    }

    /// Bytes of idle regions kept for reuse.
    pub fn keep_warm(&self) -> u64 {
        self.opts.keep_warm
    }

    /// Bytes a request of `len` takes, and the size of the region it would
    /// need; `VOXSHM_TOO_LARGE` if that region could never fit the budget.
    pub fn sizes_for(&self, len: u64) -> Result<(u64, u64)> {
        let need = sys::round_up(len, ALIGN).unwrap_or(u64::MAX);
        let region_len = self
            .opts
            .region_size
            .max(sys::round_up(need, sys::page_size()).unwrap_or(u64::MAX));
        if region_len > self.opts.budget {
            return Err(Error::new(
                Status::TooLarge,
                format!(
                    "alloc of {len} bytes needs a {region_len}-byte region, more than the budget of {}",
                    self.opts.budget
                ),
            ));
        }
        Ok((need, region_len))
    }

    /// Takes `need` bytes from a region that is not retiring.
    pub fn take(&mut self, need: u64) -> Option<Extent> {
        for (&id, slot) in self.regions.iter_mut() {
            if slot.retiring || slot.free.free_bytes() < need {
                continue;
            }
            if let Some(off) = slot.free.alloc(need) {
                return Some(Extent {
                    map_id: id,
                    generation: slot.generation,
                    offset: off,
                    len: need,
                    // SAFETY: off + need <= region length (the free list
                    // only hands out extents inside the region), so the
                    // pointer stays inside the mapping.
                    data: unsafe { slot.region.base().add(off as usize) },
                });
            }
        }
        None
    }

    /// Gives `len` bytes at `offset` of region `map_id` back.
    pub fn give_back(&mut self, map_id: u32, offset: u64, len: u64) {
        if let Some(slot) = self.regions.get_mut(&map_id) {
            slot.free.release(offset, len);
        }
    }

    /// The address of `offset` in region `(map_id, generation)`, if it is
    /// held; only compared, never dereferenced.
    pub fn address(&self, map_id: u32, generation: u32, offset: u64) -> Option<*mut u8> {
        self.regions
            .get(&map_id)
            .filter(|s| s.generation == generation)
            .map(|s| s.region.base().wrapping_add(offset as usize))
    }

    /// The generation of region `map_id`, if it is held.
    pub fn generation(&self, map_id: u32) -> Option<u32> {
        self.regions.get(&map_id).map(|s| s.generation)
    }

    /// Whether region `(map_id, generation)` is held.
    pub fn holds(&self, map_id: u32, generation: u32) -> bool {
        self.regions
            .get(&map_id)
            .is_some_and(|s| s.generation == generation)
    }

    /// Whether a new region of `len` bytes fits the budget now.
    pub fn can_grow(&self, len: u64) -> bool {
        self.total_bytes + len <= self.opts.budget
    }

    /// Whether a region of `len` bytes would fit once every idle region is
    /// retired.
    pub fn fits_without_idle(&self, len: u64) -> bool {
        let idle: u64 = self
            .regions
            .values()
            .filter(|s| s.idle())
            .map(|s| s.region.len())
            .sum();
        self.total_bytes - idle + len <= self.opts.budget
    }

    /// Creates a region of `len` bytes under a fresh or reused map_id and
    /// returns it with its fd, for the caller to announce. If the
    /// announcement fails, `discard` undoes this.
    pub fn create(&mut self, len: u64) -> Result<(u32, u32, RawFd)> {
        let (id, generation) = match self.reusable.pop_first() {
            Some(p) => p,
            None => {
                if self.next_id == u32::MAX {
                    return Err(Error::new(
                        Status::ResourceExhausted,
                        "map_id space exhausted",
                    ));
                }
                self.next_id += 1;
                (self.next_id - 1, 1)
            }
        };
        let region = match Region::create(len, &format!("voxshm-{id}-{generation}"), self.opts.spec)
        {
            Ok(r) => r,
            Err(e) => {
                self.reusable.insert(id, generation);
                warn!(error = %e, "region creation failed");
                return Err(e);
            }
        };
        info!(map_id = id, generation, bytes = len, backing = ?region.backing(), seals = region.seals(), "region created");
        let fd = region.fd();
        self.total_bytes += len;
        self.created += 1;
        self.regions.insert(
            id,
            Slot {
                generation,
                free: FreeList::new(len),
                region,
                retiring: false,
            },
        );
        Ok((id, generation, fd))
    }

    /// Undoes `create` of a region that was never announced: its map_id and
    /// generation are used again for the next region.
    pub fn discard(&mut self, map_id: u32) {
        if let Some(slot) = self.regions.remove(&map_id) {
            self.total_bytes -= slot.region.len();
            self.created -= 1;
            self.reusable.insert(map_id, slot.generation);
        }
    }

    /// Idle regions to retire so that at most `keep` bytes of idle regions
    /// remain, largest first (the default-sized regions are the ones worth
    /// keeping warm when all are equal).
    pub fn idle_beyond(&self, keep: u64) -> Vec<RegionId> {
        // The common case, nothing to retire, allocates nothing.
        let idle_total: u64 = self
            .regions
            .values()
            .filter(|s| s.idle())
            .map(|s| s.region.len())
            .sum();
        if idle_total <= keep {
            return Vec::new();
        }
        let mut idle: Vec<RegionId> = self
            .regions
            .iter()
            .filter(|(_, s)| s.idle())
            .map(|(id, s)| (*id, s.generation, s.region.len()))
            .collect();
        let mut idle_bytes: u64 = idle.iter().map(|r| r.2).sum();
        idle.sort_unstable_by_key(|r| std::cmp::Reverse((r.2, r.0)));
        idle.into_iter()
            .take_while(|r| {
                let over = idle_bytes > keep;
                idle_bytes = idle_bytes.saturating_sub(r.2);
                over
            })
            .collect()
    }

    /// No more space is handed out from this region; it is closed by
    /// `forget` once every peer that saw it acknowledged.
    pub fn mark_retiring(&mut self, map_id: u32) {
        if let Some(s) = self.regions.get_mut(&map_id) {
            s.retiring = true;
        }
    }

    pub fn is_retiring(&self, map_id: u32, generation: u32) -> bool {
        self.regions
            .get(&map_id)
            .is_some_and(|s| s.generation == generation && s.retiring)
    }

    /// A region's fd and length, to announce it.
    pub fn region_fd(&self, map_id: u32) -> Option<(RawFd, u64)> {
        self.regions
            .get(&map_id)
            .map(|s| (s.region.fd(), s.region.len()))
    }

    /// Regions retiring, waiting for their acknowledgement.
    pub fn retiring(&self) -> usize {
        self.regions.values().filter(|s| s.retiring).count()
    }

    /// Nobody will acknowledge a retirement any more: retiring regions are
    /// idle ones again.
    pub fn cancel_retirements(&mut self) {
        for s in self.regions.values_mut() {
            s.retiring = false;
        }
    }

    /// Closes a region (its fd and mapping). Its map_id is used again with
    /// the next generation, unless that counter is used up.
    pub fn forget(&mut self, map_id: u32) {
        let Some(slot) = self.regions.remove(&map_id) else {
            return;
        };
        self.total_bytes -= slot.region.len();
        if let Some(next) = next_generation(slot.generation) {
            self.reusable.insert(map_id, next);
        }
        self.retired += 1;
        info!(
            map_id,
            generation = slot.generation,
            bytes = slot.region.len(),
            "region retired"
        );
    }

    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn retired(&self) -> u64 {
        self.retired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(budget: u64) -> Pool {
        Pool::new(PoolOptions {
            region_size: 64 << 10,
            budget,
            keep_warm: 0,
            spec: RegionSpec::default(),
        })
    }

    #[test]
    fn a_used_up_generation_counter_retires_its_map_id() {
        assert_eq!(next_generation(1), Some(2));
        assert_eq!(next_generation(u32::MAX - 1), Some(u32::MAX));
        assert_eq!(next_generation(u32::MAX), None);
    }

    #[test]
    fn space_comes_back_and_map_ids_are_reused_with_a_higher_generation() {
        let mut p = pool(1 << 20);
        let (id, generation, _) = p.create(64 << 10).unwrap();
        assert_eq!((id, generation), (1, 1));
        let a = p.take(100).unwrap();
        assert_eq!((a.map_id, a.offset, a.len), (1, 0, 100));
        assert!(p.idle_beyond(0).is_empty(), "in use");
        p.give_back(a.map_id, a.offset, a.len);
        assert_eq!(p.idle_beyond(0), vec![(1, 1, 64 << 10)]);
        p.mark_retiring(1);
        assert!(p.take(100).is_none(), "a retiring region hands out nothing");
        p.forget(1);
        assert_eq!((p.regions(), p.total_bytes(), p.retired()), (0, 0, 1));
        assert_eq!(p.create(64 << 10).unwrap().0..=1, 1..=1);
        assert!(p.holds(1, 2));
    }

    #[test]
    fn the_budget_bounds_the_regions() {
        let mut p = pool(128 << 10);
        assert!(p.sizes_for(200 << 10).is_err());
        p.create(64 << 10).unwrap();
        assert!(p.can_grow(64 << 10));
        p.create(64 << 10).unwrap();
        assert!(!p.can_grow(64 << 10));
        assert!(p.fits_without_idle(64 << 10));
        p.discard(2);
        assert_eq!(
            p.create(64 << 10).unwrap().0,
            2,
            "a discarded id is used again"
        );
    }
}
