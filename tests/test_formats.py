"""Event format files, the tracepoint catalogue and TraceError."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from conftest import RECORDED, need_shared

from pyrv.sources.errors import TraceError
from pyrv.sources.formats import DEFAULT_STATE_FLAGS, FormatSet, parse_format
from pyrv.sources.tracepoints import CATALOGUE, Catalogue, lookup

EVENTS_DIR = RECORDED / "raw" / "events"

SWITCH = """name: sched_switch
ID: 372
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:__data_loc char[] name;\toffset:40;\tsize:4;\tsigned:0;

print fmt: "prev_state=%s", __print_flags(REC->prev_state & 3, "|", { 0x01, "S" }, { 0x02, "D" })
"""


def test_parse_format() -> None:
    fmt = parse_format(SWITCH, source="f", system="sched")
    assert (fmt.name, fmt.id, fmt.system) == ("sched_switch", 372, "sched")
    assert [f.name for f in fmt.common_fields] == [
        "common_type",
        "common_flags",
        "common_preempt_count",
        "common_pid",
    ]
    assert fmt.field_kinds() == [
        ("prev_comm", str),
        ("prev_pid", int),
        ("prev_state", int),
        ("name", str),
    ]
    comm, pid, _, name = fmt.fields
    assert (comm.type, comm.offset, comm.size, comm.array_len, comm.signed) == (
        "char",
        8,
        16,
        16,
        False,
    )
    assert (pid.type, pid.signed, pid.array_len) == ("pid_t", True, None)
    assert name.data_loc and name.type == "__data_loc char[]"
    assert fmt.state_flags() == (((1, "S"), (2, "D")), 4)
    assert fmt.print_fmt.startswith('"prev_state=%s"')


def test_old_kernel_field_without_signed() -> None:
    text = 'name: x\nID: 7\nformat:\n\tfield:int a;\toffset:8;\tsize:4;\n\nprint fmt: "a=%d"\n'
    fmt = parse_format(text)
    assert fmt.fields[0].name == "a" and fmt.fields[0].signed is False


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("name: x\nID: abc\n", 2, "bad ID"),
        ("name: x\nID: 1\nformat:\n\tfield:int a;\toffset:z;\n", 4, "bad field line"),
        ("name: x\nID: 1\nsomething else\n", 3, "unexpected line"),
        ("ID: 1\nformat:\n", None, "no 'name:'"),
        ("name: x\nformat:\n", None, "no 'ID:'"),
    ],
)
def test_bad_format_file(text: str, line: int | None, what: str) -> None:
    with pytest.raises(TraceError, match=what) as exc:
        parse_format(text, source="bad.format")
    assert (exc.value.source, exc.value.line) == ("bad.format", line)


def test_load_flat_layout() -> None:
    fs = FormatSet.load(need_shared(EVENTS_DIR))
    assert len(fs) == len(list(EVENTS_DIR.glob("*.format")))
    assert fs.by_id(372).name == "sched_switch" and fs.by_id(372).system == "sched"
    assert fs.by_id(5).name == "print" and fs.by_id(5).system == "ftrace"
    assert fs.by_name("sched:sched_wakeup").id == 374
    assert fs.by_name("sched_wakeup").id == 374
    assert fs.by_id(999999) is None
    assert fs.by_name("sched_switch").state_flags() == (DEFAULT_STATE_FLAGS, 0x100)


def test_load_tracefs_layout(tmp_path: Path) -> None:
    ev = tmp_path / "events" / "sched" / "sched_switch"
    ev.mkdir(parents=True)
    (ev / "format").write_text(SWITCH)
    (tmp_path / "events" / "header_page").write_text("\tfield: u64 timestamp;\n")
    (tmp_path / "events" / "sched" / "enable").write_text("0\n")
    for root in (tmp_path, tmp_path / "events"):
        fs = FormatSet.load(root)
        assert [(f.system, f.name, f.id) for f in fs] == [("sched", "sched_switch", 372)]


def test_load_bad_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "sched__broken.format").write_text("name: broken\nID: 3\nformat:\n\tfield:x\n")
    with pytest.raises(TraceError) as exc:
        FormatSet.load(tmp_path)
    assert exc.value.source == str(tmp_path / "sched__broken.format") and exc.value.line == 4


def test_load_empty_or_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no event format files"):
        FormatSet.load(tmp_path)
    with pytest.raises(TraceError, match="does not exist"):
        FormatSet.load(tmp_path / "nope")


def test_catalogue_matches_recorded_formats() -> None:
    """Field names and types of the catalogue equal the kernel's format files."""
    for fmt in FormatSet.load(need_shared(EVENTS_DIR)):
        tp = lookup(f"{fmt.system}:{fmt.name}")
        assert tp is not None, fmt.name
        kinds = dict(fmt.field_kinds())
        if fmt.name == "sched_switch":
            kinds["prev_state"] = str  # letters, as the kernel prints them
        assert {f.name: f.type for f in tp.fields if f.name in kinds} == kinds, fmt.name
        assert set(kinds) <= set(tp.field_names()), fmt.name


def test_catalogue_lookup() -> None:
    sw = lookup("sched_switch")
    assert sw is not None and sw is lookup("sched:sched_switch")
    assert sw.field_names() == (
        "prev_comm",
        "prev_pid",
        "prev_prio",
        "prev_state",
        "next_comm",
        "next_pid",
        "next_prio",
    )
    assert lookup("tracing_mark_write") is lookup("ftrace:print")
    assert lookup("sched:nope") is None and lookup("nope") is None
    fork = lookup("sched_process_fork")
    assert fork.keys == {"comm": "parent_comm", "pid": "parent_pid"}
    for name in ("event_wip", "rv:error_wwnr", "error_env_stall", "event_pagefault"):
        tp = lookup(name)
        assert tp is not None and tp.system == "rv"
    assert lookup("sched:event_wip") is None
    for name in (
        "irq:irq_handler_entry",
        "irq:softirq_raise",
        "timer:hrtimer_start",
        "preemptirq:irq_enable",
        "raw_syscalls:sys_enter",
        "exceptions:page_fault_kernel",
        "signal:signal_deliver",
        "lock:contention_end",
        "sched:sched_migrate_task",
        "sched:sched_pi_setprio",
        "sched:sched_kthread_stop",
        "sched:sched_process_free",
    ):
        assert lookup(name) is not None, name
    assert lookup("preempt_disable").field_names() == ("caller", "parent")


def test_register() -> None:
    cat = Catalogue(CATALOGUE)
    tp = cat.register("rvraw", "wwnr_switch", {"prev_state": "int", "preempt": "u8", "s": "char[]"})
    assert cat.lookup("wwnr_switch") is tp and cat.lookup("rvraw:wwnr_switch") is tp
    assert [(f.name, f.type) for f in tp.fields] == [
        ("prev_state", int),
        ("preempt", int),
        ("s", str),
    ]
    assert "rvraw:wwnr_switch" in cat and "rvraw:wwnr_switch" not in CATALOGUE
    with pytest.raises(ValueError):
        cat.register("x", "y", {"a": "float"})


def test_trace_error() -> None:
    err = TraceError("t.txt", 12, "bad line")
    assert str(err) == "t.txt:12: bad line"
    assert isinstance(err, ValueError)
    assert (err.source, err.line, err.reason) == ("t.txt", 12, "bad line")
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.line, again.reason) == ("t.txt", 12, "bad line")
