"""Reader for trace-cmd's ``trace.dat`` files, versions 6 and 7.

Both start with ``17 08 44 "tracing"``, the version as text and a NUL, the byte order
(0 = little), the user-space ``long`` size and the page size; every number after that is in
the file's byte order.

- **Version 6** is sequential: ``header_page``/``header_event``, ftrace event formats, event
  formats by system, kallsyms (u32 size, skipped), printk formats (u32 size), saved cmdlines
  (u64 size), the CPU count, ``options  \\0`` with ``{u16 id, u32 size, data}`` options up to
  id 0, then ``flyrecord\\0`` with ``{u64 offset, u64 size}`` per CPU (and the trace clock,
  u64 size + text, when the TRACECLOCK option is there) or ``latency  \\0`` with text.
  Instance buffers are BUFFER options (u64 offset + name) pointing at their own
  ``flyrecord`` block.
- **Version 7** is sectioned: after the page size come the compression name and version and
  the u64 offset of the first options section. Sections have a 16-byte header ``{u16 id,
  u16 flags (bit 0: compressed), u32 description string id, u64 size}``; a compressed section
  holds ``{u32 compressed size, u32 size, data}``. Options sections chain through their DONE
  option (u64 offset of the next, 0 = last). Options 16-21 give the offsets of the metadata
  sections (same blocks as in v6); BUFFER (3) gives ``u64 section offset, name, clock, u32 page
  size, u32 CPU count, {u32 cpu, u64 offset, u64 size}`` per CPU; BUFFER_TEXT (22) a latency
  text buffer. Compressed CPU data is ``u32 chunk count`` then chunks ``{u32 compressed size,
  u32 size, data}`` of ring-buffer pages. Compression ``none``, ``zlib`` (stdlib) and
  ``zstd`` (the ``zstandard`` package, imported only for such files) are read.

Events are the pages of :mod:`pyrv.sources.ring_buffer`, decoded with the file's own
``header_page``/``header_event``/format files, ``comm`` from the saved cmdlines, every buffer
(the top one and the instances) and CPU merged by timestamp (ties: buffer order, then CPU
order, as ``trace-cmd report``). The OFFSET option and TSC2NSEC conversion are applied to the
timestamps as ``trace-cmd report`` does; DATE (wall-clock) is not, as ``report`` without
``--date``. A page with the missed-events flag yields a :class:`LostEvents` before its events
(``trace-cmd report`` prints ``CPU:N [M EVENTS DROPPED]``). The per-CPU ``stats`` trace-cmd
saved (CPUSTAT options: entries, overrun, dropped events...) are in :attr:`TraceDat.cpustats`.

Damage (a truncated file, a section that does not parse, a page that does not fit, a chunk
that does not decompress, CPU data that does not end where the index's size says: chunks
that end elsewhere, pages beyond the size or a size running into what follows, time going
backwards from page to page) raises :class:`~pyrv.sources.ring_buffer.BinaryTraceError`
(a :class:`TraceError`) naming the section and the byte offset. With ``partial=True`` the
damage of one CPU's data ends that CPU's stream instead: its events up to the damage are
yielded, then ``LostEvents(cpu, None, "truncated or corrupt ... at byte offset N ...",
ts=that CPU's last timestamp, or 0 when none was read, until_end=True)`` (the trace is
incomplete from there on, for every CPU: nothing after it is judged), and
:attr:`TraceDat.stopped_at` and :attr:`TraceDat.stop_reason` say where and why reading
stopped. Damage in what every
event needs (the file header, the headers, the formats, the options before the data) raises
even with ``partial=True``: nothing could be read. The file header's page size must be the one
``header_page`` describes. An offset or size past the end of the file is called a cut only
when that is plausible: far past it (beyond twice the file size, or 2^48 and more) it is a
corrupt number (or the wrong byte order). In v7 every section the index points at must lie
within the file, and what follows the last of them (trace-cmd's strings section) must be whole
sections up to the end of the file, the compressed ones decompressing; a file cut there is an
error, and with ``partial=True`` all its events are read and ``stopped_at``/``stop_reason`` say
where the damage is.

v7 writes each buffer's index (the BUFFER option: CPU -> offset, size) in an options section
*after* its data, so a cut file has lost it; without ``partial`` that is an error naming the
options section and offset. With ``partial=True`` the data is found again by
:mod:`pyrv.sources.tracedat_scan` from the flyrecord section that follows the last readable
options section, and a CPU's data is read only where its CPU is certain (see there: trace-cmd's
CPU order, compressed data's own chunk sizes, the CPUSTAT options written before the data).
What cannot be attributed is not read: each CPU it may belong to gets a ``LostEvents(cpu,
None, "not read: ...", until_end=True)`` at ts 0 naming the offset (so nothing is judged); a
buffer index lost after complete data costs nothing but is still reported in
``stopped_at``/``stop_reason``.
"""

from __future__ import annotations

import io
import mmap
import os
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent, TraceItem
from pyrv.sources.formats import FormatSet
from pyrv.sources.merge import merge_by_time
from pyrv.sources.ring_buffer import (
    COUNTER_CLOCKS,
    BinaryTraceError,
    PageDecoder,
    RingBufferLayout,
    Span,
    end_at_damage,
    flushed,
    parse_cmdlines,
    parse_printk,
    parse_trace_clock,
)

MAGIC = b"\x17\x08\x44tracing"
#: the largest block a compressed section or chunk may claim to decompress to (a corrupt size
#: must not make the reader allocate gigabytes)
_MAX_BLOCK = 1 << 28
#: no trace.dat is 256 TiB: an offset or size from this on is corrupt (or read in the wrong byte
#: order), whatever the file's size
_IMPLAUSIBLE = 1 << 48


def _far(end: int, file_size: int) -> bool:
    """Whether byte ``end`` is so far past a file's end that a corrupt number is likelier
    than a cut: from twice the file size on."""
    return end > 2 * file_size


def _beyond_file(what: str, end: int, file_size: int) -> str:
    """Why an offset or size (``what``) that reaches byte ``end`` of a file of ``file_size``
    bytes is wrong: a truncated file only when that is plausible (a file cut to less than half
    its size stays possible, and is said)."""
    if end >= _IMPLAUSIBLE:
        return f"an implausible {what} (corrupt header or wrong byte order)"
    if _far(end, file_size):
        return (
            f"that is byte {end}, far past the end of the file ({file_size} bytes): the {what}"
            " is corrupt (or read in the wrong byte order), unless the file was cut to less than"
            " half its size"
        )
    return f"the file ({file_size} bytes) is truncated (or the {what} corrupt)"


# option ids (trace-cmd's enum tracecmd_option_id)
OPT_DONE, OPT_DATE, OPT_CPUSTAT, OPT_BUFFER, OPT_TRACECLOCK, OPT_UNAME, OPT_HOOK = range(7)
#: a BUFFER option's CPU entry: u32 cpu, u64 offset, u64 size
_CPU_ENTRY = 20
OPT_OFFSET, OPT_CPUCOUNT, OPT_VERSION, OPT_PROCMAPS, OPT_TRACEID, OPT_TIME_SHIFT = range(7, 13)
OPT_GUEST, OPT_TSC2NSEC, OPT_STRINGS, OPT_HEADER_INFO, OPT_FTRACE_EVENTS = range(13, 18)
OPT_EVENT_FORMATS, OPT_KALLSYMS, OPT_PRINTK, OPT_CMDLINES, OPT_BUFFER_TEXT = range(18, 23)

_SECTION_NAMES = {
    OPT_DONE: "options",
    OPT_BUFFER: "flyrecord data",
    OPT_STRINGS: "strings",
    OPT_HEADER_INFO: "headers",
    OPT_FTRACE_EVENTS: "ftrace event formats",
    OPT_EVENT_FORMATS: "event formats",
    OPT_KALLSYMS: "kallsyms",
    OPT_PRINTK: "printk formats",
    OPT_CMDLINES: "saved cmdlines",
    OPT_BUFFER_TEXT: "latency text",
}


@dataclass(slots=True)
class CpuData:
    """Where one CPU's pages are in the file (``size`` is the stored size: compressed for
    compressed v7 files)."""

    cpu: int
    offset: int
    size: int
    truncated: bool = False  # found by scanning, cut: the file ends inside it


@dataclass(slots=True)
class BufferInfo:
    """One ring buffer of the file: ``""`` is the top instance."""

    name: str
    clock: str | None = None
    page_size: int = 0
    cpus: list[CpuData] = field(default_factory=list)
    offset: int = 0  # v7: the buffer's section; v6: its flyrecord block
    latency: bool = False  # a text buffer (latency-format output), not pages
    recovered: bool = False  # v7 with its BUFFER option lost: the CPU data found by scanning
    unread: list[int] = field(default_factory=list)  # recovered: CPUs whose data was not read
    note: str | None = None  # recovered: why (and from where) data was not attributed


class _Chunk:
    """Bounds-checked reads over a byte block of the file (or a decompressed section).

    ``base`` is the block's offset in the file (for messages); ``exact`` says whether offsets
    inside it are file offsets (False for decompressed data).
    """

    __slots__ = ("data", "pos", "base", "exact", "section", "source", "order")

    def __init__(
        self,
        data: bytes | mmap.mmap,
        pos: int,
        section: str,
        source: str,
        order: str,
        *,
        base: int = 0,
        exact: bool = True,
    ) -> None:
        self.data, self.pos, self.section, self.source, self.order = (
            data,
            pos,
            section,
            source,
            order,
        )
        self.base, self.exact = base, exact

    def error(self, detail: str, at: int | None = None) -> BinaryTraceError:
        at = self.pos if at is None else at
        if self.exact:
            return BinaryTraceError(self.source, self.section, self.base + at, detail)
        return BinaryTraceError(
            self.source,
            self.section,
            self.base,
            f"{detail} (at byte {at} of the decompressed section)",
        )

    def take(self, n: int, size_at: int | None = None) -> bytes:
        """``n`` bytes; ``size_at``: where the size field that said ``n`` is (errors name it)."""
        if n < 0 or self.pos + n > len(self.data):
            left = max(0, len(self.data) - self.pos)
            if self.base == 0 and self.exact:  # the whole file: a cut, or a corrupt size
                why = _beyond_file("size", self.pos + n, len(self.data))
                raise self.error(f"needs {n} bytes but only {left} remain: {why}", size_at)
            if n >= _IMPLAUSIBLE:
                raise self.error(
                    f"implausible size {n} (corrupt header or wrong byte order)", size_at
                )
            raise self.error(f"needs {n} bytes but only {left} remain", size_at)
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return bytes(out)

    def sized(self, width: int) -> bytes:
        """A block preceded by its size (a ``width``-byte number)."""
        at = self.pos
        return self.take(self.num(width), at)

    def num(self, size: int) -> int:
        return int.from_bytes(self.take(size), "little" if self.order == "<" else "big")

    def u16(self) -> int:
        return self.num(2)

    def u32(self) -> int:
        return self.num(4)

    def u64(self) -> int:
        return self.num(8)

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.error("unterminated string (the file is truncated?)")
        out = bytes(self.data[self.pos : end]).decode("utf-8", "replace")
        self.pos = end + 1
        return out

    def text(self, n: int) -> str:
        return self.take(n).decode("utf-8", "replace")

    def sized_text(self, width: int) -> str:
        return self.sized(width).decode("utf-8", "replace")


def _decompressor(name: str, source: str) -> Callable[[bytes, int], bytes]:
    """``decompress(data, size)`` for the file's compression algorithm."""
    if name == "zlib":
        return lambda data, size: zlib.decompress(data)
    if name == "zstd":
        try:
            import zstandard
        except ImportError:
            raise TraceError(
                source,
                None,
                "this trace.dat is zstd-compressed (trace-cmd's default): reading it needs the"
                " 'zstandard' Python package (pip install zstandard), or convert the file with"
                " 'trace-cmd convert --compression none'",
            ) from None
        dctx = zstandard.ZstdDecompressor()
        return lambda data, size: dctx.decompress(data, max_output_size=size)
    raise TraceError(
        source, None, f"unsupported trace.dat compression {name!r} (supported: zstd, zlib)"
    )


class TraceDat:
    """A trace-cmd ``trace.dat`` file (v6 or v7): its metadata, and its events when iterated.

    The metadata is read when the object is made: ``version``, ``byteorder`` (``<``/``>``),
    ``long_size`` (user space), ``page_size``, ``compression`` (``"none"``, ``"zstd"``,
    ``"zlib"``) and ``compression_version``, ``cpus``, ``buffers`` (:class:`BufferInfo`, the
    top instance first), ``clock`` (the top buffer's trace clock), ``cmdlines`` (pid -> comm),
    ``formats`` (:class:`FormatSet`, parsed lazily: ``formats.errors`` lists the ones that did
    not parse),
    ``layout`` (ring-buffer layout), ``printk`` (address -> format), ``cpustats`` (buffer name
    -> CPU -> ``stats`` key -> value), ``uname``, ``tracecmd_version``, ``trace_id``,
    ``ts_offset``, ``tsc2nsec``, ``date``, ``options`` (``(id, raw bytes)`` in file order).

    The metadata surface every pyrv reader has: ``source``, ``counter_clock`` (the clock does
    not count ns: ``counter``, ``uptime``, ``x86-tsc`` without TSC2NSEC), ``has_context``
    (True), ``skipped`` (empty), ``dropped_incomplete`` (0). After iterating with
    ``partial=True``: ``stopped_at`` (byte offset of the first damage, None when none) and
    ``stop_reason`` (a v7 file's lost buffer index sets them when the object is made).

    ``buffer`` selects one buffer by name (``""`` = top); None reads them all, as
    ``trace-cmd report`` does.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        partial: bool = False,
        buffer: str | None = None,
        source: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.source = source if source is not None else str(self.path)
        self.partial = partial
        self.buffer = buffer
        self.version = 0
        self.byteorder = "<"
        self.long_size = 8
        self.page_size = 4096
        self.compression = "none"
        self.compression_version = ""
        self.cpus = 0
        self.buffers: list[BufferInfo] = []
        self.clock: str | None = None
        self.cmdlines: dict[int, str] = {}
        self.formats = FormatSet()
        self.layout = RingBufferLayout()
        self.printk: dict[int, str] = {}
        self.kallsyms_size = 0
        self.cpustats: dict[str, dict[int, dict[str, str]]] = {}
        self.uname: str | None = None
        self.tracecmd_version: str | None = None
        self.trace_id: int | None = None
        self.ts_offset = 0
        self.tsc2nsec: tuple[int, int, int] | None = None
        self.date: str | None = None
        self.options: list[tuple[int, bytes]] = []
        self.counter_clock = False
        self.has_context = True
        self.skipped: list[tuple[int, str]] = []
        self.dropped_incomplete = 0
        self.stopped_at: int | None = None
        self.stop_reason: str | None = None
        self.index_lost: str | None = None  # v7 damage after the data (partial: recovered)
        self.text_reader: Any = None  # latency buffers: the text reader doing the work
        self._header_texts: tuple[str | None, str | None] = (None, None)
        self._decompress: Callable[[bytes, int], bytes] | None = None
        self._stat_buffer = ""
        self._section_ends: list[int] = []  # v7: where each section read ends
        self._started = False
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - closed after iterating / close()
        except OSError as exc:
            raise TraceError(self.source, None, f"cannot open: {exc}") from None
        try:
            size = os.fstat(self._fh.fileno()).st_size
            self._data: bytes | mmap.mmap = (
                mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            )
            self.file_size = size
            self._read_metadata()
        except BaseException:
            self.close()
            raise

    # -- public ---------------------------------------------------------------------------------

    def close(self) -> None:
        data = getattr(self, "_data", None)
        if isinstance(data, mmap.mmap):
            data.close()
        self._data = b""
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()

    def __enter__(self) -> TraceDat:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[TraceItem]:
        if self._started:
            raise RuntimeError("a TraceDat can be iterated only once")
        self._started = True
        return self._events()

    # -- metadata -------------------------------------------------------------------------------

    def _chunk(self, pos: int, section: str) -> _Chunk:
        return _Chunk(self._data, pos, section, self.source, self.byteorder)

    def _read_metadata(self) -> None:
        c = self._chunk(0, "file header")
        if len(self._data) < len(MAGIC) and is_tracedat_prefix(bytes(self._data)):
            raise BinaryTraceError(
                self.source,
                "magic",
                len(self._data),
                f"the file ends after {len(self._data)} bytes, inside the trace.dat magic"
                " (17 08 44 'tracing'): a truncated trace.dat file",
            )
        if bytes(self._data[:10]) != MAGIC:
            raise c.error("not a trace-cmd trace.dat file (bad magic)", 0)
        c.pos = 10
        ver = c.cstr()
        if not ver.isdigit() or int(ver) not in (6, 7):
            raise c.error(f"unsupported trace.dat version {ver!r} (6 and 7 are read)", 10)
        self.version = int(ver)
        endian = c.take(1)[0]
        self.byteorder = ">" if endian else "<"
        c.order = self.byteorder
        self.long_size = c.take(1)[0]
        page_size_at = c.pos
        self.page_size = c.u32()
        if self.version >= 7:
            self.compression = c.cstr()
            self.compression_version = c.cstr()
            if self.compression != "none":
                self._decompress = _decompressor(self.compression, self.source)
            field_at = c.pos
            first = c.u64()
            why = None
            if not first:
                why = (
                    "0, which trace-cmd never writes (the writer died before filling it in, or"
                    " the header is corrupt)"
                )
            elif first < c.pos:
                why = f"{first}, inside the file header (which ends at byte offset {c.pos})"
            elif first >= _IMPLAUSIBLE or _far(first, self.file_size):
                why = f"{first}: {_beyond_file('offset', first, self.file_size)}"
            if why is not None:
                raise c.error(
                    f"the offset of the first options section is {why}: the offset is invalid,"
                    " and without that section (the index of the headers and formats) no event"
                    " can be read, not even with --partial",
                    field_at,
                )
            self._read_v7(first)
        else:
            self._read_v6(c)
        if len(self.formats) == 0:
            raise BinaryTraceError(self.source, "event formats", None, "no event formats")
        hp, he = self._header_texts
        self.layout = RingBufferLayout.from_texts(hp, he, self.byteorder, source=self.source)
        if self.page_size != self.layout.page_size:  # 0 too: the data is read in such pages
            invalid = "is invalid and " if not self.page_size else ""
            raise BinaryTraceError(
                self.source,
                "file header",
                page_size_at,
                f"page size {self.page_size} {invalid}differs from the {self.layout.page_size}"
                " bytes header_page describes (its data field's offset + size): the file header"
                " is corrupt",
            )
        top = next((b for b in self.buffers if b.name == ""), None)
        clock = (top.clock if top is not None else None) or self.clock
        self.clock = clock
        self.counter_clock = clock in COUNTER_CLOCKS and self.tsc2nsec is None

    # v6 ---------------------------------------------------------------------------------------

    def _read_v6(self, c: _Chunk) -> None:
        c.section = "headers"
        self._headers_block(c)
        c.section = "ftrace event formats"
        self._ftrace_block(c)
        c.section = "event formats"
        self._events_block(c)
        c.section = "kallsyms"
        self._kallsyms_block(c)
        c.section = "printk formats"
        self._printk_block(c)
        c.section = "saved cmdlines"
        self._cmdlines_block(c)
        c.section = "CPU count"
        self.cpus = c.u32()
        c.section = "options"
        kind = c.take(10)
        if kind.startswith(b"options"):
            while True:
                oid = c.u16()
                if oid == OPT_DONE:
                    break
                self._option(oid, c.sized(4), c)
            kind = c.take(10)
        top = BufferInfo("", self.clock, self.page_size, offset=c.pos - 10)
        self.buffers.insert(0, top)
        if kind.startswith(b"latency"):
            top.latency = True
            return
        if not kind.startswith(b"flyrecord"):
            raise c.error(f"expected 'flyrecord' or 'latency', found {kind!r}", c.pos - 10)
        c.section = "flyrecord"
        top.cpus = self._v6_cpu_table(c)
        if any(oid == OPT_TRACECLOCK for oid, _ in self.options):
            self.clock = parse_trace_clock(c.sized_text(8))
            top.clock = self.clock
        for buf in self.buffers[1:]:
            bc = self._chunk(buf.offset, f"buffer {buf.name!r} flyrecord")
            kind = bc.take(10)
            if kind.startswith(b"options"):
                raise bc.error("per-buffer options in a v6 file are not supported")
            if not kind.startswith(b"flyrecord"):
                raise bc.error(f"expected 'flyrecord', found {kind!r}", bc.pos - 10)
            buf.cpus = self._v6_cpu_table(bc)
            buf.clock = buf.clock or self.clock
            buf.page_size = self.page_size

    def _v6_cpu_table(self, c: _Chunk) -> list[CpuData]:
        out = []
        for cpu in range(self.cpus):
            offset, size = c.u64(), c.u64()
            out.append(CpuData(cpu, offset, size))
        return out

    # v7 ---------------------------------------------------------------------------------------

    def _section_header(self, offset: int, name: str) -> tuple[_Chunk, int, int, int]:
        """``(chunk at the content, id, flags, size)`` of the section at ``offset``, checked to
        lie within the file (a cut file, or a corrupt size, is an error naming the section)."""
        c = self._chunk(offset, name)
        if offset + 16 > self.file_size:
            raise c.error(
                f"the file ends {max(0, self.file_size - offset)} bytes into this section's"
                " 16-byte header: " + _beyond_file("offset", offset + 16, self.file_size),
                offset,
            )
        sid, flags, _desc, size = c.u16(), c.u16(), c.u32(), c.u64()
        end = c.pos + size
        if end > self.file_size:
            raise c.error(
                f"the section (its header at byte offset {offset}) holds {size} bytes from"
                f" here: {_beyond_file('size', end, self.file_size)}",
                c.pos,
            )
        self._section_ends.append(end)
        return c, sid, flags, size

    def _section(self, offset: int, expect: int | None, name: str) -> _Chunk:
        """The content of the section at ``offset`` (decompressed when flagged)."""
        c, sid, flags, size = self._section_header(offset, name)
        if expect is not None and sid != expect:
            raise c.error(f"expected section id {expect}, found {sid}", offset)
        start = c.pos
        if flags & 1:
            if self._decompress is None:
                raise c.error("compressed section in a file whose compression is 'none'", offset)
            data = self._inflate(c, start, "cannot decompress", "decompressed")
            if c.pos > start + size:
                raise c.error(
                    f"its compressed block runs to byte {c.pos}, past the section's end at"
                    f" {start + size}: the section's size is corrupt",
                    start,
                )
            return _Chunk(data, 0, name, self.source, self.byteorder, base=start, exact=False)
        return _Chunk(
            bytes(self._data[start : start + size]),
            0,
            name,
            self.source,
            self.byteorder,
            base=start,
        )

    def _check_sections(self) -> None:
        """After the index is read: the buffer sections it points at lie within the file, and
        what follows the last section it knows (trace-cmd's strings section, written last) is
        whole sections up to the end of the file, the compressed ones decompressing. A file cut
        there is an error naming the section (with ``partial``: where reading stopped, all
        events being read). Cheap: section headers, and small sections decompressed."""
        try:
            for buf in self.buffers:
                if not buf.recovered:
                    kind = OPT_BUFFER_TEXT if buf.latency else OPT_BUFFER
                    c, sid, _, _ = self._section_header(buf.offset, _SECTION_NAMES[kind])
                    if sid != kind:
                        raise c.error(f"expected section id {kind}, found {sid}", buf.offset)
            pos = max(self._section_ends, default=self.file_size)
            while pos < self.file_size:
                sid = self._int(self._data[pos : pos + 2]) if pos + 2 <= self.file_size else -1
                name = _SECTION_NAMES.get(sid, f"section id {sid}")
                if sid == OPT_BUFFER:  # CPU data: only where it ends (it is read in chunks)
                    self._section_header(pos, name)
                else:
                    self._section(pos, None, name)
                pos = self._section_ends[-1]
        except BinaryTraceError as exc:
            if not self.partial:
                raise
            if self.stopped_at is None:
                self.stopped_at, self.stop_reason = exc.offset, exc.reason

    def _read_v7(self, options_offset: int) -> None:
        sections: dict[int, int] = {}
        seen: set[int] = set()
        offset = options_offset
        last_end = 0  # where the last readable options section ends
        damage: BinaryTraceError | None = None
        while offset:
            if offset in seen:
                raise BinaryTraceError(self.source, "options", offset, "options sections loop")
            seen.add(offset)
            try:
                c = self._options_section(offset)
            except BinaryTraceError as exc:
                damage = exc
                break
            last_end = offset + 16 + self._int(self._data[offset + 8 : offset + 16])
            offset = self._options(c, sections)
        if damage is not None and not (
            sections.keys() >= {OPT_HEADER_INFO, OPT_EVENT_FORMATS} and self._flyrecord_at(last_end)
        ):
            if not last_end:  # the first options section: what says where the metadata is
                raise BinaryTraceError(
                    self.source,
                    damage.section,
                    damage.offset,
                    f"{damage.detail}; the first options section (the index of the headers"
                    " and formats), which trace-cmd writes before the CPU data, is lost: no"
                    " event can be read, not even with --partial",
                ) from None
            raise damage
        for oid, block in (
            (OPT_HEADER_INFO, self._headers_block),
            (OPT_FTRACE_EVENTS, self._ftrace_block),
            (OPT_EVENT_FORMATS, self._events_block),
            (OPT_KALLSYMS, self._kallsyms_block),
            (OPT_PRINTK, self._printk_block),
            (OPT_CMDLINES, self._cmdlines_block),
        ):
            if oid in sections:
                block(self._section(sections[oid], oid, _SECTION_NAMES[oid]))
            elif oid in (OPT_HEADER_INFO, OPT_EVENT_FORMATS):
                raise BinaryTraceError(
                    self.source, _SECTION_NAMES[oid], None, "the file has no such section"
                )
        if damage is None and self._flyrecord_at(last_end):
            damage = BinaryTraceError(
                self.source,
                "options",
                last_end,
                "the flyrecord data here has no BUFFER option saying which CPU is where",
            )
        if damage is not None:
            self._index_lost(damage, last_end)
        else:
            self._check_sections()
        if not self.cpus:
            self.cpus = max((len(b.cpus) for b in self.buffers), default=0)

    def _options_section(self, offset: int) -> _Chunk:
        if offset >= self.file_size:
            raise BinaryTraceError(
                self.source,
                "options",
                offset,
                "the section lies past the end of the file: "
                + _beyond_file("offset", offset, self.file_size),
            )
        return self._section(offset, OPT_DONE, "options")

    def _options(self, c: _Chunk, sections: dict[int, int]) -> int:
        """Read one options section's options; returns the next section's offset (0: none)."""
        while True:
            oid = c.u16()
            data = c.sized(4)
            if oid == OPT_DONE:
                if len(data) < 8:
                    raise c.error("DONE option shorter than 8 bytes")
                return self._int(data[:8])
            if OPT_HEADER_INFO <= oid <= OPT_CMDLINES and len(data) >= 8:
                sections[oid] = self._int(data[:8])
                continue
            self._option(oid, data, c)

    def _flyrecord_at(self, pos: int) -> bool:
        """Whether a flyrecord section no BUFFER option points at starts at ``pos``."""
        if not pos or pos + 16 > self.file_size or any(b.offset == pos for b in self.buffers):
            return False
        return self._int(self._data[pos : pos + 2]) == OPT_BUFFER

    def _int(self, raw: bytes) -> int:
        return int.from_bytes(raw, "little" if self.byteorder == "<" else "big")

    def _index_lost(self, damage: BinaryTraceError, data_at: int) -> None:
        """The options after the data (v7's buffer index) are lost: an error that says so, or
        with ``partial`` the data found again by :mod:`~pyrv.sources.tracedat_scan`."""
        lost = (
            f"{damage.reason}; the buffer index trace-cmd writes after the CPU data (from byte"
            f" offset {data_at}) is lost"
        )
        if not self.partial:
            raise BinaryTraceError(
                self.source,
                damage.section,
                damage.offset,
                f"{damage.detail}; this is the buffer index trace-cmd writes after the CPU data"
                f" (from byte offset {data_at}): --partial reads the data before it",
            )
        from pyrv.sources.tracedat_scan import Scanner

        hp, he = self._header_texts  # the scan decodes pages (to count events): it needs these
        self.layout = RingBufferLayout.from_texts(hp, he, self.byteorder, source=self.source)
        Scanner(self).scan(data_at)
        self.index_lost = (
            lost
            + ", the data before it was found by scanning"
            + "".join(f"; buffer {b.name!r}: {b.note}" for b in self.buffers if b.note)
        )
        self.stopped_at = min(damage.offset or self.file_size, self.file_size)
        self.stop_reason = self.index_lost

    # options ----------------------------------------------------------------------------------

    def _option(self, oid: int, data: bytes, c: _Chunk) -> None:
        self.options.append((oid, data))
        order = "little" if self.byteorder == "<" else "big"
        text = data.rstrip(b"\0").decode("utf-8", "replace")
        if oid == OPT_DATE:
            self.date = text
        elif oid == OPT_OFFSET:
            try:
                self.ts_offset += int(text, 0)
            except ValueError:
                raise c.error(f"bad OFFSET option {text!r}") from None
        elif oid == OPT_CPUSTAT:
            self._cpustat(text)
        elif oid == OPT_TRACECLOCK:
            self.clock = parse_trace_clock(text)
        elif oid == OPT_UNAME:
            self.uname = text
        elif oid == OPT_VERSION:
            self.tracecmd_version = text
        elif oid == OPT_TRACEID and len(data) >= 8:
            self.trace_id = int.from_bytes(data[:8], order)
        elif oid == OPT_CPUCOUNT and len(data) >= 4:
            self.cpus = int.from_bytes(data[:4], order)
        elif oid == OPT_TSC2NSEC and len(data) >= 16:
            self.tsc2nsec = (
                int.from_bytes(data[0:4], order),
                int.from_bytes(data[4:8], order),
                int.from_bytes(data[8:16], order),
            )
        elif oid in (OPT_BUFFER, OPT_BUFFER_TEXT):
            self._buffer_option(oid, data, c)

    def _buffer_option(self, oid: int, data: bytes, parent: _Chunk) -> None:
        c = _Chunk(
            data, 0, "BUFFER option", self.source, self.byteorder, base=parent.base, exact=False
        )
        buf = BufferInfo("", offset=c.u64())
        buf.name = c.cstr()
        if self.version < 7:
            self.buffers.append(buf)
            return
        buf.clock = c.cstr()
        if oid == OPT_BUFFER_TEXT:
            buf.latency = True
        else:
            buf.page_size = c.u32()
            for _ in range(c.u32()):
                at = c.pos
                cd = CpuData(c.u32(), c.u64(), c.u64())
                if self._cpu_id_ok(buf, cd, c, at):
                    buf.cpus.append(cd)
            self._cpu_count_ok(buf, c, len(data))
            if buf.note is not None:
                known = {cd.cpu for cd in buf.cpus}
                buf.unread = [cpu for cpu in range(self.cpus) if cpu not in known] or [-1]
        if buf.name == "":
            self.buffers.insert(0, buf)
        else:
            self.buffers.append(buf)

    def _cpu_id_ok(self, buf: BufferInfo, cd: CpuData, c: _Chunk, at: int) -> bool:
        """A BUFFER option's CPU must be one the file has (CPUCOUNT) and appear once: a corrupt
        id would read a CPU's data as another's. With ``partial`` its data is not read, and the
        CPUs it may belong to get a gap (the caller sets ``buf.unread``)."""
        known = {o.cpu for o in buf.cpus}
        if (not self.cpus or cd.cpu < self.cpus) and cd.cpu not in known:
            return True
        why = (
            f"CPU {cd.cpu} appears twice"
            if cd.cpu in known
            else f"CPU {cd.cpu} is not one of the file's {self.cpus} CPUs (CPUCOUNT)"
        )
        err = c.error(f"{why}: the BUFFER option is corrupt", at)
        if not self.partial:
            raise err
        buf.note = f"{err.reason}; its data at byte offset {cd.offset} is not read"
        if self.stopped_at is None:
            self.stopped_at, self.stop_reason = cd.offset, err.reason
        return False

    def _cpu_count_ok(self, buf: BufferInfo, c: _Chunk, size: int) -> None:
        """Room for more CPU entries after the listed ones means the option's CPU count is
        corrupt: the CPUs it left out would be read as never having run. With ``partial``
        the CPUs not listed get a gap (the caller sets ``buf.unread``)."""
        if size - c.pos < _CPU_ENTRY:
            return
        err = c.error(
            f"{size - c.pos} bytes follow its {len(buf.cpus)} CPU entries, room for"
            f" {(size - c.pos) // _CPU_ENTRY} more: the BUFFER option's CPU count is corrupt",
            c.pos,
        )
        if not self.partial:
            raise err
        buf.note = f"{err.reason}; the data of the CPUs it does not list is not read"
        if self.stopped_at is None:
            self.stopped_at, self.stop_reason = c.pos + c.base, err.reason

    def _cpustat(self, text: str) -> None:
        """CPUSTAT options: ``CPU: N`` then ``key: value`` lines; ``Buffer: NAME`` switches the
        buffer the following ones belong to (trace-cmd writes them in that order)."""
        name = self._stat_buffer
        cpu: int | None = None
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if key == "Buffer":
                name = value
                cpu = None
            elif key == "CPU" and value.isdigit():
                cpu = int(value)
                self.cpustats.setdefault(name, {})[cpu] = {}
            elif cpu is not None:
                self.cpustats[name][cpu][key] = value
        self._stat_buffer = name

    # metadata blocks (same content in v6 and v7) ----------------------------------------------

    def _headers_block(self, c: _Chunk) -> None:
        if c.take(12) != b"header_page\0":
            raise c.error("expected 'header_page'", c.pos - 12)
        hp = c.sized_text(8)
        if c.take(13) != b"header_event\0":
            raise c.error("expected 'header_event'", c.pos - 13)
        he = c.sized_text(8)
        self._header_texts = (hp, he)

    def _add_format(self, text: str, system: str, c: _Chunk) -> None:
        # parsed when an event of it shows up; one odd format must not fail the whole file
        self.formats.add_text(text, system=system, source=f"{self.source}:{system}")

    def _ftrace_block(self, c: _Chunk) -> None:
        for _ in range(c.u32()):
            self._add_format(c.sized_text(8), "ftrace", c)

    def _events_block(self, c: _Chunk) -> None:
        for _ in range(c.u32()):
            system = c.cstr()
            for _ in range(c.u32()):
                self._add_format(c.sized_text(8), system, c)

    def _kallsyms_block(self, c: _Chunk) -> None:
        self.kallsyms_size = len(c.sized(4))

    def _printk_block(self, c: _Chunk) -> None:
        text = c.sized_text(4)
        if text:
            self.printk = parse_printk(text)

    def _cmdlines_block(self, c: _Chunk) -> None:
        self.cmdlines = parse_cmdlines(c.sized_text(8))

    # -- events ---------------------------------------------------------------------------------

    def _selected(self) -> list[BufferInfo]:
        if self.buffer is None:
            return self.buffers
        chosen = [b for b in self.buffers if b.name == self.buffer]
        if not chosen:
            names = ", ".join(repr(b.name) for b in self.buffers)
            raise TraceError(self.source, None, f"no buffer {self.buffer!r} (buffers: {names})")
        return chosen

    def _events(self) -> Iterator[TraceItem]:
        try:
            buffers = self._selected()
            texts = [b for b in buffers if b.latency]
            if texts:
                yield from self._latency(texts[0])
                return
            decoder = PageDecoder(
                self.formats,
                self.layout,
                source=self.source,
                cmdlines=self.cmdlines,
                printk=self.printk or None,
            )
            decoder.check_time_order = True
            streams = []
            for buf in buffers:
                if buf.page_size and buf.page_size != self.layout.page_size:
                    raise BinaryTraceError(
                        self.source,
                        f"buffer {buf.name!r}",
                        buf.offset,
                        f"page size {buf.page_size} differs from header_page's"
                        f" {self.layout.page_size}",
                    )
                for cd in buf.cpus:
                    if cd.size:
                        items = self._cpu_items(decoder, buf, cd)
                        items = flushed(items, decoder, cd.cpu, self._where(buf, cd))
                        streams.append(self._guard(items, buf, cd))
                streams += [iter([self._unread(buf, cpu)]) for cpu in buf.unread]
            items: Iterator[TraceItem] = (
                iter(streams[0]) if len(streams) == 1 else merge_by_time(streams)
            )
            if self.ts_offset or self.tsc2nsec:
                items = self._adjust(items)
            yield from items
        finally:
            self.close()

    def _inflate(self, c: _Chunk, at: int, fails: str, sized: str, release: bool = False) -> bytes:
        """One compressed block at ``c``: ``u32 csize, u32 usize, data``, decompressed and
        checked against its stated size (errors name the offset ``at``)."""
        assert self._decompress is not None
        size_at = c.pos
        csize, usize = c.u32(), c.u32()
        blob = c.take(csize, size_at)
        if release:
            self._release(at, c.pos)
        if usize > _MAX_BLOCK:
            raise c.error(f"implausible decompressed size {usize}", at)
        try:
            data = self._decompress(blob, usize)
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            raise c.error(f"{fails}: {exc}", at) from None
        if len(data) != usize:
            raise c.error(f"{sized} to {len(data)} bytes, expected {usize}", at)
        return data

    def _release(self, start: int, stop: int) -> None:
        """Let the kernel drop mapped pages a pass is done with (a read-only file mapping
        re-reads them if needed): the RSS of a long trace then stays flat."""
        data = self._data
        if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
            lo = start - start % mmap.PAGESIZE
            hi = stop - stop % mmap.PAGESIZE
            if hi > lo:
                data.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def _where(self, buf: BufferInfo, cd: CpuData) -> str:
        return f"cpu{cd.cpu} data" if buf.name == "" else f"buffer {buf.name!r} cpu{cd.cpu} data"

    def _next_after(self, buf: BufferInfo, cd: CpuData) -> int:
        """Where the next thing the file's index knows of starts after ``cd``'s data: another
        CPU's data, a buffer's block, the end of ``buf``'s v7 section, or the end of the file."""
        after = {self.file_size}
        for b in self.buffers:
            after.add(b.offset)
            after.update(o.offset for o in b.cpus if o.size)
        if self.version >= 7 and buf.offset + 16 <= self.file_size:
            after.add(buf.offset + 16 + self._int(self._data[buf.offset + 8 : buf.offset + 16]))
        return min((a for a in after if a > cd.offset), default=cd.offset + cd.size)

    def extent_damage(self, buf: BufferInfo, cd: CpuData) -> BinaryTraceError | None:
        """Uncompressed CPU data whose size in the index disagrees with the pages in the file:
        it runs into what follows it, or non-zero bytes follow it before the next thing (a
        corrupt size would otherwise drop pages silently). The error's offset is where reading
        must stop. A cut file (the data runs past its end) is reported elsewhere."""
        end = cd.offset + cd.size
        if buf.recovered or self._decompress is not None or not cd.size or cd.truncated:
            return None
        bound = self._next_after(buf, cd)
        where = self._where(buf, cd)
        index = (
            f"the {'BUFFER option' if self.version >= 7 else 'flyrecord'} index says CPU"
            f" {cd.cpu}'s data runs from byte offset {cd.offset} for {cd.size} bytes (to {end})"
        )
        if end > bound and bound < self.file_size:
            return BinaryTraceError(
                self.source,
                where,
                bound,
                f"{index}, into what starts at byte offset {bound}: the size is corrupt",
            )
        if end >= bound:
            return None
        tail = bytes(self._data[end:bound])
        rest = tail.lstrip(b"\0")
        if not rest:
            return None
        return BinaryTraceError(
            self.source,
            where,
            end,
            f"{index}, but data continues at byte offset {bound - len(rest)} (up to {bound}):"
            " the size is corrupt, the pages after it are not read",
        )

    def _cpu_items(self, decoder: PageDecoder, buf: BufferInfo, cd: CpuData) -> Iterator[TraceItem]:
        where = self._where(buf, cd)
        end = cd.offset + cd.size
        if self._decompress is None:
            extent = self.extent_damage(buf, cd)
            if extent is not None:
                end = min(end, extent.offset or end)
            if end > self.file_size:
                if not self.partial:
                    raise BinaryTraceError(
                        self.source,
                        where,
                        self.file_size,
                        f"the file ends at byte {self.file_size} but CPU {cd.cpu}'s data runs to"
                        f" {end}: the file is truncated",
                    )
                end = self.file_size
            psize = self.layout.page_size
            step = psize * 256
            for start in range(cd.offset, end, step):
                stop = min(start + step, end)
                # read, not sliced from the mapping: mapped pages a pass has touched stay in
                # the process's RSS, which would then grow with the file
                data = os.pread(self._fh.fileno(), stop - start, start)
                span = Span(start, (start - cd.offset) // psize)
                yield from decoder.pages(data, cd.cpu, span=span, section=where)
            if cd.offset + cd.size > self.file_size:
                raise BinaryTraceError(
                    self.source,
                    where,
                    self.file_size,
                    f"the file ends here but CPU {cd.cpu}'s data runs to {cd.offset + cd.size}:"
                    " the file is truncated",
                )
            if cd.truncated:
                raise BinaryTraceError(
                    self.source, where, end, "the file ends inside this CPU's data: it is truncated"
                )
            if extent is not None:
                raise extent
            return
        # compressed: u32 chunk count, then {u32 csize, u32 usize, data} chunks of pages
        c = self._chunk(cd.offset, where)
        count = c.u32()
        psize = self.layout.page_size
        rest = b""
        done = 0  # pages decoded so far
        tail = Span()  # where ``rest`` starts
        for i in range(count):
            at = c.pos
            if at >= end and not cd.truncated:
                raise self._chunk_damage(cd, where, at, count, f"chunk {i} would start here")
            data = self._inflate(
                c, at, "compressed chunk does not decompress", "chunk decompressed", release=True
            )
            span = Span(-len(rest), done, at)
            data = rest + data if rest else data
            whole = len(data) - len(data) % psize
            yield from decoder.pages(data[:whole], cd.cpu, span=span, section=where)
            done += whole // psize
            rest = data[whole:]
            tail = Span(span.offset + whole, done, at)
        if rest:
            yield from decoder.pages(rest, cd.cpu, span=tail, section=where)
        if c.pos not in (end, end + 4):
            raise self._chunk_damage(cd, where, c.pos, count, "they end here")

    def _chunk_damage(
        self, cd: CpuData, where: str, at: int, count: int, what: str
    ) -> BinaryTraceError:
        """Compressed data whose chunk count disagrees with the BUFFER option's size (which
        trace-cmd writes without the 4-byte count, pyrv's writer with it): a corrupt count
        would otherwise drop chunks silently, or read what follows as chunks."""
        end = cd.offset + cd.size
        return BinaryTraceError(
            self.source,
            where,
            at,
            f"CPU {cd.cpu}'s data claims {count} compressed chunks ({what}), but the BUFFER"
            f" option's index says it runs from byte offset {cd.offset} for {cd.size} bytes"
            f" (to {end}, or {end + 4} counting the chunk count): the chunk count is corrupt",
        )

    def _guard(
        self, items: Iterator[TraceItem], buf: BufferInfo, cd: CpuData
    ) -> Iterator[TraceItem]:
        """With ``partial``, damage ends this CPU's stream with a marker instead of raising."""

        def damaged(exc: BinaryTraceError) -> str:
            if not self.partial:
                raise exc
            if self.stopped_at is None or (exc.offset or 0) < self.stopped_at:
                self.stopped_at = exc.offset
                self.stop_reason = exc.reason
                if self.index_lost:
                    self.stop_reason += f"; {self.index_lost}"
            return f"{exc.reason}; CPU {cd.cpu}" + (f" of buffer {buf.name!r}" if buf.name else "")

        return end_at_damage(items, cd.cpu, self.source, damaged)

    def _unread(self, buf: BufferInfo, cpu: int) -> LostEvents:
        """A recovered buffer's CPU whose data (if it had any) could not be read."""
        of = f" of buffer {buf.name!r}" if buf.name else ""
        why = "the buffer index trace-cmd writes after the data is lost"
        return LostEvents(
            None if cpu < 0 else cpu,
            None,
            f"not read: {buf.note}; {'a CPU' if cpu < 0 else f'CPU {cpu}'}{of} has no events"
            f" read{f' ({why})' if buf.recovered else ''}",
            0,
            self.source,
            until_end=True,
        )

    def _adjust(self, items: Iterator[TraceItem]) -> Iterator[TraceItem]:
        """TSC2NSEC (``ts * mult >> shift``) then the OFFSET option, as trace-cmd applies them."""
        mult, shift, _ = self.tsc2nsec or (0, 0, 0)
        offset = self.ts_offset
        for item in items:
            if item.ts is not None:
                ts = item.ts
                if mult:
                    ts = (ts * mult) >> shift
                item.ts = ts + offset
            yield item

    def _latency(self, buf: BufferInfo) -> Iterator[TraceItem]:
        """A latency-format text buffer: the text reader reads it."""
        from pyrv.sources.ftrace_text import TextTraceReader

        if self.version >= 7:
            c = self._section(buf.offset, OPT_BUFFER_TEXT, "latency text")
            text = bytes(c.data[c.pos :])
        else:
            text = bytes(self._data[buf.offset + 10 :])
        reader = TextTraceReader(io.BytesIO(text), source=self.source, formats=self.formats)
        self.text_reader = reader
        for item in reader:
            self.counter_clock = reader.counter_clock
            self.has_context = reader.has_context
            self.skipped = reader.skipped
            yield item


def iter_tracedat(
    path: str | os.PathLike[str], *, partial: bool = False, buffer: str | None = None
) -> Iterator[TraceItem]:
    """Stream a trace.dat file's events (see :class:`TraceDat`)."""
    return iter(TraceDat(path, partial=partial, buffer=buffer))


def is_tracedat(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) is a trace.dat file's."""
    return head.startswith(MAGIC)


def is_tracedat_prefix(head: bytes) -> bool:
    """True when a whole file of ``head`` is a trace.dat cut inside its magic (no text file
    starts with the magic's 0x17 byte)."""
    return 0 < len(head) < len(MAGIC) and MAGIC.startswith(head)


__all__ = [
    "MAGIC",
    "BufferInfo",
    "CpuData",
    "TraceDat",
    "TraceEvent",
    "is_tracedat",
    "iter_tracedat",
]
