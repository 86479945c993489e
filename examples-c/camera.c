/*
 * camera: a producer of 1920x1080x4 frames (8 MiB) that is faster than its
 * consumer, in two processes, as a video pipeline would run. It runs the
 * pipeline twice, first with the default options (NULL), then with options
 * tuned by hand for it, and prints for each: frames, rate, the mean and
 * largest latency from writing a frame to reading it, regions the sender
 * created, and page faults per frame on each side.
 *
 *     ./camera [FRAMES]          (default 600)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <voxshm.h>

#define FRAME ((size_t)1920 * 1080 * 4)
#define PAGE 4096

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt;
}

static void die(const char *what, voxshm_status st) {
    fprintf(stderr, "camera: %s: %s\n", what, voxshm_last_error());
    exit(st == VOXSHM_OK ? 1 : (int)st);
}

/* What the consumer reports back. */
struct result {
    uint64_t frames, first_ns, last_ns, latency_sum_ns, latency_max_ns, faults;
};

/* Reads frames until the sender is gone; each costs it 3 ms of "work". */
static struct result consume(int fd) {
    voxshm_attachments *att;
    voxshm_status st = voxshm_attachments_new(fd, NULL, &att);
    if (st != VOXSHM_OK) die("attachments_new", st);
    struct result r = {0};
    uint64_t f0 = 0;
    for (;;) {
        voxshm_view v;
        st = voxshm_attachments_recv(att, 30000, &v);
        if (st == VOXSHM_PEER_GONE) break;
        if (st != VOXSHM_OK) die("recv", st);
        uint64_t t = now_ns(), sent;
        memcpy(&sent, v.data, sizeof sent);
        if (r.frames == 0) {
            r.first_ns = t;
            f0 = faults();
        } else {
            uint64_t lat = t - sent;
            r.latency_sum_ns += lat;
            if (lat > r.latency_max_ns) r.latency_max_ns = lat;
        }
        volatile uint8_t sink = 0;
        for (size_t off = 0; off < v.len; off += PAGE) sink ^= v.data[off];
        (void)sink;
        struct timespec work = {0, 3 * 1000 * 1000};
        nanosleep(&work, NULL);
        r.last_ns = now_ns();
        r.frames++;
        if ((st = voxshm_attachments_release(att, &v)) != VOXSHM_OK) die("release", st);
    }
    r.faults = faults() - f0;
    voxshm_attachments_free(att);
    return r;
}

/* Sends `n` frames as fast as the registry lets it. */
static void produce(int fd, const voxshm_registry_options *opts, int n, uint64_t *created,
                    uint64_t *prod_faults) {
    voxshm_registry *reg;
    voxshm_status st = voxshm_registry_new(fd, opts, &reg);
    if (st != VOXSHM_OK) die("registry_new", st);
    uint64_t f0 = 0, c0 = 0;
    for (int i = 0; i < n; i++) {
        if (i == n / 10) { /* the steady state: after a tenth of the run */
            voxshm_registry_stats s;
            s.struct_size = sizeof s;
            voxshm_registry_get_stats(reg, &s);
            c0 = s.regions_created;
            f0 = faults();
        }
        voxshm_allocation a;
        if ((st = voxshm_registry_alloc(reg, FRAME, -1, &a)) != VOXSHM_OK) die("alloc", st);
        for (size_t off = 0; off < FRAME; off += PAGE) a.data[off] = (uint8_t)i;
        uint64_t t = now_ns();
        memcpy(a.data, &t, sizeof t);
        if ((st = voxshm_registry_send(reg, &a, FRAME)) != VOXSHM_OK) die("send", st);
    }
    voxshm_registry_stats s;
    s.struct_size = sizeof s;
    voxshm_registry_get_stats(reg, &s);
    *created = s.regions_created - c0;
    *prod_faults = faults() - f0;
    voxshm_registry_wait_idle(reg, 30000);
    voxshm_registry_free(reg);
}

/* What one run showed. */
struct figures {
    double fps, latency_ms, sender_faults;
    uint64_t created;
};

static struct figures run(const char *name, const voxshm_registry_options *opts, int n) {
    int fds[2], pipefd[2];
    if (voxshm_channel_pair(fds) != VOXSHM_OK || pipe(pipefd) != 0) die("setup", VOXSHM_OK);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        close(pipefd[0]);
        struct result r = consume(fds[1]);
        if (write(pipefd[1], &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
        _exit(0);
    }
    close(fds[1]);
    close(pipefd[1]);
    uint64_t created = 0, pf = 0;
    produce(fds[0], opts, n, &created, &pf);
    struct result r;
    ssize_t got = read(pipefd[0], &r, sizeof r);
    int status = 0;
    waitpid(pid, &status, 0);
    close(pipefd[0]);
    if (got != (ssize_t)sizeof r || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("the consumer failed", VOXSHM_OK);
    double secs = (double)(r.last_ns - r.first_ns) / 1e9;
    double fps = (double)(r.frames - 1) / secs;
    uint64_t steady = (uint64_t)n - (uint64_t)n / 10;
    printf("%-8s %6llu frames  %6.1f fps  latency mean %6.1f ms, max %6.1f ms  "
           "regions created in the steady state %llu  faults/frame sender %.1f receiver %.1f\n",
           name, (unsigned long long)r.frames, fps,
           (double)r.latency_sum_ns / (double)(r.frames - 1) / 1e6, (double)r.latency_max_ns / 1e6,
           (unsigned long long)created, (double)pf / (double)steady,
           (double)r.faults / (double)r.frames);
    struct figures f = {fps, (double)r.latency_sum_ns / (double)(r.frames - 1) / 1e6,
                        (double)pf / (double)steady, created};
    return f;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 600;
    if (n < 20) n = 20;
    printf("camera: %d frames of %zu bytes, the consumer spends 3 ms on each\n", n, FRAME);
    struct figures base = run("default", NULL, n);
    voxshm_registry_options tuned;
    voxshm_registry_options_init(&tuned);
    tuned.region_size = 64u << 20;
    tuned.budget = 64u << 20;
    tuned.keep_warm = 64u << 20;
    struct figures best = run("tuned", &tuned, n);
    printf("default options: %llu regions created in the steady state, %.1f sender faults per "
           "frame, %.2fx the hand-tuned rate, %.2fx its latency\n",
           (unsigned long long)base.created, base.sender_faults, base.fps / best.fps,
           base.latency_ms / best.latency_ms);
    return 0;
}
