"""`sudo iotrace run --overhead`: each workload untraced, then traced, compared.

Also guards two ways a workload's own result used to be lost: released while a
thread of its (numpy's) had the release signal unblocked (killed by SIGUSR1),
and stopped by iotrace at the very instant -d ended its own runtime.
"""

from __future__ import annotations

import json

import pytest
from e2e_util import iotrace, needs_root

from iotrace import events, session

pytestmark = [pytest.mark.e2e, needs_root]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("overhead") / "ov.trace"
    proc = iotrace(
        "run", "libaio", "sync-blocking", "--no-tui", "--overhead", "-d", "2", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return session.load(out), proc


def test_both_runs_of_every_workload_report_their_own_figures(run):
    t, _ = run
    untraced = t.meta["overhead_untraced"]
    for name in ("libaio", "sync-blocking"):
        assert untraced[name]["ops"] > 0, untraced[name]
        assert t.footer["results"][name]["ops"] > 0, t.footer["results"][name]
        assert untraced[name]["verified"] and t.footer["results"][name]["verified"]


def test_footer_compares_them_with_the_records_of_each_workload(run):
    t, _ = run
    ov = t.footer["overhead"]
    for name, row in ov["workloads"].items():
        pid = t.footer["results"][name]["pid"]
        assert row["events"] == int((t.events["pid"] == pid).sum()) > 0
        assert row["traced"]["ops"] == t.footer["results"][name]["ops"]
        assert row["untraced"]["ops"] == t.meta["overhead_untraced"][name]["ops"]
        u, tr = row["untraced"]["iops"], row["traced"]["iops"]
        assert row["slowdown"] == pytest.approx(u / tr - 1)
    assert set(ov["workloads"]) == {"libaio", "sync-blocking"}
    # Every Linux AIO request traced was one the workload counted.
    reqs = t.events[(t.events["kind"] == events.Kind.AIO_REQUEST)]
    assert len(reqs) >= t.footer["results"]["libaio"]["ops"]
    assert ov["events"] == len(t.events)
    assert ov["drain_ns_per_event"] > 0


def test_summary_prints_the_overhead_table(run):
    _, proc = run
    out = proc.stderr
    assert "OVERHEAD (untraced run, then traced" in out
    table = out[out.index("OVERHEAD") : out.index("trace saved:")]
    assert "\nlibaio " in table and "\nsync-blocking " in table
    assert "iotrace's drain:" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "running libaio, sync-blocking untraced first" in proc.stderr


def test_report_shows_the_overhead_again(run):
    t, proc = run
    text = iotrace("report", str(t.path))
    assert text.returncode == 0, text.stderr
    # up to the per-file table, which the end-of-run summary leaves out
    table = text.stdout[text.stdout.index("OVERHEAD") :].split("\nFILES ")[0]
    assert table.strip() in proc.stderr
    doc = json.loads(iotrace("report", "--json", str(t.path)).stdout)
    assert doc["overhead"] == t.footer["overhead"]
