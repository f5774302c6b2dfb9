"""The rough edges of issue 12 a new user met in the dashboard and `iotrace view`."""

from __future__ import annotations

import asyncio
import functools

from iotrace.tui import synthetic
from iotrace.tui.widgets.header import header_text

from iotrace.source import ReplaySource

SIZE = (160, 48)


def sync(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


def header(app) -> str:
    return str(app.dashboard.query_one("#header").render())


def test_a_replay_says_how_far_it_has_loaded_and_that_its_figures_are_partial(tmp_path, trace):
    path = synthetic.write_trace(tmp_path / "t.trace", trace, chunk=50_000)
    source = ReplaySource(path)
    assert source.progress() == 0.0
    seen = []
    while source.read(0.1) is not None:
        seen.append(source.progress())
    assert seen and 0 < seen[0] < 1 and seen == sorted(seen) and source.progress() == 1.0
    text = str(header_text(None, mode="REPLAY", elapsed_ns=3_000_000_000, path="", loading=0.37))
    assert "loading 37%" in text and "partial" in text
    assert "0:03.0" not in text  # no clock counting up as if it were replaying


@sync
async def test_a_loaded_replay_shows_final_figures_without_loading(ended_app, settle):
    app = ended_app(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert "loading" not in header(app) and "partial" not in header(app)
        assert "REPLAY" in header(app)


@sync
async def test_quit_and_help_are_in_the_key_bar_at_80x24(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        screen = app.export_screenshot()
        assert "quit" in screen and "help" in screen


@sync
async def test_a_filter_shows_a_badge_saying_the_scoreboard_is_unfiltered(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        assert "filter on" not in header(app)
        await pilot.press("slash", *"epoll", "enter")
        await pilot.pause()
        app.dashboard.tick()
        assert "filter on: epoll (scoreboard unfiltered)" in header(app)
        await pilot.press("slash", "ctrl+u", "enter")
        await pilot.pause()
        app.dashboard.tick()
        assert "filter on" not in header(app)


@sync
async def test_space_in_a_replay_plays_from_the_start_never_before_it(ended_app, settle):
    app = ended_app(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        lo = dash.data_range()[0]
        await pilot.press("end", "space")
        assert "playing" in header(app)
        assert dash.view_range()[0] >= lo
