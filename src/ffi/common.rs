//! What every entry point shares: the panic guard, the thread-local error
//! message, pointer and out-parameter checks, versioned structs, handle
//! boilerplate, taking ownership of a caller's fd, and the library-wide
//! functions (versions, status names, the last error, logging).

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::mem::size_of;
use std::os::fd::{FromRawFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::log::{self, voxshm_log_fn};
use super::status::voxshm_status;
use crate::channel::Channel;
use crate::error::{Error, Result, Status};

/// Version of the C ABI described by this header. `voxshm_abi_version()`
/// returns the library's; a `dlopen` user compares the two and refuses a
/// library whose number differs.
pub const VOXSHM_ABI_VERSION: u32 = 1;

/// The last failure on this thread, formatted only when the caller asks for
/// it: a failing call with a fixed message (`VOXSHM_TIMEOUT` from a
/// non-blocking call that found nothing) allocates and formats nothing.
#[derive(Default)]
struct LastError {
    error: Option<Error>,
    text: Option<CString>,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError::default());
}

pub(super) fn set_last_error(e: Error) {
    LAST_ERROR.with(|l| {
        let mut l = l.borrow_mut();
        l.error = Some(e);
        l.text = None;
    });
}

/// Runs an entry point: initialises logging, catches panics, records the
/// error message.
pub(super) fn guard(f: impl FnOnce() -> Result<()>) -> voxshm_status {
    log::init();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => voxshm_status::VOXSHM_OK,
        Ok(Err(e)) => {
            let status = e.status.into();
            set_last_error(e);
            status
        }
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(Error::new(
                Status::Internal,
                format!("internal error (panic): {what}"),
            ));
            voxshm_status::VOXSHM_INTERNAL
        }
    }
}

pub(super) fn invalid(what: &str) -> Error {
    Error::new(Status::InvalidArgument, what.to_string())
}

/// Borrows `p` or fails with INVALID_ARGUMENT naming it.
pub(super) fn arg<'a, T>(p: *const T, name: &str) -> Result<&'a T> {
    // SAFETY: the C caller promises a non-NULL pointer points at a valid T
    // for the duration of the call; NULL is checked here.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(&format!("{name} is NULL")))
}

/// Writes `v` through an out-pointer (checked for NULL by the caller).
pub(super) fn put<T>(p: *mut T, v: T) {
    // SAFETY: `p` was checked non-NULL before the operation ran and the C
    // caller promises it points at writable memory for a T.
    unsafe { p.write(v) }
}

pub(super) fn out<T>(p: *mut T, name: &str) -> Result<()> {
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
    // Every version of a struct is a whole number of 8-byte words.
    if size < min || size > size_of::<T>() || size % 8 != 0 {
        return Err(invalid(&format!(
            "options struct_size is {size}; this library accepts the size of a version of the struct, {min}..={} (use the *_options_init function)",
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

/// Checks that `fd` is an open `AF_UNIX` socket of a usable type, without
/// taking it: a rejected fd stays the caller's.
pub(super) fn check_fd(fd: c_int) -> Result<()> {
    if fd < 0 {
        return Err(invalid(&format!("fd {fd} is not a valid file descriptor")));
    }
    // SAFETY: fcntl(F_GETFD) on any integer is safe; it only tells whether
    // the fd is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(invalid(&format!("fd {fd} is not open")));
    }
    crate::channel::socket_kind(fd).map(|_| ())
}

/// Takes ownership of the caller's socket `fd`. Call it last, once nothing
/// else can fail: from here on the fd is the library's.
pub(super) fn take_fd(fd: c_int) -> Result<Channel> {
    check_fd(fd)?;
    // SAFETY: the caller hands ownership of `fd` to the library on success,
    // which this is.
    Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A versioned C struct (options or stats): it starts with its
/// `struct_size`, and callers built against any version from the first on
/// keep working when fields are added at its end.
pub(super) trait Versioned: Copy {
    /// The size of the struct's first version, frozen when it shipped.
    const V1_SIZE: usize;
    /// The struct with its defaults and this version's `struct_size`.
    fn defaults() -> Self;
}

/// Reads caller options, or the defaults for NULL.
pub(super) fn read_options<T: Versioned>(p: *const T) -> Result<T> {
    if p.is_null() {
        Ok(T::defaults())
    } else {
        read_versioned(p, T::defaults(), T::V1_SIZE)
    }
}

/// Writes stats into the caller's struct, as much of it as it has room for.
pub(super) fn write_stats<T: Versioned>(p: *mut T, v: T) -> Result<()> {
    out(p, "out_stats")?;
    write_versioned(p, v, T::V1_SIZE)
}

/// `*_options_init`: fills the caller's struct with the defaults.
pub(super) fn options_init<T: Versioned>(p: *mut T) -> voxshm_status {
    guard(|| {
        out(p, "options")?;
        put(p, T::defaults());
        Ok(())
    })
}

/// A new handle for the caller, which frees it with `free_handle`.
pub(super) fn new_handle<T>(p: *mut *mut T, v: T) {
    put(p, Box::into_raw(Box::new(v)));
}

/// `*_free`: ends a handle from `new_handle`; NULL is a no-op.
pub(super) fn free_handle<T>(p: *mut T) {
    if !p.is_null() {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: a pointer from new_handle, freed once (the caller's
            // promise), so the Box is ours to drop.
            drop(unsafe { Box::from_raw(p) })
        }));
    }
}

/// `*_fd`: the handle's fd, or -1 for NULL.
pub(super) fn handle_fd<T>(p: *const T, fd: impl FnOnce(&T) -> c_int) -> c_int {
    // SAFETY: NULL or a live handle from new_handle.
    unsafe { p.as_ref() }.map_or(-1, fd)
}

pub(super) fn path_arg(path: *const c_char) -> Result<String> {
    if path.is_null() {
        return Err(invalid("path is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let s = unsafe { CStr::from_ptr(path) };
    s.to_str()
        .map(str::to_string)
        .map_err(|_| invalid("path is not UTF-8"))
}

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
    match voxshm_status::from_i32(status) {
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
    LAST_ERROR.with(|l| {
        let mut l = l.borrow_mut();
        let l = &mut *l;
        match (&l.text, &l.error) {
            (Some(t), _) => t.as_ptr(),
            (None, None) => c"".as_ptr(),
            (None, Some(e)) => {
                let text = format!("{}: {}", e.status.name(), e.message).replace('\0', " ");
                l.text
                    .insert(CString::new(text).unwrap_or_default())
                    .as_ptr()
            }
        }
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct in its second version: `b` was added after `V1_SIZE`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Two {
        struct_size: usize,
        a: u64,
        b: u64,
    }

    impl Versioned for Two {
        const V1_SIZE: usize = 16;
        fn defaults() -> Self {
            Two {
                struct_size: size_of::<Two>(),
                a: 1,
                b: 2,
            }
        }
    }

    #[test]
    fn a_first_version_caller_keeps_working() {
        // Options: the fields it knows are read, the new one is defaulted.
        let old = Two {
            struct_size: 16,
            a: 7,
            b: 99,
        };
        assert_eq!(
            read_options(&old).unwrap(),
            Two {
                struct_size: 16,
                a: 7,
                b: 2
            }
        );
        let newer = Two {
            struct_size: 32,
            ..old
        };
        assert!(read_options(&newer).is_err(), "larger than this library's");
        let older = Two {
            struct_size: 8,
            ..old
        };
        assert!(read_options(&older).is_err(), "smaller than the first");
        // Stats: only as much as the caller has room for is written.
        let mut out = Two {
            struct_size: 16,
            a: 0,
            b: 55,
        };
        write_stats(&mut out, Two::defaults()).unwrap();
        assert_eq!(
            out,
            Two {
                struct_size: 16,
                a: 1,
                b: 55
            }
        );
    }
}
