//! Regressions found by hostile and fault testing: each test here failed on
//! voxshm 0.1 and passes now. Cross-process cases use real helper
//! processes; hostile-peer cases use a raw socket end, as in `hostile.rs`.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use voxshm::Status::{self, *};
use voxshm::wire::{self, Ext};
use voxshm::*;

fn status<T: std::fmt::Debug>(r: Result<T>) -> Status {
    r.expect_err("expected an error").status
}

fn r(map_id: u32, map_generation: u32, map_offset: u64, payload_len: u32) -> Ref {
    Ref {
        map_id,
        map_generation,
        map_offset,
        payload_len,
    }
}

/// Attachments over one end of a socketpair; the other end is returned raw,
/// with the receiver's HELLO already read from it.
fn receiver(opts: AttachmentsOptions) -> (Attachments, OwnedFd) {
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, opts).unwrap();
    let peer = a.into_fd();
    let (hello, fds) = recv_raw(peer.as_raw_fd(), 5000).expect("HELLO");
    assert!(fds.is_empty() && Ext::decode(&hello).is_ok());
    // A voxshm sender answers with its own (the receiver sends nothing else
    // to a sender that has not).
    let answer = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_SENDER,
        features: 0,
    };
    send_closing(&peer, &answer.encode(), Vec::new());
    (att, peer)
}

fn send_closing(peer: &OwnedFd, body: &[u8], fds: Vec<OwnedFd>) {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    assert_eq!(send_raw(peer.as_raw_fd(), body, &raw).unwrap(), body.len());
}

fn attach(peer: &OwnedFd, map_id: u32, generation: u32, len: u64) {
    let fd = memfd(len, SHRINK_GROW);
    // SAFETY: fallocate takes no pointers: the region's pages exist, as an
    // honest sender's do.
    assert_eq!(
        unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len as i64) },
        0
    );
    send_closing(peer, &attach_body(map_id, generation, len), vec![fd]);
}

fn ext(peer: &OwnedFd, m: Ext) {
    send_closing(peer, &m.encode(), vec![]);
}

fn retire(map_id: u32, map_generation: u32) -> Ext {
    Ext::Retire {
        map_id,
        map_generation,
        mapping_length: 4096,
    }
}

fn fill_payload(a: &Allocation, len: u64, index: u64) {
    // SAFETY: the allocation holds at least `len` writable bytes.
    unsafe { fill(a.data, len, index) };
}

// ---------------------------------------------------------------------------
// 1. A dying peer's queued messages are still delivered (ECONNRESET).

/// Sends 2 payloads, waits until told, sends 3 more and exits at once,
/// with the receiver's releases of the first two still unread.
#[test]
fn helper_sender_then_exit() {
    if role().as_deref() != Some("sender-exit") {
        return;
    }
    let reg = Registry::new(inherited_channel(), RegistryOptions::default()).unwrap();
    // Everything allocated up front: nothing after this reads the channel,
    // so the receiver's releases stay unread.
    let allocs: Vec<Allocation> = (0..5).map(|_| reg.alloc(1000, LONG_MS).unwrap()).collect();
    for (i, a) in allocs.iter().enumerate() {
        fill_payload(a, 1000, i as u64);
    }
    reg.send(&allocs[0], 1000, LONG_MS).unwrap();
    reg.send(&allocs[1], 1000, LONG_MS).unwrap();
    say("SENT 2");
    assert_eq!(hear().as_deref(), Some("more"));
    for a in &allocs[2..] {
        reg.send(a, 1000, LONG_MS).unwrap();
    }
    say("SENT 5");
    std::process::exit(0);
}

#[test]
fn dying_sender_still_delivers_what_it_sent() {
    let _s = serial();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_sender_then_exit",
        "sender-exit",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    h.expect("SENT 2");
    for i in 0..2 {
        let v = att.recv(LONG_MS).unwrap();
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i) }.unwrap();
        att.release(&v).unwrap();
    }
    h.tell("more");
    h.expect("SENT 5");
    assert!(h.wait().success());
    for i in 2..5 {
        let v = att
            .recv(LONG_MS)
            .unwrap_or_else(|e| panic!("payload {i} sent before the death: {e}"));
        // SAFETY: as above.
        unsafe { verify(v.data, v.len, i) }.unwrap();
        att.release(&v).unwrap();
    }
    assert_eq!(status(att.recv(LONG_MS)), PeerGone);
}

/// Receives and releases 3 payloads, says so, then exits when told without
/// reading what came after.
#[test]
fn helper_receiver_then_exit() {
    if role().as_deref() != Some("receiver-exit") {
        return;
    }
    let att = Attachments::new(inherited_channel(), AttachmentsOptions::default()).unwrap();
    for _ in 0..3 {
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    say("RELEASED 3");
    assert_eq!(hear().as_deref(), Some("exit"));
    std::process::exit(0);
}

#[test]
fn dying_receiver_releases_are_still_applied() {
    let _s = serial();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_receiver_then_exit",
        "receiver-exit",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let reg = Registry::new(mine, RegistryOptions::default()).unwrap();
    // Four allocations up front, so nothing after them reads the channel.
    let allocs: Vec<Allocation> = (0..4).map(|_| reg.alloc(1000, LONG_MS).unwrap()).collect();
    for a in &allocs[..3] {
        reg.send(a, 1000, LONG_MS).unwrap();
    }
    h.expect("RELEASED 3");
    // The fourth reaches a receiver that never reads it: its exit resets
    // the connection while its three releases wait unread here.
    reg.send(&allocs[3], 1000, LONG_MS).unwrap();
    h.tell("exit");
    assert!(h.wait().success());
    let e = reg.wait_idle(LONG_MS).unwrap_err();
    assert_eq!(e.status, PeerGone);
    assert!(
        e.message.contains("holding 1 lease"),
        "only the unread payload was lost: {e}"
    );
}

/// Sends one payload, and when told a second one, then exits cleanly
/// (having read everything the receiver sent).
#[test]
fn helper_sender_then_clean_exit() {
    if role().as_deref() != Some("sender-clean-exit") {
        return;
    }
    let reg = Registry::new(inherited_channel(), RegistryOptions::default()).unwrap();
    let send = |i: u64| {
        let a = reg.alloc(1000, LONG_MS).unwrap();
        fill_payload(&a, 1000, i);
        reg.send(&a, 1000, LONG_MS).unwrap();
    };
    send(0);
    say("SENT 1");
    assert_eq!(hear().as_deref(), Some("more"));
    send(1);
    reg.poll().unwrap();
    drop(reg);
    std::process::exit(0);
}

#[test]
fn a_release_that_finds_the_sender_gone_loses_no_queued_reference() {
    let _s = serial();
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_sender_then_clean_exit",
        "sender-clean-exit",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    h.expect("SENT 1");
    let first = att.recv(LONG_MS).unwrap();
    h.tell("more");
    assert!(h.wait().success());
    // The RELEASE meets a closed socket (EPIPE); the second reference was
    // queued before the sender went and is still handed out.
    att.release(&first).unwrap();
    let v = att
        .recv(LONG_MS)
        .unwrap_or_else(|e| panic!("the second payload was lost: {e}"));
    // SAFETY: the view holds its bytes until released.
    unsafe { verify(v.data, v.len, 1) }.unwrap();
    att.release(&v).unwrap();
    assert_eq!(status(att.recv(LONG_MS)), PeerGone);
}

#[test]
fn recv_says_peer_gone_only_once_everything_was_taken() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    // A reference into a region that never came, then the sender goes.
    ext(&peer, Ext::Ref(r(9, 1, 0, 10)));
    attach(&peer, 1, 1, 4096);
    ext(&peer, Ext::Ref(r(1, 1, 0, 10)));
    drop(peer);
    assert_eq!(status(att.recv(LONG_MS)), UnknownMap);
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    assert_eq!(status(att.recv(LONG_MS)), PeerGone);
}

// ---------------------------------------------------------------------------
// 2. The receiver never allocates memory on the sender's behalf.

fn allocated_bytes(fd: &OwnedFd) -> u64 {
    // SAFETY: stat is plain old data; fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid and writable.
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    st.st_blocks as u64 * 512
}

#[test]
fn sparse_region_is_not_populated_by_the_receiver() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    const LEN: u64 = 256 << 20;
    let sparse = memfd(LEN, SHRINK_GROW);
    send_raw(
        peer.as_raw_fd(),
        &attach_body(1, 1, LEN),
        &[sparse.as_raw_fd()],
    )
    .unwrap();
    att.poll().unwrap();
    assert_eq!(att.stats().mappings, 1);
    assert!(
        allocated_bytes(&sparse) < 1 << 20,
        "mapping the region allocated {} bytes of the sender's sparse file",
        allocated_bytes(&sparse)
    );
    drop((att, peer));
    // An honest sender's region (every page allocated and touched) is
    // mapped in ahead of use: reading all of it takes (nearly) no page
    // faults on the receiver's side.
    const HONEST: u64 = 4 << 20;
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(
        b,
        AttachmentsOptions {
            stats_faults: true,
            ..Default::default()
        },
    )
    .unwrap();
    let al = reg.alloc(HONEST, 0).unwrap();
    reg.send(&al, HONEST, LONG_MS).unwrap();
    let v = att.recv(LONG_MS).unwrap();
    let before = att.stats().minor_faults;
    let mut sum = 0u64;
    for off in (0..HONEST).step_by(4096) {
        // SAFETY: the view holds HONEST readable bytes until released.
        sum += unsafe { v.data.add(off as usize).read_volatile() } as u64;
    }
    let faults = att.stats().minor_faults - before;
    assert_eq!(sum, 0);
    assert!(faults < 64, "{faults} faults reading 1024 pages");
    att.release(&v).unwrap();
}

// ---------------------------------------------------------------------------
// 3. What a sender can make the receiver queue, and the time a call takes.

#[test]
fn retire_of_a_region_that_is_not_mapped_poisons() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    ext(&peer, retire(1, 1));
    assert_eq!(status(att.poll()), Protocol);
    assert_eq!(status(att.recv(0)), Protocol);

    // A second RETIRE of a region that is retiring already (held by a view).
    let (att, peer) = receiver(AttachmentsOptions::default());
    attach(&peer, 1, 1, 4096);
    att.poll().unwrap();
    let v = att.resolve(&r(1, 1, 0, 10), 0).unwrap();
    ext(&peer, retire(1, 1));
    att.poll().unwrap();
    ext(&peer, retire(1, 1));
    assert_eq!(status(att.poll()), Protocol);
    // The view stays readable.
    // SAFETY: the view holds 10 readable bytes until released.
    assert_eq!(unsafe { v.data.read_volatile() }, 0);
}

#[test]
fn retire_of_a_rejected_region_is_acknowledged() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    send_closing(&peer, &attach_body(1, 1, 4096), vec![memfd(4096, 0)]);
    assert_eq!(status(att.poll()), NotSealed);
    ext(&peer, retire(1, 1));
    att.poll().unwrap();
    let (ack, _) = recv_raw(peer.as_raw_fd(), 5000).expect("RETIRE_ACK");
    assert!(matches!(
        Ext::decode(&ack).unwrap(),
        Ext::RetireAck {
            map_id: 1,
            map_generation: 1,
            ..
        }
    ));
    // Acknowledged once: again is a protocol error.
    ext(&peer, retire(1, 1));
    assert_eq!(status(att.poll()), Protocol);
}

#[test]
fn a_non_blocking_call_reads_a_bounded_number_of_messages() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    let big: libc::c_int = 64 << 20;
    // SAFETY: the option value is a live c_int of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            peer.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    if rc != 0 {
        eprintln!("skipped: SO_SNDBUFFORCE needs CAP_NET_ADMIN");
        return;
    }
    let hello = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_SENDER,
        features: 0,
    }
    .encode();
    let mut sent = 0;
    while sent < 5000 && send_raw(peer.as_raw_fd(), &hello, &[]).is_ok() {
        sent += 1;
    }
    assert!(sent > 2048, "only {sent} messages fit in the socket");
    att.poll().unwrap();
    let first = att.stats().messages_received;
    assert!(first <= 1024, "one poll read {first} messages");
    while att.stats().messages_received < sent {
        att.poll().unwrap();
    }
    assert_eq!(status(att.recv(0)), Timeout);
}

// ---------------------------------------------------------------------------
// 4, 5. Options the receiver's owner may set on its socket.

fn set_int_opt(fd: i32, opt: libc::c_int) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: the option value is a live c_int of the stated size.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        ) == 0
    }
}

#[test]
fn passcred_on_the_receivers_socket_does_not_truncate_attach() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    assert!(set_int_opt(att.fd(), libc::SO_PASSCRED));
    let base = fd_count();
    attach(&peer, 1, 1, 4096);
    att.poll().unwrap();
    ext(&peer, Ext::Ref(r(1, 1, 0, 100)));
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
    assert_eq!(att.stats().mappings, 1);
    assert_eq!(fd_count(), base);
}

/// `SO_PASSPIDFD` (Linux 6.5).
const SO_PASSPIDFD: libc::c_int = 76;

#[test]
fn passpidfd_fds_are_closed() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    if !set_int_opt(att.fd(), SO_PASSPIDFD) || !set_int_opt(reg.fd(), SO_PASSPIDFD) {
        eprintln!("skipped: this kernel has no SO_PASSPIDFD");
        return;
    }
    for i in 0..20 {
        let al = reg.alloc(100, LONG_MS).unwrap();
        fill_payload(&al, 100, i);
        reg.send(&al, 100, LONG_MS).unwrap();
        let v = att.recv(LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    reg.wait_idle(LONG_MS).unwrap();
    // The channel, two eventfds, one region.
    assert_eq!(fd_count(), before + 2 + 2 + 1);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

// ---------------------------------------------------------------------------
// 6. Generations only go up, on the receiver too.

#[test]
fn an_older_generation_is_never_attached_again() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    attach(&peer, 1, 5, 4096);
    att.poll().unwrap();
    ext(&peer, retire(1, 5));
    att.poll().unwrap();
    recv_raw(peer.as_raw_fd(), 5000).expect("RETIRE_ACK");
    let base = fd_count();
    // An older generation, then the retired one again: refused.
    for generation in [3, 5] {
        attach(&peer, 1, generation, 4096);
        assert_eq!(status(att.poll()), StaleGeneration);
        assert_eq!(
            status(att.resolve(&r(1, generation, 0, 1), 0)),
            StaleGeneration
        );
    }
    assert_eq!(fd_count(), base);
    assert_eq!(att.stats().mappings, 0);
    // A newer one maps.
    attach(&peer, 1, 6, 4096);
    att.poll().unwrap();
    let v = att.resolve(&r(1, 6, 0, 1), 0).unwrap();
    att.release(&v).unwrap();
    assert_eq!(status(att.resolve(&r(1, 5, 0, 1), 0)), StaleGeneration);
}

#[test]
fn a_wrapped_generation_is_refused() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    attach(&peer, 2, u32::MAX, 4096);
    att.poll().unwrap();
    ext(&peer, retire(2, u32::MAX));
    att.poll().unwrap();
    attach(&peer, 2, 1, 4096);
    assert_eq!(status(att.poll()), StaleGeneration);
    assert_eq!(status(att.resolve(&r(2, 1, 0, 1), 0)), StaleGeneration);
}

// ---------------------------------------------------------------------------
// 7. A local fd shortage is not the peer's fault.

fn rlimit_nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_rlimit_nofile(lim: libc::rlimit) {
    // SAFETY: `lim` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

#[test]
fn no_free_fd_here_is_resource_exhausted_not_protocol() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    // Made before the table is full; it rides in flight below.
    let fd = memfd(4096, SHRINK_GROW);
    let saved = rlimit_nofile();
    // Fill this process's fd table up to a lowered limit.
    let top = fd_list().into_iter().max().unwrap() as u64 + 1;
    set_rlimit_nofile(libc::rlimit {
        rlim_cur: top + 8,
        rlim_max: saved.rlim_max,
    });
    let mut filler = Vec::new();
    loop {
        // SAFETY: dup takes no pointers; a new fd is ours.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            break;
        }
        // SAFETY: just returned to us.
        filler.push(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
    // The fd in flight cannot be received here.
    send_raw(
        peer.as_raw_fd(),
        &attach_body(1, 1, 4096),
        &[fd.as_raw_fd()],
    )
    .unwrap();
    let e = att.poll().unwrap_err();
    drop((filler, fd));
    set_rlimit_nofile(saved);
    assert_eq!(e.status, ResourceExhausted, "{e}");
    assert!(e.message.contains("1/1"), "{e}");
    // The channel survives: that region's references fail with the same
    // status, and the next region maps.
    ext(&peer, Ext::Ref(r(1, 1, 0, 10)));
    assert_eq!(status(att.recv(LONG_MS)), ResourceExhausted);
    attach(&peer, 2, 1, 4096);
    ext(&peer, Ext::Ref(r(2, 1, 0, 10)));
    let v = att.recv(LONG_MS).unwrap();
    att.release(&v).unwrap();
}

// ---------------------------------------------------------------------------
// 8. Zero-length references, and what a receiver's user can do with views.

#[test]
fn zero_length_reference_is_rejected() {
    let _s = serial();
    let (att, peer) = receiver(AttachmentsOptions::default());
    attach(&peer, 1, 1, 4096);
    att.poll().unwrap();
    assert_eq!(status(att.resolve(&r(1, 1, 0, 0), 0)), ZeroLength);
    ext(&peer, Ext::Ref(r(1, 1, 64, 0)));
    assert_eq!(status(att.recv(LONG_MS)), ZeroLength);
    assert_eq!(att.stats().live_views, 0);
}

#[test]
fn nothing_done_with_views_poisons_the_sender() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    fill_payload(&al, 100, 7);
    let real = reg.publish(&al, 100).unwrap();
    // The receiver's user resolves references the sender never published:
    // a shorter one, one inside the payload, one past it.
    for made_up in [
        r(real.map_id, real.map_generation, real.map_offset, 50),
        r(real.map_id, real.map_generation, real.map_offset + 8, 10),
        r(real.map_id, real.map_generation, real.map_offset + 4096, 10),
    ] {
        let v = att.resolve(&made_up, LONG_MS).unwrap();
        att.release(&v).unwrap();
    }
    reg.poll().unwrap();
    assert_eq!(reg.stats().ignored_releases, 3);
    let v = att.resolve(&real, 0).unwrap();
    // SAFETY: the view holds 100 readable bytes until released.
    unsafe { verify(v.data, v.len, 7) }.unwrap();
    att.release(&v).unwrap();
    reg.wait_idle(LONG_MS).unwrap();
}

// ---------------------------------------------------------------------------
// 9. A call reports the fate of its own reference.

#[test]
fn resolve_reports_its_own_reference_not_another_regions_rejection() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let mut opts = AttachmentsOptions::default();
    opts.limits.max_mappings = 1;
    let att = Attachments::new(b, opts).unwrap();
    // Two payloads of 40 KiB: two regions, whose ATTACHes both arrive
    // before the first resolve reads the channel.
    let refs: Vec<Ref> = (0..2)
        .map(|i| {
            let al = reg.alloc(40 << 10, 0).unwrap();
            fill_payload(&al, 40 << 10, i);
            reg.publish(&al, 40 << 10).unwrap()
        })
        .collect();
    assert_ne!(refs[0].map_id, refs[1].map_id);
    let v = att.resolve(&refs[0], LONG_MS).unwrap();
    // SAFETY: the view holds its bytes until released.
    unsafe { verify(v.data, v.len, 0) }.unwrap();
    // The second region was rejected, and is remembered as rejected: its
    // reference fails at once (no wait for an ATTACH that came already),
    // and the message names the region.
    let t = std::time::Instant::now();
    let e = att.resolve(&refs[1], LONG_MS).unwrap_err();
    assert_eq!(e.status, TooManyMappings, "{e}");
    assert!(t.elapsed().as_secs() < 10, "resolve waited for its ATTACH");
    let name = format!("{}/{}", refs[1].map_id, refs[1].map_generation);
    assert!(e.message.contains(&name), "{e}");
    att.release(&v).unwrap();
}

// ---------------------------------------------------------------------------
// 11. References over the caller's own transport after the sender died.

/// Publishes one payload, prints its reference, and exits.
#[test]
fn helper_publish_then_exit() {
    if role().as_deref() != Some("publisher") {
        return;
    }
    let reg = Registry::new(inherited_channel(), RegistryOptions::default()).unwrap();
    let al = reg.alloc(500, LONG_MS).unwrap();
    fill_payload(&al, 500, 42);
    let r = reg.publish(&al, 500).unwrap();
    say(&format!(
        "REF {} {} {} {}",
        r.map_id, r.map_generation, r.map_offset, r.payload_len
    ));
    std::process::exit(0);
}

fn published_by_a_dying_sender(resolve_first: bool) -> (Attachments, Ref) {
    let (mine, theirs) = Channel::pair().unwrap();
    let mut h = Helper::spawn(
        "helper_publish_then_exit",
        "publisher",
        Some(theirs.raw()),
        &[],
    );
    drop(theirs);
    let att = Attachments::new(mine, AttachmentsOptions::default()).unwrap();
    if resolve_first {
        // A handle used for references from the caller's own transport.
        assert_eq!(status(att.resolve(&r(999, 1, 0, 1), 0)), UnknownMap);
    }
    let f: Vec<u64> = h
        .expect("REF")
        .split(' ')
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(h.wait().success());
    // The death is seen before the reference arrives over "our transport".
    assert!(att.peer_is_gone());
    (att, r(f[0] as u32, f[1] as u32, f[2], f[3] as u32))
}

#[test]
fn out_of_band_reference_resolves_after_the_sender_died() {
    let _s = serial();
    let (att, reference) = published_by_a_dying_sender(true);
    let v = att.resolve(&reference, 0).unwrap();
    // SAFETY: the view holds 500 readable bytes until released.
    unsafe { verify(v.data, v.len, 42) }.unwrap();
    att.release(&v).unwrap();
    // Kept until the handle is freed.
    assert_eq!(att.stats().mappings, 1);

    // A handle that never used resolve unmapped the unneeded region at the
    // death; the reference then fails with PEER_GONE, not UNKNOWN_MAP.
    let (att, reference) = published_by_a_dying_sender(false);
    assert_eq!(att.stats().mappings, 0);
    assert_eq!(status(att.resolve(&reference, 0)), PeerGone);
}

// ---------------------------------------------------------------------------
// A receiver sends nothing but its HELLO to a sender that has not said
// HELLO: a peer that never does (a vox sender, without compatibility mode
// set) never reads, and releases must not fill its socket and block.

#[test]
fn no_release_goes_to_a_sender_that_never_said_hello() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(
        b,
        AttachmentsOptions {
            limits: voxshm::Limits {
                accept_unsealed: true,
                ..AttachmentsOptions::default().limits
            },
            ..Default::default()
        },
    )
    .unwrap();
    let peer = a.into_fd();
    recv_raw(peer.as_raw_fd(), 5000).expect("the receiver's HELLO");
    // A vox sender: one unsealed region, references over its own
    // transport, never a HELLO, never a read.
    send_closing(&peer, &attach_body(1, 1, 1 << 20), vec![memfd(1 << 20, 0)]);
    let start = std::time::Instant::now();
    for i in 0..10_000u64 {
        let r = Ref {
            map_id: 1,
            map_generation: 1,
            map_offset: (i % 1000) * 64,
            payload_len: 64,
        };
        let v = att.resolve(&r, 1000).unwrap();
        att.release(&v).unwrap();
    }
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "releases waited for a sender that never reads: {:?}",
        start.elapsed()
    );
    let st = att.stats();
    assert_eq!(st.messages_sent, 1, "only the HELLO: {st:?}");
    assert!(st.pending_releases <= 4096, "{st:?}");
    assert!(
        recv_raw(peer.as_raw_fd(), 0).is_none(),
        "nothing after HELLO"
    );
}

/// A voxshm sender answers the receiver's HELLO as soon as it reads it, so
/// releases of references that travel over the caller's own transport
/// (publish, resolve) flow back although the sender never sends one.
#[test]
fn releases_flow_back_to_a_sender_that_only_publishes() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 64 << 10,
            budget: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    // Ten times the budget, one payload at a time.
    for _ in 0..160 {
        let al = reg.alloc(4000, 2000).unwrap();
        let r = reg.publish(&al, 4000).unwrap();
        let v = att.resolve(&r, 2000).unwrap();
        att.release(&v).unwrap();
    }
    assert_eq!(reg.stats().payloads_published, 160);
}

/// A receiver whose caller only resolves and releases (references over its
/// own transport, regions already known) still learns of the sender's
/// HELLO, and the releases that waited for it go out: none is dropped for
/// a voxshm sender that answered.
#[test]
fn releases_waiting_for_the_senders_hello_go_out_when_it_comes() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 1 << 20,
            budget: 1 << 20,
            ring: false,
            ..Default::default()
        },
    )
    .unwrap();
    // Published before the receiver exists (fewer than the socket holds:
    // the sender reads nothing while the receiver releases them).
    const N: usize = 100;
    let refs: Vec<Ref> = (0..N)
        .map(|_| {
            let al = reg.alloc(64, 0).unwrap();
            reg.publish(&al, 64).unwrap()
        })
        .collect();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    // The first resolve reads the ATTACH, before the sender's HELLO.
    let v0 = att.resolve(&refs[0], 1000).unwrap();
    // The sender reads the receiver's HELLO and answers it.
    assert_eq!(status(reg.wait_released(&refs[0], 0)), Timeout);
    att.release(&v0).unwrap();
    for r in &refs[1..] {
        let v = att.resolve(r, 1000).unwrap();
        att.release(&v).unwrap();
    }
    assert_eq!(att.stats().releases_sent, N as u64, "{:?}", att.stats());
    reg.wait_released(&refs[N - 1], 5000).unwrap();
    reg.wait_idle(5000).unwrap();
    assert_eq!(reg.stats().live_leases, 0);
}

/// A sender whose answer to the receiver's HELLO met a full socket tries
/// again while it waits (the receiver sends nothing before the answer).
#[test]
fn a_senders_hello_answer_that_met_a_full_socket_is_sent_later() {
    let _s = serial();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 4096,
            budget: 64 << 20,
            keep_warm: 64 << 20,
            send_timeout_ms: 50,
            ring: false,
            ..Default::default()
        },
    )
    .unwrap();
    let al = reg.alloc(100, 0).unwrap();
    let r0 = reg.publish(&al, 100).unwrap();
    // Regions until the socket is full of their ATTACHes.
    while reg.alloc(4000, 0).is_ok() {}
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    reg.poll().unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(|| reg.wait_released(&r0, 10_000));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let v = att.resolve(&r0, 1000).unwrap();
        att.release(&v).unwrap();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !waiter.is_finished() && std::time::Instant::now() < end {
            let _ = att.poll();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        waiter.join().unwrap().unwrap();
    });
}
