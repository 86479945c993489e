//! One sender, many receivers: a pool of regions shared by N links. A
//! payload is written once and delivered to every chosen receiver; its
//! space is reused when the last of them released it or went away.
//!
//! Each receiver has its own link (socket, HELLO, ring segment), its own
//! limit of payloads in flight and a policy for when it is full (wait, or
//! skip it for this payload). A region's ATTACH goes to a receiver right
//! before the first reference into it that receiver gets, so one that joins
//! late gets the regions it needs and no others. A region retires once
//! every receiver that has it acknowledged. A receiver that dies, hangs or
//! breaks the protocol loses its own leases and nothing else: a broken link
//! is cut off (its socket leaves the epoll set) and waits for
//! `remove_receiver`.

use std::sync::atomic::{Ordering, fence};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::channel::Channel;
use crate::error::{Error, Result, Status};
use crate::hash::FastMap;
use crate::hub::{Guard, Hub, Spin};
use crate::lease::{self, Leases};
use crate::link::{Endpoint, Incoming, Link, Role, Roles};
use crate::pool::{Pool, PoolOptions};
use crate::region::RegionSpec;
use crate::registry::{Allocation, RegistryOptions};
use crate::ring::Capacities;
use crate::sys::{Deadline, Epoll, LazyDeadline, Wake};
use crate::wire::{Attach, Ext, Ref};

/// Most receivers one fan-out registry feeds at once.
/// cbindgen:ignore
pub const MAX_RECEIVERS: usize = 64;

/// What a send does with a receiver that cannot take a payload now (its
/// limit of payloads in flight is reached, or its ring is full). A
/// receiver whose HELLO was not read yet is not sent to at all: a
/// connection that never says it delays nobody.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The send waits for it, up to its timeout.
    Wait,
    /// It misses this payload (counted); the others are not delayed.
    Skip,
}

/// One receiver's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceiverOptions {
    /// Most payloads it may hold at once (0: no limit but the budget).
    pub max_in_flight: u32,
    pub policy: Policy,
}

impl Default for ReceiverOptions {
    fn default() -> Self {
        ReceiverOptions {
            max_in_flight: 0,
            policy: Policy::Wait,
        }
    }
}

/// Whom a send is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every receiver that is connected.
    All,
    /// One receiver, by its id.
    One(u32),
}

/// Counters of one receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub id: u32,
    /// Payloads it holds now.
    pub in_flight: u64,
    /// Payloads delivered to it.
    pub delivered: u64,
    /// Payloads it missed (skip policy).
    pub skipped: u64,
    /// Payloads it released.
    pub released: u64,
    /// Bytes of the payloads delivered to it.
    pub bytes_delivered: u64,
    /// Payloads it held when it went away (reclaimed).
    pub reclaimed: u64,
    /// Releases of what it did not hold (ignored).
    pub ignored_releases: u64,
    /// It said HELLO: sends reach it.
    pub ready: bool,
    /// It hung up or broke the protocol: nothing reaches it any more.
    pub gone: bool,
    /// References and releases go through its ring segment.
    pub ring: bool,
}

/// Counters of a fan-out registry, over all receivers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    pub receivers: u64,
    pub receivers_gone: u64,
    pub regions: u64,
    pub mapped_bytes: u64,
    /// Payloads some receiver still holds.
    pub live_payloads: u64,
    /// Allocations not yet sent or aborted.
    pub allocations: u64,
    pub open_fds: u64,
    pub payloads_published: u64,
    pub payload_bytes_published: u64,
    /// Deliveries to receivers (a payload sent to 3 counts 3).
    pub deliveries: u64,
    pub skips: u64,
    pub regions_created: u64,
    pub regions_retired: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
}

/// Which receivers have a region (its current generation).
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    /// Got its ATTACH.
    attached: u64,
    /// Retiring: still to be told (the socket was full).
    unsent: u64,
    /// Retiring: still to acknowledge.
    acks: u64,
    len: u64,
    /// When it started retiring.
    since: Option<Instant>,
}

#[derive(Debug, Default)]
struct PeerStats {
    in_flight: u64,
    delivered: u64,
    skipped: u64,
    released: u64,
    bytes: u64,
    reclaimed: u64,
    ignored: u64,
}

struct Peer {
    id: u32,
    /// Its bit in `Lease::holders` and `Seen`.
    slot: u32,
    link: Link,
    opts: ReceiverOptions,
    st: PeerStats,
    /// Gone or poisoned: its leases were reclaimed, its socket left the
    /// epoll set; removed by `remove_receiver`.
    dead: bool,
    /// Removed while connected: it was told (its channel shut for
    /// writing), gets nothing more, and keeps what it holds until it closes
    /// its end (or `send_timeout_ms`, at least 1 s, passed); then it is
    /// dropped.
    leaving: Option<Instant>,
}

impl Peer {
    fn bit(&self) -> u64 {
        1 << self.slot
    }

    /// Reads what it sent (`full`: the socket, otherwise only if something
    /// may be there) and applies it to `core`.
    fn pump(&mut self, core: &mut Core, full: bool) -> Result<crate::link::Pumped> {
        let Peer {
            link,
            st,
            slot,
            leaving,
            ..
        } = self;
        let mut end = PeerEnd {
            core,
            st,
            slot: *slot,
            leaving: leaving.is_some(),
        };
        if full {
            link.pump(&mut end)
        } else {
            link.pump_if_due(&mut end)
        }
    }

    /// Sends reach it (it may still have to say HELLO).
    fn current(&self) -> bool {
        !self.dead && self.leaving.is_none()
    }
}

/// Everything but the receivers.
struct Core {
    opts: RegistryOptions,
    pool: Pool,
    /// A lease's `holders` are receiver slots.
    leases: Leases,
    regions: FastMap<u32, Seen>,
    allocations: u64,
    live: u64,
    leased_bytes: u64,
    published: u64,
    published_bytes: u64,
    /// Counters of receivers no longer listed, so totals never go back.
    former: Former,
}

#[derive(Debug, Default)]
struct Former {
    deliveries: u64,
    skips: u64,
    messages_sent: u64,
    messages_received: u64,
}

impl Former {
    /// Keeps the counters of a receiver that is about to be dropped.
    fn add(&mut self, p: &Peer) {
        let c = p.link.counters();
        self.deliveries += p.st.delivered;
        self.skips += p.st.skipped;
        self.messages_sent += c.messages_sent;
        self.messages_received += c.messages_received;
    }
}

struct State {
    core: Core,
    peers: Vec<Peer>,
    next_id: u32,
    epoll: Epoll,
}

/// A sender with many receivers. `Send + Sync`.
pub struct Fanout {
    hub: Hub<State>,
    opts: RegistryOptions,
}

/// One receiver's messages, applied to the core.
struct PeerEnd<'a> {
    core: &'a mut Core,
    st: &'a mut PeerStats,
    slot: u32,
    /// Removed: it was dropped from every retirement, so its late
    /// RETIRE_ACKs (for RETIREs it read after removal) are expected.
    leaving: bool,
}

impl Endpoint for PeerEnd<'_> {
    fn apply(&mut self, link: &mut Link, m: Incoming) -> Result<()> {
        match m {
            Incoming::Ext(Ext::Release(refs)) => {
                for r in refs {
                    self.core.release(&r, self.slot, self.st);
                }
                Ok(())
            }
            Incoming::Ext(Ext::RetireAck {
                map_id,
                map_generation,
                ..
            }) if self.leaving => {
                let _ = (map_id, map_generation);
                Ok(())
            }
            Incoming::Ext(Ext::RetireAck {
                map_id,
                map_generation,
                ..
            }) => self.core.ack(map_id, map_generation, self.slot),
            Incoming::Gone => {
                // Releases it pushed before it went are releases.
                take_ring_releases(link, self.core, self.st, self.slot);
                Ok(())
            }
            other => Err(Error::new(
                Status::Protocol,
                format!("receiver sent a sender-only message {other:?}"),
            )),
        }
    }
}

/// Applies the releases waiting in a receiver's ring (a ring's worth at
/// most). True if any; a broken ring poisons the link.
fn take_ring_releases(link: &mut Link, core: &mut Core, st: &mut PeerStats, slot: u32) -> bool {
    let mut n = 0;
    while n < link.ring_capacity(Role::Sender) {
        match link.pop(Role::Sender) {
            Ok(Some(r)) => core.release(&r, slot, st),
            _ => break,
        }
        n += 1;
    }
    n > 0
}

impl Core {
    fn take(&mut self, need: u64) -> Option<Allocation> {
        let a = self.leases.take(&mut self.pool, need)?;
        self.allocations += 1;
        Some(a)
    }

    /// The reference publishing `len` bytes of the unpublished allocation
    /// `a` would make.
    fn check(&mut self, a: &Allocation, len: u64) -> Result<Ref> {
        let lease = self.leases.unpublished(&self.pool, a)?;
        lease::reference(lease, a, len)
    }

    /// Marks the lease of `r` published and held by `holders`, giving back
    /// its unused tail (and all of it when nobody holds it).
    fn publish(&mut self, r: &Ref, holders: u64) {
        let key = (r.map_id, r.map_offset);
        let Some(lease) = self.leases.map.get_mut(&key) else {
            return;
        };
        self.allocations -= 1;
        self.published += 1;
        self.published_bytes += u64::from(r.payload_len);
        if holders == 0 {
            let len = lease.len;
            self.leases.map.remove(&key);
            self.pool.give_back(r.map_id, r.map_offset, len);
            return;
        }
        let (held, tail) = lease::mark_published(lease, r, holders);
        if tail > 0 {
            self.pool.give_back(r.map_id, r.map_offset + held, tail);
        }
        self.live += 1;
        self.leased_bytes += held;
    }

    /// Receiver `slot` released `r`: only a payload it holds is released
    /// (anything else is counted and ignored); the space comes back with
    /// the last holder.
    fn release(&mut self, r: &Ref, slot: u32, st: &mut PeerStats) {
        let key = (r.map_id, r.map_offset);
        let bit = 1u64 << slot;
        if !self.leases.held(&self.pool, r, bit) {
            st.ignored += 1;
            warn!(
                ?r,
                slot, "RELEASE of a payload this receiver does not hold: ignored"
            );
            return;
        }
        st.in_flight -= 1;
        st.released += 1;
        let lease = self.leases.map.get_mut(&key).expect("held");
        lease.holders &= !bit;
        if lease.holders == 0 {
            let len = lease.len;
            self.leases.map.remove(&key);
            self.pool.give_back(r.map_id, r.map_offset, len);
            self.live -= 1;
            self.leased_bytes -= len;
        }
    }

    /// Receiver `slot` is gone: what it held comes back to the others'
    /// count (the space, once nobody holds it), and no retirement waits for
    /// it.
    fn drop_receiver(&mut self, slot: u32, st: &mut PeerStats) {
        let bit = 1u64 << slot;
        let held: Vec<(u32, u64)> = self
            .leases
            .map
            .iter()
            .filter(|(_, l)| l.holders & bit != 0)
            .map(|(k, _)| *k)
            .collect();
        for key in &held {
            let lease = self.leases.map.get_mut(key).expect("listed");
            lease.holders &= !bit;
            if lease.holders == 0 {
                let len = lease.len;
                self.leases.map.remove(key);
                self.pool.give_back(key.0, key.1, len);
                self.live -= 1;
                self.leased_bytes -= len;
            }
        }
        st.reclaimed += held.len() as u64;
        st.in_flight = 0;
        self.forget_regions(slot);
    }

    /// Receiver `slot` will acknowledge nothing any more: no retirement
    /// waits for it, and no region counts as its.
    fn forget_regions(&mut self, slot: u32) {
        let bit = 1u64 << slot;
        let mut done = Vec::new();
        for (map_id, seen) in self.regions.iter_mut() {
            seen.attached &= !bit;
            seen.unsent &= !bit;
            if seen.acks & bit != 0 {
                seen.acks &= !bit;
                if seen.acks == 0 {
                    done.push(*map_id);
                }
            }
        }
        for map_id in done {
            self.forget(map_id);
        }
    }

    /// Receiver `slot` acknowledged the retirement of a region.
    fn ack(&mut self, map_id: u32, generation: u32, slot: u32) -> Result<()> {
        let bit = 1u64 << slot;
        match self.regions.get_mut(&map_id) {
            Some(s)
                if self.pool.is_retiring(map_id, generation)
                    && s.acks & bit != 0
                    && s.unsent & bit == 0 =>
            {
                s.acks &= !bit;
                if s.acks == 0 {
                    self.forget(map_id);
                }
                Ok(())
            }
            _ => Err(Error::new(
                Status::Protocol,
                format!(
                    "RETIRE_ACK for region {map_id}/{generation}, which was not retired to this receiver"
                ),
            )),
        }
    }

    fn forget(&mut self, map_id: u32) {
        self.pool.forget(map_id);
        self.regions.remove(&map_id);
    }
}

/// Cuts a receiver off: its leases come back, its socket leaves the epoll
/// set (a hung-up or hostile socket would keep it readable).
fn kill(core: &mut Core, epoll: &Epoll, p: &mut Peer) {
    if p.dead {
        return;
    }
    p.dead = true;
    epoll.remove(p.link.fd());
    core.drop_receiver(p.slot, &mut p.st);
    info!(
        receiver = p.id,
        reclaimed = p.st.reclaimed,
        "fan-out: receiver gone, its leases reclaimed"
    );
}

/// Whether `ms` (negative: never) have passed since `t`.
fn past(t: Instant, ms: i64) -> bool {
    ms >= 0 && t.elapsed() >= Duration::from_millis(ms as u64)
}

/// The shortest grace a receiver gets to acknowledge a retirement, or to
/// close its end once removed: `send_timeout_ms` may be 0 ("sends do not
/// wait"), which must not cut off a receiver that answers promptly.
const MIN_GRACE_MS: i64 = 1000;

/// How long a receiver may take to acknowledge a retirement, or to close
/// its end once removed: `send_timeout_ms`, at least `MIN_GRACE_MS`
/// (negative: for ever).
fn grace_ms(opts: &RegistryOptions) -> i64 {
    if opts.send_timeout_ms < 0 {
        -1
    } else {
        opts.send_timeout_ms.max(MIN_GRACE_MS)
    }
}

/// Cuts off every receiver that has not acknowledged a retirement within
/// `send_timeout_ms`: a region it holds on to would otherwise stay out of
/// the budget for every receiver. True if any was cut off.
fn cut_off_overdue(core: &mut Core, peers: &mut [Peer], epoll: &Epoll) -> bool {
    let ms = grace_ms(&core.opts);
    let late: u64 = core
        .regions
        .values()
        .filter(|s| s.acks != 0 && s.since.is_some_and(|t| past(t, ms)))
        .fold(0, |m, s| m | s.acks);
    let mut any = false;
    for p in peers.iter_mut().filter(|p| late & p.bit() != 0 && !p.dead) {
        warn!(
            receiver = p.id,
            "fan-out: receiver did not acknowledge a retirement in time: cut off"
        );
        kill(core, epoll, p);
        any = true;
    }
    any
}

/// Retires idle regions beyond `keep` bytes: each is closed at once if no
/// live receiver has it, otherwise told to every one that has it (now, or
/// by a later call if its socket is full) and closed on the last
/// acknowledgement.
fn retire_idle(core: &mut Core, peers: &mut [Peer], keep: u64) {
    let live: u64 = peers.iter().filter(|p| p.current()).map(|p| p.bit()).sum();
    for (map_id, _generation, len) in core.pool.idle_beyond(keep) {
        let who = core.regions.get(&map_id).map_or(0, |s| s.attached) & live;
        if who == 0 {
            core.forget(map_id);
            continue;
        }
        core.pool.mark_retiring(map_id);
        let seen = core.regions.entry(map_id).or_default();
        seen.unsent = who;
        seen.acks = who;
        seen.len = len;
        seen.since = Some(Instant::now());
    }
    let pending: Vec<(u32, Seen)> = core
        .regions
        .iter()
        .filter(|(_, s)| s.unsent != 0)
        .map(|(id, s)| (*id, *s))
        .collect();
    for (map_id, seen) in pending {
        let Some(generation) = core.pool.generation(map_id) else {
            continue;
        };
        let retire = Ext::Retire {
            map_id,
            map_generation: generation,
            mapping_length: seen.len,
        };
        let mut sent = 0;
        for p in peers.iter_mut().filter(|p| seen.unsent & p.bit() != 0) {
            if p.link.try_send_ext(&retire) {
                sent |= p.bit();
            }
        }
        if let Some(s) = core.regions.get_mut(&map_id) {
            s.unsent &= !sent;
        }
    }
}

/// Why a receiver cannot take a payload now.
#[derive(Clone, Copy, Debug)]
enum NotReady {
    Limit,
    RingFull,
    SocketFull,
}

impl Fanout {
    /// A fan-out registry with no receiver yet (add them with
    /// `add_receiver`). Vox compatibility is not available here.
    pub fn new(opts: RegistryOptions) -> Result<Fanout> {
        if opts.vox_compat {
            return Err(Error::new(
                Status::Unsupported,
                "vox compatibility is for one receiver: use a registry",
            ));
        }
        let opts = opts.checked()?;
        let epoll = Epoll::new()?;
        let wake = Wake::new()?;
        let pool = Pool::new(PoolOptions {
            region_size: opts.region_size,
            budget: opts.budget,
            keep_warm: opts.keep_warm,
            spec: RegionSpec {
                future_write: true,
                force_tempfile: opts.force_tempfile,
            },
        });
        let fd = epoll.raw();
        let state = State {
            core: Core {
                opts: opts.clone(),
                pool,
                leases: Leases::new(),
                regions: FastMap::default(),
                allocations: 0,
                live: 0,
                leased_bytes: 0,
                published: 0,
                published_bytes: 0,
                former: Former::default(),
            },
            peers: Vec::new(),
            next_id: 1,
            epoll,
        };
        debug!(?opts, "fan-out registry created");
        Ok(Fanout {
            hub: Hub::new(wake, fd, state),
            opts,
        })
    }

    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// The one fd to poll (an epoll fd over every receiver's socket):
    /// readable when a receiver sent something; then call `poll`.
    pub fn fd(&self) -> i32 {
        self.hub.fd()
    }

    /// Adds a receiver over `chan` and returns its id (never reused). Does
    /// not wait: the receiver's HELLO is read now if it is there, or by a
    /// later call, and sends reach it from then on (one that never says it
    /// gets nothing and delays nobody). On failure the channel is given
    /// back.
    pub fn add_receiver(
        &self,
        chan: Channel,
        o: ReceiverOptions,
    ) -> std::result::Result<u32, (Error, Channel)> {
        let mut g = self.hub.lock();
        // Removed receivers that closed meanwhile free their slots.
        self.pump(&mut g, true);
        let used: u64 = g.s.peers.iter().map(|p| p.bit()).sum();
        if g.s.peers.len() >= MAX_RECEIVERS {
            return Err((
                Error::new(
                    Status::ResourceExhausted,
                    format!(
                        "{MAX_RECEIVERS} receivers already (remove one, gone ones included, first)"
                    ),
                ),
                chan,
            ));
        }
        let slot = (!used).trailing_zeros();
        if let Err(e) = g.s.epoll.add(chan.raw()) {
            return Err((e, chan));
        }
        let ring = self.opts.ring.then_some(Capacities {
            refs: self.opts.ring_capacity,
            releases: self.opts.ring_capacity,
        });
        let link = Link::new(chan, Roles::SENDER, ring, true);
        let id = g.s.next_id;
        g.s.next_id += 1;
        info!(receiver = id, slot, ?o, "fan-out: receiver added");
        g.s.peers.push(Peer {
            id,
            slot,
            link,
            opts: o,
            st: PeerStats::default(),
            dead: false,
            leaving: None,
        });
        // Its HELLO may be there already.
        self.pump(&mut g, true);
        Ok(id)
    }

    /// Removes a receiver: it is told (its channel is shut for writing: it
    /// sees the sender go) and gets nothing more. What it holds stays its
    /// own until it closes its end (it may still be reading it), or until
    /// `send_timeout_ms` (at least 1 s) passed; then that space comes back.
    /// Until then it counts against `MAX_RECEIVERS`. A receiver
    /// already gone is removed at once. `VOXSHM_INVALID_ARGUMENT` for an
    /// unknown id.
    pub fn remove_receiver(&self, id: u32) -> Result<()> {
        let mut g = self.hub.lock();
        let State { core, peers, .. } = &mut g.s;
        let Some(i) = peers.iter().position(|p| p.id == id && p.leaving.is_none()) else {
            return Err(unknown(id));
        };
        let p = &mut peers[i];
        if p.dead {
            core.former.add(p);
            peers.remove(i);
        } else {
            // It is told (end of stream), and may still be reading what it
            // holds: that space stays its own until it closes its end.
            p.link.shutdown_write();
            p.leaving = Some(Instant::now());
            core.forget_regions(p.slot);
        }
        retire_idle(core, peers, core.opts.keep_warm);
        info!(receiver = id, "fan-out: receiver removed");
        self.hub.notify(&g);
        Ok(())
    }

    /// Waits up to `timeout_ms` until receiver `id` said HELLO (payloads
    /// sent from then on reach it). `VOXSHM_PEER_GONE` if it went away
    /// first, `VOXSHM_INVALID_ARGUMENT` for an unknown id.
    pub fn wait_ready(&self, id: u32, timeout_ms: i64) -> Result<()> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        loop {
            self.pump(&mut g, true);
            let p =
                g.s.peers
                    .iter()
                    .find(|p| p.id == id && p.leaving.is_none())
                    .ok_or_else(|| unknown(id))?;
            if p.dead {
                return Err(Error::new(
                    Status::PeerGone,
                    format!("receiver {id} went away before it said HELLO"),
                ));
            }
            if p.link.peer_said_hello() {
                return Ok(());
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::Timeout,
                    format!("receiver {id} has not said HELLO"),
                ));
            }
            g = match self.hub.wait(g, deadline) {
                Ok(g) => g,
                Err(_) => self.hub.lock(),
            };
        }
    }

    /// The ids of the receivers (gone ones too, until removed).
    pub fn receivers(&self) -> Vec<u32> {
        let g = self.hub.lock();
        g.s.peers
            .iter()
            .filter(|p| p.leaving.is_none())
            .map(|p| p.id)
            .collect()
    }

    /// Applies what the receivers sent (the rings' releases; the sockets
    /// when `full`, otherwise only where something may wait), cutting off
    /// receivers that went away or broke the protocol. Returns whether
    /// anything changed (and then wakes the other waiters).
    fn pump(&self, g: &mut Guard<'_, State>, full: bool) -> bool {
        let State {
            core, peers, epoll, ..
        } = &mut g.s;
        let mut changed = false;
        let mut lost = false;
        for p in peers.iter_mut().filter(|p| !p.dead) {
            changed |= take_ring_releases(&mut p.link, core, &mut p.st, p.slot);
            let r = p.pump(core, full);
            match r {
                Ok(pumped) => {
                    changed |= pumped.changed;
                    if let Some(e) = pumped.rejected {
                        warn!(receiver = p.id, error = %e, "fan-out: receiver message rejected");
                    }
                }
                Err(e) => warn!(receiver = p.id, error = %e, "fan-out: receiver cut off"),
            }
            let overstayed = p.leaving.is_some_and(|t| past(t, grace_ms(&core.opts)));
            if p.link.is_gone() || p.link.is_poisoned() || overstayed {
                kill(core, epoll, p);
                lost = true;
            }
        }
        // Receivers removed while connected are dropped once they closed
        // their end (what they held came back with `kill`).
        let before = peers.len();
        for p in peers.iter().filter(|p| p.dead && p.leaving.is_some()) {
            core.former.add(p);
        }
        peers.retain(|p| !(p.dead && p.leaving.is_some()));
        lost |= peers.len() != before;
        lost |= cut_off_overdue(core, peers, epoll);
        if changed || lost {
            retire_idle(core, peers, core.opts.keep_warm);
            self.hub.notify(g);
        }
        changed || lost
    }

    /// Waits until `deadline` for the receivers: spins first (lock
    /// released) while a ring is in use, then announces sleep in every
    /// ring (for room in those of `room`'s bits, for releases in the
    /// others) and sleeps. Returns whether it slept.
    fn wait<'a>(
        &'a self,
        mut g: Guard<'a, State>,
        deadline: Deadline,
        spin: &mut Spin,
        room: u64,
        socket_full: bool,
    ) -> (Guard<'a, State>, bool) {
        let rings =
            g.s.peers
                .iter()
                .any(|p| !p.dead && p.link.ring_active(Role::Sender));
        if rings && spin.spinning(self.opts.spin_us, deadline) {
            drop(g);
            spin.pause();
            return (self.hub.lock(), false);
        }
        if !self.announce(&mut g, room) {
            return (g, false);
        }
        // Looked at again soon: an unanswered HELLO (the socket was full);
        // a receiver's socket with no room, which the epoll set does not
        // watch; a retirement, or a removed receiver's stay, that may
        // become overdue.
        let owes = g.s.peers.iter().any(|p| !p.dead && p.link.owes_hello());
        let retiring = g.s.core.regions.values().any(|s| s.acks != 0)
            || g.s.peers.iter().any(|p| !p.dead && p.leaving.is_some());
        let deadline = if socket_full {
            deadline.at_most_ms(2)
        } else if owes {
            deadline.at_most_ms(10)
        } else if retiring {
            deadline.at_most_ms(100)
        } else {
            deadline
        };
        match self.hub.wait(g, deadline) {
            Ok(g) => (g, true),
            // poll() failed (EINTR is retried inside): look again.
            Err(_) => (self.hub.lock(), true),
        }
    }

    /// Announces sleep in every live receiver's ring; false if something
    /// came meanwhile (look again instead of sleeping).
    fn announce(&self, g: &mut Guard<'_, State>, room: u64) -> bool {
        let mut nothing = true;
        for p in g.s.peers.iter_mut().filter(|p| !p.dead) {
            let r = if room & p.bit() != 0 {
                p.link.prepare_wait_for_room(Role::Sender)
            } else {
                p.link.prepare_sleep(Role::Sender)
            };
            // A broken ring has poisoned the link: the next pump cuts it off.
            nothing &= r.unwrap_or(false);
        }
        nothing
    }

    /// Allocates `len` bytes of payload space, waiting up to `timeout_ms`
    /// when the budget (or `max_in_flight_bytes`) is exhausted.
    pub fn alloc(&self, len: u64, timeout_ms: i64) -> Result<Allocation> {
        crate::registry::check_alloc_len(len)?;
        let mut deadline = LazyDeadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        let (need, region_len) = g.s.core.pool.sizes_for(len)?;
        let mut spin = Spin::default();
        let mut slept = false;
        let mut looks = 0;
        loop {
            self.pump(&mut g, slept);
            let core = &mut g.s.core;
            let limit = self.opts.max_in_flight_bytes;
            let over = limit > 0 && core.live > 0 && core.leased_bytes + need > limit;
            if !over {
                if let Some(a) = core.take(need) {
                    return Ok(a);
                }
                if core.pool.can_grow(region_len) {
                    // Announced to each receiver with the first reference
                    // into it.
                    core.pool.create(region_len)?;
                    return Ok(core.take(need).expect("a fresh region holds it"));
                }
                if core.pool.fits_without_idle(region_len) {
                    let State { core, peers, .. } = &mut g.s;
                    retire_idle(core, peers, 0);
                    if g.s.core.pool.can_grow(region_len) {
                        continue;
                    }
                }
            }
            if deadline.get().expired() && (looks >= 16 || self.arm(&mut g, 0)) {
                let core = &g.s.core;
                return Err(if over {
                    Error::new(
                        Status::NoSpace,
                        format!(
                            "{} payloads ({} bytes) are held by receivers, and this one would go over max_in_flight_bytes {limit}",
                            core.live, core.leased_bytes
                        ),
                    )
                } else {
                    Error::new(
                        Status::NoSpace,
                        format!(
                            "budget of {} bytes exhausted ({} bytes in {} regions, {} payloads held by receivers)",
                            self.opts.budget,
                            core.pool.total_bytes(),
                            core.pool.regions(),
                            core.live
                        ),
                    )
                });
            }
            if deadline.get().expired() {
                looks += 1;
                continue;
            }
            (g, slept) = self.wait(g, deadline.get(), &mut spin, 0, false);
        }
    }

    /// A non-blocking call is about to say "not yet": if the caller
    /// watches the fd, asks every receiver to wake it (through the rings)
    /// with its next release. False: something came meanwhile, look again.
    fn arm(&self, g: &mut Guard<'_, State>, room: u64) -> bool {
        if !self.hub.fd_watched() {
            return true;
        }
        self.announce(g, room)
    }

    /// Gives back an allocation that was never sent.
    pub fn abort(&self, a: &Allocation) -> Result<()> {
        let mut g = self.hub.lock();
        let core = &mut g.s.core;
        core.check(a, 1)?;
        if let Some(l) = core.leases.map.remove(&(a.map_id, a.map_offset)) {
            core.pool.give_back(a.map_id, a.map_offset, l.len);
        }
        core.allocations -= 1;
        let State { core, peers, .. } = &mut g.s;
        retire_idle(core, peers, core.opts.keep_warm);
        self.hub.notify(&g);
        Ok(())
    }

    /// Sends the first `len` bytes of `a` to `target`, written once,
    /// waiting up to `timeout_ms` for receivers whose policy is to wait
    /// (until they are under their limit and have room in their ring or
    /// socket); receivers whose policy is to skip, and that cannot take it
    /// now, miss it. Returns how many receivers got it (0 is a success:
    /// nobody was there, or every one skipped). On failure (a waiting
    /// receiver stayed full; every receiver it was for went away while it
    /// was sent; a bad argument) nobody got it and the allocation is still
    /// the caller's. A receiver found gone, or whose socket filled, while
    /// it was being sent to others misses it (counted in its `skipped`).
    pub fn send(&self, a: &Allocation, len: u64, target: Target, timeout_ms: i64) -> Result<u32> {
        let mut deadline =
            LazyDeadline::after_ms(if timeout_ms == crate::registry::TIMEOUT_CONFIGURED {
                self.opts.send_timeout_ms
            } else {
                timeout_ms
            });
        let mut g = self.hub.lock();
        g.s.core.check(a, len)?;
        let mut spin = Spin::default();
        let mut slept = false;
        let mut looks = 0;
        let (ready, skip) = loop {
            self.pump(&mut g, slept);
            // Another thread may have sent or aborted it meanwhile.
            let r = g.s.core.check(a, len)?;
            let (ready, skip, blocked, room) =
                self.classify(&mut g, target, r.map_id, deadline.get())?;
            let Some((id, why)) = blocked else {
                break (ready, skip);
            };
            // An event-loop caller is woken (through the rings) when what
            // it waits for comes; if it came meanwhile, look again.
            if deadline.get().expired() && looks < 16 && !self.arm(&mut g, room) {
                looks += 1;
                continue;
            }
            if deadline.get().expired() {
                let why = match why {
                    NotReady::Limit => {
                        let p = g.s.peers.iter().find(|p| p.id == id).expect("listed");
                        format!("holds {} payloads, its max_in_flight", p.st.in_flight)
                    }
                    NotReady::RingFull => format!(
                        "has not taken the last {} references (its ring is full)",
                        self.opts.ring_capacity
                    ),
                    NotReady::SocketFull => "is not reading (its socket is full)".to_string(),
                };
                return Err(Error::new(
                    Status::Timeout,
                    format!("receiver {id} (policy wait) {why}; {r} was sent to nobody"),
                ));
            }
            let socket_full = matches!(why, NotReady::SocketFull);
            (g, slept) = self.wait(g, deadline.get(), &mut spin, room, socket_full);
        };
        let r = g.s.core.check(a, len)?;
        fence(Ordering::Release);
        let delivered = self.deliver(&mut g, &r, ready, deadline.get());
        if delivered == 0 && ready != 0 {
            // Every receiver it was for went away or stopped reading while
            // it was sent: nobody has it, and it is still the caller's.
            self.hub.notify(&g);
            return Err(Error::new(
                if g.s
                    .peers
                    .iter()
                    .any(|p| ready & p.bit() != 0 && p.current())
                {
                    Status::Timeout
                } else {
                    Status::PeerGone
                },
                format!("{r} reached none of its receivers (gone, or not reading)"),
            ));
        }
        let State { core, peers, .. } = &mut g.s;
        for p in peers.iter_mut() {
            if skip & p.bit() != 0 || (ready & !delivered) & p.bit() != 0 {
                p.st.skipped += 1;
            }
        }
        core.publish(&r, delivered);
        self.hub.notify(&g);
        Ok(delivered.count_ones())
    }

    /// Sorts the receivers `target` names into those that can take a
    /// payload now, those that skip it, and the first that must be waited
    /// for (with the rings to wait for room in). Makes a receiver's ring
    /// segment once both HELLOs are said.
    #[allow(clippy::type_complexity)]
    fn classify(
        &self,
        g: &mut Guard<'_, State>,
        target: Target,
        map_id: u32,
        deadline: Deadline,
    ) -> Result<(u64, u64, Option<(u32, NotReady)>, u64)> {
        let attached = g.s.core.regions.get(&map_id).map_or(0, |s| s.attached);
        let State {
            core, peers, epoll, ..
        } = &mut g.s;
        if let Target::One(id) = target {
            match peers.iter().find(|p| p.id == id && p.leaving.is_none()) {
                None => return Err(unknown(id)),
                Some(p) if p.dead => {
                    return Err(Error::new(
                        Status::PeerGone,
                        format!("receiver {id} went away"),
                    ));
                }
                Some(_) => {}
            }
        }
        let (mut ready, mut skip, mut room) = (0u64, 0u64, 0u64);
        let mut blocked = None;
        for p in peers.iter_mut() {
            if !p.current() || matches!(target, Target::One(id) if id != p.id) {
                continue;
            }
            if !p.link.peer_said_hello() {
                // Not a receiver yet: payloads reach it from the first send
                // after its HELLO was read.
                continue;
            }
            let why =
                if p.opts.max_in_flight > 0 && p.st.in_flight >= u64::from(p.opts.max_in_flight) {
                    Some(NotReady::Limit)
                } else {
                    if !p.link.ring_active(Role::Sender) {
                        let Peer { link, st, slot, .. } = p;
                        let started = link.start_ring(deadline, drainer(core, st, *slot));
                        if started.is_err() {
                            kill(core, epoll, p);
                            continue;
                        }
                    }
                    if p.link.ring_active(Role::Sender) {
                        match p.link.ring_has_room() {
                            // The region's ATTACH still goes on the socket.
                            Ok(true)
                                if p.opts.policy == Policy::Wait
                                    && attached & p.bit() == 0
                                    && !p.link.socket_writable() =>
                            {
                                Some(NotReady::SocketFull)
                            }
                            Ok(true) => None,
                            Ok(false) => {
                                room |= p.bit();
                                Some(NotReady::RingFull)
                            }
                            // It broke its ring: it alone is cut off.
                            Err(_) => {
                                kill(core, epoll, p);
                                continue;
                            }
                        }
                    } else if p.opts.policy == Policy::Wait && !p.link.socket_writable() {
                        // Waited for before anything is sent, so that a
                        // send that fails has reached nobody.
                        Some(NotReady::SocketFull)
                    } else {
                        None
                    }
                };
            match (why, p.opts.policy) {
                (None, _) => ready |= p.bit(),
                (Some(_), Policy::Skip) => skip |= p.bit(),
                (Some(w), Policy::Wait) => {
                    if blocked.is_none() {
                        blocked = Some((p.id, w));
                    }
                }
            }
        }
        Ok((ready, skip, blocked, room))
    }

    /// Delivers `r` to every receiver of `ready`: its region's ATTACH
    /// first if that receiver has not had it, then the reference (ring or
    /// socket). Waiting receivers are waited for up to `deadline`; one that
    /// cannot be reached (gone, or its socket full) misses it. Returns the
    /// receivers that got it.
    fn deliver(&self, g: &mut Guard<'_, State>, r: &Ref, ready: u64, deadline: Deadline) -> u64 {
        let State {
            core, peers, epoll, ..
        } = &mut g.s;
        let mut delivered = 0u64;
        let fd = core.pool.region_fd(r.map_id);
        for p in peers.iter_mut().filter(|p| ready & p.bit() != 0) {
            let bit = p.bit();
            let wait = p.opts.policy == Policy::Wait;
            let seen = core.regions.get(&r.map_id).map_or(0, |s| s.attached);
            if seen & bit == 0 {
                let Some((fd, len)) = fd else { continue };
                let attach = Attach {
                    map_id: r.map_id,
                    map_generation: r.map_generation,
                    mapping_length: len,
                }
                .encode();
                if !send_one(core, p, &attach, Some(fd), wait, deadline) {
                    if p.link.is_gone() || p.link.is_poisoned() {
                        kill(core, epoll, p);
                    }
                    continue;
                }
                let s = core.regions.entry(r.map_id).or_default();
                s.attached |= bit;
                s.len = len;
            }
            let ok = if p.link.ring_active(Role::Sender) {
                matches!(p.link.push(Role::Sender, r), Ok(true))
            } else {
                send_one(core, p, &Ext::Ref(*r).encode(), None, wait, deadline)
            };
            if !ok {
                if p.link.is_gone() || p.link.is_poisoned() {
                    kill(core, epoll, p);
                }
                continue;
            }
            delivered |= bit;
            p.st.in_flight += 1;
            p.st.delivered += 1;
            p.st.bytes += u64::from(r.payload_len);
        }
        delivered
    }

    /// Applies whatever the receivers sent, without waiting. For callers
    /// driving their own event loop (when the fd is readable).
    pub fn poll(&self) -> Result<()> {
        let mut g = self.hub.lock();
        self.pump(&mut g, true);
        if !self.arm(&mut g, 0) {
            self.pump(&mut g, false);
        }
        let State { core, peers, .. } = &mut g.s;
        retire_idle(core, peers, core.opts.keep_warm);
        Ok(())
    }

    /// Waits up to `timeout_ms` until no receiver holds a payload and no
    /// retirement awaits an acknowledgement (receivers that went away hold
    /// nothing: what they held was reclaimed, counted in their stats).
    pub fn wait_idle(&self, timeout_ms: i64) -> Result<()> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        let mut spin = Spin::default();
        let mut slept = false;
        let mut looks = 0;
        loop {
            self.pump(
                &mut g,
                slept || (deadline.expired() && self.hub.fd_watched()),
            );
            let State { core, peers, .. } = &mut g.s;
            retire_idle(core, peers, core.opts.keep_warm);
            if core.live == 0 && core.pool.retiring() == 0 {
                return Ok(());
            }
            if deadline.expired() && looks < 16 && !self.arm(&mut g, 0) {
                looks += 1;
                continue;
            }
            if deadline.expired() {
                let core = &g.s.core;
                return Err(Error::new(
                    Status::Timeout,
                    format!(
                        "{} payloads are held by receivers, {} retired regions not acknowledged",
                        core.live,
                        core.pool.retiring()
                    ),
                ));
            }
            (g, slept) = self.wait(g, deadline, &mut spin, 0, false);
        }
    }

    pub fn stats(&self) -> FanoutStats {
        let g = self.hub.lock();
        let State { core, peers, .. } = &g.s;
        let mut s = FanoutStats {
            receivers: peers.iter().filter(|p| p.leaving.is_none()).count() as u64,
            regions: core.pool.regions() as u64,
            mapped_bytes: core.pool.total_bytes(),
            live_payloads: core.live,
            allocations: core.allocations,
            // A region's fd, each receiver's socket, the epoll fd and the
            // wake-up eventfd.
            open_fds: core.pool.regions() as u64 + peers.len() as u64 + 2,
            payloads_published: core.published,
            payload_bytes_published: core.published_bytes,
            regions_created: core.pool.created(),
            regions_retired: core.pool.retired(),
            deliveries: core.former.deliveries,
            skips: core.former.skips,
            messages_sent: core.former.messages_sent,
            messages_received: core.former.messages_received,
            ..Default::default()
        };
        for p in peers {
            let c = p.link.counters();
            s.receivers_gone += u64::from(p.dead && p.leaving.is_none());
            s.deliveries += p.st.delivered;
            s.skips += p.st.skipped;
            s.messages_sent += c.messages_sent;
            s.messages_received += c.messages_received;
        }
        s
    }

    /// One receiver's counters; `VOXSHM_INVALID_ARGUMENT` for an unknown id.
    pub fn receiver_stats(&self, id: u32) -> Result<ReceiverStats> {
        let g = self.hub.lock();
        let p =
            g.s.peers
                .iter()
                .find(|p| p.id == id && p.leaving.is_none())
                .ok_or_else(|| unknown(id))?;
        Ok(ReceiverStats {
            id,
            in_flight: p.st.in_flight,
            delivered: p.st.delivered,
            skipped: p.st.skipped,
            released: p.st.released,
            bytes_delivered: p.st.bytes,
            reclaimed: p.st.reclaimed,
            ignored_releases: p.st.ignored,
            ready: p.link.peer_said_hello() && !p.dead,
            gone: p.dead,
            ring: p.link.ring_active(Role::Sender),
        })
    }
}

/// Sends one message to a receiver: waiting up to `deadline` for room
/// (reading what it sends meanwhile) if its policy is to wait, otherwise
/// only if there is room now. False if it did not go out.
fn send_one(
    core: &mut Core,
    p: &mut Peer,
    bytes: &[u8],
    fd: Option<i32>,
    wait: bool,
    deadline: Deadline,
) -> bool {
    let r = {
        let Peer { link, st, slot, .. } = &mut *p;
        if wait {
            link.send_blocking(bytes, fd, false, deadline, drainer(core, st, *slot))
        } else {
            match link.try_send(bytes, fd) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::new(Status::Timeout, "socket full")),
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = &r
        && e.status == Status::PeerGone
    {
        note_gone(core, p);
    }
    r.is_ok()
}

/// What a blocking send to a current receiver reads while it waits for
/// room: that receiver's messages, applied to `core`. True if anything was
/// read.
fn drainer<'a>(
    core: &'a mut Core,
    st: &'a mut PeerStats,
    slot: u32,
) -> impl FnMut(&mut Link) -> Result<bool> + 'a {
    move |l| {
        l.pump(&mut PeerEnd {
            core: &mut *core,
            st: &mut *st,
            slot,
            leaving: false,
        })
        .map(|x| x.changed)
    }
}

/// A send found the receiver gone (`EPIPE`, or `ECONNREFUSED` on a
/// datagram pair, which shows no hang-up): what it sent before it went is
/// applied, and its link is marked gone (the caller cuts it off).
fn note_gone(core: &mut Core, p: &mut Peer) {
    while !p.link.is_gone() {
        match p.pump(core, true) {
            Ok(x) if x.changed => {}
            _ => break,
        }
    }
    p.link.mark_gone();
}

fn unknown(id: u32) -> Error {
    Error::new(
        Status::InvalidArgument,
        format!("no receiver {id} (never added, or removed)"),
    )
}
