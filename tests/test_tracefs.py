"""pyrv's own tracefs instance on the running kernel: created, used, and always removed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pyrv.sources.tracefs import (
    PREFIX,
    Tracefs,
    TraceInstance,
    _alive_since,
    find_tracefs,
    process_start,
)

SCRIPT = textwrap.dedent("""
    import sys, time
    from pyrv.sources.tracefs import Tracefs, TraceInstance, sigterm_as_interrupt
    with sigterm_as_interrupt(), Tracefs() as t, TraceInstance(t, ["sched:sched_switch"]) as i:
        print(i.name, flush=True)
        try:
            time.sleep(60)
        except KeyboardInterrupt:
            pass
""")


def instances(t: Tracefs) -> set[str]:
    return {p.name for p in (t.path / "instances").iterdir() if p.name.startswith(PREFIX)}


def test_instance_is_private_and_removed(tracefs):
    top_events = (tracefs.path / "set_event").read_text()
    with TraceInstance(tracefs, ["sched:sched_switch", "sched:sched_wakeup"], buffer_kb=512) as i:
        assert i.path.is_dir()
        assert (i.path / "set_event").read_text().split() == [
            "sched:sched_switch",
            "sched:sched_wakeup",
        ]
        assert int((i.path / "buffer_size_kb").read_text().split()[0]) >= 512  # page-rounded
        time.sleep(0.2)
        assert " sched_switch: " in (i.path / "trace").read_text()
    assert not i.path.exists()
    assert (tracefs.path / "set_event").read_text() == top_events  # top level untouched


def test_missing_event_is_refused_with_its_name(tracefs):
    with pytest.raises(OSError, match="no trace event nosys:noevent"):
        TraceInstance(tracefs, ["sched:sched_switch", "nosys:noevent"]).__enter__()
    assert f"{PREFIX}{os.getpid()}" not in instances(tracefs)  # others' runs may have theirs


def run_holder(script: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """A process holding an instance until signalled: ``-c SCRIPT``, or the script's file."""
    repo = Path(__file__).parents[1]
    proc = subprocess.Popen(
        [sys.executable, *(["-c", SCRIPT] if script is None else [str(script)])],
        stdout=subprocess.PIPE,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    name = proc.stdout.readline().strip()
    assert name.startswith(PREFIX)
    return proc, name


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_removes_the_instance(tracefs, sig):
    proc, name = run_holder()
    assert name in instances(tracefs)
    proc.send_signal(sig)
    proc.wait(timeout=20)
    assert name not in instances(tracefs)


def test_instance_of_a_killed_run_is_removed_by_the_next(tracefs):
    proc, name = run_holder()
    proc.kill()  # SIGKILL: no cleanup possible
    proc.wait(timeout=20)
    assert name in instances(tracefs)
    assert name in tracefs.remove_stale_instances()
    assert name not in instances(tracefs)


def test_instance_of_a_live_api_user_is_kept(tracefs, tmp_path):
    """pyrv used in-process (this holder's command line names no pyrv, as pytest's does not)
    keeps its instance while it runs: only gone or recycled pids are stale."""
    script = tmp_path / "holder.py"
    script.write_text(SCRIPT)
    proc, name = run_holder(script)
    try:
        assert b"pyrv" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert name not in tracefs.remove_stale_instances()
        assert name in instances(tracefs)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert name not in instances(tracefs)


def test_process_start_tells_live_from_gone_and_recycled():
    me = process_start(os.getpid())
    assert me is not None and me == process_start(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    assert process_start(child.pid) is None  # reaped
    assert _alive_since(os.getpid(), time.time())
    assert not _alive_since(os.getpid(), 0.0)  # this process started after 1970: a recycled pid
    assert not _alive_since(child.pid, time.time())


def test_find_tracefs_reads_mounts(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\nnodev /sys/kernel/tracing tracefs rw 0 0\n")
    assert find_tracefs(str(mounts)) == Path("/sys/kernel/tracing")
    mounts.write_text("proc /proc proc rw 0 0\n")
    assert find_tracefs(str(mounts)) is None
