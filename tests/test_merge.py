"""Per-CPU files of one trace, merged in time order, verify like the whole trace."""

from __future__ import annotations

import lzma

from pyrv.api import CheckOptions, check
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.merge import merge_by_time
from tests.conftest import CONFORMANCE, need_shared


def ev(ts, cpu):
    return TraceEvent(ts=ts, cpu=cpu, pid=1, comm="x", name="e")


def test_ties_keep_input_order_and_losses_travel_with_their_next_event():
    a = [ev(1, 0), LostEvents(cpu=0, count=3, reason="LOST"), ev(5, 0), ev(5, 0)]
    b = [ev(1, 1), ev(5, 1), ev(6, 1)]
    out = list(merge_by_time([a, b]))
    assert [(getattr(i, "ts", None), i.cpu) for i in out] == [
        (1, 0),
        (1, 1),
        (None, 0),
        (5, 0),
        (5, 0),
        (5, 1),
        (6, 1),
    ]


def test_per_cpu_split_verifies_like_the_whole_trace(tmp_path):
    whole = need_shared(CONFORMANCE / "traces" / "trace-pipes" / "trace.txt.xz")
    with lzma.open(whole, "rt") as f:
        text = f.read().splitlines(keepends=True)
    parts = []
    for cpu in (0, 1):
        p = tmp_path / f"cpu{cpu}"
        p.write_text("".join(ln for ln in text if "] " in ln and f"[{cpu:03d}]" in ln))
        parts.append(p)

    def verdicts(trace):
        recs = []
        opts = CheckOptions(
            monitors=["wip", "wwnr"], on_record=recs.append, start_marker="after enabling monitors"
        )
        check(trace, opts)
        return [(r.monitor, r.id, r.state, r.event, r.context.ts, r.context.cpu) for r in recs]

    expected = verdicts(whole)
    assert len(expected) == 59  # 1 error_wip + 58 error_wwnr (summary.txt of the oracle)
    # same-time records of different CPUs may come in either order in the whole file
    assert sorted(verdicts(parts)) == sorted(expected)


def test_nothing_is_judged_inside_a_reported_loss():
    """CPU 1 of this instance buffer lost its first 443 events (overwritten): until its first
    page, CPU 0's events are judged without CPU 1's (wakeups of CPU 0's tasks among them),
    so no verdict may come from that window; the loss is reported where it began."""
    from tests.conftest import RECORDED

    dat = need_shared(RECORDED / "tracedat" / "lost_events_instance_tfr.dat")
    recs, order = [], []
    res = check(
        dat,
        CheckOptions(
            monitors=["wwnr", "stall"],
            engine="reference",
            on_record=recs.append,
            on_gap=lambda g: order.append(g),
        ),
    )
    cpu1 = next(g for g in res.gaps if g.cpu == 1 and g.pids is None)
    assert cpu1.count == 443
    assert all(r.context.ts >= cpu1.ts for r in recs)
    assert order.index(cpu1) == 0 or all(
        g.ts is None or g.ts <= cpu1.ts for g in order[: order.index(cpu1)]
    )
