//! Helpers shared by the integration tests: fd counting, payload patterns,
//! helper processes, and raw socket messages for hostile-peer tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use voxshm::Channel;

/// Generous timeout for anything that waits on another thread or process.
pub const LONG_MS: i64 = 60_000;

static SERIAL: Mutex<()> = Mutex::new(());

/// Serializes the tests of one binary, so that fds opened by one test do
/// not show up in another's counts. Every test of a binary that counts fds
/// takes it first.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The fds open in this process.
pub fn fd_list() -> Vec<RawFd> {
    let dir = std::fs::read_dir("/proc/self/fd").expect("read /proc/self/fd");
    let mut fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    // One of them was the directory's own fd, closed again by now.
    fds.retain(|&fd| {
        // SAFETY: F_GETFD only queries the fd table.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    });
    fds
}

/// Number of fds open in this process.
pub fn fd_count() -> usize {
    fd_list().len()
}

/// Shared-memory mappings of this process (memfds, and the temp files of
/// the fallback): what a handle maps and must unmap. Other mappings (thread
/// stacks, allocator arenas) come and go with the harness's threads.
pub fn mapping_count() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("/memfd:") || l.contains("(deleted)"))
        .count()
}

/// A small deterministic PRNG (splitmix64).
#[derive(Clone)]
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform in [1, max].
    pub fn log_uniform(&mut self, max: u64) -> u64 {
        let x = ((max as f64 + 1.0).ln() * self.unit()).exp() as u64;
        x.clamp(1, max)
    }

    /// Uniform in [lo, hi].
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// The pattern word `k` (the u64 at byte offset 8*k) of payload `index`.
#[inline(always)]
pub fn word(index: u64, k: u64) -> u64 {
    (index.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ 0x5555_5555_5555_5555
}

/// Writes payload `index`'s pattern into `len` bytes at `p`.
///
/// # Safety
/// `p` must be valid for writes of `len` bytes.
pub unsafe fn fill(p: *mut u8, len: u64, index: u64) {
    let words = len / 8;
    let w = p.cast::<u64>();
    for k in 0..words {
        // SAFETY: word k lies within the `len` bytes the caller vouches for.
        unsafe { w.add(k as usize).write_unaligned(word(index, k).to_le()) };
    }
    let tail = word(index, words).to_le_bytes();
    for (i, b) in tail.iter().take((len % 8) as usize).enumerate() {
        // SAFETY: as above; this byte is before `len`.
        unsafe { p.add((words * 8) as usize + i).write(*b) };
    }
}

/// Checks payload `index`'s pattern in `len` bytes at `p`, reading through
/// the raw pointer (never a slice over shared memory).
///
/// # Safety
/// `p` must be valid for reads of `len` bytes.
pub unsafe fn verify(p: *const u8, len: u64, index: u64) -> Result<(), String> {
    // SAFETY: forwarded from the caller.
    unsafe { verify_from(p, len, index, 0) }
}

/// `verify`, skipping the words before `first_word`.
///
/// # Safety
/// `p` must be valid for reads of `len` bytes.
unsafe fn verify_from(p: *const u8, len: u64, index: u64, first_word: u64) -> Result<(), String> {
    let words = len / 8;
    let w = p.cast::<u64>();
    const CHUNK: u64 = 4096;
    let mut start = first_word;
    while start < words {
        let end = (start + CHUNK).min(words);
        let mut diff = 0u64;
        for k in start..end {
            // SAFETY: word k lies within the `len` readable bytes.
            diff |= unsafe { w.add(k as usize).read_unaligned() } ^ word(index, k).to_le();
        }
        if diff != 0 {
            for k in start..end {
                // SAFETY: as above.
                let got = unsafe { w.add(k as usize).read_unaligned() };
                if got != word(index, k).to_le() {
                    return Err(format!(
                        "payload {index} ({len} bytes): word at offset {} is {got:#x}, expected {:#x}",
                        k * 8,
                        word(index, k).to_le()
                    ));
                }
            }
        }
        start = end;
    }
    let tail = word(index, words).to_le_bytes();
    for (i, b) in tail.iter().take((len % 8) as usize).enumerate() {
        let off = (words * 8) as usize + i;
        // SAFETY: this byte is before `len`.
        let got = unsafe { p.add(off).read() };
        if got != *b {
            return Err(format!(
                "payload {index} ({len} bytes): byte {off} is {got:#x}, expected {b:#x}"
            ));
        }
    }
    Ok(())
}

/// Writes `index` as the first 8 bytes and the pattern after them, so a
/// receiver that sees payloads out of order can tell which one it has.
///
/// # Safety
/// `p` must be valid for writes of `len >= 8` bytes.
pub unsafe fn fill_indexed(p: *mut u8, len: u64, index: u64) {
    assert!(len >= 8);
    // SAFETY: the caller vouches for `len` writable bytes.
    unsafe {
        fill(p, len, index);
        p.cast::<u64>().write_unaligned(index.to_le());
    }
}

/// Reads the index written by `fill_indexed` and checks the rest.
///
/// # Safety
/// `p` must be valid for reads of `len >= 8` bytes.
pub unsafe fn verify_indexed(p: *const u8, len: u64) -> Result<u64, String> {
    assert!(len >= 8);
    // SAFETY: the caller vouches for `len` readable bytes.
    let index = u64::from_le(unsafe { p.cast::<u64>().read_unaligned() });
    // SAFETY: as above.
    unsafe { verify_from(p, len, index, 1) }.map(|()| index)
}

// ---------------------------------------------------------------------------
// Helper processes.

/// Environment variable that tells a re-executed test binary which role its
/// helper test plays.
pub const ROLE_VAR: &str = "VOXSHM_TEST_ROLE";

/// The role this process was started for, if it is a helper.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok()
}

/// In a helper process: the channel the parent passed as fd 3.
pub fn inherited_channel() -> Channel {
    // SAFETY: the parent dup2'ed its channel end to fd 3 for this process,
    // and nothing else in this process owns fd 3.
    let fd = unsafe { OwnedFd::from_raw_fd(3) };
    Channel::from_fd(fd).expect("fd 3 is the channel")
}

/// An environment variable a helper was started with.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("helper needs ${name}"))
}

/// In a helper: waits for the next line from the parent. Returns None when
/// the parent closed the pipe (or died), so a helper never outlives it.
pub fn hear() -> Option<String> {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

/// Prints one line for the parent (after a newline, so it never shares a
/// line with the harness's output) and flushes it.
pub fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

/// A helper process: this test binary re-executed to run one helper test,
/// with a channel end as its fd 3 and its stdout piped back line by line.
pub struct Helper {
    child: Option<Child>,
    stdin: Option<std::process::ChildStdin>,
    lines: Receiver<String>,
    reader: Option<JoinHandle<()>>,
}

impl Helper {
    /// Starts `test` (the name of a helper `#[test]` in this binary) in role
    /// `role`. `fd`, if given, becomes the child's fd 3; the caller still
    /// owns (and should close) its own copy.
    pub fn spawn(test: &str, role: &str, fd: Option<RawFd>, envs: &[(&str, String)]) -> Helper {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(ROLE_VAR, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        if let Some(fd) = fd {
            // SAFETY: the closure runs in the forked child before exec and
            // only calls async-signal-safe functions (dup2, fcntl).
            unsafe {
                cmd.pre_exec(move || {
                    if fd == 3 {
                        // dup2 onto itself keeps FD_CLOEXEC: clear it.
                        if libc::fcntl(3, libc::F_SETFD, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(fd, 3) != 3 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn helper");
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Helper {
            child: Some(child),
            stdin,
            lines: rx,
            reader: Some(reader),
        }
    }

    /// Sends the helper one line on its stdin (see `hear`).
    pub fn tell(&mut self, line: &str) {
        use std::io::Write;
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{line}").expect("write to helper");
        w.flush().expect("flush to helper");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Waits for a line that contains `prefix` (other output, such as the
    /// test harness's own, is skipped; with --nocapture the harness may
    /// print its "test name ... " on the same line) and returns the rest.
    pub fn expect(&mut self, prefix: &str) -> String {
        loop {
            match self.lines.recv_timeout(Duration::from_secs(120)) {
                Ok(line) => {
                    if let Some(at) = line.find(prefix) {
                        return line[at + prefix.len()..].trim().to_string();
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("helper printed no {prefix:?} line within 120 s")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let st = self.child.as_mut().and_then(|c| c.wait().ok());
                    panic!("helper exited ({st:?}) before printing {prefix:?}")
                }
            }
        }
    }

    /// Waits for the helper to exit and for its stdout to close.
    pub fn wait(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let st = self.child.take().expect("running").wait().expect("wait");
        if let Some(r) = self.reader.take() {
            r.join().expect("reader thread");
        }
        st
    }

    /// Waits for the helper to exit and asserts it succeeded.
    pub fn wait_success(self) {
        let st = self.wait();
        assert!(st.success(), "helper failed: {st:?}");
    }

    /// Kills the helper with SIGKILL and reaps it.
    pub fn kill9(mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        c.kill().expect("kill -9 helper");
        let st = c.wait().expect("wait");
        if let Some(r) = self.reader.take() {
            r.join().expect("reader thread");
        }
        st
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // A test that fails half-way must not leave its helper running.
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Raw messages, as a hostile or foreign peer would send them.

/// Sends one message with `fds` as SCM_RIGHTS, like a peer that does not
/// use voxshm. Returns the number of bytes sent.
pub fn send_raw(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    let mut cbuf = vec![0u64; 16 + fds.len()];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let data_len = mem::size_of_val(fds) as u32;
        // SAFETY: CMSG_SPACE is a pure computation.
        let space = unsafe { libc::CMSG_SPACE(data_len) } as usize;
        assert!(space <= cbuf.len() * 8);
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` writable, aligned bytes: the
        // first header and `fds.len()` ints after it fit.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(c).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    // SAFETY: `msg` points at live iovec and control buffers.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Receives one message and the fds that came with it, waiting up to
/// `timeout_ms`. None on timeout.
pub fn recv_raw(sock: RawFd, timeout_ms: i32) -> Option<(Vec<u8>, Vec<OwnedFd>)> {
    let mut p = libc::pollfd {
        fd: sock,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut p, 1, timeout_ms) } <= 0 {
        return None;
    }
    let mut buf = vec![0u8; 65536];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 64];
    // SAFETY: msghdr is plain old data; all-zero is a valid value.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = mem::size_of_val(&cbuf) as _;
    // SAFETY: `msg` points at live, writable buffers of the stated lengths.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control up to msg_controllen; the CMSG
    // macros stay inside it, and every SCM_RIGHTS fd is now ours.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
                let d = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..n {
                    fds.push(OwnedFd::from_raw_fd(d.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Some((buf, fds))
}

/// A memfd of `len` bytes with `seals` added (0 for none).
pub fn memfd(len: u64, seals: i32) -> OwnedFd {
    // SAFETY: the name is a valid NUL-terminated string.
    let fd = unsafe { libc::memfd_create(c"voxshm-test".as_ptr(), libc::MFD_ALLOW_SEALING) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: memfd_create just returned this fd; nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate takes no pointers.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as i64) }, 0);
    if seals != 0 {
        // SAFETY: F_ADD_SEALS takes an int.
        assert_eq!(
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) },
            0,
            "F_ADD_SEALS: {}",
            std::io::Error::last_os_error()
        );
    }
    fd
}

/// The seals every voxshm receiver requires.
pub const SHRINK_GROW: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// An ATTACH body.
pub fn attach_body(map_id: u32, generation: u32, mapping_length: u64) -> Vec<u8> {
    voxshm::wire::Attach {
        map_id,
        map_generation: generation,
        mapping_length,
    }
    .encode()
    .to_vec()
}

/// In one process: lets the receiver acknowledge retirements until the
/// registry has no lease and no retirement outstanding.
pub fn settle(reg: &voxshm::Registry, att: &voxshm::Attachments) {
    for _ in 0..3000 {
        att.poll().expect("attachments poll");
        match reg.wait_idle(20) {
            Ok(()) => return,
            Err(e) if e.status == voxshm::Status::Timeout => {}
            Err(e) => panic!("wait_idle: {e}"),
        }
    }
    panic!("registry never became idle: {:?}", reg.stats());
}
