"""The columnar fast path gives the reference engine's answer, record for record.

Every comparison runs :func:`pyrv.api.check` (the per-event reference) and
:func:`pyrv.fast.check_fast` with ``strict=True`` (so the fast path really ran) on the same
input and options, and requires equal results (every summary number, every gap) and equal
sequences of records and gaps through the callbacks — on every binary trace in shared/
and on synthetic traces made to exercise lost pages, unrecorded switches, repeated
switches, idle tasks, ties across CPUs, start markers, errors, several monitors of each
kind, and batch and log boundaries.
"""

from __future__ import annotations

import io
import shutil
import struct
import tarfile
from pathlib import Path

import pytest
from conftest import RECORDED, SHARED, need_shared

np = pytest.importorskip("numpy")

from pyrv.api import CheckError, CheckOptions, check  # noqa: E402
from pyrv.fast import NotApplicable, available, check_fast, columnar, engine  # noqa: E402  # noqa: E402
from pyrv.monitors.reactors import PrintkReactor  # noqa: E402
from pyrv.sources.tracedat_writer import TraceMetadata, write_tracedat  # noqa: E402

pytestmark = pytest.mark.skipif(not available(), reason="no C compiler for the fast path")

RAW = RECORDED / "raw"
DATS = sorted((RECORDED / "tracedat").glob("*.dat")) + sorted((RECORDED / "rtapp").glob("*.dat"))
TRAPPY = SHARED / "traces" / "public" / "trappy_raw_trace.dat"
SCHEDVIZ = SHARED / "traces" / "public" / "schedviz_raw_collection.tar.gz"
SW, WAKEUP, WAKING, PRINT = 372, 374, 375, 5  # event ids in RAW's format files


def run_both(trace, strict: bool = True, **kw) -> tuple:
    """(reference, fast): each (result or exception text, records, gaps)."""
    out = []
    for fast in (False, True):
        recs, gaps = [], []
        engine = "auto" if fast else "reference"  # check's default would be the fast path
        opts = CheckOptions(on_record=recs.append, on_gap=gaps.append, engine=engine, **kw)
        try:
            try:
                res = check_fast(trace, opts, strict=strict) if fast else check(trace, opts)
            except NotApplicable as exc:
                # lost pages: the reference skips other CPUs' events inside the gap, which the
                # compiled loop does not do, so such input goes to the reference (checked here)
                if "lost pages" not in str(exc):
                    raise
                recs.clear()
                gaps.clear()
                res = check_fast(trace, opts)
        except (CheckError, Exception) as exc:  # noqa: BLE001 - compared below
            res = f"{type(exc).__name__}: {exc}"
        out.append((res, recs, gaps))
    return out[0], out[1]


def assert_same(trace, **kw) -> tuple:
    ref, fast = run_both(trace, **kw)
    assert fast[0] == ref[0]
    assert fast[2] == ref[2]
    assert len(fast[1]) == len(ref[1])
    for a, b in zip(fast[1], ref[1], strict=True):
        assert a == b
    return ref


# ---------------------------------------------------------------------------------------------
# Every binary trace in shared/.


@pytest.mark.parametrize("path", DATS, ids=lambda p: p.name)
def test_recorded_tracedat_files(path: Path) -> None:
    need_shared(path)
    res, recs, gaps = assert_same(path, monitors=["wwnr"], emit_events=True)
    assert res.events_read > 0 and recs


def test_recorded_raw_pages() -> None:
    res, recs, gaps = assert_same(need_shared(RAW), monitors=["wwnr"], emit_events=True)
    assert res.events_read == 401 + 912 and recs and gaps


def test_trappy_old_kernel_file(tmp_path: Path) -> None:
    # no sched_wakeup: wwnr is refused by both; a monitor of switches alone runs
    ref, fast = run_both(need_shared(TRAPPY), monitors=["wwnr"])
    assert "sched_wakeup" in ref[0] and fast == ref
    d = tmp_path / "swonly.toml"
    d.write_text(SWITCHES_ONLY)
    res, recs, _ = assert_same(TRAPPY, monitors=["swonly"], definitions=[d], emit_events=True)
    assert res.events_read == 757 and recs


def test_schedviz_collection(tmp_path: Path) -> None:
    with tarfile.open(need_shared(SCHEDVIZ)) as tar:
        tar.extractall(tmp_path, filter="data")
    res, recs, _ = assert_same(tmp_path, monitors=["wwnr"], emit_events=True)
    assert res.events_read == 28922 and recs


SWITCHES_ONLY = """
[monitor]
name = "swonly"
type = "per_task"
model = "wwnr"
[[hooks]]
tracepoint = "sched:sched_switch"
task = "prev_pid"
entry = "start"
event = "switch_out"
[[hooks]]
tracepoint = "sched:sched_switch"
task = "next_pid"
event = "switch_in"
"""


def test_lost_pages_of_an_instance_buffer() -> None:
    res, _, gaps = assert_same(
        need_shared(RECORDED / "tracedat" / "lost_events_instance_tfr.dat"), monitors=["wwnr"]
    )
    assert [g.count for g in gaps if g.pids is None] == [448, 443]


# ---------------------------------------------------------------------------------------------
# Synthetic traces: pages written with the recorded kernel's format files.


def _switch(ctx: int, prev: int, state: int, nxt: int, prio: int = 120) -> bytes:
    return struct.pack(
        "<HBBi16siiq16sii",
        SW,
        1,
        0,
        ctx,
        f"t{prev}".encode(),
        prev,
        prio,
        state,
        f"t{nxt}".encode(),
        nxt,
        prio if nxt % 3 else 99,
    )


def _wakeup(ctx: int, pid: int, target: int, eid: int = WAKEUP) -> bytes:
    return struct.pack("<HBBi16siii", eid, 0, 0, ctx, f"w{pid}".encode(), pid, 120, target)


def _print(ctx: int, text: str) -> bytes:
    return struct.pack("<HBBiQ", PRINT, 0, 0, ctx, 0xFFFFFFFF81000000) + text.encode() + b"\n\0"


def _page(ts: int, recs: list[tuple[int, bytes]], missed: int | None = None) -> bytes:
    body = b""
    for delta, payload in recs:
        padded = payload + b"\0" * (-len(payload) % 4)
        body += struct.pack("<I", (delta << 5) | len(padded) // 4) + padded
    flags, tail = 0, b""
    if missed is not None:
        flags, tail = 1 << 31, b""
        if missed >= 0:
            flags |= 1 << 30
            tail = struct.pack("<Q", missed)
    out = struct.pack("<QQ", ts, len(body) | flags) + body + tail
    assert len(out) <= 4096
    return out.ljust(4096, b"\0")


def synth_cpu(
    cpu: int, seed: int, n: int, *, anomalies: bool = True, lost_pages: bool = True
) -> bytes:
    """A CPU's pages: switches among a few tasks (and the idle task), wakeups of tasks
    running elsewhere or here (wwnr errors), unrecorded and repeated switches, a start
    marker, pages with missed events (count stored, and not; ``lost_pages``)."""
    rng = np.random.default_rng(seed)
    tasks = [0, 100 + cpu, 200, 201, 202, 300 + cpu]
    running = 0
    ts = 1_000_000 + cpu * 500  # CPUs interleave, with equal timestamps now and then
    pages, recs, page_ts = [], [], ts
    for i in range(n):
        delta = int(rng.integers(0, 3)) * 250
        r = rng.random()
        if anomalies and r < 0.03:
            running = int(rng.choice(tasks))  # a switch the trace does not have
            continue
        dup = False
        if r < 0.45:
            nxt = int(rng.choice(tasks))
            state = int(rng.choice([0, 1, 1, 2, 0x100, 0x101]))
            payload = _switch(running, running, state, nxt)
            dup = anomalies and nxt != running and rng.random() < 0.03
            running = nxt
        elif r < 0.85:
            target = int(rng.choice(tasks[1:]))
            eid = WAKEUP if rng.random() < 0.8 else WAKING
            payload = _wakeup(running, target, int(rng.integers(0, 3)), eid)
        elif r < 0.9 and i == n // 2:
            payload = _print(running, "START here")
        else:
            payload = _wakeup(running, running, cpu)
        recs.append((delta, payload))
        if dup:
            recs.append((0, payload))  # the same switch twice: a corrupt trace
        ts += delta
        if len(recs) >= 40 or i == n - 1:
            missed = None
            if anomalies and lost_pages and len(pages) % 7 == 3:
                missed = int(rng.integers(1, 50)) if len(pages) % 2 else -1
            pages.append(_page(page_ts, recs, missed))
            recs, page_ts = [], ts
    return b"".join(pages)


def synth_dat(
    tmp_path: Path, n: int = 1500, seed: int = 1, version: int = 7, lost_pages: bool = True
) -> Path:
    meta = TraceMetadata.from_raw_dir(need_shared(RAW), cmdlines=b"200 shared-a\n201 shared-b\n")
    path = tmp_path / f"synth{seed}.dat"
    cpus = {c: synth_cpu(c, seed * 10 + c, n, lost_pages=lost_pages) for c in (0, 1)}
    comp = "zstd" if version == 7 else "none"
    write_tracedat(path, {"": cpus}, meta, version=version, compression=comp, chunk_pages=3)
    return path


def synth_raw_dir(tmp_path: Path, n: int = 1500, seed: int = 2) -> Path:
    d = tmp_path / f"raw{seed}"
    shutil.copytree(need_shared(RAW) / "events", d / "events")
    for c in (0, 1, 2):
        (d / f"cpu{c}.raw").write_bytes(synth_cpu(c, seed * 10 + c, n))
    return d


DEFS = {
    "cpuw": """
[monitor]
name = "cpuw"
type = "per_cpu"
model = "wip"
[[hooks]]
tracepoint = "sched:sched_wakeup"
cpu = "target_cpu"
entry = "start_run"
event = "sched_waking"
[[hooks]]
tracepoint = "sched:sched_switch"
when = "next_pid == 0"
event = "preempt_disable"
[[hooks]]
tracepoint = "sched:sched_switch"
when = "prev_prio in [120, 100] and next_pid != 0"
event = "preempt_enable"
""",
    "globw": """
[monitor]
name = "globw"
type = "global"
model = "wwnr"
[[hooks]]
tracepoint = "sched:sched_switch"
when = "prev_state == 'R+'"
entry = "start"
event = "switch_out"
[[hooks]]
tracepoint = "sched:sched_wakeup"
event = "wakeup"
[[hooks]]
tracepoint = "sched:sched_switch"
when = "next_prio < 120"
event = "switch_in"
""",
    "curw": """
[monitor]
name = "curw"
type = "per_task"
model = "wwnr"
[[hooks]]
tracepoint = "sched:sched_waking"
task = "current"
entry = "start_run"
event = "wakeup"
[[hooks]]
tracepoint = "sched:sched_switch"
task = "prev_pid"
event = "switch_out"
[[hooks]]
tracepoint = "sched:sched_switch"
task = "next_pid"
when = "next_prio >= 100"
event = "switch_in"
""",
}


@pytest.fixture
def defs(tmp_path: Path) -> list[Path]:
    out = []
    for name, text in DEFS.items():
        p = tmp_path / f"{name}.toml"
        p.write_text(text)
        out.append(p)
    return out


ALL = ["wwnr", "cpuw", "globw", "curw"]


def test_synthetic_trace_every_monitor_kind(tmp_path: Path, defs: list[Path]) -> None:
    path = synth_dat(tmp_path)
    res, recs, gaps = assert_same(path, monitors=ALL, definitions=defs, emit_events=True)
    assert {m.name for m in res.monitors} == set(ALL)
    assert all(m.violations for m in res.monitors)
    reasons = {g.reason.split(":")[0] for g in gaps}
    assert any("repeats" in g.reason for g in gaps)  # a repeated switch
    assert any(g.count is None and g.pids is None for g in gaps)  # lost, count not stored
    assert any(g.count and g.pids is None for g in gaps)  # lost, count stored
    assert any(g.pids for g in gaps) and reasons


@pytest.mark.parametrize(
    "opts",
    [
        {"emit_events": False},
        {"start_marker": "START"},
        {"start_marker": "never there"},
        {"start_ts": 1_200_000},
        {"detect_silent_loss": False},
    ],
    ids=lambda o: next(iter(o)) + "=" + str(next(iter(o.values()))),
)
def test_synthetic_trace_options(tmp_path: Path, defs: list[Path], opts: dict) -> None:
    assert_same(synth_dat(tmp_path, seed=3), monitors=ALL, definitions=defs, **opts)


def merged_order(trace) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """(timestamps, streams) of the event rows of the fast path's merged batches, in their
    order, and the number of event rows of each CPU."""
    from pyrv.sources.detect import open_trace

    specs, pd = columnar.streams_of(open_trace(trace)[0])
    ct = columnar.ColumnarTrace(specs, pd, 1, lambda info: [])
    ts, streams = [], []
    for batch in ct.batches():
        events = batch.rows.kind == columnar.ROW_EVENT
        ts.append(batch.rows.ts[events].copy())
        streams.append(batch.stream[events].copy())
    stream = np.concatenate(streams)
    cpu_of = {s.index: s.cpu for s in specs}
    kinds, counts = np.unique(stream, return_counts=True)
    per_cpu = {cpu_of[int(k)]: int(n) for k, n in zip(kinds, counts, strict=True)}
    return np.concatenate(ts), stream, per_cpu


@pytest.mark.parametrize("batch_rows", [None, 37])
@pytest.mark.parametrize("kind", ["dat", "raw"])
def test_cpus_are_merged_by_time_and_ties_by_stream(
    tmp_path: Path, monkeypatch, kind: str, batch_rows: int | None
) -> None:
    """The merge itself, on two CPUs (.dat) and three (raw pages), across batch boundaries:
    every event comes in (timestamp, stream) order (equal timestamps on different CPUs keep
    a deterministic order: the lower stream first), and each CPU's events are all there."""
    from pyrv.sources.detect import open_trace
    from pyrv.sources.events import TraceEvent

    if batch_rows:
        monkeypatch.setattr(columnar, "BATCH_ROWS", batch_rows)
    trace = synth_dat(tmp_path, seed=7) if kind == "dat" else synth_raw_dir(tmp_path, seed=8)
    ts, stream, per_cpu = merged_order(trace)
    ties = (ts[1:] == ts[:-1]) & (stream[1:] != stream[:-1])
    assert ties.sum() > 50  # the synthetic CPUs meet at equal times often
    later = (ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (stream[1:] > stream[:-1]))
    same = (ts[1:] == ts[:-1]) & (stream[1:] == stream[:-1])
    bad = ~(later | same)
    assert not bad.any(), f"event {int(np.flatnonzero(bad)[0]) + 1} is out of order"
    expected: dict[int, int] = {}
    for item in open_trace(trace)[1]:
        if isinstance(item, TraceEvent):
            expected[item.cpu] = expected.get(item.cpu, 0) + 1
    assert per_cpu == expected


@pytest.mark.parametrize("version", [6, 7])
@pytest.mark.parametrize("detect", [True, False])
def test_rows_only_the_count_needs_are_left_out(
    tmp_path: Path, monkeypatch, version: int, detect: bool
) -> None:
    """wwnr hooks neither sched_waking nor the fork/exit events: the walker leaves such rows
    out, except where the continuity check needs them (a pid that is not the one the CPU
    was last seen running reveals a lost switch, here planted by the synthetic CPUs); the
    reference reads every row, and both must agree on everything, the count of events read
    and every gap included."""
    made: list[columnar.ColumnarTrace] = []
    real_init = columnar.ColumnarTrace.__init__

    def init(self, *args, **kw) -> None:
        real_init(self, *args, **kw)
        made.append(self)

    monkeypatch.setattr(columnar.ColumnarTrace, "__init__", init)
    path = synth_dat(tmp_path, n=4000, seed=9, version=version, lost_pages=False)
    ref = assert_same(path, monitors=["wwnr"], detect_silent_loss=detect)
    assert len(made) == 1 and made[0].dropped > 0  # the fast path ran, once, and left rows out
    if detect:
        assert len(ref[2]) > 20, "the synthetic CPUs lose switches"


def test_rows_left_out_never_hide_a_lost_switch(tmp_path: Path) -> None:
    """The continuity check (§ silent losses: the pid of an event must be the task the CPU's
    last switch put there) reads rows no monitor hooks. Here CPU 0 switches to 100, then
    sched_waking events come from 200 (a switch to 200 is missing) and from 100 again (a
    switch back is missing too), then from 100 once more (nothing lost): two gaps, whichever
    rows the fast path leaves out."""
    meta = TraceMetadata.from_raw_dir(need_shared(RAW))
    cpu0 = [
        (0, _switch(0, 0, 0, 100)),
        (100, _wakeup(200, 300, 0, WAKING)),
        (100, _wakeup(100, 300, 0, WAKING)),
        (100, _wakeup(100, 301, 0, WAKING)),
        (100, _switch(100, 100, 1, 0)),
    ]
    cpu1 = [(50, _switch(0, 0, 0, 400)), (10, _wakeup(400, 500, 1)), (500, _switch(400, 400, 1, 0))]
    path = tmp_path / "lost-switches.dat"
    pages = {0: _page(1_000, cpu0), 1: _page(1_000, cpu1)}
    write_tracedat(path, {"": pages}, meta, version=6, compression="none")
    ref = assert_same(path, monitors=["wwnr"])
    assert not isinstance(ref[0], str), ref[0]
    assert [(g.cpu, g.pids) for g in ref[0].gaps] == [(0, (100, 200)), (0, (200, 100))]


def test_small_batches_and_log(tmp_path: Path, defs: list[Path], monkeypatch) -> None:
    """Batch boundaries everywhere (carried switches and comms, start across batches), a
    log that fills up mid-batch, and more verdicts than are held back while reading
    speculatively (the input is then validated first and read again)."""
    monkeypatch.setattr(columnar, "BATCH_ROWS", 37)
    monkeypatch.setattr(engine, "LOG_CAP", 9)
    monkeypatch.setattr(engine, "DEFER_CAP", 50)
    path = synth_dat(tmp_path, seed=4)
    assert_same(path, monitors=ALL, definitions=defs, emit_events=True, start_marker="START")
    raw = synth_raw_dir(tmp_path, seed=5)
    assert_same(raw, monitors=ALL, definitions=defs, emit_events=True)


@pytest.mark.parametrize("pages", [2.5, 0.75])
def test_pages_continued_across_compressed_chunks(
    tmp_path: Path, defs: list[Path], monkeypatch, pages: float
) -> None:
    """v7 chunks that end inside a page (the next chunk continues it, TraceDat._cpu_items):
    walked where the pages are whole again, and on the main thread where they continue."""
    from pyrv.sources import tracedat_writer

    real = tracedat_writer._write_chunks
    size = int(4096 * pages)
    monkeypatch.setattr(
        tracedat_writer,
        "_write_chunks",
        lambda out, data, comp, _chunk: real(out, data, comp, size),
    )
    path = synth_dat(tmp_path, seed=6)
    from pyrv.sources.tracedat import TraceDat

    specs, _pd = columnar.streams_of(TraceDat(path))
    assert all(next(s.tasks()).size == size for s in specs)  # chunks end inside a page
    monkeypatch.setattr(columnar, "BATCH_ROWS", 101)
    assert_same(path, monitors=ALL, definitions=defs, emit_events=True)


def test_raw_directory_comms_from_the_events(tmp_path: Path, defs: list[Path]) -> None:
    """Without saved cmdlines a task's comm is the last one the trace's events gave."""
    raw = synth_raw_dir(tmp_path)
    _, recs, _ = assert_same(raw, monitors=ALL, definitions=defs, emit_events=True)
    assert {r.context.comm for r in recs} > {"<idle>"}


def test_reactors(tmp_path: Path, defs: list[Path]) -> None:
    path = synth_dat(tmp_path, seed=6)
    streams = []

    def setup(rv) -> None:
        stream = io.StringIO()
        streams.append(stream)
        r = rv.find_reactor("printk")
        assert isinstance(r, PrintkReactor)
        r.stream = stream

    assert_same(path, monitors=["wwnr", "cpuw"], definitions=defs, reactor="printk", setup_rv=setup)
    assert streams[0].getvalue() and streams[0].getvalue() == streams[-1].getvalue()
    ref, fast = run_both(path, monitors=ALL, definitions=defs, reactor="panic")
    assert ref[0].startswith("RVPanic") and fast == ref


# ---------------------------------------------------------------------------------------------
# What the fast path leaves to the reference.


def test_falls_back_before_any_verdict(tmp_path: Path) -> None:
    path = synth_dat(tmp_path, seed=7)
    with pytest.raises(NotApplicable, match="HAMonitor"):
        check_fast(path, CheckOptions(monitors=["stall"]), strict=True)
    # without strict: the reference's answer
    a = check(path, CheckOptions(monitors=["stall", "wwnr"], engine="reference"))
    assert check_fast(path, CheckOptions(monitors=["stall", "wwnr"])) == a
    text = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    with pytest.raises(NotApplicable, match="text"):
        check_fast(text, CheckOptions(monitors=["wwnr"]), strict=True)
    assert check_fast(text, CheckOptions(monitors=["wwnr"])) == check(
        text, CheckOptions(monitors=["wwnr"], engine="reference")
    )


@pytest.mark.parametrize(("cut", "partial"), [(0.5, False), (0.93, True)])
def test_damaged_files_are_the_reference_s(tmp_path: Path, cut: float, partial: bool) -> None:
    data = synth_dat(tmp_path, seed=8, version=6).read_bytes()
    damaged = tmp_path / "damaged.dat"
    damaged.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(Exception):  # noqa: B017 - NotApplicable, or the reader's own error
        check_fast(damaged, CheckOptions(monitors=["wwnr"], partial=partial), strict=True)
    ref, fast = [], []
    for out, fn, kind in ((ref, check, "reference"), (fast, check_fast, "auto")):
        recs: list = []
        opts = CheckOptions(monitors=["wwnr"], partial=partial, on_record=recs.append, engine=kind)
        try:
            res = fn(damaged, opts)
        except Exception as exc:  # noqa: BLE001 - compared
            res = f"{type(exc).__name__}: {exc}"
        out.extend((res, recs))
    assert fast == ref


def test_corrupt_page_header(tmp_path: Path) -> None:
    raw = synth_raw_dir(tmp_path, seed=9)
    pages = bytearray((raw / "cpu1.raw").read_bytes())
    pages[4096 * 3 + 8 : 4096 * 3 + 12] = struct.pack("<I", 5000)  # commit past the page
    (raw / "cpu1.raw").write_bytes(pages)
    with pytest.raises(NotApplicable, match="damaged"):
        check_fast(raw, CheckOptions(monitors=["wwnr"]), strict=True)
    ref, fast = run_both(raw, strict=False, monitors=["wwnr"])
    assert "page 3" in ref[0] and fast == ref


def test_without_a_compiler(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(columnar, "_lib", None)
    monkeypatch.setenv("PYRV_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    assert not available()
    path = synth_dat(tmp_path, seed=10)
    with pytest.raises(NotApplicable, match="compiler|numpy"):
        check_fast(path, CheckOptions(monitors=["wwnr"]), strict=True)
    assert check_fast(path, CheckOptions(monitors=["wwnr"])) == check(
        path, CheckOptions(monitors=["wwnr"], engine="reference")
    )
