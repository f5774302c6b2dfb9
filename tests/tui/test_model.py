"""The dashboard's pure parts: the store, the per-row figures, lane cells, words."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
from iotrace.tui import lanes as L
from iotrace.tui import synthetic
from iotrace.tui.explain import describe
from iotrace.tui.model import BYTES_PER_EVENT, Aggregator, LaneInfo, LostGap, Store
from iotrace.tui.widgets.header import header_text

from iotrace.errors import TraceFileError, UsageError
from iotrace.events import EAGAIN, SYSCALL_BY_NAME, Flag, Kind
from iotrace.session import EVENT_DTYPE


def aggregate(trace, live=False) -> Aggregator:
    src = synthetic.scripted_source(trace, live=live)
    agg = Aggregator(src.meta, live=live)
    while (b := src.read(0.0)) is not None:
        agg.ingest(b)
    agg.finished = True
    return agg


def test_store_keeps_fewer_bytes_than_a_record(trace):
    agg = aggregate(trace)
    store = agg.store
    assert BYTES_PER_EVENT < 100 < EVENT_DTYPE.itemsize
    # Every record but the LOST one is stored; the open chunk's spare room is counted.
    assert len(store) == len(trace.events) - 1
    assert store.nbytes / len(store) < 100


def test_store_evicts_oldest_chunks_and_counts_them(trace):
    store = Store(max_events=20_000, chunk_events=4096)
    part = trace.events[:50_000]
    store.append(part)
    assert len(store) <= 20_000
    assert store.evicted + len(store) == int((part["kind"] != Kind.LOST).sum())
    assert store.evicted > 0 and store.evicted_until_ns > 0


def test_rows_get_their_model_and_exact_counts(trace):
    snap = aggregate(trace).snapshot()
    rows = {r.key: r for r in snap.rows}
    b, n, e, u = (
        rows[k] for k in ("blocking-read", "nonblocking-read", "epoll-read", "uring-read")
    )
    assert (b.model, b.api, b.requests, b.syscalls_per_req) == (
        "sync-blocking",
        "pread64",
        16000,
        1,
    )
    # 24 EAGAIN retries and one read that gets data, 4000 times.
    assert (n.model, n.requests, n.eagain_per_req, n.syscalls_per_req) == (
        "sync-nonblocking",
        4000,
        24.0,
        25.0,
    )
    assert (e.model, e.api, e.requests, e.syscalls_per_req) == ("async-blocking", "epoll", 5000, 2)
    assert (u.model, u.api, u.requests) == ("async-nonblocking", "io_uring", 80000)
    assert u.syscalls_per_req == pytest.approx(10000 / 80000)
    assert u.depth > 4  # eight requests overlap per round
    assert b.shares["blocked"] > 0.4 and e.shares["mux"] > 0.8 and u.shares["reap"] > 0.5
    assert snap.lost == {"sched": 1234}


def _call(op: str, ts: int, end: int, ret: int, tid: int = 7, **kw) -> np.ndarray:
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["op"], r["ts_ns"], r["end_ns"], r["ret"] = (
        Kind.SYSCALL,
        SYSCALL_BY_NAME[op].op,
        ts,
        end,
        ret,
    )
    r["pid"] = r["tid"] = tid
    for k, v in kw.items():
        r[k] = v
    return r


def test_sync_request_latency_runs_from_first_retry_to_the_read_that_delivered():
    ev = np.concatenate(
        [
            _call("read", 1000, 1100, -EAGAIN),
            _call("read", 2000, 2100, -EAGAIN),
            _call("read", 3000, 3500, 64),
            _call("epoll_wait", 10_000, 19_000, 1),
            _call("read", 19_500, 20_000, 64),
        ]
    )
    agg = Aggregator({}, live=False)
    from iotrace.source import Batch

    agg.ingest(Batch(events=ev[:2], now_ns=2100))  # a request split across batches
    agg.ingest(Batch(events=ev[2:], now_ns=20_000))
    acc = agg.rows["pid 7"]
    assert acc.sync_requests == 2
    assert acc.sync_lat_ns == (3500 - 1000) + (20_000 - 10_000)


def test_a_timed_out_wait_is_idle_and_a_file_write_times_itself():
    ev = np.concatenate(
        [
            _call("epoll_wait", 1000, 11_000, 0),  # timed out: idle, no request
            _call("write", 11_500, 12_000, 64),
            _call("epoll_wait", 20_000, 30_000, 0),
            _call("pwrite64", 30_500, 31_000, 64),  # positional: never after a wait
        ]
    )
    agg = Aggregator({}, live=False)
    from iotrace.source import Batch

    agg.ingest(Batch(events=ev, now_ns=31_000))
    acc = agg.rows["pid 7"]
    assert acc.sync_requests == 2
    assert acc.sync_lat_ns == 500 + 500
    assert acc.timeouts[SYSCALL_BY_NAME["epoll_wait"].op] == 2
    row = agg.snapshot().rows[0]
    assert row.model == "sync-blocking"


def test_cover_is_exact_across_cells():
    cov = L.cover(
        np.array([0, 0]),
        np.array([5.0, 30.0]),
        np.array([25.0, 31.0]),
        np.array([1.0, 2.0]),
        1,
        0,
        10.0,
        4,
    )
    assert cov[0].tolist() == pytest.approx([0.5, 1.0, 0.5, 0.2])


def test_lanes_show_states_and_lost_ranges_never_idle():
    store = Store()
    ev = np.concatenate(
        [
            _call("pread64", 0, 1000, 4096, off_cpu_ns=900),  # blocked
            _call("read", 1000, 2000, -EAGAIN),  # spin
            _call("epoll_wait", 2000, 3000, 1, off_cpu_ns=1000),  # mux
        ]
    )
    store.append(ev)
    lane = LaneInfo(7, 7, "t", "r", 0, 4000, False)
    gap = LostGap(3000, 3500, 5, "sched")
    f = L.compute(store, [lane], 0, 4000, 4, lost_gaps=[gap])
    assert f.states[7].tolist() == [L.BLOCK, L.SPIN, L.MUX, L.LOST]


def test_requests_draw_overlapping_bars():
    r = np.zeros(3, dtype=EVENT_DTYPE)
    r["kind"], r["pid"], r["tid"] = Kind.URING_REQUEST, 7, 7
    r["ts_ns"] = [0, 0, 0]
    r["kdone_ns"] = [2000, 2000, 1000]
    r["end_ns"] = [3000, 3000, 3000]
    r["flags"] = [0, 0, Flag.WORKER]
    store = Store()
    store.append(r)
    f = L.compute(store, [LaneInfo(7, 7, "t", "r", 0, 4000, True)], 0, 4000, 4)
    bars = f.requests[7]
    assert bars.scale == 1 and len(bars.lines) == 3
    assert bars.lines[0].tolist() == [L.REQ_KERNEL, L.REQ_KERNEL, L.REQ_REAP, L.NONE]


def test_filter_words():
    lanes_f, ev_f = L.parse_filter("fio 1234 fd:5 pread64")
    assert lanes_f == L.LaneFilter("fio", frozenset({1234}))
    assert ev_f == L.EventFilter(frozenset({5}), frozenset({SYSCALL_BY_NAME["pread64"].op}))
    assert lanes_f.keep(LaneInfo(1, 1234, "x", "y", 0, 0, False))
    assert lanes_f.keep(LaneInfo(1, 1, "fio", "y", 0, 0, False))
    assert not lanes_f.keep(LaneInfo(1, 1, "dd", "y", 0, 0, False))


def test_calls_in_words():
    gib = 1 << 30
    c = _call(
        "pread64", 0, 212_000, 4096, fd=5, size=4096, offset=int(1.2 * gib), off_cpu_ns=198_000
    )
    words = describe({k: int(c[k][0]) for k in EVENT_DTYPE.names or ()})
    assert words == "pread64 fd 5, 4 KiB at offset 1.2 GiB: got 4 KiB in 212 us, 198 us asleep"
    c = _call("read", 0, 850, -EAGAIN, fd=3, size=4096)
    assert describe({k: int(c[k][0]) for k in EVENT_DTYPE.names or ()}) == (
        "read fd 3, 4 KiB: -EAGAIN after 850 ns (no data yet; the loop retries)"
    )


def test_header_highlights_losses(trace):
    snap = aggregate(trace).snapshot()
    text = header_text(snap, mode="LIVE", elapsed_ns=65_000_000_000, path="/x.trace")
    assert "● LIVE" in text.plain and "1:05.0" in text.plain and "/x.trace" in text.plain
    lost = next(s for s in text.spans if "LOST" in text.plain[s.start : s.end])
    assert "red" in str(lost.style)


def test_dashboard_and_view_never_import_bcc():
    code = (
        "import sys, iotrace.tui.app, iotrace.tui.view, iotrace.tui.synthetic; "
        "assert 'bcc' not in sys.modules, 'bcc imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_view_errors_are_one_line(tmp_path, trace):
    from iotrace.tui.view import cmd_view

    with pytest.raises(TraceFileError):
        cmd_view(argparse.Namespace(file=str(tmp_path / "missing.trace")))
    path = synthetic.write_trace(tmp_path / "t.trace", trace)
    with pytest.raises(UsageError, match="needs a terminal"):
        cmd_view(argparse.Namespace(file=str(path)))  # pytest's stdout is not a tty


def _same_frames(a: L.FrameData, b: L.FrameData) -> None:
    assert (a.t0, a.t1) == (b.t0, b.t1)
    assert a.states.keys() == b.states.keys()
    for tid in a.states:
        assert a.states[tid].tolist() == b.states[tid].tolist()
    assert a.requests.keys() == b.requests.keys()
    for tid in a.requests:
        assert [x.tolist() for x in a.requests[tid].lines] == [
            x.tolist() for x in b.requests[tid].lines
        ]


def _store_and_lanes(trace) -> tuple[Store, list[LaneInfo], list[LostGap]]:
    store = Store(chunk_events=4096)
    store.append(trace.events)
    agg = aggregate(trace)
    return store, list(agg.snapshot().lanes), agg.store.lost


def test_cells_summed_from_the_base_grid_match_cells_painted_from_events(trace, monkeypatch):
    store, lanes_, lost = _store_and_lanes(trace)
    painted = L.compute(store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost)
    assert all(c.base is None for c in store.chunks())  # nothing painted in advance
    # The drain paints the base grid a budget at a time, newest rows first.
    painter = L.BasePainter(store)
    steps = 1
    while not painter.step(0.0):
        steps += 1
    assert steps > 1  # it stopped at its budget and went on where it was
    bases = [c.base for c in store.chunks()]
    assert all(
        b is not None and b is not L.NO_BASE and b.done == c.n
        for b, c in zip(bases, store.chunks(), strict=True)
    )
    assert 0 < L.base_nbytes(store) < len(store) * L.BASE_MAX_BYTES_PER_EVENT
    summed = L.compute(store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost)
    _same_frames(summed, painted)
    # A base grid half painted: the frame paints the rest from events.
    for c in store.chunks()[::2]:
        c.base = None
    _same_frames(L.compute(store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost), painted)


def test_a_frame_out_of_budget_draws_the_rest_as_drawing_then_completes(trace):
    store, lanes_, lost = _store_and_lanes(trace)
    whole = L.compute(store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost)
    cache = L.PaintCache()
    frames = []
    while True:
        f = L.compute(
            store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost, cache=cache, budget_s=0.0
        )
        frames.append(f)
        if not f.drawing:
            break
        assert len(frames) < 100
    first = frames[0]
    assert first.drawing and len(frames) > 2  # one slice a frame when out of budget
    assert first.pending is not None and first.lost is not None
    for tid, st in first.states.items():
        # Not drawn yet is never shown as idle or as a state; a loss still shows.
        shown = st[first.pending & ~first.lost]
        assert (shown == L.PENDING).all(), tid
        assert (st[~first.pending] == whole.states[tid][~first.pending]).all()
    _same_frames(frames[-1], whole)
    assert cache.nbytes > 0


def test_a_paused_view_draws_the_rows_stored_when_it_paused(trace):
    store, lanes_, lost = _store_and_lanes(trace)
    half = len(trace.events) // 2
    early = Store(chunk_events=4096)
    early.append(trace.events[:half])
    painter = L.BasePainter(store)
    while not painter.step(1.0):
        pass
    # The rows the store held at the pause: as many as `early` holds.
    assert early.appended == len(early) < store.appended
    paused = L.compute(
        store, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost, rows_until=early.appended
    )
    _same_frames(paused, L.compute(early, lanes_, trace.t0_ns, trace.t1_ns, 120, lost_gaps=lost))


def test_the_drain_paints_what_it_just_stored_whatever_its_budget(trace):
    store = Store(chunk_events=4096)
    painter = L.BasePainter(store)
    for start in range(0, 40_000, 10_000):
        store.append(trace.events[start : start + 10_000])
        painter.step(0.0, rows=10_000)
        assert all(c.base is not None and c.base.done == c.n for c in store.chunks())


def test_a_filter_and_a_deep_zoom_paint_from_events(trace):
    store, lanes_, lost = _store_and_lanes(trace)
    painter = L.BasePainter(store)
    while not painter.step(1.0):
        pass
    t0 = trace.t0_ns + 1_000_000_000
    for span, ef in ((50_000_000, None), (4_000_000_000, L.parse_filter("fd:5")[1])):
        ref = Store(chunk_events=4096)
        ref.append(trace.events)  # never painted
        a = L.compute(store, lanes_, t0, t0 + span, 120, lost_gaps=lost, event_filter=ef)
        b = L.compute(ref, lanes_, t0, t0 + span, 120, lost_gaps=lost, event_filter=ef)
        _same_frames(a, b)


def test_a_chunk_too_sparse_for_the_base_grid_keeps_none():
    # Two events an hour apart: 720,000 base cells would be far over budget.
    store = Store(chunk_events=64)
    ev = np.concatenate(
        [_call("pread64", 0, 1000, 4096), _call("pread64", 3600 * 10**9, 3600 * 10**9 + 1000, 4096)]
    )
    store.append(ev)
    while not L.BasePainter(store).step(1.0):
        pass
    assert store.chunks()[0].base is L.NO_BASE
    lane = LaneInfo(7, 7, "t", "r", 0, 3600 * 10**9 + 1000, False)
    f = L.compute(store, [lane], 0, 3600 * 10**9 + 1000, 100)
    assert not f.drawing and f.states[7][0] != L.NONE
