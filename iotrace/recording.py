"""`iotrace run` and `iotrace trace`: load probes, start or attach to the
programs, drain while they run, and leave a complete trace file behind.

Order matters and is the same for both commands: check usage, check
privileges, compile and load the program, start the targets held at their
gate, open the trace file, put the targets' pids in the filter, then release
them, so the trace holds exactly their I/O from the first call.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator

# Imported here, not on the detaching thread: an import there could wait on a
# module lock the main thread holds (it imports the report's modules meanwhile).
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iotrace import __version__, session
from iotrace.command import GatedCommand, invoking_user, pid_exists, stdout_is_tty
from iotrace.errors import (
    EXIT_FAILURE,
    EXIT_IO,
    IotraceError,
    OutputError,
    PrivilegeError,
    UsageError,
)
from iotrace.text import printable

RECORDER_NICE = -10
"""The drain and trace writer threads' niceness: ahead of the targets and the dashboard."""
SUMMARY_MAX_EVENTS = 20_000_000
"""Above this, the end of a run prints counts only (see _summarise)."""
CAP_PERFMON = 38
CAP_BPF = 39


def has_tracing_privileges(status: Path = Path("/proc/self/status")) -> bool:
    """Root, or CAP_BPF + CAP_PERFMON in the effective set."""
    if os.geteuid() == 0:
        return True
    try:
        for line in status.read_text().splitlines():
            if line.startswith("CapEff:"):
                caps = int(line.split()[1], 16)
                return bool(caps >> CAP_BPF & 1 and caps >> CAP_PERFMON & 1)
    except (OSError, ValueError):
        pass
    return False


def require_privileges(command: str) -> None:
    if not has_tracing_privileges():
        raise PrivilegeError(
            f"iotrace {command} loads eBPF probes and needs root: run 'sudo iotrace {command} ...' "
            "(view, report and export do not need root)"
        )


def default_output() -> Path:
    return Path(time.strftime("iotrace-%Y%m%d-%H%M%S.trace"))


def clock_anchor() -> dict[str, int]:
    """Monotonic (the BPF clock) and wall time read together, to date events."""
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    wall = time.time_ns()
    return {"monotonic_ns": mono, "realtime_ns": wall}


@dataclass
class Target:
    """Something to trace: a workload, a command, or existing processes."""

    label: str
    pids: list[int]
    release: Callable[[], None] = lambda: None
    poll: Callable[[], int | None] = lambda: None
    stop: Callable[[], None] = lambda: None
    result: Callable[[], dict[str, Any]] = dict
    close: Callable[[], None] = lambda: None
    """Release what the launcher holds (pipes, files) once the result is read."""
    info: dict[str, Any] = field(default_factory=dict)
    own: bool = True
    """True when iotrace started it (and so stops it at the end)."""


class _Stop:
    """Signals turned into a stop request, so every exit path saves the trace."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def __call__(self, signum: int, _frame: object) -> None:
        # The first signal decides the exit status; later ones (a second
        # Ctrl-C while saving) change nothing: saving always completes.
        if not self.signum:
            self.signum = signum
        self.event.set()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        old = {s: signal.signal(s, self) for s in sigs}
        try:
            yield
        finally:
            # Once a signal has stopped the run, a second one in the last moments
            # of exiting must not kill iotrace with that signal instead of its
            # exit status. Ignored, not handled: Python's finalization resets
            # the handlers it installed to SIG_DFL, but leaves SIG_IGN.
            for s, h in old.items():
                signal.signal(s, signal.SIG_IGN if self.signum else h)


def call_filter(args: argparse.Namespace) -> Any:
    """The -e trace=SET and --min-latency of the command line (a usage error names
    what is wrong and lists the valid names)."""
    from iotrace import filters

    try:
        selected = filters.parse_trace(getattr(args, "trace_filter", None))
    except ValueError as exc:
        raise UsageError(f"-e: {exc}") from None
    return filters.CallFilter(
        expr=" ".join(getattr(args, "trace_filter", None) or []),
        selected=selected,
        min_latency_ns=int(getattr(args, "min_latency", None) or 0),
    )


def _check_tuning(args: argparse.Namespace) -> None:
    call_filter(args)
    mb = int(args.ringbuf_mb)
    if mb <= 0 or mb & (mb - 1):
        raise UsageError(f"--ringbuf-mb must be a power of two, not {mb}")
    if not 0.1 <= args.drain_ms <= 5000:
        raise UsageError("--drain-ms must be between 0.1 and 5000")


def _program_options(args: argparse.Namespace) -> Any:
    from iotrace.tracer import program

    _check_tuning(args)
    flt = call_filter(args)
    available = program.available_tracepoints()
    return program.ProgramOptions(
        syscalls=flt.syscalls,
        page_faults=flt.keeps("page_fault"),
        posix_aio_uprobes=flt.keeps("posix_aio"),
        min_latency_ns=flt.min_latency_ns,
        ringbuf_bytes=int(args.ringbuf_mb) << 20,
        page_size=os.sysconf("SC_PAGE_SIZE"),
        trace_all=bool(getattr(args, "all", False)),
        fold=not getattr(args, "no_fold", False),
        block=bool(getattr(args, "block_time", False)),
        self_tgid=os.getpid(),
        available=frozenset(available) if available else None,
    )


def check_output(args: argparse.Namespace) -> Path:
    """The trace file to write, refused before anything is started when it
    cannot be created: an existing file without --force, a symlink (never
    followed, even with --force), a directory, a FIFO or device, a missing or
    unwritable folder (iotrace.outfile)."""
    from iotrace.outfile import check_target

    out = check_target(
        Path(args.output) if args.output else default_output(), force=args.force, hint="-o"
    )
    parent = out.parent if str(out.parent) else Path(".")
    # Without privileges the one thing to say is "use sudo" (which may also make
    # the folder writable), so writability is judged only for a user who can trace.
    if has_tracing_privileges() and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: directory {parent} is not writable")
    return out


def _print_ebpf(args: argparse.Namespace) -> int:
    from iotrace.tracer import program

    opts = _program_options(args)
    sys.stdout.write(program.build(opts))
    return 0


def _workload_targets(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    from iotrace.workloads import engine, registry

    names = list(args.workloads) or registry.default_set()
    specs = [registry.get(n) for n in names]  # UsageError lists the valid names
    for n in names:  # bad workload options are usage errors before anything starts
        engine.parse_for(n, args.workload_options)
    return specs, names


def cmd_run(args: argparse.Namespace) -> int:
    if args.ebpf:
        return _print_ebpf(args)
    stopper = _Stop()
    with stopper.installed():
        specs, names = _workload_targets(args)
        _check_tuning(args)
        out = check_output(args)
        require_privileges("run")
        from iotrace.workloads import launcher

        run_as = launcher.invoking_user()
        if args.clean:
            from iotrace.workloads import datafile

            datafile.clean(run_as.home if run_as else None, run_as.uid if run_as else None)

        def start_targets() -> list[Target]:
            targets: list[Target] = []
            for spec in specs:
                if stopper.event.is_set():
                    break  # asked to stop while starting: start no more
                w = launcher.start(
                    spec.name, args.workload_options, run_as=run_as, duration_s=args.duration
                )
                try:
                    w.wait_ready(timeout=120.0)
                except IotraceError:
                    w.stop()
                    for t in targets:
                        t.stop()
                    raise
                if w.unavailable:
                    print(f"iotrace: {spec.name}: unavailable: {w.unavailable}", file=sys.stderr)
                    continue
                targets.append(
                    Target(
                        label=spec.name,
                        pids=list(w.pids),
                        release=w.release,
                        poll=w.poll,
                        stop=w.stop,
                        result=w.result,
                        close=w.close,
                        info={"name": spec.name, "model": spec.model, "api": spec.api},
                    )
                )
            if not targets and not stopper.event.is_set():
                raise IotraceError("none of the chosen workloads can run on this machine")
            return targets

        baseline = None
        if args.overhead:
            print(
                f"iotrace: --overhead: running {', '.join(names)} untraced first "
                f"({f'{args.duration:g} s' if args.duration else 'to their end'}), "
                "then traced",
                file=sys.stderr,
            )
            baseline = _run_untraced(start_targets, args.duration, stopper)
            if stopper.event.is_set():
                return _stopped_early(stopper, "only the untraced run had started; no trace")
        extra: dict[str, Any] = {"workloads_asked": names}
        if baseline is not None:
            extra["overhead_untraced"] = baseline
        return _record(args, "run", out, stopper, start_targets, extra, baseline)


def cmd_trace(args: argparse.Namespace) -> int:
    argv = list(args.command_argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    trace_all = bool(getattr(args, "all", False))
    if sum((bool(args.pid), bool(argv), trace_all)) > 1:
        raise UsageError("give one of -p PID, --all or -- COMMAND")
    if not args.pid and not argv and not trace_all:
        raise UsageError(
            "nothing to trace: use 'iotrace trace -p PID', 'iotrace trace -- COMMAND' "
            "or 'iotrace trace --all'"
        )
    if args.ebpf:
        return _print_ebpf(args)
    stopper = _Stop()
    with stopper.installed():
        if args.pid:
            missing = [p for p in args.pid if not pid_exists(p)]
            if missing:
                raise UsageError(f"no such process: {', '.join(map(str, missing))}")
            if os.getpid() in args.pid:
                raise UsageError("iotrace cannot trace itself")
        elif argv:
            from iotrace.command import resolve

            resolve(argv)  # a missing command is reported before asking for root
        _check_tuning(args)
        out = check_output(args)
        require_privileges("trace")

        def start_targets() -> list[Target]:
            if trace_all:
                # Every process but iotrace itself: the BPF filter needs no pids.
                return [Target(label="all processes", pids=[], own=False)]
            if args.pid:
                from iotrace.tracer.tasks import descendants

                pids = descendants(list(args.pid))
                return [
                    Target(
                        label="pid " + ",".join(map(str, args.pid)),
                        pids=pids,
                        own=False,
                        poll=lambda: None if any(pid_exists(p) for p in args.pid) else 0,
                    )
                ]
            cmd = GatedCommand(argv, invoking_user())
            return [
                Target(
                    # Shown on the dashboard and in the report: never a raw escape.
                    label=printable(os.path.basename(argv[0])),
                    pids=[cmd.pid],
                    release=cmd.release,
                    poll=cmd.poll,
                    stop=cmd.terminate,
                    result=lambda: {"exit_code": cmd.exit_code},
                    info={"command": argv},
                )
            ]

        extra = {"command": argv or None, "pids": args.pid, "trace_all": trace_all}
        return _record(args, "trace", out, stopper, start_targets, extra)


def _stopped_early(stopper: _Stop, what: str) -> int:
    name = signal.Signals(stopper.signum).name
    print(f"iotrace: stopped by {name} before tracing began; {what}", file=sys.stderr)
    return 128 + stopper.signum


def _record(
    args: argparse.Namespace,
    command: str,
    out: Path,
    stopper: _Stop,
    start_targets: Callable[[], list[Target]],
    extra_meta: dict[str, Any],
    overhead_baseline: dict[str, dict[str, Any]] | None = None,
) -> int:
    """_record_traced, with the dashboard when there is a terminal: started first,
    so that its Python and Textual start while the probes compile, and gone (and
    the terminal restored) whatever way the recording ends."""
    dash = _dashboard(out) if not args.no_tui and stdout_is_tty() else None
    try:
        return _record_traced(
            args, command, out, stopper, start_targets, extra_meta, overhead_baseline, dash
        )
    finally:
        if dash is not None:
            dash.close()


def _record_traced(
    args: argparse.Namespace,
    command: str,
    out: Path,
    stopper: _Stop,
    start_targets: Callable[[], list[Target]],
    extra_meta: dict[str, Any],
    overhead_baseline: dict[str, dict[str, Any]] | None,
    dash: Any,
) -> int:
    """Trace until the targets end, the duration is up, or a signal asks to stop.
    With `overhead_baseline` (the workloads' untraced results), the footer also
    gets the comparison with the traced run.

    Called with `stopper` installed, and it stays installed through saving:
    SIGINT/SIGTERM/SIGHUP at any point only ask to stop, so the probes are
    detached, the programs iotrace started are stopped and a file that was
    opened is closed with its footer on every path."""
    from iotrace.blocktime import TRACED as BLOCK_TRACED
    from iotrace.tracer import bcc_source, kheaders
    from iotrace.tracer.live import LiveSource
    from iotrace.tracer.program import TRACEPOINTS, block_traced, traced_syscalls
    from iotrace.tracer.tasks import TaskRegistry, fd_snapshot

    opts = _program_options(args)
    flt = call_filter(args)
    ks = kheaders.configure()
    if not getattr(args, "quiet", False):
        # Compiling takes seconds on a cold start: say so rather than sit silent.
        print("iotrace: compiling and loading probes...", file=sys.stderr, flush=True)
    prog = bcc_source.load(opts)
    if stopper.event.is_set():
        prog.close()
        return _stopped_early(stopper, "nothing was started and no trace written")
    targets: list[Target] = []
    writer: session.TraceWriter | None = None
    source: LiveSource | None = None
    write_failed = ""
    try:
        targets = start_targets()
        registry = TaskRegistry()
        meta = {
            "tool": "iotrace",
            "tool_version": __version__,
            "command": command,
            "argv": sys.argv,
            "kernel": platform.release(),
            "machine": platform.machine(),
            "hostname": platform.node(),
            "created_wall": time.time(),
            "clock": clock_anchor(),
            "options": {
                "duration_s": args.duration,
                "ringbuf_bytes": opts.ringbuf_bytes,
                "trace_all": opts.trace_all,
                "fold": opts.fold,
                "fold_at_fill": opts.fold_at_fill,
            },
            "probes": {
                "syscalls": [s.name for s in traced_syscalls(opts)],
                "missing_tracepoints": sorted(set(TRACEPOINTS) - set(opts.available or ()))
                if opts.available is not None
                else [],
                "kernel_source": ks.how,
                "posix_aio": prog.posix_aio_mode
                if flt.keeps("posix_aio")
                else "not traced (left out by -e)",
                "page_faults": getattr(prog, "fault_mode", "not traced")
                if flt.keeps("page_fault")
                else "not traced (left out by -e)",
                "block": BLOCK_TRACED if block_traced(opts) else "not traced",
            },
            **({"filter": flt.to_meta()} if flt.active else {}),
            "workloads": [{**t.info, "pids": t.pids} for t in targets if "model" in t.info],
            "targets": [{"label": t.label, "pids": t.pids} for t in targets],
            **extra_meta,
        }
        writer = session.TraceWriter(out, meta, force=args.force)
        if dash is not None:
            dash.recording_started()
        for t in targets:
            for pid in t.pids:
                registry.label(pid, t.label)
                registry.add(pid, pid)
                if not t.own:
                    # Threads of a running process that may stay idle: listed all the same.
                    for tid in _threads_of(pid):
                        registry.add(pid, tid)
        # The fds the targets have before anything is traced: -p's open files, and
        # what a held command inherits (fdpaths.py gives calls on them their path).
        snap_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        snapped: dict[int, int] = {}
        for t in targets:
            for pid in t.pids:
                snap = fd_snapshot(pid, snap_ns, before_exec="command" in t.info)
                writer.write_events(snap)
                snapped[pid] = snapped.get(pid, 0) + len(snap)
        use_tui = dash is not None
        source = LiveSource(
            prog,
            writer,
            meta,
            registry,
            # The dashboard reads the trace file in its own process (tui/follow.py).
            consumer=False,
            drain_interval_s=args.drain_ms / 1000,
        )
        # Never iotrace itself (`-p 1` or `-p $$` has it among the descendants).
        prog.add_pids(p for t in targets for p in t.pids if p != os.getpid())
        if overhead_baseline is not None:
            source.count_events_of(p for t in targets for p in t.pids)
            for pid, n in snapped.items():  # written before the drain, theirs all the same
                if pid in source.events_by_pid:
                    source.events_by_pid[pid] += n
        source.events_total += sum(snapped.values())
        with _raised_priority():
            source.start()  # the drain and writer threads keep the priority
        if stopper.event.is_set():
            # A signal while starting: the targets never ran; the (empty) trace
            # is still closed properly below.
            return _stopped_early(stopper, f"{out} holds no events")
        for t in targets:
            t.release()
        _announce(targets, args, out, use_tui)
        if dash is not None:
            # Until the user quits the dashboard (targets still running are then
            # stopped below, as after Ctrl-C) or the run ends by itself.
            _end_live_view(targets, args.duration, stopper, source, dash)
        else:
            _wait_targets(targets, args.duration, stopper, source)
        if source.error and not stopper.event.is_set():
            write_failed = source.error
            if dash is not None:
                dash.close()  # the error is said on the terminal, not under the dashboard
            _after_write_failure(write_failed, command, targets, stopper, source, prog)
    finally:
        results, footer, detaching = _finish(targets, source, writer, prog, overhead_baseline, dash)
    try:
        assert writer is not None and source is not None
        if source.error and source.error != write_failed:
            print(f"iotrace: {source.error}", file=sys.stderr)
        return _summarise(
            args,
            out,
            writer,
            results,
            stopper,
            command,
            lost=source.lost_total,
            reported=bool(write_failed),
            overhead=footer.get("overhead"),
            dash=dash,
            recording_failed=source.error,
        )
    finally:
        detaching.join()


def _after_write_failure(
    error: str,
    command: str,
    targets: list[Target],
    stopper: _Stop,
    source: Any,
    prog: Any,
) -> None:
    """The trace file cannot grow (disk full, device gone): say so at once and
    detach the probes. A traced command is not harmed: it runs on, untraced,
    to its own end (or until Ctrl-C); iotrace's own workloads are stopped."""
    print(f"iotrace: {error}", file=sys.stderr)
    source.stop()
    source.join(timeout=30)
    prog.close()
    if command == "trace" and any(t.own for t in targets):
        print(
            "iotrace: the command runs on untraced until it ends; Ctrl-C stops it",
            file=sys.stderr,
        )
        _wait_targets(targets, None, stopper, None)


def _dashboard(out: Path) -> Any:
    """The dashboard, started in its own process following `out` as it is written,
    as the user behind sudo (who owns the file). The recorder keeps the probes,
    the drain and the writer to itself: a dashboard frame never delays a drain,
    and nothing the dashboard does (or fails to do) can block the recording."""
    from iotrace.tui.follow import DashboardProcess

    return DashboardProcess(out, invoking_user())


@contextlib.contextmanager
def _raised_priority() -> Iterator[None]:
    """Threads started inside run at nice -10 (Linux: the niceness is per thread
    and new threads inherit it), so draining keeps up on a busy machine; this
    thread, and the dashboard and targets it starts, keep their own."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, min(before, RECORDER_NICE))
    except OSError:  # not root, or capped by RLIMIT_NICE: record at the usual priority
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, before)


def _announce(targets: list[Target], args: argparse.Namespace, out: Path, tui: bool) -> None:
    if tui or getattr(args, "quiet", False):
        return
    what = ", ".join(t.label for t in targets)
    ends = "until it ends" if len(targets) == 1 else "until they end"
    until = f"for {args.duration:g} s" if args.duration else ends
    flt = call_filter(args)
    only = []
    if flt.expr:
        only.append(f"-e {flt.expr}")
    if flt.min_latency_ns:
        from iotrace.filters import fmt_ns

        only.append(f"calls under {fmt_ns(flt.min_latency_ns)} only counted")
    says = f" ({'; '.join(only)})" if only else ""
    print(f"Tracing {what}{says} {until}... Ctrl-C to end. Writing {out}", file=sys.stderr)


def _end_live_view(
    targets: list[Target], duration: float | None, stopper: _Stop, source: Any, dash: Any
) -> None:
    """In dashboard mode: until the targets end, the duration is up, a stop is
    asked for, the recording failed or the user quit the dashboard (q, Ctrl-C,
    or it died: the recording then stops as after q). When the run ends by
    itself the dashboard stays, says ENDED once the trace is finished and keeps
    the final scoreboard until the user quits (see _summarise)."""
    deadline = time.monotonic() + duration if duration else None
    while not stopper.event.is_set() and not dash.going() and not source.error:
        if deadline is not None and time.monotonic() >= deadline:
            return
        if all(t.poll() is not None for t in targets):
            return
        stopper.event.wait(0.05)
    if stopper.event.is_set():
        dash.quit()  # SIGTERM/SIGHUP/Ctrl-C to iotrace: the dashboard goes too


def _wait_targets(
    targets: list[Target], duration: float | None, stopper: _Stop, source: Any
) -> None:
    """Until the targets end, the duration is up, a stop is asked for, or the
    recording failed (source.error)."""
    deadline = time.monotonic() + duration if duration else None
    while not stopper.event.is_set():
        if deadline is not None and time.monotonic() >= deadline:
            return
        if all(t.poll() is not None for t in targets):
            return
        if source is not None and source.error:
            return
        stopper.event.wait(0.05)


def _stop_targets(targets: list[Target]) -> dict[str, Any]:
    """Stop the targets iotrace started; each one's own result (or its error)."""
    for t in targets:
        if t.own:
            with contextlib.suppress(Exception):
                t.stop()
    results: dict[str, Any] = {}
    for t in targets:
        try:
            results[t.label] = t.result()
            t.close()
        except Exception as exc:
            results[t.label] = {"error": str(exc)}
    return results


def _run_untraced(
    start_targets: Callable[[], list[Target]], duration: float | None, stopper: _Stop
) -> dict[str, Any]:
    """`run --overhead`'s first half: the very targets the traced run will have,
    started, released and waited for the same way, with no probes loaded."""
    targets: list[Target] = []
    try:
        targets = start_targets()
        for t in targets:
            t.release()
        _wait_targets(targets, duration, stopper, None)
    finally:
        results = _stop_targets(targets)
    return results


def _finish(
    targets: list[Target],
    source: Any,
    writer: session.TraceWriter | None,
    prog: Any,
    overhead_baseline: dict[str, dict[str, Any]] | None = None,
    dash: Any = None,
) -> tuple[dict[str, Any], dict[str, Any], threading.Thread]:
    """Stop what we started, drain the rest, close the file, detach probes.
    Runs on every exit path, Ctrl-C included. Returns the targets' results, the
    footer written, and the thread detaching the probes (join it before exiting:
    the summary is made meanwhile)."""
    results: dict[str, Any] = {}
    footer: dict[str, Any] = {"results": results}
    try:
        results.update(_stop_targets(targets))
        if source is not None:
            # Let the last records of the exiting targets land before the final drain.
            time.sleep(0.05)
            source.stop()
            source.join(timeout=30)
        if writer is not None:
            if source is not None and source.error:
                # Read back as damage: a trace whose recording failed is never "complete".
                footer["recording_failed"] = source.error
            if source is not None:
                footer["stats"] = source.stats
                footer["not_observed"] = getattr(source, "not_observed", {})
                footer["tasks"] = len(source.registry.by_tid)
                if overhead_baseline is not None:
                    from iotrace import overhead

                    footer["overhead"] = overhead.compare(
                        overhead_baseline,
                        results,
                        source.events_by_pid,
                        drain_cpu_s=source.drain_cpu_s,
                        events_total=source.events_total,
                    )
            tasks = source.registry.all() if source is not None else []
            _refresh_titles(tasks)
            writer.write_tasks(tasks)
            writer.close(footer)
        if source is not None:
            source.close()
    finally:
        if dash is not None:
            dash.recording_ended()  # the dashboard reads the footer and says ENDED
        detaching = threading.Thread(target=_detach, args=(prog,), name="iotrace-detach")
        detaching.start()
    return results, footer, detaching


def _detach(prog: Any) -> None:
    """Detach the probes and free the maps (BpfProgram.close detaches side by side;
    the drain has usually detached already, before its last read)."""
    prog.close()


class _Abandon(_Stop):
    """While the summary is made (seconds for a big trace) and the dashboard shows
    the final scoreboard, a new SIGINT/SIGTERM/SIGHUP gives up on both: the trace is
    complete by then, and a terminal that closed must not keep iotrace running to
    print to nobody. The summary is made on a thread so that giving up is just not
    waiting for it (raising from the handler instead could interrupt an import and
    leave its lock held: the detaching thread then waited on it for ever)."""


def _summary_text(
    out: Path, writer: session.TraceWriter, lost: int, overhead: dict[str, Any] | None
) -> str:
    from iotrace import report

    if writer.events_written <= SUMMARY_MAX_EVENTS:
        # Streamed from the file (bounded memory); it carries the overhead table too.
        return report.summary_text(out).rstrip("\n") + "\n"
    # The table takes about half a second per million records: after a very
    # long run, ending promptly matters more.
    text = (
        f"{writer.events_written:,} events, lost events: {lost:,}; "
        f"for the summary run 'iotrace report {out}'\n"
    )
    if overhead is not None:
        from iotrace.overhead import render

        text += render(overhead).rstrip("\n") + "\n"
    return text


def _wait_dashboard(dash: Any, stopper: _Stop, abandon: _Abandon) -> None:
    """After the trace is finished: the dashboard shows the final scoreboard until
    the user quits it; a signal to iotrace closes it."""
    while not dash.going() and not stopper.event.is_set() and not abandon.event.is_set():
        abandon.event.wait(0.05)
    dash.close()


def _emit(text: str) -> None:
    # stderr, as strace -c does: a traced command's own output keeps stdout.
    # A terminal that has gone (EIO) is not an error worth a traceback.
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(text)
        sys.stderr.flush()


def _write_summary_file(path: Path, text: str) -> bool:
    """--summary-file: written like the trace (a regular file, never through a
    symlink, given to the user behind sudo only when iotrace created it)."""
    from iotrace.outfile import output_file

    try:
        with output_file(path, force=True) as f:
            f.write(text.encode())
    except IotraceError as exc:
        print(f"iotrace: cannot write the summary: {exc}", file=sys.stderr)
        return False
    return True


def _summarise(
    args: argparse.Namespace,
    out: Path,
    writer: session.TraceWriter,
    results: dict[str, Any],
    stopper: _Stop,
    command: str,
    *,
    lost: int = 0,
    reported: bool = False,
    overhead: dict[str, Any] | None = None,
    dash: Any = None,
    recording_failed: str = "",
) -> int:
    """The end of a run: the summary (to stderr, to --summary-file, or none with
    -q), then "trace saved" and the exit status. With a dashboard the summary is
    made while it still shows the final scoreboard, and printed once it is gone."""
    if writer.error and not reported:
        print(f"iotrace: {writer.error}", file=sys.stderr)
    summary_file = getattr(args, "summary_file", None)
    quiet = bool(getattr(args, "quiet", False))
    # SIGHUP: the terminal went away, there is nobody to print to.
    wanted = summary_file is not None or not (quiet or stopper.signum == signal.SIGHUP)
    made: list[str] = []
    failed: list[BaseException] = []

    def make() -> None:
        try:
            made.append(_summary_text(out, writer, lost, overhead))
        except BaseException as exc:  # said in one line below
            failed.append(exc)

    abandon = _Abandon()
    with abandon.installed():
        maker = threading.Thread(target=make, name="iotrace-summary", daemon=True)
        if wanted:
            maker.start()
        if dash is not None:
            _wait_dashboard(dash, stopper, abandon)
        while maker.is_alive() and not abandon.event.is_set():
            maker.join(0.05)
    if abandon.event.is_set():
        if dash is not None:
            dash.close()
        return 128 + (stopper.signum or abandon.signum)
    text = made[0] if made else ""
    if failed:
        exc = failed[0]
        why = str(exc) if isinstance(exc, IotraceError) else f"{type(exc).__name__}: {exc}"
        print(f"iotrace: the summary could not be made: {why}", file=sys.stderr)
    summary_failed = False
    if text and summary_file is not None:
        summary_failed = not _write_summary_file(Path(summary_file), text)
    elif text and stopper.signum != signal.SIGHUP:
        _emit(text)
    if not quiet and stopper.signum != signal.SIGHUP:
        _emit(
            f"trace saved: {out} ({writer.events_written} events, {writer.bytes_written} bytes)\n"
        )
    if writer.error or summary_failed:
        return EXIT_IO
    if recording_failed:
        return EXIT_FAILURE
    if stopper.signum in (signal.SIGTERM, signal.SIGHUP):
        return 128 + stopper.signum
    if command == "trace":
        for r in results.values():
            if isinstance(r, dict) and "exit_code" in r:
                return int(r["exit_code"])
    return 0


def _threads_of(pid: int) -> list[int]:
    """The threads of a running process, other than its main one."""
    try:
        tids = sorted(int(d.name) for d in Path(f"/proc/{pid}/task").iterdir() if d.name.isdigit())
    except OSError:
        return []
    return [t for t in tids if t != pid]


def _refresh_titles(tasks: list[Any]) -> None:
    """Titles again at the end: a forked server process sets its title after the
    fork record that made it known (PostgreSQL's backends, nginx's workers)."""
    from iotrace.tracer.tasks import proc_title

    for t in tasks:
        if t.tid == t.pid:
            t.title = proc_title(t.pid, t.comm) or t.title
