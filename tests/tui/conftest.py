"""Fixtures for the dashboard tests: synthetic traces, scripted sources, a fixed clock."""

from __future__ import annotations

import asyncio

import pytest
from iotrace.tui import synthetic
from iotrace.tui.app import DashboardApp, make_app
from iotrace.tui.widgets.timeline import Timeline

FIXED_CLOCK_NS = synthetic.T0_NS + 4_500_000_000


def fixed_clock() -> int:
    return FIXED_CLOCK_NS


@pytest.fixture(scope="session")
def trace() -> synthetic.SyntheticTrace:
    return synthetic.make_trace(4.0)


def _ended_app(trace: synthetic.SyntheticTrace, *, live: bool = True) -> DashboardApp:
    """An app whose source delivers the whole trace and then ends."""
    return make_app(synthetic.scripted_source(trace, live=live), clock=fixed_clock)


def _running_app(trace: synthetic.SyntheticTrace) -> DashboardApp:
    """An app whose live source delivers the trace and then keeps running (empty batches)."""
    return make_app(synthetic.scripted_source(trace, end_after=False), clock=fixed_clock)


async def _settle(pilot, app: DashboardApp, *, drained: bool = True) -> None:
    """Wait until the drain thread has taken every batch and the UI has redrawn."""
    for _ in range(400):
        ready = app.source_done.is_set() if drained else app.snapshots_posted > 0
        if ready and app.dashboard.snapshot is not None:
            break
        await asyncio.sleep(0.02)
    if not drained:
        src = app.source
        for _ in range(400):
            if src._i >= len(src.batches):  # type: ignore[attr-defined]
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
    if drained:
        for _ in range(400):
            if app.painted.is_set():
                break
            await asyncio.sleep(0.02)
    await pilot.pause()
    app.dashboard._view_key = ()
    app.dashboard.tick()
    await drawn(pilot, app)


async def drawn(pilot, app: DashboardApp) -> None:
    """Tick until the timeline has no cell left "drawing" (a loaded machine can run
    a frame out of its painting budget; the next ticks finish it)."""
    tl = app.dashboard.query_one(Timeline)
    for _ in range(400):
        if tl.frame is None or not tl.frame.drawing:
            break
        app.dashboard.tick()
        await asyncio.sleep(0)
    await pilot.pause()


@pytest.fixture
def ended_app(trace):
    """Factory: an app on the whole trace whose source then ends."""
    return lambda live=True: _ended_app(trace, live=live)


@pytest.fixture
def running_app(trace):
    """Factory: a live app that keeps running after the trace."""
    return lambda: _running_app(trace)


@pytest.fixture
def settle():
    return _settle


@pytest.fixture
def until_drawn():
    return drawn
