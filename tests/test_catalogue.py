"""The kernel's monitor set: registration order, hook tables equal to spec §4.1/§4.2."""

from __future__ import annotations

import errno

import pytest

from pyrv.monitors.catalogue import build_rv, kernel_definitions
from pyrv.monitors.da import DAMonitor, Entry, MonitorType

#: the sched container and its children as available_monitors lists them (spec §1.1)
SCHED = ["sched"] + [
    f"sched:{c}" for c in (["opid", "sssw", "nrp", "sts", "snep", "scpd", "snroc", "sco"])
]


def test_available_monitors_in_the_kernels_order():
    # spec §1.1: link order wip, wwnr, sched, sco, snroc, scpd, snep, rtapp, pagefault, sleep,
    # sts, nrp, sssw, opid, stall, deadline, nomiss, wakeup;
    # children inserted right after their parent, so siblings appear in reverse order
    rv = build_rv()
    assert rv.read("available_monitors").decode().split() == [
        "wip",
        "wwnr",
        *SCHED,
        "rtapp",
        "rtapp:wakeup",
        "rtapp:sleep",
        "rtapp:pagefault",
        "stall",
        "deadline",
        "deadline:nomiss",
    ]


def test_descriptions_and_types_are_the_kernels():
    # spec §4: description and instance type of each monitor
    expected = {
        "wip": ("wakeup in preemptive per-cpu testing monitor.", MonitorType.PER_CPU),
        "wwnr": ("wakeup while not running per-task testing model.", MonitorType.PER_TASK),
        "sco": ("scheduling context operations.", MonitorType.PER_CPU),
        "snroc": ("set non runnable on its own context.", MonitorType.PER_TASK),
        "scpd": ("schedule called with preemption disabled.", MonitorType.PER_CPU),
        "snep": ("schedule does not enable preempt.", MonitorType.PER_CPU),
        "sts": ("schedule implies task switch.", MonitorType.PER_CPU),
        "nrp": ("need resched preempts.", MonitorType.PER_TASK),
        "sssw": ("set state sleep and wakeup.", MonitorType.PER_TASK),
        "opid": ("operations with preemption and irq disabled.", MonitorType.PER_CPU),
        "stall": ("identify tasks stalled for longer than a threshold.", MonitorType.PER_TASK),
        # §4.13-§4.15
        "pagefault": ("Monitor that RT tasks do not raise page faults", MonitorType.PER_TASK),
        "sleep": ("Monitor that RT tasks do not undesirably sleep", MonitorType.PER_TASK),
        "wakeup": (
            "Monitor that real-time tasks are not woken by lower-priority tasks",
            MonitorType.PER_TASK,
        ),
        "nomiss": ("dl entities run to completion before their deadline.", MonitorType.PER_OBJ),
    }
    defs = kernel_definitions()
    assert {n: (d.description, d.type) for n, d in defs.items()} == expected
    rv = build_rv()
    assert rv.read("monitors/sched/desc") == (
        b"container for several scheduler monitor specifications.\n\0"
    )
    assert rv.read("monitors/wwnr/desc") == b"wakeup while not running per-task testing model.\n\0"


def hook_rows(name):
    return [
        (h.tracepoint, h.target, h.when_text, h.entry, h.model_event_name)
        for h in kernel_definitions()[name].hooks
    ]


def test_wip_hooks_are_spec_4_1():
    # preempt_disable -> handle; preempt_enable -> start; sched_waking -> handle
    assert hook_rows("wip") == [
        ("preemptirq:preempt_disable", "current", None, Entry.HANDLE, "preempt_disable"),
        ("preemptirq:preempt_enable", "current", None, Entry.START, "preempt_enable"),
        ("sched:sched_waking", "current", None, Entry.HANDLE, "sched_waking"),
    ]


def test_wwnr_hooks_are_spec_4_2():
    # prev: start if prev_state == S (TASK_INTERRUPTIBLE) else handle, switch_out;
    # next: handle switch_in; sched_wakeup: handle wakeup
    assert hook_rows("wwnr") == [
        ("sched:sched_switch", "prev_pid", "prev_state == 'S'", Entry.START, "switch_out"),
        ("sched:sched_switch", "prev_pid", "prev_state != 'S'", Entry.HANDLE, "switch_out"),
        ("sched:sched_switch", "next_pid", None, Entry.HANDLE, "switch_in"),
        ("sched:sched_wakeup", "pid", None, Entry.HANDLE, "wakeup"),
    ]


def test_sched_container_with_default_slots_fails_with_ebusy_and_rolls_back():
    # spec §1.3: snroc, nrp, sssw are per-task; with the default of 2 slots the third fails
    rv = build_rv()
    with pytest.raises(OSError) as err:
        rv.write("monitors/sched/enable", b"1\n")
    assert err.value.errno == errno.EBUSY
    assert rv.read("enabled_monitors") == b""
    assert all(not m.enabled for m in rv.monitors())


def test_sched_container_enables_children_in_order_with_enough_slots():
    rv = build_rv(per_task_slots=3)
    assert rv.write("enabled_monitors", b"sched\n") == 6
    assert rv.read("enabled_monitors").decode().split() == SCHED


def test_monitoring_on_0_to_1_resets_da_instances():
    rv = build_rv()
    rv.write("enabled_monitors", b"wwnr\n")
    wwnr = next(m for m in rv.monitors() if m.name == "wwnr")
    assert isinstance(wwnr, DAMonitor)
    wwnr.instances[42] = 1
    rv.write("monitoring_on", b"0\n")
    assert wwnr.instances == {42: 1}
    rv.write("monitoring_on", b"1\n")
    assert wwnr.instances == {}


def test_disabled_monitoring_on_gates_the_engine():
    from pyrv.monitors.records import Context

    rv = build_rv()
    rv.write("enabled_monitors", b"wwnr\n")
    wwnr = next(m for m in rv.monitors() if m.name == "wwnr")
    rv.write("monitoring_on", b"0")
    wwnr.handle(Entry.START, 5, 0, Context(0, 0, 5, "t"))
    assert wwnr.instances == {}
    rv.write("monitoring_on", b"1")
    wwnr.handle(Entry.START, 5, 0, Context(0, 0, 5, "t"))
    assert wwnr.instances == {5: 0}


def test_only_requested_monitors_are_built_in_the_kernels_order():
    # a check of a few monitors builds just those, with every container, in spec §1.1 order
    rv = build_rv(only={"wwnr", "sco", "nomiss"})
    assert rv.read("available_monitors").decode().split() == [
        "wwnr",
        "sched",
        "sched:sco",
        "rtapp",
        "deadline",
        "deadline:nomiss",
    ]


def test_a_check_of_named_monitors_builds_only_them(monkeypatch):
    # -m wwnr reads wwnr's definition alone; a container or an unknown name needs them all
    from pyrv import api
    from pyrv.monitors import catalogue

    assert api._plainly_named(["wwnr"], []) == {"wwnr"}
    assert api._plainly_named(["sched:sco", "wip"], []) == {"sco", "wip"}
    assert api._plainly_named(["sched"], []) is None
    assert api._plainly_named(["nosuch"], []) is None
    assert api._plainly_named([], []) is None
    built = []
    real = catalogue.build_monitor
    monkeypatch.setattr(
        catalogue, "build_monitor", lambda d, *a: built.append(d.name) or real(d, *a)
    )
    names, rv = api.select_monitors(
        api.CheckOptions(monitors=["wwnr"]), [], lambda _e: True, "t", only_requested=True
    )
    assert names == ["wwnr"] and set(built) == {"wwnr"}
    assert rv.read("enabled_monitors").decode().split() == ["wwnr"]
