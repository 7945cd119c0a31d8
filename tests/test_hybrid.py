"""Hybrid automata: the model reader (§3.5, §7) and the HA engine (§3.5, §2, §5).

Expected verdicts are derived from the spec's text, step by step in the comments:
§3.5 — a transition must first be valid in the DA table; then the current state's invariant
is checked, then guards and resets, then timers are armed (entering a state with an
invariant) or cancelled (leaving one); a failure reacts with the HA message, writes
``error_env_<mon>`` and resets, with no ``event_<mon>``; a timer expiry does the same with the
event ``none``. §2 gives the message, §5 the record layout, §3.5 the env string.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrv.models.automaton import ModelError
from pyrv.models.hybrid import (
    DEFAULT_HZ,
    BoolOp,
    Comparison,
    HybridAutomaton,
    load_bundled_hybrid,
    load_hybrid,
    parse_hybrid,
    tick_ns,
)
from pyrv.monitors.da import Entry, MonitorType
from pyrv.monitors.ha import ENV_INVALID_VALUE, EnvRecord, HAMonitor
from pyrv.monitors.records import Context, Record

DATA = Path(__file__).parent / "data" / "hybrid"
US = 1_000
MS = 1_000_000


# --------------------------------------------------------------------------- helpers


def dot(*lines: str, initial: str = "a", states: tuple[str, ...] = ("a", "b")) -> str:
    """A small DOT model: declared states, the initial marker, then ``lines``."""
    out = ["digraph state_automaton {"]
    out.append(f'\t{{node [shape = plaintext, style=invis, label=""] "__init_{initial}"}};')
    out += [f'\t{{node [shape = circle] "{s}"}};' for s in states]
    out.append(f'\t"__init_{initial}" -> "{initial}";')
    out += ["\t" + line for line in lines]
    out.append("}")
    return "\n".join(out) + "\n"


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``nth`` occurrence of ``needle`` in ``text``."""
    idx = -1
    for _ in range(nth + 1):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def model_error(text: str, params: dict[str, int] | None = None, **kw) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse_hybrid(text, "m.dot", params, **kw)
    return info.value


def ctx(ts: int, cpu: int = 0, pid: int = 100, comm: str = "task") -> Context:
    return Context(ts, cpu, pid, comm)


def make(
    model: HybridAutomaton, mtype: MonitorType = MonitorType.PER_TASK
) -> tuple[HAMonitor, list[Record], list[str]]:
    out: list[Record] = []
    reactions: list[str] = []
    mon = HAMonitor(model.name, "test", model, mtype, sink=out.append)
    mon.enabled = True
    mon.react = reactions.append  # type: ignore[method-assign]
    return mon, out, reactions


WATCHDOG = load_hybrid(DATA / "watchdog.dot")


def wd(mon: HAMonitor, name: str, ts: int, key: int = 7, entry=Entry.HANDLE, owner=1, cpu=0):
    mon.handle(entry, key, WATCHDOG.automaton.event_index(name), ctx(ts, cpu), {"owner": owner})


def lines(out: list[Record]) -> list[str]:
    return [f"{r.kind}_{r.monitor}: {r.payload()}" for r in out]


# --------------------------------------------------------------------------- the model


def test_watchdog_model_is_read_as_written():
    h = WATCHDOG
    a = h.automaton
    assert a.states == ("idle", "armed", "tripped")
    assert [(e.name, e.kind, e.stored) for e in h.envs] == [
        ("clk", "ns", True),  # reset somewhere: a stored clock; "us" on its bound makes it ns
        ("owner", "value", False),  # never reset, no unit: a value the monitor supplies
    ]
    inv = h.invariants[a.state_index("armed")]
    assert (inv.env, inv.bound, inv.bound_ns, inv.text) == (0, 10 * US, 10 * US, "clk < 10us")
    arm = h.rules[(a.state_index("idle"), a.event_index("arm"))]
    assert arm.guard is None and arm.resets == (0,)
    pet = h.rules[(a.state_index("armed"), a.event_index("pet"))]
    assert pet.guard == BoolOp(
        "&&", Comparison(0, ">=", 2 * US, "clk >= 2us"), Comparison(1, "==", 1, "owner == 1")
    )
    assert pet.resets == (0,) and pet.guard_stored == frozenset({0})
    # pet is a self-loop with a reset: taking it re-arms the timer (rvgen's rule)
    assert h.self_loop_reset_events == {a.event_index("pet")}
    assert (a.state_index("armed"), a.event_index("poke")) not in h.rules


def test_stall_model_is_spec_4_16():
    h = load_bundled_hybrid("stall", {"threshold_jiffies": 1000})
    a = h.automaton
    assert a.states == ("dequeued", "enqueued", "running")
    assert a.events == (
        "sched_switch_in",
        "sched_switch_preempt",
        "sched_switch_wait",
        "sched_wakeup",
    )
    assert {a.states[f] for f in a.finals} == {"dequeued"}
    assert a.table() == {
        ("dequeued", "sched_wakeup"): "enqueued",
        ("enqueued", "sched_switch_in"): "running",
        ("enqueued", "sched_wakeup"): "enqueued",
        ("running", "sched_switch_in"): "running",
        ("running", "sched_switch_preempt"): "enqueued",
        ("running", "sched_switch_wait"): "dequeued",
        ("running", "sched_wakeup"): "running",
    }
    assert [(e.name, e.kind, e.stored) for e in h.envs] == [("clk", "jiffy", True)]
    resets = {(a.states[s], a.events[e]) for (s, e), r in h.rules.items() if r.resets}
    assert resets == {("dequeued", "sched_wakeup"), ("running", "sched_switch_preempt")}
    assert all(r.guard is None for r in h.rules.values())
    (inv_state,) = h.invariants
    inv = h.invariants[inv_state]
    assert a.states[inv_state] == "enqueued" and inv.text == "clk < threshold_jiffies"
    # 1000 jiffies at the default HZ of 250 are 4 s; at HZ=1000, 1 s
    assert DEFAULT_HZ == 250 and inv.bound == 1000 and inv.bound_ns == 4_000_000_000
    fast = load_bundled_hybrid("stall", {"threshold_jiffies": 1000}, hz=1000)
    assert next(iter(fast.invariants.values())).bound_ns == 1_000_000_000
    assert not h.self_loop_reset_events


def test_tick_is_the_kernels_tick_nsec():
    assert tick_ns(250) == 4_000_000 and tick_ns(1000) == 1_000_000 and tick_ns(100) == 10**7
    assert tick_ns(300) == 3_333_333  # (NSEC_PER_SEC + HZ/2) / HZ


def test_opid_ha_values_only():
    h = load_hybrid(DATA / "opid_ha.dot")
    assert [(e.name, e.kind) for e in h.envs] == [("irq_off", "value"), ("preempt_off", "value")]
    assert h.invariants == {}
    waking = h.rules[(0, h.automaton.event_index("sched_waking"))]
    assert waking.guard == BoolOp(
        "&&", Comparison(0, "==", 1, "irq_off == 1"), Comparison(1, "==", 1, "preempt_off == 1")
    )


def test_env_order_is_stored_first_then_values_each_by_name():
    text = dot(
        '"a" -> "b" [ label = "go;zeta == 1 && alpha < 5;reset(zclk)" ];',
        '"b" -> "a" [ label = "back;aclk < 1ms;reset(aclk)" ];',
        '"b" -> "b" [ label = "stay;zclk < 3ms && beta != 0" ];',
    )
    h = parse_hybrid(text)
    assert [e.name for e in h.envs] == ["aclk", "zclk", "alpha", "beta", "zeta"]


def test_guards_have_c_precedence_and_parentheses():
    text = dot('"a" -> "b" [ label = "go;x == 1 || y == 2 && z == 3" ];')
    g = parse_hybrid(text).rules[(0, 0)].guard
    assert g == BoolOp(
        "||",
        Comparison(0, "==", 1, "x == 1"),
        BoolOp("&&", Comparison(1, "==", 2, "y == 2"), Comparison(2, "==", 3, "z == 3")),
    )
    text = dot('"a" -> "b" [ label = "go;(x == 1 || y == 2) && z == 3" ];')
    g = parse_hybrid(text).rules[(0, 0)].guard
    assert isinstance(g, BoolOp) and g.op == "&&" and isinstance(g.left, BoolOp)


@pytest.mark.parametrize(
    ("bound", "value", "kind"),
    [
        ("7", 7, "ns"),  # unitless numbers are in the clock's unit (ns here, from the guard)
        ("7ns", 7, "ns"),
        ("7us", 7 * US, "ns"),
        ("7ms", 7 * MS, "ns"),
        ("7s", 7 * 10**9, "ns"),
        ("limit_ns", 123, "ns"),
        ("LIMIT_NS", 123, "ns"),
        ("limit_ns()", 123, "ns"),
        ("7j", 7, "jiffy"),
        ("limit_jiffies", 123, "jiffy"),
    ],
)
def test_bound_units_and_parameters(bound: str, value: int, kind: str):
    unit = "5j" if kind == "jiffy" else "5ns"
    text = dot(
        f'"a" -> "b" [ label = "go;clk < {unit};reset(clk)" ];',
        f'"b" [label = "b\\nclk < {bound}"];',
    )
    params = {"limit_ns": 123, "LIMIT_NS": 123, "limit_ns()": 123, "limit_jiffies": 123}
    h = parse_hybrid(text, params=params)
    inv = h.invariants[1]
    assert h.envs[0].kind == kind and inv.bound == value
    assert inv.bound_ns == (value * tick_ns(DEFAULT_HZ) if kind == "jiffy" else value)


# --------------------------------------------------------------------------- model errors


def test_unknown_parameter_points_at_it():
    text = dot(
        '"a" -> "b" [ label = "go;reset(clk)" ];', '"b" [label = "b\\nclk < threshold_jiffies"];'
    )
    err = model_error(text)
    assert (err.source, err.line, err.col) == ("m.dot", *where(text, "threshold_jiffies"))
    assert "threshold_jiffies" in err.reason and "no value" in err.reason


@pytest.mark.parametrize(
    "invariant", ["clk <= 5us", "clk > 5us", "clk == 5us", "clk < 5us && clk < 6us"]
)
def test_unsupported_invariant_forms(invariant: str):
    text = dot('"a" -> "b" [ label = "go;reset(clk)" ];', f'"b" [label = "b\\n{invariant}"];')
    err = model_error(text)
    assert (err.line, err.col) == where(text, invariant)
    assert "unsupported invariant" in err.reason


def test_invariant_on_a_value_is_refused():
    text = dot('"a" -> "b" [ label = "go;reset(clk)" ];', '"b" [label = "b\\nx < 5"];')
    # clk is reset but nothing gives its unit; fix that first so the invariant is reached
    text = text.replace("go;reset(clk)", "go;clk < 1us;reset(clk)")
    err = model_error(text)
    assert (err.line, err.col) == where(text, "x < 5")
    assert "not a clock" in err.reason


def test_two_invariants_in_a_state():
    text = dot(
        '"a" -> "b" [ label = "go;reset(clk)" ];', '"b" [label = "b\\nclk < 5us\\nclk < 6us"];'
    )
    err = model_error(text)
    assert (err.line, err.col) == where(text, "clk < 6us")
    assert "only one invariant" in err.reason


@pytest.mark.parametrize(
    ("guard", "at", "says"),
    [
        ("clk <", "clk <", "expected a number or a parameter"),  # points past the op: below
        ("clk 5", "5", "expected a comparison"),
        ("&& clk < 5", "&&", "expected an environment variable"),
        ("clk < 5 )", ")", "unexpected ')'"),
        ("(clk < 5", "(clk", "missing ')' for this '('"),
        ("clk < 5 $", "$", "unexpected character"),
        ("clk < 5 clk", "clk", "unexpected 'clk'"),
        ("clk < 5xs", "xs", "unknown unit"),
        ("f() < 5", "f()", "expected an environment variable"),
        ("clk < 5 && reset(clk)", "reset", "must be its own"),
    ],
)
def test_malformed_guards_point_at_the_fault(guard: str, at: str, says: str):
    text = dot(f'"a" -> "b" [ label = "go;{guard}" ];')
    err = model_error(text)
    line, col = where(text, guard)
    if guard == "clk <":
        expected = (line, col + len(guard))  # the missing value: just after the operator
    elif at == "clk" and guard.endswith("clk"):
        expected = (line, col + guard.rindex("clk"))
    else:
        expected = (line, col + guard.index(at))
    assert (err.line, err.col) == expected, err
    assert says in err.reason


def test_conflicting_clock_units():
    text = dot(
        '"a" -> "b" [ label = "go;clk < 5us;reset(clk)" ];',
        '"b" [label = "b\\nclk < limit_jiffies"];',
    )
    err = model_error(text, {"limit_jiffies": 3})
    assert (err.line, err.col) == where(text, "limit_jiffies")
    assert "jiffies" in err.reason and "ns" in err.reason


def test_clock_without_a_unit_and_clock_never_reset():
    text = dot('"a" -> "b" [ label = "go;reset(clk)" ];', '"b" [label = "b\\nclk < 5"];')
    err = model_error(text)
    assert (err.line, err.col) == (where(text, "reset(clk)")[0], where(text, "clk)")[1])
    assert "cannot tell the unit" in err.reason
    text = dot('"a" -> "b" [ label = "go;clk < 5us" ];')
    err = model_error(text)
    assert (err.line, err.col) == where(text, "clk < 5us")
    assert "no edge resets it" in err.reason


def test_one_guard_and_one_reset_per_edge():
    text = dot('"a" -> "b" [ label = "go;x == 1;y == 2" ];')
    err = model_error(text)
    assert (err.line, err.col) == where(text, "y == 2")
    assert "only one guard" in err.reason
    text = dot('"a" -> "b" [ label = "go;x < 1us;reset(x);reset(y)" ];')
    err = model_error(text)
    assert (err.line, err.col) == where(text, "reset(y)")
    text = dot('"a" -> "b" [ label = "go;reset(clk" ];')
    err = model_error(text)
    assert (err.line, err.col) == where(text, "reset(clk")
    assert "malformed reset" in err.reason


def test_parameter_must_be_an_integer_and_hz_positive():
    text = dot('"a" -> "b" [ label = "go;clk < lim_ns;reset(clk)" ];')
    err = model_error(text, {"lim_ns": 1.5})  # type: ignore[dict-item]
    assert (err.line, err.col) == where(text, "lim_ns")
    with pytest.raises(ModelError, match="HZ"):
        parse_hybrid(text, "m.dot", {"lim_ns": 1}, hz=0)


def test_load_hybrid_names_the_file(tmp_path: Path):
    p = tmp_path / "bad.dot"
    p.write_text(dot('"a" -> "b" [ label = "go;clk <" ];'))
    with pytest.raises(ModelError) as info:
        load_hybrid(p)
    assert info.value.source == str(p)


# --------------------------------------------------------------------------- the engine


def test_start_and_handle_entries_as_in_the_da_engine():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0)  # handle on a not-monitoring instance: ignored
    assert out == [] and mon.instances == {}
    wd(mon, "arm", 0, entry=Entry.START)  # start: starts and drops the event
    assert out == [] and mon.instances == {7: 0} and mon.timers == {}
    wd(mon, "arm", 1 * US)  # now processed: idle x arm -> armed, clock reset, timer armed
    assert lines(out) == ["event_watchdog: 7: idle x arm -> armed"]
    assert mon.timers[7].deadline == 11 * US


def test_guard_passes_resets_and_rearms_on_a_self_loop_with_reset():
    mon, out, reactions = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)  # clk reset at 0, deadline 10 us
    wd(mon, "pet", 3 * US)  # clk = 3 us >= 2 us, owner 1: ok; reset at 3 us; re-armed
    assert mon.timers[7].deadline == 13 * US
    wd(mon, "pet", 12 * US)  # clk = 9 us: invariant (< 10 us) holds, guard holds
    assert mon.timers[7].deadline == 22 * US
    assert reactions == []
    assert lines(out)[1:] == ["event_watchdog: 7: armed x pet -> armed"] * 2


def test_guard_failure_reacts_writes_error_env_and_no_event_record():
    mon, out, reactions = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "pet", 1 * US)  # clk = 1 us < 2 us: the guard fails
    # the generated code resets the clock in the guard's own branch, before the env string is
    # made, so the string shows the clock just reset
    assert lines(out) == [
        "event_watchdog: 7: idle x arm -> armed",
        "error_env_watchdog: 7: event pet not expected in the state armed with env clk=0,owner=1",
    ]
    assert isinstance(out[1], EnvRecord) and out[1].env == "clk=0,owner=1"
    assert out[1].context.ts == 1 * US
    assert reactions == [
        "rv: monitor watchdog does not allow event pet on state armed with env clk=0,owner=1\n"
    ]
    assert 7 not in mon.instances and 7 not in mon.timers  # reset; its timer is gone
    mon.finish(100 * US)
    assert len(out) == 2  # no expiry from the cancelled timer
    wd(mon, "pet", 101 * US)  # silent until the next start
    assert len(out) == 2


def test_value_guard_failure():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "pet", 5 * US, owner=0)
    assert lines(out)[-1] == (
        "error_env_watchdog: 7: event pet not expected in the state armed with env clk=0,owner=0"
    )


def test_invariant_checked_before_the_guard_with_the_events_name():
    mon, out, reactions = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "poke", 10 * US)  # at exactly the deadline: clk = 10 us is not < 10 us
    assert lines(out)[-1] == (
        "error_env_watchdog: 7: event poke not expected in the state armed with env "
        "clk=10000,owner=1"
    )
    assert reactions[-1].startswith("rv: monitor watchdog does not allow event poke ")
    assert mon.instances == {}


def test_timer_expiry_fires_event_none_at_the_deadline():
    mon, out, reactions = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN, cpu=1)
    mon.advance_time(10 * US)  # not yet: deadlines strictly before the time fire
    assert len(out) == 1
    mon.advance_time(10 * US + 1, lambda ts, cpu: Context(ts, cpu, 0, "<idle>"))
    rec = out[-1]
    assert isinstance(rec, EnvRecord)
    assert rec.payload() == (
        "7: event none not expected in the state armed with env clk=10000,owner=1"
    )
    assert rec.trace_line() == (
        "          <idle>-0       [001]     0.000010: error_env_watchdog: 7: event none not "
        "expected in the state armed with env clk=10000,owner=1"
    )
    assert (rec.context.ts, rec.context.cpu) == (10 * US, 1)  # stamped at the deadline
    assert reactions == [
        "rv: monitor watchdog does not allow event none on state armed with env clk=10000,owner=1\n"
    ]
    assert mon.instances == {} and mon.timers == {}


def test_handle_advances_time_itself():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, key=1, entry=Entry.START_RUN)
    wd(mon, "arm", 5 * US, key=2, entry=Entry.START_RUN)
    wd(mon, "poke", 12 * US, key=2)  # key 1 expired at 10 us before this event is handled
    assert lines(out) == [
        "event_watchdog: 1: idle x arm -> armed",
        "event_watchdog: 2: idle x arm -> armed",
        "error_env_watchdog: 1: event none not expected in the state armed with env "
        "clk=10000,owner=1",
        "event_watchdog: 2: armed x poke -> armed",
    ]


def test_timer_at_end_of_input_is_inclusive():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    mon.finish(9 * US)
    assert len(out) == 1
    mon.finish(10 * US)  # the trace ends exactly at the deadline: the invariant is false
    assert out[-1].event == "none" and out[-1].context.ts == 10 * US


def test_self_loop_without_reset_keeps_the_timer():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "poke", 6 * US)
    assert mon.timers[7].deadline == 10 * US
    mon.finish(20 * US)
    assert out[-1].event == "none" and out[-1].context.ts == 10 * US


def test_leaving_cancels_and_reentering_rearms_from_the_last_reset():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "disarm", 4 * US)  # leaving armed: cancelled
    mon.finish(50 * US)
    assert [r.kind for r in out] == ["event", "event"]

    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "trip", 3 * US)  # to tripped: no invariant there, timer cancelled
    assert mon.timers == {}
    wd(mon, "rearm", 5 * US)  # back in armed without a reset: deadline 0 + 10 us
    assert mon.timers[7].deadline == 10 * US
    wd(mon, "trip", 6 * US)
    wd(mon, "rearm", 12 * US)  # the bound has already passed: the timer fires at once
    assert mon.timers[7].deadline == 12 * US
    mon.finish(12 * US)
    assert lines(out)[-1] == (
        "error_env_watchdog: 7: event none not expected in the state armed with env "
        "clk=12000,owner=1"
    )


def test_da_invalid_path_keeps_the_da_message():
    mon, out, reactions = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "arm", 1 * US)  # armed x arm is not in the table
    assert lines(out)[-1] == "error_watchdog: 7: event arm not expected in the state armed"
    assert type(out[-1]) is Record and out[-1].kind == "error"
    assert reactions == ["rv: monitor watchdog does not allow event arm on state armed\n"]
    assert mon.instances == {} and mon.timers == {} and mon.stores == {}
    mon.finish(100 * US)
    assert len(out) == 2


def test_per_cpu_records_have_no_id():
    mon, out, _ = make(WATCHDOG, MonitorType.PER_CPU)
    wd(mon, "arm", 0, key=1, entry=Entry.START_RUN, cpu=1)
    mon.finish(10 * US)
    assert lines(out) == [
        "event_watchdog: idle x arm -> armed",
        "error_env_watchdog: event none not expected in the state armed with env clk=10000,owner=1",
    ]


def test_unset_clock_guard_passes_and_timer_runs_from_arming():
    h = load_hybrid(DATA / "unset.dot")
    mon, out, _ = make(h)

    def go(name: str, ts: int, entry: Entry = Entry.HANDLE) -> None:
        mon.handle(entry, 3, h.automaton.event_index(name), ctx(ts))

    go("check", 10 * MS, Entry.START_RUN)  # clk never reset: the guard is not checked
    assert out[-1].kind == "event"
    go("start", 11 * MS)  # into waiting (clk < 3ms) without a reset: timer from now
    assert mon.timers[3].deadline == 14 * MS
    go("go", 13 * MS)  # still within: reset, on
    go("check", 17 * MS)  # clk = 4 ms < 5 ms
    go("check", 18 * MS)  # clk = 5 ms: guard fails
    assert lines(out)[-1] == (
        "error_env_unset: 3: event check not expected in the state on with env clk=5000000"
    )
    go("start", 30 * MS, Entry.START)
    go("start", 31 * MS)
    mon.finish(40 * MS)
    # never reset since this start: the kernel prints now - U64_MAX, i.e. now + 1
    assert out[-1].event == "none" and out[-1].context.ts == 34 * MS
    assert out[-1].env == f"clk={34 * MS + 1}"


def test_jiffy_clock_reads_whole_jiffies():
    h = load_bundled_hybrid("stall", {"threshold_jiffies": 3})
    mon, out, _ = make(h)
    ev = h.automaton.event_index
    mon.handle(Entry.START, 9, ev("sched_switch_wait"), ctx(0))
    mon.handle(Entry.HANDLE, 9, ev("sched_wakeup"), ctx(1 * MS))
    assert mon.env_string(9, 1 * MS + 7_999_999) == "clk=1"  # 7.99 ms: one whole 4 ms jiffy
    mon.finish(100 * MS)
    assert out[-1].payload() == ("9: event none not expected in the state enqueued with env clk=3")
    assert out[-1].context.ts == 13 * MS  # 1 ms + 3 jiffies of 4 ms


def test_env_string_values_wrap_and_truncate():
    long = [f"variable_number_{i}" for i in range(4)]
    text = dot(f'"a" -> "b" [ label = "go;{" && ".join(f"{n} < 5" for n in long)}" ];')
    mon, out, reactions = make(parse_hybrid(text, name="m"))
    # values are u64 in the kernel: -1 is 2^64 - 1, which is not < 5, so the guard fails
    mon.handle(Entry.START_RUN, 1, 0, ctx(0), {n: -1 for n in long})
    full = ",".join(f"{n}={2**64 - 1}" for n in sorted(long))
    assert len(full) > 63 and out[-1].env == full[:63]
    assert reactions == [f"rv: monitor m does not allow event go on state a with env {full[:63]}\n"]
    mon.handle(Entry.START_RUN, 1, 0, ctx(0), {n: 4 for n in long})
    assert out[-1].kind == "event"


def test_timer_env_uses_last_values_or_the_invalid_marker():
    mon, out, _ = make(WATCHDOG)
    mon.handle(Entry.START_RUN, 4, WATCHDOG.automaton.event_index("arm"), ctx(0))
    mon.finish(10 * US)
    assert out[-1].env == f"clk=10000,owner={ENV_INVALID_VALUE}"
    wd(mon, "arm", 20 * US, key=4, entry=Entry.START_RUN, owner=5)
    mon.finish(30 * US)
    assert out[-1].env == "clk=10000,owner=5"


def test_missing_value_is_an_error_and_env_provider_supplies():
    mon, _, _ = make(WATCHDOG)
    mon.handle(Entry.START_RUN, 4, WATCHDOG.automaton.event_index("arm"), ctx(0))
    with pytest.raises(ValueError, match="owner"):
        mon.handle(Entry.HANDLE, 4, WATCHDOG.automaton.event_index("pet"), ctx(5 * US))
    mon, out, _ = make(WATCHDOG)
    mon.env_provider = lambda key, c: {"owner": 1}
    mon.handle(Entry.START_RUN, 4, WATCHDOG.automaton.event_index("arm"), ctx(0))
    mon.handle(Entry.HANDLE, 4, WATCHDOG.automaton.event_index("pet"), ctx(5 * US))
    assert [r.kind for r in out] == ["event", "event"]


def test_opid_ha_guards_on_values():
    h = load_hybrid(DATA / "opid_ha.dot")
    mon, out, _ = make(h, MonitorType.PER_CPU)
    ev = h.automaton.event_index
    mon.handle(Entry.START_RUN, 0, ev("sched_waking"), ctx(1), {"irq_off": 1, "preempt_off": 1})
    mon.handle(Entry.START_RUN, 0, ev("sched_need_resched"), ctx(2), {"irq_off": 1})
    mon.handle(Entry.START_RUN, 0, ev("sched_waking"), ctx(3), {"irq_off": 1, "preempt_off": 0})
    assert lines(out) == [
        "event_opid_ha: any x sched_waking -> any (final)",
        "event_opid_ha: any x sched_need_resched -> any (final)",
        "error_env_opid_ha: event sched_waking not expected in the state any with env "
        "irq_off=1,preempt_off=0",
    ]


def test_disabled_monitor_drops_expiries_and_reset_clears_timers():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    mon.enabled = False  # the kernel's callback bails out: no error, no reset
    mon.finish(20 * US)
    assert len(out) == 1 and mon.instances == {7: 1} and mon.timers == {}
    mon.enabled = True
    wd(mon, "arm", 0, key=8, entry=Entry.START_RUN)
    mon.reset()
    mon.finish(20 * US)
    assert len(out) == 2 and mon.instances == {} and mon.next_deadline() is None
    wd(mon, "arm", 30 * US, key=8, entry=Entry.START_RUN)
    mon.reset_instances([8])
    mon.finish(50 * US)
    assert len(out) == 3


def test_counts_include_env_errors():
    mon, _, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    wd(mon, "pet", 1 * US)
    wd(mon, "arm", 2 * US, entry=Entry.START_RUN)
    mon.finish(20 * US)
    assert mon.counts == {"events": 3, "errors": 2}


def test_record_json_carries_env():
    mon, out, _ = make(WATCHDOG)
    wd(mon, "arm", 0, entry=Entry.START_RUN)
    mon.finish(10 * US)
    data = out[-1].as_json()
    assert data["type"] == "error_env" and data["env"] == "clk=10000,owner=1"
    assert re.search(r"error_env_watchdog: 7: event none", data["line"])


# --------------------------------------------------------------------------- vs a reference


def reference(steps: list[tuple[int, str, int, int]]) -> list[tuple]:
    """The watchdog by §3.5's text alone, for several instances, as (kind, key, ...) tuples.

    ``steps`` are (key, event, time delta, owner) with every event a start_run. Per instance:
    None (not monitoring) or (state, last reset of clk or None, deadline or None).
    """
    TABLE = {
        ("idle", "arm"): "armed",
        ("idle", "poke"): "idle",
        ("armed", "pet"): "armed",
        ("armed", "poke"): "armed",
        ("armed", "disarm"): "idle",
        ("armed", "trip"): "tripped",
        ("tripped", "rearm"): "armed",
    }
    BOUND = 10 * US
    inst: dict[int, list] = {}
    armed_order: dict[int, int] = {}
    out: list[tuple] = []
    now = 0
    n = 0

    def clk(k: int, t: int) -> int:
        return t - inst[k][1]

    def expire_before(t: int) -> None:
        due = [(d[2], armed_order[k], k) for k, d in inst.items() if d[2] is not None and d[2] < t]
        for deadline, _, k in sorted(due):
            out.append(("none", k, inst[k][0], clk(k, deadline)))
            del inst[k]

    for key, event, dt, owner in steps:
        now += dt
        expire_before(now)
        if key not in inst:
            inst[key] = ["idle", None, None]
        state, reset, deadline = inst[key]
        nxt = TABLE.get((state, event))
        if nxt is None:
            out.append(("error", key, state, event))
            del inst[key]
            continue
        if state == "armed" and now - reset >= BOUND:
            out.append(("env", key, state, event, clk(key, now), owner))
            del inst[key]
            continue
        if event == "arm":
            reset = now
        ok = True
        if (state, event) == ("armed", "pet"):
            ok = now - reset >= 2 * US and owner == 1
            reset = now
        if not ok:
            out.append(("env", key, state, event, 0, owner))
            del inst[key]
            continue
        if nxt == "armed" and (state != "armed" or event == "pet"):
            deadline = max(reset + BOUND, now)
            n += 1
            armed_order[key] = n
        elif state == "armed" and nxt != "armed":
            deadline = None
        inst[key] = [nxt, reset, deadline]
        out.append(("event", key, state, event, nxt))
    expire_before(now + 1)
    return out


def observed(out: list[Record]) -> list[tuple]:
    res: list[tuple] = []
    for r in out:
        if isinstance(r, EnvRecord):
            m = re.fullmatch(r"clk=(\d+),owner=(\d+)", r.env)
            assert m is not None
            if r.event == "none":
                res.append(("none", r.id, r.state, int(m[1])))
            else:
                res.append(("env", r.id, r.state, r.event, int(m[1]), int(m[2])))
        elif r.kind == "error":
            res.append(("error", r.id, r.state, r.event))
        else:
            res.append(("event", r.id, r.state, r.event, r.next_state))
    return res


STEP = st.tuples(
    st.integers(1, 3),
    st.sampled_from(["arm", "pet", "poke", "disarm", "trip", "rearm"]),
    st.integers(0, 6 * US).map(lambda v: v - v % 500),
    st.sampled_from([0, 1, 1, 1]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_engine_matches_the_reference(steps):
    mon, out, _ = make(WATCHDOG)
    now = 0
    for key, event, dt, owner in steps:
        now += dt
        wd(mon, event, now, key=key, entry=Entry.START_RUN, owner=owner)
    mon.finish(now)
    assert observed(out) == reference(steps)


@pytest.mark.parametrize(
    ("guard", "message"),
    [
        ("(" * 3000 + "clk < 5us" + ")" * 3000, "more than 64 nested parentheses"),
        ("(" * 65 + "clk < 5us" + ")" * 65, "more than 64 nested parentheses"),
        (" || ".join(["clk < 5us"] * 3000), "more than 64 && and || operators"),
    ],
)
def test_a_guard_nested_too_deeply_is_a_model_error_not_a_recursion_error(guard, message):
    text = dot(f'"a" -> "b" [ label = "go;{guard}" ];', '"b" -> "a" [ label = "back;reset(clk)" ];')
    err = model_error(text)
    assert "guard nested too deeply" in str(err) and message in str(err)
    assert err.line is not None and err.col is not None


def test_a_guard_nested_64_deep_is_read():
    guard = "(" * 64 + "clk < 5us" + ")" * 64
    text = dot(f'"a" -> "b" [ label = "go;{guard}" ];', '"b" -> "a" [ label = "back;reset(clk)" ];')
    parse_hybrid(text, "m.dot", {})
