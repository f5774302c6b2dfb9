"""The trace file: round trip, a killed writer, damage, versions, fuzzing."""

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotrace import events, session
from iotrace.errors import OutputError, TraceFileError
from iotrace.session import EVENT_DTYPE, TaskInfo, TraceWriter


def _events(n: int, start: int = 0) -> np.ndarray:
    a = np.zeros(n, dtype=EVENT_DTYPE)
    a["ts_ns"] = np.arange(start, start + n) * 1000
    a["end_ns"] = a["ts_ns"] + 500
    a["kind"] = events.Kind.SYSCALL
    a["op"] = events.SYSCALL_BY_NAME["read"].op
    a["fd"] = 5
    a["size"] = 4096
    a["ret"] = 4096
    a["pid"] = 100
    a["tid"] = 101
    return a


def _write(path, batches=(10, 20), close=True):
    w = TraceWriter(path, {"command": "test"})
    start = 0
    for n in batches:
        w.write_events(_events(n, start))
        start += n
    w.write_tasks([TaskInfo(pid=100, tid=101, comm="reader", workload="w1")])
    w.write_stats({"lost": {"read": 3}})
    if close:
        w.close({"stats": {"lost": {"read": 4}}})
    else:
        w._file.close()
    return w


def test_round_trip_keeps_every_field(tmp_path):
    p = tmp_path / "a.trace"
    _write(p)
    t = session.load(p)
    assert t.complete and t.damage == ""
    assert len(t.events) == 30
    assert np.array_equal(t.events, np.concatenate([_events(10), _events(20, 10)]))
    assert t.tasks == [TaskInfo(pid=100, tid=101, comm="reader", workload="w1")]
    assert t.meta["command"] == "test"
    assert t.meta["schema_version"] == list(events.SCHEMA_VERSION)
    assert t.stats == {"lost": {"read": 4}}  # the footer's counters win


def test_killed_writer_leaves_a_readable_file_that_says_cut_short(tmp_path):
    p = tmp_path / "killed.trace"
    _write(p, close=False)
    t = session.load(p)
    assert not t.complete and "cut short" in t.damage
    assert len(t.events) == 30
    assert t.stats == {"lost": {"read": 3}}  # the last periodic counters


def test_truncated_inside_a_chunk_keeps_the_whole_chunks_before_it(tmp_path):
    p = tmp_path / "t.trace"
    _write(p, batches=(10, 20, 30))
    size = p.stat().st_size
    for cut in (size - 1, size - 40, size // 2):
        q = tmp_path / f"cut{cut}.trace"
        q.write_bytes(p.read_bytes()[:cut])
        t = session.load(q)
        assert not t.complete
        assert len(t.events) in (0, 10, 30, 60)


def test_flipped_byte_fails_the_checksum_and_stops_there(tmp_path):
    p = tmp_path / "t.trace"
    _write(p)
    data = bytearray(p.read_bytes())
    data[-60] ^= 0xFF
    p.write_bytes(bytes(data))
    t = session.load(p)
    assert not t.complete and t.damage


def test_not_a_trace_file(tmp_path):
    p = tmp_path / "x.trace"
    p.write_text("hello, this is not a trace\n" * 5)
    with pytest.raises(TraceFileError, match="not an iotrace trace file"):
        session.load(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TraceFileError, match="no such trace file"):
        session.load(tmp_path / "nope.trace")
    with pytest.raises(TraceFileError, match="is a directory"):
        session.load(tmp_path)


def test_newer_major_version_is_refused_with_upgrade_hint(tmp_path):
    p = tmp_path / "new.trace"
    _write(p)
    data = bytearray(p.read_bytes())
    struct.pack_into("<H", data, 8, events.SCHEMA_VERSION[0] + 1)
    p.write_bytes(bytes(data))
    with pytest.raises(TraceFileError, match="upgrade iotrace"):
        session.load(p)


def test_crafted_huge_length_is_refused_without_allocating(tmp_path):
    p = tmp_path / "huge.trace"
    head = session._HEADER.pack(session.MAGIC, 1, 0, 0)
    meta = json.dumps({"x": 1}).encode()
    import zlib

    chunk = session._CHUNK.pack(b"META", 0, 0, len(meta), len(meta), zlib.crc32(meta), 0)
    evil = session._CHUNK.pack(b"EVTS", 0, 0, 1 << 60, 1 << 60, 0, 0)
    p.write_bytes(head + chunk + meta + evil)
    t = session.load(p)
    assert "cap" in t.damage and len(t.events) == 0


def test_writer_refuses_to_clobber_or_follow_symlinks(tmp_path):
    p = tmp_path / "a.trace"
    p.write_text("keep me")
    with pytest.raises(OutputError, match="already exists"):
        TraceWriter(p, {})
    assert p.read_text() == "keep me"
    link = tmp_path / "link.trace"
    os.symlink(tmp_path / "target", link)
    with pytest.raises(OutputError):
        TraceWriter(link, {}, force=True)
    assert not (tmp_path / "target").exists()


def test_write_failure_stops_recording_and_keeps_the_file_readable(tmp_path):
    p = tmp_path / "full.trace"
    w = TraceWriter(p, {})
    w.write_events(_events(5))

    class Full:
        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    real = w._file
    w._file = Full()  # type: ignore[assignment]
    assert w.write_events(_events(5)) is False
    assert "No space left" in w.error
    real.close()
    t = session.load(p)
    assert len(t.events) == 5 and not t.complete


def test_events_of_wrong_dtype_are_refused(tmp_path):
    w = TraceWriter(tmp_path / "a.trace", {})
    with pytest.raises(TypeError):
        w.write_events(np.zeros(3, dtype=np.uint64))
    w.close()


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=2000))
def test_fuzz_any_bytes_give_a_trace_or_one_clean_error(tmp_path_factory, noise, cut):
    """Random damage to a real file: reading returns or raises TraceFileError, nothing else."""
    base = tmp_path_factory.getbasetemp() / "fuzz-base.trace"
    if not base.exists():
        _write(base)
    good = base.read_bytes()
    mixed = good[:cut] + noise + good[cut + len(noise) :]
    p = tmp_path_factory.getbasetemp() / "fuzz.trace"
    p.write_bytes(mixed)
    try:
        t = session.load(p)
    except TraceFileError as exc:
        assert "\n" not in str(exc)
    else:
        assert t.events.dtype == EVENT_DTYPE
