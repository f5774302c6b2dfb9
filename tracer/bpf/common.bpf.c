/* common.bpf.c — maps, the pid filter, per-thread state, counters and the
 * scheduler and lifecycle probes shared by every iotrace program.
 *
 * Only tracepoint arguments (laid out from tracefs format files) and user
 * memory of traced processes are read: never a kernel struct, because the
 * headers bcc compiles against may not match the running kernel.
 *
 * program.py prepends iotrace.h and the IOT_* configuration defines.
 */

/* Consecutive calls of one thread with one signature (syscall, fd, result
 * class), folded into one SYSCALL_RUN record (layout in iotrace.h) instead of
 * one record each. EAGAIN retries and multiplexer calls that found nothing
 * ready are always folded; any other repeat only while the ring buffer is
 * filling up. The count is exact; per-call durations survive as min, max, sum
 * and a log2 histogram. A run is emitted when a call of another signature
 * comes, when it reaches IOT_RUN_MAX_CALLS or IOT_RUN_MAX_SPAN_NS, when the
 * thread is switched out, and when it exits; user space reads what is left
 * of live threads at the end (bcc_source.pending_runs). */
struct iot_run {
    __u64 first_ns;     /* the first call's enter; 0 = no run pending */
    __u64 last_ns;      /* the last call's exit */
    __u64 dur_ns;       /* summed durations */
    __u64 off_cpu_ns;
    __u64 runq_ns;
    __s64 ret;          /* summed results (>= 0), or the errno all calls failed with */
    __s64 fd;
    __u64 size;         /* summed sizes asked */
    __u64 offset;       /* the first call's (a run of one is emitted as a plain call) */
    __u32 count;
    __u32 min_ns;
    __u32 max_ns;
    __u16 op;
    __u8 base;          /* hist[i] counts calls with floor(log2(ns)) == base + i
                           (hist[0] and hist[7] also take what is below / above) */
    __u8 pressure;      /* folded (also) because the ring was filling up */
    __u64 hist;         /* 8 one-byte buckets, byte i = bucket i: a run holds at most
                           IOT_RUN_MAX_CALLS (255) calls, so a byte never carries over */
};

/* Per-call state lives in task-local storage: the enter/exit hot path then
 * costs no hash lookup. Only traced threads ever get an entry. */
struct iot_call {
    __u64 enter_ns;     /* 0 when not inside a traced syscall */
    __u64 fd;
    __u64 size;
    __u64 offset;
    __u64 uptr;         /* user pointer kept from enter (iocb array, io_event array) */
    __u64 id;           /* pid_tgid of the task, kept from its first call */
    __u32 op;
    __u32 went_off;     /* switched out during this call: see iot_thread */
    __s64 last_fd;      /* signature of the thread's previous call: a repeat of it */
    __s64 last_cls;     /* may be folded under ring pressure */
    __u32 last_op;
    __u16 tick;         /* calls since the ring's fill was last looked at */
    __u8 pressed;       /* what that look found */
    __u8 pad;
    struct iot_run run;
};

/* Scheduler state of a traced thread, keyed by tid, because sched_switch and
 * sched_wakeup name the woken / incoming thread only by its tid. A plain hash
 * (not LRU): an entry is freed at thread exit, and a failed insert is counted. */
struct iot_thread {
    __u64 off_cpu_ns;   /* accumulated inside the current call */
    __u64 runq_ns;
    __u64 out_ns;       /* switched out at; 0 while on CPU */
    __u64 wake_ns;      /* woken at, after out_ns; 0 if not woken yet */
    __u32 op;           /* the traced call it was switched out in; 0 = none */
    __u32 preempted;    /* switched out while runnable */
    __u32 tgid;         /* its process: sched_switch names the incoming thread by tid only */
    __u32 pad0;
    __u64 fault_ns;     /* the last user page fault began at (faults.bpf.c) */
    __u64 fault_addr;
    __u64 fault_off_ns; /* off CPU outside traced calls since fault_ns */
    __u64 fault_runq_ns;
    __u32 pad;
};

BPF_RINGBUF_OUTPUT(events, IOT_RINGBUF_PAGES);
BPF_HASH(pids, __u32, __u8, IOT_MAX_PIDS);            /* traced tgids */
BPF_HASH(threads, __u32, struct iot_thread, IOT_MAX_THREADS);
BPF_TASK_STORAGE(calls, struct iot_call);

/* The off switch: iot_ctl[0] = 1 as the recording ends, so that every probe
 * stops at once and what the maps hold is final. Taking the probes down is
 * slow (closing each perf event waits for a grace period, serialised in the
 * kernel: 40-70 ms apiece on a busy 2-vCPU VM, seconds for 90), so it happens
 * after iotrace has gone (bcc_source.BpfProgram.detach). Every probe starts
 * with IOT_GUARD; tests/unit/test_program.py checks that none is without. */
BPF_ARRAY(iot_ctl, __u32, 1);
static __always_inline int iot_off(void) {
    __u32 k = 0;
    __u32 *v = iot_ctl.lookup(&k);
    return v && *v;
}
#define IOT_GUARD if (iot_off()) return 0

/* Counters, per CPU so the hot path never contends; user space sums them. */
BPF_PERCPU_ARRAY(lost, __u64, IOT_MAX_PROBES);        /* ring buffer full, per probe */
BPF_PERCPU_ARRAY(unmatched_exit, __u64, IOT_MAX_PROBES);  /* exit without its enter */
BPF_PERCPU_ARRAY(unmatched_enter, __u64, IOT_MAX_PROBES); /* enter whose exit never came */
#define IOT_C_THREADS_FULL   0   /* thread map full: a thread went untraced */
#define IOT_C_PIDS_FULL      1   /* pid map full: a child went unfollowed */
#define IOT_C_AIO_FULL       2   /* AIO in-flight map full: request untracked */
#define IOT_C_AIO_RESUBMIT   3   /* iocb resubmitted unreaped: reaped from the user-space ring */
#define IOT_C_AIO_NO_SUBMIT  4   /* reaped event whose submission was not seen */
#define IOT_C_AIO_TRUNC      5   /* iocbs/events beyond the per-call loop bound */
#define IOT_C_URING_FULL     6
#define IOT_C_URING_NO_SUBMIT 7
#define IOT_C_PAIO_FULL      8   /* POSIX AIO in-flight map full */
#define IOT_C_BELOW_FULL     9   /* --min-latency counts map full (syscalls.bpf.c) */
#define IOT_C_FD_FULL        10   /* fd-table call state not stored: a change unseen */
#define IOT_C_BLOCK_FULL     11  /* block request map full: a request not charged */
#define IOT_C_BLOCK_NO_ISSUE 12  /* block request completed, its issue not seen */
#define IOT_C_N              16
BPF_PERCPU_ARRAY(counters, __u64, IOT_C_N);

static __always_inline void iot_lost_n(__u32 probe, __u64 n) {
    __u64 *v = lost.lookup(&probe);
    if (v) *v += n;
}

static __always_inline void iot_lost(__u32 probe) {
    iot_lost_n(probe, 1);
}

static __always_inline void iot_counter(__u32 idx) {
    __u64 *v = counters.lookup(&idx);
    if (v) *v += 1;
}

/* Multiplexer syscalls (events.SYSCALLS family "mux"), as a bit mask of ops. */
static __always_inline int iot_is_mux(__u32 op) {
    if (op < 64)
        return (IOT_MUX_OPS_LO >> op) & 1;
    return op < 128 && ((IOT_MUX_OPS_HI >> (op - 64)) & 1);
}

static __always_inline int iot_traced(__u32 tgid) {
#if IOT_TRACE_ALL
    return tgid != IOT_SELF_TGID;
#else
    return pids.lookup(&tgid) != NULL;
#endif
}

static __always_inline struct iotrace_event *iot_reserve(__u32 probe) {
    struct iotrace_event *e = events.ringbuf_reserve(sizeof(struct iotrace_event));
    if (!e)
        iot_lost(probe);
    return e;
}

static __always_inline void iot_submit(struct iotrace_event *e) {
    /* No wakeup: user space drains on a timer, which cuts the cost per event
     * roughly threefold (DESIGN.md). */
    events.ringbuf_submit(e, BPF_RB_NO_WAKEUP);
}

/* Bytes in the ring not yet consumed are over the mark where repeats fold.
 * bcc has no method for bpf_ringbuf_query: the ring is the program's first
 * map, so its (fake, patched at load) fd is -1; were it another map the
 * verifier would refuse the program at load, never let it pass silently. */
static __always_inline int iot_ring_pressed(void) {
    return bpf_ringbuf_query((void *)bpf_pseudo_fd(1, -1), BPF_RB_AVAIL_DATA) >
           IOT_PRESSURE_BYTES;
}

/* The ring's fill as this thread last saw it, looked at again every 16th call:
 * the query costs about as much as a record (~25 ns here), and a storm that
 * needs folding is thousands of calls long. */
static __always_inline int iot_pressed(struct iot_call *c) {
    if ((c->tick++ & 15) == 0)
        c->pressed = iot_ring_pressed();
    return c->pressed;
}

/* Emit the pending run, if any: a plain SYSCALL record when it holds one call,
 * else a SYSCALL_RUN record. */
static __always_inline void iot_run_flush(struct iot_run *r, __u64 id) {
    if (!r->first_ns)
        return;
    struct iotrace_event *e = events.ringbuf_reserve(sizeof(struct iotrace_event));
    if (!e) {
        iot_lost_n(r->op, r->count);  /* lost counts calls, not records */
        r->first_ns = 0;
        return;
    }
    e->ts_ns = r->first_ns;
    e->end_ns = r->last_ns;
    e->off_cpu_ns = r->off_cpu_ns;
    e->runq_ns = r->runq_ns;
    e->ret = r->ret;
    e->fd = r->fd;
    e->size = r->size;
    e->pid = id >> 32;
    e->tid = (__u32)id;
    e->op = r->op;
    if (r->count == 1) {
        e->kdone_ns = 0;
        e->offset = r->offset;
        e->key = 0;
        e->user_data = 0;
        e->kind = IOT_KIND_SYSCALL;
        e->flags = 0;
    } else {
        e->kdone_ns = r->dur_ns;
        e->offset = r->count;
        e->key = (__u64)r->min_ns | ((__u64)r->max_ns << 32);
        e->user_data = r->hist;
        e->kind = IOT_KIND_SYSCALL_RUN;
        e->flags = ((__u32)r->base << IOT_RUN_BASE_SHIFT) | (r->pressure ? IOT_F_PRESSURE : 0);
    }
    r->first_ns = 0;
    iot_submit(e);
}

/* The current thread's call state; created (when `create`) only for traced
 * threads. The task pointer is only handed to the helper, never read. */
static __always_inline struct iot_call *iot_call_get(int create) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    return calls.task_storage_get(task, 0, create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
}

/* The scheduler state of a traced thread, created on first sight. NULL for
 * threads of processes that are not traced. */
static __always_inline struct iot_thread *iot_thread_get(__u64 pid_tgid) {
    __u32 tid = (__u32)pid_tgid;
    struct iot_thread *t = threads.lookup(&tid);
    if (t)
        return t;
    if (!iot_traced(pid_tgid >> 32))
        return NULL;
    struct iot_thread zero = {.tgid = pid_tgid >> 32};
    if (threads.insert(&tid, &zero) != 0) {
        iot_counter(IOT_C_THREADS_FULL);
        return NULL;
    }
    return threads.lookup(&tid);
}

/* ---- scheduler: off-CPU time inside calls, and per-thread intervals ---- */

TRACEPOINT_PROBE(sched, sched_switch) {
    IOT_GUARD;
    __u64 now = bpf_ktime_get_ns();
    __u32 prev = args->prev_pid;
    __u32 next = args->next_pid;
    /* current is still prev here, so its tgid and its call state are at hand */
    struct iot_thread *p = prev ? iot_thread_get(bpf_get_current_pid_tgid()) : NULL;
    if (p) {
        struct iot_call *c = iot_call_get(0);
        p->out_ns = now;
        p->wake_ns = 0;
        /* low byte 0 = TASK_RUNNING: preempted, not asleep */
        p->preempted = (args->prev_state & 0xff) == 0;
        p->op = 0;
        if (c) {
            if (c->enter_ns) {
                p->op = c->op;
                c->went_off = 1;
            }
            /* a thread off CPU makes no calls: what it folded so far is done */
            iot_run_flush(&c->run, c->id);
        }
    }
    struct iot_thread *n = next ? threads.lookup(&next) : NULL;
    if (!n || !n->out_ns)
        return 0;
    __u64 out = n->out_ns;
    __u64 off = now - out;
    __u64 runq = n->preempted ? off : (n->wake_ns ? now - n->wake_ns : 0);
    n->out_ns = 0;
    if (n->op) {
        n->off_cpu_ns += off;
        n->runq_ns += runq;
    }
#if IOT_FAULTS
    /* outside traced calls: the page fault's, if it turns out a major one */
    else if (n->fault_ns) {
        n->fault_off_ns += off;
        n->fault_runq_ns += runq;
    }
#endif
#if IOT_OFF_CPU_RECORDS
    struct iotrace_event *e = iot_reserve(IOT_PROBE_SCHED);
    if (!e)
        return 0;
    __builtin_memset(e, 0, sizeof(*e));
    e->ts_ns = out;
    e->end_ns = now;
    e->runq_ns = runq;
    e->off_cpu_ns = off;
    e->fd = -1;
    e->tid = next;
    e->pid = n->tgid;
    e->kind = IOT_KIND_OFF_CPU;
    e->op = n->op;
    iot_submit(e);
#endif
    return 0;
}

TRACEPOINT_PROBE(sched, sched_wakeup) {
    IOT_GUARD;
    __u32 tid = args->pid;
    struct iot_thread *t = threads.lookup(&tid);
    if (t && t->out_ns && !t->wake_ns)
        t->wake_ns = bpf_ktime_get_ns();
    return 0;
}

/* ---- lifecycle: follow children, free state at exit ---- */

static __always_inline void iot_task_event(__u32 pid, __u32 tid, __u16 op, __s64 parent) {
    struct iotrace_event *e = iot_reserve(IOT_PROBE_TASK);
    if (!e)
        return;
    __builtin_memset(e, 0, sizeof(*e));
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = pid;
    e->tid = tid;
    e->fd = parent;
    e->kind = IOT_KIND_TASK;
    e->op = op;
    /* comm rides in key + user_data (16 bytes) */
    bpf_get_current_comm(&e->key, 16);
    iot_submit(e);
}

TRACEPOINT_PROBE(sched, sched_process_fork) {
    IOT_GUARD;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!iot_traced(tgid))
        return 0;
    /* child_pid is a new process's tgid or a new thread's tid; either way an
     * entry here makes the child traced (a thread's entry is simply unused). */
    __u32 child = args->child_pid;
    /* iotrace never traces itself, whatever -p asked for. */
    if (child == IOT_SELF_TGID)
        return 0;
    __u8 one = 1;
    if (pids.update(&child, &one) != 0)
        iot_counter(IOT_C_PIDS_FULL);
    return 0;
}

/* The child's own return from fork/clone tells a thread (tgid != tid) from a
 * process, without reading task_struct. */
static __always_inline int iot_child_started(long ret) {
    if (ret != 0)
        return 0;
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32, tid = (__u32)id;
    if (!iot_traced(tgid))
        return 0;
    __s64 parent = -1;
    iot_task_event(tgid, tid, tgid == tid ? IOT_TASK_FORK : IOT_TASK_THREAD, parent);
    return 0;
}
TRACEPOINT_PROBE(syscalls, sys_exit_clone) { IOT_GUARD; return iot_child_started(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_clone3) { IOT_GUARD; return iot_child_started(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_fork) { IOT_GUARD; return iot_child_started(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_vfork) { IOT_GUARD; return iot_child_started(args->ret); }

TRACEPOINT_PROBE(sched, sched_process_exec) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    if (!iot_traced(id >> 32))
        return 0;
    /* a thread that execs takes the group leader's pid */
    struct iot_call *c = iot_call_get(0);
    if (c)
        c->id = id;
    iot_task_event(id >> 32, (__u32)id, IOT_TASK_EXEC, -1);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tgid = id >> 32, tid = (__u32)id;
    struct iot_call *c = iot_call_get(0);
    if (!c && !iot_traced(tgid))
        return 0;
    if (c && c->enter_ns) {
        /* killed inside a call: its exit will never come */
        __u32 op = c->op;
        __u64 *v = unmatched_enter.lookup(&op);
        if (v) *v += 1;
    }
    if (c)
        iot_run_flush(&c->run, id);
    /* task storage goes with the task; the tid-keyed state must be freed */
    threads.delete(&tid);
    iot_task_event(tgid, tid, IOT_TASK_EXIT, -1);
    /* The last thread of the group is going: forget the pid, so that a
     * recycled pid is not traced by mistake. */
    if (args->group_dead)
        pids.delete(&tgid);
    return 0;
}
