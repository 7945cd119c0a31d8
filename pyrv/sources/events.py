"""What a trace source yields: events, and explicit markers for events the trace lost."""

from __future__ import annotations

from dataclasses import dataclass, field

FieldValue = int | str


@dataclass(slots=True)
class TraceEvent:
    """One trace record, as the kernel would hand it to a tracepoint probe.

    ``ts`` is in nanoseconds for time clocks (text traces carry microseconds, so the last three
    digits are zero), or the raw count for counter-like clocks (``counter``, ``uptime``,
    ``x86-tsc``). ``pid``/``cpu`` are the context of the task that hit the tracepoint
    (``common_pid`` and the CPU column); ``comm`` is the TASK column (``<...>`` when unknown).
    ``fields`` are the event's own fields by their format-file names, numbers as ``int``,
    ``prev_state`` as the letters the kernel prints (``S``, ``R+``, ``D|K``).
    """

    ts: int
    cpu: int
    pid: int
    comm: str
    name: str  # event name without its system: "sched_switch"
    fields: dict[str, FieldValue] = field(default_factory=dict)
    system: str | None = None  # "sched" when the input says so (or the catalogue knows it)
    flags: str | None = None  # irq-info column, e.g. "d..2." (None when absent)
    source: str = ""
    line: int = 0


@dataclass(slots=True)
class LostEvents:
    """The trace says events are missing here (``[LOST N EVENTS]``, dropped, overwritten).

    ``cpu`` is None when the loss is not tied to one CPU; ``count`` None when unknown.
    ``ts`` is the timestamp from which the stream is complete again (None: the next event's).

    ``until_end``: the stream is never complete again (a CPU's data ends in damage, so every
    later event may depend on what that CPU lost: cross-CPU wakeups, migrations); ``ts`` is
    then where the loss began (that CPU's last event, 0 when none was read), and no event
    after the marker may be judged.
    """

    cpu: int | None
    count: int | None
    reason: str
    ts: int | None = None
    source: str = ""
    line: int = 0
    #: Tasks whose monitor state may be stale (pid 0 means the idle task of ``cpu``); None means
    #: any task may be affected. Set by detectors that know exactly what was lost.
    pids: tuple[int, ...] | None = None
    until_end: bool = False


TraceItem = TraceEvent | LostEvents
