"""Merge several event streams (per-CPU files of one trace) into one, in time order.

Order within one input is kept as it is (it is reliable: one CPU's records are in the order
they were written); across inputs, equal timestamps are ordered by input position, so the
result is deterministic. A loss marker whose end is known (``ts``) is delivered right after
its input's previous event, where the loss began; one without travels with the event that
follows it in its input.

A merged text trace (``trace-cmd report``) is one input whose loss markers carry no time:
:func:`place_text_losses` gives them their begin and end from a first reading of the same
file, so that they are delivered as a binary trace's are.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator

from pyrv.sources.events import LostEvents, TraceItem

_FIRST = -(2**63)


def _keyed(items: Iterable[TraceItem], index: int) -> Iterator[tuple[int, int, int, TraceItem]]:
    pending: list[LostEvents] = []
    seq = 0
    last = _FIRST  # the time of this input's last event: where its losses begin
    for item in items:
        if isinstance(item, LostEvents) and item.ts is None:
            pending.append(item)
            continue
        if isinstance(item, LostEvents):
            # a loss known to end at item.ts began after this input's previous event: it is
            # delivered there, so that no other input's events inside the gap are judged as
            # if this input had been complete (the checker skips them up to item.ts)
            yield last, index, seq, item
            seq += 1
            continue
        ts = item.ts
        assert ts is not None
        for lost in pending:
            yield ts, index, seq, lost
            seq += 1
        pending.clear()
        yield ts, index, seq, item
        seq += 1
        last = ts
    for lost in pending:  # a loss at the very end: after everything else of this input
        yield 2**63, index, seq, lost
        seq += 1


def merge_by_time(inputs: Iterable[Iterable[TraceItem]]) -> Iterator[TraceItem]:
    """One stream ordered by (timestamp, input position, position within the input)."""
    streams = [_keyed(items, i) for i, items in enumerate(inputs)]
    for _ts, _i, _seq, item in heapq.merge(*streams):
        yield item


def place_text_losses(scan: Iterable[TraceItem], items: Iterable[TraceItem]) -> Iterator[TraceItem]:
    """``items`` with each ``CPU:n [N EVENTS DROPPED]`` marker moved to where its loss began.

    trace-cmd prints the marker just before CPU n's first event after the loss (the first
    record of a page whose missed-events flag is set), after every other CPU's earlier events:
    the loss began after CPU n's previous event and ended at that next event's time. ``scan``,
    a first reading of the same input, finds both; the marker is then delivered right after
    that previous event (first of all when CPU n had none) with the end as its ``ts``, so the
    checker judges no event inside the loss, as it does for the same buffer's trace.dat.
    Markers without a CPU, or that no later event of their CPU closes, stay where they are.
    """
    last_line: dict[int, int] = {}
    open_losses: dict[int, list[tuple[int, LostEvents]]] = defaultdict(list)
    after: dict[int, list[LostEvents]] = defaultdict(list)  # event line -> losses begun there
    moved: set[int] = set()
    for item in scan:
        if isinstance(item, LostEvents):
            if item.cpu is not None and item.ts is None:
                open_losses[item.cpu].append((last_line.get(item.cpu, 0), item))
            continue
        for begin, lost in open_losses.pop(item.cpu, ()):
            after[begin].append(dataclasses.replace(lost, ts=item.ts))
            moved.add(lost.line)
        last_line[item.cpu] = item.line
    yield from after.pop(0, ())
    for item in items:
        if isinstance(item, LostEvents):
            if item.ts is None and item.line in moved:
                continue  # delivered where it began
            yield item
            continue
        yield item
        if after:
            yield from after.pop(item.line, ())
