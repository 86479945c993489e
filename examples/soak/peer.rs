//! The two sides of the exchange. Each runs as the survivor (one process
//! for the whole phase, serving one peer after another) or as a victim
//! (one connection, until the driver kills it).
//!
//! A survivor prints `READY` once it can be reached, and `IDLE <sessions>
//! fds=.. maps=.. rss_kb=..` whenever it holds no connection: before the
//! first, and after each session, once the registry or attachments of the
//! dead peer are dropped. It stops, with status 0, when the driver closes
//! its stdin. A victim prints nothing; it never ends on its own (its peer,
//! the survivor, does not go away), so any exit of a victim is a failure.

use std::convert::Infallible;
use std::time::Duration;

use voxshm::sys::Deadline;
use voxshm::{
    Allocation, Attachments, AttachmentsOptions, Channel, Error, Listener, Registry,
    RegistryOptions, Status, View,
};

use crate::board::{self, Board};
use crate::pattern::{self, HEADER_LEN, Rng, Session};
use crate::{EXIT_FAILED, EXIT_USAGE, EXIT_WRONG_BYTE, Flags, procfs, say, wait_readable};

/// Bound on every blocking voxshm call. Longer than the driver's 30 s
/// watchdog, so a stuck call is reported by the driver as a hang first; it
/// still means that no process ever waits forever on its own.
pub const WAIT_MS: i64 = 45_000;

/// Pause between two attempts to connect to a name nobody listens on yet.
const RETRY_MS: i32 = 10;

/// Most views a receiver holds at once.
const MAX_HELD: u64 = 4;

/// Most allocations a sender fills before it sends them.
const MAX_BATCH: u64 = 3;

const STDIN: i32 = libc::STDIN_FILENO;

/// The senders' options. A new region is 4 MiB, so the payloads above that
/// (one in twelve: sizes are log-uniform up to 16 MiB) get regions of their
/// own, and regions are created and retired all the time; 8 MiB of idle
/// regions are kept warm. The budget is far above the most a session can
/// pin at once (MAX_HELD views held by the receiver and MAX_BATCH unsent
/// allocations, 16 MiB each, plus what is in flight), so `alloc` waits for
/// releases but never for long.
pub fn registry_options() -> RegistryOptions {
    RegistryOptions {
        region_size: 4 << 20,
        keep_warm: 8 << 20,
        budget: 256 << 20,
        send_timeout_ms: WAIT_MS,
        ..Default::default()
    }
}

fn attachments_options() -> AttachmentsOptions {
    AttachmentsOptions {
        send_timeout_ms: WAIT_MS,
        ..Default::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Sender,
    Receiver,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Sender => Role::Receiver,
            Role::Receiver => Role::Sender,
        }
    }
}

/// A payload a receiver holds a view of.
struct Held {
    v: View,
    seed: u64,
    seq: u64,
}

struct Peer {
    name: String,
    survivor: bool,
    addr: String,
    seed: u64,
    rng: Rng,
    board: Board,
    /// A fault to plant (`soak driver --inject`).
    inject: Option<String>,
}

pub fn main(role: Role, args: &[String]) -> i32 {
    let valued = ["--addr", "--seed", "--board-fd", "--inject"];
    let flags = match Flags::parse(args, &valued, &["--survivor"]) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("soak {}: {e}", role.name());
            return EXIT_USAGE;
        }
    };
    let (Some(addr), Ok(Some(seed)), Ok(Some(fd))) = (
        flags.get("--addr"),
        flags.number("--seed"),
        flags.number("--board-fd"),
    ) else {
        eprintln!(
            "soak {}: --addr, --seed and --board-fd are required",
            role.name()
        );
        return EXIT_USAGE;
    };
    let board = match Board::open(fd as i32) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("soak {}: mapping the board (fd {fd}): {e}", role.name());
            return EXIT_FAILED;
        }
    };
    let survivor = flags.has("--survivor");
    let mut p = Peer {
        name: format!(
            "{} {}",
            if survivor { "survivor" } else { "victim" },
            role.name()
        ),
        survivor,
        addr: addr.to_string(),
        seed,
        rng: Rng::new(seed),
        board,
        inject: flags.get("--inject").map(str::to_string),
    };
    match (role, survivor) {
        (Role::Sender, true) => p.survive_as_sender(),
        (Role::Receiver, true) => p.survive_as_receiver(),
        (Role::Sender, false) => p.victim_sender(),
        (Role::Receiver, false) => p.victim_receiver(),
    }
}

impl Peer {
    /// Reports a failure and exits.
    fn die(&self, code: i32, what: impl std::fmt::Display) -> ! {
        self.board.add(board::FAILURES, 1);
        eprintln!("soak: {} (pid {}): {what}", self.name, std::process::id());
        std::process::exit(code)
    }

    /// Tells the driver what a victim is doing, for the kill statistics.
    fn mark(&self, state: u64) {
        if !self.survivor {
            self.board.set(board::VICTIM_STATE, state);
        }
    }

    /// Lingers a little, so that some kills land while this process holds
    /// views or allocations.
    fn dawdle(&mut self) {
        std::thread::sleep(Duration::from_millis(1 + self.rng.below(30)));
    }

    /// Plants the survivor's faults of `--inject`, which the driver must
    /// catch: a hang or a crash in session 3, an fd leaked in every session.
    fn inject_at_session(&self, sessions: u64) {
        match self.inject.as_deref() {
            Some("hang") if sessions == 3 => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
            Some("crash") if sessions == 3 => std::process::abort(),
            Some("leak") => {
                // SAFETY: dup takes no pointers; the new fd is leaked on
                // purpose.
                unsafe { libc::dup(libc::STDOUT_FILENO) };
            }
            _ => {}
        }
    }

    fn report_idle(&self, sessions: u64) {
        match procfs::usage("self") {
            Ok(u) => say(&format!("IDLE {sessions} {u}")),
            Err(e) => self.die(EXIT_FAILED, format!("reading /proc/self: {e}")),
        }
    }

    /// A survivor's session ends when its peer dies; anything else is a
    /// failure.
    fn expect_peer_gone(&self, e: &Error) {
        if e.status != Status::PeerGone {
            self.die(EXIT_FAILED, format!("session ended with {e}"));
        }
    }

    // -- sender ------------------------------------------------------------

    fn survive_as_sender(&mut self) -> i32 {
        let listener = Listener::bind(&self.addr)
            .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("listen on {}: {e}", self.addr)));
        say("READY");
        let mut sessions = 0u64;
        loop {
            self.report_idle(sessions);
            let Some(chan) = self.next_receiver(&listener) else {
                return 0;
            };
            let reg = Registry::new(chan, registry_options())
                .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("Registry::new: {e}")));
            sessions += 1;
            self.inject_at_session(sessions);
            let seed = pattern::mix(self.seed ^ sessions.wrapping_mul(0xA076_1D64_78BD_642F));
            let e = self.send_session(&reg, seed);
            self.expect_peer_gone(&e);
            // The dead receiver's leases were reclaimed and every unsent
            // allocation was aborted: nothing may be left outstanding.
            let s = reg.stats();
            if s.live_leases != 0 || s.allocations != 0 {
                self.die(
                    EXIT_FAILED,
                    format!("after the receiver died ({e}) the registry still counts {s:?}"),
                );
            }
            drop(reg);
        }
    }

    /// Waits for the next receiver; None when the driver says stop (closes
    /// our stdin).
    fn next_receiver(&self, listener: &Listener) -> Option<Channel> {
        let deadline = Deadline::after_ms(WAIT_MS);
        loop {
            let ready = wait_readable(&[listener.raw(), STDIN], deadline.poll_ms());
            if ready[1] {
                return None;
            }
            if ready[0] {
                match listener.accept(Deadline::now()) {
                    Ok(c) => return Some(c),
                    Err(e) if e.status == Status::Timeout => {}
                    Err(e) => self.die(EXIT_FAILED, format!("accept: {e}")),
                }
            }
            if deadline.expired() {
                self.die(EXIT_FAILED, format!("no receiver came for {WAIT_MS} ms"));
            }
        }
    }

    fn victim_sender(&mut self) -> i32 {
        let listener = Listener::bind(&self.addr)
            .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("listen on {}: {e}", self.addr)));
        let chan = listener
            .accept(Deadline::after_ms(WAIT_MS))
            .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("accept: {e}")));
        drop(listener);
        let reg = Registry::new(chan, registry_options())
            .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("Registry::new: {e}")));
        let e = self.send_session(&reg, pattern::mix(self.seed));
        self.die(EXIT_FAILED, format!("the survivor receiver went away: {e}"))
    }

    /// Streams one session until a call fails, and returns that error once
    /// every allocation not sent is given back.
    fn send_session(&mut self, reg: &Registry, seed: u64) -> Error {
        let mut unsent = Vec::new();
        let Err(e) = self.send_payloads(reg, seed, &mut unsent);
        // A failed send leaves the allocation the sender's, like those never
        // sent: all of them must still be accepted back.
        for (a, _, _) in unsent {
            if let Err(e2) = reg.abort(&a) {
                self.die(EXIT_FAILED, format!("abort after {e}: {e2}"));
            }
        }
        e
    }

    /// The header, then payloads in batches: allocate and fill a few, then
    /// send them in order. `unsent` holds (allocation, seq, len) of what is
    /// allocated and not sent yet.
    fn send_payloads(
        &mut self,
        reg: &Registry,
        seed: u64,
        unsent: &mut Vec<(Allocation, u64, u64)>,
    ) -> Result<Infallible, Error> {
        self.mark(board::STATE_HANDSHAKE);
        let a = reg.alloc(HEADER_LEN, WAIT_MS)?;
        let h = pattern::header(seed);
        // SAFETY: the allocation holds at least HEADER_LEN writable bytes
        // until it is sent or aborted.
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), a.data, h.len()) };
        unsent.push((a, 0, HEADER_LEN));
        self.send_unsent(reg, unsent)?;
        let mut session = Session::new(seed);
        loop {
            self.mark(board::STATE_BETWEEN);
            for _ in 0..1 + self.rng.below(MAX_BATCH) {
                let (seq, len) = session.next();
                let a = reg.alloc(len, WAIT_MS)?;
                if a.capacity < len {
                    self.die(
                        EXIT_FAILED,
                        format!("alloc of {len} bytes gave {} bytes", a.capacity),
                    );
                }
                // SAFETY: the allocation holds `capacity >= len` writable
                // bytes until it is sent or aborted.
                unsafe { pattern::fill(a.data, len, seed, seq) };
                if seq == 50 && self.inject.as_deref() == Some("wrong-byte") {
                    // SAFETY: len / 2 < len <= capacity: inside the allocation.
                    unsafe { *a.data.add((len / 2) as usize) ^= 0x40 };
                }
                unsent.push((a, seq, len));
                self.mark(board::STATE_HOLDING);
                if self.rng.chance(0.02) {
                    self.scratch(reg)?;
                }
            }
            if self.rng.chance(0.02) {
                self.dawdle();
            }
            self.send_unsent(reg, unsent)?;
        }
    }

    fn send_unsent(
        &self,
        reg: &Registry,
        unsent: &mut Vec<(Allocation, u64, u64)>,
    ) -> Result<(), Error> {
        while let Some(&(a, seq, len)) = unsent.first() {
            reg.send(&a, len, WAIT_MS)?;
            unsent.remove(0);
            if seq > 0 {
                self.board.add(board::SENT_PAYLOADS, 1);
            }
        }
        Ok(())
    }

    /// Allocates space, scribbles on it and gives it back unsent: it must
    /// be reused for later payloads, which overwrite it completely.
    fn scratch(&mut self, reg: &Registry) -> Result<(), Error> {
        let len = self.rng.log_uniform(1, 1 << 20);
        let a = reg.alloc(len, WAIT_MS)?;
        // SAFETY: the allocation holds at least `len` writable bytes until
        // it is aborted.
        unsafe { std::ptr::write_bytes(a.data, 0xA5, len as usize) };
        reg.abort(&a).unwrap_or_else(|e| {
            self.die(EXIT_FAILED, format!("abort of an unsent allocation: {e}"))
        });
        Ok(())
    }

    // -- receiver ----------------------------------------------------------

    fn survive_as_receiver(&mut self) -> i32 {
        say("READY");
        let mut sessions = 0u64;
        loop {
            self.report_idle(sessions);
            let Some(chan) = self.connect(true) else {
                return 0;
            };
            let att = Attachments::new(chan, attachments_options())
                .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("Attachments::new: {e}")));
            sessions += 1;
            self.inject_at_session(sessions);
            let e = self.receive_session(&att);
            self.expect_peer_gone(&e);
            // The sender is dead and every view released: every mapping of
            // its regions must be gone.
            let s = att.stats();
            if (s.mappings, s.mapped_bytes, s.live_views, s.queued_refs) != (0, 0, 0, 0) {
                self.die(
                    EXIT_FAILED,
                    format!("after the sender died ({e}) and every view was released, the attachments still hold {s:?}"),
                );
            }
            drop(att);
        }
    }

    fn victim_receiver(&mut self) -> i32 {
        let chan = self.connect(false).expect("a victim is never told to stop");
        let att = Attachments::new(chan, attachments_options())
            .unwrap_or_else(|e| self.die(EXIT_FAILED, format!("Attachments::new: {e}")));
        let e = self.receive_session(&att);
        self.die(EXIT_FAILED, format!("the survivor sender went away: {e}"))
    }

    /// Connects to the sender's name, trying again while nobody listens on
    /// it (the next sender is still starting). A survivor (`stoppable`)
    /// waits in poll() on its stdin between tries, and returns None as soon
    /// as the driver closes it.
    fn connect(&self, stoppable: bool) -> Option<Channel> {
        let deadline = Deadline::after_ms(WAIT_MS);
        let mut pause = 0;
        loop {
            let watch: &[i32] = if stoppable { &[STDIN] } else { &[] };
            if wait_readable(watch, pause).first() == Some(&true) {
                return None;
            }
            pause = RETRY_MS;
            match Channel::connect(&self.addr) {
                Ok(c) => return Some(c),
                // Nobody listens on the name yet.
                Err(e) if e.status == Status::NoListener => {}
                Err(e) => self.die(EXIT_FAILED, format!("connect to {}: {e}", self.addr)),
            }
            if deadline.expired() {
                self.die(
                    EXIT_FAILED,
                    format!("nobody listened on {} for {WAIT_MS} ms", self.addr),
                );
            }
        }
    }

    /// Receives and checks one session until a call fails, and returns that
    /// error once every view still held is checked again and released.
    fn receive_session(&mut self, att: &Attachments) -> Error {
        let mut held = Vec::new();
        let Err(e) = self.receive_payloads(att, &mut held);
        // Views stay readable after the sender is gone, until released.
        for h in held {
            self.recheck(&h, true);
            self.release(att, &h.v);
        }
        e
    }

    fn receive_payloads(
        &mut self,
        att: &Attachments,
        held: &mut Vec<Held>,
    ) -> Result<Infallible, Error> {
        self.mark(board::STATE_HANDSHAKE);
        let v = att.recv(WAIT_MS)?;
        if v.len != HEADER_LEN {
            self.die(
                EXIT_WRONG_BYTE,
                format!("the session header is {} bytes, not {HEADER_LEN}", v.len),
            );
        }
        let mut h = [0u8; HEADER_LEN as usize];
        // SAFETY: the view holds v.len == HEADER_LEN readable bytes until it
        // is released.
        unsafe { std::ptr::copy_nonoverlapping(v.data, h.as_mut_ptr(), h.len()) };
        let seed = pattern::parse_header(&h).unwrap_or_else(|| {
            self.die(
                EXIT_WRONG_BYTE,
                format!("wrong byte: the session header is {h:02x?}"),
            )
        });
        self.release(att, &v);
        let mut session = Session::new(seed);
        let mut target = self.rng.below(MAX_HELD + 1);
        loop {
            self.mark(if held.is_empty() {
                board::STATE_BETWEEN
            } else {
                board::STATE_HOLDING
            });
            let v = att.recv(WAIT_MS)?;
            self.mark(board::STATE_HOLDING);
            let (seq, len) = session.next();
            if v.len != len {
                self.die(
                    EXIT_WRONG_BYTE,
                    format!(
                        "session {seed:#018x} payload {seq} is {} bytes, expected {len}",
                        v.len
                    ),
                );
            }
            // SAFETY: the view holds `len` readable bytes until released.
            if let Err(e) = unsafe { pattern::check(v.data, len, seed, seq, 0, len) } {
                self.die(EXIT_WRONG_BYTE, e);
            }
            self.board.add(board::VERIFIED_PAYLOADS, 1);
            self.board.add(board::VERIFIED_BYTES, len);
            held.push(Held { v, seed, seq });
            while held.len() as u64 > target {
                let h = held.swap_remove(self.rng.below(held.len() as u64) as usize);
                self.recheck(&h, false);
                self.release(att, &h.v);
            }
            if self.rng.chance(0.05) {
                target = self.rng.below(MAX_HELD + 1);
            }
            if !held.is_empty() && self.rng.chance(0.02) {
                self.dawdle();
            }
        }
    }

    /// Checks a held payload again before its release: the sender must not
    /// have reused its space while it was leased. All of it when `full`;
    /// otherwise its first and last 4 KiB and 4 KiB at a random place.
    fn recheck(&mut self, h: &Held, full: bool) {
        const W: u64 = 4096;
        let len = h.v.len;
        let windows = if full || len <= 3 * W {
            vec![(0, len)]
        } else {
            let mid = self.rng.below((len - W) / 8) * 8;
            vec![(0, W), (mid, mid + W), ((len - W) / 8 * 8, len)]
        };
        for (from, to) in windows {
            // SAFETY: the view is still held, so its `len` bytes are readable.
            if let Err(e) = unsafe { pattern::check(h.v.data, len, h.seed, h.seq, from, to) } {
                self.die(
                    EXIT_WRONG_BYTE,
                    format!("{e} (checked again before release)"),
                );
            }
        }
    }

    fn release(&self, att: &Attachments, v: &View) {
        if let Err(e) = att.release(v) {
            self.die(EXIT_FAILED, format!("release of {:?}: {e}", v.r));
        }
    }
}
