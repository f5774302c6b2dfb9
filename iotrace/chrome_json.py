"""A trace as Chrome trace-event JSON (`iotrace export --format chrome-json`), for
chrome://tracing and older viewers. It loads the whole trace to nest slices and
draw flows; `iotrace.perfetto` writes the same picture as a streamed protobuf trace.


What goes where:

- each traced thread is a thread track; its syscalls are complete ("X")
  slices, the off-CPU intervals inside them are child slices, and the part
  of an off-CPU interval spent runnable ("waiting to run") is a grandchild.
  Slices on one track are always properly nested (a child never outlives
  its parent): `nest` clips the rare record that would break that;
- each async request (libaio, io_uring, POSIX AIO) is a nestable async slice
  ("b"/"e", category = API) keyed by a unique id ("<iocb or req pointer>.<n>",
  n counting reuses of the pointer), with "in kernel" and "awaiting reap"
  children where both times are known;
- flow arrows ("s"/"t"/"f") run submit -> kernel completion -> reap, bound to
  the submitting syscall slice, a completion marker on the process's
  "kernel completions" track, and the reaping syscall slice;
- counter tracks ("C") give each process's requests in flight per API;
- dropped records appear as slices on an "iotrace: lost events" track, so a
  gap never looks like idle time.

Times are microseconds from the trace's first record with nanosecond
precision (three decimals); `metadata.t0_monotonic_ns` gives the origin and
`metadata.t0_realtime_ns` the same instant on the wall clock (from the trace's
clock anchor; null without one).
There is deliberately no "displayTimeUnit": some Perfetto versions read
"ns" there as the unit of `ts`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import IO, Any

import numpy as np

from iotrace import analysis, events
from iotrace.analysis import records
from iotrace.session import Trace

KERNEL_TID_BASE = 1 << 30
"""Pseudo thread ids for each process's "kernel completions" track (above pid_max)."""
LOST_PID = 0


class _Clock:
    def __init__(self, t0: int) -> None:
        self.t0 = t0

    def us(self, ns: int | float) -> float:
        # int / int is correctly rounded, so the shortest repr of the result is the
        # exact 3-decimal value: no round() needed (and it is the hot path).
        return (int(ns) - self.t0) / 1000


def nest(slices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Order one track's X slices so they nest, clipping any that would end after
    its parent. Slices carry integer `_ts`/`_end` (ns); returns them sorted."""
    slices.sort(key=lambda s: (s["_ts"], -s["_end"], s.get("_depth", 0)))
    stack: list[dict[str, Any]] = []
    for s in slices:
        while (
            stack
            and stack[-1]["_end"] <= s["_ts"]
            and not (stack[-1]["_end"] == s["_ts"] == stack[-1]["_ts"])
        ):
            stack.pop()
        if stack and s["_end"] > stack[-1]["_end"]:
            s["_end"] = stack[-1]["_end"]
            s.setdefault("args", {})["clipped"] = True
        stack.append(s)
    return slices


def build(trace: Trace, a: analysis.Analysis | None = None) -> dict[str, Any]:
    """The Chrome trace-event document for a trace."""
    a = a or analysis.analyze(trace)
    fr = a.frames
    clock = _Clock(fr.start_ns)
    names = analysis.comms(trace, fr)
    out: list[dict[str, Any]] = []
    labels = {p.pid: p for p in a.processes}

    # --- process and thread names -------------------------------------------------
    pids_tids: set[tuple[int, int]] = set()
    for df in (fr.syscalls, fr.off_cpu, fr.requests):
        pids_tids |= {(int(p), int(t)) for p, t in df[["pid", "tid"]].drop_duplicates().values}
    for pid in sorted({p for p, _ in pids_tids}):
        s = labels.get(pid)
        title = names.get(pid, "?")
        if s is not None:
            title = f"{title} [{s.label.model}, {s.label.api}]"
            if s.workload:
                title = f"{s.workload}: {title}"
        out.append(
            {"ph": "M", "name": "process_name", "pid": pid, "tid": pid, "args": {"name": title}}
        )
    for pid, tid in sorted(pids_tids):
        out.append(
            {
                "ph": "M",
                "name": "thread_name",
                "pid": pid,
                "tid": tid,
                "args": {"name": f"{names.get(tid, names.get(pid, '?'))} {tid}"},
            }
        )

    tracks: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)

    # --- syscalls ----------------------------------------------------------------
    sc = fr.syscalls[fr.syscalls["ts_ns"] > 0]
    for r in records(sc):
        args: dict[str, Any] = {
            "fd": int(r["fd"]),
            "size": int(r["size"]),
            "ret": int(r["ret"]),
            "off_cpu_us": round(int(r["off_cpu_ns"]) / 1000, 3),
        }
        if int(r["runq_ns"]):
            args["runq_us"] = round(int(r["runq_ns"]) / 1000, 3)
        if int(r["offset"]):
            args["file_offset"] = int(r["offset"])
        if bool(r["eagain"]):
            args["error"] = "EAGAIN"
        tracks[(int(r["pid"]), int(r["tid"]))].append(
            {
                "name": str(r["name"]),
                "cat": f"syscall,{r['family']}",
                "_ts": int(r["ts_ns"]),
                "_end": int(r["end_ns"]),
                "_depth": 0,
                "args": args,
            }
        )

    # --- off-CPU intervals (and their runnable tails) -----------------------------
    for r in records(fr.off_cpu):
        track = (int(r["pid"]), int(r["tid"]))
        ts, end, runq = int(r["ts_ns"]), int(r["end_ns"]), int(r["runq_ns"])
        inside = (
            events.SYSCALL_BY_OP[int(r["op"])].name if int(r["op"]) in events.SYSCALL_BY_OP else ""
        )
        tracks[track].append(
            {
                "name": "off-CPU",
                "cat": "sched",
                "_ts": ts,
                "_end": end,
                "_depth": 1,
                "args": {"in_syscall": inside or None, "runq_us": round(runq / 1000, 3)},
            }
        )
        if runq > 0:
            tracks[track].append(
                {
                    "name": "waiting to run",
                    "cat": "sched",
                    "_ts": max(end - runq, ts),
                    "_end": end,
                    "_depth": 2,
                }
            )

    # --- async requests -----------------------------------------------------------
    reqs = fr.requests[~fr.requests["sync"].astype(bool)].sort_values("submit_ns", kind="stable")
    uses: dict[tuple[int, int], int] = defaultdict(int)
    flow_id = 0
    # Reaping calls per process, to bind the end of a flow to the call that reaped.
    reapers: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    reap_calls = fr.syscalls[
        fr.syscalls["name"].isin(["io_getevents", "io_pgetevents", "io_uring_enter"])
    ]
    for gpid, g in reap_calls.groupby("pid"):
        g = g.sort_values("end_ns")
        reapers[int(str(gpid))] = (
            g["ts_ns"].to_numpy(),
            g["end_ns"].to_numpy(),
            g["tid"].to_numpy(),
        )
    for r in records(reqs):
        pid, tid, key = int(r["pid"]), int(r["tid"]), int(r["key"])
        n = uses[(pid, key)]
        uses[(pid, key)] += 1
        rid = f"{key:#x}.{n}"
        sub = int(r["submit_ns"])
        kdone = None if np.isnan(r["kdone_ns"]) else int(r["kdone_ns"])
        reap = None if np.isnan(r["reap_ns"]) else int(r["reap_ns"])
        done = None if np.isnan(r["done_ns"]) else int(r["done_ns"])
        worker = bool(r["worker"])
        name = f"{r['op']} {int(r['size'])} B" + (" (io-wq)" if worker else "")
        args = {
            "fd": int(r["fd"]),
            "file_offset": int(r["offset"]),
            "size": int(r["size"]),
            "ret": int(r["ret"]),
            "user_data": int(r["user_data"]),
            "key": f"{key:#x}",
            "worker": worker,
        }
        base = {"cat": str(r["api"]), "id": rid, "pid": pid, "tid": tid}
        if done is None:
            out.append(
                {
                    **base,
                    "ph": "n",
                    "name": f"{name}: completion not observed",
                    "ts": clock.us(sub),
                    "args": args,
                }
            )
            continue
        out.append({**base, "ph": "b", "name": name, "ts": clock.us(sub), "args": args})
        if kdone is not None and reap is not None and sub <= kdone <= reap:
            out.append({**base, "ph": "b", "name": "in kernel", "ts": clock.us(sub)})
            out.append({**base, "ph": "e", "name": "in kernel", "ts": clock.us(kdone)})
            out.append({**base, "ph": "b", "name": "awaiting reap", "ts": clock.us(kdone)})
            out.append({**base, "ph": "e", "name": "awaiting reap", "ts": clock.us(reap)})
        out.append({**base, "ph": "e", "name": name, "ts": clock.us(max(done, sub))})

        # Flow: submit -> kernel completion -> reap.
        flow_id += 1
        points: list[tuple[str, int, int]] = [("s", tid, sub)]
        if kdone is not None and kdone >= sub:
            ktid = KERNEL_TID_BASE + pid
            tracks[(pid, ktid)].append(
                {
                    "name": f"complete {r['op']}",
                    "cat": "kernel",
                    "_ts": kdone,
                    "_end": kdone,
                    "_depth": 0,
                    "args": {"request": rid, "ret": int(r["ret"])},
                }
            )
            points.append(("t", ktid, kdone))
        if reap is not None and pid in reapers:
            c_ts, c_end, c_tid = reapers[pid]
            i = int(np.searchsorted(c_end, reap, side="left"))
            if i < len(c_end) and int(c_ts[i]) <= reap <= int(c_end[i]):
                # Just inside the reaping call, so the arrow binds to it.
                at = max(int(c_ts[i]), reap - 1, points[-1][2])
                points.append(("f", int(c_tid[i]), at))
        if len(points) >= 2:
            if points[-1][0] != "f":
                points[-1] = ("f", points[-1][1], points[-1][2])
            for ph, ftid, ts in points:
                ev: dict[str, Any] = {
                    "ph": ph,
                    "name": "request",
                    "cat": "flow",
                    "id": flow_id,
                    "pid": pid,
                    "tid": ftid,
                    "ts": clock.us(ts),
                }
                if ph in ("t", "f"):
                    ev["bp"] = "e"
                out.append(ev)

    for pid in {int(p) for p in reqs["pid"].unique()}:
        if any(t == (pid, KERNEL_TID_BASE + pid) for t in tracks):
            out.append(
                {
                    "ph": "M",
                    "name": "thread_name",
                    "pid": pid,
                    "tid": KERNEL_TID_BASE + pid,
                    "args": {"name": "kernel completions"},
                }
            )

    # --- in-flight counters --------------------------------------------------------
    obs = reqs[reqs["observed"]]
    for (cpid, api), g in obs.groupby(["pid", "api"]):
        t, d = analysis.depth_series(
            g["submit_ns"].to_numpy(), g["done_ns"].to_numpy().astype("int64")
        )
        for ts, depth in zip(t.tolist(), d.tolist(), strict=True):
            out.append(
                {
                    "ph": "C",
                    "name": f"in flight ({api})",
                    "pid": int(str(cpid)),
                    "ts": clock.us(ts),
                    "args": {"requests": int(depth)},
                }
            )

    # --- lost events --------------------------------------------------------------
    if not fr.lost.empty:
        out.append(
            {
                "ph": "M",
                "name": "process_name",
                "pid": LOST_PID,
                "tid": 0,
                "args": {"name": "iotrace: lost events"},
            }
        )
        for r in records(fr.lost):
            tracks[(LOST_PID, 0)].append(
                {
                    "name": f"LOST {int(r['count'])} records ({r['probe']})",
                    "cat": "lost",
                    "_ts": int(r["ts_ns"]),
                    "_end": max(int(r["end_ns"]), int(r["ts_ns"])),
                    "_depth": 0,
                    "args": {"count": int(r["count"]), "probe": str(r["probe"])},
                }
            )

    for (pid, tid), slices in tracks.items():
        for sl in nest(slices):
            ev = {
                "ph": "X",
                "name": sl["name"],
                "cat": sl["cat"],
                "pid": pid,
                "tid": tid,
                "ts": clock.us(sl["_ts"]),
                "dur": (sl["_end"] - sl["_ts"]) / 1000,
            }
            if sl.get("args"):
                ev["args"] = sl["args"]
            out.append(ev)

    from iotrace.export import wall_offset_ns

    wall = wall_offset_ns(trace.meta)
    return {
        "traceEvents": out,
        "metadata": {
            "iotrace": True,
            "t0_monotonic_ns": fr.start_ns,
            "t0_realtime_ns": None if wall is None else fr.start_ns + wall,
            "kernel": trace.meta.get("kernel"),
            "command": trace.meta.get("command"),
            "complete": trace.complete,
            "lost_events": a.lost_total,
        },
    }


def write_chrome_json(trace: Trace, out: IO[bytes]) -> int:
    """Write the document to `out`, one event per line; returns the event count."""
    doc = build(trace)
    evs = doc["traceEvents"]
    out.write(b'{"traceEvents":[\n')
    for i, ev in enumerate(evs):
        out.write(json.dumps(ev, separators=(",", ":")).encode())
        out.write(b",\n" if i + 1 < len(evs) else b"\n")
    out.write(b'],\n"metadata":' + json.dumps(doc["metadata"]).encode() + b"}\n")
    return len(evs)
