"""A small, bounded scheduler workload for tests on the real kernel.

A ring of processes passes a token through pipes: each one blocks reading its pipe (it
sleeps, ``S``), is woken when the previous one writes, sleeps a little (a timer wakeup),
writes to the next one's pipe and blocks again, for a fixed number of laps; then they all
exit. Pure Python, one ``python -c`` per process; :func:`run` kills whatever is left after
its timeout, so a test never leaves a process behind.

``python tests/workload.py [PROCS] [LAPS] [SLEEP]`` runs it from a shell.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field

CHILD = """
import os, sys, time
laps, pause, first = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
if sys.argv[4] != "-":
    os.sched_setaffinity(0, {int(sys.argv[4])})
try:
    if first:
        os.write(1, b"x")
    for _ in range(laps):
        if not os.read(0, 1):
            break
        if pause:
            time.sleep(pause)
        os.write(1, b"x")
except BrokenPipeError:  # the next one already finished its laps
    pass
"""


@dataclass
class Workload:
    """The running ring: its processes, and when it started."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: float = 0.0

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait(self, timeout: float) -> bool:
        """Wait for every process until ``timeout`` seconds after the start; kill the rest.
        True when all exited by themselves."""
        clean = True
        for p in self.procs:
            left = max(0.0, self.started + timeout - time.monotonic())
            try:
                p.wait(timeout=left)
            except subprocess.TimeoutExpired:
                clean = False
                p.kill()
                p.wait()
        return clean


def start(procs: int = 4, laps: int = 20, pause: float = 0.002, spread: bool = True) -> Workload:
    """Start a ring of ``procs`` processes passing a token for ``laps`` laps. With ``spread``
    neighbours are pinned to different CPUs, so a wakeup often races with its target going
    to sleep (the kernel then reports the wakeup of a task that is still running)."""
    if procs < 2:
        raise ValueError("a ring needs two processes at least")
    pipes = [os.pipe() for _ in range(procs)]
    cpus = sorted(os.sched_getaffinity(0))
    w = Workload(started=time.monotonic())
    try:
        for i in range(procs):
            stdin = pipes[i][0]
            stdout = pipes[(i + 1) % procs][1]
            w.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        str(laps),
                        str(pause),
                        "1" if i == 0 else "0",
                        str(cpus[i % len(cpus)]) if spread and len(cpus) > 1 else "-",
                    ],
                    stdin=stdin,
                    stdout=stdout,
                    close_fds=True,
                )
            )
    except BaseException:
        for p in w.procs:
            p.kill()
            p.wait()
        raise
    finally:
        for r, wr in pipes:
            os.close(r)
            os.close(wr)
    return w


def run(
    procs: int = 4,
    laps: int = 20,
    pause: float = 0.002,
    timeout: float = 20.0,
    spread: bool = True,
) -> list[int]:
    """Run the ring to its end (at most ``timeout`` seconds); returns its pids."""
    w = start(procs, laps, pause, spread)
    w.wait(timeout)
    return w.pids


if __name__ == "__main__":
    a = sys.argv[1:]
    print(
        run(
            int(a[0]) if a else 4,
            int(a[1]) if len(a) > 1 else 20,
            float(a[2]) if len(a) > 2 else 0.002,
        )
    )
