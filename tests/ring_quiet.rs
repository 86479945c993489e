//! On the ring path, the calls of a steady stream allocate no memory, and
//! the "nothing there yet" results allocate nothing either (their messages
//! are fixed). Counted with a global allocator that counts this thread's
//! allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use voxshm::Status::Timeout;
use voxshm::{Attachments, AttachmentsOptions, Channel, Registry, RegistryOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is a thread-local Cell, which does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

#[test]
fn ring_steady_state_and_nothing_there_allocate_nothing() {
    let (a, b) = Channel::pair().unwrap();
    let reg = Registry::new(a, RegistryOptions::default()).unwrap();
    let att = Attachments::new(b, AttachmentsOptions::default()).unwrap();
    let round = |i: u64| {
        let len = 64 + (i % 7) * 1000;
        let al = reg.alloc(len, 1000).unwrap();
        reg.send(&al, len, 1000).unwrap();
        let v = att.recv(0).unwrap();
        att.release(&v).unwrap();
        reg.poll().unwrap();
    };
    // Warm up: the HELLOs, the segment, the region, the tables' capacity.
    for i in 0..2000 {
        round(i);
    }
    assert!(reg.stats().ring && att.stats().ring);
    let before = allocations();
    for i in 0..10_000 {
        round(i);
    }
    assert_eq!(allocations() - before, 0, "a steady stream allocates");
    // One payload held: every non-blocking call finds nothing to do.
    let al = reg.alloc(100, 0).unwrap();
    reg.send(&al, 100, 0).unwrap();
    let v = att.recv(0).unwrap();
    let r = v.r;
    let before = allocations();
    for _ in 0..1000 {
        assert_eq!(att.recv(0).unwrap_err().status, Timeout);
        assert_eq!(reg.wait_idle(0).unwrap_err().status, Timeout);
        assert_eq!(reg.wait_released(&r, 0).unwrap_err().status, Timeout);
        reg.poll().unwrap();
        att.poll().unwrap();
    }
    assert_eq!(allocations() - before, 0, "\"nothing there\" allocates");
    att.release(&v).unwrap();
    reg.wait_released(&r, 1000).unwrap();
}
