"""Dashboard: frame time, first frame of a replay, store bytes per event.

Targets (issue 6): one frame under 50 ms with 1 M events recorded at 160x48;
`iotrace view` of a 5 M-event trace shows its first frame within 3 s; the
in-memory store under 100 bytes per event. Prints figures, asserts nothing.
Needs no root: the traces are synthetic (iotrace.tui.synthetic), written as
real trace files with session.TraceWriter.

    .venv/bin/python -m bench.dashboard [--events 1000000] [--view-events 5000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from iotrace.tui import lanes, synthetic
from iotrace.tui.app import DashboardApp, make_app
from iotrace.tui.model import BYTES_PER_EVENT
from iotrace.tui.widgets.timeline import Timeline
from textual.geometry import Region

from iotrace.source import ReplaySource

SIZE = (160, 48)
EVENTS_PER_SECOND = 54_000
"""What make_trace(scale=1) produces per second of trace."""


def _duration_for(n_events: int) -> float:
    return max(n_events / EVENTS_PER_SECOND, 1.0)


async def _wait(cond: Callable[[], bool], timeout: float = 120.0) -> float:
    t0 = time.perf_counter()
    while not cond():
        if time.perf_counter() - t0 > timeout:
            raise SystemExit("bench.dashboard: timed out waiting for the dashboard")
        await asyncio.sleep(0.005)
    return time.perf_counter() - t0


def _frame_ms(app: DashboardApp, repeat: int, *, cold: str = "") -> list[float]:
    """Recompute the timeline frame and render every line of it, `repeat` times.
    cold="zoom": forget the cells painted for earlier views (a new zoom level);
    cold="first": also forget the 5 ms base cells (nothing painted yet)."""
    dash = app.dashboard
    tl = dash.query_one(Timeline)
    out = []
    for _ in range(repeat):
        dash._view_key = ()
        if cold:
            lanes._CACHE.clear()
        if cold == "first":
            lanes._BASE.clear()
        t0 = time.perf_counter()
        dash.tick()
        list(tl.render_lines(Region(0, 0, tl.size.width, tl.size.height)))
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def frame_time(n_events: int, repeat: int) -> None:
    trace = synthetic.make_trace(_duration_for(n_events))
    n = len(trace.events)
    src = synthetic.scripted_source(trace, live=True)
    app = make_app(src, clock=lambda: trace.t1_ns)
    async with app.run_test(size=SIZE) as pilot:
        t_ingest = await _wait(app.source_done.is_set)
        await _wait(lambda: app.dashboard.snapshot is not None and app.dashboard.snapshot.finished)
        await pilot.pause()
        follow = _frame_ms(app, repeat)
        follow_zoom = _frame_ms(app, repeat, cold="zoom")
        follow_first = _frame_ms(app, max(repeat // 4, 3), cold="first")
        await pilot.press("a")
        fit = _frame_ms(app, repeat)
        fit_zoom = _frame_ms(app, repeat, cold="zoom")
        fit_first = _frame_ms(app, max(repeat // 4, 3), cold="first")
        store = app.aggregator.store
        print(
            f"frame time, {n:,} events recorded, {SIZE[0]}x{SIZE[1]}, load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (warm: as while following; "
            "new zoom: a new cell size; first: nothing painted yet):"
        )
        print(f"  drain+aggregate with the UI running: {n / t_ingest / 1e6:.2f} M events/s")
        whole = f"{(trace.t1_ns - trace.t0_ns) / 1e9:.0f} s"
        for name, ms, shown in (
            ("last 10 s, warm", follow, "10 s"),
            ("last 10 s, new zoom", follow_zoom, "10 s"),
            ("last 10 s, first", follow_first, "10 s"),
            ("whole trace, warm", fit, whole),
            ("whole trace, new zoom", fit_zoom, whole),
            ("whole trace, first", fit_first, whole),
        ):
            print(
                f"  {name:<22} span {shown:>5}: median {statistics.median(ms):6.1f} ms,"
                f" max {max(ms):6.1f} ms over {len(ms)} frames (target < 50 ms)"
            )
        print(
            f"  store: {store.nbytes / len(store):.1f} bytes/event allocated "
            f"({BYTES_PER_EVENT} per stored row; records are 104) (target < 100); "
            f"painted cells {lanes.cache_nbytes() / len(store):.1f} bytes/event more"
        )


async def first_frame(n_events: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.trace"
        t = time.perf_counter()
        trace = synthetic.make_trace(_duration_for(n_events))
        synthetic.write_trace(path, trace)
        n = len(trace.events)
        del trace
        print(
            f"view of a {n:,}-event trace ({path.stat().st_size / 2**20:.0f} MiB on disk, "
            f"written in {time.perf_counter() - t:.1f} s):"
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
            store = app.aggregator.store
            fit = _frame_ms(app, 5)
        print(f"  first frame after {first:.2f} s (target < 3 s)")
        print(
            f"  whole range loaded and drawn after {whole:.2f} s ({n / whole / 1e6:.2f} M events/s)"
        )
        print(f"  frame over the whole range: median {statistics.median(fit):.1f} ms")
        print(
            f"  store: {len(store):,} events in {store.nbytes / 2**20:.0f} MiB = "
            f"{store.nbytes / len(store):.1f} bytes/event (target < 100), "
            f"painted cells {lanes.cache_nbytes() / len(store):.1f} bytes/event more"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.dashboard", description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--view-events", type=int, default=5_000_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args(argv)
    asyncio.run(frame_time(args.events, args.repeat))
    asyncio.run(first_frame(args.view_events))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
