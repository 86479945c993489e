/*
 * The other ways to set up a channel and the compatibility modes: a
 * SOCK_DGRAM pair (what a vox peer creates), a listener and voxshm_connect
 * on a path and on an abstract name, vox compatibility on either side,
 * regions backed by unsealed temp files, and the ring path: used when
 * both sides offer it, the socket path when either does not.
 */
#define _GNU_SOURCE
#include "check.h"

static int sock_type(int fd) {
  int t = 0;
  socklen_t l = sizeof t;
  CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_TYPE, &t, &l) == 0);
  return t;
}

static void roundtrips(const voxshm_registry *reg, const voxshm_attachments *att, int n) {
  for (int i = 0; i < n; i++) {
    size_t len = 1 + (size_t)i * 997;
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, len, 1000, &a));
    fill_pattern(a.data, len, (uint64_t)i);
    CHECK_OK(voxshm_registry_send(reg, &a, len));
    voxshm_view v;
    CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
    CHECK(v.len == len);
    CHECK_PATTERN(v.data, v.len, (uint64_t)i);
    CHECK_OK(voxshm_attachments_release(att, &v));
  }
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));
}

static void dgram_pair(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair_dgram(fds));
  CHECK(sock_type(fds[0]) == SOCK_DGRAM && sock_type(fds[1]) == SOCK_DGRAM);
  CHECK(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(fds[0], NULL, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  roundtrips(reg, att, 20);

  /* The receiver goes away holding a lease. A datagram pair reports no
     hang-up, so waiting ends at the timeout; the next send finds out. */
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 10, 1000, &a));
  CHECK_OK(voxshm_registry_send(reg, &a, 10));
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  voxshm_attachments_free(att);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 50), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_alloc(reg, 10, 1000, &a));
  CHECK_STATUS(voxshm_registry_send(reg, &a, 10), VOXSHM_PEER_GONE);
  /* Now it knows: the lease the receiver held is reclaimed. */
  CHECK_STATUS(voxshm_registry_alloc(reg, 10, 1000, &a), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 0), VOXSHM_PEER_GONE);
  voxshm_registry_stats rs = reg_stats(reg);
  CHECK(rs.live_leases == 0);
  CHECK(rs.allocations == 1);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  voxshm_registry_free(reg);
}

static void listener_and_connect(const char *name) {
  voxshm_listener *l = NULL;
  CHECK_OK(voxshm_listener_new(name, &l));
  int lfd = voxshm_listener_fd(l);
  CHECK(lfd >= 0);
  int cfd = -1, afd = -1;
  CHECK_OK(voxshm_connect(name, &cfd));
  struct pollfd p = {lfd, POLLIN, 0};
  CHECK_SYS(poll(&p, 1, 5000) == 1);
  CHECK_OK(voxshm_listener_accept(l, 1000, &afd));
  CHECK(cfd >= 0 && afd >= 0);
  CHECK(sock_type(cfd) == SOCK_SEQPACKET && sock_type(afd) == SOCK_SEQPACKET);
  CHECK(fcntl(afd, F_GETFD) & FD_CLOEXEC);
  CHECK(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
  /* Only one was waiting. */
  int extra = -1;
  CHECK_STATUS(voxshm_listener_accept(l, 0, &extra), VOXSHM_TIMEOUT);
  voxshm_listener_free(l);

  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(afd, NULL, &reg));
  CHECK_OK(voxshm_attachments_new(cfd, NULL, &att));
  roundtrips(reg, att, 10);
  voxshm_registry_free(reg);
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_PEER_GONE);
  voxshm_attachments_free(att);
}

static void vox_compat(void) {
  /* Both sides in vox mode, over a datagram pair as vox makes it: the
     reference travels as a frame; no extension message is sent; leases
     never come back. */
  int fds[2];
  CHECK_OK(voxshm_channel_pair_dgram(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.budget = 64 << 10;
  ro.flags = VOXSHM_REGISTRY_VOX_COMPAT;
  voxshm_attachments_options ao;
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ao.flags = VOXSHM_ATTACHMENTS_VOX_COMPAT;
  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));

  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 3000, 1000, &a));
  fill_pattern(a.data, 3000, 42);
  CHECK_STATUS(voxshm_registry_send(reg, &a, 3000), VOXSHM_UNSUPPORTED);
  voxshm_ref r;
  CHECK_OK(voxshm_registry_publish(reg, &a, 3000, &r));
  uint8_t frame[VOXSHM_REF_FRAME_LEN];
  CHECK_OK(voxshm_ref_encode(&r, frame));
  voxshm_ref back;
  CHECK_OK(voxshm_ref_decode(frame, sizeof frame, &back));
  voxshm_view v;
  CHECK_OK(voxshm_attachments_resolve(att, &back, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 42);
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_poll(reg));
  voxshm_registry_stats rs = reg_stats(reg);
  CHECK(rs.live_leases == 1);
  CHECK(rs.messages_received == 0);
  CHECK(rs.messages_sent == 1); /* the ATTACH */
  voxshm_attachments_stats as = att_stats(att);
  CHECK(as.messages_sent == 0);
  CHECK(as.releases_sent == 0);
  CHECK(as.live_views == 0);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 0), VOXSHM_TIMEOUT);
  /* The receiver's release travels over the caller's own transport; the
     sender ends the lease by reference. Twice, or a made-up reference, is
     an argument error. */
  CHECK_OK(voxshm_registry_release(reg, &r));
  CHECK(reg_stats(reg).live_leases == 0);
  CHECK_OK(voxshm_registry_wait_idle(reg, 0));
  CHECK_STATUS(voxshm_registry_release(reg, &r), VOXSHM_INVALID_ARGUMENT);
  voxshm_ref made_up = r;
  made_up.map_offset += 64;
  CHECK_STATUS(voxshm_registry_release(reg, &made_up), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_registry_release(NULL, &r), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_registry_release(reg, NULL), VOXSHM_INVALID_ARGUMENT);
  /* Ten budgets' worth, each released by reference: the budget is not a
     lifetime cap. */
  for (int i = 0; i < 100; i++) {
    CHECK_OK(voxshm_registry_alloc(reg, 6000, 0, &a));
    fill_pattern(a.data, 6000, (uint64_t)i);
    CHECK_OK(voxshm_registry_publish(reg, &a, 6000, &r));
    CHECK_OK(voxshm_attachments_resolve(att, &r, 1000, &v));
    CHECK_PATTERN(v.data, v.len, (uint64_t)i);
    CHECK_OK(voxshm_attachments_release(att, &v));
    CHECK_OK(voxshm_registry_release(reg, &r));
  }
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);

  /* A vox receiver facing a voxshm sender: it never says HELLO, so send
     cannot be used, but publish and resolve work. */
  CHECK_OK(voxshm_channel_pair(fds));
  CHECK_OK(voxshm_registry_new(fds[0], NULL, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  fill_pattern(a.data, 100, 43);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 100, 0), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_publish(reg, &a, 100, &r));
  CHECK_OK(voxshm_attachments_resolve(att, &r, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 43);
  CHECK_OK(voxshm_attachments_release(att, &v));
  /* Not in vox compatibility: a voxshm receiver releases by itself. */
  CHECK_STATUS(voxshm_registry_release(reg, &r), VOXSHM_UNSUPPORTED);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

static void temp_files(void) {
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.flags = VOXSHM_REGISTRY_FORCE_TEMPFILE;

  /* A receiver that insists on sealed regions rejects them. */
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_NOT_SEALED);
  /* That was the reference into the rejected region: it was handed back,
     and nothing else is queued. */
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_wait_idle(reg, 1000));
  CHECK(att_stats(att).attaches_rejected == 1);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);

  /* One that accepts unsealed regions maps them. */
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_attachments_options ao;
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ao.flags = VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));
  roundtrips(reg, att, 10);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

/* One timeout rule: a negative timeout waits forever, and the configured
   send timeout has its own spelling. */
static void configured_timeout(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.send_timeout_ms = 30;
  voxshm_registry *reg;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 0, &a));
  /* Nobody says HELLO: the configured 30 ms pass, twice. */
  CHECK(VOXSHM_TIMEOUT_CONFIGURED == INT64_MIN);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 100, VOXSHM_TIMEOUT_CONFIGURED),
               VOXSHM_TIMEOUT);
  CHECK_STATUS(voxshm_registry_send(reg, &a, 100), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  voxshm_registry_free(reg);
  close(fds[1]);
}

/* Waiting for one payload's release, as an event loop would. */
static void one_release(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(fds[0], NULL, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 0, &a));
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  voxshm_ref r = {a.map_id, a.map_generation, a.map_offset, 100, 0};
  CHECK_STATUS(voxshm_registry_wait_released(reg, &r, 0), VOXSHM_TIMEOUT);
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_wait_released(reg, &r, 1000));
  CHECK_STATUS(voxshm_registry_wait_released(reg, NULL, 0), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_registry_wait_released(NULL, &r, 0), VOXSHM_INVALID_ARGUMENT);
  /* Stats make no system call unless page faults are asked for. */
  voxshm_registry_stats rs;
  rs.struct_size = sizeof rs;
  CHECK_OK(voxshm_registry_get_stats(reg, &rs));
  CHECK(rs.minor_faults == 0);
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.flags = VOXSHM_REGISTRY_STATS_FAULTS;
  CHECK_OK(voxshm_channel_pair(fds));
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_registry_get_stats(reg, &rs));
  CHECK(rs.minor_faults > 0);
  voxshm_registry_free(reg);
  close(fds[1]);
}

/* The ring path with both sides' defaults, and the socket path when either
   side sets its NO_RING flag; payloads go through either way. */
static void ring_or_socket(void) {
  for (int mode = 0; mode < 3; mode++) {
    int fds[2];
    CHECK_OK(voxshm_channel_pair(fds));
    voxshm_registry_options ro;
    CHECK_OK(voxshm_registry_options_init(&ro));
    CHECK(ro.ring_capacity == 1024 && ro.spin_us == 50);
    voxshm_attachments_options ao;
    CHECK_OK(voxshm_attachments_options_init(&ao));
    CHECK(ao.spin_us == 50 && ao.reserved == 0);
    if (mode == 1) ro.flags |= VOXSHM_REGISTRY_NO_RING;
    if (mode == 2) ao.flags |= VOXSHM_ATTACHMENTS_NO_RING;
    ro.ring_capacity = 16;
    ro.spin_us = 0;
    ao.spin_us = 0;
    voxshm_registry *reg;
    voxshm_attachments *att;
    CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
    CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));
    roundtrips(reg, att, 40);
    voxshm_registry_stats rs = reg_stats(reg);
    voxshm_attachments_stats as = att_stats(att);
    CHECK(rs.ring == (mode == 0) && as.ring == (mode == 0));
    CHECK(as.refs_received == 40 && as.releases_sent == 40);
    if (mode == 0) {
      /* HELLO, the region, the first reference, the segment: nothing per
         payload after that. */
      CHECK(rs.messages_sent - rs.wakeups_sent <= 6);
    } else {
      CHECK(rs.messages_sent >= 40);
    }
    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
  }
}

int main(void) {
  test_begin();
  ring_or_socket();
  int fds_start = count_fds();
  configured_timeout();
  one_release();
  CHECK(count_fds() == fds_start);
  CHECK(count_fds() == fds_start);
  dgram_pair();
  CHECK(count_fds() == fds_start);

  char name[128];
  snprintf(name, sizeof name, "@voxshm-modes-%d", (int)getpid());
  listener_and_connect(name);
  CHECK(count_fds() == fds_start);
  const char *tmp = getenv("TMPDIR");
  snprintf(name, sizeof name, "%s/voxshm-modes-%d.sock", tmp && *tmp ? tmp : "/tmp", (int)getpid());
  unlink(name);
  listener_and_connect(name);
  struct stat st;
  CHECK(stat(name, &st) < 0 && errno == ENOENT);
  CHECK(count_fds() == fds_start);

  vox_compat();
  CHECK(count_fds() == fds_start);
  temp_files();
  CHECK(count_fds() == fds_start);
  printf("modes: OK\n");
  return 0;
}
