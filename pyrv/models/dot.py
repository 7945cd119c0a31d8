"""Reader (and writer) for the kernel's DOT automaton models (spec §7).

The kernel's rvgen reads ``.dot`` files line by line and trusts their layout; this module
tokenizes the DOT subset those files use instead, so that reformatted files still load and
every malformed file fails with a :class:`ModelError` naming the line and column at fault.

Conventions (rvgen's, spec §7):

* the file is ``digraph state_automaton { ... }`` (another graph name only warns);
* every state is declared by a node statement, typically ``{node [shape = circle] "s"};``;
  repeated declarations of one state merge.  Node statements inside a ``{ rank = ... }``
  block are layout hints and declare nothing;
* the initial state ``s`` is marked by exactly one node ``__init_s`` and the edge
  ``"__init_s" -> "s"``;
* final states are declared with shape ``doublecircle`` or ``ellipse`` (the shape given
  explicitly or by a ``node [...]`` default in scope); with none, the initial state is the
  only final state;
* an edge's ``label`` lists its events separated by a literal backslash-n (``"e1\\ne2"``);
  edges never declare states: an edge naming an undeclared state is an error (it catches
  typos; the kernel's files always declare);
* hybrid-automaton extras are kept, not evaluated: ``event;guard;reset(clk)`` label parts
  after the first ``;`` and state-label invariants after the first ``\\n``
  (``"s" [label = "s\\nclk < c"]``) land in :attr:`DotModel.edge_constraints` and
  :attr:`DotModel.state_invariants`;
* state indices: initial first, then alphabetical; events alphabetical.

Dubious-but-accepted input (rvgen accepts it silently) yields :class:`DotWarning` entries
in :attr:`DotModel.warnings`; ``strict=True`` raises the first one as a :class:`ModelError`.
Warned: a later edge redefining a ``(state, event)`` transition (the later one wins, as in
rvgen), a graph not named ``state_automaton``, a state label naming another state, a rank
block naming an undeclared state, states unreachable from the initial state.

Lexical subset: quoted IDs (only ``\\"`` is an escape; backslash-newline continues the
string, as in graphviz), bare IDs and numerals; ``//`` and ``/* */`` comments, and ``#``
comments to end of line anywhere outside strings (graphviz allows ``#`` only at a line
start); attributes separated by ``,``, ``;`` or nothing.  HTML strings, ``+``
concatenation, ports and subgraphs as edge ends are rejected with their position.

Columns are 1-based and count characters (a tab is one column).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pyrv.models.automaton import Automaton, ModelError

__all__ = [
    "DotModel",
    "DotWarning",
    "LabelPart",
    "format_dot",
    "load_dot",
    "load_dot_model",
    "parse_dot",
    "parse_dot_model",
]

INIT_MARKER = "__init_"
FINAL_SHAPES = frozenset({"doublecircle", "ellipse"})
_KEYWORDS = frozenset({"node", "edge", "graph", "digraph", "subgraph", "strict"})
_MAX_DEPTH = 100
_C_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NEWLINE = "\\n"  # the two characters backslash and n, as written inside DOT labels


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class DotWarning:
    """Something rvgen accepts silently but that is probably a mistake in the model."""

    source: str
    line: int | None
    col: int | None
    message: str

    def __str__(self) -> str:
        return str(ModelError(self.source, self.line, self.col, self.message))


@dataclass(frozen=True)
class LabelPart:
    """A hybrid-automaton constraint text (guard, ``reset(clk)`` or invariant) and its place."""

    text: str
    line: int
    col: int


@dataclass(frozen=True)
class DotModel:
    """Everything read from a DOT model: the automaton plus what only some users need."""

    automaton: Automaton
    graph_name: str | None
    warnings: tuple[DotWarning, ...] = ()
    # HA extensions, unevaluated: state name -> invariant texts from its label
    state_invariants: Mapping[str, tuple[LabelPart, ...]] = field(default_factory=dict)
    # HA extensions, unevaluated: (state, event) -> guard/reset texts of the winning edge
    edge_constraints: Mapping[tuple[str, str], tuple[LabelPart, ...]] = field(default_factory=dict)
    #: the file it was read from (or "<string>"): what errors in its HA texts name
    source: str = "<string>"

    @property
    def is_hybrid(self) -> bool:
        """True when the file carries guards, resets or invariants (an HA model)."""
        return bool(self.state_invariants or self.edge_constraints)


# --------------------------------------------------------------------------- lexer

Pos = tuple[int, int]


@dataclass(frozen=True)
class _Token:
    kind: Literal["id", "punct", "eof"]
    value: str
    line: int
    col: int
    quoted: bool = False
    # for quoted IDs: source position of every value character, plus the closing quote
    char_pos: tuple[Pos, ...] = ()

    @property
    def pos(self) -> Pos:
        return (self.line, self.col)

    def pos_at(self, offset: int) -> Pos:
        """Source position of value character ``offset`` (bare IDs sit on one line)."""
        if self.char_pos:
            return self.char_pos[min(offset, len(self.char_pos) - 1)]
        return (self.line, self.col + offset)

    def is_keyword(self, word: str) -> bool:
        return self.kind == "id" and not self.quoted and self.value.lower() == word

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of file"
        if self.quoted:
            return f'"{self.value}"'
        return f"'{self.value}'"


_PUNCT = ("->", "--", "{", "}", "[", "]", ";", ",", "=")


class _Lexer:
    """Turns DOT text into tokens; comments and whitespace are dropped."""

    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.i = 0
        self.line = 1
        self.col = 1

    def error(self, pos: Pos, reason: str) -> ModelError:
        return ModelError(self.source, pos[0], pos[1], reason)

    def _advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.text[self.i] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.i += 1

    def _peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.text[j] if j < len(self.text) else ""

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        while True:
            tok = self._next()
            out.append(tok)
            if tok.kind == "eof":
                return out

    def _skip_blanks_and_comments(self) -> None:
        while self.i < len(self.text):
            c = self._peek()
            if c.isspace():
                self._advance()
            elif c == "#" or (c == "/" and self._peek(1) == "/"):
                while self.i < len(self.text) and self._peek() != "\n":
                    self._advance()
            elif c == "/" and self._peek(1) == "*":
                start = (self.line, self.col)
                end = self.text.find("*/", self.i + 2)
                if end < 0:
                    raise self.error(start, "unterminated comment: '/*' is never closed by '*/'")
                self._advance(end + 2 - self.i)
            else:
                return

    def _next(self) -> _Token:
        self._skip_blanks_and_comments()
        if self.i >= len(self.text):
            return _Token("eof", "", self.line, self.col)
        line, col, c = self.line, self.col, self._peek()
        if c == '"':
            return self._quoted()
        if c == "-" and (self._peek(1).isdigit() or self._peek(1) == "."):
            return self._numeral()
        for p in _PUNCT:
            if self.text.startswith(p, self.i):
                self._advance(len(p))
                return _Token("punct", p, line, col)
        if c.isdigit() or c == ".":
            return self._numeral()
        if c.isalpha() or c == "_" or ord(c) >= 128:
            start = self.i
            while self.i < len(self.text) and (
                self._peek().isalnum() or self._peek() == "_" or ord(self._peek()) >= 128
            ):
                self._advance()
            return _Token("id", self.text[start : self.i], line, col)
        raise self.error((line, col), _unexpected_char(c))

    def _numeral(self) -> _Token:
        line, col = self.line, self.col
        m = re.compile(r"-?(\.[0-9]+|[0-9]+(\.[0-9]*)?)").match(self.text, self.i)
        if m is None:  # only reachable for a lone '.': report it like any stray character
            raise self.error((line, col), _unexpected_char(self._peek()))
        self._advance(m.end() - self.i)
        return _Token("id", m.group(), line, col)

    def _quoted(self) -> _Token:
        """A DOT quoted string: only ``\\"`` is an escape; backslash-newline continues."""
        line, col = self.line, self.col
        self._advance()  # opening quote
        chars: list[str] = []
        where: list[Pos] = []
        while True:
            if self.i >= len(self.text):
                raise self.error((line, col), "unterminated string: this '\"' is never closed")
            c = self._peek()
            if c == '"':
                where.append((self.line, self.col))
                self._advance()
                return _Token("id", "".join(chars), line, col, True, tuple(where))
            if c == "\\" and self._peek(1) == '"':
                where.append((self.line, self.col))
                chars.append('"')
                self._advance(2)
            elif c == "\\" and self._peek(1) == "\n":
                self._advance(2)
            elif c == "\\" and self._peek(1) == "\r" and self._peek(2) == "\n":
                self._advance(3)
            else:
                where.append((self.line, self.col))
                chars.append(c)
                self._advance()


def _unexpected_char(c: str) -> str:
    if c == "<":
        return "HTML-like strings '<...>' are not supported in automaton models"
    if c == "+":
        return "string concatenation with '+' is not supported; write one quoted string"
    if c == ":":
        return "node ports ('node:port') are not supported in automaton models"
    return f"unexpected character {c!r}"


# --------------------------------------------------------------------------- syntax tree

_Attrs = dict[str, tuple[_Token, _Token]]  # name -> (name token, value token)


@dataclass
class _NodeStmt:
    node: _Token
    attrs: _Attrs


@dataclass
class _EdgeStmt:
    nodes: list[_Token]
    arrows: list[_Token]
    attrs: _Attrs


@dataclass
class _AttrStmt:
    kind: str  # graph | node | edge
    attrs: _Attrs


@dataclass
class _Assign:
    key: _Token
    value: _Token


@dataclass
class _Block:
    brace: _Token
    stmts: list[_Stmt]


_Stmt = _NodeStmt | _EdgeStmt | _AttrStmt | _Assign | _Block


@dataclass
class _Graph:
    keyword: _Token
    name: _Token | None
    stmts: list[_Stmt]


class _Parser:
    """Recursive-descent parser for the DOT subset of the kernel's models."""

    def __init__(self, tokens: list[_Token], source: str) -> None:
        self.toks = tokens
        self.k = 0
        self.depth = 0
        self.source = source

    def error(self, tok: _Token, reason: str) -> ModelError:
        return ModelError(self.source, tok.line, tok.col, reason)

    @property
    def tok(self) -> _Token:
        return self.toks[self.k]

    def take(self) -> _Token:
        tok = self.toks[self.k]
        if tok.kind != "eof":
            self.k += 1
        return tok

    def at(self, punct: str) -> bool:
        return self.tok.kind == "punct" and self.tok.value == punct

    def expect(self, punct: str, what: str) -> _Token:
        if not self.at(punct):
            raise self.error(self.tok, f"expected {what}, found {self.tok.describe()}")
        return self.take()

    def graph(self) -> _Graph:
        if self.tok.is_keyword("strict"):
            self.take()
        kw = self.tok
        if kw.is_keyword("graph"):
            raise self.error(
                kw, "not a digraph: 'graph' is undirected; models are 'digraph state_automaton {'"
            )
        if not kw.is_keyword("digraph"):
            raise self.error(kw, f"not a digraph: expected 'digraph', found {kw.describe()}")
        self.take()
        name = self.take() if self.tok.kind == "id" else None
        brace = self.expect("{", "'{' after 'digraph'")
        stmts = self.stmt_list(brace)
        if self.tok.kind != "eof":
            raise self.error(self.tok, "unexpected text after the end of the digraph")
        return _Graph(kw, name, stmts)

    def stmt_list(self, brace: _Token) -> list[_Stmt]:
        """Statements up to and including the ``}`` matching ``brace``."""
        self.depth += 1
        if self.depth > _MAX_DEPTH:  # keeps hostile input from exhausting the Python stack
            raise self.error(brace, f"blocks nested more than {_MAX_DEPTH} deep")
        stmts: list[_Stmt] = []
        while True:
            if self.tok.kind == "eof":
                raise self.error(brace, "unterminated block: this '{' is never closed by '}'")
            if self.at("}"):
                self.take()
                self.depth -= 1
                return stmts
            if self.at(";") or self.at(","):
                self.take()
                continue
            stmts.append(self.stmt())

    def stmt(self) -> _Stmt:
        tok = self.tok
        if self.at("{"):
            return _Block(self.take(), self.stmt_list(tok))
        if tok.is_keyword("subgraph"):
            self.take()
            if self.tok.kind == "id":
                self.take()
            brace = self.expect("{", "'{' after 'subgraph'")
            return _Block(brace, self.stmt_list(brace))
        for kind in ("graph", "node", "edge"):
            if tok.is_keyword(kind):
                self.take()
                if not self.at("["):
                    raise self.error(self.tok, f"expected '[' after '{kind}'")
                return _AttrStmt(kind, self.attr_lists())
        if tok.is_keyword("digraph") or tok.is_keyword("strict"):
            raise self.error(tok, f"'{tok.value}' cannot appear inside a graph")
        if tok.kind != "id":
            raise self.error(tok, f"expected a statement, found {tok.describe()}")
        first = self.take()
        if self.at("="):
            self.take()
            return _Assign(first, self.value("a value after '='"))
        if self.at("--"):
            raise self.error(self.tok, "undirected edge '--' in a digraph; use '->'")
        if self.at("->"):
            return self.edge(first)
        attrs = self.attr_lists() if self.at("[") else {}
        return _NodeStmt(first, attrs)

    def edge(self, first: _Token) -> _EdgeStmt:
        nodes, arrows = [first], []
        while self.at("->") or self.at("--"):
            if self.at("--"):
                raise self.error(self.tok, "undirected edge '--' in a digraph; use '->'")
            arrows.append(self.take())
            if self.at("{") or self.tok.is_keyword("subgraph"):
                raise self.error(self.tok, "a subgraph as edge target is not supported")
            if self.tok.kind != "id" or (
                self.tok.value.lower() in _KEYWORDS and not self.tok.quoted
            ):
                raise self.error(
                    self.tok, f"missing target state after '->' (found {self.tok.describe()})"
                )
            nodes.append(self.take())
        attrs = self.attr_lists() if self.at("[") else {}
        return _EdgeStmt(nodes, arrows, attrs)

    def value(self, what: str) -> _Token:
        if self.tok.kind != "id":
            raise self.error(self.tok, f"expected {what}, found {self.tok.describe()}")
        return self.take()

    def attr_lists(self) -> _Attrs:
        """``[a = b, c = d; ...]`` one or more times; later settings override earlier ones."""
        attrs: _Attrs = {}
        while self.at("["):
            bracket = self.take()
            while not self.at("]"):
                if self.tok.kind == "eof":
                    raise self.error(bracket, "unterminated attribute list: '[' is never closed")
                if self.at(";") or self.at(","):
                    self.take()
                    continue
                key = self.value("an attribute name")
                if not self.at("="):
                    raise self.error(
                        self.tok,
                        f"expected '=' after attribute {key.describe()}, "
                        f"found {self.tok.describe()}",
                    )
                self.take()
                attrs[key.value] = (key, self.value(f"a value for attribute '{key.value}'"))
            self.take()
        return attrs


# --------------------------------------------------------------------------- semantics


@dataclass
class _Decl:
    tok: _Token
    final: bool = False
    label: _Token | None = None


@dataclass
class _Transition:
    dest: _Token
    event_pos: Pos
    constraints: tuple[LabelPart, ...]


class _Builder:
    """Walks the syntax tree and applies the kernel's conventions."""

    def __init__(self, source: str, strict: bool) -> None:
        self.source = source
        self.strict = strict
        self.warnings: list[DotWarning] = []
        self.states: dict[str, _Decl] = {}
        self.markers: dict[str, _Decl] = {}
        self.init_edges: list[tuple[_Token, _Token]] = []
        self.transitions: dict[tuple[str, str], _Transition] = {}
        self.edge_ends: list[tuple[_Token, str]] = []  # (token, "from"/"to") to check later
        self.rank_refs: list[_Token] = []

    def error(self, pos: Pos, reason: str) -> ModelError:
        return ModelError(self.source, pos[0], pos[1], reason)

    def warn(self, pos: Pos | None, message: str, strict: str | None = None) -> None:
        """A warning, or in strict mode an error (``strict``: its wording there, when the
        warning's would not fit a refusal)."""
        line, col = pos if pos else (None, None)
        if self.strict:
            raise ModelError(self.source, line, col, strict or message + " (strict mode)")
        self.warnings.append(DotWarning(self.source, line, col, message))

    # -- walking

    def walk(self, stmts: list[_Stmt], node_defaults: _Attrs, edge_defaults: _Attrs) -> None:
        rank = any(isinstance(s, _Assign) and s.key.value == "rank" for s in stmts)
        node_defaults, edge_defaults = dict(node_defaults), dict(edge_defaults)
        for s in stmts:
            if isinstance(s, _AttrStmt):
                if s.kind == "node":
                    node_defaults.update(s.attrs)
                elif s.kind == "edge":
                    edge_defaults.update(s.attrs)
            elif isinstance(s, _Block):
                self.walk(s.stmts, node_defaults, edge_defaults)
            elif isinstance(s, _NodeStmt):
                if rank:
                    self.rank_refs.append(s.node)
                else:
                    self.declare(s.node, {**node_defaults, **s.attrs})
            elif isinstance(s, _EdgeStmt):
                attrs = {**edge_defaults, **s.attrs}
                for src, arrow, dst in zip(s.nodes, s.arrows, s.nodes[1:], strict=False):
                    self.edge(src, arrow, dst, attrs)

    def declare(self, tok: _Token, attrs: _Attrs) -> None:
        name = _state_name(tok)
        if name.startswith(INIT_MARKER):
            self.declare_marker(tok, name)
            return
        self.check_state_name(tok, name)
        decl = self.states.setdefault(name, _Decl(tok))
        shape = attrs.get("shape")
        if shape and shape[1].value.lower() in FINAL_SHAPES:
            decl.final = True
        if "label" in attrs:
            decl.label = attrs["label"][1]

    def declare_marker(self, tok: _Token, name: str) -> None:
        if name == INIT_MARKER:
            raise self.error(tok.pos, f"initial marker '{INIT_MARKER}' names no state")
        if name not in self.markers and self.markers:
            first = next(iter(self.markers.values())).tok
            raise self.error(
                tok.pos,
                f"second initial marker '{name}': a model has exactly one initial state "
                f"(first marker '{_state_name(first)}' at line {first.line})",
            )
        self.markers.setdefault(name, _Decl(tok))

    def check_state_name(self, tok: _Token, name: str) -> None:
        if not name:
            raise self.error(tok.pos, "state with an empty name")
        if not _C_IDENT.match(name):
            raise self.error(
                tok.pos,
                f"state name {name!r} is not a C identifier (letters, digits, '_'), "
                "which rvgen needs for the generated enum",
            )

    def edge(self, src: _Token, arrow: _Token, dst: _Token, attrs: _Attrs) -> None:
        src_name, dst_name = _state_name(src), _state_name(dst)
        if dst_name.startswith(INIT_MARKER):
            raise self.error(dst.pos, f"edge into the initial marker '{dst_name}'")
        self.edge_ends += [(src, "from"), (dst, "to")]
        if src_name.startswith(INIT_MARKER):
            self.init_edges.append((src, dst))
            return
        if "label" not in attrs:
            raise self.error(
                arrow.pos, f'edge "{src_name}" -> "{dst_name}" has no label (its events)'
            )
        label = attrs["label"][1]
        if not label.value.strip():
            raise self.error(label.pos, f'edge "{src_name}" -> "{dst_name}" has an empty label')
        for offset, piece in _split_keep_offsets(label.value, _NEWLINE):
            self.add_event(src_name, dst, label, offset, piece)

    def add_event(self, src: str, dst: _Token, label: _Token, offset: int, piece: str) -> None:
        parts = list(_split_keep_offsets(piece, ";"))
        ev_off, ev_raw = parts[0]
        event = ev_raw.strip()
        ev_pos = label.pos_at(offset + ev_off + _lead(ev_raw))
        if not event:
            raise self.error(ev_pos, f'empty event name in label "{label.value}"')
        if not _C_IDENT.match(event):
            raise self.error(
                ev_pos,
                f"event name {event!r} is not a C identifier (letters, digits, '_'); "
                "separate events with \\n and constraints with ';'",
            )
        constraints = tuple(
            LabelPart(text.strip(), *label.pos_at(offset + off + _lead(text)))
            for off, text in parts[1:]
            if text.strip()
        )
        key = (src, event)
        old = self.transitions.get(key)
        if old is not None:
            verb = "repeated" if _state_name(old.dest) == _state_name(dst) else "redefined"
            what = (
                f"transition {src!r} x {event!r} {verb} (was -> {_state_name(old.dest)!r} at "
                f"line {old.event_pos[0]}:{old.event_pos[1]})"
            )
            self.warn(
                ev_pos,
                f"{what}; the later edge wins, as in rvgen",
                strict=f"{what}: rvgen would keep the later edge; a model given to pyrv must"
                " say one next state for each state and event",
            )
        self.transitions[key] = _Transition(dst, ev_pos, constraints)

    # -- checks after the walk

    def initial(self, graph: _Graph) -> str:
        if not self.markers:
            raise self.error(
                graph.keyword.pos,
                'no initial state: declare an invisible node "__init_<state>" and add the '
                'edge "__init_<state>" -> "<state>"',
            )
        marker, decl = next(iter(self.markers.items()))
        initial = marker[len(INIT_MARKER) :]
        for src, dst in self.init_edges:
            if _state_name(dst) != initial:
                raise self.error(
                    dst.pos,
                    f"initial marker '{_state_name(src)}' must point to '{initial}', "
                    f"not '{_state_name(dst)}'",
                )
        if not self.init_edges:
            raise self.error(
                decl.tok.pos,
                f'initial marker \'{marker}\' has no edge "{marker}" -> "{initial}"',
            )
        return initial

    def check_declared(self) -> None:
        for tok, role in self.edge_ends:
            name = _state_name(tok)
            if name not in self.states and name not in self.markers:
                hint = _suggest(name, self.states)
                raise self.error(
                    tok.pos,
                    f"edge {role} undeclared state {name!r}{hint}; declare it with "
                    f'{{node [shape = circle] "{name}"}};',
                )
        for tok in self.rank_refs:
            name = _state_name(tok)
            if name not in self.states and name not in self.markers:
                self.warn(tok.pos, f"rank block names undeclared state {name!r}")

    def labels(self) -> dict[str, tuple[LabelPart, ...]]:
        """State invariants from ``label = "name\\ninvariant"``; warn on a foreign name."""
        invariants: dict[str, tuple[LabelPart, ...]] = {}
        for name, decl in self.states.items():
            if decl.label is None:
                continue
            pieces = list(_split_keep_offsets(decl.label.value, _NEWLINE))
            shown = pieces[0][1].strip()
            if shown != name:
                self.warn(decl.label.pos, f"label {shown!r} of state {name!r} names another state")
            parts = tuple(
                LabelPart(text.strip(), *decl.label.pos_at(off + _lead(text)))
                for off, text in pieces[1:]
                if text.strip()
            )
            if parts:
                invariants[name] = parts
        return invariants

    def unreachable(self, initial: str) -> None:
        seen, todo = {initial}, [initial]
        while todo:
            s = todo.pop()
            for (src, _), t in self.transitions.items():
                n = _state_name(t.dest)
                if src == s and n not in seen:
                    seen.add(n)
                    todo.append(n)
        for name, decl in self.states.items():
            if name not in seen:
                self.warn(decl.tok.pos, f"state {name!r} is unreachable from the initial state")


def _state_name(tok: _Token) -> str:
    """Node ID as a state name; commas become underscores, as rvgen does."""
    return tok.value.replace(",", "_")


def _lead(text: str) -> int:
    return len(text) - len(text.lstrip())


def _split_keep_offsets(text: str, sep: str) -> list[tuple[int, str]]:
    """``text.split(sep)`` with each piece's offset in ``text`` (for error columns)."""
    out, start = [], 0
    while True:
        j = text.find(sep, start)
        if j < 0:
            out.append((start, text[start:]))
            return out
        out.append((start, text[start:j]))
        start = j + len(sep)


def _suggest(name: str, known: Mapping[str, object]) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- entry points


def _default_name(source: str, graph: _Graph) -> str:
    if not source.startswith("<"):
        return Path(source).stem
    return graph.name.value if graph.name else "state_automaton"


def _decode(data: str | bytes, source: str) -> str:
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelError(
                source, None, None, f"not a text file (invalid UTF-8 at byte {exc.start})"
            ) from None
    if "\x00" in data:
        raise ModelError(source, None, None, "not a text file (contains NUL bytes)")
    return data.removeprefix("\ufeff")


def parse_dot_model(
    text: str | bytes, source: str = "<string>", name: str | None = None, *, strict: bool = False
) -> DotModel:
    """Parse a DOT model, keeping warnings and HA constraint texts (see the module doc)."""
    text = _decode(text, source)
    if not text.strip():
        raise ModelError(source, None, None, "empty file: expected 'digraph state_automaton {'")
    graph = _Parser(_Lexer(text, source).tokens(), source).graph()
    b = _Builder(source, strict)
    if graph.name is None or graph.name.value != "state_automaton":
        found = graph.name.describe() if graph.name else "no name"
        b.warn(graph.keyword.pos, f"graph should be named 'state_automaton' (found {found})")
    b.walk(graph.stmts, {}, {})
    b.check_declared()
    initial = b.initial(graph)
    if not b.transitions:
        raise b.error(graph.keyword.pos, "model has no transitions (no labelled edges)")
    invariants = b.labels()
    b.unreachable(initial)
    finals = [s for s, d in b.states.items() if d.final]
    automaton = Automaton.from_table(
        name or _default_name(source, graph),
        initial,
        {key: _state_name(t.dest) for key, t in b.transitions.items()},
        finals=finals,
        states=b.states,
    )
    return DotModel(
        automaton=automaton,
        graph_name=graph.name.value if graph.name else None,
        warnings=tuple(b.warnings),
        state_invariants=invariants,
        edge_constraints={k: t.constraints for k, t in b.transitions.items() if t.constraints},
        source=source,
    )


def parse_dot(
    text: str | bytes, source: str = "<string>", name: str | None = None, *, strict: bool = False
) -> Automaton:
    """Parse DOT text into an :class:`Automaton`; warnings are dropped unless ``strict``.

    ``name`` defaults to the stem of ``source`` when it is a path, else the graph's name.
    """
    return parse_dot_model(text, source, name, strict=strict).automaton


def load_dot_model(
    path: str | os.PathLike[str], name: str | None = None, *, strict: bool = False
) -> DotModel:
    """Read and parse a model file; I/O and decoding failures become :class:`ModelError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelError(str(path), None, None, exc.strerror or str(exc)) from None
    return parse_dot_model(data, str(path), name or path.stem, strict=strict)


def load_dot(
    path: str | os.PathLike[str], name: str | None = None, *, strict: bool = False
) -> Automaton:
    """Read a model file into an :class:`Automaton`; ``name`` defaults to the file stem."""
    return load_dot_model(path, name, strict=strict).automaton


# --------------------------------------------------------------------------- writer


def _q(name: str) -> str:
    return '"' + name.replace('"', '\\"') + '"'


def format_dot(
    automaton: Automaton,
    *,
    final_shape: Literal["doublecircle", "ellipse"] = "doublecircle",
    header: bool = True,
) -> str:
    """The automaton as DOT text in the layout of the kernel's model files.

    ``final_shape="ellipse"`` mimics the older files (finals ``ellipse``, others
    ``plaintext``); ``doublecircle`` the newer ones (others ``circle``).
    """
    plain = "plaintext" if final_shape == "ellipse" else "circle"
    init = automaton.states[automaton.initial]
    lines = ["digraph state_automaton {"]
    if header:
        lines += ["\tcenter = true;", '\tsize = "7,11";']
    for i, s in sorted(enumerate(automaton.states), key=lambda p: p[1]):
        if s == init:
            lines.append(
                f'\t{{node [shape = plaintext, style=invis, label=""] {_q(INIT_MARKER + s)}}};'
            )
        if i in automaton.finals:
            lines.append(f"\t{{node [shape = {final_shape}] {_q(s)}}};")
        lines.append(f"\t{{node [shape = {plain}] {_q(s)}}};")
    lines.append(f"\t{_q(INIT_MARKER + init)} -> {_q(init)};")
    table = automaton.table()
    finals = {automaton.states[f] for f in automaton.finals}
    for s in sorted(automaton.states):
        color = ", color = green3" if s in finals else ""  # the kernel colours finals green
        lines.append(f"\t{_q(s)} [label = {_q(s)}{color}];")
        by_dest: dict[str, list[str]] = {}
        for (src, ev), dst in table.items():
            if src == s:
                by_dest.setdefault(dst, []).append(ev)
        for dst in sorted(by_dest):
            label = _NEWLINE.join(sorted(by_dest[dst]))
            lines.append(f"\t{_q(s)} -> {_q(dst)} [ label = {_q(label)} ];")
    lines += ["\t{ rank = min ;", f"\t\t{_q(INIT_MARKER + init)};", f"\t\t{_q(init)};", "\t}", "}"]
    return "\n".join(lines) + "\n"
