"""`iotrace diff`: the arithmetic on fixture traces with known figures, the
pairing of processes, and one-line errors for bad input."""

from __future__ import annotations

import json

import pytest
import report_fixtures as fx
from report_fixtures import MS, T0, US, TraceBuilder

from iotrace import analysis, diff, report
from iotrace.cli import main
from iotrace.events import TaskOp


def test_change_is_b_minus_a_and_relative_to_a():
    assert diff.change(10, 15) == {"a": 10, "b": 15, "change": 5, "relative": 0.5}
    assert diff.change(8, 2) == {"a": 8, "b": 2, "change": -6, "relative": -0.75}
    assert diff.change(0, 3)["relative"] is None  # nothing to be relative to
    assert diff.change(None, 3) == {"a": None, "b": 3, "change": None, "relative": None}
    assert diff._fmt_change(diff.change(0, 3), "") == ("+3", "new")
    assert diff._fmt_change(diff.change(0.25, 0.5), "%") == ("+25.0 pp", "+100.0%")


@pytest.fixture
def depths(tmp_path):
    """The same libaio workload at depth 4 and at depth 8, 7 batches each."""
    paths = []
    for depth in (4, 8):
        b = TraceBuilder()
        fx.libaio(b, depth=depth)
        paths.append(b.write(tmp_path / f"qd{depth}.trace"))
    return paths


def test_a_deeper_queue_shows_as_more_requests_in_flight_and_fewer_calls_each(depths):
    a, b = (analysis.analyze_file(p) for p in depths)
    doc = diff.diff_json(a, b)
    assert doc["schema"] == "iotrace.diff/1"
    [g] = doc["groups"]
    assert (g["kind"], g["name"], g["in"]) == ("workload", "libaio", "both")
    assert g["model"] == {
        "a": "async-nonblocking (libaio)",
        "b": "async-nonblocking (libaio)",
        "changed": False,
    }
    m = g["metrics"]
    assert m["requests"] == {"a": 28, "b": 56, "change": 28, "relative": 1.0}
    assert m["calls"] == {"a": 14, "b": 14, "change": 0, "relative": 0.0}
    assert m["in_flight_max"] == {"a": 4, "b": 8, "change": 4, "relative": 1.0}
    assert m["syscalls_per_request"] == {"a": 0.5, "b": 0.25, "change": -0.25, "relative": -0.5}
    calls = {row["syscall"]: row["calls"] for row in g["syscalls"]}
    assert calls["io_submit"]["change"] == 0 and g["syscalls"][0]["family"] == "aio"
    assert g["families"]["aio"] == {"a": 14, "b": 14, "change": 0, "relative": 0.0}


def test_every_figure_is_the_one_report_shows_for_that_trace(depths):
    """diff subtracts report's figures; it never derives its own."""
    a, b = (analysis.analyze_file(p) for p in depths)
    g = diff.diff_json(a, b)["groups"][0]
    for side, an in (("a", a), ("b", b)):
        proc = report.report_json(an)["processes"][0]
        m = g["metrics"]
        assert m["latency_p99_us"][side] == proc["requests"]["latency_us"]["p99"]
        assert m["blocked_io"][side] == proc["time_share"]["blocked_io"]
        assert m["cpu_us_per_request"][side] == proc["requests"]["cpu_us_per_request"]
        for row in g["syscalls"]:
            per = proc["per_syscall"][row["syscall"]]
            assert row["p50_us"][side] == per["latency_us"]["p50"]
            assert row["calls"][side] == per["calls"]


def _dd(b: TraceBuilder, pid: int, reads: int, dur: int, t: int = T0) -> None:
    b.task(pid, pid, TaskOp.FORK, "dd", t, parent=1)
    for i in range(reads):
        t = b.syscall(pid, pid, "read", t, dur, ret=4096, fd=0, offset=i) + 5 * US


def test_processes_of_one_name_are_summed_and_the_unpaired_are_said(tmp_path):
    one = TraceBuilder()
    _dd(one, 100, reads=10, dur=10 * US)
    pa = one.write(tmp_path / "a.trace")
    two = TraceBuilder()
    _dd(two, 200, reads=10, dur=10 * US)
    _dd(two, 201, reads=30, dur=1 * MS)
    fx.sync_blocking(two, pid=300)
    pb = two.write(tmp_path / "b.trace")
    doc = diff.diff_json(analysis.analyze_file(pa), analysis.analyze_file(pb))
    by = {(g["kind"], g["name"]): g for g in doc["groups"]}
    dd = by[("process", "dd")]
    assert dd["pids"] == {"a": [100], "b": [200, 201]}
    assert dd["metrics"]["calls"] == {"a": 10, "b": 40, "change": 30, "relative": 3.0}
    # percentiles over both processes' calls: 30 of the 40 took 1 ms
    read = next(r for r in dd["syscalls"] if r["syscall"] == "read")
    assert read["p50_us"]["a"] == pytest.approx(10.0)
    assert read["p50_us"]["b"] == pytest.approx(1000.0)
    only_b = by[("workload", "sync-blocking")]
    assert only_b["in"] == "b" and only_b["metrics"]["calls"]["a"] is None
    assert only_b["metrics"]["calls"]["b"] == 23 + 29
    text = diff.render_text(doc)
    assert "workload sync-blocking  (only in B)" in text
    assert max(len(line) for line in text.splitlines()) < 80


def test_cli_text_and_json(depths, capsys):
    assert main(["diff", str(depths[0]), str(depths[1])]) == 0
    out = capsys.readouterr().out
    assert "workload libaio" in out
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("requests"))
    assert line.split() == ["requests", "28", "56", "+28", "+100.0%"]
    assert main(["diff", "--json", str(depths[0]), str(depths[1])]) == 0
    assert json.loads(capsys.readouterr().out)["groups"][0]["name"] == "libaio"


def test_bad_input_is_one_line_and_a_non_zero_exit(tmp_path, depths, capsys):
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"not a trace at all")
    cut = tmp_path / "cut.trace"
    cut.write_bytes(depths[0].read_bytes()[:-40])
    for args, says in (
        ([str(tmp_path / "missing.trace"), str(depths[1])], "no such trace file"),
        ([str(junk), str(depths[1])], "not an iotrace trace file"),
        ([str(depths[0]), str(cut)], "B (" + str(cut) + ") is damaged"),
        ([str(depths[0])], "the following arguments are required"),
    ):
        assert main(["diff", *args]) != 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
