/*
 * voxshm-latency: shared declarations.
 *
 * Two processes, A (the parent) and B (a forked child), exchange payloads in
 * two shapes:
 *
 *  - round trip: A sends an S-byte payload to B, B answers with an S-byte
 *    payload of its own on the B -> A direction, A receives it and gives it
 *    back. Both write the first and the last cache line of what they send
 *    and read those of what they receive.
 *  - stream: A sends as fast as it can, B receives and gives back; either
 *    only a 64-byte header is written and read, or every byte (fill and
 *    checksum of bench.c).
 *
 * A mechanism supplies, per process, the transport steps of bench.h
 * (tx_ops: acquire and submit; rx_ops: receive and done) for the directions
 * that process uses; the loops in latency.c do all the payload work and all
 * the measuring, so every mechanism runs the same code around its
 * transport.
 */
#ifndef VOXSHM_LATENCY_H
#define VOXSHM_LATENCY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench.h"

/* A third header flag besides BENCH_F_MEASURED and BENCH_F_LAST: the last
 * warm-up payload. Each process starts its counters once it has finished
 * with it. */
#define LAT_F_WARM_END 4u

/* A wait longer than this (for a payload, for room) means something hangs:
 * the case fails rather than the program. */
#define LAT_TIMEOUT_MS 10000

enum lat_shape { SHAPE_ROUNDTRIP, SHAPE_STREAM_HEADER, SHAPE_STREAM_FULL, N_SHAPES };
enum lat_variant { VAR_BUSY, VAR_BLOCK, VAR_BLOCK_SPIN0, N_VARIANTS };

extern const char *const LAT_SHAPE_NAMES[N_SHAPES];
extern const char *const LAT_VARIANT_NAMES[N_VARIANTS];

/* One case: everything both processes need to know to run it. */
typedef struct lat_case {
  int shape;
  int variant;
  size_t size;         /* payload bytes */
  uint32_t spin_us;    /* blocking variants: spin this long before sleeping */
  uint64_t warm_min;   /* warm-up: at least this many payloads ... */
  uint64_t warm_ns;    /* ... and at least this long */
  uint64_t meas_min;   /* measuring: at least this many payloads ... */
  uint64_t meas_max;   /* ... at most this many ... */
  uint64_t meas_ns;    /* ... and stops after this long (past meas_min) */
} lat_case;

static inline bool lat_is_stream(const lat_case *c) { return c->shape != SHAPE_ROUNDTRIP; }
static inline bool lat_busy(const lat_case *c) { return c->variant == VAR_BUSY; }

/* ---- waiting ------------------------------------------------------------ */

/* Gives up on a wait after LAT_TIMEOUT_MS, looking at the clock only every
 * 64 calls so that a busy-poll loop stays tight. */
typedef struct lat_patience {
  uint64_t start_ns;
  uint32_t calls;
} lat_patience;

void lat_patience_start(lat_patience *p);
/* False (with a failure recorded) once the wait has lasted too long. */
bool lat_patience_ok(lat_patience *p, const char *what);

static inline void lat_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* The floors' waiting, the same in every variant voxshm has: spin until
 * ready(ctx) (busy-poll: for ever; blocking: for the case's spin_us), then
 * sleep on the futex `sleeping` (a word in shared memory: 1 = "the waiter
 * sleeps, wake it"). The side that makes the condition true calls
 * lat_wake() after publishing. Returns -1 after LAT_TIMEOUT_MS. */
typedef bool (*lat_ready_fn)(void *ctx);
int lat_wait(const lat_case *c, lat_ready_fn ready, void *ctx, _Atomic uint32_t *sleeping,
             const char *what);
void lat_wake(_Atomic uint32_t *sleeping);

/* ---- mechanisms --------------------------------------------------------- */

enum { SIDE_A = 0, SIDE_B = 1 };

/* What one process holds for a case: its sending and receiving steps
 * (ops NULL where that process does not use the direction), and the
 * mechanism's own state for that process. */
typedef struct lat_ends {
  const tx_ops *tx;
  void *tx_st;
  const rx_ops *rx;
  void *rx_st;
  void *own;
} lat_ends;

/* Which directions a process uses: A sends, B receives, and in a round
 * trip each does both. */
static inline bool lat_sends(const lat_case *c, int side) {
  return side == SIDE_A || !lat_is_stream(c);
}
static inline bool lat_receives(const lat_case *c, int side) {
  return side == SIDE_B || !lat_is_stream(c);
}

/* For a mechanism's open: clears *e and gives it `size` zeroed bytes of
 * the mechanism's own state (e->own, freed by the caller's close); NULL,
 * with a failure recorded, when out of memory. */
void *lat_ends_start(lat_ends *e, size_t size);
/* Sets the steps of the directions `side` uses (lat_sends, lat_receives). */
void lat_ends_set(lat_ends *e, const lat_case *c, int side, const tx_ops *tx, void *tx_st,
                  const rx_ops *rx, void *rx_st);

/* What a voxshm mechanism's handles report about one process's side. */
typedef struct lat_handle_stats {
  int ring;         /* 1: every handle of this side uses the ring path; -1: not voxshm */
  uint64_t wakeups; /* wake-up messages the side's handles have sent so far */
} lat_handle_stats;

/* KIND_VOXSHM_DUPLEX: voxshm too (on the ring path), compared with
 * KIND_VOXSHM like the others. */
enum lat_kind { KIND_VOXSHM, KIND_VOXSHM_DUPLEX, KIND_BASELINE, KIND_FLOOR };

typedef struct lat_mech {
  const char *name;
  int kind;
  const char *about; /* one line for the output */
  /* Whether the mechanism has this shape (NULL: every one). */
  bool (*has_shape)(int shape);
  /* In the parent, before the fork: what both processes share (sockets,
   * shared memory). */
  int (*prepare)(const lat_case *c, void **shared);
  /* In each process after the fork: the ends of `side` (and giving up
   * what belongs to the other side, e.g. its fds). */
  int (*open)(const lat_case *c, void *shared, int side, lat_ends *ends);
  /* Optional: the handles' view of this process's side. */
  int (*handle_stats)(const lat_ends *ends, lat_handle_stats *out);
  /* In each process: closes what open made (also after a failed open). */
  void (*close)(lat_ends *ends);
  /* In each process, last: frees what prepare made. */
  void (*discard)(void *shared);
} lat_mech;

extern const lat_mech LAT_MECH_VOXSHM;
extern const lat_mech LAT_MECH_VOXSHM_DUPLEX;
extern const lat_mech LAT_MECH_VOXSHM_SOCKET;
extern const lat_mech LAT_MECH_SHM_PINGPONG;
extern const lat_mech LAT_MECH_SHM_RING;
extern const lat_mech LAT_MECH_UNIX_SOCKET;

/* ---- measuring ---------------------------------------------------------- */

/* Counted by one process on itself over its measuring window. */
typedef struct lat_side_counts {
  uint64_t payloads;
  int64_t syscalls;        /* -1: not available */
  int64_t ctxsw;           /* -1: not available */
  uint64_t cpu_ns;         /* user + kernel */
  uint64_t sys_ns;         /* of which kernel */
  uint64_t minor_faults;
  lat_handle_stats handles; /* wakeups: over the window */
} lat_side_counts;

/* How the counters work in this run (decided once, before any fork). */
typedef struct lat_counter_setup {
  long tracepoint_id;        /* raw_syscalls:sys_enter; -1: not found */
  char syscalls_note[160];   /* why syscalls are not counted, or how */
  char ctxsw_note[160];
} lat_counter_setup;

void lat_counters_probe(lat_counter_setup *setup);

/* One measured case. */
typedef struct lat_result {
  const lat_mech *mech;
  lat_case c;
  uint64_t payloads;      /* measured payloads (round trips) */
  double median_us;       /* round trip only */
  double p99_us;
  double payloads_per_s;  /* round trip: round trips per second */
  double gb_per_s;        /* stream only: 10^9 payload bytes per second */
  uint64_t bad;           /* payloads that failed their check */
  lat_side_counts a, b;
} lat_result;

/* Runs one case of one mechanism in two processes: A is the calling
 * process (left where it is), B a child pinned to cpu_b (unless -1).
 * 0 on success; -1 with bench_error() set. */
int lat_run_case(const lat_mech *m, const lat_case *c, const lat_counter_setup *setup, int cpu_b,
                 lat_result *out);

#endif
