//! The driver: starts the survivor and one victim after another, kills the
//! victims with SIGKILL at random moments, samples the survivor, watches
//! for hangs, and judges the run.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use crate::board::{self, Board};
use crate::pattern::{Rng, mix};
use crate::peer::{self, Role};
use crate::procfs::{self, Usage};
use crate::{EXIT_FAILED, EXIT_USAGE, EXIT_WRONG_BYTE, Flags};

/// No payload verified for this long is a hang. Generous, because a
/// loaded 2-core machine can stall a process for seconds; a real hang still
/// fails the run well before the processes' own 45 s bounds end it.
const WATCHDOG: Duration = Duration::from_secs(30);

/// How long the survivor may take to start listening, or to exit once told
/// to stop.
const GRACE: Duration = Duration::from_secs(30);

const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// A victim is killed this long after it was started: log-uniform, so a
/// quarter of the kills land in its first 8 ms (starting, connecting, the
/// session header), the rest while it streams, holds views or allocations.
const KILL_AFTER_MS: (f64, f64) = (0.5, 2000.0);

/// The survivor's counts after this many sessions are the baseline: the
/// first sessions warm up the allocator, lazily initialised statics and
/// the like.
const WARMUP_SESSIONS: u64 = 2;

/// How far the survivor's RSS may grow beyond the baseline when it holds no
/// connection. A region left mapped shows in the mappings, which are checked
/// exactly; RSS is there for memory leaked on the heap. Between connections
/// the survivor holds its listener and a few buffers, about 3 MiB in all,
/// and that moves by a few pages as the heap settles and late code paths
/// fault in. 64 MiB is far above that noise, and a leak that grows with the
/// traffic still passes it: four lost 16 MiB payload buffers, or about
/// 1 KiB per payload over a 60 s run (roughly a thousand payloads a second).
const IDLE_RSS_SLACK_KB: u64 = 64 << 10;

/// Shortest run: each phase needs a few sessions for its baseline and end.
const MIN_SECONDS: u64 = 10;

/// Faults `--inject` can plant, to show that the run then fails (see
/// `Peer::inject_at_session` and `Peer::send_payloads`).
const INJECTABLE: [&str; 4] = ["hang", "crash", "leak", "wrong-byte"];

/// Which process a line or an end of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// The survivor of phase n.
    Survivor(u32),
    /// Victim number i of phase n.
    Victim(u32, u64),
}

enum Event {
    Line(Who, String),
    /// The process closed its stdout: it has exited (or is exiting).
    Closed(Who),
}

/// A child process. Dropping it kills and reaps it if it still runs.
struct Proc {
    who: Who,
    child: Child,
    stdin: Option<ChildStdin>,
    status: Option<ExitStatus>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let st = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for our child {}: {e}", self.pid()));
        self.status = Some(st);
        st
    }

    /// Sends SIGKILL (unless already reaped) and reaps.
    fn kill9(&mut self) -> ExitStatus {
        if self.status.is_none() {
            // SAFETY: kill takes no pointers; the pid is our child and not
            // reaped yet, so it cannot name another process.
            unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGKILL) };
        }
        self.wait()
    }

    /// The exit status if the process has exited, without waiting.
    fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How a process ended, in words.
fn describe(st: ExitStatus) -> String {
    match (st.code(), st.signal()) {
        (Some(0), _) => "exit status 0".into(),
        (Some(EXIT_WRONG_BYTE), _) => format!("exit status {EXIT_WRONG_BYTE} (a wrong byte)"),
        (Some(EXIT_FAILED), _) => format!("exit status {EXIT_FAILED} (a voxshm call failed)"),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!(
            "signal {s}{}",
            if st.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        ),
        (None, None) => format!("{st:?}"),
    }
}

struct Spawner {
    exe: PathBuf,
    board_fd: RawFd,
    events: Sender<Event>,
}

impl Spawner {
    /// Starts `soak <args>`, its stdout read line by line into events.
    fn spawn(&self, who: Who, args: &[String], stdin: bool) -> Result<Proc, String> {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .args(["--board-fd", &self.board_fd.to_string()])
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let fd = self.board_fd;
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe calls (prctl, fcntl).
        unsafe {
            cmd.pre_exec(move || {
                // No process of a run outlives the driver, however it ends.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The board is close-on-exec in the driver: let this child
                // inherit it.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.exe.display()))?;
        let out = child.stdout.take().expect("stdout is piped");
        let events = self.events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if events.send(Event::Line(who, line)).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Closed(who));
        });
        Ok(Proc {
            who,
            stdin: child.stdin.take(),
            child,
            status: None,
        })
    }
}

/// What one phase saw.
#[derive(Default)]
struct PhaseReport {
    seconds: f64,
    payloads: u64,
    bytes: u64,
    /// Victims killed at a random moment, by what they were doing.
    kills: [u64; 4],
    /// Victims killed because the phase ended.
    final_kills: u64,
    restarts: u64,
    /// The survivor's reports when it held no connection: (sessions done,
    /// usage).
    idle: Vec<(u64, Usage)>,
    /// Largest of the per-second samples.
    live_max: Usage,
    samples: u64,
}

impl PhaseReport {
    /// The first report after warm-up.
    fn baseline(&self) -> Option<(usize, u64, Usage)> {
        self.idle
            .iter()
            .enumerate()
            .find(|(_, (s, _))| *s >= WARMUP_SESSIONS)
            .map(|(i, (s, u))| (i, *s, *u))
    }
}

struct Phase<'a> {
    no: u32,
    survivor_role: Role,
    addr: String,
    seed: u64,
    rng: Rng,
    spawner: &'a Spawner,
    events: &'a Receiver<Event>,
    board: &'a Board,
    verbose: bool,
    inject: Option<String>,
    survivor: Option<Proc>,
    victim: Option<Proc>,
    victims: u64,
    stopping: bool,
    rep: PhaseReport,
}

impl Phase<'_> {
    fn run(&mut self, length: Duration) -> Result<(), String> {
        let t0 = Instant::now();
        let before = (
            self.board.get(board::VERIFIED_PAYLOADS),
            self.board.get(board::VERIFIED_BYTES),
        );
        let r = self.run_until(t0 + length);
        self.rep.seconds = t0.elapsed().as_secs_f64();
        self.rep.payloads = self.board.get(board::VERIFIED_PAYLOADS) - before.0;
        self.rep.bytes = self.board.get(board::VERIFIED_BYTES) - before.1;
        r
    }

    /// Arguments for a `soak sender|receiver` of this phase.
    fn peer_args(&self, role: Role, seed: u64) -> Vec<String> {
        let mut args = vec![
            role.name().to_string(),
            "--addr".into(),
            self.addr.clone(),
            "--seed".into(),
            seed.to_string(),
        ];
        if let Some(kind) = &self.inject {
            args.extend(["--inject".into(), kind.clone()]);
        }
        args
    }

    fn run_until(&mut self, end: Instant) -> Result<(), String> {
        let mut args = self.peer_args(self.survivor_role, self.seed);
        args.push("--survivor".into());
        self.survivor = Some(self.spawner.spawn(Who::Survivor(self.no), &args, true)?);
        let ready_by = Instant::now() + GRACE;
        loop {
            match self.next_event(ready_by) {
                None => return Err(format!("the survivor did not start within {GRACE:?}")),
                Some(Event::Line(Who::Survivor(_), l)) if l == "READY" => break,
                Some(ev) => self.handle(ev)?,
            }
        }
        self.spawn_victim()?;
        let mut next_kill = Instant::now() + self.kill_delay();
        let mut next_sample = Instant::now();
        let mut progress = (self.board.get(board::VERIFIED_PAYLOADS), Instant::now());
        loop {
            let now = Instant::now();
            if now >= next_sample {
                self.sample(&mut progress)?;
                next_sample = now + SAMPLE_EVERY;
            }
            if now >= end {
                break;
            }
            if now >= next_kill
                && let Some(v) = self.victim.take()
            {
                let state = self.kill_victim(v)?;
                self.rep.kills[state] += 1;
                self.spawn_victim()?;
                self.rep.restarts += 1;
                next_kill = Instant::now() + self.kill_delay();
            }
            if let Some(ev) = self.next_event(next_sample.min(next_kill).min(end)) {
                self.handle(ev)?;
            }
        }
        self.stop()?;
        self.check_idle_counts()
    }

    /// The next event, or None once `until` has passed.
    fn next_event(&self, until: Instant) -> Option<Event> {
        // The spawner keeps a sender alive, so this only ever times out.
        self.events
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .ok()
    }

    fn kill_delay(&mut self) -> Duration {
        let (lo, hi) = KILL_AFTER_MS;
        Duration::from_secs_f64(lo * (hi / lo).powf(self.rng.unit()) / 1000.0)
    }

    fn victim_name(&self) -> String {
        format!("victim {}", self.survivor_role.other().name())
    }

    fn spawn_victim(&mut self) -> Result<(), String> {
        self.victims += 1;
        self.board.set(board::VICTIM_STATE, board::STATE_STARTING);
        let args = self.peer_args(self.survivor_role.other(), mix(self.seed ^ self.victims));
        let who = Who::Victim(self.no, self.victims);
        self.victim = Some(self.spawner.spawn(who, &args, false)?);
        Ok(())
    }

    /// Kills the victim with SIGKILL; returns what it was doing (its last
    /// STATE_* on the board). A victim that had already ended otherwise is
    /// a failure.
    fn kill_victim(&mut self, mut v: Proc) -> Result<usize, String> {
        let st = v.kill9();
        if st.signal() != Some(libc::SIGKILL) {
            self.check_survivor()?;
            return Err(format!(
                "{} #{} ended before the driver killed it: {}",
                self.victim_name(),
                self.victims,
                describe(st)
            ));
        }
        Ok((self.board.get(board::VICTIM_STATE) as usize).min(board::STATE_NAMES.len() - 1))
    }

    /// Fails if the survivor has died.
    fn check_survivor(&mut self) -> Result<(), String> {
        let role = self.survivor_role.name();
        match self.survivor.as_mut().and_then(Proc::exited) {
            Some(st) => Err(format!("the survivor {role} died: {}", describe(st))),
            None => Ok(()),
        }
    }

    fn handle(&mut self, ev: Event) -> Result<(), String> {
        match ev {
            Event::Line(Who::Survivor(_), l) => match l.strip_prefix("IDLE ") {
                Some(rest) => {
                    let parsed = rest
                        .split_once(' ')
                        .and_then(|(s, u)| Some((s.parse().ok()?, Usage::parse(u)?)));
                    let (sessions, usage) =
                        parsed.ok_or_else(|| format!("the survivor said {l:?}"))?;
                    if self.verbose {
                        println!("  idle after {sessions} sessions: {usage}");
                    }
                    self.rep.idle.push((sessions, usage));
                }
                None => println!("[survivor {}] {l}", self.survivor_role.name()),
            },
            Event::Line(Who::Victim(_, n), l) => println!("[{} #{n}] {l}", self.victim_name()),
            Event::Closed(Who::Survivor(p)) if p == self.no && !self.stopping => {
                let st = self.survivor.as_mut().map(Proc::wait);
                let role = self.survivor_role.name();
                return Err(format!(
                    "the survivor {role} died: {}",
                    st.map_or("?".into(), describe)
                ));
            }
            Event::Closed(who) if self.victim.as_ref().is_some_and(|v| v.who == who) => {
                self.check_survivor()?;
                let st = self.victim.as_mut().map(Proc::wait);
                return Err(format!(
                    "{} #{} ended on its own: {}",
                    self.victim_name(),
                    self.victims,
                    st.map_or("?".into(), describe)
                ));
            }
            // The end of a victim killed earlier.
            Event::Closed(_) => {}
        }
        Ok(())
    }

    /// Samples the survivor's /proc, and checks progress.
    fn sample(&mut self, progress: &mut (u64, Instant)) -> Result<(), String> {
        let pid = self.survivor.as_ref().map_or(0, Proc::pid);
        // Unreadable: the survivor has just died, which its Closed event
        // reports.
        if let Ok(u) = procfs::usage(&pid.to_string()) {
            self.rep.live_max = self.rep.live_max.max(u);
            self.rep.samples += 1;
            if self.verbose {
                println!(
                    "  sample: {u}, {} payloads verified",
                    self.board.get(board::VERIFIED_PAYLOADS)
                );
            }
            // While connected the survivor also maps the session's regions
            // (all resident: they are populated when mapped), at most the
            // sender's budget.
            let bound = peer::registry_options().budget / 1024 + IDLE_RSS_SLACK_KB;
            if let Some((_, _, base)) = self.rep.baseline()
                && u.rss_kb > base.rss_kb + bound
            {
                return Err(format!(
                    "the survivor's RSS is {} KiB, more than its baseline {} KiB + budget + 64 MiB",
                    u.rss_kb, base.rss_kb
                ));
            }
        }
        let done = self.board.get(board::VERIFIED_PAYLOADS);
        if done != progress.0 {
            *progress = (done, Instant::now());
        } else if progress.1.elapsed() > WATCHDOG {
            return Err(format!(
                "hang: no payload verified for {WATCHDOG:?} (survivor: {}; victim: {}, {})",
                procfs::whereabouts(pid),
                self.victim
                    .as_ref()
                    .map_or("none".into(), |v| procfs::whereabouts(v.pid())),
                board::STATE_NAMES[(self.board.get(board::VICTIM_STATE) as usize)
                    .min(board::STATE_NAMES.len() - 1)]
            ));
        }
        Ok(())
    }

    /// Ends the phase: kills the victim, so the survivor sees its peer go
    /// and returns to idle (reporting its counts once more), then closes the
    /// survivor's stdin, which tells it to exit.
    fn stop(&mut self) -> Result<(), String> {
        self.stopping = true;
        if let Some(v) = self.victim.take() {
            self.kill_victim(v)?;
            self.rep.final_kills += 1;
        }
        if let Some(s) = self.survivor.as_mut() {
            drop(s.stdin.take());
        }
        let deadline = Instant::now() + GRACE;
        loop {
            match self.next_event(deadline) {
                None => {
                    let pid = self.survivor.as_ref().map_or(0, Proc::pid);
                    return Err(format!(
                        "hang: the survivor did not exit within {GRACE:?} of being told to stop ({})",
                        procfs::whereabouts(pid)
                    ));
                }
                Some(Event::Closed(Who::Survivor(p))) if p == self.no => break,
                Some(ev) => self.handle(ev)?,
            }
        }
        let st = self.survivor.as_mut().map(Proc::wait);
        match st {
            Some(st) if st.success() => Ok(()),
            st => Err(format!(
                "the survivor {} ended with {} when told to stop",
                self.survivor_role.name(),
                st.map_or("?".into(), describe)
            )),
        }
    }

    /// Whenever the survivor held no connection after warm-up, it held no
    /// more fds and no more mappings than at the baseline, and its RSS
    /// stayed within the slack.
    fn check_idle_counts(&self) -> Result<(), String> {
        let Some((i, _, base)) = self.rep.baseline() else {
            return Err(format!(
                "too short: the survivor finished fewer than {WARMUP_SESSIONS} sessions, so there is no baseline"
            ));
        };
        let role = self.survivor_role.name();
        for (sessions, u) in &self.rep.idle[i..] {
            if u.fds > base.fds || u.maps > base.maps || u.rss_kb > base.rss_kb + IDLE_RSS_SLACK_KB
            {
                return Err(format!(
                    "growth: after {sessions} sessions the survivor {role} holds {u}, baseline {base}"
                ));
            }
        }
        Ok(())
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn counts(u: &Usage) -> String {
    format!("fds {} maps {} rss {}", u.fds, u.maps, mib(u.rss_kb))
}

fn print_summary(seconds: f64, seed: u64, board: &Board, phases: &[(Role, PhaseReport)]) {
    let payloads: u64 = phases.iter().map(|p| p.1.payloads).sum();
    let bytes: u64 = phases.iter().map(|p| p.1.bytes).sum();
    println!("== summary ==");
    println!("seconds              {seconds:.1} (seed {seed:#x})");
    println!(
        "payloads verified    {payloads} ({:.2} GiB, every byte); {} sent (the rest died with their receivers)",
        bytes as f64 / (1u64 << 30) as f64,
        board.get(board::SENT_PAYLOADS)
    );
    for (role, r) in phases {
        let victim = role.other().name();
        let states: Vec<String> = board::STATE_NAMES
            .iter()
            .zip(r.kills)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!(
            "{:<20} {} at random ({}), {} at the end of the phase; {} restarts",
            format!("{victim}s killed"),
            r.kills.iter().sum::<u64>(),
            states.join(", "),
            r.final_kills,
            r.restarts
        );
    }
    for (role, r) in phases {
        let name = format!("survivor {}", role.name());
        print!(
            "{name:<20} {:.1} s, {} payloads, {} sessions",
            r.seconds,
            r.payloads,
            r.idle.last().map_or(0, |i| i.0)
        );
        match (r.baseline(), r.idle.last()) {
            (Some((_, s0, base)), Some((s1, end))) => println!(
                "\n{:<20} baseline (after {s0} sessions) {}; end (after {s1}) {}; largest sample {}",
                "",
                counts(&base),
                counts(end),
                counts(&r.live_max)
            ),
            _ => println!("; no baseline"),
        }
    }
}

pub fn main(args: &[String]) -> i32 {
    let parsed = Flags::parse(args, &["--seconds", "--seed", "--inject"], &["--verbose"]);
    let parsed = parsed.and_then(|f| {
        let seconds = f.number("--seconds")?.unwrap_or(60);
        let seed = f.number("--seed")?;
        let inject = f.get("--inject").map(str::to_string);
        if let Some(kind) = &inject
            && !INJECTABLE.contains(&kind.as_str())
        {
            return Err(format!("--inject takes one of {INJECTABLE:?}"));
        }
        Ok((seconds, seed, f.has("--verbose"), inject))
    });
    let (seconds, seed, verbose, inject) = match parsed {
        Ok((s, ..)) if s < MIN_SECONDS => {
            eprintln!("soak driver: --seconds must be at least {MIN_SECONDS}");
            return EXIT_USAGE;
        }
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak driver: {e}");
            return EXIT_USAGE;
        }
    };
    let seed = seed.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
    });
    let (board, board_fd) = match Board::create() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("soak driver: creating the board: {e}");
            return EXIT_FAILED;
        }
    };
    let exe = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("soak driver: current_exe: {e}");
            return EXIT_FAILED;
        }
    };
    let (tx, rx) = mpsc::channel();
    let spawner = Spawner {
        exe,
        board_fd: board_fd.as_raw_fd(),
        events: tx,
    };
    let pid = std::process::id();
    println!("soak: {seconds} s of voxshm across processes, seed {seed:#x}, driver pid {pid}");
    let t0 = Instant::now();
    let mut reports = Vec::new();
    let mut failure = None;
    for (no, survivor_role) in [(1u32, Role::Sender), (2, Role::Receiver)] {
        let length = if no == 1 {
            seconds / 2
        } else {
            seconds - seconds / 2
        };
        println!(
            "phase {no}: a long-lived {} serves {}s killed at random, {length} s",
            survivor_role.name(),
            survivor_role.other().name()
        );
        let mut phase = Phase {
            no,
            survivor_role,
            // Abstract names: nothing on disk to clean up, and the driver's
            // pid keeps concurrent runs apart.
            addr: format!("@voxshm-soak-{pid}-{no}"),
            seed: mix(seed ^ u64::from(no)),
            rng: Rng::new(seed ^ 0xD71 ^ u64::from(no)),
            spawner: &spawner,
            events: &rx,
            board: &board,
            verbose,
            inject: inject.clone(),
            survivor: None,
            victim: None,
            victims: 0,
            stopping: false,
            rep: PhaseReport::default(),
        };
        let r = phase.run(Duration::from_secs(length));
        reports.push((survivor_role, std::mem::take(&mut phase.rep)));
        // Kills whatever of this phase still runs (only after a failure).
        drop(phase);
        if let Err(e) = r {
            failure = Some(e);
            break;
        }
    }
    print_summary(t0.elapsed().as_secs_f64(), seed, &board, &reports);
    let failures = board.get(board::FAILURES);
    match failure {
        None if failures == 0 => {
            println!("soak: PASS");
            0
        }
        None => {
            println!("soak: FAIL: {failures} process(es) reported a failure");
            1
        }
        Some(e) => {
            println!("soak: FAIL: {e}");
            1
        }
    }
}
