"""Hook tables: loading, validation errors with file and line, and conditions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pyrv.models.automaton import Automaton
from pyrv.monitors.conditions import ConditionError, compile_condition
from pyrv.monitors.da import Entry, MonitorType
from pyrv.monitors.hooks import DefinitionError, parse_definition
from tests.conftest import REPO, WWNR_TABLE

SWITCH = ("prev_comm", "prev_pid", "prev_prio", "prev_state", "next_comm", "next_pid", "next_prio")
CATALOGUE = {
    "sched:sched_switch": SWITCH,
    "sched:sched_wakeup": ("comm", "pid", "prio", "target_cpu"),
}
WWNR = Automaton.from_table("wwnr", "not_running", WWNR_TABLE)


def fields_of(tp):
    key = tp if ":" in tp else f"sched:{tp}"
    return (key, CATALOGUE[key]) if key in CATALOGUE else None


def parse(text: str):
    return parse_definition(text, "mon.toml", Path("."), fields_of, lambda name: WWNR)


HEAD = """\
[monitor]
name = "wwnr"
description = "d"
type = "per_task"
model = "wwnr"
"""


def hook(**kv: str) -> str:
    body = "\n".join(f'{k} = "{v}"' for k, v in kv.items())
    return f"\n[[hooks]]\n{body}\n"


def test_valid_definition():
    d = parse(
        HEAD
        + hook(
            tracepoint="sched:sched_switch",
            task="prev_pid",
            when="prev_state == 'S'",
            entry="start",
            event="switch_out",
        )
        + hook(tracepoint="sched:sched_wakeup", task="pid", event="wakeup")
    )
    assert d.name == "wwnr" and d.type is MonitorType.PER_TASK
    h0, h1 = d.hooks
    assert h0.entry is Entry.START and h0.model_event_name == "switch_out"
    assert h0.when({"prev_state": "S"}) and not h0.when({"prev_state": "R+"})
    assert h1.entry is Entry.HANDLE and h1.when is None
    assert d.tracepoints() == ["sched:sched_switch", "sched:sched_wakeup"]


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        (
            hook(tracepoint="sched:sched_switch", task="prev_pidd", event="switch_out"),
            9,
            "'prev_pidd' is neither 'current' nor a field",
        ),
        (
            hook(
                tracepoint="sched:sched_switch",
                task="prev_pid",
                when="prev_sate == 'S'",
                event="switch_out",
            ),
            10,
            "unknown field 'prev_sate'",
        ),
        (
            hook(tracepoint="sched:sched_swich", event="switch_out"),
            8,
            "unknown tracepoint 'sched:sched_swich'",
        ),
        (
            hook(tracepoint="sched:sched_switch", task="prev_pid", event="switch_off"),
            10,
            "model 'wwnr' has no event 'switch_off'",
        ),
        (
            hook(tracepoint="sched:sched_switch", entry="begin", event="switch_in"),
            9,
            "unknown entry 'begin'",
        ),
        (
            hook(tracepoint="sched:sched_switch", cpu="current", event="switch_in"),
            9,
            "a per_task monitor takes no 'cpu' target",
        ),
        (
            hook(tracepoint="sched:sched_switch", when="prev_state ==", event="switch_in"),
            9,
            "syntax error",
        ),
        (
            hook(tracepoint="sched:sched_switch", when="__import__('os')", event="switch_in"),
            9,
            "Call is not allowed",
        ),
    ],
)
def test_bad_hooks_are_rejected_with_line_and_reason(extra, line, message):
    with pytest.raises(DefinitionError) as err:
        parse(HEAD + extra)
    assert message in str(err.value)
    assert err.value.line == line
    assert str(err.value).startswith(f"mon.toml:{line}: ")


def test_condition_column_is_reported():
    with pytest.raises(ConditionError) as err:
        compile_condition("prev_state == 'S' and bogus > 1", SWITCH)
    assert err.value.col == 23


def test_toml_syntax_error_names_the_line():
    with pytest.raises(DefinitionError) as err:
        parse(HEAD + "\n[[hooks]]\ntracepoint = \n")
    assert err.value.line == 8 and "not valid TOML" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "missing [monitor] table"),
        (HEAD.replace('"per_task"', '"per_thread"'), "monitor type 'per_thread'"),
        (HEAD.replace('name = "wwnr"', 'name = "' + "x" * 32 + '"'), "at most 31 characters"),
        (HEAD + 'colour = "red"\n', "unknown key(s) colour"),
    ],
)
def test_bad_monitor_tables(text, message):
    with pytest.raises(DefinitionError, match="mon.toml") as err:
        parse(text)
    assert message in str(err.value)


def test_declared_event_fields_are_usable():
    d = parse(
        HEAD
        + '\n[events."rvraw:wwnr_switch"]\nfields = { prev_state = "int" }\n'
        + hook(
            tracepoint="rvraw:wwnr_switch",
            task="current",
            when="prev_state == 0x1",
            entry="start",
            event="switch_out",
        )
    )
    (h,) = d.hooks
    assert h.tracepoint == "rvraw:wwnr_switch" and h.event_name == "wwnr_switch"
    assert h.when({"prev_state": 1}) and not h.when({"prev_state": 0x2001})


def test_conditions_language():
    f = compile_condition("prev_state in ['S', 'D'] and not (prev_pid == 0)", SWITCH)
    assert f({"prev_state": "D", "prev_pid": 5})
    assert not f({"prev_state": "D", "prev_pid": 0})
    assert not f({"prev_state": "R", "prev_pid": 5})
    bits = compile_condition("prev_pid & 0x100", SWITCH)
    assert bits({"prev_pid": 0x101}) and not bits({"prev_pid": 0x1})
    missing = compile_condition("prev_state == 'S'", SWITCH)
    assert missing({}) is False  # a field the event lacks: false, never an exception


def test_condition_literal_of_the_wrong_type_is_rejected():
    typed = {"prev_state": str, "prev_pid": int}
    with pytest.raises(ConditionError, match="'prev_state' is text; 1 can never equal it"):
        compile_condition("prev_state == 1", typed)
    with pytest.raises(ConditionError, match="'prev_pid' is a number"):
        compile_condition("prev_pid in [1, 'x']", typed)
    assert compile_condition("prev_state in ['S', 'D'] and prev_pid > 0", typed)


def test_a_target_field_must_hold_a_pid_or_a_cpu():
    with pytest.raises(DefinitionError, match="'prev_prio': that field does not hold a pid"):
        parse(HEAD + hook(tracepoint="sched:sched_switch", task="prev_prio", event="switch_in"))
    cpu_head = HEAD.replace('"per_task"', '"per_cpu"')
    with pytest.raises(DefinitionError, match="does not hold a CPU number"):
        parse(cpu_head + hook(tracepoint="sched:sched_wakeup", cpu="pid", event="wakeup"))
    d = parse(cpu_head + hook(tracepoint="sched:sched_wakeup", cpu="target_cpu", event="wakeup"))
    assert d.hooks[0].target == "target_cpu"


def test_user_dot_with_two_edges_for_one_state_and_event_is_rejected(tmp_path):
    from pyrv.models.automaton import ModelError
    from pyrv.monitors.catalogue import load_monitor_definition

    (tmp_path / "m.dot").write_text(
        "digraph state_automaton {\n"
        '\t{node [shape = plaintext, style=invis, label=""] "__init_a"};\n'
        '\t{node [shape = doublecircle] "a"};\n'
        '\t{node [shape = circle] "b"};\n'
        '\t"__init_a" -> "a";\n'
        '\t"a" -> "b" [ label = "go" ];\n'
        '\t"a" -> "a" [ label = "go" ];\n'
        '\t"b" -> "a" [ label = "back" ];\n'
        "}\n"
    )
    (tmp_path / "m.toml").write_text('[monitor]\nname = "m"\ntype = "per_cpu"\nmodel = "m.dot"\n')
    with pytest.raises(ModelError) as err:
        load_monitor_definition(tmp_path / "m.toml")
    assert err.value.line == 7
    assert "redefined" in str(err.value) and "the later edge wins" not in str(err.value)
    (tmp_path / "n.toml").write_text(
        '[monitor]\nname = "n"\ntype = "per_cpu"\nmodel = "nosuch.dot"\n'
    )
    with pytest.raises(
        DefinitionError, match=r"n.toml:4: model file .*nosuch.dot.* does not exist"
    ):
        load_monitor_definition(tmp_path / "n.toml")


def test_env_rows_compute_a_hybrid_models_values_from_each_event():
    """[env]: a condition gives 1 or 0, an integer field its value (ha_get_env's U64_MAX when
    the event lacks it); the probe-context names make the monitor need the irq-info column."""
    d = parse(
        HEAD
        + hook(tracepoint="sched:sched_wakeup", task="pid", event="wakeup")
        + '\n[env]\nirq_off = "common_irqs_off == 1"\nprio = "prio"\n'
    )
    assert set(d.env) == {"irq_off", "prio"} and d.env_line == 12
    assert d.env["irq_off"].get({"common_irqs_off": 1}) == 1
    assert d.env["irq_off"].get({"common_irqs_off": 0}) == 0
    assert d.env["prio"].get({"prio": 98}) == 98 and d.env["prio"].get({}) == 2**64 - 1
    assert d.uses_context() and d.env["irq_off"].uses_context and not d.env["prio"].uses_context


@pytest.mark.parametrize(
    "env, line, message",
    [
        ('x = "nofield == 1"', 13, "unknown field 'nofield'"),
        ('x = "common_comm"', 13, "field 'common_comm' is text"),
        ("x = 1", 13, "a condition or a field name"),
        ('x = "pid +"', 13, "syntax error"),
    ],
)
def test_bad_env_rows_name_the_line(env, line, message):
    with pytest.raises(DefinitionError) as info:
        parse(
            HEAD
            + hook(tracepoint="sched:sched_wakeup", task="pid", event="wakeup")
            + f"\n[env]\n{env}\n"
        )
    assert info.value.line == line and message in info.value.reason


def test_env_rows_must_be_the_models_value_variables(tmp_path):
    """Built against its hybrid model, a definition must give each value variable the model's
    guards read, and no other name: otherwise the first guard would read nothing."""
    from pyrv.monitors.catalogue import build_monitor, load_monitor_definition

    opid = (REPO / "pyrv" / "monitors" / "defs" / "opid.toml").read_text()
    for edit, message in [
        (opid.replace('preempt_off = "common_preempt_depth > 0"\n', ""), "reads preempt_off"),
        (opid + 'stray = "common_nmi == 1"\n', "[env] stray: not a value variable"),
    ]:
        path = tmp_path / "opid.toml"
        path.write_text(edit)
        with pytest.raises(DefinitionError, match=re.escape(message)):
            build_monitor(load_monitor_definition(path))


@pytest.mark.parametrize(
    ("condition", "reads"),
    [
        ("prev_state == 'R+'", True),
        ("prev_state == 'R'", True),  # the plugin's R is also a preempted switch
        ("prev_state not in ['R+']", True),
        ("prev_pid > 0 and prev_state in ['R+', 'D']", True),
        ("'+' in prev_state", True),
        ("prev_state == next_comm", True),  # compared with another field: assumed to
        ("prev_state in ['R', 'R+']", False),
        ("prev_state == 'R' or prev_state == 'R+'", False),
        ("prev_pid > 0 and prev_state not in ['R', 'R+']", False),
        ("prev_state == 'S'", False),
        ("prev_pid == 1", False),
    ],
)
def test_a_condition_reads_the_preempt_plus_when_it_tells_r_plus_from_r(condition, reads):
    """trace-formats.md 3.5: trace-cmd report's plugin prints R for R+; a hook whose condition
    gives another answer for R than for R+ depends on the '+'."""
    hook = SWITCH_HOOK.format(when=condition)
    assert parse(MONITOR + hook).reads_preempt() is reads


MONITOR = '[monitor]\nname = "m"\ntype = "per_task"\nmodel = "wwnr"\n'
SWITCH_HOOK = (
    '[[hooks]]\ntracepoint = "sched:sched_switch"\ntask = "prev_pid"\nwhen = "{when}"\n'
    'entry = "handle"\nevent = "switch_out"\n'
)


@pytest.mark.parametrize(
    ("condition", "col"),
    [
        ("(" * 3000 + "prev_pid == 1" + ")" * 3000, 33),  # Python's parser: "syntax error" at 201
        ("(" * 33 + "prev_pid == 1" + ")" * 33, 33),
        ("not " * 5000 + "prev_pid == 1", 129),  # RecursionError in Python's parser
        ("-" * 5000 + "1 == prev_pid", 33),
        ("prev_pid" + " & prev_pid" * 5000 + " == 1", 362),
        ("[" * 40 + "1" + "]" * 40 + " == prev_pid", 33),
    ],
)
def test_a_condition_nested_too_deeply_says_so_at_its_column(condition, col):
    """Deep nesting is refused as such, with the limit and the column of the 33rd level,
    never as a syntax error nor with RecursionError."""
    with pytest.raises(ConditionError) as err:
        compile_condition(condition, SWITCH)
    assert err.value.col == col
    assert "nested too deeply: more than 32 levels" in str(err.value)
    assert "syntax error" not in str(err.value)


@pytest.mark.parametrize(
    "condition",
    [
        "(" * 32 + "prev_pid == 1" + ")" * 32,
        "not " * 32 + "prev_pid == 1",
        " and ".join(["not (prev_pid == 1)"] * 5000),  # long, not deep
        " == ".join(["prev_pid"] * 3000),
        "prev_comm == '" + "(" * 500 + "'",  # brackets in a string are text
    ],
)
def test_long_or_moderately_nested_conditions_compile(condition):
    compile_condition(condition, SWITCH)({"prev_pid": 1, "prev_comm": "x"})


def test_a_deep_condition_in_a_definition_names_file_line_and_column():
    deep = "(" * 3000 + "prev_pid == 1" + ")" * 3000
    with pytest.raises(DefinitionError) as err:
        parse(MONITOR + SWITCH_HOOK.format(when=deep))
    text = str(err.value)
    assert text.startswith("mon.toml:8: hook #1: condition '((((")
    assert "column 33: nested too deeply" in text and len(text) < 300


@pytest.mark.parametrize(
    "value", ["[" * 3000 + "]" * 3000, "{ b = " * 3000 + "1" + " }" * 3000, "[" * 33 + "]" * 33]
)
def test_toml_nested_too_deeply_is_a_definition_error_at_its_line(value):
    """tomllib recurses per level and raised RecursionError, not TOMLDecodeError."""
    with pytest.raises(DefinitionError) as err:
        parse(MONITOR + "params = { a = 1 }\n\n[extra]\nx = " + value + "\n")
    assert err.value.line == 8 and "nested more than 32 deep" in str(err.value)


def test_toml_brackets_inside_strings_and_comments_do_not_count():
    hook = SWITCH_HOOK.format(when="prev_comm != '" + "[" * 40 + "'")
    parse(MONITOR + "# " + "{" * 40 + "\n" + hook)
