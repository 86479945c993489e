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

/* The header gives the types, structs and the VOXSHM_ABI_VERSION macro;
 * its function declarations are not used, nothing is linked. */
#include <voxshm.h>

/* The functions this program calls, as pointers. Their types copy the
 * declarations in voxshm.h. */
struct voxshm_api {
    uint32_t (*abi_version)(void);
    const char *(*version)(void);
    const char *(*last_error)(void);
    const char *(*status_name)(int);
    voxshm_status (*channel_pair)(int *);
    voxshm_status (*registry_new)(int, const voxshm_registry_options *, voxshm_registry **);
    void (*registry_free)(voxshm_registry *);
    voxshm_status (*registry_alloc)(const voxshm_registry *, size_t, int64_t,
                                    voxshm_allocation *);
    voxshm_status (*registry_send)(const voxshm_registry *, const voxshm_allocation *, size_t);
    voxshm_status (*registry_wait_idle)(const voxshm_registry *, int64_t);
    voxshm_status (*attachments_new)(int, const voxshm_attachments_options *,
                                     voxshm_attachments **);
    void (*attachments_free)(voxshm_attachments *);
    voxshm_status (*attachments_recv)(const voxshm_attachments *, int64_t, voxshm_view *);
    voxshm_status (*attachments_release)(const voxshm_attachments *, const voxshm_view *);
};

/* Looks up one symbol. ISO C cannot convert an object pointer (what dlsym
 * returns) to a function pointer with a cast; POSIX guarantees that copying
 * the bytes works. */
static int load(void *lib, const char *name, void *fn_ptr, size_t fn_size) {
    dlerror(); /* clear any old error */
    void *sym = dlsym(lib, name);
    if (sym == NULL) {
        const char *err = dlerror();
        fprintf(stderr, "dlopen_example: %s: %s\n", name, err ? err : "not found");
        return 0;
    }
    memcpy(fn_ptr, &sym, fn_size);
    return 1;
}

#define LOAD(lib, api, field) load(lib, "voxshm_" #field, &(api)->field, sizeof (api)->field)

static int fail(const struct voxshm_api *vx, const char *what, voxshm_status st) {
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

    /* 2. Before anything else, check that the library's ABI is the one
     *    voxshm.h describes. A library with another ABI version may lay
     *    out its structs differently: refuse it. */
    struct voxshm_api vx;
    if (!LOAD(lib, &vx, abi_version)) return 1;
    if (vx.abi_version() != VOXSHM_ABI_VERSION) {
        fprintf(stderr, "dlopen_example: %s has ABI version %u, this program needs %d\n", name,
                (unsigned)vx.abi_version(), VOXSHM_ABI_VERSION);
        return 1;
    }

    /* 3. Look up the rest. */
    if (!(LOAD(lib, &vx, version) && LOAD(lib, &vx, last_error) && LOAD(lib, &vx, status_name)
          && LOAD(lib, &vx, channel_pair) && LOAD(lib, &vx, registry_new)
          && LOAD(lib, &vx, registry_free) && LOAD(lib, &vx, registry_alloc)
          && LOAD(lib, &vx, registry_send) && LOAD(lib, &vx, registry_wait_idle)
          && LOAD(lib, &vx, attachments_new) && LOAD(lib, &vx, attachments_free)
          && LOAD(lib, &vx, attachments_recv) && LOAD(lib, &vx, attachments_release)))
        return 1;
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
