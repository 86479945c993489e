/*
 * Misuse of the API returns a status and never crashes: NULL for every
 * pointer of every function, zero and absurd lengths, allocations and
 * views used twice, made up or tampered with, malformed options, bad fds
 * (which stay the caller's when *_new fails), calls after the peer is
 * gone, and malformed MMAP_REF frames. Out-parameters are left alone on
 * failure.
 */
#define _GNU_SOURCE
#include <limits.h>
#include <netinet/in.h>

#include "check.h"

#define INVALID VOXSHM_INVALID_ARGUMENT

static void make_pair(voxshm_registry **reg, voxshm_attachments **att) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.budget = 1 << 20;
  ro.keep_warm = 64 << 10;
  ro.send_timeout_ms = 2000;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, reg));
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, att));
}

static void send_pattern(const voxshm_registry *reg, size_t len, uint64_t seed,
                         voxshm_allocation *out) {
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, len, 1000, &a));
  fill_pattern(a.data, len, seed);
  CHECK_OK(voxshm_registry_send(reg, &a, len));
  if (out) *out = a;
}

static void null_pointers(void) {
  int fds[2];
  CHECK_STATUS(voxshm_channel_pair(NULL), INVALID);
  CHECK_STATUS(voxshm_channel_pair_dgram(NULL), INVALID);

  /* Listener and connect. */
  voxshm_listener *l = (voxshm_listener *)0x1;
  int cfd = -7;
  char name[64];
  snprintf(name, sizeof name, "@voxshm-misuse-%d", (int)getpid());
  CHECK_STATUS(voxshm_listener_new(NULL, &l), INVALID);
  CHECK(l == (voxshm_listener *)0x1);
  CHECK_STATUS(voxshm_listener_new(name, NULL), INVALID);
  CHECK_STATUS(voxshm_listener_new("", &l), INVALID);
  char long_path[300];
  memset(long_path, 'x', sizeof long_path - 1);
  long_path[sizeof long_path - 1] = '\0';
  CHECK_STATUS(voxshm_listener_new(long_path, &l), INVALID);
  CHECK_STATUS(voxshm_connect(long_path, &cfd), INVALID);
  CHECK_STATUS(voxshm_connect("", &cfd), INVALID);
  CHECK_STATUS(voxshm_connect(NULL, &cfd), INVALID);
  CHECK_STATUS(voxshm_connect(name, NULL), INVALID);
  CHECK(cfd == -7);
  CHECK_OK(voxshm_listener_new(name, &l));
  CHECK_STATUS(voxshm_listener_accept(NULL, 0, &cfd), INVALID);
  CHECK_STATUS(voxshm_listener_accept(l, 0, NULL), INVALID);
  CHECK(voxshm_listener_fd(NULL) == -1);
  voxshm_listener_free(NULL);
  voxshm_listener_free(l);

  /* Frames. */
  voxshm_ref r;
  memset(&r, 0, sizeof r);
  uint8_t frame[VOXSHM_REF_FRAME_LEN];
  CHECK_STATUS(voxshm_ref_encode(NULL, frame), INVALID);
  CHECK_STATUS(voxshm_ref_encode(&r, NULL), INVALID);
  CHECK_OK(voxshm_ref_encode(&r, frame));
  CHECK_STATUS(voxshm_ref_decode(NULL, sizeof frame, &r), INVALID);
  CHECK_STATUS(voxshm_ref_decode(NULL, 0, &r), INVALID);
  CHECK_STATUS(voxshm_ref_decode(frame, sizeof frame, NULL), INVALID);

  /* Options and constructors. */
  CHECK_STATUS(voxshm_registry_options_init(NULL), INVALID);
  CHECK_STATUS(voxshm_attachments_options_init(NULL), INVALID);
  CHECK_OK(voxshm_channel_pair(fds));
  CHECK_STATUS(voxshm_registry_new(fds[0], NULL, NULL), INVALID);
  CHECK_STATUS(voxshm_attachments_new(fds[1], NULL, NULL), INVALID);
  CHECK(fd_is_open(fds[0]) && fd_is_open(fds[1]));
  voxshm_registry *reg = NULL;
  voxshm_attachments *att = NULL;
  /* NULL options: the defaults. */
  CHECK_OK(voxshm_registry_new(fds[0], NULL, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));

  voxshm_registry_free(NULL);
  voxshm_attachments_free(NULL);
  CHECK(voxshm_registry_fd(NULL) == -1);
  CHECK(voxshm_attachments_fd(NULL) == -1);

  /* Registry. */
  voxshm_allocation a;
  CHECK_STATUS(voxshm_registry_alloc(NULL, 10, 0, &a), INVALID);
  CHECK_STATUS(voxshm_registry_alloc(reg, 10, 0, NULL), INVALID);
  CHECK(reg_stats(reg).allocations == 0);
  CHECK_OK(voxshm_registry_alloc(reg, 10, 1000, &a));
  fill_pattern(a.data, 10, 10);
  CHECK_STATUS(voxshm_registry_publish(NULL, &a, 10, &r), INVALID);
  CHECK_STATUS(voxshm_registry_publish(reg, NULL, 10, &r), INVALID);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, 10, NULL), INVALID);
  CHECK_STATUS(voxshm_registry_send(NULL, &a, 10), INVALID);
  CHECK_STATUS(voxshm_registry_send(reg, NULL, 10), INVALID);
  CHECK_STATUS(voxshm_registry_send_timeout(NULL, &a, 10, 0), INVALID);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, NULL, 10, 0), INVALID);
  CHECK_STATUS(voxshm_registry_abort(NULL, &a), INVALID);
  CHECK_STATUS(voxshm_registry_abort(reg, NULL), INVALID);
  CHECK_STATUS(voxshm_registry_poll(NULL), INVALID);
  CHECK_STATUS(voxshm_registry_wait_idle(NULL, 0), INVALID);
  voxshm_registry_stats rs;
  rs.struct_size = sizeof rs;
  CHECK_STATUS(voxshm_registry_get_stats(NULL, &rs), INVALID);
  CHECK_STATUS(voxshm_registry_get_stats(reg, NULL), INVALID);
  /* None of that consumed the allocation. */
  CHECK(reg_stats(reg).allocations == 1);
  CHECK_OK(voxshm_registry_send(reg, &a, 10));

  /* Attachments. */
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(NULL, 0, &v), INVALID);
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, NULL), INVALID);
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 10);
  voxshm_view v2;
  CHECK_STATUS(voxshm_attachments_resolve(NULL, &v.reference, 0, &v2), INVALID);
  CHECK_STATUS(voxshm_attachments_resolve(att, NULL, 0, &v2), INVALID);
  CHECK_STATUS(voxshm_attachments_resolve(att, &v.reference, 0, NULL), INVALID);
  CHECK_STATUS(voxshm_attachments_release(NULL, &v), INVALID);
  CHECK_STATUS(voxshm_attachments_release(att, NULL), INVALID);
  CHECK_STATUS(voxshm_attachments_poll(NULL), INVALID);
  voxshm_attachments_stats as;
  as.struct_size = sizeof as;
  CHECK_STATUS(voxshm_attachments_get_stats(NULL, &as), INVALID);
  CHECK_STATUS(voxshm_attachments_get_stats(att, NULL), INVALID);
  CHECK_OK(voxshm_attachments_get_stats(att, &as));
  CHECK(as.live_views == 1);
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));

  /* Stats structs: struct_size must cover at least the struct's first
     version (a caller built against it gets that part); a larger (newer)
     struct gets this library's part, and its struct_size says so. */
  rs.struct_size = 0;
  CHECK_STATUS(voxshm_registry_get_stats(reg, &rs), INVALID);
  rs.struct_size = VOXSHM_REGISTRY_STATS_V1_SIZE - 8;
  CHECK_STATUS(voxshm_registry_get_stats(reg, &rs), INVALID);
  rs.struct_size = VOXSHM_REGISTRY_STATS_V1_SIZE;
  CHECK_OK(voxshm_registry_get_stats(reg, &rs));
  CHECK(rs.struct_size == VOXSHM_REGISTRY_STATS_V1_SIZE);
  as.struct_size = sizeof(size_t);
  CHECK_STATUS(voxshm_attachments_get_stats(att, &as), INVALID);
  struct {
    voxshm_registry_stats s;
    uint8_t tail[64];
  } big;
  memset(&big, 0x5A, sizeof big);
  big.s.struct_size = sizeof big;
  CHECK_OK(voxshm_registry_get_stats(reg, &big.s));
  CHECK(big.s.struct_size == sizeof big.s);
  CHECK(big.s.payloads_published == 1);
  for (size_t i = 0; i < sizeof big.tail; i++) CHECK(big.tail[i] == 0x5A);

  /* Log levels outside 0..=5. */
  CHECK_STATUS(voxshm_set_log_callback(NULL, NULL, -1), INVALID);
  CHECK_STATUS(voxshm_set_log_callback(NULL, NULL, 6), INVALID);
  CHECK_STATUS(voxshm_set_log_callback(NULL, NULL, INT_MAX), INVALID);

  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

static void lengths(void) {
  voxshm_registry *reg;
  voxshm_attachments *att;
  make_pair(&reg, &att);
  voxshm_allocation a, sentinel;
  memset(&sentinel, 0x77, sizeof sentinel);
  a = sentinel;
  CHECK_STATUS(voxshm_registry_alloc(reg, 0, 0, &a), VOXSHM_ZERO_LENGTH);
  CHECK_STATUS(voxshm_registry_alloc(reg, SIZE_MAX, 0, &a), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_alloc(reg, (size_t)1 << 40, 0, &a), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_alloc(reg, (size_t)4 << 30, 0, &a), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_alloc(reg, ((size_t)4 << 30) + 1, 0, &a), VOXSHM_TOO_LARGE);
  /* At most 4 GiB - 1 per payload, and never more than the budget. */
  CHECK_STATUS(voxshm_registry_alloc(reg, ((size_t)4 << 30) - 1, 0, &a), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_alloc(reg, (1 << 20) + 1, 0, &a), VOXSHM_TOO_LARGE);
  CHECK(memcmp(&a, &sentinel, sizeof a) == 0);
  CHECK(reg_stats(reg).regions == 0);
  /* Exactly the budget fits. */
  CHECK_OK(voxshm_registry_alloc(reg, 1 << 20, 1000, &a));
  CHECK(a.capacity == 1 << 20);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  /* That region is idle beyond keep_warm and retired: let the receiver
     acknowledge it, so its bytes leave the budget. */
  CHECK_OK(voxshm_attachments_poll(att));

  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK(a.capacity >= 100);
  fill_pattern(a.data, 100, 3);
  voxshm_ref r, rsent;
  memset(&rsent, 0x66, sizeof rsent);
  r = rsent;
  CHECK_STATUS(voxshm_registry_publish(reg, &a, 0, &r), VOXSHM_ZERO_LENGTH);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, a.capacity + 1, &r), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, SIZE_MAX, &r), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, (size_t)4 << 30, &r), VOXSHM_TOO_LARGE);
  CHECK(memcmp(&r, &rsent, sizeof r) == 0);
  CHECK_STATUS(voxshm_registry_send(reg, &a, 0), VOXSHM_ZERO_LENGTH);
  CHECK_STATUS(voxshm_registry_send(reg, &a, SIZE_MAX), VOXSHM_TOO_LARGE);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, a.capacity + 1, 0), VOXSHM_TOO_LARGE);
  /* Still the caller's allocation after all that. */
  voxshm_registry_stats s = reg_stats(reg);
  CHECK(s.allocations == 1 && s.live_leases == 0 && s.payloads_published == 0);
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK(v.len == 100);
  CHECK_PATTERN(v.data, v.len, 3);
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));

  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

static void allocation_misuse(void) {
  voxshm_registry *reg;
  voxshm_attachments *att;
  make_pair(&reg, &att);
  voxshm_ref r;

  /* Published: gone from the caller. */
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK_OK(voxshm_registry_publish(reg, &a, 100, &r));
  CHECK_STATUS(voxshm_registry_publish(reg, &a, 100, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_send(reg, &a, 100), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_abort(reg, &a), VOXSHM_INVALID_ALLOCATION);
  voxshm_view v;
  CHECK_OK(voxshm_attachments_resolve(att, &r, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));

  /* Sent: likewise. */
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  CHECK_STATUS(voxshm_registry_send(reg, &a, 100), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 100, 0), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, 100, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_abort(reg, &a), VOXSHM_INVALID_ALLOCATION);
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));

  /* Aborted: twice is an error, and so is publishing it. (Every release
     taken first, so the next allocation lands where this one was.) */
  CHECK_OK(voxshm_registry_wait_idle(reg, 1000));
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK_OK(voxshm_registry_abort(reg, &a));
  CHECK_STATUS(voxshm_registry_abort(reg, &a), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_publish(reg, &a, 100, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_send(reg, &a, 100), VOXSHM_INVALID_ALLOCATION);

  /* A stale copy does not match a later allocation at the same place. */
  voxshm_allocation stale = a, b;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &b));
  CHECK(b.map_id == stale.map_id && b.map_offset == stale.map_offset);
  CHECK(b.token != stale.token);
  CHECK_STATUS(voxshm_registry_publish(reg, &stale, 100, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_abort(reg, &stale), VOXSHM_INVALID_ALLOCATION);

  /* Made up, or changed by the caller. */
  voxshm_allocation x;
  memset(&x, 0, sizeof x);
  CHECK_STATUS(voxshm_registry_publish(reg, &x, 1, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_send(reg, &x, 1), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.token += 1;
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.map_offset += 64;
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.map_generation += 1;
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.map_id += 1;
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.data += 64;
  CHECK_STATUS(voxshm_registry_abort(reg, &x), VOXSHM_INVALID_ALLOCATION);
  x = b;
  x.capacity += 64;
  CHECK_STATUS(voxshm_registry_publish(reg, &x, x.capacity, &r), VOXSHM_INVALID_ALLOCATION);
  /* The genuine one is untouched by all that. */
  CHECK(reg_stats(reg).allocations == 1);
  CHECK_OK(voxshm_registry_abort(reg, &b));

  /* An allocation of another registry is unknown to this one, even where
     both registries number their regions and allocations alike. */
  voxshm_registry *reg2;
  voxshm_attachments *att2;
  make_pair(&reg2, &att2);
  voxshm_registry *fresh;
  voxshm_attachments *fresh_att;
  make_pair(&fresh, &fresh_att);
  voxshm_allocation in1, in2;
  CHECK_OK(voxshm_registry_alloc(reg2, 100, 1000, &in1));
  CHECK_OK(voxshm_registry_alloc(fresh, 100, 1000, &in2));
  CHECK(in1.map_id == in2.map_id && in1.map_offset == in2.map_offset);
  CHECK(in1.data != in2.data);
  CHECK_STATUS(voxshm_registry_publish(fresh, &in1, 100, &r), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_send(fresh, &in1, 100), VOXSHM_INVALID_ALLOCATION);
  CHECK_STATUS(voxshm_registry_abort(fresh, &in1), VOXSHM_INVALID_ALLOCATION);
  CHECK_OK(voxshm_registry_abort(fresh, &in2));
  CHECK_OK(voxshm_registry_abort(reg2, &in1));
  voxshm_registry_free(fresh);
  voxshm_attachments_free(fresh_att);
  voxshm_registry_free(reg2);
  voxshm_attachments_free(att2);

  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));
  voxshm_registry_stats s = reg_stats(reg);
  CHECK(s.allocations == 0 && s.live_leases == 0 && s.payloads_published == 2);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

static void view_misuse(void) {
  voxshm_registry *reg;
  voxshm_attachments *att;
  make_pair(&reg, &att);

  voxshm_view v;
  send_pattern(reg, 500, 1, NULL);
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_STATUS(voxshm_attachments_release(att, &v), VOXSHM_INVALID_VIEW);

  /* Never resolved: made up from nothing, or from a real reference. */
  voxshm_view fake;
  memset(&fake, 0, sizeof fake);
  CHECK_STATUS(voxshm_attachments_release(att, &fake), VOXSHM_INVALID_VIEW);
  fake.data = (const uint8_t *)(uintptr_t)0x10000;
  fake.len = 10;
  fake.reference.map_id = 1;
  fake.reference.map_generation = 1;
  fake.reference.payload_len = 10;
  CHECK_STATUS(voxshm_attachments_release(att, &fake), VOXSHM_INVALID_VIEW);
  voxshm_allocation a;
  send_pattern(reg, 700, 2, &a);
  CHECK_OK(voxshm_attachments_poll(att)); /* the REF is queued, not resolved */
  fake = v;
  fake.len = 700;
  fake.reference.map_offset = a.map_offset;
  fake.reference.payload_len = 700;
  CHECK_STATUS(voxshm_attachments_release(att, &fake), VOXSHM_INVALID_VIEW);

  /* Changed by the caller. */
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 2);
  voxshm_view t = v;
  t.data += 1;
  CHECK_STATUS(voxshm_attachments_release(att, &t), VOXSHM_INVALID_VIEW);
  t = v;
  t.len += 1;
  CHECK_STATUS(voxshm_attachments_release(att, &t), VOXSHM_INVALID_VIEW);
  t = v;
  t.reference.map_generation += 1;
  CHECK_STATUS(voxshm_attachments_release(att, &t), VOXSHM_INVALID_VIEW);
  t = v;
  t.reference.payload_len -= 1;
  CHECK_STATUS(voxshm_attachments_release(att, &t), VOXSHM_INVALID_VIEW);

  /* A view of other attachments is unknown here. */
  voxshm_registry *reg2;
  voxshm_attachments *att2;
  make_pair(&reg2, &att2);
  send_pattern(reg2, 700, 3, NULL);
  voxshm_view w;
  CHECK_OK(voxshm_attachments_recv(att2, 1000, &w));
  CHECK_STATUS(voxshm_attachments_release(att, &w), VOXSHM_INVALID_VIEW);
  CHECK_STATUS(voxshm_attachments_release(att2, &v), VOXSHM_INVALID_VIEW);
  CHECK_OK(voxshm_attachments_release(att2, &w));
  CHECK_OK(voxshm_registry_wait_idle(reg2, 5000));
  voxshm_registry_free(reg2);
  voxshm_attachments_free(att2);

  /* The genuine view survived all that. */
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));
  voxshm_attachments_stats as;
  as.struct_size = sizeof as;
  CHECK_OK(voxshm_attachments_get_stats(att, &as));
  CHECK(as.live_views == 0);
  CHECK(as.releases_sent == 2);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

static void options_misuse(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry *reg = (voxshm_registry *)0x1;
  voxshm_attachments *att = (voxshm_attachments *)0x1;

  voxshm_registry_options ro;
  const size_t bad_sizes[] = {0, 1, sizeof(size_t), sizeof ro - 1, sizeof ro + 1,
                              sizeof ro + 64, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_sizes / sizeof bad_sizes[0]; i++) {
    CHECK_OK(voxshm_registry_options_init(&ro));
    ro.struct_size = bad_sizes[i];
    CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);
  }
  const uint32_t bad_flags[] = {16, 32, 0x80000000u,
                                VOXSHM_REGISTRY_VOX_COMPAT | VOXSHM_REGISTRY_FORCE_TEMPFILE |
                                    VOXSHM_REGISTRY_STATS_FAULTS | VOXSHM_REGISTRY_NO_RING | 16};
  for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
    CHECK_OK(voxshm_registry_options_init(&ro));
    ro.flags = bad_flags[i];
    CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);
  }
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 0;
  CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.budget = 0;
  CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);

  voxshm_attachments_options ao;
  const size_t bad_asizes[] = {0, 1, sizeof(size_t), sizeof ao - 1, sizeof ao + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad_asizes / sizeof bad_asizes[0]; i++) {
    CHECK_OK(voxshm_attachments_options_init(&ao));
    ao.struct_size = bad_asizes[i];
    CHECK_STATUS(voxshm_attachments_new(fds[1], &ao, &att), INVALID);
  }
  const uint32_t bad_aflags[] = {16, 0x80000000u,
                                 VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED | VOXSHM_ATTACHMENTS_VOX_COMPAT |
                                     VOXSHM_ATTACHMENTS_STATS_FAULTS | VOXSHM_ATTACHMENTS_NO_RING |
                                     16};
  for (size_t i = 0; i < sizeof bad_aflags / sizeof bad_aflags[0]; i++) {
    CHECK_OK(voxshm_attachments_options_init(&ao));
    ao.flags = bad_aflags[i];
    CHECK_STATUS(voxshm_attachments_new(fds[1], &ao, &att), INVALID);
  }
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ao.reserved = 1;
  CHECK_STATUS(voxshm_attachments_new(fds[1], &ao, &att), INVALID);
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.ring_capacity = 1000; /* not a power of two */
  CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);
  ro.ring_capacity = 8; /* too small */
  CHECK_STATUS(voxshm_registry_new(fds[0], &ro, &reg), INVALID);
  /* Out-parameters untouched; the fds are still ours and still work. */
  CHECK(reg == (voxshm_registry *)0x1 && att == (voxshm_attachments *)0x1);
  CHECK(fd_is_open(fds[0]) && fd_is_open(fds[1]));
  CHECK_OK(voxshm_registry_options_init(&ro));
  CHECK_OK(voxshm_attachments_options_init(&ao));
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));
  send_pattern(reg, 64, 4, NULL);
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 4);
  CHECK_OK(voxshm_attachments_release(att, &v));
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

/* fd must be rejected by both constructors and stay open, the same file;
   the message names the caller's fd and says what it is (`says`). */
static void reject_fd(int fd, const char *what, const char *says) {
  struct stat before, after;
  int open_before = fd >= 0 && fd_is_open(fd);
  if (open_before) CHECK_SYS(fstat(fd, &before) == 0);
  voxshm_registry *reg = (voxshm_registry *)0x1;
  voxshm_attachments *att = (voxshm_attachments *)0x1;
  voxshm_status s1 = voxshm_registry_new(fd, NULL, &reg);
  if (s1 != INVALID) FAIL("voxshm_registry_new(%s) returned %s", what, voxshm_status_name(s1));
  CHECK_STATUS(s1, INVALID);
  voxshm_status s2 = voxshm_attachments_new(fd, NULL, &att);
  if (s2 != INVALID) FAIL("voxshm_attachments_new(%s) returned %s", what, voxshm_status_name(s2));
  CHECK_STATUS(s2, INVALID);
  char named[32];
  snprintf(named, sizeof named, "fd %d ", fd);
  if (!strstr(voxshm_last_error(), named) || !strstr(voxshm_last_error(), says)) {
    FAIL("rejecting %s: the message \"%s\" should name \"%s\" and say \"%s\"", what,
         voxshm_last_error(), named, says);
  }
  CHECK(reg == (voxshm_registry *)0x1 && att == (voxshm_attachments *)0x1);
  if (open_before) {
    if (!fd_is_open(fd)) FAIL("the rejected %s (fd %d) was closed", what, fd);
    CHECK_SYS(fstat(fd, &after) == 0);
    CHECK(before.st_ino == after.st_ino && before.st_dev == after.st_dev);
  }
}

static void bad_fds(void) {
  int fds_start = count_fds();
  reject_fd(-1, "fd -1", "not a valid");
  reject_fd(INT_MIN, "fd INT_MIN", "not a valid");
  reject_fd(INT_MAX, "fd INT_MAX", "not open");
  int closed = dup(1);
  CHECK_SYS(closed >= 0);
  CHECK_SYS(close(closed) == 0);
  reject_fd(closed, "a closed fd", "not open");

  int p[2];
  CHECK_SYS(pipe(p) == 0);
  reject_fd(p[0], "a pipe's read end", "is a pipe, not a socket");
  reject_fd(p[1], "a pipe's write end", "is a pipe, not a socket");
  close(p[0]);
  close(p[1]);

  int file = make_memfd(4096, 0, 0);
  reject_fd(file, "a memfd", "is a regular file, not a socket");
  close(file);
  int dev = open("/dev/null", O_RDWR | O_CLOEXEC);
  CHECK_SYS(dev >= 0);
  reject_fd(dev, "/dev/null", "is a character device, not a socket");
  close(dev);

  int s[2];
  CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0);
  reject_fd(s[0], "an AF_UNIX SOCK_STREAM socket", "of SOCK_STREAM; voxshm needs SOCK_SEQPACKET");
  close(s[0]);
  close(s[1]);
  int inet = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (inet >= 0) {
    reject_fd(inet, "an AF_INET SOCK_DGRAM socket", "not AF_UNIX");
    close(inet);
  }
  CHECK(count_fds() == fds_start);
}

/* The receiver must say HELLO when it is created; if the channel is full
   that fails, and the fd must still be the caller's. */
static void full_channel(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  uint8_t junk[1000];
  memset(junk, 0, sizeof junk);
  int sent = 0;
  for (;;) {
    ssize_t r = send(fds[1], junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      CHECK_SYS(errno == EAGAIN || errno == EWOULDBLOCK);
      break;
    }
    sent++;
  }
  CHECK(sent > 0);
  voxshm_attachments *att = (voxshm_attachments *)0x1;
  CHECK_STATUS(voxshm_attachments_new(fds[1], NULL, &att), VOXSHM_TIMEOUT);
  CHECK(att == (voxshm_attachments *)0x1);
  if (!fd_is_open(fds[1])) {
    FAIL("voxshm_attachments_new failed but closed the caller's fd %d", fds[1]);
  }
  /* Once there is room, the same fd works. */
  CHECK(raw_drain(fds[0]) == sent);
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  voxshm_attachments_free(att);
  CHECK(!fd_is_open(fds[1]));
  close(fds[0]);
}

/* The receiver goes away while it holds a view, a published reference is
   unresolved and an allocation is unpublished. */
static void receiver_gone(void) {
  voxshm_registry *reg;
  voxshm_attachments *att;
  make_pair(&reg, &att);
  voxshm_allocation a1, a2, a3;
  send_pattern(reg, 1000, 1, &a1);
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_registry_alloc(reg, 1000, 1000, &a2));
  CHECK_OK(voxshm_registry_alloc(reg, 1000, 1000, &a3));
  voxshm_ref r3;
  CHECK_OK(voxshm_registry_publish(reg, &a3, 1000, &r3));
  CHECK(reg_stats(reg).live_leases == 2);

  voxshm_attachments_free(att);

  voxshm_allocation x;
  CHECK_STATUS(voxshm_registry_poll(reg), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_alloc(reg, 1000, 1000, &x), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_publish(reg, &a2, 1000, &r3), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_send(reg, &a2, 1000), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a2, 1000, 0), VOXSHM_PEER_GONE);
  /* What the receiver held was reclaimed; wait_idle says why it is idle. */
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 1000), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 0), VOXSHM_PEER_GONE);
  voxshm_registry_stats s = reg_stats(reg);
  CHECK(s.live_leases == 0);
  CHECK(s.allocations == 1);
  /* Giving back an unpublished allocation still works. */
  CHECK_OK(voxshm_registry_abort(reg, &a2));
  CHECK_STATUS(voxshm_registry_abort(reg, &a2), VOXSHM_INVALID_ALLOCATION);
  CHECK(reg_stats(reg).allocations == 0);
  voxshm_registry_free(reg);
}

/* The sender goes away: what it sent before can still be taken, views
   stay readable and can be released, then every recv says PEER_GONE. */
static void sender_gone(void) {
  voxshm_registry *reg;
  voxshm_attachments *att;
  make_pair(&reg, &att);
  send_pattern(reg, 3000, 1, NULL);
  send_pattern(reg, 4000, 2, NULL);
  voxshm_view v1, v2;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v1));
  voxshm_registry_free(reg);

  CHECK_OK(voxshm_attachments_recv(att, 1000, &v2));
  CHECK_PATTERN(v2.data, v2.len, 2);
  CHECK_OK(voxshm_attachments_release(att, &v2));
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_attachments_recv(att, -1, &v), VOXSHM_PEER_GONE);
  CHECK_PATTERN(v1.data, v1.len, 1);
  /* Nothing more will arrive: resolve does not wait for it, and says why. */
  voxshm_ref r = {99, 1, 0, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, -1, &v), VOXSHM_PEER_GONE);
  CHECK_OK(voxshm_attachments_release(att, &v1));
  CHECK_STATUS(voxshm_attachments_release(att, &v1), VOXSHM_INVALID_VIEW);
  voxshm_attachments_stats as;
  as.struct_size = sizeof as;
  CHECK_OK(voxshm_attachments_get_stats(att, &as));
  CHECK(as.live_views == 0);
  /* resolve was used on this handle, so references from the caller's own
     transport may still come: the gone sender's regions stay mapped until
     the handle is freed. */
  CHECK(as.mappings > 0);
  voxshm_attachments_free(att);
}

static void bad_frames(void) {
  voxshm_ref r = {7, 2, 0x100000040ull, 4096, 0};
  uint8_t good[VOXSHM_REF_FRAME_LEN];
  CHECK_OK(voxshm_ref_encode(&r, good));
  voxshm_ref out, sentinel;
  memset(&sentinel, 0x55, sizeof sentinel);
  CHECK_OK(voxshm_ref_decode(good, sizeof good, &out));
  CHECK(memcmp(&out, &r, sizeof r) == 0);

  out = sentinel;
  const size_t short_lens[] = {0, 1, 8, 16, 31};
  for (size_t i = 0; i < sizeof short_lens / sizeof short_lens[0]; i++) {
    CHECK_STATUS(voxshm_ref_decode(good, short_lens[i], &out), VOXSHM_BAD_FRAME);
  }
  const uint32_t totals[] = {0, 16, 31, 33, 64, 0xFFFFFFFFu};
  for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++) {
    uint8_t b[VOXSHM_REF_FRAME_LEN];
    memcpy(b, good, sizeof b);
    put_u32(b, totals[i]);
    CHECK_STATUS(voxshm_ref_decode(b, sizeof b, &out), VOXSHM_BAD_FRAME);
  }
  const uint8_t flags[] = {0x00, 0x01, 0x03, 0x06, 0x82, 0xFF};
  for (size_t i = 0; i < sizeof flags; i++) {
    uint8_t b[VOXSHM_REF_FRAME_LEN];
    memcpy(b, good, sizeof b);
    b[4] = flags[i];
    CHECK_STATUS(voxshm_ref_decode(b, sizeof b, &out), VOXSHM_BAD_FRAME);
  }
  const int reserved[] = {5, 6, 7, 28, 29, 30, 31};
  for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
    uint8_t b[VOXSHM_REF_FRAME_LEN];
    memcpy(b, good, sizeof b);
    b[reserved[i]] = 1;
    CHECK_STATUS(voxshm_ref_decode(b, sizeof b, &out), VOXSHM_BAD_FRAME);
  }
  CHECK(memcmp(&out, &sentinel, sizeof out) == 0);
  /* Bytes past the frame are not part of it. */
  uint8_t longer[64];
  memset(longer, 0xFF, sizeof longer);
  memcpy(longer, good, sizeof good);
  CHECK_OK(voxshm_ref_decode(longer, sizeof longer, &out));
  CHECK(memcmp(&out, &r, sizeof r) == 0);
  /* encode writes the reserved bytes as zero whatever the struct says. */
  voxshm_ref odd = r;
  odd.reserved = 0xFFFFFFFFu;
  CHECK_OK(voxshm_ref_encode(&odd, longer));
  CHECK(memcmp(longer, good, sizeof good) == 0);
}

int main(void) {
  test_begin();
  int fds_start = count_fds();
  null_pointers();
  CHECK(count_fds() == fds_start);
  lengths();
  CHECK(count_fds() == fds_start);
  allocation_misuse();
  CHECK(count_fds() == fds_start);
  view_misuse();
  CHECK(count_fds() == fds_start);
  options_misuse();
  CHECK(count_fds() == fds_start);
  bad_fds();
  CHECK(count_fds() == fds_start);
  full_channel();
  CHECK(count_fds() == fds_start);
  receiver_gone();
  CHECK(count_fds() == fds_start);
  sender_gone();
  CHECK(count_fds() == fds_start);
  bad_frames();
  printf("misuse: OK\n");
  return 0;
}
