/* pool_reads.c — Node.js-like: the main thread serves a socketpair with
 * epoll (41 rounds of epoll_wait then recv, fed by a peer thread), while 2
 * pool threads read FILE with blocking read() — not pread — 53 times each,
 * never calling epoll. Each thread's own model must show: the process is
 * mixed, not 100% async-blocking. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *path;
static int sv[2];

static void *pool(void *arg) {
    (void)arg;
    int fd = open(path, O_RDONLY);
    static __thread char buf[4096];
    for (int i = 0; i < 53; i++) {
        lseek(fd, (i % 16) * 4096, SEEK_SET);
        if (read(fd, buf, sizeof buf) != sizeof buf) return NULL;
    }
    close(fd);
    return NULL;
}

static void *peer(void *arg) {
    (void)arg;
    for (int i = 0; i < 41; i++) {
        usleep(2000);
        if (send(sv[1], "ping", 4, 0) != 4) return NULL;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    path = argv[1];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) return 1;
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = sv[0]}, out[4];
    epoll_ctl(ep, EPOLL_CTL_ADD, sv[0], &ev);
    pthread_t t[3];
    pthread_create(&t[0], NULL, pool, NULL);
    pthread_create(&t[1], NULL, pool, NULL);
    pthread_create(&t[2], NULL, peer, NULL);
    for (int i = 0; i < 41; i++) {
        if (epoll_wait(ep, out, 4, -1) != 1) return 1;
        char buf[4];
        if (recv(sv[0], buf, 4, 0) != 4) return 1;
    }
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    return 0;
}
