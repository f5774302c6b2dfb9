"""The C record layout and the Python schema must never drift apart."""

import re
from importlib import resources

from iotrace import events
from iotrace.session import EVENT_DTYPE

_C_SIZES = {"__u64": 8, "__s64": 8, "__u32": 4, "__s32": 4, "__u16": 2, "__u8": 1}


def _header() -> str:
    return resources.files("iotrace.tracer").joinpath("bpf", "iotrace.h").read_text()


def _c_fields() -> list[tuple[str, str]]:
    body = re.search(r"struct iotrace_event \{(.*?)\};", _header(), re.S)
    assert body, "struct iotrace_event not found in iotrace.h"
    return re.findall(r"^\s*(__[us]\d+)\s+(\w+);", body.group(1), re.M)


def test_fields_names_types_and_order_match():
    py = [(f.ctype, f.name) for f in events.EVENT_FIELDS]
    assert _c_fields() == py


def test_record_size_matches_and_is_8_aligned():
    c_size = sum(_C_SIZES[t] for t, _ in _c_fields())
    assert c_size == events.EVENT_SIZE == EVENT_DTYPE.itemsize
    assert events.EVENT_SIZE % 8 == 0  # ring-buffer records are 8-aligned: no padding


def test_numpy_offsets_match_c_natural_layout():
    offset = 0
    for ctype, name in _c_fields():
        size = _C_SIZES[ctype]
        assert offset % size == 0, f"{name} would be padded in C"
        fields = EVENT_DTYPE.fields
        assert fields is not None
        assert fields[name][1] == offset
        offset += size


def _c_defines(prefix: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(rf"#define ({prefix}\w*)\s+(\d+)", _header())}


def test_kind_task_flag_and_probe_constants_match():
    kinds = _c_defines("IOT_KIND_")
    assert {k.removeprefix("IOT_KIND_"): v for k, v in kinds.items()} == {
        k.name: k.value for k in events.Kind
    }
    tasks = _c_defines("IOT_TASK_")
    assert {k.removeprefix("IOT_TASK_"): v for k, v in tasks.items()} == {
        t.name: t.value for t in events.TaskOp
    }
    flags = _c_defines("IOT_F_")
    assert {k.removeprefix("IOT_F_"): v for k, v in flags.items()} == {
        f.name: f.value for f in events.Flag if f.value
    }
    probes = _c_defines("IOT_PROBE_")
    assert probes["IOT_PROBE_SCHED"] == events.PROBE_SCHED
    assert probes["IOT_PROBE_TASK"] == events.PROBE_TASK
    assert probes["IOT_PROBE_AIO"] == events.PROBE_AIO
    assert probes["IOT_PROBE_URING"] == events.PROBE_URING
    assert probes["IOT_PROBE_POSIX_AIO"] == events.PROBE_POSIX_AIO
    assert probes["IOT_PROBE_BLOCK"] == events.PROBE_BLOCK
    blk = _c_defines("IOT_BLK_")
    assert {k.removeprefix("IOT_BLK_"): v for k, v in blk.items()} == {
        k.name: k.value for k in events.BlockOp
    }
    assert _c_defines("IOT_MAX_PROBES")["IOT_MAX_PROBES"] == events.MAX_PROBES
    assert probes["IOT_PROBE_FD"] == events.PROBE_FD


def test_fd_record_constants_match():
    ops = _c_defines("IOT_FD_")
    assert {k.removeprefix("IOT_FD_"): v for k, v in ops.items()} == {
        o.name: o.value for o in events.FdOp
    }
    anon = _c_defines("IOT_ANON_")
    assert {v: k.removeprefix("IOT_ANON_").lower() for k, v in anon.items()}.keys() == (
        events.ANON_NAMES.keys()
    )
    assert _c_defines("IOT_PATH_CHUNK")["IOT_PATH_CHUNK"] == events.PATH_CHUNK
    assert _c_defines("IOT_PATH_CHUNKS")["IOT_PATH_CHUNKS"] == events.PATH_CHUNKS
    # a PATH record's bytes fill end_ns .. user_data exactly
    fields = EVENT_DTYPE.fields
    assert fields is not None
    assert fields["pid"][1] - fields["end_ns"][1] == events.PATH_CHUNK


def test_syscall_ops_are_unique_and_fit_the_counter_arrays():
    ops = [s.op for s in events.SYSCALLS]
    assert len(ops) == len(set(ops))
    assert max(ops) < events.MAX_PROBES
    assert all(p < events.MAX_PROBES for p in events.PROBE_NAMES)
    assert not set(ops) & set(events.PROBE_NAMES)


def test_run_record_constants_match():
    assert _c_defines("IOT_RUN_BASE_SHIFT")["IOT_RUN_BASE_SHIFT"] == events.RUN_BASE_SHIFT
    # the histogram's one-byte buckets cannot carry over within a run
    assert events.RUN_MAX_CALLS <= 255
    assert events.RUN_BUCKETS * 8 == 64
    from iotrace.tracer import program

    # bpf_ringbuf_query names the ring by fake fd -1: it must be the first map declared
    text = program.build(program.ProgramOptions())
    first_map = re.search(r"^BPF_[A-Z_]+\((\w+)", text, re.M)
    assert first_map and first_map.group(1) == "events"


def test_bpf_counter_slots_match_their_names():
    """IOT_C_* in common.bpf.c index the `counters` array that bcc_source names."""
    from iotrace.tracer.bcc_source import COUNTER_NAMES

    common = resources.files("iotrace.tracer").joinpath("bpf", "common.bpf.c").read_text()
    slots = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^#define IOT_C_(\w+)\s+(\d+)", common, re.M)
        if m.group(1) != "N"
    }
    assert sorted(slots.values()) == list(range(len(COUNTER_NAMES)))
    n = int(re.search(r"^#define IOT_C_N\s+(\d+)", common, re.M).group(1))  # type: ignore[union-attr]
    assert len(COUNTER_NAMES) <= n
