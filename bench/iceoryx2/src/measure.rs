//! What each process counts on itself over its measuring window, as
//! voxshm-latency does: system calls (perf tracepoint
//! `raw_syscalls:sys_enter`), context switches (perf software counter, or
//! getrusage), CPU time (CLOCK_PROCESS_CPUTIME_ID, kernel part from
//! getrusage), minor faults.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call).
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Pins the calling process to one CPU.
pub fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
    // sched_setaffinity get a valid set of the right size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

const TRACEPOINT_ID_FILES: [&str; 2] = [
    "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
    "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
];

const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_TYPE_TRACEPOINT: u32 = 2;
const PERF_COUNT_SW_CONTEXT_SWITCHES: u64 = 3;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_RESET: libc::c_ulong = 0x2403;

/// Opens a counter on this process (any CPU, not its children), disabled.
fn perf_open(kind: u32, config: u64) -> io::Result<OwnedFd> {
    // struct perf_event_attr, version 7 (128 bytes): type, size, config,
    // then the flag word at byte 40: bit 0 disabled, bit 6 exclude_hv.
    let mut attr = [0u64; 16];
    attr[0] = u64::from(kind) | (128u64 << 32);
    attr[1] = config;
    attr[5] = 1 | (1 << 6);
    // SAFETY: `attr` is 128 readable bytes laid out as the kernel expects;
    // the fd returned is new and ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn ioctl(fd: &OwnedFd, request: libc::c_ulong) {
    // SAFETY: a perf ioctl without argument on a perf fd.
    unsafe { libc::ioctl(fd.as_raw_fd(), request, 0) };
}

fn read_counter(fd: &OwnedFd) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    (n == 8).then_some(v)
}

/// How the counters work in this run; the notes go into the output.
#[derive(Clone, Debug)]
pub struct Setup {
    pub tracepoint_id: Option<u64>,
    pub syscalls_note: String,
    pub ctxsw_note: String,
}

impl Setup {
    pub fn probe() -> Setup {
        let mut first_err = None;
        let mut id = None;
        for path in TRACEPOINT_ID_FILES {
            match fs::read_to_string(path) {
                Ok(s) => {
                    id = s.trim().parse::<u64>().ok();
                    break;
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let syscalls_note = match (id, first_err) {
            (None, e) => format!(
                "n/a ({}: {})",
                TRACEPOINT_ID_FILES[0],
                e.map_or("no tracepoint id".into(), |e| e.to_string())
            ),
            (Some(id), _) => match perf_open(PERF_TYPE_TRACEPOINT, id) {
                Ok(_) => format!("perf_event_open on tracepoint raw_syscalls:sys_enter (id {id})"),
                Err(e) => {
                    let note = format!("n/a (perf_event_open: {e})");
                    return Setup::with(None, note);
                }
            },
        };
        Setup::with(id, syscalls_note)
    }

    fn with(tracepoint_id: Option<u64>, syscalls_note: String) -> Setup {
        let ctxsw_note = match perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES) {
            Ok(_) => "perf_event_open PERF_COUNT_SW_CONTEXT_SWITCHES".to_string(),
            Err(e) => format!("from getrusage (perf_event_open: {e})"),
        };
        Setup {
            tracepoint_id,
            syscalls_note,
            ctxsw_note,
        }
    }
}

/// What one process counted over its window.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub payloads: u64,
    pub syscalls: Option<u64>,
    pub ctxsw: Option<u64>,
    pub cpu_ns: u64,
    pub sys_ns: u64,
    pub minor_faults: u64,
    /// Event notifications sent (the blocking variants' wake-ups).
    pub notifies: u64,
}

impl Counts {
    /// One line of numbers, for process B's report to A.
    pub fn encode(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        format!(
            "{} {} {} {} {} {} {}",
            self.payloads,
            opt(self.syscalls),
            opt(self.ctxsw),
            self.cpu_ns,
            self.sys_ns,
            self.minor_faults,
            self.notifies
        )
    }

    pub fn decode(words: &[&str]) -> Option<Counts> {
        let num = |i: usize| words.get(i)?.parse::<u64>().ok();
        let opt = |i: usize| match *words.get(i)? {
            "-" => Some(None),
            w => w.parse::<u64>().ok().map(Some),
        };
        Some(Counts {
            payloads: num(0)?,
            syscalls: opt(1)?,
            ctxsw: opt(2)?,
            cpu_ns: num(3)?,
            sys_ns: num(4)?,
            minor_faults: num(5)?,
            notifies: num(6)?,
        })
    }
}

fn rusage() -> libc::rusage {
    // SAFETY: getrusage fills the zeroed struct.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    }
}

fn tv_ns(tv: libc::timeval) -> u64 {
    tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000
}

/// One process's counters. The system-call counter sees the ioctl that
/// stops it: what an empty window counts is measured at the start and
/// taken off every window.
pub struct Counters {
    sys: Option<OwnedFd>,
    csw: Option<OwnedFd>,
    sys_base: u64,
    csw_base: u64,
    ru0: libc::rusage,
    cpu0: u64,
}

impl Counters {
    pub fn open(setup: &Setup) -> Counters {
        let mut k = Counters {
            sys: setup
                .tracepoint_id
                .and_then(|id| perf_open(PERF_TYPE_TRACEPOINT, id).ok()),
            csw: perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES).ok(),
            sys_base: 0,
            csw_base: 0,
            ru0: rusage(),
            cpu0: 0,
        };
        let (mut sys_base, mut csw_base) = (u64::MAX, u64::MAX);
        for _ in 0..3 {
            k.start();
            let e = k.stop_raw();
            sys_base = sys_base.min(e.syscalls.unwrap_or(0));
            csw_base = csw_base.min(e.ctxsw.unwrap_or(0));
        }
        k.sys_base = sys_base;
        k.csw_base = csw_base;
        k
    }

    pub fn start(&mut self) {
        self.ru0 = rusage();
        self.cpu0 = clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
        for fd in [&self.csw, &self.sys].into_iter().flatten() {
            ioctl(fd, PERF_EVENT_IOC_RESET);
            ioctl(fd, PERF_EVENT_IOC_ENABLE);
        }
    }

    fn stop_raw(&mut self) -> Counts {
        for fd in [&self.sys, &self.csw].into_iter().flatten() {
            ioctl(fd, PERF_EVENT_IOC_DISABLE);
        }
        let cpu = clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID) - self.cpu0;
        let ru = rusage();
        let sys = tv_ns(ru.ru_stime) - tv_ns(self.ru0.ru_stime);
        let rusage_csw =
            (ru.ru_nvcsw + ru.ru_nivcsw - self.ru0.ru_nvcsw - self.ru0.ru_nivcsw) as u64;
        Counts {
            payloads: 0,
            syscalls: self.sys.as_ref().and_then(read_counter),
            ctxsw: match &self.csw {
                Some(fd) => read_counter(fd),
                None => Some(rusage_csw),
            },
            cpu_ns: cpu,
            sys_ns: sys.min(cpu),
            minor_faults: (ru.ru_minflt - self.ru0.ru_minflt) as u64,
            notifies: 0,
        }
    }

    pub fn stop(&mut self) -> Counts {
        let mut c = self.stop_raw();
        c.syscalls = c.syscalls.map(|v| v.saturating_sub(self.sys_base));
        c.ctxsw = c.ctxsw.map(|v| v.saturating_sub(self.csw_base));
        c
    }
}
