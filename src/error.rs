//! The library's one status model, and the error type that carries a
//! status together with a human-readable message. Every status has a
//! stable name (`Status::name`, also what C sees); its stable number is the
//! C ABI's business (`ffi::voxshm_status`).

use std::borrow::Cow;
use std::fmt;
use std::io;

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    /// A required pointer was NULL, an options struct was malformed, or an
    /// argument was out of its documented range.
    InvalidArgument,
    /// A length of zero was given where a payload length is required.
    ZeroLength,
    /// A length larger than can ever be satisfied (more than 4 GiB - 1, more
    /// than the sender's budget, or more than the allocation being published).
    TooLarge,
    /// The sender's budget stayed exhausted until the timeout expired.
    NoSpace,
    /// Nothing arrived before the timeout expired (with a timeout of 0:
    /// nothing was ready).
    Timeout,
    /// The peer closed the channel or died.
    PeerGone,
    /// The peer sent a malformed message; the channel is poisoned and every
    /// later call on it fails with this status.
    Protocol,
    /// A reference names a map_id this receiver has never been sent.
    UnknownMap,
    /// A reference names a known map_id but an older generation.
    StaleGeneration,
    /// map_offset + payload_len overflows.
    RefOverflow,
    /// map_offset + payload_len lies beyond the end of the mapping.
    OutOfBounds,
    /// An ATTACH carried an fd that is not a regular file.
    NotRegularFile,
    /// An ATTACH carried a file smaller than its mapping_length.
    FileTooShort,
    /// An ATTACH carried a file without the SHRINK and GROW seals and the
    /// receiver does not accept unsealed regions.
    NotSealed,
    /// Mapping the region would exceed the receiver's maximum number of
    /// mappings.
    TooManyMappings,
    /// Mapping the region would exceed the receiver's maximum total of
    /// mapped bytes.
    MappedBytesLimit,
    /// The region is larger than the receiver's maximum single mapping.
    MappingTooLarge,
    /// An ATTACH arrived for a map_id that is already mapped.
    DuplicateAttach,
    /// The allocation is unknown to this registry, was already published,
    /// or was already aborted.
    InvalidAllocation,
    /// The view is unknown to these attachments or was already released.
    InvalidView,
    /// A system call failed; the message names it and the errno.
    Io,
    /// The system is out of a resource: memory, file descriptors, or space
    /// for shared memory.
    ResourceExhausted,
    /// A bug in voxshm (a caught panic). Please report it.
    Internal,
    /// The operation is not available in this mode (for example sending a
    /// reference over the channel to a vox peer that speaks no extension).
    Unsupported,
    /// A 32-byte MMAP_REF frame failed to decode.
    BadFrame,
    /// The peer speaks a protocol version this library does not.
    VersionMismatch,
    /// The process at the other end of a connection runs as a user (or
    /// group) that the listener's or the connecting side's policy does not
    /// allow.
    PeerNotAllowed,
    /// The socket name or path is held by a live listener.
    AddressInUse,
    /// Nobody listens at that name or path (yet): the producer has not
    /// started, or has gone. Retry later.
    NoListener,
}

impl Status {
    /// Every status, in the order of their C numbers (1, 2, ...).
    pub const ALL: [Status; 29] = [
        Status::InvalidArgument,
        Status::ZeroLength,
        Status::TooLarge,
        Status::NoSpace,
        Status::Timeout,
        Status::PeerGone,
        Status::Protocol,
        Status::UnknownMap,
        Status::StaleGeneration,
        Status::RefOverflow,
        Status::OutOfBounds,
        Status::NotRegularFile,
        Status::FileTooShort,
        Status::NotSealed,
        Status::TooManyMappings,
        Status::MappedBytesLimit,
        Status::MappingTooLarge,
        Status::DuplicateAttach,
        Status::InvalidAllocation,
        Status::InvalidView,
        Status::Io,
        Status::ResourceExhausted,
        Status::Internal,
        Status::Unsupported,
        Status::BadFrame,
        Status::VersionMismatch,
        Status::PeerNotAllowed,
        Status::AddressInUse,
        Status::NoListener,
    ];

    /// The status's stable name, e.g. "VOXSHM_PEER_GONE".
    pub fn name(self) -> &'static str {
        match self {
            Status::InvalidArgument => "VOXSHM_INVALID_ARGUMENT",
            Status::ZeroLength => "VOXSHM_ZERO_LENGTH",
            Status::TooLarge => "VOXSHM_TOO_LARGE",
            Status::NoSpace => "VOXSHM_NO_SPACE",
            Status::Timeout => "VOXSHM_TIMEOUT",
            Status::PeerGone => "VOXSHM_PEER_GONE",
            Status::Protocol => "VOXSHM_PROTOCOL",
            Status::UnknownMap => "VOXSHM_UNKNOWN_MAP",
            Status::StaleGeneration => "VOXSHM_STALE_GENERATION",
            Status::RefOverflow => "VOXSHM_REF_OVERFLOW",
            Status::OutOfBounds => "VOXSHM_OUT_OF_BOUNDS",
            Status::NotRegularFile => "VOXSHM_NOT_REGULAR_FILE",
            Status::FileTooShort => "VOXSHM_FILE_TOO_SHORT",
            Status::NotSealed => "VOXSHM_NOT_SEALED",
            Status::TooManyMappings => "VOXSHM_TOO_MANY_MAPPINGS",
            Status::MappedBytesLimit => "VOXSHM_MAPPED_BYTES_LIMIT",
            Status::MappingTooLarge => "VOXSHM_MAPPING_TOO_LARGE",
            Status::DuplicateAttach => "VOXSHM_DUPLICATE_ATTACH",
            Status::InvalidAllocation => "VOXSHM_INVALID_ALLOCATION",
            Status::InvalidView => "VOXSHM_INVALID_VIEW",
            Status::Io => "VOXSHM_IO",
            Status::ResourceExhausted => "VOXSHM_RESOURCE_EXHAUSTED",
            Status::Internal => "VOXSHM_INTERNAL",
            Status::Unsupported => "VOXSHM_UNSUPPORTED",
            Status::BadFrame => "VOXSHM_BAD_FRAME",
            Status::VersionMismatch => "VOXSHM_VERSION_MISMATCH",
            Status::PeerNotAllowed => "VOXSHM_PEER_NOT_ALLOWED",
            Status::AddressInUse => "VOXSHM_ADDRESS_IN_USE",
            Status::NoListener => "VOXSHM_NO_LISTENER",
        }
    }
}

/// An error: a status and a message that says what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    /// Borrowed for the fixed messages of hot paths ("nothing there yet"),
    /// so making such an error allocates nothing.
    pub message: Cow<'static, str>,
}

impl Error {
    pub fn new(status: Status, message: impl Into<Cow<'static, str>>) -> Error {
        Error {
            status,
            message: message.into(),
        }
    }

    /// An error from a failed system call, classified by errno.
    pub fn os(what: &str, err: io::Error) -> Error {
        let status = match err.raw_os_error() {
            Some(libc::ENOMEM | libc::ENOSPC | libc::EMFILE | libc::ENFILE | libc::EDQUOT) => {
                Status::ResourceExhausted
            }
            Some(libc::EPIPE | libc::ECONNRESET | libc::ECONNREFUSED | libc::ENOTCONN) => {
                Status::PeerGone
            }
            _ => Status::Io,
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
    fn names_are_distinct_and_stable() {
        let mut seen = std::collections::HashSet::new();
        for s in Status::ALL {
            assert!(s.name().starts_with("VOXSHM_"));
            assert!(seen.insert(s.name()));
        }
        assert_eq!(Status::Protocol.name(), "VOXSHM_PROTOCOL");
    }

    #[test]
    fn errno_classification() {
        let e = Error::os("memfd_create", io::Error::from_raw_os_error(libc::EMFILE));
        assert_eq!(e.status, Status::ResourceExhausted);
        assert!(e.message.contains("memfd_create"));
        let e = Error::os("sendmsg", io::Error::from_raw_os_error(libc::EPIPE));
        assert_eq!(e.status, Status::PeerGone);
    }
}
