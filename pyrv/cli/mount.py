"""``pyrv mount DIR`` and ``pyrv umount DIR``: the kernel's rv/ interface as a FUSE filesystem.

:func:`add_parsers` adds both subcommands to the ``pyrv`` parser (pyrv/cli/main.py). See
docs/rvfs.md for the tree, the modes, the one-mount-per-directory policy and cleanup.
"""

from __future__ import annotations

import argparse
import grp
import os
import sys
from collections.abc import Callable

from pyrv.cli.options import int_range, wait_seconds

EXIT_OK, EXIT_ERROR = 0, 2


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``mount`` and ``umount`` on the ``pyrv`` subparsers."""
    m = sub.add_parser(
        "mount",
        help="serve the kernel's rv/ control interface on DIR (FUSE)",
        description="Mount pyrv's RV on DIR: the files of the kernel's tracefs rv/ directory, "
        "with the kernel's bytes, write semantics and errnos (docs/rvfs.md). Runs as a "
        "daemon until `pyrv umount DIR`, SIGTERM or SIGINT.",
    )
    m.add_argument("dir", metavar="DIR", help="an existing directory to mount on")
    m.add_argument(
        "-f", "--foreground", action="store_true", help="stay in the foreground (Ctrl-C stops)"
    )
    m.add_argument(
        "-m",
        "--monitors",
        metavar="LIST",
        help="comma-separated monitors to register (a container brings its children), "
        "e.g. wip,wwnr for a 6.12 kernel's set; default: every monitor pyrv has",
    )
    m.add_argument(
        "--compat",
        choices=["newest", "6.12"],
        default="newest",
        help="kernel behaviour: 6.12 has 1 per-task slot and no E/D in kstrtobool "
        "(default: newest, 2 slots)",
    )
    m.add_argument(
        "--per-task-slots",
        type=int_range(1, 8, "CONFIG_RV_PER_TASK_MONITORS"),
        metavar="N",
        help="CONFIG_RV_PER_TASK_MONITORS, 1..8 (overrides --compat)",
    )
    m.add_argument(
        "--allow-other",
        action="store_true",
        help="let other users reach the mount (FUSE allow_other); modes still apply, so "
        "they also need --gid to read",
    )
    m.add_argument(
        "--gid",
        metavar="GROUP",
        help="group owning the tree (name or number): its members may read, as with "
        "tracefs' gid= mount option",
    )
    m.add_argument(
        "--kmsg",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the printk reactor writes the kernel log (/dev/kmsg), as the kernel's does, so "
        "dmesg shows its reactions (the default; --kmsg is accepted for compatibility); "
        "--no-kmsg: only the daemon's stderr (the terminal with --foreground)",
    )
    m.add_argument("--no-verdicts", action="store_true", help="do not add the pyrv_verdicts file")
    m.add_argument(
        "--no-live",
        action="store_true",
        help="do not drive the monitors from the running kernel (files only)",
    )
    m.add_argument("--debug", action="store_true", help="libfuse's debug output (foreground)")
    m.set_defaults(run=_cmd_mount)

    u = sub.add_parser(
        "umount",
        help="stop a pyrv mount: disable everything and unmount",
        description="Stop the pyrv daemon serving DIR (it disables every monitor, runs its "
        "clean-up and unmounts), or remove a stale mount left by a killed daemon.",
    )
    u.add_argument("dir", metavar="DIR")
    u.add_argument(
        "--timeout",
        type=wait_seconds,
        default=10.0,
        help="seconds to wait for the daemon (default 10)",
    )
    u.set_defaults(run=_cmd_umount)


def _gid(value: str | None) -> int | None:
    if value is None:
        return None
    if value.isdigit():
        return int(value)
    try:
        return grp.getgrnam(value).gr_gid
    except KeyError:
        raise ValueError(f"no group named {value!r}") from None


def _cmd_mount(args: argparse.Namespace) -> int:
    from pyrv.fs.mount import MountError, build_rv, daemonize, fuse_unavailable_reason, serve

    def fail(message: str) -> int:
        print(f"pyrv mount: {message}", file=sys.stderr)
        return EXIT_ERROR

    reason = fuse_unavailable_reason()
    if reason is not None:
        return fail(reason)
    monitors = None
    if args.monitors is not None:
        monitors = [m.strip() for m in args.monitors.split(",") if m.strip()]
    mountpoint = os.path.abspath(args.dir)  # the daemon changes to / before mounting
    slots = args.per_task_slots
    if slots is None:
        slots = 1 if args.compat == "6.12" else 2
    try:
        gid = _gid(args.gid)
        # build once here, so bad options fail before forking
        build_rv(monitors, slots, args.compat != "6.12")
    except ValueError as exc:
        return fail(str(exc))
    kmsg = args.kmsg and _kmsg_writable()
    for name in remove_stale_instances():
        print(f"pyrv mount: removed {name}, the tracefs instance of a killed pyrv", file=sys.stderr)

    def run(ready: Callable[[], None] | None) -> None:
        rv = build_rv(monitors, slots, args.compat != "6.12", kmsg=kmsg)
        live = None if args.no_live else _LiveCoupling(rv)
        serve(
            rv,
            mountpoint,
            allow_other=args.allow_other,
            gid=gid,
            verdicts=not args.no_verdicts,
            debug=args.debug,
            ready=ready,
            on_start=live.start if live else None,
            on_stop=live.stop if live else None,
        )

    if args.foreground or args.debug:
        try:
            run(None)
        except MountError as exc:
            return fail(str(exc))
        return EXIT_OK
    return daemonize(run)


def _kmsg_writable() -> bool:
    """Can the printk reactor write the kernel log? If not (not root), say so once, here,
    where it is seen: the daemon's own stderr goes nowhere."""
    from pyrv.monitors.reactors import KMSG_PATH

    if os.access(KMSG_PATH, os.W_OK):
        return True
    print(
        f"pyrv mount: {KMSG_PATH} is not writable: the printk reactor's messages will not "
        "reach the kernel log (--no-kmsg silences this)",
        file=sys.stderr,
    )
    return False


def remove_stale_instances() -> list[str]:
    """Remove the tracefs instances of pyrvs killed with SIGKILL (a mount daemon's keeps
    recording into 4 MiB per CPU until someone does); their names. Only where tracefs is
    mounted: it is never mounted for this (one pyrv mounts for the live engine, whose
    shared-mount logic removes them then)."""
    from pyrv.sources.tracefs import Tracefs, find_tracefs

    where = find_tracefs()
    if where is None:
        return []
    try:
        return Tracefs(where).remove_stale_instances()
    except OSError:  # tracefs not readable here (not root): nothing pyrv could remove
        return []


class _LiveCoupling:
    """The running kernel behind the files: enabling a monitor instruments it in pyrv's own
    tracefs instance; its verdicts go to the reactors and to ``pyrv_verdicts``."""

    def __init__(self, rv: object) -> None:
        self.rv = rv
        self.engine: object | None = None

    def start(self, fs: object) -> None:
        from pyrv.live import LiveEngine
        from pyrv.sources.tracefs import Tracefs

        def verdict(rec: object) -> None:
            fs.add_verdict_line(rec.trace_line())  # type: ignore[attr-defined]

        def gap(g: object) -> None:
            if getattr(g, "pids", None) is None:  # reported losses; silent resyncs are routine
                fs.add_verdict_line(f"# lost events: {g.reason}")  # type: ignore[attr-defined]

        try:
            with Tracefs() as tracefs:
                for name, missing in LiveEngine.inert(self.rv, tracefs).items():  # type: ignore[arg-type]
                    fs.add_verdict_line(  # type: ignore[attr-defined]
                        f"# {name}: not driven, this kernel lacks {', '.join(missing)}"
                    )
        except OSError as exc:
            fs.add_verdict_line(f"# live monitoring unavailable: {exc}")  # type: ignore[attr-defined]
            return
        engine = LiveEngine(self.rv, on_record=verdict, on_gap=gap)  # type: ignore[arg-type]
        engine.start()
        self.engine = engine

    def stop(self, fs: object) -> None:
        if self.engine is not None:
            self.engine.stop()  # type: ignore[attr-defined]


def _cmd_umount(args: argparse.Namespace) -> int:
    from pyrv.fs.mount import MountError, umount

    try:
        umount(args.dir, timeout=args.timeout)
    except MountError as exc:
        print(f"pyrv umount: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """``python -m pyrv.cli.mount mount|umount ...``: the two subcommands on their own."""
    parser = argparse.ArgumentParser(prog="pyrv")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
