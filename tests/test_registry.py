"""The rv/ control interface (pyrv.monitors.registry.RV) against kernel rv.c / rv_reactors.c.

Expected values come from the spec (kernel-rv.md §1, §2, §8), the kernel code and the 6.12
transcript (conformance/interface.txt), never from running pyrv.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable

import pytest

from pyrv.monitors.monitor import Container, Monitor
from pyrv.monitors.reactors import Reactor, RVPanic
from pyrv.monitors.registry import RV, kstrtobool


class Probe(Monitor):
    """A monitor that logs its callbacks; per-task ones take a slot like the DA monitors."""

    def __init__(
        self,
        name: str,
        desc: str = "probe",
        log: list[tuple[str, str]] | None = None,
        per_task: bool = False,
        has_reset: bool = True,
    ) -> None:
        super().__init__(name, desc)
        self.log = log if log is not None else []
        self.uses_task_slot = per_task
        self.has_reset = has_reset
        self.slot: int | None = None
        self.resets = 0

    def enable(self) -> None:
        if self.uses_task_slot:
            assert self.rv is not None
            self.slot = self.rv.get_task_slot()
        self.log.append(("enable", self.name))

    def disable(self) -> None:
        self.log.append(("disable", self.name))
        if self.slot is not None:
            assert self.rv is not None
            self.rv.put_task_slot(self.slot)
            self.slot = None

    def reset(self) -> None:
        self.resets += 1


def errno_of(exc_info: pytest.ExceptionInfo[OSError]) -> int:
    return exc_info.value.errno


def read_in_chunks(rv: RV, path: str, size: int) -> bytes:
    """read(2) with a ``size``-byte buffer until EOF, through one open file."""
    f = rv.open_file(path)
    out = b""
    while chunk := f.read(size):
        assert len(chunk) <= size
        out += chunk
    return out


def write_err(rv: RV, path: str, data: bytes, offset: int = 0) -> int:
    with pytest.raises(OSError) as ei:
        rv.write(path, data, offset)
    return errno_of(ei)


@pytest.fixture
def rv() -> RV:
    return RV()


@pytest.fixture
def log() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def sched(rv: RV, log: list[tuple[str, str]]) -> dict[str, Monitor]:
    """wip, wwnr, then container sched with a, b, c registered in that order, then last."""
    mons: dict[str, Monitor] = {
        "wip": Probe("wip", log=log),
        "wwnr": Probe("wwnr", log=log),
        "sched": Container("sched", "container"),
    }
    for m in mons.values():
        rv.register_monitor(m)
    for name in ("a", "b", "c"):
        mons[name] = Probe(name, log=log)
        rv.register_monitor(mons[name], mons["sched"])
    mons["last"] = Probe("last", log=log)
    rv.register_monitor(mons["last"])
    return mons


# -- construction ---------------------------------------------------------------------------------


def test_default_reactors_nop_printk_panic(rv: RV) -> None:
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\n"


def test_core_registers_only_nop() -> None:
    assert RV(builtin_reactors=False).read("available_reactors") == b"nop\n"


@pytest.mark.parametrize("slots", [0, 9, -1, True, 2.0, "2"])
def test_per_task_slots_range(slots: object) -> None:
    with pytest.raises(ValueError):
        RV(per_task_slots=slots)  # type: ignore[arg-type]


@pytest.mark.parametrize("slots", [1, 8])
def test_per_task_slots_bounds_accepted(slots: int) -> None:
    assert RV(per_task_slots=slots).per_task_slots == slots


def test_switches_default_on(rv: RV) -> None:
    assert rv.monitoring_on and rv.reacting_on
    assert rv.read("monitoring_on") == b"1\n\0"
    assert rv.read("reacting_on") == b"1\n\0"


# -- registration ---------------------------------------------------------------------------------


def test_register_sets_fields(rv: RV) -> None:
    parent = Container("sched", "c")
    child = Probe("a")
    rv.register_monitor(parent)
    rv.register_monitor(child, parent)
    assert child.rv is rv and child.parent is parent and parent.parent is None
    assert child.reactor is rv.find_reactor("nop") is rv.nop
    assert not child.enabled


def test_name_31_ok_32_einval(rv: RV) -> None:
    rv.register_monitor(Probe("m" * 31))
    with pytest.raises(OSError) as ei:
        rv.register_monitor(Probe("n" * 32))
    assert errno_of(ei) == errno.EINVAL
    assert rv.read("available_monitors") == b"m" * 31 + b"\n"


def test_duplicate_name_eexist_anywhere(rv: RV, sched: dict[str, Monitor]) -> None:
    for parent in (None, sched["sched"]):
        with pytest.raises(OSError) as ei:
            rv.register_monitor(Probe("a"), parent)
        assert errno_of(ei) == errno.EEXIST
    with pytest.raises(OSError) as ei:
        rv.register_monitor(Probe("wip"), sched["sched"])
    assert errno_of(ei) == errno.EEXIST


def test_nested_parent_einval_and_interface_keeps_working(
    rv: RV, sched: dict[str, Monitor]
) -> None:
    """§8 "Fix missing unlock on double nested monitors return path"."""
    with pytest.raises(OSError) as ei:
        rv.register_monitor(Probe("deep"), sched["a"])
    assert errno_of(ei) == errno.EINVAL
    assert rv.find_monitor("deep") is None
    assert rv.write("enabled_monitors", b"wip\n") == 4
    assert rv.read("enabled_monitors") == b"wip\n"
    rv.register_monitor(Probe("after"))
    assert rv.read("available_monitors").endswith(b"last\nafter\n")


def test_children_after_parent_in_reverse_order(rv: RV, sched: dict[str, Monitor]) -> None:
    assert rv.read("available_monitors") == (b"wip\nwwnr\nsched\nsched:c\nsched:b\nsched:a\nlast\n")
    assert [m.name for m in rv.monitors()] == ["wip", "wwnr", "sched", "c", "b", "a", "last"]


def test_directory_creation_failure_enomem_no_deadlock(rv: RV, sched: dict[str, Monitor]) -> None:
    """tracefs refuses a child dir named like a file of its parent's dir: ENOMEM (§8)."""
    for bad in ("enable", "desc", "reactors"):
        with pytest.raises(OSError) as ei:
            rv.register_monitor(Probe(bad), sched["sched"])
        assert errno_of(ei) == errno.ENOMEM
    with pytest.raises(OSError) as ei:
        rv.register_monitor(Probe("x/y"))
    assert errno_of(ei) == errno.ENOMEM
    assert b"enable" not in rv.read("available_monitors")
    # the lock was released: the interface keeps working, from another thread too
    t = threading.Thread(target=rv.write, args=("enabled_monitors", b"sched\n"))
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert rv.read("enabled_monitors") == b"sched\nsched:c\nsched:b\nsched:a\n"
    # a top-level monitor may be called "enable": monitors/ has no such file
    rv.register_monitor(Probe("enable"))
    assert rv.read("monitors/enable/enable") == b"0\n\0"


def test_unregister_disables_first(rv: RV, log: list[tuple[str, str]]) -> None:
    wip = Probe("wip", log=log)
    rv.register_monitor(wip)
    rv.write("enabled_monitors", b"wip")
    rv.unregister_monitor(wip)
    assert log == [("enable", "wip"), ("disable", "wip")]
    assert not wip.enabled and wip.rv is None
    assert rv.read("available_monitors") == b""
    with pytest.raises(FileNotFoundError):
        rv.read("monitors/wip/enable")
    assert write_err(rv, "enabled_monitors", b"wip") == errno.EINVAL


def test_unregister_container_takes_children(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("enabled_monitors", b"sched")
    rv.unregister_monitor(sched["sched"])
    assert rv.read("available_monitors") == b"wip\nwwnr\nlast\n"
    assert not any(sched[n].enabled for n in ("sched", "a", "b", "c"))
    assert rv.listdir("monitors") == ["wip", "wwnr", "last"]


def test_unregister_unknown_enoent(rv: RV) -> None:
    with pytest.raises(OSError) as ei:
        rv.unregister_monitor(Probe("ghost"))
    assert errno_of(ei) == errno.ENOENT


# -- reactor registration -------------------------------------------------------------------------


def test_reactor_name_31_ok_32_einval(rv: RV) -> None:
    rv.register_reactor(Reactor("r" * 31, "d", lambda m: None))
    with pytest.raises(OSError) as ei:
        rv.register_reactor(Reactor("s" * 32, "d", lambda m: None))
    assert errno_of(ei) == errno.EINVAL
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\n" + b"r" * 31 + b"\n"


def test_reactor_duplicate_is_einval_not_eexist(rv: RV) -> None:
    with pytest.raises(OSError) as ei:
        rv.register_reactor(Reactor("printk", "again", lambda m: None))
    assert errno_of(ei) == errno.EINVAL


def test_reactor_unregister_while_in_use(rv: RV) -> None:
    """§8 "Remove rv_reactor's reference counter": unregister just removes it."""
    got: list[str] = []
    mine = Reactor("mine", "mine", got.append)
    wip = Probe("wip")
    rv.register_monitor(wip)
    rv.register_reactor(mine)
    rv.write("monitors/wip/reactors", b"mine\n")
    assert rv.read("monitors/wip/reactors") == b"nop\nprintk\npanic\n[mine]\n"
    rv.unregister_reactor(mine)  # no EBUSY
    assert rv.read("available_reactors") == b"nop\nprintk\npanic\n"
    assert rv.read("monitors/wip/reactors") == b"nop\nprintk\npanic\n"  # nothing bracketed
    assert write_err(rv, "monitors/wip/reactors", b"mine") == errno.EINVAL
    wip.react("rv: still mine\n")
    assert got == ["rv: still mine\n"]
    rv.write("monitors/wip/reactors", b"nop")
    assert rv.read("monitors/wip/reactors") == b"[nop]\nprintk\npanic\n"


# -- per-task slots -------------------------------------------------------------------------------


def test_slots_lowest_free_and_ebusy() -> None:
    rv = RV(per_task_slots=3)
    assert [rv.get_task_slot() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(OSError) as ei:
        rv.get_task_slot()
    assert errno_of(ei) == errno.EBUSY
    rv.put_task_slot(1)
    assert rv.get_task_slot() == 1
    rv.put_task_slot(0)
    rv.put_task_slot(2)
    assert rv.task_slots_in_use() == [1]


def test_put_bad_slot_only_warns(rv: RV) -> None:
    with pytest.warns(RuntimeWarning):
        rv.put_task_slot(5)
    with pytest.warns(RuntimeWarning):
        rv.put_task_slot(0)
    assert rv.task_slots_in_use() == []


def per_task_container(rv: RV, log: list[tuple[str, str]]) -> dict[str, Monitor]:
    mons: dict[str, Monitor] = {"box": Container("box", "three per-task monitors")}
    rv.register_monitor(mons["box"])
    for name in ("t1", "t2", "t3"):
        mons[name] = Probe(name, log=log, per_task=True)
        rv.register_monitor(mons[name], mons["box"])
    return mons


def test_container_slot_exhaustion_ebusy_rolls_back(rv: RV, log: list[tuple[str, str]]) -> None:
    mons = per_task_container(rv, log)
    assert write_err(rv, "enabled_monitors", b"box\n") == errno.EBUSY
    # list order t3, t2, t1: two get slots, the third fails, all are disabled again
    assert log == [
        ("enable", "t3"),
        ("enable", "t2"),
        ("disable", "t3"),
        ("disable", "t2"),
    ]
    assert not any(m.enabled for m in mons.values())
    assert rv.task_slots_in_use() == []
    assert rv.read("enabled_monitors") == b""
    assert write_err(rv, "monitors/box/enable", b"1") == errno.EBUSY


def test_container_rollback_disables_previously_enabled_child(
    rv: RV, log: list[tuple[str, str]]
) -> None:
    mons = per_task_container(rv, log)
    rv.write("enabled_monitors", b"t1")
    assert write_err(rv, "enabled_monitors", b"box") == errno.EBUSY
    assert not mons["t1"].enabled  # rollback disables every child, not only new ones
    assert rv.task_slots_in_use() == []


def test_container_enough_slots_succeeds(log: list[tuple[str, str]]) -> None:
    rv = RV(per_task_slots=3)
    mons = per_task_container(rv, log)
    assert rv.write("enabled_monitors", b"box") == 3
    assert all(m.enabled for m in mons.values())
    assert rv.task_slots_in_use() == [0, 1, 2]
    assert rv.read("enabled_monitors") == b"box\nbox:t3\nbox:t2\nbox:t1\n"


def test_third_standalone_per_task_ebusy_via_enable_file(rv: RV) -> None:
    for name in ("p1", "p2", "p3"):
        rv.register_monitor(Probe(name, per_task=True))
    rv.write("monitors/p1/enable", b"1\n")
    rv.write("enabled_monitors", b"p2\n")
    assert write_err(rv, "monitors/p3/enable", b"1\n") == errno.EBUSY
    assert rv.read("monitors/p3/enable") == b"0\n\0"
    rv.write("monitors/p1/enable", b"0\n")
    assert rv.write("monitors/p3/enable", b"1\n") == 2
    assert rv.task_slots_in_use() == [0, 1]


# -- enabled_monitors writes ----------------------------------------------------------------------


def test_enable_disable_by_name(rv: RV, sched: dict[str, Monitor]) -> None:
    assert rv.write("enabled_monitors", b"wip\n") == 4
    assert sched["wip"].enabled
    assert rv.write("enabled_monitors", b"!wip\n") == 5
    assert not sched["wip"].enabled
    assert rv.write("enabled_monitors", b"!wip\n") == 5  # already disabled: success


def test_enable_enabled_is_silent(rv: RV, sched: dict[str, Monitor], log: list) -> None:
    rv.write("enabled_monitors", b"wip")
    assert rv.write("enabled_monitors", b"wip") == 3
    assert rv.write("monitors/wip/enable", b"1") == 1
    assert log == [("enable", "wip")]


@pytest.mark.parametrize("data", [b"", b"x" * 34, b" " * 31 + b"wip"])
def test_count_limits_einval(rv: RV, sched: dict[str, Monitor], data: bytes) -> None:
    assert write_err(rv, "enabled_monitors", data) == errno.EINVAL
    assert not sched["wip"].enabled


def test_33_byte_limit_counts_bang_prefix_and_newline(rv: RV) -> None:
    n29, n30 = "n" * 29, "m" * 30
    rv.register_monitor(Probe(n29))
    rv.register_monitor(Probe(n30))
    line = b"!p:" + n29.encode() + b"\n"
    rv.write("enabled_monitors", n29.encode())
    assert len(line) == 33 and rv.write("enabled_monitors", line) == 33
    assert rv.read("enabled_monitors") == b""
    assert rv.write("enabled_monitors", b"p:" + n30.encode() + b"\n") == 33
    line = b"!p:" + n30.encode() + b"\n"  # a valid name, but 34 bytes in all
    assert write_err(rv, "enabled_monitors", line) == errno.EINVAL
    assert rv.read("enabled_monitors") == n30.encode() + b"\n"


@pytest.mark.parametrize(
    "data", [b"  wip  ", b"\twip\t\n", b"\x0bwip\x0c", b"wip\r\n", b"\xa0wip\xa0", b"wip\0junk"]
)
def test_whitespace_stripped_and_nul_ends(rv: RV, sched: dict[str, Monitor], data: bytes) -> None:
    assert rv.write("enabled_monitors", data) == len(data)
    assert sched["wip"].enabled


@pytest.mark.parametrize("data", [b"\n", b"!", b"!\n", b"  ! ", b"\0wip"])
def test_empty_after_strip_is_noop(rv: RV, sched: dict[str, Monitor], data: bytes) -> None:
    rv.write("enabled_monitors", b"wwnr")
    assert rv.write("enabled_monitors", data) == len(data)
    assert rv.read("enabled_monitors") == b"wwnr\n"


@pytest.mark.parametrize(
    "data", [b"WIP", b"wi", b"wipx", b"! wip", b"!!wip", b"wip wwnr", b"wip\nwwnr", b"wip:", b":"]
)
def test_unknown_name_einval(rv: RV, sched: dict[str, Monitor], data: bytes) -> None:
    assert write_err(rv, "enabled_monitors", data) == errno.EINVAL
    assert rv.read("enabled_monitors") == b""


def test_parent_prefix_ignored(rv: RV, sched: dict[str, Monitor]) -> None:
    """§8: ``foo:wip`` is accepted; only the part after the first ':' counts."""
    assert rv.write("enabled_monitors", b"foo:wip\n") == 8
    assert rv.write("enabled_monitors", b"sched:a\n") == 8
    assert rv.write("enabled_monitors", b"wip:b") == 5
    assert rv.read("enabled_monitors") == b"wip\nsched:b\nsched:a\n"


def test_only_first_colon_trimmed(rv: RV, sched: dict[str, Monitor]) -> None:
    assert write_err(rv, "enabled_monitors", b"x:sched:a") == errno.EINVAL


def test_write_at_offset_is_noop(rv: RV, sched: dict[str, Monitor]) -> None:
    """The write lands at buffer+offset behind a NUL: empty string, success."""
    assert rv.write("enabled_monitors", b"wip\n", offset=4) == 4
    assert rv.write("enabled_monitors", b"garbage", offset=1) == 7
    assert rv.write("enabled_monitors", b"wip", offset=100) == 3
    assert rv.read("enabled_monitors") == b""
    f = rv.open_file("enabled_monitors", os.O_WRONLY | os.O_APPEND)
    assert f.write(b"wwnr\n") == 5
    assert f.write(b"wip\n") == 4
    assert rv.read("enabled_monitors") == b"wwnr\n"


def test_failed_write_does_not_move_position(rv: RV, sched: dict[str, Monitor]) -> None:
    f = rv.open_file("enabled_monitors", os.O_WRONLY)
    with pytest.raises(OSError):
        f.write(b"nosuch")
    f.write(b"wip")  # still at offset 0
    assert sched["wip"].enabled


def test_o_trunc_disables_all(rv: RV, sched: dict[str, Monitor], log: list) -> None:
    rv.write("enabled_monitors", b"wip")
    rv.write("enabled_monitors", b"sched")
    rv.open("enabled_monitors", os.O_RDONLY | os.O_TRUNC)
    rv.open("enabled_monitors", os.O_WRONLY)
    rv.open("enabled_monitors", os.O_WRONLY | os.O_APPEND)
    rv.truncate("enabled_monitors")
    assert rv.read("enabled_monitors") == b"wip\nsched\nsched:c\nsched:b\nsched:a\n"
    del log[:]
    rv.open("enabled_monitors", os.O_WRONLY | os.O_TRUNC)
    assert rv.read("enabled_monitors") == b""
    assert not sched["sched"].enabled
    assert sorted(log) == [("disable", n) for n in ("a", "b", "c", "wip")]


def test_o_rdwr_trunc_disables_all(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("enabled_monitors", b"wip")
    rv.open("enabled_monitors", os.O_RDWR | os.O_TRUNC)
    assert rv.read("enabled_monitors") == b""


# -- enabled_monitors reads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["wip"], b"wip\n"),
        (["b"], b"sched:b\n"),
        (["last"], b"last\n"),
        (["sched"], b"sched\nsched:c\nsched:b\nsched:a\n"),
        (["wip", "c", "last"], b"wip\nsched:c\nlast\n"),
        (["wip", "wwnr", "sched", "last"], b"wip\nwwnr\nsched\nsched:c\nsched:b\nsched:a\nlast\n"),
    ],
)
def test_enabled_monitors_first_middle_last_container(
    rv: RV, sched: dict[str, Monitor], names: list[str], expected: bytes
) -> None:
    """§8: the enabled_monitors_next() fixes (a panic with such mixes before 6.18-rc2)."""
    for n in names:
        rv.write("enabled_monitors", n.encode())
    assert rv.read("enabled_monitors") == expected
    assert read_in_chunks(rv, "enabled_monitors", 1) == expected


def test_container_flag_stays_when_children_disabled(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("enabled_monitors", b"sched")
    for n in (b"!a", b"!b", b"!c"):
        rv.write("enabled_monitors", n)
    assert rv.read("enabled_monitors") == b"sched\n"


# -- containers -----------------------------------------------------------------------------------


def test_is_container_last_entry(rv: RV) -> None:
    """8d7861ac507d: the last entry never looks at the "next" one (which is the list head)."""
    wip = Probe("wip")
    rv.register_monitor(wip)
    assert not rv.is_container(wip)
    empty = Container("empty", "no children")
    rv.register_monitor(empty)
    assert not rv.is_container(empty)  # last: not a container, even without callbacks
    rv.register_monitor(Probe("after"))
    assert rv.is_container(empty)  # not last: no callbacks makes it one
    assert not rv.is_container(wip)


def test_is_container_last_child(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.unregister_monitor(sched["last"])
    assert rv.monitors()[-1] is sched["a"]
    assert not rv.is_container(sched["a"])
    assert rv.is_container(sched["sched"])
    assert rv.write("monitors/sched/a/enable", b"1") == 1
    assert rv.read("enabled_monitors") == b"sched:a\n"


def test_last_monitor_enable_disable(rv: RV, sched: dict[str, Monitor], log: list) -> None:
    rv.write("enabled_monitors", b"last")
    rv.write("enabled_monitors", b"!last")
    assert log == [("enable", "last"), ("disable", "last")]


def test_container_enables_children_in_list_order(rv: RV, sched: dict, log: list) -> None:
    assert rv.write("monitors/sched/enable", b"1\n") == 2
    assert log == [("enable", "c"), ("enable", "b"), ("enable", "a")]
    assert rv.read("monitors/sched/enable") == b"1\n\0"
    del log[:]
    rv.write("enabled_monitors", b"!sched")
    assert log == [("disable", "c"), ("disable", "b"), ("disable", "a")]
    assert not any(sched[n].enabled for n in ("sched", "a", "b", "c"))


def test_parent_with_callbacks_becomes_container(rv: RV, log: list) -> None:
    """The kernel accepts any top-level parent; once it has a child it *is* a container, so
    enabling it enables the child and never calls its own enable callback."""
    host = Probe("host", log=log)
    rv.register_monitor(host)
    rv.register_monitor(Probe("guest", log=log), host)
    assert rv.is_container(host)
    rv.write("enabled_monitors", b"host")
    assert log == [("enable", "guest")]
    assert rv.read("enabled_monitors") == b"host\nhost:guest\n"


def test_enabling_child_leaves_parent_flag(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("monitors/sched/b/enable", b"y")
    assert sched["b"].enabled and not sched["sched"].enabled
    assert rv.read("monitors/sched/enable") == b"0\n\0"


def test_reenabling_container_enables_disabled_child(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("enabled_monitors", b"sched")
    rv.write("enabled_monitors", b"!b")
    rv.write("enabled_monitors", b"sched")
    assert sched["b"].enabled


def test_disable_container_when_not_enabled_disables_children(
    rv: RV, sched: dict[str, Monitor]
) -> None:
    rv.write("enabled_monitors", b"a")
    rv.write("enabled_monitors", b"!sched")
    assert not sched["a"].enabled


# -- monitoring_on / reacting_on ------------------------------------------------------------------


def test_monitoring_on_reset_only_enabled_with_reset(rv: RV) -> None:
    on = Probe("on")
    off = Probe("off")
    ltl = Probe("ltl", has_reset=False)
    box = Container("box", "c")
    kid = Probe("kid")
    for m in (on, off, ltl, box):
        rv.register_monitor(m)
    rv.register_monitor(kid, box)
    for n in (b"on", b"ltl", b"box"):
        rv.write("enabled_monitors", n)
    assert rv.write("monitoring_on", b"0\n") == 2
    assert rv.read("monitoring_on") == b"0\n\0" and not rv.monitoring_on
    assert rv.read("enabled_monitors") == b"on\nltl\nbox\nbox:kid\n"  # untouched
    assert (on.resets, off.resets, ltl.resets, kid.resets) == (0, 0, 0, 0)
    assert rv.write("monitoring_on", b"1\n") == 2
    assert (on.resets, off.resets, ltl.resets, kid.resets) == (1, 0, 0, 1)
    rv.write("monitoring_on", b"1")  # 1 -> 1: no reset
    assert (on.resets, kid.resets) == (1, 1)


def test_monitoring_on_invalid_keeps_value(rv: RV) -> None:
    assert write_err(rv, "monitoring_on", b"garbage\n") == errno.EINVAL
    assert write_err(rv, "monitoring_on", b"\n") == errno.EINVAL
    assert rv.monitoring_on


def test_reacting_on_toggles(rv: RV) -> None:
    assert rv.write("reacting_on", b"off") == 3
    assert rv.read("reacting_on") == b"0\n\0" and not rv.reacting_on
    assert rv.write("reacting_on", b"on") == 2
    assert rv.reacting_on


@pytest.mark.parametrize("path", ["monitoring_on", "reacting_on", "monitors/wip/enable"])
def test_three_byte_reads(rv: RV, path: str) -> None:
    rv.register_monitor(Probe("wip"))
    first = b"0" if path.endswith("enable") else b"1"
    assert rv.read(path, 4096) == first + b"\n\0"
    f = rv.open_file(path)
    assert [f.read(1) for _ in range(4)] == [first, b"\n", b"\0", b""]
    g = rv.open_file(path)
    assert [g.read(2) for _ in range(3)] == [first + b"\n", b"\0", b""]


@pytest.mark.parametrize(
    ("data", "value"),
    [
        (b"1", True),
        (b"0", False),
        (b"y", True),
        (b"Y", True),
        (b"n", False),
        (b"N", False),
        (b"t", True),
        (b"T", True),
        (b"f", False),
        (b"F", False),
        (b"on", True),
        (b"ON", True),
        (b"oN", True),
        (b"off", False),
        (b"Of", False),
        (b"of\0", False),
        (b"10", True),
        (b"01", False),
        (b"1 ", True),
        (b"1\0", True),
        (b"yep", True),
        (b"nope", False),
        (b"1111111111111111", True),
        (b"enable", True),
        (b"Disable", False),
    ],
)
def test_kstrtobool_accepts(data: bytes, value: bool) -> None:
    assert kstrtobool(data) is value


@pytest.mark.parametrize(
    "data", [b"", b"o", b"O", b"oo", b"o\n", b"2", b"-1", b" ", b" 1", b"\n", b"x", b"\0", b"\x001"]
)
def test_kstrtobool_rejects(data: bytes) -> None:
    with pytest.raises(OSError) as ei:
        kstrtobool(data)
    assert errno_of(ei) == errno.EINVAL


def test_kstrtobool_enable_disable_switch() -> None:
    for data in (b"e", b"E", b"enable", b"d", b"D", b"disable"):
        with pytest.raises(OSError):
            kstrtobool(data, enable_disable=False)
    rv = RV(kstrtobool_enable_disable=False)
    assert write_err(rv, "monitoring_on", b"disable") == errno.EINVAL
    rv2 = RV()
    assert rv2.write("monitoring_on", b"disable\n") == 8 and not rv2.monitoring_on
    assert rv2.write("monitoring_on", b"enable\n") == 7 and rv2.monitoring_on


def test_enable_file_invalid_einval(rv: RV) -> None:
    rv.register_monitor(Probe("wip"))
    assert write_err(rv, "monitors/wip/enable", b"garbage") == errno.EINVAL
    assert write_err(rv, "monitors/wip/enable", b"") == errno.EINVAL
    assert rv.read("monitors/wip/enable") == b"0\n\0"


def test_bool_files_ignore_offset(rv: RV) -> None:
    f = rv.open_file("monitoring_on", os.O_WRONLY)
    for data, value in ((b"0", False), (b"1", True), (b"0", False)):
        f.write(data)
        assert rv.monitoring_on is value


# -- desc -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "expected_len", "newline"),
    [(10, 12, True), (254, 256, True), (255, 256, False), (300, 256, False)],
)
def test_desc_256_byte_buffer(rv: RV, length: int, expected_len: int, newline: bool) -> None:
    rv.register_monitor(Probe("m", "d" * length))
    data = rv.read("monitors/m/desc")
    assert len(data) == expected_len and data.endswith(b"\0")
    assert data[:-1].endswith(b"\n") is newline
    assert data[:-1].rstrip(b"\n") == b"d" * min(length, 255)


# -- per-monitor reactors -------------------------------------------------------------------------


def test_reactors_file_format_and_write(rv: RV, sched: dict[str, Monitor]) -> None:
    assert rv.read("monitors/wip/reactors") == b"[nop]\nprintk\npanic\n"
    assert rv.write("monitors/wip/reactors", b"  printk\t\n") == 10
    assert rv.read("monitors/wip/reactors") == b"nop\n[printk]\npanic\n"
    assert rv.read("monitors/wwnr/reactors") == b"[nop]\nprintk\npanic\n"
    assert rv.write("monitors/wip/reactors", b"\n") == 1  # empty: no-op
    assert sched["wip"].reactor is rv.find_reactor("printk")


@pytest.mark.parametrize("data", [b"", b"bogus", b"[nop]", b"NOP", b"nop printk", b"!printk"])
def test_reactors_write_einval(rv: RV, sched: dict[str, Monitor], data: bytes) -> None:
    assert write_err(rv, "monitors/wip/reactors", data) == errno.EINVAL


def test_reactors_33_byte_limit(rv: RV, sched: dict[str, Monitor]) -> None:
    assert rv.write("monitors/wip/reactors", b" " * 26 + b"printk\n") == 33
    assert sched["wip"].reactor is rv.find_reactor("printk")
    assert write_err(rv, "monitors/wip/reactors", b" " * 30 + b"nop\n") == errno.EINVAL


def test_reactors_write_at_offset_is_noop(rv: RV, sched: dict[str, Monitor]) -> None:
    f = rv.open_file("monitors/wip/reactors", os.O_WRONLY)
    f.write(b"printk\n")
    f.write(b"panic\n")
    assert sched["wip"].reactor is rv.find_reactor("printk")


def test_reactors_o_trunc_does_nothing(rv: RV, sched: dict[str, Monitor]) -> None:
    rv.write("monitors/wip/reactors", b"printk")
    rv.open("monitors/wip/reactors", os.O_WRONLY | os.O_TRUNC)
    assert sched["wip"].reactor is rv.find_reactor("printk")


def test_swap_enabled_single_disables_and_reenables(rv: RV, sched: dict, log: list) -> None:
    rv.write("enabled_monitors", b"wip")
    del log[:]
    rv.write("monitors/wip/reactors", b"printk")
    assert log == [("disable", "wip"), ("enable", "wip")]
    assert sched["wip"].enabled
    del log[:]
    rv.write("monitors/wip/reactors", b"printk")  # same reactor: nothing
    rv.write("monitors/wwnr/reactors", b"panic")  # disabled: no callbacks
    assert log == [] and not sched["wwnr"].enabled


def test_swap_container_quirk_not_enabled(rv: RV, sched: dict, log: list) -> None:
    """§1.3: children that were enabled individually end up disabled."""
    rv.write("enabled_monitors", b"a")
    rv.write("enabled_monitors", b"c")
    del log[:]
    rv.write("monitors/sched/reactors", b"printk")
    printk = rv.find_reactor("printk")
    assert all(sched[n].reactor is printk for n in ("sched", "a", "b", "c"))
    assert not any(sched[n].enabled for n in ("sched", "a", "b", "c"))
    assert log == [("disable", "c"), ("disable", "a")]
    assert sched["wip"].reactor is rv.nop


def test_swap_container_quirk_enabled(rv: RV, sched: dict, log: list) -> None:
    """§1.3: an enabled container is re-enabled with all children, including ones off."""
    rv.write("enabled_monitors", b"sched")
    rv.write("enabled_monitors", b"!b")
    del log[:]
    rv.write("monitors/sched/reactors", b"panic")
    assert all(sched[n].enabled for n in ("sched", "a", "b", "c"))
    assert log == [
        ("disable", "c"),
        ("disable", "a"),
        ("enable", "c"),
        ("enable", "b"),
        ("enable", "a"),
    ]


def test_swap_container_already_using_reactor(rv: RV, sched: dict) -> None:
    """The container's own swap is a no-op, so children switched in the loop stay off."""
    rv.write("monitors/sched/reactors", b"printk")
    rv.write("monitors/sched/a/reactors", b"nop")
    rv.write("enabled_monitors", b"sched")
    rv.write("monitors/sched/reactors", b"printk")
    assert sched["sched"].enabled
    assert not sched["a"].enabled and sched["b"].enabled and sched["c"].enabled
    assert sched["a"].reactor is rv.find_reactor("printk")


def test_swap_child_only_touches_child(rv: RV, sched: dict) -> None:
    rv.write("monitors/sched/b/reactors", b"printk")
    assert rv.read("monitors/sched/b/reactors") == b"nop\n[printk]\npanic\n"
    assert sched["sched"].reactor is rv.nop and sched["a"].reactor is rv.nop


# -- react ----------------------------------------------------------------------------------------


def test_react_dispatch(rv: RV) -> None:
    got: list[str] = []
    rv.register_reactor(Reactor("mine", "collect", got.append))
    wip = Probe("wip")
    rv.register_monitor(wip)
    wip.react("rv: nop\n")  # nop selected: nothing
    rv.write("monitors/wip/reactors", b"mine")
    rv.react(wip, "rv: one\n")
    rv.write("reacting_on", b"0")
    wip.react("rv: off\n")
    rv.write("reacting_on", b"1")
    wip.react("rv: two\n")
    assert got == ["rv: one\n", "rv: two\n"]
    wip.reactor = None
    wip.react("rv: none\n")
    assert got == ["rv: one\n", "rv: two\n"]


def test_react_panic_raises(rv: RV) -> None:
    wip = Probe("wip")
    rv.register_monitor(wip)
    rv.write("monitors/wip/reactors", b"panic")
    with pytest.raises(RVPanic) as ei:
        wip.react("rv: monitor wip does not allow event x on state y\n")
    assert ei.value.message == "rv: monitor wip does not allow event x on state y\n"


def test_react_printk_to_stderr(rv: RV, capsys: pytest.CaptureFixture[str]) -> None:
    wip = Probe("wip")
    rv.register_monitor(wip)
    rv.write("monitors/wip/reactors", b"printk")
    wip.react("rv: monitor wip does not allow event sched_waking on state preemptive\n")
    assert capsys.readouterr().err == (
        "rv: monitor wip does not allow event sched_waking on state preemptive\n"
    )


# -- the file tree --------------------------------------------------------------------------------


def test_modes_as_in_6_12(rv: RV, sched: dict[str, Monitor]) -> None:
    """``ls -la`` in interface.txt: dirs drwxr-x---, read-only -r--r-----, others -rw-r-----."""
    expect = {
        "": "drwxr-x---",
        "available_monitors": "-r--r-----",
        "available_reactors": "-r--r-----",
        "enabled_monitors": "-rw-r-----",
        "monitoring_on": "-rw-r-----",
        "reacting_on": "-rw-r-----",
        "monitors": "drwxr-x---",
        "monitors/wip": "drwxr-x---",
        "monitors/wip/desc": "-r--r-----",
        "monitors/wip/enable": "-rw-r-----",
        "monitors/wip/reactors": "-rw-r-----",
        "monitors/sched/a": "drwxr-x---",
        "monitors/sched/a/desc": "-r--r-----",
    }
    for path, mode in expect.items():
        assert stat.filemode(rv.mode(path)) == mode, path
    assert rv.stat("").nlink == 3
    assert rv.stat("monitors").nlink == 2 + 4
    assert rv.stat("monitors/sched").nlink == 2 + 3
    assert rv.stat("monitors/wip").nlink == 2
    assert rv.stat("monitors/wip/enable") == rv.stat("/monitors/wip/enable/")


def test_listdir_and_nested_paths(rv: RV, sched: dict[str, Monitor]) -> None:
    assert sorted(rv.listdir("")) == sorted(
        [
            "available_monitors",
            "available_reactors",
            "enabled_monitors",
            "monitoring_on",
            "monitors",
            "reacting_on",
        ]
    )
    assert rv.listdir("monitors") == ["wip", "wwnr", "sched", "last"]
    assert rv.listdir("monitors/sched") == ["enable", "desc", "reactors", "a", "b", "c"]
    assert rv.listdir("monitors/sched/a") == ["enable", "desc", "reactors"]
    assert rv.is_dir("monitors/sched/a") and not rv.is_dir("monitors/sched/a/desc")
    assert rv.read("monitors/sched/a/desc") == b"probe\n\0"
    with pytest.raises(FileNotFoundError):
        rv.read("monitors/a/desc")  # children live only inside their parent's directory


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda rv: rv.read("nosuch"), errno.ENOENT),
        (lambda rv: rv.write("nosuch", b"1"), errno.ENOENT),
        (lambda rv: rv.stat("monitors/nosuch"), errno.ENOENT),
        (lambda rv: rv.listdir("monitors/wip/enable"), errno.ENOTDIR),
        (lambda rv: rv.read("monitors/wip/enable/x"), errno.ENOTDIR),
        (lambda rv: rv.read("monitors"), errno.EISDIR),
        (lambda rv: rv.write("monitors", b"x"), errno.EISDIR),
        (lambda rv: rv.write("available_monitors", b"wip"), errno.EINVAL),
        (lambda rv: rv.write("available_reactors", b"nop"), errno.EINVAL),
        (lambda rv: rv.write("monitors/wip/desc", b"x"), errno.EINVAL),
        (lambda rv: rv.open("monitors", os.O_WRONLY | os.O_CREAT | os.O_TRUNC), errno.EISDIR),
        (lambda rv: rv.open("newfile", os.O_WRONLY | os.O_CREAT), errno.EACCES),
        (lambda rv: rv.open("nodir/newfile", os.O_WRONLY | os.O_CREAT), errno.ENOENT),
        (lambda rv: rv.open("newfile", os.O_RDONLY), errno.ENOENT),
        (lambda rv: rv.open("monitoring_on", os.O_RDONLY | os.O_DIRECTORY), errno.ENOTDIR),
        (lambda rv: rv.unlink("enabled_monitors"), errno.EPERM),
        (lambda rv: rv.unlink("monitors/wip"), errno.EISDIR),
        (lambda rv: rv.mkdir("monitors/foo"), errno.EPERM),
        (lambda rv: rv.mkdir("monitors/wip"), errno.EEXIST),
        (lambda rv: rv.rmdir("monitors/wip"), errno.EPERM),
        (lambda rv: rv.rmdir("enabled_monitors"), errno.ENOTDIR),
    ],
)
def test_file_errors(
    rv: RV, sched: dict[str, Monitor], call: Callable[[RV], object], code: int
) -> None:
    with pytest.raises(OSError) as ei:
        call(rv)
    assert errno_of(ei) == code


def test_handle_access_modes(rv: RV) -> None:
    f = rv.open_file("monitoring_on", os.O_RDONLY)
    with pytest.raises(OSError) as ei:
        f.write(b"0")
    assert errno_of(ei) == errno.EBADF
    g = rv.open_file("monitoring_on", os.O_WRONLY)
    with pytest.raises(OSError) as ei:
        g.read()
    assert errno_of(ei) == errno.EBADF


def test_reads_are_atomic_under_concurrent_writes(rv: RV, sched: dict[str, Monitor]) -> None:
    """One lock: a reader never sees a container half enabled or half disabled."""
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            rv.write("enabled_monitors", b"sched")
            rv.write("enabled_monitors", b"!sched")

    t = threading.Thread(target=flip)
    t.start()
    try:
        seen = {rv.read("enabled_monitors") for _ in range(2000)}
    finally:
        stop.set()
        t.join()
    assert seen <= {b"", b"sched\nsched:c\nsched:b\nsched:a\n"}
