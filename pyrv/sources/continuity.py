"""Detect events a trace lost without saying so: a CPU whose running task changed unrecorded.

Every event carries the pid of the task running on its CPU, and ``sched_switch`` says which
task runs next. When a later event on that CPU carries another pid, a switch was lost (this
machine's 6.18 kernel drops some ``sched_switch`` records silently). Such a contradiction
becomes a :class:`LostEvents` naming the two tasks involved, so the checker can resync them
instead of reporting false violations.

Only events of known, ordinary tracepoints are judged: kprobes and the ``rv`` system's own
lines are written from inside the switch path and may carry the previous task's pid.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent, TraceItem

_NOT_JUDGED_SYSTEMS = frozenset({"rv", "rvraw", "kprobes", "uprobes"})


class SwitchContinuity:
    """Stream filter: passes every item through and inserts a gap before a contradiction."""

    def __init__(self) -> None:
        self.running: dict[int, int] = {}  # cpu -> pid expected to be running
        self.last_switch: dict[int, TraceEvent] = {}  # cpu -> its last sched_switch
        self.gaps = 0

    def filter(self, items: Iterable[TraceItem]) -> Iterator[TraceItem]:
        for item in items:
            if isinstance(item, TraceEvent):
                gap = self._check(item)
                if gap is not None:
                    self.gaps += 1
                    yield gap
            else:
                self._forget(item)
            yield item

    def _forget(self, lost: LostEvents) -> None:
        """After a reported loss nothing is known about what runs where."""
        if lost.cpu is None:
            self.running.clear()
        else:
            self.running.pop(lost.cpu, None)

    def _check(self, ev: TraceEvent) -> LostEvents | None:
        if ev.cpu < 0 or ev.pid < 0 or ev.system is None or ev.system in _NOT_JUDGED_SYSTEMS:
            return None
        is_switch = ev.name == "sched_switch"
        observed = ev.fields.get("prev_pid", ev.pid) if is_switch else ev.pid
        expected = self.running.get(ev.cpu)
        gap = None
        if isinstance(observed, int) and expected is not None and observed != expected:
            reason = (
                f"cpu {ev.cpu} was running pid {expected} but pid {observed} "
                "is running: a sched_switch was lost"
            )
            last = self.last_switch.get(ev.cpu)
            if is_switch and last is not None and (last.ts, last.fields) == (ev.ts, ev.fields):
                reason = (
                    f"this sched_switch repeats the one at line {last.line}: "
                    "the trace is corrupt (duplicated lines)"
                )
            gap = LostEvents(
                cpu=ev.cpu,
                count=None,
                reason=reason,
                ts=ev.ts,
                source=ev.source,
                line=ev.line,
                pids=(expected, observed),
            )
        if is_switch:
            self.last_switch[ev.cpu] = ev
            nxt = ev.fields.get("next_pid")
            if isinstance(nxt, int):
                self.running[ev.cpu] = nxt
        elif isinstance(observed, int):
            self.running[ev.cpu] = observed
        return gap


class TimeOrder:
    """Passes items through; a CPU whose time goes backwards is a corrupt trace.

    One CPU's records are written in time order, so a step back means reordered lines or
    concatenated captures: judging such a stream would give verdicts about an execution that
    never happened, so it is an error naming the line.

    It also counts *cross-CPU ties*: events stamped exactly like the event before them from
    another CPU. Where the clock has the resolution of the events (ns, or the counter clock)
    the file's order is the kernel's; a clock that counts jiffies (``uptime``) stamps a whole
    tick alike, and the reader (or the kernel's merge) breaks those ties by CPU number, not by
    what happened first, so verdicts that hang on their order are uncertain.
    """

    def __init__(self) -> None:
        self.cross_cpu_ties = 0

    def filter(self, items: Iterable[TraceItem]) -> Iterator[TraceItem]:
        last: dict[int, tuple[int, int]] = {}  # cpu -> (ts, line)
        prev_ts, prev_cpu = None, None
        for item in items:
            if isinstance(item, TraceEvent) and item.cpu >= 0:
                prev = last.get(item.cpu)
                if prev is not None and item.ts < prev[0]:
                    raise _backwards(item, *prev)
                last[item.cpu] = (item.ts, item.line)
                if item.ts == prev_ts and item.cpu != prev_cpu:
                    self.cross_cpu_ties += 1
                prev_ts, prev_cpu = item.ts, item.cpu
            yield item


def check_time_order(items: Iterable[TraceItem]) -> Iterator[TraceItem]:
    """:meth:`TimeOrder.filter` without the tie count."""
    return TimeOrder().filter(items)


def _backwards(item: TraceEvent, prev_ts: int, prev_line: int) -> TraceError:
    """The error names lines in a text trace; a binary record has no line, so its time and the
    time of the later one before it say where."""
    if item.line:
        return TraceError(
            item.source,
            item.line,
            f"time goes backwards on cpu {item.cpu} (line {prev_line} is later): "
            "lines out of order, or several captures concatenated",
        )
    return TraceError(
        item.source,
        None,
        f"time goes backwards on cpu {item.cpu}: a {item.name} record at ts {item.ts} follows "
        f"one at ts {prev_ts} (a corrupt page timestamp, or pages out of order)",
    )
