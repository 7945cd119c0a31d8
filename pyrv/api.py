"""The Python entry point of the main job: verify traces with the kernel's monitors.

``check()`` wires the three realms together: a source turns a trace into events, the
registry enables the chosen monitors exactly as writing ``enabled_monitors`` would, the
dispatcher feeds each event to the monitors' hooks, and every verdict leaves as a
:class:`~pyrv.monitors.records.Record` through ``on_record``.
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyrv.monitors.catalogue import build_rv, definitions_dir, load_monitor_definition
from pyrv.monitors.da import DAMonitor, MonitorType
from pyrv.monitors.dispatch import Dispatcher
from pyrv.monitors.hooks import MonitorDef
from pyrv.monitors.records import Record
from pyrv.monitors.registry import RV
from pyrv.sources.continuity import SwitchContinuity, check_time_order
from pyrv.sources.events import LostEvents, TraceEvent, TraceItem
from pyrv.sources.ftrace_text import TextTraceReader
from pyrv.sources.merge import merge_by_time
from pyrv.sources.presence import events_present
from pyrv.sources.tracepoints import BARE


class CheckError(Exception):
    """A request ``check`` cannot run: unknown monitor, missing events, bad reactor."""


@dataclass
class MonitorSummary:
    """What one monitor did over one trace."""

    name: str
    type: str
    hooked_events: int  # trace events that reached one of its hooks
    transitions: int  # model events processed by a monitoring instance
    instances: int  # distinct instances that received an event
    violations: int


@dataclass
class CheckResult:
    """The outcome of verifying one trace."""

    source: str
    monitors: list[MonitorSummary]
    events_read: int = 0
    gaps: list[LostEvents] = field(default_factory=list)
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    dropped_incomplete: int = 0

    @property
    def violations(self) -> int:
        return sum(m.violations for m in self.monitors)


RecordCallback = Callable[[Record], None]
GapCallback = Callable[[LostEvents], None]


@dataclass
class CheckOptions:
    """How to run: which monitors, which reactor, where to start, what to report."""

    monitors: Sequence[str] = ()  # empty: every monitor whose events the trace has
    definitions: Sequence[MonitorDef | str | Path] = ()  # extra/replacement monitor files
    reactor: str | None = None
    emit_events: bool = False
    skip_bad_lines: bool = False
    formats_dir: str | Path | None = None
    start_ts: int | None = None  # ns: monitors are enabled at this time
    start_marker: str | None = None  # or at the first trace_marker write containing this
    detect_silent_loss: bool = True
    on_record: RecordCallback | None = None
    on_gap: GapCallback | None = None
    setup_rv: Callable[[RV], None] | None = None  # e.g. register user reactors


def monitor_definitions(opts: CheckOptions) -> list[MonitorDef]:
    out = []
    for d in opts.definitions:
        out.append(d if isinstance(d, MonitorDef) else load_monitor_definition(d))
    return out


def check(
    trace: str | Path | Sequence[str | Path], opts: CheckOptions | None = None
) -> CheckResult:
    """Verify one trace (ftrace text or ``trace-cmd report`` text).

    A sequence of files is one trace split by CPU (``per_cpu/cpuN/trace``): they are merged
    in time order before the monitors see them.
    """
    opts = opts or CheckOptions()
    defs = monitor_definitions(opts)
    files = [trace] if isinstance(trace, str | Path) else list(trace)
    if not files:
        raise CheckError("no trace given")
    label = ", ".join(str(f) for f in files)
    formats = _formats(opts.formats_dir)
    readers = [
        TextTraceReader(f, formats=formats, skip_bad_lines=opts.skip_bad_lines) for f in files
    ]
    # the first item decides the layout: a trace pyrv cannot read fails before any verdict
    streams = [_peeked(r) for r in readers]
    reader = readers[0]
    names, rv = _select(files, opts, defs, assume_present=opts.formats_dir is not None)
    if names and not all(r.has_context for r in readers):
        raise CheckError(
            f"{label}: the trace has no context columns (written with the nocontext-info "
            "option): monitors need the task, CPU and time of every event"
        )
    monitors = [_enabled_monitor(rv, n) for n in names]
    _require_context_column(monitors, streams, label)
    result = CheckResult(source=label, monitors=[])
    dispatcher = Dispatcher(monitors)
    for mon in monitors:
        mon.emit_events = opts.emit_events
        mon.sink = opts.on_record
    items: Iterable[TraceItem] = streams[0] if len(streams) == 1 else merge_by_time(streams)
    items = check_time_order(items)
    if opts.detect_silent_loss:
        items = SwitchContinuity().filter(items)
    started = opts.start_ts is None and opts.start_marker is None
    for item in _counting(items, result):
        if isinstance(item, LostEvents):
            result.gaps.append(item)
            dispatcher.lost(item)
            if opts.on_gap is not None:
                opts.on_gap(item)
            continue
        if not started:
            started = _starts_here(item, opts)
            if not started:
                continue
            for mon in monitors:  # enabling resets every instance
                mon.reset()
        dispatcher.counter_clock = reader.counter_clock
        dispatcher.feed(item)
    if result.events_read == 0:
        raise CheckError(f"{label}: no events in the trace: nothing to verify")
    if not started:
        what = (
            f"start marker {opts.start_marker!r} never appears"
            if opts.start_marker is not None
            else "the trace ends before the start time"
        )
        raise CheckError(f"{label}: {what}: the monitors were never enabled")
    unseen = _unseen_tracepoints(monitors, dispatcher)
    if unseen and opts.monitors:
        raise CheckError("; ".join(_missing_message(n, label, tps) for n, tps in unseen.items()))
    monitors = [m for m in monitors if m.name not in unseen]
    result.skipped_lines = [s for r in readers for s in r.skipped]
    result.dropped_incomplete = sum(r.dropped_incomplete for r in readers)
    result.monitors = [
        MonitorSummary(
            m.name,
            m.type.value,
            dispatcher.hooked[m.name],
            m.counts["events"],
            len(m.seen),
            m.counts["errors"],
        )
        for m in monitors
    ]
    return result


def _require_context_column(
    monitors: list[DAMonitor], streams: list[Iterator[TraceItem]], label: str
) -> None:
    """Monitors whose hooks read hardirq/irqs-off need the trace's irq-info column."""
    needy = [m.name for m in monitors if m.definition is not None and m.definition.uses_context()]
    if not needy:
        return
    for i, stream in enumerate(streams):
        first = next(stream, None)
        if first is not None:
            streams[i] = itertools.chain((first,), stream)
        if isinstance(first, TraceEvent) and first.flags is None:
            raise CheckError(
                f"{label}: monitor(s) {', '.join(needy)} need the probe context (hardirq, irqs "
                "off) of the irq-info column, which this trace does not have (noirq-info option)"
            )


def _unseen_tracepoints(monitors: list[DAMonitor], dispatcher: Dispatcher) -> dict[str, list[str]]:
    """Per monitor, the hooked tracepoints that never occurred (input that was not pre-scanned,
    such as standard input)."""
    out = {}
    for m in monitors:
        assert m.definition is not None
        missing = [
            tp
            for tp in m.definition.required_tracepoints()
            if tp.split(":", 1)[-1] not in dispatcher.seen_events
        ]
        if missing:
            out[m.name] = missing
    return out


def _peeked(reader: TextTraceReader) -> Iterator[TraceItem]:
    """The reader's stream with its first item already read (errors surface now)."""
    stream = iter(reader)
    first = next(stream, None)
    return itertools.chain(() if first is None else (first,), stream)


def _counting(items: Iterable[TraceItem], result: CheckResult) -> Iterator[TraceItem]:
    for item in items:
        if isinstance(item, TraceEvent):
            result.events_read += 1
        yield item


def _starts_here(ev: TraceEvent, opts: CheckOptions) -> bool:
    if opts.start_ts is not None and ev.ts >= opts.start_ts:
        return True
    if opts.start_marker is not None and ev.name in ("tracing_mark_write", "print"):
        return opts.start_marker in str(ev.fields.get("buf", ""))
    return False


def _formats(formats_dir: str | Path | None):  # noqa: ANN202 - FormatSet or None
    if formats_dir is None:
        return None
    from pyrv.sources.formats import FormatSet

    return FormatSet.load(formats_dir)


def _select(
    files: list[str | Path],
    opts: CheckOptions,
    defs: list[MonitorDef],
    assume_present: bool = False,
) -> tuple[list[str], RV]:
    """Choose the monitors, size the per-task slots to them, and enable them."""
    probe = build_rv(defs)
    all_mons = {m.name: m for m in _da_monitors(probe)}
    runnable = {n: m for n, m in all_mons.items() if m.definition and m.definition.hooks}
    requested = opts.monitors
    names = _expand_requested(requested, probe, all_mons) if requested else list(runnable)
    wanted = {tp for n in names if n in runnable for tp in runnable[n].definition.tracepoints()}
    bare = {tp.split(":", 1)[-1] for tp in wanted}
    present = set(bare) if assume_present else set()
    for f in files:
        present |= set() if assume_present else events_present(f, bare)
    chosen = []
    for n in names:
        mon = all_mons[n]
        if n not in runnable:
            raise CheckError(_no_hooks_reason(mon))
        missing = [
            tp
            for tp in mon.definition.required_tracepoints()
            if tp.split(":", 1)[-1] not in present
        ]
        if missing and opts.monitors:
            where = ", ".join(str(f) for f in files)
            raise CheckError(_missing_message(n, where, missing))
        if not missing:
            chosen.append(n)
    slots = max(1, min(8, sum(all_mons[n].type is MonitorType.PER_TASK for n in chosen)))
    rv = build_rv(defs, per_task_slots=max(2, slots) if slots <= 8 else 8)
    if opts.setup_rv is not None:
        opts.setup_rv(rv)
    for n in chosen:
        _write(rv, "enabled_monitors", n)
        if opts.reactor is not None:
            _write(rv, f"monitors/{_path(rv, n)}/reactors", opts.reactor)
    return chosen, rv


def _missing_message(name: str, where: str, missing: list[str]) -> str:
    text = f"monitor {name} needs events missing from {where}: {', '.join(missing)}"
    bare = [tp for tp in missing if tp in BARE]
    if bare:
        text += (
            f" ({', '.join(bare)}: bare tracepoints, which tracefs does not expose; a trace "
            "carries them only when a kprobe, BPF program or synthetic event re-emits them "
            "under these names)"
        )
    return text


def _no_hooks_reason(mon: DAMonitor) -> str:
    if mon.definition is not None and mon.definition.source.startswith(str(definitions_dir())):
        return (
            f"monitor {mon.name} hooks bare tracepoints (sched_entry_tp, sched_set_state_tp, "
            "...) that a trace cannot show; pyrv has no hook table for it, so it cannot run "
            "on a trace"
        )
    where = mon.definition.source if mon.definition is not None else "its definition"
    return f"monitor {mon.name} has no hooks ({where} has no [[hooks]] table)"


def _expand_requested(requested: Sequence[str], rv: RV, mons: dict[str, DAMonitor]) -> list[str]:
    names: list[str] = []
    for req in requested:
        name = req.split(":", 1)[-1]
        children = [m.name for m in rv.monitors() if m.parent is not None and m.parent.name == name]
        if children:
            names.extend(c for c in children if c not in names)
        elif name in mons:
            if name not in names:
                names.append(name)
        else:
            raise CheckError(
                f"unknown monitor {req!r} (available: {', '.join(m.name for m in rv.monitors())})"
            )
    return names


def _path(rv: RV, name: str) -> str:
    mon = next(m for m in rv.monitors() if m.name == name)
    return f"{mon.parent.name}/{name}" if mon.parent is not None else name


def _write(rv: RV, path: str, value: str) -> None:
    try:
        rv.write(path, (value + "\n").encode())
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EINVAL and path.endswith("reactors"):
            names = rv.read("available_reactors").decode().split()
            raise CheckError(f"unknown reactor {value!r} (available: {', '.join(names)})") from None
        raise CheckError(f"writing {value!r} to {path}: {why}") from None


def _da_monitors(rv: RV) -> list[DAMonitor]:
    return [m for m in rv.monitors() if isinstance(m, DAMonitor)]


def _enabled_monitor(rv: RV, name: str) -> DAMonitor:
    return next(m for m in _da_monitors(rv) if m.name == name)
