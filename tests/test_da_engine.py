"""The DA engine against spec §3.3, and against an independent reference model of §3.3."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pyrv.models.automaton import Automaton
from pyrv.monitors.da import DAMonitor, Entry, MonitorType, task_key
from pyrv.monitors.records import Context, Record
from tests.conftest import WWNR_TABLE

CTX = Context(ts=3_043_863_000, cpu=0, pid=52, comm="dd")

WWNR = Automaton.from_table("wwnr", "not_running", WWNR_TABLE, finals=["not_running"])


def make(model: Automaton = WWNR, mtype: MonitorType = MonitorType.PER_TASK):
    out: list[Record] = []
    mon = DAMonitor(model.name, "test", model, mtype, sink=out.append)
    mon.enabled = True
    return mon, out


def ev(name: str) -> int:
    return WWNR.events.index(name)


def test_handle_event_ignored_until_started():
    mon, out = make()
    mon.handle(Entry.HANDLE, 53, ev("wakeup"), CTX)
    mon.handle(Entry.HANDLE, 53, ev("switch_in"), CTX)
    assert out == [] and mon.instances == {}


def test_start_event_starts_and_drops_the_event():
    mon, out = make()
    mon.handle(Entry.START, 53, ev("switch_out"), CTX)  # would be invalid from not_running
    assert out == []
    assert mon.instances == {53: WWNR.initial}


def test_start_run_event_starts_and_processes():
    mon, out = make()
    mon.handle(Entry.START_RUN, 53, ev("switch_out"), CTX)
    assert [r.kind for r in out] == ["error"]
    assert out[0].state == "not_running" and out[0].event == "switch_out"


def test_violation_reacts_emits_error_and_resets():
    mon, out = make()
    reactions: list[str] = []
    mon.react = reactions.append  # type: ignore[method-assign]
    mon.handle(Entry.START, 53, ev("switch_out"), CTX)
    mon.handle(Entry.HANDLE, 53, ev("switch_in"), CTX)
    mon.handle(Entry.HANDLE, 53, ev("wakeup"), CTX)
    assert [r.kind for r in out] == ["event", "error"]
    assert out[0].payload() == "53: not_running x switch_in -> running"
    assert out[1].payload() == "53: event wakeup not expected in the state running"
    assert reactions == ["rv: monitor wwnr does not allow event wakeup on state running\n"]
    assert 53 not in mon.instances  # reset: silent until the next start event
    mon.handle(Entry.HANDLE, 53, ev("switch_in"), CTX)
    assert len(out) == 2


def test_final_state_suffix_and_no_trailing_space():
    mon, out = make()
    mon.handle(Entry.START, 7, ev("switch_out"), CTX)
    mon.handle(Entry.HANDLE, 7, ev("wakeup"), CTX)
    assert out[0].payload() == "7: not_running x wakeup -> not_running (final)"
    mon.handle(Entry.HANDLE, 7, ev("switch_in"), CTX)
    assert out[1].payload() == "7: not_running x switch_in -> running"


def test_trace_line_is_the_kernels_layout():
    rec = Record("error", "wwnr", 53, "running", "wakeup", None, False, CTX)
    assert rec.trace_line() == (
        "              dd-52      [000]     3.043863: error_wwnr: 53: "
        "event wakeup not expected in the state running"
    )


def test_per_cpu_records_have_no_id():
    wip = Automaton.from_table(
        "wip",
        "preemptive",
        {
            ("preemptive", "preempt_disable"): "non_preemptive",
            ("non_preemptive", "preempt_enable"): "preemptive",
            ("non_preemptive", "sched_waking"): "non_preemptive",
        },
    )
    mon, out = make(wip, MonitorType.PER_CPU)
    mon.handle(Entry.START, 0, wip.events.index("preempt_enable"), CTX)
    mon.handle(Entry.HANDLE, 0, wip.events.index("sched_waking"), CTX)
    assert out[0].payload() == "event sched_waking not expected in the state preemptive"


def test_gate_disabled_monitor_ignores_everything():
    mon, out = make()
    mon.enabled = False
    mon.handle(Entry.START_RUN, 1, ev("switch_out"), CTX)
    assert out == [] and mon.instances == {}


def test_idle_tasks_of_different_cpus_are_distinct_instances():
    assert task_key(0, 0) != task_key(0, 1)
    assert task_key(5, 0) == task_key(5, 1) == 5
    mon, out = make()
    mon.handle(Entry.START, task_key(0, 0), ev("switch_out"), CTX)
    mon.handle(Entry.HANDLE, task_key(0, 1), ev("switch_in"), CTX)  # other CPU's idle: silent
    assert out == []
    mon.handle(Entry.HANDLE, task_key(0, 0), ev("switch_in"), CTX)
    assert out[0].id == 0


# --- property test: the engine against an independent reading of §3.3 ---------------------


class Reference:
    """§3.3 restated: monitoring flag + current state per instance; gate; three entries."""

    def __init__(self, table, initial):
        self.table, self.initial = table, initial
        self.mon: dict[int, tuple[bool, str]] = {}
        self.verdicts: list[tuple] = []

    def run(self, entry, key, event, enabled):
        if not enabled:
            return
        monitoring, state = self.mon.get(key, (False, self.initial))
        if not monitoring:
            if entry == "handle":
                return
            monitoring, state = True, self.initial
            self.mon[key] = (True, state)
            if entry == "start":
                return
        nxt = self.table.get((state, event))
        if nxt is None:
            self.verdicts.append(("error", key, state, event))
            self.mon[key] = (False, self.initial)
        else:
            self.verdicts.append(("event", key, state, event, nxt))
            self.mon[key] = (True, nxt)


@st.composite
def automata(draw):
    n_states = draw(st.integers(1, 4))
    n_events = draw(st.integers(1, 4))
    states = [f"s{i}" for i in range(n_states)]
    events = [f"e{i}" for i in range(n_events)]
    table = {}
    for s in states:
        for e in events:
            nxt = draw(st.one_of(st.none(), st.sampled_from(states)))
            if nxt is not None:
                table[(s, e)] = nxt
    return states[0], table, states, events


@settings(max_examples=300, deadline=None)
@given(
    automata(),
    st.lists(
        st.tuples(
            st.sampled_from(["handle", "start", "start_run", "toggle"]),
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        max_size=60,
    ),
)
def test_engine_matches_reference(model_spec, steps):
    initial, table, states, events = model_spec
    model = Automaton.from_table("m", initial, table, states=states, events=events)
    mon, out = make(model, MonitorType.PER_TASK)
    ref = Reference(table, initial)
    enabled = True
    for entry, key, e in steps:
        if entry == "toggle":  # disable then re-enable: the enable path resets everything
            enabled = not enabled
            mon.enabled = enabled
            if enabled:
                mon.reset()
                ref.mon.clear()
            continue
        name = events[e % len(events)]
        mon.handle(Entry(entry), key, model.events.index(name), CTX)
        ref.run(entry, key, name, enabled)
    got = [
        ("error", r.id, r.state, r.event)
        if r.kind == "error"
        else ("event", r.id, r.state, r.event, r.next_state)
        for r in out
    ]
    assert got == ref.verdicts
