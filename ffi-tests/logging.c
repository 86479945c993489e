/*
 * Logging: a C callback receives the library's messages up to the chosen
 * level and nothing above it, with its user_data; level OFF silences it;
 * a NULL callback restores the default (silent, or stderr when VOXSHM_LOG
 * names a level); a bad level is refused and leaves the callback alone.
 */
#define _GNU_SOURCE
#include "check.h"

enum { MAX_RECORDS = 256 };

static struct {
  int n;
  int level[MAX_RECORDS];
  char target[MAX_RECORDS][64];
  char message[MAX_RECORDS][256];
  int wrong_user;
} L;

/* Must not call voxshm: it may run while a handle is locked. */
static void on_log(void *user, int32_t level, const char *target, const char *message) {
  if (user != &L) {
    L.wrong_user++;
    return;
  }
  if (L.n < MAX_RECORDS) {
    L.level[L.n] = level;
    snprintf(L.target[L.n], sizeof L.target[0], "%s", target ? target : "(null)");
    snprintf(L.message[L.n], sizeof L.message[0], "%s", message ? message : "(null)");
  }
  L.n++;
}

static void reset(void) { memset(&L, 0, sizeof L); }

static int count_level(int level) {
  int c = 0;
  for (int i = 0; i < L.n && i < MAX_RECORDS; i++) c += L.level[i] == level;
  return c;
}

static int max_level(void) {
  int m = 0;
  for (int i = 0; i < L.n && i < MAX_RECORDS; i++) m = L.level[i] > m ? L.level[i] : m;
  return m;
}

static int find(int level, const char *text) {
  for (int i = 0; i < L.n && i < MAX_RECORDS; i++) {
    if (L.level[i] == level && strstr(L.message[i], text) != NULL) return i;
  }
  return -1;
}

static void dump(void) {
  for (int i = 0; i < L.n && i < MAX_RECORDS; i++) {
    fprintf(stderr, "  [%d] %s: %s\n", L.level[i], L.target[i], L.message[i]);
  }
}

/* Creates a region (INFO on both sides) and moves one payload. */
static void make_traffic(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  voxshm_registry *reg;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  voxshm_attachments *att;
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 100, 1000, &a));
  CHECK_OK(voxshm_registry_send(reg, &a, 100));
  voxshm_view v;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK_OK(voxshm_attachments_release(att, &v));
  CHECK_OK(voxshm_registry_wait_idle(reg, 1000));
  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

/* A sender that sends an unsealed region: the receiver warns. */
static void make_warning(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_attachments *att;
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));
  int m = make_memfd(4096, 0, 0);
  raw_attach(fds[0], 1, 1, 4096, m);
  close(m);
  CHECK_STATUS(voxshm_attachments_poll(att), VOXSHM_NOT_SEALED);
  voxshm_attachments_free(att);
  close(fds[0]);
}

/* Runs fn with stderr going to a temp file; returns what was written. */
static char *capture_stderr(void (*fn)(void)) {
  static char buf[8192];
  FILE *tmp = tmpfile();
  CHECK_SYS(tmp != NULL);
  fflush(stderr);
  int saved = dup(2);
  CHECK_SYS(saved >= 0);
  CHECK_SYS(dup2(fileno(tmp), 2) == 2);
  fn();
  fflush(stderr);
  CHECK_SYS(dup2(saved, 2) == 2);
  close(saved);
  rewind(tmp);
  size_t n = fread(buf, 1, sizeof buf - 1, tmp);
  buf[n] = '\0';
  fclose(tmp);
  return buf;
}

int main(void) {
  test_begin();
  CHECK(getenv("VOXSHM_LOG") == NULL);
  int fds_start = count_fds();

  /* INFO: region creation is reported, debug detail is not. */
  reset();
  CHECK_OK(voxshm_set_log_callback(on_log, &L, VOXSHM_LOG_INFO));
  make_traffic();
  if (find(VOXSHM_LOG_INFO, "region created") < 0 || find(VOXSHM_LOG_INFO, "region mapped") < 0) {
    dump();
    FAIL("no INFO message about the region (%d messages)", L.n);
  }
  int i = find(VOXSHM_LOG_INFO, "region created");
  CHECK(strncmp(L.target[i], "voxshm", 6) == 0);
  CHECK(strstr(L.message[i], "map_id=1") != NULL);
  if (max_level() > VOXSHM_LOG_INFO) {
    dump();
    FAIL("a message above INFO arrived");
  }
  CHECK(L.wrong_user == 0);

  /* DEBUG lets the per-handle detail through. */
  reset();
  CHECK_OK(voxshm_set_log_callback(on_log, &L, VOXSHM_LOG_DEBUG));
  make_traffic();
  CHECK(count_level(VOXSHM_LOG_DEBUG) > 0);
  CHECK(count_level(VOXSHM_LOG_INFO) > 0);
  CHECK(max_level() <= VOXSHM_LOG_DEBUG);

  /* WARN: a rejected region is reported; region creation is not. */
  reset();
  CHECK_OK(voxshm_set_log_callback(on_log, &L, VOXSHM_LOG_WARN));
  make_traffic();
  make_warning();
  if (find(VOXSHM_LOG_WARN, "ATTACH rejected") < 0) {
    dump();
    FAIL("no WARN message about the rejected region");
  }
  if (max_level() > VOXSHM_LOG_WARN) {
    dump();
    FAIL("a message above WARN arrived");
  }

  /* A bad level is refused and changes nothing. */
  CHECK_STATUS(voxshm_set_log_callback(on_log, &L, 6), VOXSHM_INVALID_ARGUMENT);
  CHECK_STATUS(voxshm_set_log_callback(on_log, &L, -1), VOXSHM_INVALID_ARGUMENT);
  reset();
  make_warning();
  CHECK(find(VOXSHM_LOG_WARN, "ATTACH rejected") >= 0);
  CHECK(max_level() <= VOXSHM_LOG_WARN);

  /* OFF: nothing at all. */
  reset();
  CHECK_OK(voxshm_set_log_callback(on_log, &L, VOXSHM_LOG_OFF));
  make_traffic();
  make_warning();
  CHECK(L.n == 0);

  /* NULL restores the default: silent without VOXSHM_LOG, and the old
     callback is not called any more. */
  CHECK_OK(voxshm_set_log_callback(on_log, &L, VOXSHM_LOG_TRACE));
  reset();
  CHECK_OK(voxshm_set_log_callback(NULL, NULL, VOXSHM_LOG_TRACE));
  const char *err = capture_stderr(make_warning);
  CHECK(L.n == 0);
  if (strstr(err, "voxshm") != NULL) FAIL("the default logger wrote: %s", err);

  /* With VOXSHM_LOG set, the default goes to stderr up to that level. */
  CHECK_SYS(setenv("VOXSHM_LOG", "warn", 1) == 0);
  CHECK_OK(voxshm_set_log_callback(NULL, NULL, VOXSHM_LOG_OFF));
  err = capture_stderr(make_warning);
  if (strstr(err, "ATTACH rejected") == NULL) FAIL("VOXSHM_LOG=warn did not log: \"%s\"", err);
  err = capture_stderr(make_traffic);
  if (strstr(err, "region created") != NULL) FAIL("VOXSHM_LOG=warn logged INFO: %s", err);
  CHECK_SYS(unsetenv("VOXSHM_LOG") == 0);
  CHECK_OK(voxshm_set_log_callback(NULL, NULL, VOXSHM_LOG_OFF));
  err = capture_stderr(make_warning);
  if (strstr(err, "voxshm") != NULL) FAIL("the default logger wrote: %s", err);
  CHECK(L.n == 0);

  CHECK(count_fds() == fds_start);
  printf("logging: OK\n");
  return 0;
}
