//! The sender's side: owns regions, allocates payload space in them,
//! delivers each region's fd once, tracks leases, reuses released space and
//! retires idle regions.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{Ordering, fence};

use tracing::{debug, info, warn};

use crate::channel::{Channel, Recv};
use crate::error::{Error, Result, Status};
use crate::hub::{Guard, Hub};
use crate::region::{Region, RegionSpec};
use crate::sys::{self, Deadline};
use crate::wire::{self, Attach, Ext, Ref};

/// Payload space is handed out in multiples of this many bytes, so every
/// payload starts on a cache line.
pub const ALIGN: u64 = 64;

/// Sender configuration.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// Size of a new region; a payload larger than this gets a region of
    /// its own, rounded up to whole pages.
    pub region_size: u64,
    /// Most bytes of regions the sender holds at once.
    pub budget: u64,
    /// Bytes of fully free regions kept mapped for reuse; idle regions
    /// beyond this are retired.
    pub keep_warm: u64,
    /// How long a send waits for room in the channel (and for the
    /// receiver's HELLO) when the call itself has no timeout.
    pub send_timeout_ms: i64,
    /// Talk to a vox-shm receiver: no extension messages, no
    /// `F_SEAL_FUTURE_WRITE`, no leases coming back.
    pub vox_compat: bool,
    /// Use the unlinked temp-file fallback instead of memfd.
    pub force_tempfile: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            region_size: 64 << 20,
            budget: 1 << 30,
            keep_warm: 64 << 20,
            send_timeout_ms: 10_000,
            vox_compat: false,
            force_tempfile: false,
        }
    }
}

/// Space handed out by `alloc`, writable until published or aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub data: *mut u8,
    pub capacity: u64,
    pub map_id: u32,
    pub map_generation: u32,
    pub map_offset: u64,
    /// Unique per allocation, so a stale copy cannot match a later one at
    /// the same offset.
    pub token: u64,
}

/// Counters of a registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegistryStats {
    pub regions: u64,
    pub mapped_bytes: u64,
    pub live_leases: u64,
    pub allocations: u64,
    pub open_fds: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    pub regions_created: u64,
    pub regions_retired: u64,
    pub payloads_published: u64,
    pub payload_bytes_published: u64,
    pub minor_faults: u64,
    /// RELEASE entries from the receiver that named no live lease and were
    /// ignored (not exported through the C ABI yet).
    pub ignored_releases: u64,
}

#[derive(Debug)]
struct Lease {
    len: u64,
    token: u64,
    published: Option<u32>,
}

#[derive(Debug)]
struct RegionSlot {
    generation: u32,
    region: Region,
    free: crate::freelist::FreeList,
    leases: HashMap<u64, Lease>,
    retiring: bool,
}

impl RegionSlot {
    fn idle(&self) -> bool {
        !self.retiring && self.leases.is_empty()
    }
}

struct State {
    regions: BTreeMap<u32, RegionSlot>,
    /// map_ids whose retirement the receiver acknowledged, with the
    /// generation their next use must carry.
    reusable: BTreeMap<u32, u32>,
    next_id: u32,
    total_bytes: u64,
    peer_hello: bool,
    hello_sent: bool,
    peer_gone: bool,
    poisoned: Option<Error>,
    next_token: u64,
    live_leases: u64,
    /// Leases the receiver still held when it went away (reclaimed).
    lost_leases: u64,
    /// RELEASE entries that named no live lease (ignored).
    ignored_releases: u64,
    allocations: u64,
    stats: RegistryStats,
}

/// The sender's registry. `Send + Sync`: every method may be called from
/// any thread.
pub struct Registry {
    hub: Hub<State>,
    opts: RegistryOptions,
}

/// The generation a map_id's next region carries, or None when the counter
/// is used up (the map_id is then retired for good).
fn next_generation(g: u32) -> Option<u32> {
    g.checked_add(1)
}

/// Most messages one call reads from the channel, so a call with a timeout
/// of 0 takes bounded time however fast the receiver writes.
const MAX_MESSAGES_PER_PUMP: usize = 1024;

fn check_usable(st: &State) -> Result<()> {
    if let Some(e) = &st.poisoned {
        // The status that poisoned it (PROTOCOL or VERSION_MISMATCH), as
        // `pump` and the attachments report it.
        return Err(Error::new(
            e.status,
            format!("channel is poisoned: {}", e.message),
        ));
    }
    if st.peer_gone {
        return Err(Error::new(
            Status::VOXSHM_PEER_GONE,
            "the receiver closed the channel or died",
        ));
    }
    Ok(())
}

impl Registry {
    /// Creates a registry over `chan`, which it owns from now on.
    pub fn new(chan: Channel, opts: RegistryOptions) -> Result<Registry> {
        Self::new_or_return(chan, opts).map_err(|(e, _)| e)
    }

    /// Like `new`, but a failure hands the channel back with the error, so
    /// a caller that was lent the fd can give it back unclosed.
    pub fn new_or_return(
        chan: Channel,
        opts: RegistryOptions,
    ) -> std::result::Result<Registry, (Error, Channel)> {
        if opts.region_size == 0 || opts.budget == 0 {
            return Err((
                Error::new(
                    Status::VOXSHM_INVALID_ARGUMENT,
                    "region_size and budget must be > 0",
                ),
                chan,
            ));
        }
        let opts = RegistryOptions {
            // A region never exceeds the budget; payloads larger than a
            // region still get one of their own.
            region_size: sys::round_up(opts.region_size.min(opts.budget), sys::page_size())
                .unwrap_or(u64::MAX),
            ..opts
        };
        let st = State {
            regions: BTreeMap::new(),
            reusable: BTreeMap::new(),
            next_id: 1,
            total_bytes: 0,
            peer_hello: false,
            hello_sent: false,
            peer_gone: false,
            poisoned: None,
            next_token: 1,
            live_leases: 0,
            lost_leases: 0,
            ignored_releases: 0,
            allocations: 0,
            stats: RegistryStats::default(),
        };
        let hub = Hub::new(chan, st)?;
        debug!(fd = hub.chan.raw(), ?opts, "registry created");
        Ok(Registry { hub, opts })
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// The channel fd, for the caller's own poll/epoll loop.
    pub fn fd(&self) -> i32 {
        self.hub.chan.raw()
    }

    fn poison(&self, st: &mut State, e: Error) -> Error {
        warn!(reason = %e.message, "registry: protocol error, channel poisoned");
        st.poisoned = Some(e.clone());
        e
    }

    fn peer_gone(&self, st: &mut State) {
        if st.peer_gone {
            return;
        }
        st.peer_gone = true;
        let mut reclaimed = 0u64;
        for slot in st.regions.values_mut() {
            let published: Vec<u64> = slot
                .leases
                .iter()
                .filter(|(_, l)| l.published.is_some())
                .map(|(o, _)| *o)
                .collect();
            for off in published {
                if let Some(l) = slot.leases.remove(&off) {
                    slot.free.release(off, l.len);
                    reclaimed += 1;
                }
            }
            // Nobody will acknowledge a retirement any more.
            slot.retiring = slot.retiring && !slot.leases.is_empty();
        }
        st.live_leases = 0;
        st.lost_leases = reclaimed;
        info!(reclaimed, "registry: receiver gone, leases reclaimed");
        self.retire_idle(st, 0);
    }
    /// `pump` under the handle's lock, waking the other waiters when it
    /// changed anything.
    fn pump_notify(&self, g: &mut Guard<'_, State>) -> Result<bool> {
        let changed = self.pump(&mut g.s)?;
        if changed {
            self.hub.notify(g);
        }
        Ok(changed)
    }

    /// Reads and applies every message waiting on the channel. Returns an
    /// error if the channel is (or just became) poisoned.
    fn pump(&self, st: &mut State) -> Result<bool> {
        if let Some(e) = &st.poisoned {
            return Err(e.clone());
        }
        let mut changed = false;
        let mut budget = MAX_MESSAGES_PER_PUMP;
        while !st.peer_gone && budget > 0 {
            budget -= 1;
            let m = match self.hub.chan.try_recv() {
                Ok(Recv::Empty) => break,
                Ok(Recv::Eof) => {
                    self.peer_gone(st);
                    changed = true;
                    break;
                }
                Ok(Recv::Msg(m)) => m,
                Err(e) if e.status == Status::VOXSHM_PEER_GONE => {
                    self.peer_gone(st);
                    changed = true;
                    break;
                }
                Err(e) => return Err(e),
            };
            st.stats.messages_received += 1;
            st.stats.bytes_received += m.bytes.len() as u64;
            changed = true;
            if !m.fds.is_empty() || m.ctrunc || m.trunc {
                let e = Error::new(
                    Status::VOXSHM_PROTOCOL,
                    format!(
                        "receiver sent a {}-byte message with {} fd(s){}{}",
                        m.bytes.len(),
                        m.fds.len(),
                        if m.ctrunc {
                            ", control data truncated"
                        } else {
                            ""
                        },
                        if m.trunc { ", body truncated" } else { "" }
                    ),
                );
                return Err(self.poison(st, e));
            }
            let msg = match Ext::decode(&m.bytes) {
                Ok(msg) => msg,
                Err(e) => return Err(self.poison(st, e)),
            };
            if let Err(e) = self.apply(st, msg) {
                return Err(self.poison(st, e));
            }
        }
        Ok(changed)
    }

    fn apply(&self, st: &mut State, msg: Ext) -> Result<()> {
        match msg {
            Ext::Hello { version, role, .. } => {
                if role != wire::ROLE_RECEIVER {
                    return Err(Error::new(
                        Status::VOXSHM_PROTOCOL,
                        format!("HELLO with role {role}: the peer is not a receiver"),
                    ));
                }
                if version != wire::PROTOCOL_VERSION {
                    return Err(Error::new(
                        Status::VOXSHM_VERSION_MISMATCH,
                        format!(
                            "receiver speaks protocol version {version}, this library speaks {}",
                            wire::PROTOCOL_VERSION
                        ),
                    ));
                }
                debug!(version, "registry: receiver said HELLO");
                st.peer_hello = true;
            }
            Ext::Release(refs) => {
                for r in refs {
                    // Only a release that names a live lease of this
                    // receiver ends it. Anything else (twice, never sent, a
                    // reference the receiver's user made up and resolved
                    // from a transport of its own) is ignored: it can harm
                    // no one, and a receiver must not be able to make its
                    // sender poison the link through what it does with views.
                    let slot = st
                        .regions
                        .get_mut(&r.map_id)
                        .filter(|s| s.generation == r.map_generation);
                    let Some(slot) = slot.filter(|s| {
                        matches!(s.leases.get(&r.map_offset), Some(l) if l.published == Some(r.payload_len))
                    }) else {
                        st.ignored_releases += 1;
                        warn!(?r, "RELEASE of a reference that is not leased to the receiver: ignored");
                        continue;
                    };
                    if let Some(l) = slot.leases.remove(&r.map_offset) {
                        slot.free.release(r.map_offset, l.len);
                    }
                    st.live_leases -= 1;
                }
                self.retire_idle(st, self.opts.keep_warm);
            }
            Ext::RetireAck {
                map_id,
                map_generation,
                ..
            } => {
                match st.regions.get(&map_id) {
                    Some(s) if s.generation == map_generation && s.retiring => {}
                    _ => {
                        return Err(Error::new(
                            Status::VOXSHM_PROTOCOL,
                            format!(
                                "RETIRE_ACK for region {map_id}/{map_generation}, which is not retiring"
                            ),
                        ));
                    }
                }
                if let Some(slot) = st.regions.remove(&map_id) {
                    self.forget_region(st, map_id, slot);
                }
            }
            other => {
                return Err(Error::new(
                    Status::VOXSHM_PROTOCOL,
                    format!("receiver sent a sender-only message {other:?}"),
                ));
            }
        }
        Ok(())
    }

    fn forget_region(&self, st: &mut State, map_id: u32, slot: RegionSlot) {
        st.total_bytes -= slot.region.len();
        // A map_id whose generation counter is used up is never used again:
        // wrapping would make old references name new bytes.
        if let Some(next) = next_generation(slot.generation) {
            st.reusable.insert(map_id, next);
        }
        st.stats.regions_retired += 1;
        info!(
            map_id,
            generation = slot.generation,
            bytes = slot.region.len(),
            "region retired"
        );
    }

    /// Retires idle regions while more than `keep` bytes of them remain.
    /// With the peer gone they are closed at once; otherwise a RETIRE is
    /// sent and the region is closed when the acknowledgement arrives.
    fn retire_idle(&self, st: &mut State, keep: u64) {
        if self.opts.vox_compat && !st.peer_gone {
            return;
        }
        let mut idle: Vec<(u64, u32)> = st
            .regions
            .iter()
            .filter(|(_, s)| s.idle())
            .map(|(id, s)| (s.region.len(), *id))
            .collect();
        let mut idle_bytes: u64 = idle.iter().map(|p| p.0).sum();
        // Largest first: the default-sized regions are the ones worth keeping.
        idle.sort_unstable_by(|a, b| b.cmp(a));
        for (len, id) in idle {
            if idle_bytes <= keep {
                break;
            }
            if st.peer_gone {
                if let Some(slot) = st.regions.remove(&id) {
                    self.forget_region(st, id, slot);
                }
            } else {
                let generation = st.regions[&id].generation;
                if !self.try_send_ext(
                    st,
                    &Ext::Retire {
                        map_id: id,
                        map_generation: generation,
                        mapping_length: len,
                    },
                ) {
                    break;
                }
                if let Some(s) = st.regions.get_mut(&id) {
                    s.retiring = true;
                }
                debug!(map_id = id, generation, "RETIRE sent");
            }
            idle_bytes -= len;
        }
    }

    /// Sends an extension message without blocking; false if it could not
    /// go out now (no HELLO yet, or the channel is full).
    fn try_send_ext(&self, st: &mut State, msg: &Ext) -> bool {
        if !st.peer_hello {
            return false;
        }
        if !st.hello_sent {
            let hello = Ext::Hello {
                version: wire::PROTOCOL_VERSION,
                role: wire::ROLE_SENDER,
                features: 0,
            }
            .encode();
            if !matches!(self.hub.chan.try_send(&hello, None), Ok(true)) {
                return false;
            }
            st.hello_sent = true;
            Self::count_sent(st, hello.len());
        }
        let b = msg.encode();
        match self.hub.chan.try_send(&b, None) {
            Ok(true) => {
                Self::count_sent(st, b.len());
                true
            }
            _ => false,
        }
    }

    fn count_sent(st: &mut State, n: usize) {
        st.stats.messages_sent += 1;
        st.stats.bytes_sent += n as u64;
    }

    /// Sends one message, waiting up to `deadline` for room in the channel
    /// while applying whatever the receiver sends meanwhile.
    fn send_blocking(
        &self,
        st: &mut State,
        bytes: &[u8],
        fd: Option<i32>,
        deadline: Deadline,
    ) -> Result<()> {
        let r = self
            .hub
            .chan
            .send(bytes, fd, deadline, || self.pump(st).map(|_| ()));
        match r {
            Ok(()) => {
                Self::count_sent(st, bytes.len());
                Ok(())
            }
            Err(e) => {
                if e.status == Status::VOXSHM_PEER_GONE {
                    // What the receiver sent before it went (releases) is
                    // still queued: apply it before reclaiming the rest.
                    while !st.peer_gone {
                        match self.pump(st) {
                            Ok(true) => {}
                            Ok(false) | Err(_) => break,
                        }
                    }
                    self.peer_gone(st);
                }
                Err(e)
            }
        }
    }

    /// Allocates `len` bytes of payload space, waiting up to `timeout_ms`
    /// when the budget is exhausted.
    pub fn alloc(&self, len: u64, timeout_ms: i64) -> Result<Allocation> {
        if len == 0 {
            return Err(Error::new(Status::VOXSHM_ZERO_LENGTH, "alloc of 0 bytes"));
        }
        if len > u32::MAX as u64 {
            return Err(Error::new(
                Status::VOXSHM_TOO_LARGE,
                format!("alloc of {len} bytes: a payload is at most 4 GiB - 1"),
            ));
        }
        let need = sys::round_up(len, ALIGN).unwrap_or(u64::MAX);
        let region_len = self
            .opts
            .region_size
            .max(sys::round_up(need, sys::page_size()).unwrap_or(u64::MAX));
        if region_len > self.opts.budget {
            return Err(Error::new(
                Status::VOXSHM_TOO_LARGE,
                format!(
                    "alloc of {len} bytes needs a {region_len}-byte region, more than the budget of {}",
                    self.opts.budget
                ),
            ));
        }
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        loop {
            check_usable(&g.s)?;
            self.pump_notify(&mut g)?;
            check_usable(&g.s)?;
            if let Some(a) = Self::take_space(&mut g.s, need) {
                return Ok(a);
            }
            if g.s.total_bytes + region_len <= self.opts.budget {
                let r = self.new_region(&mut g, region_len, need);
                // Sending the ATTACH may have applied releases that other
                // threads are waiting for.
                self.hub.notify(&g);
                return r;
            }
            // Idle regions too small for this payload may be in the way.
            let idle: u64 =
                g.s.regions
                    .values()
                    .filter(|s| s.idle())
                    .map(|s| s.region.len())
                    .sum();
            if g.s.total_bytes - idle + region_len <= self.opts.budget {
                self.retire_idle(&mut g.s, 0);
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::VOXSHM_NO_SPACE,
                    format!(
                        "budget of {} bytes exhausted ({} bytes in {} regions, {} live leases); nothing was released in time",
                        self.opts.budget,
                        g.s.total_bytes,
                        g.s.regions.len(),
                        g.s.live_leases
                    ),
                ));
            }
            g = self.hub.wait(g, deadline)?;
        }
    }

    fn take_space(st: &mut State, need: u64) -> Option<Allocation> {
        for (&id, slot) in st.regions.iter_mut() {
            if slot.retiring || slot.free.free_bytes() < need {
                continue;
            }
            if let Some(off) = slot.free.alloc(need) {
                let token = st.next_token;
                st.next_token += 1;
                st.allocations += 1;
                slot.leases.insert(
                    off,
                    Lease {
                        len: need,
                        token,
                        published: None,
                    },
                );
                return Some(Allocation {
                    // SAFETY: off + need <= region length (the free list
                    // only hands out extents inside the region), so the
                    // pointer stays inside the mapping.
                    data: unsafe { slot.region.base().add(off as usize) },
                    capacity: need,
                    map_id: id,
                    map_generation: slot.generation,
                    map_offset: off,
                    token,
                });
            }
        }
        None
    }

    fn new_region(&self, g: &mut Guard<'_, State>, len: u64, need: u64) -> Result<Allocation> {
        let st = &mut g.s;
        let (id, generation) = match st.reusable.pop_first() {
            Some(p) => p,
            None => {
                if st.next_id == u32::MAX {
                    return Err(Error::new(
                        Status::VOXSHM_RESOURCE_EXHAUSTED,
                        "map_id space exhausted",
                    ));
                }
                st.next_id += 1;
                (st.next_id - 1, 1)
            }
        };
        let spec = RegionSpec {
            future_write: !self.opts.vox_compat,
            force_tempfile: self.opts.force_tempfile,
        };
        let region = match Region::create(len, &format!("voxshm-{id}-{generation}"), spec) {
            Ok(r) => r,
            Err(e) => {
                st.reusable.insert(id, generation);
                warn!(error = %e, "region creation failed");
                return Err(e);
            }
        };
        let attach = Attach {
            map_id: id,
            map_generation: generation,
            mapping_length: len,
        }
        .encode();
        let deadline = Deadline::after_ms(self.opts.send_timeout_ms);
        if let Err(e) = self.send_blocking(st, &attach, Some(region.fd()), deadline) {
            st.reusable.insert(id, generation);
            return Err(e);
        }
        info!(map_id = id, generation, bytes = len, backing = ?region.backing(), seals = region.seals(), "region created, ATTACH sent");
        st.total_bytes += len;
        st.stats.regions_created += 1;
        st.regions.insert(
            id,
            RegionSlot {
                generation,
                free: crate::freelist::FreeList::new(len),
                region,
                leases: HashMap::new(),
                retiring: false,
            },
        );
        Ok(Self::take_space(st, need).expect("a fresh region holds the allocation"))
    }

    fn lease_mut<'s>(st: &'s mut State, a: &Allocation) -> Result<&'s mut Lease> {
        st.regions
            .get_mut(&a.map_id)
            .filter(|s| s.generation == a.map_generation)
            // Another registry numbers its regions, offsets and tokens the
            // same way: only the address tells its allocations apart.
            .filter(|s| a.data == s.region.base().wrapping_add(a.map_offset as usize))
            .and_then(|s| s.leases.get_mut(&a.map_offset))
            .filter(|l| l.token == a.token && l.len == a.capacity && l.published.is_none())
            .ok_or_else(|| {
                Error::new(
                    Status::VOXSHM_INVALID_ALLOCATION,
                    format!(
                        "allocation {}/{}+{} is unknown, already published or aborted",
                        a.map_id, a.map_generation, a.map_offset
                    ),
                )
            })
    }

    /// Marks the lease of `a` published as `r`, which `check_publish`
    /// returned for it.
    fn mark_published(st: &mut State, a: &Allocation, r: &Ref) -> Result<()> {
        Self::lease_mut(st, a)?.published = Some(r.payload_len);
        st.live_leases += 1;
        st.allocations -= 1;
        Ok(())
    }

    /// Checks a publish request without changing anything.
    fn check_publish(st: &mut State, a: &Allocation, len: u64) -> Result<Ref> {
        let lease = Self::lease_mut(st, a)?;
        if len == 0 {
            return Err(Error::new(Status::VOXSHM_ZERO_LENGTH, "publish of 0 bytes"));
        }
        if len > lease.len || len > u32::MAX as u64 {
            return Err(Error::new(
                Status::VOXSHM_TOO_LARGE,
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

    /// Gives the allocation's unused tail back once it is published.
    fn trim(st: &mut State, r: &Ref) {
        if let Some(slot) = st.regions.get_mut(&r.map_id)
            && let Some(l) = slot.leases.get_mut(&r.map_offset)
        {
            let keep = sys::round_up(r.payload_len as u64, ALIGN).unwrap_or(l.len);
            if keep < l.len {
                slot.free.release(r.map_offset + keep, l.len - keep);
                l.len = keep;
            }
        }
    }

    fn count_published(st: &mut State, r: &Ref) {
        st.stats.payloads_published += 1;
        st.stats.payload_bytes_published += r.payload_len as u64;
    }

    /// Publishes the first `len` bytes of `a` and returns the reference to
    /// carry over a transport of the caller's own. The payload writes are
    /// ordered before the reference by a release fence.
    pub fn publish(&self, a: &Allocation, len: u64) -> Result<Ref> {
        let mut g = self.hub.lock();
        self.pump_notify(&mut g)?;
        check_usable(&g.s)?;
        let r = Self::check_publish(&mut g.s, a, len)?;
        Self::mark_published(&mut g.s, a, &r)?;
        Self::trim(&mut g.s, &r);
        Self::count_published(&mut g.s, &r);
        fence(Ordering::Release);
        Ok(r)
    }

    /// Publishes the first `len` bytes of `a` and sends the reference over
    /// the channel, waiting up to `timeout_ms` (negative: the configured
    /// send timeout) for the receiver's HELLO and for room in the channel.
    /// On failure the allocation is still the caller's, to retry or abort.
    pub fn send(&self, a: &Allocation, len: u64, timeout_ms: i64) -> Result<()> {
        if self.opts.vox_compat {
            return Err(Error::new(
                Status::VOXSHM_UNSUPPORTED,
                "a vox receiver takes references only over its own transport: use publish",
            ));
        }
        let deadline = Deadline::after_ms(if timeout_ms < 0 {
            self.opts.send_timeout_ms
        } else {
            timeout_ms
        });
        let mut g = self.hub.lock();
        loop {
            // Once the receiver has said HELLO there is nothing to read
            // first: alloc applied the releases, and a receiver that has
            // gone shows as EPIPE on the send itself. This keeps the hot
            // path to one system call.
            if !g.s.peer_hello {
                self.pump_notify(&mut g)?;
            }
            check_usable(&g.s)?;
            Self::lease_mut(&mut g.s, a)?;
            if g.s.peer_hello {
                break;
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    "the receiver has not said HELLO yet",
                ));
            }
            g = self.hub.wait(g, deadline)?;
        }
        let r = self.send_ref(&mut g.s, a, len, deadline);
        // Releases applied while waiting for room in the channel may have
        // freed space that other threads are waiting for.
        self.hub.notify(&g);
        r
    }

    /// The part of `send` after the HELLO exchange: publishes and sends the
    /// reference, or gives the allocation back on failure.
    fn send_ref(&self, st: &mut State, a: &Allocation, len: u64, deadline: Deadline) -> Result<()> {
        if !st.hello_sent {
            let hello = Ext::Hello {
                version: wire::PROTOCOL_VERSION,
                role: wire::ROLE_SENDER,
                features: 0,
            }
            .encode();
            self.send_blocking(st, &hello, None, deadline)?;
            st.hello_sent = true;
        }
        let r = Self::check_publish(st, a, len)?;
        fence(Ordering::Release);
        // The lease is marked published only once the REF is out: if the
        // send fails (also when it finds the receiver gone, which reclaims
        // every published lease) the allocation is still the caller's.
        self.send_blocking(st, &Ext::Ref(r).encode(), None, deadline)?;
        // Nothing the drain above applied can touch an unpublished lease.
        Self::mark_published(st, a, &r)?;
        Self::trim(st, &r);
        Self::count_published(st, &r);
        Ok(())
    }

    /// Gives back an allocation that was never published.
    pub fn abort(&self, a: &Allocation) -> Result<()> {
        let mut g = self.hub.lock();
        let st = &mut g.s;
        Self::lease_mut(st, a)?;
        if let Some(slot) = st.regions.get_mut(&a.map_id)
            && let Some(l) = slot.leases.remove(&a.map_offset)
        {
            slot.free.release(a.map_offset, l.len);
        }
        st.allocations -= 1;
        self.retire_idle(st, self.opts.keep_warm);
        self.hub.notify(&g);
        Ok(())
    }

    /// Applies whatever the receiver sent, without waiting: releases,
    /// acknowledgements, hang-up. For callers driving their own event loop.
    pub fn poll(&self) -> Result<()> {
        let mut g = self.hub.lock();
        self.pump_notify(&mut g)?;
        check_usable(&g.s)?;
        // Retirements that found the channel full are retried here.
        self.retire_idle(&mut g.s, self.opts.keep_warm);
        Ok(())
    }

    /// Waits up to `timeout_ms` until no lease is outstanding (every
    /// published payload was released) and no retirement awaits its
    /// acknowledgement, or the receiver is gone. A receiver that went away
    /// holding leases is an error (PEER_GONE) even though the leases were
    /// reclaimed: they were not released.
    pub fn wait_idle(&self, timeout_ms: i64) -> Result<()> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        loop {
            self.pump_notify(&mut g)?;
            self.retire_idle(&mut g.s, self.opts.keep_warm);
            if g.s.live_leases == 0 && !g.s.regions.values().any(|r| r.retiring) {
                if g.s.lost_leases > 0 {
                    return Err(Error::new(
                        Status::VOXSHM_PEER_GONE,
                        format!(
                            "the receiver went away holding {} leases; they were reclaimed",
                            g.s.lost_leases
                        ),
                    ));
                }
                return Ok(());
            }
            check_usable(&g.s)?;
            if deadline.expired() {
                return Err(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    format!("{} leases still outstanding", g.s.live_leases),
                ));
            }
            g = self.hub.wait(g, deadline)?;
        }
    }

    pub fn stats(&self) -> RegistryStats {
        let g = self.hub.lock();
        let st = &g.s;
        let mut s = st.stats;
        s.regions = st.regions.len() as u64;
        s.mapped_bytes = st.total_bytes;
        s.live_leases = st.live_leases;
        s.allocations = st.allocations;
        // One fd per region, the channel, and the wake-up eventfd.
        s.open_fds = st.regions.len() as u64 + 2;
        s.minor_faults = sys::minor_faults();
        s.ignored_releases = st.ignored_releases;
        s
    }

    /// True once the receiver has hung up.
    pub fn peer_is_gone(&self) -> bool {
        let mut g = self.hub.lock();
        let _ = self.pump_notify(&mut g);
        g.s.peer_gone
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let g = self.hub.lock();
        debug!(regions = g.s.regions.len(), "registry freed");
    }
}

// SAFETY: the raw pointer in an Allocation is an address inside a shared
// mapping; the allocation is plain data describing it, and the registry
// checks every use against its own lease table.
unsafe impl Send for Allocation {}
// SAFETY: as above; an Allocation has no interior mutability.
unsafe impl Sync for Allocation {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_used_up_generation_counter_retires_its_map_id() {
        assert_eq!(next_generation(1), Some(2));
        assert_eq!(next_generation(u32::MAX - 1), Some(u32::MAX));
        assert_eq!(next_generation(u32::MAX), None);
    }
}
