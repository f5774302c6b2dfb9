"""Synthetic traces shaped like each model's real pattern, written with the real
TraceWriter, for the analysis / report / export unit tests (no root needed).

Times are exact integers so the tests can assert exact figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from iotrace import events
from iotrace.events import SYSCALL_BY_NAME, Flag, Kind, TaskOp
from iotrace.session import EVENT_DTYPE, TaskInfo, TraceWriter

T0 = 1_000_000_000_000
US = 1_000
MS = 1_000_000


def comm_words(comm: str) -> tuple[int, int]:
    raw = comm.encode()[:15].ljust(16, b"\0")
    return int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


class TraceBuilder:
    """Collects records, then writes them as a real trace file."""

    def __init__(self) -> None:
        self.rows: list[dict[str, int]] = []
        self.tasks: list[TaskInfo] = []
        self.workloads: list[dict[str, Any]] = []

    def add(self, **fields: int) -> None:
        self.rows.append(fields)

    def syscall(
        self,
        pid: int,
        tid: int,
        name: str,
        ts: int,
        dur: int,
        *,
        ret: int = 0,
        fd: int = 3,
        size: int = 4096,
        off_cpu: int = 0,
        runq: int = 0,
        offset: int = 0,
    ) -> int:
        self.add(
            kind=Kind.SYSCALL,
            op=SYSCALL_BY_NAME[name].op,
            pid=pid,
            tid=tid,
            ts_ns=ts,
            end_ns=ts + dur,
            ret=ret,
            fd=fd,
            size=size,
            off_cpu_ns=off_cpu,
            runq_ns=runq,
            offset=offset,
        )
        return ts + dur

    def off_cpu(self, pid: int, tid: int, ts: int, end: int, *, runq: int = 0, op: int = 0) -> None:
        self.add(kind=Kind.OFF_CPU, pid=pid, tid=tid, ts_ns=ts, end_ns=end, runq_ns=runq, op=op)

    def request(
        self,
        kind: Kind,
        pid: int,
        tid: int,
        ts: int,
        end: int,
        *,
        kdone: int = 0,
        key: int = 0,
        user_data: int = 0,
        op: int = 0,
        size: int = 4096,
        offset: int = 0,
        fd: int = 5,
        ret: int = 4096,
        flags: int = 0,
    ) -> None:
        self.add(
            kind=kind,
            pid=pid,
            tid=tid,
            ts_ns=ts,
            end_ns=end,
            kdone_ns=kdone,
            key=key,
            user_data=user_data,
            op=op,
            size=size,
            offset=offset,
            fd=fd,
            ret=ret,
            flags=flags,
        )

    def task(
        self,
        pid: int,
        tid: int,
        op: TaskOp,
        comm: str,
        ts: int,
        *,
        parent: int = 0,
        workload: str = "",
    ) -> None:
        k, u = comm_words(comm)
        self.add(
            kind=Kind.TASK,
            op=op,
            pid=pid,
            tid=tid,
            ts_ns=ts,
            end_ns=ts,
            key=k,
            user_data=u,
            fd=parent,
        )
        if op in (TaskOp.FORK, TaskOp.THREAD, TaskOp.EXEC):
            self.tasks.append(
                TaskInfo(pid=pid, tid=tid, comm=comm, ppid=parent, start_ns=ts, workload=workload)
            )

    def lost(self, ts: int, end: int, count: int, probe: int) -> None:
        self.add(kind=Kind.LOST, ts_ns=ts, end_ns=end, size=count, op=probe)

    def array(self) -> np.ndarray:
        arr = np.zeros(len(self.rows), dtype=EVENT_DTYPE)
        for i, row in enumerate(self.rows):
            for k, v in row.items():
                arr[i][k] = int(v)
            if "fd" not in row:
                arr[i]["fd"] = -1
        return arr

    def write(
        self,
        path: Path,
        *,
        stats: dict[str, Any] | None = None,
        close: bool = True,
        chunk: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> Path:
        full_meta = {
            "command": "synthetic",
            "kernel": "6.18.0-test",
            "clock": {"monotonic_ns": T0, "wall": 1764190000.0},
            **(meta or {}),
        }
        if self.workloads:
            full_meta["workloads"] = self.workloads
        w = TraceWriter(path, full_meta)
        arr = self.array()
        arr = arr[np.argsort(arr["end_ns"], kind="stable")]  # drain order: by completion
        step = chunk or max(len(arr), 1)
        w.write_tasks(self.tasks[: len(self.tasks) // 2])
        for i in range(0, len(arr), step):
            w.write_events(arr[i : i + step])
        w.write_tasks(self.tasks[len(self.tasks) // 2 :])
        w.write_stats(stats or {"lost": {}, "unmatched": {}, "evicted": {}})
        if close:
            w.close({"stats": stats} if stats else None)
        else:
            w._file.close()  # the writer "died": no footer
        return path

    def workload(self, name: str, model: str, api: str, pids: list[int]) -> None:
        self.workloads.append({"name": name, "model": model, "api": api, "pids": pids})


# --- one builder per model, with the counts the tests assert -------------------------


def sync_blocking(
    b: TraceBuilder, pid: int = 100, t: int = T0, *, pipe_reads: int = 23, preads: int = 29
) -> int:
    """23 pipe reads that each sleep 20 ms, then 29 O_DIRECT preads of 48 us."""
    b.task(pid, pid, TaskOp.FORK, "sync-blocking", t, parent=1, workload="sync-blocking")
    b.workload("sync-blocking", "sync-blocking", "read", [pid])
    for _ in range(pipe_reads):
        b.off_cpu(pid, pid, t + 2 * US, t + 2 * US + 20 * MS - 10 * US, runq=5 * US, op=1)
        t = (
            b.syscall(
                pid, pid, "read", t, 20 * MS, ret=4096, fd=3, off_cpu=20 * MS - 10 * US, runq=5 * US
            )
            + 10 * US
        )
    for i in range(preads):
        b.off_cpu(pid, pid, t + 3 * US, t + 45 * US, op=2)
        t = (
            b.syscall(
                pid, pid, "pread64", t, 48 * US, ret=4096, fd=4, off_cpu=42 * US, offset=i * 4096
            )
            + 10 * US
        )
    b.task(pid, pid, TaskOp.EXIT, "sync-blocking", t)
    return t


def sync_nonblocking(
    b: TraceBuilder, pid: int = 200, t: int = T0, *, requests: int = 17, tries: int = 5
) -> int:
    """Each request: `tries` reads returning EAGAIN (1 us each, spinning), then one read."""
    b.task(pid, pid, TaskOp.FORK, "sync-nonblock", t, parent=1)
    b.workload("sync-nonblocking", "sync-nonblocking", "read", [pid])
    for _ in range(requests):
        for _ in range(tries):
            t = b.syscall(pid, pid, "read", t, 1 * US, ret=-events.EAGAIN, fd=3) + 1 * US
        t = b.syscall(pid, pid, "read", t, 3 * US, ret=512, fd=3) + 1 * US
    return t


def multiplexed(
    b: TraceBuilder, mux: str, pid: int = 300, t: int = T0, *, requests: int = 19
) -> int:
    """select/poll/epoll: sleep 10 ms in the multiplexer, then a read that returns at once."""
    b.task(pid, pid, TaskOp.FORK, mux, t, parent=1)
    b.workload(mux, "async-blocking", mux, [pid])
    for i in range(requests):
        b.off_cpu(pid, pid, t + 1 * US, t + 10 * MS - 1 * US, op=SYSCALL_BY_NAME[mux].op)
        t = b.syscall(pid, pid, mux, t, 10 * MS, ret=1, fd=-1, size=4, off_cpu=10 * MS - 2 * US)
        t = b.syscall(pid, pid, "read", t + 1 * US, 4 * US, ret=100, fd=3 + i % 4) + 1 * US
    return t


def libaio(
    b: TraceBuilder, pid: int = 400, t: int = T0, *, batches: int = 7, depth: int = 4
) -> int:
    """io_submit of `depth` iocbs, io_getevents reaping all of them 200 us later."""
    b.task(pid, pid, TaskOp.FORK, "libaio", t, parent=1)
    b.workload("libaio", "async-nonblocking", "libaio", [pid])
    for n in range(batches):
        sub = t
        t = b.syscall(pid, pid, "io_submit", t, 10 * US, ret=depth, fd=-1, size=depth)
        for i in range(depth):
            b.request(
                Kind.AIO_REQUEST,
                pid,
                pid,
                sub + 2 * US + i * US,
                sub + 210 * US,
                kdone=sub + 150 * US,
                key=0x7F0000 + i * 64,
                user_data=n * depth + i,
                offset=(n * depth + i) * 4096,
            )
        b.off_cpu(pid, pid, t + 2 * US, sub + 208 * US, op=SYSCALL_BY_NAME["io_getevents"].op)
        t = b.syscall(
            pid,
            pid,
            "io_getevents",
            t + 1 * US,
            sub + 210 * US - t - 1 * US,
            ret=depth,
            fd=-1,
            size=depth,
            off_cpu=sub + 206 * US - t,
        )
        t += 5 * US
    return t


def io_uring(
    b: TraceBuilder,
    pid: int = 500,
    t: int = T0,
    *,
    batches: int = 5,
    depth: int = 8,
    not_observed: int = 0,
) -> int:
    """io_uring_enter submitting `depth` SQEs; half the requests go to io-wq workers."""
    b.task(pid, pid, TaskOp.FORK, "io_uring", t, parent=1)
    b.workload("io_uring", "async-nonblocking", "io_uring", [pid])
    for n in range(batches):
        enter = t
        for i in range(depth):
            worker = int(Flag.WORKER) if i % 2 else 0
            kdone = 0 if (n == 0 and i < not_observed) else enter + 100 * US + i * US
            b.request(
                Kind.URING_REQUEST,
                pid,
                pid,
                enter + 1 * US + i * 100,
                0,
                kdone=kdone,
                key=0xFFFF0000 + i * 256,
                user_data=n * depth + i,
                op=22,
                flags=worker,
            )
        t = b.syscall(
            pid, pid, "io_uring_enter", t, 300 * US, ret=depth, fd=7, size=depth, off_cpu=250 * US
        )
        t += 5 * US
    return t


def posix_aio(
    b: TraceBuilder, pid: int = 600, t: int = T0, *, requests: int = 13, uprobes: bool = False
) -> int:
    """glibc POSIX AIO: the main thread sleeps in futex (untraced); a helper thread preads."""
    helper = pid + 1
    b.task(pid, pid, TaskOp.FORK, "posix-aio", t, parent=1)
    b.task(pid, helper, TaskOp.THREAD, "posix-aio", t + 5 * US, parent=pid)
    b.workload("posix-aio", "async-nonblocking", "posix-aio", [pid])
    b.off_cpu(pid, pid, t + 10 * US, t + requests * 60 * US + 20 * US)
    h = t + 10 * US
    for i in range(requests):
        if uprobes:
            b.request(
                Kind.POSIX_AIO_REQUEST,
                pid,
                pid,
                h - 2 * US,
                h + 55 * US,
                key=0xABC000 + i,
                user_data=i,
                op=0,
                fd=5,
                offset=i * 4096,
            )
        h = (
            b.syscall(
                pid, helper, "pread64", h, 50 * US, ret=4096, fd=5, off_cpu=45 * US, offset=i * 4096
            )
            + 10 * US
        )
    return h


def all_models(b: TraceBuilder) -> None:
    sync_blocking(b)
    sync_nonblocking(b)
    for pid, mux in ((300, "select"), (310, "poll"), (320, "epoll_wait")):
        multiplexed(b, mux, pid)
    libaio(b)
    io_uring(b)
    posix_aio(b)


def write_all(tmp: Path, name: str = "all.trace", **kw: Any) -> Path:
    b = TraceBuilder()
    all_models(b)
    return b.write(tmp / name, **kw)
