//! Channels: socket pairs, listeners, connecting, and the credentials of
//! the process at the other end.

use std::ffi::{c_char, c_int};
use std::mem::size_of;
use std::os::fd::IntoRawFd;

use super::common::{
    Versioned, arg, free_handle, guard, handle_fd, invalid, new_handle, options_init, out,
    path_arg, put, read_options,
};
use super::status::voxshm_status;
use crate::channel::{Allow, Channel, Kind, Listener, ListenerOptions};
use crate::error::{Error, Status};

/// Peer policy (`allow` field of `voxshm_listener_options` and
/// `voxshm_connect_options`): only peers whose effective uid is this
/// process's, or root. The default.
pub const VOXSHM_ALLOW_SAME_USER: u32 = 0;
/// Peer policy: any local process that can reach the socket (for an
/// abstract `@name`: any process in the same network namespace, including
/// other containers sharing it).
pub const VOXSHM_ALLOW_ANYONE: u32 = 1;
/// Peer policy: exactly the `uid` and `gid` of the options struct (either
/// may be `VOXSHM_ANY_ID`); root gets no exception.
pub const VOXSHM_ALLOW_UID_GID: u32 = 2;
/// "Any" for the `uid` or `gid` of a `VOXSHM_ALLOW_UID_GID` policy.
pub const VOXSHM_ANY_ID: u32 = u32::MAX;

/// Listener options. Fill with `voxshm_listener_options_init`, then change
/// fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_listener_options {
    /// `sizeof(voxshm_listener_options)`, set by init.
    pub struct_size: usize,
    /// Which connecting processes `voxshm_listener_accept` hands out:
    /// `VOXSHM_ALLOW_SAME_USER` (default), `VOXSHM_ALLOW_ANYONE` or
    /// `VOXSHM_ALLOW_UID_GID`. Others are closed before any byte is
    /// exchanged, and the accept goes on waiting.
    pub allow: u32,
    /// For `VOXSHM_ALLOW_UID_GID`: the uid allowed (`VOXSHM_ANY_ID`: any).
    pub uid: u32,
    /// For `VOXSHM_ALLOW_UID_GID`: the gid allowed (`VOXSHM_ANY_ID`: any).
    pub gid: u32,
    /// Permission bits of a filesystem-path socket (default 0600:
    /// connecting needs write permission on it). Ignored for `@name`.
    pub mode: u32,
}

/// Size of the first version of `voxshm_listener_options`; callers built
/// against it keep working when fields are added.
pub const VOXSHM_LISTENER_OPTIONS_V1_SIZE: usize = 24;

/// Options of `voxshm_connect_with_options`. Fill with
/// `voxshm_connect_options_init`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_connect_options {
    /// `sizeof(voxshm_connect_options)`, set by init.
    pub struct_size: usize,
    /// Which listener owners to talk to (the credentials the listening
    /// socket was created with): `VOXSHM_ALLOW_SAME_USER` (default),
    /// `VOXSHM_ALLOW_ANYONE` or `VOXSHM_ALLOW_UID_GID`.
    pub allow: u32,
    /// For `VOXSHM_ALLOW_UID_GID`: the uid required (`VOXSHM_ANY_ID`: any).
    pub uid: u32,
    /// For `VOXSHM_ALLOW_UID_GID`: the gid required (`VOXSHM_ANY_ID`: any).
    pub gid: u32,
    /// How long to wait for a listener whose queue of pending connections
    /// is full (default 10000 ms; 0: do not wait; negative: forever).
    pub timeout_ms: i64,
}

/// Size of the first version of `voxshm_connect_options`.
pub const VOXSHM_CONNECT_OPTIONS_V1_SIZE: usize = 32;

/// Who is at the other end of a connected socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_peer_credentials {
    /// Process id (of the process that connected, or created the pair or
    /// the listening socket).
    pub pid: i32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// A listening socket on a path, for two unrelated processes to meet.
pub struct voxshm_listener {
    inner: Listener,
}

fn pair(kind: Kind, fds: *mut c_int) -> voxshm_status {
    guard(|| {
        out(fds, "fds")?;
        let (a, b) = Channel::pair_of(kind)?;
        put(fds, a.into_fd().into_raw_fd());
        // SAFETY: `fds` points at an array of two ints (documented).
        put(unsafe { fds.add(1) }, b.into_fd().into_raw_fd());
        Ok(())
    })
}

/// Creates a connected `AF_UNIX` `SOCK_SEQPACKET` pair (close-on-exec) and
/// writes its two fds to `fds[0]` and `fds[1]`; both are the caller's. Give
/// one to the sender (`voxshm_registry_new`) and the other to the receiver,
/// typically in a child process (clear `FD_CLOEXEC` or `dup2` it before
/// `exec`). Returns `VOXSHM_INVALID_ARGUMENT` (NULL `fds`),
/// `VOXSHM_RESOURCE_EXHAUSTED` or `VOXSHM_IO`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_channel_pair(fds: *mut c_int) -> voxshm_status {
    pair(Kind::SeqPacket, fds)
}

/// Like `voxshm_channel_pair`, but `SOCK_DGRAM`, the socket type a vox-shm
/// peer creates. A datagram pair reports no hang-up when the peer dies, so
/// prefer `voxshm_channel_pair`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_channel_pair_dgram(fds: *mut c_int) -> voxshm_status {
    pair(Kind::Dgram, fds)
}

/// Listens on `path` with the default options (see
/// `voxshm_listener_new_with_options`): only processes running as this
/// process's user, or root, are accepted; a filesystem path gets mode 0600.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_new(
    path: *const c_char,
    out_listener: *mut *mut voxshm_listener,
) -> voxshm_status {
    voxshm_listener_new_with_options(path, std::ptr::null(), out_listener)
}

/// Fills `*options` with the defaults: `VOXSHM_ALLOW_SAME_USER`, mode 0600.
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_options_init(
    options: *mut voxshm_listener_options,
) -> voxshm_status {
    options_init(options)
}

fn allow_arg(allow: u32, uid: u32, gid: u32) -> crate::error::Result<Allow> {
    let id = |v: u32| (v != VOXSHM_ANY_ID).then_some(v);
    match allow {
        VOXSHM_ALLOW_SAME_USER => Ok(Allow::SameUser),
        VOXSHM_ALLOW_ANYONE => Ok(Allow::Anyone),
        VOXSHM_ALLOW_UID_GID => Ok(Allow::Only {
            uid: id(uid),
            gid: id(gid),
        }),
        other => Err(invalid(&format!(
            "allow is {other}; use VOXSHM_ALLOW_SAME_USER, VOXSHM_ALLOW_ANYONE or VOXSHM_ALLOW_UID_GID"
        ))),
    }
}

/// Listens on `path`: a filesystem path or `@name` for a Linux abstract
/// socket name. `options` may be NULL for the defaults. A socket file left
/// behind by a listener that died (nobody accepts on it) is replaced; a
/// path or name held by a live listener is refused with
/// `VOXSHM_ADDRESS_IN_USE`, as is a path that exists and is not a socket.
/// The path is removed by `voxshm_listener_free`. On success `*out` is a
/// new listener the caller frees. Returns `VOXSHM_INVALID_ARGUMENT` (NULL
/// or over-long path, bad options), `VOXSHM_ADDRESS_IN_USE`, `VOXSHM_IO`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_new_with_options(
    path: *const c_char,
    options: *const voxshm_listener_options,
    out_listener: *mut *mut voxshm_listener,
) -> voxshm_status {
    guard(|| {
        out(out_listener, "out_listener")?;
        let o = read_options(options)?;
        let opts = ListenerOptions {
            allow: allow_arg(o.allow, o.uid, o.gid)?,
            mode: o.mode,
        };
        let l = Listener::bind_with(&path_arg(path)?, opts)?;
        new_handle(out_listener, voxshm_listener { inner: l });
        Ok(())
    })
}

/// Waits up to `timeout_ms` (0: do not wait; negative: forever) for a
/// connection and writes its fd to `*out_fd`; the fd is the caller's (pass
/// it to `voxshm_registry_new` or `voxshm_attachments_new`). Returns
/// `VOXSHM_TIMEOUT` when nobody connected in time.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_accept(
    listener: *const voxshm_listener,
    timeout_ms: i64,
    out_fd: *mut c_int,
) -> voxshm_status {
    guard(|| {
        let l = arg(listener, "listener")?;
        out(out_fd, "out_fd")?;
        let c = l.inner.accept(crate::sys::Deadline::after_ms(timeout_ms))?;
        put(out_fd, c.into_fd().into_raw_fd());
        Ok(())
    })
}

/// The listening socket's fd, for poll/epoll (readable when a connection
/// waits); -1 for NULL. The fd stays the listener's: do not close it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_fd(listener: *const voxshm_listener) -> c_int {
    handle_fd(listener, |l| l.inner.raw())
}

/// Closes the listener and removes its filesystem path. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_free(listener: *mut voxshm_listener) {
    free_handle(listener)
}

/// Connects to a listener at `path` (`@name` for an abstract name) whose
/// owner runs as this process's user or root, and writes the connected fd
/// to `*out_fd`; it is the caller's. Returns `VOXSHM_INVALID_ARGUMENT`,
/// `VOXSHM_NO_LISTENER` (nobody listens there yet: no such path, a socket
/// file nobody accepts on, an abstract name nobody holds; retry on this
/// status alone to wait for a producer), `VOXSHM_PEER_NOT_ALLOWED` (the listener
/// runs as another user: see `voxshm_connect_with_options`),
/// `VOXSHM_TIMEOUT` (the listener's queue of pending connections stayed
/// full for 10 s) or `VOXSHM_IO` (anything else, e.g. no permission: the
/// message names the errno).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_connect(path: *const c_char, out_fd: *mut c_int) -> voxshm_status {
    voxshm_connect_with_options(path, std::ptr::null(), out_fd)
}

/// Fills `*options` with the defaults (`VOXSHM_ALLOW_SAME_USER`). Returns
/// `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_connect_options_init(
    options: *mut voxshm_connect_options,
) -> voxshm_status {
    options_init(options)
}

/// Like `voxshm_connect`, with a policy for whom to talk to: the
/// credentials the listening socket was created with must be allowed by
/// `options` (NULL: the defaults), or the connection is closed and
/// `VOXSHM_PEER_NOT_ALLOWED` returned. This guards against a process that
/// took the name (or path) before the real producer.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_connect_with_options(
    path: *const c_char,
    options: *const voxshm_connect_options,
    out_fd: *mut c_int,
) -> voxshm_status {
    guard(|| {
        out(out_fd, "out_fd")?;
        let o = read_options(options)?;
        let allow = allow_arg(o.allow, o.uid, o.gid)?;
        let c = Channel::connect_with(&path_arg(path)?, allow, o.timeout_ms)?;
        put(out_fd, c.into_fd().into_raw_fd());
        Ok(())
    })
}

/// Writes the credentials (pid, uid, gid, from `SO_PEERCRED`) of the
/// process at the other end of the connected socket `fd` to `*out`: any
/// channel fd, including `voxshm_registry_fd` and `voxshm_attachments_fd`.
/// The fd stays the caller's. Returns `VOXSHM_INVALID_ARGUMENT` (NULL
/// `out`, or `fd` is not a connected socket), `VOXSHM_IO`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_peer_credentials_get(
    fd: c_int,
    out_credentials: *mut voxshm_peer_credentials,
) -> voxshm_status {
    guard(|| {
        out(out_credentials, "out_credentials")?;
        let c = crate::channel::peer_credentials(fd).map_err(|e| {
            Error::new(
                Status::InvalidArgument,
                format!("fd {fd} is not a connected socket: {}", e.message),
            )
        })?;
        put(
            out_credentials,
            voxshm_peer_credentials {
                pid: c.pid,
                uid: c.uid,
                gid: c.gid,
            },
        );
        Ok(())
    })
}

impl Versioned for voxshm_listener_options {
    const V1_SIZE: usize = VOXSHM_LISTENER_OPTIONS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_listener_options {
            struct_size: size_of::<voxshm_listener_options>(),
            allow: VOXSHM_ALLOW_SAME_USER,
            uid: VOXSHM_ANY_ID,
            gid: VOXSHM_ANY_ID,
            mode: 0o600,
        }
    }
}

impl Versioned for voxshm_connect_options {
    const V1_SIZE: usize = VOXSHM_CONNECT_OPTIONS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_connect_options {
            struct_size: size_of::<voxshm_connect_options>(),
            allow: VOXSHM_ALLOW_SAME_USER,
            uid: VOXSHM_ANY_ID,
            gid: VOXSHM_ANY_ID,
            timeout_ms: crate::channel::CONNECT_TIMEOUT_MS,
        }
    }
}

// The frozen first-version sizes must match the structs as first shipped.
const _: () = {
    assert!(size_of::<voxshm_listener_options>() == VOXSHM_LISTENER_OPTIONS_V1_SIZE);
    assert!(size_of::<voxshm_connect_options>() == VOXSHM_CONNECT_OPTIONS_V1_SIZE);
};
