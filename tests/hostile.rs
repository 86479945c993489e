//! A hostile or broken peer: crafted messages on the other end of a
//! socketpair, sent with a raw `sendmsg`. Each case checks the specific
//! status and that every fd that arrived was closed (the process's fd count
//! is exactly what it was). The tests of this binary run one at a time so
//! the counts are exact.

mod common;

use std::os::fd::{AsRawFd, OwnedFd};

use common::*;
use voxshm::Status::{self, *};
use voxshm::wire::{self, Ext};
use voxshm::*;

// ---------------------------------------------------------------------------
// Receiver side.

/// Attachments over one end of a socketpair; the other end is returned raw,
/// with the receiver's HELLO already read from it.
fn receiver(opts: AttachmentsOptions) -> (Attachments, OwnedFd) {
    let (a, b) = Channel::pair().unwrap();
    let att = Attachments::new(b, opts).unwrap();
    let peer = a.into_fd();
    let (hello, fds) = recv_raw(peer.as_raw_fd(), 5000).expect("HELLO");
    assert!(fds.is_empty());
    assert!(matches!(
        Ext::decode(&hello).unwrap(),
        Ext::Hello {
            role: wire::ROLE_RECEIVER,
            ..
        }
    ));
    (att, peer)
}

fn default_receiver() -> (Attachments, OwnedFd) {
    receiver(AttachmentsOptions::default())
}

/// Sends `body` with `fds` from the raw end, then closes our copies of the
/// fds; only the copies in flight remain.
fn send_closing(peer: &OwnedFd, body: &[u8], fds: Vec<OwnedFd>) {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    assert_eq!(send_raw(peer.as_raw_fd(), body, &raw).unwrap(), body.len());
    drop(fds);
}

fn status<T: std::fmt::Debug>(r: Result<T>) -> Status {
    r.expect_err("expected an error").status
}

/// A sealed memfd and its ATTACH, as a well-behaved sender would send it.
fn good_attach(peer: &OwnedFd, map_id: u32, generation: u32, len: u64) {
    send_closing(
        peer,
        &attach_body(map_id, generation, len),
        vec![memfd(len, SHRINK_GROW)],
    );
}

/// Asserts that the channel is poisoned: every later call fails with
/// VOXSHM_PROTOCOL, and nothing more is read from it.
fn assert_poisoned(att: &Attachments, peer: &OwnedFd) {
    let base = fd_count();
    // A valid ATTACH after the poison is never read (its fd stays in flight
    // in the kernel, not in this process).
    good_attach(peer, 100, 1, 4096);
    assert_eq!(status(att.poll()), Protocol);
    assert_eq!(status(att.recv(0)), Protocol);
    assert_eq!(status(att.recv(100)), Protocol);
    let r = Ref {
        map_id: 100,
        map_generation: 1,
        map_offset: 0,
        payload_len: 1,
    };
    assert_eq!(status(att.resolve(&r, 0)), Protocol);
    assert_eq!(status(att.resolve(&r, 100)), Protocol);
    assert_eq!(att.stats().mappings, 0);
    assert_eq!(fd_count(), base);
}

/// Runs one hostile ATTACH against a fresh receiver: `make` builds the body
/// and fds. Returns the error and checks no fd leaked.
fn hostile_attach(body: Vec<u8>, fds: Vec<OwnedFd>) -> (Attachments, OwnedFd, Status) {
    let (att, peer) = default_receiver();
    let base = fd_count() - fds.len();
    send_closing(&peer, &body, fds);
    assert_eq!(fd_count(), base);
    let s = status(att.poll());
    assert_eq!(fd_count(), base, "an fd that arrived was not closed");
    (att, peer, s)
}

#[test]
fn short_file_is_rejected() {
    let _s = serial();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 8192), vec![memfd(4096, SHRINK_GROW)]);
    assert_eq!(s, FileTooShort);
    // Not poisoned: a good region after it maps.
    good_attach(&peer, 2, 1, 4096);
    att.poll().unwrap();
    let st = att.stats();
    assert_eq!((st.mappings, st.attaches_rejected), (1, 1), "{st:?}");
}

#[test]
fn unsealed_memfd_is_rejected_unless_accepted() {
    let _s = serial();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 4096), vec![memfd(4096, 0)]);
    assert_eq!(s, NotSealed);
    // Only SHRINK, not GROW: still not sealed enough.
    let base = fd_count();
    send_closing(
        &peer,
        &attach_body(2, 1, 4096),
        vec![memfd(4096, libc::F_SEAL_SHRINK)],
    );
    assert_eq!(status(att.poll()), NotSealed);
    assert_eq!(fd_count(), base);
    drop((att, peer));

    let mut opts = AttachmentsOptions::default();
    opts.limits.accept_unsealed = true;
    let (att, peer) = receiver(opts);
    let base = fd_count();
    send_closing(&peer, &attach_body(1, 1, 4096), vec![memfd(4096, 0)]);
    att.poll().unwrap();
    assert_eq!(att.stats().mappings, 1);
    assert_eq!(fd_count(), base, "the fd is closed once mapped");
}

#[test]
fn pipe_is_not_a_regular_file() {
    let _s = serial();
    let mut p = [0; 2];
    // SAFETY: `p` has room for the two fds pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 just returned both fds; nothing else owns them.
    let (r, w) = unsafe {
        use std::os::fd::FromRawFd;
        (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1]))
    };
    let (_att, _peer, s) = hostile_attach(attach_body(1, 1, 4096), vec![r]);
    assert_eq!(s, NotRegularFile);
    drop(w);
}

#[test]
fn socket_is_not_a_regular_file() {
    let _s = serial();
    let (x, y) = Channel::pair().unwrap();
    let (_att, _peer, s) = hostile_attach(attach_body(1, 1, 4096), vec![x.into_fd()]);
    assert_eq!(s, NotRegularFile);
    drop(y);
}

#[test]
fn two_fds_on_one_attach_poison_the_channel() {
    let _s = serial();
    let (att, peer, s) = hostile_attach(
        attach_body(1, 1, 4096),
        vec![memfd(4096, SHRINK_GROW), memfd(4096, SHRINK_GROW)],
    );
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
}

#[test]
fn twenty_fds_on_one_attach_poison_the_channel() {
    let _s = serial();
    let fds: Vec<OwnedFd> = (0..20).map(|_| memfd(4096, SHRINK_GROW)).collect();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 4096), fds);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
}

#[test]
fn more_fds_than_the_control_buffer_holds_truncate_and_poison() {
    let _s = serial();
    // SCM_MAX_FD is 253: the kernel delivers what fits and sets MSG_CTRUNC.
    let fds: Vec<OwnedFd> = (0..250).map(|_| memfd(4096, SHRINK_GROW)).collect();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 4096), fds);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
}

#[test]
fn attach_body_of_15_or_17_bytes_poisons() {
    let _s = serial();
    for n in [15, 17] {
        let mut body = attach_body(1, 1, 4096);
        body.resize(n, 0);
        let (att, peer, s) = hostile_attach(body, vec![memfd(4096, SHRINK_GROW)]);
        assert_eq!(s, Protocol, "{n}-byte body");
        assert_poisoned(&att, &peer);
    }
}

#[test]
fn attach_without_fd_poisons() {
    let _s = serial();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 4096), vec![]);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
}

#[test]
fn fd_on_an_extension_message_poisons() {
    let _s = serial();
    let hello = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_SENDER,
        features: 0,
    }
    .encode();
    let (att, peer, s) = hostile_attach(hello, vec![memfd(4096, SHRINK_GROW)]);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
}

#[test]
fn zero_mapping_length_poisons_the_channel() {
    let _s = serial();
    // Malformed whatever fd rides with it: no region has 0 bytes.
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 0), vec![memfd(4096, SHRINK_GROW)]);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
    let (r, w) = Channel::pair().unwrap();
    let (att, peer, s) = hostile_attach(attach_body(1, 1, 0), vec![r.into_fd()]);
    assert_eq!(s, Protocol);
    assert_poisoned(&att, &peer);
    drop(w);
}

#[test]
fn duplicate_attach_is_rejected() {
    let _s = serial();
    let (att, peer) = default_receiver();
    let base = fd_count();
    good_attach(&peer, 1, 1, 4096);
    att.poll().unwrap();
    // Same map_id, same generation; then same map_id, next generation
    // without a retirement in between.
    for generation in [1, 2] {
        good_attach(&peer, 1, generation, 4096);
        assert_eq!(status(att.poll()), DuplicateAttach);
        assert_eq!(fd_count(), base);
    }
    let st = att.stats();
    assert_eq!((st.mappings, st.attaches_rejected), (1, 2), "{st:?}");
}

fn r(map_id: u32, map_generation: u32, map_offset: u64, payload_len: u32) -> Ref {
    Ref {
        map_id,
        map_generation,
        map_offset,
        payload_len,
    }
}

#[test]
fn references_are_checked_in_order() {
    let _s = serial();
    let (att, peer) = default_receiver();
    good_attach(&peer, 1, 5, 4096);
    att.poll().unwrap();
    let base = fd_count();
    let cases = [
        (r(2, 5, 0, 1), UnknownMap),
        (r(2, 5, u64::MAX, u32::MAX), UnknownMap),
        (r(1, 4, 0, 1), StaleGeneration),
        (r(1, 4, u64::MAX, 2), StaleGeneration),
        (r(1, 5, u64::MAX, 1), RefOverflow),
        (r(1, 5, u64::MAX - 10, 100), RefOverflow),
        (r(1, 5, 4000, 97), OutOfBounds),
        (r(1, 5, 4096, 1), OutOfBounds),
        (r(1, 5, 1 << 40, 1), OutOfBounds),
    ];
    for (reference, want) in cases {
        assert_eq!(status(att.resolve(&reference, 0)), want, "{reference:?}");
    }
    // The edges that do fit.
    for reference in [r(1, 5, 0, 4096), r(1, 5, 4095, 1), r(1, 5, 4000, 96)] {
        let v = att.resolve(&reference, 0).unwrap();
        assert_eq!(v.len, reference.payload_len as u64);
        att.release(&v).unwrap();
    }
    assert_eq!(att.stats().live_views, 0);
    assert_eq!(fd_count(), base);
}

#[test]
fn stale_generation_after_a_map_id_is_reused() {
    let _s = serial();
    let before = fd_count();
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
    let send = |index: u64| {
        let al = reg.alloc(100, 0).unwrap();
        // SAFETY: the allocation holds at least 100 writable bytes.
        unsafe { fill(al.data, 100, index) };
        reg.send(&al, 100, LONG_MS).unwrap();
        al
    };
    let first = send(0);
    assert_eq!((first.map_id, first.map_generation), (1, 1));
    let v = att.recv(LONG_MS).unwrap();
    let old = v.r;
    att.release(&v).unwrap();
    // keep_warm 0: the idle region is retired, acknowledged and closed.
    settle(&reg, &att);
    let s = reg.stats();
    assert_eq!((s.regions, s.regions_retired), (0, 1), "{s:?}");
    assert_eq!(att.stats().mappings, 0);

    let second = send(1);
    assert_eq!((second.map_id, second.map_generation), (1, 2));
    let v = att.recv(LONG_MS).unwrap();
    assert_eq!((v.r.map_id, v.r.map_generation), (1, 2));
    // SAFETY: the view holds 100 readable bytes until released.
    unsafe { verify(v.data, v.len, 1) }.unwrap();
    assert_eq!(status(att.resolve(&old, 0)), StaleGeneration);
    assert_eq!(status(att.resolve(&old, 100)), StaleGeneration);
    // A generation from the future is not attached (yet).
    assert_eq!(status(att.resolve(&r(1, 3, 0, 1), 0)), UnknownMap);
    att.release(&v).unwrap();
    settle(&reg, &att);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

fn limited(
    max_mappings: u32,
    max_mapped_bytes: u64,
    max_single_mapping: u64,
) -> AttachmentsOptions {
    let mut o = AttachmentsOptions::default();
    o.limits.max_mappings = max_mappings;
    o.limits.max_mapped_bytes = max_mapped_bytes;
    o.limits.max_single_mapping = max_single_mapping;
    o
}

/// Sends ATTACHes of `lens` in order; all but the last must map, the last
/// must fail with `want` without leaking its fd or poisoning the channel.
fn limit_case(opts: AttachmentsOptions, lens: &[u64], want: Status) {
    let (att, peer) = receiver(opts);
    let base = fd_count();
    let (last, ok) = lens.split_last().unwrap();
    for (i, &len) in ok.iter().enumerate() {
        good_attach(&peer, i as u32 + 1, 1, len);
        att.poll().unwrap();
    }
    good_attach(&peer, 1000, 1, *last);
    assert_eq!(status(att.poll()), want);
    assert_eq!(fd_count(), base);
    let st = att.stats();
    assert_eq!(st.mappings, ok.len() as u64, "{st:?}");
    assert_eq!(st.mapped_bytes, ok.iter().sum::<u64>(), "{st:?}");
    // Still usable: a reference into a mapped region resolves.
    let v = att.resolve(&r(1, 1, 0, 1), 0).unwrap();
    att.release(&v).unwrap();
}

#[test]
fn too_many_mappings() {
    let _s = serial();
    limit_case(
        limited(2, 1 << 30, 1 << 30),
        &[4096, 4096, 4096],
        TooManyMappings,
    );
}

#[test]
fn mapped_bytes_limit() {
    let _s = serial();
    limit_case(
        limited(100, 3 * 4096, 1 << 30),
        &[4096, 4096, 8192],
        MappedBytesLimit,
    );
}

#[test]
fn mapping_too_large() {
    let _s = serial();
    limit_case(
        limited(100, 1 << 30, 8192),
        &[8192, 8192 + 4096],
        MappingTooLarge,
    );
}

/// One ATTACH of `mapping_length` with a sealed memfd of `file_len` bytes
/// to a receiver with `opts`: it fails with `want`, its fd is closed, and
/// the channel stays usable.
fn attach_case(opts: AttachmentsOptions, file_len: u64, mapping_length: u64, want: Status) {
    let (att, peer) = receiver(opts);
    let base = fd_count();
    send_closing(
        &peer,
        &attach_body(1, 1, mapping_length),
        vec![memfd(file_len, SHRINK_GROW)],
    );
    assert_eq!(status(att.poll()), want);
    assert_eq!(fd_count(), base);
    good_attach(&peer, 2, 1, 4096);
    att.poll().unwrap();
    assert_eq!(att.stats().mappings, 1);
}

#[test]
fn absurd_mapping_lengths() {
    let _s = serial();
    let unlimited = limited(u32::MAX, u64::MAX, u64::MAX);
    // Claims far more than the file holds.
    attach_case(unlimited.clone(), 4096, 1 << 62, FileTooShort);
    attach_case(unlimited.clone(), 4096, u64::MAX, FileTooShort);
    // A sparse file that really is that large: more than an address space
    // can map, even with no limits configured.
    attach_case(unlimited.clone(), 1 << 62, 1 << 62, ResourceExhausted);
    // With the default limits the size check comes first.
    attach_case(
        AttachmentsOptions::default(),
        1 << 62,
        1 << 62,
        MappingTooLarge,
    );
}

#[test]
fn malformed_extension_messages_poison() {
    let _s = serial();
    let good = Ext::Retire {
        map_id: 1,
        map_generation: 1,
        mapping_length: 4096,
    }
    .encode();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = good.clone();
    b[0] = b'X';
    cases.push(("bad magic", b));
    let mut b = good.clone();
    b[4] = 77;
    cases.push(("unknown kind", b));
    cases.push(("short body", good[..good.len() - 1].to_vec()));
    cases.push(("long body", [good.clone(), vec![0]].concat()));
    cases.push(("empty", Vec::new()));
    cases.push(("header only", good[..wire::HEADER_LEN].to_vec()));
    let mut b = good.clone();
    b[5] = 1;
    cases.push(("reserved header byte", b));
    // A receiver-to-sender message sent the wrong way.
    cases.push((
        "RELEASE to the receiver",
        Ext::Release(vec![r(1, 1, 0, 1)]).encode(),
    ));
    cases.push((
        "HELLO from another receiver",
        Ext::Hello {
            version: wire::PROTOCOL_VERSION,
            role: wire::ROLE_RECEIVER,
            features: 0,
        }
        .encode(),
    ));
    for (what, body) in cases {
        let (att, peer, s) = hostile_attach(body, vec![]);
        assert_eq!(s, Protocol, "{what}");
        assert_poisoned(&att, &peer);
    }
    // Another protocol version is its own status, and poisons too.
    let hello = Ext::Hello {
        version: wire::PROTOCOL_VERSION + 1,
        role: wire::ROLE_SENDER,
        features: 0,
    }
    .encode();
    let (att, peer, s) = hostile_attach(hello, vec![]);
    assert_eq!(s, VersionMismatch);
    assert_eq!(status(att.recv(0)), VersionMismatch);
    drop((att, peer));
}

// ---------------------------------------------------------------------------
// Sender side.

/// A registry over one end of a socketpair; the other end is returned raw.
/// The raw end has said HELLO, and one region was allocated (its ATTACH
/// read and its fd closed again); the allocation is returned.
fn sender() -> (Registry, OwnedFd, Allocation) {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: 64 << 10,
            ..Default::default()
        },
    )
    .unwrap();
    let peer = b.into_fd();
    let hello = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_RECEIVER,
        features: 0,
    }
    .encode();
    send_raw(peer.as_raw_fd(), &hello, &[]).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    // The sender answers the HELLO as soon as it has read it.
    let (body, _) = recv_raw(peer.as_raw_fd(), 5000).expect("HELLO");
    let answer = Ext::Hello {
        version: wire::PROTOCOL_VERSION,
        role: wire::ROLE_SENDER,
        features: wire::FEATURE_RING,
    };
    assert_eq!(Ext::decode(&body).unwrap(), answer);
    let (body, fds) = recv_raw(peer.as_raw_fd(), 5000).expect("ATTACH");
    assert_eq!(body, attach_body(1, 1, 64 << 10));
    assert_eq!(fds.len(), 1);
    drop(fds);
    reg.poll().unwrap();
    (reg, peer, al)
}

/// Sends `body` with `fds` to the registry and checks it poisons the
/// channel without leaking an fd.
fn hostile_to_sender(body: Vec<u8>, fds: Vec<OwnedFd>, al_published: bool) {
    let (reg, peer, al) = sender();
    if al_published {
        reg.send(&al, 100, LONG_MS).unwrap();
        let _ = recv_raw(peer.as_raw_fd(), 5000).expect("REF");
    }
    let base = fd_count() - fds.len();
    send_closing(&peer, &body, fds);
    assert_eq!(status(reg.poll()), Protocol);
    assert_eq!(fd_count(), base, "an fd that arrived was not closed");
    // Poisoned: every later call fails the same way.
    assert_eq!(status(reg.poll()), Protocol);
    assert_eq!(status(reg.alloc(10, 0)), Protocol);
    assert_eq!(status(reg.alloc(10, 100)), Protocol);
    if !al_published {
        assert_eq!(status(reg.send(&al, 10, 100)), Protocol);
        assert_eq!(status(reg.publish(&al, 10)), Protocol);
    }
    assert_eq!(status(reg.wait_idle(100)), Protocol);
    assert_eq!(fd_count(), base);
}

#[test]
fn receiver_sending_an_fd_poisons_the_sender() {
    let _s = serial();
    let release = Ext::Release(vec![r(1, 1, 0, 100)]).encode();
    hostile_to_sender(release, vec![memfd(4096, SHRINK_GROW)], true);
    hostile_to_sender(
        attach_body(1, 1, 4096),
        vec![memfd(4096, SHRINK_GROW)],
        false,
    );
}

/// Sends a RELEASE that names no live lease: the registry ignores it (and
/// counts it), stays usable, and still takes the real release afterwards.
fn bogus_release_to_sender(entries: Vec<Ref>, al_published: bool) {
    let (reg, peer, al) = sender();
    if al_published {
        reg.send(&al, 100, LONG_MS).unwrap();
        let _ = recv_raw(peer.as_raw_fd(), 5000).expect("REF");
    }
    let n = entries.len() as u64;
    send_closing(&peer, &Ext::Release(entries).encode(), vec![]);
    reg.poll().unwrap();
    let st = reg.stats();
    assert_eq!(st.ignored_releases, n, "{st:?}");
    assert_eq!(st.live_leases, u64::from(al_published), "{st:?}");
    if al_published {
        let real = Ext::Release(vec![r(1, 1, 0, 100)]).encode();
        send_closing(&peer, &real, vec![]);
        reg.wait_idle(LONG_MS).unwrap();
    } else {
        reg.abort(&al).unwrap();
    }
    let b = reg.alloc(10, 0).unwrap();
    reg.abort(&b).unwrap();
}

#[test]
fn bogus_release_is_ignored_by_the_sender() {
    let _s = serial();
    // Allocated but never published.
    bogus_release_to_sender(vec![r(1, 1, 0, 100)], false);
    // Published, but another length or offset than the lease (what a
    // receiver's user can make by resolving a reference it made up).
    bogus_release_to_sender(vec![r(1, 1, 0, 99)], true);
    bogus_release_to_sender(vec![r(1, 1, 64, 100)], true);
    bogus_release_to_sender(vec![r(1, 1, 0, 0)], true);
    // A region that does not exist, or another generation of one that does.
    bogus_release_to_sender(vec![r(9, 1, 0, 100)], true);
    bogus_release_to_sender(vec![r(1, 2, 0, 100)], true);
    // Released twice in one message: the first ends the lease.
    let (reg, peer, al) = sender();
    reg.send(&al, 100, LONG_MS).unwrap();
    let _ = recv_raw(peer.as_raw_fd(), 5000).expect("REF");
    let twice = Ext::Release(vec![r(1, 1, 0, 100), r(1, 1, 0, 100)]).encode();
    send_closing(&peer, &twice, vec![]);
    reg.wait_idle(LONG_MS).unwrap();
    assert_eq!(reg.stats().ignored_releases, 1);
}

#[test]
fn retire_ack_for_a_region_not_retiring_poisons_the_sender() {
    let _s = serial();
    for (id, generation) in [(1, 1), (2, 1), (1, 0)] {
        let ack = Ext::RetireAck {
            map_id: id,
            map_generation: generation,
            mapping_length: 64 << 10,
        }
        .encode();
        hostile_to_sender(ack, vec![], false);
    }
}

#[test]
fn malformed_messages_poison_the_sender() {
    let _s = serial();
    let mut bad_magic = Ext::Release(vec![r(1, 1, 0, 100)]).encode();
    bad_magic[1] = 0;
    hostile_to_sender(bad_magic, vec![], true);
    hostile_to_sender(vec![0; 16], vec![], true);
    hostile_to_sender(vec![], vec![], true);
    // A sender-to-receiver message sent the wrong way.
    hostile_to_sender(Ext::Ref(r(1, 1, 0, 100)).encode(), vec![], true);
}
