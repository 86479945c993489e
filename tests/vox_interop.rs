//! Interop with the real vox-shm 0.3.1 primitives (`shm-primitives` and
//! `shm-primitives-async`), across processes.
//!
//! The vox peer is this test binary re-executed (`helper_vox_peer`), built
//! only on those crates, libc and std. It does what vox-shm's
//! `MmapRegistry` and `MmapAttachments` do: as a sender it bump-allocates
//! in regions of a default size (a larger payload gets a region of exactly
//! its size), first fit over every region, map_ids from 0, generation 0,
//! never frees a region; each region is an `MmapRegion::create` temp file
//! whose fd goes out once with `MmapControlSender::send`. As a receiver it
//! takes ATTACHes with `MmapControlReceiver::try_recv` on a dup of the same
//! socket and maps them with `MmapRegion::attach_fd`. The socket is one end
//! of a `SOCK_DGRAM` pair, as vox makes it.
//!
//! References travel over the helper's stdin and stdout (an MMAP_REF frame
//! in hex), as over a transport of the caller's own:
//!
//! | to the peer | answer |
//! | --- | --- |
//! | `SEND <seq> <len>`: allocate, fill with pattern `seq`, publish | `SENT <seq> <frame>` |
//! | `TAKE <seq> <frame>`: resolve, check every byte | `DONE <seq>` |
//! | `SSTATS` (sender) | `SSTATS regions=<n> bytes=<n>` |
//! | `RSTATS` (receiver; drains the socket first) | `RSTATS attaches=<n> errors=<n> bad=<n> mappings=<n>` |
//!
//! Every test checks that the voxshm process's fds and mappings are back
//! where they started once its handles are dropped.

mod common;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use shm_primitives::{FileCleanup, MmapRegion};
use shm_primitives_async::{MmapAttachMessage, MmapControlReceiver, MmapControlSender};
use voxshm::{
    Attachments, AttachmentsOptions, Channel, Kind, Ref, Registry, RegistryOptions, Status,
};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
/// vox-shm's default mmap region size (`ShmLink::new`: 1 MiB).
const VOX_REGION: u64 = MIB;

// ---------------------------------------------------------------------------
// Text on the helper's pipes.

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The value of `key=` in a stats line's words.
fn stat(words: &[String], key: &str) -> u64 {
    words
        .iter()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {words:?}"))
        .parse()
        .expect("a number")
}

// ---------------------------------------------------------------------------
// The vox peer: shm-primitives, shm-primitives-async, libc and std only.

/// The 32-byte MMAP_REF frame, as vox-shm's `framing` writes it.
fn vox_frame(map_id: u32, map_generation: u32, map_offset: u64, payload_len: u32) -> [u8; 32] {
    let mut f = [0u8; 32];
    f[0..4].copy_from_slice(&32u32.to_le_bytes());
    f[4] = 0x02;
    f[8..12].copy_from_slice(&map_id.to_le_bytes());
    f[12..16].copy_from_slice(&map_generation.to_le_bytes());
    f[16..24].copy_from_slice(&map_offset.to_le_bytes());
    f[24..28].copy_from_slice(&payload_len.to_le_bytes());
    f
}

/// Reads an MMAP_REF frame, insisting on the exact layout.
fn vox_unframe(f: &[u8]) -> (u32, u32, u64, u32) {
    let u32_at = |i: usize| u32::from_le_bytes(f[i..i + 4].try_into().unwrap());
    assert_eq!(f.len(), 32, "frame length");
    assert_eq!((u32_at(0), f[4]), (32, 0x02), "frame header {f:02x?}");
    assert!(
        f[5..8] == [0; 3] && f[28..32] == [0; 4],
        "reserved {f:02x?}"
    );
    let offset = u64::from_le_bytes(f[16..24].try_into().unwrap());
    (u32_at(8), u32_at(12), offset, u32_at(24))
}

/// A region of the vox sender: `MmapRegistry`'s slot.
struct VoxSlot {
    region: MmapRegion,
    map_id: u32,
    map_generation: u32,
    offset: usize,
}

/// vox-shm's `MmapRegistry`, sender side.
struct VoxSender {
    tx: MmapControlSender,
    slots: Vec<VoxSlot>,
    next_map_id: u32,
    default_region_size: usize,
    bytes: u64,
}

impl VoxSender {
    /// `MmapRegistry::alloc`: the first region with room left after its
    /// bump offset, else a new region of `max(default, len)` bytes, sent to
    /// the peer at once. Returns the reference and where to write.
    fn alloc(&mut self, len: usize) -> (u32, u32, u64, *mut u8) {
        self.bytes += len as u64;
        for slot in &mut self.slots {
            if slot.offset + len <= slot.region.len() {
                let offset = slot.offset;
                slot.offset += len;
                // SAFETY: offset + len <= the region's length.
                let p = unsafe { slot.region.region().as_ptr().add(offset) };
                return (slot.map_id, slot.map_generation, offset as u64, p);
            }
        }
        let size = self.default_region_size.max(len);
        let map_id = self.next_map_id;
        self.next_map_id += 1;
        let path = std::env::temp_dir().join(format!(
            "voxshm-interop-{}-{map_id}.shm",
            std::process::id()
        ));
        let region = MmapRegion::create(&path, size, FileCleanup::Auto).expect("create region");
        let msg = MmapAttachMessage {
            map_id,
            map_generation: 0,
            mapping_length: region.len() as u64,
        };
        if let Err(e) = self.tx.send(region.as_raw_fd(), &msg) {
            // vox's alloc fails here too; the tests never fill the socket.
            panic!("ATTACH of region {map_id}: {e}");
        }
        let p = region.region().as_ptr();
        self.slots.push(VoxSlot {
            region,
            map_id,
            map_generation: 0,
            offset: len,
        });
        (map_id, 0, 0, p)
    }

    fn serve(mut self, commands: mpsc::Receiver<Vec<String>>) {
        for w in commands {
            match w[0].as_str() {
                "SEND" => {
                    let seq: u64 = w[1].parse().unwrap();
                    let len: u64 = w[2].parse().unwrap();
                    let (id, generation, offset, p) = self.alloc(len as usize);
                    // SAFETY: `alloc` returned `len` writable bytes at `p`.
                    unsafe { fill(p, len, seq) };
                    let f = vox_frame(id, generation, offset, len as u32);
                    say(&format!("SENT {seq} {}", hex(&f)));
                }
                _ => say(&format!(
                    "SSTATS regions={} bytes={}",
                    self.slots.len(),
                    self.bytes
                )),
            }
        }
    }
}

/// vox-shm's `MmapAttachments`, receiver side, noting what it saw.
struct VoxReceiver {
    rx: MmapControlReceiver,
    fd: RawFd,
    maps: HashMap<(u32, u32), MmapRegion>,
    attaches: u64,
    /// What `try_recv` refused (anything but 16 bytes with one fd).
    errors: Vec<String>,
    /// ATTACHes whose fd is not what voxshm promises a vox receiver.
    bad: Vec<String>,
}

/// What is wrong with a region fd a voxshm sender sent, if anything: it
/// must be a regular file at least `mapping_length` long, sealed against
/// shrinking and growing, and not against writes (vox maps read-write).
fn check_voxshm_region(fd: RawFd, msg: &MmapAttachMessage) -> Option<String> {
    // SAFETY: stat is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes one stat.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Some(format!("fstat: {}", std::io::Error::last_os_error()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG || (st.st_size as u64) < msg.mapping_length {
        return Some(format!("mode {:o}, {} bytes", st.st_mode, st.st_size));
    }
    // SAFETY: F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    let writes = libc::F_SEAL_WRITE | libc::F_SEAL_FUTURE_WRITE;
    if seals < 0 || seals & need != need || seals & writes != 0 {
        return Some(format!("seals {seals:#x}"));
    }
    None
}

impl VoxReceiver {
    /// `MmapAttachments::drain_control`: every waiting ATTACH is mapped.
    /// vox stops at the first error; this goes on, counting them.
    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(Some((fd, msg))) => {
                    self.attaches += 1;
                    let key = (msg.map_id, msg.map_generation);
                    if let Some(why) = check_voxshm_region(fd.as_raw_fd(), &msg) {
                        self.bad.push(format!("{key:?}: {why}"));
                    }
                    if self.maps.contains_key(&key) {
                        self.bad.push(format!("{key:?}: ATTACH repeated"));
                        continue;
                    }
                    match MmapRegion::attach_fd(fd, msg.mapping_length as usize) {
                        Ok(m) => {
                            self.maps.insert(key, m);
                        }
                        Err(e) => self.bad.push(format!("{key:?}: attach_fd: {e}")),
                    }
                }
                Ok(None) => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => self.errors.push(e.to_string()),
            }
        }
    }

    /// `resolve_with_grace`, waiting in poll() instead of sleeping, then
    /// checks every byte and says DONE.
    fn take(&mut self, seq: u64, frame: &str) {
        let (id, generation, offset, len) = vox_unframe(&unhex(frame));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.drain();
            assert!(self.errors.is_empty(), "recv errors: {:?}", self.errors);
            if self.maps.contains_key(&(id, generation)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ATTACH of region {id}/{generation} never came"
            );
            let mut p = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 10) };
        }
        let m = &self.maps[&(id, generation)];
        let end = offset.checked_add(u64::from(len)).expect("no overflow");
        assert!(end <= m.len() as u64, "{end} beyond {}", m.len());
        // SAFETY: offset + len lies within the mapping, checked above.
        let p = unsafe { m.region().as_ptr().add(offset as usize) };
        // SAFETY: `p` is valid for `len` reads.
        if let Err(e) = unsafe { verify(p, u64::from(len), seq) } {
            panic!("region {id}/{generation}: {e}");
        }
        say(&format!("DONE {seq}"));
    }

    fn serve(mut self, commands: mpsc::Receiver<Vec<String>>) {
        for w in commands {
            match w[0].as_str() {
                "TAKE" => self.take(w[1].parse().unwrap(), &w[2]),
                _ => {
                    self.drain();
                    say(&format!(
                        "RSTATS attaches={} errors={} bad={} mappings={}",
                        self.attaches,
                        self.errors.len(),
                        self.bad.len(),
                        self.maps.len()
                    ));
                    for e in self.errors.iter().chain(&self.bad) {
                        eprintln!("vox peer: {e}");
                    }
                }
            }
        }
    }
}

/// Runs `f` on a thread of its own; a panic there ends the process (the
/// parent then sees the helper exit instead of waiting for an answer).
fn worker(f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
            std::process::exit(101);
        }
    })
}

/// The vox peer. `$VOX_PEER_MODE`: `send`, `recv`, or `duplex` (both at
/// once, on one thread each, as vox does); `$VOX_REGION_SIZE`: the default
/// region size. Its socket is fd 3.
#[test]
fn helper_vox_peer() {
    if role().as_deref() != Some("vox-peer") {
        return;
    }
    let mode = env("VOX_PEER_MODE");
    let default_region_size = env("VOX_REGION_SIZE").parse().unwrap();
    // A vox sender keeps every region, each with its fd (`MmapRegion` holds
    // its file and cannot give it up): allow as many fds as the system does.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write one rlimit.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    // SAFETY: the parent made fd 3 our end of the pair; nothing else in this
    // process owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(3) };
    // vox makes its pair non-blocking.
    shm_primitives_async::set_nonblocking(sock.as_raw_fd()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut workers = Vec::new();
    let mut to_receiver = None;
    if mode == "recv" || mode == "duplex" {
        // vox's receiving half is a dup of the same end.
        // SAFETY: dup takes no pointers.
        let fd = unsafe { libc::dup(sock.as_raw_fd()) };
        assert!(fd >= 0);
        let _in_runtime = rt.enter();
        // SAFETY: `fd` is a fresh dup of our socket, owned by nothing else.
        let rx = unsafe { MmapControlReceiver::from_raw_fd(fd) }.unwrap();
        let r = VoxReceiver {
            rx,
            fd,
            maps: HashMap::new(),
            attaches: 0,
            errors: Vec::new(),
            bad: Vec::new(),
        };
        let (tx, commands) = mpsc::channel();
        to_receiver = Some(tx);
        workers.push(worker(move || r.serve(commands)));
    }
    let mut to_sender = None;
    if mode == "send" || mode == "duplex" {
        // SAFETY: the sender takes over fd 3 from `sock`.
        let tx = unsafe { MmapControlSender::from_raw_fd(sock.into_raw_fd()) };
        let s = VoxSender {
            tx,
            slots: Vec::new(),
            next_map_id: 0,
            default_region_size,
            bytes: 0,
        };
        let (tx, commands) = mpsc::channel();
        to_sender = Some(tx);
        workers.push(worker(move || s.serve(commands)));
    }
    while let Some(line) = hear() {
        let w: Vec<String> = line.split_whitespace().map(String::from).collect();
        let to = match w.first().map(String::as_str) {
            Some("SEND" | "SSTATS") => &to_sender,
            Some("TAKE" | "RSTATS") => &to_receiver,
            _ => break,
        };
        to.as_ref().expect("not in this mode").send(w).unwrap();
    }
    drop((to_sender, to_receiver));
    for w in workers {
        w.join().unwrap();
    }
    drop(rt);
}

// ---------------------------------------------------------------------------
// The voxshm side.

/// This process's fds and mappings.
///
/// Only the mappings that name something (a file, a memfd, `[heap]`...) or
/// are shared are compared: every region either side makes is one of
/// those. Anonymous private mappings (thread stacks, signal stacks, malloc
/// arenas) come and go with the test harness's threads, which run beside
/// the test (the next test's thread, waiting for `serial()`).
struct Footprint {
    fds: Vec<RawFd>,
    maps: Vec<String>,
}

/// The lines of /proc/self/maps, less anonymous private mappings.
fn named_or_shared_maps() -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
    text.lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 5 || f[1].contains('s')
        })
        .map(String::from)
        .collect()
}

impl Footprint {
    fn now() -> Footprint {
        Footprint {
            fds: fd_list(),
            maps: named_or_shared_maps(),
        }
    }

    /// Asserts that the fds and the number of mappings are as they were.
    fn assert_back(&self) {
        let now = Footprint::now();
        assert_eq!(now.fds, self.fds, "fds");
        if now.maps.len() != self.maps.len() {
            let new: Vec<_> = now.maps.iter().filter(|m| !self.maps.contains(m)).collect();
            let gone: Vec<_> = self.maps.iter().filter(|m| !now.maps.contains(m)).collect();
            panic!(
                "{} named or shared mappings, {} before; new: {new:#?}, gone: {gone:#?}",
                now.maps.len(),
                self.maps.len()
            );
        }
    }
}

/// Runs `body` with one end of a datagram pair whose other end a vox peer
/// in `mode` holds, then says BYE and waits for the peer; once `body`'s
/// handles are dropped, this process's fds and mappings must be back where
/// they were.
fn with_vox_peer(mode: &str, region_size: u64, body: impl FnOnce(Channel, &mut Helper)) {
    let _s = serial();
    let before = Footprint::now();
    {
        let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
        let mut h = spawn_peer(mode, region_size, &theirs);
        drop(theirs);
        body(mine, &mut h);
        h.tell("BYE");
        h.wait_success();
    }
    before.assert_back();
}

fn spawn_peer(mode: &str, region_size: u64, theirs: &Channel) -> Helper {
    Helper::spawn(
        "helper_vox_peer",
        "vox-peer",
        Some(theirs.raw()),
        &[
            ("VOX_PEER_MODE", mode.to_string()),
            ("VOX_REGION_SIZE", region_size.to_string()),
        ],
    )
}

/// The next answer from the peer, split into words (other output, such as
/// the test harness's, is skipped).
fn next_answer(h: &mut Helper) -> Vec<String> {
    loop {
        let line = h.expect("");
        let w: Vec<String> = line.split_whitespace().map(String::from).collect();
        if let Some("DONE" | "SENT" | "SSTATS" | "RSTATS") = w.first().map(String::as_str) {
            return w;
        }
    }
}

/// How the voxshm side talks to the peer: directly, or (duplex) through a
/// thread that owns the helper.
trait PeerIo {
    fn tell(&mut self, line: &str);
    /// The next answer, which must be of `kind`; the words after it.
    fn answer(&mut self, kind: &str) -> Vec<String>;
}

impl PeerIo for Helper {
    fn tell(&mut self, line: &str) {
        Helper::tell(self, line);
    }

    fn answer(&mut self, kind: &str) -> Vec<String> {
        let mut w = next_answer(self);
        assert_eq!(w[0], kind, "{w:?}");
        w.remove(0);
        w
    }
}

fn peer_stats(h: &mut Helper, which: &str) -> Vec<String> {
    h.tell(which);
    h.answer(which)
}

/// voxshm → vox: publishes payloads of `sizes` (payload `first + i` holds
/// pattern `first + i`) from a vox-compatible registry, with at most
/// `window` waiting for the peer's DONE, and ends each lease by reference
/// when the peer says it is done. Returns the payload bytes sent.
fn voxshm_sends(
    reg: &Registry,
    io: &mut impl PeerIo,
    first: u64,
    sizes: &[u64],
    window: usize,
) -> u64 {
    let budget = reg.options().budget;
    let mut in_flight: HashMap<u64, Ref> = HashMap::new();
    let mut total = 0;
    for (seq, &len) in (first..).zip(sizes) {
        let a = loop {
            match reg.alloc(len, 0) {
                Ok(a) => break a,
                Err(e) if e.status == Status::NoSpace && !in_flight.is_empty() => {
                    finish_one(reg, io, &mut in_flight)
                }
                Err(e) => panic!(
                    "alloc of payload {seq} ({len} bytes), none in flight: {e}; {:?}",
                    reg.stats()
                ),
            }
        };
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, seq) };
        let r = reg.publish(&a, len).unwrap();
        io.tell(&format!("TAKE {seq} {}", hex(&r.encode_frame())));
        in_flight.insert(seq, r);
        total += len;
        let st = reg.stats();
        assert!(st.mapped_bytes <= budget, "{st:?}");
        while in_flight.len() >= window {
            finish_one(reg, io, &mut in_flight);
        }
    }
    while !in_flight.is_empty() {
        finish_one(reg, io, &mut in_flight);
    }
    total
}

/// Waits for the peer's next DONE and ends that payload's lease.
fn finish_one(reg: &Registry, io: &mut impl PeerIo, in_flight: &mut HashMap<u64, Ref>) {
    let seq: u64 = io.answer("DONE")[0].parse().unwrap();
    let r = in_flight.remove(&seq).expect("DONE of a payload in flight");
    reg.release(&r).unwrap();
}

/// vox → voxshm: asks the peer for payloads of `sizes` (pattern `first +
/// i`), at most `window` ahead, and hands each reference it sends, in
/// order, to `take`.
fn vox_sends(
    io: &mut impl PeerIo,
    first: u64,
    sizes: &[u64],
    window: usize,
    mut take: impl FnMut(u64, Ref),
) {
    let (mut asked, mut answered) = (0, 0);
    while answered < sizes.len() {
        while asked < sizes.len() && asked - answered < window {
            io.tell(&format!("SEND {} {}", first + asked as u64, sizes[asked]));
            asked += 1;
        }
        let w = io.answer("SENT");
        let seq = first + answered as u64;
        assert_eq!(w[0], seq.to_string());
        let r = Ref::decode_frame(&unhex(&w[1])).expect("a vox frame decodes");
        assert_eq!(u64::from(r.payload_len), sizes[answered]);
        take(seq, r);
        answered += 1;
    }
}

/// Resolves payload `seq`, checks every byte, releases the view.
fn resolve_exact(att: &Attachments, seq: u64, r: &Ref) {
    let v = att
        .resolve(r, LONG_MS)
        .unwrap_or_else(|e| panic!("payload {seq} ({r}): {e}"));
    // SAFETY: the view holds `len` readable bytes until released.
    unsafe { verify(v.data, v.len, seq) }.unwrap();
    att.release(&v).unwrap();
}

/// 1 byte to 64 MiB: around words, cache lines, pages, vox's 1 MiB region
/// and above it, in increasing order.
fn edge_sizes() -> Vec<u64> {
    let mut v = vec![1, 2, 3, 7, 8, 9, 63, 64, 65, 4095, 4096, 4097, 65535, 65536];
    for base in [MIB, 2 * MIB] {
        v.extend([base - 1, base, base + 1]);
    }
    v.extend([4 * MIB + 3, 16 * MIB, 64 * MIB - 1, 64 * MIB]);
    v
}

/// `n` sizes, log-uniform in 1..=`max`.
fn random_sizes(seed: u64, n: usize, max: u64) -> Vec<u64> {
    let mut p = Prng::new(seed);
    (0..n).map(|_| p.log_uniform(max)).collect()
}

fn vox_compat_registry(chan: Channel, budget: u64) -> Registry {
    let opts = RegistryOptions {
        vox_compat: true,
        region_size: VOX_REGION,
        budget,
        ..Default::default()
    };
    Registry::new(chan, opts).unwrap()
}

fn vox_compat_attachments(chan: Channel, opts: AttachmentsOptions) -> Attachments {
    Attachments::new(
        chan,
        AttachmentsOptions {
            vox_compat: true,
            ..opts
        },
    )
    .unwrap()
}

/// voxshm → vox: payloads of 1 B to 64 MiB, thousands of small ones across
/// region boundaries, every byte checked by the vox peer; each lease ends
/// by reference once the peer says DONE, so the bytes sent are many times
/// the budget. The peer's `MmapControlReceiver` only ever sees valid
/// ATTACHes (it refuses anything but 16 bytes with one fd), one per
/// region, each a sealed regular file it can map read-write.
#[test]
fn vox_interop_voxshm_sends_to_a_vox_receiver() {
    with_vox_peer("recv", VOX_REGION, |mine, h| {
        let budget = 128 * MIB;
        let reg = vox_compat_registry(mine, budget);
        let mut sizes = random_sizes(1, 4000, 256 * KIB);
        sizes.extend(edge_sizes());
        sizes.extend(random_sizes(2, 2000, 4 * MIB));
        sizes.extend([64 * MIB, 48 * MIB, 64 * MIB, 32 * MIB + 5]);
        let sent = voxshm_sends(&reg, h, 0, &sizes, 32);
        assert!(sent > 6 * budget, "{sent} bytes sent");
        let st = reg.stats();
        assert_eq!(st.live_leases, 0, "{st:?}");
        assert_eq!(st.payloads_published, sizes.len() as u64, "{st:?}");
        assert_eq!(st.payload_bytes_published, sent, "{st:?}");
        assert_eq!((st.messages_received, st.regions_retired), (0, 0), "{st:?}");
        assert!(st.regions_created > 2, "{st:?}");
        let r = peer_stats(h, "RSTATS");
        assert_eq!(stat(&r, "errors"), 0, "{r:?}");
        assert_eq!(stat(&r, "bad"), 0, "{r:?}");
        assert_eq!(stat(&r, "attaches"), st.regions_created, "{r:?} {st:?}");
        assert_eq!(
            st.messages_sent, st.regions_created,
            "ATTACHes only: {st:?}"
        );
    });
}

/// vox → voxshm: payloads of 1 B to 64 MiB placed as vox places them
/// (bump allocation, first fit, regions never freed), thousands across
/// region boundaries; the vox-compatible attachments resolve each, every
/// byte checked, and say nothing back on the socket.
#[test]
fn vox_interop_vox_sends_to_voxshm() {
    with_vox_peer("send", VOX_REGION, |mine, h| {
        let att = vox_compat_attachments(mine, AttachmentsOptions::default());
        let mut sizes = random_sizes(3, 4000, 256 * KIB);
        sizes.extend(edge_sizes());
        sizes.extend(random_sizes(4, 1000, 64 * KIB));
        sizes.extend([64 * MIB, 3 * MIB + 1]);
        let mut regions = std::collections::BTreeSet::new();
        let mut back_in_older = 0;
        vox_sends(h, 0, &sizes, 16, |seq, r| {
            assert_eq!(r.map_generation, 0);
            if regions.last().is_some_and(|&l| r.map_id < l) {
                back_in_older += 1;
            }
            regions.insert(r.map_id);
            resolve_exact(&att, seq, &r);
        });
        let s = peer_stats(h, "SSTATS");
        assert_eq!(stat(&s, "regions"), regions.len() as u64, "{s:?}");
        assert_eq!(stat(&s, "bytes"), sizes.iter().sum::<u64>(), "{s:?}");
        assert!(regions.len() > 80, "{} regions", regions.len());
        assert!(
            back_in_older > 0,
            "vox's first fit went back to older regions"
        );
        let st = att.stats();
        assert_eq!(st.attaches_received, regions.len() as u64, "{st:?}");
        assert_eq!(st.attaches_rejected + st.regions_evicted, 0, "{st:?}");
        assert_eq!((st.live_views, st.messages_sent), (0, 0), "{st:?}");
    });
}

/// A long vox session: at least 10,000 regions (16 KiB by default, so it is
/// quick). The vox peer never frees one and keeps each one's fd (it raises
/// its RLIMIT_NOFILE soft limit to the hard one); the voxshm receiver stays
/// within `max_mappings` and `max_mapped_bytes` by unmapping what no view
/// holds, and every payload resolves, byte-exact. The sizes are such that
/// vox's first fit never goes back to an old region (see the next test):
/// first 4 KiB payloads, four to a region, then one payload of more than
/// half a region to each region.
#[test]
fn vox_interop_long_session_of_ten_thousand_vox_regions() {
    const REGION: u64 = 16 * KIB;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    assert!(
        lim.rlim_max > 10_100,
        "the vox peer holds 10,000 region fds; RLIMIT_NOFILE's hard limit is {}",
        lim.rlim_max
    );
    with_vox_peer("send", REGION, |mine, h| {
        let mut opts = AttachmentsOptions::default();
        opts.limits.max_mappings = 32;
        opts.limits.max_mapped_bytes = 24 * REGION;
        let att = vox_compat_attachments(mine, opts.clone());
        let mut sizes = vec![4 * KIB; 8000];
        let mut p = Prng::new(5);
        sizes.extend((0..8000).map(|_| p.range(REGION / 2 + 1, REGION)));
        let mut most = (0, 0);
        vox_sends(h, 0, &sizes, 8, |seq, r| {
            resolve_exact(&att, seq, &r);
            let st = att.stats();
            assert!(st.mappings <= u64::from(opts.limits.max_mappings), "{st:?}");
            assert!(st.mapped_bytes <= opts.limits.max_mapped_bytes, "{st:?}");
            most = (most.0.max(st.mappings), most.1.max(st.mapped_bytes));
        });
        let regions = stat(&peer_stats(h, "SSTATS"), "regions");
        assert!(regions >= 10_000, "{regions} regions");
        let st = att.stats();
        assert_eq!(st.attaches_received, regions, "{st:?}");
        assert_eq!(st.attaches_rejected, 0, "{st:?}");
        assert!(st.regions_evicted >= regions - 24, "{st:?}");
        assert_eq!(most, (24, 24 * REGION), "the byte limit binds");
    });
}

/// vox's first fit places a small payload in the space an old region has
/// left, however old: if the voxshm receiver unmapped that region to make
/// room, the reference fails with `TOO_MANY_MAPPINGS` ("unmapped to make
/// room", as documented), never with wrong bytes; every other payload is
/// byte-exact.
#[test]
fn vox_interop_first_fit_into_an_unmapped_region_fails_cleanly() {
    const REGION: u64 = 16 * KIB;
    with_vox_peer("send", REGION, |mine, h| {
        let mut opts = AttachmentsOptions::default();
        opts.limits.max_mappings = 8;
        let att = vox_compat_attachments(mine, opts);
        let sizes = random_sizes(6, 3000, REGION);
        let (mut ok, mut lost) = (0, 0);
        vox_sends(h, 0, &sizes, 4, |seq, r| {
            match att.resolve(&r, LONG_MS) {
                Ok(v) => {
                    // SAFETY: the view holds `len` readable bytes until released.
                    unsafe { verify(v.data, v.len, seq) }.unwrap();
                    att.release(&v).unwrap();
                    ok += 1;
                }
                Err(e) => {
                    assert_eq!(e.status, Status::TooManyMappings, "{e}");
                    assert!(e.message.contains("unmapped to make room"), "{e}");
                    lost += 1;
                }
            }
        });
        eprintln!("first fit into old regions: {ok} resolved, {lost} in unmapped regions");
        // Both outcomes happen (seeded sizes; with 32 mappings none is lost).
        assert!(ok > 0 && lost > 0, "{ok} resolved, {lost} lost");
        let st = att.stats();
        assert!(st.mappings <= 8 && st.regions_evicted > 0, "{st:?}");
    });
}

/// A voxshm receiver that is not in vox compatibility says HELLO, a 24-byte
/// extension message: vox's `MmapControlReceiver` refuses it (anything but
/// 16 bytes with one fd is an error, and vox-shm's `MmapAttachments` makes
/// the first error final for the link). This is what the other tests'
/// "errors=0" rules out.
#[test]
fn vox_interop_a_vox_receiver_refuses_a_voxshm_hello() {
    with_vox_peer("recv", VOX_REGION, |mine, h| {
        let _att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
        let r = peer_stats(h, "RSTATS");
        assert_eq!((stat(&r, "errors"), stat(&r, "attaches")), (1, 0), "{r:?}");
    });
}

/// Payloads that grow, each released before the next: in vox
/// compatibility no RETIRE can be said, so idle regions too small for the
/// next payload would fill the budget and alloc say NO_SPACE for ever
/// although nothing is leased (here: 20, 30, then 40 MiB in a 64 MiB
/// budget). The registry closes them to make room instead.
#[test]
fn vox_interop_growing_payloads_fit_a_budget_of_idle_regions() {
    with_vox_peer("recv", VOX_REGION, |mine, h| {
        let reg = vox_compat_registry(mine, 64 * MIB);
        voxshm_sends(&reg, h, 0, &[20 * MIB, 30 * MIB, 40 * MIB], 1);
    });
}

mod duplex {
    use super::*;

    enum ToHub {
        Tell(String),
        Finished,
    }

    /// A worker's way to the peer: its lines go through the hub, and the
    /// hub hands it the answers of its kind.
    struct Routed {
        hub: mpsc::Sender<ToHub>,
        answers: mpsc::Receiver<Vec<String>>,
    }

    impl PeerIo for Routed {
        fn tell(&mut self, line: &str) {
            self.hub.send(ToHub::Tell(line.to_string())).unwrap();
        }

        fn answer(&mut self, kind: &str) -> Vec<String> {
            let mut w = self
                .answers
                .recv_timeout(Duration::from_secs(120))
                .expect("an answer within 120 s");
            assert_eq!(w[0], kind, "{w:?}");
            w.remove(0);
            w
        }
    }

    /// Owns the helper: says what the workers want said, and hands each
    /// answer to the worker waiting for its kind. Waits for an answer only
    /// while the peer owes one (every command gets exactly one), so a
    /// worker's command is never held up.
    fn hub(
        h: &mut Helper,
        from: mpsc::Receiver<ToHub>,
        done: mpsc::Sender<Vec<String>>,
        sent: mpsc::Sender<Vec<String>>,
        mut workers: usize,
    ) {
        let mut owed = 0usize;
        while workers > 0 || owed > 0 {
            let next = if owed == 0 {
                Some(from.recv().expect("a worker died"))
            } else {
                from.try_recv().ok()
            };
            match next {
                Some(ToHub::Tell(line)) => {
                    h.tell(&line);
                    owed += 1;
                }
                Some(ToHub::Finished) => workers -= 1,
                None => {
                    let w = next_answer(h);
                    owed -= 1;
                    let to = if w[0] == "DONE" { &done } else { &sent };
                    to.send(w).expect("its worker is waiting");
                }
            }
        }
    }

    /// Both directions at once on one datagram pair, as vox uses it: the
    /// voxshm registry sends while the vox peer sends, the voxshm
    /// attachments resolve the peer's payloads on the same socket, 1 B to
    /// 64 MiB each way, every byte checked on both sides.
    #[test]
    fn vox_interop_duplex_on_one_datagram_pair() {
        with_vox_peer("duplex", VOX_REGION, |mine, h| {
            let budget = 128 * MIB;
            let (registry, attachments) = voxshm::duplex(
                mine,
                RegistryOptions {
                    vox_compat: true,
                    region_size: VOX_REGION,
                    budget,
                    ..Default::default()
                },
                AttachmentsOptions {
                    vox_compat: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut out_sizes = random_sizes(7, 3000, 256 * KIB);
            out_sizes.extend(edge_sizes());
            out_sizes.extend([48 * MIB, 64 * MIB]);
            let mut in_sizes = random_sizes(8, 3000, 256 * KIB);
            in_sizes.extend(edge_sizes());
            in_sizes.push(64 * MIB);
            let (hub_tx, hub_rx) = mpsc::channel();
            let (done_tx, done_rx) = mpsc::channel();
            let (sent_tx, sent_rx) = mpsc::channel();
            let mut to_peer = Routed {
                hub: hub_tx.clone(),
                answers: done_rx,
            };
            let mut from_peer = Routed {
                hub: hub_tx,
                answers: sent_rx,
            };
            let (reg, att) = (&registry, &attachments);
            let (out, inc) = (&out_sizes, &in_sizes);
            let sent = std::thread::scope(|s| {
                let sender = s.spawn(move || {
                    let n = voxshm_sends(reg, &mut to_peer, 0, out, 16);
                    to_peer.hub.send(ToHub::Finished).unwrap();
                    n
                });
                let receiver = s.spawn(move || {
                    vox_sends(&mut from_peer, 1 << 40, inc, 16, |seq, r| {
                        resolve_exact(att, seq, &r)
                    });
                    from_peer.hub.send(ToHub::Finished).unwrap();
                });
                hub(h, hub_rx, done_tx, sent_tx, 2);
                receiver.join().unwrap();
                sender.join().unwrap()
            });
            assert_eq!(sent, out_sizes.iter().sum::<u64>());
            let rs = reg.stats();
            assert_eq!(rs.live_leases, 0, "{rs:?}");
            let r = peer_stats(h, "RSTATS");
            assert_eq!((stat(&r, "errors"), stat(&r, "bad")), (0, 0), "{r:?}");
            assert_eq!(stat(&r, "attaches"), rs.regions_created, "{r:?} {rs:?}");
            let s = peer_stats(h, "SSTATS");
            let st = att.stats();
            assert_eq!(st.attaches_received, stat(&s, "regions"), "{s:?} {st:?}");
            assert_eq!(st.attaches_rejected, 0, "{st:?}");
            assert_eq!(st.live_views, 0, "{st:?}");
            // The channel's counters, which both handles show: nothing but
            // ATTACHes crossed it, each way.
            assert_eq!(rs.messages_sent, rs.regions_created, "{rs:?}");
            assert_eq!(rs.bytes_sent, 16 * rs.regions_created, "{rs:?}");
            assert_eq!(rs.messages_received, st.attaches_received, "{rs:?} {st:?}");
            assert_eq!(st.messages_sent, rs.messages_sent);
        });
    }
}
