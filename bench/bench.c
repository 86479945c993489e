/*
 * voxshm-bench: the payload code every mechanism shares, the producer and
 * consumer loops, and the two-process harness.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- payload ----------------------------------------------------------- */

/* Two 64-bit lanes (one SSE2 register on baseline x86-64) that may alias
 * the byte buffers they are read from and need only 8-byte alignment. The
 * loops below are written with these so they run at memory speed whatever
 * the optimisation level, 64 bytes (one cache line) per iteration. */
typedef uint64_t lanes_t __attribute__((vector_size(16), may_alias, aligned(8)));
typedef uint64_t __attribute__((may_alias)) word_t;

#define FILL_MUL 0x9E3779B97F4A7C15ull
#define FILL_ADD 0x0123456789ABCDEFull
#define FILL_STEP 0x00000100000001B3ull

void bench_write_header(uint8_t *payload, uint64_t seq, uint64_t len, uint32_t flags) {
  bench_write_header_at(payload, seq, len, flags, bench_now_ns());
}

void bench_write_header_at(uint8_t *payload, uint64_t seq, uint64_t len, uint32_t flags,
                           uint64_t sent_ns) {
  bench_header h;
  memset(&h, 0, sizeof h);
  h.magic = BENCH_MAGIC;
  h.flags = flags;
  h.seq = seq;
  h.payload_len = len;
  h.sent_ns = sent_ns;
  memcpy(payload, &h, sizeof h);
}

bool bench_read_header(const uint8_t *payload, bench_header *out) {
  memcpy(out, payload, sizeof *out);
  return out->magic == BENCH_MAGIC;
}

/* Word i of message seq's body is base(seq) + i * FILL_STEP: cheap to
 * write at memory speed, and its sum has a closed form, so the consumer
 * can check every byte without the producer computing anything. */
__attribute__((noinline)) void bench_fill(uint8_t *body, size_t len, uint64_t seq) {
  size_t n = len / 8, i = 0;
  uint64_t base = seq * FILL_MUL + FILL_ADD;
  lanes_t v0 = {base, base + FILL_STEP};
  lanes_t v1 = v0 + 2 * FILL_STEP, v2 = v0 + 4 * FILL_STEP, v3 = v0 + 6 * FILL_STEP;
  const lanes_t step = {8 * FILL_STEP, 8 * FILL_STEP};
  for (; i + 8 <= n; i += 8) {
    lanes_t *p = (lanes_t *)(body + 8 * i);
    p[0] = v0;
    p[1] = v1;
    p[2] = v2;
    p[3] = v3;
    v0 += step;
    v1 += step;
    v2 += step;
    v3 += step;
  }
  word_t *w = (word_t *)body;
  for (; i < n; i++) {
    w[i] = base + (uint64_t)i * FILL_STEP;
  }
}

__attribute__((noinline)) uint64_t bench_checksum(const uint8_t *body, size_t len) {
  size_t n = len / 8, i = 0;
  lanes_t a0 = {0, 0}, a1 = {0, 0}, a2 = {0, 0}, a3 = {0, 0};
  for (; i + 8 <= n; i += 8) {
    const lanes_t *p = (const lanes_t *)(body + 8 * i);
    a0 += p[0];
    a1 += p[1];
    a2 += p[2];
    a3 += p[3];
  }
  a0 += a1 + a2 + a3;
  uint64_t sum = a0[0] + a0[1];
  const word_t *w = (const word_t *)body;
  for (; i < n; i++) {
    sum += w[i];
  }
  return sum;
}

uint64_t bench_expected_checksum(size_t len, uint64_t seq) {
  uint64_t n = len / 8;
  uint64_t base = seq * FILL_MUL + FILL_ADD;
  /* n * (n - 1) / 2 modulo 2^64, halving the even factor first. */
  uint64_t tri = (n % 2 == 0) ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
  return n * base + FILL_STEP * tri;
}

/* ---- helpers ------------------------------------------------------------ */

uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t bench_minor_faults(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) {
    return 0;
  }
  return (uint64_t)ru.ru_minflt;
}

void *bench_alloc_touched(size_t len) {
  if (len == 0) {
    len = 1;
  }
  void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    bench_fail("mmap of %zu bytes: %s", len, strerror(errno));
    return NULL;
  }
  memset(p, 0x5a, len);
  return p;
}

void bench_free(void *p, size_t len) {
  if (p != NULL) {
    munmap(p, len == 0 ? 1 : len);
  }
}

static char g_error[256];

int bench_fail(const char *fmt, ...) {
  if (g_error[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_error, sizeof g_error, fmt, ap);
    va_end(ap);
  }
  return -1;
}

const char *bench_error(void) { return g_error; }

void bench_clear_error(void) { g_error[0] = '\0'; }

int write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return bench_fail("write: %s", strerror(errno));
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int read_all(int fd, void *buf, size_t len) {
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return bench_fail("read: %s", strerror(errno));
    }
    if (n == 0) {
      return bench_fail("read: unexpected end of stream");
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void bench_machine_description(FILE *f) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  char model[256] = "unknown CPU";
  char line[512];
  unsigned long long mem_kb = 0;
  FILE *c = fopen("/proc/cpuinfo", "r");
  if (c != NULL) {
    while (fgets(line, sizeof line, c) != NULL) {
      if (strncmp(line, "model name", 10) == 0) {
        char *v = strchr(line, ':');
        if (v != NULL) {
          v += 1 + (v[1] == ' ');
          v[strcspn(v, "\n")] = '\0';
          snprintf(model, sizeof model, "%s", v);
        }
        break;
      }
    }
    fclose(c);
  }
  FILE *m = fopen("/proc/meminfo", "r");
  if (m != NULL) {
    while (fgets(line, sizeof line, m) != NULL) {
      if (sscanf(line, "MemTotal: %llu kB", &mem_kb) == 1) {
        break;
      }
    }
    fclose(m);
  }
  struct utsname u;
  uname(&u);
  fprintf(f, "machine: %ld CPUs, %s, %.1f GiB RAM, %s %s %s\n", cpus, model,
          (double)mem_kb / (1024.0 * 1024.0), u.sysname, u.release, u.machine);
}

bool bench_parse_size(const char *s, uint64_t min, uint64_t *out) {
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s) {
    return false;
  }
  switch (*end) {
    case 'k': case 'K': v *= KiB; end++; break;
    case 'm': case 'M': v *= MiB; end++; break;
    case 'g': case 'G': v *= GiB; end++; break;
    default: break;
  }
  if (*end == 'i' || *end == 'I') {
    end++;
  }
  if (*end == 'b' || *end == 'B') {
    end++;
  }
  if (*end != '\0' || v < min || v % 8 != 0 || v >= 4 * GiB) {
    return false;
  }
  *out = v;
  return true;
}

void bench_size_label(uint64_t v, char *buf, size_t len) {
  if (v >= MiB && v % MiB == 0) {
    snprintf(buf, len, "%llu MiB", (unsigned long long)(v / MiB));
  } else if (v >= KiB && v % KiB == 0) {
    snprintf(buf, len, "%llu KiB", (unsigned long long)(v / KiB));
  } else {
    snprintf(buf, len, "%llu B", (unsigned long long)v);
  }
}

bool bench_parse_cpus(const char *s, int *a, int *b) {
  int x, y;
  if (sscanf(s, "%d,%d", &x, &y) != 2 || x < 0 || y < 0 || x >= CPU_SETSIZE || y >= CPU_SETSIZE) {
    return false;
  }
  *a = x;
  *b = y;
  return true;
}

/* ---- the loops ---------------------------------------------------------- */

/* Decides the flags of the next message; shared by both loop shapes. */
typedef struct schedule {
  const bench_plan *pl;
  uint64_t warm, meas;
  uint64_t t_warm0, t_meas0;
  bool measuring;
} schedule;

static void sched_init(schedule *s, const bench_plan *pl) {
  memset(s, 0, sizeof *s);
  s->pl = pl;
  s->t_warm0 = bench_now_ns();
}

/* Returns the flags for the next message; *starts is set when it is the
 * first measured one. */
static uint32_t sched_next(schedule *s, bool *starts) {
  const bench_plan *pl = s->pl;
  *starts = false;
  if (!s->measuring) {
    uint64_t t = bench_now_ns();
    if (s->warm >= pl->warm_min && (s->warm >= pl->warm_max || t - s->t_warm0 >= pl->warm_ns)) {
      s->measuring = true;
      s->t_meas0 = t;
      *starts = true;
    }
  }
  if (!s->measuring) {
    return 0;
  }
  uint32_t flags = BENCH_F_MEASURED;
  if (s->meas + 1 >= pl->meas_max ||
      (s->meas + 1 >= pl->meas_min && bench_now_ns() - s->t_meas0 >= pl->meas_ns)) {
    flags |= BENCH_F_LAST;
  }
  return flags;
}

static void sched_done(schedule *s, uint32_t flags) {
  if (flags & BENCH_F_MEASURED) {
    s->meas++;
  } else {
    s->warm++;
  }
}

void bench_produce(const bench_plan *pl, uint8_t *p, uint64_t seq, uint32_t flags) {
  if (pl->mode == MODE_FULL) {
    bench_fill(p + BENCH_HEADER_LEN, pl->payload - BENCH_HEADER_LEN, seq);
  }
  bench_write_header(p, seq, pl->payload, flags);
}

/* Reads a payload the way the mode says; returns false for a bad header
 * and counts a bad checksum. */
static bool consume(const bench_plan *pl, const uint8_t *d, uint64_t expect_seq, bench_header *h,
                    uint64_t *bad_sums) {
  if (!bench_read_header(d, h) || h->seq != expect_seq || h->payload_len != pl->payload) {
    return false;
  }
  if (pl->mode == MODE_FULL) {
    size_t body = pl->payload - BENCH_HEADER_LEN;
    if (bench_checksum(d + BENCH_HEADER_LEN, body) != bench_expected_checksum(body, h->seq)) {
      (*bad_sums)++;
    }
  }
  return true;
}

int bench_producer_loop(const bench_plan *pl, const tx_ops *ops, void *st, producer_report *out) {
  schedule s;
  sched_init(&s, pl);
  uint64_t seq = 0, f0 = 0;
  /* In full mode the time spent in the payload code is recorded too; two
   * clock reads per payload are small next to writing a whole payload. */
  bool timed = pl->mode == MODE_FULL;
  out->work_ns = 0;
  if (ops->prime != NULL) {
    int64_t n = ops->prime(st, pl);
    if (n < 0) {
      return -1;
    }
    seq = s.warm = (uint64_t)n;
  }
  for (;;) {
    bool starts;
    uint32_t flags = sched_next(&s, &starts);
    if (starts) {
      if (ops->measure_start != NULL) {
        ops->measure_start(st);
      }
      f0 = bench_minor_faults();
    }
    uint8_t *p = ops->acquire(st, pl->payload);
    if (p == NULL) {
      return -1;
    }
    if (timed && (flags & BENCH_F_MEASURED)) {
      uint64_t w0 = bench_now_ns();
      bench_produce(pl, p, seq, flags);
      out->work_ns += bench_now_ns() - w0;
    } else {
      bench_produce(pl, p, seq, flags);
    }
    if (ops->submit(st, pl->payload) != 0) {
      return -1;
    }
    seq++;
    sched_done(&s, flags);
    if (flags & BENCH_F_LAST) {
      break;
    }
  }
  out->faults = bench_minor_faults() - f0;
  out->sent = seq;
  out->measured = s.meas;
  return 0;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

void bench_percentiles(uint64_t *v, uint64_t n, uint64_t *median, uint64_t *p99) {
  if (n == 0) {
    *median = *p99 = 0;
    return;
  }
  qsort(v, n, sizeof *v, cmp_u64);
  *median = (n % 2 == 1) ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  uint64_t rank = (99 * n + 99) / 100; /* ceil(0.99 n), 1-based */
  *p99 = v[rank - 1];
}

int bench_consumer_loop(const bench_plan *pl, const rx_ops *ops, void *st, consumer_report *rep) {
  size_t cap = pl->meas_max * sizeof(uint64_t);
  uint64_t *iv = bench_alloc_touched(cap);
  if (iv == NULL) {
    return -1;
  }
  uint64_t seq = 0, n = 0, t_prev = bench_now_ns(), t0 = t_prev, f0 = bench_minor_faults();
  bool timed = pl->mode == MODE_FULL;
  int rc = 0;
  for (;;) {
    const uint8_t *d = ops->receive(st, pl->payload);
    if (d == NULL) {
      rc = -1;
      break;
    }
    bench_header h;
    uint64_t w0 = timed ? bench_now_ns() : 0;
    bool good = consume(pl, d, seq, &h, &rep->bad_checksums);
    if (timed && good && (h.flags & BENCH_F_MEASURED)) {
      rep->work_ns += bench_now_ns() - w0;
    }
    if (!good) {
      rep->bad_headers++;
      rc = bench_fail("message %llu: bad header (magic %#x, seq %llu, len %llu)",
                      (unsigned long long)seq, h.magic, (unsigned long long)h.seq,
                      (unsigned long long)h.payload_len);
      break;
    }
    if (ops->done(st) != 0) {
      rc = -1;
      break;
    }
    uint64_t t = bench_now_ns();
    if (h.flags & BENCH_F_MEASURED) {
      if (n < pl->meas_max) {
        iv[n++] = t - t_prev;
      }
    } else {
      /* Still warming up: the measured window starts after this one. */
      f0 = bench_minor_faults();
      t0 = t;
    }
    t_prev = t;
    seq++;
    if (h.flags & BENCH_F_LAST) {
      break;
    }
  }
  rep->faults = bench_minor_faults() - f0;
  rep->received = seq;
  rep->measured = n;
  rep->measured_ns = t_prev - t0;
  bench_percentiles(iv, n, &rep->median_ns, &rep->p99_ns);
  bench_free(iv, cap);
  return rc;
}

/* The in-process ceiling: the same schedule, fill, header, checksum and
 * timing, with the payload written and read in one buffer by one process. */
int bench_in_process_loop(const bench_plan *pl, uint8_t *buf, producer_report *prep,
                          consumer_report *crep) {
  size_t cap = pl->meas_max * sizeof(uint64_t);
  uint64_t *iv = bench_alloc_touched(cap);
  if (iv == NULL) {
    return -1;
  }
  schedule s;
  sched_init(&s, pl);
  uint64_t seq = 0, n = 0, t_prev = bench_now_ns(), t0 = t_prev, f0 = bench_minor_faults();
  int rc = 0;
  for (;;) {
    bool starts;
    uint32_t flags = sched_next(&s, &starts);
    bench_produce(pl, buf, seq, flags);
    /* Keep the compiler from carrying the header over in registers. */
    __asm__ __volatile__("" ::: "memory");
    bench_header h;
    if (!consume(pl, buf, seq, &h, &crep->bad_checksums)) {
      crep->bad_headers++;
      rc = bench_fail("message %llu: bad header", (unsigned long long)seq);
      break;
    }
    uint64_t t = bench_now_ns();
    if (h.flags & BENCH_F_MEASURED) {
      iv[n++] = t - t_prev;
    } else {
      f0 = bench_minor_faults();
      t0 = t;
    }
    t_prev = t;
    seq++;
    sched_done(&s, flags);
    if (flags & BENCH_F_LAST) {
      break;
    }
  }
  uint64_t faults = bench_minor_faults() - f0;
  prep->faults = crep->faults = faults;
  prep->sent = crep->received = seq;
  prep->measured = crep->measured = n;
  crep->measured_ns = t_prev - t0;
  bench_percentiles(iv, n, &crep->median_ns, &crep->p99_ns);
  crep->ok = rc == 0;
  bench_free(iv, cap);
  return rc;
}

/* ---- two processes ------------------------------------------------------ */

/* Pins the calling process to `cpu`, saving its affinity first. */
static void pin_to(int cpu, cpu_set_t *saved) {
  if (saved != NULL) {
    sched_getaffinity(0, sizeof *saved, saved);
  }
  bench_pin(cpu);
}

int bench_pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

int bench_two_process(const bench_plan *pl, side_fn producer, void *pctx, side_fn consumer,
                      void *cctx, producer_report *prep, consumer_report *crep) {
  int rp[2];
  if (pipe2(rp, O_CLOEXEC) != 0) {
    return bench_fail("pipe2: %s", strerror(errno));
  }
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(rp[0]);
    close(rp[1]);
    return bench_fail("fork: %s", strerror(errno));
  }
  if (pid == 0) {
    close(rp[0]);
    if (pl->pin) {
      pin_to(pl->cpu_rx, NULL);
    }
    consumer_report rep;
    memset(&rep, 0, sizeof rep);
    bench_clear_error();
    int rc = consumer(pl, cctx, &rep);
    rep.ok = rc == 0;
    if (rc != 0) {
      snprintf(rep.error, sizeof rep.error, "%s", bench_error());
    }
    (void)write_all(rp[1], &rep, sizeof rep);
    _exit(0);
  }
  close(rp[1]);
  cpu_set_t saved;
  if (pl->pin) {
    pin_to(pl->cpu_tx, &saved);
  }
  memset(prep, 0, sizeof *prep);
  int prc = producer(pl, pctx, prep);
  if (pl->pin) {
    sched_setaffinity(0, sizeof saved, &saved);
  }
  memset(crep, 0, sizeof *crep);
  int rrc = read_all(rp[0], crep, sizeof *crep);
  close(rp[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (prc != 0) {
    return -1;
  }
  if (rrc != 0 || !WIFEXITED(status)) {
    return bench_fail("the consumer process died (status %#x)", status);
  }
  if (!crep->ok) {
    return bench_fail("consumer: %s", crep->error);
  }
  return 0;
}

void bench_fill_result(const bench_plan *pl, const producer_report *p, const consumer_report *c,
                       case_result *res) {
  res->payload = pl->payload;
  res->mode = pl->mode;
  res->messages = c->measured;
  res->median_us = (double)c->median_ns / 1e3;
  res->p99_us = (double)c->p99_ns / 1e3;
  res->mean_us = c->measured ? (double)c->measured_ns / (double)c->measured / 1e3 : 0;
  res->gbps = c->measured_ns ? (double)c->measured * (double)pl->payload / (double)c->measured_ns : 0;
  res->faults_tx = p->measured ? (double)p->faults / (double)p->measured : 0;
  res->faults_rx = c->measured ? (double)c->faults / (double)c->measured : 0;
  res->faults_tx_total = p->faults;
  res->faults_rx_total = c->faults;
  res->bad = c->bad_checksums + c->bad_headers;
  res->write_us = p->measured ? (double)p->work_ns / (double)p->measured / 1e3 : 0;
  res->read_us = c->measured ? (double)c->work_ns / (double)c->measured / 1e3 : 0;
  res->regions_created = -1;
  res->regions_retired = -1;
}
