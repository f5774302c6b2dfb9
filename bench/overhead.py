"""Tracing cost per syscall on a tight loop of 1-byte read()s of /dev/zero.

Side by side in one run (medians of interleaved repetitions): untraced; the
floor (empty BPF programs on sys_enter_read + sys_exit_read); iotrace with
full per-call recording into a trace file; strace; perf trace when installed.
Target: iotrace's added cost <= 1.5x the floor's added cost.

    sudo .venv/bin/python -m bench.overhead [--calls N] [--reps R] [--pread]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from iotrace.tracer.bcc_source import RawProgram

from bench.common import Gated, Recording, compile_c, emit_json, median
from iotrace import events, session

FLOOR = """
TRACEPOINT_PROBE(syscalls, sys_enter_{name}) {{ return 0; }}
TRACEPOINT_PROBE(syscalls, sys_exit_{name}) {{ return 0; }}
"""


def _loop(exe: Path, n: int, file: str | None) -> list[str]:
    return [str(exe), "-n", str(n), *(["-p", file] if file else [])]


def untraced(exe: Path, n: int, file: str | None) -> float:
    out = subprocess.run(_loop(exe, n, file), capture_output=True, text=True, check=True)
    return _cpu_ns(out.stdout)


def _cpu_ns(text: str) -> float:
    """CPU ns per call from the loop's output line "CPU_NS WALL_NS"."""
    return float(text.strip().splitlines()[-1].split()[0])


def _wall_ns(text: str) -> float:
    """Wall ns per call: ptrace-based tracers cost context switches, not tracee CPU."""
    return float(text.strip().splitlines()[-1].split()[1])


def floor(exe: Path, n: int, file: str | None, name: str) -> float:
    prog = RawProgram(FLOOR.format(name=name))
    try:
        return untraced(exe, n, file)
    finally:
        prog.close()


def iotrace(exe: Path, n: int, file: str | None, name: str) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.trace"
        rec = Recording(out)
        g = Gated(_loop(exe, n, file))
        rec.add(g.pid)
        ns = _cpu_ns(g.go())
        stats = rec.stop()
        t = session.load(out)
        op = events.SYSCALL_BY_NAME[name].op
        got = int(((t.events["kind"] == events.Kind.SYSCALL) & (t.events["op"] == op)).sum())
        return ns, got, int(stats["lost_total"])


def strace(exe: Path, n: int, file: str | None) -> float | None:
    if shutil.which("strace") is None:
        return None
    out = subprocess.run(
        ["strace", "-qq", "-e", "trace=read,pread64", "-o", os.devnull, *_loop(exe, n, file)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return _wall_ns(out.stdout)


def perf_trace(exe: Path, n: int, file: str | None) -> float | None:
    if shutil.which("perf") is None:
        return None
    out = subprocess.run(
        ["perf", "trace", "-q", "-e", "read,pread64", "-o", os.devnull, *_loop(exe, n, file)],
        capture_output=True, text=True,
    )  # fmt: skip
    try:
        return _wall_ns(out.stdout)
    except (ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.overhead", description=__doc__)
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pread", action="store_true", help="pread64 of a cached file instead")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.overhead loads BPF programs: run it as root")
    exe = compile_c("readloop")
    name, file = "read", None
    if args.pread:
        name = "pread64"
        fd, file = tempfile.mkstemp(prefix="iotrace-bench-")
        os.write(fd, b"x" * 4096)
        os.close(fd)
    n = args.calls
    res: dict[str, list[float]] = {"untraced": [], "floor": [], "iotrace": []}
    recorded, lost = [], []
    for _ in range(args.reps):  # interleaved, so drift hits every mode alike
        res["untraced"].append(untraced(exe, n, file))
        res["floor"].append(floor(exe, n, file, name))
        ns, got, lo = iotrace(exe, n, file, name)
        res["iotrace"].append(ns)
        recorded.append(got)
        lost.append(lo)
    few = max(20_000, n // 100)  # the slow tracers get fewer calls
    st = strace(exe, few, file)
    pt = perf_trace(exe, few, file)
    base = median(res["untraced"])
    fl = median(res["floor"]) - base
    io = median(res["iotrace"]) - base
    ratio = io / fl if fl > 0 else float("inf")
    print(f"tracing cost per {name}() call, {n:,} calls x {args.reps} reps (medians of the")
    print("loop thread's own CPU time per call, which includes the BPF programs it runs)")
    print(f"{'tracing':<38}{'ns/call':>10}{'added ns':>10}{'vs untraced':>13}")
    rows = [
        ("none", base),
        ("empty BPF enter+exit (the floor)", median(res["floor"])),
        ("iotrace, every call recorded", median(res["iotrace"])),
        ("perf trace (wall time)", pt),
        ("strace (wall time)", st),
    ]
    for label, v in rows:
        if v is None:
            print(f"{label:<38}{'not installed':>33}")
            continue
        print(f"{label:<38}{v:>10,.0f}{v - base:>10,.0f}{v / base:>12.1f}x")
    print(f"iotrace added cost / floor added cost: {ratio:.2f} (target <= 1.5)")
    print(f"recorded {min(recorded):,}..{max(recorded):,} of {n:,} calls per rep; lost {sum(lost)}")
    emit_json(
        "overhead",
        {
            "syscall": name,
            "calls": n,
            "untraced_ns": base,
            "floor_ns": median(res["floor"]),
            "iotrace_ns": median(res["iotrace"]),
            "strace_ns": st,
            "perf_trace_ns": pt,
            "ratio_vs_floor": ratio,
            "recorded_min": min(recorded),
            "lost": sum(lost),
        },
    )
    if file:
        os.unlink(file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
