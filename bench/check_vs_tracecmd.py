"""Benchmark: ``pyrv check -m wwnr`` on the largest recorded text trace vs ``trace-cmd report``.

Prints events/s of pyrv (parse + verify, in process, best of N) and of Debian's
``trace-cmd report`` on the trace.dat that holds the same ring-buffer content, and their ratio.
Setup installs trace-cmd when it is missing (apt-get, as root).

    python3 bench/check_vs_tracecmd.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from pyrv.api import CheckOptions, check

HERE = Path(__file__).resolve().parent
RECORDED = HERE.parent.parent / "shared" / "traces" / "recorded"
TEXT = RECORDED / "ftrace-text" / "sched_trace.txt"
DAT = RECORDED / "tracedat" / "sched_v7_zstd.dat"
BIG = HERE.parent.parent / "shared" / "conformance" / "traces" / "trace-pipes" / "trace.txt.xz"


def ensure_trace_cmd() -> str:
    exe = shutil.which("trace-cmd")
    if exe is None:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "trace-cmd"], check=True, stdout=subprocess.DEVNULL
        )
        exe = shutil.which("trace-cmd")
    if exe is None:
        sys.exit("trace-cmd is not installed and could not be installed")
    return exe


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    exe = ensure_trace_cmd()
    holder: dict[str, int] = {}

    def run_pyrv() -> None:
        res = check(TEXT, CheckOptions(monitors=["wwnr"]))
        holder["events"] = res.events_read
        holder["violations"] = res.violations

    def run_tracecmd() -> None:
        out = subprocess.run([exe, "report", str(DAT)], check=True, capture_output=True).stdout
        holder["tc_events"] = out.count(b"\n") - 1  # first line is cpus=N

    t_pyrv = best_of(args.repeat, run_pyrv)
    t_tc = best_of(args.repeat, run_tracecmd)
    ev, tc_ev = holder["events"], holder["tc_events"]
    print(f"trace: {TEXT.name} ({ev} events) / {DAT.name} ({tc_ev} lines), best of {args.repeat}")
    print(
        f"pyrv check -m wwnr : {ev / t_pyrv:12,.0f} events/s  ({t_pyrv * 1e3:.1f} ms, "
        f"{holder['violations']} violations)"
    )
    print(f"trace-cmd report   : {tc_ev / t_tc:12,.0f} events/s  ({t_tc * 1e3:.1f} ms)")
    print(f"ratio pyrv/trace-cmd: {(ev / t_pyrv) / (tc_ev / t_tc):.2f}x")
    if BIG.exists():  # the largest text trace (no trace.dat of it exists): pyrv's rate alone
        res = {}

        def run_big() -> None:
            res["r"] = check(BIG, CheckOptions(monitors=["wwnr"]))

        t_big = best_of(max(1, args.repeat // 2), run_big)
        n = res["r"].events_read
        print(
            f"pyrv check -m wwnr on {BIG.parent.name}/{BIG.name} ({n} events, xz): "
            f"{n / t_big:,.0f} events/s"
        )


if __name__ == "__main__":
    main()
