"""The live source: drains the ring buffer on a background thread, writes the
trace file as batches arrive and hands batches to a consumer (dashboard).

The drain never waits for the consumer: batches queue up and are merged
when the consumer is slow, so a slow frame costs frames, never events.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from iotrace.tracer.bcc_source import BpfProgram, Counters
from iotrace.tracer.ringbuf import RingReader
from iotrace.tracer.tasks import TaskRegistry

from iotrace.events import PROBE_NAMES, SYSCALL_BY_NAME, SYSCALL_BY_OP, Flag, Kind
from iotrace.session import EVENT_DTYPE, TraceWriter, empty_events
from iotrace.source import Batch

DRAIN_INTERVAL_S = 0.010
"""Records are submitted without wakeups; this is how often the ring is read."""
COUNTER_INTERVAL_S = 0.2
WRITE_INTERVAL_S = 0.25
"""At most this much recording sits in memory before it reaches the file."""
STATS_INTERVAL_S = 1.0


def _probe_id(name: str) -> int:
    if name in SYSCALL_BY_NAME:
        return SYSCALL_BY_NAME[name].op
    for pid, pname in PROBE_NAMES.items():
        if pname == name:
            return pid
    return 0


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


WRITES_QUEUED = 16
"""Writes the file thread may lag behind by (~4 s of records): past that the drain
waits, the ring fills and what is dropped is counted, as for any slow drain."""


BUFFER_RECORDS = 1 << 17
"""Records per drain buffer (13.6 MB): the unit handed to the file thread."""
POOL_KEEP = 8


class _Buffers:
    """Record arrays reused from one write to the next. A fresh array costs a page
    fault per 4 KiB on first touch (here ~2 ms per MB: more than copying into it),
    so the drain copies out of the ring only into memory it has used before; the
    file thread gives each array back once its records are compressed."""

    def __init__(self, records: int = BUFFER_RECORDS, keep: int = POOL_KEEP) -> None:
        self.records = records
        self._keep = keep
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.made = 0

    def take(self) -> np.ndarray:
        with self._lock:
            if self._free:
                return self._free.pop()
        self.made += 1
        return np.zeros(self.records, dtype=EVENT_DTYPE)

    def give(self, arr: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(arr)


class _FileWrites:
    """The trace file's writes, done in order on their own thread.

    Compressing a quarter of a second of records takes tens of milliseconds; done
    on the drain thread it paused draining, and a storm of 1.5 M events/s filled
    the ring in that pause (1.6% lost on a quiet machine). Here the drain only
    hands batches over."""

    def __init__(self, writer: TraceWriter) -> None:
        self._writer = writer
        self._queue: queue.Queue[tuple[str, Any, Callable[[], None] | None] | None] = queue.Queue(
            WRITES_QUEUED
        )
        self.cpu_s = 0.0
        self.error = ""
        self._thread = threading.Thread(target=self._run, name="iotrace-writer", daemon=True)
        self._thread.start()

    def put(self, method: str, value: Any, done: Callable[[], None] | None = None) -> None:
        """Queue writer.<method>(value): write_events, write_tasks or write_stats;
        `done` runs once it is written (or skipped)."""
        self._queue.put((method, value, done))

    def close(self) -> None:
        """Every queued write done, the thread gone."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            method, value, done = item
            cpu0 = time.thread_time()
            try:
                if not (self.error or self._writer.error):  # else the recorder says why
                    getattr(self._writer, method)(value)
            except Exception as exc:  # surfaced through LiveSource.error
                self.error = f"writing the trace failed: {exc!r}"
            finally:
                if done is not None:
                    done()
            self.cpu_s += time.thread_time() - cpu0


class LiveSource:
    """TraceSource over a loaded BpfProgram."""

    live = True

    def __init__(
        self,
        prog: BpfProgram,
        writer: TraceWriter,
        meta: dict[str, Any],
        registry: TaskRegistry,
        *,
        consumer: bool = True,
        drain_interval_s: float = DRAIN_INTERVAL_S,
    ) -> None:
        self.drain_interval_s = drain_interval_s
        self.meta = meta
        self.path: Path | None = writer.path
        self._prog = prog
        self._writer = writer
        self._reader = RingReader(prog.ringbuf_fd, prog.ringbuf_bytes)
        self.registry = registry
        self._consumer = consumer
        self._cond = threading.Condition()
        self._queue: list[Batch] = []
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="iotrace-drain", daemon=True)
        self._buffers = _Buffers()
        self._buf = self._buffers.take()
        self._fill = 0
        """Records in _buf not yet handed to the file thread."""
        self._pending_since = 0.0
        self._last_counters = Counters({}, {}, {}, {})
        self._last_counter_ns = monotonic_ns()
        self._last_stats_write = 0.0
        self.events_total = 0
        self._drain_only_cpu_s = 0.0
        self._writes: _FileWrites | None = None
        self.lost_total = 0
        self.runs_unread = 0
        self._final_counters: Counters | None = None
        """Threads whose pending run could not be read at the end (gone meanwhile)."""
        self.error: str = ""
        self._rate_window: list[tuple[float, int]] = []
        self.below: list[dict[str, Any]] = []
        """--min-latency: calls counted, not recorded (pid, syscall, calls, dur_ns)."""
        self._below_on = bool(getattr(prog, "min_latency_ns", 0))
        self.events_by_pid: dict[int, int] = {}
        """Records kept per pid, for the pids given to count_events_of() only."""

    def count_events_of(self, pids: Iterable[int]) -> None:
        """Count the records of these processes as they are drained (`run --overhead`)."""
        for pid in pids:
            self.events_by_pid.setdefault(int(pid), 0)

    # ---- TraceSource ----
    def read(self, timeout: float) -> Batch | None:
        with self._cond:
            if not self._queue and not self._finished:
                self._cond.wait(timeout)
            if not self._queue:
                return None if self._finished else Batch(events=empty_events())
            batches, self._queue = self._queue, []
        if len(batches) == 1:
            return batches[0]
        stats = next((b.stats for b in reversed(batches) if b.stats), {})
        return Batch(
            events=np.concatenate([b.events for b in batches]),
            tasks=[t for b in batches for t in b.tasks],
            stats=stats,
            now_ns=batches[-1].now_ns,
        )

    def stop(self) -> None:
        self._stop.set()

    # ---- control ----
    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def drain_cpu_s(self) -> float:
        """CPU time the drain and file threads have used: events_total / drain_cpu_s
        is the pipeline's capacity."""
        return self._drain_only_cpu_s + (self._writes.cpu_s if self._writes else 0.0)

    def _write_error(self) -> str:
        return self._writer.error or (self._writes.error if self._writes else "")

    @property
    def stats(self) -> dict[str, Any]:
        c = self._last_counters.as_dict()
        now = time.monotonic()
        window = [(t, n) for t, n in self._rate_window if now - t <= 2.0]
        rate = 0.0
        if len(window) >= 2 and window[-1][0] > window[0][0]:
            rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        return {
            **c,
            "events": self.events_total,
            "lost_total": self.lost_total,
            "events_per_s": round(rate, 1),
            "drain_cpu_s": round(self.drain_cpu_s, 3),
            "write_error": self._write_error(),
            **({"below_min_latency": self.below} if self._below_on else {}),
        }

    # ---- the drain thread ----
    def _run(self) -> None:
        self._writes = _FileWrites(self._writer)
        try:
            while not self._stop.wait(self.drain_interval_s):
                self._drain_once(final=False)
                if self._write_error():
                    self.error = self._write_error()
                    break
            # The probes off, all at once (BpfProgram.detach sets their off switch
            # first), then the counters: the ring, the counters, the requests in
            # flight and the runs not yet emitted are then final, and none can be
            # read twice or missed.
            self._prog.detach()
            self._final_counters = self._prog.counters()
            self._drain_once(final=True)
        except Exception as exc:  # surfaced to the user by the recorder
            self.error = f"the drain thread failed: {exc!r}"
        finally:
            self._flush_pending()
            self._writes.close()
            if self._write_error() and not self.error:
                self.error = self._write_error()
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _drain_once(self, *, final: bool) -> None:
        cpu0 = time.thread_time()
        try:
            self._drain_body(final=final)
        finally:
            self._drain_only_cpu_s += time.thread_time() - cpu0

    def _drain_body(self, *, final: bool) -> None:
        now_ns = monotonic_ns()
        got = 0
        while True:
            if self._fill == len(self._buf):
                self._flush_pending()
            n = self._reader.drain_into(self._buf[self._fill :])
            if n:
                self._took(self._buf[self._fill : self._fill + n], now_ns)
                self._fill += n
                got += n
            # A live drain takes what is there when it wakes, and goes on only when
            # that filled the buffer: chasing a storm's newest records a few hundred
            # at a time would spend the drain on per-pass costs (1.7 M records per
            # CPU-second that way, against 10 M). The last drain takes all.
            if not n or (not final and (self._fill < len(self._buf) or got >= 8 * len(self._buf))):
                break
        extra = []
        lost_rows = self._check_counters(now_ns, force=final)
        if lost_rows is not None:
            extra.append(lost_rows)
        if final:
            extra.append(self._not_observed(now_ns))
            extra.append(self._pending_runs())
        for rows in extra:
            self._append(rows, now_ns)
        mono = time.monotonic()
        if self._fill and not self._pending_since:
            self._pending_since = mono
        if self._pending_since and mono - self._pending_since >= WRITE_INTERVAL_S:
            self._flush_pending()
        if mono - self._last_stats_write >= STATS_INTERVAL_S:
            self._last_stats_write = mono
            self._write("write_stats", self.stats)

    def _append(self, rows: np.ndarray, now_ns: int) -> None:
        """Records made here (LOST, NOT_OBSERVED, pending runs) go after the drained ones."""
        while len(rows):
            if self._fill == len(self._buf):
                self._flush_pending()
            part = rows[: len(self._buf) - self._fill]
            self._buf[self._fill : self._fill + len(part)] = part
            self._took(self._buf[self._fill : self._fill + len(part)], now_ns)
            self._fill += len(part)
            rows = rows[len(part) :]

    def _took(self, batch: np.ndarray, now_ns: int) -> None:
        """What every new record passes through: identities, counts, the consumer."""
        self.registry.observe(batch)
        self.events_total += len(batch)
        if self.events_by_pid:
            col = batch["pid"]
            for pid in self.events_by_pid:
                self.events_by_pid[pid] += int(np.count_nonzero(col == pid))
        self._rate_window.append((time.monotonic(), self.events_total))
        if len(self._rate_window) > 400:
            self._rate_window = self._rate_window[-200:]
        new_tasks = self.registry.take_new()
        if new_tasks:
            # Queued now, so they reach the file before the records that name them.
            self._write("write_tasks", new_tasks)
        if self._consumer:
            with self._cond:
                self._queue.append(
                    Batch(events=batch.copy(), tasks=new_tasks, stats=self.stats, now_ns=now_ns)
                )
                self._cond.notify_all()

    def _flush_pending(self) -> None:
        """Hand the buffer's records to the file thread; go on in another buffer."""
        if not self._fill:
            return
        buf, n = self._buf, self._fill
        self._buf, self._fill = self._buffers.take(), 0
        self._pending_since = 0.0
        self._write("write_events", buf[:n], lambda: self._buffers.give(buf))

    def _write(self, method: str, value: Any, done: Callable[[], None] | None = None) -> None:
        assert self._writes is not None  # made first thing on the drain thread
        self._writes.put(method, value, done)

    def _check_counters(self, now_ns: int, *, force: bool) -> np.ndarray | None:
        """LOST records for ring-buffer reserves that failed since the last look,
        dated to the interval they happened in, so a gap is never drawn idle."""
        if not force and now_ns - self._last_counter_ns < COUNTER_INTERVAL_S * 1e9:
            return None
        c = self._final_counters if force and self._final_counters else self._prog.counters()
        rows = []
        for name, total in c.lost.items():
            delta = total - self._last_counters.lost.get(name, 0)
            if delta > 0:
                rows.append((name, delta))
        if self._below_on:
            # Read with the counters (every 0.2 s, and once more after the probes
            # are off), so every STAT chunk and the footer carry them.
            self.below = [
                {
                    "pid": r["pid"],
                    "syscall": SYSCALL_BY_OP[r["op"]].name
                    if r["op"] in SYSCALL_BY_OP
                    else f"syscall{r['op']}",
                    "calls": r["calls"],
                    "dur_ns": r["dur_ns"],
                }
                for r in self._prog.below_min_latency()
            ]
        start_ns = self._last_counter_ns
        self._last_counters = c
        self._last_counter_ns = now_ns
        self.lost_total = c.total_lost
        if not rows:
            return None
        out = np.zeros(len(rows), dtype=EVENT_DTYPE)
        for i, (name, delta) in enumerate(rows):
            out[i]["ts_ns"] = start_ns
            out[i]["end_ns"] = now_ns
            out[i]["size"] = delta
            out[i]["kind"] = Kind.LOST
            out[i]["op"] = _probe_id(name)
            out[i]["fd"] = -1
        return out

    def _pending_runs(self) -> np.ndarray:
        """Calls that live threads had folded into runs not yet emitted (a thread
        spinning on CPU at the end): records, so every call is counted."""
        tids = [(t.pid, t.tid) for t in self.registry.all()]
        rows, self.runs_unread = self._prog.pending_runs(tids)
        out = np.zeros(len(rows), dtype=EVENT_DTYPE)
        for i, row in enumerate(rows):
            for name, value in row.items():
                out[i][name] = value
        return out

    def _not_observed(self, now_ns: int) -> np.ndarray:
        """Requests still in flight at the end: reported, never given a time."""
        groups = {
            "aio": (Kind.AIO_REQUEST, self._prog.aio_in_flight()),
            "uring": (Kind.URING_REQUEST, self._prog.uring_in_flight()),
            "posix_aio": (Kind.POSIX_AIO_REQUEST, self._prog.posix_aio_in_flight()),
        }
        self.not_observed = {name: len(reqs) for name, (_, reqs) in groups.items()}
        parts = []
        for kind, reqs in groups.values():
            rows = np.zeros(len(reqs), dtype=EVENT_DTYPE)
            for i, req in enumerate(reqs):
                for field_name, value in req.items():
                    rows[i][field_name] = value
            rows["kind"] = kind
            rows["flags"] |= np.uint32(Flag.NOT_OBSERVED)
            parts.append(rows)
        return np.concatenate(parts)

    def close(self) -> None:
        self._reader.close()
