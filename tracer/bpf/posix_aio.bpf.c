/* posix_aio.bpf.c — glibc POSIX AIO requests, timed by uprobes from
 * aio_read/aio_write to the aio_return that collects them.
 *
 * glibc runs the I/O on helper threads doing pread64/pwrite64 (recorded as
 * ordinary calls of the same process); these probes add the request view the
 * program itself has. The aiocb is user memory of the traced process; its
 * layout is glibc's x86-64 ABI (IOT_AIOCB_OFFSET_AT: aio_offset).
 */
#include <uapi/linux/ptrace.h>

struct iot_aiocb_head {
    __s32 aio_fildes;
    __s32 aio_lio_opcode;
    __s32 aio_reqprio;
    __s32 pad;
    __u64 aio_buf;
    __u64 aio_nbytes;
};

struct iot_paio_key {
    __u64 aiocb;
    __u32 tgid;
    __u32 pad;
};

struct iot_paio_req {
    __u64 submit_ns;
    __s64 fd;
    __u64 nbytes;
    __u64 offset;
    __u32 tid;
    __u16 opcode;
    __u16 pad;
};

BPF_HASH(paio_inflight, struct iot_paio_key, struct iot_paio_req, IOT_MAX_INFLIGHT);
BPF_HASH(paio_returning, __u64, __u64, IOT_MAX_THREADS);   /* pid_tgid -> aiocb */

static __always_inline int iot_paio_submit(struct pt_regs *ctx, __u16 opcode) {
    __u64 id = bpf_get_current_pid_tgid();
    if (!iot_traced(id >> 32))
        return 0;
    __u64 cb = PT_REGS_PARM1(ctx);
    struct iot_aiocb_head head = {};
    __u64 offset = 0;
    if (bpf_probe_read_user(&head, sizeof(head), (const void *)cb) != 0)
        return 0;
    bpf_probe_read_user(&offset, sizeof(offset), (const char *)cb + IOT_AIOCB_OFFSET_AT);
    struct iot_paio_key k = {.aiocb = cb, .tgid = id >> 32};
    struct iot_paio_req r = {
        .submit_ns = bpf_ktime_get_ns(),
        .fd = head.aio_fildes,
        .nbytes = head.aio_nbytes,
        .offset = offset,
        .tid = (__u32)id,
        .opcode = opcode,
    };
    if (paio_inflight.update(&k, &r) != 0)
        iot_counter(IOT_C_PAIO_FULL);
    return 0;
}

int iot_paio_read(struct pt_regs *ctx) { IOT_GUARD; return iot_paio_submit(ctx, 0); }
int iot_paio_write(struct pt_regs *ctx) { IOT_GUARD; return iot_paio_submit(ctx, 1); }

int iot_paio_return_enter(struct pt_regs *ctx) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    if (!iot_traced(id >> 32))
        return 0;
    __u64 cb = PT_REGS_PARM1(ctx);
    paio_returning.update(&id, &cb);
    return 0;
}

int iot_paio_return_exit(struct pt_regs *ctx) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    __u64 *cbp = paio_returning.lookup(&id);
    if (!cbp)
        return 0;
    struct iot_paio_key k = {.aiocb = *cbp, .tgid = id >> 32};
    paio_returning.delete(&id);
    struct iot_paio_req *r = paio_inflight.lookup(&k);
    if (!r)
        return 0;   /* aio_return of a request submitted before tracing, or called twice */
    struct iotrace_event *e = iot_reserve(IOT_PROBE_POSIX_AIO);
    if (e) {
        e->ts_ns = r->submit_ns;
        e->end_ns = bpf_ktime_get_ns();
        e->kdone_ns = 0;
        e->off_cpu_ns = 0;
        e->runq_ns = 0;
        e->ret = PT_REGS_RC(ctx);
        e->fd = r->fd;
        e->size = r->nbytes;
        e->offset = r->offset;
        e->key = k.aiocb;
        e->user_data = 0;
        e->pid = k.tgid;
        e->tid = r->tid;
        e->kind = IOT_KIND_POSIX_AIO_REQUEST;
        e->op = r->opcode;
        e->flags = 0;
        iot_submit(e);
    }
    paio_inflight.delete(&k);
    return 0;
}
