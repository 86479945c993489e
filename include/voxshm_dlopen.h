/*
 * voxshm for programs that load libvoxshm.so.0 with dlopen: a
 * function-pointer type for every function of voxshm.h, the struct
 * voxshm_api holding them all, and voxshm_api_load, which fills it.
 * Generated from voxshm.h by build.rs; do not edit it by hand
 * (regenerate with: VOXSHM_UPDATE_HEADER=1 cargo build).
 */

#ifndef VOXSHM_DLOPEN_H
#define VOXSHM_DLOPEN_H

#include <dlfcn.h>
#include <string.h>

#include "voxshm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The type of `voxshm_attachments_options_init`. */
typedef enum voxshm_status (*voxshm_attachments_options_init_fn)(struct voxshm_attachments_options *options);
/** The type of `voxshm_attachments_new`. */
typedef enum voxshm_status (*voxshm_attachments_new_fn)(int fd, const struct voxshm_attachments_options *options, struct voxshm_attachments **out_attachments);
/** The type of `voxshm_attachments_free`. */
typedef void (*voxshm_attachments_free_fn)(struct voxshm_attachments *attachments);
/** The type of `voxshm_attachments_fd`. */
typedef int (*voxshm_attachments_fd_fn)(const struct voxshm_attachments *attachments);
/** The type of `voxshm_attachments_recv`. */
typedef enum voxshm_status (*voxshm_attachments_recv_fn)(const struct voxshm_attachments *attachments, int64_t timeout_ms, struct voxshm_view *out_view);
/** The type of `voxshm_attachments_resolve`. */
typedef enum voxshm_status (*voxshm_attachments_resolve_fn)(const struct voxshm_attachments *attachments, const struct voxshm_ref *reference, int64_t timeout_ms, struct voxshm_view *out_view);
/** The type of `voxshm_attachments_release`. */
typedef enum voxshm_status (*voxshm_attachments_release_fn)(const struct voxshm_attachments *attachments, const struct voxshm_view *view);
/** The type of `voxshm_attachments_poll`. */
typedef enum voxshm_status (*voxshm_attachments_poll_fn)(const struct voxshm_attachments *attachments);
/** The type of `voxshm_attachments_get_stats`. */
typedef enum voxshm_status (*voxshm_attachments_get_stats_fn)(const struct voxshm_attachments *attachments, struct voxshm_attachments_stats *out_stats);
/** The type of `voxshm_channel_pair`. */
typedef enum voxshm_status (*voxshm_channel_pair_fn)(int *fds);
/** The type of `voxshm_channel_pair_dgram`. */
typedef enum voxshm_status (*voxshm_channel_pair_dgram_fn)(int *fds);
/** The type of `voxshm_listener_new`. */
typedef enum voxshm_status (*voxshm_listener_new_fn)(const char *path, struct voxshm_listener **out_listener);
/** The type of `voxshm_listener_options_init`. */
typedef enum voxshm_status (*voxshm_listener_options_init_fn)(struct voxshm_listener_options *options);
/** The type of `voxshm_listener_new_with_options`. */
typedef enum voxshm_status (*voxshm_listener_new_with_options_fn)(const char *path, const struct voxshm_listener_options *options, struct voxshm_listener **out_listener);
/** The type of `voxshm_listener_accept`. */
typedef enum voxshm_status (*voxshm_listener_accept_fn)(const struct voxshm_listener *listener, int64_t timeout_ms, int *out_fd);
/** The type of `voxshm_listener_fd`. */
typedef int (*voxshm_listener_fd_fn)(const struct voxshm_listener *listener);
/** The type of `voxshm_listener_free`. */
typedef void (*voxshm_listener_free_fn)(struct voxshm_listener *listener);
/** The type of `voxshm_connect`. */
typedef enum voxshm_status (*voxshm_connect_fn)(const char *path, int *out_fd);
/** The type of `voxshm_connect_options_init`. */
typedef enum voxshm_status (*voxshm_connect_options_init_fn)(struct voxshm_connect_options *options);
/** The type of `voxshm_connect_with_options`. */
typedef enum voxshm_status (*voxshm_connect_with_options_fn)(const char *path, const struct voxshm_connect_options *options, int *out_fd);
/** The type of `voxshm_peer_credentials_get`. */
typedef enum voxshm_status (*voxshm_peer_credentials_get_fn)(int fd, struct voxshm_peer_credentials *out_credentials);
/** The type of `voxshm_version`. */
typedef const char * (*voxshm_version_fn)(void);
/** The type of `voxshm_abi_version`. */
typedef uint32_t (*voxshm_abi_version_fn)(void);
/** The type of `voxshm_status_name`. */
typedef const char * (*voxshm_status_name_fn)(int status);
/** The type of `voxshm_last_error`. */
typedef const char * (*voxshm_last_error_fn)(void);
/** The type of `voxshm_set_log_callback`. */
typedef enum voxshm_status (*voxshm_set_log_callback_fn)(voxshm_log_fn callback, void *user_data, int max_level);
/** The type of `voxshm_duplex_new`. */
typedef enum voxshm_status (*voxshm_duplex_new_fn)(int fd, const struct voxshm_registry_options *registry_options, const struct voxshm_attachments_options *attachments_options, struct voxshm_registry **out_registry, struct voxshm_attachments **out_attachments);
/** The type of `voxshm_receiver_options_init`. */
typedef enum voxshm_status (*voxshm_receiver_options_init_fn)(struct voxshm_receiver_options *options);
/** The type of `voxshm_fanout_new`. */
typedef enum voxshm_status (*voxshm_fanout_new_fn)(const struct voxshm_registry_options *options, struct voxshm_fanout **out_fanout);
/** The type of `voxshm_fanout_free`. */
typedef void (*voxshm_fanout_free_fn)(struct voxshm_fanout *fanout);
/** The type of `voxshm_fanout_fd`. */
typedef int (*voxshm_fanout_fd_fn)(const struct voxshm_fanout *fanout);
/** The type of `voxshm_fanout_add_receiver`. */
typedef enum voxshm_status (*voxshm_fanout_add_receiver_fn)(const struct voxshm_fanout *fanout, int fd, const struct voxshm_receiver_options *options, uint32_t *out_id);
/** The type of `voxshm_fanout_wait_ready`. */
typedef enum voxshm_status (*voxshm_fanout_wait_ready_fn)(const struct voxshm_fanout *fanout, uint32_t id, int64_t timeout_ms);
/** The type of `voxshm_fanout_remove_receiver`. */
typedef enum voxshm_status (*voxshm_fanout_remove_receiver_fn)(const struct voxshm_fanout *fanout, uint32_t id);
/** The type of `voxshm_fanout_receivers`. */
typedef enum voxshm_status (*voxshm_fanout_receivers_fn)(const struct voxshm_fanout *fanout, uint32_t *ids, size_t capacity, size_t *out_count);
/** The type of `voxshm_fanout_alloc`. */
typedef enum voxshm_status (*voxshm_fanout_alloc_fn)(const struct voxshm_fanout *fanout, size_t len, int64_t timeout_ms, struct voxshm_allocation *out_allocation);
/** The type of `voxshm_fanout_send`. */
typedef enum voxshm_status (*voxshm_fanout_send_fn)(const struct voxshm_fanout *fanout, const struct voxshm_allocation *allocation, size_t len, uint32_t receiver, int64_t timeout_ms, uint32_t *out_delivered);
/** The type of `voxshm_fanout_abort`. */
typedef enum voxshm_status (*voxshm_fanout_abort_fn)(const struct voxshm_fanout *fanout, const struct voxshm_allocation *allocation);
/** The type of `voxshm_fanout_poll`. */
typedef enum voxshm_status (*voxshm_fanout_poll_fn)(const struct voxshm_fanout *fanout);
/** The type of `voxshm_fanout_wait_idle`. */
typedef enum voxshm_status (*voxshm_fanout_wait_idle_fn)(const struct voxshm_fanout *fanout, int64_t timeout_ms);
/** The type of `voxshm_fanout_get_stats`. */
typedef enum voxshm_status (*voxshm_fanout_get_stats_fn)(const struct voxshm_fanout *fanout, struct voxshm_fanout_stats *out_stats);
/** The type of `voxshm_fanout_get_receiver_stats`. */
typedef enum voxshm_status (*voxshm_fanout_get_receiver_stats_fn)(const struct voxshm_fanout *fanout, uint32_t id, struct voxshm_receiver_stats *out_stats);
/** The type of `voxshm_ref_encode`. */
typedef enum voxshm_status (*voxshm_ref_encode_fn)(const struct voxshm_ref *reference, uint8_t *out_frame);
/** The type of `voxshm_ref_decode`. */
typedef enum voxshm_status (*voxshm_ref_decode_fn)(const uint8_t *frame, size_t len, struct voxshm_ref *out_ref);
/** The type of `voxshm_registry_options_init`. */
typedef enum voxshm_status (*voxshm_registry_options_init_fn)(struct voxshm_registry_options *options);
/** The type of `voxshm_registry_new`. */
typedef enum voxshm_status (*voxshm_registry_new_fn)(int fd, const struct voxshm_registry_options *options, struct voxshm_registry **out_registry);
/** The type of `voxshm_registry_free`. */
typedef void (*voxshm_registry_free_fn)(struct voxshm_registry *registry);
/** The type of `voxshm_registry_fd`. */
typedef int (*voxshm_registry_fd_fn)(const struct voxshm_registry *registry);
/** The type of `voxshm_registry_alloc`. */
typedef enum voxshm_status (*voxshm_registry_alloc_fn)(const struct voxshm_registry *registry, size_t len, int64_t timeout_ms, struct voxshm_allocation *out_allocation);
/** The type of `voxshm_registry_publish`. */
typedef enum voxshm_status (*voxshm_registry_publish_fn)(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len, struct voxshm_ref *out_ref);
/** The type of `voxshm_registry_send`. */
typedef enum voxshm_status (*voxshm_registry_send_fn)(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len);
/** The type of `voxshm_registry_send_timeout`. */
typedef enum voxshm_status (*voxshm_registry_send_timeout_fn)(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation, size_t len, int64_t timeout_ms);
/** The type of `voxshm_registry_abort`. */
typedef enum voxshm_status (*voxshm_registry_abort_fn)(const struct voxshm_registry *registry, const struct voxshm_allocation *allocation);
/** The type of `voxshm_registry_poll`. */
typedef enum voxshm_status (*voxshm_registry_poll_fn)(const struct voxshm_registry *registry);
/** The type of `voxshm_registry_wait_idle`. */
typedef enum voxshm_status (*voxshm_registry_wait_idle_fn)(const struct voxshm_registry *registry, int64_t timeout_ms);
/** The type of `voxshm_registry_wait_released`. */
typedef enum voxshm_status (*voxshm_registry_wait_released_fn)(const struct voxshm_registry *registry, const struct voxshm_ref *reference, int64_t timeout_ms);
/** The type of `voxshm_registry_release`. */
typedef enum voxshm_status (*voxshm_registry_release_fn)(const struct voxshm_registry *registry, const struct voxshm_ref *reference);
/** The type of `voxshm_registry_get_stats`. */
typedef enum voxshm_status (*voxshm_registry_get_stats_fn)(const struct voxshm_registry *registry, struct voxshm_registry_stats *out_stats);

/** Every function of the library; fill it with voxshm_api_load. */
typedef struct voxshm_api {
  voxshm_attachments_options_init_fn attachments_options_init;
  voxshm_attachments_new_fn attachments_new;
  voxshm_attachments_free_fn attachments_free;
  voxshm_attachments_fd_fn attachments_fd;
  voxshm_attachments_recv_fn attachments_recv;
  voxshm_attachments_resolve_fn attachments_resolve;
  voxshm_attachments_release_fn attachments_release;
  voxshm_attachments_poll_fn attachments_poll;
  voxshm_attachments_get_stats_fn attachments_get_stats;
  voxshm_channel_pair_fn channel_pair;
  voxshm_channel_pair_dgram_fn channel_pair_dgram;
  voxshm_listener_new_fn listener_new;
  voxshm_listener_options_init_fn listener_options_init;
  voxshm_listener_new_with_options_fn listener_new_with_options;
  voxshm_listener_accept_fn listener_accept;
  voxshm_listener_fd_fn listener_fd;
  voxshm_listener_free_fn listener_free;
  voxshm_connect_fn connect;
  voxshm_connect_options_init_fn connect_options_init;
  voxshm_connect_with_options_fn connect_with_options;
  voxshm_peer_credentials_get_fn peer_credentials_get;
  voxshm_version_fn version;
  voxshm_abi_version_fn abi_version;
  voxshm_status_name_fn status_name;
  voxshm_last_error_fn last_error;
  voxshm_set_log_callback_fn set_log_callback;
  voxshm_duplex_new_fn duplex_new;
  voxshm_receiver_options_init_fn receiver_options_init;
  voxshm_fanout_new_fn fanout_new;
  voxshm_fanout_free_fn fanout_free;
  voxshm_fanout_fd_fn fanout_fd;
  voxshm_fanout_add_receiver_fn fanout_add_receiver;
  voxshm_fanout_wait_ready_fn fanout_wait_ready;
  voxshm_fanout_remove_receiver_fn fanout_remove_receiver;
  voxshm_fanout_receivers_fn fanout_receivers;
  voxshm_fanout_alloc_fn fanout_alloc;
  voxshm_fanout_send_fn fanout_send;
  voxshm_fanout_abort_fn fanout_abort;
  voxshm_fanout_poll_fn fanout_poll;
  voxshm_fanout_wait_idle_fn fanout_wait_idle;
  voxshm_fanout_get_stats_fn fanout_get_stats;
  voxshm_fanout_get_receiver_stats_fn fanout_get_receiver_stats;
  voxshm_ref_encode_fn ref_encode;
  voxshm_ref_decode_fn ref_decode;
  voxshm_registry_options_init_fn registry_options_init;
  voxshm_registry_new_fn registry_new;
  voxshm_registry_free_fn registry_free;
  voxshm_registry_fd_fn registry_fd;
  voxshm_registry_alloc_fn registry_alloc;
  voxshm_registry_publish_fn registry_publish;
  voxshm_registry_send_fn registry_send;
  voxshm_registry_send_timeout_fn registry_send_timeout;
  voxshm_registry_abort_fn registry_abort;
  voxshm_registry_poll_fn registry_poll;
  voxshm_registry_wait_idle_fn registry_wait_idle;
  voxshm_registry_wait_released_fn registry_wait_released;
  voxshm_registry_release_fn registry_release;
  voxshm_registry_get_stats_fn registry_get_stats;
} voxshm_api;

/**
 * Fills *api from `lib`, a handle from dlopen("libvoxshm.so.0", ...).
 * Checks first that the library's ABI version is VOXSHM_ABI_VERSION.
 * Returns NULL on success, or what failed: the name of a missing
 * symbol, or "VOXSHM_ABI_VERSION" for a library of another ABI.
 * ISO C cannot cast dlsym's object pointer to a function pointer;
 * copying its bytes is what POSIX guarantees to work.
 */
static inline const char *voxshm_api_load(void *lib, voxshm_api *api) {
  void *sym;
  sym = dlsym(lib, "voxshm_abi_version");
  if (sym == NULL) return "voxshm_abi_version";
  memcpy(&api->abi_version, &sym, sizeof api->abi_version);
  if (api->abi_version() != VOXSHM_ABI_VERSION) return "VOXSHM_ABI_VERSION";
  sym = dlsym(lib, "voxshm_attachments_options_init");
  if (sym == NULL) return "voxshm_attachments_options_init";
  memcpy(&api->attachments_options_init, &sym, sizeof api->attachments_options_init);
  sym = dlsym(lib, "voxshm_attachments_new");
  if (sym == NULL) return "voxshm_attachments_new";
  memcpy(&api->attachments_new, &sym, sizeof api->attachments_new);
  sym = dlsym(lib, "voxshm_attachments_free");
  if (sym == NULL) return "voxshm_attachments_free";
  memcpy(&api->attachments_free, &sym, sizeof api->attachments_free);
  sym = dlsym(lib, "voxshm_attachments_fd");
  if (sym == NULL) return "voxshm_attachments_fd";
  memcpy(&api->attachments_fd, &sym, sizeof api->attachments_fd);
  sym = dlsym(lib, "voxshm_attachments_recv");
  if (sym == NULL) return "voxshm_attachments_recv";
  memcpy(&api->attachments_recv, &sym, sizeof api->attachments_recv);
  sym = dlsym(lib, "voxshm_attachments_resolve");
  if (sym == NULL) return "voxshm_attachments_resolve";
  memcpy(&api->attachments_resolve, &sym, sizeof api->attachments_resolve);
  sym = dlsym(lib, "voxshm_attachments_release");
  if (sym == NULL) return "voxshm_attachments_release";
  memcpy(&api->attachments_release, &sym, sizeof api->attachments_release);
  sym = dlsym(lib, "voxshm_attachments_poll");
  if (sym == NULL) return "voxshm_attachments_poll";
  memcpy(&api->attachments_poll, &sym, sizeof api->attachments_poll);
  sym = dlsym(lib, "voxshm_attachments_get_stats");
  if (sym == NULL) return "voxshm_attachments_get_stats";
  memcpy(&api->attachments_get_stats, &sym, sizeof api->attachments_get_stats);
  sym = dlsym(lib, "voxshm_channel_pair");
  if (sym == NULL) return "voxshm_channel_pair";
  memcpy(&api->channel_pair, &sym, sizeof api->channel_pair);
  sym = dlsym(lib, "voxshm_channel_pair_dgram");
  if (sym == NULL) return "voxshm_channel_pair_dgram";
  memcpy(&api->channel_pair_dgram, &sym, sizeof api->channel_pair_dgram);
  sym = dlsym(lib, "voxshm_listener_new");
  if (sym == NULL) return "voxshm_listener_new";
  memcpy(&api->listener_new, &sym, sizeof api->listener_new);
  sym = dlsym(lib, "voxshm_listener_options_init");
  if (sym == NULL) return "voxshm_listener_options_init";
  memcpy(&api->listener_options_init, &sym, sizeof api->listener_options_init);
  sym = dlsym(lib, "voxshm_listener_new_with_options");
  if (sym == NULL) return "voxshm_listener_new_with_options";
  memcpy(&api->listener_new_with_options, &sym, sizeof api->listener_new_with_options);
  sym = dlsym(lib, "voxshm_listener_accept");
  if (sym == NULL) return "voxshm_listener_accept";
  memcpy(&api->listener_accept, &sym, sizeof api->listener_accept);
  sym = dlsym(lib, "voxshm_listener_fd");
  if (sym == NULL) return "voxshm_listener_fd";
  memcpy(&api->listener_fd, &sym, sizeof api->listener_fd);
  sym = dlsym(lib, "voxshm_listener_free");
  if (sym == NULL) return "voxshm_listener_free";
  memcpy(&api->listener_free, &sym, sizeof api->listener_free);
  sym = dlsym(lib, "voxshm_connect");
  if (sym == NULL) return "voxshm_connect";
  memcpy(&api->connect, &sym, sizeof api->connect);
  sym = dlsym(lib, "voxshm_connect_options_init");
  if (sym == NULL) return "voxshm_connect_options_init";
  memcpy(&api->connect_options_init, &sym, sizeof api->connect_options_init);
  sym = dlsym(lib, "voxshm_connect_with_options");
  if (sym == NULL) return "voxshm_connect_with_options";
  memcpy(&api->connect_with_options, &sym, sizeof api->connect_with_options);
  sym = dlsym(lib, "voxshm_peer_credentials_get");
  if (sym == NULL) return "voxshm_peer_credentials_get";
  memcpy(&api->peer_credentials_get, &sym, sizeof api->peer_credentials_get);
  sym = dlsym(lib, "voxshm_version");
  if (sym == NULL) return "voxshm_version";
  memcpy(&api->version, &sym, sizeof api->version);
  sym = dlsym(lib, "voxshm_status_name");
  if (sym == NULL) return "voxshm_status_name";
  memcpy(&api->status_name, &sym, sizeof api->status_name);
  sym = dlsym(lib, "voxshm_last_error");
  if (sym == NULL) return "voxshm_last_error";
  memcpy(&api->last_error, &sym, sizeof api->last_error);
  sym = dlsym(lib, "voxshm_set_log_callback");
  if (sym == NULL) return "voxshm_set_log_callback";
  memcpy(&api->set_log_callback, &sym, sizeof api->set_log_callback);
  sym = dlsym(lib, "voxshm_duplex_new");
  if (sym == NULL) return "voxshm_duplex_new";
  memcpy(&api->duplex_new, &sym, sizeof api->duplex_new);
  sym = dlsym(lib, "voxshm_receiver_options_init");
  if (sym == NULL) return "voxshm_receiver_options_init";
  memcpy(&api->receiver_options_init, &sym, sizeof api->receiver_options_init);
  sym = dlsym(lib, "voxshm_fanout_new");
  if (sym == NULL) return "voxshm_fanout_new";
  memcpy(&api->fanout_new, &sym, sizeof api->fanout_new);
  sym = dlsym(lib, "voxshm_fanout_free");
  if (sym == NULL) return "voxshm_fanout_free";
  memcpy(&api->fanout_free, &sym, sizeof api->fanout_free);
  sym = dlsym(lib, "voxshm_fanout_fd");
  if (sym == NULL) return "voxshm_fanout_fd";
  memcpy(&api->fanout_fd, &sym, sizeof api->fanout_fd);
  sym = dlsym(lib, "voxshm_fanout_add_receiver");
  if (sym == NULL) return "voxshm_fanout_add_receiver";
  memcpy(&api->fanout_add_receiver, &sym, sizeof api->fanout_add_receiver);
  sym = dlsym(lib, "voxshm_fanout_wait_ready");
  if (sym == NULL) return "voxshm_fanout_wait_ready";
  memcpy(&api->fanout_wait_ready, &sym, sizeof api->fanout_wait_ready);
  sym = dlsym(lib, "voxshm_fanout_remove_receiver");
  if (sym == NULL) return "voxshm_fanout_remove_receiver";
  memcpy(&api->fanout_remove_receiver, &sym, sizeof api->fanout_remove_receiver);
  sym = dlsym(lib, "voxshm_fanout_receivers");
  if (sym == NULL) return "voxshm_fanout_receivers";
  memcpy(&api->fanout_receivers, &sym, sizeof api->fanout_receivers);
  sym = dlsym(lib, "voxshm_fanout_alloc");
  if (sym == NULL) return "voxshm_fanout_alloc";
  memcpy(&api->fanout_alloc, &sym, sizeof api->fanout_alloc);
  sym = dlsym(lib, "voxshm_fanout_send");
  if (sym == NULL) return "voxshm_fanout_send";
  memcpy(&api->fanout_send, &sym, sizeof api->fanout_send);
  sym = dlsym(lib, "voxshm_fanout_abort");
  if (sym == NULL) return "voxshm_fanout_abort";
  memcpy(&api->fanout_abort, &sym, sizeof api->fanout_abort);
  sym = dlsym(lib, "voxshm_fanout_poll");
  if (sym == NULL) return "voxshm_fanout_poll";
  memcpy(&api->fanout_poll, &sym, sizeof api->fanout_poll);
  sym = dlsym(lib, "voxshm_fanout_wait_idle");
  if (sym == NULL) return "voxshm_fanout_wait_idle";
  memcpy(&api->fanout_wait_idle, &sym, sizeof api->fanout_wait_idle);
  sym = dlsym(lib, "voxshm_fanout_get_stats");
  if (sym == NULL) return "voxshm_fanout_get_stats";
  memcpy(&api->fanout_get_stats, &sym, sizeof api->fanout_get_stats);
  sym = dlsym(lib, "voxshm_fanout_get_receiver_stats");
  if (sym == NULL) return "voxshm_fanout_get_receiver_stats";
  memcpy(&api->fanout_get_receiver_stats, &sym, sizeof api->fanout_get_receiver_stats);
  sym = dlsym(lib, "voxshm_ref_encode");
  if (sym == NULL) return "voxshm_ref_encode";
  memcpy(&api->ref_encode, &sym, sizeof api->ref_encode);
  sym = dlsym(lib, "voxshm_ref_decode");
  if (sym == NULL) return "voxshm_ref_decode";
  memcpy(&api->ref_decode, &sym, sizeof api->ref_decode);
  sym = dlsym(lib, "voxshm_registry_options_init");
  if (sym == NULL) return "voxshm_registry_options_init";
  memcpy(&api->registry_options_init, &sym, sizeof api->registry_options_init);
  sym = dlsym(lib, "voxshm_registry_new");
  if (sym == NULL) return "voxshm_registry_new";
  memcpy(&api->registry_new, &sym, sizeof api->registry_new);
  sym = dlsym(lib, "voxshm_registry_free");
  if (sym == NULL) return "voxshm_registry_free";
  memcpy(&api->registry_free, &sym, sizeof api->registry_free);
  sym = dlsym(lib, "voxshm_registry_fd");
  if (sym == NULL) return "voxshm_registry_fd";
  memcpy(&api->registry_fd, &sym, sizeof api->registry_fd);
  sym = dlsym(lib, "voxshm_registry_alloc");
  if (sym == NULL) return "voxshm_registry_alloc";
  memcpy(&api->registry_alloc, &sym, sizeof api->registry_alloc);
  sym = dlsym(lib, "voxshm_registry_publish");
  if (sym == NULL) return "voxshm_registry_publish";
  memcpy(&api->registry_publish, &sym, sizeof api->registry_publish);
  sym = dlsym(lib, "voxshm_registry_send");
  if (sym == NULL) return "voxshm_registry_send";
  memcpy(&api->registry_send, &sym, sizeof api->registry_send);
  sym = dlsym(lib, "voxshm_registry_send_timeout");
  if (sym == NULL) return "voxshm_registry_send_timeout";
  memcpy(&api->registry_send_timeout, &sym, sizeof api->registry_send_timeout);
  sym = dlsym(lib, "voxshm_registry_abort");
  if (sym == NULL) return "voxshm_registry_abort";
  memcpy(&api->registry_abort, &sym, sizeof api->registry_abort);
  sym = dlsym(lib, "voxshm_registry_poll");
  if (sym == NULL) return "voxshm_registry_poll";
  memcpy(&api->registry_poll, &sym, sizeof api->registry_poll);
  sym = dlsym(lib, "voxshm_registry_wait_idle");
  if (sym == NULL) return "voxshm_registry_wait_idle";
  memcpy(&api->registry_wait_idle, &sym, sizeof api->registry_wait_idle);
  sym = dlsym(lib, "voxshm_registry_wait_released");
  if (sym == NULL) return "voxshm_registry_wait_released";
  memcpy(&api->registry_wait_released, &sym, sizeof api->registry_wait_released);
  sym = dlsym(lib, "voxshm_registry_release");
  if (sym == NULL) return "voxshm_registry_release";
  memcpy(&api->registry_release, &sym, sizeof api->registry_release);
  sym = dlsym(lib, "voxshm_registry_get_stats");
  if (sym == NULL) return "voxshm_registry_get_stats";
  memcpy(&api->registry_get_stats, &sym, sizeof api->registry_get_stats);
  return NULL;
}

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* VOXSHM_DLOPEN_H */
