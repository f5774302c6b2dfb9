"""`iotrace view FILE`: the dashboard on a saved trace. No root, never imports bcc."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iotrace.errors import UsageError
from iotrace.source import ReplaySource


def cmd_view(args: argparse.Namespace) -> int:
    """Replay `args.file` in the dashboard, the whole range scrubbable."""
    source = ReplaySource(Path(args.file))
    if not sys.stdout.isatty():
        raise UsageError("iotrace view needs a terminal; try 'iotrace report FILE' instead")
    from iotrace.tui.app import run_dashboard

    run_dashboard(source, title=Path(args.file).name)
    if source.damage:
        print(f"iotrace: {args.file}: {source.damage}", file=sys.stderr)
    return 0
