"""FUSE operations that serve an :class:`~pyrv.monitors.registry.RV` as the kernel's ``rv/`` tree.

Every operation is a thin translation to the registry, which is the single source of truth:
``getattr`` from :meth:`RV.stat`, ``readdir`` from :meth:`RV.listdir`, ``open`` from
:meth:`RV.open` (with ``atomic_o_trunc`` the kernel hands O_TRUNC to open, so ``>`` on
``enabled_monitors`` disables every monitor there, and ``truncate`` is the no-op tracefs has),
``read``/``write`` from :meth:`RV.read`/:meth:`RV.write` at the offset the kernel passes (every
file is opened ``direct_io``: no page cache, so a read always sees the current state and the
file position of ``write(2)`` reaches the registry as it reaches the kernel's handlers).

Refusals are the VFS's own for a tracefs directory: ``create`` EACCES, ``unlink``/``mkdir``/
``rmdir``/``rename``/``link``/``symlink``/``mknod`` EPERM (the registry decides EPERM, EISDIR,
EEXIST, ENOENT and ENOTDIR where it knows better).

pyrv adds one file beside the kernel's set, :data:`VERDICTS_FILE` (``pyrv_verdicts``, mode 0440),
which a live engine feeds through :meth:`RVFs.add_verdict_line`.

This module does not import the FUSE binding: :class:`RVFs` is plain Python and can be driven
in-process; :mod:`pyrv.fs.mount` hands it to mfusepy.
"""

from __future__ import annotations

import errno
import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pyrv.monitors.registry import READ_MODE, RV

#: pyrv's addition to the tree: rv trace lines of the verdicts (never a kernel file name).
VERDICTS_FILE = "pyrv_verdicts"
#: The kernel's rv/ names pyrv must never shadow (rv.c, rv_reactors.c).
KERNEL_ROOT_NAMES = frozenset(
    {
        "available_monitors",
        "enabled_monitors",
        "monitoring_on",
        "available_reactors",
        "reacting_on",
        "monitors",
    }
)
assert VERDICTS_FILE not in KERNEL_ROOT_NAMES

#: ``FUSE_CAP_ATOMIC_O_TRUNC`` (fuse_common.h): O_TRUNC is passed to open, no setattr(size=0).
FUSE_CAP_ATOMIC_O_TRUNC = 1 << 3
#: Bytes of verdict lines kept in memory (older whole lines are dropped first).
DEFAULT_VERDICT_LIMIT = 4 << 20


def _err(code: int, what: str = "") -> OSError:
    msg = os.strerror(code)
    return OSError(code, f"{msg}: {what}" if what else msg)


class VerdictLog:
    """A bounded, append-only text log read through file offsets.

    Offsets are absolute in the stream of everything ever added; an open file starts at the
    oldest byte still kept when it was opened, so ``cat`` gives what is kept and ``tail -f``
    follows new lines. Lines dropped (beyond ``limit`` bytes) while a file is open are skipped.
    """

    def __init__(self, limit: int = DEFAULT_VERDICT_LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._lines: deque[bytes] = deque()
        self._kept = 0  # bytes in _lines
        self._base = 0  # absolute offset of _lines[0]
        self.total_lines = 0

    def add(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        if not data.endswith(b"\n"):
            data += b"\n"
        with self._lock:
            self._lines.append(data)
            self._kept += len(data)
            self.total_lines += 1
            while self._kept > self.limit and len(self._lines) > 1:
                old = self._lines.popleft()
                self._kept -= len(old)
                self._base += len(old)

    @property
    def base(self) -> int:
        with self._lock:
            return self._base

    def read(self, start: int, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` of a file opened when the oldest kept byte was ``start``."""
        with self._lock:
            pos = max(start + offset, self._base) - self._base
            if pos >= self._kept or size <= 0:
                return b""
            out = bytearray()
            skip = pos
            for line in self._lines:
                if skip >= len(line):
                    skip -= len(line)
                    continue
                out += line[skip:]
                skip = 0
                if len(out) >= size:
                    break
            return bytes(out[:size])


@dataclass
class _Handle:
    path: str
    flags: int
    verdict_start: int = 0


class RVFs:
    """The FUSE operations (mfusepy's high-level API, ``raw_fi=True``) over one :class:`RV`.

    ``uid``/``gid`` own every node (default: the serving process, root for a root mount);
    ``verdicts`` adds :data:`VERDICTS_FILE`. Paths are those FUSE passes ("/", "/monitors/...").
    """

    use_ns = True  # mfusepy: times in nanoseconds

    def __init__(
        self,
        rv: RV,
        *,
        uid: int | None = None,
        gid: int | None = None,
        verdicts: bool = True,
        verdict_limit: int = DEFAULT_VERDICT_LIMIT,
    ) -> None:
        self.rv = rv
        self.uid = os.getuid() if uid is None else uid
        self.gid = os.getgid() if gid is None else gid
        self.verdicts = VerdictLog(verdict_limit) if verdicts else None
        self.mount_time_ns = time.time_ns()
        self._fh = itertools.count(1)
        self._handles: dict[int, _Handle] = {}
        self._hlock = threading.Lock()
        #: Called from the FUSE ``init`` (mounted, no request served yet); see mount.serve.
        self.on_init: Callable[[], None] | None = None
        self.on_destroy: Callable[[], None] | None = None

    # -- pyrv's own file -----------------------------------------------------------------------

    def add_verdict_line(self, text: str) -> None:
        """Append one rv trace line (newline added if missing) to :data:`VERDICTS_FILE`.

        Thread-safe; a no-op when the filesystem was made without the verdicts file.
        """
        if self.verdicts is not None:
            self.verdicts.add(text)

    def _is_verdicts(self, rel: str) -> bool:
        return self.verdicts is not None and rel == VERDICTS_FILE

    @staticmethod
    def _rel(path: str | None) -> str:
        if path is None:
            raise _err(errno.EBADF)
        return path.strip("/")

    # -- metadata ------------------------------------------------------------------------------

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        rel = self._rel(path)
        if self._is_verdicts(rel):
            mode, nlink = READ_MODE, 1
        else:
            st = self.rv.stat(rel)
            mode, nlink = st.mode, st.nlink
        t = self.mount_time_ns
        return {
            "st_mode": mode,
            "st_nlink": nlink,
            "st_size": 0,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_atime": t,
            "st_mtime": t,
            "st_ctime": t,
            "st_blocks": 0,
            "st_blksize": 4096,
        }

    def readdir(self, path: str, fh: Any = None) -> list[str]:
        rel = self._rel(path)
        names = self.rv.listdir(rel)
        if rel == "" and self.verdicts is not None:
            names = [*names, VERDICTS_FILE]
        return [".", "..", *names]

    def opendir(self, path: str) -> int:
        rel = self._rel(path)
        if self._is_verdicts(rel) or not self.rv.is_dir(rel):
            raise _err(errno.ENOTDIR, rel)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        """tracefs' simple_statfs: a page-sized block, nothing counted, 255-byte names."""
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}

    # -- open / read / write -------------------------------------------------------------------

    def open(self, path: str, fi: Any) -> int:
        """``open(2)``: the registry's checks and O_TRUNC effect; every file ``direct_io``."""
        rel = self._rel(path)
        flags = int(fi.flags)
        handle = _Handle(rel, flags)
        if self._is_verdicts(rel):
            assert self.verdicts is not None
            handle.verdict_start = self.verdicts.base
        else:
            self.rv.open(rel, flags)
        with self._hlock:
            fh = next(self._fh)
            self._handles[fh] = handle
        fi.fh = fh
        fi.direct_io = 1
        fi.keep_cache = 0
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        """A new name in rv/: EACCES as the VFS says for a directory without ``create``."""
        rel = self._rel(path)
        if self._is_verdicts(rel):
            raise _err(errno.EEXIST, rel)
        self.rv.open(rel, os.O_CREAT | os.O_WRONLY)  # raises EACCES (or ENOENT, EEXIST)
        raise _err(errno.EACCES, rel)

    def _handle(self, fi: Any, path: str | None) -> _Handle:
        fh = getattr(fi, "fh", fi)
        with self._hlock:
            handle = self._handles.get(int(fh)) if fh is not None else None
        if handle is None:  # not opened through us (cannot happen with FUSE); use the path
            return _Handle(self._rel(path), os.O_RDWR)
        return handle

    def read(self, path: str | None, size: int, offset: int, fi: Any) -> bytes:
        handle = self._handle(fi, path)
        if self._is_verdicts(handle.path):
            assert self.verdicts is not None
            return self.verdicts.read(handle.verdict_start, size, offset)
        return self.rv.read(handle.path, size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fi: Any) -> int:
        handle = self._handle(fi, path)
        if self._is_verdicts(handle.path):
            raise _err(errno.EINVAL, handle.path)  # no write method, as for available_*
        return self.rv.write(handle.path, data, offset)

    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        """Accepted and ignored, as tracefs does (O_TRUNC's effect is in ``open``)."""
        rel = self._rel(path)
        if self._is_verdicts(rel):
            return 0
        self.rv.truncate(rel, length)
        return 0

    def release(self, path: str | None, fi: Any) -> int:
        fh = getattr(fi, "fh", fi)
        with self._hlock:
            self._handles.pop(int(fh), None)
        return 0

    def flush(self, path: str | None, fi: Any) -> int:
        return 0

    def fsync(self, path: str | None, datasync: int, fi: Any) -> int:
        return 0

    def utimens(self, path: str | None, times: Any = None) -> int:
        """``touch`` succeeds on tracefs; times are not kept here."""
        self.getattr(path)
        return 0

    # -- refusals ------------------------------------------------------------------------------

    def unlink(self, path: str) -> int:
        rel = self._rel(path)
        if self._is_verdicts(rel):
            raise _err(errno.EPERM, rel)
        self.rv.unlink(rel)
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        rel = self._rel(path)
        if self._is_verdicts(rel):
            raise _err(errno.EEXIST, rel)
        self.rv.mkdir(rel)
        return 0

    def rmdir(self, path: str) -> int:
        rel = self._rel(path)
        if self._is_verdicts(rel):
            raise _err(errno.ENOTDIR, rel)
        self.rv.rmdir(rel)
        return 0

    def rename(self, old: str, new: str) -> int:
        raise _err(errno.EPERM, self._rel(old))

    def link(self, target: str, source: str) -> int:
        raise _err(errno.EPERM, self._rel(target))

    def symlink(self, target: str, source: str) -> int:
        raise _err(errno.EPERM, self._rel(target))

    def mknod(self, path: str, mode: int, dev: int) -> int:
        self.create(path, mode)
        return 0

    def chmod(self, path: str | None, mode: int) -> int:
        """Modes come from the registry (tracefs' RV modes); they cannot be changed here."""
        self.getattr(path)
        raise _err(errno.EPERM, self._rel(path))

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        self.getattr(path)
        raise _err(errno.EPERM, self._rel(path))

    # -- lifecycle -----------------------------------------------------------------------------

    def init_with_config(self, conn: Any, config: Any) -> None:
        """Ask for atomic O_TRUNC; no attribute, entry or page caching (see module doc)."""
        if conn is not None:
            conn.want |= conn.capable & FUSE_CAP_ATOMIC_O_TRUNC
        if config is not None:
            config.direct_io = 1
            config.kernel_cache = 0
            config.auto_cache = 0
            config.attr_timeout = 0.0
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
        if self.on_init is not None:
            self.on_init()

    def destroy(self, path: str) -> None:
        if self.on_destroy is not None:
            self.on_destroy()
