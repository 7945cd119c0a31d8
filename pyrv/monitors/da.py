"""The generic deterministic-automaton monitor: one engine, three entry points, one reset path.

This is include/rv/da_monitor.h in Python (spec §3.2, §3.3). A monitor is data (an
:class:`~pyrv.models.automaton.Automaton` and a hook table) plus this engine; instances are
kept in a dict keyed by the instance id, and an instance that is *not monitoring* is simply
absent from it, so a reset is a delete and "enable resets every task" is a clear.

Per-object monitors (``RV_MON_PER_OBJ``, spec §3.2, §4.18) add a storage table in front of
the instances: an object's events reach the engine only while the object has *storage*, which
is created by start events (or explicitly, or pre-allocated when the monitor is enabled) and
destroyed explicitly; see :class:`ObjectStorage` and :meth:`DAMonitor.handle_object`.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass
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
    """The id printed in ``*_id`` records for an instance key (idle tasks print 0; an
    object prints its id as the kernel's ``int id`` field holds it)."""
    if isinstance(key, ObjectId):
        return c_int(key)
    if isinstance(key, int) and key < 0:
        return 0
    return key if isinstance(key, int) else None


# -- per-object storage (include/rv/da_monitor.h, RV_MON_PER_OBJ) ----------------------------

#: ``DA_MONITOR_HT_BITS`` = 10: the kernel's per-object hash table has 1024 buckets
OBJ_BUCKETS = 1024
#: how many objects the table holds before creating storage fails (pyrv's stand-in for the
#: kernel's kmem_cache running out of memory): PID_MAX_DEFAULT, far beyond real DL entity counts
OBJ_MAX_OBJECTS = 32768
_GOLDEN_RATIO_32 = 0x61C88647


class ObjectId(int):
    """A per-object instance key: the object's integer id (a pid, a negative server id...).

    Any integer works as a key; records print it truncated to a C ``int``, as the kernel's
    ``event_da_monitor_id`` does with a wider ``da_id_type``."""


def c_int(value: int) -> int:
    """``value`` as a 32-bit signed C ``int`` holds it (two's complement truncation)."""
    return (value + 2**31) % 2**32 - 2**31


@dataclass(frozen=True)
class StorageConfig:
    """How a per-object monitor keeps its storage (the ``[storage]`` table of a definition).

    ``auto_alloc``: a start/start_run event for an object without storage creates it
    (``da_create_storage``); False is ``DA_SKIP_AUTO_ALLOC``: start events only use storage
    that exists (created by a ``storage = "create"`` hook or pre-allocated).
    ``preallocate``: ids whose (empty) storage is created when the monitor is enabled.
    ``buckets``: the hash table's buckets (a power of two); ``max_objects``: the table is full
    when it holds that many objects, and creating one more fails with ENOMEM.
    """

    auto_alloc: bool = True
    preallocate: tuple[int, ...] = ()
    buckets: int = OBJ_BUCKETS
    max_objects: int = OBJ_MAX_OBJECTS


class ObjectStorage:
    """The per-object table: which objects have storage, in ``buckets`` hash chains.

    Chains are unbounded, as the kernel's ``hlist`` buckets are: the table is *full* only when
    it holds ``max_objects`` objects (the kernel's equivalent is a failed allocation). Then
    :meth:`create` fails: the monitor counts it (``counts["enomem"]``) and drops the event that
    wanted the storage, as the kernel's start hooks do when ``da_create_storage`` returns NULL;
    at enable time (pre-allocation) the failure is ENOMEM for the whole enable.
    """

    def __init__(self, config: StorageConfig | None = None) -> None:
        self.config = config or StorageConfig()
        n = self.config.buckets
        if n < 1 or n & (n - 1):
            raise ValueError(f"storage buckets must be a power of two, not {n}")
        self._bits = n.bit_length() - 1
        self._chains: list[dict[int, None]] = [{} for _ in range(n)]
        self._count = 0

    def bucket_of(self, ident: int) -> int:
        """The bucket of an id: the kernel's ``hash_min`` (``hash_32`` of an ``int`` key)."""
        if self._bits == 0:
            return 0
        return ((ident * _GOLDEN_RATIO_32) & 0xFFFFFFFF) >> (32 - self._bits)

    def __contains__(self, ident: object) -> bool:
        return isinstance(ident, int) and ident in self._chains[self.bucket_of(ident)]

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        for chain in self._chains:
            yield from chain

    def full(self) -> bool:
        return self._count >= self.config.max_objects

    def create(self, ident: int) -> bool:
        """Get or create the storage of ``ident``; False when the table is full (ENOMEM)."""
        chain = self._chains[self.bucket_of(ident)]
        if ident in chain:
            return True
        if self.full():
            return False
        chain[ident] = None
        self._count += 1
        return True

    def destroy(self, ident: int) -> bool:
        """Free the storage of ``ident``; False when it had none."""
        chain = self._chains[self.bucket_of(ident)]
        if ident not in chain:
            return False
        del chain[ident]
        self._count -= 1
        return True

    def clear(self) -> None:
        for chain in self._chains:
            chain.clear()
        self._count = 0


#: what a ``storage = ...`` hook row does to its object's storage
STORAGE_ACTIONS = ("create", "destroy", "reset")


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
        #: per-object monitors: the storage table (empty until enabled) and its configuration
        #: when the monitor has no definition saying otherwise
        self.storage_config = StorageConfig()
        self.storage: ObjectStorage | None = None
        if mtype is MonitorType.PER_OBJ:
            self.counts["enomem"] = 0

    # -- registry callbacks ------------------------------------------------------------------

    def enable(self) -> None:
        if self.uses_task_slot and self._slot is None:
            assert self.rv is not None, "enable() of an unregistered monitor"
            self._slot = self.rv.get_task_slot()
        if self.type is MonitorType.PER_OBJ:
            self._init_storage()
        self.reset()

    def disable(self) -> None:
        self.reset()
        if self._slot is not None and self.rv is not None:
            self.rv.put_task_slot(self._slot)
        self._slot = None
        if self.storage is not None:  # da_monitor_destroy: every storage freed
            self.storage.clear()

    def reset(self) -> None:
        self.instances.clear()

    def reset_instances(self, keys: Iterable[Hashable]) -> None:
        """Forget the given instances (a gap in the trace made their state unknowable)."""
        for k in keys:
            self.instances.pop(k, None)

    # -- per-object storage ------------------------------------------------------------------

    def _init_storage(self) -> None:
        """da_monitor_init + the monitor's pre-allocation: an empty table, then the storage of
        every pre-allocated id; ENOMEM (and an empty table) when they do not fit."""
        config = getattr(self.definition, "storage", None) or self.storage_config
        table = ObjectStorage(config)
        for ident in config.preallocate:
            if not table.create(ident):
                table.clear()
                self.storage = table
                raise OSError(
                    errno.ENOMEM,
                    f"{self.name}: cannot pre-allocate storage for {len(config.preallocate)} "
                    f"objects (the table holds {config.max_objects})",
                )
        self.storage = table

    def has_storage(self, ident: int) -> bool:
        return self.storage is not None and ident in self.storage

    def create_storage(self, ident: int) -> bool:
        """``da_create_or_get``: storage for ``ident`` (kept if it exists). False on ENOMEM."""
        if self.storage is None:
            return False
        if self.storage.create(ident):
            return True
        self.counts["enomem"] += 1
        return False

    def destroy_storage(self, ident: int) -> None:
        """``da_destroy_storage``: reset the object's instance (timer included), free it."""
        if self.storage is not None and self.storage.destroy(ident):
            self.reset_instances((ObjectId(ident),))

    def reset_object(self, ident: int) -> None:
        """``da_reset``: the object's instance stops monitoring; its storage stays."""
        if self.has_storage(ident):
            self.reset_instances((ObjectId(ident),))

    def storage_action(self, action: str, ident: int) -> None:
        """What a ``storage = ...`` hook row does: create, destroy or reset (probes are
        attached while the monitor is enabled, whatever ``monitoring_on`` says)."""
        if not self.enabled:
            return
        if action == "create":
            self.create_storage(ident)
        elif action == "destroy":
            self.destroy_storage(ident)
        elif action == "reset":
            self.reset_object(ident)
        else:
            raise ValueError(f"unknown storage action {action!r} ({', '.join(STORAGE_ACTIONS)})")

    def handle_object(
        self,
        entry: Entry,
        ident: int,
        event: int,
        ctx: Context,
        env: Mapping[str, int] | None = None,
    ) -> None:
        """A per-object monitor's ``da_handle_*(id, target, event)``: only an object with
        storage reaches the engine. ``handle`` on an object without storage is ignored; a
        start/start_run creates the storage first (``da_create_storage``) unless the monitor
        skips auto allocation, and the event is dropped when the table is full. ``env``: a
        hybrid model's value variables for this event (HAMonitor.handle)."""
        if not self.active():
            return
        key = ObjectId(ident)
        if not self.has_storage(key):
            if entry is Entry.HANDLE or not self._auto_alloc():
                return
            if not self.create_storage(key):
                return
        if env is None:
            self.handle(entry, key, event, ctx)
        else:
            self.handle(entry, key, event, ctx, env)  # type: ignore[call-arg]

    def _auto_alloc(self) -> bool:
        return (self.storage.config if self.storage is not None else self.storage_config).auto_alloc

    # -- the engine -----------------------------------------------------------------------------

    def active(self) -> bool:
        """The gate checked before anything else: ``monitoring_on`` and the enable flag."""
        rv = self.rv
        return self.enabled and (rv is None or rv.monitoring_on)

    def handle(self, entry: Entry, key: Hashable, event: int, ctx: Context) -> None:
        """Run one model event on instance ``key`` through the given entry point."""
        state = self._admit(entry, key)
        if state is not None:
            self._step(key, state, event, ctx)

    def _admit(self, entry: Entry, key: Hashable) -> int | None:
        """The gate and the three entry points (§3.3): the state to process the event from,
        or None when the event stops here (gated, not monitoring, or a start that drops it)."""
        if not self.active():
            return None
        self.seen.add(key)
        state = self.instances.get(key)
        if state is None:
            if entry is Entry.HANDLE:
                return None
            state = self._start(key)
            if entry is Entry.START:
                return None
        return state

    def _start(self, key: Hashable) -> int:
        """da_monitor_start: the instance begins in the initial state."""
        self.instances[key] = self.model.initial
        return self.model.initial

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
