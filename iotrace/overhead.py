"""`iotrace run --overhead`: what tracing costs the workloads on this machine.
(recording.py runs the workloads untraced, then traced; this compares the two.)

iotrace owns its workloads, so it can run them twice with the same options and
duration: first untraced (side by side, as they will run traced), then traced.
Each workload measures itself (ops, IOPS, CPU time, latency from its own
clock), so the comparison needs no guess about what the program did. The BPF
programs run inside the traced threads' syscalls, so their cost shows up as
the workload's own extra CPU time; divided by the records iotrace kept for
that process it is the cost per recorded event in the traced program. The
drain thread's CPU time per event is iotrace's own side.
"""

from __future__ import annotations

from typing import Any


def _side(res: dict[str, Any]) -> dict[str, Any]:
    ops = int(res.get("ops", 0))
    cpu_s = float(res.get("cpu_s", 0.0))
    lat = res.get("lat_us") or {}
    return {
        "ops": ops,
        "iops": float(res.get("iops", 0.0)),
        "cpu_s": cpu_s,
        "cpu_us_per_op": cpu_s / ops * 1e6 if ops else None,
        "lat_p50_us": lat.get("p50"),
        "lat_p99_us": lat.get("p99"),
    }


def compare(
    untraced: dict[str, dict[str, Any]],
    traced: dict[str, dict[str, Any]],
    events_by_pid: dict[int, int],
    *,
    drain_cpu_s: float,
    events_total: int,
) -> dict[str, Any]:
    """The overhead figures kept in the trace's footer (and shown by `render`)."""
    workloads: dict[str, Any] = {}
    for name, t_res in traced.items():
        u_res = untraced.get(name)
        if not u_res or "error" in u_res or "error" in t_res or "ops" not in t_res:
            continue
        u, t = _side(u_res), _side(t_res)
        events = int(events_by_pid.get(int(t_res.get("pid", -1)), 0))
        row: dict[str, Any] = {"untraced": u, "traced": t, "events": events}
        row["slowdown"] = u["iops"] / t["iops"] - 1.0 if t["iops"] else None
        if u["cpu_us_per_op"] is not None and t["cpu_us_per_op"] is not None and events:
            added_s = (t["cpu_us_per_op"] - u["cpu_us_per_op"]) * t["ops"] / 1e6
            row["added_cpu_ns_per_event"] = added_s / events * 1e9
        else:
            row["added_cpu_ns_per_event"] = None
        workloads[name] = row
    return {
        "method": "each workload run untraced, then traced, same options and duration",
        "workloads": workloads,
        "drain_cpu_s": round(drain_cpu_s, 3),
        "events": events_total,
        "drain_ns_per_event": drain_cpu_s / events_total * 1e9 if events_total else None,
    }


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def render(ov: dict[str, Any]) -> str:
    """A table under 80 columns: slowdown and cost per recorded event."""
    lines = [
        "OVERHEAD (untraced run, then traced; each workload's own figures)",
        f"{'WORKLOAD':<17}{'IOPS':>9}{'TRACED':>9}{'SLOWER':>8}{'CPU/OP us':>10}"
        f"{'TRACED':>8}{'EVENTS':>9}{'NS/EVENT':>9}",
    ]
    for name, row in ov.get("workloads", {}).items():
        u, t = row["untraced"], row["traced"]
        slow = row.get("slowdown")
        lines.append(
            f"{name[:16]:<17}{u['iops']:>9,.0f}{t['iops']:>9,.0f}"
            f"{_num(None if slow is None else slow * 100, '+.1f') + '%':>8}"
            f"{_num(u['cpu_us_per_op'], '.1f'):>10}{_num(t['cpu_us_per_op'], '.1f'):>8}"
            f"{row['events']:>9,}{_num(row.get('added_cpu_ns_per_event'), ',.0f'):>9}"
        )
    if not ov.get("workloads"):
        lines.append("(no workload finished both runs)")
    per = ov.get("drain_ns_per_event")
    lines.append("NS/EVENT: the workload's extra CPU time per record kept.")
    lines.append(
        f"iotrace's drain: {ov.get('drain_cpu_s', 0):.2f} CPU-s for {ov.get('events', 0):,} "
        "events" + (f" = {per:,.0f} ns/event" if per is not None else "")
    )
    return "\n".join(lines)
