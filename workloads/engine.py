"""Runs one workload: options, set-up, the ready/release gate, the measured run,
the result.

The same path serves `iotrace workload NAME` (in-process, no gate) and the
child process the launcher starts for `iotrace run` (gated). Set-up does
everything that reads files or imports modules (data file, fds, producers,
threads), so after release the workload makes only its measured I/O.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

import numpy as np
from iotrace.workloads import datafile, producer
from iotrace.workloads.measure import LatencyLog, Progress, Role, build_result, cpu_seconds
from iotrace.workloads.options import Options, help_text, parse
from iotrace.workloads.registry import (
    COMMON_OPTIONS,
    DEFAULT_IODEPTH,
    DEFAULT_IODEPTH_BATCH_SUBMIT,
    DEFAULT_RUNTIME_S,
    WorkloadSpec,
    get,
)

from iotrace.errors import UsageError

RELEASE_SIGNAL = producer.RELEASE_SIGNAL
_COUNT_OPTIONS = ("number_ios", "size", "pipe_reads", "socket_reads", "file_reads")


class Stopped(Exception):
    """SIGTERM or Ctrl-C: finish with what was measured so far."""


class Runner(Protocol):
    def run(self, ctx: Context) -> None: ...


@dataclass
class Context:
    """What a workload module gets: options, bounds, fds and the roles it reports."""

    spec: WorkloadSpec
    opts: Options
    home: str | None
    runtime: float | None
    progress: Progress
    roles: list[Role] = field(default_factory=list)
    channels: list[producer.Channel] = field(default_factory=list)
    owned_fds: list[int] = field(default_factory=list)
    start: float = 0.0
    deadline: float = float("inf")
    _data_dir: str | None = None

    # -- set-up helpers

    def role(self, name: str) -> Role:
        r = Role(name)
        self.roles.append(r)
        return r

    def direct(self) -> bool:
        """O_DIRECT for the data file: --direct, else the workload's default."""
        return self.opts.direct if self.opts.direct is not None else self.spec.direct_default

    def data_dir(self) -> str:
        if self._data_dir is None:
            self._data_dir = datafile.choose_data_dir(self.opts.directory, self.home)
        return self._data_dir

    def open_data_file(self, direct: bool) -> tuple[int, datafile.DataFile]:
        """Open the (shared, verified-pattern) data file; Unavailable if O_DIRECT is refused."""
        df = datafile.ensure_data_file(self.data_dir(), self.opts.filesize)
        flags = os.O_RDONLY | (os.O_DIRECT if direct else 0)
        try:
            fd = os.open(df.path, flags)
        except OSError as exc:
            if direct:
                raise datafile.Unavailable(
                    f"O_DIRECT refused on {df.path}: {exc.strerror}"
                ) from None
            raise
        self.owned_fds.append(fd)
        return fd, df

    def open_channel(self, kind: str) -> producer.Channel:
        ch = producer.open_channel(kind, self.opts.seed, len(self.channels))
        self.channels.append(ch)
        self.owned_fds += [ch.read_fd, ch.write_fd]
        return ch

    def spawn_producers(self, counts: Sequence[int | None]) -> None:
        """Fork one paced producer per channel (count writes each, None = until EPIPE)."""
        for i, (ch, count) in enumerate(zip(self.channels, counts, strict=True)):
            producer.spawn(
                ch,
                index=i,
                bs=self.opts.bs,
                delay=self.opts.delay,
                jitter=self.opts.jitter,
                seed=self.opts.seed,
                count=count,
                close_fds=list(self.owned_fds),
            )
        for ch in self.channels:
            os.close(ch.write_fd)
            self.owned_fds.remove(ch.write_fd)

    def producer_pids(self) -> list[int]:
        return [ch.pid for ch in self.channels if ch.pid]

    # -- run-time helpers

    def expired(self, now: float) -> bool:
        return now >= self.deadline


def effective_runtime(opts: Options, spec: WorkloadSpec) -> float | None:
    if opts.runtime is not None:
        return opts.runtime
    if any(getattr(opts, name) is not None for name in _COUNT_OPTIONS):
        return None
    return DEFAULT_RUNTIME_S


def check_applicable(spec: WorkloadSpec, opts: Options) -> None:
    allowed = COMMON_OPTIONS | spec.options
    extra = sorted(opts.given - allowed)
    if extra:
        names = ", ".join("--" + n.replace("_", "-") for n in extra)
        takes = ", ".join("--" + n.replace("_", "-") for n in sorted(allowed))
        raise UsageError(f"{names} does not apply to {spec.name} (it takes: {takes})")


def parse_for(name: str, argv: Sequence[str]) -> tuple[WorkloadSpec, Options, bool]:
    spec = get(name)
    opts, want_help = parse(argv)
    check_applicable(spec, opts)
    return spec, opts, want_help


def usage(spec: WorkloadSpec) -> str:
    opts = ", ".join("--" + n.replace("_", "-") for n in sorted(COMMON_OPTIONS | spec.options))
    return (
        f"{spec.name}: {spec.description}\n  model: {spec.model}; syscalls per request: "
        f"{', '.join(spec.expected_syscalls)}\n  counts: {spec.counts}\n"
        f"  options for this workload: {opts}\n\n" + help_text()
    )


def settings_of(spec: WorkloadSpec, opts: Options, runtime: float | None) -> dict[str, Any]:
    s: dict[str, Any] = {"bs": opts.bs}
    for name in sorted(spec.options | {"runtime"}):
        if name in ("bs",):
            continue
        value = runtime if name == "runtime" else getattr(opts, name, None)
        if name == "direct" and value is None:
            value = spec.direct_default
        if name == "iodepth" and value is None:
            value = DEFAULT_IODEPTH
        if name == "iodepth_batch_submit" and value is None:
            value = DEFAULT_IODEPTH_BATCH_SUBMIT
        if value is not None:
            s[name] = value
    return s


def _warm_up() -> None:
    """Run the result code once on dummy data: numpy imports parts of itself lazily
    (np.percentile pulls in numpy.ma), and those file reads must happen before release."""
    log = LatencyLog(4)
    log.add_many(np.arange(4, dtype=np.int64))
    json.dumps(log.summary_us())


def _raise_stopped(signum: int, frame: object) -> None:
    raise Stopped()


def run(
    name: str,
    argv: Sequence[str],
    *,
    home: str | None,
    progress_stream: TextIO | None,
    on_ready: Callable[[list[int], dict[str, int]], None] | None = None,
) -> dict[str, Any]:
    """Set up, (optionally) wait at the gate, run, and return the result dict.

    on_ready(pids, fds) is called after set-up; it must block until release
    (the launcher's child) or return at once (in-process runs). Raises
    datafile.Unavailable, UsageError or WorkloadError.
    """
    spec, opts, _ = parse_for(name, argv)
    if opts.clean:
        datafile.clean(home)
    runtime = effective_runtime(opts, spec)
    ctx = Context(spec, opts, home, runtime, Progress(progress_stream, None, runtime))
    module = importlib.import_module(f"iotrace.workloads.{spec.module}")
    # Producers inherit this mask and wait for the same release signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {RELEASE_SIGNAL})
    old_term = signal.signal(signal.SIGTERM, _raise_stopped)
    runner: Runner | None = None
    try:
        runner = module.prepare(ctx)
        ctx.progress.total_ops = getattr(runner, "total_ops", None)
        fds = {}
        for r in ctx.roles:
            for i, fd in enumerate(r.fds):
                fds[r.name if len(r.fds) == 1 else f"{r.name}{i}"] = fd
        _warm_up()
        if on_ready is not None:
            on_ready([os.getpid(), *ctx.producer_pids()], fds)
        else:
            for pid in ctx.producer_pids():
                os.kill(pid, RELEASE_SIGNAL)
        cpu0 = cpu_seconds()
        ctx.start = time.monotonic()
        ctx.deadline = ctx.start + runtime if runtime else float("inf")
        stopped = False
        try:
            runner.run(ctx)
        except (Stopped, KeyboardInterrupt):
            stopped = True
        # Measuring is over: a stop from now on (the tracer's -d ending at the same
        # instant as --runtime) must not cut the wrap-up (libaio's io_destroy waits
        # for requests in flight) and lose what was measured.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elapsed = time.monotonic() - ctx.start
        cpu1 = cpu_seconds()
        ctx.progress.clear()
        return build_result(
            name=spec.name,
            model=spec.model,
            api=spec.api,
            roles=ctx.roles,
            elapsed_s=elapsed,
            cpu=(cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]),
            settings=settings_of(spec, opts, runtime),
            verified_blocks=sum(r.ops for r in ctx.roles),
            stopped=stopped,
        )
    finally:
        ctx.progress.clear()
        signal.signal(signal.SIGTERM, old_term)
        close = getattr(runner, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()
        for ch in ctx.channels:
            if ch.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(ch.pid, signal.SIGKILL)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(ch.pid, 0)
        for fd in ctx.owned_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        # A release signal still pending would kill us once unblocked: consume it.
        while RELEASE_SIGNAL in signal.sigpending():
            signal.sigtimedwait({RELEASE_SIGNAL}, 0)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {RELEASE_SIGNAL})


def write_line(fd: int, obj: dict[str, Any]) -> None:
    data = memoryview((json.dumps(obj) + "\n").encode())
    while data:
        n = os.write(fd, data)
        data = data[n:]
