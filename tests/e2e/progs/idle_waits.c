/* idle_waits.c — a background writer like PostgreSQL's checkpointer: 29
 * write()s and 31 pwrite64()s of 8 KiB to FILE, with an epoll_wait on an
 * idle pipe that times out (10 ms) between each two. The waits find nothing
 * ready: the writes are sync-blocking requests timed by themselves, and the
 * waits idle time. Then 7 rounds of a wait that does find the pipe ready
 * followed by a read of it: 7 async-blocking requests. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int p[2];
    if (fd < 0 || pipe(p)) { perror("open"); return 1; }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]}, out[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev);
    printf("{\"file\": %d, \"pipe_r\": %d, \"epfd\": %d}\n", fd, p[0], ep);
    fflush(stdout);
    static char buf[8192];
    memset(buf, 'w', sizeof buf);
    for (int i = 0; i < 60; i++) {
        if (epoll_wait(ep, out, 4, 10) != 0) { fprintf(stderr, "not idle\n"); return 1; }
        ssize_t n = i < 29 ? write(fd, buf, sizeof buf) : pwrite(fd, buf, sizeof buf, i * 8192L);
        if (n != sizeof buf) { perror("write"); return 1; }
    }
    for (int i = 0; i < 7; i++) {
        if (write(p[1], "x", 1) != 1) return 1;
        if (epoll_wait(ep, out, 4, 1000) != 1) return 1;
        char c;
        if (read(p[0], &c, 1) != 1) return 1;
    }
    return 0;
}
