"""The sched container's monitors on traces that carry their (bare) tracepoints.

Each scenario is a small hand-written trace; the expected verdict is read off spec §4's table
for the monitor and its hook list (which entry point each tracepoint uses).
"""

from __future__ import annotations

import re

import pytest

from pyrv.api import CheckError, CheckOptions, check
from tests.conftest import RECORDED, REPO, need_shared

HEAD = "# tracer: nop\n#\n"


def line(ts: float, cpu: int, pid: int, comm: str, flags: str, event: str, payload: str) -> str:
    return f"{comm:>16}-{pid:<7d} [{cpu:03d}] {flags} {ts:12.6f}: {event}: {payload}\n"


def switch(prev, state, nxt):
    return (
        f"prev_comm=t{prev} prev_pid={prev} prev_prio=120 prev_state={state} ==> "
        f"next_comm=t{nxt} next_pid={nxt} next_prio=120"
    )


#: opid as kernels 6.17-7.0 had it (DA form), kept beside the bundled hybrid form
OPID_DA = REPO / "examples" / "opid-6.17.toml"


def run(tmp_path, monitor, lines, definitions=(), out=None):
    path = tmp_path / "t.txt"
    path.write_text(HEAD + "".join(lines))
    recs = []
    opts = CheckOptions(
        monitors=[monitor], on_record=recs.append, emit_events=True, definitions=definitions
    )
    check(path, opts)
    if out is not None:
        out.extend(recs)
    return [(r.kind, r.id, r.state, r.event, r.next_state) for r in recs]


def test_sco(tmp_path):
    # sched_set_state_tp -> start; sched_entry_tp -> handle; sched_exit_tp -> start (§4.4)
    got = run(
        tmp_path,
        "sco",
        [
            line(
                1.0, 0, 10, "a", "d..2.", "sched_entry_tp", "preempt=0"
            ),  # not monitoring: ignored
            line(1.1, 0, 10, "a", "d..2.", "sched_exit_tp", "is_switch=0"),  # start, dropped
            line(1.2, 0, 10, "a", "d..2.", "sched_entry_tp", "preempt=0"),
            line(1.3, 0, 10, "a", "d..2.", "sched_set_state_tp", "pid=10 state=1"),
        ],
    )
    assert got == [
        ("event", None, "thread_context", "schedule_entry", "scheduling_context"),
        ("error", None, "scheduling_context", "sched_set_state", None),
    ]


def test_snroc(tmp_path):
    # set_state on another task's instance in other_context is not allowed (§4.5)
    got = run(
        tmp_path,
        "snroc",
        [
            line(1.0, 0, 10, "a", "d..2.", "sched_switch", switch(10, "S", 11)),  # 10: start
            line(1.1, 0, 11, "b", "d..2.", "sched_set_state_tp", "pid=10 state=1"),
        ],
    )
    assert got == [("error", 10, "other_context", "sched_set_state", None)]


def test_sssw(tmp_path):
    got = run(
        tmp_path,
        "sssw",
        [
            line(1.0, 1, 3, "w", "d..2.", "sched_wakeup", "comm=t5 pid=5 prio=120 target_cpu=000"),
            line(1.1, 0, 5, "t5", "d..2.", "sched_switch", switch(5, "R+", 0)),  # preempt
            line(1.2, 0, 0, "<idle>", "d..2.", "sched_switch", switch(0, "R", 5)),  # 5 in
            line(1.3, 0, 5, "t5", "....1", "sched_set_state_tp", "pid=5 state=1"),  # sleepable
            line(1.4, 0, 5, "t5", "d..2.", "sched_switch", switch(5, "S", 0)),  # suspend
            line(
                1.5,
                1,
                7,
                "x",
                "....1",
                "signal_deliver",
                "sig=10 errno=0 code=0 sa_handler=0 sa_flags=0",
            ),  # current is 7: not monitored
            line(1.6, 1, 3, "w", "d..2.", "sched_wakeup", "comm=t5 pid=5 prio=120 target_cpu=000"),
        ],
    )
    assert got == [
        ("event", 5, "runnable", "sched_switch_preempt", "runnable"),
        ("event", 5, "runnable", "sched_switch_in", "runnable"),
        ("event", 5, "runnable", "sched_set_state_sleepable", "sleepable"),
        ("event", 5, "sleepable", "sched_switch_suspend", "sleeping"),
        ("event", 5, "sleeping", "sched_wakeup", "runnable"),
    ]


def test_opid_hybrid_form(tmp_path):
    """§4.11 (hybrid form) and §8 "rv: Convert the opid monitor to a hybrid automaton": both
    hooks are start_run, so a CPU's very first event is judged (the v4 note: not lost);
    sched_waking needs irq_off == 1 && preempt_off == 1, need_resched irq_off == 1, read from
    the probe context (irq-info column: 'd' = irqs off, 4th column = preempt depth); a failed
    guard is error_env with the env string (§5), reacts with the HA message (§2) and resets the
    CPU's instance, which the next start_run event starts again."""
    waking = "comm=b pid=11 prio=120 target_cpu=000"
    need = "pid=11 cpu=0 tif=3"
    recs = []
    got = run(
        tmp_path,
        "opid",
        [
            line(1.0, 0, 10, "a", "...1.", "sched_waking", waking),  # first event: judged
            line(1.1, 0, 10, "a", "d..2.", "sched_waking", waking),  # restarted, allowed
            line(1.2, 0, 10, "a", "d....", "sched_waking", waking),  # preemption enabled
            line(1.3, 1, 12, "c", "d....", "sched_set_need_resched_tp", need),  # irqs off: ok
            line(1.4, 1, 12, "c", "...1.", "sched_set_need_resched_tp", need),  # irqs on
            line(1.5, 1, 12, "c", "d.h1.", "sched_waking", waking),  # in hardirq: still judged
        ],
        out=recs,
    )
    assert got == [
        ("error_env", None, "any", "sched_waking", None),
        ("event", None, "any", "sched_waking", "any"),
        ("error_env", None, "any", "sched_waking", None),
        ("event", None, "any", "sched_need_resched", "any"),
        ("error_env", None, "any", "sched_need_resched", None),
        ("event", None, "any", "sched_waking", "any"),
    ]
    errors = [r for r in recs if r.kind == "error_env"]
    assert [r.payload() for r in errors] == [
        "event sched_waking not expected in the state any with env irq_off=0,preempt_off=1",
        "event sched_waking not expected in the state any with env irq_off=1,preempt_off=0",
        "event sched_need_resched not expected in the state any with env irq_off=0,preempt_off=1",
    ]
    assert errors[0].reaction_message() == (
        "rv: monitor opid does not allow event sched_waking on state any with env "
        "irq_off=0,preempt_off=1\n"
    )
    assert [r.context.cpu for r in recs] == [0, 0, 0, 1, 1, 1]


def test_opid_hybrid_needs_the_probe_context_and_the_bare_tracepoint(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(
        HEAD + f"{'a':>16}-10      [000] {1.0:12.6f}: sched_waking: comm=b pid=11 prio=120 "
        "target_cpu=000\n"
        f"{'a':>16}-10      [000] {1.1:12.6f}: sched_set_need_resched_tp: pid=11 cpu=0 tif=3\n"
    )
    with pytest.raises(CheckError, match="opid need the probe context"):
        check(path, CheckOptions(monitors=["opid"]))
    path.write_text(
        HEAD
        + line(1.0, 0, 10, "a", "d..2.", "sched_waking", "comm=b pid=11 prio=120 target_cpu=000")
    )
    with pytest.raises(CheckError, match=r"sched:sched_set_need_resched_tp: bare tracepoint"):
        check(path, CheckOptions(monitors=["opid"]))


def test_opid_da_form_starts_only_outside_hardirq(tmp_path):
    # need_resched/waking: handle in hardirq, start outside it (initial state is not in_irq)
    unmonitored = [  # every hooked event occurs, before any start: handle ignores them all
        line(0.5, 0, 10, "a", "d..1.", ev, "caller=x+0x1/0x2 parent=0x0")
        for ev in ("irq_disable", "irq_enable", "preempt_disable", "preempt_enable")
    ] + [line(0.6, 0, 10, "a", "d.h1.", "irq_handler_entry", "irq=1 name=x")]
    got = run(
        tmp_path,
        "opid",
        unmonitored
        + [
            line(
                1.0, 0, 10, "a", "d.h2.", "sched_waking", "comm=b pid=11 prio=120 target_cpu=000"
            ),  # in hardirq, not monitoring: ignored
            line(
                1.1, 0, 10, "a", "d..2.", "sched_waking", "comm=b pid=11 prio=120 target_cpu=000"
            ),  # start, dropped
            line(1.2, 0, 10, "a", "d..2.", "sched_waking", "comm=b pid=11 prio=120 target_cpu=000"),
            line(1.3, 0, 10, "a", "d..2.", "irq_enable", "caller=x+0x1/0x2 parent=0x0"),
            line(1.4, 0, 10, "a", "....1", "sched_set_need_resched_tp", "pid=11 cpu=0 tif=3"),
        ],
        definitions=[OPID_DA],
    )
    assert got == [
        ("event", None, "disabled", "sched_waking", "disabled"),
        ("event", None, "disabled", "irq_enable", "preempt_disabled"),
        ("error", None, "preempt_disabled", "sched_need_resched", None),
    ]


def test_nrp_ignores_the_lazy_bit(tmp_path):
    got = run(
        tmp_path,
        "nrp",
        [
            line(1.0, 0, 10, "a", "d..2.", "sched_set_need_resched_tp", "pid=10 cpu=0 tif=4"),
            line(1.1, 0, 10, "a", "d..2.", "sched_set_need_resched_tp", "pid=10 cpu=0 tif=3"),
            line(1.2, 0, 10, "a", "d.h2.", "irq_handler_entry", "irq=11 name=eth0"),
            line(1.3, 0, 10, "a", "d..2.", "sched_entry_tp", "preempt=1"),
            line(1.4, 0, 10, "a", "d..2.", "sched_entry_tp", "preempt=0"),
        ],
    )
    assert got == [
        ("event", 10, "preempt_irq", "irq_entry", "preempt_irq"),
        ("event", 10, "preempt_irq", "schedule_entry_preempt", "nested_preempt"),
        ("event", 10, "nested_preempt", "schedule_entry", "any_thread_running"),
    ]


def test_monitor_reading_probe_context_needs_the_irq_info_column(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(
        HEAD
        + "".join(
            f"{'a':>16}-10      [000] {ts:12.6f}: {ev}: {p}\n"
            for ts, ev, p in [
                (1.0, "sched_waking", "comm=b pid=11 prio=120 target_cpu=000"),
                (1.1, "sched_set_need_resched_tp", "pid=11 cpu=0 tif=3"),
                (1.2, "irq_enable", "caller=x+0x1/0x2 parent=0x0"),
                (1.3, "irq_disable", "caller=x+0x1/0x2 parent=0x0"),
                (1.4, "irq_handler_entry", "irq=1 name=x"),
                (1.5, "preempt_enable", "caller=x+0x1/0x2 parent=0x0"),
                (1.6, "preempt_disable", "caller=x+0x1/0x2 parent=0x0"),
            ]
        )
    )
    with pytest.raises(CheckError, match="opid need the probe context"):
        check(path, CheckOptions(monitors=["opid"], definitions=[OPID_DA]))


def test_bare_tracepoints_are_named_when_missing(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(HEAD + line(1.0, 0, 10, "a", "d..2.", "sched_switch", switch(10, "S", 11)))
    with pytest.raises(CheckError, match=r"sched:sched_set_state_tp: bare tracepoints"):
        check(path, CheckOptions(monitors=["snroc"]))


OPID_WAKING_ONLY = """\
[monitor]
name = "opidw"
description = "opid's sched_waking hook alone (real traces lack the bare need_resched tp)"
type = "per_cpu"
model = "opid"

[[hooks]]
tracepoint = "sched:sched_waking"
entry = "start_run"
event = "sched_waking"

[env]
irq_off = "common_irqs_off == 1"
preempt_off = "common_preempt_depth > 0"
"""


def _opid_wakings(text: str) -> tuple[int, int]:
    """sched_waking lines of a text trace, and those its flags show with irqs or preemption on."""
    flags = [
        next(w for w in ln.split() if len(w) == 5 and w[0] in ".dD")
        for ln in text.splitlines()
        if " sched_waking: " in ln
    ]
    return len(flags), sum(1 for f in flags if f[0] not in "dD" or f[3] in ".0")


@pytest.mark.parametrize("variant", ["text", "text-edited", "trace.dat"])
def test_opid_env_on_a_real_trace_text_and_binary(tmp_path, variant):
    """opid's guard on the real trace's sched_waking events, read from the irq-info column of
    the text and from common_flags/common_preempt_count of the trace.dat of the same buffer:
    every waking is judged (start_run, one state), and the violations are exactly the events
    the text shows without 'd' or with preempt depth 0 (counted here from the text itself).
    The recorded kernel woke every task with both off; the edited copy turns irqs on for every
    50th waking and preemption on for every 70th."""
    text = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt").read_text()
    trace = RECORDED / (
        "tracedat/sched_v6.dat" if variant == "trace.dat" else "ftrace-text/sched_trace.txt"
    )
    if variant == "text-edited":
        lines, n = [], 0
        for ln in text.splitlines(keepends=True):
            if " sched_waking: " in ln:
                n += 1
                if n % 50 == 0:
                    ln = ln.replace(" d", " .", 1)
                if n % 70 == 0:
                    ln = re.sub(r"(\s[.dD][.Nn][.hsHzZ])[0-9a-f](\S\s)", r"\g<1>0\2", ln, count=1)
            lines.append(ln)
        text = "".join(lines)
        trace = tmp_path / "edited.txt"
        trace.write_text(text)
    wakings, bad = _opid_wakings(text)
    assert variant != "text-edited" or bad >= 25
    defn = tmp_path / "opidw.toml"
    defn.write_text(OPID_WAKING_ONLY)
    res = check(trace, CheckOptions(monitors=["opidw"], definitions=[defn]))
    (mon,) = res.monitors
    assert mon.hooked_events == wakings and res.violations == bad
