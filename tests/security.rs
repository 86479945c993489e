//! Who may connect: listeners accept only their own user (or root) unless
//! told otherwise, connecting sides can require the listener's user, socket
//! files are 0600, and a stale socket file is replaced while a live one is
//! refused. Other users are real processes: a forked child that drops to
//! uid/gid 65534 (the tests run as root; without root they are skipped).

mod common;

use std::time::Duration;

use common::*;
use voxshm::Status::*;
use voxshm::channel::{Allow, ListenerOptions};
use voxshm::sys::Deadline;
use voxshm::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn unique(tag: &str) -> String {
    format!("voxshm-sec-{tag}-{}", std::process::id())
}

/// Runs `f` in a forked child as uid/gid 65534 and returns its exit code.
/// The child only makes system calls through `f` and leaves with `_exit`.
fn as_nobody(f: impl FnOnce() -> i32) -> std::process::ExitStatus {
    // SAFETY: the child runs `f` (system calls on its own fds) and exits
    // with _exit; it takes no lock another thread could hold.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: setgroups/setresgid/setresuid take no pointers but the
        // empty group list.
        let code = unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(NOBODY, NOBODY, NOBODY) != 0
                || libc::setresuid(NOBODY, NOBODY, NOBODY) != 0
            {
                90
            } else {
                f()
            }
        };
        // SAFETY: ends the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut st, 0) }, pid);
    std::os::unix::process::ExitStatusExt::from_raw(st)
}

/// In a child: connects to `addr` and reports 0 if the connection was
/// closed on it without a byte (refused), 1 if it stayed open, 2 if the
/// connect itself failed with EACCES, 3 on another connect failure.
fn connect_and_watch(addr: &str) -> i32 {
    match Channel::connect_allowing(addr, Allow::Anyone) {
        Err(e) if e.message.contains("Permission denied") => 2,
        Err(_) => 3,
        Ok(c) => {
            let mut p = libc::pollfd {
                fd: c.raw(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, 5000) };
            let mut b = [0u8; 64];
            // SAFETY: reads into a live buffer of its length.
            let n =
                unsafe { libc::recv(c.raw(), b.as_mut_ptr().cast(), b.len(), libc::MSG_DONTWAIT) };
            if n <= 0 && p.revents & (libc::POLLHUP | libc::POLLIN) != 0 {
                0
            } else {
                1
            }
        }
    }
}

#[test]
fn a_listener_drops_other_users_by_default() {
    let _s = serial();
    if !is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    let addr = format!("@{}", unique("drop"));
    let l = Listener::bind(&addr).unwrap();
    let a = addr.clone();
    let child = std::thread::spawn(move || as_nobody(|| connect_and_watch(&a)));
    // The stranger's connection is never handed out...
    let e = l.accept(Deadline::after_ms(1500)).unwrap_err();
    assert_eq!(e.status, Timeout, "{e}");
    // ...and it was closed on the stranger without a byte.
    assert_eq!(child.join().unwrap().code(), Some(0));

    // With the policy widened, the same stranger is accepted, and its
    // credentials can be read on the channel.
    let addr = format!("@{}", unique("any"));
    let l = Listener::bind_with(
        &addr,
        ListenerOptions {
            allow: Allow::Anyone,
            ..Default::default()
        },
    )
    .unwrap();
    let a = addr.clone();
    let child = std::thread::spawn(move || as_nobody(|| connect_and_watch(&a)));
    let c = l.accept(Deadline::after_ms(LONG_MS)).unwrap();
    let creds = c.peer_credentials().unwrap();
    assert_eq!((creds.uid, creds.gid), (NOBODY, NOBODY));
    assert!(creds.pid > 0);
    drop(c);
    assert_eq!(child.join().unwrap().code(), Some(0));

    // Only a given uid: root itself is then refused.
    let addr = format!("@{}", unique("only"));
    let l = Listener::bind_with(
        &addr,
        ListenerOptions {
            allow: Allow::Only {
                uid: Some(NOBODY),
                gid: None,
            },
            ..Default::default()
        },
    )
    .unwrap();
    let _mine = Channel::connect_allowing(&addr, Allow::Anyone).unwrap();
    assert_eq!(
        l.accept(Deadline::after_ms(300)).unwrap_err().status,
        Timeout
    );
}

#[test]
fn a_connecting_side_can_require_the_listeners_user() {
    let _s = serial();
    if !is_root() {
        eprintln!("skipped: needs root to run a child as another user");
        return;
    }
    // A squatter running as another user holds the name.
    let addr = format!("@{}", unique("squat"));
    let (ready_r, ready_w) = Channel::pair().unwrap();
    let a = addr.clone();
    let squatter = std::thread::spawn(move || {
        as_nobody(|| {
            let l = match Listener::bind_with(
                &a,
                ListenerOptions {
                    allow: Allow::Anyone,
                    ..Default::default()
                },
            ) {
                Ok(l) => l,
                Err(_) => return 4,
            };
            let _ = ready_w.try_send(b"ready!!!", None);
            // Both connections below: the refused one and the allowed one
            // (the listener must still be there for the second).
            // (The refused one may already be gone when the first accept
            // looks, which then takes the allowed one: the second waits
            // only briefly.)
            let _ = l.accept(Deadline::after_ms(5000));
            let _ = l.accept(Deadline::after_ms(1000));
            0
        })
    });
    let mut p = libc::pollfd {
        fd: ready_r.raw(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, 10_000) };
    // The default policy refuses the squatter...
    let e = Channel::connect(&addr).unwrap_err();
    assert_eq!(e.status, PeerNotAllowed, "{e}");
    assert!(e.message.contains(&NOBODY.to_string()), "{e}");
    // ...an explicit one can name it.
    let c = Channel::connect_allowing(
        &addr,
        Allow::Only {
            uid: Some(NOBODY),
            gid: Some(NOBODY),
        },
    )
    .unwrap();
    assert_eq!(c.peer_credentials().unwrap().uid, NOBODY);
    drop(c);
    assert_eq!(squatter.join().unwrap().code(), Some(0));
}

#[test]
fn a_socket_file_is_private_by_default() {
    let _s = serial();
    let dir = std::env::temp_dir().join(unique("mode"));
    std::fs::create_dir_all(&dir).unwrap();
    // The directory lets everyone in: only the socket's own mode protects it.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.join("s.sock");
    let p = path.to_str().unwrap().to_string();
    let l = Listener::bind(&p).unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "socket file mode {:o}", mode & 0o777);
    if is_root() {
        // Another user cannot even connect.
        let q = p.clone();
        assert_eq!(as_nobody(|| connect_and_watch(&q)).code(), Some(2));
    }
    drop(l);
    // A wider mode on request.
    let l = Listener::bind_with(
        &p,
        ListenerOptions {
            mode: 0o666,
            allow: Allow::Anyone,
        },
    )
    .unwrap();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    // SAFETY: umask only reads and sets this process's mask; set it back.
    let umask = unsafe {
        let m = libc::umask(0);
        libc::umask(m);
        m
    };
    assert_eq!(mode & 0o777, 0o666 & !(umask as u32));
    drop(l);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Binds a listener on `$VOXSHM_TEST_PATH`, says so, and waits to be killed.
#[test]
fn helper_listen_forever() {
    if role().as_deref() != Some("listener") {
        return;
    }
    let _l = Listener::bind(&env("VOXSHM_TEST_PATH")).unwrap();
    say("LISTENING");
    hear();
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_refused() {
    let _s = serial();
    let path = std::env::temp_dir().join(format!("{}.sock", unique("stale")));
    let p = path.to_str().unwrap().to_string();
    let _ = std::fs::remove_file(&path);
    let mut h = Helper::spawn(
        "helper_listen_forever",
        "listener",
        None,
        &[("VOXSHM_TEST_PATH", p.clone())],
    );
    h.expect("LISTENING");
    // Live: refused, and the live listener still works afterwards.
    let e = Listener::bind(&p).unwrap_err();
    assert_eq!(e.status, AddressInUse, "{e}");
    // Killed: its socket file stays behind, and a new listener replaces it.
    h.kill9();
    assert!(path.exists(), "a killed listener leaves its socket file");
    let l = Listener::bind(&p).unwrap();
    let c = Channel::connect(&p).unwrap();
    let a = l.accept(Deadline::after_ms(LONG_MS)).unwrap();
    assert!(c.try_send(b"12345678", None).unwrap());
    std::thread::sleep(Duration::from_millis(10));
    assert!(matches!(
        a.try_recv().unwrap(),
        voxshm::channel::Recv::Msg(_)
    ));
    // A path that is not a socket is never removed.
    drop((l, a, c));
    std::fs::write(&path, b"data").unwrap();
    assert_eq!(Listener::bind(&p).unwrap_err().status, AddressInUse);
    assert_eq!(std::fs::read(&path).unwrap(), b"data");
    std::fs::remove_file(&path).unwrap();
    // An abstract name in use is refused too.
    let name = format!("@{}", unique("abs"));
    let first = Listener::bind(&name).unwrap();
    assert_eq!(Listener::bind(&name).unwrap_err().status, AddressInUse);
    drop(first);
    Listener::bind(&name).unwrap();
}

#[test]
fn a_probe_that_hung_up_is_not_handed_out() {
    let _s = serial();
    let name = format!("@{}", unique("probe"));
    let l = Listener::bind(&name).unwrap();
    drop(Channel::connect(&name).unwrap());
    let real = Channel::connect(&name).unwrap();
    let got = l.accept(Deadline::after_ms(LONG_MS)).unwrap();
    let me = got.peer_credentials().unwrap();
    assert_eq!(me.pid, std::process::id() as i32);
    assert!(real.try_send(b"12345678", None).unwrap());
    std::thread::sleep(Duration::from_millis(10));
    assert!(matches!(
        got.try_recv().unwrap(),
        voxshm::channel::Recv::Msg(_)
    ));
}

#[test]
fn connecting_to_a_listener_that_never_accepts_times_out() {
    let _s = serial();
    let name = format!("@{}", unique("backlog"));
    let _l = Listener::bind(&name).unwrap();
    let mut kept = Vec::new();
    let t = std::time::Instant::now();
    let e = loop {
        match Channel::connect_with(&name, Allow::SameUser, 200) {
            Ok(c) => kept.push(c),
            Err(e) => break e,
        }
        assert!(kept.len() < 1000, "the backlog never filled");
    };
    assert_eq!(e.status, Timeout, "{e}");
    assert!(t.elapsed() < Duration::from_secs(30));
    // With 0 it does not wait at all.
    assert_eq!(
        Channel::connect_with(&name, Allow::SameUser, 0)
            .unwrap_err()
            .status,
        Timeout
    );
}
