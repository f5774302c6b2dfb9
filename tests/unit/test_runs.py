"""Run records (storms folded in the kernel) read back as their calls."""

import numpy as np
import pytest

from iotrace import events, runs
from iotrace.events import Flag, Kind
from iotrace.session import EVENT_DTYPE


def _run(ts, end, count, sum_dur, lo, hi, hist, base, ret=-11, size=1, tid=7, op=1, fd=3):
    r = np.zeros(1, dtype=EVENT_DTYPE)
    r["ts_ns"], r["end_ns"], r["kdone_ns"] = ts, end, sum_dur
    r["offset"], r["ret"], r["size"] = count, ret, size
    r["key"] = lo | (hi << 32)
    r["user_data"] = int.from_bytes(bytes(hist), "little")
    r["flags"] = base << events.RUN_BASE_SHIFT
    r["kind"], r["op"], r["fd"], r["pid"], r["tid"] = Kind.SYSCALL_RUN, op, fd, 5, tid
    return r


def _call(ts, end, ret=100, tid=7):
    c = np.zeros(1, dtype=EVENT_DTYPE)
    c["ts_ns"], c["end_ns"], c["ret"], c["kind"], c["op"], c["fd"] = ts, end, ret, 1, 1, 3
    c["pid"], c["tid"] = 5, tid
    return c


def test_a_run_expands_to_its_calls_in_its_span_with_exact_count_and_bytes():
    # 5 reads that returned 10 bytes each: 2 in bucket 1 (2^9..2^10 ns), 3 in bucket 2
    r = _run(1_000, 11_000, 5, 4_000, 600, 1_100, [0, 2, 3, 0, 0, 0, 0, 0], 8, ret=50, size=80)
    ev = np.concatenate([_call(10, 900), r, _call(12_000, 12_500)])
    out = np.concatenate(list(runs.expand(ev)))
    assert len(out) == 7
    calls = out[1:6]
    assert (calls["kind"] == Kind.SYSCALL).all()
    assert (calls["flags"] & Flag.FROM_RUN).all()
    assert calls["ts_ns"][0] == 1_000 and calls["end_ns"][-1] == 11_000
    assert (np.diff(calls["ts_ns"].astype(np.int64)) > 0).all()
    assert (calls["end_ns"] >= calls["ts_ns"]).all()
    assert calls["ret"].sum() == 50 and calls["size"].sum() == 80
    d = (calls["end_ns"] - calls["ts_ns"]).astype(np.int64)
    assert d.min() == 600 and d.max() == 1_100
    assert out[0]["end_ns"] == 900 and out[6]["ts_ns"] == 12_000  # neighbours untouched


def test_errno_runs_keep_the_errno_on_every_call():
    r = _run(0, 2_000_000, 255, 255 * 500, 400, 700, [0, 0, 255, 0, 0, 0, 0, 0], 6)
    out = np.concatenate(list(runs.expand(r)))
    assert len(out) == 255 and (out["ret"] == -events.EAGAIN).all()
    assert runs.calls_in(r) == 255


def test_expand_hands_out_bounded_pieces_in_order():
    many = np.concatenate(
        [_run(i * 10_000, i * 10_000 + 9_000, 255, 255 * 30, 20, 40, [255] + [0] * 7, 4)
         for i in range(40)]
    )  # fmt: skip
    pieces = list(runs.expand(many, max_rows=1_000))
    assert all(len(p) <= 1_000 for p in pieces)
    out = np.concatenate(pieces)
    assert len(out) == 40 * 255
    assert (np.diff(out["ts_ns"].astype(np.int64)) >= 0).all()


@pytest.mark.parametrize("count", [0, 10**9])
def test_a_damaged_run_count_is_bounded_and_a_bad_histogram_ignored(count):
    r = _run(0, 1_000, count, 500, 10, 20, [9, 9, 9, 9, 9, 9, 9, 9], 3)
    out = np.concatenate(list(runs.expand(r)))
    assert 1 <= len(out) <= events.RUN_MAX_CALLS
    assert (out["end_ns"] >= out["ts_ns"]).all()
