/*
 * The mechanisms voxshm is compared with:
 *  - unix_stream: an AF_UNIX SOCK_STREAM socketpair; every payload byte is
 *    copied into the kernel by write() and out of it by read().
 *  - pipe: the same through a pipe.
 *    Unless told otherwise, both get the largest kernel buffers an
 *    unprivileged process may ask for (fs.pipe-max-size for the pipe,
 *    net.core.wmem_max/rmem_max for the socket), so fewer wake-ups are
 *    needed per payload than with the defaults.
 *  - memfd_per_msg: a fresh memfd for every payload, mapped and written by
 *    the producer, passed with SCM_RIGHTS over a SOCK_SEQPACKET socket and
 *    mapped read-only by the consumer (what ipc-channel's shared memory
 *    does). The consumer acknowledges consumed payloads in batches so at
 *    most `inflight` bytes of memfds exist at once, as voxshm's budget
 *    bounds its regions.
 *  - in_process: no IPC at all, one process writes and reads one buffer.
 */
#define _GNU_SOURCE
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- byte streams (unix_stream and pipe) -------------------------------- */

typedef struct stream_side {
  int fd, other_fd;
  uint8_t *buf;
} stream_side;

static uint8_t *stream_acquire(void *p, size_t len) {
  (void)len;
  return ((stream_side *)p)->buf;
}

static int stream_submit(void *p, size_t len) {
  stream_side *s = p;
  return write_all(s->fd, s->buf, len);
}

static const uint8_t *stream_receive(void *p, size_t len) {
  stream_side *s = p;
  return read_all(s->fd, s->buf, len) == 0 ? s->buf : NULL;
}

static int stream_done(void *p) {
  (void)p;
  return 0;
}

static int stream_producer(const bench_plan *pl, void *ctx, void *out) {
  stream_side *s = ctx;
  close(s->other_fd);
  int rc = -1;
  s->buf = bench_alloc_touched(pl->payload);
  if (s->buf != NULL) {
    static const tx_ops ops = {stream_acquire, stream_submit, NULL, NULL};
    rc = bench_producer_loop(pl, &ops, s, out);
    bench_free(s->buf, pl->payload);
  }
  close(s->fd);
  return rc;
}

static int stream_consumer(const bench_plan *pl, void *ctx, void *out) {
  stream_side *s = ctx;
  close(s->other_fd);
  s->buf = bench_alloc_touched(pl->payload);
  if (s->buf == NULL) {
    return -1;
  }
  static const rx_ops ops = {stream_receive, stream_done};
  return bench_consumer_loop(pl, &ops, s, out);
}

static long sysctl_long(const char *path, long fallback) {
  FILE *f = fopen(path, "r");
  long v = fallback;
  if (f != NULL) {
    if (fscanf(f, "%ld", &v) != 1) {
      v = fallback;
    }
    fclose(f);
  }
  return v;
}

static int run_stream(const bench_plan *pl, int wfd, int rfd, case_result *res) {
  stream_side tx = {wfd, rfd, NULL}, rx = {rfd, wfd, NULL};
  producer_report prep;
  consumer_report crep;
  int rc = bench_two_process(pl, stream_producer, &tx, stream_consumer, &rx, &prep, &crep);
  if (rc == 0) {
    bench_fill_result(pl, &prep, &crep, res);
  }
  return rc;
}

int mech_unix_stream(const bench_plan *pl, case_result *res) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return bench_fail("socketpair(SOCK_STREAM): %s", strerror(errno));
  }
  if (pl->big_buffers) {
    int snd = (int)sysctl_long("/proc/sys/net/core/wmem_max", 212992);
    int rcv = (int)sysctl_long("/proc/sys/net/core/rmem_max", 212992);
    for (int i = 0; i < 2; i++) {
      setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &snd, sizeof snd);
      setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    }
  }
  return run_stream(pl, sv[0], sv[1], res);
}

int mech_pipe(const bench_plan *pl, case_result *res) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return bench_fail("pipe2: %s", strerror(errno));
  }
  if (pl->big_buffers) {
    fcntl(p[1], F_SETPIPE_SZ, (int)sysctl_long("/proc/sys/fs/pipe-max-size", 1048576));
  }
  return run_stream(pl, p[1], p[0], res);
}

/* ---- a memfd per message ------------------------------------------------ */

typedef struct memfd_side {
  int sock, other_fd;
  uint64_t window;    /* most payloads in flight */
  uint64_t ack_every; /* the consumer acknowledges this many at once */
  uint64_t count;     /* sent (producer) or consumed (consumer) */
  uint64_t acked;     /* producer: consumed, as last acknowledged */
  int mfd;
  uint8_t *map;
  size_t len;
} memfd_side;

static int memfd_read_ack(memfd_side *m, int flags) {
  uint64_t v;
  ssize_t n;
  do {
    n = recv(m->sock, &v, sizeof v, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return 1;
  }
  if (n != (ssize_t)sizeof v) {
    return bench_fail("memfd: acknowledgement: %s", n < 0 ? strerror(errno) : "short or EOF");
  }
  if (v > m->acked) {
    m->acked = v;
  }
  return 0;
}

static uint8_t *memfd_acquire(void *p, size_t len) {
  memfd_side *m = p;
  /* Wait for room in the window, then take every acknowledgement queued. */
  while (m->count - m->acked >= m->window) {
    if (memfd_read_ack(m, 0) < 0) {
      return NULL;
    }
    int r;
    while ((r = memfd_read_ack(m, MSG_DONTWAIT)) == 0) {
    }
    if (r < 0) {
      return NULL;
    }
  }
  m->mfd = memfd_create("voxshm-bench", MFD_CLOEXEC);
  if (m->mfd < 0) {
    bench_fail("memfd_create: %s", strerror(errno));
    return NULL;
  }
  if (ftruncate(m->mfd, (off_t)len) != 0) {
    bench_fail("ftruncate: %s", strerror(errno));
    return NULL;
  }
  void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->mfd, 0);
  if (a == MAP_FAILED) {
    bench_fail("mmap (producer): %s", strerror(errno));
    return NULL;
  }
  m->map = a;
  m->len = len;
  return a;
}

static int memfd_submit(void *p, size_t len) {
  memfd_side *m = p;
  munmap(m->map, m->len);
  uint64_t body = len;
  struct iovec iov = {&body, sizeof body};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  memset(&ctl, 0, sizeof ctl);
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.space;
  msg.msg_controllen = sizeof ctl.space;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &m->mfd, sizeof(int));
  ssize_t n;
  do {
    n = sendmsg(m->sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  close(m->mfd);
  if (n != (ssize_t)sizeof body) {
    return bench_fail("sendmsg (memfd): %s", n < 0 ? strerror(errno) : "short");
  }
  m->count++;
  return 0;
}

static const uint8_t *memfd_receive(void *p, size_t len) {
  memfd_side *m = p;
  uint64_t body = 0;
  struct iovec iov = {&body, sizeof body};
  union {
    struct cmsghdr h;
    char space[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.space;
  msg.msg_controllen = sizeof ctl.space;
  ssize_t n;
  do {
    n = recvmsg(m->sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
  if (n != (ssize_t)sizeof body || c == NULL || c->cmsg_type != SCM_RIGHTS || body != len) {
    bench_fail("recvmsg (memfd): %s", n < 0 ? strerror(errno) : "bad message");
    return NULL;
  }
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  void *a = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (a == MAP_FAILED) {
    bench_fail("mmap (consumer): %s", strerror(errno));
    return NULL;
  }
  m->map = a;
  m->len = len;
  return a;
}

static int memfd_done(void *p) {
  memfd_side *m = p;
  munmap(m->map, m->len);
  m->count++;
  if (m->count % m->ack_every == 0) {
    uint64_t v = m->count;
    ssize_t n;
    do {
      n = send(m->sock, &v, sizeof v, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    /* After the last message the producer may have closed its end. */
    if (n != (ssize_t)sizeof v && !(n < 0 && (errno == EPIPE || errno == ECONNRESET))) {
      return bench_fail("send (memfd acknowledgement): %s", n < 0 ? strerror(errno) : "short");
    }
  }
  return 0;
}

static int memfd_producer(const bench_plan *pl, void *ctx, void *out) {
  memfd_side *m = ctx;
  close(m->other_fd);
  static const tx_ops ops = {memfd_acquire, memfd_submit, NULL, NULL};
  int rc = bench_producer_loop(pl, &ops, m, out);
  /* Read the remaining acknowledgements until the consumer hangs up:
   * closing a socket with unread data resets the connection, and the
   * consumer would lose the payloads still queued for it. */
  for (;;) {
    uint64_t v;
    ssize_t n = recv(m->sock, &v, sizeof v, 0);
    if (n == 0 || (n < 0 && errno != EINTR)) {
      break;
    }
  }
  close(m->sock);
  return rc;
}

static int memfd_consumer(const bench_plan *pl, void *ctx, void *out) {
  memfd_side *m = ctx;
  close(m->other_fd);
  static const rx_ops ops = {memfd_receive, memfd_done};
  return bench_consumer_loop(pl, &ops, m, out);
}

int mech_memfd(const bench_plan *pl, case_result *res) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return bench_fail("socketpair(SOCK_SEQPACKET): %s", strerror(errno));
  }
  uint64_t window = pl->inflight / pl->payload;
  if (window < 2) {
    window = 2;
  }
  if (window > 256) {
    window = 256;
  }
  uint64_t ack_every = window / 4 ? window / 4 : 1;
  memfd_side tx, rx;
  memset(&tx, 0, sizeof tx);
  memset(&rx, 0, sizeof rx);
  tx.sock = rx.other_fd = sv[0];
  rx.sock = tx.other_fd = sv[1];
  tx.window = rx.window = window;
  tx.ack_every = rx.ack_every = ack_every;
  producer_report prep;
  consumer_report crep;
  int rc = bench_two_process(pl, memfd_producer, &tx, memfd_consumer, &rx, &prep, &crep);
  if (rc == 0) {
    bench_fill_result(pl, &prep, &crep, res);
  }
  return rc;
}

/* ---- in process --------------------------------------------------------- */

int mech_in_process(const bench_plan *pl, case_result *res) {
  uint8_t *buf = bench_alloc_touched(pl->payload);
  if (buf == NULL) {
    return -1;
  }
  producer_report prep;
  consumer_report crep;
  memset(&prep, 0, sizeof prep);
  memset(&crep, 0, sizeof crep);
  cpu_set_t saved, one;
  if (pl->pin) {
    sched_getaffinity(0, sizeof saved, &saved);
    CPU_ZERO(&one);
    CPU_SET(pl->cpu_tx, &one);
    sched_setaffinity(0, sizeof one, &one);
  }
  int rc = bench_in_process_loop(pl, buf, &prep, &crep);
  if (pl->pin) {
    sched_setaffinity(0, sizeof saved, &saved);
  }
  bench_free(buf, pl->payload);
  if (rc == 0) {
    bench_fill_result(pl, &prep, &crep, res);
  }
  return rc;
}
