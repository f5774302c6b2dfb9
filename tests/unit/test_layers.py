"""The architecture, held by tests: bcc lives in one module; view, report and
export never load it; the tracer and workloads never reach into the TUI."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE_DIRS = {"iotrace": "iotrace", "tracer": "tracer", "tui": "tui", "workloads": "workloads"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_bcc_is_imported_by_exactly_one_module():
    importers = [
        p.relative_to(ROOT).as_posix()
        for d in PACKAGE_DIRS.values()
        for p in _sources(d)
        if any(n == "bcc" or n.startswith("bcc.") for n in _imports(p))
    ]
    assert importers == ["tracer/bcc_source.py"]


@pytest.mark.parametrize("folder", ["tracer", "workloads", "iotrace"])
def test_lower_layers_never_import_the_tui(folder):
    bad = [
        p.relative_to(ROOT).as_posix()
        for p in _sources(folder)
        if any(n.startswith("iotrace.tui") for n in _imports(p))
        and p.name not in ("cli.py", "recording.py")  # the CLI boundary starts the dashboard
    ]
    assert bad == []


@pytest.mark.parametrize(
    "module",
    ["iotrace.report", "iotrace.diff", "iotrace.export", "iotrace.tui.view", "iotrace.tui.app"],
)
def test_view_report_export_do_not_load_bcc(module):
    code = f"import sys, {module}; print('bcc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_events_schema_is_standard_library_only():
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    names = {n.split(".")[0] for n in _imports(ROOT / "iotrace" / "events.py")}
    assert names <= stdlib
