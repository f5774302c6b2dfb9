"""Run records: storms of identical calls folded in the kernel, read back as calls.

The BPF side folds consecutive calls of one thread with one syscall, fd and
result class (EAGAIN retries, multiplexer calls that found nothing ready, and
any repeat while the ring buffer is filling) into one `Kind.SYSCALL_RUN` record
(layout: `events.RUN_FIELDS`). The count, the first start, the last end and the
sums are exact; what each call took is known only as min, max and a log2
histogram.

Every reader that thinks in calls (report, dashboard, exports of calls) sees a
run as its N calls through `expand`, which lays the calls out inside the run's
span with durations drawn from its histogram and flags them `Flag.FROM_RUN`, so
figures built on per-call durations can say they are estimated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import numpy as np

from iotrace import events
from iotrace.events import Flag, Kind

EXPAND_MAX_ROWS: Final = 1 << 20
"""Calls `expand` hands out per piece: a crafted run count cannot make it allocate more."""
_RUN: Final = int(Kind.SYSCALL_RUN)


def has_runs(ev: np.ndarray) -> bool:
    return bool(len(ev)) and bool((ev["kind"] == _RUN).any())


def calls_in(ev: np.ndarray) -> int:
    """Calls the records stand for: one per SYSCALL record, `offset` per run."""
    kinds = ev["kind"]
    runs = kinds == _RUN
    return int(np.count_nonzero(kinds == int(Kind.SYSCALL))) + int(
        np.minimum(ev["offset"][runs], events.RUN_MAX_CALLS).sum()
    )


def _counts(runs: np.ndarray) -> np.ndarray:
    """Calls per run, bounded as the kernel bounds them (a damaged file may claim more)."""
    return np.clip(runs["offset"].astype(np.int64), 1, events.RUN_MAX_CALLS)


def _durations(runs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each run's calls' durations, run after run, shortest first: the histogram's
    bucket middles, the ends set to the run's min and max, scaled to its sum."""
    n = len(runs)
    total = int(counts.sum())
    lo = (runs["key"] & np.uint64(0xFFFFFFFF)).astype(np.float64)
    hi = (runs["key"] >> np.uint64(32)).astype(np.float64)
    hi = np.maximum(hi, lo)
    base = ((runs["flags"] >> np.uint32(events.RUN_BASE_SHIFT)) & np.uint32(0xFF)).astype(
        np.float64
    )
    hist = runs["user_data"].astype("<u8").view(np.uint8).reshape(n, events.RUN_BUCKETS)
    hist = hist.astype(np.int64)
    # A histogram that does not add up to the count (a damaged file) is ignored.
    good = hist.sum(axis=1) == counts
    mids = 2.0 ** (base[:, None] + np.arange(events.RUN_BUCKETS)[None, :] + 0.5)
    mids = np.clip(mids, lo[:, None], hi[:, None])
    flat_counts = np.where(good[:, None], hist, 0)
    flat_counts[~good, 0] = counts[~good]
    d = np.repeat(mids.ravel(), flat_counts.ravel())
    if len(d) != total:  # cannot happen after the repair above; be safe anyway
        d = np.repeat(lo, counts)
    run_of = np.repeat(np.arange(n), counts)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    ends = starts + counts - 1
    d[starts] = lo
    d[ends] = np.where(counts > 1, hi, lo)
    # The calls between the shortest and the longest scaled to the run's summed
    # duration, within [min, max].
    middle = np.ones(total, dtype=bool)
    middle[starts] = False
    middle[ends] = False
    want = runs["kdone_ns"].astype(np.float64) - lo - np.where(counts > 1, hi, 0)
    have = np.bincount(run_of, weights=np.where(middle, d, 0), minlength=n)
    scale = np.where(have > 0, np.maximum(want, 0) / np.maximum(have, 1.0), 1.0)
    d = np.where(middle, np.clip(d * scale[run_of], lo[run_of], hi[run_of]), d)
    return d


def _expand_runs(runs: np.ndarray) -> np.ndarray:
    """The calls of these run records, as SYSCALL records flagged FROM_RUN."""
    counts = _counts(runs)
    total = int(counts.sum())
    out = np.zeros(total, dtype=runs.dtype)
    if not total:
        return out
    run_of = np.repeat(np.arange(len(runs)), counts)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    k = np.arange(total) - starts[run_of]
    first = runs["ts_ns"].astype(np.int64)
    last = np.maximum(runs["end_ns"].astype(np.int64), first)
    d = _durations(runs, counts)
    span = (last - first).astype(np.float64)
    busy = np.add.reduceat(d, starts)
    d = np.minimum(d, np.maximum(span / counts, 0)[run_of] * counts[run_of])
    # Calls evenly spaced in the span: gap after each call but the last.
    gap = np.where(counts > 1, np.maximum(span - busy, 0) / np.maximum(counts - 1, 1), 0)
    before = np.cumsum(d) - d  # durations of the earlier calls of the whole array
    before -= before[starts][run_of]
    ts = first[run_of] + (before + k * gap[run_of]).astype(np.int64)
    end = np.minimum(ts + d.astype(np.int64), last[run_of])
    end[starts + counts - 1] = last
    ts = np.minimum(ts, end)
    out["ts_ns"] = ts.astype(np.uint64)
    out["end_ns"] = end.astype(np.uint64)
    share = d / np.maximum(busy[run_of], 1.0)
    for name in ("off_cpu_ns", "runq_ns"):
        out[name] = (runs[name].astype(np.float64)[run_of] * share).astype(np.uint64)
    ret = runs["ret"].astype(np.int64)
    each = np.where(ret > 0, ret // counts, ret)
    extra = np.where(ret > 0, ret - each * counts, 0)
    out["ret"] = each[run_of] + (k < extra[run_of])
    size = runs["size"].astype(np.int64)
    out["size"] = (size // counts)[run_of] + (k < (size % counts)[run_of])
    for name in ("fd", "pid", "tid", "op"):
        out[name] = runs[name][run_of]
    out["kind"] = int(Kind.SYSCALL)
    out["flags"] = np.uint32(Flag.FROM_RUN) | (runs["flags"][run_of] & np.uint32(Flag.PRESSURE))
    return out


def expand(ev: np.ndarray, max_rows: int = EXPAND_MAX_ROWS) -> Iterator[np.ndarray]:
    """The records with every run replaced by its calls, in record order, in pieces of
    at most about `max_rows` rows (a piece holds at least one record)."""
    if not has_runs(ev):
        yield ev
        return
    is_run = ev["kind"] == _RUN
    weight = np.where(is_run, _counts(ev) if len(ev) else 0, 1)
    cum = np.cumsum(weight)
    lo = 0
    done = 0
    while lo < len(ev):
        hi = int(np.searchsorted(cum, done + max_rows, side="right"))
        hi = max(hi, lo + 1)
        yield _expand_piece(ev[lo:hi], is_run[lo:hi])
        done = int(cum[hi - 1])
        lo = hi


def _expand_piece(ev: np.ndarray, is_run: np.ndarray) -> np.ndarray:
    if not is_run.any():
        return ev
    calls = _expand_runs(ev[is_run])
    counts = _counts(ev[is_run])
    # Each run's calls take its place among the other records.
    weight = np.ones(len(ev), dtype=np.int64)
    weight[is_run] = counts
    pos = np.r_[0, np.cumsum(weight)[:-1]]
    out = np.zeros(int(weight.sum()), dtype=ev.dtype)
    out[pos[~is_run]] = ev[~is_run]
    run_pos = pos[is_run]
    idx = np.repeat(run_pos, counts) + (
        np.arange(len(calls)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
    )
    out[idx] = calls
    return out
