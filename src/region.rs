//! Regions: sealed memfds the sender maps read-write, and the read-only
//! mappings the receiver makes of them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result, Status};
use crate::sys;

/// `MFD_NOEXEC_SEAL` (Linux 6.3); older kernels reject it with EINVAL.
const MFD_NOEXEC_SEAL: libc::c_uint = 0x0008;
/// `F_SEAL_FUTURE_WRITE` (Linux 5.1).
pub const F_SEAL_FUTURE_WRITE: i32 = 0x0010;

/// How a region's file was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    Memfd,
    TempFile,
}

/// A region owned by the sender: the file and its read-write mapping.
#[derive(Debug)]
pub struct Region {
    fd: OwnedFd,
    map: MmapRaw,
    len: u64,
    backing: Backing,
    seals: i32,
}

/// How to create a region.
#[derive(Clone, Copy, Debug, Default)]
pub struct RegionSpec {
    /// Add `F_SEAL_FUTURE_WRITE` (off in vox compatibility mode, because a
    /// vox receiver maps regions read-write).
    pub future_write: bool,
    /// Skip memfd and use the unlinked temp file fallback.
    pub force_tempfile: bool,
}

fn memfd(name: &str) -> Result<Option<OwnedFd>> {
    let cname = CString::new(name).unwrap_or_default();
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    for flags in [base | MFD_NOEXEC_SEAL, base] {
        // SAFETY: `cname` is a valid NUL-terminated string.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), flags) };
        if fd >= 0 {
            // SAFETY: memfd_create just returned this fd; nothing else owns it.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) if flags & MFD_NOEXEC_SEAL != 0 => continue,
            Some(libc::ENOSYS) => return Ok(None),
            _ => return Err(Error::os("memfd_create", err)),
        }
    }
    Ok(None)
}

fn tempfile() -> Result<OwnedFd> {
    let dir = std::env::var("TMPDIR").unwrap_or_else(|_| "/tmp".into());
    let mut tmpl = format!("{dir}/voxshm-XXXXXX").into_bytes();
    tmpl.push(0);
    // SAFETY: `tmpl` is a writable NUL-terminated template ending in XXXXXX.
    let fd = unsafe { libc::mkostemp(tmpl.as_mut_ptr().cast(), libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("mkostemp"));
    }
    // SAFETY: mkostemp just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `tmpl` still holds the NUL-terminated name mkostemp filled in.
    unsafe { libc::unlink(tmpl.as_ptr().cast()) };
    Ok(fd)
}

impl Region {
    /// Creates, sizes, maps and seals a region of `len` bytes. Space is
    /// reserved with `fallocate`, so a full tmpfs or memory limit is an
    /// error here rather than a SIGBUS when the payload is written.
    pub fn create(len: u64, name: &str, spec: RegionSpec) -> Result<Region> {
        if len == 0 || len > isize::MAX as u64 {
            return Err(Error::new(
                Status::TooLarge,
                format!("region of {len} bytes"),
            ));
        }
        let (fd, backing) = match if spec.force_tempfile {
            None
        } else {
            memfd(name)?
        } {
            Some(fd) => (fd, Backing::Memfd),
            None => (tempfile()?, Backing::TempFile),
        };
        let raw = fd.as_raw_fd();
        // SAFETY: ftruncate/fallocate take no pointers.
        if unsafe { libc::ftruncate(raw, len as libc::off_t) } != 0 {
            return Err(Error::last_os("ftruncate"));
        }
        // SAFETY: as above.
        let rc = unsafe { libc::fallocate(raw, 0, 0, len as libc::off_t) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            // A filesystem without fallocate still works, just unreserved.
            if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(Error::os("fallocate (reserving region space)", err));
            }
        }
        // MAP_POPULATE: the page tables are filled now, once per region,
        // so writing payloads takes no page faults later.
        let map = MmapOptions::new()
            .len(len as usize)
            .populate()
            .map_raw(raw)
            .map_err(|e| Error::os("mmap (sender region)", e))?;
        let mut seals = 0;
        if backing == Backing::Memfd {
            let mut want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
            if spec.future_write {
                want |= F_SEAL_FUTURE_WRITE;
            }
            // SAFETY: F_ADD_SEALS takes an int argument, no pointers.
            if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, want) } != 0 {
                // Kernels before 5.1 do not know FUTURE_WRITE: seal without it.
                want &= !F_SEAL_FUTURE_WRITE;
                // SAFETY: as above.
                if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, want) } != 0 {
                    return Err(Error::last_os("fcntl(F_ADD_SEALS)"));
                }
            }
            // SAFETY: as above.
            if unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_SEAL) } != 0 {
                return Err(Error::last_os("fcntl(F_ADD_SEALS, F_SEAL_SEAL)"));
            }
            seals = sys::get_seals(raw);
        }
        Ok(Region {
            fd,
            map,
            len,
            backing,
            seals,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a region is never created empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn backing(&self) -> Backing {
        self.backing
    }

    pub fn seals(&self) -> i32 {
        self.seals
    }

    /// Start of the read-write mapping.
    pub fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    /// The file and its read-write mapping, for a caller that manages them
    /// itself (the ring segment).
    pub fn into_parts(self) -> (OwnedFd, MmapRaw) {
        (self.fd, self.map)
    }
}

/// Limits a receiver puts on what it maps.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_mappings: u32,
    pub max_mapped_bytes: u64,
    pub max_single_mapping: u64,
    pub accept_unsealed: bool,
}

/// A read-only mapping of a region the peer sent.
#[derive(Debug)]
pub struct Mapping {
    map: MmapRaw,
}

/// `MADV_POPULATE_READ` (Linux 5.14): fault pages in for reading, which for
/// pages already in the page cache allocates nothing.
const MADV_POPULATE_READ: libc::c_int = 22;

/// Maps in, ahead of use, the pages of a fresh shared read-only mapping
/// whose file pages exist already (`mincore`), leaving holes alone. Best
/// effort: on an older kernel the pages fault in on first read instead.
fn populate_resident(base: *const u8, len: usize) {
    let page = sys::page_size() as usize;
    let pages = len.div_ceil(page);
    let mut resident = vec![0u8; pages];
    // SAFETY: `base` is the page-aligned start of a live mapping of `len`
    // bytes, and `resident` has one byte per page of it.
    if unsafe { libc::mincore(base as *mut libc::c_void, len, resident.as_mut_ptr()) } != 0 {
        return;
    }
    let mut i = 0;
    while i < pages {
        if resident[i] & 1 == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < pages && resident[i] & 1 != 0 {
            i += 1;
        }
        let run = ((i - start) * page).min(len - start * page);
        // SAFETY: the range lies inside the mapping; MADV_POPULATE_READ
        // only faults pages in and never changes their contents.
        let rc = unsafe {
            libc::madvise(
                base.add(start * page) as *mut libc::c_void,
                run,
                MADV_POPULATE_READ,
            )
        };
        if rc != 0 {
            return;
        }
    }
}

impl Mapping {
    /// Validates an ATTACH's fd and maps it read-only. `mappings` and
    /// `mapped_bytes` are what the receiver holds already. The fd is closed
    /// when this returns, whether it succeeds or not.
    pub fn validate_and_map(
        fd: OwnedFd,
        mapping_length: u64,
        limits: &Limits,
        mappings: usize,
        mapped_bytes: u64,
    ) -> Result<Mapping> {
        let raw = fd.as_raw_fd();
        Self::check_file(raw, mapping_length, limits)?;
        if mappings >= limits.max_mappings as usize {
            return Err(Error::new(
                Status::TooManyMappings,
                format!(
                    "already {mappings} mappings; max_mappings is {}",
                    limits.max_mappings
                ),
            ));
        }
        if mapped_bytes.saturating_add(mapping_length) > limits.max_mapped_bytes {
            return Err(Error::new(
                Status::MappedBytesLimit,
                format!(
                    "mapping {mapping_length} more bytes over {mapped_bytes} exceeds max_mapped_bytes {}",
                    limits.max_mapped_bytes
                ),
            ));
        }
        Self::map_checked(raw, mapping_length)
    }

    /// The checks of the region's file that do not depend on what is mapped
    /// already: a regular file, long enough, sealed (unless unsealed ones
    /// are accepted), not larger than `max_single_mapping`.
    pub fn check_file(raw: RawFd, mapping_length: u64, limits: &Limits) -> Result<()> {
        let st = sys::fstat(raw)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::new(
                Status::NotRegularFile,
                format!(
                    "ATTACH fd is not a regular file (mode {:o})",
                    st.st_mode & libc::S_IFMT
                ),
            ));
        }
        if mapping_length == 0 {
            return Err(Error::new(Status::Protocol, "ATTACH with mapping_length 0"));
        }
        if (st.st_size as u64) < mapping_length {
            return Err(Error::new(
                Status::FileTooShort,
                format!(
                    "ATTACH file has {} bytes, mapping_length is {mapping_length}",
                    st.st_size
                ),
            ));
        }
        let seals = sys::get_seals(raw);
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if !limits.accept_unsealed && seals & need != need {
            return Err(Error::new(
                Status::NotSealed,
                format!(
                    "ATTACH file lacks F_SEAL_SHRINK|F_SEAL_GROW (seals {seals:#x}) and unsealed regions are not accepted"
                ),
            ));
        }
        if mapping_length > limits.max_single_mapping || mapping_length > isize::MAX as u64 {
            return Err(Error::new(
                Status::MappingTooLarge,
                format!(
                    "region of {mapping_length} bytes exceeds max_single_mapping {}",
                    limits.max_single_mapping
                ),
            ));
        }
        Ok(())
    }

    /// Maps a region whose file `check_file` accepted.
    fn map_checked(raw: RawFd, mapping_length: u64) -> Result<Mapping> {
        // No MAP_POPULATE: on a sparse file it would allocate every page
        // the sender left empty, charged to this process (a hostile sender
        // could get it OOM-killed with one ATTACH). Only the pages the
        // sender's file already holds are mapped in now, so reading an
        // honest sender's payloads (its regions are fully allocated) takes
        // no page faults later.
        let map = MmapOptions::new()
            .len(mapping_length as usize)
            .map_raw_read_only(raw)
            .map_err(|e| Error::os("mmap (receiver, read-only)", e))?;
        populate_resident(map.as_ptr(), map.len());
        Ok(Mapping { map })
    }

    pub fn base(&self) -> *const u8 {
        self.map.as_ptr()
    }

    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Always false: a zero mapping_length is rejected before mapping.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }
}
