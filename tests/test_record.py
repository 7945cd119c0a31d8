"""``pyrv record`` without the running kernel: the trace.dat writer's production surface,
the choice of events to record (on a fake tracefs tree), and the command line.

The recordings themselves, on the real kernel, are tested in test_live.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECORDED, need_shared
from test_tracedat import assert_same_as_report, raw_events, report

from pyrv.cli.main import main
from pyrv.record import (
    SPOOL_PREFIX,
    RecordError,
    RecordOptions,
    RecordResult,
    record,
    remove_stale_spools,
    resolve_tracepoints,
)
from pyrv.sources.events import LostEvents
from pyrv.sources.tracedat import OPT_CPUSTAT, OPT_UNAME, TraceDat
from pyrv.sources.tracedat_writer import (
    TraceDatWriteError,
    TraceMetadata,
    cmdlines_text,
    cpustat_option,
    uname_option,
    write_tracedat,
)
from pyrv.sources.tracefs import Tracefs, process_start

RAW = RECORDED / "raw"


def keys(items: list) -> list[tuple]:
    return [(e.ts, e.cpu, e.pid, e.name, e.fields, e.flags) for e in items]


def meta() -> TraceMetadata:
    return TraceMetadata.from_raw_dir(need_shared(RAW), cmdlines=cmdlines_text({16092: "w"}))


# ---------------------------------------------------------------------------------------------
# The writer.


@pytest.mark.parametrize(
    ("version", "compression"), [(6, "none"), (7, "none"), (7, "zlib"), (7, "zstd")]
)
def test_cpu_data_streamed_from_files(tmp_path: Path, version: int, compression: str) -> None:
    """Pages given as files (a recording's spool) make the same trace as pages in memory."""
    files = {cpu: tmp_path / f"cpu{cpu}" for cpu in (0, 1)}
    for cpu, f in files.items():
        shutil.copy(need_shared(RAW / f"cpu{cpu}.raw"), f)
    out = tmp_path / "t.dat"
    opts = [uname_option(), cpustat_option(0, "entries: 0\noverrun: 7\n")]
    size = write_tracedat(
        out, {"": files}, meta(), version=version, compression=compression, options=opts
    )
    assert size == out.stat().st_size
    td = TraceDat(out)
    assert (td.version, td.compression, td.cpus, td.clock) == (version, compression, 2, "local")
    assert td.cmdlines[16092] == "w"
    assert td.cpustats[""][0]["overrun"] == "7"
    assert td.uname is not None and os.uname().release in td.uname
    items = list(td)
    assert keys(items) == raw_events()
    if compression != "zlib" and shutil.which("trace-cmd"):
        assert_same_as_report(items, report(out, td.formats))


def test_lost_pages_keep_their_flags_and_counts(tmp_path: Path) -> None:
    """The kernel's missed-events flags and stored counts are in the file as they came."""
    files = {cpu: need_shared(RAW / f"lost_cpu{cpu}.raw") for cpu in (0, 1)}
    out = tmp_path / "lost.dat"
    write_tracedat(out, {"": files}, meta())
    lost = [i for i in TraceDat(out) if isinstance(i, LostEvents)]
    assert lost and lost[0].count == 903
    if shutil.which("trace-cmd"):
        td = TraceDat(out)
        assert_same_as_report(list(td), report(out, td.formats))


def test_cpus_without_data_and_empty_files(tmp_path: Path) -> None:
    out = tmp_path / "e.dat"
    write_tracedat(out, {"": {1: need_shared(RAW / "cpu1.raw").read_bytes()}}, meta(), cpus=4)
    td = TraceDat(out)
    assert td.cpus == 4 and [c.size for c in td.buffers[0].cpus][0] == 0
    assert {e.cpu for e in td} == {1}
    write_tracedat(out, {"": {}}, meta(), cpus=2)
    assert list(TraceDat(out)) == []


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "f.dat"
    with pytest.raises(OSError):
        write_tracedat(out, {"": {0: tmp_path / "missing"}}, meta())
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(OSError):
        write_tracedat(out, {"": {0: tmp_path / "missing"}}, meta())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.dat"] and out.read_bytes() == b"old"


def test_writer_refusals(tmp_path: Path) -> None:
    with pytest.raises(TraceDatWriteError, match="version 8"):
        write_tracedat(tmp_path / "x", {}, meta(), version=8)
    with pytest.raises(TraceDatWriteError, match="version 6 has no compression"):
        write_tracedat(tmp_path / "x", {}, meta(), version=6, compression="zstd")
    with pytest.raises(TraceDatWriteError, match="unknown compression 'lz4'"):
        write_tracedat(tmp_path / "x", {}, meta(), version=7, compression="lz4")
    assert list(tmp_path.iterdir()) == []


def test_only_regular_files_are_replaced(tmp_path: Path, capsys) -> None:
    """The file is renamed into place: a device, a FIFO or a directory there is refused (as
    root, ``-o /dev/null`` would otherwise delete the device); a symlink is written through."""
    fifo, null = tmp_path / "fifo", tmp_path / "null"
    os.mkfifo(fifo)
    try:  # a /dev/null of its own: a regression must not take the machine's
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    (tmp_path / "dir").mkdir()
    for name, kind in ((fifo, "a FIFO"), (null, "a character device")):
        with pytest.raises(TraceDatWriteError, match=f"is {kind}, not a regular file"):
            write_tracedat(name, {"": {0: b""}}, meta())
        assert main(["record", "-o", str(name), "-m", "wwnr", "--duration", "0.1"]) == 2
        assert f"{name}: is {kind}" in capsys.readouterr().err
    with pytest.raises(TraceDatWriteError, match="is a directory"):
        write_tracedat(tmp_path / "dir", {"": {0: b""}}, meta())
    assert fifo.is_fifo() and null.is_char_device()
    target = tmp_path / "target.dat"
    target.write_bytes(b"old")
    (tmp_path / "link.dat").symlink_to(target)
    write_tracedat(tmp_path / "link.dat", {"": {0: b""}}, meta())
    assert (tmp_path / "link.dat").is_symlink() and list(TraceDat(target)) == []
    names = ["dir", "fifo", "link.dat", "null", "target.dat"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_output_names_that_are_not_a_file_are_refused_before_recording(tmp_path: Path) -> None:
    for name, why in (("", "the output file name is empty"), (f"{tmp_path}/x.dat/", "'/'")):
        with pytest.raises(TraceDatWriteError, match=why):
            record(RecordOptions(name, events=["sched:sched_switch"]))
    (tmp_path / "dang").symlink_to("nowhere/x.dat")
    with pytest.raises(RecordError, match=r"nowhere: no such directory \(.*dang links there\)"):
        record(RecordOptions(tmp_path / "dang", events=["sched:sched_switch"]))
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)]).returncode:
        pytest.skip("mounting a read-only tmpfs needs root")
    try:
        with pytest.raises(RecordError, match="x.dat: cannot write in .*ro: Read-only file"):
            record(RecordOptions(ro / "x.dat", events=["sched:sched_switch"]))
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dang", "ro"]


def test_metadata_helpers(tmp_path: Path) -> None:
    assert cmdlines_text({0: "swapper", 7: "a b", 3: "c"}) == b"3 c\n7 a b\n"
    oid, data = cpustat_option(1, "entries: 5\n")
    assert (oid, data) == (OPT_CPUSTAT, b"CPU: 1\nentries: 5\n")
    assert uname_option()[0] == OPT_UNAME
    m = TraceMetadata(b"", b"", trace_clock="local [global] counter\n")
    assert m.clock == "global"
    assert TraceMetadata(b"", b"", trace_clock="").clock == "local"


def fake_tracefs(tmp_path: Path) -> Tracefs:
    """A tracefs tree with the files :func:`resolve_tracepoints` and the writer read."""
    root = tmp_path / "tracing"
    ev = root / "events"
    for name in ("header_page", "header_event"):
        (ev).mkdir(parents=True, exist_ok=True)
        shutil.copy(need_shared(RAW / "events" / name), ev / name)
    for src in need_shared(RAW / "events").glob("*.format"):
        system, _, event = src.name.removesuffix(".format").partition("__")
        (ev / system / event).mkdir(parents=True)
        shutil.copy(src, ev / system / event / "format")
    (ev / "other" / "sched_switch").mkdir(parents=True)
    (ev / "other" / "sched_switch" / "format").write_text("name: sched_switch\nID: 9\n")
    (root / "trace_clock").write_text("local [global] counter\n")
    return Tracefs(root)


def test_events_of_monitors_and_named_events(tmp_path: Path) -> None:
    t = fake_tracefs(tmp_path)
    assert resolve_tracepoints(t, monitors=["wwnr"]) == ["sched:sched_switch", "sched:sched_wakeup"]
    assert resolve_tracepoints(t, monitors=["wwnr"], events=["sched:sched_switch", "print"]) == [
        "sched:sched_switch",
        "sched:sched_wakeup",
        "ftrace:print",
    ]
    with pytest.raises(RecordError, match=r"no trace event sched:nope, nope2"):
        resolve_tracepoints(t, events=["sched:nope", "irq:irq_handler_entry", "nope2"])
    with pytest.raises(RecordError, match="several systems: name one of other:sched_switch, sched"):
        resolve_tracepoints(t, events=["sched_switch"])
    with pytest.raises(RecordError, match="wip needs events missing.*preemptirq:preempt_disable"):
        resolve_tracepoints(t, monitors=["wip"])
    with pytest.raises(RecordError, match="unknown monitor 'nosuch'"):
        resolve_tracepoints(t, monitors=["nosuch"])
    with pytest.raises(RecordError, match="nothing to record"):
        resolve_tracepoints(t)


def test_metadata_from_a_tracefs_tree(tmp_path: Path) -> None:
    t = fake_tracefs(tmp_path)
    assert t.path is not None
    m = TraceMetadata.from_tracefs(t.path, ["sched:sched_switch", "irq:irq_handler_entry"])
    assert [f.split(b"\n", 1)[0] for f in m.ftrace_formats] == [b"name: print"]
    assert list(m.event_formats) == ["sched", "irq"]
    assert m.clock == "global" and m.header_page.startswith(b"\tfield: u64 timestamp")


def test_record_refuses_before_touching_the_kernel(tmp_path: Path) -> None:
    with pytest.raises(RecordError, match="version 5"):
        record(RecordOptions(tmp_path / "x.dat", events=["sched:sched_switch"], version=5))
    with pytest.raises(RecordError, match="version 6 has no compression"):
        record(RecordOptions(tmp_path / "x.dat", events=["x"], compression="zstd"))
    with pytest.raises(RecordError, match="no such directory"):
        record(RecordOptions(tmp_path / "no" / "x.dat", events=["x"]))
    assert list(tmp_path.iterdir()) == []


def test_result_loss_totals() -> None:
    res = RecordResult(Path("x"), [], 2)
    res.stats = {0: {"overrun": "5", "dropped events": "1"}, 1: {"overrun": "2"}}
    assert (res.stat_total("overrun"), res.lost_events) == (7, 8)
    res.lost = [LostEvents(0, 40, "x"), LostEvents(1, None, "y")]
    assert res.lost_events == 40


def test_cli_needs_something_to_record(capsys, tmp_path: Path) -> None:
    assert main(["record", "-o", str(tmp_path / "x.dat")]) == 2
    assert "name a monitor (-m) or an event (-e)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["record", "-m", "wwnr"])  # -o is required
    assert list(tmp_path.iterdir()) == []


def test_spools_of_gone_recordings_are_removed(tmp_path: Path) -> None:
    """A spool names its owner by pid and start time: a reaped pid's and a recycled pid's
    (same pid, another start) are stale; a live owner's and unnamed ones are kept."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    me, start = os.getpid(), process_start(os.getpid())
    assert start is not None
    dirs = {
        "gone": f"{SPOOL_PREFIX}{child.pid}-1-abc",
        "recycled": f"{SPOOL_PREFIX}{me}-{start + 1}-abc",
        "live": f"{SPOOL_PREFIX}{me}-{start}-abc",
        "unnamed": f"{SPOOL_PREFIX}k3j_x9q2",  # an older pyrv's: no owner to check
    }
    for name in dirs.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "cpu0").write_bytes(b"page")
    (tmp_path / f"{SPOOL_PREFIX}1-1-file").write_bytes(b"")  # not a directory: not a spool
    removed = remove_stale_spools(tmp_path)
    assert removed == sorted([dirs["gone"], dirs["recycled"]])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([dirs["live"], dirs["unnamed"], f"{SPOOL_PREFIX}1-1-file"])
