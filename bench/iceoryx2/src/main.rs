//! voxshm-latency's round-trip and stream shapes over iceoryx2 0.10, with
//! the same payload work, the same per-process counters and the same CSV
//! columns, so that its rows sit next to voxshm-latency's.
//!
//!   voxshm-latency-iceoryx2 [--quick] [--csv FILE] [--sizes LIST]
//!       [--no-default-sizes] [--shapes LIST] [--variants LIST]
//!       [--iterations N] [--warmup N] [--seconds S] [--spin-us N]
//!       [--cpus A,B | --no-pin]
//!
//! Process A runs the cases; for each it opens its ports, starts itself
//! again as process B (`--role-b ...`), waits for B to say it is ready,
//! and reads B's counters from B's standard output at the end.

mod measure;
mod payload;
mod transport;

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, ExitCode, Stdio};

use iceoryx2::prelude::{LogLevel, set_log_level};

use measure::{Counters, Counts, Setup, now_ns};
use payload::{F_LAST, F_MEASURED, F_WARM_END, Shape};
use transport::{PortSpec, Ports, Side, Variant};

const MECHANISM: &str = "iceoryx2";
const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
/// voxshm's defaults, which voxshm-latency's stream floor follows too: at
/// most 1024 payloads and 64 MiB in flight.
const MAX_DEPTH: usize = 1024;
const MAX_IN_FLIGHT: usize = 64 * MIB;

struct Options {
    quick: bool,
    cpus: Option<(usize, usize)>,
    csv: Option<String>,
    extra_sizes: Vec<usize>,
    default_sizes: bool,
    shapes: Vec<Shape>,
    variants: Vec<Variant>,
    iterations: u64,
    warmup: u64,
    seconds: f64,
    spin_us: u32,
}

const USAGE: &str = "usage: voxshm-latency-iceoryx2 [--quick] [--csv FILE] [--sizes LIST] \
[--no-default-sizes] [--shapes LIST] [--variants LIST] [--iterations N] [--warmup N] \
[--seconds S] [--spin-us N] [--cpus A,B | --no-pin]
  the options of voxshm-latency, with the same defaults; see docs/benchmarks.md";

fn parse_size(s: &str) -> Option<usize> {
    let t = s.trim_end_matches(['b', 'B']).trim_end_matches(['i', 'I']);
    let (digits, mult) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], KIB),
        'm' | 'M' => (&t[..t.len() - 1], MIB),
        _ => (t, 1),
    };
    let v = digits.parse::<usize>().ok()?.checked_mul(mult)?;
    (v >= payload::HEADER_LEN && v.is_multiple_of(8)).then_some(v)
}

fn pick<T: Copy>(list: &str, all: &[T], name: fn(T) -> &'static str) -> Option<Vec<T>> {
    list.split(',')
        .map(|item| all.iter().copied().find(|&x| name(x) == item))
        .collect()
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let quick = args.iter().any(|a| a == "--quick");
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut o = Options {
        quick,
        cpus: two_cpus.then_some((0, 1)),
        csv: None,
        extra_sizes: Vec::new(),
        default_sizes: true,
        shapes: Shape::ALL.to_vec(),
        variants: Variant::ALL.to_vec(),
        iterations: if quick { 2000 } else { 100_000 },
        warmup: if quick { 200 } else { 2000 },
        seconds: if quick { 0.03 } else { 1.0 },
        spin_us: 50,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        let bad = || format!("bad value for {a}");
        match a.as_str() {
            "--quick" => {}
            "--no-pin" => o.cpus = None,
            "--no-default-sizes" => o.default_sizes = false,
            "--csv" => o.csv = Some(value()?.clone()),
            "--sizes" => {
                let v: Option<Vec<usize>> = value()?.split(',').map(parse_size).collect();
                o.extra_sizes.extend(v.ok_or_else(bad)?);
            }
            "--shapes" => o.shapes = pick(value()?, &Shape::ALL, Shape::name).ok_or_else(bad)?,
            "--variants" => {
                o.variants = pick(value()?, &Variant::ALL, Variant::name).ok_or_else(bad)?
            }
            "--iterations" => {
                o.iterations = value()?.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?
            }
            "--warmup" => o.warmup = value()?.parse().ok().filter(|&n| n > 0).ok_or_else(bad)?,
            "--seconds" => {
                o.seconds = value()?.parse().ok().filter(|&s| s > 0.0).ok_or_else(bad)?
            }
            "--spin-us" => o.spin_us = value()?.parse().map_err(|_| bad())?,
            "--cpus" => {
                let v = value()?;
                let (a, b) = v.split_once(',').ok_or_else(bad)?;
                o.cpus = Some((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?));
            }
            "--help" | "-h" => return Err(USAGE.to_string()),
            _ => return Err(format!("bad argument '{a}'\n{USAGE}")),
        }
    }
    Ok(o)
}

/// One case, as voxshm-latency plans it.
#[derive(Clone, Debug)]
struct Case {
    shape: Shape,
    variant: Variant,
    size: usize,
    spin_us: u32,
    depth: usize,
    warm_min: u64,
    warm_ns: u64,
    meas_min: u64,
    meas_max: u64,
    meas_ns: u64,
}

impl Case {
    fn new(o: &Options, shape: Shape, variant: Variant, size: usize) -> Case {
        let depth = (MAX_IN_FLIGHT / size).clamp(1, MAX_DEPTH);
        let stream = shape.is_stream();
        Case {
            shape,
            variant,
            size,
            spin_us: if variant == Variant::Block {
                o.spin_us
            } else {
                0
            },
            depth: if stream { depth } else { 2 },
            // A stream warms up through twice what may be in flight.
            warm_min: if stream {
                o.warmup.max(2 * depth as u64 + 16)
            } else {
                o.warmup
            },
            warm_ns: if o.quick { 10_000_000 } else { 200_000_000 },
            meas_min: if stream { 100 } else { 10 },
            meas_max: if stream { u64::MAX / 2 } else { o.iterations },
            meas_ns: (o.seconds * 1e9) as u64,
        }
    }

    fn spec(&self, prefix: String) -> PortSpec {
        PortSpec {
            prefix,
            variant: self.variant,
            size: self.size,
            spin_us: self.spin_us,
            depth: self.depth,
        }
    }
}

/// A decides how long the case runs and marks it in the headers.
struct Driver<'a> {
    c: &'a Case,
    sent: u64,
    meas: u64,
    t0: u64,
    t_meas0: u64,
    now: u64,
    measuring: bool,
    clock_mask: u64,
}

impl<'a> Driver<'a> {
    fn new(c: &'a Case) -> Driver<'a> {
        let now = now_ns();
        Driver {
            c,
            sent: 0,
            meas: 0,
            t0: now,
            t_meas0: now,
            now,
            measuring: false,
            // A stream sends faster than a clock read per payload is negligible.
            clock_mask: if c.shape.is_stream() { 15 } else { 0 },
        }
    }

    fn next(&mut self) -> u32 {
        let c = self.c;
        if self.sent & self.clock_mask == 0 {
            self.now = now_ns();
        }
        if !self.measuring {
            let last_warm = self.sent + 1 >= c.warm_min && self.now - self.t0 >= c.warm_ns;
            return if last_warm { F_WARM_END } else { 0 };
        }
        let over = self.meas + 1 >= c.meas_max
            || (self.meas + 1 >= c.meas_min && self.now - self.t_meas0 >= c.meas_ns);
        F_MEASURED | if over { F_LAST } else { 0 }
    }

    fn done(&mut self, flags: u32) {
        self.sent += 1;
        if flags & F_WARM_END != 0 {
            self.measuring = true;
            self.t_meas0 = now_ns();
            self.now = self.t_meas0;
        } else if flags & F_MEASURED != 0 {
            self.meas += 1;
        }
    }
}

/// A process's measuring window: opened once it has finished with the last
/// warm-up payload, closed once it has finished with the last one.
struct Window {
    k: Counters,
    t_start: u64,
    notifies0: u64,
}

impl Window {
    fn open(&mut self, ports: &Ports) {
        self.notifies0 = ports.tx.notifies;
        self.k.start();
        self.t_start = now_ns();
    }

    /// The counts and the window's length.
    fn close(&mut self, ports: &Ports, payloads: u64) -> (Counts, u64) {
        let t_end = now_ns();
        let mut c = self.k.stop();
        c.payloads = payloads;
        c.notifies = ports.tx.notifies - self.notifies0;
        (c, t_end - self.t_start)
    }
}

struct SideA {
    counts: Counts,
    window_ns: u64,
    samples: Vec<u64>,
    bad: u64,
}

/// A: sends, and in a round trip waits for the answer and times it.
fn side_a(c: &Case, ports: &mut Ports, mut w: Window) -> Result<SideA, String> {
    let rt = !c.shape.is_stream();
    let mut d = Driver::new(c);
    let mut samples = Vec::with_capacity(if rt { c.meas_max as usize } else { 0 });
    let mut bad = 0;
    for seq in 0.. {
        let flags = d.next();
        let t0 = if rt { now_ns() } else { 0 };
        ports
            .tx
            .send(c.size, |p| payload::put(c.shape, p, seq, flags, t0))?;
        if rt {
            ports
                .rx
                .recv(|p| payload::take(c.shape, p, seq, &mut bad))??;
            if flags & F_MEASURED != 0 {
                samples.push(now_ns() - t0);
            }
        }
        d.done(flags);
        if flags & F_WARM_END != 0 {
            w.open(ports);
        }
        if flags & F_LAST != 0 {
            let (counts, window_ns) = w.close(ports, d.meas);
            return Ok(SideA {
                counts,
                window_ns,
                samples,
                bad,
            });
        }
    }
    unreachable!("the loop returns at the last payload")
}

/// B: receives, and in a round trip answers (before giving back what it
/// received). Follows the header flags. Returns its counts, its window's
/// length and the payloads that failed their check.
fn side_b(c: &Case, ports: &mut Ports, mut w: Window) -> Result<(Counts, u64, u64), String> {
    let rt = !c.shape.is_stream();
    let (mut measured, mut bad) = (0, 0);
    for seq in 0.. {
        let Ports { tx, rx, .. } = &mut *ports;
        let flags = rx.recv(|p| {
            let flags = payload::take(c.shape, p, seq, &mut bad)?;
            if rt {
                tx.send(c.size, |q| payload::put(c.shape, q, seq, flags, 0))?;
            }
            Ok::<u32, String>(flags)
        })??;
        measured += u64::from(flags & F_MEASURED != 0);
        if flags & F_WARM_END != 0 {
            w.open(ports);
        }
        if flags & F_LAST != 0 {
            let (counts, window_ns) = w.close(ports, measured);
            return Ok((counts, window_ns, bad));
        }
    }
    unreachable!("the loop returns at the last payload")
}

const READY_SEQ: u64 = u64::MAX;

/// Process B: `--role-b PREFIX SHAPE VARIANT SIZE SPIN_US DEPTH CPU`.
/// Prints "report WINDOW_NS BAD COUNTS..." or "error MESSAGE".
fn run_b(args: &[String]) -> ExitCode {
    let r = (|| -> Result<String, String> {
        let [prefix, shape, variant, size, spin_us, depth, cpu] = args else {
            return Err(format!("--role-b: bad arguments {args:?}"));
        };
        let num = |s: &String| s.parse::<usize>().map_err(|_| format!("--role-b: bad {s}"));
        if cpu != "-" {
            measure::pin(num(cpu)?).map_err(|e| format!("sched_setaffinity: {e}"))?;
        }
        let shape = pick(shape, &Shape::ALL, Shape::name).ok_or("--role-b: shape")?[0];
        let variant = pick(variant, &Variant::ALL, Variant::name).ok_or("--role-b: variant")?[0];
        let c = Case {
            shape,
            variant,
            size: num(size)?,
            spin_us: num(spin_us)? as u32,
            depth: num(depth)?,
            warm_min: 0,
            warm_ns: 0,
            meas_min: 0,
            meas_max: 0,
            meas_ns: 0,
        };
        let setup = Setup::probe();
        let w = Window {
            k: Counters::open(&setup),
            t_start: 0,
            notifies0: 0,
        };
        let mut ports = Ports::open(&c.spec(prefix.clone()), Side::B)?;
        ports.tx.send(c.size, |p| {
            payload::put(Shape::StreamHeader, p, READY_SEQ, 0, 0)
        })?;
        let (counts, window_ns, bad) = side_b(&c, &mut ports, w)?;
        Ok(format!("report {window_ns} {bad} {}", counts.encode()))
    })();
    let (line, code) = match r {
        Ok(l) => (l, ExitCode::SUCCESS),
        Err(e) => (format!("error {e}"), ExitCode::FAILURE),
    };
    println!("{line}");
    code
}

/// One measured case.
struct CaseResult {
    case: Case,
    payloads: u64,
    median_us: f64,
    p99_us: f64,
    payloads_per_s: f64,
    gb_per_s: f64,
    a: Counts,
    b: Counts,
}

fn percentiles(v: &mut [u64]) -> (u64, u64) {
    if v.is_empty() {
        return (0, 0);
    }
    v.sort_unstable();
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    (median, v[(99 * n).div_ceil(100) - 1])
}

fn run_case(o: &Options, c: &Case, setup: &Setup, index: usize) -> Result<CaseResult, String> {
    let prefix = format!("voxshm-latency/{}/{index}", std::process::id());
    let mut ports = Ports::open(&c.spec(prefix.clone()), Side::A)?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let cpu_b = o.cpus.map_or("-".to_string(), |(_, b)| b.to_string());
    let mut child = Command::new(exe)
        .arg("--role-b")
        .args([&prefix, c.shape.name(), c.variant.name()])
        .args([c.size, c.spin_us as usize, c.depth].map(|v| v.to_string()))
        .arg(cpu_b)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting process B: {e}"))?;
    let w = Window {
        k: Counters::open(setup),
        t_start: 0,
        notifies0: 0,
    };
    let mut ignored = 0;
    let a = ports
        .rx
        .recv(|p| payload::take(Shape::StreamHeader, p, READY_SEQ, &mut ignored))
        .and_then(|r| r.map(|_| ()))
        .and_then(|()| side_a(c, &mut ports, w));
    if a.is_err() {
        let _ = child.kill();
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("process B: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let b = match words.as_slice() {
        ["report", window_ns, bad, rest @ ..] => {
            let counts = Counts::decode(rest).ok_or("process B: bad report")?;
            let parse = |s: &str| s.parse::<u64>().map_err(|_| "process B: bad report");
            (counts, parse(window_ns)?, parse(bad)?)
        }
        // B's failure most likely caused A's.
        ["error", ..] => return Err(format!("B: {}", text.trim_start_matches("error ").trim())),
        _ => {
            a?;
            return Err(format!("process B said nothing useful ({})", out.status));
        }
    };
    let mut a = a?;
    let (b_counts, b_window_ns, b_bad) = b;
    if a.bad + b_bad != 0 {
        return Err(format!("{} payloads failed their check", a.bad + b_bad));
    }
    let mut r = CaseResult {
        case: c.clone(),
        payloads: 0,
        median_us: 0.0,
        p99_us: 0.0,
        payloads_per_s: 0.0,
        gb_per_s: 0.0,
        a: a.counts,
        b: b_counts,
    };
    if c.shape.is_stream() {
        // Throughput is what the consumer saw.
        r.payloads = b_counts.payloads;
        r.payloads_per_s = r.payloads as f64 / (b_window_ns as f64 / 1e9);
        r.gb_per_s = r.payloads_per_s * c.size as f64 / 1e9;
    } else {
        let (median, p99) = percentiles(&mut a.samples);
        r.payloads = a.samples.len() as u64;
        r.median_us = median as f64 / 1e3;
        r.p99_us = p99 as f64 / 1e3;
        r.payloads_per_s = r.payloads as f64 / (a.window_ns as f64 / 1e9);
    }
    Ok(r)
}

fn per(v: u64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { v as f64 / n as f64 }
}

fn per_opt(v: Option<u64>, n: u64, digits: usize) -> String {
    v.map_or("n/a".to_string(), |v| format!("{:.digits$}", per(v, n)))
}

fn print_row(r: &CaseResult) {
    let rt = !r.case.shape.is_stream();
    let (med, p99, gb) = if rt {
        (
            format!("{:.3}", r.median_us),
            format!("{:.3}", r.p99_us),
            "-".to_string(),
        )
    } else {
        (
            "-".to_string(),
            "-".to_string(),
            format!("{:.3}", r.gb_per_s),
        )
    };
    println!(
        "  {:<14} {:>8} {:>10} {:>10} {:>12.0} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9.3} {:>9.3}",
        MECHANISM,
        r.payloads,
        med,
        p99,
        r.payloads_per_s,
        gb,
        per_opt(r.a.syscalls, r.a.payloads, 3),
        per_opt(r.b.syscalls, r.b.payloads, 3),
        per_opt(r.a.ctxsw, r.a.payloads, 3),
        per_opt(r.b.ctxsw, r.b.payloads, 3),
        per(r.a.cpu_ns, r.a.payloads) / 1e3,
        per(r.b.cpu_ns, r.b.payloads) / 1e3,
    );
}

const CSV_HEADER: &str = "mechanism,shape,variant,size,iterations,median_us,p99_us,payloads_per_s,\
gb_per_s,syscalls_per_payload_a,syscalls_per_payload_b,ctxsw_per_payload_a,ctxsw_per_payload_b,\
cpu_us_per_payload_a,cpu_us_per_payload_b,sys_us_per_payload_a,sys_us_per_payload_b,\
wakeups_per_payload_a,wakeups_per_payload_b,spin_us";

fn csv_row(r: &CaseResult) -> String {
    let c = &r.case;
    let mut s = format!(
        "{MECHANISM},{},{},{},{}",
        c.shape.name(),
        c.variant.name(),
        c.size,
        r.payloads
    );
    if c.shape.is_stream() {
        let _ = write!(s, ",,,{:.1},{:.4}", r.payloads_per_s, r.gb_per_s);
    } else {
        let _ = write!(
            s,
            ",{:.3},{:.3},{:.1},",
            r.median_us, r.p99_us, r.payloads_per_s
        );
    }
    for (v, n) in [
        (r.a.syscalls, r.a.payloads),
        (r.b.syscalls, r.b.payloads),
        (r.a.ctxsw, r.a.payloads),
        (r.b.ctxsw, r.b.payloads),
    ] {
        let _ = write!(s, ",{}", per_opt(v, n, 4));
    }
    let _ = write!(
        s,
        ",{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{}",
        per(r.a.cpu_ns, r.a.payloads) / 1e3,
        per(r.b.cpu_ns, r.b.payloads) / 1e3,
        per(r.a.sys_ns, r.a.payloads) / 1e3,
        per(r.b.sys_ns, r.b.payloads) / 1e3,
        per(r.a.notifies, r.a.payloads),
        per(r.b.notifies, r.b.payloads),
        c.spin_us
    );
    s
}

/// "64 B", "4 KiB", "16 MiB".
fn size_label(v: usize) -> String {
    match v {
        _ if v >= MIB && v.is_multiple_of(MIB) => format!("{} MiB", v / MIB),
        _ if v >= KIB && v.is_multiple_of(KIB) => format!("{} KiB", v / KIB),
        _ => format!("{v} B"),
    }
}

fn sizes_of(o: &Options, shape: Shape) -> Vec<usize> {
    let defaults: &[usize] = match (o.default_sizes, shape) {
        (false, _) => &[],
        (true, Shape::RoundTrip) => &[64, 4 * KIB],
        (true, _) => &[4 * KIB, 64 * KIB],
    };
    let mut v: Vec<usize> = defaults.iter().chain(&o.extra_sizes).copied().collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    set_log_level(LogLevel::Error);
    if args.first().is_some_and(|a| a == "--role-b") {
        return run_b(&args[1..]);
    }
    let o = match parse_args(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("voxshm-latency-iceoryx2: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some((a, _)) = o.cpus
        && let Err(e) = measure::pin(a)
    {
        eprintln!("voxshm-latency-iceoryx2: sched_setaffinity (try --no-pin or --cpus): {e}");
        return ExitCode::FAILURE;
    }
    let setup = Setup::probe();
    println!(
        "voxshm-latency-iceoryx2, iceoryx2 0.10 publish-subscribe (event service for blocking)"
    );
    println!(
        "run: {}; round trip: {} iterations at most, after {} warm-up; every case measures for \
         {:.3} s at most; {}",
        if o.quick { "quick" } else { "full" },
        o.iterations,
        o.warmup,
        o.seconds,
        o.cpus
            .map_or("processes not pinned".to_string(), |(a, b)| format!(
                "A on CPU {a}, B on CPU {b}"
            ))
    );
    println!(
        "system calls: {}\ncontext switches: {}",
        setup.syscalls_note, setup.ctxsw_note
    );
    println!(
        "wake-ups: event notifications sent per payload (every send, in the blocking variants)"
    );
    let mut results = Vec::new();
    let mut failures = 0;
    let t_start = now_ns();
    for shape in Shape::ALL.into_iter().filter(|s| o.shapes.contains(s)) {
        for size in sizes_of(&o, shape) {
            for variant in Variant::ALL.into_iter().filter(|v| o.variants.contains(v)) {
                let c = Case::new(&o, shape, variant, size);
                let spin = if variant == Variant::Block {
                    format!(" (spin_us {})", c.spin_us)
                } else {
                    String::new()
                };
                println!(
                    "\n{}, {}, {}{spin}",
                    shape.name(),
                    size_label(size),
                    variant.name()
                );
                println!(
                    "  {:<14} {:>8} {:>10} {:>10} {:>12} {:>8} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
                    "mechanism",
                    "n",
                    if shape.is_stream() { "-" } else { "median_us" },
                    if shape.is_stream() { "-" } else { "p99_us" },
                    if shape.is_stream() {
                        "payloads/s"
                    } else {
                        "rt/s"
                    },
                    "GB/s",
                    "sys/p A",
                    "sys/p B",
                    "csw/p A",
                    "csw/p B",
                    "cpu_us/p A",
                    "cpu_us/p B"
                );
                match run_case(&o, &c, &setup, results.len() + failures) {
                    Ok(r) => {
                        print_row(&r);
                        results.push(r);
                    }
                    Err(e) => {
                        println!("  {MECHANISM:<14} FAILED: {e}");
                        failures += 1;
                    }
                }
                let _ = std::io::stdout().flush();
            }
        }
    }
    println!(
        "\n{} cases in {:.1} s{}",
        results.len(),
        (now_ns() - t_start) as f64 / 1e9,
        if failures > 0 { "; some FAILED" } else { "" }
    );
    if let Some(path) = &o.csv {
        let mut text = format!("{CSV_HEADER}\n");
        for r in &results {
            text.push_str(&csv_row(r));
            text.push('\n');
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("voxshm-latency-iceoryx2: {path}: {e}");
            failures += 1;
        }
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
