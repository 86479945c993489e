//! Routes the library's `tracing` events to a C callback, or to stderr when
//! `VOXSHM_LOG` is set and no callback is installed. Silent by default.

use std::ffi::{CString, c_char, c_void};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Severity of a log message.
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum voxshm_log_level {
    /// No messages at all.
    VOXSHM_LOG_OFF = 0,
    /// Failures the library could not handle.
    VOXSHM_LOG_ERROR = 1,
    /// Protocol errors, rejected regions, a peer that went away.
    VOXSHM_LOG_WARN = 2,
    /// Region creation and retirement, peers arriving and leaving.
    VOXSHM_LOG_INFO = 3,
    /// Per-handle and per-message detail.
    VOXSHM_LOG_DEBUG = 4,
    /// Everything.
    VOXSHM_LOG_TRACE = 5,
}

/// A log callback: `level` is a `voxshm_log_level`, `target` the module
/// that logged, `message` the text with its fields. Both strings are valid
/// only during the call. The callback runs on the thread that logged,
/// possibly while a voxshm handle is locked: it must not call voxshm.
pub type voxshm_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ),
>;

struct Sink {
    cb: voxshm_log_fn,
    user: usize,
}

static MAX_LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INIT: OnceLock<()> = OnceLock::new();
static NEXT_SPAN: AtomicU64 = AtomicU64::new(1);

fn level_num(l: &Level) -> u8 {
    match *l {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

fn parse_env_level(v: &str) -> u8 {
    match v.trim().to_ascii_lowercase().as_str() {
        "error" => 1,
        "warn" | "warning" => 2,
        "info" => 3,
        "debug" => 4,
        "trace" | "all" | "1" => 5,
        _ => 0,
    }
}

struct Fields(String);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

struct CSubscriber;

impl Subscriber for CSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // The level can change at run time, so ask every time.
        Interest::sometimes()
    }

    fn enabled(&self, m: &Metadata<'_>) -> bool {
        level_num(m.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(NEXT_SPAN.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, e: &Event<'_>) {
        let m = e.metadata();
        let mut f = Fields(String::new());
        e.record(&mut f);
        let level = level_num(m.level());
        let sink = SINK.read().unwrap_or_else(|p| p.into_inner());
        match sink.as_ref().and_then(|s| s.cb.map(|cb| (cb, s.user))) {
            Some((cb, user)) => {
                let target = CString::new(m.target()).unwrap_or_default();
                let msg = CString::new(f.0.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the host registered `cb` with this user pointer
                // and promised it stays callable; both strings live until
                // the call returns.
                unsafe {
                    cb(
                        user as *mut c_void,
                        level as i32,
                        target.as_ptr(),
                        msg.as_ptr(),
                    )
                };
            }
            None => eprintln!("voxshm[{}] {}: {}", m.level(), m.target(), f.0),
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// Installs the subscriber once per process (first use of the C API). A
/// host that already installed a global `tracing` subscriber keeps it.
pub fn init() {
    INIT.get_or_init(|| {
        if let Ok(v) = std::env::var("VOXSHM_LOG") {
            MAX_LEVEL.store(parse_env_level(&v), Ordering::Relaxed);
        }
        let _ = tracing::subscriber::set_global_default(CSubscriber);
    });
}

/// Sets (or with `None`, removes) the callback and the most verbose level
/// it receives.
pub fn set_callback(cb: voxshm_log_fn, user: *mut c_void, max: u8) {
    init();
    let mut s = SINK.write().unwrap_or_else(|p| p.into_inner());
    if cb.is_some() {
        *s = Some(Sink {
            cb,
            user: user as usize,
        });
        MAX_LEVEL.store(max, Ordering::Relaxed);
    } else {
        *s = None;
        let env = std::env::var("VOXSHM_LOG")
            .map(|v| parse_env_level(&v))
            .unwrap_or(0);
        MAX_LEVEL.store(env, Ordering::Relaxed);
    }
}
