//! One sender, many receivers (`voxshm::fanout::Fanout`), across real
//! processes: every receiver gets every payload under the wait policy; a
//! slow receiver with limit 1 and the skip policy misses payloads and
//! delays nobody; a receiver killed with payloads in flight frees exactly
//! its share; a late joiner gets what is sent after it joined; a hostile
//! receiver harms only itself; the budget holds; everything returns to the
//! keep-warm level when the receivers leave.

mod common;

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::*;
use voxshm::Status::{InvalidArgument, PeerGone, ResourceExhausted};
use voxshm::fanout::{Fanout, MAX_RECEIVERS, Policy, ReceiverOptions, Target};
use voxshm::wire::{self, Ext};
use voxshm::{Attachments, AttachmentsOptions, Channel, Ref, RegistryOptions};

const LONG_MS: i64 = 20_000;

fn opts() -> RegistryOptions {
    RegistryOptions {
        region_size: 1 << 20,
        budget: 32 << 20,
        keep_warm: 2 << 20,
        ..Default::default()
    }
}

fn wait() -> ReceiverOptions {
    ReceiverOptions::default()
}

fn size(i: u64) -> u64 {
    8 + (i * 7919) % (256 << 10)
}

/// Receives until the sender goes, checking every byte; says
/// `GOT count gaps first last`. `$VOXSHM_TEST_DELAY_US`: sleeps that long
/// per payload (a slow consumer); `$VOXSHM_TEST_HOLD`: holds that many
/// payloads unreleased, says HELD, and waits (to be killed).
#[test]
fn helper_fanout_receiver() {
    if role().as_deref() != Some("fanout-receiver") {
        return;
    }
    let delay: u64 = std::env::var("VOXSHM_TEST_DELAY_US").map_or(0, |v| v.parse().unwrap());
    let hold: usize = std::env::var("VOXSHM_TEST_HOLD").map_or(0, |v| v.parse().unwrap());
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    say("READY");
    let (mut count, mut gaps) = (0u64, 0u64);
    let (mut first, mut last) = (None, None::<u64>);
    let mut held = Vec::new();
    loop {
        let v = match att.recv(LONG_MS) {
            Ok(v) => v,
            Err(e) if e.status == PeerGone => break,
            Err(e) => panic!("recv: {e}"),
        };
        // SAFETY: the view holds `v.len` readable bytes until released.
        let i = unsafe { verify_indexed(v.data, v.len) }.unwrap();
        assert_eq!(v.len, size(i), "payload {i}");
        if let Some(l) = last {
            assert!(i > l, "payload {i} after {l}");
            gaps += u64::from(i != l + 1);
        }
        first.get_or_insert(i);
        last = Some(i);
        count += 1;
        if held.len() < hold {
            held.push(v);
            if held.len() == hold {
                say("HELD");
                hear();
            }
            continue;
        }
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        att.release(&v).unwrap();
    }
    say(&format!(
        "GOT {count} {gaps} {} {}",
        first.unwrap_or(u64::MAX),
        last.unwrap_or(u64::MAX)
    ));
    hear();
}

struct Receiver {
    h: Helper,
    id: u32,
}

fn add(f: &Fanout, o: ReceiverOptions, envs: &[(&str, String)]) -> Receiver {
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_fanout_receiver",
        "fanout-receiver",
        Some(theirs.raw()),
        envs,
    );
    drop(theirs);
    h.expect("READY");
    let id = f.add_receiver(mine, o).map_err(|(e, _)| e).unwrap();
    Receiver { h, id }
}

/// What a receiver said when the sender went: count, gaps, first, last.
fn got(r: &mut Receiver) -> [u64; 4] {
    let w: Vec<u64> =
        r.h.expect("GOT")
            .split(' ')
            .map(|x| x.parse().unwrap())
            .collect();
    [w[0], w[1], w[2], w[3]]
}

fn send_range(f: &Fanout, range: std::ops::Range<u64>, target: Target) -> u64 {
    let mut reached = 0;
    for i in range {
        let len = size(i);
        let a = f.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill_indexed(a.data, len, i) };
        reached += u64::from(f.send(&a, len, target, LONG_MS).unwrap());
    }
    reached
}

/// Removes every receiver (each sees the sender go and reports) and
/// returns what each got.
fn finish(f: &Fanout, rs: &mut [Receiver]) -> Vec<[u64; 4]> {
    let mut out = Vec::new();
    for r in rs.iter_mut() {
        f.remove_receiver(r.id).unwrap();
        out.push(got(r));
    }
    for r in rs.iter_mut() {
        r.h.tell("bye");
    }
    out
}

#[test]
fn fanout_every_receiver_gets_every_payload_written_once() {
    let _s = serial();
    const N: u64 = 2000;
    let before = fd_count();
    let maps = mapping_count();
    let f = Fanout::new(opts()).unwrap();
    let mut rs: Vec<Receiver> = (0..3).map(|_| add(&f, wait(), &[])).collect();
    let reached = send_range(&f, 0..N, Target::All);
    assert_eq!(reached, 3 * N);
    f.wait_idle(LONG_MS).unwrap();
    let s = f.stats();
    // Written once: N payloads, 3N deliveries; every receiver used its ring.
    assert_eq!((s.payloads_published, s.deliveries, s.skips), (N, 3 * N, 0));
    assert!(s.mapped_bytes <= opts().budget, "{s:?}");
    for r in &rs {
        let st = f.receiver_stats(r.id).unwrap();
        assert_eq!(
            (st.delivered, st.released, st.in_flight),
            (N, N, 0),
            "{st:?}"
        );
        assert!(st.ring && st.ready && !st.gone, "{st:?}");
    }
    for g in finish(&f, &mut rs) {
        assert_eq!(g, [N, 0, 0, N - 1], "every payload, in order, byte-exact");
    }
    for r in rs {
        r.h.wait_success();
    }
    // The receivers closed their ends: back to the keep-warm level, and
    // no receiver's socket left open.
    f.wait_idle(LONG_MS).unwrap();
    let s = f.stats();
    assert!(s.mapped_bytes <= opts().keep_warm, "{s:?}");
    assert_eq!((s.receivers, s.open_fds), (0, s.regions + 2), "{s:?}");
    drop(f);
    assert_eq!(fd_count(), before);
    assert_eq!(mapping_count(), maps);
}

#[test]
fn fanout_skip_receiver_with_limit_one_misses_payloads_and_delays_nobody() {
    let _s = serial();
    const N: u64 = 1500;
    let f = Fanout::new(opts()).unwrap();
    let mut rs = vec![
        add(&f, wait(), &[]),
        add(&f, wait(), &[]),
        add(
            &f,
            ReceiverOptions {
                max_in_flight: 1,
                policy: Policy::Skip,
            },
            &[("VOXSHM_TEST_DELAY_US", "2000".into())],
        ),
    ];
    let slow = rs[2].id;
    let mut max_held = 0;
    for i in 0..N {
        send_range(&f, i..i + 1, Target::All);
        max_held = max_held.max(f.receiver_stats(slow).unwrap().in_flight);
    }
    f.wait_idle(LONG_MS).unwrap();
    let st = f.receiver_stats(slow).unwrap();
    assert_eq!(
        max_held, 1,
        "the latest-frame receiver never holds more than 1"
    );
    assert!(st.skipped > 0, "{st:?}");
    assert_eq!(st.delivered + st.skipped, N, "{st:?}");
    let s = f.stats();
    assert_eq!(s.skips, st.skipped, "only the slow one skipped: {s:?}");
    let g = finish(&f, &mut rs);
    assert_eq!(g[0], [N, 0, 0, N - 1]);
    assert_eq!(g[1], [N, 0, 0, N - 1]);
    assert_eq!(g[2][0], st.delivered, "{:?}", g[2]);
    assert!(g[2][1] > 0, "the slow one saw gaps: {:?}", g[2]);
    for r in rs {
        r.h.wait_success();
    }
}

#[test]
fn fanout_killed_receiver_frees_exactly_its_share() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let mut rs = vec![
        add(&f, wait(), &[]),
        add(&f, wait(), &[]),
        add(&f, wait(), &[("VOXSHM_TEST_HOLD", "10".into())]),
    ];
    send_range(&f, 0..10, Target::All);
    rs[2].h.expect("HELD");
    // The others released theirs; the holder's 10 keep the space.
    let t = std::time::Instant::now();
    while f.stats().live_payloads != 10 {
        f.poll().unwrap();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", f.stats());
    }
    let victim = rs.remove(2);
    let id = victim.id;
    assert!(!victim.h.kill9().success());
    f.wait_idle(LONG_MS).unwrap();
    let st = f.receiver_stats(id).unwrap();
    assert_eq!(
        (st.gone, st.reclaimed, st.in_flight),
        (true, 10, 0),
        "{st:?}"
    );
    assert_eq!(f.stats().live_payloads, 0);
    // The others go on, unaffected; a send to the dead one says so.
    assert_eq!(send_range(&f, 10..20, Target::All), 20);
    let a = f.alloc(10, LONG_MS).unwrap();
    assert_eq!(
        f.send(&a, 10, Target::One(id), 0).unwrap_err().status,
        PeerGone
    );
    f.abort(&a).unwrap();
    f.remove_receiver(id).unwrap();
    assert_eq!(f.remove_receiver(id).unwrap_err().status, InvalidArgument);
    for g in finish(&f, &mut rs) {
        assert_eq!(g, [20, 0, 0, 19]);
    }
    for r in rs {
        r.h.wait_success();
    }
}

#[test]
fn fanout_late_joiner_gets_what_is_sent_after_it_joined() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let mut rs = vec![add(&f, wait(), &[])];
    // Regions exist before the second receiver joins.
    send_range(&f, 0..300, Target::All);
    rs.push(add(&f, wait(), &[]));
    // Its HELLO: a waiting send waits for it.
    send_range(&f, 300..600, Target::All);
    f.wait_idle(LONG_MS).unwrap();
    let g = finish(&f, &mut rs);
    assert_eq!(g[0], [600, 0, 0, 599]);
    assert_eq!(g[1], [300, 0, 300, 599]);
    for r in rs {
        r.h.wait_success();
    }
}

/// Each payload to one receiver, the one with the fewest in flight: a
/// work queue. Every payload goes to exactly one.
#[test]
fn fanout_send_to_one_receiver_makes_a_work_queue() {
    let _s = serial();
    const N: u64 = 900;
    let f = Fanout::new(opts()).unwrap();
    let mut rs: Vec<Receiver> = (0..3).map(|_| add(&f, wait(), &[])).collect();
    for i in 0..N {
        let to = rs
            .iter()
            .min_by_key(|r| f.receiver_stats(r.id).unwrap().in_flight)
            .unwrap()
            .id;
        assert_eq!(send_range(&f, i..i + 1, Target::One(to)), 1);
    }
    f.wait_idle(LONG_MS).unwrap();
    let s = f.stats();
    assert_eq!((s.payloads_published, s.deliveries), (N, N));
    let g = finish(&f, &mut rs);
    assert_eq!(g.iter().map(|g| g[0]).sum::<u64>(), N, "{g:?}");
    for r in rs {
        r.h.wait_success();
    }
}

/// A tight budget and slow waiting receivers: the regions never go over
/// the budget, whatever the receivers do.
#[test]
fn fanout_budget_is_never_exceeded() {
    let _s = serial();
    let o = RegistryOptions {
        budget: 4 << 20,
        region_size: 1 << 20,
        ..opts()
    };
    let f = Fanout::new(o.clone()).unwrap();
    let mut rs = vec![
        add(&f, wait(), &[("VOXSHM_TEST_DELAY_US", "300".into())]),
        add(&f, wait(), &[]),
    ];
    let mut most = 0;
    for i in 0..400 {
        send_range(&f, i..i + 1, Target::All);
        most = most.max(f.stats().mapped_bytes);
    }
    assert!(most <= o.budget, "{most} > {}", o.budget);
    f.wait_idle(LONG_MS).unwrap();
    for g in finish(&f, &mut rs) {
        assert_eq!(g, [400, 0, 0, 399]);
    }
    for r in rs {
        r.h.wait_success();
    }
}

/// A receiver that speaks the protocol by hand: HELLO without the ring,
/// then for each of the first `$VOXSHM_TEST_N` references: releases it
/// twice and releases one it was never sent; then stops reading.
#[test]
fn helper_fanout_hostile_receiver() {
    if role().as_deref() != Some("fanout-hostile") {
        return;
    }
    let n: usize = env("VOXSHM_TEST_N").parse().unwrap();
    let chan = inherited_channel();
    let sock = chan.raw();
    let hello = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_RECEIVER,
        features: 0,
    };
    send_raw(sock, &hello.encode(), &[]).unwrap();
    say("READY");
    let mut seen = 0;
    while seen < n {
        let Some((bytes, _fds)) = recv_raw(sock, 10_000) else {
            break;
        };
        if let Ok(Ext::Ref(r)) = Ext::decode(&bytes) {
            let bogus = Ref {
                map_offset: r.map_offset + 64,
                ..r
            };
            let twice = Ext::Release(vec![r, r, bogus]).encode();
            send_raw(sock, &twice, &[]).unwrap();
            seen += 1;
        }
    }
    say("STOPPED");
    // Reads nothing more; keeps its socket open until told.
    hear();
    drop(chan);
}

#[test]
fn fanout_hostile_receiver_harms_only_itself() {
    let _s = serial();
    const N: u64 = 600;
    let f = Fanout::new(opts()).unwrap();
    let mut rs = vec![add(&f, wait(), &[]), add(&f, wait(), &[])];
    let (mine, theirs) = Channel::pair().unwrap();
    let mut hostile = Helper::spawn(
        "helper_fanout_hostile_receiver",
        "fanout-hostile",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", "20".into())],
    );
    drop(theirs);
    hostile.expect("READY");
    let bad = f
        .add_receiver(
            mine,
            // An untrusted receiver gets a limit: without one, one that
            // stops reading holds space until the budget is gone.
            ReceiverOptions {
                max_in_flight: 32,
                policy: Policy::Skip,
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
    send_range(&f, 0..N, Target::All);
    hostile.expect("STOPPED");
    let st = f.receiver_stats(bad).unwrap();
    // Each of its first 20: released once (the second time and the made-up
    // one ignored); then it stopped reading and missed payloads once its
    // socket was full, without slowing the others.
    assert!(st.released >= 20, "{st:?}");
    assert!(st.ignored_releases >= 40, "{st:?}");
    assert_eq!(st.delivered, st.released + st.in_flight, "{st:?}");
    assert_eq!(st.delivered + st.skipped, N, "{st:?}");
    assert!(st.skipped > 0, "{st:?}");
    assert!(st.in_flight <= 32, "{st:?}");
    for r in &rs {
        let s = f.receiver_stats(r.id).unwrap();
        assert_eq!((s.delivered, s.skipped), (N, 0), "{s:?}");
    }
    // Removed, it is told; what it holds comes back once it closes its end.
    f.remove_receiver(bad).unwrap();
    assert!(f.stats().live_payloads > 0);
    hostile.tell("bye");
    hostile.wait_success();
    f.wait_idle(LONG_MS).unwrap();
    for g in finish(&f, &mut rs) {
        assert_eq!(g, [N, 0, 0, N - 1]);
    }
    for r in rs {
        r.h.wait_success();
    }
}

/// 64 receivers at once (here in this process), and not one more.
#[test]
fn fanout_feeds_64_receivers() {
    let _s = serial();
    let before = fd_count();
    let f = Fanout::new(opts()).unwrap();
    let mut atts = Vec::new();
    for _ in 0..64 {
        let (a, b) = Channel::pair().unwrap();
        atts.push(Attachments::new(b, AttachmentsOptions::default()).unwrap());
        f.add_receiver(a, wait()).map_err(|(e, _)| e).unwrap();
    }
    let (a, b) = Channel::pair().unwrap();
    let (e, back) = f.add_receiver(a, wait()).unwrap_err();
    assert_eq!(e.status, ResourceExhausted);
    drop((back, b));
    for i in 0..20u64 {
        let a = f.alloc(1000, LONG_MS).unwrap();
        // SAFETY: the allocation holds 1000 writable bytes.
        unsafe { fill_indexed(a.data, 1000, i) };
        // Every receiver's HELLO is read by the send, which waits for it.
        assert_eq!(f.send(&a, 1000, Target::All, LONG_MS).unwrap(), 64);
        for att in &atts {
            let v = att.recv(LONG_MS).unwrap();
            // SAFETY: the view holds 1000 readable bytes until released.
            assert_eq!(unsafe { verify_indexed(v.data, v.len) }.unwrap(), i);
            att.release(&v).unwrap();
        }
    }
    f.wait_idle(LONG_MS).unwrap();
    drop(atts);
    drop(f);
    assert_eq!(fd_count(), before);
}

/// A connection that never says HELLO (accepted, never a receiver) delays
/// no send to the others, whatever its policy, and gets nothing.
#[test]
fn fanout_a_silent_connection_delays_nobody() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let mut rs = vec![add(&f, wait(), &[])];
    let (mine, silent) = Channel::pair().unwrap();
    let quiet = f.add_receiver(mine, wait()).map_err(|(e, _)| e).unwrap();
    for i in 0..50u64 {
        let a = f.alloc(size(i), LONG_MS).unwrap();
        // SAFETY: the allocation holds at least size(i) writable bytes.
        unsafe { fill_indexed(a.data, size(i), i) };
        // Timeout 0: nothing may be waited for.
        assert_eq!(f.send(&a, size(i), Target::All, 0).unwrap(), 1);
    }
    let st = f.receiver_stats(quiet).unwrap();
    assert_eq!(
        (st.ready, st.delivered, st.skipped),
        (false, 0, 0),
        "{st:?}"
    );
    assert_eq!(
        f.wait_ready(quiet, 20).unwrap_err().status,
        voxshm::Status::Timeout
    );
    f.wait_ready(rs[0].id, 0).unwrap();
    f.wait_idle(LONG_MS).unwrap();
    f.remove_receiver(quiet).unwrap();
    drop(silent);
    assert_eq!(finish(&f, &mut rs)[0], [50, 0, 0, 49]);
    for r in rs {
        r.h.wait_success();
    }
}

// ---------------------------------------------------------------------------
// Receivers in this process, for what one receiver's state does to the
// sender's calls.

/// A receiver in this process: its attachments and its id.
fn local(f: &Fanout, o: ReceiverOptions) -> (Attachments, u32) {
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    (att, f.add_receiver(a, o).map_err(|(e, _)| e).unwrap())
}

fn readable(fd: i32, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

fn hello(features: u64) -> Vec<u8> {
    Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_RECEIVER,
        features,
    }
    .encode()
}

fn send_bytes(f: &Fanout, len: u64, target: Target, timeout: i64) -> voxshm::Result<u32> {
    let a = f.alloc(len, LONG_MS).unwrap();
    // SAFETY: the allocation holds `len` writable bytes.
    unsafe { std::ptr::write_bytes(a.data, 0xab, len as usize) };
    let r = f.send(&a, len, target, timeout);
    if r.is_err() {
        f.abort(&a).unwrap();
    }
    r
}

/// An event-loop caller (it asked for the fd) whose non-blocking send is
/// refused because a Wait receiver is at its max_in_flight sees the fd
/// become readable when that receiver releases: the refusal asks the
/// receiver (through its ring) for a wake-up.
#[test]
fn fanout_nonblocking_send_refused_at_the_limit_asks_for_a_wake_up() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let fd = f.fd(); // an event-loop caller
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let id = f
        .add_receiver(
            a,
            ReceiverOptions {
                max_in_flight: 2,
                policy: Policy::Wait,
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
    assert_eq!(send_bytes(&f, 100, Target::All, LONG_MS).unwrap(), 1); // A
    assert_eq!(send_bytes(&f, 100, Target::All, 0).unwrap(), 1); // B
    f.poll().unwrap(); // the loop's poll: arms the release ring
    let va = att.recv(LONG_MS).unwrap();
    let vb = att.recv(LONG_MS).unwrap();
    att.release(&va).unwrap(); // WAKE (the flag poll() set), flag used up
    assert!(readable(fd, 1000));
    // The app sends before its loop gets to poll(): the send reads the WAKE.
    assert_eq!(send_bytes(&f, 100, Target::All, 0).unwrap(), 1); // C
    let e = send_bytes(&f, 100, Target::All, 0).unwrap_err(); // D: at the limit
    assert_eq!(e.status, voxshm::Status::Timeout, "{e}");
    assert!(!readable(fd, 0));
    // The receiver releases B: what the event loop waits for.
    att.release(&vb).unwrap();
    let woke = readable(fd, 1000);
    f.poll().unwrap();
    let in_flight = f.receiver_stats(id).unwrap().in_flight;
    assert_eq!(in_flight, 1, "the release was there all along");
    assert!(
        woke,
        "lost wake-up: the release arrived but the fanout fd never became readable"
    );
}

/// A Wait receiver on the socket path whose socket stays full is waited
/// for before anything is sent: the send fails with nobody reached (the
/// allocation still the caller's); it never misses a payload silently.
#[test]
fn fanout_wait_receiver_with_a_full_socket_is_waited_for() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    // A good receiver (ring).
    let (att, good) = local(&f, ReceiverOptions::default());
    // A slow receiver without the ring (HELLO, then reads nothing), policy Wait.
    let (mine, slow_end) = Channel::pair().unwrap();
    send_raw(slow_end.raw(), &hello(0), &[]).unwrap();
    let slow = f
        .add_receiver(mine, ReceiverOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    // Fill the slow one's socket; the good one keeps up. Once the slow
    // one's socket is full, a send waits for it and fails having reached
    // nobody (the allocation is given back by send_bytes).
    let mut sent = 0u64;
    let e = loop {
        match send_bytes(&f, 64, Target::All, 200) {
            Ok(n) => {
                assert_eq!(n, 2);
                sent += 1;
            }
            Err(e) => break e,
        }
        while let Ok(v) = att.recv(0) {
            att.release(&v).unwrap();
        }
        assert!(sent < 100_000);
    };
    assert_eq!(e.status, voxshm::Status::Timeout, "{e}");
    assert!(e.message.contains("socket is full"), "{e}");
    let st = f.receiver_stats(slow).unwrap();
    assert_eq!((st.delivered, st.skipped), (sent, 0), "{st:?}");
    assert_eq!(f.receiver_stats(good).unwrap().delivered, sent);
    assert_eq!(f.stats().allocations, 0);
}

/// Same, with Target::One: the one receiver (policy Wait) cannot take it:
/// an error, and the allocation is still the caller's (it can abort it).
#[test]
fn fanout_send_to_one_full_wait_receiver_fails_and_keeps_the_allocation() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let (mine, slow_end) = Channel::pair().unwrap();
    send_raw(slow_end.raw(), &hello(0), &[]).unwrap();
    let slow = f
        .add_receiver(mine, ReceiverOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    let mut n = 0;
    loop {
        let a = f.alloc(64, LONG_MS).unwrap();
        let r = f.send(&a, 64, Target::One(slow), 100);
        n += 1;
        match r {
            Ok(1) => {}
            other => {
                let abort = f.abort(&a);
                eprintln!(
                    "send #{n} to One(wait receiver) -> {other:?}; abort after it -> {abort:?}; {:?}",
                    f.receiver_stats(slow).unwrap()
                );
                assert!(
                    other.is_err(),
                    "send to one Wait receiver that stayed full returned {other:?}"
                );
                assert!(abort.is_ok(), "the allocation should still be the caller's");
                break;
            }
        }
        assert!(n < 100_000);
    }
}

/// A hostile receiver (skip policy) that writes a bad consumer index into
/// its own ring segment is cut off alone: the send goes on to the good
/// receiver.
#[test]
fn fanout_hostile_ring_index_cuts_off_that_receiver_alone() {
    let _s = serial();
    let o = RegistryOptions {
        ring_capacity: 16,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (att, good) = local(&f, ReceiverOptions::default());
    let (mine, bad_end) = Channel::pair().unwrap();
    send_raw(bad_end.raw(), &hello(wire::FEATURE_RING), &[]).unwrap();
    let bad = f
        .add_receiver(
            mine,
            ReceiverOptions {
                max_in_flight: 0,
                policy: Policy::Skip,
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
    for _ in 0..16 {
        assert_eq!(send_bytes(&f, 64, Target::All, LONG_MS).unwrap(), 2);
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    // The hostile receiver takes its segment and scribbles its consumer index.
    let mut seg = None;
    while let Some((bytes, mut fds)) = recv_raw(bad_end.raw(), 100) {
        if matches!(Ext::decode(&bytes), Ok(Ext::Segment { .. })) {
            seg = fds.pop();
        }
    }
    let seg = seg.expect("a SEGMENT");
    // SAFETY: mapping the segment fd shared, read-write, 1 page.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            seg.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: offset 128 (reference ring consumer index) is inside the page.
    unsafe {
        (p as *mut u8)
            .add(128)
            .cast::<u64>()
            .write_volatile(1_000_000)
    };
    let r = send_bytes(&f, 64, Target::All, LONG_MS);
    eprintln!(
        "send after the hostile write -> {r:?}; good: {:?}; bad: {:?}",
        f.receiver_stats(good).unwrap(),
        f.receiver_stats(bad).unwrap()
    );
    assert_eq!(
        r.as_ref().ok(),
        Some(&1),
        "the good receiver must get it; the hostile one is cut off alone"
    );
}

/// alloc's non-blocking path: a release that arrives while it arms the
/// rings (after its last look, before the sleep announcement) is looked at
/// again, not left in the ring with no wake-up coming (an event loop
/// waiting on the fd would stall). A ping-pong (one payload in flight) with
/// a receiver thread releasing at random moments; idle receivers without a
/// ring widen the window.
#[test]
fn fanout_nonblocking_alloc_loses_no_release_that_arrives_while_arming() {
    let _s = serial();
    let o = RegistryOptions {
        max_in_flight_bytes: 1, // one payload in flight at a time
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let fd = f.fd();
    let (att, rx) = local(&f, ReceiverOptions::default());
    // Idle non-ring receivers: each costs pump() a recvmsg.
    let mut idle = Vec::new();
    for _ in 0..60 {
        let (mine, theirs) = Channel::pair().unwrap();
        send_raw(theirs.raw(), &hello(0), &[]).unwrap();
        f.add_receiver(mine, ReceiverOptions::default())
            .map_err(|(e, _)| e)
            .unwrap();
        idle.push(theirs);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut rng = Prng::new(7);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(v) = att.recv(200) else { continue };
            let spin = rng.range(0, 120);
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_micros(spin) {}
            att.release(&v).unwrap();
        }
    });
    let mut stalls = 0;
    let mut nospace = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) && stalls == 0 {
        match f.alloc(64, 0) {
            Ok(a) => {
                f.send(&a, 64, Target::One(rx), LONG_MS).unwrap();
            }
            Err(e) => {
                assert_eq!(e.status, voxshm::Status::NoSpace);
                nospace += 1;
                if !readable(fd, 500) {
                    // Nothing will come: is the release already there?
                    f.poll().unwrap();
                    if f.stats().live_payloads == 0 {
                        stalls += 1;
                    }
                }
                f.poll().unwrap();
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    t.join().unwrap();
    eprintln!("NoSpace {nospace} times, stalls {stalls}");
    assert_eq!(
        stalls, 0,
        "alloc(0) said NoSpace, the fd never became readable, yet the release had arrived"
    );
}

/// A receiver on a SOCK_DGRAM pair that dies holding payloads shows no
/// hang-up; its death is seen by a send failing with ECONNREFUSED, which
/// marks it gone and reclaims what it held.
#[test]
fn fanout_dgram_receiver_that_dies_is_reclaimed() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let (a, b) = Channel::pair_of(voxshm::Kind::Dgram).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let id = f
        .add_receiver(a, ReceiverOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    for _ in 0..3 {
        assert_eq!(send_bytes(&f, 100, Target::All, LONG_MS).unwrap(), 1);
    }
    let _held: Vec<_> = (0..3).map(|_| att.recv(LONG_MS).unwrap()).collect();
    std::mem::forget(_held);
    drop(att); // the receiver dies holding 3 payloads
    for _ in 0..5 {
        let r = send_bytes(&f, 100, Target::All, 200);
        eprintln!("send after death -> {r:?}");
    }
    f.poll().unwrap();
    let st = f.receiver_stats(id).unwrap();
    let w = f.wait_idle(500);
    eprintln!(
        "{st:?}; live {}; wait_idle -> {w:?}",
        f.stats().live_payloads
    );
    assert!(st.gone, "the send saw ECONNREFUSED: the receiver is gone");
    assert_eq!(f.stats().live_payloads, 0, "its 3 payloads reclaimed");
}

/// A receiver (skip policy, everything it gets released at once) that never
/// answers RETIRE would pin every region it ever saw, until the budget is
/// gone for everybody: it is cut off once a retirement waited
/// `send_timeout_ms` for it.
#[test]
fn fanout_receiver_that_never_acknowledges_retire_is_cut_off() {
    let _s = serial();
    assert!(
        retire_scenario(false).is_none(),
        "control: without the bad receiver all is well"
    );
    let failed = retire_scenario(true);
    assert!(
        failed.is_none(),
        "one receiver that ignores RETIRE starved every receiver: {failed:?}"
    );
}

fn retire_scenario(with_bad: bool) -> Option<(i32, voxshm::Error)> {
    let o = RegistryOptions {
        region_size: 1 << 20,
        budget: 4 << 20,
        keep_warm: 0,
        send_timeout_ms: 300,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    f.add_receiver(a, ReceiverOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    let (mine, bad_end) = Channel::pair().unwrap();
    send_raw(bad_end.raw(), &hello(0), &[]).unwrap();
    if with_bad {
        f.add_receiver(
            mine,
            ReceiverOptions {
                max_in_flight: 4,
                policy: Policy::Skip,
            },
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    let mut failed = None;
    for i in 0..12 {
        let a = match f.alloc(600 << 10, 2000) {
            Ok(a) => a,
            Err(e) => {
                failed = Some((i, e));
                break;
            }
        };
        f.send(&a, 600 << 10, Target::All, LONG_MS).unwrap();
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
        // The bad receiver releases what it gets, ignores RETIRE.
        while let Some((bytes, _)) = recv_raw(bad_end.raw(), 50) {
            if let Ok(Ext::Ref(r)) = Ext::decode(&bytes) {
                send_raw(bad_end.raw(), &Ext::Release(vec![r]).encode(), &[]).unwrap();
            }
        }
        f.poll().unwrap();
        let _ = att.recv(0); // lets the good one acknowledge its RETIREs
    }
    let s = f.stats();
    eprintln!("with_bad {with_bad}: failed at {failed:?}; {s:?}");
    failed
}

/// A receiver removed while it still reads a payload keeps that payload's
/// space until it closes its end: the sender does not write over what it
/// reads. One that never closes is dropped after `send_timeout_ms`.
#[test]
fn fanout_removed_receiver_keeps_what_it_reads_until_it_closes() {
    let _s = serial();
    let o = RegistryOptions {
        send_timeout_ms: 300,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (att, id) = local(&f, wait());
    send_range(&f, 0..1, Target::All);
    let v = att.recv(LONG_MS).unwrap();
    f.remove_receiver(id).unwrap();
    assert_eq!(f.remove_receiver(id).unwrap_err().status, InvalidArgument);
    assert!(f.receivers().is_empty());
    // It sees the sender go, and still reads its view.
    assert_eq!(att.recv(0).unwrap_err().status, PeerGone);
    // The space stays its: new payloads go elsewhere.
    f.poll().unwrap();
    assert_eq!(f.stats().live_payloads, 1);
    let x = f.alloc(size(0), LONG_MS).unwrap();
    assert_ne!((x.map_id, x.map_offset), (v.r.map_id, v.r.map_offset));
    f.abort(&x).unwrap();
    // SAFETY: the view holds `v.len` readable bytes until released.
    assert_eq!(unsafe { verify_indexed(v.data, v.len) }.unwrap(), 0);
    att.release(&v).unwrap();
    drop(att);
    f.wait_idle(LONG_MS).unwrap();
    assert_eq!(f.stats().open_fds, f.stats().regions + 2);
    // One that never closes is dropped after send_timeout_ms.
    let (att, id) = local(&f, wait());
    send_range(&f, 1..2, Target::All);
    let _held = att.recv(LONG_MS).unwrap();
    f.remove_receiver(id).unwrap();
    let t = Instant::now();
    f.wait_idle(LONG_MS).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(f.stats().live_payloads, 0);
}

/// All at once, across processes: a fast receiver, a slow one (limit 1,
/// skip), a hostile one (limit 16, skip) and one killed mid-stream holding
/// payloads. The fast one gets every payload; each of the others affects
/// only itself; afterwards nothing is held.
#[test]
fn fanout_fast_slow_hostile_and_killed_receivers_together() {
    let _s = serial();
    const N: u64 = 800;
    let f = Fanout::new(opts()).unwrap();
    let skip = |n| ReceiverOptions {
        max_in_flight: n,
        policy: Policy::Skip,
    };
    let mut rs = vec![
        add(&f, wait(), &[]),
        add(&f, skip(1), &[("VOXSHM_TEST_DELAY_US", "1000".into())]),
    ];
    let victim = add(&f, wait(), &[("VOXSHM_TEST_HOLD", "5".into())]);
    let (mine, theirs) = Channel::pair().unwrap();
    let mut hostile = Helper::spawn(
        "helper_fanout_hostile_receiver",
        "fanout-hostile",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", "10".into())],
    );
    drop(theirs);
    hostile.expect("READY");
    let bad = f.add_receiver(mine, skip(16)).map_err(|(e, _)| e).unwrap();
    f.wait_ready(bad, LONG_MS).unwrap();
    send_range(&f, 0..5, Target::All);
    let mut victim = victim;
    victim.h.expect("HELD");
    let vid = victim.id;
    assert!(!victim.h.kill9().success());
    send_range(&f, 5..N, Target::All);
    hostile.expect("STOPPED");
    let st = f.receiver_stats(vid).unwrap();
    assert!(st.gone && st.in_flight == 0 && st.reclaimed >= 5, "{st:?}");
    let slow = f.receiver_stats(rs[1].id).unwrap();
    assert!(
        slow.skipped > 0 && slow.delivered + slow.skipped == N,
        "{slow:?}"
    );
    let h = f.receiver_stats(bad).unwrap();
    assert!(h.ignored_releases >= 20 && h.in_flight <= 16, "{h:?}");
    f.remove_receiver(vid).unwrap();
    f.remove_receiver(bad).unwrap();
    hostile.tell("bye");
    hostile.wait_success();
    f.wait_idle(LONG_MS).unwrap();
    let g = finish(&f, &mut rs);
    assert_eq!(g[0], [N, 0, 0, N - 1], "the fast one got every payload");
    assert_eq!(g[1][0], slow.delivered);
    for r in rs {
        r.h.wait_success();
    }
    assert_eq!(f.stats().live_payloads, 0);
}

fn send_indexed(f: &Fanout, len: u64, index: u64, target: Target) -> u32 {
    let a = f.alloc(len, LONG_MS).unwrap();
    // SAFETY: the allocation holds at least `len` writable bytes.
    unsafe { fill_indexed(a.data, len, index) };
    f.send(&a, len, target, LONG_MS).unwrap()
}

/// A receiver removed while a RETIRE it was sent is still unread
/// acknowledges it when it reads on (as every voxshm receiver does): that
/// is no protocol error, and what it still holds (and reads) stays its own.
#[test]
fn fanout_removed_receiver_that_acknowledges_a_retire_keeps_what_it_holds() {
    let _s = serial();
    let o = RegistryOptions {
        keep_warm: 0,
        send_timeout_ms: LONG_MS,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (r, rid) = local(&f, ReceiverOptions::default());
    let (g, gid) = local(&f, ReceiverOptions::default());
    // Region 1: A (R holds it) and C (G holds it, so region 1 never idles).
    send_indexed(&f, 4096, 0, Target::One(rid));
    send_indexed(&f, 4096, 2, Target::One(gid));
    // Region 2: B, to R, which releases it: region 2 retires, RETIRE to R.
    send_indexed(&f, 1 << 20, 1, Target::One(rid));
    let va = r.recv(LONG_MS).unwrap();
    let vb = r.recv(LONG_MS).unwrap();
    let _vc = g.recv(LONG_MS).unwrap();
    r.release(&vb).unwrap();
    f.poll().unwrap();
    assert_eq!(f.stats().live_payloads, 2);
    f.remove_receiver(rid).unwrap();
    // R reads on: the RETIRE (answered), then the end of the stream.
    assert_eq!(r.recv(LONG_MS).unwrap_err().status, PeerGone);
    f.poll().unwrap();
    let live = f.stats().live_payloads;
    // What the sender does with the space meanwhile.
    let x = f.alloc(4096, LONG_MS).unwrap();
    // SAFETY: 4096 writable bytes.
    unsafe { fill_indexed(x.data, 4096, 99) };
    // SAFETY: R's view stays readable until released.
    let seen = unsafe { verify_indexed(va.data, va.len) };
    eprintln!("live after R acked: {live}; R's view of A now reads {seen:?}");
    assert_eq!(
        live, 2,
        "R (removed, still reading A) was cut off for acknowledging a RETIRE"
    );
    assert_eq!(seen, Ok(0), "A was written over while R reads it");
    f.abort(&x).unwrap();
}

/// A Wait receiver on the ring path whose socket is full when a region's
/// ATTACH must go to it is waited for (the lock released, other threads go
/// on), and at the deadline nobody got the payload; it never misses one
/// silently.
#[test]
fn fanout_wait_ring_receiver_with_a_full_socket_is_not_skipped_silently() {
    let _s = serial();
    let o = RegistryOptions {
        budget: 64 << 20,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (att, good) = local(&f, ReceiverOptions::default());
    let (mine, slow_end) = Channel::pair().unwrap();
    // A small send buffer: the socket fills after a few messages (what a
    // receiver that pops its ring but has not read its socket lately does
    // with the default buffer, only sooner).
    let one: libc::c_int = 4096;
    // SAFETY: setsockopt with a valid int.
    unsafe {
        libc::setsockopt(
            mine.raw(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    send_raw(slow_end.raw(), &hello(wire::FEATURE_RING), &[]).unwrap();
    let slow = f
        .add_receiver(mine, ReceiverOptions::default())
        .map_err(|(e, _)| e)
        .unwrap();
    let len = 600 << 10; // one per region: each needs its ATTACH
    let mut stalled = Duration::ZERO;
    for i in 0..40 {
        let a = f.alloc(len, LONG_MS).unwrap();
        let (r, took) = std::thread::scope(|s| {
            let t = s.spawn(|| {
                std::thread::sleep(Duration::from_millis(50));
                let t0 = Instant::now();
                let _ = f.stats();
                t0.elapsed()
            });
            let r = f.send(&a, len, Target::All, 500);
            (r, t.join().unwrap())
        });
        stalled = stalled.max(took);
        let st = f.receiver_stats(slow).unwrap();
        match r {
            Ok(n) => {
                let v = att.recv(LONG_MS).unwrap();
                att.release(&v).unwrap();
                if n != 2 || st.skipped > 0 {
                    eprintln!("send {i} -> Ok({n}); slow: {st:?}; stats() waited {stalled:?}");
                    panic!(
                        "a Wait receiver missed a payload the others got (skipped {}); \
                         another thread's stats() waited {stalled:?} for the hub lock",
                        st.skipped
                    );
                }
            }
            Err(e) => {
                // Acceptable: nobody got it, the caller keeps it.
                eprintln!("send {i} -> {e}; slow: {st:?}");
                f.abort(&a).unwrap();
                assert_eq!(f.receiver_stats(good).unwrap().delivered, i);
                break;
            }
        }
    }
    assert!(
        stalled < Duration::from_millis(200),
        "stats() waited {stalled:?} for a send blocked on one receiver"
    );
}

/// `send_timeout_ms` 0 (sends do not wait unless the call says so) does not
/// cut off a receiver that acknowledges its retirements promptly: the grace
/// is at least a second.
#[test]
fn fanout_send_timeout_zero_does_not_cut_off_a_prompt_receiver() {
    let _s = serial();
    let o = RegistryOptions {
        keep_warm: 0,
        send_timeout_ms: 0,
        ..opts()
    };
    let f = Fanout::new(o).unwrap();
    let (att, id) = local(&f, ReceiverOptions::default());
    let mut reached = Vec::new();
    for i in 0..4 {
        reached.push(send_indexed(&f, 1 << 20, i, Target::All));
        if let Ok(v) = att.recv(1000) {
            att.release(&v).unwrap();
        }
    }
    let st = f.receiver_stats(id).unwrap();
    eprintln!("reached {reached:?}; {st:?}");
    assert!(!st.gone, "a prompt receiver was cut off: {st:?}");
    assert_eq!(reached, vec![1; 4]);
}

/// At 64 receivers, removing one (which then closes its end) makes room
/// for another.
#[test]
fn fanout_add_after_removing_one_of_64_succeeds() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let mut rs: Vec<(Attachments, u32)> = (0..MAX_RECEIVERS)
        .map(|_| local(&f, ReceiverOptions::default()))
        .collect();
    let (att, id) = rs.pop().unwrap();
    f.remove_receiver(id).unwrap();
    drop(att); // it closed its end: nothing of it is left to keep
    let (a, b) = Channel::pair().unwrap();
    let _att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let r = f.add_receiver(a, ReceiverOptions::default());
    if let Err((e, _)) = &r {
        assert_ne!(
            e.status, ResourceExhausted,
            "{e} (after one of 64 was removed and closed)"
        );
    }
    r.map_err(|(e, _)| e).unwrap();
}

/// The handle-wide counters (deliveries, skips, messages) never go
/// backwards when a receiver is removed.
#[test]
fn fanout_totals_do_not_go_backwards_when_a_receiver_is_removed() {
    let _s = serial();
    let f = Fanout::new(opts()).unwrap();
    let (a1, id1) = local(&f, ReceiverOptions::default());
    let (a2, _id2) = local(&f, ReceiverOptions::default());
    for i in 0..5 {
        assert_eq!(send_indexed(&f, 64, i, Target::All), 2);
        for a in [&a1, &a2] {
            let v = a.recv(LONG_MS).unwrap();
            a.release(&v).unwrap();
        }
    }
    f.wait_idle(LONG_MS).unwrap();
    let before = f.stats();
    f.remove_receiver(id1).unwrap();
    drop(a1);
    f.poll().unwrap();
    let after = f.stats();
    eprintln!(
        "deliveries {} -> {}, messages_sent {} -> {}",
        before.deliveries, after.deliveries, before.messages_sent, after.messages_sent
    );
    assert!(
        after.deliveries >= before.deliveries,
        "deliveries went backwards"
    );
    assert!(after.messages_sent >= before.messages_sent);
    let _ = Policy::Wait;
}
