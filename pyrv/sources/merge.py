"""Merge several event streams (per-CPU files of one trace) into one, in time order.

Order within one input is kept as it is (it is reliable: one CPU's records are in the order
they were written); across inputs, equal timestamps are ordered by input position, so the
result is deterministic. A loss marker whose end is known (``ts``) is delivered right after
its input's previous event, where the loss began; one without travels with the event that
follows it in its input.
"""

from __future__ import annotations

import heapq
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
