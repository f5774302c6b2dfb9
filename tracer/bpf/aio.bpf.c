/* aio.bpf.c — Linux AIO requests followed from io_submit to their reap.
 *
 * io_submit's iocb pointer array and the io_event array filled by
 * io_getevents/io_pgetevents are user memory of the traced process, read with
 * bpf_probe_read_user; io_event.obj is the iocb pointer, the match key.
 * A request never reaped stays in aio_inflight and is reported by user space
 * at the end as "completion not observed", never with an invented time; one
 * whose iocb is resubmitted first was reaped from the user-space ring and is
 * emitted as not observed at the resubmission.
 */

struct iot_iocb {               /* uapi struct iocb, x86-64/arm64 little-endian */
    __u64 aio_data;
    __u32 aio_key;
    __u32 aio_rw_flags;
    __u16 aio_lio_opcode;
    __s16 aio_reqprio;
    __u32 aio_fildes;
    __u64 aio_buf;
    __u64 aio_nbytes;
    __s64 aio_offset;
    __u64 aio_reserved2;
    __u32 aio_flags;
    __u32 aio_resfd;
};

struct iot_io_event {           /* uapi struct io_event */
    __u64 data;
    __u64 obj;
    __s64 res;
    __s64 res2;
};

struct iot_aio_key {
    __u64 iocb;
    __u32 tgid;
    __u32 pad;
};

struct iot_aio_req {
    __u64 submit_ns;
    __u64 aio_data;
    __u64 nbytes;
    __s64 offset;
    __s64 fd;
    __u32 tid;
    __u16 opcode;
    __u16 pad;
};

BPF_HASH(aio_inflight, struct iot_aio_key, struct iot_aio_req, IOT_MAX_INFLIGHT);

static __always_inline void iot_aio_emit(struct iot_aio_key *k, struct iot_aio_req *r,
                                         __u64 end_ns, __s64 res, __u32 flags) {
    struct iotrace_event *e = iot_reserve(IOT_PROBE_AIO);
    if (!e)
        return;
    e->ts_ns = r->submit_ns;
    e->end_ns = end_ns;
    e->kdone_ns = 0;
    e->off_cpu_ns = 0;
    e->runq_ns = 0;
    e->ret = res;
    e->fd = r->fd;
    e->size = r->nbytes;
    e->offset = (__u64)r->offset;
    e->key = k->iocb;
    e->user_data = r->aio_data;
    e->pid = k->tgid;
    e->tid = r->tid;
    e->kind = IOT_KIND_AIO_REQUEST;
    e->op = r->opcode;
    e->flags = flags;
    iot_submit(e);
}

/* Per-call loop state. bcc cannot pass a callback to bpf_loop, so these are
 * bounded loops the verifier walks; the body stays small for that reason. */
struct iot_aio_loop {
    __u64 uptr;
    __u64 ts;
    __u32 tgid;
    __u32 tid;
};

static __always_inline int iot_aio_submit_one(struct iot_aio_loop *c, __u32 i) {
    __u64 ptr = 0;
    if (bpf_probe_read_user(&ptr, sizeof(ptr), (const char *)c->uptr + (__u64)i * 8) != 0)
        return 1;
    struct iot_iocb cb = {};
    if (bpf_probe_read_user(&cb, sizeof(cb), (const void *)ptr) != 0)
        return 0;
    struct iot_aio_key k = {.iocb = ptr, .tgid = c->tgid};
    struct iot_aio_req r = {
        .submit_ns = c->ts,
        .aio_data = cb.aio_data,
        .nbytes = cb.aio_nbytes,
        .offset = cb.aio_offset,
        .fd = cb.aio_fildes,
        .tid = c->tid,
        .opcode = cb.aio_lio_opcode,
    };
    /* An iocb can only be resubmitted once its previous submission completed.
     * Still in the map, that submission was reaped without io_getevents (from
     * the ring in user memory, as fio --userspace_reap and some libraries do):
     * record it as a request whose completion was not observed, with no
     * invented time, and follow the new submission in its place. */
    struct iot_aio_req *old = aio_inflight.lookup(&k);
    if (old) {
        iot_aio_emit(&k, old, 0, 0, IOT_F_NOT_OBSERVED);
        iot_counter(IOT_C_AIO_RESUBMIT);
        *old = r;
    } else if (aio_inflight.insert(&k, &r) != 0) {
        iot_counter(IOT_C_AIO_FULL);
    }
    return 0;
}

static __always_inline int iot_aio_reap_one(struct iot_aio_loop *c, __u32 i) {
    struct iot_io_event ev = {};
    if (bpf_probe_read_user(&ev, sizeof(ev), (const char *)c->uptr + (__u64)i * sizeof(ev)) != 0)
        return 1;
    struct iot_aio_key k = {.iocb = ev.obj, .tgid = c->tgid};
    struct iot_aio_req *r = aio_inflight.lookup(&k);
    if (!r) {
        iot_counter(IOT_C_AIO_NO_SUBMIT);
        return 0;
    }
    iot_aio_emit(&k, r, c->ts, ev.res, 0);
    aio_inflight.delete(&k);
    return 0;
}

static __always_inline void iot_aio_loop(struct iot_call *t, long ret, __u64 ts, int reap) {
    __u64 id = bpf_get_current_pid_tgid();
    struct iot_aio_loop c = {.uptr = t->uptr, .ts = ts, .tgid = id >> 32, .tid = (__u32)id};
    if (ret > IOT_MAX_AIO_BATCH)
        iot_counter(IOT_C_AIO_TRUNC);
    for (__u32 i = 0; i < IOT_MAX_AIO_BATCH; i++) {
        if (i >= ret)
            break;
        if (reap ? iot_aio_reap_one(&c, i) : iot_aio_submit_one(&c, i))
            break;
    }
}

static __always_inline int iot_exit_io_submit(__u32 op, long ret) {
    struct iot_call *t = iot_exit_state(op);
    if (!t)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    if (ret > 0)
        iot_aio_loop(t, ret, t->enter_ns, 0);
    iot_emit_call(t, op, ret, now);
    t->enter_ns = 0;
    return 0;
}

static __always_inline int iot_exit_io_getevents(__u32 op, long ret) {
    struct iot_call *t = iot_exit_state(op);
    if (!t)
        return 0;
    __u64 now = bpf_ktime_get_ns();
    if (ret > 0)
        iot_aio_loop(t, ret, now, 1);
    iot_emit_call(t, op, ret, now);
    t->enter_ns = 0;
    return 0;
}
