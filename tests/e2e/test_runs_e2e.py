"""Storms folded in the kernel into run records: every call still counted exactly.

Real probes on real calls: a C program makes a known, prime number of calls
and the trace must account for each one, either as a record of its own or
inside a run record that counts it, with nothing lost."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_util import compile_prog, iotrace, needs_root, of

from iotrace import events, session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def storm(tmp_path_factory):
    return compile_prog("storm", tmp_path_factory.mktemp("storm"), "-pthread")


def _trace(tmp_path, *argv):
    out = tmp_path / "t.trace"
    r = iotrace("trace", "--no-tui", "-o", str(out), "--", *map(str, argv), timeout=300)
    assert r.returncode == 0, r.stderr
    return session.load(out), r


def _lost(trace):
    ev = trace.events
    return int(ev["size"][ev["kind"] == events.Kind.LOST].sum())


def test_a_million_and_three_eagain_reads_are_counted_exactly_in_few_records(storm, tmp_path):
    trace, r = _trace(tmp_path, storm, "eagain", 1_000_003)
    assert "eagain 1000003 write 1 read 1" in r.stdout
    reads = of(trace, "read")
    assert int(np.count_nonzero(reads["ret"] == -events.EAGAIN)) == 1_000_003
    assert int(np.count_nonzero(reads["ret"] == 1)) == 1
    assert _lost(trace) == 0
    # folded: about one record per RUN_MAX_CALLS retries (a run also ends when the
    # thread is switched out, which a busy machine does more often)
    run_recs = trace.events[trace.events["kind"] == events.Kind.SYSCALL_RUN]
    assert len(run_recs) <= 2 * (1_000_003 // events.RUN_MAX_CALLS) + 50
    assert len(trace.events) < 10_000
    # the report counts them as calls, and says they were folded
    rep = iotrace("report", "--json", str(tmp_path / "t.trace"))
    assert rep.returncode == 0, rep.stderr
    doc = json.loads(rep.stdout)
    assert doc["trace"]["calls_from_runs"] >= 1_000_003 - 2 * events.RUN_MAX_CALLS
    # an export counts them too: `calls` per row, one row per run
    out = tmp_path / "t.jsonl"
    exp = iotrace("export", str(tmp_path / "t.trace"), "--format", "jsonl", "-o", str(out))
    assert exp.returncode == 0, exp.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    eagain = [r for r in rows if r["name"] == "read" and r["error"] == "EAGAIN"]
    assert sum(r["calls"] for r in eagain) == 1_000_003
    assert {r["kind"] for r in eagain} == {"syscall", "syscall_run"}


def test_empty_polls_fold_and_count_exactly(storm, tmp_path):
    trace, r = _trace(tmp_path, storm, "poll", 200_003)
    assert "empty 200003" in r.stdout
    polls = of(trace, "poll")
    assert len(polls) == 200_003 and (polls["ret"] == 0).all()
    assert len(trace.events) < 5_000


@pytest.mark.parametrize("threads", [1, 2])
def test_a_storm_of_two_million_reads_per_thread_is_counted_exactly(storm, tmp_path, threads):
    trace, r = _trace(tmp_path, storm, "zero", 2_000_000, threads)
    assert f"reads {2_000_000 * threads}" in r.stdout
    reads = of(trace, "read")
    zero_reads = reads[reads["ret"] == 1]
    assert len(zero_reads) == 2_000_000 * threads
    assert _lost(trace) == 0
