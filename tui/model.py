"""What the dashboard knows, without any widget: the columnar event store and
the per-row aggregates the scoreboard shows.

The drain thread owns an `Aggregator`: it feeds every `Batch` to `ingest()`
(vectorised, O(batch)) and cuts an immutable `Snapshot` a few times a second.
The UI thread reads the `Store` for the timeline without locks: sealed
chunks never change, and the open chunk is read up to a length published only
after its columns were written.

The store keeps a narrower subset of each 104-byte record (`STORE_COLUMNS`,
75 bytes): the request identity, user_data and pid are dropped (pid is kept
per thread instead).
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from iotrace import classify as classify_mod
from iotrace import runs
from iotrace.events import (
    EAGAIN,
    EVENT_SIZE,
    MAX_PROBES,
    SYSCALL_BY_OP,
    Kind,
    TaskOp,
    comm_from_words,
    probe_name,
)
from iotrace.session import EVENT_DTYPE, TaskInfo

STORE_COLUMNS: Final[tuple[tuple[str, Any], ...]] = (
    ("ts_ns", np.int64),
    ("end_ns", np.int64),
    ("kdone_ns", np.int64),
    ("off_cpu_ns", np.int64),
    ("runq_ns", np.int64),
    ("offset", np.uint64),
    ("ret", np.int64),
    ("size", np.uint64),
    ("fd", np.int32),
    ("tid", np.uint32),
    ("kind", np.uint8),
    ("op", np.uint8),
    ("flags", np.uint8),
)
Cols = dict[str, np.ndarray]
"""Events as named columns (what the aggregator and the store work on)."""
_INGEST_FIELDS: Final = (*(name for name, _ in STORE_COLUMNS), "pid")


_AGG_FIELDS: Final = (
    "ts_ns",
    "end_ns",
    "kdone_ns",
    "off_cpu_ns",
    "runq_ns",
    "ret",
    "tid",
    "pid",
    "kind",
    "op",
)
"""What the per-row figures need (a narrower copy is cheaper to split by row)."""


_WORDS: Final = EVENT_SIZE // 8
_FAST_VIEW: Final = (
    sys.byteorder == "little"
    and EVENT_SIZE % 8 == 0
    and all(
        EVENT_DTYPE.fields[name][1] == off  # type: ignore[index]
        for name, off in (
            ("ts_ns", 0),
            ("ret", 40),
            ("fd", 48),
            ("offset", 64),
            ("pid", 88),
            ("tid", 92),
            ("kind", 96),
            ("op", 98),
            ("flags", 100),
        )
    )
)


def records_to_columns(ev: np.ndarray, idx: np.ndarray | None = None) -> Cols:
    """Records (EVENT_DTYPE) to contiguous columns, rows `idx` only when given.

    Reading the records as 13 little-endian words is several times faster than
    numpy's per-field copy out of a structured array."""
    if not _FAST_VIEW:
        rows = ev if idx is None else ev[idx]
        return {name: np.ascontiguousarray(rows[name]) for name in _INGEST_FIELDS}
    w = np.ascontiguousarray(ev).view(np.uint64).reshape(-1, _WORDS)
    if idx is not None:
        w = w[idx]
    pid_tid = w[:, 11]
    kind_op_flags = w[:, 12]
    return {
        "ts_ns": w[:, 0].astype(np.int64),
        "end_ns": w[:, 1].astype(np.int64),
        "kdone_ns": w[:, 2].astype(np.int64),
        "off_cpu_ns": w[:, 3].astype(np.int64),
        "runq_ns": w[:, 4].astype(np.int64),
        "ret": w[:, 5].view(np.int64).copy(),
        "fd": w[:, 6].view(np.int64).astype(np.int32),
        "size": w[:, 7].copy(),
        "offset": w[:, 8].copy(),
        "pid": (pid_tid & 0xFFFFFFFF).astype(np.uint32),
        "tid": (pid_tid >> 32).astype(np.uint32),
        "kind": (kind_op_flags & 0xFFFF).astype(np.uint16),
        "op": ((kind_op_flags >> 16) & 0xFFFF).astype(np.uint16),
        "flags": (kind_op_flags >> 32).astype(np.uint32),
    }


def _sel(cols: Cols, m: np.ndarray) -> Cols:
    idx = np.flatnonzero(m)  # once, then a gather per column: cheaper than masks
    return {k: v[idx] for k, v in cols.items()}


def _n(cols: Cols) -> int:
    return len(cols["ts_ns"])


BYTES_PER_EVENT: Final = sum(np.dtype(t).itemsize for _, t in STORE_COLUMNS)

CHUNK_EVENTS: Final = 1 << 15
"""Small enough that the open chunk, repainted every frame, stays cheap."""
DEFAULT_MAX_EVENTS: Final = 20_000_000
"""About 1.5 GB; beyond it the oldest chunk leaves the view (counted, never silent)."""

REQUEST_KINDS: Final = (Kind.AIO_REQUEST, Kind.URING_REQUEST, Kind.POSIX_AIO_REQUEST)
REQUEST_API: Final = {
    int(Kind.AIO_REQUEST): "libaio",
    int(Kind.URING_REQUEST): "io_uring",
    int(Kind.POSIX_AIO_REQUEST): "posix-aio",
}
_STORED_KINDS: Final = np.array(
    [int(Kind.SYSCALL), int(Kind.OFF_CPU), *[int(k) for k in REQUEST_KINDS]], dtype=np.uint16
)

# Syscall op -> family code, as a lookup array for vectorised grouping.
FAM_OTHER: Final = 0
FAM_DATA: Final = 1
FAM_MUX: Final = 2
FAM_ASYNC: Final = 3
FAMILY_OF_OP: Final = np.zeros(MAX_PROBES, dtype=np.uint8)
for _op, _sc in SYSCALL_BY_OP.items():
    FAMILY_OF_OP[_op] = {"read": 1, "write": 1, "recv": 1, "send": 1, "copy": 1, "mux": 2}.get(
        _sc.family, FAM_ASYNC if _sc.family in ("aio", "uring") else FAM_OTHER
    )
UNWAITED_OP: Final = np.zeros(MAX_PROBES, dtype=bool)
"""Requests no multiplexer wait starts: positional calls (files only, which no wait
reports ready) and major page faults (a sync request each, timed by itself)."""
for _op, _sc in SYSCALL_BY_OP.items():
    UNWAITED_OP[_op] = _sc.name in classify_mod.POSITIONAL or _sc.family == "fault"
MIN_RATED_REQUESTS: Final = 20
MIN_RATED_SPAN_NS: Final = 10_000_000
"""No rate from under 20 requests or 10 ms (NaN, shown as "-")."""

# Latency histogram: 4 buckets per power of two, from 1 ns to ~2^63 ns.
HIST_PER_OCTAVE: Final = 4
HIST_BUCKETS: Final = 64 * HIST_PER_OCTAVE

CLASSIFY_WINDOW_NS: Final = 5_000_000_000
"""Live rows are labelled from their last 5 s, so a program that changes model is seen to."""
RATE_WINDOW_NS: Final = 2_000_000_000


def hist_bucket(lat_ns: np.ndarray) -> np.ndarray:
    v = np.maximum(lat_ns.astype(np.float64), 1.0)
    return np.minimum((np.log2(v) * HIST_PER_OCTAVE).astype(np.intp), HIST_BUCKETS - 1)


def bucket_value(b: int) -> float:
    """A representative latency for bucket b (its geometric middle)."""
    return float(2.0 ** ((b + 0.5) / HIST_PER_OCTAVE))


def hist_quantile(hist: np.ndarray, q: float) -> float:
    total = int(hist.sum())
    if total == 0:
        return 0.0
    b = int(np.searchsorted(np.cumsum(hist), q * total, side="left"))
    return bucket_value(min(b, HIST_BUCKETS - 1))


class _Chunk:
    __slots__ = ("__weakref__", "base", "cols", "first_row", "max_t", "min_ts", "n")

    def __init__(self, cap: int, first_row: int = 0) -> None:
        self.cols = {name: np.empty(cap, dtype=t) for name, t in STORE_COLUMNS}
        self.n = 0
        self.min_ts = np.iinfo(np.int64).max
        self.max_t = 0
        self.first_row = first_row
        """Rows appended to the store before this chunk's first."""
        self.base: Any = None
        """Cells painted from this chunk's first rows on the base grid (see
        `lanes.BasePainter`): replaced whole by the drain thread, never changed
        in place, so the UI thread reads it without a lock."""


@dataclass(frozen=True)
class LostGap:
    ts_ns: int
    end_ns: int
    count: int
    probe: str


class Store:
    """Bounded columnar store of the events the timeline draws.

    Appended to by one thread (the drain); read by others without locks.
    """

    def __init__(self, max_events: int = DEFAULT_MAX_EVENTS, chunk_events: int = CHUNK_EVENTS):
        self.chunk_events = chunk_events
        self.max_events = max(max_events, chunk_events * 2)
        self._chunks: list[_Chunk] = []
        self.lost: list[LostGap] = []
        self.evicted = 0
        """Events dropped from memory (oldest first) to stay under max_events."""
        self.evicted_until_ns = 0
        self.appended = 0
        """Rows ever appended (evicted ones included): a row's number is its place in this count."""

    def __len__(self) -> int:
        return sum(c.n for c in list(self._chunks))

    @property
    def nbytes(self) -> int:
        """Bytes held by the column arrays (allocated, including the open chunk's spare room)."""
        return sum(sum(a.nbytes for a in c.cols.values()) for c in list(self._chunks))

    def append(self, ev: np.ndarray) -> None:
        """Take records (EVENT_DTYPE): LOST ones become gaps, the rest are stored."""
        if len(ev) == 0:
            return
        kinds = ev["kind"]
        self.add_lost(ev[kinds == Kind.LOST])
        keep = np.isin(kinds, _STORED_KINDS)
        self.append_columns(records_to_columns(ev, np.flatnonzero(keep)))

    def add_lost(self, lost: np.ndarray) -> None:
        for r in lost:
            self.lost.append(
                LostGap(int(r["ts_ns"]), int(r["end_ns"]), int(r["size"]), probe_name(int(r["op"])))
            )

    def append_columns(self, cols: Cols) -> None:
        """Store already-filtered events given as columns (at least STORE_COLUMNS)."""
        total = len(cols["ts_ns"])
        start = 0
        while start < total:
            if not self._chunks or self._chunks[-1].n == self.chunk_events:
                self._chunks.append(_Chunk(self.chunk_events, self.appended))
                self._evict()
            c = self._chunks[-1]
            take = min(self.chunk_events - c.n, total - start)
            for name, _ in STORE_COLUMNS:
                c.cols[name][c.n : c.n + take] = cols[name][start : start + take]
            ts = c.cols["ts_ns"][c.n : c.n + take]
            top = np.maximum(
                np.maximum(
                    c.cols["end_ns"][c.n : c.n + take], c.cols["kdone_ns"][c.n : c.n + take]
                ),
                ts,
            )
            c.min_ts = min(c.min_ts, int(ts.min()))
            c.max_t = max(c.max_t, int(top.max()))
            # Publish the length last: a reader sees whole rows or none.
            c.n += take
            self.appended += take
            start += take

    def _evict(self) -> None:
        while sum(c.n for c in self._chunks) + self.chunk_events > self.max_events:
            old = self._chunks.pop(0)
            self.evicted += old.n
            self.evicted_until_ns = max(self.evicted_until_ns, old.max_t)

    def chunks(self) -> list[Any]:
        """The chunks, oldest first (a copy: the drain may add or evict meanwhile)."""
        return list(self._chunks)

    def chunks_overlapping(self, t0: int, t1: int) -> list[tuple[Any, int, dict[str, np.ndarray]]]:
        """(chunk, rows, columns) of each chunk that may hold events overlapping [t0, t1],
        oldest first. A chunk object is a stable identity while its row count stays."""
        out = []
        for c in list(self._chunks):
            n = c.n
            if n and c.min_ts <= t1 and c.max_t >= t0:
                out.append((c, n, {name: c.cols[name][:n] for name, _ in STORE_COLUMNS}))
        return out

    def time_range(self) -> tuple[int, int]:
        chunks = [c for c in list(self._chunks) if c.n]
        if not chunks:
            return 0, 0
        return min(c.min_ts for c in chunks), max(c.max_t for c in chunks)


@dataclass
class ThreadInfo:
    tid: int
    pid: int
    comm: str
    row: str
    first_ns: int
    last_ns: int
    has_requests: bool = False
    exited: bool = False


@dataclass(frozen=True)
class LaneInfo:
    """One traced thread as the timeline draws it."""

    tid: int
    pid: int
    comm: str
    row: str
    first_ns: int
    last_ns: int
    has_requests: bool


@dataclass(frozen=True)
class RowSnapshot:
    """One scoreboard row (a workload, or a process when no workload is known)."""

    key: str
    model: str
    api: str
    evidence: str
    declared_model: str
    requests: int
    iops: float
    p50_ns: float
    p99_ns: float
    syscalls_per_req: float
    cpu_per_req_ns: float
    eagain_per_req: float
    depth: float
    """Mean requests in flight (Little's law: total request time / wall time)."""
    shares: Mapping[str, float]
    """State -> share of the threads' traced time (cpu, blocked, mux, reap, runq, sleep)."""
    hist: tuple[int, ...]
    not_observed: int
    threads: int
    pids: tuple[int, ...]


@dataclass(frozen=True)
class Snapshot:
    """Everything the UI draws that is not raw events; immutable, posted from the drain."""

    rows: tuple[RowSnapshot, ...]
    lanes: tuple[LaneInfo, ...]
    now_ns: int
    origin_ns: int
    events: int
    events_per_s: float
    lost: Mapping[str, int]
    unmatched: Mapping[str, int]
    evicted: Mapping[str, int]
    store_evicted: int
    finished: bool
    lost_gaps: tuple[LostGap, ...] = ()
    damage: str = ""

    @property
    def lost_total(self) -> int:
        return sum(self.lost.values())


def _sum_counts(d: Any) -> dict[str, int]:
    """Counters from source stats: {"probe": n} or a plain number."""
    if isinstance(d, Mapping):
        out: dict[str, int] = {}
        for k, v in d.items():
            try:
                out[str(k)] = int(v)
            except (TypeError, ValueError):
                continue
        return out
    if isinstance(d, int | float):
        return {"all": int(d)}
    return {}


@dataclass
class _Window:
    now_ns: int
    counts: np.ndarray
    sys_ns: np.ndarray
    off_ns: np.ndarray
    eagain: np.ndarray
    requests: dict[str, int]
    timeouts: np.ndarray
    idle_ns: np.ndarray


@dataclass
class _RowAcc:
    key: str
    declared_model: str = ""
    declared_api: str = ""
    counts: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.int64))
    sys_ns: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.float64))
    off_ns: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.float64))
    runq_ns: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.float64))
    eagain: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.int64))
    timeouts: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.int64))
    """Multiplexer calls that returned 0 ready (timed out): idle, not I/O."""
    idle_ns: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.float64))
    """Time asleep in those timed-out waits."""
    counts_main: np.ndarray = field(default_factory=lambda: np.zeros(MAX_PROBES, np.int64))
    """Calls made by main threads (tid == pid); the rest were made by helper threads."""
    helper_tids: set[int] = field(default_factory=set)
    """Threads other than a main one that made data calls (glibc POSIX AIO's helpers)."""
    requests: dict[str, int] = field(default_factory=dict)
    async_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BUCKETS, np.int64))
    async_lat_ns: float = 0.0
    not_observed: int = 0
    sync_requests: int = 0
    sync_hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BUCKETS, np.int64))
    sync_lat_ns: float = 0.0
    sleep_other_ns: float = 0.0
    runq_other_ns: float = 0.0
    first_ns: int = 0
    last_ns: int = 0
    pids: set[int] = field(default_factory=set)
    tids: set[int] = field(default_factory=set)
    window: deque[_Window] = field(default_factory=deque)
    rate: deque[tuple[int, int]] = field(default_factory=deque)


def _grouped_spans(tid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per distinct tid: (tid, min lo, max hi), by one sort instead of a Python loop."""
    order = np.argsort(tid, kind="stable")
    t = tid[order]
    starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
    return (
        t[starts],
        np.minimum.reduceat(lo[order], starts),
        np.maximum.reduceat(hi[order], starts),
    )


class Aggregator:
    """Turns batches into the store and the per-row aggregates (drain-thread side)."""

    def __init__(
        self,
        meta: Mapping[str, Any] | None = None,
        *,
        live: bool = True,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        self.meta = dict(meta or {})
        self.live = live
        self.store = Store(max_events=max_events)
        self.threads: dict[int, ThreadInfo] = {}
        self.rows: dict[str, _RowAcc] = {}
        self.tasks: dict[int, TaskInfo] = {}
        self.pid_row: dict[int, str] = {}
        self.pid_comm: dict[int, str] = {}
        self.stats: dict[str, Any] = {}
        self.now_ns = 0
        self.origin_ns = 0
        self.events = 0
        self.finished = False
        self.damage = ""
        self._carry: dict[int, int] = {}
        self._rate: deque[tuple[int, int]] = deque()
        self._lock = threading.Lock()
        for w in self.meta.get("workloads") or []:
            if not isinstance(w, Mapping) or not w.get("name"):
                continue
            acc = self._row(str(w["name"]))
            acc.declared_model = str(w.get("model", ""))
            acc.declared_api = str(w.get("api", ""))
            for pid in w.get("pids") or []:
                if isinstance(pid, int):
                    self.pid_row[pid] = acc.key
        clock = self.meta.get("clock")
        if isinstance(clock, Mapping) and isinstance(clock.get("monotonic_ns"), int):
            self.origin_ns = int(clock["monotonic_ns"])

    def _row(self, key: str) -> _RowAcc:
        acc = self.rows.get(key)
        if acc is None:
            acc = self.rows[key] = _RowAcc(key)
        return acc

    def _row_key(self, pid: int) -> str:
        row = self.pid_row.get(pid)
        if row:
            return row
        comm = self.pid_comm.get(pid, "")
        return f"{comm or 'pid'} {pid}"

    def add_tasks(self, tasks: Iterable[TaskInfo]) -> None:
        for t in tasks:
            self.tasks[t.tid] = t
            if t.workload:
                self.pid_row.setdefault(t.pid, t.workload)
            elif t.ppid in self.pid_row and t.pid not in self.pid_row:
                # A child of a workload process belongs to the workload.
                self.pid_row[t.pid] = self.pid_row[t.ppid]
            if t.tid == t.pid or t.pid not in self.pid_comm:
                self.pid_comm[t.pid] = t.comm
            th = self.threads.get(t.tid)
            if th is not None:
                th.comm = t.comm or th.comm

    def ingest(self, batch: Any) -> None:
        """Take one `iotrace.source.Batch`."""
        self.add_tasks(batch.tasks)
        if batch.stats:
            self.stats = dict(batch.stats)
        ev: np.ndarray = batch.events
        if len(ev):
            self._ingest_events(ev)
        self.now_ns = max(self.now_ns, int(batch.now_ns or 0))

    def _ingest_events(self, ev: np.ndarray) -> None:
        # A run record counts as its calls (runs.py), in bounded pieces.
        for piece in runs.expand(ev):
            self._ingest_piece(piece)

    def _ingest_piece(self, ev: np.ndarray) -> None:
        kinds = ev["kind"]
        task_ev = ev[kinds == Kind.TASK]
        for r in task_ev:
            op, tid, pid = int(r["op"]), int(r["tid"]), int(r["pid"])
            comm = comm_from_words(int(r["key"]), int(r["user_data"]))
            if op == TaskOp.EXIT and tid in self.threads:
                self.threads[tid].exited = True
            elif comm and op in (TaskOp.EXEC, TaskOp.FORK, TaskOp.THREAD):
                if tid == pid or pid not in self.pid_comm:
                    self.pid_comm[pid] = comm
                if op == TaskOp.FORK and int(r["fd"]) in self.pid_row:
                    self.pid_row.setdefault(pid, self.pid_row[int(r["fd"])])
        self.store.add_lost(ev[kinds == Kind.LOST])
        self.events += len(ev)
        keep = np.isin(kinds, _STORED_KINDS)
        # One pass from records to contiguous columns; everything after works on them.
        data = records_to_columns(ev, None if keep.all() else np.flatnonzero(keep))
        if _n(data) == 0:
            return
        self.store.append_columns(data)
        if self.origin_ns == 0:
            self.origin_ns = int(data["ts_ns"].min())
        self._update_threads(data)
        pids = data["pid"]
        upids = np.unique(pids)
        keys = [self._row_key(int(p)) for p in upids]
        if len(upids) == 1:
            self._accumulate(self._row(keys[0]), data, upids)
            return
        # Group by row with one sort, then hand each row a contiguous slice.
        names = sorted(set(keys))
        row_of_pid = np.array([names.index(k) for k in keys])
        rowidx = row_of_pid[np.searchsorted(upids, pids)]
        order = np.argsort(rowidx, kind="stable")
        agg = {name: data[name][order] for name in _AGG_FIELDS}
        bounds = np.searchsorted(rowidx[order], np.arange(len(names) + 1))
        for i, key in enumerate(names):
            a, b = int(bounds[i]), int(bounds[i + 1])
            if b > a:
                part = {k: v[a:b] for k, v in agg.items()}
                self._accumulate(self._row(key), part, upids[row_of_pid == i])

    def _update_threads(self, data: Cols) -> None:
        ts = data["ts_ns"].astype(np.int64)
        top = np.maximum(data["end_ns"], data["kdone_ns"]).astype(np.int64)
        top = np.maximum(top, ts)
        tids, lo, hi = _grouped_spans(data["tid"], ts, top)
        is_req = np.isin(data["kind"], [int(k) for k in REQUEST_KINDS])
        req_tids = set(np.unique(data["tid"][is_req]).tolist()) if is_req.any() else set()
        pid_of: dict[int, int] = {}
        if len(tids) <= 64:
            for tid in tids.tolist():
                if tid not in self.threads:
                    pid_of[tid] = int(data["pid"][np.argmax(data["tid"] == tid)])
        else:
            u, first = np.unique(data["tid"], return_index=True)
            pid_of = dict(zip(u.tolist(), data["pid"][first].tolist(), strict=True))
        for tid, a, b in zip(tids.tolist(), lo.tolist(), hi.tolist(), strict=True):
            th = self.threads.get(tid)
            if th is None:
                pid = pid_of[tid]
                task = self.tasks.get(tid)
                comm = task.comm if task else self.pid_comm.get(pid, "")
                th = self.threads[tid] = ThreadInfo(tid, pid, comm, self._row_key(pid), a, b)
            else:
                th.first_ns = min(th.first_ns, a)
                th.last_ns = max(th.last_ns, b)
            if tid in req_tids:
                th.has_requests = True

    def _accumulate(self, acc: _RowAcc, sub: Cols, pids: np.ndarray) -> None:
        acc.pids.update(int(p) for p in pids.tolist())
        acc.tids.update(int(t) for t in np.unique(sub["tid"]).tolist())
        ts_all = sub["ts_ns"]
        first = int(ts_all.min())
        last = int(max(int(sub["end_ns"].max()), int(sub["kdone_ns"].max()), int(ts_all.max())))
        acc.first_ns = first if acc.first_ns == 0 else min(acc.first_ns, first)
        acc.last_ns = max(acc.last_ns, last)
        k = sub["kind"]

        sc = _sel(sub, k == Kind.SYSCALL)
        d_counts: np.ndarray = np.zeros(MAX_PROBES, np.int64)
        d_sys: np.ndarray = np.zeros(MAX_PROBES, np.float64)
        d_off: np.ndarray = np.zeros(MAX_PROBES, np.float64)
        d_eagain: np.ndarray = np.zeros(MAX_PROBES, np.int64)
        d_timeouts: np.ndarray = np.zeros(MAX_PROBES, np.int64)
        d_idle: np.ndarray = np.zeros(MAX_PROBES, np.float64)
        if _n(sc):
            op = np.minimum(sc["op"].astype(np.intp), MAX_PROBES - 1)
            ts = sc["ts_ns"].astype(np.int64)
            end = sc["end_ns"].astype(np.int64)
            dur = np.where(end > ts, end - ts, 0).astype(np.float64)
            off = np.minimum(sc["off_cpu_ns"].astype(np.float64), dur)
            runq = np.minimum(sc["runq_ns"].astype(np.float64), off)
            d_counts = np.bincount(op, minlength=MAX_PROBES)
            d_sys = np.bincount(op, weights=dur, minlength=MAX_PROBES)
            d_off = np.bincount(op, weights=off, minlength=MAX_PROBES)
            acc.runq_ns += np.bincount(op, weights=runq, minlength=MAX_PROBES)
            eag = sc["ret"] == -EAGAIN
            d_eagain = np.bincount(op[eag], minlength=MAX_PROBES)
            timed_out = (FAMILY_OF_OP[op] == FAM_MUX) & (sc["ret"] == 0)
            d_timeouts = np.bincount(op[timed_out], minlength=MAX_PROBES)
            d_idle = np.bincount(
                op[timed_out], weights=(off - runq)[timed_out], minlength=MAX_PROBES
            )
            acc.timeouts += d_timeouts
            acc.idle_ns += d_idle
            acc.counts += d_counts
            main = sc["tid"] == sc["pid"]
            acc.counts_main += np.bincount(op[main], minlength=MAX_PROBES)
            helper_data = ~main & (FAMILY_OF_OP[op] == FAM_DATA)
            if helper_data.any():
                acc.helper_tids.update(np.unique(sc["tid"][helper_data]).tolist())
            acc.sys_ns += d_sys
            acc.off_ns += d_off
            acc.eagain += d_eagain
            self._sync_requests(acc, sc, op)

        d_req: dict[str, int] = {}
        for kind in REQUEST_KINDS:
            rm = k == kind
            if not rm.any():
                continue
            r = _sel(sub, rm)
            api = REQUEST_API[int(kind)]
            d_req[api] = _n(r)
            acc.requests[api] = acc.requests.get(api, 0) + _n(r)
            ts = r["ts_ns"].astype(np.int64)
            done = np.where(r["end_ns"] > 0, r["end_ns"], r["kdone_ns"]).astype(np.int64)
            ok = (done > 0) & (done >= ts)
            acc.not_observed += int((~ok).sum())
            lat = (done - ts)[ok]
            if len(lat):
                acc.async_hist += np.bincount(hist_bucket(lat), minlength=HIST_BUCKETS)
                acc.async_lat_ns += float(lat.sum())

        oc = _sel(sub, (k == Kind.OFF_CPU) & (sub["op"] == 0))
        if _n(oc):
            dur = np.maximum(oc["end_ns"].astype(np.int64) - oc["ts_ns"].astype(np.int64), 0)
            rq = np.minimum(oc["runq_ns"].astype(np.int64), dur)
            acc.sleep_other_ns += float((dur - rq).sum())
            acc.runq_other_ns += float(rq.sum())

        if self.live:
            acc.window.append(
                _Window(last, d_counts, d_sys, d_off, d_eagain, d_req, d_timeouts, d_idle)
            )
            while acc.window and acc.window[0].now_ns < last - CLASSIFY_WINDOW_NS:
                acc.window.popleft()

    def _sync_requests(self, acc: _RowAcc, sc: Cols, op: np.ndarray) -> None:
        """A synchronous request is one data call that did not return EAGAIN; its
        latency runs from the first call that tried for it (EAGAIN retries, a
        select/poll/epoll wait that found something ready) to the end of the call
        that delivered it. A wait that timed out is idle time; a positional call
        or a page fault is timed by itself (no wait reports a file ready)."""
        fam = FAMILY_OF_OP[op]
        unwaited = UNWAITED_OP[op] & (sc["ret"] != -EAGAIN)
        lats: list[np.ndarray] = []
        if unwaited.any():
            u_ts = sc["ts_ns"][unwaited].astype(np.int64)
            lats.append(sc["end_ns"][unwaited].astype(np.int64) - u_ts)
        m = ((fam == FAM_DATA) & ~UNWAITED_OP[op]) | ((fam == FAM_MUX) & (sc["ret"] > 0))
        if not m.any():
            self._add_sync(acc, lats)
            return
        tid = sc["tid"][m]
        ts = sc["ts_ns"][m].astype(np.int64)
        end = sc["end_ns"][m].astype(np.int64)
        deliver = (fam[m] == FAM_DATA) & (sc["ret"][m] != -EAGAIN)
        order = np.lexsort((ts, tid))
        tid, ts, end, deliver = tid[order], ts[order], end[order], deliver[order]
        bounds = np.flatnonzero(np.r_[True, tid[1:] != tid[:-1], True])
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            t = int(tid[a])
            di = np.flatnonzero(deliver[a:b])
            carry = self._carry.get(t)
            if len(di) == 0:
                if carry is None:
                    self._carry[t] = int(ts[a])
                continue
            first_idx = np.empty_like(di)
            first_idx[0] = 0
            first_idx[1:] = di[:-1] + 1
            starts = ts[a:b][first_idx]
            if carry is not None:
                starts[0] = min(int(starts[0]), carry)
            lats.append(end[a:b][di] - starts)
            if di[-1] < b - a - 1:
                self._carry[t] = int(ts[a + di[-1] + 1])
            else:
                self._carry.pop(t, None)
        self._add_sync(acc, lats)

    @staticmethod
    def _add_sync(acc: _RowAcc, lats: list[np.ndarray]) -> None:
        if lats:
            lat = np.maximum(np.concatenate(lats), 0)
            acc.sync_requests += len(lat)
            acc.sync_hist += np.bincount(hist_bucket(lat), minlength=HIST_BUCKETS)
            acc.sync_lat_ns += float(lat.sum())

    def _activity(self, acc: _RowAcc) -> classify_mod.Activity:
        recent = (
            self.live
            and not self.finished
            and any(w.counts.any() or w.requests for w in acc.window)
        )
        # A row quiet for the whole window (its workload ended) keeps the label
        # its whole run earned rather than turning "idle".
        if recent:
            counts = sum((w.counts for w in acc.window), np.zeros(MAX_PROBES, np.int64))
            sys_ns = sum((w.sys_ns for w in acc.window), np.zeros(MAX_PROBES))
            off_ns = sum((w.off_ns for w in acc.window), np.zeros(MAX_PROBES))
            eagain = sum((w.eagain for w in acc.window), np.zeros(MAX_PROBES, np.int64))
            timeouts = sum((w.timeouts for w in acc.window), np.zeros(MAX_PROBES, np.int64))
            idle_ns = sum((w.idle_ns for w in acc.window), np.zeros(MAX_PROBES))
            req: dict[str, int] = {}
            for w in acc.window:
                for api, n in w.requests.items():
                    req[api] = req.get(api, 0) + n
            wall = min(CLASSIFY_WINDOW_NS, max(acc.last_ns - acc.first_ns, 1))
        else:
            counts, sys_ns, off_ns, eagain = acc.counts, acc.sys_ns, acc.off_ns, acc.eagain
            timeouts, idle_ns = acc.timeouts, acc.idle_ns
            req = dict(acc.requests)
            wall = max(acc.last_ns - acc.first_ns, 1)
        ops = np.flatnonzero(counts)
        names = {int(o): SYSCALL_BY_OP[int(o)].name for o in ops if int(o) in SYSCALL_BY_OP}
        helper = acc.counts - acc.counts_main
        fam = FAMILY_OF_OP
        extra: dict[str, Any] = {
            "threads": len(acc.tids),
            "main_data_calls": int(acc.counts_main[fam == FAM_DATA].sum()),
            "helper_threads": len(acc.helper_tids),
            "main_mux_calls": int(acc.counts_main[fam == FAM_MUX].sum()),
            "helper_calls": {
                SYSCALL_BY_OP[int(o)].name: int(helper[o])
                for o in np.flatnonzero(helper * (fam == FAM_DATA))
                if int(o) in SYSCALL_BY_OP
            },
            "mux_timeouts": {names[o]: int(timeouts[o]) for o in names if timeouts[o]},
            "mux_idle_ns": {names[o]: int(idle_ns[o]) for o in names if idle_ns[o]},
        }
        # Only the fields this version of classify knows (it grows as the report does).
        known = {f.name for f in dataclasses.fields(classify_mod.Activity)}
        return classify_mod.Activity(
            wall_ns=int(wall),
            syscalls={names[o]: int(counts[o]) for o in names},
            syscall_ns={names[o]: int(sys_ns[o]) for o in names},
            off_cpu_ns={names[o]: int(off_ns[o]) for o in names},
            eagain={names[o]: int(eagain[o]) for o in names if eagain[o]},
            requests=req,
            **{k: v for k, v in extra.items() if k in known},
        )

    def _row_snapshot(self, acc: _RowAcc) -> RowSnapshot:
        label = classify_mod.classify(self._activity(acc))
        is_async = label.model == "async-nonblocking" and bool(acc.requests)
        nreq = sum(acc.requests.values()) if is_async else acc.sync_requests
        hist = acc.async_hist if is_async else acc.sync_hist
        lat_sum = acc.async_lat_ns if is_async else acc.sync_lat_ns
        span = max(acc.last_ns - acc.first_ns, 1)

        # Where the row's threads spent their traced time.
        on_cpu_sys = float((acc.sys_ns - acc.off_ns).sum())
        asleep = acc.off_ns - acc.runq_ns
        fam = FAMILY_OF_OP
        blocked = float(asleep[(fam == FAM_DATA) | (fam == FAM_OTHER)].sum())
        # A wait that timed out is idle sleep, not waiting for I/O.
        idle = float(acc.idle_ns.sum())
        mux = max(float(asleep[fam == FAM_MUX].sum()) - idle, 0.0)
        sleep_idle = idle
        reap = float(asleep[fam == FAM_ASYNC].sum())
        runq = float(acc.runq_ns.sum()) + acc.runq_other_ns
        sleep = acc.sleep_other_ns + sleep_idle
        alive = 0
        for tid in acc.tids:
            th = self.threads.get(tid)
            if th is not None:
                alive += max(th.last_ns - th.first_ns, 0)
        accounted = on_cpu_sys + blocked + mux + reap + runq + sleep
        user = max(float(alive) - accounted, 0.0)
        cpu = user + on_cpu_sys
        whole = cpu + blocked + mux + reap + runq + sleep
        shares = (
            {
                "cpu": cpu / whole,
                "blocked": blocked / whole,
                "mux": mux / whole,
                "reap": reap / whole,
                "runq": runq / whole,
                "sleep": sleep / whole,
            }
            if whole > 0
            else {}
        )

        total_req = nreq
        if self.live and not self.finished:
            acc.rate.append((self.now_ns, total_req))
            while len(acc.rate) > 2 and acc.rate[1][0] <= self.now_ns - RATE_WINDOW_NS:
                acc.rate.popleft()
            t0, n0 = acc.rate[0]
            iops = (total_req - n0) * 1e9 / (self.now_ns - t0) if self.now_ns > t0 else 0.0
        else:
            iops = nreq * 1e9 / span if nreq else 0.0
            if nreq < MIN_RATED_REQUESTS or span < MIN_RATED_SPAN_NS:
                iops = float("nan")
        syscalls = int(acc.counts.sum())
        return RowSnapshot(
            key=acc.key,
            model=label.model,
            api=label.api if label.api != "-" else (acc.declared_api or "-"),
            evidence=label.evidence,
            declared_model=acc.declared_model,
            requests=nreq,
            iops=iops,
            p50_ns=hist_quantile(hist, 0.5),
            p99_ns=hist_quantile(hist, 0.99),
            syscalls_per_req=syscalls / nreq if nreq else 0.0,
            cpu_per_req_ns=cpu / nreq if nreq else 0.0,
            eagain_per_req=float(acc.eagain.sum()) / nreq if nreq else 0.0,
            depth=lat_sum / span,
            shares=shares,
            hist=tuple(int(x) for x in hist),
            not_observed=acc.not_observed,
            threads=len(acc.tids),
            pids=tuple(sorted(acc.pids)),
        )

    def snapshot(self) -> Snapshot:
        """An immutable view of the aggregates (called on the drain thread)."""
        with self._lock:
            if self.live and not self.finished:
                self._rate.append((self.now_ns, self.events))
                while len(self._rate) > 2 and self._rate[1][0] <= self.now_ns - RATE_WINDOW_NS:
                    self._rate.popleft()
            t0, n0 = self._rate[0] if self._rate else (self.now_ns, self.events)
            if self.finished:
                # The whole run's average: a final figure, not a rate at one moment.
                t0, n0 = self.origin_ns, 0
            rate = (self.events - n0) * 1e9 / (self.now_ns - t0) if self.now_ns > t0 else 0.0
            rows = tuple(self._row_snapshot(a) for a in self.rows.values())
            for th in self.threads.values():
                # A workload registered after its first events: move its threads.
                th.row = self.pid_row.get(th.pid, th.row)
            lanes = tuple(
                LaneInfo(t.tid, t.pid, t.comm, t.row, t.first_ns, t.last_ns, t.has_requests)
                for t in self.threads.values()
            )
            return Snapshot(
                rows=tuple(r for r in rows if r.requests or r.threads or r.declared_model),
                lanes=lanes,
                now_ns=self.now_ns,
                origin_ns=self.origin_ns,
                events=self.events,
                events_per_s=rate if self.live else 0.0,
                lost=_sum_counts(self.stats.get("lost")),
                unmatched=_sum_counts(self.stats.get("unmatched")),
                evicted=_sum_counts(self.stats.get("evicted")),
                store_evicted=self.store.evicted,
                finished=self.finished,
                lost_gaps=tuple(self.store.lost),
                damage=self.damage,
            )
