"""Deterministic synthetic traces of the four models, and a scripted source
that replays them batch by batch. Used by the TUI tests (fixed clock, exact
snapshots) and by `bench/dashboard.py` (millions of events without root).

The shapes follow what the real workloads produce: a blocking `pread64`
that sleeps inside the call, an `O_NONBLOCK` `read` loop where most calls
return EAGAIN, `epoll_wait` followed by a `read` that returns at once, and
io_uring requests that overlap in flight between `io_uring_enter` calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iotrace.events import EAGAIN, PROBE_SCHED, SYSCALL_BY_NAME, Flag, Kind
from iotrace.session import EVENT_DTYPE, TaskInfo
from iotrace.source import Batch

T0_NS = 1_000_000_000_000
"""Synthetic traces start at CLOCK_MONOTONIC = 1000 s."""

WORKLOADS: list[dict[str, Any]] = [
    {"name": "blocking-read", "model": "sync-blocking", "api": "pread64", "pids": [1001]},
    {"name": "nonblocking-read", "model": "sync-nonblocking", "api": "read", "pids": [1002]},
    {"name": "epoll-read", "model": "async-blocking", "api": "epoll", "pids": [1003]},
    {"name": "uring-read", "model": "async-nonblocking", "api": "io_uring", "pids": [1004]},
]
TASKS: list[TaskInfo] = [
    TaskInfo(1001, 1001, "psync", start_ns=T0_NS, workload="blocking-read"),
    TaskInfo(1002, 1002, "nbread", start_ns=T0_NS, workload="nonblocking-read"),
    TaskInfo(1003, 1003, "epollrd", start_ns=T0_NS, workload="epoll-read"),
    TaskInfo(1004, 1004, "uringrd", start_ns=T0_NS, workload="uring-read"),
]


def _op(name: str) -> int:
    return SYSCALL_BY_NAME[name].op


def _records(n: int) -> np.ndarray:
    return np.zeros(n, dtype=EVENT_DTYPE)


def _sync_blocking(t0: int, dur_ns: int, per_call_ns: int) -> np.ndarray:
    n = max(1, dur_ns // per_call_ns)
    r = _records(n)
    start = t0 + np.arange(n, dtype=np.int64) * per_call_ns
    # Deterministic spread, so percentiles differ: calls take 45-90% of the period.
    call = per_call_ns * (45 + (np.arange(n, dtype=np.int64) * 37) % 46) // 100
    r["kind"], r["op"], r["pid"], r["tid"], r["fd"] = Kind.SYSCALL, _op("pread64"), 1001, 1001, 5
    r["ts_ns"] = start
    r["end_ns"] = start + call
    r["off_cpu_ns"] = call * 85 // 100
    r["runq_ns"] = call * 3 // 100
    r["size"] = 4096
    r["ret"] = 4096
    r["offset"] = (np.arange(n, dtype=np.uint64) * np.uint64(7919) % np.uint64(262144)) * 4096
    return r


def _sync_nonblocking(t0: int, dur_ns: int, pace_ns: int, spins: int) -> np.ndarray:
    """`spins` EAGAIN calls then one read that gets data, every `pace_ns`."""
    nreq = max(1, dur_ns // pace_ns)
    per = spins + 1
    step = pace_ns // per
    n = nreq * per
    r = _records(n)
    i = np.arange(n, dtype=np.int64)
    start = t0 + (i // per) * pace_ns + (i % per) * step
    r["kind"], r["op"], r["pid"], r["tid"], r["fd"] = Kind.SYSCALL, _op("read"), 1002, 1002, 3
    r["ts_ns"] = start
    r["end_ns"] = start + step * 7 // 10
    r["size"] = 4096
    last = (i % per) == spins
    r["ret"] = np.where(last, 4096, -EAGAIN)
    return r


def _async_blocking(t0: int, dur_ns: int, pace_ns: int) -> np.ndarray:
    nreq = max(1, dur_ns // pace_ns)
    r = _records(2 * nreq)
    base = t0 + np.arange(nreq, dtype=np.int64) * pace_ns
    wait = pace_ns * 95 // 100
    w, d = r[0::2], r[1::2]
    w["kind"], w["op"], w["pid"], w["tid"], w["fd"] = Kind.SYSCALL, _op("epoll_wait"), 1003, 1003, 4
    w["ts_ns"] = base
    w["end_ns"] = base + wait
    w["off_cpu_ns"] = wait * 97 // 100
    w["runq_ns"] = wait * 1 // 100
    w["size"] = 8
    w["ret"] = 1
    d["kind"], d["op"], d["pid"], d["tid"], d["fd"] = Kind.SYSCALL, _op("read"), 1003, 1003, 6
    d["ts_ns"] = base + wait + 2000
    d["end_ns"] = base + wait + 5000
    d["size"] = 4096
    d["ret"] = 4096
    return r


def _async_nonblocking(t0: int, dur_ns: int, pace_ns: int, depth: int) -> np.ndarray:
    """io_uring: each io_uring_enter submits `depth` requests and waits for them."""
    nround = max(1, dur_ns // pace_ns)
    r = _records(nround * (depth + 1))
    base = t0 + np.arange(nround, dtype=np.int64) * pace_ns
    enter = r[:nround]
    enter["kind"], enter["op"] = Kind.SYSCALL, _op("io_uring_enter")
    enter["pid"], enter["tid"], enter["fd"] = 1004, 1004, 7
    enter["ts_ns"] = base
    enter["end_ns"] = base + pace_ns * 9 // 10
    enter["off_cpu_ns"] = pace_ns * 8 // 10
    enter["size"] = depth
    enter["offset"] = depth
    enter["ret"] = depth
    req = r[nround:]
    j = np.arange(nround * depth, dtype=np.int64)
    rnd, k = j // depth, j % depth
    req["kind"], req["op"], req["pid"], req["tid"], req["fd"] = (
        Kind.URING_REQUEST,
        22,
        1004,
        1004,
        8,
    )
    req["ts_ns"] = base[rnd] + k * 1000
    req["kdone_ns"] = base[rnd] + pace_ns * (2 + (k * 3 + rnd) % 7) // 10
    req["end_ns"] = base[rnd] + pace_ns * 9 // 10
    req["size"] = 4096
    req["ret"] = 4096
    req["offset"] = (j.astype(np.uint64) * np.uint64(104729) % np.uint64(262144)) * 4096
    req["key"] = 0xFFFF0000 + j
    req["flags"] = np.where(k % 4 == 3, int(Flag.WORKER), 0)
    return r


def _lost(ts: int, end: int, count: int) -> np.ndarray:
    r = _records(1)
    r["kind"], r["op"], r["ts_ns"], r["end_ns"], r["size"] = Kind.LOST, PROBE_SCHED, ts, end, count
    return r


@dataclass
class SyntheticTrace:
    events: np.ndarray
    """All records, sorted by end time (the order a drain produces)."""
    tasks: list[TaskInfo]
    meta: dict[str, Any]
    t0_ns: int
    t1_ns: int


EVENTS_PER_SECOND = 54_000
"""What make_trace(scale=1) produces per second of trace, whatever `threads`."""


def duration_for(n_events: int) -> float:
    """Seconds of make_trace(scale=1) that hold about `n_events` records (at least 1)."""
    return max(n_events / EVENTS_PER_SECOND, 1.0)


def make_trace(
    duration_s: float = 4.0,
    *,
    scale: float = 1.0,
    lost_at_s: float | None = 2.0,
    t0_ns: int = T0_NS,
    threads: int = 1,
) -> SyntheticTrace:
    """Four workloads, one per model, for `duration_s`; `scale` multiplies the event rates.
    `threads` > 1 gives each workload that many threads sharing its rate (lanes to fill
    a screen, with the same number of events)."""
    d = int(duration_s * 1e9)
    k = max(threads, 1)
    s = max(scale, 1e-3) / k
    parts = []
    tasks = list(TASKS)
    for j in range(k):
        t0 = t0_ns + j * 1_000  # threads of a workload out of step
        group = [
            _sync_blocking(t0, d, int(250_000 / s)),
            _sync_nonblocking(t0, d, int(1_000_000 / s), 24),
            _async_blocking(t0, d, int(800_000 / s)),
            _async_nonblocking(t0, d, int(400_000 / s), 8),
        ]
        if j:
            for part, task in zip(group, TASKS, strict=True):
                part["tid"] = task.tid + 1000 * j
                tasks.append(dataclasses.replace(task, tid=task.tid + 1000 * j))
        parts += group
    if lost_at_s is not None:
        lt = t0_ns + int(lost_at_s * 1e9)
        parts.append(_lost(lt, lt + 50_000_000, 1234))
    ev = np.concatenate(parts)
    done = np.maximum(ev["end_ns"], ev["ts_ns"])
    ev = ev[np.argsort(done, kind="stable")]
    meta = {
        "workloads": WORKLOADS,
        "clock": {"monotonic_ns": t0_ns, "wall_ns": 1_700_000_000_000_000_000},
        "tool": "iotrace synthetic",
    }
    return SyntheticTrace(ev, tasks, meta, t0_ns, t0_ns + d)


def write_trace(path: Path, trace: SyntheticTrace, *, chunk: int = 200_000) -> Path:
    """Save a synthetic trace as a real trace file (for `iotrace view` and its benchmark)."""
    from iotrace.session import TraceWriter

    with TraceWriter(path, trace.meta, force=True) as w:
        w.write_tasks(trace.tasks)
        for start in range(0, len(trace.events), chunk):
            w.write_events(trace.events[start : start + chunk])
        w.write_stats({"lost": {"sched": 1234}, "unmatched": {}, "evicted": {}})
    return path


@dataclass
class ScriptedSource:
    """A `TraceSource` that hands out pre-cut batches, then ends (or waits forever)."""

    batches: list[Batch]
    meta: dict[str, Any] = field(default_factory=dict)
    live: bool = True
    path: Path | None = None
    end_after: bool = True
    """False: after the last batch, keep returning empty batches until stopped."""

    def __post_init__(self) -> None:
        self._i = 0
        self._stopped = False

    def read(self, timeout: float) -> Batch | None:
        if self._i < len(self.batches):
            self._i += 1
            return self.batches[self._i - 1]
        if self.end_after or self._stopped:
            return None
        import time

        time.sleep(min(timeout, 0.05))
        last = self.batches[-1].now_ns if self.batches else 0
        return Batch(events=np.zeros(0, dtype=EVENT_DTYPE), now_ns=last)

    def stop(self) -> None:
        self._stopped = True


def scripted_source(
    trace: SyntheticTrace,
    *,
    batch_ns: int = 100_000_000,
    live: bool = True,
    end_after: bool = True,
    stats: dict[str, Any] | None = None,
) -> ScriptedSource:
    """Cut a synthetic trace into batches of `batch_ns` of drain time."""
    ev = trace.events
    done = np.maximum(ev["end_ns"], ev["ts_ns"]).astype(np.int64)
    cuts = np.arange(trace.t0_ns + batch_ns, trace.t1_ns + batch_ns, batch_ns, dtype=np.int64)
    edges = np.searchsorted(done, cuts, side="right")
    batches: list[Batch] = []
    prev = 0
    for i, (cut, edge) in enumerate(zip(cuts.tolist(), edges.tolist(), strict=True)):
        part = ev[prev:edge]
        prev = edge
        st = dict(stats or {"lost": {"sched": 1234}, "unmatched": {}, "evicted": {}})
        batches.append(
            Batch(events=part, tasks=list(trace.tasks) if i == 0 else [], stats=st, now_ns=cut)
        )
    return ScriptedSource(batches, dict(trace.meta), live=live, end_after=end_after)
