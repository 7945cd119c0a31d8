"""Event format files (tracefs ``events/<system>/<event>/format``).

A format file is the kernel's own description of one event: its numeric type id, the layout of
its fields and its ``print fmt``. Traces written with the ``raw``/``hex`` options (and the
``fields`` option's ``UNKNOWN TYPE n`` lines) carry only the type id, so a reader needs these
files to name the events. Two directory layouts are accepted by :meth:`FormatSet.load`:

- tracefs: ``DIR/events/<system>/<event>/format`` (``DIR`` may also be ``events/`` itself);
- flat: ``DIR/<system>__<event>.format`` (as in ``traces/recorded/raw/events/``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pyrv.sources.errors import TraceError

_FIELD_RE = re.compile(
    r"\s*field:\s*(?P<decl>[^;]+);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>\d+);)?\s*$"
)
_DECL_RE = re.compile(r"^(?P<type>.*?)\s*\b(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<len>[^\]]*)\])?$")
_FLAG_RE = re.compile(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*\"([^\"]*)\"\s*\}")

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
        return table, max(bit for bit, _ in table) << 1


def parse_format(text: str, *, source: str = "<format>", system: str | None = None) -> EventFormat:
    """Parse the text of one format file. A malformed file is a :class:`TraceError`."""
    name: str | None = None
    ident: int | None = None
    fields: list[FormatField] = []
    print_fmt = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped == "format:":
            continue
        if stripped.startswith("name:"):
            name = stripped[5:].strip()
        elif stripped.startswith("ID:"):
            ident = _parse_id(stripped[3:].strip(), source, lineno)
        elif stripped.startswith("field:"):
            fields.append(_parse_field(line, source, lineno))
        elif stripped.startswith("print fmt:"):
            print_fmt = stripped[len("print fmt:") :].strip()
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
        for fmt in formats or ():
            self.add(fmt)

    def add(self, fmt: EventFormat) -> None:
        """Add one format; ``system:name`` and bare ``name`` both find it (last one wins)."""
        self._by_id[fmt.id] = fmt
        self._by_name[fmt.name] = fmt
        if fmt.system:
            self._by_name[f"{fmt.system}:{fmt.name}"] = fmt

    def by_id(self, ident: int) -> EventFormat | None:
        return self._by_id.get(ident)

    def by_name(self, name: str) -> EventFormat | None:
        """By ``system:name`` or bare ``name``."""
        return self._by_name.get(name)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[EventFormat]:
        return iter(self._by_id.values())

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
