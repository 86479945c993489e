//! Releases sent while the channel back to the sender is full: every
//! release must reach the sender exactly once, or the sender sees a
//! RELEASE for space it no longer leases and poisons the channel.

use std::time::Duration;

use voxshm::*;

/// Shrinks the send buffer of one end so a few messages fill it.
fn tiny_sndbuf(fd: i32) {
    let v: libc::c_int = 1; // the kernel rounds this up to its minimum
    // SAFETY: `v` is a live c_int and its size is passed alongside it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

#[test]
fn releases_through_a_full_channel_arrive_once() {
    const N: u32 = 20_000;
    let (a, b) = Channel::pair().unwrap();
    tiny_sndbuf(b.raw());
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 1 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..N {
                let al = reg.alloc(64, 5000).unwrap();
                // SAFETY: the allocation holds 64 writable bytes.
                unsafe { al.data.write(i as u8) };
                reg.send(&al, 64, 5000).unwrap();
                // Now and then stop reading releases so they pile up in
                // the receiver's small send buffer.
                if i % 200 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            reg.wait_idle(5000).unwrap();
        });
        for i in 0..N {
            let v = att.recv(5000).unwrap();
            // SAFETY: the view holds 64 readable bytes until released.
            assert_eq!(unsafe { v.data.read() }, i as u8);
            att.release(&v).unwrap();
        }
    });
    let s = reg.stats();
    assert_eq!(s.live_leases, 0, "{s:?}");
    assert_eq!(s.payloads_published, N as u64);
    let st = att.stats();
    assert_eq!(st.releases_sent, N as u64, "{st:?}");
    assert_eq!(st.pending_releases, 0, "{st:?}");
}
