"""The generic deterministic-automaton monitor: one engine, three entry points, one reset path.

This is include/rv/da_monitor.h in Python (spec §3.2, §3.3). A monitor is data (an
:class:`~pyrv.models.automaton.Automaton` and a hook table) plus this engine; instances are
kept in a dict keyed by the instance id, and an instance that is *not monitoring* is simply
absent from it, so a reset is a delete and "enable resets every task" is a clear.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING

from pyrv.models.automaton import Automaton
from pyrv.monitors.monitor import Monitor
from pyrv.monitors.records import Context, Record

if TYPE_CHECKING:
    from pyrv.monitors.hooks import MonitorDef

RecordSink = Callable[[Record], None]


class MonitorType(enum.Enum):
    """Where a monitor keeps its instances (``RV_MON_*``)."""

    GLOBAL = "global"
    PER_CPU = "per_cpu"
    PER_TASK = "per_task"
    PER_OBJ = "per_obj"


class Entry(enum.Enum):
    """The three ways a hook hands an event to the engine (§3.3)."""

    HANDLE = "handle"  # da_handle_event: only a monitoring instance acts
    START = "start"  # da_handle_start_event: a new instance starts and drops the event
    START_RUN = "start_run"  # da_handle_start_run_event: a new instance starts and runs it


def task_key(pid: int, cpu: int) -> int:
    """Per-task instance key: the pid, except that each CPU's idle task (pid 0) is its own.

    The kernel resets "every thread and the idle task of every CPU" (all pid 0), so pid alone
    would merge the idle tasks of different CPUs into one instance.
    """
    return pid if pid != 0 else -1 - cpu


def key_id(key: Hashable) -> int | None:
    """The id printed in ``*_id`` records for an instance key (idle tasks print 0)."""
    if isinstance(key, int) and key < 0:
        return 0
    return key if isinstance(key, int) else None


class DAMonitor(Monitor):
    """A registered DA monitor: model, instance storage and the engine."""

    def __init__(
        self,
        name: str,
        description: str,
        model: Automaton,
        mtype: MonitorType,
        sink: RecordSink | None = None,
    ) -> None:
        super().__init__(name, description)
        self.model = model
        self.type = mtype
        self.uses_task_slot = mtype is MonitorType.PER_TASK
        self.sink = sink
        self.definition: MonitorDef | None = None  # the hook table, when built from one
        self.emit_events = True  # build event_<mon> records (errors are always built)
        self.instances: dict[Hashable, int] = {}  # key -> current state, for monitoring ones
        self._slot: int | None = None
        self._has_id = mtype in (MonitorType.PER_TASK, MonitorType.PER_OBJ)
        self.counts = {"events": 0, "errors": 0}
        self.seen: set[Hashable] = set()

    # -- registry callbacks ------------------------------------------------------------------

    def enable(self) -> None:
        if self.uses_task_slot and self._slot is None:
            assert self.rv is not None, "enable() of an unregistered monitor"
            self._slot = self.rv.get_task_slot()
        self.reset()

    def disable(self) -> None:
        self.reset()
        if self._slot is not None and self.rv is not None:
            self.rv.put_task_slot(self._slot)
        self._slot = None

    def reset(self) -> None:
        self.instances.clear()

    def reset_instances(self, keys: Iterable[Hashable]) -> None:
        """Forget the given instances (a gap in the trace made their state unknowable)."""
        for k in keys:
            self.instances.pop(k, None)

    # -- the engine -----------------------------------------------------------------------------

    def active(self) -> bool:
        """The gate checked before anything else: ``monitoring_on`` and the enable flag."""
        rv = self.rv
        return self.enabled and (rv is None or rv.monitoring_on)

    def handle(self, entry: Entry, key: Hashable, event: int, ctx: Context) -> None:
        """Run one model event on instance ``key`` through the given entry point."""
        if not self.active():
            return
        self.seen.add(key)
        state = self.instances.get(key)
        if state is None:
            if entry is Entry.HANDLE:
                return
            state = self.model.initial
            self.instances[key] = state
            if entry is Entry.START:
                return
        self._step(key, state, event, ctx)

    def _step(self, key: Hashable, state: int, event: int, ctx: Context) -> None:
        model = self.model
        nxt = model.function[state][event]
        self.counts["events"] += 1
        if nxt is None:
            self.counts["errors"] += 1
            rec = Record(
                "error",
                self.name,
                key_id(key) if self._has_id else None,
                model.states[state],
                model.events[event],
                None,
                False,
                ctx,
            )
            try:
                self.react(rec.reaction_message())  # DA reacts before it writes error_<mon>
            except Exception as exc:  # a reactor that stops the run (panic) says where
                exc.add_note(f"reacting to: {rec.trace_line()}")
                raise
            if self.sink is not None:
                self.sink(rec)
            del self.instances[key]
            return
        self.instances[key] = nxt
        self._emit_event(key, state, event, nxt, ctx)

    def _emit_event(self, key: Hashable, state: int, event: int, nxt: int, ctx: Context) -> None:
        """Write ``event_<mon>`` for a transition taken (when someone listens)."""
        if self.emit_events and self.sink is not None:
            model = self.model
            self.sink(
                Record(
                    "event",
                    self.name,
                    key_id(key) if self._has_id else None,
                    model.states[state],
                    model.events[event],
                    model.states[nxt],
                    nxt in model.finals,
                    ctx,
                )
            )
