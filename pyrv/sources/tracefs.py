"""The running kernel's tracefs: pyrv's own trace instance, and leaving the system as found.

pyrv never traces in the top-level buffer or in anyone else's instance. It mounts tracefs if
nobody has, creates ``instances/pyrv-<pid>``, enables only the events it needs there, and on
exit (normal, error, Ctrl-C, SIGTERM) disables them, removes the instance and unmounts what it
mounted. An instance left by a pyrv that was killed with SIGKILL (its pid no longer runs pyrv)
is found and removed by the next run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

PREFIX = "pyrv-"
_SELF_FEEDING = frozenset({"raw_syscalls", "syscalls"})
DEFAULT_MOUNT = Path("/sys/kernel/tracing")


class TracefsError(OSError):
    """tracefs cannot be used: not mountable, not permitted, or an event is missing."""


def find_tracefs(mounts: str = "/proc/mounts") -> Path | None:
    """Where tracefs is mounted now, if anywhere."""
    try:
        text = Path(mounts).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            return Path(parts[1].replace("\\040", " "))
    return None


class Tracefs:
    """A tracefs mount, mounted by us only when needed and then unmounted by us."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.mounted_by_us = False

    def __enter__(self) -> Tracefs:
        if self.path is None:
            self.path = find_tracefs()
        if self.path is None:
            self._mount(DEFAULT_MOUNT)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mount(self, where: Path) -> None:
        if not where.is_dir():
            raise TracefsError(errno.ENOENT, f"{where}: no such directory to mount tracefs on")
        res = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", str(where)], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise TracefsError(
                errno.EPERM, f"cannot mount tracefs on {where}: {res.stderr.strip()}"
            )
        self.path, self.mounted_by_us = where, True

    def close(self) -> None:
        if self.mounted_by_us and self.path is not None:
            subprocess.run(["umount", str(self.path)], capture_output=True)
            self.mounted_by_us = False

    def has_event(self, tracepoint: str) -> bool:
        system, _, name = tracepoint.partition(":")
        assert self.path is not None
        return (self.path / "events" / system / name / "format").is_file()

    def missing_events(self, tracepoints: Iterable[str]) -> list[str]:
        return [tp for tp in tracepoints if not self.has_event(tp)]

    def remove_stale_instances(self) -> list[str]:
        """Remove instances of pyrv processes that no longer exist (killed with SIGKILL)."""
        assert self.path is not None
        removed = []
        for inst in sorted((self.path / "instances").glob(PREFIX + "*")):
            pid_text = inst.name[len(PREFIX) :].split("-", 1)[0]
            if pid_text.isdigit() and not _is_pyrv(int(pid_text)):
                with contextlib.suppress(OSError):
                    _disable_all(inst)
                    inst.rmdir()
                    removed.append(inst.name)
        return removed


def _is_pyrv(pid: int) -> bool:
    """Is ``pid`` a live pyrv process? (A recycled pid running something else is not.)"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pyrv" in cmdline


def _disable_all(inst: Path) -> None:
    with contextlib.suppress(OSError):
        (inst / "tracing_on").write_text("0")
    with contextlib.suppress(OSError):
        (inst / "events" / "enable").write_text("0")


class TraceInstance:
    """``instances/pyrv-<pid>[-tag]``: created on enter, emptied and removed on exit."""

    def __init__(
        self,
        tracefs: Tracefs,
        events: Iterable[str],
        buffer_kb: int = 4096,
        tag: str = "",
        clock: str | None = None,
    ) -> None:
        assert tracefs.path is not None, "enter the Tracefs first"
        self.tracefs = tracefs
        self.events = list(events)
        self.buffer_kb = buffer_kb
        self.clock = clock
        self.name = f"{PREFIX}{os.getpid()}" + (f"-{tag}" if tag else "")
        self.path = tracefs.path / "instances" / self.name

    def __enter__(self) -> TraceInstance:
        missing = self.tracefs.missing_events(self.events)
        if missing:
            raise TracefsError(errno.ENOENT, f"this kernel has no trace event {', '.join(missing)}")
        self.tracefs.remove_stale_instances()
        try:
            self.path.mkdir()
        except FileExistsError:  # our own pid from an earlier run in this process
            _disable_all(self.path)
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _setup(self) -> None:
        (self.path / "tracing_on").write_text("0")
        (self.path / "buffer_size_kb").write_text(str(self.buffer_kb))
        if self.clock is not None:
            (self.path / "trace_clock").write_text(self.clock)
        for tp in self.events:
            system, _, name = tp.partition(":")
            event_dir = self.path / "events" / system / name
            if system in _SELF_FEEDING:
                # pyrv's own reads of trace_pipe_raw are system calls: traced, they would
                # feed the trace they are reading, faster than it can be read
                (event_dir / "filter").write_text(f"common_pid != {os.getpid()}")
            (event_dir / "enable").write_text("1")
        (self.path / "tracing_on").write_text("1")

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.path.exists():
            return
        _disable_all(self.path)
        for _ in range(50):  # rmdir fails with EBUSY while a reader still holds a pipe open
            try:
                self.path.rmdir()
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                import time

                time.sleep(0.02)

    def cpus(self) -> list[int]:
        return sorted(int(p.name[3:]) for p in (self.path / "per_cpu").glob("cpu*"))

    def file(self, relative: str) -> Path:
        return self.path / relative


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP) into KeyboardInterrupt, so every ``with`` cleans up."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
