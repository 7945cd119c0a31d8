"""Monitor definitions: a model plus a declarative hook table, loaded from TOML.

A hook says, for one tracepoint, which instance the event belongs to (a task or CPU taken
from a field, or the task/CPU in context), under which condition, through which entry point
and as which model event — exactly the glue a kernel monitor's ``handle_*`` probes hold in C.
The format is documented in ``docs/monitor-definitions.md``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyrv.models.automaton import Automaton, ModelError
from pyrv.models.dot import DotModel
from pyrv.models.ltl import LTLSpec, load_ltl, load_ltl_model
from pyrv.monitors.conditions import (
    ConditionError,
    Fields,
    Predicate,
    compile_condition,
    shorten,
    tells_apart,
)
from pyrv.monitors.da import STORAGE_ACTIONS, Entry, MonitorType, StorageConfig
from pyrv.monitors.ltl import AtomInit, CommPrefix

if TYPE_CHECKING:
    from pyrv.models.hybrid import HybridAutomaton

#: Fields every event has besides its own: the context of the task that hit the tracepoint.
COMMON_TYPES: dict[str, type] = {
    "common_pid": int,
    "common_cpu": int,
    "common_comm": str,
    "common_flags": str,
}
#: The probe's context, from the irq-info column (or common_flags/common_preempt_count):
#: what the kernel's probes read with in_hardirq(), irqs_disabled(), preempt_count().
CONTEXT_TYPES: dict[str, type] = {
    "common_hardirq": int,
    "common_softirq": int,
    "common_nmi": int,
    "common_irqs_off": int,
    "common_preempt_depth": int,
}
COMMON_TYPES.update(CONTEXT_TYPES)
#: the prio the trace last showed for the task in context (the waker, for sched_waking)
COMMON_TYPES["common_prio"] = int
#: fields pyrv derives from an event's own: syscall arguments as numbers
DERIVED_FIELDS: dict[str, dict[str, type]] = {
    "raw_syscalls:sys_enter": {f"arg{i}": int for i in range(6)},
}
COMMON_FIELDS = tuple(COMMON_TYPES)
#: the field that prints the preempt flag as a '+' (``R+``: switched out by preemption), and
#: the one value it shows instead where the '+' is dropped (trace-cmd report's plugin)
PREEMPT_FIELD = ("sched:sched_switch", "prev_state")
PREEMPTED, PREEMPTED_WITHOUT_PLUS = "R+", "R"
_TYPE_NAMES = {"int": int, "str": str}
CURRENT = "current"
_HOOK_KEYS = {
    "tracepoint",
    "task",
    "cpu",
    "object",
    "when",
    "entry",
    "event",
    "optional",
    "storage",
}
_LTL_HOOK_KEYS = {"tracepoint", "task", "when", "action", "atom", "value", "optional"}
#: what an LTL hook does to an atom (include/rv/ltl_monitor.h), or "create" (task_newtask)
LTL_ACTIONS = ("update", "pulse", "set", "create")
#: facts a dispatcher derives from the trace for LTL ``fetch`` atoms
FACTS = ("rt", "kthread")
_MONITOR_KEYS = {"name", "description", "type", "model", "container", "params"}
#: keys of a per-object monitor's [storage] table (da.StorageConfig)
_STORAGE_KEYS = {"auto_alloc", "preallocate", "buckets", "max_objects"}
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_PID_FIELD = re.compile(r"(^|_)(pid|tid)$")
_CPU_FIELD = re.compile(r"(^|_)cpu(_id)?$")


class DefinitionError(ValueError):
    """A malformed monitor definition; names the file, line (when known) and the reason."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source, self.line, self.reason = source, line, reason
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class Hook:
    """One row of a hook table, validated and compiled."""

    tracepoint: str  # "sched:sched_switch"
    event_name: str  # "sched_switch": what a text trace prints
    target: str | None  # field naming the task/CPU, CURRENT, or None (global monitors)
    when: Predicate | None
    when_text: str | None
    uses_common: bool
    uses_context: bool  # needs the irq-info column
    optional: bool  # the tracepoint exists only on some architectures/configurations
    entry: Entry
    model_event: int
    model_event_name: str
    line: int | None
    # LTL hooks (model_event is -1): what to do to which atom, with which value
    action: str | None = None
    atom: str | None = None
    value: bool | Predicate | None = None
    # per-object storage rows (model_event is -1): create, destroy or reset the object's storage
    storage: str | None = None
    #: a condition tells R+ from R: needs input that prints prev_state's preempt '+'
    reads_preempt: bool = False


#: what ``ha_get_env`` returns for a variable it cannot read (spec §3.5)
ENV_UNREADABLE = 2**64 - 1


@dataclass(frozen=True)
class EnvValue:
    """One row of ``[env]``: a value variable of a hybrid model (``irq_off``), computed from
    every event the monitor handles, as the kernel monitor's ``ha_get_env`` reads it at the
    probe. ``text`` is a condition (1 when it holds, else 0) or the name of an integer field."""

    name: str
    text: str
    get: Callable[[Fields], int]
    uses_common: bool
    uses_context: bool
    line: int | None
    reads_preempt: bool = False  # as Hook.reads_preempt


@dataclass
class MonitorDef:
    """Everything needed to build and register one monitor."""

    name: str
    description: str
    type: MonitorType
    model: Automaton | None  # None for an LTL monitor (its model is ``ltl``)
    container: str | None
    hooks: list[Hook] = field(default_factory=list)
    declared_events: dict[str, dict[str, str]] = field(default_factory=dict)
    source: str = ""
    #: values of a hybrid model's named constants (the kernel's module parameters)
    params: dict[str, int] = field(default_factory=dict)
    ltl: LTLSpec | None = None  # the rule file of an LTL monitor
    ltl_init: AtomInit | None = None  # its ltl_atoms_init() as data
    ltl_fetch: dict[str, str] = field(default_factory=dict)  # atom -> fact, re-read each update
    storage: StorageConfig | None = None  # a per-object monitor's [storage] table
    #: a hybrid model's value variables, by name ([env]); empty when the model has none
    env: dict[str, EnvValue] = field(default_factory=dict)
    env_line: int | None = None  # where [env] is, for errors found when the model is built
    #: where ``name`` and ``container`` are, for errors found when the monitor is registered
    name_line: int | None = None
    container_line: int | None = None
    #: the model as its DOT file was read, HA parts (guards, resets, invariants) included: a
    #: hybrid model is evaluated from it with the run's parameters and HZ, never re-read
    dot: DotModel | None = None

    @property
    def is_hybrid(self) -> bool:
        """Whether the model has clocks, guards or invariants: the HA engine runs it."""
        return self.dot is not None and self.dot.is_hybrid

    def hybrid_model(self, params: Mapping[str, int], hz: int) -> HybridAutomaton:
        """The model's DOT read as a hybrid automaton with these parameter values and HZ."""
        from pyrv.models.hybrid import hybrid_from_dot

        if self.dot is None:
            raise ValueError(f"monitor {self.name}: its model was not read from a DOT file")
        return hybrid_from_dot(self.dot, self.dot.source, params, hz=hz)

    def tracepoints(self) -> list[str]:
        """The tracepoints this monitor hooks, in table order, without repeats."""
        return list(dict.fromkeys(h.tracepoint for h in self.hooks))

    def required_tracepoints(self) -> list[str]:
        """The hooked tracepoints an input must have for the monitor to run."""
        optional = {h.tracepoint for h in self.hooks if h.optional}
        return [tp for tp in self.tracepoints() if tp not in optional]

    def uses_context(self) -> bool:
        """Whether a hook or an [env] value reads the probe context (hardirq, irqs off...) of the
        irq-info column."""
        return any(h.uses_context for h in self.hooks) or any(
            v.uses_context for v in self.env.values()
        )

    def reads_preempt(self) -> bool:
        """Whether a condition tells a preempted switch (``R+``) from a runnable one (``R``),
        so that input whose sched_switch lost the '+' would change the verdicts."""
        return any(h.reads_preempt for h in self.hooks) or any(
            v.reads_preempt for v in self.env.values()
        )


#: a bundled model's name -> the model, with its DOT-level parts when it has them
ModelLookup = Callable[[str], "Automaton | DotModel"]
#: tracepoint -> (its system:name, its fields with their types, or just their names)
FieldLookup = Callable[[str], "tuple[str, Mapping[str, type] | tuple[str, ...]] | None"]


def load_definition(
    path: str | Path,
    fields_of: FieldLookup,
    load_model: ModelLookup,
) -> MonitorDef:
    """Load ``path``. ``fields_of(tracepoint)`` gives ``(system:name, fields)`` or None;
    ``load_model(name)`` resolves a bundled model name (a :class:`DotModel` keeps its HA
    parts; a bare :class:`Automaton` is a DA)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(str(path), None, f"cannot read: {exc}") from None
    return parse_definition(text, str(path), path.parent, fields_of, load_model)


def parse_definition(
    text: str,
    source: str,
    base_dir: Path,
    fields_of: FieldLookup,
    load_model: ModelLookup,
) -> MonitorDef:
    """Parse and validate a definition's text (see :func:`load_definition`)."""
    deep = _toml_too_deep(text)
    if deep is not None:
        raise DefinitionError(
            source,
            deep,
            f"arrays or inline tables nested more than {MAX_TOML_NESTING} deep (the TOML"
            " reader recurses on each level; a definition needs a few)",
        )
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(exc)
        raise DefinitionError(source, line, f"not valid TOML: {exc}") from None
    locate = _Locator(text)
    mon = data.get("monitor")
    if not isinstance(mon, dict):
        raise DefinitionError(source, None, "missing [monitor] table")
    _reject_unknown(mon, _MONITOR_KEYS, source, locate.key_line("monitor", 0, None), "[monitor]")
    name = _required_str(mon, "name", source, locate.key_line("monitor", 0, "name"))
    if not _NAME_RE.match(name) or len(name) >= 32:
        raise DefinitionError(
            source,
            locate.key_line("monitor", 0, "name"),
            f"monitor name {name!r} must be an identifier of at most 31 characters",
        )
    mtype = _monitor_type(mon.get("type"), source, locate.key_line("monitor", 0, "type"))
    container_line = locate.key_line("monitor", 0, "container")
    container = None
    if "container" in mon:
        container = _required_str(mon, "container", source, container_line)
    model_line = locate.key_line("monitor", 0, "model")
    params = _params(mon.get("params", {}), source, locate.key_line("monitor", 0, "params"))
    ltl = _ltl_model(mon, source, base_dir, model_line)
    model, dot = (
        (None, None) if ltl else _model(mon, source, base_dir, load_model, model_line, params)
    )
    if ltl is not None and mtype is not MonitorType.PER_TASK:
        raise DefinitionError(source, model_line, "LTL monitors are per_task only (as in rvgen)")
    declared = _declared_events(data.get("events", {}), source)

    def lookup(tp: str) -> tuple[str, dict[str, type | None]] | None:
        if tp in declared:
            return tp, {n: _TYPE_NAMES[t] for n, t in declared[tp].items()}
        bare = tp.split(":", 1)[-1]
        for full, flds in declared.items():
            if full.split(":", 1)[-1] == bare and ":" not in tp:
                return full, {n: _TYPE_NAMES[t] for n, t in flds.items()}
        found = fields_of(tp)
        if found is None:
            return None
        full, flds = found
        return full, dict(flds) if isinstance(flds, Mapping) else dict.fromkeys(flds)

    rows = data.get("hooks", [])
    if not isinstance(rows, list):
        raise DefinitionError(source, None, "hooks must be an array of tables ([[hooks]])")
    if ltl is not None:
        hooks = [_ltl_hook(row, i, ltl, lookup, source, locate) for i, row in enumerate(rows)]
    else:
        hooks = [_hook(row, i, mtype, model, lookup, source, locate) for i, row in enumerate(rows)]
    init, fetch = _ltl_tables(data, ltl, source, locate) if ltl else (None, {})
    if ltl is not None and init is not None:
        _every_atom_gets_a_value(ltl, hooks, init, fetch, name, source, model_line)
    for key in ("init", "fetch"):
        if key in data and ltl is None:
            raise DefinitionError(source, locate.key_line(key, 0, None), f"[{key}] is for LTL")
    storage = _storage(data.get("storage"), mtype, source, locate)
    env = _env(data.get("env"), hooks, ltl is not None, lookup, source, locate)
    return MonitorDef(
        name=name,
        description=str(mon.get("description", "")),
        type=mtype,
        model=model,
        container=container,
        hooks=hooks,
        declared_events=declared,
        source=source,
        params=params,
        ltl=ltl,
        ltl_init=init,
        ltl_fetch=fetch,
        storage=storage,
        env=env,
        env_line=locate.key_line("env", 0, None) if env else None,
        dot=dot,
        name_line=locate.key_line("monitor", 0, "name"),
        container_line=container_line if container is not None else None,
    )


LineOf = Callable[[str | None], int | None]


def _row(
    row: Any,
    index: int,
    keys: set[str],
    lookup: Callable[[str], tuple[str, dict[str, type | None]] | None],
    source: str,
    locate: _Locator,
) -> tuple[dict[str, Any], str, LineOf, str, dict[str, type | None]]:
    """What every hook row starts with: a table of known keys naming a known tracepoint.

    Returns the row, its name for messages, its line finder, the tracepoint's ``system:name``
    and its fields (with the ones pyrv derives, such as syscall arguments)."""

    def line_of(key: str | None) -> int | None:
        return locate.key_line("hooks", index, key)

    where = f"hook #{index + 1}"
    if not isinstance(row, dict):
        raise DefinitionError(source, line_of(None), f"{where} is not a table")
    _reject_unknown(row, keys, source, line_of(None), where)
    tp = _required_str(row, "tracepoint", source, line_of("tracepoint"), where)
    found = lookup(tp)
    if found is None:
        raise DefinitionError(
            source,
            line_of("tracepoint"),
            f'{where}: unknown tracepoint {tp!r} (declare it under [events."system:name"])',
        )
    full, fields = found
    return row, where, line_of, full, {**fields, **DERIVED_FIELDS.get(full, {})}


def _hook_fields(
    full: str,
    target: str | None,
    when: Predicate | None,
    when_text: str | None,
    uses_common: bool,
    uses_context: bool,
    row: dict[str, Any],
    source: str,
    line_of: LineOf,
    where: str,
) -> dict[str, Any]:
    """What every kind of hook row has: tracepoint, target, condition, optional, line."""
    return {
        "tracepoint": full,
        "event_name": full.split(":", 1)[-1],
        "target": target,
        "when": when,
        "when_text": when_text,
        "uses_common": uses_common,
        "uses_context": uses_context,
        "optional": _optional(row, source, line_of("optional"), where),
        "line": line_of(None),
    }


def _hook(
    row: Any,
    index: int,
    mtype: MonitorType,
    model: Automaton,
    lookup: Callable[[str], tuple[str, dict[str, type | None]] | None],
    source: str,
    locate: _Locator,
) -> Hook:
    row, where, line_of, full, fields = _row(row, index, _HOOK_KEYS, lookup, source, locate)
    target = _target(row, mtype, fields, source, line_of, where)
    predicate, when_text, uses_common, uses_context = _when(row, fields, source, line_of, where)
    common = _hook_fields(
        full, target, predicate, when_text, uses_common, uses_context, row, source, line_of, where
    )
    if "storage" in row:
        action = _storage_action(row, mtype, source, line_of, where)
        return Hook(
            **common,
            entry=Entry.HANDLE,
            model_event=-1,
            model_event_name=f"storage {action}",
            storage=action,
        )
    entry_text = row.get("entry", "handle")
    try:
        entry = Entry(entry_text)
    except ValueError:
        raise DefinitionError(
            source,
            line_of("entry"),
            f"{where}: unknown entry {entry_text!r} (handle, start or start_run)",
        ) from None
    ev = _required_str(row, "event", source, line_of("event"), where)
    if ev not in model.events:
        raise DefinitionError(
            source,
            line_of("event"),
            f"{where}: model {model.name!r} has no event {ev!r} "
            f"(events: {', '.join(model.events)})",
        )
    return Hook(
        **common,
        entry=entry,
        model_event=model.events.index(ev),
        model_event_name=ev,
        reads_preempt=_reads_preempt(full, when_text),
    )


def _ltl_model(
    mon: dict[str, Any], source: str, base_dir: Path, line: int | None
) -> LTLSpec | None:
    """The rule file an LTL monitor names: a ``.ltl`` beside the definition, or bundled."""
    ref = mon.get("model")
    if not isinstance(ref, str):
        return None
    if ref.endswith(".ltl"):
        path = base_dir / ref
        if not path.is_file():
            raise DefinitionError(source, line, f"model file {str(path)!r} does not exist")
        return load_ltl(path)
    try:
        return load_ltl_model(ref)
    except KeyError:
        return None


def _ltl_hook(
    row: Any,
    index: int,
    spec: LTLSpec,
    lookup: Callable[[str], tuple[str, dict[str, type | None]] | None],
    source: str,
    locate: _Locator,
) -> Hook:
    """A hook of an LTL monitor: ``action`` on ``atom`` of the target task, with ``value``
    (true/false, or a condition over the event's fields)."""

    row, where, line_of, full, fields = _row(row, index, _LTL_HOOK_KEYS, lookup, source, locate)
    target = _target(row, MonitorType.PER_TASK, fields, source, line_of, where)
    when, when_text, uses_common, uses_context = _when(row, fields, source, line_of, where)
    action = row.get("action")
    if action not in LTL_ACTIONS:
        raise DefinitionError(
            source, line_of("action"), f"{where}: action must be one of {', '.join(LTL_ACTIONS)}"
        )
    atom = row.get("atom")
    if action == "create":
        if atom is not None:
            raise DefinitionError(source, line_of("atom"), f"{where}: create takes no atom")
    elif atom not in spec.atoms:
        raise DefinitionError(
            source,
            line_of("atom"),
            f"{where}: {atom!r} is not an atom of {spec.name} (atoms: {', '.join(spec.atoms)})",
        )
    value: bool | Predicate | None = None
    if action != "create":
        raw = row.get("value", True)
        if isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str):
            value = _compile(raw, {**fields, **COMMON_TYPES}, source, line_of("value"), where)
            uses_common = uses_common or any(c in raw for c in COMMON_FIELDS)
            uses_context = uses_context or any(c in raw for c in CONTEXT_TYPES)
        else:
            raise DefinitionError(
                source, line_of("value"), f"{where}: value must be true, false or a condition"
            )
    common = _hook_fields(
        full, target, when, when_text, uses_common, uses_context, row, source, line_of, where
    )
    return Hook(
        **common,
        entry=Entry.HANDLE,
        model_event=-1,
        model_event_name=action if atom is None else f"{action} {atom}",
        action=action,
        atom=atom,
        value=value,
        reads_preempt=_reads_preempt(full, when_text, row.get("value")),
    )


def _when(
    row: dict[str, Any],
    fields: dict[str, type | None],
    source: str,
    line_of: Callable[[str | None], int | None],
    where: str,
) -> tuple[Predicate | None, str | None, bool, bool]:
    text = row.get("when")
    if text is None:
        return None, None, False, False
    if not isinstance(text, str):
        raise DefinitionError(source, line_of("when"), f"{where}: when must be a string")
    pred = _compile(text, {**fields, **COMMON_TYPES}, source, line_of("when"), where)
    return (
        pred,
        text,
        any(c in text for c in COMMON_FIELDS),
        any(c in text for c in CONTEXT_TYPES),
    )


def _reads_preempt(tracepoint: str, *texts: object) -> bool:
    """Whether a (compiled, valid) condition of a hook on ``tracepoint`` tells ``R+`` from
    ``R`` in the field that prints the preempt '+'."""
    tp, name = PREEMPT_FIELD
    return tracepoint == tp and any(
        isinstance(t, str) and tells_apart(t, name, PREEMPTED, PREEMPTED_WITHOUT_PLUS)
        for t in texts
    )


def _compile(
    text: str, fields: dict[str, type | None], source: str, line: int | None, where: str
) -> Predicate:
    try:
        return compile_condition(text, fields)
    except ConditionError as exc:
        raise DefinitionError(source, line, f"{where}: condition {shorten(text)}: {exc}") from None


def _ltl_tables(
    data: dict[str, Any], spec: LTLSpec, source: str, locate: _Locator
) -> tuple[AtomInit, dict[str, str]]:
    """``[init]`` (always / on_creation / kernel_thread / user_thread: atom = true|false|
    {comm_prefix = "rcu"}) and ``[fetch]`` (atom = fact). A definition is self-contained: the
    bundled rtapp monitors carry the kernel's tables in their own files."""
    raw_init = data.get("init", {})
    parts: dict[str, dict[str, Any]] = {}
    for part in ("always", "on_creation", "kernel_thread", "user_thread"):
        table = raw_init.get(part, {}) if isinstance(raw_init, dict) else None
        if not isinstance(table, dict):
            raise DefinitionError(source, locate.key_line("init", 0, part), f"[init] {part}")
        parts[part] = {}
        for atom, v in table.items():
            line = locate.key_line("init", 0, part)
            if atom not in spec.atoms:
                raise DefinitionError(source, line, f"[init] {part}: {atom!r} is not an atom")
            if isinstance(v, dict) and isinstance(v.get("comm_prefix"), str):
                parts[part][atom] = CommPrefix(v["comm_prefix"])
            elif isinstance(v, bool):
                parts[part][atom] = v
            else:
                raise DefinitionError(
                    source, line, f"[init] {part}: {atom}: true, false or {{comm_prefix = ...}}"
                )
    fetch = data.get("fetch", {})
    if not isinstance(fetch, dict):
        raise DefinitionError(source, locate.key_line("fetch", 0, None), "[fetch] is a table")
    for atom, fact in fetch.items():
        if atom not in spec.atoms or fact not in FACTS:
            raise DefinitionError(
                source,
                locate.key_line("fetch", 0, None),
                f"[fetch] {atom} = {fact!r}: needs an atom of the model and a fact of "
                f"{', '.join(FACTS)}",
            )
    return AtomInit(**parts), dict(fetch)


def _every_atom_gets_a_value(
    spec: LTLSpec,
    hooks: list[Hook],
    init: AtomInit,
    fetch: Mapping[str, str],
    name: str,
    source: str,
    line: int | None,
) -> None:
    """An atom no hook changes, no [init] row sets and no [fetch] row reads stays unknown in
    every task, and an LTL monitor with an unknown atom never starts (spec §3.4): such a
    definition would report nothing, silently."""
    valued = {h.atom for h in hooks if h.atom is not None} | init.atoms() | set(fetch)
    never = [a for a in spec.atoms if a not in valued]
    if never:
        raise DefinitionError(
            source,
            line,
            f"monitor {name}: atom(s) {', '.join(never)} of {spec.name} never get a value "
            "(no hook sets, updates or pulses them, and neither [init] nor [fetch] names "
            "them): the monitor could never start",
        )


def _env(
    value: Any,
    hooks: list[Hook],
    is_ltl: bool,
    lookup: Callable[[str], tuple[str, dict[str, type | None]] | None],
    source: str,
    locate: _Locator,
) -> dict[str, EnvValue]:
    """``[env]``: ``name = "condition"`` or ``name = "field"``, over the fields of the hooked
    tracepoints and the common/context ones. Whether the names are the model's value variables
    is checked where the hybrid model is built (pyrv.monitors.catalogue)."""
    if value is None:
        return {}
    if is_ltl:
        raise DefinitionError(source, locate.key_line("env", 0, None), "[env] is for hybrid models")
    if not isinstance(value, dict):
        raise DefinitionError(source, locate.key_line("env", 0, None), "[env] must be a table")
    fields: dict[str, type | None] = dict(COMMON_TYPES)
    for tp in dict.fromkeys(h.tracepoint for h in hooks):
        found = lookup(tp)
        if found is not None:
            fields.update(found[1])
            fields.update(DERIVED_FIELDS.get(found[0], {}))
    out = {}
    for name, text in value.items():
        line = locate.key_line("env", 0, name)
        if not isinstance(text, str) or not text.strip():
            raise DefinitionError(
                source, line, f"[env] {name}: a condition or a field name, as a string"
            )
        out[name] = EnvValue(
            name,
            text,
            _env_getter(name, text.strip(), fields, source, line),
            any(c in text for c in COMMON_FIELDS),
            any(c in text for c in CONTEXT_TYPES),
            line,
            any(h.tracepoint == PREEMPT_FIELD[0] for h in hooks)
            and _reads_preempt(PREEMPT_FIELD[0], text),
        )
    return out


def _env_getter(
    name: str, text: str, fields: dict[str, type | None], source: str, line: int | None
) -> Callable[[Fields], int]:
    """An integer field's value (ENV_UNREADABLE when the event lacks it), or a condition as 0/1."""
    if _NAME_RE.match(text) and text in fields:
        if fields[text] is str:
            raise DefinitionError(source, line, f"[env] {name}: field {text!r} is text")

        def field_value(values: Fields) -> int:
            v = values.get(text)
            return v if isinstance(v, int) else ENV_UNREADABLE

        return field_value
    pred = _compile(text, fields, source, line, f"[env] {name}")
    return lambda values: int(pred(values))


def _params(value: Any, source: str, line: int | None) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise DefinitionError(source, line, "params must be a table of integers: { name = 1000 }")
    return dict(value)


def _optional(row: dict[str, Any], source: str, line: int | None, where: str) -> bool:
    value = row.get("optional", False)
    if not isinstance(value, bool):
        raise DefinitionError(source, line, f"{where}: optional must be true or false")
    return value


def _storage_action(
    row: dict[str, Any], mtype: MonitorType, source: str, line_of: LineOf, where: str
) -> str:
    """A ``storage = "create" | "destroy" | "reset"`` row of a per-object monitor."""
    line = line_of("storage")
    if mtype is not MonitorType.PER_OBJ:
        raise DefinitionError(source, line, f"{where}: storage rows are for per_obj monitors")
    action = row["storage"]
    if action not in STORAGE_ACTIONS:
        raise DefinitionError(
            source, line, f"{where}: storage must be one of {', '.join(STORAGE_ACTIONS)}"
        )
    for key in ("entry", "event"):
        if key in row:
            raise DefinitionError(
                source, line_of(key), f"{where}: a storage row takes no {key!r} (it feeds no event)"
            )
    return action


def _storage(value: Any, mtype: MonitorType, source: str, locate: _Locator) -> StorageConfig | None:
    """A per-object monitor's ``[storage]`` table (see da.StorageConfig)."""
    if value is None:
        return None
    line = locate.key_line("storage", 0, None)
    if mtype is not MonitorType.PER_OBJ:
        raise DefinitionError(source, line, "[storage] is for per_obj monitors")
    if not isinstance(value, dict):
        raise DefinitionError(source, line, "[storage] must be a table")
    _reject_unknown(value, _STORAGE_KEYS, source, line, "[storage]")
    defaults = StorageConfig()

    def integer(key: str, default: int, least: int) -> int:
        v = value.get(key, default)
        if not isinstance(v, int) or isinstance(v, bool) or v < least:
            raise DefinitionError(
                source, locate.key_line("storage", 0, key), f"[storage] {key} must be >= {least}"
            )
        return v

    auto = value.get("auto_alloc", defaults.auto_alloc)
    if not isinstance(auto, bool):
        raise DefinitionError(
            source, locate.key_line("storage", 0, "auto_alloc"), "[storage] auto_alloc: a bool"
        )
    buckets = integer("buckets", defaults.buckets, 1)
    if buckets & (buckets - 1):
        raise DefinitionError(
            source, locate.key_line("storage", 0, "buckets"), "[storage] buckets: a power of two"
        )
    pre = value.get("preallocate", [])
    ids: list[int] = []
    for item in pre if isinstance(pre, list) else [None]:
        if isinstance(item, int) and not isinstance(item, bool):
            ids.append(item)
        elif (
            isinstance(item, dict)
            and set(item) == {"from", "to"}
            and all(isinstance(item[k], int) and not isinstance(item[k], bool) for k in item)
        ):
            ids.extend(range(item["from"], item["to"] + 1))
        else:
            raise DefinitionError(
                source,
                locate.key_line("storage", 0, "preallocate"),
                "[storage] preallocate: a list of object ids and { from = A, to = B } ranges",
            )
    return StorageConfig(
        auto_alloc=auto,
        preallocate=tuple(dict.fromkeys(ids)),
        buckets=buckets,
        max_objects=integer("max_objects", defaults.max_objects, 0),
    )


def _target(
    row: dict[str, Any],
    mtype: MonitorType,
    fields: dict[str, type | None],
    source: str,
    line_of: Callable[[str | None], int | None],
    where: str,
) -> str | None:
    """The field that names the instance: a pid field for tasks, a CPU field for CPUs, an
    integer field (or its negation) for objects."""
    if mtype is MonitorType.PER_OBJ:
        return _object_target(row, fields, source, line_of, where)
    if "object" in row:
        raise DefinitionError(
            source, line_of("object"), f"{where}: a {mtype.value} monitor takes no 'object' target"
        )
    wanted = {MonitorType.PER_TASK: "task", MonitorType.PER_CPU: "cpu"}.get(mtype)
    for key in ("task", "cpu"):
        if key in row and key != wanted:
            raise DefinitionError(
                source, line_of(key), f"{where}: a {mtype.value} monitor takes no {key!r} target"
            )
    if wanted is None:
        return None
    target = row.get(wanted, CURRENT)
    if not isinstance(target, str) or (target != CURRENT and target not in fields):
        raise DefinitionError(
            source,
            line_of(wanted),
            f"{where}: {wanted} = {target!r} is neither 'current' nor a field of the tracepoint "
            f"(fields: {', '.join(fields)})",
        )
    looks_right = _PID_FIELD if wanted == "task" else _CPU_FIELD
    if target != CURRENT and (fields[target] is str or not looks_right.search(target)):
        kind = "a pid" if wanted == "task" else "a CPU number"
        raise DefinitionError(
            source,
            line_of(wanted),
            f"{where}: {wanted} = {target!r}: that field does not hold {kind}",
        )
    return target


#: context fields an object target may name besides the tracepoint's own
_OBJECT_COMMON = ("common_pid", "common_cpu")


def _object_target(
    row: dict[str, Any],
    fields: dict[str, type | None],
    source: str,
    line_of: LineOf,
    where: str,
) -> str:
    """``object = "current"`` (the pid in context), ``"<field>"`` or ``"-<field>"``: an
    integer field of the tracepoint (or common_pid/common_cpu), negated with a leading '-'
    (the kernel's server ids are negative CPU numbers)."""
    for key in ("task", "cpu"):
        if key in row:
            raise DefinitionError(
                source,
                line_of(key),
                f"{where}: a per_obj monitor takes no {key!r} target (name it with object = ...)",
            )
    line = line_of("object")
    if "object" not in row:
        raise DefinitionError(source, line_of(None), f"{where}: a per_obj hook needs object = ...")
    target = row["object"]
    if not isinstance(target, str):
        raise DefinitionError(source, line, f"{where}: object must be a string")
    if target == CURRENT:
        return target
    name = target.removeprefix("-")
    if name not in fields and name not in _OBJECT_COMMON:
        known = ", ".join([*fields, *_OBJECT_COMMON])
        raise DefinitionError(
            source,
            line,
            f"{where}: object = {target!r} is neither 'current' nor an integer field, optionally "
            f"negated with '-' (fields: {known})",
        )
    if fields.get(name) is str:
        raise DefinitionError(
            source, line, f"{where}: object = {target!r}: that field is text, not an object id"
        )
    return target


def _monitor_type(value: Any, source: str, line: int | None) -> MonitorType:
    try:
        return MonitorType(value)
    except ValueError:
        names = ", ".join(t.value for t in MonitorType)
        raise DefinitionError(
            source, line, f"monitor type {value!r} is not one of {names}"
        ) from None


def _model(
    mon: dict[str, Any],
    source: str,
    base_dir: Path,
    load_model: ModelLookup,
    line: int | None,
    params: Mapping[str, int],
) -> tuple[Automaton, DotModel | None]:
    """Load the model a definition names: a bundled name, or a .dot file beside it; with its
    DOT-level parts (HA constraints) when it has them.

    A user's DOT file is read strictly: two edges for one (state, event), which rvgen would
    silently resolve by keeping the later one, make the automaton ambiguous and are an error.
    Its HA parts are evaluated here with the definition's ``params``, so that a malformed
    guard, reset or invariant, or a constant without a value, is refused with its position
    now rather than when (or instead of) the monitor runs.
    """
    ref = _required_str(mon, "model", source, line)
    try:
        if ref.endswith(".dot"):
            from pyrv.models.dot import load_dot_model
            from pyrv.models.hybrid import hybrid_from_dot

            path = base_dir / ref
            if not path.is_file():
                raise DefinitionError(source, line, f"model file {str(path)!r} does not exist")
            dot = load_dot_model(path, strict=True)
            if dot.is_hybrid:
                hybrid_from_dot(dot, dot.source, params)
            return dot.automaton, dot
        found = load_model(ref)
        if isinstance(found, DotModel):
            return found.automaton, found
        return found, None
    except ModelError:
        raise
    except (KeyError, OSError) as exc:
        raise DefinitionError(source, line, f"model {ref!r}: {exc}") from None


def _declared_events(value: Any, source: str) -> dict[str, dict[str, str]]:
    if not isinstance(value, dict):
        raise DefinitionError(source, None, "[events] must be a table")
    out: dict[str, dict[str, str]] = {}
    for name, spec in value.items():
        if (
            ":" not in name
            or not isinstance(spec, dict)
            or not isinstance(spec.get("fields"), dict)
        ):
            raise DefinitionError(
                source,
                None,
                f"[events.{name!r}] must be named system:event and have fields = {{name = type}}",
            )
        for fname, ftype in spec["fields"].items():
            if ftype not in ("int", "str"):
                raise DefinitionError(
                    source, None, f"event {name!r} field {fname!r}: type must be 'int' or 'str'"
                )
        out[name] = dict(spec["fields"])
    return out


def _required_str(
    table: dict[str, Any], key: str, source: str, line: int | None, where: str = "[monitor]"
) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise DefinitionError(source, line, f"{where}: {key} must be a non-empty string")
    return value


def _reject_unknown(
    table: dict[str, Any], allowed: set[str], source: str, line: int | None, where: str
) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise DefinitionError(
            source,
            line,
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})",
        )


#: how deep a definition's arrays and inline tables may nest ([[hooks]] headers are 2)
MAX_TOML_NESTING = 32
_TOML_QUOTES = ('"""', "'''", '"', "'")


def _toml_too_deep(text: str) -> int | None:
    """The line where ``[``/``{`` nesting first exceeds :data:`MAX_TOML_NESTING` outside
    strings and comments, or None. tomllib recurses per level and raises RecursionError
    (not TOMLDecodeError) at a few hundred."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            quote = next(q for q in _TOML_QUOTES if text.startswith(q, i))
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if text[j] == "\n" and len(quote) == 1:
                    break  # an unterminated one-line string: tomllib reports it
                j += 2 if text[j] == "\\" and quote[0] == '"' else 1
            line += text.count("\n", i, j)
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_TOML_NESTING:
                return line
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return None


def _toml_error_line(exc: tomllib.TOMLDecodeError) -> int | None:
    m = re.search(r"line (\d+)", str(exc))
    return int(m.group(1)) if m else None


class _Locator:
    """Finds the line of a key inside the n-th ``[table]``/``[[array]]`` of a TOML text.

    tomllib keeps no positions; errors must still name a line, so the text is scanned for the
    header and then for ``key =`` until the next header.
    """

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def key_line(self, table: str, index: int, key: str | None) -> int | None:
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(table)}\s*\]\]?\s*(#.*)?$")
        count = -1
        for i, line in enumerate(self.lines):
            if header.match(line):
                count += 1
                if count == index:
                    return self._find_key(i, key)
        return None

    def _find_key(self, start: int, key: str | None) -> int:
        if key is None:
            return start + 1
        pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
        for j in range(start + 1, len(self.lines)):
            if self.lines[j].lstrip().startswith("["):
                break
            if pattern.match(self.lines[j]):
                return j + 1
        return start + 1
