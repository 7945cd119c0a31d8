"""The Python entry point of the main job: verify traces with the kernel's monitors.

``check()`` (recorded traces) and :class:`Verifier` (any stream, the live kernel's too) wire
the three realms together: a source turns a trace into events, the
registry enables the chosen monitors exactly as writing ``enabled_monitors`` would, the
dispatcher feeds each event to the monitors' hooks, and every verdict leaves as a
:class:`~pyrv.monitors.records.Record` through ``on_record``.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyrv.monitors.catalogue import (
    CONTAINERS,
    KERNEL_ORDER,
    build_rv,
    definitions_dir,
    kernel_definitions,
    load_monitor_definition,
)
from pyrv.monitors.da import DAMonitor, MonitorType
from pyrv.monitors.dispatch import Dispatcher
from pyrv.monitors.hooks import MonitorDef
from pyrv.monitors.records import Record
from pyrv.monitors.registry import RV
from pyrv.sources.continuity import SwitchContinuity, TimeOrder
from pyrv.sources.detect import open_trace
from pyrv.sources.events import LostEvents, TraceEvent, TraceItem
from pyrv.sources.ftrace_text import TextTraceReader
from pyrv.sources.merge import merge_by_time
from pyrv.sources.presence import event_lines, events_present, first_event_line
from pyrv.sources.tracepoints import BARE


class CheckError(Exception):
    """A request ``check`` cannot run: unknown monitor, missing events, bad reactor."""


class FastEngineUnavailable(CheckError):
    """``engine="fast"`` was asked and the fast path does not apply to this input."""

    def __init__(self, label: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{label}: the fast engine cannot verify this input: {reason}")


@dataclass
class MonitorSummary:
    """What one monitor did over one trace."""

    name: str
    type: str
    hooked_events: int  # trace events that reached one of its hooks
    transitions: int  # model events judged by a monitoring instance (its violations included)
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
    stopped_at: str | None = None  # where reading a damaged input stopped (--partial)
    #: a loss the trace never recovers from (a CPU's data cut short) began at this time (in
    #: the trace clock's unit): no event after it was judged, no timer fired after it
    incomplete_from: int | None = None
    incomplete_stamp: str | None = None  # that time as the trace prints it ("471.939123456")
    #: ``CheckOptions.cancel`` stopped the run: the result covers the events read until then
    #: (no end-of-trace judgement was made); ``interrupted_at`` stamps the last of them
    interrupted: bool = False
    interrupted_at: str | None = None

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
    partial: bool = False  # a damaged trace.dat: verify what was read before the damage
    on_note: Callable[[str], None] | None = None  # e.g. a container's child that cannot run
    params: dict[str, int] = field(default_factory=dict)  # monitor parameters (threshold_jiffies)
    hz: int | None = None  # the traced kernel's HZ, for models whose clocks count jiffies
    #: "auto": the columnar fast path where it gives the reference's answer (binary traces,
    #: DA monitors), else the per-event engine; "fast": that or an error; "reference"
    engine: str = "auto"
    #: set it (e.g. from a SIGINT handler) to stop before the next event: the result covers
    #: what was judged until then (:attr:`CheckResult.interrupted`)
    cancel: threading.Event | None = None


def monitor_definitions(opts: CheckOptions) -> list[MonitorDef]:
    out = []
    for d in opts.definitions:
        out.append(d if isinstance(d, MonitorDef) else load_monitor_definition(d))
    return out


def check(
    trace: str | Path | Sequence[str | Path], opts: CheckOptions | None = None
) -> CheckResult:
    """Verify one trace: ftrace text, ``trace-cmd report`` text, a trace.dat, or a directory of
    raw ring-buffer pages, recognised by content.

    A sequence of files is one trace split by CPU (``per_cpu/cpuN/trace``): they are merged
    in time order before the monitors see them.
    """
    opts = opts or CheckOptions()
    defs = monitor_definitions(opts)
    files = [trace] if isinstance(trace, str | Path) else list(trace)
    if not files:
        raise CheckError("no trace given")
    label = ", ".join(str(f) for f in files)
    readers, streams = [], []
    for f in files:
        reader, items = open_trace(
            f,
            formats_dir=opts.formats_dir,
            skip_bad_lines=opts.skip_bad_lines,
            partial=opts.partial,
        )
        readers.append(reader)
        streams.append(_peeked(items))  # a trace pyrv cannot read fails before any verdict
    firsts = [next(s, None) for s in streams]
    if all(f is None for f in firsts):
        raise CheckError(f"{label}: no events in the trace: nothing to verify")
    streams = [
        itertools.chain((f,), s) if f is not None else s
        for f, s in zip(firsts, streams, strict=True)
    ]
    present = _presence(files, readers, opts)
    _note_other_page_files(readers, opts)
    _note_excerpt(files, readers, opts)
    names, rv = select_monitors(
        opts,
        defs,
        present,
        label,
        only_requested=True,
        context=_has_context_column(firsts),
        preempt=_shows_preempt(files, readers),
    )
    if not names:
        raise CheckError(_nothing_selected(label, readers, opts))
    if names and not all(r.has_context for r in readers):
        raise CheckError(
            f"{label}: the trace has no context columns (written with the nocontext-info "
            "option): monitors need the task, CPU and time of every event"
        )
    verifier = Verifier(rv, names, opts, label, counter_clock=readers[0].counter_clock)
    _require_context_column(verifier.monitors, streams, label)
    result = None
    if opts.engine == "fast" and len(readers) != 1:
        raise FastEngineUnavailable(label, "several input files")
    if opts.engine != "reference" and len(readers) == 1:
        from pyrv.fast import NotApplicable, run_fast

        try:  # decides before anything is emitted; None: the reference engine runs
            result = run_fast(verifier, readers[0], opts, strict=opts.engine == "fast")
        except NotApplicable as exc:
            raise FastEngineUnavailable(label, str(exc)) from None
    if result is None:
        items: Iterable[TraceItem] = streams[0] if len(streams) == 1 else merge_by_time(streams)
        order = TimeOrder()
        result = verifier.run(order.filter(items))
        if readers[0].counter_clock and order.cross_cpu_ties and opts.on_note is not None:
            opts.on_note(_ties_note(label, order.cross_cpu_ties))
    result.skipped_lines = [s for r in readers for s in r.skipped]
    result.dropped_incomplete = sum(r.dropped_incomplete for r in readers)
    for r in readers:
        stopped, why = getattr(r, "stopped_at", None), getattr(r, "stop_reason", None)
        cut = getattr(r, "decompressed_cut", None)  # a compressed input's stream ended early
        if stopped is None and cut is not None:
            stopped, why = cut, "the compressed stream is cut short there"
        if stopped is not None:
            result.stopped_at = f"byte offset {stopped}" + (f" ({why})" if why else "")
    return result


class Verifier:
    """The enabled monitors of one RV fed from one stream: where events enter and verdicts
    leave. Used for recorded traces (:func:`check`) and for the running kernel (``pyrv mon``)."""

    def __init__(
        self,
        rv: RV,
        names: list[str],
        opts: CheckOptions,
        label: str,
        counter_clock: bool,
        live: bool = False,
    ) -> None:
        self.rv, self.opts, self.label, self.live = rv, opts, label, live
        self.monitors = [_enabled_monitor(rv, n) for n in names]
        self.dispatcher = Dispatcher(self.monitors, counter_clock=counter_clock)
        for mon in self.monitors:
            mon.emit_events = opts.emit_events
            mon.sink = opts.on_record
        self.result = CheckResult(source=label, monitors=[])

    def run(self, items: Iterable[TraceItem]) -> CheckResult:
        """Feed every item, then judge what the stream left unsaid (§ no silent pass)."""
        opts = self.opts
        if opts.detect_silent_loss:
            items = SwitchContinuity().filter(items)
        started = opts.start_ts is None and opts.start_marker is None
        last_ts = None
        complete_from = None  # inside a reported loss: nothing is judged before this time
        result = self.result
        for item in _counting(_until_cancelled(items, opts.cancel, result), result):
            if isinstance(item, LostEvents):
                self.lost(item)
                if item.until_end and result.incomplete_from is None:
                    result.incomplete_from = ts = item.ts or 0
                    result.incomplete_stamp = self.stamp(ts)
                elif item.pids is None and item.ts is not None:
                    complete_from = max(complete_from or item.ts, item.ts)
                continue
            last_ts = item.ts
            if result.incomplete_from is not None:
                # a CPU's data ended in a loss: every later event may depend on what it lost
                started = started or _starts_here(item, opts)
                continue
            if complete_from is not None:
                if item.ts < complete_from:
                    continue  # another CPU's event inside the gap: its context is incomplete
                complete_from = None
            if not started:
                started = _starts_here(item, opts)
                if not started:
                    continue
                for mon in self.monitors:  # enabling resets every instance
                    mon.reset()
            self.dispatcher.feed(item)
        if result.interrupted:
            return self.interrupted(last_ts)
        if result.incomplete_from is not None and not any(self.dispatcher.hooked.values()):
            cut = next(g for g in result.gaps if g.until_end)
            whose = "a CPU's" if cut.cpu is None else f"CPU {cut.cpu}'s"
            raise CheckError(
                f"{self.label}: no event can be judged: {whose} data ends before any "
                f"event the monitors handle ({cut.reason}), and every event after that point "
                "may depend on what it lost"
            )
        if started and last_ts is not None and result.incomplete_from is None:
            # after a loss that never ends, no deadline can be known to have passed unmet
            self.dispatcher.finish(last_ts)
        return self.finish(started)

    def stamp(self, ts: int) -> str:
        """A time as the trace prints it (seconds.nanoseconds, or a counter clock's count)."""
        if self.dispatcher.counter_clock:
            return str(ts)
        return f"{ts // 1_000_000_000}.{ts % 1_000_000_000:09d}"

    def interrupted(self, last_ts: int | None) -> CheckResult:
        """The result of a run stopped by ``cancel``: what was judged until ``last_ts``, with
        no end-of-trace judgement (no timer is known to have expired, nothing is missing)."""
        result = self.result
        result.interrupted = True
        result.interrupted_at = None if last_ts is None else self.stamp(last_ts)
        result.monitors = [self.summary(m) for m in self.monitors]
        return result

    def lost(self, gap: LostEvents) -> None:
        self.result.gaps.append(gap)
        self.dispatcher.lost(gap)
        if self.opts.on_gap is not None:
            self.opts.on_gap(gap)

    def finish(self, started: bool = True) -> CheckResult:
        result, opts, label = self.result, self.opts, self.label
        if self.live:  # a quiet kernel is not an input error
            result.monitors = [self.summary(m) for m in self.monitors]
            return result
        if result.events_read == 0:
            raise CheckError(f"{label}: no events in the trace: nothing to verify")
        if not started:
            what = (
                f"start marker {opts.start_marker!r} never appears"
                if opts.start_marker is not None
                else "the trace ends before the start time"
            )
            raise CheckError(f"{label}: {what}: the monitors were never enabled")
        unseen = _unseen_tracepoints(self.monitors, self.dispatcher)
        if unseen and opts.monitors and result.incomplete_from is not None:
            unseen = {}  # asked for by name: their events may be after the cut, read, not judged
        if unseen and opts.monitors:
            raise CheckError(
                "; ".join(_missing_message(n, label, tps) for n, tps in unseen.items())
            )
        for m in self.monitors:
            if m.name not in unseen or not self._spoke(m):
                continue
            never = ", ".join(unseen.pop(m.name))  # its records are out: it stays counted
            if opts.on_note is not None:
                opts.on_note(
                    f"{m.name}: its hooked events {never} never occur in {label}"
                    " (not recorded?): its verdicts rest on its other events"
                )
        result.monitors = [self.summary(m) for m in self.monitors if m.name not in unseen]
        return result

    def _spoke(self, m: DAMonitor) -> bool:
        """Whether a monitor has emitted records (an error, or an event with ``emit_events``):
        one left out of the summary then would have verdicts printed but not counted."""
        return bool(m.counts["errors"] or (self.opts.emit_events and m.counts["events"]))

    def summary(self, m: DAMonitor) -> MonitorSummary:
        return MonitorSummary(
            m.name,
            m.type.value,
            self.dispatcher.hooked[m.name],
            m.counts["events"],
            len(m.seen),
            m.counts["errors"],
        )


def _presence(files: list[str | Path], readers: list, opts: CheckOptions) -> Callable[[str], bool]:
    """Which hooked events an input has, asked before any verdict: a byte scan of text files,
    the event formats of binary ones (a trace.dat or raw pages carry those of what was traced;
    pages given alone, those of ``--formats``). A bare tracepoint has no format, so a monitor
    hooking one is never run on binary input, where its other hooks would judge alone."""
    text_files = [f for f, r in zip(files, readers, strict=True) if isinstance(r, TextTraceReader)]
    binary = [r for r in readers if not isinstance(r, TextTraceReader)]
    cache: dict[str, bool] = {}

    def present(name: str) -> bool:
        if name not in cache:
            cache[name] = any(r.formats.by_name(name) is not None for r in binary) or any(
                events_present(f, [name]) for f in text_files
            )
        return cache[name]

    return present


def _note_excerpt(files: list[str | Path], readers: list, opts: CheckOptions) -> None:
    """A text whose header counts more events than it has lines is an excerpt or an edited
    copy. Cut at the end (``head``) its verdicts hold, as for a trace that stopped earlier;
    lines removed before that can make one false. Which it is cannot be told, so it is
    said, before any verdict."""
    if opts.on_note is None:
        return
    for f, r in zip(files, readers, strict=True):
        held = r.entries_in_buffer if isinstance(r, TextTraceReader) else None
        lines = event_lines(f) if held else None
        if lines is None or lines >= held:
            continue
        opts.on_note(
            f"{f}: its header says the buffer held {held} events, but it has {lines} event"
            " lines: an excerpt (verdicts hold if only its end was cut) or an edited copy"
            " (a removed event can make a verdict false)"
        )


def _note_other_page_files(readers: list, opts: CheckOptions) -> None:
    """A raw directory reads one recording's files; others beside them are named."""
    from pyrv.sources.ring_buffer import RawTraceDir, other_cpu_files

    for r in readers:
        others = other_cpu_files(r.path) if isinstance(r, RawTraceDir) else []
        if others and opts.on_note is not None:
            opts.on_note(
                f"{r.source}: not read: {', '.join(others)} (another recording's page files;"
                " give each alone with --formats DIR)"
            )


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


def _peeked(stream: Iterator[TraceItem]) -> Iterator[TraceItem]:
    """The stream with its first item already read (errors surface now)."""
    first = next(stream, None)
    return itertools.chain(() if first is None else (first,), stream)


def _until_cancelled(
    items: Iterable[TraceItem], cancel: threading.Event | None, result: CheckResult
) -> Iterator[TraceItem]:
    """``items`` until ``cancel`` is set (checked before each item is taken)."""
    if cancel is None:
        yield from items
        return
    for item in items:
        if cancel.is_set():
            result.interrupted = True
            return
        yield item


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


def _ties_note(label: str, ties: int) -> str:
    """A clock of counts whose stamps repeat across CPUs is coarser than the events (uptime
    counts jiffies): within one stamp the file's order is by CPU, not by time."""
    return (
        f"{label}: {ties} events carry the stamp of another CPU's event just before them: this"
        " trace clock counts too coarsely (uptime counts jiffies) to order them, and verdicts"
        " that depend on the order of events within one tick on different CPUs may be wrong"
        " (record with a finer clock: local, global, mono, or counter)"
    )


def _shows_preempt(files: list[str | Path], readers: list) -> bool:
    """Whether the inputs print sched_switch's preempt '+' (``R+``). Everything does but
    ``trace-cmd report``'s default sched_switch plugin (trace-formats.md 3.5), seen in the
    payload of the first sched_switch line; a report that cannot be scanned ahead (stdin)
    is taken not to, as its verdicts could not be trusted."""
    for f, r in zip(files, readers, strict=True):
        if not isinstance(r, TextTraceReader) or not str(r.layout).startswith("report"):
            continue
        if str(f) == "-" or not Path(f).is_file():
            return False
        line = first_event_line(f, "sched_switch")
        if line is not None and b" ==> " in line and b"prev_state=" not in line:
            return False
    return True


def _has_context_column(firsts: list[TraceItem | None]) -> bool:
    """Whether the inputs' events carry the probe context (the irq-info column)."""
    return not any(isinstance(f, TraceEvent) and f.flags is None for f in firsts)


def _nothing_selected(label: str, readers: list, opts: CheckOptions) -> str:
    """Why no monitor runs: a raw/hex text without --formats names its events only by type
    id, so the scan for event names finds none of them."""
    layouts = {getattr(r, "layout", None) for r in readers}
    if opts.formats_dir is None and layouts & {"raw", "hex"}:
        option = "raw" if "raw" in layouts else "hex"
        return (
            f"{label}: this trace was written with the '{option}' option: its events are named"
            " only by type id; pass the event format files with --formats DIR (a tracefs"
            " events/ directory, or a directory of <system>__<event>.format files) to decode it"
        )
    return (
        f"{label}: no monitor has its events in this trace: nothing to verify "
        f"(pyrv list --events {label} says what each monitor needs)"
    )


def select_monitors(
    opts: CheckOptions,
    defs: list[MonitorDef],
    present: Callable[[str], bool],
    where: str,
    *,
    context: bool = True,
    preempt: bool = True,
    only_requested: bool = False,
) -> tuple[list[str], RV]:
    """Choose the monitors, size the per-task slots to them, and enable them in a new RV.

    Requested monitors (containers expand to their children) must have their hooked events
    (``present(event_name)``); with none requested, every monitor whose events are present.
    ``context``: the input has the irq-info column; without it, a monitor whose hooks read the
    probe context is left out of the default selection (asked for, it is an error later).
    ``preempt``: the input prints sched_switch's preempt '+'; without it, a monitor whose
    conditions tell ``R+`` from ``R`` is left out of the default selection (with a note) and
    refused when asked for by name (a requested container's child is left out with a note).
    ``only_requested``: the RV holds only the requested monitors (and the containers, in the
    same order), when they are named plainly: a recorded trace's check of one monitor need
    not build the others (their definitions, models, Büchi automata).
    """
    _check_params(opts, defs)
    only = _plainly_named(opts.monitors, defs) if only_requested else None
    probe = build_rv(defs, hz=opts.hz, params=opts.params, only=only)
    all_mons = {m.name: m for m in _da_monitors(probe)}
    runnable = {n: m for n, m in all_mons.items() if m.definition and m.definition.hooks}
    requested = opts.monitors
    names = _expand_requested(requested, probe, all_mons) if requested else list(runnable)
    named = {r.split(":", 1)[-1] for r in requested}  # asked for by name, not as a child
    skipped: list[str] = []
    chosen = []
    for n in names:
        mon = all_mons[n]
        if n not in runnable:
            raise CheckError(_no_hooks_reason(mon))
        missing = [
            tp for tp in mon.definition.required_tracepoints() if not present(tp.split(":", 1)[-1])
        ]
        if missing and opts.monitors:
            if n in named:
                raise CheckError(_missing_message(n, where, missing))
            skipped.append(_missing_message(n, where, missing, explain=False))  # a child
        if not missing and not preempt and mon.definition.reads_preempt():
            if n in named:
                raise CheckError(_no_preempt_message(n, where))
            if opts.on_note is not None:
                opts.on_note(f"not run: {_no_preempt_message(n, where, explain=False)}")
            continue
        if not missing and (context or opts.monitors or not mon.definition.uses_context()):
            chosen.append(n)
    if skipped:
        if not chosen:
            raise CheckError("; ".join(skipped) + _bare_note(skipped))
        if opts.on_note is not None:
            skipped[-1] += _bare_note(skipped)  # said once, after the last
            for note in skipped:
                opts.on_note(f"not run: {note}")
    _note_unused_params(opts, [all_mons[n] for n in chosen])
    per_task = [n for n in chosen if all_mons[n].type is MonitorType.PER_TASK]
    slots = len(per_task)
    if slots > MAX_PER_TASK_SLOTS:
        raise CheckError(
            f"{where}: {slots} per-task monitors would run ({', '.join(per_task)}), more than "
            f"the {MAX_PER_TASK_SLOTS} per-task slots a kernel can have "
            "(CONFIG_RV_PER_TASK_MONITORS): choose them with -m"
        )
    rv = build_rv(
        defs, per_task_slots=min(8, max(2, slots)), hz=opts.hz, params=opts.params, only=only
    )
    if opts.setup_rv is not None:
        opts.setup_rv(rv)
    for n in chosen:
        _write(rv, "enabled_monitors", n)
        if opts.reactor is not None:
            _write(rv, f"monitors/{_path(rv, n)}/reactors", opts.reactor)
    return chosen, rv


def _plainly_named(requested: Sequence[str], defs: list[MonitorDef]) -> set[str] | None:
    """The monitors to build when every requested one is a monitor (not a container, not an
    unknown name) of the catalogue or of ``defs``; None (build all) otherwise, so that
    containers expand and errors list every monitor exactly as with the full registry."""
    if not requested:
        return None
    user = {d.name for d in defs}
    parents = set(CONTAINERS) | {d.container for d in defs if d.container is not None}
    names = set()
    for req in requested:
        name = req.split(":", 1)[-1]
        if name in parents or (name not in user and name not in KERNEL_ORDER):
            return None
        names.add(name)
    return names


def _param_base(name: str) -> str:
    """The parameter a per-entity form names (``dl_deadline_ns_4242`` -> ``dl_deadline_ns``)."""
    return name.rstrip("0123456789").removesuffix("_")


def _note_unused_params(opts: CheckOptions, chosen: list[DAMonitor]) -> None:
    """A parameter of a monitor that does not run here changes nothing: say so."""
    if not opts.params or opts.on_note is None:
        return
    used = {p for m in chosen for p in m.definition.params}
    if any(m.name == "nomiss" for m in chosen):
        used.add("deadline_thresh")
    for name in opts.params:
        if name not in used and _param_base(name) not in used:
            opts.on_note(
                f"--param {name}: no monitor run here ({', '.join(m.name for m in chosen)}) "
                "has it, so it changes nothing"
            )


#: CONFIG_RV_PER_TASK_MONITORS is at most 8 (kernel/trace/rv/Kconfig)
MAX_PER_TASK_SLOTS = 8
#: the HZ a kernel can be built with (include/linux/jiffies.h: "#error Invalid value of HZ")
HZ_MIN, HZ_MAX = 12, 12287


def _check_params(opts: CheckOptions, defs: list[MonitorDef]) -> None:
    """A parameter no monitor has, or a value that cannot be one, is a usage error: a typo
    must not quietly run the default."""
    if opts.hz is not None and not HZ_MIN <= opts.hz <= HZ_MAX:
        raise CheckError(
            f"--hz {opts.hz}: the kernel's HZ is a positive number from {HZ_MIN} to {HZ_MAX} "
            "(include/linux/jiffies.h refuses any other)"
        )
    if not opts.params:
        return
    known = {p for d in [*kernel_definitions().values(), *defs] for p in d.params}
    known.add("deadline_thresh")  # nomiss's, whose default (one tick) depends on --hz
    for name, value in opts.params.items():
        base = _param_base(name)
        if name not in known and (base == name or base not in known):
            raise CheckError(
                f"--param {name}: no monitor has this parameter (known: {', '.join(sorted(known))})"
            )
        if value < 0:
            raise CheckError(f"--param {name}={value}: parameters are not negative")


#: what a bare tracepoint is, said once however many monitors miss one
BARE_NOTE = (
    "bare tracepoints, which tracefs does not expose; a trace carries them only when a kprobe,"
    " BPF program or synthetic event re-emits them under these names"
)


def _bare_note(messages: list[str]) -> str:
    return f" ({BARE_NOTE})" if any("(bare)" in m for m in messages) else ""


def _missing_message(name: str, where: str, missing: list[str], explain: bool = True) -> str:
    """``explain``: say what a bare tracepoint is (once, where several messages are joined)."""
    bare = [tp for tp in missing if tp in BARE]
    listed = missing if explain else [f"{tp} (bare)" if tp in BARE else tp for tp in missing]
    text = f"monitor {name} needs events missing from {where}: {', '.join(listed)}"
    if bare and explain:
        text += f" ({', '.join(bare)}: {BARE_NOTE})"
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


def _no_preempt_message(name: str, where: str, explain: bool = True) -> str:
    """Why a monitor reading prev_state's '+' cannot run on this input."""
    text = (
        f"monitor {name} tells a preempted switch (prev_state R+) from a runnable one (R), "
        f"and {where} does not print the '+': trace-cmd report's default sched_switch plugin "
        "drops it"
    )
    if explain:
        text += " (verify the trace.dat itself, or its trace-cmd report -N or -R text)"
    return text


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
    """The runnable monitors (DA, HA, LTL): everything registered but the containers."""
    return [m for m in rv.monitors() if getattr(m, "definition", None) is not None]


def _enabled_monitor(rv: RV, name: str) -> DAMonitor:
    return next(m for m in _da_monitors(rv) if m.name == name)
