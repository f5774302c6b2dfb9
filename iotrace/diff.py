"""`iotrace diff A.trace B.trace [--json]`: what changed between two runs.

Both traces go through the same analysis as `iotrace report` (analysis.py), so
every figure here is one the report shows for that trace; this module only
pairs them up and subtracts. Processes are paired by what stays the same from
run to run: the workload's name for iotrace's own workloads, else the process
name (its title if it set one, else its comm); several processes of one name
are summed into one group (`Analysis.summary_of`), so their percentiles are
over all their calls, never an average of percentiles.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from iotrace import __version__, analysis, events, filters
from iotrace.analysis import Analysis, Summary
from iotrace.errors import TraceFileError

SCHEMA: Final = "iotrace.diff/1"

_FAMILY: Final = {s.name: s.family for s in events.SYSCALLS}

# (key, label, unit, how to read it from a Summary). unit "%" values are shares
# (0..1): their change is in percentage points.
_METRICS: Final[tuple[tuple[str, str, str, Callable[[Summary], Any]], ...]] = (
    ("wall_s", "wall time (s)", "", lambda s: round(s.wall_ns / 1e9, 3)),
    ("calls", "calls", "", lambda s: sum(s.syscalls.values())),
    ("requests", "requests", "", lambda s: s.requests.get("count")),
    ("req_per_s", "req/s", "", lambda s: s.requests.get("iops")),
    ("mb_per_s", "MB/s", "", lambda s: s.requests.get("mb_per_s")),
    ("latency_p50_us", "latency p50 (us)", "us", lambda s: s.requests["latency_us"].get("p50")),
    ("latency_p99_us", "latency p99 (us)", "us", lambda s: s.requests["latency_us"].get("p99")),
    ("syscalls_per_request", "syscalls/req", "", lambda s: s.requests.get("syscalls_per_request")),
    ("cpu_us_per_request", "CPU us/req", "us", lambda s: s.requests.get("cpu_us_per_request")),
    ("in_flight_mean", "in flight, mean", "", lambda s: s.in_flight.get("mean")),
    ("in_flight_max", "in flight, max", "", lambda s: s.in_flight.get("max")),
    ("on_cpu", "on CPU %", "%", lambda s: s.time_share.get("on_cpu")),
    ("blocked_io", "blocked in I/O %", "%", lambda s: s.time_share.get("blocked_io")),
    ("mux_wait", "waiting in mux %", "%", lambda s: s.time_share.get("mux_wait")),
    ("runq", "waiting to run %", "%", lambda s: s.time_share.get("runq")),
    ("other_sleep", "other sleep %", "%", lambda s: s.time_share.get("other_sleep")),
)
_SYSCALL_METRICS: Final[tuple[tuple[str, str, str], ...]] = (
    ("calls", "calls", ""),
    ("p50_us", "p50 (us)", "us"),
    ("p99_us", "p99 (us)", "us"),
    ("asleep", "asleep %", "%"),
)


def change(a: float | None, b: float | None) -> dict[str, float | None]:
    """A value in A and in B, the change (B - A) and the relative change
    ((B - A) / A; None when A is 0 or either side has no value)."""
    if a is None or b is None:
        return {"a": a, "b": b, "change": None, "relative": None}
    d = b - a
    rel = None if a == 0 else d / abs(a)
    return {
        "a": a,
        "b": b,
        "change": round(d, 6),
        "relative": None if rel is None else round(rel, 6),
    }


@dataclass
class Group:
    """The processes of one name (or one workload) in one trace."""

    name: str
    kind: str
    """"workload" or "process"."""
    summary: Summary
    pids: list[int]


def groups(a: Analysis) -> dict[tuple[str, str], Group]:
    """(kind, name) -> the group's summary; processes with no I/O are left out."""
    by: dict[tuple[str, str], list[Summary]] = {}
    for s in a.processes:
        if s.label.model == "idle":
            continue
        key = ("workload", s.workload) if s.workload else ("process", s.title or s.comm or "?")
        by.setdefault(key, []).append(s)
    out: dict[tuple[str, str], Group] = {}
    wl = {w.workload: w for w in a.workloads}
    for (kind, name), members in by.items():
        if len(members) == 1:
            s = members[0]
        elif kind == "workload" and name in wl:
            s = wl[name]
        else:
            s = a.summary_of([m.pid for m in members], name)
        out[(kind, name)] = Group(name, kind, s, sorted(m.pid for m in members))
    return out


def _syscall_values(s: Summary | None, name: str) -> dict[str, float | None]:
    f = (s.families.get(name) if s is not None else None) or {}
    lat = f.get("latency_us") or {}
    return {
        "calls": f.get("calls", 0 if s is not None else None),
        "p50_us": lat.get("p50"),
        "p99_us": lat.get("p99"),
        "asleep": f.get("asleep_share"),
    }


def _model(s: Summary | None) -> str | None:
    if s is None:
        return None
    return f"{s.label.model} ({s.label.api})" if s.label.api != "-" else s.label.model


def _group_json(key: tuple[str, str], ga: Group | None, gb: Group | None) -> dict[str, Any]:
    sa = ga.summary if ga else None
    sb = gb.summary if gb else None
    metrics = {
        k: change(get(sa) if sa else None, get(sb) if sb else None) for k, _, _, get in _METRICS
    }
    names = sorted(
        set(sa.families if sa else ()) | set(sb.families if sb else ()),
        key=lambda n: (-max(_calls(sa, n), _calls(sb, n)), n),
    )
    syscalls: list[dict[str, Any]] = []
    for n in names:
        va, vb = _syscall_values(sa, n), _syscall_values(sb, n)
        syscalls.append(
            {
                "syscall": n,
                "family": _FAMILY.get(n, "?"),
                **{k: change(va[k], vb[k]) for k, _, _ in _SYSCALL_METRICS},
            }
        )
    fams: dict[str, list[int | None]] = {}
    for row in syscalls:
        acc = fams.setdefault(str(row["family"]), [None, None])
        for i, side in enumerate(("a", "b")):
            v = row["calls"][side]
            if v is not None:
                acc[i] = (acc[i] or 0) + int(v)
    return {
        "name": key[1],
        "kind": key[0],
        "in": "both" if sa and sb else "a" if sa else "b",
        "pids": {"a": _pids(ga), "b": _pids(gb)},
        "model": {"a": _model(sa), "b": _model(sb), "changed": bool(sa and sb)
                  and _model(sa) != _model(sb)},
        "metrics": metrics,
        "syscalls": syscalls,
        "families": {f: change(a, b) for f, (a, b) in sorted(fams.items())},
    }  # fmt: skip


def _calls(s: Summary | None, name: str) -> int:
    return int((s.families.get(name) or {}).get("calls", 0)) if s is not None else 0


def _pids(g: Group | None) -> list[int]:
    return g.pids if g is not None else []


def _trace_json(a: Analysis) -> dict[str, Any]:
    tr = a.trace
    flt = filters.from_meta(tr.meta)
    return {
        "path": str(tr.path),
        "command": tr.meta.get("command"),
        "duration_s": round(a.duration_ns / 1e9, 6),
        "records": a.records,
        "lost_events": a.lost_total,
        "filter": flt.to_meta() if flt is not None else None,
    }


def diff_json(a: Analysis, b: Analysis) -> dict[str, Any]:
    """The `iotrace.diff/1` document: both traces, then one entry per group."""
    ga, gb = groups(a), groups(b)
    keys = sorted(set(ga) | set(gb), key=lambda k: (k[0] != "workload", k[1]))
    return {
        "schema": SCHEMA,
        "tool_version": __version__,
        "a": _trace_json(a),
        "b": _trace_json(b),
        "groups": [_group_json(k, ga.get(k), gb.get(k)) for k in keys],
    }


# ---------------------------------------------------------------------------
# Text


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "%":
        return f"{100 * v:.1f}"
    if unit == "us":
        from iotrace.report import fmt_us

        return fmt_us(v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"


def _fmt_change(c: dict[str, float | None], unit: str) -> tuple[str, str]:
    d, rel = c["change"], c["relative"]
    if d is None:
        return "", ""
    if unit == "%":
        ch = f"{100 * d:+.1f} pp"
    elif unit == "us":
        from iotrace.report import fmt_us

        ch = ("+" if d >= 0 else "-") + fmt_us(abs(d))
    elif float(d).is_integer():
        ch = f"{int(d):+,}" if d else "0"
    else:
        ch = f"{d:+,.2f}" if abs(d) < 1000 else f"{d:+,.0f}"
    if rel is None:
        return ch, "new" if d else ""
    return ch, f"{100 * rel:+.1f}%"


_W: Final = (24, 12, 12, 12, 9)


def _line(label: str, a: str, b: str, ch: str, rel: str) -> str:
    return (
        f"{label[: _W[0] - 1]:<{_W[0]}}{a:>{_W[1]}}{b:>{_W[2]}}{ch:>{_W[3]}}{rel:>{_W[4]}}".rstrip()
    )


def render_text(doc: dict[str, Any]) -> str:
    """The diff as a table for a terminal (under 80 columns)."""
    lines = []
    for side in ("a", "b"):
        t = doc[side]
        note = f", LOST {t['lost_events']:,}" if t["lost_events"] else ""
        lines.append(
            f"{side.upper()}: {Path(t['path']).name} ({t['duration_s']:.2f} s, "
            f"{t['records']:,} records{note})"
        )
        flt = t.get("filter")
        if flt:
            f = filters.from_meta({"filter": flt})
            if f is not None:
                what = []
                if f.expr:
                    what.append(f"-e {f.expr}")
                if f.min_latency_ns:
                    what.append(f"--min-latency {filters.fmt_ns(f.min_latency_ns)}")
                lines.append(f"   recorded with {' '.join(what)}: figures cover those calls only")
    if doc["a"].get("filter") != doc["b"].get("filter"):
        lines.append("NOTE: the two traces were recorded with different filters")
    lines.append("")
    lines.append(_line("", "A", "B", "CHANGE", "REL"))
    if not doc["groups"]:
        lines.append("no I/O system calls were recorded in either trace")
    for g in doc["groups"]:
        where = {"both": "", "a": "  (only in A)", "b": "  (only in B)"}[g["in"]]
        lines.append("")
        lines.append(f"{g['kind']} {g['name']}{where}")
        m = g["model"]
        if m["changed"]:
            lines.append(f"  model: {m['a']} -> {m['b']}")
        else:
            lines.append(f"  model: {m['a'] or m['b']}")
        for key, label, unit, _ in _METRICS:
            c = g["metrics"][key]
            if c["a"] is None and c["b"] is None:
                continue
            lines.append(_line("  " + label, _fmt(c["a"], unit), _fmt(c["b"], unit),
                               *_fmt_change(c, unit)))  # fmt: skip
        for row in g["syscalls"]:
            lines.append(f"  {row['syscall']} ({row['family']})")
            for key, label, unit in _SYSCALL_METRICS:
                c = row[key]
                if c["a"] is None and c["b"] is None:
                    continue
                lines.append(_line("    " + label, _fmt(c["a"], unit), _fmt(c["b"], unit),
                                   *_fmt_change(c, unit)))  # fmt: skip
        if len(g["families"]) > 1:
            fam = ", ".join(
                f"{f} {_fmt(c['a'], '')} -> {_fmt(c['b'], '')}" for f, c in g["families"].items()
            )
            lines.append(f"  calls per family: {fam}")
    lines.append("")
    lines += textwrap.wrap(
        "CHANGE: B - A (pp: percentage points); REL: (B - A) / A. Processes are paired by "
        "workload, else by name (several of one name summed); time shares are of their "
        "threads' time, latencies those of requests as 'iotrace report' counts them.",
        width=79,
    )
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Command


def _load(path: str, which: str) -> Analysis:
    a = analysis.analyze_file(path)  # TraceFileError: not a trace, missing, ...
    if a.trace.damage:
        raise TraceFileError(
            f"{which} ({path}) is damaged: {a.trace.damage}; "
            f"'iotrace report {path}' shows what it holds"
        )
    return a


def cmd_diff(args: argparse.Namespace) -> int:
    a = _load(args.a, "A")
    b = _load(args.b, "B")
    doc = diff_json(a, b)
    if args.json:
        json.dump(doc, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(doc))
    return 0
