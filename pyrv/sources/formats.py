"""Event format files (tracefs ``events/<system>/<event>/format``).

A format file is the kernel's own description of one event: its numeric type id, the layout of
its fields and its ``print fmt``. Traces written with the ``raw``/``hex`` options (and the
``fields`` option's ``UNKNOWN TYPE n`` lines) carry only the type id, so a reader needs these
files to name the events. Two directory layouts are accepted by :meth:`FormatSet.load`:

- tracefs: ``DIR/events/<system>/<event>/format`` (``DIR`` may also be ``events/`` itself);
- flat: ``DIR/<system>__<event>.format`` (as in ``traces/recorded/raw/events/``).
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyrv.sources.errors import TraceError

_FIELD_RE = re.compile(
    r"\s*field:\s*(?P<decl>[^;]+);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>\d+);)?\s*$"
)
_DECL_RE = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<len>[^\]]*)\])?$")
_FLAG_RE = re.compile(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*\"([^\"]*)\"\s*\}")
_NAME_LINE = re.compile(r"^name:\s*(\S+)", re.MULTILINE)
_ID_LINE = re.compile(r"^ID:\s*(\d+)\s*$", re.MULTILINE)
_PLUS_RE = re.compile(r"REC->\w+\s*&\s*([()\s0-9a-fA-FxXuUlL|+\-<>~*]+?)\s*\?\s*\"\+\"\s*:\s*\"\"")
_C_INT_RE = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\b")

#: ``prev_state`` letters of kernels >= 4.14 (TASK_REPORT): bit -> letter; no bit is ``R``.
DEFAULT_STATE_FLAGS: tuple[tuple[int, str], ...] = (
    (0x01, "S"),
    (0x02, "D"),
    (0x04, "T"),
    (0x08, "t"),
    (0x10, "X"),
    (0x20, "Z"),
    (0x40, "P"),
    (0x80, "I"),
)


@dataclass(frozen=True, slots=True)
class FormatField:
    """One ``field:`` line. ``array_len`` is None for scalars, 0 for ``[]``/``__data_loc``."""

    name: str
    type: str  # the C type without the name, e.g. "unsigned char", "__data_loc char[]"
    offset: int
    size: int
    signed: bool
    array_len: int | None = None
    data_loc: bool = False  # __data_loc / __rel_loc: the record holds offset+length

    @property
    def is_string(self) -> bool:
        """True for char arrays and dynamic strings: the value is text, not a number."""
        return "char" in self.type and (self.array_len is not None or self.data_loc)

    @property
    def kind(self) -> type:
        """The Python type a reader yields for this field (``str`` or ``int``)."""
        return str if self.is_string else int


@dataclass(slots=True)
class EventFormat:
    """A parsed format file. ``fields`` excludes the ``common_*`` header fields."""

    name: str
    id: int
    system: str | None = None
    common_fields: list[FormatField] = field(default_factory=list)
    fields: list[FormatField] = field(default_factory=list)
    print_fmt: str = ""
    source: str = ""

    def field_kinds(self) -> list[tuple[str, type]]:
        """``(name, int|str)`` for the event's own fields, in record order."""
        return [(f.name, f.kind) for f in self.fields]

    def state_flags(self) -> tuple[tuple[tuple[int, str], ...], int] | None:
        """``(bit->letter table, preempt bit)`` from a ``__print_flags`` in ``print fmt``.

        Used to turn a numeric ``prev_state`` into the letters this kernel prints. The
        preempt (``+``) bit is taken as the bit above the highest flag (TASK_REPORT_MAX).
        """
        start = self.print_fmt.find("__print_flags(")
        if start < 0:
            return None
        table = tuple((int(v, 0), s) for v, s in _FLAG_RE.findall(self.print_fmt, start))
        if not table:
            return None
        preempt = self._preempt_bit()
        return table, preempt if preempt is not None else max(bit for bit, _ in table) << 1

    def _preempt_bit(self) -> int | None:
        """The ``X`` of ``REC->field & X ? "+" : ""`` in ``print fmt``, when it is a constant.

        Kernels write it as a number (``4096``, ``1024``) or as an expression of constants
        (``((0x01 | ... | 0x40) + 1) << 1``); a symbol (``TASK_STATE_MAX``) gives None.
        """
        m = _PLUS_RE.search(self.print_fmt)
        return c_int_expr(m.group(1)) if m is not None else None


def parse_format(text: str, *, source: str = "<format>", system: str | None = None) -> EventFormat:
    """Parse the text of one format file. A malformed file is a :class:`TraceError`."""
    name: str | None = None
    ident: int | None = None
    fields: list[FormatField] = []
    print_fmt = ""
    lines = text.splitlines()
    for lineno, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped == "format:":
            continue
        if stripped.startswith("print fmt:"):
            # the last entry; its string may hold raw newlines (some ext4 events): keep them
            rest = "\n".join(lines[lineno:]).rstrip()
            print_fmt = stripped[len("print fmt:") :].strip() + ("\n" + rest if rest else "")
            break
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            ident = _parse_id(stripped[3:].strip(), source, lineno)
        elif stripped.startswith("field:"):
            fields.append(_parse_field(line, source, lineno))
        else:
            raise TraceError(source, lineno, f"unexpected line in format file: {stripped[:60]!r}")
    if not name:
        raise TraceError(source, None, "format file has no 'name:' line")
    if ident is None:
        raise TraceError(source, None, "format file has no 'ID:' line")
    common = [f for f in fields if f.name.startswith("common_")]
    own = [f for f in fields if not f.name.startswith("common_")]
    return EventFormat(name, ident, system, common, own, print_fmt, source)


def _parse_id(text: str, source: str, lineno: int) -> int:
    if not text.isdigit():
        raise TraceError(source, lineno, f"bad ID {text!r} in format file")
    return int(text)


def _parse_field(line: str, source: str, lineno: int) -> FormatField:
    """``field:TYPE NAME[N]; offset:O; size:S; signed:0|1;`` (no ``signed`` on old kernels)."""
    m = _FIELD_RE.match(line)
    if m is None:
        raise TraceError(source, lineno, f"bad field line: {line.strip()[:80]!r}")
    decl = m.group("decl").strip()
    data_loc = decl.startswith(("__data_loc", "__rel_loc"))
    d = _DECL_RE.match(decl)
    if d is None:
        raise TraceError(source, lineno, f"bad field declaration: {decl!r}")
    ctype, name, alen = d.group("type"), d.group("name"), d.group("len")
    array_len: int | None = None
    if data_loc:
        array_len = 0
    elif alen is not None:
        array_len = int(alen) if alen.strip().isdigit() else 0
    size = int(m.group("size"))
    signed = m.group("signed") == "1" if m.group("signed") is not None else False
    return FormatField(name, ctype, int(m.group("offset")), size, signed, array_len, data_loc)


class FormatSet:
    """Event formats by type id and by name, e.g. loaded from a tracefs ``events/`` tree."""

    def __init__(self, formats: list[EventFormat] | None = None) -> None:
        self._by_id: dict[int, EventFormat] = {}
        self._by_name: dict[str, EventFormat] = {}
        #: formats added as text and not parsed yet: id -> (text, system, source, name)
        self._pending: dict[int, tuple[str, str | None, str, str]] = {}
        self._pending_names: dict[str, int] = {}
        #: reasons of lazily added formats that did not parse (they are left out)
        self.errors: list[str] = []
        for fmt in formats or ():
            self.add(fmt)

    def add_text(self, text: str, *, system: str | None = None, source: str = "<format>") -> None:
        """Add a format file's text, parsed only when its event is asked for (a trace.dat holds
        thousands of formats and uses a few). One that does not parse then is left out, with
        its reason in ``errors``; one without ``name:``/``ID:`` is rejected now."""
        m_name, m_id = _NAME_LINE.search(text), _ID_LINE.search(text)
        if m_name is None or m_id is None:
            self.errors.append(f"{source}: format without name or ID")
            return
        ident, name = int(m_id.group(1)), m_name.group(1)
        self._by_id.pop(ident, None)
        self._pending[ident] = (text, system, source, name)
        self._pending_names[name] = ident
        if system:
            self._pending_names[f"{system}:{name}"] = ident

    def _parse_pending(self, ident: int) -> EventFormat | None:
        text, system, source, _ = self._pending.pop(ident)
        try:
            fmt = parse_format(text, source=source, system=system)
        except TraceError as exc:
            self.errors.append(str(exc))
            return None
        self.add(fmt)
        return fmt

    def add(self, fmt: EventFormat) -> None:
        """Add one format; ``system:name`` and bare ``name`` both find it (last one wins)."""
        self._by_id[fmt.id] = fmt
        self._by_name[fmt.name] = fmt
        if fmt.system:
            self._by_name[f"{fmt.system}:{fmt.name}"] = fmt

    def by_id(self, ident: int) -> EventFormat | None:
        fmt = self._by_id.get(ident)
        if fmt is None and ident in self._pending:
            return self._parse_pending(ident)
        return fmt

    def by_name(self, name: str) -> EventFormat | None:
        """By ``system:name`` or bare ``name``."""
        ident = self._pending_names.pop(name, None)
        if ident is not None and ident in self._pending:
            self._parse_pending(ident)
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_id) + len(self._pending)

    def __iter__(self) -> Iterator[EventFormat]:
        """Every format (pending ones are parsed as the iteration reaches them)."""
        yield from list(self._by_id.values())
        for ident in list(self._pending):
            if ident in self._pending:
                fmt = self._parse_pending(ident)
                if fmt is not None:
                    yield fmt

    @classmethod
    def load(cls, directory: str | Path) -> FormatSet:
        """Load every format file under ``directory`` (tracefs tree or flat ``sys__ev.format``)."""
        root = Path(directory)
        if not root.is_dir():
            raise TraceError(str(root), None, "formats directory does not exist")
        if (root / "events").is_dir():
            root = root / "events"
        found: list[tuple[Path, str | None]] = [
            (p, p.parent.parent.name) for p in sorted(root.glob("*/*/format"))
        ]
        for p in sorted(root.glob("*.format")):
            system, sep, _ = p.name[: -len(".format")].partition("__")
            found.append((p, system if sep else None))
        if not found:
            raise TraceError(
                str(root),
                None,
                "no event format files found (expected events/<system>/<event>/format"
                " or <system>__<event>.format)",
            )
        out = cls()
        for path, system in found:
            out.add(_load_one(path, system))
        return out


def _load_one(path: Path, system: str | None) -> EventFormat:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(str(path), None, f"cannot read format file: {exc}") from None
    return parse_format(text, source=str(path), system=system)


# ---------------------------------------------------------------------------------------------
# Constant C integer expressions (as print fmt and header files write them).

_OPS: dict[type, Callable[[int, int], int]] = {
    ast.BitOr: operator.or_,
    ast.BitAnd: operator.and_,
    ast.BitXor: operator.xor,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}


def c_int_expr(text: str) -> int | None:
    """Value of a constant C integer expression (``((0x1 | 0x2) + 1) << 1``, ``4096-1``,
    ``1UL``), or None when it is not one (symbols, calls). Nothing is executed."""
    src = _C_INT_RE.sub(lambda m: m.group(1), text.strip())
    if not src or len(src) > 1000:
        return None
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            right = ev(node.right)
            if isinstance(node.op, (ast.LShift, ast.RShift)) and not 0 <= right <= 64:
                raise ValueError("shift out of range")
            return _OPS[type(node.op)](ev(node.left), right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Invert, ast.USub)):
            value = ev(node.operand)
            return ~value if isinstance(node.op, ast.Invert) else -value
        raise ValueError("not a constant integer expression")

    try:
        return ev(tree.body)
    except (ValueError, RecursionError):
        return None


# ---------------------------------------------------------------------------------------------
# The ring buffer's own description: ``events/header_page`` and ``events/header_event``.


@dataclass(frozen=True, slots=True)
class HeaderPage:
    """``events/header_page``: where a sub-buffer ("page") keeps its timestamp, its ``commit``
    word (a kernel ``long``: 8 bytes, or 4 on 32-bit kernels) and its event data.

    ``page_size`` is ``data_offset + data_size`` (4096 unless ``buffer_subbuf_size_kb`` was
    changed, 6.8+).
    """

    timestamp_offset: int = 0
    timestamp_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080

    @property
    def page_size(self) -> int:
        return self.data_offset + self.data_size


@dataclass(frozen=True, slots=True)
class HeaderEvent:
    """``events/header_event``: the 32-bit event header and the special ``type_len`` codes.

    ``time_stamp`` is None on old kernels whose file has no ``time_stamp`` line.
    """

    type_len_bits: int = 5
    time_delta_bits: int = 27
    array_bits: int = 32
    padding: int = 29
    time_extend: int = 30
    time_stamp: int | None = 31
    data_max_type_len: int = 28


_HP_FIELD_RE = re.compile(
    r"\s*field:\s*(?P<decl>[^;]+);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
)
_HE_BITS_RE = re.compile(r"\s*(\w+)\s*:\s*(\d+)\s*bits")
_HE_TYPE_RE = re.compile(r"\s*(\w+)\s*:\s*type\s*==\s*(\d+)")
_HE_MAX_RE = re.compile(r"\s*data max type_len\s*==\s*(\d+)")


def parse_header_page(text: str, *, source: str = "header_page") -> HeaderPage:
    """Parse ``events/header_page`` (fields ``timestamp``, ``commit``, ``data``)."""
    found: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        m = _HP_FIELD_RE.match(line)
        if m is None:
            continue
        decl = m.group("decl").split()
        if decl:
            found.setdefault(decl[-1], (int(m.group("offset")), int(m.group("size"))))
    missing = [f for f in ("timestamp", "commit", "data") if f not in found]
    if missing:
        raise TraceError(source, None, f"header_page lacks the field(s) {', '.join(missing)}")
    (ts_off, ts_size), (c_off, c_size), (d_off, d_size) = (
        found["timestamp"],
        found["commit"],
        found["data"],
    )
    if ts_size != 8 or c_size not in (4, 8) or d_off < c_off + c_size or d_size <= 0:
        raise TraceError(
            source,
            None,
            f"unsupported header_page layout: timestamp {ts_off}+{ts_size}, commit"
            f" {c_off}+{c_size}, data {d_off}+{d_size}",
        )
    return HeaderPage(ts_off, ts_size, c_off, c_size, d_off, d_size)


def parse_header_event(text: str, *, source: str = "header_event") -> HeaderEvent:
    """Parse ``events/header_event`` (bit widths and the padding/extend/stamp codes)."""
    bits = {m.group(1): int(m.group(2)) for m in map(_HE_BITS_RE.match, text.splitlines()) if m}
    types = {m.group(1): int(m.group(2)) for m in map(_HE_TYPE_RE.match, text.splitlines()) if m}
    if "type_len" not in bits or "time_delta" not in bits:
        raise TraceError(
            source,
            None,
            "header_event has no 'type_len'/'time_delta' bit widths (a pre-2.6.31 ring buffer,"
            " which is not supported)",
        )
    mx = next((m for m in map(_HE_MAX_RE.match, text.splitlines()) if m), None)
    ev = HeaderEvent(
        bits["type_len"],
        bits["time_delta"],
        bits.get("array", 32),
        types.get("padding", 29),
        types.get("time_extend", 30),
        types.get("time_stamp"),
        int(mx.group(1)) if mx else (1 << bits["type_len"]) - 4,
    )
    if ev.type_len_bits + ev.time_delta_bits != 32 or ev.array_bits != 32:
        raise TraceError(source, None, f"unsupported event header layout: {ev}")
    return ev
