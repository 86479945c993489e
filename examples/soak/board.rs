//! The board: one page of shared counters that every process of a run
//! updates and the driver reads, so nothing a process counted is lost when
//! it is killed, and the driver sees progress as it happens.
//!
//! The driver creates it as a memfd; each child inherits the fd (its number
//! is passed with `--board-fd`), maps it and closes the fd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Payloads whose every byte a receiver checked.
pub const VERIFIED_PAYLOADS: usize = 0;
/// Bytes of those payloads.
pub const VERIFIED_BYTES: usize = 1;
/// Payloads a sender sent (some are lost with a killed receiver).
pub const SENT_PAYLOADS: usize = 2;
/// What the current victim was doing: one of the `STATE_*` values.
pub const VICTIM_STATE: usize = 3;
/// Failures any process reported before exiting.
pub const FAILURES: usize = 4;
const SLOTS: usize = 5;

/// The victim is starting or connecting.
pub const STATE_STARTING: u64 = 0;
/// Connected; the session header has not gone through yet.
pub const STATE_HANDSHAKE: u64 = 1;
/// Streaming, holding no view (receiver) or unsent allocation (sender).
pub const STATE_BETWEEN: u64 = 2;
/// Streaming, holding views (receiver) or unsent allocations (sender).
pub const STATE_HOLDING: u64 = 3;
pub const STATE_NAMES: [&str; 4] = ["starting", "handshake", "between payloads", "holding"];

const LEN: usize = 4096;

pub struct Board {
    slots: &'static [AtomicU64; SLOTS],
}

fn map(fd: RawFd) -> io::Result<Board> {
    // SAFETY: maps LEN bytes of a file that is at least LEN long; the
    // result is checked before use.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping is page-aligned, LEN bytes long (room for SLOTS
    // u64s), never unmapped (it lives as long as the process), and only
    // ever accessed through atomics, by this and the other processes.
    let slots = unsafe { &*p.cast::<[AtomicU64; SLOTS]>() };
    Ok(Board { slots })
}

impl Board {
    /// A new, zeroed board and the fd the children inherit.
    pub fn create() -> io::Result<(Board, OwnedFd)> {
        // SAFETY: the name is a valid NUL-terminated string.
        let fd = unsafe { libc::memfd_create(c"voxshm-soak-board".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: memfd_create just returned this fd; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate takes no pointers.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), LEN as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((map(fd.as_raw_fd())?, fd))
    }

    /// Maps the board the driver passed as `fd`, and closes `fd`.
    pub fn open(fd: RawFd) -> io::Result<Board> {
        // SAFETY: the driver passed this fd for us to take; nothing else in
        // this process uses it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        map(fd.as_raw_fd())
    }

    pub fn get(&self, slot: usize) -> u64 {
        self.slots[slot].load(Ordering::Relaxed)
    }

    pub fn set(&self, slot: usize, v: u64) {
        self.slots[slot].store(v, Ordering::Relaxed)
    }

    pub fn add(&self, slot: usize, n: u64) {
        self.slots[slot].fetch_add(n, Ordering::Relaxed);
    }
}
