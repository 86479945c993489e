/*
 * dlopen_example: uses voxshm without linking it. The program loads
 * libvoxshm.so.0 at run time with dlopen, checks that the library speaks
 * the ABI this program was compiled against, looks up the functions it
 * needs, and runs one transfer within this process through the function
 * pointers. Run it as
 *
 *     ./dlopen_example [LIBRARY]
 *
 * LIBRARY defaults to "libvoxshm.so.0", which the dynamic loader looks for
 * the usual way (this program's RUNPATH, LD_LIBRARY_PATH, the system's
 * library directories). Build with only the header:
 *
 *     cc -I/path/to/include dlopen_example.c -ldl
 *
 * Do not dlclose() the library: it cannot be unloaded (it is linked with
 * -z nodelete, so dlclose would keep it loaded anyway).
 */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* voxshm_dlopen.h includes voxshm.h for the types and VOXSHM_ABI_VERSION,
 * and gives voxshm_api, a struct with a pointer for every function of the
 * library (generated from voxshm.h, so it always matches), and
 * voxshm_api_load, which fills it. Nothing is linked. */
#include <voxshm_dlopen.h>

static int fail(const voxshm_api *vx, const char *what, voxshm_status st) {
    fprintf(stderr, "dlopen_example: %s: %s (%s)\n", what, vx->status_name((int)st),
            vx->last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "libvoxshm.so.0";

    /* 1. Load the library. RTLD_NOW resolves everything at once, so a
     *    broken library fails here rather than on a later call. */
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen_example: cannot load %s: %s\n", name, dlerror());
        return 1;
    }

    /* 2. Fill the table of functions. voxshm_api_load first checks that
     *    the library's ABI is the one voxshm.h describes (a library with
     *    another ABI version may lay out its structs differently: it is
     *    refused), then looks up every function. */
    voxshm_api vx;
    const char *missing = voxshm_api_load(lib, &vx);
    if (missing != NULL) {
        fprintf(stderr, "dlopen_example: %s: cannot use it (%s: %s)\n", name, missing,
                strcmp(missing, "VOXSHM_ABI_VERSION") == 0 ? "another ABI version"
                                                           : "symbol not found");
        return 1;
    }
    printf("dlopen_example: loaded %s: voxshm %s, ABI %u\n", name, vx.version(),
           (unsigned)vx.abi_version());

    /* 4. One transfer, both ends in this process: a channel pair, the
     *    sending side on one end and the receiving side on the other. Each
     *    handle owns its fd once created. */
    int fds[2];
    voxshm_status st = vx.channel_pair(fds);
    if (st != VOXSHM_OK) return fail(&vx, "channel_pair", st);
    voxshm_registry *reg = NULL;
    voxshm_attachments *att = NULL;
    if ((st = vx.registry_new(fds[0], NULL, &reg)) != VOXSHM_OK) return fail(&vx, "registry_new", st);
    if ((st = vx.attachments_new(fds[1], NULL, &att)) != VOXSHM_OK)
        return fail(&vx, "attachments_new", st);

    static const char text[] = "sent through function pointers";
    voxshm_allocation a;
    voxshm_view v;
    if ((st = vx.registry_alloc(reg, sizeof text, 1000, &a)) != VOXSHM_OK)
        return fail(&vx, "alloc", st);
    memcpy(a.data, text, sizeof text);
    if ((st = vx.registry_send(reg, &a, sizeof text)) != VOXSHM_OK) return fail(&vx, "send", st);
    if ((st = vx.attachments_recv(att, 1000, &v)) != VOXSHM_OK) return fail(&vx, "recv", st);
    int same = v.len == sizeof text && memcmp(v.data, text, sizeof text) == 0;
    printf("dlopen_example: received %zu bytes: %s\n", v.len, same ? (const char *)v.data : "(wrong)");
    if ((st = vx.attachments_release(att, &v)) != VOXSHM_OK) return fail(&vx, "release", st);
    if ((st = vx.registry_wait_idle(reg, 1000)) != VOXSHM_OK) return fail(&vx, "wait_idle", st);

    vx.attachments_free(att);
    vx.registry_free(reg);
    /* No dlclose(lib): see the top of this file. */
    return same ? 0 : 1;
}
