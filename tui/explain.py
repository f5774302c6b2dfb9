"""Words for the detail pane: what a model means, and one call or request in a sentence."""

from __future__ import annotations

import errno as errno_mod
from typing import Final

from iotrace.tui.fmt import fmt_bytes, fmt_ns

from iotrace.events import EAGAIN, SYSCALL_BY_OP, Flag, Kind

MODEL_TEXT: Final = {
    "sync-blocking": (
        "Synchronous, blocking: one call per request, and the thread sleeps inside it "
        "until the data is there. Simple, but a thread can wait for only one thing at a time."
    ),
    "sync-nonblocking": (
        "Synchronous, non-blocking: the fd is O_NONBLOCK, so a read with no data returns "
        "EAGAIN at once and the program retries. The thread never sleeps: it burns CPU "
        "on calls that return nothing."
    ),
    "async-blocking": (
        "Asynchronous, blocking (I/O multiplexing): the thread sleeps in select/poll/epoll "
        "until some fd is ready, then reads it; that read returns at once. One thread "
        "can wait on many fds."
    ),
    "async-nonblocking": (
        "Asynchronous, non-blocking: requests are submitted (io_uring, Linux AIO, POSIX AIO) "
        "and return at once; many are in flight together and completions are reaped later "
        "in batches. Few syscalls per request, deep queues."
    ),
    "memory-mapped": (
        "Memory-mapped: the program reads a mapped file as memory; each page not yet in "
        "memory is a major page fault, in which the thread sleeps while the kernel reads "
        "the file. No read calls: the faults are the requests."
    ),
    "idle": "No I/O system calls seen for this row yet.",
}


def errno_name(ret: int) -> str:
    code = -ret
    return "-" + errno_mod.errorcode.get(code, f"E{code}")


def _asleep(off: int, runq: int) -> str:
    parts = []
    if off - runq > 0:
        parts.append(f"{fmt_ns(off - runq)} asleep")
    if runq > 0:
        parts.append(f"{fmt_ns(runq)} waiting for a CPU")
    return ", " + ", ".join(parts) if parts else ", all on CPU"


def describe(ev: dict[str, int]) -> str:
    """One stored event in words, e.g.
    "pread64 fd 5, 4 KiB at offset 1.2 GiB: 212 us, 198 us asleep"."""
    kind = ev["kind"]
    ts, end, off, runq = ev["ts_ns"], ev["end_ns"], ev["off_cpu_ns"], ev["runq_ns"]
    ret, fd, size, offset = ev["ret"], ev["fd"], ev["size"], ev["offset"]
    if kind == Kind.SYSCALL:
        sc = SYSCALL_BY_OP.get(ev["op"])
        name = sc.name if sc else f"syscall {ev['op']}"
        fam = sc.family if sc else ""
        dur = max(end - ts, 0)
        if fam == "mux":
            what = f"{name}" + (f" epfd {fd}" if fd >= 0 else "") + f", up to {size} fds"
            result = errno_name(ret) if ret < 0 else "timed out" if ret == 0 else f"{ret} ready"
            return f"{what}: {result} after {fmt_ns(dur)}{_asleep(off, runq)}"
        if fam in ("aio", "uring"):
            what = f"{name}" + (f" fd {fd}" if fd >= 0 else "") + f", {size} asked"
            result = errno_name(ret) if ret < 0 else f"returned {ret}"
            return f"{what}: {result} after {fmt_ns(dur)}{_asleep(off, runq)}"
        what = f"{name} fd {fd}, {fmt_bytes(size)}"
        if sc is not None and "pos" in sc.offset:
            what += f" at offset {fmt_bytes(offset)}"
        if ret == -EAGAIN:
            return f"{what}: -EAGAIN after {fmt_ns(dur)} (no data yet; the loop retries)"
        result = errno_name(ret) if ret < 0 else f"got {fmt_bytes(ret)}"
        return f"{what}: {result} in {fmt_ns(dur)}{_asleep(off, runq)}"
    if kind in (Kind.AIO_REQUEST, Kind.URING_REQUEST, Kind.POSIX_AIO_REQUEST):
        api = {
            Kind.AIO_REQUEST: "Linux AIO",
            Kind.URING_REQUEST: "io_uring",
            Kind.POSIX_AIO_REQUEST: "POSIX AIO",
        }[Kind(kind)]
        what = f"{api} request fd {fd}, {fmt_bytes(size)} at offset {fmt_bytes(offset)}"
        steps = []
        kdone = ev["kdone_ns"]
        if kdone > ts:
            where = " on an io-wq worker" if ev["flags"] & Flag.WORKER else ""
            steps.append(f"kernel done after {fmt_ns(kdone - ts)}{where}")
        if end > ts:
            steps.append(f"reaped after {fmt_ns(end - ts)}")
        else:
            steps.append("reap not observed")
        result = errno_name(ret) if ret < 0 else f"got {fmt_bytes(ret)}"
        return f"{what}: submitted, " + ", ".join(steps) + f"; {result}"
    if kind == Kind.OFF_CPU:
        dur = max(end - ts, 0)
        inside = SYSCALL_BY_OP.get(ev["op"])
        where = f" inside {inside.name}" if inside else " outside traced calls"
        return f"off CPU {fmt_ns(dur)}{where}" + (
            f" ({fmt_ns(runq)} waiting for a CPU)" if runq else ""
        )
    return f"event kind {kind}"
