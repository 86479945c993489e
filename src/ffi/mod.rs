//! The C ABI. Every function here is an `extern "C"` entry point: it checks
//! every pointer, catches any panic, returns a `voxshm_status`, and writes
//! its out-parameters only on success. `include/voxshm.h` is generated from
//! this module by cbindgen.

#![allow(non_camel_case_types)]
// These are C entry points: C callers cannot see Rust's `unsafe`, and every
// pointer is checked for NULL before it is dereferenced.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod log;

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::mem::size_of;
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use self::log::{voxshm_log_fn, voxshm_log_level};
use crate::attachments::{Attachments, AttachmentsOptions, View};
use crate::channel::{Allow, Channel, Kind, Listener, ListenerOptions};
use crate::error::{Error, Result, Status, voxshm_status};
use crate::region::Limits;
use crate::registry::{Allocation, Registry, RegistryOptions};
use crate::wire::{self, Ref};

/// Version of the C ABI described by this header. `voxshm_abi_version()`
/// returns the library's; a `dlopen` user compares the two and refuses a
/// library whose number differs.
pub const VOXSHM_ABI_VERSION: u32 = 1;

/// Length of an encoded MMAP_REF frame.
pub const VOXSHM_REF_FRAME_LEN: u32 = 32;

/// Registry option flag: talk to a vox-shm receiver. No extension
/// messages are sent, regions are not sealed with `F_SEAL_FUTURE_WRITE`
/// (a vox receiver maps them read-write), `voxshm_registry_send` is
/// unavailable, and leases never come back.
pub const VOXSHM_REGISTRY_VOX_COMPAT: u32 = 1;
/// Registry option flag: back regions with unlinked temp files instead of
/// memfds (they cannot be sealed; the receiver must accept unsealed
/// regions).
pub const VOXSHM_REGISTRY_FORCE_TEMPFILE: u32 = 2;

/// Attachments option flag: accept regions without `F_SEAL_SHRINK |
/// F_SEAL_GROW` (what a vox sender sends). Such a sender could shrink the
/// file under the receiver, which then dies of SIGBUS on access.
pub const VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED: u32 = 1;
/// Attachments option flag: talk to a vox-shm sender: send no HELLO and no
/// RELEASE; implies accepting unsealed regions.
pub const VOXSHM_ATTACHMENTS_VOX_COMPAT: u32 = 2;

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

/// A reference to a published payload: `payload_len` bytes at
/// `map_offset` in region (`map_id`, `map_generation`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct voxshm_ref {
    /// Region number, reused only with a higher generation.
    pub map_id: u32,
    /// Generation of the region (starts at 1).
    pub map_generation: u32,
    /// Byte offset of the payload in the region.
    pub map_offset: u64,
    /// Payload length in bytes.
    pub payload_len: u32,
    /// Always zero.
    pub reserved: u32,
}

impl From<Ref> for voxshm_ref {
    fn from(r: Ref) -> Self {
        voxshm_ref {
            map_id: r.map_id,
            map_generation: r.map_generation,
            map_offset: r.map_offset,
            payload_len: r.payload_len,
            reserved: 0,
        }
    }
}

impl From<voxshm_ref> for Ref {
    fn from(r: voxshm_ref) -> Self {
        Ref {
            map_id: r.map_id,
            map_generation: r.map_generation,
            map_offset: r.map_offset,
            payload_len: r.payload_len,
        }
    }
}

/// Payload space from `voxshm_registry_alloc`: `capacity` writable bytes at
/// `data`, owned by the caller until it is published, sent or aborted. The
/// other fields identify it to the registry; do not change them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_allocation {
    /// First writable byte.
    pub data: *mut u8,
    /// Writable bytes at `data` (the request rounded up to 64).
    pub capacity: usize,
    /// Region of the allocation.
    pub map_id: u32,
    /// Generation of that region.
    pub map_generation: u32,
    /// Offset of `data` in the region.
    pub map_offset: u64,
    /// Identifies this allocation to the registry.
    pub token: u64,
}

/// A received payload: `len` read-only bytes at `data`, valid until the
/// view is passed to `voxshm_attachments_release` (even if the sender dies
/// meanwhile). The sender's process may still write these bytes: copy or
/// validate before trusting them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_view {
    /// First readable byte (read-only memory).
    pub data: *const u8,
    /// Readable bytes at `data`.
    pub len: usize,
    /// The reference this view was resolved from.
    pub reference: voxshm_ref,
}

/// Sender options. Fill with `voxshm_registry_options_init`, then change
/// fields. `struct_size` must stay as init set it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_registry_options {
    /// `sizeof(voxshm_registry_options)`, set by init.
    pub struct_size: usize,
    /// Bytes in a new region (default 64 MiB; rounded up to whole pages). A
    /// payload larger than this gets a region of its own.
    pub region_size: u64,
    /// Most bytes of regions held at once (default 1 GiB). When it is
    /// exhausted, alloc waits for releases, then fails with
    /// `VOXSHM_NO_SPACE`.
    pub budget: u64,
    /// Bytes of idle regions kept mapped for reuse (default 64 MiB); idle
    /// regions beyond this are retired.
    pub keep_warm: u64,
    /// How long `voxshm_registry_send` and region creation wait for room in
    /// the channel and for the receiver's HELLO (default 10000 ms; negative:
    /// forever).
    pub send_timeout_ms: i64,
    /// `VOXSHM_REGISTRY_*` flags (default 0).
    pub flags: u32,
}

/// Receiver options. Fill with `voxshm_attachments_options_init`, then
/// change fields. `struct_size` must stay as init set it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_attachments_options {
    /// `sizeof(voxshm_attachments_options)`, set by init.
    pub struct_size: usize,
    /// Most regions mapped at once (default 1024).
    pub max_mappings: u32,
    /// `VOXSHM_ATTACHMENTS_*` flags (default 0).
    pub flags: u32,
    /// Most bytes mapped at once (default 16 GiB).
    pub max_mapped_bytes: u64,
    /// Largest single region accepted (default 4 GiB).
    pub max_single_mapping: u64,
    /// How long a release waits for room in a full channel before it is
    /// kept and sent by a later call (default 10000 ms).
    pub send_timeout_ms: i64,
}

/// Counters and limits of a registry. Set `struct_size` to
/// `sizeof(voxshm_registry_stats)` before calling `voxshm_registry_get_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_registry_stats {
    /// Set by the caller to the size of this struct.
    pub struct_size: usize,
    /// Regions currently held (mapped, with their fd open).
    pub regions: u64,
    /// Bytes of those regions.
    pub mapped_bytes: u64,
    /// The configured budget and keep-warm amount.
    pub budget: u64,
    /// The configured keep-warm amount.
    pub keep_warm: u64,
    /// Published payloads the receiver has not released yet.
    pub live_leases: u64,
    /// Allocations neither published nor aborted.
    pub allocations: u64,
    /// File descriptors this registry holds.
    pub open_fds: u64,
    /// Messages sent on the channel.
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages received on the channel.
    pub messages_received: u64,
    /// Bytes of those messages.
    pub bytes_received: u64,
    /// Regions created so far.
    pub regions_created: u64,
    /// Regions retired so far.
    pub regions_retired: u64,
    /// Payloads published or sent so far.
    pub payloads_published: u64,
    /// Bytes of those payloads.
    pub payload_bytes_published: u64,
    /// Minor page faults of the whole process so far (`getrusage`).
    pub minor_faults: u64,
}

/// Counters and limits of an attachments handle. Set `struct_size` to
/// `sizeof(voxshm_attachments_stats)` before calling
/// `voxshm_attachments_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_attachments_stats {
    /// Set by the caller to the size of this struct.
    pub struct_size: usize,
    /// Regions currently mapped, and their bytes.
    pub mappings: u64,
    /// Bytes of those regions.
    pub mapped_bytes: u64,
    /// The configured limits.
    pub max_mappings: u64,
    /// The configured most bytes mapped at once.
    pub max_mapped_bytes: u64,
    /// The configured largest region accepted.
    pub max_single_mapping: u64,
    /// Views resolved and not yet released.
    pub live_views: u64,
    /// References received over the channel and not yet taken by recv.
    pub queued_refs: u64,
    /// Releases waiting for room in the channel.
    pub pending_releases: u64,
    /// File descriptors this handle holds (region fds are closed as soon as
    /// they are mapped).
    pub open_fds: u64,
    /// Messages sent on the channel.
    pub messages_sent: u64,
    /// Bytes of those messages.
    pub bytes_sent: u64,
    /// Messages received on the channel.
    pub messages_received: u64,
    /// Bytes of those messages.
    pub bytes_received: u64,
    /// ATTACH messages received.
    pub attaches_received: u64,
    /// ATTACH messages rejected (validation or limits).
    pub attaches_rejected: u64,
    /// References received over the channel.
    pub refs_received: u64,
    /// Releases sent back to the sender.
    pub releases_sent: u64,
    /// Regions retired so far.
    pub regions_retired: u64,
    /// Minor page faults of the whole process so far (`getrusage`).
    pub minor_faults: u64,
}

/// The sender's side: owns regions, hands out payload space, sends
/// references. Create with `voxshm_registry_new`, end with
/// `voxshm_registry_free`. Safe to use from several threads at once.
pub struct voxshm_registry {
    inner: Registry,
}

/// The receiver's side: maps the sender's regions read-only and turns
/// references into views. Create with `voxshm_attachments_new`, end with
/// `voxshm_attachments_free`. Safe to use from several threads at once.
pub struct voxshm_attachments {
    inner: Attachments,
}

/// A listening socket on a path, for two unrelated processes to meet.
pub struct voxshm_listener {
    inner: Listener,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(e: &Error) {
    let text = format!("{}: {}", e.status.name(), e.message).replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = c);
}

/// Runs an entry point: initialises logging, catches panics, records the
/// error message.
fn guard(f: impl FnOnce() -> Result<()>) -> voxshm_status {
    log::init();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => Status::VOXSHM_OK,
        Ok(Err(e)) => {
            set_last_error(&e);
            e.status
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&Error::new(
                Status::VOXSHM_INTERNAL,
                format!("internal error (panic): {what}"),
            ));
            Status::VOXSHM_INTERNAL
        }
    }
}

fn invalid(what: &str) -> Error {
    Error::new(Status::VOXSHM_INVALID_ARGUMENT, what.to_string())
}

/// Borrows `p` or fails with INVALID_ARGUMENT naming it.
fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the C caller promises a non-NULL pointer points at a valid T
    // for the duration of the call; NULL is checked here.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(&format!("{name} is NULL")))
}

/// Writes `v` through an out-pointer (checked for NULL by the caller).
fn put<T>(p: *mut T, v: T) {
    // SAFETY: `p` was checked non-NULL before the operation ran and the C
    // caller promises it points at writable memory for a T.
    unsafe { p.write(v) }
}

fn out<T>(p: *mut T, name: &str) -> Result<()> {
    if p.is_null() {
        Err(invalid(&format!("{name} is NULL")))
    } else {
        Ok(())
    }
}

/// Reads a versioned options struct: the caller's `struct_size` must be at
/// least the first version's size and at most this library's.
fn read_versioned<T: Copy>(p: *const T, defaults: T, min: usize) -> Result<T> {
    let given = arg(p.cast::<usize>(), "options")?;
    let size = *given;
    if size < min || size > size_of::<T>() {
        return Err(invalid(&format!(
            "options struct_size is {size}; this library accepts {min}..={} (use the *_options_init function)",
            size_of::<T>()
        )));
    }
    let mut v = defaults;
    // SAFETY: the caller's struct has `size` readable bytes (its own
    // struct_size), `v` has size_of::<T>() >= size writable bytes, and both
    // are plain-old-data repr(C) structs.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), (&mut v as *mut T).cast::<u8>(), size) };
    Ok(v)
}

/// Writes a versioned stats struct: as many bytes as the caller's
/// `struct_size` says it has room for.
fn write_versioned<T: Copy>(p: *mut T, mut v: T, min: usize) -> Result<()> {
    let size = *arg(p.cast_const().cast::<usize>(), "stats")?;
    if size < min {
        return Err(invalid(&format!(
            "stats struct_size is {size}; set it to sizeof the struct (at least {min})"
        )));
    }
    let n = size.min(size_of::<T>());
    // SAFETY: `v` starts with its usize struct_size field (repr(C)).
    unsafe { (&mut v as *mut T).cast::<usize>().write(n) };
    // SAFETY: the caller's struct has `size >= n` writable bytes; `v` has n
    // readable bytes; both are plain-old-data repr(C) structs.
    unsafe { std::ptr::copy_nonoverlapping((&v as *const T).cast::<u8>(), p.cast::<u8>(), n) };
    Ok(())
}

fn take_fd(fd: c_int) -> Result<Channel> {
    if fd < 0 {
        return Err(invalid(&format!("fd {fd} is not a valid file descriptor")));
    }
    // SAFETY: fcntl(F_GETFD) on any integer is safe; it only tells whether
    // the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(invalid(&format!("fd {fd} is not open")));
    }
    // Check the socket before taking ownership, so a rejected fd stays the
    // caller's.
    // SAFETY: fd is open (checked above) and only borrowed for the check.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let dup = borrowed
        .try_clone_to_owned()
        .map_err(|e| Error::os("dup", e))?;
    Channel::from_fd(dup)?;
    // SAFETY: the caller hands ownership of `fd` to the library on success,
    // which this is.
    Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A constructor failed after `take_fd`: the fd goes back to the caller,
/// open, as documented.
fn give_back((e, chan): (Error, Channel)) -> Error {
    let _caller_keeps_it = chan.into_fd().into_raw_fd();
    e
}

fn to_allocation(a: &voxshm_allocation) -> Allocation {
    Allocation {
        data: a.data,
        capacity: a.capacity as u64,
        map_id: a.map_id,
        map_generation: a.map_generation,
        map_offset: a.map_offset,
        token: a.token,
    }
}

fn to_view(v: &voxshm_view) -> View {
    View {
        data: v.data,
        len: v.len as u64,
        r: v.reference.into(),
    }
}

fn from_view(v: View) -> voxshm_view {
    voxshm_view {
        data: v.data,
        len: v.len as usize,
        reference: v.r.into(),
    }
}

fn path_arg(path: *const c_char) -> Result<String> {
    if path.is_null() {
        return Err(invalid("path is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(path) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| invalid("path is not UTF-8"))
}

// ---------------------------------------------------------------------------
// Library

/// The package version, e.g. "0.1.0". Static storage; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The library's ABI version; compare with `VOXSHM_ABI_VERSION`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_abi_version() -> u32 {
    VOXSHM_ABI_VERSION
}

/// The name of a status, e.g. "VOXSHM_PEER_GONE", or "VOXSHM_UNKNOWN_STATUS"
/// for a number that is not a status. Static storage; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_status_name(status: c_int) -> *const c_char {
    match Status::from_i32(status) {
        Some(s) => s.name_cstr().as_ptr(),
        None => c"VOXSHM_UNKNOWN_STATUS".as_ptr(),
    }
}

/// A human-readable message about the last failure of a voxshm call on this
/// thread ("" if none has failed). The string belongs to the library and
/// stays valid until the next failing voxshm call on this thread; copy it
/// to keep it. Successful calls do not change it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// Sends the library's log messages up to `max_level` to `callback` (with
/// `user_data`), or, with a NULL callback, back to the default: silent,
/// unless the `VOXSHM_LOG` environment variable names a level (error, warn,
/// info, debug, trace), in which case they go to stderr.
/// Returns `VOXSHM_INVALID_ARGUMENT` for a level outside 0..=5.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_set_log_callback(
    callback: voxshm_log_fn,
    user_data: *mut c_void,
    max_level: c_int,
) -> voxshm_status {
    guard(|| {
        if !(0..=5).contains(&max_level) {
            return Err(invalid(&format!(
                "log level {max_level} is not a voxshm_log_level"
            )));
        }
        log::set_callback(callback, user_data, max_level as u8);
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Channels

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
    guard(|| {
        out(options, "options")?;
        put(options, listener_defaults());
        Ok(())
    })
}

fn listener_defaults() -> voxshm_listener_options {
    voxshm_listener_options {
        struct_size: size_of::<voxshm_listener_options>(),
        allow: VOXSHM_ALLOW_SAME_USER,
        uid: VOXSHM_ANY_ID,
        gid: VOXSHM_ANY_ID,
        mode: 0o600,
    }
}

fn allow_arg(allow: u32, uid: u32, gid: u32) -> Result<Allow> {
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
        let o = if options.is_null() {
            listener_defaults()
        } else {
            read_versioned(
                options,
                listener_defaults(),
                VOXSHM_LISTENER_OPTIONS_V1_SIZE,
            )?
        };
        let opts = ListenerOptions {
            allow: allow_arg(o.allow, o.uid, o.gid)?,
            mode: o.mode,
        };
        let l = Listener::bind_with(&path_arg(path)?, opts)?;
        put(
            out_listener,
            Box::into_raw(Box::new(voxshm_listener { inner: l })),
        );
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
    // SAFETY: NULL or a live listener from voxshm_listener_new.
    unsafe { listener.as_ref() }.map_or(-1, |l| l.inner.raw())
}

/// Closes the listener and removes its filesystem path. NULL is a no-op.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_listener_free(listener: *mut voxshm_listener) {
    if !listener.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: a pointer from voxshm_listener_new, freed once.
            drop(unsafe { Box::from_raw(listener) })
        }));
    }
}

/// Connects to a listener at `path` (`@name` for an abstract name) whose
/// owner runs as this process's user or root, and writes the connected fd
/// to `*out_fd`; it is the caller's. Returns `VOXSHM_INVALID_ARGUMENT`,
/// `VOXSHM_PEER_GONE` (the socket exists but nobody listens on it, or an
/// abstract name nobody holds), `VOXSHM_PEER_NOT_ALLOWED` (the listener
/// runs as another user: see `voxshm_connect_with_options`),
/// `VOXSHM_TIMEOUT` (the listener's queue of pending connections stayed
/// full for 10 s) or `VOXSHM_IO` (e.g. no such path yet: the message names
/// the errno).
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
    guard(|| {
        out(options, "options")?;
        put(options, connect_defaults());
        Ok(())
    })
}

fn connect_defaults() -> voxshm_connect_options {
    voxshm_connect_options {
        struct_size: size_of::<voxshm_connect_options>(),
        allow: VOXSHM_ALLOW_SAME_USER,
        uid: VOXSHM_ANY_ID,
        gid: VOXSHM_ANY_ID,
        timeout_ms: crate::channel::CONNECT_TIMEOUT_MS,
    }
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
        let o = if options.is_null() {
            connect_defaults()
        } else {
            read_versioned(options, connect_defaults(), VOXSHM_CONNECT_OPTIONS_V1_SIZE)?
        };
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
                Status::VOXSHM_INVALID_ARGUMENT,
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

// ---------------------------------------------------------------------------
// References

/// Encodes `ref` as the 32-byte vox MMAP_REF frame into `out` (32 writable
/// bytes), to carry over a transport of the caller's own.
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL pointers.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_ref_encode(
    reference: *const voxshm_ref,
    out_frame: *mut u8,
) -> voxshm_status {
    guard(|| {
        let r = arg(reference, "ref")?;
        out(out_frame, "out")?;
        let b = Ref::from(*r).encode_frame();
        // SAFETY: `out` has 32 writable bytes (documented); `b` is 32 bytes.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), out_frame, b.len()) };
        Ok(())
    })
}

/// Decodes an MMAP_REF frame from the `len` bytes at `frame` into `*out`.
/// Returns `VOXSHM_BAD_FRAME` for a short buffer, wrong total_len, wrong
/// flags or non-zero reserved bytes; `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_ref_decode(
    frame: *const u8,
    len: usize,
    out_ref: *mut voxshm_ref,
) -> voxshm_status {
    guard(|| {
        if frame.is_null() {
            return Err(invalid("frame is NULL"));
        }
        out(out_ref, "out")?;
        let n = len.min(wire::FRAME_LEN);
        let mut b = [0u8; wire::FRAME_LEN];
        // SAFETY: the caller promises `len` readable bytes at `frame`; we
        // read at most that many.
        unsafe { std::ptr::copy_nonoverlapping(frame, b.as_mut_ptr(), n) };
        let r = Ref::decode_frame(&b[..n])?;
        put(out_ref, r.into());
        Ok(())
    })
}

// ---------------------------------------------------------------------------
// Registry (sender)

/// Fills `*options` with the defaults (and its `struct_size`).
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_options_init(
    options: *mut voxshm_registry_options,
) -> voxshm_status {
    guard(|| {
        out(options, "options")?;
        put(options, registry_defaults());
        Ok(())
    })
}

fn registry_defaults() -> voxshm_registry_options {
    let d = RegistryOptions::default();
    voxshm_registry_options {
        struct_size: size_of::<voxshm_registry_options>(),
        region_size: d.region_size,
        budget: d.budget,
        keep_warm: d.keep_warm,
        send_timeout_ms: d.send_timeout_ms,
        flags: 0,
    }
}

/// Creates a registry that sends over the connected socket `fd`.
/// `options` may be NULL for the defaults. On success the registry owns
/// `fd` (it is closed by `voxshm_registry_free`) and `*out` is the new
/// handle; on failure `fd` is still the caller's.
/// Returns `VOXSHM_INVALID_ARGUMENT` (NULL out, fd not an `AF_UNIX`
/// `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad options),
/// `VOXSHM_RESOURCE_EXHAUSTED`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_new(
    fd: c_int,
    options: *const voxshm_registry_options,
    out_registry: *mut *mut voxshm_registry,
) -> voxshm_status {
    guard(|| {
        out(out_registry, "out_registry")?;
        let o = if options.is_null() {
            registry_defaults()
        } else {
            read_versioned(
                options,
                registry_defaults(),
                size_of::<voxshm_registry_options>(),
            )?
        };
        if o.flags & !(VOXSHM_REGISTRY_VOX_COMPAT | VOXSHM_REGISTRY_FORCE_TEMPFILE) != 0 {
            return Err(invalid(&format!("unknown registry flags {:#x}", o.flags)));
        }
        let opts = RegistryOptions {
            region_size: o.region_size,
            budget: o.budget,
            keep_warm: o.keep_warm,
            send_timeout_ms: o.send_timeout_ms,
            vox_compat: o.flags & VOXSHM_REGISTRY_VOX_COMPAT != 0,
            force_tempfile: o.flags & VOXSHM_REGISTRY_FORCE_TEMPFILE != 0,
        };
        if opts.region_size == 0 || opts.budget == 0 {
            return Err(invalid("region_size and budget must be > 0"));
        }
        let chan = take_fd(fd)?;
        let r = Registry::new_or_return(chan, opts).map_err(give_back)?;
        put(
            out_registry,
            Box::into_raw(Box::new(voxshm_registry { inner: r })),
        );
        Ok(())
    })
}

/// Frees the registry: closes its channel (the receiver sees the sender
/// go) and its regions. Allocations from it become invalid; views the
/// receiver holds stay readable. NULL is a no-op. No other thread may be
/// using the registry.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_free(registry: *mut voxshm_registry) {
    if !registry.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: a pointer from voxshm_registry_new, freed once.
            drop(unsafe { Box::from_raw(registry) })
        }));
    }
}

/// The channel fd, for poll/epoll: readable when the receiver sent
/// releases or hung up; then call `voxshm_registry_poll`. -1 for NULL. The
/// fd stays the registry's: do not close or read it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_fd(registry: *const voxshm_registry) -> c_int {
    // SAFETY: NULL or a live registry from voxshm_registry_new.
    unsafe { registry.as_ref() }.map_or(-1, |r| r.inner.fd())
}

/// Allocates `len` bytes of payload space (1 ..= 4 GiB - 1) and writes it
/// to `*out`. When the budget is exhausted it waits up to `timeout_ms` (0:
/// do not wait; negative: forever) for the receiver to release space.
/// Returns `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE` (over 4 GiB - 1 or over
/// the budget), `VOXSHM_NO_SPACE` (budget still exhausted at the timeout),
/// `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_RESOURCE_EXHAUSTED`
/// (memfd, fd or memory limits), `VOXSHM_TIMEOUT` (the channel stayed full
/// while announcing a new region), `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_alloc(
    registry: *const voxshm_registry,
    len: usize,
    timeout_ms: i64,
    out_allocation: *mut voxshm_allocation,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        out(out_allocation, "out_allocation")?;
        let a = r.inner.alloc(len as u64, timeout_ms)?;
        put(
            out_allocation,
            voxshm_allocation {
                data: a.data,
                capacity: a.capacity as usize,
                map_id: a.map_id,
                map_generation: a.map_generation,
                map_offset: a.map_offset,
                token: a.token,
            },
        );
        Ok(())
    })
}

/// Publishes the first `len` bytes of `allocation` and writes their
/// reference to `*out_ref`, for the caller to carry over a transport of
/// its own (see `voxshm_ref_encode`). Every write to the payload made
/// before this call is visible to a receiver that resolves the reference.
/// The allocation is consumed: do not write it any more. Returns
/// `VOXSHM_INVALID_ALLOCATION` (unknown, already published or aborted),
/// `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE` (len > capacity),
/// `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_publish(
    registry: *const voxshm_registry,
    allocation: *const voxshm_allocation,
    len: usize,
    out_ref: *mut voxshm_ref,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        let a = arg(allocation, "allocation")?;
        out(out_ref, "out_ref")?;
        let reference = r.inner.publish(&to_allocation(a), len as u64)?;
        put(out_ref, reference.into());
        Ok(())
    })
}

/// Publishes the first `len` bytes of `allocation` and sends the reference
/// over the channel (the receiver takes it with `voxshm_attachments_recv`),
/// waiting up to the configured `send_timeout_ms` for the receiver's HELLO
/// and for room in the channel. On success the allocation is consumed; on
/// failure it is still the caller's, to send again or abort. Returns the
/// statuses of `voxshm_registry_publish`, `VOXSHM_TIMEOUT`, and
/// `VOXSHM_UNSUPPORTED` in vox compatibility mode.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_send(
    registry: *const voxshm_registry,
    allocation: *const voxshm_allocation,
    len: usize,
) -> voxshm_status {
    voxshm_registry_send_timeout(registry, allocation, len, -1)
}

/// `voxshm_registry_send` with its own timeout (0: do not wait; negative:
/// the configured `send_timeout_ms`).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_send_timeout(
    registry: *const voxshm_registry,
    allocation: *const voxshm_allocation,
    len: usize,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        let a = arg(allocation, "allocation")?;
        r.inner.send(&to_allocation(a), len as u64, timeout_ms)
    })
}

/// Gives back an allocation that was never published; its space is reused.
/// Works after the receiver has gone too. Returns
/// `VOXSHM_INVALID_ALLOCATION` (unknown, published or aborted already),
/// `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_abort(
    registry: *const voxshm_registry,
    allocation: *const voxshm_allocation,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        let a = arg(allocation, "allocation")?;
        r.inner.abort(&to_allocation(a))
    })
}

/// Applies whatever the receiver sent (releases, acknowledgements, hang-up)
/// without waiting. Call it when `voxshm_registry_fd` is readable. Returns
/// `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_poll(registry: *const voxshm_registry) -> voxshm_status {
    guard(|| arg(registry, "registry")?.inner.poll())
}

/// Waits up to `timeout_ms` (0: do not wait; negative: forever) until the
/// receiver has released every payload and acknowledged every retired
/// region. Returns `VOXSHM_TIMEOUT`, `VOXSHM_PEER_GONE` (the receiver went
/// away holding payloads: they were reclaimed, not released),
/// `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_wait_idle(
    registry: *const voxshm_registry,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| arg(registry, "registry")?.inner.wait_idle(timeout_ms))
}

/// Writes the registry's counters and limits to `*out` (whose
/// `struct_size` the caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_get_stats(
    registry: *const voxshm_registry,
    out_stats: *mut voxshm_registry_stats,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        out(out_stats, "out")?;
        let s = r.inner.stats();
        let o = r.inner.options();
        let v = voxshm_registry_stats {
            struct_size: size_of::<voxshm_registry_stats>(),
            regions: s.regions,
            mapped_bytes: s.mapped_bytes,
            budget: o.budget,
            keep_warm: o.keep_warm,
            live_leases: s.live_leases,
            allocations: s.allocations,
            open_fds: s.open_fds,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            regions_created: s.regions_created,
            regions_retired: s.regions_retired,
            payloads_published: s.payloads_published,
            payload_bytes_published: s.payload_bytes_published,
            minor_faults: s.minor_faults,
        };
        write_versioned(out_stats, v, size_of::<voxshm_registry_stats>())
    })
}

// ---------------------------------------------------------------------------
// Attachments (receiver)

fn attachments_defaults() -> voxshm_attachments_options {
    let d = AttachmentsOptions::default();
    voxshm_attachments_options {
        struct_size: size_of::<voxshm_attachments_options>(),
        max_mappings: d.limits.max_mappings,
        flags: 0,
        max_mapped_bytes: d.limits.max_mapped_bytes,
        max_single_mapping: d.limits.max_single_mapping,
        send_timeout_ms: d.send_timeout_ms,
    }
}

/// Fills `*options` with the defaults (and its `struct_size`).
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_options_init(
    options: *mut voxshm_attachments_options,
) -> voxshm_status {
    guard(|| {
        out(options, "options")?;
        put(options, attachments_defaults());
        Ok(())
    })
}

/// Creates the receiver's side over the connected socket `fd` and says
/// HELLO to the sender. `options` may be NULL for the defaults. On success
/// the handle owns `fd` (closed by `voxshm_attachments_free`) and `*out` is
/// the new handle; on failure `fd` is still the caller's.
/// Returns `VOXSHM_INVALID_ARGUMENT` (NULL out, fd not an `AF_UNIX`
/// `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad options),
/// `VOXSHM_RESOURCE_EXHAUSTED`, `VOXSHM_TIMEOUT` (channel full).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_new(
    fd: c_int,
    options: *const voxshm_attachments_options,
    out_attachments: *mut *mut voxshm_attachments,
) -> voxshm_status {
    guard(|| {
        out(out_attachments, "out_attachments")?;
        let o = if options.is_null() {
            attachments_defaults()
        } else {
            read_versioned(
                options,
                attachments_defaults(),
                size_of::<voxshm_attachments_options>(),
            )?
        };
        if o.flags & !(VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED | VOXSHM_ATTACHMENTS_VOX_COMPAT) != 0 {
            return Err(invalid(&format!(
                "unknown attachments flags {:#x}",
                o.flags
            )));
        }
        let opts = AttachmentsOptions {
            limits: Limits {
                max_mappings: o.max_mappings,
                max_mapped_bytes: o.max_mapped_bytes,
                max_single_mapping: o.max_single_mapping,
                accept_unsealed: o.flags & VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED != 0,
            },
            send_timeout_ms: o.send_timeout_ms,
            vox_compat: o.flags & VOXSHM_ATTACHMENTS_VOX_COMPAT != 0,
        };
        let chan = take_fd(fd)?;
        let a = Attachments::new_or_return(chan, opts).map_err(give_back)?;
        put(
            out_attachments,
            Box::into_raw(Box::new(voxshm_attachments { inner: a })),
        );
        Ok(())
    })
}

/// Frees the handle: closes the channel (the sender sees the receiver go
/// and reclaims everything it leased) and unmaps every region. Every view
/// from it becomes invalid. NULL is a no-op. No other thread may be using
/// the handle.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_free(attachments: *mut voxshm_attachments) {
    if !attachments.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: a pointer from voxshm_attachments_new, freed once.
            drop(unsafe { Box::from_raw(attachments) })
        }));
    }
}

/// The channel fd, for poll/epoll: readable when the sender sent something
/// or hung up; then call `voxshm_attachments_recv` with timeout 0 or
/// `voxshm_attachments_poll`. -1 for NULL. The fd stays the handle's: do
/// not close or read it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_fd(attachments: *const voxshm_attachments) -> c_int {
    // SAFETY: NULL or a live handle from voxshm_attachments_new.
    unsafe { attachments.as_ref() }.map_or(-1, |a| a.inner.fd())
}

/// Takes the next payload the sender sent with `voxshm_registry_send`,
/// waiting up to `timeout_ms` (0: do not wait; negative: forever), and
/// writes its view to `*out`. Release the view when done with it.
/// Returns `VOXSHM_TIMEOUT` (nothing arrived), `VOXSHM_PEER_GONE` (the
/// sender is gone and everything it sent was taken), `VOXSHM_PROTOCOL`
/// (poisoned channel); a reference that does not resolve returns the
/// `voxshm_attachments_resolve` status (for a reference into a region whose
/// announcement was rejected: the rejection, e.g. `VOXSHM_NOT_SEALED`) and
/// is handed back to the sender. Only the fate of the reference it took is
/// reported, never another region's.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_recv(
    attachments: *const voxshm_attachments,
    timeout_ms: i64,
    out_view: *mut voxshm_view,
) -> voxshm_status {
    guard(|| {
        let a = arg(attachments, "attachments")?;
        out(out_view, "out_view")?;
        let v = a.inner.recv(timeout_ms)?;
        put(out_view, from_view(v));
        Ok(())
    })
}

/// Resolves a reference that came over a transport of the caller's own
/// into a view, waiting up to `timeout_ms` for its region to arrive. Checks
/// in this order, each with its own status: `VOXSHM_PROTOCOL` (poisoned),
/// `VOXSHM_UNKNOWN_MAP`, `VOXSHM_STALE_GENERATION`, `VOXSHM_ZERO_LENGTH`,
/// `VOXSHM_REF_OVERFLOW`, `VOXSHM_OUT_OF_BOUNDS`; `VOXSHM_TIMEOUT` when a
/// positive timeout passed without the region arriving (with timeout 0:
/// `VOXSHM_UNKNOWN_MAP` at once). A reference into a region whose
/// announcement was rejected fails at once with that rejection
/// (`VOXSHM_NOT_REGULAR_FILE`, `VOXSHM_FILE_TOO_SHORT`, `VOXSHM_NOT_SEALED`,
/// `VOXSHM_TOO_MANY_MAPPINGS`, `VOXSHM_MAPPED_BYTES_LIMIT`,
/// `VOXSHM_MAPPING_TOO_LARGE`, `VOXSHM_STALE_GENERATION`,
/// `VOXSHM_RESOURCE_EXHAUSTED` when this process had no free fd to receive
/// it); other regions' rejections are not reported here.
///
/// After the sender is gone: once this function has been called on a
/// handle, every region the sender had announced stays mapped, and its
/// references resolve, until the handle is freed (references may still be
/// travelling over your own transport); a handle that never called it
/// unmaps a gone sender's region as soon as no view and no queued reference
/// needs it. A reference into a region that is not mapped then fails with
/// `VOXSHM_PEER_GONE`. Also returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_resolve(
    attachments: *const voxshm_attachments,
    reference: *const voxshm_ref,
    timeout_ms: i64,
    out_view: *mut voxshm_view,
) -> voxshm_status {
    guard(|| {
        let a = arg(attachments, "attachments")?;
        let r = arg(reference, "ref")?;
        out(out_view, "out_view")?;
        let v = a.inner.resolve(&Ref::from(*r), timeout_ms)?;
        put(out_view, from_view(v));
        Ok(())
    })
}

/// Releases a view: its bytes must not be read any more. When it was the
/// last view of its reference the sender gets the space back. Works after
/// the sender has gone too. Returns `VOXSHM_INVALID_VIEW` (never resolved,
/// or released already), `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_release(
    attachments: *const voxshm_attachments,
    view: *const voxshm_view,
) -> voxshm_status {
    guard(|| {
        let a = arg(attachments, "attachments")?;
        let v = arg(view, "view")?;
        a.inner.release(&to_view(v))
    })
}

/// Applies whatever the sender sent (regions, references, retirements,
/// hang-up) without waiting, and sends pending releases. Reads at most 1024
/// messages per call (the fd stays readable if more wait). Returns the
/// first region rejection it met (the statuses listed under
/// `voxshm_attachments_resolve`) after applying everything else,
/// `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_poll(attachments: *const voxshm_attachments) -> voxshm_status {
    guard(|| arg(attachments, "attachments")?.inner.poll())
}

/// Writes the handle's counters and limits to `*out` (whose `struct_size`
/// the caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_get_stats(
    attachments: *const voxshm_attachments,
    out_stats: *mut voxshm_attachments_stats,
) -> voxshm_status {
    guard(|| {
        let a = arg(attachments, "attachments")?;
        out(out_stats, "out")?;
        let s = a.inner.stats();
        let l = a.inner.options().limits;
        let v = voxshm_attachments_stats {
            struct_size: size_of::<voxshm_attachments_stats>(),
            mappings: s.mappings,
            mapped_bytes: s.mapped_bytes,
            max_mappings: l.max_mappings as u64,
            max_mapped_bytes: l.max_mapped_bytes,
            max_single_mapping: l.max_single_mapping,
            live_views: s.live_views,
            queued_refs: s.queued_refs,
            pending_releases: s.pending_releases,
            open_fds: s.open_fds,
            messages_sent: s.messages_sent,
            bytes_sent: s.bytes_sent,
            messages_received: s.messages_received,
            bytes_received: s.bytes_received,
            attaches_received: s.attaches_received,
            attaches_rejected: s.attaches_rejected,
            refs_received: s.refs_received,
            releases_sent: s.releases_sent,
            regions_retired: s.regions_retired,
            minor_faults: s.minor_faults,
        };
        write_versioned(out_stats, v, size_of::<voxshm_attachments_stats>())
    })
}

// The frozen first-version sizes must match the structs as first shipped.
const _: () = {
    assert!(size_of::<voxshm_listener_options>() == VOXSHM_LISTENER_OPTIONS_V1_SIZE);
    assert!(size_of::<voxshm_connect_options>() == VOXSHM_CONNECT_OPTIONS_V1_SIZE);
};
