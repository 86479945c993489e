/*
 * path_consumer: the receiving half of path_producer (see there for how to
 * run the pair). It connects to the producer's socket path, reads every
 * payload in place, checks its bytes, releases it, and stops when the
 * producer closes the channel. It exits 1 if a payload was wrong.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include <voxshm.h>

/* The pattern path_producer writes: byte i of payload n. */
static int check(const uint8_t *p, size_t len, uint64_t n) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)((n * 31 + i) % 251)) return 0;
    return 1;
}

static int fail(const char *what, voxshm_status st) {
    fprintf(stderr, "path_consumer: %s: %s (%s)\n", what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SOCKET_PATH\n", argv[0]);
        return 2;
    }

    /* 1. Connect. The producer may not have started yet: then nobody
     *    listens at the path (VOXSHM_NO_LISTENER). Try again for up to
     *    10 s. */
    int fd = -1;
    voxshm_status st;
    for (int tries = 0;; tries++) {
        st = voxshm_connect(argv[1], &fd);
        if (st != VOXSHM_NO_LISTENER || tries == 100) break;
        struct timespec pause = {0, 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (st != VOXSHM_OK) return fail("connect", st);

    /* 2. The receiving side of the channel. It owns fd from now on (it is
     *    closed by voxshm_attachments_free). Creating it greets the
     *    producer, which waits for that before it sends anything. */
    voxshm_attachments *att = NULL;
    st = voxshm_attachments_new(fd, NULL, &att);
    if (st != VOXSHM_OK) return fail("attachments_new", st);

    uint64_t n = 0, bytes = 0, wrong = 0;
    for (;;) {
        /* 3. Take the next payload, waiting up to 30 s. VOXSHM_PEER_GONE
         *    means the producer closed the channel and every payload it
         *    sent has been taken: we are done. */
        voxshm_view v;
        st = voxshm_attachments_recv(att, 30000, &v);
        if (st == VOXSHM_PEER_GONE) break;
        if (st != VOXSHM_OK) {
            voxshm_attachments_free(att);
            return fail("recv", st);
        }

        /* 4. v.data / v.len are the producer's bytes, mapped read-only into
         *    this process. Read them in place... */
        if (!check(v.data, v.len, n)) {
            fprintf(stderr, "path_consumer: payload %llu has wrong bytes\n", (unsigned long long)n);
            wrong++;
        }
        n++;
        bytes += v.len;

        /* 5. ...then release the view: its bytes must not be read after
         *    this, and the producer may reuse the space. */
        voxshm_attachments_release(att, &v);
    }

    voxshm_attachments_free(att);
    printf("path_consumer: received %llu payloads, %llu bytes, %llu wrong\n",
           (unsigned long long)n, (unsigned long long)bytes, (unsigned long long)wrong);
    return wrong == 0 ? 0 : 1;
}
