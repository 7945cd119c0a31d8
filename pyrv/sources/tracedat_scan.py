"""Finding a v7 trace.dat's CPU data again when the buffer index after it is lost.

trace-cmd writes a buffer's flyrecord section (``{u16 3, u16 flags, u32 string id, u64 size}``)
right after the options section before it, then every CPU of the buffer in CPU order, each
starting on a page boundary; a CPU without data takes no space (trace-output.c,
``out_write_cpu_data``). Only then comes the options section whose BUFFER option says which
CPU is where. A file cut before that option keeps the data but not the index.

What is certain without the index, and used here:

- compressed data delimits itself (``u32 chunk count``, then ``{u32 csize, u32 size, data}``
  chunks), so each CPU's run starts and ends at known offsets, with zeros up to the next page
  boundary; uncompressed data is a run of whole pages, one CPU's each, with no boundary mark;
- whose a run is: if the section is complete and holds as many runs as the file has CPUs
  (CPUCOUNT), run i is CPU i; a one-CPU file has only CPU 0. Otherwise the CPUSTAT options
  trace-cmd writes *before* the data decide, when taken after the reading (``entries: 0`` on
  every CPU): a CPU whose ``read events`` is 0 has nothing in the file, and the runs go to the
  other CPUs in order, each complete run holding exactly its CPU's ``read events`` (an
  uncompressed run ends on the page where that count is reached) and the cut one no more.
  (This trusts ``read events`` to count the file's events: true when the buffer was new or
  reset when recording began, as with ``trace-cmd record`` (it resets) and ``pyrv record`` (a
  new instance). A count that does not fit stops the attribution.)

A run that breaks these rules, or data with no stats to decide, is not attributed: the CPUs
it may belong to get a gap naming the offset, as do the CPUs whose data lies past the cut and
buffers with stats whose data was not reached.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pyrv.sources.events import TraceEvent
from pyrv.sources.ring_buffer import BinaryTraceError, PageDecoder, Span
from pyrv.sources.tracedat import BufferInfo, CpuData, TraceDat

#: the flyrecord section's id (the BUFFER option's)
_SEC_BUFFER = 3
#: the largest chunk a CPU's data may claim to decompress to (as the reader's limit)
_MAX_BLOCK = 1 << 28


@dataclass(slots=True)
class _Run:
    """One CPU's compressed data: where it starts and ends (``end`` = the cut when cut)."""

    offset: int
    end: int
    chunks: list[tuple[int, int, int]] = field(default_factory=list)  # (at, csize, size)
    complete: bool = True


def _align(pos: int, size: int) -> int:
    return (pos + size - 1) // size * size


class Scanner:
    """Walks the flyrecord sections from ``start`` (the end of the last readable options
    section) and adds a :class:`BufferInfo` for each one to ``td.buffers``."""

    def __init__(self, td: TraceDat) -> None:
        self.td = td
        self.data = td._data
        self.order = "<" if td.byteorder == "<" else ">"
        self.psize = td.layout.page_size
        self.decoder = PageDecoder(
            td.formats, td.layout, source=td.source, cmdlines=td.cmdlines, printk=td.printk
        )

    def scan(self, start: int) -> None:
        """Every flyrecord section from ``start`` on, up to the (lost) options after them."""
        td, pos = self.td, start
        known = {b.offset for b in td.buffers}
        while pos + 16 <= td.file_size:
            sid, flags, _desc, size = struct.unpack_from(self.order + "HHIQ", self.data, pos)
            if sid != _SEC_BUFFER or bool(flags & 1) != (td._decompress is not None):
                break  # the damaged options section (or not data): nothing more to find
            end = pos + 16 + size
            if size == 0 and pos + 32 <= td.file_size and not any(self.data[pos + 16 : pos + 32]):
                end = td.file_size + 1  # size 0 and no section after: the writer died in the data
            if pos not in known:
                td.buffers.append(self._buffer(pos, min(end, td.file_size), end <= td.file_size))
            if end > td.file_size:
                break
            pos = end
        self._not_found(min(pos, td.file_size))

    def _not_found(self, at: int) -> None:
        """Buffers trace-cmd saved stats for but whose data the scan did not reach."""
        td = self.td
        have = {b.name for b in td.buffers}
        for name, stats in td.cpustats.items():
            if name not in have:
                buf = BufferInfo(name, clock=td.clock, page_size=self.psize, recovered=True)
                reads = self._reads(name)
                buf.unread = [c for c in sorted(stats) if reads is None or reads.get(c)]
                buf.note = f"no data of this buffer found: the scan stopped at byte offset {at}"
                td.buffers.append(buf)

    def _buffer(self, pos: int, end: int, complete: bool) -> BufferInfo:
        td = self.td
        name = self._name()
        buf = BufferInfo(
            "?" if name is None else name,
            clock=td.clock,
            page_size=self.psize,
            offset=pos,
            recovered=True,
        )
        start = _align(pos + 16, self.psize)
        if end <= pos + 16:
            return buf  # an empty buffer (trace-cmd writes one for an unused top instance)
        reads = self._reads(name)
        where = f"byte offset {start}"
        if start >= end:  # cut before the first CPU's data
            self._ends_before(buf, [c for c in range(td.cpus) if not reads or reads[c]], end)
        elif td.cpus < 1:
            self._unattributed(buf, [], start, "the file gives no CPU count (CPUCOUNT)")
        elif td._decompress is not None:
            self._compressed(buf, start, end, complete, reads)
        elif td.cpus == 1:
            self._attribute(buf, 0, start, end, complete)
        elif reads is None:
            self._unattributed(
                buf,
                list(range(td.cpus)),
                start,
                f"{td.cpus} CPUs and no CPUSTAT 'read events' to tell which data at {where}"
                " is whose",
            )
        else:
            self._pages(buf, start, end, complete, reads)
        return buf

    # -- which buffer, which CPUs ---------------------------------------------------------------

    def _name(self) -> str | None:
        """The first buffer trace-cmd saved stats for (CPUSTAT, in its write order) that has
        no BUFFER option yet; without stats, the top one if it is missing."""
        have = {b.name for b in self.td.buffers}
        order = list(self.td.cpustats) or [""]
        return next((n for n in order if n not in have), None)

    def _reads(self, name: str | None) -> dict[int, int] | None:
        """CPU -> CPUSTAT 'read events' of the buffer, when every CPU of it has one and the
        stats were taken after the reading (``entries: 0``: nothing left in the kernel's
        buffer); stats taken before it do not bound what the file holds."""
        if name is None:
            return None
        stats = self.td.cpustats.get(name, {})
        out = {}
        for cpu in range(self.td.cpus):
            read = stats.get(cpu, {}).get("read events", "")
            if not read.isdigit() or stats[cpu].get("entries") != "0":
                return None
            out[cpu] = int(read)
        return out

    def _attribute(self, buf: BufferInfo, cpu: int, start: int, end: int, complete: bool) -> None:
        buf.cpus.append(CpuData(cpu, start, end - start, truncated=not complete))

    def _unattributed(self, buf: BufferInfo, cpus: list[int], at: int, why: str) -> None:
        buf.unread = cpus
        buf.note = f"data from byte offset {at} on not attributed to a CPU: {why}"

    # -- compressed -----------------------------------------------------------------------------

    def _runs(self, start: int, end: int) -> tuple[list[_Run], str | None]:
        """The CPU runs from ``start``: each ``u32 count`` then its chunks, the next one on the
        next page boundary with zeros in between."""
        runs: list[_Run] = []
        pos = start
        while pos < end:
            run = _Run(pos, end)
            runs.append(run)
            if pos + 4 > end:
                run.complete = False
                return runs, None
            (count,) = struct.unpack_from(self.order + "I", self.data, pos)
            if count == 0:
                runs.pop()
                return runs, f"no chunk count at byte offset {pos}"
            at = pos + 4
            for _ in range(count):
                if at + 8 > end:
                    run.complete = False
                    return runs, None
                csize, usize = struct.unpack_from(self.order + "II", self.data, at)
                if usize == 0 or usize > _MAX_BLOCK:
                    runs.pop()
                    return runs, f"no CPU data chunk at byte offset {at} (size {usize})"
                if at + 8 + csize > end:
                    run.complete = False
                    return runs, None
                run.chunks.append((at, csize, usize))
                at += 8 + csize
            run.end = at
            pos = _align(at, self.psize)
            if pos < end and any(self.data[at:pos]):
                return runs, f"non-zero bytes between CPU data at byte offset {at}"
        return runs, None

    def _count_run(self, run: _Run, cpu: int) -> int:
        """Data events in the run's complete chunks (decompressed and decoded)."""
        td = self.td
        assert td._decompress is not None
        n = 0
        rest = b""
        for at, csize, usize in run.chunks:
            block = td._decompress(bytes(self.data[at + 8 : at + 8 + csize]), usize)
            block = rest + block
            whole = len(block) - len(block) % self.psize
            n += self._count(block[:whole], cpu, at)
            rest = block[whole:]
        return n + (self._count(rest, cpu, run.end) if rest and run.complete else 0)

    def _count(self, data: bytes, cpu: int, at: int) -> int:
        items = self.decoder.pages(data, cpu, span=Span(chunk=at), section="scan")
        return sum(isinstance(i, TraceEvent) for i in items)

    def _compressed(
        self,
        buf: BufferInfo,
        start: int,
        end: int,
        complete: bool,
        reads: dict[int, int] | None,
    ) -> None:
        td = self.td
        runs, broken = self._runs(start, end)
        if complete and broken is None and runs and runs[-1].end != end:
            broken = f"the CPU data ends at byte offset {runs[-1].end}, the section at {end}"
        whole = complete and broken is None and all(r.complete for r in runs)
        certain = (whole and len(runs) == td.cpus) or td.cpus == 1
        if certain:
            cpus = list(range(td.cpus))  # one run for each CPU (or only CPU 0): run i is CPU i
        elif reads is not None:
            cpus = [c for c in range(td.cpus) if reads[c] > 0]
        else:
            why = f"{td.cpus} CPUs, {len(runs)} data runs and no CPUSTAT 'read events' to tell"
            self._unattributed(buf, list(range(td.cpus)), start, why + " which is whose")
            return
        for i, run in enumerate(runs):
            if i >= len(cpus):
                self._unattributed(buf, [], run.offset, "more CPU data than CPUs that have data")
                return
            cpu = cpus[i]
            if not certain and reads is not None:
                try:
                    n = self._count_run(run, cpu)
                except Exception:  # does not decompress or decode: reading stops there
                    self._attribute(buf, cpu, run.offset, run.end, run.complete)
                    buf.unread = cpus[i + 1 :]
                    buf.note = f"not attributed after the damaged data at byte offset {run.offset}"
                    return
                if n > reads[cpu] or (run.complete and n != reads[cpu]):
                    why = f"it holds {n} events where CPU {cpu}'s stats say {reads[cpu]} were read"
                    self._unattributed(buf, cpus[i:], run.offset, why)
                    return
            self._attribute(buf, cpu, run.offset, run.end, run.complete)
            if not run.complete:
                self._ends_before(buf, cpus[i + 1 :], end)
                return
        rest = cpus[len(runs) :]
        if broken is not None:
            self._unattributed(buf, rest, runs[-1].end if runs else start, broken)
        elif rest and complete:
            self._unattributed(buf, rest, end, f"CPUs {rest} have read events but no data")
        else:
            self._ends_before(buf, rest, end)

    def _ends_before(self, buf: BufferInfo, cpus: list[int], end: int) -> None:
        """The CPUs after the cut one: their data, if any, was after the end of the file."""
        if cpus:
            buf.unread = cpus
            buf.note = f"the file ends at byte offset {end}, before the data of CPUs {cpus}, if any"

    # -- uncompressed ---------------------------------------------------------------------------

    def _pages(
        self, buf: BufferInfo, start: int, end: int, complete: bool, reads: dict[int, int]
    ) -> None:
        """Pages go to the CPUs with data in order, each up to the page where its count of
        read events is reached (a page is wholly one CPU's)."""
        cpus = [c for c in range(self.td.cpus) if reads[c] > 0]
        pos = start
        for i, cpu in enumerate(cpus):
            seg, n, bad = pos, 0, False
            while n < reads[cpu] and pos + self.psize <= end:
                try:
                    n += self._count(bytes(self.data[pos : pos + self.psize]), cpu, pos)
                except BinaryTraceError:
                    bad = True  # reading stops there with the decoder's own error
                    break
                pos += self.psize
            if n > reads[cpu] or (n < reads[cpu] and complete and not bad):
                why = f"its pages hold {n} events where CPU {cpu}'s stats say {reads[cpu]}"
                self._unattributed(buf, cpus[i:], seg, why)
                return
            if n < reads[cpu]:  # cut (or damaged) inside this CPU's data, or before it
                if seg < end:
                    self._attribute(buf, cpu, seg, end, False)
                self._ends_before(buf, cpus[i + 1 :] if seg < end else cpus[i:], end)
                return
            self._attribute(buf, cpu, seg, pos, True)
        if pos < end:
            self._unattributed(buf, [], pos, "more pages than the CPUs' read events")
