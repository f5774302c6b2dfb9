"""A minimal reader of Perfetto protobuf traces, written from the .proto files
(trace_packet, track_event, track_descriptor, clock_snapshot, interned_data):
enough to check what `iotrace.perfetto` writes the way trace_processor reads it
— sequences with their defaults, incremental clocks and interned names, tracks,
slices rebuilt from BEGIN/END on each track, flows and counter values."""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


def fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of one message; value is an int for
    varint/fixed fields and bytes for length-delimited ones."""
    out: list[tuple[int, int, Any]] = []
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        v: Any
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 1:
            v, i = int.from_bytes(buf[i : i + 8], "little"), i + 8
        elif wt == 2:
            ln, i = _varint(buf, i)
            v, i = buf[i : i + ln], i + ln
            assert i <= n, "length runs past the message"
        elif wt == 5:
            v, i = int.from_bytes(buf[i : i + 4], "little"), i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    assert i == n
    return out


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = v = 0
    while True:
        b = buf[i]
        i += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return v, i
        shift += 7


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def one(msg: bytes, num: int, default: Any = None) -> Any:
    vals = [v for f, _, v in fields(msg) if f == num]
    return vals[-1] if vals else default


@dataclass
class Event:
    ts: int
    track: int
    type: int
    name: str | None
    args: dict[str, int]
    flows: list[int]
    ends_flows: list[int]
    counters: list[int]
    seq: int


@dataclass
class Slice:
    track: int
    ts: int
    end: int
    name: str
    depth: int
    args: dict[str, int]
    flows: list[int] = field(default_factory=list)
    ends_flows: list[int] = field(default_factory=list)


@dataclass
class Decoded:
    tracks: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    packets: int = 0
    compressed_batches: int = 0

    def slices(self) -> list[Slice]:
        """Slices per track, BEGIN/END paired by a stack after a stable sort by time
        (what trace_processor does)."""
        out = []
        by_track: dict[int, list[Event]] = defaultdict(list)
        for e in self.events:
            if e.type in (1, 2, 3):
                by_track[e.track].append(e)
        for track, evs in by_track.items():
            stack: list[Slice] = []
            for e in sorted(evs, key=lambda e: e.ts):
                if e.type == 2:
                    assert stack, f"END without BEGIN on track {track} at {e.ts}"
                    s = stack.pop()
                    s.end = e.ts
                    s.ends_flows += e.ends_flows
                    assert s.end >= s.ts
                    continue
                s = Slice(track, e.ts, e.ts, e.name or "", len(stack), e.args)
                s.flows, s.ends_flows = list(e.flows), list(e.ends_flows)
                out.append(s)
                if e.type == 1:
                    stack.append(s)
            assert not stack, f"unclosed slices on track {track}"
        return out

    def counter_values(self) -> dict[int, list[tuple[int, int]]]:
        out: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for e in self.events:
            for uuid, v in zip(self._extra[e.seq], e.counters, strict=False):
                out[uuid].append((e.ts, v))
        for vals in out.values():
            vals.sort(key=lambda tv: tv[0])
        return out

    _extra: dict[int, list[int]] = field(default_factory=dict)


def decode(data: bytes) -> Decoded:
    d = Decoded()
    seqs: dict[int, dict[str, Any]] = defaultdict(
        lambda: {"names": {}, "ann": {}, "clocks": {}, "last": {}, "track": 0, "clock": 0}
    )
    packets: list[bytes] = []
    for num, _, v in fields(data):
        assert num == 1
        inner = one(v, 50)
        if inner is not None:
            d.compressed_batches += 1
            packets += [p for n, _, p in fields(zlib.decompress(inner)) if n == 1]
        else:
            packets.append(v)
    for p in packets:
        d.packets += 1
        f: dict[int, list[Any]] = {}
        for num, _, v in fields(p):
            f.setdefault(num, []).append(v)
        sid = f.get(10, [0])[-1]
        st = seqs[sid]
        if f.get(13, [0])[-1] & 1:
            st.update(names={}, ann={}, last={})
        if 59 in f:
            dfl = f[59][-1]
            st["clock"] = one(dfl, 58, 0)
            ted = one(dfl, 11)
            if ted is not None:
                st["track"] = one(ted, 11, 0)
                d._extra[sid] = [v for n, _, v in fields(ted) if n == 31]
        for interned in f.get(12, []):
            for n, _, entry in fields(interned):
                iid, name = one(entry, 1), one(entry, 2).decode()
                {2: st["names"], 3: st["ann"]}[n][iid] = name
        if 6 in f:
            snap = f[6][-1]
            for n, _, c in fields(snap):
                if n == 1:
                    cid, ts = one(c, 1), one(c, 2)
                    st["clocks"][cid] = (ts, bool(one(c, 3, 0)))
                    st["last"][cid] = ts
            continue
        if 60 in f:
            td = f[60][-1]
            uuid = one(td, 1)
            info: dict[str, Any] = {"parent": one(td, 5, 0)}
            if one(td, 2) is not None:
                info["name"] = one(td, 2).decode()
            if one(td, 3) is not None:
                pr = one(td, 3)
                info.update(pid=one(pr, 1), name=one(pr, 6, b"").decode(), kind="process")
            if one(td, 4) is not None:
                th = one(td, 4)
                info.update(
                    pid=one(th, 1), tid=one(th, 2), name=one(th, 5, b"").decode(), kind="thread"
                )
            if one(td, 8) is not None:
                info["kind"] = "counter"
            d.tracks[uuid] = info
            continue
        if 11 not in f:
            continue
        cid = f.get(58, [st["clock"]])[-1]
        raw = f[8][-1]
        origin, incremental = st["clocks"][cid]
        mono_at_origin = st["clocks"][3][0]
        if incremental:
            value = st["last"][cid] + raw
            st["last"][cid] = value
        else:
            value = raw
        ts = value - origin + mono_at_origin
        te = f[11][-1]
        tf: dict[int, list[Any]] = {}
        for num, _, v in fields(te):
            tf.setdefault(num, []).append(v)
        name = None
        if 10 in tf:
            name = st["names"][tf[10][-1]]
        elif 23 in tf:
            name = tf[23][-1].decode()
        args = {}
        for a in tf.get(4, []):
            af = {n: v for n, _, v in fields(a)}
            args[st["ann"][af[1]]] = _signed(af[4])
        d.events.append(
            Event(
                ts=ts,
                track=tf.get(11, [st["track"]])[-1],
                type=tf.get(9, [0])[-1],
                name=name,
                args=args,
                flows=tf.get(47, []),
                ends_flows=tf.get(48, []),
                counters=[_signed(v) for v in tf.get(12, [])],
                seq=sid,
            )
        )
    return d
