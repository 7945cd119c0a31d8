"""The hybrid-automaton monitor: the DA engine plus environment, guards, resets and timers.

This is include/rv/ha_monitor.h on top of :class:`~pyrv.monitors.da.DAMonitor` (spec §3.5):

* an event is first looked up in the DA table; an invalid one takes the DA error path
  unchanged (DA reaction message, ``error_<mon>`` record, reset);
* for a valid one the constraint hook runs, in the kernel's order: the *current* state's
  invariant must still hold, then the transition's guard is checked and its resets done, then
  the timer is armed when entering a state with an invariant (from another state, or on a
  self-loop of an event that resets somewhere) or cancelled when leaving one. A failure reacts
  with ``rv: monitor M does not allow event E on state S with env ENV``, writes an
  ``error_env_<mon>`` record (an :class:`EnvRecord`), resets the instance and writes **no**
  ``event_<mon>`` record; otherwise the state changes and the event record is written;
* timers run on trace time. :meth:`HAMonitor.advance_time` fires every deadline strictly
  before a time (react with event ``none``, ``error_env`` record, reset): the dispatcher calls
  it before each trace event, and :meth:`HAMonitor.finish` at the end of the trace fires the
  deadlines up to and including the end. :meth:`HAMonitor.handle` advances time itself too,
  so a monitor driven directly still sees its timers.

Semantics chosen where the kernel depends on things a trace cannot show (documented in the
tests too):

* timers are exact: the record is stamped with the deadline (anchor + bound), where the
  kernel's timer wheel may fire up to one wheel granule late. An event at exactly the
  deadline finds the invariant ``clk < c`` false and fails with its own name (the kernel's
  hrtimer/wheel race there has no defined winner);
* an invariant ``clk < c`` is strict for both clock units (the kernel's ns check accepts
  ``clk == c``; its jiffy check does not);
* a jiffy clock reads ``elapsed_ns // tick_ns``; the kernel subtracts two jiffies counters,
  which can read one more when the interval straddles a tick;
* a clock never reset since the instance started is *unset*: guards reading it pass (rvgen's
  ``ha_monitor_env_invalid(...) ||``), a timer armed on it runs the full bound from arming,
  and the invariant check then compares with that timer's deadline. Its env value prints as
  the kernel's arithmetic on the ``U64_MAX`` marker gives (``now + 1``, meaningless there too);
* the timer record's context is built by ``ctx_factory(ts, cpu)`` with the CPU of the event
  that armed the timer (where a non-pinned wheel timer normally runs); the default names no
  task (``<...>``, pid -1), since a trace cannot say what the timer interrupted.

The env string is ``name=value`` for every variable in model order, joined by commas: clocks
as time since their last reset in their unit, values as supplied for the event (or, for a
timer, the last ones supplied to that instance; ``U64_MAX`` when never), all as unsigned
64-bit numbers, cut to 63 characters as the kernel's 64-byte ``seq_buf`` does.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyrv.models.hybrid import DEFAULT_HZ, BoolOp, Comparison, Guard, HybridAutomaton, Invariant
from pyrv.monitors.da import DAMonitor, Entry, MonitorType, RecordSink, key_id
from pyrv.monitors.records import Context, Record

if TYPE_CHECKING:
    from pyrv.monitors.hooks import MonitorDef

__all__ = [
    "ENV_BUFFER_SIZE",
    "ENV_INVALID_VALUE",
    "EVENT_NONE",
    "EnvRecord",
    "HAMonitor",
    "build_ha_monitor",
]

#: ``DECLARE_SEQ_BUF(env_string, ENV_BUFFER_SIZE)``: at most 63 characters survive.
ENV_BUFFER_SIZE = 64
#: what ``ha_get_env`` returns for a variable it cannot read (and the unset-store marker)
ENV_INVALID_VALUE = 2**64 - 1
#: the event label of a timer expiry
EVENT_NONE = "none"

#: builds the context of a timer expiry record from (time, CPU that armed the timer)
TimerContext = Callable[[int, int], Context]
#: supplies the value variables for an event: (instance key, context) -> {name: value}
EnvProvider = Callable[[Hashable, Context], Mapping[str, int]]


@dataclass(slots=True, frozen=True)
class EnvRecord(Record):
    """An ``error_env_<mon>`` record: a failed constraint or an expired invariant (§5)."""

    env: str

    def payload(self) -> str:
        ident = "" if self.id is None else f"{self.id}: "
        return (
            f"{ident}event {self.event} not expected in the state {self.state} with env {self.env}"
        )

    def reaction_message(self) -> str:
        """The message an HA monitor hands its reactor (ha_monitor.h), newline-terminated."""
        return (
            f"rv: monitor {self.monitor} does not allow event {self.event} on state "
            f"{self.state} with env {self.env}\n"
        )

    def as_json(self) -> dict[str, Any]:
        out = Record.as_json(self)
        out["env"] = self.env
        return out


@dataclass(slots=True)
class _Timer:
    deadline: int
    seq: int
    cpu: int
    counter_clock: bool


def _unknown_task(ts: int, cpu: int) -> Context:
    return Context(ts, cpu, -1, "<...>")


class HAMonitor(DAMonitor):
    """A registered HA monitor: a :class:`HybridAutomaton`, instances, stores and timers."""

    def __init__(
        self,
        name: str,
        description: str,
        model: HybridAutomaton,
        mtype: MonitorType,
        sink: RecordSink | None = None,
    ) -> None:
        super().__init__(name, description, model.automaton, mtype, sink)
        self.hybrid = model
        #: per instance: the time (ns) of the last reset of each stored variable, None = unset
        self.stores: dict[Hashable, list[int | None]] = {}
        #: per instance: its armed timer
        self.timers: dict[Hashable, _Timer] = {}
        #: per instance: the value variables last supplied (used by timer env strings)
        self.values: dict[Hashable, dict[str, int]] = {}
        #: value variables for events handled without an ``env`` argument
        self.env_provider: EnvProvider | None = None
        #: context of timer records when advance_time/finish are not given a factory
        self.timer_context: TimerContext | None = None
        self._heap: list[tuple[int, int, Hashable]] = []
        self._seq = 0
        self.now: int | None = None  # latest trace time seen

    # -- instance storage ----------------------------------------------------------------------

    def reset(self) -> None:
        super().reset()
        self.stores.clear()
        self.timers.clear()
        self.values.clear()
        self._heap.clear()

    def reset_instances(self, keys: Iterable[Hashable]) -> None:
        for k in keys:
            self._drop(k)

    def _drop(self, key: Hashable) -> None:
        """da_monitor_reset: not monitoring, timer cancelled, stores forgotten."""
        self.instances.pop(key, None)
        self.stores.pop(key, None)
        self.timers.pop(key, None)
        self.values.pop(key, None)

    def _start(self, key: Hashable) -> int:
        """da_monitor_start + ha_monitor_init_env: initial state, every store unset."""
        self.instances[key] = self.model.initial
        self.stores[key] = [None] * self.hybrid.stored_count
        self.timers.pop(key, None)
        return self.model.initial

    # -- time ------------------------------------------------------------------------------------

    def advance_time(
        self, ts: int, ctx_factory: TimerContext | None = None, *, inclusive: bool = False
    ) -> None:
        """Fire every armed deadline before ``ts`` (also at ``ts`` when ``inclusive``), in
        deadline order, each as the kernel's timer callback would."""
        heap = self._heap
        while heap and (heap[0][0] < ts or (inclusive and heap[0][0] == ts)):
            _, seq, key = heapq.heappop(heap)
            timer = self.timers.get(key)
            if timer is None or timer.seq != seq:
                continue  # cancelled or re-armed since
            del self.timers[key]
            self._expire(key, timer, ctx_factory)
        if self.now is None or ts > self.now:
            self.now = ts

    def finish(self, ts_end: int, ctx_factory: TimerContext | None = None) -> None:
        """The trace ends at ``ts_end``: fire the deadlines up to and including it."""
        self.advance_time(ts_end, ctx_factory, inclusive=True)

    def next_deadline(self) -> int | None:
        """The earliest armed deadline, if any."""
        while self._heap:
            deadline, seq, key = self._heap[0]
            timer = self.timers.get(key)
            if timer is not None and timer.seq == seq:
                return deadline
            heapq.heappop(self._heap)
        return None

    def _arm(self, key: Hashable, inv: Invariant, store: list[int | None], ctx: Context) -> None:
        """ha_start_timer_*: expire ``bound`` after the clock's last reset (or from now)."""
        anchor = store[inv.env]
        passed = 0 if anchor is None else ctx.ts - anchor
        deadline = max(ctx.ts + inv.bound_ns - passed, ctx.ts)  # a past deadline fires at once
        self._seq += 1
        self.timers[key] = _Timer(deadline, self._seq, ctx.cpu, ctx.counter_clock)
        heapq.heappush(self._heap, (deadline, self._seq, key))

    def _expire(self, key: Hashable, timer: _Timer, factory: TimerContext | None) -> None:
        """__ha_monitor_timer_callback: react with ``none``, error_env, reset."""
        if not self.active() or key not in self.instances:
            return  # the kernel's callback bails out without touching the instance
        make = factory or self.timer_context
        ctx = make(timer.deadline, timer.cpu) if make else _unknown_task(timer.deadline, timer.cpu)
        if timer.counter_clock and not ctx.counter_clock:
            ctx = Context(ctx.ts, ctx.cpu, ctx.pid, ctx.comm, True)
        self._env_error(key, self.instances[key], EVENT_NONE, ctx)

    # -- the engine ----------------------------------------------------------------------------

    def handle(
        self,
        entry: Entry,
        key: Hashable,
        event: int,
        ctx: Context,
        env: Mapping[str, int] | None = None,
    ) -> None:
        """Run one model event; ``env`` gives the value variables (see ``env_provider``)."""
        self.advance_time(ctx.ts)
        state = self._admit(entry, key)
        if state is not None:
            self._step(key, state, event, ctx, env)

    def _step(
        self,
        key: Hashable,
        state: int,
        event: int,
        ctx: Context,
        env: Mapping[str, int] | None = None,
    ) -> None:
        model = self.model
        nxt = model.function[state][event]
        if nxt is None:
            super()._step(key, state, event, ctx)  # the DA error path, message and record
            self._drop(key)
            return
        self.counts["events"] += 1
        if env is None and self.env_provider is not None:
            env = self.env_provider(key, ctx)
        if env is not None:
            self.values[key] = dict(env)
        if not self._constraints(key, state, event, nxt, ctx):
            self._env_error(key, state, model.events[event], ctx)
            return
        self.instances[key] = nxt
        self._emit_event(key, state, event, nxt, ctx)

    def _constraints(self, key: Hashable, state: int, event: int, nxt: int, ctx: Context) -> bool:
        """ha_verify_constraint: invariant of the current state, guard and resets, timers."""
        h = self.hybrid
        ts = ctx.ts
        store = self.stores[key]
        inv = h.invariants.get(state)
        if inv is not None and not self._invariant_holds(key, inv, store, ts):
            return False
        rule = h.rules.get((state, event))
        ok = True
        if rule is not None:
            if rule.guard is not None and all(store[i] is not None for i in rule.guard_stored):
                ok = self._eval(rule.guard, key, store, ts)
            for i in rule.resets:  # done even when the guard fails, as the generated code does
                store[i] = ts
        if not ok:
            return False
        if nxt == state and event not in h.self_loop_reset_events:
            return True
        next_inv = h.invariants.get(nxt)
        if next_inv is not None:
            self._arm(key, next_inv, store, ctx)
        elif inv is not None:
            self.timers.pop(key, None)
        return True

    def _invariant_holds(
        self, key: Hashable, inv: Invariant, store: list[int | None], ts: int
    ) -> bool:
        anchor = store[inv.env]
        if anchor is None:
            timer = self.timers.get(key)
            return timer is None or ts < timer.deadline
        return ts - anchor < inv.bound_ns

    def _eval(self, g: Guard, key: Hashable, store: list[int | None], ts: int) -> bool:
        if isinstance(g, BoolOp):
            if g.op == "&&":
                return self._eval(g.left, key, store, ts) and self._eval(g.right, key, store, ts)
            return self._eval(g.left, key, store, ts) or self._eval(g.right, key, store, ts)
        assert isinstance(g, Comparison)
        return g.holds(self._env_value(g.env, key, store, ts))

    def _env_value(self, i: int, key: Hashable, store: list[int | None], ts: int) -> int:
        e = self.hybrid.envs[i]
        if e.stored:
            anchor = store[i]
            if anchor is None:  # ha_get_clk_*: now - U64_MAX
                now = ts if e.kind == "ns" else ts // self.hybrid.tick_ns
                return (now + 1) % 2**64
            return self.hybrid.clock_value(i, ts - anchor)
        values = self.values.get(key)
        if values is None or e.name not in values:
            raise ValueError(
                f"monitor {self.name}: no value for environment variable {e.name!r} "
                "(pass env= to handle() or set env_provider)"
            )
        return values[e.name] % 2**64  # ha_get_env returns u64

    def env_string(self, key: Hashable, ts: int) -> str:
        """``ha_get_env_string``: ``name=value,...`` cut to ENV_BUFFER_SIZE - 1 characters."""
        store = self.stores.get(key) or [None] * self.hybrid.stored_count
        values = self.values.get(key, {})
        parts = []
        for i, e in enumerate(self.hybrid.envs):
            if e.stored:
                v = self._env_value(i, key, store, ts)
            else:
                v = values.get(e.name, ENV_INVALID_VALUE)
            parts.append(f"{e.name}={v % 2**64}")
        return ",".join(parts)[: ENV_BUFFER_SIZE - 1]

    def _env_error(self, key: Hashable, state: int, event: str, ctx: Context) -> None:
        """React (HA message), write error_env_<mon>, reset the instance."""
        self.counts["errors"] += 1
        rec = EnvRecord(
            "error_env",
            self.name,
            key_id(key) if self._has_id else None,
            self.model.states[state],
            event,
            None,
            False,
            ctx,
            self.env_string(key, ctx.ts),
        )
        try:
            self.react(rec.reaction_message())  # HA reacts before it writes error_env_<mon>
        except Exception as exc:  # a reactor that stops the run (panic) says where
            exc.add_note(f"reacting to: {rec.trace_line()}")
            raise
        if self.sink is not None:
            self.sink(rec)
        self._drop(key)


def build_ha_monitor(
    defn: MonitorDef,
    model: HybridAutomaton | None = None,
    *,
    params: Mapping[str, int] | None = None,
    hz: int = DEFAULT_HZ,
) -> HAMonitor:
    """An :class:`HAMonitor` for a monitor definition whose model is hybrid.

    ``model`` defaults to the definition's own model (as its DOT file was read, whatever the
    file's name), evaluated with ``params`` (the definition's own first, overridden by these)
    and ``hz``. Its DA table must be the definition's.
    """
    if model is None:
        merged = dict(defn.params)
        merged.update(params or {})
        model = defn.hybrid_model(merged, hz)
    if model.automaton.table() != defn.model.table() or model.automaton.states != defn.model.states:
        raise ValueError(
            f"monitor {defn.name}: the hybrid model's DA table is not the definition's"
        )
    mon = HAMonitor(defn.name, defn.description, model, defn.type)
    mon.definition = defn
    return mon
