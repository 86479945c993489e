// Sends one message to quickstart_receiver(.cpp). Start the sender, then the receiver.
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <voxshm.hpp>

int main(int argc, char **argv) try {
    const char *where = argc > 1 ? argv[1] : "@voxshm-quickstart";  // '@': no file on disk
    std::string_view msg = "hello through shared memory";
    voxshm_listener *l = nullptr;
    int fd = -1;
    if (voxshm_listener_new(where, &l) != VOXSHM_OK) throw std::runtime_error(voxshm_last_error());
    std::unique_ptr<voxshm_listener, void (*)(voxshm_listener *)> listener(l, voxshm_listener_free);
    if (voxshm_listener_accept(l, 60000, &fd) != VOXSHM_OK) throw std::runtime_error(voxshm_last_error());
    voxshm::registry reg = voxshm::registry::create(fd);  // reg owns fd from now on
    voxshm::allocation a = reg.alloc(msg.size());
    std::memcpy(a.data(), msg.data(), msg.size());        // write into shared memory
    reg.send(std::move(a), msg.size());                   // only a 32-byte reference travels
    return 0;  // the receiver can still read the message after this process exits
} catch (const std::exception &e) {
    std::fprintf(stderr, "sender: %s\n", e.what());
    return 1;
}
