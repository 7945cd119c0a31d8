"""ftrace text / trace-cmd report reader, checked against the recorded traces.

Expected values are derived from the files by simple independent means (line counts, substring
counts, literal values read off specific lines), never by the reader's own regexes.
"""

from __future__ import annotations

import gzip
import io
import lzma
import re
import sys
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest
from conftest import RECORDED, need_shared

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.formats import FormatSet
from pyrv.sources.ftrace_text import (
    TextTraceReader,
    iter_text_trace,
    plugin_state_bits,
    split_kv,
    state_letters,
)
from pyrv.sources.tracepoints import CATALOGUE

TEXT = RECORDED / "ftrace-text"
TRACEDAT = RECORDED / "tracedat"
EVENTS_DIR = RECORDED / "raw" / "events"
DATA = Path(__file__).parent / "data" / "text"

NEEDS_FORMATS = {"opt_raw.txt", "opt_hex.txt"}


def _text_files() -> list[str]:
    if not TEXT.exists():
        return ["opt_default.txt"]  # skipped by need_shared
    return sorted(p.name for p in TEXT.glob("*.txt"))


def _report_files() -> list[str]:
    if not TRACEDAT.exists():
        return ["report_default.txt"]
    return sorted(p.name for p in TRACEDAT.glob("report_*.txt"))


def read(path: Path, **kw: object) -> tuple[TextTraceReader, list[TraceEvent | LostEvents]]:
    reader = TextTraceReader(path, **kw)  # type: ignore[arg-type]
    return reader, list(reader)


def at_line(items: list, line: int) -> TraceEvent:
    found = [i for i in items if isinstance(i, TraceEvent) and i.line == line]
    assert len(found) == 1, f"no single event from line {line}"
    return found[0]


# ---------------------------------------------------------------------------------------------
# Independent counting: data lines, and per event the lines that print its name.

_LOSS_MARKS = ("EVENTS]", "EVENTS DROPPED]")


def data_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("cpus="):
            continue
        if s.endswith(_LOSS_MARKS):
            continue
        out.append(line)
    return out


def lines_naming(lines: list[str], printed: str) -> int:
    label = printed + ":"
    return sum(1 for ln in lines if f" {label}" in ln or ln.startswith(label))


def printed_names(name: str, path: Path) -> str:
    """How a yielded event name is printed in the file (print event, UNKNOWN TYPE)."""
    if name == "print":
        return "print" if path.name.startswith("report_") else "tracing_mark_write"
    return name


@pytest.mark.parametrize("name", _text_files())
def test_text_file_event_counts(name: str) -> None:
    path = need_shared(TEXT / name)
    kw = {}
    if name in NEEDS_FORMATS:
        kw = {"formats": FormatSet.load(need_shared(EVENTS_DIR)), "skip_bad_lines": True}
    reader, items = read(path, **kw)
    events = [i for i in items if isinstance(i, TraceEvent)]
    lines = data_lines(path)
    assert len(events) + len(reader.skipped) + reader.dropped_incomplete == len(lines)
    got = Counter(e.name for e in events)
    if name in NEEDS_FORMATS:
        return  # names come from type ids: checked in test_raw_hex_with_formats
    for ev_name, n in got.items():
        if ev_name == "unknown":
            assert n == sum(1 for ln in lines if "UNKNOWN TYPE" in ln)
        else:
            assert n == lines_naming(lines, printed_names(ev_name, path)), ev_name
    assert not reader.skipped


@pytest.mark.parametrize("name", _report_files())
def test_report_file_event_counts(name: str) -> None:
    path = need_shared(TRACEDAT / name)
    reader, items = read(path)
    events = [i for i in items if isinstance(i, TraceEvent)]
    lines = data_lines(path)
    assert len(events) == len(lines)
    for ev_name, n in Counter(e.name for e in events).items():
        assert n == lines_naming(lines, printed_names(ev_name, path)), ev_name
    assert reader.layout in ("report", "report-latency")
    assert reader.ncpus == 2


def test_sched_trace_readme_counts() -> None:
    """The README's own numbers for sched_trace.txt."""
    _, items = read(need_shared(TEXT / "sched_trace.txt"))
    got = Counter(i.name for i in items if isinstance(i, TraceEvent))
    assert sum(got.values()) == 4094
    assert got == {
        "sched_switch": 1939,
        "sched_waking": 910,
        "sched_wakeup": 910,
        "sched_process_fork": 87,
        "sched_wakeup_new": 87,
        "sched_process_exit": 86,
        "sched_process_exec": 73,
        "print": 2,
    }


# ---------------------------------------------------------------------------------------------
# Spot checks: values read off specific lines by eye.


def test_default_line_values() -> None:
    reader, items = read(need_shared(TEXT / "sched_trace.txt"))
    assert (reader.ncpus, reader.entries_in_buffer, reader.entries_written) == (2, 4094, 4094)
    assert reader.layout == "ftrace" and not reader.counter_clock and reader.has_context
    # line 16: final_top.sh-15544 [001] d..2. 471.697357: sched_switch: ... prev_state=S ==> as
    ev = at_line(items, 16)
    assert (ev.ts, ev.cpu, ev.pid, ev.comm, ev.flags) == (
        471_697_357_000,
        1,
        15544,
        "final_top.sh",
        "d..2.",
    )
    assert (ev.name, ev.system) == ("sched_switch", "sched")
    assert ev.fields == {
        "prev_comm": "final_top.sh",
        "prev_pid": 15544,
        "prev_prio": 120,
        "prev_state": "S",
        "next_comm": "as",
        "next_pid": 15555,
        "next_prio": 139,
    }
    # line 13: tracing_mark_write: rv-sample start
    mark = at_line(items, 13)
    assert (mark.name, mark.system, mark.fields) == ("print", "ftrace", {"buf": "rv-sample start"})
    # line 17: python-15145 [000] dNs3. 471.699493: sched_waking: ... target_cpu=001
    wk = at_line(items, 17)
    assert (wk.cpu, wk.flags, wk.name) == (0, "dNs3.", "sched_waking")
    assert wk.fields == {"comm": "rcu_preempt", "pid": 15, "prio": 120, "target_cpu": 1}
    # line 14: sched_process_fork prints comm=/pid= for parent_comm/parent_pid
    fork = at_line(items, 14)
    assert fork.fields == {
        "parent_comm": "final_top.sh",
        "parent_pid": 15544,
        "child_comm": "final_top.sh",
        "child_pid": 15556,
    }


def test_comm_with_space_and_preempt_plus() -> None:
    _, items = read(need_shared(TEXT / "sched_trace.txt"))
    ev = at_line(items, 115)  # my worker-15562 ... prev_state=R+ ==> next_comm=migration/1
    assert (ev.comm, ev.pid, ev.cpu) == ("my worker", 15562, 1)
    assert ev.fields["prev_state"] == "R+"
    assert ev.fields["next_comm"] == "migration/1"


def test_space_in_payload_values() -> None:
    _, items = read(need_shared(TEXT / "opt_clock_counter.txt"))
    exe = at_line(items, 129)
    assert exe.comm == "my worker" and exe.ts == 119
    assert exe.fields == {"filename": "/tmp/tracefmt/work/my worker", "pid": 5737, "old_pid": 5737}
    sw = at_line(items, 130)
    assert sw.fields["prev_comm"] == "my worker" and sw.fields["next_comm"] == "bash"
    assert at_line(items, 242).fields == {
        "comm": "my worker",
        "pid": 5737,
        "prio": 120,
        "group_dead": 1,
    }


def test_unknown_comm_and_colon_comm() -> None:
    _, items = read(need_shared(TEXT / "opt_unknown_comm.txt"))
    ev = at_line(items, 13)  # <...>-28584 [001] d..2. 892.520604: sched_switch: ... Z ==> bash
    assert (ev.comm, ev.pid, ev.cpu, ev.ts) == ("<...>", 28584, 1, 892_520_604_000)
    assert ev.fields["prev_state"] == "Z"
    mem = at_line(items, 30)  # " memfd:sealed-91-2279    [000] ..."
    assert (mem.comm, mem.pid, mem.cpu) == ("memfd:sealed-91", 2279, 0)
    kw = at_line(items, 20)  # kworker/u8:2-37 [001]
    assert (kw.comm, kw.pid) == ("kworker/u8:2", 37)


def test_tgid_column() -> None:
    reader, items = read(need_shared(TEXT / "opt_tgid.txt"))
    assert reader.layout == "ftrace-tgid"
    ev = at_line(items, 13)  # text_exp.sh-5159 (   5159) [000] ...1. 320.031374: marker
    assert (ev.comm, ev.pid, ev.cpu, ev.flags, ev.ts) == (
        "text_exp.sh",
        5159,
        0,
        "...1.",
        320_031_374_000,
    )
    assert ev.fields == {"buf": "marker from tgid"}
    idle = at_line(items, 14)  # <idle>-0 (-------) [001] d.h1.
    assert (idle.comm, idle.pid, idle.cpu, idle.flags) == ("<idle>", 0, 1, "d.h1.")
    irq = at_line(items, 61)  # irq_handler_exit: irq=41 ret=handled
    assert (irq.name, irq.system, irq.fields) == ("irq_handler_exit", "irq", {"irq": 41, "ret": 1})


def test_no_irq_info() -> None:
    reader, items = read(need_shared(TEXT / "opt_noirqinfo.txt"))
    ev = at_line(items, 7)  # text_exp.sh-5159 [001]    319.770238: tracing_mark_write
    assert (ev.flags, ev.cpu, ev.ts, ev.fields) == (
        None,
        1,
        319_770_238_000,
        {"buf": "marker from noirqinfo"},
    )


def test_latency_format() -> None:
    reader, items = read(need_shared(TEXT / "opt_latency.txt"))
    assert reader.layout == "latency"
    assert (reader.ncpus, reader.entries_in_buffer, reader.entries_written) == (2, 4409, 4409)
    ev = at_line(items, 19)  # "   <...>-5397      0d..2. 20572us+: sched_switch: ..."
    assert (ev.comm, ev.pid, ev.cpu, ev.flags, ev.ts) == ("<...>", 5397, 0, "d..2.", 20_572_000)
    assert ev.fields["prev_state"] == "Z" and ev.fields["next_pid"] == 5396
    mark = at_line(items, 20)  # "text_exp-5159      1...1. 20598us!: tracing_mark_write: ..."
    assert (mark.comm, mark.cpu, mark.flags, mark.ts) == ("text_exp", 1, "...1.", 20_598_000)
    plain = at_line(items, 21)  # "    bash-5396      0..... 20738us : sched_process_fork"
    assert (plain.cpu, plain.flags, plain.ts) == (0, ".....", 20_738_000)


@pytest.mark.parametrize(
    ("name", "line", "ts", "counter"),
    [
        ("opt_clock_counter.txt", 13, 3, True),
        ("opt_clock_uptime.txt", 13, 32205, True),
        ("opt_clock_x86-tsc.txt", 13, 792452639478, True),
        ("opt_clock_tai.txt", 13, 1796313256_124801_000, False),
        ("opt_clock_global.txt", 13, 321_587_953_000, False),
    ],
)
def test_clocks(name: str, line: int, ts: int, counter: bool) -> None:
    reader, items = read(need_shared(TEXT / name))
    assert at_line(items, line).ts == ts
    assert reader.counter_clock is counter


def test_fields_option() -> None:
    _, items = read(need_shared(TEXT / "opt_fields.txt"))
    unknown = at_line(items, 13)  # "UNKNOWN TYPE 5"
    assert (unknown.name, unknown.fields, unknown.pid) == ("unknown", {"type": 5}, 5159)
    fork = at_line(items, 14)  # parent_comm=text_exp.sh parent_pid=0x1427 (5159) ...
    assert fork.fields == {
        "parent_comm": "text_exp.sh",
        "parent_pid": 5159,
        "child_comm": "text_exp.sh",
        "child_pid": 5604,
    }
    sw = at_line(items, 17)  # prev_pid=0x1427 (5159) ... prev_state=0x1 (1) next_pid=0xf (15)
    assert sw.fields == {
        "prev_comm": "text_exp.sh",
        "prev_pid": 5159,
        "prev_prio": 120,
        "prev_state": "S",
        "next_comm": "rcu_preempt",
        "next_pid": 15,
        "next_prio": 120,
    }
    assert at_line(items, 18).fields["prev_state"] == "I"  # prev_state=0x80 (128)
    assert at_line(items, 16).fields["prev_state"] == "R"  # prev_state=0x0 (0)
    hr = at_line(items, 20)  # hrtimer=0xffff... (-1313...) now=0x4ab1e2b4c3 (320812004547)
    assert hr.fields == {
        "hrtimer": "0xffff888627c206f8",
        "now": 320812004547,
        "function": "tick_nohz_handler+0x0/0x140",
    }
    assert at_line(items, 22).fields == {"vec": 9}  # vec=0x9 (9)
    assert at_line(items, 42).fields["group_dead"] == 1  # group_dead=(1)


def test_fields_option_unknown_type_with_formats() -> None:
    fs = FormatSet.load(need_shared(EVENTS_DIR))
    _, items = read(need_shared(TEXT / "opt_fields.txt"), formats=fs)
    ev = at_line(items, 13)
    assert (ev.name, ev.system, ev.fields) == ("print", "ftrace", {})


def test_nocontext() -> None:
    reader, items = read(need_shared(TEXT / "opt_nocontext.txt"))
    assert reader.layout == "nocontext" and reader.has_context is False
    first = at_line(items, 3)  # tracing_mark_write: marker from nocontext
    assert (first.ts, first.cpu, first.pid, first.name) == (3, -1, -1, "print")
    sw = at_line(items, 8)  # sched_switch: prev_comm=text_exp.sh ... R ==> kworker/1:1
    assert sw.fields["prev_state"] == "R" and sw.fields["next_comm"] == "kworker/1:1"
    ts = [i.ts for i in items]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)


# ---------------------------------------------------------------------------------------------
# Loss markers


def test_trace_pipe_lost_events() -> None:
    path = need_shared(TEXT / "trace_pipe_lost_events.txt")
    reader, items = read(path)
    lost = [(k, i) for k, i in enumerate(items) if isinstance(i, LostEvents)]
    assert [(i.cpu, i.count, i.line) for _, i in lost] == [(1, 32598, 1), (0, 15711, 151)]
    text = path.read_text().splitlines()
    for k, marker in lost:
        assert text[marker.line - 1].startswith(f"CPU:{marker.cpu} [LOST {marker.count} EVENTS]")
        nxt = items[k + 1]
        assert isinstance(nxt, TraceEvent) and nxt.line == marker.line + 1
    assert reader.entries_written is None  # no header in trace_pipe output


def test_lost_without_cpu_prefix_and_old_kernel() -> None:
    _, items = read(DATA / "old_kernel_pipe.txt")
    assert isinstance(items[1], LostEvents)
    assert (items[1].cpu, items[1].count) == (None, 7)
    wake = items[0]
    assert wake.flags == "d.h3"  # 4-column flags of older kernels
    assert wake.fields == {"comm": "bash", "pid": 12, "prio": 120, "target_cpu": 0, "success": 1}
    assert items[3].fields == {"comm": "bash", "pid": 12, "prio": 120}  # no group_dead


def test_old_tgid_dashes() -> None:
    reader, items = read(DATA / "tgid_old.txt")
    assert reader.layout == "ftrace-tgid"
    assert [(i.pid, i.comm) for i in items] == [(0, "<idle>"), (12, "bash")]


def _first_ts_per_cpu(path: Path) -> dict[str, float]:
    """Independent scan: CPU column and the number before the first ': ' after it."""
    first: dict[str, float] = {}
    for line in data_lines(path):
        cpu = line.split("[", 1)[1].split("]", 1)[0]
        ts = float(line.split("]", 1)[1].split(":", 1)[0].split()[-1])
        first.setdefault(cpu, ts)
    return first


@pytest.mark.parametrize(
    ("path", "in_buffer", "written"),
    [
        (TEXT / "trace_after_overwrite_head.txt", 441, 48750),
        (DATA / "overwritten_two_cpus.txt", 6, 50),
    ],
)
def test_overwritten_head(path: Path, in_buffer: int, written: int) -> None:
    need_shared(path)
    reader, items = read(path)
    t = max(_first_ts_per_cpu(path).values())
    t_ns = round(t * 1e6) * 1000
    expected_dropped = sum(
        1 for line in data_lines(path) if float(line.split("]", 1)[1].split(":")[0].split()[-1]) < t
    )
    lost = [i for i in items if isinstance(i, LostEvents)]
    assert len(lost) == 1
    assert lost[0].cpu is None and lost[0].count == written - in_buffer
    assert lost[0].ts == t_ns and lost[0].reason.startswith("overwritten")
    assert reader.dropped_incomplete == expected_dropped
    k = items.index(lost[0])
    assert all(isinstance(i, TraceEvent) for i in items[k + 1 :])
    assert items[k + 1].ts == t_ns and all(i.ts >= t_ns for i in items[k + 1 :])
    assert items[:k] == []


def test_overwritten_two_cpus_drops_only_head() -> None:
    reader, items = read(DATA / "overwritten_two_cpus.txt")
    assert reader.dropped_incomplete == 2
    assert [getattr(i, "line", None) for i in items[1:]] == [9, 10, 11, 12]
    assert items[0].line == 9


def test_report_dropped_events_instance() -> None:
    path = need_shared(TRACEDAT / "report_lost_events_instance_tfr.txt")
    reader, items = read(path)
    lost = [i for i in items if isinstance(i, LostEvents)]
    assert [(i.cpu, i.count, i.line) for i in lost] == [(0, 448, 2), (1, 443, 133)]
    assert all("dropped" in i.reason for i in lost)
    assert reader.instances == {"tfr"}
    # line 3 lacks the "tfr: " prefix (trace-cmd prints it on the DROPPED line only)
    ev = at_line(items, 3)
    assert (ev.comm, ev.pid, ev.cpu, ev.name) == ("gzip", 22249, 0, "sched_wakeup")
    assert ev.fields == {"comm": "dd", "pid": 22248, "prio": 120, "target_cpu": 0}
    mem = at_line(items, 132)  # tfr:  memfd:sealed-91-2291  [000] ... memfd:sealed-91:2291 [120]
    assert (mem.comm, mem.pid) == ("memfd:sealed-91", 2291)
    assert mem.fields["prev_comm"] == "memfd:sealed-91" and mem.fields["prev_pid"] == 2291


def test_dropped_without_count() -> None:
    text = "cpus=2\nCPU:1 [EVENTS DROPPED]\ninst: CPU:0 [EVENTS DROPPED]\n"
    items = list(iter_text_trace(io.StringIO(text)))
    assert [(i.cpu, i.count) for i in items] == [(1, None), (0, None)]


# ---------------------------------------------------------------------------------------------
# trace-cmd report variants


def test_report_plugin_forms_and_print() -> None:
    _, items = read(need_shared(TRACEDAT / "report_default.txt"))
    mark = at_line(items, 2)  # print: 0xffffffff814aa941: rv-sample start
    assert mark.fields == {"ip": 0xFFFFFFFF814AA941, "buf": "rv-sample start"}
    wake = at_line(items, 4)  # sched_wakeup_new: final_top.sh:15556 [120] CPU:000
    assert wake.fields == {"comm": "final_top.sh", "pid": 15556, "prio": 120, "target_cpu": 0}
    sw = at_line(items, 10)  # rcu_preempt:15 [120] W ==> as:15555 [139]  (kernel letter: I)
    assert sw.fields["prev_state"] == "I" and sw.fields["next_pid"] == 15555
    mem = at_line(items, 134)  # memfd:sealed-91:5231 [120] CPU:001
    assert mem.fields == {"comm": "memfd:sealed-91", "pid": 5231, "prio": 120, "target_cpu": 1}


def test_report_ns_latency_tsdiff_raw() -> None:
    _, t_items = read(need_shared(TRACEDAT / "report_opt_t.txt"))
    assert at_line(t_items, 2).ts == 471_696_913_730  # 471.696913730
    reader, l_items = read(need_shared(TRACEDAT / "report_opt_l.txt"))
    assert reader.layout == "report-latency"
    ev = at_line(l_items, 5)  # final_to-15544   1d..2.   471.697357: sched_switch
    assert (ev.comm, ev.pid, ev.cpu, ev.flags, ev.ts) == (
        "final_to",
        15544,
        1,
        "d..2.",
        471_697_357_000,
    )
    _, d_items = read(need_shared(TRACEDAT / "report_opt_tsdiff.txt"))
    fork = at_line(d_items, 3)  # 471.697213: (+299)   sched_process_fork:
    assert (fork.ts, fork.name, fork.fields["child_pid"]) == (
        471_697_213_000,
        "sched_process_fork",
        15556,
    )
    _, r_items = read(need_shared(TRACEDAT / "report_opt_R.txt"))
    assert at_line(r_items, 5).fields["prev_state"] == "S"  # prev_state=1
    assert at_line(r_items, 10).fields["prev_state"] == "I"  # prev_state=128
    assert at_line(r_items, 2).fields == {"ip": 0xFFFFFFFF814AA941, "buf": "rv-sample start"}


def _sched_key(ev: TraceEvent) -> tuple:
    fields = dict(ev.fields)
    fields.pop("ip", None)  # trace-cmd shows the print ip; the kernel's text does not
    if fields.get("prev_state") == "R+":
        fields["prev_state"] = "R"  # trace-cmd's plugin never prints the preempt '+'
    return (ev.ts, ev.cpu, ev.pid, ev.name, fields)


def test_ftrace_text_and_trace_cmd_report_agree() -> None:
    """Same ring buffer read by the kernel's printer and by trace-cmd: same events."""
    _, a = read(need_shared(TEXT / "sched_trace.txt"))
    _, b = read(need_shared(TRACEDAT / "report_default.txt"))
    assert len(a) == len(b) == 4094
    assert [_sched_key(x) for x in a] == [_sched_key(y) for y in b]
    plus = sum(1 for x in a if x.fields.get("prev_state") == "R+")
    assert plus == sum(1 for ln in data_lines(TEXT / "sched_trace.txt") if "prev_state=R+" in ln)


# ---------------------------------------------------------------------------------------------
# raw / hex options


@pytest.mark.parametrize(
    ("name", "option", "line"), [("opt_raw.txt", "raw", 14), ("opt_hex.txt", "hex", 13)]
)
def test_raw_hex_need_formats(name: str, option: str, line: int) -> None:
    path = need_shared(TEXT / name)
    for skip in (False, True):  # not skippable: every line would be lost
        with pytest.raises(TraceError) as exc:
            list(iter_text_trace(path, skip_bad_lines=skip))
        assert exc.value.line == line and exc.value.source == str(path)
        assert f"'{option}' option" in str(exc.value) and "--formats" in str(exc.value)


@pytest.mark.parametrize("name", ["opt_raw.txt", "opt_hex.txt"])
def test_raw_hex_with_formats(name: str) -> None:
    path = need_shared(TEXT / name)
    ids = {}
    for fmt_file in need_shared(EVENTS_DIR).glob("*.format"):
        text = fmt_file.read_text()
        ids[int(re.search(r"^ID: (\d+)", text, re.M).group(1))] = text.split()[1]
    reader, items = read(path, formats=FormatSet.load(EVENTS_DIR), skip_bad_lines=True)
    lines = data_lines(path)
    typed = [int(ln.split("type: ")[1]) for ln in lines if "type: " in ln]
    assert len(reader.skipped) == sum(1 for t in typed if t not in ids)
    # each skipped line is reported in the stream as a loss, so no verdict is made across it
    assert sum(isinstance(i, LostEvents) for i in items) == len(reader.skipped)
    got = Counter(i.name for i in items if isinstance(i, TraceEvent))
    want = Counter(ids[t] for t in typed if t in ids)
    want["print"] += sum(1 for ln in lines if " # " in ln)  # raw print: "# ip text"
    assert got == want


def test_raw_values() -> None:
    fs = FormatSet.load(need_shared(EVENTS_DIR))
    _, raw = read(need_shared(TEXT / "opt_raw.txt"), formats=fs, skip_bad_lines=True)
    mark = at_line(raw, 13)  # 5159 0 321094977371 # ffffffff814aa941 marker from raw
    assert (mark.pid, mark.cpu, mark.ts, mark.name) == (5159, 0, 321094977371, "print")
    assert mark.fields == {"ip": 0xFFFFFFFF814AA941, "buf": "marker from raw"}
    fork = at_line(raw, 14)  # 5159 0 321095245523 type: 366
    assert (fork.name, fork.system, fork.fields, fork.ts) == (
        "sched_process_fork",
        "sched",
        {},
        321095245523,
    )
    _, hx = read(TEXT / "opt_hex.txt", formats=fs, skip_bad_lines=True)
    ev = at_line(hx, 15)  # 00001427 00000001 0000004ad109ac58 type: 366
    assert (ev.pid, ev.cpu, ev.ts, ev.name) == (0x1427, 1, 0x4AD109AC58, "sched_process_fork")


# ---------------------------------------------------------------------------------------------
# Other events, rv verdicts, registration


def test_assorted_events() -> None:
    _, items = read(DATA / "assorted_events.txt")
    f = {i.line: (i.name, i.system, i.fields) for i in items}
    assert f[1] == (
        "event_wip",
        "rv",
        {
            "state": "non_preemptive",
            "event": "preempt_enable",
            "next_state": "preemptive",
            "final_state": 1,
        },
    )
    assert f[2][2]["final_state"] == 0
    assert f[3][2] == {
        "id": 48,
        "state": "not_running",
        "event": "wakeup",
        "next_state": "not_running",
        "final_state": 1,
    }
    assert f[4][2]["next_state"] == "running" and f[4][2]["final_state"] == 0  # trailing blank
    assert f[5] == ("error_wwnr", "rv", {"id": 51, "state": "running", "event": "wakeup"})
    assert f[6][2] == {"state": "preemptive", "event": "sched_waking"}
    assert f[7][2] == {"id": 60, "state": "running", "event": "none", "env": "clk=12000"}
    assert f[8][2] == {
        "comm": "rt-app",
        "pid": 61,
        "states": "0",
        "atoms": "RT,USER",
        "next": "0-1",
    }
    assert f[9][2] == {"comm": "rt-app", "pid": 61}
    assert f[10] == (
        "wwnr_switch",
        None,
        {"__probe_ip": "handle_switch+0x0/0x82", "prev_state": 0x402, "preempt": 0},
    )
    assert f[11] == (
        "preempt_disable",
        "preemptirq",
        {"caller": "_raw_spin_lock+0xe/0x17", "parent": "0x0"},
    )
    assert f[12][2] == {"address": 0x7F12A0001000, "ip": 0x55D0C0DE1234, "error_code": 6}
    assert f[13][2]["sa_handler"] == 0x55D0C0DE0000 and f[13][2]["sa_flags"] == 0x4000000
    assert f[14][2] == {"lock_addr": "0000000012345678", "flags": "SPIN"}
    assert f[15][2] == {"lock_addr": "0000000012345678", "ret": 0}
    assert f[16][2] == {"irq": 41, "ret": 0}
    assert f[17] == (
        "my_probe",
        None,
        {"count": 12, "name": "two words here", "ptr": 255, "mixed": "12ab"},
    )
    assert f[18] == ("my_plain_event", None, {})
    assert f[19][2] == {"comm": "python", "pid": 70, "runtime": 123456}
    assert f[21][2] == {"cpu": 1, "states": "0", "atoms": "RT", "next": "1"}
    assert f[22] == ("error_sleep", "rv", {"cpu": 1})


def test_registered_event_gets_system_and_types() -> None:
    cat = CATALOGUE.copy()
    cat.register("rvraw", "wwnr_switch", {"prev_state": "int", "preempt": int})
    _, items = read(DATA / "assorted_events.txt", catalogue=cat)
    ev = at_line(items, 10)
    assert (ev.system, ev.fields["prev_state"], ev.fields["preempt"]) == ("rvraw", 0x402, 0)
    assert CATALOGUE.lookup("wwnr_switch") is None  # the copy did not touch the global one


def test_registered_event_missing_field_is_an_error() -> None:
    cat = CATALOGUE.copy()
    cat.register("x", "my_probe", [("count", int), ("absent", str)])
    with pytest.raises(TraceError, match="my_probe payload lacks absent") as exc:
        list(iter_text_trace(DATA / "assorted_events.txt", catalogue=cat))
    assert exc.value.line == 17


# ---------------------------------------------------------------------------------------------
# Broken input


def test_garbage_line_mid_file() -> None:
    path = DATA / "garbage_mid.txt"
    with pytest.raises(TraceError) as exc:
        list(iter_text_trace(path))
    assert (exc.value.source, exc.value.line) == (str(path), 9)
    assert str(exc.value).startswith(f"{path}:9: ")
    reader, items = read(path, skip_bad_lines=True)
    assert [ln for ln, _ in reader.skipped] == [9]
    events = [i for i in items if isinstance(i, TraceEvent)]
    (lost,) = [i for i in items if isinstance(i, LostEvents)]
    assert len(events) == 4 and (lost.line, lost.count) == (9, 1)
    assert items.index(lost) == 2  # where the line was: between the events before and after


def test_truncated_last_line() -> None:
    path = DATA / "truncated_last.txt"
    with pytest.raises(TraceError, match="truncated") as exc:
        list(iter_text_trace(path))
    assert exc.value.line == 9
    reader, items = read(path, skip_bad_lines=True)
    assert len([i for i in items if isinstance(i, TraceEvent)]) == 2
    assert reader.skipped[0][0] == 9 and isinstance(items[-1], LostEvents)


def test_truncated_payload_is_an_error() -> None:
    text = (
        "          bash-1  [000] d..2.   1.000001: sched_switch: prev_comm=bash prev_pid=1 "
        "prev_prio=120 prev_state=S ==> next_comm=cat next_pid=2 next_prio=120\n"
        "          bash-1  [000] d..2.   1.000002: sched_switch: prev_comm=bash prev_pid=1 prev_pr"
    )
    with pytest.raises(TraceError, match="sched_switch field prev_pid: not a number") as exc:
        list(iter_text_trace(io.StringIO(text), source="t"))
    assert (exc.value.source, exc.value.line) == ("t", 2)


def test_binary_file() -> None:
    with pytest.raises(TraceError, match="binary") as exc:
        list(iter_text_trace(DATA / "binary.dat"))
    assert exc.value.source == str(DATA / "binary.dat")
    with pytest.raises(TraceError, match="binary"):
        list(iter_text_trace(DATA / "binary.dat", skip_bad_lines=True))


def test_binary_formats_are_named(tmp_path: Path) -> None:
    dat = tmp_path / "x.dat"
    dat.write_bytes(b"\x17\x08\x44tracing6\x00" + bytes(64))
    with pytest.raises(TraceError, match="trace.dat"):
        list(iter_text_trace(dat))


def test_invalid_utf8_is_not_a_decode_error(tmp_path: Path) -> None:
    p = tmp_path / "latin.txt"
    p.write_bytes(
        b"   caf\xe9-12    [000] d..2.   1.000001: sched_waking: comm=caf\xe9 pid=12 prio=120 "
        b"target_cpu=000\n\xff\xfe garbage\n"
    )
    with pytest.raises(TraceError) as exc:
        list(iter_text_trace(p))
    assert exc.value.line == 2


@pytest.mark.parametrize("name", ["empty.txt", "header_only.txt"])
def test_empty(name: str) -> None:
    reader, items = read(DATA / name)
    assert items == [] and reader.skipped == []


# ---------------------------------------------------------------------------------------------
# Inputs: compressed files, file objects, stdin, laziness


def _events_of(src: object) -> list[tuple]:
    return [_sched_key(e) for e in iter_text_trace(src)]  # type: ignore[arg-type]


def test_compressed_and_file_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = need_shared(TEXT / "opt_default.txt")
    data = path.read_bytes()
    want = _events_of(path)
    gz, xz = tmp_path / "t.txt.gz", tmp_path / "t.xz"
    gz.write_bytes(gzip.compress(data))
    xz.write_bytes(lzma.compress(data))
    assert _events_of(gz) == want
    assert _events_of(xz) == want
    assert _events_of(io.BytesIO(data)) == want
    assert _events_of(io.StringIO(data.decode())) == want
    with open(path, "rb") as fh:
        assert _events_of(fh) == want
        assert not fh.closed  # the caller's file stays open
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    reader = TextTraceReader("-")
    assert reader.source == "<stdin>"
    assert [_sched_key(e) for e in reader] == want


class _Endless(io.RawIOBase):
    """A trace_pipe that never ends: the reader must stream it."""

    LINE = (
        b"            bash-1       [000] d..2.   1.000001: sched_switch: prev_comm=bash prev_pid=1"
        b" prev_prio=120 prev_state=S ==> next_comm=cat next_pid=2 next_prio=120\n"
    )

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        n = len(buf)
        chunk = (self.LINE * (n // len(self.LINE) + 1))[:n]
        buf[:n] = chunk
        return n


def test_streams_lazily() -> None:
    items = list(islice(iter_text_trace(io.BufferedReader(_Endless())), 5000))
    assert len(items) == 5000 and all(i.name == "sched_switch" for i in items)


def test_iterate_once() -> None:
    reader = TextTraceReader(DATA / "empty.txt")
    list(reader)
    with pytest.raises(RuntimeError):
        iter(reader)


# ---------------------------------------------------------------------------------------------
# Helpers


def test_state_letters() -> None:
    assert state_letters(0) == "R"
    assert state_letters(0x100) == "R+"
    assert state_letters(0x1) == "S"
    assert state_letters(0x2 | 0x80) == "D|I"
    assert state_letters(0x101) == "S+"
    assert state_letters(0x1 | 0x200, preempt_bit=0x800) == "S|0x200"


def test_plugin_state_bits() -> None:
    assert plugin_state_bits("R") == 0
    assert plugin_state_bits("W") == 0x80
    assert plugin_state_bits("Z") == 0x10  # the plugin's Z is the kernel's X (EXIT_DEAD)
    assert plugin_state_bits("S|D") == 0x3


def test_split_kv() -> None:
    assert split_kv("a=1 b=x y c=0x1f") == ("", [("a", "1"), ("b", "x y"), ("c", "0x1f")])
    assert split_kv("(sym+0x0/0x8) v=2") == ("(sym+0x0/0x8)", [("v", "2")])
    assert split_kv("no pairs here") == ("no pairs here", [])
    assert split_kv("s=R ==> n=x") == ("", [("s", "R"), ("n", "x")])


def test_layout_regexes_share_group_order() -> None:
    """The event builder unpacks m.groups() positionally: every layout must agree."""
    from pyrv.sources import ftrace_text as ft

    rxs = [
        ft._context_re(report=r, tgid=t, flags=f)
        for r in (False, True)
        for t in (False, True)
        for f in (False, True)
    ]
    rxs += [ft._latency_re(report=False), ft._latency_re(report=True), ft._NOCONTEXT_RE]
    for rx in rxs:
        assert tuple(sorted(rx.groupindex, key=rx.groupindex.get)) == ft._GROUPS


def test_stack_trace_lines_are_skipped() -> None:
    text = (
        "            bash-1       [000] d..2.   1.000001: sched_switch: prev_comm=bash prev_pid=1"
        " prev_prio=120 prev_state=S ==> next_comm=cat next_pid=2 next_prio=120\n"
        "            bash-1       [000] d..2.   1.000002: <stack trace>\n"
        " => __schedule\n"
        " => schedule\n"
        "             cat-2       [000] d..2.   1.000003: sched_switch: prev_comm=cat prev_pid=2"
        " prev_prio=120 prev_state=S ==> next_comm=bash next_pid=1 next_prio=120\n"
    )
    items = list(iter_text_trace(io.StringIO(text)))
    assert [i.line for i in items] == [1, 5]
