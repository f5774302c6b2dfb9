/* fdpath.bpf.c — the fd table of traced processes, so that user space can give
 * every call's fd its path (iotrace/fdpaths.py).
 *
 * Only the calls that change the table are probed (the open family, close,
 * dup, pipe, socket, accept, anonymous-inode makers); nothing is added to the
 * read/write hot path. Each change is one FD record (Kind 9, layout in
 * iotrace.h) at the call's exit, when the result says the change happened; an
 * open's path rides in PATH records emitted just before it.
 *
 * The path is read at exit, from the pointer kept at enter, as bcc's
 * opensnoop does: the kernel has just copied the name, so its page is
 * resident, where a read at enter fails on a page not yet faulted in.
 */

struct iot_fdcall {
    __u64 uptr;     /* user pointer kept from enter: the path, or a pipe's int[2] */
    __s64 a;        /* dirfd / old fd / listening fd / family / first fd */
    __s64 b;        /* socket type / last fd of a range */
    __u64 flags;    /* open flags, O_CLOEXEC & co. */
    __u32 op;       /* IOT_FD_* pending; 0 = none */
    __u32 pad;
};

struct iot_pathbuf {
    char s[IOT_PATH_CHUNKS * IOT_PATH_CHUNK];
};

BPF_TASK_STORAGE(fdcalls, struct iot_fdcall);
BPF_PERCPU_ARRAY(fdpath_buf, struct iot_pathbuf, 1);

static __always_inline int iot_fd_enter(__u32 op, __u64 uptr, __s64 a, __s64 b, __u64 flags) {
    if (!iot_traced(bpf_get_current_pid_tgid() >> 32))
        return 0;
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct iot_fdcall *c = fdcalls.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (!c) {
        iot_counter(IOT_C_FD_FULL);
        return 0;
    }
    c->op = op;
    c->uptr = uptr;
    c->a = a;
    c->b = b;
    c->flags = flags;
    return 0;
}

/* The state kept at enter when this thread is inside `op`, consumed. An exit
 * without its enter (tracing began mid-call) is counted. */
static __always_inline struct iot_fdcall *iot_fd_pending_q(__u32 op, int quiet) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    struct iot_fdcall *c = fdcalls.task_storage_get(task, 0, 0);
    if (!c || c->op != op) {
        if (!quiet && (c || iot_traced(bpf_get_current_pid_tgid() >> 32))) {
            __u32 probe = IOT_PROBE_FD;
            __u64 *v = unmatched_exit.lookup(&probe);
            if (v) *v += 1;
        }
        return NULL;
    }
    c->op = 0;
    return c;
}

static __always_inline struct iot_fdcall *iot_fd_pending(__u32 op) {
    return iot_fd_pending_q(op, 0);
}

static __always_inline void iot_fd_emit(__u32 op, __s64 fd, __s64 ret, __u64 size, __u64 offset,
                                        __u32 flags, __u64 now) {
    struct iotrace_event *e = iot_reserve(IOT_PROBE_FD);
    if (!e)
        return;
    __builtin_memset(e, 0, sizeof(*e));
    __u64 id = bpf_get_current_pid_tgid();
    e->ts_ns = now;
    e->fd = fd;
    e->ret = ret;
    e->size = size;
    e->offset = offset;
    e->pid = id >> 32;
    e->tid = (__u32)id;
    e->kind = IOT_KIND_FD;
    e->op = op;
    e->flags = flags;
    iot_submit(e);
}

/* open/openat/openat2/creat (op OPEN) and chdir (op CHDIR): PATH records
 * holding the name, then the OPEN / CHDIR. */
static __always_inline int iot_fd_exit_path(__u32 op, long ret) {
    struct iot_fdcall *c = iot_fd_pending(op);
    if (!c || ret < 0)
        return 0;
    __u32 zero = 0;
    struct iot_pathbuf *buf = fdpath_buf.lookup(&zero);
    if (!buf)
        return 0;
    /* the read stops at the NUL: what follows would be an older path's tail */
    __builtin_memset(buf->s, 0, sizeof(buf->s));
    long n = bpf_probe_read_user_str(buf->s, sizeof(buf->s), (const void *)c->uptr);
    __u64 now = bpf_ktime_get_ns();
    __u64 id = bpf_get_current_pid_tgid();
    __u32 flags = 0;
    if (n <= 0) {
        n = 0;
        flags = IOT_F_PATH_UNREAD;
    } else {
        n -= 1;  /* without its NUL */
        if (n >= sizeof(buf->s) - 1)
            flags = IOT_F_PATH_CUT;
    }
#pragma unroll
    for (int i = 0; i < IOT_PATH_CHUNKS; i++) {
        if (i * IOT_PATH_CHUNK >= n)
            break;
        struct iotrace_event *e = iot_reserve(IOT_PROBE_FD);
        if (!e)
            continue;  /* counted; the OPEN's length shows the path is incomplete */
        e->ts_ns = now;
        /* end_ns .. user_data: IOT_PATH_CHUNK contiguous bytes of the name */
        __builtin_memcpy(&e->end_ns, buf->s + i * IOT_PATH_CHUNK, IOT_PATH_CHUNK);
        e->pid = id >> 32;
        e->tid = (__u32)id;
        e->kind = IOT_KIND_FD;
        e->op = IOT_FD_PATH;
        e->flags = i;
        iot_submit(e);
    }
    iot_fd_emit(op, op == IOT_FD_OPEN ? ret : -1, c->a, c->flags, n, flags, now);
    return 0;
}

/* close (the fd is gone whatever the result, but for EBADF) and close_range. */
static __always_inline int iot_fd_exit_close(__u32 op, long ret) {
    struct iot_fdcall *c = iot_fd_pending(op);
    if (!c || ret == -IOT_EBADF)
        return 0;
    iot_fd_emit(op, c->a, op == IOT_FD_CLOSE ? ret : c->b, c->flags, 0, 0, bpf_ktime_get_ns());
    return 0;
}

/* Calls whose result is the new fd: dup*, fcntl(F_DUPFD*), socket, accept*,
 * eventfd & co. */
static __always_inline int iot_fd_exit_newfd_q(__u32 op, long ret, int quiet) {
    struct iot_fdcall *c = iot_fd_pending_q(op, quiet);
    if (!c || ret < 0)
        return 0;
    iot_fd_emit(op, ret, c->a, c->flags, c->b, 0, bpf_ktime_get_ns());
    return 0;
}

static __always_inline int iot_fd_exit_newfd(__u32 op, long ret) {
    return iot_fd_exit_newfd_q(op, ret, 0);
}

/* pipe/pipe2/socketpair: the two fds are in the program's int[2]. */
static __always_inline int iot_fd_exit_pair(__u32 op, long ret) {
    struct iot_fdcall *c = iot_fd_pending(op);
    if (!c || ret != 0)
        return 0;
    int fds[2] = {-1, -1};
    if (bpf_probe_read_user(fds, sizeof(fds), (const void *)c->uptr) != 0)
        return 0;
    iot_fd_emit(op, fds[0], fds[1], c->flags, (__u64)c->a | ((__u64)c->b << 32), 0,
                bpf_ktime_get_ns());
    return 0;
}

/* openat2: the flags are the first word of its struct open_how. */
static __always_inline __u64 iot_open_how_flags(const void *how) {
    __u64 flags = 0;
    if (bpf_probe_read_user(&flags, sizeof(flags), how) != 0)
        return 0;
    return flags;
}
