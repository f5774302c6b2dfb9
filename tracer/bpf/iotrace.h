/* iotrace.h — the record every iotrace BPF program emits, and the constants
 * shared with user space. The Python mirror is iotrace/events.py; the unit
 * test tests/unit/test_schema.py fails when the two disagree on fields,
 * sizes or order. Every record has the same size so that a batch copied out
 * of the ring buffer can be viewed as one numpy array.
 */
#ifndef IOTRACE_H
#define IOTRACE_H

struct iotrace_event {
    __u64 ts_ns;       /* enter / submit / interval start (CLOCK_MONOTONIC) */
    __u64 end_ns;      /* exit / reap / interval end; 0 when not observed */
    __u64 kdone_ns;    /* request: kernel completion time; 0 when unknown */
    __u64 off_cpu_ns;  /* syscall: time off CPU inside the call */
    __u64 runq_ns;     /* syscall: part of off_cpu_ns spent runnable, waiting */
    __s64 ret;         /* result; negative errno on failure */
    __s64 fd;          /* file descriptor, -1 when none */
    __u64 size;        /* bytes asked, or count (nfds, maxevents, nr) */
    __u64 offset;      /* file offset, or timeout / min_nr */
    __u64 key;         /* request identity (iocb pointer, io_uring req); TASK: comm */
    __u64 user_data;   /* aio_data / io_uring user_data; TASK: comm */
    __u32 pid;         /* process id (tgid) */
    __u32 tid;         /* thread id */
    __u16 kind;        /* IOT_KIND_* */
    __u16 op;          /* syscall op, request opcode, task op or probe id */
    __u32 flags;       /* IOT_F_* */
};

#define IOT_KIND_SYSCALL            1
#define IOT_KIND_AIO_REQUEST        2
#define IOT_KIND_URING_REQUEST      3
#define IOT_KIND_OFF_CPU            4
#define IOT_KIND_TASK               5
#define IOT_KIND_LOST               6
#define IOT_KIND_POSIX_AIO_REQUEST  7
/* SYSCALL_RUN: `offset` consecutive calls of one thread with one syscall, fd
 * and result class, folded into one record (common.bpf.c struct iot_run):
 *   ts_ns, end_ns   first call's enter, last call's exit
 *   kdone_ns        summed durations       off_cpu_ns, runq_ns  summed
 *   ret             summed results (>= 0), or the errno every call failed with
 *   size            summed sizes asked     offset               number of calls
 *   key             min duration (low 32 bits) | max duration (high 32), ns
 *   user_data       8 one-byte buckets: byte i counts calls with
 *                   floor(log2(ns)) == base + i (byte 0 / 7 also below / above)
 *   flags           base in bits 8-15 (IOT_RUN_BASE_SHIFT); IOT_F_PRESSURE */
#define IOT_KIND_SYSCALL_RUN        8
/* FD: one change of a traced process's fd table (fdpath.bpf.c), at the exit of
 * the call that made it; op is an IOT_FD_*:
 *   OPEN      fd = new fd, ret = dirfd (AT_FDCWD -100), size = open flags,
 *             offset = path length; the PATH records just before it (same
 *             ts_ns and tid) hold the path
 *   PATH      IOT_PATH_CHUNK bytes of a path in end_ns .. user_data;
 *             flags = chunk index
 *   CLOSE     fd, ret = result          CLOSE_RANGE  fd .. ret, size = flags
 *   DUP       fd = new fd, ret = old fd, size = flags (O_CLOEXEC)
 *   PIPE, SOCKETPAIR   fd, ret = the two fds, size = flags,
 *             offset = family | type << 32
 *   SOCKET    fd, ret = family, size = flags, offset = type
 *   ACCEPT    fd, ret = listening fd, size = flags
 *   ANON      fd, size = flags, offset = IOT_ANON_* (what made it)
 *   SNAPSHOT  as OPEN, made in user space from /proc/PID/fd at attach
 *   CHDIR     as OPEN with fd -1: the new cwd (relative to the old one)
 *   FCHDIR    ret = the fd of the new cwd
 * Only O_CLOEXEC (02000000) of the flags matters to user space. */
#define IOT_KIND_FD                 9

/* BLOCK: one block-device request of a traced thread (block.bpf.c) */
#define IOT_KIND_BLOCK              10

#define IOT_BLK_OTHER    0
#define IOT_BLK_READ     1
#define IOT_BLK_WRITE    2
#define IOT_BLK_FLUSH    3
#define IOT_BLK_DISCARD  4

#define IOT_TASK_FORK    1
#define IOT_TASK_THREAD  2
#define IOT_TASK_EXEC    3
#define IOT_TASK_EXIT    4

#define IOT_F_WORKER        1
#define IOT_F_NOT_OBSERVED  2
#define IOT_F_ENTER_MISSED  4
#define IOT_F_INLINE        8
#define IOT_F_PRESSURE      16  /* run: repeats folded because the ring was filling */
#define IOT_F_FROM_RUN      32  /* user space only: a call laid out from a run (runs.py) */
#define IOT_F_PATH_CUT      64  /* FD: the path was longer than the kernel side reads */
#define IOT_F_PATH_UNREAD   128 /* FD: the path could not be read */
#define IOT_RUN_BASE_SHIFT  8

#define IOT_FD_OPEN         1
#define IOT_FD_PATH         2
#define IOT_FD_CLOSE        3
#define IOT_FD_CLOSE_RANGE  4
#define IOT_FD_DUP          5
#define IOT_FD_PIPE         6
#define IOT_FD_SOCKETPAIR   7
#define IOT_FD_SOCKET       8
#define IOT_FD_ACCEPT       9
#define IOT_FD_ANON         10
#define IOT_FD_SNAPSHOT     11
#define IOT_FD_CHDIR        12
#define IOT_FD_FCHDIR       13
#define IOT_ANON_EVENTFD    1
#define IOT_ANON_EPOLL      2
#define IOT_ANON_TIMERFD    3
#define IOT_ANON_SIGNALFD   4
#define IOT_ANON_MEMFD      5
#define IOT_ANON_INOTIFY    6
#define IOT_PATH_CHUNK      80  /* bytes of a path per PATH record */
#define IOT_PATH_CHUNKS     4   /* PATH records per path at most */

#define IOT_PROBE_SCHED      100
#define IOT_PROBE_TASK       101
#define IOT_PROBE_AIO        102
#define IOT_PROBE_URING      103
#define IOT_PROBE_POSIX_AIO  104
#define IOT_PROBE_FD         105
#define IOT_PROBE_BLOCK      106
#define IOT_MAX_PROBES       128

#endif /* IOTRACE_H */
