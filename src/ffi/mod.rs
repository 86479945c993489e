//! The C ABI. Every function here is an `extern "C"` entry point: it checks
//! every pointer, catches any panic, returns a `voxshm_status`, and writes
//! its out-parameters only on success. `include/voxshm.h` is generated from
//! these modules by cbindgen. One file per handle; what they share is in
//! `common`.

#![allow(non_camel_case_types)]
// These are C entry points: C callers cannot see Rust's `unsafe`, and every
// pointer is checked for NULL before it is dereferenced.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod attachments;
mod channel;
mod common;
mod duplex;
mod fanout;
mod log;
mod refs;
mod registry;
mod status;

pub use self::attachments::*;
pub use self::channel::*;
pub use self::common::*;
pub use self::duplex::*;
pub use self::fanout::*;
pub use self::log::{voxshm_log_fn, voxshm_log_level};
pub use self::refs::*;
pub use self::registry::*;
pub use self::status::voxshm_status;
