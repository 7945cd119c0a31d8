"""From an LTL rule to the Büchi automaton an LTL monitor runs (spec §3.4, §7).

The construction is the on-the-fly tableau of Gerth, Peled, Vardi and Wolper ("Simple
on-the-fly automatic verification of linear temporal logic", 1995) on the kernel's normal
form (:func:`pyrv.models.ltl.to_nnf`), with the variations rvgen makes, so that the kernel's
rule files give the kernel's automata:

* a tableau node has ``incoming`` (nodes with an edge to it, or the virtual *init*),
  ``new`` (formulas still to process), ``old`` (formulas processed) and ``next``
  (formulas the successor must satisfy). Processing one formula ``f`` of ``new``:

  - ``false``: the node is dropped; ``true``, an atom, a negated atom, and a *non-temporal*
    ``and``/``or`` (nothing below it is U, V or X) go to ``old`` unexpanded: a boolean
    sub-formula is one label, evaluated as a whole;
  - a temporal ``and``: both sides go to ``new``; ``next f1``: ``f1`` goes to ``next``;
  - a temporal ``or`` splits the node in two (left / right side to ``new``); ``f1 U f2``
    splits into (``f1`` now, ``f1 U f2`` next) and (``f2`` now); ``f1 V f2`` into
    (``f2`` now, ``f1 V f2`` next) and (``f1`` and ``f2`` now);
  - a formula already in ``old`` is not put into ``new`` again;

* a node with nothing left in ``new`` is *complete*: if a complete node with the same
  ``old`` and ``next`` exists, the two merge (their ``incoming`` sets join); otherwise it
  becomes a state and a new node is started from its ``next`` set, with it as ``incoming``;
* formulas are occurrences (nodes of the normal-form tree), compared by identity, and
  contradictory literals (``a`` and ``not a`` in one ``old``) are **not** pruned — rvgen's
  contradiction check compares a negation's operand with the atom occurrence by identity
  and never matches. Such a state's label simply never holds;
* acceptance sets are not computed: the monitor only needs to know whether some run is
  still alive.

Results: a state's *label* is the conjunction of the non-temporal formulas of its ``old``
set; the *initial* states are those with an edge from init; ``m`` is a *successor* of ``n``
when ``n`` is in ``m``'s ``incoming``. On an update the monitor moves from ``n`` to every
successor ``m`` whose label holds on the current atoms.

State numbering (deterministic, and the kernel's for its rule files): the tableau is
expanded depth first, the first half of a split before the second, a complete node's
successor expansion before anything else; among the formulas in ``new`` the one earliest in
the preorder of the normal-form tree is processed first. Every node created by a split, by
a temporal ``and``, by ``next`` or as a successor gets the next serial number, and states
are numbered ``S0..Sn-1`` in the order of those serial numbers, as rvgen sorts its graph.
rvgen itself processes ``new`` in Python set order, which depends on the interpreter's
string-hash seed; this rule reproduces the generated headers of the kernel's tree (sleep:
S0..S7, initial S0, S1, S4, S5; pagefault and wakeup: S0 alone).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pyrv.models.automaton import ModelError
from pyrv.models.ltl import NNF, Expr, LTLSpec, abbreviate_atoms, to_nnf

__all__ = ["MAX_STATES", "BuchiAutomaton", "build_buchi", "tableau"]

#: include/linux/rv.h: RV_MAX_BA_STATES (states are bits of one bitmap).
MAX_STATES = 32
_INIT = -1  # serial number of the virtual init node


@dataclass(frozen=True)
class BuchiAutomaton:
    """The monitor's automaton: states ``0..n-1`` with labels, initial states and successors.

    ``labels[s]`` is the tuple of non-temporal formulas whose conjunction is state ``s``'s
    label; ``successors[s]`` the sorted successor states. Atoms are indexed as in ``atoms``
    (alphabetical), and a valuation is an int whose bit ``i`` is the value of ``atoms[i]``.
    """

    name: str
    atoms: tuple[str, ...]
    abbreviations: tuple[str, ...]
    labels: tuple[tuple[NNF, ...], ...]
    initial: frozenset[int]
    successors: tuple[tuple[int, ...], ...]
    rule: Expr | None = None
    # derived in __post_init__: bitmaps and compiled labels
    initial_mask: int = field(init=False, repr=False, compare=False, default=0)
    successor_masks: tuple[int, ...] = field(init=False, repr=False, compare=False, default=())
    _fns: tuple[Callable[[int], bool], ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _cache: dict[int, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {a: i for i, a in enumerate(self.atoms)}
        fns = tuple(_compile(label, index) for label in self.labels)
        object.__setattr__(self, "_fns", fns)
        object.__setattr__(self, "initial_mask", _mask(self.initial))
        object.__setattr__(self, "successor_masks", tuple(_mask(s) for s in self.successors))

    @property
    def num_states(self) -> int:
        return len(self.labels)

    def holding(self, valuation: int) -> int:
        """Bitmap of the states whose label holds under ``valuation`` (cached)."""
        got = self._cache.get(valuation)
        if got is None:
            got = 0
            for s, fn in enumerate(self._fns):
                if fn(valuation):
                    got |= 1 << s
            if len(self._cache) >= 1 << 16:
                self._cache.clear()
            self._cache[valuation] = got
        return got

    def label_holds(self, state: int, valuation: int) -> bool:
        return bool(self.holding(valuation) >> state & 1)

    def start(self, valuation: int) -> int:
        """``ltl_start``: the initial states whose label holds."""
        return self.initial_mask & self.holding(valuation)

    def step(self, states: int, valuation: int) -> int:
        """``ltl_possible_next_states`` over every state in ``states``: the next state set."""
        reach = 0
        s = 0
        while states:
            if states & 1:
                reach |= self.successor_masks[s]
            states >>= 1
            s += 1
        return reach & self.holding(valuation)

    def valuation(self, true_atoms: Mapping[str, bool] | set[str] | list[str]) -> int:
        """The valuation int of a set of true atoms (or an atom -> bool mapping)."""
        items = (
            true_atoms.items() if isinstance(true_atoms, Mapping) else ((a, 1) for a in true_atoms)
        )
        bits = 0
        for a, v in items:
            if v:
                bits |= 1 << self.atoms.index(a)
        return bits

    def label_text(self, state: int) -> str:
        """A state's label as a formula (``true`` when empty)."""
        parts = [str(f) for f in self.labels[state]]
        return " and ".join(parts) if parts else "true"

    def describe(self) -> str:
        """One line per state: ``S1 (initial): label -> S1, S2``."""
        lines = []
        for s in range(self.num_states):
            init = " (initial)" if s in self.initial else ""
            succ = ", ".join(f"S{m}" for m in self.successors[s]) or "-"
            lines.append(f"S{s}{init}: {self.label_text(s)} -> {succ}")
        return "\n".join(lines)


def _mask(states: frozenset[int] | tuple[int, ...]) -> int:
    m = 0
    for s in states:
        m |= 1 << s
    return m


def _compile(label: tuple[NNF, ...], index: Mapping[str, int]) -> Callable[[int], bool]:
    """A label (a conjunction) as a Python function of the valuation int."""

    def flat(n: NNF, op: str) -> list[NNF]:
        """The operands of a chain of one associative operator (no recursion on the chain)."""
        out, stack = [], [n]
        while stack:
            m = stack.pop()
            if m.op == op:
                stack.extend(reversed(m.args))
            else:
                out.append(m)
        return out

    def comp(n: NNF) -> Callable[[int], bool]:
        op = n.op
        if op in ("atom", "natom"):
            mask, want = 1 << index[n.atom], op == "atom"
            return lambda v: bool(v & mask) is want
        if op in ("true", "false"):
            const = op == "true"
            return lambda v: const
        parts = tuple(comp(m) for m in flat(n, op))
        if op == "and":
            return lambda v: all(f(v) for f in parts)
        return lambda v: any(f(v) for f in parts)

    conj = tuple(comp(m) for f in label for m in flat(f, "and"))
    return lambda v: all(f(v) for f in conj)


# --------------------------------------------------------------------------- the tableau


class _Node:
    __slots__ = ("incoming", "new", "next", "old", "serial")

    def __init__(
        self, serial: int, incoming: set[int], new: list[NNF], old: set[NNF], nxt: set[NNF]
    ) -> None:
        self.serial = serial
        self.incoming = incoming
        self.new = new  # kept sorted by preorder index, first to process last
        self.old = old
        self.next = nxt


def tableau(root: NNF, limit: int | None = None) -> list[tuple[set[int], set[NNF], int]]:
    """Run the tableau on a normal-form formula (uids set by :func:`to_nnf`).

    Returns the states in numbering order as ``(incoming serials, old set, serial)``; stops
    as soon as there are more than ``limit`` states (the caller reports the excess).
    """
    serials = itertools.count(_INIT + 1)
    done: list[_Node] = []
    by_key: dict[tuple[frozenset[NNF], frozenset[NNF]], _Node] = {}

    def node(incoming: set[int], new: list[NNF], old: set[NNF], nxt: set[NNF]) -> _Node:
        new = sorted(set(new), key=lambda f: -f.uid)  # pop() takes the smallest preorder index
        return _Node(next(serials), set(incoming), new, set(old), set(nxt))

    def fresh(n: _Node, *fs: NNF) -> list[NNF]:
        return n.new + [f for f in fs if f not in n.old]

    stack = [node({_INIT}, [root], set(), set())]
    while stack:
        n = stack.pop()
        if not n.new:
            key = (frozenset(n.old), frozenset(n.next))
            twin = by_key.get(key)
            if twin is not None:
                twin.incoming |= n.incoming
                continue
            by_key[key] = n
            done.append(n)
            if limit is not None and len(done) > limit:
                break
            stack.append(node({n.serial}, list(n.next), set(), set()))
            continue
        f = n.new.pop()
        op = f.op
        if op == "false":
            continue
        if not f.temporal:  # true, literals, boolean sub-formulas: one label each
            n.old.add(f)
            stack.append(n)
            continue
        old = n.old | {f}
        if op == "and":
            stack.append(node(n.incoming, fresh(n, *f.args), old, n.next))
        elif op == "X":
            stack.append(node(n.incoming, n.new, old, n.next | {f.args[0]}))
        else:
            left, right = f.args
            if op == "or":
                first = node(n.incoming, fresh(n, left), old, n.next)
                second = node(n.incoming, fresh(n, right), old, n.next)
            elif op == "U":
                first = node(n.incoming, fresh(n, left), old, n.next | {f})
                second = node(n.incoming, fresh(n, right), old, n.next)
            else:  # V
                first = node(n.incoming, fresh(n, right), old, n.next | {f})
                second = node(n.incoming, fresh(n, left, right), old, n.next)
            stack.append(second)
            stack.append(first)
    done.sort(key=lambda d: d.serial)
    return [(d.incoming, d.old, d.serial) for d in done]


def build_buchi(
    spec: LTLSpec | Expr, name: str | None = None, atoms: tuple[str, ...] | None = None
) -> BuchiAutomaton:
    """The Büchi automaton of a rule file (or of a bare formula, atoms from its names)."""
    if isinstance(spec, LTLSpec):
        rule, name, atoms = spec.rule, name or spec.name, spec.atoms
        abbrs = spec.abbreviations
        source = spec.source
    else:
        rule = spec
        atoms = atoms if atoms is not None else tuple(sorted(rule.names()))
        abbrs = abbreviate_atoms(atoms)
        name = name or "ltl"
        source = f"model {name!r}"
    states = tableau(to_nnf(rule), limit=MAX_STATES)
    if len(states) > MAX_STATES:
        why = f"the Büchi automaton has more than {MAX_STATES} states"
        raise ModelError(source, None, None, why)
    index = {serial: i for i, (_, _, serial) in enumerate(states)}
    successors: list[list[int]] = [[] for _ in states]
    initial = set()
    for m, (incoming, _, _) in enumerate(states):
        for src in incoming:
            if src == _INIT:
                initial.add(m)
            else:
                successors[index[src]].append(m)
    labels = tuple(
        tuple(sorted((f for f in old if not f.temporal), key=lambda f: f.uid))
        for _, old, _ in states
    )
    return BuchiAutomaton(
        name=name,
        atoms=tuple(atoms),
        abbreviations=tuple(abbrs),
        labels=labels,
        initial=frozenset(initial),
        successors=tuple(tuple(sorted(s)) for s in successors),
        rule=rule,
    )
