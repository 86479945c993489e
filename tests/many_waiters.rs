//! Several threads blocked on one handle at once: one sleeps in poll(),
//! the others on the condition variable, and every one of them must be
//! woken when its turn comes (nothing lost, nothing hangs).

use std::sync::atomic::{AtomicU64, Ordering};

use voxshm::*;

#[test]
fn several_senders_and_receivers_share_handles() {
    const PER_SENDER: u64 = 5_000;
    const SENDERS: u64 = 3;
    const RECEIVERS: usize = 3;
    let (a, b) = Channel::pair().unwrap();
    // A budget of a few payloads, so senders wait for releases.
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 64 << 10,
            budget: 64 << 10,
            keep_warm: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let received = AtomicU64::new(0);
    std::thread::scope(|s| {
        let receivers: Vec<_> = (0..RECEIVERS)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        match att.recv(10_000) {
                            Ok(v) => {
                                assert_eq!(v.len, 16 << 10);
                                received.fetch_add(1, Ordering::Relaxed);
                                att.release(&v).unwrap();
                            }
                            Err(e) if e.status == Status::PeerGone => break,
                            Err(e) => panic!("recv: {e:?}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::scope(|s2| {
            for _ in 0..SENDERS {
                s2.spawn(|| {
                    for _ in 0..PER_SENDER {
                        let al = reg.alloc(16 << 10, 10_000).unwrap();
                        reg.send(&al, 16 << 10, 10_000).unwrap();
                    }
                });
            }
        });
        reg.wait_idle(10_000).unwrap();
        assert_eq!(reg.stats().live_leases, 0);
        drop(reg);
        for r in receivers {
            r.join().unwrap();
        }
    });
    assert_eq!(received.load(Ordering::Relaxed), SENDERS * PER_SENDER);
}
