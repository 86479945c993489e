/*
 * demo_consumer: the receiving process of voxshm's demo; demo_producer
 * starts it as
 *
 *     demo_consumer VOXSHM_SOCKET PLAIN_SOCKET
 *
 * It connects to the voxshm socket and checks every payload in place (in
 * the producer's shared memory) until the producer closes the channel,
 * then connects to the plain socket and checks every payload it reads from
 * there. Exits 0 if every byte was right, 1 if any was wrong, 2 on other
 * errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <voxshm.h>

#include "demo_common.h"

static uint64_t checked, checked_bytes, wrong;

/* Checks one payload: its header, then the checksum over every byte. */
static int verify(const char *transport, const uint8_t *p, size_t len, uint64_t expect_seq) {
    demo_header h;
    if (len < DEMO_HEADER_LEN) {
        fprintf(stderr, "demo_consumer: %s: a %zu-byte payload is too short\n", transport, len);
        wrong++;
        return 0;
    }
    memcpy(&h, p, sizeof h);
    checked++;
    checked_bytes += len;
    if (h.magic != DEMO_MAGIC || h.len != len || h.seq != expect_seq) {
        fprintf(stderr, "demo_consumer: %s: payload %llu has a bad header\n", transport,
                (unsigned long long)expect_seq);
        wrong++;
        return 0;
    }
    uint64_t sum = demo_checksum(p + DEMO_HEADER_LEN, len - DEMO_HEADER_LEN);
    if (sum != h.checksum) {
        fprintf(stderr,
                "demo_consumer: %s: payload %llu (%zu bytes): WRONG BYTES, checksum %016llx, "
                "expected %016llx\n",
                transport, (unsigned long long)h.seq, len, (unsigned long long)sum,
                (unsigned long long)h.checksum);
        wrong++;
        return 0;
    }
    return 1;
}

static int vfail(const char *what, voxshm_status st) {
    fprintf(stderr, "demo_consumer: %s: %s (%s)\n", what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 2;
}

static int receive_voxshm(const char *path) {
    int fd;
    voxshm_status st = voxshm_connect(path, &fd);
    if (st != VOXSHM_OK) return vfail("connect", st);
    voxshm_attachments *att;
    st = voxshm_attachments_new(fd, NULL, &att);
    if (st != VOXSHM_OK) {
        close(fd);
        return vfail("attachments_new", st);
    }
    for (uint64_t seq = 0;; seq++) {
        voxshm_view v;
        st = voxshm_attachments_recv(att, 120000, &v);
        if (st == VOXSHM_PEER_GONE) break; /* the producer is done */
        if (st != VOXSHM_OK) {
            voxshm_attachments_free(att);
            return vfail("recv", st);
        }
        verify("voxshm", v.data, v.len, seq); /* reads the bytes in place */
        st = voxshm_attachments_release(att, &v);
        if (st != VOXSHM_OK) {
            voxshm_attachments_free(att);
            return vfail("release", st);
        }
    }
    voxshm_attachments_free(att);
    return 0;
}

/* Reads exactly len bytes; 0 at a clean end of stream before the first. */
static int read_full(int fd, uint8_t *p, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -1;
        if (n == 0) return got == 0 ? 0 : -1;
        got += (size_t)n;
    }
    return 1;
}

static int receive_plain(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "demo_consumer: connect to %s: %s\n", path, strerror(errno));
        return 2;
    }
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint64_t seq = 0;; seq++) {
        demo_header h;
        int r = read_full(fd, (uint8_t *)&h, sizeof h);
        if (r == 0) break; /* the producer is done */
        if (r < 0 || h.magic != DEMO_MAGIC || h.len < sizeof h || h.len > (1ull << 32)) {
            fprintf(stderr, "demo_consumer: plain socket: broken stream at payload %llu\n",
                    (unsigned long long)seq);
            wrong++;
            rc = 1;
            break;
        }
        if (h.len > cap) {
            free(buf);
            cap = h.len;
            buf = malloc(cap);
            if (buf == NULL) {
                rc = 2;
                break;
            }
        }
        memcpy(buf, &h, sizeof h);
        if (read_full(fd, buf + sizeof h, h.len - sizeof h) != 1) {
            fprintf(stderr, "demo_consumer: plain socket: stream ended inside a payload\n");
            rc = 2;
            break;
        }
        verify("unix socket", buf, h.len, seq);
        if (h.flags & DEMO_LAST) {
            char ack = 1;
            if (write(fd, &ack, 1) != 1) {
                rc = 2;
                break;
            }
        }
    }
    free(buf);
    close(fd);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s VOXSHM_SOCKET PLAIN_SOCKET\n", argv[0]);
        return 2;
    }
    int rc = receive_voxshm(argv[1]);
    if (rc == 0) rc = receive_plain(argv[2]);
    printf("consumer: checked %llu payloads, %.2f GiB: %llu wrong\n", (unsigned long long)checked,
           (double)checked_bytes / (1024.0 * 1024 * 1024), (unsigned long long)wrong);
    if (rc == 0 && wrong > 0) rc = 1;
    return rc;
}
