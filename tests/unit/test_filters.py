"""-e trace=SET and --min-latency: what a filter selects, what the program then
probes, and what the report says it left out."""

from __future__ import annotations

import re

import pytest
from iotrace.tracer import program

from iotrace import filters
from iotrace.cli import main


def _probed(text: str) -> set[str]:
    """The timed syscalls' probes (the fd-table probes stay whatever -e says:
    they name the files of the calls asked for, and time nothing)."""
    found = set(re.findall(r"TRACEPOINT_PROBE\(syscalls, sys_enter_(\w+)\)", text))
    return found - set(program.FD_PROBES)


def test_names_families_and_negation_in_stracess_grammar():
    assert filters.parse_trace(None) is None
    assert filters.parse_trace(["trace=read,pread64"]) == {"read", "pread64"}
    assert filters.parse_trace(["read"]) == {"read"}  # `trace=` may be left out
    assert filters.parse_trace(["trace=%read"]) == {"read", "pread64", "readv", "preadv", "preadv2"}
    assert filters.parse_trace(["trace=%network"]) == filters.parse_trace(["trace=%net"])
    assert filters.parse_trace(["trace=%multiplex"]) == filters.parse_trace(["trace=%mux"])
    assert "posix_aio" in filters.parse_trace(["trace=%aio"])  # type: ignore[operator]
    assert filters.parse_trace(["trace=%fault"]) == {"page_fault"}
    everything = set(filters.ALL_NAMES)
    assert filters.parse_trace(["trace=!%read"]) == everything - filters.parse_trace(["%read"])  # type: ignore[operator]
    # several -e add up, as in strace
    assert filters.parse_trace(["trace=read", "trace=write"]) == {"read", "write"}
    assert filters.parse_trace(["trace=/^io_uring"]) == {"io_uring_setup", "io_uring_enter"}


@pytest.mark.parametrize(
    "value, says",
    [
        ("trace=open", "does not trace 'open'"),
        ("trace=%frob", "unknown syscall family '%frob'"),
        ("trace=%file", "not traced by iotrace"),
        ("trace=read,,write", "empty name"),
        ("signal=read", "only -e trace=SET"),
        ("trace=/[", "bad regular expression"),
    ],
)
def test_a_bad_set_is_one_line_listing_the_valid_names(value, says, capsys):
    assert main(["trace", "--ebpf", "-e", value, "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err
    if "family" in says or "does not trace" in says:
        assert "%read" in err and "%uring" in err


def test_only_the_selected_syscalls_get_probes_and_the_rest_costs_nothing(capsys):
    assert main(["trace", "--ebpf", "-e", "trace=%read,sendto", "--", "true"]) == 0
    text = capsys.readouterr().out
    assert _probed(text) == {"read", "pread64", "readv", "preadv", "preadv2", "sendto"}
    # task and scheduler tracking stay whatever -e says
    for tp in ("sched, sched_switch", "sched, sched_process_fork", "sched, sched_process_exit"):
        assert f"TRACEPOINT_PROBE({tp})" in text
    assert "TRACEPOINT_PROBE(io_uring" not in text  # io_uring's requests go with %uring
    assert "iot_major_fault" not in text and "iot_paio_read" not in text


def test_aio_requests_are_followed_only_with_both_of_their_ends():
    both = program.build(program.ProgramOptions(syscalls=("io_submit", "io_getevents")))
    assert "iot_exit_io_submit(31" in both and "iot_exit_io_getevents(32" in both
    half = program.build(program.ProgramOptions(syscalls=("io_submit",)))
    assert "return iot_exit_io_submit(" not in half and "return iot_exit(31, args->ret)" in half


def test_min_latency_is_behind_a_guard_so_the_default_program_is_unchanged():
    default = program.build(program.ProgramOptions())
    assert "#define IOT_MIN_LATENCY_NS 0ULL" in default
    slow = program.build(program.ProgramOptions(min_latency_ns=1_000_000))
    assert "#define IOT_MIN_LATENCY_NS 1000000ULL" in slow
    strip = re.compile(r"#define IOT_MIN_LATENCY_NS \w+")
    assert strip.sub("", default) == strip.sub("", slow)


@pytest.mark.parametrize(
    "text, ns", [("1ms", 1_000_000), ("500us", 500_000), ("2.5ms", 2_500_000), ("250", 250_000)]
)
def test_latency_values(text, ns):
    assert filters.parse_latency(text) == ns
    assert filters.parse_latency(filters.fmt_ns(ns)) == ns


@pytest.mark.parametrize("text", ["0", "1xs", "-1ms", "5s", ""])
def test_bad_latency_is_a_usage_error(text, capsys):
    assert main(["trace", "--ebpf", "--min-latency", text, "--", "true"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_header_and_the_report_lines_say_what_was_left_out():
    f = filters.CallFilter(
        expr="trace=%read",
        selected=filters.parse_trace(["trace=%read"]),
        min_latency_ns=1_000_000,
    )
    back = filters.from_meta({"filter": f.to_meta()})
    assert back == f
    below = filters.below_counts(
        {
            "below_min_latency": [
                {"pid": 7, "syscall": "read", "calls": 40, "dur_ns": 4000},
                {"pid": 8, "syscall": "pread64", "calls": 2, "dur_ns": 10},
                {"pid": "x"},  # damaged: skipped, never a crash
            ]
        }
    )
    lines = filters.filter_lines(f, below)
    assert lines[0].startswith("filter -e trace=%read: recorded only read, pread64")
    assert "write" in lines[0].split("not recorded:")[1]
    assert lines[1].startswith("filter --min-latency 1ms: 42 calls faster than 1ms")
    assert "read 40, pread64 2" in lines[1]
    assert filters.filter_lines(filters.CallFilter(), []) == []


def test_report_text_json_and_html_say_what_the_filter_left_out(tmp_path):
    import json as _json

    import report_fixtures as fx

    from iotrace import analysis, html_report, report

    f = filters.CallFilter(
        expr="trace=%read", selected=filters.parse_trace(["%read"]), min_latency_ns=1_000_000
    )
    b = fx.TraceBuilder()
    fx.sync_blocking(b, pid=100)
    stats = {
        "lost": {},
        "below_min_latency": [{"pid": 100, "syscall": "read", "calls": 41, "dur_ns": 9_000}],
    }
    path = b.write(tmp_path / "f.trace", meta={"filter": f.to_meta()}, stats=stats)
    a = analysis.analyze_file(path, timeline=True)
    text = report.render_text(a)
    assert "filter -e trace=%read: recorded only read, pread64" in text
    assert "filter --min-latency 1ms: 41 calls faster than 1ms counted" in text
    assert "41 calls faster than 1ms not recorded (read 41)" in text  # under its process
    doc = _json.loads(_json.dumps(report.report_json(a)))
    assert doc["filter"]["below_min_latency_calls"] == 41
    assert doc["filter"]["selected"] == sorted(filters.FAMILIES["read"][0])
    page = html_report.render(a)
    assert "41 calls faster than 1ms counted, not recorded" in page
    # without a filter: nothing said, and `filter` is null
    plain = fx.TraceBuilder()
    fx.sync_blocking(plain, pid=100)
    a2 = analysis.analyze_file(plain.write(tmp_path / "p.trace"))
    assert "filter" not in report.render_text(a2) and report.report_json(a2)["filter"] is None
