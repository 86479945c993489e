/*
 * The happy path in one process, as a user meets the API: a channel pair,
 * a registry and attachments on its two ends, alloc/write/send/recv/
 * verify/release, publish + voxshm_ref_encode/decode + resolve, stats,
 * wait_idle, event-loop use of the fds, and region retirement with map_id
 * reuse under a new generation.
 */
#define _GNU_SOURCE
#include "check.h"

/* In one process nobody else drives the two ends: let each side apply
   what the other sent until the registry is idle (every lease released,
   every retirement acknowledged). */
static void settle(const voxshm_registry *reg, const voxshm_attachments *att) {
  for (int i = 0; i < 8; i++) {
    CHECK_OK(voxshm_registry_poll(reg));
    CHECK_OK(voxshm_attachments_poll(att));
    voxshm_status st = voxshm_registry_wait_idle(reg, 0);
    if (st == VOXSHM_OK) {
      return;
    }
    CHECK_STATUS(st, VOXSHM_TIMEOUT);
  }
  FAIL("the registry did not become idle");
}

static void send_one(const voxshm_registry *reg, size_t len, uint64_t seed,
                     voxshm_allocation *out) {
  voxshm_allocation a;
  memset(&a, 0, sizeof a);
  CHECK_OK(voxshm_registry_alloc(reg, len, 1000, &a));
  CHECK(a.data != NULL);
  CHECK(a.capacity >= len);
  /* Payloads start on a cache line. */
  CHECK((uintptr_t)a.data % 64 == 0);
  CHECK(a.map_offset % 64 == 0);
  fill_pattern(a.data, len, seed);
  CHECK_OK(voxshm_registry_send(reg, &a, len));
  if (out) {
    *out = a;
  }
}

static void test_channel_roundtrips(void) {
  int fds[2] = {-1, -1};
  CHECK_OK(voxshm_channel_pair(fds));
  CHECK(fds[0] >= 0 && fds[1] >= 0 && fds[0] != fds[1]);
  CHECK(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
  CHECK(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);

  voxshm_registry_options ro;
  memset(&ro, 0xCD, sizeof ro);
  CHECK_OK(voxshm_registry_options_init(&ro));
  CHECK(ro.struct_size == sizeof ro);
  CHECK(ro.region_size == 64u << 20);
  CHECK(ro.budget == 1u << 30);
  CHECK(ro.keep_warm == 64u << 20);
  CHECK(ro.send_timeout_ms == 10000);
  CHECK(ro.flags == 0);
  ro.region_size = 1 << 20;
  ro.budget = 16 << 20;
  ro.keep_warm = 1 << 20;

  voxshm_attachments_options ao;
  memset(&ao, 0xCD, sizeof ao);
  CHECK_OK(voxshm_attachments_options_init(&ao));
  CHECK(ao.struct_size == sizeof ao);
  CHECK(ao.max_mappings == 1024);
  CHECK(ao.flags == 0);
  CHECK(ao.max_mapped_bytes == (uint64_t)16 << 30);
  CHECK(ao.max_single_mapping == (uint64_t)4 << 30);
  CHECK(ao.send_timeout_ms == 10000);

  voxshm_registry *reg = NULL;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  CHECK(reg != NULL);
  CHECK(voxshm_registry_fd(reg) == fds[0]);
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(fds[1], &ao, &att));
  CHECK(att != NULL);
  CHECK(voxshm_attachments_fd(att) == fds[1]);

  /* Nothing sent yet. */
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_TIMEOUT);
  CHECK_STATUS(voxshm_attachments_recv(att, 20, &v), VOXSHM_TIMEOUT);
  CHECK_OK(voxshm_registry_wait_idle(reg, 0));

  /* One payload at a time, of sizes around the alignment and the region
     size; the last one needs a region of its own. */
  const size_t sizes[] = {1, 2, 63, 64, 65, 4095, 4096, 100000, 1 << 20, (3 << 20) + 5};
  const size_t n_sizes = sizeof sizes / sizeof sizes[0];
  uint64_t bytes = 0;
  for (size_t i = 0; i < n_sizes; i++) {
    voxshm_allocation a;
    send_one(reg, sizes[i], i, &a);
    bytes += sizes[i];
    /* Event-loop use: the channel fd becomes readable. */
    struct pollfd p = {voxshm_attachments_fd(att), POLLIN, 0};
    CHECK_SYS(poll(&p, 1, 5000) == 1);
    memset(&v, 0, sizeof v);
    CHECK_OK(voxshm_attachments_recv(att, 0, &v));
    CHECK(v.len == sizes[i]);
    CHECK(v.reference.payload_len == sizes[i]);
    CHECK(v.reference.map_id == a.map_id);
    CHECK(v.reference.map_generation == a.map_generation);
    CHECK(v.reference.map_offset == a.map_offset);
    CHECK(v.reference.reserved == 0);
    CHECK_PATTERN(v.data, v.len, i);
    CHECK_OK(voxshm_attachments_release(att, &v));
    /* The event-loop rule: call until it says there is nothing more. */
    CHECK_STATUS(voxshm_attachments_recv(att, 0, &v), VOXSHM_TIMEOUT);
  }
  settle(reg, att);

  /* Many in flight at once, released in reverse order. */
  enum { IN_FLIGHT = 16 };
  voxshm_view views[IN_FLIGHT];
  for (int i = 0; i < IN_FLIGHT; i++) {
    send_one(reg, 10000 + (size_t)i, 100 + (uint64_t)i, NULL);
    bytes += 10000 + (size_t)i;
  }
  voxshm_attachments_stats as = att_stats(att);
  CHECK(as.queued_refs + as.live_views <= IN_FLIGHT);
  for (int i = 0; i < IN_FLIGHT; i++) {
    CHECK_OK(voxshm_attachments_recv(att, 1000, &views[i]));
    CHECK(views[i].len == 10000 + (size_t)i);
    CHECK_PATTERN(views[i].data, views[i].len, 100 + (uint64_t)i);
  }
  as = att_stats(att);
  CHECK(as.live_views == IN_FLIGHT);
  CHECK(as.queued_refs == 0);
  voxshm_registry_stats rs = reg_stats(reg);
  CHECK(rs.live_leases == IN_FLIGHT);
  /* A lease is outstanding: not idle. */
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 0), VOXSHM_TIMEOUT);
  CHECK_STATUS(voxshm_registry_wait_idle(reg, 30), VOXSHM_TIMEOUT);
  for (int i = IN_FLIGHT - 1; i >= 0; i--) {
    CHECK_OK(voxshm_attachments_release(att, &views[i]));
  }
  /* The releases are already on their way; wait_idle applies them. */
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));

  /* publish + frame + resolve: the reference over a transport of our own. */
  voxshm_allocation a;
  CHECK_OK(voxshm_registry_alloc(reg, 5000, 1000, &a));
  fill_pattern(a.data, 5000, 777);
  voxshm_ref ref;
  memset(&ref, 0xEE, sizeof ref);
  CHECK_OK(voxshm_registry_publish(reg, &a, 4000, &ref));
  bytes += 4000;
  CHECK(ref.map_id == a.map_id);
  CHECK(ref.map_generation == a.map_generation);
  CHECK(ref.map_offset == a.map_offset);
  CHECK(ref.payload_len == 4000);
  CHECK(ref.reserved == 0);
  uint8_t frame[VOXSHM_REF_FRAME_LEN];
  memset(frame, 0xEE, sizeof frame);
  CHECK_OK(voxshm_ref_encode(&ref, frame));
  /* The vox MMAP_REF layout, byte for byte. */
  CHECK(get_u32(frame) == 32);
  CHECK(frame[4] == 0x02);
  CHECK(frame[5] == 0 && frame[6] == 0 && frame[7] == 0);
  CHECK(get_u32(frame + 8) == ref.map_id);
  CHECK(get_u32(frame + 12) == ref.map_generation);
  CHECK(get_u64(frame + 16) == ref.map_offset);
  CHECK(get_u32(frame + 24) == 4000);
  CHECK(get_u32(frame + 28) == 0);
  voxshm_ref back;
  memset(&back, 0xEE, sizeof back);
  CHECK_OK(voxshm_ref_decode(frame, sizeof frame, &back));
  CHECK(memcmp(&back, &ref, sizeof ref) == 0);
  /* Two views of one reference share the bytes; the sender gets the
     space back when the last one is released. */
  voxshm_view v1, v2;
  CHECK_OK(voxshm_attachments_resolve(att, &back, 1000, &v1));
  CHECK_OK(voxshm_attachments_resolve(att, &back, 0, &v2));
  CHECK(v1.data == v2.data && v1.len == 4000 && v2.len == 4000);
  CHECK_PATTERN(v1.data, v1.len, 777);
  CHECK_OK(voxshm_attachments_release(att, &v1));
  CHECK_OK(voxshm_registry_poll(reg));
  CHECK(reg_stats(reg).live_leases == 1);
  CHECK_OK(voxshm_attachments_release(att, &v2));
  CHECK_STATUS(voxshm_attachments_release(att, &v2), VOXSHM_INVALID_VIEW);
  CHECK_OK(voxshm_registry_wait_idle(reg, 5000));

  /* An allocation given back unpublished. */
  CHECK_OK(voxshm_registry_alloc(reg, 300, 1000, &a));
  CHECK(reg_stats(reg).allocations == 1);
  CHECK_OK(voxshm_registry_abort(reg, &a));
  CHECK(reg_stats(reg).allocations == 0);

  settle(reg, att);
  rs = reg_stats(reg);
  CHECK(rs.live_leases == 0);
  CHECK(rs.allocations == 0);
  CHECK(rs.budget == 16 << 20);
  CHECK(rs.keep_warm == 1 << 20);
  CHECK(rs.payloads_published == n_sizes + IN_FLIGHT + 1);
  CHECK(rs.payload_bytes_published == bytes);
  CHECK(rs.regions_created >= 2);
  /* The big payload's region was idle beyond keep_warm: retired. */
  CHECK(rs.regions_retired >= 1);
  CHECK(rs.regions == rs.regions_created - rs.regions_retired);
  CHECK(rs.mapped_bytes <= ro.budget);
  CHECK(rs.open_fds == rs.regions + 2);
  CHECK(rs.messages_sent > 0 && rs.bytes_sent > 0);
  CHECK(rs.messages_received > 0 && rs.bytes_received > 0);
  as = att_stats(att);
  CHECK(as.live_views == 0);
  CHECK(as.queued_refs == 0);
  CHECK(as.pending_releases == 0);
  CHECK(as.max_mappings == 1024);
  CHECK(as.max_mapped_bytes == (uint64_t)16 << 30);
  CHECK(as.max_single_mapping == (uint64_t)4 << 30);
  CHECK(as.attaches_received == rs.regions_created);
  CHECK(as.attaches_rejected == 0);
  CHECK(as.refs_received == n_sizes + IN_FLIGHT);
  CHECK(as.releases_sent == n_sizes + IN_FLIGHT + 1);
  CHECK(as.regions_retired == rs.regions_retired);
  CHECK(as.mappings == rs.regions);
  CHECK(as.mapped_bytes == rs.mapped_bytes);
  CHECK(as.open_fds == 2);

  voxshm_attachments_free(att);
  voxshm_registry_free(reg);
  /* Each handle closed the fd it was given. */
  CHECK(!fd_is_open(fds[0]));
  CHECK(!fd_is_open(fds[1]));
}

/* A region idle beyond keep_warm is retired; its map_id comes back with
   the next generation, and a reference to the old generation is stale. */
static void test_retire_and_reuse(void) {
  int fds[2];
  CHECK_OK(voxshm_channel_pair(fds));
  voxshm_registry_options ro;
  CHECK_OK(voxshm_registry_options_init(&ro));
  ro.region_size = 64 << 10;
  ro.budget = 1 << 20;
  ro.keep_warm = 0;
  voxshm_registry *reg = NULL;
  CHECK_OK(voxshm_registry_new(fds[0], &ro, &reg));
  voxshm_attachments *att = NULL;
  CHECK_OK(voxshm_attachments_new(fds[1], NULL, &att));

  voxshm_allocation a1;
  send_one(reg, 100, 1, &a1);
  voxshm_view old;
  CHECK_OK(voxshm_attachments_recv(att, 1000, &old));
  CHECK_PATTERN(old.data, old.len, 1);
  voxshm_ref r1 = old.reference;
  CHECK(r1.map_generation == 1);
  CHECK_OK(voxshm_attachments_release(att, &old));
  settle(reg, att);

  voxshm_registry_stats rs = reg_stats(reg);
  CHECK(rs.regions == 0 && rs.regions_retired == 1 && rs.mapped_bytes == 0);
  CHECK(rs.open_fds == 2);
  voxshm_attachments_stats as = att_stats(att);
  CHECK(as.mappings == 0 && as.regions_retired == 1 && as.mapped_bytes == 0);
  /* The retired region is unmapped: its references are stale from now on. */
  voxshm_view v;
  CHECK_STATUS(voxshm_attachments_resolve(att, &r1, 0, &v), VOXSHM_STALE_GENERATION);

  voxshm_allocation a2;
  send_one(reg, 200, 2, &a2);
  CHECK(a2.map_id == a1.map_id);
  CHECK(a2.map_generation == a1.map_generation + 1);
  /* resolve reads the new ATTACH (and the queued REF) first. */
  CHECK_STATUS(voxshm_attachments_resolve(att, &r1, 0, &v), VOXSHM_STALE_GENERATION);
  CHECK_STATUS(voxshm_attachments_release(att, &old), VOXSHM_INVALID_VIEW);
  CHECK_OK(voxshm_attachments_recv(att, 1000, &v));
  CHECK(v.reference.map_generation == 2 && v.len == 200);
  CHECK_PATTERN(v.data, v.len, 2);
  CHECK_OK(voxshm_attachments_release(att, &v));
  settle(reg, att);
  CHECK(reg_stats(reg).regions_retired == 2);

  voxshm_registry_free(reg);
  voxshm_attachments_free(att);
}

int main(void) {
  test_begin();
  int fds_start = count_fds();
  test_channel_roundtrips();
  CHECK(count_fds() == fds_start);
  test_retire_and_reuse();
  CHECK(count_fds() == fds_start);
  printf("happy_path: OK\n");
  return 0;
}
