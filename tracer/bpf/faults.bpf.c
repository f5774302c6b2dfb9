/* faults.bpf.c — major page faults of memory-mapped files.
 *
 * A program that reads a mapped file makes no read calls: the kernel reads the
 * file inside page faults. exceptions:page_fault_user marks each user fault of
 * a traced thread (it has no exit event); filemap:mm_filemap_fault marks the
 * ones that reached a mapped file's fault handler (pages already in memory are
 * mostly mapped by fault-around, without it). When such a thread then sleeps
 * outside any traced call, it waits for the file (common.bpf.c sched_switch),
 * and one record, shaped as a call of the pseudo-syscall `page_fault`, runs
 * from the fault to the thread's return to a CPU, with its off-CPU time.
 * Faults served from memory without sleeping are not recorded.
 */

TRACEPOINT_PROBE(exceptions, page_fault_user) {
    __u64 id = bpf_get_current_pid_tgid();
    struct iot_thread *t = iot_thread_get(id);
    if (!t)
        return 0;
    t->fault_ns = bpf_ktime_get_ns();
    t->fault_addr = args->address;
    t->fault_file = 0;
    t->tgid = id >> 32;
    return 0;
}

TRACEPOINT_PROBE(filemap, mm_filemap_fault) {
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct iot_thread *t = threads.lookup(&tid);
    if (!t || !t->fault_ns)
        return 0;
    /* a fault taken inside a traced call (copying to a mapped buffer) is the call's */
    struct iot_call *c = iot_call_get(0);
    if (c && c->enter_ns)
        return 0;
    t->fault_file = 1;
    return 0;
}

static __always_inline void iot_fault_done(__u32 tid, struct iot_thread *t, __u64 now,
                                           __u64 off, __u64 runq) {
    struct iotrace_event *e = iot_reserve(IOT_OP_FAULT);
    if (e) {
        e->ts_ns = t->fault_ns;
        e->end_ns = now;
        e->kdone_ns = 0;
        e->off_cpu_ns = off;
        e->runq_ns = runq;
        e->ret = 0;
        e->fd = -1;
        e->size = 0;
        e->offset = t->fault_addr;
        e->key = 0;
        e->user_data = 0;
        e->pid = t->tgid;
        e->tid = tid;
        e->kind = IOT_KIND_SYSCALL;
        e->op = IOT_OP_FAULT;
        e->flags = 0;
        iot_submit(e);
    }
    t->fault_ns = 0;
}
