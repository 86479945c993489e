/*
 * voxshm-latency: voxshm itself, with the ring path (the defaults) and with
 * every reference and release on the socket (the NO_RING flags on both
 * sides: what a 0.1 pair of peers does), as a baseline in the same run.
 *
 * One channel pair per direction: A's registry sends to B's attachments,
 * and in a round trip B's registry answers A's attachments. The duplex
 * variant (round trip only: request/response) uses one channel on which
 * each side has both handles (voxshm_duplex_new).
 */
#define _GNU_SOURCE
#include "latency.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "voxshm.h"

typedef struct vx_shared {
  bool no_ring;
  bool duplex; /* one channel, ab, with both handles on each side */
  int ab[2];   /* A -> B: [0] A's registry, [1] B's attachments */
  int ba[2];   /* B -> A (round trip only): [0] B's registry, [1] A's attachments */
} vx_shared;

typedef struct vx_tx {
  const lat_case *c;
  voxshm_registry *reg;
  voxshm_allocation a;
  size_t len;
} vx_tx;

typedef struct vx_rx {
  const lat_case *c;
  voxshm_attachments *att;
  voxshm_view v;
} vx_rx;

typedef struct vx_own {
  vx_tx tx;
  vx_rx rx;
  bool duplex; /* both handles share one channel and its counters */
} vx_own;

/* The busy-poll variant calls with timeout 0 until the call stops saying
 * "not yet" (`again`); the blocking ones call once with a long timeout and
 * let voxshm spin (spin_us) and sleep. */
typedef voxshm_status (*vx_call)(void *st, int64_t timeout_ms);

static voxshm_status vx_wait(const lat_case *c, vx_call f, void *st, voxshm_status again,
                             const char *what) {
  if (!lat_busy(c)) {
    return f(st, LAT_TIMEOUT_MS);
  }
  lat_patience p;
  lat_patience_start(&p);
  voxshm_status s;
  while ((s = f(st, 0)) == again && lat_patience_ok(&p, what)) {
    lat_cpu_relax();
  }
  return s;
}

static voxshm_status call_alloc(void *st, int64_t timeout_ms) {
  vx_tx *t = st;
  return voxshm_registry_alloc(t->reg, t->len, timeout_ms, &t->a);
}

static voxshm_status call_send(void *st, int64_t timeout_ms) {
  vx_tx *t = st;
  return voxshm_registry_send_timeout(t->reg, &t->a, t->len, timeout_ms);
}

static voxshm_status call_recv(void *st, int64_t timeout_ms) {
  vx_rx *r = st;
  return voxshm_attachments_recv(r->att, timeout_ms, &r->v);
}

static uint8_t *vx_acquire(void *st, size_t len) {
  vx_tx *t = st;
  t->len = len;
  voxshm_status s = vx_wait(t->c, call_alloc, t, VOXSHM_NO_SPACE, "voxshm_registry_alloc");
  if (s != VOXSHM_OK) {
    bench_vx_fail("voxshm_registry_alloc", s);
    return NULL;
  }
  return t->a.data;
}

static int vx_submit(void *st, size_t len) {
  vx_tx *t = st;
  t->len = len;
  voxshm_status s = vx_wait(t->c, call_send, t, VOXSHM_TIMEOUT, "voxshm_registry_send_timeout");
  return s == VOXSHM_OK ? 0 : bench_vx_fail("voxshm_registry_send_timeout", s);
}

static const uint8_t *vx_receive(void *st, size_t len) {
  vx_rx *r = st;
  voxshm_status s = vx_wait(r->c, call_recv, r, VOXSHM_TIMEOUT, "voxshm_attachments_recv");
  return bench_vx_received(s, &r->v, len);
}

static int vx_done(void *st) {
  vx_rx *r = st;
  return bench_vx_release(r->att, &r->v);
}

static const tx_ops VX_TX = {vx_acquire, vx_submit, NULL, NULL};
static const rx_ops VX_RX = {vx_receive, vx_done};

static int vx_prepare(const lat_case *c, void **out, bool no_ring, bool duplex) {
  vx_shared *sh = calloc(1, sizeof *sh);
  if (sh == NULL) {
    return bench_fail("calloc");
  }
  sh->no_ring = no_ring;
  sh->duplex = duplex;
  sh->ab[0] = sh->ab[1] = sh->ba[0] = sh->ba[1] = -1;
  voxshm_status s = voxshm_channel_pair(sh->ab);
  if (s == VOXSHM_OK && !lat_is_stream(c) && !sh->duplex) {
    s = voxshm_channel_pair(sh->ba);
  }
  *out = sh;
  return s == VOXSHM_OK ? 0 : bench_vx_fail("voxshm_channel_pair", s);
}

static int vx_prepare_ring(const lat_case *c, void **out) {
  return vx_prepare(c, out, false, false);
}
static int vx_prepare_duplex(const lat_case *c, void **out) {
  return vx_prepare(c, out, false, true);
}
static bool vx_duplex_shape(int shape) { return shape == SHAPE_ROUNDTRIP; }
static int vx_prepare_socket(const lat_case *c, void **out) {
  return vx_prepare(c, out, true, false);
}

static void close_fd(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

/* The spin the case asks for: voxshm's own default in the busy-poll
 * variant, where every call has timeout 0 and nothing spins inside. */
static uint32_t vx_spin_us(const lat_case *c) {
  return c->variant == VAR_BUSY ? DEFAULT_SPIN_US : c->spin_us;
}

static int vx_new_registry(vx_shared *sh, const lat_case *c, int *fd, voxshm_registry **out) {
  voxshm_registry_options o;
  voxshm_status s = voxshm_registry_options_init(&o);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_registry_options_init", s);
  }
  o.spin_us = vx_spin_us(c);
  o.flags |= sh->no_ring ? VOXSHM_REGISTRY_NO_RING : 0;
  s = voxshm_registry_new(*fd, &o, out);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_registry_new", s);
  }
  *fd = -1; /* the registry's now */
  return 0;
}

static int vx_new_attachments(vx_shared *sh, const lat_case *c, int *fd,
                              voxshm_attachments **out) {
  voxshm_attachments_options o;
  voxshm_status s = voxshm_attachments_options_init(&o);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_attachments_options_init", s);
  }
  o.spin_us = vx_spin_us(c);
  o.flags |= sh->no_ring ? VOXSHM_ATTACHMENTS_NO_RING : 0;
  s = voxshm_attachments_new(*fd, &o, out);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_attachments_new", s);
  }
  *fd = -1;
  return 0;
}

/* Both handles of one duplex channel, with the case's spin. */
static int vx_new_duplex(const lat_case *c, int *fd, voxshm_registry **reg,
                         voxshm_attachments **att) {
  voxshm_registry_options ro;
  voxshm_attachments_options ao;
  voxshm_status s = voxshm_registry_options_init(&ro);
  if (s == VOXSHM_OK) {
    s = voxshm_attachments_options_init(&ao);
  }
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_*_options_init", s);
  }
  ro.spin_us = ao.spin_us = vx_spin_us(c);
  s = voxshm_duplex_new(*fd, &ro, &ao, reg, att);
  if (s != VOXSHM_OK) {
    return bench_vx_fail("voxshm_duplex_new", s);
  }
  *fd = -1;
  return 0;
}

static int vx_open(const lat_case *c, void *shared, int side, lat_ends *e) {
  vx_shared *sh = shared;
  /* This process's fds of each pair; the other side's are closed. */
  int *tx_fd = side == SIDE_A ? &sh->ab[0] : &sh->ba[0];
  int *rx_fd = side == SIDE_A ? &sh->ba[1] : &sh->ab[1];
  close_fd(side == SIDE_A ? &sh->ab[1] : &sh->ab[0]);
  close_fd(side == SIDE_A ? &sh->ba[0] : &sh->ba[1]);
  vx_own *own = lat_ends_start(e, sizeof *own);
  if (own == NULL) {
    return -1;
  }
  own->tx.c = own->rx.c = c;
  if (sh->duplex) {
    int *fd = &sh->ab[side == SIDE_A ? 0 : 1];
    close_fd(&sh->ab[side == SIDE_A ? 1 : 0]);
    own->duplex = true;
    if (vx_new_duplex(c, fd, &own->tx.reg, &own->rx.att) != 0) {
      return -1;
    }
    lat_ends_set(e, c, side, &VX_TX, &own->tx, &VX_RX, &own->rx);
    return 0;
  }
  if (lat_sends(c, side) && vx_new_registry(sh, c, tx_fd, &own->tx.reg) != 0) {
    return -1;
  }
  if (lat_receives(c, side) && vx_new_attachments(sh, c, rx_fd, &own->rx.att) != 0) {
    return -1;
  }
  lat_ends_set(e, c, side, &VX_TX, &own->tx, &VX_RX, &own->rx);
  return 0;
}

static int vx_handle_stats(const lat_ends *e, lat_handle_stats *out) {
  const vx_own *own = e->own;
  out->ring = 1;
  out->wakeups = 0;
  if (own->tx.reg != NULL) {
    voxshm_registry_stats st;
    st.struct_size = sizeof st;
    voxshm_status s = voxshm_registry_get_stats(own->tx.reg, &st);
    if (s != VOXSHM_OK) {
      return bench_vx_fail("voxshm_registry_get_stats", s);
    }
    out->ring = out->ring && st.ring == 1;
    out->wakeups += st.wakeups_sent;
  }
  if (own->rx.att != NULL) {
    voxshm_attachments_stats st;
    st.struct_size = sizeof st;
    voxshm_status s = voxshm_attachments_get_stats(own->rx.att, &st);
    if (s != VOXSHM_OK) {
      return bench_vx_fail("voxshm_attachments_get_stats", s);
    }
    out->ring = out->ring && st.ring == 1;
    /* A duplex channel's wake-ups were counted with the registry's. */
    out->wakeups += own->duplex ? 0 : st.wakeups_sent;
  }
  return 0;
}

static void vx_close(lat_ends *e) {
  vx_own *own = e->own;
  if (own != NULL) {
    voxshm_registry_free(own->tx.reg);
    voxshm_attachments_free(own->rx.att);
    free(own);
  }
  memset(e, 0, sizeof *e);
}

static void vx_discard(void *shared) {
  vx_shared *sh = shared;
  if (sh == NULL) {
    return;
  }
  /* Fds no handle took: all of them if this process never opened. */
  close_fd(&sh->ab[0]);
  close_fd(&sh->ab[1]);
  close_fd(&sh->ba[0]);
  close_fd(&sh->ba[1]);
  free(sh);
}

const lat_mech LAT_MECH_VOXSHM = {
    "voxshm",        KIND_VOXSHM, "voxshm with the ring path (default options)",
    NULL,            vx_prepare_ring, vx_open, vx_handle_stats, vx_close, vx_discard,
};

const lat_mech LAT_MECH_VOXSHM_DUPLEX = {
    "voxshm-duplex", KIND_VOXSHM_DUPLEX,
    "voxshm request/response on one duplex channel (voxshm_duplex_new), the ring path both ways",
    vx_duplex_shape, vx_prepare_duplex, vx_open, vx_handle_stats, vx_close, vx_discard,
};

const lat_mech LAT_MECH_VOXSHM_SOCKET = {
    "voxshm-socket", KIND_BASELINE, "voxshm with VOXSHM_*_NO_RING: references and releases on the socket",
    NULL,            vx_prepare_socket, vx_open, vx_handle_stats, vx_close, vx_discard,
};
