"""Block-device time inside calls: each BLOCK record (one block request a traced
thread queued, tracer/bpf/block.bpf.c) is charged to the call that thread had in
flight when it queued the request, so a read can be said to have spent "4.8 ms of
its 5.1 ms at the device", or to have come from the page cache (no request at all).

Calls are the thread's system calls (plain records and folded runs); the block
layer sees a request when the call queues it (insert into the I/O scheduler, or
issue without one), and a thread is in one syscall at a time, so "the call in
flight" is the one whose enter..exit holds that instant. An io_uring or AIO
request's I/O is charged to the io_uring_enter / io_submit that queued it.
Requests queued outside any recorded call (a page fault not counted as major,
readahead finishing after the call, a kernel worker's dispatch) are counted as
`outside_calls`. Writeback of buffered writes is issued by flusher threads and
is never charged: a buffered write's time is its copy into the page cache.

Device time of a call is the union of its requests' issue..completion intervals
clipped to the call (readahead sends several requests at once; summing them
would pass the call's own duration).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from iotrace import events, session
from iotrace.events import Kind

DATA_FAMILIES: Final = ("read", "write", "copy")
"""Families of the calls a cache-hit share is taken over: the calls that move file data."""
_DATA_OPS: Final = np.array(
    sorted(s.op for s in events.SYSCALLS if s.family in DATA_FAMILIES), dtype=np.int64
)


@dataclass
class CallIO:
    """A data call that queued block requests."""

    name: str
    tid: int
    fd: int
    ts_ns: int
    dur_ns: int
    device_ns: int
    requests: int


@dataclass
class BlockStats:
    """One process's block-device figures."""

    pid: int
    requests: int = 0
    bytes: int = 0
    errors: int = 0
    outside_calls: int = 0
    """Requests queued while the thread was in no recorded call."""
    data_calls: int = 0
    """Calls of the DATA_FAMILIES (a folded run counts as its calls)."""
    data_calls_with_io: int = 0
    data_call_ns: int = 0
    device_in_calls_ns: int = 0
    """Time data calls spent with a request of theirs at the device (union per call)."""
    latencies_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    calls: list[CallIO] = field(default_factory=list, repr=False)
    """Every data call that queued block requests, in time order per thread."""

    @property
    def slowest(self) -> CallIO | None:
        """The data call with the most device time."""
        return max(self.calls, key=lambda c: c.device_ns, default=None)

    @property
    def cache_hit_share(self) -> float | None:
        """Data calls that did no block I/O, of all data calls."""
        if not self.data_calls:
            return None
        return 1.0 - self.data_calls_with_io / self.data_calls

    @property
    def device_share(self) -> float | None:
        """Share of the data calls' time spent with a request at the device."""
        if not self.data_call_ns:
            return None
        return min(1.0, self.device_in_calls_ns / self.data_call_ns)

    def latency_us(self) -> dict[str, float | None]:
        if not len(self.latencies_ns):
            return {"p50": None, "p99": None, "max": None}
        p = np.percentile(self.latencies_ns.astype(np.float64), [50, 99]) / 1000.0
        return {
            "p50": round(float(p[0]), 3),
            "p99": round(float(p[1]), 3),
            "max": round(float(self.latencies_ns.max()) / 1000.0, 3),
        }

    def to_json(self) -> dict[str, Any]:
        hit = self.cache_hit_share
        dev = self.device_share
        slow = self.slowest
        return {
            "requests": self.requests,
            "bytes": self.bytes,
            "errors": self.errors,
            "outside_calls": self.outside_calls,
            "data_calls": self.data_calls,
            "data_calls_with_block_io": self.data_calls_with_io,
            "cache_hit_share": None if hit is None else round(hit, 4),
            "device_time_share": None if dev is None else round(dev, 4),
            "device_in_calls_ns": self.device_in_calls_ns,
            "device_latency_us": self.latency_us(),
            "slowest": None
            if slow is None
            else {
                "syscall": slow.name,
                "tid": slow.tid,
                "fd": slow.fd,
                "ts_ns": slow.ts_ns,
                "dur_ns": slow.dur_ns,
                "device_ns": slow.device_ns,
            },
        }


def _pick(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The calls (plain and runs) and the BLOCK records of one batch."""
    k = batch["kind"]
    calls = batch[(k == int(Kind.SYSCALL)) | (k == int(Kind.SYSCALL_RUN))]
    cols = np.empty(
        len(calls),
        dtype=[
            ("pid", "<u4"),
            ("tid", "<u4"),
            ("ts", "<i8"),
            ("end", "<i8"),
            ("op", "<u2"),
            ("fd", "<i8"),
            ("n", "<i8"),
        ],
    )
    cols["pid"] = calls["pid"]
    cols["tid"] = calls["tid"]
    cols["ts"] = calls["ts_ns"].astype(np.int64)
    cols["end"] = calls["end_ns"].astype(np.int64)
    cols["op"] = calls["op"]
    cols["fd"] = calls["fd"]
    run = calls["kind"] == int(Kind.SYSCALL_RUN)
    cols["n"] = np.where(run, calls["offset"].astype(np.int64), 1)
    return cols, batch[k == int(Kind.BLOCK)].copy()


TRACED: Final = "requests of traced threads (block_rq_insert/issue/complete)"
"""meta["probes"]["block"] of a trace recorded with the block probes."""


def traced(trace: session.Trace) -> bool:
    probes = trace.meta.get("probes")
    return isinstance(probes, dict) and probes.get("block") == TRACED


def block_stats(chunks: Iterable[np.ndarray], *, traced: bool = True) -> dict[int, BlockStats]:
    """pid -> figures, for every process with data calls or block requests.
    Empty when the trace has no BLOCK records and was not `traced` with the
    block probes (then no request does not mean a page-cache hit)."""
    picked = [_pick(c) for c in chunks if len(c)]
    if not picked:
        return {}
    calls = np.concatenate([p[0] for p in picked])
    blocks = np.concatenate([p[1] for p in picked])
    if not len(blocks) and not traced:
        return {}
    out: dict[int, BlockStats] = {}
    data = np.isin(calls["op"].astype(np.int64), _DATA_OPS)
    for pid in np.unique(calls["pid"][data]):
        st = out.setdefault(int(pid), BlockStats(int(pid)))
        sel = data & (calls["pid"] == pid)
        st.data_calls = int(calls["n"][sel].sum())
        st.data_call_ns = int((calls["end"][sel] - calls["ts"][sel]).sum())
    # the instant a request was queued: its insert, else its issue
    queued = np.where(blocks["kdone_ns"] > 0, blocks["kdone_ns"], blocks["ts_ns"]).astype(np.int64)
    for pid in np.unique(blocks["pid"]):
        st = out.setdefault(int(pid), BlockStats(int(pid)))
        mine = blocks["pid"] == pid
        b = blocks[mine]
        st.requests = len(b)
        st.bytes = int(b["size"].sum())
        st.errors = int((b["ret"] != 0).sum())
        st.latencies_ns = (b["end_ns"].astype(np.int64) - b["ts_ns"].astype(np.int64)).clip(0)
    order = np.lexsort((calls["ts"], calls["tid"]))
    calls = calls[order]
    data = data[order]
    # per call index: device intervals charged to it
    charged: dict[int, list[tuple[int, int]]] = {}
    for i in range(len(blocks)):
        tid = int(blocks["tid"][i])
        q = int(queued[i])
        lo, hi = np.searchsorted(calls["tid"], [tid, tid + 1])
        j = lo + int(np.searchsorted(calls["ts"][lo:hi], q, side="right")) - 1
        if j < lo or calls["end"][j] < q:
            out[int(blocks["pid"][i])].outside_calls += 1
            continue
        charged.setdefault(j, []).append((int(blocks["ts_ns"][i]), int(blocks["end_ns"][i])))
    for j, spans in sorted(charged.items()):
        if not data[j]:
            continue
        st = out[int(calls["pid"][j])]
        ts, end = int(calls["ts"][j]), int(calls["end"][j])
        dev = _union(spans, ts, end)
        st.data_calls_with_io += 1
        st.device_in_calls_ns += dev
        st.calls.append(
            CallIO(
                events.op_name(int(Kind.SYSCALL), int(calls["op"][j])),
                int(calls["tid"][j]),
                int(calls["fd"][j]),
                ts,
                end - ts,
                dev,
                len(spans),
            )
        )
    return out


def _union(spans: list[tuple[int, int]], lo: int, hi: int) -> int:
    """Length of the union of the spans, clipped to [lo, hi]."""
    total = 0
    cur_s = cur_e = None
    for s, e in sorted((max(s, lo), min(e, hi)) for s, e in spans):
        if e <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def block_stats_of(trace: session.Trace, records: int) -> dict[int, BlockStats]:
    """`block_stats` of an analysed trace: its records when they were loaded,
    else the file streamed again (the analysis never held them)."""
    on = traced(trace)
    if len(trace.events) == records:
        return block_stats([trace.events], traced=on)
    return block_stats(session.TraceStream(trace.path).events(), traced=on)
