/*
 * Duplex channels through the C ABI: a forked server answers requests with
 * reply payloads over the same channel (each reply starts with the
 * request's encoded reference), with the ring path in both directions;
 * then the argument rules of voxshm_duplex_new, and vox compatibility on a
 * datagram pair, where the duplex channel sends nothing but ATTACHes.
 */
#define _GNU_SOURCE
#include "check.h"

#define ROUNDS 500
#define REPLY_LEN 4096

static size_t request_len(int i) { return 16 + (size_t)(i * 7919) % 200000; }

/* Serves until the client hangs up: each request is checked, answered
   with its reference and a pattern, and released after the reply went. */
static int server(int chan) {
  test_begin();
  voxshm_registry *reg = NULL;
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_duplex_new(chan, NULL, NULL, &reg, &att));
  CHECK(voxshm_registry_fd(reg) == voxshm_attachments_fd(att));
  for (int i = 0;; i++) {
    voxshm_view req;
    voxshm_status s = voxshm_attachments_recv(att, 30000, &req);
    if (s == VOXSHM_PEER_GONE) {
      CHECK(i == ROUNDS);
      break;
    }
    CHECK_OK(s);
    CHECK(req.len == request_len(i));
    CHECK_PATTERN(req.data, req.len, (uint64_t)i);
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, REPLY_LEN, 30000, &a));
    CHECK_OK(voxshm_ref_encode(&req.reference, a.data));
    fill_pattern(a.data + VOXSHM_REF_FRAME_LEN, REPLY_LEN - VOXSHM_REF_FRAME_LEN,
                 (uint64_t)i + 1000000);
    CHECK_OK(voxshm_registry_send(reg, &a, REPLY_LEN));
    CHECK_OK(voxshm_attachments_release(att, &req));
  }
  voxshm_registry_stats rs = reg_stats(reg);
  voxshm_attachments_stats as = att_stats(att);
  CHECK(rs.ring == 1 && as.ring == 1);
  CHECK(rs.payloads_published == ROUNDS && as.refs_received == ROUNDS);
  /* Either handle may go first. */
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
  printf("duplex server: OK\n");
  return 0;
}

static void request_response(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  pid_t pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    _exit(server(fds[1]));
  }
  close(fds[1]);
  int fds_start = count_fds();
  voxshm_registry *reg = NULL;
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_duplex_new(fds[0], NULL, NULL, &reg, &att));
  for (int i = 0; i < ROUNDS; i++) {
    size_t len = request_len(i);
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, len, 30000, &a));
    fill_pattern(a.data, len, (uint64_t)i);
    /* The reference `send` publishes: the reply will name it. */
    voxshm_ref mine = {a.map_id, a.map_generation, a.map_offset, (uint32_t)len, 0};
    CHECK_OK(voxshm_registry_send(reg, &a, len));
    voxshm_view reply;
    CHECK_OK(voxshm_attachments_recv(att, 30000, &reply));
    CHECK(reply.len == REPLY_LEN);
    voxshm_ref named;
    CHECK_OK(voxshm_ref_decode(reply.data, VOXSHM_REF_FRAME_LEN, &named));
    CHECK(named.map_id == mine.map_id && named.map_generation == mine.map_generation &&
          named.map_offset == mine.map_offset && named.payload_len == mine.payload_len);
    CHECK_PATTERN(reply.data + VOXSHM_REF_FRAME_LEN, REPLY_LEN - VOXSHM_REF_FRAME_LEN,
                  (uint64_t)i + 1000000);
    CHECK_OK(voxshm_attachments_release(att, &reply));
  }
  CHECK_OK(voxshm_registry_wait_idle(reg, 30000));
  voxshm_registry_stats rs = reg_stats(reg);
  CHECK(rs.ring == 1);
  CHECK(rs.live_leases == 0);
  voxshm_registry_free(reg);
  /* The channel is still open: the attachments hold it. */
  CHECK(fd_is_open(fds[0]));
  voxshm_attachments_free(att);
  CHECK_CHILD_EXIT(pid, 0);
  CHECK(count_fds() == fds_start - 1);
}

static void arguments(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry *reg = NULL;
  voxshm_attachments *att = NULL;
  CHECK_STATUS(voxshm_duplex_new(fds[0], NULL, NULL, NULL, &att), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_duplex_new(fds[0], NULL, NULL, &reg, NULL), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_duplex_new(fds[0], NULL, NULL, (voxshm_registry **)&att, &att),
               VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_duplex_new(-1, NULL, NULL, &reg, &att), VOXSHM_INVALID_ARGUMENT);
  /* Vox compatibility in one options only. */
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.flags |= VOXSHM_REGISTRY_VOX_COMPAT;
  CHECK_STATUS(voxshm_duplex_new(fds[0], &ro, NULL, &reg, &att), VOXSHM_INVALID_ARGUMENT);
  CHECK(strstr(voxshm_last_error(), "both") != NULL);
  /* Out-params untouched, fd still the caller's. */
  CHECK(reg == NULL && att == NULL);
  CHECK(fd_is_open(fds[0]));
  close(fds[0]);
  close(fds[1]);
}

/* Two vox-compatible duplex handles on a datagram pair: references go
   over a transport of the caller's own (here: the same process), releases
   are the sender's own call, and nothing but ATTACHes crosses the socket. */
static void vox_compat(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair_dgram(fds));
  voxshm_registry_options ro;
  voxshm_attachments_options ao;
  CHECK_OK(voxshm_registry_options_init(&ro));
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ro.flags |= VOXSHM_REGISTRY_VOX_COMPAT;
  ao.flags |= VOXSHM_ATTACHMENTS_VOX_COMPAT;
  voxshm_registry *reg[2];
  voxshm_attachments *att[2];
  for (int s = 0; s < 2; s++) {
    CHECK_OK(voxshm_duplex_new(fds[s], &ro, &ao, &reg[s], &att[s]));
  }
  for (int i = 0; i < 40; i++) {
    int from = i % 2, to = 1 - from;
    size_t len = 1 + (size_t)i * 40000;
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg[from], len, 1000, &a));
    CHECK_STATUS(voxshm_registry_send(reg[from], &a, len), VOXSHM_UNSUPPORTED);
    fill_pattern(a.data, len, (uint64_t)i);
    voxshm_ref r;
    CHECK_OK(voxshm_registry_publish(reg[from], &a, len, &r));
    voxshm_view v;
    CHECK_OK(voxshm_attachments_resolve(att[to], &r, 1000, &v));
    CHECK_PATTERN(v.data, v.len, (uint64_t)i);
    CHECK_OK(voxshm_attachments_release(att[to], &v));
    CHECK_OK(voxshm_registry_release(reg[from], &r));
  }
  for (int s = 0; s < 2; s++) {
    voxshm_registry_stats rs = reg_stats(reg[s]);
    voxshm_attachments_stats as = att_stats(att[s]);
    CHECK(rs.live_leases == 0);
    /* Every message was an ATTACH of this side's regions. */
    CHECK(rs.messages_sent == rs.regions_created);
    CHECK(rs.bytes_sent == 16 * rs.regions_created);
    CHECK(as.attaches_received == reg_stats(reg[1 - s]).regions_created);
    CHECK(rs.ring == 0);
  }
  for (int s = 0; s < 2; s++) {
    voxshm_registry_free(reg[s]);
    voxshm_attachments_free(att[s]);
  }
}

int main(void) {
  test_begin();
  int fds_start = count_fds();
  arguments();
  request_response();
  vox_compat();
  CHECK(count_fds() == fds_start);
  printf("duplex: OK\n");
  return 0;
}
