"""The small expression language of a hook's ``when`` condition.

A condition is a Python-syntax boolean expression over the trace event's fields, parsed with
:mod:`ast` and compiled once into a closure; only comparisons, ``and``/``or``/``not``, ``&``,
``in`` with a literal list, field names and literals are allowed, so a hook table cannot run
code. Names are checked against the fields the tracepoint has.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from collections.abc import Callable, Collection, Mapping
from typing import Any

Fields = dict[str, Any]
Predicate = Callable[[Fields], bool]
Getter = Callable[[Fields], Any]

_CMP: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


#: how deep a condition may nest (brackets, and chained ``not``/``&``/``-``... within one):
#: far beyond any real condition, and shallow enough that parsing, compiling and evaluating
#: it stay well inside Python's recursion limit (Python's own parser stops at 200 brackets
#: with a bare "syntax error", and at about 1000 chained operators with RecursionError)
MAX_NESTING = 32
#: tokens that end an operand chain at their level: what follows is not nested in what came
_CHAIN_BREAKS = frozenset({"and", "or", ",", "==", "!=", "<", "<=", ">", ">=", "in", "is"})
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


class ConditionError(ValueError):
    """A condition that does not parse or names an unknown field; ``col`` is 1-based."""

    def __init__(self, col: int | None, reason: str) -> None:
        self.col = col
        self.reason = reason
        super().__init__(reason if col is None else f"column {col}: {reason}")


def compile_condition(text: str, fields: Collection[str] | Mapping[str, type | None]) -> Predicate:
    """Compile ``text`` into a predicate over an event's field dict.

    ``fields`` names the fields; when it maps them to ``int``/``str``, a comparison of a field
    with a literal of the other type is rejected (it could never be true).

    A missing field at run time makes the comparison false rather than raising: a trace
    variant that lacks the field must not crash the checker (the loader already rejected
    names the tracepoint does not have).
    """
    text = text.strip()
    _check_nesting(text)
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConditionError(exc.offset, f"syntax error in condition {shorten(text)}") from None
    types = dict(fields) if isinstance(fields, Mapping) else dict.fromkeys(fields)
    _check_types(tree.body, types)
    getter = _compile(tree.body, frozenset(types))

    def predicate(values: Fields) -> bool:
        try:
            return bool(getter(values))
        except (KeyError, TypeError):
            return False

    return predicate


def shorten(text: str, limit: int = 80) -> str:
    """The condition for a message: a hostile one can be megabytes long."""
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _check_nesting(text: str) -> None:
    """Refuse a condition nested deeper than :data:`MAX_NESTING`, at the column where it
    gets there, before Python's parser sees it.

    The depth counted bounds the syntax tree's: each open bracket, and within a bracket each
    ``not`` and each operator since the last ``and``/``or``/comparison/comma (``not not a``,
    ``a & b & c`` and ``- - a`` nest; ``a and b and c`` and ``a == b`` do not). A condition
    the tokenizer cannot read is left to the parser, which says why."""
    levels = [[0, 0]]  # per open bracket: nots, chained operators since the last break
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            kind, value = tok.type, tok.string
            if kind == tokenize.OP and value in _OPEN:
                levels.append([0, 0])
            elif kind == tokenize.OP and value in _CLOSE:
                if len(levels) > 1:
                    levels.pop()
                continue
            elif value in ("and", "or"):
                levels[-1] = [0, 0]
                continue
            elif value in _CHAIN_BREAKS:
                levels[-1][1] = 0
                continue
            elif value == "not":
                levels[-1][0] += 1
            elif kind == tokenize.OP:
                levels[-1][1] += 1
            else:
                continue
            depth = len(levels) - 1 + sum(n + ops for n, ops in levels)
            if depth > MAX_NESTING:
                raise ConditionError(
                    tok.start[1] + 1,
                    f"nested too deeply: more than {MAX_NESTING} levels of brackets and chained"
                    " operators (not, &, -...)",
                )
    except (tokenize.TokenError, SyntaxError):
        return


def _compile(node: ast.expr, fields: frozenset[str]) -> Getter:
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v, fields) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda f: all(p(f) for p in parts)
        return lambda f: any(p(f) for p in parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        inner = _compile(node.operand, fields)
        return lambda f: not inner(f)
    if isinstance(node, ast.Compare):
        return _compile_compare(node, fields)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitAnd):
        left, right = _compile(node.left, fields), _compile(node.right, fields)
        return lambda f: left(f) & right(f)
    if isinstance(node, ast.Name):
        if node.id not in fields:
            known = ", ".join(sorted(fields))
            raise ConditionError(node.col_offset + 1, f"unknown field {node.id!r} (known: {known})")
        name = node.id
        return lambda f: f[name]
    if isinstance(node, ast.Constant) and isinstance(node.value, int | str | bool):
        value = node.value
        return lambda f: value
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        values = []
        for elt in node.elts:
            if not (isinstance(elt, ast.Constant) and isinstance(elt.value, int | str)):
                raise ConditionError(elt.col_offset + 1, "a list may hold only literals")
            values.append(elt.value)
        frozen = frozenset(values)
        return lambda f: frozen
    raise ConditionError(
        getattr(node, "col_offset", -1) + 1, f"{type(node).__name__} is not allowed in a condition"
    )


def _compile_compare(node: ast.Compare, fields: frozenset[str]) -> Getter:
    operands = [_compile(node.left, fields)] + [_compile(c, fields) for c in node.comparators]
    ops = []
    for op in node.ops:
        fn = _CMP.get(type(op))
        if fn is None:
            raise ConditionError(node.col_offset + 1, f"operator {type(op).__name__} not allowed")
        ops.append(fn)

    def compare(f: Fields) -> bool:
        left = operands[0](f)
        for fn, right_get in zip(ops, operands[1:], strict=True):
            right = right_get(f)
            if not fn(left, right):
                return False
            left = right
        return True

    return compare


def _literal_types(node: ast.expr) -> list[tuple[type, ast.expr]]:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | str):
        return [(type(node.value), node)]
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return [t for elt in node.elts for t in _literal_types(elt)]
    return []


def _check_types(root: ast.expr, types: dict[str, type | None]) -> None:
    """Reject ``field <op> literal`` where the literal's type is not the field's."""
    for node in ast.walk(root):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for a, b in zip(operands, operands[1:], strict=False):
            for name, other in ((a, b), (b, a)):
                if not isinstance(name, ast.Name) or types.get(name.id) is None:
                    continue
                want = types[name.id]
                for got, lit in _literal_types(other):
                    if got is not want and not (want is int and got is bool):
                        kind = "a number" if want is int else "text"
                        raise ConditionError(
                            lit.col_offset + 1,
                            f"field {name.id!r} is {kind}; {ast.unparse(lit)} can never equal it",
                        )


#: more free comparisons than this in one condition: assume it tells the values apart
_MAX_FREE = 12


def tells_apart(text: str, field: str, a: str, b: str) -> bool:
    """Whether the condition ``text`` (valid: compiled before) can be true for ``field == a``
    and false for ``field == b``, or the reverse, all other fields equal.

    Comparisons that do not read ``field`` may be true or false in any combination; one that
    compares ``field`` with another field, or reads it other than by comparison with
    literals, is assumed to tell them apart. So ``prev_state == 'R'`` tells ``R`` from ``R+``,
    ``prev_state in ['R', 'R+']`` and ``prev_state == 'R' or prev_state == 'R+'`` do not."""
    tree = ast.parse(text.strip(), mode="eval").body
    free: list[ast.expr] = []
    try:
        _collect_free(tree, field, free)
    except _Unsure:
        return True
    if len(free) > _MAX_FREE:
        return True
    for bits in range(1 << len(free)):
        truth = {id(node): bool(bits >> i & 1) for i, node in enumerate(free)}
        if _value(tree, field, a, truth) != _value(tree, field, b, truth):
            return True
    return False


class _Unsure(Exception):
    """A use of the field the analysis does not follow."""


def _reads(node: ast.expr, field: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == field for n in ast.walk(node))


def _collect_free(node: ast.expr, field: str, free: list[ast.expr]) -> None:
    """The parts whose truth is free (they do not read ``field``), in evaluation order."""
    if isinstance(node, ast.BoolOp):
        for v in node.values:
            _collect_free(v, field, free)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _collect_free(node.operand, field, free)
    elif not _reads(node, field):
        if not isinstance(node, ast.Constant):
            free.append(node)
    elif isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        if any(_reads(o, field) and not isinstance(o, ast.Name) for o in operands) or any(
            isinstance(o, ast.Name) and o.id != field for o in operands
        ):
            raise _Unsure
    elif not (isinstance(node, ast.Name) and node.id == field):
        raise _Unsure


def _value(node: ast.expr, field: str, value: str, truth: dict[int, bool]) -> bool:
    """The condition's truth with ``field == value`` and the free parts as ``truth`` says."""
    if id(node) in truth:
        return truth[id(node)]
    if isinstance(node, ast.BoolOp):
        parts = (_value(v, field, value, truth) for v in node.values)
        return all(parts) if isinstance(node.op, ast.And) else any(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _value(node.operand, field, value, truth)
    compiled = _compile(node, frozenset({field}))
    try:
        return bool(compiled({field: value}))
    except TypeError:
        return False
