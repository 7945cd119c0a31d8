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

from pyrv.sources.tracefs import PREFIX, Tracefs, TraceInstance, find_tracefs

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


@pytest.fixture(scope="module")
def tracefs():
    if os.geteuid() != 0:
        pytest.skip("tracefs needs root")
    try:
        with Tracefs() as t:
            yield t
    except OSError as exc:
        pytest.skip(f"tracefs cannot be mounted here: {exc}")


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


def run_holder() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "pyrv-test"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[1],
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


def test_find_tracefs_reads_mounts(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("proc /proc proc rw 0 0\nnodev /sys/kernel/tracing tracefs rw 0 0\n")
    assert find_tracefs(str(mounts)) == Path("/sys/kernel/tracing")
    mounts.write_text("proc /proc proc rw 0 0\n")
    assert find_tracefs(str(mounts)) is None
