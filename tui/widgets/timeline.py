"""The timeline: a time axis, one lane per traced thread grouped by workload,
async requests as stacked in-flight bars under their thread, and a legend.

Drawn with the line API from a frame computed by `iotrace.tui.lanes`; the
dashboard calls `show()` on its redraw timer, never per event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from iotrace.tui import lanes as L
from iotrace.tui.fmt import fmt_axis, fmt_ns, nice_step
from iotrace.tui.model import LaneInfo, Snapshot, Store
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

STATE_STYLE: dict[int, Style] = {
    L.NONE: Style(),
    L.USER: Style(color="green"),
    L.SYS: Style(color="yellow"),
    L.SPIN: Style(color="red", bold=True),
    L.BLOCK: Style(color="blue"),
    L.MUX: Style(color="cyan"),
    L.REAP: Style(color="magenta"),
    L.RUNQ: Style(color="bright_magenta"),
    L.SLEEP: Style(dim=True),
    L.LOST: Style(color="red", reverse=True),
    L.REQ_KERNEL: Style(color="bright_white"),
    L.REQ_WORKER: Style(color="bright_yellow"),
    L.REQ_REAP: Style(color="white", dim=True),
    L.PENDING: Style(color="bright_black", italic=True),
}
LEGEND_WORDS: dict[int, str] = {
    L.USER: "user",
    L.SYS: "syscall on CPU",
    L.SPIN: "EAGAIN spin",
    L.BLOCK: "blocked in read",
    L.MUX: "select/poll/epoll",
    L.REAP: "awaiting completions",
    L.RUNQ: "waiting for CPU",
    L.SLEEP: "asleep elsewhere",
    L.LOST: "lost",
    L.REQ_KERNEL: "request in flight",
    L.REQ_WORKER: "on io-wq",
    L.REQ_REAP: "done, not reaped",
    L.PENDING: "not drawn yet",
}
LEGEND_SHORT: dict[int, str] = {
    L.USER: "user",
    L.SYS: "syscall",
    L.SPIN: "EAGAIN",
    L.BLOCK: "blocked",
    L.MUX: "mux wait",
    L.REAP: "reap wait",
    L.RUNQ: "runq",
    L.SLEEP: "asleep",
    L.LOST: "lost",
    L.REQ_KERNEL: "in flight",
    L.REQ_WORKER: "io-wq",
    L.REQ_REAP: "unreaped",
    L.PENDING: "drawing",
}
"""Legend words under 120 columns, so the legend keeps to two lines at 80."""
_LABEL = Style(bold=True)
_GROUP = Style(bold=True, underline=True)
_SELECTED = Style(reverse=True, bold=True)
_AXIS = Style(dim=True)
_CURSOR = Style(color="bright_white", bold=True)


@dataclass(frozen=True)
class LaneLine:
    """One line of the lane area: a group header, a thread, or a request sub-lane."""

    kind: str
    """"group", "thread" or "requests"."""
    row: str
    tid: int = 0
    sub: int = 0


def layout(
    snapshot: Snapshot, lane_filter: L.LaneFilter, row_order: list[str], req_lines: dict[int, int]
) -> list[LaneLine]:
    """Lines in drawing order: workloads in scoreboard order, threads by (pid, tid)."""
    by_row: dict[str, list[LaneInfo]] = {}
    for la in snapshot.lanes:
        if lane_filter.keep(la):
            by_row.setdefault(la.row, []).append(la)
    out: list[LaneLine] = []
    order = [r for r in row_order if r in by_row] + sorted(r for r in by_row if r not in row_order)
    for row in order:
        out.append(LaneLine("group", row))
        for la in sorted(by_row[row], key=lambda x: (x.pid, x.tid)):
            out.append(LaneLine("thread", row, la.tid))
            for j in range(req_lines.get(la.tid, 0)):
                out.append(LaneLine("requests", row, la.tid, j))
    return out


_SPELLED: dict[int, str] = {L.LOST: "lost", L.PENDING: "drawing"}
_GLYPH: list[str] = [L.GLYPH.get(st, " ") for st in range(max(L.GLYPH) + 1)]


def runs(cells: np.ndarray) -> list[Segment]:
    """Cells to segments, one per run of equal state; "lost" (and "drawing") runs
    spell the word."""
    segs: list[Segment] = []
    n = len(cells)
    if n == 0:
        return segs
    # Drawn every frame for every visible lane: one numpy pass, then plain ints.
    ends = np.flatnonzero(cells[1:] != cells[:-1]) + 1
    states = cells[np.concatenate(([0], ends))].tolist()
    a = 0
    for st, b in zip(states, [*ends.tolist(), n], strict=True):
        width = b - a
        word = _SPELLED.get(st)
        if word is not None and width >= len(word):
            text = f" {word}".ljust(width) if width > len(word) + 1 else word.ljust(width)
        else:
            text = _GLYPH[st] * width
        segs.append(Segment(text, STATE_STYLE[st]))
        a = b
    return segs


class Timeline(Widget, can_focus=True):
    """Lanes of thread states over time; up/down select a thread."""

    DEFAULT_CSS = """
    Timeline { height: 1fr; }
    """

    def __init__(self, store: Store, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.store = store
        self.lines: list[LaneLine] = []
        self._strips: list[Strip] = []
        self.frame: L.FrameData | None = None
        self.top = 0
        self.selected_tid = 0
        self.row_models: dict[str, str] = {}
        self.paint_cache = L.PaintCache()
        """What the last frame painted, per chunk, for the next frame to reuse."""
        self.paint_budget_s: float | None = L.FRAME_PAINT_BUDGET_S
        """How long a frame may paint events before leaving cells "drawing"."""
        self.frames_drawn = 0
        self.rows_until: int | None = None
        """Draw only the store's rows numbered below this (`Store.appended`); None: all."""
        """Frames computed so far (the redraw rate is measured with it)."""

    @property
    def label_width(self) -> int:
        return 24 if self.size.width >= 120 else 16

    @property
    def cells(self) -> int:
        return max(self.size.width - self.label_width - 1, 1)

    def lane_rows(self) -> int:
        """Lines available for lanes (axis on top, legend at the bottom)."""
        return max(self.size.height - 1 - self._legend_height(), 1)

    def _legend_height(self) -> int:
        return len(self._legend_lines(max(self.size.width, 1)))

    def thread_tids(self) -> list[int]:
        return [ln.tid for ln in self.lines if ln.kind == "thread"]

    def show(
        self,
        snapshot: Snapshot,
        t0: int,
        t1: int,
        *,
        cursor_ns: int | None,
        lane_filter: L.LaneFilter,
        event_filter: L.EventFilter,
        row_order: list[str],
    ) -> None:
        """Recompute the frame for [t0, t1) and redraw."""
        ncells = self.cells
        lanes_shown = [la for la in snapshot.lanes if lane_filter.keep(la)]
        max_sub = 4 if self.size.height >= 30 else 2
        frame = L.compute(
            self.store,
            lanes_shown,
            t0,
            t1,
            ncells,
            lost_gaps=snapshot.lost_gaps,
            event_filter=event_filter,
            max_sub=max_sub,
            cache=self.paint_cache,
            budget_s=self.paint_budget_s,
            rows_until=self.rows_until,
        )
        self.frame = frame
        self.frames_drawn += 1
        req_lines = {t: len(rb.lines) for t, rb in frame.requests.items()}
        self.lines = layout(snapshot, lane_filter, row_order, req_lines)
        tids = self.thread_tids()
        if tids and self.selected_tid not in tids:
            self.selected_tid = tids[0]
        self._keep_selection_visible()
        self._strips = self._build(snapshot, frame, cursor_ns)
        self.refresh()

    def _keep_selection_visible(self) -> None:
        rows = self.lane_rows()
        idx = next(
            (
                i
                for i, ln in enumerate(self.lines)
                if ln.kind == "thread" and ln.tid == self.selected_tid
            ),
            0,
        )
        # Show the group header above the selected thread when there is room.
        want_top = max(idx - 1, 0)
        if want_top < self.top:
            self.top = want_top
        elif idx >= self.top + rows:
            self.top = idx - rows + 1
        self.top = max(0, min(self.top, max(len(self.lines) - rows, 0)))

    def move_selection(self, delta: int) -> int:
        tids = self.thread_tids()
        if not tids:
            return 0
        i = tids.index(self.selected_tid) if self.selected_tid in tids else 0
        self.selected_tid = tids[max(0, min(len(tids) - 1, i + delta))]
        return self.selected_tid

    def _axis(self, frame: L.FrameData, origin: int, cursor_ns: int | None) -> Strip:
        lw, n = self.label_width, frame.ncells
        span = frame.t1 - frame.t0
        head = f"span {fmt_ns(span)}"[:lw].ljust(lw + 1)
        step = nice_step(span, max(n // 10, 1))
        chars = [" "] * n
        styles: list[Style] = [_AXIS] * n
        first = int(np.ceil((frame.t0 - origin) / step))
        k = first
        while True:
            t = origin + k * step
            if t >= frame.t1:
                break
            col = int((t - frame.t0) / span * n)
            text = "|" + fmt_axis(t - origin, step)
            if (
                col >= 0
                and col + len(text) <= n
                and all(c == " " for c in chars[col : col + len(text) + 1])
            ):
                chars[col : col + len(text)] = list(text)
            elif 0 <= col < n and chars[col] == " ":
                chars[col] = "|"
            k += 1
        if cursor_ns is not None and frame.t0 <= cursor_ns < frame.t1:
            col = int((cursor_ns - frame.t0) / span * n)
            chars[col] = "▼"
            styles[col] = _CURSOR
        segs = [Segment(head, _AXIS)]
        segs += [Segment(c, s) for c, s in zip(chars, styles, strict=True)]
        return Strip(segs).simplify()

    def _legend_lines(self, width: int) -> list[list[Segment]]:
        lines: list[list[Segment]] = [[]]
        used = 0
        words = LEGEND_WORDS if width >= 120 else LEGEND_SHORT
        # "Drawing" is listed only while some cells are not drawn yet.
        drawing = (L.PENDING,) if self.frame is not None and self.frame.drawing else ()
        for st in (*L.LEGEND_ORDER, *drawing):
            item = f"{words[st]}  "
            w = 2 + len(item)
            if used + w > width and used:
                lines.append([])
                used = 0
            lines[-1] += [Segment(L.GLYPH[st], STATE_STYLE[st]), Segment(" " + item, _AXIS)]
            used += w
        return lines

    def _build(self, snapshot: Snapshot, frame: L.FrameData, cursor_ns: int | None) -> list[Strip]:
        lw = self.label_width
        by_tid = {la.tid: la for la in snapshot.lanes}
        strips = [self._axis(frame, snapshot.origin_ns, cursor_ns)]
        rows = self.lane_rows()
        visible = self.lines[self.top : self.top + rows]
        for ln in visible:
            if ln.kind == "group":
                model = self.row_models.get(ln.row, "")
                text = f"▾ {ln.row}" + (f"  ({model})" if model else "")
                strips.append(Strip([Segment(text[: self.size.width], _GROUP)]))
                continue
            if ln.kind == "thread":
                la = by_tid.get(ln.tid)
                name = f" {la.comm} {ln.tid}" if la else f" {ln.tid}"
                style = _SELECTED if ln.tid == self.selected_tid else _LABEL
                cells = frame.states.get(ln.tid, np.zeros(frame.ncells, np.uint8))
            else:
                rb = frame.requests.get(ln.tid)
                scale = rb.scale if rb else 1
                name = "   in flight" if ln.sub == 0 else f"   ≥{ln.sub * scale + 1}"
                if ln.sub == 0 and scale > 1:
                    name += f" ×{scale}"
                style = _AXIS
                cells = (
                    rb.lines[ln.sub]
                    if rb and ln.sub < len(rb.lines)
                    else np.zeros(frame.ncells, np.uint8)
                )
            label = Segment(name[:lw].ljust(lw) + " ", style)
            strips.append(Strip([label, *runs(cells)]).simplify())
        while len(strips) < 1 + rows:
            strips.append(Strip.blank(self.size.width))
        if not self.lines:
            msg = "waiting for events..." if not snapshot.finished else "no traced threads"
            strips[1] = Strip([Segment(f" {msg}", _AXIS)])
        for segs in self._legend_lines(self.size.width):
            strips.append(Strip(segs))
        return strips

    def render_line(self, y: int) -> Strip:
        if y < len(self._strips):
            return self._strips[y].crop_extend(0, self.size.width, None)
        return Strip.blank(self.size.width)
