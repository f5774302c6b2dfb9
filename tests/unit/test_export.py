"""`iotrace export`: row formats keep every record with the documented schema,
read chunk by chunk, with names a SQL engine takes unquoted and a wall-clock time;
the Chrome JSON nests slices, pairs async ids and binds flows the way the viewers
require. The Perfetto protobuf export has tests of its own (test_perfetto.py)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from report_fixtures import MS, US, TraceBuilder, all_models, sync_blocking

from iotrace import analysis, chrome_json, export, session
from iotrace.cli import main
from iotrace.errors import EXIT_IO
from iotrace.events import PROBE_SCHED


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    b = TraceBuilder()
    all_models(b)
    t = max(r.get("end_ns", 0) for r in b.rows)
    b.lost(t + MS, t + 2 * MS, 9, PROBE_SCHED)
    # Small chunks: the exporters must stitch many EVTS chunks together.
    return b.write(
        tmp_path_factory.mktemp("exp") / "all.trace", chunk=37, stats={"lost": {"sched": 9}}
    )


@pytest.fixture(scope="module")
def chrome(trace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("pf") / "t.json"
    assert main(["export", str(trace_path), "--format", "chrome-json", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "displayTimeUnit" not in doc
    return doc["traceEvents"]


def test_parquet_has_the_documented_schema_and_every_record(
    trace_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "t.parquet"
    assert main(["export", str(trace_path), "--format", "parquet", "-o", str(out)]) == 0
    table = pq.read_table(out)
    assert table.schema.remove_metadata() == export.EXPORT_SCHEMA
    meta = table.schema.metadata
    assert meta[b"iotrace.format"] == b"iotrace.export/2"
    assert json.loads(meta[b"iotrace.trace_meta"])["kernel"] == "6.18.0-test"
    trace = session.load(trace_path)
    assert table.num_rows == len(trace.events)
    df = table.to_pandas()
    calls = df[df["kind"] == "syscall"]
    assert ((calls["name"] == "pread64") & (calls["pid"] == 100)).sum() == 29
    eagain = calls[calls["error"] == "EAGAIN"]
    assert len(eagain) == 85 and (eagain["ret"] == -11).all()
    reads = calls[(calls["pid"] == 100) & (calls["name"] == "read")]
    assert set(reads["comm"]) == {"sync-blocking"} and set(reads["workload"]) == {"sync-blocking"}
    assert (reads["dur_ns"] == 20 * MS).all()
    uring = df[df["kind"] == "uring_request"]
    assert uring["worker"].sum() == 20 and uring["end_ns"].isna().all()
    assert df[df["kind"] == "lost"]["size"].sum() == 9
    preads = calls[(calls["name"] == "pread64") & (calls["pid"] == 100)]
    assert sorted(preads["file_offset"])[:3] == [0, 4096, 8192]
    # Off-CPU rows say what the thread was off CPU for, not an op code.
    off = df[df["kind"] == "off_cpu"]
    assert set(off["name"]) >= {"read", "pread64"} and not any(n.isdigit() for n in off["name"])


def test_parquet_round_trip_gives_the_report_figures(trace_path: Path, tmp_path: Path) -> None:
    """Figures recomputed from the export equal the report's."""
    out = tmp_path / "t.parquet"
    export.export(trace_path, "parquet", out)
    df = pq.read_table(out).to_pandas()
    a = analysis.analyze(session.load(trace_path))
    by = {p.pid: p for p in a.processes}
    aio = df[df["kind"] == "aio_request"]
    lat_us = (aio["end_ns"] - aio["ts_ns"]) / 1000
    assert len(aio) == by[400].requests["count"]
    assert lat_us.max() == by[400].requests["latency_us"]["max"]
    assert lat_us.median() == by[400].requests["latency_us"]["p50"]
    calls = df[(df["kind"] == "syscall") & (df["pid"] == 100)]
    assert calls.groupby("name").size().to_dict() == by[100].syscalls


def test_wall_time_comes_from_the_clock_anchor(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.syscall(1, 1, "read", 10**12 + 5, 7, ret=1)
    clock = {"monotonic_ns": 10**12, "realtime_ns": 1_800_000_000 * 10**9}
    out = tmp_path / "w.parquet"
    export.export(b.write(tmp_path / "w.trace", meta={"clock": clock}), "parquet", out)
    row = pq.read_table(out).to_pylist()[0]
    table = pq.read_table(out)
    assert table.column("wall_time").cast("int64").to_pylist() == [1_800_000_000 * 10**9 + 5]
    assert str(row["wall_time"]).startswith("2027-01-15 08:00:00")


def test_no_column_needs_quoting_in_sql() -> None:
    # The words DuckDB (and PostgreSQL) reserve that a trace export could plausibly use.
    reserved = {"offset", "limit", "order", "group", "end", "user", "table", "column", "default"}
    assert not reserved & set(export.EXPORT_SCHEMA.names)


def test_duckdb_reads_the_export_without_quoting(trace_path: Path, tmp_path: Path) -> None:
    import duckdb  # a dev dependency: a missing one is a failed set-up, not a skip

    out = tmp_path / "t.parquet"
    export.export(trace_path, "parquet", out)
    rel = duckdb.sql(
        f"select name, count(*), max(file_offset) from '{out}' "
        "where kind = 'syscall' and pid = 100 group by name order by name"
    )
    assert rel is not None
    rows = rel.fetchall()
    assert rows == [("pread64", 29, 28 * 4096), ("read", 23, 0)]


def test_csv_and_jsonl_hold_the_same_rows(trace_path: Path, tmp_path: Path) -> None:
    n = len(session.load(trace_path).events)
    c = tmp_path / "t.csv"
    j = tmp_path / "t.jsonl"
    assert main(["export", str(trace_path), "--format", "csv", "-o", str(c)]) == 0
    assert main(["export", str(trace_path), "--format", "jsonl", "-o", str(j)]) == 0
    with c.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    assert list(rows[0]) == export.EXPORT_SCHEMA.names
    lines = j.read_text().splitlines()
    assert len(lines) == n
    recs = [json.loads(line) for line in lines]
    assert set(recs[0]) == set(export.EXPORT_SCHEMA.names)
    assert sum(1 for r in recs if r["error"] == "EAGAIN") == 85


def test_export_refuses_to_clobber(trace_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.csv"
    out.write_text("old")
    assert main(["export", str(trace_path), "--format", "csv", "-o", str(out)]) == EXIT_IO
    assert out.read_text() == "old"
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["export", str(trace_path), "--format", "csv", "-o", str(out), "--force"]) == 0
    assert out.read_text().startswith('"trace_id"')


def test_cut_short_trace_exports_what_was_saved(tmp_path: Path, capsys) -> None:
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=3, preads=0)
    path = b.write(tmp_path / "cut.trace", close=False)
    out = tmp_path / "cut.jsonl"
    assert main(["export", str(path), "--format", "jsonl", "-o", str(out)]) == 0
    assert len(out.read_text().splitlines()) == len(b.rows)
    assert "cut short" in capsys.readouterr().err


# --- Chrome / Perfetto JSON -----------------------------------------------------------


def _slices(chrome: list[dict[str, Any]]) -> dict[tuple[int, int], list[tuple[int, int, str]]]:
    tracks: dict[tuple[int, int], list[tuple[int, int, str]]] = defaultdict(list)
    for e in chrome:
        if e["ph"] == "X":
            ts = round(e["ts"] * 1000)
            tracks[(e["pid"], e["tid"])].append((ts, ts + round(e["dur"] * 1000), e["name"]))
    return tracks


def test_thread_slices_nest_properly(chrome: list[dict[str, Any]]) -> None:
    tracks = _slices(chrome)
    assert tracks
    for track, slices in tracks.items():
        stack: list[tuple[int, int, str]] = []
        for s in sorted(slices, key=lambda s: (s[0], -s[1])):
            while stack and stack[-1][1] <= s[0] and not (stack[-1][0] == stack[-1][1] == s[0]):
                stack.pop()
            if stack:
                # A child lies wholly inside its parent.
                assert stack[-1][0] <= s[0] and s[1] <= stack[-1][1], (track, stack[-1], s)
            stack.append(s)


def test_off_cpu_is_a_child_of_the_blocking_syscall(chrome: list[dict[str, Any]]) -> None:
    slices = _slices(chrome)[(100, 100)]
    reads = [s for s in slices if s[2] == "read"]
    offs = [s for s in slices if s[2] == "off-CPU"]
    runq = [s for s in slices if s[2] == "waiting to run"]
    assert len(reads) == 23 and len(offs) == 23 + 29 and len(runq) == 23
    for r in reads:
        inside = [o for o in offs if r[0] <= o[0] and o[1] <= r[1]]
        assert len(inside) == 1


def test_async_requests_pair_by_unique_id(chrome: list[dict[str, Any]]) -> None:
    opened: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    pairs = 0
    for e in sorted((e for e in chrome if e["ph"] in "be"), key=lambda e: e["ts"]):
        k = (e["pid"], e["cat"], e["id"])
        if e["ph"] == "b":
            opened[k].append(e)
        else:
            assert opened[k] and opened[k][-1]["name"] == e["name"], e
            assert opened[k].pop()["ts"] <= e["ts"]
            pairs += 1
    assert all(not v for v in opened.values())
    tops = {
        (e["pid"], e["id"])
        for e in chrome
        if e["ph"] == "b" and e["name"].startswith(("pread", "read", "aio_read"))
    }
    # libaio 28 + io_uring 40 (none unobserved here); ids never repeat.
    assert len([t for t in tops if t[0] == 400]) == 28
    assert len([t for t in tops if t[0] == 500]) == 40
    # The iocb pointers are reused every batch; the ids still differ.
    libaio_ids = [
        e["id"]
        for e in chrome
        if e["ph"] == "b" and e["pid"] == 400 and e["name"].startswith("pread")
    ]
    assert len(set(libaio_ids)) == 28 and "0x7f0000.6" in libaio_ids
    assert pairs > 0


def test_flows_run_submit_to_completion_to_reap(chrome: list[dict[str, Any]]) -> None:
    tracks = _slices(chrome)
    flows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in chrome:
        if e["ph"] in ("s", "t", "f"):
            flows[e["id"]].append(e)
    libaio = [f for f in flows.values() if f[0]["pid"] == 400]
    assert len(libaio) == 28
    for f in libaio:
        assert [e["ph"] for e in f] == ["s", "t", "f"]
        assert f[0]["ts"] <= f[1]["ts"] <= f[2]["ts"]
        names = []
        for e in f:
            ts = round(e["ts"] * 1000)
            # Each point lies inside a slice of its thread track (what the arrow binds to).
            hits = [s for s in tracks[(e["pid"], e["tid"])] if s[0] <= ts <= s[1]]
            assert hits, e
            names.append(hits[-1][2])
        assert names[0] == "io_submit" and names[1].startswith("complete")
        assert names[2] == "io_getevents"


def test_in_flight_counter_tracks(chrome: list[dict[str, Any]]) -> None:
    c = [e for e in chrome if e["ph"] == "C" and e["pid"] == 400]
    depths = [e["args"]["requests"] for e in sorted(c, key=lambda e: e["ts"])]
    assert max(depths) == 4 and depths[-1] == 0
    assert {e["name"] for e in c} == {"in flight (libaio)"}


def test_lost_events_get_their_own_track(chrome: list[dict[str, Any]]) -> None:
    lost = [e for e in chrome if e["ph"] == "X" and e["cat"] == "lost"]
    assert len(lost) == 1 and lost[0]["args"]["count"] == 9
    names = {e["args"]["name"] for e in chrome if e["ph"] == "M" and e["name"] == "process_name"}
    assert "iotrace: lost events" in names
    assert any("[async-nonblocking, libaio]" in n for n in names)


def test_nest_clips_a_slice_that_outlives_its_parent() -> None:
    out = chrome_json.nest(
        [
            {"_ts": 0, "_end": 100, "name": "parent"},
            {"_ts": 50, "_end": 150, "name": "child"},
            {"_ts": 150, "_end": 160, "name": "next"},
        ]
    )
    assert [(s["name"], s["_ts"], s["_end"]) for s in out] == [
        ("parent", 0, 100),
        ("child", 50, 100),
        ("next", 150, 160),
    ]
    assert out[1]["args"]["clipped"] is True


def test_timestamps_keep_nanoseconds(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.syscall(1, 1, "read", 10**12 + 1, 7, ret=1)  # a 7 ns call
    b.syscall(1, 1, "read", 10**12 + 1 * US + 3, 1, ret=1)
    doc = chrome_json.build(session.load(b.write(tmp_path / "ns.trace")))
    xs = sorted((e["ts"], e["dur"]) for e in doc["traceEvents"] if e["ph"] == "X")
    assert xs == [(0.0, 0.007), (1.002, 0.001)]
