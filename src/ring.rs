//! The ring segment: one shared memory region per link, written by both
//! sides, holding two single-producer single-consumer rings of fixed-size
//! entries: references sender → receiver, releases receiver → sender.
//!
//! The segment is memory the peer can write at any moment, so nothing in it
//! is trusted. Each side keeps its own index of each ring privately and only
//! reads the peer's; a peer index that moves backwards, or further than the
//! ring's capacity allows, is a `RingError` (the link is poisoned). Entries
//! are read once, word by word with atomic loads, into a local copy that the
//! caller validates; nothing read from the segment is used as a pointer, a
//! length or a loop bound before that.
//!
//! Layout (little-endian; `docs/protocol.md` has the byte table):
//!
//! ```text
//!    0  header: magic "VXRG", layout version, capacities, entry size
//!   64  refs:     producer index (u64)      written by the sender
//!  128  refs:     consumer index (u64)      written by the receiver
//!  192  refs:     consumer sleeping (u32)   set by the receiver, cleared by the sender
//!  196  refs:     producer waiting (u32)    set by the sender, cleared by the receiver
//!  200  refs:     socket messages (u64)     the sender's count of messages it sent
//!  256  releases: producer index (u64)      written by the receiver
//!  320  releases: consumer index (u64)      written by the sender
//!  384  releases: consumer sleeping (u32)   set by the sender, cleared by the receiver
//!  388  releases: producer waiting (u32)    set by the receiver, cleared by the sender
//!  392  releases: socket messages (u64)     the receiver's count of messages it sent
//! 4096  reference entries, then release entries (24 bytes each)
//! ```
//!
//! Each index is a free-running 64-bit count of entries; slot `i % capacity`.
//! A producer writes the entry, then publishes the index (a sequentially
//! consistent swap). A consumer that finds its ring empty and wants to sleep
//! sets "consumer sleeping", then (after a full fence) looks again, and
//! sleeps only if still empty; a producer publishes, then (sequentially
//! consistent) reads the flag and, if set, clears it and wakes the consumer.
//! Either the consumer sees the new entry or the producer sees the flag: no
//! wake-up is lost, and a burst costs one wake-up. "Producer waiting" is the same for a
//! full ring, woken by the consumer.
//!
//! "Socket messages" lets a side skip reading its socket while nothing new
//! was sent there: after each message it sends over the socket once the
//! segment exists, a side increments its count; the peer reads the socket
//! when the count changed since it last looked (and, to notice a hang-up,
//! now and then regardless). A lying count costs the liar's own link a
//! system call or a late message, nothing else.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result, Status};
use crate::region::{Backing, Region, RegionSpec};
use crate::sys;
use crate::wire::Ref;

/// `VXRG` as a little-endian u32.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"VXRG");
/// The layout version this library writes and accepts.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of one entry.
pub const ENTRY_LEN: usize = 24;
/// Offset of the first entry.
pub const ENTRIES_AT: usize = 4096;
/// Smallest and largest ring capacity accepted (entries, a power of two).
pub const MIN_CAPACITY: u32 = 16;
pub const MAX_CAPACITY: u32 = 1 << 20;

const REFS_AT: usize = 64;
const RELEASES_AT: usize = 256;
// Within a ring's control block.
const PRODUCER: usize = 0;
const CONSUMER: usize = 64;
const CONSUMER_SLEEPING: usize = 128;
const PRODUCER_WAITING: usize = 132;
const SOCKET_MESSAGES: usize = 136;

/// The peer broke a ring: an index moved backwards or beyond the capacity,
/// or an entry's reserved bytes are not zero. The link is poisoned with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingError(pub String);

impl From<RingError> for Error {
    fn from(e: RingError) -> Error {
        Error::new(Status::Protocol, format!("ring segment: {}", e.0))
    }
}

/// Which side of the segment this process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Produces references, consumes releases.
    Sender,
    /// Consumes references, produces releases.
    Receiver,
}

/// The two rings' sizes, as the header states them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub refs: u32,
    pub releases: u32,
}

impl Capacities {
    fn check(&self) -> Result<()> {
        for (what, c) in [("reference", self.refs), ("release", self.releases)] {
            if !c.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&c) {
                return Err(Error::new(
                    Status::Protocol,
                    format!(
                        "ring segment: {what} ring capacity {c} is not a power of two in {MIN_CAPACITY}..={MAX_CAPACITY}"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn releases_at(&self) -> usize {
        ENTRIES_AT + self.refs as usize * ENTRY_LEN
    }

    /// Bytes of a segment with these capacities, in whole pages.
    pub fn segment_len(&self) -> u64 {
        let end = self.releases_at() + self.releases as usize * ENTRY_LEN;
        sys::round_up(end as u64, sys::page_size()).unwrap_or(u64::MAX)
    }
}

/// One ring's private state on one side.
#[derive(Debug)]
struct Cursor {
    /// Where the ring's control block and entries are.
    ctl: *mut u8,
    entries: *mut u8,
    cap: u64,
    /// This side's own index (the producer's next slot, or the consumer's).
    mine: u64,
    /// The peer's index as last read (validated).
    theirs: u64,
    /// The socket-message count: this side's own (on the ring it
    /// produces), or the peer's as last seen (on the ring it consumes).
    socket_messages: u64,
}

impl Cursor {
    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: `ctl + at` lies in the segment's header page (the offsets
        // are constants below 4096), is 8-byte aligned (the mapping is
        // page-aligned and `at` a multiple of 8), and the mapping lives as
        // long as the Segment that owns this cursor. Atomics are the right
        // type for memory another process writes concurrently.
        unsafe { AtomicU64::from_ptr(self.ctl.add(at).cast()) }
    }

    fn flag(&self, at: usize) -> &AtomicU32 {
        // SAFETY: as in `word`, 4-byte aligned.
        unsafe { AtomicU32::from_ptr(self.ctl.add(at).cast()) }
    }

    fn slot(&self, i: u64, word: usize) -> &AtomicU64 {
        let at = (i % self.cap) as usize * ENTRY_LEN + word * 8;
        // SAFETY: `i % cap < cap`, so the entry lies inside this ring's
        // `cap * ENTRY_LEN` bytes of the mapping (checked at construction);
        // entries start 8-aligned and are 24 bytes, so every word is too.
        unsafe { AtomicU64::from_ptr(self.entries.add(at).cast()) }
    }

    /// Reads the producer's index and checks it: never backwards, never
    /// more than the capacity ahead of this consumer.
    fn load_producer(&mut self) -> std::result::Result<u64, RingError> {
        let t = self.word(PRODUCER).load(Ordering::Acquire);
        if t < self.theirs || t - self.mine > self.cap {
            return Err(RingError(format!(
                "producer index moved from {} to {t} (consumer at {}, capacity {})",
                self.theirs, self.mine, self.cap
            )));
        }
        self.theirs = t;
        Ok(t)
    }

    /// Reads the consumer's index and checks it: never backwards, never
    /// past what this producer published.
    fn load_consumer(&mut self) -> std::result::Result<u64, RingError> {
        let h = self.word(CONSUMER).load(Ordering::Acquire);
        if h < self.theirs || h > self.mine {
            return Err(RingError(format!(
                "consumer index moved from {} to {h} (producer at {})",
                self.theirs, self.mine
            )));
        }
        self.theirs = h;
        Ok(h)
    }

    fn push(&mut self, e: &Ref) -> std::result::Result<bool, RingError> {
        if self.mine - self.theirs == self.cap && self.mine - self.load_consumer()? == self.cap {
            return Ok(false);
        }
        let w = encode(e);
        for (k, v) in w.iter().enumerate() {
            self.slot(self.mine, k).store(*v, Ordering::Relaxed);
        }
        self.mine += 1;
        // Sequentially consistent (an `xchg`, cheaper than a release store
        // and a full fence): ordered before the look at "consumer sleeping"
        // that follows (`consumer_wants_wake`).
        self.word(PRODUCER).swap(self.mine, Ordering::SeqCst);
        Ok(true)
    }

    fn pop(&mut self) -> std::result::Result<Option<Ref>, RingError> {
        if self.mine == self.theirs && self.mine == self.load_producer()? {
            return Ok(None);
        }
        let mut w = [0u64; 3];
        for (k, v) in w.iter_mut().enumerate() {
            *v = self.slot(self.mine, k).load(Ordering::Relaxed);
        }
        self.mine += 1;
        // Sequentially consistent, as in `push`: ordered before the look at
        // "producer waiting" (`producer_wants_wake`).
        self.word(CONSUMER).swap(self.mine, Ordering::SeqCst);
        decode(w).map(Some)
    }

    /// Producer side, after publishing: whether the consumer asked to be
    /// woken (the request is taken: the next publish wakes nobody unless
    /// it asks again).
    ///
    /// The index was published by a sequentially consistent swap, and the
    /// flag is read sequentially consistent; the consumer stores the flag,
    /// then (full fence) reads the index. So either the consumer sees the
    /// entry or this sees the flag.
    fn consumer_wants_wake(&self) -> bool {
        self.flag(CONSUMER_SLEEPING).load(Ordering::SeqCst) != 0
            && self.flag(CONSUMER_SLEEPING).swap(0, Ordering::SeqCst) != 0
    }

    /// Consumer side, after taking entries: whether the producer waits
    /// for room (taken likewise; the same argument with the roles swapped).
    fn producer_wants_wake(&self) -> bool {
        self.flag(PRODUCER_WAITING).load(Ordering::SeqCst) != 0
            && self.flag(PRODUCER_WAITING).swap(0, Ordering::SeqCst) != 0
    }

    /// Consumer side: announces sleep, then looks again. True: still empty,
    /// sleep (the producer will wake this side). False: something came;
    /// the announcement is left (the producer clears it with its wake-up).
    fn consumer_sleep(&mut self) -> std::result::Result<bool, RingError> {
        self.flag(CONSUMER_SLEEPING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // Something came: the announcement stays. Clearing it here could
        // erase that of another thread of this handle that sleeps on it; the
        // price is at most one wake-up nobody needed.
        Ok(self.mine == self.load_producer()?)
    }

    /// Producer side: announces waiting for room, then looks again.
    fn producer_wait(&mut self) -> std::result::Result<bool, RingError> {
        self.flag(PRODUCER_WAITING).store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        // Room came: the announcement stays, as in `consumer_sleep`.
        Ok(self.mine - self.load_consumer()? == self.cap)
    }
}

fn encode(r: &Ref) -> [u64; 3] {
    [
        u64::from(r.map_id) | (u64::from(r.map_generation) << 32),
        r.map_offset,
        u64::from(r.payload_len),
    ]
}

fn decode(w: [u64; 3]) -> std::result::Result<Ref, RingError> {
    if w[2] >> 32 != 0 {
        return Err(RingError(format!(
            "entry reserved bytes are {:#x}, not zero",
            w[2] >> 32
        )));
    }
    Ok(Ref {
        map_id: w[0] as u32,
        map_generation: (w[0] >> 32) as u32,
        map_offset: w[1],
        payload_len: w[2] as u32,
    })
}

/// One side's view of a ring segment: the mapping, and its cursors on the
/// two rings.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    side: Side,
    refs: Cursor,
    releases: Cursor,
}

// SAFETY: the cursors' pointers point into `map`, which the Segment owns;
// all access to the shared memory is through atomics, and the private
// state is only used through `&mut self`.
unsafe impl Send for Segment {}
// SAFETY: as above; no method mutates through `&self`.
unsafe impl Sync for Segment {}

impl Segment {
    /// The sender makes a segment: a memfd sealed against shrinking and
    /// growing (not against writes: both sides write it), with its header
    /// written. Returns it with the fd to send to the receiver.
    pub fn create(caps: Capacities) -> Result<(Segment, OwnedFd)> {
        caps.check()?;
        let len = caps.segment_len();
        let region = Region::create(
            len,
            "voxshm-ring",
            RegionSpec {
                future_write: false,
                force_tempfile: false,
            },
        )?;
        if region.backing() != Backing::Memfd {
            return Err(Error::new(
                Status::Unsupported,
                "a ring segment needs memfd and sealing",
            ));
        }
        let (fd, map) = region.into_parts();
        let seg = Segment::over(map, caps, Side::Sender);
        let hdr = [
            SEGMENT_MAGIC,
            SEGMENT_VERSION,
            caps.refs,
            caps.releases,
            ENTRY_LEN as u32,
        ];
        for (i, v) in hdr.iter().enumerate() {
            // SAFETY: the header's first 20 bytes, inside the mapping, 4-byte
            // aligned; nobody else sees the segment yet.
            unsafe { AtomicU32::from_ptr(seg.map.as_mut_ptr().add(i * 4).cast()) }
                .store(*v, Ordering::Relaxed);
        }
        Ok((seg, fd))
    }

    /// The receiver maps the segment the sender sent: a sealed regular file
    /// whose header (copied, then checked) states capacities this library
    /// accepts and a size the file has. The fd is closed on return.
    pub fn attach(fd: OwnedFd) -> Result<Segment> {
        let bad = |why: String| Error::new(Status::Protocol, format!("ring segment: {why}"));
        let st = sys::fstat(fd.as_raw_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(bad("the fd is not a regular file".into()));
        }
        let need = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if sys::get_seals(fd.as_raw_fd()) & need != need {
            return Err(bad("not sealed against shrinking and growing".into()));
        }
        let size = st.st_size as u64;
        let largest = Capacities {
            refs: MAX_CAPACITY,
            releases: MAX_CAPACITY,
        };
        if size < ENTRIES_AT as u64 || size > largest.segment_len() {
            return Err(bad(format!("{size} bytes is not a segment's size")));
        }
        let map = MmapOptions::new()
            .len(size as usize)
            .map_raw(fd.as_raw_fd())
            .map_err(|e| Error::os("mmap (ring segment)", e))?;
        let word = |i: usize| {
            // SAFETY: i < 5: inside the header page of the mapping, aligned.
            unsafe { AtomicU32::from_ptr(map.as_mut_ptr().add(i * 4).cast()) }
                .load(Ordering::Relaxed)
        };
        let hdr: [u32; 5] = std::array::from_fn(word);
        if hdr[0] != SEGMENT_MAGIC || hdr[1] != SEGMENT_VERSION || hdr[4] != ENTRY_LEN as u32 {
            return Err(bad(format!(
                "header {:#010x} version {} entry size {} (expected VXRG, {SEGMENT_VERSION}, {ENTRY_LEN})",
                hdr[0], hdr[1], hdr[4]
            )));
        }
        let caps = Capacities {
            refs: hdr[2],
            releases: hdr[3],
        };
        caps.check()?;
        if caps.segment_len() != size {
            return Err(bad(format!(
                "{size} bytes, but capacities {}/{} need {}",
                caps.refs,
                caps.releases,
                caps.segment_len()
            )));
        }
        drop(fd);
        Ok(Segment::over(map, caps, Side::Receiver))
    }

    fn over(map: MmapRaw, caps: Capacities, side: Side) -> Segment {
        let base = map.as_mut_ptr();
        let cursor = |ctl: usize, entries: usize, cap: u32| Cursor {
            // SAFETY: both offsets lie inside the mapping, whose length is
            // `caps.segment_len()` (created so, or checked in `attach`).
            ctl: unsafe { base.add(ctl) },
            // SAFETY: as above.
            entries: unsafe { base.add(entries) },
            cap: u64::from(cap),
            mine: 0,
            theirs: 0,
            socket_messages: 0,
        };
        Segment {
            refs: cursor(REFS_AT, ENTRIES_AT, caps.refs),
            releases: cursor(RELEASES_AT, caps.releases_at(), caps.releases),
            map,
            side,
        }
    }

    /// The capacities the header states (checked).
    pub fn capacities(&self) -> Capacities {
        Capacities {
            refs: self.refs.cap as u32,
            releases: self.releases.cap as u32,
        }
    }

    /// Bytes of the segment.
    pub fn byte_len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Counts one more message this side sent over the socket.
    pub fn note_socket_message(&mut self) {
        let own = self.rings().0;
        own.socket_messages = own.socket_messages.wrapping_add(1);
        own.word(SOCKET_MESSAGES)
            .store(own.socket_messages, Ordering::Release);
    }

    /// Whether the peer's count of socket messages changed since the last
    /// look (then something new may wait on the socket).
    pub fn peer_sent_on_socket(&mut self) -> bool {
        let theirs = self.rings().1;
        let n = theirs.word(SOCKET_MESSAGES).load(Ordering::Acquire);
        if n == theirs.socket_messages {
            return false;
        }
        theirs.socket_messages = n;
        true
    }

    /// Whether the ring this side consumes has an entry (for spinning).
    pub fn has_entries(&mut self) -> std::result::Result<bool, RingError> {
        let c = self.rings().1;
        Ok(c.mine != c.theirs || c.mine != c.load_producer()?)
    }

    /// Whether the ring this side produces into has room.
    pub fn has_room(&mut self) -> std::result::Result<bool, RingError> {
        let p = self.rings().0;
        Ok(p.mine - p.theirs < p.cap || p.mine - p.load_consumer()? < p.cap)
    }

    /// The ring this side produces into, and the one it consumes.
    fn rings(&mut self) -> (&mut Cursor, &mut Cursor) {
        match self.side {
            Side::Sender => (&mut self.refs, &mut self.releases),
            Side::Receiver => (&mut self.releases, &mut self.refs),
        }
    }

    /// Pushes one entry (a reference from the sender, a release from the
    /// receiver). `Ok(false)`: the ring is full.
    pub fn push(&mut self, r: &Ref) -> std::result::Result<bool, RingError> {
        self.rings().0.push(r)
    }

    /// Takes the next entry the peer pushed, copied and checked for shape;
    /// the caller validates what it names. `Ok(None)`: nothing there.
    pub fn pop(&mut self) -> std::result::Result<Option<Ref>, RingError> {
        self.rings().1.pop()
    }

    /// After pushing: whether the peer sleeps waiting for entries and must
    /// be woken (once per sleep).
    pub fn peer_needs_wake_for_entries(&mut self) -> bool {
        self.rings().0.consumer_wants_wake()
    }

    /// After popping: whether the peer waits for room and must be woken.
    pub fn peer_needs_wake_for_room(&mut self) -> bool {
        self.rings().1.producer_wants_wake()
    }

    /// Before sleeping for entries: announces it, then looks again. True:
    /// still nothing, sleep; false: something came.
    pub fn prepare_sleep(&mut self) -> std::result::Result<bool, RingError> {
        self.rings().1.consumer_sleep()
    }

    /// Before sleeping for room to push: announces it, then looks again.
    pub fn prepare_wait_for_room(&mut self) -> std::result::Result<bool, RingError> {
        self.rings().0.producer_wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::hex;

    fn r(i: u64) -> Ref {
        Ref {
            map_id: i as u32 + 1,
            map_generation: 7,
            map_offset: i * 64,
            payload_len: 100 + i as u32,
        }
    }

    fn pair(caps: Capacities) -> (Segment, Segment) {
        let (s, fd) = Segment::create(caps).unwrap();
        (s, Segment::attach(fd).unwrap())
    }

    const SMALL: Capacities = Capacities {
        refs: 16,
        releases: 32,
    };

    #[test]
    fn entries_go_both_ways_in_order_and_the_rings_fill_and_drain() {
        let (mut tx, mut rx) = pair(SMALL);
        for round in 0..5u64 {
            for i in 0..16 {
                assert!(tx.push(&r(round * 16 + i)).unwrap());
            }
            assert!(!tx.push(&r(99)).unwrap(), "full at capacity");
            for i in 0..16 {
                assert_eq!(rx.pop().unwrap(), Some(r(round * 16 + i)));
                assert!(rx.push(&r(i)).unwrap());
            }
            assert_eq!(rx.pop().unwrap(), None);
            for i in 0..16 {
                assert_eq!(tx.pop().unwrap(), Some(r(i)));
            }
            assert_eq!(tx.pop().unwrap(), None);
        }
    }

    #[test]
    fn sleeping_and_waking_lose_nothing() {
        let (mut tx, mut rx) = pair(SMALL);
        // Nothing there: the receiver announces sleep; one push wakes it,
        // the next ones in the burst do not.
        assert!(rx.prepare_sleep().unwrap());
        assert!(tx.push(&r(1)).unwrap());
        assert!(tx.peer_needs_wake_for_entries());
        assert!(tx.push(&r(2)).unwrap());
        assert!(!tx.peer_needs_wake_for_entries());
        // Something there: no sleep; the announcement stays (another
        // thread may sleep on it), so the next push wakes once, and only
        // once.
        assert!(!rx.prepare_sleep().unwrap());
        assert!(tx.push(&r(3)).unwrap());
        assert!(tx.peer_needs_wake_for_entries());
        assert!(tx.push(&r(4)).unwrap());
        assert!(!tx.peer_needs_wake_for_entries());
        // A full ring: the producer waits, the first pop wakes it.
        let (mut tx, mut rx) = pair(SMALL);
        for i in 0..16 {
            tx.push(&r(i)).unwrap();
        }
        assert!(tx.prepare_wait_for_room().unwrap());
        assert!(rx.pop().unwrap().is_some());
        assert!(rx.peer_needs_wake_for_room());
        assert!(rx.pop().unwrap().is_some());
        assert!(!rx.peer_needs_wake_for_room());
        assert!(!tx.prepare_wait_for_room().unwrap(), "room now");
    }

    /// Writes a raw u64 at `at` of the segment, as a hostile peer would.
    fn poke(s: &Segment, at: usize, v: u64) {
        // SAFETY: `at` is an aligned offset inside the mapping.
        unsafe { AtomicU64::from_ptr(s.map.as_mut_ptr().add(at).cast()) }.store(v, Ordering::SeqCst)
    }

    #[test]
    fn a_peer_index_that_goes_backwards_or_too_far_breaks_the_ring() {
        // The sender's producer index jumps beyond the capacity.
        let (tx, mut rx) = pair(SMALL);
        poke(&tx, REFS_AT + PRODUCER, 17);
        assert!(rx.pop().is_err());
        // ... or moves backwards after entries were seen.
        let (mut tx, mut rx) = pair(SMALL);
        tx.push(&r(1)).unwrap();
        tx.push(&r(2)).unwrap();
        assert!(rx.pop().unwrap().is_some());
        poke(&tx, REFS_AT + PRODUCER, 1);
        // The second entry was seen published already; the next look at
        // the index finds it moved back.
        assert!(rx.pop().unwrap().is_some());
        assert!(rx.pop().is_err());
        // The receiver's consumer index runs past what was pushed.
        let (mut tx, rx) = pair(SMALL);
        for i in 0..16 {
            tx.push(&r(i)).unwrap();
        }
        poke(&rx, REFS_AT + CONSUMER, 17);
        assert!(tx.push(&r(99)).is_err());
        // An entry with reserved bits set.
        let (mut tx, mut rx) = pair(SMALL);
        tx.push(&r(1)).unwrap();
        poke(&tx, ENTRIES_AT + 16, 1 << 40);
        assert!(rx.pop().is_err());
        // Index near the top of u64: no overflow panic, just an error.
        let (tx, mut rx) = pair(SMALL);
        poke(&tx, REFS_AT + PRODUCER, u64::MAX);
        assert!(rx.pop().is_err());
    }

    fn bytes(s: &Segment, at: usize, n: usize) -> Vec<u8> {
        // SAFETY: `at + n` lies inside the mapping (the callers' offsets
        // are the documented layout's); nothing writes it meanwhile.
        unsafe { std::slice::from_raw_parts(s.map.as_ptr().add(at), n) }.to_vec()
    }

    /// The layout of docs/protocol.md ("Segment layout"), byte for byte.
    #[test]
    fn golden_segment_layout() {
        let caps = Capacities {
            refs: 1024,
            releases: 2048,
        };
        assert_eq!(caps.segment_len(), 0x13000);
        let (mut tx, mut rx) = pair(caps);
        assert_eq!(
            bytes(&tx, 0, 20),
            hex("56585247 01000000 00040000 00080000 18000000")
        );
        let e = Ref {
            map_id: 7,
            map_generation: 2,
            map_offset: 0x1_0000_0040,
            payload_len: 4096,
        };
        tx.push(&e).unwrap();
        assert_eq!(
            bytes(&tx, ENTRIES_AT, 24),
            hex("07000000 02000000 4000000001000000 00100000 00000000")
        );
        assert_eq!(bytes(&tx, 64, 8), hex("0100000000000000"));
        assert_eq!(rx.pop().unwrap(), Some(e));
        assert_eq!(bytes(&tx, 128, 8), hex("0100000000000000"));
        rx.push(&e).unwrap();
        assert_eq!(
            bytes(&tx, ENTRIES_AT + 1024 * 24, 24),
            hex("07000000 02000000 4000000001000000 00100000 00000000")
        );
        assert_eq!(bytes(&tx, 256, 8), hex("0100000000000000"));
        assert_eq!(tx.pop().unwrap(), Some(e));
        assert_eq!(bytes(&tx, 320, 8), hex("0100000000000000"));
        // Sleep flags and socket-message counts.
        assert!(rx.prepare_sleep().unwrap());
        assert_eq!(bytes(&tx, 192, 4), hex("01000000"));
        assert!(tx.prepare_sleep().unwrap());
        assert_eq!(bytes(&tx, 384, 4), hex("01000000"));
        tx.note_socket_message();
        assert_eq!(bytes(&tx, 200, 8), hex("0100000000000000"));
        assert!(rx.peer_sent_on_socket());
        assert!(!rx.peer_sent_on_socket());
        rx.note_socket_message();
        rx.note_socket_message();
        assert_eq!(bytes(&tx, 392, 8), hex("0200000000000000"));
        assert!(tx.peer_sent_on_socket());
    }

    #[test]
    fn a_bad_segment_is_refused() {
        let mut caps = SMALL;
        caps.refs = 17;
        assert!(Segment::create(caps).is_err(), "not a power of two");
        caps.refs = MAX_CAPACITY * 2;
        assert!(Segment::create(caps).is_err(), "too large");
        // A header that does not match its file.
        let (tx, fd) = Segment::create(SMALL).unwrap();
        poke(&tx, 8, u64::from(1024u32) | (u64::from(32u32) << 32));
        assert!(Segment::attach(fd).is_err(), "capacities need more bytes");
        let (tx, fd) = Segment::create(SMALL).unwrap();
        poke(&tx, 0, 0);
        assert!(Segment::attach(fd).is_err(), "no magic");
    }
}
