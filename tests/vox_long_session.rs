//! A vox sender never retires a region: it makes a new one whenever no old
//! one has room, counts map_ids up from 0 and keeps generation 0. A
//! vox-compatible receiver keeps its mappings within its limits by
//! unmapping what no view holds (used-up regions first, then the least
//! recently used), so a session of any length runs. The sender here is a
//! process that speaks vox's side of the socket by hand (ATTACH only, over
//! a datagram pair); references reach the receiver over the helper's
//! stdout, as over a transport of the caller's own.

mod common;

use std::os::fd::AsRawFd;

use common::*;
use voxshm::Status::TooManyMappings;
use voxshm::{Attachments, AttachmentsOptions, Channel, Kind, Ref};

const REGIONS: u32 = 10_000;
const REGION: u64 = 16 << 10;

fn vox_ref(map_id: u32, offset: u64, len: u32) -> Ref {
    Ref {
        map_id,
        map_generation: 0,
        map_offset: offset,
        payload_len: len,
    }
}

/// Makes `$VOXSHM_TEST_N` regions of 16 KiB, one at a time when asked:
/// each filled with the pattern of its number, sent as an ATTACH, closed
/// on this side; says MADE and waits for the next request.
#[test]
fn helper_vox_sender() {
    if role().as_deref() != Some("vox-sender") {
        return;
    }
    let chan = inherited_channel();
    let sock = chan.raw();
    let mut map_id = 0u32;
    while let Some(line) = hear() {
        if line != "make" {
            break;
        }
        let fd = memfd(REGION, 0);
        // SAFETY: a fresh shared mapping of the memfd, REGION bytes long.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                REGION as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: the mapping holds REGION writable bytes.
        unsafe { fill(p.cast(), REGION, u64::from(map_id)) };
        // SAFETY: unmaps exactly the mapping made above.
        unsafe { libc::munmap(p, REGION as usize) };
        send_raw(sock, &attach_body(map_id, 0, REGION), &[fd.as_raw_fd()]).unwrap();
        say(&format!("MADE {map_id}"));
        map_id += 1;
    }
}

#[test]
fn vox_receiver_runs_a_session_of_ten_thousand_regions() {
    let _s = serial();
    let before = fd_count();
    let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
    let mut h = Helper::spawn("helper_vox_sender", "vox-sender", Some(theirs.raw()), &[]);
    drop(theirs);
    let opts = AttachmentsOptions {
        vox_compat: true,
        ..Default::default()
    };
    let max = opts.limits.max_mappings;
    let att = Attachments::new(mine, opts).unwrap();
    // One payload of region 0 stays held for the whole session: its region
    // is never unmapped.
    h.tell("make");
    assert_eq!(h.expect("MADE"), "0");
    let held = att.resolve(&vox_ref(0, 0, REGION as u32), 5000).unwrap();
    for id in 1..REGIONS {
        h.tell("make");
        assert_eq!(h.expect("MADE"), id.to_string());
        // The whole region, as a vox payload of its size is; and, now and
        // then, a small one into a recent region again.
        let v = att.resolve(&vox_ref(id, 0, REGION as u32), 5000).unwrap();
        // SAFETY: the view holds REGION readable bytes until released.
        unsafe { verify(v.data, v.len, u64::from(id)) }.unwrap();
        att.release(&v).unwrap();
        if id % 97 == 0 {
            let back = id - 5;
            let v = att.resolve(&vox_ref(back, 64, 64), 5000).unwrap();
            att.release(&v).unwrap();
        }
        let st = att.stats();
        assert!(st.mappings <= u64::from(max), "{st:?}");
    }
    let st = att.stats();
    assert_eq!(st.regions_evicted, u64::from(REGIONS - max), "{st:?}");
    assert_eq!(st.mapped_bytes, u64::from(max) * REGION, "{st:?}");
    assert_eq!((st.messages_sent, st.live_views), (0, 1), "{st:?}");
    // The held payload is intact; an evicted region says why it failed.
    // SAFETY: the held view is alive.
    unsafe { verify(held.data, held.len, 0) }.unwrap();
    let e = att.resolve(&vox_ref(1, 0, 64), 0).unwrap_err();
    assert_eq!(e.status, TooManyMappings, "{e}");
    assert!(e.message.contains("unmapped to make room"), "{e}");
    // The newest regions are still there.
    let v = att.resolve(&vox_ref(REGIONS - 1, 0, 64), 0).unwrap();
    att.release(&v).unwrap();
    att.release(&held).unwrap();
    h.tell("bye");
    h.wait_success();
    drop(att);
    assert_eq!(fd_count(), before, "the receiver closes each region's fd");
}

/// When every mapping is held, nothing can be unmapped: the new region is
/// refused, as without vox compatibility.
#[test]
fn vox_receiver_never_unmaps_a_held_region() {
    let _s = serial();
    let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
    let mut h = Helper::spawn("helper_vox_sender", "vox-sender", Some(theirs.raw()), &[]);
    drop(theirs);
    let mut opts = AttachmentsOptions {
        vox_compat: true,
        ..Default::default()
    };
    opts.limits.max_mappings = 4;
    let att = Attachments::new(mine, opts).unwrap();
    let mut held = Vec::new();
    for id in 0..4u32 {
        h.tell("make");
        h.expect("MADE");
        held.push(att.resolve(&vox_ref(id, 0, 64), 5000).unwrap());
    }
    h.tell("make");
    h.expect("MADE");
    let e = att.resolve(&vox_ref(4, 0, 64), 5000).unwrap_err();
    assert_eq!(e.status, TooManyMappings, "{e}");
    for v in &held {
        // SAFETY: every held view is alive and its region mapped.
        unsafe { verify(v.data, 64, u64::from(v.r.map_id)) }.unwrap();
        att.release(v).unwrap();
    }
    // With the views released, the next region takes a mapping's place.
    h.tell("make");
    h.expect("MADE");
    let v = att.resolve(&vox_ref(5, 0, 64), 5000).unwrap();
    att.release(&v).unwrap();
    assert_eq!(att.stats().regions_evicted, 1);
    h.tell("bye");
    h.wait_success();
}

/// A vox sender uses a new map_id for every region, for ever: past the
/// 65,536 distinct map_ids a receiver remembers, a vox-compatible one
/// forgets the oldest evicted ones (a reference into one is then simply
/// unknown) instead of failing the session.
#[test]
fn vox_receiver_outlives_the_map_id_limit() {
    let _s = serial();
    let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
    let mut opts = AttachmentsOptions {
        vox_compat: true,
        ..Default::default()
    };
    opts.limits.max_mappings = 8;
    let att = Attachments::new(mine, opts).unwrap();
    // The limit of map_ids remembered (MAX_KNOWN_MAP_IDS), and then some.
    let total = (1u32 << 16) + 100;
    for id in 0..total {
        let fd = memfd(4096, 0);
        send_raw(theirs.raw(), &attach_body(id, 0, 4096), &[fd.as_raw_fd()]).unwrap();
        drop(fd);
        let v = att.resolve(&vox_ref(id, 0, 4096), 5000).unwrap();
        att.release(&v).unwrap();
    }
    let st = att.stats();
    assert_eq!(st.regions_evicted, u64::from(total - 8), "{st:?}");
    assert_eq!(st.mappings, 8, "{st:?}");
}

/// Room is made only for a region that will be accepted: an ATTACH that is
/// refused (here: its fd is not a regular file, or the file is shorter
/// than it says) unmaps nothing.
#[test]
fn vox_receiver_unmaps_nothing_for_a_refused_region() {
    let _s = serial();
    let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
    let mut opts = AttachmentsOptions {
        vox_compat: true,
        ..Default::default()
    };
    opts.limits.max_mappings = 2;
    let att = Attachments::new(mine, opts).unwrap();
    for id in 0..2u32 {
        let fd = memfd(4096, 0);
        send_raw(theirs.raw(), &attach_body(id, 0, 4096), &[fd.as_raw_fd()]).unwrap();
        let v = att.resolve(&vox_ref(id, 0, 4096), 5000).unwrap();
        att.release(&v).unwrap();
    }
    let mut pipe = [0; 2];
    // SAFETY: pipe writes two fds into the array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    send_raw(theirs.raw(), &attach_body(2, 0, 4096), &[pipe[0]]).unwrap();
    let short = memfd(100, 0);
    send_raw(theirs.raw(), &attach_body(3, 0, 4096), &[short.as_raw_fd()]).unwrap();
    // SAFETY: closing the pipe fds this test made.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    let _ = att.poll();
    let _ = att.poll();
    let st = att.stats();
    assert_eq!((st.mappings, st.regions_evicted), (2, 0), "{st:?}");
    assert_eq!(st.attaches_rejected, 2, "{st:?}");
    for id in 0..2u32 {
        let v = att.resolve(&vox_ref(id, 0, 64), 0).unwrap();
        att.release(&v).unwrap();
    }
}

/// Room is made only if it can be made: a region that cannot fit next to
/// the held mappings however many free ones go is refused, and the free
/// ones stay.
#[test]
fn vox_receiver_unmaps_nothing_when_the_region_cannot_fit_anyway() {
    let _s = serial();
    let (mine, theirs) = Channel::pair_of(Kind::Dgram).unwrap();
    let mut opts = AttachmentsOptions {
        vox_compat: true,
        ..Default::default()
    };
    opts.limits.max_mapped_bytes = 8 << 20;
    let att = Attachments::new(mine, opts).unwrap();
    let attach = |id: u32, len: u64| {
        let fd = memfd(len, 0);
        send_raw(theirs.raw(), &attach_body(id, 0, len), &[fd.as_raw_fd()]).unwrap();
    };
    // One 6 MiB region held by a view, two 1 MiB regions free.
    attach(0, 6 << 20);
    attach(1, 1 << 20);
    attach(2, 1 << 20);
    let held = att.resolve(&vox_ref(0, 0, 8), 5000).unwrap();
    let _ = att.poll();
    assert_eq!(att.stats().mappings, 3);
    // 4 MiB can never fit next to the held 6 MiB.
    attach(3, 4 << 20);
    assert_eq!(
        att.poll().unwrap_err().status,
        voxshm::Status::MappedBytesLimit
    );
    let st = att.stats();
    assert_eq!((st.mappings, st.regions_evicted), (3, 0), "{st:?}");
    let v = att.resolve(&vox_ref(1, 0, 8), 0).unwrap();
    att.release(&v).unwrap();
    att.release(&held).unwrap();
}
