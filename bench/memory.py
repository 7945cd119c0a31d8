"""Benchmark: peak RSS of ``pyrv check -m wwnr`` on two sizes of the same recording.

The traces are ``bench/check_dat.py``'s (recorded on this kernel under
``perf bench sched messaging``, cached in ``/tmp/pyrv-bench/``): the ~1 M-event prefix and the
whole recording (at least 5 M events), trace.dat v7 zstd, and the whole recording as v6
(uncompressed). Each check runs as its own process; its peak RSS is the ``ru_maxrss`` the
kernel reports for that child (``wait4``). Both engines are measured: the fast path
(``pyrv.fast.check_fast``) and the per-event reference engine (``pyrv check --engine
reference``). Memory must not grow with the trace: both
stream their input (the fast path in batches of ``pyrv.fast.columnar.BATCH_ROWS`` rows).

    python3 bench/memory.py [--engine fast|reference|both]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from check_dat import ensure_traces  # noqa: E402

_FAST = """
import sys
from pyrv.api import CheckOptions
from pyrv.fast import check_fast
res = check_fast(sys.argv[1], CheckOptions(monitors=["wwnr"], on_record=print), strict=True)
print(res.events_read, file=sys.stderr)
"""


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    """(peak RSS in KiB, seconds) of one child process run to completion."""
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, stderr=subprocess.PIPE)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode not in (0, 1):  # 1: violations found
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()}")
    return usage.ru_maxrss, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", choices=["fast", "reference", "both"], default="both")
    args = ap.parse_args()
    desc = ensure_traces(5_000_000)
    files = [
        ("~1M, v7 zstd", desc["files"]["1m"], desc["events"]["1m"]),
        ("full, v7 zstd", desc["files"]["full"], desc["events"]["full"]),
    ]
    if "full_v6" in desc["files"]:
        files.append(("full, v6", desc["files"]["full_v6"], desc["events"]["full"]))
    engines = ["fast", "reference"] if args.engine == "both" else [args.engine]
    pyrv = [sys.executable, "-m", "pyrv", "check", "--engine", "reference", "-m", "wwnr"]
    print(f"{'engine':<10} {'trace':<15} {'events':>11} {'peak RSS':>10} {'time':>8}")
    for engine in engines:
        for label, path, events in files:
            cmd = [sys.executable, "-c", _FAST, path] if engine == "fast" else [*pyrv, path]
            rss, secs = peak_rss(cmd)
            print(f"{engine:<10} {label:<15} {events:>11,} {rss / 1024:>7.0f} MiB {secs:>7.1f}s")


if __name__ == "__main__":
    main()
