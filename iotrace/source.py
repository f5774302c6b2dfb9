"""Where a consumer (dashboard, `--no-tui` summary) gets events from.

Three implementations share this protocol: the live tracer
(`iotrace.tracer.live.LiveSource`), a saved trace (`ReplaySource`) and the
fakes the TUI tests use. Consumers call `read()` from a background thread;
it blocks for at most `timeout` seconds. Nothing here imports bcc.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from iotrace import session
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


class ReplaySource:
    """A saved trace read chunk by chunk (for `iotrace view`)."""

    live = False

    def __init__(self, path: Path | str) -> None:
        self.path: Path | None = Path(path)
        version, self.meta, self._chunks = session.iter_chunks(Path(path))
        self.version = version
        self.damage = ""
        self._stopped = False
        self._iter: Iterator[tuple[bytes, Any]] = self._chunks

    def read(self, timeout: float) -> Batch | None:
        if self._stopped:
            return None
        tasks: list[TaskInfo] = []
        stats: dict[str, Any] = {}
        for tag, value in self._iter:
            if tag == b"EVTS":
                end = int(value["end_ns"].max()) if len(value) else 0
                return Batch(events=value, tasks=tasks, stats=stats, now_ns=end)
            if tag == b"PROC":
                tasks.extend(value)
            elif tag == b"STAT":
                stats = value
            elif tag == b"END.":
                if isinstance(value.get("stats"), dict):
                    stats = value["stats"]
            elif tag == b"DMG!":
                self.damage = str(value)
        self._stopped = True
        if tasks or stats:
            return Batch(events=session.empty_events(), tasks=tasks, stats=stats)
        return None

    def stop(self) -> None:
        self._stopped = True
