"""The rtapp monitors (LTL) through hook tables, on small traces whose verdicts follow from
the rules of spec §4.13/§4.15 and the start semantics of §3.4, and on the recorded RT trace."""

from __future__ import annotations

import pytest

from pyrv.api import CheckError, CheckOptions, check
from pyrv.monitors.catalogue import build_rv
from tests.conftest import RECORDED, need_shared

HEAD = "# tracer: nop\n#\n"


def line(ts, cpu, pid, comm, flags, event, payload):
    return f"{comm:>16}-{pid:<7d} [{cpu:03d}] {flags} {ts:12.6f}: {event}: {payload}\n"


def switch(prev, pprio, state, nxt, nprio):
    return (
        f"prev_comm=t{prev} prev_pid={prev} prev_prio={pprio} prev_state={state} ==> "
        f"next_comm=t{nxt} next_pid={nxt} next_prio={nprio}"
    )


def run(tmp_path, monitors, lines, **kw):
    path = tmp_path / "t.txt"
    path.write_text(HEAD + "".join(lines))
    recs = []
    res = check(path, CheckOptions(monitors=monitors, on_record=recs.append, **kw))
    return [r for r in recs if r.kind == "error"], res


def fault(ts, pid, kind="page_fault_user"):
    return line(ts, 0, pid, f"t{pid}", "d....", kind, "address=0x1000 ip=0x2000 error_code=0x6")


def test_pagefault_after_becoming_rt(tmp_path):
    # 100 is normal (prio 120) at its first fault: all atoms known, RT false, the initial
    # state's label (not RT or not PAGEFAULT) holds: the monitor starts. Boosted to prio 50
    # (PI), its next fault makes RT and PAGEFAULT true together: no state survives.
    # 200 is already RT at its first fault: the start condition fails and it never starts.
    errors, res = run(
        tmp_path,
        ["pagefault"],
        [
            line(1.0, 0, 0, "<idle>", "d..2.", "sched_switch", switch(0, 120, "R", 100, 120)),
            fault(1.1, 100, "page_fault_kernel"),
            line(
                1.2,
                0,
                100,
                "t100",
                "d..2.",
                "sched_pi_setprio",
                "comm=t100 pid=100 oldprio=120 newprio=50",
            ),
            fault(1.3, 100),
            line(1.4, 0, 100, "t100", "d..2.", "sched_switch", switch(100, 50, "S", 200, 40)),
            fault(1.5, 200),
            fault(1.6, 200),
        ],
    )
    assert [(r.id, r.context.ts) for r in errors] == [(100, 1_300_000_000)]
    assert errors[0].payload() == "t100[100]: violation detected"
    assert res.monitors[0].violations == 1


def wakeup_trace(waker_prio, flags="d..3."):
    # 200 is a user task (task_newtask without CLONE_UNTRACED), RT (prio 69); its sys_exit
    # updates FUTEX_LOCK_PI := false with every atom known and the rule's premise not met
    # (no wakeup yet): the monitor starts. Then task 300 wakes it.
    return [
        line(0.9, 1, 5, "t5", ".....", "contention_begin", "00000000d8d93152 (flags=SPIN)"),
        line(0.91, 1, 5, "t5", ".....", "contention_end", "00000000d8d93152 (ret=0)"),
        line(
            1.0,
            0,
            1,
            "t1",
            ".....",
            "task_newtask",
            "pid=200 comm=t200 clone_flags=1200000 oom_score_adj=0",
        ),
        line(1.1, 0, 1, "t1", "d..2.", "sched_switch", switch(1, 120, "S", 200, 69)),
        line(1.2, 0, 200, "t200", ".....", "sys_enter", "NR 0 (3, 7ffd, 10, 0, 0, 0)"),
        line(1.3, 0, 200, "t200", ".....", "sys_exit", "NR 0 = 16"),
        line(1.4, 0, 200, "t200", "d..2.", "sched_switch", switch(200, 69, "S", 300, waker_prio)),
        line(
            1.5, 0, 300, "t300", flags, "sched_waking", "comm=t200 pid=200 prio=69 target_cpu=000"
        ),
    ]


def test_wakeup_by_a_lower_priority_task_is_a_violation(tmp_path):
    errors, _ = run(tmp_path, ["wakeup"], wakeup_trace(120))
    assert [(r.id, r.context.ts, r.context.pid) for r in errors] == [(200, 1_500_000_000, 300)]


def test_wakeup_by_a_higher_priority_task_is_fine(tmp_path):
    # no pulse at all; the next update (sys_exit) validates the live state: still fine
    later = [
        line(1.55, 0, 300, "t300", "d..2.", "sched_switch", switch(300, 50, "S", 200, 69)),
        line(1.6, 0, 200, "t200", ".....", "sys_exit", "NR 0 = 16"),
    ]
    errors, res = run(tmp_path, ["wakeup"], [*wakeup_trace(50), *later])
    assert errors == [] and res.monitors[0].transitions == 1


def test_wakeup_from_softirq_is_a_violation(tmp_path):
    errors, _ = run(tmp_path, ["wakeup"], wakeup_trace(50, flags="d.s3."))
    assert [r.id for r in errors] == [200]


def test_wakeup_needs_the_irq_info_column(tmp_path):
    lines = [
        ln.replace(" d..3. ", " ").replace(" d..2. ", " ").replace(" ..... ", " ")
        for ln in wakeup_trace(120)
    ]
    with pytest.raises(CheckError, match="wakeup need the probe context"):
        run(tmp_path, ["wakeup"], lines)


def test_sleep_is_refused_without_its_bare_tracepoint(tmp_path):
    with pytest.raises(CheckError, match="sched:sched_set_state_tp: bare tracepoints"):
        run(tmp_path, ["sleep"], wakeup_trace(120))


def test_rtapp_registered_as_in_the_kernel():
    rv = build_rv()
    assert (
        "rtapp\nrtapp:wakeup\nrtapp:sleep\nrtapp:pagefault\n"
        in rv.read("available_monitors").decode()
    )
    # three LTL monitors take three per-task slots: the default two are not enough (§1.3)
    with pytest.raises(OSError):
        rv.write("monitors/rtapp/enable", b"1")
    assert rv.read("enabled_monitors") == b""
    rv3 = build_rv(per_task_slots=3)
    rv3.write("monitors/rtapp/enable", b"1")
    assert rv3.read("enabled_monitors").decode().split() == [
        "rtapp",
        "rtapp:wakeup",
        "rtapp:sleep",
        "rtapp:pagefault",
    ]


def test_recorded_rt_trace_runs_every_monitor_whose_events_it_has():
    trace = need_shared(RECORDED / "rtapp" / "rt-pipe-faults.trace")
    res = check(trace, CheckOptions())
    assert {m.name for m in res.monitors} == {"wwnr", "stall", "pagefault", "wakeup"}


def test_a_container_runs_the_children_the_trace_can_feed():
    trace = need_shared(RECORDED / "rtapp" / "rt-pipe-faults.trace")
    notes = []
    res = check(trace, CheckOptions(monitors=["rtapp"], on_note=notes.append))
    assert [m.name for m in res.monitors] == ["wakeup", "pagefault"]
    assert len(notes) == 1 and "monitor sleep needs events missing" in notes[0]
    with pytest.raises(CheckError, match="monitor sleep needs"):  # asked for by name: an error
        check(trace, CheckOptions(monitors=["sleep"]))
