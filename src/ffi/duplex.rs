//! Duplex channels: a registry and an attachments over one socket, so each
//! side of the channel both sends and receives.

use std::ffi::c_int;

use super::attachments::{room_for_hello, voxshm_attachments};
use super::common::{check_fd, guard, invalid, new_handle, out, read_options, take_fd};
use super::registry::voxshm_registry;
use super::status::voxshm_status;
use crate::attachments::AttachmentsOptions;
use crate::conn;
use crate::registry::RegistryOptions;

/// Makes both handles of a duplex channel over the connected socket `fd`:
/// a registry that sends to the peer and an attachments that receives
/// from it, on the one socket. The peer makes a duplex channel too (a
/// one-way peer is refused with `VOXSHM_PROTOCOL`). Each handle is used
/// with the usual registry and attachments functions, from any thread,
/// and freed with its own `*_free`; the channel closes when both are
/// freed. Both handles return the same fd: when it is readable, call
/// `voxshm_attachments_recv` until `VOXSHM_TIMEOUT` and
/// `voxshm_registry_poll`. Both handles' message counters count the
/// channel's messages.
///
/// `registry_options` and `attachments_options` may be NULL for the
/// defaults. `VOXSHM_REGISTRY_VOX_COMPAT` and
/// `VOXSHM_ATTACHMENTS_VOX_COMPAT` must be set in both or in neither: with
/// them the channel talks to a vox-shm peer, which sends and receives on
/// one end of a datagram socket pair, and sends nothing but ATTACHes.
/// Without them the ring path runs in each direction (unless either
/// options turn it off), with the registry's `ring_capacity`.
///
/// On success the handles own `fd` and `*out_registry`,
/// `*out_attachments` are written; on failure neither is, and `fd` is still
/// the caller's. Returns `VOXSHM_INVALID_ARGUMENT` (NULL or identical
/// outs, fd not an `AF_UNIX` `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad
/// options, vox compatibility in one options only), `VOXSHM_TIMEOUT` (no
/// room in the channel for HELLO), `VOXSHM_RESOURCE_EXHAUSTED`.
#[unsafe(no_mangle)]
pub extern "C" fn voxshm_duplex_new(
    fd: c_int,
    registry_options: *const super::registry::voxshm_registry_options,
    attachments_options: *const super::attachments::voxshm_attachments_options,
    out_registry: *mut *mut voxshm_registry,
    out_attachments: *mut *mut voxshm_attachments,
) -> voxshm_status {
    guard(|| {
        out(out_registry, "out_registry")?;
        out(out_attachments, "out_attachments")?;
        if std::ptr::eq(out_registry.cast::<u8>(), out_attachments.cast::<u8>()) {
            return Err(invalid(
                "out_registry and out_attachments are the same pointer",
            ));
        }
        let ropts = RegistryOptions::try_from(read_options(registry_options)?)?;
        let aopts = AttachmentsOptions::try_from(read_options(attachments_options)?)?;
        // Everything that can fail happens before the fd is taken, and the
        // fd is looked at before anything else is opened.
        check_fd(fd)?;
        let say_hello = !ropts.vox_compat;
        let (r, a) = conn::prepare(ropts, aopts)?;
        if say_hello {
            room_for_hello(fd)?;
        }
        let (reg, att) = conn::start(take_fd(fd)?, r, a);
        new_handle(out_registry, voxshm_registry { inner: reg });
        new_handle(out_attachments, voxshm_attachments { inner: att });
        Ok(())
    })
}
