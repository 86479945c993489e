//! What a region looks like to the receiver: sealed so it cannot write,
//! resize or re-seal it; the temp-file fallback; vox compatibility mode;
//! and region creation failing for lack of fds.

mod common;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use common::*;
use voxshm::Status::{self, *};
use voxshm::region::F_SEAL_FUTURE_WRITE;
use voxshm::*;

const REGION: u64 = 64 << 10;

fn status<T: std::fmt::Debug>(r: Result<T>) -> Status {
    r.expect_err("expected an error").status
}

/// A registry over a raw peer end; allocates once and returns the region
/// fd that came with the ATTACH, as the receiver would get it.
fn region_fd(opts: RegistryOptions) -> (Registry, OwnedFd, Allocation, OwnedFd) {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, opts).unwrap();
    let peer = b.into_fd();
    let al = reg.alloc(100, 0).unwrap();
    let (body, mut fds) = recv_raw(peer.as_raw_fd(), 5000).expect("ATTACH");
    assert_eq!(body, attach_body(al.map_id, al.map_generation, REGION));
    assert_eq!(fds.len(), 1);
    (reg, peer, al, fds.pop().unwrap())
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn seals(fd: RawFd) -> i32 {
    // SAFETY: F_GET_SEALS takes no pointer.
    unsafe { libc::fcntl(fd, libc::F_GET_SEALS) }
}

/// mmap of the whole region; the errno on failure.
fn map(fd: RawFd, prot: i32) -> std::result::Result<(), i32> {
    // SAFETY: a fresh mapping chosen by the kernel; unmapped right away.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            REGION as usize,
            prot,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p == libc::MAP_FAILED {
            return Err(errno());
        }
        libc::munmap(p, REGION as usize);
    }
    Ok(())
}

#[test]
fn region_fd_is_sealed_against_the_receiver() {
    let _s = serial();
    let (reg, _peer, al, fd) = region_fd(RegistryOptions {
        region_size: REGION,
        ..Default::default()
    });
    let fd = fd.as_raw_fd();
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL;
    assert_eq!(seals(fd) & want, want, "seals {:#x}", seals(fd));
    // SAFETY: `st` is a valid, writable stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.st_size as u64, REGION);

    // No writable shared mapping, no write(2).
    assert_eq!(
        map(fd, libc::PROT_READ | libc::PROT_WRITE),
        Err(libc::EPERM)
    );
    // SAFETY: writes one byte from a live buffer.
    assert_eq!(unsafe { libc::pwrite(fd, b"x".as_ptr().cast(), 1, 0) }, -1);
    assert_eq!(errno(), libc::EPERM);
    // No more seals (F_SEAL_WRITE would break the sender's own mapping).
    // SAFETY: F_ADD_SEALS takes an int.
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_WRITE) },
        -1
    );
    assert_eq!(errno(), libc::EPERM);
    // No shrinking, no growing.
    for len in [0, REGION / 2, REGION * 2] {
        // SAFETY: ftruncate takes no pointers.
        assert_eq!(unsafe { libc::ftruncate(fd, len as i64) }, -1, "to {len}");
        assert_eq!(errno(), libc::EPERM);
    }
    // SAFETY: fallocate takes no pointers.
    assert_eq!(unsafe { libc::fallocate(fd, 0, REGION as i64, 4096) }, -1);
    assert_eq!(errno(), libc::EPERM);

    // A read-only mapping works, cannot be made writable, and shows what
    // the sender writes through its own mapping.
    // SAFETY: a fresh read-only mapping chosen by the kernel, unmapped at
    // the end; it is only read through raw pointers.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            REGION as usize,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        assert_eq!(
            libc::mprotect(p, REGION as usize, libc::PROT_READ | libc::PROT_WRITE),
            -1
        );
        assert_eq!(errno(), libc::EACCES);
        fill(al.data, 100, 9);
        reg.publish(&al, 100).unwrap();
        let at = p.cast::<u8>().add(al.map_offset as usize);
        verify(at, 100, 9).unwrap();
        libc::munmap(p, REGION as usize);
    }
}

#[test]
fn tempfile_fallback_works_with_accept_unsealed() {
    let _s = serial();
    let opts = RegistryOptions {
        region_size: REGION,
        keep_warm: REGION,
        force_tempfile: true,
        ..Default::default()
    };
    // What the receiver gets: an unlinked regular file without seals.
    let (_reg, _peer, _al, fd) = region_fd(opts.clone());
    // SAFETY: `st` is a valid, writable stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
    assert_eq!(st.st_nlink, 0, "the temp file is unlinked");
    assert!(seals(fd.as_raw_fd()) <= 0);
    drop((_reg, _peer, _al, fd));

    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, opts.clone()).unwrap();
    let mut ao = AttachmentsOptions::default();
    ao.limits.accept_unsealed = true;
    let att = Attachments::new(b, ao).unwrap();
    let mut rng = Prng::new(3);
    for i in 0..200 {
        let len = rng.range(1, 3 * REGION);
        let al = reg.alloc(len, LONG_MS).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(al.data, len, i) };
        reg.send(&al, len, LONG_MS).unwrap();
        let v = att.recv(LONG_MS).unwrap();
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i) }.unwrap();
        att.release(&v).unwrap();
    }
    settle(&reg, &att);
    let s = reg.stats();
    assert_eq!(s.live_leases, 0);
    assert!(s.regions_retired > 0, "{s:?}");
    assert_eq!(fd_count(), before + 4 + s.regions as usize);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

#[test]
fn tempfile_fallback_is_refused_without_accept_unsealed() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: REGION,
            force_tempfile: true,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let al = reg.alloc(100, 0).unwrap();
    reg.send(&al, 100, LONG_MS).unwrap();
    let base = fd_count();
    // The reference into the rejected region fails with the rejection, and
    // is released back to the sender.
    assert_eq!(status(att.recv(LONG_MS)), NotSealed);
    assert_eq!(fd_count(), base, "the rejected fd is closed");
    assert_eq!(status(att.recv(0)), Timeout);
    settle(&reg, &att);
    assert_eq!(reg.stats().live_leases, 0);
    assert_eq!(att.stats().mappings, 0);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

#[test]
fn vox_compat_regions_lack_future_write() {
    let _s = serial();
    let (reg, _peer, al, fd) = region_fd(RegistryOptions {
        region_size: REGION,
        vox_compat: true,
        ..Default::default()
    });
    let fd = fd.as_raw_fd();
    let s = seals(fd);
    let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    assert_eq!(s & want, want, "seals {s:#x}");
    assert_eq!(s & F_SEAL_FUTURE_WRITE, 0, "seals {s:#x}");
    // A vox receiver maps regions read-write: that must work.
    assert_eq!(map(fd, libc::PROT_READ | libc::PROT_WRITE), Ok(()));
    // References travel over the caller's transport, never the channel.
    assert_eq!(status(reg.send(&al, 100, 0)), Unsupported);
    assert_eq!(status(reg.send(&al, 100, 1000)), Unsupported);
    reg.publish(&al, 100).unwrap();
}

#[test]
fn vox_compat_publish_frame_resolve() {
    let _s = serial();
    let before = fd_count();
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(
        a,
        RegistryOptions {
            region_size: REGION,
            vox_compat: true,
            ..Default::default()
        },
    )
    .unwrap();
    let att = Attachments::new(
        b,
        AttachmentsOptions {
            vox_compat: true,
            ..Default::default()
        },
    )
    .unwrap();
    let mut rng = Prng::new(5);
    let mut sizes = Vec::new();
    let mut frames = Vec::new();
    for i in 0..40 {
        let len = rng.range(1, REGION);
        let al = reg.alloc(len, 0).unwrap();
        // SAFETY: the allocation holds at least `len` writable bytes.
        unsafe { fill(al.data, len, i) };
        let r = reg.publish(&al, len).unwrap();
        frames.push(r.encode_frame());
        sizes.push(len);
    }
    for (i, frame) in frames.iter().enumerate() {
        let r = Ref::decode_frame(frame).unwrap();
        let v = att.resolve(&r, LONG_MS).unwrap();
        assert_eq!(v.len, sizes[i]);
        // SAFETY: the view holds `len` readable bytes until released.
        unsafe { verify(v.data, v.len, i as u64) }.unwrap();
        att.release(&v).unwrap();
    }
    // A vox receiver says nothing: no HELLO, no RELEASE.
    reg.poll().unwrap();
    let st = att.stats();
    assert_eq!((st.messages_sent, st.releases_sent), (0, 0), "{st:?}");
    assert_eq!(reg.stats().messages_received, 0);
    assert_eq!(reg.stats().live_leases, 40);
    drop((reg, att));
    assert_eq!(fd_count(), before);
}

/// Lowers RLIMIT_NOFILE so that no fd is left, then allocates.
#[test]
fn helper_out_of_fds() {
    if role().as_deref() != Some("out-of-fds") {
        return;
    }
    let (a, _b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let open = fd_list();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    // SAFETY: `old` is a valid, writable rlimit.
    let mut old: libc::rlimit = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit {
        rlim_cur: lowest_free as libc::rlim_t,
        rlim_max: old.rlim_max,
    };
    // SAFETY: `low` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);

    let e = reg.alloc(100, 0).unwrap_err();
    assert_eq!(e.status, ResourceExhausted, "{e}");
    assert!(e.message.contains("memfd_create"), "{e}");
    let e = reg.alloc(100, 1000).unwrap_err();
    assert_eq!(e.status, ResourceExhausted, "{e}");
    assert_eq!(reg.stats().regions, 0);

    // SAFETY: `old` is the valid rlimit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    let al = reg.alloc(100, 0).unwrap();
    assert_eq!((al.map_id, al.map_generation), (1, 1));
    say("RECOVERED");
}

#[test]
fn region_creation_failure_is_an_error_not_a_crash() {
    let _s = serial();
    let mut h = Helper::spawn("helper_out_of_fds", "out-of-fds", None, &[]);
    h.expect("RECOVERED");
    h.wait_success();
}
