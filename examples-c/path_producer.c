/*
 * path_producer: the sending half of a pair of unrelated programs that find
 * each other through a Unix socket path. Run, in two terminals:
 *
 *     ./path_producer /tmp/voxshm-example.sock      # waits for a consumer
 *     ./path_consumer /tmp/voxshm-example.sock
 *
 * (either one may start first: the consumer keeps trying to connect for a
 * while). The producer sends COUNT payloads of SIZE bytes, then exits.
 *
 * How voxshm works, in short: the producer (the "registry" side) asks the
 * library for payload space, writes the payload straight into that space
 * (shared memory the library created), and sends it. Only a 32-byte
 * reference crosses the socket; the consumer (the "attachments" side) reads
 * the bytes in place and releases them, which lets the producer reuse the
 * space. Nothing is copied.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <voxshm.h>

/* Every payload is filled with a pattern the consumer can check: byte i of
 * payload n is (n * 31 + i) mod 251. */
static void fill(uint8_t *p, size_t len, uint64_t n) {
    for (size_t i = 0; i < len; i++) p[i] = (uint8_t)((n * 31 + i) % 251);
}

/* Prints what failed. voxshm_last_error() describes the last failed voxshm
 * call on this thread; voxshm_status_name() names the status number. */
static int fail(const char *what, voxshm_status st) {
    fprintf(stderr, "path_producer: %s: %s (%s)\n", what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: %s SOCKET_PATH [COUNT [SIZE]]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 10) : 10;
    size_t size = argc > 3 ? (size_t)strtoull(argv[3], NULL, 10) : 1 << 20;
    if (size == 0) {
        fprintf(stderr, "path_producer: SIZE must be at least 1\n");
        return 2;
    }

    /* 1. Listen on the path. The path must not exist yet; the listener
     *    removes it again when it is freed. A name starting with '@' is a
     *    Linux abstract socket name instead, which leaves no file behind. */
    voxshm_listener *listener = NULL;
    voxshm_status st = voxshm_listener_new(path, &listener);
    if (st != VOXSHM_OK) return fail("listen", st);
    printf("path_producer: waiting for a consumer on %s\n", path);
    fflush(stdout);

    /* 2. Wait (here up to a minute) for the consumer to connect. The
     *    connected fd is ours... */
    int fd = -1;
    st = voxshm_listener_accept(listener, 60000, &fd);
    voxshm_listener_free(listener); /* one consumer is all we serve */
    if (st != VOXSHM_OK) return fail("accept", st);

    /* 3. ...until voxshm_registry_new succeeds: from then on the registry
     *    owns it and closes it in voxshm_registry_free. (On failure the fd
     *    would still be ours to close.) NULL options mean the defaults:
     *    64 MiB regions, at most 1 GiB of shared memory in use at once. */
    voxshm_registry *reg = NULL;
    st = voxshm_registry_new(fd, NULL, &reg);
    if (st != VOXSHM_OK) return fail("registry_new", st);

    for (uint64_t n = 0; n < count; n++) {
        /* 4. Get payload space. If every byte of the budget is leased to the
         *    consumer, this waits (up to 10 s here) for releases. */
        voxshm_allocation a;
        st = voxshm_registry_alloc(reg, size, 10000, &a);
        if (st != VOXSHM_OK) {
            voxshm_registry_free(reg);
            return fail("alloc", st);
        }

        /* 5. Write the payload in place: a.data is shared memory. */
        fill(a.data, size, n);

        /* 6. Send it: the library publishes the bytes (they are visible to
         *    the consumer once it sees the reference) and sends the
         *    reference. The allocation is now the consumer's to read; do
         *    not touch a.data again. */
        st = voxshm_registry_send(reg, &a, size);
        if (st != VOXSHM_OK) {
            voxshm_registry_abort(reg, &a); /* give back what was not sent */
            voxshm_registry_free(reg);
            return fail("send", st);
        }
    }

    /* 7. Wait until the consumer has released every payload, so that we
     *    know it has seen them all, then close everything. The consumer
     *    sees the channel close and stops. */
    st = voxshm_registry_wait_idle(reg, 30000);
    voxshm_registry_free(reg);
    if (st != VOXSHM_OK) return fail("wait_idle", st);
    printf("path_producer: sent %llu payloads of %zu bytes\n", (unsigned long long)count, size);
    return 0;
}
