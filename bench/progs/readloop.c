/* readloop.c — N one-byte read()s of /dev/zero (or pread64 of a cached file
 * with -p FILE) in a tight loop; prints CPU ns and wall ns per call measured
 * around the loop. CPU time (the thread's own, which includes the BPF programs
 * that run inside its syscalls) is immune to other load on a shared machine.
 * With -g it waits for SIGUSR1 before starting, so a tracer can add its pid. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = 1000000;
    const char *file = NULL;
    int gate = 0, opt;
    while ((opt = getopt(argc, argv, "n:p:g")) != -1) {
        if (opt == 'n') n = atol(optarg);
        else if (opt == 'p') file = optarg;
        else if (opt == 'g') gate = 1;
    }
    if (gate) {
        sigset_t set;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigprocmask(SIG_BLOCK, &set, NULL);
        printf("ready\n");
        fflush(stdout);
        sigwait(&set, &sig);
    }
    int fd = open(file ? file : "/dev/zero", O_RDONLY);
    if (fd < 0) { perror("open"); return 1; }
    char buf[1];
    double t0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
    if (file) {
        for (long i = 0; i < n; i++) if (pread(fd, buf, 1, 0) != 1) return 1;
    } else {
        for (long i = 0; i < n; i++) if (read(fd, buf, 1) != 1) return 1;
    }
    double t1 = now(CLOCK_MONOTONIC), c1 = now(CLOCK_THREAD_CPUTIME_ID);
    printf("%.1f %.1f\n", (c1 - c0) / n, (t1 - t0) / n);
    return 0;
}
