"""The trace file: written incrementally while tracing, read without root.

Layout (all integers little-endian)::

    file   := header chunk*
    header := b"IOTRACE\\0" major:u16 minor:u16 reserved:u32           (16 bytes)
    chunk  := tag:4s codec:u16 reserved:u16 stored_len:u64 raw_len:u64
              crc32:u32 reserved:u32 payload[stored_len]                (32 + n bytes)

Tags:
    META  JSON object, first chunk: tool version, kernel, clock anchor, options, probes
    EVTS  `raw_len / EVENT_SIZE` event records (events.EVENT_FIELDS), codec 0 or 1 (zstd)
    PROC  JSON list of task identities, appended as tasks are discovered
    STAT  JSON object of counters (lost, unmatched, evicted); the last one wins
    END.  JSON object, the footer; a file without it was cut short

Every chunk carries its length and a CRC, so a file whose writer was killed
is read up to its last whole chunk and reported as cut short. From format 2.0
the CRC covers the chunk header too (tag, codec, lengths: crc32 of the header's
first 24 bytes, its last 4, then the payload), so a flipped bit in a tag is
damage, not a chunk to skip; 1.x files keep their payload-only CRC. A chunk
tag this reader does not know is skipped only in a file of a newer minor
version, and the reader says so (`Trace.skipped`); in any other file it is
damage. Nothing in a file is ever executed: JSON and raw little-endian records
only, with every length checked against fixed caps before anything is
allocated, and every number and string bounded as it is decoded (`_json`).
"""

from __future__ import annotations

import json
import math
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from iotrace import events, outfile, runs
from iotrace.errors import OutputError, TraceFileError
from iotrace.text import printable_json

MAGIC: Final = b"IOTRACE\0"
_HEADER: Final = struct.Struct("<8sHHI")
_CHUNK: Final = struct.Struct("<4sHHQQII")
CODEC_NONE: Final = 0
CODEC_ZSTD: Final = 1

KNOWN_TAGS: Final = frozenset({b"META", b"EVTS", b"PROC", b"STAT", b"END."})
_TAG_BYTES: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!_")
"""What a chunk tag is made of, now and in newer minor versions."""
MAX_JSON_BYTES: Final = 16 << 20
MAX_EVENTS_CHUNK_BYTES: Final = 64 << 20
"""Caps that bound the memory a damaged or crafted file can make a reader allocate."""

EVENT_DTYPE: Final = np.dtype([(f.name, f.npcode) for f in events.EVENT_FIELDS])
assert EVENT_DTYPE.itemsize == events.EVENT_SIZE


def empty_events() -> np.ndarray:
    return np.zeros(0, dtype=EVENT_DTYPE)


@dataclass
class TaskInfo:
    """Identity of one traced task. (pid, start_ns) names a process for good:
    a recycled pid has another start time."""

    pid: int
    tid: int
    comm: str
    ppid: int = 0
    start_ns: int = 0
    workload: str = ""
    exe: str = ""
    title: str = ""
    """The process title it set over its argv (PostgreSQL's "checkpointer",
    nginx's "worker process"); "" when it set none."""
    cwd: str = ""
    """Its working directory when first seen (/proc/PID/cwd): what relative paths
    opened before any chdir the trace saw resolve against (fdpaths.py)."""

    def to_json(self) -> dict[str, Any]:
        out = {
            "pid": self.pid,
            "tid": self.tid,
            "comm": self.comm,
            "ppid": self.ppid,
            "start_ns": self.start_ns,
            "workload": self.workload,
            "exe": self.exe,
        }
        if self.title:
            out["title"] = self.title
        if self.cwd:
            out["cwd"] = self.cwd
        return out

    @classmethod
    def from_json(cls, obj: Any) -> TaskInfo:
        if not isinstance(obj, dict):
            raise TraceFileError("task entry is not an object")
        d: dict[str, Any] = obj
        try:
            info = cls(
                pid=int(d["pid"]),
                tid=int(d.get("tid", d["pid"])),
                comm=str(d.get("comm", "")),
                ppid=int(d.get("ppid", 0)),
                start_ns=int(d.get("start_ns", 0)),
                workload=str(d.get("workload", "")),
                exe=str(d.get("exe", "")),
                title=str(d.get("title", "")),
                cwd=str(d.get("cwd", "")),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TraceFileError(f"task entry is malformed: {exc}") from None
        # The ranges of the record fields they are matched with.
        for name in ("pid", "tid", "ppid"):
            if not 0 <= getattr(info, name) < 1 << 32:
                raise TraceFileError(f"task entry is malformed: {name} out of range")
        if not 0 <= info.start_ns < 1 << 64:
            raise TraceFileError("task entry is malformed: start_ns out of range")
        return info


@dataclass
class Trace:
    """A whole trace file in memory."""

    path: Path
    meta: dict[str, Any]
    events: np.ndarray
    tasks: list[TaskInfo]
    stats: dict[str, Any]
    footer: dict[str, Any] | None
    version: tuple[int, int]
    damage: str = ""
    """What is wrong with the file ("" when nothing): why reading stopped early, a
    header that disagrees with the metadata, or a recording that failed."""
    skipped: list[str] = field(default_factory=list)
    """Tags of chunks skipped as a newer minor version's (the file was read on)."""

    @property
    def complete(self) -> bool:
        """False when the writer died before closing the file."""
        return self.footer is not None and not self.damage

    def task_by_tid(self) -> dict[int, TaskInfo]:
        return {t.tid: t for t in self.tasks}


_ZSTD: Any = None


def chunk_crc(major: int, head: bytes, payload: bytes) -> int:
    """The CRC a chunk must carry in a file of format `major`: from 2.0 over the
    header (its CRC field left out) and the payload, in 1.x over the payload only."""
    if major < 2:
        return zlib.crc32(payload)
    return zlib.crc32(payload, zlib.crc32(head[28:32], zlib.crc32(head[:24])))


def pack_chunk(tag: bytes, codec: int, payload: bytes, raw_len: int, major: int = 2) -> bytes:
    """A whole chunk (header + payload) as a file of format `major` holds it."""
    head = _CHUNK.pack(tag, codec, 0, len(payload), raw_len, 0, 0)
    crc = chunk_crc(major, head, payload)
    return _CHUNK.pack(tag, codec, 0, len(payload), raw_len, crc, 0) + payload


def _compress(raw: bytes | memoryview) -> tuple[int, bytes]:
    # Level 1: records compress ~20x anyway, and the drain thread pays for it
    # (2.5x cheaper than the default level).
    global _ZSTD
    if _ZSTD is None:
        import pyarrow as pa

        _ZSTD = pa.Codec("zstd", compression_level=1)
    return CODEC_ZSTD, _ZSTD.compress(raw, asbytes=True)


def _decompress(codec: int, payload: bytes, raw_len: int, *, records: bool = False) -> Any:
    """A chunk's raw bytes; for `records`, a buffer numpy can view without a copy
    (an events chunk is up to 64 MiB, and `report` streams through every one)."""
    if codec == CODEC_NONE:
        return payload
    if codec == CODEC_ZSTD:
        import pyarrow as pa

        try:
            out = pa.decompress(
                payload, decompressed_size=raw_len, codec="zstd", asbytes=not records
            )
        except (OSError, ValueError) as exc:
            raise TraceFileError(f"a compressed chunk is damaged: {exc}") from None
        if len(out) != raw_len:
            raise TraceFileError("a compressed chunk has the wrong size")
        return out if records else bytes(out)
    raise TraceFileError(f"unknown compression codec {codec}; upgrade iotrace")


class TraceWriter:
    """Appends chunks to a new trace file. Thread-safe: the drain thread writes
    events while the main thread adds tasks and counters."""

    def __init__(self, path: Path, meta: dict[str, Any], *, force: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._closed = False
        self.events_written = 0
        self.bytes_written = 0
        self.error: str = ""
        # Regular files only, never through a symlink, given to the sudo user
        # only when created here: see iotrace.outfile.
        fd = outfile.create(self.path, force=force, hint="-o")
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=0)
        full_meta = {
            "format": "iotrace.trace",
            "schema_version": list(events.SCHEMA_VERSION),
            "event_fields": [[f.name, f.npcode] for f in events.EVENT_FIELDS],
            **meta,
        }
        try:
            self._write(_HEADER.pack(MAGIC, *events.SCHEMA_VERSION, 0))
            self._chunk(b"META", json.dumps(full_meta).encode(), compress=False)
        except OSError as exc:
            self._file.close()
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None

    def _write(self, data: bytes) -> None:
        # An unbuffered write may be short (a disk filling up mid-chunk): go on
        # until all is written or the kernel reports the error, so a torn chunk
        # is only ever the file's last.
        view = memoryview(data)
        while view:
            n = self._file.write(view)
            if not n:
                raise OSError(28, os.strerror(28))
            self.bytes_written += n
            view = view[n:]

    def _chunk(self, tag: bytes, raw: bytes | memoryview, *, compress: bool) -> None:
        codec, stored = _compress(raw) if compress else (CODEC_NONE, bytes(raw))
        # One write per chunk: a reader (or a crash) sees whole chunks or a
        # detectably short tail, never an interleaving.
        self._write(pack_chunk(tag, codec, stored, len(raw), events.SCHEMA_VERSION[0]))

    def _guarded(self, tag: bytes, raw: bytes | memoryview, compress: bool) -> bool:
        with self._lock:
            if self._closed or self.error:
                return False
            try:
                self._chunk(tag, raw, compress=compress)
            except OSError as exc:
                # Disk full or gone: stop writing, keep what is on disk readable.
                self.error = f"writing {self.path} failed: {exc.strerror}; recording stopped"
                return False
            return True

    def write_events(self, batch: np.ndarray) -> bool:
        """Append a batch of records. Returns False once writing has failed."""
        if len(batch) == 0:
            return not self.error
        if batch.dtype != EVENT_DTYPE:
            raise TypeError(f"events must have dtype EVENT_DTYPE, not {batch.dtype}")
        step = MAX_EVENTS_CHUNK_BYTES // events.EVENT_SIZE
        ok = True
        for start in range(0, len(batch), step):
            part = np.ascontiguousarray(batch[start : start + step])
            # the records as they lie in memory: no copy before compression
            ok = self._guarded(b"EVTS", part.view(np.uint8).data, True) and ok
            if ok:
                self.events_written += len(part)
        return ok

    def write_tasks(self, tasks: list[TaskInfo]) -> bool:
        if not tasks:
            return True
        return self._guarded(b"PROC", json.dumps([t.to_json() for t in tasks]).encode(), False)

    def write_stats(self, stats: dict[str, Any]) -> bool:
        return self._guarded(b"STAT", json.dumps(stats).encode(), False)

    def close(self, footer: dict[str, Any] | None = None) -> None:
        """Write the footer and close; a second close does nothing."""
        body = {"closed_wall": time.time(), "events": self.events_written, **(footer or {})}
        self._guarded(b"END.", json.dumps(body).encode(), False)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._file.close()
            except OSError as exc:
                self.error = self.error or f"closing {self.path} failed: {exc.strerror}"

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    return data if data is not None else b""


MAX_JSON_INT_DIGITS: Final = 40
"""Longer integers in a trace's JSON are damage (the longest iotrace writes is a u64)."""


def _json_int(text: str) -> int:
    if len(text) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _json_float(text: str) -> float:
    if len(text) > 400:
        raise ValueError(f"a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:20]})")
    return value


def _json_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _json(payload: bytes, what: str) -> Any:
    """A chunk's JSON, with numbers bounded (no 1e999, no NaN, no 5001-digit
    integers) and every string made printable (no terminal escapes, no lone
    surrogates that cannot be printed or encoded)."""
    try:
        value = json.loads(
            payload,
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
        return printable_json(value)
    except (ValueError, RecursionError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise TraceFileError(f"the {what} chunk is not valid JSON: {reason}") from None


@dataclass
class _Chunks:
    version: tuple[int, int]
    meta: dict[str, Any]
    damage: str = ""
    records: list[tuple[bytes, int, bytes, int]] = field(default_factory=list)


def _open_checked(path: Path) -> IO[bytes]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - handed to the caller
    except FileNotFoundError:
        raise TraceFileError(f"{path}: no such trace file") from None
    except IsADirectoryError:
        raise TraceFileError(f"{path} is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceFileError(f"cannot read {path}: {exc.strerror}") from None
    return f


def _read_header(f: IO[bytes], path: Path) -> tuple[tuple[int, int], dict[str, Any], str]:
    head = _read_exact(f, _HEADER.size)
    if len(head) < _HEADER.size or head[:8] != MAGIC:
        raise TraceFileError(f"{path} is not an iotrace trace file")
    _, major, minor, reserved = _HEADER.unpack(head)
    if major > events.SCHEMA_VERSION[0]:
        raise TraceFileError(
            f"{path} uses trace format {major}.{minor}, newer than this iotrace "
            f"({events.SCHEMA_VERSION[0]}.{events.SCHEMA_VERSION[1]}); upgrade iotrace"
        )
    if major < 1:
        raise TraceFileError(f"{path} has an unknown trace format version {major}.{minor}")
    first = _next_chunk(f, major)
    if isinstance(first, str) or first is None or first[0] != b"META":
        raise TraceFileError(f"{path} is damaged: its metadata chunk is missing or unreadable")
    meta = _json(_decompress(first[1], first[2], first[3]), "metadata")
    if not isinstance(meta, dict):
        raise TraceFileError(f"{path} is damaged: its metadata is not an object")
    return (major, minor), meta, _header_damage((major, minor), reserved, meta)


def _header_damage(version: tuple[int, int], reserved: int, meta: dict[str, Any]) -> str:
    """What is wrong with the file header that no CRC covers ("" when nothing)."""
    said = meta.get("schema_version")
    if isinstance(said, list) and said != list(version):
        return (
            f"the file header says format {version[0]}.{version[1]} but its metadata "
            f"{'.'.join(map(str, said))[:20]}"
        )
    if reserved and version <= events.SCHEMA_VERSION:
        return "the file header's reserved field is not zero"
    return ""


def _next_chunk(f: IO[bytes], major: int) -> tuple[bytes, int, bytes, int] | str | None:
    """The next chunk, None at a clean end, or a string saying why it is unreadable."""
    head = _read_exact(f, _CHUNK.size)
    if not head:
        return None
    if len(head) < _CHUNK.size:
        return "cut short inside a chunk header"
    tag, codec, _, stored_len, raw_len, crc, _ = _CHUNK.unpack(head)
    if not _TAG_BYTES.issuperset(tag):
        # Zeros (a sparse or zero-filled file) would otherwise pass as empty
        # chunks with a valid checksum, 32 bytes at a time, for ever.
        return f"not a chunk (tag {tag!r})"
    cap = MAX_EVENTS_CHUNK_BYTES if tag == b"EVTS" else MAX_JSON_BYTES
    if stored_len > cap or raw_len > cap:
        return f"a {tag!r} chunk claims {max(stored_len, raw_len)} bytes, over the {cap} cap"
    payload = _read_exact(f, stored_len)
    if len(payload) < stored_len:
        return "cut short inside a chunk"
    if chunk_crc(major, head, payload) != crc:
        return f"a {tag!r} chunk fails its checksum"
    return tag, codec, payload, raw_len


def count_records(path: Path | str) -> int:
    """How many records a trace's EVTS chunks claim, from the chunk headers alone
    (nothing decompressed or checked): for refusing work too big to do in memory
    before starting it."""
    path = Path(path)
    with _open_checked(path) as f:
        _read_header(f, path)
        n = 0
        while True:
            head = _read_exact(f, _CHUNK.size)
            if len(head) < _CHUNK.size:
                return n
            tag, _, _, stored_len, raw_len, _, _ = _CHUNK.unpack(head)
            if not _TAG_BYTES.issuperset(tag) or stored_len > MAX_EVENTS_CHUNK_BYTES:
                return n
            if tag == b"EVTS":
                n += min(raw_len, MAX_EVENTS_CHUNK_BYTES) // events.EVENT_SIZE
            f.seek(stored_len, os.SEEK_CUR)


def open_trace(path: Path) -> tuple[IO[bytes], tuple[int, int], dict[str, Any], str]:
    """The file positioned after its metadata, its version, the metadata, and what is
    wrong with its header ("" when nothing): the start every reader shares."""
    f = _open_checked(path)
    try:
        version, meta, header_damage = _read_header(f, path)
        fields = meta.get("event_fields")
        expected = [[fl.name, fl.npcode] for fl in events.EVENT_FIELDS]
        # Formats 1 and 2 share the record layout.
        if version[0] in (1, 2) and fields is not None and fields != expected:
            raise TraceFileError(f"{path} declares an event layout this iotrace does not know")
    except BaseException:
        f.close()
        raise
    return f, version, meta, header_damage


def read_chunk(f: IO[bytes], version: tuple[int, int]) -> tuple[bytes, Any] | None:
    """The next chunk of `f`, decoded: (tag, value); (b"DMG!", reason) when it cannot
    be read (a reader stops there); (b"SKIP", tag) for a newer minor version's chunk
    this reader cannot know; None at a clean end."""
    while True:
        chunk = _next_chunk(f, version[0])
        if chunk is None:
            return None
        if isinstance(chunk, str):
            return b"DMG!", chunk
        tag, codec, payload, raw_len = chunk
        if tag not in KNOWN_TAGS:
            if version > events.SCHEMA_VERSION:
                return b"SKIP", tag.decode("ascii")
            # Every chunk a file of this version may hold is known here.
            return b"DMG!", f"a chunk with an unknown tag {tag!r}"
        try:
            raw = _decompress(codec, payload, raw_len, records=tag == b"EVTS")
            value = _decode_chunk(tag, raw)
        except TraceFileError as exc:
            return b"DMG!", str(exc)
        if value is not None:  # None: META again, nothing new
            return tag, value


def iter_chunks(path: Path) -> tuple[tuple[int, int], dict[str, Any], Iterator[tuple[bytes, Any]]]:
    """Version, metadata, and an iterator of decoded (tag, value) chunks.

    EVTS values are event arrays, PROC lists of TaskInfo, STAT/END dicts. The
    iterator yields (b"DMG!", reason) and stops at the first unreadable chunk,
    and (b"SKIP", tag) for a chunk of a newer minor version that it skipped.
    Chunks are read one at a time, so a large file never sits in memory raw.
    """
    path = Path(path)
    f, version, meta, header_damage = open_trace(path)

    def gen() -> Iterator[tuple[bytes, Any]]:
        with f:
            if header_damage:  # reported, and the chunks are read on
                yield b"DMG!", header_damage
            while True:
                item = read_chunk(f, version)
                if item is None:
                    return
                yield item
                if item[0] == b"DMG!":
                    return
                # Let go of this chunk before reading the next: a streaming reader
                # then holds one chunk, not two.
                del item

    return version, meta, gen()


def _decode_chunk(tag: bytes, raw: Any) -> Any:
    if tag == b"EVTS":
        if len(raw) % events.EVENT_SIZE:
            raise TraceFileError("an events chunk is not a whole number of records")
        return np.frombuffer(raw, dtype=EVENT_DTYPE)
    if tag == b"PROC":
        obj = _json(raw, "task")
        if not isinstance(obj, list):
            raise TraceFileError("a task chunk is not a list")
        return [TaskInfo.from_json(o) for o in obj]
    if tag in (b"STAT", b"END."):
        obj = _json(raw, "counters")
        if not isinstance(obj, dict):
            raise TraceFileError("a counters chunk is not an object")
        return obj
    return None  # META again: nothing new


@dataclass
class ChunkTally:
    """What a trace holds, counted chunk by chunk without keeping its records."""

    events: int = 0
    kinds: dict[int, int] = field(default_factory=dict)
    """Records per events.Kind."""
    calls: int = 0
    """Syscalls the records stand for: one per SYSCALL record, the count of each run."""
    lost_in_records: int = 0
    """Records the LOST records say were dropped."""
    stats: dict[str, Any] = field(default_factory=dict)
    footer: dict[str, Any] | None = None
    damage: str = ""


def tally(path: Path | str) -> ChunkTally:
    """Count a trace's records and read its counters in bounded memory
    (a ten-minute trace does not fit in memory as records)."""
    t = ChunkTally()
    stream = TraceStream(path)
    for evs in stream.events():
        kinds, counts = np.unique(evs["kind"], return_counts=True)
        for k, n in zip(kinds.tolist(), counts.tolist(), strict=True):
            t.kinds[k] = t.kinds.get(k, 0) + n
        t.lost_in_records += int(evs["size"][evs["kind"] == events.Kind.LOST].sum())
        t.calls += runs.calls_in(evs)
    t.events = stream.records
    t.stats, t.footer, t.damage = stream.stats, stream.footer, stream.damage
    return t


class TraceStream:
    """A trace file read one chunk at a time: records are handed out as they are
    decoded and never kept, while tasks, counters, the footer and any damage are
    gathered on the way (complete once `events()` is exhausted). `report` analyses
    traces of any size this way; `load` is the same walk keeping every record."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.version, self.meta, self._chunks = iter_chunks(self.path)
        self._tasks: dict[tuple[int, int], TaskInfo] = {}
        self.stats: dict[str, Any] = {}
        self.footer: dict[str, Any] | None = None
        self.damage = ""
        self.skipped: list[str] = []
        self.records = 0

    def events(self) -> Iterator[np.ndarray]:
        """Each EVTS chunk's records, in file order."""
        for tag, value in self._chunks:
            if tag == b"EVTS":
                self.records += len(value)
                yield value
                del value  # see iter_chunks
            elif tag == b"PROC":
                for t in value:
                    self._tasks[(t.tid, t.start_ns)] = t
            elif tag == b"STAT":
                self.stats = value
            elif tag == b"END.":
                self.footer = value
                if isinstance(value.get("stats"), dict):
                    self.stats = value["stats"]
            elif tag == b"DMG!":
                self.damage = f"{self.damage}; {value}" if self.damage else value
            elif tag == b"SKIP":
                self.skipped.append(value)
        if self.footer is None and not self.damage:
            self.damage = "cut short: the writer stopped before closing the file"
        failed = self.footer.get("recording_failed") if self.footer else None
        if failed and not self.damage:
            self.damage = f"the recording failed: {failed}"

    def trace(self, evs: np.ndarray | None = None) -> Trace:
        """The trace as read so far, holding `evs` as its records (none by default:
        a streamed trace's metadata, tasks and counters without its records)."""
        return Trace(
            path=self.path,
            meta=self.meta,
            events=empty_events() if evs is None else evs,
            tasks=list(self._tasks.values()),
            stats=self.stats,
            footer=self.footer,
            version=self.version,
            damage=self.damage,
            skipped=list(self.skipped),
        )


def load(path: Path | str) -> Trace:
    """Read a whole trace file. Raises TraceFileError with a one-line reason."""
    stream = TraceStream(path)
    batches = list(stream.events())
    return stream.trace(np.concatenate(batches) if batches else empty_events())
