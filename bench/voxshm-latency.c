/*
 * voxshm-latency: round-trip time, small-payload streaming rate, and what
 * each payload costs each process in system calls, context switches and
 * CPU time, for voxshm (ring path), voxshm over its socket (the baseline),
 * and floors that do not use voxshm.
 *
 *   voxshm-latency [--quick] [--csv FILE] [--sizes LIST] [--no-default-sizes]
 *                  [--mechanisms LIST] [--shapes LIST] [--variants LIST]
 *                  [--iterations N] [--warmup N] [--seconds S] [--spin-us N]
 *                  [--cpus A,B | --no-pin] [--iceoryx2 PATH]
 *
 * See docs/benchmarks.md ("Latency and system calls") for what is measured.
 */
#define _GNU_SOURCE
#include "latency.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "voxshm.h"

/* voxshm first: the ratios compare it with every other one. */
static const lat_mech *const MECHS[] = {
    &LAT_MECH_VOXSHM,   &LAT_MECH_VOXSHM_DUPLEX, &LAT_MECH_VOXSHM_SOCKET,
    &LAT_MECH_SHM_PINGPONG, &LAT_MECH_SHM_RING, &LAT_MECH_UNIX_SOCKET,
};
#define N_MECHS (sizeof MECHS / sizeof MECHS[0])

#define MAX_SIZES 16
static const uint64_t DEFAULT_RT_SIZES[] = {64, 4 * KiB};
static const uint64_t DEFAULT_STREAM_SIZES[] = {4 * KiB, 64 * KiB};

typedef struct size_list {
  uint64_t v[MAX_SIZES];
  size_t n;
} size_list;

typedef struct options {
  bool quick;
  bool pin;
  int cpu_a, cpu_b;
  const char *csv;
  bool default_sizes;
  size_list extra_sizes;
  bool mech_on[N_MECHS];
  bool shape_on[N_SHAPES];
  bool variant_on[N_VARIANTS];
  uint64_t iterations; /* 0: the default */
  uint64_t warmup;
  double seconds;
  uint32_t spin_us;
  const char *iceoryx2; /* the comparison program, run once per case */
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: voxshm-latency [--quick] [--csv FILE] [--sizes LIST] [--no-default-sizes]\n"
          "                      [--mechanisms LIST] [--shapes LIST] [--variants LIST]\n"
          "                      [--iterations N] [--warmup N] [--seconds S] [--spin-us N]\n"
          "                      [--cpus A,B | --no-pin] [--iceoryx2 PATH]\n"
          "\n"
          "  --quick             every case short (a smoke test: a few seconds in all)\n"
          "  --csv FILE          also write one CSV row per case to FILE\n"
          "  --sizes LIST        payload sizes added to the defaults (round trip 64,4K;\n"
          "                      stream 4K,64K), e.g. 1K,1M; at least 64, a multiple of 8\n"
          "  --no-default-sizes  only the --sizes sizes\n"
          "  --mechanisms LIST   any of voxshm,voxshm-duplex,voxshm-socket,shm-pingpong,shm-ring,\n"
          "                      unix-socket\n"
          "  --shapes LIST       any of roundtrip,stream-header,stream-full\n"
          "  --variants LIST     any of busy,block,block-spin0\n"
          "  --iterations N      most measured round trips per case (default 100000;\n"
          "                      --quick 2000)\n"
          "  --warmup N          payloads before measuring (default 2000; --quick 200)\n"
          "  --seconds S         longest measuring window per case (default 1; --quick 0.03)\n"
          "  --spin-us N         spin of the block variant, in microseconds (default %d,\n"
          "                      voxshm's); block-spin0 spins 0\n"
          "  --cpus A,B          pin process A (the parent) to CPU A and B to CPU B\n"
          "                      (default 0,1 when there are two CPUs or more)\n"
          "  --no-pin            let the scheduler place the processes\n"
          "  --iceoryx2 PATH     also run PATH (bench/iceoryx2's program) on every case, in\n"
          "                      the same table and ratios (./scripts/bench.sh --latency\n"
          "                      --iceoryx2 builds it and passes it)\n",
          DEFAULT_SPIN_US);
}

/* Sets on[i] for the item named names[i]; false for an unknown name. */
static bool pick(const char *item, const char *const *names, size_t n, bool *on) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(item, names[i]) == 0) {
      on[i] = true;
      return true;
    }
  }
  return false;
}

static int parse_list(char *list, const char *what, options *o, bool *on, const char *const *names,
                      size_t n) {
  for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok != NULL;
       tok = strtok_r(NULL, ",", &save)) {
    bool ok;
    if (names == NULL) {
      ok = o->extra_sizes.n < MAX_SIZES &&
           bench_parse_size(tok, BENCH_HEADER_LEN, &o->extra_sizes.v[o->extra_sizes.n++]);
    } else {
      ok = pick(tok, names, n, on);
    }
    if (!ok) {
      fprintf(stderr, "voxshm-latency: bad %s '%s'\n", what, tok);
      return -1;
    }
  }
  return 0;
}

static bool any(const bool *on, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (on[i]) {
      return true;
    }
  }
  return false;
}

static void all_if_none(bool *on, size_t n) {
  if (!any(on, n)) {
    for (size_t i = 0; i < n; i++) {
      on[i] = true;
    }
  }
}

static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  o->cpu_a = 0;
  o->cpu_b = 1;
  o->default_sizes = true;
  o->spin_us = DEFAULT_SPIN_US;
  const char *mech_names[N_MECHS];
  for (size_t i = 0; i < N_MECHS; i++) {
    mech_names[i] = MECHS[i]->name;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    int rc = 0;
    if (strcmp(a, "--quick") == 0) {
      o->quick = true;
    } else if (strcmp(a, "--no-pin") == 0) {
      o->pin = false;
    } else if (strcmp(a, "--no-default-sizes") == 0) {
      o->default_sizes = false;
    } else if (strcmp(a, "--cpus") == 0 && has_value) {
      rc = bench_parse_cpus(argv[++i], &o->cpu_a, &o->cpu_b) ? 0 : -1;
      o->pin = true;
    } else if (strcmp(a, "--csv") == 0 && has_value) {
      o->csv = argv[++i];
    } else if (strcmp(a, "--sizes") == 0 && has_value) {
      rc = parse_list(argv[++i], "size", o, NULL, NULL, 0);
    } else if (strcmp(a, "--mechanisms") == 0 && has_value) {
      rc = parse_list(argv[++i], "mechanism", o, o->mech_on, mech_names, N_MECHS);
    } else if (strcmp(a, "--shapes") == 0 && has_value) {
      rc = parse_list(argv[++i], "shape", o, o->shape_on, LAT_SHAPE_NAMES, N_SHAPES);
    } else if (strcmp(a, "--variants") == 0 && has_value) {
      rc = parse_list(argv[++i], "variant", o, o->variant_on, LAT_VARIANT_NAMES, N_VARIANTS);
    } else if (strcmp(a, "--iterations") == 0 && has_value) {
      o->iterations = strtoull(argv[++i], NULL, 10);
      rc = o->iterations >= 1 ? 0 : -1;
    } else if (strcmp(a, "--warmup") == 0 && has_value) {
      o->warmup = strtoull(argv[++i], NULL, 10);
      rc = o->warmup >= 1 ? 0 : -1;
    } else if (strcmp(a, "--seconds") == 0 && has_value) {
      o->seconds = strtod(argv[++i], NULL);
      rc = o->seconds > 0 && o->seconds < 3600 ? 0 : -1;
    } else if (strcmp(a, "--spin-us") == 0 && has_value) {
      o->spin_us = (uint32_t)strtoul(argv[++i], NULL, 10);
    } else if (strcmp(a, "--iceoryx2") == 0 && has_value) {
      o->iceoryx2 = argv[++i];
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    } else {
      fprintf(stderr, "voxshm-latency: bad argument '%s'\n", a);
      usage(stderr);
      return -1;
    }
    if (rc != 0) {
      fprintf(stderr, "voxshm-latency: bad value for %s\n", a);
      return -1;
    }
  }
  all_if_none(o->mech_on, N_MECHS);
  all_if_none(o->shape_on, N_SHAPES);
  all_if_none(o->variant_on, N_VARIANTS);
  if (o->iterations == 0) {
    o->iterations = o->quick ? 2000 : 100000;
  }
  if (o->warmup == 0) {
    o->warmup = o->quick ? 200 : 2000;
  }
  if (o->seconds == 0) {
    o->seconds = o->quick ? 0.03 : 1.0;
  }
  return 0;
}

/* The sizes of a shape: its defaults (unless turned off) and --sizes,
 * without repeats, in increasing order. */
static size_list sizes_of(const options *o, int shape) {
  size_list l = {{0}, 0};
  const uint64_t *d = shape == SHAPE_ROUNDTRIP ? DEFAULT_RT_SIZES : DEFAULT_STREAM_SIZES;
  size_t nd = o->default_sizes ? 2 : 0;
  for (size_t i = 0; i < nd + o->extra_sizes.n; i++) {
    uint64_t v = i < nd ? d[i] : o->extra_sizes.v[i - nd];
    size_t k = 0;
    while (k < l.n && l.v[k] < v) {
      k++;
    }
    if (k < l.n && l.v[k] == v) {
      continue;
    }
    memmove(&l.v[k + 1], &l.v[k], (l.n - k) * sizeof l.v[0]);
    l.v[k] = v;
    l.n++;
  }
  return l;
}

static lat_case make_case(const options *o, int shape, int variant, uint64_t size) {
  lat_case c;
  memset(&c, 0, sizeof c);
  c.shape = shape;
  c.variant = variant;
  c.size = size;
  c.spin_us = variant == VAR_BLOCK ? o->spin_us : 0;
  c.warm_min = o->warmup;
  c.warm_ns = o->quick ? 10000000ull : 200000000ull;
  c.meas_ns = (uint64_t)(o->seconds * 1e9);
  if (shape == SHAPE_ROUNDTRIP) {
    c.meas_min = 10;
    c.meas_max = o->iterations;
  } else {
    /* A stream runs for its time; the warm-up goes twice through what may
     * be in flight (voxshm's defaults: 1024 references, 64 MiB), so every
     * slot and every page has been used before measuring. */
    uint64_t depth = (64 * MiB) / size < 1024 ? (64 * MiB) / size : 1024;
    c.warm_min = c.warm_min > 2 * depth + 16 ? c.warm_min : 2 * depth + 16;
    c.meas_min = 100;
    c.meas_max = UINT64_MAX / 2;
  }
  return c;
}

/* ---- iceoryx2, a program of its own -------------------------------------- */

static const lat_mech MECH_ICEORYX2 = {
    .name = "iceoryx2",
    .kind = KIND_BASELINE,
    .about = "iceoryx2 0.10 publish-subscribe, event service to block (bench/iceoryx2, one "
             "process pair per case, the same shapes and counters)",
};

/* A per-payload figure of the CSV back into a total over `n` payloads. */
static int64_t total_of(const char *field, uint64_t n) {
  if (*field == '\0' || strcmp(field, "n/a") == 0) {
    return -1;
  }
  return (int64_t)(strtod(field, NULL) * (double)n + 0.5);
}

/* Runs the iceoryx2 program on case `c` alone (same sizes, variant, spin,
 * time and CPUs) and reads its CSV row back. 0 on success. */
static int run_iceoryx2(const options *o, const lat_case *c, lat_result *out) {
  char csv[] = "/tmp/voxshm-latency-iceoryx2-XXXXXX";
  int fd = mkstemp(csv);
  if (fd < 0) {
    return bench_fail("mkstemp: %s", strerror(errno));
  }
  close(fd);
  char size[32], iters[32], warm[32], secs[32], spin[32], cpus[32];
  snprintf(size, sizeof size, "%zu", c->size);
  snprintf(iters, sizeof iters, "%llu", (unsigned long long)o->iterations);
  snprintf(warm, sizeof warm, "%llu", (unsigned long long)o->warmup);
  snprintf(secs, sizeof secs, "%g", o->seconds);
  snprintf(spin, sizeof spin, "%u", o->spin_us);
  snprintf(cpus, sizeof cpus, "%d,%d", o->cpu_a, o->cpu_b);
  const char *argv[32];
  int k = 0;
  argv[k++] = o->iceoryx2;
  argv[k++] = "--no-default-sizes";
  argv[k++] = "--sizes";
  argv[k++] = size;
  argv[k++] = "--shapes";
  argv[k++] = LAT_SHAPE_NAMES[c->shape];
  argv[k++] = "--variants";
  argv[k++] = LAT_VARIANT_NAMES[c->variant];
  argv[k++] = "--iterations";
  argv[k++] = iters;
  argv[k++] = "--warmup";
  argv[k++] = warm;
  argv[k++] = "--seconds";
  argv[k++] = secs;
  argv[k++] = "--spin-us";
  argv[k++] = spin;
  argv[k++] = o->pin ? "--cpus" : "--no-pin";
  if (o->pin) {
    argv[k++] = cpus;
  }
  argv[k++] = "--csv";
  argv[k++] = csv;
  argv[k] = NULL;
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    unlink(csv);
    return bench_fail("fork: %s", strerror(errno));
  }
  if (pid == 0) {
    /* Its own table is not wanted here: only the CSV. */
    if (freopen("/dev/null", "w", stdout) == NULL) {
      _exit(127);
    }
    execv(o->iceoryx2, (char *const *)argv);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  char line[1024] = "";
  FILE *f = fopen(csv, "r");
  bool got = f != NULL && fgets(line, sizeof line, f) != NULL && fgets(line, sizeof line, f) != NULL;
  if (f != NULL) {
    fclose(f);
  }
  unlink(csv);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !got) {
    return bench_fail("%s exited with status %d and wrote %s", o->iceoryx2,
                      WIFEXITED(st) ? WEXITSTATUS(st) : -1, got ? "a row" : "no row");
  }
  /* mechanism,shape,variant,size,iterations,median_us,p99_us,payloads_per_s,gb_per_s,
     sys a,sys b,csw a,csw b,cpu a,cpu b,sys_us a,sys_us b,... (empty fields kept) */
  char *fields[24] = {0};
  size_t nf = 0;
  char *p = line;
  line[strcspn(line, "\r\n")] = '\0';
  while (nf < 24) {
    fields[nf++] = p;
    char *comma = strchr(p, ',');
    if (comma == NULL) {
      break;
    }
    *comma = '\0';
    p = comma + 1;
  }
  if (nf < 17) {
    return bench_fail("%s wrote a row of %zu fields", o->iceoryx2, nf);
  }
  memset(out, 0, sizeof *out);
  out->mech = &MECH_ICEORYX2;
  out->c = *c;
  out->payloads = strtoull(fields[4], NULL, 10);
  out->median_us = strtod(fields[5], NULL);
  out->p99_us = strtod(fields[6], NULL);
  out->payloads_per_s = strtod(fields[7], NULL);
  out->gb_per_s = strtod(fields[8], NULL);
  lat_side_counts *sides[2] = {&out->a, &out->b};
  for (int i = 0; i < 2; i++) {
    lat_side_counts *sd = sides[i];
    sd->payloads = out->payloads;
    sd->syscalls = total_of(fields[9 + i], out->payloads);
    sd->ctxsw = total_of(fields[11 + i], out->payloads);
    sd->cpu_ns = (uint64_t)(total_of(fields[13 + i], out->payloads) * 1000);
    sd->sys_ns = (uint64_t)(total_of(fields[15 + i], out->payloads) * 1000);
    sd->handles.ring = -1;
  }
  return 0;
}

/* ---- output ------------------------------------------------------------- */

static double per(int64_t v, uint64_t n) { return n ? (double)v / (double)n : 0; }

/* A count per payload, or "n/a" where it was not counted. */
static void fmt_per(char *buf, size_t len, int64_t v, uint64_t n, const char *na) {
  if (v < 0) {
    snprintf(buf, len, "%s", na);
  } else {
    snprintf(buf, len, "%.3f", per(v, n));
  }
}

static void print_group_header(const lat_case *c) {
  char sz[32];
  bench_size_label(c->size, sz, sizeof sz);
  char spin[48] = "";
  if (c->variant == VAR_BLOCK) {
    snprintf(spin, sizeof spin, " (spin_us %u)", c->spin_us);
  }
  printf("\n%s, %s, %s%s\n", LAT_SHAPE_NAMES[c->shape], sz, LAT_VARIANT_NAMES[c->variant], spin);
  printf("  %-14s %8s %10s %10s %12s %8s %9s %9s %8s %8s %9s %9s\n", "mechanism", "n",
         c->shape == SHAPE_ROUNDTRIP ? "median_us" : "-", c->shape == SHAPE_ROUNDTRIP ? "p99_us" : "-",
         c->shape == SHAPE_ROUNDTRIP ? "rt/s" : "payloads/s", "GB/s", "sys/p A", "sys/p B",
         "csw/p A", "csw/p B", "cpu_us/p A", "cpu_us/p B");
}

static void print_row(const lat_result *r) {
  bool rt = r->c.shape == SHAPE_ROUNDTRIP;
  char med[32] = "-", p99[32] = "-", gb[32] = "-";
  if (rt) {
    snprintf(med, sizeof med, "%.3f", r->median_us);
    snprintf(p99, sizeof p99, "%.3f", r->p99_us);
  } else {
    snprintf(gb, sizeof gb, "%.3f", r->gb_per_s);
  }
  char sa[32], sb[32], ca[32], cb[32];
  fmt_per(sa, sizeof sa, r->a.syscalls, r->a.payloads, "n/a");
  fmt_per(sb, sizeof sb, r->b.syscalls, r->b.payloads, "n/a");
  fmt_per(ca, sizeof ca, r->a.ctxsw, r->a.payloads, "n/a");
  fmt_per(cb, sizeof cb, r->b.ctxsw, r->b.payloads, "n/a");
  printf("  %-14s %8llu %10s %10s %12.0f %8s %9s %9s %8s %8s %9.3f %9.3f\n", r->mech->name,
         (unsigned long long)r->payloads, med, p99, r->payloads_per_s, gb, sa, sb, ca, cb,
         per((int64_t)r->a.cpu_ns, r->a.payloads) / 1e3,
         per((int64_t)r->b.cpu_ns, r->b.payloads) / 1e3);
  fflush(stdout);
}

/* Time per payload: the round-trip median, or the inverse of the rate. */
static double cost(const lat_result *r) {
  if (r->c.shape == SHAPE_ROUNDTRIP) {
    return r->median_us;
  }
  return r->payloads_per_s > 0 ? 1e6 / r->payloads_per_s : 0;
}

/* voxshm against every other mechanism of the same group. */
static void print_ratios(const lat_result *g, size_t n) {
  const lat_result *vx = NULL;
  for (size_t i = 0; i < n; i++) {
    if (g[i].mech->kind == KIND_VOXSHM) {
      vx = &g[i];
    }
  }
  if (vx == NULL || cost(vx) <= 0) {
    return;
  }
  printf("  ratios:");
  for (size_t i = 0; i < n; i++) {
    if (&g[i] != vx && cost(&g[i]) > 0) {
      printf("  %s/%s %.2fx", vx->mech->name, g[i].mech->name, cost(vx) / cost(&g[i]));
    }
  }
  printf("\n");
}

static void csv_per(FILE *f, int64_t v, uint64_t n) {
  if (v < 0) {
    fprintf(f, ",n/a");
  } else {
    fprintf(f, ",%.4f", per(v, n));
  }
}

static int write_csv(const char *path, const lat_result *rs, size_t n) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    perror(path);
    return -1;
  }
  fprintf(f,
          "mechanism,shape,variant,size,iterations,median_us,p99_us,payloads_per_s,gb_per_s,"
          "syscalls_per_payload_a,syscalls_per_payload_b,ctxsw_per_payload_a,ctxsw_per_payload_b,"
          "cpu_us_per_payload_a,cpu_us_per_payload_b,sys_us_per_payload_a,sys_us_per_payload_b,"
          "wakeups_per_payload_a,wakeups_per_payload_b,spin_us\n");
  for (size_t i = 0; i < n; i++) {
    const lat_result *r = &rs[i];
    bool rt = r->c.shape == SHAPE_ROUNDTRIP;
    fprintf(f, "%s,%s,%s,%zu,%llu", r->mech->name, LAT_SHAPE_NAMES[r->c.shape],
            LAT_VARIANT_NAMES[r->c.variant], r->c.size, (unsigned long long)r->payloads);
    if (rt) {
      fprintf(f, ",%.3f,%.3f,%.1f,", r->median_us, r->p99_us, r->payloads_per_s);
    } else {
      fprintf(f, ",,,%.1f,%.4f", r->payloads_per_s, r->gb_per_s);
    }
    csv_per(f, r->a.syscalls, r->a.payloads);
    csv_per(f, r->b.syscalls, r->b.payloads);
    csv_per(f, r->a.ctxsw, r->a.payloads);
    csv_per(f, r->b.ctxsw, r->b.payloads);
    fprintf(f, ",%.4f,%.4f,%.4f,%.4f", per((int64_t)r->a.cpu_ns, r->a.payloads) / 1e3,
            per((int64_t)r->b.cpu_ns, r->b.payloads) / 1e3,
            per((int64_t)r->a.sys_ns, r->a.payloads) / 1e3,
            per((int64_t)r->b.sys_ns, r->b.payloads) / 1e3);
    if (r->a.handles.ring >= 0) {
      fprintf(f, ",%.4f,%.4f", per((int64_t)r->a.handles.wakeups, r->a.payloads),
              per((int64_t)r->b.handles.wakeups, r->b.payloads));
    } else {
      fprintf(f, ",,");
    }
    fprintf(f, ",%u\n", r->c.spin_us);
  }
  if (fclose(f) != 0) {
    perror(path);
    return -1;
  }
  return 0;
}

/* What the voxshm handles said: the ring path where it was asked for and
 * nowhere else, and the wake-ups the blocking variants cost. */
static int print_voxshm_summary(const lat_result *rs, size_t n) {
  int wrong = 0;
  bool any = false;
  for (size_t i = 0; i < n; i++) {
    const lat_result *r = &rs[i];
    if (r->a.handles.ring < 0) {
      continue;
    }
    if (!any) {
      printf("\nvoxshm handles (ring: 1 = references and releases through the ring segment; "
             "wake-ups sent per payload, A / B; minor faults per payload, A / B)\n");
      any = true;
    }
    int want = r->mech->kind == KIND_VOXSHM || r->mech->kind == KIND_VOXSHM_DUPLEX;
    bool bad = r->a.handles.ring != want || r->b.handles.ring != want;
    wrong += bad;
    char sz[32];
    bench_size_label(r->c.size, sz, sizeof sz);
    printf("  %-14s %-13s %8s %-11s ring %d/%d  wake-ups %.3f / %.3f  faults %.3f / %.3f%s\n",
           r->mech->name, LAT_SHAPE_NAMES[r->c.shape], sz, LAT_VARIANT_NAMES[r->c.variant],
           r->a.handles.ring, r->b.handles.ring, per((int64_t)r->a.handles.wakeups, r->a.payloads),
           per((int64_t)r->b.handles.wakeups, r->b.payloads),
           per((int64_t)r->a.minor_faults, r->a.payloads),
           per((int64_t)r->b.minor_faults, r->b.payloads),
           bad ? (want ? "  <- NOT on the ring path" : "  <- on the ring path") : "");
  }
  return wrong;
}

int main(int argc, char **argv) {
  options o;
  if (parse_args(argc, argv, &o) != 0) {
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (bench_check_abi("voxshm-latency") != 0) {
    return 1;
  }
  if (o.pin && bench_pin(o.cpu_a) != 0) {
    perror("voxshm-latency: sched_setaffinity (try --no-pin or --cpus)");
    return 1;
  }
  lat_counter_setup counters;
  lat_counters_probe(&counters);

  printf("voxshm-latency, libvoxshm %s\n", voxshm_version());
  bench_machine_description(stdout);
  char placement[64] = "processes not pinned";
  if (o.pin) {
    snprintf(placement, sizeof placement, "A on CPU %d, B on CPU %d", o.cpu_a, o.cpu_b);
  }
  printf("run: %s; round trip: %llu iterations at most, after %llu warm-up; every case measures "
         "for %.3f s at most; %s\n",
         o.quick ? "quick" : "full", (unsigned long long)o.iterations,
         (unsigned long long)o.warmup, o.seconds, placement);
  printf("system calls: %s\ncontext switches: %s\nCPU time: CLOCK_PROCESS_CPUTIME_ID (user + "
         "kernel), kernel part from getrusage\n",
         counters.syscalls_note, counters.ctxsw_note);
  printf("each process counts on itself over its measuring window; per payload = per round trip "
         "(each side sends one payload and receives one) or per streamed payload\n");
  for (size_t m = 0; m < N_MECHS; m++) {
    if (o.mech_on[m]) {
      printf("  %-14s %s\n", MECHS[m]->name, MECHS[m]->about);
    }
  }
  printf("ratios: time per payload of voxshm over that of the other mechanism (round trip: "
         "median; stream: 1 / rate); below 1x voxshm is faster\n");

  size_t total = 0, variants = 0;
  for (int v = 0; v < N_VARIANTS; v++) {
    variants += o.variant_on[v];
  }
  for (int s = 0; s < N_SHAPES; s++) {
    size_list sizes = sizes_of(&o, s);
    for (size_t m = 0; m < N_MECHS; m++) {
      bool has = MECHS[m]->has_shape == NULL || MECHS[m]->has_shape(s);
      total += (o.shape_on[s] && o.mech_on[m] && has) * sizes.n * variants;
    }
  }
  if (o.iceoryx2 != NULL) {
    /* One more row per group. */
    size_t groups = 0;
    for (int sh = 0; sh < N_SHAPES; sh++) {
      groups += o.shape_on[sh] * sizes_of(&o, sh).n * variants;
    }
    total += groups;
    printf("  %-14s %s\n", MECH_ICEORYX2.name, MECH_ICEORYX2.about);
  }
  lat_result *results = calloc(total ? total : 1, sizeof *results);
  if (results == NULL) {
    perror("calloc");
    return 1;
  }
  size_t n = 0, started = 0;
  int failures = 0;
  uint64_t t_start = bench_now_ns();
  for (int s = 0; s < N_SHAPES; s++) {
    if (!o.shape_on[s]) {
      continue;
    }
    size_list sizes = sizes_of(&o, s);
    for (size_t z = 0; z < sizes.n; z++) {
      for (int v = 0; v < N_VARIANTS; v++) {
        if (!o.variant_on[v]) {
          continue;
        }
        lat_case c = make_case(&o, s, v, sizes.v[z]);
        print_group_header(&c);
        size_t first = n;
        for (size_t m = 0; m < N_MECHS; m++) {
          const lat_mech *mech = MECHS[m];
          if (!o.mech_on[m] || (mech->has_shape != NULL && !mech->has_shape(s))) {
            continue;
          }
          bench_clear_error();
          fprintf(stderr, "[%zu/%zu] %s %s %zu %s ...", ++started, total, mech->name,
                  LAT_SHAPE_NAMES[s], c.size, LAT_VARIANT_NAMES[v]);
          uint64_t t0 = bench_now_ns();
          int rc = lat_run_case(mech, &c, &counters, o.pin ? o.cpu_b : -1, &results[n]);
          fprintf(stderr, " %.2f s\n", (double)(bench_now_ns() - t0) / 1e9);
          if (rc != 0) {
            printf("  %-14s FAILED: %s\n", mech->name, bench_error());
            fprintf(stderr, "voxshm-latency: %s %s %zu %s: %s\n", mech->name,
                    LAT_SHAPE_NAMES[s], c.size, LAT_VARIANT_NAMES[v], bench_error());
            failures++;
            continue;
          }
          if (results[n].bad != 0) {
            fprintf(stderr, "voxshm-latency: %s: %llu payloads failed their check\n", mech->name,
                    (unsigned long long)results[n].bad);
            failures++;
          }
          print_row(&results[n]);
          n++;
        }
        if (o.iceoryx2 != NULL) {
          bench_clear_error();
          fprintf(stderr, "[iceoryx2] %s %zu %s ...", LAT_SHAPE_NAMES[s], c.size,
                  LAT_VARIANT_NAMES[v]);
          if (run_iceoryx2(&o, &c, &results[n]) != 0) {
            fprintf(stderr, " FAILED\n");
            printf("  %-14s FAILED: %s\n", MECH_ICEORYX2.name, bench_error());
            failures++;
          } else {
            fprintf(stderr, " done\n");
            print_row(&results[n]);
            n++;
          }
        }
        print_ratios(&results[first], n - first);
      }
    }
  }
  failures += print_voxshm_summary(results, n);
  printf("\n%zu cases in %.1f s%s\n", n, (double)(bench_now_ns() - t_start) / 1e9,
         failures ? "; some FAILED (see above)" : "");
  if (o.csv != NULL && write_csv(o.csv, results, n) != 0) {
    failures++;
  }
  free(results);
  return failures ? 1 : 0;
}
