/*
 * request_response: zero-copy requests and replies over one duplex channel.
 * Run it as
 *
 *     ./request_response [COUNT] [REQUEST_BYTES]
 *
 * The program forks a server. Each side makes both handles of a duplex
 * channel on its end of a socket pair (voxshm_duplex_new): a registry that
 * sends to the other side and an attachments that receives from it.
 *
 * The pattern:
 *   client  allocates a request, writes it in place, sends it; the
 *           reference of what it sent is {map_id, map_generation,
 *           map_offset, len} of the allocation;
 *   server  receives the request (a read-only view), allocates a reply,
 *           writes the request's reference (voxshm_ref_encode, 32 bytes)
 *           at the head of the reply and the answer after it, sends the
 *           reply, and only then releases the request;
 *   client  receives the reply, decodes the reference at its head and so
 *           knows which request it answers (several may be in flight),
 *           reads the answer, releases the reply.
 * Releasing the request after the reply went keeps the request's space,
 * and so its reference, from being reused while the reply is on its way:
 * a reference names one request at a time. Neither payload is copied.
 *
 * The client checks every answer (the sum of the request's bytes) and
 * prints the median round trip.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <voxshm.h>

#define TIMEOUT_MS 10000

static int fail(const char *who, const char *what, voxshm_status st) {
    fprintf(stderr, "%s: %s: %s (%s)\n", who, what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

/* The answer to a request: the sum of its bytes. */
static uint64_t sum(const uint8_t *p, size_t len) {
    uint64_t s = 0;
    for (size_t i = 0; i < len; i++) s += p[i];
    return s;
}

/* The server: answers until the client hangs up. */
static int server(int fd) {
    voxshm_registry *reg = NULL;
    voxshm_attachments *att = NULL;
    voxshm_status st = voxshm_duplex_new(fd, NULL, NULL, &reg, &att);
    if (st != VOXSHM_OK) return fail("server", "duplex_new", st);
    int rc = 0;
    for (;;) {
        voxshm_view req;
        st = voxshm_attachments_recv(att, -1, &req);
        if (st == VOXSHM_PEER_GONE) break; /* the client is done */
        if (st != VOXSHM_OK) {
            rc = fail("server", "recv", st);
            break;
        }
        voxshm_allocation reply;
        size_t reply_len = VOXSHM_REF_FRAME_LEN + sizeof(uint64_t);
        st = voxshm_registry_alloc(reg, reply_len, TIMEOUT_MS, &reply);
        if (st != VOXSHM_OK) {
            rc = fail("server", "alloc", st);
            break;
        }
        voxshm_ref_encode(&req.reference, reply.data);
        uint64_t answer = sum(req.data, req.len);
        memcpy(reply.data + VOXSHM_REF_FRAME_LEN, &answer, sizeof answer);
        st = voxshm_registry_send(reg, &reply, reply_len);
        if (st != VOXSHM_OK) {
            rc = fail("server", "send", st);
            break;
        }
        /* Only now: the request's space may be reused. */
        voxshm_attachments_release(att, &req);
    }
    voxshm_attachments_free(att);
    voxshm_registry_free(reg);
    return rc;
}

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int client(int fd, int count, size_t request_len) {
    voxshm_registry *reg = NULL;
    voxshm_attachments *att = NULL;
    voxshm_status st = voxshm_duplex_new(fd, NULL, NULL, &reg, &att);
    if (st != VOXSHM_OK) return fail("client", "duplex_new", st);
    double *rtt = calloc((size_t)count, sizeof *rtt);
    int wrong = 0, rc = 0;
    for (int i = 0; i < count && rc == 0; i++) {
        double t0 = now_us();
        voxshm_allocation a;
        st = voxshm_registry_alloc(reg, request_len, TIMEOUT_MS, &a);
        if (st != VOXSHM_OK) {
            rc = fail("client", "alloc", st);
            break;
        }
        for (size_t k = 0; k < request_len; k++) a.data[k] = (uint8_t)(i + k);
        uint64_t expected = sum(a.data, request_len);
        voxshm_ref sent = {a.map_id, a.map_generation, a.map_offset, (uint32_t)request_len, 0};
        st = voxshm_registry_send(reg, &a, request_len);
        if (st != VOXSHM_OK) {
            rc = fail("client", "send", st);
            break;
        }
        voxshm_view reply;
        st = voxshm_attachments_recv(att, TIMEOUT_MS, &reply);
        if (st != VOXSHM_OK) {
            rc = fail("client", "recv", st);
            break;
        }
        rtt[i] = now_us() - t0;
        /* Which request does this reply answer? */
        voxshm_ref answered;
        uint64_t answer = 0;
        if (voxshm_ref_decode(reply.data, reply.len, &answered) != VOXSHM_OK ||
            reply.len < VOXSHM_REF_FRAME_LEN + sizeof answer) {
            wrong++;
        } else {
            memcpy(&answer, reply.data + VOXSHM_REF_FRAME_LEN, sizeof answer);
            if (answered.map_id != sent.map_id || answered.map_offset != sent.map_offset ||
                answered.map_generation != sent.map_generation ||
                answered.payload_len != sent.payload_len || answer != expected) {
                wrong++;
            }
        }
        voxshm_attachments_release(att, &reply);
    }
    if (rc == 0) {
        qsort(rtt, (size_t)count, sizeof *rtt, by_value);
        printf("%d requests of %zu bytes answered, %d wrong, median round trip %.1f us\n", count,
               request_len, wrong, count ? rtt[count / 2] : 0.0);
        rc = wrong != 0;
    }
    free(rtt);
    voxshm_registry_free(reg);
    voxshm_attachments_free(att);
    return rc;
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 10000;
    size_t request_len = argc > 2 ? (size_t)atol(argv[2]) : 4096;
    if (count < 1 || request_len < 1) {
        fprintf(stderr, "usage: %s [COUNT >= 1] [REQUEST_BYTES >= 1]\n", argv[0]);
        return 2;
    }
    int fds[2];
    voxshm_status st = voxshm_channel_pair(fds);
    if (st != VOXSHM_OK) return fail("main", "channel_pair", st);
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        close(fds[0]);
        _exit(server(fds[1]));
    }
    close(fds[1]);
    int rc = client(fds[0], count, request_len);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "server failed\n");
        rc = 1;
    }
    return rc;
}
