//! The C tests of the ABI: every `ffi-tests/*.c` program, built against the
//! freshly built `libvoxshm.so` and run three ways: plain, with
//! AddressSanitizer + UndefinedBehaviorSanitizer, and under valgrind; the
//! multithreaded one (`threads.c`) also with ThreadSanitizer.
//!
//! A C file whose name starts with `helper_` is not a test of its own but a
//! program tests spawn (`helper_peer_receiver.c` is the second program
//! `exec_peer` runs): built beside them and passed by path, in name order.
//! The CMake build follows the same rule.

mod cbuild;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use cbuild::Flavor;

/// The naming rule of helper programs (shared with CMakeLists.txt).
const HELPER_PREFIX: &str = "helper_";

/// The helper programs: every `ffi-tests/helper_*.c`, in name order.
fn helpers() -> Vec<String> {
    let mut found: Vec<String> = c_files()
        .into_iter()
        .filter(|n| n.starts_with(HELPER_PREFIX))
        .collect();
    found.sort();
    found
}

/// Every `ffi-tests/*.c`, by name without extension.
fn c_files() -> Vec<String> {
    let dir = cbuild::root().join("ffi-tests");
    std::fs::read_dir(&dir)
        .expect("read ffi-tests")
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "c").then(|| stem(&p))
        })
        .collect()
}

/// How a test program is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Sanitized,
    Valgrind,
    Thread,
}

impl Mode {
    fn flavor(self) -> Flavor {
        match self {
            Mode::Sanitized => Flavor::Sanitized,
            Mode::Thread => Flavor::Thread,
            Mode::Plain | Mode::Valgrind => Flavor::Plain,
        }
    }
}

fn src(name: &str) -> PathBuf {
    cbuild::root().join("ffi-tests").join(format!("{name}.c"))
}

/// Builds `ffi-tests/<name>.c` once per flavor (tests run in parallel and
/// share the binaries).
fn binary(name: &str, flavor: Flavor) -> PathBuf {
    type Cache = Mutex<HashMap<String, Arc<OnceLock<PathBuf>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let key = format!("{name}-{flavor:?}").to_lowercase();
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key.clone())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = cbuild::scratch("c_tests");
        let version = format!(
            "-DVOXSHM_EXPECTED_VERSION=\"{}\"",
            env!("CARGO_PKG_VERSION")
        );
        // Built under a temporary name and renamed into place, so another
        // test run sharing this target dir never executes a half-written
        // file (a running program keeps its old copy).
        let out = dir.join(&key);
        let tmp = dir.join(format!("{key}.tmp{}", std::process::id()));
        cbuild::build(&[src(name)], &tmp, "c11", flavor, &[version.as_str()]);
        std::fs::rename(&tmp, &out).expect("move the test program into place");
        out
    })
    .clone()
}

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(name: &str, mode: Mode) {
    let exe = binary(name, mode.flavor());
    let peers: Vec<PathBuf> = helpers().iter().map(|h| binary(h, mode.flavor())).collect();
    let mut cmd = match mode {
        Mode::Valgrind => {
            if !have_valgrind() {
                println!("SKIPPED: valgrind is not installed; {name} was not run under valgrind");
                return;
            }
            let mut c = Command::new("valgrind");
            c.args([
                "-q",
                "--leak-check=full",
                // Forked children _exit with live handles; std's HashMap
                // points into the middle of its table, which valgrind calls
                // "possibly lost". Only definite leaks are errors.
                "--errors-for-leak-kinds=definite",
                "--error-exitcode=1",
                // Follow fork()ed children and the exec()ed peer too.
                "--trace-children=yes",
                "--child-silent-after-fork=no",
            ]);
            c.arg(&exe);
            c.env("VOXSHM_CTEST_SMALL", "1");
            c
        }
        Mode::Sanitized => {
            let mut c = Command::new(&exe);
            // The Rust library is not instrumented, but ASan's malloc
            // interposition still sees its heap, so leaks there count too.
            c.env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=1:strict_string_checks=1",
            );
            c.env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
            c
        }
        Mode::Thread => {
            let mut c = Command::new(&exe);
            // Only the C program is instrumented: races between its threads
            // around the handles they share are what this run checks; the
            // library's own locking is std's, invisible to TSan but not
            // raced on by the C code.
            let supp = cbuild::root().join("ffi-tests").join("tsan.supp");
            c.env(
                "TSAN_OPTIONS",
                format!(
                    "halt_on_error=1:exitcode=66:report_signal_unsafe=0:suppressions={}",
                    supp.display()
                ),
            );
            c
        }
        Mode::Plain => Command::new(&exe),
    };
    cmd.args(&peers);
    // The tests decide the log level themselves.
    cmd.env_remove("VOXSHM_LOG");
    let o = cbuild::run_ok(&mut cmd);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("{name}: OK")),
        "{name} exited 0 without reporting success:\n{out}"
    );
}

macro_rules! c_tests {
    ($($name:ident),* $(,)?) => {
        const TESTED: &[&str] = &[$(stringify!($name)),*];

        mod plain {
            $( #[test] fn $name() { super::run(stringify!($name), super::Mode::Plain) } )*
        }
        mod sanitized {
            $( #[test] fn $name() { super::run(stringify!($name), super::Mode::Sanitized) } )*
        }
        mod valgrind {
            $( #[test] fn $name() { super::run(stringify!($name), super::Mode::Valgrind) } )*
        }
    };
}

c_tests!(
    happy_path, fork_peer, exec_peer, misuse, statuses, threads, logging, version, modes, duplex,
    fanout
);

/// The multithreaded test under ThreadSanitizer.
#[test]
fn thread_sanitized_threads() {
    run("threads", Mode::Thread)
}

/// A new `ffi-tests/*.c` file must be a helper (by its name) or listed
/// above, or it would never run under cargo test.
#[test]
fn every_c_file_is_a_test_or_a_helper() {
    let mut found: Vec<String> = c_files()
        .into_iter()
        .filter(|n| !n.starts_with(HELPER_PREFIX))
        .collect();
    found.sort();
    let mut listed: Vec<String> = TESTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "ffi-tests/*.c and the c_tests! list differ");
    assert!(!helpers().is_empty(), "exec_peer needs its helper");
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string()
}
