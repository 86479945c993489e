#![no_main]
//! cargo-fuzz entry point; the body is `targets::ring_segment` in
//! ../targets.rs, which tests/fuzz_corpus.rs replays over the committed
//! corpus.

use libfuzzer_sys::fuzz_target;

#[path = "../targets.rs"]
mod targets;

fuzz_target!(|data: &[u8]| {
    targets::ring_segment(data);
});
