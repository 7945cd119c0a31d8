"""Decoder for the kernel's binary ring-buffer pages (``per_cpu/cpuN/trace_pipe_raw``).

Everything is taken from what the kernel describes about itself:

- ``events/header_page`` (:class:`~pyrv.sources.formats.HeaderPage`): the sub-buffer ("page")
  header: a u64 timestamp, the ``commit`` word (a kernel ``long``: 8 bytes, or 4 on 32-bit
  kernels; bit 31 = events were lost before this page, bit 30 = their count is stored as a
  ``long`` right after the data; the size is ``commit & (2**27 - 1)``), then the data; the
  page size is the data offset plus its size;
- ``events/header_event`` (:class:`~pyrv.sources.formats.HeaderEvent`): each event starts
  with a 32-bit word, ``type_len`` in the low 5 bits and ``time_delta`` in the high 27 (the
  other way round on big-endian kernels), optionally followed by ``array[0]``. ``type_len``
  1..28: data of ``4*type_len`` bytes; 0: the length is in ``array[0]`` (length + 4) and the
  data follows it; 29: padding (``time_delta == 0``: the rest of the page is unused;
  otherwise a discarded event of ``4 + array[0]`` bytes whose delta still counts, as in
  libtraceevent's kbuffer); 30: TIME_EXTEND, ``delta = array[0] << 27 | time_delta`` added to
  the running time; 31: TIME_STAMP, absolute time ``array[0] << 27 | time_delta`` whose top
  5 bits come from the running time;
- each event's ``format`` (:class:`~pyrv.sources.formats.EventFormat`): field offsets, sizes,
  signedness, fixed arrays, ``__data_loc``/``__rel_loc`` dynamic arrays (u32: low 16 bits the
  offset from the record start, or from the end of the field for ``__rel_loc``, high 16 bits
  the length) and a trailing ``char buf[]`` of size 0 (the rest of the record).

One :class:`EventDecoder` is built per event id, once, from its format: a precompiled
``struct.Struct`` reads every fixed field in one call and a small generated function turns
the tuple into the fields dict (``__data_loc`` strings are sliced only for the fields that
have them). Pages are then streamed: :func:`iter_cpu_pages` reads one CPU's pages from bytes,
a file or a path; :func:`iter_raw_dir` reads a directory of per-CPU page files with their
format files and merges the CPUs by timestamp.

Events come out exactly like the text reader's (:mod:`pyrv.sources.ftrace_text`): ``ts`` in
the trace clock's unit (ns for time clocks, with all the digits the text loses), ``pid`` =
``common_pid``, ``name`` without its system, fields by their format-file names, char arrays
as ``str`` up to the first NUL, numbers as ``int``; fields the catalogue prints as letters
(``sched_switch`` ``prev_state``) as the letters this kernel prints, from the trace's own
format file (``__print_flags`` table and the ``+`` bit); ``ftrace:print`` as ``name="print"``
with ``fields["buf"]`` (its one trailing newline removed, as text output shows it); numeric
arrays as ``str`` of hex values joined by ``", "`` (how ``sys_enter`` prints ``args``).
``flags`` is the irq-info column a 6.x kernel prints (``d..2.``), computed from
``common_flags``/``common_preempt_count``. ``comm`` is from the saved cmdlines when given
(``<idle>`` for pid 0, ``<...>`` when unknown). ``line`` is 0 (binary input has no lines).
An event id with no format gives ``name="unknown"``, ``fields={"type": id}``.

A page whose commit word has the missed-events flag yields ``LostEvents(cpu, count or None,
reason, ts=page timestamp)`` before the page's events. The kernel zeroes a page past its
commit (and stored count) before handing it to user space (``ring_buffer_read_page``), so a
page holding bytes there has a damaged commit word: after its committed events it yields
``LostEvents(cpu, None, ..., ts=the next page's time)``. A page or record that does not fit
raises :class:`BinaryTraceError` naming the source, the section (``cpuN page K``, pages
counted from the start of the CPU's stream) and the byte offset.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent, TraceItem
from pyrv.sources.formats import (
    EventFormat,
    FormatField,
    FormatSet,
    HeaderEvent,
    HeaderPage,
    parse_header_event,
    parse_header_page,
)
from pyrv.sources.merge import merge_by_time
from pyrv.sources.tracepoints import CATALOGUE, Catalogue

COMMIT_MASK = (1 << 27) - 1
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
TS_MSB = 0xF8 << 56

#: trace clocks whose timestamps are not nanoseconds (``trace_clock`` names)
COUNTER_CLOCKS = frozenset({"counter", "uptime", "x86-tsc"})


class BinaryTraceError(TraceError):
    """Binary input that cannot be decoded: names the file, the section and the byte offset.

    ``line`` is None; ``section`` (e.g. ``"cpu1 page 3"``, ``"options"``) and ``offset`` (bytes
    from the start of the file) say where; ``detail`` is the reason alone.
    """

    def __init__(self, source: str, section: str, offset: int | None, detail: str) -> None:
        self.section = section
        self.offset = offset
        self.detail = detail
        where = f"{section} at byte offset {offset}" if offset is not None else section
        super().__init__(source, None, f"{where}: {detail}")

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (BinaryTraceError, (self.source, self.section, self.offset, self.detail))


@dataclass(frozen=True, slots=True)
class Span:
    """Where a buffer of pages came from, so that an error points into the file.

    ``offset`` is the position of the buffer's first byte: in the file for plain data, in the
    decompressed content of the chunk at file offset ``chunk`` for compressed data (negative
    when the buffer starts with the tail of the chunk before). ``first_page`` is the number of
    the buffer's first page within its CPU's stream (pages are counted from the stream's start,
    not from the buffer's).
    """

    offset: int = 0
    first_page: int = 0
    chunk: int | None = None

    def error(
        self,
        source: str,
        where: str,
        page_size: int,
        base: int,
        pos: int,
        why: str,
        kind: type[BinaryTraceError] = BinaryTraceError,
    ) -> BinaryTraceError:
        """The error for byte ``pos`` of the buffer, in the page that starts at ``base``."""
        return kind(source, *self.locate(where, page_size, base, pos), why)

    def locate(self, where: str, page_size: int, base: int, pos: int) -> tuple[str, int]:
        """``(section, file offset)`` of byte ``pos`` of the buffer, in the page at ``base``."""
        page = f"{where} page {self.first_page + base // page_size}"
        if self.chunk is None:
            return page, self.offset + pos
        return f"{page}, byte {self.offset + pos} of the decompressed chunk", self.chunk


class _Bad(Exception):
    """A record that does not fit (raised by generated decoders, turned into the error)."""


class _BackwardsError(BinaryTraceError):
    """A stream's time went backwards from one page to the next (see PageDecoder.page)."""


# ---------------------------------------------------------------------------------------------
# Layout: header_page + header_event + byte order.


@dataclass(frozen=True, slots=True)
class RingBufferLayout:
    """How pages are laid out: the two header files and the kernel's byte order (``<``/``>``)."""

    page: HeaderPage = field(default_factory=HeaderPage)
    event: HeaderEvent = field(default_factory=HeaderEvent)
    byteorder: str = "<"

    @property
    def page_size(self) -> int:
        return self.page.page_size

    @property
    def long_size(self) -> int:
        return self.page.commit_size

    @classmethod
    def from_texts(
        cls,
        header_page: str | None,
        header_event: str | None,
        byteorder: str = "<",
        *,
        source: str = "",
    ) -> RingBufferLayout:
        """From the two files' text (None: the common 64-bit defaults)."""
        page = (
            parse_header_page(header_page, source=source or "header_page")
            if header_page is not None
            else HeaderPage()
        )
        event = (
            parse_header_event(header_event, source=source or "header_event")
            if header_event is not None
            else HeaderEvent()
        )
        return cls(page, event, byteorder)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], byteorder: str = "<") -> RingBufferLayout:
        """From ``header_page``/``header_event`` in ``directory``, its ``events/`` or
        ``formats/`` (a missing file means the usual 64-bit layout)."""
        texts: list[str | None] = []
        for name in ("header_page", "header_event"):
            path = _find_file(Path(directory), name)
            texts.append(_read_text(path) if path is not None else None)
        return cls.from_texts(texts[0], texts[1], byteorder, source=str(directory))


def _find_file(root: Path, name: str) -> Path | None:
    for d in (root, root / "events", root / "formats"):
        p = d / name
        if p.is_file():
            return p
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TraceError(str(path), None, f"cannot read: {exc}") from None


def guess_byteorder(pages: bytes | Iterable[bytes], layout: RingBufferLayout) -> str:
    """The byte order under which most of the page headers ``pages`` make sense (little on a
    tie). Several pages vote, so that one damaged header does not make every page of every
    CPU read in the wrong order (a header makes sense when its commit word's size fits the
    page and its unused flag bits are clear)."""
    if isinstance(pages, (bytes, bytearray, memoryview)):
        pages = [bytes(pages)]
    hp = layout.page
    code = "Q" if hp.commit_size == 8 else "I"
    votes = {"<": 0, ">": 0}
    for page in pages:
        if len(page) < hp.commit_offset + hp.commit_size:
            continue
        for order in votes:
            commit = struct.unpack_from(order + code, page, hp.commit_offset)[0]
            high = commit >> 32  # 0, or all ones when the flags were sign-extended
            if (
                (commit & COMMIT_MASK) <= hp.data_size
                and not commit & (7 << 27)
                and high in (0, 0xFFFFFFFF)
            ):
                votes[order] += 1
    return ">" if votes[">"] > votes["<"] else "<"


def sample_headers(
    paths: Iterable[Path | str], layout: RingBufferLayout, per_file: int = 16
) -> list[bytes]:
    """Page headers spread over each page file, for :func:`guess_byteorder`. Only regular
    files are sampled at offsets; anything else (a live ``trace_pipe_raw`` would hand its
    pages out) gives nothing."""
    psize, head = layout.page_size, layout.page.data_offset
    out: list[bytes] = []
    for path in paths:
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    continue
                count = -(-st.st_size // psize)
                step = max(1, count // per_file)
                out += [os.pread(fh.fileno(), head, i * psize) for i in range(0, count, step)]
        except OSError:
            continue  # reading it later says why
    return out


# ---------------------------------------------------------------------------------------------
# irq-info flags column, as kernel 6.x prints it (kernel/trace/trace_output.c).

_IRQS_OFF, _NR_LAZY, _NR, _HARDIRQ, _SOFTIRQ, _PREEMPT_RESCHED, _NMI, _BH_OFF = (
    0x01,
    0x02,
    0x04,
    0x08,
    0x10,
    0x20,
    0x40,
    0x80,
)
_RESCHED = {
    _NR | _NR_LAZY | _PREEMPT_RESCHED: "B",
    _NR | _PREEMPT_RESCHED: "N",
    _NR_LAZY | _PREEMPT_RESCHED: "L",
    _NR | _NR_LAZY: "b",
    _NR: "n",
    _PREEMPT_RESCHED: "p",
    _NR_LAZY: "l",
}


def irq_flags(flags: int, preempt_count: int) -> str:
    """The 5-letter irq-info column (``d..2.``) for ``common_flags``/``common_preempt_count``."""
    c1 = "Dd"[not flags & _BH_OFF] if flags & _IRQS_OFF else "b" if flags & _BH_OFF else "."
    c2 = _RESCHED.get(flags & (_NR | _NR_LAZY | _PREEMPT_RESCHED), ".")
    nmi, hard, soft = flags & _NMI, flags & _HARDIRQ, flags & _SOFTIRQ
    if nmi:
        c3 = "Z" if hard else "z"
    elif hard:
        c3 = "H" if soft else "h"
    else:
        c3 = "s" if soft else "."
    low, high = preempt_count & 0xF, (preempt_count >> 4) & 0xF
    return f"{c1}{c2}{c3}{f'{low:x}' if low else '.'}{f'{high:x}' if high else '.'}"


def check_formats(formats: FormatSet, catalogue: Catalogue, source: str) -> None:
    """Refuse formats no record can be decoded by, before any verdict: a format without the
    ``common_type``/``common_pid`` every kernel writes, or an event whose task state pyrv turns
    into the kernel's letters (``prev_state``) without the ``__print_flags`` table that says
    which. Both mean a damaged file (a compressed section that decompressed to garbage has no
    checksum to catch it): read anyway, every pid would be -1 or no state would ever match."""
    for fmt in formats:
        what = f"event format {fmt.system + ':' if fmt.system else ''}{fmt.name}"
        names = {f.name for f in fmt.common_fields}
        missing = [n for n in ("common_type", "common_pid") if n not in names]
        if missing:
            first = [f.name for f in (*fmt.common_fields, *fmt.fields)][:4]
            raise BinaryTraceError(
                source,
                "event formats",
                None,
                f"{what} has no {' or '.join(missing)} field (its first fields: "
                f"{', '.join(first) or 'none'}): the format files are damaged",
            )
        tp = catalogue.lookup(f"{fmt.system}:{fmt.name}") if fmt.system else None
        if tp is None:
            tp = catalogue.lookup(fmt.name)
        states = [f.name for f in tp.fields if f.conv == "state"] if tp is not None else []
        own = {f.name for f in fmt.fields}
        if any(n in own for n in states) and fmt.state_flags() is None:
            raise BinaryTraceError(
                source,
                "event formats",
                None,
                f"{what}: its print fmt has no __print_flags table for {', '.join(states)}, so"
                " the letters this kernel prints for a task state cannot be known (the format"
                " file is damaged)",
            )


# ---------------------------------------------------------------------------------------------
# Field conversions used by the generated decoders.


def _cstr(raw: bytes) -> str:
    return raw.partition(b"\0")[0].decode("utf-8", "replace")


def _state_converter(table: tuple[tuple[int, str], ...], preempt_bit: int) -> Callable[[int], str]:
    from pyrv.sources.ftrace_text import state_letters

    cache: dict[int, str] = {}

    def conv(value: int) -> str:
        text = cache.get(value)
        if text is None:
            text = cache[value] = state_letters(value, table, preempt_bit)
        return text

    return conv


_INT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}
_ELEM_SIZES = (
    ("long long", 8),
    ("u64", 8),
    ("s64", 8),
    ("u32", 4),
    ("s32", 4),
    ("int", 4),
    ("u16", 2),
    ("s16", 2),
    ("short", 2),
    ("u8", 1),
    ("s8", 1),
    ("char", 1),
    ("bool", 1),
)


def _elem_size(f: FormatField, long_size: int) -> int:
    """Element size of a numeric array field."""
    if f.array_len and f.size and f.size % f.array_len == 0:
        return f.size // f.array_len
    base = f.type.replace("__data_loc", "").replace("__rel_loc", "").replace("[]", "").strip()
    for name, size in _ELEM_SIZES:
        if re.search(rf"\b{name}\b", base):
            return size
    if "long" in base or "*" in base:
        return long_size
    return 1


def _hex_array(raw: bytes, elem: int, order: str) -> str:
    """Numeric array as ``"3, 7ffc1234, 0"`` (unsigned hex, ``%lx`` style)."""
    n = len(raw) // elem
    if n == 0:
        return ""
    code = {1: "B", 2: "H", 4: "I", 8: "Q"}.get(elem)
    if code is None:
        return raw.hex()
    values = struct.unpack_from(f"{order}{n}{code}", raw)
    return ", ".join(f"{v:x}" for v in values)


# ---------------------------------------------------------------------------------------------
# One decoder per event id.


class EventDecoder:
    """Decodes the records of one event type.

    ``decode(buf, rec, end)`` reads the record at ``buf[rec:end]`` and returns ``(pid,
    common_flags, common_preempt_count, fields)`` (flags/preempt None when the format has no
    such field). It raises ``_Bad`` when the record is shorter than its fixed fields or a
    dynamic array points outside it.
    """

    __slots__ = ("format", "name", "system", "min_size", "decode")

    def __init__(
        self,
        fmt: EventFormat,
        layout: RingBufferLayout,
        catalogue: Catalogue | None = None,
        printk: dict[int, str] | None = None,
    ) -> None:
        self.format = fmt
        self.name = fmt.name
        self.system = fmt.system
        self.decode, self.min_size = _compile(fmt, layout, catalogue or CATALOGUE, printk)


def _compile(
    fmt: EventFormat,
    layout: RingBufferLayout,
    catalogue: Catalogue,
    printk: dict[int, str] | None,
) -> tuple[Callable[[bytes, int, int], tuple[int, int | None, int | None, dict]], int]:
    """Build the event's struct and its decode function (generated source, names via repr)."""
    order = layout.byteorder
    long_size = layout.long_size
    fields = sorted([*fmt.common_fields, *fmt.fields], key=lambda f: f.offset)
    codes: list[str] = []
    pos = 0
    index: dict[str, int] = {}
    singles: dict[str, struct.Struct] = {}  # fields that overlap others: read on their own
    for f in fields:
        code = _struct_code(f)
        if code is None:
            continue
        if f.offset < pos:
            singles[f.name] = struct.Struct(order + code)
            continue
        if f.offset > pos:
            codes.append(f"{f.offset - pos}x")
        index[f.name] = len(index)
        codes.append(code)
        pos = f.offset + f.size
    st = struct.Struct(order + "".join(codes))
    ns: dict[str, Any] = {
        "unpack_from": st.unpack_from,
        "_Bad": _Bad,
        "_cstr": _cstr,
        "_hex_array": _hex_array,
        "_tail": _tail_bytes,
        "_loc": _loc_bytes,
        "_int": int.from_bytes,
    }
    tp = catalogue.lookup(f"{fmt.system}:{fmt.name}") if fmt.system else None
    if tp is None:
        tp = catalogue.lookup(fmt.name)
    state_fields = {f.name for f in tp.fields if f.conv == "state"} if tp is not None else set()
    flags = fmt.state_flags() if state_fields else None
    bprint = printk is not None and fmt.system == "ftrace" and fmt.name in ("bprint", "bputs")
    raw_fields = {"buf"} if bprint and fmt.name == "bprint" else set()

    def value_expr(f: FormatField) -> str:
        """Python expression for the field's value (``v`` is the unpacked tuple)."""
        if f.name in singles:
            ns[f"_s_{f.name}"] = singles[f.name].unpack_from
            raw = f"_s_{f.name}(buf, rec)[0]"
        elif f.name in index:
            raw = f"v[{index[f.name]}]"
        elif f.size != 0:
            return "None"  # nothing fixed to read (a __data_loc that is not 4 bytes)
        else:
            raw = ""
        if f.data_loc:
            rel = f.offset + f.size if f.type.startswith("__rel_loc") else 0
            data = f"_loc(buf, rec, end, {raw}, {rel})"
            return _bytes_value(f, data, order, long_size)
        if f.size == 0:  # trailing buf[]: the rest of the record
            data = f"_tail(buf, rec + {f.offset}, end)"
            return data if f.name in raw_fields else _bytes_value(f, data, order, long_size)
        if f.array_len is not None or _struct_code(f) is None or f.size not in _INT_CODES:
            if f.is_string:
                return f"_cstr({raw})"
            if f.array_len is not None:
                return f"_hex_array({raw}, {_elem_size(f, long_size)}, {order!r})"
            return f"_int({raw}, {'little' if order == '<' else 'big'!r}, signed={f.signed})"
        if f.name in state_fields and flags is not None:
            ns[f"_st_{f.name}"] = _state_converter(*flags)
            return f"_st_{f.name}({raw})"
        return raw

    common = {f.name: f for f in fmt.common_fields}
    pid = value_expr(common["common_pid"]) if "common_pid" in common else "-1"
    cflags = value_expr(common["common_flags"]) if "common_flags" in common else "None"
    cpreempt = (
        value_expr(common["common_preempt_count"]) if "common_preempt_count" in common else "None"
    )
    items = []
    for f in fmt.fields:
        expr = value_expr(f)
        if fmt.system == "ftrace" and f.name == "buf" and f.is_string and not raw_fields:
            expr = f"_chomp({expr})"
            ns["_chomp"] = _chomp
        items.append(f"{f.name!r}: {expr}")
    body = [
        "def decode(buf, rec, end):",
        f"    if rec + {st.size} > end: raise _Bad('record shorter than its fixed fields')",
        "    v = unpack_from(buf, rec)",
        f"    return {pid}, {cflags}, {cpreempt}, {{{', '.join(items)}}}",
    ]
    exec(compile("\n".join(body), f"<decoder {fmt.system}:{fmt.name}>", "exec"), ns)  # noqa: S102
    decode = ns["decode"]
    if bprint:
        decode = _with_printk(decode, fmt.name, printk or {}, layout)
    return decode, st.size


def _struct_code(f: FormatField) -> str | None:
    """The struct code reading the field's raw value (None: nothing fixed to read)."""
    if f.data_loc:
        return "I" if f.size == 4 else None
    if f.size == 0:
        return None
    if f.array_len is None and f.size in _INT_CODES:
        code = _INT_CODES[f.size]
        return code if f.signed else code.upper()
    return f"{f.size}s"


def _bytes_value(f: FormatField, data: str, order: str, long_size: int) -> str:
    """Expression turning the bytes expression ``data`` into the field's value."""
    if "char" in f.type:
        return f"_cstr({data})"
    return f"_hex_array({data}, {_elem_size(f, long_size)}, {order!r})"


def _loc_bytes(buf: bytes, rec: int, end: int, word: int, rel: int) -> bytes:
    start = rec + rel + (word & 0xFFFF)
    stop = start + (word >> 16)
    if stop > end:
        raise _Bad("a __data_loc field points outside the record")
    return buf[start:stop]


def _tail_bytes(buf: bytes, start: int, end: int) -> bytes:
    return buf[start:end] if start < end else b""


def _chomp(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


# ---------------------------------------------------------------------------------------------
# bprint/bputs: the message is a printk format kept outside the record (the trace's printk
# section, or tracefs printk_formats) plus, for bprint, binary args.

_CONV_RE = re.compile(r"%([-+ #0]*)(\*|\d+)?(?:\.(\*|\d+))?(hh|h|ll|l|z|j|t|L)?([diouxXcspS%])")


def render_bprint(fmt: str, args: bytes, long_size: int = 8, byteorder: str = "<") -> str:
    """Format ``fmt`` with the args ``vbin_printf`` packed: each number aligned to its own
    size, strings inline and NUL-terminated. Pointers print as ``0x`` hex."""
    endian = "little" if byteorder == "<" else "big"
    out: list[str] = []
    pos = 0
    last = 0

    def take(size: int, signed: bool) -> int:
        nonlocal pos
        pos = (pos + size - 1) & ~(size - 1)
        if pos + size > len(args):
            raise _Bad("bprint args shorter than its format")
        value = int.from_bytes(args[pos : pos + size], endian, signed=signed)
        pos += size
        return value

    for m in _CONV_RE.finditer(fmt):
        out.append(fmt[last : m.start()])
        last = m.end()
        flags, width, prec, length, conv = m.groups()
        if conv == "%":
            out.append("%")
            continue
        if width == "*":
            width = str(take(4, True))
        if prec == "*":
            prec = str(take(4, True))
        spec = "%" + flags + (width or "") + (f".{prec}" if prec is not None else "")
        if conv == "s":
            stop = args.find(b"\0", pos)
            stop = len(args) if stop < 0 else stop
            out.append((spec + "s") % args[pos:stop].decode("utf-8", "replace"))
            pos = stop + 1
        elif conv in "pS":
            out.append(f"0x{take(long_size, False):x}")
        elif conv == "c":
            out.append((spec + "s") % chr(take(4, True) & 0xFF))
        else:
            size = (
                8 if length in ("ll", "L", "j") else long_size if length in ("l", "z", "t") else 4
            )
            value = take(size, conv in "di")
            out.append((spec + ("d" if conv in "diu" else conv)) % value)
    out.append(fmt[last:])
    return "".join(out)


def _with_printk(
    decode: Callable[[bytes, int, int], tuple],
    name: str,
    printk: dict[int, str],
    layout: RingBufferLayout,
) -> Callable[[bytes, int, int], tuple]:
    """Wrap a bprint/bputs decoder: the format address becomes its text and bprint's ``buf``
    (raw args) the formatted message. Unknown addresses stay numbers (args: hex)."""
    long_size, order = layout.long_size, layout.byteorder
    key = "fmt" if name == "bprint" else "str"

    def wrapped(buf: bytes, rec: int, end: int) -> tuple:
        pid, flags, preempt, fields = decode(buf, rec, end)
        addr = fields.get(key)
        text = printk.get(addr) if isinstance(addr, int) else None
        raw = fields.get("buf")
        if text is None:
            if isinstance(raw, bytes):
                fields["buf"] = _hex_array(raw, 4, order)
        elif name == "bputs":
            fields["str"] = _chomp(text)
        else:
            fields["fmt"] = text
            try:
                fields["buf"] = _chomp(render_bprint(text, raw or b"", long_size, order))
            except (_Bad, ValueError, TypeError, OverflowError):
                fields["buf"] = _chomp(text)
        return pid, flags, preempt, fields

    return wrapped


# ---------------------------------------------------------------------------------------------
# Streaming pages.


class PageDecoder:
    """Decodes pages of one trace (one layout, one set of formats) into stream items.

    Decoders are built per event id on first use and kept. ``cmdlines`` maps pid -> comm
    (the trace's saved cmdlines); ``printk`` maps format addresses to text (bprint).
    """

    def __init__(
        self,
        formats: FormatSet,
        layout: RingBufferLayout | None = None,
        *,
        source: str = "",
        cmdlines: dict[int, str] | None = None,
        printk: dict[int, str] | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.formats = formats
        self.layout = layout or RingBufferLayout()
        self.source = source
        self.cmdlines = dict(cmdlines or {})
        self.cmdlines.setdefault(0, "<idle>")
        self.printk = printk
        self.catalogue = catalogue
        self._decoders: dict[int, EventDecoder | None] = {}
        self._flags: dict[tuple[int, int], str] = {}
        #: file readers: time must not go backwards from page to page of one stream (see
        #: :meth:`page`); per stream, its last time and the items of its page held back
        self.check_time_order = False
        self._held: dict[tuple[str, int], tuple[int, list[TraceItem]]] = {}
        check_formats(formats, catalogue or CATALOGUE, source)
        common = next((f.common_fields for f in formats if f.common_fields), None)
        ctype = next((f for f in common or () if f.name == "common_type"), None)
        if ctype is None:
            ctype = FormatField("common_type", "unsigned short", 0, 2, False)
        code = {1: "B", 2: "H", 4: "I"}.get(ctype.size, "H")
        self._type_at = ctype.offset
        self._type = struct.Struct(self.layout.byteorder + code).unpack_from

    def decoder(self, type_id: int) -> EventDecoder | None:
        """The decoder for an event id (None when the formats do not have it)."""
        if type_id in self._decoders:
            return self._decoders[type_id]
        fmt = self.formats.by_id(type_id)
        dec = EventDecoder(fmt, self.layout, self.catalogue, self.printk) if fmt else None
        self._decoders[type_id] = dec
        return dec

    def pages(
        self,
        data: bytes,
        cpu: int,
        *,
        span: Span = Span(),
        section: str | None = None,
    ) -> Iterator[TraceItem]:
        """Items of the whole pages in ``data`` (its length need not be a page multiple: a short
        last page is read as far as its commit says). ``span`` says where ``data`` lies in the
        file, for error messages."""
        psize = self.layout.page_size
        for start in range(0, len(data), psize):
            yield from self.page(data, start, cpu, span=span, section=section)

    def page(
        self,
        buf: bytes,
        base: int,
        cpu: int,
        *,
        span: Span = Span(),
        section: str | None = None,
    ) -> Iterator[TraceItem]:
        """Items of the page at ``buf[base:]``.

        With :attr:`check_time_order`, a page's items are held back until the next page of
        the stream (``section`` and ``cpu``) shows that time did not go backwards: when it
        does, either page may hold the corrupt timestamp, so neither is yielded (a damaged
        CPU then ends at its last trustworthy time). :meth:`flush` yields the last page held.
        """
        if not self.check_time_order:
            yield from self._page(buf, base, cpu, span, section, -1)
            return
        stream = (section or f"cpu{cpu}", cpu)
        floor, held = self._held.pop(stream, (-1, []))
        items: list[TraceItem] = []
        try:
            items.extend(self._page(buf, base, cpu, span, section, floor))
        except _BackwardsError:
            raise
        except BinaryTraceError:
            yield from held
            raise
        last = max((i.ts for i in items if isinstance(i, TraceEvent)), default=floor)
        self._held[stream] = (max(floor, last), items)
        yield from held

    def flush(self, cpu: int, section: str | None = None) -> Iterator[TraceItem]:
        """The items :meth:`page` still holds back for a stream that ended."""
        yield from self._held.pop((section or f"cpu{cpu}", cpu), (-1, []))[1]

    def _page(
        self,
        buf: bytes,
        base: int,
        cpu: int,
        span: Span,
        section: str | None,
        floor: int,
    ) -> Iterator[TraceItem]:
        """Items of the page at ``buf[base:]``; an event before ``floor`` is damage."""
        lay = self.layout
        hp, he = lay.page, lay.event
        order = lay.byteorder
        source = self.source
        where = section or f"cpu{cpu}"
        avail = len(buf) - base
        head = hp.data_offset
        if avail < head:
            raise self._bad(
                where,
                base,
                base,
                span,
                f"truncated page: {avail} bytes, the page header alone is {head}",
            )
        long_code = "Q" if hp.commit_size == 8 else "I"
        ts = struct.unpack_from(order + "Q", buf, base + hp.timestamp_offset)[0]
        commit = struct.unpack_from(order + long_code, buf, base + hp.commit_offset)[0]
        size = commit & COMMIT_MASK
        start = base + head
        end = start + size
        if size > hp.data_size or end > len(buf):
            raise self._bad(
                where,
                base,
                base,
                span,
                f"page commit says {size} bytes of data, but the page"
                f" {'holds' if size > hp.data_size else 'has'} only"
                f" {min(hp.data_size, len(buf) - start)}"
                + ("" if size > hp.data_size else " (truncated)"),
            )
        if commit & MISSED_EVENTS:
            count: int | None = None
            if commit & MISSED_STORED and end + hp.commit_size <= len(buf):
                count = struct.unpack_from(order + long_code, buf, end)[0] or None  # 0: unsaid
            reason = (
                f"lost: the ring buffer overwrote {count} events of CPU {cpu} before this page"
                " was read"
                if count is not None
                else f"lost: events of CPU {cpu} were overwritten before this page was read"
                " (count not stored)"
            )
            yield LostEvents(cpu, count, reason, ts, source)
        # A page whose events are lost, though nothing says so: (what, the time the stream
        # is whole again from at the least, the time of the loss when no page follows).
        loss: tuple[str, int, int | None] | None = None
        if self._spills(buf, base, end + (hp.commit_size if commit & MISSED_STORED else 0)):
            held = (
                "no data, but its data area is not empty"
                if size == 0
                else f"{size} bytes of data, but holds more after them"
            )
            loss = (
                f"the page commits {held}: its events there, if any, are not read (a damaged"
                " commit word?)",
                ts,
                ts,  # after the page's committed events: the last of them (below)
            )
        elif size == 0 and ts == 0 and not commit:
            # no page the kernel hands out is empty, nor stamped 0: one zeroed in the file
            loss = (
                "the page is zero throughout (header included): its events, if it held any,"
                " are lost",
                max(floor, 0),
                floor if floor > 0 else None,
            )
        if size == 0:
            if loss is not None:
                yield self._lost_page(buf, base, span, where, cpu, *loss)
            return

        # -- the hot loop ---------------------------------------------------------------------
        u32 = struct.Struct(order + "I").unpack_from
        big = order == ">"
        tl_bits = he.type_len_bits
        tl_mask = (1 << tl_bits) - 1
        td_bits = he.time_delta_bits
        td_mask = (1 << td_bits) - 1
        max_data = he.data_max_type_len
        padding, extend, stamp = he.padding, he.time_extend, he.time_stamp
        type_of, type_at = self._type, self._type_at
        decoders = self._decoders
        get_decoder = self.decoder
        cmdlines = self.cmdlines
        flag_cache = self._flags
        pos = start
        while pos < end:
            if pos + 4 > end:
                raise self._bad(where, base, pos, span, "event header past the data end")
            word = u32(buf, pos)[0]
            if big:
                tl, delta = word >> td_bits, word & td_mask
            else:
                tl, delta = word & tl_mask, word >> tl_bits
            if 0 < tl <= max_data:
                rec = pos + 4
                nxt = rec + 4 * tl
            elif tl == 0:
                if pos + 8 > end:
                    raise self._bad(where, base, pos, span, "event length past the data")
                length = u32(buf, pos + 4)[0] - 4
                rec = pos + 8
                nxt = rec + ((length + 3) & ~3)
                if length < 0:
                    raise self._bad(where, base, pos, span, "negative event length")
            elif tl == padding:
                if delta == 0:
                    break  # the rest of the page is unused
                if pos + 8 > end:
                    break
                ts += delta
                pos = pos + 4 + u32(buf, pos + 4)[0]
                continue
            elif tl == extend:
                ts += (u32(buf, pos + 4)[0] << td_bits) + delta
                pos += 8
                continue
            elif tl == stamp:
                ts = ((u32(buf, pos + 4)[0] << td_bits) + delta) | (ts & TS_MSB)
                pos += 8
                continue
            else:
                raise self._bad(where, base, pos, span, f"unknown event type_len {tl}")
            if nxt > end:
                raise self._bad(where, base, pos, span, "event runs past the page's committed data")
            ts += delta
            if ts < floor:
                raise self._backwards(where, base, pos, span, cpu, ts, floor)
            type_id = type_of(buf, rec + type_at)[0]
            dec = decoders[type_id] if type_id in decoders else get_decoder(type_id)
            if dec is None:
                yield TraceEvent(
                    ts, cpu, -1, "<...>", "unknown", {"type": type_id}, None, None, source
                )
                pos = nxt
                continue
            try:
                pid, cflags, preempt, values = dec.decode(buf, rec, nxt)
            except _Bad as exc:
                raise self._bad(where, base, pos, span, f"{dec.name} record: {exc}") from None
            if cflags is not None:
                key = (cflags, preempt or 0)
                text = flag_cache.get(key)
                if text is None:
                    text = flag_cache[key] = irq_flags(cflags, preempt or 0)
            else:
                text = None
            yield TraceEvent(
                ts,
                cpu,
                pid,
                cmdlines.get(pid, "<...>"),
                dec.name,
                values,
                dec.system,
                text,
                source,
            )
            pos = nxt
        if loss is not None:  # after the events the page does commit
            yield self._lost_page(buf, base, span, where, cpu, loss[0], loss[1], ts)

    def _spills(self, buf: bytes, base: int, after: int) -> bool:
        """Whether the page at ``base`` holds bytes past what it commits (from ``after``): the
        kernel leaves that area zero in every page it hands out."""
        limit = min(base + self.layout.page.data_offset + self.layout.page.data_size, len(buf))
        return after < limit and bool(buf[after:limit].strip(b"\0"))

    def _lost_page(
        self,
        buf: bytes,
        base: int,
        span: Span,
        where: str,
        cpu: int,
        what: str,
        floor: int,
        last: int | None,
    ) -> LostEvents:
        """The loss of the page at ``base``: whole again at the next page's time (at least
        ``floor``), or, with no page after it in ``buf``, from ``last`` on."""
        section, offset = span.locate(where, self.layout.page_size, base, base)
        again = self._whole_again(buf, base + self.layout.page_size, floor)
        return LostEvents(
            cpu,
            None,
            f"{section} at byte offset {offset}: {what}",
            again if again is not None else last,
            self.source,
        )

    def _whole_again(self, buf: bytes, following: int, floor: int) -> int | None:
        """When a stream is whole again after a page whose events are lost: the next page's
        time, when it is in ``buf`` (None, the next event's, otherwise)."""
        hp = self.layout.page
        if following + hp.timestamp_offset + 8 > len(buf):
            return None
        ts = struct.unpack_from(self.layout.byteorder + "Q", buf, following + hp.timestamp_offset)
        return max(ts[0], floor)

    def _backwards(
        self, where: str, base: int, pos: int, span: Span, cpu: int, ts: int, floor: int
    ) -> BinaryTraceError:
        return span.error(
            self.source,
            where,
            self.layout.page_size,
            base,
            pos,
            f"time goes backwards on CPU {cpu}: a record at ts {ts} follows one at ts {floor}"
            " (a corrupt timestamp in this page or the page before it, or pages out of order):"
            " neither page is read",
            _BackwardsError,
        )

    def _bad(self, where: str, base: int, pos: int, span: Span, why: str) -> BinaryTraceError:
        return span.error(self.source, where, self.layout.page_size, base, pos, why)


def iter_cpu_pages(
    data_or_file: bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes],
    cpu: int,
    formats: FormatSet,
    header: RingBufferLayout | None = None,
    *,
    source: str | None = None,
    cmdlines: dict[int, str] | None = None,
    printk: dict[int, str] | None = None,
    decoder: PageDecoder | None = None,
    chunk_pages: int = 256,
) -> Iterator[TraceItem]:
    """Stream one CPU's pages (bytes, a binary file object or a path) as trace items.

    ``header`` is the layout (``header_page``/``header_event``/byte order; default: 64-bit
    little-endian 4 KiB pages). Files are read ``chunk_pages`` pages at a time.
    """
    if source is None:
        source = (
            os.fspath(data_or_file)
            if isinstance(data_or_file, (str, os.PathLike))
            else getattr(data_or_file, "name", "<pages>")
        )
        source = str(source)
    dec = decoder or PageDecoder(formats, header, source=source, cmdlines=cmdlines, printk=printk)
    if isinstance(data_or_file, (bytes, bytearray, memoryview)):
        yield from dec.pages(bytes(data_or_file), cpu)
        return
    owned = isinstance(data_or_file, (str, os.PathLike))
    try:
        fh: IO[bytes] = open(data_or_file, "rb") if owned else data_or_file  # type: ignore[arg-type, assignment]  # noqa: SIM115
    except OSError as exc:
        raise TraceError(source, None, f"cannot open: {exc}") from None
    try:
        psize = dec.layout.page_size
        offset = 0
        while True:
            try:
                chunk = fh.read(psize * chunk_pages)
            except OSError as exc:
                raise BinaryTraceError(source, f"cpu{cpu}", offset, f"cannot read: {exc}") from None
            if not chunk:
                return
            yield from dec.pages(chunk, cpu, span=Span(offset, offset // psize))
            offset += len(chunk)
    finally:
        if owned:
            fh.close()


# ---------------------------------------------------------------------------------------------
# A directory of per-CPU page files.

_CPU_FILE_RE = re.compile(r"cpu(\d+)(?:\.raw)?")


@dataclass(slots=True)
class _CpuFile:
    cpu: int
    path: Path


class RawTraceDir:
    """A directory of raw pages: one file per CPU plus the format files.

    Accepted layouts: ``cpuN.raw`` (or ``cpuN``) files beside ``events/`` (flat
    ``<system>__<event>.format`` files or a tracefs tree) as in ``traces/recorded/raw``;
    ``traces/cpuN`` with ``formats/<system>/<event>/format`` (schedviz collections); a tracefs
    copy with ``per_cpu/cpuN/trace_pipe_raw``. ``prefix`` selects other CPU files
    (``prefix="lost_"`` reads ``lost_cpuN.raw``). Optional files: ``saved_cmdlines`` (comm of
    each pid), ``trace_clock`` (or ``trace_clock.txt``), ``printk_formats``.

    Without saved cmdlines, ``comm`` is the latest comm the trace's own sched events gave for
    the pid (``<...>`` before any), since the kernel keeps comms outside the pages.

    A CPU file that does not decode (cut inside a page, a damaged page) raises
    :class:`BinaryTraceError`; with ``partial=True`` it ends that CPU's stream instead: its
    events up to the damage, then ``LostEvents(cpu, None, "truncated or corrupt: ...",
    ts=its last timestamp or 0, until_end=True)`` (the trace is incomplete from there on for
    every CPU), with ``stopped_at``/``stop_reason`` saying where (as :class:`TraceDat`'s).

    Metadata (the text reader's surface): ``source``, ``counter_clock``, ``has_context``
    (True), ``skipped`` (always empty), ``dropped_incomplete`` (0); plus ``cpus``, ``clock``,
    ``formats``, ``layout``, ``files``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefix: str = "",
        formats: FormatSet | None = None,
        byteorder: str | None = None,
        source: str | None = None,
        partial: bool = False,
    ) -> None:
        self.path = Path(path)
        self.partial = partial
        self.stopped_at: int | None = None  # partial: where the first damage is (its file's)
        self.stop_reason: str | None = None
        self.source = source if source is not None else str(self.path)
        if not self.path.is_dir():
            raise TraceError(self.source, None, "not a directory")
        self.files = find_cpu_files(self.path, prefix)
        if not self.files:
            raise TraceError(
                self.source,
                None,
                f"no per-CPU page files ({prefix}cpuN.raw, traces/cpuN or"
                " per_cpu/cpuN/trace_pipe_raw) in this directory",
            )
        self.formats = formats if formats is not None else load_formats(self.path)
        layout = RingBufferLayout.load(self.path)
        if byteorder is None:
            byteorder = guess_byteorder(
                sample_headers([f.path for f in self.files], layout), layout
            )
        self.layout = RingBufferLayout(layout.page, layout.event, byteorder)
        self.cpus = sorted({f.cpu for f in self.files})
        #: CPUs below the highest one whose page file is absent or empty: what is not seen
        absent = set(range(self.cpus[-1])) - set(self.cpus)
        empty = {f.cpu for f in self.files if f.path.stat().st_size == 0}
        self.missing = {c: "no page file" for c in absent}
        self.missing |= {c: "an empty page file" for c in empty}
        self.clock = _read_clock(self.path)
        self.counter_clock = self.clock in COUNTER_CLOCKS
        self.has_context = True
        self.skipped: list[tuple[int, str]] = []
        self.dropped_incomplete = 0
        cmd = _find_file(self.path, "saved_cmdlines")
        self.cmdlines = parse_cmdlines(_read_text(cmd)) if cmd is not None else None
        pk = _find_file(self.path, "printk_formats")
        self.printk = parse_printk(_read_text(pk)) if pk is not None else None
        self._started = False

    def __iter__(self) -> Iterator[TraceItem]:
        if self._started:
            raise RuntimeError("a RawTraceDir can be iterated only once")
        self._started = True
        dec = PageDecoder(
            self.formats,
            self.layout,
            source=self.source,
            cmdlines=self.cmdlines,
            printk=self.printk,
        )
        dec.check_time_order = True
        streams = [
            _with_source(
                flushed(iter_cpu_pages(f.path, f.cpu, self.formats, decoder=dec), dec, f.cpu),
                str(f.path),
            )
            for f in self.files
        ]
        if self.partial:
            streams = [self._guard(s, f) for s, f in zip(streams, self.files, strict=True)]
        streams += [iter([self._missing(cpu, why)]) for cpu, why in sorted(self.missing.items())]
        merged = merge_by_time(streams)
        return merged if self.cmdlines is not None else track_comms(merged)

    def _missing(self, cpu: int, why: str) -> LostEvents:
        """A CPU whose page file is absent (the files of higher CPUs show it existed) or empty:
        none of its events is seen, from the start, so (as for a CPU whose data ends in
        damage) no event of any CPU can be judged: each may depend on what it lost."""
        return LostEvents(
            cpu,
            None,
            f"no events: {why} for CPU {cpu} in {self.source}: none of its events is seen, and"
            " the tasks that ran on it also ran elsewhere",
            0,
            self.source,
            until_end=True,
        )

    def _guard(self, items: Iterator[TraceItem], cpu_file: _CpuFile) -> Iterator[TraceItem]:
        """Damage ends this CPU's stream with a marker: nothing after it can be judged."""

        def damaged(exc: BinaryTraceError) -> str:
            reason = f"{cpu_file.path.name}: {exc.reason}"
            if self.stopped_at is None:
                self.stopped_at, self.stop_reason = exc.offset, reason
            return f"{reason}; CPU {cpu_file.cpu}"

        return end_at_damage(items, cpu_file.cpu, str(cpu_file.path), damaged)


def flushed(
    items: Iterator[TraceItem], decoder: PageDecoder, cpu: int, section: str | None = None
) -> Iterator[TraceItem]:
    """One stream's items read with ``decoder.check_time_order``: the page the decoder still
    holds back comes after them, and before any damage found after its page."""
    try:
        yield from items
    except BinaryTraceError:
        yield from decoder.flush(cpu, section)
        raise
    yield from decoder.flush(cpu, section)


def end_at_damage(
    items: Iterator[TraceItem],
    cpu: int,
    source: str,
    damaged: Callable[[BinaryTraceError], str],
) -> Iterator[TraceItem]:
    """One CPU's stream read with ``partial``: its items up to the damage, then a loss until
    the end of the trace from its last time (0 when none was read: lost from the start).
    ``damaged(exc)`` records where reading stopped (or raises) and names what was cut."""
    last: int | None = None
    try:
        for item in items:
            if item.ts is not None:
                last = item.ts
            yield item
    except BinaryTraceError as exc:
        what = damaged(exc)
        yield LostEvents(
            cpu,
            None,
            f"truncated or corrupt: {what} has no events after this point",
            last if last is not None else 0,
            source,
            until_end=True,
        )


def _with_source(items: Iterator[TraceItem], source: str) -> Iterator[TraceItem]:
    """Items and damage of one CPU's file, named by that file rather than its directory."""
    try:
        for item in items:
            item.source = source
            yield item
    except BinaryTraceError as exc:
        raise type(exc)(source, exc.section, exc.offset, exc.detail) from None


def find_cpu_files(root: Path, prefix: str = "") -> list[_CpuFile]:
    """Per-CPU page files of a raw directory, in CPU order."""
    found: dict[int, Path] = {}
    rx = re.compile(re.escape(prefix) + _CPU_FILE_RE.pattern)
    for d in (root, root / "traces"):
        if d.is_dir():
            for p in sorted(d.iterdir()):
                m = rx.fullmatch(p.name)
                if m is not None and p.is_file():
                    found.setdefault(int(m.group(1)), p)
    per_cpu = root / "per_cpu"
    if not found and per_cpu.is_dir():
        for p in sorted(per_cpu.glob("cpu*/trace_pipe_raw")):
            m = re.fullmatch(r"cpu(\d+)", p.parent.name)
            if m is not None:
                found[int(m.group(1))] = p
    return [_CpuFile(cpu, found[cpu]) for cpu in sorted(found)]


def other_cpu_files(root: Path, prefix: str = "") -> list[str]:
    """Page files of another recording beside those read (``lost_cpu0.raw`` beside
    ``cpu0.raw``): named, so that they are not left out without a word."""
    if not root.is_dir():
        return []
    ours = re.compile(re.escape(prefix) + _CPU_FILE_RE.pattern)
    any_prefix = re.compile(r".*" + _CPU_FILE_RE.pattern)
    names = (p.name for p in root.iterdir() if p.is_file())
    return sorted(n for n in names if any_prefix.fullmatch(n) and not ours.fullmatch(n))


def load_formats(root: Path) -> FormatSet:
    """Format files beside raw pages: ``events/``, ``formats/`` or the directory itself."""
    for d in (root / "events", root / "formats"):
        if d.is_dir():
            return FormatSet.load(d)
    return FormatSet.load(root)


def _read_clock(root: Path) -> str | None:
    for name in ("trace_clock", "trace_clock.txt"):
        p = root / name
        if p.is_file():
            return parse_trace_clock(_read_text(p))
    return None


def parse_trace_clock(text: str) -> str | None:
    """The selected clock of a ``trace_clock`` file (``[local] global ...`` -> ``local``)."""
    m = re.search(r"\[([^\]]+)\]", text)
    return m.group(1) if m else (text.split()[0] if text.split() else None)


def parse_cmdlines(text: str) -> dict[int, str]:
    """``saved_cmdlines`` text (``pid comm`` lines) as a dict."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        pid, _, comm = line.strip().partition(" ")
        if pid.isdigit() and comm:
            out[int(pid)] = comm
    return out


_PRINTK_RE = re.compile(r"\s*0x([0-9a-fA-F]+)\s*:\s*\"(.*)\"\s*$")


def parse_printk(text: str) -> dict[int, str]:
    """``printk_formats`` text (``0xADDR : "format"`` lines) as address -> format text."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        m = _PRINTK_RE.match(line)
        if m is not None:
            out[int(m.group(1), 16)] = _unescape_c(m.group(2))
    return out


def _unescape_c(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\t", "\t").replace('\\"', '"').replace("\\\\", "\\")


#: where a sched event names a task and its comm: (pid field, comm field)
_COMM_SOURCES: dict[str, tuple[tuple[str, str], ...]] = {
    "sched_switch": (("prev_pid", "prev_comm"), ("next_pid", "next_comm")),
    "sched_wakeup": (("pid", "comm"),),
    "sched_waking": (("pid", "comm"),),
    "sched_wakeup_new": (("pid", "comm"),),
    "sched_process_fork": (("parent_pid", "parent_comm"), ("child_pid", "child_comm")),
    "sched_process_exit": (("pid", "comm"),),
    "sched_process_free": (("pid", "comm"),),
    "sched_migrate_task": (("pid", "comm"),),
    "sched_stat_runtime": (("pid", "comm"),),
}


def track_comms(items: Iterable[TraceItem]) -> Iterator[TraceItem]:
    """Fill ``comm`` from the comms the trace's own events give (no saved cmdlines)."""
    comms: dict[int, str] = {0: "<idle>"}
    for item in items:
        if isinstance(item, TraceEvent):
            pairs = _COMM_SOURCES.get(item.name)
            if pairs:
                fields = item.fields
                for pf, cf in pairs:
                    pid, comm = fields.get(pf), fields.get(cf)
                    if isinstance(pid, int) and pid > 0 and isinstance(comm, str):
                        comms[pid] = comm
            item.comm = comms.get(item.pid, "<...>")
        yield item


def iter_raw_dir(path: str | os.PathLike[str], **opts: Any) -> Iterator[TraceItem]:
    """Stream a raw-pages directory, all CPUs merged by timestamp (see :class:`RawTraceDir`)."""
    return iter(RawTraceDir(path, **opts))
