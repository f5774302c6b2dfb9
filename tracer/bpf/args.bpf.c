/* args.bpf.c — helpers for the argument expressions of events.SYSCALLS rows
 * that read user memory (included before the generated probes). */

/* io_uring_setup: the flags of the struct io_uring_params the program passes
 * (sq_entries, cq_entries, then flags at offset 8); IORING_SETUP_SQPOLL = 2. */
static __always_inline __u64 iot_uring_setup_flags(const void *params) {
    __u32 flags = 0;
    if (bpf_probe_read_user(&flags, sizeof(flags), (const char *)params + 8) != 0)
        return 0;
    return flags;
}
