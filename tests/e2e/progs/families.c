/* families.c — makes a known, prime number of calls in every syscall family
 * iotrace probes, then prints the fds it used as JSON, so an end-to-end test
 * can check that the trace holds exactly these calls.
 *
 * usage: families FILE   (FILE: a scratch file on an O_DIRECT-capable fs)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define N_WRITE 29
#define N_READ 23
#define N_PREAD 31
#define N_PWRITE 37
#define N_READV 7
#define N_WRITEV 11
#define N_PREADV 13
#define N_PWRITEV 17
#define N_PREADV2 19
#define N_PWRITEV2 5
#define N_SENDTO 7
#define N_RECVFROM 7
#define N_SENDMSG 3
#define N_RECVMSG 3
#define N_SENDMMSG 2
#define N_RECVMMSG 2
#define N_SELECT 5
#define N_PSELECT 3
#define N_POLL 7
#define N_PPOLL 11
#define N_EPOLL_WAIT 13
#define N_EPOLL_PWAIT 17
#define N_AIO_SUBMITS 7
#define N_AIO_PER_SUBMIT 3
#define N_URING 11

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: families FILE\n"); return 2; }
    char buf[8192] __attribute__((aligned(4096)));
    memset(buf, 'x', sizeof buf);
    int p[2];
    if (pipe(p)) die("pipe");
    for (int i = 0; i < N_WRITE; i++) if (write(p[1], buf, 100) != 100) die("write");
    for (int i = 0; i < N_READ; i++) if (read(p[0], buf, 100) != 100) die("read");

    int f = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (f < 0) die("open");
    for (int i = 0; i < N_PWRITE; i++) if (pwrite(f, buf, 4096, (off_t)i * 4096) != 4096) die("pwrite");
    for (int i = 0; i < N_PREAD; i++) if (pread(f, buf, 4096, (off_t)i * 4096) != 4096) die("pread");
    struct iovec iov[2] = {{buf, 10}, {buf + 100, 20}};
    for (int i = 0; i < N_WRITEV; i++) if (writev(p[1], iov, 2) != 30) die("writev");
    for (int i = 0; i < N_READV; i++) if (readv(p[0], iov, 2) != 30) die("readv");
    for (int i = 0; i < N_PWRITEV; i++) if (pwritev(f, iov, 2, 0) != 30) die("pwritev");
    for (int i = 0; i < N_PREADV; i++) if (preadv(f, iov, 2, 0) != 30) die("preadv");
    for (int i = 0; i < N_PWRITEV2; i++) if (pwritev2(f, iov, 2, 0, 0) != 30) die("pwritev2");
    for (int i = 0; i < N_PREADV2; i++) if (preadv2(f, iov, 2, 0, 0) != 30) die("preadv2");

    int s[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, s)) die("socketpair");
    for (int i = 0; i < N_SENDTO; i++) if (sendto(s[0], buf, 50, 0, NULL, 0) != 50) die("sendto");
    for (int i = 0; i < N_RECVFROM; i++) if (recvfrom(s[1], buf, 60, 0, NULL, NULL) != 50) die("recvfrom");
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
    for (int i = 0; i < N_SENDMSG; i++) if (sendmsg(s[0], &mh, 0) != 30) die("sendmsg");
    for (int i = 0; i < N_RECVMSG; i++) if (recvmsg(s[1], &mh, 0) != 30) die("recvmsg");
    struct mmsghdr mm[2] = {{.msg_hdr = mh}, {.msg_hdr = mh}};
    for (int i = 0; i < N_SENDMMSG; i++) if (sendmmsg(s[0], mm, 2, 0) != 2) die("sendmmsg");
    for (int i = 0; i < N_RECVMMSG; i++) if (recvmmsg(s[1], mm, 2, 0, NULL) != 2) die("recvmmsg");

    /* multiplexers: the pipe is readable (one byte left in it) */
    if (write(p[1], buf, 1) != 1) die("write1");
    fd_set rs;
    for (int i = 0; i < N_SELECT; i++) {
        struct timeval tv = {0, 0};
        FD_ZERO(&rs); FD_SET(p[0], &rs);
        if (select(p[0] + 1, &rs, NULL, NULL, &tv) != 1) die("select");
    }
    for (int i = 0; i < N_PSELECT; i++) {
        struct timespec ts = {0, 0};
        FD_ZERO(&rs); FD_SET(p[0], &rs);
        if (pselect(p[0] + 1, &rs, NULL, NULL, &ts, NULL) != 1) die("pselect");
    }
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    for (int i = 0; i < N_POLL; i++) if (poll(&pfd, 1, 0) != 1) die("poll");
    for (int i = 0; i < N_PPOLL; i++) {
        struct timespec ts = {0, 0};
        if (ppoll(&pfd, 1, &ts, NULL) != 1) die("ppoll");
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = p[0]}, out[4];
    if (epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &ev)) die("epoll_ctl");
    for (int i = 0; i < N_EPOLL_WAIT; i++) if (epoll_wait(ep, out, 4, 0) != 1) die("epoll_wait");
    sigset_t mask; sigemptyset(&mask);
    for (int i = 0; i < N_EPOLL_PWAIT; i++) if (epoll_pwait(ep, out, 4, 0, &mask) != 1) die("epoll_pwait");

    /* Linux AIO on O_DIRECT */
    int fd_direct = open(argv[1], O_RDONLY | O_DIRECT);
    if (fd_direct < 0) die("open O_DIRECT");
    aio_context_t ctx = 0;
    if (syscall(SYS_io_setup, 64, &ctx)) die("io_setup");
    static char abuf[N_AIO_PER_SUBMIT][4096] __attribute__((aligned(4096)));
    struct iocb cbs[N_AIO_PER_SUBMIT], *cbp[N_AIO_PER_SUBMIT];
    struct io_event evs[N_AIO_PER_SUBMIT];
    for (int r = 0; r < N_AIO_SUBMITS; r++) {
        for (int i = 0; i < N_AIO_PER_SUBMIT; i++) {
            memset(&cbs[i], 0, sizeof cbs[i]);
            cbs[i].aio_fildes = fd_direct;
            cbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
            cbs[i].aio_buf = (uint64_t)(uintptr_t)abuf[i];
            cbs[i].aio_nbytes = 4096;
            cbs[i].aio_offset = (int64_t)(r * N_AIO_PER_SUBMIT + i) % N_PWRITE * 4096;
            cbs[i].aio_data = 1000 + r * N_AIO_PER_SUBMIT + i;
            cbp[i] = &cbs[i];
        }
        if (syscall(SYS_io_submit, ctx, N_AIO_PER_SUBMIT, cbp) != N_AIO_PER_SUBMIT) die("io_submit");
        int got = 0;
        while (got < N_AIO_PER_SUBMIT) {
            long n = syscall(SYS_io_getevents, ctx, 1, N_AIO_PER_SUBMIT - got, evs, NULL);
            if (n < 0) die("io_getevents");
            for (int i = 0; i < n; i++) if (evs[i].res != 4096) die("aio res");
            got += n;
        }
    }
    syscall(SYS_io_destroy, ctx);

    /* io_uring: N_URING reads of the O_DIRECT file, one submit */
    struct io_uring ring;
    if (io_uring_queue_init(32, &ring, 0)) die("io_uring_queue_init");
    static char ubuf[N_URING][4096] __attribute__((aligned(4096)));
    for (int i = 0; i < N_URING; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fd_direct, ubuf[i], 4096, (uint64_t)i * 4096);
        sqe->user_data = 5000 + i;
    }
    if (io_uring_submit_and_wait(&ring, N_URING) != N_URING) die("io_uring_submit");
    for (int i = 0; i < N_URING; i++) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(&ring, &cqe)) die("wait_cqe");
        if (cqe->res != 4096) die("uring res");
        io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
    printf("{\"pipe_r\": %d, \"pipe_w\": %d, \"file\": %d, \"sock0\": %d, \"sock1\": %d, "
           "\"epfd\": %d, \"direct\": %d}\n", p[0], p[1], f, s[0], s[1], ep, fd_direct);
    return 0;
}
