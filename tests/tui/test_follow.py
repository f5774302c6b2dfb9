"""The dashboard of a recording follows the trace file as it is written
(FollowSource): every record arrives once and in order, whatever the moments
the file is looked at, an unfinished last chunk is waited for, never reported
as damage, and the end is the footer, or the recorder saying it is done."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from iotrace.tui import synthetic
from iotrace.tui.app import make_app

from iotrace import session
from iotrace.source import CUT_SHORT, FollowSource, ReplaySource, pipe_closed

SIZE = (160, 48)


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> tuple[Path, synthetic.SyntheticTrace]:
    """A complete trace file: several events chunks, tasks, counters, footer."""
    trace = synthetic.make_trace(2.0)
    path = tmp_path_factory.mktemp("follow") / "whole.trace"
    with session.TraceWriter(path, trace.meta) as w:
        w.write_tasks(trace.tasks)
        for part in np.array_split(trace.events, 7):
            w.write_events(part)
            w.write_stats({"lost": {"sched": 1234}, "events": len(part)})
    return path, trace


def _drain(src, *, until_none: bool = True, reads: int = 10_000):
    """Every batch until the source ends (or `reads` reads)."""
    got: list = []
    for _ in range(reads):
        b = src.read(0.0)
        if b is None:
            return got, True
        got.append(b)
    assert not until_none, "the source never ended"
    return got, False


def _events(batches) -> np.ndarray:
    return np.concatenate([b.events for b in batches]) if batches else session.empty_events()


def test_a_file_written_in_pieces_arrives_whole_and_in_order(whole, tmp_path):
    # The recorder's file as a reader may find it at any moment: cut anywhere,
    # inside a chunk header, inside a payload, between chunks.
    src_path, trace = whole
    data = src_path.read_bytes()
    meta_end = 16 + 32 + int.from_bytes(data[16 + 8 : 16 + 16], "little")
    path = tmp_path / "growing.trace"
    path.write_bytes(data[:meta_end])
    ended = threading.Event()
    src = FollowSource(path, recording_ended=ended.is_set)
    rng = np.random.default_rng(7)
    cuts = sorted({meta_end, *rng.integers(meta_end, len(data), 60).tolist(), len(data)})
    batches = []
    with open(path, "ab") as f:
        for a, b in itertools.pairwise(cuts):
            f.write(data[a:b])
            f.flush()
            got, finished = _drain(src, until_none=False, reads=30)
            batches += got
            assert src.damage == "", f"an unfinished tail was called damage at byte {b}"
            if b < len(data):
                assert not finished
    got, finished = _drain(src)
    batches += got
    assert finished and src.complete and src.damage == ""
    ev = _events(batches)
    assert np.array_equal(ev, trace.events)
    tasks = [t for b in batches for t in b.tasks]
    assert {t.tid for t in tasks} == {t.tid for t in trace.tasks}
    assert [b.stats for b in batches if b.stats][-1]["lost"] == {"sched": 1234}


def test_follow_and_replay_read_a_saved_trace_the_same(whole):
    path, _trace = whole
    followed, done_f = _drain(FollowSource(path))
    replayed, done_r = _drain(ReplaySource(path))
    assert done_f and done_r
    assert np.array_equal(_events(followed), _events(replayed))
    assert np.array_equal(_events(replayed), session.load(path).events)


def test_the_end_of_a_recording_without_a_footer_is_cut_short(whole, tmp_path):
    # The recorder died (or could not write the footer): once it is known to be
    # gone, what is on disk is read to its end and the file reported cut short.
    src_path, trace = whole
    data = src_path.read_bytes()
    path = tmp_path / "cut.trace"
    path.write_bytes(data[: len(data) - 40])  # the footer and a bit more are missing
    ended = threading.Event()
    src = FollowSource(path, recording_ended=ended.is_set)
    before, finished = _drain(src, until_none=False, reads=50)
    assert not finished and src.damage == ""  # still waiting for the rest
    ended.set()
    after, finished = _drain(src)
    assert finished and not src.complete
    assert src.damage == CUT_SHORT or "cut short" in src.damage
    n = len(_events(before + after))
    assert 0 < n <= len(trace.events)


def test_a_damaged_chunk_is_damage_once_the_recording_ended(whole, tmp_path):
    src_path, _ = whole
    data = bytearray(src_path.read_bytes())
    data[-100] ^= 0xFF  # inside the last events/counters chunks: the checksum fails
    path = tmp_path / "bad.trace"
    path.write_bytes(bytes(data))
    ended = threading.Event()
    src = FollowSource(path, recording_ended=ended.is_set)
    _, finished = _drain(src, until_none=False, reads=50)
    assert not finished and src.damage == ""
    ended.set()
    _, finished = _drain(src)
    assert finished and "checksum" in src.damage


def test_the_recorder_closing_its_pipe_ends_the_recording():
    r, w = os.pipe()
    try:
        ended = pipe_closed(r)
        assert not ended()
        os.close(w)
        assert ended()
    finally:
        os.close(r)


def test_an_idle_follow_moves_time_on_and_never_ends_by_itself(whole, tmp_path):
    src_path, _ = whole
    data = src_path.read_bytes()
    meta_end = 16 + 32 + int.from_bytes(data[16 + 8 : 16 + 16], "little")
    path = tmp_path / "idle.trace"
    path.write_bytes(data[:meta_end])
    now = [10_000_000_000]
    src = FollowSource(path, clock=lambda: now[0])
    first = src.read(0.0)
    now[0] += 3_000_000_000
    second = src.read(0.0)
    assert first is not None and second is not None
    assert len(first.events) == len(second.events) == 0
    assert second.now_ns - first.now_ns == 3_000_000_000


def test_the_dashboard_on_a_followed_recording_ends_with_its_footer(whole, tmp_path):
    """The app as `iotrace run` shows it: LIVE while the file grows, ENDED with
    the whole scoreboard once the footer is written."""
    src_path, trace = whole
    data = src_path.read_bytes()
    cut = len(data) // 2
    path = tmp_path / "live.trace"
    path.write_bytes(data[:cut])
    app = make_app(FollowSource(path), clock=lambda: trace.t1_ns)

    async def run() -> None:
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(200):
                if app.snapshots_posted:
                    break
                await asyncio.sleep(0.02)
            await pilot.pause()
            app.dashboard.tick()
            assert app.dashboard.mode() == "LIVE"
            with open(path, "ab") as f:
                f.write(data[cut:])
            for _ in range(400):
                if app.source_done.is_set():
                    break
                await asyncio.sleep(0.02)
            await pilot.pause()
            app.dashboard.tick()
            assert app.dashboard.mode() == "ENDED"
            snap = app.dashboard.latest
            assert snap is not None and snap.finished
            assert snap.events == len(trace.events)
            assert {r.model for r in snap.rows} >= {"sync-blocking", "async-nonblocking"}
            await pilot.press("q")

    asyncio.run(run())
    assert app.error == ""
