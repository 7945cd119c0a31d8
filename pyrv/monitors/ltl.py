"""The generic LTL monitor: include/rv/ltl_monitor.h in Python (spec §3.4).

One engine, driven by data: a :class:`~pyrv.models.buchi.BuchiAutomaton` (from a ``.ltl``
rule file), an :class:`AtomInit` table and a ``fetch`` table. LTL monitors are per task only.
Each task's instance holds a set of Büchi states, the atom values and the set of atoms whose
value is still unknown, all as bitmaps (bit ``i`` = state ``i`` / atom ``i``).

Entry points, for a dispatcher that turns trace events into atom changes:

* :meth:`LTLMonitor.atom_update` (``ltl_atom_update``): set the atom, re-fetch the derived
  atoms, then

  - with no live state (not started yet, or after a violation): *attempt a start* — only if
    no atom is unknown, the live states become the initial states whose label holds; if
    none holds nothing happens and nothing is reported. No validation step follows the
    start (6.17 fix "Do not execute the Buchi automaton twice on start condition");
  - otherwise *validate*: the next states are the successors of the live states whose label
    holds; an ``event`` record shows ``(states) x (true atoms) -> (next)``; when no state is
    left, an ``error`` record is written and **then** the reactor gets
    ``rv: <mon>: <comm>[<pid>]: violation detected\\n``. The empty state set is the implicit
    reset: the next update attempts a start again.

* :meth:`LTLMonitor.atom_pulse` (``ltl_atom_pulse``): an update to ``value``, then the atom
  flips back to ``not value`` (no fetch) and the automaton validates once more — an
  instantaneous event (a page fault, a sleep, a wakeup). The flip-back never starts a
  monitor: it only validates live states.
* :meth:`LTLMonitor.atom_set` (``ltl_atom_set``): change an atom without evaluating anything
  (hooks that set several atoms and then update one).
* :meth:`LTLMonitor.task_created` (the ``task:task_newtask`` hook): (re)initialise the task's
  instance as a new task.

Gating: the engine acts only while the monitor is enabled; it does **not** consult the global
``monitoring_on`` switch, and it has no reset callback (``has_reset = False``), so
``monitoring_on`` 0->1 leaves LTL instances alone, as in the kernel. Enabling takes a
per-task slot (EBUSY when none is free) and forgets every instance; disabling forgets them and
returns the slot.

Task initialisation as data
---------------------------

The kernel initialises every existing task (and each CPU's idle task) when the monitor is
enabled, and each new task on ``task_newtask``: all atoms unknown, no live state, then the
monitor's ``ltl_atoms_init(task, task_creation)`` and ``ltl_atoms_fetch(task)``. pyrv cannot
walk the task list of the traced machine, so a task is initialised as an *existing* task the
first time one of its atoms is touched after enabling, unless :meth:`task_created` was called
for it first. What ``ltl_atoms_init`` does is an :class:`AtomInit`, applied in this order:

* ``always``: atoms set for every task (``{"SLEEP": False, ...}``);
* ``on_creation``: atoms set only for tasks created while the monitor runs;
* ``kernel_thread`` / ``user_thread``: atoms set when the task is / is not a kernel thread
  (asked of the fact source as fact ``"kthread"``; when that is unknown, neither applies
  and those atoms stay unknown, so the task's monitor never starts).

A value is ``True``/``False`` or :class:`CommPrefix` ``("rcu")``: true when the task's comm
starts with the prefix (the comm the caller passes; at ``task_newtask`` a kernel's new
thread still has its parent's comm).

``ltl_atoms_fetch`` is a ``fetch`` mapping from atom to fact name, e.g. ``{"RT": "rt"}``:
on every update (and at initialisation) the atom takes the value the fact source gives.
The fact source is a callable ``facts(key, fact) -> bool | None`` the dispatcher provides
(it knows priorities from ``sched_switch``/``sched_pi_setprio``, kernel threads from
``task_newtask`` flags, ...); ``None`` means "not known", and leaves the atom as it was
(unknown if it never had a value).

:data:`RTAPP` holds these tables for the kernel's three rtapp monitors (pagefault, sleep,
wakeup; spec §4.13-§4.15, read from the kernel's ``*.c`` files), for
:func:`build_rtapp_monitor`. The bundled definitions (``pyrv/monitors/defs/*.toml``) carry the
same tables in their own ``[init]``/``[fetch]``, so that a copy of one is complete; the tests
keep the two equal.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pyrv.models.buchi import BuchiAutomaton, build_buchi
from pyrv.models.ltl import LTLSpec, load_ltl_model
from pyrv.monitors.ltl_records import LTLRecord
from pyrv.monitors.monitor import Monitor
from pyrv.monitors.records import Context

__all__ = [
    "RTAPP",
    "AtomInit",
    "CommPrefix",
    "FactSource",
    "LTLMonitor",
    "LTLMonitorDef",
    "build_rtapp_monitor",
]

RecordSink = Callable[[LTLRecord], None]
#: ``facts(key, fact)``: what the dispatcher knows of a task (``"rt"``, ``"kthread"``, ...).
FactSource = Callable[[Hashable, str], "bool | None"]


@dataclass(frozen=True)
class CommPrefix:
    """An initial atom value: true when the task's comm starts with ``prefix``."""

    prefix: str


AtomValue = bool | CommPrefix


@dataclass(frozen=True)
class AtomInit:
    """``ltl_atoms_init`` as data; see the module docstring for the order of application."""

    always: Mapping[str, AtomValue] = field(default_factory=dict)
    on_creation: Mapping[str, AtomValue] = field(default_factory=dict)
    kernel_thread: Mapping[str, AtomValue] = field(default_factory=dict)
    user_thread: Mapping[str, AtomValue] = field(default_factory=dict)

    def atoms(self) -> set[str]:
        return {*self.always, *self.on_creation, *self.kernel_thread, *self.user_thread}


class _Instance:
    """``struct ltl_monitor``: live states, atom values, unknown atoms (bitmaps)."""

    __slots__ = ("atoms", "states", "unknown")

    def __init__(self, unknown: int) -> None:
        self.states = 0
        self.atoms = 0
        self.unknown = unknown


class LTLMonitor(Monitor):
    """A registered per-task LTL monitor: automaton, instance storage and the engine.

    Keys identify tasks (use :func:`pyrv.monitors.da.task_key` so that each CPU's idle task
    is its own); ``comm``/``pid`` are what records and reactions print for the task.
    """

    uses_task_slot = True
    has_reset = False

    def __init__(
        self,
        name: str,
        description: str,
        automaton: BuchiAutomaton,
        *,
        init: AtomInit | None = None,
        fetch: Mapping[str, str] | None = None,
        facts: FactSource | None = None,
        sink: RecordSink | None = None,
    ) -> None:
        super().__init__(name, description)
        self.automaton = automaton
        self.init = init or AtomInit()
        self.fetch = dict(fetch or {})
        self.facts = facts
        self.sink = sink
        self.emit_events = True  # build event_<mon> records (errors are always built)
        self.instances: dict[Hashable, _Instance] = {}
        self.counts = {"events": 0, "errors": 0}
        self._slot: int | None = None
        self._index = {a: i for i, a in enumerate(automaton.atoms)}
        self._all = (1 << len(automaton.atoms)) - 1
        unknown = (self.init.atoms() | set(self.fetch)) - set(self._index)
        if unknown:
            raise ValueError(f"{name}: atoms {sorted(unknown)} are not atoms of the model")
        self._fetch = tuple((self._index[a], f) for a, f in self.fetch.items())

    # -- registry callbacks ------------------------------------------------------------------

    def enable(self) -> None:
        if self._slot is None:
            assert self.rv is not None, "enable() of an unregistered monitor"
            self._slot = self.rv.get_task_slot()
        self.instances.clear()

    def disable(self) -> None:
        self.instances.clear()
        if self._slot is not None and self.rv is not None:
            self.rv.put_task_slot(self._slot)
        self._slot = None

    def reset_instances(self, keys: Iterable[Hashable]) -> None:
        """Forget the given tasks (a gap in the trace made their state unknowable)."""
        for k in keys:
            self.instances.pop(k, None)

    def active(self) -> bool:
        """The only gate: the enable flag (LTL ignores ``monitoring_on``)."""
        return self.enabled

    # -- entry points ----------------------------------------------------------------------------

    def atom_index(self, atom: str | int) -> int:
        if isinstance(atom, int):
            if not 0 <= atom < len(self.automaton.atoms):
                raise IndexError(f"{self.name}: no atom {atom}")
            return atom
        try:
            return self._index[atom]
        except KeyError:
            raise KeyError(f"{self.name}: no atom {atom!r}") from None

    def task_created(self, key: Hashable, comm: str, pid: int) -> None:
        """``task_newtask``: the task's instance starts afresh, initialised as a new task."""
        if self.active():
            self.instances[key] = self._new_instance(key, comm, creation=True)

    def atom_set(self, key: Hashable, comm: str, pid: int, atom: str | int, value: bool) -> None:
        """``ltl_atom_set``: change an atom, evaluate nothing."""
        if self.active():
            self._set(self._instance(key, comm), self.atom_index(atom), value)

    def atom_update(
        self, key: Hashable, comm: str, pid: int, atom: str | int, value: bool, ctx: Context
    ) -> None:
        """``ltl_atom_update``: set, fetch, then start or validate."""
        if self.active():
            self._update(
                self._instance(key, comm), key, comm, pid, self.atom_index(atom), value, ctx
            )

    def atom_pulse(
        self, key: Hashable, comm: str, pid: int, atom: str | int, value: bool, ctx: Context
    ) -> None:
        """``ltl_atom_pulse``: update to ``value``, flip back to ``not value``, validate."""
        if not self.active():
            return
        inst = self._instance(key, comm)
        bit = self.atom_index(atom)
        self._update(inst, key, comm, pid, bit, value, ctx)
        self._set(inst, bit, not value)
        self._validate(inst, comm, pid, ctx)

    # -- the engine -----------------------------------------------------------------------------

    def _instance(self, key: Hashable, comm: str) -> _Instance:
        inst = self.instances.get(key)
        if inst is None:
            inst = self.instances[key] = self._new_instance(key, comm, creation=False)
        return inst

    def _new_instance(self, key: Hashable, comm: str, creation: bool) -> _Instance:
        """``ltl_task_init``: no live state, every atom unknown, then init and fetch."""
        inst = _Instance(self._all)
        init = self.init
        tables = [init.always]
        if creation:
            tables.append(init.on_creation)
        kthread = self.facts(key, "kthread") if self.facts is not None else None
        if kthread is not None:
            tables.append(init.kernel_thread if kthread else init.user_thread)
        for table in tables:
            for atom, v in table.items():
                value = comm.startswith(v.prefix) if isinstance(v, CommPrefix) else bool(v)
                self._set(inst, self._index[atom], value)
        self._fetch_atoms(inst, key)
        return inst

    @staticmethod
    def _set(inst: _Instance, bit: int, value: bool) -> None:
        mask = 1 << bit
        inst.unknown &= ~mask
        if value:
            inst.atoms |= mask
        else:
            inst.atoms &= ~mask

    def _fetch_atoms(self, inst: _Instance, key: Hashable) -> None:
        facts = self.facts
        if facts is None:
            return
        for bit, fact in self._fetch:
            value = facts(key, fact)
            if value is not None:
                self._set(inst, bit, value)

    def _update(
        self,
        inst: _Instance,
        key: Hashable,
        comm: str,
        pid: int,
        bit: int,
        value: bool,
        ctx: Context,
    ) -> None:
        self._set(inst, bit, value)
        if self._fetch:
            self._fetch_atoms(inst, key)
        if not inst.states:
            if not inst.unknown:
                inst.states = self.automaton.start(inst.atoms)
            return
        self._validate(inst, comm, pid, ctx)

    def _validate(self, inst: _Instance, comm: str, pid: int, ctx: Context) -> None:
        states = inst.states
        if not states:
            return
        nxt = self.automaton.step(states, inst.atoms)
        self.counts["events"] += 1
        if self.emit_events and self.sink is not None:
            self.sink(self._record("event", comm, pid, states, inst.atoms, nxt, ctx))
        inst.states = nxt
        if not nxt:
            self.counts["errors"] += 1
            rec = self._record("error", comm, pid, states, inst.atoms, 0, ctx)
            if self.sink is not None:
                self.sink(rec)  # LTL writes error_<mon> before it reacts
            self.react(rec.reaction_message())

    def _record(
        self, kind: str, comm: str, pid: int, states: int, atoms: int, nxt: int, ctx: Context
    ) -> LTLRecord:
        return LTLRecord(
            kind, self.name, comm, pid, states, atoms, nxt, self.automaton.abbreviations, ctx
        )

    # -- introspection --------------------------------------------------------------------------

    def states_of(self, key: Hashable) -> frozenset[int] | None:
        """The live Büchi states of a task (empty: not started), None if never initialised."""
        inst = self.instances.get(key)
        if inst is None:
            return None
        return frozenset(i for i in range(self.automaton.num_states) if inst.states >> i & 1)

    def atoms_of(self, key: Hashable) -> dict[str, bool | None] | None:
        """A task's atom values by name (None for unknown ones), None if never initialised."""
        inst = self.instances.get(key)
        if inst is None:
            return None
        return {
            a: None if inst.unknown >> i & 1 else bool(inst.atoms >> i & 1)
            for i, a in enumerate(self.automaton.atoms)
        }


# --------------------------------------------------------------------------- the rtapp monitors


@dataclass(frozen=True)
class LTLMonitorDef:
    """What makes one LTL monitor besides the engine: model, description, init/fetch tables."""

    name: str
    description: str
    model: str  # bundled rule file (pyrv/models/files/<container>/<model>.ltl)
    init: AtomInit = field(default_factory=AtomInit)
    fetch: Mapping[str, str] = field(default_factory=dict)

    def spec(self) -> LTLSpec:
        return load_ltl_model(self.model)


_SLEEP_SYSCALL_ATOMS = (
    "NANOSLEEP_CLOCK_MONOTONIC",
    "NANOSLEEP_CLOCK_TAI",
    "NANOSLEEP_TIMER_ABSTIME",
    "CLOCK_NANOSLEEP",
    "FUTEX_WAIT",
    "FUTEX_LOCK_PI",
)


def _false(*atoms: str) -> Mapping[str, AtomValue]:
    return MappingProxyType(dict.fromkeys(atoms, False))


#: The kernel's rtapp monitors (kernel/trace/rv/monitors/{pagefault,sleep,wakeup}/*.c).
#: Fact ``rt``: ``rt_or_dl_task()`` (RT or DEADLINE priority, PI boosting included);
#: fact ``kthread``: ``PF_KTHREAD``.
RTAPP: Mapping[str, LTLMonitorDef] = MappingProxyType(
    {
        "pagefault": LTLMonitorDef(
            "pagefault",
            "Monitor that RT tasks do not raise page faults",
            "rtapp/pagefault",
            AtomInit(on_creation=_false("PAGEFAULT")),
            MappingProxyType({"RT": "rt"}),
        ),
        "sleep": LTLMonitorDef(
            "sleep",
            "Monitor that RT tasks do not undesirably sleep",
            "rtapp/sleep",
            AtomInit(
                always=_false(
                    "SLEEP",
                    "WAKE",
                    "ABORT_SLEEP",
                    "WOKEN_BY_HARDIRQ",
                    "WOKEN_BY_NMI",
                    "WOKEN_BY_EQUAL_OR_HIGHER_PRIO",
                ),
                on_creation=_false(
                    "KTHREAD_SHOULD_STOP", *_SLEEP_SYSCALL_ATOMS, "BLOCK_ON_RT_MUTEX"
                ),
                kernel_thread=MappingProxyType(
                    {
                        "KERNEL_THREAD": True,
                        **_false(*_SLEEP_SYSCALL_ATOMS),  # kernel threads make no syscalls
                        "TASK_IS_MIGRATION": CommPrefix("migration/"),
                        "TASK_IS_RCU": CommPrefix("rcu"),
                    }
                ),
                user_thread=_false(
                    "KTHREAD_SHOULD_STOP", "KERNEL_THREAD", "TASK_IS_RCU", "TASK_IS_MIGRATION"
                ),
            ),
            MappingProxyType({"RT": "rt"}),
        ),
        "wakeup": LTLMonitorDef(
            "wakeup",
            "Monitor that real-time tasks are not woken by lower-priority tasks",
            "rtapp/wakeup",
            AtomInit(
                always=_false("WOKEN_BY_LOWER_PRIO", "WOKEN_BY_SOFTIRQ"),
                on_creation=_false("BLOCK_ON_RT_MUTEX", "FUTEX_LOCK_PI"),
                kernel_thread=MappingProxyType({"USER_THREAD": False}),
                user_thread=MappingProxyType({"USER_THREAD": True}),
            ),
            MappingProxyType({"RT": "rt"}),
        ),
    }
)


def build_rtapp_monitor(
    name: str, facts: FactSource | None = None, sink: RecordSink | None = None
) -> LTLMonitor:
    """One of the kernel's rtapp monitors, ready to register under the ``rtapp`` container."""
    d = RTAPP[name]
    spec = d.spec()
    return LTLMonitor(
        d.name,
        d.description,
        build_buchi(spec, name=d.name),
        init=d.init,
        fetch=d.fetch,
        facts=facts,
        sink=sink,
    )
