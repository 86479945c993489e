//! Fuzz target bodies for voxshm, shared by the cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` and by the stable test `tests/fuzz_corpus.rs`
//! (which replays the committed corpus through these very functions).
//!
//! - [`wire_decode`]: every wire decoder on arbitrary bytes; whatever
//!   decodes must re-encode to the same (canonical) bytes.
//! - [`receiver_sequence`]: an `Attachments` on one end of a socketpair,
//!   fed from the other end by a sequence of raw messages (ATTACH with fds
//!   of many kinds, extension messages, junk) interleaved with calls on the
//!   receiver.
//! - [`sender_sequence`]: the same for a `Registry`, with the peer playing
//!   a (possibly hostile) receiver.
//!
//! Every input is decoded by a small byte cursor ([`Input`]): each field
//! takes the next bytes, reading zeros once the input is exhausted. The
//! [`seeds`] module writes inputs in that same format; it builds the
//! committed seed corpus.
//!
//! Invariants checked (a failure panics, which libFuzzer reports as a
//! crash): no panic in the library; after everything is dropped the
//! process has exactly the fds and file-backed mappings it had before;
//! while running, its fd count and region mappings match what the handle
//! holds; every view lies in a readable, non-writable mapping, reads
//! without fault, and shows the bytes the peer wrote at its offset; every
//! allocation is writable and overlaps no other live allocation or lease;
//! what each side sends its peer is well-formed and in protocol order;
//! a poisoned or peer-gone handle keeps failing; releasing a view succeeds
//! exactly when that view is held; a resolved view is never empty; a
//! receiver hands out every reference that arrived before it reports its
//! sender gone (also when the sender closed with messages of ours unread,
//! ECONNRESET, or a release found it gone, EPIPE).
//!
//! The functions return the set of outcomes they met (`(operation,
//! status)` pairs), so the corpus test can check that the seeds reach the
//! interesting paths.

#![allow(dead_code)] // each fuzz binary uses one target

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

use voxshm::channel::Recv;
use voxshm::wire::{self, Attach, Ext, Ref};
use voxshm::{
    Allocation, Attachments, AttachmentsOptions, Channel, Limits, Registry, RegistryOptions,
    Status, View,
};

/// What a run met: `(operation, outcome)` pairs, the outcome being "ok" or
/// a status name.
pub type Outcomes = BTreeSet<(&'static str, &'static str)>;

/// One input at a time: the fd and mapping counts are per process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// With `VOXSHM_FUZZ_TRACE` set, every step is printed to stderr: to
/// read what a crashing input does.
fn tracing() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("VOXSHM_FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($t:tt)*) => {
        if tracing() {
            eprintln!($($t)*);
        }
    };
}

// ---------------------------------------------------------------------------
// Reading an input.

/// A cursor over the fuzz input; reads past the end yield zeros.
pub struct Input<'a> {
    b: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(b: &'a [u8]) -> Input<'a> {
        Input { b }
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.b.split_first() {
            Some((&x, rest)) => {
                self.b = rest;
                x
            }
            None => 0,
        }
    }

    fn le(&mut self, n: usize) -> u64 {
        (0..n).fold(0u64, |v, i| v | (u64::from(self.u8()) << (8 * i)))
    }

    pub fn u32(&mut self) -> u32 {
        self.le(4) as u32
    }

    pub fn u64(&mut self) -> u64 {
        self.le(8)
    }

    /// `n` bytes: as many as are left, then zeros.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let k = n.min(self.b.len());
        let (head, rest) = self.b.split_at(k);
        self.b = rest;
        let mut v = head.to_vec();
        v.resize(n, 0);
        v
    }
}

/// A byte that selects an entry of `table`, or (0xFF) takes a raw value.
fn pick(inp: &mut Input, table: &[u64], raw: fn(&mut Input) -> u64) -> u64 {
    match inp.u8() {
        0xFF => raw(inp),
        b => table[b as usize % table.len()],
    }
}

fn raw_u32(inp: &mut Input) -> u64 {
    u64::from(inp.u32())
}

fn raw_u64(inp: &mut Input) -> u64 {
    inp.u64()
}

/// A map_id (0..=4, or raw) or generation (0..=3, or raw): below `n`, or
/// (0xFF) a raw u32.
fn small_id(inp: &mut Input, n: u8) -> u32 {
    match inp.u8() {
        0xFF => inp.u32(),
        b => u32::from(b % n),
    }
}

/// Mapping lengths a receiver is sent.
pub const MAP_LENS: [u64; 11] = [
    0,
    1,
    100,
    4095,
    4096,
    4097,
    8192,
    12288,
    16384,
    65536,
    1 << 20,
];
/// Receiver limits on bytes.
pub const BYTE_LIMITS: [u64; 6] = [0, 4096, 8192, 16384, 65536, u64::MAX];
/// Payload lengths a sender allocates.
pub const ALLOC_LENS: [u64; 14] = [
    0,
    1,
    63,
    64,
    65,
    100,
    1000,
    4095,
    4096,
    4097,
    8192,
    16384,
    65536,
    1 << 32,
];
pub const REGION_SIZES: [u64; 6] = [0, 1, 100, 4096, 8192, 16384];
pub const BUDGETS: [u64; 6] = [0, 4096, 8192, 16384, 32768, 65536];
pub const KEEP_WARM: [u64; 4] = [0, 4096, 8192, 65536];
/// Raw message lengths beyond what one byte picks directly: 0xFA.. select
/// these (around the receiver's 6128-byte maximum, and the ATTACH length).
pub const BIG_LENS: [usize; 6] = [0, 16, 6128, 6129, 7000, 24];

/// A raw message body: a length byte, then that many bytes of input; or
/// (0xFA..) one of `BIG_LENS`, zero-filled, taking nothing more.
fn raw_body(inp: &mut Input) -> Vec<u8> {
    match inp.u8() {
        b @ 0xFA..=0xFF => vec![0; BIG_LENS[(b - 0xFA) as usize]],
        b => inp.bytes(b as usize % 65),
    }
}

// ---------------------------------------------------------------------------
// References and extension messages built from an input.

/// A region as the peer knows it: (map_id, generation, mapping_length).
type RegionKey = (u32, u32, u64);

/// Builds a reference: raw, or derived from a known region or reference so
/// that valid and nearly valid references are common.
fn ref_spec(inp: &mut Input, regions: &[RegionKey], refs: &[Ref]) -> Ref {
    match inp.u8() % 6 {
        4 if !refs.is_empty() => refs[inp.u8() as usize % refs.len()],
        mode @ (1..=3 | 5) if !regions.is_empty() => {
            let (id, generation, len) = regions[inp.u8() as usize % regions.len()];
            let l = len.min(1 << 20);
            match mode {
                // In bounds, mostly non-empty.
                1 => {
                    let off = u64::from(inp.u32()) % (l + 1);
                    let room = l - off;
                    let plen = if room == 0 {
                        0
                    } else {
                        1 + u64::from(inp.u32()) % room
                    };
                    Ref {
                        map_id: id,
                        map_generation: generation,
                        map_offset: off,
                        payload_len: plen as u32,
                    }
                }
                // Right place, other generation.
                2 => Ref {
                    map_id: id,
                    map_generation: if inp.u8() & 1 == 0 {
                        generation.wrapping_add(1)
                    } else {
                        generation.wrapping_sub(1)
                    },
                    map_offset: 0,
                    payload_len: 1,
                },
                // Past the end, or overflowing.
                3 => {
                    let b = inp.u8();
                    let (off, plen) = if b & 1 == 0 {
                        (l.saturating_sub(u64::from(b >> 4)), 16 + u32::from(b))
                    } else {
                        (u64::MAX - u64::from(b), inp.u32() | 0x100)
                    };
                    Ref {
                        map_id: id,
                        map_generation: generation,
                        map_offset: off,
                        payload_len: plen,
                    }
                }
                // Empty, at the very end.
                _ => Ref {
                    map_id: id,
                    map_generation: generation,
                    map_offset: l,
                    payload_len: 0,
                },
            }
        }
        _ => Ref {
            map_id: inp.u32(),
            map_generation: inp.u32(),
            map_offset: inp.u64(),
            payload_len: inp.u32(),
        },
    }
}

/// (map_id, generation, mapping_length) for RETIRE / RETIRE_ACK.
fn region_spec(inp: &mut Input, regions: &[RegionKey]) -> RegionKey {
    let mode = inp.u8() % 3;
    if mode == 0 || regions.is_empty() {
        return (inp.u32(), inp.u32(), inp.u64());
    }
    let (id, generation, len) = regions[inp.u8() as usize % regions.len()];
    if mode == 1 {
        (id, generation, len)
    } else {
        (id, generation.wrapping_add(1), 0)
    }
}

/// An extension message of any kind, well-formed or with one byte changed.
fn ext_message(inp: &mut Input, regions: &[RegionKey], refs: &[Ref]) -> Vec<u8> {
    let k = inp.u8() % 6;
    let msg = |inp: &mut Input, k: u8| match k {
        0 => {
            let version = match inp.u8() % 4 {
                0 => inp.u32(),
                _ => wire::PROTOCOL_VERSION,
            };
            Ext::Hello {
                version,
                role: u32::from(inp.u8() % 4),
                features: 0,
            }
        }
        1 => Ext::Ref(ref_spec(inp, regions, refs)),
        2 => {
            let n = 1 + inp.u8() % 4;
            Ext::Release((0..n).map(|_| ref_spec(inp, regions, refs)).collect())
        }
        3 => {
            let (map_id, map_generation, mapping_length) = region_spec(inp, regions);
            Ext::Retire {
                map_id,
                map_generation,
                mapping_length,
            }
        }
        _ => {
            let (map_id, map_generation, mapping_length) = region_spec(inp, regions);
            Ext::RetireAck {
                map_id,
                map_generation,
                mapping_length,
            }
        }
    };
    if k < 5 {
        return msg(inp, k).encode();
    }
    let inner = inp.u8() % 5;
    let mut b = msg(inp, inner).encode();
    let at = inp.u8() as usize % b.len();
    b[at] ^= inp.u8() | 1;
    b
}

// ---------------------------------------------------------------------------
// The process: fds and mappings.

fn fd_count() -> usize {
    let dir = std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd");
    // One entry is the directory's own fd.
    dir.count() - 1
}

/// Mappings of files: one entry each in /proc/self/map_files (the heap,
/// stacks and anonymous memory, which allocators and sanitizers change
/// freely, are not there). Cheaper than parsing /proc/self/maps.
fn file_mapping_count() -> usize {
    std::fs::read_dir("/proc/self/map_files")
        .expect("/proc/self/map_files")
        .count()
}

/// The permissions ("r--s"...) of the mapping that holds all of
/// `[p, p + len)`, from /proc/self/maps; panics if there is none.
fn mapping_of(p: usize, len: usize, what: &str) -> [u8; 4] {
    let end = p.checked_add(len).expect("range overflows");
    let text = std::fs::read("/proc/self/maps").expect("/proc/self/maps");
    // "start-end perms ...": only the first two fields of a line are read.
    let hex = |b: &[u8]| {
        b.iter()
            .map_while(|c| (*c as char).to_digit(16))
            .fold(0usize, |v, d| v << 4 | d as usize)
    };
    for line in text.split(|c| *c == b'\n') {
        let Some(dash) = line.iter().position(|c| *c == b'-') else {
            continue;
        };
        let (a, b) = (hex(&line[..dash]), hex(&line[dash + 1..]));
        if a <= p && end <= b {
            let sp = line.iter().position(|c| *c == b' ').expect("perms");
            let mut perms = [0u8; 4];
            perms.copy_from_slice(&line[sp + 1..sp + 5]);
            return perms;
        }
    }
    panic!("{what} {p:#x}+{len} lies in no single mapping");
}

/// The process's fds and file mappings must be back where they started.
#[derive(Clone, Copy)]
struct Baseline {
    fds: usize,
    file_maps: usize,
}

impl Baseline {
    fn take() -> Baseline {
        Baseline {
            fds: fd_count(),
            file_maps: file_mapping_count(),
        }
    }

    fn check(&self, what: &str) {
        assert_eq!(fd_count(), self.fds, "{what}: fds leaked");
        assert_eq!(
            file_mapping_count(),
            self.file_maps,
            "{what}: mappings leaked"
        );
    }
}

fn note<T>(out: &mut Outcomes, op: &'static str, r: &voxshm::Result<T>) -> Option<Status> {
    trace!("  {op}: {:?}", r.as_ref().map(|_| ()));
    match r {
        Ok(_) => {
            out.insert((op, "ok"));
            None
        }
        Err(e) => {
            out.insert((op, e.status.name()));
            assert_ne!(e.status, Status::Internal, "{op}: {e}");
            Some(e.status)
        }
    }
}

// ---------------------------------------------------------------------------
// Files and fds a hostile sender may attach.

/// Largest file the fuzzer creates.
const MAX_FILE: usize = 64 << 10;

/// The byte every file the fuzzer creates holds at offset `o`.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        (0..MAX_FILE)
            .map(|o| (o.wrapping_mul(7) ^ (o >> 8).wrapping_mul(13) ^ (o >> 12)) as u8)
            .collect()
    })
}

fn check_os(rc: libc::c_int, what: &str) {
    assert!(rc >= 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Sizes `fd` to `len` bytes of the pattern.
fn fill(fd: &OwnedFd, len: usize) {
    // SAFETY: ftruncate takes no pointers.
    check_os(
        unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) },
        "ftruncate",
    );
    let p = &pattern()[..len];
    // SAFETY: `p` is `len` readable bytes.
    let n = unsafe { libc::pwrite(fd.as_raw_fd(), p.as_ptr().cast(), len, 0) };
    assert_eq!(n as usize, len, "pwrite");
}

fn memfd(name: &std::ffi::CStr, len: usize, seals: libc::c_int) -> OwnedFd {
    // SAFETY: `name` is NUL-terminated.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    check_os(fd, "memfd_create");
    // SAFETY: memfd_create just returned it; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    fill(&fd, len);
    if seals != 0 {
        // SAFETY: F_ADD_SEALS takes an int.
        check_os(
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) },
            "F_ADD_SEALS",
        );
    }
    fd
}

/// `F_SEAL_FUTURE_WRITE`, and whether this kernel has it.
const F_SEAL_FUTURE_WRITE: libc::c_int = 0x0010;

fn kernel_has_future_write() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        // SAFETY: a NUL-terminated name; the fd is closed right away.
        let fd = unsafe { libc::memfd_create(c"probe".as_ptr(), libc::MFD_ALLOW_SEALING) };
        if fd < 0 {
            return false;
        }
        // SAFETY: as above.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_ADD_SEALS takes an int.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, F_SEAL_FUTURE_WRITE) == 0 }
    })
}

fn seals_of(fd: RawFd) -> libc::c_int {
    // SAFETY: F_GET_SEALS takes no argument.
    unsafe { libc::fcntl(fd, libc::F_GET_SEALS) }.max(0)
}

fn tempfile(len: usize) -> OwnedFd {
    let mut tmpl = std::env::temp_dir()
        .join("fuzzrx-XXXXXX")
        .into_os_string()
        .into_encoded_bytes();
    tmpl.push(0);
    // SAFETY: a writable, NUL-terminated template ending in XXXXXX.
    let fd = unsafe { libc::mkostemp(tmpl.as_mut_ptr().cast(), libc::O_CLOEXEC) };
    check_os(fd, "mkostemp");
    // SAFETY: mkostemp just returned it; the template holds its name.
    let fd = unsafe {
        libc::unlink(tmpl.as_ptr().cast());
        OwnedFd::from_raw_fd(fd)
    };
    fill(&fd, len);
    fd
}

fn pair(ty: libc::c_int) -> (OwnedFd, OwnedFd) {
    let mut fds = [-1; 2];
    // SAFETY: `fds` has room for two fds.
    let rc = if ty == 0 {
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }
    } else {
        // SAFETY: as above.
        unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
    };
    check_os(rc, "pipe2/socketpair");
    // SAFETY: both were just created and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Kinds of fd that ride with an ATTACH.
pub mod fd_kind {
    pub const SEALED: u8 = 0;
    pub const SEALED_FUTURE_WRITE: u8 = 1;
    pub const UNSEALED: u8 = 2;
    pub const TEMPFILE: u8 = 3;
    pub const PIPE: u8 = 4;
    pub const SOCKET: u8 = 5;
    pub const DEV_NULL: u8 = 6;
    pub const COUNT: u8 = 7;
}

/// File length against mapping_length: exact, one byte short, a page more.
pub mod file_len {
    pub const EXACT: u8 = 0;
    pub const SHORT: u8 = 1;
    pub const LONG: u8 = 2;
    pub const COUNT: u8 = 3;
}

/// An fd of the chosen kind; files hold `len` bytes of the pattern.
fn make_fd(kind: u8, len: usize) -> OwnedFd {
    let len = len.min(MAX_FILE);
    let sg = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    match kind % fd_kind::COUNT {
        fd_kind::SEALED => memfd(c"fuzzrx", len, sg),
        fd_kind::SEALED_FUTURE_WRITE => {
            let fw = if kernel_has_future_write() {
                F_SEAL_FUTURE_WRITE
            } else {
                0
            };
            memfd(c"fuzzrx", len, sg | fw | libc::F_SEAL_SEAL)
        }
        fd_kind::UNSEALED => memfd(c"fuzzrx", len, 0),
        fd_kind::TEMPFILE => tempfile(len),
        fd_kind::PIPE => pair(0).0,
        fd_kind::SOCKET => pair(libc::SOCK_STREAM).0,
        _ => std::fs::File::open("/dev/null").expect("/dev/null").into(),
    }
}

/// The number of fds a selector byte stands for: mostly one, sometimes
/// none, two, or more than a receiver takes (it allows 8).
fn fd_number(b: u8) -> usize {
    match b % 8 {
        0 => 0,
        1..=4 => 1,
        5 | 6 => 2,
        _ => 9,
    }
}

/// One `sendmsg` of `body` with `fds`, without waiting.
fn send_raw(sock: RawFd, body: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: body.as_ptr() as *mut libc::c_void,
        iov_len: body.len(),
    };
    let mut cbuf = [0u64; 16];
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = std::mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        assert!(space <= std::mem::size_of_val(&cbuf));
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer is aligned and holds `space` bytes, so
        // the first header and `fds.len()` fds after it fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: `msg` points at live buffers of the lengths it states.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// The fuzzer's end of the channel.
struct Peer {
    chan: Option<Channel>,
    /// `shutdown(SHUT_WR)` was called: the other side sees EOF.
    shut: bool,
}

impl Peer {
    /// Sends `body` with the given fds (closed here afterwards; only the
    /// copies in flight remain). True if it was queued.
    fn send(&self, out: &mut Outcomes, body: &[u8], fds: Vec<OwnedFd>) -> bool {
        let Some(c) = &self.chan else { return false };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        if tracing() {
            let what = match Attach::decode(body) {
                Ok(a) if !raw.is_empty() => format!("{a:?}"),
                _ => format!("{:?}", Ext::decode(body).map_err(|_| body)),
            };
            eprintln!(
                "  peer sends {} bytes, {} fds: {what}",
                body.len(),
                raw.len()
            );
        }
        let label = match send_raw(c.raw(), body, &raw) {
            Ok(_) => "ok",
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => "full",
            Err(_) => "error",
        };
        out.insert(("peer-send", label));
        label == "ok"
    }

    /// Ends the peer's side: shut down for writing, or close outright.
    fn end(&mut self, close: bool) {
        if close {
            self.chan = None;
        } else if let Some(c) = &self.chan {
            // SAFETY: shutdown takes no pointers.
            unsafe { libc::shutdown(c.raw(), libc::SHUT_WR) };
            self.shut = true;
        }
    }

    /// The handle on the other end may take the peer for gone.
    fn gone(&self) -> bool {
        self.chan.is_none() || self.shut
    }

    fn open_fds(&self) -> usize {
        usize::from(self.chan.is_some())
    }

    /// Every message the handle sent, with its fds.
    fn drain(&self) -> Vec<voxshm::channel::Message> {
        let mut v = Vec::new();
        if let Some(c) = &self.chan {
            while let Ok(Recv::Msg(m)) = c.try_recv() {
                trace!("  peer reads {:?} with {} fds", m.bytes, m.fds.len());
                v.push(m);
            }
        }
        v
    }
}

/// Tracks a poisoned or peer-gone handle. Once a call reported a
/// protocol error, every later call that reads the channel fails; once a
/// call reported the peer gone (which must be true), so does every later
/// call that needs the peer (`needs_peer`: the sender's, except wait_idle).
#[derive(Default)]
struct Sticky {
    poisoned: Option<Status>,
    gone: bool,
}

impl Sticky {
    fn see(&mut self, s: Option<Status>, peer: &Peer, op: &str) {
        match s {
            Some(s @ (Status::Protocol | Status::VersionMismatch)) => {
                self.poisoned.get_or_insert(s);
            }
            Some(Status::PeerGone) => {
                assert!(peer.gone(), "{op}: PEER_GONE while the peer is connected");
                self.gone = true;
            }
            _ => {}
        }
    }

    fn expect_failure<T>(&self, op: &str, r: &voxshm::Result<T>, needs_peer: bool) {
        if let Some(s) = self.poisoned {
            // The poisoning status, unless the arguments were refused first.
            use Status::*;
            let got = r.as_ref().err().map(|e| e.status);
            assert!(
                got == Some(s) || matches!(got, Some(ZeroLength | TooLarge | Unsupported)),
                "{op} after the channel was poisoned with {}: {got:?}",
                s.name()
            );
        }
        if self.gone && needs_peer {
            assert!(r.is_err(), "{op} succeeded after PEER_GONE");
        }
    }
}

/// What both sequence targets share: the peer, the outcomes, the sticky
/// failure state and the process's counts before the handle existed.
struct Common {
    peer: Peer,
    out: Outcomes,
    sticky: Sticky,
    base: Baseline,
}

impl Common {
    /// Records a call's result and checks it against earlier failures.
    fn after<T>(&mut self, op: &'static str, r: &voxshm::Result<T>, needs_peer: bool) {
        self.sticky.expect_failure(op, r, needs_peer);
        let s = note(&mut self.out, op, r);
        self.sticky.see(s, &self.peer, op);
    }
}

/// A handle under structured fuzz, driven by [`run_sequence`].
trait Sequence: Sized {
    const NAME: &str;
    /// Reads the options from the input and creates the handle over
    /// `chan`; on failure, the outcome (the peer is dropped).
    fn new(inp: &mut Input, chan: Channel, c: Common) -> Result<Self, Outcomes>;
    /// Reads one operation from the input and carries it out.
    fn step(&mut self, inp: &mut Input);
    /// Checks the process's fds and mappings against the handle's.
    fn check_process(&self);
    /// Last checks; what the run met.
    fn finish(self) -> Outcomes;
}

/// A handle on one end of a fresh socketpair, the fuzzer's peer on the
/// other, one operation after another until the input ends; then, with
/// everything dropped, the process must hold what it held before.
fn run_sequence<S: Sequence>(data: &[u8]) -> Outcomes {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let base = Baseline::take();
    let mut inp = Input::new(data);
    let (ours, theirs) = Channel::pair().expect("socketpair");
    let c = Common {
        peer: Peer {
            chan: Some(ours),
            shut: false,
        },
        out: Outcomes::new(),
        sticky: Sticky::default(),
        base,
    };
    let out = match S::new(&mut inp, theirs, c) {
        Ok(mut s) => {
            while !inp.is_empty() {
                s.step(&mut inp);
                s.check_process();
            }
            s.finish()
        }
        Err(out) => out,
    };
    base.check(S::NAME);
    out
}

// ---------------------------------------------------------------------------
// wire_decode

/// Every decoder on `data` (whole, and without its first byte): no panic,
/// and whatever decodes re-encodes to the same bytes. Then values built
/// from `data` must survive encode → decode.
pub fn wire_decode(data: &[u8]) -> Outcomes {
    let mut out = Outcomes::new();
    for b in [data, data.get(1..).unwrap_or(&[])] {
        decode_all(&mut out, b);
    }
    encode_all(&mut out, &mut Input::new(data));
    out
}

fn decode_all(out: &mut Outcomes, b: &[u8]) {
    let a = Attach::decode(b);
    note(out, "attach", &a);
    assert_eq!(a.is_ok(), b.len() == wire::ATTACH_LEN);
    if let Ok(a) = a {
        assert_eq!(a.encode()[..], b[..], "ATTACH re-encodes differently");
    }

    let f = Ref::decode_frame(b);
    note(out, "frame", &f);
    match &f {
        Ok(r) => assert_eq!(r.encode_frame()[..], b[..wire::FRAME_LEN], "frame"),
        Err(e) => assert_eq!(e.status, Status::BadFrame),
    }
    // The C entry point agrees with the Rust decoder, and its encoder with
    // the Rust encoder.
    let mut c = voxshm::ffi::voxshm_ref::default();
    let s = voxshm::ffi::voxshm_ref_decode(b.as_ptr(), b.len(), &mut c);
    match f {
        Ok(r) => {
            assert_eq!(s, voxshm::ffi::voxshm_status::VOXSHM_OK);
            assert_eq!(
                (c.map_id, c.map_generation, c.map_offset, c.payload_len),
                (r.map_id, r.map_generation, r.map_offset, r.payload_len)
            );
            let mut frame = [0u8; wire::FRAME_LEN];
            let s = voxshm::ffi::voxshm_ref_encode(&c, frame.as_mut_ptr());
            assert_eq!(s, voxshm::ffi::voxshm_status::VOXSHM_OK);
            assert_eq!(frame[..], b[..wire::FRAME_LEN]);
        }
        Err(_) => assert_eq!(s, Status::BadFrame.into()),
    }

    let e = Ext::decode(b);
    note(out, "ext", &e);
    match e {
        Ok(m) => {
            assert!(Ext::is_ext(b));
            assert_ne!(
                b.len(),
                wire::ATTACH_LEN,
                "an extension message of 16 bytes"
            );
            assert_eq!(m.encode(), b, "extension message re-encodes differently");
            out.insert(("ext-kind", ext_name(&m)));
        }
        Err(e) => assert_eq!(e.status, Status::Protocol),
    }
}

fn ext_name(m: &Ext) -> &'static str {
    match m {
        Ext::Hello { .. } => "HELLO",
        Ext::Ref(_) => "REF",
        Ext::Release(_) => "RELEASE",
        Ext::Retire { .. } => "RETIRE",
        Ext::RetireAck { .. } => "RETIRE_ACK",
        Ext::Segment { .. } => "SEGMENT",
        Ext::Wake => "WAKE",
    }
}

fn encode_all(out: &mut Outcomes, inp: &mut Input) {
    let r = Ref {
        map_id: inp.u32(),
        map_generation: inp.u32(),
        map_offset: inp.u64(),
        payload_len: inp.u32(),
    };
    assert_eq!(Ref::decode_frame(&r.encode_frame()), Ok(r));
    let a = Attach {
        map_id: r.map_id,
        map_generation: r.map_generation,
        mapping_length: r.map_offset,
    };
    assert_eq!(Attach::decode(&a.encode()), Ok(a));
    let regions = [(a.map_id, a.map_generation, a.mapping_length)];
    while !inp.is_empty() {
        let b = ext_message(inp, &regions, &[r]);
        // Well-formed messages (and some corrupted ones) decode back to
        // themselves; the rest must be rejected, not misread.
        if let Ok(m) = Ext::decode(&b) {
            assert_eq!(m.encode(), b);
            out.insert(("roundtrip", ext_name(&m)));
        }
    }
}

// ---------------------------------------------------------------------------
// receiver_sequence

/// Operations of [`receiver_sequence`] (the op byte modulo `COUNT`).
pub mod rx {
    /// map_id, generation, length, fd kind, file length.
    pub const ATTACH: u8 = 0;
    /// A raw body with some fds.
    pub const RAW_FDS: u8 = 1;
    /// An extension message (see `ext_message`).
    pub const EXT: u8 = 2;
    /// A raw body, no fd.
    pub const RAW: u8 = 3;
    pub const RECV: u8 = 4;
    pub const RESOLVE: u8 = 5;
    pub const RELEASE: u8 = 6;
    pub const RELEASE_TAMPERED: u8 = 7;
    pub const RELEASE_OLD: u8 = 8;
    pub const RELEASE_BOGUS: u8 = 9;
    pub const POLL: u8 = 10;
    pub const STATS: u8 = 11;
    pub const DRAIN: u8 = 12;
    /// Shut down (even) or close (odd) the peer's end.
    pub const PEER_END: u8 = 13;
    pub const RELEASE_ALL: u8 = 14;
    pub const COUNT: u8 = 15;
}

/// Receiver options from the input's first four bytes.
fn receiver_options(inp: &mut Input) -> AttachmentsOptions {
    let flags = inp.u8();
    let max_mappings = u32::from(inp.u8() % 5);
    let max_mapped_bytes = BYTE_LIMITS[inp.u8() as usize % BYTE_LIMITS.len()];
    let max_single_mapping = BYTE_LIMITS[inp.u8() as usize % BYTE_LIMITS.len()];
    AttachmentsOptions {
        limits: Limits {
            max_mappings,
            max_mapped_bytes,
            max_single_mapping,
            accept_unsealed: flags & 1 != 0,
        },
        send_timeout_ms: 0,
        vox_compat: flags & 2 != 0,
        stats_faults: flags & 4 != 0,
        // The fuzzed peer never offers the ring: these sequences exercise
        // the socket path (the ring has a target of its own).
        ring: flags & 8 != 0,
        spin_us: 0,
    }
}

struct Rx {
    c: Common,
    att: Attachments,
    opts: AttachmentsOptions,
    /// Every ATTACH the peer sent.
    attached: Vec<RegionKey>,
    /// Every RETIRE the peer sent.
    retires: HashSet<(u32, u32)>,
    /// Views the receiver handed out and that were not released (a view is
    /// plain data, so identical copies are several entries).
    held: Vec<View>,
    released: Vec<View>,
    /// The receiver's HELLO has been seen.
    hello_seen: bool,
    /// REF messages the peer queued, and references `recv` handed out.
    refs_sent: u64,
    refs_taken: u64,
    /// The peer sent something malformed (raw bytes, an ATTACH of 0 bytes):
    /// what it queued after that need not be handed out (a 0-byte message
    /// from a peer that has gone reads as end of file, and a malformed one
    /// poisons the channel).
    peer_broke_protocol: bool,
}

/// Structured fuzz of the receiver: see the module docs and [`rx`].
pub fn receiver_sequence(data: &[u8]) -> Outcomes {
    run_sequence::<Rx>(data)
}

impl Sequence for Rx {
    const NAME: &str = "receiver_sequence";

    fn new(inp: &mut Input, chan: Channel, c: Common) -> Result<Rx, Outcomes> {
        let opts = receiver_options(inp);
        let att = Attachments::new(chan, opts.clone())
            .map_err(|e| Outcomes::from([("new", e.status.name())]))?;
        Ok(Rx {
            c,
            att,
            opts,
            attached: Vec::new(),
            retires: HashSet::new(),
            held: Vec::new(),
            released: Vec::new(),
            hello_seen: false,
            refs_sent: 0,
            refs_taken: 0,
            peer_broke_protocol: false,
        })
    }

    fn step(&mut self, inp: &mut Input) {
        self.op(inp);
    }

    /// fds and mappings match what the receiver holds.
    fn check_process(&self) {
        let s = self.att.stats();
        assert_eq!(
            fd_count(),
            self.c.base.fds + 2 + self.c.peer.open_fds(),
            "receiver holds fds beyond its channel and wake-up fd"
        );
        assert_eq!(
            file_mapping_count() as u64,
            self.c.base.file_maps as u64 + s.mappings,
            "mappings in the process differ from the receiver's count"
        );
    }

    fn finish(mut self) -> Outcomes {
        self.check_stats();
        self.drain();
        std::mem::take(&mut self.c.out)
    }
}

impl Rx {
    fn op(&mut self, inp: &mut Input) {
        let op = inp.u8() % rx::COUNT;
        trace!("rx op {op}");
        match op {
            rx::ATTACH => {
                let map_id = small_id(inp, 5);
                let generation = small_id(inp, 4);
                let len = pick(inp, &MAP_LENS, raw_u64);
                let kind = inp.u8();
                let file = match inp.u8() % file_len::COUNT {
                    file_len::EXACT => len,
                    file_len::SHORT => len.saturating_sub(1),
                    _ => len.saturating_add(4096),
                };
                let fd = make_fd(kind, file.min(MAX_FILE as u64) as usize);
                let body = Attach {
                    map_id,
                    map_generation: generation,
                    mapping_length: len,
                }
                .encode();
                self.attached.push((map_id, generation, len));
                self.peer_broke_protocol |= len == 0;
                self.c.peer.send(&mut self.c.out, &body, vec![fd]);
            }
            rx::RAW_FDS => {
                self.peer_broke_protocol = true;
                let body = raw_body(inp);
                let n = fd_number(inp.u8());
                let fds = (0..n).map(|_| make_fd(inp.u8(), 4096)).collect();
                self.c.peer.send(&mut self.c.out, &body, fds);
            }
            rx::EXT => {
                let refs: Vec<Ref> = self.held.iter().map(|v| v.r).collect();
                let b = ext_message(inp, &self.attached, &refs);
                let m = Ext::decode(&b);
                if let Ok(Ext::Retire {
                    map_id,
                    map_generation,
                    ..
                }) = m
                {
                    self.retires.insert((map_id, map_generation));
                }
                if self.c.peer.send(&mut self.c.out, &b, Vec::new()) && matches!(m, Ok(Ext::Ref(_)))
                {
                    self.refs_sent += 1;
                }
            }
            rx::RAW => {
                self.peer_broke_protocol = true;
                let body = raw_body(inp);
                self.c.peer.send(&mut self.c.out, &body, Vec::new());
            }
            rx::RECV => {
                let r = self.att.recv(0);
                self.after("recv", &r);
                self.count_taken(&r);
                if let Ok(v) = r {
                    self.took(v);
                }
            }
            rx::RESOLVE => {
                let refs: Vec<Ref> = self.held.iter().map(|v| v.r).collect();
                let want = ref_spec(inp, &self.attached, &refs);
                let r = self.att.resolve(&want, 0);
                self.after("resolve", &r);
                if let Ok(v) = r {
                    assert_eq!(v.r, want, "resolve returned a view of another reference");
                    self.took(v);
                }
            }
            rx::RELEASE => {
                let i = inp.u8() as usize;
                if !self.held.is_empty() {
                    self.release("release", self.held[i % self.held.len()]);
                }
            }
            rx::RELEASE_TAMPERED => {
                let (i, how) = (inp.u8() as usize, inp.u8() % 3);
                if !self.held.is_empty() {
                    let mut v = self.held[i % self.held.len()];
                    match how {
                        0 => v.data = v.data.wrapping_add(1),
                        1 => v.len = v.len.wrapping_add(1),
                        _ => v.r.map_offset = v.r.map_offset.wrapping_add(64),
                    }
                    self.release("release-tampered", v);
                }
            }
            rx::RELEASE_OLD => {
                let i = inp.u8() as usize;
                if !self.released.is_empty() {
                    self.release("release-old", self.released[i % self.released.len()]);
                }
            }
            rx::RELEASE_BOGUS => {
                let refs: Vec<Ref> = self.held.iter().map(|v| v.r).collect();
                let r = ref_spec(inp, &self.attached, &refs);
                let v = View {
                    data: inp.u64() as usize as *const u8,
                    len: u64::from(r.payload_len),
                    r,
                };
                self.release("release-bogus", v);
            }
            rx::POLL => {
                let r = self.att.poll();
                self.after("poll", &r);
            }
            rx::STATS => self.check_stats(),
            rx::DRAIN => self.drain(),
            rx::PEER_END => self.c.peer.end(inp.u8() & 1 != 0),
            _ => {
                while let Some(&v) = self.held.last() {
                    self.release("release", v);
                }
            }
        }
    }

    /// Records a call's result; a poisoned handle stays so. (A receiver
    /// whose sender is gone still resolves into the mappings it kept.)
    fn after<T>(&mut self, op: &'static str, r: &voxshm::Result<T>) {
        self.c.after(op, r, false);
    }

    /// Counts the references `recv` handed out (resolved or not: a failed
    /// one reports that reference's fate). A receiver that reports its
    /// sender gone must first have handed out every reference that arrived.
    fn count_taken(&mut self, r: &voxshm::Result<View>) {
        use Status::*;
        match r.as_ref().map_err(|e| e.status) {
            Err(PeerGone) if self.c.sticky.poisoned.is_none() && !self.peer_broke_protocol => {
                assert_eq!(
                    self.refs_taken, self.refs_sent,
                    "recv reported PEER_GONE before handing out every reference that arrived"
                )
            }
            Err(Timeout | PeerGone | Protocol | VersionMismatch | Io | InvalidArgument) => {}
            _ => self.refs_taken += 1,
        }
    }

    /// Checks a view the receiver handed out and keeps it.
    fn took(&mut self, v: View) {
        assert_eq!(v.len, u64::from(v.r.payload_len), "view length");
        assert!(v.len > 0, "a zero-length reference resolved: {:?}", v.r);
        let r = v.r;
        let end = r.map_offset + v.len;
        assert!(
            self.attached
                .iter()
                .any(|&(id, g, len)| id == r.map_id && g == r.map_generation && end <= len),
            "view of {r:?}, which no ATTACH covers"
        );
        if v.len > 0 {
            let perms = mapping_of(v.data as usize, v.len as usize, "view");
            assert!(perms.starts_with(b"r-"), "view in a {perms:?} mapping");
            // SAFETY: the view lies in a readable mapping (checked above)
            // of a file at least as long (the receiver checked its size).
            let (first, last) = unsafe {
                (
                    std::ptr::read_volatile(v.data),
                    std::ptr::read_volatile(v.data.add(v.len as usize - 1)),
                )
            };
            let p = pattern();
            assert_eq!(first, p[r.map_offset as usize], "first byte of {r:?}");
            assert_eq!(last, p[end as usize - 1], "last byte of {r:?}");
        }
        self.held.push(v);
    }

    /// Releasing succeeds exactly when the view is held.
    fn release(&mut self, op: &'static str, v: View) {
        let r = self.att.release(&v);
        note(&mut self.c.out, op, &r);
        match self.held.iter().position(|h| *h == v) {
            Some(i) => {
                assert!(r.is_ok(), "{op}: releasing a held view failed: {r:?}");
                self.held.swap_remove(i);
                if self.released.len() < 64 {
                    self.released.push(v);
                }
            }
            None => assert_eq!(
                r.map_err(|e| e.status),
                Err(Status::InvalidView),
                "{op}: releasing a view that is not held"
            ),
        }
    }

    fn check_stats(&mut self) {
        let s = self.att.stats();
        let l = &self.opts.limits;
        assert!(s.mappings <= u64::from(l.max_mappings), "{s:?}");
        assert!(s.mapped_bytes <= l.max_mapped_bytes, "{s:?}");
        assert_eq!(s.live_views, self.held.len() as u64, "{s:?}");
        assert_eq!(s.open_fds, 2);
        self.c.out.insert(("stats", "ok"));
    }

    /// Reads what the receiver sent: well-formed receiver messages only.
    fn drain(&mut self) {
        for m in self.c.peer.drain() {
            assert!(m.fds.is_empty(), "the receiver sent an fd");
            assert!(!m.ctrunc && !m.trunc);
            assert!(
                !self.opts.vox_compat,
                "a vox-compatible receiver sent {m:?}"
            );
            let e = Ext::decode(&m.bytes).expect("the receiver sent a malformed message");
            self.c.out.insert(("peer-rx", ext_name(&e)));
            match e {
                Ext::Hello { version, role, .. } => {
                    assert!(!self.hello_seen, "second HELLO");
                    assert_eq!(
                        (version, role),
                        (wire::PROTOCOL_VERSION, wire::ROLE_RECEIVER)
                    );
                    self.hello_seen = true;
                }
                Ext::Release(_) => assert!(self.hello_seen, "RELEASE before HELLO"),
                Ext::RetireAck {
                    map_id,
                    map_generation,
                    ..
                } => assert!(
                    self.retires.contains(&(map_id, map_generation)),
                    "RETIRE_ACK for {map_id}/{map_generation}, never retired"
                ),
                other => panic!("the receiver sent a sender's message: {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// sender_sequence

/// Operations of [`sender_sequence`] (the op byte modulo `COUNT`).
pub mod tx {
    /// A length selector (`ALLOC_LENS`).
    pub const ALLOC: u8 = 0;
    /// Allocation index, length selector (relative to its capacity).
    pub const SEND: u8 = 1;
    pub const PUBLISH: u8 = 2;
    pub const ABORT: u8 = 3;
    /// Allocation index, field to change, call (publish/abort/send).
    pub const TAMPERED: u8 = 4;
    pub const POLL: u8 = 5;
    pub const WAIT_IDLE: u8 = 6;
    pub const STATS: u8 = 7;
    /// An extension message from the peer (see `ext_message`).
    pub const PEER_EXT: u8 = 8;
    /// A raw body with some fds (see `fd_number`; 0 mostly).
    pub const PEER_RAW: u8 = 9;
    pub const DRAIN: u8 = 10;
    pub const PEER_END: u8 = 11;
    /// A RELEASE of up to 4 leased references.
    pub const RELEASE_LEASED: u8 = 12;
    /// A RETIRE_ACK for every RETIRE seen and not acknowledged.
    pub const ACK_RETIRES: u8 = 13;
    /// The receiver's HELLO.
    pub const HELLO: u8 = 14;
    pub const COUNT: u8 = 15;

    /// Publish/send lengths relative to the allocation's capacity.
    pub const LEN_ZERO: u8 = 0;
    pub const LEN_ALL: u8 = 1;
    pub const LEN_ONE: u8 = 2;
    pub const LEN_MORE: u8 = 3;
    pub const LEN_HALF: u8 = 4;
    pub const LEN_RAW: u8 = 5;
}

/// A publish/send length, relative to the allocation's capacity.
struct LenSel(u8, u32);

impl LenSel {
    fn read(inp: &mut Input) -> LenSel {
        let sel = inp.u8() % 7;
        LenSel(sel, if sel == tx::LEN_RAW { inp.u32() } else { 0 })
    }

    fn len(&self, cap: u64) -> u64 {
        match self.0 {
            tx::LEN_ZERO => 0,
            tx::LEN_ALL => cap,
            tx::LEN_ONE => 1,
            tx::LEN_MORE => cap + 1,
            tx::LEN_HALF => cap / 2 + 1,
            tx::LEN_RAW => u64::from(self.1),
            _ => 1 << 32,
        }
    }
}

fn registry_options(inp: &mut Input) -> RegistryOptions {
    let region_size = REGION_SIZES[inp.u8() as usize % REGION_SIZES.len()];
    let budget = BUDGETS[inp.u8() as usize % BUDGETS.len()];
    let keep_warm = KEEP_WARM[inp.u8() as usize % KEEP_WARM.len()];
    let flags = inp.u8();
    RegistryOptions {
        region_size,
        budget,
        keep_warm,
        send_timeout_ms: 0,
        vox_compat: flags & 1 != 0,
        force_tempfile: flags & 2 != 0,
        stats_faults: flags & 4 != 0,
        max_in_flight_bytes: if flags & 8 != 0 { budget / 2 } else { 0 },
        ring: flags & 16 != 0,
        ring_capacity: voxshm::registry::DEFAULT_RING_CAPACITY,
        spin_us: 0,
    }
}

/// What the peer learned of a region from the registry.
struct Seen {
    generation: u32,
    len: u64,
    /// Its RETIRE was read.
    retiring: bool,
    /// The peer sent a RETIRE_ACK for it (perhaps before reading the
    /// RETIRE: if the registry had sent one, the ack is valid).
    acked: bool,
}

struct Tx {
    c: Common,
    reg: Registry,
    opts: RegistryOptions,
    /// Allocations neither published nor aborted.
    allocs: Vec<Allocation>,
    /// Published payloads not (yet) released by the peer, with their
    /// address.
    leased: Vec<(Ref, usize)>,
    /// References sent over the channel and not yet read by the peer.
    expected_refs: VecDeque<Ref>,
    /// The newest region attached under each map_id.
    regions: HashMap<u32, Seen>,
    /// Newest generation ever attached per map_id.
    newest: HashMap<u32, u32>,
    /// RETIREs read and not yet acknowledged.
    retires: Vec<RegionKey>,
    /// The peer sent a valid HELLO.
    said_hello: bool,
    /// The registry's first extension message (its HELLO) was read.
    hello_seen: bool,
}

/// Structured fuzz of the sender: see the module docs and [`tx`].
pub fn sender_sequence(data: &[u8]) -> Outcomes {
    run_sequence::<Tx>(data)
}

impl Sequence for Tx {
    const NAME: &str = "sender_sequence";

    fn new(inp: &mut Input, chan: Channel, c: Common) -> Result<Tx, Outcomes> {
        let opts = registry_options(inp);
        let reg = Registry::new(chan, opts.clone())
            .map_err(|e| Outcomes::from([("new", e.status.name())]))?;
        Ok(Tx {
            c,
            reg,
            opts,
            allocs: Vec::new(),
            leased: Vec::new(),
            expected_refs: VecDeque::new(),
            regions: HashMap::new(),
            newest: HashMap::new(),
            retires: Vec::new(),
            said_hello: false,
            hello_seen: false,
        })
    }

    fn step(&mut self, inp: &mut Input) {
        self.op(inp);
    }

    /// fds and mappings match what the registry holds.
    fn check_process(&self) {
        let s = self.reg.stats();
        assert_eq!(
            fd_count(),
            self.c.base.fds + s.open_fds as usize + self.c.peer.open_fds(),
            "the registry holds fds beyond its channel, wake-up fd and regions"
        );
        assert_eq!(s.open_fds, s.regions + 2);
        assert_eq!(
            file_mapping_count() as u64,
            self.c.base.file_maps as u64 + s.regions,
            "mappings in the process differ from the registry's count"
        );
    }

    fn finish(mut self) -> Outcomes {
        self.check_stats();
        self.drain();
        std::mem::take(&mut self.c.out)
    }
}

impl Tx {
    fn op(&mut self, inp: &mut Input) {
        let op = inp.u8() % tx::COUNT;
        trace!("tx op {op}");
        match op {
            tx::ALLOC => {
                let len = pick(inp, &ALLOC_LENS, raw_u64);
                let r = self.reg.alloc(len, 0);
                self.after("alloc", &r);
                if let Ok(a) = r {
                    self.allocated(a, len);
                }
            }
            tx::SEND | tx::PUBLISH => {
                let (send, i, sel) = (inp.u8() & 1 == 0, inp.u8() as usize, LenSel::read(inp));
                if self.allocs.is_empty() {
                    return;
                }
                let i = i % self.allocs.len();
                let a = self.allocs[i];
                let len = sel.len(a.capacity);
                let published = if send {
                    let r = self.reg.send(&a, len, 0);
                    self.after("send", &r);
                    self.check_owned_allocation("send", &r);
                    r.ok().map(|()| Ref {
                        map_id: a.map_id,
                        map_generation: a.map_generation,
                        map_offset: a.map_offset,
                        payload_len: len as u32,
                    })
                } else {
                    let r = self.reg.publish(&a, len);
                    self.after("publish", &r);
                    self.check_owned_allocation("publish", &r);
                    r.ok()
                };
                if let Some(r) = published {
                    assert!(len > 0 && len <= a.capacity, "published {len} of {a:?}");
                    assert_eq!(
                        (
                            r.map_id,
                            r.map_generation,
                            r.map_offset,
                            u64::from(r.payload_len)
                        ),
                        (a.map_id, a.map_generation, a.map_offset, len)
                    );
                    self.allocs.swap_remove(i);
                    self.leased.push((r, a.data as usize));
                    if send {
                        self.expected_refs.push_back(r);
                    }
                }
            }
            tx::ABORT => {
                let i = inp.u8() as usize;
                if !self.allocs.is_empty() {
                    let i = i % self.allocs.len();
                    let r = self.reg.abort(&self.allocs[i]);
                    note(&mut self.c.out, "abort", &r);
                    assert!(r.is_ok(), "abort of an owned allocation: {r:?}");
                    self.allocs.swap_remove(i);
                }
            }
            tx::TAMPERED => {
                let (i, field, call) = (inp.u8() as usize, inp.u8() % 5, inp.u8() % 3);
                if self.allocs.is_empty() {
                    return;
                }
                let mut a = self.allocs[i % self.allocs.len()];
                match field {
                    0 => a.token = a.token.wrapping_add(1),
                    1 => a.data = a.data.wrapping_add(64),
                    2 => a.map_generation = a.map_generation.wrapping_add(1),
                    3 => a.capacity = a.capacity.wrapping_add(64),
                    _ => a.map_offset = a.map_offset.wrapping_add(64),
                }
                let r = match call {
                    0 => self.reg.publish(&a, 1).map(|_| ()),
                    1 => self.reg.abort(&a),
                    _ => self.reg.send(&a, 1, 0),
                };
                note(&mut self.c.out, "tampered", &r);
                assert!(r.is_err(), "a changed allocation was accepted: {a:?}");
            }
            tx::POLL => {
                let r = self.reg.poll();
                self.after("poll", &r);
            }
            tx::WAIT_IDLE => {
                let r = self.reg.wait_idle(0);
                self.after("wait_idle", &r);
            }
            tx::STATS => self.check_stats(),
            tx::PEER_EXT => {
                let regions: Vec<RegionKey> = self
                    .regions
                    .iter()
                    .map(|(&id, s)| (id, s.generation, s.len))
                    .collect();
                let refs: Vec<Ref> = self.leased.iter().map(|l| l.0).collect();
                let b = ext_message(inp, &regions, &refs);
                self.peer_sends(&b);
            }
            tx::PEER_RAW => {
                let body = raw_body(inp);
                let n = if inp.u8() & 1 == 0 {
                    0
                } else {
                    fd_number(inp.u8())
                };
                let fds = (0..n).map(|_| make_fd(inp.u8(), 4096)).collect();
                self.c.peer.send(&mut self.c.out, &body, fds);
            }
            tx::DRAIN => self.drain(),
            tx::PEER_END => {
                self.c.peer.end(inp.u8() & 1 != 0);
                // Every lease ends with the peer.
                self.leased.clear();
            }
            tx::RELEASE_LEASED => {
                let n = (1 + inp.u8() as usize % 4).min(self.leased.len());
                if n > 0 {
                    let refs = self.leased.iter().take(n).map(|l| l.0).collect();
                    self.peer_sends(&Ext::Release(refs).encode());
                }
            }
            tx::ACK_RETIRES => {
                for (map_id, map_generation, mapping_length) in self.retires.clone() {
                    let ack = Ext::RetireAck {
                        map_id,
                        map_generation,
                        mapping_length,
                    };
                    self.peer_sends(&ack.encode());
                }
            }
            _ => {
                let hello = Ext::Hello {
                    version: wire::PROTOCOL_VERSION,
                    role: wire::ROLE_RECEIVER,
                    features: 0,
                };
                self.peer_sends(&hello.encode());
            }
        }
    }

    /// Records a call's result; a poisoned or peer-gone registry stays so
    /// (wait_idle with nothing outstanding is fine without a peer).
    fn after<T>(&mut self, op: &'static str, r: &voxshm::Result<T>) {
        self.c.after(op, r, op != "wait_idle");
    }

    /// An allocation the caller owns is never "unknown" to the registry.
    fn check_owned_allocation<T: std::fmt::Debug>(&self, op: &str, r: &voxshm::Result<T>) {
        if let Err(e) = r {
            assert_ne!(
                e.status,
                Status::InvalidAllocation,
                "{op} of an owned allocation: {e}"
            );
        }
    }

    /// Checks a fresh allocation: its size, its memory (writable, in a
    /// read-write mapping), and that it overlaps nothing still in use.
    fn allocated(&mut self, a: Allocation, len: u64) {
        assert!(
            a.capacity >= len && a.capacity < len + 64 && a.capacity.is_multiple_of(64),
            "alloc({len}) gave {a:?}"
        );
        let (p, cap) = (a.data as usize, a.capacity as usize);
        let perms = mapping_of(p, cap, "allocation");
        assert!(
            perms.starts_with(b"rw"),
            "allocation in a {perms:?} mapping"
        );
        let overlaps = |q: usize, n: usize| p < q + n && q < p + cap;
        for b in &self.allocs {
            assert!(
                !overlaps(b.data as usize, b.capacity as usize),
                "{a:?} overlaps {b:?}"
            );
        }
        for (r, q) in &self.leased {
            assert!(
                !overlaps(*q, r.payload_len as usize),
                "{a:?} overlaps lease {r:?}"
            );
        }
        // SAFETY: the allocation is `cap` bytes of a read-write mapping
        // (checked above) that the registry lent to us.
        unsafe { std::ptr::write_bytes(a.data, 0xA5, cap) };
        self.allocs.push(a);
    }

    /// The peer sends an extension message; a valid RELEASE ends the
    /// leases it names, a valid RETIRE_ACK the region.
    fn peer_sends(&mut self, b: &[u8]) {
        if self.c.peer.chan.is_some() {
            match Ext::decode(b) {
                Ok(Ext::Hello { version, role, .. }) => {
                    self.said_hello |=
                        version == wire::PROTOCOL_VERSION && role == wire::ROLE_RECEIVER;
                }
                Ok(Ext::Release(refs)) => self.leased.retain(|l| !refs.contains(&l.0)),
                Ok(Ext::RetireAck {
                    map_id,
                    map_generation,
                    ..
                }) => {
                    self.retires
                        .retain(|r| (r.0, r.1) != (map_id, map_generation));
                    if let Some(s) = self.regions.get_mut(&map_id)
                        && s.generation == map_generation
                    {
                        s.acked = true;
                    }
                }
                _ => {}
            }
        }
        self.c.peer.send(&mut self.c.out, b, Vec::new());
    }

    fn check_stats(&mut self) {
        let s = self.reg.stats();
        assert!(s.mapped_bytes <= self.opts.budget, "over budget: {s:?}");
        assert_eq!(s.allocations, self.allocs.len() as u64, "{s:?}");
        self.c.out.insert(("stats", "ok"));
    }

    /// Reads what the registry sent and checks it against the protocol.
    fn drain(&mut self) {
        for m in self.c.peer.drain() {
            if m.bytes.len() == wire::ATTACH_LEN && m.fds.len() == 1 {
                let a = Attach::decode(&m.bytes).expect("16 bytes");
                self.attach(a, &m.fds[0]);
                continue;
            }
            assert!(m.fds.is_empty(), "the registry sent fds with {:?}", m.bytes);
            assert!(
                !self.opts.vox_compat,
                "a vox-compatible registry sent {m:?}"
            );
            assert!(
                self.said_hello,
                "extension message before the receiver's HELLO"
            );
            let e = Ext::decode(&m.bytes).expect("the registry sent a malformed message");
            self.c.out.insert(("peer-rx", ext_name(&e)));
            if !self.hello_seen {
                assert_eq!(
                    e,
                    Ext::Hello {
                        version: wire::PROTOCOL_VERSION,
                        role: wire::ROLE_SENDER,
                        features: if self.opts.ring {
                            wire::FEATURE_RING
                        } else {
                            0
                        },
                    },
                    "the registry's first extension message"
                );
                self.hello_seen = true;
                continue;
            }
            match e {
                Ext::Ref(r) => {
                    let s = self
                        .regions
                        .get(&r.map_id)
                        .filter(|s| s.generation == r.map_generation)
                        .unwrap_or_else(|| panic!("REF {r:?} before its ATTACH"));
                    assert!(r.payload_len > 0);
                    assert!(
                        r.map_offset + u64::from(r.payload_len) <= s.len,
                        "REF {r:?}"
                    );
                    assert_eq!(self.expected_refs.pop_front(), Some(r), "REF out of order");
                }
                Ext::Retire {
                    map_id,
                    map_generation,
                    mapping_length,
                } => {
                    let s = self
                        .regions
                        .get_mut(&map_id)
                        .filter(|s| s.generation == map_generation && !s.retiring)
                        .unwrap_or_else(|| panic!("RETIRE of {map_id}/{map_generation}"));
                    assert_eq!(s.len, mapping_length);
                    s.retiring = true;
                    if !s.acked {
                        self.retires.push((map_id, map_generation, mapping_length));
                    }
                }
                other => panic!("the registry sent {other:?}"),
            }
        }
    }

    /// An ATTACH: a new (map_id, generation), a sealed regular file.
    fn attach(&mut self, a: Attach, fd: &OwnedFd) {
        self.c.out.insert(("peer-rx", "ATTACH"));
        assert!(a.mapping_length > 0, "{a:?}");
        // In vox compatibility no RETIRE is said: a registry closes idle
        // regions to make room, and their map_ids come back (with a higher
        // generation, checked below) unannounced.
        assert!(
            self.opts.vox_compat || self.regions.get(&a.map_id).is_none_or(|s| s.acked),
            "{a:?}: map_id reused before its RETIRE_ACK"
        );
        if let Some(&g) = self.newest.get(&a.map_id) {
            assert!(
                a.map_generation > g,
                "{a:?}: generation not raised (was {g})"
            );
        }
        self.newest.insert(a.map_id, a.map_generation);
        // SAFETY: a zeroed stat is valid and fstat fills it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is writable.
        check_os(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, "fstat");
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG, "{a:?}");
        assert!(
            st.st_size as u64 >= a.mapping_length,
            "{a:?}: file too short"
        );
        let seals = seals_of(fd.as_raw_fd());
        if !self.opts.force_tempfile {
            let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            assert_eq!(seals & need, need, "{a:?}: seals {seals:#x}");
            let fw = seals & F_SEAL_FUTURE_WRITE != 0;
            if self.opts.vox_compat {
                assert!(!fw, "FUTURE_WRITE in vox compatibility mode");
            } else {
                assert_eq!(fw, kernel_has_future_write(), "{a:?}: seals {seals:#x}");
            }
        }
        self.regions.insert(
            a.map_id,
            Seen {
                generation: a.map_generation,
                len: a.mapping_length,
                retiring: false,
                acked: false,
            },
        );
    }
}

// ---------------------------------------------------------------------------
// Seeds

/// Hand-made inputs for each target, written in the format the targets
/// read. `tests/fuzz_corpus.rs` writes them to `fuzz/corpus/` and checks
/// that the committed files match.
pub mod seeds {
    use super::*;

    /// An input under construction.
    #[derive(Default, Clone)]
    pub struct W(pub Vec<u8>);

    impl W {
        pub fn b(mut self, bytes: &[u8]) -> W {
            self.0.extend_from_slice(bytes);
            self
        }
        pub fn u32(self, v: u32) -> W {
            self.b(&v.to_le_bytes())
        }
        pub fn u64(self, v: u64) -> W {
            self.b(&v.to_le_bytes())
        }
    }

    fn index<T: PartialEq + std::fmt::Debug>(table: &[T], v: T) -> u8 {
        table
            .iter()
            .position(|x| *x == v)
            .unwrap_or_else(|| panic!("{v:?} is not in the table")) as u8
    }

    pub fn map_len(v: u64) -> u8 {
        index(&MAP_LENS, v)
    }

    pub fn alloc_len(v: u64) -> u8 {
        index(&ALLOC_LENS, v)
    }

    /// Receiver options: accept_unsealed, vox_compat, limits.
    pub fn rx_header(unsealed: bool, vox: bool, maps: u8, bytes: u64, single: u64) -> W {
        let flags = u8::from(unsealed) | (u8::from(vox) << 1);
        W::default().b(&[
            flags,
            maps,
            index(&BYTE_LIMITS, bytes),
            index(&BYTE_LIMITS, single),
        ])
    }

    /// Generous receiver limits.
    pub fn rx_default() -> W {
        rx_header(false, false, 4, u64::MAX, u64::MAX)
    }

    /// A map_id or generation: one byte below `n`, else 0xFF and a u32.
    fn id(w: W, v: u32, n: u32) -> W {
        if v < n {
            w.b(&[v as u8])
        } else {
            w.b(&[0xFF]).u32(v)
        }
    }

    /// An ATTACH of map_id/generation with an fd of `kind` (`fd_kind`)
    /// holding a file of `file` (`file_len`) bytes.
    pub fn attach(w: W, map_id: u32, generation: u32, len: u64, kind: u8, file: u8) -> W {
        let w = id(w.b(&[rx::ATTACH]), map_id, 5);
        id(w, generation, 4).b(&[map_len(len), kind, file])
    }

    /// A REF into the `region`-th ATTACH sent, in bounds: offset and
    /// length are reduced modulo what fits.
    pub fn ref_in(w: W, region: u8, off: u32, len_minus_one: u32) -> W {
        w.b(&[1, region]).u32(off).u32(len_minus_one)
    }

    pub fn rx_ext_ref_in(w: W, region: u8, off: u32, len_minus_one: u32) -> W {
        ref_in(w.b(&[rx::EXT, 1]), region, off, len_minus_one)
    }

    pub fn rx_resolve_in(w: W, region: u8, off: u32, len_minus_one: u32) -> W {
        ref_in(w.b(&[rx::RESOLVE]), region, off, len_minus_one)
    }

    /// A HELLO from the peer with the given role.
    pub fn rx_hello(w: W, role: u8) -> W {
        w.b(&[rx::EXT, 0, 1, role])
    }

    /// A RETIRE (kind 3) or RETIRE_ACK (4) of the `region`-th ATTACH sent.
    pub fn rx_retire(w: W, kind: u8, region: u8) -> W {
        w.b(&[rx::EXT, kind, 1, region])
    }

    /// Registry options by value (each must be in its table).
    pub fn tx_header(region: u64, budget: u64, keep: u64, vox: bool, tmp: bool) -> W {
        W::default().b(&[
            index(&REGION_SIZES, region),
            index(&BUDGETS, budget),
            index(&KEEP_WARM, keep),
            u8::from(vox) | (u8::from(tmp) << 1),
        ])
    }

    pub fn tx_default() -> W {
        tx_header(4096, 16384, 0, false, false)
    }

    pub fn alloc(w: W, len: u64) -> W {
        w.b(&[tx::ALLOC, alloc_len(len)])
    }

    /// Sends (or publishes) allocation `i` with a relative length.
    pub fn send(w: W, i: u8, rel: u8) -> W {
        w.b(&[tx::SEND, 0, i, rel])
    }

    pub fn publish(w: W, i: u8, rel: u8) -> W {
        w.b(&[tx::PUBLISH, 1, i, rel])
    }

    /// The receiver's part of a healthy exchange: HELLO, then drain.
    pub fn hello_drain(w: W) -> W {
        w.b(&[tx::HELLO, tx::DRAIN])
    }

    /// Every seed, by target name.
    /// Named inputs: (file name, bytes).
    pub type Seeds = Vec<(String, Vec<u8>)>;

    pub fn all() -> Vec<(&'static str, Seeds)> {
        vec![
            ("wire_decode", wire()),
            ("receiver_sequence", receiver()),
            ("sender_sequence", sender()),
        ]
    }

    fn named(v: Vec<(&str, W)>) -> Seeds {
        v.into_iter()
            .map(|(n, w)| (format!("seed-{n}"), w.0))
            .collect()
    }

    fn wire() -> Seeds {
        let r = Ref {
            map_id: 7,
            map_generation: 2,
            map_offset: 0x1_0000_0040,
            payload_len: 4096,
        };
        let region = (7, 2, 64 << 20);
        let mut v: Seeds = vec![
            (
                "attach".into(),
                Attach {
                    map_id: 7,
                    map_generation: 2,
                    mapping_length: 64 << 20,
                }
                .encode()
                .to_vec(),
            ),
            ("frame".into(), r.encode_frame().to_vec()),
            (
                "hello".into(),
                Ext::Hello {
                    version: 1,
                    role: 2,
                    features: 0,
                }
                .encode(),
            ),
            ("ref".into(), Ext::Ref(r).encode()),
            ("release".into(), Ext::Release(vec![r, r]).encode()),
            (
                "retire".into(),
                Ext::Retire {
                    map_id: region.0,
                    map_generation: region.1,
                    mapping_length: region.2,
                }
                .encode(),
            ),
            (
                "retire-ack".into(),
                Ext::RetireAck {
                    map_id: region.0,
                    map_generation: region.1,
                    mapping_length: 0,
                }
                .encode(),
            ),
            ("empty".into(), Vec::new()),
        ];
        // Each deviation a decoder must reject (and a frame with bytes
        // after it, which decodes).
        let frame = r.encode_frame().to_vec();
        let release = Ext::Release(vec![r]).encode();
        let hello = Ext::Hello {
            version: 1,
            role: 2,
            features: 0,
        }
        .encode();
        let set = |mut b: Vec<u8>, at: usize, v: u8| {
            b[at] = v;
            b
        };
        for (name, b) in [
            ("attach-15", vec![7; 15]),
            ("frame-total-len", set(frame.clone(), 0, 33)),
            ("frame-flags", set(frame.clone(), 4, 0x03)),
            ("frame-reserved", set(frame.clone(), 29, 1)),
            ("frame-trailing", [frame.clone(), vec![0xEE; 8]].concat()),
            ("frame-short", frame[..31].to_vec()),
            ("release-count-0", set(release.clone(), 6, 0)),
            ("release-count-256", set(set(release.clone(), 6, 0), 7, 1)),
            ("release-reserved", set(release.clone(), 30, 1)),
            ("hello-short", hello[..23].to_vec()),
            ("hello-count", set(hello.clone(), 6, 1)),
            ("header-reserved", set(hello.clone(), 5, 1)),
            ("kind-6", set(hello.clone(), 4, 6)),
            ("magic", set(hello, 0, b'W')),
        ] {
            v.push((name.into(), b));
        }
        // A structured input: a reference, then one message of each kind.
        let mut s = W::default().u32(7).u32(2).u64(0x40).u32(4096);
        for k in 0..6 {
            s = s.b(&[k, 1, 0, 0, 0, 0, 3, 5, 1]);
        }
        v.push(("structured".into(), s.0));
        v.into_iter()
            .map(|(n, b)| (format!("seed-{n}"), b))
            .collect()
    }

    fn receiver() -> Seeds {
        use fd_kind::*;
        use file_len::*;
        let base = || attach(rx_hello(rx_default(), 1), 1, 1, 8192, SEALED, EXACT);
        // A region, a REF into it received, released.
        let recv_release = rx_ext_ref_in(base(), 0, 100, 999).b(&[
            rx::RECV,
            rx::STATS,
            rx::RELEASE,
            0,
            rx::DRAIN,
            rx::STATS,
        ]);
        // Resolved over "our own transport", twice, released one by one.
        let resolve = rx_resolve_in(rx_resolve_in(base(), 0, 0, 4095), 0, 0, 4095).b(&[
            rx::STATS,
            rx::RELEASE,
            0,
            rx::RELEASE_OLD,
            0,
            rx::RELEASE_OLD,
            0,
            rx::DRAIN,
        ]);
        // RETIRE with a view held: unmapped and acknowledged on release.
        let retire = rx_retire(rx_resolve_in(base(), 0, 8, 7), 3, 0).b(&[
            rx::POLL,
            rx::DRAIN,
            rx::RELEASE_ALL,
            rx::DRAIN,
            rx::STATS,
        ]);
        let retire =
            rx_resolve_in(attach(retire, 1, 2, 4096, SEALED, EXACT), 1, 0, 10).b(&[rx::STATS]);
        let retire = rx_resolve_in(retire, 0, 0, 0);
        // RETIRE of an idle region, then a reference into it: stale.
        let retire_idle = rx_retire(base().b(&[rx::POLL]), 3, 0).b(&[rx::POLL, rx::DRAIN]);
        let retire_idle = rx_resolve_in(retire_idle, 0, 0, 1);
        // Each kind of fd, each file length, each limit.
        let kinds = (0..fd_kind::COUNT)
            .flat_map(|k| [EXACT, SHORT, LONG].map(move |f| (k, f)))
            .fold(rx_hello(rx_default(), 1), |w, (k, f)| {
                attach(w, u32::from(k * 3 + f + 1), 1, 4096, k, f).b(&[rx::POLL])
            })
            .b(&[rx::STATS]);
        let unsealed = attach(
            rx_header(true, false, 4, u64::MAX, u64::MAX),
            1,
            1,
            4096,
            UNSEALED,
            EXACT,
        );
        let unsealed = rx_resolve_in(unsealed.b(&[rx::POLL]), 0, 1, 100);
        let limits = [4096, 8192, 4096, 100, 12288]
            .iter()
            .enumerate()
            .fold(rx_header(false, false, 2, 8192, 8192), |w, (i, &len)| {
                attach(w, i as u32, 1, len, SEALED, EXACT).b(&[rx::POLL])
            });
        let len_zero = attach(rx_default(), 1, 1, 0, SEALED, EXACT).b(&[rx::POLL, rx::RECV]);
        let huge = attach(rx_default(), 1, 1, 1 << 20, SEALED, EXACT).b(&[rx::POLL]);
        let duplicate = attach(base(), 1, 2, 4096, SEALED, EXACT).b(&[rx::POLL, rx::POLL]);
        // Bad references: every resolution check.
        let bad_refs = base()
            .b(&[rx::POLL, rx::RESOLVE, 2, 0, 0, rx::RESOLVE, 2, 0, 1])
            .b(&[
                rx::RESOLVE,
                3,
                0,
                0,
                rx::RESOLVE,
                3,
                0,
                1,
                0xFF,
                0xFF,
                0xFF,
                0x7F,
            ])
            .b(&[rx::RESOLVE, 0])
            .u32(9)
            .u32(1)
            .u64(0)
            .u32(1)
            .b(&[rx::RESOLVE, 5, 0]);
        // A REF that does not resolve is released back at once.
        let bad_recv = base().b(&[rx::EXT, 1, 3, 0, 0, rx::RECV, rx::DRAIN]);
        let bogus = rx_resolve_in(base(), 0, 0, 63)
            .b(&[rx::RELEASE_TAMPERED, 0, 0, rx::RELEASE_TAMPERED, 0, 1])
            .b(&[rx::RELEASE_TAMPERED, 0, 2, rx::RELEASE_BOGUS, 0])
            .u32(1)
            .u32(1)
            .u64(0)
            .u32(64)
            .u64(0x1000);
        // Protocol errors: the channel is poisoned for good.
        let poison = |w: W| {
            rx_resolve_in(w.b(&[rx::POLL, rx::RECV]), 0, 0, 1).b(&[rx::POLL, rx::RELEASE_ALL])
        };
        let two_fds = poison(base().b(&[rx::RAW_FDS, 16]).b(&[0; 16]).b(&[5, 0, 0]));
        let many_fds = poison(base().b(&[rx::RAW_FDS, 16]).b(&[0; 16]).b(&[7]).b(&[0; 9]));
        let fd_no_body = poison(base().b(&[rx::RAW_FDS, 0, 1, 0]));
        let attach_no_fd = poison(base().b(&[rx::RAW, 16]).b(&[1; 16]));
        let junk = poison(base().b(&[rx::RAW, 5, 1, 2, 3, 4, 5]));
        let empty_msg = poison(base().b(&[rx::RAW, 0]));
        let too_long = poison(base().b(&[rx::RAW, 0xFD]));
        let wrong_role = poison(rx_hello(base(), 2));
        let bad_version = poison(base().b(&[rx::EXT, 0, 0]).u32(9).b(&[1]));
        let release_at_rx = poison(rx_resolve_in(base(), 0, 0, 1).b(&[rx::EXT, 2, 0, 4, 0]));
        let corrupted = poison(base().b(&[rx::EXT, 5, 3, 1, 0, 4, 1]));
        // The sender goes away with views held, then without.
        let gone = |close: u8| {
            rx_ext_ref_in(rx_resolve_in(base(), 0, 0, 99), 0, 200, 99)
                .b(&[rx::PEER_END, close, rx::POLL, rx::RECV, rx::RECV])
                .b(&[rx::STATS, rx::RELEASE_ALL, rx::STATS, rx::POLL])
        };
        // The sender closes after reading everything; a release then finds
        // the channel gone (EPIPE) while a REF is still unread. Like
        // "sender-closed" (ECONNRESET: the sender left the HELLO unread),
        // the REF that had arrived must still be handed out.
        let release_after_close = rx_ext_ref_in(rx_resolve_in(base(), 0, 0, 99), 0, 256, 99).b(&[
            rx::DRAIN,
            rx::PEER_END,
            1,
            rx::RELEASE,
            0,
            rx::RECV,
            rx::STATS,
        ]);
        let vox = rx_ext_ref_in(
            attach(
                rx_header(false, true, 4, u64::MAX, u64::MAX),
                1,
                1,
                4096,
                UNSEALED,
                EXACT,
            ),
            0,
            0,
            9,
        )
        .b(&[rx::RECV, rx::RELEASE_ALL, rx::DRAIN]);
        named(vec![
            ("recv-release", recv_release),
            ("resolve-twice", resolve),
            ("retire-with-view", retire),
            ("retire-idle", retire_idle),
            ("fd-kinds", kinds),
            ("accept-unsealed", unsealed),
            ("limits", limits),
            ("length-zero", len_zero),
            ("too-large", huge),
            ("duplicate-attach", duplicate),
            ("bad-refs", bad_refs),
            ("bad-ref-received", bad_recv),
            ("bogus-views", bogus),
            ("two-fds", two_fds),
            ("many-fds", many_fds),
            ("fd-without-attach", fd_no_body),
            ("attach-without-fd", attach_no_fd),
            ("junk", junk),
            ("empty-message", empty_msg),
            ("too-long", too_long),
            ("wrong-role", wrong_role),
            ("bad-version", bad_version),
            ("release-at-receiver", release_at_rx),
            ("corrupted-ext", corrupted),
            ("sender-shut-down", gone(0)),
            ("sender-closed", gone(1)),
            ("release-after-sender-closed", release_after_close),
            ("vox-compat", vox),
        ])
    }

    fn sender() -> Seeds {
        use tx::*;
        // Send three payloads, read them, release them, acknowledge the
        // retirements, and go again (a reused map_id, a new generation).
        let cycle = |w: W| {
            let w = alloc(alloc(alloc(w, 100), 4096), 1000);
            let w = send(send(send(w, 0, LEN_ALL), 0, LEN_HALF), 0, LEN_ONE);
            w.b(&[
                DRAIN,
                STATS,
                RELEASE_LEASED,
                3,
                POLL,
                DRAIN,
                ACK_RETIRES,
                POLL,
            ])
            .b(&[WAIT_IDLE, STATS])
        };
        let send_cycle = cycle(cycle(hello_drain(tx_default())));
        let publish_release = {
            let w = alloc(alloc(hello_drain(tx_default()), 64), 65);
            let w = publish(publish(w, 0, LEN_ALL), 0, LEN_ONE);
            w.b(&[
                WAIT_IDLE,
                RELEASE_LEASED,
                1,
                WAIT_IDLE,
                RELEASE_LEASED,
                1,
                WAIT_IDLE,
            ])
            .b(&[DRAIN, ACK_RETIRES, WAIT_IDLE, DRAIN, STATS])
        };
        let abort = alloc(alloc(hello_drain(tx_default()), 1), 8192).b(&[
            ABORT,
            0,
            ABORT,
            0,
            POLL,
            DRAIN,
            ACK_RETIRES,
            POLL,
            STATS,
        ]);
        let tampered = (0..5u8)
            .flat_map(|f| (0..3u8).map(move |c| (f, c)))
            .fold(alloc(hello_drain(tx_default()), 100), |w, (f, c)| {
                w.b(&[TAMPERED, 0, f, c])
            })
            .b(&[ABORT, 0]);
        let lens = (0..7u8)
            .fold(hello_drain(tx_default()), |w, rel| {
                let w = send(alloc(w, 1000), 0, rel);
                let w = if rel == LEN_RAW { w.u32(5000) } else { w };
                w.b(&[ABORT, 0])
            })
            .b(&[DRAIN]);
        let no_hello = send(alloc(tx_default(), 100), 0, LEN_ALL).b(&[DRAIN, ABORT, 0]);
        let budget = [16384, 4096, 4096, 4096, 4096, 65536, 1 << 32, 0]
            .iter()
            .fold(hello_drain(tx_default()), |w, &n| alloc(w, n))
            .b(&[
                STATS,
                DRAIN,
                ABORT,
                0,
                ABORT,
                0,
                ALLOC,
                alloc_len(8192),
                DRAIN,
                STATS,
            ]);
        let keep_warm = alloc(
            alloc(
                hello_drain(tx_header(4096, 65536, 8192, false, false)),
                4096,
            ),
            4096,
        )
        .b(&[ABORT, 0, ABORT, 0, POLL, DRAIN, STATS]);
        let tempfile = send(
            alloc(hello_drain(tx_header(8192, 16384, 0, false, true)), 100),
            0,
            LEN_ALL,
        )
        .b(&[
            DRAIN,
            RELEASE_LEASED,
            0,
            POLL,
            DRAIN,
            ACK_RETIRES,
            WAIT_IDLE,
        ]);
        let vox = publish(
            alloc(tx_header(4096, 8192, 0, true, false), 100),
            0,
            LEN_ALL,
        );
        let vox = send(alloc(vox, 100), 0, LEN_ALL).b(&[DRAIN, WAIT_IDLE, POLL]);
        let invalid_options = tx_header(0, 4096, 0, false, false).b(&[POLL]);
        let tiny_region = alloc(hello_drain(tx_header(1, 4096, 0, false, false)), 100);
        // Hostile receivers: each poisons the channel.
        let sent = || send(alloc(hello_drain(tx_default()), 100), 0, LEN_ALL).b(&[DRAIN]);
        let poison =
            |w: W| alloc(w.b(&[POLL, ALLOC, 1, WAIT_IDLE]), 100).b(&[DRAIN, ABORT, 0, STATS]);
        // The payload `sent` sent: 128 bytes (a capacity) at 0 of region 1/1.
        let release_sent = |w: W| w.b(&[PEER_EXT, 2, 0, 0]).u32(1).u32(1).u64(0).u32(128);
        let release_twice = poison(release_sent(release_sent(sent())));
        let release_unknown = poison(sent().b(&[PEER_EXT, 2, 0, 0]).u32(9).u32(9).u64(0).u32(1));
        let release_wrong_len = poison(sent().b(&[PEER_EXT, 2, 0, 1, 0]).u32(0).u32(7));
        let bogus_ack = poison(sent().b(&[PEER_EXT, 4, 1, 0]));
        let ref_at_tx = poison(sent().b(&[PEER_EXT, 1, 4, 0]));
        let retire_at_tx = poison(sent().b(&[PEER_EXT, 3, 1, 0]));
        let hello_role = poison(tx_default().b(&[PEER_EXT, 0, 1, 1]));
        let hello_version = poison(tx_default().b(&[PEER_EXT, 0, 0]).u32(2).b(&[2]));
        let junk = poison(sent().b(&[PEER_RAW, 3, 1, 2, 3, 0]));
        let with_fd = poison(sent().b(&[PEER_EXT, 0, 1, 2, PEER_RAW, 0, 1, 1, 0]));
        let empty_msg = poison(sent().b(&[PEER_RAW, 0, 0]));
        let too_long = poison(sent().b(&[PEER_RAW, 0xFD, 0]));
        let corrupted = poison(sent().b(&[PEER_EXT, 5, 2, 0, 4, 0, 30, 1]));
        // The receiver goes away holding leases.
        let gone = |close: u8| {
            let w = send(alloc(alloc(sent(), 100), 1000), 0, LEN_ALL);
            w.b(&[PEER_END, close, WAIT_IDLE, POLL, ALLOC, 1, ABORT, 0, STATS])
        };
        named(vec![
            ("send-release-retire", send_cycle),
            ("publish-release", publish_release),
            ("abort", abort),
            ("tampered", tampered),
            ("lengths", lens),
            ("no-hello", no_hello),
            ("budget", budget),
            ("keep-warm", keep_warm),
            ("tempfile", tempfile),
            ("vox-compat", vox),
            ("invalid-options", invalid_options),
            ("tiny-region", tiny_region),
            ("release-twice", release_twice),
            ("release-unknown", release_unknown),
            ("release-wrong-len", release_wrong_len),
            ("bogus-retire-ack", bogus_ack),
            ("ref-at-sender", ref_at_tx),
            ("retire-at-sender", retire_at_tx),
            ("hello-wrong-role", hello_role),
            ("hello-bad-version", hello_version),
            ("junk", junk),
            ("message-with-fd", with_fd),
            ("empty-message", empty_msg),
            ("too-long", too_long),
            ("corrupted-ext", corrupted),
            ("receiver-shut-down", gone(0)),
            ("receiver-closed", gone(1)),
        ])
    }
}

// ---------------------------------------------------------------------------
// The ring segment as memory a hostile peer writes.

/// Operations of `ring_segment`, one byte each (then their arguments).
pub mod ring_op {
    /// The sender pushes a reference (u64 index into a small table).
    pub const PUSH_REF: u8 = 0;
    /// The receiver pops a reference.
    pub const POP_REF: u8 = 1;
    /// The receiver pushes a release.
    pub const PUSH_RELEASE: u8 = 2;
    /// The sender pops a release.
    pub const POP_RELEASE: u8 = 3;
    /// Either side announces sleep / waiting, or takes a wake request.
    pub const SLEEP_WAKE: u8 = 4;
    /// The hostile peer writes 8 bytes anywhere in the segment.
    pub const POKE: u8 = 5;
    /// A fresh receiver attaches the segment as it now is.
    pub const REATTACH: u8 = 6;
    pub const COUNT: u8 = 7;
}

/// Structured fuzz of `voxshm::ring::Segment`: a sender and a receiver
/// over one segment, driven by the input, while a third party (the
/// hostile peer, through its own mapping of the memfd) writes anything
/// anywhere in the segment. Invariants: no panic and no out-of-bounds
/// access (the fuzzer runs under AddressSanitizer); a broken ring is an
/// error, not a crash; until the hostile peer first writes, every entry
/// comes out exactly as it went in, in order, and nothing is lost or
/// made up; after that, an entry that comes out has zero reserved bytes.
pub fn ring_segment(data: &[u8]) -> Outcomes {
    use voxshm::ring::{Capacities, Segment};
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = Outcomes::new();
    let mut inp = Input::new(data);
    let caps = Capacities {
        refs: 16 << (inp.u8() % 3),
        releases: 16 << (inp.u8() % 3),
    };
    let (mut tx, fd) = Segment::create(caps).expect("create a segment");
    let len = caps.segment_len() as usize;
    let dup = fd.try_clone().expect("dup the segment fd");
    let mut rx = Segment::attach(fd).expect("attach a fresh segment");
    // The hostile peer's own view of the memory.
    // SAFETY: a fresh MAP_SHARED read-write mapping of the memfd, `len`
    // bytes long (the memfd is sealed at that size), owned here.
    let peer = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            dup.as_raw_fd(),
            0,
        )
    };
    assert_ne!(peer, libc::MAP_FAILED);
    let refs = |k: u64| Ref {
        map_id: (k % 5) as u32 + 1,
        map_generation: (k % 3) as u32 + 1,
        map_offset: k * 64,
        payload_len: (k % 7) as u32 + 1,
    };
    // Entries in flight per ring while the peer kept out (a model).
    let mut sent_refs = std::collections::VecDeque::new();
    let mut sent_rels = std::collections::VecDeque::new();
    let mut poked = false;
    let mut n = 0u64;
    while !inp.is_empty() {
        let op = inp.u8() % ring_op::COUNT;
        trace!("ring op {op}");
        let which = |r: &std::result::Result<bool, voxshm::ring::RingError>| match r {
            Ok(true) => "ok",
            Ok(false) => "full",
            Err(_) => "broken",
        };
        match op {
            ring_op::PUSH_REF | ring_op::PUSH_RELEASE => {
                n += 1;
                let e = refs(n);
                let (side, model, name) = if op == ring_op::PUSH_REF {
                    (&mut tx, &mut sent_refs, "push-ref")
                } else {
                    (&mut rx, &mut sent_rels, "push-release")
                };
                let r = side.push(&e);
                out.insert((name, which(&r)));
                if r == Ok(true) {
                    model.push_back(e);
                }
                if r.is_err() && !poked {
                    panic!("{name} broke a ring nobody poked: {r:?}");
                }
            }
            ring_op::POP_REF | ring_op::POP_RELEASE => {
                let (side, model, name) = if op == ring_op::POP_REF {
                    (&mut rx, &mut sent_refs, "pop-ref")
                } else {
                    (&mut tx, &mut sent_rels, "pop-release")
                };
                let r = side.pop();
                out.insert((
                    name,
                    match &r {
                        Ok(Some(_)) => "ok",
                        Ok(None) => "empty",
                        Err(_) => "broken",
                    },
                ));
                if !poked {
                    match r {
                        Ok(got) => assert_eq!(got, model.pop_front(), "{name}: ring order"),
                        Err(e) => panic!("{name} broke a ring nobody poked: {e:?}"),
                    }
                }
            }
            ring_op::SLEEP_WAKE => {
                let k = inp.u8() % 10;
                let r = match k {
                    0 => rx.prepare_sleep().map(|_| ()),
                    1 => tx.prepare_sleep().map(|_| ()),
                    2 => tx.prepare_wait_for_room().map(|_| ()),
                    3 => rx.prepare_wait_for_room().map(|_| ()),
                    4 => {
                        let _ = (
                            tx.peer_needs_wake_for_entries(),
                            rx.peer_needs_wake_for_room(),
                        );
                        Ok(())
                    }
                    5 => {
                        let _ = (
                            rx.peer_needs_wake_for_entries(),
                            tx.peer_needs_wake_for_room(),
                        );
                        Ok(())
                    }
                    6 => {
                        tx.note_socket_message();
                        rx.note_socket_message();
                        Ok(())
                    }
                    7 => {
                        let _ = (tx.peer_sent_on_socket(), rx.peer_sent_on_socket());
                        Ok(())
                    }
                    8 => rx.has_entries().and(tx.has_entries()).map(|_| ()),
                    _ => tx.has_room().and(rx.has_room()).map(|_| ()),
                };
                out.insert(("sleep-wake", if r.is_ok() { "ok" } else { "broken" }));
                assert!(r.is_ok() || poked, "sleep/wake broke a ring nobody poked");
            }
            ring_op::POKE => {
                let at = (inp.u32() as usize % (len / 8)) * 8;
                let v = inp.u64();
                // SAFETY: `at + 8 <= len`, inside the peer's mapping,
                // 8-aligned; a volatile write as another process would make.
                unsafe { std::ptr::write_volatile(peer.cast::<u8>().add(at).cast::<u64>(), v) };
                poked = true;
                out.insert(("poke", if at < 4096 { "control" } else { "entries" }));
            }
            _ => {
                let fd = dup.try_clone().expect("dup the segment fd");
                let r = Segment::attach(fd);
                out.insert(("reattach", if r.is_ok() { "ok" } else { "refused" }));
                assert!(r.is_ok() || poked, "a segment nobody poked was refused");
            }
        }
    }
    // SAFETY: unmaps exactly the mapping made above.
    unsafe { libc::munmap(peer, len) };
    out
}
