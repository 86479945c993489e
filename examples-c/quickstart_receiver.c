/* Receives one message from quickstart_sender, which must already be running. */
#include <stdio.h>
#include <voxshm.h>

int main(int argc, char **argv) {
    const char *where = argc > 1 ? argv[1] : "@voxshm-quickstart";
    voxshm_attachments *att = NULL; voxshm_view v; int fd;
    int ok = voxshm_connect(where, &fd) == VOXSHM_OK
          && voxshm_attachments_new(fd, NULL, &att) == VOXSHM_OK  /* att owns fd from now on */
          && voxshm_attachments_recv(att, 10000, &v) == VOXSHM_OK; /* wait up to 10 s */
    if (ok) {
        /* v.data points into the sender's shared memory: nothing was copied. */
        printf("received %zu bytes: %.*s\n", v.len, (int)v.len, (const char *)v.data);
        voxshm_attachments_release(att, &v);                      /* sender may reuse the space */
    } else {
        fprintf(stderr, "receiver: %s\n", voxshm_last_error());
    }
    voxshm_attachments_free(att);                                 /* closes fd; NULL is a no-op */
    return ok ? 0 : 1;
}
