"""The running kernel's tracefs: pyrv's own trace instance, and leaving the system as found.

pyrv never traces in the top-level buffer or in anyone else's instance. It mounts tracefs if
nobody has, creates ``instances/pyrv-<pid>``, enables only the events it needs there, and on
exit (normal, error, Ctrl-C, SIGTERM) disables them, removes the instance and unmounts what it
mounted. An instance left by a pyrv that was killed with SIGKILL (its pid no longer runs, or
runs a process started after the instance was made) is found and removed by the next run.

A mount made by pyrv is shared by every pyrv of the mount namespace, so the one that mounted
it must not unmount it under another (that would fail with EBUSY, leaving it mounted for good,
or pull it away between two opens). pyrv's mounts are named ``pyrv`` (the source field of
/proc/mounts), each pyrv using one holds a shared ``flock`` on a file of the namespace under
/run/pyrv, and the last one to leave unmounts it. A mount whose pyrvs were all killed is
unmounted by the next pyrv that leaves it, or by :func:`release_abandoned_mount`. The kernel
drops the locks of a killed process, so no pid has to be trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import signal
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType

PREFIX = "pyrv-"
_SELF_FEEDING = frozenset({"raw_syscalls", "syscalls"})
DEFAULT_MOUNT = Path("/sys/kernel/tracing")
#: the source field of the mounts pyrv makes: how a later pyrv knows one is pyrv's to unmount
MOUNT_SOURCE = "pyrv"
STATE_DIR = Path("/run/pyrv")


class TracefsError(OSError):
    """tracefs cannot be used: not mountable, not permitted, or an event is missing."""


def find_tracefs(mounts: str = "/proc/mounts") -> Path | None:
    """Where tracefs is mounted now, if anywhere."""
    found = _tracefs_mount(mounts)
    return None if found is None else found[0]


def _tracefs_mount(mounts: str = "/proc/mounts") -> tuple[Path, str] | None:
    """The first tracefs mountpoint and the source of its visible (last stacked) mount."""
    try:
        text = Path(mounts).read_text()
    except OSError:
        return None
    first: Path | None = None
    source = ""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "tracefs":
            where = Path(parts[1].replace("\\040", " "))
            if first is None:
                first = where
            if where == first:
                source = parts[0]
    return None if first is None else (first, source)


def _lock_file(kind: str) -> Path:
    """``/run/pyrv/tracefs-<kind>-<mount namespace>``: one per namespace, as mounts are."""
    ns = os.stat("/proc/self/ns/mnt").st_ino
    base = STATE_DIR if os.geteuid() == 0 else Path(f"/tmp/pyrv-{os.geteuid()}")
    base.mkdir(mode=0o700, parents=True, exist_ok=True)  # as pyrv.fs.mount's owner records
    return base / f"tracefs-{kind}-{ns}"


def _open_locked(path: Path, operation: int) -> int:
    """An fd of ``path`` holding ``operation``'s flock, on the file now at ``path`` (a
    holder may unlink it after its last unmount: a lock on the unlinked file is no lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, operation)
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


@contextlib.contextmanager
def _mount_mutex() -> Iterator[None]:
    """Mounting, joining, leaving and unmounting, one pyrv of the namespace at a time."""
    fd = _open_locked(_lock_file("mutex"), fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)


def _unmount_if_unused(where: Path) -> bool:
    """Under the mutex: unmount pyrv's mount at ``where`` if no pyrv uses it any more."""
    found = _tracefs_mount()
    if found is None or found != (where, MOUNT_SOURCE):
        return False
    users = _lock_file("users")
    fd = _open_locked(users, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: still used
    try:
        # instances outlive the mount, out of sight: those of killed pyrvs go first
        Tracefs(where).remove_stale_instances()
        res = subprocess.run(["umount", str(where)], capture_output=True)
        if res.returncode != 0:  # busy (a non-pyrv reader): the next pyrv to leave retries
            return False
        for kind in ("users", "mutex"):  # the next pyrv makes them anew (see _open_locked)
            with contextlib.suppress(OSError):
                _lock_file(kind).unlink()
        return True
    finally:
        os.close(fd)


def release_abandoned_mount() -> Path | None:
    """Unmount a tracefs mounted by pyrvs that are all gone (killed); returns where."""
    found = _tracefs_mount()
    if found is None or found[1] != MOUNT_SOURCE:
        return None
    try:
        with _mount_mutex():
            return found[0] if _unmount_if_unused(found[0]) else None
    except OSError:  # still used (BlockingIOError), or no permission
        return None


class Tracefs:
    """tracefs, mounted by pyrv only when needed and unmounted by the last pyrv using it.

    With an explicit ``path`` nothing is mounted, locked or unmounted.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._given = path is not None
        self.mounted_by_us = False  # this object made the mount
        self._user_fd: int | None = None  # our shared hold on a pyrv mount

    def __enter__(self) -> Tracefs:
        if self._given:
            return self
        found = _tracefs_mount()
        if found is not None and found[1] != MOUNT_SOURCE:
            self.path = found[0]  # someone else's mount: used as found, never unmounted
            return self
        try:
            mutex = _open_locked(_lock_file("mutex"), fcntl.LOCK_EX)
        except PermissionError as exc:  # not root: a mount is only read, none can be made
            if found is None:
                raise TracefsError(errno.EPERM, f"cannot mount tracefs: {exc}") from None
            self.path = found[0]
            return self
        try:
            self._join()
        finally:
            os.close(mutex)
        return self

    def _join(self) -> None:
        """Under the mutex: mount if nobody has; hold a shared lock on a pyrv mount."""
        found = _tracefs_mount()
        if found is None:
            self._mount(DEFAULT_MOUNT)
        else:
            self.path = found[0]
        if found is None or found[1] == MOUNT_SOURCE:
            self._user_fd = _open_locked(_lock_file("users"), fcntl.LOCK_SH)

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mount(self, where: Path) -> None:
        if not where.is_dir():
            raise TracefsError(errno.ENOENT, f"{where}: no such directory to mount tracefs on")
        res = subprocess.run(
            ["mount", "-t", "tracefs", MOUNT_SOURCE, str(where)], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise TracefsError(
                errno.EPERM, f"cannot mount tracefs on {where}: {res.stderr.strip()}"
            )
        self.path, self.mounted_by_us = where, True

    def close(self) -> None:
        """Leave a pyrv mount; unmount it if no other pyrv uses it (whoever mounted it)."""
        if self._user_fd is None or self.path is None:
            return
        with _mount_mutex():
            os.close(self._user_fd)
            self._user_fd = None
            self.mounted_by_us = False
            with contextlib.suppress(BlockingIOError):  # another pyrv still uses it
                _unmount_if_unused(self.path)

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
            if not pid_text.isdigit():
                continue
            with contextlib.suppress(OSError):
                if not _alive_since(int(pid_text), inst.stat().st_ctime):
                    _disable_all(inst)
                    inst.rmdir()
                    removed.append(inst.name)
        return removed


def process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it no longer runs (a zombie
    does not: it can clean nothing up). With the pid it names one process, recycled pids
    apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on: comm may hold ")"
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22, starttime


def _alive_since(pid: int, created: float) -> bool:
    """Does the process that made something at ``created`` (epoch seconds) still run? Any
    live process of that pid, in-process API users included, unless it started later (the pid
    was recycled). /proc/stat's btime has whole seconds, hence the margin."""
    start = process_start(pid)
    if start is None:
        return False
    btime = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    return btime + start / os.sysconf("SC_CLK_TCK") <= created + 2.0


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
        self._set("buffer_size_kb", str(self.buffer_kb))
        if self.clock is not None:
            self._set("trace_clock", self.clock)
        for tp in self.events:
            system, _, name = tp.partition(":")
            event_dir = self.path / "events" / system / name
            if system in _SELF_FEEDING:
                # pyrv's own reads of trace_pipe_raw are system calls: traced, they would
                # feed the trace they are reading, faster than it can be read
                (event_dir / "filter").write_text(f"common_pid != {os.getpid()}")
            (event_dir / "enable").write_text("1")
        (self.path / "tracing_on").write_text("1")

    def _set(self, name: str, value: str) -> None:
        """Write a setting the user chose: the kernel's refusal names it and the value (its
        errno alone, 'Invalid argument', says neither)."""
        try:
            (self.path / name).write_text(value)
        except OSError as exc:
            hint = ""
            if name == "trace_clock":
                with contextlib.suppress(OSError):
                    clocks = (self.path / name).read_text().replace("[", "").replace("]", "")
                    hint = f" (this kernel's clocks: {', '.join(clocks.split())})"
            raise TracefsError(
                exc.errno, f"the kernel refused {name} = {value!r}: {exc.strerror}{hint}"
            ) from None

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
