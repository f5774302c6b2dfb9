"""The analysis as it was before `report` streamed: pandas frames over a whole
loaded trace, summarised per process, thread and workload. Kept as the
reference the streaming analysis must reproduce figure for figure
(tests/unit/test_streaming.py); changes of meaning since (timed-out waits are
idle, threads' own models weighed, no rate from a handful of requests, page
faults and SQPOLL) are made here the plain way first."""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from iotrace import events
from iotrace.analysis import (
    _IO_WAIT_CALLS,
    DATA_FAMILIES,
    MUX_FAMILY,
    Frames,
    Summary,
    _counter_map,
    _unmatched,
    comms,
    depth_stats,
    frames,
    percentiles_us,
    records,
    workload_map,
)
from iotrace.analysis import FAULT_FAMILY, MIN_RATED_REQUESTS, MIN_RATED_SPAN_NS
from iotrace.classify import Activity, classify, combine, io_units
from iotrace.session import Trace


def _thread_spans(
    fr: Frames, tids: np.ndarray, sc: pd.DataFrame, off: pd.DataFrame, reqs: pd.DataFrame
) -> dict[int, tuple[int, int]]:
    spans: dict[int, tuple[int, int]] = {}
    parts = [sc[["tid", "ts_ns", "end_ns"]], off[["tid", "ts_ns", "end_ns"]]]
    sub = reqs[reqs["sync"] == False]  # noqa: E712 - pandas column compare
    if not sub.empty:
        parts.append(
            pd.DataFrame({"tid": sub["tid"], "ts_ns": sub["submit_ns"], "end_ns": sub["submit_ns"]})
        )
    tk = fr.tasks[fr.tasks["tid"].isin(tids)]
    if not tk.empty:
        parts.append(pd.DataFrame({"tid": tk["tid"], "ts_ns": tk["ts_ns"], "end_ns": tk["ts_ns"]}))
    allp = pd.concat(parts, ignore_index=True)
    if allp.empty:
        return spans
    g = allp.groupby("tid")
    lo = g["ts_ns"].min()
    hi = g["end_ns"].max()
    for tid in lo.index:
        spans[int(tid)] = (int(lo[tid]), int(max(hi[tid], lo[tid])))
    return spans


def _batch(sc: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    rules = {
        "iocbs_per_io_submit": (sc["name"] == "io_submit") & (sc["ret"] > 0),
        "events_per_io_getevents": sc["name"].isin(["io_getevents", "io_pgetevents"])
        & (sc["ret"] >= 0),
        "sqes_per_io_uring_enter": (sc["name"] == "io_uring_enter")
        & (sc["size"] > 0)
        & (sc["ret"] >= 0),
        "ready_per_mux_call": (sc["family"] == MUX_FAMILY) & (sc["ret"] >= 0),
    }
    for name, mask in rules.items():
        vals = sc.loc[mask, "ret"]
        if len(vals):
            out[name] = {
                "calls": len(vals),
                "mean": round(float(vals.mean()), 3),
                "max": int(vals.max()),
            }
    return out


def _families(sc: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, g in sc.groupby("name", sort=True):
        ret = g["ret"]
        out[str(name)] = {
            "calls": len(g),
            # Only data calls move bytes; a multiplexer's result is a count of fds.
            "bytes": int(ret[ret > 0].sum()) if g["family"].iloc[0] in DATA_FAMILIES else None,
            "errors": int((ret < 0).sum()),
            "eagain": int(g["eagain"].sum()),
            "latency_us": percentiles_us(g["dur_ns"].to_numpy()),
            # Share of the time inside these calls spent asleep (off CPU, not runnable),
            # the same measure as the process's BLOCK%.
            "asleep_share": round(
                float((g["off_cpu_ns"] - g["runq_ns"]).sum()) / max(int(g["dur_ns"].sum()), 1),
                3,
            ),
            "runq_share": round(float(g["runq_ns"].sum()) / max(int(g["dur_ns"].sum()), 1), 3),
        }
    return out


def _activity(
    sc: pd.DataFrame, reqs: pd.DataFrame, thread_ns: int, tids: list[int], main_tid: int
) -> Activity:
    by = sc.groupby("name")
    syscalls = {str(k): int(v) for k, v in by.size().items()}
    syscall_ns = {str(k): int(v) for k, v in by["dur_ns"].sum().items()}
    off = {str(k): int(v) for k, v in (by["off_cpu_ns"].sum() - by["runq_ns"].sum()).items()}
    eag = {str(k): int(v) for k, v in by["eagain"].sum().items() if v}
    ar = reqs[~reqs["sync"].astype(bool)]
    requests = {str(k): int(v) for k, v in ar.groupby("api").size().items()}
    data = sc[sc["family"].isin(DATA_FAMILIES)]
    helpers = data[data["tid"] != main_tid]
    timeouts, idle = _timeouts(sc)
    return Activity(
        wall_ns=thread_ns,
        syscalls=syscalls,
        syscall_ns=syscall_ns,
        off_cpu_ns=off,
        eagain=eag,
        requests=requests,
        threads=len(tids),
        main_data_calls=int((data["tid"] == main_tid).sum()),
        helper_threads=int(helpers["tid"].nunique()),
        main_mux_calls=int(((sc["family"] == MUX_FAMILY) & (sc["tid"] == main_tid)).sum()),
        helper_calls={str(k): int(v) for k, v in helpers.groupby("name").size().items()},
        mux_timeouts=timeouts,
        mux_idle_ns=idle,
        waited_data_calls=_waited(sc, reqs),
    )


def _waited(sc: pd.DataFrame, reqs: pd.DataFrame) -> int:
    """Data calls on the (tid, fd)s that a ready wait started a request on."""
    w = reqs[reqs["sync"].astype(bool) & reqs["waited"].astype(bool)]
    keys = set(zip(w["tid"].tolist(), w["fd"].tolist(), strict=True))
    data = sc[sc["family"].isin(DATA_FAMILIES)]
    return sum(1 for k in zip(data["tid"].tolist(), data["fd"].tolist(), strict=True) if k in keys)


def _timeouts(sc: pd.DataFrame) -> tuple[dict[str, int], dict[str, int]]:
    """Multiplexer name -> waits that returned 0, and their time asleep."""
    mux = sc[sc["family"] == MUX_FAMILY]
    to = mux[mux["ret"] == 0]
    asleep = (to["off_cpu_ns"] - to["runq_ns"]).groupby(to["name"]).sum()
    names = sorted(set(mux["name"]))
    counts = to.groupby("name").size()
    return (
        {n: int(counts.get(n, 0)) for n in names},
        {n: int(asleep.get(n, 0)) for n in names},
    )


def _thread_label(sc: pd.DataFrame, reqs: pd.DataFrame, span: tuple[int, int]):
    by = sc.groupby("name")
    timeouts, idle = _timeouts(sc)
    ar = reqs[~reqs["sync"].astype(bool)]
    a = Activity(
        wall_ns=span[1] - span[0],
        syscalls={str(k): int(v) for k, v in by.size().items()},
        off_cpu_ns={
            str(k): int(v) for k, v in (by["off_cpu_ns"].sum() - by["runq_ns"].sum()).items()
        },
        eagain={str(k): int(v) for k, v in by["eagain"].sum().items() if v},
        requests={str(k): int(v) for k, v in ar.groupby("api").size().items()},
        mux_timeouts={k: v for k, v in timeouts.items() if v},
        mux_idle_ns={k: v for k, v in idle.items() if v},
        waited_data_calls=_waited(sc, reqs),
    )
    return classify(a), io_units(a)


def summarize(
    fr: Frames,
    *,
    scope: str,
    pid: int,
    tids: list[int],
    main_tid: int,
    comm: str,
    workload: str = "",
    expected_model: str = "",
) -> Summary:
    """The figures for the threads `tids` (one process, one thread, or a workload)."""
    tid_arr = np.asarray(tids, dtype="int64")
    sc = fr.syscalls[fr.syscalls["tid"].isin(tid_arr)]
    reqs_all = fr.requests[fr.requests["tid"].isin(tid_arr)]
    off = fr.off_cpu[fr.off_cpu["tid"].isin(tid_arr)]
    spans = _thread_spans(fr, tid_arr, sc, off, reqs_all)
    thread_ns = sum(e - s for s, e in spans.values())
    wall_lo = min((s for s, _ in spans.values()), default=0)
    wall_hi = max((e for _, e in spans.values()), default=0)
    wall_ns = wall_hi - wall_lo

    label = classify(_activity(sc, reqs_all, thread_ns, tids, main_tid))
    if len(spans) > 1:
        label = combine(
            label,
            [
                _thread_label(sc[sc["tid"] == t], reqs_all[reqs_all["tid"] == t], spans[t])
                for t in sorted(spans)
            ],
        )
    async_model = label.model == "async-nonblocking" and label.api in (
        "libaio",
        "io_uring",
        "posix-aio",
    )
    reqs = reqs_all[reqs_all["api"] == label.api] if async_model else reqs_all[reqs_all["sync"]]
    if async_model and reqs.empty:
        # posix-aio seen only as helper threads doing blocking calls.
        reqs = reqs_all[reqs_all["sync"]]
    observed = reqs[reqs["observed"]]
    n_req = len(reqs)
    lat = observed["latency_ns"].to_numpy(dtype="float64")
    kern = reqs["kernel_ns"].to_numpy(dtype="float64")
    if len(observed):
        r_lo = float(reqs["start_ns"].min())
        r_hi = float(np.nanmax(observed["done_ns"].to_numpy(dtype="float64")))
        r_span = max(r_hi - r_lo, 1.0)
    else:
        r_span = 0.0
    n_sys = len(sc)
    total_bytes = int(observed["bytes"].sum())
    rated = len(observed) >= MIN_RATED_REQUESTS and r_span >= MIN_RATED_SPAN_NS

    # Time shares, summed over threads (so a multi-threaded process stays within 100%).
    io_calls = sc["family"].isin((*DATA_FAMILIES, FAULT_FAMILY)) | sc["name"].isin(_IO_WAIT_CALLS)
    asleep = sc["off_cpu_ns"] - sc["runq_ns"]
    blocked_io = int(asleep[io_calls].sum())
    mux_wait = int(asleep[(sc["family"] == MUX_FAMILY) & (sc["ret"] != 0)].sum())
    # Off-CPU per thread from its intervals; a thread without any (probe missing) falls
    # back to what its syscalls saw.
    off_tids = set(off["tid"].unique().tolist())
    sc_rest = sc[~sc["tid"].isin(off_tids)]
    off_total = int((off["end_ns"] - off["ts_ns"]).sum()) + int(sc_rest["off_cpu_ns"].sum())
    runq = int(off["runq_ns"].sum()) + int(sc_rest["runq_ns"].sum())
    on_cpu = max(thread_ns - off_total, 0)
    other = max(off_total - runq - blocked_io - mux_wait, 0)

    def share(v: int) -> float | None:
        return round(v / thread_ns, 4) if thread_ns > 0 else None

    time_share = {
        "on_cpu": share(on_cpu),
        "blocked_io": share(blocked_io),
        "mux_wait": share(mux_wait),
        "runq": share(runq),
        "other_sleep": share(other),
    }
    eagain = {str(k): int(v) for k, v in sc.groupby("name")["eagain"].sum().items() if v}
    if len(observed):
        depth = depth_stats(
            observed["start_ns"].to_numpy(),
            observed["done_ns"].to_numpy(dtype="float64"),
            int(r_span),
        )
    else:
        depth = {"mean": 0.0, "max": 0}
    requests: dict[str, Any] = {
        "count": n_req,
        "api": label.api,
        "completed": len(observed),
        "not_observed": n_req - len(observed),
        "errors": int((observed["ret"] < 0).sum()),
        "bytes": total_bytes,
        "iops": round(len(observed) / (r_span / 1e9), 1) if rated else None,
        "mb_per_s": round(total_bytes / 1e6 / (r_span / 1e9), 3)
        if rated and label.model != "memory-mapped"
        else None,
        "latency_us": percentiles_us(lat),
        "kernel_latency_us": percentiles_us(kern) if not reqs["sync"].all() else None,
        "syscalls_per_request": round(n_sys / n_req, 3) if n_req else None,
        "cpu_us_per_request": round(on_cpu / 1000 / n_req, 3) if n_req else None,
        "eagain_per_request": round(sum(eagain.values()) / n_req, 3) if n_req else None,
        "to_kernel_workers": int(reqs["worker"].sum()),
        "reap_inferred": int(reqs["reap_inferred"].sum()),
        "sqpoll": bool(
            label.api == "io_uring"
            and async_model
            and (
                (fr.syscalls["pid"] == pid)
                & (fr.syscalls["name"] == "io_uring_setup")
                & (fr.syscalls["ret"] >= 0)
                & ((fr.syscalls["offset"].astype("int64") & 2) != 0)
            ).any()
        ),
        "major_faults": int((sc["family"] == FAULT_FAMILY).sum()),
    }
    return Summary(
        scope=scope,
        pid=pid,
        tid=main_tid if scope == "thread" else 0,
        comm=comm,
        workload=workload,
        label=label,
        threads=len(spans),
        wall_ns=wall_ns,
        thread_ns=thread_ns,
        syscalls={str(k): int(v) for k, v in sc.groupby("name").size().items()},
        eagain=eagain,
        errors=int((sc["ret"] < 0).sum()),
        requests=requests,
        time_share=time_share,
        batch=_batch(sc),
        in_flight=depth,
        families=_families(sc),
        expected_model=expected_model,
    )


def analyze(trace: Trace) -> dict[str, Any]:
    """The old analyze(), returning what report_json prints from it."""
    fr = frames(trace)
    names = comms(trace, fr)
    wl_by_pid, wl_models = workload_map(trace)
    # A workload's first pid is the one doing its I/O; the others are its producers,
    # whose writes are not the model the workload declares.
    wl_main = {
        int(w["pids"][0])
        for w in trace.meta.get("workloads") or []
        if isinstance(w, Mapping) and w.get("pids") and isinstance(w["pids"][0], int)
    }
    tids_by_pid: dict[int, set[int]] = {}
    for df in (fr.syscalls, fr.requests, fr.off_cpu):
        for pid, tid in df[["pid", "tid"]].drop_duplicates().itertuples(index=False):
            tids_by_pid.setdefault(int(pid), set()).add(int(tid))
    for t in trace.tasks:
        tids_by_pid.setdefault(t.pid, set()).add(t.tid)
    titles = {t.pid: t.title for t in trace.tasks if t.title and t.tid == t.pid}
    processes: list[Summary] = []
    for pid in sorted(tids_by_pid):
        tids = sorted(tids_by_pid[pid])
        wl = wl_by_pid.get(pid, "")
        s = summarize(
            fr,
            scope="process",
            pid=pid,
            tids=tids,
            main_tid=pid,
            comm=names.get(pid, names.get(tids[0], "?")),
            workload=wl,
            expected_model=wl_models.get(wl, "") if pid in wl_main else "",
        )
        s.title = titles.get(pid, "")
        if len(tids) > 1:
            s.thread_summaries = [
                summarize(
                    fr,
                    scope="thread",
                    pid=pid,
                    tids=[t],
                    main_tid=t,
                    comm=names.get(t, s.comm),
                    workload=wl,
                )
                for t in tids
            ]
        processes.append(s)
    workloads: list[Summary] = []
    for wl in sorted(set(wl_by_pid.values())):
        pids = [p for p, w in wl_by_pid.items() if w == wl and p in tids_by_pid]
        if not pids:
            continue
        tids = sorted(set().union(*(tids_by_pid[p] for p in pids)))
        main = min(pids)
        s = summarize(
            fr,
            scope="workload",
            pid=main,
            tids=tids,
            main_tid=main,
            comm=names.get(main, "?"),
            workload=wl,
            expected_model=wl_models.get(wl, ""),
        )
        workloads.append(s)

    lost = _counter_map(trace.stats, "lost")
    lost_records = int(fr.lost["count"].sum()) if not fr.lost.empty else 0
    lost_total = max(sum(lost.values()), lost_records)
    ranges = [
        {
            "start_s": round((int(r["ts_ns"]) - fr.start_ns) / 1e9, 6),
            "end_s": round((int(r["end_ns"]) - fr.start_ns) / 1e9, 6),
            "count": int(r["count"]),
            "probe": str(r["probe"]),
        }
        for r in records(fr.lost.sort_values("ts_ns"))
    ]
    out = dict(
        trace=trace,
        frames=fr,
        processes=processes,
        workloads=workloads,
        lost=lost,
        lost_total=lost_total,
        lost_ranges=ranges,
        unmatched=_unmatched(trace.stats),
        evicted={**_counter_map(trace.stats, "evicted"), **_counter_map(trace.stats, "other")},
        write_error=str(trace.stats.get("write_error") or ""),
    )

    out["processes"] = [p.to_json() for p in processes]
    out["workloads"] = [w.to_json() for w in workloads]
    out["start_ns"] = fr.start_ns
    out["duration_s"] = round((fr.end_ns - fr.start_ns) / 1e9, 6)
    out["records"] = len(trace.events)
    del out["trace"], out["frames"]
    return out
