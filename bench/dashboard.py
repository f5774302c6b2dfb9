"""Dashboard: redraw rate while following live, frame time, first frame of a
replay, memory per event.

Targets (issue 6): live redraw at 10+ frames per second; one frame under 50 ms
with 1 M events recorded at 160x48, whatever the user does (a new zoom, `a`, a
filter, a deep zoom); `iotrace view` of a 5 M-event trace shows its first frame
within 3 s; the in-memory store under 100 bytes per event (painted cells
counted too); the UI never blocks the drain (a slow frame drops frames, not
events). Prints one line per target with the target stated; asserts nothing.
Needs no root: the traces are synthetic (iotrace.tui.synthetic, 6 threads per
workload so 24 lanes fill the screen as in a real run), written as real trace
files with session.TraceWriter. Frame times on a busy machine include time spent
off CPU: the slowest frame's own CPU time is printed next to it.

    .venv/bin/python -m bench.dashboard [--events 1000000] [--view-events 5000000] [--threads 6]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from iotrace.tui import lanes, synthetic
from iotrace.tui.app import DashboardApp, make_app
from iotrace.tui.model import BYTES_PER_EVENT
from iotrace.tui.widgets.timeline import Timeline
from textual.geometry import Region

from iotrace.session import empty_events
from iotrace.source import Batch, ReplaySource

SIZE = (160, 48)
THREADS = 6
"""Threads per workload: 24 lanes fill a 160x48 timeline, as a real `iotrace run` does."""
LIVE_WINDOW_S = 3.0
STALL_S = 0.5


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


async def _wait(cond: Callable[[], bool], timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise SystemExit("bench.dashboard: timed out waiting for the dashboard")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


class PacedSource:
    """A live source: the first part of a trace at once (as fast as the drain takes
    it), then, once `pace()` is called, the rest at the trace's own rate in 10 ms
    batches, as the live tracer hands them over."""

    live = True
    path: Path | None = None

    def __init__(self, trace: synthetic.SyntheticTrace, preload_events: int) -> None:
        ev = trace.events
        done = np.maximum(ev["end_ns"], ev["ts_ns"])
        split_ns = int(done[min(preload_events, len(ev)) - 1]) + 1
        first = dataclasses.replace(trace, events=ev[done < split_ns], t1_ns=split_ns)
        rest = dataclasses.replace(trace, events=ev[done >= split_ns], t0_ns=split_ns)
        pre = synthetic.scripted_source(first)
        self.meta: dict[str, Any] = pre.meta
        self.preload = pre.batches
        self.paced = synthetic.scripted_source(rest, batch_ns=10_000_000).batches
        self.split_ns = split_ns
        self._i = 0
        self._paced_from: float | None = None
        self._now_ns = trace.t0_ns
        self.preloaded = sum(len(b.events) for b in self.preload)

    def pace(self) -> None:
        self._paced_from = time.perf_counter()

    def released(self) -> int:
        """Events handed over or due by now."""
        n = self.preloaded
        if self._paced_from is not None:
            due_ns = self.split_ns + (time.perf_counter() - self._paced_from) * 1e9
            n += sum(len(b.events) for b in self.paced if b.now_ns <= due_ns)
        return n

    def read(self, timeout: float) -> Batch | None:
        if self._i < len(self.preload):
            self._i += 1
            return self.preload[self._i - 1]
        j = self._i - len(self.preload)
        if j >= len(self.paced):
            return None
        if self._paced_from is not None:
            wait = self._due(self.paced[j]) - time.perf_counter()
            if wait > 0:
                time.sleep(min(wait, timeout))
            # Everything due by now in one batch, as the live tracer's queue hands it over.
            k = j
            while k < len(self.paced) and self._due(self.paced[k]) <= time.perf_counter():
                k += 1
            if k > j:
                self._i += k - j
                part = self.paced[j:k]
                self._now_ns = part[-1].now_ns
                return Batch(
                    events=np.concatenate([b.events for b in part]),
                    tasks=[t for b in part for t in b.tasks],
                    stats=part[-1].stats,
                    now_ns=self._now_ns,
                )
        else:
            time.sleep(min(timeout, 0.01))
        return Batch(events=empty_events(), now_ns=self._now_ns)

    def _due(self, b: Batch) -> float:
        assert self._paced_from is not None
        return self._paced_from + (b.now_ns - self.split_ns) / 1e9

    def rush(self) -> None:
        """Hand over the rest at once."""
        self._paced_from = -1e9

    def stop(self) -> None:
        self._i = len(self.preload) + len(self.paced)


@dataclasses.dataclass
class Frames:
    """Frame times (ms) and how many frames a view took to be drawn completely."""

    ms: list[float] = dataclasses.field(default_factory=list)
    cpu_ms: list[float] = dataclasses.field(default_factory=list)
    """The UI thread's CPU time per frame: what is left of `ms` was spent off CPU."""
    drawing_share: list[float] = dataclasses.field(default_factory=list)
    """Share of the first frame's cells still "drawing"."""
    until_drawn: list[int] = dataclasses.field(default_factory=list)
    """Frames until nothing was left "drawing" (1: the first frame was complete)."""
    until_drawn_ms: list[float] = dataclasses.field(default_factory=list)
    cache_bytes: int = 0

    def line(self, name: str, shown: str) -> str:
        worst = max(range(len(self.ms)), key=self.ms.__getitem__)
        text = (
            f"  {name:<34} span {shown:>6}: median {statistics.median(self.ms):5.1f} ms,"
            f" max {self.ms[worst]:5.1f} ms ({self.cpu_ms[worst]:.1f} on CPU) over"
            f" {len(self.ms)} frames (target < 50 ms)"
        )
        if max(self.until_drawn, default=1) > 1:
            text += (
                f"; first frame {100 * max(self.drawing_share):.0f}% drawing, complete after"
                f" {max(self.until_drawn)} frames / {max(self.until_drawn_ms):.0f} ms"
            )
        return text


def _one_frame(app: DashboardApp, out: Frames) -> None:
    """Recompute the timeline frame and render every line of it."""
    dash = app.dashboard
    tl = dash.query_one(Timeline)
    dash._view_key = ()
    t0, c0 = time.perf_counter(), time.thread_time()
    dash.tick()
    list(tl.render_lines(Region(0, 0, tl.size.width, tl.size.height)))
    out.ms.append((time.perf_counter() - t0) * 1e3)
    out.cpu_ms.append((time.thread_time() - c0) * 1e3)
    out.cache_bytes = max(out.cache_bytes, tl.paint_cache.nbytes)


def _frames(app: DashboardApp, repeat: int, *, cold: str = "") -> Frames:
    """`repeat` frames of the current view. cold="first": the timeline never drew
    this view (a new zoom, `a`, a pan, a filter): its painted cells are forgotten,
    the base grid is as the drain left it. cold="behind": also no base grid, as
    when the drain has not painted yet (drawn over the following frames)."""
    tl = app.dashboard.query_one(Timeline)
    store = app.aggregator.store
    out = Frames()
    for _ in range(repeat):
        saved = [(c, c.base) for c in store.chunks()]
        if cold:
            tl.paint_cache.clear()
        if cold == "behind":
            for c, _b in saved:
                c.base = None
        _one_frame(app, out)
        frame = tl.frame
        assert frame is not None
        share = float(frame.pending.mean()) if frame.pending is not None else 0.0
        out.drawing_share.append(share)
        n, spent = 1, out.ms[-1]
        while frame.drawing and n < 1000:
            _one_frame(app, out)
            frame = tl.frame
            assert frame is not None
            n, spent = n + 1, spent + out.ms[-1]
        out.until_drawn.append(n)
        out.until_drawn_ms.append(spent)
        for c, b in saved:
            c.base = b
    return out


async def live(app: DashboardApp, src: PacedSource, pilot: Any) -> dict[str, float]:
    """Follow the live source at its own rate; stall the UI once, as a slow frame."""
    dash = app.dashboard
    tl = dash.query_one(Timeline)
    tick = dash.tick
    tick_ms: list[tuple[float, float]] = []

    def timed_tick() -> None:
        t, c = time.perf_counter(), time.thread_time()
        tick()
        tick_ms.append(((time.perf_counter() - t) * 1e3, (time.thread_time() - c) * 1e3))

    dash.tick = timed_tick  # type: ignore[method-assign]
    src.pace()
    await asyncio.sleep(0.5)  # settle into the pace
    drawn0, tick_ms[:] = tl.frames_drawn, []
    t0 = time.perf_counter()
    await asyncio.sleep(LIVE_WINDOW_S)
    fps = (tl.frames_drawn - drawn0) / (time.perf_counter() - t0)
    ms = list(tick_ms)
    # A slow frame: the UI thread painting the whole trace from events with no
    # budget (what a cold frame cost before the base grid), holding the GIL as
    # frames do; the drain must go on taking events meanwhile and catch up after.
    agg = app.aggregator
    store = agg.store
    snap = dash.snapshot
    assert snap is not None
    shown = list(snap.lanes)
    lag0 = src.released() - agg.events
    released0, taken0, slow = src.released(), agg.events, 0
    end = time.perf_counter() + STALL_S
    while time.perf_counter() < end:
        saved = [(c, c.base) for c in store.chunks()]
        for c, _b in saved:
            c.base = None
        lo, hi = store.time_range()
        lanes.compute(store, shown, lo, hi, tl.cells)
        for c, b in saved:
            c.base = b
        slow += 1
    stalled = time.perf_counter() - end + STALL_S
    released, taken = src.released() - released0, agg.events - taken0
    lag1 = src.released() - agg.events
    t_catch = await _wait(lambda: agg.events >= src.released() - 600, timeout=10)
    dash.tick = tick  # type: ignore[method-assign]
    print(
        f"  following live at {synthetic.EVENTS_PER_SECOND / 1e3:.0f}k events/s, "
        f"{src.preloaded / 1e6:.1f} M recorded: {fps:.1f} frames/s redrawn over "
        f"{LIVE_WINDOW_S:.0f} s (target >= 10), each frame's tick median "
        f"{statistics.median(m for m, _ in ms):.1f} ms, max {max(ms)[0]:.1f} ms "
        f"({max(ms)[1]:.1f} on CPU)"
    )
    print(
        f"  a {stalled:.2f} s slow frame ({slow} whole-trace paints from events in a row): "
        f"the drain took {taken:,} of the {released:,} events released meanwhile "
        f"(backlog {lag0:,} before, {lag1:,} after, caught up {t_catch * 1e3:.0f} ms later; "
        "target: no event dropped, only frames)"
    )
    return {"fps": fps, "stall_taken": taken, "stall_released": released}


async def frame_time(n_events: int, repeat: int, threads: int) -> dict[str, Any]:
    trace = synthetic.make_trace(
        synthetic.duration_for(n_events) + LIVE_WINDOW_S + STALL_S + 2, threads=threads
    )
    src = PacedSource(trace, n_events)
    app = make_app(src, clock=lambda: trace.t1_ns)
    async with app.run_test(size=SIZE) as pilot:
        t_ingest = await _wait(lambda: app.aggregator.events >= src.preloaded)
        t_paint = await _wait(
            lambda: all(
                c.base is not None and c.base.done == c.n for c in app.aggregator.store.chunks()
            )
        )
        print(
            f"frame time, {src.preloaded:,} events recorded, {SIZE[0]}x{SIZE[1]}, "
            f"{len(trace.tasks)} threads, {_load()}:"
        )
        print(
            f"  drain+aggregate+paint with the UI running: {src.preloaded / t_ingest / 1e6:.2f} M "
            f"events/s; the base grid was complete {t_paint:.2f} s after the last of them"
        )
        followed = await live(app, src, pilot)
        src.rush()
        await _wait(app.source_done.is_set)
        await _wait(app.painted.is_set)
        await _wait(lambda: app.dashboard.snapshot is not None and app.dashboard.snapshot.finished)
        await pilot.pause()
        dash = app.dashboard
        n = len(app.aggregator.store)
        print(
            f"  events that reached the dashboard: {app.aggregator.events:,} of the "
            f"{len(trace.events):,} the source delivered (target: all)"
        )
        whole = f"{(trace.t1_ns - trace.t0_ns) / 1e9:.0f} s"
        quarter = max(repeat // 4, 3)
        runs: list[tuple[str, str, Frames]] = []
        print(
            f"  frames, {n:,} events, {_load()} (warm: drawn before; first: a view the timeline "
            "never drew; drain behind: no base grid yet either):"
        )
        runs.append(("last 10 s, warm", "10 s", _frames(app, repeat)))
        runs.append(("last 10 s, first", "10 s", _frames(app, repeat, cold="first")))
        runs.append(("last 10 s, drain behind", "10 s", _frames(app, quarter, cold="behind")))
        dash.span_ns = 100_000_000
        runs.append(
            ("last 100 ms (under 5 ms cells), first", "100 ms", _frames(app, repeat, cold="first"))
        )
        runs.append(("last 100 ms, warm", "100 ms", _frames(app, repeat)))
        dash.action_fit()
        runs.append(("whole trace, warm", whole, _frames(app, repeat)))
        runs.append(("whole trace, first", whole, _frames(app, repeat, cold="first")))
        runs.append(("whole trace, drain behind", whole, _frames(app, quarter, cold="behind")))
        dash.lane_filter, dash.event_filter = lanes.parse_filter("fd:5")
        dash.filter_text = "fd:5"
        runs.append(("whole trace, filter fd:5, first", whole, _frames(app, quarter, cold="first")))
        for name, shown, fr in runs:
            print(fr.line(name, shown))
        store = app.aggregator.store
        base = lanes.base_nbytes(store) / len(store)
        cache = max(fr.cache_bytes for _, _, fr in runs) / len(store)
        per_event = store.nbytes / len(store)
        print(
            f"  memory: store {per_event:.1f} bytes/event allocated ({BYTES_PER_EVENT} per stored "
            f"row; records are 104), base grid {base:.2f}, timeline's painted cells at most "
            f"{cache:.2f}: {per_event + base + cache:.1f} bytes/event in all (target < 100)"
        )
        return {
            **followed,
            "events": n,
            "delivered": len(trace.events),
            "reached": app.aggregator.events,
            "worst_frame_ms": max(max(fr.ms) for _, _, fr in runs),
            "worst_frame": max(runs, key=lambda r: max(r[2].ms))[0],
            "store_bytes_per_event": per_event + base + cache,
        }


async def first_frame(n_events: int, threads: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.trace"
        t = time.perf_counter()
        trace = synthetic.make_trace(synthetic.duration_for(n_events), threads=threads)
        synthetic.write_trace(path, trace)
        n = len(trace.events)
        del trace
        print(
            f"view of a {n:,}-event trace ({path.stat().st_size / 2**20:.0f} MiB on disk, "
            f"written in {time.perf_counter() - t:.1f} s), {_load()}:"
        )
        t0 = time.perf_counter()
        app = make_app(ReplaySource(path), title=path.name)
        async with app.run_test(size=SIZE) as pilot:
            dash = app.dashboard
            tl = dash.query_one(Timeline)
            await _wait(lambda: dash.snapshot is not None and tl.frame is not None)
            first = time.perf_counter() - t0
            await _wait(app.source_done.is_set)
            await _wait(lambda: dash.snapshot is not None and dash.snapshot.finished)
            await pilot.pause()
            whole = time.perf_counter() - t0
            await _wait(app.painted.is_set)
            painted = time.perf_counter() - t0
            store = app.aggregator.store
            fit_first = _frames(app, 5, cold="first")
            fit = _frames(app, 5)
        print(f"  first frame after {first:.2f} s (target < 3 s)")
        print(
            f"  whole range loaded after {whole:.2f} s ({n / whole / 1e6:.2f} M events/s), "
            f"base grid complete after {painted:.2f} s"
        )
        print(fit_first.line("whole range, first", "all"))
        print(fit.line("whole range, warm", "all"))
        base = lanes.base_nbytes(store) / len(store)
        cache = max(fit.cache_bytes, fit_first.cache_bytes) / len(store)
        per_event = store.nbytes / len(store)
        print(
            f"  memory: {len(store):,} events, store {store.nbytes / 2**20:.0f} MiB = "
            f"{per_event:.1f} bytes/event, base grid {base:.2f}, timeline's painted cells "
            f"{cache:.2f}: {per_event + base + cache:.1f} bytes/event in all (target < 100)"
        )
        return {
            "view_events": n,
            "view_first_frame_s": first,
            "view_loaded_s": whole,
            "view_worst_frame_ms": max(max(fit.ms), max(fit_first.ms)),
            "view_bytes_per_event": per_event + base + cache,
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.dashboard", description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--view-events", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--threads", type=int, default=THREADS, help="threads per workload")
    args = ap.parse_args(argv)
    figures = asyncio.run(frame_time(args.events, args.repeat, args.threads))
    figures.update(asyncio.run(first_frame(args.view_events, args.threads)))
    # One line for `python -m bench` (bench.common would load the tracer, not needed here).
    print("JSON dashboard " + json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
