"""Open any trace pyrv reads, recognised by its content (never by its file name).

:func:`open_trace` returns ``(reader, items)``: the reader object (for its metadata) and the
iterator of :class:`~pyrv.sources.events.TraceEvent`/:class:`~pyrv.sources.events.LostEvents`.

What is recognised, in this order:

==============================================  =============================================
input                                           reader
==============================================  =============================================
a directory with per-CPU page files             :class:`~pyrv.sources.ring_buffer.RawTraceDir`
(``cpuN.raw``, ``traces/cpuN``,                 (format files from ``events/`` or
``per_cpu/cpuN/trace_pipe_raw``)                ``formats/``)
a file starting ``17 08 44 "tracing"``          :class:`~pyrv.sources.tracedat.TraceDat`
a gzip/xz/bz2/zstd-compressed trace.dat or raw  the same readers over a private decompressed
pages file                                      copy (see :func:`_spooled`)
a zstd-compressed text file                     the text reader over a zstd stream
a file of raw pages (binary, with ``formats``)  :class:`RawPagesFile` (one CPU)
anything else: text, gzip/xz/bz2 text, ``-``    :class:`~pyrv.sources.ftrace_text.TextTraceReader`
==============================================  =============================================

The metadata surface every reader object has (what a checker may rely on):

- ``source`` (str): the name used in messages and in the items' ``source``;
- ``counter_clock`` (bool): timestamps are counts (``counter``, ``uptime``, ``x86-tsc`` clocks,
  or line numbers for text without context), not nanoseconds;
- ``has_context`` (bool): events carry their time, CPU and pid (False only for text written
  with the ``nocontext-info`` option);
- ``skipped`` (list of ``(line, reason)``): input skipped as unreadable (text with
  ``skip_bad_lines``; always empty for binary input, which has no lines);
- ``dropped_incomplete`` (int): events left out before an overwritten text head's complete
  point (0 for binary input: its pages say exactly what was lost, as ``LostEvents``).

Text metadata may only be complete once the first item was read (the header comes first);
binary metadata is read when the reader is made.

A stream (``-``, a pipe, ``/dev/stdin``, a process substitution) can be read only once: it is
recognised from the first bytes it delivers and, when it is text, read as it arrives (so
``cat trace_pipe | pyrv check -`` runs live); binary forms need their offsets (a trace.dat's
sections, a page file's pages) and are refused with the reason.
"""

from __future__ import annotations

import io
import itertools
import lzma
import os
import re
import stat
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceItem
from pyrv.sources.formats import FormatSet
from pyrv.sources.ftrace_text import _DECOMPRESSORS, _MAGIC, TextTraceReader, _sniff
from pyrv.sources.merge import place_text_losses
from pyrv.sources.ring_buffer import (
    BinaryTraceError,
    PageDecoder,
    RawTraceDir,
    RingBufferLayout,
    end_at_damage,
    find_cpu_files,
    flushed,
    guess_byteorder,
    iter_cpu_pages,
    sample_headers,
    track_comms,
)
from pyrv.sources.tracedat import MAGIC, TraceDat, is_tracedat_prefix
from pyrv.sources.tracepoints import Catalogue

_ZSTD = b"\x28\xb5\x2f\xfd"
_COMPRESSED = (b"\x1f\x8b", b"\xfd7zXZ\x00", b"BZh")


class RawPagesFile:
    """One file of raw ring-buffer pages (one CPU's ``trace_pipe_raw``), decoded with the
    given formats; the layout comes from ``header_page``/``header_event`` beside the formats
    when ``formats_dir`` is given, else the usual 64-bit one."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        formats: FormatSet,
        *,
        cpu: int | None = None,
        layout: RingBufferLayout | None = None,
        source: str | None = None,
        partial: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.partial = partial  # damage ends the stream (reported) instead of the run
        self.stopped_at: int | None = None
        self.stop_reason: str | None = None
        self.source = source if source is not None else str(self.path)
        self.formats = formats
        if cpu is None:
            m = re.search(r"cpu(\d+)", Path(self.path).name)
            cpu = int(m.group(1)) if m else 0
        self.cpu = cpu
        lay = layout or RingBufferLayout()
        order = guess_byteorder(sample_headers([self.path], lay), lay)
        self.layout = RingBufferLayout(lay.page, lay.event, order)
        self.counter_clock = False
        self.has_context = True
        self.skipped: list[tuple[int, str]] = []
        self.dropped_incomplete = 0

    def __iter__(self) -> Iterator[TraceItem]:
        dec = PageDecoder(self.formats, self.layout, source=self.source)
        dec.check_time_order = True
        items = itertools.chain(
            [self.others_unseen()],
            flushed(iter_cpu_pages(self.path, self.cpu, self.formats, decoder=dec), dec, self.cpu),
        )
        if not self.partial:
            return track_comms(items)  # no saved cmdlines: comms from the events, as in a dir

        def damaged(exc: BinaryTraceError) -> str:
            self.stopped_at, self.stop_reason = exc.offset, exc.reason
            return f"{exc.reason}; CPU {self.cpu}"

        return track_comms(end_at_damage(items, self.cpu, self.source, damaged))

    def others_unseen(self) -> LostEvents:
        """A ring buffer is per CPU: pages given alone are one CPU's. Said first, as a gap,
        since per-task verdicts then rest on part of each task's life (its wakeups and
        switches on other CPUs are not seen) and may be false."""
        return LostEvents(
            None,
            None,
            f"only CPU {self.cpu}'s pages are given ({Path(self.path).name}): if the machine had"
            " other CPUs, none of their events is seen, so per-task monitors may miss the"
            " wakeups and switches of tasks that ran there too (give the directory of every"
            " CPU's pages)",
            0,
            self.source,
        )


def sniff(path: str | os.PathLike[str]) -> str:
    """What ``path`` holds: ``"rawdir"``, ``"tracedat"``, ``"zstd"`` (compressed text),
    ``"binary"`` (neither text nor a known binary form) or ``"text"`` (plain or gzip/xz/bz2
    text, and ``-``)."""
    name = os.fspath(path)
    if name == "-":
        return "text"
    p = Path(name)
    if p.is_dir():
        return "rawdir"
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        raise TraceError(str(name), None, f"cannot open: {exc}") from None
    if head.startswith(MAGIC) or is_tracedat_prefix(head):
        return "tracedat"
    if head.startswith((_ZSTD, *_COMPRESSED)):
        inner, readable = _decompressed_head(p, head)
        if inner.startswith(MAGIC) or (inner and is_tracedat_prefix(inner)):
            return "compressed tracedat"
        if not inner and not readable:
            return "compressed cut"  # nothing to tell its content by: the cut is the news
        if b"\x00" in inner:
            return "compressed binary"
        return "zstd" if head.startswith(_ZSTD) else "text"
    if b"\x00" in head:
        return "binary"
    return "text"


def open_trace(
    path: str | os.PathLike[str],
    *,
    formats: FormatSet | None = None,
    formats_dir: str | os.PathLike[str] | None = None,
    skip_bad_lines: bool = False,
    partial: bool = False,
    buffer: str | None = None,
    prefix: str = "",
    cpu: int | None = None,
    catalogue: Catalogue | None = None,
    source: str | None = None,
) -> tuple[Any, Iterator[TraceItem]]:
    """Open a trace of any supported kind: ``(reader, items)``.

    ``formats``/``formats_dir``: event formats for text traces that carry only type ids
    (``raw``/``hex`` options) and for a lone raw-pages file (``formats_dir`` also gives its
    ``header_page``/``header_event``); binary traces otherwise use their own.
    ``skip_bad_lines``: text only. ``partial``: trace.dat and raw directories (see
    :class:`~pyrv.sources.tracedat.TraceDat`); ``buffer``: trace.dat only. ``prefix``: raw
    directories with several sets of CPU files (``prefix="lost_"`` reads ``lost_cpuN.raw``).
    ``cpu``: a lone raw-pages file's CPU (default: the ``cpuN`` in its name, else 0).
    """
    if formats is None and formats_dir is not None:
        formats = FormatSet.load(_events_dir(Path(formats_dir)))
    stream = _open_stream(path, source)
    if stream is not None:  # read once: as text, or refused
        source = source or _stream_label(os.fspath(path))
        path = stream
    kind = "text" if stream is not None else sniff(path)
    spool = None
    if kind == "compressed binary" and formats is None:
        kind = "binary"  # refused below, with the reason, before anything is decompressed
    if kind.startswith("compressed "):  # read at its offsets: from a decompressed copy
        source = source or os.fspath(path)
        if cpu is None:
            m = re.search(r"cpu(\d+)", Path(path).name)
            cpu = int(m.group(1)) if m else 0
        spool, cut = _spooled(path, source, partial and kind != "compressed cut")
        path, kind = f"/proc/self/fd/{spool.fileno()}", kind.split()[1]
    reader: Any
    if kind == "rawdir":
        root = Path(path)
        if not find_cpu_files(root, prefix):
            raise TraceError(
                source or str(root),
                None,
                "a directory, but not one of raw trace pages (no cpuN.raw, traces/cpuN or"
                " per_cpu/cpuN/trace_pipe_raw files)",
            )
        reader = RawTraceDir(root, prefix=prefix, formats=formats, source=source, partial=partial)
    elif kind == "tracedat":
        reader = TraceDat(path, partial=partial, buffer=buffer, source=source)
    elif kind == "zstd":
        reader = TextTraceReader(
            _zstd_stream(path),
            source=source or os.fspath(path),
            formats=formats,
            skip_bad_lines=skip_bad_lines,
            catalogue=catalogue,
        )
    elif kind == "binary":
        if formats is None:
            raise TraceError(
                source or os.fspath(path),
                None,
                "binary data that is not a trace.dat file: if it holds raw ring-buffer pages"
                " (trace_pipe_raw), give its event format files with --formats DIR, or"
                " pass the directory holding it with its events/ directory",
            )
        layout = RingBufferLayout.load(formats_dir) if formats_dir is not None else None
        reader = RawPagesFile(path, formats, cpu=cpu, layout=layout, source=source, partial=partial)
    else:

        def text_reader() -> TextTraceReader:
            return TextTraceReader(
                path,
                source=source,
                formats=formats,
                skip_bad_lines=skip_bad_lines,
                catalogue=catalogue,
            )

        reader = text_reader()
        if stream is None and _has_dropped_markers(path):  # a report: place its markers
            return reader, place_text_losses(text_reader(), reader)
    if spool is not None:
        reader.spool = spool  # the copy lives as long as its reader (it has no name)
        if cut >= 0:  # said in the result, where its reader saw nothing wrong
            reader.decompressed_cut = cut
    return reader, iter(reader)


_DROPPED = b"EVENTS DROPPED]"


def _has_dropped_markers(path: str | os.PathLike[str]) -> bool:
    """Whether a re-readable text file (plain or compressed) holds a trace-cmd loss marker;
    stdin cannot be read twice, and a file that cannot be read is the reader's to report."""
    if os.fspath(path) == "-" or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as raw:
            stream = _sniff(raw, os.fspath(path))
            tail = b""
            while chunk := stream.read(1 << 20):
                if _DROPPED in tail + chunk:
                    return True
                tail = chunk[-len(_DROPPED) :]
    except (OSError, EOFError, ValueError, TraceError):
        return False
    return False


def _is_stream(name: str) -> bool:
    """``-``, or a path that is neither a regular file nor a directory (a FIFO, a tty)."""
    if name == "-":
        return True
    try:
        mode = os.stat(name).st_mode
    except OSError:
        return False  # the readers say why it cannot be opened
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _stream_kind(name: str) -> str:
    """What a stream input is, for messages: standard input, a FIFO, a character device..."""
    if name == "-":
        return "standard input"
    mode = os.stat(name).st_mode
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a stream (not a regular file)"


def _stream_label(name: str) -> str:
    return "<stdin>" if name == "-" else name


def _open_stream(path: Any, source: str | None) -> IO[bytes] | None:
    """A stream input opened once, its head peeked: the buffered stream when it holds text
    (plain, gzip/xz/bz2, zstd: decompressed here), None when ``path`` is not a stream."""
    if not isinstance(path, str | os.PathLike) or not _is_stream(os.fspath(path)):
        return None
    name = os.fspath(path)
    label = source or _stream_label(name)
    try:
        raw = sys.stdin.buffer if name == "-" else open(name, "rb")  # noqa: SIM115 - the reader's
    except OSError as exc:
        raise TraceError(label, None, f"cannot open: {exc}") from None
    buf = raw if hasattr(raw, "peek") else io.BufferedReader(raw)  # type: ignore[arg-type]
    head = buf.peek(4096)[:4096]  # type: ignore[attr-defined]
    if head.startswith((_ZSTD, *_COMPRESSED)):  # told apart by what it holds
        buf = _decompressing(buf, head)
        if not hasattr(buf, "peek"):
            buf = io.BufferedReader(buf)  # type: ignore[arg-type]
        try:
            head = buf.peek(4096)[:4096]  # type: ignore[attr-defined]
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            raise TraceError(label, None, f"cannot read: {exc}") from None
    dat = head.startswith(MAGIC) or is_tracedat_prefix(head)
    if dat or b"\x00" in head:
        what = "a trace.dat file" if dat else "binary data"
        if name != "-":
            buf.close()
        raise TraceError(
            label,
            None,
            f"{what} on {_stream_kind(name)}: it is read at its offsets (sections, pages),"
            " which a stream cannot give; pass the file itself, or write the stream to a file"
            " first",
        )
    return buf  # type: ignore[return-value]


def _decompressing(fh: IO[bytes], head: bytes) -> IO[bytes]:
    """The decompressed stream of a gzip/xz/bz2/zstd file (``head``: its first bytes)."""
    if head.startswith(_ZSTD):
        return _zstd_stream(fh)
    for magic, what in _MAGIC:
        opener = _DECOMPRESSORS.get(what)
        if opener is not None and head.startswith(magic):
            return opener(fh)
    raise ValueError("not compressed")


def _decompressed_head(path: Path, head: bytes) -> tuple[bytes, bool]:
    """The first decompressed bytes of a compressed file, as many as could be read, and
    whether the stream was readable that far (False: it is cut or corrupt before)."""
    out = b""
    try:
        with open(path, "rb") as fh:
            stream = _decompressing(fh, head)
            while len(out) < 4096 and (chunk := stream.read1(4096)):  # type: ignore[attr-defined]
                out += chunk
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, TraceError):
        return out[:4096], False
    return out[:4096], bool(out) or _ends_cleanly(path, head)


def _ends_cleanly(path: Path, head: bytes) -> bool:
    """Whether a compressed file that decompressed to nothing is a complete stream (an
    empty input) rather than one cut before its first output."""
    if not head.startswith(_ZSTD):
        return True  # gzip, xz and bz2 raise when cut
    with open(path, "rb") as fh:
        return _copy_decompressed(fh, head, io.BytesIO())


#: decompressed bytes copied at a time into a spool
_SPOOL_STEP = 1 << 20


class _SpoolFull(Exception):
    """Writing the decompressed copy failed (the temporary directory is full, say)."""


def _spooled(path: str | os.PathLike[str], source: str, partial: bool) -> tuple[IO[bytes], int]:
    """A compressed trace.dat (or raw-pages file) decompressed into an anonymous temporary
    file, for readers that need its offsets: the file has no name (``O_TMPFILE``, or unlinked
    at once), so it goes with the process however it ends, and is read through
    ``/proc/self/fd``. Returns the file and, for a stream cut short that ``partial`` lets
    through, how many bytes it holds (-1: the stream was complete).

    A cut stream is an error naming how much of it was decompressed; with ``partial`` what
    it holds is read (the reader then says where its content stops). A corrupt stream (a
    failed check, invalid data) is an error either way: gzip checks its data only at the
    end, so nothing before the damage can be trusted."""
    import tempfile

    spool = tempfile.TemporaryFile()  # noqa: SIM115 - handed to the reader, which keeps it
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)  # the magic says which decompressor
            fh.seek(0)
            try:
                complete = _copy_decompressed(fh, head, spool)
            except _SpoolFull as exc:
                raise TraceError(
                    source,
                    None,
                    f"cannot write its decompressed copy in {tempfile.gettempdir()}: {exc}"
                    " (set TMPDIR to a directory with room)",
                ) from None
            except (EOFError, OSError, ValueError, lzma.LZMAError, zlib.error) as exc:
                if isinstance(exc, TraceError):
                    raise
                if not isinstance(exc, EOFError):
                    raise TraceError(
                        source,
                        None,
                        f"the compressed data is corrupt ({exc}), found after {spool.tell()}"
                        " decompressed bytes: none of it can be trusted",
                    ) from None
                complete = False
        held = spool.tell()
        if not complete and (not partial or held == 0):
            raise TraceError(
                source,
                None,
                f"the compressed stream is cut short after {held} decompressed bytes"
                + ("; --partial verifies what precedes" if held else ""),
            )
        spool.flush()
    except BaseException:
        spool.close()
        raise
    return spool, (-1 if complete else held)


def _copy_decompressed(fh: IO[bytes], head: bytes, out: IO[bytes]) -> bool:
    """Decompress ``fh`` into ``out`` as it comes (what precedes damage is kept); whether the
    stream was complete (gzip, xz and bz2 raise EOFError when it ends early; damage raises)."""

    def write(data: bytes) -> None:
        try:
            out.write(data)
        except OSError as exc:
            raise _SpoolFull(exc.strerror or str(exc)) from None

    if not head.startswith(_ZSTD):
        stream = _decompressing(fh, head)
        while chunk := stream.read1(_SPOOL_STEP):  # type: ignore[attr-defined]
            write(chunk)
        return True
    zstandard = _zstandard(str(fh.name))
    dctx = zstandard.ZstdDecompressor()
    dobj, ended = dctx.decompressobj(), True
    while data := fh.read(_SPOOL_STEP):
        while data:  # a file may hold several frames, one after the other
            if dobj.eof:
                dobj = dctx.decompressobj()
            try:
                write(dobj.decompress(data))
            except zstandard.ZstdError as exc:
                raise ValueError(str(exc)) from None
            data = dobj.unused_data if dobj.eof else b""
        ended = dobj.eof
    return ended


def _events_dir(root: Path) -> Path:
    for d in (root / "events", root / "formats"):
        if d.is_dir():
            return d
    return root


def _zstandard(label: str) -> Any:
    """The ``zstandard`` module, or the error saying how to get it."""
    try:
        import zstandard
    except ImportError:
        raise TraceError(
            label,
            None,
            "zstd-compressed input: reading it needs the 'zstandard' package (pip install"
            " zstandard), or decompress it first (zstd -d)",
        ) from None
    return zstandard


def _zstd_stream(path: str | os.PathLike[str] | IO[bytes]) -> IO[bytes]:
    """A zstd-compressed file (or stream) as a binary stream (``zstandard`` reads it)."""
    named = isinstance(path, str | os.PathLike)
    zstandard = _zstandard(os.fspath(path) if named else str(getattr(path, "name", "<stream>")))
    raw = open(path, "rb") if named else path  # noqa: SIM115 - closed with the stream
    stream = zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return io.BufferedReader(stream)  # type: ignore[arg-type]
