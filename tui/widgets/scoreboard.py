"""The scoreboard: one row per workload (or process), updated in place.

Rows are diffed against the previous snapshot (`update_cell` / `add_row` /
`remove_row`), never rebuilt, so the cursor and scroll position survive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from iotrace.tui import lanes as L
from iotrace.tui.fmt import fmt_count, fmt_ns
from iotrace.tui.model import RowSnapshot
from iotrace.tui.widgets.timeline import STATE_STYLE
from rich.text import Text
from textual.widgets import DataTable

COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("row", "workload", 16),
    ("model", "model", 17),
    ("api", "API", 8),
    ("iops", "IOPS", 6),
    ("p50", "p50", 7),
    ("p99", "p99", 7),
    ("sys", "sys/req", 7),
    ("cpu", "CPU/req", 7),
    ("time", "time: cpu blk mux wait run", 26),
    ("eagain", "EAGAIN/req", 10),
    ("depth", "depth", 5),
)
NARROW_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("row", "workload", 16),
    ("model", "model", 17),
    ("iops", "IOPS", 6),
    ("p50", "p50", 7),
    ("sys", "sys/req", 7),
    ("eagain", "EAG/req", 7),
    ("depth", "depth", 5),
)
"""Under 120 columns: what tells the models apart (the rest is in `enter` details)."""
WIDE_AT = 120
BAR_WIDTH = 24
_BAR_PARTS = (
    ("cpu", L.SYS),
    ("blocked", L.BLOCK),
    ("mux", L.MUX),
    ("reap", L.REAP),
    ("runq", L.RUNQ),
    ("sleep", L.SLEEP),
)


def time_bar(shares: Mapping[str, float], width: int = BAR_WIDTH) -> Text:
    """Where the row's threads spent their time, as glyph runs (readable without colour)."""
    text = Text()
    if not shares:
        return Text("-")
    # Largest-remainder rounding so the bar is always `width` cells.
    raw = [(name, st, shares.get(name, 0.0) * width) for name, st in _BAR_PARTS]
    cells = [int(r) for _, _, r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i][2] - cells[i], reverse=True)
    for i in order[: max(width - sum(cells), 0)]:
        cells[i] += 1
    for (_name, st, _), n in zip(raw, cells, strict=True):
        if n:
            glyph = L.GLYPH[L.USER] if st == L.SYS else L.GLYPH[st]
            text.append(glyph * n, STATE_STYLE[L.USER] if st == L.SYS else STATE_STYLE[st])
    return text


def cells_for(row: RowSnapshot) -> dict[str, str | Text]:
    has = row.requests > 0
    model = row.model
    if row.declared_model and row.model not in (row.declared_model, "idle"):
        model = f"{row.model}!"
    return {
        # Text, not str: DataTable reads a str as markup, and a process named
        # "[/]" (any bytes are a valid name) would crash the dashboard.
        "row": Text(row.key),
        "model": model,
        "api": row.api,
        "iops": fmt_count(row.iops) if has and math.isfinite(row.iops) else "-",
        "p50": fmt_ns(row.p50_ns) if has else "-",
        "p99": fmt_ns(row.p99_ns) if has else "-",
        "sys": f"{row.syscalls_per_req:.1f}" if has else "-",
        "cpu": fmt_ns(row.cpu_per_req_ns) if has else "-",
        "time": time_bar(row.shares),
        "eagain": f"{row.eagain_per_req:.1f}" if has else "-",
        "depth": f"{row.depth:.1f}" if has else "-",
    }


class Scoreboard(DataTable[str | Text]):
    """One row per workload; the cursor row is the selected workload."""

    DEFAULT_CSS = """
    Scoreboard { height: auto; max-height: 8; }
    """

    def __init__(self, **kw: object) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kw)  # type: ignore[arg-type]
        self._shown: dict[str, dict[str, str | Text]] = {}
        self.wide = True
        self._rows: tuple[RowSnapshot, ...] = ()

    @property
    def column_set(self) -> tuple[tuple[str, str, int], ...]:
        return COLUMNS if self.wide else NARROW_COLUMNS

    def _ensure_columns(self) -> None:
        if not self.columns:
            for key, label, width in self.column_set:
                self.add_column(label, key=key, width=width)

    def set_width(self, width: int) -> None:
        """Switch between the wide and the narrow column set (rows are re-added)."""
        wide = width >= WIDE_AT
        if wide == self.wide and self.columns:
            return
        cursor = self.selected_row()
        self.wide = wide
        self.clear(columns=True)
        self._shown.clear()
        self._ensure_columns()
        self.update_rows(self._rows)
        if cursor is not None:
            self.select_row(cursor)

    def on_mount(self) -> None:
        self._ensure_columns()

    def update_rows(self, rows: tuple[RowSnapshot, ...]) -> None:
        """Diff `rows` against what is shown: cells change in place."""
        self._ensure_columns()
        self._rows = rows
        wanted = {r.key: cells_for(r) for r in rows}
        for key in [k for k in self._shown if k not in wanted]:
            self.remove_row(key)
            del self._shown[key]
        for key, cells in wanted.items():
            old = self._shown.get(key)
            if old is None:
                self.add_row(*(cells[c] for c, _, _ in self.column_set), key=key)
            else:
                for col, _, _ in self.column_set:
                    value = cells[col]
                    if str(old.get(col)) != str(value) or (
                        isinstance(value, Text)
                        and value.spans != getattr(old.get(col), "spans", None)
                    ):
                        self.update_cell(key, col, value)
            self._shown[key] = cells

    def row_keys(self) -> list[str]:
        return [str(r.key.value) for r in self.ordered_rows]

    def select_row(self, key: str) -> None:
        keys = self.row_keys()
        if key in keys and self.cursor_row != keys.index(key):
            self.move_cursor(row=keys.index(key))

    def selected_row(self) -> str | None:
        keys = self.row_keys()
        if 0 <= self.cursor_row < len(keys):
            return keys[self.cursor_row]
        return None
