"""Per-object monitors (spec §3.2, §3.3, §4.18, §1.3, §5, §8): the storage table and its
lifetime, ENOMEM, records with object ids, the definition format, and a reference model.

What the spec says, in the words these tests check:

* §3.2: a per-object monitor keeps its instances in a hash table (1024 buckets by default)
  keyed by an integer id; storage is created on start events, or pre-allocated when the
  monitor says so (``DA_SKIP_AUTO_ALLOC``), and destroyed explicitly; the id goes to the trace
  truncated to ``int``.
* §3.3: enabling a per-object monitor initialises an empty table; disabling frees the storage;
  the reset callback (``monitoring_on`` 0 -> 1) resets every instance (storage stays).
* §1.3: an enable that cannot get its per-object storage fails with ENOMEM.
* §5: per-object monitors use the ``_id`` record classes.
* §8 (HA/per-object series): "per-object storage lifetime".
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrv.api import CheckOptions, check
from pyrv.models.automaton import Automaton
from pyrv.models.hybrid import parse_hybrid
from pyrv.monitors.catalogue import build_rv
from pyrv.monitors.da import (
    OBJ_BUCKETS,
    DAMonitor,
    Entry,
    MonitorType,
    ObjectId,
    ObjectStorage,
    StorageConfig,
    c_int,
    key_id,
)
from pyrv.monitors.dispatch import Dispatcher
from pyrv.monitors.ha import HAMonitor
from pyrv.monitors.hooks import DefinitionError, parse_definition
from pyrv.monitors.records import Context, Record
from pyrv.sources.events import LostEvents, TraceEvent
from tests.conftest import WWNR_TABLE

WWNR = Automaton.from_table("objmon", "not_running", WWNR_TABLE, finals=["not_running"])
SWITCH_IN, SWITCH_OUT, WAKEUP = (
    WWNR.events.index(e) for e in ("switch_in", "switch_out", "wakeup")
)
CTX = Context(ts=1_000, cpu=0, pid=52, comm="dd")
US = 1_000


def make(config: StorageConfig | None = None, enable: bool = True):
    out: list[Record] = []
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ, sink=out.append)
    if config is not None:
        mon.storage_config = config
    if enable:
        mon.enable()
        mon.enabled = True
    return mon, out


def rows(out: list[Record]) -> list[tuple]:
    return [(r.kind, r.id, r.state, r.event, r.next_state) for r in out]


# --------------------------------------------------------------------------- storage lifetime


def test_enable_initialises_an_empty_table():
    # §3.3: "per-object initialises an empty table"
    mon, _ = make()
    assert mon.storage is not None and len(mon.storage) == 0
    assert mon.storage.config == StorageConfig()
    assert mon.storage.config.buckets == OBJ_BUCKETS == 1024


def test_start_event_creates_storage_then_starts_and_drops_the_event():
    # §3.2: storage created on start events (da_monitor_start_hook = da_create_storage)
    mon, out = make()
    mon.handle_object(Entry.START, 5, SWITCH_OUT, CTX)
    assert 5 in mon.storage and mon.instances == {5: WWNR.initial} and out == []
    mon.handle_object(Entry.HANDLE, 5, SWITCH_IN, CTX)
    assert rows(out) == [("event", 5, "not_running", "switch_in", "running")]


def test_handle_event_without_storage_is_ignored_and_creates_nothing():
    # da_handle_event: no storage for the id -> nothing happens
    mon, out = make()
    mon.handle_object(Entry.HANDLE, 5, WAKEUP, CTX)
    assert out == [] and len(mon.storage) == 0 and mon.instances == {}


def test_start_run_creates_storage_and_runs_the_event():
    mon, out = make()
    mon.handle_object(Entry.START_RUN, -3, SWITCH_IN, CTX)
    assert -3 in mon.storage
    assert rows(out) == [("event", -3, "not_running", "switch_in", "running")]


def test_skip_auto_alloc_start_events_need_existing_storage():
    # DA_SKIP_AUTO_ALLOC: the start hook only fills storage that exists (da_fill_empty_storage)
    mon, out = make(StorageConfig(auto_alloc=False))
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.handle_object(Entry.START, 5, SWITCH_OUT, CTX)
    assert out == [] and len(mon.storage) == 0 and mon.instances == {}
    mon.storage_action("create", 5)  # an explicit create (da_create_storage from a hook)
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    assert rows(out) == [("event", 5, "not_running", "switch_in", "running")]


def test_preallocated_storage_exists_from_enable():
    # the kernel pre-allocates server storage at enable (init_storage); start events use it
    mon, out = make(StorageConfig(auto_alloc=False, preallocate=(0, -1)))
    assert sorted(mon.storage) == [-1, 0]
    assert mon.instances == {}  # storage, but nothing monitoring yet
    mon.handle_object(Entry.START_RUN, -1, SWITCH_IN, CTX)
    mon.handle_object(Entry.START_RUN, -2, SWITCH_IN, CTX)  # not pre-allocated: ignored
    assert rows(out) == [("event", -1, "not_running", "switch_in", "running")]


def test_destroy_resets_the_instance_and_frees_the_storage():
    # da_destroy_storage: reset, then unhash
    mon, out = make()
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.storage_action("destroy", 5)
    assert 5 not in mon.storage and mon.instances == {}
    mon.handle_object(Entry.HANDLE, 5, SWITCH_OUT, CTX)  # no storage: ignored
    assert len(out) == 1
    # a new start creates fresh storage, in the initial state (nothing left of the old one)
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    assert rows(out)[-1] == ("event", 5, "not_running", "switch_in", "running")


def test_destroy_of_an_object_without_storage_is_a_no_op():
    mon, out = make()
    mon.storage_action("destroy", 9)
    assert len(mon.storage) == 0 and out == []


def test_reset_keeps_the_storage():
    # da_reset (nomiss on a policy change away from SCHED_DEADLINE): not monitoring, storage kept
    mon, out = make(StorageConfig(auto_alloc=False))
    mon.storage_action("create", 5)
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.storage_action("reset", 5)
    assert 5 in mon.storage and mon.instances == {}
    mon.handle_object(Entry.HANDLE, 5, SWITCH_OUT, CTX)  # not monitoring: ignored
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)  # storage still there: starts
    assert [r[0] for r in rows(out)] == ["event", "event"]


def test_create_on_existing_storage_keeps_its_state():
    # create is get-or-create (da_create_or_get): a second create does not reset
    mon, _ = make()
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.storage_action("create", 5)
    assert mon.instances == {5: WWNR.states.index("running")} and len(mon.storage) == 1


def test_violation_resets_the_instance_but_not_the_storage():
    mon, out = make(StorageConfig(auto_alloc=False, preallocate=(5,)))
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.handle_object(Entry.HANDLE, 5, SWITCH_IN, CTX)  # running x switch_in: not in the table
    assert rows(out)[-1] == ("error", 5, "running", "switch_in", None)
    assert mon.instances == {} and 5 in mon.storage


def test_monitoring_on_reset_resets_instances_and_keeps_storage():
    # §1.3/§3.3: monitoring_on 0 -> 1 calls reset() = da_monitor_reset_all: every instance
    rv = build_rv()
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ)
    rv.register_monitor(mon)
    rv.write("enabled_monitors", b"objmon\n")
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    mon.handle_object(Entry.START_RUN, -7, SWITCH_IN, CTX)
    rv.write("monitoring_on", b"0\n")
    mon.handle_object(Entry.START_RUN, 8, SWITCH_IN, CTX)  # gate off: no storage either
    rv.write("monitoring_on", b"1\n")
    assert mon.instances == {} and sorted(mon.storage) == [-7, 5]
    # probes stay attached while monitoring is off: storage rows still act (kernel hooks
    # handle_newtask/handle_exit do not look at monitoring_on)
    rv.write("monitoring_on", b"0\n")
    mon.storage_action("destroy", 5)
    assert sorted(mon.storage) == [-7]


def test_disable_frees_every_storage_and_reenable_starts_empty():
    # §3.3 "Disable = destroy: ... free storage"; enabling again: an empty table, re-preallocated
    rv = build_rv()
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ)
    mon.storage_config = StorageConfig(preallocate=(0,))
    rv.register_monitor(mon)
    rv.write("enabled_monitors", b"objmon\n")
    mon.handle_object(Entry.START_RUN, 5, SWITCH_IN, CTX)
    assert sorted(mon.storage) == [0, 5]
    rv.write("enabled_monitors", b"!objmon\n")
    assert len(mon.storage) == 0 and mon.instances == {}
    mon.storage_action("create", 6)  # disabled: its probes are detached
    mon.handle_object(Entry.START_RUN, 6, SWITCH_IN, CTX)
    assert len(mon.storage) == 0
    rv.write("enabled_monitors", b"objmon\n")
    assert sorted(mon.storage) == [0] and mon.instances == {}


def test_per_object_takes_no_per_task_slot():
    # per-object storage is the monitor's own table, not a task_struct slot (§1.3)
    rv = build_rv(per_task_slots=1)
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ)
    rv.register_monitor(mon)
    rv.write("enabled_monitors", b"objmon\n")
    assert rv.task_slots_in_use() == [] and mon.uses_task_slot is False


# --------------------------------------------------------------------------- ENOMEM (§1.3)


def test_enable_fails_with_enomem_when_preallocation_does_not_fit():
    rv = build_rv()
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ)
    mon.storage_config = StorageConfig(preallocate=(0, -1, -2), max_objects=2)
    rv.register_monitor(mon)
    with pytest.raises(OSError) as info:
        rv.write("enabled_monitors", b"objmon\n")
    assert info.value.errno == errno.ENOMEM
    assert mon.enabled is False and len(mon.storage) == 0  # da_monitor_destroy on failure
    assert rv.read("enabled_monitors") == b""
    with pytest.raises(OSError) as info:
        rv.write("monitors/objmon/enable", b"1\n")
    assert info.value.errno == errno.ENOMEM
    assert rv.read("monitors/objmon/enable") == b"0\n\0"


def test_enomem_of_a_child_rolls_the_container_back():
    # §1.3: the first failing child stops the container's enable, every child is disabled
    from pyrv.monitors.monitor import Container

    rv = build_rv()
    box = Container("box", "test container")
    rv.register_monitor(box)
    ok = DAMonitor("okmon", "test", WWNR, MonitorType.PER_OBJ)
    bad = DAMonitor("badmon", "test", WWNR, MonitorType.PER_OBJ)
    bad.storage_config = StorageConfig(preallocate=(1,), max_objects=0)
    rv.register_monitor(bad, box)
    rv.register_monitor(ok, box)  # listed first: enabled first
    with pytest.raises(OSError) as info:
        rv.write("enabled_monitors", b"box\n")
    assert info.value.errno == errno.ENOMEM
    assert not ok.enabled and not bad.enabled and not box.enabled
    assert len(ok.storage) == 0


def test_a_full_table_drops_the_start_event_and_counts_it():
    # the kernel's start hook gets NULL from a failed allocation and returns: event lost
    mon, out = make(StorageConfig(max_objects=2))
    for ident in (1, 2, 3):
        mon.handle_object(Entry.START_RUN, ident, SWITCH_IN, CTX)
    assert sorted(mon.storage) == [1, 2] and mon.counts["enomem"] == 1
    assert [r.id for r in out] == [1, 2]
    mon.storage_action("create", 4)  # an explicit create fails the same way
    assert mon.counts["enomem"] == 2 and 4 not in mon.storage
    mon.storage_action("destroy", 1)  # room again
    mon.handle_object(Entry.START_RUN, 3, SWITCH_IN, CTX)
    assert sorted(mon.storage) == [2, 3] and [r.id for r in out] == [1, 2, 3]


def test_the_table_is_full_only_by_count_buckets_chain():
    # 1024 buckets; ids hashing to one bucket chain (hlist), they never fill a bucket
    table = ObjectStorage(StorageConfig(max_objects=10))
    b = table.bucket_of(0)
    same = [i for i in range(-5000, 5000) if table.bucket_of(i) == b][:10]
    assert len(same) == 10
    assert all(table.create(i) for i in same)
    assert len(table) == 10 and all(i in table for i in same) and table.full()
    assert not table.create(123456)


def test_bucket_is_the_kernels_hash_32():
    # hash_min() of an int key is hash_32(val, 10) = (val * GOLDEN_RATIO_32) >> 22 (u32)
    table = ObjectStorage()
    assert table.bucket_of(0) == 0
    assert table.bucket_of(1) == 0x61C88647 >> 22
    assert table.bucket_of(-1) == ((0xFFFFFFFF * 0x61C88647) & 0xFFFFFFFF) >> 22
    assert {table.bucket_of(i) for i in range(-20000, 20000)} == set(range(1024))
    with pytest.raises(ValueError):
        ObjectStorage(StorageConfig(buckets=1000))


# --------------------------------------------------------------------------- records (§5)


def test_records_carry_the_object_id_as_an_int():
    mon, out = make()
    mon.emit_events = True
    for ident in (5, -3, 0, 2**32 + 7, 2**31):
        mon.handle_object(Entry.START_RUN, ident, SWITCH_IN, CTX)
        mon.handle_object(Entry.HANDLE, ident, WAKEUP, CTX)  # running x wakeup: error
    assert [r.id for r in out] == [5, 5, -3, -3, 0, 0, 7, 7, -(2**31), -(2**31)]
    ev_line, err_line = out[2].trace_line(), out[3].trace_line()
    assert ev_line.endswith("event_objmon: -3: not_running x switch_in -> running")
    assert err_line.endswith("error_objmon: -3: event wakeup not expected in the state running")
    assert out[3].reaction_message() == (
        "rv: monitor objmon does not allow event wakeup on state running\n"
    )
    # the full id stays the key: 2**32 + 7 and 7 are two objects printed alike
    assert 2**32 + 7 in mon.storage and 7 not in mon.storage


def test_object_ids_are_not_idle_tasks():
    # per-task keys below 0 are idle tasks (printed 0); an object's negative id is itself
    assert key_id(-1) == 0
    assert key_id(ObjectId(-1)) == -1
    assert c_int(2**31) == -(2**31) and c_int(-(2**31) - 1) == 2**31 - 1


LEASE = parse_hybrid(
    """digraph state_automaton {
	{node [shape = plaintext, style=invis, label=""] "__init_free"};
	{node [shape = doublecircle] "free"};
	{node [shape = circle] "held"};
	"__init_free" -> "free";
	"free" -> "held" [ label = "take;reset(clk)" ];
	"held" [label = "held\\nclk < 10us"];
	"held" -> "free" [ label = "give" ];
}
""",
    "lease.dot",
    name="lease",
)


def test_ha_per_object_env_error_and_destroy_cancels_the_timer():
    out: list[Record] = []
    mon = HAMonitor("lease", "test", LEASE, MonitorType.PER_OBJ, sink=out.append)
    mon.enable()
    mon.enabled = True
    take = LEASE.automaton.event_index("take")
    mon.handle_object(Entry.START_RUN, -2, take, Context(0, 1, 10, "a"))
    mon.handle_object(Entry.START_RUN, 4, take, Context(0, 1, 10, "a"))
    mon.storage_action("destroy", 4)  # the kernel's da_destroy_storage resets: timer cancelled
    mon.advance_time(20 * US)
    assert [(r.kind, r.id, r.state, r.event) for r in out] == [
        ("event", -2, "free", "take"),
        ("event", 4, "free", "take"),
        ("error_env", -2, "held", "none"),
    ]
    assert out[-1].payload() == "-2: event none not expected in the state held with env clk=10000"
    assert mon.instances == {} and sorted(mon.storage) == [-2]


# --------------------------------------------------------------------------- definitions


CATALOGUE = {
    "obj:obj_op": {"id": int, "op": int, "name": str},
    "sched:sched_process_exit": {"comm": str, "pid": int, "prio": int},
}


def fields_of(tp):
    key = tp if ":" in tp else next((k for k in CATALOGUE if k.endswith(":" + tp)), tp)
    return (key, CATALOGUE[key]) if key in CATALOGUE else None


def parse(text: str):
    return parse_definition(text, "obj.toml", Path("."), fields_of, lambda name: WWNR)


HEAD = """\
[monitor]
name = "objmon"
description = "d"
type = "per_obj"
model = "objmon"
"""


def test_per_obj_definition_with_object_targets_and_storage_rows():
    d = parse(
        HEAD
        + """
[storage]
auto_alloc = false
preallocate = [7, { from = -2, to = 0 }]
max_objects = 100

[[hooks]]
tracepoint = "obj:obj_op"
object = "id"
storage = "create"
when = "op == 0"

[[hooks]]
tracepoint = "obj:obj_op"
object = "-common_cpu"
when = "op == 1"
entry = "start_run"
event = "switch_in"

[[hooks]]
tracepoint = "sched:sched_process_exit"
object = "pid"
storage = "destroy"

[[hooks]]
tracepoint = "obj:obj_op"
object = "current"
storage = "reset"
"""
    )
    assert d.type is MonitorType.PER_OBJ
    assert d.storage == StorageConfig(
        auto_alloc=False, preallocate=(7, -2, -1, 0), buckets=1024, max_objects=100
    )
    assert [(h.target, h.storage, h.model_event_name) for h in d.hooks] == [
        ("id", "create", "storage create"),
        ("-common_cpu", None, "switch_in"),
        ("pid", "destroy", "storage destroy"),
        ("current", "reset", "storage reset"),
    ]
    assert d.hooks[1].entry is Entry.START_RUN


@pytest.mark.parametrize(
    "body, says",
    [
        ('object = "name"\nevent = "wakeup"', "that field is text"),
        ('object = "nope"\nevent = "wakeup"', "neither 'current' nor an integer field"),
        ('task = "id"\nevent = "wakeup"', "takes no 'task' target"),
        ('event = "wakeup"', "needs object = ..."),
        ('object = "id"\nstorage = "free"', "storage must be one of create, destroy, reset"),
        ('object = "id"\nstorage = "create"\nevent = "wakeup"', "a storage row takes no 'event'"),
    ],
)
def test_per_obj_hook_errors(body: str, says: str):
    with pytest.raises(DefinitionError) as info:
        parse(HEAD + f'\n[[hooks]]\ntracepoint = "obj:obj_op"\n{body}\n')
    assert says in str(info.value)
    assert info.value.line is not None


@pytest.mark.parametrize(
    "table, says",
    [
        ("buckets = 1000", "power of two"),
        ("max_objects = -1", "max_objects must be >= 0"),
        ('preallocate = ["x"]', "preallocate"),
        ("auto_alloc = 1", "auto_alloc"),
        ("size = 3", "unknown key(s) size"),
    ],
)
def test_storage_table_errors(table: str, says: str):
    with pytest.raises(DefinitionError) as info:
        parse(HEAD + f"\n[storage]\n{table}\n")
    assert says in str(info.value)


def test_storage_and_object_belong_to_per_obj_monitors():
    per_task = HEAD.replace("per_obj", "per_task")
    with pytest.raises(DefinitionError, match=r"\[storage\] is for per_obj monitors"):
        parse(per_task + "\n[storage]\nauto_alloc = false\n")
    with pytest.raises(DefinitionError, match="takes no 'object' target"):
        parse(
            per_task + '\n[[hooks]]\ntracepoint = "obj:obj_op"\nobject = "id"\nevent = "wakeup"\n'
        )
    with pytest.raises(DefinitionError, match="storage rows are for per_obj monitors"):
        parse(per_task + '\n[[hooks]]\ntracepoint = "obj:obj_op"\nstorage = "create"\n')


# --------------------------------------------------------------------------- through a trace


def op(ts: int, ident: int, code: int, cpu: int = 0, pid: int = 10) -> TraceEvent:
    return TraceEvent(ts, cpu, pid, "t", "obj_op", {"id": ident, "op": code}, "obj")


DISPATCH_DEF = (
    HEAD
    + """
[storage]
auto_alloc = false

[[hooks]]
tracepoint = "obj:obj_op"
object = "id"
when = "op == 0"
storage = "create"

[[hooks]]
tracepoint = "obj:obj_op"
object = "id"
when = "op == 1"
entry = "start_run"
event = "switch_in"

[[hooks]]
tracepoint = "obj:obj_op"
object = "-id"
when = "op == 2"
event = "switch_out"

[[hooks]]
tracepoint = "obj:obj_op"
object = "-common_cpu"
when = "op == 3"
entry = "start_run"
event = "switch_in"

[[hooks]]
tracepoint = "obj:obj_op"
object = "current"
when = "op == 4"
storage = "create"

[[hooks]]
tracepoint = "obj:obj_op"
object = "id"
when = "op == 9"
storage = "destroy"
"""
)


def dispatched(events: list[TraceEvent], config_def: str = DISPATCH_DEF):
    d = parse(config_def)
    out: list[Record] = []
    mon = DAMonitor(d.name, d.description, WWNR, d.type, sink=out.append)
    mon.definition = d
    mon.enable()
    mon.enabled = True
    disp = Dispatcher([mon])
    for e in events:
        disp.feed(e)
    return mon, disp, out


def test_dispatcher_routes_objects_and_storage_rows():
    mon, disp, out = dispatched(
        [
            op(1, 5, 1),  # no storage, no auto alloc: ignored
            op(2, 5, 0),  # create 5
            op(3, 5, 1),  # start_run 5: switch_in
            op(4, -5, 2),  # object -(-5) = 5: switch_out
            op(5, 0, 0, cpu=3),  # create object 0 ...
            op(6, 0, 3, cpu=3),  # ... but op 3 targets -cpu = -3: no storage, ignored
            op(7, -3, 0),  # create -3
            op(8, 0, 3, cpu=3),  # start_run on -3
            op(9, 0, 4, pid=77),  # create the current task's object
            op(10, 5, 9),  # destroy 5
        ]
    )
    assert rows(out) == [
        ("event", 5, "not_running", "switch_in", "running"),
        ("event", 5, "running", "switch_out", "not_running"),
        ("event", -3, "not_running", "switch_in", "running"),
    ]
    assert sorted(mon.storage) == [-3, 0, 77]
    assert disp.hooked["objmon"] == 10
    disp.lost(
        LostEvents(cpu=0, count=1, reason="lost", pids=(5,))
    )  # a gap: every instance reset, storage kept
    assert mon.instances == {} and sorted(mon.storage) == [-3, 0, 77]


def test_check_runs_a_per_object_monitor_on_a_text_trace(tmp_path: Path):
    (tmp_path / "objmon.toml").write_text(
        DISPATCH_DEF.replace('model = "objmon"', 'model = "wwnr"')
        + '\n[events."obj:obj_op"]\nfields = { id = "int", op = "int" }\n'
    )
    lines = [
        (1.0, 0, 10, "id=5 op=0"),
        (1.1, 0, 10, "id=5 op=1"),
        (1.2, 0, 10, "id=5 op=1"),  # running x switch_in: error
        (1.3, 2, 10, "id=-2 op=0"),
        (1.4, 2, 10, "id=0 op=3"),  # object -2 (the CPU negated)
    ]
    text = "# tracer: nop\n#\n" + "".join(
        f"{'t':>16}-{pid:<7d} [{cpu:03d}] ..... {ts:12.6f}: obj_op: {p}\n"
        for ts, cpu, pid, p in lines
    )
    (tmp_path / "t.txt").write_text(text)
    recs: list[Record] = []
    result = check(
        tmp_path / "t.txt",
        CheckOptions(
            monitors=["objmon"],
            definitions=[tmp_path / "objmon.toml"],
            on_record=recs.append,
            emit_events=True,
        ),
    )
    assert [r.trace_line().split(": ", 1)[1] for r in recs] == [
        "event_objmon: 5: not_running x switch_in -> running",
        "error_objmon: 5: event switch_in not expected in the state running",
        "event_objmon: -2: not_running x switch_in -> running",
    ]
    (summary,) = result.monitors
    assert (summary.type, summary.violations, summary.instances) == ("per_obj", 1, 2)


# --------------------------------------------------------------------------- reference model


class Reference:
    """An independent reading of §3.2/§3.3 for per-object monitors: a set of objects with
    storage (bounded by ``cap``) and, for some of them, a current state."""

    def __init__(self, auto: bool, cap: int, pre: tuple[int, ...]) -> None:
        self.auto, self.cap = auto, cap
        self.enabled = len(set(pre)) <= cap
        self.alive: set[int] = set(pre) if self.enabled else set()
        self.state: dict[int, str] = {}
        self.out: list[tuple] = []
        self.enomem = 0

    def _room(self, ident: int) -> bool:
        if ident in self.alive:
            return True
        if len(self.alive) == self.cap:
            self.enomem += 1
            return False
        self.alive.add(ident)
        return True

    def op(self, what: str, ident: int, event: str | None) -> None:
        if not self.enabled:
            return
        if what == "create":
            self._room(ident)
        elif what == "destroy":
            self.alive.discard(ident)
            self.state.pop(ident, None)
        elif what == "reset":
            self.state.pop(ident, None)
        elif what == "reset_all":
            self.state.clear()
        else:
            starts = what != "handle"
            if ident not in self.alive and not (starts and self.auto and self._room(ident)):
                return
            if ident not in self.state:
                if not starts:
                    return
                self.state[ident] = "not_running"
                if what == "start":
                    return
            cur = self.state[ident]
            nxt = WWNR_TABLE.get((cur, event))
            if nxt is None:
                self.out.append(("error", c_int(ident), cur, event, None))
                del self.state[ident]
            else:
                self.out.append(("event", c_int(ident), cur, event, nxt))
                self.state[ident] = nxt


IDS = st.sampled_from([-2, -1, 0, 1, 2, 2**32 + 1])
OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["create", "destroy", "reset", "reset_all", "handle", "start", "start_run"]
        ),
        IDS,
        st.sampled_from(["switch_in", "switch_out", "wakeup"]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=OPS,
    auto=st.booleans(),
    cap=st.integers(0, 4),
    pre=st.lists(IDS, max_size=4).map(tuple),
)
def test_per_object_handling_matches_the_reference(ops, auto, cap, pre):
    ref = Reference(auto, cap, pre)
    out: list[Record] = []
    mon = DAMonitor("objmon", "test", WWNR, MonitorType.PER_OBJ, sink=out.append)
    mon.storage_config = StorageConfig(auto_alloc=auto, preallocate=tuple(pre), max_objects=cap)
    try:
        mon.enable()
        mon.enabled = True
    except OSError as exc:
        assert exc.errno == errno.ENOMEM and not ref.enabled
    else:
        assert ref.enabled
    entries = {"handle": Entry.HANDLE, "start": Entry.START, "start_run": Entry.START_RUN}
    for what, ident, event in ops:
        ref.op(what, ident, event)
        if not mon.enabled:
            continue
        if what == "reset_all":
            mon.reset()
        elif what in entries:
            mon.handle_object(entries[what], ident, WWNR.events.index(event), CTX)
        else:
            mon.storage_action(what, ident)
    assert rows(out) == ref.out
    if mon.enabled:
        assert set(mon.storage) == ref.alive
        assert {k: WWNR.states[s] for k, s in mon.instances.items()} == ref.state
        assert mon.counts["enomem"] == ref.enomem
