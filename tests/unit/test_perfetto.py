"""`iotrace export --format perfetto`: the protobuf trace, read back with a decoder
written from Perfetto's .proto files (perfetto_decode), has a track per process and
thread, syscalls with their off-CPU time nested inside, requests on async tracks
with flows to the call that reaped them, an in-flight counter and lost ranges."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from perfetto_decode import Decoded, Slice, decode
from report_fixtures import MS, US, TraceBuilder, all_models

from iotrace import perfetto, session
from iotrace.cli import main
from iotrace.events import PROBE_SCHED, SYSCALL_BY_OP


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    b = TraceBuilder()
    all_models(b)
    t = max(r.get("end_ns", 0) for r in b.rows)
    b.lost(t + MS, t + 2 * MS, 9, PROBE_SCHED)
    return b.write(tmp_path_factory.mktemp("pb") / "all.trace", chunk=37)


@pytest.fixture(scope="module")
def decoded(trace_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Decoded:
    out = tmp_path_factory.mktemp("pbo") / "t.pftrace"
    assert main(["export", str(trace_path), "--format", "perfetto", "-o", str(out)]) == 0
    return decode(out.read_bytes())


@pytest.fixture(scope="module")
def slices(decoded: Decoded) -> list[Slice]:
    return decoded.slices()


def _thread_track(d: Decoded, tid: int) -> int:
    return next(u for u, t in d.tracks.items() if t.get("kind") == "thread" and t["tid"] == tid)


def test_every_process_and_thread_has_a_named_track(decoded: Decoded, trace_path: Path) -> None:
    trace = session.load(trace_path)
    threads = {t["tid"]: t for t in decoded.tracks.values() if t.get("kind") == "thread"}
    procs = {t["pid"]: t for t in decoded.tracks.values() if t.get("kind") == "process"}
    ev = trace.events
    calls = ev[ev["kind"] == 1]
    assert set(threads) >= {int(t) for t in calls["tid"]}
    assert threads[100]["name"] == "sync-blocking" and threads[100]["pid"] == 100
    # A thread track hangs under its process track.
    assert all(decoded.tracks[t["parent"]]["kind"] == "process" for t in threads.values())
    assert procs[100]["name"] == "sync-blocking"


def test_every_syscall_is_a_slice_on_its_thread(
    decoded: Decoded, slices: list[Slice], trace_path: Path
) -> None:
    ev = session.load(trace_path).events
    calls = ev[ev["kind"] == 1]
    want = Counter(
        (int(t), SYSCALL_BY_OP[int(o)].name) for t, o in zip(calls["tid"], calls["op"], strict=True)
    )
    tid_of = {u: t["tid"] for u, t in decoded.tracks.items() if t.get("kind") == "thread"}
    got = Counter(
        (tid_of[s.track], s.name)
        for s in slices
        if s.depth == 0 and s.track in tid_of and not s.name.startswith(("off-CPU", "preempted"))
    )
    assert got == want
    reads = [s for s in slices if s.track == _thread_track(decoded, 100) and s.name == "read"]
    assert len(reads) == 23
    assert all(s.end - s.ts == 20 * MS for s in reads)
    assert reads[0].args["fd"] == 3 and reads[0].args["ret"] == 4096
    preads = [s for s in slices if s.track == _thread_track(decoded, 100) and s.name == "pread64"]
    assert sorted(s.args["file_offset"] for s in preads)[:3] == [0, 4096, 8192]


def test_off_cpu_nests_inside_the_blocking_call(decoded: Decoded, slices: list[Slice]) -> None:
    mine = [s for s in slices if s.track == _thread_track(decoded, 100)]
    reads = [s for s in mine if s.name == "read"]
    offs = [s for s in mine if s.name == "off-CPU (read)"]
    runq = [s for s in mine if s.name == "waiting to run"]
    assert len(offs) == 23 and len(runq) == 23
    assert len([s for s in mine if s.name == "off-CPU (pread64)"]) == 29
    for o in offs:
        assert o.depth == 1
        assert any(r.ts <= o.ts and o.end <= r.end for r in reads)
    assert all(r.depth == 2 and r.end - r.ts == 5 * US for r in runq)


def test_requests_sit_on_async_tracks_with_flows_to_the_reap(
    decoded: Decoded, slices: list[Slice]
) -> None:
    lanes = {u for u, t in decoded.tracks.items() if t.get("name") == "libaio requests"}
    assert lanes and all(decoded.tracks[decoded.tracks[u]["parent"]]["pid"] == 400 for u in lanes)
    reqs = [s for s in slices if s.track in lanes and s.depth == 0]
    assert len(reqs) == 28 and {s.name for s in reqs} == {"pread"}
    # Requests in flight at once go to different tracks: none overlap on one.
    by_lane = defaultdict(list)
    for s in reqs:
        by_lane[s.track].append(s)
    for ss in by_lane.values():
        ss.sort(key=lambda s: s.ts)
        assert all(a.end <= b.ts for a, b in itertools.pairwise(ss))
    assert len(by_lane) == 4
    # One flow per request, from the request to the io_getevents that reaped it.
    reapers = {f: s for s in slices for f in s.ends_flows}
    for r in reqs:
        assert len(r.flows) == 1
        reap = reapers[r.flows[0]]
        assert reap.name == "io_getevents" and reap.track == _thread_track(decoded, 400)
        assert reap.ts <= r.end <= reap.end
    uring = {u for u, t in decoded.tracks.items() if t.get("name") == "io_uring requests"}
    uring_reqs = [s for s in slices if s.track in uring and s.depth == 0]
    assert len(uring_reqs) == 40
    assert sum("(io-wq)" in s.name for s in uring_reqs) == 20


def test_in_flight_counter(decoded: Decoded) -> None:
    counters = decoded.counter_values()
    (uuid,) = [u for u, t in decoded.tracks.items() if t.get("name") == "libaio in flight"]
    depths = [v for _, v in counters[uuid]]
    assert max(depths) == 4 and depths[-1] == 0 and min(depths) == 0


def test_lost_records_get_their_own_track(decoded: Decoded, slices: list[Slice]) -> None:
    (track,) = [u for u, t in decoded.tracks.items() if t.get("name") == "iotrace: lost events"]
    lost = [s for s in slices if s.track == track]
    assert len(lost) == 1 and lost[0].args["count"] == 9 and lost[0].end - lost[0].ts == MS
    assert lost[0].name == "LOST records (sched)"


def test_times_keep_nanoseconds_and_late_events_use_absolute_time(tmp_path: Path) -> None:
    b = TraceBuilder()
    b.syscall(1, 1, "read", 10**12 + 1, 7, ret=1)  # a 7 ns call
    b.syscall(1, 1, "read", 10**12 + 1 * US + 3, 1, ret=1)
    out = tmp_path / "ns.pftrace"
    with out.open("wb") as f:
        perfetto.write(b.write(tmp_path / "ns.trace"), f)
    got = sorted((s.ts, s.end) for s in decode(out.read_bytes()).slices())
    assert got == [(10**12 + 1, 10**12 + 8), (10**12 + 1003, 10**12 + 1004)]


def test_compressed_batches_and_varints() -> None:
    assert perfetto.varint(0) == b"\x00" and perfetto.varint(300) == b"\xac\x02"
    assert perfetto.varint(-1) == b"\xff" * 9 + b"\x01"
    assert perfetto.varint(1 << 40) == bytes([128, 128, 128, 128, 128, 32])


def test_a_big_trace_is_written_in_many_compressed_batches(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(perfetto, "BATCH_BYTES", 4096)
    b = TraceBuilder()
    all_models(b)
    out = tmp_path / "b.pftrace"
    with out.open("wb") as f:
        written, damage = perfetto.write(b.write(tmp_path / "b.trace"), f)
    d = decode(out.read_bytes())
    assert d.compressed_batches > 3 and d.packets == written.packets and not damage
    assert written.late_requests == 0
    raw = tmp_path / "raw.pftrace"
    with raw.open("wb") as f:
        perfetto.write(tmp_path / "b.trace", f, compress=False)
    assert len(decode(raw.read_bytes()).slices()) == len(d.slices())
