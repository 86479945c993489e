//! The ring segment across two real processes: a producer and a consumer
//! that sleep when they have nothing to do and wake each other with a
//! byte on a socket, only when the other side announced it sleeps. Every
//! entry arrives, in order, in both directions; no wake-up is lost (a lost
//! one would leave a side asleep: the test would time out); and a burst
//! costs far fewer wake-ups than entries.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use voxshm::Channel;
use voxshm::ring::{Capacities, Segment};
use voxshm::wire::Ref;

const N: u64 = 200_000;

fn entry(i: u64) -> Ref {
    Ref {
        map_id: (i % 1000) as u32 + 1,
        map_generation: (i >> 10) as u32 + 1,
        map_offset: i * 64,
        payload_len: (i % 4096) as u32 + 1,
    }
}

/// Waits for a doorbell byte on `sock` (10 s at most: a lost wake-up
/// fails the test) and drains every byte that came.
fn sleep_on(sock: &OwnedFd) {
    let got = recv_raw(sock.as_raw_fd(), 10_000);
    assert!(got.is_some(), "asleep for 10 s: a wake-up was lost");
    // SAFETY: recv on our own socket into a live buffer, non-blocking.
    while unsafe {
        libc::recv(
            sock.as_raw_fd(),
            [0u8; 8].as_mut_ptr().cast(),
            8,
            libc::MSG_DONTWAIT,
        )
    } > 0
    {}
}

fn ring(sock: &OwnedFd) {
    send_raw(sock.as_raw_fd(), b"W", &[]).expect("ring the doorbell");
}

/// Spins a little now and then, so both sides keep finding the rings
/// empty or full and going to sleep.
fn jitter(i: u64) {
    if i.is_multiple_of(997) {
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

#[test]
fn helper_ring_consumer() {
    if role().as_deref() != Some("ring-consumer") {
        return;
    }
    let sock = inherited_channel().into_fd();
    let (_, mut fds) = recv_raw(sock.as_raw_fd(), 10_000).expect("the segment");
    let mut seg = Segment::attach(fds.pop().expect("its fd")).unwrap();
    let (mut sleeps, mut wakes) = (0u64, 0u64);
    let mut i = 0;
    while i < N {
        match seg.pop().unwrap() {
            Some(r) => {
                assert_eq!(r, entry(i), "entry {i}");
                if seg.peer_needs_wake_for_room() {
                    ring(&sock);
                    wakes += 1;
                }
                // Back as a release; wait for room if the ring is full.
                while !seg.push(&r).unwrap() {
                    if seg.prepare_wait_for_room().unwrap() {
                        sleep_on(&sock);
                    }
                }
                if seg.peer_needs_wake_for_entries() {
                    ring(&sock);
                    wakes += 1;
                }
                jitter(i + 1);
                i += 1;
            }
            None => {
                if seg.prepare_sleep().unwrap() {
                    sleeps += 1;
                    sleep_on(&sock);
                }
            }
        }
    }
    say(&format!("CONSUMED {N} {sleeps} {wakes}"));
    hear();
}

#[test]
fn entries_cross_between_processes_without_loss_or_lost_wakeups() {
    let _s = serial();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_ring_consumer",
        "ring-consumer",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let sock = mine.into_fd();
    let (mut seg, fd) = Segment::create(Capacities {
        refs: 256,
        releases: 64,
    })
    .unwrap();
    send_raw(sock.as_raw_fd(), b"SEGMENT!", &[fd.as_raw_fd()]).unwrap();
    drop(fd);
    let (mut sent, mut back) = (0u64, 0u64);
    let (mut sleeps, mut wakes) = (0u64, 0u64);
    while back < N {
        let mut progressed = false;
        if sent < N && seg.push(&entry(sent)).unwrap() {
            if seg.peer_needs_wake_for_entries() {
                ring(&sock);
                wakes += 1;
            }
            sent += 1;
            progressed = true;
            jitter(sent);
        }
        while let Some(r) = seg.pop().unwrap() {
            assert_eq!(r, entry(back), "release {back}");
            back += 1;
            progressed = true;
        }
        if seg.peer_needs_wake_for_room() {
            ring(&sock);
            wakes += 1;
        }
        if !progressed {
            // Both rings blocked for us: the references ring full, or
            // nothing left to send and no release back yet.
            let nothing_back = seg.prepare_sleep().unwrap();
            let no_room = sent == N || seg.prepare_wait_for_room().unwrap();
            if nothing_back && no_room {
                sleeps += 1;
                sleep_on(&sock);
            }
        }
    }
    let line = h.expect("CONSUMED");
    let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
    assert_eq!(f[0], N);
    eprintln!(
        "{N} entries each way; producer slept {sleeps} times and woke the consumer {wakes} times; consumer slept {} and woke {}",
        f[1], f[2]
    );
    // A wake-up per sleep at most, never one per entry.
    assert!(
        wakes + f[2] < N / 10,
        "{wakes} + {} wake-ups for {N} entries",
        f[2]
    );
    h.tell("done");
    assert!(h.wait().success());
}
