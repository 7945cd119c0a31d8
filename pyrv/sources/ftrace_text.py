"""Reader for ftrace text: the tracefs ``trace``/``trace_pipe`` files and ``trace-cmd report``.

The layout (option set) is detected once, from the header and the first data line, and one
compiled regex is built for it; lines are then streamed lazily, so inputs of any size work
(``.gz``/``.xz``/``.bz2`` are opened transparently, ``-`` is stdin). Layouts:

- ``ftrace``: default ``trace``/``trace_pipe``/per-CPU lines, with or without the irq-info
  flags column and the ``record-tgid`` column;
- ``latency``: the ``latency-format`` option (8-char comm, CPU digit glued to the flags,
  relative ``NNNNus`` time, taken as ns since the trace start);
- ``report``: ``trace-cmd report`` (``cpus=N`` first line, ``inst: `` prefixes, plugin payloads,
  ``-t`` ns times, ``-l`` latency flags, ``--ts-diff``);
- ``raw``/``hex``: the ``raw``/``hex`` options (numbers only; type ids need ``formats``);
- ``nocontext``: the ``context-info`` option off (only ``event: payload``). Such lines carry
  no time, CPU or pid: events get ``ts`` = line number, ``cpu`` = ``pid`` = -1, ``comm`` = "".
  Monitors that need the context must refuse such a trace (see ``has_context``).

Timestamps: ``secs.usecs`` -> ns (``secs*1e9 + usecs*1000``), 9-digit fractions are exact ns,
plain integers (``counter``, ``uptime``, ``x86-tsc`` clocks) are kept as is and set
``counter_clock``. Loss markers (``[LOST N EVENTS]``, trace-cmd's ``[N EVENTS DROPPED]``, and
an overwritten ``trace`` head, see :meth:`TextTraceReader._trim_overwritten`) become
:class:`LostEvents` where they occur. A line that cannot be read is a :class:`TraceError`
naming the file and line, or is counted in ``skipped`` with ``skip_bad_lines``.

The ``stacktrace``/``userstacktrace`` options' ``<stack trace>`` and `` => symbol`` lines are
skipped. Not read: the function tracers' ``func <-parent`` lines (an error: tracepoints only).
``raw``/``hex`` lines carry no comm: ``comm`` is "".

Event names: ``tracing_mark_write:`` lines and trace-cmd's ``print:`` are the ``ftrace:print``
event and are yielded as ``name="print"`` with ``fields["buf"]`` (and ``ip`` when printed).
``UNKNOWN TYPE n`` lines (``fields`` option) are named from ``formats`` when given, else
``name="unknown"`` with ``fields={"type": n}``; type-only lines have no field values.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import IO, Any

from pyrv.sources.errors import TraceError
from pyrv.sources.events import FieldValue, LostEvents, TraceEvent, TraceItem
from pyrv.sources.formats import DEFAULT_STATE_FLAGS, FormatSet
from pyrv.sources.tracepoints import CATALOGUE, Catalogue, Form, TpField, Tracepoint

Fields = dict[str, FieldValue]
Parsed = tuple[str, str | None, Fields]  # (event name, system, fields)


_CPU_COLUMN = re.compile(r"\[(\d{3})\]")


class _BadLine(Exception):
    """A line (or value) that cannot be read; turned into TraceError or a skip by the loop."""

    def __init__(self, reason: str, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


# ---------------------------------------------------------------------------------------------
# Line layouts. Every event regex defines the same groups, so one extractor serves them all.

# Group order (numbering) is the same in every context layout, so m.groups() unpacks them all.
_GROUPS = ("inst", "comm", "pid", "cpu", "flags", "ts", "us", "utype", "name", "payload")
_INST = r"(?:(?P<inst>[^\s:]+): )?"
_NO = "(?P<{}>)"  # an always-empty group, for parts a layout does not have
_TS = r"(?P<ts>\d+(?:\.\d+)?)"
_TSDIFF = r"(?:\(\+-?\d+\)\s+)?"
_EVENT = r"(?:UNKNOWN TYPE (?P<utype>\d+)|(?P<name>[^\s:]+):(?:{sep}(?P<payload>.*))?)$"


def _context_re(*, report: bool, tgid: bool, flags: bool) -> re.Pattern[str]:
    """``comm-pid (tgid) [cpu] flags ts: name: payload`` (parts per the options)."""
    return re.compile(
        (_INST if report else _NO.format("inst"))
        + r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+"
        + (r"\(\s*[\d-]+\)\s+" if tgid else "")
        + r"\[(?P<cpu>\d+)\]\s+"
        + (r"(?P<flags>[^\s:]{4,6})\s+" if flags else _NO.format("flags"))
        + _TS
        + _NO.format("us")
        + (r":\s+" + _TSDIFF if report else r":\s")
        + _EVENT.format(sep=r"\s+" if report else " ")
    )


def _latency_re(*, report: bool) -> re.Pattern[str]:
    """``comm-pid  Cflags  NNNNus+: name: payload`` (ftrace) or absolute time (report -l)."""
    return re.compile(
        (_INST if report else _NO.format("inst"))
        + r"\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?P<cpu>\d+)(?P<flags>[^\d\s][^\s:]{2,5})\s+"
        + _TS
        + r"(?P<us>us)?[+!#*@$ ]?"
        + (r":\s+" + _TSDIFF if report else r":\s")
        + _EVENT.format(sep=r"\s+" if report else " ")
    )


_NOCONTEXT_RE = re.compile(
    "".join(_NO.format(g) for g in ("inst", "comm", "pid", "cpu", "flags", "ts", "us"))
    + _EVENT.format(sep=" ")
)
_RAW_RE = re.compile(r"(?P<pid>\d+) (?P<cpu>\d+) (?P<ts>\d+) (?P<payload>.*)$")
_HEX_RE = re.compile(
    r"(?P<pid>[0-9a-f]{8}) (?P<cpu>[0-9a-f]{8}) (?P<ts>[0-9a-f]{16}) (?P<payload>.*)$"
)
_RAW_TYPE_RE = re.compile(r"type: (?P<type>\d+)(?: (?P<rest>.*))?$")
_RAW_PRINT_RE = re.compile(r"# (?P<ip>[0-9a-fA-F]+) (?P<buf>.*)$")

_LOST_RE = re.compile(
    r"(?:(?P<inst>[^\s:]+): )?(?:CPU:(?P<cpu>\d+) )?"
    r"\[(?:LOST (?P<lost>\d+) EVENTS|(?:(?P<dropped>\d+) )?EVENTS DROPPED)\]\s*$"
)
_STACK_MARKS = ("<stack trace>", "<user stack trace>")
_CPUS_RE = re.compile(r"cpus=(?P<n>\d+)\s*$")
_EMPTY_CPU_RE = re.compile(r"CPU \d+ is empty\s*$")
_ENTRIES_RE = re.compile(r"#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)")
_LAT_HDR_RE = re.compile(r"#\s*latency:.*?#(\d+)/(\d+),.*#P:(\d+)")
_TRACER_RE = re.compile(r"#\s*tracer:\s*(\S+)")

_DECOMPRESSORS: dict[str, Callable[[IO[bytes]], IO[bytes]]] = {
    "gzip": lambda f: gzip.GzipFile(fileobj=f),
    "xz": lzma.LZMAFile,
    "bz2": bz2.BZ2File,
}
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data: decompress it first (zstd -d)"),
    (b"\x17\x08\x44tracing", "a trace-cmd trace.dat file, not text: use the trace.dat reader"),
    (b"PERFILE2", "a perf.data file, not text: use 'perf script'"),
)


# ---------------------------------------------------------------------------------------------
# Value conversions (see pyrv.sources.tracepoints for what each one is for).

_PAREN_DEC = re.compile(r"(\S*) ?\((-?\d+)\)")  # fields option: "0x15e5 (5605)", "(1)"
_HEX_NUM = re.compile(r"-?0[xX][0-9a-fA-F]+")
_BOOLS = {"true": 1, "false": 0}
_PLUGIN_LETTERS = "SDTtZXxW"  # trace-cmd's sched_switch plugin: bit i -> letter


def _to_int(text: str) -> int:
    """Decimal, ``0x`` hex, ``0xH (D)`` (fields option: D), ``true``/``false``, ``N [ns]``."""
    try:
        return int(text)
    except ValueError:
        pass
    m = _PAREN_DEC.fullmatch(text)
    if m is not None:
        return int(m.group(2))
    low = text.strip().lower()
    try:
        if low.startswith(("0x", "-0x")):
            return int(low, 16)
        if low in _BOOLS:
            return _BOOLS[low]
        if low.endswith(" [ns]"):
            return int(low[:-5])
    except ValueError:
        pass
    raise _BadLine(f"not a number: {text!r}")


def _to_str(text: str) -> str:
    return text


def _to_str_fields(text: str) -> str:
    """The ``fields`` option prints pointers as ``0xH (D)`` / ``sym+0x0/0x140 (D)``: keep H/sym."""
    if text.endswith(")"):
        m = _PAREN_DEC.fullmatch(text)
        if m is not None and (m.group(1).startswith("0x") or "+0x" in m.group(1)):
            return m.group(1)
    return text


def _to_hex(text: str) -> int:
    try:
        return int(text, 16)
    except ValueError:
        return _to_int(text)


def _to_addr(text: str) -> FieldValue:
    """``%ps`` pointer: a number when printed as one, else the symbol text."""
    try:
        return _to_int(text)
    except _BadLine:
        return _to_str_fields(text)


def _to_irqret(text: str) -> int:
    if text == "handled":
        return 1
    if text == "unhandled":
        return 0
    return _to_int(text)


def _auto(text: str) -> FieldValue:
    """Unknown field: int only when the whole value is a decimal or ``0x`` number (or the
    ``fields`` option's ``0xH (D)``), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    if _HEX_NUM.fullmatch(text):
        return int(text, 16)
    m = _PAREN_DEC.fullmatch(text)
    if m is not None and m.group(1).startswith("0x"):
        return int(m.group(2))
    return text


def state_letters(
    value: int, table: Iterable[tuple[int, str]] = DEFAULT_STATE_FLAGS, preempt_bit: int = 0x100
) -> str:
    """A numeric ``prev_state`` as the kernel prints it: ``__print_flags`` letters or ``R``,
    then ``+`` when the preempt bit is set. Unknown bits are shown in hex, as the kernel does."""
    bits = value & (preempt_bit - 1)
    if bits:
        parts = []
        for bit, letter in table:
            if bits & bit == bit:
                parts.append(letter)
                bits &= ~bit
        if bits:
            parts.append(hex(bits))
        text = "|".join(parts)
    else:
        text = "R"
    return text + "+" if value & preempt_bit else text


def plugin_state_bits(text: str) -> int:
    """trace-cmd's plugin letters (``SDTtZXxW`` by bit, ``R`` = 0) back to the raw bits."""
    value = 0
    for part in text.split("|"):
        idx = _PLUGIN_LETTERS.find(part)
        if len(part) == 1 and idx >= 0:
            value |= 1 << idx
        elif part != "R":
            raise _BadLine(f"unknown trace-cmd prev_state letter {part!r}")
    return value


# ---------------------------------------------------------------------------------------------
# key=value splitting, for payloads no form matches.

_KEY_RE = re.compile(r"(?:^|(?<=\s))([A-Za-z_][\w.]*)=")


def split_kv(payload: str) -> tuple[str, list[tuple[str, str]]]:
    """``a=1 b=x y c=2`` -> ``("", [(a, "1"), (b, "x y"), (c, "2")])``: a value runs up to the
    next `` key=``, so it may contain blanks. Text before the first key is returned first."""
    marks = list(_KEY_RE.finditer(payload))
    if not marks:
        return payload.strip(), []
    pairs = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(payload)
        value = payload[m.end() : end].rstrip()
        if value.endswith(" ==>"):
            value = value[:-4].rstrip()
        pairs.append((m.group(1), value))
    return payload[: marks[0].start()].strip(), pairs


# ---------------------------------------------------------------------------------------------
# Opening the input.


def _open_binary(src: Any) -> tuple[IO[bytes] | IO[str], bool]:
    """(stream, owned): a path is opened (and owned), ``-`` is stdin, a file object is used."""
    if isinstance(src, (str, os.PathLike)):
        if os.fspath(src) == "-":
            return sys.stdin.buffer, False
        return open(src, "rb"), True  # noqa: SIM115 - closed by the reader
    return src, False


def _sniff(raw: IO[bytes], source: str) -> IO[bytes]:
    """Undo compression, refuse known binary formats and binary garbage: a clean TraceError."""
    if not hasattr(raw, "peek"):
        raw = io.BufferedReader(raw)  # type: ignore[arg-type]
    head = raw.peek(16)[:16]  # type: ignore[attr-defined]
    for magic, what in _MAGIC:
        if head.startswith(magic):
            opener = _DECOMPRESSORS.get(what)
            if opener is None:
                raise TraceError(source, 1, f"this is {what}")
            raw = opener(raw)
            break
    try:
        sample = raw.peek(4096)[:4096]  # type: ignore[attr-defined]
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        raise TraceError(source, None, f"cannot read: {exc}") from None
    if b"\x00" in sample:
        raise TraceError(source, 1, "binary data, not an ftrace text trace")
    return raw


def _source_name(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        return "<stdin>" if name == "-" else str(name)
    name = getattr(src, "name", None)
    return name if isinstance(name, str) else "<stream>"


# ---------------------------------------------------------------------------------------------


class TextTraceReader:
    """Iterate a text trace as :class:`TraceEvent`/:class:`LostEvents`; exposes its metadata.

    Metadata is filled in while iterating (the header comes first, so it is known from the first
    yielded item on): ``ncpus`` (``#P:N`` / ``cpus=N``), ``entries_in_buffer``,
    ``entries_written``, ``tracer``, ``layout``, ``counter_clock`` (timestamps are plain
    integers, or line numbers for ``nocontext``), ``has_context`` (False for ``nocontext``),
    ``instances`` (trace-cmd instance prefixes seen), ``skipped`` (``(line, reason)`` of lines
    skipped with ``skip_bad_lines``) and ``dropped_incomplete`` (events before an overwritten
    head's complete point, not yielded).
    """

    def __init__(
        self,
        path_or_file: str | os.PathLike[str] | IO[str] | IO[bytes],
        *,
        source: str | None = None,
        formats: FormatSet | None = None,
        skip_bad_lines: bool = False,
        catalogue: Catalogue | None = None,
    ) -> None:
        self._src = path_or_file
        self.source = source if source is not None else _source_name(path_or_file)
        self.formats = formats
        self.skip_bad_lines = skip_bad_lines
        self.catalogue = catalogue if catalogue is not None else CATALOGUE
        self.ncpus: int | None = None
        self.entries_in_buffer: int | None = None
        self.entries_written: int | None = None
        self.tracer: str | None = None
        self.layout: str | None = None
        self.counter_clock = False
        self.has_context = True
        self.instances: set[str] = set()
        self.skipped: list[tuple[int, str]] = []
        self.dropped_incomplete = 0
        self._report = False
        self._match: Callable[[str], re.Match[str] | None] | None = None
        self._make: Callable[[re.Match[str], int], TraceEvent] = self._make_context
        self._parsers: dict[str, Callable[[str], Parsed]] = {}
        self._state_table, self._preempt_bit = self._state_flags()
        self._started = False

    def __iter__(self) -> Iterator[TraceItem]:
        if self._started:
            raise RuntimeError("a TextTraceReader can be iterated only once")
        self._started = True
        return self._trim_overwritten(self._read())

    # -- reading ------------------------------------------------------------------------------

    def _read(self) -> Iterator[TraceItem]:
        raw, owned = _open_binary(self._src)
        text: IO[str] | None = None
        try:
            if isinstance(raw.read(0), str):
                text = raw  # type: ignore[assignment]
            else:
                binary = _sniff(raw, self.source)  # type: ignore[arg-type]
                text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace")  # type: ignore[arg-type]
            yield from self._lines(text)
        finally:
            if text is not None and text is not raw:
                if owned:
                    text.close()
                else:
                    with contextlib.suppress(ValueError):
                        text.detach()  # leave the caller's file open
            if owned:
                raw.close()

    def _lines(self, text: IO[str]) -> Iterator[TraceItem]:
        """The hot loop: one regex match per event line; everything else is the slow path."""
        lineno = 0
        match = self._match
        make = self._make
        lines = iter(text)
        while True:
            try:
                line = next(lines, None)
            except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
                raise TraceError(self.source, lineno + 1, f"cannot read: {exc}") from None
            if line is None:
                return
            lineno += 1
            item: TraceItem | None
            try:
                m = match(line) if match is not None else None
                if m is not None:
                    item = make(m, lineno)
                else:
                    item = self._other_line(line, lineno)
                    match, make = self._match, self._make
            except _BadLine as exc:
                yield self._bad(lineno, exc, line)
                continue
            if item is not None:
                yield item

    def _bad(self, lineno: int, exc: _BadLine, line: str) -> LostEvents:
        """Raise, or (when skipping) count the line and report it as a lost event.

        A skipped line may have been an event a monitor hooks, so it is a gap like any other
        loss: the checker resets what it could have affected instead of judging without it.
        """
        reason = exc.reason
        if "\x00" in line:
            reason = "binary data, not an ftrace text trace"
        elif not line.endswith("\n"):
            reason += " (last line has no newline: truncated?)"
        if exc.fatal or not self.skip_bad_lines:
            raise TraceError(self.source, lineno, reason)
        self.skipped.append((lineno, reason))
        cpu = _CPU_COLUMN.search(line)
        return LostEvents(
            cpu=int(cpu.group(1)) if cpu else None,
            count=1,
            reason=f"unparsable line {lineno} skipped",
            source=self.source,
            line=lineno,
        )

    def _other_line(self, line: str, lineno: int) -> TraceItem | None:
        """Blank, header, loss marker, first data line (detects the layout), or a bad line."""
        stripped = line.strip()
        if not stripped:
            return None
        if stripped[0] == "#":
            if self.layout is None:
                self._header(stripped)
            return None
        if stripped.startswith("=>") or stripped.endswith(_STACK_MARKS):
            return None  # stacktrace/userstacktrace options: not events of their own
        if "EVENTS" in stripped:
            lost = _LOST_RE.match(stripped)
            if lost is not None:
                return self._lost(lost, lineno)
        if self.layout is None:
            cpus = _CPUS_RE.match(stripped)
            if cpus is not None:
                self._report = True
                self.ncpus = int(cpus.group("n"))
                return None
            if self._detect(line):
                return self._make(self._match(line), lineno)  # type: ignore[misc, arg-type]
        elif self._report and _EMPTY_CPU_RE.match(stripped):
            return None
        raise _BadLine(
            f"cannot parse line as {self.layout or 'an ftrace text'} trace line: {stripped[:80]!r}"
        )

    def _header(self, line: str) -> None:
        m = _ENTRIES_RE.match(line) or _LAT_HDR_RE.match(line)
        if m is not None:
            self.entries_in_buffer, self.entries_written = int(m.group(1)), int(m.group(2))
            self.ncpus = int(m.group(3))
            return
        t = _TRACER_RE.match(line)
        if t is not None:
            self.tracer = t.group(1)

    def _lost(self, m: re.Match[str], lineno: int) -> LostEvents:
        if m.group("inst"):
            self.instances.add(m.group("inst"))
        cpu = int(m.group("cpu")) if m.group("cpu") is not None else None
        if m.group("lost") is not None:
            count: int | None = int(m.group("lost"))
            reason = "lost: ring buffer overwritten before it was read ([LOST N EVENTS])"
        else:
            count = int(m.group("dropped")) if m.group("dropped") is not None else None
            reason = "dropped: trace-cmd reports events missing ([EVENTS DROPPED])"
        return LostEvents(cpu, count, reason, None, self.source, lineno)

    # -- layout detection ---------------------------------------------------------------------

    def _candidates(self) -> list[tuple[str, re.Pattern[str], Callable[..., TraceEvent]]]:
        ctx = self._make_context  # latency lines share its groups
        if self._report:
            return [
                ("report", _context_re(report=True, tgid=False, flags=False), ctx),
                ("report", _context_re(report=True, tgid=False, flags=True), ctx),
                ("report-latency", _latency_re(report=True), ctx),
            ]
        return [
            ("ftrace", _context_re(report=False, tgid=False, flags=True), ctx),
            ("ftrace", _context_re(report=False, tgid=False, flags=False), ctx),
            ("ftrace-tgid", _context_re(report=False, tgid=True, flags=True), ctx),
            ("ftrace-tgid", _context_re(report=False, tgid=True, flags=False), ctx),
            ("latency", _latency_re(report=False), ctx),
            ("hex", _HEX_RE, self._make_hex),
            ("raw", _RAW_RE, self._make_raw),
            ("nocontext", _NOCONTEXT_RE, self._make_nocontext),
        ]

    def _detect(self, line: str) -> bool:
        """Pick the layout from the first data line and keep its regex for the whole file."""
        for layout, rx, make in self._candidates():
            m = rx.match(line)
            if m is None:
                continue
            self.layout, self._match, self._make = layout, rx.match, make
            if layout == "nocontext":
                self.has_context = False
                self.counter_clock = True
            elif layout not in ("raw", "hex"):
                self.counter_clock = "." not in m.group("ts") and not m.group("us")
            return True
        return False

    # -- event construction -------------------------------------------------------------------

    def _make_context(self, m: re.Match[str], lineno: int) -> TraceEvent:
        inst, comm, pid, cpu, flags, ts, us, utype, name, payload = m.groups()
        if inst:
            self.instances.add(inst)
        if name is None:
            name, system, fields = self._type_only(int(utype))
        else:
            parse = self._parsers.get(name) or self._parser(name)
            name, system, fields = parse(payload or "")
        if us:
            t = int(ts) * 1000
        else:
            secs, dot, frac = ts.partition(".")
            if not dot:
                t = int(ts)
            elif len(frac) == 6:
                t = int(secs) * 1_000_000_000 + int(frac) * 1000
            else:
                t = int(secs) * 1_000_000_000 + int((frac + "00000000")[:9])
        return TraceEvent(
            t, int(cpu), int(pid), comm, name, fields, system, flags or None, self.source, lineno
        )

    def _make_nocontext(self, m: re.Match[str], lineno: int) -> TraceEvent:
        name, payload, utype = m.group("name", "payload", "utype")
        if name is None:
            name, system, fields = self._type_only(int(utype))
        else:
            parse = self._parsers.get(name) or self._parser(name)
            name, system, fields = parse(payload or "")
        return TraceEvent(lineno, -1, -1, "", name, fields, system, None, self.source, lineno)

    def _make_raw(self, m: re.Match[str], lineno: int) -> TraceEvent:
        return self._raw_event(m, lineno, 10, "raw")

    def _make_hex(self, m: re.Match[str], lineno: int) -> TraceEvent:
        return self._raw_event(m, lineno, 16, "hex")

    def _raw_event(self, m: re.Match[str], lineno: int, base: int, option: str) -> TraceEvent:
        """``pid cpu ts`` then ``type: N`` (needs formats) or ``# ip text`` (a print event)."""
        pid, cpu, ts = (int(m.group(g), base) for g in ("pid", "cpu", "ts"))
        payload = m.group("payload")
        typ = _RAW_TYPE_RE.match(payload)
        if typ is not None:
            if self.formats is None:
                raise _BadLine(
                    f"this trace was written with the '{option}' option: its lines carry only the"
                    f" event type id ({payload!r}); pass the event format files with --formats"
                    " DIR (a tracefs events/ directory, or a directory of"
                    " <system>__<event>.format files) to decode it",
                    fatal=True,
                )
            name, system, fields = self._type_only(int(typ.group("type")))
        else:
            pr = _RAW_PRINT_RE.match(payload)
            if pr is None:
                raise _BadLine(f"cannot parse {option} payload {payload[:60]!r}")
            name, system = "print", "ftrace"
            fields = {"ip": int(pr.group("ip"), 16), "buf": pr.group("buf")}
        return TraceEvent(ts, cpu, pid, "", name, fields, system, None, self.source, lineno)

    def _type_only(self, type_id: int) -> Parsed:
        """A line with only an event type id: its name from the formats, no field values."""
        if self.formats is None:
            return "unknown", None, {"type": type_id}
        fmt = self.formats.by_id(type_id)
        if fmt is None:
            raise _BadLine(f"event type {type_id} is not in the formats given")
        return fmt.name, fmt.system, {}

    # -- payload parsers, one per printed event name ------------------------------------------

    def _parser(self, printed: str) -> Callable[[str], Parsed]:
        parse = self._build_parser(printed)
        self._parsers[printed] = parse
        return parse

    def _build_parser(self, printed: str) -> Callable[[str], Parsed]:
        tp = self.catalogue.lookup(printed)
        if tp is None and self.formats is not None:
            fmt = self.formats.by_name(printed)
            if fmt is not None:
                fields = tuple(TpField(n, k) for n, k in fmt.field_kinds())
                tp = Tracepoint(fmt.system, fmt.name, fields)
        if tp is None:
            return _generic_parser(printed)
        if printed == "tracing_mark_write":
            name, system = tp.name, tp.system
            return lambda payload: (name, system, {"buf": payload})
        return self._tracepoint_parser(tp)

    def _tracepoint_parser(self, tp: Tracepoint) -> Callable[[str], Parsed]:
        """Try the event's printed forms, then ``key=value`` with the catalogue's types."""
        name, system = tp.name, tp.system
        forms = [self._compile_form(tp, form) for form in tp.forms]
        convs = {f.name: self._converter(f.converter, generic=True) for f in tp.fields}
        keys, required = tp.keys, tp.required

        def generic(payload: str) -> Fields:
            lead, pairs = split_kv(payload)
            out: Fields = {}
            if lead.startswith("(") and lead.endswith(")"):
                out["__probe_ip"] = lead[1:-1]
            for key, value in pairs:
                field = keys.get(key, key)
                try:
                    out[field] = convs.get(field, _auto)(value)
                except _BadLine as exc:
                    raise _BadLine(f"{name} field {field}: {exc.reason}") from None
            missing = required - out.keys()
            if missing:
                raise _BadLine(
                    f"{name} payload lacks {', '.join(sorted(missing))}: {payload[:80]!r}"
                )
            return out

        def parse(payload: str) -> Parsed:
            for rx, conv, finals in forms:
                m = rx(payload)
                if m is not None:
                    v = m.groups()
                    out: Fields = {f: fn(v[i]) for f, i, fn in conv if v[i] is not None}
                    for f in finals:  # rv's " (final)": absent means 0
                        out.setdefault(f, 0)
                    return name, system, out
            return name, system, generic(payload)

        return parse

    def _compile_form(self, tp: Tracepoint, form: Form) -> tuple[Callable[[str], Any], list, list]:
        """The form's matcher, ``(field, group index, converter)`` in field order, and the
        fields whose absence means 0."""
        rx = form.compile()
        conv, finals = [], []
        for f in tp.fields:
            idx = rx.groupindex.get(f.name)
            if idx is None:
                continue
            kind = form.conv.get(f.name, f.converter)
            fn = self._converter(kind)
            if kind == "int" and f"(?P<{f.name}>-?\\d+)" in rx.pattern:
                fn = int  # the regex admits only decimals: the builtin is enough
            conv.append((f.name, idx - 1, fn))
            if kind == "final":
                finals.append(f.name)
        return rx.fullmatch, conv, finals

    def _converter(self, kind: str, generic: bool = False) -> Callable[[str], FieldValue]:
        table, plus = self._state_table, self._preempt_bit
        if kind == "state":
            return lambda v: state_letters(_to_int(v), table, plus) if v[:1].isdigit() else v
        if kind == "plugin_state":
            return lambda v: state_letters(plugin_state_bits(v), table, plus)
        simple: dict[str, Callable[[str], FieldValue]] = {
            "int": _to_int,
            "str": _to_str_fields if generic else _to_str,
            "hex": _to_hex,
            "addr": _to_addr,
            "bool": _to_int,
            "final": lambda v: 1,
            "irqret": _to_irqret,
        }
        return simple.get(kind, _auto)

    def _state_flags(self) -> tuple[tuple[tuple[int, str], ...], int]:
        """prev_state letters from this trace's own sched_switch format when given."""
        fmt = self.formats.by_name("sched_switch") if self.formats is not None else None
        flags = fmt.state_flags() if fmt is not None else None
        return flags if flags is not None else (DEFAULT_STATE_FLAGS, 0x100)

    # -- overwritten head ---------------------------------------------------------------------

    def _trim_overwritten(self, items: Iterator[TraceItem]) -> Iterator[TraceItem]:
        """Handle a ``trace`` file whose buffer was overwritten (entries-written > in-buffer).

        Each CPU's ring lost its oldest pages independently, so the CPUs' records start at
        different times and nothing before the latest first-event time ``T`` is complete.
        Events before ``T`` are dropped (counted in ``dropped_incomplete``) and one
        ``LostEvents(cpu=None, count=written-in_buffer, ts=T)`` is yielded just before the first
        event at or after ``T``. Only the head is buffered: until every CPU of ``#P:N`` has
        shown an event (or EOF); at most entries-in-buffer events.
        """
        first = next(items, None)
        if first is None:
            return
        a, b = self.entries_in_buffer, self.entries_written
        if a is None or b is None or b <= a:
            yield first
            yield from items
            return
        head: list[TraceItem] = []
        starts: dict[int, int] = {}
        for item in chain((first,), items):
            head.append(item)
            if isinstance(item, TraceEvent) and item.cpu not in starts:
                starts[item.cpu] = item.ts
                if self.ncpus is not None and len(starts) >= self.ncpus:
                    break
        yield from self._emit_head(head, max(starts.values()) if starts else None, b - a)
        yield from items

    def _emit_head(self, head: list[TraceItem], t: int | None, count: int) -> Iterator[TraceItem]:
        reason = (
            f"overwritten: the ring buffer kept {self.entries_in_buffer} of "
            f"{self.entries_written} events written; the trace is complete from ts={t}"
        )
        marked = False
        for item in head:
            if isinstance(item, TraceEvent) and t is not None:
                if item.ts < t:
                    self.dropped_incomplete += 1
                    continue
                if not marked:
                    marked = True
                    yield LostEvents(None, count, reason, t, self.source, item.line)
            yield item
        if not marked:
            yield LostEvents(None, count, reason, t, self.source, 0)


def _generic_parser(printed: str) -> Callable[[str], Parsed]:
    """An event nobody described: ``key=value`` pairs, numbers as int, the rest as str."""

    def parse(payload: str) -> Parsed:
        lead, pairs = split_kv(payload)
        out: Fields = {}
        if lead.startswith("(") and lead.endswith(")") and pairs:
            out["__probe_ip"] = lead[1:-1]
        for key, value in pairs:
            out[key] = _auto(value)
        return printed, None, out

    return parse


def iter_text_trace(
    path_or_file: str | os.PathLike[str] | IO[str] | IO[bytes],
    *,
    source: str | None = None,
    formats: FormatSet | None = None,
    skip_bad_lines: bool = False,
    catalogue: Catalogue | None = None,
) -> Iterator[TraceItem]:
    """Stream a text trace (see :class:`TextTraceReader` for the metadata it collects)."""
    return iter(
        TextTraceReader(
            path_or_file,
            source=source,
            formats=formats,
            skip_bad_lines=skip_bad_lines,
            catalogue=catalogue,
        )
    )
