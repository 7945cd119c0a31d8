"""What leaves a monitor: the records the kernel writes as ``rv:event_*``/``rv:error_*`` (§5).

A record carries the model-level facts (monitor, instance id, state, event, next state) and the
context of the trace event that produced it (time, CPU, task), so that it can be printed as the
line the kernel's own trace would carry for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True, frozen=True)
class Context:
    """Where a tracepoint fired: the task in context, its CPU and the time."""

    ts: int
    cpu: int
    pid: int
    comm: str
    counter_clock: bool = False

    def prefix(self) -> str:
        """The ``TASK-PID [CPU] TIMESTAMP:`` columns of an ftrace text line (no flags)."""
        if self.counter_clock:
            stamp = f"{self.ts:12d}"
        else:
            us = (self.ts + 500) // 1000  # the kernel's ns2usecs: rounded, not truncated
            stamp = f"{us // 1_000_000:5d}.{us % 1_000_000:06d}"
        return f"{self.comm:>16}-{self.pid:<7d} [{self.cpu:03d}] {stamp}:"


@dataclass(slots=True, frozen=True)
class Record:
    """One ``event_<mon>`` (a valid transition) or ``error_<mon>`` (a violation) record."""

    kind: str  # "event" or "error"
    monitor: str
    id: int | None  # task pid for per-task monitors; None for implicit (global/per-cpu) ones
    state: str
    event: str
    next_state: str | None  # None for errors
    final: bool
    context: Context

    def payload(self) -> str:
        """The event's printed fields, as the 6.17+ ``rv`` trace events print them (§5)."""
        ident = "" if self.id is None else f"{self.id}: "
        if self.kind == "error":
            return f"{ident}event {self.event} not expected in the state {self.state}"
        final = " (final)" if self.final else ""
        return f"{ident}{self.state} x {self.event} -> {self.next_state}{final}"

    def trace_line(self) -> str:
        """The whole ftrace text line: ``comm-pid [cpu] ts: error_wwnr: 53: event ...``."""
        return f"{self.context.prefix()} {self.kind}_{self.monitor}: {self.payload()}"

    def reaction_message(self) -> str:
        """The message a DA monitor hands its reactor (da_monitor.h), newline-terminated."""
        return (
            f"rv: monitor {self.monitor} does not allow event {self.event} on state {self.state}\n"
        )

    def as_json(self) -> dict[str, Any]:
        ctx = self.context
        return {
            "type": self.kind,
            "monitor": self.monitor,
            "id": self.id,
            "state": self.state,
            "event": self.event,
            "next_state": self.next_state,
            "final": self.final,
            "ts": ctx.ts,
            "cpu": ctx.cpu,
            "pid": ctx.pid,
            "comm": ctx.comm,
            "line": self.trace_line(),
        }
