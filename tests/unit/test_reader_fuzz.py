"""Hostile trace files, beyond the byte-splicing fuzz in test_session.py:
well-framed chunks (valid lengths and checksums) with fuzzed contents, so the
fuzz reaches the decoders; crafted files (deep JSON, compression bombs, zero
filled, sparse and huge); and random records that load fine but carry
nonsense values, which `report` and `export` must survive.

The promise: a trace or one clean TraceFileError, in bounded memory and time,
and nothing in a file is ever executed.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from iotrace import events, session
from iotrace.errors import TraceFileError
from iotrace.session import EVENT_DTYPE, TraceWriter

HEADER = session._HEADER.pack(session.MAGIC, *events.SCHEMA_VERSION, 0)


def chunk(
    tag: bytes, payload: bytes, codec: int = 0, raw_len: int | None = None, major: int = 2
) -> bytes:
    """A chunk with a correct CRC for a file of format `major`."""
    raw = len(payload) if raw_len is None else raw_len
    return session.pack_chunk(tag, codec, payload, raw, major)


META = chunk(b"META", json.dumps({"command": "fuzz"}).encode())


def read_or_clean_error(path: Path) -> session.Trace | None:
    try:
        t = session.load(path)
    except TraceFileError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None
    assert t.events.dtype == EVENT_DTYPE
    assert isinstance(t.meta, dict) and isinstance(t.stats, dict)
    return t


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
tags = st.sampled_from([b"META", b"EVTS", b"PROC", b"STAT", b"END.", b"XTRA"]) | st.binary(
    min_size=4, max_size=4
)


@st.composite
def chunks(draw: st.DrawFn) -> bytes:
    tag = draw(tags)
    kind = draw(st.sampled_from(["json", "records", "bytes", "zstd"]))
    codec = 0
    raw_len = None
    if kind == "json":
        payload = json.dumps(draw(json_values)).encode()
    elif kind == "records":
        n = draw(st.integers(0, 4))
        payload = draw(st.binary(min_size=n * events.EVENT_SIZE, max_size=n * events.EVENT_SIZE))
        payload += draw(st.binary(max_size=3))  # sometimes not a whole record
    elif kind == "bytes":
        payload = draw(st.binary(max_size=300))
    else:
        import pyarrow as pa

        raw = draw(st.binary(max_size=400))
        payload = pa.compress(raw, codec="zstd", asbytes=True)
        codec = 1
        raw_len = draw(st.sampled_from([len(raw), len(raw) + 1, 0, 1 << 40]))
    codec = draw(st.sampled_from([codec, codec, 0, 1, 7]))
    return chunk(tag, payload, codec, raw_len)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.booleans(),
    st.lists(chunks(), max_size=6),
    st.integers(min_value=0, max_value=3),
    st.integers(min_value=0, max_value=3),
)
def test_fuzz_well_framed_chunks_reach_the_decoders_and_fail_cleanly(
    tmp_path_factory, with_meta, body, major, minor
):
    head = session._HEADER.pack(session.MAGIC, major, minor, 0)
    data = head + (META if with_meta else b"") + b"".join(body)
    p = tmp_path_factory.getbasetemp() / "framed.trace"
    p.write_bytes(data)
    read_or_clean_error(p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(EVENT_DTYPE, st.integers(0, 60)))
def test_fuzz_nonsense_records_still_report_and_export(tmp_path_factory, recs):
    """Records with any values at all (a crafted file with valid framing):
    the report renders, JSON and exports are written, nothing raises."""
    from iotrace import report

    d = tmp_path_factory.getbasetemp()
    p = d / "nonsense.trace"
    p.unlink(missing_ok=True)
    w = TraceWriter(p, {"command": "fuzz"})
    w.write_events(recs)
    w.close({})
    t = session.load(p)
    text = report.summary_text(t)
    assert isinstance(text, str)


def test_nonsense_records_through_the_cli_are_one_line_or_output(tmp_path, capsys):
    from iotrace.cli import main

    rng = np.random.default_rng(8)
    raw = rng.integers(0, 256, size=500 * events.EVENT_SIZE, dtype=np.uint8).tobytes()
    recs = np.frombuffer(raw, dtype=EVENT_DTYPE).copy()
    recs["kind"] = rng.integers(0, 9, size=len(recs))  # mostly known kinds
    # Few processes: analysis costs tens of ms per process, which is a matter
    # of speed (reported), not of surviving nonsense.
    recs["pid"] = rng.integers(1, 5, size=len(recs))
    recs["tid"] = recs["pid"] + rng.integers(0, 3, size=len(recs))
    p = tmp_path / "n.trace"
    w = TraceWriter(p, {"command": "fuzz"})
    w.write_events(recs)
    w.close({})
    for args in (
        ["report", str(p)],
        ["report", str(p), "--json"],
        ["export", str(p), "--format", "jsonl", "-o", str(tmp_path / "n.jsonl")],
        ["export", str(p), "--format", "csv", "-o", str(tmp_path / "n.csv")],
        ["export", str(p), "--format", "perfetto", "-o", str(tmp_path / "n.json")],
        ["export", str(p), "--format", "parquet", "-o", str(tmp_path / "n.parquet")],
    ):
        code = main(args)  # an unexpected exception would fail the test here
        err = capsys.readouterr().err.strip()
        assert code == 0 or (err.startswith("iotrace: ") and "\n" not in err), (args, err)


# ---- crafted files ----


def test_deeply_nested_json_is_one_line(tmp_path):
    p = tmp_path / "deep.trace"
    p.write_bytes(HEADER + chunk(b"META", b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(TraceFileError, match="not valid JSON"):
        session.load(p)
    p.write_bytes(HEADER + META + chunk(b"STAT", b"{" * 100_000))
    t = session.load(p)
    assert "not valid JSON" in t.damage


def test_compression_bomb_is_refused_by_the_size_cap(tmp_path):
    import pyarrow as pa

    big = pa.compress(b"\0" * (8 << 20), codec="zstd", asbytes=True)  # 8 MiB -> a few KiB
    p = tmp_path / "bomb.trace"
    # Claims a small size, decompresses to far more: refused, not allocated.
    p.write_bytes(HEADER + META + chunk(b"EVTS", big, codec=1, raw_len=events.EVENT_SIZE))
    assert read_or_clean_error(p) is None or session.load(p).damage
    # Claims more than the cap: refused before decompressing.
    p.write_bytes(HEADER + META + chunk(b"EVTS", big, codec=1, raw_len=1 << 40))
    t = session.load(p)
    assert "cap" in t.damage and len(t.events) == 0


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"IOTRACE",
        session.MAGIC,
        HEADER,
        HEADER + b"\0" * 31,
        b"\x7fELF\x02\x01\x01" + b"\0" * 100,
        b"\x89PNG\r\n\x1a\n" + b"\0" * 100,
        b"PAR1" + b"\0" * 100,
        json.dumps({"format": "iotrace.trace"}).encode(),
        session._HEADER.pack(session.MAGIC, 0, 9, 0) + META,
        session._HEADER.pack(session.MAGIC, 65535, 0, 0) + META,
        HEADER + chunk(b"EVTS", b""),  # no META first
        HEADER + chunk(b"META", b"[1, 2]"),  # META not an object
        HEADER + chunk(b"META", json.dumps({"event_fields": [["x", "<u8"]]}).encode()),
    ],
    ids=lambda d: repr(d[:20]),
)
def test_wrong_type_and_malformed_headers_are_one_line(tmp_path, data):
    p = tmp_path / "bad.trace"
    p.write_bytes(data)
    with pytest.raises(TraceFileError):
        session.load(p)


def test_zero_filled_or_sparse_huge_file_stops_at_once(tmp_path):
    """Zeros look like empty chunks with a valid checksum (crc32 of nothing is
    0). A sparse 64 GiB file must not be walked 32 bytes at a time."""
    p = tmp_path / "sparse.trace"
    with open(p, "wb") as f:
        f.write(HEADER + META)
        f.truncate(64 << 30)
    t = session.load(p)
    assert not t.complete and "not a chunk" in t.damage


def test_unknown_but_well_formed_chunk_from_a_newer_minor_version_is_skipped(tmp_path):
    p = tmp_path / "newer.trace"
    rec = np.zeros(2, dtype=EVENT_DTYPE).tobytes()
    minor = session._HEADER.pack(session.MAGIC, events.SCHEMA_VERSION[0], 99, 0)
    p.write_bytes(
        minor + META + chunk(b"XTRA", b"anything") + chunk(b"EVTS", rec) + chunk(b"END.", b"{}")
    )
    t = session.load(p)
    assert t.complete and len(t.events) == 2


def test_nothing_in_a_file_is_executed(tmp_path):
    """Payloads that would run code if a reader used pickle or eval."""
    import pickle

    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.trace"
    evil = pickle.dumps(Boom())
    p.write_bytes(
        HEADER
        + META
        + chunk(b"PROC", evil)
        + chunk(b"STAT", b"__import__('os').system('touch pwned')")
    )
    t = read_or_clean_error(p)
    assert t is not None and t.damage
    assert not (tmp_path / "pwned").exists()


def test_every_truncation_of_a_real_file_reads(tmp_path):
    """Cut at every byte: each prefix is a trace (up to its last whole chunk)
    or one clean error for prefixes shorter than the metadata."""
    p = tmp_path / "t.trace"
    w = TraceWriter(p, {"command": "cut"})
    for i in range(3):
        w.write_events(np.zeros(5 + i, dtype=EVENT_DTYPE))
    w.close({"stats": {}})
    data = p.read_bytes()
    q = tmp_path / "cut.trace"
    seen = set()
    for cut in range(len(data) + 1):
        q.write_bytes(data[:cut])
        t = read_or_clean_error(q)
        if t is not None:
            seen.add(len(t.events))
            assert t.complete == (cut == len(data))
    assert seen == {0, 5, 11, 18}


def test_reader_memory_is_bounded_by_the_caps():
    assert struct.calcsize("<4sHHQQII") == 32
    assert session.MAX_EVENTS_CHUNK_BYTES <= 64 << 20
    assert session.MAX_JSON_BYTES <= 16 << 20
