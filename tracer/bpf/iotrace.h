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
#define IOT_RUN_BASE_SHIFT  8

#define IOT_PROBE_SCHED      100
#define IOT_PROBE_TASK       101
#define IOT_PROBE_AIO        102
#define IOT_PROBE_URING      103
#define IOT_PROBE_POSIX_AIO  104
#define IOT_PROBE_BLOCK      106  /* 105 is fdpath's IOT_PROBE_FD */
#define IOT_MAX_PROBES       128

#endif /* IOTRACE_H */
