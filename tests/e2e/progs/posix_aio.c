/* posix_aio.c — 13 glibc aio_read requests on FILE, each collected with aio_return. */
#include <aio.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDONLY);
    static char buf[13][4096];
    struct aiocb cbs[13];
    for (int i = 0; i < 13; i++) {
        memset(&cbs[i], 0, sizeof cbs[i]);
        cbs[i].aio_fildes = fd; cbs[i].aio_buf = buf[i]; cbs[i].aio_nbytes = 4096; cbs[i].aio_offset = i * 4096;
        if (aio_read(&cbs[i])) { perror("aio_read"); return 1; }
    }
    for (int i = 0; i < 13; i++) {
        const struct aiocb *l[1] = {&cbs[i]};
        while (aio_error(&cbs[i]) == EINPROGRESS) aio_suspend(l, 1, NULL);
        if (aio_return(&cbs[i]) != 4096) { fprintf(stderr, "short\n"); return 1; }
    }
    printf("{\"file\": %d}\n", fd);
    return 0;
}
