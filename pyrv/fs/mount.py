"""Mounting an RV: the FUSE binding, the mount's life, stale mounts and the daemon.

- :func:`serve` mounts one :class:`~pyrv.monitors.registry.RV` on a directory and serves it
  until it is unmounted (``pyrv umount``, ``fusermount3 -u``) or the process gets SIGTERM,
  SIGINT or SIGHUP; then it disables every monitor and returns. ``on_start``/``on_stop`` let a
  live engine start and stop its instrumentation around the mount.
- A mount whose daemon died (SIGKILL) stays in ``/proc/mounts`` and answers ENOTCONN; the next
  :func:`serve` (or ``pyrv mount``) on that directory detaches it first (:func:`clean_stale`).
- One live mount per directory: a second ``serve`` on a directory that a live pyrv serves is
  refused (:class:`MountError`). Mounts on different directories are independent: each is its
  own process with its own RV, so they share no state.
- Every mount records its owner (pid and start time) in a small file under :func:`runtime_dir`,
  so that ``pyrv umount`` can stop the owner and wait for its clean-up.

The binding is mfusepy (ctypes over the system's libfuse3); it is imported only when a mount
is made, so the rest of pyrv works where FUSE is absent.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pyrv.fs.rvfs import RVFs
from pyrv.monitors.registry import RV

#: ``fsname`` and subtype of every pyrv mount: /proc/mounts shows ``pyrv DIR fuse.pyrv ...``.
FSNAME = "pyrv"
FSTYPE = "fuse." + FSNAME

Hook = Callable[[RVFs], None]


class MountError(RuntimeError):
    """A mount cannot be made or removed; the message says why and what to do."""


class FuseUnavailable(MountError):
    """No usable FUSE here: /dev/fuse, libfuse3 or the mfusepy binding is missing."""


# -- the binding -------------------------------------------------------------------------------


def load_binding() -> ModuleType:
    """Import mfusepy over libfuse3 (never libfuse2, whose O_TRUNC handling differs)."""
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    try:
        import mfusepy
    except ImportError as exc:
        raise FuseUnavailable(
            f"the FUSE binding mfusepy is not installed ({exc}): pip install mfusepy"
        ) from None
    except (OSError, AttributeError) as exc:  # raised at import when libfuse3 is not found
        raise FuseUnavailable(
            f"libfuse3 cannot be loaded ({exc}): install it (Debian: apt-get install fuse3)"
        ) from None
    if mfusepy.fuse_version_major != 3:
        raise FuseUnavailable(f"mfusepy loaded libfuse {mfusepy.fuse_version_major}, not 3")
    return mfusepy


def fuse_unavailable_reason() -> str | None:
    """Why no pyrv mount can be made here, or None if one can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist (no FUSE in this kernel or container)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK) and shutil.which("fusermount3") is None:
        return "/dev/fuse is not accessible and fusermount3 is not installed"
    try:
        load_binding()
    except FuseUnavailable as exc:
        return str(exc)
    return None


# -- /proc/mounts and owners -------------------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    source: str
    mountpoint: str
    fstype: str
    options: str


def _unescape(field: str) -> str:
    """/proc/mounts escapes space, tab, newline and backslash as \\ooo."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts(path: str = "/proc/mounts") -> list[MountEntry]:
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4:
            out.append(MountEntry(_unescape(f[0]), _unescape(f[1]), f[2], f[3]))
    return out


def pyrv_mounts() -> list[MountEntry]:
    """Every pyrv FUSE mount on this machine, live or stale."""
    return [m for m in mounts() if m.fstype == FSTYPE]


def normalize(mountpoint: str | os.PathLike[str]) -> str:
    """An absolute path with symlinks resolved in its parent, never touching the mount itself
    (a stale FUSE mount answers ENOTCONN to every stat)."""
    p = Path(os.path.abspath(os.fspath(mountpoint)))
    if p.parent == p:
        return str(p)
    return str(Path(os.path.realpath(p.parent)) / p.name)


def runtime_dir() -> Path:
    """Where owner records live: /run/pyrv for root, else $XDG_RUNTIME_DIR/pyrv or /tmp."""
    if os.geteuid() == 0 and os.path.isdir("/run"):
        return Path("/run/pyrv")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return Path(xdg) / "pyrv"
    return Path(f"/tmp/pyrv-{os.geteuid()}")


def _record_path(mountpoint: str) -> Path:
    digest = hashlib.sha256(mountpoint.encode()).hexdigest()[:20]
    return runtime_dir() / f"mount-{digest}.json"


def _start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks), which tells a recycled pid
    apart; None when no such process runs (a zombie has finished running)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Owner:
    pid: int
    start_time: int | None
    mountpoint: str

    @property
    def alive(self) -> bool:
        return self.start_time is not None and _start_time(self.pid) == self.start_time


def read_owner(mountpoint: str) -> Owner | None:
    try:
        data = json.loads(_record_path(mountpoint).read_text())
        return Owner(int(data["pid"]), data.get("start_time"), str(data["mountpoint"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_owner(mountpoint: str) -> None:
    path = _record_path(mountpoint)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    record = {"pid": os.getpid(), "start_time": _start_time(os.getpid()), "mountpoint": mountpoint}
    tmp.write_text(json.dumps(record) + "\n")
    tmp.replace(path)


def _drop_owner(mountpoint: str, pid: int | None = None) -> None:
    owner = read_owner(mountpoint)
    if owner is None or pid is None or owner.pid == pid:
        with contextlib.suppress(OSError):
            _record_path(mountpoint).unlink()


def mount_state(mountpoint: str | os.PathLike[str]) -> str:
    """``"none"`` (no pyrv mount there), ``"live"`` or ``"stale"`` (its daemon is gone)."""
    mp = normalize(mountpoint)
    if not any(m.mountpoint == mp for m in pyrv_mounts()):
        return "none"
    owner = read_owner(mp)
    if owner is not None and not owner.alive:
        return "stale"
    try:
        os.stat(mp)
    except OSError as exc:
        # ECONNABORTED: a request that was in flight while the daemon died
        if exc.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            return "stale"
    return "live"


def _detach(mountpoint: str) -> None:
    """Lazy unmount (the mount disappears now, busy users keep their files until they close)."""
    tools = []
    if shutil.which("fusermount3"):
        tools.append(["fusermount3", "-u", "-z", mountpoint])
    if os.geteuid() == 0 and shutil.which("umount"):
        tools.append(["umount", "-l", mountpoint])
    errors = []
    for cmd in tools:
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode == 0:
            return
        errors.append(f"{' '.join(cmd)}: {res.stderr.strip() or res.returncode}")
    if not tools:
        errors.append("neither fusermount3 nor umount (as root) is available")
    raise MountError(f"cannot unmount {mountpoint}: " + "; ".join(errors))


def clean_stale(mountpoint: str | os.PathLike[str]) -> int:
    """Detach every stale pyrv mount on ``mountpoint`` (stacked ones too); return how many."""
    mp = normalize(mountpoint)
    cleaned = 0
    while mount_state(mp) == "stale" and cleaned < 16:
        _detach(mp)
        cleaned += 1
    if cleaned:
        _drop_owner(mp)
        _drop_free_lock(mp)
    return cleaned


def _drop_free_lock(mp: str) -> None:
    """Remove the lock file a killed daemon left, unless someone holds it."""
    try:
        fd = _lock(mp)
    except (MountError, OSError):
        return
    _unlock(mp, fd)


def _lock_path(mp: str) -> Path:
    return _record_path(mp).with_suffix(".lock")


def _lock(mp: str) -> int:
    """An exclusive lock per mount point, held while serving: two pyrv processes never mount
    the same directory at once (the lock goes with the process, even on SIGKILL)."""
    path = _lock_path(mp)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _already_served(mp) from None
        try:  # the holder before us may have removed the file we locked: lock the new one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _unlock(mp: str, fd: int) -> None:
    """Remove the lock file while still holding it (so no lock file outlives its mount)."""
    with contextlib.suppress(OSError):
        if os.stat(_lock_path(mp)).st_ino == os.fstat(fd).st_ino:
            _lock_path(mp).unlink()
    os.close(fd)


def _already_served(mp: str) -> MountError:
    owner = read_owner(mp)
    who = f" (pid {owner.pid})" if owner is not None and owner.alive else ""
    return MountError(
        f"{mp} is already served by a running pyrv{who}; each directory has one mount "
        f"(unmount it first: pyrv umount {mp})"
    )


def _check_mountpoint(mp: str) -> None:
    clean_stale(mp)
    if mount_state(mp) == "live":
        raise _already_served(mp)
    if not os.path.isdir(mp):
        raise MountError(f"{mp}: not a directory")


# -- serving -----------------------------------------------------------------------------------


def _fuse_options(allow_other: bool, debug: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "foreground": True,
        "fsname": FSNAME,
        "subtype": FSNAME,
        "default_permissions": True,  # the kernel checks modes like tracefs (root passes)
        "attr_timeout": 0,
        "entry_timeout": 0,
        "negative_timeout": 0,
        "direct_io": True,
        "max_idle_threads": 4,
    }
    if allow_other:
        opts["allow_other"] = True
    if debug:
        opts["debug"] = True
    return opts


_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def serve(
    rv: RV,
    mountpoint: str | os.PathLike[str],
    *,
    allow_other: bool = False,
    uid: int | None = None,
    gid: int | None = None,
    verdicts: bool = True,
    debug: bool = False,
    on_start: Hook | None = None,
    on_stop: Hook | None = None,
    ready: Callable[[], None] | None = None,
    fs: RVFs | None = None,
) -> RVFs:
    """Mount ``rv`` on ``mountpoint`` and serve it until unmounted or signalled; return the fs.

    - ``on_start(fs)`` runs once mounted, before the first request is answered (from FUSE's
      ``init``); if it raises, the mount is removed and :func:`serve` re-raises.
    - ``on_stop(fs)`` runs after the filesystem stopped serving and every monitor was disabled,
      also after errors once ``on_start`` succeeded.
    - ``ready()`` runs right after ``on_start`` (the daemon uses it to let its parent exit).

    While serving, SIGTERM, SIGINT and SIGHUP belong to libfuse (they end the loop, then the
    mount is removed); the previous handlers are restored afterwards. Must run in the main
    thread for that; elsewhere only ``pyrv umount``/``fusermount3 -u`` stop it.
    Raises :class:`MountError` (or :class:`FuseUnavailable`) before mounting when it cannot.
    """
    mfusepy = load_binding()
    mp = normalize(mountpoint)
    lock = _lock(mp)
    try:
        _check_mountpoint(mp)
        return _serve(
            mfusepy, rv, mp, allow_other, uid, gid, verdicts, debug, on_start, on_stop, ready, fs
        )
    finally:
        _unlock(mp, lock)


def _serve(
    mfusepy: ModuleType,
    rv: RV,
    mp: str,
    allow_other: bool,
    uid: int | None,
    gid: int | None,
    verdicts: bool,
    debug: bool,
    on_start: Hook | None,
    on_stop: Hook | None,
    ready: Callable[[], None] | None,
    fs: RVFs | None,
) -> RVFs:
    if fs is None:
        fs = RVFs(rv, uid=uid, gid=gid, verdicts=verdicts)
    started = threading.Event()
    failure: list[BaseException] = []

    def on_init() -> None:
        try:
            _write_owner(mp)
            if on_start is not None:
                on_start(fs)
            started.set()
            if ready is not None:
                ready()
        except BaseException as exc:  # stop serving; re-raised below
            failure.append(exc)
            mfusepy.fuse_exit()

    fs.on_init = on_init
    in_main = threading.current_thread() is threading.main_thread()
    saved = {}
    if in_main:
        # libfuse installs its handlers only over SIG_DFL; Python's would never run while
        # the main thread is inside libfuse's loop.
        for sig in _SIGNALS:
            saved[sig] = signal.signal(sig, signal.SIG_DFL)
    try:
        try:
            mfusepy.FUSE(fs, mp, raw_fi=True, **_fuse_options(allow_other, debug))
        except RuntimeError as exc:
            # fuse_main_real's status: after a successful start a non-zero one only says how
            # the loop ended (a signal gives 8), which is the normal way to stop.
            if not started.is_set() and not failure:
                raise MountError(
                    f"cannot mount {mp} (libfuse status {exc}); run with --foreground --debug "
                    "for libfuse's messages"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                rv.disable_all_monitors()
            if started.is_set() and on_stop is not None:
                on_stop(fs)
    finally:
        _drop_owner(mp, os.getpid())
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        # a loop that ended by an error can leave the mount behind; never leave it stale
        if mount_state(mp) == "stale":
            with contextlib.suppress(MountError):
                _detach(mp)
    if failure:
        raise failure[0]
    return fs


# -- the daemon and umount ---------------------------------------------------------------------


def daemonize(run: Callable[[Callable[[], None]], None]) -> int:
    """Fork; the child detaches and calls ``run(ready)``; the parent returns 0 once the child
    called ``ready()``, or prints the child's error and returns 2.

    Used by ``pyrv mount`` without ``--foreground``. The child's stdio goes to /dev/null after
    it is ready; before that its errors reach the parent through a pipe.
    """
    rfd, wfd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(wfd)
        chunks = []
        while True:
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(rfd)
        message = b"".join(chunks).decode(errors="replace")
        if message.startswith("ok"):
            return 0
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        print(message.strip() or "pyrv mount: the daemon exited before mounting", file=sys.stderr)
        return 2
    # child
    code = 0
    errlog = tempfile.TemporaryFile()  # noqa: SIM115 (fd kept until os._exit)
    try:
        os.close(rfd)
        os.setsid()
        os.chdir("/")
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(errlog.fileno(), 1)  # libfuse's messages, shown to the parent on failure
        os.dup2(errlog.fileno(), 2)

        def ready() -> None:
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.write(wfd, b"ok\n")
            os.close(wfd)

        run(ready)
    except BaseException as exc:  # report to the parent if it still listens
        code = 2
        with contextlib.suppress(OSError):
            errlog.seek(0)
            said = errlog.read().decode(errors="replace")
            os.write(wfd, (said + f"pyrv mount: {exc}\n").encode())
    finally:
        with contextlib.suppress(OSError):
            os.close(wfd)
        os._exit(code)


def umount(mountpoint: str | os.PathLike[str], timeout: float = 10.0) -> str:
    """Stop the daemon serving ``mountpoint`` (SIGTERM: it disables everything and unmounts)
    and wait for it; detach a stale mount. Returns what was done; MountError if nothing is
    mounted there by pyrv or the mount will not go."""
    mp = normalize(mountpoint)
    state = mount_state(mp)
    if state == "none":
        _drop_owner(mp)
        raise MountError(f"{mp}: no pyrv mount there")
    if state == "stale":
        clean_stale(mp)
        return "stale mount removed"
    owner = read_owner(mp)
    if owner is not None and owner.alive and owner.pid != os.getpid():
        with contextlib.suppress(ProcessLookupError):
            os.kill(owner.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not owner.alive and mount_state(mp) == "none":
                return f"stopped pid {owner.pid}"
            time.sleep(0.02)
        if mount_state(mp) == "none":
            return f"unmounted; pid {owner.pid} is still finishing its clean-up"
    # no known owner, or it did not stop in time: unmount; its loop then ends by itself
    if mount_state(mp) != "none":
        _detach(mp)
    deadline = time.monotonic() + timeout
    while owner is not None and owner.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    return "unmounted"


# -- the RV to serve ---------------------------------------------------------------------------


def build_rv(
    monitors: list[str] | None = None,
    per_task_slots: int = 2,
    kstrtobool_enable_disable: bool = True,
    kmsg: bool = False,
) -> RV:
    """An RV with the kernel's monitors (catalogue order), or only ``monitors``.

    Names may be monitors or containers; a container brings its children, a child its
    container. Unknown names raise ValueError.
    """
    from pyrv.monitors.catalogue import CONTAINERS, KERNEL_ORDER, build_monitor, kernel_definitions
    from pyrv.monitors.monitor import Container, Monitor

    defs = kernel_definitions()
    known = set(defs) | set(CONTAINERS)
    wanted = set(known if monitors is None else monitors)
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown monitor(s) {', '.join(unknown)}; known: {', '.join(n for n in KERNEL_ORDER)}"
        )
    for name in list(wanted):
        if name in CONTAINERS:
            wanted |= {d.name for d in defs.values() if d.container == name}
        elif defs[name].container is not None:
            wanted.add(defs[name].container)  # type: ignore[arg-type]
    rv = RV(per_task_slots=per_task_slots, kstrtobool_enable_disable=kstrtobool_enable_disable)
    if kmsg:
        rv.set_printk_kmsg(True)
    containers: dict[str, Monitor] = {}
    for name in KERNEL_ORDER:
        if name not in wanted:
            continue
        if name in CONTAINERS:
            containers[name] = Container(name, CONTAINERS[name])
            rv.register_monitor(containers[name])
            continue
        d = defs[name]
        parent = containers.get(d.container) if d.container is not None else None
        rv.register_monitor(build_monitor(d), parent)
    return rv
