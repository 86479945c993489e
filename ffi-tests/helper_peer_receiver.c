/*
 * The receiving program of exec_peer.c (not a test on its own): exec'd
 * with the channel fd it inherited and a pipe that carries 32-byte
 * MMAP_REF frames.
 *
 *   helper_peer_receiver <channel fd> <frame pipe fd> <channel payloads> <frame payloads>
 *
 * Every payload starts with its u64 seed (payload number), followed by
 * pattern bytes of that seed. Exits 0 only if every payload arrived intact
 * and in order, every view was released, the sender's departure was seen
 * as VOXSHM_PEER_GONE, and no fd leaked.
 */
#define _GNU_SOURCE
#include "check.h"

static int parse_int(const char *s) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  CHECK(errno == 0 && end != s && *end == '\0' && v >= 0 && v < 1000000);
  return (int)v;
}

static void check_payload(const voxshm_view *v, uint64_t want_seed) {
  CHECK(v->data != NULL);
  CHECK(v->len >= 8);
  CHECK(v->len == v->reference.payload_len);
  uint64_t seed = get_u64(v->data);
  if (seed != want_seed) {
    FAIL("payload %" PRIu64 " arrived where %" PRIu64 " was expected", seed, want_seed);
  }
  CHECK_PATTERN(v->data + 8, v->len - 8, seed);
}

int main(int argc, char **argv) {
  test_begin();
  if (argc != 5) {
    fprintf(stderr, "usage: %s <channel fd> <frame pipe fd> <n channel> <n frames>\n", argv[0]);
    return 2;
  }
  int chan = parse_int(argv[1]);
  int pipe_fd = parse_int(argv[2]);
  int n_chan = parse_int(argv[3]);
  int n_frames = parse_int(argv[4]);

  /* The fd was inherited across exec: open, no close-on-exec flag. */
  CHECK(fd_is_open(chan));
  CHECK((fcntl(chan, F_GETFD) & FD_CLOEXEC) == 0);
  CHECK(fd_is_open(pipe_fd));
  int fds_start = count_fds();

  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(chan, NULL, &att));
  CHECK(voxshm_attachments_fd(att) == chan);

  for (int i = 0; i < n_chan; i++) {
    voxshm_view v;
    CHECK_OK(voxshm_attachments_recv(att, 30000, &v));
    check_payload(&v, (uint64_t)i);
    CHECK_OK(voxshm_attachments_release(att, &v));
  }

  /* References carried over the caller's own transport (a pipe). */
  for (int i = 0; i < n_frames; i++) {
    uint8_t frame[VOXSHM_REF_FRAME_LEN];
    size_t got = 0;
    while (got < sizeof frame) {
      ssize_t r = read(pipe_fd, frame + got, sizeof frame - got);
      CHECK_SYS(r > 0);
      got += (size_t)r;
    }
    voxshm_ref ref;
    CHECK_OK(voxshm_ref_decode(frame, sizeof frame, &ref));
    voxshm_view v;
    CHECK_OK(voxshm_attachments_resolve(att, &ref, 30000, &v));
    CHECK(v.reference.map_id == ref.map_id && v.reference.map_offset == ref.map_offset);
    check_payload(&v, (uint64_t)(n_chan + i));
    CHECK_OK(voxshm_attachments_release(att, &v));
  }
  /* The sender closes the pipe after the last frame. */
  uint8_t extra;
  CHECK(read(pipe_fd, &extra, 1) == 0);
  CHECK_SYS(close(pipe_fd) == 0);

  voxshm_attachments_stats s;
  memset(&s, 0, sizeof s);
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_attachments_get_stats(att, &s));
  CHECK(s.live_views == 0);
  CHECK(s.refs_received == (uint64_t)n_chan);
  CHECK(s.attaches_rejected == 0);
  CHECK(s.releases_sent == (uint64_t)(n_chan + n_frames));
  /* Region fds are closed once mapped: only the channel and the wake-up
     eventfd stay open, however many regions arrived. */
  CHECK(s.open_fds == 2);
  /* + the eventfd, - the pipe. */
  CHECK(count_fds() == fds_start);

  /* The sender frees its registry once everything was released. */
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 30000, &v), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_PEER_GONE);

  voxshm_attachments_free(att);
  /* The channel fd went with the handle. */
  CHECK(!fd_is_open(chan));
  CHECK(count_fds() == fds_start - 2);

  printf("helper_peer_receiver: %d channel and %d frame payloads verified\n", n_chan, n_frames);
  return 0;
}
