/* uring.bpf.c — io_uring requests from kernel submit to kernel completion.
 *
 * Completions are reaped from shared memory without a syscall, so per-request
 * timing comes from the io_uring tracepoints, matched on `req`. Completion may
 * run in interrupt context or an io-wq worker, so it is matched through the
 * in-flight map (which only holds traced requests), not through the pid filter.
 */

struct iot_ureq {
    __u64 submit_ns;
    __u64 user_data;
    __s64 fd;
    __u32 pid;
    __u32 tid;
    __u16 opcode;
    __u16 flags;
    __u32 pad;
};

BPF_HASH(uring_inflight, __u64, struct iot_ureq, IOT_MAX_INFLIGHT);

TRACEPOINT_PROBE(io_uring, io_uring_submit_req) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    if (!iot_traced(id >> 32))
        return 0;
    __u64 req = (__u64)args->req;
    struct iot_ureq r = {
        .submit_ns = bpf_ktime_get_ns(),
        .user_data = args->user_data,
        .fd = -1,
        .pid = id >> 32,
        .tid = (__u32)id,
        .opcode = args->opcode,
    };
    if (uring_inflight.update(&req, &r) != 0)
        iot_counter(IOT_C_URING_FULL);
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_file_get) {
    IOT_GUARD;
    __u64 req = (__u64)args->req;
    struct iot_ureq *r = uring_inflight.lookup(&req);
    if (r)
        r->fd = args->fd;
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_queue_async_work) {
    IOT_GUARD;
    __u64 req = (__u64)args->req;
    struct iot_ureq *r = uring_inflight.lookup(&req);
    if (r)
        r->flags |= IOT_F_WORKER;
    return 0;
}

TRACEPOINT_PROBE(io_uring, io_uring_complete) {
    IOT_GUARD;
    __u64 req = (__u64)args->req;
    struct iot_ureq *r = uring_inflight.lookup(&req);
    if (!r) {
        if (iot_traced(bpf_get_current_pid_tgid() >> 32))
            iot_counter(IOT_C_URING_NO_SUBMIT);
        return 0;
    }
    struct iotrace_event *e = iot_reserve(IOT_PROBE_URING);
    if (e) {
        e->ts_ns = r->submit_ns;
        e->end_ns = 0;
        e->kdone_ns = bpf_ktime_get_ns();
        e->off_cpu_ns = 0;
        e->runq_ns = 0;
        e->ret = args->res;
        e->fd = r->fd;
        e->size = 0;
        e->offset = 0;
        e->key = req;
        e->user_data = r->user_data;
        e->pid = r->pid;
        e->tid = r->tid;
        e->kind = IOT_KIND_URING_REQUEST;
        e->op = r->opcode;
        e->flags = r->flags;
        iot_submit(e);
    }
    /* IORING_CQE_F_MORE: a multishot request stays in flight */
    if (!(args->cflags & 2))
        uring_inflight.delete(&req);
    return 0;
}
