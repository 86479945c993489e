//! The sender's handle: options, allocations, stats and the registry
//! functions. Conversions between these C structs and the core's types are
//! written once each, as `From`/`TryFrom` impls.

use std::mem::size_of;

use super::common::{
    Versioned, arg, check_fd, free_handle, guard, handle_fd, invalid, new_handle, options_init,
    out, put, read_options, take_fd, write_stats,
};
use super::refs::voxshm_ref;
use super::status::voxshm_status;
use crate::error::Error;
use crate::registry::{Allocation, Registry, RegistryOptions, RegistryStats};
use std::ffi::c_int;

/// Registry option flag: talk to a vox-shm receiver. No extension
/// messages are sent, regions are not sealed with `F_SEAL_FUTURE_WRITE`
/// (a vox receiver maps them read-write), `voxshm_registry_send` is
/// unavailable, and no release comes back over the channel: end each lease
/// with `voxshm_registry_release` when the receiver, over your own
/// transport, says it is done with it.
pub const VOXSHM_REGISTRY_VOX_COMPAT: u32 = 1;
/// Registry option flag: back regions with unlinked temp files instead of
/// memfds (they cannot be sealed; the receiver must accept unsealed
/// regions).
pub const VOXSHM_REGISTRY_FORCE_TEMPFILE: u32 = 2;
/// Registry option flag: `voxshm_registry_get_stats` also fills
/// `minor_faults` (one `getrusage` system call). Without it that field is
/// 0 and the call makes no system call, so it can be watched in a loop.
pub const VOXSHM_REGISTRY_STATS_FAULTS: u32 = 4;
/// Registry option flag: do not offer the ring path; every reference and
/// release travels over the socket, as with a 0.1 peer.
pub const VOXSHM_REGISTRY_NO_RING: u32 = 8;

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
    /// Most bytes of regions held at once (default 1 GiB; rounded up to
    /// whole pages). When it is exhausted, alloc waits for releases, then
    /// fails with `VOXSHM_NO_SPACE`.
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
    /// Most bytes of published payloads the receiver has not released yet
    /// (default 64 MiB; 0: no limit). When the next payload would go over
    /// it, alloc waits for releases (a payload alone may be larger): the
    /// queue, and the latency, of a producer faster than its consumer stay
    /// a few payloads. Added after the first version of this struct.
    pub max_in_flight_bytes: u64,
    /// Entries of each of the ring segment's two rings (default 1024; a
    /// power of two, 16..=1048576): how many references can wait for the
    /// receiver before `voxshm_registry_send` waits for room. Added after
    /// the first version of this struct.
    pub ring_capacity: u32,
    /// How long a blocking call spins, watching the ring, before it sleeps
    /// (microseconds; default 50; 0: never spin). Spinning saves the
    /// wake-up's latency when the receiver answers quickly, and costs CPU
    /// when it does not. Added after the first version of this struct.
    pub spin_us: u32,
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
    /// The configured budget.
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
    /// Minor page faults of the whole process so far (`getrusage`), with
    /// the `*_STATS_FAULTS` option flag; 0 without it.
    pub minor_faults: u64,
    /// Releases from the receiver that named no payload it held (released
    /// twice, or never sent) and were ignored. Added after the first
    /// version of this struct.
    pub ignored_releases: u64,
    /// 1 once references and releases travel through the ring segment
    /// (both sides offered it); 0 while they use the socket. Added after
    /// the first version of this struct.
    pub ring: u64,
    /// Wake-up messages sent to a receiver that was asleep waiting for the
    /// ring. Added after the first version of this struct.
    pub wakeups_sent: u64,
}

/// The sender's side: owns regions, hands out payload space, sends
/// references. Create with `voxshm_registry_new`, end with
/// `voxshm_registry_free`. Safe to use from several threads at once.
pub struct voxshm_registry {
    pub(super) inner: Registry,
}

/// Fills `*options` with the defaults (and its `struct_size`).
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_options_init(
    options: *mut voxshm_registry_options,
) -> voxshm_status {
    options_init(options)
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
        let opts = RegistryOptions::try_from(read_options(options)?)?;
        // Everything that can fail happens before the fd is taken, and the
        // fd is looked at before anything else is opened.
        check_fd(fd)?;
        let ready = Registry::prepare(opts)?;
        let inner = ready.start(take_fd(fd)?);
        new_handle(out_registry, voxshm_registry { inner });
        Ok(())
    })
}

/// Frees the registry: closes its channel (the receiver sees the sender
/// go) and its regions. Allocations from it become invalid; views the
/// receiver holds stay readable. Of a duplex channel (`voxshm_duplex_new`),
/// the channel and regions are closed when its attachments are freed too:
/// until then the peer is not told (the payloads it holds stay readable,
/// its `recv` sees `VOXSHM_PEER_GONE` only then).
/// NULL is a no-op. No other thread may be using the registry.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_free(registry: *mut voxshm_registry) {
    free_handle(registry)
}

/// The channel fd, for poll/epoll: readable when the receiver sent
/// releases or hung up; then call `voxshm_registry_poll`. -1 for NULL. The
/// fd stays the registry's: do not close or read it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_fd(registry: *const voxshm_registry) -> c_int {
    handle_fd(registry, |r| r.inner.fd())
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
        put(
            out_allocation,
            r.inner.alloc(len as u64, timeout_ms)?.into(),
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
        let reference = r.inner.publish(&(*a).into(), len as u64)?;
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
    voxshm_registry_send_timeout(registry, allocation, len, VOXSHM_TIMEOUT_CONFIGURED)
}

/// `voxshm_registry_send` with its own timeout, by the rule of every call:
/// 0 does not wait, a negative timeout waits forever; pass
/// `VOXSHM_TIMEOUT_CONFIGURED` for the configured `send_timeout_ms`.
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
        r.inner.send(&(*a).into(), len as u64, timeout_ms)
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
        r.inner.abort(&(*a).into())
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
/// region (a receiver acknowledges when it next calls voxshm, so right
/// after the last release this can still wait for that; the
/// `VOXSHM_TIMEOUT` message says which of the two it was waiting for).
/// Returns `VOXSHM_TIMEOUT`, `VOXSHM_PEER_GONE` (the receiver went away
/// holding payloads: they were reclaimed, not released), `VOXSHM_PROTOCOL`,
/// `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_wait_idle(
    registry: *const voxshm_registry,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| arg(registry, "registry")?.inner.wait_idle(timeout_ms))
}

/// Waits up to `timeout_ms` (0: do not wait, for an event loop; negative:
/// forever) until the receiver has released the payload `reference` names:
/// what `voxshm_registry_publish` returned, or, for a payload given to
/// `voxshm_registry_send`, `{a.map_id, a.map_generation, a.map_offset, len}`
/// of its allocation. Returns `VOXSHM_OK` once it is released (at once if
/// it already was, or if this registry never sent it), `VOXSHM_TIMEOUT`
/// while it is not, `VOXSHM_PEER_GONE` when the receiver went away holding
/// it (its space was reclaimed, not released), `VOXSHM_PROTOCOL`,
/// `VOXSHM_INVALID_ARGUMENT`. In an event loop: when `voxshm_registry_fd`
/// is readable, call this with timeout 0. If the space was released and
/// already taken again by a payload of the same length at the same place,
/// this waits for that one too: it never reports a release too early.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_wait_released(
    registry: *const voxshm_registry,
    reference: *const voxshm_ref,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        let reference = arg(reference, "ref")?;
        r.inner
            .wait_released(&crate::wire::Ref::from(*reference), timeout_ms)
    })
}

/// Ends the lease of the payload `reference` names (what
/// `voxshm_registry_publish` returned), as the receiver's release would, for
/// a vox receiver: with `VOXSHM_REGISTRY_VOX_COMPAT` references travel over
/// the caller's own transport and the receiver's releases over it too, or
/// not at all; without this call the budget would be a lifetime cap. Its
/// space is reused; the receiver must be done with it. Release each payload
/// once: a reference whose space now holds another payload of the same
/// length at the same place names that one. Returns
/// `VOXSHM_INVALID_ARGUMENT` for a reference that is not a published payload
/// this registry holds (released already and not reused, or never
/// published), or NULL; `VOXSHM_PEER_GONE` when the receiver went away
/// holding it (it was reclaimed); `VOXSHM_UNSUPPORTED` without vox
/// compatibility (a voxshm receiver releases its payloads itself);
/// `VOXSHM_PROTOCOL`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_registry_release(
    registry: *const voxshm_registry,
    reference: *const voxshm_ref,
) -> voxshm_status {
    guard(|| {
        let r = arg(registry, "registry")?;
        let reference = arg(reference, "ref")?;
        r.inner.release(&crate::wire::Ref::from(*reference))
    })
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
        write_stats(
            out_stats,
            voxshm_registry_stats::from((r.inner.stats(), r.inner.options())),
        )
    })
}

/// A timeout argument that means "the configured `send_timeout_ms`"
/// (`voxshm_registry_send_timeout`); every other negative timeout means
/// "wait forever". It is `INT64_MIN`.
pub const VOXSHM_TIMEOUT_CONFIGURED: i64 = i64::MIN;

/// Size of the first version of `voxshm_registry_options`; callers built
/// against it keep working when fields are added.
pub const VOXSHM_REGISTRY_OPTIONS_V1_SIZE: usize = 48;
/// Size of the first version of `voxshm_registry_stats`.
pub const VOXSHM_REGISTRY_STATS_V1_SIZE: usize = 136;

impl Versioned for voxshm_registry_options {
    const V1_SIZE: usize = VOXSHM_REGISTRY_OPTIONS_V1_SIZE;

    fn defaults() -> Self {
        let d = RegistryOptions::default();
        voxshm_registry_options {
            struct_size: size_of::<voxshm_registry_options>(),
            region_size: d.region_size,
            budget: d.budget,
            keep_warm: d.keep_warm,
            send_timeout_ms: d.send_timeout_ms,
            flags: 0,
            max_in_flight_bytes: d.max_in_flight_bytes,
            ring_capacity: d.ring_capacity,
            spin_us: d.spin_us,
        }
    }
}

impl TryFrom<voxshm_registry_options> for RegistryOptions {
    type Error = Error;

    fn try_from(o: voxshm_registry_options) -> Result<Self, Error> {
        let known = VOXSHM_REGISTRY_VOX_COMPAT
            | VOXSHM_REGISTRY_FORCE_TEMPFILE
            | VOXSHM_REGISTRY_STATS_FAULTS
            | VOXSHM_REGISTRY_NO_RING;
        if o.flags & !known != 0 {
            return Err(invalid(&format!("unknown registry flags {:#x}", o.flags)));
        }
        Ok(RegistryOptions {
            region_size: o.region_size,
            budget: o.budget,
            keep_warm: o.keep_warm,
            max_in_flight_bytes: o.max_in_flight_bytes,
            send_timeout_ms: o.send_timeout_ms,
            vox_compat: o.flags & VOXSHM_REGISTRY_VOX_COMPAT != 0,
            force_tempfile: o.flags & VOXSHM_REGISTRY_FORCE_TEMPFILE != 0,
            stats_faults: o.flags & VOXSHM_REGISTRY_STATS_FAULTS != 0,
            ring: o.flags & VOXSHM_REGISTRY_NO_RING == 0,
            ring_capacity: o.ring_capacity,
            spin_us: o.spin_us,
        })
    }
}

impl Versioned for voxshm_registry_stats {
    const V1_SIZE: usize = VOXSHM_REGISTRY_STATS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_registry_stats {
            struct_size: size_of::<voxshm_registry_stats>(),
            ..Default::default()
        }
    }
}

impl From<(RegistryStats, &RegistryOptions)> for voxshm_registry_stats {
    fn from((s, o): (RegistryStats, &RegistryOptions)) -> Self {
        voxshm_registry_stats {
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
            ignored_releases: s.ignored_releases,
            ring: u64::from(s.ring),
            wakeups_sent: s.wakeups_sent,
        }
    }
}

impl From<Allocation> for voxshm_allocation {
    fn from(a: Allocation) -> Self {
        voxshm_allocation {
            data: a.data,
            capacity: a.capacity as usize,
            map_id: a.map_id,
            map_generation: a.map_generation,
            map_offset: a.map_offset,
            token: a.token,
        }
    }
}

impl From<voxshm_allocation> for Allocation {
    fn from(a: voxshm_allocation) -> Self {
        Allocation {
            data: a.data,
            capacity: a.capacity as u64,
            map_id: a.map_id,
            map_generation: a.map_generation,
            map_offset: a.map_offset,
            token: a.token,
        }
    }
}

// The frozen first-version sizes must match the structs as first shipped.
const _: () = {
    assert!(VOXSHM_TIMEOUT_CONFIGURED == crate::registry::TIMEOUT_CONFIGURED);
    assert!(size_of::<voxshm_registry_options>() == VOXSHM_REGISTRY_OPTIONS_V1_SIZE + 16);
    assert!(size_of::<voxshm_registry_stats>() == VOXSHM_REGISTRY_STATS_V1_SIZE + 24);
};
