"""``pyrv record``: the running kernel's events into a trace.dat that trace-cmd and
``pyrv check`` read.

The events are those the named monitors hook (``-m``) and those named (``-e system:event``),
captured from pyrv's own tracefs instance. Ctrl-C or SIGTERM stop the recording; the file is
still written. The summary goes to standard error.
"""

from __future__ import annotations

import argparse
import os
import sys

from pyrv.cli.options import BUFFER_KB, add_definition_option, duration


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p = sub.add_parser(
        "record",
        help="record the running kernel's events into a trace.dat (trace-cmd's format)",
    )
    p.add_argument("-o", "--output", required=True, metavar="FILE.dat", help="file to write")
    p.add_argument(
        "-m",
        "--monitor",
        action="append",
        default=[],
        metavar="MONITOR",
        help="record the events this monitor hooks (repeatable; a container: its monitors')",
    )
    p.add_argument(
        "-e",
        "--event",
        action="append",
        default=[],
        metavar="EVENT",
        help="record this event, system:event (repeatable)",
    )
    p.add_argument("--duration", type=duration, metavar="S", help="stop after S seconds")
    p.add_argument(
        "--buffer-kb", type=BUFFER_KB, default=4096, help="per-CPU buffer (default 4096)"
    )
    p.add_argument("--clock", help="trace clock (default: the kernel's default, local)")
    p.add_argument(
        "--file-version",
        type=int,
        choices=(6, 7),
        default=6,
        help="trace.dat version (default 6)",
    )
    p.add_argument(
        "--compression",
        choices=("none", "zlib", "zstd"),
        default="none",
        help="compression of a version 7 file (default none)",
    )
    add_definition_option(p)
    return p


def run(args: argparse.Namespace) -> int:
    from pyrv.models.automaton import ModelError
    from pyrv.monitors.hooks import DefinitionError
    from pyrv.record import RecordError, RecordOptions, record
    from pyrv.sources.tracedat_writer import TraceDatWriteError

    if not args.monitor and not args.event:
        print("pyrv record: name a monitor (-m) or an event (-e) to record", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("pyrv record: needs root permission (tracefs)", file=sys.stderr)
        return 2
    opts = RecordOptions(
        output=args.output,
        monitors=args.monitor,
        events=args.event,
        definitions=args.definition,
        duration=args.duration,
        buffer_kb=args.buffer_kb,
        clock=args.clock,
        version=args.file_version,
        compression=args.compression,
    )

    def started(inst: object) -> None:
        if args.duration is None:
            print("pyrv record: recording; Ctrl-C stops", file=sys.stderr, flush=True)

    try:
        res = record(opts, on_start=started)
    except (RecordError, ModelError, DefinitionError, TraceDatWriteError) as exc:
        print(f"pyrv record: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"pyrv record: {exc}", file=sys.stderr)
        return 2
    for warning in res.warnings:
        print(f"pyrv record: warning: {warning}", file=sys.stderr)
    for gap in res.lost:
        count = "an unknown number of" if gap.count is None else str(gap.count)
        print(
            f"pyrv record: cpu {gap.cpu}: {count} events lost (the buffer was overwritten "
            "before they were read; the file says so where it happened)",
            file=sys.stderr,
        )
    dropped = res.stat_total("dropped events")
    if dropped:
        print(f"pyrv record: {dropped} events dropped by the kernel", file=sys.stderr)
    kind = f"v{args.file_version}" + (f", {args.compression}" if args.compression != "none" else "")
    print(
        f"pyrv record: {res.events} events ({', '.join(res.tracepoints)}) from {res.cpus} CPUs"
        f" in {res.seconds:.1f} s written to {res.path} (trace.dat {kind},"
        f" {res.file_size} bytes)",
        file=sys.stderr,
    )
    return 0
