//! The control channel: a connected `AF_UNIX` socket that carries ATTACH
//! messages with their fds, and voxshm's extension messages.
//!
//! Every send is a single `sendmsg` with `MSG_NOSIGNAL | MSG_DONTWAIT`: on a
//! datagram or seqpacket socket it either queues the whole message with its
//! fd or nothing, so a full socket buffer never loses an fd or a message;
//! the caller decides how to wait. Every receive uses `MSG_CMSG_CLOEXEC`,
//! walks every control message and takes ownership of every fd that
//! arrived, so dropping a rejected message closes them all.

use std::ffi::CString;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tracing::{debug, info, warn};

use crate::error::{Error, Result, Status};
use crate::sys::{self, Deadline};

/// Room for the control data of one received message, in 8-byte words:
/// up to 8 fds, credentials (`SO_PASSCRED`), a pidfd (`SO_PASSPIDFD`) and a
/// security label (`SO_PASSSEC`) set on the socket by its owner, so none of
/// them truncates an ATTACH.
const CONTROL_WORDS: usize = 48;

/// `SCM_PIDFD` (Linux 6.5): a control message carrying one pidfd.
const SCM_PIDFD: libc::c_int = 0x04;

/// Socket type of a channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `SOCK_SEQPACKET`: message boundaries and EOF on peer death.
    SeqPacket,
    /// `SOCK_DGRAM` (what a vox peer creates): no EOF on peer death.
    Dgram,
}

/// A connected `AF_UNIX` socket owned by this channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
    kind: Kind,
}

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

    fn check(&self, c: &PeerCredentials, who: &str) -> Result<()> {
        if self.permits(c) {
            return Ok(());
        }
        Err(Error::new(
            Status::VOXSHM_PEER_NOT_ALLOWED,
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

/// What one non-blocking receive produced.
#[derive(Debug)]
pub enum Recv {
    /// A whole message, with every fd that came with it.
    Msg(Message),
    /// Nothing queued.
    Empty,
    /// The peer closed its end.
    Eof,
}

#[derive(Debug)]
pub struct Message {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
    /// The kernel truncated the control data (`MSG_CTRUNC`); every fd
    /// that did arrive has been closed.
    pub ctrunc: bool,
    /// ... because this process had no free fd to receive them in, not
    /// because the peer sent too many.
    pub fd_shortage: bool,
    /// The kernel truncated the body (`MSG_TRUNC`).
    pub trunc: bool,
}

fn new_socket(ty: i32) -> Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last_os("socket(AF_UNIX)"));
    }
    // SAFETY: socket just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How long `Channel::connect` waits for a listener whose queue of pending
/// connections is full.
pub const CONNECT_TIMEOUT_MS: i64 = 10_000;

/// Sets `SO_SNDTIMEO` (0: none).
fn set_send_timeout(fd: &OwnedFd, us: u64) -> Result<()> {
    let tv = libc::timeval {
        tv_sec: (us / 1_000_000).min(i64::MAX as u64) as libc::time_t,
        tv_usec: (us % 1_000_000) as libc::suseconds_t,
    };
    // SAFETY: the option value is a live timeval of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(Error::last_os("setsockopt(SO_SNDTIMEO)"));
    }
    Ok(())
}

/// Builds a `sockaddr_un` for a filesystem path, or for a Linux abstract
/// name when the path starts with `@`.
fn sockaddr(path: &str) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain old data; all-zero is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, abstract_name) = match path.strip_prefix('@') {
        Some(name) => (name.as_bytes(), true),
        None => (path.as_bytes(), false),
    };
    let start = usize::from(abstract_name);
    if bytes.is_empty() || bytes.contains(&0) || start + bytes.len() >= addr.sun_path.len() {
        return Err(Error::new(
            Status::VOXSHM_INVALID_ARGUMENT,
            format!(
                "socket path {path:?} is empty, contains NUL, or is longer than {} bytes",
                addr.sun_path.len() - 1 - start
            ),
        ));
    }
    for (i, b) in bytes.iter().enumerate() {
        addr.sun_path[start + i] = *b as libc::c_char;
    }
    let base = mem::offset_of!(libc::sockaddr_un, sun_path);
    // Abstract names are not NUL-terminated: the length says where they end.
    let len = base + start + bytes.len() + usize::from(!abstract_name);
    Ok((addr, len as libc::socklen_t))
}

impl Channel {
    /// A connected `SOCK_SEQPACKET` pair.
    pub fn pair() -> Result<(Channel, Channel)> {
        Self::pair_of(Kind::SeqPacket)
    }

    /// A connected pair of the given kind.
    pub fn pair_of(kind: Kind) -> Result<(Channel, Channel)> {
        let ty = match kind {
            Kind::SeqPacket => libc::SOCK_SEQPACKET,
            Kind::Dgram => libc::SOCK_DGRAM,
        };
        let mut fds = [-1; 2];
        // SAFETY: `fds` has room for the two fds socketpair writes.
        if unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }
            != 0
        {
            return Err(Error::last_os("socketpair"));
        }
        // SAFETY: socketpair just returned both fds; nothing else owns them.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok((Channel { fd: a, kind }, Channel { fd: b, kind }))
    }

    /// Takes ownership of a connected `AF_UNIX` socket of type
    /// `SOCK_SEQPACKET` or `SOCK_DGRAM`. Anything else is rejected (and the
    /// fd is closed, since the channel owns it).
    pub fn from_fd(fd: OwnedFd) -> Result<Channel> {
        let mut domain: libc::c_int = 0;
        let mut ty: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the out-pointers are valid c_ints and `len` matches them.
        let ok = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_DOMAIN,
                (&mut domain as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
                && libc::getsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_TYPE,
                    (&mut ty as *mut libc::c_int).cast(),
                    &mut len,
                ) == 0
        };
        if !ok || domain != libc::AF_UNIX {
            return Err(Error::new(
                Status::VOXSHM_INVALID_ARGUMENT,
                format!("fd {} is not an AF_UNIX socket", fd.as_raw_fd()),
            ));
        }
        let kind = match ty {
            libc::SOCK_SEQPACKET => Kind::SeqPacket,
            libc::SOCK_DGRAM => Kind::Dgram,
            _ => {
                return Err(Error::new(
                    Status::VOXSHM_INVALID_ARGUMENT,
                    format!(
                        "fd {} is an AF_UNIX socket of type {ty}; SOCK_SEQPACKET or SOCK_DGRAM is required",
                        fd.as_raw_fd()
                    ),
                ));
            }
        };
        Ok(Channel { fd, kind })
    }

    /// Connects to a listener at `path` (`@name` for an abstract name)
    /// whose owner runs as this process's user or root.
    pub fn connect(path: &str) -> Result<Channel> {
        Self::connect_allowing(path, Allow::SameUser)
    }

    /// Connects to a listener at `path` and checks, with the credentials
    /// the listener's socket was created with, that `allow` permits its
    /// owner (a process that took the name first cannot pose as the
    /// producer).
    pub fn connect_allowing(path: &str, allow: Allow) -> Result<Channel> {
        Self::connect_with(path, allow, CONNECT_TIMEOUT_MS)
    }

    /// `connect_allowing`, waiting up to `timeout_ms` (0: not at all;
    /// negative: forever) for a listener whose queue of pending connections
    /// is full.
    pub fn connect_with(path: &str, allow: Allow, timeout_ms: i64) -> Result<Channel> {
        let c = Self::connect_any(path, timeout_ms)?;
        allow.check(
            &peer_credentials(c.raw())?,
            &format!("the listener at {path}"),
        )?;
        Ok(c)
    }

    fn connect_any(path: &str, timeout_ms: i64) -> Result<Channel> {
        let (addr, len) = sockaddr(path)?;
        let fd = new_socket(libc::SOCK_SEQPACKET)?;
        // A connect to a listener whose backlog is full sleeps until it
        // accepts; SO_SNDTIMEO bounds that sleep (0 would mean forever,
        // so "do not wait" is one microsecond).
        let bounded = timeout_ms >= 0;
        if bounded {
            let us = (timeout_ms as u64).saturating_mul(1000).max(1);
            set_send_timeout(&fd, us)?;
        }
        // SAFETY: `addr` is a valid sockaddr_un of `len` bytes.
        if unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_un).cast(),
                len,
            )
        } != 0
        {
            let err = std::io::Error::last_os_error();
            if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS)) {
                return Err(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    format!(
                        "connect({path}): the listener did not take the connection within {timeout_ms} ms (its queue of pending connections is full)"
                    ),
                ));
            }
            return Err(Error::os(&format!("connect({path})"), err));
        }
        if bounded {
            set_send_timeout(&fd, 0)?;
        }
        Ok(Channel {
            fd,
            kind: Kind::SeqPacket,
        })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The credentials of the process at the other end.
    pub fn peer_credentials(&self) -> Result<PeerCredentials> {
        peer_credentials(self.raw())
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Gives the socket back to the caller.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Tries to queue one message, with at most one fd, without blocking.
    /// `Ok(false)`: the socket buffer is full and nothing was queued.
    pub fn try_send(&self, bytes: &[u8], fd: Option<RawFd>) -> Result<bool> {
        let mut iov = libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        };
        // Space for one fd, aligned for cmsghdr.
        let mut cbuf = [0u64; 8];
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if let Some(fd) = fd {
            // SAFETY: CMSG_SPACE is a pure computation.
            let space = unsafe { libc::CMSG_SPACE(mem::size_of::<RawFd>() as u32) } as usize;
            debug_assert!(space <= mem::size_of_val(&cbuf));
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            // SAFETY: msg_control points at `space` writable, aligned bytes,
            // so the first header and its data fit.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(&msg);
                (*c).cmsg_level = libc::SOL_SOCKET;
                (*c).cmsg_type = libc::SCM_RIGHTS;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<RawFd>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
            }
        }
        loop {
            // SAFETY: `msg` points at live iovec and control buffers.
            let n =
                unsafe { libc::sendmsg(self.raw(), &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
            if n >= 0 {
                debug_assert_eq!(n as usize, bytes.len());
                return Ok(true);
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(false),
                _ => return Err(Error::os("sendmsg", err)),
            }
        }
    }

    /// Sends one message, waiting up to `deadline` for buffer space. While
    /// it waits, `drain` is called whenever the socket is readable, so the
    /// peer is never deadlocked writing to us while we write to it.
    pub fn send(
        &self,
        bytes: &[u8],
        fd: Option<RawFd>,
        deadline: Deadline,
        mut drain: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        loop {
            if self.try_send(bytes, fd)? {
                return Ok(());
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::VOXSHM_TIMEOUT,
                    "the channel stayed full: the peer is not reading",
                ));
            }
            let mut p = [sys::pollfd(self.raw(), libc::POLLOUT | libc::POLLIN)];
            sys::poll(&mut p, deadline)?;
            if p[0].revents & libc::POLLIN != 0 {
                drain()?;
            }
            if p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0
                && p[0].revents & libc::POLLOUT == 0
            {
                drain()?;
                return Err(Error::new(
                    Status::VOXSHM_PEER_GONE,
                    "the peer closed the channel",
                ));
            }
        }
    }

    /// True when the peer closed its end without sending anything (a
    /// probe, or a client that died before its connection was accepted).
    fn hung_up_silently(&self) -> bool {
        let mut p = [sys::pollfd(self.raw(), libc::POLLIN | libc::POLLRDHUP)];
        match sys::poll(&mut p, Deadline::now()) {
            Ok(_) if p[0].revents & (libc::POLLRDHUP | libc::POLLHUP) != 0 => {
                let mut b = 0u8;
                // SAFETY: peeks at most one byte into a live u8; nothing is
                // consumed.
                let n = unsafe {
                    libc::recv(
                        self.raw(),
                        (&mut b as *mut u8).cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                n == 0
            }
            Ok(_) => false,
            Err(_) => false,
        }
    }

    /// True when the peer has closed or shut down its end (`POLLRDHUP`).
    fn peer_shut_down(&self) -> bool {
        let mut p = [sys::pollfd(self.raw(), libc::POLLRDHUP)];
        match sys::poll(&mut p, Deadline::now()) {
            Ok(_) => p[0].revents & (libc::POLLRDHUP | libc::POLLHUP) != 0,
            // Cannot tell: a 0-byte read on a seqpacket socket is nearly
            // always the end of file.
            Err(_) => true,
        }
    }

    /// Receives one message without blocking.
    ///
    /// `ECONNRESET` is not the end: Linux reports it once when the peer
    /// closed with data of ours unread, and still delivers what the peer had
    /// queued before it went; only an empty queue after that is the end.
    pub fn try_recv(&self) -> Result<Recv> {
        // Not zeroed: the kernel writes the `n` bytes that are read back.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); crate::wire::MAX_MESSAGE_LEN + 1];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut cbuf = [0u64; CONTROL_WORDS];
        // SAFETY: msghdr is plain old data; all-zero is valid.
        let mut msg: libc::msghdr = unsafe { mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = mem::size_of_val(&cbuf) as _;
        let mut reset = false;
        let n = loop {
            // SAFETY: `msg` points at live, writable iovec and control buffers
            // of the lengths it states.
            let n = unsafe {
                libc::recvmsg(
                    self.raw(),
                    &mut msg,
                    libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Reported once; what the peer queued is still readable.
                Some(libc::ECONNRESET) if !reset => reset = true,
                Some(libc::ECONNRESET) => return Ok(Recv::Eof),
                Some(libc::EAGAIN) if reset => return Ok(Recv::Eof),
                Some(libc::EAGAIN) => return Ok(Recv::Empty),
                _ => return Err(Error::os("recvmsg", err)),
            }
        };
        let mut fds = Vec::new();
        // SAFETY: the kernel filled msg_control up to msg_controllen; the
        // CMSG_* macros walk exactly that range. Each SCM_RIGHTS payload
        // holds (cmsg_len - CMSG_LEN(0)) / 4 fds and an SCM_PIDFD payload
        // one fd; all of them now belong to us.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET {
                    let data_len =
                        ((*c).cmsg_len as usize).saturating_sub(libc::CMSG_LEN(0) as usize);
                    let p = libc::CMSG_DATA(c).cast::<RawFd>();
                    let count = match (*c).cmsg_type {
                        libc::SCM_RIGHTS => data_len / mem::size_of::<RawFd>(),
                        SCM_PIDFD => 1.min(data_len / mem::size_of::<RawFd>()),
                        _ => 0,
                    };
                    let mut owned = Vec::with_capacity(count);
                    for i in 0..count {
                        let fd = std::ptr::read_unaligned(p.add(i));
                        if fd >= 0 {
                            owned.push(OwnedFd::from_raw_fd(fd));
                        }
                    }
                    if (*c).cmsg_type == libc::SCM_RIGHTS {
                        fds.extend(owned);
                    }
                    // A pidfd (SO_PASSPIDFD) is not used: `owned` closes it.
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        let ctrunc = msg.msg_flags & libc::MSG_CTRUNC != 0;
        if n == 0
            && fds.is_empty()
            && self.kind == Kind::SeqPacket
            && !ctrunc
            && self.peer_shut_down()
        {
            // End of file. (A zero-length message from a peer that is still
            // connected also reads as 0 bytes: it falls through and is
            // rejected as a malformed message, not taken for a hang-up.)
            return Ok(Recv::Eof);
        }
        // Truncated control data: the peer sent more fds than a message may
        // carry, or this process had no free fd to receive them in (the
        // kernel then drops them and sets MSG_CTRUNC too). Close what did
        // arrive and see whether a descriptor can be had now.
        let fd_shortage = ctrunc && {
            fds.clear();
            !sys::fd_available(self.raw())
        };
        Ok(Recv::Msg(Message {
            // SAFETY: recvmsg wrote the first `n` bytes of `buf` (n is at
            // most its length: the kernel truncates, never overruns).
            bytes: unsafe {
                std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n.min(buf.len()))
            }
            .to_vec(),
            fds,
            ctrunc,
            fd_shortage,
            trunc: msg.msg_flags & libc::MSG_TRUNC != 0 || n > crate::wire::MAX_MESSAGE_LEN,
        }))
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
            Status::VOXSHM_ADDRESS_IN_USE,
            format!("{path} exists and is not a socket: not replaced"),
        ));
    }
    match Channel::connect_any(path, 1000) {
        // A live listener: the probe is closed at once (voxshm's own
        // `accept` skips connections that hung up before they were taken).
        Ok(_) => Ok(false),
        // ECONNREFUSED: a socket file nobody listens on.
        Err(e) => Ok(e.status == Status::VOXSHM_PEER_GONE),
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
                Status::VOXSHM_INVALID_ARGUMENT,
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
                Status::VOXSHM_ADDRESS_IN_USE,
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
                let chan = Channel {
                    fd,
                    kind: Kind::SeqPacket,
                };
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
                            Status::VOXSHM_TIMEOUT,
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
