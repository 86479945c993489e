//! The fan-out sender's handle: one producer, many receivers.

use std::ffi::c_int;
use std::mem::size_of;

use super::common::{
    Versioned, arg, check_fd, free_handle, guard, handle_fd, invalid, new_handle, options_init,
    out, put, read_options, take_fd, write_stats,
};
use super::registry::{voxshm_allocation, voxshm_registry_options};
use super::status::voxshm_status;
use crate::error::Error;
use crate::fanout::{
    Fanout, FanoutStats, MAX_RECEIVERS, Policy, ReceiverOptions, ReceiverStats, Target,
};
use crate::registry::RegistryOptions;

/// Receiver policy: a send waits (up to its timeout) while this receiver
/// cannot take the payload (its `max_in_flight` reached, or its ring
/// full).
pub const VOXSHM_POLICY_WAIT: u32 = 0;
/// Receiver policy: this receiver misses a payload it cannot take now
/// (counted in its `skipped`); the other receivers are not delayed. With
/// `max_in_flight` 1: a "latest frame only" consumer.
pub const VOXSHM_POLICY_SKIP: u32 = 1;
/// The `receiver` of `voxshm_fanout_send` that means every receiver
/// (receiver ids start at 1).
pub const VOXSHM_ALL_RECEIVERS: u32 = 0;
/// Most receivers one fan-out handle feeds at once.
pub const VOXSHM_FANOUT_MAX_RECEIVERS: u32 = MAX_RECEIVERS as u32;

/// One receiver's terms. Fill with `voxshm_receiver_options_init`, then
/// change fields. `struct_size` must stay as init set it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct voxshm_receiver_options {
    /// `sizeof(voxshm_receiver_options)`, set by init.
    pub struct_size: usize,
    /// Most payloads this receiver may hold at once (default 0: no limit
    /// but the budget). Give an untrusted or slow receiver a limit: one
    /// that stops reading otherwise holds space until the budget is gone.
    pub max_in_flight: u32,
    /// `VOXSHM_POLICY_WAIT` (default) or `VOXSHM_POLICY_SKIP`.
    pub policy: u32,
}

/// One receiver's counters. Set `struct_size` to
/// `sizeof(voxshm_receiver_stats)` before calling
/// `voxshm_fanout_get_receiver_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_receiver_stats {
    /// Set by the caller to the size of this struct.
    pub struct_size: usize,
    /// Payloads it holds now.
    pub in_flight: u64,
    /// Payloads delivered to it.
    pub delivered: u64,
    /// Payloads it missed (skip policy, or unreachable at the time).
    pub skipped: u64,
    /// Payloads it released.
    pub released: u64,
    /// Bytes of the payloads delivered to it.
    pub bytes_delivered: u64,
    /// Payloads it held when it went away (reclaimed).
    pub reclaimed: u64,
    /// Releases of payloads it did not hold (ignored).
    pub ignored_releases: u64,
    /// Its id.
    pub id: u32,
    /// 1 once its HELLO was read (sends reach it), while it is connected.
    pub ready: u32,
    /// 1 once it hung up or broke the protocol: nothing reaches it any
    /// more; remove it with `voxshm_fanout_remove_receiver`.
    pub gone: u32,
    /// 1 while references and releases go through its ring segment.
    pub ring: u32,
}

/// Counters of a fan-out handle, over all receivers. Set `struct_size`
/// to `sizeof(voxshm_fanout_stats)` before calling
/// `voxshm_fanout_get_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct voxshm_fanout_stats {
    /// Set by the caller to the size of this struct.
    pub struct_size: usize,
    /// Receivers added and not removed (gone ones included).
    pub receivers: u64,
    /// Of those, gone.
    pub receivers_gone: u64,
    /// Regions currently held.
    pub regions: u64,
    /// Bytes of those regions (never more than the budget).
    pub mapped_bytes: u64,
    /// Payloads some receiver still holds.
    pub live_payloads: u64,
    /// Allocations neither sent nor aborted.
    pub allocations: u64,
    /// File descriptors this handle holds.
    pub open_fds: u64,
    /// Payloads sent so far (each written once, whatever the receivers).
    pub payloads_published: u64,
    /// Bytes of those payloads.
    pub payload_bytes_published: u64,
    /// Deliveries (a payload that reached 3 receivers counts 3).
    pub deliveries: u64,
    /// Payloads receivers missed, over all receivers.
    pub skips: u64,
    /// Regions created so far.
    pub regions_created: u64,
    /// Regions retired so far.
    pub regions_retired: u64,
    /// Messages sent on all channels.
    pub messages_sent: u64,
    /// Messages received on all channels.
    pub messages_received: u64,
}

/// One producer, many receivers: a payload is written once and delivered
/// to every receiver (or one chosen receiver); its space is reused when
/// the last of them released it or went away. Create with
/// `voxshm_fanout_new`, add receivers with `voxshm_fanout_add_receiver`,
/// end with `voxshm_fanout_free`. Safe to use from several threads at once.
/// Each receiver is an ordinary `voxshm_attachments` on the other end of
/// its channel.
pub struct voxshm_fanout {
    inner: Fanout,
}

/// Fills `*options` with the defaults (and its `struct_size`).
/// Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_receiver_options_init(
    options: *mut voxshm_receiver_options,
) -> voxshm_status {
    options_init(options)
}

/// Creates a fan-out sender with no receiver yet. `options` (the
/// registry's; NULL for the defaults) set the regions, budget, keep-warm,
/// `max_in_flight_bytes` (over all receivers), ring and spin; vox
/// compatibility is refused (`VOXSHM_UNSUPPORTED`). Returns
/// `VOXSHM_INVALID_ARGUMENT`, `VOXSHM_UNSUPPORTED`,
/// `VOXSHM_RESOURCE_EXHAUSTED`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_new(
    options: *const voxshm_registry_options,
    out_fanout: *mut *mut voxshm_fanout,
) -> voxshm_status {
    guard(|| {
        out(out_fanout, "out_fanout")?;
        let opts = RegistryOptions::try_from(read_options(options)?)?;
        new_handle(
            out_fanout,
            voxshm_fanout {
                inner: Fanout::new(opts)?,
            },
        );
        Ok(())
    })
}

/// Frees the handle: closes every receiver's channel (each sees the
/// sender go) and the regions; views receivers hold stay readable. NULL is
/// a no-op. No other thread may be using the handle.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_free(fanout: *mut voxshm_fanout) {
    free_handle(fanout)
}

/// The one fd to poll for all receivers (an epoll fd): readable when a
/// receiver sent releases or hung up; then call `voxshm_fanout_poll`. -1
/// for NULL. The fd stays the handle's: do not close or read it.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_fd(fanout: *const voxshm_fanout) -> c_int {
    handle_fd(fanout, |f| f.inner.fd())
}

/// Adds a receiver over the connected socket `fd` (from
/// `voxshm_listener_accept`, `voxshm_channel_pair`, ...; the receiver is a
/// `voxshm_attachments` at the other end) and writes its id (never reused,
/// never 0) to `*out_id`. Does not wait, and delays no send to the other
/// receivers: its HELLO is read now if it is there (a voxshm receiver says
/// it when created), or by a later call, and payloads sent from then on
/// reach it, each region's ATTACH before its first reference. A connection
/// that never says HELLO gets nothing and delays nobody. On success
/// the handle owns `fd`; on failure it is still the caller's. `options`
/// may be NULL for the defaults. Returns `VOXSHM_INVALID_ARGUMENT`,
/// `VOXSHM_RESOURCE_EXHAUSTED` (`VOXSHM_FANOUT_MAX_RECEIVERS` already: gone
/// receivers count until removed).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_add_receiver(
    fanout: *const voxshm_fanout,
    fd: c_int,
    options: *const voxshm_receiver_options,
    out_id: *mut u32,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        out(out_id, "out_id")?;
        let o = ReceiverOptions::try_from(read_options(options)?)?;
        check_fd(fd)?;
        match f.inner.add_receiver(take_fd(fd)?, o) {
            Ok(id) => {
                put(out_id, id);
                Ok(())
            }
            Err((e, chan)) => {
                // Still the caller's: not closed.
                std::mem::forget(chan.into_fd());
                Err(e)
            }
        }
    })
}

/// Waits up to `timeout_ms` (0: do not wait; negative: forever) until
/// receiver `id` said HELLO: payloads sent from then on reach it (a
/// voxshm receiver says it when its attachments are created; one added
/// before that misses what is sent meanwhile). Returns `VOXSHM_TIMEOUT`,
/// `VOXSHM_PEER_GONE` (it went away first), `VOXSHM_INVALID_ARGUMENT`
/// (unknown id).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_wait_ready(
    fanout: *const voxshm_fanout,
    id: u32,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| arg(fanout, "fanout")?.inner.wait_ready(id, timeout_ms))
}

/// Removes a receiver: it is told (its channel is shut for writing: its
/// `recv` says `VOXSHM_PEER_GONE`) and gets nothing more. What it holds
/// stays its own, since it may still be reading it, until it closes its
/// end (frees its attachments) or `send_timeout_ms` (at least 1 s) passed; then the space
/// comes back. Its id is unknown from now on. Returns
/// `VOXSHM_INVALID_ARGUMENT` (unknown id).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_remove_receiver(
    fanout: *const voxshm_fanout,
    id: u32,
) -> voxshm_status {
    guard(|| arg(fanout, "fanout")?.inner.remove_receiver(id))
}

/// Writes up to `capacity` receiver ids to `ids` and their number (all of
/// them, which may be more than `capacity`) to `*out_count`. `ids` may be
/// NULL when `capacity` is 0. Returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_receivers(
    fanout: *const voxshm_fanout,
    ids: *mut u32,
    capacity: usize,
    out_count: *mut usize,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        out(out_count, "out_count")?;
        if capacity > 0 {
            out(ids, "ids")?;
        }
        let all = f.inner.receivers();
        for (i, id) in all.iter().take(capacity).enumerate() {
            // SAFETY: the caller gives `capacity` writable u32 at `ids`,
            // checked non-NULL above, and i < capacity.
            unsafe { ids.add(i).write(*id) };
        }
        put(out_count, all.len());
        Ok(())
    })
}

/// Allocates `len` bytes of payload space (as `voxshm_registry_alloc`),
/// waiting up to `timeout_ms` for receivers to release space. Returns
/// `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE`, `VOXSHM_NO_SPACE`,
/// `VOXSHM_RESOURCE_EXHAUSTED`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_alloc(
    fanout: *const voxshm_fanout,
    len: usize,
    timeout_ms: i64,
    out_allocation: *mut voxshm_allocation,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        out(out_allocation, "out_allocation")?;
        put(
            out_allocation,
            f.inner.alloc(len as u64, timeout_ms)?.into(),
        );
        Ok(())
    })
}

/// Sends the first `len` bytes of `allocation`, written once, to every
/// receiver (`receiver` = `VOXSHM_ALL_RECEIVERS`) or to one (its id), and
/// writes how many receivers got it to `*out_delivered` (may be NULL).
/// Receivers with the wait policy that cannot take it now (at their
/// `max_in_flight`, their ring or socket full) are waited for, up to
/// `timeout_ms` (0: not at all; negative: forever;
/// `VOXSHM_TIMEOUT_CONFIGURED`: `send_timeout_ms`); those with the skip
/// policy miss it. Receivers whose HELLO was not read yet are not sent to.
/// 0 receivers is a success (its space is reused at once). On success the
/// allocation is consumed; on failure nobody got it and it is still the
/// caller's. A receiver found gone, or whose socket filled, while the
/// payload was being sent to others misses it (its `skipped` counts it).
/// Returns `VOXSHM_TIMEOUT` (a waiting receiver stayed full; the message
/// names it), `VOXSHM_PEER_GONE` (the one receiver named is gone),
/// `VOXSHM_INVALID_ALLOCATION`, `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE`,
/// `VOXSHM_INVALID_ARGUMENT` (unknown receiver id).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_send(
    fanout: *const voxshm_fanout,
    allocation: *const voxshm_allocation,
    len: usize,
    receiver: u32,
    timeout_ms: i64,
    out_delivered: *mut u32,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        let a = arg(allocation, "allocation")?;
        let target = if receiver == VOXSHM_ALL_RECEIVERS {
            Target::All
        } else {
            Target::One(receiver)
        };
        let n = f.inner.send(&(*a).into(), len as u64, target, timeout_ms)?;
        if !out_delivered.is_null() {
            put(out_delivered, n);
        }
        Ok(())
    })
}

/// Gives back an allocation that was never sent. Returns
/// `VOXSHM_INVALID_ALLOCATION`, `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_abort(
    fanout: *const voxshm_fanout,
    allocation: *const voxshm_allocation,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        let a = arg(allocation, "allocation")?;
        f.inner.abort(&(*a).into())
    })
}

/// Applies whatever the receivers sent (releases, acknowledgements,
/// hang-ups) without waiting. Call it when `voxshm_fanout_fd` is readable.
/// A receiver that went away, broke the protocol, or left a retirement
/// unacknowledged for `send_timeout_ms` (at least 1 s) is cut off alone (see its stats);
/// that is not an error of this call. Returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_poll(fanout: *const voxshm_fanout) -> voxshm_status {
    guard(|| arg(fanout, "fanout")?.inner.poll())
}

/// Waits up to `timeout_ms` until no receiver holds a payload and every
/// retired region was acknowledged (what receivers that went away held was
/// reclaimed, and counts as given back). Returns `VOXSHM_TIMEOUT`,
/// `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_wait_idle(
    fanout: *const voxshm_fanout,
    timeout_ms: i64,
) -> voxshm_status {
    guard(|| arg(fanout, "fanout")?.inner.wait_idle(timeout_ms))
}

/// Writes the handle's counters to `*out_stats` (whose `struct_size` the
/// caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_get_stats(
    fanout: *const voxshm_fanout,
    out_stats: *mut voxshm_fanout_stats,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        write_stats(out_stats, f.inner.stats().into())
    })
}

/// Writes receiver `id`'s counters to `*out_stats` (whose `struct_size`
/// the caller sets). Returns `VOXSHM_INVALID_ARGUMENT` (also for an
/// unknown id).
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_fanout_get_receiver_stats(
    fanout: *const voxshm_fanout,
    id: u32,
    out_stats: *mut voxshm_receiver_stats,
) -> voxshm_status {
    guard(|| {
        let f = arg(fanout, "fanout")?;
        out(out_stats, "out_stats")?;
        write_stats(out_stats, f.inner.receiver_stats(id)?.into())
    })
}

/// Size of the first version of `voxshm_receiver_options`.
pub const VOXSHM_RECEIVER_OPTIONS_V1_SIZE: usize = 16;
/// Size of the first version of `voxshm_receiver_stats`.
pub const VOXSHM_RECEIVER_STATS_V1_SIZE: usize = 80;
/// Size of the first version of `voxshm_fanout_stats`.
pub const VOXSHM_FANOUT_STATS_V1_SIZE: usize = 128;

impl Versioned for voxshm_receiver_options {
    const V1_SIZE: usize = VOXSHM_RECEIVER_OPTIONS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_receiver_options {
            struct_size: size_of::<voxshm_receiver_options>(),
            max_in_flight: 0,
            policy: VOXSHM_POLICY_WAIT,
        }
    }
}

impl TryFrom<voxshm_receiver_options> for ReceiverOptions {
    type Error = Error;

    fn try_from(o: voxshm_receiver_options) -> Result<Self, Error> {
        let policy = match o.policy {
            VOXSHM_POLICY_WAIT => Policy::Wait,
            VOXSHM_POLICY_SKIP => Policy::Skip,
            p => return Err(invalid(&format!("unknown receiver policy {p}"))),
        };
        Ok(ReceiverOptions {
            max_in_flight: o.max_in_flight,
            policy,
        })
    }
}

impl Versioned for voxshm_receiver_stats {
    const V1_SIZE: usize = VOXSHM_RECEIVER_STATS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_receiver_stats {
            struct_size: size_of::<voxshm_receiver_stats>(),
            ..Default::default()
        }
    }
}

impl Versioned for voxshm_fanout_stats {
    const V1_SIZE: usize = VOXSHM_FANOUT_STATS_V1_SIZE;

    fn defaults() -> Self {
        voxshm_fanout_stats {
            struct_size: size_of::<voxshm_fanout_stats>(),
            ..Default::default()
        }
    }
}

impl From<ReceiverStats> for voxshm_receiver_stats {
    fn from(s: ReceiverStats) -> Self {
        voxshm_receiver_stats {
            struct_size: size_of::<voxshm_receiver_stats>(),
            in_flight: s.in_flight,
            delivered: s.delivered,
            skipped: s.skipped,
            released: s.released,
            bytes_delivered: s.bytes_delivered,
            reclaimed: s.reclaimed,
            ignored_releases: s.ignored_releases,
            id: s.id,
            ready: u32::from(s.ready),
            gone: u32::from(s.gone),
            ring: u32::from(s.ring),
        }
    }
}

impl From<FanoutStats> for voxshm_fanout_stats {
    fn from(s: FanoutStats) -> Self {
        voxshm_fanout_stats {
            struct_size: size_of::<voxshm_fanout_stats>(),
            receivers: s.receivers,
            receivers_gone: s.receivers_gone,
            regions: s.regions,
            mapped_bytes: s.mapped_bytes,
            live_payloads: s.live_payloads,
            allocations: s.allocations,
            open_fds: s.open_fds,
            payloads_published: s.payloads_published,
            payload_bytes_published: s.payload_bytes_published,
            deliveries: s.deliveries,
            skips: s.skips,
            regions_created: s.regions_created,
            regions_retired: s.regions_retired,
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
        }
    }
}

// The frozen first-version sizes are these structs as first shipped.
const _: () = {
    assert!(size_of::<voxshm_receiver_options>() == VOXSHM_RECEIVER_OPTIONS_V1_SIZE);
    assert!(size_of::<voxshm_receiver_stats>() == VOXSHM_RECEIVER_STATS_V1_SIZE);
    assert!(size_of::<voxshm_fanout_stats>() == VOXSHM_FANOUT_STATS_V1_SIZE);
};
