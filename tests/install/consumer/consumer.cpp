// Uses an installed voxshm from C++: one payload through a channel pair
// inside this process, with the C++ wrapper when it is installed, else
// with the C API.
#include <cstdio>
#include <cstring>
#include <string_view>
#include <utility>

#if __has_include(<voxshm.hpp>)
#include <voxshm.hpp>

static bool roundtrip(std::string_view text) {
    auto [send_fd, recv_fd] = voxshm::channel_pair();
    voxshm::registry reg = voxshm::registry::create(send_fd);
    voxshm::attachments att = voxshm::attachments::create(recv_fd);
    voxshm::allocation a = reg.alloc(text.size(), 1000);
    std::memcpy(a.data(), text.data(), text.size());
    reg.send(std::move(a), text.size());
    voxshm::view v = att.recv(1000);
    return std::string_view(reinterpret_cast<const char *>(v.data()), v.size()) == text;
}

static const char *api = "voxshm.hpp";

int main() try {
    if (!roundtrip("from an installed voxshm")) {
        std::fprintf(stderr, "consumer (C++): the payload came back different\n");
        return 1;
    }
    std::printf("consumer (C++, %s): ok, voxshm %s\n", api, voxshm_version());
    return 0;
} catch (const voxshm::error &e) {
    std::fprintf(stderr, "consumer (C++): %s\n", e.what());
    return 1;
}

#else
#include <voxshm.h>

static bool check(voxshm_status st, const char *what) {
    if (st != VOXSHM_OK)
        std::fprintf(stderr, "consumer (C++): %s: %s (%s)\n", what,
                     voxshm_status_name(static_cast<int>(st)), voxshm_last_error());
    return st == VOXSHM_OK;
}

int main() {
    std::string_view text = "from an installed voxshm";
    int fds[2];
    voxshm_registry *reg = nullptr;
    voxshm_attachments *att = nullptr;
    voxshm_allocation a;
    voxshm_view v;
    if (!check(voxshm_channel_pair(fds), "channel_pair") ||
        !check(voxshm_registry_new(fds[0], nullptr, &reg), "registry_new") ||
        !check(voxshm_attachments_new(fds[1], nullptr, &att), "attachments_new") ||
        !check(voxshm_registry_alloc(reg, text.size(), 1000, &a), "alloc"))
        return 1;
    std::memcpy(a.data, text.data(), text.size());
    if (!check(voxshm_registry_send(reg, &a, text.size()), "send") ||
        !check(voxshm_attachments_recv(att, 1000, &v), "recv"))
        return 1;
    bool same = std::string_view(reinterpret_cast<const char *>(v.data), v.len) == text;
    check(voxshm_attachments_release(att, &v), "release");
    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
    if (!same) {
        std::fprintf(stderr, "consumer (C++): the payload came back different\n");
        return 1;
    }
    std::printf("consumer (C++, voxshm.h): ok, voxshm %s\n", voxshm_version());
    return 0;
}
#endif
