"""The dashboard of a recording, in its own process.

`iotrace run`/`trace` keep the probes, the ring drain and the trace writer in
the root process; the dashboard is a child (`python -m iotrace.tui.follow`),
run as the user behind sudo, that follows the trace file as it is written
(`FollowSource`). Drawing a frame then never takes the GIL from the drain, and
the recorder never waits for the dashboard: they share only the file, and a
pipe the recorder never writes to and closes when the trace is finished (or
the kernel closes when the recorder dies).

The recorder side is `DashboardProcess`; this module imports only the standard
library at its top, so the recorder never loads Textual.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iotrace.command import Credentials
from iotrace.source import pipe_closed

STARTED = b"\x01"
"""The one byte ever written to the ended pipe: the trace file is there to follow."""
EXIT_GRACE_S = 1.0
"""How long the dashboard gets to leave the terminal tidy once asked to go."""
_TERMINAL_RESET = (
    "\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l\x1b[?2004l\x1b[?1049l\x1b[?25h"
)
"""Mouse reporting and bracketed paste off, main screen back, cursor shown:
what Textual leaves on when it is killed before it can restore the terminal."""


class DashboardProcess:
    """The dashboard child, seen from the recorder."""

    def __init__(self, trace: Path, run_as: Credentials | None) -> None:
        """Started before the probes are compiled: Python and Textual take seconds to
        start on a loaded machine, and meanwhile the child waits, drawing nothing,
        until `recording_started()` (the file may still hold an older trace before)."""
        self._tty_attrs: Any = None
        with contextlib.suppress(termios.error, OSError, ValueError):
            self._tty_attrs = termios.tcgetattr(sys.stdin.fileno())
        ended_r, self._ended_w = os.pipe()
        self._going_r, going_w = os.pipe()
        cmd = [sys.executable, "-m", "iotrace.tui.follow", str(trace),
               "--ended-fd", str(ended_r), "--going-fd", str(going_w)]  # fmt: skip
        kw: dict[str, Any] = {}
        if run_as is not None:
            env = dict(os.environ, HOME=run_as.home, USER=run_as.name, LOGNAME=run_as.name)
            kw = {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups),
                  "env": env}  # fmt: skip
        try:
            self._proc = subprocess.Popen(cmd, pass_fds=(ended_r, going_w), **kw)
        finally:
            os.close(ended_r)
            os.close(going_w)
        self._going = pipe_closed(self._going_r)
        self._started = False
        self._closed = False

    @property
    def pid(self) -> int:
        return self._proc.pid

    def going(self) -> bool:
        """True once the user quit the dashboard (q, Ctrl-C) or it died: it says so
        first thing, before Textual's shutdown (a second or two on a loaded machine),
        so the recording stops at once, while the dashboard is still leaving."""
        return self._going() or self._proc.poll() is not None

    def recording_started(self) -> None:
        """The trace file is created and its metadata written: the dashboard opens it.
        One byte in an empty pipe: this never blocks."""
        if self._ended_w >= 0 and not self._started:
            self._started = True
            with contextlib.suppress(OSError):  # the dashboard is gone: going() says so
                os.write(self._ended_w, STARTED)

    def recording_ended(self) -> None:
        """The trace is finished: the dashboard reads it to its end and shows ENDED."""
        if self._ended_w >= 0:
            os.close(self._ended_w)
            self._ended_w = -1

    def quit(self) -> None:
        """Ask the dashboard to go (SIGTERM), without waiting; close() waits."""
        with contextlib.suppress(ProcessLookupError):
            if self._proc.poll() is None:
                self._proc.terminate()

    def close(self) -> None:
        """Wait for the dashboard to be gone and leave the terminal usable. One that
        is not going by itself is asked to (SIGTERM) and killed if it still has not
        after EXIT_GRACE_S."""
        if self._closed:
            return
        self.recording_ended()
        if not self.going():
            self.quit()
        for last in (False, True):
            try:
                self._proc.wait(EXIT_GRACE_S)
                break
            except subprocess.TimeoutExpired:
                if last:
                    self._proc.kill()
                    self._proc.wait()
                else:
                    self.quit()
        if self._going_r >= 0:
            os.close(self._going_r)
            self._going_r = -1
        self._closed = True
        if self._started and self._proc.returncode != 0:
            # Only a dashboard that had the trace to show took the terminal over.
            self._restore_terminal()

    def _restore_terminal(self) -> None:
        # Nothing to restore on a terminal that has gone (EIO): say nothing.
        with contextlib.suppress(OSError, ValueError, termios.error):
            if self._tty_attrs is not None:
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._tty_attrs)
            os.write(sys.stdout.fileno(), _TERMINAL_RESET.encode())


def _quit_on_signal(app: Any) -> None:
    """SIGTERM/SIGHUP/SIGINT: quit the app from a thread (the handler runs on the
    app's own thread, which call_from_thread must not be called from), and leave
    for good after EXIT_GRACE_S whatever Textual is doing (on a terminal that
    has gone away its input thread may never return)."""
    asked = threading.Event()
    signum = [0]

    def handler(sig: int, _frame: object) -> None:
        signum[0] = signum[0] or sig
        asked.set()

    def quit_app() -> None:
        asked.wait()
        fuse = threading.Timer(EXIT_GRACE_S, os._exit, (128 + signum[0],))
        fuse.daemon = True
        fuse.start()
        with contextlib.suppress(Exception):  # not running yet, or already gone
            app.call_from_thread(app.exit)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, handler)
    threading.Thread(target=quit_app, name="iotrace-quit", daemon=True).start()


def _title(meta: dict[str, Any]) -> str:
    targets = meta.get("targets")
    if not isinstance(targets, list):
        return ""
    return " ".join(str(t.get("label", "")) for t in targets if isinstance(t, dict))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="iotrace-dashboard")
    ap.add_argument("trace")
    ap.add_argument("--title", default="", help="default: the targets' labels")
    ap.add_argument("--ended-fd", type=int, default=-1)
    ap.add_argument("--going-fd", type=int, default=-1)
    args = ap.parse_args(argv)
    # A Ctrl-C typed before Textual owns the terminal reaches the recorder too,
    # which then ends the recording and closes this process.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The slow part of starting, done while the recorder compiles its probes.
    from iotrace.tui.app import make_app

    from iotrace.errors import IotraceError
    from iotrace.source import FollowSource

    ended: Callable[[], bool] = lambda: False  # noqa: E731
    if args.ended_fd >= 0:
        # Blocks until the recorder has created the trace (STARTED), or has ended
        # without one (EOF: it says why itself) or died.
        if os.read(args.ended_fd, 1) != STARTED:
            return 0
        ended = pipe_closed(args.ended_fd)
    try:
        source = FollowSource(Path(args.trace), recording_ended=ended)
    except IotraceError as exc:
        print(f"iotrace: dashboard: {exc}", file=sys.stderr)
        return 1
    app = make_app(source, title=args.title or _title(source.meta))
    if args.going_fd >= 0:
        # Closed as the app starts to exit: the recorder stops recording at once.
        app.on_exit = functools.partial(os.close, args.going_fd)
    _quit_on_signal(app)
    app.run()
    if app.error:
        print(f"iotrace: dashboard: {app.error}", file=sys.stderr)
        return 1
    return 0


def _exit(code: int) -> None:
    # Not through interpreter shutdown: it joins Textual's input thread, which
    # can spin for ever in select() on a terminal that has gone away.
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
