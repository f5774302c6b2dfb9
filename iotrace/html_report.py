"""`iotrace report FILE --html OUT`: one static page that works offline.

No plotting library: the figures are small JSON specs drawn on canvases by
`report.js` (about 15 KB, package data, embedded once), and the bars of where
the time went are plain HTML. So the page stays small for any trace (the
timeline keeps at most `MAX_TIMELINE_SEGMENTS` segments, a latency line at most
`MAX_CDF_POINTS` quantiles, an in-flight line `DEPTH_BINS` bins) and fits a
1280 px window: the scoreboard's columns wrap their headers instead of
scrolling sideways.

What it shows: a scoreboard per process; where each process's thread time went;
a timeline of every thread (lanes ordered by process, then thread; drag to
zoom, double-click to reset; lost ranges shaded); request latency
distributions, the workloads' own requests apart from their producers' writes;
and async requests in flight as a rolling mean with the maximum of each bin.
"""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iotrace import __version__, analysis, events, filters
from iotrace.analysis import Analysis
from iotrace.outfile import check_target, output_file
from iotrace.report import fmt_mib, fmt_pct, fmt_us, lost_line

MAX_TIMELINE_SEGMENTS = 40_000
"""Beyond this many syscall/off-CPU segments the timeline keeps the longest ones
(and says so): a browser stays responsive and the page stays small."""
MAX_CDF_POINTS = 1_000
CDF_POINTS_BUDGET = 24_000
"""Points of all latency lines together: with many processes each line gets fewer
(at least 100), so the page stays small."""
MAX_DEPTH_SERIES = 16
"""In-flight lines drawn at most (the processes and APIs with the most requests)."""
DEPTH_BINS = 600
"""Bins of the in-flight plot: about one per two pixels at 1280 px."""

MODEL_COLORS = {
    "sync-blocking": "#4e79a7",
    "sync-nonblocking": "#e15759",
    "async-blocking": "#59a14f",
    "async-nonblocking": "#b07aa1",
    "memory-mapped": "#9c755f",
    "idle": "#9d9d9d",
}
FAMILY_COLORS = {
    "read": "#4e79a7",
    "write": "#f28e2b",
    "recv": "#76b7b2",
    "send": "#edc948",
    "mux": "#59a14f",
    "aio": "#b07aa1",
    "uring": "#9c755f",
    "other": "#9d9d9d",
}
LINE_COLORS = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#1b3b6f",
    "#a0522d",
)
"""Distinct colours, one per line, in the order lines are drawn."""
TIME_SHARE = (
    ("on_cpu", "on CPU", "#f28e2b"),
    ("blocked_io", "asleep in I/O calls", "#4e79a7"),
    ("mux_wait", "asleep in a multiplexer", "#59a14f"),
    ("runq", "waiting to run", "#e15759"),
    ("other_sleep", "asleep elsewhere", "#c9c9c9"),
)
_WRITE_FAMILIES = ("write", "send")


class Figure(dict[str, Any]):
    """A figure's spec: what report.js draws (a JSON object)."""

    def to_json(self) -> str:
        return json.dumps(self, sort_keys=True, separators=(",", ":"))


def _asset(name: str) -> str:
    return resources.files("iotrace").joinpath(name).read_text(encoding="utf-8")


# --- scoreboard -----------------------------------------------------------------------


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def scoreboard(a: Analysis) -> str:
    rows = []
    for s in a.processes:
        r = s.requests
        lat = r["latency_us"]
        color = MODEL_COLORS.get(s.label.model, "#555")
        iops = "-" if r["iops"] is None else f"{r['iops']:,.0f}"
        who = html.escape(s.comm)
        if s.workload:
            who += f'<br><span class="dim">{html.escape(s.workload)}</span>'
        cells = [
            f'<td class="l">{s.pid}</td>',
            f'<td class="l">{who}</td>',
            f'<td class="l"><span class="model" style="background:{color}">'
            f"{html.escape(s.label.model)}</span><br>{html.escape(s.label.api)}</td>",
            f"<td>{r['count']:,}</td>",
            f"<td>{iops}</td>",
            f"<td>{fmt_mib(r['bytes'])}</td>",
            f"<td>{fmt_us(lat['p50'])}</td><td>{fmt_us(lat['p90'])}</td>",
            f"<td>{fmt_us(lat['p99'])}</td><td>{fmt_us(lat['max'])}</td>",
            f"<td>{_num(r['syscalls_per_request'])}</td>",
            f"<td>{fmt_us(r['cpu_us_per_request'])}</td>",
            f"<td>{_num(r['eagain_per_request'])}</td>",
            f"<td>{s.in_flight['mean']:.2f}&thinsp;/&thinsp;{s.in_flight['max']}</td>",
            f"<td>{fmt_pct(s.time_share.get('on_cpu'))}</td>",
        ]
        rows.append('<tr class="proc">' + "".join(cells) + "</tr>")
        rows.append(
            f'<tr><td></td><td class="evidence" colspan="{len(cells) - 1}">'
            f"{html.escape(s.label.evidence)}</td></tr>"
        )
    head = (
        '<tr><th class="l">PID</th><th class="l">COMM<br>workload</th>'
        '<th class="l">MODEL<br>API</th><th>REQS</th><th>IOPS</th><th>MiB</th>'
        "<th>p50<br>(µs)</th><th>p90<br>(µs)</th><th>p99<br>(µs)</th><th>max<br>(µs)</th>"
        "<th>syscalls<br>/req</th><th>CPU µs<br>/req</th><th>EAGAIN<br>/req</th>"
        "<th>in flight<br>mean/max</th><th>on<br>CPU %</th></tr>"
    )
    return f'<table class="score"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


# --- where the time went ----------------------------------------------------------------


def time_share_figure(a: Analysis) -> Figure:
    shown = [s for s in a.processes if s.label.model != "idle"]
    return Figure(
        type="bars",
        parts=[{"key": k, "name": n, "color": c} for k, n, c in TIME_SHARE],
        rows=[
            {
                "label": f"{s.pid} {s.comm}",
                "workload": s.workload,
                "values": [round(100 * (s.time_share.get(k) or 0.0), 2) for k, _, _ in TIME_SHARE],
            }
            for s in shown
        ],
    )


def time_share_html(fig: Figure) -> str:
    """Stacked bars as HTML (no script needed)."""
    legend = "".join(
        f'<span class="key"><i style="background:{p["color"]}"></i>{html.escape(p["name"])}</span>'
        for p in fig["parts"]
    )
    rows = []
    for r in fig["rows"]:
        segs = "".join(
            f'<span style="width:{v}%;background:{p["color"]}" '
            f'title="{html.escape(p["name"])}: {v:.1f}%"></span>'
            for p, v in zip(fig["parts"], r["values"], strict=True)
            if v > 0
        )
        label = html.escape(r["label"])
        if r["workload"]:
            label += f' <span class="dim">{html.escape(r["workload"])}</span>'
        rows.append(
            f'<div class="bar"><div class="lbl">{label}</div><div class="seg">{segs}</div></div>'
        )
    return f'<div class="legend">{legend}</div><div class="bars">{"".join(rows)}</div>'


# --- timeline ------------------------------------------------------------------------------


def _lost(a: Analysis) -> list[list[float]]:
    """Lost ranges in µs from the first record."""
    return [
        [round(r["start_s"] * 1e6, 1), round(max(r["end_s"], r["start_s"]) * 1e6, 1)]
        for r in a.lost_ranges
    ]


def _lanes(a: Analysis, sc: pd.DataFrame, off: pd.DataFrame) -> list[tuple[int, int]]:
    pairs = set(zip(sc["pid"].tolist(), sc["tid"].tolist(), strict=True))
    pairs |= set(zip(off["pid"].tolist(), off["tid"].tolist(), strict=True))
    return sorted(pairs)


def _fair_longest(df: pd.DataFrame, keep: int) -> pd.DataFrame:
    """`keep` segments: each thread's longest up to an equal share of `keep`, then
    the longest of the rest, so that a thread of short calls (a retry loop) keeps
    its lane next to threads that block for milliseconds. Ties (a loop's calls
    often last alike) are broken by a low-discrepancy sequence over time order, so
    the segments kept spread over the trace instead of bunching at its start."""
    if len(df) <= keep:
        return df
    df = df.sort_values(["pid", "tid", "ts_ns"], kind="stable")
    pos = df.groupby(["pid", "tid"]).cumcount().to_numpy()
    df = df.assign(_spread=(pos * 0.6180339887498949) % 1.0, _neg=-df["dur_ns"])
    df = df.sort_values(["pid", "tid", "_neg", "_spread"], kind="stable")
    rank = df.groupby(["pid", "tid"]).cumcount()
    quota = keep // max(df.groupby(["pid", "tid"]).ngroups, 1)
    first = df[rank < quota]
    rest = df[rank >= quota].sort_values(["_neg", "_spread"], kind="stable")
    out = pd.concat([first, rest.head(keep - len(first))])
    return out.drop(columns=["_spread", "_neg"])


def timeline(a: Analysis) -> tuple[Figure, str]:
    """Per-thread timeline: syscalls by family, off-CPU intervals behind them. Lanes
    are ordered by process, then thread; times are µs from the first record."""
    if a.timeline is None:
        raise ValueError("the analysis was made without timeline=True")
    t0 = a.start_ns
    sc = a.timeline.syscalls
    off = a.timeline.off_cpu
    total = a.timeline.total
    note = ""
    if total > MAX_TIMELINE_SEGMENTS:
        keep = MAX_TIMELINE_SEGMENTS // 2
        sc = _fair_longest(sc, keep)
        off = _fair_longest(off.assign(dur_ns=off["end_ns"] - off["ts_ns"]), keep)
        note = (
            f"The timeline shows {len(sc) + len(off):,} of {total:,} segments: the longest "
            "of each thread, and of all threads once every thread has its share; use "
            "`iotrace export --format perfetto` for every call."
        )
    comm = {p.pid: p for p in a.processes}
    thread_comm: dict[int, str] = {}
    for p in a.processes:
        for t in p.thread_summaries:
            thread_comm[t.tid] = t.comm
    lanes = _lanes(a, sc, off)
    index = {pt: i for i, pt in enumerate(lanes)}
    families = sorted(set(sc["family"].tolist())) if len(sc) else []
    fam_index = {f: i for i, f in enumerate(families)}

    def encode(df: pd.DataFrame, with_family: bool) -> list[list[int]]:
        """Per lane: [start delta, duration, (family)] ... in µs, starts delta-coded."""
        out: list[list[int]] = [[] for _ in lanes]
        if not len(df):
            return out
        lane = np.array([index[(p, t)] for p, t in zip(df["pid"], df["tid"], strict=True)])
        start = ((df["ts_ns"].to_numpy(np.int64) - t0) // 1000).astype(np.int64)
        dur = -((df["ts_ns"].to_numpy(np.int64) - df["end_ns"].to_numpy(np.int64)) // 1000)
        fam = np.array([fam_index[f] for f in df["family"]]) if with_family else np.zeros(len(df))
        order = np.lexsort((start, lane))
        lane, start, dur, fam = lane[order], start[order], dur[order], fam[order]
        for i in np.unique(lane).tolist():
            m = lane == i
            s = start[m]
            d = np.diff(s, prepend=0)
            cols = [d, dur[m]] + ([fam[m].astype(np.int64)] if with_family else [])
            out[i] = np.column_stack(cols).ravel().astype(int).tolist()
        return out

    fig = Figure(
        type="timeline",
        span_us=round(a.duration_ns / 1000, 1),
        lanes=[
            {
                "pid": p,
                "tid": t,
                "label": f"{thread_comm.get(t, comm[p].comm if p in comm else '?')} {t}",
                "process": f"{p} {comm[p].comm if p in comm else '?'}"
                + (
                    f" ({comm[p].workload})"
                    if p in comm and comm[p].workload not in ("", comm[p].comm)
                    else ""
                ),
            }
            for p, t in lanes
        ],
        families=families,
        colors=[FAMILY_COLORS.get(f, "#555") for f in families],
        calls=encode(sc, True),
        off=encode(off, False),
        lost=_lost(a),
    )
    return fig, note


# --- latency ---------------------------------------------------------------------------------


def _is_writer(s: analysis.Summary) -> bool:
    fam = {x.name: x.family for x in events.SYSCALLS}.get(s.label.api, "")
    return fam in _WRITE_FAMILIES


def latency_figure(a: Analysis) -> tuple[Figure, str]:
    """Request latency distributions (CDF over a log axis), one line per process in
    a colour of its own; the workloads' requests and the producers' writes (the
    paced peers feeding pipes and sockets) in two groups."""
    lines = []
    thinned = []
    shown = [s for s in a.processes if s.label.model != "idle"]
    points = max(100, min(MAX_CDF_POINTS, CDF_POINTS_BUDGET // max(len(shown), 1)))
    for s in shown:
        lat = a.request_latencies_ns(s) / 1000
        lat = np.sort(lat[~np.isnan(lat)])
        if not len(lat):
            continue
        quantiles = len(lat) > points
        if quantiles:
            thinned.append(f"{s.pid} ({len(lat):,} requests)")
            lat = np.quantile(lat, np.linspace(0, 1, points))
        lines.append(
            {
                "label": f"{s.pid} {s.comm}",
                "detail": f"{s.label.model}, {s.label.api}"
                + (f" · {s.workload}" if s.workload else ""),
                "group": "writes" if _is_writer(s) else "requests",
                "quantiles": quantiles,
                "n": int(a.request_latencies_ns(s).size),
                "x": [float(f"{v:.4g}") for v in lat.tolist()],
            }
        )
    # Colours restart in each group (each is its own plot), so no two lines of a
    # plot share one while there are at most len(LINE_COLORS) of them.
    for group in ("requests", "writes"):
        for i, ln in enumerate(ln for ln in lines if ln["group"] == group):
            ln["color"] = LINE_COLORS[i % len(LINE_COLORS)]
    note = ""
    if thinned:
        note = (
            f"Drawn through {points:,} evenly spaced quantiles of all the requests of "
            f"{', '.join(thinned)}; the scoreboard's percentiles are exact."
        )
    return Figure(type="cdf", lines=lines), note


# --- in flight ------------------------------------------------------------------------------


def _bins(
    submit: np.ndarray, done: np.ndarray, t0: int, span: int, bins: int
) -> tuple[list[float], list[int]]:
    """Time-weighted mean and max requests in flight in each of `bins` equal bins."""
    t, d = analysis.depth_series(submit, done)
    edges = t0 + (np.arange(bins + 1) * (span / bins)).astype(np.int64)
    # Depth at each edge, then integrate the step function between edges.
    i = np.searchsorted(t, edges, side="right") - 1
    at_edge = np.where(i >= 0, d[np.clip(i, 0, None)], 0)
    pts = np.concatenate([t, edges])
    vals = np.concatenate([d, at_edge])
    order = np.argsort(pts, kind="stable")
    pts, vals = pts[order], vals[order]
    area = np.concatenate([[0], np.cumsum(vals[:-1] * np.diff(pts))])
    a_edge = np.interp(edges, pts, area)
    width = np.diff(edges).clip(1)
    mean = np.diff(a_edge) / width
    # Max: the highest depth reached inside each bin (or held over from before it).
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
    mx = at_edge[:-1].copy()
    np.maximum.at(mx, b, d)
    return [round(float(v), 2) for v in mean], [int(v) for v in mx]


def depth_figure(a: Analysis) -> tuple[Figure | None, str]:
    """Async requests in flight over time per process and API: the mean of each bin
    (a rolling mean) and its maximum; lost ranges are gaps, not data."""
    groups = a.in_flight()
    if not groups:
        return None, ""
    left_out = ""
    if len(groups) > MAX_DEPTH_SERIES:
        busiest = sorted(groups, key=lambda g: -len(g[2]))[:MAX_DEPTH_SERIES]
        left_out = (
            f" The {len(groups) - MAX_DEPTH_SERIES} processes and APIs with the fewest "
            f"requests are left out (the {MAX_DEPTH_SERIES} busiest are drawn)."
        )
        groups = [g for g in groups if any(g is b for b in busiest)]
    span = max(a.duration_ns, 1)
    bins = DEPTH_BINS
    lost = _lost(a)
    series = []
    for i, (pid, api, submit, done) in enumerate(groups):
        mean, mx = _bins(submit, done, a.start_ns, span, bins)
        mean_out: list[float | None] = list(mean)
        max_out: list[int | None] = list(mx)
        for lo, hi in lost:
            b0 = int(lo * 1000 / span * bins)
            b1 = int(np.ceil(hi * 1000 / span * bins))
            for b in range(max(b0, 0), min(max(b1, b0 + 1), bins)):
                mean_out[b] = max_out[b] = None
        name = next((p.comm for p in a.processes if p.pid == pid), "?")
        series.append(
            {
                "label": f"{pid} {name} ({api})",
                "color": LINE_COLORS[i % len(LINE_COLORS)],
                "mean": mean_out,
                "max": max_out,
            }
        )
    fig = Figure(
        type="depth",
        span_us=round(span / 1000, 1),
        bin_us=round(span / 1000 / bins, 3),
        series=series,
        lost=lost,
    )
    note = (
        f"Each line is the time-weighted mean of {bins} equal bins ({fmt_bin(span / bins)} each); "
        "the shaded band under it reaches the most requests in flight at once in the bin."
        + left_out
    )
    return fig, note


def fmt_bin(ns: float) -> str:
    if ns >= 1e9:
        return f"{ns / 1e9:.3g} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3g} ms"
    return f"{ns / 1e3:.3g} µs"


# --- the page ------------------------------------------------------------------------------


def _plot(fig_id: str, fig: Figure, height: int) -> str:
    spec = fig.to_json().replace("</", "<\\/")  # never ends the script element
    return (
        f'<div class="plot" id="{fig_id}" style="height:{height}px"></div>'
        f'<script type="application/json" data-for="{fig_id}">{spec}</script>'
    )


def _filter_lines(a: Analysis) -> list[str]:
    """What -e and --min-latency left out, as the text report says it."""
    flt = filters.from_meta(a.trace.meta)
    if flt is None:
        return []
    below = filters.below_counts(a.trace.stats)
    return filters.filter_lines(flt, below, a.evicted.get("min_latency_map_full", 0))


def render(a: Analysis) -> str:
    """The whole page as a string."""
    tr = a.trace
    tl, tl_note = timeline(a)
    lat, lat_note = latency_figure(a)
    depth, depth_note = depth_figure(a)
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
    lanes = len(tl["lanes"])
    groups = {ln["group"] for ln in lat["lines"]}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>iotrace report: {html.escape(tr.path.name)}</title>",
        f"<style>{_asset('report.css')}</style></head><body>",
        f"<h1>iotrace report: {html.escape(tr.path.name)}</h1>",
        f'<p class="note">{len(a.processes)} processes, {a.duration_ns / 1e9:.3f} s, '
        f"{a.records:,} records, kernel {html.escape(str(tr.meta.get('kernel', '?')))}, "
        f"{state}. Command: {html.escape(str(command or '-'))}. iotrace {__version__}.</p>",
        f'<p class="{lost_cls}">{html.escape(lost)}</p>',
        *(f'<p class="note">{html.escape(line)}</p>' for line in _filter_lines(a)),
        "<h2>Scoreboard</h2>",
        scoreboard(a),
        '<p class="note">Requests: a sync data call that did not return EAGAIN (latency from '
        "its first attempt or the multiplexer wait before it); an async request from submit to "
        "reap (io_uring: to the end of the io_uring_enter it completed in, else to its "
        "completion; the kernel-side latency is in the JSON report).</p>",
        "<h2>Where the time went</h2>",
        time_share_html(time_share_figure(a)),
        "<h2>Timeline</h2>",
        '<p class="note">One lane per thread, grouped by process. Calls are coloured by '
        "family over the grey off-CPU intervals; red bands are lost records. Drag to zoom, "
        "double-click to reset; hover for a call.</p>",
        _plot("timeline", tl, 30 + 20 * (max(lanes, 1) + len({ln["pid"] for ln in tl["lanes"]}))),
        f'<p class="note">{html.escape(tl_note)}</p>' if tl_note else "",
        "<h2>Latency distribution</h2>",
    ]
    if not lat["lines"]:
        parts.append('<p class="note">No completed requests.</p>')
    for group, title in (
        ("requests", "Requests of the workloads"),
        ("writes", "Producers' writes (the paced peers feeding pipes and sockets)"),
    ):
        if group in groups:
            sub = Figure(type="cdf", lines=[ln for ln in lat["lines"] if ln["group"] == group])
            parts += [f"<h3>{title}</h3>", _plot(f"cdf-{group}", sub, 380)]
    if lat_note:
        parts.append(f'<p class="note">{html.escape(lat_note)}</p>')
    if depth is not None:
        parts += [
            "<h2>In flight</h2>",
            _plot("depth", depth, 300),
            f'<p class="note">{html.escape(depth_note)}</p>',
        ]
    parts += [f"<script>{_asset('report.js')}</script>", "</body></html>"]
    return "\n".join(parts)


def write_html(a: Analysis, out: str | Path, *, force: bool = False) -> Path:
    path = check_target(out, force=force)
    page = render(a).encode()
    with output_file(path, force=force) as f:
        f.write(page)
    return path


def figure_count(page: str) -> int:
    """How many drawn figures a rendered page holds (used by tests)."""
    return page.count('<div class="plot" id=')
