"""The dashboard app: a drain thread feeds the aggregator, the UI redraws on a timer.

`make_app` builds it (the CLI and the snapshot tests use the same factory);
`run_dashboard` runs it in the terminal until the user quits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from iotrace.tui.lanes import BasePainter
from iotrace.tui.messages import SnapshotTaken, SourceEnded, SourceFailed
from iotrace.tui.model import DEFAULT_MAX_EVENTS, Aggregator
from iotrace.tui.screens.dashboard import DashboardScreen
from textual.app import App
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.driver import Driver

from iotrace.errors import IotraceError
from iotrace.source import TraceSource

REDRAW_HZ = 12
SNAPSHOT_EVERY_S = 0.2
READ_TIMEOUT_S = 0.1
PAINT_STEP_S = 0.02
"""After storing a batch the drain paints its rows on the base grid, then older rows
left unpainted for at most about this long (frames paint what they need meanwhile)."""


class DashboardApp(App[None]):
    CSS_PATH = "iotrace.tcss"
    TITLE = "iotrace"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        # Textual only says "press q"; here Ctrl-C does what it does everywhere
        # else in iotrace: stop (a live run stops its probes and saves the trace).
        Binding("ctrl+c", "quit", show=False, priority=True),
    ]

    def get_driver_class(self) -> type[Driver]:
        """Textual's choice, except its Linux driver becomes one that survives the
        terminal going away (tui/terminal.py)."""
        from iotrace.tui.terminal import TerminalDriver
        from textual.drivers.linux_driver import LinuxDriver

        chosen = super().get_driver_class()
        return TerminalDriver if chosen is LinuxDriver else chosen

    def __init__(
        self,
        source: TraceSource,
        *,
        clock: Callable[[], int] | None = None,
        title: str = "",
        max_events: int = DEFAULT_MAX_EVENTS,
        redraw_hz: float = REDRAW_HZ,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock: Callable[[], int] = clock or time.monotonic_ns
        self.title_text = title
        self.redraw_hz = redraw_hz
        self.aggregator = Aggregator(source.meta, live=source.live, max_events=max_events)
        self.source_done = threading.Event()
        """Set once the source returned None and the final snapshot was posted."""
        self.painted = threading.Event()
        """Set once, after the source ended, every stored row was painted on the base grid."""
        self.painter = BasePainter(self.aggregator.store)
        self.drawable_rows = 0
        """Rows the drain has stored and painted (`Store.appended` after its paint step):
        frames draw these, so rows it is still painting never show as "drawing"."""
        self.error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.snapshots_posted = 0
        self.on_exit: Callable[[], None] | None = None
        """Called once, as soon as the app is asked to exit (before shutting down)."""

    def exit(self, *args: Any, **kwargs: Any) -> None:
        hook, self.on_exit = self.on_exit, None
        if hook is not None:
            with contextlib.suppress(Exception):
                hook()
        super().exit(*args, **kwargs)

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    @property
    def dashboard(self) -> DashboardScreen:
        return self.get_default_screen_instance()

    def get_default_screen_instance(self) -> DashboardScreen:
        screen = self.screen_stack[0]
        assert isinstance(screen, DashboardScreen)
        return screen

    def _live_dashboard(self) -> DashboardScreen | None:
        """The main screen, or None while the app is starting or shutting down."""
        if not self.screen_stack or not isinstance(self.screen_stack[0], DashboardScreen):
            return None
        return self.screen_stack[0]

    def on_mount(self) -> None:
        self._thread = threading.Thread(
            target=self._drain, name="iotrace-dashboard-drain", daemon=True
        )
        self._thread.start()
        self.set_interval(1 / self.redraw_hz, self._tick)
        # A full collection walks every tracked object (modules, classes, Textual:
        # ~67k, 12-37 ms here) and lands inside a frame; what exists by now lives
        # as long as the app, so leave it out of collections until the app ends.
        gc.freeze()

    def _tick(self) -> None:
        dash = self._live_dashboard()
        # NoMatches: the screen is being torn down (quitting).
        with contextlib.suppress(NoMatches):
            if dash is not None:
                dash.tick()

    def _post_snapshot(self) -> None:
        self.snapshots_posted += 1
        self.post_message(SnapshotTaken(self.aggregator.snapshot()))

    def _drain(self) -> None:
        """Read the source until it ends; aggregate and paint the base grid here,
        off the UI thread. Never waits for the UI: snapshots replace each other in
        its queue."""
        self._read_source()
        try:
            # Whatever the source delivered faster than it could be painted.
            while not self._stop.is_set() and not self.painter.step(PAINT_STEP_S):
                pass
        except Exception as exc:  # a bug must reach the user as a notice
            self.post_message(SourceFailed(f"painting the timeline: {type(exc).__name__}: {exc}"))
        finally:
            self.painted.set()

    def _read_source(self) -> None:
        agg = self.aggregator
        last = 0.0
        try:
            while not self._stop.is_set():
                batch = self.source.read(READ_TIMEOUT_S)
                if batch is None:
                    break
                if self.source.live and not batch.now_ns:
                    # An idle live source still moves time on (CLOCK_MONOTONIC, as the probes).
                    batch = dataclasses.replace(batch, now_ns=self.clock())
                agg.ingest(batch)
                self.painter.step(PAINT_STEP_S, rows=len(batch.events))
                self.drawable_rows = agg.store.appended
                now = time.monotonic()
                if now - last >= SNAPSHOT_EVERY_S:
                    last = now
                    self._post_snapshot()
            agg.damage = str(getattr(self.source, "damage", "") or "")
            agg.finished = True
            self._post_snapshot()
            self.post_message(SourceEnded())
        except IotraceError as exc:
            self.post_message(SourceFailed(str(exc)))
        except Exception as exc:  # a bug in a source must not kill the UI silently
            self.post_message(SourceFailed(f"{type(exc).__name__}: {exc}"))
        finally:
            self.source_done.set()

    def on_snapshot_taken(self, message: SnapshotTaken) -> None:
        dash = self._live_dashboard()
        if dash is not None:
            dash.take(message.snapshot)

    def on_source_ended(self, message: SourceEnded) -> None:
        dash = self._live_dashboard()
        if dash is not None:
            dash.source_ended()

    def on_source_failed(self, message: SourceFailed) -> None:
        self.error = message.error
        self.notify(message.error, title="the event source failed", severity="error", timeout=30)
        dash = self._live_dashboard()
        if dash is not None:
            dash.source_ended()

    def on_unmount(self) -> None:
        gc.unfreeze()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * READ_TIMEOUT_S + 0.5)


def make_app(
    source: TraceSource, *, clock: Callable[[], int] | None = None, title: str = "", **kw: Any
) -> DashboardApp:
    """The dashboard on `source`; `clock` (monotonic ns) is fixed in tests."""
    return DashboardApp(source, clock=clock, title=title, **kw)


def run_dashboard(source: TraceSource, *, title: str = "") -> None:
    """Run the dashboard in this terminal until the user quits (q).

    The caller stops the source, closes the trace and prints its path."""
    app = make_app(source, title=title)
    app.run()
    if app.error:
        raise IotraceError(app.error)
