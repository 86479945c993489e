//! References and MMAP_REF frames: the C view of a reference, and the
//! 32-byte frame that carries one over a transport of the caller's own.

use super::common::{arg, guard, invalid, out, put};
use super::status::voxshm_status;
use crate::wire::{self, Ref};

/// Length of an encoded MMAP_REF frame.
pub const VOXSHM_REF_FRAME_LEN: u32 = 32;

/// A reference to a published payload: `payload_len` bytes at
/// `map_offset` in region (`map_id`, `map_generation`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct voxshm_ref {
    /// Region number, reused only with a higher generation.
    pub map_id: u32,
    /// Generation of the region: a voxshm sender starts at 1 and raises it
    /// when it reuses a map_id; a vox sender always uses 0.
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
