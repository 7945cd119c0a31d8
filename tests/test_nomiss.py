"""nomiss and the deadline container (spec §4.17, §4.18, §3.5) on hand-written traces.

Each trace carries the bare deadline tracepoints under the names pyrv declares for them
(``sched_dl_replenish_tp: dl_se=ID cpu=N type=T``). The expected verdicts are read off
§4.18's table (which transitions exist, which reset the clock, the guards on ``dl_throttle``)
and §3.5 (an invariant ``clk < DEADLINE_NS`` in ``ready``/``running`` is checked at the next
event and by a timer armed on entering the state; a failed guard or invariant is an
``error_env`` record; an event the table does not have is a DA ``error`` record), with
DEADLINE_NS = relative deadline + deadline_thresh.

Tasks here have a relative deadline of 10 ms and deadline_thresh is 1 ms: DEADLINE_NS = 11 ms.
Servers (ids <= 0) have the fair server's 1 s deadline.
"""

from __future__ import annotations

import pytest

from pyrv.api import CheckError, CheckOptions, check
from pyrv.models.hybrid import load_bundled_hybrid
from pyrv.monitors.catalogue import build_monitor, build_rv, kernel_definitions
from pyrv.monitors.da import Entry, MonitorType
from pyrv.sources.tracepoints import BARE, lookup

MS = 1_000_000
PARAMS = {"dl_deadline_ns": 10 * MS, "deadline_thresh": 1 * MS}
HEAD = "# tracer: nop\n#\n"
DL = 100  # a SCHED_DEADLINE task


def line(ts: float, event: str, payload: str, cpu: int = 0, pid: int | None = None) -> tuple:
    """One event; ``pid`` None: in the context of the task running on ``cpu`` (see render)."""
    return (ts, cpu, pid, event, payload)


def render(events) -> str:
    """Text lines whose context is consistent with the switches (pyrv checks that a CPU's
    events come from the task its last sched_switch put there, and resyncs otherwise)."""
    running: dict[int, int] = {}
    out = []
    for ts, cpu, pid, event, payload in events:
        if pid is None:
            pid = running.get(cpu, 0)
        running[cpu] = pid
        if event == "sched_switch":
            running[cpu] = int(payload.rsplit("next_pid=", 1)[1].split()[0])
        out.append(
            f"{'t' + str(pid):>16}-{pid:<7d} [{cpu:03d}] d..2. {ts:12.6f}: {event}: {payload}\n"
        )
    return HEAD + "".join(out)


def switch(ts, prev, state, nxt, cpu=0, prev_prio=None, next_prio=None):
    pp = prev_prio if prev_prio is not None else (-1 if prev == DL else 120)
    np = next_prio if next_prio is not None else (-1 if nxt == DL else 120)
    payload = (
        f"prev_comm=t{prev} prev_pid={prev} prev_prio={pp} prev_state={state} ==> "
        f"next_comm=t{nxt} next_pid={nxt} next_prio={np}"
    )
    return line(ts, "sched_switch", payload, cpu)


def dl(ts, what, ident, type_=1, cpu=0):
    return line(ts, f"sched_dl_{what}_tp", f"dl_se={ident} cpu={cpu} type={type_}", cpu)


def wakeup(ts, pid=DL, prio=-1, cpu=0):
    return line(ts, "sched_wakeup", f"comm=t{pid} pid={pid} prio={prio} target_cpu={cpu:03d}", cpu)


#: a text trace is refused unless every required event occurs (pyrv's presence scan): these
#: occurrences are of a DL_OTHER entity (type 0, which nomiss ignores) and of a fair task
PREAMBLE = [dl(0.5, what, 0, type_=0) for what in ("replenish", "throttle", "server_stop")] + [
    wakeup(0.5, pid=9, prio=120)
]


def run(tmp_path, lines, monitors=("nomiss",), params=PARAMS):
    path = tmp_path / "t.txt"
    path.write_text(render(PREAMBLE + list(lines)))
    recs = []
    result = check(
        path,
        CheckOptions(
            monitors=list(monitors),
            on_record=recs.append,
            emit_events=True,
            params=dict(params),
        ),
    )
    return recs, result


def verdicts(recs):
    out = []
    for r in recs:
        row = (r.kind, r.id, r.state, r.event, r.next_state)
        if r.kind == "error_env":
            row = (*row[:4], r.env)
        out.append(row)
    return out


# --------------------------------------------------------------------------- model, hooks


#: §4.18's table, transcribed: (state, event) -> next state
TABLE = {
    ("idle", "dl_replenish"): "ready",
    ("idle", "dl_server_idle"): "idle",
    ("idle", "dl_server_stop"): "sleeping",
    ("idle", "dl_throttle"): "throttled",
    ("idle", "sched_switch_in"): "running",
    ("ready", "dl_replenish"): "ready",
    ("ready", "dl_server_idle"): "idle",
    ("ready", "dl_server_stop"): "sleeping",
    ("ready", "dl_throttle"): "throttled",
    ("ready", "sched_switch_in"): "running",
    ("ready", "sched_wakeup"): "ready",
    ("running", "dl_replenish"): "running",
    ("running", "dl_server_idle"): "idle",
    ("running", "dl_server_stop"): "sleeping",
    ("running", "dl_throttle"): "throttled",
    ("running", "sched_switch_in"): "running",
    ("running", "sched_switch_suspend"): "sleeping",
    ("running", "sched_wakeup"): "running",
    ("sleeping", "dl_replenish"): "ready",
    ("sleeping", "dl_server_idle"): "sleeping",
    ("sleeping", "dl_server_stop"): "sleeping",
    ("sleeping", "dl_throttle"): "throttled",
    ("sleeping", "sched_switch_in"): "running",
    ("sleeping", "sched_wakeup"): "ready",
    ("throttled", "dl_replenish"): "ready",
    ("throttled", "dl_server_idle"): "throttled",
    ("throttled", "dl_throttle"): "throttled",
    ("throttled", "sched_switch_suspend"): "throttled",
    ("throttled", "sched_wakeup"): "throttled",
}


def test_model_is_spec_4_18():
    h = load_bundled_hybrid("deadline/nomiss", {"DEADLINE_NS": 11 * MS})
    a = h.automaton
    assert a.states == ("ready", "idle", "running", "sleeping", "throttled")
    assert a.events == (
        "dl_replenish",
        "dl_server_idle",
        "dl_server_stop",
        "dl_throttle",
        "sched_switch_in",
        "sched_switch_suspend",
        "sched_wakeup",
    )
    assert a.table() == TABLE and {a.states[f] for f in a.finals} == {"ready"}
    assert [(e.name, e.kind) for e in h.envs] == [
        ("clk", "ns"),
        ("is_constr_dl", "value"),
        ("is_defer", "value"),
    ]
    assert {a.states[s]: i.text for s, i in h.invariants.items()} == {
        "ready": "clk < DEADLINE_NS",
        "running": "clk < DEADLINE_NS",
    }
    resets = {(a.states[s], a.events[e]) for (s, e), r in h.rules.items() if r.resets}
    assert resets == {
        (s, "dl_replenish") for s in ("idle", "ready", "running", "sleeping", "throttled")
    }
    guards = {(a.states[s], a.events[e]): r.guard_text for (s, e), r in h.rules.items() if r.guard}
    assert guards == {
        ("ready", "dl_throttle"): "is_defer == 1",
        ("sleeping", "dl_throttle"): "is_constr_dl == 1 || is_defer == 1",
    }


def test_registered_as_in_the_kernel():
    # §1.1: ... stall, deadline, nomiss, wakeup; the child listed after its container
    rv = build_rv()
    names = rv.read("available_monitors").decode().split()
    assert names[names.index("stall") :] == ["stall", "deadline", "deadline:nomiss"]
    assert rv.read("monitors/deadline/desc") == (
        b"container for several deadline scheduler specifications.\n\0"
    )
    assert rv.read("monitors/deadline/nomiss/desc") == (
        b"dl entities run to completion before their deadline.\n\0"
    )
    d = kernel_definitions()["nomiss"]
    assert (d.type, d.container, d.storage.auto_alloc) == (MonitorType.PER_OBJ, "deadline", False)
    # enabling the container enables nomiss and gives it an empty table (§3.3)
    rv.write("enabled_monitors", b"deadline\n")
    assert rv.read("enabled_monitors").decode().split() == ["deadline", "deadline:nomiss"]
    mon = next(m for m in rv.monitors() if m.name == "nomiss")
    assert len(mon.storage) == 0


def test_hooks_are_spec_4_18():
    d = kernel_definitions()["nomiss"]
    handled = [
        (h.tracepoint, h.target, h.entry, h.model_event_name) for h in d.hooks if h.storage is None
    ]
    assert handled == [
        ("sched:sched_dl_replenish_tp", "dl_se", Entry.HANDLE, "dl_replenish"),
        ("sched:sched_dl_throttle_tp", "dl_se", Entry.HANDLE, "dl_throttle"),
        ("sched:sched_dl_server_stop_tp", "dl_se", Entry.START_RUN, "dl_server_stop"),
        ("sched:sched_switch", "prev_pid", Entry.HANDLE, "sched_switch_suspend"),
        ("sched:sched_switch", "next_pid", Entry.START_RUN, "sched_switch_in"),
        ("sched:sched_switch", "-common_cpu", Entry.HANDLE, "dl_server_idle"),
        ("sched:sched_wakeup", "pid", Entry.HANDLE, "sched_wakeup"),
    ]
    storage = {(h.tracepoint, h.storage) for h in d.hooks if h.storage is not None}
    assert ("sched:sched_process_exit", "destroy") in storage
    assert ("raw_syscalls:sys_enter", "reset") in storage
    assert d.required_tracepoints() == [
        "sched:sched_dl_replenish_tp",
        "sched:sched_dl_throttle_tp",
        "sched:sched_dl_server_stop_tp",
        "sched:sched_switch",
        "sched:sched_wakeup",
    ]


def test_bare_deadline_tracepoints_are_declared():
    for name in ("replenish", "throttle", "server_start", "server_stop"):
        tp = lookup(f"sched_dl_{name}_tp")
        assert tp is not None and tp.key in BARE
        assert tp.field_names() == ("dl_se", "cpu", "type")


def test_deadline_ns_is_the_relative_deadline_plus_the_threshold():
    d = kernel_definitions()["nomiss"]
    mon = build_monitor(d, hz=250, params={"dl_deadline_ns": 7 * MS, "dl_deadline_ns_42": 3 * MS})
    assert mon.deadline_thresh == 4 * MS  # default: one tick (TICK_NSEC at HZ=250)
    assert mon.deadline_ns(100) == 11 * MS and mon.deadline_ns(42) == 7 * MS
    assert mon.deadline_ns(0) == mon.deadline_ns(-3) == 1000 * MS + 4 * MS  # servers
    mon = build_monitor(d, hz=1000, params={"deadline_thresh": 0})
    assert mon.deadline_thresh == 0 and mon.deadline_ns(5) == 100 * MS


# --------------------------------------------------------------------------- verdicts


def test_an_entity_that_finishes_in_time(tmp_path):
    recs, result = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),  # start_run: ready x sched_switch_in -> running
            dl(1.002, "replenish", DL),  # running x dl_replenish -> running, clk reset
            dl(1.005, "throttle", DL),  # running x dl_throttle -> throttled (budget used)
            switch(1.006, DL, "R+", 0),  # preempted: nothing for prev; idle: no server storage
            dl(1.020, "replenish", DL),  # throttled x dl_replenish -> ready, clk reset
            switch(1.021, 0, "R", DL),  # ready x sched_switch_in -> running
            switch(1.025, DL, "S", 0),  # running x sched_switch_suspend -> sleeping
            # woken after its deadline: the kernel replenishes while enqueuing, before the
            # wakeup event (a wakeup first would find ready's invariant false: a miss)
            dl(1.040, "replenish", DL),  # sleeping x dl_replenish -> ready, clk reset
            wakeup(1.040),  # ready x sched_wakeup -> ready
            switch(1.041, 0, "R", DL),
            switch(1.045, DL, "S", 0),
        ],
    )
    assert verdicts(recs) == [
        ("event", DL, "ready", "sched_switch_in", "running"),
        ("event", DL, "running", "dl_replenish", "running"),
        ("event", DL, "running", "dl_throttle", "throttled"),
        ("event", DL, "throttled", "dl_replenish", "ready"),
        ("event", DL, "ready", "sched_switch_in", "running"),
        ("event", DL, "running", "sched_switch_suspend", "sleeping"),
        ("event", DL, "sleeping", "dl_replenish", "ready"),
        ("event", DL, "ready", "sched_wakeup", "ready"),
        ("event", DL, "ready", "sched_switch_in", "running"),
        ("event", DL, "running", "sched_switch_suspend", "sleeping"),
    ]
    (summary,) = result.monitors
    assert (summary.name, summary.type, summary.violations) == ("nomiss", "per_obj", 0)


def test_a_missed_deadline_is_a_timer_error(tmp_path):
    # running, clk reset at 1.002: the invariant clk < 11 ms expires at 1.013 (event none)
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.002, "replenish", DL),
            switch(1.020, DL, "S", 0),  # too late: the instance was reset by the timer
        ],
    )
    assert verdicts(recs)[-1] == (
        "error_env",
        DL,
        "running",
        "none",
        "clk=11000000,is_constr_dl=0,is_defer=0",
    )
    assert recs[-1].context.ts == 1_013_000_000
    assert len(recs) == 3  # nothing after the reset: sched_switch_suspend is a handle


def test_an_event_at_the_deadline_fails_with_its_own_name(tmp_path):
    # §3.5: the invariant of the current state is checked first; clk = 11 ms is not < 11 ms
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.002, "replenish", DL),
            dl(1.013, "throttle", DL),
        ],
    )
    assert verdicts(recs)[-1] == (
        "error_env",
        DL,
        "running",
        "dl_throttle",
        "clk=11000000,is_constr_dl=0,is_defer=0",
    )


def test_ready_too_long_is_a_miss_too(tmp_path):
    # woken and replenished, never run: ready's invariant expires 11 ms after the replenish
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            switch(1.001, DL, "S", 0),
            dl(1.010, "replenish", DL),  # sleeping x dl_replenish -> ready, clk reset
            wakeup(1.010),  # ready x sched_wakeup -> ready (no reset: the deadline stays)
            switch(1.030, 0, "R", 6),  # time passes on other tasks
        ],
    )
    assert verdicts(recs)[-1] == (
        "error_env",
        DL,
        "ready",
        "none",
        "clk=11000000,is_constr_dl=0,is_defer=0",
    )
    assert recs[-1].context.ts == 1_021_000_000


def test_throttle_guards(tmp_path):
    # ready x dl_throttle needs is_defer == 1: a task is not deferred
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            switch(1.001, DL, "S", 0),
            wakeup(1.002),
            dl(1.003, "throttle", DL),
        ],
    )
    env = verdicts(recs)[-1]
    assert env[:4] == ("error_env", DL, "ready", "dl_throttle")
    assert env[4].endswith("is_constr_dl=0,is_defer=0")
    # sleeping x dl_throttle needs is_constr_dl == 1 || is_defer == 1
    blocked = [switch(1.000, 0, "R", DL), switch(1.001, DL, "S", 0), dl(1.002, "throttle", DL)]
    recs, _ = run(tmp_path, blocked)
    assert verdicts(recs)[-1][:4] == ("error_env", DL, "sleeping", "dl_throttle")
    recs, _ = run(tmp_path, blocked, params={**PARAMS, f"is_constr_dl_{DL}": 1})
    assert verdicts(recs)[-1] == ("event", DL, "sleeping", "dl_throttle", "throttled")


def test_an_event_the_table_does_not_have_is_a_da_error(tmp_path):
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.001, "throttle", DL),
            switch(1.0015, DL, "R+", 5),  # preempted (throttled): nothing for prev
            switch(1.002, 5, "S", DL),  # throttled x sched_switch_in: not in the table
        ],
    )
    assert verdicts(recs)[-1] == ("error", DL, "throttled", "sched_switch_in", None)


def test_servers_negative_ids_idle_and_their_own_deadline(tmp_path):
    s1 = -1  # the fair server of CPU 1
    recs, _ = run(
        tmp_path,
        [
            line(0.9, "sched_wakeup", "comm=t7 pid=7 prio=120 target_cpu=001", 1, 7),
            dl(1.000, "replenish", s1, type_=2, cpu=1),  # storage, but not started: ignored
            dl(1.001, "server_stop", s1, type_=2, cpu=1),  # start_run: ready -> sleeping
            dl(1.002, "replenish", s1, type_=2, cpu=1),  # sleeping -> ready, clk reset
            dl(1.003, "throttle", s1, type_=2, cpu=1),  # ready x throttle, is_defer: ok
            dl(1.500, "replenish", s1, type_=2, cpu=1),  # -> ready, deadline 1.5 + 1 s + 1 ms
            switch(1.600, 7, "S", 0, cpu=1),  # idle on CPU 1: ready x dl_server_idle -> idle
            dl(3.000, "replenish", s1, type_=2, cpu=1),  # idle -> ready
            dl(3.100, "replenish", 0, type_=0, cpu=1),  # DL_OTHER: not monitored
            switch(4.200, 0, "R", 8, cpu=1),  # 1.2 s later: the timer fired at 4.001
        ],
    )
    assert verdicts(recs) == [
        ("event", -1, "ready", "dl_server_stop", "sleeping"),
        ("event", -1, "sleeping", "dl_replenish", "ready"),
        ("event", -1, "ready", "dl_throttle", "throttled"),
        ("event", -1, "throttled", "dl_replenish", "ready"),
        ("event", -1, "ready", "dl_server_idle", "idle"),
        ("event", -1, "idle", "dl_replenish", "ready"),
        ("error_env", -1, "ready", "none", "clk=1001000000,is_constr_dl=0,is_defer=1"),
    ]
    assert (
        recs[-1]
        .trace_line()
        .endswith(
            "error_env_nomiss: -1: event none not expected in the state ready with env "
            "clk=1001000000,is_constr_dl=0,is_defer=1"
        )
    )


def test_exit_destroys_the_storage_and_its_timer(tmp_path):
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.001, "replenish", DL),
            line(1.002, "sched_process_exit", f"comm=t{DL} pid={DL} prio=-1 group_dead=1"),
            switch(1.050, DL, "X", 6),  # past the deadline: no error, the storage is gone
            dl(1.051, "throttle", DL),  # storage re-created, not started: ignored
        ],
    )
    assert [r.kind for r in recs] == ["event", "event"]


def test_leaving_sched_deadline_resets(tmp_path):
    # sched_setscheduler(0, SCHED_OTHER) by the running task (x86_64 NR 144): da_reset
    setsched = line(1.002, "sys_enter", "NR 144 (0, 0, 7ffd2c4e1a30, 0, 0, 0)")
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.001, "replenish", DL),
            setsched,
            switch(1.050, DL, "R+", 6, prev_prio=120),
        ],
    )
    assert [r.kind for r in recs] == ["event", "event"]
    # shown later with a fair prio: reset as well
    recs, _ = run(
        tmp_path,
        [
            switch(1.000, 0, "R", DL),
            dl(1.001, "replenish", DL),
            switch(1.005, DL, "R+", 0, prev_prio=120),
            switch(1.050, 0, "R", 6),
        ],
    )
    assert [r.kind for r in recs] == ["event", "event"]


def test_deadline_container_runs_nomiss(tmp_path):
    recs, result = run(
        tmp_path, [switch(1.000, 0, "R", DL), dl(1.001, "throttle", DL)], ["deadline"]
    )
    assert [m.name for m in result.monitors] == ["nomiss"]
    assert verdicts(recs)[-1] == ("event", DL, "running", "dl_throttle", "throttled")


def test_chosen_automatically_only_on_traces_with_the_bare_events(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(render([*PREAMBLE, switch(1.000, 0, "R", DL), dl(1.001, "throttle", DL)]))
    assert "nomiss" in [m.name for m in check(path).monitors]
    path.write_text(render([switch(1.000, 0, "R", DL), wakeup(1.002)]))
    assert "nomiss" not in [m.name for m in check(path).monitors]


def test_refused_with_the_missing_bare_tracepoints_named(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(render([switch(1.000, 0, "R", DL), wakeup(1.001)]))
    with pytest.raises(CheckError) as info:
        check(path, CheckOptions(monitors=["nomiss"]))
    msg = str(info.value)
    for tp in ("sched_dl_replenish_tp", "sched_dl_throttle_tp", "sched_dl_server_stop_tp"):
        assert f"sched:{tp}" in msg
    assert "bare tracepoints" in msg
