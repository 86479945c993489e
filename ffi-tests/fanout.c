/*
 * One producer, many receivers through the C ABI: three forked receivers
 * (plain voxshm_attachments) get every payload of a fan-out sender, each
 * byte checked, written once; one receiver chosen by id gets a payload
 * alone; then the argument rules (NULL, unknown policy or id, a rejected
 * fd stays the caller's) and the counters once every receiver is removed.
 */
#define _GNU_SOURCE
#include "check.h"

#define RECEIVERS 3
#define PAYLOADS 300

static size_t payload_len(int i) { return 1 + (size_t)(i * 104729) % 300000; }

/* Receives PAYLOADS payloads to all and, for receiver 0, one more of its
   own; then waits for the sender to go. */
static int receiver(int chan, int me) {
  test_begin();
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(chan, NULL, &att));
  int n = PAYLOADS + (me == 0);
  for (int i = 0; i < n; i++) {
    voxshm_view v;
    CHECK_OK(voxshm_attachments_recv(att, 30000, &v));
    CHECK(v.len == payload_len(i));
    CHECK_PATTERN(v.data, v.len, (uint64_t)i);
    CHECK_OK(voxshm_attachments_release(att, &v));
  }
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 30000, &v), VOXSHM_PEER_GONE);
  voxshm_attachments_free(att);
  printf("fanout receiver %d: OK\n", me);
  return 0;
}

static void send_one(voxshm_fanout *f, int i, uint32_t to, uint32_t want) {
  voxshm_allocation a;
  size_t len = payload_len(i);
  CHECK_OK(voxshm_fanout_alloc(f, len, 30000, &a));
  fill_pattern(a.data, len, (uint64_t)i);
  uint32_t got = 99;
  CHECK_OK(voxshm_fanout_send(f, &a, len, to, 30000, &got));
  CHECK(got == want);
}

static void arguments(voxshm_fanout *f) {
  voxshm_fanout *g = NULL;
  CHECK_STATUS(voxshm_fanout_new(NULL, NULL), VOXSHM_INVALID_ARGUMENT);
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.flags |= VOXSHM_REGISTRY_VOX_COMPAT;
  CHECK_STATUS(voxshm_fanout_new(&ro, &g), VOXSHM_UNSUPPORTED);
  CHECK(g == NULL);
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  uint32_t id = 77;
  voxshm_receiver_options o;
  CHECK_OK(voxshm_receiver_options_init(&o));
  o.policy = 7;
  CHECK_STATUS(voxshm_fanout_add_receiver(f, fds[0], &o, &id), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_add_receiver(f, fds[0], NULL, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_add_receiver(NULL, fds[0], NULL, &id), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_add_receiver(f, -1, NULL, &id), VOXSHM_INVALID_ARGUMENT);
  CHECK(id == 77);
  CHECK(fd_is_open(fds[0]));
  close(fds[0]);
  close(fds[1]);
  CHECK_STATUS(voxshm_fanout_remove_receiver(f, 12345), VOXSHM_INVALID_ARGUMENT);
  voxshm_receiver_stats rs;
  rs.struct_size = sizeof rs;
  CHECK_STATUS(voxshm_fanout_get_receiver_stats(f, 12345, &rs), VOXSHM_INVALID_ARGUMENT);
  voxshm_allocation a;
  CHECK_STATUS(voxshm_fanout_alloc(f, 0, 0, &a), VOXSHM_ZERO_LENGTH);
  CHECK_OK(voxshm_fanout_alloc(f, 100, 0, &a));
  CHECK_STATUS(voxshm_fanout_send(f, &a, 100, 12345, 0, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_send(f, &a, 0, 0, 0, NULL), VOXSHM_ZERO_LENGTH);
  CHECK_OK(voxshm_fanout_abort(f, &a));
  CHECK_STATUS(voxshm_fanout_abort(f, &a), VOXSHM_INVALID_ALLOCATION);
  CHECK(voxshm_fanout_fd(NULL) == -1);
  CHECK(voxshm_fanout_fd(f) >= 0);
  /* Every entry point refuses NULL, and writes no out-parameter then. */
  CHECK_STATUS(voxshm_fanout_alloc(NULL, 10, 0, &a), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_alloc(f, 10, 0, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_send(NULL, &a, 10, 0, 0, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_send(f, NULL, 10, 0, 0, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_abort(f, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_poll(NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_wait_idle(NULL, 0), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_wait_ready(NULL, 1, 0), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_remove_receiver(NULL, 1), VOXSHM_INVALID_ARGUMENT);
  voxshm_fanout_stats fs;
  fs.struct_size = sizeof fs;
  CHECK_STATUS(voxshm_fanout_get_stats(NULL, &fs), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_get_stats(f, NULL), VOXSHM_INVALID_ARGUMENT);
  fs.struct_size = 8;
  CHECK_STATUS(voxshm_fanout_get_stats(f, &fs), VOXSHM_INVALID_ARGUMENT);
  size_t count = 99;
  CHECK_STATUS(voxshm_fanout_receivers(f, NULL, 4, &count), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_fanout_receivers(f, NULL, 0, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK(count == 99);
  CHECK_OK(voxshm_fanout_receivers(f, NULL, 0, &count));
  CHECK(count == 0);
  CHECK_STATUS(voxshm_receiver_options_init(NULL), VOXSHM_INVALID_ARGUMENT);
  voxshm_fanout_free(NULL);
}

int main(void) {
  test_begin();
  int fds_start = count_fds();
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 1 << 20;
  ro.budget = 64 << 20;
  ro.keep_warm = 2 << 20;
  voxshm_fanout *f = NULL;
  CHECK_OK(voxshm_fanout_new(&ro, &f));
  arguments(f);
  pid_t pids[RECEIVERS];
  uint32_t ids[RECEIVERS];
  int pairs[RECEIVERS][2];
  for (int r = 0; r < RECEIVERS; r++) {
    CHECK_OK(voxshm_channel_pair(pairs[r]));
  }
  /* Every child is forked before the sender takes any channel: a child
     must not keep another receiver's sender end open (that receiver would
     never see the sender go). */
  for (int r = 0; r < RECEIVERS; r++) {
    pids[r] = fork();
    CHECK_SYS(pids[r] >= 0);
    if (pids[r] == 0) {
      for (int k = 0; k < RECEIVERS; k++) {
        close(pairs[k][0]);
        if (k != r) {
          close(pairs[k][1]);
        }
      }
      _exit(receiver(pairs[r][1], r));
    }
  }
  for (int r = 0; r < RECEIVERS; r++) {
    close(pairs[r][1]);
    CHECK_OK(voxshm_fanout_add_receiver(f, pairs[r][0], NULL, &ids[r]));
  }
  /* Payloads reach a receiver once its HELLO was read. */
  for (int r = 0; r < RECEIVERS; r++) {
    CHECK_OK(voxshm_fanout_wait_ready(f, ids[r], 30000));
  }
  CHECK_STATUS(voxshm_fanout_wait_ready(f, 12345, 0), VOXSHM_INVALID_ARGUMENT);
  size_t n = 0;
  uint32_t listed[8];
  CHECK_OK(voxshm_fanout_receivers(f, listed, 8, &n));
  CHECK(n == RECEIVERS && listed[0] == ids[0] && listed[2] == ids[2]);
  for (int i = 0; i < PAYLOADS; i++) {
    send_one(f, i, VOXSHM_ALL_RECEIVERS, RECEIVERS);
  }
  send_one(f, PAYLOADS, ids[0], 1);
  CHECK_OK(voxshm_fanout_wait_idle(f, 30000));
  voxshm_fanout_stats s;
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_fanout_get_stats(f, &s));
  CHECK(s.payloads_published == PAYLOADS + 1);
  CHECK(s.deliveries == RECEIVERS * PAYLOADS + 1);
  CHECK(s.live_payloads == 0 && s.skips == 0 && s.receivers == RECEIVERS);
  CHECK(s.mapped_bytes <= ro.budget);
  for (int r = 0; r < RECEIVERS; r++) {
    voxshm_receiver_stats rs;
    rs.struct_size = sizeof rs;
    CHECK_OK(voxshm_fanout_get_receiver_stats(f, ids[r], &rs));
    CHECK(rs.id == ids[r] && rs.ready == 1 && rs.gone == 0 && rs.ring == 1);
    CHECK(rs.delivered == (uint64_t)(PAYLOADS + (r == 0)) && rs.released == rs.delivered);
    CHECK_OK(voxshm_fanout_remove_receiver(f, ids[r]));
    CHECK_CHILD_EXIT(pids[r], 0);
  }
  CHECK_OK(voxshm_fanout_get_stats(f, &s));
  CHECK(s.receivers == 0 && s.mapped_bytes <= ro.keep_warm);
  voxshm_fanout_free(f);
  CHECK(count_fds() == fds_start);
  printf("fanout: OK\n");
  return 0;
}
