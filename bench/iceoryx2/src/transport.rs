//! One process's iceoryx2 ports for a case: a publish-subscribe service of
//! byte slices per direction (A → B, B → A), and in the blocking variants
//! an event service per direction whose notifier the sender triggers after
//! every send and whose listener the receiver sleeps on.

use std::hint::spin_loop;
use std::time::Duration;

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use crate::measure::now_ns;

/// A wait longer than this means something hangs.
pub const TIMEOUT_NS: u64 = 10_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Busy,
    Block,
    BlockSpin0,
}

impl Variant {
    pub const ALL: [Variant; 3] = [Variant::Busy, Variant::Block, Variant::BlockSpin0];

    pub fn name(self) -> &'static str {
        match self {
            Variant::Busy => "busy",
            Variant::Block => "block",
            Variant::BlockSpin0 => "block-spin0",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// What both processes need to open their ports.
#[derive(Clone, Debug)]
pub struct PortSpec {
    /// Unique to the case: the services' names start with it.
    pub prefix: String,
    pub variant: Variant,
    pub size: usize,
    /// Blocking: spin this long before sleeping.
    pub spin_us: u32,
    /// Samples a subscriber may hold queued (what may be in flight).
    pub depth: usize,
}

type Pub = Publisher<ipc::Service, [u8], ()>;
type Sub = Subscriber<ipc::Service, [u8], ()>;

/// The sending half: a publisher, and a notifier when blocking.
pub struct Tx {
    publisher: Pub,
    notifier: Option<Notifier<ipc::Service>>,
    /// Event notifications sent so far.
    pub notifies: u64,
}

/// The receiving half: a subscriber, and a listener when blocking.
pub struct Rx {
    spin_us: u32,
    subscriber: Sub,
    listener: Option<Listener<ipc::Service>>,
}

pub struct Ports {
    pub tx: Tx,
    pub rx: Rx,
    // Last: the ports above go before their node.
    _node: Node<ipc::Service>,
}

fn err<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("iceoryx2 {what}: {e:?}")
}

fn service_name(s: String) -> Result<ServiceName, String> {
    ServiceName::new(&s).map_err(err("service name"))
}

impl Ports {
    /// A publishes on "a2b" and subscribes to "b2a", B the other way
    /// round. In a stream B's publisher only says that B is ready.
    pub fn open(spec: &PortSpec, side: Side) -> Result<Ports, String> {
        let node = NodeBuilder::new()
            .create::<ipc::Service>()
            .map_err(err("node"))?;
        let (out, inn) = match side {
            Side::A => ("a2b", "b2a"),
            Side::B => ("b2a", "a2b"),
        };
        let pubsub = |dir: &str| {
            node.service_builder(&service_name(format!("{}/{dir}", spec.prefix))?)
                .publish_subscribe::<[u8]>()
                .max_publishers(1)
                .max_subscribers(1)
                .history_size(0)
                .subscriber_max_buffer_size(spec.depth)
                .subscriber_max_borrowed_samples(2)
                .enable_safe_overflow(false)
                .open_or_create()
                .map_err(err("publish-subscribe service"))
        };
        let publisher = pubsub(out)?
            .publisher_builder()
            .initial_max_slice_len(spec.size)
            .max_loaned_samples(2)
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(err("publisher"))?;
        let subscriber = pubsub(inn)?
            .subscriber_builder()
            .buffer_size(spec.depth)
            .create()
            .map_err(err("subscriber"))?;
        let (mut notifier, mut listener) = (None, None);
        if spec.variant != Variant::Busy {
            let event = |dir: &str| {
                node.service_builder(&service_name(format!("{}/{dir}/event", spec.prefix))?)
                    .event()
                    .open_or_create()
                    .map_err(err("event service"))
            };
            let n = event(out)?.notifier_builder().create();
            notifier = Some(n.map_err(err("notifier"))?);
            let l = event(inn)?.listener_builder().create();
            listener = Some(l.map_err(err("listener"))?);
        }
        Ok(Ports {
            tx: Tx {
                publisher,
                notifier,
                notifies: 0,
            },
            rx: Rx {
                spin_us: spec.spin_us,
                subscriber,
                listener,
            },
            _node: node,
        })
    }
}

impl Tx {
    /// Loans `len` bytes, lets `write` fill them, sends them, and in the
    /// blocking variants notifies the receiver.
    pub fn send(&mut self, len: usize, write: impl FnOnce(&mut [u8])) -> Result<(), String> {
        let start = now_ns();
        let mut sample = loop {
            match self.publisher.loan_slice_uninit(len) {
                Ok(s) => break s,
                // Every sample is queued or held: wait for the receiver.
                Err(_) if now_ns() - start < TIMEOUT_NS => spin_loop(),
                Err(e) => return Err(err("loan")(e)),
            }
        };
        let uninit: *mut [std::mem::MaybeUninit<u8>] = sample.payload_mut();
        // SAFETY: the loaned bytes lie in the publisher's shared-memory data
        // segment, which the kernel zero-filled when it was mapped and
        // earlier payloads wrote since: every byte is initialised memory, so
        // viewing them as `u8` (and, below, declaring the sample initialised
        // while `write` wrote only the parts the shape uses) reads no
        // uninitialised byte.
        write(unsafe { &mut *(uninit as *mut [u8]) });
        // SAFETY: as above.
        let sample = unsafe { sample.assume_init() };
        sample.send().map_err(err("send"))?;
        if let Some(n) = &self.notifier {
            n.notify().map_err(err("notify"))?;
            self.notifies += 1;
        }
        Ok(())
    }
}

impl Rx {
    /// Waits for the next payload as the variant says (busy-poll; or spin
    /// for spin_us, then sleep on the event listener), hands it to `read`,
    /// and gives it back (the sample is dropped).
    pub fn recv<R>(&mut self, read: impl FnOnce(&[u8]) -> R) -> Result<R, String> {
        let start = now_ns();
        let spin_until = start + u64::from(self.spin_us) * 1000;
        let mut tries = 0u32;
        loop {
            if let Some(s) = self.subscriber.receive().map_err(err("receive"))? {
                return Ok(read(s.payload()));
            }
            tries = tries.wrapping_add(1);
            match &self.listener {
                Some(l) if now_ns() >= spin_until => {
                    l.timed_wait(|_| {}, Duration::from_millis(100))
                        .map_err(err("listener wait"))?;
                }
                _ => spin_loop(),
            }
            if tries.is_multiple_of(64) && now_ns() - start > TIMEOUT_NS {
                return Err("nothing arrived for 10 s".to_string());
            }
        }
    }
}
