"""Benchmark: the highest event rate ``pyrv mon wwnr`` sustains on the running kernel with zero
missed events (4 MiB per-CPU buffer), and its CPU use at that rate, under
``perf bench sched messaging``.

Method. ``perf bench sched messaging -p -g 1`` runs in a loop in its own process group, and
its load is stepped by limiting its CPU share: a cpu cgroup of its own whose CFS quota is a
fraction (the "duty") of the machine's CPUs (removed afterwards; one left by a killed run is
removed by the next), or, without a cpu cgroup controller, SIGSTOP/SIGCONT of the group over
100 ms. At each step ``pyrv mon wwnr`` runs as a child process for a few seconds (the real
command, not a library call), while this script samples its instance's
``per_cpu/cpuN/stats`` and the child's ``/proc/PID/stat`` every 100 ms. A step passes when

- the kernel reported no missed events: no loss in pyrv's summary (pages flagged by the
  kernel), and ``overrun`` and ``dropped events`` of every CPU stayed 0, and
- pyrv kept up rather than only absorbing a burst: the unread part of the buffer never
  passed half of it (``bytes`` of ``stats``).

The rate of a step is the kernel's: events written to pyrv's instance per second (``read
events`` + ``entries`` + ``overrun``, summed over CPUs, from the first sample to the last one
with tracing on), whatever task wrote them (other jobs on the machine included). pyrv's CPU
use is utime + stime of the child per second of that interval, the catching up after
tracing stopped included (100% = one CPU). After the first failing step the boundary is
bisected twice. A step started while other jobs kept the CPUs busy is marked so.

Peers, printed as ratios: the rate the kernel emits for the same workload at full speed when
nobody monitors (an instance with no reader, counting what is written), and the rate
``pyrv record`` (which only copies pages) sustains. ``trace-cmd record`` itself cannot run
on this machine (it needs the function tracer's files, which are not permitted here).

If ``perf`` is missing, setup installs ``linux-perf`` (apt-get, as root); if perf still
cannot run, a Python pipe ping-pong (same duty-cycle control) stands in and the output says so.

    python3 bench/live_rate.py [--seconds S] [--buffer-kb N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pyrv.sources.tracefs import Tracefs, TraceInstance

HERE = Path(__file__).resolve().parent
EVENTS = ["sched:sched_switch", "sched:sched_wakeup"]  # what wwnr hooks
PERF_ARGS = ["bench", "sched", "messaging", "-p", "-g", "1", "-l", "1000000"]
PERIOD = 0.1  # SIGSTOP/SIGCONT duty cycle, without a cpu cgroup
TICK = os.sysconf("SC_CLK_TCK")

PINGPONG = r"""
import os, sys
pairs = int(sys.argv[1])
for _ in range(pairs):
    a, b = os.pipe(), os.pipe()
    if os.fork() == 0:
        while os.read(a[0], 1):
            os.write(b[1], b"x")
        os._exit(0)
    os.write(a[1], b"x")
    if os.fork() == 0:
        while os.read(b[0], 1):
            os.write(a[1], b"x")
        os._exit(0)
for _ in range(2 * pairs):
    os.wait()
"""


def ensure_perf() -> list[str] | None:
    """The workload command: perf bench, or None when perf cannot run here."""
    exe = shutil.which("perf")
    if exe is None and os.geteuid() == 0:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "linux-perf"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        exe = shutil.which("perf")
    if exe is None:
        return None
    probe = subprocess.run(
        [exe, "bench", "sched", "messaging", "-p", "-g", "1", "-l", "10"],
        capture_output=True,
        timeout=60,
    )
    return [exe, *PERF_ARGS] if probe.returncode == 0 else None


CG_V1 = Path("/sys/fs/cgroup/cpu")
CG_V2 = Path("/sys/fs/cgroup")
CG_PREFIX = "pyrv-bench-"


def cgroup_root() -> tuple[Path, int] | None:
    """A cgroup hierarchy with the cpu controller (and its version), where we may write."""
    if (CG_V1 / "cpu.cfs_quota_us").is_file() and os.access(CG_V1, os.W_OK):
        return CG_V1, 1
    ctrl = CG_V2 / "cgroup.controllers"
    if ctrl.is_file() and "cpu" in ctrl.read_text().split() and os.access(CG_V2, os.W_OK):
        return CG_V2, 2
    return None


def remove_stale_cgroups() -> None:
    """cgroups of a benchmark that was killed (no task left in them)."""
    found = cgroup_root()
    if found is None:
        return
    for cg in found[0].glob(CG_PREFIX + "*"):
        with contextlib.suppress(OSError):
            if not (cg / "cgroup.procs").read_text().strip():
                cg.rmdir()


class Load:
    """The workload in its own process group, limited to ``duty`` of the machine's CPUs.

    With a cpu cgroup controller the group runs in a cgroup of its own whose CFS quota is
    ``duty`` x the CPUs, per 20 ms period (the scheduler throttles it: no extra events);
    without one it is duty-cycled with SIGSTOP/SIGCONT over 100 ms (the signals add a few
    thousand events per second of their own). The cgroup is removed when the load stops.
    """

    def __init__(self, cmd: list[str], duty: float) -> None:
        self.duty = duty
        self.cgroup: Path | None = None
        prefix = ""
        found = cgroup_root() if duty < 1.0 else None
        if found is not None:
            root, version = found
            self.cgroup = root / f"{CG_PREFIX}{os.getpid()}"
            self.cgroup.mkdir(exist_ok=True)
            period = 20_000
            quota = max(1000, int(duty * period * (os.cpu_count() or 1)))
            if version == 1:
                (self.cgroup / "cpu.cfs_period_us").write_text(str(period))
                (self.cgroup / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (self.cgroup / "cpu.max").write_text(f"{quota} {period}")
            prefix = f"echo $$ > {self.cgroup / 'cgroup.procs'} && "
        loop = prefix + "while :; do " + shlex.join(cmd) + " >/dev/null 2>&1; done"
        self.proc = subprocess.Popen(["sh", "-c", loop], start_new_session=True)
        self.running = True
        self.thread = threading.Thread(target=self._pace, daemon=True)
        self.thread.start()

    @property
    def method(self) -> str:
        return "cgroup CPU quota" if self.cgroup is not None else "SIGSTOP/SIGCONT"

    def _pace(self) -> None:
        if self.duty >= 1.0 or self.cgroup is not None:
            return
        pg = self.proc.pid
        while self.running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pg, signal.SIGCONT)
            time.sleep(PERIOD * self.duty)
            if not self.running:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pg, signal.SIGSTOP)
            time.sleep(PERIOD * (1 - self.duty))

    def stop(self) -> None:
        self.running = False
        self.thread.join()
        for sig in (signal.SIGCONT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
        self.proc.wait()
        # perf's children die with the group's SIGKILL; they are reaped by init
        deadline = time.monotonic() + 10
        while True:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if self.cgroup is not None:
            while True:
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def read_stats(inst: Path) -> list[dict[str, int]] | None:
    out = []
    try:
        for cpu_dir in sorted((inst / "per_cpu").glob("cpu*")):
            d = {}
            for line in (cpu_dir / "stats").read_text().splitlines():
                key, _, value = line.partition(":")
                with contextlib.suppress(ValueError, IndexError):
                    d[key.strip()] = int(value.split()[0])
            out.append(d)
    except OSError:
        return None
    return out


def written(stats: list[dict[str, int]]) -> int:
    return sum(s.get("read events", 0) + s.get("entries", 0) + s.get("overrun", 0) for s in stats)


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass
class Step:
    duty: float
    rate: float = 0.0  # events/s the kernel wrote to pyrv's instance
    events: int = 0  # events pyrv read (its summary)
    losses: int = 0  # loss markers in pyrv's summary
    overrun: int = 0
    dropped: int = 0
    backlog: float = 0.0  # peak unread fraction of one CPU's buffer
    backlog_end: float = 0.0  # the same over the last second of tracing (growing = behind)
    cpu: float = 0.0  # pyrv's CPU use, 1.0 = one CPU
    note: str = ""

    @property
    def lossless(self) -> bool:
        return not (self.losses or self.overrun or self.dropped)

    @property
    def ok(self) -> bool:
        return self.lossless and self.backlog_end < 0.5


def wait_quiet(limit: float = 3.0) -> bool:
    """Wait (a little) until at most one other task is runnable (``/proc/loadavg``'s running
    count, which includes this process), twice in a row: other jobs on the machine take CPU
    from pyrv and add events of their own. False when the machine stayed busy."""
    deadline = time.monotonic() + limit
    calm = 0
    while time.monotonic() < deadline:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        calm = calm + 1 if running <= 2 else 0
        if calm >= 2:
            return True
        time.sleep(0.2)
    return False


def run_pyrv(cmd: list[str], duty: float, seconds: float, buffer_kb: int) -> Step:
    """One step: the load at ``duty``, ``cmd`` (pyrv mon/record) measured while it runs."""
    step = Step(duty)
    if not wait_quiet():
        step.note = "(other jobs were running)"
    load = Load(WORKLOAD, duty)
    try:
        time.sleep(0.3)  # let the load settle
        proc = subprocess.Popen(
            [*cmd, "--duration", str(seconds), "--buffer-kb", str(buffer_kb)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        inst = Path("/sys/kernel/tracing/instances") / f"pyrv-{proc.pid}"
        first = last = None  # (time, events written, pyrv's CPU seconds), tracing on
        cpu_end = None
        unread: list[tuple[float, float]] = []  # (time, largest unread fraction), tracing on
        while proc.poll() is None:
            stats = read_stats(inst) if inst.is_dir() else None
            cpu = cpu_seconds(proc.pid)
            now = time.monotonic()
            if cpu is not None:
                cpu_end = cpu
            on = False
            with contextlib.suppress(OSError):
                on = (inst / "tracing_on").read_text().strip() == "1"
            if stats:
                step.overrun = sum(s.get("overrun", 0) for s in stats)
                step.dropped = sum(s.get("dropped events", 0) for s in stats)
                frac = max(s.get("bytes", 0) / (buffer_kb * 1024) for s in stats)
                step.backlog = max(step.backlog, frac)
                if cpu is not None and on:
                    sample = (now, written(stats), cpu)
                    first = first or sample
                    last = sample
                    unread.append((now, frac))
            time.sleep(0.1)
        err = proc.communicate()[1]
    finally:
        load.stop()
    if first is None or last is None or last[0] <= first[0] or cpu_end is None:
        step.note = "no samples: " + err.strip()[-200:]
        return step
    dt = last[0] - first[0]
    tail = [f for t, f in unread if t >= last[0] - 1.0]
    step.backlog_end = sum(tail) / len(tail)
    step.rate = (last[1] - first[1]) / dt
    # pyrv's CPU per second of trace, including catching up after tracing stopped
    step.cpu = (cpu_end - first[2]) / dt
    m = re.search(r"(\d+) events read.*?(\d+) losses reported by the kernel", err)
    if m:  # pyrv mon's summary
        step.events, step.losses = int(m[1]), int(m[2])
    else:  # pyrv record's: one line per flagged page
        m = re.search(r"pyrv record: (\d+) events", err)
        step.events = int(m[1]) if m else 0
        step.losses = len(re.findall(r"events lost", err))
    return step


def kernel_rate(duty: float, seconds: float, buffer_kb: int) -> float:
    """Events/s the kernel emits for the load when nobody reads: an instance with no
    reader counts what is written (overwritten events included)."""
    load = Load(WORKLOAD, duty)
    try:
        time.sleep(0.3)
        with Tracefs() as t, TraceInstance(t, EVENTS, buffer_kb=buffer_kb, tag="rate") as inst:
            a, t0 = read_stats(inst.path), time.monotonic()
            time.sleep(seconds)
            b, t1 = read_stats(inst.path), time.monotonic()
    finally:
        load.stop()
    assert a is not None and b is not None
    return (written(b) - written(a)) / (t1 - t0)


def fmt(step: Step) -> str:
    lost = f"{step.losses}/{step.overrun}/{step.dropped}"
    verdict = "ok" if step.ok else ("behind" if step.lossless else "LOSS")
    note = f" {step.note}" if step.note else ""
    return (
        f"{step.duty:>6.1%} {step.rate:>12,.0f} {step.events:>10,} {lost:>10} "
        f"{step.backlog:>5.0%}/{step.backlog_end:<4.0%} {step.cpu:>5.0%}  {verdict}{note}"
    )


WORKLOAD: list[str] = []


def main() -> None:
    global WORKLOAD
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each step")
    ap.add_argument("--buffer-kb", type=int, default=4096)
    ap.add_argument(
        "--duty",
        type=float,
        action="append",
        help="load steps, fractions of the CPUs (default: 0.02 to 1 in ten steps)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("the live benchmark needs root (tracefs)")
    perf = ensure_perf()
    if perf is not None:
        WORKLOAD = perf
        what = "perf bench sched messaging -p -g 1 (pipes, 20 senders x 20 receivers)"
    else:
        WORKLOAD = [sys.executable, "-c", PINGPONG, "8"]
        what = "a Python pipe ping-pong, 8 pairs (perf cannot run here)"
    started = time.monotonic()
    remove_stale_cgroups()
    how = "a cpu cgroup's CFS quota" if cgroup_root() else "SIGSTOP/SIGCONT over 100 ms"
    print(f"workload: {what}, its CPU share limited by {how}")
    print(
        f"pyrv mon wwnr, {args.buffer_kb} KiB per CPU, {os.cpu_count()} CPUs, {args.seconds} s/step"
    )
    wait_quiet()
    full = kernel_rate(1.0, 2.0, args.buffer_kb)
    print(f"the kernel's rate at full load with nobody reading: {full:,.0f} events/s\n")
    print(
        f"{'duty':>6} {'kernel ev/s':>12} {'pyrv read':>10} {'lost*':>10} {'backlog**':>10}"
        f" {'CPU':>5}"
    )
    mon = [sys.executable, "-m", "pyrv", "mon", "wwnr"]
    steps: list[Step] = []
    good: Step | None = None
    bad: Step | None = None
    for duty in args.duty or (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0):
        step = run_pyrv(mon, duty, args.seconds, args.buffer_kb)
        steps.append(step)
        print(fmt(step), flush=True)
        if step.ok:
            good, bad = step, None
        elif bad is not None or not step.lossless:
            bad = step
            break  # events lost, or twice behind in a row
        else:
            bad = step
    if good is not None and bad is not None and bad.duty > good.duty:
        lo, hi = good.duty, bad.duty
        for _ in range(2):
            mid = round((lo + hi) / 2, 3)
            step = run_pyrv(mon, mid, args.seconds, args.buffer_kb)
            steps.append(step)
            print(fmt(step), flush=True)
            lo, hi = (mid, hi) if step.ok else (lo, mid)
    best = max((s for s in steps if s.ok), key=lambda s: s.rate, default=None)
    lossless = max((s for s in steps if s.lossless), key=lambda s: s.rate, default=None)
    print("* loss markers in pyrv's summary / overrun / dropped events (kernel stats)")
    print("** unread part of the fullest CPU buffer: peak / mean over the last second;")
    print("   a step passes with no loss and that mean under 50% (pyrv kept up)")
    with tempfile.TemporaryDirectory() as tmp:
        rec = [sys.executable, "-m", "pyrv", "record", "-m", "wwnr", "-o", f"{tmp}/r.dat"]
        record_step = run_pyrv(rec, 1.0, args.seconds, args.buffer_kb)
    print(f"\npyrv record -m wwnr at full load: {fmt(record_step)}")
    print()
    if lossless is not None and lossless is not best:
        print(
            f"highest rate without loss, not kept up with (backlog {lossless.backlog_end:.0%}):"
            f" {lossless.rate:,.0f} events/s at {lossless.cpu:.0%} CPU"
        )
    if best is None:
        print("pyrv mon wwnr did not keep up even at the lowest load step")
    else:
        print(
            "highest rate pyrv mon wwnr sustains (zero missed events, kept up): "
            f"{best.rate:,.0f} events/s, at {best.cpu:.0%} of one CPU"
            f" ({best.rate / max(best.cpu, 1e-9):,.0f} events per CPU-second)"
        )
        print(f"  ratio to the kernel's full-load rate (nobody reading): {best.rate / full:.2f}")
        if record_step.rate:
            kept = "with zero loss" if record_step.lossless else "WITH LOSS"
            print(
                f"  ratio to pyrv record, which took the whole full load ({record_step.rate:,.0f}"
                f" events/s {kept}, {record_step.cpu:.0%} CPU): {best.rate / record_step.rate:.2f}"
            )
    print(f"(took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
