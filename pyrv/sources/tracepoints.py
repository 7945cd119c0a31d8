"""Catalogue of known trace events: field names, types and the payload forms text traces print.

Text traces print an event as ``name: payload`` with no system and no types, and the payload
is the event's ``print fmt``, which may differ from its fields: ``sched_process_fork`` prints
``comm=`` / ``pid=`` for its fields ``parent_comm`` / ``parent_pid``; ``sched_switch`` prints
``prev_state`` as letters; ``irq_handler_exit`` prints ``ret`` as ``handled``/``unhandled``.
The catalogue maps that text back to the format-file field names and types, so every source
yields the same ``fields`` dict for the same record. One deliberate exception: the
``preemptirq`` events' fields are ``caller``/``parent`` (the printed symbols, ``str``), not the
format's ``caller_offs``/``parent_offs`` (offsets from ``_stext``, which text cannot give).

Each :class:`Tracepoint` has:

- ``fields``: ordered :class:`TpField` (name, ``int``/``str``, how to convert the text);
- ``forms``: regular expressions over the payload (kernel 6.18 print fmt first, then other
  printers such as trace-cmd's plugins), group names = field names;
- ``keys``: printed key -> field name, for the generic ``key=value`` fallback used when no
  form matches (``fields`` option, ``trace-cmd report -R``, older kernels' extra keys).

Field conversions (``TpField.conv``):

- ``int``: decimal, ``0x`` hex, the ``fields`` option's ``0xH (D)`` (value D), ``true``/``false``;
- ``str``: text as printed;
- ``hex``: a number printed with ``%lx`` (no ``0x`` prefix);
- ``addr``: a pointer printed with ``%ps``/``%pS``: ``int`` when printed as a number, else the
  symbol text (``str``);
- ``state``: ``sched_switch`` ``prev_state``: kept as the letters the kernel prints (``S``,
  ``R+``, ``D|W``); a numeric value (``fields`` option, ``report -R``) is turned into letters;
- ``plugin_state``: trace-cmd's sched_switch plugin letters (``SDTtZXxW``, bit order),
  translated to the kernel's letters; the plugin never prints the preempt ``+``;
- ``bool``: ``true``/``false`` (or a number) -> 1/0;
- ``final``: rv's `` (final)`` suffix: present -> 1, absent -> 0;
- ``irqret``: ``handled`` -> 1, ``unhandled`` -> 0.

Events are found by bare name (``sched_switch``), by ``system:name`` and by alias
(``tracing_mark_write``, which is how the kernel prints ``ftrace:print``). Any ``event_*``,
``error_*`` or ``error_env_*`` name is an ``rv`` event (the kernel's monitor verdicts); its
payload forms (DA, DA with id, HA env, LTL) are built in. :func:`register` adds events the
catalogue does not know, e.g. a kprobe ``rvraw:wwnr_switch`` with ``prev_state``/``preempt``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

FieldSpec = Iterable[tuple[str, "type | str"]] | Mapping[str, "type | str"]

_CONVS = frozenset(
    {"int", "str", "hex", "addr", "state", "plugin_state", "bool", "final", "irqret"}
)


@dataclass(frozen=True, slots=True)
class TpField:
    """One field: its format-file name, its Python type and how its printed text converts."""

    name: str
    type: type  # int or str
    conv: str = ""  # "" -> "int"/"str" by type; else one of _CONVS
    optional: bool = False  # absent on some kernels (e.g. group_dead before 6.x)

    @property
    def converter(self) -> str:
        return self.conv or ("int" if self.type is int else "str")


@dataclass(frozen=True, slots=True)
class Form:
    """A payload shape: a regex whose named groups are field names, and per-field overrides."""

    pattern: str
    conv: Mapping[str, str] = field(default_factory=dict)

    def compile(self) -> re.Pattern[str]:
        return re.compile(self.pattern)


@dataclass(frozen=True, slots=True)
class Tracepoint:
    """A known event. ``system`` is None only for a name nobody said the system of."""

    system: str | None
    name: str
    fields: tuple[TpField, ...]
    forms: tuple[Form, ...] = ()
    keys: Mapping[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.system}:{self.name}" if self.system else self.name

    def field_names(self) -> tuple[str, ...]:
        """Field names in format-file order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> TpField | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    @property
    def required(self) -> frozenset[str]:
        return frozenset(f.name for f in self.fields if not f.optional)


# ---------------------------------------------------------------------------------------------
# Building blocks for payload regexes: a lazy string, a number, a non-blank token.


def _s(name: str) -> str:
    return rf"(?P<{name}>.*?)"


def _i(name: str) -> str:
    return rf"(?P<{name}>-?\d+)"


def _w(name: str) -> str:
    return rf"(?P<{name}>\S+)"


def _kv(*parts: tuple[str, str]) -> str:
    """``key=VALUE key=VALUE``: parts are (printed key, group regex)."""
    return " ".join(f"{re.escape(k)}={g}" for k, g in parts)


def _f(name: str, typ: type = int, conv: str = "", optional: bool = False) -> TpField:
    return TpField(name, typ, conv, optional)


S = str  # short name keeps the table below readable

_COMM_PID_PRIO = (_f("comm", S), _f("pid"), _f("prio"))
_WAKEUP_FIELDS = (*_COMM_PID_PRIO, _f("target_cpu"), _f("success", optional=True))
_WAKEUP_FORMS = (
    Form(
        _kv(("comm", _s("comm")), ("pid", _i("pid")), ("prio", _i("prio")))
        + r"(?: success=(?P<success>\d+))? target_cpu=(?P<target_cpu>\d+)"
    ),
    # trace-cmd plugin: "comm:pid [prio] CPU:001" (" success=N" on old kernels)
    Form(
        r"(?P<comm>.*):(?P<pid>-?\d+) \[(?P<prio>-?\d+)\](?: success=(?P<success>\d+))?"
        r" CPU:(?P<target_cpu>\d+)"
    ),
)
_SWITCH_FORMS = (
    Form(
        _kv(
            ("prev_comm", _s("prev_comm")),
            ("prev_pid", _i("prev_pid")),
            ("prev_prio", _i("prev_prio")),
            ("prev_state", _w("prev_state")),
        )
        + " ==> "
        + _kv(
            ("next_comm", _s("next_comm")),
            ("next_pid", _i("next_pid")),
            ("next_prio", _i("next_prio")),
        )
    ),
    # trace-cmd plugin: "comm:pid [prio] S ==> comm:pid [prio]"
    Form(
        r"(?P<prev_comm>.*):(?P<prev_pid>-?\d+) \[(?P<prev_prio>-?\d+)\] (?P<prev_state>\S+)"
        r" ==> (?P<next_comm>.*):(?P<next_pid>-?\d+) \[(?P<next_prio>-?\d+)\]",
        {"prev_state": "plugin_state"},
    ),
)
_PREEMPTIRQ = (
    (_f("caller", S), _f("parent", S)),
    (Form(_kv(("caller", _w("caller")), ("parent", _w("parent")))),),
)
_SOFTIRQ = ((_f("vec"),), (Form(r"vec=(?P<vec>\d+) \[action=\w+\]"),))
_HRTIMER_ONLY = ((_f("hrtimer", S),), (Form(_kv(("hrtimer", _w("hrtimer")))),))
_PF = (
    (_f("address", int, "addr"), _f("ip", int, "addr"), _f("error_code", int)),
    (Form(_kv(("address", _w("address")), ("ip", _w("ip")), ("error_code", _w("error_code")))),),
)
_STAT = (
    (_f("comm", S), _f("pid"), _f("delay")),
    (Form(_kv(("comm", _s("comm")), ("pid", _i("pid")), ("delay", _i("delay"))) + r" \[ns\]"),),
)


_IRQ_VECTORS = (
    "local_timer_entry",
    "irq_work_entry",
    "reschedule_entry",
    "call_function_entry",
    "call_function_single_entry",
)
#: bare tracepoints of include/trace/events/sched.h that RV monitors hook (spec §4 legend).
#: The deadline ones take (dl_se, cpu, type): ``dl_se`` is the entity as the deadline monitors
#: name it (deadline.h's get_entity_id: the task's pid, -cpu for the fair server of cpu,
#: -cpu - num_possible_cpus for the ext server), ``type`` is DL_OTHER 0, DL_TASK 1,
#: DL_SERVER_FAIR 2, DL_SERVER_EXT 3.
_BARE_TRACEPOINTS: dict[str, tuple[str, ...]] = {
    "sched_entry_tp": ("preempt",),
    "sched_exit_tp": ("is_switch",),
    "sched_set_state_tp": ("pid", "state"),
    "sched_set_need_resched_tp": ("pid", "cpu", "tif"),
    "sched_dl_replenish_tp": ("dl_se", "cpu", "type"),
    "sched_dl_throttle_tp": ("dl_se", "cpu", "type"),
    "sched_dl_server_start_tp": ("dl_se", "cpu", "type"),
    "sched_dl_server_stop_tp": ("dl_se", "cpu", "type"),
}
BARE = frozenset(f"sched:{n}" for n in _BARE_TRACEPOINTS)


def _builtin() -> list[Tracepoint]:
    """The catalogue's events; payload forms as printed by kernel 6.18 and trace-cmd 3.1."""
    tp: list[Tracepoint] = []

    def add(
        system: str,
        name: str,
        fields: tuple[TpField, ...],
        forms: tuple[Form, ...] = (),
        keys: Mapping[str, str] | None = None,
        aliases: tuple[str, ...] = (),
    ) -> None:
        tp.append(Tracepoint(system, name, fields, forms, dict(keys or {}), aliases))

    switch_fields = (
        _f("prev_comm", S),
        _f("prev_pid"),
        _f("prev_prio"),
        _f("prev_state", S, "state"),
        _f("next_comm", S),
        _f("next_pid"),
        _f("next_prio"),
    )
    add("sched", "sched_switch", switch_fields, _SWITCH_FORMS)
    for name in ("sched_wakeup", "sched_waking", "sched_wakeup_new"):
        add("sched", name, _WAKEUP_FIELDS, _WAKEUP_FORMS)
    add(
        "sched",
        "sched_process_fork",
        (_f("parent_comm", S), _f("parent_pid"), _f("child_comm", S), _f("child_pid")),
        (
            Form(
                _kv(
                    ("comm", _s("parent_comm")),
                    ("pid", _i("parent_pid")),
                    ("child_comm", _s("child_comm")),
                    ("child_pid", _i("child_pid")),
                )
            ),
        ),
        keys={"comm": "parent_comm", "pid": "parent_pid"},
    )
    add(
        "sched",
        "sched_process_exit",
        (*_COMM_PID_PRIO, _f("group_dead", int, "bool", True)),
        (
            Form(
                _kv(("comm", _s("comm")), ("pid", _i("pid")), ("prio", _i("prio")))
                + r"(?: group_dead=(?P<group_dead>\w+))?"
            ),
        ),
    )
    add(
        "sched",
        "sched_process_exec",
        (_f("filename", S), _f("pid"), _f("old_pid")),
        (Form(_kv(("filename", _s("filename")), ("pid", _i("pid")), ("old_pid", _i("old_pid")))),),
    )
    cpp_form = (Form(_kv(("comm", _s("comm")), ("pid", _i("pid")), ("prio", _i("prio")))),)
    for name in ("sched_process_free", "sched_process_wait", "sched_wait_task"):
        add("sched", name, _COMM_PID_PRIO, cpp_form)
    add(
        "sched",
        "sched_migrate_task",
        (*_COMM_PID_PRIO, _f("orig_cpu"), _f("dest_cpu")),
        (
            Form(
                _kv(
                    ("comm", _s("comm")),
                    ("pid", _i("pid")),
                    ("prio", _i("prio")),
                    ("orig_cpu", _i("orig_cpu")),
                    ("dest_cpu", _i("dest_cpu")),
                )
            ),
        ),
    )
    for name in ("sched_stat_wait", "sched_stat_sleep", "sched_stat_iowait", "sched_stat_blocked"):
        add("sched", name, *_STAT)
    add(
        "sched",
        "sched_stat_runtime",
        (_f("comm", S), _f("pid"), _f("runtime"), _f("vruntime", optional=True)),
        (
            Form(
                _kv(("comm", _s("comm")), ("pid", _i("pid")), ("runtime", _i("runtime")))
                + r" \[ns\](?: vruntime=(?P<vruntime>\d+) \[ns\])?"
            ),
        ),
    )
    add(
        "sched",
        "sched_pi_setprio",
        (_f("comm", S), _f("pid"), _f("oldprio"), _f("newprio")),
        (
            Form(
                _kv(
                    ("comm", _s("comm")),
                    ("pid", _i("pid")),
                    ("oldprio", _i("oldprio")),
                    ("newprio", _i("newprio")),
                )
            ),
        ),
    )
    add(
        "sched",
        "sched_kthread_stop",
        (_f("comm", S), _f("pid")),
        (Form(_kv(("comm", _s("comm")), ("pid", _i("pid")))),),
    )
    add("sched", "sched_kthread_stop_ret", (_f("ret"),), (Form(_kv(("ret", _i("ret")))),))
    add("sched", "sched_wake_idle_without_ipi", (_f("cpu"),), (Form(_kv(("cpu", _i("cpu")))),))

    add(
        "irq",
        "irq_handler_entry",
        (_f("irq"), _f("name", S)),
        (Form(_kv(("irq", _i("irq")), ("name", _s("name")))),),
    )
    add(
        "irq",
        "irq_handler_exit",
        (_f("irq"), _f("ret", int, "irqret")),
        (Form(_kv(("irq", _i("irq")), ("ret", _w("ret")))),),
    )
    for name in ("softirq_entry", "softirq_exit", "softirq_raise"):
        add("irq", name, *_SOFTIRQ)

    add(
        "timer",
        "hrtimer_setup",
        (_f("hrtimer", S), _f("clockid", S), _f("mode", S)),
        (Form(_kv(("hrtimer", _w("hrtimer")), ("clockid", _w("clockid")), ("mode", _s("mode")))),),
    )
    add(
        "timer",
        "hrtimer_init",
        (_f("hrtimer", S), _f("clockid", S), _f("mode", S)),
        (Form(_kv(("hrtimer", _w("hrtimer")), ("clockid", _w("clockid")), ("mode", _s("mode")))),),
    )
    add(
        "timer",
        "hrtimer_start",
        (_f("hrtimer", S), _f("function", S), _f("expires"), _f("softexpires"), _f("mode", S)),
        (
            Form(
                _kv(
                    ("hrtimer", _w("hrtimer")),
                    ("function", _w("function")),
                    ("expires", _i("expires")),
                    ("softexpires", _i("softexpires")),
                    ("mode", _s("mode")),
                )
            ),
        ),
    )
    add(
        "timer",
        "hrtimer_expire_entry",
        (_f("hrtimer", S), _f("now"), _f("function", S)),
        (Form(_kv(("hrtimer", _w("hrtimer")), ("function", _w("function")), ("now", _i("now")))),),
    )
    add("timer", "hrtimer_expire_exit", *_HRTIMER_ONLY)
    add("timer", "hrtimer_cancel", *_HRTIMER_ONLY)

    for name in ("preempt_disable", "preempt_enable", "irq_disable", "irq_enable"):
        add(
            "preemptirq",
            name,
            *_PREEMPTIRQ,
            keys={"caller_offs": "caller", "parent_offs": "parent"},
        )

    add(
        "raw_syscalls",
        "sys_enter",
        (_f("id"), _f("args", S)),
        (Form(r"NR (?P<id>-?\d+) \((?P<args>.*)\)"),),
    )
    add(
        "raw_syscalls",
        "sys_exit",
        (_f("id"), _f("ret")),
        (Form(r"NR (?P<id>-?\d+) = (?P<ret>-?\d+)"),),
    )

    add("exceptions", "page_fault_user", *_PF)
    add("exceptions", "page_fault_kernel", *_PF)

    add(
        "signal",
        "signal_deliver",
        (
            _f("sig"),
            _f("errno"),
            _f("code"),
            _f("sa_handler", int, "hex"),
            _f("sa_flags", int, "hex"),
        ),
        (
            Form(
                _kv(
                    ("sig", _i("sig")),
                    ("errno", _i("errno")),
                    ("code", _i("code")),
                    ("sa_handler", _w("sa_handler")),
                    ("sa_flags", _w("sa_flags")),
                )
            ),
        ),
    )
    add(
        "signal",
        "signal_generate",
        (_f("sig"), _f("errno"), _f("code"), _f("comm", S), _f("pid"), _f("group"), _f("result")),
        (
            Form(
                _kv(
                    ("sig", _i("sig")),
                    ("errno", _i("errno")),
                    ("code", _i("code")),
                    ("comm", _s("comm")),
                    ("pid", _i("pid")),
                    ("grp", _i("group")),
                    ("res", _i("result")),
                )
            ),
        ),
        keys={"grp": "group", "res": "result"},
    )

    add(
        "lock",
        "contention_begin",
        (_f("lock_addr", S), _f("flags", S)),
        (Form(r"(?P<lock_addr>\S+) \(flags=(?P<flags>.*)\)"),),
    )
    add(
        "lock",
        "contention_end",
        (_f("lock_addr", S), _f("ret")),
        (Form(r"(?P<lock_addr>\S+) \(ret=(?P<ret>-?\d+)\)"),),
    )

    # task:task_newtask (the LTL monitors' task-creation hook); clone_flags prints as %lx
    add(
        "task",
        "task_newtask",
        (_f("pid"), _f("comm", S), _f("clone_flags", int, "hex"), _f("oom_score_adj")),
        (
            Form(
                _kv(
                    ("pid", _i("pid")),
                    ("comm", _s("comm")),
                    ("clone_flags", _w("clone_flags")),
                    ("oom_score_adj", _i("oom_score_adj")),
                )
            ),
        ),
    )

    # x86 interrupt-vector events (irq_vectors), hooked as irq entries by sts, nrp and opid
    for name in _IRQ_VECTORS:
        add("irq_vectors", name, (_f("vector"),), (Form(_kv(("vector", _i("vector")))),))

    # Bare tracepoints (DECLARE_TRACE): the kernel's RV monitors hook them, but tracefs does not
    # expose them, so a trace carries them only when something re-emits them under these names
    # (a kprobe, a BPF program, a synthetic event). Fields are the tracepoints' arguments, a
    # task_struct argument as the task's pid.
    for name, fields in _BARE_TRACEPOINTS.items():
        add(
            "sched", name, tuple(_f(f) for f in fields), (Form(_kv(*((f, _i(f)) for f in fields))),)
        )

    # ftrace:print (trace_marker). The kernel prints "<ip symbol>: <buf>", and the ip symbol
    # of a trace_marker write is "tracing_mark_write", which is why that looks like a name.
    add(
        "ftrace",
        "print",
        (_f("ip", int, "addr", True), _f("buf", S)),
        (Form(r"(?P<ip>0x[0-9a-fA-F]+): (?P<buf>.*)"),),
        aliases=("tracing_mark_write",),
    )
    return tp


# ---------------------------------------------------------------------------------------------
# rv: the kernel's monitor verdicts, any event_<m> / error_<m> / error_env_<m>.

_RV_FIELDS = (
    _f("id", int, optional=True),
    _f("state", S, optional=True),
    _f("event", S, optional=True),
    _f("next_state", S, optional=True),
    _f("final_state", int, "final", True),
    _f("env", S, optional=True),
    _f("comm", S, optional=True),
    _f("pid", int, optional=True),
    _f("states", S, optional=True),
    _f("atoms", S, optional=True),
    _f("next", S, optional=True),
    _f("cpu", int, optional=True),
)
_RV_ID = r"(?:(?P<id>-?\d+): )?"
_RV_EVENT_FORMS = (
    # DA/HA (6.17+; <=6.16 printed a trailing blank when not final): "[ID: ]S x E -> N[ (final)]"
    Form(
        _RV_ID + r"(?P<state>\S+) x (?P<event>\S+) -> (?P<next_state>\S+)"
        r"(?P<final_state> \(final\))?\s*"
    ),
    # LTL per task: "COMM[PID]: (STATES) x (ATOMS) -> (NEXT)"; per CPU: "cpuN: (...) x ..."
    Form(
        r"(?P<comm>.*)\[(?P<pid>-?\d+)\]: \((?P<states>[^)]*)\) x \((?P<atoms>[^)]*)\)"
        r" -> \((?P<next>[^)]*)\)\s*"
    ),
    Form(
        r"cpu(?P<cpu>\d+): \((?P<states>[^)]*)\) x \((?P<atoms>[^)]*)\) -> \((?P<next>[^)]*)\)\s*"
    ),
)
_RV_ERROR_FORMS = (
    Form(
        _RV_ID + r"event (?P<event>\S+) not expected in the state (?P<state>\S+?)"
        r"(?: with env (?P<env>.*?))?\s*"
    ),
    Form(r"(?P<comm>.*)\[(?P<pid>-?\d+)\]: violation detected\s*"),
    Form(r"cpu(?P<cpu>\d+): violation detected\s*"),
)
_RV_NAME = re.compile(r"(event|error)_\w+")


def _rv_tracepoint(name: str) -> Tracepoint | None:
    m = _RV_NAME.fullmatch(name)
    if m is None:
        return None
    forms = _RV_EVENT_FORMS if m.group(1) == "event" else _RV_ERROR_FORMS
    return Tracepoint("rv", name, _RV_FIELDS, forms)


# ---------------------------------------------------------------------------------------------

_TYPE_NAMES = {"int": int, "str": str, "string": str, "bool": int}


def _field_type(spec: type | str) -> type:
    """``int``/``str`` or a type name (``"int"``, ``"u64"``, ``"char[]"``) as hook tables write."""
    if spec is int or spec is str:
        return spec
    if isinstance(spec, str):
        name = spec.strip()
        if name in _TYPE_NAMES:
            return _TYPE_NAMES[name]
        if "char" in name and ("[" in name or "*" in name):
            return str
        if re.fullmatch(
            r"(unsigned |signed )?(u|s)?(8|16|32|64|int|long|short|char|pid_t|"
            r"size_t|bool|long long)",
            name,
        ):
            return int
    raise ValueError(f"field type must be int or str, not {spec!r}")


def _field_specs(fields: FieldSpec) -> tuple[TpField, ...]:
    items = fields.items() if isinstance(fields, Mapping) else fields
    return tuple(TpField(name, _field_type(typ)) for name, typ in items)


class Catalogue:
    """Known events by bare name, ``system:name`` and alias. Later registrations win."""

    def __init__(self, tracepoints: Iterable[Tracepoint] = ()) -> None:
        self._all: dict[str, Tracepoint] = {}
        self._by_name: dict[str, Tracepoint] = {}
        for tp in tracepoints:
            self.add(tp)

    def add(self, tp: Tracepoint) -> Tracepoint:
        self._all[tp.key] = tp
        self._by_name[tp.key] = tp
        self._by_name[tp.name] = tp
        for alias in tp.aliases:
            self._by_name[alias] = tp
        return tp

    def register(
        self,
        system: str | None,
        name: str,
        fields: FieldSpec,
        *,
        forms: Iterable[Form | str] = (),
        keys: Mapping[str, str] | None = None,
        aliases: Iterable[str] = (),
    ) -> Tracepoint:
        """Declare an event (e.g. from a hook table): ``fields`` as (name, int|str) pairs.

        Without ``forms`` its payload is read as ``key=value`` pairs (text before the first
        key, like a kprobe's ``(handle_switch+0x0/0x82)``, goes to field ``__probe_ip``).
        """
        tp = Tracepoint(
            system,
            name,
            _field_specs(fields),
            tuple(f if isinstance(f, Form) else Form(f) for f in forms),
            dict(keys or {}),
            tuple(aliases),
        )
        return self.add(tp)

    def lookup(self, name: str) -> Tracepoint | None:
        """By bare name (as text traces print it), ``system:name``, or alias; rv built in."""
        tp = self._by_name.get(name)
        if tp is not None:
            return tp
        system, sep, bare = name.rpartition(":")
        if sep and system != "rv":
            return None
        tp = _rv_tracepoint(bare)
        if tp is not None:
            self._by_name[name] = tp
        return tp

    def copy(self) -> Catalogue:
        return Catalogue(self._all.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __iter__(self) -> Iterator[Tracepoint]:
        return iter(self._all.values())

    def __len__(self) -> int:
        return len(self._all)


#: The process-wide catalogue the readers use unless given another one.
CATALOGUE = Catalogue(_builtin())


def lookup(name: str) -> Tracepoint | None:
    """Find a known event in :data:`CATALOGUE` by bare name, ``system:name`` or alias."""
    return CATALOGUE.lookup(name)


def register(system: str | None, name: str, fields: FieldSpec, **kw: object) -> Tracepoint:
    """Add an event to :data:`CATALOGUE` (see :meth:`Catalogue.register`)."""
    return CATALOGUE.register(system, name, fields, **kw)  # type: ignore[arg-type]
