"""Recording the running kernel into a trace.dat: ``pyrv record``'s engine, as a Python API.

The events the chosen monitors hook (or the events named) are enabled in pyrv's own tracefs
instance (:class:`~pyrv.sources.tracefs.TraceInstance`: never the top-level buffer or anyone
else's instance, always removed on exit). Every CPU's ``trace_pipe_raw`` is read without
blocking and its pages are spooled to a file per CPU exactly as the kernel handed them out,
missed-events flags and stored counts included. When the recording stops (duration, the
caller's ``should_stop``, Ctrl-C, SIGTERM) tracing is turned off, the CPUs are drained, the
kernel's description of the pages is saved (``header_page``, ``header_event``, the format of
every recorded event and of ftrace's ``print``/``bprint``/``bputs``, the trace clock, each
CPU's ``stats``), the instance is removed, and a trace-cmd ``trace.dat``
(:mod:`pyrv.sources.tracedat_writer`) is written: version 6 by default, or 7 with
compression none, zlib or zstd. The saved cmdlines are the kernel's ``saved_cmdlines`` plus
the comms the recorded events carry (``prev_comm``, ``next_comm``, ``comm``, ...), plus
``/proc/PID/comm`` of tasks that still run and are named nowhere else.

Nothing is decoded while recording (the reading loop only copies pages, so it keeps up
with high event rates); the pages are decoded once afterwards, to count the events and the
losses and to learn the comms.

The spool directory (``.pyrv-record-<pid>-<start>-*`` beside the output) is removed on exit,
Ctrl-C and SIGTERM; one left by a recording killed with SIGKILL is removed by the next
recording into the same directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import shutil
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyrv.api import CheckError, CheckOptions, monitor_definitions, select_monitors
from pyrv.live import KERNEL, _stop_on_signals, kernel_presence, tracepoints_to_enable
from pyrv.monitors.hooks import MonitorDef
from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.formats import FormatSet
from pyrv.sources.ring_buffer import (
    PageDecoder,
    RingBufferLayout,
    Span,
    parse_cmdlines,
)
from pyrv.sources.tracedat_writer import (
    TraceMetadata,
    cmdlines_text,
    cpustat_option,
    output_path,
    uname_option,
    write_tracedat,
)
from pyrv.sources.tracefs import Tracefs, TraceInstance, process_start

#: the hidden directory beside the output where the pages are spooled while recording
SPOOL_PREFIX = ".pyrv-record-"
#: (pid field, comm field) pairs of the scheduler events that name tasks
COMM_FIELDS = (
    ("prev_pid", "prev_comm"),
    ("next_pid", "next_comm"),
    ("pid", "comm"),
    ("parent_pid", "parent_comm"),
    ("child_pid", "child_comm"),
)


class RecordError(Exception):
    """A recording that cannot start: no events chosen, or events this kernel lacks."""


@dataclass
class RecordOptions:
    """What to record, for how long, and how to write it."""

    output: str | os.PathLike[str]
    monitors: Sequence[str] = ()  # record the events these monitors hook
    events: Sequence[str] = ()  # and these (``system:event``, or a unique ``event``)
    definitions: Sequence[MonitorDef | str | Path] = ()
    duration: float | None = None  # seconds; None: until stopped (Ctrl-C, SIGTERM)
    buffer_kb: int = 4096  # per-CPU ring buffer of pyrv's instance
    clock: str | None = None  # trace clock of the instance (default: the kernel's, local)
    version: int = 6  # trace.dat version: 6, or 7
    compression: str = "none"  # v7: none, zlib, zstd
    poll_interval: float = 0.2  # seconds between reads when the kernel does not wake us


@dataclass
class RecordResult:
    """What a recording captured."""

    path: Path
    tracepoints: list[str]
    cpus: int
    pages: int = 0
    events: int = 0
    file_size: int = 0
    seconds: float = 0.0
    lost: list[LostEvents] = field(default_factory=list)  # pages flagged with missed events
    stats: dict[int, dict[str, str]] = field(default_factory=dict)  # per_cpu/cpuN/stats
    warnings: list[str] = field(default_factory=list)

    def stat_total(self, key: str) -> int:
        """A ``stats`` counter summed over the CPUs (``overrun``, ``dropped events``...)."""
        total = 0
        for s in self.stats.values():
            with contextlib.suppress(ValueError):
                total += int(s.get(key, "0").split()[0])
        return total

    @property
    def lost_events(self) -> int:
        """Events the kernel says were lost: the stored counts of the flagged pages, or its
        ``overrun`` + ``dropped events`` counters when those say more."""
        stored = sum(g.count or 0 for g in self.lost)
        return max(stored, self.stat_total("overrun") + self.stat_total("dropped events"))


def resolve_tracepoints(
    tracefs: Tracefs,
    monitors: Sequence[str] = (),
    events: Sequence[str] = (),
    definitions: Sequence[MonitorDef | str | Path] = (),
) -> list[str]:
    """The ``system:event`` names to record: what the monitors hook that this kernel has,
    then the named events. A monitor whose required events are missing, or a named event the
    kernel lacks, is refused with the missing names."""
    wanted: list[str] = []
    if monitors:
        opts = CheckOptions(monitors=list(monitors), definitions=list(definitions))
        try:
            names, rv = select_monitors(
                opts, monitor_definitions(opts), kernel_presence(tracefs), KERNEL
            )
        except CheckError as exc:
            raise RecordError(str(exc)) from None
        wanted.extend(tracepoints_to_enable(rv, names, tracefs))
    missing = []
    assert tracefs.path is not None
    for ev in events:
        if ":" in ev:
            if not tracefs.has_event(ev):
                missing.append(ev)
                continue
            tp = ev
        else:
            found = sorted(p.parent.parent.name for p in tracefs.path.glob(f"events/*/{ev}/format"))
            if not found:
                missing.append(ev)
                continue
            if len(found) > 1:
                choices = ", ".join(f"{s}:{ev}" for s in found)
                raise RecordError(f"event {ev!r} is in several systems: name one of {choices}")
            tp = f"{found[0]}:{ev}"
        if tp not in wanted:
            wanted.append(tp)
    if missing:
        raise RecordError(f"this kernel has no trace event {', '.join(missing)}")
    if not wanted:
        raise RecordError("nothing to record: name a monitor (-m) or an event (-e)")
    return wanted


def record(
    opts: RecordOptions,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[TraceInstance], None] | None = None,
) -> RecordResult:
    """Record until ``should_stop()``, the duration, or a stop signal; write the trace.dat."""
    output = output_path(opts.output)  # refused before recording, not after
    if opts.version not in (6, 7):
        raise RecordError(f"trace.dat version {opts.version} cannot be written (6 or 7)")
    if opts.version == 6 and opts.compression != "none":
        raise RecordError("trace.dat version 6 has no compression (use version 7)")
    named = "" if os.fspath(opts.output) == str(output) else f" ({opts.output} links there)"
    if not output.parent.is_dir():
        raise RecordError(f"{output.parent}: no such directory{named}")
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    with _stop_on_signals() as stopped:  # a signal while writing: the file is still written
        remove_stale_spools(output.parent)
        try:  # the pages are spooled beside the output, so its directory must take files
            spool = Path(tempfile.mkdtemp(prefix=_spool_prefix(), dir=output.parent))
        except OSError as exc:
            raise RecordError(
                f"{output}{named}: cannot write in {output.parent}: {exc.strerror}"
            ) from None
        try:
            return _record(opts, output, spool, stopped, deadline, should_stop, on_start)
        finally:
            shutil.rmtree(spool, ignore_errors=True)


def _spool_prefix() -> str:
    """``.pyrv-record-<pid>-<start>-``: the process that owns it, recycled pids told apart."""
    return f"{SPOOL_PREFIX}{os.getpid()}-{process_start(os.getpid())}-"


def remove_stale_spools(where: Path) -> list[str]:
    """Remove the spool directories in ``where`` of recordings whose process is gone (killed
    with SIGKILL: nothing could clean up). Returns their names."""
    removed = []
    for spool in sorted(where.glob(SPOOL_PREFIX + "*")):
        pid, _, rest = spool.name[len(SPOOL_PREFIX) :].partition("-")
        start = rest.partition("-")[0]
        if not (pid.isdigit() and start.isdigit()) or spool.is_symlink() or not spool.is_dir():
            continue  # not named by a pyrv that says who owns it: not ours to judge
        if process_start(int(pid)) != int(start):
            shutil.rmtree(spool, ignore_errors=True)
            removed.append(spool.name)
    return removed


def _record(
    opts: RecordOptions,
    output: Path,
    spool: Path,
    stopped: Callable[[], bool],
    deadline: float | None,
    should_stop: Callable[[], bool] | None,
    on_start: Callable[[TraceInstance], None] | None,
) -> RecordResult:
    def stop() -> bool:
        return (
            stopped()
            or (deadline is not None and time.monotonic() >= deadline)
            or (should_stop is not None and should_stop())
        )

    with Tracefs() as tracefs:
        tps = resolve_tracepoints(tracefs, opts.monitors, opts.events, opts.definitions)
        assert tracefs.path is not None
        names = _saved_cmdlines(tracefs.path)
        with TraceInstance(tracefs, tps, buffer_kb=opts.buffer_kb, clock=opts.clock) as inst:
            layout = RingBufferLayout.load(
                inst.path / "events", ">" if sys.byteorder == "big" else "<"
            )
            cpus = inst.cpus()
            result = RecordResult(output, tps, max(cpus, default=-1) + 1)
            started = time.monotonic()
            if on_start is not None:
                on_start(inst)
            files = _read_pages(inst, cpus, layout.page_size, spool, stop, opts, result)
            result.seconds = time.monotonic() - started
            result.stats = {cpu: _stats(inst.path, cpu) for cpu in cpus}
            meta = TraceMetadata.from_tracefs(inst.path, tps)
        names.update(_saved_cmdlines(tracefs.path))
    _scan(files, meta, layout, names, result)
    meta.cmdlines = cmdlines_text(names)
    options = [uname_option()]
    options += [cpustat_option(cpu, _stats_text(s)) for cpu, s in result.stats.items()]
    result.file_size = write_tracedat(
        output,
        {"": files},
        meta,
        version=opts.version,
        compression=opts.compression,
        order=layout.byteorder,
        long_size=struct.calcsize("l"),
        page_size=layout.page_size,
        cpus=result.cpus,
        options=options,
    )
    return result


def _read_pages(
    inst: TraceInstance,
    cpus: list[int],
    page_size: int,
    spool: Path,
    stop: Callable[[], bool],
    opts: RecordOptions,
    result: RecordResult,
) -> dict[int, Path]:
    """Copy every CPU's pages to ``spool/cpuN`` until ``stop()``, then drain what is left
    with tracing off. Returns the spool file of each CPU."""
    files = {cpu: spool / f"cpu{cpu}" for cpu in cpus}
    fds: dict[int, int] = {}
    outs = {}
    try:
        for cpu in cpus:
            fds[cpu] = os.open(
                inst.path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw",
                os.O_RDONLY | os.O_NONBLOCK,
            )
            outs[cpu] = open(files[cpu], "wb")  # noqa: SIM115 - closed in the finally
        while not stop():
            with contextlib.suppress(InterruptedError):
                select.select(list(fds.values()), [], [], opts.poll_interval)
            result.pages += _drain(fds, outs, page_size)
        with contextlib.suppress(OSError):
            (inst.path / "tracing_on").write_text("0")
        result.pages += _drain(fds, outs, page_size)  # what was written before tracing stopped
    finally:
        for fd in fds.values():
            os.close(fd)
        for fh in outs.values():
            fh.close()
    return files


def _drain(fds: dict[int, int], outs: dict, page_size: int) -> int:
    """Read every CPU's available pages (each ``read`` returns one whole page)."""
    pages = 0
    for cpu, fd in fds.items():
        out = outs[cpu]
        while True:
            try:
                page = os.read(fd, page_size)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
            if not page:
                break
            if len(page) < page_size:  # never seen: pad so pages stay aligned in the file
                page += b"\0" * (page_size - len(page))
            out.write(page)
            pages += 1
    return pages


def _saved_cmdlines(tracefs: Path) -> dict[int, str]:
    try:
        return parse_cmdlines((tracefs / "saved_cmdlines").read_text())
    except OSError:
        return {}


def _stats(instance: Path, cpu: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (instance / "per_cpu" / f"cpu{cpu}" / "stats").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                out[key.strip()] = value.strip()
    return out


def _stats_text(stats: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\n" for k, v in stats.items())


def _scan(
    files: dict[int, Path],
    meta: TraceMetadata,
    layout: RingBufferLayout,
    names: dict[int, str],
    result: RecordResult,
) -> None:
    """Decode the recorded pages once: count events and losses, learn the comms."""
    formats = FormatSet()
    for text in meta.ftrace_formats:
        formats.add_text(text.decode("utf-8", "replace"), system="ftrace")
    for system, texts in meta.event_formats.items():
        for text in texts:
            formats.add_text(text.decode("utf-8", "replace"), system=system)
    decoder = PageDecoder(formats, layout, source=str(result.path))
    unnamed: set[int] = set()
    block = layout.page_size * 256
    for cpu, path in files.items():
        try:
            with open(path, "rb") as fh:
                while data := fh.read(block):
                    off = fh.tell() - len(data)
                    span = Span(off, off // layout.page_size)
                    for item in decoder.pages(data, cpu, span=span, section=f"cpu{cpu}"):
                        if isinstance(item, LostEvents):
                            result.lost.append(item)
                            continue
                        result.events += 1
                        _learn(item, names, unnamed)
        except TraceError as exc:  # the file keeps the pages: trace-cmd will say the same
            result.warnings.append(f"cpu {cpu}: a recorded page does not decode: {exc}")
    for pid in sorted(unnamed - names.keys()):
        with contextlib.suppress(OSError):
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()


def _learn(ev: TraceEvent, names: dict[int, str], unnamed: set[int]) -> None:
    f = ev.fields
    for pid_key, comm_key in COMM_FIELDS:
        pid, comm = f.get(pid_key), f.get(comm_key)
        if isinstance(pid, int) and isinstance(comm, str) and pid > 0 and comm:
            names[pid] = comm
    if ev.pid > 0 and ev.pid not in names:
        unnamed.add(ev.pid)
