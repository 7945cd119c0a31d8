"""Stopping a check midway (Ctrl-C, ``CheckOptions.cancel``): what was judged is reported.

A stopped run is a partial run, not an error and not a pass: the records handed out so far
are exactly the first records of the whole run, the summary counts what was judged (its
violations are the error records handed out), no end-of-trace judgement is made, and the
command exits 130 (128 + SIGINT) after saying where it stopped.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO

from pyrv.api import CheckOptions, check


def _stop_at_first_error(cancel: threading.Event, recs: list) -> CheckOptions:
    def on_record(rec) -> None:  # noqa: ANN001
        recs.append(rec)
        if rec.kind == "error":
            cancel.set()

    return CheckOptions(monitors=["wwnr"], on_record=on_record, cancel=cancel)


@pytest.mark.parametrize("engine", ["reference", "auto"])
def test_a_stopped_run_reports_a_prefix_of_the_whole_run(
    tmp_path: Path, monkeypatch, engine: str
) -> None:
    np = pytest.importorskip("numpy")  # noqa: F841 - the synthetic trace is made with it
    import test_fast

    from pyrv.fast import columnar

    monkeypatch.setattr(columnar, "BATCH_ROWS", 37)  # many batches: the fast path stops between
    path = test_fast.synth_dat(tmp_path, n=3000, seed=7, lost_pages=False)
    whole: list = []
    full = check(path, CheckOptions(monitors=["wwnr"], on_record=whole.append, engine=engine))
    assert full.violations > 1 and not full.interrupted

    cancel, recs = threading.Event(), []
    opts = _stop_at_first_error(cancel, recs)
    opts.engine = engine
    if engine == "auto":  # its verdicts are held back until the input was read: stop it
        from pyrv.fast import engine as fast_engine  # after some batches instead

        end_batch, ended = fast_engine.FastRun._end_batch, []

        def count_batches(self, *args) -> None:  # noqa: ANN001
            end_batch(self, *args)
            ended.append(1)
            if len(ended) == 40:
                cancel.set()

        monkeypatch.setattr(fast_engine.FastRun, "_end_batch", count_batches)
    res = check(path, opts)

    assert res.interrupted and res.interrupted_at is not None
    assert recs == whole[: len(recs)]
    assert res.events_read < full.events_read
    errors = sum(r.kind == "error" for r in recs)
    assert res.violations == errors < full.violations
    if engine == "reference":  # it stops before the very next event
        assert errors == 1 and recs[-1].kind == "error"


def test_a_run_cancelled_before_it_starts_judges_nothing(tmp_path: Path) -> None:
    trace = tmp_path / "t.txt"
    trace.write_text(_text_trace(50))
    cancel = threading.Event()
    cancel.set()
    res = check(trace, CheckOptions(monitors=["wwnr"], cancel=cancel, engine="reference"))
    assert res.interrupted and res.interrupted_at is None
    assert res.events_read == 0
    assert [(m.name, m.hooked_events, m.violations) for m in res.monitors] == [("wwnr", 0, 0)]


def _text_trace(steps: int) -> str:
    """ftrace text: tasks 100..107 take turns on CPU 0, each woken before it runs (wwnr
    passes every step, and with --events prints one line per transition)."""
    out = ["# tracer: nop\n#\n"]
    cur, ts = 100, 1_000_000
    for k in range(steps):
        nxt = 100 + (k + 1) % 8
        stamp = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
        out.append(
            f"          t{cur}-{cur:<5} [000] d..2. {stamp}: sched_wakeup: comm=t{nxt} "
            f"pid={nxt} prio=120 target_cpu=000\n"
        )
        ts += 1
        stamp = f"{ts // 1_000_000}.{ts % 1_000_000:06d}"
        out.append(
            f"          t{cur}-{cur:<5} [000] d..2. {stamp}: sched_switch: prev_comm=t{cur} "
            f"prev_pid={cur} prev_prio=120 prev_state=S ==> next_comm=t{nxt} "
            f"next_pid={nxt} next_prio=120\n"
        )
        ts += 1
        cur = nxt
    return "".join(out)


def test_ctrl_c_stops_the_command_with_a_summary(tmp_path: Path) -> None:
    trace = tmp_path / "long.txt"
    steps = 150_000
    trace.write_text(_text_trace(steps))
    cmd = [sys.executable, "-m", "pyrv", "check", "-m", "wwnr", "--events"]
    proc = subprocess.Popen(
        [*cmd, "--engine", "reference", str(trace)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT, and its children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        first = proc.stdout.readline()  # judging has begun
        assert "event_wwnr" in first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted after the event at" in err and "Traceback" not in err
    summary = [line for line in out.splitlines() if line.startswith("== ")]
    assert len(summary) == 1
    events = int(summary[0].split(": ", 1)[1].split(" events")[0])
    assert 0 < events < 2 * steps


def test_ctrl_c_while_the_command_imports_ends_with_130_not_a_traceback(monkeypatch) -> None:
    """The entry point imports the command: a Ctrl-C then (before any handler is in place)
    exits as a Ctrl-C later does."""
    import importlib.abc

    from pyrv.cli import run

    class Interrupting(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):  # noqa: ANN001, ANN201
            if name == "pyrv.cli.main":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "pyrv.cli.main", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert run() == 130
