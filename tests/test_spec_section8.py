r"""Spec §8 ("Fixes and corner cases -> regression tests"), line by line.

Every commit title quoted in the §8 table, and every item of its paragraph "Further behaviours
visible in code without a known commit title", is listed below with what covers it: a test of
this file (a bare ``test_...`` name, whose docstring quotes the title), test node ids elsewhere
in tests/ (``tests/...::...``), or ``none:`` and why no test applies.
:func:`test_every_section8_line_is_covered` checks this table against the spec's and that every
node id named here is collected.

"rv: Add Runtime Verification (RV) interface"
    tests/test_registry.py::test_listdir_and_nested_paths
    tests/test_registry.py::test_modes_as_in_6_12
    tests/test_conformance_interface.py::test_transcript_unit
"rv: Fix addition on an uninitialized variable 'run'"
    test_rv_mon_exit_status_follows_the_result
"tools/rv: Fix curr_reactor uninitialized variable"
    tests/test_registry.py::test_reactor_unregister_while_in_use
"tools/rv: Fix Makefile compiler options for clang"
    none: build only (the rv tool's Makefile)
"rv: Fix a typo"
    none: cosmetic (comment and kernel-doc text)
"rv: Fix out-of-bound memory access in rv_is_container_monitor()"
    tests/test_registry.py::test_is_container_last_entry
    tests/test_registry.py::test_is_container_last_child
    tests/test_registry.py::test_last_monitor_enable_disable
"rv: Fix missing unlock on double nested monitors return path"
    tests/test_registry.py::test_nested_parent_einval_and_interface_keeps_working
"rv: Fix missing mutex unlock in rv_register_monitor()"
    tests/test_registry.py::test_directory_creation_failure_enomem_no_deadlock
"rv: Fix boot failure when kernel lockdown is active"
    tests/test_registry.py::test_directory_creation_failure_enomem_no_deadlock
"rv: Fix wrong type cast in enabled_monitors_next()"
    tests/test_registry.py::test_enabled_monitors_first_middle_last_container
"rv: Fully convert enabled_monitors to use list_head as iterator"
    tests/test_registry.py::test_enabled_monitors_first_middle_last_container
    tests/test_registry.py::test_container_flag_stays_when_children_disabled
"rv: Fix wrong type cast in monitors_show()"
    test_every_listing_file_of_the_catalogue
"… in reactors_show() and monitor_reactor_show()"
    test_every_listing_file_of_the_catalogue
"rv: Remove trailing whitespace from tracepoint string"
    tests/test_da_engine.py::test_final_state_suffix_and_no_trailing_space
"rv: Use strings in da monitors tracepoints"
    test_long_state_and_event_names_are_printed_whole
"rv: Retry when da monitor detects race conditions"
    none: a race of two CPUs on one instance's cmpxchg; pyrv handles one event at a time
    none: (the live engine feeds under the registry lock), so rv_retries_error cannot occur
"rv: Return init error when registering monitors"
    test_registration_failure_propagates
"rv: Add da_handle_start_run_event_ to per-task monitors"
    tests/test_da_engine.py::test_start_run_event_starts_and_processes
"rv: Allow to configure the number of per-task monitor"
    tests/test_registry.py::test_slots_lowest_free_and_ebusy
    tests/test_registry.py::test_per_task_slots_range
    tests/test_registry.py::test_third_standalone_per_task_ebusy_via_enable_file
    tests/test_catalogue.py::test_sched_container_with_default_slots_fails_with_ebusy_and_rolls_back
    tests/test_rtapp.py::test_rtapp_registered_as_in_the_kernel
"rv: Remove rv_reactor's reference counter"
    tests/test_registry.py::test_reactor_unregister_while_in_use
"rv: Remove struct rv_monitor::reacting"
    tests/test_registry.py::test_react_dispatch
"rv: Let the reactors take care of buffers"
    tests/test_registry.py::test_react_dispatch
    tests/test_reactors.py::test_printk_writes_exact_text
"rv/ltl: Do not execute the Buchi automaton twice on start condition"
    tests/test_ltl_monitor.py::test_the_starting_update_is_not_validated
"verification/rvgen: Support the 'next' operator"
    tests/test_ltl_parse.py::test_unary_takes_the_whole_remainder
    tests/test_buchi.py::test_true_false_and_next_false
"Generate each variable definition only once"
    none: generator output (C code rvgen writes; pyrv generates none)
"Do not generate unused variables"
    none: generator output (C code rvgen writes; pyrv generates none)
"tools/dot2c: Fix generated files going over 100 column limit"
    none: generator formatting
"tools/rv: Do not skip idle in trace"
    test_rv_mon_s_shows_the_idle_tasks_events
"tools/rv: Stop gracefully also on SIGTERM"
    tests/test_live.py::test_mon_stopped_by_a_signal_leaves_no_instance
    tests/test_tracefs.py::test_signal_removes_the_instance
    tests/test_rvfs.py::TestMount::test_signal_disables_everything_and_unmounts
"rv: Support systems with time64-only syscalls"
    test_sleep_hooks_the_syscalls_x86_64_has
"rv: Make rtapp/pagefault monitor depends on CONFIG_MMU"
    none: kernel build configuration (pyrv runs on x86_64 traces, which always have an MMU)
"rv: Add explicit lockdep context for reactors"
    test_a_reaction_does_not_wait_for_the_interface_lock
    tests/test_hybrid.py::test_timer_expiry_fires_event_none_at_the_deadline
"rv: Fix up for clone3() API change"
    test_task_newtask_clone_flags_are_64_bit
"sched: Adapt sched tracepoints for RV task model"
    tests/test_formats.py::test_catalogue_matches_recorded_formats
    tests/test_sched_monitors.py::test_bare_tracepoints_are_named_when_missing
"rv: Replace tss and sncid monitors with more complete sts"
    tests/test_catalogue.py::test_available_monitors_in_the_kernels_order
    tests/test_models.py::test_every_spec_model_is_bundled_and_nothing_else
"rv: Add nrp and sssw per-task monitors"
    tests/test_sched_monitors.py::test_sssw
    tests/test_sched_monitors.py::test_nrp_ignores_the_lazy_bit
"rv: Add opid per-cpu monitor"
    tests/test_sched_monitors.py::test_opid_da_form_starts_only_outside_hardirq
"rv: Adjust monitor dependencies"
    tests/test_catalogue.py::test_descriptions_and_types_are_the_kernels
"rv: Unify DA event handling functions across monitor types"
    tests/test_hybrid.py::test_start_and_handle_entries_as_in_the_da_engine
    tests/test_per_object.py::test_start_run_creates_storage_and_runs_the_event
"rv: Add Hybrid Automata monitor type"
    tests/test_hybrid.py::test_guard_failure_reacts_writes_error_env_and_no_event_record
    tests/test_hybrid.py::test_invariant_checked_before_the_guard_with_the_events_name
    tests/test_hybrid.py::test_timer_expiry_fires_event_none_at_the_deadline
    tests/test_hybrid.py::test_leaving_cancels_and_reentering_rearms_from_the_last_reset
"verification/rvgen: Allow spaces in and events strings"
    tests/test_hybrid.py::test_guards_have_c_precedence_and_parentheses
"… Add support for Hybrid Automata"
    tests/test_hybrid.py::test_watchdog_model_is_read_as_written
    tests/test_hybrid.py::test_stall_model_is_spec_4_16
"rv: Add sample hybrid monitors stall"
    tests/test_stall.py::test_definition_is_spec_4_16
    tests/test_stall.py::test_a_short_wait_passes_and_a_long_one_stalls
"rv: Convert the opid monitor to a hybrid automaton"
    tests/test_sched_monitors.py::test_opid_hybrid_form
    tests/test_models.py::test_opid_hybrid_guards_are_the_specs
"sched: Export hidden tracepoints to modules"
    tests/test_sched_monitors.py::test_bare_tracepoints_are_named_when_missing
"sched: Add deadline tracepoints"
    tests/test_nomiss.py::test_bare_deadline_tracepoints_are_declared
"rv: Add support for per-object monitors in DA/HA"
    tests/test_per_object.py::test_start_event_creates_storage_then_starts_and_drops_the_event
    tests/test_per_object.py::test_destroy_resets_the_instance_and_frees_the_storage
    tests/test_per_object.py::test_disable_frees_every_storage_and_reenable_starts_empty
    tests/test_per_object.py::test_ha_per_object_env_error_and_destroy_cancels_the_timer
"verification/rvgen: Add support for per-obj monitors"
    tests/test_per_object.py::test_per_obj_definition_with_object_targets_and_storage_rows
"rv: Add deadline monitors"
    tests/test_nomiss.py::test_model_is_spec_4_18
    tests/test_nomiss.py::test_registered_as_in_the_kernel
    tests/test_nomiss.py::test_a_missed_deadline_is_a_timer_error
"rv: Add dl_server specific monitors"
    tests/test_nomiss.py::test_servers_negative_ids_idle_and_their_own_deadline
"sched: Add task enqueue/dequeue trace points"
    none: unmerged patch; pyrv ships the merged snroc (§4.5), see the next line
"rv: Add enqueue/dequeue to snroc monitor"
    tests/test_models.py::test_bundled_model_equals_spec_table
    tests/test_sched_monitors.py::test_snroc
"tools/rv: Fix substring match bug in monitor name search"
    test_rv_mon_nr_is_not_wwnr
"… when listing container monitors"
    tests/test_cli.py::test_list_is_rv_list_layout
"tools/rv: Ensure monitor name and desc are NUL-terminated"
    test_rv_list_prints_long_names_and_descriptions_whole
"tools/rv: Fix cleanup after failed trace setup"
    test_failed_trace_setup_removes_the_instance
"verification/rvgen: Fix options shared among commands"
    none: rvgen's command line (pyrv has no generator)
"verification/rvgen: Fix ltl2k writing True as a literal"
    tests/test_buchi.py::test_true_false_and_next_false
"rv: Add KUnit tests for some DA/HA monitors"
    none: an oracle corpus, not a behaviour; the KUnit sources are not in shared/
"… some LTL monitors"
    none: an oracle corpus, not a behaviour; the KUnit sources are not in shared/
"tools/rv: Add selftests"
    tests/test_catalogue.py::test_sched_container_enables_children_in_order_with_enough_slots
"verification/rvgen: Add selftests"
    none: golden generator outputs (pyrv generates no C)
"per-task enable/disable also covers the idle task of every present CPU"
    tests/test_da_engine.py::test_idle_tasks_of_different_cpus_are_distinct_instances
    tests/test_ltl_monitor.py::test_idle_tasks_of_each_cpu_are_separate_instances
"per-task disable waits for in-flight handlers before freeing the slot"
    test_per_task_disable_waits_for_in_flight_handlers
"the container reactor-swap quirk (§1.3)"
    tests/test_registry.py::test_swap_container_quirk_not_enabled
    tests/test_registry.py::test_swap_container_quirk_enabled
"`foo:wip` accepted by `enabled_monitors`"
    tests/test_registry.py::test_parent_prefix_ignored
"3-byte reads (`"1\n\0"`) from enable/monitoring_on/reacting_on"
    tests/test_registry.py::test_three_byte_reads
"""

from __future__ import annotations

import errno
import io
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

import pyrv.live
from pyrv.api import CheckResult, MonitorSummary
from pyrv.cli.main import main
from pyrv.cli.mon import RvToolPrinter
from pyrv.models.automaton import Automaton
from pyrv.monitors.catalogue import build_rv, kernel_definitions, load_monitor_definition
from pyrv.monitors.da import DAMonitor, Entry, MonitorType
from pyrv.monitors.facts import TaskFacts
from pyrv.monitors.hooks import DefinitionError
from pyrv.monitors.monitor import Monitor
from pyrv.monitors.reactors import Reactor
from pyrv.monitors.records import Context, Record
from pyrv.monitors.registry import RV
from pyrv.sources.events import TraceEvent
from pyrv.sources.ftrace_text import iter_text_trace
from pyrv.sources.tracefs import TraceInstance
from tests.conftest import REPO, SHARED, need_shared

SPEC = SHARED / "spec" / "kernel-rv.md"
WAKEUP_DOT = REPO / "examples" / "wakeup-latency.dot"
#: the reactors file of a monitor that kept the default (§1.2: every reactor, current in [])
DEFAULT_REACTORS = b"[nop]\nprintk\npanic\n"


# -- the table ----------------------------------------------------------------------------------


def table() -> dict[str, list[str]]:
    """This module's table: title -> its targets (node ids, local tests, none)."""
    out: dict[str, list[str]] = {}
    title = None
    for line in (__doc__ or "").splitlines():
        if line.startswith('"') and line.endswith('"'):
            title = line[1:-1]
            out[title] = []
        elif title is not None and line.startswith("    ") and line.strip():
            out[title].append(line.strip())
    return out


def spec_titles(text: str) -> list[str]:
    """The commit titles of §8's table (every quoted title of a row's first column) and the
    items of its paragraph of further behaviours."""
    section = text.split("## 8.", 1)[1].split("\n## ", 1)[0]
    titles: list[str] = []
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith(("| commit", "|---")):
            first = line.split(" | ", 1)[0]
            titles += re.findall(r'"([^"]+)"', first)
        if line.startswith("Further behaviours"):
            items = line.split("): ", 1)[1].rstrip(".")
            titles += [i.strip() for i in items.split("; ")]
    return titles


def collected(paths: set[str]) -> set[str]:
    """Node ids pytest collects in ``paths`` (a collection only: nothing runs)."""
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-o", "addopts=", "-p"]
        + ["no:cacheprovider", *sorted(paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {ln.strip() for ln in res.stdout.splitlines() if "::" in ln}


def is_collected(node: str, ids: set[str]) -> bool:
    """A node id, or a parametrised test's function id (all its cases)."""
    return node in ids or any(i.startswith(node + "[") for i in ids)


def test_every_section8_line_is_covered():
    """Every §8 title and further-behaviour item has an entry; every entry names a test of
    this file quoting the title, collected node ids, or a reason why none applies."""
    titles = spec_titles(need_shared(SPEC).read_text())
    assert len(titles) > 60  # the table was found and parsed
    mapping = table()
    assert sorted(set(titles) - set(mapping)) == []
    assert sorted(set(mapping) - set(titles)) == []  # no stale entry either
    here = sys.modules[__name__]
    nodes: set[str] = set()
    for title, targets in mapping.items():
        assert targets, title
        for target in targets:
            if target.startswith("tests/"):
                nodes.add(target)
            elif target.startswith("test_"):
                doc = getattr(here, target).__doc__ or ""
                assert f'"{title}"' in " ".join(doc.split()), (title, target)
            else:
                kind, _, reason = target.partition(": ")
                assert kind == "none" and reason, (title, target)
    ids = collected({n.split("::", 1)[0] for n in nodes})
    assert sorted(n for n in nodes if not is_collected(n, ids)) == []


# -- rv tool emulation: pyrv mon / pyrv list ------------------------------------------------


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)


def fake_result(violations: int) -> CheckResult:
    return CheckResult(
        "the running kernel", [MonitorSummary("wwnr", "per_task", 9, 9, 2, violations)]
    )


def test_rv_mon_exit_status_follows_the_result(as_root, monkeypatch, capsys):
    """§8 "rv: Fix addition on an uninitialized variable 'run'": the exit status of
    ``rv mon`` is a function of the run, the same every time: 0 without violations, 1 with,
    and a failed run is an error, never a success."""
    runs: list[int] = []

    def run_live(opts: object) -> CheckResult:
        return fake_result(runs[-1])

    monkeypatch.setattr(pyrv.live, "run_live", run_live)
    for violations, status in ((0, 0), (2, 1), (0, 0), (2, 1)):
        runs.append(violations)
        assert main(["mon", "wwnr"]) == status

    def broken(opts: object) -> CheckResult:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(pyrv.live, "run_live", broken)
    assert main(["mon", "wwnr"]) == 2
    assert "Device or resource busy" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["nr", "sched:nr", "ww", "wwn"])
def test_rv_mon_nr_is_not_wwnr(as_root, monkeypatch, capsys, name):
    """§8 "tools/rv: Fix substring match bug in monitor name search": ``rv mon nr`` is
    "monitor nr does not exist", not wwnr (whole names only)."""

    def run_live(opts: object) -> CheckResult:
        raise AssertionError(f"{name} was taken for a monitor")

    monkeypatch.setattr(pyrv.live, "run_live", run_live)
    assert main(["mon", name]) == 2
    assert f"monitor {name} does not exist" in capsys.readouterr().err


def rv_tool_event(comm: str, pid: int, cpu: int, ident: int, rec: Record) -> str:
    """in_kernel.c's event line: ``%16s-%-8d [%.3d] event %8llu %24s x %-24s -> %-24s Y|N``."""
    final = "Y" if rec.final else "N"
    # the C format, spelled as in_kernel.c spells it
    return "%16s-%-8d [%.3d] event %8d %24s x %-24s -> %-24s %s\n" % (  # noqa: UP031
        comm,
        pid,
        cpu,
        ident,
        rec.state,
        rec.event,
        rec.next_state,
        final,
    )


def test_rv_mon_s_shows_the_idle_tasks_events():
    """§8 "tools/rv: Do not skip idle in trace": with ``-s`` the events of pid 0 (each CPU's
    idle task) are shown; without it only rv's own events (its pid, as task or as id) go."""
    me = os.getpid()

    def rec(pid: int, ident: int) -> Record:
        ctx = Context(ts=1_000, cpu=1, pid=pid, comm="<idle>" if pid == 0 else "t")
        return Record("event", "wwnr", ident, "not_running", "switch_in", "running", False, ctx)

    idle, own, own_id, other = rec(0, 0), rec(me, 7), rec(7, me), rec(7, 7)
    out = io.StringIO()
    with_s = RvToolPrinter(out, has_id=True, container=False, show_self=True)
    for r in (idle, own, own_id):
        with_s.record(r)
    assert out.getvalue() == (
        rv_tool_event("<idle>", 0, 1, 0, idle)
        + rv_tool_event("t", me, 1, 7, own)
        + rv_tool_event("t", 7, 1, me, own_id)
    )
    out = io.StringIO()
    without = RvToolPrinter(out, has_id=True, container=False, show_self=False)
    for r in (idle, own, own_id, other):
        without.record(r)
    assert out.getvalue() == rv_tool_event("<idle>", 0, 1, 0, idle) + rv_tool_event(
        "t", 7, 1, 7, other
    )


def user_definition(tmp_path: Path, name: str, description: str, container: str = "") -> Path:
    """A DA monitor definition (the example's model and hooks) under another name."""
    (tmp_path / WAKEUP_DOT.name).write_text(WAKEUP_DOT.read_text())
    text = (REPO / "examples" / "wakeup-latency.toml").read_text()
    head = f'name = "{name}"\ndescription = "{description}"\n'
    if container:
        head += f'container = "{container}"\n'
    text = re.sub(r"^name = .*\ndescription = .*\n", head, text, count=1, flags=re.M)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def test_rv_list_prints_long_names_and_descriptions_whole(tmp_path, capsys):
    """§8 "tools/rv: Ensure monitor name and desc are NUL-terminated": the longest name the
    kernel accepts (31 bytes) and the longest description its desc file gives (snprintf of
    ``"%s\\n"`` into 256 bytes: 255 characters, the newline cut off) are printed whole."""
    top, kid = "t" * 31, "k" * 31
    defs = [
        user_definition(tmp_path, top, "d" * 300),
        user_definition(tmp_path, kid, "e" * 254, container="sched"),
    ]
    assert main(["list", *(a for d in defs for a in ("-d", str(d)))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"{top}  {'d' * 255} [OFF]" in lines  # %-32s of 31 characters: one pad blank
    assert f" - {kid} {'e' * 254} [OFF]" in lines  # %-29s does not cut a longer name
    assert main(["list", "sched", "-d", str(defs[1])]) == 0
    assert f"{kid}  {'e' * 254} [OFF]" in capsys.readouterr().out.splitlines()


def test_failed_trace_setup_removes_the_instance(tracefs):
    """§8 "tools/rv: Fix cleanup after failed trace setup": when setting up the trace fails
    half-way (here the kernel refuses the trace clock: EINVAL), the instance is removed."""
    inst = TraceInstance(tracefs, ["sched:sched_switch"], clock="no_such_clock", tag="spec8")
    with pytest.raises(OSError) as err:
        inst.__enter__()
    assert err.value.errno == errno.EINVAL
    assert not inst.path.exists()


# -- registration and the listing files ---------------------------------------------------------


@pytest.mark.parametrize("name", ["enable", "desc", "reactors"])
def test_registration_failure_propagates(tmp_path, capsys, name):
    """§8 "rv: Return init error when registering monitors": a monitor whose registration
    fails (a child named like a file of its container's directory: tracefs cannot create it,
    ENOMEM) is an error of the whole start-up, not a monitor silently missing."""
    path = user_definition(tmp_path, name, "a child named like a file", container="sched")
    with pytest.raises(DefinitionError) as err:
        build_rv([load_monitor_definition(path)])
    assert err.value.errno == errno.ENOMEM and err.value.source == str(path)
    for command in (["list"], ["check", "-m", name]):
        assert main([*command, "-d", str(path)]) == 2
        err_text = capsys.readouterr().err
        assert "Traceback" not in err_text and f"cannot create directory '{name}'" in err_text
        assert f": {path}: monitor {name}: the RV registry refuses it" in err_text


def test_every_listing_file_of_the_catalogue():
    """§8 "rv: Fix wrong type cast in monitors_show()", "… in reactors_show() and
    monitor_reactor_show()": after the struct merge every listing file still lists what it
    should, for top-level, container and nested monitors alike (§1.2)."""
    rv = build_rv()
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\n"
    names = rv.read("available_monitors").decode().split()
    assert len(names) == len(rv.monitors()) == 18  # §1.1's full build
    for shown in names:
        d = "monitors/" + shown.replace(":", "/")
        assert rv.read(f"{d}/reactors") == DEFAULT_REACTORS, shown
        assert rv.read(f"{d}/enable") == b"0\n\0", shown
        assert rv.read(f"{d}/desc").endswith(b"\n\0"), shown
    # the last entry of the list (deadline:nomiss) and a middle one (sched:sco)
    rv.write("monitors/deadline/nomiss/reactors", b"printk\n")
    rv.write("monitors/sched/sco/reactors", b"panic\n")
    assert rv.read("monitors/deadline/nomiss/reactors") == b"nop\n[printk]\npanic\n"
    assert rv.read("monitors/sched/sco/reactors") == b"nop\nprintk\n[panic]\n"
    assert rv.read("monitors/deadline/reactors") == DEFAULT_REACTORS
    rv.write("enabled_monitors", b"nomiss\n")
    rv.write("enabled_monitors", b"sco\n")
    assert rv.read("enabled_monitors") == b"sched:sco\ndeadline:nomiss\n"


# -- monitor engines ----------------------------------------------------------------------------


def test_long_state_and_event_names_are_printed_whole():
    """§8 "rv: Use strings in da monitors tracepoints": state and event names longer than the
    old fixed 32-byte (24 in v6.0) arrays are neither cut nor over-read, in events, errors
    and reactions."""
    s0, s1 = "a_state_name_much_longer_than_32_bytes", "b_state_name_much_longer_than_32_bytes"
    ev, bad = "an_event_name_well_beyond_the_old_arrays", "unexpected_event_with_a_long_name"
    model = Automaton.from_table("long", s0, {(s0, ev): s1, (s0, bad): s0}, finals=[s0])
    out: list[Record] = []
    reactions: list[str] = []
    mon = DAMonitor("long", "long names", model, MonitorType.PER_TASK, sink=out.append)
    mon.enabled = True
    mon.react = reactions.append  # type: ignore[method-assign]
    ctx = Context(ts=5_000, cpu=0, pid=9, comm="t")
    mon.handle(Entry.START_RUN, 9, model.events.index(bad), ctx)
    mon.handle(Entry.HANDLE, 9, model.events.index(ev), ctx)
    mon.handle(Entry.HANDLE, 9, model.events.index(bad), ctx)
    assert [r.payload() for r in out] == [
        f"9: {s0} x {bad} -> {s0} (final)",
        f"9: {s0} x {ev} -> {s1}",
        f"9: event {bad} not expected in the state {s1}",
    ]
    assert reactions == [f"rv: monitor long does not allow event {bad} on state {s1}\n"]


def test_task_newtask_clone_flags_are_64_bit():
    """§8 "rv: Fix up for clone3() API change": task_newtask's clone_flags is a u64
    (printed ``%llx``); flags above bit 31 (clone3's CLONE_INTO_CGROUP, 0x200000000) are read
    whole, and CLONE_UNTRACED (0x00800000) still tells a kernel thread."""
    text = "".join(
        f"{'t1':>16}-1       [000] .....     1.00000{i}: task_newtask: pid={pid} comm=c{pid} "
        f"clone_flags={flags:x} oom_score_adj=0\n"
        for i, (pid, flags) in enumerate(((200, 0x200800F00), (300, 0x201200011)))
    )
    events = [e for e in iter_text_trace(io.StringIO("# tracer: nop\n" + text))]
    assert [e.fields["clone_flags"] for e in events] == [0x200800F00, 0x201200011]
    facts = TaskFacts()
    for e in events:
        facts.learn(e)  # type: ignore[arg-type]
    assert (facts.fact(200, "kthread"), facts.fact(300, "kthread")) == (True, False)


def test_sleep_hooks_the_syscalls_x86_64_has():
    """§8 "rv: Support systems with time64-only syscalls": the sleep monitor hooks only the
    syscalls the architecture has. pyrv reads x86_64 traces: clock_nanosleep is 230 and futex
    202 there (syscall_64.tbl), and x86_64 has no ``*_time64`` variants (403-423 are unused)."""
    hooks = [h for h in kernel_definitions()["sleep"].hooks if h.tracepoint.endswith("sys_enter")]
    ids = {int(n) for h in hooks for n in re.findall(r"\bid == (\d+)", h.when_text or "")}
    assert ids == {230, 202}


# -- reactors and concurrency --------------------------------------------------------------------


class Blocking(Monitor):
    """A monitor whose enable callback waits: the interface lock stays held meanwhile."""

    def __init__(self, name: str) -> None:
        super().__init__(name, "blocks in enable")
        self.entered, self.release = threading.Event(), threading.Event()

    def enable(self) -> None:
        self.entered.set()
        assert self.release.wait(30)


def test_a_reaction_does_not_wait_for_the_interface_lock():
    """§8 "rv: Add explicit lockdep context for reactors": a reaction may come from any
    context; it takes no lock the control interface holds (here: while a write to
    ``enable`` is in the middle of a monitor's enable callback, a reaction still goes out)."""
    rv = RV()
    got: list[str] = []
    rv.register_reactor(Reactor("collect", "collect", got.append))
    slow, other = Blocking("slow"), Monitor("other", "reacts")
    rv.register_monitor(slow)
    rv.register_monitor(other)
    rv.write("monitors/other/reactors", b"collect")
    writer = threading.Thread(target=rv.write, args=("monitors/slow/enable", b"1"))
    writer.start()
    try:
        assert slow.entered.wait(30)
        reacting = threading.Thread(target=other.react, args=("rv: any context\n",))
        reacting.start()
        reacting.join(30)
        assert not reacting.is_alive() and got == ["rv: any context\n"]
    finally:
        slow.release.set()
        writer.join(30)
    assert slow.enabled


class FakeInstance:
    """Stands in for pyrv's tracefs instance: the events come from the test."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __enter__(self) -> FakeInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeStream:
    """Stands in for the live event stream of the instance."""

    def __init__(self, items: list[TraceEvent]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[TraceEvent]:
        yield from self.items


def switch(ts: int, prev: int, state: str, nxt: int) -> TraceEvent:
    fields = {"prev_comm": f"t{prev}", "prev_pid": prev, "prev_prio": 120, "prev_state": state}
    fields |= {"next_comm": f"t{nxt}", "next_pid": nxt, "next_prio": 120}
    return TraceEvent(ts, 0, prev, f"t{prev}", "sched_switch", fields, "sched")  # type: ignore[arg-type]


def in_write(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside :meth:`RV.write` now (blocked on the interface lock)."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code is RV.write.__code__:
            return True
        frame = frame.f_back
    return False


def test_per_task_disable_waits_for_in_flight_handlers(monkeypatch):
    """§8 further behaviour "per-task disable waits for in-flight handlers before freeing the
    slot": on the live engine, disabling wwnr while one of its handlers runs (here: writing
    the error of a wakeup of a running task) returns only after that handler finished, and
    the slot is free once it has returned."""
    rv = build_rv()
    rv.write("monitors/wwnr/enable", b"1")
    wwnr = rv.find_monitor("wwnr")
    assert rv.task_slots_in_use() == [0]
    wake = {"comm": "t5", "pid": 5, "prio": 120, "target_cpu": 0}
    items = [
        switch(1_000, 5, "S", 6),  # start: 5 sleeps (not_running)
        switch(2_000, 6, "S", 5),  # not_running x switch_in -> running
        TraceEvent(3_000, 1, 7, "t7", "sched_wakeup", dict(wake), "sched"),  # error
    ]
    order: list[str] = []
    inflight, finish = threading.Event(), threading.Event()

    def on_record(rec: object) -> None:
        order.append("handler")
        inflight.set()
        assert finish.wait(30)
        order.append("handler done")

    monkeypatch.setattr(pyrv.live, "TraceInstance", FakeInstance)
    monkeypatch.setattr(pyrv.live, "LiveTrace", lambda inst, stop, poll: FakeStream(items))
    engine = pyrv.live.LiveEngine(rv, on_record=on_record)
    kernel = SimpleNamespace(missing_events=lambda tracepoints: [])  # has every event
    session = (kernel, [wwnr], ["sched:sched_switch", "sched:sched_wakeup"])
    feeder = threading.Thread(target=engine._session, args=session)
    feeder.start()
    disabler = threading.Thread(target=rv.write, args=("monitors/wwnr/enable", b"0"))
    try:
        assert inflight.wait(30)
        disabler.start()
        while disabler.is_alive() and not in_write(disabler):
            pass
        order.append("disable asked" if disabler.is_alive() else "disable returned early")
        finish.set()
        disabler.join(30)
        order.append("disable returned")
    finally:
        finish.set()
        feeder.join(30)
    assert order == ["handler", "disable asked", "handler done", "disable returned"]
    assert rv.task_slots_in_use() == [] and not wwnr.enabled
    assert engine.events == 3
