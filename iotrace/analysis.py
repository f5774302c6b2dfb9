"""Figures from a trace: per process, thread and workload, per request.

Everything here works from a loaded `session.Trace` (no root, no bcc). The
records are turned into three pandas frames once (`Frames`): syscalls,
requests and off-CPU intervals; the summaries are computed from those.

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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from iotrace import events
from iotrace.classify import Activity, Label, classify
from iotrace.events import SYSCALL_BY_OP, Flag, Kind
from iotrace.session import Trace

_FAMILY_BY_NAME: dict[str, str] = {s.name: s.family for s in events.SYSCALLS}
DATA_FAMILIES = ("read", "write", "recv", "send")
MUX_FAMILY = "mux"
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


def _sync_requests(sc: pd.DataFrame) -> pd.DataFrame:
    """Requests made with sync data calls, with start times per the module doc."""
    data = sc[sc["family"].isin(DATA_FAMILIES)]
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
    mux = sc[sc["family"] == MUX_FAMILY]
    if not mux.empty:
        tids = data["tid"].to_numpy()
        for tid, mux_t in mux.groupby("tid"):
            sel = np.flatnonzero((tids == tid) & done)
            if not len(sel):
                continue
            # A thread makes one call at a time, so its waits sorted by start are
            # sorted by end too. The wait that found this fd ready is the last one
            # that ended before the call began; it counts when it began after the
            # previous request on the fd finished (else the data was already there).
            m = mux_t.sort_values("ts_ns")
            m_ts = m["ts_ns"].to_numpy()
            m_end = m["end_ns"].to_numpy()
            i = np.searchsorted(m_end, ts[sel], side="right") - 1
            ok = i >= 0
            wait_ts = m_ts[np.clip(i, 0, None)]
            ok &= (prev_end[sel] < 0) | (wait_ts >= prev_end[sel])
            start[sel] = np.where(ok, wait_ts, start[sel])
    data = data.assign(start_ns=start)[done]
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
]


def _empty_requests() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="int64") for c in _REQ_COLUMNS}).astype(
        {
            "api": object,
            "op": object,
            "sync": bool,
            "worker": bool,
            "reap_inferred": bool,
            "observed": bool,
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
        }
    )


def frames(trace: Trace) -> Frames:
    """All of a trace's records as frames."""
    ev = trace.events
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


@dataclass
class Summary:
    """The figures of one process, thread or workload."""

    scope: str
    """"process", "thread" or "workload"."""
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

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "pid": self.pid,
            "comm": self.comm,
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


def _thread_spans(
    fr: Frames, tids: np.ndarray, sc: pd.DataFrame, off: pd.DataFrame, reqs: pd.DataFrame
) -> dict[int, tuple[int, int]]:
    spans: dict[int, tuple[int, int]] = {}
    parts = [sc[["tid", "ts_ns", "end_ns"]], off[["tid", "ts_ns", "end_ns"]]]
    sub = reqs[reqs["sync"] == False]  # noqa: E712 - pandas column compare
    if not sub.empty:
        parts.append(
            pd.DataFrame({"tid": sub["tid"], "ts_ns": sub["submit_ns"], "end_ns": sub["submit_ns"]})
        )
    tk = fr.tasks[fr.tasks["tid"].isin(tids)]
    if not tk.empty:
        parts.append(pd.DataFrame({"tid": tk["tid"], "ts_ns": tk["ts_ns"], "end_ns": tk["ts_ns"]}))
    allp = pd.concat(parts, ignore_index=True)
    if allp.empty:
        return spans
    g = allp.groupby("tid")
    lo = g["ts_ns"].min()
    hi = g["end_ns"].max()
    for tid in lo.index:
        spans[int(tid)] = (int(lo[tid]), int(max(hi[tid], lo[tid])))
    return spans


def _batch(sc: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    rules = {
        "iocbs_per_io_submit": (sc["name"] == "io_submit") & (sc["ret"] > 0),
        "events_per_io_getevents": sc["name"].isin(["io_getevents", "io_pgetevents"])
        & (sc["ret"] >= 0),
        "sqes_per_io_uring_enter": (sc["name"] == "io_uring_enter")
        & (sc["size"] > 0)
        & (sc["ret"] >= 0),
        "ready_per_mux_call": (sc["family"] == MUX_FAMILY) & (sc["ret"] >= 0),
    }
    for name, mask in rules.items():
        vals = sc.loc[mask, "ret"]
        if len(vals):
            out[name] = {
                "calls": len(vals),
                "mean": round(float(vals.mean()), 3),
                "max": int(vals.max()),
            }
    return out


def _families(sc: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, g in sc.groupby("name", sort=True):
        ret = g["ret"]
        out[str(name)] = {
            "calls": len(g),
            # Only data calls move bytes; a multiplexer's result is a count of fds.
            "bytes": int(ret[ret > 0].sum()) if g["family"].iloc[0] in DATA_FAMILIES else None,
            "errors": int((ret < 0).sum()),
            "eagain": int(g["eagain"].sum()),
            "latency_us": percentiles_us(g["dur_ns"].to_numpy()),
            # Share of the time inside these calls spent asleep (off CPU, not runnable),
            # the same measure as the process's BLOCK%.
            "asleep_share": round(
                float((g["off_cpu_ns"] - g["runq_ns"]).sum()) / max(int(g["dur_ns"].sum()), 1),
                3,
            ),
            "runq_share": round(float(g["runq_ns"].sum()) / max(int(g["dur_ns"].sum()), 1), 3),
        }
    return out


def _activity(
    sc: pd.DataFrame, reqs: pd.DataFrame, thread_ns: int, tids: list[int], main_tid: int
) -> Activity:
    by = sc.groupby("name")
    syscalls = {str(k): int(v) for k, v in by.size().items()}
    syscall_ns = {str(k): int(v) for k, v in by["dur_ns"].sum().items()}
    off = {str(k): int(v) for k, v in (by["off_cpu_ns"].sum() - by["runq_ns"].sum()).items()}
    eag = {str(k): int(v) for k, v in by["eagain"].sum().items() if v}
    ar = reqs[~reqs["sync"].astype(bool)]
    requests = {str(k): int(v) for k, v in ar.groupby("api").size().items()}
    data = sc[sc["family"].isin(DATA_FAMILIES)]
    helpers = data[data["tid"] != main_tid]
    return Activity(
        wall_ns=thread_ns,
        syscalls=syscalls,
        syscall_ns=syscall_ns,
        off_cpu_ns=off,
        eagain=eag,
        requests=requests,
        threads=len(tids),
        main_data_calls=int((data["tid"] == main_tid).sum()),
        helper_threads=int(helpers["tid"].nunique()),
        main_mux_calls=int(((sc["family"] == MUX_FAMILY) & (sc["tid"] == main_tid)).sum()),
        helper_calls={str(k): int(v) for k, v in helpers.groupby("name").size().items()},
    )


def summarize(
    fr: Frames,
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
    tid_arr = np.asarray(tids, dtype="int64")
    sc = fr.syscalls[fr.syscalls["tid"].isin(tid_arr)]
    reqs_all = fr.requests[fr.requests["tid"].isin(tid_arr)]
    off = fr.off_cpu[fr.off_cpu["tid"].isin(tid_arr)]
    spans = _thread_spans(fr, tid_arr, sc, off, reqs_all)
    thread_ns = sum(e - s for s, e in spans.values())
    wall_lo = min((s for s, _ in spans.values()), default=0)
    wall_hi = max((e for _, e in spans.values()), default=0)
    wall_ns = wall_hi - wall_lo

    label = classify(_activity(sc, reqs_all, thread_ns, tids, main_tid))
    async_model = label.model == "async-nonblocking" and label.api in (
        "libaio",
        "io_uring",
        "posix-aio",
    )
    reqs = reqs_all[reqs_all["api"] == label.api] if async_model else reqs_all[reqs_all["sync"]]
    if async_model and reqs.empty:
        # posix-aio seen only as helper threads doing blocking calls.
        reqs = reqs_all[reqs_all["sync"]]
    observed = reqs[reqs["observed"]]
    n_req = len(reqs)
    lat = observed["latency_ns"].to_numpy(dtype="float64")
    kern = reqs["kernel_ns"].to_numpy(dtype="float64")
    if len(observed):
        r_lo = float(reqs["start_ns"].min())
        r_hi = float(np.nanmax(observed["done_ns"].to_numpy(dtype="float64")))
        r_span = max(r_hi - r_lo, 1.0)
    else:
        r_span = 0.0
    n_sys = len(sc)
    total_bytes = int(observed["bytes"].sum())

    # Time shares, summed over threads (so a multi-threaded process stays within 100%).
    io_calls = sc["family"].isin(DATA_FAMILIES) | sc["name"].isin(_IO_WAIT_CALLS)
    asleep = sc["off_cpu_ns"] - sc["runq_ns"]
    blocked_io = int(asleep[io_calls].sum())
    mux_wait = int(asleep[sc["family"] == MUX_FAMILY].sum())
    # Off-CPU per thread from its intervals; a thread without any (probe missing) falls
    # back to what its syscalls saw.
    off_tids = set(off["tid"].unique().tolist())
    sc_rest = sc[~sc["tid"].isin(off_tids)]
    off_total = int((off["end_ns"] - off["ts_ns"]).sum()) + int(sc_rest["off_cpu_ns"].sum())
    runq = int(off["runq_ns"].sum()) + int(sc_rest["runq_ns"].sum())
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
    eagain = {str(k): int(v) for k, v in sc.groupby("name")["eagain"].sum().items() if v}
    if len(observed):
        depth = depth_stats(
            observed["start_ns"].to_numpy(),
            observed["done_ns"].to_numpy(dtype="float64"),
            int(r_span),
        )
    else:
        depth = {"mean": 0.0, "max": 0}
    requests: dict[str, Any] = {
        "count": n_req,
        "api": label.api,
        "completed": len(observed),
        "not_observed": n_req - len(observed),
        "errors": int((observed["ret"] < 0).sum()),
        "bytes": total_bytes,
        "iops": round(len(observed) / (r_span / 1e9), 1) if r_span else None,
        "mb_per_s": round(total_bytes / 1e6 / (r_span / 1e9), 3) if r_span else None,
        "latency_us": percentiles_us(lat),
        "kernel_latency_us": percentiles_us(kern) if not reqs["sync"].all() else None,
        "syscalls_per_request": round(n_sys / n_req, 3) if n_req else None,
        "cpu_us_per_request": round(on_cpu / 1000 / n_req, 3) if n_req else None,
        "eagain_per_request": round(sum(eagain.values()) / n_req, 3) if n_req else None,
        "to_kernel_workers": int(reqs["worker"].sum()),
        "reap_inferred": int(reqs["reap_inferred"].sum()),
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
        syscalls={str(k): int(v) for k, v in sc.groupby("name").size().items()},
        eagain=eagain,
        errors=int((sc["ret"] < 0).sum()),
        requests=requests,
        time_share=time_share,
        batch=_batch(sc),
        in_flight=depth,
        families=_families(sc),
        expected_model=expected_model,
    )


@dataclass
class Analysis:
    """Everything the report, the HTML page and the exports show."""

    trace: Trace
    frames: Frames
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

    @property
    def duration_ns(self) -> int:
        return self.frames.end_ns - self.frames.start_ns


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


def analyze(trace: Trace) -> Analysis:
    """Summaries for every traced process (with its threads) and workload."""
    fr = frames(trace)
    names = comms(trace, fr)
    wl_by_pid, wl_models = workload_map(trace)
    # A workload's first pid is the one doing its I/O; the others are its producers,
    # whose writes are not the model the workload declares.
    wl_main = {
        int(w["pids"][0])
        for w in trace.meta.get("workloads") or []
        if isinstance(w, Mapping) and w.get("pids") and isinstance(w["pids"][0], int)
    }
    tids_by_pid: dict[int, set[int]] = {}
    for df in (fr.syscalls, fr.requests, fr.off_cpu):
        for pid, tid in df[["pid", "tid"]].drop_duplicates().itertuples(index=False):
            tids_by_pid.setdefault(int(pid), set()).add(int(tid))
    processes: list[Summary] = []
    for pid in sorted(tids_by_pid):
        tids = sorted(tids_by_pid[pid])
        wl = wl_by_pid.get(pid, "")
        s = summarize(
            fr,
            scope="process",
            pid=pid,
            tids=tids,
            main_tid=pid,
            comm=names.get(pid, names.get(tids[0], "?")),
            workload=wl,
            expected_model=wl_models.get(wl, "") if pid in wl_main else "",
        )
        if len(tids) > 1:
            s.thread_summaries = [
                summarize(
                    fr,
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
        s = summarize(
            fr,
            scope="workload",
            pid=main,
            tids=tids,
            main_tid=main,
            comm=names.get(main, "?"),
            workload=wl,
            expected_model=wl_models.get(wl, ""),
        )
        workloads.append(s)

    lost = _counter_map(trace.stats, "lost")
    lost_records = int(fr.lost["count"].sum()) if not fr.lost.empty else 0
    lost_total = max(sum(lost.values()), lost_records)
    ranges = [
        {
            "start_s": round((int(r["ts_ns"]) - fr.start_ns) / 1e9, 6),
            "end_s": round((int(r["end_ns"]) - fr.start_ns) / 1e9, 6),
            "count": int(r["count"]),
            "probe": str(r["probe"]),
        }
        for r in records(fr.lost.sort_values("ts_ns"))
    ]
    return Analysis(
        trace=trace,
        frames=fr,
        processes=processes,
        workloads=workloads,
        lost=lost,
        lost_total=lost_total,
        lost_ranges=ranges,
        unmatched=_unmatched(trace.stats),
        evicted={**_counter_map(trace.stats, "evicted"), **_counter_map(trace.stats, "other")},
        write_error=str(trace.stats.get("write_error") or ""),
    )


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
