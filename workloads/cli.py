"""`iotrace workloads` and `iotrace workload NAME [options]`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from iotrace.workloads import datafile, engine, registry
from iotrace.workloads.launcher import drop_privileges, invoking_user
from iotrace.workloads.measure import format_text
from iotrace.workloads.options import help_text

from iotrace.errors import UsageError, WorkloadError


def cmd_list() -> int:
    specs = registry.all_specs()
    wn = max(len(s.name) for s in specs)
    wm = max(len(s.model) for s in specs)
    print(f"{'NAME':<{wn}}  {'MODEL':<{wm}}  DESCRIPTION")
    for s in specs:
        print(f"{s.name:<{wn}}  {s.model:<{wm}}  {s.description}")
    print(
        f"\nDefault set for 'iotrace run': {' '.join(registry.default_set())}; each runs "
        f"{registry.DEFAULT_RUNTIME_S:g}s unless a count or --runtime bounds it.\n"
        "Options: 'iotrace workload NAME --help'."
    )
    return 0


def _general_help() -> str:
    return (
        "usage: iotrace workload NAME [options]\n\n"
        f"workloads: {', '.join(registry.names())}\n\n" + help_text()
    )


def cmd_workload(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv:
        raise UsageError(
            "workload: a workload name is needed; valid workloads: " + ", ".join(registry.names())
        )
    if argv[0] in ("-h", "--help"):
        print(_general_help())
        return 0
    run_as = invoking_user()
    if run_as is not None:
        drop_privileges(run_as)
    home = os.environ.get("HOME")
    name, rest = argv[0], argv[1:]
    spec, opts, want_help = engine.parse_for(name, rest)
    if want_help:
        print(engine.usage(spec))
        return 0
    try:
        result = engine.run(name, rest, home=home, progress_stream=sys.stderr)
    except datafile.Unavailable as exc:
        raise WorkloadError(f"{name} unavailable: {exc}") from None
    except OSError as exc:
        raise WorkloadError(f"{name}: {exc}") from None
    if opts.output_format == "json":
        print(json.dumps(result))
    else:
        print(format_text(result))
    return 0
