//! What a process holds, read from /proc: open fds, mappings, resident
//! memory. The driver samples the survivor with it; the survivor reports
//! its own at quiescent points.

use std::fmt;
use std::io;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries of /proc/PID/fd.
    pub fds: u64,
    /// Lines of /proc/PID/maps.
    pub maps: u64,
    /// VmRSS of /proc/PID/status, in KiB.
    pub rss_kb: u64,
}

/// The usage of process `pid` ("self" for this one).
pub fn usage(pid: &str) -> io::Result<Usage> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?
        .lines()
        .count() as u64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("no VmRSS in /proc/{pid}/status")))?;
    Ok(Usage {
        // Reading /proc/self/fd lists the fd that reads it.
        fds: if pid == "self" { fds - 1 } else { fds },
        maps,
        rss_kb,
    })
}

impl Usage {
    pub fn max(self, o: Usage) -> Usage {
        Usage {
            fds: self.fds.max(o.fds),
            maps: self.maps.max(o.maps),
            rss_kb: self.rss_kb.max(o.rss_kb),
        }
    }

    /// Parses what `Display` wrote.
    pub fn parse(s: &str) -> Option<Usage> {
        let mut u = Usage::default();
        for field in s.split_whitespace() {
            let (k, v) = field.split_once('=')?;
            let v = v.parse().ok()?;
            match k {
                "fds" => u.fds = v,
                "maps" => u.maps = v,
                "rss_kb" => u.rss_kb = v,
                _ => return None,
            }
        }
        Some(u)
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fds={} maps={} rss_kb={}",
            self.fds, self.maps, self.rss_kb
        )
    }
}

/// What the kernel says process `pid` is doing (state and wait channel),
/// for a hang report.
pub fn whereabouts(pid: u32) -> String {
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // The state follows the command name, which is in parentheses.
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| "?".into());
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    format!("pid {pid} state {state} wchan {wchan:?}")
}
