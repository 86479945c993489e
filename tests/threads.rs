//! One registry shared by four sending threads, one attachments handle
//! shared by four receiving threads.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use voxshm::Status::*;
use voxshm::*;

const THREADS: u64 = 4;
const PER_THREAD: u64 = 1500;
const TOTAL: u64 = THREADS * PER_THREAD;

fn len_of(index: u64) -> u64 {
    Prng::new(index).range(8, 256 << 10)
}

#[test]
fn four_senders_and_four_receivers_share_the_handles() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    // A budget small enough that senders wait for releases.
    let opts = RegistryOptions {
        region_size: 1 << 20,
        keep_warm: 2 << 20,
        budget: 6 << 20,
        ..Default::default()
    };
    let reg = Arc::new(Registry::new(a, opts.clone()).unwrap());
    let att = Arc::new(Attachments::new(b, AttachmentsOptions::default()).unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(vec![false; TOTAL as usize]));

    let receivers: Vec<_> = (0..THREADS)
        .map(|_| {
            let att = Arc::clone(&att);
            let received = Arc::clone(&received);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut mine = 0u64;
                while received.load(Ordering::SeqCst) < TOTAL {
                    let v = match att.recv(50) {
                        Ok(v) => v,
                        Err(e) if e.status == Timeout => continue,
                        Err(e) => panic!("recv: {e}"),
                    };
                    // SAFETY: the view holds `len` readable bytes until
                    // released.
                    let index = unsafe { verify_indexed(v.data, v.len) }.unwrap();
                    assert_eq!(v.len, len_of(index));
                    {
                        let mut s = seen.lock().unwrap();
                        assert!(!s[index as usize], "payload {index} received twice");
                        s[index as usize] = true;
                    }
                    att.release(&v).unwrap();
                    received.fetch_add(1, Ordering::SeqCst);
                    mine += 1;
                }
                mine
            })
        })
        .collect();

    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let reg = Arc::clone(&reg);
            std::thread::spawn(move || {
                for j in 0..PER_THREAD {
                    let index = t * PER_THREAD + j;
                    let len = len_of(index);
                    let al = reg
                        .alloc(len, LONG_MS)
                        .unwrap_or_else(|e| panic!("alloc #{index}: {e}"));
                    // SAFETY: the allocation holds at least `len` writable
                    // bytes.
                    unsafe { fill_indexed(al.data, len, index) };
                    if j % 5 == 4 {
                        // Now and then an allocation given back unused.
                        reg.abort(&al).unwrap();
                        let al = reg.alloc(len, LONG_MS).unwrap();
                        // SAFETY: as above.
                        unsafe { fill_indexed(al.data, len, index) };
                        reg.send(&al, len, LONG_MS).unwrap();
                    } else {
                        reg.send(&al, len, LONG_MS)
                            .unwrap_or_else(|e| panic!("send #{index}: {e}"));
                    }
                }
            })
        })
        .collect();

    for s in senders {
        s.join().unwrap();
    }
    let per_receiver: Vec<u64> = receivers.into_iter().map(|r| r.join().unwrap()).collect();
    assert_eq!(per_receiver.iter().sum::<u64>(), TOTAL);
    assert!(seen.lock().unwrap().iter().all(|&s| s));

    settle(&reg, &att);
    let s = reg.stats();
    assert_eq!((s.live_leases, s.allocations), (0, 0), "{s:?}");
    assert_eq!(s.payloads_published, TOTAL, "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    let st = att.stats();
    assert_eq!((st.live_views, st.queued_refs), (0, 0), "{st:?}");
    assert_eq!(st.releases_sent, TOTAL, "{st:?}");
    drop((reg, att));
    assert_eq!(fd_count(), before);
}
