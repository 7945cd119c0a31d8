"""stall (§4.16): its definition, hand-made schedules, and real traces against an independent
computation of the waits the monitor observes.

§4.16 in words: a task is watched from the first time it is switched out asleep (the start
event). A wait begins when a sleeping task is woken, or when a running task is switched out
still runnable (preempted or yielding: ``R+`` / ``R``); a further wakeup does not restart it;
it ends when the task is switched in. A wait that lasts ``threshold_jiffies`` or longer is a
stall, reported when the threshold is reached (the invariant ``clk < threshold`` turns false:
a timer, event ``none``), after which the task is no longer watched until it is next switched
out asleep. A step the table does not have (e.g. switched in while asleep: the trace lost its
wakeup) is a DA error, also ending the watch.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from pathlib import Path

import pytest

from pyrv.monitors.catalogue import definitions_dir, load_monitor_definition
from pyrv.monitors.da import Entry, MonitorType
from pyrv.monitors.dispatch import Dispatcher
from pyrv.monitors.ha import EnvRecord, HAMonitor, build_ha_monitor
from pyrv.monitors.records import Context, Record
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.ftrace_text import TextTraceReader
from tests.conftest import CONFORMANCE, RECORDED, need_shared

DEF = load_monitor_definition(definitions_dir() / "stall.toml")
MS = 1_000_000


def build(threshold: int, hz: int = 250) -> tuple[HAMonitor, list[Record], list[str]]:
    mon = build_ha_monitor(DEF, params={"threshold_jiffies": threshold}, hz=hz)
    out: list[Record] = []
    reactions: list[str] = []
    mon.sink = out.append
    mon.react = reactions.append  # type: ignore[method-assign]
    mon.enabled = True
    mon.emit_events = True
    return mon, out, reactions


def switch(ts: int, prev: int, state: str, nxt: int, cpu: int = 0) -> TraceEvent:
    fields = {
        "prev_comm": f"t{prev}",
        "prev_pid": prev,
        "prev_prio": 120,
        "prev_state": state,
        "next_comm": f"t{nxt}",
        "next_pid": nxt,
        "next_prio": 120,
    }
    return TraceEvent(ts, cpu, prev, f"t{prev}", "sched_switch", fields, "sched")


def wakeup(ts: int, pid: int, waker: int = 1, cpu: int = 0) -> TraceEvent:
    fields = {"comm": f"t{pid}", "pid": pid, "prio": 120, "target_cpu": cpu}
    return TraceEvent(ts, cpu, waker, f"t{waker}", "sched_wakeup", fields, "sched")


def run(mon: HAMonitor, events: list[TraceEvent]) -> None:
    disp = Dispatcher([mon])
    for ev in events:
        disp.feed(ev)
    mon.finish(events[-1].ts)


def lines(out: list[Record]) -> list[str]:
    return [f"{r.context.ts // 1000}us {r.kind}: {r.payload()}" for r in out]


# --------------------------------------------------------------------------- the definition


def test_definition_is_spec_4_16():
    assert (DEF.name, DEF.type, DEF.description) == (
        "stall",
        MonitorType.PER_TASK,
        "identify tasks stalled for longer than a threshold.",
    )
    assert [(h.tracepoint, h.target, h.entry, h.model_event_name) for h in DEF.hooks] == [
        ("sched:sched_switch", "prev_pid", Entry.START, "sched_switch_wait"),
        ("sched:sched_switch", "prev_pid", Entry.HANDLE, "sched_switch_preempt"),
        ("sched:sched_switch", "next_pid", Entry.HANDLE, "sched_switch_in"),
        ("sched:sched_wakeup", "pid", Entry.HANDLE, "sched_wakeup"),
    ]


@pytest.mark.parametrize(
    ("prev_state", "event"),
    [
        ("R", "sched_switch_preempt"),  # switched out while TASK_RUNNING (yield)
        ("R+", "sched_switch_preempt"),  # preempted, whatever its state
        ("S", "sched_switch_wait"),
        ("D", "sched_switch_wait"),
        ("I", "sched_switch_wait"),
        ("T", "sched_switch_wait"),
        ("t", "sched_switch_wait"),
        ("X", "sched_switch_wait"),
        ("Z", "sched_switch_wait"),
        ("P", "sched_switch_wait"),
        ("D|K", "sched_switch_wait"),
        ("S|W", "sched_switch_wait"),
    ],
)
def test_prev_state_picks_exactly_one_prev_hook(prev_state: str, event: str):
    picked = [
        h.model_event_name
        for h in DEF.hooks
        if h.target == "prev_pid" and h.when is not None and h.when({"prev_state": prev_state})
    ]
    assert picked == [event]


def test_model_is_bundled_and_hybrid():
    mon, _, _ = build(1000)
    assert mon.definition is DEF and mon.model.table() == DEF.model.table()
    assert next(iter(mon.hybrid.invariants.values())).bound_ns == 4_000 * MS


# --------------------------------------------------------------------------- hand-made schedules


def test_a_short_wait_passes_and_a_long_one_stalls():
    mon, out, reactions = build(1)  # 1 jiffy = 4 ms at HZ=250
    run(
        mon,
        [
            switch(0, 42, "S", 7),  # start: dequeued (event dropped)
            wakeup(1 * MS, 42),  # enqueued, clk reset, timer for 5 ms
            switch(3 * MS, 7, "R", 42),  # in after 2 ms: fine; 7 is not watched
            switch(5 * MS, 42, "R+", 7),  # preempted: enqueued, clk reset, timer for 9 ms
            switch(10 * MS, 7, "S", 42),  # in after 5 ms: the timer fired at 9 ms
            switch(11 * MS, 42, "S", 0),  # starts again
        ],
    )
    assert lines(out) == [
        "1000us event: 42: dequeued x sched_wakeup -> enqueued",
        "3000us event: 42: enqueued x sched_switch_in -> running",
        "5000us event: 42: running x sched_switch_preempt -> enqueued",
        "9000us error_env: 42: event none not expected in the state enqueued with env clk=1",
    ]
    assert reactions == [
        "rv: monitor stall does not allow event none on state enqueued with env clk=1\n"
    ]
    assert mon.instances == {7: 0, 42: 0}  # both started by their sleep switch-outs


def test_a_second_wakeup_does_not_restart_the_wait():
    mon, out, _ = build(1)
    run(
        mon,
        [
            switch(0, 42, "S", 7),
            wakeup(1 * MS, 42),
            wakeup(3 * MS, 42),  # enqueued x wakeup -> enqueued: no reset
            switch(6 * MS, 7, "S", 42),
        ],
    )
    assert lines(out)[-1] == (
        "5000us error_env: 42: event none not expected in the state enqueued with env clk=1"
    )


def test_switch_in_at_the_deadline_fails_with_its_own_name():
    mon, out, _ = build(1)
    run(mon, [switch(0, 42, "S", 7), wakeup(1 * MS, 42), switch(5 * MS, 7, "S", 42)])
    assert lines(out)[-1] == (
        "5000us error_env: 42: event sched_switch_in not expected in the state enqueued "
        "with env clk=1"
    )
    assert [r.kind for r in out] == ["event", "error_env"]  # no event record for it


def test_a_wait_still_open_at_the_end_of_the_trace():
    mon, out, _ = build(1)
    run(mon, [switch(0, 42, "S", 7), wakeup(1 * MS, 42), wakeup(5 * MS, 99)])
    assert lines(out)[-1] == (
        "5000us error_env: 42: event none not expected in the state enqueued with env clk=1"
    )


def test_switched_in_while_asleep_is_a_da_error():
    mon, out, reactions = build(1000)
    run(mon, [switch(0, 42, "S", 7), switch(1 * MS, 7, "S", 42)])  # its wakeup is not seen
    assert lines(out) == [
        "1000us error: 42: event sched_switch_in not expected in the state dequeued"
    ]
    assert reactions == [
        "rv: monitor stall does not allow event sched_switch_in on state dequeued\n"
    ]


def test_timer_context_from_the_factory():
    mon, out, _ = build(1)
    mon.timer_context = lambda ts, cpu: Context(ts, cpu, 0, "<idle>")
    mon.advance_time(0)
    mon.handle(
        Entry.START,
        42,
        mon.model.events.index("sched_switch_wait"),
        Context(0, 1, 42, "t42"),
    )
    mon.handle(
        Entry.HANDLE,
        42,
        mon.model.events.index("sched_wakeup"),
        Context(1 * MS, 1, 7, "t7"),
    )
    mon.finish(9 * MS)
    assert out[-1].trace_line() == (
        "          <idle>-0       [001]     0.005000: error_env_stall: 42: event none not "
        "expected in the state enqueued with env clk=1"
    )


def test_the_dispatcher_stamps_a_timer_with_the_task_running_on_its_cpu():
    mon, out, _ = build(1)
    run(mon, [switch(0, 42, "S", 7, cpu=1), wakeup(1 * MS, 42, waker=7, cpu=1), wakeup(9 * MS, 5)])
    assert out[-1].trace_line() == (
        "              t7-7       [001]     0.005000: error_env_stall: 42: event none not "
        "expected in the state enqueued with env clk=1"
    )


def test_a_timer_names_the_task_that_ran_when_it_fired_not_the_one_after():
    """Woken at 1 ms (by t7), t200 switched in at 3 ms, the CPU's next event is t200's switch
    to t300 at 9 ms: the 4 ms deadline (5 ms) passed while t200 ran, so the record names t200,
    not t300 (the task switched in by the event that let time pass)."""
    mon, out, _ = build(1)
    run(
        mon,
        [
            switch(0, 100, "S", 7, cpu=0),
            wakeup(1 * MS, 100, waker=7),
            switch(3 * MS, 7, "R+", 200, cpu=0),
            switch(9 * MS, 200, "S", 300, cpu=0),
        ],
    )
    assert out[-1].kind == "error_env" and out[-1].context.ts == 5 * MS
    assert (out[-1].context.pid, out[-1].context.comm) == (200, "t200")


# --------------------------------------------------------------------------- real traces

TRACES = [
    RECORDED / "ftrace-text" / "sched_trace.txt",
    CONFORMANCE / "traces" / "trace-pipes" / "trace.txt.xz",
    CONFORMANCE / "traces" / "trace-contention" / "trace.txt.xz",
]


@functools.cache
def trace_events(path: Path) -> tuple[TraceEvent, ...]:
    items = list(TextTraceReader(need_shared(path)))
    assert not any(isinstance(i, LostEvents) for i in items), "the oracle assumes no loss"
    return tuple(i for i in items if isinstance(i, TraceEvent))


def reference(events: tuple[TraceEvent, ...], threshold_ns: int):
    """Stalls as {(pid, time)} and impossible steps as {(pid, time, phase, step)}.

    Independent of pyrv's model and engine: every task's scheduling history is collected
    first, then walked once, measuring each wait against the threshold.
    """
    history: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)

    def task(pid: int, cpu: int) -> tuple[int, int]:
        return (pid, cpu if pid == 0 else -1)  # each CPU's idle task is its own task

    for ev in events:
        f = ev.fields
        if ev.name == "sched_switch":
            out = "yield" if f["prev_state"] in ("R", "R+") else "sleep"
            history[task(f["prev_pid"], ev.cpu)].append((ev.ts, out))
            history[task(f["next_pid"], ev.cpu)].append((ev.ts, "in"))
        elif ev.name == "sched_wakeup":
            history[task(f["pid"], ev.cpu)].append((ev.ts, "wakeup"))
    end = events[-1].ts

    stalls: set[tuple[int, int]] = set()
    impossible: set[tuple[int, int, str, str]] = set()
    for (pid, _), steps in history.items():
        phase = None  # not watched; else "asleep", "waiting" (since wait_start), "on_cpu"
        wait_start = 0
        for ts, step in steps:
            if phase == "waiting" and ts - wait_start >= threshold_ns:
                # the wait reached the threshold before (or exactly at) this step
                stalls.add((pid, wait_start + threshold_ns))
                phase = None
                if ts - wait_start == threshold_ns:
                    continue  # this very step was refused by the expired invariant
            if phase is None:
                if step == "sleep":
                    phase = "asleep"
                continue
            if (phase, step) in (("asleep", "wakeup"), ("on_cpu", "yield")):
                phase, wait_start = "waiting", ts  # a wait begins
            elif phase == "on_cpu" and step == "sleep":
                phase = "asleep"
            elif (phase, step) in (("waiting", "in"), ("on_cpu", "in"), ("on_cpu", "wakeup")):
                phase = "on_cpu"
            elif (phase, step) == ("waiting", "wakeup"):
                pass
            else:
                impossible.add((pid, ts, phase, step))
                phase = None
        if phase == "waiting" and end - wait_start >= threshold_ns:
            stalls.add((pid, wait_start + threshold_ns))
    return stalls, impossible


PHASE = {"dequeued": "asleep", "enqueued": "waiting", "running": "on_cpu"}
STEP = {
    "sched_switch_in": "in",
    "sched_switch_wait": "sleep",
    "sched_switch_preempt": "yield",
    "sched_wakeup": "wakeup",
}


@pytest.mark.parametrize(("threshold", "hz"), [(1, 250), (1, 1000), (3, 1000)])
@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.parent.name + "/" + p.name)
def test_real_trace_stalls_match_the_waits(path: Path, threshold: int, hz: int):
    events = trace_events(path)
    mon, out, reactions = build(threshold, hz)
    mon.emit_events = False
    disp = Dispatcher([mon])
    for ev in events:
        disp.feed(ev)
    mon.finish(events[-1].ts)

    stalls, impossible = reference(events, threshold * (10**9 // hz))
    got_stalls = {(r.id, r.context.ts) for r in out if isinstance(r, EnvRecord)}
    got_impossible = {
        (r.id, r.context.ts, PHASE[r.state], STEP[r.event])
        for r in out
        if not isinstance(r, EnvRecord)
    }
    assert stalls, "the threshold is small enough for some waits to stall"
    assert got_stalls == stalls
    assert got_impossible == impossible
    assert len(out) == len(got_stalls) + len(got_impossible) == len(reactions)
    # a stall is always reported at the threshold: the clock reads it exactly, in jiffies
    assert {r.env for r in out if isinstance(r, EnvRecord)} == {f"clk={threshold}"}


def test_default_threshold_finds_no_stall_in_the_recorded_trace():
    events = trace_events(TRACES[0])
    mon, out, _ = build(1000)
    run(mon, list(events))
    assert not any(isinstance(r, EnvRecord) for r in out)


@pytest.mark.parametrize("path", TRACES[1:], ids=lambda p: p.parent.name)
def test_pyrv_check_runs_stall_with_its_parameters(path: Path):
    """The same verdicts through the registry, the catalogue and the CLI's options."""
    from pyrv.api import CheckOptions, check

    events = trace_events(path)
    stalls, impossible = reference(events, 1 * (10**9 // 1000))
    out: list[Record] = []
    res = check(
        path,
        CheckOptions(
            monitors=["stall"], params={"threshold_jiffies": 1}, hz=1000, on_record=out.append
        ),
    )
    assert {(r.id, r.context.ts) for r in out if isinstance(r, EnvRecord)} == stalls
    assert res.monitors[0].violations == len(stalls) + len(impossible)
