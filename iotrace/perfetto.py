"""A trace as a Perfetto protobuf trace (`iotrace export --format perfetto`), for
ui.perfetto.dev and trace_processor, written while the trace file is read.

The protobuf is encoded by hand (varints and length-delimited fields of
perfetto/trace/trace_packet.proto; no protoc): one `Trace` message whose
`packet`s are grouped into `compressed_packets` (zlib) of about 384 KiB each.

What goes where:

- each process is a process track; each traced thread a thread track holding
  its syscalls as slices, with the off-CPU intervals inside them as child
  slices ("off-CPU (read)", "preempted", "off-CPU (untraced call)") and the
  runnable tail of an interval ("waiting to run") as a grandchild;
- each process's async requests (libaio, io_uring, POSIX AIO) are slices on
  "<api> requests" tracks under the process, one track per request in flight
  at once (the UI merges the tracks of one name into one expandable track),
  with "in kernel" / "awaiting reap" children where both times are known;
- a flow arrow runs from each request (it begins at submit) to the call that
  reaped it;
- a "<api> in flight" counter per process gives its requests in flight;
- dropped records are slices on an "iotrace: lost events" track, so a gap
  never looks like idle time.

Why it is small: each thread (and each process's requests) writes its own
packet sequence whose defaults name its track, so most events carry no track
id; timestamps are deltas on a sequence-scoped incremental clock; event and
argument names are interned. Memory stays flat: a thread holds its off-CPU
intervals until the call that contains them arrives, and requests wait in a
reorder window of `REORDER_NS` (records are written at reap, slices must be
emitted in start order for the deltas and the in-flight counter).
"""

from __future__ import annotations

import heapq
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from iotrace import events, session
from iotrace.analysis import ASYNC_APIS, request_op_name
from iotrace.events import Flag

BATCH_BYTES = 384 << 10
"""Packets are compressed together in batches of about this many bytes: Perfetto
wants each compressed_packets packet under 512 KB, which even data that does not
compress at all then stays under."""
REORDER_NS = 250_000_000
"""How long (in trace time, behind the latest reap read) requests wait to be put in
start order. A request submitted longer before than that is drawn on a track of its
own and left out of the in-flight counter (counted in `Written.late_requests`)."""
MAX_HELD = 256
"""Off-CPU intervals a thread holds while waiting for the call that contains them."""

SYSCALL_RUN = 8  # events.Kind.SYSCALL_RUN where the schema has it
_REAP_CALLS = frozenset({"io_getevents", "io_pgetevents", "io_uring_enter"})
_POSITIONAL = frozenset(
    {"pread64", "preadv", "preadv2", "pwrite64", "pwritev", "pwritev2"}
)  # calls whose `offset` is a file offset
_INCR_CLOCK = 64  # sequence-scoped, incremental: each timestamp is a delta
_ABS_CLOCK = 65  # sequence-scoped, absolute (same origin): for the rare late event
_MONOTONIC = 3
_REALTIME = 1
_M64 = (1 << 64) - 1

# Tags (field number << 3 | wire type) of the fields written.
_T_PACKET = b"\x0a"  # Trace.packet
_T_TS = b"\x40"  # TracePacket.timestamp
_T_SEQ = b"\x50"  # TracePacket.trusted_packet_sequence_id
_T_EVENT = b"\x5a"  # TracePacket.track_event
_T_INTERNED = b"\x62"  # TracePacket.interned_data
_T_FLAGS = b"\x68"  # TracePacket.sequence_flags
_T_CLOCK_ID = b"\xd0\x03"  # TracePacket.timestamp_clock_id (58)
_T_DEFAULTS = b"\xda\x03"  # TracePacket.trace_packet_defaults (59)
_T_DESCRIPTOR = b"\xe2\x03"  # TracePacket.track_descriptor (60)
_T_SNAPSHOT = b"\x32"  # TracePacket.clock_snapshot (6)
_T_COMPRESSED = b"\x92\x03"  # TracePacket.compressed_packets (50)
_BEGIN = b"\x48\x01"  # TrackEvent.type = TYPE_SLICE_BEGIN
_END = b"\x48\x02"
_INSTANT = b"\x48\x03"
_T_NAME_IID = b"\x50"  # TrackEvent.name_iid
_T_TRACK = b"\x58"  # TrackEvent.track_uuid
_T_COUNTER = b"\x60"  # TrackEvent.extra_counter_values
_T_ANNOTATION = b"\x22"  # TrackEvent.debug_annotations
_T_FLOW = b"\xf9\x02"  # TrackEvent.flow_ids (47, fixed64)
_T_FLOW_END = b"\x81\x03"  # TrackEvent.terminating_flow_ids (48, fixed64)
_SEQ_CLEARED = 1
_WORKER = int(Flag.WORKER)
_NOT_OBSERVED = int(Flag.NOT_OBSERVED)
_SEQ_NEEDS_STATE = 2
_UNIT_COUNT = 2

ANNOTATIONS = ("fd", "ret", "size", "file_offset", "runq_us", "calls", "count", "user_data")
"""Argument names, interned as 1.. in this order on every sequence."""
_ANN = {name: i + 1 for i, name in enumerate(ANNOTATIONS)}


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative: two's complement)."""
    if 0 <= n < 0x4000:
        return _VAR[n]
    n &= _M64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of 0..16383 (one or two bytes), looked up rather than built: most lengths,
# ids, small deltas and argument values are in this range.
_VAR = [bytes((i,)) for i in range(0x80)] + [
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, 0x4000)
]
_SMALL = _VAR


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + varint(len(payload)) + payload


def _annotation(name: str, value: int) -> bytes:
    """DebugAnnotation{name_iid, int_value}."""
    key = (name, value)
    hit = _ANN_CACHE.get(key)
    if hit is None:
        body = b"\x08" + _SMALL[_ANN[name]] + b"\x20" + varint(value)
        hit = _T_ANNOTATION + _SMALL[len(body)] + body
        if len(_ANN_CACHE) > 50_000:
            _ANN_CACHE.clear()  # offsets rarely repeat; fds, sizes and results do
        _ANN_CACHE[key] = hit
    return hit


_ANN_CACHE: dict[tuple[str, int], bytes] = {}
_ANN_FD = {
    f: _ld(_T_ANNOTATION, b"\x08" + _SMALL[_ANN["fd"]] + b"\x20" + varint(f)) for f in range(64)
}
_OFFSET_PREFIX = b"\x08" + _SMALL[_ANN["file_offset"]] + b"\x20"
_ANN_SIZE = {
    n: _ld(_T_ANNOTATION, b"\x08" + _SMALL[_ANN["size"]] + b"\x20" + varint(n))
    for n in [*range(256), *(1 << i for i in range(8, 21))]
}
_ANN_RET = {
    r: _ld(_T_ANNOTATION, b"\x08" + _SMALL[_ANN["ret"]] + b"\x20" + varint(r))
    for r in [*range(-140, 256), *(1 << i for i in range(8, 21))]
}


def _flows(tag: bytes, ids: list[int]) -> bytes:
    return b"".join(tag + i.to_bytes(8, "little") for i in ids)


@dataclass
class Written:
    """What an export wrote."""

    records: int = 0
    packets: int = 0
    bytes: int = 0
    late_requests: int = 0
    tracks: int = 0


class _Out:
    """Packets, compressed in batches and written as one Trace message."""

    def __init__(self, out: IO[bytes], *, compress: bool) -> None:
        self.out = out
        self.compress = compress
        self.buf = bytearray()
        self.packets = 0
        self.bytes = 0

    def packet(self, body: bytes) -> None:
        n = len(body)
        buf = self.buf
        buf += _T_PACKET
        buf += _VAR[n] if n < 0x4000 else varint(n)
        buf += body
        self.packets += 1
        if len(buf) >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        data = bytes(self.buf)
        if self.compress:
            data = _ld(_T_PACKET, _ld(_T_COMPRESSED, zlib.compress(data, 6)))
        self.out.write(data)
        self.bytes += len(data)
        self.buf.clear()


class _Seq:
    """One packet sequence: its id, the incremental clock's last value, and the
    event names it has interned."""

    __slots__ = ("id", "last", "names", "tail")

    def __init__(self, seq_id: int) -> None:
        self.id = seq_id
        self.last = -1
        self.names: set[int] = set()
        self.tail = _T_SEQ + varint(seq_id) + _T_FLAGS + _SMALL[_SEQ_NEEDS_STATE]


@dataclass
class _Thread:
    seq: _Seq
    held: list[tuple[int, int, int, bytes, int]] = field(default_factory=list)
    """Off-CPU items (ts, end, depth, TrackEvent-begin body, name iid) awaiting their call."""
    stack: list[int] = field(default_factory=list)
    """Ends of the open slices, innermost last."""
    reaps: list[tuple[int, int]] = field(default_factory=list)
    """(reap time, flow id) of requests this thread reaped, for the reaping call."""


@dataclass
class _Group:
    """One process's requests of one API."""

    seq: _Seq
    name_iid: int
    pid: int
    api: str
    heap: list[tuple[int, int, int, Any]] = field(default_factory=list)
    free: list[int] = field(default_factory=list)
    """Lane tracks not in use (uuids, a min-heap)."""
    lanes: int = 0
    depth: int = 0
    newest: int = 0
    """The latest reap (or submit) read: requests starting before newest - REORDER_NS
    come too late to be reordered."""
    late_lanes: list[list[int]] = field(default_factory=list)
    """[uuid, end of its last slice] of the tracks for late requests."""


class _Writer:
    def __init__(self, out: _Out, meta: dict[str, Any], ident: Any) -> None:
        self.out = out
        self.ident = ident
        clock = meta.get("clock") if isinstance(meta.get("clock"), dict) else {}
        self.wall_offset: int | None = None
        if clock and "monotonic_ns" in clock and "realtime_ns" in clock:
            self.wall_offset = int(clock["realtime_ns"]) - int(clock["monotonic_ns"])
        self.next_uuid = 1
        self.next_seq = 1
        self.names: dict[str, int] = {}
        self.name_entries: list[bytes] = [b""]
        self.processes: dict[int, int] = {}
        self.threads: dict[int, _Thread] = {}
        self.groups: dict[tuple[int, int], _Group] = {}
        self.flow = 0
        self.lost_seq: _Seq | None = None
        self.lost_track = 0
        self.lost_stack: list[int] = []
        self.stats = Written()
        self.ticks = 0
        self.primary_set = False
        self.track_bytes: dict[int, bytes] = {}
        self.in_kernel = _BEGIN + _T_NAME_IID + varint(self.name_iid("in kernel"))
        self.awaiting = _BEGIN + _T_NAME_IID + varint(self.name_iid("awaiting reap"))
        self.call_kinds: dict[int, tuple[bytes, int, bool, bool]] = {}
        self.request_kinds: dict[tuple[int, int, int, bool], tuple[bytes, int]] = {}
        self.desc_seq = self._new_seq_id()

    # --- ids, names, descriptors ----------------------------------------------------

    def _uuid(self) -> int:
        self.next_uuid += 1
        return self.next_uuid

    def _new_seq_id(self) -> int:
        self.next_seq += 1
        return self.next_seq

    def name_iid(self, name: str) -> int:
        iid = self.names.get(name)
        if iid is None:
            iid = self.names[name] = len(self.name_entries)
            raw = name.encode()
            entry = b"\x08" + varint(iid) + _ld(b"\x12", raw)
            self.name_entries.append(_ld(b"\x12", entry))  # InternedData.event_names
        return iid

    def _descriptor(self, body: bytes) -> None:
        self.out.packet(_ld(_T_DESCRIPTOR, body) + _T_SEQ + varint(self.desc_seq))
        self.stats.tracks += 1

    def process(self, pid: int) -> int:
        uuid = self.processes.get(pid)
        if uuid is None:
            uuid = self.processes[pid] = self._uuid()
            comm = self.ident.comm.get(pid, "?")
            wl = self.ident.workload.get(pid)
            title = f"{wl}: {comm}" if wl and wl != comm else comm
            proc = b"\x08" + varint(pid) + _ld(b"\x32", title.encode())
            self._descriptor(b"\x08" + varint(uuid) + _ld(b"\x1a", proc))
        return uuid

    def _sequence(self, track: int, counter: int = 0) -> _Seq:
        """A new packet sequence whose events go to `track` (and whose extra counter
        values to `counter`), with its clocks and interned argument names."""
        seq = _Seq(self._new_seq_id())
        te_defaults = _T_TRACK + varint(track)
        if counter:
            te_defaults += b"\xf8\x01" + varint(counter)  # extra_counter_track_uuids (31)
        defaults = b"\xd0\x03" + varint(_INCR_CLOCK) + _ld(b"\x5a", te_defaults)
        interned = b"".join(
            _ld(b"\x1a", b"\x08" + varint(i + 1) + _ld(b"\x12", n.encode()))
            for i, n in enumerate(ANNOTATIONS)
        )
        body = (
            _T_SEQ
            + varint(seq.id)
            + _T_FLAGS
            + varint(_SEQ_CLEARED)
            + _ld(_T_DEFAULTS, defaults)
            + _ld(_T_INTERNED, interned)
        )
        self.out.packet(body)
        return seq

    def _snapshot(self, seq: _Seq, t: int) -> None:
        """Clock origins of `seq` at its first event: both sequence clocks read `t`
        when CLOCK_MONOTONIC does (and the wall clock, from the trace's anchor)."""

        def clock(cid: int, ts: int, incremental: bool = False) -> bytes:
            c = b"\x08" + varint(cid) + b"\x10" + varint(ts)
            return _ld(b"\x0a", c + (b"\x18\x01" if incremental else b""))

        clocks = clock(_MONOTONIC, t) + clock(_INCR_CLOCK, t, True) + clock(_ABS_CLOCK, t)
        if self.wall_offset is not None:
            clocks += clock(_REALTIME, t + self.wall_offset)
        snap = clocks
        if not self.primary_set:
            # Trace time is CLOCK_MONOTONIC (BPF's clock), said once: trace_processor
            # refuses to change the trace clock after using it.
            snap += b"\x10" + varint(_MONOTONIC)  # primary_trace_clock
            self.primary_set = True
        self.out.packet(_ld(_T_SNAPSHOT, snap) + _T_SEQ + varint(seq.id))
        seq.last = t

    def thread(self, pid: int, tid: int) -> _Thread:
        th = self.threads.get(tid)
        if th is None:
            parent = self.process(pid)
            uuid = self._uuid()
            comm = self.ident.comm.get(tid, self.ident.comm.get(pid, "?"))
            thr = b"\x08" + varint(pid) + b"\x10" + varint(tid) + _ld(b"\x2a", comm.encode())
            self._descriptor(b"\x08" + varint(uuid) + b"\x28" + varint(parent) + _ld(b"\x22", thr))
            th = self.threads[tid] = _Thread(self._sequence(uuid))
        return th

    def group(self, pid: int, kind: int) -> _Group:
        g = self.groups.get((pid, kind))
        if g is None:
            parent = self.process(pid)
            api = ASYNC_APIS[kind]
            counter = self._uuid()
            desc = b"\x08" + varint(counter) + b"\x28" + varint(parent)
            desc += _ld(b"\x12", f"{api} in flight".encode()) + _ld(b"\x42", b"\x18\x02")
            self._descriptor(desc)
            g = _Group(self._sequence(0, counter), self.name_iid(f"{api} request"), pid, api)
            self.groups[(pid, kind)] = g
        return g

    def _lane(self, pid: int, api: str) -> int:
        uuid = self._uuid()
        desc = b"\x08" + varint(uuid) + b"\x28" + varint(self.process(pid))
        self._descriptor(desc + _ld(b"\x12", f"{api} requests".encode()))
        return uuid

    # --- packets ------------------------------------------------------------------

    def emit(self, seq: _Seq, t: int, te: bytes, iid: int = 0) -> None:
        """One TrackEvent at time t on seq (interning the name `iid` on first use)."""
        last = seq.last
        if last < 0:
            self._snapshot(seq, t)
            last = t
        if t >= last:
            d = t - last
            head = _T_TS + (_VAR[d] if d < 0x4000 else varint(d))
            seq.last = t
        else:
            head = _T_TS + varint(t) + _T_CLOCK_ID + _SMALL[_ABS_CLOCK]
        body = head + _T_EVENT + _VAR[len(te)] + te + seq.tail
        if iid and iid not in seq.names:
            seq.names.add(iid)
            body += _ld(_T_INTERNED, self.name_entries[iid])
        self.out.packet(body)

    # --- threads: syscalls and off-CPU intervals -----------------------------------

    def _place(self, th: _Thread, items: list[tuple[int, int, int, bytes, int]]) -> None:
        """Emit items (ts, end, depth, begin body, iid) on a thread track so that they
        nest: sorted by start, each clipped to its parent; an item that starts
        before what was already written is moved up to it (or dropped when it ends
        there too)."""
        items.sort(key=lambda it: (it[0], -it[1], it[2]))
        seq, stack = th.seq, th.stack
        for ts, end, _, te, iid in items:
            if ts < seq.last:
                if end <= seq.last:
                    continue
                ts = seq.last
            while stack and stack[-1] <= ts:
                self.emit(seq, stack.pop(), _END)
            if stack and end > stack[-1]:
                end = stack[-1]
            self.emit(seq, ts, te, iid)
            stack.append(end)

    def _call_kind(self, op: int, run: bool) -> tuple[bytes, int, bool, bool]:
        """(begin body up to the arguments, name iid, positional, reaps) of a call."""
        key = op | (1 << 20 if run else 0)
        hit = self.call_kinds.get(key)
        if hit is None:
            sc = events.SYSCALL_BY_OP.get(op)
            name = sc.name if sc else f"syscall {op}"
            iid = self.name_iid(f"{name} (run)" if run else name)
            hit = (
                _BEGIN + _T_NAME_IID + varint(iid),
                iid,
                name in _POSITIONAL and not run,
                name in _REAP_CALLS and not run,
            )
            self.call_kinds[key] = hit
        return hit

    def syscall(self, r: tuple[Any, ...], run: bool) -> None:
        ts, end, pid, tid, op, fd, ret, _size, offset = r
        if ts <= 0 or end < ts:
            return
        th = self.threads.get(tid) or self.thread(pid, tid)
        te, iid, positional, reaps = self._call_kind(op, run)
        if run:
            te += _annotation("calls", offset)
        elif positional:
            te += _annotation("file_offset", offset)
        if fd >= 0:
            te += _annotation("fd", fd)
        te += _annotation("ret", ret)
        if reaps and th.reaps:
            ids = [f for t, f in th.reaps if ts <= t <= end]
            th.reaps = [(t, f) for t, f in th.reaps if t > end]
            if ids:
                te += _flows(_T_FLOW_END, ids)
        if th.held:
            items = [(ts, end, 0, te, iid)]
            keep: list[tuple[int, int, int, bytes, int]] = []
            for h in th.held:
                (items if h[0] < end else keep).append(h)
            th.held = keep
            self._place(th, items)
            return
        # The common case, one call and nothing held: _place without the sort.
        seq, stack = th.seq, th.stack
        if ts < seq.last:
            if end <= seq.last:
                return
            ts = seq.last
        while stack and stack[-1] <= ts:
            self.emit(seq, stack.pop(), _END)
        if stack and end > stack[-1]:
            end = stack[-1]
        self.emit(seq, ts, te, iid)
        stack.append(end)

    def off_cpu(self, r: tuple[Any, ...]) -> None:
        ts, end, pid, tid, op, runq = r
        if end < ts or ts <= 0:
            return
        th = self.thread(pid, tid)
        name = off_cpu_reason(op, end - ts, runq)
        label = f"off-CPU ({name})" if op else name
        if not op and name != "preempted":
            label = "off-CPU (untraced call)"
        iid = self.name_iid(label)
        te = _BEGIN + _T_NAME_IID + varint(iid)
        if runq:
            te += _annotation("runq_us", runq // 1000)
        th.held.append((ts, end, 1, te, iid))
        if 0 < runq < end - ts:
            wiid = self.name_iid("waiting to run")
            th.held.append((end - runq, end, 2, _BEGIN + _T_NAME_IID + varint(wiid), wiid))
        if len(th.held) > MAX_HELD:
            held, th.held = th.held, []
            self._place(th, held)

    # --- async requests -------------------------------------------------------------

    def request(self, r: tuple[Any, ...], kind: int) -> None:
        ts, end, kdone, pid, tid, op, fd, size, offset, ret, flags, user_data = r
        if ts <= 0:
            return
        g = self.groups.get((pid, kind)) or self.group(pid, kind)
        done = end or kdone
        observed = not (flags & _NOT_OBSERVED) and done >= ts
        key = (kind, op, flags & _WORKER, observed)
        head = self.request_kinds.get(key)
        if head is None:
            name = request_op_name(kind, op)
            if flags & _WORKER:
                name += " (io-wq)"
            if not observed:
                name += ": completion not observed"
            iid = self.name_iid(name)
            head = self.request_kinds[key] = (_BEGIN + _T_NAME_IID + varint(iid), iid)
        te, iid = head
        te += _ANN_FD.get(fd) or _annotation("fd", fd)
        ob = _OFFSET_PREFIX + varint(offset)
        te += _T_ANNOTATION + _VAR[len(ob)] + ob
        te += _ANN_SIZE.get(size) or _annotation("size", size)
        te += _ANN_RET.get(ret) or _annotation("ret", ret)
        if user_data:
            te += _annotation("user_data", user_data)
        if observed and end:
            self.flow += 1
            te += _T_FLOW + self.flow.to_bytes(8, "little")
            (self.threads.get(tid) or self.thread(pid, tid)).reaps.append((end, self.flow))
        g.newest = max(g.newest, done or ts)
        req = [ts, done if observed else ts, kdone, te, iid, 0]
        if ts < g.seq.last or (g.seq.last >= 0 and ts < g.newest - REORDER_NS):
            self._late(g, req)
            return
        heapq.heappush(g.heap, (ts, 0, self._tick(), req))

    def _tick(self) -> int:
        self.ticks += 1
        return self.ticks

    def _late(self, g: _Group, req: list[Any]) -> None:
        """A request that starts before what its group already wrote: drawn on a
        track of late requests, with absolute times, outside the counter."""
        self.stats.late_requests += 1
        ts, done, _kdone, te, iid, _ = req
        lane = next((ln for ln in g.late_lanes if ln[1] <= ts), None)
        if lane is None:
            lane = [self._lane(g.pid, f"{g.api} (late)"), 0]
            g.late_lanes.append(lane)
        lane[1] = done
        track = _T_TRACK + varint(lane[0])
        self._abs(g.seq, ts, te + track, iid)
        self._abs(g.seq, done, _END + track)

    def _abs(self, seq: _Seq, t: int, te: bytes, iid: int = 0) -> None:
        if seq.last < 0:
            self._snapshot(seq, t)
        body = _T_TS + varint(t) + _T_CLOCK_ID + _SMALL[_ABS_CLOCK]
        body += _T_EVENT + varint(len(te)) + te + seq.tail
        if iid and iid not in seq.names:
            seq.names.add(iid)
            body += _ld(_T_INTERNED, self.name_entries[iid])
        self.out.packet(body)

    def drain(self, g: _Group, until: int | None) -> None:
        """Emit the group's queued request events that start before `until` (all when
        None), in time order."""
        heap, seq, out = g.heap, g.seq, self.out
        tracks = self.track_bytes
        pop, push = heapq.heappop, heapq.heappush

        def put(t: int, te: bytes, iid: int = 0) -> None:
            last = seq.last
            if t >= last >= 0 and (not iid or iid in seq.names):
                d = t - last
                n = len(te)
                body = b"\x40" + (_VAR[d] if d < 0x4000 else varint(d)) + b"\x5a"
                body += (_VAR[n] if n < 0x4000 else varint(n)) + te + seq.tail
                out.packet(body)
                seq.last = t
            else:
                self.emit(seq, t, te, iid)

        while heap and (until is None or heap[0][0] < until):
            t, phase, _, req = pop(heap)
            if phase == 0:  # begin: take the lowest free lane
                if g.free:
                    lane = pop(g.free)
                else:
                    lane = self._lane(g.pid, g.api)
                    tracks[lane] = _T_TRACK + varint(lane)
                    g.lanes += 1
                req[5] = lane
                track = tracks[lane]
                g.depth += 1
                depth = g.depth
                put(
                    t,
                    req[3]
                    + track
                    + _T_COUNTER
                    + (_VAR[depth] if depth < 0x4000 else varint(depth)),
                    req[4],
                )
                ts, done, kdone = req[0], req[1], req[2]
                # Children only where the two parts differ: io_uring's raw records end
                # at the kernel completion (their reap is inferred by the analysis).
                if kdone and ts <= kdone < done:
                    put(t, self.in_kernel + track, self.name_iid("in kernel"))
                    self.ticks += 1
                    push(heap, (kdone, 1, self.ticks, req))
                self.ticks += 1
                push(heap, (done, 3, self.ticks, req))
            elif phase == 1:  # kernel completion: "in kernel" ends, "awaiting reap" begins
                track = tracks[req[5]]
                put(t, _END + track)
                put(t, self.awaiting + track, self.name_iid("awaiting reap"))
                self.ticks += 1
                push(heap, (req[1], 2, self.ticks, req))
            elif phase == 2:  # "awaiting reap" ends
                put(t, _END + tracks[req[5]])
            else:  # the request ends
                g.depth -= 1
                depth = g.depth
                put(
                    t,
                    _END
                    + tracks[req[5]]
                    + _T_COUNTER
                    + (_VAR[depth] if depth < 0x4000 else varint(depth)),
                )
                push(g.free, req[5])

    # --- lost records ----------------------------------------------------------------

    def lost(self, r: tuple[Any, ...]) -> None:
        ts, end, count, probe = r
        if self.lost_seq is None:
            self.lost_track = self._uuid()
            self._descriptor(
                b"\x08" + varint(self.lost_track) + _ld(b"\x12", b"iotrace: lost events")
            )
            self.lost_seq = self._sequence(self.lost_track)
        seq = self.lost_seq
        iid = self.name_iid(f"LOST records ({events.probe_name(probe)})")
        th = _Thread(seq, stack=self.lost_stack)
        te = _BEGIN + _T_NAME_IID + varint(iid) + _annotation("count", count)
        self._place(th, [(ts, max(end, ts), 0, te, iid)])

    # --- the whole trace -----------------------------------------------------------

    def feed(self, ev: np.ndarray) -> None:
        """One batch of records, in file order (a thread's off-CPU intervals come
        before the call that holds them, a request before the call that reaped it)."""
        self.stats.records += len(ev)
        kinds = ev["kind"].tolist()
        cols = {
            n: ev[n].tolist()
            for n in [
                "ts_ns",
                "end_ns",
                "kdone_ns",
                "pid",
                "tid",
                "op",
                "fd",
                "ret",
                "size",
                "offset",
                "runq_ns",
                "flags",
                "user_data",
            ]
        }
        ts, end, kd = cols["ts_ns"], cols["end_ns"], cols["kdone_ns"]
        pid, tid, op, fd = cols["pid"], cols["tid"], cols["op"], cols["fd"]
        ret, size, off, runq = cols["ret"], cols["size"], cols["offset"], cols["runq_ns"]
        flags, ud = cols["flags"], cols["user_data"]
        syscall, off_cpu, request, lost = self.syscall, self.off_cpu, self.request, self.lost
        threads, kinds_of, out, buf = self.threads, self.call_kinds, self.out, self.out.buf
        ann_fd, ann_ret = _ANN_FD, _ANN_RET
        var, big = _VAR, varint
        for i, k in enumerate(kinds):
            if k == 1:
                # The common case inline (a thread's next call, nothing held, the
                # previous call closed by this one): two packets, no function calls.
                t, e = ts[i], end[i]
                th = threads.get(tid[i])
                ck = kinds_of.get(op[i])
                if (
                    th is None
                    or ck is None
                    or th.held
                    or ck[2]
                    or len(th.stack) > 1
                    or t < (last := th.seq.last)
                    or e < t
                    or t <= 0
                    or (th.stack and th.stack[0] > t)
                    or last < 0
                ):
                    syscall((t, e, pid[i], tid[i], op[i], fd[i], ret[i], size[i], off[i]), False)
                    if len(buf) >= BATCH_BYTES:
                        out.flush()
                    continue
                f, r = fd[i], ret[i]
                te = ck[0]
                if f >= 0:
                    te += ann_fd.get(f) or _annotation("fd", f)
                te += ann_ret.get(r) or _annotation("ret", r)
                if ck[3] and th.reaps:
                    keep: list[tuple[int, int]] = []
                    for rt, fl in th.reaps:
                        if rt > e:
                            keep.append((rt, fl))
                        elif rt >= t:
                            te += b"\x81\x03" + fl.to_bytes(8, "little")
                    th.reaps = keep
                seq = th.seq
                tail = seq.tail
                if th.stack:
                    p = th.stack[0]
                    d = p - last
                    body = b"\x40" + (var[d] if d < 0x4000 else big(d)) + b"\x5a\x02\x48\x02" + tail
                    buf += b"\x0a" + var[len(body)] + body
                    last = p
                    th.stack[0] = e
                else:
                    th.stack.append(e)
                d = t - last
                body = (
                    b"\x40"
                    + (var[d] if d < 0x4000 else big(d))
                    + b"\x5a"
                    + var[len(te)]
                    + te
                    + tail
                )
                n = len(body)
                buf += b"\x0a" + (var[n] if n < 0x4000 else big(n)) + body
                seq.last = t
                out.packets += 2
                if len(buf) >= BATCH_BYTES:
                    out.flush()
            elif k == 4:
                off_cpu((ts[i], end[i], pid[i], tid[i], op[i], runq[i]))
            elif k in ASYNC_APIS:
                request(
                    (
                        ts[i], end[i], kd[i], pid[i], tid[i], op[i], fd[i],
                        size[i], off[i], ret[i], flags[i], ud[i],
                    ),
                    k,
                )  # fmt: skip
            elif k == SYSCALL_RUN:
                syscall(
                    (ts[i], end[i], pid[i], tid[i], op[i], fd[i], ret[i], size[i], off[i]), True
                )
            elif k == 6:
                lost((ts[i], end[i], size[i], op[i]))
        for g in self.groups.values():
            if g.heap:
                self.drain(g, g.newest - REORDER_NS)

    def finish(self) -> None:
        for g in self.groups.values():
            self.drain(g, None)
        for th in self.threads.values():
            if th.held:
                held, th.held = th.held, []
                self._place(th, held)
            while th.stack:
                self.emit(th.seq, th.stack.pop(), _END)
        if self.lost_seq is not None:
            while self.lost_stack:
                self.emit(self.lost_seq, self.lost_stack.pop(), _END)
        self.out.flush()


def off_cpu_reason(op: int, off_ns: int, runq_ns: int) -> str:
    """What an off-CPU interval was: the syscall the thread slept in, "preempted"
    (runnable the whole time, outside a traced call) or "untraced" (asleep outside
    the traced calls: a page fault, futex, nanosleep...)."""
    sc = events.SYSCALL_BY_OP.get(op) if op else None
    if sc is not None:
        return sc.name
    if op:
        return f"syscall {op}"
    return "preempted" if off_ns > 0 and runq_ns >= off_ns else "untraced"


def write(path: Path, out: IO[bytes], *, compress: bool = True) -> tuple[Written, str]:
    """Stream the trace at `path` into `out` as a Perfetto trace. Returns what was
    written and the damage note ("" when the file was read to its end)."""
    from iotrace.export import scan_identity

    stream = session.TraceStream(path)
    ident = scan_identity(Path(path), stream.meta)
    o = _Out(out, compress=compress)
    w = _Writer(o, stream.meta, ident)
    for chunk in stream.events():
        w.feed(chunk)
    w.finish()
    w.stats.packets = o.packets
    w.stats.bytes = o.bytes
    notes = [stream.damage] if stream.damage else []
    notes += [f"skipped a chunk of a newer trace format ({t})" for t in stream.skipped]
    return w.stats, "; ".join(notes)
