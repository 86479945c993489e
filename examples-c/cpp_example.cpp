// cpp_example: the C++ wrapper (voxshm.hpp) in one program. A sender
// thread and a receiver (the main thread) share a channel pair; the sender
// writes payloads of a few sizes straight into shared memory and the
// receiver checks them in place. Run it as
//
//     ./cpp_example
//
// The wrapper's classes own what they hold: a registry or an attachments
// object closes its fd when destroyed, an allocation that was never sent
// gives its space back, and a view releases itself when it goes out of
// scope. Failures are thrown as voxshm::error, which carries the status.
//
// Between two processes it looks the same: the channel's two ends (from
// voxshm::channel_pair() before a fork/spawn, or from voxshm::listener's
// accept() and voxshm::connect()) go to a registry in one process and to an
// attachments object in the other.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include <voxshm.hpp>

namespace {

// The byte at offset i of payload n.
std::uint8_t pattern(std::size_t n, std::size_t i) {
    return static_cast<std::uint8_t>((n * 131 + i) % 253);
}

const std::vector<std::size_t> sizes = {100, 4096, 1 << 20, 16 << 20, 123457};

void send_all(voxshm::registry &reg) {
    for (std::size_t n = 0; n < sizes.size(); n++) {
        // Space for the payload, waiting up to 5 s if the budget is used up.
        voxshm::allocation a = reg.alloc(sizes[n], 5000);
        std::uint8_t *p = a.data();
        for (std::size_t i = 0; i < sizes[n]; i++) p[i] = pattern(n, i);
        // send() consumes the allocation: only a 32-byte reference travels.
        reg.send(std::move(a), sizes[n]);
    }
}

}  // namespace

int main() try {
    // Two connected ends; the registry and the attachments each take
    // ownership of theirs.
    auto [send_fd, recv_fd] = voxshm::channel_pair();
    voxshm::registry reg = voxshm::registry::create(send_fd);
    voxshm::attachments att = voxshm::attachments::create(recv_fd);

    // Handles may be used from several threads: the sender runs on its
    // own. An exception there is handed back to the main thread.
    std::exception_ptr sender_error;
    std::thread sender([&] {
        try {
            send_all(reg);
        } catch (...) {
            sender_error = std::current_exception();
        }
    });

    bool all_ok = true;
    std::exception_ptr receiver_error;
    try {
        for (std::size_t n = 0; n < sizes.size(); n++) {
            // Wait up to 5 s for the next payload.
            voxshm::view v = att.recv(5000);
            bool ok = v.size() == sizes[n];
            for (std::size_t i = 0; ok && i < v.size(); i++) ok = v.data()[i] == pattern(n, i);
            std::printf("cpp_example: payload %zu: %zu bytes %s\n", n, v.size(),
                        ok ? "ok" : "WRONG");
            all_ok = all_ok && ok;
            // v is released here, at the end of its scope.
        }
    } catch (...) {
        receiver_error = std::current_exception();
    }
    // A std::thread must be joined before it is destroyed, whatever happened.
    sender.join();
    if (receiver_error) std::rethrow_exception(receiver_error);
    if (sender_error) std::rethrow_exception(sender_error);
    return all_ok ? 0 : 1;
} catch (const voxshm::error &e) {
    std::fprintf(stderr, "cpp_example: voxshm error %d: %s\n", static_cast<int>(e.status()),
                 e.what());
    return 1;
} catch (const std::exception &e) {
    std::fprintf(stderr, "cpp_example: %s\n", e.what());
    return 1;
}
