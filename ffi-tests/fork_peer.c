/*
 * Across processes with fork: the child is the receiver. It verifies every
 * payload sent over the channel and every reference that comes as a frame
 * over a pipe, checks that its views are read-only, and reports through
 * its exit code. The parent checks that every lease came back, and that
 * once the child is gone the registry says VOXSHM_PEER_GONE.
 */
#define _GNU_SOURCE
#include "check.h"

/* Payload i: its length and pattern seed. */
static size_t payload_len(int i) { return 1 + (size_t)(i * 104729) % 300000; }

/* A grandchild writes to a view; the mapping is read-only, so it must die
   of SIGSEGV (caught here to exit 77, so the sanitizers and valgrind do
   not turn it into a report). */
static void on_segv(int sig) {
  (void)sig;
  _exit(77);
}

static void check_read_only(const voxshm_view *v) {
  pid_t pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_segv;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    volatile uint8_t *p = (volatile uint8_t *)v->data;
    p[0] = (uint8_t)(p[0] + 1);
    _exit(0); /* the write went through: wrong */
  }
  CHECK_CHILD_EXIT(pid, 77);
}

static int child(int chan, int frames, int n_chan, int n_frames) {
  test_begin();
  int fds_start = count_fds();
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(chan, NULL, &att));

  for (int i = 0; i < n_chan; i++) {
    voxshm_view v;
    CHECK_OK(voxshm_attachments_recv(att, 30000, &v));
    CHECK(v.len == payload_len(i));
    CHECK_PATTERN(v.data, v.len, (uint64_t)i);
    if (i == 0) {
      check_read_only(&v);
    }
    CHECK_OK(voxshm_attachments_release(att, &v));
  }
  for (int i = 0; i < n_frames; i++) {
    uint8_t frame[VOXSHM_REF_FRAME_LEN];
    CHECK_SYS(read(frames, frame, sizeof frame) == (ssize_t)sizeof frame);
    voxshm_ref ref;
    CHECK_OK(voxshm_ref_decode(frame, sizeof frame, &ref));
    voxshm_view v;
    CHECK_OK(voxshm_attachments_resolve(att, &ref, 30000, &v));
    int seed = n_chan + i;
    CHECK(v.len == payload_len(seed));
    CHECK_PATTERN(v.data, v.len, (uint64_t)seed);
    CHECK_OK(voxshm_attachments_release(att, &v));
  }

  /* One last payload is kept while the sender goes away: the view stays
     readable, and the release still succeeds afterwards. */
  voxshm_view kept;
  CHECK_OK(voxshm_attachments_recv(att, 30000, &kept));
  CHECK_PATTERN(kept.data, kept.len, 999);
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 30000, &v), VOXSHM_PEER_GONE);
  CHECK_PATTERN(kept.data, kept.len, 999);
  CHECK_OK(voxshm_attachments_release(att, &kept));
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_PEER_GONE);

  voxshm_attachments_free(att);
  CHECK(count_fds() == fds_start - 1);
  return 0;
}

int main(void) {
  test_begin();
  const int n_chan = small_run() ? 20 : 500;
  const int n_frames = small_run() ? 5 : 50;
  int fds_start = count_fds();

  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  int pfd[2];
  CHECK_SYS(pipe(pfd) == 0);

  pid_t pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    close(pfd[1]);
    int rc = child(fds[1], pfd[0], n_chan, n_frames);
    close(pfd[0]);
    _exit(rc);
  }
  CHECK_SYS(close(fds[1]) == 0);
  CHECK_SYS(close(pfd[0]) == 0);

  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 1 << 20;
  ro.budget = 8 << 20;
  ro.keep_warm = 1 << 20;
  ro.send_timeout_ms = 30000;
  voxshm_registry *reg = NULL;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));

  for (int i = 0; i < n_chan; i++) {
    size_t len = payload_len(i);
    voxshm_allocation a;
    /* The budget holds a few payloads only: alloc waits for releases. */
    CHECK_OK(voxshm_registry_alloc(reg, len, 30000, &a));
    fill_pattern(a.data, len, (uint64_t)i);
    CHECK_OK(voxshm_registry_send(reg, &a, len));
  }
  for (int i = 0; i < n_frames; i++) {
    int seed = n_chan + i;
    size_t len = payload_len(seed);
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, len, 30000, &a));
    fill_pattern(a.data, len, (uint64_t)seed);
    voxshm_ref ref;
    CHECK_OK(voxshm_registry_publish(reg, &a, len, &ref));
    uint8_t frame[VOXSHM_REF_FRAME_LEN];
    CHECK_OK(voxshm_ref_encode(&ref, frame));
    CHECK_SYS(write(pfd[1], frame, sizeof frame) == (ssize_t)sizeof frame);
  }
  CHECK_OK(voxshm_registry_wait_idle(reg, 60000));
  voxshm_registry_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_registry_get_stats(reg, &s));
  CHECK(s.live_leases == 0);
  CHECK(s.payloads_published == (uint64_t)(n_chan + n_frames));
  CHECK(s.mapped_bytes <= ro.budget);

  /* The payload the child keeps while we leave. */
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 4096, 1000, &a));
  fill_pattern(a.data, 4096, 999);
  CHECK_OK(voxshm_registry_send(reg, &a, 4096));
  voxshm_registry_free(reg);
  CHECK_CHILD_EXIT(pid, 0);
  CHECK_SYS(close(pfd[1]) == 0);
  CHECK(count_fds() == fds_start);

  /* A receiver that dies: the registry reclaims what it held. */
  CHECK_OK(voxshm_channel_pair(fds));
  pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    voxshm_attachments *att = NULL;
    if (voxshm_attachments_new(fds[1], NULL, &att) != VOXSHM_OK) _exit(1);
    voxshm_view v;
    if (voxshm_attachments_recv(att, 30000, &v) != VOXSHM_OK) _exit(2);
    /* Dies holding the view: no release, no free. */
    _exit(0);
  }
  CHECK_SYS(close(fds[1]) == 0);
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_registry_alloc(reg, 1000, 1000, &a));
  fill_pattern(a.data, 1000, 5);
  CHECK_OK(voxshm_registry_send(reg, &a, 1000));
  CHECK_CHILD_EXIT(pid, 0);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 10000), VOXSHM_PEER_GONE);
  CHECK_OK(voxshm_registry_get_stats(reg, &s));
  CHECK(s.live_leases == 0);
  CHECK_STATUS(voxshm_registry_alloc(reg, 1000, 1000, &a), VOXSHM_PEER_GONE);
  voxshm_registry_free(reg);
  CHECK(count_fds() == fds_start);

  printf("fork_peer: OK (%d + %d payloads)\n", n_chan, n_frames);
  return 0;
}
