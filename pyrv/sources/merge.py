"""Merge several event streams (per-CPU files of one trace) into one, in time order.

Order within one input is kept as it is (it is reliable: one CPU's records are in the order
they were written); across inputs, equal timestamps are ordered by input position, so the
result is deterministic. A loss marker travels with the event that follows it in its input.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from pyrv.sources.events import LostEvents, TraceItem


def _keyed(items: Iterable[TraceItem], index: int) -> Iterator[tuple[int, int, int, TraceItem]]:
    pending: list[LostEvents] = []
    seq = 0
    for item in items:
        if isinstance(item, LostEvents) and item.ts is None:
            pending.append(item)
            continue
        ts = item.ts
        assert ts is not None
        for lost in pending:
            yield ts, index, seq, lost
            seq += 1
        pending.clear()
        yield ts, index, seq, item
        seq += 1
    for lost in pending:  # a loss at the very end: after everything else of this input
        yield 2**63, index, seq, lost
        seq += 1


def merge_by_time(inputs: Iterable[Iterable[TraceItem]]) -> Iterator[TraceItem]:
    """One stream ordered by (timestamp, input position, position within the input)."""
    streams = [_keyed(items, i) for i, items in enumerate(inputs)]
    for _ts, _i, _seq, item in heapq.merge(*streams):
        yield item
