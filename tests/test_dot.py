"""The DOT model reader: rvgen's conventions, positioned errors, round trips."""

from __future__ import annotations

import contextlib
import keyword
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyrv.models.automaton import Automaton, ModelError
from pyrv.models.dot import (
    LabelPart,
    format_dot,
    load_dot,
    load_dot_model,
    parse_dot,
    parse_dot_model,
)

DATA = Path(__file__).parent / "data" / "dot"


def dot(*body: str, head: str = "digraph state_automaton {") -> str:
    """A model text: ``head``, one tab-indented line per ``body`` item, ``}``."""
    return "\n".join([head, *(f"\t{line}" for line in body), "}", ""])


INIT_A = '{node [shape = plaintext, style=invis, label=""] "__init_a"};'
TWO_STATES = (
    INIT_A,
    '{node [shape = circle] "a"};',
    '{node [shape = circle] "b"};',
    '"__init_a" -> "a";',
)


def error_of(text: str | bytes, **kw: object) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse_dot(text, source="m.dot", **kw)
    return info.value


def where(err: ModelError) -> tuple[int | None, int | None]:
    return (err.line, err.col)


# ------------------------------------------------------------------ conventions


def test_kernel_layout() -> None:
    a = parse_dot(
        dot(
            "center = true;",
            'size = "7,11";',
            '{node [shape = circle] "non_preemptive"};',
            '{node [shape = plaintext, style=invis, label=""] "__init_preemptive"};',
            '{node [shape = doublecircle] "preemptive"};',
            '{node [shape = circle] "preemptive"};',
            '"__init_preemptive" -> "preemptive";',
            '"non_preemptive" [label = "non_preemptive"];',
            '"non_preemptive" -> "non_preemptive" [ label = "sched_waking" ];',
            '"non_preemptive" -> "preemptive" [ label = "preempt_enable" ];',
            '"preemptive" [label = "preemptive", color = green3];',
            '"preemptive" -> "non_preemptive" [ label = "preempt_disable" ];',
            "{ rank = min ;",
            '\t"__init_preemptive";',
            '\t"preemptive";',
            "}",
        ),
        name="wip",
    )
    assert a == Automaton(
        name="wip",
        states=("preemptive", "non_preemptive"),
        events=("preempt_disable", "preempt_enable", "sched_waking"),
        function=((1, None, None), (None, 0, 1)),
        initial=0,
        finals=frozenset({0}),
    )


@pytest.mark.parametrize("shape", ["doublecircle", "ellipse"])
def test_final_shapes(shape: str) -> None:
    a = parse_dot(
        dot(
            *TWO_STATES,
            f'{{node [shape = {shape}] "b"}};',
            '"a" -> "b" [ label = "go" ];',
        )
    )
    assert {a.states[f] for f in a.finals} == {"b"}  # initial not final once any is marked


def test_no_final_marked_means_initial_is_the_only_final() -> None:
    a = parse_dot(dot(*TWO_STATES, '"a" -> "b" [ label = "go" ];'))
    assert a.finals == frozenset({a.initial}) == frozenset({0})


def test_final_shape_from_node_default_in_scope_only() -> None:
    a = parse_dot(
        dot(
            INIT_A,
            "{ node [shape = ellipse]; a }",
            "b",
            '"__init_a" -> "a"',
            'a -> b [label = "go"]',
        )
    )
    assert {a.states[f] for f in a.finals} == {"a"}


def test_multi_event_labels_and_ordering() -> None:
    a = parse_dot(
        dot(
            INIT_A,
            '{node [shape = circle] "zz"};',
            '{node [shape = circle] "a"};',
            '{node [shape = circle] "mm"};',
            '"__init_a" -> "a";',
            '"a" -> "zz" [ label = "zeta\\nalpha\\nmu" ];',
            '"zz" -> "mm" [ label = "beta" ];',
            '"mm" -> "a" [ label = "alpha" ];',
        )
    )
    assert a.states == ("a", "mm", "zz")
    assert a.events == ("alpha", "beta", "mu", "zeta")
    assert a.table() == {
        ("a", "zeta"): "zz",
        ("a", "alpha"): "zz",
        ("a", "mu"): "zz",
        ("zz", "beta"): "mm",
        ("mm", "alpha"): "a",
    }


def test_duplicate_declarations_merge() -> None:
    m = parse_dot_model(
        dot(
            *TWO_STATES,
            '{node [shape = doublecircle] "b"};',
            '{node [shape = circle] "b"};',
            '"b" [label = "b"];',
            '"a" -> "b" [ label = "go" ];',
        )
    )
    assert m.automaton.states == ("a", "b")
    assert m.automaton.finals == frozenset({1})
    assert m.warnings == ()


def test_later_edge_overrides_with_warning() -> None:
    text = dot(
        *TWO_STATES,
        '"a" -> "a" [ label = "go" ];',
        '"a" -> "b" [ label = "stay\\ngo" ];',
    )
    m = parse_dot_model(text, source="m.dot")
    assert m.automaton.table() == {("a", "stay"): "b", ("a", "go"): "b"}
    (w,) = m.warnings
    assert (w.line, w.col) == (7, 30)  # the 'go' inside "stay\ngo"
    assert "redefined" in w.message and "line 6:24" in w.message
    assert str(w).startswith("m.dot:7:30: ")
    err = error_of(text, strict=True)
    assert where(err) == (7, 30)
    assert "rvgen would keep the later edge" in err.reason and "wins" not in err.reason


def test_repeated_event_in_one_label_is_a_warning() -> None:
    m = parse_dot_model(dot(*TWO_STATES, '"a" -> "b" [ label = "go\\ngo" ];'))
    assert [w.message.split(" (")[0] for w in m.warnings] == ["transition 'a' x 'go' repeated"]


def test_comments_separators_and_ids() -> None:
    text = """// line comment
# preprocessor-style line
/* block
   comment */ digraph state_automaton { /* inline */
  node [shape=circle, color=black; style = solid fontsize=8]
  __init_a [shape = plaintext; style = invis, label = ""]; a # trailing
  "b" [shape = "doublecircle"]
  __init_a -> a;
  a -> b [label = go, color = "red";] [weight = 2];
  b -> a [label="back"]; // same line
}
"""
    m = parse_dot_model(text)
    assert m.automaton.table() == {("a", "go"): "b", ("b", "back"): "a"}
    assert m.automaton.finals == frozenset({1})
    assert m.warnings == ()


def test_odd_layout_file() -> None:
    m = load_dot_model(DATA / "odd_layout.dot")
    a = m.automaton
    assert a.name == "odd_layout"
    assert a.states == ("start", "middle_state", "stop")  # "middle,state": rvgen's ',' -> '_'
    assert a.events == ("again", "go", "halt", "reset")
    assert {a.states[f] for f in a.finals} == {"start", "stop"}
    assert a.table() == {
        ("start", "go"): "middle_state",
        ("start", "halt"): "stop",  # from the `edge [label = ...]` default
        ("middle_state", "go"): "start",  # overrides the chain's middle_state -> stop
        ("stop", "again"): "start",
        ("stop", "reset"): "start",
    }
    (w,) = m.warnings
    assert (w.line, w.col) == (15, 7)


def test_crlf_and_backslash_newline_continuation() -> None:
    a = load_dot(DATA / "crlf.dot")
    assert a.events == ("start", "stopfinish")


def test_hybrid_parts_are_kept_not_evaluated() -> None:
    m = load_dot_model(DATA / "hybrid.dot")
    a = m.automaton
    assert a.states == ("idle", "armed")
    assert a.events == ("arm", "disarm", "pet", "tick")
    assert m.is_hybrid
    assert m.state_invariants == {"armed": (LabelPart("clk < timeout_ns()", 11, 27),)}
    assert m.edge_constraints == {
        ("idle", "arm"): (LabelPart("reset(clk)", 13, 35),),
        ("armed", "pet"): (LabelPart("clk < 1000ns", 14, 36), LabelPart("reset(clk)", 14, 49)),
        ("armed", "disarm"): (LabelPart("is_owner == 1 && level > 2", 15, 40),),
    }
    assert ("armed", "tick") not in m.edge_constraints


def test_plain_da_has_no_hybrid_parts() -> None:
    m = parse_dot_model(dot(*TWO_STATES, '"a" -> "b" [ label = "go" ];'))
    assert not m.is_hybrid
    assert m.state_invariants == {} and m.edge_constraints == {}


def test_overriding_edge_replaces_its_constraints() -> None:
    m = parse_dot_model(
        dot(*TWO_STATES, '"a" -> "b" [ label = "go;x == 1" ];', '"a" -> "a" [ label = "go" ];')
    )
    assert m.edge_constraints == {}


def test_names_and_graph_name() -> None:
    text = dot(*TWO_STATES, '"a" -> "b" [ label = "go" ];')
    assert parse_dot(text).name == "state_automaton"
    assert parse_dot(text, source="some/dir/sco.dot").name == "sco"
    assert parse_dot(text, source="some/dir/sco.dot", name="x").name == "x"
    m = parse_dot_model(text.replace("state_automaton", "other", 1), source="m.dot")
    assert m.graph_name == "other"
    (w,) = m.warnings
    assert (w.line, w.col) == (1, 1) and "state_automaton" in w.message


def test_other_warnings() -> None:
    m = parse_dot_model(
        dot(
            *TWO_STATES,
            '{node [shape = circle] "lost"};',
            '"b" [label = "c\\nclk < 5"];',
            '"a" -> "b" [ label = "go" ];',
            '{ rank = min ; "a"; "ghost"; }',
        ),
        source="m.dot",
    )
    assert [(w.line, w.col, w.message.split(" ")[0:2]) for w in m.warnings] == [
        (9, 22, ["rank", "block"]),
        (7, 15, ["label", "'c'"]),
        (6, 25, ["state", "'lost'"]),
    ]
    assert m.state_invariants == {"b": (LabelPart("clk < 5", 7, 19),)}


def test_load_dot_path_types_and_default_name(tmp_path: Path) -> None:
    p = tmp_path / "mymon.dot"
    p.write_text(dot(*TWO_STATES, '"a" -> "b" [ label = "go" ];'))
    assert load_dot(p).name == "mymon"
    assert load_dot(str(p), name="other").name == "other"
    assert parse_dot(p.read_bytes()).events == ("go",)


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("text", "pos", "words"),
    [
        # not a digraph
        ("graph state_automaton { }", (1, 1), "not a digraph"),
        ("\n  strict graph g {}", (2, 10), "not a digraph"),
        ("hello world", (1, 1), "not a digraph"),
        ("// only a comment\n", (2, 1), "not a digraph"),
        ("digraph state_automaton\n", (2, 1), "expected '{'"),
        # unterminated things
        ('digraph state_automaton {\n\t"a', (2, 2), "unterminated string"),
        ('digraph state_automaton {\n\t"a\\" -> b;\n}\n', (2, 2), "unterminated string"),
        ("digraph state_automaton {\n /* x\n\n", (2, 2), "unterminated comment"),
        ('digraph state_automaton {\n\t{node [shape = circle] "a"', (2, 2), "unterminated block"),
        ("digraph state_automaton {\n\ta [shape = circle\n", (2, 4), "unterminated attribute"),
        ("digraph state_automaton {", (1, 25), "unterminated block"),
        # syntax
        ('digraph state_automaton {\n\t"a" -> ;\n}', (2, 9), "missing target"),
        ('digraph state_automaton {\n\t"a" ->\n}', (3, 1), "missing target"),
        ('digraph state_automaton {\n\t"a" -> [label = "e"];\n}', (2, 9), "missing target"),
        ('digraph state_automaton {\n\t"a" -- "b";\n}', (2, 6), "undirected edge"),
        ("digraph state_automaton {\n\ta [shape circle];\n}", (2, 11), "expected '='"),
        ("digraph state_automaton {\n\ta [shape = ];\n}", (2, 13), "a value for attribute"),
        ("digraph state_automaton {\n\ta -> {b c};\n}", (2, 7), "subgraph as edge target"),
        ("digraph state_automaton {\n\tnode shape = x;\n}", (2, 7), "expected '['"),
        ("digraph state_automaton {\n\t[x = y];\n}", (2, 2), "expected a statement"),
        ("digraph state_automaton {\n\tdigraph g {}\n}", (2, 2), "cannot appear inside"),
        ("digraph state_automaton {\n}\n}", (3, 1), "after the end"),
        ("digraph state_automaton {\n\ta [label = <b>];\n}", (2, 13), "HTML"),
        ('digraph state_automaton {\n\ta [label = "x" + "y"];\n}', (2, 17), "concatenation"),
        ("digraph state_automaton {\n\ta:n -> b;\n}", (2, 3), "ports"),
        ("digraph state_automaton {\n\ta @ b;\n}", (2, 4), "unexpected character '@'"),
        ("digraph state_automaton {\n\ta -> . ;\n}", (2, 7), "unexpected character '.'"),
    ],
)
def test_syntax_errors(text: str, pos: tuple[int, int], words: str) -> None:
    err = error_of(text)
    assert where(err) == pos, err
    assert words in err.reason
    assert err.source == "m.dot"
    assert str(err).startswith(f"m.dot:{pos[0]}:{pos[1]}: ")


@pytest.mark.parametrize(
    ("body", "pos", "words"),
    [
        # edges to or from undeclared states (typos), with a suggestion
        ((*TWO_STATES, '"a" -> "bb" [ label = "go" ];'), (6, 9), "edge to undeclared state 'bb'"),
        ((*TWO_STATES, '"x" -> "b" [ label = "go" ];'), (6, 2), "edge from undeclared state"),
        ((INIT_A, '"__init_a" -> "a";', 'a -> a [label = "e"]'), (3, 16), "undeclared"),
        # initial-state conventions
        (('{node [shape = circle] "a"};', '"a" -> "a" [ label = "e" ];'), (1, 1), "no initial"),
        (
            (*TWO_STATES, '{node [shape = plaintext] "__init_b"};', '"a" -> "b" [label = "e"];'),
            (6, 28),
            "second initial marker '__init_b'",
        ),
        (
            (INIT_A, '{node [shape = circle] "a"};', '"a" -> "a" [ label = "e" ];'),
            (2, 51),
            "has no edge",
        ),
        (
            (*TWO_STATES, '"__init_a" -> "b";', '"a" -> "b" [ label = "e" ];'),
            (6, 16),
            "must point to 'a', not 'b'",
        ),
        ((*TWO_STATES, '"a" -> "__init_a" [ label = "e" ];'), (6, 9), "into the initial marker"),
        (('{node [shape = plaintext] "__init_"};',), (2, 28), "names no state"),
        # labels and events
        ((*TWO_STATES, '"a" -> "b";'), (6, 6), "has no label"),
        ((*TWO_STATES, '"a" -> "b" [color = red];'), (6, 6), "has no label"),
        ((*TWO_STATES, '"a" -> "b" [label = ""];'), (6, 22), "empty label"),
        ((*TWO_STATES, '"a" -> "b" [label = "   "];'), (6, 22), "empty label"),
        ((*TWO_STATES, '"a" -> "b" [label = "e1\\n\\ne2"];'), (6, 27), "empty event name"),
        ((*TWO_STATES, '"a" -> "b" [label = "e1\\n"];'), (6, 27), "empty event name"),
        ((*TWO_STATES, '"a" -> "b" [label = ";x == 1"];'), (6, 23), "empty event name"),
        ((*TWO_STATES, '"a" -> "b" [label = "e1\\n a b"];'), (6, 28), "not a C identifier"),
        ((*TWO_STATES, '"a" -> "b" [label = "e1\\le2"];'), (6, 23), "not a C identifier"),
        ((*TWO_STATES, '"a" -> "b" [label = 42];'), (6, 22), "not a C identifier"),
        # state names
        (('{node [shape = circle] ""};',), (2, 25), "state with an empty name"),
        (('{node [shape = circle] "two words"};',), (2, 25), "not a C identifier"),
        # a model needs transitions
        ((INIT_A, '{node [shape = circle] "a"};', '"__init_a" -> "a";'), (1, 1), "no transitions"),
    ],
)
def test_model_errors(body: tuple[str, ...], pos: tuple[int, int], words: str) -> None:
    err = error_of(dot(*body))
    assert where(err) == pos, err
    assert words in err.reason, err


def test_deep_nesting_is_an_error_not_a_recursion_crash() -> None:
    err = error_of("digraph state_automaton {\n" + "{" * 5000 + "}" * 5000 + "}")
    assert where(err) == (2, 100)
    assert "nested" in err.reason


def test_undeclared_suggests_the_declared_name() -> None:
    err = error_of(dot(*TWO_STATES, '"a" -> "bb" [ label = "go" ];'))
    assert "did you mean 'b'?" in err.reason


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("binary.dot", "not a text file (invalid UTF-8"),
        ("nul.dot", "not a text file (contains NUL"),
        ("empty.dot", "empty file"),
    ],
)
def test_non_text_and_empty_files(name: str, words: str) -> None:
    with pytest.raises(ModelError) as info:
        load_dot(DATA / name)
    err = info.value
    assert (err.line, err.col) == (None, None)
    assert words in err.reason
    assert err.source == str(DATA / name)


def test_empty_and_blank_strings() -> None:
    for text in ("", "  \n\t\n"):
        err = error_of(text)
        assert where(err) == (None, None) and "empty file" in err.reason


def test_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        load_dot(tmp_path / "nope.dot")
    assert info.value.line is None


# ------------------------------------------------------------------ property tests

_RESERVED = {"node", "edge", "graph", "digraph", "subgraph", "strict"}
names = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: not s.startswith("__init_") and s not in _RESERVED and not keyword.iskeyword(s)
)


@st.composite
def automata(draw: st.DrawFn) -> tuple[Automaton, dict]:
    states = draw(st.lists(names, min_size=1, max_size=6, unique=True))
    events = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    initial = draw(st.sampled_from(states))
    pairs = [(s, e) for s in states for e in events]
    keys = draw(st.lists(st.sampled_from(pairs), min_size=1, max_size=len(pairs), unique=True))
    transitions = {k: draw(st.sampled_from(states)) for k in keys}
    finals = draw(st.sets(st.sampled_from(states)))
    a = Automaton.from_table("m", initial, transitions, finals, states=states)
    return a, {"states": states, "initial": initial, "transitions": transitions, "finals": finals}


def _id(draw: st.DrawFn, name: str) -> str:
    return f'"{name}"' if draw(st.booleans()) else name


@st.composite
def kernel_texts(draw: st.DrawFn) -> tuple[Automaton, str]:
    """An automaton and DOT text for it in the kernel's layout, with random harmless noise."""
    a, raw = draw(automata())
    sep = lambda: draw(st.sampled_from([", ", "; ", " "]))  # noqa: E731
    blank = lambda: draw(st.sampled_from(["", " ", "  // note", " /* c */", " # x"]))  # noqa: E731
    final_shape = draw(st.sampled_from(["doublecircle", "ellipse"]))
    init = raw["initial"]
    marker = _id(draw, "__init_" + init)
    decls = [f'{{node [shape = plaintext{sep()}style=invis{sep()}label=""] {marker}}};']
    for s in raw["states"]:
        decls.append(f"{{node [shape = circle] {_id(draw, s)}}};")
        if s in raw["finals"]:
            decls.append(f"{{node [shape = {final_shape}] {_id(draw, s)}}};")
    decls = draw(st.permutations(decls))
    by_edge: dict[tuple[str, str], list[str]] = {}
    for (s, e), n in raw["transitions"].items():
        by_edge.setdefault((s, n), []).append(e)
    newline = "\\n"  # backslash-n separates events inside a label
    edges = [
        f'{_id(draw, s)} -> {_id(draw, n)} [ label = "{newline.join(evs)}" ];'
        for (s, n), evs in by_edge.items()
    ]
    edges = draw(st.permutations(edges))
    body = [
        *decls,
        f"{_id(draw, '__init_' + init)} -> {_id(draw, init)};",
        *(f"{_id(draw, s)} [label = {_id(draw, s)}]" for s in raw["states"]),
        *edges,
        "{ rank = min ;",
        f'\t"__init_{init}";',
        f"\t{_id(draw, init)};",
        "}",
    ]
    text = "digraph state_automaton {\n" + "".join(f"\t{x}{blank()}\n" for x in body) + "}\n"
    return a, text


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_texts())
def test_kernel_layout_round_trip(case: tuple[Automaton, str]) -> None:
    a, text = case
    m = parse_dot_model(text, name="m")
    assert m.automaton == a
    assert all("unreachable" in w.message for w in m.warnings)


@settings(max_examples=100)
@given(automata(), st.sampled_from(["doublecircle", "ellipse"]), st.booleans())
def test_format_dot_round_trip(case: tuple[Automaton, dict], shape: str, header: bool) -> None:
    a, _ = case
    text = format_dot(a, final_shape=shape, header=header)  # type: ignore[arg-type]
    assert parse_dot(text, name="m") == a
    assert text.startswith("digraph state_automaton {\n")


_FRAGMENTS = st.sampled_from(
    [
        "digraph",
        "state_automaton",
        "{",
        "}",
        "[",
        "]",
        "->",
        "--",
        ";",
        ",",
        "=",
        '"',
        '"a"',
        '"__init_a"',
        "__init_a",
        "a",
        "b",
        "node",
        "edge",
        "subgraph",
        "label",
        "shape",
        "doublecircle",
        '"e\\nf"',
        '"e;g"',
        "\\",
        "/*",
        "*/",
        "//",
        "#",
        "\n",
        " ",
        "\t",
        "<",
        "+",
        ":",
        "-1.5",
        ".",
        "\x00",
        "é",
        "rank = min",
    ]
)


@settings(max_examples=500)
@given(st.lists(_FRAGMENTS, max_size=40))
def test_garbage_never_escapes_as_another_exception(parts: list[str]) -> None:
    try:
        parse_dot("".join(parts))
    except ModelError as err:
        assert err.reason
        if err.line is not None:
            assert err.line >= 1 and err.col is not None and err.col >= 1


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_exception(data: bytes) -> None:
    with contextlib.suppress(ModelError):
        parse_dot(data)
