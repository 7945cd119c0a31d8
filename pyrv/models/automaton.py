"""The deterministic-automaton model type (spec §3.1).

Index conventions follow rvgen: state 0 is the initial state, the other states and all events
are in alphabetical order. ``INVALID`` (``None`` here) marks a transition the model forbids.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class ModelError(ValueError):
    """A model (or model file) is malformed; names the source, line, column and reason."""

    def __init__(self, source: str, line: int | None, col: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.col = col
        self.reason = reason
        where = source
        if line is not None:
            where += f":{line}"
            if col is not None:
                where += f":{col}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Automaton:
    """A deterministic automaton: names, transition function, initial and final states."""

    name: str
    states: tuple[str, ...]
    events: tuple[str, ...]
    # function[state][event] -> next state index, or None where the model forbids the event
    function: tuple[tuple[int | None, ...], ...]
    initial: int = 0
    finals: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        self._validate()

    def _validate(self) -> None:
        src = f"model {self.name!r}"
        if not self.states:
            raise ModelError(src, None, None, "no states")
        if not self.events:
            raise ModelError(src, None, None, "no events")
        for kind, names in (("state", self.states), ("event", self.events)):
            seen: set[str] = set()
            for n in names:
                if not n:
                    raise ModelError(src, None, None, f"empty {kind} name")
                if n in seen:
                    raise ModelError(src, None, None, f"duplicate {kind} {n!r}")
                seen.add(n)
        if not 0 <= self.initial < len(self.states):
            raise ModelError(src, None, None, f"initial state index {self.initial} out of range")
        for f in self.finals:
            if not 0 <= f < len(self.states):
                raise ModelError(src, None, None, f"final state index {f} out of range")
        if len(self.function) != len(self.states):
            raise ModelError(src, None, None, "transition function must have a row per state")
        for s, row in enumerate(self.function):
            if len(row) != len(self.events):
                why = f"row of state {self.states[s]!r} must have one entry per event"
                raise ModelError(src, None, None, why)
            for nxt in row:
                if nxt is not None and not 0 <= nxt < len(self.states):
                    raise ModelError(src, None, None, f"next state index {nxt} out of range")

    @classmethod
    def from_table(
        cls,
        name: str,
        initial: str,
        transitions: Mapping[tuple[str, str], str],
        finals: Iterable[str] = (),
        states: Iterable[str] = (),
        events: Iterable[str] = (),
    ) -> Automaton:
        """Build with rvgen's ordering from a ``{(state, event): next}`` table.

        If no final state is given, the initial state is the only final one (rvgen's rule).
        """
        all_states = {initial, *states}
        all_events = set(events)
        for (s, e), n in transitions.items():
            all_states.update((s, n))
            all_events.add(e)
        ordered_states = (initial, *sorted(all_states - {initial}))
        ordered_events = tuple(sorted(all_events))
        s_idx = {s: i for i, s in enumerate(ordered_states)}
        e_idx = {e: i for i, e in enumerate(ordered_events)}
        rows = [[None] * len(ordered_events) for _ in ordered_states]
        for (s, e), n in transitions.items():
            rows[s_idx[s]][e_idx[e]] = s_idx[n]
        final_names = set(finals) or {initial}
        unknown = final_names - all_states
        if unknown:
            why = f"unknown final state {sorted(unknown)}"
            raise ModelError(f"model {name!r}", None, None, why)
        return cls(
            name=name,
            states=ordered_states,
            events=ordered_events,
            function=tuple(tuple(r) for r in rows),
            initial=0,
            finals=frozenset(s_idx[f] for f in final_names),
        )

    def next_state(self, state: int, event: int) -> int | None:
        """``function[state][event]``; out-of-range indices are invalid, as in automata.h."""
        if 0 <= state < len(self.states) and 0 <= event < len(self.events):
            return self.function[state][event]
        return None

    def is_final(self, state: int) -> bool:
        return state in self.finals

    def state_index(self, name: str) -> int:
        return self.states.index(name)

    def event_index(self, name: str) -> int:
        return self.events.index(name)

    def table(self) -> dict[tuple[str, str], str]:
        """The transition function by name: ``{(state, event): next}``, valid entries only."""
        return {
            (self.states[s], self.events[e]): self.states[n]
            for s, row in enumerate(self.function)
            for e, n in enumerate(row)
            if n is not None
        }
