/* Sends one message to quickstart_receiver. Start the sender, then the receiver. */
#include <stdio.h>
#include <string.h>
#include <voxshm.h>

int main(int argc, char **argv) {
    const char *where = argc > 1 ? argv[1] : "@voxshm-quickstart"; /* '@': no file on disk */
    static const char msg[] = "hello through shared memory";
    voxshm_listener *l = NULL; voxshm_registry *reg = NULL; voxshm_allocation a; int fd;
    int ok = voxshm_listener_new(where, &l) == VOXSHM_OK
          && voxshm_listener_accept(l, 60000, &fd) == VOXSHM_OK  /* wait for the receiver */
          && voxshm_registry_new(fd, NULL, &reg) == VOXSHM_OK    /* reg owns fd from now on */
          && voxshm_registry_alloc(reg, sizeof msg - 1, -1, &a) == VOXSHM_OK;
    if (ok) {
        memcpy(a.data, msg, sizeof msg - 1);                     /* write into shared memory */
        ok = voxshm_registry_send(reg, &a, sizeof msg - 1) == VOXSHM_OK /* a 32-byte ref travels */
          && voxshm_registry_wait_idle(reg, 10000) == VOXSHM_OK;        /* until it is released */
    }
    if (!ok) fprintf(stderr, "sender: %s\n", voxshm_last_error());
    voxshm_registry_free(reg);                                   /* closes fd; NULL is a no-op */
    voxshm_listener_free(l);
    return ok ? 0 : 1;
}
