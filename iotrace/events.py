"""The one event schema shared by the BPF programs, the tracer, the trace file,
the analysis and the dashboard.

Standard library only: this module is imported by `iotrace view/report/export`
on machines without bcc, and by the BPF program generator.

Every record the kernel side emits has the same fixed size (`EVENT_SIZE`
bytes), so a batch copied out of the ring buffer is a plain array that numpy
can view without a per-record Python loop. The C mirror is
`tracer/bpf/iotrace.h`; `tests/unit/test_schema.py` fails when they drift.

Field meanings depend on `kind` (see `Kind`); they are documented on
`EVENT_FIELDS` and, per syscall, on `SYSCALLS`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

SCHEMA_VERSION: Final = (2, 0)
"""Major.minor of the record layout and trace file; a reader refuses a newer major."""


class Kind(enum.IntEnum):
    """What a record describes."""

    SYSCALL = 1
    """One completed system call: ts=enter, end=exit, off_cpu/runq inside it."""
    AIO_REQUEST = 2
    """One Linux AIO request: ts=io_submit, end=reap in io_getevents (0 if never reaped)."""
    URING_REQUEST = 3
    """One io_uring request: ts=kernel submit, kdone=kernel completion."""
    OFF_CPU = 4
    """One interval a traced thread spent off CPU: ts=switched out, end=switched in."""
    TASK = 5
    """A lifecycle event of a traced task (op is a `TaskOp`)."""
    LOST = 6
    """Records dropped between ts and end (size = how many, op = probe id)."""
    POSIX_AIO_REQUEST = 7
    """One POSIX AIO request timed by uprobes from aio_read/aio_write to aio_return."""
    SYSCALL_RUN = 8
    """`offset` consecutive calls of one thread with one syscall, fd and result class,
    folded in the kernel into one record (see `RUN_FIELDS`; `runs.py` reads them)."""
    FD = 9
    """One change of a process's fd table (op is an `FdOp`; layout in iotrace.h);
    `fdpaths.py` turns them into each call's path. Not a call: analyses skip it."""
    BLOCK = 10
    """One block-device request charged to the traced thread that queued it:
    ts=issue to the device, end=completion, kdone=insert into the I/O scheduler
    (0 without one), size=bytes, fd=dev_t, offset=sector, op=`BlockOp`, ret=error."""


class BlockOp(enum.IntEnum):
    """A BLOCK record's operation (the first letter of the kernel's rwbs)."""

    OTHER = 0
    READ = 1
    WRITE = 2
    FLUSH = 3
    DISCARD = 4


class TaskOp(enum.IntEnum):
    FORK = 1
    """A traced process created a process: pid=child, fd=parent pid."""
    THREAD = 2
    """A traced process created a thread: tid=new thread."""
    EXEC = 3
    EXIT = 4


class FdOp(enum.IntEnum):
    """What an FD record says changed (tracer/bpf/iotrace.h IOT_FD_*)."""

    OPEN = 1
    PATH = 2
    CLOSE = 3
    CLOSE_RANGE = 4
    DUP = 5
    PIPE = 6
    SOCKETPAIR = 7
    SOCKET = 8
    ACCEPT = 9
    ANON = 10
    SNAPSHOT = 11
    CHDIR = 12
    FCHDIR = 13


ANON_NAMES: Final = {1: "eventfd", 2: "eventpoll", 3: "timerfd", 4: "signalfd", 5: "memfd",
                     6: "inotify"}  # fmt: skip
"""IOT_ANON_* -> the name /proc/PID/fd gives such an fd (anon_inode:[NAME])."""
PATH_CHUNK: Final = 80
"""Bytes of a path one PATH record holds (end_ns .. user_data)."""
PATH_CHUNKS: Final = 4
"""PATH records per path at most: paths longer than 319 bytes are cut (Flag.PATH_CUT)."""


class Flag(enum.IntFlag):
    NONE = 0
    WORKER = 1
    """io_uring: the request was punted to an io-wq kernel worker."""
    NOT_OBSERVED = 2
    """The completion was never observed (never reaped, resubmitted, or reaped from user space)."""
    ENTER_MISSED = 4
    """The exit was seen without its enter (tracing started mid-call)."""
    INLINE = 8
    """io_uring: completed inline during submission (no wait)."""
    PRESSURE = 16
    """SYSCALL_RUN: (also) folded because the ring buffer was filling up; without it
    the run holds only EAGAIN retries or multiplexer calls that found nothing ready."""
    FROM_RUN = 32
    """A call laid out from a SYSCALL_RUN record by `runs.expand` (never in a file):
    its count and the run's sums are exact, its own timing is estimated."""
    PATH_CUT = 64
    """FD: the path was longer than the kernel side reads (PATH_CHUNKS records)."""
    PATH_UNREAD = 128
    """FD: the path could not be read from the program's memory."""


@dataclass(frozen=True)
class Syscall:
    op: int
    name: str
    family: str
    """read, write, recv, send, copy (in-kernel copies), mux, ctl (epoll_ctl),
    aio, uring, fault (page faults: not a syscall, no syscall probes)."""
    fd: str
    """Expression over the tracepoint `args` giving the fd (or "-1")."""
    size: str
    """Expression giving the size asked / count / nfds / maxevents."""
    offset: str
    """Expression giving the file offset / timeout / min_nr (or "0")."""
    iov: str = ""
    """Name of the iovec pointer arg when the size asked is the sum of an iovec."""


# The numbering is iotrace's own and stable across architectures; never renumber.
# Expressions are C over `args` fields, named as in tracefs format files.
SYSCALLS: Final[tuple[Syscall, ...]] = (
    Syscall(1, "read", "read", "args->fd", "args->count", "0"),
    Syscall(2, "pread64", "read", "args->fd", "args->count", "args->pos"),
    Syscall(3, "readv", "read", "args->fd", "0", "0", iov="vec"),
    Syscall(4, "preadv", "read", "args->fd", "0", "args->pos_l", iov="vec"),
    Syscall(5, "preadv2", "read", "args->fd", "0", "args->pos_l", iov="vec"),
    Syscall(6, "write", "write", "args->fd", "args->count", "0"),
    Syscall(7, "pwrite64", "write", "args->fd", "args->count", "args->pos"),
    Syscall(8, "writev", "write", "args->fd", "0", "0", iov="vec"),
    Syscall(9, "pwritev", "write", "args->fd", "0", "args->pos_l", iov="vec"),
    Syscall(10, "pwritev2", "write", "args->fd", "0", "args->pos_l", iov="vec"),
    Syscall(11, "recvfrom", "recv", "args->fd", "args->size", "0"),
    Syscall(12, "recvmsg", "recv", "args->fd", "iot_msghdr_bytes((const void *)args->msg)", "0"),
    Syscall(13, "recvmmsg", "recv", "args->fd", "args->vlen", "0"),
    Syscall(14, "sendto", "send", "args->fd", "args->len", "0"),
    Syscall(15, "sendmsg", "send", "args->fd", "iot_msghdr_bytes((const void *)args->msg)", "0"),
    Syscall(16, "sendmmsg", "send", "args->fd", "args->vlen", "0"),
    Syscall(20, "select", "mux", "-1", "args->n", "0"),
    Syscall(21, "pselect6", "mux", "-1", "args->n", "0"),
    Syscall(22, "poll", "mux", "-1", "args->nfds", "args->timeout_msecs"),
    Syscall(23, "ppoll", "mux", "-1", "args->nfds", "0"),
    Syscall(24, "epoll_wait", "mux", "args->epfd", "args->maxevents", "args->timeout"),
    Syscall(25, "epoll_pwait", "mux", "args->epfd", "args->maxevents", "args->timeout"),
    Syscall(26, "epoll_pwait2", "mux", "args->epfd", "args->maxevents", "0"),
    Syscall(30, "io_setup", "aio", "-1", "args->nr_events", "0"),
    Syscall(31, "io_submit", "aio", "-1", "args->nr", "0"),
    Syscall(32, "io_getevents", "aio", "-1", "args->nr", "args->min_nr"),
    Syscall(33, "io_pgetevents", "aio", "-1", "args->nr", "args->min_nr"),
    Syscall(34, "io_cancel", "aio", "-1", "0", "0"),
    Syscall(35, "io_destroy", "aio", "-1", "0", "0"),
    # offset: the io_uring_params flags (IORING_SETUP_SQPOLL = 2)
    Syscall(
        40,
        "io_uring_setup",
        "uring",
        "-1",
        "args->entries",
        "iot_uring_setup_flags((const void *)args->params)",
    ),
    Syscall(41, "io_uring_enter", "uring", "args->fd", "args->to_submit", "args->min_complete"),
    # In-kernel copies: the data moves between two fds without passing through the
    # program. fd is where it goes, offset holds the fd it comes from.
    Syscall(50, "sendfile64", "copy", "args->out_fd", "args->count", "args->in_fd"),
    Syscall(51, "splice", "copy", "args->fd_out", "args->len", "args->fd_in"),
    Syscall(52, "tee", "copy", "args->fdout", "args->len", "args->fdin"),
    Syscall(
        53,
        "vmsplice",
        "copy",
        "args->fd",
        "iot_iov_bytes((const void *)args->uiov, args->nr_segs)",
        "0",
    ),
    Syscall(54, "copy_file_range", "copy", "args->fd_out", "args->len", "args->fd_in"),
    # Registrations of fds with an epoll set: which fds a wait on it can report
    # ready. fd is the fd registered, size the EPOLL_CTL_* op, offset the epoll fd.
    Syscall(55, "epoll_ctl", "ctl", "args->fd", "args->op", "args->epfd"),
    # Not a syscall: a major page fault of a memory-mapped file (faults.bpf.c), one
    # record from the fault to the thread's return to a CPU after sleeping in it.
    Syscall(60, "page_fault", "fault", "-1", "0", "0"),
)

SYSCALL_BY_OP: Final = {s.op: s for s in SYSCALLS}
SYSCALL_BY_NAME: Final = {s.name: s for s in SYSCALLS}


@dataclass(frozen=True)
class Field:
    name: str
    ctype: str
    """C type in iotrace.h (the kernel's __u64 & co.)."""
    npcode: str
    """numpy dtype code, little-endian."""
    doc: str


EVENT_FIELDS: Final[tuple[Field, ...]] = (
    Field("ts_ns", "__u64", "<u8", "enter / submit / interval start (CLOCK_MONOTONIC ns)"),
    Field("end_ns", "__u64", "<u8", "exit / reap / interval end; 0 when not observed"),
    Field("kdone_ns", "__u64", "<u8", "request: kernel completion time; 0 when unknown"),
    Field("off_cpu_ns", "__u64", "<u8", "syscall: time off CPU inside the call"),
    Field("runq_ns", "__u64", "<u8", "syscall: part of off_cpu_ns spent runnable, waiting"),
    Field("ret", "__s64", "<i8", "result; negative errno on failure"),
    Field("fd", "__s64", "<i8", "file descriptor, -1 when none"),
    Field("size", "__u64", "<u8", "bytes asked, or count (nfds, maxevents, nr)"),
    Field("offset", "__u64", "<u8", "file offset, or timeout / min_nr (see SYSCALLS)"),
    Field("key", "__u64", "<u8", "request identity (iocb pointer, io_uring req); TASK: comm"),
    Field("user_data", "__u64", "<u8", "aio_data / io_uring user_data; TASK: comm"),
    Field("pid", "__u32", "<u4", "process id (tgid)"),
    Field("tid", "__u32", "<u4", "thread id"),
    Field("kind", "__u16", "<u2", "a Kind"),
    Field("op", "__u16", "<u2", "syscall op (SYSCALLS), request opcode, TaskOp or probe id"),
    Field("flags", "__u32", "<u4", "Flag bits"),
)

# What the fields of a SYSCALL_RUN record hold (tracer/bpf/iotrace.h says the same).
RUN_FIELDS: Final = {
    "ts_ns": "the first call's enter",
    "end_ns": "the last call's exit",
    "kdone_ns": "summed durations of the calls (ns)",
    "off_cpu_ns": "summed off-CPU time inside the calls",
    "runq_ns": "summed runnable (waiting for a CPU) time inside the calls",
    "ret": "summed results (bytes, ready counts) when >= 0, else the errno every call failed with",
    "size": "summed sizes asked",
    "offset": "number of calls",
    "key": "shortest call (low 32 bits) and longest call (high 32 bits), ns",
    "user_data": "histogram: byte i counts calls with floor(log2(ns)) == base + i",
    "flags": "base in bits 8-15; Flag.PRESSURE",
}
RUN_MAX_CALLS: Final = 255
"""Calls one run record holds at most (its histogram buckets are single bytes)."""
RUN_MAX_CALL_NS: Final = 65_536
"""Only calls shorter than this fold: a storm is made of short calls, and a long wait
(a poll that timed out after a second) keeps a record of its own."""
RUN_BASE_SHIFT: Final = 8
RUN_BUCKETS: Final = 8

_SIZES: Final = {"__u64": 8, "__s64": 8, "__u32": 4, "__s32": 4, "__u16": 2, "__u8": 1}
EVENT_SIZE: Final = sum(_SIZES[f.ctype] for f in EVENT_FIELDS)

# Probe ids used by LOST records and per-probe counters that are not syscalls.
PROBE_SCHED: Final = 100
PROBE_TASK: Final = 101
PROBE_AIO: Final = 102
PROBE_URING: Final = 103
PROBE_POSIX_AIO: Final = 104
PROBE_FD: Final = 105
PROBE_BLOCK: Final = 106
PROBE_NAMES: Final = {
    PROBE_SCHED: "sched",
    PROBE_TASK: "task",
    PROBE_AIO: "aio-request",
    PROBE_URING: "uring-request",
    PROBE_POSIX_AIO: "posix-aio-request",
    PROBE_FD: "fd-table",
    PROBE_BLOCK: "block-request",
}
MAX_PROBES: Final = 128
"""Size of the per-probe counter arrays in BPF; every op and probe id is below it."""


def has_end_times(kinds: Any) -> Any:
    """Which records' end_ns/kdone_ns are times: an FD record's hold a path's bytes
    (iotrace.h). `kinds` is a record array's "kind" column; returns a bool mask."""
    return kinds != int(Kind.FD)


def probe_name(probe_id: int) -> str:
    """Human name of a probe id (a syscall op or one of the PROBE_* ids)."""
    if probe_id in SYSCALL_BY_OP:
        return SYSCALL_BY_OP[probe_id].name
    return PROBE_NAMES.get(probe_id, f"probe{probe_id}")


def op_name(kind: int, op: int) -> str:
    """Name of an op for display: the syscall, the request opcode, or the task event."""
    if kind in (Kind.SYSCALL, Kind.SYSCALL_RUN):
        return SYSCALL_BY_OP[op].name if op in SYSCALL_BY_OP else f"syscall{op}"
    if kind == Kind.TASK:
        try:
            return TaskOp(op).name.lower()
        except ValueError:
            return f"task{op}"
    if kind == Kind.LOST:
        return probe_name(op)
    if kind == Kind.FD:
        try:
            return FdOp(op).name.lower()
        except ValueError:
            return f"fd{op}"
    if kind == Kind.BLOCK:
        try:
            return f"block_{BlockOp(op).name.lower()}"
        except ValueError:
            return f"block{op}"
    return str(op)


def _hex(ch: str) -> str:
    data = ch.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{b:02x}" for b in data)


def escape_bytes(raw: bytes) -> str:
    """A process name (bytes: anything but NUL) as lossless, printable text:
    printable UTF-8 as is, a backslash as `\\\\`, every other byte as `\\xNN`
    (iotrace.text.unescape_bytes gives the bytes back)."""
    out: list[str] = []
    text = raw.decode("utf-8", "surrogateescape")
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(_hex(ch))
    return "".join(out)


def comm_from_words(key: int, user_data: int) -> str:
    """Decode the 16-byte comm a TASK record carries in key + user_data, escaped
    (a name is bytes, see escape_bytes)."""
    raw = key.to_bytes(8, "little") + user_data.to_bytes(8, "little")
    return escape_bytes(raw.split(b"\0", 1)[0])


# The four models (DESIGN.md); the analysis and the workloads use these ids.
MODELS: Final = ("sync-blocking", "sync-nonblocking", "async-blocking", "async-nonblocking")

EAGAIN: Final = 11
