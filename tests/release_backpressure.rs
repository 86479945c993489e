//! A receiver that releases faster than the sender reads fills the channel
//! (a Unix seqpacket socket queues only a few messages); its releases then
//! wait for room while it reads what the sender sends. Every release must
//! reach the sender exactly once.

use std::thread;

use voxshm::{Attachments, AttachmentsOptions, Channel, Registry, RegistryOptions, Status};

#[test]
fn releases_under_backpressure_arrive_once() {
    // Several pairs at once, so that the threads are preempted at many
    // different points.
    let pairs: Vec<_> = (0..4).map(|_| thread::spawn(one_pair)).collect();
    for p in pairs {
        p.join().unwrap();
    }
}

fn one_pair() {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 4 << 20,
            budget: 8 << 20,
            keep_warm: 8 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    const N: u64 = 10_000;
    const LEN: u64 = 4096;

    let receiver = thread::spawn(move || {
        for i in 0..N {
            let v = match att.recv(10_000) {
                Ok(v) => v,
                Err(e) => return Err(format!("recv {i}: {e}")),
            };
            if v.len != LEN {
                return Err(format!("payload {i} has {} bytes", v.len));
            }
            if let Err(e) = att.release(&v) {
                return Err(format!("release {i}: {e}"));
            }
        }
        // Stay until the sender has had every release.
        match att.recv(10_000) {
            Err(e) if e.status == Status::PeerGone => Ok(()),
            Err(e) => Err(format!("after the last payload: {e}")),
            Ok(_) => Err("a payload too many".to_string()),
        }
    });

    for i in 0..N {
        let al = reg
            .alloc(LEN, 10_000)
            .unwrap_or_else(|e| panic!("alloc {i}: {e}"));
        reg.send(&al, LEN, 10_000)
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
    }
    reg.wait_idle(10_000).expect("every payload released");
    assert_eq!(reg.stats().live_leases, 0);
    drop(reg);
    receiver.join().unwrap().unwrap();
}
