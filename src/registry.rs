//! The sender's side: the pool of regions, the link to the receiver, and
//! the lease table that says which payload the receiver holds. It delivers
//! each region's ATTACH before any reference into it, takes releases back
//! into the pool and retires idle regions once the receiver acknowledged.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use tracing::{debug, info, warn};

use crate::channel::Channel;
use crate::conn::{Both, Conn};
use crate::error::{Error, Result, Status};
use crate::hub::{Guard, Hub, Spin, Unstarted};
use crate::lease::{self, Lease, Leases};
use crate::link::{Endpoint, Incoming, Link, Role, Roles};
use crate::pool::{Pool, PoolOptions};
use crate::region::RegionSpec;
use crate::ring::{self, Capacities};
use crate::sys::{self, Deadline, LazyDeadline};
use crate::wire::{Attach, Ext, Ref};

pub use crate::pool::ALIGN;

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
    /// Most bytes of published payloads the receiver has not released yet
    /// (0: no limit). When the next payload would go over it, `alloc` waits
    /// for releases (a payload alone may be larger). This bounds the queue,
    /// and with it the latency, of a producer faster than its consumer.
    pub max_in_flight_bytes: u64,
    /// How long a send waits for room in the channel (and for the
    /// receiver's HELLO) when the call itself has no timeout.
    pub send_timeout_ms: i64,
    /// Talk to a vox-shm receiver: no extension messages, no
    /// `F_SEAL_FUTURE_WRITE`, no leases coming back.
    pub vox_compat: bool,
    /// Use the unlinked temp-file fallback instead of memfd.
    pub force_tempfile: bool,
    /// `stats()` also reads the process's page-fault count (one
    /// `getrusage`); without it, `stats()` makes no system call.
    pub stats_faults: bool,
    /// Offer the ring path: references and releases through a shared ring
    /// segment (used when the receiver offers it too).
    pub ring: bool,
    /// Entries of each of the segment's two rings (a power of two,
    /// 16..=1048576): how many references can wait for the receiver.
    pub ring_capacity: u32,
    /// How long a blocking call spins, watching the ring, before it
    /// sleeps (microseconds; 0: never spin).
    pub spin_us: u32,
}

/// The default of `RegistryOptions::ring_capacity`.
pub const DEFAULT_RING_CAPACITY: u32 = 1024;
/// The default of the options' `spin_us`.
pub const DEFAULT_SPIN_US: u32 = 50;

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            region_size: 64 << 20,
            budget: 1 << 30,
            keep_warm: 64 << 20,
            max_in_flight_bytes: 64 << 20,
            send_timeout_ms: 10_000,
            vox_compat: false,
            force_tempfile: false,
            stats_faults: false,
            ring: true,
            ring_capacity: DEFAULT_RING_CAPACITY,
            spin_us: DEFAULT_SPIN_US,
        }
    }
}

impl RegistryOptions {
    /// Checks the options and settles what they leave open: the budget and
    /// regions are whole pages (rounded up), and a region never exceeds
    /// the budget (a larger payload still gets one of its own).
    pub fn checked(self) -> Result<RegistryOptions> {
        if self.region_size == 0 || self.budget == 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                "region_size and budget must be > 0",
            ));
        }
        let cap = self.ring_capacity;
        if !cap.is_power_of_two() || !(ring::MIN_CAPACITY..=ring::MAX_CAPACITY).contains(&cap) {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "ring_capacity {cap} is not a power of two in {}..={}",
                    ring::MIN_CAPACITY,
                    ring::MAX_CAPACITY
                ),
            ));
        }
        // Regions are whole pages: a budget is too (640 would otherwise fit
        // no region at all).
        let page = sys::page_size();
        let budget = sys::round_up(self.budget, page).unwrap_or(u64::MAX / page * page);
        Ok(RegistryOptions {
            region_size: sys::round_up(self.region_size.min(budget), page).unwrap_or(budget),
            budget,
            ..self
        })
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
    /// ignored.
    pub ignored_releases: u64,
    /// References and releases travel through the ring segment.
    pub ring: bool,
    /// Wake-up messages sent to a sleeping receiver.
    pub wakeups_sent: u64,
}

/// A timeout that means "the configured `send_timeout_ms`" where a call
/// takes one (`Registry::send`); every other negative timeout means
/// "forever".
pub const TIMEOUT_CONFIGURED: i64 = i64::MIN;

/// The receiver's bit in `Lease::holders`: a registry has one.
const THE_PEER: u64 = 1;

/// Everything of the sender but its link.
pub(crate) struct Side {
    opts: RegistryOptions,
    pool: Pool,
    /// Space handed out: allocations not yet published, and leases the
    /// receiver holds.
    leases: Leases,
    allocations: u64,
    live_leases: u64,
    /// Bytes of those leases.
    leased_bytes: u64,
    /// Leases the receiver still held when it went away (reclaimed).
    lost_leases: u64,
    /// The references of those leases, for `wait_released`.
    reclaimed: std::collections::HashSet<Ref>,
    ignored_releases: u64,
    /// Allocations since the release ring was last looked at.
    allocs_since_releases: u32,
    bytes_since_releases: u64,
    payloads_published: u64,
    payload_bytes_published: u64,
}

/// The sender's registry. `Send + Sync`: every method may be called from
/// any thread.
pub struct Registry {
    hub: Arc<Hub<Conn>>,
    opts: RegistryOptions,
}

impl Endpoint for Side {
    /// Applies what the link delivered.
    fn apply(&mut self, link: &mut Link, m: Incoming) -> Result<()> {
        match m {
            Incoming::Ext(Ext::Release(refs)) => {
                for r in refs {
                    self.release(&r);
                }
                self.retire_idle(link, self.pool.keep_warm());
            }
            Incoming::Ext(Ext::RetireAck {
                map_id,
                map_generation,
                ..
            }) => {
                if !self.pool.is_retiring(map_id, map_generation) {
                    return Err(Error::new(
                        Status::Protocol,
                        format!(
                            "RETIRE_ACK for region {map_id}/{map_generation}, which is not retiring"
                        ),
                    ));
                }
                self.pool.forget(map_id);
            }
            Incoming::Gone => {
                // Releases the receiver pushed before it went are releases,
                // not losses. A ring it broke while dying poisons the link,
                // and the rest is reclaimed all the same.
                let taken = self.take_releases(link);
                self.peer_gone(link);
                taken.map(|_| ())?
            }
            other => {
                return Err(Error::new(
                    Status::Protocol,
                    format!("receiver sent a sender-only message {other:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// How many allocations, and how many bytes of them, may pass without
/// looking at the release ring. Small payloads skip the ring's cache miss;
/// large ones reuse the space just released, which is still in the cache.
const RELEASES_EVERY: u32 = 16;
const RELEASES_EVERY_BYTES: u64 = 256 << 10;

impl Side {
    /// Counts an allocation of `need` bytes; true when the release ring
    /// should be looked at now.
    fn releases_due(&mut self, need: u64) -> bool {
        self.allocs_since_releases += 1;
        self.bytes_since_releases += need;
        if self.allocs_since_releases >= RELEASES_EVERY
            || self.bytes_since_releases >= RELEASES_EVERY_BYTES
        {
            self.allocs_since_releases = 0;
            self.bytes_since_releases = 0;
            return true;
        }
        false
    }

    /// Applies the releases waiting in the ring (at most one ring's worth,
    /// so a peer that keeps pushing cannot hold this call). True if any.
    fn take_releases(&mut self, link: &mut Link) -> Result<bool> {
        if !link.ring_active(Role::Sender) {
            return Ok(false);
        }
        let mut n = 0;
        while n < self.opts.ring_capacity {
            match link.pop(Role::Sender)? {
                Some(r) => self.release(&r),
                None => break,
            }
            n += 1;
        }
        if n > 0 {
            self.retire_idle(link, self.pool.keep_warm());
        }
        Ok(n > 0)
    }

    /// Only a release that names a live lease of this receiver ends it.
    /// Anything else (twice, never sent, a reference the receiver's user
    /// made up and resolved from a transport of its own) is ignored: it can
    /// harm no one, and a receiver must not be able to make its sender
    /// poison the link through what it does with views.
    fn release(&mut self, r: &Ref) {
        let key = (r.map_id, r.map_offset);
        if !self.is_leased(r) {
            self.ignored_releases += 1;
            warn!(
                ?r,
                "RELEASE of a reference that is not leased to the receiver: ignored"
            );
            return;
        }
        if let Some(l) = self.leases.map.remove(&key) {
            self.pool.give_back(r.map_id, r.map_offset, l.len);
            self.leased_bytes -= l.len;
        }
        self.live_leases -= 1;
    }

    /// Whether `r` names a payload the receiver holds: published with
    /// exactly this length at this place of this generation.
    fn is_leased(&self, r: &Ref) -> bool {
        self.leases.held(&self.pool, r, THE_PEER)
    }

    /// The receiver is gone: every lease it held comes back, and no
    /// retirement will be acknowledged any more.
    fn peer_gone(&mut self, link: &mut Link) {
        let held: Vec<(u32, u64)> = self
            .leases
            .map
            .iter()
            .filter(|(_, l)| l.published.is_some())
            .map(|(k, _)| *k)
            .collect();
        for key in &held {
            if let Some(l) = self.leases.map.remove(key) {
                if let (Some(len), Some(generation)) = (l.published, self.pool.generation(key.0)) {
                    self.reclaimed.insert(Ref {
                        map_id: key.0,
                        map_generation: generation,
                        map_offset: key.1,
                        payload_len: len,
                    });
                }
                self.pool.give_back(key.0, key.1, l.len);
            }
        }
        self.live_leases = 0;
        self.leased_bytes = 0;
        self.lost_leases = held.len() as u64;
        self.pool.cancel_retirements();
        info!(
            reclaimed = held.len(),
            "registry: receiver gone, leases reclaimed"
        );
        self.retire_idle(link, 0);
    }

    /// Retires idle regions while more than `keep` bytes of them remain.
    /// With the peer gone they are closed at once; otherwise a RETIRE is
    /// sent and the region is closed when the acknowledgement arrives.
    fn retire_idle(&mut self, link: &mut Link, keep: u64) {
        let gone = link.is_gone();
        if self.opts.vox_compat && !gone {
            return;
        }
        for (map_id, map_generation, mapping_length) in self.pool.idle_beyond(keep) {
            if gone {
                self.pool.forget(map_id);
                continue;
            }
            let retire = Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            };
            if !link.try_send_ext(&retire) {
                // Retried by a later call.
                break;
            }
            self.pool.mark_retiring(map_id);
            debug!(map_id, map_generation, "RETIRE sent");
        }
    }

    /// In vox compatibility, where no RETIRE can be said: closes every
    /// idle region to make room for a payload they are in the way of. A
    /// vox receiver is not told and keeps its own mapping (vox never
    /// unmaps); a region's map_id comes back with the next generation, which
    /// a vox receiver keys apart from the old one.
    fn drop_idle(&mut self) {
        for (map_id, map_generation, _) in self.pool.idle_beyond(0) {
            debug!(
                map_id,
                map_generation, "vox compatibility: idle region closed to make room"
            );
            self.pool.forget(map_id);
        }
    }

    fn lease_mut(&mut self, a: &Allocation) -> Result<&mut Lease> {
        self.leases.unpublished(&self.pool, a)
    }

    /// Hands out `need` bytes from a region that has them.
    fn take(&mut self, need: u64) -> Option<Allocation> {
        let a = self.leases.take(&mut self.pool, need)?;
        self.allocations += 1;
        Some(a)
    }

    /// Checks a publish request without changing anything.
    fn check_publish(&mut self, a: &Allocation, len: u64) -> Result<Ref> {
        let lease = self.lease_mut(a)?;
        lease::reference(lease, a, len)
    }

    /// Marks the lease of `a` published as `r` (which `check_publish`
    /// returned for it) and gives its unused tail back.
    fn mark_published(&mut self, a: &Allocation, r: &Ref) -> Result<()> {
        let lease = self.leases.unpublished(&self.pool, a)?;
        let held = lease::mark_published(lease, r, THE_PEER);
        self.note_published(held, r);
        Ok(())
    }

    /// Publishes `len` bytes of `a` through `push` (the ring), with one
    /// look-up of the lease: the lease is marked published only if `push`
    /// took the reference (`Ok(false)`: it did not, nothing changed).
    fn publish_via(
        &mut self,
        a: &Allocation,
        len: u64,
        push: impl FnOnce(&Ref) -> Result<bool>,
    ) -> Result<bool> {
        let lease = self.leases.unpublished(&self.pool, a)?;
        let r = lease::reference(lease, a, len)?;
        fence(Ordering::Release);
        if !push(&r)? {
            return Ok(false);
        }
        let tail = lease::mark_published(lease, &r, THE_PEER);
        self.note_published(tail, &r);
        Ok(true)
    }

    /// Counts a payload published, its lease holding `held` bytes; gives
    /// back the unused `tail` after them.
    fn note_published(&mut self, (held, tail): (u64, u64), r: &Ref) {
        if tail > 0 {
            self.pool.give_back(r.map_id, r.map_offset + held, tail);
        }
        self.live_leases += 1;
        self.leased_bytes += held;
        self.allocations -= 1;
        self.payloads_published += 1;
        self.payload_bytes_published += r.payload_len as u64;
    }
}

impl Registry {
    /// Creates a registry over `chan`, which it owns from now on (also
    /// when this fails: it is then closed).
    pub fn new(chan: Channel, opts: RegistryOptions) -> Result<Registry> {
        Ok(Self::prepare(opts)?.start(chan))
    }

    /// Checks the options and makes what the registry needs besides a
    /// socket; `start` then cannot fail.
    pub fn prepare(opts: RegistryOptions) -> Result<Unstarted<RegistryOptions>> {
        Unstarted::new(opts.checked()?)
    }

    /// A registry over a started channel state (one-way or duplex).
    pub(crate) fn from_hub(hub: Arc<Hub<Conn>>, opts: RegistryOptions) -> Registry {
        Registry { hub, opts }
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// The channel fd, for the caller's own poll/epoll loop.
    pub fn fd(&self) -> i32 {
        self.hub.fd()
    }

    /// Applies what the receiver sent, without waiting, waking the other
    /// waiters when that changed anything: the releases in the ring, then
    /// the socket (`full`: read it; otherwise only if something may wait
    /// there, which on the ring path is rarely: no system call).
    fn pump(&self, g: &mut Guard<'_, Conn>, full: bool) -> Result<bool> {
        self.pump_with(g, full, true)
    }

    /// `pump`, taking the ring's releases only if `releases` says so.
    fn pump_with(&self, g: &mut Guard<'_, Conn>, full: bool, releases: bool) -> Result<bool> {
        let Conn { link, tx: side, rx } = &mut g.s;
        let mut changed = releases && side.take_releases(link)?;
        let roles = link.roles();
        let mut both = Both::new(roles, side, rx);
        let read = if full {
            link.pump(&mut both)?
        } else {
            link.pump_if_due(&mut both)?
        }
        .changed;
        changed |= read;
        // On a duplex channel, what the receiving side could not send yet
        // (a full socket or ring, HELLO not yet read) goes with this call
        // too: either handle's calls keep the channel moving. So do the
        // releases of a receiving side whose attachments were freed, and
        // the hang-up a send of the receiving side found.
        if roles.recv {
            if rx.is_closed() {
                rx.release_ring(link);
            } else if rx.has_pending() {
                rx.flush(link);
            }
            if !read && rx.found_peer_gone() && link.mark_gone() {
                Both::new(roles, side, rx).gone(link);
                changed = true;
            }
        }
        if changed {
            self.hub.notify(g);
        }
        Ok(changed)
    }

    /// Waits for the receiver until `deadline`: on the ring path first
    /// spins (lock released) for up to `spin_us` from the first call with
    /// the same `spin`, then announces sleep in the segment (`for_room`:
    /// waiting for room in the reference ring, otherwise for releases)
    /// and sleeps. Returns whether it slept (the socket should be read).
    fn wait<'a>(
        &'a self,
        mut g: Guard<'a, Conn>,
        deadline: Deadline,
        spin: &mut Spin,
        for_room: bool,
    ) -> Result<(Guard<'a, Conn>, bool)> {
        if g.s.link.ring_active(Role::Sender) && spin.spinning(self.opts.spin_us, deadline) {
            drop(g);
            spin.pause();
            return Ok((self.hub.lock(), false));
        }
        let sleep = if for_room {
            g.s.link.prepare_wait_for_room(Role::Sender)?
        } else {
            g.s.link.prepare_sleep(Role::Sender)?
        };
        if !sleep {
            return Ok((g, false));
        }
        // An unanswered HELLO (the socket was full) is tried again soon:
        // the receiver sends nothing until it has it.
        let deadline = if g.s.link.owes_hello() {
            deadline.at_most_ms(10)
        } else {
            deadline
        };
        // While the receiving side of a duplex channel has a full queue,
        // nothing is read from the socket: a readable one must not end
        // the sleep (only a change of state, or the deadline).
        let socket = !g.s.link.roles().recv || g.s.rx.reads();
        Ok((self.hub.wait_on(g, deadline, socket)?, true))
    }

    /// Sends one message, waiting up to `deadline` for room in the channel
    /// while applying whatever the receiver sends meanwhile.
    fn send_blocking(
        st: &mut Conn,
        bytes: &[u8],
        fd: Option<i32>,
        with_hello: bool,
        deadline: Deadline,
    ) -> Result<()> {
        let Conn { link, tx, rx } = st;
        let mut both = Both::new(link.roles(), tx, rx);
        let drain = |l: &mut Link| l.pump(&mut both).map(|p| p.changed);
        let r = link.send_blocking(bytes, fd, with_hello, deadline, drain);
        Self::sent(st, r)
    }

    /// Makes the ring segment and sends it, as `send_blocking` sends.
    fn start_ring(st: &mut Conn, deadline: Deadline) -> Result<()> {
        let Conn { link, tx, rx } = st;
        let mut both = Both::new(link.roles(), tx, rx);
        let r = link.start_ring(deadline, |l| l.pump(&mut both).map(|p| p.changed));
        Self::sent(st, r)
    }

    /// After a send: one that found the receiver gone (`EPIPE`) applies
    /// what the receiver sent before it went (releases are still queued),
    /// then reclaims the rest. Returns `r`.
    fn sent(st: &mut Conn, r: Result<()>) -> Result<()> {
        let Conn { link, tx, rx } = st;
        let mut both = Both::new(link.roles(), tx, rx);
        if let Err(e) = &r
            && e.status == Status::PeerGone
        {
            while !link.is_gone() {
                match link.pump(&mut both) {
                    Ok(p) if p.changed => {}
                    _ => break,
                }
            }
            // A datagram peer shows no hang-up to read.
            if link.mark_gone() {
                both.gone(link);
            }
        }
        r
    }

    /// Allocates `len` bytes of payload space, waiting up to `timeout_ms`
    /// when the budget is exhausted.
    pub fn alloc(&self, len: u64, timeout_ms: i64) -> Result<Allocation> {
        check_alloc_len(len)?;
        let mut deadline = LazyDeadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        let (need, region_len) = g.s.tx.pool.sizes_for(len)?;
        let mut spin = Spin::default();
        let mut slept = false;
        // The ring's releases are taken in batches (`releases_due`), or at
        // once when space runs short: looking at the ring costs a cache miss
        // that a small payload's path does not need while there is room.
        let mut eager = false;
        let mut looks = 0;
        loop {
            g.s.link.check_usable()?;
            let releases = eager || slept || g.s.tx.releases_due(need);
            self.pump_with(&mut g, slept, releases)?;
            g.s.link.check_usable()?;
            let (live, leased) = (g.s.tx.live_leases, g.s.tx.leased_bytes);
            let limit = self.opts.max_in_flight_bytes;
            let queue_full = limit > 0 && live > 0 && leased + need > limit;
            if queue_full && !eager {
                eager = true;
                continue;
            }
            if queue_full {
                if deadline.get().expired() && self.arm(&mut g, false, &mut looks)? {
                    return Err(not_yet(
                        Status::NoSpace,
                        timeout_ms,
                        "this payload would go over max_in_flight_bytes, and none in flight was released yet",
                        || {
                            format!(
                                "{live} payloads ({leased} bytes) are in flight, and this one would go over max_in_flight_bytes {limit}; none was released in time"
                            )
                        },
                    ));
                }
                if deadline.get().expired() {
                    continue;
                }
                (g, slept) = self.wait(g, deadline.get(), &mut spin, false)?;
                continue;
            }
            if let Some(a) = g.s.tx.take(need) {
                return Ok(a);
            }
            if !eager {
                eager = true;
                continue;
            }
            if g.s.tx.pool.can_grow(region_len) {
                let r = self.new_region(&mut g.s, region_len, need);
                // Sending the ATTACH may have applied releases that other
                // threads are waiting for.
                self.hub.notify(&g);
                return r;
            }
            // Idle regions too small for this payload may be in the way.
            if g.s.tx.pool.fits_without_idle(region_len) {
                let Conn { link, tx: side, .. } = &mut g.s;
                if self.opts.vox_compat {
                    side.drop_idle();
                    continue;
                }
                side.retire_idle(link, 0);
            }
            if deadline.get().expired() && self.arm(&mut g, false, &mut looks)? {
                let side = &g.s.tx;
                return Err(not_yet(
                    Status::NoSpace,
                    timeout_ms,
                    "the budget is exhausted, and nothing was released yet",
                    || {
                        format!(
                            "budget of {} bytes exhausted ({} bytes in {} regions, {} live leases); nothing was released in time",
                            self.opts.budget,
                            side.pool.total_bytes(),
                            side.pool.regions(),
                            side.live_leases
                        )
                    },
                ));
            }
            if deadline.get().expired() {
                continue;
            }
            (g, slept) = self.wait(g, deadline.get(), &mut spin, false)?;
        }
    }

    /// Creates a region, announces it (ATTACH with its fd) and takes the
    /// allocation from it.
    fn new_region(&self, st: &mut Conn, len: u64, need: u64) -> Result<Allocation> {
        let (map_id, map_generation, fd) = st.tx.pool.create(len)?;
        let attach = Attach {
            map_id,
            map_generation,
            mapping_length: len,
        }
        .encode();
        let deadline = Deadline::after_ms(self.opts.send_timeout_ms);
        if let Err(e) = Self::send_blocking(st, &attach, Some(fd), false, deadline) {
            st.tx.pool.discard(map_id);
            return Err(e);
        }
        debug!(map_id, map_generation, "ATTACH sent");
        Ok(st
            .tx
            .take(need)
            .expect("a fresh region holds the allocation"))
    }

    /// Publishes the first `len` bytes of `a` and returns the reference to
    /// carry over a transport of the caller's own. The payload writes are
    /// ordered before the reference by a release fence.
    pub fn publish(&self, a: &Allocation, len: u64) -> Result<Ref> {
        let mut g = self.hub.lock();
        self.pump(&mut g, false)?;
        g.s.link.check_usable()?;
        let side = &mut g.s.tx;
        let r = side.check_publish(a, len)?;
        side.mark_published(a, &r)?;
        fence(Ordering::Release);
        Ok(r)
    }

    /// Publishes the first `len` bytes of `a` and sends the reference over
    /// the channel, waiting up to `timeout_ms` for the receiver's HELLO and
    /// for room in the channel: 0 does not wait, a negative timeout waits
    /// forever (as everywhere), and `TIMEOUT_CONFIGURED` waits the
    /// configured `send_timeout_ms`. On failure the allocation is still the
    /// caller's, to retry or abort.
    pub fn send(&self, a: &Allocation, len: u64, timeout_ms: i64) -> Result<()> {
        if self.opts.vox_compat {
            return Err(Error::new(
                Status::Unsupported,
                "a vox receiver takes references only over its own transport: use publish",
            ));
        }
        let mut deadline = LazyDeadline::after_ms(if timeout_ms == TIMEOUT_CONFIGURED {
            self.opts.send_timeout_ms
        } else {
            timeout_ms
        });
        let mut g = self.hub.lock();
        // Argument errors come before any waiting.
        let mut r = g.s.tx.check_publish(a, len)?;
        loop {
            // Once the receiver has said HELLO there is nothing to read
            // first: alloc applied the releases, and a receiver that has
            // gone shows as EPIPE on the send itself. This keeps the hot
            // path to one system call.
            if !g.s.link.peer_said_hello() {
                self.pump(&mut g, true)?;
            }
            g.s.link.check_usable()?;
            if g.s.link.peer_said_hello() {
                break;
            }
            if deadline.get().expired() {
                return Err(Error::new(
                    Status::Timeout,
                    "the receiver has not said HELLO yet",
                ));
            }
            g = self.hub.wait(g, deadline.get())?;
            // Another thread may have published or aborted it meanwhile.
            r = g.s.tx.check_publish(a, len)?;
        }
        if !g.s.link.ring_active(Role::Sender) {
            let started = Self::start_ring(&mut g.s, deadline.get());
            // Threads that went to sleep before there was a segment
            // announced nothing in it: they look again, and announce it now
            // (and what the wait for room to send applied may be theirs).
            self.hub.notify(&g);
            started?;
        }
        if g.s.link.ring_active(Role::Sender) {
            return self.push_ref(g, a, len, deadline);
        }
        let r = Self::send_ref(&mut g.s, a, &r, deadline.get());
        // Releases applied while waiting for room in the channel may have
        // freed space that other threads are waiting for.
        self.hub.notify(&g);
        r
    }

    /// The ring path of `send`: pushes the reference, waiting up to
    /// `deadline` for room in the ring (the receiver has not taken the
    /// ring's capacity of references yet). No system call unless the
    /// receiver sleeps or the ring is full.
    fn push_ref<'a>(
        &'a self,
        mut g: Guard<'a, Conn>,
        a: &Allocation,
        len: u64,
        mut deadline: LazyDeadline,
    ) -> Result<()> {
        let mut spin = Spin::default();
        let mut looks = 0;
        loop {
            // Checked again after each wait: another thread may have
            // published or aborted it meanwhile.
            let Conn { link, tx: side, .. } = &mut g.s;
            if side.publish_via(a, len, |r| link.push(Role::Sender, r))? {
                return Ok(());
            }
            if deadline.get().expired() && !self.arm(&mut g, true, &mut looks)? {
                self.pump(&mut g, false)?;
                continue;
            }
            if deadline.get().expired() {
                return Err(Error::new(
                    Status::Timeout,
                    format!(
                        "the receiver has not taken the last {} references (the ring is full)",
                        self.opts.ring_capacity
                    ),
                ));
            }
            let slept;
            (g, slept) = self.wait(g, deadline.get(), &mut spin, true)?;
            self.pump(&mut g, slept)?;
            g.s.link.check_usable()?;
        }
    }

    /// The part of `send` after the HELLO exchange: publishes and sends the
    /// reference `r` (which `check_publish` returned for `a` under this
    /// lock); on failure the allocation is still the caller's.
    fn send_ref(st: &mut Conn, a: &Allocation, r: &Ref, deadline: Deadline) -> Result<()> {
        fence(Ordering::Release);
        // The lease is marked published only once the REF is out: if the
        // send fails (also when it finds the receiver gone, which reclaims
        // every published lease) the allocation is still the caller's.
        Self::send_blocking(st, &Ext::Ref(*r).encode(), None, true, deadline)?;
        // Nothing the drain above applied can touch an unpublished lease.
        st.tx.mark_published(a, r)
    }

    /// Gives back an allocation that was never published.
    pub fn abort(&self, a: &Allocation) -> Result<()> {
        let mut g = self.hub.lock();
        let Conn { link, tx: side, .. } = &mut g.s;
        side.lease_mut(a)?;
        if let Some(l) = side.leases.map.remove(&(a.map_id, a.map_offset)) {
            side.pool.give_back(a.map_id, a.map_offset, l.len);
        }
        side.allocations -= 1;
        side.retire_idle(link, side.pool.keep_warm());
        self.hub.notify(&g);
        Ok(())
    }

    /// Applies whatever the receiver sent, without waiting: releases,
    /// acknowledgements, hang-up. For callers driving their own event loop.
    pub fn poll(&self) -> Result<()> {
        let mut g = self.hub.lock();
        // A caller watching the fd calls when it is readable: read it (a
        // hang-up changes no count in the segment). So does a poll that
        // found no release in the ring: it has time for a system call.
        let changed = self.pump(&mut g, self.hub.fd_watched())?;
        if !changed && !self.hub.fd_watched() {
            self.pump(&mut g, true)?;
        }
        if !self.arm(&mut g, false, &mut 0)? {
            // Releases came meanwhile: take them now.
            self.pump(&mut g, false)?;
        }
        g.s.link.check_usable()?;
        // Retirements that found the channel full are retried here.
        let Conn { link, tx: side, .. } = &mut g.s;
        side.retire_idle(link, side.pool.keep_warm());
        Ok(())
    }

    /// Ends the lease of the payload `r` names, as the receiver's RELEASE
    /// would: for a vox receiver (vox compatibility), whose releases travel
    /// over the caller's own transport, or not at all. Its space is reused.
    /// Only in vox compatibility: a voxshm receiver releases over the
    /// channel itself. Release each payload once: a reference whose space
    /// now holds another payload of the same length at the same place
    /// names that one (a vox receiver's references carry no more). After
    /// the receiver went away, `PEER_GONE` (the lease was reclaimed).
    pub fn release(&self, r: &Ref) -> Result<()> {
        if !self.opts.vox_compat {
            return Err(Error::new(
                Status::Unsupported,
                "a voxshm receiver releases its payloads itself; voxshm_registry_release is for a vox receiver (VOXSHM_REGISTRY_VOX_COMPAT)",
            ));
        }
        let mut g = self.hub.lock();
        self.pump(&mut g, false)?;
        let Conn { link, tx: side, .. } = &mut g.s;
        link.check_poisoned()?;
        if side.reclaimed.contains(r) {
            return Err(Error::new(
                Status::PeerGone,
                format!("the receiver went away holding {r}; it was reclaimed"),
            ));
        }
        if !side.is_leased(r) {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "{r} is not a payload this registry published and still holds (released already, or never published)"
                ),
            ));
        }
        side.release(r);
        side.retire_idle(link, side.pool.keep_warm());
        self.hub.notify(&g);
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
        let mut spin = Spin::default();
        let mut slept = false;
        let mut looks = 0;
        loop {
            let read = slept || (deadline.expired() && self.hub.fd_watched());
            self.pump(&mut g, read)?;
            let Conn { link, tx: side, .. } = &mut g.s;
            side.retire_idle(link, side.pool.keep_warm());
            if side.live_leases == 0 && side.pool.retiring() == 0 {
                if side.lost_leases > 0 {
                    return Err(Error::new(
                        Status::PeerGone,
                        format!(
                            "the receiver went away holding {} leases; they were reclaimed",
                            side.lost_leases
                        ),
                    ));
                }
                return Ok(());
            }
            link.check_usable()?;
            if deadline.expired() && !self.arm(&mut g, false, &mut looks)? {
                continue;
            }
            if deadline.expired() {
                let side = &g.s.tx;
                let retiring = side.pool.retiring();
                return Err(if side.live_leases > 0 {
                    not_yet(
                        Status::Timeout,
                        timeout_ms,
                        "payloads are not released yet",
                        || {
                            format!(
                                "{} payloads are not released yet (and {retiring} retired regions not acknowledged)",
                                side.live_leases
                            )
                        },
                    )
                } else {
                    not_yet(
                        Status::Timeout,
                        timeout_ms,
                        "every payload was released, but the receiver has not acknowledged the retired regions yet (it does when it next calls voxshm)",
                        || {
                            format!(
                                "every payload was released, but the receiver has not acknowledged {retiring} retired regions yet (it does when it next calls voxshm)"
                            )
                        },
                    )
                });
            }
            (g, slept) = self.wait(g, deadline, &mut spin, false)?;
        }
    }

    /// A non-blocking call is about to say "nothing yet". If the caller
    /// watches the fd, ask the receiver (through the segment) to wake it
    /// with its next release (`room`: when there is room in the reference
    /// ring), so the fd becomes readable then. False: what the call waits
    /// for came meanwhile, look again (at most a few times: a receiver
    /// that keeps pushing cannot hold the call).
    fn arm(&self, g: &mut Guard<'_, Conn>, room: bool, looks: &mut u32) -> Result<bool> {
        if !self.hub.fd_watched() || *looks >= 16 {
            return Ok(true);
        }
        *looks += 1;
        let nothing = if room {
            g.s.link.prepare_wait_for_room(Role::Sender)?
        } else {
            g.s.link.prepare_sleep(Role::Sender)?
        };
        Ok(nothing)
    }

    /// Waits up to `timeout_ms` until the payload `r` names is released by
    /// the receiver (`Ok`), and says so at once if it already was (or this
    /// registry never sent it). `PEER_GONE`: the receiver went away holding
    /// it (its space was reclaimed, not released). If its space was
    /// released and already taken again by a payload of the same length at
    /// the same place, this waits for that one too: never too early.
    pub fn wait_released(&self, r: &Ref, timeout_ms: i64) -> Result<()> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        let mut spin = Spin::default();
        let mut slept = false;
        let mut looks = 0;
        loop {
            self.pump(&mut g, slept)?;
            let side = &g.s.tx;
            if side.reclaimed.contains(r) {
                return Err(Error::new(
                    Status::PeerGone,
                    format!("the receiver went away holding {r}; it was reclaimed"),
                ));
            }
            if !side.is_leased(r) {
                return Ok(());
            }
            g.s.link.check_poisoned()?;
            if deadline.expired() && !self.arm(&mut g, false, &mut looks)? {
                continue;
            }
            if deadline.expired() {
                return Err(not_yet(
                    Status::Timeout,
                    timeout_ms,
                    "the payload is not released yet",
                    || format!("{r} is not released yet"),
                ));
            }
            (g, slept) = self.wait(g, deadline, &mut spin, false)?;
        }
    }

    pub fn stats(&self) -> RegistryStats {
        let g = self.hub.lock();
        let (side, c) = (&g.s.tx, g.s.link.counters());
        RegistryStats {
            regions: side.pool.regions() as u64,
            mapped_bytes: side.pool.total_bytes(),
            live_leases: side.live_leases,
            allocations: side.allocations,
            // One fd per region, the channel, and the wake-up eventfd.
            open_fds: side.pool.regions() as u64 + 2,
            messages_sent: c.messages_sent,
            bytes_sent: c.bytes_sent,
            messages_received: c.messages_received,
            bytes_received: c.bytes_received,
            regions_created: side.pool.created(),
            regions_retired: side.pool.retired(),
            payloads_published: side.payloads_published,
            payload_bytes_published: side.payload_bytes_published,
            minor_faults: if self.opts.stats_faults {
                sys::minor_faults()
            } else {
                0
            },
            ignored_releases: side.ignored_releases,
            ring: g.s.link.ring_active(Role::Sender),
            wakeups_sent: g.s.link.wakes_sent(),
        }
    }

    /// True once the receiver has hung up.
    pub fn peer_is_gone(&self) -> bool {
        let mut g = self.hub.lock();
        let _ = self.pump(&mut g, true);
        g.s.link.is_gone()
    }
}

/// An allocation's length must be 1 ..= 4 GiB - 1.
pub(crate) fn check_alloc_len(len: u64) -> Result<()> {
    if len == 0 {
        return Err(Error::new(Status::ZeroLength, "alloc of 0 bytes"));
    }
    if len > u32::MAX as u64 {
        return Err(Error::new(
            Status::TooLarge,
            format!("alloc of {len} bytes: a payload is at most 4 GiB - 1"),
        ));
    }
    Ok(())
}

/// The error of a wait that ended without what it waited for: a
/// non-blocking call (timeout 0), which an event loop makes often, gets the
/// fixed `brief` message and allocates nothing; a call that waited gets the
/// detailed one.
fn not_yet(
    status: Status,
    timeout_ms: i64,
    brief: &'static str,
    detail: impl FnOnce() -> String,
) -> Error {
    if timeout_ms == 0 {
        Error::new(status, brief)
    } else {
        Error::new(status, detail())
    }
}

/// The ring capacities a registry with `opts` offers, if it offers the ring.
pub(crate) fn ring_capacities(opts: &RegistryOptions) -> Option<Capacities> {
    (opts.ring && !opts.vox_compat).then_some(Capacities {
        refs: opts.ring_capacity,
        releases: opts.ring_capacity,
    })
}

/// The sender's side of a channel, as a registry with `opts` starts it.
pub(crate) fn new_side(opts: &RegistryOptions) -> Side {
    let pool = Pool::new(PoolOptions {
        region_size: opts.region_size,
        budget: opts.budget,
        keep_warm: opts.keep_warm,
        spec: RegionSpec {
            future_write: !opts.vox_compat,
            force_tempfile: opts.force_tempfile,
        },
    });
    Side {
        opts: opts.clone(),
        pool,
        leases: Leases::new(),
        allocations: 0,
        live_leases: 0,
        leased_bytes: 0,
        lost_leases: 0,
        reclaimed: Default::default(),
        ignored_releases: 0,
        allocs_since_releases: 0,
        bytes_since_releases: 0,
        payloads_published: 0,
        payload_bytes_published: 0,
    }
}

impl Unstarted<RegistryOptions> {
    /// Takes the socket and starts the registry; cannot fail.
    pub fn start(self, chan: Channel) -> Registry {
        let opts = self.opts;
        let link = Link::new(
            chan,
            Roles::SENDER,
            ring_capacities(&opts),
            !opts.vox_compat,
        );
        let fd = link.fd();
        debug!(fd, ?opts, "registry created");
        let conn = Conn {
            link,
            tx: new_side(&opts),
            // Unused: a registry's link takes no message for a receiver.
            rx: crate::attachments::new_side(&Default::default()),
        };
        Registry::from_hub(Arc::new(Hub::new(self.wake, fd, conn)), opts)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let g = self.hub.lock();
        debug!(regions = g.s.tx.pool.regions(), "registry freed");
    }
}

// SAFETY: the raw pointer in an Allocation is an address inside a shared
// mapping; the allocation is plain data describing it, and the registry
// checks every use against its own lease table.
unsafe impl Send for Allocation {}
// SAFETY: as above; an Allocation has no interior mutability.
unsafe impl Sync for Allocation {}
