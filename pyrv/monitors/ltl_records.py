"""What leaves an LTL monitor: ``rv:event_<mon>`` and ``rv:error_<mon>`` of the LTL class (§5).

``event_ltl_monitor_id`` prints ``COMM[PID]: (STATES) x (ATOMS) -> (NEXT)`` and
``error_ltl_monitor_id`` prints ``COMM[PID]: violation detected``, where COMM/PID are the
*monitored* task's (which need not be the task in whose context the tracepoint fired).
STATES and NEXT are Büchi-state bitmaps printed as printk's ``%*pbl`` does (``0-1,4``) into a
32-byte buffer; ATOMS lists the abbreviations of the atoms that are true, in atom order,
joined by commas into a 64-byte ``seq_buf`` (include/rv/ltl_monitor.h). The buffers cut the
text short: at most 31 characters of a state list and 63 of the atom list survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyrv.monitors.records import Context

__all__ = ["ATOMS_BUF", "STATES_BUF", "LTLRecord", "atom_list", "bitmap_list"]

#: ``char states[32], next[32]`` and ``DECLARE_SEQ_BUF(atoms, 64)`` in ltl_trace_event().
STATES_BUF = 32
ATOMS_BUF = 64


def bitmap_list(bits: int, limit: int = STATES_BUF) -> str:
    """printk ``%*pbl``: set bits as ranges, ``0b10011`` -> ``0-1,4``; empty -> ``""``.

    ``snprintf`` into a ``limit``-byte buffer keeps the first ``limit - 1`` characters.
    """
    parts: list[str] = []
    i = 0
    while bits >> i:
        if bits >> i & 1:
            j = i
            while bits >> (j + 1) & 1:
                j += 1
            parts.append(str(i) if i == j else f"{i}-{j}")
            i = j + 1
        else:
            i += 1
    return ",".join(parts)[: limit - 1]


def atom_list(valuation: int, names: Sequence[str], limit: int = ATOMS_BUF) -> str:
    """The names of the true atoms joined by ``,``; a ``limit``-byte seq_buf keeps at most
    ``limit - 1`` characters (the name that overflows is cut, the rest dropped)."""
    text = ",".join(n for i, n in enumerate(names) if valuation >> i & 1)
    return text[: limit - 1]


@dataclass(slots=True, frozen=True)
class LTLRecord:
    """One ``event_<mon>`` (a validation step) or ``error_<mon>`` (a violation) record.

    ``states``/``next_states`` are Büchi-state bitmaps and ``atoms`` the valuation (bit ``i``
    = atom ``i``); ``atom_names`` are the abbreviations the trace prints.
    """

    kind: str  # "event" or "error"
    monitor: str
    comm: str  # the monitored task
    pid: int
    states: int
    atoms: int
    next_states: int
    atom_names: tuple[str, ...]
    context: Context

    @property
    def id(self) -> int:
        """The monitored task's pid (what DA ``*_id`` records call the id)."""
        return self.pid

    def states_text(self) -> str:
        return bitmap_list(self.states)

    def atoms_text(self) -> str:
        return atom_list(self.atoms, self.atom_names)

    def next_text(self) -> str:
        return bitmap_list(self.next_states)

    def payload(self) -> str:
        """The printed fields, as ``rv_trace.h`` formats them."""
        if self.kind == "error":
            return f"{self.comm}[{self.pid}]: violation detected"
        return (
            f"{self.comm}[{self.pid}]: ({self.states_text()}) x ({self.atoms_text()})"
            f" -> ({self.next_text()})"
        )

    def trace_line(self) -> str:
        """The ftrace text line: ``... event_sleep: rtapp[512]: (0) x (rt) -> (0)``."""
        return f"{self.context.prefix()} {self.kind}_{self.monitor}: {self.payload()}"

    def reaction_message(self) -> str:
        """The message an LTL monitor hands its reactor (ltl_monitor.h), newline-terminated."""
        return f"rv: {self.monitor}: {self.comm}[{self.pid}]: violation detected\n"

    def as_json(self) -> dict[str, Any]:
        ctx = self.context
        out: dict[str, Any] = {
            "type": self.kind,
            "monitor": self.monitor,
            "id": self.pid,
            "task_comm": self.comm,
            "task_pid": self.pid,
        }
        if self.kind == "event":
            out.update(states=self.states_text(), atoms=self.atoms_text(), next=self.next_text())
        out.update(ts=ctx.ts, cpu=ctx.cpu, pid=ctx.pid, comm=ctx.comm, line=self.trace_line())
        return out
