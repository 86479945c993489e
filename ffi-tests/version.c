/*
 * Version and naming: the library reports the package version it was built
 * as and the ABI version of this header, and names every status.
 */
#define _GNU_SOURCE
#include <limits.h>

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
};

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

  printf("version: OK (%s, ABI %u)\n", v, voxshm_abi_version());
  return 0;
}
