/*
 * voxshm-bench: shared declarations.
 *
 * Every mechanism is driven by the same two loops (bench.c): the producer
 * loop asks the mechanism for space, writes the payload into it with
 * bench_fill() and bench_write_header(), and submits it; the consumer loop
 * receives a payload, reads it with bench_read_header() and
 * bench_checksum(), and gives it back. A mechanism only supplies the four
 * transport steps (acquire, submit, receive, done), so all of them run the
 * same payload code.
 */
#ifndef VOXSHM_BENCH_H
#define VOXSHM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

/* ---- payload ----------------------------------------------------------- */

/* Every payload starts with this 64-byte header; the body follows it. */
#define BENCH_HEADER_LEN 64
#define BENCH_MAGIC 0x68637862u /* "bxch" */

/* Header flags. */
#define BENCH_F_MEASURED 1u /* counts towards the figures */
#define BENCH_F_LAST 2u     /* the consumer stops after this one */

typedef struct bench_header {
  uint32_t magic;
  uint32_t flags;
  uint64_t seq;
  uint64_t payload_len;
  uint64_t sent_ns; /* CLOCK_MONOTONIC when the producer wrote the header */
  uint8_t pad[32];
} bench_header;

enum bench_mode { MODE_TRANSPORT = 0, MODE_FULL = 1 };

/* Writes the header into the first 64 bytes of a payload. */
void bench_write_header(uint8_t *payload, uint64_t seq, uint64_t len, uint32_t flags);
/* The same with a given timestamp (0 when the caller does not keep one). */
void bench_write_header_at(uint8_t *payload, uint64_t seq, uint64_t len, uint32_t flags,
                           uint64_t sent_ns);
/* Copies the header out of a payload; false if the magic is wrong. */
bool bench_read_header(const uint8_t *payload, bench_header *out);
/* Fills `len` bytes (a multiple of 8) with the pattern of message `seq`. */
void bench_fill(uint8_t *body, size_t len, uint64_t seq);
/* Sums `len` bytes (a multiple of 8) as 64-bit words. */
uint64_t bench_checksum(const uint8_t *body, size_t len);
/* What bench_checksum returns for a body filled by bench_fill(seq). */
uint64_t bench_expected_checksum(size_t len, uint64_t seq);

/* ---- small helpers ----------------------------------------------------- */

uint64_t bench_now_ns(void);
uint64_t bench_minor_faults(void);
/* Anonymous memory, every page touched (so using it later takes no fault). */
void *bench_alloc_touched(size_t len);
void bench_free(void *p, size_t len);
/* Records a failure message (first one wins) and returns -1. */
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *bench_error(void);
void bench_clear_error(void);
int write_all(int fd, const void *buf, size_t len);
int read_all(int fd, void *buf, size_t len); /* -1 on error or early EOF */
/* Median and 99th percentile (nearest rank) of n values; sorts them. */
void bench_percentiles(uint64_t *v, uint64_t n, uint64_t *median, uint64_t *p99);
/* Pins the calling process to one CPU; sched_setaffinity's result. */
int bench_pin(int cpu);
/* One line: CPUs, CPU model, memory, kernel. */
void bench_machine_description(FILE *f);
/* A payload size such as 4096, 4K, 64KiB or 1M: at least `min`, a
 * multiple of 8, below 4 GiB. */
bool bench_parse_size(const char *s, uint64_t min, uint64_t *out);
/* Two CPU numbers "A,B" (as --cpus takes them). */
bool bench_parse_cpus(const char *s, int *a, int *b);
/* "64 B", "4 KiB", "16 MiB". */
void bench_size_label(uint64_t v, char *buf, size_t len);

/* ---- a case and its plan ----------------------------------------------- */

typedef struct bench_plan {
  size_t payload;        /* bytes per message, header included */
  int mode;              /* MODE_TRANSPORT or MODE_FULL */
  uint64_t warm_min;     /* at least this many warm-up messages */
  uint64_t warm_max;     /* at most this many */
  uint64_t warm_ns;      /* warm-up ends after this long (past warm_min) */
  uint64_t meas_min;     /* at least this many measured messages */
  uint64_t meas_max;     /* at most this many */
  uint64_t meas_ns;      /* measuring ends after this long (past meas_min) */
  uint64_t inflight;     /* bytes a mechanism with its own window may have in flight */
  int pin;               /* pin the producer to cpu_tx and the consumer to cpu_rx */
  int cpu_tx, cpu_rx;
  int big_buffers;       /* enlarge pipe and socket buffers to the unprivileged maximum */
} bench_plan;

/* What the consumer measured, sent back to the parent over a pipe. */
typedef struct consumer_report {
  int32_t ok;
  uint32_t pad;
  uint64_t received;      /* messages in total */
  uint64_t measured;      /* measured messages */
  uint64_t measured_ns;   /* completion of the first warm-up-free interval to the last */
  uint64_t median_ns;
  uint64_t p99_ns;
  uint64_t faults;        /* minor faults over the measured messages */
  uint64_t bad_checksums;
  uint64_t bad_headers;
  uint64_t work_ns;       /* full mode: time spent reading the measured payloads */
  char error[256];
} consumer_report;

/* What the producer measured. */
typedef struct producer_report {
  uint64_t sent;
  uint64_t measured;
  uint64_t faults;  /* minor faults over the measured messages */
  uint64_t work_ns; /* full mode: time spent writing the measured payloads */
} producer_report;

/* ---- mechanisms -------------------------------------------------------- */

/* The producer's transport steps. */
typedef struct tx_ops {
  /* Space for one payload of `len` bytes; NULL on failure. */
  uint8_t *(*acquire)(void *st, size_t len);
  /* Hands the payload written into the last acquired space to the peer. */
  int (*submit)(void *st, size_t len);
  /* Optional: called once, just before the first measured message. */
  void (*measure_start)(void *st);
  /* Optional: called once before the first message; sends warm-up
   * messages 0..n-1 itself (with bench_produce) and returns n, or -1. */
  int64_t (*prime)(void *st, const bench_plan *pl);
} tx_ops;

/* Writes message `seq` into `p` as the plan's mode says. */
void bench_produce(const bench_plan *pl, uint8_t *p, uint64_t seq, uint32_t flags);

/* The consumer's transport steps. */
typedef struct rx_ops {
  /* The next payload (exactly `len` bytes); NULL on failure. */
  const uint8_t *(*receive)(void *st, size_t len);
  /* The payload returned by receive is no longer needed. */
  int (*done)(void *st);
} rx_ops;

int bench_producer_loop(const bench_plan *pl, const tx_ops *ops, void *st, producer_report *out);
int bench_consumer_loop(const bench_plan *pl, const rx_ops *ops, void *st, consumer_report *out);
/* Both halves in one process on one buffer: the in-process ceiling. */
int bench_in_process_loop(const bench_plan *pl, uint8_t *buf, producer_report *prep,
                          consumer_report *crep);

/* A measured case, as reported. */
typedef struct case_result {
  const char *mechanism;
  int mode;
  size_t payload;
  uint64_t messages;
  double median_us;
  double p99_us;
  double mean_us;
  double gbps; /* 10^9 payload bytes per second */
  double faults_tx;
  double faults_rx;
  uint64_t faults_tx_total; /* over all measured messages */
  uint64_t faults_rx_total;
  double write_us; /* full mode, two processes: mean time writing a payload */
  double read_us;  /* ... and reading one */
  uint64_t bad;
  /* CPU time other processes used while this case ran, in % of one CPU. */
  double other_cpu_pct;
  /* voxshm only: regions created and retired while measuring (sender). */
  int64_t regions_created;
  int64_t regions_retired;
} case_result;

/* Each mechanism runs one whole case: it sets up its channel, forks the
 * consumer, runs the producer, collects the consumer's report. */
int mech_voxshm(const bench_plan *pl, case_result *res);
/* One producer, n consumer processes reading the same stream (voxshm
 * fan-out): per[i] is receiver i's case; cost says what the producer paid
 * per payload. */
#define FANOUT_MAX 16
typedef struct fanout_cost {
  double calls_us; /* alloc + send, per measured payload */
  double cpu_us;   /* the producer process's CPU (user + system), per payload */
} fanout_cost;
int mech_fanout(const bench_plan *pl, int n, case_result *per, fanout_cost *cost);
int mech_unix_stream(const bench_plan *pl, case_result *res);
int mech_pipe(const bench_plan *pl, case_result *res);
int mech_memfd(const bench_plan *pl, case_result *res);
int mech_in_process(const bench_plan *pl, case_result *res);

/* The registry geometry the voxshm case uses for a plan (defined in
 * mech_voxshm.c; takes a voxshm_registry_options *). */
struct voxshm_registry_options;
void bench_voxshm_options(const bench_plan *pl, struct voxshm_registry_options *o);

/* Shared by the programs' voxshm code (mech_voxshm.c). */
struct voxshm_view;
struct voxshm_attachments;
/* 0 when the library's ABI is the header's; otherwise says so on stderr
 * and returns -1. */
int bench_check_abi(const char *program);
/* Records "what: STATUS_NAME: voxshm_last_error()" and returns -1. */
int bench_vx_fail(const char *what, int status);
/* What voxshm_attachments_recv returned: the payload when it succeeded
 * with exactly `len` bytes; NULL (a failure recorded) otherwise. */
const uint8_t *bench_vx_received(int status, const struct voxshm_view *v, size_t len);
/* Releases the view; 0, or -1 with a failure recorded. */
int bench_vx_release(const struct voxshm_attachments *att, const struct voxshm_view *v);
/* The one-receiver consumer's loop over attachments on the channel `fd`
 * (which it takes; closed on failure). */
int bench_vx_consume(const bench_plan *pl, int fd, consumer_report *out);

/* Shared by the two-process mechanisms: forks, runs `child` in the child
 * (which must fill the report and return), runs `parent` in the parent,
 * and collects the child's report. */
typedef int (*side_fn)(const bench_plan *pl, void *ctx, void *out);
int bench_two_process(const bench_plan *pl, side_fn producer, void *pctx, side_fn consumer,
                      void *cctx, producer_report *prep, consumer_report *crep);
void bench_fill_result(const bench_plan *pl, const producer_report *p, const consumer_report *c,
                       case_result *res);

#endif
