"""Writing trace-cmd ``trace.dat`` files (version 6 or 7; compression none, zlib or zstd).

The layout is the one :mod:`pyrv.sources.tracedat` reads and trace-cmd 3.1 writes (see that
module and trace-formats.md §3): the file header, ``header_page``/``header_event``, the ftrace
and event format files by system, kallsyms and printk formats (may be empty), the saved
cmdlines, the CPU count, the options, then each CPU's raw ring-buffer pages, page-aligned and
exactly as the kernel handed them out (the missed-events flags and stored counts included).

CPU data is given per buffer (``""`` is the top instance) and CPU, as bytes or as the path of
a file holding the pages: files are copied in blocks, so a recording of any size is written
without holding it in memory. The file is written beside its final name and renamed into
place when complete: an interrupted write leaves no half file. A symlink is written through
(its target is replaced), and a name that is not a regular file (a device such as
``/dev/null``, a FIFO, a directory) is refused: renaming over it would replace it.

Options written: TRACECLOCK (the clock list, selected one in brackets), CPUCOUNT (v7), the
section offsets and BUFFER options v7 needs, and any ``options`` the caller adds (UNAME,
CPUSTAT, ...). In v6 the selected clock also follows the top buffer's CPU table, as trace-cmd
writes it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pyrv.sources.tracedat import (
    MAGIC,
    OPT_BUFFER,
    OPT_BUFFER_TEXT,
    OPT_CMDLINES,
    OPT_CPUCOUNT,
    OPT_CPUSTAT,
    OPT_DONE,
    OPT_EVENT_FORMATS,
    OPT_FTRACE_EVENTS,
    OPT_HEADER_INFO,
    OPT_KALLSYMS,
    OPT_PRINTK,
    OPT_TRACECLOCK,
    OPT_UNAME,
)

#: per-CPU data: the pages themselves, or a file holding them
CpuPages = bytes | bytearray | memoryview | str | os.PathLike[str]

_COPY_BLOCK = 1 << 20
COMPRESSIONS = ("none", "zlib", "zstd")


class TraceDatWriteError(ValueError):
    """The request cannot be written: unknown version or compression, missing zstandard."""


@dataclass
class TraceMetadata:
    """What a trace.dat carries besides the pages: the kernel's own description of them.

    ``header_page``/``header_event`` are the tracefs files of those names; ``ftrace_formats``
    the ``events/ftrace/*/format`` texts; ``event_formats`` the other format files by system;
    ``cmdlines`` the ``saved_cmdlines`` text (``pid comm`` lines); ``trace_clock`` the
    ``trace_clock`` file (the selected clock in brackets).
    """

    header_page: bytes
    header_event: bytes
    ftrace_formats: list[bytes] = field(default_factory=list)
    event_formats: dict[str, list[bytes]] = field(default_factory=dict)
    kallsyms: bytes = b""
    printk: bytes = b""
    cmdlines: bytes = b""
    trace_clock: str = "[local] global counter"

    @property
    def clock(self) -> str:
        """The selected clock's name (``local``)."""
        m = re.search(r"\[([^\]]+)\]", self.trace_clock)
        if m:
            return m[1]
        words = self.trace_clock.split()
        return words[0] if words else "local"

    @classmethod
    def from_raw_dir(
        cls, directory: str | os.PathLike[str], *, cmdlines: bytes = b""
    ) -> TraceMetadata:
        """From a directory of saved format files laid out as ``shared/traces/recorded/raw``:
        ``header_page``, ``header_event`` and ``SYSTEM__EVENT.format`` (in ``directory`` or
        its ``events/``)."""
        root = Path(directory)
        ev = root / "events" if (root / "events" / "header_page").is_file() else root
        systems: dict[str, list[bytes]] = {}
        for p in sorted(ev.glob("*.format")):
            systems.setdefault(p.name.split("__")[0], []).append(p.read_bytes())
        return cls(
            header_page=(ev / "header_page").read_bytes(),
            header_event=(ev / "header_event").read_bytes(),
            ftrace_formats=systems.pop("ftrace", []),
            event_formats=systems,
            cmdlines=cmdlines,
        )

    @classmethod
    def from_tracefs(
        cls,
        root: str | os.PathLike[str],
        tracepoints: Iterable[str],
        *,
        ftrace: Sequence[str] = ("print", "bprint", "bputs"),
        cmdlines: bytes = b"",
    ) -> TraceMetadata:
        """From a tracefs mount or instance directory: the headers, the formats of
        ``tracepoints`` (``system:event``) and of the ``ftrace`` events named (the ones a
        ``trace_marker`` write makes, present on any kernel that has them)."""
        ev = Path(root) / "events"
        systems: dict[str, list[bytes]] = {}
        ftrace_formats = []
        for name in ftrace:
            path = ev / "ftrace" / name / "format"
            if path.is_file():
                ftrace_formats.append(path.read_bytes())
        for tp in tracepoints:
            system, _, name = tp.partition(":")
            text = (ev / system / name / "format").read_bytes()
            if system == "ftrace":
                if text not in ftrace_formats:
                    ftrace_formats.append(text)
            else:
                systems.setdefault(system, []).append(text)
        clock = "[local] global counter"
        with contextlib.suppress(OSError):
            clock = (Path(root) / "trace_clock").read_text().strip() or clock
        return cls(
            header_page=(ev / "header_page").read_bytes(),
            header_event=(ev / "header_event").read_bytes(),
            ftrace_formats=ftrace_formats,
            event_formats=systems,
            cmdlines=cmdlines,
            trace_clock=clock,
        )


def cmdlines_text(names: Mapping[int, str]) -> bytes:
    """``saved_cmdlines`` text (``pid comm`` lines) for a pid -> comm table."""
    return "".join(f"{pid} {comm}\n" for pid, comm in sorted(names.items()) if pid > 0).encode()


def cpustat_option(cpu: int, stats_text: str) -> tuple[int, bytes]:
    """A CPUSTAT option as trace-cmd writes it: ``CPU: N`` then the ``stats`` file."""
    return OPT_CPUSTAT, f"CPU: {cpu}\n{stats_text}".encode()


def uname_option() -> tuple[int, bytes]:
    u = os.uname()
    return OPT_UNAME, f"{u.sysname} {u.nodename} {u.release} {u.machine}\0".encode()


# ---------------------------------------------------------------------------------------------


class _Out:
    """A seekable output with the file's byte order."""

    def __init__(self, fh: BinaryIO, order: str) -> None:
        self.fh, self.order = fh, order

    def pack(self, fmt: str, *values: int) -> bytes:
        return struct.pack(self.order + fmt, *values)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.fh.write(data)

    def put(self, fmt: str, *values: int) -> None:
        self.fh.write(self.pack(fmt, *values))

    def tell(self) -> int:
        return self.fh.tell()

    def patch(self, at: int, data: bytes) -> None:
        here = self.fh.tell()
        self.fh.seek(at)
        self.fh.write(data)
        self.fh.seek(here)

    def align(self, size: int) -> None:
        pad = -self.tell() % size
        if pad:
            self.fh.write(b"\0" * pad)


def _blocks(data: CpuPages, size: int) -> Iterator[bytes]:
    """The data in blocks of ``size`` bytes (the last may be shorter)."""
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        for i in range(0, len(view), size):
            yield bytes(view[i : i + size])
        return
    with open(data, "rb") as fh:
        while True:
            block = fh.read(size)
            if not block:
                return
            yield block


def _compressor(name: str) -> tuple[Callable[[bytes], bytes], bytes]:
    """``compress(data)`` and the library version string written in the header."""
    if name == "zlib":
        return (lambda data: zlib.compress(data, 9)), zlib.ZLIB_VERSION.encode()
    if name == "zstd":
        try:
            import zstandard
        except ImportError:
            raise TraceDatWriteError(
                "writing a zstd trace.dat needs the 'zstandard' Python package"
            ) from None
        cctx = zstandard.ZstdCompressor()
        version = ".".join(str(v) for v in zstandard.ZSTD_VERSION).encode()
        return cctx.compress, version
    raise TraceDatWriteError(f"unknown compression {name!r} (known: {', '.join(COMPRESSIONS)})")


def _metadata_blocks(meta: TraceMetadata, out: _Out) -> dict[int, bytes]:
    """The six metadata blocks (same bytes in v6 and in v7's sections), by v7 option id."""
    u = out.pack

    def blobs(items: list[bytes]) -> bytes:
        return b"".join(u("Q", len(x)) + x for x in items)

    return {
        OPT_HEADER_INFO: b"header_page\0"
        + u("Q", len(meta.header_page))
        + meta.header_page
        + b"header_event\0"
        + u("Q", len(meta.header_event))
        + meta.header_event,
        OPT_FTRACE_EVENTS: u("I", len(meta.ftrace_formats)) + blobs(meta.ftrace_formats),
        OPT_EVENT_FORMATS: u("I", len(meta.event_formats))
        + b"".join(
            name.encode() + b"\0" + u("I", len(v)) + blobs(v)
            for name, v in meta.event_formats.items()
        ),
        OPT_KALLSYMS: u("I", len(meta.kallsyms)) + meta.kallsyms,
        OPT_PRINTK: u("I", len(meta.printk)) + meta.printk,
        OPT_CMDLINES: u("Q", len(meta.cmdlines)) + meta.cmdlines,
    }


def write_tracedat(
    path: str | os.PathLike[str],
    buffers: Mapping[str, Mapping[int, CpuPages]],
    metadata: TraceMetadata,
    *,
    version: int = 6,
    compression: str = "none",
    order: str = "<",
    long_size: int = 8,
    page_size: int = 4096,
    cpus: int | None = None,
    options: Sequence[tuple[int, bytes]] = (),
    chunk_pages: int = 64,
    latency: bytes | None = None,
) -> int:
    """Write a trace.dat holding ``buffers`` (buffer name -> CPU -> raw pages; ``""`` is the
    top instance) described by ``metadata``. Returns the file's size.

    ``order`` is the kernel's byte order (``<``/``>``), which the pages are in;
    ``long_size`` user space's ``long``; ``page_size`` the ring buffer's sub-buffer size
    (``header_page``'s data offset + size). ``cpus`` defaults to the highest CPU + 1.
    ``compression`` (v7 only) compresses the metadata sections and the CPU data in chunks
    of ``chunk_pages`` pages. ``latency``: a latency-format text buffer instead of pages.
    """
    if version not in (6, 7):
        raise TraceDatWriteError(f"trace.dat version {version} cannot be written (6 or 7)")
    if compression not in COMPRESSIONS:
        raise TraceDatWriteError(
            f"unknown compression {compression!r} (known: {', '.join(COMPRESSIONS)})"
        )
    if version == 6 and compression != "none":
        raise TraceDatWriteError("trace.dat version 6 has no compression (use version 7)")
    compress, comp_version = _compressor(compression) if compression != "none" else (None, b"")
    if cpus is None:
        cpus = max((c + 1 for b in buffers.values() for c in b), default=0)
    final = output_path(path)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            out = _Out(fh, order)
            out.write(MAGIC + str(version).encode() + b"\0")
            out.write(bytes([order == ">", long_size]) + out.pack("I", page_size))
            args = (out, buffers, metadata, cpus, options, page_size, latency)
            if version == 6:
                _write_v6(*args)
            else:
                out.write(compression.encode() + b"\0" + comp_version + b"\0")
                _write_v7(*args, compress, chunk_pages)
            size = out.tell()
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return size


_KINDS = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


def output_path(path: str | os.PathLike[str]) -> Path:
    """Where a trace.dat named ``path`` is written: through a symlink to its target, as
    ``trace-cmd record -o`` does. Anything there but a regular file is refused, since the file
    is renamed into place and would replace it (``-o /dev/null`` must not delete a device)."""
    name = os.fspath(path)
    if not name:
        raise TraceDatWriteError("the output file name is empty")
    if name.endswith("/"):
        raise TraceDatWriteError(f"{name}: a name ending in '/' is a directory: name a file")
    final = Path(os.path.realpath(path))
    try:
        mode = final.stat().st_mode
    except FileNotFoundError:
        return final
    except OSError as exc:
        raise TraceDatWriteError(f"{path}: cannot write there: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise TraceDatWriteError(f"{path}: is a directory: name the trace.dat file to write")
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise TraceDatWriteError(
            f"{path}: is {kind}, not a regular file: a trace.dat is written beside its name"
            " and renamed into place, which would replace it; name a file"
        )
    return final


def _option(out: _Out, oid: int, data: bytes) -> bytes:
    return out.pack("HI", oid, len(data)) + data


def _copy_cpu(out: _Out, data: CpuPages) -> int:
    """Copy one CPU's pages uncompressed; returns the byte count."""
    n = 0
    for block in _blocks(data, _COPY_BLOCK):
        out.write(block)
        n += len(block)
    return n


def _write_v6(
    out: _Out,
    buffers: Mapping[str, Mapping[int, CpuPages]],
    meta: TraceMetadata,
    cpus: int,
    options: Sequence[tuple[int, bytes]],
    page_size: int,
    latency: bytes | None,
) -> None:
    for block in _metadata_blocks(meta, out).values():
        out.write(block)
    out.put("I", cpus)
    out.write(b"options  \0")
    out.write(_option(out, OPT_TRACECLOCK, meta.trace_clock.encode() + b"\0"))
    patches: dict[str, int] = {}
    for name in buffers:
        if name:
            out.put("HI", OPT_BUFFER, 8 + len(name.encode()) + 1)
            patches[name] = out.tell()
            out.put("Q", 0)
            out.write(name.encode() + b"\0")
    for oid, data in options:
        out.write(_option(out, oid, data))
    out.put("H", OPT_DONE)
    if latency is not None:
        out.write(b"latency  \0" + latency)
        return
    for name in ["", *[n for n in buffers if n]]:
        if name:
            out.patch(patches[name], out.pack("Q", out.tell()))
        out.write(b"flyrecord\0")
        table = out.tell()
        out.write(b"\0" * 16 * cpus)
        if name == "":
            clock = f"[{meta.clock}]".encode()
            out.put("Q", len(clock))
            out.write(clock)
        cpu_data = buffers.get(name, {})
        for cpu in range(cpus):
            out.align(page_size)
            at = out.tell()
            size = _copy_cpu(out, cpu_data[cpu]) if cpu in cpu_data else 0
            out.patch(table + 16 * cpu, out.pack("QQ", at, size))


def _write_v7(
    out: _Out,
    buffers: Mapping[str, Mapping[int, CpuPages]],
    meta: TraceMetadata,
    cpus: int,
    options: Sequence[tuple[int, bytes]],
    page_size: int,
    latency: bytes | None,
    compress: Callable[[bytes], bytes] | None,
    chunk_pages: int,
) -> None:
    first_options = out.tell()
    out.put("Q", 0)

    def section(sid: int, content: bytes, compressed: bool) -> int:
        at = out.tell()
        if compressed and compress is not None:
            blob = compress(content)
            body = out.pack("II", len(blob), len(content)) + blob
        else:
            body = content
        out.put("HHIQ", sid, int(compressed), 0, len(body))
        out.write(body)
        return at

    comp = compress is not None
    offsets = {sid: section(sid, block, comp) for sid, block in _metadata_blocks(meta, out).items()}
    first = b"".join(_option(out, sid, out.pack("Q", off)) for sid, off in offsets.items())
    first += _option(out, OPT_TRACECLOCK, meta.trace_clock.encode() + b"\0")
    first += _option(out, OPT_CPUCOUNT, out.pack("I", cpus))
    first += b"".join(_option(out, oid, data) for oid, data in options)
    out.patch(first_options, out.pack("Q", out.tell()))
    done_at = out.tell() + 16 + len(first) + 6  # the DONE option's u64: the next section
    section(OPT_DONE, first + _option(out, OPT_DONE, out.pack("Q", 0)), False)
    buffer_opts = b""
    clock = meta.clock.encode() + b"\0"
    if latency is not None:
        at = section(OPT_BUFFER_TEXT, latency, comp)
        buffer_opts += _option(out, OPT_BUFFER_TEXT, out.pack("Q", at) + b"\0" + clock)
    for name, cpu_data in buffers.items():
        sec = out.tell()
        out.put("HHIQ", OPT_BUFFER, int(comp), 0, 0)
        table = []
        for cpu in sorted(cpu_data):
            out.align(page_size)
            at = out.tell()
            if compress is not None:
                table.append(
                    out.pack(
                        "IQQ",
                        cpu,
                        at,
                        _write_chunks(out, cpu_data[cpu], compress, page_size * chunk_pages),
                    )
                )
            else:
                table.append(out.pack("IQQ", cpu, at, _copy_cpu(out, cpu_data[cpu])))
        out.patch(sec + 8, out.pack("Q", out.tell() - sec - 16))
        buffer_opts += _option(
            out,
            OPT_BUFFER,
            out.pack("Q", sec)
            + name.encode()
            + b"\0"
            + clock
            + out.pack("II", page_size, len(table))
            + b"".join(table),
        )
    out.patch(done_at, out.pack("Q", out.tell()))
    section(OPT_DONE, buffer_opts + _option(out, OPT_DONE, out.pack("Q", 0)), False)


def _write_chunks(out: _Out, data: CpuPages, compress: Callable[[bytes], bytes], chunk: int) -> int:
    """Compressed CPU data: u32 chunk count, then {u32 csize, u32 size, data} chunks."""
    start = out.tell()
    out.put("I", 0)
    count = 0
    for block in _blocks(data, chunk):
        blob = compress(block)
        out.put("II", len(blob), len(block))
        out.write(blob)
        count += 1
    out.patch(start, out.pack("I", count))
    return out.tell() - start
