"""pyrv on the running kernel: ``pyrv mon`` and ``pyrv record`` against the kernel's own text.

While ``pyrv mon wwnr`` runs (in-process, through :func:`pyrv.live.run_live`) on a small
workload, a second tracefs instance of the test's own (not ``pyrv-``: pyrv must not touch it)
records the same events as the kernel's plain text. The test then

- finds pyrv's event stream, CPU by CPU, as one stretch of that text (same tasks, same
  events, same fields, in the same order: nothing lost, nothing invented);
- computes wwnr's transitions and errors from the text with a reference of its own (spec
  §4.2's table, the kernel's start rule, and the resync rule for unrecorded switches), and
  compares them with pyrv's records: same task, same state, event and next state, at the same
  microsecond of the text. (The two buffers read the trace clock separately, a fraction of a
  microsecond apart, so pyrv's own nanoseconds are only required to be that close.)

wwnr's errors (the wakeup of a task that is still running) are rare on this kernel, so the
transitions are compared as well as the errors.

Also: ``pyrv mon`` stopped with SIGTERM or SIGINT leaves no instance; an instance left by a
SIGKILLed run is removed by the next run; ``pyrv mon wip`` is refused naming the
``preemptirq`` events this kernel lacks; ``pyrv record`` writes a trace.dat whose every event
equals ``trace-cmd report -N -t`` of it, and which ``pyrv check`` verifies.

Everything skips, with the reason, when not root or when tracefs cannot be mounted.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import workload
from test_tracedat import assert_same_as_report, report

import pyrv.live
from pyrv.api import CheckOptions, check
from pyrv.live import LiveOptions, run_live
from pyrv.record import SPOOL_PREFIX, RecordOptions, record
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.live import LiveTrace
from pyrv.sources.tracedat import TraceDat
from pyrv.sources.tracefs import PREFIX, Tracefs

REPO = Path(__file__).resolve().parents[1]
EVENTS = ("sched:sched_switch", "sched:sched_wakeup")


def pyrv_instances(t: Tracefs) -> set[str]:
    assert t.path is not None
    return {p.name for p in (t.path / "instances").iterdir() if p.name.startswith(PREFIX)}


def ours(pid: int | None = None) -> str:
    """The instance of pyrv in process ``pid`` (default: this one). Only names are checked:
    other pyrv runs on this machine have instances of their own meanwhile."""
    return f"{PREFIX}{os.getpid() if pid is None else pid}"


@contextlib.contextmanager
def text_instance(t: Tracefs, events: tuple[str, ...], buffer_kb: int = 32768) -> Iterator[Path]:
    """The test's own instance (``rvtest-<pid>``, which pyrv's stale cleanup ignores),
    recording ``events`` as the kernel's text; always removed."""
    assert t.path is not None
    inst = t.path / "instances" / f"rvtest-{os.getpid()}"
    inst.mkdir()
    try:
        (inst / "buffer_size_kb").write_text(str(buffer_kb))
        for ev in events:
            system, _, name = ev.partition(":")
            (inst / "events" / system / name / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        yield inst
    finally:
        with contextlib.suppress(OSError):
            (inst / "tracing_on").write_text("0")
        with contextlib.suppress(OSError):
            (inst / "events" / "enable").write_text("0")
        for _ in range(50):
            try:
                inst.rmdir()
                break
            except OSError:
                time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# The kernel's text, read independently of pyrv.

LINE = re.compile(r"-(\d+)\s+\[(\d+)\]\s+\S+\s+(\d+)\.(\d{6}): (\w+): (.*)$")
SWITCH = re.compile(
    r"prev_pid=(\d+) prev_prio=-?\d+ prev_state=(\S+) ==> .*next_pid=(\d+) next_prio"
)
WAKEUP = re.compile(r" pid=(\d+) prio=-?\d+ target_cpu=(\d+)$")
WRITTEN = re.compile(r"entries-in-buffer/entries-written: (\d+)/(\d+)")


@dataclass
class TextEvent:
    us: int  # the text's microseconds
    cpu: int
    pid: int
    name: str
    args: tuple  # sched_switch: (prev_pid, prev_state, next_pid); sched_wakeup: (pid, cpu)


def read_text(text: str) -> list[TextEvent]:
    written = WRITTEN.search(text)
    assert written and written[1] == written[2], "the test's own instance lost events"
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = LINE.search(line)
        assert m, line
        name, payload = m[5], m[6]
        if name == "sched_switch":
            s = SWITCH.search(payload)
            assert s, line
            args: tuple = (int(s[1]), s[2], int(s[3]))
        else:
            w = WAKEUP.search(payload)
            assert w, line
            args = (int(w[1]), int(w[2]))
        out.append(TextEvent(int(m[3]) * 10**6 + int(m[4]), int(m[2]), int(m[1]), name, args))
    return out


def pyrv_args(ev: TraceEvent) -> tuple:
    f = ev.fields
    if ev.name == "sched_switch":
        return (f["prev_pid"], f["prev_state"], f["next_pid"])
    return (f["pid"], f["target_cpu"])


def align(text: list[TextEvent], seen: list[TraceEvent]) -> dict[tuple[int, int], TextEvent]:
    """Each CPU's events pyrv saw as one stretch of that CPU's text; returns the text event
    of each pyrv event, by (cpu, ns)."""
    out: dict[tuple[int, int], TextEvent] = {}
    for cpu in sorted({e.cpu for e in seen}):
        mine = [e for e in seen if e.cpu == cpu]
        theirs = [t for t in text if t.cpu == cpu]
        key = [(e.pid, e.name, pyrv_args(e)) for e in mine]
        starts = [
            i
            for i, t in enumerate(theirs)
            if (t.pid, t.name, t.args) == key[0] and abs(t.us - mine[0].ts / 1000) < 1000
        ]
        start = next(
            (
                i
                for i in starts
                if [(t.pid, t.name, t.args) for t in theirs[i : i + len(key)]] == key
            ),
            None,
        )
        assert start is not None, f"cpu {cpu}: pyrv's {len(mine)} events are not in the text"
        for e, t in zip(mine, theirs[start:], strict=False):
            # the two buffers read the clock separately: close, not equal
            assert -1.0 <= e.ts / 1000 - t.us <= 1000, (e, t)
            out[(cpu, e.ts)] = t
    return out


# §4.2: (state, event) -> next; not_running is the initial state
TABLE = {
    ("not_running", "switch_in"): "running",
    ("not_running", "wakeup"): "not_running",
    ("running", "switch_out"): "not_running",
}


def reference_wwnr(events: list[TextEvent]) -> tuple[list[tuple], list[tuple]]:
    """wwnr's transitions and errors over the text: (us, cpu, pid, state, event[, next]).

    Start rule (the kernel's da_handle_start_event): a task not monitored starts being
    monitored, in the initial state, at a switch_out with prev_state S, and that event is
    not processed. Resync rule: a CPU whose event carries another task than its last switch's
    next task lost a switch, and both tasks are forgotten. After an error the task is
    forgotten until its next start.
    """
    monitoring: dict[tuple[int, int], str] = {}
    running: dict[int, int] = {}
    transitions, errors = [], []

    def key(pid: int, cpu: int) -> tuple[int, int]:
        return (pid, cpu if pid == 0 else -1)

    def step(ev: TextEvent, pid: int, event: str, start: bool) -> None:
        k = key(pid, ev.cpu)
        if k not in monitoring:
            if start:
                monitoring[k] = "not_running"
            return
        state = monitoring[k]
        nxt = TABLE.get((state, event))
        if nxt is None:
            errors.append((ev.us, ev.cpu, pid, state, event))
            del monitoring[k]
        else:
            transitions.append((ev.us, ev.cpu, pid, state, event, nxt))
            monitoring[k] = nxt

    for ev in events:
        who = ev.args[0] if ev.name == "sched_switch" else ev.pid
        if ev.cpu in running and running[ev.cpu] != who:
            monitoring.pop(key(running[ev.cpu], ev.cpu), None)
            monitoring.pop(key(who, ev.cpu), None)
        if ev.name == "sched_switch":
            prev, state, nxt = ev.args
            running[ev.cpu] = nxt
            step(ev, prev, "switch_out", state == "S")
            step(ev, nxt, "switch_in", False)
        else:
            running[ev.cpu] = who
            step(ev, ev.args[0], "wakeup", False)
    return transitions, errors


def per_task(rows: list[tuple]) -> dict[tuple[int, int], list[tuple]]:
    out: dict[tuple[int, int], list[tuple]] = {}
    for row in rows:
        pid, cpu = row[2], row[1]
        out.setdefault((pid, cpu if pid == 0 else -1), []).append(row)
    return out


def test_mon_wwnr_equals_an_independent_reading_of_the_kernels_text(tracefs, monkeypatch):
    seen: list[TraceEvent] = []
    lost: list[LostEvents] = []

    class Tapped(LiveTrace):
        """pyrv's own stream, kept to be found in the text."""

        def __iter__(self):
            for item in super().__iter__():
                if isinstance(item, TraceEvent):
                    seen.append(item)
                else:
                    lost.append(item)
                yield item

    monkeypatch.setattr(pyrv.live, "LiveTrace", Tapped)
    records = []
    ring: list[workload.Workload] = []
    done: list[float] = []

    def on_start(inst) -> None:
        assert inst.name in pyrv_instances(tracefs)
        ring.append(workload.start(procs=4, laps=150, pause=0.0005))

    def should_stop() -> bool:
        if ring and not done and all(p.poll() is not None for p in ring[0].procs):
            done.append(time.monotonic())
        return bool(done) and time.monotonic() > done[0] + 0.3

    opts = LiveOptions(monitors=["wwnr"], emit_events=True, on_record=records.append, duration=30.0)
    try:
        with text_instance(tracefs, EVENTS) as inst:
            res = run_live(opts, should_stop=should_stop, on_start=on_start)
            (inst / "tracing_on").write_text("0")
            text = read_text((inst / "trace").read_text())
    finally:
        for w in ring:
            w.wait(timeout=20)
    assert ours() not in pyrv_instances(tracefs)
    assert ring and ring[0].wait(0), "the workload did not finish by itself"
    assert not lost, f"the kernel reported lost events: {lost}"
    assert len(seen) == res.events_read > 500

    where = align(text, seen)
    windows = {id(t) for t in where.values()}
    expected_tr, expected_err = reference_wwnr([t for t in text if id(t) in windows])
    got_tr, got_err = [], []
    for r in records:
        t = where[(r.context.cpu, r.context.ts)]
        if r.kind == "event":
            got_tr.append((t.us, t.cpu, r.id, r.state, r.event, r.next_state))
        else:
            got_err.append((t.us, t.cpu, r.id, r.state, r.event))
    assert sorted(got_err) == sorted(expected_err)
    assert per_task(got_tr) == per_task(expected_tr)
    assert len(expected_tr) > 200
    # the workload's tasks were followed through their sleeps and wakeups
    followed = Counter(row[2] for row in expected_tr)
    assert all(followed[pid] >= 100 for pid in ring[0].pids)


# ---------------------------------------------------------------------------------------------
# Stopping, killing, refusing.


def start_mon(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``pyrv mon wwnr`` as a process; returns it and its instance's name once it exists."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyrv", "mon", "wwnr", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    name = f"{PREFIX}{proc.pid}"
    path = Path("/sys/kernel/tracing/instances") / name
    deadline = time.monotonic() + 30
    while not (path / "tracing_on").exists() or (path / "tracing_on").read_text().strip() != "1":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"pyrv mon did not start its instance: {err}")
        time.sleep(0.05)
    return proc, name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_mon_stopped_by_a_signal_leaves_no_instance(tracefs, sig):
    proc, name = start_mon()
    try:
        assert name in pyrv_instances(tracefs)
        workload.run(procs=2, laps=10)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 1), err
    assert "pyrv mon: wwnr:" in err and "events read" in err  # the closing summary
    assert name not in pyrv_instances(tracefs)
    enabled = (tracefs.path / "set_event").read_text()
    assert "sched_switch" not in enabled  # the top level was never touched


def test_instance_of_a_killed_mon_is_removed_by_the_next_run(tracefs):
    proc, name = start_mon()
    proc.kill()
    proc.communicate(timeout=30)
    # SIGKILL: no cleanup was possible, the instance stays until the next pyrv run
    if name not in pyrv_instances(tracefs):
        pytest.skip("another pyrv run on this machine removed the stale instance first")
    res = subprocess.run(
        [sys.executable, "-m", "pyrv", "mon", "wwnr", "--duration", "0.3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode in (0, 1), res.stderr
    assert name not in pyrv_instances(tracefs)


def test_mon_wip_is_refused_naming_the_missing_events(tracefs):
    if tracefs.has_event("preemptirq:preempt_disable"):
        pytest.skip("this kernel has the preemptirq events: wip can run here")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyrv", "mon", "wip", "--duration", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 2
    assert "wip" in err
    assert "preemptirq:preempt_disable" in err
    assert "preemptirq:preempt_enable" in err
    assert ours(proc.pid) not in pyrv_instances(tracefs)


def test_mon_runs_a_monitor_its_definition_file_defines(tracefs, tmp_path):
    """``pyrv mon -d mine.toml mine``: the monitor the file defines exists (mon looked the
    name up among the built-ins only and said it does not exist)."""
    (tmp_path / "mine.toml").write_text(
        '[monitor]\nname = "mine"\ntype = "per_task"\nmodel = "wwnr"\n'
        '[[hooks]]\ntracepoint = "sched:sched_switch"\ntask = "prev_pid"\n'
        'entry = "start"\nevent = "switch_out"\n'
    )
    res = subprocess.run(
        [sys.executable, "-m", "pyrv", "mon", "-d", "mine.toml", "mine", "--duration", "0.3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert res.returncode in (0, 1), res.stderr
    assert "pyrv mon: mine: " in res.stderr


# ---------------------------------------------------------------------------------------------
# pyrv record.


def check_recorded(path: Path, workload_pids: list[int]) -> None:
    """Every event equals trace-cmd's report of the file; pyrv check verifies it."""
    td = TraceDat(path)
    items = list(td)
    assert_same_as_report(items, report(path, td.formats))
    events = [e for e in items if isinstance(e, TraceEvent)]
    assert len(events) > 100
    assert not [i for i in items if isinstance(i, LostEvents)]
    for pid in workload_pids:  # comms from the events (the tasks are gone by now)
        assert td.cmdlines[pid].startswith("python"), (pid, td.cmdlines.get(pid))
    res = check(path, CheckOptions(monitors=["wwnr"]))
    assert res.events_read == len(events)
    assert res.monitors[0].hooked_events == len(events)


def spools(where: Path, pid: int) -> list[str]:
    return sorted(p.name for p in where.glob(f"{SPOOL_PREFIX}{pid}-*"))


def start_record(out: Path) -> subprocess.Popen[str]:
    """``pyrv record -m wwnr`` as a process, returned once it records."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pyrv", "record", "-o", str(out), "-m", "wwnr"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "recording" not in line:
        proc.kill()
        pytest.fail(f"pyrv record did not start: {line}{proc.communicate()[1]}")
    return proc


def test_spool_of_a_killed_record_is_removed_by_the_next(tracefs, tmp_path):
    proc = start_record(tmp_path / "killed.dat")
    try:
        left = spools(tmp_path, proc.pid)
        assert len(left) == 1
    finally:
        proc.kill()  # SIGKILL: no cleanup possible
        proc.communicate(timeout=30)
    assert spools(tmp_path, proc.pid) == left  # left behind, and no output file
    assert sorted(p.name for p in tmp_path.iterdir()) == left
    res = subprocess.run(
        [sys.executable, "-m", "pyrv", "record", "-o", str(tmp_path / "next.dat")]
        + ["-e", "sched:sched_switch", "--duration", "0.3"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next.dat"]
    assert ours(proc.pid) not in pyrv_instances(tracefs)  # nor is the killed run's instance


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_record_cli_stopped_by_a_signal(tracefs, tmp_path, sig):
    out = tmp_path / "rec.dat"
    proc = start_record(out)
    try:
        assert spools(tmp_path, proc.pid)  # the spool exists while recording
        pids = workload.run(procs=3, laps=30, pause=0.001)
        time.sleep(0.2)
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "written to" in err
    assert ours(proc.pid) not in pyrv_instances(tracefs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.dat"]  # no spool, no temp
    check_recorded(out, pids)
    cli = subprocess.run(
        [sys.executable, "-m", "pyrv", "check", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert cli.returncode in (0, 1), cli.stderr
    assert "wwnr" in cli.stdout


@pytest.mark.parametrize(("version", "compression"), [(6, "none"), (7, "zstd")])
def test_record_round_trip(tracefs, tmp_path, version, compression):
    out = tmp_path / "rec.dat"
    ring: list[workload.Workload] = []

    def should_stop() -> bool:
        return bool(ring) and all(p.poll() is not None for p in ring[0].procs)

    res = record(
        RecordOptions(
            out, events=list(EVENTS), duration=30, version=version, compression=compression
        ),
        should_stop=should_stop,
        on_start=lambda inst: ring.append(workload.start(procs=3, laps=30, pause=0.001)),
    )
    ring[0].wait(0)
    assert ours() not in pyrv_instances(tracefs)
    assert res.tracepoints == list(EVENTS) and res.events > 100 and not res.lost
    assert res.lost_events == 0 and res.cpus == len(res.stats)
    td = TraceDat(out)
    assert (td.version, td.compression, td.clock, td.cpus) == (
        version,
        compression,
        "local",
        res.cpus,
    )
    assert set(td.cpustats[""]) == set(res.stats)
    check_recorded(out, ring[0].pids)
