//! The receiver's side: receives fds, validates and maps them read-only,
//! resolves references to views, and releases them back to the sender.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{Ordering, fence};

use tracing::{debug, info, warn};

use crate::channel::{Channel, Message, Recv};
use crate::error::{Error, Result, Status};
use crate::hub::{Guard, Hub};
use crate::region::{Limits, Mapping};
use crate::sys::{self, Deadline};
use crate::wire::{self, Attach, Ext, Ref};

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
    pub pending_releases: u64,
    pub minor_faults: u64,
}

struct Mapped {
    generation: u32,
    map: Mapping,
    /// Live views per (offset, len): the RELEASE goes out when the last
    /// view of a reference is released.
    views: HashMap<(u64, u32), u32>,
    retire_pending: bool,
}

impl Mapped {
    fn view_count(&self) -> usize {
        self.views.len()
    }
}

struct State {
    maps: HashMap<u32, Mapped>,
    /// The highest generation ever attached (mapped or rejected) for each
    /// map_id. An ATTACH must carry a higher one, so a retired generation
    /// can never be mapped again and its references stay stale, whatever
    /// the sender does (ABA protection does not rest on the sender alone).
    highest: HashMap<u32, u32>,
    /// Regions whose ATTACH was rejected, with the rejection: references
    /// into them fail at once with it, and their RETIRE is acknowledged.
    rejected: HashMap<u32, (u32, Error)>,
    mapped_bytes: u64,
    queue: VecDeque<Ref>,
    pending_release: Vec<Ref>,
    pending_acks: VecDeque<Ext>,
    /// `resolve` was called: references may be travelling over the
    /// caller's own transport, so a gone sender's regions stay mapped.
    out_of_band: bool,
    /// The first ATTACH rejection `pump` met since `poll` last looked.
    rejection: Option<Error>,
    poisoned: Option<Error>,
    peer_gone: bool,
    live_views: u64,
    stats: AttachmentsStats,
}

/// The receiver's attachments. `Send + Sync`.
pub struct Attachments {
    hub: Hub<State>,
    opts: AttachmentsOptions,
}

/// Most references queued from the channel and not yet received. Beyond
/// it the channel is not read until `recv` takes some, so the socket
/// buffer fills and the sender waits (its memory is bounded by its budget,
/// this side's by this number).
const MAX_QUEUED_REFS: usize = 1 << 16;

/// Most messages one call reads from the channel, so a call with a timeout
/// of 0 takes bounded time however fast the sender writes.
const MAX_MESSAGES_PER_PUMP: usize = 1024;

/// Most distinct map_ids remembered (mapped, rejected or retired). A sender
/// reuses the map_ids of retired regions, so only a hostile one gets near.
const MAX_KNOWN_MAP_IDS: usize = 1 << 16;

fn protocol(msg: String) -> Error {
    Error::new(Status::VOXSHM_PROTOCOL, msg)
}

impl Attachments {
    /// Creates the attachments over `chan`, which they own from now on,
    /// and says HELLO to the sender (unless in vox compatibility mode).
    pub fn new(chan: Channel, opts: AttachmentsOptions) -> Result<Attachments> {
        Self::new_or_return(chan, opts).map_err(|(e, _)| e)
    }

    /// Like `new`, but a failure hands the channel back with the error, so
    /// a caller that was lent the fd can give it back unclosed.
    pub fn new_or_return(
        chan: Channel,
        mut opts: AttachmentsOptions,
    ) -> std::result::Result<Attachments, (Error, Channel)> {
        if opts.vox_compat {
            opts.limits.accept_unsealed = true;
        }
        let st = State {
            maps: HashMap::new(),
            highest: HashMap::new(),
            rejected: HashMap::new(),
            mapped_bytes: 0,
            // Room for a burst of references. Kept small on purpose: the
            // ring walks through all of its capacity, so a large one would
            // touch (and fault in) a new page every few hundred payloads.
            queue: VecDeque::with_capacity(64),
            pending_release: Vec::new(),
            pending_acks: VecDeque::new(),
            out_of_band: false,
            rejection: None,
            poisoned: None,
            peer_gone: false,
            live_views: 0,
            stats: AttachmentsStats::default(),
        };
        let att = Attachments {
            hub: Hub::new(chan, st)?,
            opts,
        };
        if !att.opts.vox_compat {
            let hello = Ext::Hello {
                version: wire::PROTOCOL_VERSION,
                role: wire::ROLE_RECEIVER,
                features: 0,
            }
            .encode();
            let mut g = att.hub.lock();
            let failed = match att.hub.chan.try_send(&hello, None) {
                Ok(true) => {
                    Self::count_sent(&mut g.s, hello.len());
                    None
                }
                Ok(false) => Some(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    "channel full: could not say HELLO",
                )),
                Err(e) if e.status == Status::VOXSHM_PEER_GONE => {
                    g.s.peer_gone = true;
                    None
                }
                Err(e) => Some(e),
            };
            drop(g);
            if let Some(e) = failed {
                return Err((e, att.hub.into_channel()));
            }
        }
        debug!(fd = att.hub.chan.raw(), "attachments created");
        Ok(att)
    }

    pub fn fd(&self) -> i32 {
        self.hub.chan.raw()
    }

    pub fn options(&self) -> &AttachmentsOptions {
        &self.opts
    }

    fn count_sent(st: &mut State, n: usize) {
        st.stats.messages_sent += 1;
        st.stats.bytes_sent += n as u64;
    }

    fn poison(&self, st: &mut State, e: Error) -> Error {
        warn!(reason = %e.message, "attachments: protocol error, channel poisoned");
        st.poisoned = Some(e.clone());
        e
    }

    fn check_poisoned(st: &State) -> Result<()> {
        match &st.poisoned {
            Some(e) => Err(Error::new(
                e.status,
                format!("channel is poisoned: {}", e.message),
            )),
            None => Ok(()),
        }
    }

    fn peer_gone(&self, st: &mut State) {
        if !st.peer_gone {
            st.peer_gone = true;
            st.pending_release.clear();
            st.pending_acks.clear();
            // Mappings nobody views, and that no reference still queued
            // for `recv` names, are of no more use.
            let before = st.maps.len();
            Self::drop_unviewed(st);
            info!(
                unmapped = before - st.maps.len(),
                kept = st.maps.len(),
                "attachments: sender gone"
            );
        }
    }

    /// True if a reference waiting in the queue points into this mapping.
    fn queued_into(st: &State, map_id: u32, generation: u32) -> bool {
        st.queue
            .iter()
            .any(|r| r.map_id == map_id && r.map_generation == generation)
    }

    /// Unmaps what nobody views and no queued reference points into: the
    /// sender is gone, so nothing else can resolve into it. Not after
    /// `resolve` was used: a reference may still be on its way over the
    /// caller's own transport, so the regions stay until the handle is
    /// freed.
    fn drop_unviewed(st: &mut State) {
        if st.out_of_band {
            return;
        }
        let gone: Vec<u32> = st
            .maps
            .iter()
            .filter(|(id, m)| m.view_count() == 0 && !Self::queued_into(st, **id, m.generation))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(m) = st.maps.remove(&id) {
                st.mapped_bytes -= m.map.len();
            }
            // Not retired: a reference into it is answered "sender gone",
            // not "stale" (no newer generation can come any more).
            st.highest.remove(&id);
        }
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

    /// Reads and applies waiting messages: at most `MAX_MESSAGES_PER_PUMP`
    /// per call, and none while `MAX_QUEUED_REFS` references wait for
    /// `recv`. An ATTACH that fails validation rejects only its region (it
    /// is remembered, and the first such error of the call is kept in
    /// `st.rejection` for `poll`); a malformed message poisons the channel
    /// and is returned.
    fn pump(&self, st: &mut State) -> Result<bool> {
        Self::check_poisoned(st)?;
        let mut changed = false;
        self.flush(st);
        let mut budget = MAX_MESSAGES_PER_PUMP;
        while !st.peer_gone && budget > 0 && st.queue.len() < MAX_QUEUED_REFS {
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
            changed = true;
            st.stats.messages_received += 1;
            st.stats.bytes_received += m.bytes.len() as u64;
            if let Err(e) = self.apply(st, m) {
                if st.poisoned.is_some() {
                    return Err(e);
                }
                if st.rejection.is_none() {
                    st.rejection = Some(e);
                }
            }
        }
        Ok(changed)
    }

    fn apply(&self, st: &mut State, mut m: Message) -> Result<()> {
        if m.fd_shortage && m.bytes.len() == wire::ATTACH_LEN {
            // The kernel dropped the fd because this process has none free:
            // not the sender's fault. Only this region is lost.
            let a = Attach::decode(&m.bytes)?;
            st.stats.attaches_received += 1;
            let e = Error::new(
                Status::VOXSHM_RESOURCE_EXHAUSTED,
                format!(
                    "region {}/{}: its fd could not be received, this process has no free file descriptor",
                    a.map_id, a.map_generation
                ),
            );
            return self
                .check_new_region(st, &a)
                .and_then(|()| self.reject(st, &a, e));
        }
        if m.ctrunc || m.trunc {
            let e = protocol(format!(
                "{}-byte message arrived truncated ({})",
                m.bytes.len(),
                if m.ctrunc {
                    "MSG_CTRUNC: more fds than a message may carry"
                } else {
                    "MSG_TRUNC"
                }
            ));
            drop(m.fds);
            return Err(self.poison(st, e));
        }
        if m.bytes.len() == wire::ATTACH_LEN || !m.fds.is_empty() {
            if m.bytes.len() != wire::ATTACH_LEN || m.fds.len() != 1 {
                let e = protocol(format!(
                    "ATTACH must be a 16-byte body with exactly one fd; got {} bytes with {} fd(s)",
                    m.bytes.len(),
                    m.fds.len()
                ));
                drop(m.fds);
                return Err(self.poison(st, e));
            }
            let a = Attach::decode(&m.bytes)?;
            let fd = m.fds.pop().expect("one fd");
            return self.attach(st, a, fd);
        }
        let msg = match Ext::decode(&m.bytes) {
            Ok(msg) => msg,
            Err(e) => return Err(self.poison(st, e)),
        };
        match msg {
            Ext::Hello { version, role, .. } => {
                if role != wire::ROLE_SENDER {
                    return Err(self.poison(
                        st,
                        protocol(format!("HELLO with role {role}: the peer is not a sender")),
                    ));
                }
                if version != wire::PROTOCOL_VERSION {
                    let e = Error::new(
                        Status::VOXSHM_VERSION_MISMATCH,
                        format!(
                            "sender speaks protocol version {version}, this library speaks {}",
                            wire::PROTOCOL_VERSION
                        ),
                    );
                    return Err(self.poison(st, e));
                }
                debug!(version, "attachments: sender said HELLO");
            }
            Ext::Ref(r) => {
                st.stats.refs_received += 1;
                st.queue.push_back(r);
            }
            Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            } => return self.retire(st, map_id, map_generation, mapping_length),
            other => {
                return Err(self.poison(
                    st,
                    protocol(format!("sender sent a receiver-only message {other:?}")),
                ));
            }
        }
        Ok(())
    }

    /// A RETIRE: the region is unmapped now, or once its last view is
    /// released, and acknowledged then. Only a region that is mapped (and
    /// not retiring already) or was rejected can be retired; anything else
    /// is a protocol error, so what a sender can make this side queue is
    /// bounded by the regions it has.
    fn retire(&self, st: &mut State, map_id: u32, generation: u32, length: u64) -> Result<()> {
        let ack = Ext::RetireAck {
            map_id,
            map_generation: generation,
            mapping_length: length,
        };
        match st.maps.get_mut(&map_id) {
            Some(m) if m.generation == generation && !m.retire_pending => {
                if m.view_count() == 0 {
                    if let Some(m) = st.maps.remove(&map_id) {
                        st.mapped_bytes -= m.map.len();
                    }
                    st.stats.regions_retired += 1;
                    debug!(map_id, generation, "RETIRE: unmapped");
                    st.pending_acks.push_back(ack);
                } else {
                    debug!(
                        map_id,
                        generation, "RETIRE: unmapping when its views are released"
                    );
                    m.retire_pending = true;
                }
            }
            _ if st.rejected.get(&map_id).is_some_and(|r| r.0 == generation) => {
                // Never mapped: nothing to unmap, acknowledge at once.
                st.rejected.remove(&map_id);
                st.pending_acks.push_back(ack);
            }
            _ => {
                return Err(self.poison(
                    st,
                    protocol(format!(
                        "RETIRE of region {map_id}/{generation}, which is neither mapped nor rejected (or is retiring already)"
                    )),
                ));
            }
        }
        self.flush(st);
        Ok(())
    }

    /// Checks that an ATTACH may introduce region `a` at all: a map_id
    /// mapped now is a duplicate; a generation not higher than every one
    /// seen for its map_id (a retired one, or one from before a wrap of the
    /// counter) is refused, so a stale reference can never resolve again.
    fn check_new_region(&self, st: &mut State, a: &Attach) -> Result<()> {
        let (id, generation) = (a.map_id, a.map_generation);
        if st.maps.contains_key(&id) {
            st.stats.attaches_rejected += 1;
            return Err(Error::new(
                Status::VOXSHM_DUPLICATE_ATTACH,
                format!("ATTACH of region {id}/{generation} while map_id {id} is still mapped"),
            ));
        }
        match st.highest.get(&id) {
            Some(&h) if generation <= h => {
                st.stats.attaches_rejected += 1;
                Err(Error::new(
                    Status::VOXSHM_STALE_GENERATION,
                    format!(
                        "ATTACH of region {id}/{generation}: generation {h} of map_id {id} was attached before, a new region must carry a higher one"
                    ),
                ))
            }
            None if st.highest.len() >= MAX_KNOWN_MAP_IDS => Err(self.poison(
                st,
                protocol(format!(
                    "ATTACH of region {id}/{generation}: the sender used more than {MAX_KNOWN_MAP_IDS} distinct map_ids"
                )),
            )),
            _ => Ok(()),
        }
    }

    /// Remembers a rejected region, so its references fail with `e` at
    /// once and its RETIRE is acknowledged; returns `e`.
    fn reject(&self, st: &mut State, a: &Attach, e: Error) -> Result<()> {
        st.stats.attaches_rejected += 1;
        warn!(map_id = a.map_id, generation = a.map_generation, error = %e, "ATTACH rejected");
        st.highest.insert(a.map_id, a.map_generation);
        st.rejected.insert(a.map_id, (a.map_generation, e.clone()));
        Err(e)
    }

    fn attach(&self, st: &mut State, a: Attach, fd: std::os::fd::OwnedFd) -> Result<()> {
        st.stats.attaches_received += 1;
        if a.mapping_length == 0 {
            // Malformed whatever the fd is: no region has 0 bytes.
            drop(fd);
            return Err(self.poison(
                st,
                protocol(format!(
                    "ATTACH of region {}/{} with mapping_length 0",
                    a.map_id, a.map_generation
                )),
            ));
        }
        if let Err(e) = self.check_new_region(st, &a) {
            drop(fd);
            return Err(e);
        }
        match Mapping::validate_and_map(
            fd,
            a.mapping_length,
            &self.opts.limits,
            st.maps.len(),
            st.mapped_bytes,
        ) {
            Ok(map) => {
                info!(
                    map_id = a.map_id,
                    generation = a.map_generation,
                    bytes = a.mapping_length,
                    "ATTACH received, region mapped"
                );
                st.mapped_bytes += map.len();
                st.highest.insert(a.map_id, a.map_generation);
                st.rejected.remove(&a.map_id);
                st.maps.insert(
                    a.map_id,
                    Mapped {
                        generation: a.map_generation,
                        map,
                        views: HashMap::new(),
                        retire_pending: false,
                    },
                );
                Ok(())
            }
            Err(e) => {
                let e = Error::new(
                    e.status,
                    format!("region {}/{}: {}", a.map_id, a.map_generation, e.message),
                );
                self.reject(st, &a, e)
            }
        }
    }

    /// Sends pending releases and acknowledgements without blocking.
    fn flush(&self, st: &mut State) {
        if self.opts.vox_compat || st.peer_gone {
            st.pending_release.clear();
            return;
        }
        while !st.pending_release.is_empty() {
            let n = st.pending_release.len().min(wire::MAX_RELEASE_ENTRIES);
            let b = Ext::Release(st.pending_release[..n].to_vec()).encode();
            match self.hub.chan.try_send(&b, None) {
                Ok(true) => {
                    Self::count_sent(st, b.len());
                    st.stats.releases_sent += n as u64;
                    st.pending_release.drain(..n);
                }
                Ok(false) => return,
                Err(e) => {
                    if e.status == Status::VOXSHM_PEER_GONE {
                        self.peer_gone(st);
                    }
                    return;
                }
            }
        }
        // Acknowledgements go after the releases that preceded them.
        while let Some(ack) = st.pending_acks.front() {
            let b = ack.encode();
            match self.hub.chan.try_send(&b, None) {
                Ok(true) => {
                    Self::count_sent(st, b.len());
                    st.pending_acks.pop_front();
                }
                _ => return,
            }
        }
    }

    /// Checks a reference against the mappings, in the documented order.
    fn check(&self, st: &State, r: &Ref) -> Result<*const u8> {
        Self::check_poisoned(st)?;
        let Some(m) = st.maps.get(&r.map_id) else {
            if let Some((g, e)) = st.rejected.get(&r.map_id)
                && *g == r.map_generation
            {
                return Err(e.clone());
            }
            return Err(match st.highest.get(&r.map_id) {
                Some(&g) if r.map_generation <= g => Error::new(
                    Status::VOXSHM_STALE_GENERATION,
                    format!(
                        "map_id {} generation {} was retired (newest generation: {g})",
                        r.map_id, r.map_generation
                    ),
                ),
                _ if st.peer_gone => Error::new(
                    Status::VOXSHM_PEER_GONE,
                    format!(
                        "region {}/{} is not attached, and the sender is gone",
                        r.map_id, r.map_generation
                    ),
                ),
                _ => Error::new(
                    Status::VOXSHM_UNKNOWN_MAP,
                    format!("map_id {} is not attached", r.map_id),
                ),
            });
        };
        if r.map_generation < m.generation {
            return Err(Error::new(
                Status::VOXSHM_STALE_GENERATION,
                format!(
                    "map_id {} generation {} is stale (mapped: {})",
                    r.map_id, r.map_generation, m.generation
                ),
            ));
        }
        if r.map_generation > m.generation {
            return Err(Error::new(
                Status::VOXSHM_UNKNOWN_MAP,
                format!(
                    "map_id {} generation {} is not attached yet (mapped: {})",
                    r.map_id, r.map_generation, m.generation
                ),
            ));
        }
        if r.payload_len == 0 {
            return Err(Error::new(
                Status::VOXSHM_ZERO_LENGTH,
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
                    Status::VOXSHM_REF_OVERFLOW,
                    format!(
                        "offset {} + length {} overflows",
                        r.map_offset, r.payload_len
                    ),
                )
            })?;
        if end > m.map.len() {
            return Err(Error::new(
                Status::VOXSHM_OUT_OF_BOUNDS,
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

    fn take_view(st: &mut State, r: Ref, data: *const u8) -> View {
        fence(Ordering::Acquire);
        if let Some(m) = st.maps.get_mut(&r.map_id) {
            *m.views.entry((r.map_offset, r.payload_len)).or_insert(0) += 1;
        }
        st.live_views += 1;
        View {
            data,
            len: r.payload_len as u64,
            r,
        }
    }

    /// Takes the next reference the sender sent over the channel and
    /// resolves it, waiting up to `timeout_ms`. A reference that fails to
    /// resolve is released back to the sender and its error returned.
    pub fn recv(&self, timeout_ms: i64) -> Result<View> {
        let deadline = Deadline::after_ms(timeout_ms);
        let mut g = self.hub.lock();
        loop {
            Self::check_poisoned(&g.s)?;
            if let Some(r) = g.s.queue.pop_front() {
                let res = match self.check(&g.s, &r) {
                    Ok(p) => Ok(Self::take_view(&mut g.s, r, p)),
                    Err(e) => {
                        warn!(?r, error = %e, "received reference does not resolve; releasing it");
                        g.s.pending_release.push(r);
                        self.flush(&mut g.s);
                        Err(e)
                    }
                };
                if g.s.peer_gone {
                    // That may have been the last reference into a region.
                    Self::drop_unviewed(&mut g.s);
                }
                return res;
            }
            let changed = self.pump_notify(&mut g)?;
            if !g.s.queue.is_empty() {
                continue;
            }
            if g.s.peer_gone {
                return Err(Error::new(
                    Status::VOXSHM_PEER_GONE,
                    "the sender closed the channel or died",
                ));
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    "no payload arrived before the timeout",
                ));
            }
            if !changed {
                g = self.hub.wait(g, deadline)?;
            }
        }
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
        g.s.out_of_band = true;
        loop {
            let e = match self.check(&g.s, r) {
                Ok(p) => return Ok(Self::take_view(&mut g.s, *r, p)),
                Err(e) if e.status == Status::VOXSHM_UNKNOWN_MAP && !g.s.peer_gone => e,
                Err(e) => return Err(e),
            };
            if g.s.queue.len() >= MAX_QUEUED_REFS {
                return Err(Error::new(
                    Status::VOXSHM_RESOURCE_EXHAUSTED,
                    format!(
                        "{}: {MAX_QUEUED_REFS} references sent over the channel wait for recv, and nothing more is read until they are taken",
                        e.message
                    ),
                ));
            }
            let changed = self.pump_notify(&mut g)?;
            match self.check(&g.s, r) {
                Ok(p) => return Ok(Self::take_view(&mut g.s, *r, p)),
                Err(e) if e.status == Status::VOXSHM_UNKNOWN_MAP && !g.s.peer_gone => {
                    if timeout_ms == 0 {
                        return Err(e);
                    }
                    if deadline.expired() {
                        return Err(Error::new(
                            Status::VOXSHM_TIMEOUT,
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
        let st = &mut g.s;
        let r = v.r;
        let key = (r.map_offset, r.payload_len);
        let m = st
            .maps
            .get_mut(&r.map_id)
            .filter(|m| m.generation == r.map_generation && m.views.contains_key(&key))
            .ok_or_else(|| {
                Error::new(
                    Status::VOXSHM_INVALID_VIEW,
                    format!("view of {r:?} is not held: never resolved, or released already"),
                )
            })?;
        // The view must point where its reference says (a caller may have
        // changed the struct); only addresses are compared, nothing is read.
        if v.data != m.map.base().wrapping_add(r.map_offset as usize)
            || v.len != r.payload_len as u64
        {
            return Err(Error::new(
                Status::VOXSHM_INVALID_VIEW,
                "view's pointer or length does not match its reference",
            ));
        }
        let c = m.views.get_mut(&key).expect("checked above");
        *c -= 1;
        let last = *c == 0;
        if last {
            m.views.remove(&key);
        }
        let generation = m.generation;
        let retired = m.retire_pending;
        let unmap = m.views.is_empty()
            && (retired
                || (st.peer_gone
                    && !st.out_of_band
                    && !Self::queued_into(st, r.map_id, generation)));
        st.live_views -= 1;
        if last && !st.peer_gone && !self.opts.vox_compat {
            st.pending_release.push(r);
        }
        if unmap {
            if let Some(m) = st.maps.remove(&r.map_id) {
                st.mapped_bytes -= m.map.len();
            }
            if retired && !st.peer_gone {
                st.stats.regions_retired += 1;
                st.pending_acks.push_back(Ext::RetireAck {
                    map_id: r.map_id,
                    map_generation: r.map_generation,
                    mapping_length: 0,
                });
            }
        }
        self.flush(st);
        // A full channel: wait for room while reading what the sender sends
        // meanwhile (so neither side blocks the other). Only `flush` (which
        // `pump` also runs) sends releases, so each goes out exactly once.
        let deadline = Deadline::after_ms(self.opts.send_timeout_ms);
        while !st.pending_release.is_empty()
            && !st.peer_gone
            && st.poisoned.is_none()
            && !deadline.expired()
        {
            // While `recv` has a full queue nothing more is read: wait for
            // room only, or this loop would spin on a readable socket.
            let read = if st.queue.len() < MAX_QUEUED_REFS {
                libc::POLLIN
            } else {
                0
            };
            let mut p = [sys::pollfd(self.hub.chan.raw(), libc::POLLOUT | read)];
            if sys::poll(&mut p, deadline).is_err() {
                break;
            }
            if p[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
                && self.pump_into_queue(st).is_err()
            {
                // Poisoned: nothing more is read or sent on this channel.
                break;
            }
            self.flush(st);
        }
        if !st.pending_release.is_empty() && !st.peer_gone {
            warn!(
                pending = st.pending_release.len(),
                "releases kept pending: the channel stayed full"
            );
        }
        self.hub.notify(&g);
        Ok(())
    }

    fn pump_into_queue(&self, st: &mut State) -> Result<()> {
        // A rejected region met here is remembered; its references fail
        // when they are received.
        self.pump(st).map(|_| ())
    }

    /// Applies what the sender sent, without waiting (at most
    /// `MAX_MESSAGES_PER_PUMP` messages: the fd stays readable if more
    /// wait). For callers driving their own event loop. Returns the first
    /// ATTACH rejection it met, after applying everything else.
    pub fn poll(&self) -> Result<()> {
        let mut g = self.hub.lock();
        g.s.rejection = None;
        self.pump_notify(&mut g)?;
        match g.s.rejection.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn stats(&self) -> AttachmentsStats {
        let g = self.hub.lock();
        let st = &g.s;
        let mut s = st.stats;
        s.mappings = st.maps.len() as u64;
        s.mapped_bytes = st.mapped_bytes;
        s.live_views = st.live_views;
        s.queued_refs = st.queue.len() as u64;
        s.pending_releases = st.pending_release.len() as u64;
        // The channel and the wake-up eventfd: region fds are closed as
        // soon as they are mapped.
        s.open_fds = 2;
        s.minor_faults = sys::minor_faults();
        s
    }

    pub fn peer_is_gone(&self) -> bool {
        let mut g = self.hub.lock();
        let _ = self.pump_notify(&mut g);
        g.s.peer_gone
    }
}
