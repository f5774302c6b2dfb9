"""Tracing cost per syscall on a tight loop of 1-byte read()s of /dev/zero.

Side by side in one run (medians of interleaved repetitions): untraced; the
floor (empty BPF programs on sys_enter_read + sys_exit_read); iotrace with
full per-call recording into a trace file; bpftrace keeping an enter->exit
latency histogram in the kernel; perf trace and strace (each when installed;
`sudo ./setup.sh bench` installs them). Target: iotrace's added cost <= 1.5x
the floor's added cost, i.e. below bpftrace's while keeping every event.

    sudo .venv/bin/python -m bench.overhead [--calls N] [--reps R] [--pread]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from iotrace.tracer.bcc_source import RawProgram

from bench.common import Gated, Recording, compile_c, median, publish, require_root
from iotrace import events, runs, session

_CALL_KINDS = (int(events.Kind.SYSCALL), int(events.Kind.SYSCALL_RUN))

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
        mine = t.events[t.events["op"] == op]
        got = runs.calls_in(mine[np.isin(mine["kind"], _CALL_KINDS)])
        return ns, got, int(stats["lost_total"])


BPFTRACE = """
BEGIN {{ printf("attached\\n"); }}
tracepoint:syscalls:sys_enter_{name} /pid == {pid}/ {{ @start[tid] = nsecs; }}
tracepoint:syscalls:sys_exit_{name} /@start[tid]/ {{
    @ns = hist(nsecs - @start[tid]); delete(@start[tid]);
}}
"""


def bpftrace(exe: Path, n: int, file: str | None, name: str) -> float | None:
    """The loop under bpftrace's enter->exit histogram (in-kernel, nothing per call
    reaches user space): what a one-liner costs, for scale."""
    tool = shutil.which("bpftrace")
    if tool is None:
        return None
    g = Gated(_loop(exe, n, file))
    bt = subprocess.Popen(
        [tool, "-e", BPFTRACE.format(name=name, pid=g.pid)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert bt.stdout is not None
    try:
        # BEGIN runs once every probe is attached.
        for line in bt.stdout:
            if line.strip() == "attached":
                break
        else:
            g.proc.kill()
            return None
        return _cpu_ns(g.go())
    finally:
        bt.send_signal(signal.SIGINT)
        try:
            bt.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            bt.kill()
            bt.communicate()


@contextlib.contextmanager
def bpf_stats() -> Iterator[None]:
    """kernel.bpf_stats_enabled for the duration: every program's run time and run
    count appear in its fd's fdinfo. It costs two clock reads per program run, so it
    is on only for the profile pass, never for the timed repetitions."""
    knob = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = knob.read_text().strip()
    knob.write_text("1")
    try:
        yield
    finally:
        knob.write_text(old)


def prog_run_ns() -> int:
    """Run time (ns) summed over the BPF programs this process holds."""
    total = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:bpf-prog":
                continue
            info = Path(f"/proc/self/fdinfo/{fd}").read_text()
        except OSError:
            continue
        for line in info.splitlines():
            key, _, value = line.partition(":")
            if key == "run_time_ns":
                total += int(value)
    return total


def profile(exe: Path, n: int, file: str | None, name: str) -> dict[str, float]:
    """BPF program run time per traced call, floor vs iotrace (kernel.bpf_stats): what
    the programs' bodies cost, apart from the tracepoint dispatch both pay alike."""
    out: dict[str, float] = {}
    with bpf_stats():
        prog = RawProgram(FLOOR.format(name=name))
        try:
            ns0 = prog_run_ns()
            untraced(exe, n, file)
            ns1 = prog_run_ns()
            out["floor_prog_ns"] = (ns1 - ns0) / n
        finally:
            prog.close()
        with tempfile.TemporaryDirectory() as d:
            rec = Recording(Path(d) / "profile.trace")
            g = Gated(_loop(exe, n, file))
            rec.add(g.pid)
            ns0 = prog_run_ns()
            g.go()
            ns1 = prog_run_ns()
            rec.stop()
            out["iotrace_prog_ns"] = (ns1 - ns0) / n
    return out


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
        ["perf", "trace", "-e", "read,pread64", "-o", os.devnull, *_loop(exe, n, file)],
        capture_output=True, text=True,
    )  # fmt: skip
    try:
        return _wall_ns(out.stdout)
    except (ValueError, IndexError):
        return None


def measure(calls: int, reps: int, pread: bool) -> dict[str, Any]:
    """Every mode, interleaved rep by rep so drift hits them alike; medians."""
    exe = compile_c("readloop")
    name, file = "read", None
    if pread:
        name = "pread64"
        fd, file = tempfile.mkstemp(prefix="iotrace-bench-")
        os.write(fd, b"x" * 4096)
        os.close(fd)
    try:
        res: dict[str, list[float]] = {"untraced": [], "floor": [], "iotrace": [], "bpftrace": []}
        recorded, lost = [], []
        for _ in range(reps):
            res["untraced"].append(untraced(exe, calls, file))
            res["floor"].append(floor(exe, calls, file, name))
            ns, got, lo = iotrace(exe, calls, file, name)
            res["iotrace"].append(ns)
            recorded.append(got)
            lost.append(lo)
            bt = bpftrace(exe, calls, file, name)
            if bt is not None:
                res["bpftrace"].append(bt)
        prof = profile(exe, calls, file, name)
        few = max(20_000, calls // 100)  # the slow tracers get fewer calls
        st = strace(exe, few, file)
        pt = perf_trace(exe, few, file)
    finally:
        if file:
            os.unlink(file)
    base = median(res["untraced"])
    fl = median(res["floor"]) - base
    io = median(res["iotrace"]) - base
    bt_ns = median(res["bpftrace"]) if res["bpftrace"] else None
    return {
        "syscall": name,
        "calls": calls,
        "reps": reps,
        "untraced_ns": base,
        "floor_ns": median(res["floor"]),
        "iotrace_ns": median(res["iotrace"]),
        "bpftrace_ns": bt_ns,
        "strace_ns": st,
        "perf_trace_ns": pt,
        "ratio_vs_floor": io / fl if fl > 0 else float("inf"),
        "bpftrace_ratio_vs_floor": (bt_ns - base) / fl if bt_ns is not None and fl > 0 else None,
        **prof,
        "recorded_min": min(recorded),
        "recorded_max": max(recorded),
        "lost": sum(lost),
        "raw": res,
    }


def render(r: dict[str, Any]) -> str:
    name, base = r["syscall"], r["untraced_ns"]
    lines = [
        f"tracing cost per {name}() call, {r['calls']:,} calls x {r['reps']} reps (medians of the",
        "loop thread's own CPU time per call, which includes the BPF programs it runs)",
        f"{'tracing':<40}{'ns/call':>10}{'added ns':>10}{'vs untraced':>13}",
    ]
    rows = [
        ("none", base),
        ("empty BPF enter+exit (the floor)", r["floor_ns"]),
        ("iotrace, every call recorded", r["iotrace_ns"]),
        ("bpftrace enter->exit histogram", r["bpftrace_ns"]),
        ("perf trace (wall time)", r["perf_trace_ns"]),
        ("strace (wall time)", r["strace_ns"]),
    ]
    for label, v in rows:
        if v is None:
            lines.append(f"{label:<40}{'not installed':>33}")
            continue
        lines.append(f"{label:<40}{v:>10,.0f}{v - base:>10,.0f}{v / base:>12.1f}x")
    lines.append(
        f"iotrace added cost / floor added cost: {r['ratio_vs_floor']:.2f} (target <= 1.5)"
    )
    lines.append(
        f"BPF program run time per call (kernel.bpf_stats, a separate pass): floor "
        f"{r['floor_prog_ns']:.0f} ns, iotrace {r['iotrace_prog_ns']:.0f} ns (its enter+exit "
        "bodies plus the scheduler probes); the rest of the added cost is the tracepoint "
        "dispatch both pay"
    )
    if r["bpftrace_ratio_vs_floor"] is not None:
        lines.append(f"bpftrace added cost / floor added cost: {r['bpftrace_ratio_vs_floor']:.2f}")
    lines.append(
        f"recorded {r['recorded_min']:,}..{r['recorded_max']:,} of {r['calls']:,} calls per "
        f"rep; lost {r['lost']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.overhead", description=__doc__)
    ap.add_argument("--calls", type=int, default=2_000_000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--pread", action="store_true", help="pread64 of a cached file instead")
    args = ap.parse_args(argv)
    require_root("overhead")
    r = measure(args.calls, args.reps, args.pread)
    return publish("overhead", render(r), {k: v for k, v in r.items() if k != "raw"})


if __name__ == "__main__":
    raise SystemExit(main())
