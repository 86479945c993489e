/*
 * parent_child: a parent process that starts a child and hands it one end
 * of a voxshm channel. Run it as
 *
 *     ./parent_child [COUNT]
 *
 * The parent creates a connected socket pair, starts this same program
 * again as the child (with "--child FD"), keeps one end and lets the child
 * inherit the other. The parent then sends COUNT text payloads through
 * shared memory; the child prints each one and releases it.
 *
 * The same works with fork() alone, or with any program of yours as the
 * child: what matters is that the child's end of the pair survives exec
 * (FD_CLOEXEC cleared) and the child learns its number.
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <voxshm.h>

extern char **environ;

static int fail(const char *who, const char *what, voxshm_status st) {
    fprintf(stderr, "%s: %s: %s (%s)\n", who, what, voxshm_status_name((int)st),
            voxshm_last_error());
    return 1;
}

/* The child: receives until the parent closes the channel. */
static int child(int fd) {
    /* The attachments handle owns fd from here on. */
    voxshm_attachments *att = NULL;
    voxshm_status st = voxshm_attachments_new(fd, NULL, &att);
    if (st != VOXSHM_OK) return fail("child", "attachments_new", st);
    int received = 0;
    for (;;) {
        voxshm_view v;
        st = voxshm_attachments_recv(att, 10000, &v);
        if (st == VOXSHM_PEER_GONE) break; /* the parent is done */
        if (st != VOXSHM_OK) {
            voxshm_attachments_free(att);
            return fail("child", "recv", st);
        }
        /* The payload is read where the parent wrote it. */
        printf("child %ld: %zu bytes: %.*s\n", (long)getpid(), v.len, (int)v.len,
               (const char *)v.data);
        voxshm_attachments_release(att, &v);
        received++;
    }
    voxshm_attachments_free(att);
    printf("child %ld: received %d payloads\n", (long)getpid(), received);
    return received > 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--child") == 0) return child(atoi(argv[2]));
    int count = argc > 1 ? atoi(argv[1]) : 3;

    /* 1. A connected pair. Both fds are ours, and both are close-on-exec,
     *    so a child we start inherits neither unless we say so. */
    int fds[2];
    voxshm_status st = voxshm_channel_pair(fds);
    if (st != VOXSHM_OK) return fail("parent", "channel_pair", st);

    /* 2. Let fds[1] survive exec, start the child with its number, and
     *    close our copy of it: from now on it is the child's. */
    char fd_arg[16];
    snprintf(fd_arg, sizeof fd_arg, "%d", fds[1]);
    char *child_argv[] = {argv[0], "--child", fd_arg, NULL};
    pid_t pid;
    fcntl(fds[1], F_SETFD, 0);
    int err = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, child_argv, environ);
    close(fds[1]);
    if (err != 0) {
        fprintf(stderr, "parent: cannot start the child: %s\n", strerror(err));
        close(fds[0]);
        return 1;
    }

    /* 3. The sending side over fds[0]; it owns fds[0] from here on. */
    voxshm_registry *reg = NULL;
    st = voxshm_registry_new(fds[0], NULL, &reg);
    if (st != VOXSHM_OK) {
        close(fds[0]); /* on failure the fd is still ours */
        waitpid(pid, NULL, 0);
        return fail("parent", "registry_new", st);
    }

    int ok = 1;
    for (int i = 0; i < count && ok; i++) {
        char text[64];
        int len = snprintf(text, sizeof text, "payload %d of %d from parent %ld", i + 1, count,
                           (long)getpid());
        voxshm_allocation a;
        st = voxshm_registry_alloc(reg, (size_t)len, 10000, &a);
        if (st != VOXSHM_OK) {
            ok = !fail("parent", "alloc", st);
            break;
        }
        memcpy(a.data, text, (size_t)len); /* write into shared memory */
        st = voxshm_registry_send(reg, &a, (size_t)len);
        if (st != VOXSHM_OK) {
            voxshm_registry_abort(reg, &a);
            ok = !fail("parent", "send", st);
        }
    }

    /* 4. Wait until the child released everything, then close the channel:
     *    the child sees it close and exits. */
    if (ok) {
        st = voxshm_registry_wait_idle(reg, 10000);
        if (st != VOXSHM_OK) ok = !fail("parent", "wait_idle", st);
    }
    voxshm_registry_free(reg);

    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "parent: the child failed\n");
        ok = 0;
    }
    return ok ? 0 : 1;
}
