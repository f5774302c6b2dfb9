"""Turn stored events into timeline cells: one state per (thread, time cell),
and in-flight depth per (thread, time cell) for async requests. Pure numpy,
no widgets, so it is tested and benchmarked on its own.

Each event is spread over the cells it overlaps in proportion to the time it
spends in each state (on CPU, asleep, waiting to run); a cell shows the
state that filled most of it. Time between a thread's first and last event
that no traced call or off-CPU interval explains is "running in user space".
"""

from __future__ import annotations

import dataclasses
import time
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
PENDING: Final = 13
"""Not drawn yet: rows nobody has painted (a frame ran out of its budget)."""

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
    PENDING: "?",
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
    PENDING: "not drawn yet",
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
    pending: np.ndarray | None = None
    """Cells not drawn yet (shown PENDING); None or all False once complete."""

    @property
    def drawing(self) -> bool:
        return self.pending is not None and bool(self.pending.any())


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
_IS_REQUEST: Final = np.zeros(1 << 16, dtype=bool)
_IS_REQUEST[[int(k) for k in REQUEST_KINDS]] = True
_SLEEP_SLOT_OF_FAMILY: Final = np.array([BLOCK, BLOCK, MUX, REAP])
"""Asleep inside a call: indexed by FAM_OTHER, FAM_DATA, FAM_MUX, FAM_ASYNC."""
"""Coverage slots per lane: indexed by state code (NONE..LOST, then the request phases)."""


def _paint(
    cols: dict[str, np.ndarray], tids: np.ndarray, cell0: int, ncells: int, cell_ns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of `cols` on the grid starting at cell `cell0`, as (line ids, lines x
    cells) for the lines (lane x slots + slot) any event touches. The USER slot is
    left empty: it is alive time minus the rest, done per frame."""
    L = len(tids)
    t0 = cell0 * cell_ns
    if len(cols["ts_ns"]) == 0:
        return np.zeros(0, np.intp), np.zeros((0, ncells))
    pos = np.minimum(np.searchsorted(tids, cols["tid"].astype(np.int64)), L - 1)
    known = tids[pos] == cols["tid"]
    kind = cols["kind"]
    ts = cols["ts_ns"].astype(np.float64)
    end = cols["end_ns"].astype(np.float64)
    kd = cols["kdone_ns"].astype(np.float64)
    sc = known & (kind == Kind.SYSCALL) & (end > ts)
    oc = known & (kind == Kind.OFF_CPU) & (cols["op"] == 0) & (end > ts)
    rq = known & _IS_REQUEST[kind]
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
        return np.zeros(0, np.intp), np.zeros((0, ncells))
    starts = np.concatenate([ts, s_b, ts])[keep]
    ends = np.concatenate([e_a, end, end])[keep]
    # Only the lines events touch: a thread uses a few of its 13 slots, and dense
    # lanes x slots x cells arrays would cost more than the events at a deep zoom.
    # (A lookup table, not np.unique: no sort, and slot ids are small.)
    slot = slot[keep]
    used = np.bincount(slot, minlength=L * _C) > 0
    lines = np.flatnonzero(used)
    line = (np.cumsum(used) - 1)[slot]
    return lines, cover(line, starts, ends, w[keep], len(lines), t0, float(cell_ns), ncells)


# --- painted cells ------------------------------------------------------------
# Painting events into cells is what a frame cannot afford at a million events
# (~100 ns an event). Coverage adds up event by event, so a chunk's rows are
# painted once, a slice at a time, and the cells kept: on the 5 ms base grid by
# the drain thread (`BasePainter`), at the view's cell size by the UI
# (`PaintCache`, within a time budget per frame; what is left shows "drawing").

BASE_CELL_NS: Final = 5_000_000
"""The drain paints every chunk once on a 5 ms grid; any view whose cells are whole
multiples of it sums those cells instead of painting events."""
BASE_MAX_BYTES_PER_EVENT: Final = 16
"""A chunk whose base cells would take more than this per row it can hold (few
events over a long time, many threads) keeps none: views paint it from events."""
SLICE_ROWS: Final = 4096
"""Rows a frame paints at once: the unit of work it checks its budget against."""
BASE_SLICE_ROWS: Final = 16384
"""Rows the drain paints at once (fewer numpy calls per row; it has no frame to keep)."""
FRAME_PAINT_BUDGET_S: Final = 0.015
"""Wall time one frame may spend painting events; the rest is drawn "drawing" and
painted by the next frames."""
VIEW_MAX_VIEWS: Final = 2
"""A chunk spanning more than this many views' worth of cells is painted only where
the view is (a deep zoom): painting all of it would cost more than the view shows."""
_F32: Final = np.float32


@dataclass(frozen=True)
class Cells:
    """Coverage painted from the first `done` rows of one chunk: one line of cells
    per (lane, slot) that has any, on a grid of `cell_ns` cells from cell `cell0`."""

    cell_ns: int
    cell0: int
    tids: np.ndarray
    """Sorted tids; a line's lane is an index into them."""
    lines: np.ndarray
    """Sorted line ids (lane x slots + slot), one per row of `cov`."""
    cov: np.ndarray
    """(lines, cells), float32."""
    done: int

    @property
    def ncells(self) -> int:
        return int(self.cov.shape[1])

    @property
    def nbytes(self) -> int:
        return int(self.cov.nbytes + self.lines.nbytes + self.tids.nbytes)


def _no_cells(cell_ns: int, cell0: int, tids: np.ndarray, done: int) -> Cells:
    return Cells(cell_ns, cell0, tids, np.zeros(0, np.intp), np.zeros((0, 0), _F32), done)


NO_BASE: Final = _no_cells(BASE_CELL_NS, 0, np.zeros(0, np.int64), 0)
"""A chunk kept off the base grid (over BASE_MAX_BYTES_PER_EVENT)."""


def _rows(cols: dict[str, np.ndarray], r0: int, r1: int) -> dict[str, np.ndarray]:
    return {k: v[r0:r1] for k, v in cols.items()}


class _TooBig(Exception):
    """Painting these rows would take more cells than allowed."""


def _paint_rows(
    cols: dict[str, np.ndarray],
    tids: np.ndarray | None,
    cell_ns: int,
    window: tuple[int, int] | None = None,
    ef: EventFilter | None = None,
    max_cells: int | None = None,
) -> tuple[np.ndarray, int, np.ndarray, np.ndarray] | None:
    """Paint events on the grid of `cell_ns` (only cells in `window` if given), for
    lanes `tids` (None: the events' own): (tids, cell0, lines, cov), empty lines
    left out; None when nothing is drawn. Raises _TooBig, before painting, when
    lanes x cells would pass `max_cells`."""
    if ef is not None:
        m = ef.mask(cols)
        cols = {k: v[m] for k, v in cols.items()}
    ts = cols["ts_ns"]
    if len(ts) == 0:
        return None
    top = np.maximum(np.maximum(cols["end_ns"], cols["kdone_ns"]), ts)
    lo, hi = int(ts.min()) // cell_ns, int(top.max()) // cell_ns + 1
    if window is not None:
        m = (top >= window[0] * cell_ns) & (ts < window[1] * cell_ns)
        if not m.any():
            return None
        cols = {k: v[m] for k, v in cols.items()}
        lo, hi = max(lo, window[0]), min(hi, window[1])
    if tids is None:
        tids = np.unique(cols["tid"]).astype(np.int64)
    if max_cells is not None and (hi - lo) * len(tids) > max_cells:
        raise _TooBig
    lines, cov = _paint(cols, tids, lo, hi - lo, cell_ns)
    if not len(lines):
        return None
    return tids, lo, lines, cov.astype(_F32)


def _relabel(lines: np.ndarray, tids: np.ndarray, into: np.ndarray) -> np.ndarray:
    return np.searchsorted(into, tids[lines // _C]) * _C + lines % _C


def _merge(
    old: Cells | None,
    part: tuple[np.ndarray, int, np.ndarray, np.ndarray] | None,
    cell_ns: int,
    done: int,
    *,
    in_place: bool = False,
) -> Cells:
    """`old` plus newly painted rows. A new Cells unless `in_place` (only for cells
    no other thread reads) and the part fits in the old lines and cells."""
    if part is None:
        if old is None:
            return _no_cells(cell_ns, 0, np.zeros(0, np.int64), done)
        return dataclasses.replace(old, done=done)
    tids, cell0, lines, cov = part
    if old is None or not len(old.lines):
        return Cells(cell_ns, cell0, tids, lines, cov, done)
    n = cov.shape[1]
    same = old.tids is tids or np.array_equal(old.tids, tids)
    utids = old.tids if same else np.union1d(old.tids, tids)
    la = old.lines if same else _relabel(old.lines, old.tids, utids)
    lb = lines if same else _relabel(lines, tids, utids)
    lo, hi = min(old.cell0, cell0), max(old.cell0 + old.ncells, cell0 + n)
    if in_place and same and (lo, hi) == (old.cell0, old.cell0 + old.ncells):
        rows = np.minimum(np.searchsorted(la, lb), len(la) - 1)
        if (la[rows] == lb).all():
            old.cov[rows, cell0 - lo : cell0 - lo + n] += cov
            return dataclasses.replace(old, done=done)
    ulines = np.union1d(la, lb)
    out = np.zeros((len(ulines), hi - lo), _F32)
    out[np.searchsorted(ulines, la), old.cell0 - lo : old.cell0 - lo + old.ncells] = old.cov
    out[np.searchsorted(ulines, lb), cell0 - lo : cell0 - lo + n] += cov
    return Cells(cell_ns, lo, utids, ulines, out, done)


def _to_view(base: Cells, tids: np.ndarray, cell_ns: int) -> Cells:
    """Base cells summed into view cells of `cell_ns` (a whole multiple of the base
    cell), lines re-labelled to the view's lanes `tids` (others left out)."""
    per = cell_ns // base.cell_ns
    v0 = base.cell0 // per
    if not len(base.lines):
        return _no_cells(cell_ns, v0, tids, base.done)
    btids = base.tids[base.lines // _C]
    pos = np.minimum(np.searchsorted(tids, btids), len(tids) - 1)
    ok = tids[pos] == btids
    v1 = (base.cell0 + base.ncells - 1) // per + 1
    starts = np.maximum(np.arange(v0, v1, dtype=np.int64) * per - base.cell0, 0)
    # Coverage is a fraction of a cell: a view cell is the mean of its base cells.
    view = np.add.reduceat(base.cov if ok.all() else base.cov[ok], starts, axis=1)
    view *= _F32(1.0 / per)
    return Cells(cell_ns, v0, tids, pos[ok] * _C + base.lines[ok] % _C, view, base.done)


class BasePainter:
    """Paints the store's chunks on the base grid, newest rows first, a bounded
    amount at a time: the drain thread calls `step` between batches, so the UI
    sums prepared cells instead of painting events. A chunk's cells are replaced
    whole (`chunk.base`), never changed in place: the UI reads them lock-free."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def step(self, budget_s: float, *, rows: int = 0) -> bool:
        """Paint the newest `rows` rows whatever it takes (the drain passes what it
        just stored: painting keeps pace with storing), then older ones for about
        `budget_s` (one slice at least, at most one slice over); True once every
        stored row is painted."""
        deadline = time.perf_counter() + budget_s
        first = True
        owed = rows
        for chunk in reversed(self.store.chunks()):
            base: Cells | None = chunk.base
            if base is NO_BASE:
                continue
            n = chunk.n
            done = base.done if base is not None else 0
            cap = BASE_MAX_BYTES_PER_EVENT * len(chunk.cols["ts_ns"])
            while done < n:
                if not first and owed <= 0 and time.perf_counter() >= deadline:
                    return False
                first = False
                r1 = min(n, done + BASE_SLICE_ROWS)
                owed -= r1 - done
                try:
                    # Each lane takes a line at least: refuse before painting.
                    part = _paint_rows(
                        _rows(chunk.cols, done, r1), None, BASE_CELL_NS, max_cells=cap // 4
                    )
                    base = _merge(base, part, BASE_CELL_NS, r1)
                except _TooBig:
                    base = NO_BASE
                if base.nbytes > cap:
                    base = NO_BASE
                chunk.base = base
                if base is NO_BASE:
                    break
                done = r1
        return True


def base_nbytes(store: Store) -> int:
    """Memory held by the base grid's cells."""
    return sum(c.base.nbytes for c in store.chunks() if c.base is not None)


@dataclass
class _Entry:
    key: tuple[object, ...]
    cells: Cells | None


class PaintCache:
    """Cells the UI painted or summed for the last frame, per chunk, at that
    frame's cell size (owned by one timeline; only the UI thread touches it)."""

    def __init__(self) -> None:
        self.entries: dict[object, _Entry] = {}

    def clear(self) -> None:
        self.entries = {}

    @property
    def nbytes(self) -> int:
        return sum(e.cells.nbytes for e in self.entries.values() if e.cells is not None)


def grid(t0: int, t1: int, ncells: int) -> tuple[int, int]:
    """Cell size (ns) and first cell index for a view: cells sit on multiples of
    the cell size, so a scrolling view reuses what earlier frames computed; cells
    of 5 ms or more are whole multiples of the base grid."""
    cell = max(1, (t1 - t0) // max(ncells, 1))
    if cell >= BASE_CELL_NS:
        cell = round(cell / BASE_CELL_NS) * BASE_CELL_NS
    return cell, t0 // cell


def _painted_cells(
    store: Store,
    tids: np.ndarray,
    a0: int,
    ncells: int,
    cell: int,
    ef: EventFilter | None,
    cache: PaintCache,
    deadline: float | None,
    rows_until: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (lanes x slots, cells) of the view, and which cells still wait for
    rows nobody has painted yet (the budget ran out)."""
    L = len(tids)
    t0, t1 = a0 * cell, (a0 + ncells) * cell
    acc = np.zeros((L * _C, ncells))
    pending = np.zeros(ncells, dtype=bool)
    use_base = ef is None and cell % BASE_CELL_NS == 0
    view_key = (cell, tids.tobytes(), ef)
    entries: dict[object, _Entry] = {}
    todo = []
    for chunk in store.chunks():
        n = chunk.n if rows_until is None else max(min(chunk.n, rows_until - chunk.first_row), 0)
        if not n or chunk.min_ts > t1 or chunk.max_t < t0:
            continue
        ca, cb = chunk.min_ts // cell, chunk.max_t // cell + 1
        window = None if cb - ca <= VIEW_MAX_VIEWS * ncells else (a0, a0 + ncells)
        key = (*view_key, window)
        old = cache.entries.get(chunk)
        e = old if old is not None and old.key == key else _Entry(key, None)
        base = chunk.base if use_base and window is None else None
        done = e.cells.done if e.cells is not None else 0
        if (
            base is not None
            and base is not NO_BASE
            and done < base.done <= n
            and (deadline is None or time.perf_counter() < deadline)
        ):
            e.cells = _to_view(base, tids, cell)
        entries[chunk] = e
        if (e.cells.done if e.cells is not None else 0) < n:
            todo.append((chunk, e, n, window))
    # Rows no prepared cells cover (the open chunk's newest, a zoom below the base
    # grid, a filter): painted from events, oldest first, while the budget lasts.
    first = True  # one slice a frame at least, so drawing always moves on
    for chunk, e, n, window in todo:
        cols = chunk.cols
        done = e.cells.done if e.cells is not None else 0
        while done < n and (first or deadline is None or time.perf_counter() < deadline):
            first = False
            r1 = min(n, done + SLICE_ROWS)
            part = _paint_rows(_rows(cols, done, r1), tids, cell, window, ef)
            e.cells = _merge(e.cells, part, cell, r1, in_place=True)
            done = r1
        if done < n:
            if done == 0:  # the chunk knows its range: no pass over its rows
                t_lo, t_hi = chunk.min_ts, chunk.max_t
            else:
                ts = cols["ts_ns"][done:n]
                t_lo = int(ts.min())
                t_hi = int(
                    max(ts.max(), cols["end_ns"][done:n].max(), cols["kdone_ns"][done:n].max())
                )
            pending[max(t_lo // cell - a0, 0) : min(t_hi // cell + 1 - a0, ncells)] = True
    cache.entries = entries
    for e in entries.values():
        c = e.cells
        if c is None or not len(c.lines):
            continue
        lo, hi = max(c.cell0, a0), min(c.cell0 + c.ncells, a0 + ncells)
        if hi > lo:
            acc[c.lines, lo - a0 : hi - a0] += c.cov[:, lo - c.cell0 : hi - c.cell0]
    return acc.reshape(L, _C, ncells), pending


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
    cache: PaintCache | None = None,
    budget_s: float | None = None,
    rows_until: int | None = None,
) -> FrameData:
    """States and request bars for `lanes` over about [t0, t1) in `ncells` cells
    (the range is aligned to the cell grid; the frame says the exact one).

    `cache` keeps what this frame painted for the next one; with `budget_s`, the
    frame paints events for about that long and marks the cells it could not
    finish PENDING (`frame.pending`), for the next frames to complete. With
    `rows_until`, only the store's rows numbered below it are drawn (`Store.appended`)."""
    t1 = max(t1, t0 + ncells)
    cell, a0 = grid(t0, t1, ncells)
    t0, t1 = a0 * cell, (a0 + ncells) * cell
    frame = FrameData(t0, t1, ncells)
    if ncells <= 0 or not lanes:
        return frame
    ef = event_filter if event_filter is not None and event_filter.active else None
    tids = np.array(sorted(la.tid for la in lanes), dtype=np.int64)
    L = len(tids)
    deadline = None if budget_s is None else time.perf_counter() + budget_s
    acc, pending = _painted_cells(
        store,
        tids,
        a0,
        ncells,
        cell,
        ef,
        cache if cache is not None else PaintCache(),
        deadline,
        rows_until,
    )

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
    # Never drawn as idle (or as anything) before its events are painted.
    frame.pending = pending
    if pending.any():
        state[:, pending] = PENDING
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
            line[pending] = PENDING
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


@dataclass(frozen=True)
class ThreadTotals:
    """One thread's own figures over what the store holds (`enter` on its lane)."""

    calls: int = 0
    in_calls_ns: int = 0
    asleep_ns: int = 0
    eagain: int = 0
    requests: int = 0


def thread_totals(store: Store, tid: int) -> ThreadTotals:
    """Traced calls and requests of thread `tid`: the lane's figures, not its workload's."""
    calls = in_calls = asleep = eagain = requests = 0
    for _chunk, _n, cols in store.chunks_overlapping(-(1 << 62), 1 << 62):
        m = cols["tid"] == tid
        if not m.any():
            continue
        kind = cols["kind"][m]
        sc = kind == Kind.SYSCALL
        calls += int(sc.sum())
        in_calls += int((cols["end_ns"][m][sc] - cols["ts_ns"][m][sc]).clip(min=0).sum())
        asleep += int((cols["off_cpu_ns"][m][sc] - cols["runq_ns"][m][sc]).clip(min=0).sum())
        eagain += int((cols["ret"][m][sc] == -EAGAIN).sum())
        requests += int(((kind != Kind.SYSCALL) & (kind != Kind.OFF_CPU)).sum())
    return ThreadTotals(calls, in_calls, asleep, eagain, requests)
