"""``pyrv mon``: the kernel's ``rv mon`` on the running kernel, without CONFIG_RV.

With ``-t`` every ``event_``/``error_`` record is printed in the ``rv`` tool's columns
(tools/verification/rv/src/in_kernel.c); pyrv's own events are left out unless ``-s``.
Gaps and the closing summary go to standard error, so standard output stays ``rv``-shaped.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

from pyrv.cli.options import BUFFER_KB, add_definition_option, duration
from pyrv.monitors.records import Record
from pyrv.sources.events import LostEvents


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser(
        "mon", help="run a monitor on the running kernel, like the kernel's `rv mon`"
    )
    p.add_argument("monitor", help="monitor, container:monitor, or container")
    p.add_argument("-r", "--reactor", help="reactor: nop, printk, panic")
    p.add_argument("-t", "--trace", action="store_true", help="print the monitor's events")
    p.add_argument("-s", "--self", action="store_true", help="with -t, also pyrv's own events")
    p.add_argument("--duration", type=duration, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--buffer-kb", type=BUFFER_KB, default=4096, help="per-CPU buffer (default 4096)"
    )
    p.add_argument("--kmsg", action="store_true", help="printk reactor also writes /dev/kmsg")
    add_definition_option(p)
    return p


class RvToolPrinter:
    """Prints records as ``rv mon -t`` does."""

    def __init__(self, out: TextIO, has_id: bool, container: bool, show_self: bool) -> None:
        self.out, self.has_id, self.container = out, has_id, container
        self.my_pid = 0 if show_self else os.getpid()

    def header(self) -> None:
        ident = f"{'ID':>8} " if self.has_id else ""
        bar = f"{' | ':>8} " if self.has_id else ""
        self.out.write(
            f"{'<TASK>':>16}-{'PID':<8} {'[CPU]':>5} {'TYPE':>5} {ident}"
            f"{'STATE':>24} x {'EVENT':<24} -> {'NEXT_STATE':<24} FINAL\n"
            f"{' | ':>16} {' | ':<8} {' | ':>5} {' | ':>5} {bar}"
            f"{' | ':>24}   {' | ':<24}    {' | ':<24} |\n"
        )
        self.out.flush()

    def record(self, rec: Record) -> None:
        ctx = rec.context
        if self.my_pid and (ctx.pid == self.my_pid or rec.id == self.my_pid):
            return
        kind = f"{rec.kind}_{rec.monitor}" if self.container else rec.kind
        ident = ""
        if self.has_id:
            ident = " " * 9 if rec.id is None else f"{rec.id:>8} "
        if rec.kind == "event":
            final = "Y" if rec.final else "N"
            line = (
                f"{ctx.comm:>16}-{ctx.pid:<8} [{ctx.cpu:03d}] {kind} {ident}"
                f"{rec.state:>24} x {rec.event:<24} -> {rec.next_state:<24} {final}\n"
            )
        else:
            line = f"{ctx.pid:>8} [{ctx.cpu:03d}] {kind} {ident}{rec.state:>24} x {rec.event}\n"
        self.out.write(line)
        self.out.flush()


def run(args: argparse.Namespace) -> int:
    from pyrv.api import CheckError
    from pyrv.live import LiveOptions, run_live
    from pyrv.models.automaton import ModelError
    from pyrv.monitors.catalogue import build_rv, load_monitor_definition
    from pyrv.monitors.hooks import DefinitionError
    from pyrv.monitors.reactors import RVPanic
    from pyrv.sources.errors import TraceError

    if os.geteuid() != 0:
        print("pyrv mon: needs root permission (tracefs)", file=sys.stderr)
        return 2
    name = args.monitor.split(":", 1)[-1]
    try:  # the user's definitions too: `-d mine.toml mine` names a monitor they define
        defs = [load_monitor_definition(d) for d in args.definition]
        probe = build_rv(defs, per_task_slots=8)
    except (ModelError, DefinitionError) as exc:
        print(f"pyrv mon: {exc}", file=sys.stderr)
        return 2
    mons = {m.name: m for m in probe.monitors()}
    if name not in mons:
        print(f"pyrv mon: monitor {args.monitor} does not exist", file=sys.stderr)
        return 2
    children = [m for m in probe.monitors() if m.parent is not None and m.parent.name == name]
    chosen = children or [mons[name]]
    has_id = any(
        getattr(m, "type", None) and m.type.value in ("per_task", "per_obj") for m in chosen
    )
    printer = RvToolPrinter(sys.stdout, has_id, bool(children), args.self)

    def gap(g: LostEvents) -> None:
        if g.pids is not None:  # a switch the kernel dropped silently: counted in the summary
            return
        cpu = "all CPUs" if g.cpu is None else f"cpu {g.cpu}"
        count = "an unknown number of" if g.count is None else str(g.count)
        print(
            f"pyrv mon: {cpu}: {count} events lost ({g.reason}); instances reset", file=sys.stderr
        )

    opts = LiveOptions(
        monitors=[args.monitor],
        definitions=defs,
        reactor=args.reactor,
        emit_events=args.trace,
        on_record=printer.record if args.trace else None,
        on_gap=gap,
        duration=args.duration,
        on_note=lambda note: print(f"pyrv mon: {note}", file=sys.stderr),
        buffer_kb=args.buffer_kb,
        setup_rv=(lambda rv: rv.set_printk_kmsg(True)) if args.kmsg else None,
    )
    if args.trace:
        printer.header()
    try:
        res = run_live(opts)
    except RVPanic as exc:
        print(f"pyrv: panic reactor: {str(exc).rstrip()}", file=sys.stderr)
        for note in getattr(exc, "__notes__", ()):
            print(f"pyrv: {note}", file=sys.stderr)
        return 3
    except (CheckError, TraceError, ModelError, DefinitionError) as exc:
        print(f"pyrv mon: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        raise
    except OSError as exc:
        print(f"pyrv mon: {exc}", file=sys.stderr)
        return 2
    resyncs = sum(g.pids is not None for g in res.gaps)
    lost = len(res.gaps) - resyncs
    for m in res.monitors:
        print(
            f"pyrv mon: {m.name}: {res.events_read} events read, {m.hooked_events} handled, "
            f"{m.transitions} transitions, {m.instances} instances, {m.violations} violations; "
            f"{lost} losses reported by the kernel, {resyncs} unrecorded switches resynced",
            file=sys.stderr,
        )
    return 1 if res.violations else 0
