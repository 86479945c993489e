//! Full exchanges between a sender and a receiver: across two real
//! processes over a socketpair, over a `SOCK_DGRAM` pair, and over a
//! connection made through a `Listener` on a path and on an abstract name.

mod common;

use common::*;
use voxshm::Status::*;
use voxshm::sys::Deadline;
use voxshm::*;

/// Payload sizes of one exchange: `n` sizes drawn log-uniformly from 1 to
/// `max` bytes (the first two pinned to the extremes).
fn sizes(seed: u64, n: u64, max: u64) -> Vec<u64> {
    let mut rng = Prng::new(seed);
    (0..n)
        .map(|i| match i {
            0 => 1,
            1 => max,
            _ => rng.log_uniform(max),
        })
        .collect()
}

/// Sends payloads `sizes` through `reg`, each filled with its pattern.
fn send_all(reg: &Registry, sizes: &[u64]) -> u64 {
    let mut total = 0;
    for (i, &len) in sizes.iter().enumerate() {
        let a = reg
            .alloc(len, LONG_MS)
            .unwrap_or_else(|e| panic!("alloc #{i} of {len} bytes: {e}"));
        assert!(a.capacity >= len);
        // SAFETY: the allocation holds `capacity >= len` writable bytes.
        unsafe { fill(a.data, len, i as u64) };
        reg.send(&a, len, LONG_MS)
            .unwrap_or_else(|e| panic!("send #{i} of {len} bytes: {e}"));
        total += len;
    }
    total
}

/// Receives, checks and releases payloads `sizes` in order.
/// With `fds_while_running`, also checks that this process's fd count stays
/// at that number (only when the sender is another process).
fn receive_all(att: &Attachments, sizes: &[u64], fds_while_running: Option<usize>) -> u64 {
    let mut total = 0;
    for (i, &len) in sizes.iter().enumerate() {
        let v = att
            .recv(LONG_MS)
            .unwrap_or_else(|e| panic!("recv #{i}: {e}"));
        assert_eq!(v.len, len, "payload #{i}");
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        att.release(&v).unwrap();
        total += len;
        if let Some(fds) = fds_while_running
            && i % 97 == 0
        {
            // Region fds are closed once mapped: the count stays flat
            // however many regions arrive.
            assert_eq!(fd_count(), fds, "after payload #{i}");
        }
    }
    total
}

/// The receiving side of an exchange, run in a helper process: takes the
/// channel from fd 3 (or connects to `$VOXSHM_TEST_ADDR`), receives and
/// checks every payload, then serves retirements until the sender hangs up.
#[test]
fn helper_receiver() {
    if role().as_deref() != Some("receiver") {
        return;
    }
    let sizes = sizes(
        env("VOXSHM_TEST_SEED").parse().unwrap(),
        env("VOXSHM_TEST_N").parse().unwrap(),
        env("VOXSHM_TEST_MAX").parse().unwrap(),
    );
    let addr = std::env::var("VOXSHM_TEST_ADDR").ok();
    let fds_before = fd_count();
    let chan = match &addr {
        Some(a) => Channel::connect(a).unwrap(),
        None => inherited_channel(),
    };
    // With an inherited channel, fd 3 was already counted.
    let chan_fds = usize::from(addr.is_some());
    let att = Attachments::new(chan, AttachmentsOptions::default()).unwrap();
    say("READY");
    let total = receive_all(&att, &sizes, Some(fds_before + chan_fds + 1));
    say(&format!("RECEIVED {} {total}", sizes.len()));
    // Waiting here acknowledges retirements until the sender hangs up.
    let e = att.recv(LONG_MS).unwrap_err();
    assert_eq!(e.status, PeerGone, "{e}");
    let st = att.stats();
    assert_eq!(
        (st.mappings, st.mapped_bytes, st.live_views),
        (0, 0, 0),
        "{st:?}"
    );
    assert_eq!(fd_count(), fds_before + chan_fds + 1);
    drop(att);
    assert_eq!(fd_count(), fds_before + chan_fds - 1);
    say("DONE");
}

fn receiver_env(seed: u64, n: u64, max: u64) -> Vec<(&'static str, String)> {
    vec![
        ("VOXSHM_TEST_SEED", seed.to_string()),
        ("VOXSHM_TEST_N", n.to_string()),
        ("VOXSHM_TEST_MAX", max.to_string()),
    ]
}

#[test]
fn cross_process_exchange_of_2000_payloads_up_to_64_mib() {
    let _s = serial();
    const SEED: u64 = 0x766f_7873_686d_0001;
    const N: u64 = 2000;
    const MAX: u64 = 64 << 20;
    let opts = RegistryOptions {
        region_size: 16 << 20,
        keep_warm: 32 << 20,
        budget: 256 << 20,
        ..Default::default()
    };
    let sizes = sizes(SEED, N, MAX);
    assert!(sizes.iter().filter(|&&s| s > opts.region_size).count() > 50);

    let before = fd_count();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_receiver",
        "receiver",
        Some(theirs.raw()),
        &receiver_env(SEED, N, MAX),
    );
    drop(theirs);
    let reg = Registry::new(mine, opts.clone()).unwrap();
    h.expect("READY");

    let total = send_all(&reg, &sizes);
    reg.wait_idle(LONG_MS).unwrap();
    let s = reg.stats();
    assert_eq!(s.live_leases, 0, "{s:?}");
    assert_eq!(s.allocations, 0, "{s:?}");
    assert_eq!(s.payloads_published, N, "{s:?}");
    assert_eq!(s.payload_bytes_published, total, "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    assert!(s.regions <= opts.keep_warm / opts.region_size, "{s:?}");
    assert!(s.regions_retired > 0, "{s:?}");
    assert_eq!(s.regions_created - s.regions_retired, s.regions, "{s:?}");
    // The helper's stdin and stdout, the channel, the wake-up eventfd, and
    // one fd per region still kept warm.
    assert_eq!(fd_count(), before + 2 + 2 + s.regions as usize);
    assert_eq!(h.expect("RECEIVED"), format!("{N} {total}"));

    drop(reg);
    h.expect("DONE");
    h.wait_success();
    assert_eq!(fd_count(), before);
}

#[test]
fn dgram_pair_carries_a_full_exchange() {
    let _s = serial();
    const N: u64 = 600;
    let before = fd_count();
    let (a, b) = Channel::pair_of(Kind::Dgram).unwrap();
    assert_eq!((a.kind(), b.kind()), (Kind::Dgram, Kind::Dgram));
    let opts = RegistryOptions {
        region_size: 1 << 20,
        keep_warm: 2 << 20,
        budget: 16 << 20,
        ..Default::default()
    };
    let reg = Registry::new(a, opts.clone()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let sizes = sizes(7, N, 3 << 20);
    let receiver = {
        let sizes = sizes.clone();
        std::thread::spawn(move || {
            let total = receive_all(&att, &sizes, None);
            (att, total)
        })
    };
    let sent = send_all(&reg, &sizes);
    let (att, received) = receiver.join().unwrap();
    assert_eq!(sent, received);
    settle(&reg, &att);
    let s = reg.stats();
    assert_eq!(s.live_leases, 0, "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    assert!(s.regions_retired > 0, "{s:?}");
    assert!(att.stats().mappings <= s.regions, "{:?}", att.stats());

    // A datagram pair reports no hang-up, but sending to a closed peer
    // fails: the registry says the peer is gone.
    drop(att);
    let al = reg.alloc(100, 0).unwrap();
    let e = reg.send(&al, 100, 1000).unwrap_err();
    assert_eq!(e.status, PeerGone, "{e}");
    assert_eq!(reg.stats().live_leases, 0);
    drop(reg);
    assert_eq!(fd_count(), before);
}

fn listener_exchange(addr: &str) {
    const SEED: u64 = 11;
    const N: u64 = 300;
    const MAX: u64 = 2 << 20;
    let before = fd_count();
    let l = Listener::bind(addr).unwrap();
    let mut env = receiver_env(SEED, N, MAX);
    env.push(("VOXSHM_TEST_ADDR", addr.to_string()));
    let mut h = Helper::spawn("helper_receiver", "receiver", None, &env);
    let chan = l.accept(Deadline::after_ms(LONG_MS)).unwrap();
    assert_eq!(chan.kind(), Kind::SeqPacket);
    let opts = RegistryOptions {
        region_size: 1 << 20,
        keep_warm: 1 << 20,
        budget: 32 << 20,
        ..Default::default()
    };
    let reg = Registry::new(chan, opts.clone()).unwrap();
    h.expect("READY");
    let total = send_all(&reg, &sizes(SEED, N, MAX));
    reg.wait_idle(LONG_MS).unwrap();
    let s = reg.stats();
    assert_eq!(s.live_leases, 0, "{s:?}");
    assert!(s.mapped_bytes <= opts.keep_warm, "{s:?}");
    assert_eq!(h.expect("RECEIVED"), format!("{N} {total}"));
    drop(reg);
    h.expect("DONE");
    h.wait_success();
    drop(l);
    assert_eq!(fd_count(), before);
}

#[test]
fn listener_on_a_filesystem_path() {
    let _s = serial();
    let path = std::env::temp_dir().join(format!("voxshm-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let p = path.to_str().unwrap();
    listener_exchange(p);
    assert!(!path.exists(), "the listener removes its socket file");
    // The path is free again.
    drop(Listener::bind(p).unwrap());
}

#[test]
fn listener_on_an_abstract_name() {
    let _s = serial();
    let name = format!("@voxshm-test-{}", std::process::id());
    listener_exchange(&name);
    // The name is free again once the listener is gone.
    drop(Listener::bind(&name).unwrap());
    assert_eq!(
        Channel::connect(&name).unwrap_err().status,
        NoListener,
        "nobody listens any more"
    );
}
