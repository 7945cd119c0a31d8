"""The kernel's monitor set, registered as the kernel registers it (spec §1.1, §4).

Built-in monitors register at ``module_init`` in Makefile link order, containers included;
children are inserted right after their parent, so ``available_monitors`` lists siblings in
reverse registration order — the registry does that, this module only keeps the order.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrv.models.dot import DotModel
from pyrv.monitors.da import DAMonitor, MonitorType
from pyrv.monitors.hooks import MonitorDef, load_definition
from pyrv.monitors.monitor import Container, Monitor
from pyrv.monitors.records import Context
from pyrv.monitors.registry import RV

if TYPE_CHECKING:
    from pyrv.models.hybrid import HybridAutomaton, Invariant

#: Makefile link order of the monitors this catalogue ships (kernel/trace/rv/Makefile).
KERNEL_ORDER = (
    "wip",
    "wwnr",
    "sched",
    "sco",
    "snroc",
    "scpd",
    "snep",
    "rtapp",
    "pagefault",
    "sleep",
    "sts",
    "nrp",
    "sssw",
    "opid",
    "stall",
    "deadline",
    "nomiss",
    "wakeup",
)
CONTAINERS = {
    "sched": "container for several scheduler monitor specifications.",
    "rtapp": "Collection of monitors for detecting problems with real-time applications",
    "deadline": "container for several deadline scheduler specifications.",
}


def _fields_of(tracepoint: str) -> tuple[str, dict[str, type]] | None:
    from pyrv.sources import tracepoints

    tp = tracepoints.lookup(tracepoint)
    if tp is None:
        return None
    return f"{tp.system}:{tp.name}", {f.name: f.type for f in tp.fields}


def _load_model(name: str) -> DotModel:
    from pyrv.models.library import load_bundled_dot_model

    return load_bundled_dot_model(name)


def definitions_dir() -> Path:
    return Path(str(resources.files("pyrv.monitors") / "defs"))


def load_monitor_definition(path: str | Path) -> MonitorDef:
    """Load a monitor definition file (model + hook table) with the tracepoint catalogue."""
    defn = load_definition(path, _fields_of, _load_model)
    check_placement(defn)
    return defn


def check_placement(defn: MonitorDef) -> None:
    """Refuse a definition the registry could not place as written, naming its file and line.

    A container is a registered monitor of its own (its desc, its children), which only the
    kernel's modules provide: a definition may join one (``container``) but neither name a
    plain monitor or an unknown name as its container (pyrv would have to invent one), nor
    take a container's name (it would not replace the container: its children would lose
    their parent)."""
    from pyrv.monitors.hooks import DefinitionError

    containers = ", ".join(CONTAINERS)
    if defn.name in CONTAINERS:
        raise DefinitionError(
            defn.source,
            defn.name_line,
            f"monitor {defn.name}: {defn.name} is a built-in container; a definition replaces"
            f" a built-in monitor, not a container (containers: {containers}): choose another"
            " name",
        )
    where = defn.container
    if where is None or where in CONTAINERS:
        return
    what = (
        "a monitor, not a container"
        if where in KERNEL_ORDER
        else "not a container pyrv has (a definition cannot create one)"
    )
    raise DefinitionError(
        defn.source,
        defn.container_line,
        f"monitor {defn.name}: container {where!r} is {what}; containers: {containers}",
    )


def kernel_definitions() -> dict[str, MonitorDef]:
    """The bundled definitions of the kernel's monitors, by name (read once per process:
    definitions are immutable once validated, and every registry built shares them)."""
    return dict(_bundled_definitions())


@functools.cache
def _bundled_definitions() -> dict[str, MonitorDef]:
    return {name: kernel_definition(name) for name in KERNEL_ORDER if name not in CONTAINERS}


@functools.cache
def kernel_definition(name: str) -> MonitorDef:
    """One bundled definition (a monitor of :data:`KERNEL_ORDER`, not a container), read once
    per process: a run of one monitor need not parse the others' files and models."""
    if name not in KERNEL_ORDER or name in CONTAINERS:
        raise KeyError(name)
    return load_monitor_definition(definitions_dir() / f"{name}.toml")


def build_monitor(
    defn: MonitorDef, hz: int | None = None, params: dict[str, int] | None = None
) -> Monitor:
    """The engine a definition needs: the LTL engine for a rule file (rtapp), a hybrid
    automaton for a model with clocks, guards or invariants (stall), the DA engine otherwise."""
    if defn.ltl is not None:
        return _build_ltl(defn)
    if _is_hybrid(defn):
        from pyrv.monitors.ha import DEFAULT_HZ, build_ha_monitor

        if defn.model is not None and defn.model.name == "nomiss":
            return _build_nomiss(defn, hz or DEFAULT_HZ, params or {})
        known = {k: v for k, v in (params or {}).items() if k in defn.params}
        mon = build_ha_monitor(defn, params=known, hz=hz or DEFAULT_HZ)
        _check_env(defn, mon.hybrid)
        return mon
    mon = DAMonitor(defn.name, defn.description, defn.model, defn.type)
    mon.definition = defn
    return mon


def _build_ltl(defn: MonitorDef) -> Monitor:
    from pyrv.models.buchi import build_buchi
    from pyrv.monitors.da import MonitorType
    from pyrv.monitors.ltl import LTLMonitor

    assert defn.ltl is not None
    mon = LTLMonitor(
        defn.name,
        defn.description,
        build_buchi(defn.ltl, name=defn.name),
        init=defn.ltl_init,
        fetch=defn.ltl_fetch,
    )
    mon.definition = defn  # type: ignore[attr-defined]
    mon.type = MonitorType.PER_TASK  # type: ignore[attr-defined]
    mon.seen = set()  # type: ignore[attr-defined]
    return mon


def __getattr__(name: str) -> Any:
    if name == "NomissMonitor":  # built on first use: the hybrid engine is not always needed
        return _nomiss_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _nomiss_class() -> type:
    """The nomiss monitor's class, made when first needed (its base, the hybrid-automaton
    engine, is imported only then)."""
    from pyrv.monitors.ha import HAMonitor

    class NomissMonitor(HAMonitor):
        """nomiss (§4.18) with what nomiss.c computes per entity: ``DEADLINE_NS`` (the
        entity's relative deadline + ``deadline_thresh``) bounds the invariants of ``ready``
        and ``running``, and the values ``is_constr_dl`` and ``is_defer``.

        A trace does not show ``sched_attr``: relative deadlines and constrained-ness come from
        the parameters (see pyrv/monitors/defs/nomiss.toml). Object ids <= 0 are dl servers
        (the fair server of CPU n is -n, the ext server -n - ncpus), deferred, with implicit
        deadlines.
        """

        def __init__(
            self,
            name: str,
            description: str,
            model: HybridAutomaton,
            values: Mapping[str, int],
            deadline_thresh: int,
        ) -> None:
            super().__init__(name, description, model, MonitorType.PER_OBJ)
            self.values_of = dict(values)
            self.deadline_thresh = deadline_thresh
            self.env_provider = self._entity_values

        def _param(self, name: str, ident: int) -> int:
            return self.values_of.get(f"{name}_{ident}", self.values_of[name])

        def relative_deadline(self, ident: int) -> int:
            """``dl_deadline`` of the entity, in ns."""
            if ident <= 0:
                return self.values_of["server_deadline_ns"]
            return self._param("dl_deadline_ns", ident)

        def deadline_ns(self, ident: int) -> int:
            """``DEADLINE_NS(ha_mon)``: relative deadline + deadline_thresh."""
            return self.relative_deadline(ident) + self.deadline_thresh

        def _entity_values(self, key: Hashable, ctx: Context) -> dict[str, int]:
            server = isinstance(key, int) and key <= 0
            constr = 0 if server else self._param("is_constr_dl", key)  # type: ignore[arg-type]
            return {"is_constr_dl": int(bool(constr)), "is_defer": int(server)}

        def _bound(self, key: Hashable, inv: Invariant) -> Invariant:
            ns = self.deadline_ns(key)  # type: ignore[arg-type]
            return dataclasses.replace(inv, bound=ns, bound_ns=ns)

        def _arm(
            self, key: Hashable, inv: Invariant, store: list[int | None], ctx: Context
        ) -> None:
            super()._arm(key, self._bound(key, inv), store, ctx)

        def _invariant_holds(
            self, key: Hashable, inv: Invariant, store: list[int | None], ts: int
        ) -> bool:
            return super()._invariant_holds(key, self._bound(key, inv), store, ts)

    return NomissMonitor


def _build_nomiss(defn: MonitorDef, hz: int, params: Mapping[str, int]) -> Monitor:
    """nomiss with its parameters: the definition's, overridden by ``params`` (which may also
    name one task's: ``dl_deadline_ns_<pid>``, ``is_constr_dl_<pid>``); ``deadline_thresh``
    defaults to one tick at ``hz`` (the kernel's ``TICK_NSEC``)."""
    from pyrv.models.hybrid import tick_ns

    values = dict(defn.params)
    per_entity = ("dl_deadline_ns_", "is_constr_dl_")
    values.update({k: v for k, v in params.items() if k in defn.params or k.startswith(per_entity)})
    thresh = params.get("deadline_thresh", defn.params.get("deadline_thresh", tick_ns(hz)))
    values["deadline_thresh"] = thresh
    # the model's invariants name DEADLINE_NS; the monitor bounds them per entity
    values["DEADLINE_NS"] = values["dl_deadline_ns"] + thresh
    assert defn.model is not None
    model = defn.hybrid_model(values, hz)
    if model.automaton.table() != defn.model.table():
        raise ValueError(
            f"monitor {defn.name}: the hybrid model's DA table is not the definition's"
        )
    mon = _nomiss_class()(defn.name, defn.description, model, values, thresh)
    mon.definition = defn
    return mon


def _check_env(defn: MonitorDef, model: HybridAutomaton) -> None:
    """Every value variable of the model has an [env] row, and every row is one of them: an
    engine asked for a value nobody supplies would fail at the first guard reading it."""
    values = [e.name for e in model.envs if not e.stored]
    missing = [n for n in values if n not in defn.env]
    unknown = [n for n in defn.env if n not in values]
    if missing or unknown:
        from pyrv.monitors.hooks import DefinitionError

        line = defn.env[unknown[0]].line if unknown else defn.env_line
        reason = (
            f"[env] {unknown[0]}: not a value variable of model {model.name!r}"
            if unknown
            else f"model {model.name!r} reads {', '.join(missing)} at the probe: give "
            "each in [env] (a condition or a field name)"
        )
        raise DefinitionError(
            defn.source,
            line,
            f"monitor {defn.name}: {reason}; its value variables: {', '.join(values) or 'none'}",
        )


def _register(rv: RV, mon: Monitor, parent: Monitor | None, defn: MonitorDef) -> None:
    """rv_register_monitor; its refusal (a name the kernel's tree cannot hold: -EINVAL,
    -EEXIST, -ENOMEM for a directory it cannot make) names the definition it came from."""
    try:
        rv.register_monitor(mon, parent)
    except OSError as exc:
        from pyrv.monitors.hooks import DefinitionError

        why = exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc))
        err = DefinitionError(
            defn.source, None, f"monitor {defn.name}: the RV registry refuses it: {why}"
        )
        err.errno = exc.errno  # type: ignore[attr-defined]  # the kernel's, for API callers
        raise err from None


def _is_hybrid(defn: MonitorDef) -> bool:
    return defn.is_hybrid


def build_rv(
    definitions: Iterable[MonitorDef] | None = None,
    per_task_slots: int = 2,
    rv_factory: Callable[[int], RV] | None = None,
    hz: int | None = None,
    params: dict[str, int] | None = None,
    only: Collection[str] | None = None,
) -> RV:
    """An RV registry holding the kernel's monitors (or ``definitions``, which replace built-ins
    of the same name and add new ones after them), registered in kernel order.

    ``only``: build and register just these monitors (and every container, all in the same
    order as the full registry), e.g. for a check of one monitor: the other definitions are
    not even read."""
    user = {d.name: d for d in definitions or ()}
    for d in user.values():  # also those made without load_monitor_definition
        check_placement(d)
    rv = rv_factory(per_task_slots) if rv_factory else RV(per_task_slots=per_task_slots)
    containers: dict[str, Monitor] = {}
    order = [*KERNEL_ORDER, *(n for n in user if n not in KERNEL_ORDER)]
    for name in order:
        if name in CONTAINERS:
            containers[name] = Container(name, CONTAINERS[name])
            rv.register_monitor(containers[name])
            continue
        if only is not None and name not in only:
            continue
        d = user[name] if name in user else kernel_definition(name)
        parent = containers[d.container] if d.container is not None else None
        _register(rv, build_monitor(d, hz, params), parent, d)
    return rv
