"""`iotrace diff` of two real runs of the libaio workload, at depth 1 and 16:
the change the depth makes is what the diff shows."""

from __future__ import annotations

import json

import pytest
from e2e_util import iotrace, needs_root

pytestmark = [pytest.mark.e2e, needs_root]

IOS = "601"


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("diff")
    out = []
    for depth, batch in (("1", "1"), ("16", "2")):
        path = d / f"qd{depth}.trace"
        proc = iotrace(
            # -e: only what the diff looks at; half the probes load in half the time
            "run", "libaio", "--no-tui", "-q", "-o", str(path), "-e", "trace=%aio", "--",
            "--iodepth", depth, "--iodepth-batch-submit", batch,
            "--number-ios", IOS, "--filesize", "8m", "--directory", str(d),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out.append(path)
    return out


def test_diff_of_two_depths_shows_the_change(traces):
    proc = iotrace("diff", "--json", *map(str, traces))
    assert proc.returncode == 0, proc.stderr
    g = next(g for g in json.loads(proc.stdout)["groups"] if g["name"] == "libaio")
    m = g["metrics"]
    assert m["requests"]["a"] == m["requests"]["b"] == int(IOS)
    assert m["in_flight_max"]["a"] == 1 and 1 < m["in_flight_max"]["b"] <= 16
    assert m["in_flight_mean"]["change"] > 0
    # depth 1, one iocb per io_submit and one io_getevents each: 2 calls per request
    assert m["syscalls_per_request"]["a"] == pytest.approx(2.0, abs=0.01)
    assert m["syscalls_per_request"]["change"] < 0
    submit = next(r for r in g["syscalls"] if r["syscall"] == "io_submit")
    assert submit["calls"]["a"] == int(IOS) and submit["calls"]["b"] < int(IOS)
    assert g["model"]["a"] == g["model"]["b"] == "async-nonblocking (libaio)"
    text = iotrace("diff", *map(str, traces))
    assert text.returncode == 0 and "workload libaio" in text.stdout
    assert "recorded with -e trace=%aio: figures cover those calls only" in text.stdout
    assert max(len(line) for line in text.stdout.splitlines()) < 80
