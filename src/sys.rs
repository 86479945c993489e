//! Thin, checked wrappers over the system calls the core needs.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// When a wait must end. Built from a millisecond timeout where 0 means
/// "do not wait" and a negative value means "wait forever".
/// A timeout of 0 reads no clock at all.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(When);

#[derive(Clone, Copy, Debug)]
enum When {
    Never,
    Now,
    At(Instant),
}

impl Deadline {
    pub fn after_ms(ms: i64) -> Deadline {
        Deadline(match ms {
            ..0 => When::Never,
            0 => When::Now,
            _ => When::At(Instant::now() + Duration::from_millis(ms as u64)),
        })
    }

    pub fn now() -> Deadline {
        Deadline(When::Now)
    }

    pub fn expired(&self) -> bool {
        match self.0 {
            When::Never => false,
            When::Now => true,
            When::At(t) => Instant::now() >= t,
        }
    }

    /// This deadline, or `ms` from now if that comes first.
    pub fn at_most_ms(&self, ms: u64) -> Deadline {
        let soon = Instant::now() + Duration::from_millis(ms);
        match self.instant() {
            Some(t) if t <= soon => *self,
            _ => Deadline(When::At(soon)),
        }
    }

    fn instant(&self) -> Option<Instant> {
        match self.0 {
            When::Never => None,
            When::Now => Some(Instant::now()),
            When::At(t) => Some(t),
        }
    }

    /// Remaining time as a `poll()` timeout: -1 for forever, else
    /// milliseconds rounded up so a wait never ends early.
    pub fn poll_ms(&self) -> i32 {
        match self.instant() {
            None => -1,
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000);
                ms.min(i32::MAX as u128) as i32
            }
        }
    }

    pub fn remaining(&self) -> Option<Duration> {
        self.instant()
            .map(|t| t.saturating_duration_since(Instant::now()))
    }
}

/// A deadline that reads the clock only when first asked for: the fast
/// path of a call with a timeout (`alloc` with free space, a `send` with
/// room in the ring) never needs it.
#[derive(Clone, Copy, Debug)]
pub struct LazyDeadline {
    ms: i64,
    at: Option<Deadline>,
}

impl LazyDeadline {
    pub fn after_ms(ms: i64) -> LazyDeadline {
        LazyDeadline { ms, at: None }
    }

    /// The deadline, counted from the first call.
    pub fn get(&mut self) -> Deadline {
        *self.at.get_or_insert_with(|| Deadline::after_ms(self.ms))
    }
}

/// `poll()` on a set of fds, retrying on EINTR with the remaining time.
/// Returns the revents of each entry.
pub fn poll(fds: &mut [libc::pollfd], deadline: Deadline) -> Result<usize> {
    loop {
        for p in fds.iter_mut() {
            p.revents = 0;
        }
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd and
        // its length is passed alongside the pointer.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                deadline.poll_ms(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::os("poll", err));
        }
        if deadline.expired() {
            return Ok(0);
        }
    }
}

pub fn pollfd(fd: RawFd, events: i16) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A wake-up fd: one thread can sleep in `poll()` on it while another
/// signals it.
#[derive(Debug)]
pub struct Wake {
    fd: OwnedFd,
}

impl Wake {
    pub fn new() -> Result<Wake> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::last_os("eventfd"));
        }
        // SAFETY: eventfd just returned this fd and nothing else owns it.
        Ok(Wake {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN)
        // already means "signalled", so the result can be ignored.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN means it was
        // already clear.
        unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Number of fds open in this process (entries of /proc/self/fd).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count().saturating_sub(1)) // the directory's own fd
        .unwrap_or(0)
}

/// Minor page faults this process has taken (`getrusage`).
pub fn minor_faults() -> u64 {
    // SAFETY: rusage is plain old data; zeroed is a valid value and
    // getrusage fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0;
    }
    ru.ru_minflt as u64
}

/// `fstat` an fd.
pub fn fstat(fd: RawFd) -> Result<libc::stat> {
    // SAFETY: stat is plain old data; zeroed is valid and fstat fills it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid and writable; a bad fd makes fstat fail, not UB.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(Error::last_os("fstat"));
    }
    Ok(st)
}

/// The seals on an fd, or 0 if the file does not support sealing.
pub fn get_seals(fd: RawFd) -> i32 {
    // SAFETY: F_GET_SEALS takes no pointer argument.
    let s = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    s.max(0)
}

/// Page size of this machine.
pub fn page_size() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

pub fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

/// True if this process can open one more fd right now: duplicates `fd`
/// and closes the copy again. False on `EMFILE`/`ENFILE`.
pub fn fd_available(fd: RawFd) -> bool {
    // SAFETY: F_DUPFD_CLOEXEC takes an int argument and returns a new fd
    // that nothing else owns.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        let e = io::Error::last_os_error().raw_os_error();
        return !matches!(e, Some(libc::EMFILE | libc::ENFILE));
    }
    // SAFETY: `dup` was just returned to us; closing it ends its only use.
    drop(unsafe { OwnedFd::from_raw_fd(dup) });
    true
}

/// An epoll instance over sockets, itself pollable: readable while any of
/// them is (a handle with many channels exposes it as its one fd).
pub struct Epoll {
    fd: OwnedFd,
}

impl Epoll {
    pub fn new() -> Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(Error::last_os("epoll_create1"));
        }
        // SAFETY: epoll_create1 just returned this fd and nothing else owns it.
        Ok(Epoll {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Watches `fd` for reading (and hang-up, which epoll always reports).
    pub fn add(&self, fd: RawFd) -> Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: a valid epoll fd and a live epoll_event.
        if unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
            return Err(Error::last_os("epoll_ctl"));
        }
        Ok(())
    }

    /// Stops watching `fd` (closing it would too).
    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: a valid epoll fd and a live epoll_event; failure (fd not
        // watched) changes nothing.
        unsafe { libc::epoll_ctl(self.raw(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }
}
