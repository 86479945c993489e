/*
 * voxshm-latency: the floors, which do not use voxshm.
 *
 *  - shm-pingpong: a sequence number per direction in a shared anonymous
 *    mapping, next to one payload slot per direction. Round trip only.
 *  - shm-ring: per direction, a bare single-producer single-consumer ring
 *    of 24-byte entries (offset, length, sequence) into a shared buffer of
 *    slots; the consumer's index gives slots back. Its geometry is
 *    voxshm's default: at most 1024 entries and 64 MiB in flight.
 *  - unix-socket: the payload bytes themselves over one SOCK_SEQPACKET
 *    pair, for scale.
 *
 * The shared-memory floors trust their peer (no index or entry is
 * checked beyond what keeps this process's own reads in bounds), and wait
 * like voxshm: busy-poll, or spin for spin_us and then sleep on a futex in
 * the mapping, woken by the side that publishes (lat_wait, lat_wake).
 */
#define _GNU_SOURCE
#include "latency.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define PAGE 4096u
#define RING_MAX_ENTRIES 1024u
#define RING_MAX_IN_FLIGHT (64u << 20)

static size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

/* ---- the shared-memory floors -------------------------------------------- */

/* The control block of one direction, each word on its own cache line. */
typedef struct shm_ctl {
  _Alignas(64) _Atomic uint64_t head; /* payloads published by the producer */
  _Alignas(64) _Atomic uint64_t tail; /* payloads given back by the consumer (ring) */
  _Alignas(64) _Atomic uint32_t consumer_sleeping;
  _Alignas(64) _Atomic uint32_t producer_waiting;
} shm_ctl;

typedef struct ring_entry {
  uint64_t offset; /* of the payload in the slot buffer */
  uint32_t len;
  uint32_t reserved;
  uint64_t seq;
} ring_entry;

_Static_assert(sizeof(ring_entry) == 24, "a ring entry is 24 bytes, as voxshm's");

/* One direction: where its parts lie in the mapping. */
typedef struct shm_dir {
  shm_ctl *ctl;
  ring_entry *entries;
  uint8_t *slots;
  uint64_t cap;     /* entries, and slots */
  size_t slot_size; /* the payload size rounded up to a cache line */
} shm_dir;

typedef struct shm_shared {
  uint8_t *map;
  size_t map_len;
  shm_dir dir[2]; /* A -> B, B -> A */
} shm_shared;

/* Lays out both directions (each: control block and entries in whole
 * pages, then the slots) in one shared mapping, every page touched. */
static int shm_prepare(const lat_case *c, uint64_t cap, void **out) {
  shm_shared *sh = calloc(1, sizeof *sh);
  if (sh == NULL) {
    return bench_fail("calloc");
  }
  *out = sh;
  size_t slot = round_up(c->size, 64);
  size_t head = round_up(sizeof(shm_ctl) + cap * sizeof(ring_entry), PAGE);
  size_t one = head + round_up(cap * slot, PAGE);
  sh->map_len = 2 * one;
  void *m = mmap(NULL, sh->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    return bench_fail("mmap of %zu shared bytes: %s", sh->map_len, strerror(errno));
  }
  sh->map = m;
  memset(sh->map, 0, sh->map_len);
  for (int d = 0; d < 2; d++) {
    uint8_t *base = sh->map + (size_t)d * one;
    sh->dir[d].ctl = (shm_ctl *)base;
    sh->dir[d].entries = (ring_entry *)(base + sizeof(shm_ctl));
    sh->dir[d].slots = base + head;
    sh->dir[d].cap = cap;
    sh->dir[d].slot_size = slot;
  }
  return 0;
}

static void shm_discard(void *shared) {
  shm_shared *sh = shared;
  if (sh != NULL && sh->map != NULL) {
    munmap(sh->map, sh->map_len);
  }
  free(sh);
}

/* One process's end of one direction. */
typedef struct shm_end {
  const lat_case *c;
  shm_dir d;
  uint64_t mine;   /* producer: payloads published; consumer: payloads taken */
  uint64_t theirs; /* the peer's index as last read */
} shm_end;

typedef struct shm_own {
  shm_end tx, rx;
} shm_own;

static int shm_ends_open(const lat_case *c, void *shared, int side, lat_ends *e, const tx_ops *tx,
                    const rx_ops *rx) {
  shm_shared *sh = shared;
  shm_own *own = lat_ends_start(e, sizeof *own);
  if (own == NULL) {
    return -1;
  }
  own->tx.c = own->rx.c = c;
  own->tx.d = sh->dir[side == SIDE_A ? 0 : 1];
  own->rx.d = sh->dir[side == SIDE_A ? 1 : 0];
  lat_ends_set(e, c, side, tx, &own->tx, rx, &own->rx);
  return 0;
}

static void shm_ends_close(lat_ends *e) {
  free(e->own);
  memset(e, 0, sizeof *e);
}

/* Consumer: the producer has published past what this side took. */
static bool has_entry(void *st) {
  shm_end *r = st;
  r->theirs = atomic_load_explicit(&r->d.ctl->head, memory_order_acquire);
  return r->theirs != r->mine;
}

static int wait_entry(shm_end *r) {
  if (r->theirs != r->mine) {
    return 0;
  }
  return lat_wait(r->c, has_entry, r, &r->d.ctl->consumer_sleeping, "waiting for a payload");
}

/* Producer: publishes `mine` and wakes a consumer that sleeps. */
static int publish(shm_end *t) {
  atomic_store_explicit(&t->d.ctl->head, t->mine, memory_order_release);
  lat_wake(&t->d.ctl->consumer_sleeping);
  return 0;
}

/* shm-pingpong: one slot per direction; a round trip never finds it busy
 * (each side writes its slot only after the answer to the last payload
 * from it came back). */

static uint8_t *pp_acquire(void *st, size_t len) {
  (void)len;
  shm_end *t = st;
  return t->d.slots;
}

static int pp_submit(void *st, size_t len) {
  (void)len;
  shm_end *t = st;
  t->mine++;
  return publish(t);
}

static const uint8_t *pp_receive(void *st, size_t len) {
  (void)len;
  shm_end *r = st;
  if (wait_entry(r) != 0) {
    return NULL;
  }
  r->mine++;
  return r->d.slots;
}

static int pp_done(void *st) {
  (void)st;
  return 0;
}

static const tx_ops PP_TX = {pp_acquire, pp_submit, NULL, NULL};
static const rx_ops PP_RX = {pp_receive, pp_done};

static bool pp_has_shape(int shape) { return shape == SHAPE_ROUNDTRIP; }

static int pp_prepare(const lat_case *c, void **out) { return shm_prepare(c, 1, out); }

static int pp_open(const lat_case *c, void *shared, int side, lat_ends *e) {
  return shm_ends_open(c, shared, side, e, &PP_TX, &PP_RX);
}

const lat_mech LAT_MECH_SHM_PINGPONG = {
    "shm-pingpong", KIND_FLOOR,
    "a sequence number per direction and one slot in a shared mapping (round trip only)",
    pp_has_shape,   pp_prepare, pp_open, NULL, shm_ends_close, shm_discard,
};

/* shm-ring */

static bool has_room(void *st) {
  shm_end *t = st;
  t->theirs = atomic_load_explicit(&t->d.ctl->tail, memory_order_acquire);
  return t->mine - t->theirs < t->d.cap;
}

static uint8_t *ring_acquire(void *st, size_t len) {
  (void)len;
  shm_end *t = st;
  if (t->mine - t->theirs == t->d.cap &&
      lat_wait(t->c, has_room, t, &t->d.ctl->producer_waiting, "waiting for a free slot") != 0) {
    return NULL;
  }
  return t->d.slots + (t->mine % t->d.cap) * t->d.slot_size;
}

static int ring_submit(void *st, size_t len) {
  shm_end *t = st;
  ring_entry *e = &t->d.entries[t->mine % t->d.cap];
  e->offset = (t->mine % t->d.cap) * t->d.slot_size;
  e->len = (uint32_t)len;
  e->reserved = 0;
  e->seq = t->mine;
  t->mine++;
  return publish(t);
}

static const uint8_t *ring_receive(void *st, size_t len) {
  shm_end *r = st;
  if (wait_entry(r) != 0) {
    return NULL;
  }
  ring_entry e = r->d.entries[r->mine % r->d.cap];
  if (e.len != len || e.offset > r->d.cap * r->d.slot_size - len) {
    bench_fail("ring entry %llu: offset %llu, length %u", (unsigned long long)r->mine,
               (unsigned long long)e.offset, e.len);
    return NULL;
  }
  return r->d.slots + e.offset;
}

static int ring_done(void *st) {
  shm_end *r = st;
  r->mine++;
  atomic_store_explicit(&r->d.ctl->tail, r->mine, memory_order_release);
  lat_wake(&r->d.ctl->producer_waiting);
  return 0;
}

static const tx_ops RING_TX = {ring_acquire, ring_submit, NULL, NULL};
static const rx_ops RING_RX = {ring_receive, ring_done};

/* voxshm's defaults: 1024 ring entries, 64 MiB in flight. */
static uint64_t ring_entries(size_t size) {
  uint64_t cap = 1;
  while (cap < RING_MAX_ENTRIES && 2 * cap * round_up(size, 64) <= RING_MAX_IN_FLIGHT) {
    cap *= 2;
  }
  return cap;
}

static int ring_prepare(const lat_case *c, void **out) {
  return shm_prepare(c, ring_entries(c->size), out);
}

static int ring_open(const lat_case *c, void *shared, int side, lat_ends *e) {
  return shm_ends_open(c, shared, side, e, &RING_TX, &RING_RX);
}

const lat_mech LAT_MECH_SHM_RING = {
    "shm-ring", KIND_FLOOR,
    "a bare SPSC ring of 24-byte entries into shared slots (voxshm's default geometry)",
    NULL,       ring_prepare, ring_open, NULL, shm_ends_close, shm_discard,
};

/* ---- unix-socket --------------------------------------------------------- */

typedef struct us_shared {
  int fds[2]; /* [0] A's, [1] B's */
} us_shared;

typedef struct us_end {
  const lat_case *c;
  int fd;
  uint8_t *buf; /* the payload, in this process's own memory */
  size_t len;
} us_end;

typedef struct us_own {
  us_end tx, rx;
} us_own;

/* Raises a socket buffer to at least `bytes` (never lowers it), with the
 * privileged option first. The kernel reports twice what was set. */
static void raise_buffer(int fd, int forced, int plain, size_t bytes) {
  int cur = 0;
  socklen_t len = sizeof cur;
  if (getsockopt(fd, SOL_SOCKET, plain, &cur, &len) == 0 && (size_t)cur >= 2 * bytes) {
    return;
  }
  int v = bytes < (1u << 30) ? (int)bytes : (1 << 30);
  if (setsockopt(fd, SOL_SOCKET, forced, &v, sizeof v) != 0) {
    (void)setsockopt(fd, SOL_SOCKET, plain, &v, sizeof v);
  }
}

static int us_prepare(const lat_case *c, void **out) {
  us_shared *sh = calloc(1, sizeof *sh);
  if (sh == NULL) {
    return bench_fail("calloc");
  }
  *out = sh;
  sh->fds[0] = sh->fds[1] = -1;
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sh->fds) != 0) {
    return bench_fail("socketpair: %s", strerror(errno));
  }
  /* A message must fit in the send buffer (the defaults hold a few
   * hundred KiB); blocking calls give up after LAT_TIMEOUT_MS rather than
   * hang. */
  struct timeval tv = {LAT_TIMEOUT_MS / 1000, 0};
  for (int i = 0; i < 2; i++) {
    raise_buffer(sh->fds[i], SO_SNDBUFFORCE, SO_SNDBUF, 4 * c->size);
    raise_buffer(sh->fds[i], SO_RCVBUFFORCE, SO_RCVBUF, 4 * c->size);
    setsockopt(sh->fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(sh->fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  return 0;
}

static void us_discard(void *shared) {
  us_shared *sh = shared;
  if (sh == NULL) {
    return;
  }
  for (int i = 0; i < 2; i++) {
    if (sh->fds[i] >= 0) {
      close(sh->fds[i]);
    }
  }
  free(sh);
}

/* Sends or receives one whole message: with MSG_DONTWAIT while the variant
 * spins (busy-poll: always; blocking: for spin_us), then blocking. */
static int us_xfer(us_end *u, bool out) {
  const lat_case *c = u->c;
  lat_patience p;
  lat_patience_start(&p);
  uint64_t spin_until = p.start_ns + (uint64_t)c->spin_us * 1000u;
  ssize_t n;
  for (;;) {
    bool spin = lat_busy(c) || (c->spin_us > 0 && bench_now_ns() < spin_until);
    int flags = spin ? MSG_DONTWAIT : 0;
    n = out ? send(u->fd, u->buf, u->len, flags | MSG_NOSIGNAL) : recv(u->fd, u->buf, u->len, flags);
    if (n >= 0) {
      break;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return bench_fail("%s of %zu bytes: %s", out ? "send" : "recv", u->len, strerror(errno));
    }
    if (!lat_patience_ok(&p, out ? "send" : "recv")) {
      return -1;
    }
  }
  if ((size_t)n != u->len) {
    return bench_fail("%s: %zd bytes of %zu%s", out ? "send" : "recv", n, u->len,
                      n == 0 ? " (the peer hung up)" : "");
  }
  return 0;
}

static uint8_t *us_acquire(void *st, size_t len) {
  us_end *t = st;
  t->len = len;
  return t->buf;
}

static int us_submit(void *st, size_t len) {
  us_end *t = st;
  t->len = len;
  return us_xfer(t, true);
}

static const uint8_t *us_receive(void *st, size_t len) {
  us_end *r = st;
  r->len = len;
  return us_xfer(r, false) == 0 ? r->buf : NULL;
}

static int us_done(void *st) {
  (void)st;
  return 0;
}

static const tx_ops US_TX = {us_acquire, us_submit, NULL, NULL};
static const rx_ops US_RX = {us_receive, us_done};

static int us_open(const lat_case *c, void *shared, int side, lat_ends *e) {
  us_shared *sh = shared;
  int mine = side == SIDE_A ? 0 : 1;
  close(sh->fds[1 - mine]);
  sh->fds[1 - mine] = -1;
  us_own *own = lat_ends_start(e, sizeof *own);
  if (own == NULL) {
    return -1;
  }
  own->tx.c = own->rx.c = c;
  us_end *ends[2] = {&own->tx, &own->rx};
  for (int i = 0; i < 2; i++) {
    ends[i]->fd = sh->fds[mine];
    ends[i]->buf = bench_alloc_touched(c->size);
    if (ends[i]->buf == NULL) {
      return -1;
    }
  }
  lat_ends_set(e, c, side, &US_TX, &own->tx, &US_RX, &own->rx);
  return 0;
}

static void us_close(lat_ends *e) {
  us_own *own = e->own;
  if (own != NULL) {
    bench_free(own->tx.buf, own->tx.c->size);
    bench_free(own->rx.buf, own->rx.c->size);
    free(own);
  }
  memset(e, 0, sizeof *e);
}

const lat_mech LAT_MECH_UNIX_SOCKET = {
    "unix-socket", KIND_FLOOR, "the payload bytes over a SOCK_SEQPACKET pair (for scale)",
    NULL,          us_prepare, us_open, NULL, us_close, us_discard,
};
