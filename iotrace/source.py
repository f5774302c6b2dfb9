"""Where a consumer (dashboard, `--no-tui` summary) gets events from.

Implementations of the protocol: the live tracer
(`iotrace.tracer.live.LiveSource`), a trace file being written (`FollowSource`,
what the dashboard of `iotrace run`/`trace` reads in its own process), a saved
trace (`ReplaySource`, `iotrace view`) and the fakes the TUI tests use. The two
file sources read the same way, chunk by chunk with session's chunk reader; they
differ only in what the end of the file means. Consumers call `read()` from a
background thread; it blocks for at most `timeout` seconds. Nothing here imports bcc.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Protocol

import numpy as np

from iotrace import session
from iotrace.events import has_end_times
from iotrace.session import TaskInfo


@dataclass(frozen=True)
class Batch:
    """What a source produced since the previous read."""

    events: np.ndarray
    """Records with dtype `session.EVENT_DTYPE`, in drain order (not sorted)."""
    tasks: list[TaskInfo] = field(default_factory=list)
    """Tasks seen for the first time in this batch."""
    stats: dict[str, Any] = field(default_factory=dict)
    """Cumulative counters (lost, unmatched, evicted) as of this batch; {} if unchanged."""
    now_ns: int = 0
    """CLOCK_MONOTONIC time the batch was cut (for a replay: the last event's time)."""


class TraceSource(Protocol):
    """A stream of batches; `read` returns None once the source has finished."""

    meta: dict[str, Any]
    path: Path | None
    """The trace file being written (live) or read (replay)."""
    live: bool

    def read(self, timeout: float) -> Batch | None: ...

    def stop(self) -> None:
        """Ask the source to finish; later reads drain what is left, then return None."""


CUT_SHORT: Final = "cut short: the writer stopped before closing the file"
_WAIT: Final = object()
"""ChunkReader.next: the file ends where the writer has not finished writing yet."""


class ChunkReader:
    """A trace file's chunks, decoded one at a time from where the last one ended.

    `next(growing=True)` treats the end of the file, or a last chunk that is
    short or fails its checksum, as a chunk still being written: the position
    stays at its start and `_WAIT` is returned, to try again later. The writer
    writes each chunk with one write() and never rewrites one, so only the
    tail can be unfinished; once the writer is known to be done, `growing=False`
    reports such a tail as damage, as for any saved file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        f, self.version, self.meta, header_damage = session.open_trace(self.path)
        self._f: IO[bytes] | None = f
        self.header_damage = header_damage
        self.size = self.path.stat().st_size if f is not None else 0
        """Bytes in the file when opened, and read so far: how far a replay has loaded."""
        self.offset = 0
        """What is wrong with the file header (no CRC covers it); the chunks are read on."""
        self.skipped: list[str] = []
        """Tags of chunks of a newer minor version that were skipped."""

    def next(self, *, growing: bool = False) -> tuple[bytes, Any] | object | None:
        """(tag, value) of the next known chunk (b"DMG!", reason for a damaged one,
        after which the reader is closed), None at the end of a finished file,
        or `_WAIT` (only when `growing`)."""
        while self._f is not None:
            pos = self._f.tell()
            item = session.read_chunk(self._f, self.version)
            self.offset = self._f.tell()
            if item is not None and item[0] == b"SKIP":
                self.skipped.append(str(item[1]))
                continue
            if item is not None and item[0] != b"DMG!":
                return item
            if growing:
                self._f.seek(pos)
                return _WAIT
            self.close()
            return item
        return None

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class _FileSource:
    """Batches from a ChunkReader: one per EVTS chunk, carrying the tasks and
    counters read since the previous one."""

    live = False

    def __init__(self, path: Path | str) -> None:
        self._reader = ChunkReader(path)
        self.path: Path | None = self._reader.path
        self.meta = self._reader.meta
        self.version = self._reader.version
        self.damage = self._reader.header_damage
        """Why reading stopped before the footer, or what is wrong with the header
        ("" for a whole, sound file)."""
        self.complete = False
        """True once the footer was read."""
        self._stopped = False
        self._done = False

    def _growing(self) -> bool:
        return False

    def _idle(self, timeout: float) -> bool:
        """Wait up to `timeout` for the file to grow; False: return an idle batch now."""
        return False

    def _now_ns(self, events_end_ns: int) -> int:
        return events_end_ns

    def read(self, timeout: float) -> Batch | None:
        if self._stopped or self._done:
            return None
        deadline = time.monotonic() + timeout
        tasks: list[TaskInfo] = []
        stats: dict[str, Any] = {}
        while True:
            item = self._reader.next(growing=self._growing())
            if item is _WAIT:
                if not tasks and not stats and self._idle(deadline - time.monotonic()):
                    continue
                return Batch(events=session.empty_events(), tasks=tasks, stats=stats,
                             now_ns=self._now_ns(0))  # fmt: skip
            if item is None:
                break
            assert isinstance(item, tuple)
            tag, value = item
            if tag == b"EVTS":
                ends = value["end_ns"][has_end_times(value["kind"])]
                end = int(ends.max()) if len(ends) else 0
                return Batch(events=value, tasks=tasks, stats=stats, now_ns=self._now_ns(end))
            if tag == b"PROC":
                tasks.extend(value)
            elif tag == b"STAT":
                stats = value
            elif tag == b"END.":
                if isinstance(value.get("stats"), dict):
                    stats = value["stats"]
                self.complete = True
                self._reader.close()  # nothing is written after the footer
                break
            elif tag == b"DMG!":
                self.damage = str(value)
                break
        self._done = True
        if not self.complete and not self.damage:
            self.damage = CUT_SHORT
        if tasks or stats:
            return Batch(events=session.empty_events(), tasks=tasks, stats=stats,
                         now_ns=self._now_ns(0))  # fmt: skip
        return None

    def stop(self) -> None:
        self._stopped = True
        self._reader.close()


class ReplaySource(_FileSource):
    """A saved trace read chunk by chunk (for `iotrace view`)."""

    live = False

    def progress(self) -> float:
        """The share of the file read so far (1.0 once reading ended)."""
        if self._done or self._reader.size <= 0:
            return 1.0
        return min(self._reader.offset / self._reader.size, 1.0)


FOLLOW_POLL_S: Final = 0.05
"""How often a followed file is looked at for new chunks (the recorder writes
records every 0.25 s, counters every second)."""
FOLLOW_LAG_NS: Final = 500_000_000
"""How far behind the clock the file is taken to be complete (a quarter of a
second of records held before writing, plus the write and the poll)."""


def pipe_closed(fd: int) -> Callable[[], bool]:
    """A `recording_ended` test for FollowSource: True once the other end of the
    pipe `fd` is closed, which the recorder does when it has finished the trace
    and the kernel does when the recorder dies. Nothing is ever written to it,
    so the recorder can never block on it."""

    def ended() -> bool:
        try:
            return bool(select.select([fd], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    return ended


class FollowSource(_FileSource):
    """A trace file as it is being written, read until its footer (`END.`).

    At the end of the file, or at a last chunk not yet whole, it waits and
    looks again instead of reporting damage; once `recording_ended()` is true
    (the recorder finished or died) what is on disk is read to its end, and a
    file without a footer is then reported as cut short. The dashboard of a
    recording reads this in its own process, so drawing frames never takes
    time from the drain: a slow dashboard falls behind the file, and catches
    up, but the recorder never waits for it."""

    live = True

    def __init__(
        self,
        path: Path | str,
        *,
        recording_ended: Callable[[], bool] = lambda: False,
        clock: Callable[[], int] = time.monotonic_ns,
        poll_s: float = FOLLOW_POLL_S,
    ) -> None:
        super().__init__(path)
        self._recording_ended = recording_ended
        self._ended = False
        self._clock = clock
        self._poll_s = poll_s
        self._wake = threading.Event()
        self._last_end_ns = 0

    def _growing(self) -> bool:
        if not self._ended and self._recording_ended():
            # From now on the file only has to be read to its end; one more look
            # is still needed for chunks written just before the recorder ended.
            self._ended = True
        return not self._ended

    def _idle(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        self._wake.wait(min(self._poll_s, timeout))
        return True

    def _now_ns(self, events_end_ns: int) -> int:
        # What is on disk covers up to about FOLLOW_LAG_NS ago (the records'
        # clock is CLOCK_MONOTONIC, the same in every process).
        self._last_end_ns = max(self._last_end_ns, events_end_ns)
        if self._ended:
            return self._last_end_ns
        return max(self._last_end_ns, self._clock() - FOLLOW_LAG_NS)

    def stop(self) -> None:
        super().stop()
        self._wake.set()
