/* storm.c — call storms with known counts, for the run-record tests.
 *
 *   storm eagain N      N reads of an empty O_NONBLOCK pipe (every one EAGAIN),
 *                       then one write + one successful read
 *   storm zero N T      T threads, each N 1-byte reads of /dev/zero
 *   storm poll N        N poll() calls with timeout 0 on an empty pipe (0 ready)
 *
 * Prints what it did, so the test compares against the program's own count. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long n_each;

static void *zero_reads(void *arg) {
    (void)arg;
    int fd = open("/dev/zero", O_RDONLY);
    char b;
    long ok = 0;
    for (long i = 0; i < n_each; i++)
        ok += read(fd, &b, 1) == 1;
    close(fd);
    return (void *)ok;
}

int main(int argc, char **argv) {
    if (argc < 3)
        return 2;
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "eagain")) {
        int p[2];
        if (pipe2(p, O_NONBLOCK))
            return 1;
        char b[4];
        long eagain = 0;
        for (long i = 0; i < n; i++)
            eagain += read(p[0], b, 1) < 0 && errno == EAGAIN;
        long w = write(p[1], "x", 1);
        long r = read(p[0], b, 1);
        printf("eagain %ld write %ld read %ld\n", eagain, w, r);
        return 0;
    }
    if (!strcmp(argv[1], "zero")) {
        int t = argc > 3 ? atoi(argv[3]) : 1;
        pthread_t th[16];
        n_each = n;
        long ok = 0;
        for (int i = 0; i < t && i < 16; i++)
            pthread_create(&th[i], NULL, zero_reads, NULL);
        for (int i = 0; i < t && i < 16; i++) {
            void *v;
            pthread_join(th[i], &v);
            ok += (long)v;
        }
        printf("reads %ld\n", ok);
        return 0;
    }
    if (!strcmp(argv[1], "poll")) {
        int p[2];
        if (pipe(p))
            return 1;
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        long empty = 0;
        for (long i = 0; i < n; i++)
            empty += poll(&pf, 1, 0) == 0;
        printf("empty %ld\n", empty);
        return 0;
    }
    return 2;
}
