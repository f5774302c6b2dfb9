"""`iotrace report FILE [--json] [--html OUT]` and the summary table that
`iotrace run/trace --no-tui` prints at the end.

Every renderer works from one `analysis.Analysis`, so the table, the JSON and
the HTML page always show the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from iotrace import __version__, analysis, blocktime, fdpaths, filters, session
from iotrace.analysis import Analysis, Summary

SCHEMA = "iotrace.report/1"


# ---------------------------------------------------------------------------
# Text


def fmt_us(v: float | None) -> str:
    """A latency in microseconds with precision that fits its size."""
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    if v < 10_000_000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def fmt_count(n: int | float | None) -> str:
    """A count that fits its column: 999,999 then 1.23M."""
    if n is None:
        return "-"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{int(n):,}"


def fmt_mib(nbytes: int | None) -> str:
    if nbytes is None:
        return ""
    mib = nbytes / (1 << 20)
    if mib == 0:
        return "0"
    if mib < 0.01:
        return "<0.01"
    if mib < 100:
        return f"{mib:.2f}"
    return f"{mib:,.0f}"


def fmt_pct(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}"


_HEAD = ("PID", "COMM / SYSCALL", "CALLS", "REQS", "MiB", "LAT p50(us)", "p99(us)", "BLOCK%")
_W = (8, 18, 8, 8, 7, 12, 10, 7)


def _row(cells: tuple[str, ...]) -> str:
    left = f"{cells[0]:<{_W[0]}}{cells[1][: _W[1] - 1]:<{_W[1]}}"
    right = "".join(f"{c:>{w}}" for c, w in zip(cells[2:], _W[2:], strict=True))
    return (left + right).rstrip()


def _blocked(s: Summary) -> float | None:
    ts = s.time_share
    if ts.get("blocked_io") is None:
        return None
    return (ts.get("blocked_io") or 0.0) + (ts.get("mux_wait") or 0.0)


def _details(s: Summary) -> str:
    """One line of the figures that tell the models apart."""
    r = s.requests
    parts = []
    if r.get("iops") is not None:
        mbs = f" {r['mb_per_s']:.2f} MB/s" if r.get("mb_per_s") is not None else ""
        parts.append(f"{r['iops']:,.0f} req/s{mbs}")
    if r.get("syscalls_per_request") is not None:
        parts.append(f"{r['syscalls_per_request']:.2f} syscalls/req")
    if r.get("cpu_us_per_request") is not None:
        parts.append(f"CPU {fmt_us(r['cpu_us_per_request'])} us/req")
    if r.get("eagain_per_request"):
        parts.append(f"EAGAIN {r['eagain_per_request']:.1f}/req")
    if s.in_flight.get("max", 0) > 1:
        parts.append(f"in flight mean {s.in_flight['mean']:.1f} max {s.in_flight['max']}")
    for name, label in (
        ("iocbs_per_io_submit", "iocbs/io_submit"),
        ("events_per_io_getevents", "events/io_getevents"),
        ("sqes_per_io_uring_enter", "SQEs/enter"),
    ):
        if name in s.batch:
            parts.append(f"{s.batch[name]['mean']:.1f} {label}")
    if r.get("to_kernel_workers"):
        parts.append(f"{r['to_kernel_workers']:,} to io-wq workers")
    if r.get("not_observed"):
        parts.append(f"{r['not_observed']:,} completions not observed")
    if r.get("sqpoll"):
        parts.append(
            "submitted by the kernel's SQ thread (IORING_SETUP_SQPOLL): latency and in "
            "flight cover only the kernel's part, from the SQ thread's pickup to completion, "
            "not the time a request waited in the ring"
        )
    if r.get("major_faults"):
        parts.append(
            f"{r['major_faults']:,} major page faults (timed from the fault to the thread's "
            "return to a CPU)"
        )
    runq = s.time_share.get("runq")
    if runq is not None and runq >= 0.05:
        parts.append(f"waiting to run {fmt_pct(runq)}% of the time")
    return "; ".join(parts)


def _process_lines(s: Summary, width: int, builtin: frozenset[str] = frozenset()) -> list[str]:
    r = s.requests
    lat = r["latency_us"]
    lines = [
        _row(
            (
                str(s.pid),
                s.title or s.comm or "?",
                fmt_count(sum(s.syscalls.values())),
                fmt_count(r["count"]),
                fmt_mib(r["bytes"]),
                fmt_us(lat["p50"]),
                fmt_us(lat["p99"]),
                fmt_pct(_blocked(s)),
            )
        )
    ]
    indent = " " * _W[0]
    label = s.label
    head = f"{label.model} ({label.api})" if label.api != "-" else label.model
    if s.title:
        head = f"{s.comm}: {s.title}: {head}"
    if s.workload in builtin:
        head = f"workload {s.workload}: {head}"
    elif s.workload and s.workload != s.comm:
        # A process of a traced command (`trace -- sh -c ...`): not a workload.
        head = f"of {s.workload}: {head}"
    wrap = textwrap.TextWrapper(
        width=width - 1, initial_indent=indent + "= ", subsequent_indent=indent + "  "
    )
    lines += wrap.wrap(f"{head}: {label.evidence}")
    if s.expected_model and label.model not in (s.expected_model, "idle"):
        lines += wrap.wrap(f"! the workload declares {s.expected_model}")
    mixed = {m: v for m, v in label.breakdown.items() if m != label.model and v >= 0.05}
    if mixed:
        parts = ", ".join(f"{m} {100 * v:.0f}%" for m, v in sorted(mixed.items()))
        lines += wrap.wrap(f"also: {parts} of I/O calls")
    details = _details(s)
    if details:
        wrap.initial_indent = indent + "  "
        lines += wrap.wrap(details)
    if len(s.families) > 1:
        top = sorted(s.families.items(), key=lambda kv: -kv[1]["calls"])[:8]
        for name, f in top:
            fl = f["latency_us"]
            share = f["asleep_share"] if f["calls"] else None
            lines.append(
                _row(
                    (
                        "",
                        "  " + name,
                        fmt_count(f["calls"]),
                        "",
                        fmt_mib(f["bytes"]),
                        fmt_us(fl["p50"]),
                        fmt_us(fl["p99"]),
                        fmt_pct(share),
                    )
                )
            )
    return lines


def _block_lines(b: blocktime.BlockStats, width: int) -> list[str]:
    """The device line under a process: what its data calls spent at the device."""
    wrap = textwrap.TextWrapper(
        width=width - 1, initial_indent=" " * _W[0] + "  ", subsequent_indent=" " * _W[0] + "  "
    )
    lat = b.latency_us()
    parts = [
        f"device: {b.requests:,} block requests, {fmt_mib(b.bytes)} MiB, "
        f"p50 {fmt_us(lat['p50'])} p99 {fmt_us(lat['p99'])} us"
    ]
    if b.device_share is not None:
        parts.append(f"{fmt_pct(b.device_share)}% of data-call time at the device")
    if b.cache_hit_share is not None:
        parts.append(
            f"{fmt_pct(b.cache_hit_share)}% of {b.data_calls:,} data calls did no block I/O"
        )
    if b.outside_calls:
        parts.append(f"{b.outside_calls:,} requests outside any call")
    if b.errors:
        parts.append(f"{b.errors:,} failed")
    if b.slowest is not None:
        w = b.slowest
        parts.append(
            f"most at the device: a {w.name} of {w.dur_ns / 1e6:.2f} ms, "
            f"{w.device_ns / 1e6:.2f} ms of it at the device"
        )
    return wrap.wrap("; ".join(parts))


def lost_line(a: Analysis) -> str:
    if not a.lost_total:
        return "lost events: 0"
    by = ", ".join(f"{k} {v:,}" for k, v in sorted(a.lost.items(), key=lambda kv: -kv[1]))
    where = ""
    if a.lost_ranges:
        lo = min(r["start_s"] for r in a.lost_ranges)
        hi = max(r["end_s"] for r in a.lost_ranges)
        where = (
            f" in {len(a.lost_ranges)} range(s) between +{lo:.3f} s and +{hi:.3f} s;"
            " figures there undercount"
        )
    return f"LOST EVENTS: {a.lost_total:,}" + (f" ({by})" if by else "") + where


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def render_text(a: Analysis, width: int = 80) -> str:
    tr = a.trace
    width = max(width, 60)
    nthreads = sum(max(p.threads, 1) for p in a.processes)
    failed = tr.damage.startswith("the recording failed")
    state = "complete" if tr.complete else "RECORDING FAILED" if failed else "CUT SHORT"
    head = [
        f"iotrace report: {tr.path.name}",
        f"{_count(len(a.processes), 'process', 'processes')}, "
        f"{_count(nthreads, 'thread', 'threads')}, {a.duration_ns / 1e9:.2f} s, "
        f"{a.records:,} records, kernel {tr.meta.get('kernel', '?')}, {state}",
    ]
    if a.calls_from_runs:
        head.append(
            f"{a.calls_from_runs:,} calls were folded in the kernel into run records "
            "(EAGAIN retries, empty waits, repeats under load): counted exactly, their "
            "durations and percentiles over them estimated from log2 histograms"
        )
    cmd = tr.meta.get("command")
    if isinstance(cmd, list):
        cmd = " ".join(str(c) for c in cmd)
    if cmd:
        head.append(textwrap.shorten(f"command: {cmd}", width=width - 1))
    if not tr.complete:
        head.append(
            textwrap.shorten(
                (
                    f"NOTE: {tr.damage}"
                    if failed
                    else f"NOTE: the trace was cut short ({tr.damage or 'no footer'})"
                )
                + "; figures cover only what was saved",
                width=width - 1,
                placeholder="...",
            )
        )
    if tr.skipped:
        head.append(
            textwrap.shorten(
                f"NOTE: skipped {len(tr.skipped)} chunk(s) of a newer trace format "
                f"({', '.join(sorted(set(tr.skipped)))}); upgrade iotrace to see them",
                width=width - 1,
                placeholder="...",
            )
        )
    flt = filters.from_meta(tr.meta)
    below = filters.below_counts(tr.stats)
    if flt is not None:
        unattributed = a.evicted.get("min_latency_map_full", 0)
        for line in filters.filter_lines(flt, below, unattributed):
            head += textwrap.wrap(line, width=width - 1, subsequent_indent="  ")
    lines = [*head, *textwrap.wrap(lost_line(a), width=width - 1, subsequent_indent="  ")]
    if a.write_error:
        lines += textwrap.wrap(f"NOTE: recording stopped early: {a.write_error}", width=width - 1)
    for label, key in (("unmatched", a.unmatched), ("tracer counters", a.evicted)):
        if key:
            parts = ", ".join(f"{k} {v:,}" for k, v in sorted(key.items()))
            lines += textwrap.wrap(f"{label}: {parts}", width=width - 1)
    lines.append("")
    shown = [p for p in a.processes if p.label.model != "idle"]
    idle = [p for p in a.processes if p.label.model == "idle"]
    if not shown:
        lines.append("no I/O system calls were recorded")
    else:
        lines.append(_row(_HEAD))
        builtin = frozenset(w.workload for w in a.workloads if w.expected_model)
        blocks = blocktime.block_stats_of(a.trace, a.records)
        for s in shown:
            lines += _process_lines(s, width, builtin)
            if flt is not None and flt.min_latency_ns:
                mine = filters.by_syscall([b for b in below if b.pid == s.pid])
                if mine:
                    per = ", ".join(f"{k} {v:,}" for k, v in mine.items())
                    lines += textwrap.wrap(
                        f"{sum(mine.values()):,} calls faster than "
                        f"{filters.fmt_ns(flt.min_latency_ns)} not recorded ({per})",
                        width=width - 1,
                        initial_indent=" " * _W[0] + "  ",
                        subsequent_indent=" " * _W[0] + "  ",
                    )
            if s.pid in blocks:
                lines += _block_lines(blocks[s.pid], width)
    if idle:
        names = ", ".join(f"{p.pid} {p.title or p.comm}" for p in idle)
        lines += textwrap.wrap(f"no I/O seen from: {names}", width=width - 1)
    lines.append("")
    lines += textwrap.wrap(
        "REQS: requests. A sync request is a data call that did not return EAGAIN, timed "
        "from its first attempt or the multiplexer wait that found its fd ready (a wait "
        "that timed out is idle time; on a server that wait includes the time the client "
        "took to send, so its latency is the client's pace plus the server's); an async "
        "request runs from submit to reap (io_uring: to the end of the io_uring_enter it "
        "completed in, else to its completion); a major page fault of a mapped file is one "
        "request. No req/s from under 20 requests or 10 ms. BLOCK%: share of thread time "
        "asleep in I/O calls and multiplexers. device: the block requests a process's "
        "threads queued, each charged to the call in flight; data calls (read, write, "
        "copy families) with none were served from the page cache (a buffered write's "
        "writeback is done later by kernel threads and is not charged).",
        width=min(width, 80) - 1,
    )
    ov = (tr.footer or {}).get("overhead")
    if isinstance(ov, dict):
        from iotrace.overhead import render

        lines += ["", render(ov)]
    return "\n".join(lines) + "\n"


def summary_text(trace: session.Trace | Path | str, width: int = 80) -> str:
    """The summary table for a trace: what `run/trace --no-tui` and `report` print.
    Given a path, the file is streamed (bounded memory); given a loaded trace, its
    records are analysed in memory."""
    if isinstance(trace, session.Trace):
        return render_text(analysis.analyze(trace), width)
    return render_text(analysis.analyze_file(trace), width)


# ---------------------------------------------------------------------------
# JSON


def report_json(a: Analysis) -> dict[str, Any]:
    """The `iotrace.report/1` document (see the README for every field)."""
    tr = a.trace
    blocks = blocktime.block_stats_of(tr, a.records)
    return {
        "schema": SCHEMA,
        "tool_version": __version__,
        "trace": {
            "path": str(tr.path),
            "format_version": f"{tr.version[0]}.{tr.version[1]}",
            "complete": tr.complete,
            "damage": tr.damage or None,
            "skipped_chunks": list(tr.skipped),
            "kernel": tr.meta.get("kernel"),
            "command": tr.meta.get("command"),
            "records": a.records,
            "calls_from_runs": a.calls_from_runs,
            "start_ns": a.start_ns,
            "duration_s": round(a.duration_ns / 1e9, 6),
        },
        "lost_events": a.lost_total,
        "lost": a.lost,
        "lost_ranges": a.lost_ranges,
        "unmatched": a.unmatched,
        "evicted": a.evicted,
        "write_error": a.write_error or None,
        "not_observed": (tr.footer or {}).get("not_observed", {}),
        "filter": _filter_json(tr),
        "overhead": (tr.footer or {}).get("overhead"),
        "workloads": [w.to_json() for w in a.workloads],
        "processes": [p.to_json() for p in a.processes],
        # pid -> device figures (empty when recorded without the block probes)
        "block": {str(pid): b.to_json() for pid, b in sorted(blocks.items())},
    }


def _filter_json(tr: session.Trace) -> dict[str, Any] | None:
    """-e and --min-latency as recorded, with the calls --min-latency only counted."""
    flt = filters.from_meta(tr.meta)
    if flt is None:
        return None
    below = filters.below_counts(tr.stats)
    return {
        "trace": flt.expr or None,
        "selected": None if flt.selected is None else sorted(flt.selected),
        "left_out": list(flt.left_out),
        "min_latency_ns": flt.min_latency_ns,
        "below_min_latency": [
            {"pid": b.pid, "syscall": b.syscall, "calls": b.calls, "dur_ns": b.dur_ns}
            for b in below
        ],
        "below_min_latency_calls": sum(b.calls for b in below),
    }


# ---------------------------------------------------------------------------
# Command


def _highlight(text: str) -> str:
    """Bold red for lost data and cut-short notices, on a terminal only."""
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    out = []
    alarm = False
    for line in text.splitlines(keepends=True):
        # A wrapped notice continues on lines indented by two spaces.
        alarm = line.startswith(("LOST EVENTS", "NOTE:")) or (alarm and line.startswith("  "))
        if alarm or "= ! " in line:
            out.append(f"\x1b[1;31m{line.rstrip(chr(10))}\x1b[0m\n")
        else:
            out.append(line)
    return "".join(out)


def cmd_report(args: argparse.Namespace) -> int:
    # Streamed: the records are folded a batch at a time and never held, so a
    # trace of any length fits (README: "Big traces").
    a = analysis.analyze_file(args.file, timeline=bool(args.html))
    # A second streamed pass: the per-file table follows the fd tables in time order.
    files = fdpaths.file_table(args.file)
    if args.html:
        from iotrace import html_report

        html_report.write_html(a, args.html, force=bool(args.force))
    if args.json:
        json.dump({**report_json(a), **fdpaths.file_table_json(files)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = min(os.get_terminal_size().columns, 100) if sys.stdout.isatty() else 80
        sys.stdout.write(_highlight(render_text(a, width)))
        table = fdpaths.render_file_table(files, width)
        if table:
            sys.stdout.write("\n" + "\n".join(table) + "\n")
        if args.html:
            sys.stdout.write(f"HTML report written to {args.html}\n")
    return 0
