/* copies.c — in-kernel copies, counted: 7 sendfile of 64 KiB from FILE to a
 * socket pair, 5 copy_file_range of 1 MiB FILE -> FILE.copy, 3 splice of
 * 4 KiB from a pipe to FILE.copy, 2 tee pipe -> pipe, 2 vmsplice of 4 KiB
 * into a pipe. Prints its fds as JSON. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static char buf[1 << 20];

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    char out[4096];
    snprintf(out, sizeof out, "%s.copy", argv[1]);
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    int ofd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ofd < 0) { perror("open"); return 1; }
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 8; i++)
        if (write(fd, buf, sizeof buf) != sizeof buf) { perror("write"); return 1; }
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) { perror("socketpair"); return 1; }
    int sz = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
    setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    int p[2], q[2];
    if (pipe(p) || pipe(q)) { perror("pipe"); return 1; }
    printf("{\"file\": %d, \"copy\": %d, \"sock\": %d, \"pipe_w\": %d, \"pipe_r\": %d, "
           "\"pipe2_w\": %d}\n", fd, ofd, sv[0], p[1], p[0], q[1]);
    fflush(stdout);
    for (int i = 0; i < 7; i++) {
        off_t off = (off_t)i * 65536;
        if (sendfile(sv[0], fd, &off, 65536) != 65536) { perror("sendfile"); return 1; }
        ssize_t got = 0;
        while (got < 65536) {
            ssize_t n = read(sv[1], buf, 65536 - got);
            if (n <= 0) { perror("read"); return 1; }
            got += n;
        }
    }
    for (int i = 0; i < 5; i++) {
        loff_t in = (loff_t)i << 20, o = (loff_t)i << 20;
        if (copy_file_range(fd, &in, ofd, &o, 1 << 20, 0) != 1 << 20) {
            perror("copy_file_range");
            return 1;
        }
    }
    for (int i = 0; i < 2; i++) {
        struct iovec v = {buf, 4096};
        if (vmsplice(p[1], &v, 1, 0) != 4096) { perror("vmsplice"); return 1; }
        if (tee(p[0], q[1], 4096, 0) != 4096) { perror("tee"); return 1; }
    }
    for (int i = 0; i < 3; i++) {
        if (i >= 2 && write(p[1], buf, 4096) != 4096) return 1;
        loff_t o = (loff_t)(8 << 20) + i * 4096;
        if (splice(p[0], NULL, ofd, &o, 4096, 0) != 4096) { perror("splice"); return 1; }
    }
    return 0;
}
