//! The control channel: a connected `AF_UNIX` socket that carries ATTACH
//! messages with their fds, and voxshm's extension messages.
//!
//! Every send is a single `sendmsg` with `MSG_NOSIGNAL | MSG_DONTWAIT`: on a
//! datagram or seqpacket socket it either queues the whole message with its
//! fd or nothing, so a full socket buffer never loses an fd or a message;
//! the caller decides how to wait. Every receive uses `MSG_CMSG_CLOEXEC`,
//! walks every control message and takes ownership of every fd that
//! arrived, so dropping a rejected message closes them all.

use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result, Status};
pub use crate::listener::{Allow, Listener, ListenerOptions, PeerCredentials, peer_credentials};
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

pub(crate) fn new_socket(ty: i32) -> Result<OwnedFd> {
    // SAFETY: socket takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Error::last_os("socket(AF_UNIX)"));
    }
    // SAFETY: socket just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Queues one message with at most one fd on `sock` without blocking
/// (`MSG_NOSIGNAL | MSG_DONTWAIT`). `Ok(false)`: the buffer is full and
/// nothing was queued.
fn try_send_on(sock: RawFd, bytes: &[u8], fd: Option<RawFd>) -> Result<bool> {
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
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
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

/// What kind of file `fd` is, in words, for messages.
fn file_kind(fd: RawFd) -> &'static str {
    match sys::fstat(fd).map(|st| st.st_mode & libc::S_IFMT) {
        Ok(libc::S_IFREG) => "a regular file",
        Ok(libc::S_IFCHR) => "a character device",
        Ok(libc::S_IFBLK) => "a block device",
        Ok(libc::S_IFDIR) => "a directory",
        Ok(libc::S_IFIFO) => "a pipe",
        Ok(libc::S_IFSOCK) => "a socket",
        Ok(_) => "a file of another kind",
        Err(_) => "not an open file descriptor",
    }
}

fn socket_type_name(ty: libc::c_int) -> String {
    match ty {
        libc::SOCK_STREAM => "SOCK_STREAM".into(),
        libc::SOCK_DGRAM => "SOCK_DGRAM".into(),
        libc::SOCK_SEQPACKET => "SOCK_SEQPACKET".into(),
        libc::SOCK_RAW => "SOCK_RAW".into(),
        other => format!("type {other}"),
    }
}

/// Checks that `fd` (not taken) is a socket voxshm can use: `AF_UNIX`,
/// `SOCK_SEQPACKET` or `SOCK_DGRAM`. The messages name the caller's fd.
pub fn socket_kind(fd: RawFd) -> Result<Kind> {
    let int_opt = |opt: libc::c_int| {
        let mut v: libc::c_int = 0;
        let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the out-pointer is a valid c_int and `len` matches it.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    let use_these = "use one end of voxshm_channel_pair, or an fd from voxshm_connect or voxshm_listener_accept";
    let Some(domain) = int_opt(libc::SO_DOMAIN) else {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("fd {fd} is {}, not a socket; {use_these}", file_kind(fd)),
        ));
    };
    if domain != libc::AF_UNIX {
        return Err(Error::new(
            Status::InvalidArgument,
            format!("fd {fd} is a socket of address family {domain}, not AF_UNIX; {use_these}"),
        ));
    }
    match int_opt(libc::SO_TYPE) {
        Some(libc::SOCK_SEQPACKET) => Ok(Kind::SeqPacket),
        Some(libc::SOCK_DGRAM) => Ok(Kind::Dgram),
        ty => Err(Error::new(
            Status::InvalidArgument,
            format!(
                "fd {fd} is an AF_UNIX socket of {}; voxshm needs SOCK_SEQPACKET (or SOCK_DGRAM, as a vox peer makes)",
                ty.map_or("unknown type".into(), socket_type_name)
            ),
        )),
    }
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
pub(crate) fn sockaddr(path: &str) -> Result<(libc::sockaddr_un, libc::socklen_t)> {
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
            Status::InvalidArgument,
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
    /// An accepted or connected `SOCK_SEQPACKET` socket.
    pub(crate) fn seqpacket(fd: OwnedFd) -> Channel {
        Channel {
            fd,
            kind: Kind::SeqPacket,
        }
    }

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
        let kind = socket_kind(fd.as_raw_fd())?;
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

    pub(crate) fn connect_any(path: &str, timeout_ms: i64) -> Result<Channel> {
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
            if matches!(err.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) {
                return Err(Error::new(
                    Status::NoListener,
                    format!("connect({path}): nobody listens there (yet): {err}"),
                ));
            }
            if matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS)) {
                return Err(Error::new(
                    Status::Timeout,
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
        try_send_on(self.raw(), bytes, fd)
    }

    /// Sends one message on the socket `sock`, waiting up to `deadline` for
    /// buffer space. While it waits, `drain` is called whenever the socket
    /// is readable, so the peer is never deadlocked writing to us while we
    /// write to it; it returns whether it read anything. (By fd, so `drain`
    /// may borrow whatever owns the socket.)
    pub fn send_on(
        sock: RawFd,
        bytes: &[u8],
        fd: Option<RawFd>,
        deadline: Deadline,
        mut drain: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        // A drain that reads nothing from a readable socket (its owner
        // takes no more now; nothing changes that while this call holds
        // the owner) is not asked again, or this loop would spin.
        let mut read = libc::POLLIN;
        loop {
            if try_send_on(sock, bytes, fd)? {
                return Ok(());
            }
            if deadline.expired() {
                return Err(Error::new(
                    Status::Timeout,
                    "the channel stayed full: the peer is not reading",
                ));
            }
            let mut p = [sys::pollfd(sock, libc::POLLOUT | read)];
            sys::poll(&mut p, deadline)?;
            if p[0].revents & libc::POLLIN != 0 && !drain()? {
                read = 0;
            }
            if p[0].revents & (libc::POLLHUP | libc::POLLERR) != 0
                && p[0].revents & libc::POLLOUT == 0
            {
                drain()?;
                return Err(Error::new(Status::PeerGone, "the peer closed the channel"));
            }
        }
    }

    /// True when the peer closed its end without sending anything (a
    /// probe, or a client that died before its connection was accepted).
    pub(crate) fn hung_up_silently(&self) -> bool {
        if !self.peer_shut_down() {
            return false;
        }
        let mut b = 0u8;
        // SAFETY: peeks at most one byte into a live u8; nothing is consumed.
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

    /// Ends this side's sending: the peer reads the end of the stream (as
    /// if this side had gone), and this side can still read what it sends.
    pub fn shutdown_write(&self) {
        // SAFETY: shutdown on a socket fd this channel owns; failure (not
        // connected any more) leaves nothing to end.
        unsafe { libc::shutdown(self.raw(), libc::SHUT_WR) };
    }

    /// Whether a message could be queued now without waiting (`POLLOUT`).
    pub fn writable(&self) -> bool {
        let mut p = [sys::pollfd(self.raw(), libc::POLLOUT)];
        sys::poll(&mut p, Deadline::now()).is_ok() && p[0].revents & libc::POLLOUT != 0
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
