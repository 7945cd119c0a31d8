"""``--partial`` never turns what a cut file lost into a violation (kernel-rv.md: lost events
are never turned into false violations).

Real trace.dat files (v6, v7 plain and zstd, with instance buffers) and a raw-pages directory
are cut inside each CPU's data. Where one CPU's data ends, the trace is incomplete for every
CPU from then on (that CPU's lost wakeups and migrations are other CPUs' context), so: every
verdict reported on the cut file must be reported, with the same monitor, instance, state,
event, time and CPU, on the uncut file (one it does not have is exactly a false violation);
no record at all comes from an event after that point; and the summary says where it is.
This is checked for every monitor that runs, on the reference engine and on the fast path
(which must give the reference's records, or leave the input to it).
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import pytest

from pyrv.api import CheckError, CheckOptions, CheckResult, Verifier, check, select_monitors
from pyrv.cli.main import main
from pyrv.monitors.ltl_records import LTLRecord
from pyrv.monitors.records import Record
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.ring_buffer import BinaryTraceError
from pyrv.sources.tracedat import TraceDat
from tests.conftest import RECORDED, need_shared
from tests.test_stall import MS, switch, wakeup  # the hand-made sched events stall is tested with

TRACEDAT = RECORDED / "tracedat"
RAW = RECORDED / "raw"
DATS = [
    TRACEDAT / "sched_v6.dat",
    TRACEDAT / "sched_v7_nocomp.dat",
    TRACEDAT / "sched_v7_zstd.dat",
    TRACEDAT / "lost_events_instance_tfr.dat",
    RECORDED / "rtapp" / "rt-pipe-faults.dat",
]


def verdict(rec: Record | LTLRecord) -> tuple:
    """What a record says: monitor, instance, state, event (LTL: Büchi states and atoms),
    time and CPU."""
    c = rec.context
    if isinstance(rec, LTLRecord):
        what: tuple = (rec.pid, rec.states, rec.atoms, rec.next_states)
    else:
        what = (rec.id, rec.state, rec.event, rec.next_state)
    return (rec.kind, rec.monitor, *what, c.ts, c.cpu)


def run(path: Path, **kw: object) -> tuple[CheckResult, list[Record]]:
    recs: list[Record] = []
    res = check(path, CheckOptions(on_record=recs.append, **kw))  # type: ignore[arg-type]
    return res, recs


@functools.lru_cache(maxsize=8)
def uncut_errors(path: Path, monitors: tuple[str, ...]) -> frozenset[tuple]:
    _, recs = run(path, monitors=monitors)
    return frozenset(verdict(r) for r in recs if r.kind != "event")


@functools.lru_cache(maxsize=8)
def monitors_of(path: Path) -> tuple[str, ...]:
    """Every monitor that runs on the uncut file (each is then asked for by name)."""
    res, _ = run(path)
    return tuple(m.name for m in res.monitors)


def data_spans(path: Path) -> list[tuple[int, int, int]]:
    """(cpu, start, end) of each CPU's stored data, from the uncut file's own index."""
    td = TraceDat(path)
    spans = [(cd.cpu, cd.offset, cd.offset + cd.size) for b in td.buffers for cd in b.cpus]
    td.close()
    return [s for s in spans if s[2] > s[1]]


def cuts(path: Path) -> list[int]:
    """Inside each CPU's data: just after its start, a third, two thirds, just before its end."""
    out = set()
    for _cpu, start, end in data_spans(path):
        out |= {start + 4200, start + (end - start) // 3, start + 2 * (end - start) // 3, end - 1}
    return sorted(out)


def assert_no_false_verdict(
    cut_path: Path, uncut: Path, monitors: tuple[str, ...], engine: str
) -> CheckResult:
    res, recs = run(cut_path, monitors=monitors, partial=True, emit_events=True, engine=engine)
    want = uncut_errors(uncut, monitors)
    for rec in recs:
        if rec.kind != "event":  # error_, error_env_ (a deadline)
            assert verdict(rec) in want, f"false violation on the cut file: {rec.trace_line()}"
    if res.incomplete_from is not None:
        late = [r.trace_line() for r in recs if r.context.ts > res.incomplete_from]
        assert not late, f"judged after {res.incomplete_from}: {late[:3]}"
    return res


@pytest.mark.parametrize("path", DATS, ids=lambda p: p.name)
def test_cut_tracedat_files_report_only_the_uncut_file_s_verdicts(
    path: Path, tmp_path: Path
) -> None:
    path = need_shared(path)
    data = path.read_bytes()
    mons = monitors_of(path)
    ends = [end for _cpu, _start, end in data_spans(path)]
    for cut in cuts(path):
        cut_path = tmp_path / f"cut{cut}.dat"
        cut_path.write_bytes(data[:cut])
        try:
            res = assert_no_false_verdict(cut_path, path, mons, "reference")
        except Exception as exc:  # noqa: BLE001 - a cut that leaves no event is an error
            assert "no events in the trace" in str(exc) or "no event can be judged" in str(exc)
            continue
        if any(end > cut for end in ends):  # some CPU's data is cut: incomplete from there on
            assert res.incomplete_from is not None, cut
        # the fast path (DA monitors): the reference's records, or the reference runs
        fast = assert_no_false_verdict(cut_path, path, ("wwnr",), "auto")
        ref = assert_no_false_verdict(cut_path, path, ("wwnr",), "reference")
        assert fast == ref
        cut_path.unlink()


def test_the_reported_v6_cut_on_the_command_line(tmp_path: Path, capsys) -> None:
    path = need_shared(TRACEDAT / "sched_v6.dat")
    cut_path = tmp_path / "p6.dat"
    cut_path.write_bytes(path.read_bytes()[:2150000])
    assert main(["check", "--partial", str(cut_path)]) == 0
    out = capsys.readouterr().out
    assert "error_" not in out
    assert "CPU 1 has no events after this point" in out
    # CPU 1's last event read (the uncut file's, read up to the damaged page)
    last = max(e.ts for e in TraceDat(cut_path, partial=True) if e.cpu == 1)
    stamp = f"{last // 10**9}.{last % 10**9:09d}"
    assert f"nothing judged after {stamp} (CPU 1's data ends there)" in out


def test_nothing_after_the_cut_is_judged(tmp_path: Path) -> None:
    """Every event of the cut file after the point where CPU 1's data ends reaches no hook."""
    path = need_shared(TRACEDAT / "sched_v6.dat")
    cut_path = tmp_path / "p6.dat"
    cut_path.write_bytes(path.read_bytes()[:2150000])
    items = list(TraceDat(cut_path, partial=True))
    (mark,) = [i for i in items if isinstance(i, LostEvents) and i.until_end]
    assert mark.cpu == 1
    before = [e for e in items if isinstance(e, TraceEvent) and e.ts <= mark.ts]
    after = [e for e in items if isinstance(e, TraceEvent) and e.ts > mark.ts]
    assert after and all(e.cpu == 0 for e in after)
    res, _ = run(cut_path, monitors=("wwnr",), partial=True, engine="reference")
    assert res.incomplete_from == mark.ts
    hooked = sum(e.name in ("sched_switch", "sched_wakeup") for e in before)
    assert res.monitors[0].hooked_events <= hooked


# ---------------------------------------------------------------------------------------------
# A raw-pages directory with a cut CPU file.


def raw_copy(tmp_path: Path, cpu: int, size: int) -> Path:
    root = need_shared(RAW)
    out = tmp_path / f"raw{cpu}_{size}"
    shutil.copytree(root / "events", out / "events")
    shutil.copy(root / "trace_clock.txt", out)
    for c in (0, 1):
        data = (root / f"cpu{c}.raw").read_bytes()
        (out / f"cpu{c}.raw").write_bytes(data[:size] if c == cpu else data)
    return out


@pytest.mark.parametrize("cpu", [0, 1])
def test_cut_raw_cpu_files_report_only_the_uncut_verdicts(cpu: int, tmp_path: Path) -> None:
    root = need_shared(RAW)
    mons = monitors_of(root)
    size = (root / f"cpu{cpu}.raw").stat().st_size
    raw = raw_copy(tmp_path, cpu, 100)  # inside the first page header: nothing of that CPU
    with pytest.raises(CheckError, match=f"no event can be judged: CPU {cpu}'s data ends"):
        check(raw, CheckOptions(monitors=mons, partial=True))
    pages = size // 4096
    for cut in (p * 4096 + 116 for p in (1, pages // 2, pages - 2)):  # 100 bytes into its data
        raw = raw_copy(tmp_path, cpu, cut)
        with pytest.raises(BinaryTraceError, match=f"cpu{cpu} page"):
            check(raw, CheckOptions(monitors=mons))
        res = assert_no_false_verdict(raw, root, mons, "reference")
        assert res.incomplete_from is not None and res.stopped_at is not None
        assert f"cpu{cpu}.raw" in res.stopped_at
        fast = assert_no_false_verdict(raw, root, ("wwnr",), "auto")
        assert fast == assert_no_false_verdict(raw, root, ("wwnr",), "reference")


# ---------------------------------------------------------------------------------------------
# The timer path: a hybrid automaton's deadline after the cut.


def stall_records(lost: LostEvents) -> tuple[CheckResult, list[Record]]:
    """stall (threshold 10 jiffies = 40 ms at HZ 250): CPU 1's data ends at 2 ms (``lost``);
    task 5 sleeps on CPU 0 at 3 ms, is woken at 4 ms and not switched in before the input ends
    at 100 ms (CPU 0 keeps running task 7)."""
    opts = CheckOptions(monitors=["stall"], params={"threshold_jiffies": 10}, hz=250)
    recs: list[Record] = []
    opts.on_record = recs.append
    names, rv = select_monitors(opts, [], lambda _name: True, "hand-made")
    items = [
        switch(1 * MS, 9, "S", 5, cpu=0),
        switch(2 * MS, 8, "S", 0, cpu=1),
        lost,
        switch(3 * MS, 5, "S", 7, cpu=0),
        wakeup(4 * MS, 5, cpu=0),
        switch(100 * MS, 7, "R+", 7, cpu=0),
    ]
    res = Verifier(rv, names, opts, "hand-made", counter_clock=False).run(items)
    return res, recs


def test_no_deadline_fires_after_a_cut_cpu() -> None:
    # a loss that ends (CPU 1 complete again from 2 ms): the wait from 4 ms is judged and,
    # unmet at 44 ms, is a stall; the same schedule with CPU 1 cut must not report it
    ended = LostEvents(1, None, "lost: overwritten", 2 * MS, "hand-made")
    res, recs = stall_records(ended)
    assert [(r.kind, r.id, r.context.ts) for r in recs] == [("error_env", 5, 44 * MS)]
    cut = LostEvents(1, None, "truncated", 2 * MS, "hand-made", until_end=True)
    res, recs = stall_records(cut)
    assert recs == [] and res.violations == 0
    assert res.incomplete_from == 2 * MS and res.incomplete_stamp == "0.002000000"
