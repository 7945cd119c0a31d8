"""Silent loss of sched_switch records: a CPU's running task contradicts its last switch."""

from __future__ import annotations

import pytest

from pyrv.sources.continuity import SwitchContinuity
from pyrv.sources.events import LostEvents, TraceEvent


def e(ts, cpu, pid, name="sched_wakeup", system="sched", **fields):
    return TraceEvent(
        ts=ts, cpu=cpu, pid=pid, comm="x", name=name, fields=fields, system=system, line=ts
    )


def switch(ts, cpu, prev, nxt):
    return e(ts, cpu, prev, "sched_switch", prev_pid=prev, prev_state="S", next_pid=nxt)


def run(items):
    return list(SwitchContinuity().filter(items))


def test_consistent_stream_has_no_gap():
    items = [
        e(1, 0, 10),
        switch(2, 0, 10, 20),
        e(3, 0, 20),
        switch(4, 0, 20, 0),
        e(5, 0, 0),
        e(6, 1, 30),
        e(7, 1, 30),
    ]
    assert run(items) == items


def test_missing_switch_is_reported_before_the_contradicting_event():
    items = [switch(1, 0, 10, 20), e(2, 0, 20), e(3, 0, 33)]  # 20 -> 33 switch never recorded
    out = run(items)
    gap = out[2]
    assert isinstance(gap, LostEvents)
    assert gap.cpu == 0 and gap.pids == (20, 33) and gap.count is None
    assert out[3] is items[2]


def test_switch_whose_prev_is_not_the_running_task():
    out = run([switch(1, 1, 10, 20), switch(2, 1, 44, 10)])
    assert isinstance(out[1], LostEvents) and out[1].pids == (20, 44)


def test_other_cpus_and_unjudged_events_do_not_count():
    items = [
        switch(1, 0, 10, 20),
        e(2, 1, 99),
        e(3, 0, 10, "event_wwnr", system="rv"),  # written inside the switch: prev's pid
        e(4, 0, 10, "wwnr_switch", system=None),
    ]  # kprobe, unknown to the catalogue
    assert run(items) == items


def test_reported_loss_forgets_the_cpu():
    lost = LostEvents(cpu=0, count=5, reason="LOST")
    items = [switch(1, 0, 10, 20), lost, e(3, 0, 77)]
    assert run(items) == items


def test_a_binary_record_going_back_in_time_is_named_by_its_times():
    """Binary records have no line (0): the error names the two times, not 'line 0'."""
    from pyrv.sources.continuity import check_time_order
    from pyrv.sources.errors import TraceError

    later = TraceEvent(ts=2_000, cpu=0, pid=1, comm="a", name="sched_switch", source="t.dat")
    earlier = TraceEvent(ts=1_000, cpu=0, pid=1, comm="a", name="sched_waking", source="t.dat")
    with pytest.raises(TraceError) as info:
        list(check_time_order([later, earlier]))
    msg = str(info.value)
    assert msg.startswith("t.dat: time goes backwards on cpu 0")
    assert "sched_waking record at ts 1000 follows one at ts 2000" in msg and "line" not in msg


def test_cross_cpu_ties_are_counted():
    """Two events of different CPUs with one stamp are a tie; the same CPU's are not."""
    from pyrv.sources.continuity import TimeOrder

    def e(ts, cpu):
        return TraceEvent(ts=ts, cpu=cpu, pid=1, comm="a", name="x")

    order = TimeOrder()
    out = list(order.filter([e(1, 0), e(1, 1), e(1, 1), e(2, 0), e(3, 1), e(3, 0), e(3, 1)]))
    assert len(out) == 7 and order.cross_cpu_ties == 3
