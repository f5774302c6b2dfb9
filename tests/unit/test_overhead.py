"""`run --overhead` figures from the workloads' own results (no probes needed)."""

import pytest

from iotrace import overhead


def _res(ops: int, iops: float, cpu_s: float, pid: int = 0) -> dict:
    return {"ops": ops, "iops": iops, "cpu_s": cpu_s, "pid": pid, "lat_us": {"p50": 80.0}}


def test_slowdown_and_the_workloads_extra_cpu_per_record():
    untraced = {"libaio": _res(100_000, 50_000.0, 1.0)}
    traced = {"libaio": _res(90_000, 45_000.0, 1.08, pid=42)}
    ov = overhead.compare(untraced, traced, {42: 200_000}, drain_cpu_s=0.5, events_total=250_000)
    row = ov["workloads"]["libaio"]
    assert row["slowdown"] == pytest.approx(50_000 / 45_000 - 1)
    # 10 us/op untraced, 12 us/op traced: 2 us x 90,000 ops over 200,000 records
    assert row["added_cpu_ns_per_event"] == pytest.approx(900.0)
    assert ov["drain_ns_per_event"] == pytest.approx(2000.0)
    assert row["events"] == 200_000


def test_a_workload_missing_from_either_run_is_left_out_not_invented():
    untraced = {"a": _res(10, 10.0, 0.1), "b": {"error": "left no result"}}
    traced = {"a": {"error": "unavailable"}, "b": _res(10, 10.0, 0.1), "c": _res(1, 1.0, 0.1)}
    ov = overhead.compare(untraced, traced, {}, drain_cpu_s=0.0, events_total=0)
    assert ov["workloads"] == {}
    assert ov["drain_ns_per_event"] is None
    assert "(no workload finished both runs)" in overhead.render(ov)


def test_the_table_fits_80_columns_and_names_every_workload():
    untraced = {"sync-nonblocking": _res(1_000_000, 999_999.0, 3.0)}
    traced = {"sync-nonblocking": _res(900_000, 899_999.0, 3.5, pid=7)}
    ov = overhead.compare(untraced, traced, {7: 12_345_678}, drain_cpu_s=9.9, events_total=9**8)
    text = overhead.render(ov)
    assert max(map(len, text.splitlines())) <= 80
    assert "sync-nonblocking" in text and "12,345,678" in text and "+11.1%" in text
