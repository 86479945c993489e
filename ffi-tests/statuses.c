/*
 * Every status reachable from C is reached at least once, with the exact
 * status and a message in voxshm_last_error(). Statuses that need a
 * hostile or broken peer are provoked by playing that peer on the raw
 * socket end: ATTACH messages (16-byte body + one SCM_RIGHTS fd) and
 * voxshm extension messages ("VXSM", kind, 0, count, body) crafted here.
 *
 * VOXSHM_INTERNAL is not reached: it is returned only when the library
 * panics (a bug), every entry point checks its arguments first, and no
 * input from the caller or the peer is known to make it panic. The library
 * has no test hook to force it, deliberately.
 */
#define _GNU_SOURCE
#include "check.h"

/* Receives one message with its fds (at most 4); returns the body length. */
static ssize_t raw_recv_fds(int sock, uint8_t *buf, size_t cap, int *fds, int *nfds) {
  struct pollfd p = {sock, POLLIN, 0};
  CHECK_SYS(poll(&p, 1, 5000) == 1);
  struct iovec iov = {buf, cap};
  union {
    struct cmsghdr h;
    char b[CMSG_SPACE(sizeof(int) * 4)];
  } c;
  struct msghdr m;
  memset(&m, 0, sizeof m);
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = c.b;
  m.msg_controllen = sizeof c.b;
  ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
  CHECK_SYS(n >= 0);
  CHECK((m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) == 0);
  *nfds = 0;
  for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
    if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
      int k = (int)((h->cmsg_len - CMSG_LEN(0)) / sizeof(int));
      memcpy(fds + *nfds, CMSG_DATA(h), sizeof(int) * (size_t)k);
      *nfds += k;
    }
  }
  return n;
}

/* Expects the next message on `raw` to be this extension message. */
static void expect_ext(int raw, uint8_t kind, uint16_t count, const uint8_t *body,
                       size_t body_len) {
  uint8_t b[1024];
  ssize_t n = raw_recv(raw, b, sizeof b, 5000);
  if (n != (ssize_t)(8 + body_len)) FAIL("got a %zd-byte message, expected %zu", n, 8 + body_len);
  CHECK(memcmp(b, "VXSM", 4) == 0);
  CHECK(b[4] == kind);
  CHECK(b[5] == 0);
  CHECK(b[6] == (uint8_t)count && b[7] == (uint8_t)(count >> 8));
  if (body_len > 0 && memcmp(b + 8, body, body_len) != 0) FAIL("message kind %d: body differs", kind);
}

/* The body of a RELEASE entry / RETIRE / RETIRE_ACK. */
static size_t release_entry(uint8_t *b, uint32_t id, uint32_t gen, uint64_t off, uint32_t len) {
  put_u32(b, id);
  put_u32(b + 4, gen);
  put_u64(b + 8, off);
  put_u32(b + 16, len);
  put_u32(b + 20, 0);
  return 24;
}
static size_t region_body(uint8_t *b, uint32_t id, uint32_t gen, uint64_t len) {
  put_u32(b, id);
  put_u32(b + 4, gen);
  put_u64(b + 8, len);
  return 16;
}

/* Attachments on fds[1] with the given options; fds[0] is the raw sender.
   The receiver's HELLO is checked byte for byte and answered. */
static voxshm_attachments *hostile_sender(int *raw, const voxshm_attachments_options *ao) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(fds[1], ao, &att));
  uint8_t hello[16];
  put_u32(hello, 1);
  put_u32(hello + 4, ROLE_RECEIVER);
  put_u64(hello + 8, 1); /* features: the ring path */
  expect_ext(fds[0], EXT_HELLO, 0, hello, sizeof hello);
  *raw = fds[0];
  return att;
}

static void send_attach(int raw, uint32_t id, uint32_t gen, uint64_t len, size_t file_len,
                        int seals, uint64_t seed) {
  int m = make_memfd(file_len, seals, seed);
  raw_attach(raw, id, gen, len, m);
  CHECK_SYS(close(m) == 0);
}

static void attach_validation_and_resolution(void) {
  voxshm_attachments_options ao;
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ao.max_mappings = 2;
  ao.max_mapped_bytes = 8192;
  ao.max_single_mapping = 8192;
  int raw;
  voxshm_attachments *att = hostile_sender(&raw, &ao);
  raw_hello(raw, 1, ROLE_SENDER);
  int fds_start = count_fds();
  voxshm_view v;
  voxshm_ref r;

  /* Not a regular file: a pipe, a character device. */
  int p[2];
  CHECK_SYS(pipe(p) == 0);
  raw_attach(raw, 4, 1, 4096, p[0]);
  close(p[0]);
  close(p[1]);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_NOT_REGULAR_FILE);
  int dev = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  CHECK_SYS(dev >= 0);
  raw_attach(raw, 4, 2, 4096, dev);
  close(dev);
  /* recv reports the fate of a reference, not of another region's ATTACH;
     a reference into the rejected region fails at once with its rejection
     and is handed back. */
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_TIMEOUT);
  r = (voxshm_ref){4, 2, 0, 10, 0};
  raw_ref(raw, &r);
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_NOT_REGULAR_FILE);
  uint8_t rel[24];
  expect_ext(raw, EXT_RELEASE, 1, rel, release_entry(rel, 4, 2, 0, 10));

  /* A file shorter than the mapping it claims (mmap would succeed and the
     read die of SIGBUS). */
  send_attach(raw, 4, 3, 8192, 4096, SEALS_OK, 0);
  r = (voxshm_ref){4, 3, 0, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_FILE_TOO_SHORT);

  /* Unsealed, or only half sealed. */
  send_attach(raw, 4, 4, 4096, 4096, 0, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_NOT_SEALED);
  send_attach(raw, 4, 5, 4096, 4096, F_SEAL_SHRINK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_NOT_SEALED);
  send_attach(raw, 4, 6, 4096, 4096, F_SEAL_GROW | F_SEAL_SEAL, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_NOT_SEALED);

  /* Over max_single_mapping. */
  send_attach(raw, 4, 7, 16384, 16384, SEALS_OK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_MAPPING_TOO_LARGE);

  /* A good region: map 1, generation 5. */
  send_attach(raw, 1, 5, 4096, 4096, SEALS_OK, 11);
  CHECK_OK(voxshm_attachments_poll(att));
  /* The same map_id again, with the same or another generation. */
  send_attach(raw, 1, 5, 4096, 4096, SEALS_OK, 12);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_DUPLICATE_ATTACH);
  send_attach(raw, 1, 6, 4096, 4096, SEALS_OK, 12);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_DUPLICATE_ATTACH);

  /* 4096 mapped + 8192 > max_mapped_bytes. */
  send_attach(raw, 2, 1, 8192, 8192, SEALS_OK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_MAPPED_BYTES_LIMIT);
  send_attach(raw, 2, 2, 4096, 4096, SEALS_OK, 22);
  CHECK_OK(voxshm_attachments_poll(att));
  /* A third mapping: over max_mappings (checked after the single-mapping
     size, before the total bytes). */
  send_attach(raw, 3, 1, 4096, 4096, SEALS_OK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_TOO_MANY_MAPPINGS);
  send_attach(raw, 3, 2, 8192, 8192, SEALS_OK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_TOO_MANY_MAPPINGS);
  send_attach(raw, 3, 3, 16384, 16384, SEALS_OK, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_MAPPING_TOO_LARGE);

  /* Every fd that arrived was closed: mapped or rejected. */
  CHECK(count_fds() == fds_start);
  voxshm_attachments_stats s = att_stats(att);
  CHECK(s.mappings == 2);
  CHECK(s.mapped_bytes == 8192);
  CHECK(s.attaches_received == 15);
  CHECK(s.attaches_rejected == 13);
  CHECK(s.open_fds == 2);

  /* Resolution checks, each with its own status, in the documented order:
     unknown map_id, stale generation, overflow, out of bounds. */
  r = (voxshm_ref){9, 1, 0, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_UNKNOWN_MAP);
  /* Waiting in vain for the region's ATTACH is a timeout. */
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 30, &v), VOXSHM_TIMEOUT);
  r = (voxshm_ref){9, 0, UINT64_MAX, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_UNKNOWN_MAP);
  r = (voxshm_ref){1, 6, 0, 10, 0}; /* a generation not attached yet */
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_UNKNOWN_MAP);
  r = (voxshm_ref){1, 4, 0, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_STALE_GENERATION);
  r = (voxshm_ref){1, 4, UINT64_MAX, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_STALE_GENERATION);
  r = (voxshm_ref){1, 5, UINT64_MAX - 5, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_REF_OVERFLOW);
  r = (voxshm_ref){1, 5, UINT64_MAX, 1, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_REF_OVERFLOW);
  r = (voxshm_ref){1, 5, 4000, 200, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_OUT_OF_BOUNDS);
  r = (voxshm_ref){1, 5, 4096, 1, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_OUT_OF_BOUNDS);
  r = (voxshm_ref){1, 5, (uint64_t)1 << 40, 1, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_OUT_OF_BOUNDS);
  CHECK(att_stats(att).live_views == 0);

  /* The whole region resolves; its release goes back byte-exact. */
  r = (voxshm_ref){1, 5, 0, 4096, 0};
  CHECK_OK(voxshm_attachments_resolve(att, &r, 0, &v));
  CHECK(v.len == 4096);
  CHECK_PATTERN(v.data, v.len, 11);
  CHECK_OK(voxshm_attachments_release(att, &v));
  uint8_t e[24];
  expect_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 1, 5, 0, 4096));

  /* A reference over the channel that does not resolve is reported by
     recv and handed back to the sender at once. */
  r = (voxshm_ref){1, 5, 4000, 200, 0};
  raw_ref(raw, &r);
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_OUT_OF_BOUNDS);
  expect_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 1, 5, 4000, 200));
  r = (voxshm_ref){7, 7, 0, 1, 0};
  raw_ref(raw, &r);
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_UNKNOWN_MAP);
  expect_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 7, 7, 0, 1));
  r = (voxshm_ref){2, 2, 100, 50, 0};
  raw_ref(raw, &r);
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK(v.len == 50);
  for (size_t i = 0; i < 50; i++) CHECK(v.data[i] == pattern_byte(22, 100 + i));

  /* RETIRE of a region still viewed: unmapped, and acknowledged, once the
     view is released. */
  uint8_t rb[16];
  raw_ext(raw, EXT_RETIRE, 0, rb, region_body(rb, 2, 2, 4096));
  CHECK_OK(voxshm_attachments_poll(att));
  CHECK(att_stats(att).mappings == 2);
  CHECK(raw_recv(raw, e, sizeof e, 0) < 0);
  CHECK_OK(voxshm_attachments_release(att, &v));
  expect_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 2, 2, 100, 50));
  uint8_t ack[16];
  put_u32(ack, 2);
  put_u32(ack + 4, 2);
  uint8_t got[64];
  CHECK(raw_recv(raw, got, sizeof got, 5000) == 24);
  CHECK(memcmp(got, "VXSM", 4) == 0 && got[4] == EXT_RETIRE_ACK && memcmp(got + 8, ack, 8) == 0);
  s = att_stats(att);
  CHECK(s.mappings == 1 && s.regions_retired == 1 && s.mapped_bytes == 4096);
  /* RETIRE of an idle region: unmapped and acknowledged at once. */
  raw_ext(raw, EXT_RETIRE, 0, rb, region_body(rb, 1, 5, 4096));
  CHECK_OK(voxshm_attachments_poll(att));
  expect_ext(raw, EXT_RETIRE_ACK, 0, rb, 16);
  s = att_stats(att);
  CHECK(s.mappings == 0 && s.mapped_bytes == 0);
  /* Map 1 comes back with a new generation; the old one is stale. */
  send_attach(raw, 1, 6, 4096, 4096, SEALS_OK, 16);
  r = (voxshm_ref){1, 5, 0, 10, 0};
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 1000, &v), VOXSHM_STALE_GENERATION);
  r = (voxshm_ref){1, 6, 0, 10, 0};
  CHECK_OK(voxshm_attachments_resolve(att, &r, 1000, &v));
  CHECK_PATTERN(v.data, v.len, 16);
  CHECK_OK(voxshm_attachments_release(att, &v));
  expect_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 1, 6, 0, 10));

  /* A malformed message poisons the channel: every later call fails with
     VOXSHM_PROTOCOL, even one that would otherwise have worked. */
  uint8_t body16[16];
  memset(body16, 0, sizeof body16);
  raw_send(raw, body16, sizeof body16, NULL, 0);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_PROTOCOL);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_PROTOCOL);
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_PROTOCOL);
  CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_PROTOCOL);
  CHECK(count_fds() == fds_start);

  voxshm_attachments_free(att);
  close(raw);
}

typedef void (*hostile_fn)(int raw);

static void bad_attach_no_fd(int raw) {
  uint8_t b[16] = {1, 0, 0, 0, 1, 0, 0, 0, 0, 16};
  raw_send(raw, b, sizeof b, NULL, 0);
}
static void bad_attach_two_fds(int raw) {
  uint8_t b[16];
  region_body(b, 1, 1, 4096);
  int f[2] = {make_memfd(4096, SEALS_OK, 0), make_memfd(4096, SEALS_OK, 0)};
  raw_send(raw, b, sizeof b, f, 2);
  close(f[0]);
  close(f[1]);
}
static void bad_attach_length(int raw) {
  uint8_t b[17];
  memset(b, 0, sizeof b);
  region_body(b, 1, 1, 4096);
  int f = make_memfd(4096, SEALS_OK, 0);
  raw_send(raw, b, sizeof b, &f, 1);
  close(f);
}
static void bad_attach_zero_mapping(int raw) { send_attach(raw, 1, 1, 0, 4096, SEALS_OK, 0); }
static void bad_fd_on_extension(int raw) {
  uint8_t b[24];
  memcpy(b, "VXSM", 4);
  b[4] = EXT_HELLO;
  b[5] = 0;
  put_u16(b + 6, 0);
  put_u32(b + 8, 1);
  put_u32(b + 12, ROLE_SENDER);
  put_u64(b + 16, 0);
  int f = make_memfd(4096, SEALS_OK, 0);
  raw_send(raw, b, sizeof b, &f, 1);
  close(f);
}
static void bad_too_many_fds(int raw) {
  /* More fds than the receiver makes room for: MSG_CTRUNC. */
  uint8_t b[16];
  region_body(b, 1, 1, 4096);
  int f[24];
  for (int i = 0; i < 24; i++) f[i] = make_memfd(4096, SEALS_OK, 0);
  raw_send(raw, b, sizeof b, f, 24);
  for (int i = 0; i < 24; i++) close(f[i]);
}
static void bad_unknown_kind(int raw) { raw_ext(raw, 99, 0, NULL, 0); }
static void bad_reserved_byte(int raw) {
  uint8_t b[24];
  memcpy(b, "VXSM", 4);
  b[4] = EXT_RETIRE;
  b[5] = 1;
  put_u16(b + 6, 0);
  region_body(b + 8, 1, 1, 4096);
  raw_send(raw, b, sizeof b, NULL, 0);
}
static void bad_garbage(int raw) { raw_send(raw, "abc", 3, NULL, 0); }
static void bad_long_garbage(int raw) {
  static uint8_t b[10000];
  memset(b, 'V', sizeof b);
  raw_send(raw, b, sizeof b, NULL, 0);
}
static void bad_ref_frame(int raw) {
  uint8_t f[32];
  voxshm_ref r = {1, 1, 0, 1, 0};
  CHECK_OK(voxshm_ref_encode(&r, f));
  f[4] = 0x01; /* SLOT_REF */
  raw_ext(raw, EXT_REF, 0, f, sizeof f);
}
static void bad_ref_count(int raw) {
  uint8_t f[32];
  voxshm_ref r = {1, 1, 0, 1, 0};
  CHECK_OK(voxshm_ref_encode(&r, f));
  raw_ext(raw, EXT_REF, 1, f, sizeof f);
}
static void bad_hello_role(int raw) { raw_hello(raw, 1, ROLE_RECEIVER); }
static void bad_release_from_sender(int raw) {
  uint8_t e[24];
  raw_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 1, 1, 0, 1));
}

/* Each malformed message on a fresh channel: VOXSHM_PROTOCOL, the channel
   stays poisoned, and every fd that came with it is closed. */
static void poisoning_messages(void) {
  static const struct {
    const char *what;
    hostile_fn fn;
  } cases[] = {
      {"16-byte ATTACH body without an fd", bad_attach_no_fd},
      {"ATTACH with two fds", bad_attach_two_fds},
      {"17-byte body with an fd", bad_attach_length},
      {"ATTACH with mapping_length 0", bad_attach_zero_mapping},
      {"extension message with an fd", bad_fd_on_extension},
      {"24 fds (MSG_CTRUNC)", bad_too_many_fds},
      {"unknown extension kind", bad_unknown_kind},
      {"non-zero reserved header byte", bad_reserved_byte},
      {"3 bytes of garbage", bad_garbage},
      {"10000 bytes of garbage (MSG_TRUNC)", bad_long_garbage},
      {"REF with a SLOT_REF frame", bad_ref_frame},
      {"REF with a count", bad_ref_count},
      {"HELLO from a receiver", bad_hello_role},
      {"RELEASE from the sender", bad_release_from_sender},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int raw;
    voxshm_attachments *att = hostile_sender(&raw, NULL);
    int fds_start = count_fds();
    cases[i].fn(raw);
    voxshm_status s = voxshm_attachments_poll(att);
    if (s != VOXSHM_PROTOCOL) {
      FAIL("%s: poll returned %s, expected VOXSHM_PROTOCOL", cases[i].what, voxshm_status_name(s));
    }
    CHECK_STATUS(s, VOXSHM_PROTOCOL);
    /* A good region afterwards is not taken: the channel stays poisoned. */
    send_attach(raw, 5, 1, 4096, 4096, SEALS_OK, 0);
    voxshm_view v;
    s = voxshm_attachments_recv(att, 0, &v);
    if (s != VOXSHM_PROTOCOL) {
      FAIL("%s: the next recv returned %s, expected VOXSHM_PROTOCOL", cases[i].what,
           voxshm_status_name(s));
    }
    CHECK_STATUS(s, VOXSHM_PROTOCOL);
    voxshm_ref r = {5, 1, 0, 1, 0};
    CHECK_STATUS(voxshm_attachments_resolve(att, &r, 0, &v), VOXSHM_PROTOCOL);
    /* The fds that arrived were closed (the good ATTACH's fd is still in
       flight, unread, and not in this process's table). */
    if (count_fds() != fds_start) {
      FAIL("%s: %d fds leaked", cases[i].what, count_fds() - fds_start);
    }
    voxshm_attachments_free(att);
    close(raw);
  }

  /* A sender of another protocol version. */
  int raw;
  voxshm_attachments *att = hostile_sender(&raw, NULL);
  raw_hello(raw, 2, ROLE_SENDER);
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 1000, &v), VOXSHM_VERSION_MISMATCH);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_VERSION_MISMATCH);
  voxshm_attachments_free(att);
  close(raw);
}

/* The registry facing a hostile receiver on the raw end. */
static voxshm_registry *hostile_receiver(int *raw, int say_hello) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.budget = 1 << 20;
  voxshm_registry *reg = NULL;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  if (say_hello) raw_hello(fds[1], 1, ROLE_RECEIVER);
  *raw = fds[1];
  return reg;
}

static void registry_vs_hostile_receiver(void) {
  int raw;
  voxshm_registry *reg = hostile_receiver(&raw, 0);
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  fill_pattern(a.data, 100, 1);

  /* The ATTACH, byte for byte, with a sealed memfd the receiver can only
     read. */
  uint8_t b[64];
  int fds[4], nfds = 0;
  CHECK(raw_recv_fds(raw, b, sizeof b, fds, &nfds) == 16);
  CHECK(nfds == 1);
  CHECK(get_u32(b) == a.map_id && get_u32(b + 4) == a.map_generation);
  CHECK(get_u64(b + 8) == 64 << 10);
  struct stat st;
  CHECK_SYS(fstat(fds[0], &st) == 0);
  CHECK(S_ISREG(st.st_mode) && st.st_size == 64 << 10);
  int seals = fcntl(fds[0], F_GET_SEALS);
  CHECK((seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) ==
        (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL));
#ifdef F_SEAL_FUTURE_WRITE
  if (seals & F_SEAL_FUTURE_WRITE) {
    errno = 0;
    CHECK(mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0) == MAP_FAILED);
    CHECK(pwrite(fds[0], "x", 1, 0) < 0);
  }
#endif
  CHECK(ftruncate(fds[0], 0) < 0 && errno == EPERM);
  CHECK(fcntl(fds[0], F_ADD_SEALS, F_SEAL_WRITE) < 0);
  const uint8_t *map = mmap(NULL, 64 << 10, PROT_READ, MAP_SHARED, fds[0], 0);
  CHECK_SYS(map != MAP_FAILED);
  close(fds[0]);

  /* No HELLO from the receiver yet: send cannot go out. */
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 100, 0), VOXSHM_TIMEOUT);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 100, 30), VOXSHM_TIMEOUT);
  raw_hello(raw, 1, ROLE_RECEIVER);
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  uint8_t hello[16];
  put_u32(hello, 1);
  put_u32(hello + 4, ROLE_SENDER);
  put_u64(hello + 8, 1); /* features: the ring path */
  expect_ext(raw, EXT_HELLO, 0, hello, sizeof hello);
  voxshm_ref r = {a.map_id, a.map_generation, a.map_offset, 100, 0};
  uint8_t frame[32];
  CHECK_OK(voxshm_ref_encode(&r, frame));
  expect_ext(raw, EXT_REF, 0, frame, sizeof frame);
  CHECK_PATTERN(map + a.map_offset, 100, 1);
  munmap((void *)map, 64 << 10);

  /* The receiver gives it back. */
  CHECK(reg_stats(reg).live_leases == 1);
  uint8_t e[24];
  raw_ext(raw, EXT_RELEASE, 1, e, release_entry(e, r.map_id, r.map_generation, r.map_offset, 100));
  CHECK_OK(voxshm_registry_wait_idle(reg, 1000));
  CHECK(reg_stats(reg).live_leases == 0);

  /* Releasing it again, or releasing what was never sent, is ignored: a
     receiver cannot make its sender poison the channel through what it
     does with views. */
  raw_ext(raw, EXT_RELEASE, 1, e, 24);
  raw_ext(raw, EXT_RELEASE, 1, e, release_entry(e, 77, 1, 0, 100));
  CHECK_OK(voxshm_registry_poll(reg));
  CHECK(reg_stats(reg).ignored_releases == 2);
  CHECK_OK(voxshm_registry_wait_idle(reg, 0));
  CHECK_OK(voxshm_registry_alloc(reg, 100, 0, &a));
  CHECK_OK(voxshm_registry_abort(reg, &a));
  voxshm_registry_free(reg);
  close(raw);

  /* Other malformed messages from a receiver. */
  for (int k = 0; k < 6; k++) {
    reg = hostile_receiver(&raw, 1);
    CHECK_OK(voxshm_registry_poll(reg));
    int f;
    switch (k) {
      case 0: /* a message with an fd */
        f = make_memfd(4096, SEALS_OK, 0);
        raw_send(raw, "VXSMabcd", 8, &f, 1);
        close(f);
        break;
      case 1: /* REF goes sender -> receiver only */
        raw_ref(raw, &r);
        break;
      case 2: /* RETIRE_ACK of a region that is not retiring */
        raw_ext(raw, EXT_RETIRE_ACK, 0, b, region_body(b, 1, 1, 4096));
        break;
      case 3: /* a second HELLO claiming to be a sender */
        raw_hello(raw, 1, ROLE_SENDER);
        break;
      case 4: /* RELEASE with no entries */
        raw_ext(raw, EXT_RELEASE, 0, NULL, 0);
        break;
      default: /* an ATTACH: receivers send none */
        f = make_memfd(4096, SEALS_OK, 0);
        raw_attach(raw, 1, 1, 4096, f);
        close(f);
        break;
    }
    CHECK_STATUS(voxshm_registry_poll(reg), VOXSHM_PROTOCOL);
    CHECK_STATUS(voxshm_registry_alloc(reg, 100, 0, &a), VOXSHM_PROTOCOL);
    voxshm_registry_free(reg);
    close(raw);
  }

  /* A receiver of another protocol version. */
  reg = hostile_receiver(&raw, 0);
  raw_hello(raw, 7, ROLE_RECEIVER);
  CHECK_STATUS(voxshm_registry_poll(reg), VOXSHM_VERSION_MISMATCH);
  CHECK_STATUS(voxshm_registry_alloc(reg, 100, 0, &a), VOXSHM_VERSION_MISMATCH);
  voxshm_registry_free(reg);
  close(raw);
}

static void budget_and_modes(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.budget = 64 << 10;
  voxshm_registry *reg;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  voxshm_attachments *att;
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));

  voxshm_allocation a, b;
  CHECK_STATUS(voxshm_registry_alloc(reg, 0, 0, &a), VOXSHM_ZERO_LENGTH);
  CHECK_STATUS(voxshm_registry_alloc(reg, (64 << 10) + 1, 0, &a), VOXSHM_TOO_LARGE);
  CHECK_OK(voxshm_registry_alloc(reg, 64 << 10, 0, &a));
  CHECK_STATUS(voxshm_registry_alloc(reg, 1, 0, &b), VOXSHM_NO_SPACE);
  CHECK_STATUS(voxshm_registry_alloc(reg, 1, 30, &b), VOXSHM_NO_SPACE);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  CHECK_STATUS(voxshm_registry_abort(reg, &a), VOXSHM_INVALID_ALLOCATION);
  CHECK_OK(voxshm_registry_alloc(reg, 1, 0, &b));
  CHECK_OK(voxshm_registry_send(reg, &b, 1));
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_STATUS(voxshm_attachments_release(att, &v), VOXSHM_INVALID_VIEW);
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_wait_idle(reg, 1000));
  voxshm_attachments_free(att);
  /* The hang-up makes the fd readable; the call made then sees it (on the
     ring path a non-blocking call reads the socket only now and then). */
  struct pollfd p = {voxshm_registry_fd(reg), POLLIN, 0};
  CHECK_SYS(poll(&p, 1, 5000) == 1);
  CHECK_STATUS(voxshm_registry_poll(reg), VOXSHM_PEER_GONE);
  CHECK_STATUS(voxshm_registry_alloc(reg, 1, 0, &b), VOXSHM_PEER_GONE);
  voxshm_registry_free(reg);

  /* vox compatibility: references travel only over the caller's own
     transport. */
  CHECK_OK(voxshm_channel_pair(fds));
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.flags = VOXSHM_REGISTRY_VOX_COMPAT;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_registry_alloc(reg, 10, 1000, &a));
  CHECK_STATUS(voxshm_registry_send(reg, &a, 10), VOXSHM_UNSUPPORTED);
  CHECK_STATUS(voxshm_registry_send_timeout(reg, &a, 10, 0), VOXSHM_UNSUPPORTED);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  voxshm_registry_free(reg);
  close(fds[1]);

  uint8_t frame[31];
  voxshm_ref r;
  memset(frame, 0, sizeof frame);
  CHECK_STATUS(voxshm_ref_decode(frame, sizeof frame, &r), VOXSHM_BAD_FRAME);
  CHECK_STATUS(voxshm_registry_options_init(NULL), VOXSHM_INVALID_ARGUMENT);
}

static void sockets_and_paths(void) {
  int fd = -1;
  /* Nothing there at all, or a path through a missing directory. */
  /* Nobody listening, whatever the reason, is one status: a consumer
     started before its producer retries on it alone. */
  CHECK_STATUS(voxshm_connect("/nonexistent-voxshm-dir/socket", &fd), VOXSHM_NO_LISTENER);
  /* Listening where no directory is: a system call failure, named. */
  voxshm_listener *nowhere = NULL;
  CHECK_STATUS(voxshm_listener_new("/nonexistent-voxshm-dir/socket", &nowhere), VOXSHM_IO);
  CHECK(nowhere == NULL);
  /* Something there that nobody listens on. */
  char path[128];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/voxshm-statuses-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
  unlink(path);
  int f = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  CHECK_SYS(f >= 0);
  close(f);
  CHECK_STATUS(voxshm_connect(path, &fd), VOXSHM_NO_LISTENER);
  /* A listener never replaces a path that is not a socket. */
  voxshm_listener *l = NULL;
  CHECK_STATUS(voxshm_listener_new(path, &l), VOXSHM_ADDRESS_IN_USE);
  CHECK_SYS(unlink(path) == 0);
  CHECK(fd == -1);

  CHECK_OK(voxshm_listener_new(path, &l));
  struct stat st;
  CHECK_SYS(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600); /* private by default */
  CHECK_STATUS(voxshm_listener_accept(l, 0, &fd), VOXSHM_TIMEOUT);
  CHECK_STATUS(voxshm_listener_accept(l, 20, &fd), VOXSHM_TIMEOUT);
  /* A live listener's path is refused. */
  voxshm_listener *l2 = NULL;
  CHECK_STATUS(voxshm_listener_new(path, &l2), VOXSHM_ADDRESS_IN_USE);
  CHECK(l2 == NULL);
  /* This process's own listener is allowed by default; its credentials
     can be read on both ends. */
  int cfd = -1, afd = -1;
  CHECK_OK(voxshm_connect(path, &cfd));
  CHECK_OK(voxshm_listener_accept(l, 5000, &afd));
  voxshm_peer_credentials pc;
  CHECK_OK(voxshm_peer_credentials_get(cfd, &pc));
  CHECK(pc.pid == getpid() && pc.uid == geteuid() && pc.gid == getegid());
  CHECK_OK(voxshm_peer_credentials_get(afd, &pc));
  CHECK(pc.pid == getpid() && pc.uid == geteuid());
  CHECK_STATUS(voxshm_peer_credentials_get(afd, NULL), VOXSHM_INVALID_ARGUMENT);
  int nf = open("/dev/null", O_RDONLY | O_CLOEXEC);
  CHECK_SYS(nf >= 0);
  CHECK_STATUS(voxshm_peer_credentials_get(nf, &pc), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_peer_credentials_get(-1, &pc), VOXSHM_INVALID_ARGUMENT);
  close(nf);
  close(cfd);
  close(afd);
  /* A connecting side that requires another user refuses this listener. */
  voxshm_connect_options co;
  CHECK_OK(voxshm_connect_options_init(&co));
  CHECK(co.struct_size == sizeof co && co.allow == VOXSHM_ALLOW_SAME_USER);
  co.allow = VOXSHM_ALLOW_UID_GID;
  co.uid = geteuid() + 1;
  co.gid = VOXSHM_ANY_ID;
  fd = -1;
  CHECK_STATUS(voxshm_connect_with_options(path, &co, &fd), VOXSHM_PEER_NOT_ALLOWED);
  CHECK(fd == -1);
  co.uid = geteuid();
  CHECK_OK(voxshm_connect_with_options(path, &co, &fd));
  close(fd);
  fd = -1;
  co.allow = 77;
  CHECK_STATUS(voxshm_connect_with_options(path, &co, &fd), VOXSHM_INVALID_ARGUMENT);
  /* Callers built against the first version of the options struct. */
  co.allow = VOXSHM_ALLOW_ANYONE;
  co.struct_size = VOXSHM_CONNECT_OPTIONS_V1_SIZE;
  CHECK_OK(voxshm_connect_with_options(path, &co, &fd));
  close(fd);
  fd = -1;
  co.struct_size = 4;
  CHECK_STATUS(voxshm_connect_with_options(path, &co, &fd), VOXSHM_INVALID_ARGUMENT);
  voxshm_listener_free(l);

  /* Listener options: a wider mode, and a policy a connecting root process
     does not meet (only uid+1): the connection is dropped, accept times out. */
  voxshm_listener_options lo;
  CHECK_OK(voxshm_listener_options_init(&lo));
  CHECK(lo.struct_size == sizeof lo && lo.mode == 0600 && lo.allow == VOXSHM_ALLOW_SAME_USER);
  lo.mode = 0660;
  lo.allow = VOXSHM_ALLOW_UID_GID;
  lo.uid = geteuid() + 1;
  lo.gid = VOXSHM_ANY_ID;
  CHECK_OK(voxshm_listener_new_with_options(path, &lo, &l));
  CHECK_SYS(stat(path, &st) == 0);
  mode_t um = umask(0);
  umask(um);
  CHECK((st.st_mode & 0777) == (0660 & ~um));
  CHECK_OK(voxshm_connect(path, &cfd));
  CHECK_STATUS(voxshm_listener_accept(l, 200, &afd), VOXSHM_TIMEOUT);
  close(cfd);
  voxshm_listener_free(l);
  lo.mode = 01777;
  CHECK_STATUS(voxshm_listener_new_with_options(path, &lo, &l), VOXSHM_INVALID_ARGUMENT);
  /* The listener removed its path. */
  CHECK(stat(path, &st) < 0 && errno == ENOENT);
  CHECK_STATUS(voxshm_connect(path, &fd), VOXSHM_NO_LISTENER);
}

/* With the fd table full, creating a region fails with
   VOXSHM_RESOURCE_EXHAUSTED (memfd_create: EMFILE); run in a child so the
   lowered limit does not touch the rest of the test. */
static void fd_exhaustion(void) {
  pid_t pid = fork();
  CHECK_SYS(pid >= 0);
  if (pid == 0) {
    test_begin();
    int fds[2];
    CHECK_OK(voxshm_channel_pair(fds));
    voxshm_registry *reg;
    CHECK_OK(voxshm_registry_new(fds[0], NULL, &reg));
    voxshm_attachments *att;
    CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK_SYS(null_fd >= 0);

    struct rlimit old, low;
    CHECK_SYS(getrlimit(RLIMIT_NOFILE, &old) == 0);
    low = old;
    low.rlim_cur = (rlim_t)count_fds() + 16;
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &low) == 0);
    int fillers[64];
    int n = 0;
    for (;;) {
      int d = fcntl(null_fd, F_DUPFD_CLOEXEC, 0);
      if (d < 0) {
        CHECK_SYS(errno == EMFILE);
        break;
      }
      CHECK(n < 64);
      fillers[n++] = d;
    }
    voxshm_allocation a;
    CHECK_STATUS(voxshm_registry_alloc(reg, 100, 0, &a), VOXSHM_RESOURCE_EXHAUSTED);
    CHECK(strstr(voxshm_last_error(), "memfd_create") != NULL);
    int more[2];
    voxshm_status ps = voxshm_channel_pair(more);
    if (ps == VOXSHM_OK) {
      /* Only under valgrind, whose socketpair wrapper ignores the lowered
         limit (its memfd_create wrapper does not): the fds lie above it. */
      CHECK(more[0] >= (int)low.rlim_cur && more[1] >= (int)low.rlim_cur);
      close(more[0]);
      close(more[1]);
    } else {
      CHECK_STATUS(ps, VOXSHM_RESOURCE_EXHAUSTED);
    }
    /* With room again, the same registry works. */
    for (int i = 0; i < n; i++) close(fillers[i]);
    CHECK_SYS(setrlimit(RLIMIT_NOFILE, &old) == 0);
    CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
    fill_pattern(a.data, 100, 9);
    CHECK_OK(voxshm_registry_send(reg, &a, 100));
    voxshm_view v;
    CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
    CHECK_PATTERN(v.data, v.len, 9);
    CHECK_OK(voxshm_attachments_release(att, &v));
    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
    close(null_fd);
    _exit(0);
  }
  CHECK_CHILD_EXIT(pid, 0);
  note_reached(VOXSHM_RESOURCE_EXHAUSTED);
}

int main(void) {
  test_begin();
  int fds_start = count_fds();
  attach_validation_and_resolution();
  CHECK(count_fds() == fds_start);
  poisoning_messages();
  CHECK(count_fds() == fds_start);
  registry_vs_hostile_receiver();
  CHECK(count_fds() == fds_start);
  budget_and_modes();
  CHECK(count_fds() == fds_start);
  sockets_and_paths();
  CHECK(count_fds() == fds_start);
  fd_exhaustion();

  int missing = 0;
  for (int s = 0; s < STATUS_COUNT; s++) {
    if (s == VOXSHM_INTERNAL) continue; /* see the top of this file */
    if (!was_reached((voxshm_status)s)) {
      fprintf(stderr, "status %s was never reached\n", voxshm_status_name(s));
      missing++;
    }
  }
  CHECK(missing == 0);
  printf("statuses: OK (all %d statuses but VOXSHM_INTERNAL reached)\n", STATUS_COUNT - 1);
  return 0;
}
