//! Listeners, and who may connect: a listening socket on a filesystem path
//! or an abstract name, the policy that decides which peers it hands out
//! (and which listeners a connecting side talks to), and the credentials
//! of the process at the other end of a channel.

use std::ffi::CString;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tracing::{debug, info, warn};

use crate::channel::{Channel, new_socket, sockaddr};
use crate::error::{Error, Result, Status};
use crate::sys::{self, Deadline};

/// Who is at the other end of a connected socket (`SO_PEERCRED`): the
/// process that connected, or that created the pair or the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The credentials of the peer of the connected socket `fd`.
pub fn peer_credentials(fd: RawFd) -> Result<PeerCredentials> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the out-pointer is a live ucred and `len` is its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::last_os("getsockopt(SO_PEERCRED)"));
    }
    Ok(PeerCredentials {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// Which peers a listener accepts, or a connecting side talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Allow {
    /// Peers whose effective uid is this process's, or root (the default).
    #[default]
    SameUser,
    /// Any local process that can reach the socket.
    Anyone,
    /// Exactly this uid and/or gid (None: any); root gets no exception.
    Only { uid: Option<u32>, gid: Option<u32> },
}

impl Allow {
    /// Whether a peer with these credentials is allowed.
    pub fn permits(&self, c: &PeerCredentials) -> bool {
        match *self {
            Allow::SameUser => {
                // SAFETY: geteuid cannot fail and takes no pointers.
                let me = unsafe { libc::geteuid() };
                c.uid == me || c.uid == 0
            }
            Allow::Anyone => true,
            Allow::Only { uid, gid } => {
                uid.is_none_or(|u| u == c.uid) && gid.is_none_or(|g| g == c.gid)
            }
        }
    }

    pub(crate) fn check(&self, c: &PeerCredentials, who: &str) -> Result<()> {
        if self.permits(c) {
            return Ok(());
        }
        Err(Error::new(
            Status::PeerNotAllowed,
            format!(
                "{who} (pid {}, uid {}, gid {}) is not allowed: {}",
                c.pid,
                c.uid,
                c.gid,
                match *self {
                    Allow::SameUser => "only this process's user or root is".to_string(),
                    Allow::Anyone => "anyone is".to_string(),
                    Allow::Only { uid, gid } => format!(
                        "only uid {} and gid {} are",
                        uid.map_or("any".into(), |u| u.to_string()),
                        gid.map_or("any".into(), |g| g.to_string())
                    ),
                }
            ),
        ))
    }
}

/// How a listener is set up.
#[derive(Clone, Copy, Debug)]
pub struct ListenerOptions {
    /// Which peers `accept` hands out; the others are closed before a byte
    /// is exchanged.
    pub allow: Allow,
    /// Permission bits of a filesystem-path socket (connecting needs write
    /// permission on it).
    pub mode: u32,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            allow: Allow::SameUser,
            mode: 0o600,
        }
    }
}

/// A listening `SOCK_SEQPACKET` socket on a filesystem path or an abstract
/// name (`@name`), so two unrelated processes can meet.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: Option<CString>,
    allow: Allow,
}

/// Binds `fd` to `addr`; `Ok(false)` when the address is in use.
fn try_bind(fd: &OwnedFd, addr: &libc::sockaddr_un, len: libc::socklen_t) -> Result<bool> {
    // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
    if unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (addr as *const libc::sockaddr_un).cast(),
            len,
        )
    } == 0
    {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EADDRINUSE) {
        return Ok(false);
    }
    Err(Error::os("bind", err))
}

/// True when nobody listens on the socket file at `path` any more (its
/// owner died without removing it): a connection is refused.
fn is_stale_socket_file(path: &str) -> Result<bool> {
    let c = CString::new(path).unwrap_or_default();
    // SAFETY: stat is plain old data; lstat fills it from a valid path.
    let mut st: libc::stat = unsafe { mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable.
    if unsafe { libc::lstat(c.as_ptr(), &mut st) } != 0 {
        return Ok(false);
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(Error::new(
            Status::AddressInUse,
            format!("{path} exists and is not a socket: not replaced"),
        ));
    }
    match Channel::connect_any(path, 1000) {
        // A live listener: the probe is closed at once (voxshm's own
        // `accept` skips connections that hung up before they were taken).
        Ok(_) => Ok(false),
        // ECONNREFUSED: a socket file nobody listens on.
        Err(e) => Ok(e.status == Status::NoListener),
    }
}

impl Listener {
    /// Binds and listens with the default options: only peers running as
    /// this process's user (or root) are accepted, and a filesystem path
    /// gets mode 0600.
    pub fn bind(path: &str) -> Result<Listener> {
        Self::bind_with(path, ListenerOptions::default())
    }

    /// Binds and listens. A filesystem path left behind by a listener that
    /// died (nobody accepts on it) is replaced; a live listener's name or
    /// path is refused with `VOXSHM_ADDRESS_IN_USE`. The path is removed
    /// again when the listener is dropped.
    pub fn bind_with(path: &str, opts: ListenerOptions) -> Result<Listener> {
        if opts.mode & !0o777 != 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("listener mode {:o} has bits beyond 0777", opts.mode),
            ));
        }
        let (addr, len) = sockaddr(path)?;
        // Non-blocking, so `accept` can wait with poll() and a deadline.
        let fd = new_socket(libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK)?;
        let abstract_name = path.starts_with('@');
        if !abstract_name {
            // The socket file takes the socket inode's mode (less the
            // umask) when it is bound: no moment with wider permissions.
            // SAFETY: fchmod takes no pointers.
            if unsafe { libc::fchmod(fd.as_raw_fd(), opts.mode as libc::mode_t) } != 0 {
                return Err(Error::last_os("fchmod (listener socket)"));
            }
        }
        let mut bound = try_bind(&fd, &addr, len)?;
        if !bound && !abstract_name && is_stale_socket_file(path)? {
            info!(path, "replacing a stale socket file (its listener is gone)");
            let c = CString::new(path).unwrap_or_default();
            // SAFETY: `c` is a valid NUL-terminated path.
            unsafe { libc::unlink(c.as_ptr()) };
            bound = try_bind(&fd, &addr, len)?;
        }
        if !bound {
            return Err(Error::new(
                Status::AddressInUse,
                format!("{path} is held by a live listener"),
            ));
        }
        // SAFETY: listen takes no pointers.
        if unsafe { libc::listen(fd.as_raw_fd(), 16) } != 0 {
            return Err(Error::last_os("listen"));
        }
        let path = if abstract_name {
            None
        } else {
            CString::new(path).ok()
        };
        Ok(Listener {
            fd,
            path,
            allow: opts.allow,
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Accepts one allowed connection, waiting up to `deadline`. A peer the
    /// policy does not allow is closed before anything is exchanged (and
    /// logged), as is one that hung up before it was taken; the wait goes on.
    pub fn accept(&self, deadline: Deadline) -> Result<Channel> {
        loop {
            // SAFETY: NULL address pointers are allowed by accept4.
            let fd = unsafe {
                libc::accept4(
                    self.raw(),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if fd >= 0 {
                // SAFETY: accept4 just returned this fd; nothing else owns it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                let chan = Channel::seqpacket(fd);
                let creds = chan.peer_credentials()?;
                if let Err(e) = self.allow.check(&creds, "a connecting process") {
                    warn!(reason = %e.message, "listener: connection refused");
                    continue;
                }
                if chan.hung_up_silently() {
                    debug!("listener: skipped a connection that closed before it was accepted");
                    continue;
                }
                return Ok(chan);
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR | libc::ECONNABORTED) => continue,
                Some(libc::EAGAIN) => {
                    if deadline.expired() {
                        return Err(Error::new(
                            Status::Timeout,
                            "no connection arrived before the timeout",
                        ));
                    }
                    let mut p = [sys::pollfd(self.raw(), libc::POLLIN)];
                    sys::poll(&mut p, deadline)?;
                }
                _ => return Err(Error::os("accept4", err)),
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            // SAFETY: `p` is a valid NUL-terminated path.
            unsafe { libc::unlink(p.as_ptr()) };
        }
    }
}
