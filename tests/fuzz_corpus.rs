//! Replays every file of the committed fuzz corpus (`fuzz/corpus/<target>/`)
//! through the fuzz target bodies of `fuzz/targets.rs` (the same code the
//! cargo-fuzz binaries run), checks that the corpus reaches the paths it is
//! meant to, and that the hand-made seeds in the corpus are the ones
//! `targets::seeds` builds.
//!
//! To rewrite the seeds after changing the input format:
//! `VOXSHM_FUZZ_WRITE_SEEDS=1 cargo test --test fuzz_corpus seeds`.

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use targets::Outcomes;

/// The targets count the process's fds: one test at a time, so another
/// test reading a corpus file does not show up in the counts.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every corpus file of `target` and returns what they met together.
fn replay(target: &str, run: fn(&[u8]) -> Outcomes) -> Outcomes {
    let _serial = serial();
    let files = files(&corpus_dir(target));
    assert!(!files.is_empty(), "no corpus for {target}");
    let mut all = Outcomes::new();
    for f in files {
        let data = std::fs::read(&f).expect("corpus file");
        // Shown only if the run fails.
        eprintln!("{target}: {}", f.display());
        all.extend(run(&data));
    }

    all
}

fn assert_covers(target: &str, got: &Outcomes, want: &[(&str, &str)]) {
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(&(w.0, w.1))).collect();
    assert!(
        missing.is_empty(),
        "the {target} corpus no longer reaches {missing:?}; it reaches {got:?}"
    );
}

#[test]
fn wire_decode_corpus() {
    let got = replay("wire_decode", targets::wire_decode);
    assert_covers(
        "wire_decode",
        &got,
        &[
            ("attach", "ok"),
            ("attach", "VOXSHM_PROTOCOL"),
            ("frame", "ok"),
            ("frame", "VOXSHM_BAD_FRAME"),
            ("ext-kind", "HELLO"),
            ("ext-kind", "REF"),
            ("ext-kind", "RELEASE"),
            ("ext-kind", "RETIRE"),
            ("ext-kind", "RETIRE_ACK"),
            ("ext", "VOXSHM_PROTOCOL"),
        ],
    );
}

#[test]
fn receiver_sequence_corpus() {
    let got = replay("receiver_sequence", targets::receiver_sequence);
    assert_covers(
        "receiver_sequence",
        &got,
        &[
            ("recv", "ok"),
            ("resolve", "ok"),
            ("release", "ok"),
            ("release-old", "ok"),
            ("release-old", "VOXSHM_INVALID_VIEW"),
            ("release-tampered", "VOXSHM_INVALID_VIEW"),
            ("release-bogus", "VOXSHM_INVALID_VIEW"),
            ("peer-rx", "HELLO"),
            ("peer-rx", "RELEASE"),
            ("peer-rx", "RETIRE_ACK"),
            ("poll", "ok"),
            ("poll", "VOXSHM_PROTOCOL"),
            ("poll", "VOXSHM_VERSION_MISMATCH"),
            ("poll", "VOXSHM_NOT_REGULAR_FILE"),
            ("poll", "VOXSHM_FILE_TOO_SHORT"),
            ("poll", "VOXSHM_NOT_SEALED"),
            ("poll", "VOXSHM_TOO_MANY_MAPPINGS"),
            ("poll", "VOXSHM_MAPPED_BYTES_LIMIT"),
            ("poll", "VOXSHM_MAPPING_TOO_LARGE"),
            ("poll", "VOXSHM_DUPLICATE_ATTACH"),
            ("resolve", "VOXSHM_UNKNOWN_MAP"),
            ("resolve", "VOXSHM_STALE_GENERATION"),
            ("resolve", "VOXSHM_REF_OVERFLOW"),
            ("resolve", "VOXSHM_OUT_OF_BOUNDS"),
            ("resolve", "VOXSHM_PROTOCOL"),
            ("recv", "VOXSHM_OUT_OF_BOUNDS"),
            ("recv", "VOXSHM_PEER_GONE"),
            ("recv", "VOXSHM_PROTOCOL"),
            ("stats", "ok"),
        ],
    );
}

#[test]
fn ring_segment_corpus() {
    let got = replay("ring_segment", targets::ring_segment);
    assert_covers(
        "ring_segment",
        &got,
        &[
            ("push-ref", "ok"),
            ("push-ref", "full"),
            ("pop-ref", "ok"),
            ("pop-ref", "empty"),
            ("pop-ref", "broken"),
            ("push-release", "ok"),
            ("pop-release", "ok"),
            ("push-ref", "broken"),
            ("sleep-wake", "ok"),
            ("poke", "control"),
            ("poke", "entries"),
            ("reattach", "ok"),
            ("reattach", "refused"),
        ],
    );
}

#[test]
fn sender_sequence_corpus() {
    let got = replay("sender_sequence", targets::sender_sequence);
    assert_covers(
        "sender_sequence",
        &got,
        &[
            ("new", "VOXSHM_INVALID_ARGUMENT"),
            ("alloc", "ok"),
            ("alloc", "VOXSHM_NO_SPACE"),
            ("alloc", "VOXSHM_TOO_LARGE"),
            ("alloc", "VOXSHM_ZERO_LENGTH"),
            ("alloc", "VOXSHM_PEER_GONE"),
            ("alloc", "VOXSHM_PROTOCOL"),
            ("send", "ok"),
            ("send", "VOXSHM_TIMEOUT"),
            ("send", "VOXSHM_ZERO_LENGTH"),
            ("send", "VOXSHM_TOO_LARGE"),
            ("send", "VOXSHM_UNSUPPORTED"),
            ("publish", "ok"),
            ("abort", "ok"),
            ("tampered", "VOXSHM_INVALID_ALLOCATION"),
            ("peer-rx", "ATTACH"),
            ("peer-rx", "HELLO"),
            ("peer-rx", "REF"),
            ("peer-rx", "RETIRE"),
            ("poll", "ok"),
            ("poll", "VOXSHM_PROTOCOL"),
            ("poll", "VOXSHM_VERSION_MISMATCH"),
            ("poll", "VOXSHM_PEER_GONE"),
            ("wait_idle", "ok"),
            ("wait_idle", "VOXSHM_TIMEOUT"),
            ("wait_idle", "VOXSHM_PEER_GONE"),
            ("stats", "ok"),
        ],
    );
}

/// The `seed-*` files of the corpus are exactly what `targets::seeds`
/// builds (with `VOXSHM_FUZZ_WRITE_SEEDS` set: writes them first).
#[test]
fn seeds_are_committed() {
    let _serial = serial();
    let write = std::env::var_os("VOXSHM_FUZZ_WRITE_SEEDS").is_some();
    for (target, seeds) in targets::seeds::all() {
        let dir = corpus_dir(target);
        if write {
            std::fs::create_dir_all(&dir).expect("corpus directory");
            for f in files(&dir) {
                if f.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
                {
                    std::fs::remove_file(f).expect("remove old seed");
                }
            }
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(name), bytes).expect("write seed");
            }
        }
        let mut committed: Vec<String> = files(&dir)
            .iter()
            .filter_map(|f| f.file_name()?.to_str().map(String::from))
            .filter(|n| n.starts_with("seed-"))
            .collect();
        committed.sort();
        let mut names: Vec<String> = seeds.iter().map(|s| s.0.clone()).collect();
        names.sort();
        assert_eq!(committed, names, "seed files of {target}");
        for (name, bytes) in &seeds {
            let on_disk = std::fs::read(dir.join(name)).expect("seed file");
            assert!(
                on_disk == *bytes,
                "{target}/{name} differs from what seeds builds"
            );
        }
    }
}
