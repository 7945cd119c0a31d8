"""wwnr on the real recorded traces, against a tiny independent reference written from §4.2.

The reference below shares no code with pyrv: its own regexes read the sched_switch and
sched_wakeup lines, its own table is §4.2's, and it applies the resync rule of the core issue
(a CPU whose events carry another pid than its last switch's next task lost a switch: both
tasks are forgotten; a LOST/DROPPED marker forgets every task and what ran on its CPU).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyrv.api import CheckOptions, check
from tests.conftest import RECORDED, need_shared

LINE = re.compile(r"-(\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(\d+)\]\s+\S+\s+([\d.]+): (\w+):\s+(.*)$")
SW_KERNEL = re.compile(r"prev_pid=(\d+) .*prev_state=(\S+) ==> .*next_pid=(\d+)")
SW_PLUGIN = re.compile(r":(\d+) \[-?\d+\] (\S+) ==> .*:(\d+) \[-?\d+\]$")
WAKE_KERNEL = re.compile(r" pid=(\d+) ")
WAKE_PLUGIN = re.compile(r":(\d+) \[-?\d+\] CPU:\d+")
LOST = re.compile(r"^(?:\w+: )?CPU:(\d+) \[(?:LOST \d+ EVENTS|\d* ?EVENTS DROPPED)\]")
JUDGED = re.compile(r"^(sched_|irq_|softirq_|hrtimer_|timer_|sys_|tracing_mark_write|print)")

# §4.2: (state, event) -> next; states not_running (initial) / running
TABLE = {
    ("not_running", "switch_in"): "running",
    ("not_running", "wakeup"): "not_running",
    ("running", "switch_out"): "not_running",
}


def reference_wwnr(path: Path) -> list[tuple[str, int, str]]:
    """[(timestamp text, pid, state)] of every wwnr violation, by §4.2 and §3.3."""
    monitoring: dict[tuple[int, int], str] = {}  # (pid, cpu-if-idle) -> state
    running: dict[int, int] = {}
    errors = []

    def key(pid: int, cpu: int) -> tuple[int, int]:
        return (pid, cpu if pid == 0 else -1)

    def step(k, event, start, ts):
        if k not in monitoring:
            if start:
                monitoring[k] = "not_running"
            return
        nxt = TABLE.get((monitoring[k], event))
        if nxt is None:
            errors.append((ts, k[0], monitoring.pop(k)))
        else:
            monitoring[k] = nxt

    for text in path.read_text().splitlines():
        lost = LOST.search(text)
        if lost:
            monitoring.clear()
            running.pop(int(lost[1]), None)
            continue
        m = LINE.search(text)
        if not m:
            continue
        pid, cpu, ts, name, payload = int(m[1]), int(m[2]), m[3], m[4], m[5]
        if JUDGED.match(name):
            who = pid
            sw = (
                (SW_KERNEL.search(payload) or SW_PLUGIN.search(payload))
                if name == "sched_switch"
                else None
            )
            if sw:
                who = int(sw[1])
            if cpu in running and running[cpu] != who:
                monitoring.pop(key(running[cpu], cpu), None)
                monitoring.pop(key(who, cpu), None)
            running[cpu] = int(sw[3]) if sw else who
        if name == "sched_switch":
            prev, state, nxt = int(sw[1]), sw[2], int(sw[3])
            step(key(prev, cpu), "switch_out", state == "S", ts)
            step(key(nxt, cpu), "switch_in", False, ts)
        elif name == "sched_wakeup":
            w = WAKE_KERNEL.search(payload + " ") or WAKE_PLUGIN.search(payload)
            step(key(int(w[1]), cpu), "wakeup", False, ts)
    return errors


TRACES = [
    "ftrace-text/sched_trace.txt",
    "ftrace-text/opt_default.txt",
    "ftrace-text/opt_noirqinfo.txt",
    "ftrace-text/opt_tgid.txt",
    "ftrace-text/opt_unknown_comm.txt",
    "ftrace-text/opt_clock_global.txt",
    "ftrace-text/opt_clock_tai.txt",
    "ftrace-text/trace_pipe_lost_events.txt",
    "tracedat/report_default.txt",
    "tracedat/report_opt_N.txt",
    "tracedat/report_lost_events_instance_tfr.txt",
]


@pytest.mark.parametrize("name", TRACES)
def test_wwnr_violations_equal_the_reference(name):
    path = need_shared(RECORDED / name)
    expected = reference_wwnr(path)
    got = []

    def on_record(rec):
        if rec.kind == "error":
            ts = rec.context.ts
            got.append((f"{ts // 10**9}.{(ts // 1000) % 10**6:06d}", rec.id, rec.state))

    if "sched_wakeup" not in path.read_text():
        pytest.skip(f"{name} has no sched_wakeup events")
    check(path, CheckOptions(monitors=["wwnr"], on_record=on_record))
    assert got == expected


def test_text_and_report_of_the_same_buffer_agree():
    """sched_trace.txt and report_default.txt are one ring buffer read two ways."""
    text = need_shared(RECORDED / "ftrace-text/sched_trace.txt")
    report = need_shared(RECORDED / "tracedat/report_default.txt")
    verdicts = []
    for path in (text, report):
        recs = []
        check(path, CheckOptions(monitors=["wwnr"], on_record=recs.append))
        verdicts.append([(r.context.ts, r.id, r.state, r.event) for r in recs])
    assert verdicts[0] == verdicts[1]


@pytest.mark.parametrize("dat", ["sched_v6.dat", "sched_v7_nocomp.dat", "sched_v7_zstd.dat"])
def test_trace_dat_verifies_like_its_text(dat):
    """The .dat files hold the ring buffer that sched_trace.txt shows as text: every record of
    wwnr (transitions included) is the same; times agree to the text's rounded microsecond."""
    text = need_shared(RECORDED / "ftrace-text/sched_trace.txt")
    binary = need_shared(RECORDED / "tracedat" / dat)
    runs = []
    for path, to_us in ((text, lambda ns: ns // 1000), (binary, lambda ns: (ns + 500) // 1000)):
        recs = []
        check(path, CheckOptions(monitors=["wwnr"], emit_events=True, on_record=recs.append))
        runs.append(
            [
                (to_us(r.context.ts), r.context.cpu, r.id, r.state, r.event, r.next_state)
                for r in recs
            ]
        )
    assert len(runs[0]) > 3000 and runs[0] == runs[1]
