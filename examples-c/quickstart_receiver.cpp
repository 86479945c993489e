// Receives one message from quickstart_sender(.cpp), which must already be running.
#include <cstdio>
#include <voxshm.hpp>

int main(int argc, char **argv) try {
    const char *where = argc > 1 ? argv[1] : "@voxshm-quickstart";
    voxshm::attachments att(voxshm::connect(where));  // att owns the fd from now on
    voxshm::view v = att.recv(10000);                 // wait up to 10 s
    // v.data() points into the sender's shared memory: nothing was copied.
    std::printf("received %zu bytes: %.*s\n", v.size(), static_cast<int>(v.size()),
                reinterpret_cast<const char *>(v.data()));
    return 0;                                         // v releases itself, att closes the channel
} catch (const voxshm::error &e) {
    std::fprintf(stderr, "receiver: %s\n", e.what());
    return 1;
}
