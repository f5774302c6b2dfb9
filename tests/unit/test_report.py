"""`iotrace report`: the table, the JSON document, the HTML page and the failures
a user meets (missing file, damaged file, existing or symlinked --html target)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from report_fixtures import MS, TraceBuilder, sync_blocking, write_all

from iotrace import analysis, report, session
from iotrace.cli import main
from iotrace.errors import EXIT_DATA, EXIT_IO
from iotrace.events import PROBE_SCHED, TaskOp


@pytest.fixture(scope="module")
def trace_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_all(tmp_path_factory.mktemp("rep"))


def test_table_fits_80_columns_with_units_in_headers(trace_path: Path) -> None:
    text = report.summary_text(session.load(trace_path))
    assert max(len(line) for line in text.splitlines()) < 80
    assert "LAT p50(us)" in text and "p99(us)" in text and "BLOCK%" in text and "MiB" in text
    assert "lost events: 0" in text
    for model in ("sync-blocking", "sync-nonblocking", "async-blocking", "async-nonblocking"):
        assert model in text


def test_table_row_holds_calls_requests_latency_and_blocked_share(trace_path: Path) -> None:
    text = report.summary_text(session.load(trace_path))
    (row,) = [line for line in text.splitlines() if line.startswith("100 ")]
    cols = row.split()
    # PID COMM CALLS REQS MiB p50 p99 BLOCK%
    assert cols[:4] == ["100", "sync-blocking", "52", "52"]
    assert cols[5:7] == ["48.0", "20,000"]
    assert float(cols[7]) > 95


def test_lost_events_are_never_silent(tmp_path: Path) -> None:
    b = TraceBuilder()
    t = sync_blocking(b, pipe_reads=3, preads=2)
    b.lost(t + MS, t + 2 * MS, 1234, PROBE_SCHED)
    path = b.write(tmp_path / "lost.trace", stats={"lost": {"sched": 1234}})
    text = report.summary_text(session.load(path))
    at = text.index("LOST EVENTS")
    notice = " ".join(ln.strip() for ln in text[at:].split("\n\n")[0].splitlines())
    assert notice.startswith("LOST EVENTS: 1,234 (sched 1,234) in 1 range(s) between +")
    assert max(len(ln) for ln in text.splitlines()) < 80
    doc = report.report_json(analysis.analyze(session.load(path)))
    assert doc["lost_events"] == 1234
    assert doc["lost_ranges"][0]["count"] == 1234


def test_cut_short_trace_is_reported_not_refused(tmp_path: Path, capsys) -> None:
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=5, preads=0)
    path = b.write(tmp_path / "cut.trace", close=False)
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "CUT SHORT" in out and "NOTE: the trace was cut short" in out
    assert main(["report", "--json", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["trace"]["complete"] is False
    assert doc["processes"][0]["requests"]["count"] == 5


def test_json_schema_has_the_documented_fields(trace_path: Path, capsys) -> None:
    assert main(["report", "--json", str(trace_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "iotrace.report/1"
    assert doc["lost_events"] == 0
    for p in doc["processes"]:
        assert {"pid", "comm", "model", "api", "evidence", "syscalls", "requests"} <= set(p)
        assert {"count", "latency_us"} <= set(p["requests"])
        assert set(p["requests"]["latency_us"]) == {"p50", "p90", "p99", "max"}
    by = {p["pid"]: p for p in doc["processes"]}
    assert by[100]["syscalls"] == {"pread64": 29, "read": 23}
    assert by[100]["requests"]["latency_us"]["max"] == 20000.0
    assert by[400]["model"] == "async-nonblocking" and by[400]["api"] == "libaio"
    assert [w["workload"] for w in doc["workloads"]] == sorted(
        w["workload"] for w in doc["workloads"]
    )


def test_report_and_json_agree(trace_path: Path, capsys) -> None:
    """Round trip: the table and the JSON show the same figures."""
    main(["report", "--json", str(trace_path)])
    doc = json.loads(capsys.readouterr().out)
    main(["report", str(trace_path)])
    text = capsys.readouterr().out
    for p in doc["processes"]:
        (row,) = [ln for ln in text.splitlines() if ln.startswith(f"{p['pid']} ")]
        assert row.split()[3] == f"{p['requests']['count']:,}"
        assert row.split()[5] == report.fmt_us(p["requests"]["latency_us"]["p50"])


def test_missing_and_damaged_files_give_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope.trace")]) == EXIT_DATA
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such trace file" in err
    bad = tmp_path / "bad.trace"
    bad.write_bytes(b"not a trace at all")
    assert main(["report", str(bad)]) == EXIT_DATA
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an iotrace trace file" in err


def test_html_is_offline_and_has_every_section(trace_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    assert main(["report", str(trace_path), "--html", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    # The drawing code is inline, exactly once, and nothing is fetched from the network.
    assert page.count("iotrace report: draws the figure specs") == 1
    assert "<script src=" not in page and "<link " not in page and "http" not in page
    assert len(page) < 200_000
    for section in (
        "Scoreboard",
        "Where the time went",
        "Timeline",
        "Latency distribution",
        "In flight",
    ):
        assert f"<h2>{section}</h2>" in page
    from iotrace.html_report import figure_count

    assert figure_count(page) == 3  # the time shares are HTML bars
    assert page.count('<div class="bar">') >= 5
    assert "HTML report written to" in capsys.readouterr().out


def test_html_never_clobbers_or_follows_symlinks(trace_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.html"
    out.write_text("keep me")
    assert main(["report", str(trace_path), "--html", str(out)]) == EXIT_IO
    assert out.read_text() == "keep me"
    assert "already exists" in capsys.readouterr().err
    assert main(["report", str(trace_path), "--html", str(out), "--force"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    target = tmp_path / "victim"
    target.write_text("precious")
    link = tmp_path / "link.html"
    os.symlink(target, link)
    assert main(["report", str(trace_path), "--html", str(link), "--force"]) == EXIT_IO
    assert target.read_text() == "precious"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "symbolic link" in err
    assert main(["report", str(trace_path), "--html", str(tmp_path / "no/dir/r.html")]) == EXIT_IO


def test_narrow_widths_still_fit(tmp_path: Path) -> None:
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=2, preads=2)
    trace = session.load(b.write(tmp_path / "n.trace"))
    text = report.render_text(analysis.analyze(trace), width=60)
    assert max(len(line) for line in text.splitlines()) < 80


def test_tracer_counters_as_the_tracer_writes_them(tmp_path: Path) -> None:
    b = TraceBuilder()
    sync_blocking(b, pipe_reads=2, preads=0)
    stats = {
        "lost": {},
        "unmatched_exit": {"read": 3},
        "unmatched_enter": {"pread64": 1},
        "other": {"aio_map_full": 2},
        "lost_total": 0,
        "write_error": "",
    }
    a = analysis.analyze(session.load(b.write(tmp_path / "c.trace", stats=stats)))
    assert a.unmatched == {"read exit without enter": 3, "pread64 enter without exit": 1}
    assert a.evicted == {"aio_map_full": 2}
    text = report.render_text(a)
    assert "unmatched: pread64 enter without exit 1, read exit without enter 3" in text
    assert "tracer counters: aio_map_full 2" in text


def test_a_trace_with_no_records_reports_and_exports(tmp_path: Path, capsys) -> None:
    path = TraceBuilder().write(tmp_path / "empty.trace")
    assert main(["report", str(path)]) == 0
    assert "no I/O system calls were recorded" in capsys.readouterr().out
    assert main(["report", str(path), "--json", "--html", str(tmp_path / "e.html")]) == 0
    assert json.loads(capsys.readouterr().out)["processes"] == []
    for fmt in ("parquet", "csv", "jsonl", "perfetto", "chrome-json"):
        assert main(["export", str(path), "--format", fmt, "-o", str(tmp_path / f"e.{fmt}")]) == 0


def test_a_traced_command_is_not_called_a_workload(tmp_path: Path) -> None:
    """`trace -- sh -c 'dd ...'`: the processes are the command's, named after
    it where their own name differs; 'workload' is for the built-in ones."""
    b = TraceBuilder()
    t = sync_blocking(b, pipe_reads=2, preads=2)
    b.task(200, 200, TaskOp.FORK, "sh", t, parent=1, workload="sh")
    b.task(201, 201, TaskOp.FORK, "dd", t, parent=200, workload="sh")
    for pid in (200, 201):
        b.syscall(pid, pid, "read", t + MS, 10_000, ret=512, fd=0)
    text = report.summary_text(session.load(b.write(tmp_path / "cmd.trace")))
    heads = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("= ")]
    assert any(h.startswith("= workload sync-blocking:") for h in heads), heads
    assert any(h.startswith("= of sh:") for h in heads), heads  # dd, a child of the command
    assert not any("workload sh" in h for h in heads), heads
