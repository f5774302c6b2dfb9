"""`iotrace export FILE --format parquet|csv|jsonl|perfetto|chrome-json -o OUT`.

The row formats (parquet, csv, jsonl) hold one row per record with the
columns of `EXPORT_SCHEMA`, documented in the README, and are written one
trace chunk at a time so a large trace never sits in memory whole. So is the
perfetto format (a protobuf trace, see `iotrace.perfetto`). chrome-json (see
`iotrace.chrome_json`) needs the whole trace in memory to nest slices and draw
flows; it is kept for viewers that only read JSON.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from iotrace import events, session
from iotrace.analysis import kind_names, op_names, workload_map
from iotrace.errors import IotraceError, TraceFileError
from iotrace.events import FdOp, Flag, Kind
from iotrace.fdpaths import FdTables
from iotrace.outfile import check_target, output_file

EXPORT_FORMAT = "iotrace.export/2"
"""/2: `offset` became `file_offset` (a reserved word in SQL), `wall_time` was added
and off_cpu rows are named by what the thread was off CPU for; `calls` was added for
syscall_run rows (storms the kernel folded: one row for up to 255 calls)."""

EXPORT_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("pid", pa.uint32(), nullable=False),
        pa.field("tid", pa.uint32(), nullable=False),
        pa.field("comm", pa.string()),
        pa.field("workload", pa.string()),
        pa.field("ts_ns", pa.uint64(), nullable=False),
        pa.field("wall_time", pa.timestamp("ns", tz="UTC")),
        pa.field("end_ns", pa.uint64()),
        pa.field("kdone_ns", pa.uint64()),
        pa.field("dur_ns", pa.int64()),
        pa.field("calls", pa.uint32()),
        pa.field("off_cpu_ns", pa.uint64(), nullable=False),
        pa.field("runq_ns", pa.uint64(), nullable=False),
        pa.field("ret", pa.int64(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("fd", pa.int64(), nullable=False),
        pa.field("path", pa.dictionary(pa.int32(), pa.string())),
        pa.field("size", pa.uint64(), nullable=False),
        pa.field("file_offset", pa.uint64(), nullable=False),
        pa.field("key", pa.uint64(), nullable=False),
        pa.field("user_data", pa.uint64(), nullable=False),
        pa.field("flags", pa.uint32(), nullable=False),
        pa.field("worker", pa.bool_(), nullable=False),
        pa.field("completion_observed", pa.bool_(), nullable=False),
    ]
)
"""One row per trace record. Times are CLOCK_MONOTONIC ns; wall_time is ts_ns on the
wall clock (from the trace's clock anchor; null without one); end_ns/kdone_ns are null
when not observed, dur_ns = end_ns - ts_ns when both are known. `name` is the syscall
or request opcode; for off_cpu rows the call the thread slept in, "preempted" or
"untraced" (asleep outside the traced calls). `calls` is 1 for a syscall row and the
number of calls for a syscall_run row, whose dur_ns is the calls' summed duration
(kdone_ns null), ret their summed result or shared errno, size their summed sizes,
key the shortest and longest call and user_data their histogram (README: run
records); null for other rows. `path` is the file the record's fd named at that
moment (iotrace.fdpaths; dictionary-encoded), null when it has no fd or the fd was
never seen opened; fd rows (kind "fd") are the fd-table changes, named by what
changed (open, close, dup, ...), with the path they gave the fd."""

_ERRNAMES = dict(errno.errorcode)
TABLE_ROWS = 65_536
"""Records per export table: bounds a row writer's memory."""
CHROME_JSON_MAX_RECORDS = 1_000_000
"""The chrome-json export holds the whole trace in memory (~2 KB per record): bigger
traces are refused up front (the perfetto export streams any size)."""


class Identity:
    """tid -> comm and pid -> workload, gathered in a first pass over the file."""

    def __init__(self) -> None:
        self.comm: dict[int, str] = {}
        self.workload: dict[int, str] = {}


def scan_identity(path: Path, meta: dict[str, Any]) -> Identity:
    """Read task identities (PROC chunks and TASK records) without keeping events."""
    ident = Identity()
    _, _, chunks = session.iter_chunks(path)
    exec_comm: dict[int, tuple[int, str]] = {}
    for tag, value in chunks:
        if tag == b"PROC":
            for t in sorted(value, key=lambda t: t.start_ns):
                if t.comm:
                    ident.comm[t.tid] = t.comm
                if t.workload:
                    ident.workload.setdefault(t.pid, t.workload)
        elif tag == b"EVTS":
            tk = value[value["kind"] == int(Kind.TASK)]
            for r in tk:
                comm = events.comm_from_words(int(r["key"]), int(r["user_data"]))
                tid = int(r["tid"])
                if not comm:
                    continue
                if int(r["op"]) == events.TaskOp.EXEC:
                    if tid not in exec_comm or exec_comm[tid][0] < int(r["ts_ns"]):
                        exec_comm[tid] = (int(r["ts_ns"]), comm)
                elif tid not in ident.comm:
                    ident.comm[tid] = comm
    for tid, (_, comm) in exec_comm.items():
        ident.comm[tid] = comm
    fake = session.Trace(
        path=path,
        meta=meta,
        events=session.empty_events(),
        tasks=[],
        stats={},
        footer=None,
        version=events.SCHEMA_VERSION,
    )
    by_pid, _ = workload_map(fake)
    for pid, wl in by_pid.items():
        ident.workload.setdefault(pid, wl)
    return ident


def trace_id(path: Path, meta: dict[str, Any]) -> str:
    return str(meta.get("trace_id") or path.stem)


def wall_offset_ns(meta: dict[str, Any]) -> int | None:
    """realtime - monotonic at the trace's clock anchor (None without one)."""
    clock = meta.get("clock")
    if not isinstance(clock, dict):
        return None
    try:
        return int(clock["realtime_ns"]) - int(clock["monotonic_ns"])
    except (KeyError, TypeError, ValueError):
        return None


def record_names(ev: np.ndarray) -> np.ndarray:
    """`name` of each record: op names, and what each off-CPU interval was."""
    kinds = ev["kind"]
    names = op_names(kinds, ev["op"])
    oc = np.flatnonzero(kinds == int(Kind.OFF_CPU))
    if len(oc):
        from iotrace.perfetto import off_cpu_reason

        sel = ev[oc]
        off = (sel["end_ns"].astype("int64") - sel["ts_ns"].astype("int64")).tolist()
        names[oc] = [
            off_cpu_reason(o, d, q)
            for o, d, q in zip(sel["op"].tolist(), off, sel["runq_ns"].tolist(), strict=True)
        ]
    return names


def event_table(
    ev: np.ndarray,
    ident: Identity,
    tid_name: str,
    wall_offset: int | None = None,
    paths: list[str | None] | None = None,
) -> pa.Table:
    """The export rows for a batch of records (`paths`: each record's, from
    fdpaths.FdTables; none known without it)."""
    kinds = ev["kind"]
    flags = ev["flags"].astype("uint32")
    end = ev["end_ns"].astype("uint64")
    kdone = ev["kdone_ns"].astype("uint64")
    ts = ev["ts_ns"].astype("uint64")
    end_known = end > 0
    ret = ev["ret"].astype("int64")
    is_run = kinds == int(Kind.SYSCALL_RUN)
    is_call = (kinds == int(Kind.SYSCALL)) | is_run
    calls = np.where(is_run, ev["offset"], 1).astype("uint32")
    dur = np.where(is_run, kdone.astype("int64"), end.astype("int64") - ts.astype("int64"))
    kdone = np.where(is_run, 0, kdone).astype("uint64")
    is_req = np.isin(
        kinds, [int(Kind.AIO_REQUEST), int(Kind.URING_REQUEST), int(Kind.POSIX_AIO_REQUEST)]
    )
    not_obs = (flags & int(Flag.NOT_OBSERVED)) != 0
    observed = ~not_obs & (end_known | (kdone > 0) | ~is_req)
    err = np.where((ret < 0) & (is_call | (is_req & observed)), -ret, 0)
    error = [_ERRNAMES.get(e, f"E{e}") if e else None for e in err.tolist()]
    tids = ev["tid"].astype("uint32")
    pids = ev["pid"].astype("uint32")
    cols = {
        "trace_id": pa.array([tid_name] * len(ev), pa.string()),
        "kind": pa.array(kind_names(kinds), pa.string()),
        "name": pa.array(record_names(ev), pa.string()),
        "pid": pa.array(pids),
        "tid": pa.array(tids),
        "comm": pa.array([ident.comm.get(int(t)) for t in tids.tolist()], pa.string()),
        "workload": pa.array([ident.workload.get(int(p)) for p in pids.tolist()], pa.string()),
        "ts_ns": pa.array(ts),
        "wall_time": pa.array(
            (ts.astype("int64") + wall_offset)
            if wall_offset is not None
            else np.zeros(len(ev), "int64"),
            pa.timestamp("ns", tz="UTC"),
            mask=None if wall_offset is not None else np.ones(len(ev), bool),
        ),
        "end_ns": pa.array(end, mask=~end_known),
        "kdone_ns": pa.array(kdone, mask=kdone == 0),
        "dur_ns": pa.array(dur, mask=~end_known),
        "calls": pa.array(calls, mask=~is_call),
        "off_cpu_ns": pa.array(ev["off_cpu_ns"].astype("uint64")),
        "runq_ns": pa.array(ev["runq_ns"].astype("uint64")),
        "ret": pa.array(ret),
        "error": pa.array(error, pa.string()),
        "fd": pa.array(ev["fd"].astype("int64")),
        "path": pa.array(
            paths if paths is not None else [None] * len(ev), pa.string()
        ).dictionary_encode(),
        "size": pa.array(ev["size"].astype("uint64")),
        "file_offset": pa.array(ev["offset"].astype("uint64")),
        "key": pa.array(ev["key"].astype("uint64")),
        "user_data": pa.array(ev["user_data"].astype("uint64")),
        "flags": pa.array(flags),
        "worker": pa.array((flags & int(Flag.WORKER)) != 0),
        "completion_observed": pa.array(observed),
    }
    return pa.Table.from_pydict(cols, schema=EXPORT_SCHEMA)


def iter_tables(path: Path) -> tuple[dict[str, Any], Iterator[pa.Table], list[str]]:
    """Metadata, the export rows chunk by chunk, and a list that receives the
    damage reason if the file turns out to be cut short."""
    _, meta, chunks = session.iter_chunks(path)
    ident = scan_identity(path, meta)
    tid_name = trace_id(path, meta)
    wall = wall_offset_ns(meta)
    damage: list[str] = []
    fds = FdTables()

    def gen() -> Iterator[pa.Table]:
        saw_end = damaged = False
        for tag, value in chunks:
            # One chunk holds up to 645 k records; a row writer turns each
            # table into Python objects, so tables are kept small whatever the
            # file's chunks are (a crafted one holds only full-size chunks).
            if tag == b"PROC":
                for t in value:
                    fds.add_task(t)
            elif tag == b"EVTS":
                # PATH records are pieces of the path their open's row carries.
                paths = fds.paths(value)
                keep = ~((value["kind"] == int(Kind.FD)) & (value["op"] == int(FdOp.PATH)))
                value = value[keep]
                paths = [p for p, k in zip(paths, keep.tolist(), strict=True) if k]
                for start in range(0, len(value), TABLE_ROWS):
                    yield event_table(
                        value[start : start + TABLE_ROWS],
                        ident,
                        tid_name,
                        wall,
                        paths[start : start + TABLE_ROWS],
                    )
            elif tag == b"END.":
                saw_end = True
                if value.get("recording_failed") and not damage:
                    damage.append(f"the recording failed: {value['recording_failed']}")
            elif tag == b"DMG!":
                damaged = True
                damage.append(str(value))
            elif tag == b"SKIP":
                damage.append(f"skipped a chunk of a newer trace format ({value})")
        if not saw_end and not damaged:
            damage.append("cut short: the writer stopped before closing the file")

    return meta, gen(), damage


def _schema_with_meta(meta: dict[str, Any]) -> pa.Schema:
    return EXPORT_SCHEMA.with_metadata(
        {
            b"iotrace.format": EXPORT_FORMAT.encode(),
            b"iotrace.trace_meta": json.dumps(meta).encode(),
        }
    )


def write_parquet(tables: Iterator[pa.Table], meta: dict[str, Any], out: IO[bytes]) -> int:
    schema = _schema_with_meta(meta)
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as w:
        for t in tables:
            w.write_table(t.replace_schema_metadata(schema.metadata))
            rows += t.num_rows
    return rows


def write_csv(tables: Iterator[pa.Table], meta: dict[str, Any], out: IO[bytes]) -> int:
    rows = 0
    with pacsv.CSVWriter(out, EXPORT_SCHEMA) as w:
        for t in tables:
            w.write_table(t)
            rows += t.num_rows
    return rows


def _iso(value: Any) -> str:
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")


def write_jsonl(tables: Iterator[pa.Table], meta: dict[str, Any], out: IO[bytes]) -> int:
    rows = 0
    for t in tables:
        for rec in t.to_pylist():
            # wall_time comes out as a timestamp object: ISO 8601, to the nanosecond
            line = json.dumps(rec, separators=(",", ":"), default=_iso)
            out.write(line.encode() + b"\n")
        rows += t.num_rows
    return rows


_ROW_WRITERS: dict[str, Callable[[Iterator[pa.Table], dict[str, Any], IO[bytes]], int]] = {
    "parquet": write_parquet,
    "csv": write_csv,
    "jsonl": write_jsonl,
}


def export(
    path: str | Path, fmt: str, output: str | Path, *, force: bool = False
) -> tuple[int, str]:
    """Write `path` as `fmt` to `output`. Returns (rows or trace events written, damage)."""
    path = Path(path)
    check_target(output, force=force)
    if fmt == "perfetto":
        from iotrace import perfetto

        with output_file(output, force=force) as out:
            written, dmg = perfetto.write(path, out)
        return written.packets, dmg
    if fmt == "chrome-json":
        from iotrace import chrome_json

        n = session.count_records(path)
        if n > CHROME_JSON_MAX_RECORDS:
            raise IotraceError(
                f"{path} holds {n:,} records, more than the chrome-json export takes "
                f"({CHROME_JSON_MAX_RECORDS:,}); use --format perfetto, parquet, csv or jsonl"
            )
        trace = session.load(path)
        with output_file(output, force=force) as out:
            n = chrome_json.write_chrome_json(trace, out)
        notes = [trace.damage] if trace.damage else []
        notes += [f"skipped a chunk of a newer trace format ({t})" for t in trace.skipped]
        return n, "; ".join(notes)
    if fmt not in _ROW_WRITERS:
        raise TraceFileError(f"unknown export format {fmt!r}")
    meta, tables, damage = iter_tables(path)
    with output_file(output, force=force) as out:
        n = _ROW_WRITERS[fmt](tables, meta, out)
    return n, "; ".join(damage)


def cmd_export(args: argparse.Namespace) -> int:
    n, damage = export(args.file, args.format, args.output, force=bool(args.force))
    what = {"perfetto": "packets", "chrome-json": "trace events"}.get(args.format, "rows")
    print(f"wrote {args.output}: {n:,} {what} ({args.format})")
    if damage:
        print(
            f"iotrace: note: {args.file}: {damage}; exported what was read",
            file=sys.stderr,
        )
    return 0
