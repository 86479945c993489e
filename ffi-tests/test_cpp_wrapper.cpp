// Tests of include/voxshm.hpp, using nothing but the wrapper (and POSIX for
// fork): RAII release and abort, exceptions with statuses, move semantics,
// an in-process and a cross-process transfer.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "voxshm.hpp"

#define EXPECT(cond)                                                     \
  do {                                                                   \
    if (!(cond)) {                                                       \
      std::fprintf(stderr, "%s:%d: expectation failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                     \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

template <typename F>
static voxshm_status status_of(F&& f) {
  try {
    f();
  } catch (const voxshm::error& e) {
    EXPECT(std::strlen(e.what()) > 0);
    return e.status();
  }
  return VOXSHM_OK;
}

static void fill(std::uint8_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = 0; i < n; i++) p[i] = static_cast<std::uint8_t>(seed * 31u + i * 7u);
}

static bool same(const std::uint8_t* p, std::size_t n, std::uint32_t seed) {
  for (std::size_t i = 0; i < n; i++)
    if (p[i] != static_cast<std::uint8_t>(seed * 31u + i * 7u)) return false;
  return true;
}

static void in_process() {
  auto fds = voxshm::channel_pair();
  voxshm::registry reg(fds.first);
  voxshm::attachments att(fds.second);

  for (std::uint32_t i = 0; i < 200; i++) {
    std::size_t len = 1 + (i * 4099u) % 200000u;
    voxshm::allocation a = reg.alloc(len, 1000);
    EXPECT(a && a.capacity() >= len);
    fill(a.data(), len, i);
    reg.send(std::move(a), len, 1000);
    EXPECT(!a);  // consumed by send
    voxshm::view v = att.recv(1000);
    EXPECT(v.size() == len && same(v.data(), len, i));
#ifdef VOXSHM_HPP_HAS_SPAN
    EXPECT(v.span().size() == len);
#endif
  }  // each view releases itself here
  EXPECT(reg.wait_idle(5000));
  EXPECT(reg.stats().live_leases == 0);
  EXPECT(att.stats().live_views == 0);

  // An allocation destroyed unpublished gives its space back.
  {
    voxshm::allocation a = reg.alloc(4096, 0);
    EXPECT(reg.stats().allocations == 1);
  }
  EXPECT(reg.stats().allocations == 0);

  // Moving a view moves the duty to release it.
  {
    voxshm::allocation a = reg.alloc(100, 0);
    std::memset(a.data(), 7, 100);
    reg.send(std::move(a), 100);
    voxshm::view v1 = att.recv(1000);
    voxshm::view v2 = std::move(v1);
    EXPECT(!v1 && v2 && v2.data()[99] == 7);
    EXPECT(att.stats().live_views == 1);
    v2.release();
    EXPECT(!v2 && att.stats().live_views == 0);
  }

  // Publish + frame over "our own transport" + resolve.
  {
    voxshm::allocation a = reg.alloc(64, 0);
    std::memcpy(a.data(), "framed", 7);
    voxshm_ref r = reg.publish(std::move(a), 7);
    auto frame = voxshm::encode(r);
    voxshm_ref back = voxshm::decode(frame.data(), frame.size());
    voxshm::view v = att.resolve(back, 1000);
    EXPECT(v.size() == 7 && std::memcmp(v.data(), "framed", 7) == 0);
  }
  EXPECT(reg.wait_idle(5000));

  // Errors carry their status.
  EXPECT(status_of([&] { reg.alloc(0); }) == VOXSHM_ZERO_LENGTH);
  EXPECT(status_of([&] { att.recv(0); }) == VOXSHM_TIMEOUT);
  EXPECT(!att.try_recv(0));
  std::uint8_t junk[32] = {0};
  EXPECT(status_of([&] { voxshm::decode(junk, sizeof junk); }) == VOXSHM_BAD_FRAME);
  EXPECT(status_of([&] { voxshm::registry bad(-1); }) == VOXSHM_INVALID_ARGUMENT);
  {
    voxshm::allocation empty;
    EXPECT(status_of([&] { reg.send(std::move(empty), 1); }) == VOXSHM_INVALID_ALLOCATION);
  }

  // Moving handles.
  voxshm::registry reg2 = std::move(reg);
  EXPECT(!reg && reg2 && reg2.fd() >= 0);
  voxshm::attachments att2;
  att2 = std::move(att);
  EXPECT(!att && att2.fd() >= 0);
}

static void across_processes() {
  auto fds = voxshm::channel_pair();
  pid_t pid = fork();
  EXPECT(pid >= 0);
  if (pid == 0) {
    close(fds.first);
    int rc = 0;
    try {
      voxshm::attachments att(fds.second);
      for (std::uint32_t i = 0; i < 50; i++) {
        voxshm::view v = att.recv(10000);
        std::size_t len = (i + 1) * 10007u;
        if (v.size() != len || !same(v.data(), len, i)) rc = 2;
      }
      // The sender then goes away.
      if (status_of([&] { att.recv(10000); }) != VOXSHM_PEER_GONE) rc = 3;
    } catch (const voxshm::error& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      rc = 4;
    }
    _exit(rc);
  }
  close(fds.second);
  {
    voxshm::registry reg(fds.first);
    for (std::uint32_t i = 0; i < 50; i++) {
      std::size_t len = (i + 1) * 10007u;
      voxshm::allocation a = reg.alloc(len, 10000);
      fill(a.data(), len, i);
      reg.send(std::move(a), len, 10000);
    }
    EXPECT(reg.wait_idle(20000));
  }
  int st = 0;
  EXPECT(waitpid(pid, &st, 0) == pid);
  EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

// Who may connect: options, credentials, refusals as exceptions.
static void policies() {
  std::string name = "@voxshm-cpp-policy-" + std::to_string(getpid());
  voxshm_listener_options lo = voxshm::listener_options();
  EXPECT(lo.allow == VOXSHM_ALLOW_SAME_USER && lo.mode == 0600);
  voxshm::listener l(name, lo);
  EXPECT(status_of([&] { voxshm::listener again(name); }) == VOXSHM_ADDRESS_IN_USE);
  int c = voxshm::connect(name);
  int a = l.accept(5000);
  voxshm_peer_credentials pc = voxshm::peer_credentials(a);
  EXPECT(pc.pid == getpid() && pc.uid == geteuid());
  close(a);
  close(c);
  voxshm_connect_options co = voxshm::connect_options();
  co.allow = VOXSHM_ALLOW_UID_GID;
  co.uid = geteuid() + 1;
  EXPECT(status_of([&] { voxshm::connect(name, co); }) == VOXSHM_PEER_NOT_ALLOWED);
}

// One timeout rule: send() waits the configured send_timeout_ms by default
// (spelled VOXSHM_TIMEOUT_CONFIGURED), like every other call only when
// asked; 0 does not wait.
static void timeouts() {
  int fds[2];
  EXPECT(voxshm_channel_pair(fds) == VOXSHM_OK);
  voxshm_registry_options ro;
  voxshm_registry_options_init(&ro);
  ro.send_timeout_ms = 30;
  voxshm::registry reg(fds[0], &ro);
  voxshm::allocation a = reg.alloc(100, 0);
  // Nobody says HELLO: the default waits the configured 30 ms, then throws.
  EXPECT(status_of([&] { reg.send(std::move(a), 100); }) == VOXSHM_TIMEOUT);
  EXPECT(status_of([&] { reg.send(std::move(a), 100, 0); }) == VOXSHM_TIMEOUT);
  close(fds[1]);
}

// A duplex channel in one process: each side sends to the other over one
// socket; the handles are separate objects, moved and destroyed on their
// own.
static void duplex() {
  auto fds = voxshm::channel_pair();
  voxshm::duplex a = voxshm::duplex::create(fds.first);
  voxshm::duplex b = voxshm::duplex::create(fds.second);
  EXPECT(a.reg.fd() == a.att.fd());
  for (std::uint32_t i = 0; i < 100; i++) {
    std::size_t len = 1 + (i * 7919u) % 100000u;
    voxshm::duplex& from = i % 2 ? a : b;
    voxshm::duplex& to = i % 2 ? b : a;
    voxshm::allocation x = from.reg.alloc(len, 1000);
    fill(x.data(), len, i);
    from.reg.send(std::move(x), len, 1000);
    voxshm::view v = to.att.recv(1000);
    EXPECT(v.size() == len && same(v.data(), len, i));
  }
  voxshm::registry moved = std::move(a.reg);
  EXPECT(!a.reg && moved);
  EXPECT(moved.wait_idle(5000));
  EXPECT(b.reg.wait_idle(5000));
  // A one-way peer is refused: duplex needs duplex on both sides.
  auto fds2 = voxshm::channel_pair();
  voxshm::duplex d = voxshm::duplex::create(fds2.first);
  voxshm::registry one_way(fds2.second);
  EXPECT(status_of([&] { one_way.wait_idle(1000); }) == VOXSHM_PROTOCOL);
}

// One producer, two receivers in this process: written once, each gets
// every payload; a fanout_allocation destroyed unsent gives its space back.
static void fanout() {
  voxshm::fanout f = voxshm::fanout::create();
  auto p1 = voxshm::channel_pair();
  auto p2 = voxshm::channel_pair();
  voxshm::attachments a1(p1.second), a2(p2.second);
  std::uint32_t id1 = f.add_receiver(p1.first);
  voxshm_receiver_options skip = voxshm::fanout::receiver_options(1, VOXSHM_POLICY_SKIP);
  std::uint32_t id2 = f.add_receiver(p2.first, &skip);
  f.wait_ready(id1, 1000);
  f.wait_ready(id2, 1000);
  EXPECT(id1 != id2 && id1 != 0);
  for (std::uint32_t i = 0; i < 50; i++) {
    std::size_t len = 1 + (i * 4099u) % 100000u;
    voxshm::fanout_allocation a = f.alloc(len, 1000);
    fill(a.data(), len, i);
    EXPECT(f.send(std::move(a), len, VOXSHM_ALL_RECEIVERS, 1000) == 2);
    EXPECT(!a);
    voxshm::view v1 = a1.recv(1000), v2 = a2.recv(1000);
    EXPECT(v1.size() == len && same(v1.data(), len, i));
    EXPECT(v2.size() == len && same(v2.data(), len, i));
  }
  { voxshm::fanout_allocation unused = f.alloc(100, 1000); }
  EXPECT(f.wait_idle(5000));
  voxshm_fanout_stats s = f.stats();
  EXPECT(s.payloads_published == 50 && s.deliveries == 100 && s.allocations == 0);
  EXPECT(f.receiver_stats(id2).delivered == 50);
  f.remove_receiver(id1);
  EXPECT(status_of([&] { f.remove_receiver(id1); }) == VOXSHM_INVALID_ARGUMENT);
}

int main() {
  EXPECT(voxshm::version() == voxshm_version());
  duplex();
  fanout();
  timeouts();
  in_process();
  across_processes();
  policies();
  std::puts("test_cpp_wrapper: ok");
  return 0;
}
