//! One status enum for the whole library, and the error type that carries
//! it together with a human-readable message.

use std::fmt;
use std::io;

/// Outcome of a voxshm call. The numbers are part of the ABI: they are
/// never changed and never reused.
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
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
}

pub use voxshm_status as Status;

impl Status {
    /// Every status, in numeric order.
    pub const ALL: [Status; 29] = [
        Status::VOXSHM_OK,
        Status::VOXSHM_INVALID_ARGUMENT,
        Status::VOXSHM_ZERO_LENGTH,
        Status::VOXSHM_TOO_LARGE,
        Status::VOXSHM_NO_SPACE,
        Status::VOXSHM_TIMEOUT,
        Status::VOXSHM_PEER_GONE,
        Status::VOXSHM_PROTOCOL,
        Status::VOXSHM_UNKNOWN_MAP,
        Status::VOXSHM_STALE_GENERATION,
        Status::VOXSHM_REF_OVERFLOW,
        Status::VOXSHM_OUT_OF_BOUNDS,
        Status::VOXSHM_NOT_REGULAR_FILE,
        Status::VOXSHM_FILE_TOO_SHORT,
        Status::VOXSHM_NOT_SEALED,
        Status::VOXSHM_TOO_MANY_MAPPINGS,
        Status::VOXSHM_MAPPED_BYTES_LIMIT,
        Status::VOXSHM_MAPPING_TOO_LARGE,
        Status::VOXSHM_DUPLICATE_ATTACH,
        Status::VOXSHM_INVALID_ALLOCATION,
        Status::VOXSHM_INVALID_VIEW,
        Status::VOXSHM_IO,
        Status::VOXSHM_RESOURCE_EXHAUSTED,
        Status::VOXSHM_INTERNAL,
        Status::VOXSHM_UNSUPPORTED,
        Status::VOXSHM_BAD_FRAME,
        Status::VOXSHM_VERSION_MISMATCH,
        Status::VOXSHM_PEER_NOT_ALLOWED,
        Status::VOXSHM_ADDRESS_IN_USE,
    ];

    /// The status's name as a static NUL-terminated string.
    pub fn name_cstr(self) -> &'static std::ffi::CStr {
        match self {
            Status::VOXSHM_OK => c"VOXSHM_OK",
            Status::VOXSHM_INVALID_ARGUMENT => c"VOXSHM_INVALID_ARGUMENT",
            Status::VOXSHM_ZERO_LENGTH => c"VOXSHM_ZERO_LENGTH",
            Status::VOXSHM_TOO_LARGE => c"VOXSHM_TOO_LARGE",
            Status::VOXSHM_NO_SPACE => c"VOXSHM_NO_SPACE",
            Status::VOXSHM_TIMEOUT => c"VOXSHM_TIMEOUT",
            Status::VOXSHM_PEER_GONE => c"VOXSHM_PEER_GONE",
            Status::VOXSHM_PROTOCOL => c"VOXSHM_PROTOCOL",
            Status::VOXSHM_UNKNOWN_MAP => c"VOXSHM_UNKNOWN_MAP",
            Status::VOXSHM_STALE_GENERATION => c"VOXSHM_STALE_GENERATION",
            Status::VOXSHM_REF_OVERFLOW => c"VOXSHM_REF_OVERFLOW",
            Status::VOXSHM_OUT_OF_BOUNDS => c"VOXSHM_OUT_OF_BOUNDS",
            Status::VOXSHM_NOT_REGULAR_FILE => c"VOXSHM_NOT_REGULAR_FILE",
            Status::VOXSHM_FILE_TOO_SHORT => c"VOXSHM_FILE_TOO_SHORT",
            Status::VOXSHM_NOT_SEALED => c"VOXSHM_NOT_SEALED",
            Status::VOXSHM_TOO_MANY_MAPPINGS => c"VOXSHM_TOO_MANY_MAPPINGS",
            Status::VOXSHM_MAPPED_BYTES_LIMIT => c"VOXSHM_MAPPED_BYTES_LIMIT",
            Status::VOXSHM_MAPPING_TOO_LARGE => c"VOXSHM_MAPPING_TOO_LARGE",
            Status::VOXSHM_DUPLICATE_ATTACH => c"VOXSHM_DUPLICATE_ATTACH",
            Status::VOXSHM_INVALID_ALLOCATION => c"VOXSHM_INVALID_ALLOCATION",
            Status::VOXSHM_INVALID_VIEW => c"VOXSHM_INVALID_VIEW",
            Status::VOXSHM_IO => c"VOXSHM_IO",
            Status::VOXSHM_RESOURCE_EXHAUSTED => c"VOXSHM_RESOURCE_EXHAUSTED",
            Status::VOXSHM_INTERNAL => c"VOXSHM_INTERNAL",
            Status::VOXSHM_UNSUPPORTED => c"VOXSHM_UNSUPPORTED",
            Status::VOXSHM_BAD_FRAME => c"VOXSHM_BAD_FRAME",
            Status::VOXSHM_VERSION_MISMATCH => c"VOXSHM_VERSION_MISMATCH",
            Status::VOXSHM_PEER_NOT_ALLOWED => c"VOXSHM_PEER_NOT_ALLOWED",
            Status::VOXSHM_ADDRESS_IN_USE => c"VOXSHM_ADDRESS_IN_USE",
        }
    }

    /// The status's name.
    pub fn name(self) -> &'static str {
        // The names are ASCII literals.
        self.name_cstr().to_str().unwrap_or("VOXSHM_?")
    }

    /// The status with this number, if there is one.
    pub fn from_i32(n: i32) -> Option<Status> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i).copied())
    }
}

/// An error: a status and a message that says what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// An error from a failed system call, classified by errno.
    pub fn os(what: &str, err: io::Error) -> Error {
        let status = match err.raw_os_error() {
            Some(libc::ENOMEM | libc::ENOSPC | libc::EMFILE | libc::ENFILE | libc::EDQUOT) => {
                Status::VOXSHM_RESOURCE_EXHAUSTED
            }
            Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOTCONN) => {
                Status::VOXSHM_PEER_GONE
            }
            _ => Status::VOXSHM_IO,
        };
        Error::new(status, format!("{what}: {err}"))
    }

    /// The last OS error, attributed to `what`.
    pub fn last_os(what: &str) -> Error {
        Error::os(what, io::Error::last_os_error())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status.name(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_dense_and_stable() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32);
            assert_eq!(Status::from_i32(i as i32), Some(*s));
            assert!(s.name().starts_with("VOXSHM_"));
        }
        assert_eq!(Status::from_i32(-1), None);
        assert_eq!(Status::from_i32(Status::ALL.len() as i32), None);
        assert_eq!(Status::VOXSHM_PROTOCOL as i32, 7);
        assert_eq!(Status::VOXSHM_INTERNAL as i32, 23);
    }

    #[test]
    fn errno_classification() {
        let e = Error::os("memfd_create", io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(e.status, Status::VOXSHM_RESOURCE_EXHAUSTED);
        assert!(e.message.contains("memfd_create"));
        let e = Error::os("sendmsg", io::Error::from_raw_os_error(libc::EPIPE));
        assert_eq!(e.status, Status::VOXSHM_PEER_GONE);
    }
}
