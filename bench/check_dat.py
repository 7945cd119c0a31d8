"""Benchmark: ``pyrv check -m wwnr`` on a trace.dat of at least 5 M events vs ``trace-cmd report``.

Setup (cached under ``/tmp/pyrv-bench/``, so reruns are quick): record the scheduler events
of ``perf bench sched messaging`` on this kernel into a tracefs instance of our own
(``instances/pyrvbench-<pid>``: never the top-level buffer or anyone else's instance; removed
afterwards, and a stale one of a killed run is removed by the next), with a buffer large
enough that nothing is lost, and write the pages with pyrv's trace.dat writer (version 7,
zstd, trace-cmd's default) with the kernel's own header and format files. ``trace-cmd record``
is not used: it needs the function tracer's files, which are not permitted here. When the
kernel cannot be traced (no tracefs, not root) or perf is missing and cannot be installed,
pages are synthesized instead with this kernel's format files (or the recorded ones in
``shared/traces/recorded/raw``), and the output says so.

Measured (wall clock, best of ``--repeat`` for each; every run a fresh process, as a user
runs it, start-up included):

- ``python3 -m pyrv check -m wwnr FILE > OUT`` (the columnar fast path: ``--engine auto``),
  on the v7 zstd file and on the same pages as an uncompressed v6 file (``pyrv record``'s
  default), with the native code already built (the first run, which may build it, is
  reported separately); once with Python's bytecode cache (the default, and what an
  installed package has) and once in this environment as it is (``PYTHONDONTWRITEBYTECODE``,
  if set, makes every start compile pyrv's modules again);
- the same with ``--engine reference`` (the per-event engine) on a 200 k-event slice of the
  same recording (it would take minutes on the whole file), as events/s;
- Debian's ``trace-cmd report FILE > /dev/null`` on the same files.

Both engines' verdicts on the slice are compared (they must be identical). Printed: events/s
of each, the ratio pyrv / trace-cmd report end to end (target: at least 20x), per further
event, and the machine's load before and after (the figures mean little on a busy machine).

    python3 bench/check_dat.py [--repeat N] [--events N] [--no-record]
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("PYRV_BENCH_CACHE", "/tmp/pyrv-bench"))
EVENTS = [
    "sched:sched_switch",
    "sched:sched_wakeup",
    "sched:sched_waking",
    "sched:sched_wakeup_new",
    "sched:sched_process_fork",
    "sched:sched_process_exit",
]
PREFIX = "pyrvbench-"
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as ``python3 bench/check_dat.py`` from anywhere
RAW = REPO.parent / "shared" / "traces" / "recorded" / "raw"


# ---------------------------------------------------------------------------------------------
# Recording.


def _tracefs() -> contextlib.AbstractContextManager:
    """tracefs, mounted for the recording (and unmounted after it) if nobody has."""
    from pyrv.sources.tracefs import Tracefs

    return Tracefs()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_instance(inst: Path) -> None:
    for name, value in (("tracing_on", "0"), ("events/enable", "0")):
        with contextlib.suppress(OSError):
            (inst / name).write_text(value)
    for _ in range(100):
        try:
            inst.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            time.sleep(0.05)


def _remove_stale(root: Path) -> None:
    for inst in (root / "instances").glob(PREFIX + "*"):
        pid = inst.name[len(PREFIX) :]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_instance(inst)


def ensure_perf() -> str | None:
    exe = shutil.which("perf")
    if exe is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "linux-perf"], capture_output=True)
        exe = shutil.which("perf")
    if exe is None:
        return None
    ok = subprocess.run([exe, "bench", "sched", "messaging", "-l", "1"], capture_output=True)
    return exe if ok.returncode == 0 else None


def record(out_dir: Path, min_events: int) -> dict:
    """Record ``perf bench sched messaging`` until the pages hold at least ``min_events``
    (estimated from the bytes, checked by decoding afterwards). Returns the description."""
    perf = ensure_perf()
    if perf is None or os.geteuid() != 0:
        raise OSError("cannot record here (root and perf are needed)")
    with _tracefs() as fs:
        return _record_in(fs.path, out_dir, min_events, perf)


def _record_in(root: Path, out_dir: Path, min_events: int, perf: str) -> dict:
    from pyrv.sources.tracedat_writer import TraceMetadata

    _remove_stale(root)
    inst = root / "instances" / f"{PREFIX}{os.getpid()}"
    inst.mkdir()
    try:
        (inst / "tracing_on").write_text("0")
        per_cpu_kb = max(65536, min_events * 90 // 1024)  # the whole recording fits: no reader
        (inst / "buffer_size_kb").write_text(str(per_cpu_kb))
        for tp in EVENTS:
            system, _, name = tp.partition(":")
            (inst / "events" / system / name / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        loops = 200
        t0 = time.monotonic()
        while True:
            subprocess.run(
                [perf, "bench", "sched", "messaging", "-g", "10", "-l", str(loops)],
                check=True,
                capture_output=True,
            )
            written = sum(
                _stat(inst, cpu, "entries") + _stat(inst, cpu, "overrun") for cpu in _cpus(inst)
            )
            if written >= min_events * 1.05:
                break
            loops = min(loops * 2, 4000)
        (inst / "tracing_on").write_text("0")
        seconds = time.monotonic() - t0
        overrun = sum(_stat(inst, cpu, "overrun") for cpu in _cpus(inst))
        files = {}
        for cpu in _cpus(inst):
            files[cpu] = out_dir / f"cpu{cpu}.pages"
            _drain(inst / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw", files[cpu])
        meta = TraceMetadata.from_tracefs(inst, EVENTS)
    finally:
        _remove_instance(inst)
    with contextlib.suppress(OSError):
        meta.cmdlines = (root / "saved_cmdlines").read_bytes()
    (out_dir / "meta.pickle").write_bytes(pickle.dumps(meta))
    return {
        "how": f"recorded: perf bench sched messaging -g 10 ({seconds:.1f} s)",
        "overrun": overrun,
        "cpus": sorted(files),
    }


def _cpus(inst: Path) -> list[int]:
    return sorted(int(p.name[3:]) for p in (inst / "per_cpu").glob("cpu*"))


def _stat(inst: Path, cpu: int, key: str) -> int:
    for line in (inst / "per_cpu" / f"cpu{cpu}" / "stats").read_text().splitlines():
        k, _, v = line.partition(":")
        if k.strip() == key:
            return int(v.split()[0])
    return 0


def _drain(pipe: Path, out: Path) -> None:
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with open(out, "wb") as fh:
            while True:
                try:
                    page = os.read(fd, 4096)
                except BlockingIOError:
                    break
                if not page:
                    break
                fh.write(page + b"\0" * (-len(page) % 4096))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Synthesizing (when this machine cannot record).


def synthesize(out_dir: Path, min_events: int) -> dict:
    """Pages of a ping-pong schedule between many tasks on 2 CPUs, with the real formats."""
    from pyrv.sources.formats import FormatSet
    from pyrv.sources.tracedat_writer import TraceMetadata

    meta = TraceMetadata.from_raw_dir(RAW)
    formats = FormatSet.load(RAW / "events")
    sw, wk = formats.by_name("sched:sched_switch"), formats.by_name("sched:sched_wakeup")
    rng = np.random.default_rng(1)
    per_cpu = min_events // 2 + 1
    files = {}
    for cpu in (0, 1):
        files[cpu] = out_dir / f"cpu{cpu}.pages"
        with open(files[cpu], "wb") as fh:
            _synth_cpu(fh, cpu, per_cpu, sw.id, wk.id, rng)
    meta.cmdlines = b"".join(f"{p} worker-{p}\n".encode() for p in range(1000, 1400))
    (out_dir / "meta.pickle").write_bytes(pickle.dumps(meta))
    return {"how": "synthesized ring-buffer pages (recording was not possible)", "overrun": 0}


def _synth_cpu(fh, cpu: int, n: int, sw_id: int, wk_id: int, rng) -> None:
    running = 0
    ts = 1_000_000_000 + cpu * 7
    page, used, page_ts = bytearray(), 0, ts
    pids = rng.integers(1000, 1400, size=n)
    for i in range(n):
        nxt = int(pids[i])
        if i % 3 == 2:
            rec = struct.pack("<HBBi16siii", wk_id, 0, 0, running, b"w", nxt, 120, cpu)
        else:
            rec = struct.pack(
                "<HBBi16siiq16sii",
                sw_id,
                0,
                0,
                running,
                b"t",
                running,
                120,
                1,
                b"n",
                nxt,
                120,
            )
            running = nxt
        rec += b"\0" * (-len(rec) % 4)
        delta = 1000
        word = struct.pack("<I", (delta << 5) | (len(rec) // 4))
        if used + len(word) + len(rec) > 4080:
            fh.write(_page(page_ts, page))
            page, used, page_ts = bytearray(), 0, ts
            word = struct.pack("<I", len(rec) // 4)
        else:
            ts += delta
        page += word + rec
        used += len(word) + len(rec)
    fh.write(_page(page_ts, page))


def _page(ts: int, body: bytes) -> bytes:
    return (struct.pack("<QQ", ts, len(body)) + body).ljust(4096, b"\0")


# ---------------------------------------------------------------------------------------------
# The trace files.


def _page_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamp and committed size of every page of a spool file."""
    data = np.fromfile(path, np.uint8).reshape(-1, 4096)
    ts = data[:, 0:8].copy().view("<u8").ravel()
    commit = data[:, 8:16].copy().view("<u8").ravel() & ((1 << 27) - 1)
    return ts, commit


def write_slice(src: Path, dst: Path, fraction: float, version: int = 7) -> None:
    """A trace.dat of the pages written before the time that leaves ``fraction`` of the
    recorded bytes (every CPU cut at the same time, so the slice is a real prefix)."""
    from pyrv.sources.tracedat_writer import write_tracedat

    meta = pickle.loads((src / "meta.pickle").read_bytes())
    idx = {int(p.stem[3:].split(".")[0]): _page_index(p) for p in src.glob("cpu*.pages")}
    if fraction >= 1:
        cut = None
    else:
        all_ts = np.concatenate([ts for ts, _ in idx.values()])
        all_sz = np.concatenate([sz for _, sz in idx.values()])
        order = np.argsort(all_ts, kind="stable")
        cum = np.cumsum(all_sz[order])
        cut = int(all_ts[order][np.searchsorted(cum, cum[-1] * fraction)])
    buffers = {}
    for cpu, (ts, _) in sorted(idx.items()):
        keep = len(ts) if cut is None else int(np.searchsorted(ts, cut, "left"))
        data = (src / f"cpu{cpu}.pages").read_bytes()[: keep * 4096]
        buffers[cpu] = data
    comp = "zstd" if version == 7 else "none"
    write_tracedat(dst, {"": buffers}, meta, version=version, compression=comp, chunk_pages=64)


def count_events(path: Path) -> int:
    """Events in a trace.dat, counted by the fast path's page walker (no monitors)."""
    from pyrv.fast.columnar import ColumnarTrace, streams_of
    from pyrv.sources.tracedat import TraceDat

    td = TraceDat(path)
    specs, pd = streams_of(td)
    trace = ColumnarTrace(specs, pd, 1, lambda info: [])
    return sum(int(np.count_nonzero(b.rows.kind == 0)) for b in trace.batches())


def ensure_traces(min_events: int, allow_record: bool = True) -> dict:
    """The cached recording and the files made from it: full, 1 M-ish and 200 k-ish slices."""
    CACHE.mkdir(parents=True, exist_ok=True)
    desc_path = CACHE / "trace.json"
    spool = CACHE / "spool"
    if desc_path.exists():
        desc = json.loads(desc_path.read_text())
        if "full_v6" not in desc["files"] and (spool / "meta.pickle").exists():
            desc["files"]["full_v6"] = str(CACHE / "sched_v6.dat")
            write_slice(spool, Path(desc["files"]["full_v6"]), 1.0, version=6)
            desc_path.write_text(json.dumps(desc, indent=1))
        if desc.get("min_events", 0) >= min_events and all(
            Path(p).exists() for p in desc["files"].values()
        ):
            return desc
    shutil.rmtree(spool, ignore_errors=True)
    spool.mkdir()
    try:
        if not allow_record:
            raise OSError("recording disabled")
        how = record(spool, min_events)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"note: {exc}; synthesizing pages instead", file=sys.stderr)
        how = synthesize(spool, min_events)
    files = {"full": str(CACHE / "sched.dat")}
    write_slice(spool, Path(files["full"]), 1.0)
    total = count_events(Path(files["full"]))
    for name, target in (("1m", 1_000_000), ("200k", 200_000)):
        files[name] = str(CACHE / f"sched_{name}.dat")
        write_slice(spool, Path(files[name]), min(1.0, target / total))
    counts = {name: count_events(Path(p)) for name, p in files.items()}
    files["full_v6"] = str(CACHE / "sched_v6.dat")  # the same pages, uncompressed
    write_slice(spool, Path(files["full_v6"]), 1.0, version=6)
    desc = {"min_events": min_events, "files": files, "events": counts, **how}
    desc_path.write_text(json.dumps(desc, indent=1))
    return desc


# ---------------------------------------------------------------------------------------------
# Timing.

_SUMMARY = re.compile(r"^== .*: (\d+) events, (\d+) gaps", re.M)
_MONITOR = re.compile(r"^\s+wwnr\s.*\s(\d+) violations$", re.M)


def child_env(bytecode: bool) -> dict[str, str]:
    """The environment of a run: this one as it is, or with Python's bytecode cache (the
    default, and what an installed package has; kept under the bench cache, not the tree)."""
    env = dict(os.environ)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(CACHE / "pycache")
    return env


def run_pyrv(path: str, env: dict[str, str], engine: str = "auto") -> dict:
    """One ``python3 -m pyrv check -m wwnr FILE > OUT`` in a fresh process, as a user runs
    it (the output to a file, read afterwards: no reader competes for the CPUs while it
    runs); wall time of the whole process."""
    argv = [sys.executable, "-m", "pyrv", "check", "-m", "wwnr", path]
    if engine != "auto":
        argv += ["--engine", engine]
    out_path = CACHE / "pyrv-check.out"
    with open(out_path, "w") as out:
        t0 = time.perf_counter()
        res = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
        wall = time.perf_counter() - t0
    text = out_path.read_text()
    summary, mon = _SUMMARY.search(text), _MONITOR.search(text)
    if res.returncode not in (0, 1) or summary is None or mon is None:
        sys.exit(f"pyrv check failed ({res.returncode}): {res.stderr.strip()}")
    return {
        "wall": wall,
        "events": int(summary.group(1)),
        "gaps": int(summary.group(2)),
        "violations": int(mon.group(1)),
        "lines": text.count("\n"),
    }


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall"])


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def ensure_trace_cmd() -> str | None:
    exe = shutil.which("trace-cmd")
    if exe is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "trace-cmd"], capture_output=True)
        exe = shutil.which("trace-cmd")
    return exe


def run_trace_cmd(exe: str, path: str) -> float:
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run([exe, "report", path], check=True, stdout=null, stderr=null)
    return time.perf_counter() - t0


def compare_on_slice(path: str) -> tuple[bool, int]:
    """Both engines on the same file: every record, gap and summary number equal."""
    from pyrv.api import CheckOptions, check
    from pyrv.fast import check_fast

    out = []
    for fn in (check, lambda p, o: check_fast(p, o, strict=True)):
        recs, gaps = [], []
        res = fn(path, CheckOptions(monitors=["wwnr"], on_record=recs.append, on_gap=gaps.append))
        out.append((res, recs, gaps))
    return out[0] == out[1], out[0][0].violations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs of each (best of N)")
    ap.add_argument("--events", type=int, default=5_000_000, help="minimum events to record")
    ap.add_argument("--no-record", action="store_true", help="synthesize instead of recording")
    args = ap.parse_args()
    desc = ensure_traces(args.events, allow_record=not args.no_record)
    full, small = desc["files"]["full"], desc["files"]["200k"]
    n_full, n_small = desc["events"]["full"], desc["events"]["200k"]
    size_mb = os.path.getsize(full) / 2**20
    print(f"trace: {full}: {n_full:,} events, {size_mb:.0f} MiB (v7 zstd); {desc['how']}")
    if desc.get("overrun"):
        print(f"  (the kernel overwrote {desc['overrun']} events while recording)")
    exe = ensure_trace_cmd()
    print(f"{os.cpu_count()} CPUs, {load()} at the start")
    files = (("v7 zstd", full), ("v6", desc["files"]["full_v6"]))
    envs = (("bytecode cache", child_env(True)), ("no bytecode cache", child_env(False)))
    fast: dict[tuple[str, str], dict] = {}
    for env_label, env in envs:
        print(f"-- pyrv with {env_label}" + (
            " (this environment's PYTHONDONTWRITEBYTECODE: every start compiles pyrv's modules)"
            if env_label.startswith("no") else " (Python's default; an installed package's)"
        ))  # fmt: skip
        for label, path in files:
            first = run_pyrv(path, env)  # may build the native code, write the bytecode
            b = fast[(env_label, label)] = best([run_pyrv(path, env) for _ in range(args.repeat)])
            assert b["events"] == n_full, (b["events"], n_full)
            print(
                f"pyrv check -m wwnr {label:<7}: {n_full / b['wall']:12,.0f} events/s "
                f"({b['wall']:.3f} s wall; {b['violations']} violations, {b['gaps']} gaps, "
                f"{b['lines']} lines out; first run {first['wall']:.2f} s)"
            )
    env = envs[0][1]
    # what each further event costs: the fixed start-up (interpreter, imports, monitor set-up)
    # cancels out between the 1 M-event prefix and the whole recording
    one_m = best([run_pyrv(desc["files"]["1m"], env) for _ in range(args.repeat)])
    n_1m = desc["events"]["1m"]
    marginal = (n_full - n_1m) / (fast[(envs[0][0], "v7 zstd")]["wall"] - one_m["wall"])
    print(
        f"  per further event (v7 zstd, {n_1m:,} -> {n_full:,} events): "
        f"{marginal:,.0f} events/s; fixed start-up about {one_m['wall'] - n_1m / marginal:.2f} s"
    )
    ref = best([run_pyrv(small, env, "reference") for _ in range(max(1, args.repeat // 2))])
    print(
        f"pyrv check -m wwnr --engine reference: {n_small / ref['wall']:12,.0f} events/s "
        f"({ref['wall']:.2f} s wall on the {n_small:,}-event slice)"
    )
    same, violations = compare_on_slice(small)
    print(
        f"  both engines on the slice: {'identical' if same else 'DIFFERENT'} "
        f"({violations} violations)"
    )
    if exe is None:
        print("trace-cmd report: not installed, no ratio")
        return
    for label, path in files:
        t_tc = min(run_trace_cmd(exe, path) for _ in range(args.repeat))
        print(
            f"trace-cmd report > /dev/null, {label:<7}: {n_full / t_tc:12,.0f} events/s "
            f"({t_tc:.2f} s, best of {args.repeat})"
        )
        for env_label, _env in envs:
            ratio = t_tc / fast[(env_label, label)]["wall"]
            print(f"  ratio pyrv / trace-cmd report, end to end, {env_label}: {ratio:.1f}x")
        if label == "v7 zstd":
            print(f"  per further event: {marginal / (n_full / t_tc):.1f}x (target >= 20x)")
    speedup = (n_full / fast[(envs[0][0], "v7 zstd")]["wall"]) / (n_small / ref["wall"])
    print(f"ratio fast path / reference engine: {speedup:.1f}x")
    print(f"{load()} at the end")
    if not same:
        sys.exit("the two engines disagree")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
