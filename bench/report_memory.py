"""`iotrace report` on big traces: peak memory and time against the trace's size.

Issue 8: a ten-minute recording holds 37 M+ records; `report` must read it in
bounded memory and time. For each size, a synthetic trace is written as a real
trace file (`--shape models`: iotrace.tui.synthetic's four models, ~54 k records
per second of trace; `--shape storm`: one thread's back-to-back read() calls,
like bench.soak's, where every record is a request: the most a record costs),
then `iotrace report` (text, and --json) runs in a child process that
reports its own peak resident memory (VmHWM: getrusage's ru_maxrss would carry
this process's memory over into the child). Prints records, file size, peak
memory, bytes per record (whole, and net of the report of an empty trace),
seconds, and the ratios between sizes; asserts nothing. `--in-memory` also
times the analysis of the loaded trace (session.load + analysis.analyze, what
holding every record costs) at the smallest size. Needs no root.

    .venv/bin/python -m bench.report_memory [--events 2000000 10000000] [--shape storm]
                                            [--in-memory]
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from iotrace.tui import synthetic

from iotrace.events import SYSCALL_BY_NAME, Kind
from iotrace.session import EVENT_DTYPE, TraceWriter

SEGMENT_S = 20.0
"""Traces are generated and written this many seconds at a time, so a 10 M-record
trace never sits in this process's memory either."""

PROBE = """
import sys, time
t0 = time.perf_counter()
if sys.argv[1] == "in-memory":
    from iotrace import analysis, report, session
    report.report_json(analysis.analyze(session.load(sys.argv[2])))
    rc = 0
else:
    from iotrace.cli import main
    rc = main(sys.argv[1:])
seconds = time.perf_counter() - t0
hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(f"{hwm} {seconds}", file=sys.stderr)
sys.exit(rc)
"""


@dataclass
class Run:
    peak_bytes: int
    seconds: float


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def write_storm(path: Path, n_events: int) -> int:
    """One thread's read() calls back to back (0.3-3 us each), in 15 k-record chunks."""
    rng = np.random.default_rng(1)
    t = synthetic.T0_NS
    with TraceWriter(path, {"command": "bench storm"}, force=True) as w:
        for at in range(0, n_events, 15_000):
            r = np.zeros(min(15_000, n_events - at), dtype=EVENT_DTYPE)
            dur = rng.integers(300, 3000, len(r))
            ts = t + np.cumsum(dur + rng.integers(100, 400, len(r))) - dur
            r["kind"], r["op"] = Kind.SYSCALL, SYSCALL_BY_NAME["read"].op
            r["pid"], r["tid"], r["fd"], r["size"], r["ret"] = 77, 77, 3, 1, 1
            r["ts_ns"], r["end_ns"] = ts, ts + dur
            t = int(ts[-1] + dur[-1])
            w.write_events(r)
    return n_events


def write_trace(path: Path, n_events: int) -> int:
    """A synthetic trace of about `n_events` records, written segment by segment."""
    seconds = synthetic.duration_for(n_events)
    written = 0
    with TraceWriter(path, synthetic.make_trace(0.001).meta, force=True) as w:
        w.write_tasks(list(synthetic.TASKS))
        at = 0.0
        while at < seconds:
            seg = min(SEGMENT_S, seconds - at)
            t = synthetic.make_trace(
                seg,
                t0_ns=synthetic.T0_NS + int(at * 1e9),
                lost_at_s=2.0 if at == 0 else None,
            )
            for i in range(0, len(t.events), 20_000):  # a busy recording's chunks
                w.write_events(t.events[i : i + 20_000])
            written += len(t.events)
            at += seg
            del t
        w.write_stats({"lost": {"sched": 1234}, "unmatched": {}, "evicted": {}})
    return written


def run(*argv: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench.report_memory: {' '.join(argv)} failed:\n{proc.stderr}")
    hwm_kib, seconds = proc.stderr.strip().splitlines()[-1].split()
    return Run(int(hwm_kib) * 1024, float(seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.report_memory", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[2_000_000, 10_000_000])
    parser.add_argument("--shape", choices=["models", "storm"], default="models")
    parser.add_argument(
        "--in-memory", action="store_true", help="also the loaded-trace analysis, smallest size"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write the traces")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        tiny = folder / "tiny.trace"
        write_trace(tiny, 1)
        base = run("report", "--json", str(tiny))
        print(f"bench.report_memory, {args.shape} ({_load()})")
        print(
            f"report of a 1-second trace: peak {base.peak_bytes / 2**20:.0f} MiB (the interpreter, "
            "its libraries, one batch); net B/rec is past that"
        )
        head = (
            f"{'records':>12} {'file MiB':>9} {'mode':>8} {'peak MiB':>9} "
            f"{'B/record':>9} {'net B/rec':>9} {'seconds':>8} {'rec/s':>10}"
        )
        print(head)
        rows: list[tuple[int, Run]] = []
        for n in sorted(args.events):
            path = folder / f"{n}.trace"
            records = (write_storm if args.shape == "storm" else write_trace)(path, n)
            size = path.stat().st_size
            for mode, argv in (("text", ["report"]), ("--json", ["report", "--json"])):
                r = run(*argv, str(path))
                if mode == "--json":
                    rows.append((records, r))
                print(
                    f"{records:>12,} {size / 2**20:>9.1f} {mode:>8} {r.peak_bytes / 2**20:>9.1f} "
                    f"{r.peak_bytes / records:>9.1f} "
                    f"{(r.peak_bytes - base.peak_bytes) / records:>9.1f} "
                    f"{r.seconds:>8.2f} {records / r.seconds:>10,.0f}"
                )
            if args.in_memory and n == min(args.events):
                r = run("in-memory", str(path))
                json_run = rows[-1][1]
                print(
                    f"{records:>12,} {size / 2**20:>9.1f} {'loaded':>8} "
                    f"{r.peak_bytes / 2**20:>9.1f} {r.peak_bytes / records:>9.1f} "
                    f"{(r.peak_bytes - base.peak_bytes) / records:>9.1f} {r.seconds:>8.2f} "
                    f"{records / r.seconds:>10,.0f}"
                )
                print(
                    f"  streamed / loaded: memory {json_run.peak_bytes / r.peak_bytes:.2f}x, "
                    f"time {json_run.seconds / r.seconds:.2f}x"
                )
            path.unlink()
        for (n0, r0), (n1, r1) in itertools.pairwise(rows):
            per = (r1.peak_bytes - r0.peak_bytes) / (n1 - n0)
            print(
                f"{n0:,} -> {n1:,} records ({n1 / n0:.1f}x): "
                f"peak {r1.peak_bytes / r0.peak_bytes:.2f}x, time {r1.seconds / r0.seconds:.2f}x; "
                f"{per:.1f} bytes per added record"
            )
        print(f"({_load()} at the end)")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    rc = main()
    print(f"bench.report_memory: {time.perf_counter() - started:.0f} s in all")
    sys.exit(rc)
