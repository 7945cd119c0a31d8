"""The bundled model files must equal the tables of spec §4, transcribed here by hand."""

from __future__ import annotations

import pytest

from pyrv.models.automaton import Automaton
from pyrv.models.dot import load_dot_model
from pyrv.models.hybrid import BoolOp, Comparison, load_bundled_hybrid
from pyrv.models.library import available_models, load_model, model_path
from tests.conftest import REPO

# Per monitor: states and events in the expected index order (initial first, then
# alphabetical; events alphabetical), initial, finals, and the valid transitions by row.
SPEC: dict[str, dict] = {
    "wip": {  # §4.1
        "states": ["preemptive", "non_preemptive"],
        "events": ["preempt_disable", "preempt_enable", "sched_waking"],
        "initial": "preemptive",
        "finals": {"preemptive"},
        "rows": {
            "preemptive": {"preempt_disable": "non_preemptive"},
            "non_preemptive": {
                "preempt_enable": "preemptive",
                "sched_waking": "non_preemptive",
            },
        },
    },
    "wwnr": {  # §4.2
        "states": ["not_running", "running"],
        "events": ["switch_in", "switch_out", "wakeup"],
        "initial": "not_running",
        "finals": {"not_running"},
        "rows": {
            "not_running": {"switch_in": "running", "wakeup": "not_running"},
            "running": {"switch_out": "not_running"},
        },
    },
    "sco": {  # §4.4
        "states": ["thread_context", "scheduling_context"],
        "events": ["sched_set_state", "schedule_entry", "schedule_exit"],
        "initial": "thread_context",
        "finals": {"thread_context"},
        "rows": {
            "thread_context": {
                "sched_set_state": "thread_context",
                "schedule_entry": "scheduling_context",
            },
            "scheduling_context": {"schedule_exit": "thread_context"},
        },
    },
    "snroc": {  # §4.5
        "states": ["other_context", "own_context"],
        "events": ["sched_set_state", "sched_switch_in", "sched_switch_out"],
        "initial": "other_context",
        "finals": {"other_context"},
        "rows": {
            "other_context": {"sched_switch_in": "own_context"},
            "own_context": {
                "sched_set_state": "own_context",
                "sched_switch_out": "other_context",
            },
        },
    },
    "scpd": {  # §4.6
        "states": ["cant_sched", "can_sched"],
        "events": ["preempt_disable", "preempt_enable", "schedule_entry", "schedule_exit"],
        "initial": "cant_sched",
        "finals": {"cant_sched"},
        "rows": {
            "cant_sched": {"preempt_disable": "can_sched"},
            "can_sched": {
                "preempt_enable": "cant_sched",
                "schedule_entry": "can_sched",
                "schedule_exit": "can_sched",
            },
        },
    },
    "snep": {  # §4.7 (state "scheduling_contex", sic)
        "states": ["non_scheduling_context", "scheduling_contex"],
        "events": ["preempt_disable", "preempt_enable", "schedule_entry", "schedule_exit"],
        "initial": "non_scheduling_context",
        "finals": {"non_scheduling_context"},
        "rows": {
            "non_scheduling_context": {
                "preempt_disable": "non_scheduling_context",
                "preempt_enable": "non_scheduling_context",
                "schedule_entry": "scheduling_contex",
            },
            "scheduling_contex": {"schedule_exit": "non_scheduling_context"},
        },
    },
    "sts": {  # §4.8
        "states": [
            "can_sched",
            "cant_sched",
            "disable_to_switch",
            "enable_to_exit",
            "in_irq",
            "scheduling",
            "switching",
        ],
        "events": [
            "irq_disable",
            "irq_enable",
            "irq_entry",
            "sched_switch",
            "schedule_entry",
            "schedule_exit",
        ],
        "initial": "can_sched",
        "finals": {"can_sched"},
        "rows": {
            "can_sched": {"irq_disable": "cant_sched", "schedule_entry": "scheduling"},
            "cant_sched": {"irq_enable": "can_sched", "irq_entry": "cant_sched"},
            "disable_to_switch": {
                "irq_enable": "enable_to_exit",
                "irq_entry": "in_irq",
                "sched_switch": "switching",
            },
            "enable_to_exit": {
                "irq_disable": "enable_to_exit",
                "irq_enable": "enable_to_exit",
                "irq_entry": "enable_to_exit",
                "schedule_exit": "can_sched",
            },
            "in_irq": {"irq_enable": "scheduling", "irq_entry": "in_irq"},
            "scheduling": {"irq_disable": "disable_to_switch"},
            "switching": {"irq_enable": "enable_to_exit"},
        },
    },
    "nrp": {  # §4.9: initial preempt_irq is NOT final
        "states": ["preempt_irq", "any_thread_running", "nested_preempt", "rescheduling"],
        "events": ["irq_entry", "sched_need_resched", "schedule_entry", "schedule_entry_preempt"],
        "initial": "preempt_irq",
        "finals": {"any_thread_running"},
        "rows": {
            "any_thread_running": {
                "irq_entry": "any_thread_running",
                "sched_need_resched": "rescheduling",
                "schedule_entry": "any_thread_running",
            },
            "nested_preempt": {
                "irq_entry": "nested_preempt",
                "sched_need_resched": "preempt_irq",
                "schedule_entry": "any_thread_running",
                "schedule_entry_preempt": "any_thread_running",
            },
            "preempt_irq": {
                "irq_entry": "preempt_irq",
                "sched_need_resched": "preempt_irq",
                "schedule_entry": "nested_preempt",
                "schedule_entry_preempt": "nested_preempt",
            },
            "rescheduling": {
                "irq_entry": "preempt_irq",
                "sched_need_resched": "rescheduling",
                "schedule_entry": "any_thread_running",
                "schedule_entry_preempt": "any_thread_running",
            },
        },
    },
    "sssw": {  # §4.10 (the table's short column names expanded)
        "states": ["runnable", "signal_wakeup", "sleepable", "sleeping"],
        "events": [
            "sched_set_state_runnable",
            "sched_set_state_sleepable",
            "sched_switch_blocking",
            "sched_switch_in",
            "sched_switch_preempt",
            "sched_switch_suspend",
            "sched_switch_yield",
            "sched_wakeup",
            "signal_deliver",
        ],
        "initial": "runnable",
        "finals": {"runnable"},
        "rows": {
            "runnable": {
                "sched_set_state_runnable": "runnable",
                "sched_set_state_sleepable": "sleepable",
                "sched_switch_blocking": "sleeping",
                "sched_switch_in": "runnable",
                "sched_switch_preempt": "runnable",
                "sched_switch_yield": "runnable",
                "sched_wakeup": "runnable",
                "signal_deliver": "runnable",
            },
            "signal_wakeup": {
                "sched_set_state_sleepable": "sleepable",
                "sched_switch_in": "signal_wakeup",
                "sched_switch_preempt": "signal_wakeup",
                "sched_switch_yield": "signal_wakeup",
                "sched_wakeup": "signal_wakeup",
                "signal_deliver": "runnable",
            },
            "sleepable": {
                "sched_set_state_runnable": "runnable",
                "sched_set_state_sleepable": "sleepable",
                "sched_switch_blocking": "sleeping",
                "sched_switch_in": "sleepable",
                "sched_switch_preempt": "sleepable",
                "sched_switch_suspend": "sleeping",
                "sched_switch_yield": "signal_wakeup",
                "sched_wakeup": "runnable",
                "signal_deliver": "sleepable",
            },
            "sleeping": {"sched_wakeup": "runnable"},
        },
    },
    "opid": {  # §4.11, the hybrid form (guards: test_opid_hybrid_guards_are_the_specs)
        "states": ["any"],
        "events": ["sched_need_resched", "sched_waking"],
        "initial": "any",
        "finals": {"any"},
        "rows": {"any": {"sched_need_resched": "any", "sched_waking": "any"}},
        "hybrid": True,
    },
    "stall": {  # §4.16 (the DA structure; clocks, guards and the invariant: test_hybrid.py)
        "states": ["dequeued", "enqueued", "running"],
        "events": [
            "sched_switch_in",
            "sched_switch_preempt",
            "sched_switch_wait",
            "sched_wakeup",
        ],
        "initial": "dequeued",
        "finals": {"dequeued"},
        "rows": {
            "dequeued": {"sched_wakeup": "enqueued"},
            "enqueued": {"sched_switch_in": "running", "sched_wakeup": "enqueued"},
            "running": {
                "sched_switch_in": "running",
                "sched_switch_preempt": "enqueued",
                "sched_switch_wait": "dequeued",
                "sched_wakeup": "running",
            },
        },
        "hybrid": True,
    },
    "nomiss": {  # §4.18 (the DA structure; guards, resets and invariants: test_nomiss.py)
        "states": ["ready", "idle", "running", "sleeping", "throttled"],
        "events": [
            "dl_replenish",
            "dl_server_idle",
            "dl_server_stop",
            "dl_throttle",
            "sched_switch_in",
            "sched_switch_suspend",
            "sched_wakeup",
        ],
        "initial": "ready",
        "finals": {"ready"},
        "rows": {
            "idle": {
                "dl_replenish": "ready",
                "dl_server_idle": "idle",
                "dl_server_stop": "sleeping",
                "dl_throttle": "throttled",
                "sched_switch_in": "running",
            },
            "ready": {
                "dl_replenish": "ready",
                "dl_server_idle": "idle",
                "dl_server_stop": "sleeping",
                "dl_throttle": "throttled",
                "sched_switch_in": "running",
                "sched_wakeup": "ready",
            },
            "running": {
                "dl_replenish": "running",
                "dl_server_idle": "idle",
                "dl_server_stop": "sleeping",
                "dl_throttle": "throttled",
                "sched_switch_in": "running",
                "sched_switch_suspend": "sleeping",
                "sched_wakeup": "running",
            },
            "sleeping": {
                "dl_replenish": "ready",
                "dl_server_idle": "sleeping",
                "dl_server_stop": "sleeping",
                "dl_throttle": "throttled",
                "sched_switch_in": "running",
                "sched_wakeup": "ready",
            },
            "throttled": {
                "dl_replenish": "ready",
                "dl_server_idle": "throttled",
                "dl_throttle": "throttled",
                "sched_switch_suspend": "throttled",
                "sched_wakeup": "throttled",
            },
        },
        "hybrid": True,
    },
}


#: §4.11, the DA form of kernels 6.17-7.0 (examples/opid-6.17.dot): initial disabled is NOT final
OPID_DA = {
    "states": ["disabled", "enabled", "in_irq", "irq_disabled", "preempt_disabled"],
    "events": [
        "irq_disable",
        "irq_enable",
        "irq_entry",
        "preempt_disable",
        "preempt_enable",
        "sched_need_resched",
        "sched_waking",
    ],
    "initial": "disabled",
    "finals": {"enabled"},
    "rows": {
        "disabled": {
            "irq_enable": "preempt_disabled",
            "irq_entry": "disabled",
            "preempt_enable": "irq_disabled",
            "sched_need_resched": "disabled",
            "sched_waking": "disabled",
        },
        "enabled": {
            "irq_disable": "irq_disabled",
            "preempt_disable": "preempt_disabled",
            "preempt_enable": "enabled",
        },
        "in_irq": {
            "irq_enable": "enabled",
            "irq_entry": "in_irq",
            "sched_need_resched": "in_irq",
            "sched_waking": "in_irq",
        },
        "irq_disabled": {
            "irq_enable": "enabled",
            "irq_entry": "in_irq",
            "preempt_disable": "disabled",
            "sched_need_resched": "irq_disabled",
        },
        "preempt_disabled": {"irq_disable": "disabled", "preempt_enable": "enabled"},
    },
}


def test_every_spec_model_is_bundled_and_nothing_else() -> None:
    assert available_models() == sorted(SPEC)


@pytest.mark.parametrize("name", sorted(SPEC))
def test_bundled_model_equals_spec_table(name: str) -> None:
    a = load_model(name)
    assert a.name == name
    assert_equals_spec(a, SPEC[name])


def test_opid_da_form_in_examples_equals_spec_table() -> None:
    """The 6.17-7.0 DA form of opid, kept for traces of those kernels, is still §4.11's table."""
    model = load_dot_model(REPO / "examples" / "opid-6.17.dot", strict=True)
    assert model.warnings == () and not model.is_hybrid
    assert_equals_spec(model.automaton, OPID_DA)


def test_opid_hybrid_guards_are_the_specs() -> None:
    """§4.11: need_resched needs irq_off == 1, waking irq_off == 1 && preempt_off == 1; both
    variables are read at the probe (not stored), no invariant, so no timer."""
    h = load_bundled_hybrid("opid", {})
    assert [(e.name, e.kind, e.stored) for e in h.envs] == [
        ("irq_off", "value", False),
        ("preempt_off", "value", False),
    ]
    assert h.invariants == {}
    ev = h.automaton.event_index
    need, waking = h.rules[(0, ev("sched_need_resched"))], h.rules[(0, ev("sched_waking"))]
    assert need.guard == Comparison(0, "==", 1, "irq_off == 1") and not need.resets
    assert waking.guard == BoolOp(
        "&&", Comparison(0, "==", 1, "irq_off == 1"), Comparison(1, "==", 1, "preempt_off == 1")
    )
    assert not waking.resets


def assert_equals_spec(a: Automaton, spec: dict) -> None:
    assert list(a.states) == spec["states"]
    assert list(a.events) == spec["events"]
    assert a.states[a.initial] == spec["initial"]
    assert a.initial == 0
    assert {a.states[f] for f in a.finals} == spec["finals"]
    expected = {(s, e): n for s, row in spec["rows"].items() for e, n in row.items()}
    assert a.table() == expected
    # the index rule itself, independently of the literal orders above
    assert list(a.states[1:]) == sorted(a.states[1:])
    assert list(a.events) == sorted(a.events)
    # every row of the full function, including the invalid entries
    for s, state in enumerate(a.states):
        for e, event in enumerate(a.events):
            nxt = spec["rows"].get(state, {}).get(event)
            assert a.function[s][e] == (None if nxt is None else a.states.index(nxt))


@pytest.mark.parametrize("name", sorted(SPEC))
def test_bundled_model_files_are_clean(name: str) -> None:
    """Strict parse: no warnings (no overridden edges, unreachable states, ...), no HA parts."""
    model = load_dot_model(model_path(name), strict=True)
    assert model.warnings == ()
    assert model.is_hybrid == SPEC[name].get("hybrid", False)
    assert model.graph_name == "state_automaton"


def test_wwnr_final_is_declared_with_ellipse() -> None:
    text = model_path("wwnr").read_text()
    assert '{node [shape = ellipse] "not_running"}' in text
    assert "shape = doublecircle" not in text


def test_container_path_lookup() -> None:
    assert model_path("sched/sco") == model_path("sco")
    assert model_path("sco").parent.name == "sched"
    assert model_path("wip").parent.name == "files"
    assert isinstance(load_model("sched/nrp"), Automaton)


@pytest.mark.parametrize("bad", ["nope", "sched/wip", "rtapp/sco", "", "sco.dot"])
def test_unknown_model_lists_what_exists(bad: str) -> None:
    with pytest.raises(KeyError) as info:
        model_path(bad)
    msg = str(info.value)
    assert repr(bad) in msg
    assert all(n in msg for n in SPEC)
    with pytest.raises(KeyError):
        load_model(bad)
