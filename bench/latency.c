/*
 * voxshm-latency: the payload work and the loops every mechanism shares,
 * the per-process counters (system calls, context switches, CPU time) and
 * the two-process harness.
 */
#define _GNU_SOURCE
#include "latency.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *const LAT_SHAPE_NAMES[N_SHAPES] = {"roundtrip", "stream-header", "stream-full"};
const char *const LAT_VARIANT_NAMES[N_VARIANTS] = {"busy", "block", "block-spin0"};

/* ---- waiting ------------------------------------------------------------ */

void lat_patience_start(lat_patience *p) {
  p->start_ns = bench_now_ns();
  p->calls = 0;
}

static bool patience_check(const lat_patience *p, const char *what) {
  if (bench_now_ns() - p->start_ns < (uint64_t)LAT_TIMEOUT_MS * 1000000ull) {
    return true;
  }
  bench_fail("%s: nothing happened for %d ms", what, LAT_TIMEOUT_MS);
  return false;
}

bool lat_patience_ok(lat_patience *p, const char *what) {
  if ((++p->calls & 63) != 0) {
    return true;
  }
  return patience_check(p, what);
}

static long futex(_Atomic uint32_t *word, int op, uint32_t val, const struct timespec *ts) {
  /* Not FUTEX_PRIVATE_FLAG: the word is shared between two processes. */
  return syscall(SYS_futex, (uint32_t *)word, op, val, ts, NULL, 0);
}

int lat_wait(const lat_case *c, lat_ready_fn ready, void *ctx, _Atomic uint32_t *sleeping,
             const char *what) {
  if (ready(ctx)) {
    return 0;
  }
  lat_patience p;
  lat_patience_start(&p);
  if (lat_busy(c)) {
    while (!ready(ctx)) {
      lat_cpu_relax();
      if (!lat_patience_ok(&p, what)) {
        return -1;
      }
    }
    return 0;
  }
  if (c->spin_us > 0) {
    uint64_t until = p.start_ns + (uint64_t)c->spin_us * 1000u;
    for (uint32_t k = 1;; k++) {
      lat_cpu_relax();
      if (ready(ctx)) {
        return 0;
      }
      if ((k & 63) == 0 && bench_now_ns() >= until) {
        break;
      }
    }
  }
  /* Announce the sleep, then look again: either this side sees what the
   * peer published, or the peer (which publishes, then looks at the flag)
   * sees the flag and wakes it. The timeout only bounds a lost peer. */
  const struct timespec tick = {0, 100 * 1000000L};
  for (;;) {
    atomic_store(sleeping, 1);
    atomic_thread_fence(memory_order_seq_cst);
    if (ready(ctx)) {
      atomic_store_explicit(sleeping, 0, memory_order_relaxed);
      return 0;
    }
    futex(sleeping, FUTEX_WAIT, 1, &tick);
    if (ready(ctx)) {
      return 0;
    }
    if (!patience_check(&p, what)) {
      return -1;
    }
  }
}

void lat_wake(_Atomic uint32_t *sleeping) {
  atomic_thread_fence(memory_order_seq_cst);
  if (atomic_load_explicit(sleeping, memory_order_relaxed) != 0 &&
      atomic_exchange(sleeping, 0) != 0) {
    futex(sleeping, FUTEX_WAKE, 1, NULL);
  }
}

/* ---- mechanisms ---------------------------------------------------------- */

void *lat_ends_start(lat_ends *e, size_t size) {
  memset(e, 0, sizeof *e);
  e->own = calloc(1, size);
  if (e->own == NULL) {
    bench_fail("calloc of %zu bytes", size);
  }
  return e->own;
}

void lat_ends_set(lat_ends *e, const lat_case *c, int side, const tx_ops *tx, void *tx_st,
                  const rx_ops *rx, void *rx_st) {
  if (lat_sends(c, side)) {
    e->tx = tx;
    e->tx_st = tx_st;
  }
  if (lat_receives(c, side)) {
    e->rx = rx;
    e->rx_st = rx_st;
  }
}

/* ---- counters ----------------------------------------------------------- */

static int perf_open(uint32_t type, uint64_t config) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.size = sizeof a;
  a.type = type;
  a.config = config;
  a.disabled = 1;
  a.exclude_hv = 1;
  /* This process only (pid 0), on any CPU, not its children. */
  return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static const char *const TRACEPOINT_ID_FILES[] = {
    "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
    "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
};

void lat_counters_probe(lat_counter_setup *s) {
  memset(s, 0, sizeof *s);
  s->tracepoint_id = -1;
  int first_errno = 0;
  for (size_t i = 0; i < sizeof TRACEPOINT_ID_FILES / sizeof TRACEPOINT_ID_FILES[0]; i++) {
    FILE *f = fopen(TRACEPOINT_ID_FILES[i], "r");
    if (f == NULL) {
      first_errno = first_errno ? first_errno : errno;
      continue;
    }
    long id = -1;
    if (fscanf(f, "%ld", &id) == 1 && id >= 0) {
      s->tracepoint_id = id;
    }
    fclose(f);
    if (s->tracepoint_id >= 0) {
      break;
    }
  }
  if (s->tracepoint_id < 0) {
    snprintf(s->syscalls_note, sizeof s->syscalls_note, "n/a (%s: %s)", TRACEPOINT_ID_FILES[0],
             first_errno ? strerror(first_errno) : "no tracepoint id");
  } else {
    int fd = perf_open(PERF_TYPE_TRACEPOINT, (uint64_t)s->tracepoint_id);
    if (fd < 0) {
      snprintf(s->syscalls_note, sizeof s->syscalls_note, "n/a (perf_event_open: %s)",
               strerror(errno));
      s->tracepoint_id = -1;
    } else {
      close(fd);
      snprintf(s->syscalls_note, sizeof s->syscalls_note,
               "perf_event_open on tracepoint raw_syscalls:sys_enter (id %ld)", s->tracepoint_id);
    }
  }
  int fd = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES);
  if (fd < 0) {
    snprintf(s->ctxsw_note, sizeof s->ctxsw_note,
             "from getrusage (perf_event_open: %s)", strerror(errno));
  } else {
    close(fd);
    snprintf(s->ctxsw_note, sizeof s->ctxsw_note, "perf_event_open PERF_COUNT_SW_CONTEXT_SWITCHES");
  }
}

/* One process's counters. The system-call counter sees the ioctl that
 * stops it; what an empty window counts is measured when the counters are
 * opened and taken off every window. */
typedef struct counters {
  int sys_fd, csw_fd;
  int64_t sys_base, csw_base;
  struct rusage ru0;
  uint64_t cpu0;
} counters;

static uint64_t cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t tv_ns(struct timeval tv) {
  return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull;
}

static void counters_start(counters *k) {
  getrusage(RUSAGE_SELF, &k->ru0);
  k->cpu0 = cpu_ns();
  if (k->csw_fd >= 0) {
    ioctl(k->csw_fd, PERF_EVENT_IOC_RESET, 0);
    ioctl(k->csw_fd, PERF_EVENT_IOC_ENABLE, 0);
  }
  if (k->sys_fd >= 0) {
    ioctl(k->sys_fd, PERF_EVENT_IOC_RESET, 0);
    ioctl(k->sys_fd, PERF_EVENT_IOC_ENABLE, 0);
  }
}

static int64_t counter_read(int fd) {
  uint64_t v = 0;
  if (fd < 0 || read(fd, &v, sizeof v) != (ssize_t)sizeof v) {
    return -1;
  }
  return (int64_t)v;
}

/* Stops the counters and writes what they counted since counters_start,
 * before taking off the base. */
static void counters_stop_raw(counters *k, lat_side_counts *out) {
  if (k->sys_fd >= 0) {
    ioctl(k->sys_fd, PERF_EVENT_IOC_DISABLE, 0);
  }
  if (k->csw_fd >= 0) {
    ioctl(k->csw_fd, PERF_EVENT_IOC_DISABLE, 0);
  }
  uint64_t cpu1 = cpu_ns();
  struct rusage ru1;
  getrusage(RUSAGE_SELF, &ru1);
  out->cpu_ns = cpu1 - k->cpu0;
  uint64_t sys = tv_ns(ru1.ru_stime) - tv_ns(k->ru0.ru_stime);
  out->sys_ns = sys < out->cpu_ns ? sys : out->cpu_ns;
  out->minor_faults = (uint64_t)(ru1.ru_minflt - k->ru0.ru_minflt);
  out->syscalls = counter_read(k->sys_fd);
  out->ctxsw = k->csw_fd >= 0 ? counter_read(k->csw_fd)
                              : (int64_t)((ru1.ru_nvcsw - k->ru0.ru_nvcsw) +
                                          (ru1.ru_nivcsw - k->ru0.ru_nivcsw));
}

static int64_t minus_base(int64_t v, int64_t base) {
  if (v < 0) {
    return -1;
  }
  return v > base ? v - base : 0;
}

static void counters_stop(counters *k, lat_side_counts *out) {
  counters_stop_raw(k, out);
  out->syscalls = minus_base(out->syscalls, k->sys_base);
  out->ctxsw = minus_base(out->ctxsw, k->csw_base);
}

static void counters_open(counters *k, const lat_counter_setup *s) {
  memset(k, 0, sizeof *k);
  k->sys_fd = s->tracepoint_id >= 0 ? perf_open(PERF_TYPE_TRACEPOINT, (uint64_t)s->tracepoint_id)
                                    : -1;
  k->csw_fd = perf_open(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CONTEXT_SWITCHES);
  /* The base: the least an empty window counted in three tries (a context
   * switch can land in one). */
  k->sys_base = k->csw_base = INT64_MAX;
  for (int i = 0; i < 3; i++) {
    lat_side_counts e;
    counters_start(k);
    counters_stop_raw(k, &e);
    k->sys_base = e.syscalls < k->sys_base ? e.syscalls : k->sys_base;
    k->csw_base = e.ctxsw < k->csw_base ? e.ctxsw : k->csw_base;
  }
}

static void counters_close(counters *k) {
  if (k->sys_fd >= 0) {
    close(k->sys_fd);
  }
  if (k->csw_fd >= 0) {
    close(k->csw_fd);
  }
  k->sys_fd = k->csw_fd = -1;
}

/* ---- payload work ------------------------------------------------------- */

/* Round trip: the first cache line (the header) and the last one; stream:
 * the header, or every byte. */
static void put_payload(const lat_case *c, uint8_t *p, uint64_t seq, uint32_t flags,
                        uint64_t now) {
  size_t n = c->size;
  if (c->shape == SHAPE_STREAM_FULL) {
    bench_fill(p + BENCH_HEADER_LEN, n - BENCH_HEADER_LEN, seq);
  } else if (c->shape == SHAPE_ROUNDTRIP && n >= 2 * BENCH_HEADER_LEN) {
    bench_fill(p + n - BENCH_HEADER_LEN, BENCH_HEADER_LEN, seq);
  }
  bench_write_header_at(p, seq, n, flags, now);
}

/* Reads what put_payload wrote; returns the header's flags, or -1 (a
 * failure recorded) when the header is not payload `seq`'s. A wrong body
 * only counts in *bad. */
static int64_t take_payload(const lat_case *c, const uint8_t *p, uint64_t seq, uint64_t *bad) {
  size_t n = c->size;
  bench_header h;
  if (!bench_read_header(p, &h) || h.seq != seq || h.payload_len != n) {
    return bench_fail("payload %llu: bad header (magic %#x, seq %llu, len %llu)",
                      (unsigned long long)seq, h.magic, (unsigned long long)h.seq,
                      (unsigned long long)h.payload_len);
  }
  const uint8_t *body = NULL;
  size_t len = 0;
  if (c->shape == SHAPE_STREAM_FULL) {
    body = p + BENCH_HEADER_LEN;
    len = n - BENCH_HEADER_LEN;
  } else if (c->shape == SHAPE_ROUNDTRIP && n >= 2 * BENCH_HEADER_LEN) {
    body = p + n - BENCH_HEADER_LEN;
    len = BENCH_HEADER_LEN;
  }
  if (body != NULL && bench_checksum(body, len) != bench_expected_checksum(len, seq)) {
    (*bad)++;
  }
  return (int64_t)h.flags;
}

/* ---- one process's side of a case --------------------------------------- */

typedef struct proc {
  const lat_case *c;
  const lat_mech *m;
  lat_ends e;
  counters k;
  lat_side_counts counts;
  lat_handle_stats h0;
  uint64_t *samples; /* A, round trip: one per measured round trip */
  uint64_t n_samples;
  uint64_t t_start, t_end; /* the measuring window */
  uint64_t bad;
  int rc;
} proc;

static void handle_stats(proc *p, lat_handle_stats *out) {
  out->ring = -1;
  out->wakeups = 0;
  if (p->m->handle_stats != NULL && p->m->handle_stats(&p->e, out) != 0) {
    p->rc = -1;
  }
}

/* The measuring window of this process: opened once it has finished with
 * the last warm-up payload, closed once it has finished with the last. */
static void window_open(proc *p) {
  handle_stats(p, &p->h0);
  counters_start(&p->k);
  p->t_start = bench_now_ns();
}

static void window_close(proc *p, uint64_t payloads) {
  p->t_end = bench_now_ns();
  counters_stop(&p->k, &p->counts);
  handle_stats(p, &p->counts.handles);
  p->counts.handles.wakeups -= p->h0.wakeups;
  p->counts.payloads = payloads;
}

/* A decides how long the case runs, and marks that in the headers: the
 * last warm-up payload (LAT_F_WARM_END), the measured ones, the last. */
typedef struct driver {
  const lat_case *c;
  uint64_t sent, meas;
  uint64_t t0, t_meas0, now;
  bool measuring;
  uint32_t clock_mask; /* read the clock when (sent & mask) == 0 */
} driver;

static uint32_t driver_next(driver *d) {
  const lat_case *c = d->c;
  if ((d->sent & d->clock_mask) == 0) {
    d->now = bench_now_ns();
  }
  if (!d->measuring) {
    bool last_warm = d->sent + 1 >= c->warm_min && d->now - d->t0 >= c->warm_ns;
    return last_warm ? LAT_F_WARM_END : 0;
  }
  uint32_t flags = BENCH_F_MEASURED;
  if (d->meas + 1 >= c->meas_max || (d->meas + 1 >= c->meas_min && d->now - d->t_meas0 >= c->meas_ns)) {
    flags |= BENCH_F_LAST;
  }
  return flags;
}

static void driver_done(driver *d, uint32_t flags) {
  d->sent++;
  if (flags & LAT_F_WARM_END) {
    d->measuring = true;
    d->t_meas0 = d->now = bench_now_ns();
  } else if (flags & BENCH_F_MEASURED) {
    d->meas++;
  }
}

static uint8_t *acquire(proc *p) { return p->e.tx->acquire(p->e.tx_st, p->c->size); }
static int submit(proc *p) { return p->e.tx->submit(p->e.tx_st, p->c->size); }
static const uint8_t *receive(proc *p) { return p->e.rx->receive(p->e.rx_st, p->c->size); }
static int done(proc *p) { return p->e.rx->done(p->e.rx_st); }

/* A: sends, and in a round trip waits for the answer and times it. */
static int side_a(proc *p) {
  const lat_case *c = p->c;
  bool rt = !lat_is_stream(c);
  driver d;
  memset(&d, 0, sizeof d);
  d.c = c;
  d.t0 = d.now = bench_now_ns();
  /* A stream sends faster than a clock read per payload is negligible. */
  d.clock_mask = rt ? 0 : 15;
  for (uint64_t seq = 0;; seq++) {
    uint32_t flags = driver_next(&d);
    uint64_t t0 = rt ? bench_now_ns() : 0;
    uint8_t *out = acquire(p);
    if (out == NULL) {
      return -1;
    }
    put_payload(c, out, seq, flags, t0);
    if (submit(p) != 0) {
      return -1;
    }
    if (rt) {
      const uint8_t *in = receive(p);
      if (in == NULL || take_payload(c, in, seq, &p->bad) < 0 || done(p) != 0) {
        return -1;
      }
      if (flags & BENCH_F_MEASURED) {
        p->samples[p->n_samples++] = bench_now_ns() - t0;
      }
    }
    driver_done(&d, flags);
    if (flags & LAT_F_WARM_END) {
      window_open(p);
    }
    if (flags & BENCH_F_LAST) {
      window_close(p, d.meas);
      return p->rc;
    }
  }
}

/* B: receives, and in a round trip answers with a payload of its own
 * (before giving back the one it received). Follows the header flags. */
static int side_b(proc *p) {
  const lat_case *c = p->c;
  bool rt = !lat_is_stream(c);
  uint64_t measured = 0;
  for (uint64_t seq = 0;; seq++) {
    const uint8_t *in = receive(p);
    if (in == NULL) {
      return -1;
    }
    int64_t flags = take_payload(c, in, seq, &p->bad);
    if (flags < 0) {
      return -1;
    }
    if (rt) {
      uint8_t *out = acquire(p);
      if (out == NULL) {
        return -1;
      }
      put_payload(c, out, seq, (uint32_t)flags, 0);
      if (submit(p) != 0) {
        return -1;
      }
    }
    if (done(p) != 0) {
      return -1;
    }
    measured += (flags & BENCH_F_MEASURED) != 0;
    if (flags & LAT_F_WARM_END) {
      window_open(p);
    }
    if (flags & BENCH_F_LAST) {
      window_close(p, measured);
      return p->rc;
    }
  }
}

static int run_side(proc *p, const lat_mech *m, const lat_case *c, const lat_counter_setup *s,
                    void *shared, int side) {
  p->c = c;
  p->m = m;
  counters_open(&p->k, s);
  int rc = m->open(c, shared, side, &p->e);
  if (rc == 0) {
    rc = side == SIDE_A ? side_a(p) : side_b(p);
  }
  m->close(&p->e);
  counters_close(&p->k);
  return rc;
}

/* ---- two processes ------------------------------------------------------ */

/* What B sends A over a pipe when it is done. */
typedef struct b_report {
  int32_t ok;
  uint32_t pad;
  uint64_t window_ns;
  uint64_t bad;
  lat_side_counts counts;
  char error[256];
} b_report;

static void run_b(const lat_mech *m, const lat_case *c, const lat_counter_setup *s, void *shared,
                  int cpu_b, int report_fd) {
  /* A that dies must not leave B spinning. */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (cpu_b >= 0 && bench_pin(cpu_b) != 0) {
    bench_fail("sched_setaffinity(CPU %d): %s", cpu_b, strerror(errno));
  }
  b_report rep;
  memset(&rep, 0, sizeof rep);
  proc p;
  memset(&p, 0, sizeof p);
  int rc = bench_error()[0] != '\0' ? -1 : run_side(&p, m, c, s, shared, SIDE_B);
  m->discard(shared);
  rep.ok = rc == 0;
  rep.window_ns = p.t_end - p.t_start;
  rep.bad = p.bad;
  rep.counts = p.counts;
  snprintf(rep.error, sizeof rep.error, "%s", rc == 0 ? "" : bench_error());
  (void)write_all(report_fd, &rep, sizeof rep);
  _exit(0);
}

int lat_run_case(const lat_mech *m, const lat_case *c, const lat_counter_setup *s, int cpu_b,
                 lat_result *out) {
  memset(out, 0, sizeof *out);
  out->mech = m;
  out->c = *c;
  proc p;
  memset(&p, 0, sizeof p);
  size_t cap = 0;
  if (!lat_is_stream(c)) {
    cap = c->meas_max * sizeof(uint64_t);
    p.samples = bench_alloc_touched(cap);
    if (p.samples == NULL) {
      return -1;
    }
  }
  void *shared = NULL;
  int rp[2] = {-1, -1};
  if (m->prepare(c, &shared) != 0) {
    bench_free(p.samples, cap);
    return -1;
  }
  if (pipe2(rp, O_CLOEXEC) != 0) {
    m->discard(shared);
    bench_free(p.samples, cap);
    return bench_fail("pipe2: %s", strerror(errno));
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    close(rp[0]);
    run_b(m, c, s, shared, cpu_b, rp[1]);
  }
  close(rp[1]);
  int rc = -1;
  if (pid < 0) {
    bench_fail("fork: %s", strerror(errno));
  } else {
    rc = run_side(&p, m, c, s, shared, SIDE_A);
  }
  m->discard(shared);
  b_report rep;
  memset(&rep, 0, sizeof rep);
  if (pid > 0) {
    /* A failed: B may be waiting for a payload that never comes. */
    if (rc != 0) {
      kill(pid, SIGKILL);
    }
    int rrc = read_all(rp[0], &rep, sizeof rep);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (rrc == 0 && !rep.ok) {
      /* B failed first, most likely, and A's failure followed from it. */
      char a_error[256];
      snprintf(a_error, sizeof a_error, "%s", bench_error());
      bench_clear_error();
      rc = bench_fail("B: %s%s%s", rep.error, rc != 0 ? "; A: " : "", rc != 0 ? a_error : "");
    } else if (rc == 0 && (rrc != 0 || !WIFEXITED(status))) {
      rc = bench_fail("process B died (status %#x)", status);
    }
  }
  close(rp[0]);
  if (rc == 0) {
    out->a = p.counts;
    out->b = rep.counts;
    out->bad = p.bad + rep.bad;
    if (lat_is_stream(c)) {
      /* Throughput is what the consumer saw. */
      out->payloads = rep.counts.payloads;
      double secs = (double)rep.window_ns / 1e9;
      out->payloads_per_s = secs > 0 ? (double)out->payloads / secs : 0;
      out->gb_per_s = out->payloads_per_s * (double)c->size / 1e9;
    } else {
      uint64_t med, p99;
      bench_percentiles(p.samples, p.n_samples, &med, &p99);
      out->payloads = p.n_samples;
      out->median_us = (double)med / 1e3;
      out->p99_us = (double)p99 / 1e3;
      double secs = (double)(p.t_end - p.t_start) / 1e9;
      out->payloads_per_s = secs > 0 ? (double)p.n_samples / secs : 0;
    }
  }
  bench_free(p.samples, cap);
  return rc;
}
