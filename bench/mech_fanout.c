/*
 * voxshm fan-out: one producer (a voxshm_fanout) and N consumer processes
 * reading the same stream, each a plain voxshm_attachments. Every payload
 * is written once and delivered to all N; each consumer measures its own
 * stream exactly as the one-receiver case does. The producer also times
 * its transport calls (alloc + send) and its CPU, to show what each
 * further receiver costs it.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "voxshm.h"

#define FX_TIMEOUT_MS 30000

typedef struct fx_tx {
  voxshm_fanout *f;
  voxshm_allocation a;
  uint32_t receivers;
  uint64_t calls_ns; /* time in alloc + send, measured payloads */
  bool measuring;
} fx_tx;

static uint8_t *fx_acquire(void *p, size_t len) {
  fx_tx *t = p;
  uint64_t t0 = t->measuring ? bench_now_ns() : 0;
  voxshm_status s = voxshm_fanout_alloc(t->f, len, FX_TIMEOUT_MS, &t->a);
  if (t->measuring) {
    t->calls_ns += bench_now_ns() - t0;
  }
  if (s != VOXSHM_OK) {
    bench_vx_fail("voxshm_fanout_alloc", s);
    return NULL;
  }
  return t->a.data;
}

static int fx_submit(void *p, size_t len) {
  fx_tx *t = p;
  uint32_t got = 0;
  uint64_t t0 = t->measuring ? bench_now_ns() : 0;
  voxshm_status s =
      voxshm_fanout_send(t->f, &t->a, len, VOXSHM_ALL_RECEIVERS, FX_TIMEOUT_MS, &got);
  if (t->measuring) {
    t->calls_ns += bench_now_ns() - t0;
  }
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_fanout_send", s);
  }
  if (got != t->receivers) {
    return bench_fail("voxshm_fanout_send reached %u of %u receivers", got, t->receivers);
  }
  return 0;
}

static void fx_measure_start(void *p) {
  ((fx_tx *)p)->measuring = true;
}

/* A consumer process: the one-receiver consumer over its own channel,
 * reporting through `report_fd`. */
static void fx_consumer(const bench_plan *pl, int fd, int report_fd) {
  consumer_report rep;
  memset(&rep, 0, sizeof rep);
  bench_clear_error();
  int rc = bench_vx_consume(pl, fd, &rep);
  rep.ok = rc == 0;
  if (rc != 0) {
    snprintf(rep.error, sizeof rep.error, "%s", bench_error());
  }
  (void)write_all(report_fd, &rep, sizeof rep);
  _exit(0);
}

static double cpu_s(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

int mech_fanout(const bench_plan *pl, int n, case_result *per, fanout_cost *cost) {
  if (n < 1 || n > FANOUT_MAX) {
    return bench_fail("receivers: %d (1..%d)", n, FANOUT_MAX);
  }
  int chans[FANOUT_MAX][2], reps[FANOUT_MAX][2];
  pid_t pids[FANOUT_MAX];
  for (int i = 0; i < n; i++) {
    voxshm_status s = voxshm_channel_pair(chans[i]);
    if (s != VOXSHM_OK || pipe2(reps[i], O_CLOEXEC) != 0) {
      return bench_fail("channel or pipe for receiver %d", i);
    }
  }
  fflush(NULL);
  /* Every consumer is forked before the producer takes a channel: no
   * consumer keeps another one's sender end open. */
  int forked = 0;
  for (int i = 0; i < n; i++) {
    pids[i] = fork();
    if (pids[i] < 0) {
      /* Closing every channel ends the consumers already started. */
      for (int k = 0; k < n; k++) {
        close(chans[k][0]);
        close(chans[k][1]);
        close(reps[k][0]);
        close(reps[k][1]);
      }
      for (int k = 0; k < forked; k++) {
        while (waitpid(pids[k], NULL, 0) < 0 && errno == EINTR) {
        }
      }
      return bench_fail("fork: %s", strerror(errno));
    }
    forked++;
    if (pids[i] == 0) {
      for (int k = 0; k < n; k++) {
        close(chans[k][0]);
        close(reps[k][0]);
        if (k != i) {
          close(chans[k][1]);
          close(reps[k][1]);
        }
      }
      if (pl->pin) {
        bench_pin(pl->cpu_rx);
      }
      fx_consumer(pl, chans[i][1], reps[i][1]);
    }
  }
  for (int i = 0; i < n; i++) {
    close(chans[i][1]);
    close(reps[i][1]);
  }
  voxshm_registry_options o;
  bench_voxshm_options(pl, &o);
  fx_tx t;
  memset(&t, 0, sizeof t);
  t.receivers = (uint32_t)n;
  int rc = 0;
  voxshm_status s = voxshm_fanout_new(&o, &t.f);
  if (s != VOXSHM_OK) {
    rc = bench_vx_fail("voxshm_fanout_new", s);
  }
  int added = 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    uint32_t id;
    s = voxshm_fanout_add_receiver(t.f, chans[i][0], NULL, &id);
    added += s == VOXSHM_OK;
    if (s == VOXSHM_OK) {
      s = voxshm_fanout_wait_ready(t.f, id, FX_TIMEOUT_MS);
    }
    if (s != VOXSHM_OK) {
      rc = bench_vx_fail("voxshm_fanout_add_receiver", s);
    }
  }
  producer_report prep;
  memset(&prep, 0, sizeof prep);
  if (rc == 0) {
    cpu_set_t saved;
    if (pl->pin) {
      sched_getaffinity(0, sizeof saved, &saved);
      bench_pin(pl->cpu_tx);
    }
    static const tx_ops ops = {fx_acquire, fx_submit, fx_measure_start, NULL};
    double c0 = cpu_s();
    rc = bench_producer_loop(pl, &ops, &t, &prep);
    double c1 = cpu_s();
    if (pl->pin) {
      sched_setaffinity(0, sizeof saved, &saved);
    }
    if (rc == 0) {
      s = voxshm_fanout_wait_idle(t.f, FX_TIMEOUT_MS);
      if (s != VOXSHM_OK) {
        rc = bench_vx_fail("voxshm_fanout_wait_idle", s);
      }
    }
    cost->calls_us = prep.measured ? (double)t.calls_ns / (double)prep.measured / 1e3 : 0;
    cost->cpu_us = prep.sent ? (c1 - c0) * 1e6 / (double)prep.sent : 0;
  }
  /* Closing the channels ends every consumer that is still waiting (those
   * never added are closed here). */
  voxshm_fanout_free(t.f);
  for (int i = added; i < n; i++) {
    close(chans[i][0]);
  }
  for (int i = 0; i < n; i++) {
    consumer_report crep;
    memset(&crep, 0, sizeof crep);
    int rr = read_all(reps[i][0], &crep, sizeof crep);
    close(reps[i][0]);
    int status = 0;
    while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {
    }
    if (rc != 0) {
      continue;
    }
    if (rr != 0 || !WIFEXITED(status)) {
      rc = bench_fail("receiver %d died (status %#x)", i, status);
    } else if (!crep.ok) {
      rc = bench_fail("receiver %d: %s", i, crep.error);
    } else {
      bench_fill_result(pl, &prep, &crep, &per[i]);
    }
  }
  return rc;
}
