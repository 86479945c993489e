/*
 * demo_producer: voxshm's demo. It starts demo_consumer as a separate
 * process and sends it a few GiB in payloads of several sizes, first
 * through voxshm (the payload is written once into shared memory; only a
 * 32-byte reference crosses a socket), then the same payloads through a
 * plain Unix stream socket (every byte is copied into the kernel and out
 * again). The consumer checksums every byte of every payload either way,
 * and the producer prints how long each took.
 *
 *     demo_producer [--mib-per-size N] [--short] [--consumer PATH] [--corrupt]
 *
 *   --mib-per-size N  MiB sent in each payload size and transport (1024)
 *   --short           a quick run: 16 MiB per size
 *   --consumer PATH   the consumer program (default: demo_consumer next to
 *                     this program)
 *   --corrupt         flip one byte of one payload per phase after its
 *                     checksum was computed, to show that the consumer
 *                     notices (the demo then fails)
 *
 * Exits 0 only if the consumer found every byte of every payload correct.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <voxshm.h>

#include "demo_common.h"

extern char **environ;

static const size_t sizes[] = {4u << 10, 1u << 20, 64u << 20};
#define NSIZES (sizeof sizes / sizeof sizes[0])

struct phase {
    uint64_t payloads, bytes;
    double seconds;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *human(char *buf, size_t n, double bytes) {
    if (bytes >= 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024)
        snprintf(buf, n, "%.0f MiB", bytes / (1024.0 * 1024));
    else
        snprintf(buf, n, "%.0f KiB", bytes / 1024.0);
    return buf;
}

static int vfail(const char *what, voxshm_status st) {
    fprintf(stderr, "demo_producer: %s: %s (%s)\n", what, voxshm_status_name((int)st),
            voxshm_last_error());
    return -1;
}

/* Writes the header and the pattern of payload `seq` into `p`. */
static void make_payload(uint8_t *p, size_t size, uint64_t seq, uint64_t flags, int corrupt) {
    demo_header h;
    memset(&h, 0, sizeof h);
    h.magic = DEMO_MAGIC;
    h.seq = seq;
    h.len = size;
    h.flags = flags;
    h.checksum = demo_fill(p + DEMO_HEADER_LEN, size - DEMO_HEADER_LEN, (seq + 1) * 0x9E3779B97F4A7C15ull);
    memcpy(p, &h, sizeof h);
    if (corrupt) p[DEMO_HEADER_LEN + (size - DEMO_HEADER_LEN) / 2] ^= 0x20;
}

/* Sends `count` payloads of `size` bytes through voxshm and waits until
 * the consumer has checked and released all of them. */
static int voxshm_phase(voxshm_registry *reg, size_t size, uint64_t count, uint64_t *seq,
                        int corrupt, struct phase *out) {
    double t0 = now();
    for (uint64_t n = 0; n < count; n++) {
        voxshm_allocation a;
        voxshm_status st = voxshm_registry_alloc(reg, size, 60000, &a);
        if (st != VOXSHM_OK) return vfail("alloc", st);
        make_payload(a.data, size, (*seq)++, n + 1 == count ? DEMO_LAST : 0,
                     corrupt && n == count / 2);
        st = voxshm_registry_send(reg, &a, size);
        if (st != VOXSHM_OK) {
            voxshm_registry_abort(reg, &a);
            return vfail("send", st);
        }
    }
    voxshm_status st = voxshm_registry_wait_idle(reg, 120000);
    if (st != VOXSHM_OK) return vfail("wait for the consumer", st);
    out->seconds = now() - t0;
    out->payloads = count;
    out->bytes = count * size;
    return 0;
}

/* Before the timed phases: WARMUP_REGIONS regions' worth of 64 MiB payloads,
 * all allocated at once so that every region the timed phases can use has
 * been touched by both processes (a fresh page costs a fault on each side
 * the first time). */
#define WARMUP_REGIONS 4
static int voxshm_warmup(voxshm_registry *reg, uint64_t *seq) {
    voxshm_allocation a[WARMUP_REGIONS];
    size_t size = sizes[NSIZES - 1];
    for (int i = 0; i < WARMUP_REGIONS; i++) {
        voxshm_status st = voxshm_registry_alloc(reg, size, 60000, &a[i]);
        if (st != VOXSHM_OK) return vfail("alloc", st);
    }
    for (int i = 0; i < WARMUP_REGIONS; i++) {
        make_payload(a[i].data, size, (*seq)++, 0, 0);
        voxshm_status st = voxshm_registry_send(reg, &a[i], size);
        if (st != VOXSHM_OK) return vfail("send", st);
    }
    voxshm_status st = voxshm_registry_wait_idle(reg, 120000);
    return st == VOXSHM_OK ? 0 : vfail("wait for the consumer", st);
}

static int write_all(int fd, const uint8_t *p, size_t len) {
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fprintf(stderr, "demo_producer: socket write: %s\n", strerror(errno));
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The same through a plain socket: the payload is built in a buffer of our
 * own and written; the consumer acknowledges the last one with a byte. */
static int socket_phase(int fd, uint8_t *buf, size_t size, uint64_t count, uint64_t *seq,
                        int corrupt, struct phase *out) {
    double t0 = now();
    for (uint64_t n = 0; n < count; n++) {
        make_payload(buf, size, (*seq)++, n + 1 == count ? DEMO_LAST : 0,
                     corrupt && n == count / 2);
        if (write_all(fd, buf, size) != 0) return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    char ack;
    if (poll(&pfd, 1, 120000) != 1 || read(fd, &ack, 1) != 1) {
        fprintf(stderr, "demo_producer: the consumer did not acknowledge the last payload\n");
        return -1;
    }
    out->seconds = now() - t0;
    out->payloads = count;
    out->bytes = count * size;
    return 0;
}

static int plain_listen(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 1) != 0) {
        fprintf(stderr, "demo_producer: listen on %s: %s\n", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    return fd;
}

static int plain_accept(int lfd) {
    struct pollfd pfd = {.fd = lfd, .events = POLLIN};
    if (poll(&pfd, 1, 30000) != 1) {
        fprintf(stderr, "demo_producer: the consumer did not connect to the plain socket\n");
        return -1;
    }
    return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

/* Waits for the consumer; 0 if it exited 0 (every byte it checked was
 * right). */
static int wait_consumer(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 1)
        fprintf(stderr, "demo_producer: the consumer found wrong bytes (see above)\n");
    else
        fprintf(stderr, "demo_producer: the consumer failed (status %#x)\n", status);
    return -1;
}

/* demo_consumer in the directory this program lives in. */
static void default_consumer(char *out, size_t n) {
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        snprintf(out, n, "demo_consumer");
        return;
    }
    self[len] = '\0';
    static const char name[] = "/demo_consumer";
    char *slash = strrchr(self, '/');
    size_t dir_len = slash ? (size_t)(slash - self) : 0;
    if (dir_len + sizeof name > n) {
        snprintf(out, n, "demo_consumer");
        return;
    }
    memcpy(out, self, dir_len);
    memcpy(out + dir_len, name, sizeof name);
}

static void usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--mib-per-size N] [--short] [--consumer PATH] [--corrupt]\n",
            argv0);
}

int main(int argc, char **argv) {
    uint64_t mib_per_size = 1024;
    int corrupt = 0;
    char consumer[PATH_MAX];
    default_consumer(consumer, sizeof consumer);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mib-per-size") == 0 && i + 1 < argc) {
            mib_per_size = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--short") == 0) {
            mib_per_size = 16;
        } else if (strcmp(argv[i], "--consumer") == 0 && i + 1 < argc) {
            snprintf(consumer, sizeof consumer, "%s", argv[++i]);
        } else if (strcmp(argv[i], "--corrupt") == 0) {
            corrupt = 1;
        } else {
            usage(argv[0]);
            return 2;
        }
    }
    if (mib_per_size == 0) {
        usage(argv[0]);
        return 2;
    }

    /* Two meeting points in a private directory: one for voxshm, one for
     * the plain socket. */
    char dir[] = "/tmp/voxshm-demo-XXXXXX";
    if (mkdtemp(dir) == NULL) {
        fprintf(stderr, "demo_producer: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    char shm_path[64], plain_path[64];
    snprintf(shm_path, sizeof shm_path, "%s/voxshm.sock", dir);
    snprintf(plain_path, sizeof plain_path, "%s/plain.sock", dir);

    int result = 1;
    pid_t pid = -1;
    int plain_lfd = -1, plain_fd = -1;
    uint8_t *buf = NULL;
    voxshm_registry *reg = NULL;
    voxshm_listener *listener = NULL;
    struct phase shm[NSIZES], plain[NSIZES];
    uint64_t counts[NSIZES];
    for (size_t s = 0; s < NSIZES; s++) {
        counts[s] = (mib_per_size << 20) / sizes[s];
        if (counts[s] == 0) counts[s] = 1;
    }

    voxshm_status st = voxshm_listener_new(shm_path, &listener);
    if (st != VOXSHM_OK) {
        vfail("listen", st);
        goto out;
    }
    plain_lfd = plain_listen(plain_path);
    if (plain_lfd < 0) goto out;

    char *child_argv[] = {consumer, shm_path, plain_path, NULL};
    int err = posix_spawn(&pid, consumer, NULL, NULL, child_argv, environ);
    if (err != 0) {
        fprintf(stderr, "demo_producer: cannot start %s: %s\n", consumer, strerror(err));
        pid = -1;
        goto out;
    }

    int fd;
    st = voxshm_listener_accept(listener, 30000, &fd);
    if (st != VOXSHM_OK) {
        vfail("wait for the consumer", st);
        goto out;
    }
    /* 64 MiB regions, at most four of them, all kept mapped when idle so
     * that the steady state reuses warm memory. */
    voxshm_registry_options opts;
    voxshm_registry_options_init(&opts);
    opts.region_size = 64u << 20;
    opts.budget = (uint64_t)WARMUP_REGIONS * (64u << 20);
    opts.max_in_flight_bytes = 0; /* throughput: as deep a queue as the budget holds */
    opts.keep_warm = opts.budget;
    st = voxshm_registry_new(fd, &opts, &reg);
    if (st != VOXSHM_OK) {
        close(fd);
        vfail("registry_new", st);
        goto out;
    }

    char a[32], b[32], c[32];
    uint64_t per_transport = 0;
    for (size_t s = 0; s < NSIZES; s++) per_transport += counts[s] * sizes[s];
    printf("voxshm %s demo: producer pid %ld, consumer pid %ld (separate processes)\n",
           voxshm_version(), (long)getpid(), (long)pid);
    printf("%s through each transport (after an untimed warm-up of %d x 64 MiB);\n"
           "the consumer checks a checksum over every byte\n\n",
           human(a, sizeof a, (double)per_transport), WARMUP_REGIONS);
    printf("%-12s %8s %9s %10s %8s %13s\n", "transport", "payload", "payloads", "bytes", "time",
           "throughput");
    fflush(stdout);

    uint64_t seq = 0;
    if (voxshm_warmup(reg, &seq) != 0) goto out;
    for (size_t s = 0; s < NSIZES; s++) {
        if (voxshm_phase(reg, sizes[s], counts[s], &seq, corrupt, &shm[s]) != 0) goto out;
        printf("%-12s %8s %9llu %10s %6.2f s %9s/s\n", "voxshm", human(a, sizeof a, (double)sizes[s]),
               (unsigned long long)shm[s].payloads, human(b, sizeof b, (double)shm[s].bytes),
               shm[s].seconds, human(c, sizeof c, (double)shm[s].bytes / shm[s].seconds));
        fflush(stdout);
    }
    /* Closing the registry tells the consumer voxshm is done. */
    voxshm_registry_free(reg);
    reg = NULL;

    plain_fd = plain_accept(plain_lfd);
    if (plain_fd < 0) goto out;
    buf = malloc(sizes[NSIZES - 1]);
    if (buf == NULL) goto out;
    seq = 0;
    struct phase warm;
    if (socket_phase(plain_fd, buf, sizes[NSIZES - 1], WARMUP_REGIONS, &seq, 0, &warm) != 0)
        goto out;
    for (size_t s = 0; s < NSIZES; s++) {
        if (socket_phase(plain_fd, buf, sizes[s], counts[s], &seq, corrupt, &plain[s]) != 0)
            goto out;
        printf("%-12s %8s %9llu %10s %6.2f s %9s/s\n", "unix socket",
               human(a, sizeof a, (double)sizes[s]), (unsigned long long)plain[s].payloads,
               human(b, sizeof b, (double)plain[s].bytes), plain[s].seconds,
               human(c, sizeof c, (double)plain[s].bytes / plain[s].seconds));
        fflush(stdout);
    }
    close(plain_fd); /* end of the plain stream: the consumer finishes */
    plain_fd = -1;
    if (wait_consumer(pid) != 0) {
        pid = -1;
        goto out;
    }
    pid = -1;

    printf("\nvoxshm's speed-up over the unix socket (socket time / voxshm time):\n");
    for (size_t s = 0; s < NSIZES; s++) {
        double x = plain[s].seconds / shm[s].seconds;
        printf("  %8s payloads: %.1fx%s\n", human(a, sizeof a, (double)sizes[s]), x,
               x < 1.0 && sizes[s] <= (64u << 10)
                   ? " (small payloads: the system calls per payload outweigh the copy)"
                       : "");
    }
    fflush(stdout);
    result = 0;

out:
    voxshm_registry_free(reg);
    voxshm_listener_free(listener);
    if (plain_fd >= 0) close(plain_fd);
    if (plain_lfd >= 0) close(plain_lfd);
    free(buf);
    if (pid > 0) {
        kill(pid, SIGTERM);
        wait_consumer(pid);
    }
    unlink(plain_path);
    rmdir(dir);
    if (result == 0)
        printf("every byte of every payload arrived intact\n");
    else
        fprintf(stderr, "demo_producer: FAILED\n");
    return result;
}
