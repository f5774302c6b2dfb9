/* block.bpf.c — block-device requests of traced threads, so that user space
 * can say how much of a call was spent at the device.
 *
 * Only tracepoint arguments are read (the headers are not the running
 * kernel's). A request is charged to the traced thread that inserted it into
 * the I/O scheduler (block_rq_insert) or, without a scheduler, issued it to
 * the driver (block_rq_issue): for direct and synchronous I/O, and for page
 * cache reads with their readahead, that is the thread whose call waits for
 * it. With mq-deadline the dispatch may run later in a kernel worker, so the
 * owner is taken at insert and the device time from issue. Writeback of
 * buffered writes is issued by flusher threads and so is not charged to
 * anyone: a buffered write's cost is its copy into the page cache.
 *
 * The completion runs in interrupt context and names the request only by
 * (dev, sector): that is the key. One IOT_KIND_BLOCK record per completed
 * request of a traced thread: ts = issue, end = completion, kdone = insert
 * (0 without a scheduler), size = bytes, fd = dev_t, offset = sector,
 * op = IOT_BLK_*, ret = the completion's error.
 */

struct iot_blk_key {
    __u32 dev;
    __u32 pad;
    __u64 sector;
};

struct iot_blk {
    __u64 insert_ns;
    __u64 issue_ns;   /* 0 until issued */
    __u32 pid;
    __u32 tid;
    __u32 bytes;
    __u16 op;
    __u16 pad;
};

BPF_HASH(blk_inflight, struct iot_blk_key, struct iot_blk, IOT_MAX_BLOCK);

/* rwbs is "R", "W", "FWS", "D", "N", ... : the first letter is the operation */
static __always_inline __u16 iot_blk_op(char c) {
    switch (c) {
    case 'R': return IOT_BLK_READ;
    case 'W': return IOT_BLK_WRITE;
    case 'F': return IOT_BLK_FLUSH;
    case 'D': return IOT_BLK_DISCARD;
    }
    return IOT_BLK_OTHER;
}

/* The request's owner: the current thread if traced. */
static __always_inline int iot_blk_own(struct iot_blk_key *k, __u64 insert_ns, __u64 issue_ns,
                                       __u32 bytes, char rw) {
    __u64 id = bpf_get_current_pid_tgid();
    if (!iot_traced(id >> 32))
        return 0;
    struct iot_blk b = {
        .insert_ns = insert_ns,
        .issue_ns = issue_ns,
        .pid = id >> 32,
        .tid = (__u32)id,
        .bytes = bytes,
        .op = iot_blk_op(rw),
    };
    if (blk_inflight.update(k, &b) != 0)
        iot_counter(IOT_C_BLOCK_FULL);
    return 0;
}

#if IOT_BLOCK_INSERT
TRACEPOINT_PROBE(block, block_rq_insert) {
    IOT_GUARD;
    struct iot_blk_key k = {.dev = args->dev, .sector = args->sector};
    return iot_blk_own(&k, bpf_ktime_get_ns(), 0, args->bytes, args->rwbs[0]);
}
#endif

TRACEPOINT_PROBE(block, block_rq_issue) {
    IOT_GUARD;
    struct iot_blk_key k = {.dev = args->dev, .sector = args->sector};
    struct iot_blk *b = blk_inflight.lookup(&k);
    if (b) {
        /* inserted by a traced thread (a requeued request keeps its first issue) */
        if (!b->issue_ns)
            b->issue_ns = bpf_ktime_get_ns();
        return 0;
    }
    return iot_blk_own(&k, 0, bpf_ktime_get_ns(), args->bytes, args->rwbs[0]);
}

TRACEPOINT_PROBE(block, block_rq_complete) {
    IOT_GUARD;
    struct iot_blk_key k = {.dev = args->dev, .sector = args->sector};
    struct iot_blk *b = blk_inflight.lookup(&k);
    if (!b)
        return 0;  /* not a traced thread's request (most of them, system-wide) */
    if (!b->issue_ns) {
        /* inserted, never seen issued: no device time to give */
        iot_counter(IOT_C_BLOCK_NO_ISSUE);
        blk_inflight.delete(&k);
        return 0;
    }
    struct iotrace_event *e = iot_reserve(IOT_PROBE_BLOCK);
    if (e) {
        e->ts_ns = b->issue_ns;
        e->end_ns = bpf_ktime_get_ns();
        e->kdone_ns = b->insert_ns;
        e->off_cpu_ns = 0;
        e->runq_ns = 0;
        e->ret = args->error;
        e->fd = args->dev;
        e->size = b->bytes;
        e->offset = args->sector;
        e->key = 0;
        e->user_data = 0;
        e->pid = b->pid;
        e->tid = b->tid;
        e->kind = IOT_KIND_BLOCK;
        e->op = b->op;
        e->flags = 0;
        iot_submit(e);
    }
    blk_inflight.delete(&k);
    return 0;
}
