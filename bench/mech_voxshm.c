/*
 * voxshm: alloc -> write -> send -> recv -> read -> release, with the
 * references travelling over the library's own channel.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "voxshm.h"

/* Generous: a healthy run never waits this long. */
#define VX_TIMEOUT_MS 30000

int bench_check_abi(const char *program) {
  if (voxshm_abi_version() == VOXSHM_ABI_VERSION) {
    return 0;
  }
  fprintf(stderr, "%s: library ABI %u, header ABI %u\n", program, voxshm_abi_version(),
          VOXSHM_ABI_VERSION);
  return -1;
}

int bench_vx_fail(const char *what, int status) {
  return bench_fail("%s: %s: %s", what, voxshm_status_name(status), voxshm_last_error());
}

const uint8_t *bench_vx_received(int status, const voxshm_view *v, size_t len) {
  if (status != VOXSHM_OK) {
    bench_vx_fail("voxshm_attachments_recv", status);
    return NULL;
  }
  if (v->len != len) {
    bench_fail("voxshm_attachments_recv: %zu bytes, expected %zu", v->len, len);
    return NULL;
  }
  return v->data;
}

int bench_vx_release(const voxshm_attachments *att, const voxshm_view *v) {
  voxshm_status s = voxshm_attachments_release(att, v);
  return s == VOXSHM_OK ? 0 : bench_vx_fail("voxshm_attachments_release", s);
}

/* ---- producer ----------------------------------------------------------- */

typedef struct vx_tx {
  int fd, other_fd;
  voxshm_registry *reg;
  voxshm_allocation a;
  voxshm_registry_stats at_start;
} vx_tx;

static uint8_t *vx_acquire(void *p, size_t len) {
  vx_tx *t = p;
  voxshm_status s = voxshm_registry_alloc(t->reg, len, VX_TIMEOUT_MS, &t->a);
  if (s != VOXSHM_OK) {
    bench_vx_fail("voxshm_registry_alloc", s);
    return NULL;
  }
  return t->a.data;
}

static int vx_submit(void *p, size_t len) {
  vx_tx *t = p;
  voxshm_status s = voxshm_registry_send(t->reg, &t->a, len);
  return s == VOXSHM_OK ? 0 : bench_vx_fail("voxshm_registry_send", s);
}

static void vx_measure_start(void *p) {
  vx_tx *t = p;
  t->at_start.struct_size = sizeof t->at_start;
  voxshm_registry_get_stats(t->reg, &t->at_start);
}

/* The first lap: takes every payload slot the budget holds at once, then
 * sends them all as warm-up messages, so both processes have touched the
 * whole region before anything is measured (later laps may then reach
 * any slot without a first-touch page fault). */
static int64_t vx_prime(void *p, const bench_plan *pl) {
  vx_tx *t = p;
  size_t cap = pl->inflight / pl->payload + 1;
  voxshm_allocation *as = calloc(cap, sizeof *as);
  if (as == NULL) {
    return bench_fail("calloc");
  }
  size_t k = 0;
  for (; k < cap; k++) {
    voxshm_status s = voxshm_registry_alloc(t->reg, pl->payload, 0, &as[k]);
    if (s == VOXSHM_NO_SPACE) {
      break;
    }
    if (s != VOXSHM_OK) {
      free(as);
      return bench_vx_fail("voxshm_registry_alloc (first lap)", s);
    }
  }
  for (size_t i = 0; i < k; i++) {
    bench_produce(pl, as[i].data, i, 0);
    voxshm_status s = voxshm_registry_send(t->reg, &as[i], pl->payload);
    if (s != VOXSHM_OK) {
      free(as);
      return bench_vx_fail("voxshm_registry_send (first lap)", s);
    }
  }
  free(as);
  return (int64_t)k;
}

/* Region geometry for a plan: one region of `inflight` bytes holds every
 * payload that may be in flight, the budget is exactly that region, and
 * keep_warm keeps it, so after the first lap nothing is created, retired
 * or faulted in again. */
void bench_voxshm_options(const bench_plan *pl, voxshm_registry_options *o) {
  voxshm_registry_options_init(o);
  o->region_size = pl->inflight;
  o->budget = pl->inflight;
  o->keep_warm = pl->inflight;
  o->max_in_flight_bytes = pl->inflight;
  o->send_timeout_ms = VX_TIMEOUT_MS;
}

static int vx_producer(const bench_plan *pl, void *ctx, void *out) {
  vx_tx *t = ctx;
  close(t->other_fd);
  voxshm_registry_options o;
  bench_voxshm_options(pl, &o);
  voxshm_status s = voxshm_registry_new(t->fd, &o, &t->reg);
  if (s != VOXSHM_OK) {
    close(t->fd);
    return bench_vx_fail("voxshm_registry_new", s);
  }
  static const tx_ops ops = {vx_acquire, vx_submit, vx_measure_start, vx_prime};
  int rc = bench_producer_loop(pl, &ops, t, out);
  /* Counted up to the last send: once the consumer hangs up, the registry
   * retires everything, which is not part of the steady state. */
  voxshm_registry_stats end;
  end.struct_size = sizeof end;
  voxshm_registry_get_stats(t->reg, &end);
  t->at_start.regions_created = end.regions_created - t->at_start.regions_created;
  t->at_start.regions_retired = end.regions_retired - t->at_start.regions_retired;
  if (rc == 0) {
    s = voxshm_registry_wait_idle(t->reg, VX_TIMEOUT_MS);
    if (s != VOXSHM_OK) {
      rc = bench_vx_fail("voxshm_registry_wait_idle", s);
    }
  }
  voxshm_registry_free(t->reg);
  return rc;
}

/* ---- consumer ----------------------------------------------------------- */

typedef struct vx_rx {
  int fd, other_fd;
  voxshm_attachments *att;
  voxshm_view v;
} vx_rx;

static const uint8_t *vx_receive(void *p, size_t len) {
  vx_rx *r = p;
  voxshm_status s = voxshm_attachments_recv(r->att, VX_TIMEOUT_MS, &r->v);
  return bench_vx_received(s, &r->v, len);
}

static int vx_done(void *p) {
  vx_rx *r = p;
  return bench_vx_release(r->att, &r->v);
}

int bench_vx_consume(const bench_plan *pl, int fd, consumer_report *out) {
  vx_rx r;
  memset(&r, 0, sizeof r);
  voxshm_attachments_options o;
  voxshm_attachments_options_init(&o);
  o.send_timeout_ms = VX_TIMEOUT_MS;
  voxshm_status s = voxshm_attachments_new(fd, &o, &r.att);
  if (s != VOXSHM_OK) {
    close(fd);
    return bench_vx_fail("voxshm_attachments_new", s);
  }
  static const rx_ops ops = {vx_receive, vx_done};
  int rc = bench_consumer_loop(pl, &ops, &r, out);
  voxshm_attachments_free(r.att);
  return rc;
}

static int vx_consumer(const bench_plan *pl, void *ctx, void *out) {
  vx_rx *r = ctx;
  close(r->other_fd);
  return bench_vx_consume(pl, r->fd, out);
}

int mech_voxshm(const bench_plan *pl, case_result *res) {
  int fds[2];
  voxshm_status s = voxshm_channel_pair(fds);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_channel_pair", s);
  }
  vx_tx t;
  vx_rx r;
  memset(&t, 0, sizeof t);
  memset(&r, 0, sizeof r);
  t.fd = fds[0];
  t.other_fd = fds[1];
  r.fd = fds[1];
  r.other_fd = fds[0];
  producer_report prep;
  consumer_report crep;
  int rc = bench_two_process(pl, vx_producer, &t, vx_consumer, &r, &prep, &crep);
  if (rc != 0) {
    return rc;
  }
  bench_fill_result(pl, &prep, &crep, res);
  res->regions_created = (int64_t)t.at_start.regions_created;
  res->regions_retired = (int64_t)t.at_start.regions_retired;
  return 0;
}
