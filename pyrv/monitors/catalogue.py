"""The kernel's monitor set, registered as the kernel registers it (spec §1.1, §4).

Built-in monitors register at ``module_init`` in Makefile link order, containers included;
children are inserted right after their parent, so ``available_monitors`` lists siblings in
reverse registration order — the registry does that, this module only keeps the order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path

from pyrv.models.automaton import Automaton
from pyrv.monitors.da import DAMonitor
from pyrv.monitors.hooks import MonitorDef, load_definition
from pyrv.monitors.monitor import Container, Monitor
from pyrv.monitors.registry import RV

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
    "wakeup",
)
CONTAINERS = {
    "sched": "container for several scheduler monitor specifications.",
    "rtapp": "Collection of monitors for detecting problems with real-time applications",
}


def _fields_of(tracepoint: str) -> tuple[str, dict[str, type]] | None:
    from pyrv.sources import tracepoints

    tp = tracepoints.lookup(tracepoint)
    if tp is None:
        return None
    return f"{tp.system}:{tp.name}", {f.name: f.type for f in tp.fields}


def _load_model(name: str) -> Automaton:
    from pyrv.models.library import load_model

    return load_model(name)


def definitions_dir() -> Path:
    return Path(str(resources.files("pyrv.monitors") / "defs"))


def load_monitor_definition(path: str | Path) -> MonitorDef:
    """Load a monitor definition file (model + hook table) with the tracepoint catalogue."""
    return load_definition(path, _fields_of, _load_model)


def kernel_definitions() -> dict[str, MonitorDef]:
    """The bundled definitions of the kernel's DA monitors, by name."""
    return {
        name: load_monitor_definition(definitions_dir() / f"{name}.toml")
        for name in KERNEL_ORDER
        if name not in CONTAINERS
    }


def build_monitor(
    defn: MonitorDef, hz: int | None = None, params: dict[str, int] | None = None
) -> Monitor:
    """The engine a definition needs: the LTL engine for a rule file (rtapp), a hybrid
    automaton for a model with clocks, guards or invariants (stall), the DA engine otherwise."""
    if defn.ltl is not None:
        return _build_ltl(defn)
    if _is_hybrid(defn):
        from pyrv.monitors.ha import DEFAULT_HZ, build_ha_monitor

        known = {k: v for k, v in (params or {}).items() if k in defn.params}
        return build_ha_monitor(defn, params=known, hz=hz or DEFAULT_HZ)
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


def _is_hybrid(defn: MonitorDef) -> bool:
    if defn.model is None:
        return False
    from pyrv.models.dot import load_dot_model
    from pyrv.models.library import available_models, model_path

    if defn.model.name not in available_models():
        return False
    return load_dot_model(model_path(defn.model.name)).is_hybrid


def build_rv(
    definitions: Iterable[MonitorDef] | None = None,
    per_task_slots: int = 2,
    rv_factory: Callable[[int], RV] | None = None,
    hz: int | None = None,
    params: dict[str, int] | None = None,
) -> RV:
    """An RV registry holding the kernel's monitors (or ``definitions``, which replace built-ins
    of the same name and add new ones after them), registered in kernel order."""
    defs = kernel_definitions()
    for d in definitions or ():
        defs[d.name] = d
    rv = rv_factory(per_task_slots) if rv_factory else RV(per_task_slots=per_task_slots)
    containers: dict[str, Monitor] = {}
    order = [n for n in KERNEL_ORDER] + [n for n in defs if n not in KERNEL_ORDER]
    for name in order:
        if name in CONTAINERS:
            containers[name] = Container(name, CONTAINERS[name])
            rv.register_monitor(containers[name])
            continue
        d = defs[name]
        parent = None
        if d.container is not None:
            if d.container not in containers:
                containers[d.container] = Container(d.container, f"container {d.container}.")
                rv.register_monitor(containers[d.container])
            parent = containers[d.container]
        rv.register_monitor(build_monitor(d, hz, params), parent)
    return rv
