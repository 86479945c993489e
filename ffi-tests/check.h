/*
 * Shared helpers of the C tests of the voxshm ABI.
 *
 * Every test program defines _GNU_SOURCE, includes this header, calls
 * test_begin() first and prints "<name>: OK" last. A failed check prints
 * file:line, what was expected, the status names and voxshm_last_error(),
 * then aborts, so the harness sees a non-zero exit with the reason.
 */
#ifndef VOXSHM_FFI_TESTS_CHECK_H
#define VOXSHM_FFI_TESTS_CHECK_H

#ifndef _GNU_SOURCE
#error "define _GNU_SOURCE before including check.h"
#endif

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "voxshm.h"

/* Number of voxshm_status values (VOXSHM_OK .. VOXSHM_VERSION_MISMATCH). */
#define STATUS_COUNT (VOXSHM_NO_LISTENER + 1)

/* Which statuses CHECK_STATUS has seen returned in this process. */
static int check_reached_[STATUS_COUNT];

static inline void check_die_(void) {
  fflush(stdout);
  fflush(stderr);
  abort();
}

#define FAIL(...)                                                             \
  do {                                                                        \
    fprintf(stderr, "%s:%d: FAILED: ", __FILE__, __LINE__);                   \
    fprintf(stderr, __VA_ARGS__);                                             \
    fprintf(stderr, " (voxshm_last_error: \"%s\")\n", voxshm_last_error());   \
    check_die_();                                                             \
  } while (0)

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (!(cond)) {                                                            \
      FAIL("CHECK(%s)", #cond);                                               \
    }                                                                         \
  } while (0)

/* Checks a system call result: prints errno on failure. */
#define CHECK_SYS(cond)                                                       \
  do {                                                                        \
    if (!(cond)) {                                                            \
      FAIL("CHECK_SYS(%s): errno %d (%s)", #cond, errno, strerror(errno));    \
    }                                                                         \
  } while (0)

static inline void check_status_(const char *file, int line, const char *expr,
                                 voxshm_status got, voxshm_status want) {
  const char *err = voxshm_last_error();
  if (got != want) {
    fprintf(stderr,
            "%s:%d: FAILED: %s returned %s (%d), expected %s (%d); "
            "voxshm_last_error: \"%s\"\n",
            file, line, expr, voxshm_status_name((int)got), (int)got,
            voxshm_status_name((int)want), (int)want, err ? err : "(NULL)");
    check_die_();
  }
  if (want != VOXSHM_OK) {
    /* The message of a failure starts with its status name, then says
       what went wrong. */
    const char *name = voxshm_status_name((int)want);
    size_t n = strlen(name);
    if (err == NULL || strncmp(err, name, n) != 0 || strlen(err) < n + 3) {
      fprintf(stderr,
              "%s:%d: FAILED: %s returned %s as expected, but "
              "voxshm_last_error() is \"%s\", not a message about it\n",
              file, line, expr, name, err ? err : "(NULL)");
      check_die_();
    }
  }
  if ((int)got >= 0 && (int)got < STATUS_COUNT) {
    /* Atomic: threads of one test check statuses concurrently. */
    __atomic_store_n(&check_reached_[got], 1, __ATOMIC_RELAXED);
  }
}

/* Asserts that `expr` returns exactly `want` (and, for a failure, that
   voxshm_last_error() describes it). */
#define CHECK_STATUS(expr, want) check_status_(__FILE__, __LINE__, #expr, (expr), (want))
#define CHECK_OK(expr) CHECK_STATUS(expr, VOXSHM_OK)

/* Marks a status as reached when it was observed by another process. */
static inline void note_reached(voxshm_status s) {
  __atomic_store_n(&check_reached_[s], 1, __ATOMIC_RELAXED);
}
static inline int was_reached(voxshm_status s) {
  return __atomic_load_n(&check_reached_[s], __ATOMIC_RELAXED);
}

/* Kills the test if it runs away; alarms do not survive fork or exec, so
   every process calls this. */
static inline void test_begin(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  alarm(150);
}

/* True when the harness asks for a small run (under valgrind). */
static inline int small_run(void) {
  const char *s = getenv("VOXSHM_CTEST_SMALL");
  return s != NULL && *s != '\0' && strcmp(s, "0") != 0;
}

/* Open file descriptors of this process (entries of /proc/self/fd). */
static inline int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  CHECK_SYS(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] != '.') {
      n++;
    }
  }
  closedir(d);
  return n - 1; /* the directory's own fd */
}

static inline int fd_is_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Both handles' counters, with struct_size set. */
static inline voxshm_registry_stats reg_stats(const voxshm_registry *reg) {
  voxshm_registry_stats s;
  memset(&s, 0xAB, sizeof s); /* every field must be written */
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_registry_get_stats(reg, &s));
  CHECK(s.struct_size == sizeof s);
  return s;
}

static inline voxshm_attachments_stats att_stats(const voxshm_attachments *att) {
  voxshm_attachments_stats s;
  memset(&s, 0xAB, sizeof s); /* every field must be written */
  s.struct_size = sizeof s;
  CHECK_OK(voxshm_attachments_get_stats(att, &s));
  CHECK(s.struct_size == sizeof s);
  return s;
}

/* The byte at index i of payload `seed`: differs between payloads and
   between offsets, so a shifted, truncated or foreign payload shows. */
static inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  return (uint8_t)(seed * 131u + i * 7u + (i >> 8) + (i >> 16));
}

static inline void fill_pattern(uint8_t *p, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i++) {
    p[i] = pattern_byte(seed, i);
  }
}

/* Index of the first wrong byte, or -1 when the payload is intact. */
static inline long long find_mismatch(const uint8_t *p, size_t len, uint64_t seed) {
  for (size_t i = 0; i < len; i++) {
    if (p[i] != pattern_byte(seed, i)) {
      return (long long)i;
    }
  }
  return -1;
}

#define CHECK_PATTERN(p, len, seed)                                           \
  do {                                                                        \
    long long at_ = find_mismatch((p), (len), (seed));                        \
    if (at_ >= 0) {                                                           \
      FAIL("payload %llu of %zu bytes differs at byte %lld",                  \
           (unsigned long long)(seed), (size_t)(len), at_);                   \
    }                                                                         \
  } while (0)

/* Waits for a child and asserts it exited with `code`. */
static inline void check_child_exit_(const char *file, int line, pid_t pid, int code) {
  int st = 0;
  pid_t r;
  do {
    r = waitpid(pid, &st, 0);
  } while (r < 0 && errno == EINTR);
  if (r != pid) {
    fprintf(stderr, "%s:%d: FAILED: waitpid(%d): %s\n", file, line, (int)pid,
            strerror(errno));
    check_die_();
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != code) {
    if (WIFSIGNALED(st)) {
      fprintf(stderr, "%s:%d: FAILED: child %d died of signal %d, expected exit %d\n",
              file, line, (int)pid, WTERMSIG(st), code);
    } else {
      fprintf(stderr, "%s:%d: FAILED: child %d exited %d, expected %d\n", file, line,
              (int)pid, WEXITSTATUS(st), code);
    }
    check_die_();
  }
}
#define CHECK_CHILD_EXIT(pid, code) check_child_exit_(__FILE__, __LINE__, (pid), (code))

/* ---- Raw wire access, for playing a hostile or scripted peer ---------- */

static inline void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void put_u32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void put_u64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_u64(const uint8_t *p) {
  return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* Extension message kinds (voxshm's own messages; see src/wire.rs). */
enum { EXT_HELLO = 1, EXT_REF = 2, EXT_RELEASE = 3, EXT_RETIRE = 4, EXT_RETIRE_ACK = 5 };
enum { ROLE_SENDER = 1, ROLE_RECEIVER = 2 };

/* Sends one message with `nfds` fds as SCM_RIGHTS; returns sendmsg's result. */
static inline ssize_t raw_sendmsg(int sock, const void *buf, size_t len, const int *fds,
                                  int nfds) {
  struct iovec iov = {(void *)buf, len};
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * 64)];
  } c;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  memset(&c, 0, sizeof c);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (nfds > 0) {
    CHECK(nfds <= 64);
    m.msg_control = c.b;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
    struct cmsghdr *h = CMSG_FIRSTHDR(&m);
    h->cmsg_level = SOL_SOCKET;
    h->cmsg_type = SCM_RIGHTS;
    h->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
    memcpy(CMSG_DATA(h), fds, sizeof(int) * (size_t)nfds);
  }
  return sendmsg(sock, &m, MSG_NOSIGNAL);
}

static inline void raw_send(int sock, const void *buf, size_t len, const int *fds, int nfds) {
  CHECK_SYS(raw_sendmsg(sock, buf, len, fds, nfds) == (ssize_t)len);
}

/* ATTACH: 16-byte body {u32 map_id, u32 generation, u64 mapping_length}
   with exactly one fd. */
static inline void raw_attach(int sock, uint32_t map_id, uint32_t gen, uint64_t len, int fd) {
  uint8_t b[16];
  put_u32(b, map_id);
  put_u32(b + 4, gen);
  put_u64(b + 8, len);
  raw_send(sock, b, sizeof b, &fd, 1);
}

/* An extension message: "VXSM", u8 kind, u8 0, u16 count, then `body`. */
static inline void raw_ext(int sock, uint8_t kind, uint16_t count, const void *body,
                           size_t body_len) {
  uint8_t b[8 + 512];
  CHECK(body_len <= 512);
  memcpy(b, "VXSM", 4);
  b[4] = kind;
  b[5] = 0;
  put_u16(b + 6, count);
  if (body_len > 0) {
    memcpy(b + 8, body, body_len);
  }
  raw_send(sock, b, 8 + body_len, NULL, 0);
}

static inline void raw_hello(int sock, uint32_t version, uint32_t role) {
  uint8_t body[16];
  put_u32(body, version);
  put_u32(body + 4, role);
  put_u64(body + 8, 0);
  raw_ext(sock, EXT_HELLO, 0, body, sizeof body);
}

/* A REF extension message carrying `r` as an MMAP_REF frame. */
static inline void raw_ref(int sock, const voxshm_ref *r) {
  uint8_t frame[VOXSHM_REF_FRAME_LEN];
  CHECK_OK(voxshm_ref_encode(r, frame));
  raw_ext(sock, EXT_REF, 0, frame, sizeof frame);
}

/* Receives one message, waiting up to timeout_ms; returns its length, or
   -1 when nothing arrived. Any fds that came with it are closed. */
static inline ssize_t raw_recv(int sock, uint8_t *buf, size_t cap, int timeout_ms) {
  struct pollfd p = {sock, POLLIN, 0};
  int n = poll(&p, 1, timeout_ms);
  CHECK_SYS(n >= 0);
  if (n == 0) {
    return -1;
  }
  ssize_t r = recv(sock, buf, cap, MSG_DONTWAIT);
  if (r < 0 && errno == EAGAIN) {
    return -1;
  }
  CHECK_SYS(r >= 0);
  return r;
}

/* Reads and discards every message waiting on `sock`. */
static inline int raw_drain(int sock) {
  uint8_t b[8192];
  int n = 0;
  while (raw_recv(sock, b, sizeof b, 0) >= 0) {
    n++;
  }
  return n;
}

/* A memfd of `size` bytes, filled with pattern `seed`, with `seals` added
   (0 for none). */
static inline int make_memfd(size_t size, int seals, uint64_t seed) {
  int fd = memfd_create("voxshm-ctest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  CHECK_SYS(fd >= 0);
  CHECK_SYS(ftruncate(fd, (off_t)size) == 0);
  if (size > 0) {
    uint8_t *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK_SYS(p != MAP_FAILED);
    fill_pattern(p, size, seed);
    CHECK_SYS(munmap(p, size) == 0);
  }
  if (seals != 0) {
    CHECK_SYS(fcntl(fd, F_ADD_SEALS, seals) == 0);
  }
  return fd;
}

#define SEALS_OK (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

#endif /* VOXSHM_FFI_TESTS_CHECK_H */
