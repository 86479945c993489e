//! The API's contract in one process: budget and backpressure, misuse of
//! allocations and views, and timeouts.

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use voxshm::Status::{self, *};
use voxshm::*;

fn status<T: std::fmt::Debug>(r: Result<T>) -> Status {
    r.expect_err("expected an error").status
}

const REGION: u64 = 64 << 10;

fn pair_with(opts: RegistryOptions) -> (Registry, Arc<Attachments>) {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, opts).unwrap();
    let att = Arc::new(Attachments::new(b, AttachmentsOptions::default()).unwrap());
    (reg, att)
}

fn send(reg: &Registry, len: u64, index: u64) {
    let al = reg.alloc(len, LONG_MS).unwrap();
    // SAFETY: the allocation holds at least `len` writable bytes.
    unsafe { fill(al.data, len, index) };
    reg.send(&al, len, LONG_MS).unwrap();
}

#[test]
fn alloc_rejects_impossible_lengths() {
    let _s = serial();
    let (reg, _att) = pair_with(RegistryOptions {
        region_size: REGION,
        budget: 2 * REGION,
        ..Default::default()
    });
    assert_eq!(status(reg.alloc(0, 0)), ZeroLength);
    assert_eq!(status(reg.alloc(0, LONG_MS)), ZeroLength);
    assert_eq!(status(reg.alloc(u32::MAX as u64 + 1, 0)), TooLarge);
    assert_eq!(status(reg.alloc(u64::MAX, 0)), TooLarge);
    // Larger than the whole budget: no wait can help.
    assert_eq!(status(reg.alloc(2 * REGION + 1, LONG_MS)), TooLarge);
    // The whole budget in one payload is fine.
    let al = reg.alloc(2 * REGION, 0).unwrap();
    assert_eq!(al.capacity, 2 * REGION);
    reg.abort(&al).unwrap();
    assert_eq!(reg.stats().allocations, 0);
}

#[test]
fn budget_exhaustion_and_backpressure() {
    let _s = serial();
    let before = fd_count();
    let (reg, att) = pair_with(RegistryOptions {
        region_size: REGION,
        budget: 2 * REGION,
        keep_warm: 2 * REGION,
        ..Default::default()
    });
    // Two allocations take both regions the budget allows.
    let x = reg.alloc(REGION, 0).unwrap();
    let y = reg.alloc(REGION, 0).unwrap();
    assert_eq!(reg.stats().regions, 2);
    assert_eq!(status(reg.alloc(1, 0)), NoSpace);
    assert_eq!(status(reg.alloc(1, 50)), NoSpace);
    // An aborted allocation is space again.
    reg.abort(&y).unwrap();
    let y = reg.alloc(REGION, 0).unwrap();

    // Published and held by the receiver: still no space.
    for (i, al) in [x, y].iter().enumerate() {
        // SAFETY: the allocation holds REGION writable bytes.
        unsafe { fill(al.data, REGION, i as u64) };
        reg.send(al, REGION, LONG_MS).unwrap();
    }
    let vx = att.recv(LONG_MS).unwrap();
    let vy = att.recv(LONG_MS).unwrap();
    assert_eq!(status(reg.alloc(1, 0)), NoSpace);
    assert_eq!(reg.stats().live_leases, 2);

    // Another thread releases one after a while; an alloc that waits
    // gets its space (it can only succeed after that release).
    let releaser = {
        let att = Arc::clone(&att);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: the view holds REGION readable bytes until released.
            unsafe { verify(vx.data, vx.len, 0) }.unwrap();
            att.release(&vx).unwrap();
        })
    };
    let z = reg.alloc(REGION, LONG_MS).unwrap();
    releaser.join().unwrap();
    assert_eq!((z.map_id, z.map_offset), (vx.r.map_id, vx.r.map_offset));
    assert_eq!(reg.stats().live_leases, 1);

    reg.abort(&z).unwrap();
    att.release(&vy).unwrap();
    settle(&reg, &att);
    assert_eq!(reg.stats().live_leases, 0);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

/// A helper process that receives one payload, holds it until told, then
/// releases it and waits for the sender to hang up.
#[test]
fn helper_slow_releaser() {
    if role().as_deref() != Some("slow-releaser") {
        return;
    }
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    let v = att.recv(LONG_MS).unwrap();
    say("HOLDING");
    hear();
    att.release(&v).unwrap();
    assert_eq!(status(att.recv(LONG_MS)), PeerGone);
}

#[test]
fn alloc_waits_for_a_release_from_another_process() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let mut h = Helper::spawn("helper_slow_releaser", "slow-releaser", Some(b.raw()), &[]);
    drop(b);
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: REGION,
            budget: REGION,
            ..Default::default()
        },
    )
    .unwrap();
    send(&reg, REGION, 0);
    h.expect("HOLDING");
    assert_eq!(status(reg.alloc(1, 0)), NoSpace);
    // Whether the release lands before or while the alloc waits, the alloc
    // can only succeed after it.
    h.tell("release");
    let al = reg.alloc(REGION, LONG_MS).unwrap();
    reg.abort(&al).unwrap();
    drop(reg);
    h.wait_success();
    assert_eq!(fd_count(), before);
}

#[test]
fn misuse_of_allocations() {
    let _s = serial();
    let (reg, att) = pair_with(RegistryOptions {
        region_size: REGION,
        ..Default::default()
    });
    // Published twice.
    let a = reg.alloc(100, 0).unwrap();
    reg.publish(&a, 100).unwrap();
    assert_eq!(status(reg.publish(&a, 100)), InvalidAllocation);
    assert_eq!(status(reg.send(&a, 100, 1000)), InvalidAllocation);
    assert_eq!(status(reg.abort(&a)), InvalidAllocation);
    // Sent, then published or sent again.
    let b = reg.alloc(100, 0).unwrap();
    reg.send(&b, 100, LONG_MS).unwrap();
    assert_eq!(status(reg.send(&b, 100, 1000)), InvalidAllocation);
    assert_eq!(status(reg.publish(&b, 100)), InvalidAllocation);
    // Aborted, then published, sent or aborted again.
    let c = reg.alloc(100, 0).unwrap();
    reg.abort(&c).unwrap();
    assert_eq!(status(reg.publish(&c, 100)), InvalidAllocation);
    assert_eq!(status(reg.send(&c, 100, 1000)), InvalidAllocation);
    assert_eq!(status(reg.abort(&c)), InvalidAllocation);
    // A stale copy of an allocation whose space was handed out again.
    let d = reg.alloc(100, 0).unwrap();
    assert_eq!((d.map_id, d.map_offset), (c.map_id, c.map_offset));
    assert_eq!(status(reg.publish(&c, 100)), InvalidAllocation);
    assert_eq!(status(reg.abort(&c)), InvalidAllocation);
    // A forged one.
    let forged = Allocation {
        map_offset: d.map_offset + 64,
        ..d
    };
    assert_eq!(status(reg.publish(&forged, 1)), InvalidAllocation);
    let forged = Allocation {
        map_generation: d.map_generation + 1,
        ..d
    };
    assert_eq!(status(reg.abort(&forged)), InvalidAllocation);
    // Bad lengths leave the allocation usable.
    assert_eq!(status(reg.publish(&d, 0)), ZeroLength);
    assert_eq!(status(reg.send(&d, 0, 1000)), ZeroLength);
    assert_eq!(status(reg.publish(&d, d.capacity + 1)), TooLarge);
    assert_eq!(status(reg.send(&d, d.capacity + 1, 1000)), TooLarge);
    assert_eq!(status(reg.publish(&d, u64::MAX)), TooLarge);
    reg.publish(&d, d.capacity).unwrap();
    assert_eq!(reg.stats().allocations, 0);
    assert_eq!(reg.stats().live_leases, 3);
    drop(att);
}

#[test]
fn misuse_of_views() {
    let _s = serial();
    let (reg, att) = pair_with(RegistryOptions {
        region_size: REGION,
        ..Default::default()
    });
    let a = reg.alloc(100, 0).unwrap();
    let r1 = reg.publish(&a, 100).unwrap();
    let b = reg.alloc(100, 0).unwrap();
    let r2 = reg.publish(&b, 100).unwrap();

    // Released twice.
    let v1 = att.resolve(&r1, LONG_MS).unwrap();
    att.release(&v1).unwrap();
    assert_eq!(status(att.release(&v1)), InvalidView);
    // Never resolved: r2 is valid, but no view of it is held.
    let never = View {
        data: v1.data,
        len: 100,
        r: r2,
    };
    assert_eq!(status(att.release(&never)), InvalidView);
    // Forged pointer or length for a view that is held.
    let v2 = att.resolve(&r2, 0).unwrap();
    let moved = View {
        data: v2.data.wrapping_add(64),
        ..v2
    };
    assert_eq!(status(att.release(&moved)), InvalidView);
    let longer = View { len: 101, ..v2 };
    assert_eq!(status(att.release(&longer)), InvalidView);
    // Resolved twice: two views, each released once.
    let v2b = att.resolve(&r2, 0).unwrap();
    assert_eq!(att.stats().live_views, 2);
    att.release(&v2).unwrap();
    // The lease is held until the last view goes.
    reg.poll().unwrap();
    assert_eq!(reg.stats().live_leases, 1);
    att.release(&v2b).unwrap();
    assert_eq!(status(att.release(&v2b)), InvalidView);
    settle(&reg, &att);
    assert_eq!(reg.stats().live_leases, 0);
    assert_eq!(att.stats().live_views, 0);
}

#[test]
fn resolve_waits_for_an_attach_that_arrives_later() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    // The first allocation of a fresh registry: region 1, generation 1,
    // offset 0.
    let expected = Ref {
        map_id: 1,
        map_generation: 1,
        map_offset: 0,
        payload_len: 5000,
    };
    let (tx, rx) = mpsc::channel();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let al = reg.alloc(5000, 0).unwrap();
        // SAFETY: the allocation holds at least 5000 writable bytes.
        unsafe { fill(al.data, 5000, 42) };
        tx.send(reg.publish(&al, 5000).unwrap()).unwrap();
        reg
    });
    let v = att.resolve(&expected, LONG_MS).unwrap();
    // The frame the sender would have sent, through its 32-byte encoding.
    let frame = rx.recv().unwrap().encode_frame();
    assert_eq!(Ref::decode_frame(&frame).unwrap(), expected);
    // The payload was written before it was published.
    // SAFETY: the view holds 5000 readable bytes until released.
    unsafe { verify(v.data, v.len, 42) }.unwrap();
    att.release(&v).unwrap();
    let reg = sender.join().unwrap();
    settle(&reg, &att);
}

#[test]
fn waits_that_end_without_anything_time_out() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let nothing = Ref {
        map_id: 7,
        map_generation: 1,
        map_offset: 0,
        payload_len: 1,
    };
    // Without waiting, the region is simply unknown.
    assert_eq!(status(att.resolve(&nothing, 0)), UnknownMap);
    // After waiting in vain, the wait timed out.
    assert_eq!(status(att.resolve(&nothing, 200)), Timeout);
    assert_eq!(status(att.recv(0)), Timeout);
    assert_eq!(status(att.recv(100)), Timeout);
    // A registry whose receiver never says HELLO cannot send.
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let (c, _d) = Channel::pair().unwrap();
    let mute = Registry::new(c, RegistryOptions::default()).unwrap();
    let al = mute.alloc(10, 0).unwrap();
    assert_eq!(status(mute.send(&al, 10, 0)), Timeout);
    assert_eq!(status(mute.send(&al, 10, 100)), Timeout);
    // The allocation is still the caller's.
    mute.abort(&al).unwrap();
    // Nothing was released: wait_idle with nothing outstanding is at once.
    reg.wait_idle(0).unwrap();
    drop((reg, att));
    // Once the peer is gone, a wait for an ATTACH ends at once: the
    // region can never arrive.
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    drop(a);
    assert_eq!(status(att.resolve(&nothing, LONG_MS)), PeerGone);
    assert_eq!(status(att.recv(LONG_MS)), PeerGone);
}

#[test]
fn a_budget_that_is_not_whole_pages_is_rounded_up() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            budget: 640,
            region_size: 100,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(reg.options().budget, 4096);
    let _att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    reg.abort(&al).unwrap();
    assert_eq!(status(reg.alloc(5000, 0)), TooLarge);
}

#[test]
fn argument_errors_come_before_waiting_and_messages_speak_c() {
    let _s = serial();
    let (a, _b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    // No receiver has said HELLO: still, too many bytes is said at once.
    let t = std::time::Instant::now();
    assert_eq!(status(reg.send(&al, 1000, 5000)), TooLarge);
    assert_eq!(status(reg.send(&al, 0, 5000)), ZeroLength);
    assert!(t.elapsed() < Duration::from_secs(2));
    // A double release names the reference in words, not Rust's Debug.
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, LONG_MS).unwrap();
    reg.send(&al, 100, LONG_MS).unwrap();
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    let e = att.release(&v).unwrap_err();
    assert_eq!(e.status, InvalidView);
    assert!(
        e.message.contains("region 1/1, 100 bytes at offset 0") && !e.message.contains("Ref {"),
        "{e}"
    );
}

#[test]
fn negative_timeouts_wait_forever_and_the_configured_one_is_spelled_out() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            send_timeout_ms: 50,
            ..Default::default()
        },
    )
    .unwrap();
    let al = reg.alloc(100, 0).unwrap();
    // The configured timeout: the receiver never said HELLO.
    let t = std::time::Instant::now();
    assert_eq!(
        status(reg.send(&al, 100, voxshm::registry::TIMEOUT_CONFIGURED)),
        Timeout
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // -1 waits longer than the configured 50 ms: until the HELLO comes.
    let peer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        Attachments::new(b, AttachmentsOptions::default()).unwrap()
    });
    let t = std::time::Instant::now();
    reg.send(&al, 100, -1).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(250));
    let att = peer.join().unwrap();
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
}

#[test]
fn wait_idle_says_what_it_waits_for() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 64 << 10,
            keep_warm: 0,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    reg.send(&al, 100, LONG_MS).unwrap();
    let e = reg.wait_idle(0).unwrap_err();
    assert!(e.message.contains("payloads are not released yet"), "{e}");
    let e = reg.wait_idle(1).unwrap_err();
    assert!(e.message.contains("1 payloads are not released"), "{e}");
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    // Released; the idle region is retired (keep_warm 0), and the receiver
    // acknowledges only when it next calls voxshm.
    let e = reg.wait_idle(0).unwrap_err();
    assert_eq!(e.status, Timeout);
    assert!(
        e.message.contains(
            "every payload was released, but the receiver has not acknowledged the retired regions"
        ),
        "{e}"
    );
    let e = reg.wait_idle(1).unwrap_err();
    assert!(
        e.message.contains(
            "every payload was released, but the receiver has not acknowledged 1 retired regions"
        ),
        "{e}"
    );
    att.poll().unwrap();
    reg.wait_idle(LONG_MS).unwrap();
}

/// Receives `$VOXSHM_TEST_N` payloads and holds them until killed.
#[test]
fn helper_hold_all() {
    if role().as_deref() != Some("hold-all") {
        return;
    }
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    let n: usize = env("VOXSHM_TEST_N").parse().unwrap();
    let held: Vec<View> = (0..n).map(|_| att.recv(LONG_MS).unwrap()).collect();
    say(&format!("HOLDING {}", held.len()));
    hear();
}

#[test]
fn waiting_for_one_payloads_release() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let refs: Vec<Ref> = (0..2)
        .map(|_| {
            let al = reg.alloc(100, 0).unwrap();
            reg.send(&al, 100, LONG_MS).unwrap();
            Ref {
                map_id: al.map_id,
                map_generation: al.map_generation,
                map_offset: al.map_offset,
                payload_len: 100,
            }
        })
        .collect();
    assert_eq!(status(reg.wait_released(&refs[0], 0)), Timeout);
    let v0 = att.recv(LONG_MS).unwrap();
    let v1 = att.recv(LONG_MS).unwrap();
    att.release(&v0).unwrap();
    reg.wait_released(&refs[0], LONG_MS).unwrap();
    assert_eq!(status(reg.wait_released(&refs[1], 0)), Timeout);
    // Another thread releases the second while we wait for it.
    let att = Arc::new(att);
    let a2 = att.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        a2.release(&v1).unwrap();
    });
    reg.wait_released(&refs[1], LONG_MS).unwrap();
    t.join().unwrap();

    // A receiver that dies holding it: reclaimed, not released.
    let (a, b) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_hold_all",
        "hold-all",
        Some(b.raw()),
        &[("VOXSHM_TEST_N", "1".into())],
    );
    drop(b);
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let al = reg.alloc(100, LONG_MS).unwrap();
    let r = reg.publish(&al, 100).unwrap();
    let al2 = reg.alloc(100, LONG_MS).unwrap();
    reg.send(&al2, 100, LONG_MS).unwrap();
    h.expect("HOLDING 1");
    h.kill9();
    let sent = Ref {
        map_id: al2.map_id,
        map_generation: al2.map_generation,
        map_offset: al2.map_offset,
        payload_len: 100,
    };
    assert_eq!(status(reg.wait_released(&sent, LONG_MS)), PeerGone);
    assert_eq!(status(reg.wait_released(&r, 0)), PeerGone);
}

#[test]
fn page_fault_counts_in_stats_are_opt_in() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    // Without the option stats make no system call, and say 0 faults.
    assert_eq!((reg.stats().minor_faults, att.stats().minor_faults), (0, 0));
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            stats_faults: true,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(
        b,
        AttachmentsOptions {
            stats_faults: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(reg.stats().minor_faults > 0 && att.stats().minor_faults > 0);
}

#[test]
fn a_producer_faster_than_its_consumer_queues_a_few_payloads_not_the_budget() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    assert_eq!(reg.options().max_in_flight_bytes, 64 << 20);
    const FRAME: u64 = 1920 * 1080 * 4;
    let mut sent = 0;
    let e = loop {
        match reg.alloc(FRAME, 0) {
            Ok(al) => {
                reg.send(&al, FRAME, LONG_MS).unwrap();
                sent += 1;
            }
            Err(e) => break e,
        }
    };
    // 8 frames fit in 64 MiB; the ninth waits (with timeout 0: NO_SPACE).
    assert_eq!(sent, 8);
    assert_eq!(e.status, NoSpace);
    assert!(e.message.contains("max_in_flight_bytes"), "{e}");
    // One release makes room for one more.
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    let al = reg.alloc(FRAME, LONG_MS).unwrap();
    reg.abort(&al).unwrap();
    // A payload larger than the limit still goes when nothing is in flight.
    let (a, _b) = Channel::pair().unwrap();
    let big = Registry::new(a, RegistryOptions::default()).unwrap();
    let al = big.alloc(100 << 20, 0).unwrap();
    big.abort(&al).unwrap();
}
