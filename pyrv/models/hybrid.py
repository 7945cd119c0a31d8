"""Hybrid automata: a DA plus environment variables, guards, resets and invariants (§3.5, §7).

A :class:`HybridAutomaton` is an :class:`~pyrv.models.automaton.Automaton` (the DA table is
unchanged: constraints can only forbid what the table allows) plus what rvgen reads from the
HA extensions of the DOT format, which :mod:`pyrv.models.dot` keeps as text:

* an edge label ``event;guard;reset(clk)``: at most one guard and one reset per edge, as rvgen
  allows. A guard is C-like comparisons ``env OP value`` (``<``, ``<=``, ``>``, ``>=``, ``==``,
  ``!=``) combined with ``&&`` and ``||`` with C precedence (``&&`` binds tighter); pyrv also
  accepts parentheses. A value is a decimal number with an optional unit (``ns``, ``us``,
  ``ms``, ``s``, or ``j`` for jiffies), or a name — a constant, parameter or function such as
  ``threshold_jiffies``, ``DEADLINE_NS`` or ``timeout_ns()`` — whose value is given when the
  model is loaded (``params``); in the kernel these are module parameters or monitor code;
* a state label ``"s\\nclk < c"``: the state's invariant, only of the form ``clk < c``.

Environment variables (rvgen's rules): a variable named in a ``reset()`` is *stored* (has a
per-instance value, the time of its last reset) and is a clock. A clock's unit is inferred
from a unit on a number it is compared with (``ns``/``us``/``ms``/``s`` make an ns clock,
``j`` a jiffy clock) or from the name of the value (``*_ns``, ``*_jiffies``); conflicting or
missing units are errors here, where rvgen would generate code with an ``XXX`` to fill in.
Every other variable is a *value* the monitor supplies with each event (e.g. ``irq_off``).
Variables are ordered as in the generated header: stored ones first, each group by name.

Units inside pyrv: time is ns (trace time). A jiffy clock is read as
``elapsed_ns // tick_ns`` and a jiffy bound ``c`` expires after ``c * tick_ns``, where
``tick_ns`` is the kernel's ``TICK_NSEC`` (10^9/HZ rounded: 4000000 at HZ=250). HZ is the
traced kernel's ``CONFIG_HZ``; the default 250 is the kernel's Kconfig default (``HZ_250``)
and what Debian kernels use, including the two kernels that recorded the bundled and
conformance traces (their tick timer fires every 4 ms; RCU's boot message counts 25 jiffies
for 100 ms). The kernel's stall monitor itself has no HZ of its own: it counts jiffies.

Every problem is a :class:`ModelError` naming the file, line and column of the guard or
invariant text at fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyrv.models.automaton import Automaton, ModelError
from pyrv.models.dot import DotModel, LabelPart, load_dot_model, parse_dot_model

__all__ = [
    "DEFAULT_HZ",
    "BoolOp",
    "Comparison",
    "EdgeRule",
    "Env",
    "Guard",
    "HybridAutomaton",
    "Invariant",
    "hybrid_from_dot",
    "load_bundled_hybrid",
    "load_hybrid",
    "parse_hybrid",
    "tick_ns",
]

#: CONFIG_HZ of the traced kernel when not told otherwise (Kconfig's default HZ_250).
DEFAULT_HZ = 250

EnvKind = Literal["ns", "jiffy", "value"]

#: ns per unit of a number written with that unit; "j" (jiffies) is handled apart.
_TIME_UNITS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9}
_OPS = ("<=", ">=", "==", "!=", "<", ">")
_RESET = re.compile(r"reset\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\Z")
_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>[0-9]+)(?P<unit>[A-Za-z]+)?
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<call>\s*\(\s*\))?
  | (?P<op><=|>=|==|!=|<|>|&&|\|\||\(|\))
    """,
    re.VERBOSE,
)


# --------------------------------------------------------------------------- the model


def tick_ns(hz: int) -> int:
    """The kernel's ``TICK_NSEC``: one jiffy in ns, rounded to nearest (3333333 at HZ=300)."""
    return (10**9 + hz // 2) // hz


@dataclass(frozen=True)
class Env:
    """An environment variable: a clock (``ns``/``jiffy``) or a monitor-supplied value."""

    name: str
    kind: EnvKind
    stored: bool  # reset by some edge: every instance keeps the time of its last reset

    @property
    def is_clock(self) -> bool:
        return self.kind != "value"


@dataclass(frozen=True)
class Comparison:
    """``env OP value``; ``value`` is in the variable's unit (ns, jiffies, or plain)."""

    env: int
    op: str
    value: int
    text: str

    def holds(self, current: int) -> bool:
        v = self.value
        match self.op:
            case "<":
                return current < v
            case "<=":
                return current <= v
            case ">":
                return current > v
            case ">=":
                return current >= v
            case "==":
                return current == v
            case _:
                return current != v


@dataclass(frozen=True)
class BoolOp:
    """``left && right`` or ``left || right``."""

    op: Literal["&&", "||"]
    left: Guard
    right: Guard


Guard = Comparison | BoolOp


def guard_envs(g: Guard) -> frozenset[int]:
    """The variables a guard reads."""
    if isinstance(g, Comparison):
        return frozenset((g.env,))
    return guard_envs(g.left) | guard_envs(g.right)


@dataclass(frozen=True)
class EdgeRule:
    """The constraints of one ``(state, event)`` transition: a guard and the clocks it resets."""

    guard: Guard | None
    guard_text: str | None
    resets: tuple[int, ...]
    #: stored variables the guard reads: while one is unset (never reset since the instance
    #: started) the guard is not checked, as in rvgen's ``ha_monitor_env_invalid(...) ||``
    guard_stored: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Invariant:
    """A state's ``clk < bound``: ``bound`` in the clock's unit, ``bound_ns`` in ns."""

    env: int
    bound: int
    bound_ns: int
    text: str


@dataclass(frozen=True)
class HybridAutomaton:
    """A DA table plus environment variables and constraints (see the module doc)."""

    automaton: Automaton
    envs: tuple[Env, ...]
    #: (state index, event index) -> guard/resets of that transition
    rules: Mapping[tuple[int, int], EdgeRule] = field(default_factory=dict)
    #: state index -> its invariant
    invariants: Mapping[int, Invariant] = field(default_factory=dict)
    #: events labelling a self-loop with a reset somewhere: such a self-loop re-arms the timer
    self_loop_reset_events: frozenset[int] = frozenset()
    hz: int = DEFAULT_HZ
    params: Mapping[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.automaton.name

    @property
    def tick_ns(self) -> int:
        """Length of one jiffy in ns at this model's HZ."""
        return tick_ns(self.hz)

    @property
    def stored_count(self) -> int:
        """Number of stored variables (``ENV_MAX_STORED``): they come first in :attr:`envs`."""
        return sum(e.stored for e in self.envs)

    def env_index(self, name: str) -> int:
        return next(i for i, e in enumerate(self.envs) if e.name == name)

    def clock_value(self, env: int, elapsed_ns: int) -> int:
        """What the clock reads after ``elapsed_ns``: ns, or whole jiffies."""
        if self.envs[env].kind == "jiffy":
            return elapsed_ns // self.tick_ns
        return elapsed_ns


# --------------------------------------------------------------------------- guard parser


@dataclass
class _Tok:
    kind: str  # "number", "name", "op", "end"
    text: str
    off: int
    unit: str | None = None
    call: bool = False


class _Ctx:
    """Error positions for one label part: the file, and where its text starts."""

    def __init__(self, source: str, part: LabelPart) -> None:
        self.source = source
        self.part = part

    def error(self, offset: int, reason: str) -> ModelError:
        return ModelError(self.source, self.part.line, self.part.col + offset, reason)


def _tokens(text: str, ctx: _Ctx) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        m = _TOKEN.match(text, i)
        if m is None:
            raise ctx.error(i, f"unexpected character {text[i]!r} in constraint {text!r}")
        if m.group("number") is not None:
            unit = m.group("unit")
            if unit is not None and unit not in _TIME_UNITS and unit != "j":
                raise ctx.error(
                    m.start("unit"), f"unknown unit {unit!r} (ns, us, ms, s, or j for jiffies)"
                )
            out.append(_Tok("number", m.group("number"), i, unit))
        elif m.group("name") is not None:
            out.append(_Tok("name", m.group("name"), i, call=m.group("call") is not None))
        elif m.group("op") is not None:
            out.append(_Tok("op", m.group("op"), i))
        i = m.end()
    out.append(_Tok("end", "", len(text)))
    return out


@dataclass
class _RawCmp:
    """A comparison before the variables' units are known."""

    env: str
    env_off: int
    op: str
    value: _Tok
    ctx: _Ctx
    text: str


@dataclass
class _RawBool:
    op: Literal["&&", "||"]
    left: _RawCmp | _RawBool
    right: _RawCmp | _RawBool


_Raw = _RawCmp | _RawBool


#: how deep a guard may nest: parentheses, and ``&&``/``||`` operators (each one is a level
#: of the tree the engine walks); the kernel's guards use a handful, and deeper would
#: exhaust Python's recursion (RecursionError) on hostile input
MAX_GUARD_NESTING = 64


class _GuardParser:
    """Recursive descent over ``||`` < ``&&`` < comparison / parenthesised guard."""

    def __init__(self, text: str, ctx: _Ctx) -> None:
        self.text = text
        self.ctx = ctx
        self.toks = _tokens(text, ctx)
        self.i = 0
        self.parens = 0  # open parentheses around the token being read
        self.bools = 0  # && and || read so far: a bound on the tree's depth

    def deeper(self, tok: _Tok, parens: int = 0, bools: int = 0) -> None:
        """Count a '(' or an operator; past :data:`MAX_GUARD_NESTING`, an error at it."""
        self.parens += parens
        self.bools += bools
        if self.parens > MAX_GUARD_NESTING or self.bools > MAX_GUARD_NESTING:
            what = "nested parentheses" if parens else "&& and || operators"
            raise self.ctx.error(
                tok.off,
                f"guard nested too deeply: more than {MAX_GUARD_NESTING} {what}",
            )

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def parse(self) -> _Raw:
        if self.peek().kind == "end":
            raise self.ctx.error(0, "empty guard")
        g = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            raise self.ctx.error(
                tok.off, f"unexpected {tok.text!r} in guard {self.text!r} (expected && or ||)"
            )
        return g

    def or_expr(self) -> _Raw:
        left = self.and_expr()
        while self.peek().text == "||":
            self.deeper(self.take(), bools=1)
            left = _RawBool("||", left, self.and_expr())
        return left

    def and_expr(self) -> _Raw:
        left = self.primary()
        while self.peek().text == "&&":
            self.deeper(self.take(), bools=1)
            left = _RawBool("&&", left, self.primary())
        return left

    def primary(self) -> _Raw:
        tok = self.take()
        if tok.text == "(" and tok.kind == "op":
            self.deeper(tok, parens=1)
            inner = self.or_expr()
            self.parens -= 1
            close = self.take()
            if close.text != ")":
                raise self.ctx.error(tok.off, f"missing ')' for this '(' in guard {self.text!r}")
            return inner
        if tok.kind != "name" or tok.call:
            what = "end of guard" if tok.kind == "end" else repr(tok.text)
            raise self.ctx.error(
                tok.off, f"expected an environment variable, found {what} in guard {self.text!r}"
            )
        if tok.text == "reset" and self.peek().text == "(":
            raise self.ctx.error(
                tok.off, "reset(...) must be its own ';'-separated part of the label"
            )
        op = self.take()
        if op.kind != "op" or op.text not in _OPS:
            what = "end of guard" if op.kind == "end" else repr(op.text)
            raise self.ctx.error(
                op.off,
                f"expected a comparison (<, <=, >, >=, ==, !=) after {tok.text!r}, found {what}",
            )
        value = self.take()
        if value.kind not in ("number", "name"):
            what = "end of guard" if value.kind == "end" else repr(value.text)
            raise self.ctx.error(
                value.off, f"expected a number or a parameter after {op.text!r}, found {what}"
            )
        end = self.peek().off
        return _RawCmp(
            tok.text, tok.off, op.text, value, self.ctx, self.text[tok.off : end].strip()
        )


def _raw_cmps(g: _Raw) -> list[_RawCmp]:
    if isinstance(g, _RawCmp):
        return [g]
    return _raw_cmps(g.left) + _raw_cmps(g.right)


# --------------------------------------------------------------------------- building


@dataclass
class _RawEdge:
    guard: _Raw | None
    guard_text: str | None
    resets: list[tuple[str, _Ctx, int]]  # (env, ctx, offset)


def _parse_edge(parts: tuple[LabelPart, ...], source: str, where: str) -> _RawEdge:
    edge = _RawEdge(None, None, [])
    for part in parts:
        ctx = _Ctx(source, part)
        text = part.text
        if re.match(r"reset\s*\(", text):
            m = _RESET.match(text)
            if m is None:
                raise ctx.error(0, f"malformed reset {text!r} (expected reset(<clock>))")
            if edge.resets:
                raise ctx.error(0, f"{where}: only one reset per edge (rvgen's limit)")
            edge.resets.append((m.group(1), ctx, m.start(1)))
        else:
            if edge.guard is not None:
                raise ctx.error(0, f"{where}: only one guard per edge; combine them with && or ||")
            edge.guard = _GuardParser(text, ctx).parse()
            edge.guard_text = text
    return edge


def _value_unit(tok: _Tok) -> str | None:
    """The clock unit a compared value implies: "ns", "jiffy" or None (rvgen's inference)."""
    if tok.kind == "number":
        if tok.unit is None:
            return None
        return "jiffy" if tok.unit == "j" else "ns"
    name = tok.text.lower()
    if name.endswith("_ns"):
        return "ns"
    if name.endswith("_jiffies"):
        return "jiffy"
    return None


class _Builder:
    def __init__(self, dot: DotModel, source: str, params: Mapping[str, int], hz: int) -> None:
        self.dot = dot
        self.a = dot.automaton
        self.source = source
        self.params = dict(params)
        self.hz = hz
        self.units: dict[str, tuple[str, _Ctx, int]] = {}  # env -> (unit, where it was inferred)
        self.stored: dict[str, tuple[_Ctx, int]] = {}
        self.uses: dict[str, tuple[_Ctx, int]] = {}  # first use of every variable

    def infer(self, env: str, unit: str | None, ctx: _Ctx, off: int) -> None:
        if unit is None:
            return
        old = self.units.get(env)
        if old is not None and old[0] != unit:
            line, col = old[1].part.line, old[1].part.col + old[2]
            raise ctx.error(
                off,
                f"clock {env!r} compared as {_unit_word(unit)} here but as "
                f"{_unit_word(old[0])} at line {line}:{col}",
            )
        self.units.setdefault(env, (unit, ctx, off))

    def build(self) -> HybridAutomaton:
        a = self.a
        edges: dict[tuple[str, str], _RawEdge] = {}
        for (s, e), parts in self.dot.edge_constraints.items():
            edge = _parse_edge(parts, self.source, f"edge {s!r} x {e!r}")
            edges[(s, e)] = edge
            for env, ctx, off in edge.resets:
                self.stored.setdefault(env, (ctx, off))
                self.uses.setdefault(env, (ctx, off))
            if edge.guard is not None:
                for c in _raw_cmps(edge.guard):
                    self.uses.setdefault(c.env, (c.ctx, c.env_off))
                    self.infer(c.env, _value_unit(c.value), c.ctx, c.value.off)
        invariants: dict[str, _RawCmp] = {}
        for s, parts in self.dot.state_invariants.items():
            if len(parts) > 1:
                ctx = _Ctx(self.source, parts[1])
                raise ctx.error(0, f"state {s!r}: only one invariant per state (rvgen's limit)")
            ctx = _Ctx(self.source, parts[0])
            raw = _GuardParser(parts[0].text, ctx).parse()
            if not isinstance(raw, _RawCmp) or raw.op != "<":
                raise ctx.error(
                    0,
                    f"unsupported invariant {parts[0].text!r} of state {s!r}: "
                    "an invariant must be 'clock < bound'",
                )
            invariants[s] = raw
            self.uses.setdefault(raw.env, (ctx, raw.env_off))
            self.infer(raw.env, _value_unit(raw.value), ctx, raw.value.off)

        envs = self.envs(invariants)
        index = {e.name: i for i, e in enumerate(envs)}
        rules: dict[tuple[int, int], EdgeRule] = {}
        self_loop_resets: set[int] = set()
        for (s, e), edge in edges.items():
            si, ei = a.state_index(s), a.event_index(e)
            guard = None if edge.guard is None else self.resolve(edge.guard, envs, index)
            stored = frozenset(
                i for i in (guard_envs(guard) if guard is not None else ()) if envs[i].stored
            )
            resets = tuple(index[name] for name, _, _ in edge.resets)
            rules[(si, ei)] = EdgeRule(guard, edge.guard_text, resets, stored)
            if resets and a.function[si][ei] == si:
                self_loop_resets.add(ei)
        invs: dict[int, Invariant] = {}
        for s, raw in invariants.items():
            cmp = self.resolve(raw, envs, index)
            assert isinstance(cmp, Comparison)
            env = envs[cmp.env]
            bound_ns = cmp.value * tick_ns(self.hz) if env.kind == "jiffy" else cmp.value
            invs[a.state_index(s)] = Invariant(cmp.env, cmp.value, bound_ns, raw.text)
        return HybridAutomaton(
            automaton=a,
            envs=envs,
            rules=rules,
            invariants=invs,
            self_loop_reset_events=frozenset(self_loop_resets),
            hz=self.hz,
            params=self.params,
        )

    def envs(self, invariants: dict[str, _RawCmp]) -> tuple[Env, ...]:
        for name, (ctx, off) in self.stored.items():
            if name not in self.units:
                raise ctx.error(
                    off,
                    f"cannot tell the unit of clock {name!r}: compare it with a number with a "
                    "unit (e.g. 100us, 5j) or with a value named *_ns or *_jiffies",
                )
        for name, (unit, _, _) in self.units.items():
            if name not in self.stored:
                uctx, uoff = self.uses[name]
                raise uctx.error(
                    uoff,
                    f"{name!r} is compared as a clock ({_unit_word(unit)}) but no edge resets "
                    f"it (add reset({name}) where it starts)",
                )
        for s, raw in invariants.items():
            if raw.env not in self.stored:
                raise raw.ctx.error(
                    raw.env_off,
                    f"invariant of state {s!r}: {raw.env!r} is not a clock (no edge resets it)",
                )
        stored = sorted(self.stored)
        values = sorted(set(self.uses) - set(self.stored))
        out = [Env(n, self.units[n][0], True) for n in stored]  # type: ignore[arg-type]
        out += [Env(n, "value", False) for n in values]
        return tuple(out)

    def resolve(self, raw: _Raw, envs: tuple[Env, ...], index: dict[str, int]) -> Guard:
        if isinstance(raw, _RawBool):
            return BoolOp(
                raw.op, self.resolve(raw.left, envs, index), self.resolve(raw.right, envs, index)
            )
        i = index[raw.env]
        return Comparison(i, raw.op, self.value(raw), raw.text)

    def value(self, raw: _RawCmp) -> int:
        tok = raw.value
        if tok.kind == "number":
            n = int(tok.text)
            # a unit made the variable a clock of that unit (conflicts were refused): a number
            # in ns/us/ms/s is scaled to ns, one in "j" is already jiffies
            return n * _TIME_UNITS.get(tok.unit or "", 1)
        key = tok.text + "()" if tok.call else tok.text
        for k in (key, tok.text):
            if k in self.params:
                v = self.params[k]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise raw.ctx.error(tok.off, f"parameter {k!r} must be an integer, got {v!r}")
                return v
        given = ", ".join(sorted(self.params)) or "none"
        raise raw.ctx.error(
            tok.off,
            f"parameter {key!r} has no value (give it in params; given: {given})",
        )


def _unit_word(unit: str) -> str:
    return "jiffies" if unit == "jiffy" else unit


# --------------------------------------------------------------------------- entry points


def hybrid_from_dot(
    dot: DotModel,
    source: str,
    params: Mapping[str, int] | None = None,
    *,
    hz: int = DEFAULT_HZ,
) -> HybridAutomaton:
    """Evaluate the HA texts a :class:`DotModel` kept; ``source`` names the file in errors.

    A model without any HA part gives a hybrid automaton without variables (a plain DA).
    """
    if not isinstance(hz, int) or isinstance(hz, bool) or hz <= 0:
        raise ModelError(source, None, None, f"HZ must be a positive integer, not {hz!r}")
    return _Builder(dot, source, params or {}, hz).build()


def parse_hybrid(
    text: str | bytes,
    source: str = "<string>",
    params: Mapping[str, int] | None = None,
    *,
    name: str | None = None,
    hz: int = DEFAULT_HZ,
    strict: bool = False,
) -> HybridAutomaton:
    """Parse DOT text into a :class:`HybridAutomaton` (see :func:`load_hybrid`)."""
    dot = parse_dot_model(text, source, name, strict=strict)
    return hybrid_from_dot(dot, source, params, hz=hz)


def load_hybrid(
    path: str | os.PathLike[str],
    params: Mapping[str, int] | None = None,
    *,
    name: str | None = None,
    hz: int = DEFAULT_HZ,
    strict: bool = False,
) -> HybridAutomaton:
    """Read an HA model file. ``params`` gives the named values its constraints use (in the
    unit of the clock they bound, e.g. ``{"threshold_jiffies": 1000}``); ``hz`` is the traced
    kernel's CONFIG_HZ, used for jiffy clocks."""
    dot = load_dot_model(path, name, strict=strict)
    return hybrid_from_dot(dot, str(path), params, hz=hz)


def load_bundled_hybrid(
    name: str, params: Mapping[str, int] | None = None, *, hz: int = DEFAULT_HZ
) -> HybridAutomaton:
    """A bundled model (``pyrv/models/files``) as a hybrid automaton."""
    from pyrv.models.library import model_path

    path = model_path(name)
    return load_hybrid(path, params, name=Path(name).name, hz=hz, strict=True)
