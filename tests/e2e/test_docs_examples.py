"""The documented commands that need no root still run, against the small trace
`make docs` records (tools/make_docs.py): one recording shared by every example."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from e2e_util import iotrace, needs_root

pytestmark = [pytest.mark.e2e, needs_root]

ROOT = Path(__file__).resolve().parents[2]
# The same marker tools/make_docs.py fills (not imported: tools/ is not a package
# the type checker sees).
MARKER = re.compile(r"^<!-- example: (.+?) -->$", re.M)


def _documented() -> list[str]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return [c for f in files for c in MARKER.findall(f.read_text())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("docs")
    record = next(c for c in _documented() if "-o dd.trace" in c)
    argv = shlex.split(record)
    assert argv[:2] == ["sudo", "iotrace"]
    proc = iotrace(*argv[2:], cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work


NON_ROOT = [c for c in _documented() if c.startswith("iotrace ") and "|" not in c]


def test_docs_have_non_root_examples() -> None:
    assert any("dd.trace" in c for c in NON_ROOT)


@pytest.mark.parametrize("command", NON_ROOT)
def test_documented_command_runs(workdir: Path, command: str) -> None:
    proc = iotrace(*shlex.split(command)[1:], cwd=workdir)
    assert proc.returncode == 0, f"{command}: {proc.stderr}"
    assert (proc.stdout + proc.stderr).strip()
