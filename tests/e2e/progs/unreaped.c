/* unreaped.c — submits 5 Linux AIO reads and 3 POSIX AIO reads on FILE and
 * exits without ever reaping them (no io_getevents, no aio_return): iotrace
 * must report each as "completion not observed", never with a time. */
#define _GNU_SOURCE
#include <aio.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd < 0) { perror("open"); return 1; }
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 16, &ctx)) { perror("io_setup"); return 1; }
    static char buf[5][4096] __attribute__((aligned(4096)));
    struct iocb cbs[5], *cbp[5];
    for (int i = 0; i < 5; i++) {
        memset(&cbs[i], 0, sizeof cbs[i]);
        cbs[i].aio_fildes = fd;
        cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
        cbs[i].aio_buf = (uint64_t)(uintptr_t)buf[i];
        cbs[i].aio_nbytes = 4096;
        cbs[i].aio_offset = (int64_t)i * 4096;
        cbp[i] = &cbs[i];
    }
    if (syscall(SYS_io_submit, ctx, 5, cbp) != 5) { perror("io_submit"); return 1; }
    int bfd = open(argv[1], O_RDONLY);
    static char pbuf[3][4096];
    struct aiocb acb[3];
    for (int i = 0; i < 3; i++) {
        memset(&acb[i], 0, sizeof acb[i]);
        acb[i].aio_fildes = bfd;
        acb[i].aio_buf = pbuf[i];
        acb[i].aio_nbytes = 4096;
        acb[i].aio_offset = i * 4096;
        if (aio_read(&acb[i])) { perror("aio_read"); return 1; }
    }
    usleep(100000);
    printf("{\"direct\": %d, \"buffered\": %d}\n", fd, bfd);
    fflush(stdout);
    _exit(0);
}
