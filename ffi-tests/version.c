/*
 * Version and naming: the library reports the package version it was built
 * as and the ABI version of this header, and names every status.
 */
#define _GNU_SOURCE
#include <limits.h>

#include <unistd.h>

#include "check.h"

#ifndef VOXSHM_EXPECTED_VERSION
#error "build with -DVOXSHM_EXPECTED_VERSION=\"<Cargo package version>\""
#endif

#define NAME(s) {s, #s}
static const struct {
  voxshm_status status;
  const char *name;
} NAMES[] = {
    NAME(VOXSHM_OK),
    NAME(VOXSHM_INVALID_ARGUMENT),
    NAME(VOXSHM_ZERO_LENGTH),
    NAME(VOXSHM_TOO_LARGE),
    NAME(VOXSHM_NO_SPACE),
    NAME(VOXSHM_TIMEOUT),
    NAME(VOXSHM_PEER_GONE),
    NAME(VOXSHM_PROTOCOL),
    NAME(VOXSHM_UNKNOWN_MAP),
    NAME(VOXSHM_STALE_GENERATION),
    NAME(VOXSHM_REF_OVERFLOW),
    NAME(VOXSHM_OUT_OF_BOUNDS),
    NAME(VOXSHM_NOT_REGULAR_FILE),
    NAME(VOXSHM_FILE_TOO_SHORT),
    NAME(VOXSHM_NOT_SEALED),
    NAME(VOXSHM_TOO_MANY_MAPPINGS),
    NAME(VOXSHM_MAPPED_BYTES_LIMIT),
    NAME(VOXSHM_MAPPING_TOO_LARGE),
    NAME(VOXSHM_DUPLICATE_ATTACH),
    NAME(VOXSHM_INVALID_ALLOCATION),
    NAME(VOXSHM_INVALID_VIEW),
    NAME(VOXSHM_IO),
    NAME(VOXSHM_RESOURCE_EXHAUSTED),
    NAME(VOXSHM_INTERNAL),
    NAME(VOXSHM_UNSUPPORTED),
    NAME(VOXSHM_BAD_FRAME),
    NAME(VOXSHM_VERSION_MISMATCH),
    NAME(VOXSHM_PEER_NOT_ALLOWED),
    NAME(VOXSHM_ADDRESS_IN_USE),
    NAME(VOXSHM_NO_LISTENER),
};

/* A caller built against the first version of a versioned struct passes
   that version's size: it must keep working once fields are added. */
static void first_version_sizes(void) {
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  CHECK(ro.struct_size == sizeof ro && sizeof ro >= VOXSHM_REGISTRY_OPTIONS_V1_SIZE);
  ro.struct_size = VOXSHM_REGISTRY_OPTIONS_V1_SIZE;
  voxshm_attachments_options ao;
  CHECK_OK(voxshm_attachments_options_init(&ao));
  ao.struct_size = VOXSHM_ATTACHMENTS_OPTIONS_V1_SIZE;
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry *reg;
  voxshm_attachments *att;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));

  voxshm_registry_stats rs;
  memset(&rs, 0xAB, sizeof rs);
  rs.struct_size = VOXSHM_REGISTRY_STATS_V1_SIZE;
  CHECK_OK(voxshm_registry_get_stats(reg, &rs));
  CHECK(rs.struct_size == VOXSHM_REGISTRY_STATS_V1_SIZE && rs.budget == ro.budget);
  voxshm_attachments_stats as;
  as.struct_size = VOXSHM_ATTACHMENTS_STATS_V1_SIZE;
  CHECK_OK(voxshm_attachments_get_stats(att, &as));
  CHECK(as.struct_size == VOXSHM_ATTACHMENTS_STATS_V1_SIZE && as.open_fds == 2);

  /* Smaller than any version: refused, and nothing written. */
  rs.struct_size = VOXSHM_REGISTRY_STATS_V1_SIZE - 8;
  CHECK_STATUS(voxshm_registry_get_stats(reg, &rs), VOXSHM_INVALID_ARGUMENT);
  ro.struct_size = VOXSHM_REGISTRY_OPTIONS_V1_SIZE - 8;
  voxshm_registry *none = NULL;
  int more[2];
  CHECK_OK(voxshm_channel_pair(more));
  CHECK_STATUS(voxshm_registry_new(more[0], &ro, &none), VOXSHM_INVALID_ARGUMENT);
  CHECK(none == NULL);
  ro.struct_size = sizeof ro + 8; /* from a newer header than this library */
  CHECK_STATUS(voxshm_registry_new(more[0], &ro, &none), VOXSHM_INVALID_ARGUMENT);
  close(more[0]);
  close(more[1]);

  voxshm_listener_options lo;
  CHECK_OK(voxshm_listener_options_init(&lo));
  CHECK(lo.struct_size == sizeof lo && sizeof lo >= VOXSHM_LISTENER_OPTIONS_V1_SIZE);
  voxshm_connect_options co;
  CHECK_OK(voxshm_connect_options_init(&co));
  CHECK(co.struct_size == sizeof co && sizeof co >= VOXSHM_CONNECT_OPTIONS_V1_SIZE);

  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
}

int main(void) {
  test_begin();

  const char *v = voxshm_version();
  CHECK(v != NULL);
  if (strcmp(v, VOXSHM_EXPECTED_VERSION) != 0) {
    FAIL("voxshm_version() is \"%s\", the package is \"%s\"", v, VOXSHM_EXPECTED_VERSION);
  }
  /* Static storage: the same pointer every time. */
  CHECK(voxshm_version() == v);

  CHECK(voxshm_abi_version() == VOXSHM_ABI_VERSION);
  CHECK(VOXSHM_REF_FRAME_LEN == 32);

  /* Every status has its own name; the numbers are dense from 0. */
  CHECK(sizeof NAMES / sizeof NAMES[0] == STATUS_COUNT);
  for (int i = 0; i < STATUS_COUNT; i++) {
    CHECK((int)NAMES[i].status == i);
    const char *n = voxshm_status_name(i);
    CHECK(n != NULL);
    if (strcmp(n, NAMES[i].name) != 0) {
      FAIL("voxshm_status_name(%d) is \"%s\", expected \"%s\"", i, n, NAMES[i].name);
    }
  }
  /* Out of range: a fixed name, never NULL. */
  const int bad[] = {-1, STATUS_COUNT, STATUS_COUNT + 1, 1000, INT_MAX, INT_MIN};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    const char *n = voxshm_status_name(bad[i]);
    CHECK(n != NULL);
    if (strcmp(n, "VOXSHM_UNKNOWN_STATUS") != 0) {
      FAIL("voxshm_status_name(%d) is \"%s\"", bad[i], n);
    }
  }

  /* Nothing has failed on this thread yet. */
  CHECK(voxshm_last_error() != NULL);
  CHECK(strcmp(voxshm_last_error(), "") == 0);

  first_version_sizes();
  printf("version: OK (%s, ABI %u)\n", v, voxshm_abi_version());
  return 0;
}
