"""The pyrv command: verdict lines, summaries, JSON, reactors, exit codes and errors."""

from __future__ import annotations

import json
import lzma
import re
import subprocess
import sys

import pytest

from pyrv.cli.main import main
from tests.conftest import CONFORMANCE, RECORDED, REPO, need_shared

START = "after enabling monitors"


@pytest.fixture(scope="module")
def pipes():
    return need_shared(CONFORMANCE / "traces" / "trace-pipes" / "trace.txt.xz")


def kernel_error_lines(path, monitor):
    """The kernel's own error_<monitor> lines after the start marker, read independently."""
    started, out = False, []
    with lzma.open(path, "rt") as f:
        for line in f:
            started = started or START in line
            if started and f" error_{monitor}: " in line:
                out.append(line.split(f"error_{monitor}: ", 1)[1].rstrip("\n"))
    return out


def test_default_run_verifies_the_bundled_trace(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "sched_trace.txt: 4094 events" in out  # the README of the bundled trace says 4094
    assert re.search(r"^\s+wwnr\s+per_task\s+\d+ events handled", out, re.M)


def test_violations_are_printed_as_kernel_trace_lines(pipes, capsys):
    assert main(["check", "-m", "wwnr", "--start-marker", START, str(pipes)]) == 1
    out = capsys.readouterr().out
    ours = [ln.split("error_wwnr: ", 1)[1] for ln in out.splitlines() if " error_wwnr: " in ln]
    assert ours == kernel_error_lines(pipes, "wwnr")
    first = next(ln for ln in out.splitlines() if " error_wwnr: " in ln)
    assert re.fullmatch(
        r"\s{14}sh-45\s+\[001\]\s+2\.911734: error_wwnr: 51: event wakeup "
        r"not expected in the state running",
        first,
    )


def test_json_lines(pipes, capsys):
    assert main(["check", "-m", "wwnr", "--json", "--start-marker", START, str(pipes)]) == 1
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    errors = [o for o in objs if o["type"] == "error"]
    assert len(errors) == len(kernel_error_lines(pipes, "wwnr"))
    assert errors[0]["monitor"] == "wwnr" and errors[0]["id"] == 51
    assert errors[0]["state"] == "running" and errors[0]["event"] == "wakeup"
    (summary,) = [o for o in objs if o["type"] == "summary"]
    assert summary["monitors"][0]["violations"] == len(errors)


def test_events_option_prints_transitions(pipes, capsys):
    main(["check", "-m", "wwnr", "--events", "--start-marker", START, str(pipes)])
    out = capsys.readouterr().out
    assert " event_wwnr: 48: not_running x wakeup -> not_running (final)" in out


def test_printk_reactor_writes_the_kernels_message(pipes, capsys):
    assert main(["check", "-m", "wwnr", "-r", "printk", "--start-marker", START, str(pipes)]) == 1
    err = capsys.readouterr().err.splitlines()
    msg = "rv: monitor wwnr does not allow event wakeup on state running"
    assert err.count(msg) == len(kernel_error_lines(pipes, "wwnr"))


def test_panic_reactor_stops_with_its_own_status(pipes, capsys):
    assert main(["check", "-m", "wwnr", "-r", "panic", "--start-marker", START, str(pipes)]) == 3
    captured = capsys.readouterr()
    assert "rv: monitor wwnr does not allow event wakeup on state running" in captured.err
    assert captured.out.count("error_wwnr") == 0  # DA reacts before it writes error_<mon>


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "nosuch"], "unknown monitor 'nosuch'"),
        (["-m", "wip"], "preemptirq:preempt_disable, preemptirq:preempt_enable"),
        (["-m", "sco"], "bare tracepoints"),
        (["-m", "wwnr", "-r", "bogus"], "unknown reactor 'bogus'"),
        (["/nonexistent/trace"], "No such file"),
    ],
)
def test_usage_errors_exit_2(args, message, capsys):
    assert main(["check", *args]) == 2
    assert message in capsys.readouterr().err


def test_bad_line_names_file_and_line(tmp_path, capsys):
    src = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt").read_text().splitlines()
    src.insert(40, "this is not a trace line")
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(src) + "\n")
    assert main(["check", str(bad)]) == 2
    assert f"{bad}:41:" in capsys.readouterr().err
    assert main(["check", "--skip-bad-lines", str(bad)]) == 0
    out = capsys.readouterr().out
    assert "1 bad lines skipped" in out and "skipped line 41" in out


def test_user_monitor_from_a_definition_file(capsys):
    trace = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    d = REPO / "examples" / "wakeup-latency.toml"
    assert main(["check", "-d", str(d), "-m", "wkrun", str(trace)]) in (0, 1)
    assert re.search(
        r"^\s+wkrun\s+per_task\s+[1-9]\d* events handled", capsys.readouterr().out, re.M
    )


def test_list_is_rv_list_layout(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # rv list: name in a 32-column field, description, [ON]/[OFF]; children " - " + 29 columns
    assert lines[0] == "wip".ljust(32) + " wakeup in preemptive per-cpu testing monitor. [OFF]"
    assert lines[3] == " - " + "opid".ljust(29) + (
        " operations with preemption and irq disabled. [OFF]"
    )
    assert main(["list", "sched"]) == 0
    children = capsys.readouterr().out.splitlines()
    assert len(children) == 8 and children[-1].startswith("sco".ljust(32) + " scheduling")
    assert main(["list", "s"]) == 0  # a prefix of a container is not a container
    assert capsys.readouterr().out.strip() == "-- No monitor found in container s --"


def test_python_dash_m():
    res = subprocess.run(
        [sys.executable, "-m", "pyrv", "list"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert res.returncode == 0 and res.stdout.startswith("wip ")
