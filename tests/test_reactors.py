"""Reactors (pyrv.monitors.reactors): the built-ins and user reactors (spec §2)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pytest

from pyrv.monitors.monitor import Monitor
from pyrv.monitors.reactors import (
    PrintkReactor,
    Reactor,
    RVPanic,
    nop_reactor,
    panic_reactor,
    register_builtin_reactors,
)
from pyrv.monitors.registry import RV

MSG = "rv: monitor wip does not allow event sched_waking on state preemptive\n"


def test_builtin_names_and_descriptions() -> None:
    rv = RV()
    got = [(r.name, r.description) for r in rv.reactors()]
    assert got == [
        ("nop", "no-operation reactor: do nothing."),
        ("printk", "prints the exception msg to the kernel message log."),
        ("panic", "panic the system if an exception is found."),
    ]


def test_register_builtin_reactors_helper() -> None:
    rv = RV(builtin_reactors=False)
    stream = io.StringIO()
    register_builtin_reactors(rv, stream=stream)
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\n"
    printk = rv.find_reactor("printk")
    assert isinstance(printk, PrintkReactor) and printk.stream is stream


def test_nop_does_nothing() -> None:
    assert nop_reactor().react(MSG) is None


def test_printk_writes_exact_text() -> None:
    stream = io.StringIO()
    r = PrintkReactor(stream)
    r.react(MSG)
    r.react("rv: wwnr: cat[42]: violation detected\n")
    assert stream.getvalue() == MSG + "rv: wwnr: cat[42]: violation detected\n"


def test_printk_ends_record_with_newline() -> None:
    stream = io.StringIO()
    PrintkReactor(stream).react("rv: no newline")
    assert stream.getvalue() == "rv: no newline\n"


def test_printk_default_stream_is_current_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    PrintkReactor().react(MSG)
    out = capsys.readouterr()
    assert out.err == MSG and out.out == ""


def test_printk_kmsg_path(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    stream = io.StringIO()
    r = PrintkReactor(stream, kmsg=kmsg)
    r.react(MSG)
    r.react(MSG)
    assert kmsg.read_bytes() == b"<4>" + MSG.encode() + b"<4>" + MSG.encode()
    assert stream.getvalue() == MSG * 2
    r.set_kmsg(False)
    r.react(MSG)
    assert kmsg.read_bytes().count(b"<4>") == 2


def test_printk_kmsg_failure_reported_once(tmp_path: Path) -> None:
    stream = io.StringIO()
    r = PrintkReactor(stream, kmsg=tmp_path / "missing" / "kmsg")
    with pytest.warns(RuntimeWarning, match="cannot write"):
        r.react(MSG)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r.react(MSG)  # no second report, no exception
    assert stream.getvalue() == MSG * 2


def test_rv_set_printk_kmsg(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    rv = RV()
    rv.set_printk_kmsg(kmsg)
    printk = rv.find_reactor("printk")
    assert isinstance(printk, PrintkReactor)
    printk.stream = io.StringIO()
    mon = Monitor("wip", "d")
    rv.register_monitor(mon)
    rv.write("monitors/wip/reactors", b"printk\n")
    mon.react(MSG)
    assert kmsg.read_bytes() == b"<4>" + MSG.encode()


def test_set_printk_kmsg_without_printk() -> None:
    with pytest.raises(OSError):
        RV(builtin_reactors=False).set_printk_kmsg(True)


def test_panic_raises_with_message() -> None:
    with pytest.raises(RVPanic) as ei:
        panic_reactor().react(MSG)
    assert ei.value.message == MSG and str(ei.value) == MSG


def test_panic_stops_the_caller() -> None:
    rv = RV()
    mon = Monitor("wip", "d")
    rv.register_monitor(mon)
    rv.write("monitors/wip/reactors", b"panic")
    after = []
    with pytest.raises(RVPanic):
        mon.react(MSG)
        after.append("not reached")
    assert after == []
    rv.write("reacting_on", b"0")
    mon.react(MSG)  # reacting off: no panic


def test_user_reactor_via_files() -> None:
    got: list[str] = []
    rv = RV()
    rv.register_reactor(Reactor("mine", "collects messages", got.append))
    mon = Monitor("wip", "d")
    rv.register_monitor(mon)
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\nmine\n"
    rv.write("monitors/wip/reactors", b"mine\n")
    assert rv.read("monitors/wip/reactors") == b"nop\nprintk\npanic\n[mine]\n"
    mon.react(MSG)
    assert got == [MSG]


def test_reactor_identity_not_name() -> None:
    """The bracket follows the selected object; a same-named other object is not selected."""
    a = Reactor("x", "d", lambda m: None)
    b = Reactor("x", "d", lambda m: None)
    assert a != b
