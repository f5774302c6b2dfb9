"""Every key of the dashboard, driven with Pilot against a scripted source and a fixed clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from iotrace.tui import lanes as L
from iotrace.tui.app import make_app
from iotrace.tui.messages import SnapshotTaken
from iotrace.tui.screens.dashboard import DEFAULT_SPAN_NS
from iotrace.tui.screens.modals import KEYS, DetailScreen, FilterScreen, HelpScreen
from iotrace.tui.widgets.scoreboard import Scoreboard
from iotrace.tui.widgets.timeline import Timeline
from pilot import header, sync

from iotrace.errors import IotraceError

SIZE = (160, 48)


@sync
async def test_scoreboard_shows_the_four_models(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        rows = {r.key: r for r in app.dashboard.snapshot.rows}
        assert {k: r.model for k, r in rows.items()} == {
            "blocking-read": "sync-blocking",
            "nonblocking-read": "sync-nonblocking",
            "epoll-read": "async-blocking",
            "uring-read": "async-nonblocking",
        }
        sb = app.dashboard.query_one(Scoreboard)
        assert sb.row_keys() == list(rows)
        assert str(sb.get_cell("nonblocking-read", "eagain")) == "24.0"
        assert str(sb.get_cell("nonblocking-read", "sys")) == "25.0"
        assert "ENDED" in header(app)
        assert "LOST 1,234" in header(app)


@sync
async def test_space_pauses_the_view_while_recording_goes_on(running_app, settle):
    app = running_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, drained=False)
        dash = app.dashboard
        assert "LIVE" in header(app)
        before = dash.view_range()
        await pilot.press("space")
        assert dash.paused and "PAUSED (recording goes on)" in header(app)
        assert dash.view_range() == before
        tl = dash.query_one(Timeline)
        at_pause = app.drawable_rows
        assert tl.rows_until == at_pause  # the lanes keep the rows drawable at the pause
        await pilot.press("space")
        assert not dash.paused and dash.follow and "LIVE" in header(app)
        assert tl.rows_until == app.drawable_rows


@sync
async def test_plus_and_minus_zoom(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        assert dash.span_ns == DEFAULT_SPAN_NS
        await pilot.press("plus")
        assert dash.span_ns == DEFAULT_SPAN_NS // 2
        t0, t1 = dash.view_range()
        assert t1 - t0 == DEFAULT_SPAN_NS // 2
        await pilot.press("minus", "minus")
        assert dash.span_ns == DEFAULT_SPAN_NS * 2
        await pilot.pause()
        tl = app.dashboard.query_one(Timeline)
        # Cells sit on a 5 ms grid, so the span drawn is within a few % of the asked one.
        drawn = tl.frame.t1 - tl.frame.t0
        assert abs(drawn - 2 * DEFAULT_SPAN_NS) < 0.05 * DEFAULT_SPAN_NS
        assert str(tl.render_line(0).text).startswith("span 20.2 s")


@sync
async def test_left_right_pan_and_f_follows_again(running_app, settle):
    app = running_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, drained=False)
        dash = app.dashboard
        await pilot.press("plus", "plus")
        span = DEFAULT_SPAN_NS // 4
        _, end = dash.view_range()
        await pilot.press("left")
        assert not dash.follow
        assert dash.view_range()[1] == end - span // 4
        await pilot.press("right")
        assert dash.view_range()[1] == end
        await pilot.press("left", "f")
        assert dash.follow and dash.view_range()[1] == end


@sync
async def test_arrows_select_threads_and_tab_moves_to_the_scoreboard(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        tl = dash.query_one(Timeline)
        sb = dash.query_one(Scoreboard)
        assert dash.focused is tl and tl.selected_tid == 1001
        await pilot.press("down", "down")
        assert tl.selected_tid == 1003
        assert sb.selected_row() == "epoll-read"
        await pilot.press("up")
        assert tl.selected_tid == 1002
        await pilot.press("tab")
        assert dash.focused is sb
        await pilot.press("down", "down")
        assert sb.selected_row() == "uring-read"
        await pilot.pause()
        assert tl.selected_tid == 1004


@sync
async def test_enter_shows_the_selected_calls_in_words(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        body = app.screen.body.plain
        assert "psync 1001" in body and "sync-blocking" in body
        assert "pread64 fd 5, 4 KiB at offset" in body
        assert "Synchronous, blocking" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)


@sync
async def test_detail_pane_shows_histogram_call_and_model(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("down")  # nonblocking-read
        await pilot.pause()
        words = str(app.dashboard.query_one("#words").render())
        assert "read fd 3, 4 KiB: got 4 KiB" in words or "-EAGAIN" in words
        assert "sync-nonblocking" in words and "EAGAIN" in words
        hist = str(app.dashboard.query_one("#histogram").render())
        assert "latency of 4,000 requests" in hist


@sync
async def test_slash_filters_lanes_by_name_and_events_by_fd(ended_app, settle, until_drawn):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        tl = app.dashboard.query_one(Timeline)
        await pilot.press("slash")
        assert isinstance(app.screen, FilterScreen)
        await pilot.press(*"epoll", "enter")
        await pilot.pause()
        assert [ln.row for ln in tl.lines] == ["epoll-read", "epoll-read"]
        await pilot.press("slash", "ctrl+u", *"fd:5", "enter")
        await until_drawn(pilot, app)
        assert app.dashboard.event_filter == L.EventFilter(fds=frozenset({5}))
        states = tl.frame.states
        assert (states[1001] == L.BLOCK).any()
        assert np.isin(states[1002], [L.NONE, L.LOST]).all()
        await pilot.press("slash", "escape")
        assert app.dashboard.filter_text == "fd:5"
        await pilot.press("slash", "ctrl+u", "enter")
        await pilot.pause()
        assert len(tl.thread_tids()) == 4


@sync
async def test_question_mark_lists_every_key(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text").render())
        for key, _ in KEYS:
            assert key in text
        for key in ("space", "+ / -", "left / right", "f", "tab", "enter", "/", "?", "q"):
            assert key in text
        await pilot.press("x")
        assert not isinstance(app.screen, HelpScreen)


@sync
async def test_q_quits(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


@sync
async def test_small_terminal_shows_a_message(ended_app, settle):
    app = ended_app()
    async with app.run_test(size=(70, 20)) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        assert dash.has_class("-too-small")
        msg = str(dash.query_one("#too-small").render())
        assert "at least 80x24" in msg and "70x20" in msg
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert not dash.has_class("-too-small")


@sync
async def test_replay_shows_the_whole_range_and_scrubs(ended_app, settle, trace):
    app = ended_app(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        dash = app.dashboard
        assert "REPLAY" in header(app)
        t0, t1 = dash.view_range()
        assert t0 == trace.t0_ns and t1 >= trace.t1_ns - 100_000
        await pilot.press("plus")
        span = dash.span_ns
        assert span == (t1 - t0) // 2
        await pilot.press("home")
        assert dash.view_range()[0] == t0
        await pilot.press("end")
        assert dash.view_range()[1] == dash.data_range()[1]
        await pilot.press("a")
        assert dash.view_range() == (t0, t1)
        await pilot.press("plus", "space")
        assert "playing" in header(app)
        await pilot.press("space")
        assert "playing" not in header(app)


@sync
async def test_lost_range_is_drawn_as_lost(ended_app, settle, trace):
    app = ended_app(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        tl = app.dashboard.query_one(Timeline)
        lost = tl.frame.lost
        assert lost is not None and lost.any()
        for states in tl.frame.states.values():
            assert (states[lost] == L.LOST).all()
            assert (states[~lost] != L.LOST).all()


@sync
async def test_the_drain_paints_the_base_grid_while_recording(running_app, settle):
    app = running_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app, drained=False)
        assert not app.source_done.is_set()  # still live
        chunks = app.aggregator.store.chunks()
        assert chunks and all(c.base is not None and c.base.done == c.n for c in chunks)


@sync
async def test_cells_not_painted_yet_show_drawing_and_the_timer_finishes_them(ended_app, settle):
    app = ended_app(live=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, app)
        tl = app.dashboard.query_one(Timeline)
        assert tl.frame is not None and not tl.frame.drawing
        whole = {t: s.tolist() for t, s in tl.frame.states.items()}
        # As if the drain had painted nothing and frames had no time to paint.
        for chunk in app.aggregator.store.chunks():
            chunk.base = None
        tl.paint_cache.clear()
        tl.paint_budget_s = 0.0
        app.dashboard._view_key = ()
        app.dashboard.tick()
        assert tl.frame.drawing
        text = "\n".join(strip.text for strip in tl._strips)
        assert " drawing" in text and "not drawn yet" in text  # spelled, and in the legend
        # No key pressed, no new data: the redraw timer alone completes the view.
        for _ in range(400):
            if not tl.frame.drawing:
                break
            await asyncio.sleep(0.02)
        assert not tl.frame.drawing
        assert {t: s.tolist() for t, s in tl.frame.states.items()} == whole
        assert "not drawn yet" not in "\n".join(strip.text for strip in tl._strips)


@sync
async def test_snapshots_are_replaceable_messages(ended_app, settle):
    seen: list[object] = []
    app = ended_app()
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await settle(pilot, app)
    snaps = [m for m in seen if isinstance(m, SnapshotTaken)]
    assert snaps and snaps[-1].snapshot.finished
    assert snaps[0].can_replace(snaps[-1])


class _FailingSource:
    path: Path | None = None
    live = True

    def __init__(self):
        self.meta = {}

    def read(self, timeout):
        raise IotraceError("the ring buffer went away")

    def stop(self):
        pass


@sync
async def test_a_failing_source_is_a_notice_not_a_traceback():
    app = make_app(_FailingSource(), clock=lambda: 0)
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(200):
            if app.error:
                break
            await asyncio.sleep(0.02)
        await pilot.pause()
        assert app.error == "the ring buffer went away"
        assert any("ring buffer went away" in str(n.message) for n in app._notifications)
        assert app.dashboard.ended
