/*
 * voxshm: zero-copy payload passing between two processes on one Linux
 * machine. This header is generated from the Rust sources by cbindgen; do
 * not edit it by hand (regenerate with: VOXSHM_UPDATE_HEADER=1 cargo build).
 *
 * Conventions: every fallible function returns a voxshm_status (0 = OK) and
 * writes its out-parameters only on success; voxshm_last_error() describes
 * the last failure on the calling thread. Handles are safe to use from
 * several threads. Timeouts are in milliseconds: 0 = do not wait,
 * negative = wait forever. Do not dlclose() the library.
 */

#ifndef VOXSHM_H
#define VOXSHM_H

#include <stddef.h>
#include <stdint.h>

/**
 * Attachments option flag: accept regions without `F_SEAL_SHRINK |
 * F_SEAL_GROW` (what a vox sender sends). Such a sender could shrink the
 * file under the receiver, which then dies of SIGBUS on access.
 */
#define VOXSHM_ATTACHMENTS_ACCEPT_UNSEALED 1

/**
 * Attachments option flag: talk to a vox-shm sender: send no HELLO and no
 * RELEASE; implies accepting unsealed regions. A vox sender never retires
 * a region, so at `max_mappings` or `max_mapped_bytes` the mappings no
 * view holds are unmapped to make room (used-up ones first, then the
 * least recently used); a later reference into one fails with
 * `VOXSHM_TOO_MANY_MAPPINGS`.
 */
#define VOXSHM_ATTACHMENTS_VOX_COMPAT 2

/**
 * Attachments option flag: `voxshm_attachments_get_stats` also fills
 * `minor_faults` (one `getrusage` system call). Without it that field is
 * 0 and the call makes no system call, so it can be watched in a loop.
 */
#define VOXSHM_ATTACHMENTS_STATS_FAULTS 4

/**
 * Attachments option flag: do not offer the ring path; every reference
 * and release travels over the socket, as with a 0.1 peer.
 */
#define VOXSHM_ATTACHMENTS_NO_RING 8

/**
 * Size of the first version of `voxshm_attachments_options`; callers
 * built against it keep working when fields are added.
 */
#define VOXSHM_ATTACHMENTS_OPTIONS_V1_SIZE 40

/**
 * Size of the first version of `voxshm_attachments_stats`.
 */
#define VOXSHM_ATTACHMENTS_STATS_V1_SIZE 160

/**
 * Peer policy (`allow` field of `voxshm_listener_options` and
 * `voxshm_connect_options`): only peers whose effective uid is this
 * process's, or root. The default.
 */
#define VOXSHM_ALLOW_SAME_USER 0

/**
 * Peer policy: any local process that can reach the socket (for an
 * abstract `@name`: any process in the same network namespace, including
 * other containers sharing it).
 */
#define VOXSHM_ALLOW_ANYONE 1

/**
 * Peer policy: exactly the `uid` and `gid` of the options struct (either
 * may be `VOXSHM_ANY_ID`); root gets no exception.
 */
#define VOXSHM_ALLOW_UID_GID 2

/**
 * "Any" for the `uid` or `gid` of a `VOXSHM_ALLOW_UID_GID` policy.
 */
#define VOXSHM_ANY_ID UINT32_MAX

/**
 * Size of the first version of `voxshm_listener_options`; callers built
 * against it keep working when fields are added.
 */
#define VOXSHM_LISTENER_OPTIONS_V1_SIZE 24

/**
 * Size of the first version of `voxshm_connect_options`.
 */
#define VOXSHM_CONNECT_OPTIONS_V1_SIZE 32

/**
 * Version of the C ABI described by this header. `voxshm_abi_version()`
 * returns the library's; a `dlopen` user compares the two and refuses a
 * library whose number differs.
 */
#define VOXSHM_ABI_VERSION 1

/**
 * Receiver policy: a send waits (up to its timeout) while this receiver
 * cannot take the payload (its `max_in_flight` reached, or its ring
 * full).
 */
#define VOXSHM_POLICY_WAIT 0

/**
 * Receiver policy: this receiver misses a payload it cannot take now
 * (counted in its `skipped`); the other receivers are not delayed. With
 * `max_in_flight` 1: a "latest frame only" consumer.
 */
#define VOXSHM_POLICY_SKIP 1

/**
 * The `receiver` of `voxshm_fanout_send` that means every receiver
 * (receiver ids start at 1).
 */
#define VOXSHM_ALL_RECEIVERS 0

/**
 * Most receivers one fan-out handle feeds at once.
 */
#define VOXSHM_FANOUT_MAX_RECEIVERS (uint32_t)MAX_RECEIVERS

/**
 * Size of the first version of `voxshm_receiver_options`.
 */
#define VOXSHM_RECEIVER_OPTIONS_V1_SIZE 16

/**
 * Size of the first version of `voxshm_receiver_stats`.
 */
#define VOXSHM_RECEIVER_STATS_V1_SIZE 80

/**
 * Size of the first version of `voxshm_fanout_stats`.
 */
#define VOXSHM_FANOUT_STATS_V1_SIZE 128

/**
 * Length of an encoded MMAP_REF frame.
 */
#define VOXSHM_REF_FRAME_LEN 32

/**
 * Registry option flag: talk to a vox-shm receiver. No extension
 * messages are sent, regions are not sealed with `F_SEAL_FUTURE_WRITE`
 * (a vox receiver maps them read-write), `voxshm_registry_send` is
 * unavailable, and no release comes back over the channel: end each lease
 * with `voxshm_registry_release` when the receiver, over your own
 * transport, says it is done with it.
 */
#define VOXSHM_REGISTRY_VOX_COMPAT 1

/**
 * Registry option flag: back regions with unlinked temp files instead of
 * memfds (they cannot be sealed; the receiver must accept unsealed
 * regions).
 */
#define VOXSHM_REGISTRY_FORCE_TEMPFILE 2

/**
 * Registry option flag: `voxshm_registry_get_stats` also fills
 * `minor_faults` (one `getrusage` system call). Without it that field is
 * 0 and the call makes no system call, so it can be watched in a loop.
 */
#define VOXSHM_REGISTRY_STATS_FAULTS 4

/**
 * Registry option flag: do not offer the ring path; every reference and
 * release travels over the socket, as with a 0.1 peer.
 */
#define VOXSHM_REGISTRY_NO_RING 8

/**
 * A timeout argument that means "the configured `send_timeout_ms`"
 * (`voxshm_registry_send_timeout`); every other negative timeout means
 * "wait forever". It is `INT64_MIN`.
 */
#define VOXSHM_TIMEOUT_CONFIGURED INT64_MIN

/**
 * Size of the first version of `voxshm_registry_options`; callers built
 * against it keep working when fields are added.
 */
#define VOXSHM_REGISTRY_OPTIONS_V1_SIZE 48

/**
 * Size of the first version of `voxshm_registry_stats`.
 */
#define VOXSHM_REGISTRY_STATS_V1_SIZE 136

/**
 * The default of `RegistryOptions::ring_capacity`.
 */
#define DEFAULT_RING_CAPACITY 1024

/**
 * The default of the options' `spin_us`.
 */
#define DEFAULT_SPIN_US 50

/**
 * HELLO feature bit: this side can carry references and releases through
 * a ring segment (`docs/protocol.md`, "The ring path").
 */
#define FEATURE_RING 1

#define SEGMENT 6

#define WAKE 7

/**
 * Outcome of a voxshm call. The numbers are part of the ABI: they are
 * never changed and never reused.
 */
typedef enum voxshm_status {
  /**
   * Success.
   */
  VOXSHM_OK = 0,
  /**
   * A required pointer was NULL, an options struct was malformed, or an
   * argument was out of its documented range.
   */
  VOXSHM_INVALID_ARGUMENT = 1,
  /**
   * A length of zero was given where a payload length is required.
   */
  VOXSHM_ZERO_LENGTH = 2,
  /**
   * A length larger than can ever be satisfied (more than 4 GiB - 1, more
   * than the sender's budget, or more than the allocation being published).
   */
  VOXSHM_TOO_LARGE = 3,
  /**
   * The sender's budget stayed exhausted until the timeout expired.
   */
  VOXSHM_NO_SPACE = 4,
  /**
   * Nothing arrived before the timeout expired (with a timeout of 0:
   * nothing was ready).
   */
  VOXSHM_TIMEOUT = 5,
  /**
   * The peer closed the channel or died.
   */
  VOXSHM_PEER_GONE = 6,
  /**
   * The peer sent a malformed message; the channel is poisoned and every
   * later call on it fails with this status.
   */
  VOXSHM_PROTOCOL = 7,
  /**
   * A reference names a map_id this receiver has never been sent.
   */
  VOXSHM_UNKNOWN_MAP = 8,
  /**
   * A reference names a known map_id but an older generation.
   */
  VOXSHM_STALE_GENERATION = 9,
  /**
   * map_offset + payload_len overflows.
   */
  VOXSHM_REF_OVERFLOW = 10,
  /**
   * map_offset + payload_len lies beyond the end of the mapping.
   */
  VOXSHM_OUT_OF_BOUNDS = 11,
  /**
   * An ATTACH carried an fd that is not a regular file.
   */
  VOXSHM_NOT_REGULAR_FILE = 12,
  /**
   * An ATTACH carried a file smaller than its mapping_length.
   */
  VOXSHM_FILE_TOO_SHORT = 13,
  /**
   * An ATTACH carried a file without the SHRINK and GROW seals and the
   * receiver does not accept unsealed regions.
   */
  VOXSHM_NOT_SEALED = 14,
  /**
   * Mapping the region would exceed the receiver's maximum number of
   * mappings.
   */
  VOXSHM_TOO_MANY_MAPPINGS = 15,
  /**
   * Mapping the region would exceed the receiver's maximum total of
   * mapped bytes.
   */
  VOXSHM_MAPPED_BYTES_LIMIT = 16,
  /**
   * The region is larger than the receiver's maximum single mapping.
   */
  VOXSHM_MAPPING_TOO_LARGE = 17,
  /**
   * An ATTACH arrived for a map_id that is already mapped.
   */
  VOXSHM_DUPLICATE_ATTACH = 18,
  /**
   * The allocation is unknown to this registry, was already published,
   * or was already aborted.
   */
  VOXSHM_INVALID_ALLOCATION = 19,
  /**
   * The view is unknown to these attachments or was already released.
   */
  VOXSHM_INVALID_VIEW = 20,
  /**
   * A system call failed; the message names it and the errno.
   */
  VOXSHM_IO = 21,
  /**
   * The system is out of a resource: memory, file descriptors, or space
   * for shared memory.
   */
  VOXSHM_RESOURCE_EXHAUSTED = 22,
  /**
   * A bug in voxshm (a caught panic). Please report it.
   */
  VOXSHM_INTERNAL = 23,
  /**
   * The operation is not available in this mode (for example sending a
   * reference over the channel to a vox peer that speaks no extension).
   */
  VOXSHM_UNSUPPORTED = 24,
  /**
   * A 32-byte MMAP_REF frame failed to decode.
   */
  VOXSHM_BAD_FRAME = 25,
  /**
   * The peer speaks a protocol version this library does not.
   */
  VOXSHM_VERSION_MISMATCH = 26,
  /**
   * The process at the other end of a connection runs as a user (or
   * group) that the listener's or the connecting side's policy does not
   * allow.
   */
  VOXSHM_PEER_NOT_ALLOWED = 27,
  /**
   * The socket name or path is held by a live listener.
   */
  VOXSHM_ADDRESS_IN_USE = 28,
  /**
   * Nobody listens at that name or path (yet): the producer has not
   * started, or has gone (`ECONNREFUSED`, `ENOENT`). Retry later.
   */
  VOXSHM_NO_LISTENER = 29,
} voxshm_status;

/**
 * Severity of a log message.
 */
typedef enum voxshm_log_level {
  /**
   * No messages at all.
   */
  VOXSHM_LOG_OFF = 0,
  /**
   * Failures the library could not handle.
   */
  VOXSHM_LOG_ERROR = 1,
  /**
   * Protocol errors, rejected regions, a peer that went away.
   */
  VOXSHM_LOG_WARN = 2,
  /**
   * Region creation and retirement, peers arriving and leaving.
   */
  VOXSHM_LOG_INFO = 3,
  /**
   * Per-handle and per-message detail.
   */
  VOXSHM_LOG_DEBUG = 4,
  /**
   * Everything.
   */
  VOXSHM_LOG_TRACE = 5,
} voxshm_log_level;

/**
 * The receiver's side: maps the sender's regions read-only and turns
 * references into views. Create with `voxshm_attachments_new`, end with
 * `voxshm_attachments_free`. Safe to use from several threads at once.
 */
typedef struct voxshm_attachments voxshm_attachments;

/**
 * One producer, many receivers: a payload is written once and delivered
 * to every receiver (or one chosen receiver); its space is reused when
 * the last of them released it or went away. Create with
 * `voxshm_fanout_new`, add receivers with `voxshm_fanout_add_receiver`,
 * end with `voxshm_fanout_free`. Safe to use from several threads at once.
 * Each receiver is an ordinary `voxshm_attachments` on the other end of
 * its channel.
 */
typedef struct voxshm_fanout voxshm_fanout;

/**
 * A listening socket on a path, for two unrelated processes to meet.
 */
typedef struct voxshm_listener voxshm_listener;

/**
 * The sender's side: owns regions, hands out payload space, sends
 * references. Create with `voxshm_registry_new`, end with
 * `voxshm_registry_free`. Safe to use from several threads at once.
 */
typedef struct voxshm_registry voxshm_registry;

/**
 * Receiver options. Fill with `voxshm_attachments_options_init`, then
 * change fields. `struct_size` must stay as init set it.
 */
typedef struct voxshm_attachments_options {
  /**
   * `sizeof(voxshm_attachments_options)`, set by init.
   */
  size_t struct_size;
  /**
   * Most regions mapped at once (default 1024).
   */
  uint32_t max_mappings;
  /**
   * `VOXSHM_ATTACHMENTS_*` flags (default 0).
   */
  uint32_t flags;
  /**
   * Most bytes mapped at once (default 16 GiB).
   */
  uint64_t max_mapped_bytes;
  /**
   * Largest single region accepted (default 4 GiB).
   */
  uint64_t max_single_mapping;
  /**
   * How long a release waits for room in a full channel before it is
   * kept and sent by a later call (default 10000 ms).
   */
  int64_t send_timeout_ms;
  /**
   * How long a blocking `voxshm_attachments_recv` spins, watching the
   * ring, before it sleeps (microseconds; default 50; 0: never spin).
   * Added after the first version of this struct.
   */
  uint32_t spin_us;
  /**
   * Reserved, 0.
   */
  uint32_t reserved;
} voxshm_attachments_options;

/**
 * A reference to a published payload: `payload_len` bytes at
 * `map_offset` in region (`map_id`, `map_generation`).
 */
typedef struct voxshm_ref {
  /**
   * Region number, reused only with a higher generation.
   */
  uint32_t map_id;
  /**
   * Generation of the region: a voxshm sender starts at 1 and raises it
   * when it reuses a map_id; a vox sender always uses 0.
   */
  uint32_t map_generation;
  /**
   * Byte offset of the payload in the region.
   */
  uint64_t map_offset;
  /**
   * Payload length in bytes.
   */
  uint32_t payload_len;
  /**
   * Always zero.
   */
  uint32_t reserved;
} voxshm_ref;

/**
 * A received payload: `len` read-only bytes at `data`, valid until the
 * view is passed to `voxshm_attachments_release` (even if the sender dies
 * meanwhile). The sender's process may still write these bytes: copy or
 * validate before trusting them.
 */
typedef struct voxshm_view {
  /**
   * First readable byte (read-only memory).
   */
  const uint8_t *data;
  /**
   * Readable bytes at `data`.
   */
  size_t len;
  /**
   * The reference this view was resolved from.
   */
  struct voxshm_ref reference;
} voxshm_view;

/**
 * Counters and limits of an attachments handle. Set `struct_size` to
 * `sizeof(voxshm_attachments_stats)` before calling
 * `voxshm_attachments_get_stats`.
 */
typedef struct voxshm_attachments_stats {
  /**
   * Set by the caller to the size of this struct.
   */
  size_t struct_size;
  /**
   * Regions currently mapped.
   */
  uint64_t mappings;
  /**
   * Bytes of those regions.
   */
  uint64_t mapped_bytes;
  /**
   * The configured most regions mapped at once.
   */
  uint64_t max_mappings;
  /**
   * The configured most bytes mapped at once.
   */
  uint64_t max_mapped_bytes;
  /**
   * The configured largest region accepted.
   */
  uint64_t max_single_mapping;
  /**
   * Views resolved and not yet released.
   */
  uint64_t live_views;
  /**
   * References received over the channel and not yet taken by recv.
   */
  uint64_t queued_refs;
  /**
   * Releases waiting for room in the channel.
   */
  uint64_t pending_releases;
  /**
   * File descriptors this handle holds (region fds are closed as soon as
   * they are mapped).
   */
  uint64_t open_fds;
  /**
   * Messages sent on the channel.
   */
  uint64_t messages_sent;
  /**
   * Bytes of those messages.
   */
  uint64_t bytes_sent;
  /**
   * Messages received on the channel.
   */
  uint64_t messages_received;
  /**
   * Bytes of those messages.
   */
  uint64_t bytes_received;
  /**
   * ATTACH messages received.
   */
  uint64_t attaches_received;
  /**
   * ATTACH messages rejected (validation or limits).
   */
  uint64_t attaches_rejected;
  /**
   * References received over the channel.
   */
  uint64_t refs_received;
  /**
   * Releases sent back to the sender.
   */
  uint64_t releases_sent;
  /**
   * Regions retired so far.
   */
  uint64_t regions_retired;
  /**
   * Minor page faults of the whole process so far (`getrusage`), with
   * the `*_STATS_FAULTS` option flag; 0 without it.
   */
  uint64_t minor_faults;
  /**
   * 1 once references and releases travel through the ring segment
   * (both sides offered it); 0 while they use the socket. Added after
   * the first version of this struct.
   */
  uint64_t ring;
  /**
   * Wake-up messages sent to a sender that was asleep waiting for
   * releases or for room in the ring. Added after the first version of
   * this struct.
   */
  uint64_t wakeups_sent;
  /**
   * Regions unmapped to make room for newer ones (vox compatibility: a
   * vox sender never retires a region). Added after the first version
   * of this struct.
   */
  uint64_t regions_evicted;
} voxshm_attachments_stats;

/**
 * Listener options. Fill with `voxshm_listener_options_init`, then change
 * fields.
 */
typedef struct voxshm_listener_options {
  /**
   * `sizeof(voxshm_listener_options)`, set by init.
   */
  size_t struct_size;
  /**
   * Which connecting processes `voxshm_listener_accept` hands out:
   * `VOXSHM_ALLOW_SAME_USER` (default), `VOXSHM_ALLOW_ANYONE` or
   * `VOXSHM_ALLOW_UID_GID`. Others are closed before any byte is
   * exchanged, and the accept goes on waiting.
   */
  uint32_t allow;
  /**
   * For `VOXSHM_ALLOW_UID_GID`: the uid allowed (`VOXSHM_ANY_ID`: any).
   */
  uint32_t uid;
  /**
   * For `VOXSHM_ALLOW_UID_GID`: the gid allowed (`VOXSHM_ANY_ID`: any).
   */
  uint32_t gid;
  /**
   * Permission bits of a filesystem-path socket (default 0600:
   * connecting needs write permission on it). Ignored for `@name`.
   */
  uint32_t mode;
} voxshm_listener_options;

/**
 * Options of `voxshm_connect_with_options`. Fill with
 * `voxshm_connect_options_init`, then change fields.
 */
typedef struct voxshm_connect_options {
  /**
   * `sizeof(voxshm_connect_options)`, set by init.
   */
  size_t struct_size;
  /**
   * Which listener owners to talk to (the credentials the listening
   * socket was created with): `VOXSHM_ALLOW_SAME_USER` (default),
   * `VOXSHM_ALLOW_ANYONE` or `VOXSHM_ALLOW_UID_GID`.
   */
  uint32_t allow;
  /**
   * For `VOXSHM_ALLOW_UID_GID`: the uid required (`VOXSHM_ANY_ID`: any).
   */
  uint32_t uid;
  /**
   * For `VOXSHM_ALLOW_UID_GID`: the gid required (`VOXSHM_ANY_ID`: any).
   */
  uint32_t gid;
  /**
   * How long to wait for a listener whose queue of pending connections
   * is full (default 10000 ms; 0: do not wait; negative: forever).
   */
  int64_t timeout_ms;
} voxshm_connect_options;

/**
 * Who is at the other end of a connected socket.
 */
typedef struct voxshm_peer_credentials {
  /**
   * Process id (of the process that connected, or created the pair or
   * the listening socket).
   */
  int32_t pid;
  /**
   * Effective user id.
   */
  uint32_t uid;
  /**
   * Effective group id.
   */
  uint32_t gid;
} voxshm_peer_credentials;

/**
 * A log callback: `level` is a `voxshm_log_level`, `target` the module
 * that logged, `message` the text with its fields. Both strings are valid
 * only during the call. The callback runs on the thread that logged,
 * possibly while a voxshm handle is locked: it must not call voxshm.
 */
typedef void (*voxshm_log_fn)(void *user_data, int32_t level, const char *target, const char *message);

/**
 * Sender options. Fill with `voxshm_registry_options_init`, then change
 * fields. `struct_size` must stay as init set it.
 */
typedef struct voxshm_registry_options {
  /**
   * `sizeof(voxshm_registry_options)`, set by init.
   */
  size_t struct_size;
  /**
   * Bytes in a new region (default 64 MiB; rounded up to whole pages). A
   * payload larger than this gets a region of its own.
   */
  uint64_t region_size;
  /**
   * Most bytes of regions held at once (default 1 GiB; rounded up to
   * whole pages). When it is exhausted, alloc waits for releases, then
   * fails with `VOXSHM_NO_SPACE`.
   */
  uint64_t budget;
  /**
   * Bytes of idle regions kept mapped for reuse (default 64 MiB); idle
   * regions beyond this are retired.
   */
  uint64_t keep_warm;
  /**
   * How long `voxshm_registry_send` and region creation wait for room in
   * the channel and for the receiver's HELLO (default 10000 ms; negative:
   * forever).
   */
  int64_t send_timeout_ms;
  /**
   * `VOXSHM_REGISTRY_*` flags (default 0).
   */
  uint32_t flags;
  /**
   * Most bytes of published payloads the receiver has not released yet
   * (default 64 MiB; 0: no limit). When the next payload would go over
   * it, alloc waits for releases (a payload alone may be larger): the
   * queue, and the latency, of a producer faster than its consumer stay
   * a few payloads. Added after the first version of this struct.
   */
  uint64_t max_in_flight_bytes;
  /**
   * Entries of each of the ring segment's two rings (default 1024; a
   * power of two, 16..=1048576): how many references can wait for the
   * receiver before `voxshm_registry_send` waits for room. Added after
   * the first version of this struct.
   */
  uint32_t ring_capacity;
  /**
   * How long a blocking call spins, watching the ring, before it sleeps
   * (microseconds; default 50; 0: never spin). Spinning saves the
   * wake-up's latency when the receiver answers quickly, and costs CPU
   * when it does not. Added after the first version of this struct.
   */
  uint32_t spin_us;
} voxshm_registry_options;

/**
 * One receiver's terms. Fill with `voxshm_receiver_options_init`, then
 * change fields. `struct_size` must stay as init set it.
 */
typedef struct voxshm_receiver_options {
  /**
   * `sizeof(voxshm_receiver_options)`, set by init.
   */
  size_t struct_size;
  /**
   * Most payloads this receiver may hold at once (default 0: no limit
   * but the budget). Give an untrusted or slow receiver a limit: one
   * that stops reading otherwise holds space until the budget is gone.
   */
  uint32_t max_in_flight;
  /**
   * `VOXSHM_POLICY_WAIT` (default) or `VOXSHM_POLICY_SKIP`.
   */
  uint32_t policy;
} voxshm_receiver_options;

/**
 * Payload space from `voxshm_registry_alloc`: `capacity` writable bytes at
 * `data`, owned by the caller until it is published, sent or aborted. The
 * other fields identify it to the registry; do not change them.
 */
typedef struct voxshm_allocation {
  /**
   * First writable byte.
   */
  uint8_t *data;
  /**
   * Writable bytes at `data` (the request rounded up to 64).
   */
  size_t capacity;
  /**
   * Region of the allocation.
   */
  uint32_t map_id;
  /**
   * Generation of that region.
   */
  uint32_t map_generation;
  /**
   * Offset of `data` in the region.
   */
  uint64_t map_offset;
  /**
   * Identifies this allocation to the registry.
   */
  uint64_t token;
} voxshm_allocation;

/**
 * Counters of a fan-out handle, over all receivers. Set `struct_size`
 * to `sizeof(voxshm_fanout_stats)` before calling
 * `voxshm_fanout_get_stats`.
 */
typedef struct voxshm_fanout_stats {
  /**
   * Set by the caller to the size of this struct.
   */
  size_t struct_size;
  /**
   * Receivers added and not removed (gone ones included).
   */
  uint64_t receivers;
  /**
   * Of those, gone.
   */
  uint64_t receivers_gone;
  /**
   * Regions currently held.
   */
  uint64_t regions;
  /**
   * Bytes of those regions (never more than the budget).
   */
  uint64_t mapped_bytes;
  /**
   * Payloads some receiver still holds.
   */
  uint64_t live_payloads;
  /**
   * Allocations neither sent nor aborted.
   */
  uint64_t allocations;
  /**
   * File descriptors this handle holds.
   */
  uint64_t open_fds;
  /**
   * Payloads sent so far (each written once, whatever the receivers).
   */
  uint64_t payloads_published;
  /**
   * Bytes of those payloads.
   */
  uint64_t payload_bytes_published;
  /**
   * Deliveries (a payload that reached 3 receivers counts 3).
   */
  uint64_t deliveries;
  /**
   * Payloads receivers missed, over all receivers.
   */
  uint64_t skips;
  /**
   * Regions created so far.
   */
  uint64_t regions_created;
  /**
   * Regions retired so far.
   */
  uint64_t regions_retired;
  /**
   * Messages sent on all channels.
   */
  uint64_t messages_sent;
  /**
   * Messages received on all channels.
   */
  uint64_t messages_received;
} voxshm_fanout_stats;

/**
 * One receiver's counters. Set `struct_size` to
 * `sizeof(voxshm_receiver_stats)` before calling
 * `voxshm_fanout_get_receiver_stats`.
 */
typedef struct voxshm_receiver_stats {
  /**
   * Set by the caller to the size of this struct.
   */
  size_t struct_size;
  /**
   * Payloads it holds now.
   */
  uint64_t in_flight;
  /**
   * Payloads delivered to it.
   */
  uint64_t delivered;
  /**
   * Payloads it missed (skip policy, or unreachable at the time).
   */
  uint64_t skipped;
  /**
   * Payloads it released.
   */
  uint64_t released;
  /**
   * Bytes of the payloads delivered to it.
   */
  uint64_t bytes_delivered;
  /**
   * Payloads it held when it went away (reclaimed).
   */
  uint64_t reclaimed;
  /**
   * Releases of payloads it did not hold (ignored).
   */
  uint64_t ignored_releases;
  /**
   * Its id.
   */
  uint32_t id;
  /**
   * 1 once its HELLO was read (sends reach it), while it is connected.
   */
  uint32_t ready;
  /**
   * 1 once it hung up or broke the protocol: nothing reaches it any
   * more; remove it with `voxshm_fanout_remove_receiver`.
   */
  uint32_t gone;
  /**
   * 1 while references and releases go through its ring segment.
   */
  uint32_t ring;
} voxshm_receiver_stats;

/**
 * Counters and limits of a registry. Set `struct_size` to
 * `sizeof(voxshm_registry_stats)` before calling `voxshm_registry_get_stats`.
 */
typedef struct voxshm_registry_stats {
  /**
   * Set by the caller to the size of this struct.
   */
  size_t struct_size;
  /**
   * Regions currently held (mapped, with their fd open).
   */
  uint64_t regions;
  /**
   * Bytes of those regions.
   */
  uint64_t mapped_bytes;
  /**
   * The configured budget.
   */
  uint64_t budget;
  /**
   * The configured keep-warm amount.
   */
  uint64_t keep_warm;
  /**
   * Published payloads the receiver has not released yet.
   */
  uint64_t live_leases;
  /**
   * Allocations neither published nor aborted.
   */
  uint64_t allocations;
  /**
   * File descriptors this registry holds.
   */
  uint64_t open_fds;
  /**
   * Messages sent on the channel.
   */
  uint64_t messages_sent;
  /**
   * Bytes of those messages.
   */
  uint64_t bytes_sent;
  /**
   * Messages received on the channel.
   */
  uint64_t messages_received;
  /**
   * Bytes of those messages.
   */
  uint64_t bytes_received;
  /**
   * Regions created so far.
   */
  uint64_t regions_created;
  /**
   * Regions retired so far.
   */
  uint64_t regions_retired;
  /**
   * Payloads published or sent so far.
   */
  uint64_t payloads_published;
  /**
   * Bytes of those payloads.
   */
  uint64_t payload_bytes_published;
  /**
   * Minor page faults of the whole process so far (`getrusage`), with
   * the `*_STATS_FAULTS` option flag; 0 without it.
   */
  uint64_t minor_faults;
  /**
   * Releases from the receiver that named no payload it held (released
   * twice, or never sent) and were ignored. Added after the first
   * version of this struct.
   */
  uint64_t ignored_releases;
  /**
   * 1 once references and releases travel through the ring segment
   * (both sides offered it); 0 while they use the socket. Added after
   * the first version of this struct.
   */
  uint64_t ring;
  /**
   * Wake-up messages sent to a receiver that was asleep waiting for the
   * ring. Added after the first version of this struct.
   */
  uint64_t wakeups_sent;
} voxshm_registry_stats;



#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Fills `*options` with the defaults (and its `struct_size`).
 * Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_attachments_options_init(struct voxshm_attachments_options *options);

/**
 * Creates the receiver's side over the connected socket `fd` and says
 * HELLO to the sender. `options` may be NULL for the defaults. On success
 * the handle owns `fd` (closed by `voxshm_attachments_free`) and `*out` is
 * the new handle; on failure `fd` is still the caller's.
 * Returns `VOXSHM_INVALID_ARGUMENT` (NULL out, fd not an `AF_UNIX`
 * `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad options),
 * `VOXSHM_RESOURCE_EXHAUSTED`.
 */
enum voxshm_status voxshm_attachments_new(int fd, const struct voxshm_attachments_options *options, struct voxshm_attachments **out_attachments);

/**
 * Frees the handle: closes the channel (the sender sees the receiver go
 * and reclaims everything it leased) and unmaps every region. Every view
 * from it becomes invalid. Of a duplex channel (`voxshm_duplex_new`) whose
 * registry lives on, the regions are unmapped and the views released to
 * the peer at once, every payload the peer sends later is released as it
 * arrives, and the channel closes when the registry is freed too. NULL is
 * a no-op. No other thread may be using the handle.
 */
void voxshm_attachments_free(struct voxshm_attachments *attachments);

/**
 * The channel fd, for poll/epoll: readable when the sender sent something
 * or hung up; then call `voxshm_attachments_recv` with timeout 0 or
 * `voxshm_attachments_poll`. -1 for NULL. The fd stays the handle's: do
 * not close or read it.
 */
int voxshm_attachments_fd(const struct voxshm_attachments *attachments);

/**
 * Takes the next payload the sender sent with `voxshm_registry_send`,
 * waiting up to `timeout_ms` (0: do not wait; negative: forever), and
 * writes its view to `*out`. Release the view when done with it.
 * Returns `VOXSHM_TIMEOUT` (nothing arrived), `VOXSHM_PEER_GONE` (the
 * sender is gone and everything it sent was taken), `VOXSHM_PROTOCOL`
 * (poisoned channel); a reference that does not resolve returns the
 * `voxshm_attachments_resolve` status (for a reference into a region whose
 * announcement was rejected: the rejection, e.g. `VOXSHM_NOT_SEALED`) and
 * is handed back to the sender. Only the fate of the reference it took is
 * reported, never another region's.
 */
enum voxshm_status voxshm_attachments_recv(const struct voxshm_attachments *attachments, int64_t timeout_ms, struct voxshm_view *out_view);

/**
 * Resolves a reference that came over a transport of the caller's own
 * into a view, waiting up to `timeout_ms` for its region to arrive. Checks
 * in this order, each with its own status: `VOXSHM_PROTOCOL` (poisoned),
 * `VOXSHM_UNKNOWN_MAP`, `VOXSHM_STALE_GENERATION`, `VOXSHM_ZERO_LENGTH`,
 * `VOXSHM_REF_OVERFLOW`, `VOXSHM_OUT_OF_BOUNDS`; `VOXSHM_TIMEOUT` when a
 * positive timeout passed without the region arriving (with timeout 0:
 * `VOXSHM_UNKNOWN_MAP` at once). A reference into a region whose
 * announcement was rejected fails at once with that rejection
 * (`VOXSHM_NOT_REGULAR_FILE`, `VOXSHM_FILE_TOO_SHORT`, `VOXSHM_NOT_SEALED`,
 * `VOXSHM_TOO_MANY_MAPPINGS`, `VOXSHM_MAPPED_BYTES_LIMIT`,
 * `VOXSHM_MAPPING_TOO_LARGE`, `VOXSHM_STALE_GENERATION`,
 * `VOXSHM_RESOURCE_EXHAUSTED` when this process had no free fd to receive
 * it); other regions' rejections are not reported here.
 *
 * After the sender is gone: once this function has been called on a
 * handle, every region the sender had announced stays mapped, and its
 * references resolve, until the handle is freed (references may still be
 * travelling over your own transport); a handle that never called it
 * unmaps a gone sender's region as soon as no view and no queued reference
 * needs it. A reference into a region that is not mapped then fails with
 * `VOXSHM_PEER_GONE`. Also returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_attachments_resolve(const struct voxshm_attachments *attachments, const struct voxshm_ref *reference, int64_t timeout_ms, struct voxshm_view *out_view);

/**
 * Releases a view: its bytes must not be read any more. When it was the
 * last view of its reference the sender gets the space back. The release
 * is sent at once; only if the channel is full does this wait, up to the
 * configured `send_timeout_ms` (reading what the sender sends meanwhile),
 * and then keeps the release to send it with a later call. Works after
 * the sender has gone too. Returns `VOXSHM_INVALID_VIEW` (never resolved,
 * or released already), `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_attachments_release(const struct voxshm_attachments *attachments, const struct voxshm_view *view);

/**
 * Applies whatever the sender sent (regions, references, retirements,
 * hang-up) without waiting, and sends pending releases. Reads at most 1024
 * messages per call (the fd stays readable if more wait). Returns the
 * first region rejection it met (the statuses listed under
 * `voxshm_attachments_resolve`) after applying everything else,
 * `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_attachments_poll(const struct voxshm_attachments *attachments);

/**
 * Writes the handle's counters and limits to `*out` (whose `struct_size`
 * the caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_attachments_get_stats(const struct voxshm_attachments *attachments, struct voxshm_attachments_stats *out_stats);

/**
 * Creates a connected `AF_UNIX` `SOCK_SEQPACKET` pair (close-on-exec) and
 * writes its two fds to `fds[0]` and `fds[1]`; both are the caller's. Give
 * one to the sender (`voxshm_registry_new`) and the other to the receiver,
 * typically in a child process (clear `FD_CLOEXEC` or `dup2` it before
 * `exec`). Returns `VOXSHM_INVALID_ARGUMENT` (NULL `fds`),
 * `VOXSHM_RESOURCE_EXHAUSTED` or `VOXSHM_IO`.
 */
enum voxshm_status voxshm_channel_pair(int *fds);

/**
 * Like `voxshm_channel_pair`, but `SOCK_DGRAM`, the socket type a vox-shm
 * peer creates. A datagram pair reports no hang-up when the peer dies, so
 * prefer `voxshm_channel_pair`.
 */
enum voxshm_status voxshm_channel_pair_dgram(int *fds);

/**
 * Listens on `path` with the default options (see
 * `voxshm_listener_new_with_options`): only processes running as this
 * process's user, or root, are accepted; a filesystem path gets mode 0600.
 */
enum voxshm_status voxshm_listener_new(const char *path, struct voxshm_listener **out_listener);

/**
 * Fills `*options` with the defaults: `VOXSHM_ALLOW_SAME_USER`, mode 0600.
 * Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_listener_options_init(struct voxshm_listener_options *options);

/**
 * Listens on `path`: a filesystem path or `@name` for a Linux abstract
 * socket name. `options` may be NULL for the defaults. A socket file left
 * behind by a listener that died (nobody accepts on it) is replaced; a
 * path or name held by a live listener is refused with
 * `VOXSHM_ADDRESS_IN_USE`, as is a path that exists and is not a socket.
 * The path is removed by `voxshm_listener_free`. On success `*out` is a
 * new listener the caller frees. Returns `VOXSHM_INVALID_ARGUMENT` (NULL
 * or over-long path, bad options), `VOXSHM_ADDRESS_IN_USE`, `VOXSHM_IO`.
 */
enum voxshm_status voxshm_listener_new_with_options(const char *path, const struct voxshm_listener_options *options, struct voxshm_listener **out_listener);

/**
 * Waits up to `timeout_ms` (0: do not wait; negative: forever) for a
 * connection and writes its fd to `*out_fd`; the fd is the caller's (pass
 * it to `voxshm_registry_new` or `voxshm_attachments_new`). Returns
 * `VOXSHM_TIMEOUT` when nobody connected in time.
 */
enum voxshm_status voxshm_listener_accept(const struct voxshm_listener *listener, int64_t timeout_ms, int *out_fd);

/**
 * The listening socket's fd, for poll/epoll (readable when a connection
 * waits); -1 for NULL. The fd stays the listener's: do not close it.
 */
int voxshm_listener_fd(const struct voxshm_listener *listener);

/**
 * Closes the listener and removes its filesystem path. NULL is a no-op.
 */
void voxshm_listener_free(struct voxshm_listener *listener);

/**
 * Connects to a listener at `path` (`@name` for an abstract name) whose
 * owner runs as this process's user or root, and writes the connected fd
 * to `*out_fd`; it is the caller's. Returns `VOXSHM_INVALID_ARGUMENT`,
 * `VOXSHM_NO_LISTENER` (nobody listens there yet: no such path, a socket
 * file nobody accepts on, an abstract name nobody holds; retry on this
 * status alone to wait for a producer), `VOXSHM_PEER_NOT_ALLOWED` (the listener
 * runs as another user: see `voxshm_connect_with_options`),
 * `VOXSHM_TIMEOUT` (the listener's queue of pending connections stayed
 * full for 10 s) or `VOXSHM_IO` (anything else, e.g. no permission: the
 * message names the errno).
 */
enum voxshm_status voxshm_connect(const char *path, int *out_fd);

/**
 * Fills `*options` with the defaults (`VOXSHM_ALLOW_SAME_USER`). Returns
 * `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_connect_options_init(struct voxshm_connect_options *options);

/**
 * Like `voxshm_connect`, with a policy for whom to talk to: the
 * credentials the listening socket was created with must be allowed by
 * `options` (NULL: the defaults), or the connection is closed and
 * `VOXSHM_PEER_NOT_ALLOWED` returned. This guards against a process that
 * took the name (or path) before the real producer.
 */
enum voxshm_status voxshm_connect_with_options(const char *path, const struct voxshm_connect_options *options, int *out_fd);

/**
 * Writes the credentials (pid, uid, gid, from `SO_PEERCRED`) of the
 * process at the other end of the connected socket `fd` to `*out`: any
 * channel fd, including `voxshm_registry_fd` and `voxshm_attachments_fd`.
 * The fd stays the caller's. Returns `VOXSHM_INVALID_ARGUMENT` (NULL
 * `out`, or `fd` is not a connected socket), `VOXSHM_IO`.
 */
enum voxshm_status voxshm_peer_credentials_get(int fd, struct voxshm_peer_credentials *out_credentials);

/**
 * The package version, e.g. "0.1.0". Static storage; never free it.
 */
const char *voxshm_version(void);

/**
 * The library's ABI version; compare with `VOXSHM_ABI_VERSION`.
 */
uint32_t voxshm_abi_version(void);

/**
 * The name of a status, e.g. "VOXSHM_PEER_GONE", or "VOXSHM_UNKNOWN_STATUS"
 * for a number that is not a status. Static storage; never free it.
 */
const char *voxshm_status_name(int status);

/**
 * A human-readable message about the last failure of a voxshm call on this
 * thread ("" if none has failed). The string belongs to the library and
 * stays valid until the next failing voxshm call on this thread; copy it
 * to keep it. Successful calls do not change it.
 */
const char *voxshm_last_error(void);

/**
 * Sends the library's log messages up to `max_level` to `callback` (with
 * `user_data`), or, with a NULL callback, back to the default: silent,
 * unless the `VOXSHM_LOG` environment variable names a level (error, warn,
 * info, debug, trace), in which case they go to stderr.
 * Returns `VOXSHM_INVALID_ARGUMENT` for a level outside 0..=5.
 */
enum voxshm_status voxshm_set_log_callback(voxshm_log_fn callback, void *user_data, int max_level);

/**
 * Makes both handles of a duplex channel over the connected socket `fd`:
 * a registry that sends to the peer and an attachments that receives
 * from it, on the one socket. The peer makes a duplex channel too (a
 * one-way peer is refused with `VOXSHM_PROTOCOL`). Each handle is used
 * with the usual registry and attachments functions, from any thread,
 * and freed with its own `*_free`; the channel closes when both are
 * freed. Both handles return the same fd: when it is readable, call
 * `voxshm_attachments_recv` until `VOXSHM_TIMEOUT` and
 * `voxshm_registry_poll`. Both handles' message counters count the
 * channel's messages.
 *
 * `registry_options` and `attachments_options` may be NULL for the
 * defaults. `VOXSHM_REGISTRY_VOX_COMPAT` and
 * `VOXSHM_ATTACHMENTS_VOX_COMPAT` must be set in both or in neither: with
 * them the channel talks to a vox-shm peer, which sends and receives on
 * one end of a datagram socket pair, and sends nothing but ATTACHes.
 * Without them the ring path runs in each direction (unless either
 * options turn it off), with the registry's `ring_capacity`.
 *
 * On success the handles own `fd` and `*out_registry`,
 * `*out_attachments` are written; on failure neither is, and `fd` is still
 * the caller's. Returns `VOXSHM_INVALID_ARGUMENT` (NULL or identical
 * outs, fd not an `AF_UNIX` `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad
 * options, vox compatibility in one options only), `VOXSHM_TIMEOUT` (no
 * room in the channel for HELLO), `VOXSHM_RESOURCE_EXHAUSTED`.
 */
enum voxshm_status voxshm_duplex_new(int fd, const struct voxshm_registry_options *registry_options, const struct voxshm_attachments_options *attachments_options, struct voxshm_registry **out_registry, struct voxshm_attachments **out_attachments);

/**
 * Fills `*options` with the defaults (and its `struct_size`).
 * Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_receiver_options_init(struct voxshm_receiver_options *options);

/**
 * Creates a fan-out sender with no receiver yet. `options` (the
 * registry's; NULL for the defaults) set the regions, budget, keep-warm,
 * `max_in_flight_bytes` (over all receivers), ring and spin; vox
 * compatibility is refused (`VOXSHM_UNSUPPORTED`). Returns
 * `VOXSHM_INVALID_ARGUMENT`, `VOXSHM_UNSUPPORTED`,
 * `VOXSHM_RESOURCE_EXHAUSTED`.
 */
enum voxshm_status voxshm_fanout_new(const struct voxshm_registry_options *options, struct voxshm_fanout **out_fanout);

/**
 * Frees the handle: closes every receiver's channel (each sees the
 * sender go) and the regions; views receivers hold stay readable. NULL is
 * a no-op. No other thread may be using the handle.
 */
void voxshm_fanout_free(struct voxshm_fanout *fanout);

/**
 * The one fd to poll for all receivers (an epoll fd): readable when a
 * receiver sent releases or hung up; then call `voxshm_fanout_poll`. -1
 * for NULL. The fd stays the handle's: do not close or read it.
 */
int voxshm_fanout_fd(const struct voxshm_fanout *fanout);

/**
 * Adds a receiver over the connected socket `fd` (from
 * `voxshm_listener_accept`, `voxshm_channel_pair`, ...; the receiver is a
 * `voxshm_attachments` at the other end) and writes its id (never reused,
 * never 0) to `*out_id`. Does not wait, and delays no send to the other
 * receivers: its HELLO is read now if it is there (a voxshm receiver says
 * it when created), or by a later call, and payloads sent from then on
 * reach it, each region's ATTACH before its first reference. A connection
 * that never says HELLO gets nothing and delays nobody. On success
 * the handle owns `fd`; on failure it is still the caller's. `options`
 * may be NULL for the defaults. Returns `VOXSHM_INVALID_ARGUMENT`,
 * `VOXSHM_RESOURCE_EXHAUSTED` (`VOXSHM_FANOUT_MAX_RECEIVERS` already: gone
 * receivers count until removed).
 */
enum voxshm_status voxshm_fanout_add_receiver(const struct voxshm_fanout *fanout, int fd, const struct voxshm_receiver_options *options, uint32_t *out_id);

/**
 * Waits up to `timeout_ms` (0: do not wait; negative: forever) until
 * receiver `id` said HELLO: payloads sent from then on reach it (a
 * voxshm receiver says it when its attachments are created; one added
 * before that misses what is sent meanwhile). Returns `VOXSHM_TIMEOUT`,
 * `VOXSHM_PEER_GONE` (it went away first), `VOXSHM_INVALID_ARGUMENT`
 * (unknown id).
 */
enum voxshm_status voxshm_fanout_wait_ready(const struct voxshm_fanout *fanout, uint32_t id, int64_t timeout_ms);

/**
 * Removes a receiver: it is told (its channel is shut for writing: its
 * `recv` says `VOXSHM_PEER_GONE`) and gets nothing more. What it holds
 * stays its own, since it may still be reading it, until it closes its
 * end (frees its attachments) or `send_timeout_ms` (at least 1 s) passed; then the space
 * comes back. Its id is unknown from now on. Returns
 * `VOXSHM_INVALID_ARGUMENT` (unknown id).
 */
enum voxshm_status voxshm_fanout_remove_receiver(const struct voxshm_fanout *fanout, uint32_t id);

/**
 * Writes up to `capacity` receiver ids to `ids` and their number (all of
 * them, which may be more than `capacity`) to `*out_count`. `ids` may be
 * NULL when `capacity` is 0. Returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_receivers(const struct voxshm_fanout *fanout, uint32_t *ids, size_t capacity, size_t *out_count);

/**
 * Allocates `len` bytes of payload space (as `voxshm_registry_alloc`),
 * waiting up to `timeout_ms` for receivers to release space. Returns
 * `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE`, `VOXSHM_NO_SPACE`,
 * `VOXSHM_RESOURCE_EXHAUSTED`, `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_alloc(const struct voxshm_fanout *fanout, size_t len, int64_t timeout_ms, struct voxshm_allocation *out_allocation);

/**
 * Sends the first `len` bytes of `allocation`, written once, to every
 * receiver (`receiver` = `VOXSHM_ALL_RECEIVERS`) or to one (its id), and
 * writes how many receivers got it to `*out_delivered` (may be NULL).
 * Receivers with the wait policy that cannot take it now (at their
 * `max_in_flight`, their ring or socket full) are waited for, up to
 * `timeout_ms` (0: not at all; negative: forever;
 * `VOXSHM_TIMEOUT_CONFIGURED`: `send_timeout_ms`); those with the skip
 * policy miss it. Receivers whose HELLO was not read yet are not sent to.
 * 0 receivers is a success (its space is reused at once). On success the
 * allocation is consumed; on failure nobody got it and it is still the
 * caller's. A receiver found gone, or whose socket filled, while the
 * payload was being sent to others misses it (its `skipped` counts it).
 * Returns `VOXSHM_TIMEOUT` (a waiting receiver stayed full; the message
 * names it), `VOXSHM_PEER_GONE` (the one receiver named is gone),
 * `VOXSHM_INVALID_ALLOCATION`, `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE`,
 * `VOXSHM_INVALID_ARGUMENT` (unknown receiver id).
 */
enum voxshm_status voxshm_fanout_send(const struct voxshm_fanout *fanout, const struct voxshm_allocation *allocation, size_t len, uint32_t receiver, int64_t timeout_ms, uint32_t *out_delivered);

/**
 * Gives back an allocation that was never sent. Returns
 * `VOXSHM_INVALID_ALLOCATION`, `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_abort(const struct voxshm_fanout *fanout, const struct voxshm_allocation *allocation);

/**
 * Applies whatever the receivers sent (releases, acknowledgements,
 * hang-ups) without waiting. Call it when `voxshm_fanout_fd` is readable.
 * A receiver that went away, broke the protocol, or left a retirement
 * unacknowledged for `send_timeout_ms` (at least 1 s) is cut off alone (see its stats);
 * that is not an error of this call. Returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_poll(const struct voxshm_fanout *fanout);

/**
 * Waits up to `timeout_ms` until no receiver holds a payload and every
 * retired region was acknowledged (what receivers that went away held was
 * reclaimed, and counts as given back). Returns `VOXSHM_TIMEOUT`,
 * `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_wait_idle(const struct voxshm_fanout *fanout, int64_t timeout_ms);

/**
 * Writes the handle's counters to `*out_stats` (whose `struct_size` the
 * caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_fanout_get_stats(const struct voxshm_fanout *fanout, struct voxshm_fanout_stats *out_stats);

/**
 * Writes receiver `id`'s counters to `*out_stats` (whose `struct_size`
 * the caller sets). Returns `VOXSHM_INVALID_ARGUMENT` (also for an
 * unknown id).
 */
enum voxshm_status voxshm_fanout_get_receiver_stats(const struct voxshm_fanout *fanout, uint32_t id, struct voxshm_receiver_stats *out_stats);

/**
 * Encodes `ref` as the 32-byte vox MMAP_REF frame into `out` (32 writable
 * bytes), to carry over a transport of the caller's own.
 * Returns `VOXSHM_INVALID_ARGUMENT` for NULL pointers.
 */
enum voxshm_status voxshm_ref_encode(const struct voxshm_ref *reference, uint8_t *out_frame);

/**
 * Decodes an MMAP_REF frame from the `len` bytes at `frame` into `*out`.
 * Returns `VOXSHM_BAD_FRAME` for a short buffer, wrong total_len, wrong
 * flags or non-zero reserved bytes; `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_ref_decode(const uint8_t *frame, size_t len, struct voxshm_ref *out_ref);

/**
 * Fills `*options` with the defaults (and its `struct_size`).
 * Returns `VOXSHM_INVALID_ARGUMENT` for NULL.
 */
enum voxshm_status voxshm_registry_options_init(struct voxshm_registry_options *options);

/**
 * Creates a registry that sends over the connected socket `fd`.
 * `options` may be NULL for the defaults. On success the registry owns
 * `fd` (it is closed by `voxshm_registry_free`) and `*out` is the new
 * handle; on failure `fd` is still the caller's.
 * Returns `VOXSHM_INVALID_ARGUMENT` (NULL out, fd not an `AF_UNIX`
 * `SOCK_SEQPACKET`/`SOCK_DGRAM` socket, bad options),
 * `VOXSHM_RESOURCE_EXHAUSTED`.
 */
enum voxshm_status voxshm_registry_new(int fd, const struct voxshm_registry_options *options, struct voxshm_registry **out_registry);

/**
 * Frees the registry: closes its channel (the receiver sees the sender
 * go) and its regions. Allocations from it become invalid; views the
 * receiver holds stay readable. Of a duplex channel (`voxshm_duplex_new`),
 * the channel and regions are closed when its attachments are freed too:
 * until then the peer is not told (the payloads it holds stay readable,
 * its `recv` sees `VOXSHM_PEER_GONE` only then).
 * NULL is a no-op. No other thread may be using the registry.
 */
void voxshm_registry_free(struct voxshm_registry *registry);

/**
 * The channel fd, for poll/epoll: readable when the receiver sent
 * releases or hung up; then call `voxshm_registry_poll`. -1 for NULL. The
 * fd stays the registry's: do not close or read it.
 */
int voxshm_registry_fd(const struct voxshm_registry *registry);

/**
 * Allocates `len` bytes of payload space (1 ..= 4 GiB - 1) and writes it
 * to `*out`. When the budget is exhausted it waits up to `timeout_ms` (0:
 * do not wait; negative: forever) for the receiver to release space.
 * Returns `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE` (over 4 GiB - 1 or over
 * the budget), `VOXSHM_NO_SPACE` (budget still exhausted at the timeout),
 * `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_RESOURCE_EXHAUSTED`
 * (memfd, fd or memory limits), `VOXSHM_TIMEOUT` (the channel stayed full
 * while announcing a new region), `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_alloc(const struct voxshm_registry *registry, size_t len, int64_t timeout_ms, struct voxshm_allocation *out_allocation);

/**
 * Publishes the first `len` bytes of `allocation` and writes their
 * reference to `*out_ref`, for the caller to carry over a transport of
 * its own (see `voxshm_ref_encode`). Every write to the payload made
 * before this call is visible to a receiver that resolves the reference.
 * The allocation is consumed: do not write it any more. Returns
 * `VOXSHM_INVALID_ALLOCATION` (unknown, already published or aborted),
 * `VOXSHM_ZERO_LENGTH`, `VOXSHM_TOO_LARGE` (len > capacity),
 * `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_publish(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len, struct voxshm_ref *out_ref);

/**
 * Publishes the first `len` bytes of `allocation` and sends the reference
 * over the channel (the receiver takes it with `voxshm_attachments_recv`),
 * waiting up to the configured `send_timeout_ms` for the receiver's HELLO
 * and for room in the channel. On success the allocation is consumed; on
 * failure it is still the caller's, to send again or abort. Returns the
 * statuses of `voxshm_registry_publish`, `VOXSHM_TIMEOUT`, and
 * `VOXSHM_UNSUPPORTED` in vox compatibility mode.
 */
enum voxshm_status voxshm_registry_send(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len);

/**
 * `voxshm_registry_send` with its own timeout, by the rule of every call:
 * 0 does not wait, a negative timeout waits forever; pass
 * `VOXSHM_TIMEOUT_CONFIGURED` for the configured `send_timeout_ms`.
 */
enum voxshm_status voxshm_registry_send_timeout(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len, int64_t timeout_ms);

/**
 * Gives back an allocation that was never published; its space is reused.
 * Works after the receiver has gone too. Returns
 * `VOXSHM_INVALID_ALLOCATION` (unknown, published or aborted already),
 * `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_abort(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation);

/**
 * Applies whatever the receiver sent (releases, acknowledgements, hang-up)
 * without waiting. Call it when `voxshm_registry_fd` is readable. Returns
 * `VOXSHM_PEER_GONE`, `VOXSHM_PROTOCOL`, `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_poll(const struct voxshm_registry *registry);

/**
 * Waits up to `timeout_ms` (0: do not wait; negative: forever) until the
 * receiver has released every payload and acknowledged every retired
 * region (a receiver acknowledges when it next calls voxshm, so right
 * after the last release this can still wait for that; the
 * `VOXSHM_TIMEOUT` message says which of the two it was waiting for).
 * Returns `VOXSHM_TIMEOUT`, `VOXSHM_PEER_GONE` (the receiver went away
 * holding payloads: they were reclaimed, not released), `VOXSHM_PROTOCOL`,
 * `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_wait_idle(const struct voxshm_registry *registry, int64_t timeout_ms);

/**
 * Waits up to `timeout_ms` (0: do not wait, for an event loop; negative:
 * forever) until the receiver has released the payload `reference` names:
 * what `voxshm_registry_publish` returned, or, for a payload given to
 * `voxshm_registry_send`, `{a.map_id, a.map_generation, a.map_offset, len}`
 * of its allocation. Returns `VOXSHM_OK` once it is released (at once if
 * it already was, or if this registry never sent it), `VOXSHM_TIMEOUT`
 * while it is not, `VOXSHM_PEER_GONE` when the receiver went away holding
 * it (its space was reclaimed, not released), `VOXSHM_PROTOCOL`,
 * `VOXSHM_INVALID_ARGUMENT`. In an event loop: when `voxshm_registry_fd`
 * is readable, call this with timeout 0. If the space was released and
 * already taken again by a payload of the same length at the same place,
 * this waits for that one too: it never reports a release too early.
 */
enum voxshm_status voxshm_registry_wait_released(const struct voxshm_registry *registry, const struct voxshm_ref *reference, int64_t timeout_ms);

/**
 * Ends the lease of the payload `reference` names (what
 * `voxshm_registry_publish` returned), as the receiver's release would, for
 * a vox receiver: with `VOXSHM_REGISTRY_VOX_COMPAT` references travel over
 * the caller's own transport and the receiver's releases over it too, or
 * not at all; without this call the budget would be a lifetime cap. Its
 * space is reused; the receiver must be done with it. Release each payload
 * once: a reference whose space now holds another payload of the same
 * length at the same place names that one. Returns
 * `VOXSHM_INVALID_ARGUMENT` for a reference that is not a published payload
 * this registry holds (released already and not reused, or never
 * published), or NULL; `VOXSHM_PEER_GONE` when the receiver went away
 * holding it (it was reclaimed); `VOXSHM_UNSUPPORTED` without vox
 * compatibility (a voxshm receiver releases its payloads itself);
 * `VOXSHM_PROTOCOL`.
 */
enum voxshm_status voxshm_registry_release(const struct voxshm_registry *registry, const struct voxshm_ref *reference);

/**
 * Writes the registry's counters and limits to `*out` (whose
 * `struct_size` the caller sets). Returns `VOXSHM_INVALID_ARGUMENT`.
 */
enum voxshm_status voxshm_registry_get_stats(const struct voxshm_registry *registry, struct voxshm_registry_stats *out_stats);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* VOXSHM_H */
