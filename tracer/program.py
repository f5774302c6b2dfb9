"""Options -> BPF program text. Pure: no bcc, no root, so `--ebpf` can print
the program anywhere and tests can check it.

The C lives in real files under `bpf/` (loaded with importlib.resources);
this module only prepends the configuration and instantiates one enter and
one exit probe per traced syscall from `iotrace.events.SYSCALLS`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final

from iotrace import events
from iotrace.events import SYSCALLS, Syscall

PROBED: Final = tuple(s for s in SYSCALLS if s.family != "fault")
"""The SYSCALLS rows that are syscalls (the "fault" family is page faults)."""
FAULT_OP: Final = events.SYSCALL_BY_NAME["page_fault"].op

TRACEFS_CANDIDATES: Final = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

# The calls that change a process's fd table (fdpath.bpf.c): syscall -> (enter, exit),
# C over the tracepoint `args`. O_CLOEXEC (02000000) is what the resolver keeps of the
# flags: such fds are gone after an exec. fcntl is kept only for F_DUPFD (0) and
# F_DUPFD_CLOEXEC (1030), and its other commands are not counted as unmatched.
_CLOEXEC: Final = "02000000"
FD_PROBES: Final[dict[str, tuple[str, str]]] = {
    "openat": (
        "iot_fd_enter(IOT_FD_OPEN, (__u64)args->filename, (__s32)args->dfd, 0, args->flags)",
        "iot_fd_exit_path(IOT_FD_OPEN, args->ret)",
    ),
    "open": (
        "iot_fd_enter(IOT_FD_OPEN, (__u64)args->filename, -100, 0, args->flags)",
        "iot_fd_exit_path(IOT_FD_OPEN, args->ret)",
    ),
    "openat2": (
        "iot_fd_enter(IOT_FD_OPEN, (__u64)args->filename, (__s32)args->dfd, 0, "
        "iot_open_how_flags((const void *)args->how))",
        "iot_fd_exit_path(IOT_FD_OPEN, args->ret)",
    ),
    "creat": (  # O_CREAT | O_WRONLY | O_TRUNC
        "iot_fd_enter(IOT_FD_OPEN, (__u64)args->pathname, -100, 0, 01101)",
        "iot_fd_exit_path(IOT_FD_OPEN, args->ret)",
    ),
    "chdir": (
        "iot_fd_enter(IOT_FD_CHDIR, (__u64)args->filename, -100, 0, 0)",
        "iot_fd_exit_path(IOT_FD_CHDIR, args->ret)",
    ),
    "fchdir": (
        "iot_fd_enter(IOT_FD_FCHDIR, 0, args->fd, 0, 0)",
        "iot_fd_exit_newfd(IOT_FD_FCHDIR, args->ret)",
    ),
    "close": (
        "iot_fd_enter(IOT_FD_CLOSE, 0, args->fd, 0, 0)",
        "iot_fd_exit_close(IOT_FD_CLOSE, args->ret)",
    ),
    "close_range": (
        "iot_fd_enter(IOT_FD_CLOSE_RANGE, 0, args->fd, args->max_fd, args->flags)",
        "iot_fd_exit_close(IOT_FD_CLOSE_RANGE, args->ret)",
    ),
    "dup": (
        "iot_fd_enter(IOT_FD_DUP, 0, args->fildes, 0, 0)",
        "iot_fd_exit_newfd(IOT_FD_DUP, args->ret)",
    ),
    "dup2": (
        "iot_fd_enter(IOT_FD_DUP, 0, args->oldfd, 0, 0)",
        "iot_fd_exit_newfd(IOT_FD_DUP, args->ret)",
    ),
    "dup3": (
        "iot_fd_enter(IOT_FD_DUP, 0, args->oldfd, 0, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_DUP, args->ret)",
    ),
    "fcntl": (
        "args->cmd == 0 || args->cmd == 1030 ? iot_fd_enter(IOT_FD_DUP, 0, args->fd, 0, "
        f"args->cmd == 1030 ? {_CLOEXEC} : 0) : 0",
        "iot_fd_exit_newfd_q(IOT_FD_DUP, args->ret, 1)",
    ),
    "pipe": (
        "iot_fd_enter(IOT_FD_PIPE, (__u64)args->fildes, 0, 0, 0)",
        "iot_fd_exit_pair(IOT_FD_PIPE, args->ret)",
    ),
    "pipe2": (
        "iot_fd_enter(IOT_FD_PIPE, (__u64)args->fildes, 0, 0, args->flags)",
        "iot_fd_exit_pair(IOT_FD_PIPE, args->ret)",
    ),
    "socketpair": (
        "iot_fd_enter(IOT_FD_SOCKETPAIR, (__u64)args->usockvec, args->family, args->type, "
        f"args->type & {_CLOEXEC})",
        "iot_fd_exit_pair(IOT_FD_SOCKETPAIR, args->ret)",
    ),
    "socket": (
        f"iot_fd_enter(IOT_FD_SOCKET, 0, args->family, args->type, args->type & {_CLOEXEC})",
        "iot_fd_exit_newfd(IOT_FD_SOCKET, args->ret)",
    ),
    "accept": (
        "iot_fd_enter(IOT_FD_ACCEPT, 0, args->fd, 0, 0)",
        "iot_fd_exit_newfd(IOT_FD_ACCEPT, args->ret)",
    ),
    "accept4": (
        "iot_fd_enter(IOT_FD_ACCEPT, 0, args->fd, 0, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ACCEPT, args->ret)",
    ),
    "eventfd2": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_EVENTFD, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "epoll_create1": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_EPOLL, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "epoll_create": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_EPOLL, 0)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "timerfd_create": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_TIMERFD, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "signalfd4": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_SIGNALFD, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "memfd_create": (  # MFD_CLOEXEC is 1
        f"iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_MEMFD, args->flags & 1 ? {_CLOEXEC} : 0)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
    "inotify_init1": (
        "iot_fd_enter(IOT_FD_ANON, 0, 0, IOT_ANON_INOTIFY, args->flags)",
        "iot_fd_exit_newfd(IOT_FD_ANON, args->ret)",
    ),
}

# Every tracepoint iotrace can use, and what is lost without it (for doctor).
TRACEPOINTS: Final[dict[str, str]] = {
    **{
        f"syscalls:sys_{side}_{s.name}": f"{s.name} timing ({s.family})"
        for s in PROBED
        for side in ("enter", "exit")
    },
    "sched:sched_switch": "off-CPU time inside calls and per-thread CPU lanes",
    "sched:sched_wakeup": "splitting off-CPU time into asleep vs waiting to run",
    "sched:sched_process_fork": "following children of traced processes",
    "sched:sched_process_exec": "exec events of traced processes",
    "sched:sched_process_exit": "freeing per-thread state at exit",
    "syscalls:sys_exit_clone": "telling new threads from new processes",
    "syscalls:sys_exit_clone3": "telling new threads from new processes",
    "syscalls:sys_exit_fork": "telling new threads from new processes",
    "syscalls:sys_exit_vfork": "telling new threads from new processes",
    "io_uring:io_uring_submit_req": "io_uring per-request timing",
    "io_uring:io_uring_complete": "io_uring per-request timing",
    "io_uring:io_uring_queue_async_work": "io_uring: which requests went to io-wq workers",
    "io_uring:io_uring_file_get": "io_uring: the fd of each request",
    "exceptions:page_fault_user": "major page faults (memory-mapped file I/O)",
    **{
        f"syscalls:sys_{side}_{name}": f"fd -> path ({name})"
        for name in FD_PROBES
        for side in ("enter", "exit")
    },
    "block:block_rq_insert": "block-device time: which thread queued a request",
    "block:block_rq_issue": "block-device time inside calls",
    "block:block_rq_complete": "block-device time inside calls",
}

# Tracepoints without which nothing useful can be traced.
REQUIRED_TRACEPOINTS: Final = frozenset(
    {"sched:sched_switch", "sched:sched_process_fork", "sched:sched_process_exit"}
    | {f"syscalls:sys_{side}_read" for side in ("enter", "exit")}
)

_URING_TPS: Final = (
    "io_uring:io_uring_submit_req",
    "io_uring:io_uring_complete",
    "io_uring:io_uring_queue_async_work",
    "io_uring:io_uring_file_get",
)
_FAULT_TPS: Final = ("exceptions:page_fault_user",)
_BLOCK_TPS: Final = ("block:block_rq_issue", "block:block_rq_complete")
_BLOCK_INSERT_TP: Final = "block:block_rq_insert"
# Words of user_pt_regs at the head of a perf event program's context, per arch.
_PT_REGS_WORDS: Final = {"x86_64": 21, "aarch64": 34}
_LIFECYCLE_TPS: Final = (
    "syscalls:sys_exit_clone",
    "syscalls:sys_exit_clone3",
    "syscalls:sys_exit_fork",
    "syscalls:sys_exit_vfork",
)


def tracefs_root() -> Path | None:
    """Where tracefs is mounted, or None."""
    for p in TRACEFS_CANDIDATES:
        try:
            if (p / "events").is_dir():
                return p
        except OSError:  # not root: tracefs is 0700 (`--ebpf` needs no root)
            continue
    return None


def available_tracepoints(root: Path | None = None) -> set[str]:
    """The tracepoints of TRACEPOINTS that exist on this kernel."""
    root = root or tracefs_root()
    if root is None:
        return set()
    found = set()
    for tp in TRACEPOINTS:
        group, name = tp.split(":", 1)
        try:
            if (root / "events" / group / name).is_dir():
                found.add(tp)
        except OSError:
            continue
    return found


@dataclass(frozen=True)
class ProgramOptions:
    syscalls: tuple[str, ...] = tuple(s.name for s in PROBED)
    """Syscalls to time (names from events.SYSCALLS)."""
    ringbuf_bytes: int = 32 << 20
    page_size: int = 4096
    max_pids: int = 8192
    max_threads: int = 65536
    max_inflight: int = 65536
    max_iov: int = 8
    max_aio_batch: int = 64
    off_cpu_records: bool = True
    page_faults: bool = True
    """Record major page faults (where the kernel has exceptions:page_fault_user)."""
    block: bool = True
    """Record the block-device requests of traced threads (block.bpf.c). Its probes
    fire once per block request, never per call, so calls that do no block I/O pay nothing."""
    max_block_inflight: int = 16384
    posix_aio_uprobes: bool = True
    """Time POSIX AIO requests with uprobes on libc (x86-64 glibc aiocb layout)."""
    fd_paths: bool = True
    """Follow the fd table of traced processes (fdpath.bpf.c): each call's path."""
    fold: bool = True
    """Fold storms of identical calls into run records (common.bpf.c struct iot_run)."""
    fold_at_fill: float = 0.125
    """Ring fill (share of its size) above which any repeated call folds into a run."""
    run_max_span_ns: int = 20_000_000
    """A run is emitted once it spans this long, so a live view sees storms as they go."""
    trace_all: bool = False
    self_tgid: int = 0
    available: frozenset[str] | None = None
    """Tracepoints that exist; None means assume all (for --ebpf and tests)."""
    min_latency_ns: int = 0
    """Calls shorter than this are only counted (per process and syscall), not
    recorded (syscalls.bpf.c IOT_MIN_LATENCY_NS); 0: every call is recorded."""
    extra_defines: dict[str, int] = field(default_factory=dict)

    def has(self, tp: str) -> bool:
        return self.available is None or tp in self.available


# Types named in tracepoint format files that bcc's default includes lack;
# bcc lays out `args` from those files, so the names must resolve. Only
# pointers to sigset_t occur, so an opaque layout is enough.
_TYPEDEFS: Final = """\
typedef int rwf_t;
typedef unsigned long aio_context_t;
typedef struct { unsigned long sig[1]; } sigset_t;
"""


def _source(name: str) -> str:
    return resources.files("iotrace.tracer").joinpath("bpf", name).read_text()


def _enter_probe(s: Syscall, opts: ProgramOptions) -> str:
    size = s.size
    if s.iov:
        size = f"iot_iov_bytes((const void *)args->{s.iov}, args->vlen)"
    uptr = "0"
    if s.name == "io_submit":
        uptr = "(__u64)args->iocbpp"
    elif s.name in ("io_getevents", "io_pgetevents"):
        uptr = "(__u64)args->events"
    return (
        f"TRACEPOINT_PROBE(syscalls, sys_enter_{s.name}) {{\n"
        "    IOT_GUARD;\n"
        f"    return iot_enter({s.op}, (__s64)({s.fd}), (__u64)({size}), "
        f"(__u64)({s.offset}), {uptr});\n}}\n"
    )


def _aio_requests(names: set[str]) -> bool:
    """Linux AIO requests are followed only when both their ends are probed: an
    io_submit whose reaps are not traced would leave every request "not observed"."""
    return "io_submit" in names and bool(names & {"io_getevents", "io_pgetevents"})


def _exit_probe(s: Syscall, aio_requests: bool = True) -> str:
    fn = "iot_exit"
    if aio_requests and s.name == "io_submit":
        fn = "iot_exit_io_submit"
    elif aio_requests and s.name in ("io_getevents", "io_pgetevents"):
        fn = "iot_exit_io_getevents"
    return (
        f"TRACEPOINT_PROBE(syscalls, sys_exit_{s.name}) {{\n"
        "    IOT_GUARD;\n"
        f"    return {fn}({s.op}, args->ret);\n}}\n"
    )


def _fd_probes(opts: ProgramOptions) -> list[str]:
    """The fd-table probes whose tracepoints this kernel has."""
    out = []
    for name, (enter, exit_) in FD_PROBES.items():
        if not (opts.has(f"syscalls:sys_enter_{name}") and opts.has(f"syscalls:sys_exit_{name}")):
            continue
        out.append(
            f"TRACEPOINT_PROBE(syscalls, sys_enter_{name}) {{\n"
            f"    IOT_GUARD;\n    return {enter};\n}}\n"
            f"TRACEPOINT_PROBE(syscalls, sys_exit_{name}) {{\n"
            f"    IOT_GUARD;\n    return {exit_};\n}}\n"
        )
    return out


def traced_syscalls(opts: ProgramOptions) -> list[Syscall]:
    """The syscalls the program will time: asked for and present on this kernel."""
    wanted = set(opts.syscalls)
    unknown = wanted - set(events.SYSCALL_BY_NAME)
    if unknown:
        raise ValueError(f"unknown syscalls: {', '.join(sorted(unknown))}")
    return [
        s
        for s in PROBED
        if s.name in wanted
        and opts.has(f"syscalls:sys_enter_{s.name}")
        and opts.has(f"syscalls:sys_exit_{s.name}")
    ]


def _op_mask(family: str, first: int) -> int:
    """Bits (op - first) of the syscalls of `family` with first <= op < first + 64."""
    return sum(
        1 << (s.op - first) for s in SYSCALLS if s.family == family and 0 <= s.op - first < 64
    )


def block_traced(opts: ProgramOptions) -> bool:
    """Whether the program records block requests (asked for, and the kernel has the probes)."""
    return opts.block and all(opts.has(tp) for tp in _BLOCK_TPS)


def build(opts: ProgramOptions) -> str:
    """The complete BPF C text for these options."""
    pages = max(1, opts.ringbuf_bytes // opts.page_size)
    if pages & (pages - 1):
        raise ValueError("the ring buffer size must be a power of two pages")
    defines = {
        "IOT_RINGBUF_PAGES": pages,
        "IOT_MAX_PIDS": opts.max_pids,
        "IOT_MAX_THREADS": opts.max_threads,
        "IOT_MAX_INFLIGHT": opts.max_inflight,
        "IOT_MAX_IOV": opts.max_iov,
        "IOT_MAX_AIO_BATCH": opts.max_aio_batch,
        "IOT_OFF_CPU_RECORDS": int(opts.off_cpu_records),
        "IOT_TRACE_ALL": int(opts.trace_all),
        "IOT_SELF_TGID": opts.self_tgid,
        "IOT_AIOCB_OFFSET_AT": 128,
        "IOT_FOLD": int(opts.fold),
        "IOT_EAGAIN": events.EAGAIN,
        "IOT_EBADF": 9,
        "IOT_MUX_OPS_LO": f"{_op_mask('mux', 0)}ULL",
        "IOT_MUX_OPS_HI": f"{_op_mask('mux', 64)}ULL",
        "IOT_RUN_MAX_CALLS": events.RUN_MAX_CALLS,
        "IOT_RUN_MAX_SPAN_NS": f"{opts.run_max_span_ns}ULL",
        "IOT_RUN_MAX_CALL_NS": f"{events.RUN_MAX_CALL_NS}ULL",
        "IOT_PRESSURE_BYTES": f"{int(opts.ringbuf_bytes * opts.fold_at_fill)}ULL",
        "IOT_FAULTS": int(
            opts.page_faults
            and platform.machine() in _PT_REGS_WORDS
            and all(opts.has(tp) for tp in _FAULT_TPS)
        ),
        "IOT_OP_FAULT": FAULT_OP,
        "IOT_BLOCK": int(block_traced(opts)),
        "IOT_MAX_BLOCK": opts.max_block_inflight,
        # without it a request is charged to whoever issues it
        "IOT_BLOCK_INSERT": int(opts.has(_BLOCK_INSERT_TP)),
        "IOT_PT_REGS_WORDS": _PT_REGS_WORDS.get(platform.machine(), 0),
        "IOT_MIN_LATENCY_NS": f"{opts.min_latency_ns}ULL",
        **opts.extra_defines,
    }
    parts = ["/* generated by iotrace.tracer.program — do not edit */"]
    parts += [f"#define {k} {v}" for k, v in defines.items()]
    parts.append(_TYPEDEFS)
    parts.append(_source("iotrace.h"))
    common = _source("common.bpf.c")
    if not all(opts.has(tp) for tp in _LIFECYCLE_TPS):
        # Older kernels: drop the thread/process distinction probes that are missing.
        for tp in _LIFECYCLE_TPS:
            if not opts.has(tp):
                name = tp.split(":")[1]
                common = "\n".join(
                    ln
                    for ln in common.splitlines()
                    if f"TRACEPOINT_PROBE(syscalls, {name})" not in ln
                )
    parts.append(common)
    parts.append(_source("syscalls.bpf.c"))
    parts.append(_source("args.bpf.c"))
    parts.append(_source("aio.bpf.c"))
    if defines["IOT_FAULTS"]:
        parts.append(_source("faults.bpf.c"))
    traced = traced_syscalls(opts)
    names = {s.name for s in traced}
    # io_uring's requests come from their own tracepoints: with the io_uring
    # syscalls left out by -e, so are they.
    if all(opts.has(tp) for tp in _URING_TPS) and any(s.family == "uring" for s in traced):
        parts.append(_source("uring.bpf.c"))
    if defines["IOT_BLOCK"]:
        parts.append(_source("block.bpf.c"))
    if opts.posix_aio_uprobes and platform.machine() == "x86_64":
        parts.append(_source("posix_aio.bpf.c"))
    if opts.fd_paths:
        parts.append(_source("fdpath.bpf.c"))
        parts.extend(_fd_probes(opts))
    aio_requests = _aio_requests(names)
    for s in traced:
        parts.append(_enter_probe(s, opts))
        parts.append(_exit_probe(s, aio_requests))
    return "\n".join(parts) + "\n"
