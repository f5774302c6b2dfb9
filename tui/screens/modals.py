"""Modal screens: help (every key), details of the selection, and the filter prompt."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

KEYS: tuple[tuple[str, str], ...] = (
    ("space", "pause / resume the view (recording goes on); in a replay: play / stop"),
    ("+ / -", "zoom the timeline in / out"),
    ("left / right", "pan back / forward in time (stops following)"),
    ("f", "follow live (a replay: jump to the end)"),
    ("a", "show the whole recorded range"),
    ("home / end", "jump to the start / end of the trace"),
    ("up / down", "select a thread (timeline) or a workload (scoreboard)"),
    ("tab", "move between the scoreboard and the timeline"),
    ("enter", "details of the selected thread: calls in words, histogram, model"),
    ("/", "filter: words match a process, thread (pid/tid), fd (fd:5) or syscall"),
    ("?", "this help"),
    ("q", "quit (a live run stops its probes and saves the trace)"),
)


def help_text() -> Text:
    t = Text()
    t.append("Keys\n\n", "bold")
    for key, what in KEYS:
        t.append(f"  {key:<13}", "bold cyan")
        t.append(f"{what}\n")
    t.append(
        "\nLanes: one per traced thread, grouped by workload. Each cell shows the state\n"
        "that filled most of its time; colour and glyph both carry it (NO_COLOR works).\n"
        "Async requests are drawn under their thread as stacked in-flight bars.\n"
        "A lost range is marked 'lost', never drawn as idle.\n\n",
        "dim",
    )
    t.append("Press any key to close.", "italic")
    return t


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; padding: 0 1; background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(help_text(), id="help-text")

    def on_key(self, event: object) -> None:
        self.dismiss()


class DetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "close", "close")]
    DEFAULT_CSS = """
    DetailScreen { align: center middle; }
    DetailScreen > VerticalScroll { width: 95%; height: 90%; border: round $primary;
        padding: 0 1; background: $surface; }
    """

    def __init__(self, body: Text) -> None:
        super().__init__()
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.body, id="detail-body")

    def action_close(self) -> None:
        self.dismiss()


class FilterScreen(ModalScreen[str | None]):
    """Asks for the filter; returns the text, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]
    DEFAULT_CSS = """
    FilterScreen { align: center bottom; }
    FilterScreen > Vertical { height: auto; width: 100%; background: $surface;
        border-top: solid $primary; }
    """

    def __init__(self, current: str) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                "filter: process/workload name, pid or tid, fd:N, syscall name "
                "(empty clears; esc cancels)",
                classes="hint",
            )
            yield Input(
                value=self.current, placeholder="e.g. fio  1234  fd:5  pread64", id="filter-input"
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)
