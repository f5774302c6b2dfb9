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


def _exit_probe(s: Syscall) -> str:
    fn = "iot_exit"
    if s.name == "io_submit":
        fn = "iot_exit_io_submit"
    elif s.name in ("io_getevents", "io_pgetevents"):
        fn = "iot_exit_io_getevents"
    return (
        f"TRACEPOINT_PROBE(syscalls, sys_exit_{s.name}) {{\n"
        "    IOT_GUARD;\n"
        f"    return {fn}({s.op}, args->ret);\n}}\n"
    )


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
    if all(opts.has(tp) for tp in _URING_TPS):
        parts.append(_source("uring.bpf.c"))
    if defines["IOT_BLOCK"]:
        parts.append(_source("block.bpf.c"))
    if opts.posix_aio_uprobes and platform.machine() == "x86_64":
        parts.append(_source("posix_aio.bpf.c"))
    for s in traced_syscalls(opts):
        parts.append(_enter_probe(s, opts))
        parts.append(_exit_probe(s))
    return "\n".join(parts) + "\n"
