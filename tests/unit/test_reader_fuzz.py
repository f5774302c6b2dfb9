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
import re
import struct
import zlib
from pathlib import Path
from typing import Any

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
        ["export", str(p), "--format", "perfetto", "-o", str(tmp_path / "n.pftrace")],
        ["export", str(p), "--format", "chrome-json", "-o", str(tmp_path / "n.json")],
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
    assert t.skipped == ["XTRA"]  # ... and said
    from iotrace import report

    assert "skipped 1 chunk(s) of a newer trace format (XTRA)" in report.summary_text(t)
    from iotrace import export

    for fmt in ("csv", "perfetto"):
        _, note = export.export(p, fmt, tmp_path / f"out.{fmt}")
        assert note == "skipped a chunk of a newer trace format (XTRA)", (fmt, note)


def _one_record_file(major: int, tag: bytes = b"EVTS") -> bytes:
    head = session._HEADER.pack(session.MAGIC, major, 0, 0)
    meta = json.dumps({"schema_version": [major, 0]}).encode()
    rec = np.zeros(1, dtype=EVENT_DTYPE).tobytes()
    return (
        head
        + chunk(b"META", meta, major=major)
        + chunk(tag, rec, major=major)
        + chunk(b"END.", b"{}", major=major)
    )


@pytest.mark.parametrize("major", [1, 2])
def test_files_of_format_1_and_2_read_each_with_its_crc_rule(tmp_path, major):
    p = tmp_path / "v.trace"
    p.write_bytes(_one_record_file(major))
    t = session.load(p)
    assert t.complete and len(t.events) == 1 and t.version == (major, 0)


def test_the_writer_writes_format_2_with_the_header_in_the_crc(tmp_path):
    p = tmp_path / "w.trace"
    w = TraceWriter(p, {})
    w.write_events(np.zeros(3, dtype=EVENT_DTYPE))
    w.close({})
    data = p.read_bytes()
    assert session._HEADER.unpack_from(data)[1:3] == (2, 0) == events.SCHEMA_VERSION
    pos = session._HEADER.size
    head = data[pos : pos + session._CHUNK.size]
    stored = session._CHUNK.unpack(head)[3]
    payload = data[pos + 32 : pos + 32 + stored]
    assert session._CHUNK.unpack(head)[5] == zlib.crc32(
        payload, zlib.crc32(head[28:32], zlib.crc32(head[:24]))
    )


@pytest.mark.parametrize("major", [1, 2])
def test_a_flipped_bit_in_a_tag_is_damage_not_a_skipped_chunk(tmp_path, major):
    """EVTS -> DVTS was skipped as a newer minor's chunk, and the trace 'complete'."""
    data = bytearray(_one_record_file(major))
    i = data.index(b"EVTS")
    data[i] ^= 0x01  # 'E' -> 'D'
    p = tmp_path / "flip.trace"
    p.write_bytes(bytes(data))
    t = session.load(p)
    assert not t.complete and t.damage and len(t.events) == 0
    # In format 2 the CRC says it; in 1.0 every tag is known, so DVTS cannot be one.
    assert ("checksum" if major == 2 else "unknown tag") in t.damage


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("PROC", b'[{"pid": 1e999, "tid": 1}]'),
        ("PROC", b'[{"pid": ' + b"7" * 5001 + b"}]"),
        ("PROC", b'[{"pid": 5000000000}]'),
        ("STAT", b'{"lost_total": ' + b"9" * 5001 + b"}"),
        ("END.", b'{"stats": {"events": NaN}}'),
        ("META", b'{"command": "\\ud800\\u001b[31m", "kernel": "\\udcff"}'),
        ("PROC", b'[{"pid": 5, "comm": "\\ud800\\u001b]0;x\\u0007"}]'),
        ("END.", b'{"results": {"\\udfff": {"exit_code": "\\ud800"}}}'),
    ],
)
def test_crafted_values_with_correct_crcs_give_a_trace_or_one_line(tmp_path, where, value):
    """pid 1e999 (OverflowError), 5001 digits (ValueError), lone surrogates
    (UnicodeEncodeError in report and HTML): never a traceback."""
    from iotrace import analysis, html_report, report

    meta = value if where == "META" else json.dumps({"command": "x"}).encode()
    body = chunk(b"META", meta)
    rec = np.zeros(2, dtype=EVENT_DTYPE)
    rec["kind"] = events.Kind.SYSCALL
    rec["pid"] = rec["tid"] = 5
    body += chunk(b"EVTS", rec.tobytes())
    if where != "META":
        body += chunk(where.encode(), value)
    if where != "END.":
        body += chunk(b"END.", b"{}")
    p = tmp_path / "crafted.trace"
    p.write_bytes(HEADER + body)
    t = read_or_clean_error(p)
    if t is None:
        return
    a = analysis.analyze(t, timeline=True)
    for text in (report.render_text(a), json.dumps(report.report_json(a)), html_report.render(a)):
        text.encode("utf-8")
        assert "\x1b" not in text
    if b"\\u" not in value:
        assert t.damage  # a number out of bounds is damage, said; strings are escaped


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


# ---- the seeded mutation fuzz (issue 17) ----
#
# A realistic trace (every model, tasks, counters, footer, a name with a
# terminal escape) mutated a few hundred ways per run: raw byte damage, which
# must always be reported, and mutations with correct CRCs (JSON values made
# hostile, records with nonsense or out of order, chunks dropped, repeated,
# retagged), which must only never give a traceback. Each file goes through
# load, report (text, JSON, HTML) and an export, in a subprocess held to
# FUZZ_MEMORY_MIB of address space, with a deadline per file.

FUZZ_SEED = 17
FUZZ_MUTATIONS = 300
FUZZ_MEMORY_MIB = 1024
FUZZ_FILE_TIMEOUT_S = 30

HOSTILE_JSON: list[bytes] = [
    b"1e999",
    b"-1e999",
    b"1" * 5001,
    b"-" + b"9" * 4300,
    b"18446744073709551616",
    b"-1",
    b"NaN",
    b"Infinity",
    b'"\\ud800"',
    b'"\\udfff\\u001b[31mred\\u0007"',
    b'"\\u202e\\u0000"',
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"' + b"x" * 100_000 + b'"',
    b"[" * 5000 + b"]" * 5000,
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    b"0.5",
    b'"12"',
]


def split_chunks(data: bytes) -> tuple[bytes, list[tuple[bytes, int, bytes, int]]]:
    """The file header and its chunks (tag, codec, payload, raw_len)."""
    head, pos, out = data[: session._HEADER.size], session._HEADER.size, []
    while pos < len(data):
        tag, codec, _, stored, raw, _, _ = session._CHUNK.unpack_from(data, pos)
        pos += session._CHUNK.size
        out.append((tag, codec, data[pos : pos + stored], raw))
        pos += stored
    return head, out


def join_chunks(head: bytes, chunks: list[tuple[bytes, int, bytes, int]]) -> bytes:
    return head + b"".join(session.pack_chunk(t, c, p, r) for t, c, p, r in chunks)


def fuzz_base(tmp: Path) -> bytes:
    from report_fixtures import T0, TraceBuilder, all_models

    b = TraceBuilder()
    all_models(b)
    # A raw escape in a TASK record and in a PROC entry (as an older writer left it).
    b.task(900, 900, events.TaskOp.EXEC, "\x1b[31mx\u00ff", T0)
    return b.write(
        tmp / "base.trace",
        chunk=7,
        stats={"lost": {"read": 3}, "unmatched": {}, "evicted": {}, "lost_total": 3},
        meta={"argv": ["iotrace", "trace", "--", "\udcff\x1b]0;title\x07"]},
    ).read_bytes()


def _json_mutation(payload: bytes, rng) -> bytes:
    """A hostile value spliced over a value of a JSON text."""
    text = payload
    starts = [i for i, ch in enumerate(text) if ch in b'0123456789"[{tfn-']
    if not starts:
        return rng.choice(HOSTILE_JSON)
    i = rng.choice(starts)
    # The value that starts at i, found by decoding from there.
    try:
        _, end = json.JSONDecoder().raw_decode(text[i:].decode("utf-8", "replace"))
    except ValueError:
        end = 1
    return text[:i] + rng.choice(HOSTILE_JSON) + text[i + end :]


def _json_value_mutation(payload: bytes, rng) -> bytes:
    """A hostile value in place of one value of the JSON document: still valid
    JSON (as Python reads it), so it reaches whatever uses that value."""
    doc = json.loads(payload)
    holders: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                holders.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                holders.append((node, i))
                walk(v)

    walk(doc)
    if not holders:
        return rng.choice(HOSTILE_JSON)
    node, key = rng.choice(holders)
    node[key] = "__HOSTILE__"
    return json.dumps(doc).encode().replace(b'"__HOSTILE__"', rng.choice(HOSTILE_JSON), 1)


def mutate(base: bytes, rng) -> tuple[str, bytes, bool]:
    """(what was done, the mutated file, whether a reader must report damage)."""
    head, chunks = split_chunks(base)
    op = rng.choice(
        ["bitflip", "bytes", "truncate", "insert", "delete", "append"] * 2
        + ["json", "value", "value", "value", "value", "value", "records", "records", "order"]
        + ["retag", "drop", "dup", "raw_len"]
    )
    data = bytearray(base)
    if op == "bitflip":
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return op, bytes(data), True
    if op == "bytes":
        i = rng.randrange(len(data))
        data[i : i + rng.randint(1, 8)] = rng.randbytes(rng.randint(1, 8))
        return op, bytes(data), True
    if op == "truncate":
        return op, bytes(data[: rng.randrange(len(data))]), True
    if op == "insert":
        i = rng.randrange(len(data))
        return op, bytes(data[:i] + rng.randbytes(rng.randint(1, 40)) + data[i:]), True
    if op == "delete":
        i = rng.randrange(len(data))
        return op, bytes(data[:i] + data[i + rng.randint(1, 40) :]), True
    if op == "append":
        return op, bytes(data + rng.randbytes(rng.randint(1, 64))), True
    # CRC-correct mutations: the framing is valid, the contents hostile.
    k = rng.randrange(len(chunks))
    tag, codec, payload, raw = chunks[k]
    if op in ("json", "value"):
        js = [i for i, c in enumerate(chunks) if c[0] != b"EVTS"]
        k = rng.choice(js)
        tag, codec, payload, raw = chunks[k]
        change = _json_mutation if op == "json" else _json_value_mutation
        payload = change(payload, rng)
        chunks[k] = (tag, 0, payload, len(payload))
    elif op in ("records", "order"):
        evs = [i for i, c in enumerate(chunks) if c[0] == b"EVTS"]
        k = rng.choice(evs)
        tag, codec, payload, raw = chunks[k]
        recs = np.frombuffer(session._decompress(codec, payload, raw), dtype=EVENT_DTYPE).copy()
        if op == "records" and len(recs):
            for _ in range(rng.randint(1, 6)):
                name = rng.choice(EVENT_DTYPE.names)
                info = np.iinfo(EVENT_DTYPE[name])
                value = rng.choice([0, 1, info.max, info.min, rng.randint(info.min, info.max)])
                recs[name][rng.randrange(len(recs))] = value
        else:
            recs = (
                recs[::-1] if rng.random() < 0.5 else recs[rng.sample(range(len(recs)), len(recs))]
            )
        raw_bytes = recs.tobytes()
        chunks[k] = (tag, 0, raw_bytes, len(raw_bytes))
    elif op == "retag":
        chunks[k] = (
            rng.choice([b"DVTS", b"EVTT", b"PROX", b"META", b"END.", b"STAT"]),
            codec,
            payload,
            raw,
        )
    elif op == "drop":
        del chunks[k]
    elif op == "dup":
        chunks.insert(rng.randrange(len(chunks) + 1), chunks[k])
    elif op == "raw_len":
        chunks[k] = (tag, codec, payload, rng.choice([0, raw + 1, raw - 1, 1 << 26, 1 << 40]))
    return op, join_chunks(head, chunks), False


_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _no_raw_escapes(what: str, text: str) -> None:
    m = _CONTROL.search(text)
    assert m is None, f"{what} holds a raw control character {m.group()!r}"
    text.encode("utf-8")  # printable to any UTF-8 terminal: no lone surrogates


def run_pipeline(path: Path, out_dir: Path, fmt: str) -> str:
    """load, report (text, JSON, HTML) and one export; 'refused', 'damaged' or 'read'."""
    from iotrace import analysis, export, html_report, report
    from iotrace.errors import IotraceError

    try:
        t = session.load(path)
    except TraceFileError as exc:
        assert str(exc) and "\n" not in str(exc)
        _no_raw_escapes("the error", str(exc))
        return "refused"
    _no_raw_escapes("the damage", t.damage)
    a = analysis.analyze(t, timeline=True)
    _no_raw_escapes("the report", report.render_text(a))
    _no_raw_escapes("the JSON report", json.dumps(report.report_json(a), ensure_ascii=False))
    page = html_report.render(a)
    # plotly.js, embedded, holds control characters of its own: check the page's text.
    text = re.sub(r"(?s)<script\b.*?</script>", "", page)
    _no_raw_escapes("the HTML report", text.replace("\n", " ").replace("\t", " "))
    try:
        export.export(path, fmt, out_dir / f"out.{fmt}", force=True)
    except IotraceError as exc:
        assert str(exc) and "\n" not in str(exc)
    return "damaged" if t.damage else "read"


def fuzz_main(seed: int, n: int, work: str) -> int:
    """The fuzz loop, run in a memory-limited subprocess; prints one JSON line
    per file that failed, and a last line of totals."""
    import random
    import signal
    import traceback

    work_dir = Path(work)
    base = fuzz_base(work_dir)
    rng = random.Random(seed)

    def timeout(_sig, _frame):
        raise TimeoutError("hang")

    signal.signal(signal.SIGALRM, timeout)
    totals: dict[str, int] = {}
    failures = 0
    p = work_dir / "mutated.trace"
    for i in range(n):
        op, data, must_report = mutate(base, rng)
        if data == base:
            continue
        p.write_bytes(data)
        fmt = ("jsonl", "csv", "perfetto", "parquet")[i % 4]
        signal.alarm(FUZZ_FILE_TIMEOUT_S)
        try:
            outcome = run_pipeline(p, work_dir, fmt)
            if must_report and outcome == "read":
                outcome = "DAMAGE NOT REPORTED"
        except MemoryError:
            outcome = "OUT OF MEMORY"
        except TimeoutError:
            outcome = "HANG"
        except BaseException as exc:  # a traceback: the thing this fuzz hunts
            outcome = "TRACEBACK " + "".join(traceback.format_exception(exc))[-700:]
        finally:
            signal.alarm(0)
        key = outcome.split(" ", 1)[0] if outcome[0].isupper() else outcome
        totals[key] = totals.get(key, 0) + 1
        if outcome not in ("refused", "damaged", "read"):
            failures += 1
            bad = work_dir / f"failed-{i}.trace"
            bad.write_bytes(data)
            print(json.dumps({"i": i, "op": op, "outcome": outcome, "file": str(bad)}))
    print(json.dumps({"totals": totals, "failures": failures}))
    return 1 if failures else 0


def _limited(mib: int):
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))

    return limit


def test_seeded_mutation_fuzz_finds_no_traceback_hang_or_oom(tmp_path):
    import subprocess
    import sys

    here = Path(__file__).parent
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, test_reader_fuzz as f; "
            f"sys.exit(f.fuzz_main({FUZZ_SEED}, {FUZZ_MUTATIONS}, {str(tmp_path)!r}))",
        ],
        env={**os.environ, "PYTHONPATH": str(here)},
        capture_output=True,
        text=True,
        preexec_fn=_limited(FUZZ_MEMORY_MIB),
        timeout=900,
    )
    lines = proc.stdout.strip().splitlines()
    assert lines and proc.returncode in (0, 1), proc.stderr[-3000:]
    totals = json.loads(lines[-1])
    assert proc.returncode == 0 and totals["failures"] == 0, "\n".join(lines[-20:])
    # The fuzz reached past the framing: files were read, damaged and refused.
    assert {"read", "damaged", "refused"} <= set(totals["totals"]), totals


def bomb_main(work: str) -> int:
    """Size bombs, in a memory-limited subprocess: six full-size EVTS chunks
    (small on disk: compressed) of records out of order. Prints the outcomes."""
    import pyarrow as pa

    from iotrace import export
    from iotrace.errors import IotraceError

    work_dir = Path(work)
    n = session.MAX_EVENTS_CHUNK_BYTES // events.EVENT_SIZE
    recs = np.zeros(n, dtype=EVENT_DTYPE)
    recs["kind"] = events.Kind.SYSCALL
    recs["op"] = 1
    recs["pid"] = recs["tid"] = 100 + np.arange(n) % 7
    recs["ts_ns"] = 10**12 - np.arange(n, dtype=np.uint64) * 1000  # newest first
    recs["end_ns"] = recs["ts_ns"] + 500
    raw = recs.tobytes()
    del recs
    packed = pa.compress(raw, codec="zstd", asbytes=True)
    del raw
    meta = json.dumps({"command": "bomb"}).encode()
    end = b"{}"
    outcomes = {}
    for name, count in (("one", 1), ("six", 6)):
        p = work_dir / f"{name}.trace"
        body = [session.pack_chunk(b"META", 0, meta, len(meta))]
        body += [session.pack_chunk(b"EVTS", 1, packed, n * events.EVENT_SIZE)] * count
        body.append(session.pack_chunk(b"END.", 0, end, len(end)))
        p.write_bytes(HEADER + b"".join(body))
    # A row export streams: one full-size chunk in bounded memory.
    cases = (("jsonl", "one"), ("csv", "six"), ("perfetto", "one"), ("chrome-json", "six"))
    for fmt, name in cases:
        try:
            rows, _ = export.export(work_dir / f"{name}.trace", fmt, work_dir / "out", force=True)
            outcomes[fmt] = f"wrote {rows}"
        except IotraceError as exc:
            outcomes[fmt] = f"refused: {exc}"
        except MemoryError:
            outcomes[fmt] = "OUT OF MEMORY"
    print(json.dumps(outcomes))
    return 0


def test_size_bombs_stream_or_are_refused_in_bounded_memory(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, test_reader_fuzz as f; sys.exit(f.bomb_main({str(tmp_path)!r}))",
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        preexec_fn=_limited(FUZZ_MEMORY_MIB),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    n = session.MAX_EVENTS_CHUNK_BYTES // events.EVENT_SIZE
    assert out["jsonl"] == f"wrote {n}"
    assert out["csv"] == f"wrote {6 * n}"
    # perfetto streams (in bounded memory); chrome-json holds the trace, so refuses
    assert out["perfetto"].startswith("wrote ")
    assert (
        out["chrome-json"].startswith("refused: ") and "use --format perfetto" in out["chrome-json"]
    )


def test_a_hostile_process_name_on_the_dashboard_is_plain_text(tmp_path):
    """A name is any bytes: markup ("[/]" crashed the scoreboard's DataTable)
    and escapes are shown as text."""
    import asyncio

    from iotrace.tui.app import make_app
    from iotrace.tui.widgets.scoreboard import Scoreboard
    from report_fixtures import MS, T0, TraceBuilder

    from iotrace.source import ReplaySource

    b = TraceBuilder()
    name = "[/]x[bold]\x1b"
    b.task(700, 700, events.TaskOp.EXEC, name, T0)
    t = T0
    for _ in range(5):
        t = b.syscall(700, 700, "read", t, 1 * MS, ret=10, fd=3) + MS
    path = b.write(tmp_path / "named.trace")

    async def run() -> list[str]:
        app = make_app(ReplaySource(path))
        async with app.run_test(size=(160, 48)) as pilot:
            for _ in range(200):
                if app.source_done.is_set() and app.dashboard.snapshot is not None:
                    break
                await asyncio.sleep(0.02)
            await pilot.pause()
            app.dashboard.tick()
            await pilot.pause()
            sb = app.dashboard.query_one(Scoreboard)
            return [str(sb.get_cell(k, "row")) for k in sb.row_keys()]

    shown = asyncio.run(run())
    assert any(s.startswith("[/]x[bold]\\x1b") for s in shown), shown


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=32))
def test_names_are_escaped_losslessly_and_printably(raw):
    from iotrace.text import escape_bytes, printable, unescape_bytes

    name = escape_bytes(raw)
    assert name.isprintable() and unescape_bytes(name) == raw
    assert printable(name) == name  # reading a trace back changes nothing
