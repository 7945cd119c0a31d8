"""The LTL monitor engine against spec §3.4 (include/rv/ltl_monitor.h), the rtapp monitors of
§4.13-§4.15, the record formats of §5 and the reaction message of §2.

Expected records in the scenario tests are derived from the formulas by hand: each step says
which Büchi states (numbered as the kernel's headers number them, see test_buchi.py) survive and
why, in terms of the rule. The property tests at the end compare the monitor with two
independent evaluators of the formula on finite prefixes.
"""

from __future__ import annotations

import errno
import functools
import itertools
import re
from collections.abc import Hashable

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pyrv.models.automaton import ModelError
from pyrv.models.buchi import build_buchi
from pyrv.models.ltl import parse_ltl
from pyrv.monitors.da import task_key
from pyrv.monitors.ltl import RTAPP, AtomInit, CommPrefix, LTLMonitor, build_rtapp_monitor
from pyrv.monitors.ltl_records import LTLRecord, atom_list, bitmap_list
from pyrv.monitors.reactors import Reactor
from pyrv.monitors.records import Context
from pyrv.monitors.registry import RV

CTX = Context(ts=2_817_898_379_000, cpu=1, pid=4242, comm="irq/9-acpi")


class Facts:
    """What a dispatcher would know of tasks: ``rt`` and ``kthread`` per task key."""

    def __init__(self, **per_key: dict[str, bool | None]) -> None:
        self.table: dict[Hashable, dict[str, bool | None]] = {}
        for key, facts in per_key.items():
            self.table[int(key.removeprefix("t"))] = dict(facts)

    def set(self, key: Hashable, **facts: bool | None) -> None:
        self.table.setdefault(key, {}).update(facts)

    def __call__(self, key: Hashable, fact: str) -> bool | None:
        return self.table.get(key, {}).get(fact)


class Run:
    """A monitor plus what it wrote (records) and said (reactions), in one ordered log."""

    def __init__(self, mon: LTLMonitor) -> None:
        self.mon = mon
        self.log: list[tuple[str, object]] = []
        mon.sink = lambda rec: self.log.append(("record", rec))
        mon.react = lambda msg: self.log.append(("react", msg))  # type: ignore[method-assign]
        mon.enabled = True

    def lines(self) -> list[str]:
        """Records as their payloads, reactions as the message; then forget them."""
        out = [x.payload() if kind == "record" else x for kind, x in self.log]  # type: ignore[union-attr]
        self.log.clear()
        return out


def rtapp(name: str, facts: Facts) -> Run:
    return Run(build_rtapp_monitor(name, facts=facts))


# --------------------------------------------------------------------------- pagefault (§4.13)


def fault(r: Run, pid: int, comm: str) -> list[str]:
    r.mon.atom_pulse(pid, comm, pid, "PAGEFAULT", True, CTX)
    return r.lines()


def test_pagefault_violation_after_a_non_rt_start():
    # RULE = always (RT imply not PAGEFAULT): one state S0 labelled (not RT or not PAGEFAULT).
    facts = Facts(t100={"rt": False})
    r = rtapp("pagefault", facts)
    # An existing task: PAGEFAULT unknown until the first fault. That fault's update makes
    # every atom known, S0's label holds (not RT), so the monitor starts -- silently, no
    # validation on the starting update. The pulse's flip-back validates: S0 -> S0.
    assert fault(r, 100, "worker") == ["worker[100]: (0) x () -> (0)"]
    # The task becomes RT; its next fault makes RT and PAGEFAULT true: S0's label fails, no
    # state is left: event, then error, then the reaction (LTL traces before it reacts).
    facts.set(100, rt=True)
    assert fault(r, 100, "worker") == [
        "worker[100]: (0) x (pa,rt) -> ()",
        "worker[100]: violation detected",
        "rv: pagefault: worker[100]: violation detected\n",
    ]
    # Implicit reset: the next update attempts a start, which fails while RT and faulting,
    # and the flip-back never starts anything: silence.
    assert fault(r, 100, "worker") == []
    assert r.mon.states_of(100) == frozenset()
    # Once non-RT again, a fault restarts it.
    facts.set(100, rt=False)
    assert fault(r, 100, "worker") == ["worker[100]: (0) x () -> (0)"]


def test_pagefault_task_already_rt_at_its_first_fault_never_starts():
    # §4.13: the only update is the fault pulse itself; with RT true at that update, S0's
    # label (not RT or not PAGEFAULT) is false, so no start -- and no report, ever, while RT.
    facts = Facts(t200={"rt": True})
    r = rtapp("pagefault", facts)
    for _ in range(5):
        assert fault(r, 200, "rt-app") == []
    assert r.mon.states_of(200) == frozenset()
    # The same for a task created while the monitor runs (PAGEFAULT known false from
    # creation, but creation does not attempt a start) that is RT at its first fault.
    facts.set(201, rt=False)
    r.mon.task_created(201, "rt-child", 201)
    facts.set(201, rt=True)  # e.g. sched_setscheduler before touching memory
    assert fault(r, 201, "rt-child") == []
    assert r.mon.states_of(201) == frozenset()


def test_pagefault_unknown_priority_never_starts():
    r = rtapp("pagefault", Facts())  # the dispatcher never saw this task's priority
    assert fault(r, 300, "mystery") == []
    assert r.mon.atoms_of(300) == {"PAGEFAULT": False, "RT": None}


# --------------------------------------------------------------------------- sleep (§4.14)


def sys_enter_clock_nanosleep(r: Run, pid: int, comm: str, clock: str, abstime: bool) -> None:
    m = r.mon
    m.atom_set(pid, comm, pid, "NANOSLEEP_CLOCK_MONOTONIC", clock == "MONOTONIC")
    m.atom_set(pid, comm, pid, "NANOSLEEP_CLOCK_TAI", clock == "TAI")
    m.atom_set(pid, comm, pid, "NANOSLEEP_TIMER_ABSTIME", abstime)
    m.atom_update(pid, comm, pid, "CLOCK_NANOSLEEP", True, CTX)


def sys_exit(r: Run, pid: int, comm: str) -> None:
    m = r.mon
    for atom in ("FUTEX_LOCK_PI", "FUTEX_WAIT", "NANOSLEEP_CLOCK_MONOTONIC"):
        m.atom_set(pid, comm, pid, atom, False)
    for atom in ("NANOSLEEP_CLOCK_TAI", "NANOSLEEP_TIMER_ABSTIME"):
        m.atom_set(pid, comm, pid, atom, False)
    m.atom_update(pid, comm, pid, "CLOCK_NANOSLEEP", False, CTX)


def pulse(r: Run, pid: int, comm: str, atom: str) -> list[str]:
    r.mon.atom_pulse(pid, comm, pid, atom, True, CTX)
    return r.lines()


# sleep.h states: S0 nrs = not (RT and SLEEP); S1 reason and not WAKE; S2 not WAKE and nrs;
# S3 friendly-wake and nrs; S4 reason and friendly-wake; S5 allow; S6 not WAKE and allow;
# S7 friendly-wake and allow. S1, S2, S6 (a sleep's "until" pending) lead to 1,2,3,4,6,7;
# the others lead to the initial states 0,1,4,5.


def test_sleep_rt_task_in_a_relative_realtime_nanosleep_is_a_violation():
    # A new RT user task: every atom is known from creation. clock_nanosleep(CLOCK_REALTIME,
    # relative) is no valid sleep reason, so (RT and SLEEP) imply (friendly or allowed) fails
    # at the sleep.
    r = rtapp("sleep", Facts(t512={"rt": True, "kthread": False}))
    r.mon.task_created(512, "rtapp", 512)
    sys_enter_clock_nanosleep(r, 512, "rtapp", "REALTIME", abstime=False)
    # start: SLEEP false so nrs holds (S0); no reason, no friendly wake, no allowlist: {0}
    assert r.lines() == []
    assert r.mon.states_of(512) == {0}
    # SLEEP: from S0 to 0,1,4,5 -- nrs false (RT and SLEEP), S1/S4 need a reason, S5 an
    # allowlisted state: nothing survives.
    assert pulse(r, 512, "rtapp", "SLEEP") == [
        "rtapp[512]: (0) x (cl_na,rt,sl) -> ()",
        "rtapp[512]: violation detected",
        "rv: sleep: rtapp[512]: violation detected\n",
    ]


def test_sleep_futex_wait_woken_by_hardirq_is_fine():
    r = rtapp("sleep", Facts(t513={"rt": True, "kthread": False}))
    r.mon.task_created(513, "rtapp", 513)
    # futex(FUTEX_WAIT): a valid reason. Start: S0 (not sleeping) and S1 (reason, no WAKE).
    r.mon.atom_update(513, "rtapp", 513, "FUTEX_WAIT", True, CTX)
    assert r.lines() == [] and r.mon.states_of(513) == {0, 1}
    # SLEEP: only S1 (reason and not WAKE) holds; the flip-back adds S2 (not WAKE, not
    # sleeping any more) -- the "not WAKE until friendly wake" obligation is pending.
    assert pulse(r, 513, "rtapp", "SLEEP") == [
        "rtapp[513]: (0-1) x (fu_wa,rt,sl) -> (1)",
        "rtapp[513]: (1) x (fu_wa,rt) -> (1-2)",
    ]
    # sched_waking in hardirq: a friendly wake discharges the until (S3, S4 join); after the
    # flip-back the runs that discharged it go on through S0.
    assert pulse(r, 513, "rtapp", "WOKEN_BY_HARDIRQ") == [
        "rtapp[513]: (1-2) x (fu_wa,rt,wo_ha) -> (1-4)",
        "rtapp[513]: (1-4) x (fu_wa,rt) -> (0-2)",
    ]
    # sched_wakeup: WAKE is fine now -- S0 survives; the pending-until states die.
    assert pulse(r, 513, "rtapp", "WAKE") == [
        "rtapp[513]: (0-2) x (fu_wa,rt,wak) -> (0)",
        "rtapp[513]: (0) x (fu_wa,rt) -> (0-1)",
    ]
    # sys_exit: no reason any more; S1 dies, S2 (reached from S1) and S0 remain.
    sys_exit(r, 513, "rtapp")
    assert r.lines() == ["rtapp[513]: (0-1) x (rt) -> (0,2)"]


def test_sleep_woken_before_a_friendly_wake_is_a_violation():
    r = rtapp("sleep", Facts(t514={"rt": True, "kthread": False}))
    r.mon.task_created(514, "rtapp", 514)
    r.mon.atom_update(514, "rtapp", 514, "FUTEX_WAIT", True, CTX)
    pulse(r, 514, "rtapp", "SLEEP")
    # WAKE with no friendly wake before it (e.g. woken by a lower-priority task): the sleep
    # promised "not WAKE until a friendly wake" and nothing was allowlisted.
    assert pulse(r, 514, "rtapp", "WAKE") == [
        "rtapp[514]: (1-2) x (fu_wa,rt,wak) -> ()",
        "rtapp[514]: violation detected",
        "rv: sleep: rtapp[514]: violation detected\n",
    ]


def test_sleep_non_rt_task_may_sleep_anyhow():
    r = rtapp("sleep", Facts(t600={"rt": False, "kthread": False}))
    r.mon.task_created(600, "sh", 600)
    sys_enter_clock_nanosleep(r, 600, "sh", "REALTIME", abstime=False)
    for atom in ("SLEEP", "WAKE", "SLEEP", "WAKE"):
        lines = pulse(r, 600, "sh", atom)
        assert lines and not any("violation" in x for x in lines)


def test_sleep_rcu_kernel_thread_is_allowlisted():
    # kernel_thread table: KERNEL_THREAD true, TASK_IS_RCU = comm starts with "rcu".
    r = rtapp("sleep", Facts(t16={"rt": True, "kthread": True}))
    r.mon.task_created(16, "rcu_preempt", 16)
    # SLEEP starts the monitor: S1 (a kernel thread's sleep has a reason) and S5 (allowed).
    # The flip-back: S0, S1, S2 (until pending), S5 and S6 (allowed, until pending).
    assert pulse(r, 16, "rcu_preempt", "SLEEP") == [
        "rcu_preempt[16]: (1,5) x (ker_th,rt,ta_rc) -> (0-2,5-6)"
    ]
    # An unfriendly WAKE: the allowlisted runs (S0 after S5) carry on, for ever.
    for _ in range(3):
        for atom in ("WAKE", "SLEEP"):
            assert not any("violation" in x for x in pulse(r, 16, "rcu_preempt", atom))


def test_sleep_existing_user_task_starts_only_once_every_atom_is_known():
    # An existing (not created) user task: BLOCK_ON_RT_MUTEX and the syscall atoms are only
    # initialised for new tasks, so they stay unknown until hooks set them: no start before.
    r = rtapp("sleep", Facts(t700={"rt": True, "kthread": False}))
    assert pulse(r, 700, "old-rt", "SLEEP") == []
    unknown = {a for a, v in r.mon.atoms_of(700).items() if v is None}
    assert unknown == {
        "BLOCK_ON_RT_MUTEX",
        "CLOCK_NANOSLEEP",
        "FUTEX_LOCK_PI",
        "FUTEX_WAIT",
        "NANOSLEEP_CLOCK_MONOTONIC",
        "NANOSLEEP_CLOCK_TAI",
        "NANOSLEEP_TIMER_ABSTIME",
    }
    sys_exit(r, 700, "old-rt")  # the syscall atoms become known; the RT mutex one is not
    assert r.mon.states_of(700) == frozenset()
    r.mon.atom_update(700, "old-rt", 700, "BLOCK_ON_RT_MUTEX", False, CTX)  # contention_end
    assert r.mon.states_of(700) == {0} and r.lines() == []
    assert pulse(r, 700, "old-rt", "SLEEP")[1] == "old-rt[700]: violation detected"


def test_sleep_existing_kernel_thread_waits_for_kthread_should_stop_too():
    r = rtapp("sleep", Facts(t30={"rt": True, "kthread": True}))
    pulse(r, 30, "ksoftirqd/3", "SLEEP")
    unknown = {a for a, v in r.mon.atoms_of(30).items() if v is None}
    assert unknown == {"BLOCK_ON_RT_MUTEX", "KTHREAD_SHOULD_STOP"}


# --------------------------------------------------------------------------- wakeup (§4.15)


def test_wakeup_rt_user_thread_woken_by_lower_priority():
    # always((RT and USER_THREAD) imply (not (WOKEN_BY_LOWER_PRIO or WOKEN_BY_SOFTIRQ) or
    # ALLOWLIST)): one state labelled with the invariant.
    r = rtapp("wakeup", Facts(t900={"rt": True, "kthread": False}))
    r.mon.task_created(900, "rtapp", 900)
    r.mon.atom_update(900, "rtapp", 900, "FUTEX_LOCK_PI", False, CTX)  # sys_exit: start
    assert r.lines() == [] and r.mon.states_of(900) == {0}
    assert pulse(r, 900, "rtapp", "WOKEN_BY_LOWER_PRIO") == [
        "rtapp[900]: (0) x (rt,us_th,wo_lo_pr) -> ()",
        "rtapp[900]: violation detected",
        "rv: wakeup: rtapp[900]: violation detected\n",
    ]


def test_wakeup_softirq_is_as_bad_and_the_allowlist_excuses_both():
    r = rtapp("wakeup", Facts(t901={"rt": True, "kthread": False}))
    r.mon.task_created(901, "rtapp", 901)
    r.mon.atom_update(901, "rtapp", 901, "BLOCK_ON_RT_MUTEX", True, CTX)  # contention_begin
    # allowed: the ALLOWLIST disjunct holds (the "or ALLOWLIST" binds inside the imply)
    assert pulse(r, 901, "rtapp", "WOKEN_BY_LOWER_PRIO") == [
        "rtapp[901]: (0) x (bl_on_rt_mu,rt,us_th,wo_lo_pr) -> (0)",
        "rtapp[901]: (0) x (bl_on_rt_mu,rt,us_th) -> (0)",
    ]
    r.mon.atom_update(901, "rtapp", 901, "BLOCK_ON_RT_MUTEX", False, CTX)  # contention_end
    r.lines()
    assert pulse(r, 901, "rtapp", "WOKEN_BY_SOFTIRQ")[1] == "rtapp[901]: violation detected"


def test_wakeup_kernel_threads_and_non_rt_tasks_are_never_violated():
    facts = Facts(t2={"rt": True, "kthread": True}, t3={"rt": False, "kthread": False})
    r = rtapp("wakeup", facts)
    for pid, comm in ((2, "kthreadd"), (3, "bash")):
        r.mon.task_created(pid, comm, pid)
        r.mon.atom_update(pid, comm, pid, "FUTEX_LOCK_PI", False, CTX)
        for atom in ("WOKEN_BY_LOWER_PRIO", "WOKEN_BY_SOFTIRQ") * 2:
            assert not any("violation" in x for x in pulse(r, pid, comm, atom))


# --------------------------------------------------------------------------- engine (§3.4)


def small(text: str = "RULE = always (A imply not B)", **kw) -> Run:
    b = build_buchi(parse_ltl(text, name="small"))
    return Run(LTLMonitor("small", "test monitor", b, **kw))


def test_the_starting_update_is_not_validated():
    # "rv/ltl: Do not execute the Buchi automaton twice on start condition" (6.17)
    r = small()
    r.mon.atom_set(1, "t", 1, "A", False)
    r.mon.atom_update(1, "t", 1, "B", True, CTX)
    assert r.lines() == [] and r.mon.states_of(1) == {0}
    r.mon.atom_update(1, "t", 1, "A", True, CTX)  # A and B: violation on this validation
    assert r.lines() == [
        "t[1]: (0) x (a,b) -> ()",
        "t[1]: violation detected",
        "rv: small: t[1]: violation detected\n",
    ]


def test_the_flip_back_of_a_pulse_never_starts():
    r = small()
    r.mon.atom_set(1, "t", 1, "A", True)
    r.mon.atom_update(1, "t", 1, "B", False, CTX)  # start
    r.mon.atom_pulse(1, "t", 1, "B", True, CTX)  # A and B: violation; the flip-back (B false)
    assert r.lines()[1:] == ["t[1]: violation detected", "rv: small: t[1]: violation detected\n"]
    assert r.mon.states_of(1) == frozenset()  # ...would satisfy the label, yet stays stopped


def test_no_start_while_an_atom_is_unknown():
    r = small()
    r.mon.atom_update(1, "t", 1, "B", False, CTX)  # A unknown
    assert r.mon.states_of(1) == frozenset()
    r.mon.atom_update(1, "t", 1, "A", True, CTX)
    assert r.mon.states_of(1) == {0}


def test_atom_set_evaluates_nothing():
    r = small()
    r.mon.atom_set(1, "t", 1, "A", False)
    r.mon.atom_set(1, "t", 1, "B", False)
    assert r.mon.states_of(1) == frozenset() and r.lines() == []


def test_task_created_starts_afresh():
    r = small(init=AtomInit(on_creation={"A": False}, always={"B": False}))
    r.mon.atom_update(1, "t", 1, "A", False, CTX)  # existing task: B false from `always`
    assert r.mon.states_of(1) == {0}
    r.mon.task_created(1, "t2", 1)  # pid reuse: a new task
    assert r.mon.states_of(1) == frozenset()
    assert r.mon.atoms_of(1) == {"A": False, "B": False}


def test_init_tables_apply_in_order_and_comm_prefixes():
    init = AtomInit(
        always={"A": True},
        on_creation={"A": False},
        kernel_thread={"B": CommPrefix("migration/")},
        user_thread={"B": True},
    )
    facts = Facts(t1={"kthread": True}, t2={"kthread": False})
    r = small(init=init, facts=facts)
    r.mon.task_created(1, "migration/3", 1)
    assert r.mon.atoms_of(1) == {"A": False, "B": True}
    r.mon.task_created(2, "sh", 2)
    assert r.mon.atoms_of(2) == {"A": False, "B": True}
    r.mon.atom_set(3, "migration/0", 3, "A", True)  # kthread unknown: no thread table
    assert r.mon.atoms_of(3) == {"A": True, "B": None}
    facts.set(4, kthread=True)
    r.mon.atom_set(4, "kworker/0:1", 4, "A", False)
    assert r.mon.atoms_of(4) == {"A": False, "B": False}


def test_fetched_atoms_are_resampled_on_every_update_not_on_set():
    facts = Facts(t1={"b": False})
    r = small(fetch={"B": "b"}, facts=facts)
    r.mon.atom_update(1, "t", 1, "A", True, CTX)  # start: A, not B
    facts.set(1, b=True)
    r.mon.atom_set(1, "t", 1, "A", True)
    assert r.mon.atoms_of(1)["B"] is False
    r.mon.atom_update(1, "t", 1, "A", True, CTX)
    assert r.lines()[0] == "t[1]: (0) x (a,b) -> ()"


def test_bad_atoms_are_refused():
    with pytest.raises(ValueError, match="not atoms of the model"):
        small(init=AtomInit(always={"C": False}))
    r = small()
    with pytest.raises(KeyError):
        r.mon.atom_update(1, "t", 1, "C", True, CTX)
    with pytest.raises(IndexError):
        r.mon.atom_update(1, "t", 1, 2, True, CTX)
    r.mon.atom_set(1, "t", 1, 0, True)  # atoms by index work too
    assert r.mon.atoms_of(1)["A"] is True


def test_disabled_monitor_does_nothing():
    r = small()
    r.mon.enabled = False
    r.mon.task_created(1, "t", 1)
    r.mon.atom_set(1, "t", 1, "A", True)
    r.mon.atom_update(1, "t", 1, "B", True, CTX)
    r.mon.atom_pulse(1, "t", 1, "B", True, CTX)
    assert r.mon.instances == {} and r.lines() == []


def test_emit_events_off_keeps_errors_and_counts():
    r = small()
    r.mon.emit_events = False
    r.mon.atom_set(1, "t", 1, "A", True)
    r.mon.atom_update(1, "t", 1, "B", False, CTX)
    r.mon.atom_update(1, "t", 1, "B", False, CTX)
    r.mon.atom_update(1, "t", 1, "B", True, CTX)
    assert r.lines() == ["t[1]: violation detected", "rv: small: t[1]: violation detected\n"]
    assert r.mon.counts == {"events": 2, "errors": 1}


def test_idle_tasks_of_each_cpu_are_separate_instances():
    r = small()
    for cpu in (0, 1):
        key = task_key(0, cpu)
        r.mon.atom_set(key, f"swapper/{cpu}", 0, "A", True)
        r.mon.atom_update(key, f"swapper/{cpu}", 0, "B", False, CTX)
    r.mon.atom_update(task_key(0, 1), "swapper/1", 0, "B", True, CTX)
    assert r.lines()[1] == "swapper/1[0]: violation detected"
    assert r.mon.states_of(task_key(0, 0)) == {0}


def test_registry_slot_gate_and_reaction():
    rv = RV(per_task_slots=1)
    messages: list[str] = []
    rv.register_reactor(Reactor("collect", "test", messages.append))
    a = LTLMonitor("la", "a", build_buchi(parse_ltl("RULE = always not B")))
    b = LTLMonitor("lb", "b", build_buchi(parse_ltl("RULE = always not B")))
    rv.register_monitor(a)
    rv.register_monitor(b)
    rv.enable_monitor(a)
    assert rv.task_slots_in_use() == [0]
    with pytest.raises(OSError) as info:
        rv.enable_monitor(b)
    assert info.value.errno == errno.EBUSY
    rv.set_monitor_reactor(a, rv.find_reactor("collect"))
    assert a.enabled
    # LTL does not consult monitoring_on ...
    rv.set_monitoring_on(False)
    a.atom_update(7, "t", 7, "B", False, CTX)
    assert a.states_of(7) == {0}
    # ... and has no reset callback: 0 -> 1 leaves its instances alone
    rv.set_monitoring_on(True)
    assert a.states_of(7) == {0}
    a.atom_update(7, "t", 7, "B", True, CTX)
    assert messages == ["rv: la: t[7]: violation detected\n"]
    rv.set_reacting_on(False)
    a.atom_update(7, "t", 7, "B", False, CTX)
    a.atom_update(7, "t", 7, "B", True, CTX)
    assert len(messages) == 1
    # disable forgets every instance and frees the slot; enabling again starts from scratch
    rv.disable_monitor(a)
    assert rv.task_slots_in_use() == [] and a.instances == {}
    rv.enable_monitor(b)
    assert rv.task_slots_in_use() == [0]


def test_rtapp_definitions():
    assert list(RTAPP) == ["pagefault", "sleep", "wakeup"]
    for name, d in RTAPP.items():
        mon = build_rtapp_monitor(name)
        assert mon.name == name and mon.description == d.description
        assert mon.uses_task_slot and not mon.has_reset
    assert RTAPP["sleep"].description == "Monitor that RT tasks do not undesirably sleep"


# --------------------------------------------------------------------------- formats (§5, §2)


def test_bitmap_lists_as_printk_pbl():
    assert bitmap_list(0) == ""
    assert bitmap_list(0b1) == "0"
    assert bitmap_list(0b10011) == "0-1,4"
    assert bitmap_list(0b1110_0110) == "1-2,5-7"
    assert bitmap_list((1 << 32) - 1) == "0-31"
    # 32-byte buffer: "0,2,...,30" is 42 characters; 31 survive
    assert bitmap_list(0x5555_5555) == "0,2,4,6,8,10,12,14,16,18,20,22,"


def test_atom_lists_and_the_64_byte_seq_buf():
    names = ("ab", "cd", "ef")
    assert atom_list(0b101, names) == "ab,ef"
    assert atom_list(0, names) == ""
    sleep = build_rtapp_monitor("sleep").automaton.abbreviations
    # every atom true: the 63 characters that fit, the 8th name cut in the middle
    assert atom_list((1 << 18) - 1, sleep) == (
        "ab_sl,bl_on_rt_mu,cl_na,fu_lo_pi,fu_wa,ker_th,kth_sh_st,na_cl_m"
    )


def test_record_lines_json_and_reaction():
    ev = LTLRecord("event", "sleep", "rtapp", 512, 0b11, 0b1100, 0b10, ("a", "b", "c", "d"), CTX)
    assert ev.payload() == "rtapp[512]: (0-1) x (c,d) -> (1)"
    assert ev.trace_line() == (
        "      irq/9-acpi-4242    [001]  2817.898379: event_sleep: rtapp[512]: (0-1) x (c,d) -> (1)"
    )
    er = LTLRecord("error", "sleep", "rtapp", 512, 0b11, 0b1100, 0, ("a", "b", "c", "d"), CTX)
    assert er.payload() == "rtapp[512]: violation detected"
    assert er.trace_line().endswith(" error_sleep: rtapp[512]: violation detected")
    assert er.reaction_message() == "rv: sleep: rtapp[512]: violation detected\n"
    j = ev.as_json()
    assert (j["type"], j["monitor"], j["id"], j["task_comm"]) == ("event", "sleep", 512, "rtapp")
    assert (j["states"], j["atoms"], j["next"]) == ("0-1", "c,d", "1")
    assert (j["pid"], j["comm"], j["cpu"], j["ts"]) == (4242, "irq/9-acpi", 1, CTX.ts)
    assert "states" not in er.as_json() and er.id == 512


def test_records_parse_back_with_the_rv_tracepoint_forms():
    # the trace readers' LTL payload forms (pyrv.sources.tracepoints) read our lines back
    from pyrv.sources import tracepoints

    rec = LTLRecord("event", "sleep", "my worker", 5, 0b101, 0b11, 0, ("a", "b"), CTX)
    tp = tracepoints.lookup("rv:event_sleep")
    assert tp is not None
    found = [m for f in tp.forms if (m := re.fullmatch(f.pattern, rec.payload()))]
    assert found and found[0].group("comm", "pid", "states", "atoms", "next") == (
        "my worker",
        "5",
        "0,2",
        "a,b",
        "",
    )
    err = LTLRecord("error", "sleep", "my worker", 5, 0, 0, 0, ("a", "b"), CTX)
    tp = tracepoints.lookup("rv:error_sleep")
    assert tp is not None
    assert any(re.fullmatch(f.pattern, err.payload()) for f in tp.forms)


# --------------------------------------------------------------------------- property tests
#
# The monitor's meaning on a finite word. A run of the tableau over letters l0..lk is a path
# S0 S1 .. Sk with S0 initial, each S(i+1) a successor of Si, and Si's label true on li; the
# monitor's live set after lk is the set of such Sk. A tableau node is "literals now + the
# obligations in its next set for the next letter", so a run over l0..lk exists iff the formula
# holds on l0..lk when every obligation that falls after lk counts as satisfied. That is
# `holds(f, word, 0, optimistic=True)` below, a direct recursive evaluation of the surface
# formula (negation swaps the optimistic and the pessimistic reading; past the end the
# optimistic reading is true and the pessimistic one false). The protocol of §3.4 on top:
# a start is attempted only on an update (never on a pulse's flip-back) and only where the
# one-letter word holds; from then on each letter is a validation (an event record), and a
# dead word gives an error record and stops the monitor until the next successful start.
#
# Reference 1 (`holds`) is exact for every formula. Reference 2 is the textbook notion "the
# prefix can be extended to an infinite word satisfying the formula", checked by a bounded
# lasso search (prefix + loop of 1 or 2 letters, evaluated with the standard fixpoint
# semantics). It agrees with the monitor exactly on the fragment used for it: formulas
# without true/false literals in which every atom occurs with one polarity only (after
# pushing negations inward; `imply` negates its left side). There, any live tableau prefix
# is extended by repeating the letter that makes every literal true -- under it every
# subformula holds at every position -- so "a run exists" and "extendable" coincide and a
# 1-letter loop suffices. Outside the fragment the monitor can be late (see
# test_the_monitor_is_late_on_contradictory_obligations) and never sees liveness violations.

ATOMS = ("A", "B", "C")
UNOPS = ("not", "always", "eventually", "next")
BINOPS = ("and", "or", "imply", "until")


def formulas(literals: bool):
    leaves = st.sampled_from(ATOMS).map(lambda a: ("atom", a))
    if literals:
        leaves = leaves | st.sampled_from([("true",), ("false",)])

    def extend(sub):
        return st.tuples(st.sampled_from(UNOPS), sub) | st.tuples(st.sampled_from(BINOPS), sub, sub)

    return st.recursive(leaves, extend, max_leaves=5)


def render(f) -> str:
    op = f[0]
    if op == "atom":
        return f[1]
    if op in ("true", "false"):
        return op
    if op in UNOPS:
        return f"{op} ({render(f[1])})"
    return f"({render(f[1])}) {op} ({render(f[2])})"


def atoms_of(f) -> set[str]:
    if f[0] == "atom":
        return {f[1]}
    return set().union(*(atoms_of(x) for x in f[1:] if isinstance(x, tuple)))


def polarities(f, positive: bool = True) -> set[tuple[str, bool]]:
    op = f[0]
    if op == "atom":
        return {(f[1], positive)}
    if op in ("true", "false"):
        return set()
    if op == "not":
        return polarities(f[1], not positive)
    if op == "imply":
        return polarities(f[1], not positive) | polarities(f[2], positive)
    return set().union(*(polarities(x, positive) for x in f[1:]))


@functools.cache
def holds(f, word: tuple[frozenset[str], ...], i: int, optimistic: bool) -> bool:
    """Reference 1: truth at position i, obligations past the end optimistic/pessimistic."""
    if i >= len(word):
        return optimistic
    op = f[0]
    if op == "atom":
        return f[1] in word[i]
    if op in ("true", "false"):
        return op == "true"
    if op == "not":
        return not holds(f[1], word, i, not optimistic)
    if op == "next":
        return holds(f[1], word, i + 1, optimistic)
    if op == "always":
        return holds(f[1], word, i, optimistic) and holds(f, word, i + 1, optimistic)
    if op == "eventually":
        return holds(f[1], word, i, optimistic) or holds(f, word, i + 1, optimistic)
    left, right = f[1], f[2]
    if op == "and":
        return holds(left, word, i, optimistic) and holds(right, word, i, optimistic)
    if op == "or":
        return holds(left, word, i, optimistic) or holds(right, word, i, optimistic)
    if op == "imply":
        return not holds(left, word, i, not optimistic) or holds(right, word, i, optimistic)
    # until
    return holds(right, word, i, optimistic) or (
        holds(left, word, i, optimistic) and holds(f, word, i + 1, optimistic)
    )


def lasso_sat(f, word: tuple[frozenset[str], ...], loop: int) -> list[bool]:
    """Standard LTL truth at each position of the infinite word word[:loop] (word[loop:])^ω."""
    n = len(word)

    def nxt(i: int) -> int:
        return i + 1 if i + 1 < n else loop

    op = f[0]
    if op == "atom":
        return [f[1] in letter for letter in word]
    if op in ("true", "false"):
        return [op == "true"] * n
    subs = [lasso_sat(x, word, loop) for x in f[1:]]
    if op == "not":
        return [not x for x in subs[0]]
    if op == "next":
        return [subs[0][nxt(i)] for i in range(n)]
    if op in ("and", "or", "imply"):
        a, b = subs
        if op == "and":
            return [x and y for x, y in zip(a, b, strict=True)]
        if op == "or":
            return [x or y for x, y in zip(a, b, strict=True)]
        return [(not x) or y for x, y in zip(a, b, strict=True)]
    greatest = op == "always"
    val = [greatest] * n
    for _ in range(n + 1):
        for i in reversed(range(n)):
            if op == "always":
                val[i] = subs[0][i] and val[nxt(i)]
            elif op == "eventually":
                val[i] = subs[0][i] or val[nxt(i)]
            else:  # until
                val[i] = subs[1][i] or (subs[0][i] and val[nxt(i)])
    return val


def extendable(f, word: tuple[frozenset[str], ...], atoms: tuple[str, ...]) -> bool:
    """Reference 2: some u·w^ω with |w| <= 2 satisfies f (exact on the monotone fragment)."""
    letters = [
        frozenset(a for a, on in zip(atoms, bits, strict=True) if on)
        for bits in itertools.product((False, True), repeat=len(atoms))
    ]
    for k in (1, 2):
        for loop in itertools.product(letters, repeat=k):
            if lasso_sat(f, word + loop, len(word))[0]:
                return True
    return False


def protocol(alive, letters: list[tuple[frozenset[str], bool]]) -> list[tuple[str, frozenset]]:
    """§3.4's start/validate/reset protocol over letters (letter, startable)."""
    out: list[tuple[str, frozenset]] = []
    start = None
    for k, (letter, startable) in enumerate(letters):
        if start is None:
            if startable and alive((letter,)):
                start = k
            continue
        out.append(("event", letter))
        if not alive(tuple(x for x, _ in letters[start : k + 1])):
            out.append(("error", letter))
            start = None
    return out


ops_strategy = st.lists(
    st.tuples(st.sampled_from(["update", "pulse"]), st.sampled_from(ATOMS), st.booleans()),
    min_size=1,
    max_size=8,
)


def run_monitor(f, initial: dict[str, bool], ops) -> tuple[list, list]:
    """Feed the monitor; return (its records as (kind, true atoms), the letters it saw)."""
    text = f"RULE = {render(f)}"
    try:
        b = build_buchi(parse_ltl(text))
    except ModelError:
        assume(False)  # more than 32 states
    atoms = b.atoms
    mon = LTLMonitor("prop", "property test", b)
    got: list[LTLRecord] = []
    mon.sink = got.append
    mon.enabled = True
    value = {a: initial[a] for a in atoms}
    for a in atoms:
        mon.atom_set(1, "p", 1, a, value[a])
    letters: list[tuple[frozenset[str], bool]] = []
    for kind, atom, v in ops:
        if atom not in atoms:
            continue
        value[atom] = v
        letters.append((frozenset(a for a in atoms if value[a]), True))
        if kind == "update":
            mon.atom_update(1, "p", 1, atom, v, CTX)
        else:
            mon.atom_pulse(1, "p", 1, atom, v, CTX)
            value[atom] = not v
            letters.append((frozenset(a for a in atoms if value[a]), False))
    records = [(r.kind, frozenset(a for i, a in enumerate(atoms) if r.atoms >> i & 1)) for r in got]
    return records, letters


initial_strategy = st.fixed_dictionaries({a: st.booleans() for a in ATOMS})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(formulas(literals=True), initial_strategy, ops_strategy)
def test_monitor_matches_the_optimistic_finite_prefix_semantics(f, initial, ops):
    assume(atoms_of(f))
    records, letters = run_monitor(f, initial, ops)
    expected = protocol(lambda w: holds(f, w, 0, True), letters)
    assert records == expected, render(f)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(formulas(literals=False), initial_strategy, ops_strategy)
def test_monitor_matches_extendability_on_the_monotone_fragment(f, initial, ops):
    pol = polarities(f)
    assume(pol and len({a for a, _ in pol}) == len(pol))
    records, letters = run_monitor(f, initial, ops)
    atoms = tuple(sorted(atoms_of(f)))
    expected = protocol(lambda w: extendable(f, w, atoms), letters)
    assert records == expected, render(f)


def test_the_monitor_is_late_on_contradictory_obligations():
    # next (A and not A): no infinite word satisfies it, but the tableau only finds out when
    # the second letter is validated -- the first letter starts the monitor.
    f = ("next", ("and", ("atom", "A"), ("not", ("atom", "A"))))
    records, letters = run_monitor(f, {"A": False, "B": False, "C": False}, [("update", "A", True)])
    assert records == [] and len(letters) == 1
    assert not extendable(f, (letters[0][0],), ("A",))
    records, _ = run_monitor(
        f, {"A": False, "B": False, "C": False}, [("update", "A", True), ("update", "A", True)]
    )
    assert [k for k, _ in records] == ["event", "error"]


def test_liveness_is_never_violated_on_a_prefix():
    f = ("eventually", ("atom", "A"))
    ops = [("update", "A", False)] * 10
    records, _ = run_monitor(f, {"A": False, "B": False, "C": False}, ops)
    assert [k for k, _ in records] == ["event"] * 9
