"""The rough edges of issue 12 a new user met in the dashboard and `iotrace view`."""

from __future__ import annotations

from iotrace.tui import synthetic
from iotrace.tui.widgets.header import header_text
from pilot import header, sync

from iotrace.source import ReplaySource

SIZE = (160, 48)


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


@sync
async def test_time_shares_of_several_threads_never_pass_100_percent(settle):
    """The report's definition ('49% of its 3 threads' time'), never '225% of wall time'."""
    import re

    from iotrace.tui.app import make_app

    trace = synthetic.make_trace(2.0, threads=3)
    app = make_app(synthetic.scripted_source(trace, live=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        snap = app.dashboard.snapshot
        assert snap is not None
        rows = {r.key: r for r in snap.rows}
        blocking = rows["blocking-read"]
        assert blocking.threads == 3
        assert "of its 3 threads' time" in blocking.evidence
        for row in rows.values():
            for pct in re.findall(r"(\d+)% of", row.evidence):
                assert int(pct) <= 100, row.evidence
            assert abs(sum(row.shares.values()) - 1) < 1e-9 or not row.shares


@sync
async def test_enter_on_a_thread_lane_shows_that_threads_own_figures(settle):
    from iotrace.tui.app import make_app
    from iotrace.tui.screens.modals import DetailScreen
    from iotrace.tui.widgets.timeline import Timeline

    trace = synthetic.make_trace(2.0, threads=3)
    app = make_app(synthetic.scripted_source(trace, live=False))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        tl = dash.query_one(Timeline)
        from iotrace.tui import lanes as L

        snap = dash.snapshot
        assert snap is not None
        row = next(r for r in snap.rows if r.key == "blocking-read")
        tids = [la.tid for la in snap.lanes if la.row == "blocking-read"]
        assert len(tids) == 3
        own = {tid: L.thread_totals(app.aggregator.store, tid) for tid in tids}
        # Each lane's own calls, which add up to its workload's, not the workload's.
        assert sum(o.calls for o in own.values()) == round(row.syscalls_per_req * row.requests)
        assert all(0 < o.calls < row.syscalls_per_req * row.requests for o in own.values())
        tl.selected_tid = tids[1]
        body = dash.detail_body().plain
        assert f"this thread: {own[tids[1]].calls:,} calls" in body
        assert "its blocking-read (3 threads)" in body
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
