"""Reader for the kernel's LTL rule files (``.ltl``), the formula AST and its normalisation (§7).

A rule file is a list of definitions ``NAME = formula``; ``RULE`` is the specification and
is mandatory, every other name defines a sub-formula that is substituted (recursively) into
``RULE`` wherever an operand of that name appears. Names used but never defined are the
*atoms*, enumerated in alphabetical order; definitions ``RULE`` does not reach are ignored.

Syntax, as rvgen's grammar (tools/verification/rvgen/rvgen/ltl2ba.py) reads it:

* operands: ``true``, ``false``, names ``[A-Z_][A-Z0-9_]*`` and parenthesised formulas;
* unary operators ``always``, ``eventually``, ``next``, ``not``; binary operators ``and``,
  ``or``, ``imply``, ``until`` (``equivalent`` is documented by the kernel but its parser
  has no such token, so it is an unknown token here too);
* **no precedence**: the left side of a binary operator is a single operand, its right side
  the whole rest of the formula, so chains nest to the right (``A and B or C`` is
  ``A and (B or C)``) and a unary operator takes the whole remainder (``not A and B`` is
  ``not (A and B)``);
* ``#`` starts a comment that runs to the end of the line; spaces, tabs, form feeds, CR and
  LF separate tokens and are otherwise ignored, so a formula may span lines and needs no
  separator from the next definition. As with rvgen's lexer, tokens need no blank between
  them (``notA`` reads as ``not A``), while a name cannot contain lower-case letters.

Where pyrv differs from rvgen, deliberately:

* a second definition of a name (``RULE`` included) is an error; rvgen silently keeps
  the last one;
* a cycle among the definitions ``RULE`` reaches is an error; rvgen recurses forever;
* a comment on the last line needs no newline (rvgen's grammar demands one);
* a name used twice is substituted as two independent copies; rvgen shares one sub-tree
  between the uses, and its in-place normalisation then appears to negate the shared
  operands for every use when one use sits under a negation (read from ltl2ba.py, not run;
  none of the kernel's files uses a definition twice).

As in rvgen, ``RULE`` written *inside* a formula is not a reference to the rule but an atom
called ``RULE`` (rvgen never puts ``RULE`` in its table of sub-formulas).

Every malformed input raises :class:`~pyrv.models.automaton.ModelError` with the file, the
1-based line and column (a column counts characters, a tab is one) and the reason: bytes
that are not UTF-8, unknown tokens, unbalanced parentheses, a missing operand, an empty
file, no ``RULE``, duplicate definitions, definition cycles, more than
:data:`MAX_ATOMS` atoms.

Normalisation (:func:`to_nnf`) is the kernel's: ``always F`` becomes ``false V F``,
``eventually F`` becomes ``true U F``, ``P imply Q`` becomes ``not P or Q`` and negations are
pushed down to the atoms (``not (P until Q)`` = ``not P V not Q``, ``not next P`` =
``next not P``, ``not true`` = ``false``). The result is a tree of :class:`NNF` nodes whose
identity matters: the tableau (:mod:`pyrv.models.buchi`) works on occurrences, as rvgen's does.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pyrv.models.automaton import ModelError

__all__ = [
    "BINARY",
    "MAX_ATOMS",
    "UNARY",
    "Expr",
    "LTLSpec",
    "NNF",
    "abbreviate_atoms",
    "available_ltl_models",
    "load_ltl",
    "load_ltl_model",
    "parse_ltl",
    "to_nnf",
]

#: include/linux/rv.h: RV_MAX_LTL_ATOM (atoms are bits of one bitmap).
MAX_ATOMS = 32
UNARY = ("always", "eventually", "next", "not")
BINARY = ("and", "or", "imply", "until")
LITERALS = ("true", "false")
_KEYWORDS = UNARY + BINARY + LITERALS  # no keyword is a prefix of another: greedy lexing is exact
_SPACE = " \t\n\r\f"  # lark's common.WS
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_WORD_CHARS = _NAME_CHARS | frozenset("abcdefghijklmnopqrstuvwxyz")
#: Guards against pathological input (Python recursion, substitution blow-up).
MAX_DEPTH = 200
MAX_SIZE = 100_000


# --------------------------------------------------------------------------- the formula AST


@dataclass(frozen=True)
class Expr:
    """A formula as written: ``op`` is ``name``, ``true``, ``false``, a unary or a binary operator.

    Equality is structural and ignores where the formula was written (``line``/``col``).
    """

    op: str
    args: tuple[Expr, ...] = ()
    name: str = ""
    line: int = field(default=0, compare=False)
    col: int = field(default=0, compare=False)

    def __str__(self) -> str:
        """Kernel syntax, every binary operation parenthesised (so it re-reads unchanged)."""
        if self.op == "name":
            return self.name
        if self.op in LITERALS:
            return self.op
        if self.op in UNARY:
            return f"{self.op} {_paren(self.args[0])}"
        return f"({_paren(self.args[0])} {self.op} {self.args[1]})"

    def names(self) -> set[str]:
        """Every name used in the formula."""
        out: set[str] = set()
        stack = [self]
        while stack:
            e = stack.pop()
            if e.op == "name":
                out.add(e.name)
            stack.extend(e.args)
        return out


def _paren(e: Expr) -> str:
    s = str(e)
    return s if e.op in ("name", *LITERALS) or s.startswith("(") else f"({s})"


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class LTLSpec:
    """A parsed rule file: the substituted ``RULE``, its atoms and their trace abbreviations."""

    name: str
    source: str
    rule: Expr  # RULE with every definition substituted
    atoms: tuple[str, ...]  # alphabetical: the kernel's ``enum ltl_atom`` order
    abbreviations: tuple[str, ...]  # ``ltl_atom_str``, same order as ``atoms``
    definitions: dict[str, Expr] = field(compare=False)  # as written, RULE included
    unused: tuple[str, ...] = ()  # definitions RULE does not reach (ignored, as in rvgen)

    def atom_index(self, atom: str) -> int:
        return self.atoms.index(atom)


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # "name", "kw", "(", ")", "=", "eof"
    text: str
    line: int
    col: int


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        line_start = before.rfind(b"\n") + 1
        col = len(before[line_start:].decode("utf-8", "replace")) + 1
        raise ModelError(source, line, col, f"not UTF-8 (byte 0x{data[exc.start]:02x})") from None


def _tokens(text: str, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n, line, line_start = 0, len(text), 1, 0
    while i < n:
        c = text[i]
        col = i - line_start + 1
        if c in _SPACE:
            if c == "\n":
                line, line_start = line + 1, i + 1
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "()=":
            toks.append(_Tok(c, c, line, col))
            i += 1
        elif c in _NAME_START:
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            toks.append(_Tok("name", text[i:j], line, col))
            i = j
        else:
            kw = next((k for k in _KEYWORDS if text.startswith(k, i)), None)
            if kw is None:
                j = i + 1
                while j < n and text[j] in _WORD_CHARS and c in _WORD_CHARS:
                    j += 1
                word = text[i:j]
                what = f"unknown token {word!r}" if c in _WORD_CHARS else f"unexpected {word!r}"
                raise ModelError(source, line, col, what)
            toks.append(_Tok("kw", kw, line, col))
            i += len(kw)
    toks.append(_Tok("eof", "", line, n - line_start + 1))
    return toks


# --------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, toks: list[_Tok], source: str) -> None:
        self.toks = toks
        self.pos = 0
        self.source = source
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        if tok.kind != "eof":
            self.pos += 1
        return tok

    def fail(self, tok: _Tok, reason: str) -> ModelError:
        return ModelError(self.source, tok.line, tok.col, reason)

    def definitions(self) -> list[tuple[_Tok, Expr]]:
        out: list[tuple[_Tok, Expr]] = []
        if self.peek().kind == "eof":
            raise self.fail(self.peek(), "empty file: no definitions (RULE is mandatory)")
        while self.peek().kind != "eof":
            tok = self.take()
            if tok.kind == ")":
                raise self.fail(tok, "unbalanced parentheses: ')' without '('")
            if tok.kind != "name":
                raise self.fail(tok, f"expected a definition 'NAME = formula', found {_show(tok)}")
            eq = self.take()
            if eq.kind != "=":
                raise self.fail(eq, f"expected '=' after {tok.text}, found {_show(eq)}")
            out.append((tok, self.formula(eq)))
        return out

    def formula(self, after: _Tok) -> Expr:
        """``UNOP formula | operand [BINOP formula]``, built without recursing on the spine."""
        spine: list[tuple[_Tok, Expr | None]] = []  # (operator token, left operand or None)
        prev = after
        while True:
            tok = self.peek()
            if tok.kind == "kw" and tok.text in UNARY:
                spine.append((self.take(), None))
                prev = tok
                continue
            left = self.operand(prev)
            op = self.peek()
            if op.kind == "kw" and op.text in BINARY:
                spine.append((self.take(), left))
                prev = op
                continue
            break
        if len(spine) > MAX_SIZE:
            raise self.fail(after, "formula too long")
        result = left
        for tok, lhs in reversed(spine):
            if lhs is None:
                result = Expr(tok.text, (result,), line=tok.line, col=tok.col)
            else:
                result = Expr(tok.text, (lhs, result), line=lhs.line, col=lhs.col)
        return result

    def operand(self, prev: _Tok) -> Expr:
        tok = self.take()
        if tok.kind == "name":
            return Expr("name", name=tok.text, line=tok.line, col=tok.col)
        if tok.kind == "kw" and tok.text in LITERALS:
            return Expr(tok.text, line=tok.line, col=tok.col)
        if tok.kind == "(":
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(tok, f"parentheses nested deeper than {MAX_DEPTH}")
            inner = self.formula(tok)
            close = self.take()
            if close.kind == "eof":
                raise self.fail(tok, "unbalanced parentheses: '(' is never closed")
            if close.kind != ")":
                why = f"expected ')' to close '(' at {tok.line}:{tok.col}, found {_show(close)}"
                raise self.fail(close, why)
            self.depth -= 1
            return inner
        if tok.kind == ")":
            raise self.fail(
                tok,
                f"unbalanced parentheses: ')' where an operand after {_show(prev)} was expected",
            )
        if tok.kind == "kw" and tok.text in BINARY:
            raise self.fail(tok, f"binary operator {tok.text!r} needs a left operand")
        raise self.fail(tok, f"expected an operand after {_show(prev)}, found {_show(tok)}")


def _show(tok: _Tok) -> str:
    return "end of file" if tok.kind == "eof" else repr(tok.text)


# --------------------------------------------------------------------------- substitution


def _substitute(defs: dict[str, tuple[_Tok, Expr]], source: str) -> tuple[Expr, set[str]]:
    """RULE with every defined name replaced by its (substituted) definition.

    Returns the formula and the set of definitions used. A definition reaching itself is an
    error reported at the reference that closes the cycle.
    """
    done: dict[str, Expr] = {}
    used: set[str] = set()
    size = [0]

    def expand(e: Expr, path: list[str], depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ModelError(source, e.line, e.col, f"formula nested deeper than {MAX_DEPTH}")
        size[0] += 1
        if size[0] > MAX_SIZE:
            raise ModelError(source, e.line, e.col, f"formula larger than {MAX_SIZE} nodes")
        if e.op == "name":
            n = e.name
            if n == "RULE" or n not in defs:
                return e  # an atom (RULE inside a formula is an atom for rvgen too)
            if n in path:
                cycle = " -> ".join([*path[path.index(n) :], n])
                raise ModelError(source, e.line, e.col, f"definition cycle: {cycle}")
            used.add(n)
            if n not in done:
                done[n] = expand(defs[n][1], [*path, n], depth + 1)
            return done[n]
        if not e.args:
            return e
        return Expr(e.op, tuple(expand(a, path, depth + 1) for a in e.args), e.name, e.line, e.col)

    rule = expand(defs["RULE"][1], ["RULE"], 0)
    return rule, used


# --------------------------------------------------------------------------- abbreviations


def abbreviate_atoms(atoms: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The names rvgen prints for atoms in ``event_<mon>`` records (``ltl_atom_str``).

    Each atom is cut where its longest prefix shared (character by character) with another
    atom ends; both parts are lower-cased, split on ``_``, the words ``is``, ``by``, ``or``,
    ``and`` dropped, every word cut to 2 letters and re-joined with ``_``; the two parts are
    then concatenated. So ``KERNEL_THREAD``/``KTHREAD_SHOULD_STOP`` share ``K``: ``k`` +
    ``er_th`` and ``k`` + ``th_sh_st``; ``WOKEN_BY_NMI`` shares ``WOKEN_BY_``: ``wo_`` + ``nm``.
    """

    def shorten(part: str) -> str:
        words = [w[:2] for w in part.lower().split("_") if w not in ("is", "by", "or", "and")]
        return "_".join(words)

    out = []
    for atom in atoms:
        share = 0
        for i in range(len(atom), 0, -1):
            if sum(a.startswith(atom[:i]) for a in atoms) > 1:
                share = i
                break
        out.append(shorten(atom[:share]) + shorten(atom[share:]))
    return tuple(out)


# --------------------------------------------------------------------------- entry points


def parse_ltl(data: bytes | str, source: str = "<ltl>", name: str | None = None) -> LTLSpec:
    """Read a rule file's text (bytes must be UTF-8) into an :class:`LTLSpec`."""
    text = _decode(data, source)
    parser = _Parser(_tokens(text, source), source)
    defs: dict[str, tuple[_Tok, Expr]] = {}
    for tok, expr in parser.definitions():
        if tok.text in defs:
            first = defs[tok.text][0]
            raise ModelError(
                source,
                tok.line,
                tok.col,
                f"duplicate definition of {tok.text} (first at {first.line}:{first.col})",
            )
        defs[tok.text] = (tok, expr)
    if "RULE" not in defs:
        found = ", ".join(defs)
        raise ModelError(source, None, None, f"no RULE definition (defined: {found})")
    rule, used = _substitute(defs, source)
    atoms = tuple(sorted(rule.names()))
    if len(atoms) > MAX_ATOMS:
        rt = defs["RULE"][0]
        raise ModelError(source, rt.line, rt.col, f"{len(atoms)} atoms, at most {MAX_ATOMS}")
    if name is None:
        name = Path(source).stem if source and not source.startswith("<") else "ltl"
    return LTLSpec(
        name=name,
        source=source,
        rule=rule,
        atoms=atoms,
        abbreviations=abbreviate_atoms(atoms),
        definitions={k: v[1] for k, v in defs.items()},
        unused=tuple(k for k in defs if k != "RULE" and k not in used),
    )


def load_ltl(path: str | os.PathLike[str], name: str | None = None) -> LTLSpec:
    """Read a rule file; the monitor name defaults to the file's stem (``sleep.ltl``: sleep)."""
    p = Path(path)
    return parse_ltl(p.read_bytes(), source=str(p), name=name or p.stem)


@functools.cache
def _bundled() -> dict[str, object]:
    root = resources.files("pyrv.models").joinpath("files")
    found: dict[str, object] = {}
    for entry in root.iterdir():
        for f in entry.iterdir() if entry.is_dir() else [entry]:
            if f.is_file() and f.name.endswith(".ltl"):
                found[f.name.removesuffix(".ltl")] = f
    return found


def available_ltl_models() -> list[str]:
    """Names of the bundled rule files (``pagefault``, ``sleep``, ``wakeup``)."""
    return sorted(_bundled())


def load_ltl_model(name: str) -> LTLSpec:
    """A bundled rule file by monitor name (``sleep`` or ``rtapp/sleep``)."""
    key = name.rpartition("/")[2]
    res = _bundled().get(key)
    if res is None:
        raise KeyError(f"no bundled LTL model {name!r}; available: {available_ltl_models()}")
    return parse_ltl(res.read_bytes(), source=str(res), name=key)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- normal form


class NNF:
    """A node of a formula in negation normal form.

    ``op`` is ``true``, ``false``, ``atom``, ``natom`` (a negated atom), ``and``, ``or``,
    ``U`` (until), ``V`` (release) or ``X`` (next). Nodes compare by identity: two
    occurrences of one sub-formula are two nodes, as in rvgen. ``temporal`` is True when the
    node or a node below it is U, V or X; a non-temporal ``and``/``or`` is one boolean label
    for the tableau, evaluated as a whole.
    """

    __slots__ = ("args", "atom", "op", "temporal", "uid")

    def __init__(self, op: str, args: tuple[NNF, ...] = (), atom: str = "") -> None:
        self.op = op
        self.args = args
        self.atom = atom
        self.temporal = op in ("U", "V", "X") or any(a.temporal for a in args)
        self.uid = -1  # preorder index in the whole formula, set by to_nnf

    def __str__(self) -> str:
        if self.op == "atom":
            return self.atom
        if self.op == "natom":
            return f"not {self.atom}"
        if self.op in LITERALS:
            return self.op
        if self.op == "X":
            return f"next ({self.args[0]})"
        sym = {"and": "and", "or": "or", "U": "U", "V": "V"}[self.op]
        return f"({self.args[0]} {sym} {self.args[1]})"

    def __repr__(self) -> str:
        return f"<NNF {self.uid}: {self}>"

    def nodes(self) -> list[NNF]:
        """This node and every node below it, in preorder."""
        out: list[NNF] = []
        stack: list[NNF] = [self]
        while stack:
            n = stack.pop()
            out.append(n)
            stack.extend(reversed(n.args))
        return out


def to_nnf(e: Expr) -> NNF:
    """The kernel's normal form of ``e`` as a fresh tree (uids numbered in preorder)."""
    root = _nnf(e, False)
    for i, n in enumerate(root.nodes()):
        n.uid = i
    return root


def _nnf(e: Expr, neg: bool) -> NNF:
    op = e.op
    if op == "name":
        return NNF("natom" if neg else "atom", atom=e.name)
    if op in LITERALS:
        return NNF("false" if (op == "true") == neg else "true")
    if op == "not":
        return _nnf(e.args[0], not neg)
    if op == "next":
        return NNF("X", (_nnf(e.args[0], neg),))
    if op == "always":  # []F = false V F;  not []F = <>not F = true U not F
        return NNF("U" if neg else "V", (NNF("true" if neg else "false"), _nnf(e.args[0], neg)))
    if op == "eventually":  # <>F = true U F;  not <>F = [] not F = false V not F
        return NNF("V" if neg else "U", (NNF("false" if neg else "true"), _nnf(e.args[0], neg)))
    left, right = e.args
    if op == "imply":  # P -> Q = not P or Q;  not (P -> Q) = P and not Q
        return NNF("and" if neg else "or", (_nnf(left, not neg), _nnf(right, neg)))
    # De Morgan, and not (P U Q) = not P V not Q
    kind = {"and": "or", "or": "and", "until": "V"}[op] if neg else {"until": "U"}.get(op, op)
    return NNF(kind, (_nnf(left, neg), _nnf(right, neg)))
