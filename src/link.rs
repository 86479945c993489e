//! One connection to one peer, the same type on both sides.
//!
//! A link owns the socket and everything about the connection that is not
//! about payloads: the HELLO exchange, message shapes and directions,
//! poisoning, the peer's hang-up (including `ECONNRESET`, after which the
//! peer's queued messages are still read), and the message counters. The
//! registry and the attachments hold a link and never touch a socket; what
//! they get from it are well-formed messages meant for their role, through
//! `Link::pump`.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::channel::{Channel, Message, Recv};
use crate::error::{Error, Result, Status};
use crate::ring::{Capacities, Segment};
use crate::sys::Deadline;
use crate::wire::{self, Attach, Ext, Ref};

/// One of the two roles a side of a link can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends regions and references (a registry).
    Sender,
    /// Maps regions and releases references (attachments).
    Receiver,
}

/// The roles one side of a link takes: a sender, a receiver, or both (a
/// duplex channel, on which each side sends to the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub send: bool,
    pub recv: bool,
}

/// cbindgen:ignore
impl Roles {
    pub const SENDER: Roles = Roles {
        send: true,
        recv: false,
    };
    pub const RECEIVER: Roles = Roles {
        send: false,
        recv: true,
    };
    pub const DUPLEX: Roles = Roles {
        send: true,
        recv: true,
    };

    /// The HELLO `role` field: a bitmask of `ROLE_SENDER` and
    /// `ROLE_RECEIVER`.
    pub fn wire(self) -> u32 {
        (if self.send { wire::ROLE_SENDER } else { 0 })
            | (if self.recv { wire::ROLE_RECEIVER } else { 0 })
    }

    /// The roles the peer must take: each role of one side meets the
    /// other role on the other side.
    pub fn peer(self) -> Roles {
        Roles {
            send: self.recv,
            recv: self.send,
        }
    }

    pub fn has(self, role: Role) -> bool {
        match role {
            Role::Sender => self.send,
            Role::Receiver => self.recv,
        }
    }

    pub fn name(self) -> &'static str {
        match (self.send, self.recv) {
            (true, false) => "sender",
            (false, true) => "receiver",
            _ => "duplex peer",
        }
    }
}

/// The state of the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected; neither side has said HELLO (yet, or ever: a vox peer
    /// never does).
    Quiet,
    /// This side said HELLO; the peer has not yet.
    HelloSent,
    /// The peer said HELLO; this side has not yet.
    PeerHello,
    /// Both sides said HELLO.
    Ready,
    /// The peer closed its end or died.
    Gone,
    /// The peer broke the protocol: nothing more is read or sent, and every
    /// call fails with this error.
    Poisoned(Error),
}

/// Message counters of a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub messages_received: u64,
    pub bytes_received: u64,
}

/// What the link hands to its owner: well-formed messages meant for its
/// role, and the peer's hang-up.
#[derive(Debug)]
pub enum Incoming {
    /// A region announcement with its one fd (to a receiver).
    Attach(Attach, OwnedFd),
    /// A region announcement whose fd this process could not receive: it
    /// had no free descriptor (to a receiver).
    AttachLost(Attach),
    /// An extension message other than HELLO, in the right direction.
    Ext(Ext),
    /// The peer is gone; everything it sent before has been handed over.
    Gone,
}

/// The owner of a link (a registry's or an attachments' state): what it
/// does with each delivered message.
pub trait Endpoint {
    /// Applies one message. A protocol error (`VOXSHM_PROTOCOL`,
    /// `VOXSHM_VERSION_MISMATCH`) poisons the link; any other error rejects
    /// only what the message was about.
    fn apply(&mut self, link: &mut Link, m: Incoming) -> Result<()>;

    /// Whether to read more now (an owner whose queue is full says no, so
    /// the socket pushes back on the peer).
    fn wants_more(&self) -> bool {
        true
    }
}

/// Most messages one `pump` reads, so a call with a timeout of 0 takes
/// bounded time however fast the peer writes.
pub const MAX_MESSAGES_PER_PUMP: usize = 1024;

/// How often a side whose ring is quiet reads its socket anyway, to notice
/// a hang-up (which changes no count in the segment): at most once per
/// this many quiet checks, and only when this long has passed since the
/// last read.
const QUIET_CHECKS_PER_CLOCK: u32 = 64;
const QUIET_READ_INTERVAL: Duration = Duration::from_millis(2);

/// How long after sending its own segment a duplex side reads its socket
/// on every look, for the peer's segment sent at the same moment.
const SEGMENT_AWAITED: Duration = Duration::from_millis(20);

/// The ring path's state of a link.
#[derive(Debug)]
struct Ring {
    /// This side announces the feature, with these capacities (a sender's
    /// choice for the segment it makes; a receiver takes what the sender
    /// made).
    wanted: Option<Capacities>,
    /// The peer's HELLO announced the feature.
    peer_has: bool,
    /// The segment this side's sender role made and sent: references out,
    /// releases in.
    out: Option<Segment>,
    /// The segment the peer's sender made, received by this side's
    /// receiver role: references in, releases out.
    inp: Option<Segment>,
    /// This side could not make a segment: its references stay on the
    /// socket.
    unavailable: bool,
    /// The last read of the socket stopped before it was empty.
    socket_unread: bool,
    quiet_checks: u32,
    last_read: Instant,
    wakes_sent: u64,
    /// When this side sent its own segment.
    out_sent: Option<Instant>,
}

/// One connection to one peer.
#[derive(Debug)]
pub struct Link {
    chan: Channel,
    roles: Roles,
    state: State,
    counters: Counters,
    ring: Ring,
    /// This side may send extension messages (not in vox compatibility).
    extensions: bool,
}

/// An owner's verdict on a message is an error of one of two kinds,
/// told apart by status: `VOXSHM_PROTOCOL` and `VOXSHM_VERSION_MISMATCH`
/// poison the link; any other status rejects only what the message was
/// about, and `pump` goes on.
fn poisons(e: &Error) -> bool {
    matches!(e.status, Status::Protocol | Status::VersionMismatch)
}

fn protocol(msg: String) -> Error {
    Error::new(Status::Protocol, msg)
}

impl Link {
    /// A link over `chan`; `ring`: announce the ring path (a sender with
    /// the capacities of the segment it will make); `extensions`: this side
    /// may send extension messages at all (not to a vox peer).
    ///
    /// A datagram socket shows no hang-up, and a peer's death is only seen
    /// when a send to it fails: with references in a ring nothing would be
    /// sent, so such a link keeps to the socket path.
    pub fn new(chan: Channel, roles: Roles, ring: Option<Capacities>, extensions: bool) -> Link {
        let ring = ring.filter(|_| chan.kind() == crate::channel::Kind::SeqPacket);
        Link {
            chan,
            roles,
            state: State::Quiet,
            counters: Counters::default(),
            ring: Ring {
                wanted: ring,
                peer_has: false,
                out: None,
                inp: None,
                unavailable: false,
                socket_unread: false,
                quiet_checks: 0,
                last_read: Instant::now(),
                wakes_sent: 0,
                out_sent: None,
            },
            extensions,
        }
    }

    /// Ends this side's sending (the peer sees it go); what the peer sends
    /// can still be read.
    pub fn shutdown_write(&mut self) {
        self.chan.shutdown_write();
    }

    /// Whether the socket has room for a message now.
    pub fn socket_writable(&self) -> bool {
        self.chan.writable()
    }

    /// The roles this side takes.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// The socket's fd, for poll/epoll.
    pub fn fd(&self) -> RawFd {
        self.chan.raw()
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn is_gone(&self) -> bool {
        self.state == State::Gone
    }

    pub fn is_poisoned(&self) -> bool {
        matches!(self.state, State::Poisoned(_))
    }

    /// The peer's HELLO has arrived.
    pub fn peer_said_hello(&self) -> bool {
        matches!(self.state, State::PeerHello | State::Ready)
    }

    fn said_hello(&self) -> bool {
        matches!(self.state, State::HelloSent | State::Ready)
    }

    /// Fails if the link is poisoned (with the error that poisoned it).
    pub fn check_poisoned(&self) -> Result<()> {
        match &self.state {
            State::Poisoned(e) => Err(Error::new(
                e.status,
                format!("channel is poisoned: {}", e.message),
            )),
            _ => Ok(()),
        }
    }

    /// Fails if the link is poisoned, or the peer is gone.
    pub fn check_usable(&self) -> Result<()> {
        self.check_poisoned()?;
        if self.is_gone() {
            return Err(Error::new(
                Status::PeerGone,
                format!(
                    "the {} closed the channel or died",
                    self.roles.peer().name()
                ),
            ));
        }
        Ok(())
    }

    /// Poisons the link with `e` and returns it.
    pub fn poison(&mut self, e: Error) -> Error {
        if !self.is_poisoned() {
            warn!(role = self.roles.name(), reason = %e.message, "protocol error, channel poisoned");
            self.state = State::Poisoned(e.clone());
        }
        e
    }

    /// Marks the peer gone (a send found it so); true if it was not yet.
    pub fn mark_gone(&mut self) -> bool {
        if matches!(self.state, State::Gone | State::Poisoned(_)) {
            return false;
        }
        self.state = State::Gone;
        true
    }

    fn count_sent(&mut self, n: usize) {
        self.counters.messages_sent += 1;
        self.counters.bytes_sent += n as u64;
        // Noted in both segments of a duplex link: the peer looks at
        // whichever it has.
        for seg in [&mut self.ring.out, &mut self.ring.inp]
            .into_iter()
            .flatten()
        {
            seg.note_socket_message();
        }
    }

    /// Queues one message without blocking; `Ok(false)` when the socket is
    /// full and nothing was queued.
    /// Nothing is sent on a poisoned link, nor to a peer that is gone.
    pub fn try_send(&mut self, bytes: &[u8], fd: Option<RawFd>) -> Result<bool> {
        self.check_usable()?;
        let sent = self.chan.try_send(bytes, fd)?;
        if sent {
            self.count_sent(bytes.len());
        }
        Ok(sent)
    }

    fn hello(&self) -> Vec<u8> {
        Ext::Hello {
            version: wire::PROTOCOL_VERSION,
            role: self.roles.wire(),
            features: if self.ring.wanted.is_some() {
                wire::FEATURE_RING
            } else {
                0
            },
        }
        .encode()
    }

    fn note_hello_sent(&mut self) {
        self.state = match self.state {
            State::Quiet => State::HelloSent,
            State::PeerHello => State::Ready,
            ref s => s.clone(),
        };
    }

    /// A sender answers the receiver's HELLO as soon as it has read it
    /// (the receiver sends nothing else before), without blocking: a full
    /// socket is tried again by the next read. So does a duplex side.
    fn answer_hello(&mut self) {
        if self.owes_hello() {
            let _ = self.try_say_hello();
        }
    }

    /// A sender that read the receiver's HELLO and could not answer yet
    /// (the socket was full): it must not sleep long without trying again,
    /// since the receiver sends nothing more until it has the answer.
    pub fn owes_hello(&self) -> bool {
        self.roles.send && self.extensions && self.peer_said_hello() && !self.said_hello()
    }

    /// Says HELLO now if it has not been said, without blocking.
    /// `Ok(false)`: the socket is full.
    pub fn try_say_hello(&mut self) -> Result<bool> {
        self.check_usable()?;
        if self.said_hello() {
            return Ok(true);
        }
        let hello = self.hello();
        if !self.try_send(&hello, None)? {
            return Ok(false);
        }
        self.note_hello_sent();
        Ok(true)
    }

    /// Sends an extension message without blocking, saying HELLO first if
    /// needed. False when it could not go out now (the peer has not said
    /// HELLO, or the socket is full, or the peer is gone).
    pub fn try_send_ext(&mut self, msg: &Ext) -> bool {
        if !self.peer_said_hello() || !matches!(self.try_say_hello(), Ok(true)) {
            return false;
        }
        matches!(self.try_send(&msg.encode(), None), Ok(true))
    }

    /// Sends one message, waiting up to `deadline` for room in the socket.
    /// While it waits, `drain` is called whenever the socket is readable,
    /// so the peer is never deadlocked writing to us while we write to it;
    /// it returns whether it read anything.
    /// `with_hello`: say HELLO first if it has not been said.
    pub fn send_blocking(
        &mut self,
        bytes: &[u8],
        fd: Option<RawFd>,
        with_hello: bool,
        deadline: Deadline,
        mut drain: impl FnMut(&mut Link) -> Result<bool>,
    ) -> Result<()> {
        self.check_usable()?;
        if with_hello && !self.said_hello() {
            let hello = self.hello();
            self.send_one(&hello, None, deadline, &mut drain)?;
            self.note_hello_sent();
        }
        self.send_one(bytes, fd, deadline, &mut drain)
    }

    fn send_one(
        &mut self,
        bytes: &[u8],
        fd: Option<RawFd>,
        deadline: Deadline,
        drain: &mut impl FnMut(&mut Link) -> Result<bool>,
    ) -> Result<()> {
        // The channel's wait loop calls back into `drain`, which needs the
        // whole link: hand the socket over by its fd for the wait.
        let chan = self.chan.raw();
        let r = Channel::send_on(chan, bytes, fd, deadline, || drain(self));
        if r.is_ok() {
            self.count_sent(bytes.len());
        }
        r
    }

    /// Reads and checks up to `MAX_MESSAGES_PER_PUMP` messages and hands
    /// each well-formed one meant for this role to `owner`, then the
    /// hang-up (`Incoming::Gone`, once). Malformed messages, and errors of
    /// the owner that are protocol errors, poison the link and are
    /// returned; other errors of the owner reject only what their message
    /// was about: the first of them is returned in `Pumped::rejected` and
    /// reading goes on. Reading stops while the owner does not want more.
    pub fn pump(&mut self, owner: &mut impl Endpoint) -> Result<Pumped> {
        self.check_poisoned()?;
        self.answer_hello();
        let mut out = Pumped::default();
        let mut budget = MAX_MESSAGES_PER_PUMP;
        if self.ring.out.is_some() || self.ring.inp.is_some() {
            self.ring.last_read = Instant::now();
            self.ring.quiet_checks = 0;
        }
        // Cleared once the socket is found empty.
        self.ring.socket_unread = true;
        while !self.is_gone() && budget > 0 && owner.wants_more() {
            budget -= 1;
            let m = match self.chan.try_recv() {
                Ok(Recv::Empty) => {
                    self.ring.socket_unread = false;
                    break;
                }
                Ok(Recv::Eof) => None,
                Ok(Recv::Msg(m)) => Some(m),
                Err(e) if e.status == Status::PeerGone => None,
                Err(e) => return Err(e),
            };
            out.changed = true;
            let incoming = match m {
                None => {
                    self.state = State::Gone;
                    self.ring.socket_unread = false;
                    debug!(role = self.roles.name(), "peer gone");
                    Incoming::Gone
                }
                Some(m) => {
                    self.counters.messages_received += 1;
                    self.counters.bytes_received += m.bytes.len() as u64;
                    match self.check(m) {
                        Ok(Some(i)) => i,
                        Ok(None) => continue,
                        Err(e) => return Err(self.poison(e)),
                    }
                }
            };
            if let Err(e) = owner.apply(self, incoming) {
                if poisons(&e) {
                    return Err(self.poison(e));
                }
                if out.rejected.is_none() {
                    out.rejected = Some(e);
                }
            }
        }
        self.answer_hello();
        Ok(out)
    }

    /// Checks one message's shape and direction; HELLO is taken here.
    fn check(&mut self, mut m: Message) -> Result<Option<Incoming>> {
        let attach_shaped = m.bytes.len() == wire::ATTACH_LEN;
        if self.roles.recv && m.fd_shortage && attach_shaped {
            return Ok(Some(Incoming::AttachLost(Attach::decode(&m.bytes)?)));
        }
        if self.roles.recv
            && m.fd_shortage
            && matches!(Ext::decode(&m.bytes), Ok(Ext::Segment { .. }))
        {
            // Not the sender's fault, but the link cannot go on without
            // the segment: its references will be in it.
            return Err(Error::new(
                Status::ResourceExhausted,
                "the ring segment's fd could not be received: this process has no free file descriptor",
            ));
        }
        if m.ctrunc || m.trunc {
            return Err(protocol(format!(
                "{}-byte message from the {} arrived truncated ({})",
                m.bytes.len(),
                self.roles.peer().name(),
                if m.ctrunc {
                    "MSG_CTRUNC: more fds than a message may carry"
                } else {
                    "MSG_TRUNC"
                }
            )));
        }
        if !attach_shaped
            && m.fds.len() == 1
            && self.roles.recv
            && let Ok(Ext::Segment {
                segment_len,
                refs_capacity,
                releases_capacity,
            }) = Ext::decode(&m.bytes)
        {
            let fd = m.fds.pop().expect("one fd");
            let caps = Capacities {
                refs: refs_capacity,
                releases: releases_capacity,
            };
            self.take_segment(fd, segment_len, caps)?;
            return Ok(None);
        }
        if attach_shaped || !m.fds.is_empty() {
            if !self.roles.recv {
                return Err(protocol(format!(
                    "{} sent a {}-byte message with {} fd(s){}",
                    self.roles.peer().name(),
                    m.bytes.len(),
                    m.fds.len(),
                    if attach_shaped {
                        ": a region from the peer (an ATTACH) needs a duplex channel on both sides (voxshm_duplex_new)"
                    } else {
                        ""
                    }
                )));
            }
            if !attach_shaped || m.fds.len() != 1 {
                return Err(protocol(format!(
                    "ATTACH must be a 16-byte body with exactly one fd; got {} bytes with {} fd(s)",
                    m.bytes.len(),
                    m.fds.len()
                )));
            }
            let fd = m.fds.pop().expect("one fd");
            return Ok(Some(Incoming::Attach(Attach::decode(&m.bytes)?, fd)));
        }
        let msg = Ext::decode(&m.bytes)?;
        let toward_receiver = match &msg {
            Ext::Hello {
                version,
                role,
                features,
            } => {
                self.peer_hello(*version, *role, *features)?;
                return Ok(None);
            }
            Ext::Wake => return Ok(None),
            Ext::Segment { .. } => {
                return Err(protocol(format!(
                    "{} sent a SEGMENT message {}",
                    self.roles.peer().name(),
                    if !self.roles.recv {
                        "(only a sender makes the segment)"
                    } else {
                        "without exactly one fd"
                    }
                )));
            }
            Ext::Ref(_) | Ext::Retire { .. } => true,
            Ext::Release(_) | Ext::RetireAck { .. } => false,
        };
        let to = if toward_receiver {
            Role::Receiver
        } else {
            Role::Sender
        };
        if !self.roles.has(to) {
            return Err(protocol(format!(
                "{} sent {msg:?}, a message for a {}, to a {}",
                self.roles.peer().name(),
                if toward_receiver {
                    "receiver"
                } else {
                    "sender"
                },
                self.roles.name()
            )));
        }
        Ok(Some(Incoming::Ext(msg)))
    }

    /// The receiver takes the segment the sender made: only after both
    /// sides announced the ring, only once, and only if the message says
    /// what the segment's own header says.
    fn take_segment(&mut self, fd: OwnedFd, len: u64, caps: Capacities) -> Result<()> {
        if self.ring.wanted.is_none() || !self.ring.peer_has || !self.said_hello() {
            return Err(protocol(
                "sender sent a ring segment, but the ring path was not agreed in HELLO".into(),
            ));
        }
        if self.ring.inp.is_some() {
            return Err(protocol("sender sent a second ring segment".into()));
        }
        let seg = Segment::attach(fd)?;
        if seg.capacities() != caps || seg.byte_len() != len {
            return Err(protocol(format!(
                "SEGMENT says {len} bytes with capacities {}/{}; the segment's header says {} bytes, {}/{}",
                caps.refs,
                caps.releases,
                seg.byte_len(),
                seg.capacities().refs,
                seg.capacities().releases
            )));
        }
        debug!(
            len,
            refs = caps.refs,
            releases = caps.releases,
            "ring segment attached"
        );
        // Counted as a socket message: what this side sent before it had
        // the segment (releases, acknowledgements) is then read by the
        // sender, which otherwise reads its socket only on a new count.
        let mut seg = seg;
        seg.note_socket_message();
        self.ring.inp = Some(seg);
        Ok(())
    }

    fn segment(&mut self, role: Role) -> &mut Option<Segment> {
        match role {
            Role::Sender => &mut self.ring.out,
            Role::Receiver => &mut self.ring.inp,
        }
    }

    /// The ring path is in use for `role` (its segment was sent or
    /// received).
    pub fn ring_active(&self, role: Role) -> bool {
        match role {
            Role::Sender => self.ring.out.is_some(),
            Role::Receiver => self.ring.inp.is_some(),
        }
    }

    /// Entries of the ring `role` consumes (0 without a segment): releases
    /// for a sender, references for a receiver.
    pub fn ring_capacity(&self, role: Role) -> u64 {
        let seg = match role {
            Role::Sender => &self.ring.out,
            Role::Receiver => &self.ring.inp,
        };
        seg.as_ref().map_or(0, |seg| {
            let c = seg.capacities();
            u64::from(match role {
                Role::Sender => c.releases,
                Role::Receiver => c.refs,
            })
        })
    }

    /// Wake-up messages this side sent.
    pub fn wakes_sent(&self) -> u64 {
        self.ring.wakes_sent
    }

    /// A sender that agreed the ring path with its receiver makes the
    /// segment and sends it (waiting up to `deadline` for room, draining as
    /// `send_blocking` does). Without memfd sealing it stays on the socket.
    pub fn start_ring(
        &mut self,
        deadline: Deadline,
        mut drain: impl FnMut(&mut Link) -> Result<bool>,
    ) -> Result<()> {
        let agreed = self.roles.send
            && self.ring.peer_has
            && self.state == State::Ready
            && self.ring.out.is_none()
            && !self.ring.unavailable;
        let Some(caps) = self.ring.wanted.filter(|_| agreed) else {
            return Ok(());
        };
        let (seg, fd) = match Segment::create(caps) {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "no ring segment; references go over the socket");
                self.ring.unavailable = true;
                return Ok(());
            }
        };
        let msg = Ext::Segment {
            segment_len: seg.byte_len(),
            refs_capacity: caps.refs,
            releases_capacity: caps.releases,
        }
        .encode();
        self.send_one(&msg, Some(fd.as_raw_fd()), deadline, &mut drain)?;
        debug!(
            refs = caps.refs,
            releases = caps.releases,
            "ring segment sent"
        );
        self.ring.out = Some(seg);
        self.ring.out_sent = Some(Instant::now());
        Ok(())
    }

    /// Reads the socket if something may wait there: always without a
    /// ring; with one, when the peer's count of socket messages changed,
    /// the last read stopped early, or (to notice a hang-up) now and then.
    /// Otherwise makes no system call.
    pub fn pump_if_due(&mut self, owner: &mut impl Endpoint) -> Result<Pumped> {
        self.check_poisoned()?;
        // A receiving role that agreed the ring and has no segment yet
        // reads for a short while after this side sent its own: when both
        // sides made theirs at once, the peer's SEGMENT is counted in no
        // segment this side has. (A peer that took ours counts what it
        // sends in it; one that never sends makes this side read nothing.)
        let segment_awaited = self.roles.recv
            && self.ring.inp.is_none()
            && self.ring.peer_has
            && self.ring.wanted.is_some()
            && self
                .ring
                .out_sent
                .is_some_and(|t| t.elapsed() < SEGMENT_AWAITED);
        let due = match (&mut self.ring.out, &mut self.ring.inp) {
            (None, None) => true,
            _ if segment_awaited => true,
            (out, inp) => {
                // Both looked at: each remembers the count it saw.
                let out_sent = out.as_mut().is_some_and(|s| s.peer_sent_on_socket());
                let inp_sent = inp.as_mut().is_some_and(|s| s.peer_sent_on_socket());
                self.ring.socket_unread || out_sent || inp_sent || {
                    self.ring.quiet_checks += 1;
                    self.ring
                        .quiet_checks
                        .is_multiple_of(QUIET_CHECKS_PER_CLOCK)
                        && self.ring.last_read.elapsed() >= QUIET_READ_INTERVAL
                }
            }
        };
        if !due || self.is_gone() {
            return Ok(Pumped::default());
        }
        self.pump(owner)
    }

    fn ring_error(&mut self, e: crate::ring::RingError) -> Error {
        self.poison(e.into())
    }

    /// Tells a sleeping peer to look at the ring. A full socket needs no
    /// wake-up message: the peer has something to read already.
    fn wake_peer(&mut self) {
        if self.check_usable().is_err() {
            return;
        }
        if let Ok(true) = self.chan.try_send(&Ext::Wake.encode(), None) {
            self.count_sent(wire::HEADER_LEN);
            self.ring.wakes_sent += 1;
        }
    }

    /// Pushes a reference (`role` sender) or a release (receiver) into
    /// the ring that role produces, waking the peer if it sleeps.
    /// `Ok(false)`: the ring is full. A broken ring poisons the link.
    pub fn push(&mut self, role: Role, r: &Ref) -> Result<bool> {
        self.check_poisoned()?;
        let Some(seg) = self.segment(role) else {
            return Ok(false);
        };
        match seg.push(r) {
            Ok(true) => {
                if seg.peer_needs_wake_for_entries() {
                    self.wake_peer();
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => Err(self.ring_error(e)),
        }
    }

    /// Takes the next entry of the ring `role` consumes (copied and
    /// checked for shape), waking the peer if it waits for room.
    pub fn pop(&mut self, role: Role) -> Result<Option<Ref>> {
        self.check_poisoned()?;
        let Some(seg) = self.segment(role) else {
            return Ok(None);
        };
        match seg.pop() {
            Ok(Some(r)) => {
                if seg.peer_needs_wake_for_room() {
                    self.wake_peer();
                }
                Ok(Some(r))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(self.ring_error(e)),
        }
    }

    /// Whether the reference ring this side's sender produces has room
    /// (false without a segment).
    pub fn ring_has_room(&mut self) -> Result<bool> {
        let Some(seg) = &mut self.ring.out else {
            return Ok(false);
        };
        seg.has_room().map_err(|e| self.ring_error(e))
    }

    /// Whether the ring `role` consumes has an entry waiting.
    pub fn ring_has_entries(&mut self, role: Role) -> Result<bool> {
        let Some(seg) = self.segment(role) else {
            return Ok(false);
        };
        seg.has_entries().map_err(|e| self.ring_error(e))
    }

    /// Before `role` sleeps for entries: announces it in the segment, then looks
    /// again. True: still nothing, sleep (the peer sends a wake-up with its
    /// next entry); false: something came. Without a ring: true.
    pub fn prepare_sleep(&mut self, role: Role) -> Result<bool> {
        let Some(seg) = self.segment(role) else {
            return Ok(true);
        };
        seg.prepare_sleep().map_err(|e| self.ring_error(e))
    }

    /// Before sleeping for room in the ring `role` produces: announces
    /// it, then looks again. True: still full, sleep.
    pub fn prepare_wait_for_room(&mut self, role: Role) -> Result<bool> {
        let Some(seg) = self.segment(role) else {
            return Ok(true);
        };
        seg.prepare_wait_for_room().map_err(|e| self.ring_error(e))
    }

    fn peer_hello(&mut self, version: u32, role: u32, features: u64) -> Result<()> {
        let want = self.roles.peer();
        if role != want.wire() {
            return Err(protocol(format!(
                "HELLO with role {role}: the peer is not a {} (role {}){}",
                want.name(),
                want.wire(),
                if role == wire::ROLE_SENDER | wire::ROLE_RECEIVER || want == Roles::DUPLEX {
                    ": a duplex channel needs duplex on both sides"
                } else {
                    ""
                }
            )));
        }
        if version != wire::PROTOCOL_VERSION {
            return Err(Error::new(
                Status::VersionMismatch,
                format!(
                    "{} speaks protocol version {version}, this library speaks {}",
                    want.name(),
                    wire::PROTOCOL_VERSION
                ),
            ));
        }
        debug!(version, features, peer = want.name(), "peer said HELLO");
        // Bits this library does not know are the peer's to offer and ours
        // to ignore.
        self.ring.peer_has = features & wire::FEATURE_RING != 0;
        self.state = match self.state {
            State::Quiet => State::PeerHello,
            State::HelloSent => State::Ready,
            ref s => s.clone(),
        };
        Ok(())
    }
}

/// What one `pump` did.
#[derive(Debug, Default)]
pub struct Pumped {
    /// Something was read (a message, or the hang-up).
    pub changed: bool,
    /// The first rejection `apply` returned.
    pub rejected: Option<Error>,
}
