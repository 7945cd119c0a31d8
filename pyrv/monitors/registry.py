"""The RV control interface: one :class:`RV` is one kernel's ``rv/`` directory (spec §1, §2).

:class:`RV` is the single source of truth for the monitor list, the enabled flags, the per-task
slots, the reactors and the global switches, and it serves the ``rv/`` files with the kernel's
exact bytes and errnos (kernel/trace/rv/rv.c, rv_reactors.c). A filesystem layer needs only
:meth:`RV.open`, :meth:`RV.read`, :meth:`RV.write`, :meth:`RV.truncate`, :meth:`RV.listdir`,
:meth:`RV.stat` and the refusing :meth:`RV.unlink`/:meth:`RV.mkdir`/:meth:`RV.rmdir`.

Offsets: ``enabled_monitors`` and ``reactors`` copy a write to ``offset`` inside a zeroed
buffer, so any write at an offset > 0 reads as an empty string and succeeds without effect
(a second ``echo`` on the same open file does nothing). The boolean files ignore the offset.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as _stat
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pyrv.monitors.monitor import Monitor
from pyrv.monitors.reactors import PrintkReactor, Reactor, nop_reactor, register_builtin_reactors

#: kernel/trace/rv/rv.h: names must be shorter than this (so at most 31 bytes).
MAX_RV_MONITOR_NAME_SIZE = 32
MAX_RV_REACTOR_NAME_SIZE = 32
#: CONFIG_RV_PER_TASK_MONITORS range.
MIN_TASK_SLOTS, MAX_TASK_SLOTS = 1, 8

#: tracefs modes of the rv/ nodes (RV_MODE_READ, RV_MODE_WRITE; dirs as ``ls -la`` shows them).
DIR_MODE = _stat.S_IFDIR | 0o750
READ_MODE = _stat.S_IFREG | 0o440
WRITE_MODE = _stat.S_IFREG | 0o640

#: Files directly in rv/, in creation order (rv_init_interface, init_rv_reactors).
ROOT_FILES = (
    "available_monitors",
    "enabled_monitors",
    "monitoring_on",
    "available_reactors",
    "reacting_on",
)
#: Files in every monitor directory, in creation order (create_monitor_dir).
MONITOR_FILES = ("enable", "desc", "reactors")
_READ_ONLY = frozenset({"available_monitors", "available_reactors", "desc"})

#: The kernel's isspace() (lib/ctype.c): ASCII space, \t \n \v \f \r, and Latin-1 NBSP 0xa0.
KERNEL_SPACE = b" \t\n\v\f\r\xa0"

#: ``monitors/<m>/desc`` is formatted into a 256-byte buffer.
_DESC_BUF = 256


def _err(code: int, what: str = "") -> OSError:
    msg = os.strerror(code)
    return OSError(code, f"{msg}: {what}" if what else msg)


def kstrtobool(data: bytes, enable_disable: bool = True) -> bool:
    """``kstrtobool_from_user``: decide from the first (up to 3) bytes, else EINVAL.

    ``enable_disable`` accepts ``E``/``e``/``D``/``d`` (kernel commit ae5b3500856f; absent in 6.12).
    """
    s = data[:3].split(b"\0", 1)[0]  # a C string of at most 3 bytes
    true_first = b"yYtT1" + (b"eE" if enable_disable else b"")
    false_first = b"nNfF0" + (b"dD" if enable_disable else b"")
    first = s[:1]
    if first and first in true_first:
        return True
    if first and first in false_first:
        return False
    if first in (b"o", b"O"):
        second = s[1:2]
        if second in (b"n", b"N"):
            return True
        if second in (b"f", b"F"):
            return False
    raise _err(errno.EINVAL)


def _write_buffer(data: bytes, offset: int, available: int) -> bytes:
    """``simple_write_to_buffer`` into a zeroed buffer, read back as a C string."""
    if offset < 0:
        raise _err(errno.EFAULT)  # the callers turn every copy error into -EFAULT
    buf = bytearray(available + 1)
    if offset < available and data:
        n = min(len(data), available - offset)
        buf[offset : offset + n] = data[:n]
    return bytes(buf).split(b"\0", 1)[0]


def _strim(s: bytes) -> bytes:
    """The kernel's ``strim``: drop leading and trailing isspace() bytes."""
    return s.strip(KERNEL_SPACE)


@dataclass(frozen=True)
class NodeStat:
    """What ``stat`` shows of an rv/ node (owner root, size 0 as in tracefs)."""

    mode: int
    nlink: int
    size: int = 0


@dataclass(frozen=True)
class _Node:
    """A resolved path: ``kind`` is "root", "monitors", "mondir" or a file name."""

    kind: str
    mon: Monitor | None = None

    @property
    def is_dir(self) -> bool:
        return self.kind in ("root", "monitors", "mondir")


class RV:
    """One ``rv/`` directory: monitors, reactors, slots and switches behind one lock.

    ``per_task_slots`` is CONFIG_RV_PER_TASK_MONITORS (1..8). ``kstrtobool_enable_disable``
    selects the newest kstrtobool (``E``/``D`` accepted); set it False to behave like 6.12.
    ``builtin_reactors`` registers ``printk`` and ``panic`` after the core's ``nop``.
    """

    def __init__(
        self,
        per_task_slots: int = 2,
        *,
        kstrtobool_enable_disable: bool = True,
        builtin_reactors: bool = True,
    ) -> None:
        if (
            isinstance(per_task_slots, bool)
            or not isinstance(per_task_slots, int)
            or not MIN_TASK_SLOTS <= per_task_slots <= MAX_TASK_SLOTS
        ):
            raise ValueError(
                f"per_task_slots must be {MIN_TASK_SLOTS}..{MAX_TASK_SLOTS}, not {per_task_slots!r}"
            )
        self.kstrtobool_enable_disable = kstrtobool_enable_disable
        # rv_interface_lock; reentrant because monitor callbacks take task slots under it.
        self._lock = threading.RLock()
        self._list: list[Monitor] = []  # rv_monitors_list order
        self._registered: list[Monitor] = []  # registration order = directory creation order
        self._reactors: list[Reactor] = []
        self._slots = [False] * per_task_slots
        self._monitoring_on = True
        self._reacting_on = True
        self.nop = nop_reactor()
        self.register_reactor(self.nop)
        if builtin_reactors:
            register_builtin_reactors(self)

    # -- global switches -----------------------------------------------------------------------

    @property
    def monitoring_on(self) -> bool:
        """The global monitoring switch (``rv_monitoring_on``); change it with set_monitoring_on."""
        return self._monitoring_on

    @property
    def reacting_on(self) -> bool:
        """The global reaction switch (``rv_reacting_on``); change it with set_reacting_on."""
        return self._reacting_on

    @property
    def per_task_slots(self) -> int:
        return len(self._slots)

    def set_monitoring_on(self, on: bool) -> None:
        """Off: just clear. Off->on: reset every enabled monitor that has a reset, then set."""
        with self._lock:
            if not on:
                self._monitoring_on = False
                return
            if self._monitoring_on:
                return
            for mon in self._list:
                if mon.enabled and mon.has_reset:
                    mon.reset()
            self._monitoring_on = True

    def set_reacting_on(self, on: bool) -> None:
        with self._lock:
            self._reacting_on = bool(on)

    # -- monitor registration ------------------------------------------------------------------

    def register_monitor(self, mon: Monitor, parent: Monitor | None = None) -> None:
        """``rv_register_monitor``: EINVAL for a long name or a nested parent, EEXIST for a
        duplicate name; children go right after their parent (siblings end up reversed)."""
        if len(mon.name.encode()) >= MAX_RV_MONITOR_NAME_SIZE:
            raise _err(errno.EINVAL, f"monitor name {mon.name!r} too long")
        with self._lock:
            if any(m.name == mon.name for m in self._list):
                raise _err(errno.EEXIST, f"monitor {mon.name} is already registered")
            if parent is not None and parent.parent is not None:
                raise _err(errno.EINVAL, f"parent {parent.name} is already nested")
            if parent is not None and parent not in self._list:
                raise _err(errno.EINVAL, f"parent {parent.name} is not registered")
            self._check_dir_name(mon.name, parent)
            mon.parent = parent
            mon.rv = self
            mon.enabled = False
            mon.reactor = self.find_reactor("nop")
            if parent is None:
                self._list.append(mon)
            else:
                self._list.insert(self._list.index(parent) + 1, mon)
            self._registered.append(mon)

    def _check_dir_name(self, name: str, parent: Monitor | None) -> None:
        """tracefs refuses a directory that clashes or is no valid name: the kernel says ENOMEM."""
        bad = name in ("", ".", "..") or "/" in name or "\0" in name
        if bad or (parent is not None and name in MONITOR_FILES):
            raise _err(errno.ENOMEM, f"cannot create directory {name!r}")

    def unregister_monitor(self, mon: Monitor) -> None:
        """``rv_unregister_monitor``: disable (container semantics), then remove. A container's
        children go with it, as their directories live inside the container's."""
        with self._lock:
            if mon not in self._list:
                raise _err(errno.ENOENT, f"monitor {mon.name} is not registered")
            self._disable(mon)
            for m in [mon, *(c for c in self._list if c.parent is mon)]:
                if m.enabled:
                    self._disable_single(m)
                self._list.remove(m)
                self._registered.remove(m)
                m.rv = None
                m.parent = None

    def monitors(self) -> list[Monitor]:
        """Registered monitors in list order (``available_monitors`` order)."""
        with self._lock:
            return list(self._list)

    def enabled_monitors(self) -> list[Monitor]:
        with self._lock:
            return [m for m in self._list if m.enabled]

    def find_monitor(self, name: str) -> Monitor | None:
        with self._lock:
            return next((m for m in self._list if m.name == name), None)

    def children(self, mon: Monitor) -> list[Monitor]:
        """Nested monitors of ``mon`` in list order."""
        with self._lock:
            return list(self._children(mon))

    def _children(self, mon: Monitor) -> Iterator[Monitor]:
        """``list_for_each_entry_continue`` from ``mon`` while the entry's parent is ``mon``."""
        i = self._list.index(mon) + 1
        while i < len(self._list) and self._list[i].parent is mon:
            yield self._list[i]
            i += 1

    @staticmethod
    def is_nested(mon: Monitor) -> bool:
        return mon.parent is not None

    def is_container(self, mon: Monitor) -> bool:
        """``rv_is_container_monitor``: the last list entry never is (fix 8d7861ac507d);
        otherwise the next entry is its child, or it has no callbacks."""
        with self._lock:
            i = self._list.index(mon)
            if i == len(self._list) - 1:
                return False
            return self._list[i + 1].parent is mon or not mon.has_callbacks

    # -- per-task slots ------------------------------------------------------------------------

    def get_task_slot(self) -> int:
        """Lowest free per-task slot; EBUSY when all CONFIG_RV_PER_TASK_MONITORS are taken."""
        with self._lock:
            for i, used in enumerate(self._slots):
                if not used:
                    self._slots[i] = True
                    return i
            raise _err(errno.EBUSY, "no free per-task monitor slot")

    def put_task_slot(self, slot: int) -> None:
        """Give a slot back. Bad or unused slots only warn, as the kernel's WARN_ONCE does."""
        with self._lock:
            if not 0 <= slot < len(self._slots):
                warnings.warn(f"RV releasing an invalid slot!: {slot}", RuntimeWarning, 2)
                return
            if not self._slots[slot]:
                warnings.warn(f"RV releasing unused task slot: {slot}", RuntimeWarning, 2)
            self._slots[slot] = False

    def task_slots_in_use(self) -> list[int]:
        with self._lock:
            return [i for i, used in enumerate(self._slots) if used]

    # -- enable / disable ----------------------------------------------------------------------

    def enable_monitor(self, mon: Monitor) -> None:
        """``rv_enable_monitor``: raises the monitor's OSError (EBUSY, ENOMEM, ...) on failure."""
        with self._lock:
            self._enable(mon)

    def disable_monitor(self, mon: Monitor) -> None:
        """``rv_disable_monitor``: never fails."""
        with self._lock:
            self._disable(mon)

    def disable_all_monitors(self) -> None:
        """What opening ``enabled_monitors`` with O_TRUNC does: every entry, one by one."""
        with self._lock:
            for mon in self._list:
                self._disable_single(mon)

    def _enable(self, mon: Monitor) -> None:
        if self.is_container(mon):
            self._enable_container(mon)
        else:
            self._enable_single(mon)

    def _disable(self, mon: Monitor) -> None:
        if self.is_container(mon):
            self._disable_container(mon)
        else:
            self._disable_single(mon)

    @staticmethod
    def _enable_single(mon: Monitor) -> None:
        if mon.enabled:
            return
        mon.enable()
        mon.enabled = True

    @staticmethod
    def _disable_single(mon: Monitor) -> bool:
        if not mon.enabled:
            return False
        mon.enabled = False
        if mon.has_callbacks:
            mon.disable()
        return True

    def _enable_container(self, mon: Monitor) -> None:
        """Children in list order; on the first failure disable them all and re-raise."""
        try:
            for child in list(self._children(mon)):
                self._enable_single(child)
        except OSError:
            self._disable_container(mon)
            raise
        mon.enabled = True

    def _disable_container(self, mon: Monitor) -> None:
        for child in list(self._children(mon)):
            self._disable_single(child)
        mon.enabled = False

    # -- reactors ------------------------------------------------------------------------------

    def register_reactor(self, reactor: Reactor) -> None:
        """``rv_register_reactor``: long name or duplicate name -> EINVAL (not EEXIST)."""
        if len(reactor.name.encode()) >= MAX_RV_REACTOR_NAME_SIZE:
            raise _err(errno.EINVAL, f"reactor name {reactor.name!r} too long")
        with self._lock:
            if any(r.name == reactor.name for r in self._reactors):
                raise _err(errno.EINVAL, f"reactor {reactor.name} is already registered")
            self._reactors.append(reactor)

    def unregister_reactor(self, reactor: Reactor) -> None:
        """Just removes it (no in-use check since 6.17). Monitors that selected it keep it:
        it still reacts, but no line of their ``reactors`` file is bracketed."""
        with self._lock:
            if reactor not in self._reactors:
                raise _err(errno.ENOENT, f"reactor {reactor.name} is not registered")
            self._reactors.remove(reactor)

    def reactors(self) -> list[Reactor]:
        with self._lock:
            return list(self._reactors)

    def find_reactor(self, name: str) -> Reactor | None:
        with self._lock:
            return next((r for r in self._reactors if r.name == name), None)

    def set_monitor_reactor(self, mon: Monitor, reactor: Reactor) -> None:
        """What writing a name to ``monitors/<m>/reactors`` does (``monitor_swap_reactors``).

        Non-container: disable, switch, re-enable if it was enabled. Container: each child is
        switched and left disabled, then the container itself is swapped, re-enabling all
        children only if the container was enabled (the kernel's own "may refine" quirk).
        """
        with self._lock:
            if self.is_container(mon):
                for child in list(self._children(mon)):
                    self._swap_single(child, reactor, nested=True)
            self._swap_single(mon, reactor, nested=False)

    def _swap_single(self, mon: Monitor, reactor: Reactor, nested: bool) -> None:
        if mon.reactor is reactor:
            return
        was_enabled = mon.enabled
        if was_enabled:
            self._disable(mon)
        mon.reactor = reactor
        if was_enabled and not nested:
            with contextlib.suppress(OSError):  # the kernel ignores rv_enable_monitor()'s result
                self._enable(mon)

    def set_printk_kmsg(self, kmsg: bool | str | os.PathLike[str]) -> None:
        """Make the registered ``printk`` reactor also write the kernel log (or stop it)."""
        printk = self.find_reactor("printk")
        if not isinstance(printk, PrintkReactor):
            raise _err(errno.ENOENT, "no built-in printk reactor registered")
        printk.set_kmsg(kmsg)

    def react(self, mon: Monitor, message: str) -> None:
        """``rv_react``: nothing when reacting is off or the monitor's reactor is nop/None."""
        reactor = mon.reactor
        if not self._reacting_on or reactor is None or reactor is self.nop:
            return
        reactor.react(message)

    # -- the files -----------------------------------------------------------------------------

    def _resolve(self, path: str) -> _Node:
        """Path (relative to rv/, leading '/' allowed) -> node; ENOENT / ENOTDIR otherwise."""
        parts = [p for p in path.split("/") if p not in ("", ".")]
        node = _Node("root")
        for name in parts:
            if not node.is_dir:
                raise _err(errno.ENOTDIR, path)
            found = self._lookup(node, name)
            if found is None:
                raise _err(errno.ENOENT, path)
            node = found
        return node

    def _lookup(self, node: _Node, name: str) -> _Node | None:
        if node.kind == "root":
            if name == "monitors":
                return _Node("monitors")
            return _Node(name) if name in ROOT_FILES else None
        if node.kind == "mondir" and name in MONITOR_FILES:
            return _Node(name, node.mon)
        parent = node.mon if node.kind == "mondir" else None
        mon = next((m for m in self._list if m.name == name and m.parent is parent), None)
        return _Node("mondir", mon) if mon is not None else None

    def _subdirs(self, node: _Node) -> list[Monitor]:
        parent = node.mon if node.kind == "mondir" else None
        return [m for m in self._registered if m.parent is parent]

    def exists(self, path: str) -> bool:
        try:
            with self._lock:
                self._resolve(path)
        except OSError:
            return False
        return True

    def is_dir(self, path: str) -> bool:
        """True for rv/, monitors/ and monitor directories; ENOENT for unknown paths."""
        with self._lock:
            return self._resolve(path).is_dir

    def mode(self, path: str) -> int:
        """``st_mode`` as tracefs shows it: dirs 0750, read-only files 0440, others 0640."""
        return self.stat(path).mode

    def stat(self, path: str) -> NodeStat:
        with self._lock:
            node = self._resolve(path)
            if node.kind == "root":
                return NodeStat(DIR_MODE, 3)
            if node.is_dir:
                return NodeStat(DIR_MODE, 2 + len(self._subdirs(node)))
            return NodeStat(READ_MODE if node.kind in _READ_ONLY else WRITE_MODE, 1)

    def listdir(self, path: str) -> list[str]:
        """Entry names in creation order (without ``.``/``..``); ENOTDIR for files."""
        with self._lock:
            node = self._resolve(path)
            if node.kind == "root":
                return ["monitors", *ROOT_FILES]
            if node.kind == "monitors":
                return [m.name for m in self._subdirs(node)]
            if node.kind == "mondir":
                return [*MONITOR_FILES, *(m.name for m in self._subdirs(node))]
            raise _err(errno.ENOTDIR, path)

    def walk(self, path: str = "") -> list[str]:
        """Every path under ``path`` (itself excluded), depth first, like ``find``."""
        out: list[str] = []
        with self._lock:
            for name in self.listdir(path):
                sub = f"{path.strip('/')}/{name}" if path.strip("/") else name
                out.append(sub)
                if self.is_dir(sub):
                    out.extend(self.walk(sub))
        return out

    def open(self, path: str, flags: int = os.O_RDONLY) -> None:
        """What ``open(2)`` does to rv/: EACCES on create, EISDIR for a writable dir, and
        O_TRUNC with write access on ``enabled_monitors`` disables every monitor.

        A FUSE layer should enable ``atomic_o_trunc`` so O_TRUNC reaches this call.
        """
        writable = (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR)
        with self._lock:
            try:
                node = self._resolve(path)
            except FileNotFoundError:
                if flags & os.O_CREAT and self._parent_is_dir(path):
                    raise _err(errno.EACCES, path) from None
                raise
            if flags & os.O_CREAT and flags & os.O_EXCL:
                raise _err(errno.EEXIST, path)
            if node.is_dir and (writable or flags & os.O_CREAT):
                raise _err(errno.EISDIR, path)
            if flags & os.O_DIRECTORY and not node.is_dir:
                raise _err(errno.ENOTDIR, path)
            if node.kind == "enabled_monitors" and writable and flags & os.O_TRUNC:
                self.disable_all_monitors()

    def _parent_is_dir(self, path: str) -> bool:
        parent = path.strip("/").rpartition("/")[0]
        try:
            return self._resolve(parent).is_dir
        except OSError:
            return False

    def truncate(self, path: str, length: int = 0) -> None:
        """``truncate(2)``: accepted and ignored (tracefs); it does not disable monitors."""
        with self._lock:
            if self._resolve(path).is_dir:
                raise _err(errno.EISDIR, path)
        if length < 0:
            raise _err(errno.EINVAL, path)

    def unlink(self, path: str) -> None:
        """rv/ files cannot be removed: EPERM (EISDIR for a directory, ENOENT if missing)."""
        with self._lock:
            node = self._resolve(path)
        raise _err(errno.EISDIR if node.is_dir else errno.EPERM, path)

    def mkdir(self, path: str) -> None:
        """No directory can be made in rv/: EPERM (EEXIST if it exists)."""
        with self._lock:
            if self.exists(path):
                raise _err(errno.EEXIST, path)
            if not self._parent_is_dir(path):
                raise _err(errno.ENOENT, path)
        raise _err(errno.EPERM, path)

    def rmdir(self, path: str) -> None:
        """No directory can be removed: EPERM (ENOTDIR for a file, ENOENT if missing)."""
        with self._lock:
            node = self._resolve(path)
        raise _err(errno.EPERM if node.is_dir else errno.ENOTDIR, path)

    def read(self, path: str, size: int = -1, offset: int = 0) -> bytes:
        """The file's bytes from ``offset`` (``size`` < 0: to the end), generated under the lock."""
        if offset < 0:
            raise _err(errno.EINVAL, path)
        with self._lock:
            node = self._resolve(path)
            if node.is_dir:
                raise _err(errno.EISDIR, path)
            content = self._READERS[node.kind](self, node)
        end = len(content) if size < 0 else offset + size
        return content[offset:end]

    def write(self, path: str, data: bytes, offset: int = 0) -> int:
        """One ``write(2)`` at ``offset``: returns ``len(data)`` or raises the kernel's errno.

        Files without a write method (available_*, desc) give EINVAL, as the kernel does.
        """
        data = bytes(data)
        with self._lock:
            node = self._resolve(path)
            if node.is_dir:
                raise _err(errno.EISDIR, path)
            writer = self._WRITERS.get(node.kind)
            if writer is None:
                raise _err(errno.EINVAL, path)
            return writer(self, node, data, offset)

    def open_file(self, path: str, flags: int = os.O_RDONLY) -> RVFile:
        """An open-file handle with its own position, for in-process users and tests."""
        return RVFile(self, path, flags)

    # -- readers -------------------------------------------------------------------------------

    @staticmethod
    def _show(mon: Monitor) -> bytes:
        name = f"{mon.parent.name}:{mon.name}" if mon.parent is not None else mon.name
        return name.encode() + b"\n"

    def _read_available_monitors(self, node: _Node) -> bytes:
        return b"".join(self._show(m) for m in self._list)

    def _read_enabled_monitors(self, node: _Node) -> bytes:
        return b"".join(self._show(m) for m in self._list if m.enabled)

    def _read_available_reactors(self, node: _Node) -> bytes:
        return b"".join(r.name.encode() + b"\n" for r in self._reactors)

    def _read_monitor_reactors(self, node: _Node) -> bytes:
        assert node.mon is not None
        cur = node.mon.reactor
        return b"".join(
            (b"[%s]\n" if r is cur else b"%s\n") % r.name.encode() for r in self._reactors
        )

    @staticmethod
    def _flag(on: bool) -> bytes:
        """``"1\\n"``/``"0\\n"`` plus the NUL the kernel copies (strlen + 1)."""
        return b"1\n\0" if on else b"0\n\0"

    def _read_monitoring_on(self, node: _Node) -> bytes:
        return self._flag(self._monitoring_on)

    def _read_reacting_on(self, node: _Node) -> bytes:
        return self._flag(self._reacting_on)

    def _read_enable(self, node: _Node) -> bytes:
        assert node.mon is not None
        return self._flag(node.mon.enabled)

    def _read_desc(self, node: _Node) -> bytes:
        """snprintf("%s\\n") into 256 bytes: at most 255 bytes, then the copied NUL."""
        assert node.mon is not None
        text = (node.mon.description + "\n").encode()[: _DESC_BUF - 1]
        return text + b"\0"

    # -- writers -------------------------------------------------------------------------------

    def _write_enabled_monitors(self, node: _Node, data: bytes, offset: int) -> int:
        """``enabled_monitors_write``: [!][parent:]name, 1..33 bytes, whitespace stripped."""
        count = len(data)
        if count < 1 or count > MAX_RV_MONITOR_NAME_SIZE + 1:
            raise _err(errno.EINVAL, "enabled_monitors")
        text = _strim(_write_buffer(data, offset, MAX_RV_MONITOR_NAME_SIZE + 1))
        enable = not text.startswith(b"!")
        if not enable:
            text = text[1:]
        if not text:
            return count
        if b":" in text:  # one nesting level: drop "parent:" without checking it
            text = text.partition(b":")[2]
        for mon in self._list:
            if mon.name.encode() == text:
                if enable:
                    self._enable(mon)
                else:
                    self._disable(mon)
                return count
        raise _err(errno.EINVAL, "enabled_monitors")

    def _bool(self, data: bytes) -> bool:
        return kstrtobool(data, self.kstrtobool_enable_disable)

    def _write_monitoring_on(self, node: _Node, data: bytes, offset: int) -> int:
        self.set_monitoring_on(self._bool(data))
        return len(data)

    def _write_reacting_on(self, node: _Node, data: bytes, offset: int) -> int:
        self.set_reacting_on(self._bool(data))
        return len(data)

    def _write_enable(self, node: _Node, data: bytes, offset: int) -> int:
        assert node.mon is not None
        if self._bool(data):
            self._enable(node.mon)
        else:
            self._disable(node.mon)
        return len(data)

    def _write_monitor_reactors(self, node: _Node, data: bytes, offset: int) -> int:
        """``monitor_reactors_write``: a reactor name, 1..33 bytes, whitespace stripped."""
        assert node.mon is not None
        count = len(data)
        if count < 1 or count > MAX_RV_REACTOR_NAME_SIZE + 1:
            raise _err(errno.EINVAL, "reactors")
        text = _strim(_write_buffer(data, offset, MAX_RV_REACTOR_NAME_SIZE + 1))
        if not text:
            return count
        for reactor in self._reactors:
            if reactor.name.encode() == text:
                self.set_monitor_reactor(node.mon, reactor)
                return count
        raise _err(errno.EINVAL, "reactors")

    _READERS: dict[str, Callable[[RV, _Node], bytes]] = {
        "available_monitors": _read_available_monitors,
        "enabled_monitors": _read_enabled_monitors,
        "monitoring_on": _read_monitoring_on,
        "available_reactors": _read_available_reactors,
        "reacting_on": _read_reacting_on,
        "enable": _read_enable,
        "desc": _read_desc,
        "reactors": _read_monitor_reactors,
    }
    _WRITERS: dict[str, Callable[[RV, _Node, bytes, int], int]] = {
        "enabled_monitors": _write_enabled_monitors,
        "monitoring_on": _write_monitoring_on,
        "reacting_on": _write_reacting_on,
        "enable": _write_enable,
        "reactors": _write_monitor_reactors,
    }


class RVFile:
    """An open rv/ file: ``open(2)`` semantics at creation, then reads and writes at a position
    that, like the kernel's ``f_pos``, advances only on success."""

    def __init__(self, rv: RV, path: str, flags: int = os.O_RDONLY) -> None:
        rv.open(path, flags)
        self.rv = rv
        self.path = path
        self.flags = flags
        self.pos = 0
        self.closed = False

    def _check(self, want_write: bool) -> None:
        if self.closed:
            raise _err(errno.EBADF, self.path)
        acc = self.flags & os.O_ACCMODE
        ok = acc in (os.O_WRONLY, os.O_RDWR) if want_write else acc in (os.O_RDONLY, os.O_RDWR)
        if not ok:
            raise _err(errno.EBADF, self.path)

    def read(self, size: int = -1) -> bytes:
        self._check(want_write=False)
        data = self.rv.read(self.path, size, self.pos)
        self.pos += len(data)
        return data

    def write(self, data: bytes) -> int:
        self._check(want_write=True)
        n = self.rv.write(self.path, data, self.pos)
        self.pos += n
        return n

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> RVFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
