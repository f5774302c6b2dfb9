"""`iotrace report FILE --html OUT`: one static page that works offline.

Plots are made with plotly and its JavaScript is embedded in the page once
(no CDN, no network): a scoreboard per process, where each thread's time
went, a per-thread timeline of syscalls and off-CPU intervals, request
latency distributions per model, and requests in flight over time.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from iotrace import __version__, analysis
from iotrace.analysis import Analysis
from iotrace.outfile import check_target, output_file
from iotrace.report import fmt_mib, fmt_pct, fmt_us, lost_line

MAX_TIMELINE_SEGMENTS = analysis.TIMELINE_SEGMENTS
"""Beyond this many syscall/off-CPU segments the timeline keeps the longest ones
(and says so): a browser stays responsive and the page stays small."""
MAX_CDF_POINTS = 2_000
MAX_DEPTH_POINTS = 20_000

MODEL_COLORS = {
    "sync-blocking": "#1f77b4",
    "sync-nonblocking": "#d62728",
    "async-blocking": "#2ca02c",
    "async-nonblocking": "#9467bd",
    "memory-mapped": "#8c564b",
    "idle": "#7f7f7f",
}
FAMILY_COLORS = {
    "read": "#1f77b4",
    "write": "#ff7f0e",
    "recv": "#17becf",
    "send": "#bcbd22",
    "mux": "#2ca02c",
    "aio": "#9467bd",
    "uring": "#8c564b",
    "other": "#7f7f7f",
}

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
.lost { color: #b00; font-weight: bold; } .note { color: #555; font-size: 0.9em; }
.model { display: inline-block; padding: 0 0.4em; border-radius: 3px; color: #fff; }
.evidence { color: #444; font-size: 0.85em; text-align: left; }
"""


def _labels(a: Analysis, df: pd.DataFrame) -> list[str]:
    """ "comm pid/tid" for each row, the timeline's y axis."""
    names = {p.pid: p.comm for p in a.processes}
    pids = df["pid"].tolist()
    tids = df["tid"].tolist()
    known = {(p, t): f"{names.get(p, '?')} {p}/{t}" for p, t in set(zip(pids, tids, strict=True))}
    return [known[(p, t)] for p, t in zip(pids, tids, strict=True)]


def scoreboard(a: Analysis) -> str:
    rows = []
    for s in a.processes:
        r = s.requests
        lat = r["latency_us"]
        color = MODEL_COLORS.get(s.label.model, "#555")
        iops = "-" if r["iops"] is None else f"{r['iops']:,.0f}"
        cells = [
            f'<td class="l">{s.pid}</td>',
            f'<td class="l">{html.escape(s.comm)}</td>',
            f'<td class="l">{html.escape(s.workload or "")}</td>',
            f'<td class="l"><span class="model" style="background:{color}">'
            f"{html.escape(s.label.model)}</span> {html.escape(s.label.api)}</td>",
            f"<td>{r['count']:,}</td>",
            f"<td>{iops}</td>",
            f"<td>{fmt_mib(r['bytes'])}</td>",
            f"<td>{fmt_us(lat['p50'])}</td><td>{fmt_us(lat['p90'])}</td>",
            f"<td>{fmt_us(lat['p99'])}</td><td>{fmt_us(lat['max'])}</td>",
            f"<td>{_num(r['syscalls_per_request'])}</td>",
            f"<td>{fmt_us(r['cpu_us_per_request'])}</td>",
            f"<td>{_num(r['eagain_per_request'])}</td>",
            f"<td>{s.in_flight['mean']:.2f} / {s.in_flight['max']}</td>",
            f"<td>{fmt_pct(s.time_share.get('on_cpu'))}</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
        rows.append(
            f'<tr><td></td><td class="evidence" colspan="{len(cells) - 1}">'
            f"{html.escape(s.label.evidence)}</td></tr>"
        )
    head = (
        '<tr><th class="l">PID</th><th class="l">COMM</th><th class="l">WORKLOAD</th>'
        '<th class="l">MODEL / API</th><th>REQS</th><th>IOPS</th><th>MiB</th>'
        "<th>p50(us)</th><th>p90(us)</th><th>p99(us)</th><th>max(us)</th>"
        "<th>syscalls/req</th><th>CPU(us)/req</th><th>EAGAIN/req</th>"
        "<th>in flight mean/max</th><th>on CPU %</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _segments(df: pd.DataFrame, t0: int) -> tuple[list[float | None], list[str | None]]:
    xs: list[float | None] = []
    ys: list[str | None] = []
    for ts, end, label in zip(
        df["ts_ns"].tolist(), df["end_ns"].tolist(), df["label"].tolist(), strict=True
    ):
        xs += [(ts - t0) / 1e6, (end - t0) / 1e6, None]
        ys += [label, label, None]
    return xs, ys


def timeline(a: Analysis) -> tuple[go.Figure, str]:
    """Per-thread timeline: syscalls by family, off-CPU intervals underneath."""
    if a.timeline is None:
        raise ValueError("the analysis was made without timeline=True")
    t0 = a.start_ns
    sc = a.timeline.syscalls.assign(label=_labels(a, a.timeline.syscalls))
    off = a.timeline.off_cpu.assign(label=_labels(a, a.timeline.off_cpu))
    total = a.timeline.total
    note = ""
    if total > MAX_TIMELINE_SEGMENTS:
        keep = MAX_TIMELINE_SEGMENTS // 2
        sc = sc.nlargest(keep, "dur_ns")
        off = off.assign(dur_ns=off["end_ns"] - off["ts_ns"]).nlargest(keep, "dur_ns")
        note = (
            f"The timeline shows the {len(sc) + len(off):,} longest of {total:,} segments; "
            "use `iotrace export --format perfetto` for every call."
        )
    fig = go.Figure()
    xs, ys = _segments(off, t0)
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines", name="off CPU", line={"color": "#dddddd", "width": 14})
    )
    for fam, g in sc.groupby("family", sort=True):
        xs, ys = _segments(g, t0)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{fam} calls",
                line={"color": FAMILY_COLORS.get(str(fam), "#555"), "width": 8},
            )
        )
    for r in a.lost_ranges:
        fig.add_vrect(
            x0=r["start_s"] * 1e3,
            x1=max(r["end_s"], r["start_s"] + 1e-6) * 1e3,
            fillcolor="red",
            opacity=0.2,
            line_width=0,
        )
    nthreads = max(sc["label"].nunique() if len(sc) else 0, off["label"].nunique(), 1)
    fig.update_layout(
        title="Per-thread timeline (ms from the first record)",
        xaxis_title="time (ms)",
        height=160 + 40 * nthreads,
        margin={"l": 180},
        legend={"orientation": "h", "y": -0.35},
    )
    return fig, note


def _cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.sort(values[~np.isnan(values)])
    if len(v) > MAX_CDF_POINTS:
        q = np.linspace(0, 1, MAX_CDF_POINTS)
        return np.quantile(v, q), q * 100
    return v, (np.arange(1, len(v) + 1) / max(len(v), 1)) * 100


def latency_figure(a: Analysis) -> tuple[go.Figure, str]:
    """Request latency distribution (CDF, log scale), one line per process, colored by
    model; and a note saying which lines were drawn through quantiles."""
    fig = go.Figure()
    thinned = []
    for s in a.processes:
        if s.label.model == "idle":
            continue
        lat = a.request_latencies_ns(s) / 1000
        if not len(lat):
            continue
        if len(lat) > MAX_CDF_POINTS:
            thinned.append(f"{s.pid} ({len(lat):,} requests)")
        x, y = _cdf(lat)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                name=f"{s.pid} {s.comm} ({s.label.model})",
                line={"color": MODEL_COLORS.get(s.label.model, "#555"), "shape": "hv"},
            )
        )
    fig.update_layout(
        title="Request latency per process (cumulative share of requests)",
        xaxis={"title": "latency (us, log scale)", "type": "log"},
        yaxis={"title": "% of requests at or below"},
        height=420,
    )
    note = ""
    if thinned:
        note = (
            f"Drawn through {MAX_CDF_POINTS:,} evenly spaced quantiles of all the requests of "
            f"{', '.join(thinned)}; the scoreboard's percentiles are exact."
        )
    return fig, note


def time_share_figure(a: Analysis) -> go.Figure:
    parts = [
        ("on_cpu", "on CPU", "#ff7f0e"),
        ("blocked_io", "asleep in I/O calls", "#1f77b4"),
        ("mux_wait", "asleep in a multiplexer", "#2ca02c"),
        ("runq", "waiting to run", "#d62728"),
        ("other_sleep", "asleep elsewhere", "#c7c7c7"),
    ]
    shown = [s for s in a.processes if s.label.model != "idle"]
    labels = [f"{s.pid} {s.comm}" for s in shown]
    fig = go.Figure()
    for key, name, color in parts:
        fig.add_trace(
            go.Bar(
                y=labels,
                x=[100 * (s.time_share.get(key) or 0.0) for s in shown],
                name=name,
                orientation="h",
                marker_color=color,
            )
        )
    fig.update_layout(
        barmode="stack",
        title="Where each process's thread time went (%)",
        xaxis={"title": "% of thread time", "range": [0, 100]},
        height=160 + 30 * max(len(shown), 1),
        margin={"l": 180},
        legend={"orientation": "h", "y": -0.35},
    )
    return fig


def depth_figure(a: Analysis) -> tuple[go.Figure | None, str]:
    """Async requests in flight over time, per process and API; and a note saying
    which lines show only some of their steps."""
    groups = a.in_flight()
    if not groups:
        return None, ""
    fig = go.Figure()
    t0 = a.start_ns
    thinned = []
    for pid, api, submit, done in groups:
        t, d = analysis.depth_series_sampled(submit, done, MAX_DEPTH_POINTS)
        if len(t) == MAX_DEPTH_POINTS and 2 * len(submit) > MAX_DEPTH_POINTS:
            thinned.append(f"{pid} {api} ({len(submit):,} requests)")
        fig.add_trace(
            go.Scatter(
                x=(t - t0) / 1e6, y=d, mode="lines", line={"shape": "hv"}, name=f"{pid} {api}"
            )
        )
    fig.update_layout(
        title="Async requests in flight",
        xaxis_title="time (ms)",
        yaxis_title="requests in flight",
        height=360,
    )
    note = ""
    if thinned:
        note = (
            f"At most {MAX_DEPTH_POINTS:,} evenly spaced steps per line are drawn for "
            f"{', '.join(thinned)}; the scoreboard's in-flight mean and max are exact."
        )
    return fig, note


def render(a: Analysis) -> str:
    """The whole page as a string."""
    tr = a.trace
    figs: list[go.Figure] = [time_share_figure(a)]
    tl, tl_note = timeline(a)
    figs.append(tl)
    lat_fig, lat_note = latency_figure(a)
    figs.append(lat_fig)
    depth, depth_note = depth_figure(a)
    if depth is not None:
        figs.append(depth)
    config = {"displaylogo": False, "responsive": True}
    plots = [
        f.to_html(full_html=False, include_plotlyjs=(i == 0), config=config)
        for i, f in enumerate(figs)
    ]
    lost = lost_line(a)
    lost_cls = "lost" if a.lost_total else "note"
    state = (
        "complete"
        if tr.complete
        else f'<span class="lost">cut short: {html.escape(tr.damage or "no footer")}</span>'
    )
    command = tr.meta.get("command")
    if isinstance(command, list):
        command = " ".join(str(c) for c in command)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>iotrace report: {html.escape(tr.path.name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>iotrace report: {html.escape(tr.path.name)}</h1>",
        f'<p class="note">{len(a.processes)} processes, {a.duration_ns / 1e9:.3f} s, '
        f"{a.records:,} records, kernel {html.escape(str(tr.meta.get('kernel', '?')))}, "
        f"{state}. Command: {html.escape(str(command or '-'))}. iotrace {__version__}.</p>",
        f'<p class="{lost_cls}">{html.escape(lost)}</p>',
        "<h2>Scoreboard</h2>",
        scoreboard(a),
        '<p class="note">Requests: a sync data call that did not return EAGAIN (latency from '
        "its first attempt or the multiplexer wait before it); an async request from submit to "
        "reap (io_uring: to the end of the io_uring_enter it completed in, else to its "
        "completion; the kernel-side latency is in the JSON report).</p>",
        "<h2>Where the time went</h2>",
        plots[0],
        "<h2>Timeline</h2>",
        plots[1],
        f'<p class="note">{html.escape(tl_note)}</p>' if tl_note else "",
        "<h2>Latency distribution</h2>",
        plots[2],
        f'<p class="note">{html.escape(lat_note)}</p>' if lat_note else "",
    ]
    if depth is not None:
        parts += ["<h2>In flight</h2>", plots[3]]
        parts += [f'<p class="note">{html.escape(depth_note)}</p>' if depth_note else ""]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(a: Analysis, out: str | Path, *, force: bool = False) -> Path:
    path = check_target(out, force=force)
    page = render(a).encode()
    with output_file(path, force=force) as f:
        f.write(page)
    return path


def figure_count(page: str) -> int:
    """How many plotly figures a rendered page holds (used by tests)."""
    return page.count('class="plotly-graph-div"')
