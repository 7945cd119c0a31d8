"""The tableau (GPVW, rvgen's variant) against spec §3.4/§4.13-§4.15/§7 and the kernel's
generated headers (kernel/trace/rv/monitors/{pagefault,sleep,wakeup}/*.h).

Expected labels are written by hand as Python predicates over the atoms and compared with the
automaton's labels on every (or many random) valuation; expected structures of small formulas
are derived by running GPVW by hand (derivations in the comments).
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys

import pytest

from pyrv.models.automaton import ModelError
from pyrv.models.buchi import MAX_STATES, BuchiAutomaton, build_buchi
from pyrv.models.ltl import load_ltl_model, parse_ltl
from tests.conftest import REPO


def ba(text: str) -> BuchiAutomaton:
    return build_buchi(parse_ltl(text))


def valuations(b: BuchiAutomaton):
    """Every valuation as (int, {atom: bool})."""
    for bits in range(1 << len(b.atoms)):
        yield bits, {a: bool(bits >> i & 1) for i, a in enumerate(b.atoms)}


def label_table(b: BuchiAutomaton, state: int, vals) -> list[bool]:
    return [b.label_holds(state, bits) for bits, _ in vals]


# -- the kernel's three automata ------------------------------------------------------------


def test_pagefault_one_state_self_loop():
    # §4.13: one state S0, initial, self-loop when (not rt or not pagefault)
    b = build_buchi(load_ltl_model("pagefault"))
    assert b.num_states == 1
    assert b.initial == {0}
    assert b.successors == ((0,),)
    for bits, a in valuations(b):
        assert b.label_holds(0, bits) == (not a["RT"] or not a["PAGEFAULT"])
    assert b.describe() == "S0 (initial): (not RT or not PAGEFAULT) -> S0"


def test_wakeup_one_state_whose_label_is_the_invariant():
    # always P with P non-temporal: a single state labelled P (a boolean label, not expanded)
    b = build_buchi(load_ltl_model("wakeup"))
    assert (b.num_states, b.initial, b.successors) == (1, {0}, ((0,),))

    def invariant(a):
        allow = a["BLOCK_ON_RT_MUTEX"] or a["FUTEX_LOCK_PI"]
        woken = a["WOKEN_BY_LOWER_PRIO"] or a["WOKEN_BY_SOFTIRQ"]
        return not (a["RT"] and a["USER_THREAD"]) or not woken or allow

    for bits, a in valuations(b):
        assert b.label_holds(0, bits) == invariant(a), a


# sleep.h: the label of each state, from the kernel's generated header (val3, val11 && val13, ...)
def _nrs(a):  # val3: !rt || !sleep
    return not a["RT"] or not a["SLEEP"]


def _reason(a):  # val11: futex_wait || friendly nanosleep || kernel_thread
    nano = (
        a["CLOCK_NANOSLEEP"]
        and a["NANOSLEEP_TIMER_ABSTIME"]
        and (a["NANOSLEEP_CLOCK_MONOTONIC"] or a["NANOSLEEP_CLOCK_TAI"])
    )
    return a["FUTEX_WAIT"] or nano or a["KERNEL_THREAD"]


def _no_wake(a):  # val13: !wake
    return not a["WAKE"]


def _friendly_wake(a):  # val14
    return (
        a["WOKEN_BY_EQUAL_OR_HIGHER_PRIO"]
        or a["WOKEN_BY_HARDIRQ"]
        or a["WOKEN_BY_NMI"]
        or a["ABORT_SLEEP"]
        or a["KTHREAD_SHOULD_STOP"]
    )


def _allow(a):  # val5
    return (
        a["BLOCK_ON_RT_MUTEX"] or a["FUTEX_LOCK_PI"] or a["TASK_IS_RCU"] or a["TASK_IS_MIGRATION"]
    )


SLEEP_LABELS = [
    lambda a: _nrs(a),
    lambda a: _reason(a) and _no_wake(a),
    lambda a: _no_wake(a) and _nrs(a),
    lambda a: _friendly_wake(a) and _nrs(a),
    lambda a: _reason(a) and _friendly_wake(a),
    lambda a: _allow(a),
    lambda a: _no_wake(a) and _allow(a),
    lambda a: _friendly_wake(a) and _allow(a),
]
AFTER_SLEEP = (1, 2, 3, 4, 6, 7)  # successors of S1, S2, S6 in sleep.h
ANYWHERE = (0, 1, 4, 5)  # successors of S0, S3, S4, S5, S7 (= the initial states)
SLEEP_SUCCESSORS = (
    ANYWHERE,
    AFTER_SLEEP,
    AFTER_SLEEP,
    ANYWHERE,
    ANYWHERE,
    ANYWHERE,
    AFTER_SLEEP,
    ANYWHERE,
)


def test_sleep_has_the_kernel_headers_states_numbering_and_edges():
    b = build_buchi(load_ltl_model("sleep"))
    assert b.num_states == 8
    assert b.initial == {0, 1, 4, 5}  # §4.14
    assert b.successors == SLEEP_SUCCESSORS


def test_sleep_labels_match_the_kernel_header():
    b = build_buchi(load_ltl_model("sleep"))
    rng = random.Random(4_14)
    samples = [rng.getrandbits(len(b.atoms)) for _ in range(4000)]
    samples += [0, (1 << len(b.atoms)) - 1] + [1 << i for i in range(len(b.atoms))]
    for bits in samples:
        a = {n: bool(bits >> i & 1) for i, n in enumerate(b.atoms)}
        for s, expected in enumerate(SLEEP_LABELS):
            assert b.label_holds(s, bits) == bool(expected(a)), (s, a)


def test_numbering_does_not_depend_on_the_hash_seed():
    script = (
        "from pyrv.models.buchi import build_buchi\n"
        "from pyrv.models.ltl import load_ltl_model, parse_ltl\n"
        "print(build_buchi(load_ltl_model('sleep')).describe())\n"
        "print(build_buchi(parse_ltl('RULE = (A until B) and always (C or next D)')).describe())\n"
    )
    outs = set()
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        run = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO
        )
        assert run.returncode == 0, run.stderr
        outs.add(run.stdout)
    assert len(outs) == 1


# -- small formulas, constructed by hand --------------------------------------------------------


def test_until():
    # A U B: head splits into [A; next A U B] (completes first: S0) and [B] (S1, found while
    # expanding S0's successor, then merged with the head's second half, hence initial);
    # S1's successor has nothing to do: [] = S2 with a self-loop.
    b = ba("RULE = A until B")
    assert b.num_states == 3
    assert b.initial == {0, 1}
    assert b.successors == ((0, 1), (2,), (2,))
    assert [b.label_text(s) for s in range(3)] == ["A", "B", "true"]


def test_eventually_is_true_until():
    b = ba("RULE = eventually A")
    assert b.successors == ((0, 1), (2,), (2,))
    assert [b.label_text(s) for s in range(3)] == ["true", "A", "true"]


def test_always_of_a_boolean_is_one_state():
    b = ba("RULE = always (A or not B)")
    assert (b.num_states, b.initial, b.successors) == (1, {0}, ((0,),))


def test_true_false_and_next_false():
    t = ba("RULE = true")  # [true] then [] forever
    assert (t.num_states, t.initial, t.successors) == (2, {0}, ((1,), (1,)))
    f = ba("RULE = false")  # the only node is dropped: no state, never starts
    assert (f.num_states, f.initial) == (0, frozenset())
    assert f.start(0) == 0
    nf = ba("RULE = next false")  # one state without successors
    assert (nf.num_states, nf.initial, nf.successors) == (1, {0}, ((),))


def test_contradictions_are_not_pruned():
    # `A and not A` is a boolean label (one state that never fires), as rvgen builds it
    b = ba("RULE = always (A and not A)")
    assert b.num_states == 1
    assert all(not b.label_holds(0, bits) for bits, _ in valuations(b))
    # temporal `and`: literals from both sides land in one state's label
    b = ba("RULE = (next A) and (next not A)")
    assert [b.label_text(s) for s in range(b.num_states)] == ["true", "A and not A", "true"]


def test_start_and_step():
    b = build_buchi(load_ltl_model("pagefault"))
    rt, pf = b.valuation({"RT"}), b.valuation({"RT", "PAGEFAULT"})
    assert b.start(rt) == 1 and b.start(pf) == 0
    assert b.step(1, rt) == 1 and b.step(1, pf) == 0 and b.step(0, rt) == 0
    assert b.valuation({"RT": True, "PAGEFAULT": False}) == rt


def test_liveness_never_empties_the_state_set():
    # no acceptance condition: "eventually A" can be postponed forever (S0 loops on true)
    b = ba("RULE = eventually A")
    states = b.start(0)
    for bits in itertools.islice(itertools.cycle([0]), 50):
        states = b.step(states, bits)
        assert states & 1


def test_too_many_states():
    with pytest.raises(ModelError) as info:
        ba("RULE = (A until B) and (C until D) and (E until F)")
    assert f"more than {MAX_STATES} states" in info.value.reason
    assert ba("RULE = (A until B) and (C until D)").num_states <= MAX_STATES


def test_bare_formula_and_describe():
    spec = parse_ltl("RULE = always (X imply next Y)")
    b = build_buchi(spec.rule, name="demo")
    assert b.name == "demo" and b.atoms == ("X", "Y") and b.abbreviations == ("x", "y")
    # false V (not X or next Y), formulas taken in preorder: [not X; next V] = S0, its
    # successor gives S0 again and [next Y: label true; next V, Y] = S1; S1's successor:
    # [not X, Y; next V] = S2 and [Y; next V, Y] = S3; S2 leads where S0 does, S3 where S1 does.
    assert b.describe() == "\n".join(
        [
            "S0 (initial): not X -> S0, S1",
            "S1 (initial): true -> S2, S3",
            "S2: not X and Y -> S0, S1",
            "S3: Y -> S2, S3",
        ]
    )
