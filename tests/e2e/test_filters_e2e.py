"""Record-time filters on real probes: `-e trace=SET` keeps exactly the calls
asked for; `--min-latency` records only the slow ones and counts the rest.

progs/families.c makes a known prime number of calls of every family, so what
a filter kept (and counted) can be checked call for call."""

from __future__ import annotations

import json

import numpy as np
import pytest
from e2e_util import compile_prog, count_by, iotrace, needs_root, syscalls

from iotrace import events, filters, session

pytestmark = [pytest.mark.e2e, needs_root]

SET = "trace=%write,recvfrom,%aio"


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    d = tmp_path_factory.mktemp("filters")
    return d, compile_prog("families", d, "-luring")


def _trace(families, name: str, *opts: str):
    d, exe = families
    out = d / f"{name}.trace"
    proc = iotrace("trace", "--no-tui", "-o", str(out), *opts, "--", str(exe), str(d / "data"))
    assert proc.returncode == 0, proc.stderr
    fds = json.loads(proc.stdout.splitlines()[0])
    return session.load(out), fds, proc


@pytest.fixture(scope="module")
def selected(families):
    return _trace(families, "selected", "-e", SET)


@pytest.fixture(scope="module")
def slow_only(families):
    # with -e too: the two combine, and fewer probes load faster
    return _trace(families, "slow", "--min-latency", "20us", "-e", "trace=%write,%send")


def test_e_trace_keeps_exactly_the_calls_asked_for(selected):
    t, fds, proc = selected
    wanted = filters.parse_trace([SET])
    assert wanted is not None
    names = {events.SYSCALL_BY_OP[int(op)].name for op in syscalls(t)["op"]}
    assert names <= wanted and {"pwrite64", "recvfrom", "io_submit"} <= names
    c = count_by(t)
    assert c[("pwrite64", fds["file"])] == 37
    assert c[("pwritev", fds["file"])] == 17
    assert c[("writev", fds["pipe_w"])] == 11
    assert c[("recvfrom", fds["sock1"])] == 7
    assert not [k for k in c if k[0] in ("read", "pread64", "sendto", "poll", "io_uring_enter")]
    kinds = set(t.events["kind"].tolist())
    assert events.Kind.AIO_REQUEST in kinds  # io_submit + io_getevents: requests followed
    assert events.Kind.URING_REQUEST not in kinds  # %uring was not asked for
    assert events.Kind.OFF_CPU in kinds and events.Kind.TASK in kinds  # kept regardless
    assert t.meta["filter"]["trace"] == SET
    assert "read" in t.meta["filter"]["left_out"]
    assert "filter -e trace=%write,recvfrom,%aio: recorded only" in proc.stderr


def test_min_latency_records_the_slow_calls_and_counts_every_other(slow_only):
    t, fds, proc = slow_only
    sc = syscalls(t)
    # how many calls were slower is the machine's doing; that none faster was kept is not
    assert ((sc["end_ns"] - sc["ts_ns"]) >= 20_000).all()
    below = {(b.pid, b.syscall): b.calls for b in filters.below_counts(t.stats)}
    assert below  # families makes plenty of calls faster than 20 us
    pid = int(t.meta["targets"][0]["pids"][0])
    c = count_by(t)
    for name, fd, n in (("pwrite64", "file", 37), ("pwritev", "file", 17), ("sendto", "sock0", 7)):
        assert c[(name, fds[fd])] + below.get((pid, name), 0) == n, name
    assert t.meta["filter"]["min_latency_ns"] == 20_000
    rep = iotrace("report", "--json", str(t.path))
    doc = json.loads(rep.stdout)
    assert doc["filter"]["below_min_latency_calls"] == sum(below.values())
    assert "calls faster than 20us counted, not recorded" in proc.stderr
    # runs (if any folded) hold only calls at least that slow
    e = t.events[t.events["kind"] == events.Kind.SYSCALL_RUN]
    assert (np.asarray(e["key"] & 0xFFFFFFFF) >= 20_000).all()
