/*
 * voxshm-bench: moves payloads between two processes with voxshm and with
 * the kernel's ordinary mechanisms, and reports per-message time,
 * throughput and page faults for each.
 *
 *   voxshm-bench [--quick] [--csv PATH] [--sizes LIST] [--mechanisms LIST]
 *                [--modes LIST] [--cpus P,C | --no-pin] [--default-buffers] [--slots N]
 *                [--min-inflight SIZE] [--receivers LIST]
 *
 * See docs/benchmarks.md for what is measured and how to read it.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "voxshm.h"

typedef int (*mech_fn)(const bench_plan *, case_result *);

typedef struct mechanism {
  const char *name;
  const char *label;
  mech_fn run;
} mechanism;

/* voxshm runs first in every group: the others are compared with it. */
static const mechanism MECHS[] = {
    {"voxshm", "voxshm", mech_voxshm},
    {"unix_stream", "unix stream socket", mech_unix_stream},
    {"pipe", "pipe", mech_pipe},
    {"memfd_per_msg", "memfd per message", mech_memfd},
    {"in_process", "in-process ceiling", mech_in_process},
};
#define N_MECHS (sizeof MECHS / sizeof MECHS[0])

static const char *MODE_NAMES[] = {"transport", "full"};

static const uint64_t DEFAULT_SIZES[] = {4 * KiB, 64 * KiB, 1 * MiB, 16 * MiB, 256 * MiB};

#define MAX_SIZES 16
#define MAX_CASES (N_MECHS * 2 * MAX_SIZES + 2 * MAX_SIZES * 64)

typedef struct options {
  bool quick;
  bool pin;
  int cpu_tx, cpu_rx;
  bool big_buffers;
  uint64_t slots;        /* payloads a windowed mechanism keeps in flight */
  uint64_t min_inflight; /* ... but at least this many bytes */
  const char *csv;
  uint64_t sizes[MAX_SIZES];
  size_t n_sizes;
  bool mech_on[N_MECHS];
  bool mode_on[2];
  int receivers[8]; /* --receivers: fan-out with these numbers of receivers */
  size_t n_receivers;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: voxshm-bench [--quick] [--csv PATH] [--sizes LIST] [--mechanisms LIST]\n"
          "                    [--modes LIST] [--cpus P,C | --no-pin] [--default-buffers]\n"
          "                    [--slots N]\n"
          "                    [--min-inflight SIZE] [--receivers LIST]\n"
          "\n"
          "  --quick             short warm-up and measuring windows (under a minute)\n"
          "  --csv PATH          also write the results as CSV to PATH\n"
          "  --sizes LIST        payload sizes, e.g. 4K,64K,1M,16M,256M (the default)\n"
          "  --mechanisms LIST   any of voxshm,unix_stream,pipe,memfd_per_msg,in_process\n"
          "  --modes LIST        transport, full, or both (the default)\n"
          "  --cpus P,C          run the producer (and the in-process case) on CPU P and the\n"
          "                      consumer on CPU C (default 0,1 when there are two CPUs)\n"
          "  --no-pin            let the scheduler place the processes\n"
          "  --default-buffers   keep the default pipe and socket buffer sizes instead of\n"
          "                      the largest an unprivileged process may set\n"
          "  --slots N           payloads voxshm and memfd-per-message keep in flight\n"
          "                      (default 4) ...\n"
          "  --min-inflight SIZE ... but at least this many bytes (default 4M)\n"
          "  --receivers LIST    fan-out: one producer and N consumer processes reading the\n"
          "                      same stream, for each N of LIST (e.g. 2,4; at most 16),\n"
          "                      beside N = 1 in the same run; per-receiver and total\n"
          "                      figures (without --mechanisms, only these cases run)\n");
}

/* Splits a comma-separated list in place and calls f on every item. */
static bool each_item(char *list, bool (*f)(const char *, options *), options *o) {
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    if (!f(tok, o)) {
      fprintf(stderr, "voxshm-bench: unknown item '%s'\n", tok);
      return false;
    }
  }
  return true;
}

static bool add_size(const char *s, options *o) {
  return o->n_sizes < MAX_SIZES && bench_parse_size(s, 2 * BENCH_HEADER_LEN, &o->sizes[o->n_sizes++]);
}

static bool add_mech(const char *s, options *o) {
  for (size_t i = 0; i < N_MECHS; i++) {
    if (strcmp(s, MECHS[i].name) == 0) {
      o->mech_on[i] = true;
      return true;
    }
  }
  return false;
}

static bool add_receivers(const char *s, options *o) {
  int n = atoi(s);
  if (n < 1 || n > FANOUT_MAX || o->n_receivers >= 8) {
    return false;
  }
  o->receivers[o->n_receivers++] = n;
  return true;
}

static bool add_mode(const char *s, options *o) {
  for (int i = 0; i < 2; i++) {
    if (strcmp(s, MODE_NAMES[i]) == 0) {
      o->mode_on[i] = true;
      return true;
    }
  }
  return false;
}

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  o->cpu_tx = 0;
  o->cpu_rx = 1;
  o->big_buffers = true;
  o->slots = 4;
  o->min_inflight = 4 * MiB;
  bool mechs = false, modes = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (strcmp(a, "--quick") == 0) {
      o->quick = true;
    } else if (strcmp(a, "--default-buffers") == 0) {
      o->big_buffers = false;
    } else if (strcmp(a, "--no-pin") == 0) {
      o->pin = false;
    } else if (strcmp(a, "--cpus") == 0 && has_value) {
      if (!bench_parse_cpus(argv[++i], &o->cpu_tx, &o->cpu_rx)) {
        fprintf(stderr, "voxshm-bench: --cpus needs two CPU numbers, e.g. 0,1\n");
        return -1;
      }
      o->pin = true;
    } else if (strcmp(a, "--slots") == 0 && has_value) {
      o->slots = strtoull(argv[++i], NULL, 10);
      if (o->slots < 1) {
        fprintf(stderr, "voxshm-bench: --slots needs a number >= 1\n");
        return -1;
      }
    } else if (strcmp(a, "--min-inflight") == 0 && has_value) {
      if (!bench_parse_size(argv[++i], 2 * BENCH_HEADER_LEN, &o->min_inflight)) {
        fprintf(stderr, "voxshm-bench: bad --min-inflight\n");
        return -1;
      }
    } else if (strcmp(a, "--csv") == 0 && has_value) {
      o->csv = argv[++i];
    } else if (strcmp(a, "--sizes") == 0 && has_value) {
      o->n_sizes = 0;
      if (!each_item(argv[++i], add_size, o)) {
        return -1;
      }
    } else if (strcmp(a, "--mechanisms") == 0 && has_value) {
      mechs = true;
      if (!each_item(argv[++i], add_mech, o)) {
        return -1;
      }
    } else if (strcmp(a, "--receivers") == 0 && has_value) {
      if (!each_item(argv[++i], add_receivers, o)) {
        return -1;
      }
    } else if (strcmp(a, "--modes") == 0 && has_value) {
      modes = true;
      if (!each_item(argv[++i], add_mode, o)) {
        return -1;
      }
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else {
      fprintf(stderr, "voxshm-bench: bad argument '%s'\n", a);
      usage(stderr);
      return -1;
    }
  }
  if (o->n_sizes == 0) {
    for (size_t i = 0; i < sizeof DEFAULT_SIZES / sizeof DEFAULT_SIZES[0]; i++) {
      o->sizes[o->n_sizes++] = DEFAULT_SIZES[i];
    }
  }
  for (size_t i = 0; !mechs && o->n_receivers == 0 && i < N_MECHS; i++) {
    o->mech_on[i] = true;
  }
  if (!modes) {
    o->mode_on[MODE_TRANSPORT] = o->mode_on[MODE_FULL] = true;
  }
  return 0;
}

/* How long each case runs. Every mechanism gets the same plan. */
static bench_plan make_plan(const options *o, int mode, uint64_t payload) {
  bench_plan p;
  memset(&p, 0, sizeof p);
  p.payload = payload;
  p.mode = mode;
  p.pin = o->pin;
  p.cpu_tx = o->cpu_tx;
  p.cpu_rx = o->cpu_rx;
  p.big_buffers = o->big_buffers;
  /* Bytes a mechanism with its own flow control keeps in flight: the
   * voxshm budget and the memfd window. */
  p.inflight = o->slots * payload;
  if (p.inflight < o->min_inflight) {
    p.inflight = o->min_inflight;
  }
  uint64_t depth = p.inflight / payload;
  if (o->quick) {
    p.warm_min = 4;
    p.warm_max = 5000;
    p.warm_ns = 150000000ull;
    p.meas_min = 5;
    p.meas_max = 20000;
    p.meas_ns = 200000000ull;
  } else {
    p.warm_min = 8;
    p.warm_max = 50000;
    p.warm_ns = 1000000000ull;
    p.meas_min = 20;
    p.meas_max = 200000;
    p.meas_ns = 2000000000ull;
  }
  /* Warm up until every slot the budget allows has been used once, so the
   * measured messages find their memory mapped and touched already. */
  if (depth + 2 > p.warm_min) {
    p.warm_min = depth + 2 < p.warm_max ? depth + 2 : p.warm_max;
  }
  return p;
}

/* CPU time, in seconds, that every process on the machine and that this
 * process with its reaped children have used so far: their difference
 * over a case is what other processes took from the benchmark. */
typedef struct cpu_sample {
  double machine_busy;
  double own;
  double wall;
} cpu_sample;

static cpu_sample cpu_now(void) {
  cpu_sample c = {0, 0, (double)bench_now_ns() / 1e9};
  FILE *f = fopen("/proc/stat", "r");
  if (f != NULL) {
    unsigned long long v[10] = {0};
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]) >= 8) {
      /* user nice system idle iowait irq softirq steal (guest time is
       * already counted in user). Steal is time the host ran something
       * else on our virtual CPUs: it counts as taken from us. */
      unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
      c.machine_busy = (double)busy / (double)sysconf(_SC_CLK_TCK);
    }
    fclose(f);
  }
  struct rusage a, b;
  getrusage(RUSAGE_SELF, &a);
  getrusage(RUSAGE_CHILDREN, &b);
  c.own = (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
          (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
                   b.ru_stime.tv_usec) / 1e6;
  return c;
}

/* Other processes' CPU use between two samples, in % of one CPU. */
static double other_pct(cpu_sample a, cpu_sample b) {
  double wall = b.wall - a.wall;
  double other = (b.machine_busy - a.machine_busy) - (b.own - a.own);
  if (wall <= 0 || other < 0) {
    return 0;
  }
  return 100.0 * other / wall;
}

static const case_result *find(const case_result *rs, size_t n, const char *mech, int mode,
                               uint64_t payload) {
  for (size_t i = 0; i < n; i++) {
    if (rs[i].mechanism != NULL && strcmp(rs[i].mechanism, mech) == 0 && rs[i].mode == mode &&
        rs[i].payload == payload) {
      return &rs[i];
    }
  }
  return NULL;
}

static const char *label_of(const char *name) {
  for (size_t i = 0; i < N_MECHS; i++) {
    if (strcmp(MECHS[i].name, name) == 0) {
      return MECHS[i].label;
    }
  }
  return name;
}

static void print_table_header(void) {
  printf("\n%-9s  %8s  %-18s  %8s  %10s  %10s  %10s  %8s  %10s  %10s  %9s  %6s\n", "mode",
         "payload", "mechanism", "messages", "median_us", "p99_us", "mean_us", "GB/s",
         "flt/msg tx", "flt/msg rx", "vs voxshm", "other");
}

static void print_row(const case_result *r, const mechanism *m, const case_result *vx) {
  char sz[32], ratio[32] = "-";
  bench_size_label(r->payload, sz, sizeof sz);
  if (vx != NULL && vx->median_us > 0) {
    snprintf(ratio, sizeof ratio, "%.2fx", r->median_us / vx->median_us);
  }
  printf("%-9s  %8s  %-18s  %8llu  %10.3f  %10.3f  %10.3f  %8.3f  %10.4f  %10.4f  %9s  %5.0f%%\n",
         MODE_NAMES[r->mode], sz, m->label, (unsigned long long)r->messages, r->median_us,
         r->p99_us, r->mean_us, r->gbps, r->faults_tx, r->faults_rx, ratio, r->other_cpu_pct);
  fflush(stdout);
}

static void write_csv(const char *path, const case_result *rs, size_t n) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return;
  }
  fprintf(f,
          "mechanism,mode,payload_bytes,messages,median_us,p99_us,gbps,faults_per_msg_sender,"
          "faults_per_msg_receiver\n");
  for (size_t i = 0; i < n; i++) {
    const case_result *r = &rs[i];
    if (r->mechanism == NULL) {
      continue;
    }
    fprintf(f, "%s,%s,%zu,%llu,%.3f,%.3f,%.4f,%.4f,%.4f\n", r->mechanism, MODE_NAMES[r->mode],
            r->payload, (unsigned long long)r->messages, r->median_us, r->p99_us, r->gbps,
            r->faults_tx, r->faults_rx);
  }
  fclose(f);
}

/* The four figures the issue sets as the bar, checked on this run. */
static void print_bar(const case_result *rs, size_t n) {
  printf("\nthe bar\n");
  const case_result *a = find(rs, n, "voxshm", MODE_TRANSPORT, 4 * KiB);
  const case_result *b = find(rs, n, "voxshm", MODE_TRANSPORT, 256 * MiB);
  if (a != NULL && b != NULL) {
    double r = b->median_us / a->median_us;
    printf("  1. voxshm transport, 256 MiB vs 4 KiB per-message time (median): %.3f us vs %.3f us "
           "= %.2fx (need <= 2x): %s\n",
           b->median_us, a->median_us, r, r <= 2.0 ? "PASS" : "FAIL");
    printf("     (mean: %.3f us vs %.3f us = %.2fx)\n", b->mean_us, a->mean_us,
           b->mean_us / a->mean_us);
  } else {
    printf("  1. not measured (needs voxshm transport at 4 KiB and 256 MiB)\n");
  }
  const case_result *v = find(rs, n, "voxshm", MODE_TRANSPORT, 16 * MiB);
  const case_result *u = find(rs, n, "unix_stream", MODE_TRANSPORT, 16 * MiB);
  if (v != NULL && u != NULL) {
    double r = u->median_us / v->median_us;
    printf("  2. transport at 16 MiB, unix stream vs voxshm per-message time (median): %.3f us vs "
           "%.3f us = %.1fx (need >= 100x): %s\n",
           u->median_us, v->median_us, r, r >= 100.0 ? "PASS" : "FAIL");
    printf("     (mean: %.3f us vs %.3f us = %.1fx)\n", u->mean_us, v->mean_us,
           u->mean_us / v->mean_us);
  } else {
    printf("  2. not measured (needs voxshm and unix_stream, transport, 16 MiB)\n");
  }
  bool any = false, all = true;
  for (size_t i = 0; i < n; i++) {
    const case_result *x = &rs[i];
    if (x->mechanism == NULL || strcmp(x->mechanism, "voxshm") != 0 || x->mode != MODE_FULL ||
        x->payload < 1 * MiB) {
      continue;
    }
    const case_result *c = find(rs, n, "in_process", MODE_FULL, x->payload);
    if (c == NULL || c->gbps <= 0) {
      continue;
    }
    char sz[32];
    bench_size_label(x->payload, sz, sizeof sz);
    double r = x->gbps / c->gbps;
    printf("  3. full at %s, voxshm vs in-process throughput: %.2f vs %.2f GB/s = %.0f%% "
           "(need >= 80%%): %s\n",
           sz, x->gbps, c->gbps, 100.0 * r, r >= 0.8 ? "PASS" : "FAIL");
    any = true;
    all = all && r >= 0.8;
  }
  if (!any) {
    printf("  3. not measured (needs voxshm and in_process, full, >= 1 MiB)\n");
  } else {
    printf("  3. overall: %s\n", all ? "PASS" : "FAIL");
  }
  uint64_t ftx = 0, frx = 0, msgs = 0, cases = 0, faulty = 0;
  for (size_t i = 0; i < n; i++) {
    const case_result *x = &rs[i];
    if (x->mechanism == NULL || strcmp(x->mechanism, "voxshm") != 0) {
      continue;
    }
    cases++;
    ftx += x->faults_tx_total;
    frx += x->faults_rx_total;
    msgs += x->messages;
    faulty += x->faults_tx_total + x->faults_rx_total > 0;
  }
  if (cases > 0) {
    printf("  4. voxshm page faults while measuring, all %llu cases: sender %llu, receiver %llu in "
           "%llu messages (%llu cases with any) (need 0): %s\n",
           (unsigned long long)cases, (unsigned long long)ftx, (unsigned long long)frx,
           (unsigned long long)msgs, (unsigned long long)faulty,
           ftx + frx == 0 ? "PASS" : "FAIL");
  } else {
    printf("  4. not measured (needs voxshm)\n");
  }
}

/* Names of the fan-out rows, kept for the CSV. */
static char fanout_names[256][32];
static size_t n_fanout_names;

static const char *fanout_name(int n, int receiver) {
  if (n_fanout_names >= sizeof fanout_names / sizeof fanout_names[0]) {
    return "fanout";
  }
  char *s = fanout_names[n_fanout_names++];
  if (receiver < 0) {
    snprintf(s, sizeof fanout_names[0], "fanout%d_total", n);
  } else {
    snprintf(s, sizeof fanout_names[0], "fanout%d_r%d", n, receiver);
  }
  return s;
}

/* Fan-out: for each mode and size, one producer with 1 receiver, then
 * with each N of --receivers, every receiver its own process reading the
 * same stream. One row per receiver (and a total: the sum of their GB/s)
 * in the table and the CSV, then what each N costs the producer. */
static int run_fanout(const options *o, case_result *results, size_t *n, size_t cap) {
  int failures = 0;
  printf("\nfan-out: one producer, N consumer processes reading the same stream (each payload "
         "written once); every consumer on CPU %d when pinned\n",
         o->cpu_rx);
  printf("%-9s  %8s  %3s  %-14s  %8s  %10s  %10s  %8s  %9s\n", "mode", "payload", "N",
         "receiver", "messages", "median_us", "p99_us", "GB/s", "vs N=1");
  for (int mode = 0; mode < 2; mode++) {
    if (!o->mode_on[mode]) {
      continue;
    }
    for (size_t si = 0; si < o->n_sizes; si++) {
      bench_plan pl = make_plan(o, mode, o->sizes[si]);
      char sz[32];
      bench_size_label(pl.payload, sz, sizeof sz);
      int ns[9] = {1};
      size_t k = 1;
      for (size_t i = 0; i < o->n_receivers; i++) {
        if (o->receivers[i] != 1) {
          ns[k++] = o->receivers[i];
        }
      }
      double single = 0, cost1 = 0;
      for (size_t j = 0; j < k; j++) {
        int nr = ns[j];
        case_result per[FANOUT_MAX];
        memset(per, 0, sizeof per);
        fanout_cost cost = {0, 0};
        fprintf(stderr, "fan-out %s %s N=%d ...", MODE_NAMES[mode], sz, nr);
        bench_clear_error();
        uint64_t t0 = bench_now_ns();
        if (mech_fanout(&pl, nr, per, &cost) != 0) {
          fprintf(stderr, " FAILED: %s\n", bench_error());
          failures++;
          continue;
        }
        fprintf(stderr, " %.2f s\n", (double)(bench_now_ns() - t0) / 1e9);
        double total = 0, lo = 0;
        for (int r = 0; r < nr; r++) {
          per[r].mechanism = fanout_name(nr, r);
          total += per[r].gbps;
          lo = r == 0 || per[r].gbps < lo ? per[r].gbps : lo;
          if (per[r].bad != 0) {
            fprintf(stderr, "voxshm-bench: fan-out N=%d receiver %d: %llu bad payloads\n", nr, r,
                    (unsigned long long)per[r].bad);
            failures++;
          }
          if (nr == 1) {
            single = per[r].gbps;
          }
          char ratio[32] = "-";
          if (single > 0) {
            snprintf(ratio, sizeof ratio, "%.2fx", per[r].gbps / single);
          }
          printf("%-9s  %8s  %3d  %-14d  %8llu  %10.3f  %10.3f  %8.3f  %9s\n", MODE_NAMES[mode],
                 sz, nr, r, (unsigned long long)per[r].messages, per[r].median_us,
                 per[r].p99_us, per[r].gbps, ratio);
          if (*n < cap) {
            results[(*n)++] = per[r];
          }
        }
        if (nr == 1) {
          cost1 = cost.calls_us;
        }
        case_result tot = per[0];
        tot.mechanism = fanout_name(nr, -1);
        tot.gbps = total;
        if (*n < cap) {
          results[(*n)++] = tot;
        }
        printf("%-9s  %8s  %3d  %-14s  total %.3f GB/s; slowest receiver %.2fx of N=1; producer "
               "alloc+send %.3f us/payload",
               MODE_NAMES[mode], sz, nr, "", total, single > 0 ? lo / single : 0,
               cost.calls_us);
        if (nr > 1 && cost1 > 0) {
          printf(" (+%.3f us per added receiver)", (cost.calls_us - cost1) / (nr - 1));
        }
        printf(", producer CPU %.3f us/payload\n", cost.cpu_us);
        fflush(stdout);
      }
    }
  }
  return failures;
}

int main(int argc, char **argv) {
  options o;
  if (parse_args(argc, argv, &o) != 0) {
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (bench_check_abi("voxshm-bench") != 0) {
    return 1;
  }

  printf("voxshm-bench, libvoxshm %s\n", voxshm_version());
  bench_machine_description(stdout);
  bench_plan example = make_plan(&o, MODE_TRANSPORT, 256 * MiB);
  char minf[32];
  bench_size_label(o.min_inflight, minf, sizeof minf);
  printf("run: %s; per case a warm-up of at least in-flight + 2 payloads and up to %.2f s, then "
         "%llu..%llu measured payloads for up to %.2f s\n",
         o.quick ? "quick" : "full", (double)example.warm_ns / 1e9,
         (unsigned long long)example.meas_min, (unsigned long long)example.meas_max,
         (double)example.meas_ns / 1e9);
  char placement[64] = "processes not pinned";
  if (o.pin) {
    snprintf(placement, sizeof placement, "producer on CPU %d, consumer on CPU %d", o.cpu_tx,
             o.cpu_rx);
  }
  printf("setup: voxshm and memfd per message keep %llu payloads (at least %s) in flight; %s "
         "pipe and socket buffers; %s\n",
         (unsigned long long)o.slots, minf, o.big_buffers ? "maximum" : "default", placement);
  printf("per-message time: interval between consecutive completed messages at the consumer, in "
         "steady state; GB/s = 10^9 payload bytes per second\n");
  print_table_header();

  static case_result results[MAX_CASES];
  size_t n = 0;
  int failures = 0;
  size_t total = 0, done = 0;
  for (int mode = 0; mode < 2; mode++) {
    for (size_t s = 0; s < o.n_sizes; s++) {
      for (size_t m = 0; m < N_MECHS; m++) {
        total += o.mode_on[mode] && o.mech_on[m];
      }
    }
  }
  uint64_t t_start = bench_now_ns();
  cpu_sample run0 = cpu_now();
  for (int mode = 0; mode < 2; mode++) {
    if (!o.mode_on[mode]) {
      continue;
    }
    for (size_t s = 0; s < o.n_sizes; s++) {
      for (size_t m = 0; m < N_MECHS; m++) {
        if (!o.mech_on[m]) {
          continue;
        }
        bench_plan pl = make_plan(&o, mode, o.sizes[s]);
        char sz[32];
        bench_size_label(pl.payload, sz, sizeof sz);
        fprintf(stderr, "[%zu/%zu] %s %s %s ...", ++done, total, MECHS[m].name, MODE_NAMES[mode],
                sz);
        uint64_t t0 = bench_now_ns();
        cpu_sample c0 = cpu_now();
        case_result r;
        memset(&r, 0, sizeof r);
        bench_clear_error();
        if (MECHS[m].run(&pl, &r) != 0) {
          fprintf(stderr, " FAILED: %s\n", bench_error());
          failures++;
          continue;
        }
        r.other_cpu_pct = other_pct(c0, cpu_now());
        fprintf(stderr, " %.2f s (other processes: %.0f%% of a CPU)\n",
                (double)(bench_now_ns() - t0) / 1e9, r.other_cpu_pct);
        r.mechanism = MECHS[m].name;
        if (r.bad != 0) {
          fprintf(stderr, "voxshm-bench: %s %s %s: %llu payloads failed their checksum\n",
                  MECHS[m].name, MODE_NAMES[mode], sz, (unsigned long long)r.bad);
          failures++;
        }
        results[n++] = r;
        print_row(&r, &MECHS[m], find(results, n, "voxshm", mode, pl.payload));
      }
    }
  }
  if (o.n_receivers > 0) {
    failures += run_fanout(&o, results, &n, MAX_CASES);
  }
  double elapsed = (double)(bench_now_ns() - t_start) / 1e9;
  double other_run = other_pct(run0, cpu_now());

  bool any_vx = false;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(results[i].mechanism, "voxshm") != 0) {
      continue;
    }
    if (!any_vx) {
      printf("\nvoxshm while measuring: regions the sender created / retired (0 / 0: every "
             "region reused), and minor page faults in each process\n");
      any_vx = true;
    }
    const case_result *r = &results[i];
    char sz[32];
    bench_size_label(r->payload, sz, sizeof sz);
    printf("  %-9s %8s: regions %lld / %lld; faults: sender %llu, receiver %llu in %llu "
           "messages\n",
           MODE_NAMES[r->mode], sz, (long long)r->regions_created, (long long)r->regions_retired,
           (unsigned long long)r->faults_tx_total, (unsigned long long)r->faults_rx_total,
           (unsigned long long)r->messages);
  }
  bool any_work = false;
  for (size_t i = 0; i < n; i++) {
    const case_result *r = &results[i];
    if (r->mode != MODE_FULL || (r->write_us <= 0 && r->read_us <= 0)) {
      continue;
    }
    if (!any_work) {
      printf("\nfull mode, two processes: mean time per payload in the shared payload code "
             "(producer: fill; consumer: checksum)\n");
      any_work = true;
    }
    char sz[32];
    bench_size_label(r->payload, sz, sizeof sz);
    printf("  %8s  %-18s  write %10.3f us  read %10.3f us\n", sz, label_of(r->mechanism),
           r->write_us, r->read_us);
  }
  print_bar(results, n);
  printf("\n%zu cases in %.1f s; other processes used %.1f%% of a CPU meanwhile%s\n", n, elapsed,
         other_run, failures ? "; some cases FAILED (see stderr)" : "");
  if (o.csv != NULL) {
    write_csv(o.csv, results, n);
  }
  return failures ? 1 : 0;
}
