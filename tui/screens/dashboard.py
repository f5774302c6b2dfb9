"""The main screen: header, scoreboard, timeline, detail pane, and every key."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar

from iotrace.tui import lanes as L
from iotrace.tui.explain import MODEL_TEXT, describe
from iotrace.tui.fmt import fmt_ns
from iotrace.tui.model import RowSnapshot, Snapshot
from iotrace.tui.screens.modals import DetailScreen, FilterScreen, HelpScreen
from iotrace.tui.widgets.detail import DetailPane, histogram_text
from iotrace.tui.widgets.header import HeaderBar, header_text
from iotrace.tui.widgets.scoreboard import Scoreboard
from iotrace.tui.widgets.timeline import Timeline
from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

if TYPE_CHECKING:
    from iotrace.tui.app import DashboardApp

MIN_WIDTH = 80
MIN_HEIGHT = 24
SHORT_HEIGHT = 32
"""Below this many lines the detail pane shrinks so lanes keep their room."""
DEFAULT_SPAN_NS = 10_000_000_000
MIN_SPAN_NS = 10_000
MAX_SPAN_NS = 24 * 3600 * 1_000_000_000


def quantize_span(span_ns: int) -> int:
    """The next span up on a 10^(k/10) ladder: while a replay loads, the fitted
    view keeps its cell size (and cached cells) until the range grows ~26%."""
    k = math.ceil(10 * math.log10(max(span_ns, 1)) - 1e-9)
    return max(round(10 ** (k / 10)), span_ns)


class DashboardScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        # First in the key bar: an 80-column bar cuts off its end, and how to quit
        # and where every key is explained must always be visible.
        Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("space", "toggle_pause", "pause", priority=True),
        Binding("plus,equals_sign", "zoom(0.5)", "zoom in", key_display="+", priority=True),
        Binding("minus", "zoom(2)", "zoom out", key_display="-", priority=True),
        Binding("left", "pan(-1)", "pan", key_display="←", priority=True),
        Binding("right", "pan(1)", "pan", key_display="→", show=False, priority=True),
        Binding("f", "follow", "follow"),
        Binding("a", "fit", "all", show=False),
        Binding("home", "jump(0)", "start", show=False),
        Binding("end", "jump(1)", "end", show=False),
        Binding("enter", "details", "details", priority=True),
        Binding("slash", "filter", "filter", key_display="/"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: Snapshot | None = None
        """What the scoreboard and lanes show (frozen while paused)."""
        self.latest: Snapshot | None = None
        """The newest snapshot (the header always shows it: recording goes on)."""
        self.paused = False
        self.playing = False
        self.follow = True
        self.fit = False
        self.span_ns = DEFAULT_SPAN_NS
        self.end_ns = 0
        self.filter_text = ""
        self.lane_filter = L.LaneFilter()
        self.event_filter = L.EventFilter()
        self.ended = False
        self._view_key: tuple[object, ...] = ()
        self._paused_rows = 0
        self._last_tick_ns = 0
        self._mounted = False

    @property
    def dash(self) -> DashboardApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        store = self.dash.aggregator.store
        with Vertical(id="dash"):
            yield HeaderBar(id="header")
            yield Scoreboard(id="scoreboard")
            yield Timeline(store, id="timeline")
            yield DetailPane(id="detail")
            yield Footer()
        yield Static(id="too-small")

    def on_mount(self) -> None:
        if not self.dash.source.live:
            self.follow = False
            self.fit = True
        self._check_size()
        self.query_one(Timeline).focus()
        self._mounted = True
        self.tick()

    # --- size ---------------------------------------------------------------
    def on_resize(self, event: events.Resize) -> None:
        self._check_size()
        self._view_key = ()

    def _check_size(self) -> None:
        w, h = self.app.size
        small = w < MIN_WIDTH or h < MIN_HEIGHT
        self.set_class(small, "-too-small")
        self.set_class(h < SHORT_HEIGHT, "-short")
        self.query_one(Scoreboard).set_width(w)
        if small:
            self.query_one("#too-small", Static).update(
                Text.assemble(
                    ("iotrace needs a terminal of at least 80x24", "bold"),
                    f"\nthis one is {w}x{h}: make it larger (recording goes on); q quits",
                    justify="center",
                )
            )

    # --- data ---------------------------------------------------------------
    def take(self, snapshot: Snapshot) -> None:
        """Keep the newest snapshot; the redraw timer applies it (never per message)."""
        self.latest = snapshot

    def _apply_latest(self) -> None:
        snap = self.latest
        if snap is None or snap is self.snapshot:
            return
        if self.paused and self.snapshot is not None:
            return
        self.snapshot = snap
        self.query_one(Scoreboard).update_rows(snap.rows)
        self.query_one(Timeline).row_models = {r.key: r.model for r in snap.rows}

    def source_ended(self) -> None:
        self.ended = True
        self._view_key = ()

    def data_range(self) -> tuple[int, int]:
        snap = self.snapshot
        lo, hi = self.dash.aggregator.store.time_range()
        if snap is not None:
            hi = max(hi, snap.now_ns)
            if lo == 0:
                lo = snap.origin_ns
        return lo, hi

    def view_range(self) -> tuple[int, int]:
        lo, hi = self.data_range()
        if self.fit:
            return lo, lo + quantize_span(max(hi - lo, MIN_SPAN_NS))
        if self.follow and not self.paused:
            return hi - self.span_ns, hi
        return self.end_ns - self.span_ns, self.end_ns

    def cursor_ns(self) -> int | None:
        t0, t1 = self.view_range()
        if self.follow and not self.paused and not self.fit:
            return None
        return (t0 + t1) // 2

    def mode(self) -> str:
        if not self.dash.source.live:
            return "PLAYING" if self.playing else "REPLAY"
        if self.ended:
            return "ENDED"
        return "PAUSED" if self.paused else "LIVE"

    def _update_header(self) -> None:
        snap = self.latest
        origin = snap.origin_ns if snap else 0
        if self.dash.source.live and not self.ended and snap is not None:
            elapsed = self.dash.clock() - origin
        elif snap is not None:
            elapsed = snap.now_ns - origin
        else:
            elapsed = 0
        path = str(self.dash.source.path or "")
        loading = None
        if not self.dash.source.live and (snap is None or not snap.finished):
            progress = getattr(self.dash.source, "progress", None)
            loading = float(progress()) if callable(progress) else 0.0
            # The last chunk read is not the end until the final snapshot says so.
            loading = min(loading, 0.99)
        self.query_one(HeaderBar).update(
            header_text(
                snap,
                mode=self.mode(),
                elapsed_ns=elapsed,
                path=path,
                title=self.dash.title_text,
                loading=loading,
                filter_text=self.filter_text,
            )
        )

    def tick(self) -> None:
        """Redraw timer: recompute the timeline only when the view or data changed."""
        if not self._mounted or self.has_class("-too-small"):
            return
        now = self.dash.clock()
        if self.playing and self._last_tick_ns:
            self._advance(now - self._last_tick_ns)
        self._last_tick_ns = now
        self._apply_latest()
        self._update_header()
        snap = self.snapshot
        if snap is None:
            return
        t0, t1 = self.view_range()
        tl = self.query_one(Timeline)
        tl.rows_until = self._paused_rows if self.paused else self.dash.drawable_rows
        key = (
            id(snap),
            tl.rows_until,
            t0,
            t1,
            tl.size,
            tl.selected_tid,
            self.filter_text,
            self.ended,
            len(snap.lanes),
        )
        if key == self._view_key:
            return
        self._view_key = key
        tl.show(
            snap,
            t0,
            t1,
            cursor_ns=self.cursor_ns(),
            lane_filter=self.lane_filter,
            event_filter=self.event_filter,
            row_order=[r.key for r in snap.rows],
        )
        if tl.frame is not None and tl.frame.drawing:
            # Cells left "drawing" (the frame's painting budget ran out): the next
            # tick paints on, whether or not the view or the data change.
            self._view_key = ()
        self._sync_scoreboard_to_lane()
        self._update_detail()

    def _advance(self, dt_ns: int) -> None:
        hi = self.data_range()[1]
        self.end_ns = min(self.end_ns + dt_ns, hi + self.span_ns // 2)
        if self.end_ns >= hi + self.span_ns // 2:
            self.playing = False

    # --- selection ----------------------------------------------------------
    def selected_lane_row(self) -> str | None:
        snap = self.snapshot
        tid = self.query_one(Timeline).selected_tid
        if snap is None:
            return None
        for la in snap.lanes:
            if la.tid == tid:
                return la.row
        return None

    def selected_row(self) -> RowSnapshot | None:
        key = self.selected_lane_row() or self.query_one(Scoreboard).selected_row()
        if self.snapshot is None:
            return None
        return next((r for r in self.snapshot.rows if r.key == key), None)

    def _sync_scoreboard_to_lane(self) -> None:
        row = self.selected_lane_row()
        if row is not None:
            self.query_one(Scoreboard).select_row(row)

    @on(DataTable.RowHighlighted, "#scoreboard")
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        key = str(event.row_key.value)
        tl = self.query_one(Timeline)
        if self.selected_lane_row() == key or self.snapshot is None:
            return
        tids = [ln.tid for ln in tl.lines if ln.kind == "thread" and ln.row == key]
        if tids:
            tl.selected_tid = tids[0]
            self._view_key = ()
            self.tick()

    def on_key(self, event: events.Key) -> None:
        tl = self.query_one(Timeline)
        if self.focused is tl and event.key in ("up", "down"):
            tl.move_selection(-1 if event.key == "up" else 1)
            event.stop()
            self._view_key = ()
            self.tick()

    def selected_calls(self, n: int) -> list[dict[str, int]]:
        tl = self.query_one(Timeline)
        t0, t1 = self.view_range()
        at = self.cursor_ns()
        at = t1 if at is None else at
        return L.calls_before(
            self.dash.aggregator.store,
            tl.selected_tid,
            at,
            n,
            lookback_ns=max(t1 - t0, 1_000_000_000),
            event_filter=self.event_filter,
        )

    def _thread_name(self) -> str:
        tid = self.query_one(Timeline).selected_tid
        for la in self.snapshot.lanes if self.snapshot else ():
            if la.tid == tid:
                return f"{la.comm} {tid}"
        return ""

    def _update_detail(self) -> None:
        calls = self.selected_calls(1)
        call = describe(calls[0]) if calls else ""
        self.query_one(DetailPane).show(self.selected_row(), call, self._thread_name())

    # --- actions ------------------------------------------------------------
    def _freeze(self) -> None:
        """Leave follow/fit mode, keeping the current view where it is."""
        t0, t1 = self.view_range()
        if self.fit:
            self.span_ns = max(t1 - t0, MIN_SPAN_NS)
        self.end_ns = t1
        self.follow = False
        self.fit = False

    def _changed(self) -> None:
        self._view_key = ()
        self.tick()

    def action_toggle_pause(self) -> None:
        if not self.dash.source.live:
            if not self.playing:
                self._freeze()
                lo, hi = self.data_range()
                if self.end_ns >= hi:
                    # Play from the first recorded instant: the view starts at the
                    # trace's start, never before it (that put "-5s" on the axis).
                    self.end_ns = lo + self.span_ns
            self.playing = not self.playing
        elif self.paused:
            self.paused = False
            self.follow = True
        else:
            self.end_ns = self.view_range()[1]
            self.paused = True
            self.follow = False
            # The lanes keep the rows drawable now, as the scoreboard keeps this
            # snapshot, even while the frame finishes drawing or is zoomed.
            self._paused_rows = self.dash.drawable_rows
        self._changed()

    def action_zoom(self, factor: float) -> None:
        t0, t1 = self.view_range()
        if self.fit:
            self._freeze()
        center = (t0 + t1) // 2
        self.span_ns = int(min(max(self.span_ns * factor, MIN_SPAN_NS), MAX_SPAN_NS))
        if not self.follow or self.paused:
            self.end_ns = center + self.span_ns // 2
        self._changed()

    def action_pan(self, direction: int) -> None:
        self._freeze()
        lo, hi = self.data_range()
        self.end_ns += direction * max(self.span_ns // 4, 1)
        # Keep at least half the view on recorded time.
        lower = min(lo + self.span_ns // 2, hi)
        self.end_ns = max(min(self.end_ns, hi + self.span_ns // 2), lower)
        self._changed()

    def action_follow(self) -> None:
        self.fit = False
        if self.dash.source.live and not self.ended:
            self.follow = True
            self.paused = False
        else:
            self.follow = False
            self.end_ns = self.data_range()[1]
        self._changed()

    def action_fit(self) -> None:
        self.fit = True
        self.follow = False
        self._changed()

    def action_jump(self, where: int) -> None:
        self._freeze()
        lo, hi = self.data_range()
        self.end_ns = lo + self.span_ns if where == 0 else hi
        self._changed()

    def action_details(self) -> None:
        self.app.push_screen(DetailScreen(self.detail_body()))

    def detail_body(self) -> Text:
        row = self.selected_row()
        t = Text()
        thread = self._thread_name()
        t.append(f"{thread or 'no thread selected'}", "bold")
        if row is not None:
            t.append(f"  ·  {row.key}  ·  {row.model} ({row.api})\n", "bold")
            t.append(f"{row.evidence}\n\n", "italic")
            t.append(MODEL_TEXT.get(row.model, "") + "\n\n")
            if thread:
                # The lane's own figures first: the row's below are its whole workload's.
                own = L.thread_totals(
                    self.dash.aggregator.store, self.query_one(Timeline).selected_tid
                )
                t.append("this thread: ", "bold")
                t.append(
                    f"{own.calls:,} calls ({fmt_ns(own.in_calls_ns)} in them, "
                    f"{fmt_ns(own.asleep_ns)} asleep), {own.eagain:,} EAGAIN, "
                    f"{own.requests:,} async requests\n"
                )
            t.append(f"its {row.key} ({row.threads} threads): ", "bold")
            t.append(
                f"requests {row.requests:,}   IOPS {row.iops:,.0f}   p50 {fmt_ns(row.p50_ns)}   "
                f"p99 {fmt_ns(row.p99_ns)}   syscalls/request {row.syscalls_per_req:.1f}   "
                f"CPU/request {fmt_ns(row.cpu_per_req_ns)}   EAGAIN/request "
                f"{row.eagain_per_req:.1f}   mean in flight {row.depth:.1f}\n\n"
            )
            t.append_text(histogram_text(row, 14, 70))
            t.append("\n\n")
        t.append("Latest calls at the cursor, newest first:\n", "bold")
        calls = self.selected_calls(15)
        origin = self.snapshot.origin_ns if self.snapshot else 0
        for c in calls:
            t.append(f"  {(c['ts_ns'] - origin) / 1e9:10.6f} s  ", "dim")
            t.append(describe(c) + "\n")
        if not calls:
            t.append("  none in view\n", "dim")
        t.append("\nesc closes", "italic dim")
        return t

    def action_filter(self) -> None:
        def apply(text: str | None) -> None:
            if text is None:
                return
            self.filter_text = text
            self.lane_filter, self.event_filter = L.parse_filter(text)
            self._changed()

        self.app.push_screen(FilterScreen(self.filter_text), apply)

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        self.app.exit()
