/*
 * fanout_camera: one producer of 8 MiB frames, several consumer processes,
 * each frame written once. Run it as
 *
 *     ./fanout_camera [FRAMES] [CONSUMERS]
 *
 * The producer starts CONSUMERS copies of this program as separate
 * processes (each gets one end of its own channel, as fd 3 ... see
 * start_consumer) and adds each as a receiver of one voxshm_fanout. The
 * last consumer is deliberately slow (it sleeps 20 ms per frame) and is
 * added with a limit of 1 frame in flight and the skip policy: a "latest
 * frame only" consumer, which misses the frames that come while it is busy
 * and never slows the others. The others use the wait policy with a limit
 * of 4 frames: they get every frame, and the producer waits for them.
 *
 * Each frame is written once, in shared memory: the consumers read the
 * same pages (read-only), and its space is reused when the last of them
 * released it. The producer prints what each receiver got; each consumer
 * checks every frame it sees and prints its own rate.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <voxshm.h>

extern char **environ;

#define FRAME_BYTES (8u << 20)
#define MAX_CONSUMERS 8
#define SLOW_MS 20

static int fail(const char *who, const char *what, voxshm_status st) {
    fprintf(stderr, "%s: %s: %s (%s)\n", who, what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* A frame: its number in the first 8 bytes, then every byte
   (number + offset) & 0xff, as a camera writing a whole image would. */
static void write_frame(uint8_t *p, uint64_t n) {
    memcpy(p, &n, sizeof n);
    for (size_t i = sizeof n; i < FRAME_BYTES; i++) p[i] = (uint8_t)(n + i);
}

/* The consumer checks every 4096th byte and the last: enough to catch a
   wrong or torn frame without turning the example into a checksum test. */
static int frame_ok(const uint8_t *p, size_t len, uint64_t *n) {
    if (len != FRAME_BYTES) return 0;
    memcpy(n, p, sizeof *n);
    for (size_t i = 4096; i < FRAME_BYTES; i += 4096) {
        if (p[i] != (uint8_t)(*n + i)) return 0;
    }
    return p[FRAME_BYTES - 1] == (uint8_t)(*n + FRAME_BYTES - 1);
}

static int consumer(int fd, const char *name, int slow) {
    voxshm_attachments *att = NULL;
    voxshm_status st = voxshm_attachments_new(fd, NULL, &att);
    if (st != VOXSHM_OK) return fail(name, "attachments_new", st);
    uint64_t frames = 0, missed = 0, wrong = 0, last = 0;
    double t0 = 0;
    for (;;) {
        voxshm_view v;
        st = voxshm_attachments_recv(att, 30000, &v);
        if (st == VOXSHM_PEER_GONE) break; /* the producer is done */
        if (st != VOXSHM_OK) {
            voxshm_attachments_free(att);
            return fail(name, "recv", st);
        }
        if (frames == 0) t0 = now_s();
        uint64_t n = 0;
        if (!frame_ok(v.data, v.len, &n)) {
            wrong++;
        } else {
            if (frames > 0 && n > last + 1) missed += n - last - 1;
            last = n;
        }
        frames++;
        if (slow) {
            struct timespec d = {0, SLOW_MS * 1000000L};
            nanosleep(&d, NULL);
        }
        voxshm_attachments_release(att, &v);
    }
    double t = now_s() - t0;
    printf("consumer %s: %llu frames, %llu missed, %llu wrong, %.0f frames/s%s\n", name,
           (unsigned long long)frames, (unsigned long long)missed, (unsigned long long)wrong,
           t > 0 ? (double)frames / t : 0.0, slow ? " (slow: sleeps 20 ms a frame)" : "");
    voxshm_attachments_free(att);
    return wrong == 0 && frames > 0 ? 0 : 1;
}

/* Starts this program again as a consumer on `fd` (which survives exec
   for this one child, and is then closed here). */
static pid_t start_consumer(const char *self, int fd, const char *name, int slow) {
    char fd_arg[16];
    snprintf(fd_arg, sizeof fd_arg, "%d", fd);
    char *argv[] = {(char *)self, "--consumer", fd_arg, (char *)name, slow ? "slow" : "fast",
                    NULL};
    fcntl(fd, F_SETFD, 0);
    pid_t pid = -1;
    if (posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ) != 0) pid = -1;
    close(fd);
    return pid;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--consumer") == 0) {
        return consumer(atoi(argv[2]), argv[3], strcmp(argv[4], "slow") == 0);
    }
    int frames = argc > 1 ? atoi(argv[1]) : 300;
    int consumers = argc > 2 ? atoi(argv[2]) : 3;
    if (frames < 1 || consumers < 2 || consumers > MAX_CONSUMERS) {
        fprintf(stderr, "usage: %s [FRAMES >= 1] [CONSUMERS 2..%d]\n", argv[0], MAX_CONSUMERS);
        return 2;
    }

    /* Regions of one frame each, and room for 16 frames in all. */
    voxshm_registry_options ro;
    voxshm_registry_options_init(&ro);
    ro.region_size = FRAME_BYTES;
    ro.budget = 16ull * FRAME_BYTES;
    ro.keep_warm = ro.budget;
    ro.max_in_flight_bytes = 0;
    voxshm_fanout *f = NULL;
    voxshm_status st = voxshm_fanout_new(&ro, &f);
    if (st != VOXSHM_OK) return fail("producer", "fanout_new", st);

    pid_t pids[MAX_CONSUMERS];
    uint32_t ids[MAX_CONSUMERS];
    int started = 0, ok = 1;
    for (int i = 0; i < consumers && ok; i++) {
        int fds[2];
        st = voxshm_channel_pair(fds);
        if (st != VOXSHM_OK) {
            ok = !fail("producer", "channel_pair", st);
            break;
        }
        int slow = i == consumers - 1;
        char name[16];
        snprintf(name, sizeof name, slow ? "slow" : "fast-%d", i + 1);
        pids[i] = start_consumer(argv[0], fds[1], name, slow);
        if (pids[i] < 0) {
            close(fds[0]);
            ok = !fail("producer", "posix_spawn", VOXSHM_RESOURCE_EXHAUSTED);
            break;
        }
        started++;
        /* Fast consumers: every frame, at most 4 in flight, the producer
           waits for them. The slow one: the latest frame only. */
        voxshm_receiver_options o;
        voxshm_receiver_options_init(&o);
        o.max_in_flight = slow ? 1 : 4;
        o.policy = slow ? VOXSHM_POLICY_SKIP : VOXSHM_POLICY_WAIT;
        st = voxshm_fanout_add_receiver(f, fds[0], &o, &ids[i]);
        if (st != VOXSHM_OK) {
            close(fds[0]); /* still ours: the consumer sees it close */
            ok = !fail("producer", "add_receiver", st);
        }
    }
    /* Frames reach a consumer from its HELLO on: wait for every one, so
       that none misses the first frames while it starts. */
    for (int i = 0; i < consumers && ok; i++) {
        st = voxshm_fanout_wait_ready(f, ids[i], 10000);
        if (st != VOXSHM_OK) ok = !fail("producer", "wait_ready", st);
    }

    double t0 = now_s();
    for (int n = 0; n < frames && ok; n++) {
        voxshm_allocation a;
        st = voxshm_fanout_alloc(f, FRAME_BYTES, 10000, &a);
        if (st != VOXSHM_OK) {
            ok = !fail("producer", "alloc", st);
            break;
        }
        write_frame(a.data, (uint64_t)n); /* written once, for every consumer */
        st = voxshm_fanout_send(f, &a, FRAME_BYTES, VOXSHM_ALL_RECEIVERS, 10000, NULL);
        if (st != VOXSHM_OK) {
            voxshm_fanout_abort(f, &a);
            ok = !fail("producer", "send", st);
        }
    }
    double t = now_s() - t0;
    if (ok) {
        st = voxshm_fanout_wait_idle(f, 30000);
        if (st != VOXSHM_OK) ok = !fail("producer", "wait_idle", st);
    }
    voxshm_fanout_stats fs;
    fs.struct_size = sizeof fs;
    voxshm_fanout_get_stats(f, &fs);
    printf("producer: %d frames of 8 MiB in %.2f s (%.0f frames/s), each written once for %d "
           "consumers: %llu deliveries, %llu skipped, %.0f MiB of regions\n",
           frames, t, (double)frames / t, consumers, (unsigned long long)fs.deliveries,
           (unsigned long long)fs.skips, (double)fs.mapped_bytes / (1 << 20));
    for (int i = 0; i < consumers && ok; i++) {
        voxshm_receiver_stats rs;
        rs.struct_size = sizeof rs;
        voxshm_fanout_get_receiver_stats(f, ids[i], &rs);
        printf("  receiver %u: delivered %llu, skipped %llu, released %llu\n", rs.id,
               (unsigned long long)rs.delivered, (unsigned long long)rs.skipped,
               (unsigned long long)rs.released);
    }
    /* Closing the channels tells every consumer the producer is done. */
    voxshm_fanout_free(f);
    for (int i = 0; i < started; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ok = 0;
    }
    fflush(stdout);
    printf(ok ? "every frame every consumer saw was intact\n" : "FAILED\n");
    return ok ? 0 : 1;
}
