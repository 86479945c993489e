// Sends one message to quickstart_receiver(.cpp). Start the sender, then the receiver.
#include <cstdio>
#include <cstring>
#include <string_view>
#include <voxshm.hpp>

int main(int argc, char **argv) try {
    const char *where = argc > 1 ? argv[1] : "@voxshm-quickstart";  // '@': no file on disk
    std::string_view msg = "hello through shared memory";
    voxshm::listener listener(where);
    voxshm::registry reg(listener.accept(60000));     // wait for the receiver; reg owns the fd
    voxshm::allocation a = reg.alloc(msg.size());
    std::memcpy(a.data(), msg.data(), msg.size());    // write into shared memory
    reg.send(std::move(a), msg.size());               // only a 32-byte reference travels
    reg.wait_idle(10000);                             // until the receiver released it
    return 0;                                         // reg and listener close themselves
} catch (const voxshm::error &e) {
    std::fprintf(stderr, "sender: %s\n", e.what());
    return 1;
}
