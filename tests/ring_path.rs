//! The ring path between real processes: references and releases through
//! the shared ring segment, with the socket carrying only regions, the
//! segment and wake-ups; negotiation with peers that do not offer it; peer
//! death with references still in the ring; and peers that write garbage
//! into the segment (a hostile process maps it with plain `mmap` and writes
//! whatever the scenario says), which fail the link and nothing else.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use voxshm::Status::{OutOfBounds, PeerGone, Protocol, Timeout};
use voxshm::wire::{self, Ext};
use voxshm::{Attachments, AttachmentsOptions, Channel, Ref, Registry, RegistryOptions};

const LONG_MS: i64 = 20_000;

fn reg_opts() -> RegistryOptions {
    RegistryOptions {
        region_size: 1 << 20,
        budget: 64 << 20,
        keep_warm: 2 << 20,
        ..Default::default()
    }
}

fn sizes(n: usize, seed: u64) -> Vec<u64> {
    let mut p = Prng::new(seed);
    (0..n).map(|_| p.log_uniform(200_000).max(1)).collect()
}

// ---------------------------------------------------------------------------
// Honest peers.

/// Receives `$VOXSHM_TEST_N` payloads of `sizes(N, 7)`, checks every byte,
/// releases each, and reports its stats.
#[test]
fn helper_ring_receiver() {
    if role().as_deref() != Some("ring-receiver") {
        return;
    }
    let n: usize = env("VOXSHM_TEST_N").parse().unwrap();
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    say("READY");
    for (i, &len) in sizes(n, 7).iter().enumerate() {
        let v = att.recv(LONG_MS).unwrap();
        assert_eq!(v.len, len);
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        att.release(&v).unwrap();
    }
    let s = att.stats();
    say(&format!(
        "STATS {} {} {} {}",
        u8::from(s.ring),
        s.messages_sent,
        s.messages_received,
        s.wakeups_sent
    ));
    hear();
}

#[test]
fn ring_stream_sends_no_socket_message_per_payload() {
    let _s = serial();
    const N: usize = 20_000;
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_ring_receiver",
        "ring-receiver",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", N.to_string())],
    );
    drop(theirs);
    let reg = Registry::new(mine, reg_opts()).unwrap();
    h.expect("READY");
    for (i, &len) in sizes(N, 7).iter().enumerate() {
        let a = reg.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, i as u64) };
        reg.send(&a, len, LONG_MS).unwrap();
    }
    let theirs = h.expect("STATS");
    let t: Vec<u64> = theirs.split(' ').map(|x| x.parse().unwrap()).collect();
    // Every release was pushed before STATS was said.
    reg.poll().unwrap();
    let s = reg.stats();
    assert!(s.ring, "{s:?}");
    assert_eq!(t[0], 1, "the receiver used the ring: {theirs}");
    assert_eq!(s.payloads_published, N as u64);
    assert_eq!(s.live_leases, 0, "{s:?}");
    // Per payload nothing went over the socket: what did is regions,
    // HELLO, the segment, retirements and wake-ups (a burst costs one).
    let socket = s.messages_sent - s.wakeups_sent;
    assert!(socket <= 2 * s.regions_created + 10, "{s:?}");
    assert!(
        s.wakeups_sent + t[3] < N as u64 / 4,
        "wake-ups are batched: sender {s:?}, receiver {theirs}"
    );
    assert!(t[1] < N as u64 / 4, "receiver messages: {theirs}");
    h.tell("bye");
    h.wait_success();
    drop(reg);
    assert_eq!(fd_count(), before);
}

#[test]
fn ring_is_used_only_when_both_sides_offer_it() {
    let _s = serial();
    for (reg_ring, att_ring) in [(true, true), (true, false), (false, true), (false, false)] {
        let (a, b) = Channel::pair().unwrap();
        let reg = Registry::new(
            a,
            RegistryOptions {
                ring: reg_ring,
                ..reg_opts()
            },
        )
        .unwrap();
        let att = Attachments::new(
            b,
            AttachmentsOptions {
                ring: att_ring,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..50u64 {
            let len = 100 + i * 1000;
            let al = reg.alloc(len, LONG_MS).unwrap();
            // SAFETY: the allocation holds at least `len` writable bytes.
            unsafe { fill(al.data, len, i) };
            reg.send(&al, len, LONG_MS).unwrap();
            let v = att.recv(LONG_MS).unwrap();
            // SAFETY: the view holds `len` readable bytes until released.
            unsafe { verify(v.data, v.len, i) }.unwrap();
            att.release(&v).unwrap();
        }
        settle(&reg, &att);
        let both = reg_ring && att_ring;
        assert_eq!(reg.stats().ring, both, "{reg_ring} {att_ring}");
        assert_eq!(att.stats().ring, both, "{reg_ring} {att_ring}");
        assert_eq!(att.stats().refs_received, 50);
    }
}

/// A datagram pair (what a vox peer makes) shows no hang-up: the ring is
/// not offered there, so a dead receiver is still noticed by a send.
#[test]
fn ring_is_not_used_on_a_datagram_pair() {
    // Every test here takes the lock: some count the process's fds.
    let _s = serial();
    let (a, b) = Channel::pair_of(voxshm::Kind::Dgram).unwrap();
    let reg = Registry::new(a, reg_opts()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    for _ in 0..3 {
        let al = reg.alloc(64, LONG_MS).unwrap();
        reg.send(&al, 64, LONG_MS).unwrap();
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    assert!(!reg.stats().ring && !att.stats().ring);
}

/// Sends `$VOXSHM_TEST_N` payloads of 1000 bytes, says SENT, waits.
#[test]
fn helper_ring_sender() {
    if role().as_deref() != Some("ring-sender") {
        return;
    }
    let n: u64 = env("VOXSHM_TEST_N").parse().unwrap();
    let reg = Registry::new(inherited_channel(), reg_opts()).unwrap();
    for i in 0..n {
        let a = reg.alloc(1000, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least 1000 writable bytes.
        unsafe { fill(a.data, 1000, i) };
        reg.send(&a, 1000, LONG_MS).unwrap();
    }
    say(&format!("SENT {}", u8::from(reg.stats().ring)));
    hear();
}

#[test]
fn ring_references_pushed_before_the_sender_died_are_received() {
    let _s = serial();
    const N: u64 = 300;
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_ring_sender",
        "ring-sender",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", N.to_string())],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    // The first reference goes over the socket (before the segment), the
    // rest through the ring; the receiver takes the first one so the
    // sender can make the segment, then takes nothing until it is dead.
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    assert_eq!(h.expect("SENT"), "1");
    h.kill9();
    for i in 1..N {
        let v = att.recv(LONG_MS).unwrap();
        // SAFETY: the view holds 1000 readable bytes until released.
        unsafe { verify(v.data, v.len, i) }.unwrap();
        att.release(&v).unwrap();
    }
    assert_eq!(att.recv(LONG_MS).unwrap_err().status, PeerGone);
    assert!(att.stats().ring);
    drop(att);
    assert_eq!(fd_count(), before);
}

/// Takes `$VOXSHM_TEST_N` payloads without releasing them, says TOOK, and
/// waits to be killed.
#[test]
fn helper_ring_taker() {
    if role().as_deref() != Some("ring-taker") {
        return;
    }
    let n: u64 = env("VOXSHM_TEST_N").parse().unwrap();
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    let mut held = Vec::new();
    for _ in 0..n {
        held.push(att.recv(LONG_MS).unwrap());
    }
    say("TOOK");
    hear();
}

#[test]
fn ring_receiver_death_reclaims_references_it_never_took() {
    let _s = serial();
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_ring_taker",
        "ring-taker",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", "10".into())],
    );
    drop(theirs);
    let opts = reg_opts();
    let reg = Registry::new(mine, opts.clone()).unwrap();
    // 10 taken and held, 90 left in the ring.
    for _ in 0..100 {
        let a = reg.alloc(5000, LONG_MS).unwrap();
        reg.send(&a, 5000, LONG_MS).unwrap();
    }
    h.expect("TOOK");
    assert!(reg.stats().ring);
    assert_eq!(reg.stats().live_leases, 100);
    h.kill9();
    assert_eq!(reg.wait_idle(LONG_MS).unwrap_err().status, PeerGone);
    let s = reg.stats();
    assert_eq!((s.live_leases, s.allocations), (0, 0), "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    assert_eq!(reg.alloc(10, 0).unwrap_err().status, PeerGone);
    drop(reg);
    assert_eq!(fd_count(), before);
}

#[test]
fn ring_several_threads_send_on_one_registry() {
    let _s = serial();
    const THREADS: u64 = 4;
    const EACH: u64 = 2000;
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            ring_capacity: 16,
            ..reg_opts()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let seen = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            let mut seen = vec![0u64; THREADS as usize];
            for _ in 0..THREADS * EACH {
                let v = att.recv(LONG_MS).unwrap();
                // SAFETY: every payload is at least 16 bytes.
                let (t, i) = unsafe {
                    (
                        v.data.cast::<u64>().read(),
                        v.data.cast::<u64>().add(1).read(),
                    )
                };
                assert_eq!(i, seen[t as usize], "thread {t} in order");
                seen[t as usize] += 1;
                att.release(&v).unwrap();
            }
            seen
        });
        for t in 0..THREADS {
            let reg = &reg;
            s.spawn(move || {
                for i in 0..EACH {
                    let al = reg.alloc(16 + i % 300, LONG_MS).unwrap();
                    // SAFETY: at least 16 writable bytes.
                    unsafe {
                        al.data.cast::<u64>().write(t);
                        al.data.cast::<u64>().add(1).write(i);
                    }
                    reg.send(&al, 16 + i % 300, LONG_MS).unwrap();
                }
            });
        }
        rx.join().unwrap()
    });
    assert_eq!(seen, vec![EACH; THREADS as usize]);
    assert!(reg.stats().ring);
    settle(&reg, &att);
}

/// A receiver polling its fd: readable when a reference comes (a wake-up
/// was asked for by the call that found nothing), and every payload comes.
#[test]
fn ring_event_loop_receiver_is_woken_through_its_fd() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, reg_opts()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let fd = att.fd();
    let rx = std::thread::spawn(move || {
        let mut got = 0u64;
        while got < 500 {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            assert_eq!(unsafe { libc::poll(&mut p, 1, 10_000) }, 1, "never woken");
            loop {
                match att.recv(0) {
                    Ok(v) => {
                        got += 1;
                        att.release(&v).unwrap();
                    }
                    Err(e) if e.status == Timeout => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        att
    });
    for i in 0..500u64 {
        let al = reg.alloc(64, LONG_MS).unwrap();
        reg.send(&al, 64, LONG_MS).unwrap();
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let att = rx.join().unwrap();
    assert!(reg.stats().ring && att.stats().ring);
    settle(&reg, &att);
}

// ---------------------------------------------------------------------------
// Hostile peers: the segment written by hand.

const REFS_AT: usize = 64;
const RELEASES_AT: usize = 256;
const PRODUCER: usize = 0;
const CONSUMER: usize = 64;
const ENTRIES_AT: usize = 4096;
const CAP: u32 = 16;

/// A segment mapped with plain mmap, written without any of the library's
/// checks.
struct RawSeg {
    ptr: *mut u8,
    len: usize,
    refs_cap: usize,
}

// SAFETY: the mapping is shared memory written with volatile accesses;
// the tests use it from several threads as two processes would.
unsafe impl Sync for RawSeg {}
// SAFETY: as above.
unsafe impl Send for RawSeg {}

impl RawSeg {
    fn len_for(cap: u32) -> usize {
        (ENTRIES_AT + 2 * cap as usize * 24).div_ceil(4096) * 4096
    }

    /// Makes a segment as a sender would: header written, sealed.
    fn create(cap: u32) -> (RawSeg, OwnedFd) {
        let len = Self::len_for(cap);
        let fd = memfd(len as u64, SHRINK_GROW);
        let seg = Self::map(&fd, len, cap);
        for (i, v) in [u32::from_le_bytes(*b"VXRG"), 1, cap, cap, 24]
            .iter()
            .enumerate()
        {
            seg.put_u32(i * 4, *v);
        }
        (seg, fd)
    }

    fn map(fd: &OwnedFd, len: usize, cap: u32) -> RawSeg {
        // SAFETY: a shared mapping of a file of at least `len` bytes.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED);
        RawSeg {
            ptr: ptr.cast(),
            len,
            refs_cap: cap as usize,
        }
    }

    fn put_u32(&self, at: usize, v: u32) {
        assert!(at + 4 <= self.len);
        // SAFETY: inside the mapping, aligned; volatile, as the peer reads it.
        unsafe { self.ptr.add(at).cast::<u32>().write_volatile(v) }
    }

    fn put_u64(&self, at: usize, v: u64) {
        assert!(at + 8 <= self.len);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: as above.
        unsafe { self.ptr.add(at).cast::<u64>().write_volatile(v) }
    }

    fn get_u64(&self, at: usize) -> u64 {
        // SAFETY: as above.
        unsafe { self.ptr.add(at).cast::<u64>().read_volatile() }
    }

    /// Writes entry `slot` of the reference ring (`releases`: of the
    /// release ring), `words` of its three.
    fn entry(&self, releases: bool, slot: usize, r: &Ref, reserved: u32, words: usize) {
        let base = ENTRIES_AT + if releases { self.refs_cap * 24 } else { 0 } + slot * 24;
        let w = [
            u64::from(r.map_id) | (u64::from(r.map_generation) << 32),
            r.map_offset,
            u64::from(r.payload_len) | (u64::from(reserved) << 32),
        ];
        for (k, v) in w.iter().take(words).enumerate() {
            self.put_u64(base + k * 8, *v);
        }
    }
}

fn hello(role: u32) -> Vec<u8> {
    Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role,
        features: wire::FEATURE_RING,
    }
    .encode()
}

fn r(map_id: u32, offset: u64, len: u32) -> Ref {
    Ref {
        map_id,
        map_generation: 1,
        map_offset: offset,
        payload_len: len,
    }
}

/// A sender that speaks the protocol by hand: HELLO with the ring, one
/// region (map 1, 64 KiB), a segment of its own making, then the scenario
/// `$VOXSHM_TEST_SCENARIO` written into the segment.
#[test]
fn helper_ring_hostile_sender() {
    if role().as_deref() != Some("ring-hostile-sender") {
        return;
    }
    let chan = inherited_channel();
    let sock = chan.raw();
    recv_raw(sock, 10_000).expect("the receiver's HELLO");
    send_raw(sock, &hello(wire::ROLE_SENDER), &[]).unwrap();
    let region = memfd(64 << 10, SHRINK_GROW | libc::F_SEAL_FUTURE_WRITE);
    send_raw(sock, &attach_body(1, 1, 64 << 10), &[region.as_raw_fd()]).unwrap();
    let (seg, fd) = RawSeg::create(CAP);
    let msg = Ext::Segment {
        segment_len: seg.len as u64,
        refs_capacity: CAP,
        releases_capacity: CAP,
    }
    .encode();
    send_raw(sock, &msg, &[fd.as_raw_fd()]).unwrap();
    let p = REFS_AT + PRODUCER;
    match env("VOXSHM_TEST_SCENARIO").as_str() {
        "garbage-index" => seg.put_u64(p, 0xdead_beef_dead_beef),
        "beyond-capacity" => seg.put_u64(p, u64::from(CAP) + 1),
        "backwards" => {
            for i in 0..2 {
                seg.entry(false, i, &r(1, i as u64 * 64, 10), 0, 3);
            }
            seg.put_u64(p, 2);
            say("PUSHED");
            hear();
            seg.put_u64(p, 1);
        }
        "reserved-bits" => {
            seg.entry(false, 0, &r(1, 0, 10), 7, 3);
            seg.put_u64(p, 1);
        }
        "unknown-region" => {
            seg.entry(false, 0, &r(99, 0, 10), 0, 3);
            seg.put_u64(p, 1);
        }
        "flood" => {
            // A whole ring of references beyond the region's end.
            for i in 0..CAP as usize {
                seg.entry(false, i, &r(1, 60 << 10, 8192), 0, 3);
            }
            seg.put_u64(p, u64::from(CAP));
        }
        "wrap" => {
            // Honest, for five times the capacity: slots are reused.
            for i in 0..5 * CAP as u64 {
                while i - seg.get_u64(REFS_AT + CONSUMER) >= u64::from(CAP) {
                    std::thread::sleep(Duration::from_micros(100));
                }
                seg.entry(
                    false,
                    (i % u64::from(CAP)) as usize,
                    &r(1, i * 64, 64),
                    0,
                    3,
                );
                seg.put_u64(p, i + 1);
            }
        }
        "mid-write" | "dies-mid-write" => {
            // Two of three words written, the index not published.
            seg.entry(false, 0, &r(1, 0, 10), 0, 2);
            say("HALF");
            hear();
            seg.entry(false, 0, &r(1, 0, 10), 0, 3);
            seg.put_u64(p, 1);
        }
        "attach-push-exit" => {
            // Honest: a region's ATTACH, then a reference into it, then the
            // process ends (and its socket closes) at once.
            say("READY");
            hear();
            let region2 = memfd(64 << 10, SHRINK_GROW | libc::F_SEAL_FUTURE_WRITE);
            send_raw(sock, &attach_body(2, 1, 64 << 10), &[region2.as_raw_fd()]).unwrap();
            seg.entry(false, 0, &r(2, 0, 10), 0, 3);
            seg.put_u64(p, 1);
            std::process::exit(0);
        }
        "garbage-exit" => {
            // A broken ring, and the process ends at once.
            seg.put_u64(p, 0xdead_beef_dead_beef);
            std::process::exit(0);
        }
        other => panic!("unknown scenario {other}"),
    }
    say("DONE");
    hear();
}

/// A reference taken from the ring before its region's ATTACH was read,
/// from a sender that died right after: reading the socket finds the
/// ATTACH and the hang-up together, and the region must stay mapped for the
/// reference in hand (it was unmapped as "no longer needed", and the
/// reference then failed as a protocol error).
#[test]
fn ring_reference_from_a_sender_that_died_right_after_resolves() {
    let _s = serial();
    let (att, mut h, before) = hostile_sender("attach-push-exit");
    h.expect("READY");
    // Read HELLO, the first region and the segment: the ring is in use.
    while !att.stats().ring {
        att.poll().unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    h.tell("go");
    assert!(h.wait().success());
    let v = att.recv(LONG_MS).unwrap();
    assert_eq!((v.r.map_id, v.len), (2, 10));
    att.release(&v).unwrap();
    assert_eq!(att.recv(LONG_MS).unwrap_err().status, PeerGone);
    drop(att);
    assert_eq!(fd_count(), before, "no fd leaked");
}

/// A sender that broke its ring and died: the hang-up is read with the
/// broken ring behind it, which poisons the link, and the receiver still
/// unmaps what nobody views (its cleanup was skipped).
#[test]
fn ring_broken_at_the_senders_hang_up_still_unmaps() {
    let _s = serial();
    let (att, h, before) = hostile_sender("garbage-exit");
    assert!(h.wait().success());
    assert_eq!(att.poll().unwrap_err().status, Protocol);
    let s = att.stats();
    assert_eq!(s.mappings, 0, "{s:?}");
    drop(att);
    assert_eq!(fd_count(), before, "no fd leaked");
}

/// Runs a hostile sender scenario against attachments in this process.
fn hostile_sender(scenario: &str) -> (Attachments, Helper, usize) {
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let h = Helper::spawn(
        "helper_ring_hostile_sender",
        "ring-hostile-sender",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_SCENARIO", scenario.into())],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    (att, h, before)
}

fn recv_until_not_timeout(att: &Attachments) -> voxshm::Result<voxshm::View> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match att.recv(50) {
            Err(e) if e.status == Timeout && Instant::now() < end => {}
            other => return other,
        }
    }
}

fn finish(att: Attachments, mut h: Helper, before: usize) {
    h.tell("bye");
    h.wait_success();
    drop(att);
    assert_eq!(fd_count(), before, "no fd leaked");
}

#[test]
fn ring_hostile_sender_indices_poison_the_link_only() {
    let _s = serial();
    for scenario in [
        "garbage-index",
        "beyond-capacity",
        "reserved-bits",
        "unknown-region",
    ] {
        let (att, mut h, before) = hostile_sender(scenario);
        h.expect("DONE");
        let e = recv_until_not_timeout(&att).unwrap_err();
        assert_eq!(e.status, Protocol, "{scenario}: {e}");
        assert!(
            e.message.contains("ring") || e.message.contains("ATTACH"),
            "{e}"
        );
        // Poisoned for good, and nothing more is read.
        assert_eq!(att.recv(0).unwrap_err().status, Protocol);
        assert_eq!(att.poll().unwrap_err().status, Protocol);
        finish(att, h, before);
    }
}

#[test]
fn ring_hostile_sender_moving_backwards_poisons_the_link() {
    let _s = serial();
    let (att, mut h, before) = hostile_sender("backwards");
    h.expect("PUSHED");
    for _ in 0..2 {
        let v = recv_until_not_timeout(&att).unwrap();
        att.release(&v).unwrap();
    }
    h.tell("go");
    h.expect("DONE");
    let e = recv_until_not_timeout(&att).unwrap_err();
    assert_eq!(e.status, Protocol, "{e}");
    assert!(e.message.contains("moved"), "{e}");
    finish(att, h, before);
}

#[test]
fn ring_hostile_sender_flood_is_rejected_one_reference_at_a_time() {
    let _s = serial();
    let (att, mut h, before) = hostile_sender("flood");
    h.expect("DONE");
    for _ in 0..CAP {
        let e = recv_until_not_timeout(&att).unwrap_err();
        assert_eq!(e.status, OutOfBounds, "{e}");
    }
    // Every one was refused, the link still works, nothing is held.
    assert_eq!(att.recv(50).unwrap_err().status, Timeout);
    let s = att.stats();
    assert_eq!(
        (s.live_views, s.refs_received),
        (0, u64::from(CAP)),
        "{s:?}"
    );
    finish(att, h, before);
}

#[test]
fn ring_hostile_sender_wrapping_honestly_is_fine() {
    let _s = serial();
    let (att, h, before) = hostile_sender("wrap");
    for i in 0..5 * u64::from(CAP) {
        let v = recv_until_not_timeout(&att).unwrap();
        assert_eq!(v.r.map_offset, i * 64);
        att.release(&v).unwrap();
    }
    finish(att, h, before);
}

#[test]
fn ring_hostile_sender_stopping_mid_write_shows_nothing_until_published() {
    let _s = serial();
    let (att, mut h, before) = hostile_sender("mid-write");
    h.expect("HALF");
    assert_eq!(att.recv(100).unwrap_err().status, Timeout);
    h.tell("go");
    h.expect("DONE");
    let v = recv_until_not_timeout(&att).unwrap();
    assert_eq!(v.len, 10);
    att.release(&v).unwrap();
    finish(att, h, before);
}

#[test]
fn ring_hostile_sender_dying_mid_write_is_a_dead_peer() {
    let _s = serial();
    let (att, mut h, before) = hostile_sender("dies-mid-write");
    h.expect("HALF");
    h.kill9();
    let e = recv_until_not_timeout(&att).unwrap_err();
    assert_eq!(e.status, PeerGone, "{e}");
    drop(att);
    assert_eq!(fd_count(), before, "no fd leaked");
}

/// A receiver that speaks the protocol by hand: HELLO with the ring, takes
/// the regions, the references and the segment the registry sends, then
/// runs `$VOXSHM_TEST_SCENARIO` on the segment.
#[test]
fn helper_ring_hostile_receiver() {
    if role().as_deref() != Some("ring-hostile-receiver") {
        return;
    }
    let chan = inherited_channel();
    let sock = chan.raw();
    send_raw(sock, &hello(wire::ROLE_RECEIVER), &[]).unwrap();
    let mut seg = None;
    while seg.is_none() {
        let (b, mut fds) = recv_raw(sock, 10_000).expect("a message from the registry");
        if let Ok(Ext::Segment { segment_len, .. }) = Ext::decode(&b) {
            seg = Some(RawSeg::map(&fds.pop().unwrap(), segment_len as usize, CAP));
        }
    }
    let seg = seg.unwrap();
    say("MAPPED");
    // The registry pushes CAP references; the first went over the socket.
    hear();
    let rel = RELEASES_AT + PRODUCER;
    match env("VOXSHM_TEST_SCENARIO").as_str() {
        "consumer-beyond" => seg.put_u64(REFS_AT + CONSUMER, 1000),
        "release-index-garbage" => seg.put_u64(rel, u64::MAX),
        "bogus-releases" => {
            // Releases of what it never got, and one real one twice.
            let first = {
                let w0 = seg.get_u64(ENTRIES_AT);
                let w1 = seg.get_u64(ENTRIES_AT + 8);
                let w2 = seg.get_u64(ENTRIES_AT + 16);
                Ref {
                    map_id: w0 as u32,
                    map_generation: (w0 >> 32) as u32,
                    map_offset: w1,
                    payload_len: w2 as u32,
                }
            };
            seg.entry(true, 0, &r(77, 0, 10), 0, 3);
            seg.entry(true, 1, &first, 0, 3);
            seg.entry(true, 2, &first, 0, 3);
            seg.put_u64(rel, 3);
        }
        other => panic!("unknown scenario {other}"),
    }
    say("DONE");
    hear();
}

#[test]
fn ring_hostile_receiver_cannot_break_the_sender_process() {
    let _s = serial();
    for scenario in ["consumer-beyond", "release-index-garbage", "bogus-releases"] {
        let before = fd_count();
        let (mine, theirs) = Channel::pair().unwrap();
        let mut h = Helper::spawn(
            "helper_ring_hostile_receiver",
            "ring-hostile-receiver",
            Some(theirs.raw()),
            &[("VOXSHM_TEST_SCENARIO", scenario.into())],
        );
        drop(theirs);
        let reg = Registry::new(
            mine,
            RegistryOptions {
                ring_capacity: CAP,
                ..reg_opts()
            },
        )
        .unwrap();
        // Until the ring is full (the first may go over the socket, if it
        // was sent before the receiver's HELLO was read).
        let mut pushed = 0u64;
        loop {
            let a = reg.alloc(100, LONG_MS).unwrap();
            let timeout = if pushed == 0 { LONG_MS } else { 0 };
            match reg.send(&a, 100, timeout) {
                Ok(()) => pushed += 1,
                Err(e) if e.status == Timeout => {
                    reg.abort(&a).unwrap();
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(pushed <= u64::from(CAP) + 1);
        }
        h.expect("MAPPED");
        h.tell("go");
        h.expect("DONE");
        // The next payload: the registry reads the release ring in alloc
        // and pushes into the reference ring in send.
        let sent = reg.alloc(100, LONG_MS).and_then(|a| {
            let r = reg.send(&a, 100, 200);
            if r.is_err() {
                let _ = reg.abort(&a);
            }
            r
        });
        match scenario {
            "consumer-beyond" => {
                let e = sent.unwrap_err();
                assert_eq!(e.status, Protocol, "{e}");
                assert!(e.message.contains("consumer index"), "{e}");
            }
            "release-index-garbage" => {
                let e = sent.unwrap_err();
                assert_eq!(e.status, Protocol, "{e}");
                assert!(e.message.contains("producer index"), "{e}");
            }
            _ => {
                // The ring is still full (nothing was consumed), so the
                // send times out; the bogus releases were ignored.
                assert_eq!(sent.unwrap_err().status, Timeout);
                let s = reg.stats();
                assert_eq!(s.ignored_releases, 2, "{s:?}");
                assert_eq!(s.live_leases, pushed - 1, "{s:?}");
                assert_eq!(s.allocations, 0, "{s:?}");
            }
        }
        h.tell("bye");
        h.wait_success();
        drop(reg);
        assert_eq!(fd_count(), before, "{scenario}: no fd leaked");
    }
}

/// Releases that find the release ring full go over the socket, and the
/// sender takes both.
#[test]
fn ring_releases_beyond_the_ring_go_over_the_socket() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            ring_capacity: CAP,
            ..reg_opts()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let held = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            (0..100)
                .map(|_| att.recv(LONG_MS).unwrap())
                .collect::<Vec<_>>()
        });
        for _ in 0..100 {
            let al = reg.alloc(64, LONG_MS).unwrap();
            reg.send(&al, 64, LONG_MS).unwrap();
        }
        rx.join().unwrap()
    });
    // The sender makes no call while all 100 are released.
    let sent_before = att.stats().messages_sent;
    for v in &held {
        att.release(v).unwrap();
    }
    let st = att.stats();
    assert!(st.ring, "{st:?}");
    assert_eq!(st.releases_sent, 100, "{st:?}");
    assert!(
        st.messages_sent > sent_before,
        "some went over the socket: {st:?}"
    );
    assert!(
        st.messages_sent - sent_before <= 100 - u64::from(CAP) + st.wakeups_sent,
        "the ring took a ring's worth: {st:?}"
    );
    reg.wait_idle(LONG_MS).unwrap();
    assert_eq!(reg.stats().live_leases, 0);
}

/// A burst costs a few wake-ups, not one per payload: references to a
/// receiver asleep in `recv`, and releases to a sender asleep in
/// `wait_idle`.
#[test]
fn ring_bursts_cost_few_wakeups() {
    let _s = serial();
    const BURST: u64 = 1000;
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, reg_opts()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    // The ring is set up by the first two payloads.
    for _ in 0..2 {
        let al = reg.alloc(64, LONG_MS).unwrap();
        reg.send(&al, 64, LONG_MS).unwrap();
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    reg.wait_idle(LONG_MS).unwrap();
    assert!(reg.stats().ring);
    let held = std::thread::scope(|s| {
        let rx = s.spawn(|| {
            (0..BURST)
                .map(|_| att.recv(LONG_MS).unwrap())
                .collect::<Vec<_>>()
        });
        // Let the receiver fall asleep, then send the burst.
        std::thread::sleep(Duration::from_millis(50));
        let before = reg.stats().wakeups_sent;
        for _ in 0..BURST {
            let al = reg.alloc(64, LONG_MS).unwrap();
            reg.send(&al, 64, LONG_MS).unwrap();
        }
        let held = rx.join().unwrap();
        let wakes = reg.stats().wakeups_sent - before;
        assert!(
            (1..=20).contains(&wakes),
            "{wakes} wake-ups for {BURST} references"
        );
        held
    });
    std::thread::scope(|s| {
        let tx = s.spawn(|| reg.wait_idle(LONG_MS).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        let before = att.stats().wakeups_sent;
        for v in &held {
            att.release(v).unwrap();
        }
        tx.join().unwrap();
        let wakes = att.stats().wakeups_sent - before;
        assert!(
            (1..=20).contains(&wakes),
            "{wakes} wake-ups for {BURST} releases"
        );
    });
}

/// The receiver goes away just before the sender makes the ring segment:
/// the SEGMENT's send fails with EPIPE, and that is the receiver's death
/// like any other (its leases reclaimed), not an error that leaves them.
#[test]
fn ring_receiver_gone_when_the_segment_is_sent_is_a_dead_peer() {
    let _s = serial();
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let raw = theirs.raw();
    let reg = Registry::new(mine, reg_opts()).unwrap();
    send_raw(raw, &hello(wire::ROLE_RECEIVER), &[]).unwrap();
    // A payload published for the receiver's own transport (a lease the
    // receiver holds), then one to send: the first send makes the segment.
    let a = reg.alloc(100, LONG_MS).unwrap();
    reg.publish(&a, 100).unwrap();
    let b = reg.alloc(100, LONG_MS).unwrap();
    drop(theirs);
    let e = reg.send(&b, 100, LONG_MS).unwrap_err();
    assert_eq!(e.status, PeerGone, "{e}");
    let s = reg.stats();
    assert_eq!((s.live_leases, s.allocations), (0, 1), "{s:?}");
    assert!(!s.ring);
    reg.abort(&b).unwrap();
    assert_eq!(reg.wait_idle(0).unwrap_err().status, PeerGone);
    drop(reg);
    assert_eq!(fd_count(), before);
}

// ---------------------------------------------------------------------------
// An event-loop sender: its fd becomes readable when what it waits for
// comes, whichever non-blocking call said "not yet".

fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) == 1 }
}

/// Runs `not_yet` (a non-blocking call that must say "not yet"), lets the
/// receiver release the one payload it holds 100 ms later, and checks that
/// the registry's fd became readable for it.
fn event_loop_sender_is_woken(opts: RegistryOptions, not_yet: impl Fn(&Registry, &Ref) -> bool) {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, opts).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let fd = reg.fd();
    let al = reg.alloc(4096, LONG_MS).unwrap();
    reg.send(&al, 4096, LONG_MS).unwrap();
    let r = Ref {
        map_id: al.map_id,
        map_generation: al.map_generation,
        map_offset: al.map_offset,
        payload_len: 4096,
    };
    assert!(reg.stats().ring);
    while readable(fd, 0) {
        reg.poll().unwrap();
    }
    assert!(not_yet(&reg, &r), "the call did not say not yet");
    let t = std::thread::spawn(move || {
        let v = att.recv(LONG_MS).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        att.release(&v).unwrap();
        att
    });
    assert!(readable(fd, 5000), "the fd never became readable");
    let att = t.join().unwrap();
    reg.wait_released(&r, 0).unwrap();
    drop(att);
}

#[test]
fn ring_event_loop_sender_is_woken_after_wait_released() {
    let _s = serial();
    event_loop_sender_is_woken(reg_opts(), |reg, r| {
        reg.wait_released(r, 0).unwrap_err().status == Timeout
    });
}

#[test]
fn ring_event_loop_sender_is_woken_after_alloc_found_no_space() {
    let _s = serial();
    let opts = RegistryOptions {
        max_in_flight_bytes: 4096,
        ..reg_opts()
    };
    event_loop_sender_is_woken(opts, |reg, _| {
        reg.alloc(4096, 0).unwrap_err().status == voxshm::Status::NoSpace
    });
}

/// `poll` in an event loop while releases keep coming at random moments:
/// a release landing while `poll` asks for a wake-up must not leave the fd
/// unarmed (the loop would stall with releases in the ring).
#[test]
fn ring_event_loop_sender_never_stalls() {
    let _s = serial();
    const N: usize = 1000;
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, reg_opts()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let fd = reg.fd();
    for _ in 0..N {
        let al = reg.alloc(64, LONG_MS).unwrap();
        reg.send(&al, 64, LONG_MS).unwrap();
    }
    let t = std::thread::spawn(move || {
        let mut p = Prng::new(3);
        for _ in 0..N {
            let v = att.recv(LONG_MS).unwrap();
            let end = Instant::now() + Duration::from_micros(p.range(0, 60));
            while Instant::now() < end {}
            att.release(&v).unwrap();
        }
        att
    });
    reg.poll().unwrap();
    while reg.stats().live_leases > 0 {
        let before = reg.stats().live_leases;
        assert!(
            readable(fd, 5000),
            "stalled with {before} leases; one poll now leaves {}",
            {
                reg.poll().unwrap();
                reg.stats().live_leases
            }
        );
        reg.poll().unwrap();
    }
    t.join().unwrap();
}

/// A thread asleep in `alloc` since before the segment existed (so it
/// announced nothing in it) is woken by releases that come through the
/// ring once another thread's `send` made it.
#[test]
fn ring_sleeper_from_before_the_segment_is_woken() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            max_in_flight_bytes: 8192,
            ..reg_opts()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let to_send = reg.alloc(4096, LONG_MS).unwrap();
    let mut views = Vec::new();
    for _ in 0..2 {
        let al = reg.alloc(4096, LONG_MS).unwrap();
        let r = reg.publish(&al, 4096).unwrap();
        views.push(att.resolve(&r, LONG_MS).unwrap());
    }
    assert!(!reg.stats().ring);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let t0 = Instant::now();
            reg.alloc(4096, 10_000).unwrap();
            t0.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        reg.send(&to_send, 4096, LONG_MS).unwrap();
        assert!(reg.stats().ring);
        views.push(att.recv(LONG_MS).unwrap());
        for v in &views {
            att.release(v).unwrap();
        }
        let took = waiter.join().unwrap();
        assert!(took < Duration::from_secs(5), "woken after {took:?}");
    });
}

/// A sender that hangs up but keeps writing its producer index: taking
/// what was in the ring at the hang-up stops at a ring's worth.
#[test]
fn ring_hostile_sender_writing_after_its_hang_up_cannot_hold_the_receiver() {
    let _s = serial();
    let (mine, theirs) = Channel::pair().unwrap();
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    let sock = theirs.raw();
    recv_raw(sock, 10_000).expect("HELLO");
    send_raw(sock, &hello(wire::ROLE_SENDER), &[]).unwrap();
    let region = memfd(64 << 10, SHRINK_GROW | libc::F_SEAL_FUTURE_WRITE);
    send_raw(sock, &attach_body(1, 1, 64 << 10), &[region.as_raw_fd()]).unwrap();
    // A large ring, so the receiver cannot empty it faster than the
    // sender writes its index.
    const BIG: u32 = 1 << 16;
    let (seg, fd) = RawSeg::create(BIG);
    let msg = Ext::Segment {
        segment_len: seg.len as u64,
        refs_capacity: BIG,
        releases_capacity: BIG,
    }
    .encode();
    send_raw(sock, &msg, &[fd.as_raw_fd()]).unwrap();
    while !att.stats().ring {
        att.poll().unwrap();
    }
    for i in 0..BIG as usize {
        seg.entry(false, i, &r(1, 0, 10), 0, 3);
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Always a full ring ahead of whatever the receiver took.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let c = seg.get_u64(REFS_AT + CONSUMER);
                seg.put_u64(REFS_AT + PRODUCER, c + u64::from(BIG));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(theirs);
        let t0 = Instant::now();
        let _ = att.poll();
        let took = t0.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let q = att.stats().queued_refs;
        assert!(q <= 2 * u64::from(BIG), "{q} references queued");
        assert!(took < Duration::from_millis(500), "took {took:?}");
    });
}
