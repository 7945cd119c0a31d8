"""Where a trace event enters the monitors: the tracepoint probes of every enabled monitor.

The dispatcher indexes the hooks of the monitors it is given by event name once, then for
each trace event runs the matching hooks in table order (as a kernel probe runs its
``da_handle_*`` calls in order), each on the instance its target picks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pyrv.monitors.da import DAMonitor, MonitorType, task_key
from pyrv.monitors.facts import TaskFacts
from pyrv.monitors.hooks import CURRENT, DERIVED_FIELDS, Hook
from pyrv.monitors.ltl import LTLMonitor
from pyrv.monitors.records import Context
from pyrv.sources.events import LostEvents, TraceEvent


class Dispatcher:
    """Feeds trace events to DA monitors through their hook tables."""

    def __init__(self, monitors: Iterable[DAMonitor], counter_clock: bool = False) -> None:
        self.monitors = list(monitors)
        self.counter_clock = counter_clock
        self.by_event: dict[str, list[tuple[DAMonitor, Hook]]] = defaultdict(list)
        for mon in self.monitors:
            for hook in mon.definition.hooks:
                self.by_event[hook.event_name].append((mon, hook))
        #: monitors with clocks (hybrid automata): trace time drives their timers
        self.timed = [m for m in self.monitors if hasattr(m, "advance_time")]
        self._current: dict[int, tuple[int, str]] = {}  # cpu -> task last seen running there
        self.hooked = {m.name: 0 for m in self.monitors}  # trace events that reached a hook
        self.seen_events: set[str] = set()  # hooked event names that occurred at all
        #: what the trace says of tasks (priorities, kernel threads): LTL facts, common_prio
        self.facts = TaskFacts()
        self.learn = any(isinstance(m, LTLMonitor) for m in self.monitors) or any(
            "common_prio" in (h.when_text or "")
            for pairs in self.by_event.values()
            for _, h in pairs
        )
        for mon in self.monitors:
            if isinstance(mon, LTLMonitor):
                mon.facts = self.facts.fact

    def feed(self, ev: TraceEvent) -> None:
        """Run every hook of ``ev``'s tracepoint (first, let time pass for timed monitors: a
        deadline that expired before this event fires before it, as the kernel's timer did)."""
        if self.timed:
            # the task in this event's context ran on its CPU up to it (a switch's prev, too):
            # a deadline that expired before it fired while that task ran
            self._current[ev.cpu] = (ev.pid, ev.comm)
            for mon in self.timed:
                mon.advance_time(ev.ts, self._timer_context)  # type: ignore[attr-defined]
            if ev.name == "sched_switch" and isinstance(ev.fields.get("next_pid"), int):
                self._current[ev.cpu] = (ev.fields["next_pid"], str(ev.fields.get("next_comm")))
        if self.learn:
            self.facts.learn(ev)
        hooks = self.by_event.get(ev.name)
        if not hooks:
            return
        self.seen_events.add(ev.name)
        if ev.system is not None and not all(
            h.tracepoint.startswith(ev.system + ":") for _, h in hooks
        ):
            hooks = [(m, h) for m, h in hooks if h.tracepoint.startswith(ev.system + ":")]
        ctx = Context(ev.ts, ev.cpu, ev.pid, ev.comm, self.counter_clock)
        counted: set[str] = set()
        values: dict[str, object] | None = None
        for mon, hook in hooks:
            if hook.when is not None or hook.action is not None:
                if values is None:
                    needs = hook.uses_common or hook.tracepoint in DERIVED_FIELDS
                    values = self._with_common(ev) if needs else ev.fields
                if hook.when is not None and not hook.when(values):
                    continue
            key = _instance_key(mon.type, hook, ev)
            if key is None:
                continue
            if mon.name not in counted:
                counted.add(mon.name)
                self.hooked[mon.name] += 1
            if hook.action is not None:
                self._ltl(mon, hook, key, ev, values or ev.fields, ctx)  # type: ignore[arg-type]
                continue
            if hook.storage is not None:
                mon.storage_action(hook.storage, key)  # type: ignore[arg-type]
                continue
            env = None
            if mon.definition.env:  # a hybrid model's value variables, read at the probe
                if values is None or values is ev.fields:
                    values = self._with_common(ev)
                env = {n: v.get(values) for n, v in mon.definition.env.items()}
            if mon.type is MonitorType.PER_OBJ:
                mon.handle_object(hook.entry, key, hook.model_event, ctx, env)  # type: ignore[arg-type]
            elif env is None:
                mon.handle(hook.entry, key, hook.model_event, ctx)
            else:
                mon.handle(hook.entry, key, hook.model_event, ctx, env)  # type: ignore[call-arg]

    def _ltl(
        self,
        mon: LTLMonitor,
        hook: Hook,
        key: object,
        ev: TraceEvent,
        values: dict[str, object],
        ctx: Context,
    ) -> None:
        """An LTL hook: create the task's instance, or set/update/pulse one of its atoms."""
        mon.seen.add(key)  # type: ignore[attr-defined]
        if hook.target == CURRENT:
            pid, comm = ev.pid, ev.comm
        else:
            pid = ev.fields[hook.target]  # type: ignore[index,assignment]
            comm = self.facts.comm_of(pid)  # type: ignore[arg-type]
        if hook.action == "create":
            mon.task_created(key, comm, pid)  # type: ignore[arg-type]
            return
        value = hook.value if isinstance(hook.value, bool) else bool(hook.value(values))  # type: ignore[misc]
        if hook.action == "set":
            mon.atom_set(key, comm, pid, hook.atom, value)  # type: ignore[arg-type]
        elif hook.action == "update":
            mon.atom_update(key, comm, pid, hook.atom, value, ctx)  # type: ignore[arg-type]
        else:
            mon.atom_pulse(key, comm, pid, hook.atom, value, ctx)  # type: ignore[arg-type]

    def _with_common(self, ev: TraceEvent) -> dict[str, object]:
        values = _with_common(ev)
        prio = self.facts.prio_of(ev.pid, ev.cpu)
        if prio is not None:
            values["common_prio"] = prio
        if ev.name == "sys_enter":
            values.update(_syscall_args(ev.fields.get("args")))
        return values

    def finish(self, ts_end: int) -> None:
        """The input ends at ``ts_end``: invariants whose deadline has come are violated."""
        for mon in self.timed:
            mon.finish(ts_end, self._timer_context)  # type: ignore[attr-defined]

    def _timer_context(self, ts: int, cpu: int) -> Context:
        """A timer fires on the CPU that armed it, in the context of whatever runs there."""
        pid, comm = self._current.get(cpu, (-1, "<...>"))
        return Context(ts, cpu, pid, comm, self.counter_clock)

    def lost(self, gap: LostEvents) -> None:
        """Reset the instances a gap may have made stale (as ``monitoring_on`` 0->1 would)."""
        for mon in self.monitors:
            if isinstance(mon, LTLMonitor):  # an LTL monitor has no reset callback of its own
                if gap.pids is None:
                    mon.instances.clear()
                else:
                    cpu = gap.cpu if gap.cpu is not None else 0
                    mon.reset_instances(task_key(p, cpu) for p in gap.pids)
            elif mon.type is MonitorType.PER_TASK:
                if gap.pids is None:
                    mon.reset()
                else:
                    cpu = gap.cpu if gap.cpu is not None else 0
                    mon.reset_instances(task_key(p, cpu) for p in gap.pids)
            elif mon.type is MonitorType.PER_CPU and gap.cpu is not None:
                mon.reset_instances((gap.cpu,))
            else:  # global, or per-object (ids are not pids): every instance; storage stays
                mon.reset()


def _with_common(ev: TraceEvent) -> dict[str, object]:
    values: dict[str, object] = dict(ev.fields)
    values.update(
        common_pid=ev.pid, common_cpu=ev.cpu, common_comm=ev.comm, common_flags=ev.flags or ""
    )
    if ev.flags:
        values.update(context_of(ev.flags))
    return values


def _syscall_args(args: object) -> dict[str, int]:
    """``sys_enter``'s ``args`` as printed (``ffffff9c, 7f91..., 0``) as arg0..arg5."""
    if isinstance(args, str):
        out = {}
        for i, text in enumerate(args.split(",")[:6]):
            try:
                out[f"arg{i}"] = int(text.strip(), 16)
            except ValueError:
                break
        return out
    return {}


def context_of(flags: str) -> dict[str, int]:
    """The probe context the irq-info column shows (trace-formats.md §1.4).

    Column 1: ``d``/``D`` irqs off; column 3: ``h``/``H`` hardirq, ``s`` (or ``H``) softirq,
    ``z``/``Z`` NMI; column 4: preempt depth in hex.
    """
    irq, ctx = flags[0], flags[2] if len(flags) > 2 else "."
    depth = flags[3] if len(flags) > 3 else "."
    return {
        "common_irqs_off": int(irq in "dD"),
        "common_hardirq": int(ctx in "hHZ"),
        "common_softirq": int(ctx in "sH"),
        "common_nmi": int(ctx in "zZ"),
        "common_preempt_depth": 0 if depth == "." else int(depth, 16),
    }


def _instance_key(mtype: MonitorType, hook: Hook, ev: TraceEvent) -> object | None:
    """Which instance an event belongs to; None when the trace cannot say."""
    if mtype is MonitorType.GLOBAL:
        return 0
    if mtype is MonitorType.PER_OBJ:
        return _object_id(hook.target, ev)  # type: ignore[arg-type]
    if hook.target == CURRENT:
        ident = ev.pid if mtype is MonitorType.PER_TASK else ev.cpu
    else:
        ident = ev.fields.get(hook.target)  # type: ignore[arg-type]
    if not isinstance(ident, int) or ident < 0:
        return None
    if mtype is MonitorType.PER_TASK:
        return task_key(ident, ev.cpu)
    return ident


def _object_id(target: str, ev: TraceEvent) -> int | None:
    """A per-object hook's object id: the pid in context (``current``), or an integer field
    (``common_pid``/``common_cpu`` included), negated for a ``-field`` target. Any integer is
    an id (servers' are negative)."""
    if target == CURRENT:
        return ev.pid
    name = target.removeprefix("-")
    if name == "common_cpu":
        ident: object = ev.cpu
    elif name == "common_pid":
        ident = ev.pid
    elif name in ev.fields:
        ident = ev.fields[name]
    else:  # a field pyrv derives: a syscall argument
        ident = _syscall_args(ev.fields.get("args")).get(name)
    if not isinstance(ident, int) or isinstance(ident, bool):
        return None
    return -ident if target.startswith("-") else ident
