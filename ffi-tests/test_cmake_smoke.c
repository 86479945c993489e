/* The smallest test of the C ABI as the CMake build links it: the header
 * and the library agree on the ABI version, and one payload goes through a
 * channel pair inside this process. Helper programs (if any) arrive as
 * arguments; this test does not need them. */
#include <stdio.h>
#include <string.h>

#include "voxshm.h"

#define CHECK(call)                                                       \
    do {                                                                  \
        voxshm_status st_ = (call);                                       \
        if (st_ != VOXSHM_OK) {                                           \
            fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__,  \
                    #call, voxshm_status_name((int)st_),                  \
                    voxshm_last_error());                                 \
            return 1;                                                     \
        }                                                                 \
    } while (0)

int main(void) {
    if (voxshm_abi_version() != VOXSHM_ABI_VERSION) {
        fprintf(stderr, "ABI version: library %u, header %d\n",
                (unsigned)voxshm_abi_version(), VOXSHM_ABI_VERSION);
        return 1;
    }
    int fds[2];
    CHECK(voxshm_channel_pair(fds));
    voxshm_registry *reg = NULL;
    voxshm_attachments *att = NULL;
    CHECK(voxshm_registry_new(fds[0], NULL, &reg));
    CHECK(voxshm_attachments_new(fds[1], NULL, &att));

    static const char text[] = "cmake smoke";
    voxshm_allocation a;
    CHECK(voxshm_registry_alloc(reg, sizeof text, 1000, &a));
    memcpy(a.data, text, sizeof text);
    CHECK(voxshm_registry_send(reg, &a, sizeof text));

    voxshm_view v;
    CHECK(voxshm_attachments_recv(att, 1000, &v));
    int ok = v.len == sizeof text && memcmp(v.data, text, sizeof text) == 0;
    CHECK(voxshm_attachments_release(att, &v));
    CHECK(voxshm_registry_wait_idle(reg, 1000));

    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
    if (!ok) {
        fprintf(stderr, "payload came back different\n");
        return 1;
    }
    printf("ok: voxshm %s, ABI %u\n", voxshm_version(), (unsigned)voxshm_abi_version());
    return 0;
}
