/* Uses an installed voxshm from C: one payload through a channel pair
 * inside this process. */
#include <stdio.h>
#include <string.h>

#include <voxshm.h>

static int fail(const char *what, voxshm_status st) {
    fprintf(stderr, "consumer (C): %s: %s (%s)\n", what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

int main(void) {
    if (voxshm_abi_version() != VOXSHM_ABI_VERSION) {
        fprintf(stderr, "consumer (C): ABI %u, header says %d\n", (unsigned)voxshm_abi_version(),
                VOXSHM_ABI_VERSION);
        return 1;
    }
    int fds[2];
    voxshm_registry *reg;
    voxshm_attachments *att;
    voxshm_allocation a;
    voxshm_view v;
    voxshm_status st;
    static const char text[] = "from an installed voxshm";
    if ((st = voxshm_channel_pair(fds)) != VOXSHM_OK) return fail("channel_pair", st);
    if ((st = voxshm_registry_new(fds[0], NULL, &reg)) != VOXSHM_OK) return fail("registry_new", st);
    if ((st = voxshm_attachments_new(fds[1], NULL, &att)) != VOXSHM_OK)
        return fail("attachments_new", st);
    if ((st = voxshm_registry_alloc(reg, sizeof text, 1000, &a)) != VOXSHM_OK)
        return fail("alloc", st);
    memcpy(a.data, text, sizeof text);
    if ((st = voxshm_registry_send(reg, &a, sizeof text)) != VOXSHM_OK) return fail("send", st);
    if ((st = voxshm_attachments_recv(att, 1000, &v)) != VOXSHM_OK) return fail("recv", st);
    int same = v.len == sizeof text && memcmp(v.data, text, sizeof text) == 0;
    if ((st = voxshm_attachments_release(att, &v)) != VOXSHM_OK) return fail("release", st);
    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
    if (!same) {
        fprintf(stderr, "consumer (C): the payload came back different\n");
        return 1;
    }
    printf("consumer (C): ok, voxshm %s\n", voxshm_version());
    return 0;
}
