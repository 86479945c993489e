//! The waiting machinery shared by the registry and the attachments.
//!
//! A handle's state lives behind one mutex. A thread that must wait for
//! the peer releases the mutex and sleeps in `poll()` on the channel fd and
//! a wake-up eventfd; only one thread polls at a time, the others sleep on a
//! condition variable. Whoever changes the state under the mutex calls
//! `notify`, which wakes both kinds of sleeper, so no wake-up is lost and no
//! thread ever sleeps in a loop. Both wake-ups cost a system call, so
//! `notify` makes them only when a thread is actually asleep: a handle used
//! from one thread pays nothing for it.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::sys::{self, Deadline, Wake};

pub struct Hub<T> {
    m: Mutex<Slot<T>>,
    cv: Condvar,
    wake: Wake,
    /// The socket polled while waiting. It is owned by the link inside the
    /// state, which lives exactly as long as this hub.
    fd: RawFd,
    /// The caller asked for the fd (to poll it): non-blocking calls that
    /// find nothing then ask the peer for a wake-up.
    watched: AtomicBool,
}

/// A blocking call's spinning before it sleeps: starts at the first ask,
/// lasts the configured time.
#[derive(Default)]
pub struct Spin {
    until: Option<Instant>,
}

impl Spin {
    /// Whether to spin now (rather than sleep).
    pub fn spinning(&mut self, spin_us: u32, deadline: Deadline) -> bool {
        if spin_us == 0 || deadline.expired() {
            return false;
        }
        let now = Instant::now();
        let until = *self
            .until
            .get_or_insert_with(|| now + Duration::from_micros(u64::from(spin_us)));
        now < until
    }

    /// A short pause between two looks at the ring.
    pub fn pause(&self) {
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
}

/// What a handle needs before it can take a socket: its checked options
/// and its wake-up fd. Everything that can fail is done by the time one
/// exists, so `start` (which takes the socket) cannot fail, and a caller
/// that was lent the socket keeps it when preparing fails.
pub struct Unstarted<O> {
    pub opts: O,
    pub wake: Wake,
}

impl<O> Unstarted<O> {
    pub fn new(opts: O) -> Result<Unstarted<O>> {
        Ok(Unstarted {
            opts,
            wake: Wake::new()?,
        })
    }
}

pub struct Slot<T> {
    polling: bool,
    /// Threads asleep on the condition variable.
    sleepers: usize,
    pub s: T,
}

pub type Guard<'a, T> = MutexGuard<'a, Slot<T>>;

impl<T> Hub<T> {
    /// A hub over `state`, which owns the socket `fd`.
    pub fn new(wake: Wake, fd: RawFd, state: T) -> Hub<T> {
        Hub {
            m: Mutex::new(Slot {
                polling: false,
                sleepers: 0,
                s: state,
            }),
            cv: Condvar::new(),
            wake,
            fd,
            watched: AtomicBool::new(false),
        }
    }

    /// The socket's fd, for the caller's own poll/epoll loop. From now on
    /// non-blocking calls that find nothing arrange to make it readable
    /// when something comes.
    pub fn fd(&self) -> RawFd {
        self.watched.store(true, Ordering::Relaxed);
        self.fd
    }

    /// Whether the caller asked for the fd.
    pub fn fd_watched(&self) -> bool {
        self.watched.load(Ordering::Relaxed)
    }

    /// Locks the state. A panic in another thread does not make the state
    /// unusable: every mutation keeps it consistent before it can panic.
    pub fn lock(&self) -> Guard<'_, T> {
        self.m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every thread waiting on this handle so it re-checks the state.
    pub fn notify(&self, g: &Guard<'_, T>) {
        // `sleepers` only changes under the mutex, which the caller holds,
        // and a sleeper counts itself before the condition variable
        // releases the mutex: no sleeper can be missed.
        if g.sleepers > 0 {
            self.cv.notify_all();
        }
        if g.polling {
            self.wake.signal();
        }
    }

    /// Sleeps until the channel is readable, the state changes, or the
    /// deadline passes. The caller re-checks its condition afterwards.
    pub fn wait<'a>(&'a self, g: Guard<'a, T>, deadline: Deadline) -> Result<Guard<'a, T>> {
        self.wait_on(g, deadline, true)
    }

    /// `wait`; `socket` false: a readable socket does not end the sleep
    /// (the caller would not read it now).
    pub fn wait_on<'a>(
        &'a self,
        mut g: Guard<'a, T>,
        deadline: Deadline,
        socket: bool,
    ) -> Result<Guard<'a, T>> {
        if deadline.expired() {
            return Ok(g);
        }
        if !g.polling {
            g.polling = true;
            drop(g);
            let mut p = [
                // A negative fd is ignored by poll.
                sys::pollfd(if socket { self.fd } else { -1 }, libc::POLLIN),
                sys::pollfd(self.wake.raw(), libc::POLLIN),
            ];
            let r = sys::poll(&mut p, deadline);
            if p[1].revents != 0 {
                self.wake.clear();
            }
            let mut g = self.lock();
            g.polling = false;
            // Another waiter may take over polling.
            if g.sleepers > 0 {
                self.cv.notify_all();
            }
            r?;
            Ok(g)
        } else {
            g.sleepers += 1;
            let mut g = match deadline.remaining() {
                None => self.cv.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    self.cv
                        .wait_timeout(g, d)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            g.sleepers -= 1;
            Ok(g)
        }
    }
}
