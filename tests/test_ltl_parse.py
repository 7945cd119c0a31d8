"""The ``.ltl`` rule-file reader against spec §7 (syntax, substitution, atoms, abbreviations),
§4.13-§4.15 (the rtapp rules) and the kernel's rvgen grammar (tools/verification/rvgen).

Expected trees are written by hand from the rules "no precedence, binary operators nest to
the right, a unary operator takes the whole remainder".
"""

from __future__ import annotations

import pytest

from pyrv.models.automaton import ModelError
from pyrv.models.ltl import (
    MAX_ATOMS,
    Expr,
    abbreviate_atoms,
    available_ltl_models,
    load_ltl,
    load_ltl_model,
    parse_ltl,
)
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "ltl"


# -- a tiny constructor language for expected trees ---------------------------------------------


def N(name: str) -> Expr:
    return Expr("name", name=name)


def T() -> Expr:
    return Expr("true")


def F() -> Expr:
    return Expr("false")


def un(op: str, a: Expr) -> Expr:
    return Expr(op, (a,))


def bi(op: str, a: Expr, b: Expr) -> Expr:
    return Expr(op, (a, b))


def rule(text: str) -> Expr:
    return parse_ltl(text).rule


def error_of(data: str | bytes) -> ModelError:
    with pytest.raises(ModelError) as info:
        parse_ltl(data, source="t.ltl")
    return info.value


def where(err: ModelError) -> tuple[int | None, int | None]:
    return err.line, err.col


# -- precedence and nesting (spec §7) ---------------------------------------------------------


def test_binary_chains_nest_to_the_right():
    # §7: `A and B or C` = `A and (B or C)`
    assert rule("RULE = A and B or C") == bi("and", N("A"), bi("or", N("B"), N("C")))
    assert rule("RULE = A or B and C") == bi("or", N("A"), bi("and", N("B"), N("C")))
    assert rule("RULE = A imply B until C") == bi("imply", N("A"), bi("until", N("B"), N("C")))


def test_unary_takes_the_whole_remainder():
    # §7: `not A and B` = `not (A and B)`
    assert rule("RULE = not A and B") == un("not", bi("and", N("A"), N("B")))
    assert rule("RULE = always A imply B") == un("always", bi("imply", N("A"), N("B")))
    assert rule("RULE = A or not B and C") == bi("or", N("A"), un("not", bi("and", N("B"), N("C"))))
    assert rule("RULE = next eventually A") == un("next", un("eventually", N("A")))


def test_parentheses_group_a_left_operand():
    assert rule("RULE = (A and B) or C") == bi("or", bi("and", N("A"), N("B")), N("C"))
    assert rule("RULE = (not A) and B") == bi("and", un("not", N("A")), N("B"))
    assert rule("RULE = ((A))") == N("A")


def test_literals():
    assert rule("RULE = true until false") == bi("until", T(), F())


def test_structural_equality_ignores_positions():
    a = rule("RULE = A and (B or C)")
    b = rule("RULE =\n  A and\n  B or C")
    assert a == b
    assert (a.line, a.col) != (b.line, b.col)


def test_str_rereads_to_the_same_tree():
    for text in ("A and B or C", "not A and B", "(A until B) imply next C", "always (A or B)"):
        tree = rule(f"RULE = {text}")
        assert rule(f"RULE = {tree}") == tree


def test_wakeup_rule_parses_as_section_4_15_says():
    # §4.15: always((RT ∧ USER_THREAD) → (¬(WOKEN_BY_LOWER_PRIO ∨ WOKEN_BY_SOFTIRQ) ∨ ALLOWLIST))
    allow = bi("or", N("BLOCK_ON_RT_MUTEX"), N("FUTEX_LOCK_PI"))
    woken = un("not", bi("or", N("WOKEN_BY_LOWER_PRIO"), N("WOKEN_BY_SOFTIRQ")))
    expected = un(
        "always",
        bi("imply", bi("and", N("RT"), N("USER_THREAD")), bi("or", woken, allow)),
    )
    spec = load_ltl_model("wakeup")
    assert spec.rule == expected
    assert spec.atoms == (
        "BLOCK_ON_RT_MUTEX",
        "FUTEX_LOCK_PI",
        "RT",
        "USER_THREAD",
        "WOKEN_BY_LOWER_PRIO",
        "WOKEN_BY_SOFTIRQ",
    )
    # the kernel's generated wakeup.h names them so
    assert spec.abbreviations == ("bl_on_rt_mu", "fu_lo_pi", "rt", "us_th", "wo_lo_pr", "wo_so")


def test_pagefault_rule():
    spec = load_ltl_model("rtapp/pagefault")
    assert spec.name == "pagefault"
    # always (RT imply not PAGEFAULT): `not` takes only PAGEFAULT, as it is the remainder
    assert spec.rule == un("always", bi("imply", N("RT"), un("not", N("PAGEFAULT"))))
    assert spec.atoms == ("PAGEFAULT", "RT")
    assert spec.abbreviations == ("pa", "rt")


SLEEP_ABBREVIATIONS = {  # spec §4.14, in enum (alphabetical) order
    "ABORT_SLEEP": "ab_sl",
    "BLOCK_ON_RT_MUTEX": "bl_on_rt_mu",
    "CLOCK_NANOSLEEP": "cl_na",
    "FUTEX_LOCK_PI": "fu_lo_pi",
    "FUTEX_WAIT": "fu_wa",
    "KERNEL_THREAD": "ker_th",
    "KTHREAD_SHOULD_STOP": "kth_sh_st",
    "NANOSLEEP_CLOCK_MONOTONIC": "na_cl_mo",
    "NANOSLEEP_CLOCK_TAI": "na_cl_ta",
    "NANOSLEEP_TIMER_ABSTIME": "na_ti_ab",
    "RT": "rt",
    "SLEEP": "sl",
    "TASK_IS_MIGRATION": "ta_mi",
    "TASK_IS_RCU": "ta_rc",
    "WAKE": "wak",
    "WOKEN_BY_EQUAL_OR_HIGHER_PRIO": "wo_eq_hi_pr",
    "WOKEN_BY_HARDIRQ": "wo_ha",
    "WOKEN_BY_NMI": "wo_nm",
}


def test_sleep_atoms_and_every_abbreviation_of_section_4_14():
    spec = load_ltl_model("sleep")
    assert spec.atoms == tuple(SLEEP_ABBREVIATIONS)
    assert dict(zip(spec.atoms, spec.abbreviations, strict=True)) == SLEEP_ABBREVIATIONS
    assert spec.unused == ()


def test_sleep_rule_substitutes_recursively():
    spec = load_ltl_model("sleep")
    nanosleep = bi(
        "and",
        N("CLOCK_NANOSLEEP"),
        bi(
            "and",
            N("NANOSLEEP_TIMER_ABSTIME"),
            bi("or", N("NANOSLEEP_CLOCK_MONOTONIC"), N("NANOSLEEP_CLOCK_TAI")),
        ),
    )
    reason = bi("or", N("FUTEX_WAIT"), nanosleep)
    wake = bi(
        "or",
        N("WOKEN_BY_EQUAL_OR_HIGHER_PRIO"),
        bi(
            "or",
            N("WOKEN_BY_HARDIRQ"),
            bi("or", N("WOKEN_BY_NMI"), bi("or", N("ABORT_SLEEP"), N("KTHREAD_SHOULD_STOP"))),
        ),
    )
    friendly = bi(
        "and", bi("or", reason, N("KERNEL_THREAD")), bi("until", un("not", N("WAKE")), wake)
    )
    allow = bi(
        "or",
        N("BLOCK_ON_RT_MUTEX"),
        bi("or", N("FUTEX_LOCK_PI"), bi("or", N("TASK_IS_RCU"), N("TASK_IS_MIGRATION"))),
    )
    expected = un("always", bi("imply", bi("and", N("RT"), N("SLEEP")), bi("or", friendly, allow)))
    assert spec.rule == expected


# -- the abbreviation rule ------------------------------------------------------------------


def test_abbreviation_rule_examples():
    # shared prefix cut character by character: K | ERNEL_THREAD, K | THREAD_SHOULD_STOP
    assert abbreviate_atoms(["KERNEL_THREAD", "KTHREAD_SHOULD_STOP"]) == ("ker_th", "kth_sh_st")
    # only "W" is shared: w + ak, w + ok_nm (in sleep, WOKEN_BY_ is shared among three)
    assert abbreviate_atoms(["WAKE", "WOKEN_BY_NMI"]) == ("wak", "wok_nm")
    assert abbreviate_atoms(["WAKE", "WOKEN_BY_NMI", "WOKEN_BY_HARDIRQ"]) == (
        "wak",
        "wo_nm",
        "wo_ha",
    )
    # the words is, by, or, and are dropped (a trailing "_" survives from the shared part)
    assert abbreviate_atoms(["TASK_IS_X", "TASK_IS_Y"]) == ("ta_x", "ta_y")
    assert abbreviate_atoms(["A_OR_BB_AND_CCC_BY_DDDD"]) == ("a_bb_cc_dd",)
    assert abbreviate_atoms(["A"]) == ("a",)


# -- substitution and atoms -----------------------------------------------------------------


def test_undefined_names_are_atoms_and_unused_definitions_are_ignored():
    spec = parse_ltl("RULE = always (B imply X)\nX = C or D\nUNUSED = E and F\n")
    assert spec.atoms == ("B", "C", "D")
    assert spec.unused == ("UNUSED",)
    assert spec.rule == un("always", bi("imply", N("B"), bi("or", N("C"), N("D"))))


def test_definitions_may_come_in_any_order_and_nest():
    spec = parse_ltl("A = B until C\nRULE = not A\nB = next D\n")
    assert spec.rule == un("not", bi("until", un("next", N("D")), N("C")))
    assert spec.atoms == ("C", "D")


def test_rule_inside_a_formula_is_an_atom_as_in_rvgen():
    assert parse_ltl("RULE = always RULE").atoms == ("RULE",)


def test_a_definition_used_twice_is_substituted_twice():
    spec = parse_ltl("RULE = X and next X\nX = A or B\n")
    x = bi("or", N("A"), N("B"))
    assert spec.rule == bi("and", x, un("next", x))


def test_layout_freedom():
    # a definition may span lines, several may share a line, tokens need no blanks
    assert parse_ltl("RULE = A B = C").unused == ("B",)
    assert rule("RULE=notA") == un("not", N("A"))
    assert rule("RULE=(A)and(B)") == bi("and", N("A"), N("B"))
    assert rule("RULE = A\n\tand\r\n B\f") == bi("and", N("A"), N("B"))
    assert rule("# head\nRULE = A # the atom\n  or B # last line, no newline") == bi(
        "or", N("A"), N("B")
    )


def test_names_may_start_with_underscore_and_hold_digits():
    assert parse_ltl("RULE = _A1 or B_2").atoms == ("B_2", "_A1")


def test_bytes_input_and_file_loading(tmp_path):
    p = tmp_path / "mine.ltl"
    p.write_bytes(b"RULE = always A\n")
    spec = load_ltl(p)
    assert spec.name == "mine" and spec.source == str(p) and spec.atoms == ("A",)


def test_bundled_models():
    assert available_ltl_models() == ["pagefault", "sleep", "wakeup"]
    with pytest.raises(KeyError):
        load_ltl_model("wip")


# -- errors: file, line, column, reason -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "pos", "words"),
    [
        ("RULE = A xor B", (1, 10), "unknown token 'xor'"),
        ("RULE = always rt", (1, 15), "unknown token 'rt'"),
        ("RULE = A equivalent B", (1, 10), "unknown token 'equivalent'"),
        ("RULE = A & B", (1, 10), "unexpected '&'"),
        ("RULE = 1A", (1, 8), "unknown token '1A'"),
        ("RULE = A\v", (1, 9), "unexpected"),
        ("RULE = A\nX = (B or C\n", (2, 5), "'(' is never closed"),
        ("RULE = (A B = C)", (1, 11), "expected ')'"),
        ("RULE = A)", (1, 9), "')' without '('"),
        ("RULE = (A))", (1, 11), "')' without '('"),
        ("RULE = not )", (1, 12), "')'"),
        ("RULE = A and", (1, 13), "expected an operand after 'and', found end of file"),
        ("RULE = and B", (1, 8), "'and' needs a left operand"),
        ("RULE =", (1, 7), "expected an operand"),
        ("RULE A", (1, 6), "expected '=' after RULE"),
        ("= A", (1, 1), "expected a definition"),
        ("RULE = A\n\n  RULE = B\n", (3, 3), "duplicate definition of RULE (first at 1:1)"),
        ("RULE = X\nX = A\nX = B\n", (3, 1), "duplicate definition of X"),
        ("RULE = X\nX = A and Y\nY = not X\n", (3, 9), "definition cycle: X -> Y -> X"),
        ("RULE = X\nX = next X\n", (2, 10), "definition cycle: X -> X"),
        ("", (1, 1), "empty file"),
        ("# nothing but a comment\n", (2, 1), "empty file"),
    ],
)
def test_errors_name_line_and_column(text, pos, words):
    err = error_of(text)
    assert where(err) == pos, err
    assert words in err.reason
    assert err.source == "t.ltl"
    assert str(err).startswith(f"t.ltl:{pos[0]}:{pos[1]}: ")


def test_missing_rule_has_no_position():
    err = error_of("A = B\nC = D\n")
    assert where(err) == (None, None)
    assert err.reason == "no RULE definition (defined: A, C)"


def test_not_utf8_names_the_byte():
    err = error_of(b"RULE = A\n# caf\xe9\n")
    assert where(err) == (2, 6)
    assert "not UTF-8" in err.reason and "0xe9" in err.reason


def test_utf8_in_comments_is_fine():
    assert parse_ltl("# café ✓\nRULE = A".encode()).atoms == ("A",)


def test_a_cycle_only_among_unused_definitions_is_ignored_as_rvgen_would():
    assert parse_ltl("RULE = A\nX = Y\nY = X\n").unused == ("X", "Y")


def test_too_many_atoms():
    names = [f"A{i}" for i in range(MAX_ATOMS + 1)]
    err = error_of("\n\nRULE = " + " or ".join(names))
    assert where(err) == (3, 1)
    assert f"{MAX_ATOMS + 1} atoms, at most {MAX_ATOMS}" in err.reason
    assert len(parse_ltl("RULE = " + " or ".join(names[:MAX_ATOMS])).atoms) == MAX_ATOMS


def test_pathological_nesting_is_an_error_not_a_crash():
    err = error_of("RULE = " + "(" * 1000 + "A" + ")" * 1000)
    assert "nested deeper" in err.reason
    err = error_of("RULE = " + "not " * 5000 + "A")
    assert "nested deeper" in err.reason


@pytest.mark.parametrize("path", sorted(DATA.glob("bad_*.ltl")), ids=lambda p: p.name)
def test_bad_files_on_disk(path):
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    # first line: "# expect LINE:COL reason words"
    _, _, spec = first.partition("# expect ")
    pos, _, words = spec.partition(" ")
    line, col = (int(x) for x in pos.split(":"))
    with pytest.raises(ModelError) as info:
        load_ltl(path)
    assert (info.value.line, info.value.col) == (line, col)
    assert words.strip() in info.value.reason
    assert info.value.source == str(path)
