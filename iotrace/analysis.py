"""Figures from a trace: per process, thread and workload, per request.

Everything here works without root or bcc. `analyze_file` reads a trace one
batch of records at a time and never holds its records: each batch is folded
into per-thread accumulators (calls, sums, time shares, batch sizes, spans),
and the only memory that grows with the trace is a few narrow columns per
request and per call (start and latency of each request, duration of each
call), which the exact percentiles and the in-flight depth need. `analyze`
does the same over a loaded `session.Trace`; `frames` turns a loaded trace
into pandas frames (syscalls, requests, off-CPU intervals) for the Perfetto
export and for anyone who wants every record.

What a *request* is depends on the model, so that latencies compare across
models as the program sees them:

- a sync data call (read/write/recv/send families) that did not fail with
  EAGAIN is one request. It starts at the first attempt since the previous
  request on the same thread and fd finished: a retry loop's EAGAIN calls and
  a multiplexer wait before the read are part of the request's latency;
- a Linux AIO or POSIX AIO request runs from submit to reap. An io_uring
  completion is reaped from shared memory, so its reap is inferred
  (`reap_inferred`): the end of the io_uring_enter the program was waiting in
  when the kernel completed it, else the completion itself.
  `kernel_ns` is always submit to kernel completion where the kernel reported it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from iotrace import events, runs, session
from iotrace.classify import POSITIONAL, Activity, Label, classify, combine, io_units
from iotrace.events import SYSCALL_BY_OP, Flag, Kind
from iotrace.session import Trace

if TYPE_CHECKING:
    # pandas is imported where frames are built, not here: `report` never needs
    # it, and it is half of a streaming report's memory.
    import pandas as pd

_FAMILY_BY_NAME: dict[str, str] = {s.name: s.family for s in events.SYSCALLS}
DATA_FAMILIES = ("read", "write", "recv", "send", "copy")
MUX_FAMILY = "mux"
FAULT_FAMILY = "fault"
"""Major page faults of mapped files: each is a sync request (memory-mapped I/O)."""
# Requests that no multiplexer wait starts: positional calls work on files only,
# which no multiplexer reports ready, and a page fault is no call at all.
_UNWAITED: Final = POSITIONAL | {"page_fault"}
# Calls in which a thread that sleeps is waiting for I/O to finish (not for readiness).
_IO_WAIT_CALLS = frozenset({"io_getevents", "io_pgetevents", "io_submit", "io_uring_enter"})
ASYNC_APIS = {
    int(Kind.AIO_REQUEST): "libaio",
    int(Kind.URING_REQUEST): "io_uring",
    int(Kind.POSIX_AIO_REQUEST): "posix-aio",
}

# IOCB_CMD_* (linux/aio_abi.h) and IORING_OP_* (linux/io_uring.h) names for display.
AIO_OPS = {
    0: "pread",
    1: "pwrite",
    2: "fsync",
    3: "fdsync",
    5: "poll",
    6: "noop",
    7: "preadv",
    8: "pwritev",
}
URING_OPS = {
    0: "nop",
    1: "readv",
    2: "writev",
    3: "fsync",
    4: "read_fixed",
    5: "write_fixed",
    6: "poll_add",
    7: "poll_remove",
    8: "sync_file_range",
    9: "sendmsg",
    10: "recvmsg",
    11: "timeout",
    12: "timeout_remove",
    13: "accept",
    14: "async_cancel",
    15: "link_timeout",
    16: "connect",
    17: "fallocate",
    18: "openat",
    19: "close",
    20: "files_update",
    21: "statx",
    22: "read",
    23: "write",
    24: "fadvise",
    25: "madvise",
    26: "send",
    27: "recv",
}
POSIX_AIO_OPS = {0: "aio_read", 1: "aio_write", 2: "aio_fsync"}


def request_op_name(kind: int, op: int) -> str:
    """Display name of an async request's opcode."""
    table = {
        int(Kind.AIO_REQUEST): AIO_OPS,
        int(Kind.URING_REQUEST): URING_OPS,
        int(Kind.POSIX_AIO_REQUEST): POSIX_AIO_OPS,
    }.get(kind, {})
    return table.get(op, f"op{op}")


def op_names(kinds: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """Vectorised `events.op_name` / `request_op_name` for a whole column."""
    out = np.empty(len(kinds), dtype=object)
    code = kinds.astype("int64") << 16 | ops.astype("int64")
    uniq, inverse = np.unique(code, return_inverse=True)
    for i, c in enumerate(uniq.tolist()):
        k, o = c >> 16, c & 0xFFFF
        name = request_op_name(k, o) if k in ASYNC_APIS else events.op_name(k, o)
        out[inverse == i] = name
    return out


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts (for the few loops that need one row at a time)."""
    return cast(list[dict[str, Any]], df.to_dict("records"))


def kind_names(kinds: np.ndarray) -> np.ndarray:
    names = {int(k): k.name.lower() for k in Kind}
    return np.array([names.get(int(k), f"kind{int(k)}") for k in kinds], dtype=object)


# ---------------------------------------------------------------------------
# Frames


@dataclass
class Frames:
    """The records of one trace as pandas frames (times in ns, CLOCK_MONOTONIC)."""

    syscalls: pd.DataFrame
    """One row per completed syscall: pid tid name family ts_ns end_ns dur_ns off_cpu_ns
    runq_ns ret fd size offset flags eagain."""
    requests: pd.DataFrame
    """One row per request: pid tid api sync op fd size offset start_ns submit_ns kdone_ns
    reap_ns done_ns latency_ns kernel_ns ret bytes worker observed key user_data."""
    off_cpu: pd.DataFrame
    """One row per off-CPU interval: pid tid ts_ns end_ns runq_ns op."""
    lost: pd.DataFrame
    """One row per LOST record: ts_ns end_ns count probe."""
    tasks: pd.DataFrame
    """One row per task event: pid tid ts_ns op comm (fork/thread/exec/exit)."""
    start_ns: int
    end_ns: int


def _col(ev: np.ndarray, name: str, dtype: str = "int64") -> np.ndarray:
    return ev[name].astype(dtype)


def _syscall_frame(ev: np.ndarray) -> pd.DataFrame:
    import pandas as pd

    ops = ev["op"]
    names = (
        np.array(
            [SYSCALL_BY_OP[o].name if o in SYSCALL_BY_OP else f"syscall{o}" for o in ops.tolist()],
            dtype=object,
        )
        if len(ev)
        else np.zeros(0, dtype=object)
    )
    ts = _col(ev, "ts_ns")
    end = _col(ev, "end_ns")
    ret = _col(ev, "ret")
    df = pd.DataFrame(
        {
            "pid": _col(ev, "pid"),
            "tid": _col(ev, "tid"),
            "name": names,
            "family": np.array([_FAMILY_BY_NAME.get(n, "other") for n in names], dtype=object),
            "ts_ns": ts,
            "end_ns": end,
            "dur_ns": np.maximum(end - ts, 0),
            "off_cpu_ns": _col(ev, "off_cpu_ns"),
            "runq_ns": _col(ev, "runq_ns"),
            "ret": ret,
            "fd": _col(ev, "fd"),
            "size": _col(ev, "size"),
            "offset": ev["offset"].astype("uint64"),
            "flags": _col(ev, "flags"),
        }
    )
    df["eagain"] = df["ret"] == -events.EAGAIN
    return df.sort_values(["ts_ns", "tid"], kind="stable").reset_index(drop=True)


_EPOLL_ADD: Final = (1, 3)
"""EPOLL_CTL_ADD and EPOLL_CTL_MOD: the fd is in the set after either."""
_FD_BITS: Final = 21


def _epoll_key(pid: Any, epfd: Any, fd: Any = 0) -> Any:
    """(pid, epoll fd[, fd]) as one integer, scalar or array (fds below 2**21)."""
    return (pid << (2 * _FD_BITS)) | ((epfd & _FD_MASK) << _FD_BITS) | (fd & _FD_MASK)


_FD_MASK: Final = (1 << _FD_BITS) - 1


def _registered(
    pid: np.ndarray, wait_fd: np.ndarray, fd: np.ndarray, sets: set[int], known: set[int]
) -> np.ndarray:
    """Whether the wait (its epoll fd, or -1 for poll/select) can have reported
    `fd` ready: poll and select name no set; an epoll set whose epoll_ctl calls
    were not seen (traced from mid-run) might hold any fd; else `fd` must have
    been added to it."""
    ok = wait_fd < 0
    rest = np.flatnonzero(~ok)
    if len(rest):
        p, w, f = pid[rest], wait_fd[rest], fd[rest]
        ok[rest] = ~np.isin(_epoll_key(p, w), np.fromiter(known, np.int64, len(known)))
        ok[rest] |= np.isin(_epoll_key(p, w, f), np.fromiter(sets, np.int64, len(sets)))
    return ok


def _epoll_sets(sc: pd.DataFrame) -> tuple[set[int], set[int]]:
    """The fds added to each epoll set, and the sets seen: (pid, epfd, fd) and
    (pid, epfd) keys, from the successful epoll_ctl calls."""
    ctl = sc[(sc["name"] == "epoll_ctl") & (sc["ret"] == 0)]
    pid = ctl["pid"].to_numpy(np.int64)
    epfd = ctl["offset"].to_numpy().astype(np.int64)
    add = np.isin(ctl["size"].to_numpy(), _EPOLL_ADD)
    fd = ctl["fd"].to_numpy(np.int64)
    return (
        set(_epoll_key(pid[add], epfd[add], fd[add]).tolist()),
        set(_epoll_key(pid, epfd).tolist()),
    )


def _sync_requests(sc: pd.DataFrame) -> pd.DataFrame:
    """Requests made with sync data calls, with start times per the module doc."""
    import pandas as pd

    data = sc[sc["family"].isin((*DATA_FAMILIES, FAULT_FAMILY))]
    if data.empty:
        return _empty_requests()
    data = data.sort_values(["tid", "fd", "ts_ns"], kind="stable")
    done = ~data["eagain"].to_numpy()
    key = data["tid"].to_numpy() * (1 << 24) + data["fd"].to_numpy()
    # A chain = EAGAIN attempts followed by the call that did not fail with EAGAIN;
    # a chain starts at a new (tid, fd) or after a completed call.
    new_key = np.r_[True, key[1:] != key[:-1]]
    prev_done = np.r_[False, done[:-1]]
    starts_chain = new_key | prev_done
    chain = np.cumsum(starts_chain) - 1
    ts = data["ts_ns"].to_numpy()
    end = data["end_ns"].to_numpy()
    first_try = ts[starts_chain][chain]
    # The end of the previous request on the same (tid, fd), -1 for the first one: a
    # multiplexer wait that began after it is part of this request.
    prev_end = np.where(new_key, -1, np.r_[0, end[:-1]])[starts_chain][chain]
    start = first_try.copy()
    # Only a wait that found something ready starts a request (one that timed out
    # is idle time), and never one made with a positional call or a page fault.
    mux = sc[(sc["family"] == MUX_FAMILY) & (sc["ret"] > 0)]
    movable = ~data["name"].isin(_UNWAITED).to_numpy()
    waited = np.zeros(len(data), dtype=bool)
    sets, known = _epoll_sets(sc)
    if not mux.empty:
        tids = data["tid"].to_numpy()
        pids = data["pid"].to_numpy(np.int64)
        fds = data["fd"].to_numpy(np.int64)
        for tid, mux_t in mux.groupby("tid"):
            sel = np.flatnonzero((tids == tid) & done & movable)
            if not len(sel):
                continue
            # A thread makes one call at a time, so its waits sorted by start are
            # sorted by end too. The wait that found this fd ready is the last one
            # that ended before the call began; it counts when it began after the
            # previous request on the fd finished (else the data was already there).
            m = mux_t.sort_values("ts_ns")
            m_ts = m["ts_ns"].to_numpy()
            m_end = m["end_ns"].to_numpy()
            m_fd = m["fd"].to_numpy(np.int64)
            i = np.searchsorted(m_end, ts[sel], side="right") - 1
            ok = i >= 0
            wait_ts = m_ts[np.clip(i, 0, None)]
            ok &= (prev_end[sel] < 0) | (wait_ts >= prev_end[sel])
            ok &= _registered(pids[sel], m_fd[np.clip(i, 0, None)], fds[sel], sets, known)
            start[sel] = np.where(ok, wait_ts, start[sel])
            waited[sel] = ok
    data = data.assign(start_ns=start, waited=waited)[done]
    if data.empty:
        return _empty_requests()
    ret = data["ret"].to_numpy()
    return pd.DataFrame(
        {
            "pid": data["pid"].to_numpy(),
            "tid": data["tid"].to_numpy(),
            "api": data["name"].to_numpy(),
            "sync": True,
            "op": data["name"].to_numpy(),
            "fd": data["fd"].to_numpy(),
            "size": data["size"].to_numpy(),
            "offset": data["offset"].to_numpy(),
            "start_ns": data["start_ns"].to_numpy(),
            "submit_ns": data["ts_ns"].to_numpy(),
            "kdone_ns": data["end_ns"].to_numpy(),
            "reap_ns": data["end_ns"].to_numpy(),
            "done_ns": data["end_ns"].to_numpy(),
            "latency_ns": data["end_ns"].to_numpy() - data["start_ns"].to_numpy(),
            "kernel_ns": data["dur_ns"].to_numpy(),
            "ret": ret,
            "bytes": np.maximum(ret, 0),
            "worker": False,
            "reap_inferred": False,
            "observed": True,
            "key": np.zeros(len(data), dtype="uint64"),
            "user_data": np.zeros(len(data), "uint64"),
            "waited": data["waited"].to_numpy(),
        }
    )


_REQ_COLUMNS = [
    "pid",
    "tid",
    "api",
    "sync",
    "op",
    "fd",
    "size",
    "offset",
    "start_ns",
    "submit_ns",
    "kdone_ns",
    "reap_ns",
    "done_ns",
    "latency_ns",
    "kernel_ns",
    "ret",
    "bytes",
    "worker",
    "reap_inferred",
    "observed",
    "key",
    "user_data",
    "waited",
]


def _empty_requests() -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="int64") for c in _REQ_COLUMNS}).astype(
        {
            "api": object,
            "op": object,
            "sync": bool,
            "worker": bool,
            "reap_inferred": bool,
            "observed": bool,
            "waited": bool,
            "latency_ns": "float64",
            "kernel_ns": "float64",
            "kdone_ns": "float64",
            "reap_ns": "float64",
            "done_ns": "float64",
        }
    )


def _uring_reap_bound(pids: np.ndarray, kdone: np.ndarray, sc: pd.DataFrame) -> np.ndarray:
    """When an io_uring completion was reaped: the program reads completions from
    shared memory, so the reap itself is not visible. A completion posted while the
    program waited inside io_uring_enter is reaped when that call returns (liburing's
    submit_and_wait, fio, the built-in workloads); one posted while it ran in user
    space (task work on the way out of a syscall, or after an interrupt) can be
    reaped at once, so its completion time is taken. NaN when the process made no
    io_uring_enter call at all (SQPOLL)."""
    out = np.full(len(kdone), np.nan)
    enters = sc[sc["name"] == "io_uring_enter"]
    if enters.empty:
        return out
    for pid, g in enters.groupby("pid"):
        sel = np.flatnonzero((pids == pid) & ~np.isnan(kdone))
        if not len(sel):
            continue
        g = g.sort_values("end_ns")
        starts = g["ts_ns"].to_numpy()
        ends = g["end_ns"].to_numpy()
        k = kdone[sel]
        i = np.searchsorted(ends, k, side="left")
        inside = i < len(ends)
        inside[inside] &= starts[i[inside]] <= k[inside]
        out[sel] = np.where(inside, ends[np.clip(i, 0, len(ends) - 1)], k)
    return out


def _async_requests(ev: np.ndarray, sc: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    kinds = ev["kind"]
    sel = np.isin(kinds, list(ASYNC_APIS))
    r = ev[sel]
    if not len(r):
        return _empty_requests()
    kind = r["kind"].astype("int64")
    api = np.array([ASYNC_APIS[int(k)] for k in kind], dtype=object)
    ts = _col(r, "ts_ns")
    end = _col(r, "end_ns").astype("float64")
    kdone = _col(r, "kdone_ns").astype("float64")
    flags = _col(r, "flags")
    not_obs = (flags & int(Flag.NOT_OBSERVED)) != 0
    is_uring = kind == int(Kind.URING_REQUEST)
    reap = np.where((end > 0) & ~not_obs & ~is_uring, end, np.nan)
    kdone = np.where(kdone > 0, kdone, np.nan)
    uring_reap = _uring_reap_bound(r["pid"].astype("int64"), kdone, sc)
    inferred = is_uring & ~np.isnan(uring_reap)
    reap = np.where(inferred, uring_reap, reap)
    # io_uring completions are reaped from shared memory: without a bound from the
    # program's io_uring_enter calls, kernel completion is the end.
    done = np.where(is_uring, np.where(inferred, reap, kdone), reap)
    observed = ~np.isnan(done) & ~(is_uring & np.isnan(kdone))
    ret = _col(r, "ret")
    return pd.DataFrame(
        {
            "pid": _col(r, "pid"),
            "tid": _col(r, "tid"),
            "api": api,
            "sync": False,
            "op": op_names(r["kind"], r["op"]),
            "fd": _col(r, "fd"),
            "size": _col(r, "size"),
            "offset": r["offset"].astype("uint64"),
            "start_ns": ts,
            "submit_ns": ts,
            "kdone_ns": kdone,
            "reap_ns": reap,
            "done_ns": done,
            "latency_ns": done - ts,
            "kernel_ns": kdone - ts,
            "ret": ret,
            "bytes": np.where(observed, np.maximum(ret, 0), 0),
            "worker": (flags & int(Flag.WORKER)) != 0,
            "reap_inferred": inferred,
            "observed": observed,
            "key": r["key"].astype("uint64"),
            "user_data": r["user_data"].astype("uint64"),
            "waited": False,
        }
    )


def frames(trace: Trace) -> Frames:
    """All of a trace's records as frames."""
    import pandas as pd

    ev = trace.events
    if runs.has_runs(ev):
        ev = np.concatenate(list(runs.expand(ev)))
    kinds = ev["kind"]
    sc = _syscall_frame(ev[kinds == int(Kind.SYSCALL)])
    reqs = pd.concat(
        [df for df in (_sync_requests(sc), _async_requests(ev, sc)) if not df.empty]
        or [_empty_requests()],
        ignore_index=True,
    )
    oc = ev[kinds == int(Kind.OFF_CPU)]
    off = pd.DataFrame(
        {
            "pid": _col(oc, "pid"),
            "tid": _col(oc, "tid"),
            "ts_ns": _col(oc, "ts_ns"),
            "end_ns": _col(oc, "end_ns"),
            "runq_ns": _col(oc, "runq_ns"),
            "op": _col(oc, "op"),
        }
    )
    off = off[off["end_ns"] >= off["ts_ns"]]
    lo = ev[kinds == int(Kind.LOST)]
    lost = pd.DataFrame(
        {
            "ts_ns": _col(lo, "ts_ns"),
            "end_ns": _col(lo, "end_ns"),
            "count": _col(lo, "size"),
            "probe": [events.probe_name(int(o)) for o in lo["op"]],
        }
    )
    tk = ev[kinds == int(Kind.TASK)]
    tasks = pd.DataFrame(
        {
            "pid": _col(tk, "pid"),
            "tid": _col(tk, "tid"),
            "ts_ns": _col(tk, "ts_ns"),
            "op": _col(tk, "op"),
            "fd": _col(tk, "fd"),
            "comm": [
                events.comm_from_words(int(k), int(u))
                for k, u in zip(tk["key"].tolist(), tk["user_data"].tolist(), strict=True)
            ],
        }
    )
    times = np.concatenate([ev["ts_ns"], ev["end_ns"], ev["kdone_ns"]]).astype("int64")
    times = times[times > 0]
    start = int(times.min()) if len(times) else 0
    end = int(times.max()) if len(times) else 0
    return Frames(sc, reqs, off, lost, tasks, start, end)


# ---------------------------------------------------------------------------
# Summaries


def percentiles_us(values: Iterable[float] | np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99/max in microseconds (None when there are no values)."""
    arr = np.asarray(values, dtype="float64")
    arr = arr[~np.isnan(arr)]
    if not len(arr):
        return {"p50": None, "p90": None, "p99": None, "max": None}
    p = np.percentile(arr, [50, 90, 99]) / 1000.0
    return {
        "p50": round(float(p[0]), 3),
        "p90": round(float(p[1]), 3),
        "p99": round(float(p[2]), 3),
        "max": round(float(arr.max()) / 1000.0, 3),
    }


def depth_stats(start: np.ndarray, end: np.ndarray, span_ns: int) -> dict[str, float]:
    """Time-weighted mean and max number of requests in flight over `span_ns`."""
    ok = ~np.isnan(end.astype("float64")) & (end >= start)
    s = start[ok].astype("int64")
    e = end[ok].astype("int64")
    if not len(s):
        return {"mean": 0.0, "max": 0}
    mean = float((e - s).sum()) / span_ns if span_ns > 0 else 0.0
    return {"mean": round(mean, 3), "max": int(depth_series(s, e)[1].max())}


def depth_series(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(times, depth after each time): the in-flight count as a step function.
    At equal times completions count before submissions, so back-to-back
    requests do not look overlapped."""
    t = np.concatenate([start, end]).astype("int64")
    d = np.concatenate([np.ones(len(start), "int64"), -np.ones(len(end), "int64")])
    order = np.lexsort((d, t))
    t, d = t[order], np.cumsum(d[order])
    # Keep the last value at each time.
    last = np.r_[t[1:] != t[:-1], True]
    return t[last], d[last]


def depth_series_sampled(
    start: np.ndarray, end: np.ndarray, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """`depth_series(start, end)`, then at most `points` of its steps picked evenly
    by index (what a plot shows), in a third of its memory: the depth after time
    t is #{starts <= t} - #{ends <= t}, computed only where it is shown."""
    s = np.sort(np.asarray(start, dtype=np.int64))
    e = np.sort(np.asarray(end, dtype=np.int64))
    t = np.concatenate([s, e])
    t.sort()
    t = t[np.r_[t[1:] != t[:-1], True]] if len(t) else t
    if len(t) > points:
        t = t[np.linspace(0, len(t) - 1, points).astype(int)]
    d = np.searchsorted(s, t, side="right") - np.searchsorted(e, t, side="right")
    return t, d


@dataclass
class Summary:
    """The figures of one process, thread or workload."""

    scope: str
    """"process", "thread", "workload" or "group" (several processes, `summary_of`)."""
    pid: int
    tid: int
    comm: str
    workload: str
    label: Label
    threads: int
    wall_ns: int
    thread_ns: int
    syscalls: dict[str, int]
    eagain: dict[str, int]
    errors: int
    requests: dict[str, Any]
    time_share: dict[str, float | None]
    batch: dict[str, dict[str, float]]
    in_flight: dict[str, float]
    families: dict[str, dict[str, Any]]
    expected_model: str = ""
    thread_summaries: list[Summary] = field(default_factory=list)
    title: str = ""
    """The process title it set (PostgreSQL's "checkpointer"); "" if none."""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": self.pid,
            "comm": self.comm,
            "title": self.title or None,
            "workload": self.workload,
            "model": self.label.model,
            "api": self.label.api,
            "evidence": self.label.evidence,
            "breakdown": {
                k: round(v, 3) for k, v in self.label.breakdown.items() if round(v, 3) > 0
            },
            "expected_model": self.expected_model or None,
            "threads": self.threads,
            "wall_s": round(self.wall_ns / 1e9, 6),
            "syscalls": dict(self.syscalls),
            "eagain": dict(self.eagain),
            "errors": self.errors,
            "requests": self.requests,
            "time_share": self.time_share,
            "batch": self.batch,
            "in_flight": self.in_flight,
            "per_syscall": self.families,
        }
        if self.scope == "thread":
            out["tid"] = self.tid
        else:
            out["thread_list"] = [t.to_json() for t in self.thread_summaries]
        return out


# ---------------------------------------------------------------------------
# The streaming analysis: one pass over batches of records


BATCH_RECORDS: Final = 1 << 17
"""Records folded at a time. A quiet recording writes chunks of a few hundred
records, so chunks are gathered (numpy pays per call, not per record) and big
ones cut, which bounds the temporaries of one batch (~30 MB)."""

_U32: Final = 1 << 32
_SQPOLL: Final = 2
"""IORING_SETUP_SQPOLL, in the flags io_uring_setup records as its offset."""
_INT64_MIN: Final = np.iinfo(np.int64).min
_SYNC: Final = "sync"
"""The request group of sync data calls; async requests are grouped by API."""


def _op_table(pred: Any) -> np.ndarray:
    table = np.zeros(1 << 16, dtype=bool)
    for s in events.SYSCALLS:
        if pred(s):
            table[s.op] = True
    return table


_IS_DATA: Final = _op_table(lambda s: s.family in DATA_FAMILIES)
_IS_MUX: Final = _op_table(lambda s: s.family == MUX_FAMILY)
_IS_FAULT: Final = _op_table(lambda s: s.family == FAULT_FAMILY)
_IS_REQ: Final = _IS_DATA | _IS_FAULT
"""Calls that are sync requests: data calls and major page faults."""
_IS_UNWAITED: Final = _op_table(lambda s: s.name in _UNWAITED)
_IS_IO_WAIT: Final = _op_table(
    lambda s: s.family in (*DATA_FAMILIES, FAULT_FAMILY) or s.name in _IO_WAIT_CALLS
)
_OP: Final = {s.name: s.op for s in events.SYSCALLS}
_BATCH_RULES: Final = {
    "iocbs_per_io_submit": frozenset({_OP["io_submit"]}),
    "events_per_io_getevents": frozenset({_OP["io_getevents"], _OP["io_pgetevents"]}),
    "sqes_per_io_uring_enter": frozenset({_OP["io_uring_enter"]}),
    "ready_per_mux_call": frozenset(s.op for s in events.SYSCALLS if s.family == MUX_FAMILY),
}
_ASYNC_KINDS: Final = np.array(sorted(ASYNC_APIS), dtype=np.uint16)


def _syscall_name(op: int) -> str:
    return SYSCALL_BY_OP[op].name if op in SYSCALL_BY_OP else f"syscall{op}"


class _Column:
    """An append-only column of integers in 4 bytes a value when they fit (a
    duration under 4.29 s; a column of times, `based`, keeps each batch's values
    as offsets from its first when they span under 4.29 s), else 8.

    Values live in a few slabs that double in size up to 8 MiB, not in one small
    array per batch: thousands of long-lived arrays the size of a batch's
    temporaries would leave the heap full of holes (measured: 30-40% of the
    memory of a large report). `seal` gives back the last slab's spare room."""

    __slots__ = ("based", "segs", "slabs", "used")

    _SLAB_BYTES: Final = 8 << 20

    def __init__(self, *, based: bool = False) -> None:
        self.based = based
        self.slabs: list[np.ndarray] = []
        self.used = 0
        """Values in the last slab."""
        self.segs: list[list[int]] = []
        """[slab, first, count, base] of each run of values (one per based batch)."""

    def add(self, v: np.ndarray) -> None:
        if not len(v):
            return
        base = 0
        if self.based:
            lo = int(v.min())
            if int(v.max()) - lo < _U32:
                base = lo
        vals = v - base if base else v
        wide = not base and (int(vals.min()) < 0 or int(vals.max()) >= _U32)
        dtype = np.dtype(np.int64 if wide else np.uint32)
        at = 0
        while at < len(vals):
            slab = self.slabs[-1] if self.slabs else None
            if slab is None or slab.dtype != dtype or self.used == len(slab):
                last = len(slab) if slab is not None else 0
                cap = min(max(len(vals) - at, 2 * last), self._SLAB_BYTES // dtype.itemsize)
                slab = np.empty(max(cap, 1), dtype=dtype)
                self.slabs.append(slab)
                self.used = 0
            k = min(len(vals) - at, len(slab) - self.used)
            slab[self.used : self.used + k] = vals[at : at + k]
            i = len(self.slabs) - 1
            seg = self.segs[-1] if self.segs else None
            if seg is not None and not base and not seg[3] and seg[0] == i:
                seg[2] += k  # runs on in the same slab
            else:
                self.segs.append([i, self.used, k, base])
            self.used += k
            at += k

    def seal(self) -> None:
        """Done adding: the last slab shrinks to what it holds."""
        if self.slabs and self.used < len(self.slabs[-1]):
            self.slabs[-1] = self.slabs[-1][: self.used].copy()

    def chunks(self) -> Iterator[np.ndarray]:
        """The values a run at a time: 4-byte runs as they are (views), times as
        int64."""
        for i, first, count, base in self.segs:
            yield _values(base, self.slabs[i][first : first + count])

    def narrow(self) -> bool:
        """Every value is in 4 bytes as it is (no offsets)."""
        return all(s.dtype == np.uint32 for s in self.slabs) and not any(g[3] for g in self.segs)

    def array(self) -> np.ndarray:
        """All values in the order added."""
        return _joined([self])

    def __len__(self) -> int:
        return sum(g[2] for g in self.segs)


def _aligned_runs(a: _Column, b: _Column) -> Iterator[tuple[int, np.ndarray, int, np.ndarray]]:
    """Two columns filled in step, as equal runs (base, values, base, values):
    views into their slabs, nothing copied."""
    left = ((base, a.slabs[i][first : first + n]) for i, first, n, base in a.segs)
    right = ((base, b.slabs[i][first : first + n]) for i, first, n, base in b.segs)
    x_base, x = 0, np.zeros(0, dtype=np.uint32)
    y_base, y = 0, x
    while True:
        if not len(x):
            nx = next(left, None)
            if nx is None:
                return
            x_base, x = nx
        if not len(y):
            ny = next(right, None)
            if ny is None:
                return
            y_base, y = ny
        k = min(len(x), len(y))
        yield x_base, x[:k], y_base, y[:k]
        x, y = x[k:], y[k:]


def _values(base: int, run: np.ndarray) -> np.ndarray:
    return run.astype(np.int64) + base if base else run


def _aligned(a: _Column, b: _Column) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Two columns filled in step, as pairs of equal slices (no copy of either
    whole column)."""
    for a_base, x, b_base, y in _aligned_runs(a, b):
        yield _values(a_base, x), _values(b_base, y)


def _joined(cols: list[_Column], dtype: Any = None) -> np.ndarray:
    """Columns as one array: by default uint32 when every piece is, else int64 (the
    percentiles of integers come out exactly as of the same values in float64,
    the type they were always computed in), filled in place piece by piece."""
    if dtype is None:
        dtype = np.uint32 if all(c.narrow() for c in cols) else np.int64
    out: np.ndarray = np.empty(sum(len(c) for c in cols), dtype=dtype)
    at = 0
    for c in cols:
        for chunk in c.chunks():
            out[at : at + len(chunk)] = chunk
            at += len(chunk)
    return out


def _groups(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by equal keys: (the row order that makes groups contiguous,
    where each group starts in it, the index of each group's first row)."""
    if len(keys) == 1:
        order = np.argsort(keys[0], kind="stable")
        sk = keys[0][order]
        change = sk[1:] != sk[:-1]
    else:
        order = np.lexsort(keys[::-1])
        change = np.zeros(max(len(order) - 1, 0), dtype=bool)
        for k in keys:
            sk = k[order]
            change |= sk[1:] != sk[:-1]
    starts = np.flatnonzero(np.r_[True, change]) if len(order) else np.zeros(0, np.int64)
    return order, starts, order[starts]


def _sums(v: np.ndarray, order: np.ndarray, starts: np.ndarray) -> list[int]:
    return cast(list[int], np.add.reduceat(np.asarray(v, dtype=np.int64)[order], starts).tolist())


class _Calls:
    """The calls of one syscall on one thread."""

    __slots__ = (
        "batch_calls",
        "batch_max",
        "batch_sum",
        "bytes",
        "calls",
        "dur_ns",
        "durs",
        "eagain",
        "errors",
        "idle_ns",
        "off_cpu_ns",
        "runq_ns",
        "timeouts",
    )

    def __init__(self) -> None:
        self.timeouts = self.idle_ns = 0
        """Calls that returned 0 (a multiplexer's timeout) and their time asleep."""
        self.calls = self.dur_ns = self.off_cpu_ns = self.runq_ns = 0
        self.eagain = self.errors = self.bytes = 0
        self.batch_calls = self.batch_sum = 0
        self.batch_max = _INT64_MIN
        self.durs = _Column()
        """Each call's duration, for the percentiles."""

    def row(self) -> list[int]:
        """The sums in `_Scopes.summary`'s order (index 9 is a maximum)."""
        return [
            self.calls,
            self.dur_ns,
            self.off_cpu_ns,
            self.runq_ns,
            self.eagain,
            self.errors,
            self.bytes,
            self.batch_calls,
            self.batch_sum,
            self.batch_max,
            self.timeouts,
            self.idle_ns,
        ]


class _Requests:
    """The requests of one group (sync, or an async API) of one (pid, tid)."""

    __slots__ = (
        "busy_ns",
        "count",
        "done_max",
        "errors",
        "kernel_known",
        "kerns",
        "lats",
        "nbytes",
        "observed",
        "reap_inferred",
        "start_min",
        "starts",
        "workers",
    )

    def __init__(self) -> None:
        self.count = self.observed = self.errors = self.nbytes = self.workers = 0
        self.kernel_known = self.reap_inferred = 0
        self.busy_ns = 0
        """Sum of observed latencies that are not negative: the in-flight mean's numerator."""
        self.start_min: int | None = None
        self.done_max: int | None = None
        self.starts = _Column(based=True)
        """Start of each observed request (io_uring: of each with a kernel completion)."""
        self.lats = _Column()
        """Latency of each observed request, aligned with `starts`."""
        self.kerns = _Column()
        """Submit to kernel completion, where known (async only; io_uring: aligned
        with `starts` until the reaps are inferred at the end)."""


class _Thread:
    __slots__ = ("calls", "hi", "lo", "off_count", "off_ns", "off_runq_ns")

    def __init__(self) -> None:
        self.calls: dict[int, _Calls] = {}
        self.lo: int | None = None
        self.hi: int | None = None
        self.off_count = self.off_ns = self.off_runq_ns = 0

    def span(self, lo: int, hi: int) -> None:
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)


class _Rows:
    """Some rows of a batch, one column at a time as int64 (the types the analysis
    always computed in), never copying whole 104-byte records."""

    def __init__(self, ev: np.ndarray, rows: np.ndarray) -> None:
        self.ev = ev
        self.rows = rows

    def __getitem__(self, name: str) -> np.ndarray:
        v = self.ev[name][self.rows]
        # Same bits as astype("int64") for the 64-bit fields, without another copy.
        return v.view(np.int64) if v.dtype.itemsize == 8 else v.astype(np.int64)

    def __len__(self) -> int:
        return len(self.rows)


class _OutOfOrder(Exception):
    """A thread's calls reached the file out of time order across batches (iotrace
    never writes that: a thread's records are written in the order it made them)."""


def _depth_max(start: np.ndarray, end: np.ndarray, *, own: bool = False) -> int:
    """The most requests in flight at once; equal to `depth_series(...)[1].max()`
    (completions count first at equal times) in O(n) memory. The depth right
    after a start time s is #{starts <= s} - #{ends <= s}, and the maximum is
    reached at a start. `own`: the arrays may be sorted in place."""
    if not len(start):
        return 0
    if own:
        start.sort()
        end.sort()
        s, e = start, end
    else:
        s, e = np.sort(start), np.sort(end)
    best = 0
    step = 1 << 20
    for i in range(0, len(s), step):
        part = s[i : i + step]
        depth = np.searchsorted(s, part, side="right") - np.searchsorted(e, part, side="right")
        best = max(best, int(depth.max()))
    return best


@dataclass
class Timeline:
    """What the HTML timeline draws, gathered while streaming: every syscall and
    off-CPU segment when there are at most `TIMELINE_SEGMENTS` of each, else the
    `TIMELINE_SEGMENTS` longest of each (the page keeps half of those when the
    trace holds more segments in all)."""

    syscalls: pd.DataFrame
    """pid tid name family ts_ns end_ns dur_ns, in the order of `Frames.syscalls`."""
    off_cpu: pd.DataFrame
    """pid tid ts_ns end_ns, in the order of `Frames.off_cpu`."""
    total: int
    """Syscall and off-CPU segments in the whole trace."""


class _TimelinePool:
    """The longest segments seen so far, chosen as pandas' nlargest(keep="first")
    over the whole trace's frames would choose them: ties go to the earlier row
    (frame order: by start, thread and file position for syscalls; file
    position for off-CPU intervals)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.total = 0
        self.calls: dict[str, np.ndarray] = {}
        self.offs: dict[str, np.ndarray] = {}
        self.calls_floor: tuple[int, int] | None = None
        self.offs_floor: int | None = None

    def add_calls(self, cols: dict[str, np.ndarray]) -> None:
        self.total += len(cols["dur_ns"])
        if self.calls_floor is not None:
            dur, ts = self.calls_floor
            ok = (cols["dur_ns"] > dur) | ((cols["dur_ns"] == dur) & (cols["ts_ns"] <= ts))
            cols = {k: v[ok] for k, v in cols.items()}
        self.calls = _append(self.calls, cols)
        if len(self.calls["dur_ns"]) > 2 * self.keep:
            c = self.calls
            order = np.lexsort((c["seq"], c["tid"], c["ts_ns"], -c["dur_ns"]))[: self.keep]
            self.calls = {k: v[order] for k, v in c.items()}
            self.calls_floor = (int(self.calls["dur_ns"][-1]), int(self.calls["ts_ns"][-1]))

    def add_offs(self, cols: dict[str, np.ndarray]) -> None:
        self.total += len(cols["dur_ns"])
        if self.offs_floor is not None:
            # A later row loses a tie on duration (file position breaks it).
            cols = {k: v[cols["dur_ns"] > self.offs_floor] for k, v in cols.items()}
        self.offs = _append(self.offs, cols)
        if len(self.offs["dur_ns"]) > 2 * self.keep:
            o = self.offs
            order = np.lexsort((o["seq"], -o["dur_ns"]))[: self.keep]
            self.offs = {k: v[order] for k, v in o.items()}
            self.offs_floor = int(self.offs["dur_ns"][-1])

    def timeline(self) -> Timeline:
        import pandas as pd

        c = self.calls or {k: np.zeros(0, np.int64) for k in ("pid", "tid", "op", "ts_ns")}
        c.setdefault("end_ns", np.zeros(0, np.int64))
        c.setdefault("dur_ns", np.zeros(0, np.int64))
        c.setdefault("seq", np.zeros(0, np.int64))
        order = np.lexsort((c["seq"], c["tid"], c["ts_ns"]))
        names = [_syscall_name(int(op)) for op in c["op"][order].tolist()]
        sc = pd.DataFrame(
            {
                "pid": c["pid"][order],
                "tid": c["tid"][order],
                "name": np.array(names, dtype=object),
                "family": np.array([_FAMILY_BY_NAME.get(n, "other") for n in names], dtype=object),
                "ts_ns": c["ts_ns"][order],
                "end_ns": c["end_ns"][order],
                "dur_ns": c["dur_ns"][order],
            }
        )
        o = self.offs or {
            k: np.zeros(0, np.int64) for k in ("pid", "tid", "ts_ns", "end_ns", "dur_ns", "seq")
        }
        order = np.argsort(o["seq"], kind="stable")
        off = pd.DataFrame({k: o[k][order] for k in ("pid", "tid", "ts_ns", "end_ns")})
        return Timeline(sc, off, self.total)


def _append(pool: dict[str, np.ndarray], cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not pool:
        return {k: v.copy() for k, v in cols.items()}
    return {k: np.concatenate([pool[k], cols[k]]) for k in pool}


def batches(chunks: Iterable[np.ndarray], size: int = BATCH_RECORDS) -> Iterator[np.ndarray]:
    """Record arrays regrouped into batches of `size` (the last one may be
    smaller), in file order. A chunk is let go of as soon as it is used up."""
    held: list[np.ndarray] = []
    n = 0
    it = iter(chunks)
    while (chunk := next(it, None)) is not None:
        at = 0
        while at < len(chunk):
            part = chunk[at : at + size - n]
            at += len(part)
            if n == 0 and len(part) == size:
                yield part
                continue
            # A piece waiting for the next chunk is copied, so this chunk can go.
            held.append(part.copy() if at == len(chunk) else part)
            n += len(part)
            if n == size:
                yield np.concatenate(held)
                held, n = [], 0
        del chunk, part
    if held:
        yield held[0] if len(held) == 1 else np.concatenate(held)


class _Builder:
    """Folds batches of records, in file order, into what `Analysis` reports.

    The order matters in one place: a sync request's start depends on the calls
    its thread made before it, on the same fd and in multiplexers. Within a
    batch the calls are sorted; across batches a thread's calls must come in
    time order (each starting after the thread's calls in earlier batches
    ended), which iotrace's recorder guarantees; `_OutOfOrder` is raised if not.
    """

    def __init__(self, *, timeline: bool = False) -> None:
        self.records = 0
        """Records fed, runs counted as their calls (the timeline's sequence numbers)."""
        self.file_records = 0
        self.calls_from_runs = 0
        """Calls that reached the trace folded in run records: their durations are
        estimated from the runs' histograms (see runs.py)."""
        self.t_lo: int | None = None
        self.t_hi: int | None = None
        self.threads: dict[int, _Thread] = {}
        self.tids_by_pid: dict[int, set[int]] = {}
        self.requests: dict[tuple[int, int, str, int], _Requests] = {}
        """(pid, tid, group, op) -> requests; op is the syscall of simple sync
        requests (their latencies are also that syscall's durations), else -1."""
        # Sync request chains: (tid, fd) -> (chain open, its first try, end of the
        # request before it); tid -> the thread's last multiplexer wait (ts, end);
        # tid -> the latest end of its data and multiplexer calls so far.
        self.chains: dict[tuple[int, int], tuple[bool, int, int]] = {}
        self.last_mux: dict[int, tuple[int, int, int]] = {}
        self.last_end: dict[int, int] = {}
        self.epoll_sets: set[int] = set()
        self.epoll_known: set[int] = set()
        """`_epoll_sets` so far: fds added to epoll sets, and the sets seen."""
        self.fd_calls: dict[tuple[int, int], int] = {}
        self.fd_waited: set[tuple[int, int]] = set()
        """(tid, fd): data calls made on it; those a ready wait started a request on."""
        self.sqpoll_pids: set[int] = set()
        """Processes that set up an io_uring with IORING_SETUP_SQPOLL."""
        # io_uring_enter calls (file order), to infer io_uring reaps at the end.
        self.enters = {k: _Column(based=k in ("ts", "end")) for k in ("pid", "tid", "ts", "end")}
        self.tasks: dict[str, list[np.ndarray]] = {
            k: [] for k in ("pid", "tid", "ts", "op", "key", "user_data")
        }
        self.lost: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "end", "count", "op")}
        self.pool = _TimelinePool(_TIMELINE_KEEP) if timeline else None

    # -- folding ------------------------------------------------------------

    def feed(self, ev: np.ndarray) -> None:
        # A run record counts as its calls (runs.py), in bounded pieces.
        self.file_records += len(ev)
        for piece in runs.expand(ev):
            self._feed(piece)

    def _feed(self, ev: np.ndarray) -> None:
        if not len(ev):
            return
        from_run = ev["flags"][ev["kind"] == int(Kind.SYSCALL)] & np.uint32(Flag.FROM_RUN)
        self.calls_from_runs += int(np.count_nonzero(from_run))
        seq0 = self.records
        self.records += len(ev)
        timed = events.has_end_times(ev["kind"])
        for name in ("ts_ns", "end_ns", "kdone_ns"):
            t = ev[name].astype(np.int64)
            t = t[(t > 0) & (timed if name != "ts_ns" else True)]
            if len(t):
                lo, hi = int(t.min()), int(t.max())
                self.t_lo = lo if self.t_lo is None else min(self.t_lo, lo)
                self.t_hi = hi if self.t_hi is None else max(self.t_hi, hi)
        kinds = ev["kind"]
        rows = np.flatnonzero(kinds == int(Kind.SYSCALL))
        if len(rows):
            self._syscalls(_Rows(ev, rows), seq0 + rows)
        rows = np.flatnonzero(np.isin(kinds, _ASYNC_KINDS))
        if len(rows):
            self._async(_Rows(ev, rows))
        rows = np.flatnonzero(kinds == int(Kind.OFF_CPU))
        if len(rows):
            self._off_cpu(_Rows(ev, rows), seq0 + rows)
        rows = np.flatnonzero(kinds == int(Kind.TASK))
        if len(rows):
            tk = _Rows(ev, rows)
            for k, f in (("pid", "pid"), ("tid", "tid"), ("ts", "ts_ns"), ("op", "op")):
                self.tasks[k].append(tk[f])
            self.tasks["key"].append(ev["key"][rows])
            self.tasks["user_data"].append(ev["user_data"][rows])
        rows = np.flatnonzero(kinds == int(Kind.LOST))
        if len(rows):
            lost = _Rows(ev, rows)
            for k, f in (("ts", "ts_ns"), ("end", "end_ns"), ("count", "size"), ("op", "op")):
                self.lost[k].append(lost[f])

    def _thread(self, tid: int) -> _Thread:
        t = self.threads.get(tid)
        if t is None:
            t = self.threads[tid] = _Thread()
        return t

    def _pairs(self, pid: np.ndarray, tid: np.ndarray) -> None:
        both = np.unique((pid.astype(np.uint64) << np.uint64(32)) | tid.astype(np.uint64))
        for v in both.tolist():
            self.tids_by_pid.setdefault(v >> 32, set()).add(v & 0xFFFFFFFF)

    def _syscalls(self, sc: _Rows, seq: np.ndarray) -> None:
        pid = sc["pid"]
        tid = sc["tid"]
        op = sc["op"]
        ts = sc["ts_ns"]
        end = sc["end_ns"]
        ret = sc["ret"]
        size = sc["size"]
        dur = np.maximum(end - ts, 0)
        eagain = ret == -events.EAGAIN
        is_data = _IS_REQ[op]
        is_mux = _IS_MUX[op]
        # A wait that timed out found nothing: idle time, never a request's start.
        is_wait = is_mux & (ret > 0)
        self._check_order(tid, ts, is_data | is_mux)
        self._pairs(pid, tid)
        in_batch = (
            ((op == _OP["io_submit"]) & (ret > 0))
            | (((op == _OP["io_getevents"]) | (op == _OP["io_pgetevents"])) & (ret >= 0))
            | ((op == _OP["io_uring_enter"]) & (size > 0) & (ret >= 0))
            | (is_mux & (ret >= 0))
        )
        ctl = (op == _OP["epoll_ctl"]) & (ret == 0)
        if ctl.any():
            epfd = sc["offset"][ctl]
            add = np.isin(size[ctl], _EPOLL_ADD)
            self.epoll_sets.update(
                _epoll_key(pid[ctl][add], epfd[add], sc["fd"][ctl][add]).tolist()
            )
            self.epoll_known.update(_epoll_key(pid[ctl], epfd).tolist())
        # Sync requests first: a simple one's duration is kept once, as its latency.
        simple = np.zeros(len(op), dtype=bool)
        if is_data.any():
            simple = self._sync_requests(
                pid, tid, op, sc["fd"], ts, end, ret, eagain, is_data, is_wait
            )
        order, starts, first = _groups(tid, op)
        counts = np.diff(np.r_[starts, len(order)]).tolist()
        sums = {
            "dur_ns": _sums(dur, order, starts),
            "off_cpu_ns": _sums(sc["off_cpu_ns"], order, starts),
            "runq_ns": _sums(sc["runq_ns"], order, starts),
            "eagain": _sums(eagain, order, starts),
            "errors": _sums(ret < 0, order, starts),
            "bytes": _sums(np.where(ret > 0, ret, 0), order, starts),
            "batch_calls": _sums(in_batch, order, starts),
            "batch_sum": _sums(np.where(in_batch, ret, 0), order, starts),
            "timeouts": _sums(is_mux & (ret == 0), order, starts),
            "idle_ns": _sums(
                np.where(is_mux & (ret == 0), sc["off_cpu_ns"] - sc["runq_ns"], 0), order, starts
            ),
        }
        bmax = np.maximum.reduceat(np.where(in_batch, ret, _INT64_MIN)[order], starts).tolist()
        lo = np.minimum.reduceat(ts[order], starts).tolist()
        hi = np.maximum.reduceat(end[order], starts).tolist()
        dur_sorted = dur[order]
        kept = ~simple[order]
        bounds = [*starts.tolist(), len(order)]
        for j, (t, o) in enumerate(zip(tid[first].tolist(), op[first].tolist(), strict=True)):
            th = self._thread(t)
            th.span(lo[j], hi[j])
            c = th.calls.get(o)
            if c is None:
                c = th.calls[o] = _Calls()
            c.calls += counts[j]
            c.dur_ns += sums["dur_ns"][j]
            c.off_cpu_ns += sums["off_cpu_ns"][j]
            c.runq_ns += sums["runq_ns"][j]
            c.eagain += sums["eagain"][j]
            c.errors += sums["errors"][j]
            c.bytes += sums["bytes"][j]
            c.batch_calls += sums["batch_calls"][j]
            c.batch_sum += sums["batch_sum"][j]
            c.batch_max = max(c.batch_max, bmax[j])
            c.timeouts += sums["timeouts"][j]
            c.idle_ns += sums["idle_ns"][j]
            b0, b1 = bounds[j], bounds[j + 1]
            c.durs.add(dur_sorted[b0:b1][kept[b0:b1]])
        setup = (op == _OP["io_uring_setup"]) & (ret >= 0) & ((sc["offset"] & _SQPOLL) != 0)
        if setup.any():
            self.sqpoll_pids.update(pid[setup].tolist())
        enter = op == _OP["io_uring_enter"]
        if enter.any():
            for k, v in (("pid", pid), ("tid", tid), ("ts", ts), ("end", end)):
                self.enters[k].add(v[enter])
        self._carry(tid, ts, end, sc["fd"], is_data | is_mux, is_wait)
        if self.pool is not None:
            self.pool.add_calls(
                {"pid": pid, "tid": tid, "op": op, "ts_ns": ts, "end_ns": end, "dur_ns": dur,
                 "seq": seq.astype(np.int64)}
            )  # fmt: skip

    def _check_order(self, tid: np.ndarray, ts: np.ndarray, rows_mask: np.ndarray) -> None:
        """A thread's data and multiplexer calls in this batch must start after its
        calls in earlier batches ended (see the class doc)."""
        rows = np.flatnonzero(rows_mask)
        if not len(rows) or not self.last_end:
            return
        order, starts, first = _groups(tid[rows])
        lo = np.minimum.reduceat(ts[rows][order], starts).tolist()
        for t, lo_t in zip(tid[rows][first].tolist(), lo, strict=True):
            if lo_t < self.last_end.get(t, lo_t):
                raise _OutOfOrder(t)

    def _carry(
        self,
        tid: np.ndarray,
        ts: np.ndarray,
        end: np.ndarray,
        fd: np.ndarray,
        calls: np.ndarray,
        is_mux: np.ndarray,
    ) -> None:
        """What the next batch needs: each thread's latest call end and last wait."""
        rows = np.flatnonzero(calls)
        if len(rows):
            order, starts, first = _groups(tid[rows])
            hi = np.maximum.reduceat(end[rows][order], starts).tolist()
            for t, h in zip(tid[rows][first].tolist(), hi, strict=True):
                self.last_end[t] = max(self.last_end.get(t, h), h)
        m = np.flatnonzero(is_mux)
        if len(m):
            mo = m[np.lexsort((ts[m], tid[m]))]
            last = np.r_[tid[mo][1:] != tid[mo][:-1], True]
            for t, s, e, f in zip(
                tid[mo][last].tolist(),
                ts[mo][last].tolist(),
                end[mo][last].tolist(),
                fd[mo][last].tolist(),
                strict=True,
            ):
                self.last_mux[t] = (s, e, f)

    def _sync_requests(
        self,
        pid: np.ndarray,
        tid: np.ndarray,
        op: np.ndarray,
        fd: np.ndarray,
        ts: np.ndarray,
        end: np.ndarray,
        ret: np.ndarray,
        eagain: np.ndarray,
        is_data: np.ndarray,
        is_mux: np.ndarray,
    ) -> np.ndarray:
        """Requests made with sync data calls, with start times per the module doc,
        going on from the chains and waits that earlier batches left open. Returns
        which calls are *simple* requests: started when the call did and not
        ending before it, so their latency is their duration and is kept once."""
        data = np.flatnonzero(is_data)
        # Calls by (tid, fd, start); ties keep file order, as in `Frames`.
        idx = data[np.lexsort((ts[data], fd[data], tid[data]))]
        ktid, kfd, kts, kend = tid[idx], fd[idx], ts[idx], end[idx]
        done = ~eagain[idx]
        n = len(idx)
        new_key = np.r_[True, (ktid[1:] != ktid[:-1]) | (kfd[1:] != kfd[:-1])]
        heads = np.flatnonzero(new_key)
        seen = np.zeros(len(heads), dtype=bool)
        carried_open = np.zeros(len(heads), dtype=bool)
        carried_first = kts[heads].copy()
        carried_prev = np.full(len(heads), -1, dtype=np.int64)
        for j, key in enumerate(zip(ktid[heads].tolist(), kfd[heads].tolist(), strict=True)):
            state = self.chains.get(key)
            if state is not None:
                seen[j] = True
                carried_open[j] = state[0]
                if state[0]:
                    carried_first[j] = state[1]
                carried_prev[j] = state[2]
        # A chain = EAGAIN attempts followed by the call that did not fail with EAGAIN;
        # a chain starts at a new (tid, fd) or after a completed call, or goes on
        # from the previous batch.
        starts_chain = np.r_[False, done[:-1]]
        starts_chain[heads] = ~carried_open
        seg_start = starts_chain | new_key
        seg = np.cumsum(seg_start) - 1
        firsts = np.flatnonzero(seg_start)
        first_try = kts[firsts].copy()
        # The end of the previous request on the same (tid, fd), -1 for the first one.
        prev_end = np.where(firsts > 0, kend[np.maximum(firsts - 1, 0)], -1)
        at = np.searchsorted(firsts, heads)
        first_try[at] = carried_first
        prev_end[at] = np.where(seen, carried_prev, -1)
        first_try, prev_end = first_try[seg], prev_end[seg]
        start = first_try.copy()
        done_rows = np.flatnonzero(done)
        movable = ~_IS_UNWAITED[op[idx[done_rows]]]
        moved = self._wait_starts(
            tid, ts, end, fd, is_mux, ktid[done_rows], kts[done_rows], prev_end[done_rows],
            start, done_rows, movable, pid[idx[done_rows]], kfd[done_rows],
        )  # fmt: skip
        # Per (tid, fd): its data calls, and whether a ready wait started a request on it.
        key_of = np.cumsum(new_key) - 1
        waited_keys = np.zeros(len(heads), dtype=bool)
        waited_keys[key_of[done_rows[moved]]] = True
        n_data: list[int] = (
            np.add.reduceat(_IS_DATA[op[idx]].astype(np.int64), heads).tolist() if n else []
        )
        for j, key in enumerate(zip(ktid[heads].tolist(), kfd[heads].tolist(), strict=True)):
            if n_data[j]:
                self.fd_calls[key] = self.fd_calls.get(key, 0) + n_data[j]
            if waited_keys[j]:
                self.fd_waited.add(key)
        # What each (tid, fd) leaves to the next batch.
        tails = np.r_[heads[1:] - 1, n - 1]
        for r, key in zip(
            tails.tolist(), zip(ktid[tails].tolist(), kfd[tails].tolist(), strict=True), strict=True
        ):
            if done[r]:
                self.chains[key] = (False, 0, int(kend[r]))
            else:
                self.chains[key] = (True, int(first_try[r]), int(prev_end[r]))
        simple = np.zeros(len(ts), dtype=bool)
        if len(done_rows):
            rows = idx[done_rows]
            is_simple = (start[done_rows] == kts[done_rows]) & (kend[done_rows] >= kts[done_rows])
            simple[rows[is_simple]] = True
            self._add_requests(
                _SYNC,
                pid[rows],
                tid[rows],
                start[done_rows],
                np.ones(len(rows), dtype=bool),
                end[rows],
                ret[rows],
                ops=np.where(is_simple, op[rows], -1),
            )
        return simple

    def _wait_starts(
        self,
        tid: np.ndarray,
        ts: np.ndarray,
        end: np.ndarray,
        fd: np.ndarray,
        is_mux: np.ndarray,
        d_tid: np.ndarray,
        d_ts: np.ndarray,
        d_prev_end: np.ndarray,
        start: np.ndarray,
        done_rows: np.ndarray,
        movable: np.ndarray,
        d_pid: np.ndarray,
        d_fd: np.ndarray,
    ) -> np.ndarray:
        """Move the start of each completed call (`done_rows` of `start`; their
        thread, start and previous request's end in `d_*`, sorted by thread) back to
        the multiplexer wait that found its fd ready (`is_mux`: the waits that
        returned ready fds), unless it is a call no wait starts (not `movable`).
        Returns which of the calls were moved."""
        moved = np.zeros(len(done_rows), dtype=bool)
        if not len(done_rows):
            return moved
        m = np.flatnonzero(is_mux)
        mo = m[np.lexsort((ts[m], tid[m]))]
        m_tid = tid[mo]
        bounds = np.flatnonzero(np.r_[True, d_tid[1:] != d_tid[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            t = int(d_tid[a])
            lo, hi = np.searchsorted(m_tid, t, "left"), np.searchsorted(m_tid, t, "right")
            carried = self.last_mux.get(t)
            if lo == hi and carried is None:
                continue
            # A thread makes one call at a time, so its waits sorted by start are
            # sorted by end too. The wait that found this fd ready is the last one
            # that ended before the call began; it counts when it began after the
            # previous request on the fd finished (else the data was already there).
            m_ts, m_end, m_fd = ts[mo[lo:hi]], end[mo[lo:hi]], fd[mo[lo:hi]]
            if carried is not None:
                m_ts = np.r_[carried[0], m_ts]
                m_end = np.r_[carried[1], m_end]
                m_fd = np.r_[carried[2], m_fd]
            i = np.searchsorted(m_end, d_ts[a:b], side="right") - 1
            ok = i >= 0
            wait_ts = m_ts[np.clip(i, 0, None)]
            pe = d_prev_end[a:b]
            ok &= (pe < 0) | (wait_ts >= pe)
            ok &= movable[a:b]
            ok &= _registered(
                d_pid[a:b], m_fd[np.clip(i, 0, None)], d_fd[a:b], self.epoll_sets, self.epoll_known
            )
            sel = done_rows[a:b]
            start[sel] = np.where(ok, wait_ts, start[sel])
            moved[a:b] = ok
        return moved

    def _async(self, r: _Rows) -> None:
        pid = r["pid"]
        tid = r["tid"]
        kind = r["kind"]
        ts = r["ts_ns"]
        end = r["end_ns"]
        kdone = r["kdone_ns"]
        ret = r["ret"]
        flags = r["flags"]
        self._pairs(pid, tid)
        order, starts, first = _groups(tid)
        lo = np.minimum.reduceat(ts[order], starts).tolist()
        hi = np.maximum.reduceat(ts[order], starts).tolist()
        for t, a, b in zip(tid[first].tolist(), lo, hi, strict=True):
            self._thread(t).span(a, b)
        worker = (flags & int(Flag.WORKER)) != 0
        not_obs = (flags & int(Flag.NOT_OBSERVED)) != 0
        for k, api in ASYNC_APIS.items():
            sel = kind == k
            if not sel.any():
                continue
            if k == int(Kind.URING_REQUEST):
                # Completed when the kernel says so; reaped: inferred at the end.
                observed = kdone[sel] > 0
                done = None
            else:
                observed = (end[sel] > 0) & ~not_obs[sel]
                done = end[sel]
            self._add_requests(
                api, pid[sel], tid[sel], ts[sel], observed, done, ret[sel],
                workers=worker[sel], kdone=kdone[sel],
            )  # fmt: skip

    def _add_requests(
        self,
        group: str,
        pid: np.ndarray,
        tid: np.ndarray,
        start: np.ndarray,
        observed: np.ndarray,
        done: np.ndarray | None,
        ret: np.ndarray,
        *,
        workers: np.ndarray | None = None,
        kdone: np.ndarray | None = None,
        ops: np.ndarray | None = None,
    ) -> None:
        """Fold requests into their (pid, tid, group, op). `done` is each request's
        end where observed (None for io_uring, inferred at the end); `kdone` the
        kernel completion, 0 where unknown (async only); `ops` the syscall of each
        simple sync request, -1 for the others (the default)."""
        if ops is None:
            ops = np.full(len(pid), -1, dtype=np.int64)
        order, starts, first = _groups(pid, tid, ops)
        bounds = [*starts.tolist(), len(order)]
        counts = np.diff(bounds).tolist()
        n_obs = _sums(observed, order, starts)
        errors = _sums(observed & (ret < 0), order, starts)
        nbytes = _sums(np.where(observed, np.maximum(ret, 0), 0), order, starts)
        n_work = _sums(workers, order, starts) if workers is not None else [0] * len(counts)
        start_min = np.minimum.reduceat(start[order], starts).tolist()
        kern_ok = kdone > 0 if kdone is not None else None
        lat = done - start if done is not None else None
        if done is not None and lat is not None:
            done_max = np.maximum.reduceat(np.where(observed, done, _INT64_MIN)[order], starts)
            busy = _sums(np.where(observed & (lat >= 0), lat, 0), order, starts)
        keys = zip(pid[first].tolist(), tid[first].tolist(), ops[first].tolist(), strict=True)
        for j, (p, t, o) in enumerate(keys):
            req = self.requests.get((p, t, group, o))
            if req is None:
                req = self.requests[(p, t, group, o)] = _Requests()
            req.count += counts[j]
            req.observed += n_obs[j]
            req.errors += errors[j]
            req.nbytes += nbytes[j]
            req.workers += n_work[j]
            req.start_min = (
                start_min[j] if req.start_min is None else min(req.start_min, start_min[j])
            )
            rows = order[bounds[j] : bounds[j + 1]]
            seen = rows[observed[rows]]
            req.starts.add(start[seen])
            if kdone is not None and kern_ok is not None:
                known = rows[kern_ok[rows]]
                req.kernel_known += len(known)
                req.kerns.add(kdone[known] - start[known])
            if lat is not None:
                req.lats.add(lat[seen])
                req.busy_ns += busy[j]
                if n_obs[j]:
                    d = int(done_max[j])
                    req.done_max = d if req.done_max is None else max(req.done_max, d)

    def _off_cpu(self, oc: _Rows, seq: np.ndarray) -> None:
        ts = oc["ts_ns"]
        end = oc["end_ns"]
        ok = end >= ts
        if not ok.any():
            return
        pid = oc["pid"][ok]
        tid = oc["tid"][ok]
        runq = oc["runq_ns"][ok]
        ts, end, seq = ts[ok], end[ok], seq[ok]
        self._pairs(pid, tid)
        order, starts, first = _groups(tid)
        counts = np.diff(np.r_[starts, len(order)]).tolist()
        total = _sums(end - ts, order, starts)
        runq_sum = _sums(runq, order, starts)
        lo = np.minimum.reduceat(ts[order], starts).tolist()
        hi = np.maximum.reduceat(end[order], starts).tolist()
        for j, t in enumerate(tid[first].tolist()):
            th = self._thread(t)
            th.span(lo[j], hi[j])
            th.off_count += counts[j]
            th.off_ns += total[j]
            th.off_runq_ns += runq_sum[j]
        if self.pool is not None:
            self.pool.add_offs(
                {"pid": pid, "tid": tid, "ts_ns": ts, "end_ns": end, "dur_ns": end - ts,
                 "seq": seq.astype(np.int64)}
            )  # fmt: skip

    # -- at the end ---------------------------------------------------------

    def _infer_uring_reaps(self) -> None:
        """io_uring reaps per `_uring_reap_bound`, now that every io_uring_enter is known."""
        uring = [(k[0], r) for k, r in self.requests.items() if k[2] == "io_uring"]
        if not uring:
            return
        e = {k: np.asarray(v.array(), dtype=np.int64) for k, v in self.enters.items()}
        by_pid: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if len(e["pid"]):
            order, starts, first = _groups(e["pid"])
            bounds = [*starts.tolist(), len(order)]
            for j, p in enumerate(e["pid"][first].tolist()):
                g = np.sort(order[bounds[j] : bounds[j + 1]])  # file order
                g = g[np.lexsort((e["tid"][g], e["ts"][g]))]  # `Frames.syscalls` order
                # The same sort as `_uring_reap_bound`'s, so ties in end go the same way.
                g = g[np.argsort(e["end"][g], kind="quicksort")]
                by_pid[p] = (e["ts"][g], e["end"][g])
        for pid, req in uring:
            enters = by_pid.get(pid)
            lats = _Column()
            for starts, kerns in _aligned(req.starts, req.kerns):
                start = np.asarray(starts, dtype=np.int64)
                k = start + kerns
                done = k
                if enters is not None:
                    e_ts, e_end = enters
                    at = np.searchsorted(e_end, k, side="left")
                    inside = at < len(e_end)
                    inside[inside] &= e_ts[at[inside]] <= k[inside]
                    done = np.where(inside, e_end[np.clip(at, 0, len(e_end) - 1)], k)
                lat = done - start
                lats.add(lat)
                req.busy_ns += int(lat[lat >= 0].sum())
                top = int(done.max())
                req.done_max = top if req.done_max is None else max(req.done_max, top)
            if enters is not None:
                req.reap_inferred = len(req.starts)
            lats.seal()
            req.lats = lats

    def _tasks(self) -> dict[str, np.ndarray]:
        return {
            k: np.concatenate(v)
            if v
            else np.zeros(0, np.uint64 if k in ("key", "user_data") else np.int64)
            for k, v in self.tasks.items()
        }

    def _comms(self, trace: Trace, tk: dict[str, np.ndarray]) -> dict[int, str]:
        """tid -> latest known command name, as `comms` finds it."""
        out = {t.tid: t.comm for t in sorted(trace.tasks, key=lambda t: t.start_ns) if t.comm}
        order = np.argsort(tk["ts"], kind="quicksort")  # as `comms`' sort_values
        for tid, op, key, ud in zip(
            tk["tid"][order].tolist(),
            tk["op"][order].tolist(),
            tk["key"][order].tolist(),
            tk["user_data"][order].tolist(),
            strict=True,
        ):
            comm = events.comm_from_words(key, ud)
            if comm and (op == events.TaskOp.EXEC or tid not in out):
                out[tid] = comm
        return out

    def finish(self, trace: Trace) -> Analysis:
        for th in self.threads.values():
            for c in th.calls.values():
                c.durs.seal()
        for req in self.requests.values():
            for col in (req.starts, req.lats, req.kerns):
                col.seal()
        self._infer_uring_reaps()
        tk = self._tasks()
        if len(tk["tid"]):
            order, starts, first = _groups(tk["tid"])
            lo = np.minimum.reduceat(tk["ts"][order], starts).tolist()
            hi = np.maximum.reduceat(tk["ts"][order], starts).tolist()
            for t, a, b in zip(tk["tid"][first].tolist(), lo, hi, strict=True):
                if t in self.threads:
                    self.threads[t].span(a, b)
        scope = _Scopes(self)
        names = self._comms(trace, tk)
        wl_by_pid, wl_models = workload_map(trace)
        # A workload's first pid is the one doing its I/O; the others are its producers,
        # whose writes are not the model the workload declares.
        wl_main = {
            int(w["pids"][0])
            for w in trace.meta.get("workloads") or []
            if isinstance(w, Mapping) and w.get("pids") and isinstance(w["pids"][0], int)
        }
        tids_by_pid = self.tids_by_pid
        # Tasks the recorder knew (with -p, every thread of the process) are listed
        # even when they did nothing traced: idle, not missing.
        for t in trace.tasks:
            tids_by_pid.setdefault(t.pid, set()).add(t.tid)
        titles = {t.pid: t.title for t in trace.tasks if t.title and t.tid == t.pid}
        processes: list[Summary] = []
        for pid in sorted(tids_by_pid):
            tids = sorted(tids_by_pid[pid])
            wl = wl_by_pid.get(pid, "")
            s = scope.summary(
                scope="process",
                pid=pid,
                tids=tids,
                main_tid=pid,
                comm=names.get(pid, names.get(tids[0], "?")),
                workload=wl,
                expected_model=wl_models.get(wl, "") if pid in wl_main else "",
            )
            s.title = titles.get(pid, "")
            if len(tids) > 1:
                s.thread_summaries = [
                    scope.summary(
                        scope="thread",
                        pid=pid,
                        tids=[t],
                        main_tid=t,
                        comm=names.get(t, s.comm),
                        workload=wl,
                    )
                    for t in tids
                ]
            processes.append(s)
        workloads: list[Summary] = []
        for wl in sorted(set(wl_by_pid.values())):
            pids = [p for p, w in wl_by_pid.items() if w == wl and p in tids_by_pid]
            if not pids:
                continue
            tids = sorted(set().union(*(tids_by_pid[p] for p in pids)))
            main = min(pids)
            workloads.append(
                scope.summary(
                    scope="workload",
                    pid=main,
                    tids=tids,
                    main_tid=main,
                    comm=names.get(main, "?"),
                    workload=wl,
                    expected_model=wl_models.get(wl, ""),
                )
            )
        start_ns = self.t_lo or 0
        lost = _counter_map(trace.stats, "lost")
        lo_rec = {
            k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in self.lost.items()
        }
        lost_total = max(sum(lost.values()), int(lo_rec["count"].sum()))
        ranges = [
            {
                "start_s": round((ts - start_ns) / 1e9, 6),
                "end_s": round((end - start_ns) / 1e9, 6),
                "count": count,
                "probe": events.probe_name(op),
            }
            for ts, end, count, op in zip(
                *(lo_rec[k][np.argsort(lo_rec["ts"], kind="quicksort")].tolist()
                  for k in ("ts", "end", "count", "op")),
                strict=True,
            )
        ]  # fmt: skip
        return Analysis(
            trace=trace,
            processes=processes,
            workloads=workloads,
            lost=lost,
            lost_total=lost_total,
            lost_ranges=ranges,
            unmatched=_unmatched(trace.stats),
            evicted={**_counter_map(trace.stats, "evicted"), **_counter_map(trace.stats, "other")},
            write_error=str(trace.stats.get("write_error") or ""),
            records=self.file_records,
            calls_from_runs=self.calls_from_runs,
            start_ns=start_ns,
            end_ns=self.t_hi or 0,
            timeline=self.pool.timeline() if self.pool is not None else None,
            request_store=self.requests,
            _scopes=scope,
            _tids_by_pid=tids_by_pid,
        )


class _Scopes:
    """Summaries of any set of threads from a finished `_Builder`; percentiles and
    depths are cached, since a workload is often exactly one process."""

    def __init__(self, b: _Builder) -> None:
        self.threads = b.threads
        self.sqpoll_pids = b.sqpoll_pids
        self.waited_calls: dict[int, int] = {}
        """tid -> data calls on its fds that a ready wait started requests on."""
        for key in b.fd_waited:
            self.waited_calls[key[0]] = self.waited_calls.get(key[0], 0) + b.fd_calls.get(key, 0)
        self.by_tid: dict[int, list[tuple[str, int, _Requests]]] = {}
        for (_, tid, group, op), req in b.requests.items():
            self.by_tid.setdefault(tid, []).append((group, op, req))
        self.cache: dict[tuple[Any, ...], Any] = {}

    def _cached(self, key: tuple[Any, ...], make: Any) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def _durations(self, tids: tuple[int, ...], op: int) -> dict[str, float | None]:
        def make() -> dict[str, float | None]:
            ths = [self.threads[t] for t in tids if t in self.threads]
            cols = [th.calls[op].durs for th in ths if op in th.calls]
            # The simple requests' durations are their latencies.
            cols += [r.lats for t in tids for g, o, r in self.by_tid.get(t, []) if o == op]
            return _percentiles(cols)

        return cast(dict[str, float | None], self._cached(("dur", tids, op), make))

    def _thread_label(self, tid: int) -> tuple[Label, int]:
        """One thread's own label and its I/O units (for `classify.combine`)."""

        def make() -> tuple[Label, int]:
            th = self.threads[tid]
            by = dict(sorted((_syscall_name(op), c) for op, c in th.calls.items()))
            reqs: dict[str, int] = {}
            for group, _, req in self.by_tid.get(tid, []):
                if group != _SYNC:
                    reqs[group] = reqs.get(group, 0) + req.count
            a = Activity(
                wall_ns=max((th.hi or 0) - (th.lo or 0), 0),
                syscalls={n: c.calls for n, c in by.items()},
                off_cpu_ns={n: c.off_cpu_ns - c.runq_ns for n, c in by.items()},
                eagain={n: c.eagain for n, c in by.items() if c.eagain},
                requests=reqs,
                mux_timeouts={n: c.timeouts for n, c in by.items() if c.timeouts},
                mux_idle_ns={n: c.idle_ns for n, c in by.items() if c.idle_ns},
                waited_data_calls=self.waited_calls.get(tid, 0),
            )
            return classify(a), io_units(a)

        return cast(tuple[Label, int], self._cached(("tlabel", tid), make))

    def summary(
        self,
        *,
        scope: str,
        pid: int,
        tids: list[int],
        main_tid: int,
        comm: str,
        workload: str = "",
        expected_model: str = "",
    ) -> Summary:
        """The figures for the threads `tids` (one process, one thread, or a workload)."""
        key = tuple(tids)
        threads = [(t, self.threads[t]) for t in tids if t in self.threads]
        spans = [
            (th.lo, max(th.hi, th.lo))
            for _, th in threads
            if th.lo is not None and th.hi is not None
        ]
        thread_ns = sum(e - s for s, e in spans)
        wall_ns = max((e for _, e in spans), default=0) - min((s for s, _ in spans), default=0)

        # Calls per syscall, over the threads.
        per_op: dict[int, list[int]] = {}
        main_data = main_mux = helper_threads = 0
        helper_calls: dict[str, int] = {}
        for t, th in threads:
            helper_data = 0
            for op, c in th.calls.items():
                row = c.row()
                acc = per_op.setdefault(op, [0] * 9 + [_INT64_MIN, 0, 0])
                for i in (0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11):
                    acc[i] += row[i]
                acc[9] = max(acc[9], row[9])
                if _IS_DATA[op]:
                    if t == main_tid:
                        main_data += c.calls
                    else:
                        helper_data += c.calls
                        name = _syscall_name(op)
                        helper_calls[name] = helper_calls.get(name, 0) + c.calls
                elif _IS_MUX[op] and t == main_tid:
                    main_mux += c.calls
            helper_threads += helper_data > 0
        ops = sorted(per_op, key=_syscall_name)
        names = {op: _syscall_name(op) for op in ops}
        syscalls = {names[op]: per_op[op][0] for op in ops}
        eagain = {names[op]: per_op[op][4] for op in ops if per_op[op][4]}

        async_counts: dict[str, int] = {}
        for t in tids:
            for group, _, req in self.by_tid.get(t, []):
                if group != _SYNC:
                    async_counts[group] = async_counts.get(group, 0) + req.count
        activity = Activity(
            wall_ns=thread_ns,
            syscalls=syscalls,
            syscall_ns={names[op]: per_op[op][1] for op in ops},
            off_cpu_ns={names[op]: per_op[op][2] - per_op[op][3] for op in ops},
            eagain=eagain,
            requests={k: async_counts[k] for k in sorted(async_counts)},
            threads=len(tids),
            main_data_calls=main_data,
            helper_threads=helper_threads,
            main_mux_calls=main_mux,
            helper_calls=dict(sorted(helper_calls.items())),
            mux_timeouts={names[op]: per_op[op][10] for op in ops if _IS_MUX[op]},
            mux_idle_ns={names[op]: per_op[op][11] for op in ops if _IS_MUX[op]},
            waited_data_calls=sum(self.waited_calls.get(t, 0) for t, _ in threads),
        )
        label = classify(activity)
        if len(threads) > 1:
            # Each thread's own model, weighed by its I/O (classify.combine).
            label = combine(label, [self._thread_label(t) for t, _ in threads])
        async_model = label.model == "async-nonblocking" and label.api in (
            "libaio",
            "io_uring",
            "posix-aio",
        )
        group = label.api if async_model else _SYNC
        reqs = [r for t in tids for g, _, r in self.by_tid.get(t, []) if g == group]
        if async_model and not sum(r.count for r in reqs):
            # posix-aio seen only as helper threads doing blocking calls.
            group = _SYNC
            reqs = [r for t in tids for g, _, r in self.by_tid.get(t, []) if g == group]
        n_req = sum(r.count for r in reqs)
        n_obs = sum(r.observed for r in reqs)
        if n_obs:
            r_lo = float(min(r.start_min for r in reqs if r.start_min is not None))
            r_hi = float(max(r.done_max for r in reqs if r.done_max is not None))
            r_span = max(r_hi - r_lo, 1.0)
        else:
            r_span = 0.0
        n_sys = sum(acc[0] for acc in per_op.values())
        total_bytes = sum(r.nbytes for r in reqs)
        # A rate from a handful of requests, or a few microseconds, is noise.
        rated = n_obs >= MIN_RATED_REQUESTS and r_span >= MIN_RATED_SPAN_NS

        # Time shares, summed over threads (so a multi-threaded process stays within 100%).
        blocked_io = sum(acc[2] - acc[3] for op, acc in per_op.items() if _IS_IO_WAIT[op])
        # A wait that timed out is idle (other_sleep), not waiting for I/O.
        mux_wait = sum(acc[2] - acc[3] - acc[11] for op, acc in per_op.items() if _IS_MUX[op])
        # Off-CPU per thread from its intervals; a thread without any (probe missing) falls
        # back to what its syscalls saw.
        off_total = runq = 0
        for _, th in threads:
            if th.off_count:
                off_total += th.off_ns
                runq += th.off_runq_ns
            else:
                off_total += sum(c.off_cpu_ns for c in th.calls.values())
                runq += sum(c.runq_ns for c in th.calls.values())
        on_cpu = max(thread_ns - off_total, 0)
        other = max(off_total - runq - blocked_io - mux_wait, 0)

        def share(v: int) -> float | None:
            return round(v / thread_ns, 4) if thread_ns > 0 else None

        time_share = {
            "on_cpu": share(on_cpu),
            "blocked_io": share(blocked_io),
            "mux_wait": share(mux_wait),
            "runq": share(runq),
            "other_sleep": share(other),
        }
        latency = self._cached(("lat", key, group), lambda: _percentiles([r.lats for r in reqs]))
        if n_obs:
            depth = self._cached(("depth", key, group), lambda: _depth(reqs, int(r_span)))
        else:
            depth = {"mean": 0.0, "max": 0}
        kernel = None
        if group != _SYNC and n_req:
            kernel = self._cached(
                ("kern", key, group),
                lambda: _percentiles([r.kerns for r in reqs]),
            )
        requests: dict[str, Any] = {
            "count": n_req,
            "api": label.api,
            "completed": n_obs,
            "not_observed": n_req - n_obs,
            "errors": sum(r.errors for r in reqs),
            "bytes": total_bytes,
            "iops": round(n_obs / (r_span / 1e9), 1) if rated else None,
            # A fault reads pages the program never asked for by size: no MB/s.
            "mb_per_s": round(total_bytes / 1e6 / (r_span / 1e9), 3)
            if rated and label.model != "memory-mapped"
            else None,
            "latency_us": latency,
            "kernel_latency_us": kernel,
            "syscalls_per_request": round(n_sys / n_req, 3) if n_req else None,
            "cpu_us_per_request": round(on_cpu / 1000 / n_req, 3) if n_req else None,
            "eagain_per_request": round(sum(eagain.values()) / n_req, 3) if n_req else None,
            "to_kernel_workers": sum(r.workers for r in reqs),
            "reap_inferred": sum(r.reap_inferred for r in reqs),
            "sqpoll": group == "io_uring" and pid in self.sqpoll_pids,
            "major_faults": sum(per_op[op][0] for op in ops if _IS_FAULT[op]),
        }
        batch: dict[str, dict[str, float]] = {}
        for rule, rule_ops in _BATCH_RULES.items():
            accs = [per_op[op] for op in rule_ops if op in per_op]
            calls = sum(a[7] for a in accs)
            if calls:
                batch[rule] = {
                    "calls": calls,
                    "mean": round(sum(a[8] for a in accs) / calls, 3),
                    "max": max(a[9] for a in accs),
                }
        families: dict[str, dict[str, Any]] = {}
        for op in ops:
            calls, dur, off, rq, eag, errs, nbytes = per_op[op][:7]
            families[names[op]] = {
                "calls": calls,
                # Only data calls move bytes; a multiplexer's result is a count of fds.
                "bytes": nbytes if _IS_DATA[op] else None,
                "errors": errs,
                "eagain": eag,
                "latency_us": self._durations(key, op),
                # Share of the time inside these calls spent asleep (off CPU, not runnable),
                # the same measure as the process's BLOCK%.
                "asleep_share": round(float(off - rq) / max(dur, 1), 3),
                "runq_share": round(float(rq) / max(dur, 1), 3),
            }
        return Summary(
            scope=scope,
            pid=pid,
            tid=main_tid if scope == "thread" else 0,
            comm=comm,
            workload=workload,
            label=label,
            threads=len(spans),
            wall_ns=wall_ns,
            thread_ns=thread_ns,
            syscalls=syscalls,
            eagain=eagain,
            errors=sum(acc[5] for acc in per_op.values()),
            requests=requests,
            time_share=time_share,
            batch=batch,
            in_flight=depth,
            families=families,
            expected_model=expected_model,
        )


MIN_RATED_REQUESTS: Final = 20
MIN_RATED_SPAN_NS: Final = 10_000_000
"""No req/s or MB/s below 20 requests or over less than 10 ms: "-" instead."""

PERCENTILE_COPY: Final = 1 << 20
"""Values up to which `_percentiles` copies a series to partition it (4 MiB);
past that, 4-byte series are searched in place, digit by digit."""
_PERCENTS: Final = (50, 90, 99)


def _percentiles(cols: list[_Column], copy_max: int = PERCENTILE_COPY) -> dict[str, float | None]:
    """`percentiles_us` of the values of `cols` (integers, never NaN). numpy's
    percentiles of integers equal those of the same values as float64, bit for
    bit, so a small or 8-byte series is copied as it is and partitioned in place;
    a large 4-byte one (most are) is not copied at all: the order statistics the
    percentiles need are found by counting 16-bit digits, and interpolated as
    `np.percentile` does (`_interpolate`)."""
    cols = [c for c in cols if len(c)]
    n = sum(len(c) for c in cols)
    if not n:
        return percentiles_us(np.zeros(0))
    if n <= copy_max or not all(c.narrow() for c in cols):
        arr = _joined(cols)
        top = float(arr.max())
        p = np.percentile(arr, _PERCENTS, overwrite_input=True) / 1000.0
    else:
        top = float(max(int(chunk.max()) for c in cols for chunk in c.chunks() if len(chunk)))
        p = _interpolate(cols, n) / 1000.0
    return {
        "p50": round(float(p[0]), 3),
        "p90": round(float(p[1]), 3),
        "p99": round(float(p[2]), 3),
        "max": round(top / 1000.0, 3),
    }


def _interpolate(cols: list[_Column], n: int) -> np.ndarray:
    """np.percentile(values, _PERCENTS) (method "linear") of the n uint32 values
    of `cols`, without a copy of them: numpy's virtual indexes, neighbours and
    interpolation (numpy/lib/_function_base_impl.py: _quantile, _get_indexes,
    _lerp), step for step on the same dtypes, from the order statistics."""
    q = np.true_divide(np.asarray(_PERCENTS), 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    previous_i = previous.astype(np.intp)
    following_i = following.astype(np.intp)
    gamma = np.asarray(virtual - previous_i, dtype=virtual.dtype)
    ranks = sorted({int(i) % n for i in (*previous_i, *following_i)})
    stats = _order_statistics(cols, ranks)
    a = np.array([stats[int(i) % n] for i in previous_i], dtype=np.uint32)
    b = np.array([stats[int(i) % n] for i in following_i], dtype=np.uint32)
    diff_b_a = b - a
    lerp = np.add(a, diff_b_a * gamma)
    np.subtract(b, diff_b_a * (1 - gamma), out=lerp, where=gamma >= 0.5, casting="unsafe")
    return cast(np.ndarray, lerp)


def _order_statistics(cols: list[_Column], ranks: list[int]) -> dict[int, int]:
    """The values at `ranks` (0-based) in the sorted uint32 values of `cols`:
    one pass counts the high 16 bits, one more the low 16 bits of the values in
    the high digits wanted. Two 65,536-entry histograms, no copy."""
    high = np.zeros(1 << 16, dtype=np.int64)
    for c in cols:
        for chunk in c.chunks():
            high += np.bincount(chunk >> 16, minlength=1 << 16)
    high_cum = np.cumsum(high)
    digit = {r: int(np.searchsorted(high_cum, r, side="right")) for r in ranks}
    wanted = sorted(set(digit.values()))
    low = {d: np.zeros(1 << 16, dtype=np.int64) for d in wanted}
    for c in cols:
        for chunk in c.chunks():
            top = chunk >> 16
            for d in wanted:
                low[d] += np.bincount(chunk[top == d] & 0xFFFF, minlength=1 << 16)
    out = {}
    for r, d in digit.items():
        below = int(high_cum[d - 1]) if d else 0
        low_digit = int(np.searchsorted(np.cumsum(low[d]), r - below, side="right"))
        out[r] = d << 16 | low_digit
    return out


DEPTH_GROUP: Final = 1 << 20
"""Requests whose times `_depth_max_of` sorts at once (16 MiB): more are swept a
time range at a time (10 M requests: a third less peak memory, no slower)."""


def _depth(reqs: list[_Requests], span_ns: int) -> dict[str, float]:
    """`depth_stats` of the observed requests, from their starts and latencies."""
    depth_max = _depth_max_of([(r.starts, r.lats) for r in reqs])
    if depth_max is None:
        return {"mean": 0.0, "max": 0}
    mean = float(sum(r.busy_ns for r in reqs)) / span_ns if span_ns > 0 else 0.0
    return {"mean": round(mean, 3), "max": depth_max}


def _depth_max_of(cols: list[tuple[_Column, _Column]], group: int = DEPTH_GROUP) -> int | None:
    """`_depth_max` of the requests whose (start, latency) columns are `cols`,
    leaving out negative latencies as `depth_stats` does; None when none is left.

    Past `group` requests, the time axis is cut into ranges of about `group`
    starts each (from a sample), and each range is swept on its own, from the
    depth the ranges before it leave: one range's times are sorted at a time.
    The columns are filled batch by batch, so each run of them covers a short
    stretch of time and a range only reads the runs that reach into it."""
    runs = [r for starts, lats in cols for r in _aligned_runs(starts, lats)]

    def piece(run: tuple[int, np.ndarray, int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        s_base, s_run, l_base, l_run = run
        s = np.asarray(_values(s_base, s_run), dtype=np.int64)
        lat = _values(l_base, l_run)
        ok = lat >= 0
        return (s, s + lat) if ok.all() else (s[ok], s[ok] + lat[ok])

    n = sum(len(r[1]) for r in runs)
    if n <= group:
        both = [piece(r) for r in runs]
        if not sum(len(s) for s, _ in both):
            return None
        start = np.concatenate([s for s, _ in both])
        end = np.concatenate([e for _, e in both])
        del both
        return _depth_max(start, end, own=True)
    step = max(1, n // 8192)
    samples: list[np.ndarray] = []
    spans: list[tuple[int, int] | None] = []
    for run in runs:
        s, e = piece(run)
        samples.append(s[::step].copy())
        spans.append((int(s.min()), int(e.max())) if len(s) else None)
    sample = np.sort(np.concatenate(samples))
    if not len(sample):
        return None
    ranges = n // group + 1
    bounds = np.unique(sample[np.linspace(0, len(sample) - 1, ranges + 1)[1:-1].astype(int)])
    edges = [None, *bounds.tolist(), None]
    before = best = 0
    for lo, hi in itertools.pairwise(edges):
        ss: list[np.ndarray] = []
        es: list[np.ndarray] = []
        for run, span in zip(runs, spans, strict=True):
            # A run's times lie within [its first start, its last end].
            if (
                span is None
                or (lo is not None and span[1] < lo)
                or (hi is not None and span[0] >= hi)
            ):
                continue
            s, e = piece(run)
            for src, dst in ((s, ss), (e, es)):
                inside = np.ones(len(src), dtype=bool)
                if lo is not None:
                    inside &= src >= lo
                if hi is not None:
                    inside &= src < hi
                dst.append(src[inside])
        s_g = np.concatenate(ss) if ss else np.zeros(0, np.int64)
        e_g = np.concatenate(es) if es else np.zeros(0, np.int64)
        del ss, es
        if len(s_g):
            s_g.sort()
            e_g.sort()
            depth = (
                before
                + np.searchsorted(s_g, s_g, side="right")
                - np.searchsorted(e_g, s_g, side="right")
            )
            best = max(best, int(depth.max()))
        # In flight when the next range begins: started and not ended before it.
        before += len(s_g) - len(e_g)
    return best


# ---------------------------------------------------------------------------
# The analysis


TIMELINE_SEGMENTS: Final = 60_000
"""Beyond this many syscall/off-CPU segments the HTML timeline keeps the longest
ones (and says so): a browser stays responsive and the page stays small."""
_TIMELINE_KEEP: Final = TIMELINE_SEGMENTS


@dataclass
class Analysis:
    """Everything the report, the HTML page and the exports show."""

    trace: Trace
    """The trace's metadata, tasks and counters; its records only when it was
    analysed from memory (`analyze`), not streamed (`analyze_file`)."""
    processes: list[Summary]
    workloads: list[Summary]
    lost: dict[str, int]
    lost_total: int
    lost_ranges: list[dict[str, Any]]
    unmatched: dict[str, int]
    """Probe -> syscall exits seen without their enter (and enters never exited)."""
    evicted: dict[str, int]
    """Map evictions and other tracer counters (map full, resubmitted iocbs, ...)."""
    write_error: str = ""
    """Why the recorder stopped writing early ("" when it did not)."""
    records: int = 0
    calls_from_runs: int = 0
    """Calls the kernel folded into run records: counted exactly, but their own
    durations (and so percentiles over them) are estimated from the runs' histograms."""
    start_ns: int = 0
    """The first time any record carries (CLOCK_MONOTONIC ns); 0 without records."""
    end_ns: int = 0
    timeline: Timeline | None = None
    """The HTML timeline's segments, when asked for (`timeline=True`)."""
    request_store: dict[tuple[int, int, str, int], _Requests] = field(
        default_factory=dict, repr=False
    )
    _frames: Frames | None = field(default=None, repr=False)
    _scopes: Any = field(default=None, repr=False)
    _tids_by_pid: dict[int, set[int]] = field(default_factory=dict, repr=False)

    def summary_of(self, pids: Sequence[int], name: str) -> Summary:
        """One summary over several processes (those of one name, for `iotrace diff`):
        percentiles, shares and the model over all their threads, as for a workload."""
        known = [p for p in pids if p in self._tids_by_pid]
        if self._scopes is None or not known:
            raise ValueError("no such processes in this analysis")
        tids = sorted(set().union(*(self._tids_by_pid[p] for p in known)))
        main = min(known)
        return cast(
            Summary,
            self._scopes.summary(scope="group", pid=main, tids=tids, main_tid=main, comm=name),
        )

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def frames(self) -> Frames:
        """Every record as frames (built on first use); only for an analysis of a
        loaded trace, since a streamed one never held the records."""
        if self._frames is None:
            if len(self.trace.events) != self.records:
                raise RuntimeError(
                    "this analysis streamed the trace without keeping its records; "
                    "use analyze(session.load(path)) for frames"
                )
            self._frames = frames(self.trace)
        return self._frames

    def request_latencies_ns(self, s: Summary) -> np.ndarray:
        """Latency of each completed request of the process `s` that its model
        counts (its API's requests for async-nonblocking, else its sync ones)."""
        mine = [
            (g, r) for (p, _, g, _), r in self.request_store.items() if p == s.pid and r.observed
        ]
        group = _SYNC
        if s.label.model == "async-nonblocking" and any(g == s.label.api for g, _ in mine):
            group = s.label.api
        return _joined([r.lats for g, r in mine if g == group], np.float64)

    def in_flight(self) -> list[tuple[int, str, np.ndarray, np.ndarray]]:
        """(pid, API, submit times, completion times) of the completed async
        requests of each process and API, sorted by pid and API."""
        groups: dict[tuple[int, str], list[_Requests]] = {}
        for (p, _, g, _), r in self.request_store.items():
            if g != _SYNC and r.observed:
                groups.setdefault((p, g), []).append(r)
        out = []
        for (p, g), reqs in sorted(groups.items()):
            start = _joined([r.starts for r in reqs], np.int64)
            lat = _joined([r.lats for r in reqs], np.int64)
            out.append((p, g, start, start + lat))
        return out


def _counter_map(stats: Mapping[str, Any], name: str) -> dict[str, int]:
    raw = stats.get(name, {})
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, int] = {}
    for k, v in raw.items():
        try:
            n = int(v)
        except (TypeError, ValueError):
            continue
        if n:
            out[str(k)] = n
    return out


def comms(trace: Trace, fr: Frames) -> dict[int, str]:
    """tid -> latest known command name (an exec renames a task)."""
    out = {t.tid: t.comm for t in sorted(trace.tasks, key=lambda t: t.start_ns) if t.comm}
    tk = fr.tasks.sort_values("ts_ns")
    for tid, comm, op in zip(tk["tid"], tk["comm"], tk["op"], strict=True):
        if comm and (int(op) == events.TaskOp.EXEC or int(tid) not in out):
            out[int(tid)] = comm
    return out


def workload_map(trace: Trace) -> tuple[dict[int, str], dict[str, str]]:
    """pid -> workload name, and workload name -> the model it declares."""
    by_pid: dict[int, str] = {}
    models: dict[str, str] = {}
    wl = trace.meta.get("workloads")
    if isinstance(wl, list):
        for w in wl:
            if not isinstance(w, Mapping):
                continue
            name = str(w.get("name", ""))
            models[name] = str(w.get("model", ""))
            for p in w.get("pids", []) or []:
                if isinstance(p, int):
                    by_pid[p] = name
    for t in trace.tasks:
        if t.workload:
            by_pid.setdefault(t.pid, t.workload)
    return by_pid, models


def analyze(trace: Trace, *, timeline: bool = False) -> Analysis:
    """Summaries for every traced process (with its threads) and workload, from
    a loaded trace. `timeline` also gathers the HTML timeline's segments."""
    b = _Builder(timeline=timeline)
    # One batch: the whole trace is at hand, so no order across batches is assumed.
    b.feed(trace.events)
    return b.finish(trace)


def analyze_file(
    path: Path | str, *, timeline: bool = False, batch_records: int = BATCH_RECORDS
) -> Analysis:
    """`analyze` for a trace file of any size: its records are read and folded a
    batch at a time and never held. A file whose threads' records are out of
    time order across batches (iotrace never writes one) is loaded whole instead,
    so the figures are the same either way."""
    stream = session.TraceStream(path)
    b = _Builder(timeline=timeline)
    try:
        for batch in batches(stream.events(), batch_records):
            b.feed(batch)
            del batch  # before the next is read: one chunk in memory, not two
    except _OutOfOrder:
        return analyze(session.load(path), timeline=timeline)
    return b.finish(stream.trace())


def _unmatched(stats: Mapping[str, Any]) -> dict[str, int]:
    """One map from the tracer's counters: "unmatched" (any probe), "unmatched_exit"
    and "unmatched_enter" (per syscall); missing keys count as 0."""
    out = dict(_counter_map(stats, "unmatched"))
    for key, what in (
        ("unmatched_exit", "exit without enter"),
        ("unmatched_enter", "enter without exit"),
    ):
        for probe, n in _counter_map(stats, key).items():
            out[f"{probe} {what}"] = n
    return out
