//! The receiver's handle: options, views, stats and the attachments
//! functions. Conversions between these C structs and the core's types are
//! written once each, as `From`/`TryFrom` impls.

use std::ffi::c_int;
use std::mem::size_of;

use super::common::{
    Versioned, arg, check_fd, free_handle, guard, handle_fd, invalid, new_handle, options_init,
    out, put, read_options, take_fd, write_stats,
};
use super::refs::voxshm_ref;
use super::status::voxshm_status;
use crate::attachments::{Attachments, AttachmentsOptions, AttachmentsStats, View};
use crate::error::Error;
use crate::region::Limits;
use crate::wire::Ref;

/// Attachments option flag: accept regions without `F_SEAL_SHRINK |
/// F_SEAL_GROW` (what a vox sender sends). Such a sender could shrink the
/// file under the receiver, which then dies of SIGBUS on access.
pub const VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED: u32 = 1;
/// Attachments option flag: talk to a vox-shm sender: send no HELLO and no
/// RELEASE; implies accepting unsealed regions. A vox sender never retires
/// a region, so at `max_mappings` or `max_mapped_bytes` the mappings no
/// view holds are unmapped to make room (used-up ones first, then the
/// least recently used); a later reference into one fails with
/// `VOXSHM_TOO_MANY_MAPPINGS`.
pub const VOXSHM_ATTACHMENTS_VOX_COMPAT: u32 = 2;
/// Attachments option flag: `voxshm_attachments_get_stats` also fills
/// `minor_faults` (one `getrusage` system call). Without it that field is
/// 0 and the call makes no system call, so it can be watched in a loop.
pub const VOXSHM_ATTACHMENTS_STATS_FAULTS: u32 = 4;
/// Attachments option flag: do not offer the ring path; every reference
/// and release travels over the socket, as with a 0.1 peer.
pub const VOXSHM_ATTACHMENTS_NO_RING: u32 = 8;

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
    /// How long a blocking `voxshm_attachments_recv` spins, watching the
    /// ring, before it sleeps (microseconds; default 50; 0: never spin).
    /// Added after the first version of this struct.
    pub spin_us: u32,
    /// Reserved, 0.
    pub reserved: u32,
}

/// Counters and limits of an attachments handle. Set `struct_size` to
/// `sizeof(voxshm_attachments_stats)` before calling
/// `voxshm_attachments_get_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_attachments_stats {
    /// Set by the caller to the size of this struct.
    pub struct_size: usize,
    /// Regions currently mapped.
    pub mappings: u64,
    /// Bytes of those regions.
    pub mapped_bytes: u64,
    /// The configured most regions mapped at once.
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
    /// Minor page faults of the whole process so far (`getrusage`), with
    /// the `*_STATS_FAULTS` option flag; 0 without it.
    pub minor_faults: u64,
    /// 1 once references and releases travel through the ring segment
    /// (both sides offered it); 0 while they use the socket. Added after
    /// the first version of this struct.
    pub ring: u64,
    /// Wake-up messages sent to a sender that was asleep waiting for
    /// releases or for room in the ring. Added after the first version of
    /// this struct.
    pub wakeups_sent: u64,
    /// Regions unmapped to make room for newer ones (vox compatibility: a
    /// vox sender never retires a region). Added after the first version
    /// of this struct.
    pub regions_evicted: u64,
}

/// The receiver's side: maps the sender's regions read-only and turns
/// references into views. Create with `voxshm_attachments_new`, end with
/// `voxshm_attachments_free`. Safe to use from several threads at once.
pub struct voxshm_attachments {
    pub(super) inner: Attachments,
}

/// Fills `*options` with the defaults (and its `struct_size`).
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_options_init(
    options: *mut voxshm_attachments_options,
) -> voxshm_status {
    options_init(options)
}

/// Creates the receiver's side over the connected socket `fd` and says
/// HELLO to the sender. `options` may be NULL for the defaults. On success
/// the handle owns `fd` (closed by `voxshm_attachments_free`) and `*out` is
/// the new handle; on failure `fd` is still the caller's.
/// Returns `VOXSHM_INVALID_ARGUMENT` (NULL out, fd not an `AF_UNIX`
/// `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad options),
/// `VOXSHM_RESOURCE_EXHAUSTED`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_new(
    fd: c_int,
    options: *const voxshm_attachments_options,
    out_attachments: *mut *mut voxshm_attachments,
) -> voxshm_status {
    guard(|| {
        out(out_attachments, "out_attachments")?;
        let opts = AttachmentsOptions::try_from(read_options(options)?)?;
        // Everything that can fail happens before the fd is taken, and the
        // fd is looked at before anything else is opened.
        check_fd(fd)?;
        let say_hello = !opts.vox_compat;
        let ready = Attachments::prepare(opts)?;
        if say_hello {
            room_for_hello(fd)?;
        }
        let inner = ready.start(take_fd(fd)?);
        new_handle(out_attachments, voxshm_attachments { inner });
        Ok(())
    })
}

/// Frees the handle: closes the channel (the sender sees the receiver go
/// and reclaims everything it leased) and unmaps every region. Every view
/// from it becomes invalid. Of a duplex channel (`voxshm_duplex_new`) whose
/// registry lives on, the regions are unmapped and the views released to
/// the peer at once, every payload the peer sends later is released as it
/// arrives, and the channel closes when the registry is freed too. NULL is
/// a no-op. No other thread may be using the handle.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_free(attachments: *mut voxshm_attachments) {
    free_handle(attachments)
}

/// The channel fd, for poll/epoll: readable when the sender sent something
/// or hung up; then call `voxshm_attachments_recv` with timeout 0 or
/// `voxshm_attachments_poll`. -1 for NULL. The fd stays the handle's: do
/// not close or read it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_attachments_fd(attachments: *const voxshm_attachments) -> c_int {
    handle_fd(attachments, |a| a.inner.fd())
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
        put(out_view, v.into());
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
        put(out_view, v.into());
        Ok(())
    })
}

/// Releases a view: its bytes must not be read any more. When it was the
/// last view of its reference the sender gets the space back. The release
/// is sent at once; only if the channel is full does this wait, up to the
/// configured `send_timeout_ms` (reading what the sender sends meanwhile),
/// and then keeps the release to send it with a later call. Works after
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
        a.inner.release(&(*v).into())
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
        let stats = (a.inner.stats(), &a.inner.options().limits);
        write_stats(out_stats, voxshm_attachments_stats::from(stats))
    })
}

/// The receiver says HELLO when it is created: a channel with no room for
/// it fails the creation while the fd is still the caller's.
pub(super) fn room_for_hello(fd: c_int) -> Result<(), Error> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd; poll only reports on the fd.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n == 0 {
        return Err(Error::new(
            crate::error::Status::Timeout,
            "channel full: could not say HELLO",
        ));
    }
    Ok(())
}

/// Size of the first version of `voxshm_attachments_options`; callers
/// built against it keep working when fields are added.
pub const VOXSHM_ATTACHMENTS_OPTIONS_V1_SIZE: usize = 40;
/// Size of the first version of `voxshm_attachments_stats`.
pub const VOXSHM_ATTACHMENTS_STATS_V1_SIZE: usize = 160;

impl Versioned for voxshm_attachments_options {
    const V1_SIZE: usize = VOXSHM_ATTACHMENTS_OPTIONS_V1_SIZE;

    fn defaults() -> Self {
        let d = AttachmentsOptions::default();
        voxshm_attachments_options {
            struct_size: size_of::<voxshm_attachments_options>(),
            max_mappings: d.limits.max_mappings,
            flags: 0,
            max_mapped_bytes: d.limits.max_mapped_bytes,
            max_single_mapping: d.limits.max_single_mapping,
            send_timeout_ms: d.send_timeout_ms,
            spin_us: d.spin_us,
            reserved: 0,
        }
    }
}

impl TryFrom<voxshm_attachments_options> for AttachmentsOptions {
    type Error = Error;

    fn try_from(o: voxshm_attachments_options) -> Result<Self, Error> {
        let known = VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED
            | VOXSHM_ATTACHMENTS_VOX_COMPAT
            | VOXSHM_ATTACHMENTS_STATS_FAULTS
            | VOXSHM_ATTACHMENTS_NO_RING;
        if o.flags & !known != 0 {
            return Err(invalid(&format!(
                "unknown attachments flags {:#x}",
                o.flags
            )));
        }
        if o.reserved != 0 {
            return Err(invalid("voxshm_attachments_options.reserved must be 0"));
        }
        Ok(AttachmentsOptions {
            limits: Limits {
                max_mappings: o.max_mappings,
                max_mapped_bytes: o.max_mapped_bytes,
                max_single_mapping: o.max_single_mapping,
                accept_unsealed: o.flags & VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED != 0,
            },
            send_timeout_ms: o.send_timeout_ms,
            vox_compat: o.flags & VOXSHM_ATTACHMENTS_VOX_COMPAT != 0,
            stats_faults: o.flags & VOXSHM_ATTACHMENTS_STATS_FAULTS != 0,
            ring: o.flags & VOXSHM_ATTACHMENTS_NO_RING == 0,
            spin_us: o.spin_us,
        })
    }
}

impl Versioned for voxshm_attachments_stats {
    const V1_SIZE: usize = VOXSHM_ATTACHMENTS_STATS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_attachments_stats {
            struct_size: size_of::<voxshm_attachments_stats>(),
            ..Default::default()
        }
    }
}

impl From<(AttachmentsStats, &Limits)> for voxshm_attachments_stats {
    fn from((s, l): (AttachmentsStats, &Limits)) -> Self {
        voxshm_attachments_stats {
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
            ring: u64::from(s.ring),
            wakeups_sent: s.wakeups_sent,
            regions_evicted: s.regions_evicted,
        }
    }
}

impl From<View> for voxshm_view {
    fn from(v: View) -> Self {
        voxshm_view {
            data: v.data,
            len: v.len as usize,
            reference: v.r.into(),
        }
    }
}

impl From<voxshm_view> for View {
    fn from(v: voxshm_view) -> Self {
        View {
            data: v.data,
            len: v.len as u64,
            r: Ref::from(v.reference),
        }
    }
}

// The frozen first-version sizes must match the structs as first shipped.
const _: () = {
    assert!(size_of::<voxshm_attachments_options>() == VOXSHM_ATTACHMENTS_OPTIONS_V1_SIZE + 8);
    assert!(size_of::<voxshm_attachments_stats>() == VOXSHM_ATTACHMENTS_STATS_V1_SIZE + 24);
};
