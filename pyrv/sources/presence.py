"""Which events a text trace contains, found by a byte scan before the real parse.

Selecting monitors ("every monitor whose hooked events are present") and refusing a monitor
whose events are absent must happen before any verdict is printed; a C-speed substring scan
of the file answers that without parsing it twice.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterable
from pathlib import Path

_CHUNK = 1 << 22
_MAGIC = ((b"\x1f\x8b", gzip.open), (b"\xfd7zXZ\x00", lzma.open), (b"BZh", bz2.open))


def _opener(path: Path):  # noqa: ANN202 - one of the open functions
    """Pick the decompressor by content, as the reader does, not by the file name."""
    with open(path, "rb") as f:
        head = f.read(6)
    return next((fn for magic, fn in _MAGIC if head.startswith(magic)), open)


def events_present(trace: str | Path, names: Iterable[str]) -> set[str]:
    """The subset of ``names`` that occur as ``NAME:`` event labels in ``trace``.

    Text traces print the event name followed by a colon after the timestamp (ftrace) or
    padded after it (trace-cmd report), or alone at the start of a line (nocontext-info), so
    ``b" NAME:"`` and ``b"\nNAME:"`` are searched. A file that cannot
    be scanned this way (stdin) reports every name present; the parse then decides. A file
    damaged part-way (a truncated gzip/xz stream) reports what its readable part holds: the
    parse stops at the damage with its position, and no monitor whose events lie only beyond
    it (or nowhere) runs on the part before.
    """
    wanted = {n: (b" " + n.encode() + b":", b"\n" + n.encode() + b":") for n in names}
    path = Path(trace)
    if str(trace) == "-" or not path.is_file():
        return set(wanted)
    found: set[str] = set()
    tail = b""
    try:
        f = _opener(path)(path, "rb")
    except OSError:
        return set(wanted)  # unreadable here: the parser will report it
    try:
        while len(found) < len(wanted):
            chunk = f.read1(_CHUNK)  # what was decompressed so far: a later error keeps it
            if not chunk:
                break
            data = tail + chunk
            for n, pats in wanted.items():
                if n not in found and any(p in data for p in pats):
                    found.add(n)
            tail = data[-64:]
    except (OSError, EOFError, lzma.LZMAError):
        pass  # damaged here: what came before is what the parse can read
    finally:
        f.close()
    return found


def first_event_line(trace: str | Path, name: str) -> bytes | None:
    """The first line of ``trace`` labelled with event ``name`` (as :func:`events_present`
    finds it), or None: absent, or a file that cannot be scanned ahead (stdin)."""
    pats = (b" " + name.encode() + b":", b"\n" + name.encode() + b":")
    path = Path(trace)
    if str(trace) == "-" or not path.is_file():
        return None
    try:
        f = _opener(path)(path, "rb")
    except OSError:
        return None
    tail = b""
    try:
        while chunk := f.read1(_CHUNK):
            data = tail + chunk
            at = min((i for i in (data.find(p) for p in pats) if i >= 0), default=-1)
            if at >= 0:
                start = data.rfind(b"\n", 0, at + 1) + 1
                end = data.find(b"\n", at + 1)
                while end < 0 and (more := f.read1(_CHUNK)):
                    data += more
                    end = data.find(b"\n", at + 1)
                return data[start : end if end >= 0 else len(data)]
            tail = data[data.rfind(b"\n") + 1 :][-4096:]
    except (OSError, EOFError, lzma.LZMAError):
        pass
    finally:
        f.close()
    return None


def event_lines(trace: str | Path) -> int | None:
    """How many lines of a text trace are neither comments nor blank: at least one per event
    its buffer held. None when the file cannot be counted ahead (stdin, zstd, unreadable,
    a damaged stream: the parse reports those)."""
    path = Path(trace)
    if str(trace) == "-" or not path.is_file():
        return None
    try:
        opener = _opener(path)
        if opener is open:
            with open(path, "rb") as f:
                if f.read(4) == b"\x28\xb5\x2f\xfd":
                    return None
        with opener(path, "rb") as f:
            return sum(1 for line in f if line.strip() and not line.lstrip().startswith(b"#"))
    except (OSError, EOFError, lzma.LZMAError):
        return None
