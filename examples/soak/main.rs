//! Soak test of voxshm across real processes. `scripts/soak.sh [SECONDS]`
//! builds this program and runs `soak driver --seconds SECONDS`.
//!
//! One binary, three roles:
//!
//! - `soak driver` runs the test. Phase 1 (half the time): a long-lived
//!   sender (the *survivor*) listens on an abstract socket name and streams
//!   to one receiver after another; the driver kills each receiver (the
//!   *victim*) with SIGKILL after a random delay and starts the next.
//!   Phase 2: the roles reversed: a long-lived receiver reconnects to one
//!   sender after another, and the senders are killed. The driver samples
//!   the survivor's fds, mappings and RSS every second, reads the counts the
//!   survivor reports whenever it holds no connection, watches progress,
//!   and at the end prints a summary and says PASS or FAIL.
//! - `soak sender` and `soak receiver` are the two sides, each either the
//!   survivor (`--survivor`) or a victim.
//!
//! Every payload is checked byte for byte by the receiver (see `pattern`);
//! a wrong byte, a victim that dies of anything but the driver's SIGKILL, a
//! survivor that dies, a hang, or growth of the survivor's fds, mappings or
//! RSS fails the run.

mod board;
mod driver;
mod pattern;
mod peer;
mod procfs;

use std::io::Write;

/// Exit status of a process that found a wrong byte.
pub const EXIT_WRONG_BYTE: i32 = 2;
/// Exit status of a process whose voxshm call failed unexpectedly.
pub const EXIT_FAILED: i32 = 3;
/// Exit status for a bad command line.
pub const EXIT_USAGE: i32 = 64;

const USAGE: &str = "usage: soak driver [--seconds N] [--seed S] [--verbose] [--inject KIND]
       soak sender|receiver [--survivor] --addr @NAME --seed S --board-fd FD [--inject KIND]";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("driver") => driver::main(&args[1..]),
        Some("sender") => peer::main(peer::Role::Sender, &args[1..]),
        Some("receiver") => peer::main(peer::Role::Receiver, &args[1..]),
        _ => {
            eprintln!("{USAGE}");
            EXIT_USAGE
        }
    };
    std::process::exit(code);
}

/// A parsed command line: `--name value` options and `--name` switches.
pub struct Flags(Vec<(String, Option<String>)>);

impl Flags {
    /// Parses `args`; `valued` names the options that take a value.
    pub fn parse(args: &[String], valued: &[&str], switches: &[&str]) -> Result<Flags, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if valued.contains(&a.as_str()) {
                let v = it.next().ok_or_else(|| format!("{a} needs a value"))?;
                out.push((a.clone(), Some(v.clone())));
            } else if switches.contains(&a.as_str()) {
                out.push((a.clone(), None));
            } else {
                return Err(format!("unknown argument {a:?}\n{USAGE}"));
            }
        }
        Ok(Flags(out))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// A number option (decimal, or hex with 0x).
    pub fn number(&self, name: &str) -> Result<Option<u64>, String> {
        self.get(name)
            .map(|v| {
                match v.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => v.parse(),
                }
                .map_err(|e| format!("{name} {v:?}: {e}"))
            })
            .transpose()
    }
}

/// Prints one line on stdout for the driver, at once.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // A driver that is gone cannot read it; the process is about to be
    // killed anyway.
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// Waits up to `timeout_ms` (negative: forever) until one of `fds` is
/// readable or hung up; returns which ones are.
pub fn wait_readable(fds: &[i32], timeout_ms: i32) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a valid, exclusively borrowed array of pollfds and its
    // length is passed with it. EINTR or an error reads as "nothing ready":
    // every caller loops with a deadline of its own.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    p.iter().map(|p| p.revents != 0).collect()
}
