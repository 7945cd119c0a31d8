"""pyrv leaves the system as it found it: run on a machine where tracefs is not mounted, its
entry points leave it unmounted, after a normal end, SIGTERM and SIGINT, when runs overlap
(the one that mounted stops first), and after a run killed with SIGKILL once the next run
(or the test session's end) is done. Nor is a pyrv instance left in the kernel.

Each scenario runs in a private mount namespace of its own (``unshare -m --propagation
private``) where tracefs is unmounted first, so that others' mounts on this machine neither
disturb it nor are disturbed. The driver inside reads /proc/mounts itself and reports, after
each step, the tracefs mounts it sees (source and mountpoint); the test compares them with
what the standard requires: none once no pyrv runs.

Skips, with the reason, when not root or when no namespace or tracefs mount can be made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pyrv.fs.mount import fuse_unavailable_reason

REPO = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent(r"""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path

    TRACING = Path("/sys/kernel/tracing")
    PYRV = [sys.executable, "-m", "pyrv"]
    steps = []

    def mounts():
        out = []
        for line in Path("/proc/mounts").read_text().splitlines():
            f = line.split()
            if f[2] == "tracefs":
                out.append(f[0] + " " + f[1])
        return out

    def note(step, **extra):
        steps.append({"step": step, "mounts": mounts(), **extra})

    def leftover_instances(pids):
        # instances outlive the mount: look at them through a mount of the driver's own
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)], check=True)
        try:
            names = {p.name for p in (TRACING / "instances").iterdir()}
        finally:
            subprocess.run(["umount", str(TRACING)], check=True)
        return sorted(n for n in names if any(n.startswith(f"pyrv-{p}") for p in pids))

    def start(*args):
        return subprocess.Popen([*PYRV, *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def tracing(pid, tag=""):
        # until pyrv's instance of process pid traces (or the process is gone)
        path = TRACING / "instances" / f"pyrv-{pid}{tag}" / "tracing_on"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if path.read_text().strip() == "1":
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def finish(proc, sig=None):
        if sig is not None:
            proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
        return {"rc": proc.returncode, "err": err[-2000:]}

    def run(*args):
        res = subprocess.run([*PYRV, *args], capture_output=True, text=True, timeout=120)
        return {"rc": res.returncode, "err": res.stderr[-2000:], "out": res.stdout[-4000:]}

    for _ in range(8):
        if not mounts():
            break
        subprocess.run(["umount", str(TRACING)], capture_output=True)
    if mounts():
        print(json.dumps({"skip": f"cannot unmount {mounts()}"}))
        sys.exit(0)
    probe = subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACING)],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        print(json.dumps({"skip": probe.stderr.strip()}))
        sys.exit(0)
    subprocess.run(["umount", str(TRACING)], check=True)
    note("start")
    exec(sys.argv[1])
    print(json.dumps({"steps": steps}))
""")

SCENARIOS = {
    "runs": """
note("mon", **run("mon", "wwnr", "--duration", "0.3"))
note("record", **run("record", "-o", sys.argv[2] + "/r.dat", "-e", "sched:sched_switch",
                     "--duration", "0.3"))
note("list", **run("list", "--events", "kernel"))
""",
    "signals": """
for sig in (signal.SIGTERM, signal.SIGINT):
    mon = start("mon", "wwnr")
    note("mon started", up=tracing(mon.pid))
    note(f"mon {sig.name}", **finish(mon, sig))
    rec = start("record", "-o", sys.argv[2] + f"/{sig.name}.dat", "-m", "wwnr")
    note("record started", up=tracing(rec.pid))
    note(f"record {sig.name}", **finish(rec, sig))
""",
    "overlap": """
mon = start("mon", "wwnr")                      # mounts tracefs
note("mon started", up=tracing(mon.pid))
rec = start("record", "-o", sys.argv[2] + "/o.dat", "-e", "sched:sched_switch")
note("record started", up=tracing(rec.pid))
note("mon SIGTERM", **finish(mon, signal.SIGTERM))  # the one that mounted leaves first
time.sleep(0.3)
note("record still traces", up=tracing(rec.pid))
note("record SIGTERM", **finish(rec, signal.SIGTERM))
""",
    "sigkill": """
mon = start("mon", "wwnr")
note("mon started", up=tracing(mon.pid))
mon.kill()
mon.wait()
note("mon SIGKILL")
note("next mon", **run("mon", "wwnr", "--duration", "0.3"))
note("instances", left=leftover_instances([mon.pid]))
mon = start("mon", "wwnr")
note("mon started", up=tracing(mon.pid))
mon.kill()
mon.wait()
note("mon SIGKILL")
from pyrv.sources.tracefs import release_abandoned_mount  # what the session's end calls
note("released", where=str(release_abandoned_mount()))
note("instances", left=leftover_instances([mon.pid]))
""",
    "rvfs": """
mnt = Path(sys.argv[2]) / "rv"
mnt.mkdir()
for sig in (signal.SIGTERM, signal.SIGKILL):
    fs = start("mount", str(mnt), "--foreground", "--monitors", "wwnr")
    deadline = time.monotonic() + 60
    while not (mnt / "enabled_monitors").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    (mnt / "monitors/wwnr/enable").write_bytes(b"1")
    note("mount started", up=tracing(fs.pid, "-fs"))
    note(f"mount {sig.name}", **finish(fs, sig))
    if sig == signal.SIGKILL:  # its FUSE mount and owner record are stale: pyrv umount
        note("umount after SIGKILL", **run("umount", str(mnt)))
from pyrv.sources.tracefs import release_abandoned_mount
note("released", where=str(release_abandoned_mount()))
note("instances", left=leftover_instances([fs.pid]))
""",
}


def in_private_namespace(scenario: str, tmp_path: Path) -> list[dict]:
    """The scenario's steps, as the driver saw them in a mount namespace of its own."""
    if os.geteuid() != 0:
        pytest.skip("mounting tracefs needs root")
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) to make a private mount namespace")
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", sys.executable, "-c", DRIVER]
        + [SCENARIOS[scenario], str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    if res.returncode != 0 and not res.stdout.strip():
        if "unshare failed" in res.stderr:
            pytest.skip(f"no private mount namespace here: {res.stderr.strip()}")
        pytest.fail(f"the driver failed: {res.stderr}")
    report = json.loads(res.stdout.strip().splitlines()[-1])
    if "skip" in report:
        pytest.skip(f"tracefs cannot be mounted in a private namespace: {report['skip']}")
    return report["steps"]


def step(steps: list[dict], name: str, nth: int = 0) -> dict:
    return [s for s in steps if s["step"] == name][nth]


def test_runs_that_end_leave_tracefs_unmounted(tmp_path):
    steps = in_private_namespace("runs", tmp_path)
    assert step(steps, "start")["mounts"] == []
    for name, ok in (("mon", (0, 1)), ("record", (0,))):  # mon: 1 when wwnr saw an error
        assert step(steps, name)["rc"] in ok, step(steps, name)["err"]
        assert step(steps, name)["mounts"] == [], name
    # `pyrv list --events kernel` mounts tracefs to look, and unmounts it after
    listed = step(steps, "list")
    assert listed["rc"] == 0, listed["err"]
    assert listed["mounts"] == []
    wwnr = [line for line in listed["out"].splitlines() if line.startswith("wwnr ")]
    assert wwnr and wwnr[0].endswith("[events: yes]"), listed["out"]


def test_runs_stopped_by_signals_leave_tracefs_unmounted(tmp_path):
    steps = in_private_namespace("signals", tmp_path)
    for nth in range(2):
        for what in ("mon", "record"):
            up = step(steps, f"{what} started", nth)
            assert up["up"] and up["mounts"] == ["pyrv /sys/kernel/tracing"], up
    for name in ("mon SIGTERM", "mon SIGINT", "record SIGTERM", "record SIGINT"):
        s = step(steps, name)
        assert s["rc"] in (0, 1), (name, s["err"])
        assert s["mounts"] == [], name


def test_the_last_of_overlapping_runs_unmounts(tmp_path):
    """The run that mounted stops while another uses the mount: it stays, and goes with the
    last one (before, the first unmounted under the second, or failed to and left it)."""
    steps = in_private_namespace("overlap", tmp_path)
    assert step(steps, "record started")["up"]
    assert step(steps, "mon SIGTERM")["rc"] in (0, 1), step(steps, "mon SIGTERM")["err"]
    assert step(steps, "mon SIGTERM")["mounts"] == ["pyrv /sys/kernel/tracing"]
    assert step(steps, "record still traces")["up"]
    last = step(steps, "record SIGTERM")
    assert last["rc"] == 0, last["err"]
    assert "written to" in last["err"]
    assert last["mounts"] == []


def test_a_killed_runs_mount_goes_with_the_next_run_or_the_session(tmp_path):
    steps = in_private_namespace("sigkill", tmp_path)
    # SIGKILL: nothing can clean up, the mount stays until the next pyrv is done with it
    assert step(steps, "mon SIGKILL")["mounts"] == ["pyrv /sys/kernel/tracing"]
    assert step(steps, "next mon")["rc"] in (0, 1), step(steps, "next mon")["err"]
    assert step(steps, "next mon")["mounts"] == []
    assert step(steps, "instances")["left"] == []
    assert step(steps, "mon SIGKILL", 1)["mounts"] == ["pyrv /sys/kernel/tracing"]
    assert step(steps, "released")["where"] == "/sys/kernel/tracing"
    assert step(steps, "released")["mounts"] == []
    assert step(steps, "instances", 1)["left"] == []


@pytest.mark.skipif(fuse_unavailable_reason() is not None, reason=f"{fuse_unavailable_reason()}")
def test_the_rv_mounts_live_engine_leaves_tracefs_unmounted(tmp_path):
    steps = in_private_namespace("rvfs", tmp_path)
    assert step(steps, "mount started")["up"]
    assert step(steps, "mount SIGTERM")["mounts"] == []
    assert step(steps, "mount SIGKILL")["mounts"] == ["pyrv /sys/kernel/tracing"]
    assert step(steps, "umount after SIGKILL")["rc"] == 0, step(steps, "umount after SIGKILL")
    assert step(steps, "released")["mounts"] == []
    assert step(steps, "instances")["left"] == []
