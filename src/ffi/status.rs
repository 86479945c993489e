//! The C view of the status model: `voxshm_status`, whose numbers are
//! ABI, converted from the core's `Status` in one place.

use crate::error::Status;

/// Outcome of a voxshm call. The numbers are part of the ABI: they are
/// never changed and never reused.
#[repr(C)]
#[allow(clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum voxshm_status {
    /// Success.
    VOXSHM_OK = 0,
    /// A required pointer was NULL, an options struct was malformed, or an
    /// argument was out of its documented range.
    VOXSHM_INVALID_ARGUMENT = 1,
    /// A length of zero was given where a payload length is required.
    VOXSHM_ZERO_LENGTH = 2,
    /// A length larger than can ever be satisfied (more than 4 GiB - 1, more
    /// than the sender's budget, or more than the allocation being published).
    VOXSHM_TOO_LARGE = 3,
    /// The sender's budget stayed exhausted until the timeout expired.
    VOXSHM_NO_SPACE = 4,
    /// Nothing arrived before the timeout expired (with a timeout of 0:
    /// nothing was ready).
    VOXSHM_TIMEOUT = 5,
    /// The peer closed the channel or died.
    VOXSHM_PEER_GONE = 6,
    /// The peer sent a malformed message; the channel is poisoned and every
    /// later call on it fails with this status.
    VOXSHM_PROTOCOL = 7,
    /// A reference names a map_id this receiver has never been sent.
    VOXSHM_UNKNOWN_MAP = 8,
    /// A reference names a known map_id but an older generation.
    VOXSHM_STALE_GENERATION = 9,
    /// map_offset + payload_len overflows.
    VOXSHM_REF_OVERFLOW = 10,
    /// map_offset + payload_len lies beyond the end of the mapping.
    VOXSHM_OUT_OF_BOUNDS = 11,
    /// An ATTACH carried an fd that is not a regular file.
    VOXSHM_NOT_REGULAR_FILE = 12,
    /// An ATTACH carried a file smaller than its mapping_length.
    VOXSHM_FILE_TOO_SHORT = 13,
    /// An ATTACH carried a file without the SHRINK and GROW seals and the
    /// receiver does not accept unsealed regions.
    VOXSHM_NOT_SEALED = 14,
    /// Mapping the region would exceed the receiver's maximum number of
    /// mappings.
    VOXSHM_TOO_MANY_MAPPINGS = 15,
    /// Mapping the region would exceed the receiver's maximum total of
    /// mapped bytes.
    VOXSHM_MAPPED_BYTES_LIMIT = 16,
    /// The region is larger than the receiver's maximum single mapping.
    VOXSHM_MAPPING_TOO_LARGE = 17,
    /// An ATTACH arrived for a map_id that is already mapped.
    VOXSHM_DUPLICATE_ATTACH = 18,
    /// The allocation is unknown to this registry, was already published,
    /// or was already aborted.
    VOXSHM_INVALID_ALLOCATION = 19,
    /// The view is unknown to these attachments or was already released.
    VOXSHM_INVALID_VIEW = 20,
    /// A system call failed; the message names it and the errno.
    VOXSHM_IO = 21,
    /// The system is out of a resource: memory, file descriptors, or space
    /// for shared memory.
    VOXSHM_RESOURCE_EXHAUSTED = 22,
    /// A bug in voxshm (a caught panic). Please report it.
    VOXSHM_INTERNAL = 23,
    /// The operation is not available in this mode (for example sending a
    /// reference over the channel to a vox peer that speaks no extension).
    VOXSHM_UNSUPPORTED = 24,
    /// A 32-byte MMAP_REF frame failed to decode.
    VOXSHM_BAD_FRAME = 25,
    /// The peer speaks a protocol version this library does not.
    VOXSHM_VERSION_MISMATCH = 26,
    /// The process at the other end of a connection runs as a user (or
    /// group) that the listener's or the connecting side's policy does not
    /// allow.
    VOXSHM_PEER_NOT_ALLOWED = 27,
    /// The socket name or path is held by a live listener.
    VOXSHM_ADDRESS_IN_USE = 28,
    /// Nobody listens at that name or path (yet): the producer has not
    /// started, or has gone (`ECONNREFUSED`, `ENOENT`). Retry later.
    VOXSHM_NO_LISTENER = 29,
}

impl From<Status> for voxshm_status {
    fn from(s: Status) -> Self {
        match s {
            Status::InvalidArgument => voxshm_status::VOXSHM_INVALID_ARGUMENT,
            Status::ZeroLength => voxshm_status::VOXSHM_ZERO_LENGTH,
            Status::TooLarge => voxshm_status::VOXSHM_TOO_LARGE,
            Status::NoSpace => voxshm_status::VOXSHM_NO_SPACE,
            Status::Timeout => voxshm_status::VOXSHM_TIMEOUT,
            Status::PeerGone => voxshm_status::VOXSHM_PEER_GONE,
            Status::Protocol => voxshm_status::VOXSHM_PROTOCOL,
            Status::UnknownMap => voxshm_status::VOXSHM_UNKNOWN_MAP,
            Status::StaleGeneration => voxshm_status::VOXSHM_STALE_GENERATION,
            Status::RefOverflow => voxshm_status::VOXSHM_REF_OVERFLOW,
            Status::OutOfBounds => voxshm_status::VOXSHM_OUT_OF_BOUNDS,
            Status::NotRegularFile => voxshm_status::VOXSHM_NOT_REGULAR_FILE,
            Status::FileTooShort => voxshm_status::VOXSHM_FILE_TOO_SHORT,
            Status::NotSealed => voxshm_status::VOXSHM_NOT_SEALED,
            Status::TooManyMappings => voxshm_status::VOXSHM_TOO_MANY_MAPPINGS,
            Status::MappedBytesLimit => voxshm_status::VOXSHM_MAPPED_BYTES_LIMIT,
            Status::MappingTooLarge => voxshm_status::VOXSHM_MAPPING_TOO_LARGE,
            Status::DuplicateAttach => voxshm_status::VOXSHM_DUPLICATE_ATTACH,
            Status::InvalidAllocation => voxshm_status::VOXSHM_INVALID_ALLOCATION,
            Status::InvalidView => voxshm_status::VOXSHM_INVALID_VIEW,
            Status::Io => voxshm_status::VOXSHM_IO,
            Status::ResourceExhausted => voxshm_status::VOXSHM_RESOURCE_EXHAUSTED,
            Status::Internal => voxshm_status::VOXSHM_INTERNAL,
            Status::Unsupported => voxshm_status::VOXSHM_UNSUPPORTED,
            Status::BadFrame => voxshm_status::VOXSHM_BAD_FRAME,
            Status::VersionMismatch => voxshm_status::VOXSHM_VERSION_MISMATCH,
            Status::PeerNotAllowed => voxshm_status::VOXSHM_PEER_NOT_ALLOWED,
            Status::AddressInUse => voxshm_status::VOXSHM_ADDRESS_IN_USE,
            Status::NoListener => voxshm_status::VOXSHM_NO_LISTENER,
        }
    }
}

/// Every C status, in numeric order.
const C_STATUSES: [voxshm_status; 30] = [
    voxshm_status::VOXSHM_OK,
    voxshm_status::VOXSHM_INVALID_ARGUMENT,
    voxshm_status::VOXSHM_ZERO_LENGTH,
    voxshm_status::VOXSHM_TOO_LARGE,
    voxshm_status::VOXSHM_NO_SPACE,
    voxshm_status::VOXSHM_TIMEOUT,
    voxshm_status::VOXSHM_PEER_GONE,
    voxshm_status::VOXSHM_PROTOCOL,
    voxshm_status::VOXSHM_UNKNOWN_MAP,
    voxshm_status::VOXSHM_STALE_GENERATION,
    voxshm_status::VOXSHM_REF_OVERFLOW,
    voxshm_status::VOXSHM_OUT_OF_BOUNDS,
    voxshm_status::VOXSHM_NOT_REGULAR_FILE,
    voxshm_status::VOXSHM_FILE_TOO_SHORT,
    voxshm_status::VOXSHM_NOT_SEALED,
    voxshm_status::VOXSHM_TOO_MANY_MAPPINGS,
    voxshm_status::VOXSHM_MAPPED_BYTES_LIMIT,
    voxshm_status::VOXSHM_MAPPING_TOO_LARGE,
    voxshm_status::VOXSHM_DUPLICATE_ATTACH,
    voxshm_status::VOXSHM_INVALID_ALLOCATION,
    voxshm_status::VOXSHM_INVALID_VIEW,
    voxshm_status::VOXSHM_IO,
    voxshm_status::VOXSHM_RESOURCE_EXHAUSTED,
    voxshm_status::VOXSHM_INTERNAL,
    voxshm_status::VOXSHM_UNSUPPORTED,
    voxshm_status::VOXSHM_BAD_FRAME,
    voxshm_status::VOXSHM_VERSION_MISMATCH,
    voxshm_status::VOXSHM_PEER_NOT_ALLOWED,
    voxshm_status::VOXSHM_ADDRESS_IN_USE,
    voxshm_status::VOXSHM_NO_LISTENER,
];

impl voxshm_status {
    /// The status's name as a static NUL-terminated string.
    pub fn name_cstr(self) -> &'static std::ffi::CStr {
        match self {
            voxshm_status::VOXSHM_OK => c"VOXSHM_OK",
            voxshm_status::VOXSHM_INVALID_ARGUMENT => c"VOXSHM_INVALID_ARGUMENT",
            voxshm_status::VOXSHM_ZERO_LENGTH => c"VOXSHM_ZERO_LENGTH",
            voxshm_status::VOXSHM_TOO_LARGE => c"VOXSHM_TOO_LARGE",
            voxshm_status::VOXSHM_NO_SPACE => c"VOXSHM_NO_SPACE",
            voxshm_status::VOXSHM_TIMEOUT => c"VOXSHM_TIMEOUT",
            voxshm_status::VOXSHM_PEER_GONE => c"VOXSHM_PEER_GONE",
            voxshm_status::VOXSHM_PROTOCOL => c"VOXSHM_PROTOCOL",
            voxshm_status::VOXSHM_UNKNOWN_MAP => c"VOXSHM_UNKNOWN_MAP",
            voxshm_status::VOXSHM_STALE_GENERATION => c"VOXSHM_STALE_GENERATION",
            voxshm_status::VOXSHM_REF_OVERFLOW => c"VOXSHM_REF_OVERFLOW",
            voxshm_status::VOXSHM_OUT_OF_BOUNDS => c"VOXSHM_OUT_OF_BOUNDS",
            voxshm_status::VOXSHM_NOT_REGULAR_FILE => c"VOXSHM_NOT_REGULAR_FILE",
            voxshm_status::VOXSHM_FILE_TOO_SHORT => c"VOXSHM_FILE_TOO_SHORT",
            voxshm_status::VOXSHM_NOT_SEALED => c"VOXSHM_NOT_SEALED",
            voxshm_status::VOXSHM_TOO_MANY_MAPPINGS => c"VOXSHM_TOO_MANY_MAPPINGS",
            voxshm_status::VOXSHM_MAPPED_BYTES_LIMIT => c"VOXSHM_MAPPED_BYTES_LIMIT",
            voxshm_status::VOXSHM_MAPPING_TOO_LARGE => c"VOXSHM_MAPPING_TOO_LARGE",
            voxshm_status::VOXSHM_DUPLICATE_ATTACH => c"VOXSHM_DUPLICATE_ATTACH",
            voxshm_status::VOXSHM_INVALID_ALLOCATION => c"VOXSHM_INVALID_ALLOCATION",
            voxshm_status::VOXSHM_INVALID_VIEW => c"VOXSHM_INVALID_VIEW",
            voxshm_status::VOXSHM_IO => c"VOXSHM_IO",
            voxshm_status::VOXSHM_RESOURCE_EXHAUSTED => c"VOXSHM_RESOURCE_EXHAUSTED",
            voxshm_status::VOXSHM_INTERNAL => c"VOXSHM_INTERNAL",
            voxshm_status::VOXSHM_UNSUPPORTED => c"VOXSHM_UNSUPPORTED",
            voxshm_status::VOXSHM_BAD_FRAME => c"VOXSHM_BAD_FRAME",
            voxshm_status::VOXSHM_VERSION_MISMATCH => c"VOXSHM_VERSION_MISMATCH",
            voxshm_status::VOXSHM_PEER_NOT_ALLOWED => c"VOXSHM_PEER_NOT_ALLOWED",
            voxshm_status::VOXSHM_ADDRESS_IN_USE => c"VOXSHM_ADDRESS_IN_USE",
            voxshm_status::VOXSHM_NO_LISTENER => c"VOXSHM_NO_LISTENER",
        }
    }

    /// The status with this number, if there is one.
    pub fn from_i32(n: i32) -> Option<voxshm_status> {
        usize::try_from(n)
            .ok()
            .and_then(|i| C_STATUSES.get(i).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_and_stable_and_names_agree() {
        for (i, s) in C_STATUSES.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            assert_eq!(voxshm_status::from_i32(i as i32), Some(*s));
        }
        assert_eq!(voxshm_status::from_i32(-1), None);
        assert_eq!(voxshm_status::from_i32(C_STATUSES.len() as i32), None);
        assert_eq!(voxshm_status::VOXSHM_PROTOCOL as i32, 7);
        assert_eq!(voxshm_status::VOXSHM_INTERNAL as i32, 23);
        for (i, s) in Status::ALL.iter().enumerate() {
            let c = voxshm_status::from(*s);
            assert_eq!(c as usize, i + 1);
            assert_eq!(c.name_cstr().to_str().unwrap(), s.name());
        }
    }
}
