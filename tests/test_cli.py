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


# --- what a user can get wrong, and corrupt input: never a silent pass ----------------------


def sched_lines():
    return need_shared(RECORDED / "ftrace-text" / "sched_trace.txt").read_text().splitlines()


def write(tmp_path, name, lines):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_time_going_backwards_is_an_error(tmp_path, capsys):
    body = [ln for ln in sched_lines() if not ln.startswith("#")]
    twice = write(tmp_path, "twice.txt", body + body)  # two captures concatenated
    assert main(["check", str(twice)]) == 2
    assert f"{twice}:{len(body) + 1}: time goes backwards" in capsys.readouterr().err


def test_duplicated_switch_lines_are_named_as_corruption(tmp_path, capsys):
    dup = []
    for ln in sched_lines():
        dup.append(ln)
        if " sched_switch: " in ln:
            dup.append(ln)
    path = write(tmp_path, "dup.txt", dup)
    main(["check", "-m", "wwnr", str(path)])
    assert "repeats the one at line" in capsys.readouterr().out


def test_compressed_input_without_a_suffix(tmp_path, capsys):
    import gzip

    src = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    noext = tmp_path / "noext"
    noext.write_bytes(gzip.compress(src.read_bytes()))
    assert main(["check", "-m", "wwnr", str(noext)]) == 0
    assert re.search(r"wwnr\s+per_task\s+2849 events handled", capsys.readouterr().out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start-marker", "NO SUCH MARKER"], "never appears: the monitors were never enabled"),
        (["--start", "99999"], "ends before the start time"),
    ],
)
def test_monitors_never_enabled_is_an_error(args, message, capsys):
    trace = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    assert main(["check", *args, str(trace)]) == 2
    assert message in capsys.readouterr().err


def test_empty_trace_is_an_error(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["check", str(empty)]) == 2
    assert "no events in the trace" in capsys.readouterr().err


def test_stdin_with_a_monitor_whose_events_never_came(monkeypatch, capsys):
    import io

    trace = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(trace.read_bytes())))
    assert main(["check", "-m", "wip", "-"]) == 2
    assert "preemptirq:preempt_disable" in capsys.readouterr().err


def test_a_skipped_line_is_a_gap_not_a_silent_loss(tmp_path, pipes, capsys):
    with lzma.open(pipes, "rt") as f:
        lines = f.read().splitlines()
    # corrupt the sched_wakeup whose verdict is the kernel's first error_wwnr (pid 51)
    i = next(
        k
        for k, ln in enumerate(lines)
        if "sched_wakeup: comm=" in ln and " pid=51 " in ln and "2.911734" in ln
    )
    lines[i] = lines[i][:60] + " ##garbage##"
    path = write(tmp_path, "bad.txt", lines)
    assert (
        main(["check", "-m", "wwnr", "--skip-bad-lines", "--start-marker", START, str(path)]) == 1
    )
    out = capsys.readouterr().out
    assert f"unparsable line {i + 1} skipped" in out
    assert "2.911734: error_wwnr" not in out


def test_panic_says_where(pipes, capsys):
    assert main(["check", "-m", "wwnr", "-r", "panic", "--start-marker", START, str(pipes)]) == 3
    err = capsys.readouterr().err
    assert "reacting to:" in err and "2.911734: error_wwnr: 51:" in err


def test_unknown_reactor_lists_the_available_ones(capsys):
    assert main(["check", "-m", "wwnr", "-r", "bogus"]) == 2
    assert "unknown reactor 'bogus' (available: nop, printk, panic)" in capsys.readouterr().err


def test_list_shows_a_user_definition(capsys):
    assert main(["list", "-d", str(REPO / "examples" / "wakeup-latency.toml")]) == 0
    assert "wkrun".ljust(32) + " a woken task runs before it is woken again. [OFF]" in (
        capsys.readouterr().out.splitlines()
    )


def test_closed_output_pipe_is_not_an_error():
    trace = need_shared(CONFORMANCE / "traces" / "trace-pipes" / "trace.txt.xz")
    proc = subprocess.run(
        f"{sys.executable} -m pyrv check --events -m wwnr {trace} | head -1",
        shell=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.stderr == "" and len(proc.stdout.splitlines()) == 1


def test_list_says_which_events_an_input_provides(capsys):
    trace = need_shared(RECORDED / "rtapp" / "rt-pipe-faults.trace")
    assert main(["list", "--events", str(trace)]) == 0
    out = {
        ln.split()[0] if not ln.startswith(" - ") else ln.split()[1]: ln
        for ln in capsys.readouterr().out.splitlines()
    }
    assert out["wwnr"].endswith("[OFF] [events: yes]")
    assert out["pagefault"].endswith("[OFF] [events: yes]")
    assert out["wip"].endswith(
        "[events missing: preemptirq:preempt_disable, preemptirq:preempt_enable]"
    )
    assert out["sleep"].endswith("[events missing: sched:sched_set_state_tp (bare)]")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "stall", "--param", "nope=1"], "--param nope: no monitor has this parameter"),
        (["-m", "stall", "--param", "threshold_jiffies=-5"], "are not negative"),
        (["-m", "stall", "--hz", "0"], "--hz 0: the kernel's HZ is a positive number"),
        # include/linux/jiffies.h builds only 12 <= HZ < 12288; past 2*10^9 a tick is 0 ns
        (["-m", "stall", "--hz", "11"], "--hz 11: the kernel's HZ is a positive number from 12"),
        (["-m", "stall", "--hz", "12288"], "to 12287"),
        (["-m", "stall", "--hz", "3000000000"], "--hz 3000000000"),
    ],
)
def test_bad_parameters_are_usage_errors(args, message, capsys):
    assert main(["check", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("threshold_jiffies=abc", "expected NAME=INTEGER"),
        ("threshold_jiffies", "expected NAME=INTEGER"),
        ("=5", "expected NAME=INTEGER"),
        (f"threshold_jiffies={2**64}", "larger than an unsigned long"),
        ("threshold_jiffies=--5", "expected NAME=INTEGER"),
        ("threshold_jiffies=\u00b2", "expected NAME=INTEGER"),  # a digit int() refuses
    ],
)
def test_malformed_parameters_exit_2_not_1(value, message, capsys):
    """Exit 1 means violations: a malformed --param is a usage error (2), never that."""
    with pytest.raises(SystemExit) as info:
        main(["check", "-m", "stall", "--param", value])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_a_trace_no_monitor_can_read_is_not_a_pass(capsys):
    trace = need_shared(RECORDED.parent / "public" / "trappy_raw_trace.dat")
    assert main(["check", str(trace)]) == 2
    assert "no monitor has its events in this trace" in capsys.readouterr().err


def test_without_the_irq_info_column_the_default_leaves_out_context_monitors(tmp_path, capsys):
    """The rtapp trace with its irq-info column cut out: wakeup's hooks read the probe context
    (hardirq, softirq), which such a trace lacks, so the default selection runs the other
    monitors (pagefault, wwnr, stall) instead of refusing; asked for by name, wakeup is
    refused with the reason."""
    src = need_shared(RECORDED / "rtapp" / "rt-pipe-faults.trace").read_text()
    lines = [
        ln if ln.startswith("#") else re.sub(r"(\] )\S{5} ", r"\1", ln, count=1)
        for ln in src.splitlines(keepends=True)
    ]
    path = tmp_path / "noirqinfo.txt"
    path.write_text("".join(lines))
    assert main(["check", str(path)]) in (0, 1)
    out = capsys.readouterr().out
    ran = {ln.split()[0] for ln in out.splitlines() if ln.startswith("   ")}
    assert {"pagefault", "wwnr", "stall"} <= ran and "wakeup" not in ran
    assert main(["check", "-m", "wakeup", str(path)]) == 2
    assert "wakeup need the probe context" in capsys.readouterr().err


def test_a_raw_text_without_formats_says_to_pass_them(capsys):
    path = need_shared(RECORDED / "ftrace-text" / "opt_raw.txt")
    assert main(["check", str(path)]) == 2
    assert "written with the 'raw' option" in capsys.readouterr().err


def test_a_container_lists_its_missing_bare_tracepoints_and_says_once_what_they_are(capsys):
    assert main(["check", "-m", "sched"]) == 2
    err = capsys.readouterr().err
    assert err.count("bare tracepoints, which tracefs does not expose") == 1
    assert "monitor sco needs events missing" in err and "sched_entry_tp (bare)" in err


@pytest.mark.parametrize("clock", ["uptime", "counter"])
def test_a_jiffy_clock_is_named_as_too_coarse_to_order_cpus(clock, capsys):
    """uptime stamps count jiffies: events of different CPUs in one tick share a stamp, and
    their order in the file is the merge's, not time's. The warning counts them (counted here
    from the text: an event stamped like the one before it, from another CPU); the counter
    clock never repeats a stamp, so it gets none."""
    path = need_shared(RECORDED / "ftrace-text" / f"opt_clock_{clock}.txt")
    ties, prev = 0, None
    for ln in path.read_text().splitlines():
        m = re.match(r"\s*\S+-\d+\s+\[(\d+)\]\s+\S{5}\s+(\d+):", ln)
        if m:
            ties += prev is not None and prev[1] == m[2] and prev[0] != m[1]
            prev = (m[1], m[2])
    main(["check", str(path)])
    err = capsys.readouterr().err
    if clock == "uptime":
        assert ties > 0 and f"{ties} events carry the stamp of another CPU's event" in err
    else:
        assert ties == 0 and "too coarsely" not in err


def test_list_events_of_a_trace_dat_agrees_with_check(capsys):
    """A trace.dat holds the formats of more events than it recorded: `list --events` must
    say what `check` finds, i.e. wakeup's lock/syscall events are missing from a sched-only
    recording (its text twin sched_trace.txt has none of them), and every monitor it calls
    fed runs under check."""
    dat = need_shared(RECORDED / "tracedat" / "sched_v7_zstd.dat")
    assert (
        "contention_begin"
        not in need_shared(RECORDED / "ftrace-text" / "sched_trace.txt").read_text()
    )
    assert main(["list", "--events", str(dat)]) == 0
    lines = capsys.readouterr().out.splitlines()
    wakeup = next(ln for ln in lines if ln.startswith(" - wakeup"))
    assert "[events missing: lock:contention_begin" in wakeup
    fed = [
        ln.split()[1] if ln.startswith(" - ") else ln.split()[0]
        for ln in lines
        if "[events: yes]" in ln
    ]
    assert fed
    for name in fed:
        assert main(["check", "-m", name, str(dat)]) in (0, 1), name
    capsys.readouterr()


@pytest.mark.parametrize("dat", ["sched_v6.dat", "sched_v7_zstd.dat"])
def test_a_trace_dat_prints_the_lines_its_kernels_text_would(dat, capsys):
    """sched_trace.txt is the kernel's own text of the buffer the .dat files hold: the kernel
    prints ns as µs rounded to nearest (trace-formats §1.5), so every event_/error_ line pyrv
    prints from the .dat equals the one it prints from the text, timestamps included."""
    text = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    outs = []
    for path in (text, need_shared(RECORDED / "tracedat" / dat)):
        main(["check", "--events", str(path)])
        out = capsys.readouterr().out.splitlines()
        outs.append([ln for ln in out if not ln.startswith(("#", "=="))])
    assert len(outs[0]) > 3000 and outs[0] == outs[1]


@pytest.mark.parametrize("command", ["mon", "record"])
@pytest.mark.parametrize("value", ["-1", "0", "x", "nan"])
def test_a_duration_that_is_not_a_positive_number_is_a_usage_error(command, value, capsys):
    args = [command, "wwnr"] if command == "mon" else [command, "-o", "/nonexistent/x.dat"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--duration", value])
    assert info.value.code == 2 and "--duration" in capsys.readouterr().err


def test_a_parameter_of_a_monitor_not_run_is_named_as_changing_nothing(capsys):
    assert main(["check", "-m", "wwnr", "--param", "threshold_jiffies=5"]) == 0
    assert "--param threshold_jiffies: no monitor run here (wwnr) has it" in capsys.readouterr().err
    assert main(["check", "-m", "stall", "--param", "threshold_jiffies=500"]) in (0, 1)
    assert "changes nothing" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e999", "later than any trace time"),
        ("18446744073.709551616", "later than any trace time"),  # one ns past the u64 clock
        ("inf", "a trace time is a finite number of seconds"),
        ("nan", "a trace time is a finite number of seconds"),
        ("-1", "trace times are not negative"),
        ("soon", "is not a number of seconds"),
    ],
)
@pytest.mark.parametrize("trace", ["ftrace-text/sched_trace.txt", "tracedat/sched_v6.dat"])
@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_a_start_time_no_trace_can_have_is_a_usage_error(value, message, trace, as_json, capsys):
    """Exit 1 means violations: a --start that overflows or is not a time is a usage error."""
    path = need_shared(RECORDED / trace)
    with pytest.raises(SystemExit) as info:
        main(["check", *as_json, f"--start={value}", str(path)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--start" in err and message in err
    assert "Traceback" not in err


def test_a_start_time_keeps_every_printed_digit():
    """--start is read as the decimal it is printed as, to the nanosecond (a float rounds
    the 17 digits of a time such as 12345678.123456789 s)."""
    from pyrv.cli.options import trace_time_ns

    assert trace_time_ns("12345678.123456789") == 12345678123456789
    assert trace_time_ns("18446744073.709551615") == 2**64 - 1
    assert trace_time_ns("0") == 0


@pytest.mark.parametrize("command", ["mon", "record"])
@pytest.mark.parametrize("value", ["-1", "0", "x", str(2**64)])
def test_a_buffer_size_that_is_not_a_positive_kib_count_is_a_usage_error(command, value, capsys):
    """tracefs' buffer_size_kb is a nonzero unsigned long; the kernel's bare EINVAL named
    neither the option nor the value."""
    args = [command, "wwnr"] if command == "mon" else [command, "-o", "/nonexistent/x.dat"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--buffer-kb", value])
    err = capsys.readouterr().err
    assert info.value.code == 2 and f"--buffer-kb: {value!r}" in err


@pytest.mark.parametrize("value", ["0", "9", "-1", "x"])
def test_per_task_slots_outside_1_to_8_is_a_usage_error(value, capsys):
    """docs/rvfs.md: CONFIG_RV_PER_TASK_MONITORS is 1..8; 0 used to mean "the default"."""
    with pytest.raises(SystemExit) as info:
        main(["mount", "/nonexistent", "--per-task-slots", value])
    assert info.value.code == 2 and "--per-task-slots" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "x"])
def test_an_umount_timeout_that_is_not_finite_seconds_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["umount", "/nonexistent", "--timeout", value])
    assert info.value.code == 2 and "--timeout" in capsys.readouterr().err


RPLUS = REPO / "tests" / "data" / "defs" / "rplus.toml"


def test_a_monitor_reading_the_preempt_plus_is_refused_on_report_plugin_text(capsys):
    """trace-formats.md 3.5: trace-cmd report's default sched_switch plugin prints R+ as R, so
    a monitor whose conditions tell them apart is refused by name and left out (with a note)
    of the default selection, as monitors needing the irq-info column are."""
    report = need_shared(RECORDED / "tracedat" / "report_default.txt")
    assert main(["check", "-d", str(RPLUS), "-m", "trplus", str(report)]) == 2
    err = capsys.readouterr().err
    assert "monitor trplus tells a preempted switch (prev_state R+) from a runnable one" in err
    assert "does not print the '+'" in err and "report -N or -R" in err
    assert main(["check", "-d", str(RPLUS), str(report)]) in (0, 1)
    captured = capsys.readouterr()
    ran = {ln.split()[0] for ln in captured.out.splitlines() if ln.startswith("   ")}
    assert "wwnr" in ran and "trplus" not in ran
    assert "not run: monitor trplus tells a preempted switch" in captured.err


@pytest.mark.parametrize(
    "trace",
    [
        "tracedat/sched_v6.dat",  # binary: prev_state's preempt bit
        "tracedat/report_opt_N.txt",  # report -N: the kernel's print fmt, R+
        "tracedat/report_opt_R.txt",  # report -R: the number, preempt bit included
        "ftrace-text/sched_trace.txt",  # the kernel's own text
    ],
)
def test_input_that_prints_the_preempt_plus_runs_such_a_monitor(trace, capsys):
    path = need_shared(RECORDED / trace)
    assert main(["check", "-d", str(RPLUS), "-m", "trplus", str(path)]) in (0, 1)
    assert re.search(r"^\s+trplus\s+per_task", capsys.readouterr().out, re.M)


def test_a_condition_blind_to_the_plus_runs_on_report_text_as_on_the_dat(tmp_path, capsys):
    """Where a condition gives R and R+ the same answer, the plugin's text is the same data as
    the trace.dat (recorded/README.md): the monitor runs on both, with the same verdicts."""
    text = RPLUS.read_text().replace("['R+', 'D']", "['R', 'R+', 'D']")
    (tmp_path / "wakerun.dot").write_text((RPLUS.parent / "wakerun.dot").read_text())
    (tmp_path / "blind.toml").write_text(text)
    outs = []
    for trace in ("tracedat/report_default.txt", "tracedat/sched_v6.dat"):
        path = need_shared(RECORDED / trace)
        main(["check", "-d", str(tmp_path / "blind.toml"), "-m", "trplus", str(path)])
        out = capsys.readouterr().out
        outs.append([ln for ln in out.splitlines() if "error_trplus" in ln or "trplus " in ln])
    assert outs[0] and outs[0] == outs[1]


def test_more_per_task_monitors_than_a_kernel_has_slots_is_said_so(monkeypatch, capsys):
    """Standard input cannot be scanned ahead, so every monitor is chosen: with a user's
    per-task monitor that is 9, past CONFIG_RV_PER_TASK_MONITORS' 8 (kernel-rv.md, per-task
    slots). It failed with "writing 'trplus' to enabled_monitors: Device or resource busy"."""
    import io

    trace = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(trace.read_bytes())))
    assert main(["check", "-d", str(RPLUS), "-"]) == 2
    err = capsys.readouterr().err
    assert "per-task monitors would run" in err and "more than the 8 per-task slots" in err
    assert "choose them with -m" in err


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--hz", "２５０"],  # full-width digits: int() takes them, a shell user did not
        ["check", "--start", "١٢"],  # Arabic-Indic digits
        ["check", "--start", "472_0"],  # Python's digit separator
        ["mon", "wwnr", "--duration", "５"],
        ["mon", "wwnr", "--buffer-kb", "４"],
        ["record", "-o", "/nonexistent/x.dat", "--duration", "٥"],
        ["umount", "/nonexistent", "--timeout", "1_0"],
    ],
)
def test_numbers_are_ascii_digits(args, capsys):
    """What a user types as a number is ASCII digits: anything else (which Python's int and
    float accept) is a usage error, before a run starts on a value nobody meant."""
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "is not a number (ASCII digits, no '_')" in err
