"""Workload options, spelled as in fio where fio has a word for it.

fio writes `iodepth_batch_complete_min`; both that and the dashed form
(`--iodepth-batch-complete-min`) are accepted. Sizes take fio's suffixes
(k, m, g; powers of 1024), durations take us, ms, s, m.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from iotrace.errors import UsageError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    """Bytes from '4096', '4k', '4KiB', '256m', '1g' (fio: multiples of 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 4k, 256m, 1g)")
    value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive: {text!r}")
    return value


MAX_DURATION_S = 3 * 86400
"""The longest duration any option takes: more is a typo (`-d 1e9` is 31 years)."""


def check_duration(value: float, text: str) -> float:
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f"duration too long: {text!r} (at most {MAX_DURATION_S // 86400} days)"
        )
    return value


def parse_duration(text: str, *, allow_zero: bool = False) -> float:
    """Seconds from '5', '2.5s', '20ms', '100us', '2m'."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|ms|s|m|h)?\s*", text.lower())
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 20ms, 5s, 1m)")
    value = float(m.group(1)) * _TIME_UNITS[m.group(2) or "s"]
    if value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"duration must be positive: {text!r}")
    return check_duration(value, text)


def _duration0(text: str) -> float:
    return parse_duration(text, allow_zero=True)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"count must be >= 0: {text!r}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text!r}")
    return value


def _bool01(text: str) -> bool:
    if text in ("0", "1"):
        return text == "1"
    raise argparse.ArgumentTypeError(f"expected 0 or 1, not {text!r}")


@dataclass
class Options:
    """Parsed options; None means 'the workload's default'."""

    bs: int = 4096
    filesize: int = 256 << 20
    size: int | None = None
    number_ios: int | None = None
    runtime: float | None = None
    iodepth: int | None = None
    iodepth_batch_complete_min: int = 1
    iodepth_batch_submit: int | None = None
    rw: str = "randread"
    direct: bool | None = None
    fds: int = 4
    transport: str | None = None
    delay: float = 0.010
    jitter: float = 0.0
    backoff: float = 0.0
    pipe_reads: int | None = None
    socket_reads: int | None = None
    file_reads: int | None = None
    force_async: int | None = None
    seed: int = 1
    directory: str | None = None
    clean: bool = False
    output_format: str = "normal"
    given: set[str] = field(default_factory=set)
    """Option names (dest) given on the command line, to refuse ones a workload ignores."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser(prog: str = "iotrace workload NAME") -> argparse.ArgumentParser:
    p = _Parser(
        prog=prog,
        add_help=False,
        allow_abbrev=False,
        description="Run one built-in workload untraced and print its own figures.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # The same two examples as 'iotrace workload' in iotrace/cli.py (kept there,
        # where the man page generator reads them); a literal here keeps workloads/
        # free of an import of the CLI.
        epilog="examples:\n  iotrace workload sync-blocking --runtime 2s\n"
        "  iotrace workload libaio --number-ios 23 --output-format json",
    )
    a = p.add_argument
    a("-h", "--help", action="store_true", help="show this help and exit")
    a("--bs", type=parse_size, metavar="SIZE", help="block size per request (default 4k)")
    a(
        "--filesize",
        type=parse_size,
        metavar="SIZE",
        help="size of the data file read by file workloads (default 256m)",
    )
    a(
        "--size",
        type=parse_size,
        metavar="SIZE",
        help="stop after transferring this many bytes in total",
    )
    a("--number-ios", type=_positive, metavar="N", help="stop after exactly N requests")
    a(
        "--runtime",
        type=parse_duration,
        metavar="TIME",
        help="stop after this long (default: the workload's own, see 'iotrace workloads')",
    )
    a("--iodepth", type=_positive, metavar="N", help="requests in flight (async workloads)")
    a(
        "--iodepth-batch-complete-min",
        type=_positive,
        metavar="N",
        help="reap at least N completions per wait (libaio, io_uring; default 1)",
    )
    a(
        "--iodepth-batch-submit",
        "--iodepth-batch",
        type=_positive,
        metavar="N",
        help="submit at most N requests per io_submit()/io_uring_enter() (libaio, io_uring)",
    )
    a("--rw", choices=["read", "randread"], help="sequential or random offsets (default randread)")
    a("--direct", type=_bool01, metavar="0|1", help="O_DIRECT (1) or page cache (0)")
    a("--fds", type=_positive, metavar="N", help="pipes/sockets served by one thread (default 4)")
    a("--transport", choices=["pipe", "socket"], help="what the paced producers feed")
    a(
        "--delay",
        type=_duration0,
        metavar="TIME",
        help="producer pause before each write (default 10ms)",
    )
    a(
        "--jitter",
        type=_duration0,
        metavar="TIME",
        help="random +/- added to each producer pause (default 0)",
    )
    a(
        "--backoff",
        type=_duration0,
        metavar="TIME",
        help="sync-nonblocking: sleep after EAGAIN (default 0 = spin)",
    )
    a("--pipe-reads", type=_count, metavar="N", help="exactly N reads from the pipe")
    a("--socket-reads", type=_count, metavar="N", help="exactly N reads from the socket")
    a("--file-reads", type=_count, metavar="N", help="exactly N reads from the data file")
    a(
        "--force-async",
        type=_count,
        metavar="N",
        help="io_uring: every Nth request with IOSQE_ASYNC, i.e. to a kernel worker (0 = never)",
    )
    a("--seed", type=int, metavar="N", help="seed for offsets, jitter and stream data (default 1)")
    a("--directory", metavar="DIR", help="data directory (default ~/.cache/iotrace)")
    a("--clean", action="store_true", help="remove the data directory first (rebuilt on use)")
    a("--output-format", choices=["normal", "json"], help="figures as text or one JSON object")
    return p


def normalise(argv: Sequence[str]) -> list[str]:
    """fio spells options with underscores; accept them as dashes."""
    out = []
    for arg in argv:
        if arg.startswith("--") and "_" in arg.split("=", 1)[0]:
            name, eq, value = arg.partition("=")
            arg = name.replace("_", "-") + eq + value
        out.append(arg)
    return out


def parse(argv: Sequence[str]) -> tuple[Options, bool]:
    """(options, help_asked). Raises UsageError for anything malformed."""
    ns = build_parser().parse_args(normalise(argv))
    opts = Options()
    given = set()
    for name, value in vars(ns).items():
        if name == "help" or value is None or value is False:
            continue
        setattr(opts, name, value)
        given.add(name)
    opts.given = given
    if opts.bs % 512:
        raise UsageError(f"--bs must be a multiple of 512 bytes (O_DIRECT), not {opts.bs}")
    if opts.filesize < opts.bs:
        raise UsageError(f"--filesize ({opts.filesize}) is smaller than --bs ({opts.bs})")
    opts.filesize -= opts.filesize % opts.bs
    if opts.directory is not None and not os.path.isdir(opts.directory):
        # A typo must not create a tree (and a 256 MiB data file) somewhere new.
        raise UsageError(f"--directory {opts.directory}: no such directory")
    return opts, bool(ns.help)


def help_text() -> str:
    return build_parser().format_help()
