"""The terminal driver: Textual's Linux driver, surviving a terminal that goes away.

When the terminal closes under the dashboard (a killed tmux session, a dropped
ssh connection), writing to it fails with EIO. Textual's writer thread dies of
that error, its queue of writes fills up, and the app's shutdown then waits for
ever to hand it a last item: iotrace never exits and its probes stay attached
(seen with two `iotrace run`s left an hour after their tmux sessions were
killed). Here writes to a terminal that is gone are dropped instead, so the
writer thread lives and shutdown completes (SIGHUP already asks to stop).
"""

from __future__ import annotations

from typing import IO, Any

from textual.drivers.linux_driver import LinuxDriver


class ForgivingOutput:
    """A text stream whose write and flush become no-ops once the device fails."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.gone = False
        """True once a write or flush failed: the terminal is not there any more."""

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):  # EIO/EPIPE, or a stream closed under us
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self.gone = True

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...
        return getattr(self._stream, name)


class TerminalDriver(LinuxDriver):
    """LinuxDriver writing through ForgivingOutput."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file = ForgivingOutput(self._file)  # type: ignore[assignment,arg-type]
