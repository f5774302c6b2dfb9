"""The one-line header: mode, elapsed time, event rate, losses, trace file."""

from __future__ import annotations

from iotrace.tui.fmt import fmt_count
from iotrace.tui.model import Snapshot
from rich.text import Text
from textual.widgets import Static


def elapsed(ns: int) -> str:
    s = max(ns, 0) / 1e9
    m, s = divmod(s, 60)
    return f"{int(m)}:{s:04.1f}"


def header_text(
    snapshot: Snapshot | None,
    *,
    mode: str,
    elapsed_ns: int,
    path: str,
    title: str = "",
    loading: float | None = None,
    filter_text: str = "",
) -> Text:
    """mode: LIVE, PAUSED, REPLAY, PLAYING, ENDED. `loading`: the share of a saved
    trace read so far, while it is read (its figures are then partial)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f" iotrace{(' ' + title) if title else ''} ", "bold reverse")
    badge = {
        "LIVE": ("● LIVE", "bold green"),
        "PAUSED": ("‖ PAUSED (recording goes on)", "bold yellow"),
        "REPLAY": ("▶ REPLAY", "bold cyan"),
        "PLAYING": ("▶ REPLAY playing", "bold cyan"),
        "ENDED": ("■ ENDED", "bold"),
    }.get(mode, (mode, "bold"))
    t.append(f" {badge[0]} ", badge[1])
    if filter_text:
        # The lanes and the calls follow the filter; the scoreboard's figures are
        # the whole rows' (per-row aggregates are not kept per filter).
        t.append(f" filter on: {filter_text} (scoreboard unfiltered) ", "bold black on yellow")
    if loading is not None:
        # A saved trace is read in order: until its end every figure is partial,
        # and the time read so far is not a clock (it is not replaying).
        t.append(f" loading {int(loading * 100)}% ", "bold black on cyan")
        t.append(" figures so far are partial ", "dim")
    else:
        t.append(f" {elapsed(elapsed_ns)} ")
    if snapshot is None:
        t.append(" waiting for the first events...", "dim")
        return t
    if mode in ("LIVE", "PAUSED"):
        t.append(f" {fmt_count(snapshot.events_per_s)} ev/s ")
    t.append(f" {fmt_count(snapshot.events)} events ")
    lost = snapshot.lost_total
    if lost:
        t.append(f" LOST {lost:,} ", "bold white on red")
    else:
        t.append(" lost 0 ", "dim")
    unmatched = sum(snapshot.unmatched.values())
    if unmatched:
        t.append(f" unmatched {unmatched:,} ", "bold yellow")
    evicted = sum(snapshot.evicted.values()) + snapshot.store_evicted
    if evicted:
        t.append(f" evicted {evicted:,} ", "bold yellow")
    if snapshot.damage:
        t.append(f" {snapshot.damage} ", "bold white on red")
    if path:
        t.append(f" {path}", "dim")
    return t


class HeaderBar(Static):
    DEFAULT_CSS = """
    HeaderBar { height: 1; background: $boost; }
    """
