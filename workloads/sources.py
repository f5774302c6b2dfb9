"""Shared plumbing of the synchronous workloads: which sources (pipe, socket,
file) run and how many reads each does, and one thread per source released
together.

Threads are created during set-up and park on an Event (a futex, invisible
to a syscall tracer that watches reads), so after release no thread start-up
happens inside the measured window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from iotrace.workloads.engine import Context
from iotrace.workloads.options import Options


def source_counts(opts: Options) -> dict[str, int | None]:
    """{role: exact count or None (until the deadline)} for the roles that run.

    With no count option all three run until the deadline; with any, exactly
    the ones given (a count of 0 leaves that source out).
    """
    given = {"pipe": opts.pipe_reads, "socket": opts.socket_reads, "file": opts.file_reads}
    if all(v is None for v in given.values()):
        return {"pipe": None, "socket": None, "file": None}
    return {k: v for k, v in given.items() if v}


class SourceThreads:
    """One thread per source loop; the first failure stops the others and is re-raised.

    A single source runs in the main thread instead (no thread at all, like
    fio's psync job), reporting progress itself through `solo`.
    """

    def __init__(self) -> None:
        self.go = threading.Event()
        self.stop = False
        self.solo = False
        """True when the one loop runs in the main thread and must update progress itself."""
        self._loops: list[tuple[str, Callable[[], None]]] = []
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    def add(self, name: str, loop: Callable[[], None]) -> None:
        self._loops.append((name, loop))

    def start(self) -> None:
        """Create the threads (parked until run()); call at the end of set-up."""
        if len(self._loops) == 1:
            self.solo = True
            return
        for name, loop in self._loops:
            t = threading.Thread(target=self._body, args=(loop,), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def _body(self, loop: Callable[[], None]) -> None:
        self.go.wait()
        if self.stop:
            return
        try:
            loop()
        except BaseException as exc:  # handed to the main thread, re-raised there
            if self._error is None:
                self._error = exc
            self.stop = True

    def run(self, ctx: Context, ops: Callable[[], int]) -> None:
        if self.solo:
            try:
                self._loops[0][1]()
            finally:
                self.stop = True
            return
        self.go.set()
        try:
            for t in self._threads:
                while t.is_alive():
                    t.join(0.2)
                    ctx.progress.update(time.monotonic(), ctx.start, ops())
        finally:
            self.stop = True
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self.stop = True
        self.go.set()
