"""Whole-screen snapshots with a fixed clock, at the smallest supported size and a wide one.

Update after an intended change with: pytest tests/tui --snapshot-update
"""

from __future__ import annotations

import pytest
from iotrace.tui import synthetic
from iotrace.tui.app import make_app

FIXED_CLOCK_NS = synthetic.T0_NS + 4_500_000_000


def _app(trace, live: bool):
    return make_app(synthetic.scripted_source(trace, live=live), clock=lambda: FIXED_CLOCK_NS)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_live_run_after_it_ended(snap_compare, trace, settle, size):
    app = _app(trace, live=True)

    async def ready(pilot):
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_replay_zoomed_on_the_lost_range(snap_compare, trace, settle, until_drawn, size):
    app = _app(trace, live=False)

    async def ready(pilot):
        await settle(pilot, app)
        await pilot.press("plus", "plus", "plus", "plus", "down", "down", "down")
        await until_drawn(pilot, app)

    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_too_small(snap_compare, trace, settle):
    app = _app(trace, live=True)

    async def ready(pilot):
        await settle(pilot, app)

    assert snap_compare(app, terminal_size=(60, 20), run_before=ready)
