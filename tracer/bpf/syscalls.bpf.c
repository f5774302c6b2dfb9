/* syscalls.bpf.c — enter/exit timing of the traced syscalls.
 *
 * program.py instantiates one enter and one exit probe per syscall in
 * iotrace.events.SYSCALLS, each a one-line call into these helpers, so the
 * per-call work is the same for every syscall: one map lookup at enter and
 * one at exit, one ring-buffer record per completed call.
 */

struct iot_iovec {
    __u64 base;
    __u64 len;
};

/* Bytes asked by an iovec array (first IOT_MAX_IOV entries). */
static __always_inline __u64 iot_iov_bytes(const void *vec, __u64 vlen) {
    __u64 total = 0;
#pragma unroll
    for (int i = 0; i < IOT_MAX_IOV; i++) {
        if (i >= vlen)
            break;
        struct iot_iovec v = {};
        if (bpf_probe_read_user(&v, sizeof(v), (const char *)vec + i * sizeof(v)) != 0)
            break;
        total += v.len;
    }
    return total;
}

/* Bytes asked by a struct user_msghdr: msg_iov at offset 16, msg_iovlen at 24. */
static __always_inline __u64 iot_msghdr_bytes(const void *msg) {
    __u64 iov[2] = {};
    if (bpf_probe_read_user(iov, sizeof(iov), (const char *)msg + 16) != 0)
        return 0;
    return iot_iov_bytes((const void *)iov[0], iov[1]);
}

static __always_inline int iot_enter(__u32 op, __s64 fd, __u64 size, __u64 offset, __u64 uptr) {
    struct iot_call *c = iot_call_get(0);
    if (!c) {
        __u64 id = bpf_get_current_pid_tgid();
        if (!iot_traced(id >> 32))
            return 0;
        c = iot_call_get(1);
        if (!c) {
            iot_counter(IOT_C_THREADS_FULL);
            return 0;
        }
        c->id = id;
        c->last_op = 0;
    }
    if (c->enter_ns) {
        /* the previous call never exited (or its exit was not probed) */
        __u32 prev = c->op;
        __u64 *v = unmatched_enter.lookup(&prev);
        if (v) *v += 1;
    }
    c->enter_ns = bpf_ktime_get_ns();
    c->op = op;
    c->fd = fd;
    c->size = size;
    c->offset = offset;
    c->uptr = uptr;
    c->went_off = 0;
    return 0;
}

/* The thread's call state if it is inside `op`; counts an exit without enter. */
static __always_inline struct iot_call *iot_exit_state(__u32 op) {
    struct iot_call *c = iot_call_get(0);
    if (!c || !c->enter_ns || c->op != op) {
        if (c || iot_traced(bpf_get_current_pid_tgid() >> 32)) {
            __u64 *v = unmatched_exit.lookup(&op);
            if (v) *v += 1;
        }
        return NULL;
    }
    return c;
}

/* Off-CPU and runnable time the thread spent inside the call now ending. */
static __always_inline void iot_took_off(struct iot_call *c, __u64 *off, __u64 *runq) {
    if (!c->went_off)
        return;
    /* only calls that slept pay for the tid-keyed lookup */
    __u32 tid = (__u32)c->id;
    struct iot_thread *t = threads.lookup(&tid);
    if (t) {
        *off = t->off_cpu_ns;
        *runq = t->runq_ns;
        t->off_cpu_ns = 0;
        t->runq_ns = 0;
    }
}

#if IOT_MIN_LATENCY_NS
/* --min-latency: a call shorter than the threshold gets no record; it is
 * counted here, per process and syscall, with its duration summed, so the
 * report can say how many calls it left out. Checked before folding: only
 * calls at least that slow can fold into runs (and with a threshold at or
 * above IOT_RUN_MAX_CALL_NS none does). Requests (AIO, io_uring, POSIX AIO)
 * and page faults are not calls and are always recorded. */
struct iot_below_key {
    __u32 tgid;
    __u32 op;
};
struct iot_below_val {
    __u64 calls;
    __u64 dur_ns;
};
BPF_PERCPU_HASH(below, struct iot_below_key, struct iot_below_val, IOT_MAX_PIDS * 4);

/* 1 when the call ending now is faster than --min-latency (and so only counted). */
static __always_inline int iot_below_min(struct iot_call *c, __u32 op, __u64 now) {
    __u64 dur = now - c->enter_ns;
    if (dur >= IOT_MIN_LATENCY_NS)
        return 0;
    struct iot_below_key k = {.tgid = c->id >> 32, .op = op};
    struct iot_below_val zero = {};
    struct iot_below_val *v = below.lookup_or_try_init(&k, &zero);
    if (v) {
        v->calls += 1;
        v->dur_ns += dur;
    } else {
        iot_counter(IOT_C_BELOW_FULL);
    }
    return 1;
}
#endif

/* One record for the call now ending (after the run before it, if any). */
static __always_inline void iot_emit_full(struct iot_call *c, __u32 op, long ret, __u64 now,
                                          __u64 off, __u64 runq) {
    iot_run_flush(&c->run, c->id);
    struct iotrace_event *e = iot_reserve(op);
    if (!e)
        return;
    e->ts_ns = c->enter_ns;
    e->end_ns = now;
    e->kdone_ns = 0;
    e->off_cpu_ns = off;
    e->runq_ns = runq;
    e->ret = ret;
    e->fd = (__s64)c->fd;
    e->size = c->size;
    e->offset = c->offset;
    e->key = 0;
    e->user_data = 0;
    e->pid = c->id >> 32;
    e->tid = (__u32)c->id;
    e->kind = IOT_KIND_SYSCALL;
    e->op = op;
    e->flags = 0;
    iot_submit(e);
}

/* Calls that never fold (io_submit, io_getevents: they carry requests). */
static __always_inline void iot_emit_call(struct iot_call *c, __u32 op, long ret, __u64 now) {
    __u64 off = 0, runq = 0;
    iot_took_off(c, &off, &runq);
    c->last_op = 0;
#if IOT_MIN_LATENCY_NS
    if (iot_below_min(c, op, now))
        return;
#endif
    iot_emit_full(c, op, ret, now, off, runq);
}

/* The histogram increment for a call of `dur` ns: a shift, not an index, so the
 * verifier has no bounds to check. */
static __always_inline __u64 iot_run_bucket(struct iot_run *r, __u64 dur) {
    __u32 lg = bpf_log2((__u32)dur | 1);
    __u32 b = lg > r->base ? lg - r->base : 0;
    if (b > 7)
        b = 7;
    return 1ULL << (b * 8);
}

/* A call ends: fold it into the thread's run, start a run with it, or emit it. */
static __always_inline void iot_call_done(struct iot_call *c, __u32 op, long ret, __u64 now) {
    __u64 off = 0, runq = 0;
    iot_took_off(c, &off, &runq);
#if IOT_MIN_LATENCY_NS
    if (iot_below_min(c, op, now))
        return;
#endif
#if IOT_FOLD
    __u64 dur = now - c->enter_ns;
    __s64 fd = (__s64)c->fd;
    __s64 cls = ret < 0 ? ret : (ret > 0);
    /* always folded: retries that found nothing, and waits that found nothing */
    int idle = ret == -IOT_EAGAIN || (ret == 0 && iot_is_mux(op));
    int short_call = dur < IOT_RUN_MAX_CALL_NS;
    struct iot_run *r = &c->run;
    if (r->first_ns && short_call && r->op == op && r->fd == fd &&
        (r->ret < 0 ? r->ret : (r->ret > 0)) == cls && r->count < IOT_RUN_MAX_CALLS &&
        now - r->first_ns < IOT_RUN_MAX_SPAN_NS && (idle || iot_pressed(c))) {
        r->last_ns = now;
        r->dur_ns += dur;
        r->off_cpu_ns += off;
        r->runq_ns += runq;
        if (ret > 0)
            r->ret += ret;
        r->size += c->size;
        r->count += 1;
        if (dur < r->min_ns)
            r->min_ns = dur;
        if (dur > r->max_ns)
            r->max_ns = dur;
        r->hist += iot_run_bucket(r, dur);
        if (!idle)
            r->pressure = 1;
        return;
    }
    int repeat = c->last_op == op && c->last_fd == fd && c->last_cls == cls;
    c->last_op = op;
    c->last_fd = fd;
    c->last_cls = cls;
    if (short_call && (idle || (repeat && iot_pressed(c)))) {
        iot_run_flush(r, c->id);
        r->first_ns = c->enter_ns;
        r->last_ns = now;
        r->dur_ns = dur;
        r->off_cpu_ns = off;
        r->runq_ns = runq;
        r->ret = ret;
        r->fd = fd;
        r->size = c->size;
        r->offset = c->offset;
        r->count = 1;
        r->min_ns = dur;
        r->max_ns = dur;
        r->op = op;
        __u32 lg = bpf_log2((__u32)dur | 1);
        r->base = lg > 2 ? lg - 2 : 0;
        r->pressure = !idle;
        r->hist = iot_run_bucket(r, dur);
        return;
    }
#endif
    iot_emit_full(c, op, ret, now, off, runq);
}

static __always_inline int iot_exit(__u32 op, long ret) {
    struct iot_call *c = iot_exit_state(op);
    if (!c)
        return 0;
    iot_call_done(c, op, ret, bpf_ktime_get_ns());
    c->enter_ns = 0;
    return 0;
}
