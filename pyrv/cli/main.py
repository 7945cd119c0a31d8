"""The ``pyrv`` command: ``check`` verifies traces, ``list`` shows monitors like ``rv list``.

Exit status: 0 no violation, 1 violations found, 2 usage or input error, 3 the panic reactor
fired (the run stops at the first reaction, as the kernel would).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from pyrv.cli import EXIT_INTERRUPTED
from pyrv.cli import mon as mon_command
from pyrv.cli import mount as mount_command
from pyrv.cli import record as record_command
from pyrv.cli.options import add_definition_option, integer, trace_time_ns

if TYPE_CHECKING:
    from pyrv.api import CheckResult
    from pyrv.monitors.monitor import Monitor
    from pyrv.monitors.records import Record
    from pyrv.monitors.registry import RV
    from pyrv.sources.events import LostEvents

EXIT_OK, EXIT_VIOLATIONS, EXIT_ERROR, EXIT_PANIC = 0, 1, 2, 3


def bundled_trace() -> Path:
    """The real trace shipped with the package (see pyrv/data/README.md)."""
    return Path(str(resources.files("pyrv") / "data" / "sched_trace.txt"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.whole_process = argv is None  # the command line's own run, not a caller's
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return int(args.run(args))
    except BrokenPipeError:  # the reader of our output went away (`| head`): not an error
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyrv", description="Linux kernel Runtime Verification monitors in user space."
    )
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("check", help="verify recorded traces with the kernel's monitors")
    c.add_argument(
        "traces",
        nargs="*",
        metavar="TRACE",
        help="ftrace text (trace, trace_pipe, per-CPU), trace-cmd report text, a trace.dat, or"
        " a directory of raw ring-buffer pages, recognised by content; .gz/.xz/.bz2/.zst are"
        " read transparently; default: the bundled real trace",
    )
    c.add_argument(
        "-m",
        "--monitor",
        action="append",
        default=[],
        metavar="MONITOR",
        help="monitor to run (repeatable; a container runs its children); default: "
        "every monitor whose events the trace has",
    )
    add_definition_option(
        c,
        "a monitor definition (model + hook table, docs/monitor-definitions.md); "
        "replaces a built-in monitor of the same name",
    )
    c.add_argument(
        "-r",
        "--reactor",
        metavar="REACTOR",
        help="reactor for the chosen monitors: nop, printk, panic",
    )
    c.add_argument(
        "--kmsg",
        action="store_true",
        help="the printk reactor also writes to the kernel log (/dev/kmsg)",
    )
    c.add_argument("--events", action="store_true", help="print every event_<monitor> transition")
    c.add_argument("--json", action="store_true", help="one JSON object per line")
    c.add_argument(
        "--skip-bad-lines",
        action="store_true",
        help="skip lines that do not parse (counted and reported) instead of failing",
    )
    c.add_argument(
        "--formats",
        metavar="DIR",
        help="event format files, to decode traces written with the raw/hex options",
    )
    c.add_argument(
        "--start",
        metavar="SECONDS",
        type=trace_time_ns,
        help="enable the monitors at this trace time (seconds, as printed)",
    )
    c.add_argument(
        "--start-marker",
        metavar="TEXT",
        help="enable the monitors at the first trace_marker write containing TEXT",
    )
    c.add_argument(
        "--param",
        action="append",
        default=[],
        type=_param,
        metavar="NAME=VALUE",
        help="a monitor parameter, e.g. threshold_jiffies=250 for stall",
    )
    c.add_argument(
        "--hz",
        type=integer,
        metavar="HZ",
        help="the traced kernel's HZ, for monitors whose clocks count jiffies (default 250)",
    )
    c.add_argument(
        "--engine",
        choices=["auto", "fast", "reference"],
        default="auto",
        help="auto: the compiled columnar engine where it applies (binary traces, DA "
        "monitors), else the per-event reference engine",
    )
    c.add_argument(
        "--partial",
        action="store_true",
        help="a truncated or corrupt trace.dat or raw-pages directory: verify what was read "
        "before the damage (nothing after the point where a CPU's data ends is judged)",
    )
    c.add_argument(
        "--merge",
        action="store_true",
        help="the TRACE files are one trace split by CPU (per_cpu/cpuN/trace): merge them in "
        "time order instead of verifying each on its own",
    )
    c.add_argument(
        "--no-resync",
        action="store_true",
        help="do not detect sched_switch records lost without a marker",
    )
    c.set_defaults(run=_cmd_check)
    mon_command.add_parser(sub).set_defaults(run=mon_command.run)
    record_command.add_parser(sub).set_defaults(run=record_command.run)
    ls = sub.add_parser("list", help="list monitors like the kernel's `rv list`")
    ls.add_argument("container", nargs="?", help="only the monitors of this container")
    add_definition_option(ls, "also list the monitor defined in FILE")
    ls.add_argument(
        "--events",
        metavar="TRACE|kernel",
        help="after each monitor, say whether TRACE (or the running kernel) has its events",
    )
    ls.set_defaults(run=_cmd_list)
    mount_command.add_parsers(sub)  # mount, umount (pyrv/cli/mount.py)
    return p


class _Printer:
    """Writes records, gaps and summaries as text or JSON lines."""

    def __init__(self, out: TextIO, as_json: bool) -> None:
        self.out, self.as_json = out, as_json

    def record(self, rec: Record) -> None:
        if self.as_json:
            self._json(rec.as_json())
        else:
            self.out.write(rec.trace_line() + "\n")

    def gap(self, gap: LostEvents) -> None:
        where = f"{gap.source}:{gap.line}" if gap.line else gap.source
        if not gap.line and gap.ts == 0:
            where += ", from the start"
        elif not gap.line and gap.ts is not None:
            # Binary input has no line to point at: the time says where the stream breaks.
            edge = "after" if gap.until_end else "before"
            where += f", {edge} {gap.ts // 1_000_000_000}.{gap.ts % 1_000_000_000:09d}"
        cpu = "all CPUs" if gap.cpu is None else f"cpu {gap.cpu}"
        count = "unknown number of" if gap.count is None else str(gap.count)
        if self.as_json:
            self._json(
                {
                    "type": "gap",
                    "cpu": gap.cpu,
                    "count": gap.count,
                    "ts": gap.ts,
                    "reason": gap.reason,
                    "pids": gap.pids,
                    "where": where,
                }
            )
        else:
            self.out.write(
                f"# gap at {where}: {cpu}: {count} events lost ({gap.reason}); "
                "affected instances reset\n"
            )

    def summary(self, res: CheckResult) -> None:
        if self.as_json:
            self._json(
                {
                    "type": "summary",
                    "trace": res.source,
                    "events": res.events_read,
                    "gaps": len(res.gaps),
                    "skipped_lines": len(res.skipped_lines),
                    "dropped_incomplete": res.dropped_incomplete,
                    "incomplete_from": res.incomplete_from,
                    "interrupted": res.interrupted,
                    "monitors": [vars(m) for m in res.monitors],
                }
            )
            return
        w = self.out.write
        w(f"== {res.source}: {res.events_read} events, {len(res.gaps)} gaps")
        if res.stopped_at:
            w(f", reading stopped at {res.stopped_at}")
        if res.incomplete_stamp is not None:
            cpu = next((f"CPU {g.cpu}'s" for g in res.gaps if g.until_end), "a CPU's")
            w(
                f", nothing judged ({cpu} data is missing)"
                if not res.incomplete_from
                else f", nothing judged after {res.incomplete_stamp} ({cpu} data ends there)"
            )
        if res.skipped_lines:
            w(f", {len(res.skipped_lines)} bad lines skipped")
        if res.dropped_incomplete:
            w(f", {res.dropped_incomplete} events before the complete part dropped")
        w("\n")
        for line, reason in res.skipped_lines[:10]:
            w(f"#   skipped line {line}: {reason}\n")
        if not res.monitors:
            w("   no monitor has its events in this trace\n")
        for m in res.monitors:
            w(
                f"   {m.name:<8} {m.type:<8} {m.hooked_events:>9} events handled  "
                f"{m.transitions:>9} transitions  {m.instances:>6} instances  "
                f"{m.violations:>5} violations\n"
            )

    def error(self, message: str) -> None:
        self._json({"type": "error_input", "message": message})

    def _json(self, obj: object) -> None:
        self.out.write(json.dumps(obj, sort_keys=True) + "\n")


#: module parameters are unsigned longs (64-bit kernels)
_PARAM_MAX = 2**64 - 1


def _param(item: str) -> tuple[str, int]:
    """``NAME=INTEGER``; a malformed one is a usage error (exit 2), as argparse's own are."""
    name, sep, value = item.partition("=")
    if not sep or not name or not re.fullmatch(r"-?[0-9]+", value):
        raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=INTEGER")
    if int(value) > _PARAM_MAX:
        raise argparse.ArgumentTypeError(f"{item!r}: larger than an unsigned long (2^64-1)")
    return name, int(value)


def _params(items: list[tuple[str, int]]) -> dict[str, int]:
    return dict(items)


@contextlib.contextmanager
def _start_up(whole_process: bool) -> Iterator[None]:
    """Imports make many objects and no garbage: the cyclic collector, which would walk them
    again and again meanwhile, waits until they are done. In a process of its own, what they
    made lives until exit: it is frozen out of every later collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if whole_process:
            gc.freeze()
        if enabled:
            gc.enable()


def _cmd_check(args: argparse.Namespace) -> int:
    cancel = threading.Event()
    with _first_interrupt_stops(cancel):
        return _check(args, cancel)


@contextlib.contextmanager
def _first_interrupt_stops(cancel: threading.Event) -> Iterator[None]:
    """A first Ctrl-C sets ``cancel`` (the run stops before its next event and says what it
    judged); a second one interrupts at once. Only the main thread can set handlers."""
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # e.g. under nohup
        yield
        return

    def first(_signum: int, _frame: object) -> None:
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _check(args: argparse.Namespace, cancel: threading.Event) -> int:
    with _start_up(getattr(args, "whole_process", False)):
        from pyrv.api import CheckError, CheckOptions, check
        from pyrv.models.automaton import ModelError
        from pyrv.monitors.hooks import DefinitionError
        from pyrv.monitors.reactors import RVPanic
        from pyrv.sources.errors import TraceError

        if args.engine != "reference":  # what check() would import for a binary trace
            with contextlib.suppress(ImportError):
                import pyrv.fast.engine  # noqa: F401
    out = _Printer(sys.stdout, args.json)
    traces = args.traces or [str(bundled_trace())]
    violations = 0
    for trace in [traces] if args.merge else traces:
        opts = CheckOptions(
            monitors=args.monitor,
            definitions=args.definition,
            reactor=args.reactor,
            emit_events=args.events,
            skip_bad_lines=args.skip_bad_lines,
            formats_dir=args.formats,
            start_ts=args.start,
            start_marker=args.start_marker,
            detect_silent_loss=not args.no_resync,
            partial=args.partial,
            on_note=lambda note: print(f"pyrv check: {note}", file=sys.stderr),
            engine=args.engine,
            params=_params(args.param),
            hz=args.hz,
            on_record=out.record,
            on_gap=out.gap,
            setup_rv=(lambda rv: rv.set_printk_kmsg(True)) if args.kmsg else None,
            cancel=cancel,
        )
        try:
            res = check(trace, opts)
        except RVPanic as exc:
            sys.stdout.flush()
            print(f"pyrv: panic reactor: {str(exc).rstrip()}", file=sys.stderr)
            for note in getattr(exc, "__notes__", ()):
                print(f"pyrv: {note}", file=sys.stderr)
            return EXIT_PANIC
        except (CheckError, TraceError, ModelError, DefinitionError) as exc:
            sys.stdout.flush()
            print(f"pyrv check: {exc}", file=sys.stderr)
            if args.json:
                out.error(str(exc))
            return EXIT_ERROR
        except BrokenPipeError:
            raise
        except OSError as exc:
            print(f"pyrv check: {trace}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
        out.summary(res)
        violations += res.violations
        if res.interrupted:
            sys.stdout.flush()
            at = f" after the event at {res.interrupted_at}" if res.interrupted_at else ""
            print(f"pyrv check: interrupted{at}: the summary covers what was read", file=sys.stderr)
            return EXIT_INTERRUPTED
    return EXIT_VIOLATIONS if violations else EXIT_OK


def _cmd_list(args: argparse.Namespace) -> int:
    """``rv list`` layout: name in 32 columns, description, [ON]/[OFF]; children indented."""
    from pyrv.models.automaton import ModelError
    from pyrv.monitors.catalogue import build_rv, load_monitor_definition
    from pyrv.monitors.hooks import DefinitionError
    from pyrv.sources.errors import TraceError

    try:
        defs = [load_monitor_definition(d) for d in args.definition]
    except (ModelError, DefinitionError) as exc:
        print(f"pyrv list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        rv = build_rv(defs, per_task_slots=8)
    except DefinitionError as exc:  # a monitor the registry refuses (rv_register_monitor's errno)
        print(f"pyrv list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        provides = _event_source(args.events) if args.events else None
    except (OSError, TraceError) as exc:
        print(f"pyrv list: {exc}", file=sys.stderr)
        return EXIT_ERROR
    shown = 0
    for mon in rv.monitors():
        parent = mon.parent.name if mon.parent is not None else None
        state = "[ON]" if mon.enabled else "[OFF]"
        desc = _desc_line(rv, mon)
        if provides is not None:
            state += _events_note(mon, provides)
        if args.container:
            if parent != args.container:
                continue
            print(f"{mon.name:<32} {desc} {state}")
        elif parent is not None:
            print(f" - {mon.name:<29} {desc} {state}")
        else:
            print(f"{mon.name:<32} {desc} {state}")
        shown += 1
    if not shown:
        where = f" in container {args.container}" if args.container else ""
        print(f"-- No monitor found{where} --")
    return EXIT_OK


def _desc_line(rv: RV, mon: Monitor) -> str:
    """What ``rv list`` shows of a description: the monitor's ``desc`` file (the kernel's
    256-byte buffer cuts a long one to 255 characters) up to its first newline."""
    path = f"{mon.parent.name}/{mon.name}" if mon.parent is not None else mon.name
    text = rv.read(f"monitors/{path}/desc").split(b"\0", 1)[0]
    return text.decode(errors="replace").split("\n", 1)[0]


def _event_source(where: str):  # noqa: ANN202 - a predicate over event names
    """Which events an input provides: the running kernel's tracefs, or a trace's content."""
    if where == "kernel":
        from pyrv.sources.tracefs import Tracefs, sigterm_as_interrupt

        # mounted for the look-up if nobody had, and unmounted after (SIGTERM too)
        with sigterm_as_interrupt(), Tracefs() as fs:
            assert fs.path is not None
            names = {p.parent.name for p in (fs.path / "events").glob("*/*/format")}
        return names.__contains__
    from pyrv.api import CheckOptions, _presence
    from pyrv.sources.detect import open_trace
    from pyrv.sources.events import TraceEvent
    from pyrv.sources.ftrace_text import TextTraceReader

    reader, items = open_trace(where)
    declared = _presence([where], [reader], CheckOptions())
    if isinstance(reader, TextTraceReader):
        return declared  # a byte scan of the text found the events themselves
    # a binary trace carries the formats of more events than were recorded: read it once
    occurred: set[str] = set()
    scanned = False

    def present(name: str) -> bool:
        nonlocal scanned
        if not declared(name):
            return False
        if not scanned:
            occurred.update(e.name for e in items if isinstance(e, TraceEvent))
            scanned = True
        return name in occurred

    return present


def _events_note(mon: object, present) -> str:  # noqa: ANN001
    """`` [events: yes]`` or the missing ones, bare tracepoints marked as such."""
    defn = getattr(mon, "definition", None)
    if defn is None:
        return ""
    from pyrv.sources.tracepoints import BARE

    missing = [tp for tp in defn.required_tracepoints() if not present(tp.split(":", 1)[-1])]
    if not missing:
        return " [events: yes]"
    named = [f"{tp} (bare)" if tp in BARE else tp for tp in missing]
    return f" [events missing: {', '.join(named)}]"
