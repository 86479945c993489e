/*
 * Across processes with exec: the sender spawns a separate program
 * (helper_peer_receiver, whose path is argv[1]) that inherits the receiving end
 * of the channel as fd 100 and the read end of a frame pipe as fd 101.
 * Payloads go over the channel (send/recv) and as MMAP_REF frames over
 * the pipe (publish/encode, decode/resolve). The peer verifies each one;
 * its exit status is checked here.
 */
#define _GNU_SOURCE
#include "check.h"

#define PEER_CHANNEL_FD 100
#define PEER_PIPE_FD 101

static void write_all(int fd, const void *buf, size_t len) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t w = write(fd, p, len);
    CHECK_SYS(w > 0);
    p += w;
    len -= (size_t)w;
  }
}

/* Payload `seed`: its u64 seed, then pattern bytes (the peer checks both). */
static size_t payload_len(int seed) { return 8 + 1 + (size_t)(seed * 7919) % 200000; }

int main(int argc, char **argv) {
  test_begin();
  CHECK(argc == 2);
  const char *peer = argv[1];
  const int n_chan = small_run() ? 20 : 300;
  const int n_frames = small_run() ? 5 : 50;
  int fds_start = count_fds();

  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  /* Both ends are close-on-exec: the child must hand its end on itself. */
  CHECK(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  CHECK(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
  int pfd[2];
  CHECK_SYS(pipe2(pfd, O_CLOEXEC) == 0);

  pid_t pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    /* dup2 clears FD_CLOEXEC on the copy; the originals close at exec. */
    if (dup2(fds[1], PEER_CHANNEL_FD) < 0 || dup2(pfd[0], PEER_PIPE_FD) < 0) {
      _exit(90);
    }
    char a_fd[16], a_pipe[16], a_chan[16], a_frames[16];
    snprintf(a_fd, sizeof a_fd, "%d", PEER_CHANNEL_FD);
    snprintf(a_pipe, sizeof a_pipe, "%d", PEER_PIPE_FD);
    snprintf(a_chan, sizeof a_chan, "%d", n_chan);
    snprintf(a_frames, sizeof a_frames, "%d", n_frames);
    char *args[] = {(char *)peer, a_fd, a_pipe, a_chan, a_frames, NULL};
    execv(peer, args);
    _exit(91);
  }
  CHECK_SYS(close(fds[1]) == 0);
  CHECK_SYS(close(pfd[0]) == 0);

  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 256 << 10;
  ro.budget = 4 << 20;
  ro.keep_warm = 256 << 10;
  ro.send_timeout_ms = 30000;
  voxshm_registry *reg = NULL;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));

  uint64_t bytes = 0;
  for (int i = 0; i < n_chan; i++) {
    size_t len = payload_len(i);
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, len, 30000, &a));
    put_u64(a.data, (uint64_t)i);
    fill_pattern(a.data + 8, len - 8, (uint64_t)i);
    CHECK_OK(voxshm_registry_send(reg, &a, len));
    bytes += len;
  }
  for (int i = 0; i < n_frames; i++) {
    int seed = n_chan + i;
    size_t len = payload_len(seed);
    voxshm_allocation a;
    CHECK_OK(voxshm_registry_alloc(reg, len, 30000, &a));
    put_u64(a.data, (uint64_t)seed);
    fill_pattern(a.data + 8, len - 8, (uint64_t)seed);
    voxshm_ref ref;
    CHECK_OK(voxshm_registry_publish(reg, &a, len, &ref));
    uint8_t frame[VOXSHM_REF_FRAME_LEN];
    CHECK_OK(voxshm_ref_encode(&ref, frame));
    write_all(pfd[1], frame, sizeof frame);
    bytes += len;
  }
  CHECK_SYS(close(pfd[1]) == 0);

  /* The peer releases everything; the leases come back across processes. */
  CHECK_OK(voxshm_registry_wait_idle(reg, 60000));
  voxshm_registry_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_registry_get_stats(reg, &s));
  CHECK(s.live_leases == 0);
  CHECK(s.allocations == 0);
  CHECK(s.payloads_published == (uint64_t)(n_chan + n_frames));
  CHECK(s.payload_bytes_published == bytes);
  CHECK(s.mapped_bytes <= ro.budget);

  /* Freeing the registry is how the peer learns the sender is gone. */
  voxshm_registry_free(reg);
  CHECK_CHILD_EXIT(pid, 0);
  CHECK(count_fds() == fds_start);

  printf("exec_peer: OK (%d + %d payloads, %" PRIu64 " bytes)\n", n_chan, n_frames, bytes);
  return 0;
}
