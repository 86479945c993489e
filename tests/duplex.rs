//! Duplex channels between real processes: each side both sends and
//! receives on one socket (`voxshm::duplex`), with the ring path in each
//! direction; request/response, where the reply is itself a payload that
//! names the request's reference; a peer that dies mid-request; and peers
//! that send messages for a role the other side does not take.

mod common;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use voxshm::Status::{PeerGone, Protocol, Timeout, UnknownMap};
use voxshm::wire::{self, Ext};
use voxshm::{Attachments, AttachmentsOptions, Channel, Kind, Ref, Registry, RegistryOptions};

const LONG_MS: i64 = 20_000;

fn reg_opts() -> RegistryOptions {
    RegistryOptions {
        region_size: 1 << 20,
        budget: 64 << 20,
        keep_warm: 2 << 20,
        ..Default::default()
    }
}

fn duplex(chan: Channel, ring: bool) -> (Registry, Attachments) {
    voxshm::duplex(
        chan,
        RegistryOptions { ring, ..reg_opts() },
        AttachmentsOptions::default(),
    )
    .unwrap()
}

/// Starts helper `test` in `role` on one end of a new channel; returns it
/// and the other end.
fn peer(test: &str, role: &str, envs: &[(&str, String)]) -> (Helper, Channel) {
    let (mine, theirs) = Channel::pair().unwrap();
    let h = Helper::spawn(test, role, Some(theirs.raw()), envs);
    drop(theirs);
    (h, mine)
}

fn sizes(n: usize, seed: u64) -> Vec<u64> {
    let mut p = Prng::new(seed);
    (0..n).map(|_| p.log_uniform(4 << 20).max(1)).collect()
}

/// Sends `sizes(n, seed)` with pattern `base + i`, each byte checkable.
fn send_stream(reg: &Registry, n: usize, seed: u64, base: u64) {
    for (i, &len) in sizes(n, seed).iter().enumerate() {
        let a = reg.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, base + i as u64) };
        reg.send(&a, len, LONG_MS).unwrap();
    }
}

/// Receives what `send_stream(n, seed, base)` sent, checking every byte.
fn recv_stream(att: &Attachments, n: usize, seed: u64, base: u64) {
    for (i, &len) in sizes(n, seed).iter().enumerate() {
        let v = att.recv(LONG_MS).unwrap();
        assert_eq!(v.len, len, "payload {i}");
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, base + i as u64) }.unwrap();
        att.release(&v).unwrap();
    }
}

/// Sends and receives `n` payloads at once, on two threads sharing one
/// duplex channel; `me` picks which stream this side sends.
fn both_ways(reg: Registry, att: Attachments, n: usize, me: u64) -> (Registry, Attachments) {
    let reg = Arc::new(reg);
    let r2 = reg.clone();
    let sender = std::thread::spawn(move || send_stream(&r2, n, 10 + me, me << 40));
    recv_stream(&att, n, 11 - me, (1 - me) << 40);
    sender.join().unwrap();
    // Every release of ours went out; wait for the peer's.
    reg.wait_idle(LONG_MS).unwrap();
    (Arc::into_inner(reg).unwrap(), att)
}

// ---------------------------------------------------------------------------
// Both directions at once.

/// The other end of `duplex_carries_both_directions_at_once`.
#[test]
fn helper_duplex_peer() {
    if role().as_deref() != Some("duplex-peer") {
        return;
    }
    let n: usize = env("VOXSHM_TEST_N").parse().unwrap();
    let ring = env("VOXSHM_TEST_RING") == "1";
    let (reg, att) = duplex(inherited_channel(), ring);
    say("READY");
    let (reg, att) = both_ways(reg, att, n, 1);
    let (r, a) = (reg.stats(), att.stats());
    polling(&att, || {
        say(&format!("STATS {} {}", u8::from(r.ring), u8::from(a.ring)));
        hear();
    });
    drop(reg);
}

/// Runs `f` while another thread keeps calling `att.poll()`: the peer's
/// last retirements are acknowledged when this side next calls voxshm, and
/// the peer may still wait for them while this side waits for the peer.
fn polling<T>(att: &Attachments, f: impl FnOnce() -> T) -> T {
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = att.poll();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let out = f();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        out
    })
}

#[test]
fn duplex_carries_both_directions_at_once() {
    let _s = serial();
    for ring in [true, false] {
        let before = fd_count();
        let maps = mapping_count();
        let (mut h, mine) = peer(
            "helper_duplex_peer",
            "duplex-peer",
            &[
                ("VOXSHM_TEST_N", "3000".into()),
                ("VOXSHM_TEST_RING", u8::from(ring).to_string()),
            ],
        );
        let (reg, att) = duplex(mine, ring);
        h.expect("READY");
        let (reg, att) = both_ways(reg, att, 3000, 0);
        let theirs = polling(&att, || h.expect("STATS"));
        let (r, a) = (reg.stats(), att.stats());
        assert_eq!(r.payloads_published, 3000);
        assert_eq!(a.refs_received, 3000);
        assert_eq!(r.live_leases, 0, "{r:?}");
        assert_eq!(a.live_views, 0, "{a:?}");
        // The ring runs in each direction, or in neither.
        assert_eq!((r.ring, a.ring), (ring, ring), "{r:?} {a:?}");
        let want = if ring { "1 1" } else { "0 0" };
        assert_eq!(theirs, want, "the peer's rings");
        if ring {
            // References and releases went through the rings: the socket
            // (whose counters both handles share) carried regions, their
            // retirements and acknowledgements, wake-ups, HELLO, segments.
            let socket = r.regions_created + r.regions_retired + a.regions_retired;
            assert!(
                r.messages_sent <= socket + r.wakeups_sent + 20,
                "{r:?} {a:?}"
            );
            assert_eq!(r.messages_sent, a.messages_sent);
        }
        h.tell("bye");
        h.wait_success();
        drop(reg);
        drop(att);
        assert_eq!(fd_count(), before, "fds after ring={ring}");
        assert_eq!(mapping_count(), maps, "mappings after ring={ring}");
    }
}

/// Either handle of a duplex channel may be freed first; the channel
/// closes, and the peer sees it gone, when both are.
#[test]
fn duplex_closes_when_both_handles_are_freed() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let (reg_a, att_a) = duplex(a, true);
    let (reg_b, att_b) = duplex(b, true);
    let x = reg_a.alloc(100, LONG_MS).unwrap();
    reg_a.send(&x, 100, LONG_MS).unwrap();
    drop(reg_a);
    // The attachments still receive, and the peer still sends to them.
    let v = att_b.recv(LONG_MS).unwrap();
    att_b.release(&v).unwrap();
    let y = reg_b.alloc(10, LONG_MS).unwrap();
    reg_b.send(&y, 10, LONG_MS).unwrap();
    let w = att_a.recv(LONG_MS).unwrap();
    assert_eq!(w.len, 10);
    att_a.release(&w).unwrap();
    assert!(!reg_b.peer_is_gone());
    drop(att_a);
    assert!(reg_b.peer_is_gone());
    assert_eq!(att_b.recv(0).unwrap_err().status, PeerGone);
    drop((reg_b, att_b));
    assert_eq!(fd_count(), before);
}

// ---------------------------------------------------------------------------
// Request/response: the reply is a payload whose first 32 bytes are the
// request's reference. The server releases the request only after it sent
// the reply, so the client's space (and so the reference) is not reused
// while the reply is on its way: a reference names one request at a time.

/// A request: `[seq u64][pattern seq]`. The reply: `[request ref, 32
/// bytes][seq u64][pattern seq + 1]`, `reply_len` bytes long.
const REF_LEN: u64 = wire::FRAME_LEN as u64;

fn serve(reg: &Registry, att: &Attachments, reply_len: u64, limit: Option<usize>) {
    let mut served = 0;
    loop {
        let req = match att.recv(LONG_MS) {
            Ok(v) => v,
            Err(e) if e.status == PeerGone => return,
            Err(e) => panic!("server recv: {e}"),
        };
        // SAFETY: the view holds `req.len` readable bytes until released.
        let seq = unsafe { verify_indexed(req.data, req.len) }.unwrap();
        served += 1;
        if limit == Some(served) {
            say("GOT");
            // Waits, holding the request, to be killed.
            hear();
            return;
        }
        let a = reg.alloc(reply_len, LONG_MS).unwrap();
        // SAFETY: the allocation holds `reply_len >= 40` writable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(req.r.encode_frame().as_ptr(), a.data, REF_LEN as usize);
            fill_indexed(a.data.add(REF_LEN as usize), reply_len - REF_LEN, seq + 1);
        }
        reg.send(&a, reply_len, LONG_MS).unwrap();
        att.release(&req).unwrap();
    }
}

/// Serves requests until the client hangs up (or, with
/// `$VOXSHM_TEST_LIMIT`, takes that many and then waits to be killed).
#[test]
fn helper_rr_server() {
    if role().as_deref() != Some("rr-server") {
        return;
    }
    let limit = std::env::var("VOXSHM_TEST_LIMIT")
        .ok()
        .map(|v| v.parse().unwrap());
    let (reg, att) = duplex(inherited_channel(), true);
    say("READY");
    serve(&reg, &att, 4096, limit);
}

/// Sends `total` requests, keeping `window` in flight, and matches each
/// reply to its request by the reference at its head.
fn client(reg: &Registry, att: &Attachments, total: u64, window: usize) {
    let mut inflight: std::collections::HashMap<Ref, u64> = Default::default();
    let (mut sent, mut answered) = (0u64, 0u64);
    while answered < total {
        while sent < total && inflight.len() < window {
            let len = 64 + (sent * 997) % 60_000;
            let a = reg.alloc(len, LONG_MS).unwrap();
            // SAFETY: the allocation holds at least `len` writable bytes.
            unsafe { fill_indexed(a.data, len, sent) };
            // What `send` publishes (see `voxshm_registry_wait_released`).
            let r = Ref {
                map_id: a.map_id,
                map_generation: a.map_generation,
                map_offset: a.map_offset,
                payload_len: len as u32,
            };
            assert!(inflight.insert(r, sent).is_none(), "{r} names two requests");
            reg.send(&a, len, LONG_MS).unwrap();
            sent += 1;
        }
        let reply = att.recv(LONG_MS).unwrap();
        assert_eq!(reply.len, 4096);
        // SAFETY: the view holds 4096 readable bytes until released.
        let head = unsafe { std::slice::from_raw_parts(reply.data, REF_LEN as usize) };
        let req = Ref::decode_frame(head).unwrap();
        let seq = inflight
            .remove(&req)
            .expect("a reply names a request in flight");
        // SAFETY: as above.
        let echoed =
            unsafe { verify_indexed(reply.data.add(REF_LEN as usize), 4096 - REF_LEN) }.unwrap();
        assert_eq!(echoed, seq + 1);
        att.release(&reply).unwrap();
        answered += 1;
    }
}

#[test]
fn duplex_request_response() {
    let _s = serial();
    let before = fd_count();
    let (mut h, mine) = peer("helper_rr_server", "rr-server", &[]);
    let (reg, att) = duplex(mine, true);
    h.expect("READY");
    // One at a time, then pipelined.
    client(&reg, &att, 2000, 1);
    client(&reg, &att, 5000, 16);
    reg.wait_idle(LONG_MS).unwrap();
    let (r, a) = (reg.stats(), att.stats());
    assert_eq!(r.payloads_published, 7000);
    assert_eq!(a.refs_received, 7000);
    assert!(r.ring && a.ring, "{r:?} {a:?}");
    drop((reg, att));
    h.wait_success();
    assert_eq!(fd_count(), before);
}

/// The server dies (SIGKILL) holding a request: the client's waiting recv
/// says PEER_GONE, its request's space comes back, and nothing leaks.
#[test]
fn duplex_server_dies_mid_request() {
    let _s = serial();
    let before = fd_count();
    let maps = mapping_count();
    let (mut h, mine) = peer(
        "helper_rr_server",
        "rr-server",
        &[("VOXSHM_TEST_LIMIT", "3".into())],
    );
    let (reg, att) = duplex(mine, true);
    h.expect("READY");
    for seq in 0..3u64 {
        let a = reg.alloc(1000, LONG_MS).unwrap();
        // SAFETY: the allocation holds 1000 writable bytes.
        unsafe { fill_indexed(a.data, 1000, seq) };
        reg.send(&a, 1000, LONG_MS).unwrap();
        if seq < 2 {
            let reply = att.recv(LONG_MS).unwrap();
            att.release(&reply).unwrap();
        }
    }
    h.expect("GOT");
    let att = Arc::new(att);
    let a2 = att.clone();
    let waiter = std::thread::spawn(move || a2.recv(LONG_MS).map(|_| ()).unwrap_err());
    std::thread::sleep(std::time::Duration::from_millis(50));
    h.kill9();
    assert_eq!(waiter.join().unwrap().status, PeerGone);
    assert!(reg.peer_is_gone());
    let s = reg.stats();
    assert_eq!(
        s.live_leases, 0,
        "the dead server's request came back: {s:?}"
    );
    assert_eq!(reg.alloc(10, 0).unwrap_err().status, PeerGone);
    drop(reg);
    drop(Arc::into_inner(att).unwrap());
    assert_eq!(fd_count(), before);
    assert_eq!(mapping_count(), maps);
}

// ---------------------------------------------------------------------------
// Peers that send messages for the wrong role. The peer is a process that
// sends exactly the bytes (and fds) it is told to.

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Sends each message it hears (`send HEX` or `attach HEX LEN`, the latter
/// with a fresh sealed memfd of LEN bytes), saying SENT after each.
#[test]
fn helper_raw_peer() {
    if role().as_deref() != Some("raw-peer") {
        return;
    }
    let chan = inherited_channel();
    while let Some(line) = hear() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "send" => {
                send_raw(chan.raw(), &unhex(w[1]), &[]).unwrap();
            }
            "attach" => {
                let fd = memfd(w[2].parse().unwrap(), SHRINK_GROW);
                send_raw(chan.raw(), &unhex(w[1]), &[fd.as_raw_fd()]).unwrap();
            }
            _ => break,
        }
        say("SENT");
    }
}

fn hello(role: u32) -> Vec<u8> {
    Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role,
        features: 0,
    }
    .encode()
}

fn raw_peer() -> (Helper, Channel) {
    peer("helper_raw_peer", "raw-peer", &[])
}

fn tell(h: &mut Helper, msg: &[u8]) {
    h.tell(&format!("send {}", hex(msg)));
    h.expect("SENT");
}

/// A duplex channel needs duplex on both sides: a one-way peer's HELLO
/// poisons it, and a duplex peer's HELLO poisons a one-way handle.
#[test]
fn duplex_refuses_a_one_way_peer_and_the_other_way_round() {
    let _s = serial();
    for peer_role in [wire::ROLE_SENDER, wire::ROLE_RECEIVER] {
        let (mut h, mine) = raw_peer();
        let (reg, att) = duplex(mine, true);
        tell(&mut h, &hello(peer_role));
        let e = att.recv(LONG_MS).unwrap_err();
        assert_eq!(e.status, Protocol, "{e}");
        assert!(e.message.contains("duplex"), "{e}");
        assert_eq!(reg.alloc(10, 0).unwrap_err().status, Protocol);
        h.tell("end");
        h.wait_success();
    }
    // A duplex peer to a one-way registry, and to one-way attachments.
    let (mut h, mine) = raw_peer();
    let reg = Registry::new(mine, reg_opts()).unwrap();
    tell(&mut h, &hello(wire::ROLE_SENDER | wire::ROLE_RECEIVER));
    let e = reg.wait_idle(1000).unwrap_err();
    assert_eq!(e.status, Protocol, "{e}");
    h.tell("end");
    h.wait_success();
    let (mut h, mine) = raw_peer();
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    tell(&mut h, &hello(wire::ROLE_SENDER | wire::ROLE_RECEIVER));
    assert_eq!(att.recv(1000).unwrap_err().status, Protocol);
    h.tell("end");
    h.wait_success();
}

/// A receiver that sends an ATTACH (as a peer that also sends would) to a
/// one-way registry breaks the protocol, and the error says what to use.
#[test]
fn one_way_registry_refuses_an_attach_and_names_duplex() {
    let _s = serial();
    let (mut h, mine) = raw_peer();
    let reg = Registry::new(mine, reg_opts()).unwrap();
    tell(&mut h, &hello(wire::ROLE_RECEIVER));
    h.tell(&format!("attach {} 4096", hex(&attach_body(0, 1, 4096))));
    h.expect("SENT");
    let e = reg.wait_idle(1000).unwrap_err();
    assert_eq!(e.status, Protocol, "{e}");
    assert!(e.message.contains("duplex"), "{e}");
    h.tell("end");
    h.wait_success();
}

/// On a duplex channel every message kind has a role to go to, and each
/// goes only to its own: a RELEASE of what was never sent is ignored by the
/// sending side and a REF into a region never attached fails only that
/// receive; neither disturbs the other direction. A RETIRE_ACK for a
/// region not retiring poisons the channel, for both handles.
#[test]
fn duplex_routes_hostile_messages_to_their_role_only() {
    let _s = serial();
    let (mut h, mine) = raw_peer();
    let (reg, att) = duplex(mine, false);
    tell(&mut h, &hello(wire::ROLE_SENDER | wire::ROLE_RECEIVER));
    // Our side sends one payload (the peer never releases it).
    let a = reg.alloc(100, LONG_MS).unwrap();
    reg.send(&a, 100, LONG_MS).unwrap();
    let bogus = Ref {
        map_id: 77,
        map_generation: 1,
        map_offset: 0,
        payload_len: 10,
    };
    tell(&mut h, &Ext::Release(vec![bogus]).encode());
    reg.poll().unwrap();
    let s = reg.stats();
    assert_eq!(s.ignored_releases, 1, "{s:?}");
    assert_eq!(s.live_leases, 1, "{s:?}");
    tell(&mut h, &Ext::Ref(bogus).encode());
    assert_eq!(att.recv(LONG_MS).unwrap_err().status, UnknownMap);
    // Both directions still work: a real region and reference arrive.
    h.tell(&format!("attach {} 4096", hex(&attach_body(5, 1, 4096))));
    h.expect("SENT");
    let good = Ref {
        map_id: 5,
        map_generation: 1,
        map_offset: 0,
        payload_len: 64,
    };
    tell(&mut h, &Ext::Ref(good).encode());
    let v = att.recv(LONG_MS).unwrap();
    assert_eq!(v.len, 64);
    att.release(&v).unwrap();
    let b = reg.alloc(100, LONG_MS).unwrap();
    reg.send(&b, 100, LONG_MS).unwrap();
    tell(
        &mut h,
        &Ext::RetireAck {
            map_id: 1,
            map_generation: 1,
            mapping_length: 0,
        }
        .encode(),
    );
    assert_eq!(reg.wait_idle(1000).unwrap_err().status, Protocol);
    assert_eq!(att.recv(0).unwrap_err().status, Protocol);
    h.tell("end");
    h.wait_success();
}

/// What a duplex side says first: HELLO with both roles (the golden vector
/// of docs/protocol.md), offering the ring unless told not to.
#[test]
fn duplex_says_hello_with_both_roles() {
    // Its fds would count in the other tests' fd checks.
    let _s = serial();
    for (ring, g) in [
        (
            true,
            concat!("5658534d010000000100000003000000", "0100000000000000"),
        ),
        (
            false,
            concat!("5658534d010000000100000003000000", "0000000000000000"),
        ),
    ] {
        let (mine, theirs) = Channel::pair().unwrap();
        let (_reg, _att) = duplex(mine, ring);
        let (bytes, fds) = recv_raw(theirs.raw(), 1000).expect("HELLO");
        assert!(fds.is_empty());
        assert_eq!(hex(&bytes), g, "ring={ring}");
    }
}

// ---------------------------------------------------------------------------
// Both handles of one channel in one process: what one handle's state does
// to the other's calls.

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: one valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// While the receiving side's queue is full (65,536 references nobody
/// took yet), the link reads nothing, for either role. A registry call of
/// the same duplex channel that waits (wait_idle, alloc, wait_released)
/// sleeps without watching the socket, which stays readable: it must not
/// spin through its timeout.
#[test]
fn duplex_registry_wait_does_not_spin_while_the_receiving_queue_is_full() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let (reg_l, att_l) = duplex(a, false);
    let (reg_p, att_p) = duplex(b, false);
    // L has one payload out that P holds: wait_idle must wait.
    let x = reg_l.alloc(100, LONG_MS).unwrap();
    reg_l.send(&x, 100, LONG_MS).unwrap();
    let held = att_p.recv(LONG_MS).unwrap();
    // Baseline: waiting 300 ms costs almost no CPU.
    let c0 = thread_cpu();
    assert_eq!(reg_l.wait_idle(300).unwrap_err().status, Timeout);
    let idle_cpu = thread_cpu() - c0;
    eprintln!("baseline wait_idle(300): cpu {idle_cpu:?}");

    // P floods L with references L's user has not taken yet.
    let reg_p = Arc::new(reg_p);
    let r2 = reg_p.clone();
    let flood = std::thread::spawn(move || {
        for _ in 0..(65_536 + 64) {
            let a = r2.alloc(1, LONG_MS).unwrap();
            r2.send(&a, 1, LONG_MS).unwrap();
        }
    });
    let t = Instant::now();
    while att_l.stats().queued_refs < 65_536 {
        att_l.poll().unwrap();
        assert!(t.elapsed() < Duration::from_secs(30));
    }
    flood.join().unwrap();
    // P releases L's payload: its RELEASE is on the socket, behind the
    // references L does not read.
    att_p.release(&held).unwrap();

    let c0 = thread_cpu();
    let t0 = Instant::now();
    let e = reg_l.wait_idle(1000).unwrap_err();
    let (cpu, wall) = (thread_cpu() - c0, t0.elapsed());
    eprintln!("wait_idle(1000) with the queue full: {e} wall {wall:?} cpu {cpu:?}");
    assert!(
        cpu < Duration::from_millis(200),
        "registry wait spun: {cpu:?} CPU in {wall:?} ({e})"
    );
    drop((reg_l, att_l, att_p));
}

/// Freeing the attachments of a duplex channel while its registry lives
/// on: the views it held are invalid, and the peer gets its leases on them
/// back, and on what it sends afterwards.
#[test]
fn duplex_freeing_the_attachments_gives_the_peer_its_leases_back() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let (reg_l, att_l) = duplex(a, true);
    let (reg_p, att_p) = duplex(b, true);
    let x = reg_p.alloc(100, LONG_MS).unwrap();
    reg_p.send(&x, 100, LONG_MS).unwrap();
    let v = att_l.recv(LONG_MS).unwrap();
    let r = v.r;
    drop(att_l); // the view is invalid now; L keeps sending with reg_l
    // L's registry goes on working, and so reads the channel.
    let y = reg_l.alloc(10, LONG_MS).unwrap();
    reg_l.send(&y, 10, LONG_MS).unwrap();
    reg_l.poll().unwrap();
    let res = reg_p.wait_released(&r, 500);
    eprintln!("peer's wait_released after L freed its attachments: {res:?}");
    let s = reg_p.stats();
    eprintln!("peer registry: live_leases {} {:?}", s.live_leases, res);
    assert!(
        res.is_ok(),
        "the peer's lease on a freed handle's view stays: {res:?}"
    );
    // What the peer sends afterwards comes back too (L's registry calls
    // read the channel), and L maps nothing any more.
    for _ in 0..10 {
        let z = reg_p.alloc(1000, LONG_MS).unwrap();
        reg_p.send(&z, 1000, LONG_MS).unwrap();
    }
    let t = Instant::now();
    while reg_p.wait_idle(5).is_err() {
        reg_l.poll().unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", reg_p.stats());
    }
    assert_eq!(reg_p.stats().live_leases, 0);
    drop((reg_l, reg_p, att_p));
}

/// DGRAM duplex: the receiving side finds the peer gone (its RELEASE
/// fails with ECONNREFUSED); the registry of the same channel, waiting
/// for the dead peer's releases, learns it too and reclaims.
#[test]
fn duplex_dgram_registry_learns_the_peer_gone_from_a_failed_release() {
    let _s = serial();
    let (a, b) = Channel::pair_of(Kind::Dgram).unwrap();
    let (reg_l, att_l) = duplex(a, true);
    let (reg_p, att_p) = duplex(b, true);
    // L sends to P (P holds it), P sends to L (L holds it).
    let x = reg_l.alloc(100, LONG_MS).unwrap();
    reg_l.send(&x, 100, LONG_MS).unwrap();
    let _held_by_p = att_p.recv(LONG_MS).unwrap();
    let y = reg_p.alloc(100, LONG_MS).unwrap();
    reg_p.send(&y, 100, LONG_MS).unwrap();
    let v = att_l.recv(LONG_MS).unwrap();
    drop((reg_p, att_p)); // P dies
    // L's release finds P gone.
    att_l.release(&v).unwrap();
    let e = reg_l.wait_idle(300).unwrap_err();
    eprintln!("registry after its attachments' release found the peer gone: {e}");
    let live = reg_l.stats().live_leases;
    // What any attachments call would have told it:
    let _ = att_l.recv(0);
    let e2 = reg_l.wait_idle(300).unwrap_err();
    eprintln!("... and after one attachments call: {e2}");
    assert_eq!(
        (e.status, live),
        (PeerGone, 0),
        "the registry was not told: {e}"
    );
}

/// Both sides send their first payload at once: each makes its own
/// segment before it read the peer's. A side holding only its own segment
/// still reads the socket for a non-blocking recv until the peer's
/// SEGMENT came (no count in its own segment says it is there).
#[test]
fn duplex_first_reference_is_not_delayed_when_both_sides_start_at_once() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let (reg_l, att_l) = duplex(a, true);
    let (reg_p, att_p) = duplex(b, true);
    // Both read the other's HELLO (as any first call does).
    reg_l.poll().unwrap();
    reg_p.poll().unwrap();
    // Both allocate (regions announced), then both send: neither reads
    // the socket in between (send reads nothing once HELLO was read).
    let x = reg_l.alloc(100, LONG_MS).unwrap();
    let y = reg_p.alloc(100, LONG_MS).unwrap();
    reg_l.send(&x, 100, LONG_MS).unwrap();
    reg_p.send(&y, 100, LONG_MS).unwrap();
    assert!(reg_l.stats().ring && reg_p.stats().ring);
    // L busy-polls (no fd watched), as a latency-minded user does.
    let t = Instant::now();
    let mut calls = 0;
    let v = loop {
        calls += 1;
        match att_l.recv(0) {
            Ok(v) => break v,
            Err(e) if e.status == Timeout => {}
            Err(e) => panic!("{e}"),
        }
    };
    let took = t.elapsed();
    eprintln!("first reference after {calls} recv(0) calls, {took:?}");
    att_l.release(&v).unwrap();
    drop((reg_l, att_l, reg_p, att_p));
    assert!(calls <= 2, "{calls} calls, {took:?}");
}

/// Tight budget, small ring, no spinning, so every wait sleeps;
/// each side has a sending thread (alloc waits for releases, send waits
/// for room) and a receiving thread (recv sleeps), sharing one hub.
#[test]
fn duplex_two_threads_per_side_lose_no_wake_up() {
    let _s = serial();
    let n: u64 = std::env::var("STRESS_N")
        .ok()
        .map_or(20_000, |v| v.parse().unwrap());
    let ring = std::env::var("STRESS_RING").map_or(true, |v| v == "1");
    let (a, b) = Channel::pair().unwrap();
    let ro = RegistryOptions {
        region_size: 64 << 10,
        budget: 64 << 10,
        keep_warm: 64 << 10,
        ring,
        ring_capacity: 16,
        spin_us: 0,
        ..Default::default()
    };
    let ao = AttachmentsOptions {
        spin_us: 0,
        ..Default::default()
    };
    let mk = |c| voxshm::duplex(c, ro.clone(), ao.clone()).unwrap();
    let (rl, al) = mk(a);
    let (rp, ap) = mk(b);
    let mut hs = vec![];
    for (reg, att, name) in [(rl, al, "L"), (rp, ap, "P")] {
        let reg = Arc::new(reg);
        let att = Arc::new(att);
        let r2 = reg.clone();
        hs.push(std::thread::spawn(move || {
            for i in 0..n {
                let len = 1 + (i * 7919) % (16 << 10);
                let a = r2
                    .alloc(len, 5000)
                    .unwrap_or_else(|e| panic!("{name} alloc {i}: {e}"));
                r2.send(&a, len, 5000)
                    .unwrap_or_else(|e| panic!("{name} send {i}: {e}"));
            }
            r2.wait_idle(5000)
                .unwrap_or_else(|e| panic!("{name} wait_idle: {e}"));
        }));
        hs.push(std::thread::spawn(move || {
            for i in 0..n {
                let v = att
                    .recv(5000)
                    .unwrap_or_else(|e| panic!("{name} recv {i}: {e}"));
                att.release(&v).unwrap();
            }
            drop(reg);
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
}

/// Once a duplex channel's attachments are freed, every payload the peer
/// sends later is released as it arrives, also to an event-loop user (the
/// fd becomes readable; it calls voxshm_registry_poll): on the ring path
/// the closed side asks the peer to wake it with its next reference.
#[test]
fn duplex_closed_attachments_release_ring_refs_for_an_event_loop_user() {
    let _s = serial();
    let (reg_l, att_l, reg_p, att_p) = warmed_pair();
    drop(att_l);

    // L: an event loop over its registry's fd.
    let reg_l = Arc::new(reg_l);
    let stop = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicU64::new(0));
    let (r2, s2, p2) = (reg_l.clone(), stop.clone(), polls.clone());
    let fd = reg_l.fd();
    let lp = std::thread::spawn(move || {
        while !s2.load(Ordering::Relaxed) {
            if readable(fd, 50) {
                p2.fetch_add(1, Ordering::Relaxed);
                r2.poll().unwrap();
            }
        }
    });
    let mut failures = Vec::new();
    for i in 0..3 {
        let z = reg_p.alloc(1000, LONG_MS).unwrap();
        reg_p.send(&z, 1000, LONG_MS).unwrap();
        if let Err(e) = reg_p.wait_idle(2000) {
            failures.push(format!("payload {i}: {e}"));
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    lp.join().unwrap();
    eprintln!(
        "event-loop polls: {}, failures: {failures:?}, peer live_leases {}",
        polls.load(Ordering::Relaxed),
        reg_p.stats().live_leases
    );
    assert!(
        failures.is_empty(),
        "the closed side never released: {failures:?}"
    );
    drop((reg_l, reg_p, att_p));
}

/// Same, with this side blocked in a registry call (wait_released on a
/// payload the peer holds until its own payload comes back): the peer's
/// push wakes it.
#[test]
fn duplex_closed_attachments_release_ring_refs_while_the_registry_blocks() {
    let _s = serial();
    let (reg_l, att_l, reg_p, att_p) = warmed_pair();
    // L sends P a payload P holds.
    let y = reg_l.alloc(100, LONG_MS).unwrap();
    reg_l.send(&y, 100, LONG_MS).unwrap();
    let held = att_p.recv(LONG_MS).unwrap();
    let ry = held.r;
    drop(att_l);
    let reg_l = Arc::new(reg_l);
    let r2 = reg_l.clone();
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let res = r2.wait_released(&ry, 6000);
        (res, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(100));
    // P sends L a payload and releases L's only once its own came back.
    let z = reg_p.alloc(100, LONG_MS).unwrap();
    reg_p.send(&z, 100, LONG_MS).unwrap();
    let back = reg_p.wait_idle(2000);
    att_p.release(&held).unwrap();
    let (res, took) = waiter.join().unwrap();
    eprintln!("peer wait_idle: {back:?}; L wait_released: {res:?} after {took:?}");
    assert!(back.is_ok(), "P's payload was not given back: {back:?}");
    drop((reg_p, att_p));
}

fn readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// Two duplex sides in this process, L and P; P sent L one payload, which
/// L took and released: P's ring to L is running.
fn warmed_pair() -> (Registry, Attachments, Registry, Attachments) {
    let (a, b) = Channel::pair().unwrap();
    let (reg_l, att_l) = duplex(a, true);
    let (reg_p, att_p) = duplex(b, true);
    let x = reg_p.alloc(100, LONG_MS).unwrap();
    reg_p.send(&x, 100, LONG_MS).unwrap();
    let v = att_l.recv(LONG_MS).unwrap();
    att_l.release(&v).unwrap();
    reg_p.wait_idle(LONG_MS).unwrap();
    assert!(reg_p.stats().ring);
    (reg_l, att_l, reg_p, att_p)
}
