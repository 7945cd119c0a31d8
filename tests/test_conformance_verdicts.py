"""The kernel's own verdicts (shared/conformance/traces) against pyrv's, record by record.

The traces were recorded on a 6.12 kernel running wip and wwnr; the kernel wrote its
``event_*``/``error_*`` lines into the same buffer. pyrv reads the same trace from the
``ORACLE: after enabling monitors`` marker. Expected values are the kernel's lines, read
here with the test's own regex. The README names two limits of any trace-based checker:

1. a printed ``S`` may be a freezable sleep (0x2001) that wwnr does not start on; the
   ``rvraw:wwnr_switch`` kprobe carries the raw state, and ``examples/wwnr-rvraw.toml``
   uses it, which makes wwnr exact (asserted below: every record equal);
2. an interrupt between the trace-event probe and the RV probe of one tracepoint reorders
   lines; a difference is explained by it when a displacement lies within 2 ms on the same
   CPU: an rv line not directly after its tracepoint's line, or a wip tracepoint line that a
   monitoring kernel instance did not follow with its record.
"""

from __future__ import annotations

import lzma
import re
from collections import defaultdict
from pathlib import Path

import pytest

from pyrv.api import CheckOptions, check
from tests.conftest import CONFORMANCE, REPO, need_shared

LINE = re.compile(r"^\s*(.*?)-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+)\.(\d+): (\w+): (.*)$")
RV_LINE = re.compile(r"^(event|error)_(wip|wwnr)$")
EVENT = re.compile(r"^(?:(\d+): )?(\w+) x (\w+) -> (\w+)(?: \(final\))?$")
ERROR = re.compile(r"^(?:(\d+): )?event (\w+) not expected in the state (\w+)$")
HOOKED = {
    "wip": {"preempt_disable", "preempt_enable", "sched_waking"},
    "wwnr": {"sched_switch", "sched_wakeup", "wwnr_switch"},
}
START = "ORACLE: after enabling monitors"
TRACES = ["trace-pipes", "trace-contention"]


def kernel_records(path: Path):
    """(records, displaced): the kernel's rv records after the start marker, each with
    the time of the hooked line that triggered it, and the rv lines that were displaced."""
    last_line: dict[int, str] = {}
    last_hooked: dict[tuple[int, str], int] = {}
    wip_monitoring: dict[int, bool] = {}  # the kernel's wip instance per CPU, from its records
    wip_pending: dict[int, int] = {}  # cpu -> ts of a wip line that must be followed by a record
    records, displaced = [], []
    started = False
    with lzma.open(path, "rt") as f:
        for text in f:
            m = LINE.match(text)
            if not m:
                continue
            cpu, ts, name, payload = int(m[3]), int(m[4]) * 10**9 + int(m[5]) * 1000, m[6], m[7]
            if START in payload:
                started = True
            rv = RV_LINE.match(name)
            if cpu in wip_pending and not (rv and rv[2] == "wip"):
                displaced.append(("wip", cpu, wip_pending[cpu]))
            wip_pending.pop(cpu, None)
            if rv is None:
                if name in HOOKED["wip"] and wip_monitoring.get(cpu):
                    wip_pending[cpu] = ts
                for mon, hooked in HOOKED.items():
                    if name in hooked:
                        last_hooked[(cpu, mon)] = ts
                last_line[cpu] = name
                continue
            kind, mon = rv[1], rv[2]
            if mon == "wip":
                wip_monitoring[cpu] = kind == "event"
            prev = last_line.get(cpu, "")
            if prev not in HOOKED[mon] and not RV_LINE.match(prev):
                displaced.append((mon, cpu, ts))
            last_line[cpu] = name
            if not started:
                continue
            if kind == "event":
                e = EVENT.match(payload)
                rec = (mon, kind, e[1] and int(e[1]), e[2], e[3], e[4])
            else:
                e = ERROR.match(payload)
                rec = (mon, kind, e[1] and int(e[1]), e[3], e[2], None)
            records.append((rec, cpu, last_hooked.get((cpu, mon))))
    return records, displaced


def pyrv_records(path: Path, definitions=()):
    out = []

    def on_record(r):
        ident = r.id
        out.append(
            (
                (r.monitor, r.kind, ident, r.state, r.event, r.next_state),
                r.context.cpu,
                r.context.ts,
            )
        )

    check(
        path,
        CheckOptions(
            monitors=["wip", "wwnr"],
            definitions=definitions,
            emit_events=True,
            start_marker=START,
            on_record=on_record,
        ),
    )
    return out


def explained(mon: str, cpu: int, ts: int, displaced) -> bool:
    return any(m == mon and c == cpu and abs(t - ts) <= 2_000_000 for m, c, t in displaced)


def per_instance(records, mon):
    seqs = defaultdict(list)
    for rec, cpu, ts in records:
        if rec[0] == mon:
            seqs[rec[2] if rec[2] is not None else cpu].append((rec, ts))
    return seqs


@pytest.fixture(scope="module", params=TRACES)
def oracle(request):
    path = need_shared(CONFORMANCE / "traces" / request.param / "trace.txt.xz")
    return path, kernel_records(path)


def test_every_kernel_error_is_reported_or_explained(oracle):
    path, (kernel, displaced) = oracle
    ours = pyrv_records(path)
    k_err = [(r, c, t) for r, c, t in kernel if r[1] == "error"]
    p_err = [(r, c, t) for r, c, t in ours if r[1] == "error"]
    assert k_err, "the oracle traces carry kernel verdicts"
    unmatched_k = [x for x in k_err if x not in p_err]
    unmatched_p = [x for x in p_err if x not in k_err]
    for rec, cpu, ts in unmatched_k + unmatched_p:
        assert ts is not None and explained(rec[0], cpu, ts, displaced), (rec, cpu, ts)
    # measured on these traces: pipes 0, contention 1 (a preempt_disable displaced by a softirq)
    assert len(unmatched_k) + len(unmatched_p) <= 1


def test_wwnr_from_the_raw_state_equals_the_kernel_record_for_record(oracle):
    path, (kernel, _displaced) = oracle
    ours = pyrv_records(path, definitions=[REPO / "examples" / "wwnr-rvraw.toml"])
    k = per_instance(kernel, "wwnr")
    p = per_instance(ours, "wwnr")
    assert k.keys() == p.keys()
    for task in k:
        assert [r for r, _ in p[task]] == [r for r, _ in k[task]], task
        # times: pyrv stamps a record with its triggering line; the kernel's closest hooked
        # line is that one, or the kprobe line the same switch wrote a few µs later
        for (_, tp), (_, tk) in zip(p[task], k[task], strict=True):
            assert 0 <= tk - tp <= 1_000_000, (task, tp, tk)


def test_wip_records_equal_the_kernel_except_reordered(oracle):
    path, (kernel, displaced) = oracle
    ours = pyrv_records(path)
    k = per_instance(kernel, "wip")
    p = per_instance(ours, "wip")
    for cpu in k:
        kr = [r for r, _ in k[cpu]]
        pr = [r for r, _ in p[cpu]]
        # pyrv starts at the marker; the kernel's instance may already be mid-sequence there,
        # so align on pyrv's first record
        diffs = sum(a != b for a, b in zip(pr, kr[len(kr) - len(pr) :], strict=False))
        n_displaced = sum(1 for m, c, _ in displaced if m == "wip" and c == cpu)
        assert abs(len(kr) - len(pr)) <= 2 * n_displaced + 2
        assert diffs <= 4 * n_displaced + 2, (cpu, diffs, n_displaced)
