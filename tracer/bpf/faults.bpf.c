/* faults.bpf.c — major page faults: the I/O of programs that read files
 * through a memory mapping, which make no read call at all.
 *
 * exceptions:page_fault_user marks the start of each user page fault of a
 * traced thread (it has no exit event). The kernel accounts a fault as major
 * (it had to read the page) at its very end, in mm_account_fault, with the
 * perf software event PAGE_FAULTS_MAJ, the count getrusage's ru_majflt shows;
 * bcc_source.py attaches iot_major_fault to that event on every CPU. One
 * record per major fault, shaped as a call of the pseudo-syscall
 * `page_fault`, runs from the fault to its end, with the off-CPU time the
 * scheduler probe gathered in between.
 */

/* uapi struct bpf_perf_event_data, laid out here: its header clashes with the
 * typedefs program.py gives the tracepoint arguments. The regs are the
 * architecture's user_pt_regs (program.py sets their size in words). */
struct iot_perf_event_data {
    __u64 regs[IOT_PT_REGS_WORDS];
    __u64 sample_period;
    __u64 addr;
};

TRACEPOINT_PROBE(exceptions, page_fault_user) {
    IOT_GUARD;
    __u64 id = bpf_get_current_pid_tgid();
    struct iot_thread *t = iot_thread_get(id);
    if (!t)
        return 0;
    t->fault_ns = bpf_ktime_get_ns();
    t->fault_addr = args->address;
    t->fault_off_ns = 0;
    t->fault_runq_ns = 0;
    t->tgid = id >> 32;
    return 0;
}

int iot_major_fault(struct iot_perf_event_data *ctx) {
    IOT_GUARD;
    __u32 tid = (__u32)bpf_get_current_pid_tgid();
    struct iot_thread *t = threads.lookup(&tid);
    /* A major fault at another address is taken in the kernel (a call copying
     * to a mapped buffer): that time is the call's. */
    if (!t || !t->fault_ns || ctx->addr != t->fault_addr)
        return 0;
    struct iotrace_event *e = iot_reserve(IOT_OP_FAULT);
    if (e) {
        e->ts_ns = t->fault_ns;
        e->end_ns = bpf_ktime_get_ns();
        e->kdone_ns = 0;
        e->off_cpu_ns = t->fault_off_ns;
        e->runq_ns = t->fault_runq_ns;
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
    return 0;
}
