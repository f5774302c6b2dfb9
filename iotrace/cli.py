"""The command line: one boundary where expected failures become one line and
an exit code (see iotrace.errors). Command modules are imported lazily so that
`iotrace report` never pays for (or needs) bcc or Textual.
"""

from __future__ import annotations

import argparse
import select
import sys
from collections.abc import Sequence
from typing import Any

from iotrace import __version__
from iotrace.errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    IotraceError,
    UsageError,
)


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns every exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        # main() prefixes "iotrace: "; name only the subcommand here.
        sub = self.prog.removeprefix("iotrace").strip()
        where = f"{sub}: " if sub else ""
        raise UsageError(f"{where}{message} (see '{self.prog} --help')")


def duration(text: str) -> float:
    """Seconds, as a plain number or with a unit: 5, 2.5s, 500ms, 2m."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    t = text.strip().lower()
    scale = 1.0
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix):
            t, scale = t[: -len(suffix)], units[suffix]
            break
    try:
        value = float(t) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration: {text!r} (try 5, 2.5s, 500ms, 2m)"
        ) from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    from iotrace.workloads.options import check_duration

    return check_duration(value, text)


def min_latency(text: str) -> int:
    """--min-latency DUR in nanoseconds (1ms, 500us; a bare number is us)."""
    from iotrace.filters import parse_latency

    try:
        return parse_latency(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def pid_list(text: str) -> list[int]:
    pids = []
    for part in text.split(","):
        try:
            pid = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a pid: {part!r}") from None
        if pid <= 0:
            raise argparse.ArgumentTypeError(f"not a pid: {part!r}")
        pids.append(pid)
    return pids


def _add_recording_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-d",
        "--duration",
        type=duration,
        metavar="SECONDS",
        help="stop after this long (default: run until the workloads end or Ctrl-C)",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="trace file to write (default: iotrace-YYYYmmdd-HHMMSS.trace)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument(
        "--no-tui", action="store_true", help="no dashboard: print a summary table at the end"
    )
    p.add_argument(
        "--ringbuf-mb",
        type=int,
        default=32,
        metavar="MB",
        help="ring buffer size in MiB, a power of two (default: 32)",
    )
    p.add_argument(
        "--drain-ms",
        type=float,
        default=10.0,
        metavar="MS",
        help="how often the ring buffer is drained (default: 10)",
    )
    p.add_argument(
        "--block-time",
        action="store_true",
        help="also record block-device requests, to split each call's time into device "
        "and the rest (one record per request; the report's analysis of them is slow "
        "on big traces, so it is off by default)",
    )
    p.add_argument(
        "--no-fold",
        action="store_true",
        help="a record for every call: do not fold EAGAIN retries, empty waits and "
        "repeats under load into run records (a storm may then overflow the ring)",
    )
    p.add_argument(
        "-e",
        dest="trace_filter",
        action="append",
        metavar="trace=SET",
        help="record only these calls, in strace's words: trace=read,pread64 or families "
        "trace=%%read,%%write,%%net,%%mux,%%aio,%%uring,%%fault (more in the README); "
        "trace=!SET for all but SET; the rest costs nothing",
    )
    p.add_argument(
        "--min-latency",
        type=min_latency,
        metavar="DUR",
        help="record only calls that took at least DUR (1ms, 500us); faster ones are "
        "counted per process and syscall",
    )
    p.add_argument(
        "--summary-file",
        metavar="FILE",
        help="write the end-of-run summary to FILE instead of standard error",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no summary and no progress lines at the end of the run (errors still show)",
    )
    p.add_argument("--ebpf", action="store_true", help="print the BPF program and exit")


# Two real examples per command, shown at the end of its --help and in the man
# page (tools/gen_manpage.py reads them from the parsers, so they cannot drift).
EXAMPLES: dict[str, tuple[str, str]] = {
    "run": ("sudo iotrace run", "sudo iotrace run sync-blocking --no-tui -d 5"),
    "trace": (
        "sudo iotrace trace --no-tui -o dd.trace -- dd if=/dev/zero of=out bs=64k count=200",
        "sudo iotrace trace -e trace=%read,%write --min-latency 1ms -- tar cf d.tar /usr/share/doc",
    ),
    "view": ("iotrace view dd.trace", "iotrace view iotrace-20261203-172200.trace"),
    "report": ("iotrace report dd.trace", "iotrace report dd.trace --html dd.html"),
    "diff": (
        "iotrace diff depth1.trace depth16.trace",
        "iotrace diff --json before.trace after.trace",
    ),
    "export": (
        "iotrace export dd.trace --format csv -o dd-csv",
        "iotrace export dd.trace --format perfetto -o dd.perfetto",
    ),
    "workloads": ("iotrace workloads", "iotrace workloads | grep async-nonblocking"),
    "workload": (
        "iotrace workload sync-blocking --runtime 2s",
        "iotrace workload libaio --number-ios 23 --output-format json",
    ),
    "doctor": ("iotrace doctor", "iotrace doctor --json"),
}


def _epilog(command: str) -> str:
    first, second = EXAMPLES[command]
    return f"examples:\n  {first}\n  {second}"


def _command(sub: Any, name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
    """A command's parser, its --help ending with the command's two examples."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        epilog=_epilog(name),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        help=help,
        **kw,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="iotrace",
        description="See how a Linux program does I/O: the four I/O models, per request.",
    )
    parser.add_argument("--version", action="version", version=f"iotrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _command(sub, "run", "run built-in workloads under tracing")
    p.add_argument(
        "workloads",
        nargs="*",
        metavar="WORKLOAD",
        help="workloads to run (default: one per model); see 'iotrace workloads'",
    )
    _add_recording_options(p)
    p.add_argument("--clean", action="store_true", help="remove the workload data first")
    p.add_argument(
        "--overhead",
        action="store_true",
        help="run the workloads untraced first, then traced, and report what tracing cost",
    )

    p = _command(sub, "trace", "trace running processes or a command")
    p.add_argument(
        "-p",
        "--pid",
        type=pid_list,
        metavar="PID[,PID...]",
        help="trace these processes (and their children)",
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="trace every process on the machine except iotrace itself (only when asked)",
    )
    _add_recording_options(p)
    p.add_argument(
        "command_argv",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND [ARGS...]",
        help="run COMMAND as the invoking user and trace it with its children",
    )

    p = _command(sub, "view", "open a saved trace in the dashboard (no root needed)")
    p.add_argument("file", metavar="FILE")

    p = _command(sub, "report", "summarise a saved trace (no root needed)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--html", metavar="OUT", help="write a static HTML report")
    p.add_argument("--force", action="store_true", help="overwrite an existing --html file")

    p = _command(sub, "diff", "what changed between two traces (no root needed)")
    p.add_argument("a", metavar="A.trace")
    p.add_argument("b", metavar="B.trace")
    p.add_argument("--json", action="store_true", help="machine-readable diff")

    p = _command(sub, "export", "convert a saved trace (no root needed)")
    p.add_argument("file", metavar="FILE")
    p.add_argument(
        "--format", required=True, choices=["parquet", "csv", "jsonl", "perfetto", "chrome-json"]
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")

    _command(sub, "workloads", "list the built-in workloads")

    p = _command(
        sub, "workload", "run one workload untraced and print its own figures", add_help=False
    )
    p.add_argument("workload_argv", nargs=argparse.REMAINDER, metavar="NAME [OPTIONS]")

    p = _command(sub, "doctor", "check that this machine can trace")
    p.add_argument("--json", action="store_true", help="machine-readable result")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one iotrace command; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # `iotrace run NAME... -- OPTIONS`: what follows `--` goes to the workloads.
    workload_options: list[str] = []
    if args_list[:1] == ["run"] and "--" in args_list:
        cut = args_list.index("--")
        args_list, workload_options = args_list[:cut], args_list[cut + 1 :]
    try:
        if args_list[:1] == ["workload"]:
            # Everything after the name is the workload's own (its -h/--help
            # too, which argparse would otherwise take as unknown options of
            # 'iotrace workload' before the remainder starts).
            args = argparse.Namespace(command="workload", workload_argv=args_list[1:])
        else:
            args = build_parser().parse_args(args_list)
        args.workload_options = workload_options
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return _dispatch(args)
    except IotraceError as exc:
        print(f"iotrace: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("iotrace: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        # `iotrace report x | head`: the reader left; not an error worth a trace.
        if _stdout_reader_gone():
            return 0
        # Any other pipe (a workload's, a helper's) breaking is a real failure.
        print(f"iotrace: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def _stdout_reader_gone() -> bool:
    """True when standard output is a pipe whose reading end was closed."""
    try:
        p = select.poll()
        p.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in p.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _dispatch(args: argparse.Namespace) -> int:
    cmd = args.command
    if cmd in ("run", "trace"):
        from iotrace import recording

        return recording.cmd_run(args) if cmd == "run" else recording.cmd_trace(args)
    if cmd == "report":
        from iotrace import report

        return report.cmd_report(args)
    if cmd == "diff":
        from iotrace import diff

        return diff.cmd_diff(args)
    if cmd == "export":
        from iotrace import export

        return export.cmd_export(args)
    if cmd == "view":
        from iotrace.tui import view

        return view.cmd_view(args)
    if cmd == "workloads":
        from iotrace.workloads import cli as wcli

        return wcli.cmd_list()
    if cmd == "workload":
        from iotrace.workloads import cli as wcli

        return wcli.cmd_workload(args.workload_argv)
    if cmd == "doctor":
        from iotrace import doctor

        return doctor.cmd_doctor(args)
    raise UsageError(f"unknown command {cmd!r}")


def main_entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
