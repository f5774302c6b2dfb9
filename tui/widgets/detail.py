"""The detail pane: the selected row's latency histogram, the selected call
or request in words, and what the row's model means."""

from __future__ import annotations

import numpy as np
from iotrace.tui.explain import MODEL_TEXT
from iotrace.tui.fmt import fmt_ns
from iotrace.tui.model import HIST_PER_OCTAVE, RowSnapshot
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

_BLOCKS = " ▏▎▍▌▋▊▉█"
HIST_WIDTH = 41
"""Columns the histogram text may use (its pane is 42 wide with 1 of padding)."""


def histogram_text(row: RowSnapshot | None, lines: int, width: int) -> Text:
    """Latency histogram, merged into at most `lines - 1` log-spaced bins."""
    t = Text(no_wrap=True, overflow="crop")
    if row is None or not any(row.hist):
        t.append("latency: no requests yet", "dim")
        return t
    hist = np.asarray(row.hist, dtype=np.int64)
    nz = np.flatnonzero(hist)
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    nbins = max(1, lines - 1)
    # Whole octaves per bin, so edges are powers of two.
    octs = max(1, int(np.ceil((hi - lo) / HIST_PER_OCTAVE / nbins)))
    per = octs * HIST_PER_OCTAVE
    lo = (lo // per) * per
    bins = [(b, int(hist[b : b + per].sum())) for b in range(lo, hi, per)]
    total = int(hist.sum())
    t.append(f"latency of {total:,} requests\n", "bold")
    top = max(n for _, n in bins) or 1
    label_w = 17
    bar_w = max(width - label_w - 7, 4)
    for i, (b, n) in enumerate(bins):
        a = 2.0 ** (b / HIST_PER_OCTAVE)
        z = 2.0 ** ((b + per) / HIST_PER_OCTAVE)
        label = f"{fmt_ns(a)}-{fmt_ns(z)}".rjust(label_w - 1) + " "
        frac = n / top * bar_w
        full = int(frac)
        bar = "█" * full + (_BLOCKS[int((frac - full) * 8)] if full < bar_w else "")
        t.append(label, "dim")
        t.append(bar.ljust(bar_w), "cyan")
        t.append(f" {100 * n / total:3.0f}%")
        if i < len(bins) - 1:
            t.append("\n")
    return t


def words_text(row: RowSnapshot | None, call: str, thread: str) -> Text:
    t = Text()
    if thread:
        t.append(f"{thread}: ", "bold")
    t.append(call or "no call selected", "" if call else "dim")
    t.append("\n")
    if row is not None:
        t.append(f"{row.key} · {row.model}", "bold")
        if row.declared_model and row.declared_model != row.model and row.model != "idle":
            t.append(f" (workload says {row.declared_model})", "yellow")
        t.append(f": {row.evidence}\n", "italic")
        t.append(MODEL_TEXT.get(row.model, ""), "dim")
        if row.not_observed:
            t.append(f"\n{row.not_observed:,} completions not observed (never invented)", "yellow")
    return t


class DetailPane(Horizontal):
    DEFAULT_CSS = """
    DetailPane { height: 7; border-top: solid $primary-darken-2; }
    DetailPane > #histogram { width: 42; padding-right: 1; }
    DetailPane > #words { width: 2fr; }
    """

    _shown: tuple[Text | None, Text | None] = (None, None)

    def compose(self) -> ComposeResult:
        yield Static(id="histogram")
        yield Static(id="words")

    def show(self, row: RowSnapshot | None, call: str, thread: str) -> None:
        # Asked every frame; laying text out again is only worth it when it changed.
        lines = max(self.size.height - 1, 2)
        hist, words = histogram_text(row, lines, HIST_WIDTH), words_text(row, call, thread)
        if hist != self._shown[0]:
            self.query_one("#histogram", Static).update(hist)
        if words != self._shown[1]:
            self.query_one("#words", Static).update(words)
        self._shown = (hist, words)
