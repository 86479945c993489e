//! The receiver's side: one link, the mappings it feeds, and the views
//! handed out. Resolves references to views and releases them back to the
//! sender.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use tracing::{debug, info, warn};

use crate::channel::Channel;
use crate::conn::{Both, Conn};
use crate::error::{Error, Result, Status};
use crate::hub::{Guard, Hub, Spin, Unstarted};
use crate::link::{Endpoint, Incoming, Link, Role, Roles};
use crate::mappings::{Mappings, Retired};
use crate::region::Limits;
use crate::ring::Capacities;
use crate::sys::{self, Deadline, LazyDeadline};
use crate::wire::{self, Ext, Ref};

/// Receiver configuration.
#[derive(Clone, Debug)]
pub struct AttachmentsOptions {
    pub limits: Limits,
    /// How long a release waits for room in the channel before it is kept
    /// pending (and sent by a later call).
    pub send_timeout_ms: i64,
    /// Talk to a vox-shm sender: send no HELLO and no RELEASE, accept
    /// unsealed regions.
    pub vox_compat: bool,
    /// `stats()` also reads the process's page-fault count (one
    /// `getrusage`); without it, `stats()` makes no system call.
    pub stats_faults: bool,
    /// Offer the ring path (used when the sender offers it too).
    pub ring: bool,
    /// How long a blocking `recv` spins, watching the ring, before it
    /// sleeps (microseconds; 0: never spin).
    pub spin_us: u32,
}

impl Default for AttachmentsOptions {
    fn default() -> Self {
        AttachmentsOptions {
            limits: Limits {
                max_mappings: 1024,
                max_mapped_bytes: 16 << 30,
                max_single_mapping: 4 << 30,
                accept_unsealed: false,
            },
            send_timeout_ms: 10_000,
            vox_compat: false,
            stats_faults: false,
            ring: true,
            spin_us: crate::registry::DEFAULT_SPIN_US,
        }
    }
}

/// A resolved payload: `len` bytes at `data`, readable until released.
/// Never a `&[u8]`: the sender's process can still write these bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub data: *const u8,
    pub len: u64,
    pub r: Ref,
}

// SAFETY: a View is an address and a length inside a read-only mapping
// that the attachments keep alive until the view is released; it carries no
// reference and no interior mutability.
unsafe impl Send for View {}
// SAFETY: as above.
unsafe impl Sync for View {}

/// Counters of an attachments handle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachmentsStats {
    pub mappings: u64,
    pub mapped_bytes: u64,
    pub live_views: u64,
    pub queued_refs: u64,
    pub open_fds: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
    pub attaches_received: u64,
    pub attaches_rejected: u64,
    pub refs_received: u64,
    pub releases_sent: u64,
    pub regions_retired: u64,
    /// Regions unmapped to make room (vox compatibility).
    pub regions_evicted: u64,
    pub pending_releases: u64,
    pub minor_faults: u64,
    /// References and releases travel through the ring segment.
    pub ring: bool,
    /// Wake-up messages sent to a sleeping sender.
    pub wakeups_sent: u64,
}

/// Most references queued from the channel and not yet received. Beyond
/// it the channel is not read until `recv` takes some, so the socket
/// buffer fills and the sender waits (its memory is bounded by its budget,
/// this side's by this number).
const MAX_QUEUED_REFS: usize = 1 << 16;

/// Most releases kept for a sender that has not said HELLO yet.
const MAX_RELEASES_BEFORE_HELLO: usize = 4096;

/// Everything of the receiver but its link.
pub(crate) struct Side {
    vox_compat: bool,
    maps: Mappings,
    queue: VecDeque<Ref>,
    pending_release: Vec<Ref>,
    pending_acks: VecDeque<Ext>,
    /// `resolve` was called: references may be travelling over the
    /// caller's own transport, so a gone sender's regions stay mapped.
    out_of_band: bool,
    live_views: u64,
    refs_received: u64,
    releases_sent: u64,
    /// A send found the sender gone. Nothing more is sent; the link is
    /// marked gone once everything the sender had sent has been read.
    send_failed: bool,
    /// Releases dropped because the sender never said HELLO.
    releases_dropped: u64,
    /// The handle was freed while the channel goes on (duplex): every
    /// reference is released as it arrives, no region is mapped.
    closed: bool,
}

/// The receiver's attachments. `Send + Sync`.
pub struct Attachments {
    hub: Arc<Hub<Conn>>,
    opts: AttachmentsOptions,
}

impl Endpoint for Side {
    fn apply(&mut self, link: &mut Link, m: Incoming) -> Result<()> {
        if self.closed {
            return self.apply_closed(link, m);
        }
        match m {
            Incoming::Attach(a, fd) => self.maps.attach(a, fd),
            Incoming::AttachLost(a) => self.maps.attach_lost(a),
            Incoming::Ext(Ext::Ref(r)) => {
                self.refs_received += 1;
                self.queue.push_back(r);
                Ok(())
            }
            Incoming::Ext(Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            }) => {
                if self.maps.retire(map_id, map_generation)? == Retired::Now {
                    debug!(map_id, map_generation, "RETIRE: unmapped");
                    self.pending_acks.push_back(Ext::RetireAck {
                        map_id,
                        map_generation,
                        mapping_length,
                    });
                } else {
                    debug!(
                        map_id,
                        map_generation, "RETIRE: unmapping when its views are released"
                    );
                }
                self.flush(link);
                Ok(())
            }
            Incoming::Gone => {
                // References the sender pushed before it went are still
                // received: queued with the rest, a ring's worth at most (a
                // sender that hung up but keeps writing its segment cannot
                // hold this loop). A ring it broke while dying poisons the
                // link, and the rest is done all the same.
                let mut taken = Ok(());
                for _ in 0..link.ring_capacity(Role::Receiver) {
                    match link.pop(Role::Receiver) {
                        Ok(Some(r)) => {
                            self.refs_received += 1;
                            self.queue.push_back(r);
                        }
                        Ok(None) => break,
                        Err(e) => {
                            taken = Err(e);
                            break;
                        }
                    }
                }
                self.peer_gone();
                taken
            }
            other => Err(Error::new(
                Status::Protocol,
                format!("sender sent a receiver-only message {other:?}"),
            )),
        }
    }

    fn wants_more(&self) -> bool {
        self.reads()
    }
}

impl Side {
    /// A message after the handle was freed (duplex): references are
    /// released at once, regions closed unmapped, retirements acknowledged,
    /// so the sender gets back everything it sends.
    fn apply_closed(&mut self, link: &mut Link, m: Incoming) -> Result<()> {
        match m {
            Incoming::Attach(..) | Incoming::AttachLost(_) => {}
            Incoming::Ext(Ext::Ref(r)) => {
                self.refs_received += 1;
                self.pending_release.push(r);
            }
            Incoming::Ext(Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            }) => self.pending_acks.push_back(Ext::RetireAck {
                map_id,
                map_generation,
                mapping_length,
            }),
            Incoming::Gone => {
                self.pending_release.clear();
                self.pending_acks.clear();
                return Ok(());
            }
            other => {
                return Err(Error::new(
                    Status::Protocol,
                    format!("sender sent a receiver-only message {other:?}"),
                ));
            }
        }
        self.flush(link);
        Ok(())
    }

    /// Closes the receiving side of a duplex channel whose attachments
    /// were freed: every view and queued reference is released, every
    /// region unmapped, and whatever comes later is given back at once.
    pub(crate) fn close(&mut self, link: &mut Link) {
        self.closed = true;
        let (views, acks) = self.maps.close();
        let mut refs: Vec<Ref> = views;
        refs.extend(self.queue.drain(..));
        self.live_views = 0;
        if !self.vox_compat {
            self.pending_release.extend(refs);
            for (map_id, map_generation, mapping_length) in acks {
                self.pending_acks.push_back(Ext::RetireAck {
                    map_id,
                    map_generation,
                    mapping_length,
                });
            }
        }
        self.release_ring(link);
    }

    /// Closed: releases the references waiting in the ring (a ring's worth
    /// at most), then sends what is pending.
    pub(crate) fn release_ring(&mut self, link: &mut Link) {
        let cap = link.ring_capacity(Role::Receiver);
        let mut n = 0;
        while n < cap {
            match link.pop(Role::Receiver) {
                Ok(Some(r)) => {
                    self.refs_received += 1;
                    self.pending_release.push(r);
                    n += 1;
                }
                // Empty: ask the peer to wake this side (a message on the
                // socket) with its next reference, so the registry's fd
                // becomes readable and its waits end.
                Ok(None) => match link.prepare_sleep(Role::Receiver) {
                    Ok(false) => continue,
                    _ => break,
                },
                Err(_) => break,
            }
        }
        self.flush(link);
    }

    /// Closed: nothing is received any more.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// A send found the sender gone, and everything it sent was read:
    /// the link is gone (a datagram peer shows no hang-up).
    pub(crate) fn found_peer_gone(&self) -> bool {
        self.send_failed && self.wants_more()
    }

    /// Whether the socket should be read for this side: not while the
    /// queue is full (`recv` must take some first).
    pub(crate) fn reads(&self) -> bool {
        self.closed || self.queue.len() < MAX_QUEUED_REFS
    }

    fn peer_gone(&mut self) {
        self.pending_release.clear();
        self.pending_acks.clear();
        // Mappings nobody views, and that no reference still queued for
        // `recv` names, are of no more use.
        let before = self.maps.count();
        self.drop_unviewed();
        info!(
            unmapped = before - self.maps.count(),
            kept = self.maps.count(),
            "attachments: sender gone"
        );
    }

    /// True if a reference waiting in the queue points into this region.
    fn queued_into(queue: &VecDeque<Ref>, map_id: u32, generation: u32) -> bool {
        queue
            .iter()
            .any(|r| r.map_id == map_id && r.map_generation == generation)
    }

    /// Unmaps what nobody views and no queued reference points into: the
    /// sender is gone, so nothing else can resolve into it. Not after
    /// `resolve` was used: a reference may still be on its way over the
    /// caller's own transport, so the regions stay until the handle is
    /// freed.
    fn drop_unviewed(&mut self) {
        if !self.out_of_band {
            let queue = &self.queue;
            self.maps
                .drop_unviewed(|id, generation| Self::queued_into(queue, id, generation));
        }
    }

    /// Releases or acknowledgements wait to be sent.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending_release.is_empty() || !self.pending_acks.is_empty()
    }

    /// Sends pending releases and acknowledgements without blocking.
    pub(crate) fn flush(&mut self, link: &mut Link) {
        if self.vox_compat || link.is_gone() || self.send_failed {
            self.pending_release.clear();
            return;
        }
        if !matches!(link.try_say_hello(), Ok(true)) {
            return;
        }
        if !link.peer_said_hello() {
            // Nothing but HELLO goes to a sender that has not said HELLO: a
            // voxshm sender answers at once, and one that never does (vox)
            // would never read them. What waits for it is bounded.
            self.bound_unsent();
            return;
        }
        // The ring first; what does not fit goes over the socket.
        while let Some(r) = self.pending_release.last() {
            if !matches!(link.push(Role::Receiver, r), Ok(true)) {
                break;
            }
            self.pending_release.pop();
            self.releases_sent += 1;
        }
        while !self.pending_release.is_empty() {
            let n = self.pending_release.len().min(wire::MAX_RELEASE_ENTRIES);
            let b = Ext::Release(self.pending_release[..n].to_vec()).encode();
            match link.try_send(&b, None) {
                Ok(true) => {
                    self.releases_sent += n as u64;
                    self.pending_release.drain(..n);
                }
                Ok(false) => return,
                Err(e) => {
                    if e.status == Status::PeerGone {
                        // References the sender sent before it went may
                        // still be queued: they are read before the link is
                        // marked gone (`Attachments::pump`).
                        self.send_failed = true;
                        self.pending_release.clear();
                    }
                    return;
                }
            }
        }
        // Acknowledgements go after the releases that preceded them.
        while let Some(ack) = self.pending_acks.front() {
            match link.try_send(&ack.encode(), None) {
                Ok(true) => {
                    self.pending_acks.pop_front();
                }
                _ => return,
            }
        }
    }

    /// Keeps at most `MAX_RELEASES_BEFORE_HELLO` releases waiting for the
    /// sender's HELLO, dropping the oldest: a sender that has not said it
    /// after that many is not a voxshm sender, and would not read them.
    fn bound_unsent(&mut self) {
        let n = self.pending_release.len();
        if n > MAX_RELEASES_BEFORE_HELLO {
            let excess = n - MAX_RELEASES_BEFORE_HELLO;
            if self.releases_dropped == 0 {
                warn!(
                    "the sender has not said HELLO after {n} releases: it is not a voxshm sender; the oldest releases are dropped (set VOXSHM_ATTACHMENTS_VOX_COMPAT for a vox sender)"
                );
            }
            self.pending_release.drain(..excess);
            self.releases_dropped += excess as u64;
        }
    }

    fn take_view(&mut self, r: Ref, data: *const u8) -> View {
        fence(Ordering::Acquire);
        self.maps.add_view(&r);
        self.live_views += 1;
        View {
            data,
            len: r.payload_len as u64,
            r,
        }
    }
}

impl Attachments {
    /// Creates the attachments over `chan`, which they own from now on
    /// (also when this fails: it is then closed), and says HELLO to the
    /// sender (unless in vox compatibility mode).
    pub fn new(chan: Channel, opts: AttachmentsOptions) -> Result<Attachments> {
        Ok(Self::prepare(opts)?.start(chan))
    }

    /// Makes what the attachments need besides a socket; `start` then
    /// cannot fail.
    pub fn prepare(mut opts: AttachmentsOptions) -> Result<Unstarted<AttachmentsOptions>> {
        if opts.vox_compat {
            opts.limits.accept_unsealed = true;
        }
        Unstarted::new(opts)
    }

    /// Attachments over a started channel state (one-way or duplex).
    pub(crate) fn from_hub(hub: Arc<Hub<Conn>>, opts: AttachmentsOptions) -> Attachments {
        Attachments { hub, opts }
    }

    pub fn fd(&self) -> i32 {
        self.hub.fd()
    }

    pub fn options(&self) -> &AttachmentsOptions {
        &self.opts
    }

    /// Applies what the sender sent over the socket (a bounded amount),
    /// waking the other waiters when that changed anything. Sends pending
    /// releases first. `full`: read the socket; otherwise only if
    /// something may wait there (on the ring path, rarely).
    fn pump(&self, g: &mut Guard<'_, Conn>, full: bool) -> Result<crate::link::Pumped> {
        let Conn { link, tx, rx: side } = &mut g.s;
        link.check_poisoned()?;
        if side.has_pending() {
            side.flush(link);
        }
        let mut both = Both::new(link.roles(), tx, side);
        let mut p = if full {
            link.pump(&mut both)?
        } else {
            link.pump_if_due(&mut both)?
        };
        // The sender's HELLO may have come with what was read: what waited
        // for it goes out now.
        if p.changed && side.has_pending() {
            side.flush(link);
        }
        // A send found the sender gone and nothing is left to read (a
        // datagram peer shows no hang-up): it is gone.
        if !p.changed && side.found_peer_gone() && link.mark_gone() {
            Both::new(link.roles(), tx, side).gone(link);
            p.changed = true;
        }
        if p.changed {
            self.hub.notify(g);
        }
        Ok(p)
    }

    /// Takes the next reference the sender sent over the channel and
    /// resolves it, waiting up to `timeout_ms`. A reference that fails to
    /// resolve is released back to the sender and its error returned.
    pub fn recv(&self, timeout_ms: i64) -> Result<View> {
        let mut deadline = LazyDeadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        let mut spin = Spin::default();
        let mut slept = false;
        loop {
            g.s.link.check_poisoned()?;
            if g.s.rx.queue.is_empty()
                && let Some(r) = g.s.link.pop(Role::Receiver)?
            {
                g.s.rx.refs_received += 1;
                return self.take_ring_ref(&mut g, r);
            }
            if g.s.rx.queue.len() == MAX_QUEUED_REFS {
                // The socket is read again from now on: a duplex
                // registry's waiter that stopped watching it looks again.
                self.hub.notify(&g);
            }
            let Conn { link, rx: side, .. } = &mut g.s;
            if let Some(r) = side.queue.pop_front() {
                // On the channel a region's ATTACH always comes before any
                // reference into it, so an unknown region is UNKNOWN_MAP
                // here even once the sender is gone: PEER_GONE from recv
                // means only "gone, and everything it sent was taken".
                let res = match side.maps.check(&r, false) {
                    Ok(p) => Ok(side.take_view(r, p)),
                    Err(e) => {
                        warn!(?r, error = %e, "received reference does not resolve; releasing it");
                        side.pending_release.push(r);
                        side.flush(link);
                        Err(e)
                    }
                };
                if link.is_gone() {
                    // That may have been the last reference into a region.
                    side.drop_unviewed();
                }
                return res;
            }
            // A caller watching the fd calls when it is readable: read it
            // (a hang-up changes no count in the segment).
            let read = slept || (deadline.get().expired() && self.hub.fd_watched());
            let changed = self.pump(&mut g, read)?.changed;
            slept = false;
            // Reading the socket can make the ring active (SEGMENT); the
            // ring itself was looked at above.
            if !g.s.rx.queue.is_empty() || (changed && g.s.link.ring_has_entries(Role::Receiver)?) {
                continue;
            }
            if g.s.link.is_gone() {
                return Err(Error::new(
                    Status::PeerGone,
                    "the sender closed the channel or died",
                ));
            }
            let nothing = || Error::new(Status::Timeout, "no payload arrived before the timeout");
            if deadline.get().expired() {
                // A caller that polls the fd gets it readable when the next
                // reference comes.
                if self.hub.fd_watched() && !g.s.link.prepare_sleep(Role::Receiver)? {
                    continue;
                }
                return Err(nothing());
            }
            if changed {
                continue;
            }
            if g.s.link.ring_active(Role::Receiver)
                && spin.spinning(self.opts.spin_us, deadline.get())
            {
                drop(g);
                spin.pause();
                g = self.hub.lock();
                continue;
            }
            if !g.s.link.prepare_sleep(Role::Receiver)? {
                continue;
            }
            g = self.hub.wait(g, deadline.get())?;
            slept = true;
        }
    }

    /// Resolves a reference taken from the ring. Its region's ATTACH went
    /// over the socket before it was pushed: an unknown region means the
    /// socket is read (until the region is known or nothing more is
    /// there), and still unknown after that, the sender broke the protocol.
    fn take_ring_ref(&self, g: &mut Guard<'_, Conn>, r: Ref) -> Result<View> {
        let mut reads = 0;
        loop {
            let Conn { link, rx: side, .. } = &mut g.s;
            match side.maps.check(&r, false) {
                Ok(p) => return Ok(side.take_view(r, p)),
                Err(e) if e.status == Status::UnknownMap => {
                    // While the socket is read the reference waits at the
                    // head of the queue: a hang-up read meanwhile then keeps
                    // its region mapped, as for every queued reference.
                    side.queue.push_front(r);
                    // Bounded: a sender that keeps writing cannot hold this
                    // call (64 reads of up to 1024 messages each).
                    let more = reads < 64 && self.pump(g, true)?.changed;
                    reads += 1;
                    let taken = g.s.rx.queue.pop_front();
                    debug_assert_eq!(taken, Some(r));
                    if !more {
                        let e = Error::new(
                            Status::Protocol,
                            format!(
                                "the sender pushed {r} into the ring before its region's ATTACH"
                            ),
                        );
                        return Err(g.s.link.poison(e));
                    }
                }
                Err(e) => {
                    warn!(?r, error = %e, "received reference does not resolve; releasing it");
                    side.pending_release.push(r);
                    side.flush(link);
                    return Err(e);
                }
            }
        }
    }

    /// Checks `r` against the mappings (after the poisoning check).
    fn check(st: &Conn, r: &Ref) -> Result<*const u8> {
        st.link.check_poisoned()?;
        st.rx.maps.check(r, st.link.is_gone())
    }

    /// Resolves a reference that came over a transport of the caller's
    /// own, waiting up to `timeout_ms` for its region's ATTACH. With a
    /// timeout of 0 a region not attached is `VOXSHM_UNKNOWN_MAP`; when a
    /// wait ends without its ATTACH, `VOXSHM_TIMEOUT`. Only this
    /// reference's fate is reported: a rejected region fails with its
    /// rejection, other regions' rejections are not this call's.
    pub fn resolve(&self, r: &Ref, timeout_ms: i64) -> Result<View> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        g.s.rx.out_of_band = true;
        loop {
            let e = match Self::check(&g.s, r) {
                Ok(p) => return Ok(g.s.rx.take_view(*r, p)),
                Err(e) if e.status == Status::UnknownMap && !g.s.link.is_gone() => e,
                Err(e) => return Err(e),
            };
            if g.s.rx.queue.len() >= MAX_QUEUED_REFS {
                return Err(Error::new(
                    Status::ResourceExhausted,
                    format!(
                        "{}: {MAX_QUEUED_REFS} references sent over the channel wait for recv, and nothing more is read until they are taken",
                        e.message
                    ),
                ));
            }
            let changed = self.pump(&mut g, true)?.changed;
            match Self::check(&g.s, r) {
                Ok(p) => return Ok(g.s.rx.take_view(*r, p)),
                Err(e) if e.status == Status::UnknownMap && !g.s.link.is_gone() => {
                    if timeout_ms == 0 {
                        return Err(e);
                    }
                    if deadline.expired() {
                        return Err(Error::new(
                            Status::Timeout,
                            format!(
                                "{}, and its ATTACH did not arrive before the timeout",
                                e.message
                            ),
                        ));
                    }
                    if !changed {
                        g = self.hub.wait(g, deadline)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Releases a view. When it was the last view of its reference the
    /// sender is told (at once; if the channel is full the release is kept
    /// and sent by the next call, after waiting up to the send timeout).
    pub fn release(&self, v: &View) -> Result<()> {
        let mut g = self.hub.lock();
        let Conn { link, tx, rx: side } = &mut g.s;
        let roles = link.roles();
        let r = v.r;
        let gone = link.is_gone();
        let unmap_if_unviewed = || {
            gone && !side.out_of_band && !Side::queued_into(&side.queue, r.map_id, r.map_generation)
        };
        let done = side.maps.end_view(&r, v.data, v.len, unmap_if_unviewed)?;
        side.live_views -= 1;
        if done.last_of_ref && !gone && !self.opts.vox_compat {
            side.pending_release.push(r);
        }
        if done.retired && !gone {
            side.maps.regions_retired += 1;
            side.pending_acks.push_back(Ext::RetireAck {
                map_id: r.map_id,
                map_generation: r.map_generation,
                mapping_length: 0,
            });
        }
        if !side.pending_release.is_empty() && !link.peer_said_hello() && !gone {
            // Releases wait for the sender's HELLO: it may be unread on the
            // socket (a caller that only resolves and releases reads it
            // nowhere else).
            let _ = link.pump(&mut Both::new(roles, tx, side));
        }
        side.flush(link);
        // A full channel: wait for room while reading what the sender sends
        // meanwhile (so neither side blocks the other). Only `flush` (which
        // `pump` also runs) sends releases, so each goes out exactly once.
        let deadline = if side.pending_release.is_empty() {
            Deadline::now()
        } else {
            Deadline::after_ms(self.opts.send_timeout_ms)
        };
        while !side.pending_release.is_empty()
            && link.peer_said_hello()
            && !link.is_gone()
            && !link.is_poisoned()
            && !deadline.expired()
        {
            // While `recv` has a full queue nothing more is read: wait for
            // room only, or this loop would spin on a readable socket.
            let read = if side.wants_more() { libc::POLLIN } else { 0 };
            let mut p = [sys::pollfd(link.fd(), libc::POLLOUT | read)];
            if sys::poll(&mut p, deadline).is_err() {
                break;
            }
            if p[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && link.pump(&mut Both::new(roles, tx, side)).is_err()
            {
                // Poisoned: nothing more is read or sent on this channel.
                break;
            }
            side.flush(link);
        }
        if !side.pending_release.is_empty() && link.peer_said_hello() && !link.is_gone() {
            warn!(
                pending = side.pending_release.len(),
                "releases kept pending: the channel stayed full"
            );
        }
        self.hub.notify(&g);
        Ok(())
    }

    /// Applies what the sender sent, without waiting (at most
    /// `MAX_MESSAGES_PER_PUMP` messages: the fd stays readable if more
    /// wait). For callers driving their own event loop. Returns the first
    /// ATTACH rejection it met, after applying everything else.
    pub fn poll(&self) -> Result<()> {
        let mut g = self.hub.lock();
        // What this applies comes over the socket (the ring's references
        // are `recv`'s): read it.
        match self.pump(&mut g, true)?.rejected {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> AttachmentsStats {
        let g = self.hub.lock();
        let (side, c) = (&g.s.rx, g.s.link.counters());
        AttachmentsStats {
            mappings: side.maps.count() as u64,
            mapped_bytes: side.maps.mapped_bytes(),
            live_views: side.live_views,
            queued_refs: side.queue.len() as u64,
            // The channel and the wake-up eventfd: region fds are closed as
            // soon as they are mapped. Of a duplex channel, the registry
            // counts those two.
            open_fds: if g.s.link.roles().send { 0 } else { 2 },
            messages_sent: c.messages_sent,
            bytes_sent: c.bytes_sent,
            messages_received: c.messages_received,
            bytes_received: c.bytes_received,
            attaches_received: side.maps.attaches_received,
            attaches_rejected: side.maps.attaches_rejected,
            refs_received: side.refs_received,
            releases_sent: side.releases_sent,
            regions_retired: side.maps.regions_retired,
            regions_evicted: side.maps.regions_evicted,
            pending_releases: side.pending_release.len() as u64,
            minor_faults: if self.opts.stats_faults {
                sys::minor_faults()
            } else {
                0
            },
            ring: g.s.link.ring_active(Role::Receiver),
            wakeups_sent: g.s.link.wakes_sent(),
        }
    }

    pub fn peer_is_gone(&self) -> bool {
        let mut g = self.hub.lock();
        let _ = self.pump(&mut g, true);
        g.s.link.is_gone()
    }
}

/// Says HELLO for a new receiving link (unless in vox compatibility
/// mode). A HELLO that finds the socket full is said by a later call.
pub(crate) fn say_hello(link: &mut Link, opts: &AttachmentsOptions) {
    if opts.vox_compat {
        return;
    }
    match link.try_say_hello() {
        Ok(_) => {}
        Err(e) if e.status == Status::PeerGone => {
            link.mark_gone();
        }
        Err(e) => {
            link.poison(e);
        }
    }
}

/// The receiver's side of a channel, as attachments with `opts` start it.
pub(crate) fn new_side(opts: &AttachmentsOptions) -> Side {
    Side {
        vox_compat: opts.vox_compat,
        maps: Mappings::new(opts.limits, opts.vox_compat),
        // Room for a burst of references. Kept small on purpose: the
        // ring walks through all of its capacity, so a large one would
        // touch (and fault in) a new page every few hundred payloads.
        queue: VecDeque::with_capacity(64),
        pending_release: Vec::new(),
        pending_acks: VecDeque::new(),
        out_of_band: false,
        live_views: 0,
        refs_received: 0,
        releases_sent: 0,
        send_failed: false,
        releases_dropped: 0,
        closed: false,
    }
}

impl Drop for Attachments {
    /// Of a duplex channel whose registry lives on: the receiving side
    /// closes (every view and queued reference is released to the peer,
    /// every region unmapped, whatever comes later given back at once), so
    /// the peer's sender is not left holding leases until the registry is
    /// freed too.
    fn drop(&mut self) {
        if Arc::strong_count(&self.hub) == 1 {
            return;
        }
        let mut g = self.hub.lock();
        let Conn { link, rx, .. } = &mut g.s;
        if link.roles().send && !rx.is_closed() {
            rx.close(link);
            debug!("duplex attachments freed: receiving side closed");
        }
        self.hub.notify(&g);
    }
}

impl Unstarted<AttachmentsOptions> {
    /// Takes the socket and starts the attachments, saying HELLO (unless in
    /// vox compatibility mode); cannot fail. A HELLO that finds the socket
    /// full is said by a later call.
    pub fn start(self, chan: Channel) -> Attachments {
        let opts = self.opts;
        // A receiver takes the capacities the sender chooses.
        let ring = (opts.ring && !opts.vox_compat).then_some(Capacities {
            refs: 0,
            releases: 0,
        });
        let mut link = Link::new(chan, Roles::RECEIVER, ring, !opts.vox_compat);
        say_hello(&mut link, &opts);
        let fd = link.fd();
        debug!(fd, "attachments created");
        let conn = Conn {
            link,
            // Unused: an attachments' link takes no message for a sender.
            tx: crate::registry::new_side(&Default::default()),
            rx: new_side(&opts),
        };
        Attachments::from_hub(Arc::new(Hub::new(self.wake, fd, conn)), opts)
    }
}
