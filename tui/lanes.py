"""Turn stored events into timeline cells: one state per (thread, time cell),
and in-flight depth per (thread, time cell) for async requests. Pure numpy,
no widgets, so it is tested and benchmarked on its own.

Each event is spread over the cells it overlaps in proportion to the time it
spends in each state (on CPU, asleep, waiting to run); a cell shows the
state that filled most of it. Time between a thread's first and last event
that no traced call or off-CPU interval explains is "running in user space".
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from iotrace.tui.model import (
    FAMILY_OF_OP,
    REQUEST_KINDS,
    LaneInfo,
    LostGap,
    Store,
)

from iotrace.events import EAGAIN, SYSCALL_BY_NAME, Flag, Kind

# Thread states, in the order argmax breaks ties (earlier wins).
NONE: Final = 0
USER: Final = 1
SYS: Final = 2
SPIN: Final = 3
BLOCK: Final = 4
MUX: Final = 5
REAP: Final = 6
RUNQ: Final = 7
SLEEP: Final = 8
LOST: Final = 9
# Request bar phases (drawn in request sub-lanes).
REQ_KERNEL: Final = 10
REQ_WORKER: Final = 11
REQ_REAP: Final = 12

GLYPH: Final = {
    NONE: " ",
    USER: "━",
    SYS: "█",
    SPIN: "▓",
    BLOCK: "░",
    MUX: "┄",
    REAP: "~",
    RUNQ: "▒",
    SLEEP: "·",
    LOST: "×",
    REQ_KERNEL: "═",
    REQ_WORKER: "≡",
    REQ_REAP: "─",
}
MEANING: Final = {
    USER: "running in user space",
    SYS: "in a syscall, on CPU",
    SPIN: "EAGAIN retry (spinning)",
    BLOCK: "blocked in a read (asleep)",
    MUX: "waiting in select/poll/epoll",
    REAP: "waiting for async completions",
    RUNQ: "runnable, waiting for a CPU",
    SLEEP: "asleep outside traced calls",
    LOST: "events lost: unknown",
    REQ_KERNEL: "request in flight",
    REQ_WORKER: "in flight on an io-wq worker",
    REQ_REAP: "done, not yet reaped",
}
LEGEND_ORDER: Final = (
    USER,
    SYS,
    SPIN,
    BLOCK,
    MUX,
    REAP,
    RUNQ,
    SLEEP,
    LOST,
    REQ_KERNEL,
    REQ_WORKER,
    REQ_REAP,
)
_N_CAT: Final = 9  # ALIVE + the 8 thread states USER..SLEEP (USER slot holds ALIVE)


@dataclass(frozen=True)
class EventFilter:
    """Which events the timeline draws: all, or only some fds / syscalls."""

    fds: frozenset[int] = frozenset()
    ops: frozenset[int] = frozenset()

    @property
    def active(self) -> bool:
        return bool(self.fds or self.ops)

    def mask(self, ev: dict[str, np.ndarray]) -> np.ndarray:
        m = np.ones(len(ev["ts_ns"]), dtype=bool)
        if self.fds:
            m &= np.isin(ev["fd"], list(self.fds))
        if self.ops:
            m &= (ev["kind"] != Kind.SYSCALL) | np.isin(ev["op"], list(self.ops))
            m &= ev["kind"] != Kind.OFF_CPU
        return m


@dataclass(frozen=True)
class LaneFilter:
    """Which threads get lanes: a comm/workload substring, pid or tid."""

    text: str = ""
    ids: frozenset[int] = frozenset()

    def keep(self, lane: LaneInfo) -> bool:
        if not self.text and not self.ids:
            return True
        if self.ids and (lane.pid in self.ids or lane.tid in self.ids):
            return True
        t = self.text.lower()
        return bool(t) and (t in lane.comm.lower() or t in lane.row.lower())


def parse_filter(text: str) -> tuple[LaneFilter, EventFilter]:
    """`/` filter text: words like `fd:5`, `pread64`, `1234` (pid or tid), `fio`."""
    fds: set[int] = set()
    ops: set[int] = set()
    ids: set[int] = set()
    words: list[str] = []
    for w in text.replace(",", " ").split():
        lw = w.lower()
        if lw.startswith("fd") and lw[2:].lstrip(":=").isdigit():
            fds.add(int(lw[2:].lstrip(":=")))
        elif lw in SYSCALL_BY_NAME:
            ops.add(SYSCALL_BY_NAME[lw].op)
        elif lw.isdigit():
            ids.add(int(lw))
        else:
            words.append(w)
    return (
        LaneFilter(" ".join(words), frozenset(ids)),
        EventFilter(frozenset(fds), frozenset(ops)),
    )


def cover(
    idx: np.ndarray,
    s: np.ndarray,
    e: np.ndarray,
    w: np.ndarray,
    n_idx: int,
    t0: int,
    cell_ns: float,
    ncells: int,
) -> np.ndarray:
    """Sum of w x (fraction of each cell covered by [s, e)), per (idx, cell).

    O(n) with no sort: a partial first and last cell, and a difference array
    for the full cells in between.
    """
    K = ncells
    out = np.zeros(n_idx * K, dtype=np.float64)
    if len(s) == 0:
        return out.reshape(n_idx, K)
    x0 = np.clip((s - t0) / cell_ns, 0, K)
    x1 = np.clip((e - t0) / cell_ns, 0, K)
    keep = x1 > x0
    if not keep.all():
        idx, x0, x1, w = idx[keep], x0[keep], x1[keep], w[keep]
    i0 = np.minimum(x0.astype(np.intp), K - 1)
    i1 = x1.astype(np.intp)
    base = idx.astype(np.intp) * K
    same = i1 == i0
    diff = ~same
    out += np.bincount(base[same] + i0[same], weights=((x1 - x0) * w)[same], minlength=n_idx * K)
    if diff.any():
        i0d, i1d, wd, x0d, x1d = i0[diff], i1[diff], w[diff], x0[diff], x1[diff]
        bd = base[diff]
        out += np.bincount(bd + i0d, weights=(i0d + 1 - x0d) * wd, minlength=n_idx * K)
        tail = i1d < K
        out += np.bincount(
            bd[tail] + i1d[tail], weights=((x1d - i1d) * wd)[tail], minlength=n_idx * K
        )
        mid = i1d > i0d + 1
        if mid.any():
            row = idx[diff][mid].astype(np.intp) * (K + 1)
            d = np.bincount(row + i0d[mid] + 1, weights=wd[mid], minlength=n_idx * (K + 1))
            d -= np.bincount(row + i1d[mid], weights=wd[mid], minlength=n_idx * (K + 1))
            out += np.cumsum(d.reshape(n_idx, K + 1), axis=1)[:, :K].reshape(-1)
    return out.reshape(n_idx, K)


@dataclass
class RequestBars:
    """In-flight depth drawn as stacked sub-lanes; each sub-lane is `scale` requests."""

    lines: list[np.ndarray]
    scale: int
    max_depth: float


@dataclass
class FrameData:
    t0: int
    t1: int
    ncells: int
    states: dict[int, np.ndarray] = field(default_factory=dict)
    """tid -> state per cell (uint8)."""
    requests: dict[int, RequestBars] = field(default_factory=dict)
    lost: np.ndarray | None = None


def lost_cells(
    gaps: tuple[LostGap, ...] | list[LostGap],
    t0: int,
    t1: int,
    ncells: int,
) -> np.ndarray:
    if not gaps:
        return np.zeros(ncells, dtype=bool)
    s = np.array([g.ts_ns for g in gaps], dtype=np.float64)
    e = np.array([max(g.end_ns, g.ts_ns + 1) for g in gaps], dtype=np.float64)
    cell_ns = (t1 - t0) / ncells
    # A gap shorter than a cell still marks that cell: a loss is never hidden.
    e = np.maximum(e, s + cell_ns * 1e-6)
    cov = cover(np.zeros(len(s), np.intp), s, e, np.ones(len(s)), 1, t0, cell_ns, ncells)
    return np.asarray(cov[0] > 0)


SPIN_SHOWS: Final = 0.02
"""Share of a cell spent on CPU in EAGAIN calls that makes it an EAGAIN cell."""
_C: Final = 13
_REQUEST_CODES: Final = np.array([int(k) for k in REQUEST_KINDS], dtype=np.uint16)
_SLEEP_SLOT_OF_FAMILY: Final = np.array([BLOCK, BLOCK, MUX, REAP])
"""Asleep inside a call: indexed by FAM_OTHER, FAM_DATA, FAM_MUX, FAM_ASYNC."""
"""Coverage slots per lane: indexed by state code (NONE..LOST, then the request phases)."""


def _paint(
    cols: dict[str, np.ndarray], tids: np.ndarray, cell0: int, ncells: int, cell_ns: int
) -> np.ndarray:
    """Coverage (lanes x slots x cells) of `cols` on the grid starting at cell `cell0`.
    The USER slot is left empty: it is alive time minus the rest, done per frame."""
    L = len(tids)
    t0 = cell0 * cell_ns
    if len(cols["ts_ns"]) == 0:
        return np.zeros((L, _C, ncells))
    pos = np.minimum(np.searchsorted(tids, cols["tid"].astype(np.int64)), L - 1)
    known = tids[pos] == cols["tid"]
    kind = cols["kind"]
    ts = cols["ts_ns"].astype(np.float64)
    end = cols["end_ns"].astype(np.float64)
    kd = cols["kdone_ns"].astype(np.float64)
    sc = known & (kind == Kind.SYSCALL) & (end > ts)
    oc = known & (kind == Kind.OFF_CPU) & (cols["op"] == 0) & (end > ts)
    rq = known & np.isin(kind, _REQUEST_CODES)
    dur = np.where(end > ts, end - ts, 1.0)
    off = np.minimum(cols["off_cpu_ns"].astype(np.float64), dur)
    runq = np.minimum(cols["runq_ns"].astype(np.float64), np.where(sc, off, dur))
    worker = (cols["flags"] & int(Flag.WORKER)) != 0
    kern_end = np.where(kd > 0, kd, end)
    zero = np.zeros(len(ts))
    # Up to three pieces per event, each a (slot, weight, start, end):
    # A: on CPU in a call | asleep outside calls | a request in the kernel
    cat_a = np.where(
        sc,
        np.where(cols["ret"] == -EAGAIN, SPIN, SYS),
        np.where(oc, SLEEP, np.where(worker, REQ_WORKER, REQ_KERNEL)),
    )
    w_a = np.where(
        sc,
        (dur - off) / dur,
        np.where(oc, (dur - runq) / dur, np.where(rq & (kern_end > ts), 1.0, zero)),
    )
    e_a = np.where(rq, kern_end, end)
    # B: asleep in a call (by family) | runnable outside calls | done, waiting to be reaped
    fam = FAMILY_OF_OP[np.minimum(cols["op"], len(FAMILY_OF_OP) - 1)]
    cat_b = np.where(sc, _SLEEP_SLOT_OF_FAMILY[fam], np.where(oc, RUNQ, REQ_REAP))
    w_b = np.where(
        sc,
        (off - runq) / dur,
        np.where(oc, runq / dur, np.where(rq & (kd > 0) & (end > kd), 1.0, zero)),
    )
    s_b = np.where(rq, kd, ts)
    # C: runnable inside a call
    w_c = np.where(sc, runq / dur, zero)
    slot = np.concatenate([pos * _C + cat_a, pos * _C + cat_b, pos * _C + RUNQ])
    w = np.concatenate([w_a, w_b, w_c])
    keep = np.flatnonzero(w > 0)
    if len(keep) == 0:
        return np.zeros((L, _C, ncells))
    starts = np.concatenate([ts, s_b, ts])[keep]
    ends = np.concatenate([e_a, end, end])[keep]
    return cover(slot[keep], starts, ends, w[keep], L * _C, t0, float(cell_ns), ncells).reshape(
        L, _C, ncells
    )


@dataclass
class _Cached:
    key: tuple[object, ...]
    cell0: int
    cov: np.ndarray


# Sealed chunks never change, so their coverage on a grid is computed once per
# (cell size, lane set, filter): a frame then costs the open chunk plus sums.
_CACHE: weakref.WeakKeyDictionary[object, _Cached] = weakref.WeakKeyDictionary()
_CACHE_MAX_CELLS: Final = 8192


BASE_CELL_NS: Final = 5_000_000
"""Sealed chunks are painted once on a 5 ms grid; any view whose cells are whole
multiples of it is summed from those cells instead of from events."""
_BASE_MAX_CELLS: Final = 4096


@dataclass
class _Base:
    tids: np.ndarray
    """Sorted tids with events in the chunk."""
    cell0: int
    cov: np.ndarray
    """(tids, slots, base cells), float32."""


_BASE: weakref.WeakKeyDictionary[object, _Base | None] = weakref.WeakKeyDictionary()


def cache_nbytes() -> int:
    """Memory held by painted cells (the base grid and the per-view cache)."""
    base = sum(b.cov.nbytes for b in list(_BASE.values()) if b is not None)
    return base + sum(c.cov.nbytes for c in list(_CACHE.values()))


def _base_of(chunk: object, cols: dict[str, np.ndarray]) -> _Base | None:
    if chunk in _BASE:
        return _BASE[chunk]
    ca = int(chunk.min_ts) // BASE_CELL_NS  # type: ignore[attr-defined]
    cb = int(chunk.max_t) // BASE_CELL_NS + 1  # type: ignore[attr-defined]
    base = None
    if cb - ca <= _BASE_MAX_CELLS:
        ctids = np.unique(cols["tid"]).astype(np.int64)
        cov = _paint(cols, ctids, ca, cb - ca, BASE_CELL_NS).astype(np.float32)
        base = _Base(ctids, ca, cov)
    _BASE[chunk] = base
    return base


def _from_base(base: _Base, tids: np.ndarray, per: int) -> tuple[int, np.ndarray]:
    """A chunk's cells at `per` base cells to a view cell, rows in `tids` order:
    (first view cell, lanes x slots x cells)."""
    off = base.cell0 % per
    nb = base.cov.shape[2]
    padded = -(-(off + nb) // per) * per
    arr = np.zeros((len(base.tids), _C, padded), dtype=np.float32)
    arr[:, :, off : off + nb] = base.cov
    # Coverage is a fraction of a cell: a view cell is the mean of its base cells.
    view = arr.reshape(len(base.tids), _C, padded // per, per).mean(axis=3)
    out = np.zeros((len(tids), _C, view.shape[2]))
    rows = np.minimum(np.searchsorted(tids, base.tids), len(tids) - 1)
    ok = tids[rows] == base.tids
    out[rows[ok]] = view[ok]
    return (base.cell0 - off) // per, out


def grid(t0: int, t1: int, ncells: int) -> tuple[int, int]:
    """Cell size (ns) and first cell index for a view: cells sit on multiples of
    the cell size, so a scrolling view reuses what earlier frames computed; cells
    of 5 ms or more are whole multiples of the base grid."""
    cell = max(1, (t1 - t0) // max(ncells, 1))
    if cell >= BASE_CELL_NS:
        cell = round(cell / BASE_CELL_NS) * BASE_CELL_NS
    return cell, t0 // cell


def compute(
    store: Store,
    lanes: list[LaneInfo],
    t0: int,
    t1: int,
    ncells: int,
    *,
    lost_gaps: tuple[LostGap, ...] | list[LostGap] = (),
    event_filter: EventFilter | None = None,
    max_sub: int = 4,
) -> FrameData:
    """States and request bars for `lanes` over about [t0, t1) in `ncells` cells
    (the range is aligned to the cell grid; the frame says the exact one)."""
    t1 = max(t1, t0 + ncells)
    cell, a0 = grid(t0, t1, ncells)
    t0, t1 = a0 * cell, (a0 + ncells) * cell
    frame = FrameData(t0, t1, ncells)
    if ncells <= 0 or not lanes:
        return frame
    ef = event_filter if event_filter is not None and event_filter.active else None
    tids = np.array(sorted(la.tid for la in lanes), dtype=np.int64)
    L = len(tids)
    key_base = (cell, tuple(tids.tolist()), ef)
    acc = np.zeros((L, _C, ncells))
    use_base = ef is None and cell % BASE_CELL_NS == 0
    for chunk, n, cols in store.chunks_overlapping(t0, t1):
        ca, cb = chunk.min_ts // cell, chunk.max_t // cell + 1
        if cb - ca <= _CACHE_MAX_CELLS:
            key = (*key_base, n)
            hit = _CACHE.get(chunk)
            if hit is None or hit.key != key:
                sealed = n == len(chunk.cols["ts_ns"])  # a full chunk never changes
                base = _base_of(chunk, cols) if use_base and sealed else None
                if base is not None:
                    hit = _Cached(key, *_from_base(base, tids, cell // BASE_CELL_NS))
                else:
                    c = cols
                    if ef is not None:
                        m = ef.mask(c)
                        c = {k: v[m] for k, v in c.items()}
                    hit = _Cached(key, ca, _paint(c, tids, ca, cb - ca, cell))
                _CACHE[chunk] = hit
            c0, nc = hit.cell0, hit.cov.shape[2]
            lo, hi = max(c0, a0), min(c0 + nc, a0 + ncells)
            if hi > lo:
                acc[:, :, lo - a0 : hi - a0] += hit.cov[:, :, lo - c0 : hi - c0]
        else:
            # Spans far more than a view (deep zoom): paint only what is in view.
            ts = cols["ts_ns"]
            top = np.maximum(np.maximum(cols["end_ns"], cols["kdone_ns"]), ts)
            m = (ts <= t1) & (top >= t0)
            if ef is not None:
                m &= ef.mask(cols)
            c = {k: v[m] for k, v in cols.items()}
            acc += _paint(c, tids, a0, ncells, cell)

    if ef is None:
        # Alive span per lane; user = alive - everything else.
        by_tid = {la.tid: la for la in lanes}
        first = np.array([by_tid[int(t)].first_ns for t in tids], dtype=np.float64)
        last = np.array([by_tid[int(t)].last_ns for t in tids], dtype=np.float64)
        alive = cover(np.arange(L), first, last, np.ones(L), L, t0, float(cell), ncells)
        acc[:, USER, :] = np.maximum(alive - acc[:, SYS : SLEEP + 1, :].sum(axis=1), 0)
    thread = acc[:, USER : SLEEP + 1, :]
    state = (np.argmax(thread, axis=1) + USER).astype(np.uint8)
    # A retry loop spends most of its time in its own code or preempted, yet
    # it is the EAGAIN calls that say what it is: they win a cell they touch.
    spin = (acc[:, SPIN, :] >= SPIN_SHOWS) & np.isin(state, (USER, SYS, RUNQ))
    state[spin] = SPIN
    state[thread.sum(axis=1) < 0.02] = NONE
    lost = lost_cells(lost_gaps, t0, t1, ncells)
    frame.lost = lost
    if lost.any():
        state[:, lost] = LOST
    for i, t in enumerate(tids.tolist()):
        frame.states[t] = state[i]

    for la in lanes:
        if not la.has_requests:
            continue
        i = int(np.searchsorted(tids, la.tid))
        kern, wk, reap = acc[i, REQ_KERNEL], acc[i, REQ_WORKER], acc[i, REQ_REAP]
        total = kern + wk + reap
        max_depth = float(total.max())
        if max_depth <= 0:
            frame.requests[la.tid] = RequestBars([], 1, 0.0)
            continue
        nsub = min(max_sub, max(1, int(np.ceil(max_depth))))
        scale = max(1, int(np.ceil(max_depth / max_sub)))
        lines = []
        for j in range(nsub):
            line = np.full(ncells, NONE, dtype=np.uint8)
            in_kernel = (kern + wk) / scale > j
            line[total / scale > j] = REQ_REAP
            line[in_kernel] = np.where(wk > kern, REQ_WORKER, REQ_KERNEL)[in_kernel]
            if lost.any():
                line[lost] = LOST
            lines.append(line)
        frame.requests[la.tid] = RequestBars(lines, scale, max_depth)
    return frame


def calls_before(
    store: Store,
    tid: int,
    at_ns: int,
    n: int,
    *,
    lookback_ns: int,
    event_filter: EventFilter | None = None,
) -> list[dict[str, int]]:
    """Up to `n` calls or requests of thread `tid` that started at or before `at_ns`
    (and reach back at most `lookback_ns`), newest first, as plain dicts."""
    found: list[dict[str, int]] = []
    lo = at_ns - lookback_ns
    for _chunk, _n, cols in reversed(store.chunks_overlapping(lo, at_ns)):
        if len(found) >= n and _chunk.max_t < min(f["ts_ns"] for f in found):
            break
        ts = cols["ts_ns"]
        m = (cols["tid"] == tid) & (ts <= at_ns) & (ts >= lo) & (cols["kind"] != Kind.OFF_CPU)
        if event_filter is not None and event_filter.active:
            m &= event_filter.mask(cols)
        idx = np.flatnonzero(m)
        if len(idx):
            top = idx[np.argsort(ts[idx], kind="stable")[::-1][:n]]
            found += [{k: int(v[i]) for k, v in cols.items()} for i in top.tolist()]
    found.sort(key=lambda f: f["ts_ns"], reverse=True)
    return found[:n]
