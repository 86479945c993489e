//! Peer death across real processes: the peer is killed with SIGKILL while
//! it holds leases or views, and the survivor cleans up.

mod common;

use common::*;
use voxshm::Status::*;
use voxshm::*;

fn sizes(n: u64) -> Vec<u64> {
    let mut rng = Prng::new(n);
    (0..n).map(|_| rng.range(100_000, 600_000)).collect()
}

fn opts() -> RegistryOptions {
    RegistryOptions {
        region_size: 1 << 20,
        keep_warm: 1 << 20,
        budget: 64 << 20,
        ..Default::default()
    }
}

/// Receives `$VOXSHM_TEST_N` payloads, releases the even ones, holds the
/// odd ones and blocks until killed.
#[test]
fn helper_holder() {
    if role().as_deref() != Some("holder") {
        return;
    }
    let sizes = sizes(env("VOXSHM_TEST_N").parse().unwrap());
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    say("READY");
    let mut held = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let v = att.recv(LONG_MS).unwrap();
        assert_eq!(v.len, len);
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        if i % 2 == 0 {
            att.release(&v).unwrap();
        } else {
            held.push(v);
        }
    }
    say(&format!("HELD {}", held.len()));
    // Blocks until the parent kills this process (or itself goes away).
    hear();
}

#[test]
fn receiver_killed_while_holding_leases() {
    let _s = serial();
    const N: u64 = 40;
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_holder",
        "holder",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", N.to_string())],
    );
    drop(theirs);
    let opts = opts();
    let reg = Registry::new(mine, opts.clone()).unwrap();
    h.expect("READY");
    for (i, &len) in sizes(N).iter().enumerate() {
        let a = reg.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, i as u64) };
        reg.send(&a, len, LONG_MS).unwrap();
    }
    assert_eq!(h.expect("HELD"), (N / 2).to_string());
    // The even payloads' releases were sent before HELD was printed.
    reg.poll().unwrap();
    let s = reg.stats();
    assert_eq!(s.live_leases, N / 2, "{s:?}");
    assert!(s.regions > 3, "{s:?}");
    // An allocation made before the death, to send after it.
    let pending = reg.alloc(1000, 0).unwrap();

    let st = h.kill9();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));

    // The hang-up makes the fd readable, and a poll made then sees it
    // (on the ring path a poll while nothing is readable reads nothing).
    let mut p = libc::pollfd {
        fd: reg.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 5000) }, 1);
    let e = reg.poll().unwrap_err();
    assert_eq!(e.status, PeerGone, "{e}");
    assert!(reg.peer_is_gone());
    let s = reg.stats();
    assert_eq!(s.live_leases, 0, "every lease was reclaimed: {s:?}");
    assert_eq!(reg.send(&pending, 1000, 1000).unwrap_err().status, PeerGone);
    assert_eq!(reg.alloc(1000, 0).unwrap_err().status, PeerGone);
    assert_eq!(reg.alloc(1000, 1000).unwrap_err().status, PeerGone);
    // The allocation is still the caller's to give back.
    reg.abort(&pending).unwrap();
    // Nothing is outstanding any more, but wait_idle says why: the
    // receiver died holding leases.
    assert_eq!(reg.wait_idle(0).unwrap_err().status, PeerGone);
    let s = reg.stats();
    assert_eq!((s.live_leases, s.allocations), (0, 0), "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    assert!(s.regions <= opts.keep_warm / opts.region_size, "{s:?}");
    // The channel, the wake-up eventfd and the regions kept warm.
    assert_eq!(fd_count(), before + 2 + s.regions as usize);
    drop(reg);
    assert_eq!(fd_count(), before);
}

/// Sends `$VOXSHM_TEST_N` payloads, says SENT, and blocks until killed.
#[test]
fn helper_dying_sender() {
    if role().as_deref() != Some("dying-sender") {
        return;
    }
    let n: u64 = env("VOXSHM_TEST_N").parse().unwrap();
    let reg = Registry::new(inherited_channel(), opts()).unwrap();
    for (i, &len) in sizes(n).iter().enumerate() {
        let a = reg.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(a.data, len, i as u64) };
        reg.send(&a, len, LONG_MS).unwrap();
    }
    say(&format!("SENT {n}"));
    hear();
}

#[test]
fn sender_killed_while_receiver_holds_views() {
    let _s = serial();
    const N: u64 = 30;
    // Sent before the death but not yet received when it happens.
    const UNRECEIVED: u64 = 6;
    let sizes = sizes(N + UNRECEIVED);
    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_dying_sender",
        "dying-sender",
        Some(theirs.raw()),
        &[("VOXSHM_TEST_N", (N + UNRECEIVED).to_string())],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    let mut views = Vec::new();
    for (i, &len) in sizes.iter().take(N as usize).enumerate() {
        let v = att.recv(LONG_MS).unwrap();
        assert_eq!(v.len, len);
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        views.push(v);
    }
    assert_eq!(h.expect("SENT"), (N + UNRECEIVED).to_string());
    h.kill9();

    // What was already received stays readable.
    for (i, v) in views.iter().enumerate() {
        // SAFETY: the view was not released; its mapping is alive.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
    }
    // What was sent before the death is still delivered, in order.
    for i in N..N + UNRECEIVED {
        let v = att
            .recv(LONG_MS)
            .unwrap_or_else(|e| panic!("payload #{i}: {e}"));
        assert_eq!(v.len, sizes[i as usize]);
        // SAFETY: as above.
        unsafe { verify(v.data, v.len, i) }.unwrap();
        views.push(v);
    }
    // Then every receive reports the death.
    assert_eq!(att.recv(0).unwrap_err().status, PeerGone);
    assert_eq!(att.recv(1000).unwrap_err().status, PeerGone);
    assert!(att.peer_is_gone());
    let st = att.stats();
    assert!(st.mappings > 0, "{st:?}");
    assert_eq!(st.live_views, N + UNRECEIVED, "{st:?}");
    // Region fds were closed when mapped: only the channel and the eventfd.
    assert_eq!(fd_count(), before + 2);

    for v in &views {
        att.release(v).unwrap();
    }
    for v in &views {
        assert_eq!(att.release(v).unwrap_err().status, InvalidView);
    }
    let st = att.stats();
    assert_eq!(
        (
            st.mappings,
            st.mapped_bytes,
            st.live_views,
            st.pending_releases
        ),
        (0, 0, 0, 0),
        "{st:?}"
    );
    assert_eq!(fd_count(), before + 2);
    drop(att);
    assert_eq!(fd_count(), before);
}
