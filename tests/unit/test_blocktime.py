"""Charging block requests to the call in flight (iotrace.blocktime), on
hand-made records: which call gets a request, how overlapping requests add up,
what is counted as outside any call, and what a cache hit is."""

from __future__ import annotations

import numpy as np

from iotrace import blocktime, events
from iotrace.events import Kind
from iotrace.session import EVENT_DTYPE

READ = events.SYSCALL_BY_NAME["read"].op
PREAD = events.SYSCALL_BY_NAME["pread64"].op
EPOLL = events.SYSCALL_BY_NAME["epoll_wait"].op


def _rec(
    kind: Kind,
    ts: int,
    end: int,
    *,
    op: int = 0,
    tid: int = 10,
    fd: int = 3,
    size: int = 0,
    kdone: int = 0,
    pid: int = 10,
) -> np.ndarray:
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["kind"], r["ts_ns"], r["end_ns"], r["op"] = int(kind), ts, end, op
    r["pid"], r["tid"], r["fd"], r["size"], r["kdone_ns"] = pid, tid, fd, size, kdone
    return r


def _stats(*recs: np.ndarray, traced: bool = True) -> dict[int, blocktime.BlockStats]:
    return blocktime.block_stats([np.concatenate(recs)], traced=traced)


def test_a_request_goes_to_the_call_in_flight_when_it_was_queued():
    st = _stats(
        _rec(Kind.SYSCALL, 1000, 2000, op=PREAD, fd=3),
        _rec(Kind.SYSCALL, 3000, 3100, op=READ, fd=4),  # from the page cache
        # queued (inserted) inside the pread, issued and completed after it began
        _rec(Kind.BLOCK, 1200, 1900, kdone=1100, size=4096, fd=254 << 20),
    )[10]
    (call,) = st.calls
    assert (call.name, call.fd, call.dur_ns, call.device_ns, call.requests) == (
        "pread64",
        3,
        1000,
        700,
        1,
    )
    assert st.data_calls == 2 and st.data_calls_with_io == 1
    assert st.cache_hit_share == 0.5
    assert st.device_in_calls_ns == 700 and st.device_share == 700 / 1100
    assert st.requests == 1 and st.bytes == 4096 and st.outside_calls == 0


def test_overlapping_requests_count_once_and_never_past_the_call():
    st = _stats(
        _rec(Kind.SYSCALL, 1000, 2000, op=READ),
        _rec(Kind.BLOCK, 1100, 1600),
        _rec(Kind.BLOCK, 1200, 1700),  # readahead: in flight with the first
        _rec(Kind.BLOCK, 1900, 2500),  # completes after the call returned
    )[10]
    assert st.calls[0].device_ns == (1700 - 1100) + (2000 - 1900)
    assert st.calls[0].requests == 3
    assert st.latency_us()["max"] == 0.6


def test_requests_outside_calls_or_of_other_threads_are_counted_not_charged():
    st = _stats(
        _rec(Kind.SYSCALL, 1000, 2000, op=READ, tid=10),
        _rec(Kind.BLOCK, 2500, 2600, tid=10),  # after the call
        _rec(Kind.BLOCK, 1500, 1600, tid=11),  # another thread, in no call
    )[10]
    assert st.outside_calls == 2 and not st.calls and st.cache_hit_share == 1.0


def test_io_queued_inside_a_non_data_call_is_not_in_the_data_call_figures():
    st = _stats(
        _rec(Kind.SYSCALL, 1000, 2000, op=EPOLL),
        _rec(Kind.BLOCK, 1100, 1200),
    )[10]
    assert st.outside_calls == 0 and not st.calls and st.data_calls == 0


def test_without_the_block_probes_no_request_is_no_cache_hit():
    call = _rec(Kind.SYSCALL, 1000, 2000, op=READ)
    assert _stats(call, traced=False) == {}
    assert _stats(call, traced=True)[10].cache_hit_share == 1.0
