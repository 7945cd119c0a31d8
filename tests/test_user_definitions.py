"""A user's monitor definition is self-contained: what it means does not depend on whether its
name or its model file's name is that of a bundled monitor (docs/monitor-definitions.md).

Hybrid automata: a user's DOT model is read with its HA parts whatever the file is called, run
by the HA engine with the definition's parameters, ``--param`` and ``--hz``, and every
malformed constraint in it is refused with the file, line and column.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from pyrv.api import CheckOptions, check
from pyrv.cli.main import main
from pyrv.models.automaton import ModelError
from pyrv.monitors.catalogue import build_monitor, definitions_dir, load_monitor_definition
from pyrv.monitors.ha import EnvRecord, HAMonitor
from pyrv.monitors.hooks import DefinitionError
from pyrv.monitors.ltl import RTAPP
from pyrv.monitors.records import Record
from tests.conftest import RECORDED, REPO, need_shared

STALL_DOT = REPO / "pyrv" / "models" / "files" / "stall.dot"
STALL_TOML = definitions_dir() / "stall.toml"
TRACE = RECORDED / "tracedat" / "sched_v7_zstd.dat"


def user_stall(tmp_path: Path, dot_text: str, dot_name: str = "s.dot") -> Path:
    """stall.toml renamed ``mystall``, its model a file beside it."""
    (tmp_path / dot_name).write_text(dot_text)
    toml = STALL_TOML.read_text()
    toml = toml.replace('name = "stall"', 'name = "mystall"', 1)
    toml = toml.replace('model = "stall"', f'model = "{dot_name}"', 1)
    assert 'name = "mystall"' in toml and f'model = "{dot_name}"' in toml
    path = tmp_path / "t.toml"
    path.write_text(toml)
    return path


def verdicts(records: list[Record]) -> list[tuple[object, ...]]:
    """Everything a record says except the monitor's name."""
    return [
        (
            type(r).__name__,
            r.kind,
            r.id,
            r.context.ts,
            r.context.cpu,
            r.context.pid,
            r.state,
            r.event,
            r.next_state,
            getattr(r, "env", None),
        )
        for r in records
    ]


def run(trace: Path, monitor: str, definitions=(), **opts) -> list[Record]:
    out: list[Record] = []
    check(
        trace,
        CheckOptions(monitors=[monitor], definitions=definitions, on_record=out.append, **opts),
    )
    return out


@pytest.mark.parametrize("engine", ["auto", "reference"])
@pytest.mark.parametrize(("threshold", "hz"), [(0, None), (1, 1000)])
def test_a_renamed_stall_copy_gives_the_bundled_stalls_records(tmp_path, engine, threshold, hz):
    """The bundled stall's verdicts on this trace are checked against an independent
    computation of the waits in tests/test_stall.py; a byte-for-byte copy of its model under
    another file name, in a definition under another name, must give the same records."""
    trace = need_shared(TRACE)
    defn = user_stall(tmp_path, STALL_DOT.read_text())
    params = {"threshold_jiffies": threshold}
    bundled = run(trace, "stall", params=params, hz=hz, engine=engine, emit_events=True)
    mine = run(trace, "mystall", [defn], params=params, hz=hz, engine=engine, emit_events=True)
    assert any(isinstance(r, EnvRecord) for r in bundled), "the threshold makes some stalls"
    assert verdicts(mine) == verdicts(bundled)
    assert {r.monitor for r in mine} == {"mystall"}


def test_a_user_model_named_like_a_bundled_one_keeps_its_own_constraints(tmp_path):
    """A user's stall.dot whose invariant is a literal 2 jiffies is that model, not the bundled
    stall's: its verdicts are the bundled stall's at threshold_jiffies = 2, whatever the
    definition's threshold_jiffies says."""
    trace = need_shared(TRACE)
    text = STALL_DOT.read_text()
    edited = text.replace("clk < threshold_jiffies", "clk < 2j")
    assert edited != text
    defn = user_stall(tmp_path, edited, dot_name="stall.dot")
    bundled = run(trace, "stall", params={"threshold_jiffies": 2}, hz=1000)
    mine = run(trace, "mystall", [defn], hz=1000)
    assert any(isinstance(r, EnvRecord) for r in bundled)
    assert verdicts(mine) == verdicts(bundled)


def test_a_user_hybrid_model_is_read_with_its_hz_and_params(tmp_path):
    defn = load_monitor_definition(user_stall(tmp_path, STALL_DOT.read_text()))
    assert defn.is_hybrid
    mon = build_monitor(defn, hz=100, params={"threshold_jiffies": 7})
    assert isinstance(mon, HAMonitor)
    (inv,) = mon.hybrid.invariants.values()
    # 7 jiffies at HZ=100: TICK_NSEC is 10 ms
    assert (inv.bound, inv.bound_ns) == (7, 70_000_000)
    (default,) = build_monitor(defn).hybrid.invariants.values()
    assert default.bound == 1000  # the definition's params


#: (what to replace in stall.dot, by what, the text the error must point at in that line,
#: whether it points just after that text rather than at its start)
MALFORMED = [
    ('"sched_wakeup;reset(clk)"', '"sched_wakeup;clk<;reset("', "clk<", True),
    ('"sched_wakeup;reset(clk)"', '"sched_wakeup;@@@"', "@@@", False),
    ('"enqueued\\nclk < threshold_jiffies"', '"enqueued\\nbanana"', "banana", True),
    (
        '[ label = "sched_switch_in" ]',
        '[ label = "sched_switch_in;clk < nosuch" ]',
        "nosuch",
        False,
    ),
]


@pytest.mark.parametrize(("old", "new", "at", "after"), MALFORMED, ids=lambda v: str(v))
def test_a_malformed_constraint_is_an_error_at_its_position(tmp_path, old, new, at, after):
    text = STALL_DOT.read_text()
    assert text.count(old) == 1
    edited = text.replace(old, new)
    defn = user_stall(tmp_path, edited)
    lineno, line = next((i, ln) for i, ln in enumerate(edited.splitlines(), 1) if new in ln)
    col = line.index(new) + new.index(at) + 1 + (len(at) if after else 0)
    with pytest.raises(ModelError) as info:
        load_monitor_definition(defn)
    assert str(info.value).startswith(f"{tmp_path / 's.dot'}:{lineno}:{col}: ")


def test_the_cli_refuses_a_malformed_user_model(tmp_path, capsys):
    trace = need_shared(TRACE)
    defn = user_stall(tmp_path, STALL_DOT.read_text().replace("reset(clk)", "reset(", 1))
    assert main(["check", "-d", str(defn), "-m", "mystall", str(trace)]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"{re.escape(str(tmp_path / 's.dot'))}:\d+:\d+: malformed reset", err)
    assert "Traceback" not in err


#: a per-CPU model of the user's own: waking a task needs irqs off and a waked task of
#: normal priority (prio >= 100); a condition and a field read at the probe ([env])
GUARDED_DOT = """digraph state_automaton {
	{node [shape = plaintext, style=invis, label=""] "__init_any"};
	{node [shape = doublecircle] "any"};
	"__init_any" -> "any";
	"any" [label = "any"];
	"any" -> "any" [ label = "sched_waking;irqs == 1 && waked_prio >= 100" ];
}
"""
GUARDED_TOML = """[monitor]
name = "wkguard"
type = "per_cpu"
model = "g.dot"

[[hooks]]
tracepoint = "sched:sched_waking"
entry = "start_run"
event = "sched_waking"

[env]
irqs = "common_irqs_off == 1"
waked_prio = "prio"
"""


def waking(ts: float, cpu: int, flags: str, prio: int) -> str:
    payload = f"comm=b pid=11 prio={prio} target_cpu={cpu:03d}"
    return f"{'a':>16}-10      [{cpu:03d}] {flags} {ts:12.6f}: sched_waking: {payload}\n"


def test_a_user_hybrid_model_with_value_variables_reads_them_from_env(tmp_path):
    """§3.5: a guard over values the monitor reads at the probe. A failed guard is an
    error_env record with every variable (by name, §5), and resets the CPU's instance, which
    the next start_run event starts again; a passing one is an ordinary event."""
    (tmp_path / "g.dot").write_text(GUARDED_DOT)
    (tmp_path / "w.toml").write_text(GUARDED_TOML)
    trace = tmp_path / "t.txt"
    trace.write_text(
        "# tracer: nop\n#\n"
        + waking(1.0, 0, "d..2.", 120)  # irqs off, normal prio: allowed
        + waking(1.1, 0, "...2.", 120)  # irqs on
        + waking(1.2, 0, "d..2.", 50)  # an RT task woken
        + waking(1.3, 1, "d..2.", 139)
    )
    out = run(trace, "wkguard", [tmp_path / "w.toml"], emit_events=True)
    assert [(r.kind, r.context.ts, r.context.cpu) for r in out] == [
        ("event", 1_000_000_000, 0),
        ("error_env", 1_100_000_000, 0),
        ("error_env", 1_200_000_000, 0),
        ("event", 1_300_000_000, 1),
    ]
    assert [r.payload() for r in out if isinstance(r, EnvRecord)] == [
        "event sched_waking not expected in the state any with env irqs=0,waked_prio=120",
        "event sched_waking not expected in the state any with env irqs=1,waked_prio=50",
    ]
    assert {r.monitor for r in out} == {"wkguard"}


# --------------------------------------------------------------------------- LTL definitions

RTAPP_TRACE = RECORDED / "rtapp" / "rt-pipe-faults.dat"


@pytest.mark.parametrize("name", ["pagefault", "sleep", "wakeup"])
def test_the_bundled_rtapp_files_carry_the_kernels_init_and_fetch_tables(name):
    """The tables are in the definition files themselves (so that a copy carries them), and
    they are the kernel's ltl_atoms_init/ltl_atoms_fetch (pyrv.monitors.ltl.RTAPP, read from
    kernel/trace/rv/monitors/<name>/<name>.c)."""
    path = definitions_dir() / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    assert "init" in data and "fetch" in data
    defn = load_monitor_definition(path)
    assert defn.ltl_init == RTAPP[name].init
    assert defn.ltl_fetch == dict(RTAPP[name].fetch)


def renamed(tmp_path: Path, name: str, new: str, edit=lambda text: text) -> Path:
    text = (definitions_dir() / f"{name}.toml").read_text()
    assert text.count(f'name = "{name}"') == 1
    path = tmp_path / f"{new}.toml"
    path.write_text(edit(text.replace(f'name = "{name}"', f'name = "{new}"')))
    return path


def unnamed(records: list) -> list:
    return [dataclasses.replace(r, monitor="-") for r in records]


@pytest.mark.parametrize("name", ["pagefault", "wakeup"])
def test_a_renamed_copy_of_an_rtapp_definition_runs_as_the_original(tmp_path, name):
    trace = need_shared(RTAPP_TRACE)
    copy = renamed(tmp_path, name, "mine")
    bundled = run(trace, name, emit_events=True)
    mine = run(trace, "mine", [copy], emit_events=True)
    assert any(r.kind == "event" for r in bundled), "the original monitor starts on this trace"
    assert unnamed(mine) == unnamed(bundled)
    assert {r.monitor for r in mine} == {"mine"}


def test_pagefault_finds_its_violation_under_another_name(tmp_path):
    """rt-pipe-faults: the RT process allocates buffers (page faults while real-time)."""
    trace = need_shared(RTAPP_TRACE)
    mine = run(trace, "mypf", [renamed(tmp_path, "pagefault", "mypf")])
    assert [r.kind for r in mine if r.kind == "error"] and all(
        r.comm.startswith("python") for r in mine
    )


#: pagefault's two hooks of exceptions:page_fault_*, which pulse PAGEFAULT
FAULT_HOOKS = re.compile(r'(?ms)^\[\[hooks\]\]\ntracepoint = "exceptions:.*?^atom = "PAGEFAULT"\n')


def without(table: str):
    """Drop a ``[table]`` (up to the next header or the end) from a TOML text."""
    return lambda text: re.sub(rf"(?ms)^\[{table}\]\n.*?(?=^\[|\Z)", "", text)


@pytest.mark.parametrize(
    ("name", "edit", "atoms"),
    [
        ("pagefault", without("fetch"), "RT"),  # only fetched
        ("wakeup", without("fetch"), "RT"),
        # PAGEFAULT is pulsed by hooks: without them (and [init]) nothing gives it a value
        ("pagefault", lambda t: without("init")(FAULT_HOOKS.sub("", t)), "PAGEFAULT"),
    ],
)
def test_an_atom_that_never_gets_a_value_is_an_error(tmp_path, name, edit, atoms):
    """Spec §3.4: an LTL monitor attempts a start only when no atom is unknown; an atom nothing
    sets stays unknown in every task, so the monitor would silently never start."""
    path = renamed(tmp_path, name, "mine", edit)
    with pytest.raises(DefinitionError) as info:
        load_monitor_definition(path)
    assert info.value.source == str(path)
    assert f"atom(s) {atoms} of " in info.value.reason and "never" in info.value.reason


def test_an_atom_set_only_for_kernel_threads_has_a_value(tmp_path):
    """An [init] row of one kind of task is a value for some tasks: not refused."""

    def edit(text: str) -> str:
        text = text.replace("kernel_thread = { USER_THREAD = false }\n", "")
        return text.replace("user_thread = { USER_THREAD = true }\n", "")

    with pytest.raises(DefinitionError, match=r"atom\(s\) USER_THREAD of"):
        load_monitor_definition(renamed(tmp_path, "wakeup", "mine", edit))

    def only_kernel(text: str) -> str:
        return text.replace("user_thread = { USER_THREAD = true }\n", "")

    defn = load_monitor_definition(renamed(tmp_path, "wakeup", "mine2", only_kernel))
    assert defn.ltl_init.kernel_thread == {"USER_THREAD": False}


#: a plain per-task monitor of the bundled wwnr model, placed by ``{extra}``
PLACED = """[monitor]
name = "{name}"
type = "per_task"
model = "wwnr"
{extra}
[[hooks]]
tracepoint = "sched:sched_switch"
task = "prev_pid"
entry = "start"
event = "switch_out"
"""


def placed(tmp_path: Path, name: str, extra: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(PLACED.format(name=name, extra=extra))
    return path


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ('container = "wwnr"', "container 'wwnr' is a monitor, not a container"),
        ('container = "nosuchcontainer"', "container 'nosuchcontainer' is not a container"),
        ('container = "bad"', "container 'bad' is not a container"),  # its own name
        ("container = 5", "container must be a non-empty string"),
    ],
)
@pytest.mark.parametrize("command", ["list", "check"])
def test_a_container_that_is_not_one_is_an_error_at_its_line(
    tmp_path, extra, reason, command, capsys
):
    """docs/monitor-definitions.md, Containers: only the kernel's containers exist; a plain
    monitor or an unknown name as container is refused at the file and line of the key, by
    every command (list crashed on 'already registered'; check blamed the trace)."""
    path = placed(tmp_path, "bad", extra)
    trace = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    args = (
        ["list", "-d", str(path)] if command == "list" else ["check", "-d", str(path), str(trace)]
    )
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}:5: " in err and reason in err and str(trace) not in err


def test_a_definition_cannot_take_a_containers_name(tmp_path, capsys):
    """A definition replaces a built-in monitor of its name, but not a container: naming one
    is refused at the line of ``name`` (it was silently ignored: -m sched ran the kernel's)."""
    path = placed(tmp_path, "sched", "")
    for args in (["list", "-d", str(path)], ["check", "-d", str(path), "-m", "sched"]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"{path}:2: monitor sched: sched is a built-in container" in err


def test_a_definition_joins_a_builtin_container(tmp_path, capsys):
    """``container = "sched"`` makes it a child of the kernel's sched, listed under it."""
    path = placed(tmp_path, "kid", 'container = "sched"')
    assert main(["list", "sched", "-d", str(path)]) == 0
    assert re.search(r"^kid\s", capsys.readouterr().out, re.M)


def test_build_rv_checks_definitions_made_without_the_loader(tmp_path):
    """The API path (MonitorDef objects handed to build_rv) is refused the same way."""
    from pyrv.monitors.catalogue import build_rv

    good = load_monitor_definition(placed(tmp_path, "kid", 'container = "sched"'))
    bad = dataclasses.replace(good, container="wwnr")
    with pytest.raises(DefinitionError, match=r"kid\.toml:5: .*is a monitor, not a container"):
        build_rv([bad])
    with pytest.raises(DefinitionError, match="sched is a built-in container"):
        build_rv([dataclasses.replace(good, name="sched", container=None)])
