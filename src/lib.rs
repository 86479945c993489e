//! voxshm: zero-copy payload passing between two processes on one Linux
//! machine, over sealed memfd regions and a Unix-socket control channel.
//!
//! The Rust core lives in the modules below; the C ABI is in [`ffi`].

pub mod attachments;
pub mod channel;
pub(crate) mod conn;
pub mod error;
pub mod fanout;
pub mod ffi;
mod freelist;
mod hash;
mod hub;
mod lease;
pub mod link;
pub mod listener;
mod mappings;
mod pool;
pub mod region;
pub mod registry;
pub mod ring;
pub mod sys;
pub mod wire;

pub use attachments::{Attachments, AttachmentsOptions, AttachmentsStats, View};
pub use channel::{Channel, Kind, Listener};
pub use conn::duplex;
pub use error::{Error, Result, Status};
pub use fanout::{Fanout, FanoutStats, Policy, ReceiverOptions, ReceiverStats, Target};
pub use region::Limits;
pub use registry::{Allocation, Registry, RegistryOptions, RegistryStats};
pub use wire::Ref;

// Both handles are shared between threads: keep that a compile-time fact.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Registry>();
    send_sync::<Attachments>();
    send_sync::<Fanout>();
};
