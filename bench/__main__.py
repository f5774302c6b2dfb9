"""`make bench`: every benchmark in one go, one table of figures and ratios.

Each part runs as its own process (a clean tracer, its own memory figures),
prints its detailed lines as it goes and ends with one `JSON name {...}`
line; this collects those into one table (figure, measured, against, target,
met) and one JSON file. Every ratio is between figures measured side by side
in this run: the machine is shared and noisy, absolute times across runs are
not comparable.

    sudo ./setup.sh bench                 installs strace, bpftrace, perf and fio, then this
    sudo .venv/bin/python -m bench [--quick] [--only NAME,...] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import foreign_bpf_holders

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Part:
    name: str
    module: str
    args: list[str]
    quick: list[str]
    needs_root: bool = True


PARTS = [
    Part("overhead_read", "bench.overhead", [], ["--calls", "200000", "--reps", "2"]),
    Part(
        "overhead_pread",
        "bench.overhead",
        ["--pread"],
        ["--pread", "--calls", "200000", "--reps", "2"],
    ),
    # every call a record: what the drain itself takes, and its memory
    Part("pipeline", "bench.pipeline", ["--no-fold"], ["--no-fold", "--seconds", "2"]),
    # as users run it: repeats fold into run records once the ring fills
    Part("pipeline_fold", "bench.pipeline", [], ["--seconds", "2"]),
    Part("pipeline_2", "bench.pipeline", ["--procs", "2"], ["--procs", "2", "--seconds", "2"]),
    Part(
        "pipeline_overflow",
        "bench.pipeline",
        ["--overflow", "--no-fold", "--seconds", "5"],
        ["--overflow", "--no-fold", "--seconds", "2"],
    ),
    Part("fidelity", "bench.fio_fidelity", [], ["--runtime", "1"]),
    Part("traced_fio", "bench.traced_fio", [], ["--runtime", "1"]),
    Part(
        "dashboard",
        "bench.dashboard",
        [],
        ["--events", "100000", "--view-events", "200000", "--repeat", "3"],
        needs_root=False,
    ),
    Part("startup", "bench.startup", [], ["--runs", "1"]),
    # the user's first command, in a real terminal: loss and redraws seen from outside
    Part("first_run", "bench.first_run", [], ["--runtime", "15"]),
]


def _json_line(stdout: str) -> dict[str, Any] | None:
    """The part's figures: its last `JSON name {...}` line (or a bare JSON object line)."""
    for line in reversed(stdout.splitlines()):
        text = line.split(" ", 2)[2] if line.startswith("JSON ") else line
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def run_part(part: Part, quick: bool) -> dict[str, Any]:
    args = part.quick if quick else part.args
    print(f"\n== {part.name}: python -m {part.module} {' '.join(args)}", flush=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", part.module, *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if not line.startswith("JSON "):
            print("   " + line, end="", flush=True)
    rc = proc.wait()
    took = time.monotonic() - t0
    figures = _json_line("".join(lines))
    if rc != 0 or figures is None:
        print(f"   {part.name} failed (exit {rc})", flush=True)
        return {"error": f"exit {rc}" if rc else "no JSON line", "seconds": took}
    figures["seconds"] = round(took, 1)
    return figures


@dataclass(frozen=True)
class Row:
    part: str
    figure: str
    value: Callable[[dict[str, Any]], float | None]
    fmt: str
    target: str = ""
    met: Callable[[float], bool] | None = None
    against: Callable[[dict[str, Any]], str] = lambda _r: ""


def _fidelity(engine: str) -> Callable[[dict[str, Any]], float | None]:
    def get(r: dict[str, Any]) -> float | None:
        for case in r.get("results", []):
            if case.get("engine") == engine:
                ratio = case.get("ratio")
                return None if ratio is None else float(ratio)
        return None

    return get


def _fidelity_against(engine: str) -> Callable[[dict[str, Any]], str]:
    def get(r: dict[str, Any]) -> str:
        for case in r.get("results", []):
            if case.get("engine") == engine and case.get("fio_iops"):
                return f"{case['iotrace_iops']:,.0f} vs fio {case['fio_iops']:,.0f} IOPS"
        return ""

    return get


def _added_vs_floor(r: dict[str, Any]) -> str:
    return (
        f"{r['iotrace_ns'] - r['untraced_ns']:,.0f} vs "
        f"{r['floor_ns'] - r['untraced_ns']:,.0f} ns added"
    )


def _ns(key: str) -> Callable[[dict[str, Any]], float | None]:
    return lambda r: r.get(key)


ROWS = [
    Row(
        "overhead_read",
        "read(): iotrace added cost / empty-program floor's",
        _ns("ratio_vs_floor"),
        "{:.2f}x",
        "<= 1.5x",
        lambda v: v <= 1.5,
        _added_vs_floor,
    ),
    Row(
        "overhead_read",
        "read(): bpftrace histogram added cost / floor's",
        _ns("bpftrace_ratio_vs_floor"),
        "{:.2f}x",
        "> iotrace's",
        None,
        lambda r: "" if r.get("bpftrace_ns") is None else f"{r['bpftrace_ns']:,.0f} ns/call",
    ),
    Row(
        "overhead_read",
        "read(): perf trace / untraced",
        lambda r: r["perf_trace_ns"] / r["untraced_ns"] if r.get("perf_trace_ns") else None,
        "{:.0f}x",
    ),
    Row(
        "overhead_read",
        "read(): strace / untraced",
        lambda r: r["strace_ns"] / r["untraced_ns"] if r.get("strace_ns") else None,
        "{:.0f}x",
    ),
    Row(
        "overhead_read",
        "read(): calls recorded / made",
        lambda r: r["recorded_min"] / r["calls"],
        "{:.4f}",
        "1 (0 lost)",
        lambda v: abs(v - 1.0) < 1e-6,
    ),
    Row(
        "overhead_pread",
        "pread64() of a cached file: iotrace added / floor's",
        _ns("ratio_vs_floor"),
        "{:.2f}x",
        "<= 1.5x",
        lambda v: v <= 1.5,
        _added_vs_floor,
    ),
    Row(
        "pipeline_fold",
        "1 storm: calls counted / made (runs fold repeats)",
        lambda r: r["recorded"] / r["calls"] if r["lost"] == 0 else 0.0,
        "{:.4f}",
        "1, 0 lost",
        lambda v: abs(v - 1.0) < 1e-6,
        lambda r: (
            f"{r['events_per_s'] / 1e6:.2f} M calls/s in {r['records']:,} records, "
            f"{r['lost']:,} lost"
        ),
    ),
    Row(
        "pipeline",
        "1 storm, no folding: events/s recorded with zero loss",
        lambda r: r["events_per_s"] / 1e6 if r["lost"] == 0 else 0.0,
        "{:.2f} M/s",
        "0 lost",
        None,
        lambda r: f"{r['recorded']:,} recorded, {r['lost']:,} lost",
    ),
    Row(
        "pipeline",
        "drain capacity (drain + file threads)",
        lambda r: r["drain_events_per_cpu_s"] / 1e6,
        "{:.2f} M rec/CPU-s",
        ">= 10",
        lambda v: v >= 10,
    ),
    Row(
        "pipeline",
        "tracer memory: max / first after warm-up",
        lambda r: r["rss_max_mib"] / r["rss_first_mib"] if r.get("rss_first_mib") else None,
        "{:.2f}",
        "<= 1.05",
        lambda v: v <= 1.05,
        lambda r: (
            f"{r['rss_first_mib']:.0f} -> {r['rss_max_mib']:.0f} MiB"
            if r.get("rss_first_mib")
            else ""
        ),
    ),
    Row(
        "pipeline",
        "trace file bytes per event",
        _ns("bytes_per_event_file"),
        "{:.1f} B",
    ),
    Row(
        "pipeline_2",
        "2 storms on 2 CPUs: calls counted / made",
        lambda r: r["recorded"] / r["calls"] if r["lost"] == 0 else 0.0,
        "{:.4f}",
        "1, 0 lost",
        lambda v: abs(v - 1.0) < 1e-6,
        lambda r: (
            f"{r['events_per_s'] / 1e6:.2f} M calls/s in {r['records']:,} records "
            f"({r['runs']:,} runs), {r['lost']:,} lost"
        ),
    ),
    Row(
        "pipeline_overflow",
        "1 MiB ring, 250 ms drain: loss counted in LOST",
        lambda r: 1.0 if r["lost"] > 0 and r["lost"] == r["lost_in_records"] else 0.0,
        "{:.0f}",
        "1 (= yes)",
        lambda v: abs(v - 1.0) < 1e-6,
        lambda r: (
            f"{r['lost']:,} lost, {r['lost_in_records']:,} in {r['lost_records']} LOST records"
        ),
    ),
    *(
        Row(
            "fidelity",
            f"workload vs fio IOPS, {label}",
            _fidelity(engine),
            "{:.2f}",
            ">= 0.9",
            lambda v: v >= 0.9,
            _fidelity_against(engine),
        )
        for engine, label in (
            ("psync", "psync depth 1"),
            ("libaio", "libaio depth 32"),
            ("io_uring", "io_uring depth 32"),
            ("posixaio", "posixaio depth 32"),
        )
    ),
    Row(
        "traced_fio",
        "fio libaio depth 32: IOPS traced / untraced",
        _ns("ratio"),
        "{:.3f}",
        ">= 0.95",
        lambda v: v >= 0.95,
        lambda r: (
            f"{r['traced_iops']:,.0f} vs {r['untraced_iops']:,.0f} IOPS, {r['lost']} lost"
            if r.get("fio")
            else "fio not installed"
        ),
    ),
    Row(
        "dashboard",
        "dashboard redraws per second following live",
        _ns("fps"),
        "{:.1f}/s",
        ">= 10",
        lambda v: v >= 10,
    ),
    Row(
        "dashboard",
        "dashboard frame at 1 M events, 160x48, worst case",
        _ns("worst_frame_ms"),
        "{:.1f} ms",
        "< 50 ms",
        lambda v: v < 50,
        lambda r: f"{r.get('events', 0):,} events; {r.get('worst_frame', '')}",
    ),
    Row(
        "dashboard",
        "events reaching the dashboard past a slow frame",
        lambda r: r["reached"] / r["delivered"],
        "{:.4f}",
        "1 (all)",
        lambda v: abs(v - 1.0) < 1e-6,
        lambda r: f"{r['reached']:,} of {r['delivered']:,}",
    ),
    Row(
        "dashboard",
        "view: first frame of a 5 M-event trace",
        _ns("view_first_frame_s"),
        "{:.2f} s",
        "< 3 s",
        lambda v: v < 3,
        lambda r: f"{r.get('view_events', 0):,} events",
    ),
    Row(
        "dashboard",
        "dashboard store bytes per event in memory",
        _ns("store_bytes_per_event"),
        "{:.1f} B",
        "< 100 B",
        lambda v: v < 100,
    ),
    Row(
        "first_run",
        "`iotrace run` + dashboard in tmux, 60 s: calls lost",
        lambda r: r["screen_lost"] + r["trace_lost"],
        "{:,.0f}",
        "0",
        lambda v: v == 0,
        lambda r: f"{r['calls']:,} calls in {r['records']:,} records; load {r['load']}",
    ),
    Row(
        "first_run",
        "`iotrace run` + dashboard in tmux: screen redraws/s",
        lambda r: r["redraws_per_s_median"],
        "{:.0f}/s",
        ">= 10",
        lambda v: v >= 10,
        lambda r: f"median; min {r['redraws_per_s_min']}/s, captured at 20/s",
    ),
    Row(
        "startup",
        "`iotrace run` start -> first recorded event",
        lambda r: r["run"]["first_event_s"],
        "{:.2f} s",
    ),
    Row(
        "startup",
        "`iotrace trace -- CMD` start -> first recorded event",
        lambda r: r["trace"]["first_event_s"],
        "{:.2f} s",
    ),
]


def table(results: dict[str, dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    out, rows = [], []
    out.append(f"{'figure':<54}{'measured':>14}  {'target':<12}{'met':<5}against")
    for row in ROWS:
        r = results.get(row.part)
        value: float | None = None
        against = ""
        if r is not None and "error" not in r:
            try:
                value = row.value(r)
                against = row.against(r)
            except (KeyError, TypeError, ZeroDivisionError):
                value = None
        shown = row.fmt.format(value) if value is not None else "-"
        met = "" if row.met is None or value is None else ("yes" if row.met(value) else "NO")
        if r is None:
            against = "not run"
        elif "error" in r:
            against = f"failed: {r['error']}"
        out.append(f"{row.figure:<54}{shown:>14}  {row.target:<12}{met:<5}{against}")
        rows.append(
            {
                "part": row.part,
                "figure": row.figure,
                "value": value,
                "target": row.target,
                "met": None if not met else met == "yes",
                "against": against,
            }
        )
    return "\n".join(out), rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the suite runs")
    ap.add_argument("--only", default="", help="comma-separated parts: " + ", ".join(
        p.name for p in PARTS))  # fmt: skip
    ap.add_argument(
        "--json",
        default=str(RESULTS / "latest.json"),
        help="where to write the figures (default: bench/results/latest.json)",
    )
    args = ap.parse_args(argv)
    only = {s for s in args.only.split(",") if s}
    unknown = only - {p.name for p in PARTS}
    if unknown:
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        raise SystemExit("bench: loads BPF programs; run it as root (sudo ./setup.sh bench)")
    others = foreign_bpf_holders()
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    for part in PARTS:
        if only and part.name not in only:
            continue
        results[part.name] = run_part(part, args.quick)
    text, rows = table(results)
    took = time.monotonic() - t0
    print(f"\n== iotrace benchmarks, {time.strftime('%Y-%m-%d %H:%M')}, {platform.release()}, "
          f"{os.cpu_count()} CPUs, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}, "
          f"{took / 60:.1f} min{' (--quick)' if args.quick else ''}")  # fmt: skip
    if others:
        print(f"note: {len(others)} other process(es) held BPF programs at the start "
              f"({', '.join(map(str, others[:5]))}): syscall tracepoints they attach slow "
              "every syscall, so untraced baselines are inflated")  # fmt: skip
    print(text)
    doc = {
        "bench": "iotrace",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "load_average_start": load0,
        "quick": args.quick,
        "seconds": round(took, 1),
        "foreign_bpf_holders": others,
        "rows": rows,
        "parts": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"figures written to {args.json}")
    failed = [n for n, r in results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
