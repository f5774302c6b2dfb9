"""`iotrace report --html` in a real browser: headless Chromium loads the page at
1280 px, the page's own check says whether it scrolls sideways and which
JavaScript errors it met, and the page stays small for a large trace."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from iotrace.tui import synthetic
from report_fixtures import MS, TraceBuilder, all_models

from iotrace.cli import main
from iotrace.events import PROBE_SCHED

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (./setup.sh installs it)"
)


def _render(page: Path, tmp_path: Path, width: int = 1280) -> tuple[dict[str, str], list[str]]:
    """The <html> element's data-* attributes after the scripts ran, and the
    console lines Chromium logged."""
    assert CHROMIUM is not None
    run = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", f"--window-size={width},2000",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    head = re.search(r"<html([^>]*)>", run.stdout)
    assert head, run.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z]+)="([^"]*)"', head.group(1)))
    console = [ln for ln in run.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    return attrs, console


def _trace(tmp_path: Path) -> Path:
    b = TraceBuilder()
    all_models(b)
    t = max(r.get("end_ns", 0) for r in b.rows)
    b.lost(t + MS, t + 2 * MS, 9, PROBE_SCHED)
    return b.write(tmp_path / "all.trace")


@needs_chromium
@pytest.mark.parametrize("width", [1280, 1000])
def test_page_draws_without_errors_or_a_sideways_scrollbar(tmp_path: Path, width: int) -> None:
    page = tmp_path / "r.html"
    assert main(["report", str(_trace(tmp_path)), "--html", str(page)]) == 0
    attrs, console = _render(page, tmp_path, width)
    assert attrs.get("errors") == "" and not console, (attrs, console)
    assert attrs.get("overflow") == "false"
    assert attrs.get("drawn") == "3"  # timeline, latency (one group here), in flight


@needs_chromium
def test_a_large_trace_gives_a_small_page_that_draws(tmp_path: Path) -> None:
    """~220 k records over 4 s: the page holds the longest segments, quantiles and
    bins, not the records, and stays well under the 1.5 MB budget."""
    path = synthetic.write_trace(tmp_path / "big.trace", synthetic.make_trace(4.0, threads=3))
    page = tmp_path / "big.html"
    assert main(["report", str(path), "--html", str(page)]) == 0
    assert page.stat().st_size < 1_500_000
    attrs, console = _render(page, tmp_path)
    assert attrs.get("errors") == "" and not console, (attrs, console)
    assert attrs.get("overflow") == "false"
