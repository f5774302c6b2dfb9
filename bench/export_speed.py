"""`iotrace export --format perfetto` on traces of two sizes: bytes per record on
disk, records per second and peak memory (issue 14: <= 25 B/record, >= 200 k
records/s, memory flat in the trace's size).

Each trace is a synthetic one written as a real trace file (iotrace.tui.synthetic's
four models, ~54 k records per second of trace; see bench.report_memory), plus any
real traces given with --trace. The export runs in a child process that reports its
own peak resident memory (VmHWM), wall and CPU seconds (CPU time is the figure to
compare on a shared machine; the rate is records over the export's CPU time,
interpreter start-up excluded). `--chrome-json` also times the JSON writer at the
smallest size, for comparison. Asserts nothing; needs no root.

    .venv/bin/python -m bench.export_speed [--events 500000 2000000] [--trace FILE ...]
                                           [--chrome-json]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report_memory import _load, write_trace

PROBE = """
import resource, sys, time
from iotrace.cli import main
t0, c0 = time.perf_counter(), time.process_time()
rc = main(sys.argv[1:])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
hwm = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(f"{hwm} {wall} {cpu}", file=sys.stderr)
sys.exit(rc)
"""


@dataclass
class Run:
    peak_bytes: int
    wall_s: float
    cpu_s: float
    out_bytes: int


def export(trace: Path, fmt: str, out: Path) -> Run:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "export", str(trace), "--format", fmt, "-o", str(out),
         "--force"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=3600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"bench.export_speed: export of {trace} failed:\n{proc.stderr}")
    hwm_kib, wall, cpu = proc.stderr.strip().splitlines()[-1].split()
    size = out.stat().st_size
    out.unlink()
    return Run(int(hwm_kib) * 1024, float(wall), float(cpu), size)


def records_in(trace: Path) -> int:
    from iotrace import session

    return session.tally(trace).events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.export_speed", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[500_000, 2_000_000])
    parser.add_argument("--trace", type=Path, nargs="*", default=[], help="real traces too")
    parser.add_argument("--chrome-json", action="store_true", help="also the JSON writer")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the traces")
    args = parser.parse_args(argv)
    print(f"bench.export_speed ({_load()})")
    head = (
        f"{'trace':>22} {'records':>11} {'format':>11} {'out MiB':>8} {'B/record':>9} "
        f"{'CPU s':>7} {'rec/CPU-s':>10} {'wall s':>7} {'peak MiB':>9}"
    )
    print(head)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        traces: list[tuple[str, Path, int]] = []
        for n in sorted(args.events):
            path = folder / f"synthetic-{n}.trace"
            traces.append((f"synthetic {n / 1e6:g} M", path, write_trace(path, n)))
        traces += [(p.name[-22:], p, records_in(p)) for p in args.trace]
        smallest = min(traces, key=lambda t: t[2])
        rows = []
        for name, path, n in traces:
            fmts = ["perfetto"]
            if args.chrome_json and path == smallest[1]:
                fmts.append("chrome-json")
            for fmt in fmts:
                r = export(path, fmt, folder / "out")
                if fmt == "perfetto" and path.parent == folder:
                    rows.append((n, r))
                print(
                    f"{name:>22} {n:>11,} {fmt:>11} {r.out_bytes / 2**20:>8.1f} "
                    f"{r.out_bytes / n:>9.1f} {r.cpu_s:>7.2f} {n / r.cpu_s:>10,.0f} "
                    f"{r.wall_s:>7.2f} {r.peak_bytes / 2**20:>9.1f}"
                )
        if len(rows) >= 2:
            (n0, r0), (n1, r1) = rows[0], rows[-1]
            print(
                f"{n0:,} -> {n1:,} records ({n1 / n0:.1f}x): peak memory "
                f"{r1.peak_bytes / r0.peak_bytes:.2f}x, CPU time {r1.cpu_s / r0.cpu_s:.2f}x"
            )
    print(f"({_load()} at the end)")
    return 0


if __name__ == "__main__":
    started = time.perf_counter()
    rc = main()
    print(f"bench.export_speed: {time.perf_counter() - started:.0f} s in all")
    sys.exit(rc)
