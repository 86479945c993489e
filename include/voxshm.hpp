/*
 * voxshm.hpp: a header-only C++17 wrapper over the voxshm C API.
 *
 * Move-only RAII types: a registry, attachments and listener free their
 * handle when destroyed; an allocation that was neither sent nor published
 * gives its space back when destroyed; a view releases itself when
 * destroyed. Failures throw voxshm::error, which carries the status and the
 * library's message. An allocation or view must not outlive the registry or
 * attachments it came from.
 *
 * Byte access: data() + size() everywhere; with C++20's <span>, span() too.
 */
#ifndef VOXSHM_HPP
#define VOXSHM_HPP

#include <array>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "voxshm.h"

#if defined(__has_include)
#if __has_include(<span>) && __cplusplus >= 202002L
#include <span>
#define VOXSHM_HPP_HAS_SPAN 1
#endif
#endif

namespace voxshm {

/** A failed voxshm call: status() says which failure, what() says why. */
class error : public std::runtime_error {
 public:
  error(voxshm_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}

  /** The status the C call returned. */
  voxshm_status status() const noexcept { return status_; }

 private:
  voxshm_status status_;
};

namespace detail {

/** Throws voxshm::error for any status other than VOXSHM_OK. */
inline void check(voxshm_status s) {
  if (s != VOXSHM_OK) {
    const char* msg = voxshm_last_error();
    throw error(s, (msg && *msg) ? std::string(msg) : std::string(voxshm_status_name(s)));
  }
}

}  // namespace detail

/** The package version of the loaded library, e.g. "0.1.0". */
inline std::string version() { return voxshm_version(); }

/** A connected SOCK_SEQPACKET pair; both fds are the caller's. */
inline std::pair<int, int> channel_pair() {
  int fds[2] = {-1, -1};
  detail::check(voxshm_channel_pair(fds));
  return {fds[0], fds[1]};
}

/** A connected SOCK_DGRAM pair (what a vox peer makes); both fds are the caller's. */
inline std::pair<int, int> channel_pair_dgram() {
  int fds[2] = {-1, -1};
  detail::check(voxshm_channel_pair_dgram(fds));
  return {fds[0], fds[1]};
}

/** Connects to a listener at `path` ("@name": abstract); the fd is the caller's. */
inline int connect(const std::string& path) {
  int fd = -1;
  detail::check(voxshm_connect(path.c_str(), &fd));
  return fd;
}

/** Connect options with the defaults filled in (voxshm_connect_options_init). */
inline voxshm_connect_options connect_options() {
  voxshm_connect_options o;
  detail::check(voxshm_connect_options_init(&o));
  return o;
}

/** Connects with a policy for whom to talk to; the returned fd is the caller's. */
inline int connect(const std::string& path, const voxshm_connect_options& options) {
  int fd = -1;
  detail::check(voxshm_connect_with_options(path.c_str(), &options, &fd));
  return fd;
}

/** pid, uid and gid of the process at the other end of a connected fd. */
inline voxshm_peer_credentials peer_credentials(int fd) {
  voxshm_peer_credentials c;
  detail::check(voxshm_peer_credentials_get(fd, &c));
  return c;
}

/** Listener options with the defaults filled in (voxshm_listener_options_init). */
inline voxshm_listener_options listener_options() {
  voxshm_listener_options o;
  detail::check(voxshm_listener_options_init(&o));
  return o;
}

/** Encodes a reference as the 32-byte MMAP_REF frame. */
inline std::array<std::uint8_t, VOXSHM_REF_FRAME_LEN> encode(const voxshm_ref& ref) {
  std::array<std::uint8_t, VOXSHM_REF_FRAME_LEN> out{};
  detail::check(voxshm_ref_encode(&ref, out.data()));
  return out;
}

/** Decodes a 32-byte MMAP_REF frame; throws VOXSHM_BAD_FRAME if malformed. */
inline voxshm_ref decode(const void* frame, std::size_t len) {
  voxshm_ref ref{};
  detail::check(voxshm_ref_decode(static_cast<const std::uint8_t*>(frame), len, &ref));
  return ref;
}

/** A listening socket on a path, for two unrelated processes to meet. */
class listener {
 public:
  listener() = default;
  /**
   * Listens on a filesystem `path` (removed again on destruction; a stale
   * socket file is replaced, a live one refused) or "@name". Accepts only
   * this process's user or root, unless `options` say otherwise.
   */
  explicit listener(const std::string& path) { detail::check(voxshm_listener_new(path.c_str(), &l_)); }
  listener(const std::string& path, const voxshm_listener_options& options) {
    detail::check(voxshm_listener_new_with_options(path.c_str(), &options, &l_));
  }
  listener(listener&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
  listener& operator=(listener&& o) noexcept {
    if (this != &o) {
      voxshm_listener_free(l_);
      l_ = std::exchange(o.l_, nullptr);
    }
    return *this;
  }
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;
  ~listener() { voxshm_listener_free(l_); }

  /** Waits up to timeout_ms for a connection; the returned fd is the caller's. */
  int accept(std::int64_t timeout_ms = -1) const {
    int fd = -1;
    detail::check(voxshm_listener_accept(l_, timeout_ms, &fd));
    return fd;
  }
  int fd() const noexcept { return voxshm_listener_fd(l_); }
  voxshm_listener* get() const noexcept { return l_; }

 private:
  voxshm_listener* l_ = nullptr;
};

class registry;
class fanout;
class allocation;

namespace detail {
inline voxshm_status abort_in(const voxshm_registry* r, const voxshm_allocation* a) {
  return voxshm_registry_abort(r, a);
}
inline voxshm_status abort_in(const voxshm_fanout* f, const voxshm_allocation* a) {
  return voxshm_fanout_abort(f, a);
}
}  // namespace detail

/**
 * Payload space from registry::alloc (`allocation`) or fanout::alloc
 * (`fanout_allocation`). Write up to capacity() bytes at data(), then hand
 * it to send (or registry::publish). Destroyed while still held, it gives
 * the space back (abort).
 */
template <typename Owner>
class basic_allocation {
 public:
  basic_allocation() = default;
  basic_allocation(basic_allocation&& o) noexcept : reg_(std::exchange(o.reg_, nullptr)), a_(o.a_) {}
  basic_allocation& operator=(basic_allocation&& o) noexcept {
    if (this != &o) {
      reset();
      reg_ = std::exchange(o.reg_, nullptr);
      a_ = o.a_;
    }
    return *this;
  }
  basic_allocation(const basic_allocation&) = delete;
  basic_allocation& operator=(const basic_allocation&) = delete;
  ~basic_allocation() { reset(); }

  std::uint8_t* data() const noexcept { return reg_ ? a_.data : nullptr; }
  std::size_t capacity() const noexcept { return reg_ ? a_.capacity : 0; }
  std::size_t size() const noexcept { return capacity(); }
#ifdef VOXSHM_HPP_HAS_SPAN
  std::span<std::uint8_t> span() const noexcept { return {data(), capacity()}; }
#endif
  /** True while this object holds space. */
  explicit operator bool() const noexcept { return reg_ != nullptr; }
  /** The C allocation (valid while this object holds space). */
  const voxshm_allocation& raw() const noexcept { return a_; }

  /** Gives the space back now. */
  void abort() {
    if (reg_) {
      const Owner* r = std::exchange(reg_, nullptr);
      detail::check(detail::abort_in(r, &a_));
    }
  }

 private:
  friend class registry;
  friend class fanout;
  friend class allocation;
  basic_allocation(const Owner* r, const voxshm_allocation& a) : reg_(r), a_(a) {}
  void reset() noexcept {
    if (reg_) {
      detail::abort_in(std::exchange(reg_, nullptr), &a_);
    }
  }
  const Owner* reg_ = nullptr;
  voxshm_allocation a_{};
};

/** Payload space of a registry (a class of its own, so it can be declared
    ahead: `namespace voxshm { class allocation; }`). */
class allocation : public basic_allocation<voxshm_registry> {
 public:
  allocation() = default;

 private:
  friend class registry;
  allocation(const voxshm_registry* r, const voxshm_allocation& a) : basic_allocation(r, a) {}
};
/** Payload space of a fan-out sender. */
using fanout_allocation = basic_allocation<voxshm_fanout>;

/** The sender's side. Thread-safe; move-only. */
class registry {
 public:
  registry() = default;
  /**
   * Takes ownership of the connected socket `fd` (on success only: if this
   * throws, fd is still the caller's). `options` may be null for defaults.
   */
  explicit registry(int fd, const voxshm_registry_options* options = nullptr) {
    detail::check(voxshm_registry_new(fd, options, &r_));
  }
  static registry create(int fd, const voxshm_registry_options* options = nullptr) {
    return registry(fd, options);
  }
  /** Takes ownership of a handle made by the C API (may be null). */
  static registry adopt(voxshm_registry* r) noexcept {
    registry out;
    out.r_ = r;
    return out;
  }
  registry(registry&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  registry& operator=(registry&& o) noexcept {
    if (this != &o) {
      voxshm_registry_free(r_);
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;
  ~registry() { voxshm_registry_free(r_); }

  /** Default options, to change before passing them to the constructor. */
  static voxshm_registry_options default_options() {
    voxshm_registry_options o{};
    detail::check(voxshm_registry_options_init(&o));
    return o;
  }

  /** `len` bytes of payload space, waiting up to timeout_ms for budget. */
  allocation alloc(std::size_t len, std::int64_t timeout_ms = -1) const {
    voxshm_allocation a{};
    detail::check(voxshm_registry_alloc(r_, len, timeout_ms, &a));
    return allocation(r_, a);
  }

  /**
   * Publishes the first `len` bytes and sends the reference over the
   * channel. On success `a` is consumed; if this throws, `a` still holds
   * the space (retry, or let it abort). Timeouts follow the one rule (0:
   * do not wait, negative: forever); the default waits the configured
   * send_timeout_ms (VOXSHM_TIMEOUT_CONFIGURED).
   */
  void send(allocation&& a, std::size_t len,
            std::int64_t timeout_ms = VOXSHM_TIMEOUT_CONFIGURED) const {
    check_owner(a);
    detail::check(voxshm_registry_send_timeout(r_, &a.a_, len, timeout_ms));
    a.reg_ = nullptr;
  }

  /** Publishes the first `len` bytes and returns the reference to carry yourself. */
  voxshm_ref publish(allocation&& a, std::size_t len) const {
    check_owner(a);
    voxshm_ref ref{};
    detail::check(voxshm_registry_publish(r_, &a.a_, len, &ref));
    a.reg_ = nullptr;
    return ref;
  }

  /** Applies what the receiver sent, without waiting. */
  void poll() const { detail::check(voxshm_registry_poll(r_)); }

  /** Waits until every payload was released; false on timeout. */
  bool wait_idle(std::int64_t timeout_ms = -1) const {
    voxshm_status s = voxshm_registry_wait_idle(r_, timeout_ms);
    if (s == VOXSHM_TIMEOUT) return false;
    detail::check(s);
    return true;
  }

  /** Ends the lease of the payload `ref` names (vox compatibility: the
      receiver's releases travel over the caller's own transport). */
  void release(const voxshm_ref& ref) const { detail::check(voxshm_registry_release(r_, &ref)); }

  /** Waits until the payload `ref` names was released; false on timeout. */
  bool wait_released(const voxshm_ref& ref, std::int64_t timeout_ms = -1) const {
    voxshm_status s = voxshm_registry_wait_released(r_, &ref, timeout_ms);
    if (s == VOXSHM_TIMEOUT) return false;
    detail::check(s);
    return true;
  }

  voxshm_registry_stats stats() const {
    voxshm_registry_stats s{};
    s.struct_size = sizeof s;
    detail::check(voxshm_registry_get_stats(r_, &s));
    return s;
  }

  /** The channel fd for poll/epoll (still owned by the registry). */
  int fd() const noexcept { return voxshm_registry_fd(r_); }
  voxshm_registry* get() const noexcept { return r_; }
  explicit operator bool() const noexcept { return r_ != nullptr; }

 private:
  void check_owner(const allocation& a) const {
    if (a.reg_ != r_ || !r_) {
      throw error(VOXSHM_INVALID_ALLOCATION, "allocation is empty or belongs to another registry");
    }
  }
  voxshm_registry* r_ = nullptr;
};

class attachments;

/** A received payload, readable until destroyed (which releases it). */
class view {
 public:
  view() = default;
  view(view&& o) noexcept : att_(std::exchange(o.att_, nullptr)), v_(o.v_) {}
  view& operator=(view&& o) noexcept {
    if (this != &o) {
      reset();
      att_ = std::exchange(o.att_, nullptr);
      v_ = o.v_;
    }
    return *this;
  }
  view(const view&) = delete;
  view& operator=(const view&) = delete;
  ~view() { reset(); }

  const std::uint8_t* data() const noexcept { return att_ ? v_.data : nullptr; }
  std::size_t size() const noexcept { return att_ ? v_.len : 0; }
#ifdef VOXSHM_HPP_HAS_SPAN
  std::span<const std::uint8_t> span() const noexcept { return {data(), size()}; }
#endif
  /** The reference this view was resolved from. */
  const voxshm_ref& ref() const noexcept { return v_.reference; }
  explicit operator bool() const noexcept { return att_ != nullptr; }

  /** Releases now (the sender gets the space back); throws on failure. */
  void release() {
    if (att_) {
      const voxshm_attachments* a = std::exchange(att_, nullptr);
      detail::check(voxshm_attachments_release(a, &v_));
    }
  }

 private:
  friend class attachments;
  view(const voxshm_attachments* a, const voxshm_view& v) : att_(a), v_(v) {}
  void reset() noexcept {
    if (att_) {
      voxshm_attachments_release(std::exchange(att_, nullptr), &v_);
    }
  }
  const voxshm_attachments* att_ = nullptr;
  voxshm_view v_{};
};

/** The receiver's side. Thread-safe; move-only. */
class attachments {
 public:
  attachments() = default;
  /**
   * Takes ownership of the connected socket `fd` (on success only) and says
   * HELLO to the sender. `options` may be null for defaults.
   */
  explicit attachments(int fd, const voxshm_attachments_options* options = nullptr) {
    detail::check(voxshm_attachments_new(fd, options, &a_));
  }
  static attachments create(int fd, const voxshm_attachments_options* options = nullptr) {
    return attachments(fd, options);
  }
  /** Takes ownership of a handle made by the C API (may be null). */
  static attachments adopt(voxshm_attachments* a) noexcept {
    attachments out;
    out.a_ = a;
    return out;
  }
  attachments(attachments&& o) noexcept : a_(std::exchange(o.a_, nullptr)) {}
  attachments& operator=(attachments&& o) noexcept {
    if (this != &o) {
      voxshm_attachments_free(a_);
      a_ = std::exchange(o.a_, nullptr);
    }
    return *this;
  }
  attachments(const attachments&) = delete;
  attachments& operator=(const attachments&) = delete;
  ~attachments() { voxshm_attachments_free(a_); }

  static voxshm_attachments_options default_options() {
    voxshm_attachments_options o{};
    detail::check(voxshm_attachments_options_init(&o));
    return o;
  }

  /** The next payload sent over the channel, waiting up to timeout_ms. */
  view recv(std::int64_t timeout_ms = -1) const {
    voxshm_view v{};
    detail::check(voxshm_attachments_recv(a_, timeout_ms, &v));
    return view(a_, v);
  }

  /** Like recv, but returns an empty view instead of throwing on timeout. */
  view try_recv(std::int64_t timeout_ms = 0) const {
    voxshm_view v{};
    voxshm_status s = voxshm_attachments_recv(a_, timeout_ms, &v);
    if (s == VOXSHM_TIMEOUT) return view();
    detail::check(s);
    return view(a_, v);
  }

  /** Resolves a reference from a transport of your own. */
  view resolve(const voxshm_ref& ref, std::int64_t timeout_ms = -1) const {
    voxshm_view v{};
    detail::check(voxshm_attachments_resolve(a_, &ref, timeout_ms, &v));
    return view(a_, v);
  }

  /** Applies what the sender sent, without waiting. */
  void poll() const { detail::check(voxshm_attachments_poll(a_)); }

  voxshm_attachments_stats stats() const {
    voxshm_attachments_stats s{};
    s.struct_size = sizeof s;
    detail::check(voxshm_attachments_get_stats(a_, &s));
    return s;
  }

  /** The channel fd for poll/epoll (still owned by the handle). */
  int fd() const noexcept { return voxshm_attachments_fd(a_); }
  voxshm_attachments* get() const noexcept { return a_; }
  explicit operator bool() const noexcept { return a_ != nullptr; }

 private:
  voxshm_attachments* a_ = nullptr;
};

/**
 * One producer, many receivers (see voxshm_fanout_new). Thread-safe;
 * move-only. Each receiver is an `attachments` at the other end of its
 * channel.
 */
class fanout {
 public:
  fanout() = default;
  /** `options` (a registry's) may be null for defaults. */
  explicit fanout(const voxshm_registry_options* options) {
    detail::check(voxshm_fanout_new(options, &f_));
  }
  static fanout create(const voxshm_registry_options* options = nullptr) { return fanout(options); }
  fanout(fanout&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  fanout& operator=(fanout&& o) noexcept {
    if (this != &o) {
      voxshm_fanout_free(f_);
      f_ = std::exchange(o.f_, nullptr);
    }
    return *this;
  }
  fanout(const fanout&) = delete;
  fanout& operator=(const fanout&) = delete;
  ~fanout() { voxshm_fanout_free(f_); }

  /** Default receiver options: no limit, wait policy. */
  static voxshm_receiver_options receiver_options(std::uint32_t max_in_flight = 0,
                                                  std::uint32_t policy = VOXSHM_POLICY_WAIT) {
    voxshm_receiver_options o{};
    detail::check(voxshm_receiver_options_init(&o));
    o.max_in_flight = max_in_flight;
    o.policy = policy;
    return o;
  }

  /** Takes the connected socket `fd` (on success only) as a new receiver. */
  std::uint32_t add_receiver(int fd, const voxshm_receiver_options* options = nullptr) const {
    std::uint32_t id = 0;
    detail::check(voxshm_fanout_add_receiver(f_, fd, options, &id));
    return id;
  }
  void remove_receiver(std::uint32_t id) const {
    detail::check(voxshm_fanout_remove_receiver(f_, id));
  }
  /** Waits until receiver `id` said HELLO (payloads from then on reach it). */
  void wait_ready(std::uint32_t id, std::int64_t timeout_ms = -1) const {
    detail::check(voxshm_fanout_wait_ready(f_, id, timeout_ms));
  }

  fanout_allocation alloc(std::size_t len, std::int64_t timeout_ms = -1) const {
    voxshm_allocation a{};
    detail::check(voxshm_fanout_alloc(f_, len, timeout_ms, &a));
    return fanout_allocation(f_, a);
  }

  /**
   * Sends the first `len` bytes, written once, to every receiver
   * (VOXSHM_ALL_RECEIVERS) or to one; returns how many got it. On success
   * `a` is consumed; if this throws, nobody got it and `a` still holds it.
   */
  std::uint32_t send(fanout_allocation&& a, std::size_t len,
                     std::uint32_t receiver = VOXSHM_ALL_RECEIVERS,
                     std::int64_t timeout_ms = VOXSHM_TIMEOUT_CONFIGURED) const {
    if (a.reg_ != f_) {
      throw error(VOXSHM_INVALID_ALLOCATION, "allocation from another fanout");
    }
    std::uint32_t n = 0;
    detail::check(voxshm_fanout_send(f_, &a.a_, len, receiver, timeout_ms, &n));
    a.reg_ = nullptr;
    return n;
  }

  void poll() const { detail::check(voxshm_fanout_poll(f_)); }

  /** Waits until no receiver holds a payload; false on timeout. */
  bool wait_idle(std::int64_t timeout_ms = -1) const {
    voxshm_status s = voxshm_fanout_wait_idle(f_, timeout_ms);
    if (s == VOXSHM_TIMEOUT) return false;
    detail::check(s);
    return true;
  }

  voxshm_fanout_stats stats() const {
    voxshm_fanout_stats s{};
    s.struct_size = sizeof s;
    detail::check(voxshm_fanout_get_stats(f_, &s));
    return s;
  }
  voxshm_receiver_stats receiver_stats(std::uint32_t id) const {
    voxshm_receiver_stats s{};
    s.struct_size = sizeof s;
    detail::check(voxshm_fanout_get_receiver_stats(f_, id, &s));
    return s;
  }

  /** The one fd to poll for all receivers (still owned by the handle). */
  int fd() const noexcept { return voxshm_fanout_fd(f_); }
  voxshm_fanout* get() const noexcept { return f_; }
  explicit operator bool() const noexcept { return f_ != nullptr; }

 private:
  voxshm_fanout* f_ = nullptr;
};

/**
 * Both handles of a duplex channel: `reg` sends to the peer, `att`
 * receives from it, over one socket (see voxshm_duplex_new). Each may be
 * moved and destroyed on its own; the channel closes when both are gone.
 */
struct duplex {
  registry reg;
  attachments att;

  /**
   * Takes ownership of the connected socket `fd` (on success only: if this
   * throws, fd is still the caller's). Options may be null for defaults.
   */
  static duplex create(int fd, const voxshm_registry_options* registry_options = nullptr,
                       const voxshm_attachments_options* attachments_options = nullptr) {
    voxshm_registry* r = nullptr;
    voxshm_attachments* a = nullptr;
    detail::check(voxshm_duplex_new(fd, registry_options, attachments_options, &r, &a));
    return duplex{registry::adopt(r), attachments::adopt(a)};
  }
};

}  // namespace voxshm

#endif /* VOXSHM_HPP */
