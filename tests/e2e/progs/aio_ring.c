/* aio_ring.c — Linux AIO reaped from the user-space ring, as fio
 * --userspace_reap does: 23 O_DIRECT reads of FILE through one iocb, each
 * submitted with io_submit and reaped by reading the struct aio_ring the
 * kernel maps at the context address, never with io_getevents. iotrace must
 * count 23 requests, each with its completion not observed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct aio_ring {            /* fs/aio.c, the ABI user-space reapers rely on */
    unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
    struct io_event io_events[];
};

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) { perror("open"); return 1; }
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 8, &ctx)) { perror("io_setup"); return 1; }
    struct aio_ring *ring = (struct aio_ring *)ctx;
    static char buf[4096] __attribute__((aligned(4096)));
    struct iocb cb, *cbp = &cb;
    for (int i = 0; i < 23; i++) {
        memset(&cb, 0, sizeof cb);
        cb.aio_fildes = fd;
        cb.aio_lio_opcode = IOCB_CMD_PREAD;
        cb.aio_buf = (uint64_t)(uintptr_t)buf;
        cb.aio_nbytes = 4096;
        cb.aio_offset = (int64_t)i * 4096;
        cb.aio_data = 100 + i;
        if (syscall(SYS_io_submit, ctx, 1, &cbp) != 1) { perror("io_submit"); return 1; }
        while (__atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE) == ring->head)
            ;
        struct io_event *ev = &ring->io_events[ring->head];
        if (ev->res != 4096 || ev->data != (uint64_t)(100 + i)) { fprintf(stderr, "bad\n"); return 1; }
        __atomic_store_n(&ring->head, (ring->head + 1) % ring->nr, __ATOMIC_RELEASE);
    }
    syscall(SYS_io_destroy, ctx);
    return 0;
}
