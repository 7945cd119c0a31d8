"""The running kernel as a source: pyrv's instance's ``trace_pipe_raw`` pages, all CPUs, live.

Every CPU's ``per_cpu/cpuN/trace_pipe_raw`` is read without blocking (one CPU with nothing to
say never holds up the others); the pages are decoded with the kernel's own description of
them (``events/header_page``, ``header_event``, each event's ``format``) by
:class:`~pyrv.sources.ring_buffer.PageDecoder`; and the CPUs are merged in time order within
a bounded window. The window's edge is the trace clock's *now* (``per_cpu/cpu0/stats``)
read before the CPUs are drained: every event older than that has been read, so emitting up
to it never reorders. Pages flagged with missed events become :class:`LostEvents`.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import os
import select
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from pyrv.sources.events import LostEvents, TraceEvent, TraceItem
from pyrv.sources.formats import FormatSet
from pyrv.sources.ring_buffer import PageDecoder, RingBufferLayout, Span, parse_cmdlines
from pyrv.sources.tracefs import TraceInstance

_COMM_FIELDS = (("prev_pid", "prev_comm"), ("next_pid", "next_comm"), ("pid", "comm"))
_SLACK_NS = 1_000_000
_PAGES_PER_TURN = 8
_MAX_QUEUED = 100_000  # events stamped just before "now" may still be being committed


def _now_ns(stats: Path) -> int | None:
    """The trace clock's current time from a per-CPU ``stats`` file (``now ts: S.US``)."""
    try:
        for line in stats.read_text().splitlines():
            if line.startswith("now ts:"):
                secs, _, usecs = line.split(":", 1)[1].strip().partition(".")
                return int(secs) * 1_000_000_000 + int((usecs or "0").ljust(6, "0")) * 1000
    except (OSError, ValueError):
        return None
    return None


class LiveTrace:
    """Iterate the running kernel's events from ``instance`` until ``should_stop()``."""

    def __init__(
        self,
        instance: TraceInstance,
        should_stop: Callable[[], bool],
        poll_interval: float = 0.05,
    ) -> None:
        self.instance = instance
        self.should_stop = should_stop
        self.poll_interval = poll_interval
        self.counter_clock = False
        self.has_context = True
        self.skipped: list[tuple[int, str]] = []
        self.dropped_incomplete = 0
        self.source = f"live:{instance.name}"
        self.pages_read = 0
        self._pages_of: dict[int, int] = {}  # pages read, per CPU
        self.lost_reported = 0
        tracefs = instance.tracefs.path
        assert tracefs is not None
        self._tracefs = tracefs
        self.decoder = PageDecoder(
            self._formats(), RingBufferLayout.load(instance.path / "events"), source=self.source
        )
        self._refresh_cmdlines()

    def _formats(self) -> FormatSet:
        formats = FormatSet()
        for tp in self.instance.events:
            system, _, name = tp.partition(":")
            path = self.instance.path / "events" / system / name / "format"
            formats.add_text(path.read_text(), system=system, source=str(path))
        return formats

    def _refresh_cmdlines(self) -> None:
        with contextlib.suppress(OSError):
            text = (self._tracefs / "saved_cmdlines").read_text()
            self.decoder.cmdlines.update(parse_cmdlines(text))

    def __iter__(self) -> Iterator[TraceItem]:
        cpus = self.instance.cpus()
        fds = {
            cpu: os.open(
                self.instance.path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw",
                os.O_RDONLY | os.O_NONBLOCK,
            )
            for cpu in cpus
        }
        queues: dict[int, deque[TraceItem]] = {cpu: deque() for cpu in cpus}
        stats = self.instance.path / "per_cpu" / f"cpu{cpus[0]}" / "stats"
        last_cmdlines = time.monotonic()
        try:
            while not self.should_stop():
                select.select(list(fds.values()), [], [], self.poll_interval)
                now = _now_ns(stats)
                unread = self._drain(fds, queues)
                if time.monotonic() - last_cmdlines > 1.0:
                    self._refresh_cmdlines()
                    last_cmdlines = time.monotonic()
                edge = None if now is None else now - _SLACK_NS
                for cpu in unread:  # not read to the end: its next events may be older
                    last = _ts(queues[cpu][-1]) if queues[cpu] else None
                    edge = None if last is None or edge is None else min(edge, last)
                yield from _merge_until(queues, edge)
            with contextlib.suppress(OSError):
                (self.instance.path / "tracing_on").write_text("0")
            while self._drain(fds, queues):  # what was written before tracing stopped
                yield from _merge_until(queues, self._safe_edge(queues))
            self._refresh_cmdlines()
            yield from _merge_until(queues, None, flush=True)
        finally:
            for fd in fds.values():
                os.close(fd)

    def _drain(self, fds: dict[int, int], queues: dict[int, deque[TraceItem]]) -> set[int]:
        """Read every CPU until all are empty, a few pages per CPU in turn: a busy CPU that
        is drained alone would leave the others' buffers to overflow meanwhile.

        At most ``_MAX_QUEUED`` items per CPU are held: when the checker cannot keep up, the
        events stay in the kernel's buffers, which overflow into reported losses (gaps),
        instead of piling up in memory. Returns the CPUs left unread (each with a full queue,
        whose last time bounds what may be emitted)."""
        pending = dict(fds)
        unread: set[int] = set()
        while pending:
            for cpu, fd in list(pending.items()):
                if len(queues[cpu]) >= _MAX_QUEUED:
                    unread.add(cpu)
                    del pending[cpu]
                elif not self._read_pages(cpu, fd, queues, _PAGES_PER_TURN):
                    del pending[cpu]
        return unread

    @staticmethod
    def _safe_edge(queues: dict[int, deque[TraceItem]]) -> int | None:
        """While draining after the stop: everything up to the oldest last-read time."""
        lasts = [_ts(q[-1]) for q in queues.values() if q]
        return min(lasts) if lasts else None

    def _read_pages(
        self, cpu: int, fd: int, queues: dict[int, deque[TraceItem]], limit: int
    ) -> bool:
        """Read up to ``limit`` pages of one CPU; False once its buffer is empty."""
        size = self.decoder.layout.page_size
        for _ in range(limit):
            try:
                page = os.read(fd, size)
            except BlockingIOError:
                return False
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    return False
                raise
            if not page:
                return False
            self.pages_read += 1
            n = self._pages_of.get(cpu, 0)
            self._pages_of[cpu] = n + 1
            span = Span(n * size, n)  # byte offsets count from the start of the CPU's stream
            where = f"cpu{cpu} trace_pipe_raw"
            for item in self.decoder.page(page, 0, cpu, span=span, section=where):
                if isinstance(item, LostEvents):
                    self.lost_reported += 1
                else:
                    self._learn_comm(item)
                queues[cpu].append(item)
        return True

    def _learn_comm(self, ev: TraceEvent) -> None:
        """Name tasks saved_cmdlines does not know: from the events' own comm fields, or
        from /proc while the task still lives (the kernel's table is top-level only)."""
        names = self.decoder.cmdlines
        f = ev.fields
        for pid_key, comm_key in _COMM_FIELDS:
            pid, comm = f.get(pid_key), f.get(comm_key)
            if isinstance(pid, int) and isinstance(comm, str) and pid:
                names[pid] = comm
        if ev.comm == "<...>":
            comm = names.get(ev.pid)
            if comm is None:
                try:
                    comm = Path(f"/proc/{ev.pid}/comm").read_text().strip()
                except OSError:
                    return
                names[ev.pid] = comm
            ev.comm = comm


def _ts(item: TraceItem) -> int:
    return item.ts if item.ts is not None else 0


def _merge_until(
    queues: dict[int, deque[TraceItem]], edge: int | None, flush: bool = False
) -> Iterator[TraceItem]:
    """Yield queued items in (time, cpu) order: all of them when flushing, else up to ``edge``.

    With no edge (the clock could not be read) nothing is emitted until the flush, which is
    late but never out of order.
    """
    if edge is None and not flush:
        return
    heap = [(_ts(q[0]), cpu) for cpu, q in queues.items() if q]
    heapq.heapify(heap)
    while heap:
        ts, cpu = heap[0]
        if not flush and ts > edge:  # type: ignore[operator]
            break
        heapq.heappop(heap)
        q = queues[cpu]
        item = q.popleft()
        yield item
        if q:
            heapq.heappush(heap, (_ts(q[0]), cpu))
