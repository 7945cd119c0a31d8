"""trace-cmd trace.dat files (v6, v7; none/zlib/zstd) against ``trace-cmd report -N -t``.

Every event of every .dat in shared/traces is compared with what Debian's trace-cmd prints for
the same file (parsed with pyrv's text reader). Files trace-cmd cannot make here (zlib, extra
instance buffers, time offsets, big-endian) are written by :func:`write_tracedat` from the
kernel's raw pages in traces/recorded/raw by pyrv's writer
(:mod:`pyrv.sources.tracedat_writer`), and must decode to the same events as those pages.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RECORDED, SHARED, need_shared

from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.formats import FormatSet
from pyrv.sources.ftrace_text import TextTraceReader, split_kv
from pyrv.sources.ring_buffer import BinaryTraceError, RawTraceDir
from pyrv.sources.tracedat import MAGIC, TraceDat, iter_tracedat
from pyrv.sources.tracedat_writer import TraceMetadata
from pyrv.sources.tracedat_writer import write_tracedat as _write_tracedat

TRACEDAT = RECORDED / "tracedat"
RAW = RECORDED / "raw"
TRAPPY = SHARED / "traces" / "public" / "trappy_raw_trace.dat"
DAT_FILES = sorted(TRACEDAT.glob("*.dat")) + [TRAPPY] if TRACEDAT.is_dir() else []


def trace_cmd() -> str:
    exe = shutil.which("trace-cmd")
    if exe is None:
        pytest.skip(
            "trace-cmd is not installed (apt-get install trace-cmd): it is the oracle these"
            " tests compare with"
        )
    return exe


def report(path: Path, formats: FormatSet) -> list:
    """``trace-cmd report -N -t`` of the file, read with pyrv's text reader."""
    out = subprocess.run(
        [trace_cmd(), "report", "-N", "-t", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    lines: list[str] = []
    for line in out.splitlines(keepends=True):
        # a bprint message with a newline continues on a line of its own: join it back
        if lines and line.startswith(" ") and not re.search(r"-\d+\s+\[\d+\]\s", line):
            lines[-1] = lines[-1].rstrip("\n") + " " + line
        else:
            lines.append(line)
    text_formats = FormatSet([f for f in formats if f.name not in ("bprint", "bputs")])
    return list(TextTraceReader(io.StringIO("".join(lines)), formats=text_formats))


def assert_same_as_report(binary: list, text: list) -> None:
    bev = [e for e in binary if isinstance(e, TraceEvent)]
    tev = [e for e in text if isinstance(e, TraceEvent)]
    assert len(bev) == len(tev)
    for b, t in zip(bev, tev, strict=True):
        fields = dict(b.fields)
        if b.name == "bprint":
            # report prints "<ip symbol>: <message>" (its newlines joined back by a blank
            # here): the message's key=value pairs are what the text reader keeps
            pairs = split_kv(str(b.fields["buf"]).replace("\n", " "))[1]
            assert {k: str(v) for k, v in pairs} == {k: str(v) for k, v in t.fields.items()}
            assert (b.ts, b.cpu, b.pid, b.comm) == (t.ts, t.cpu, t.pid, t.comm)
            continue
        assert (b.ts, b.cpu, b.pid, b.comm, b.name, fields) == (
            t.ts,
            t.cpu,
            t.pid,
            t.comm,
            t.name,
            t.fields,
        ), (b, t)
    # losses: same CPUs and counts, each just before the same event of its CPU
    blost = [(x.cpu, x.count, _next_on_cpu(binary, i)) for i, x in enumerate(binary) if _lost(x)]
    tlost = [(x.cpu, x.count, _next_on_cpu(text, i)) for i, x in enumerate(text) if _lost(x)]
    assert blost == tlost


def _lost(x: object) -> bool:
    return isinstance(x, LostEvents)


def _next_on_cpu(items: list, i: int) -> tuple | None:
    cpu = items[i].cpu
    for e in items[i + 1 :]:
        if isinstance(e, TraceEvent) and e.cpu == cpu:
            return (e.ts, e.pid, e.name)
    return None


# ---------------------------------------------------------------------------------------------
# Every real file against trace-cmd.


@pytest.mark.parametrize("path", DAT_FILES, ids=lambda p: p.name)
def test_every_event_equals_trace_cmd_report(path: Path) -> None:
    need_shared(path)
    td = TraceDat(path)
    binary = list(td)
    assert_same_as_report(binary, report(path, td.formats))
    assert len(binary) > 300


def test_metadata_of_the_recorded_files() -> None:
    v6 = TraceDat(need_shared(TRACEDAT / "sched_v6.dat"))
    v7 = TraceDat(TRACEDAT / "sched_v7_nocomp.dat")
    zst = TraceDat(TRACEDAT / "sched_v7_zstd.dat")
    for td, version, comp in ((v6, 6, "none"), (v7, 7, "none"), (zst, 7, "zstd")):
        assert (td.version, td.compression, td.cpus, td.clock) == (version, comp, 2, "local")
        assert (td.byteorder, td.long_size, td.page_size) == ("<", 8, 4096)
        assert [b.name for b in td.buffers] == [""] and len(td.buffers[0].cpus) == 2
        assert td.cmdlines[15544] == "final_top.sh"
        assert td.formats.by_name("sched:sched_switch").id == 372
        assert (td.counter_clock, td.has_context, td.skipped, td.dropped_incomplete) == (
            False,
            True,
            [],
            0,
        )
        assert set(td.cpustats[""]) == {0, 1} and "overrun" in td.cpustats[""][0]
        assert td.uname is not None and "6.18.44" in td.uname
        assert td.stopped_at is None
    assert zst.compression_version == "1.5.4"
    a, b, c = (list(x) for x in (v6, v7, zst))
    key = [(e.ts, e.cpu, e.pid, e.name, e.fields) for e in a]
    assert key == [(e.ts, e.cpu, e.pid, e.name, e.fields) for e in b]
    assert key == [(e.ts, e.cpu, e.pid, e.name, e.fields) for e in c]
    assert len(a) == 4094


def test_instance_buffer_and_lost_events() -> None:
    td = TraceDat(need_shared(TRACEDAT / "lost_events_instance_tfr.dat"))
    assert [(b.name, len(b.cpus)) for b in td.buffers] == [("", 0), ("tfr", 2)]
    assert td.cpustats["tfr"][0]["overrun"] == "448"
    assert td.cpustats["tfr"][1]["overrun"] == "443"
    items = list(td)
    lost = [i for i in items if isinstance(i, LostEvents)]
    assert [(x.cpu, x.count) for x in lost] == [(0, 448), (1, 443)]
    assert items[0] is lost[0] and lost[0].ts is not None
    assert len(list(TraceDat(TRACEDAT / "lost_events_instance_tfr.dat", buffer="tfr"))) == 387
    assert list(TraceDat(TRACEDAT / "lost_events_instance_tfr.dat", buffer="")) == []
    with pytest.raises(TraceError, match="no buffer 'x'"):
        list(TraceDat(TRACEDAT / "lost_events_instance_tfr.dat", buffer="x"))


def test_old_kernel_v6_file_with_bprint() -> None:
    """trappy's file: 6 CPUs (two empty, three with a header-only page), no time_stamp line
    in header_event, bprint messages formatted from the printk section."""
    td = TraceDat(need_shared(TRAPPY))
    assert (td.version, td.cpus, td.layout.event.time_stamp) == (6, 6, None)
    items = list(td)
    bp = [e for e in items if e.name == "bprint"]
    assert [e.fields["buf"] for e in bp] == ["fig: cpu=0\n gid=4", "fig: cpu=5\n gid=1"]
    assert bp[0].fields["fmt"] == "fig: cpu=%d\n gid=%d\n"
    sw = [e for e in items if e.name == "sched_switch"]
    assert len(sw) == 755 and {s.fields["prev_state"] for s in sw} >= {"R", "R+", "S"}


# ---------------------------------------------------------------------------------------------
# Files written here: zlib, several buffers, offsets, big-endian.


def _u(order: str, fmt: str, *v: int) -> bytes:
    return struct.pack(order + fmt, *v)


CMDLINES = b"16090 final_raw.sh\n16092 workload.sh\n"


def write_tracedat(
    path: Path,
    buffers: dict[str, dict[int, bytes]],
    *,
    version: int = 7,
    raw: Path = RAW,
    extra_options: list[tuple[int, bytes]] = (),
    chunk_pages: int = 4,
    **kw,
) -> None:
    """pyrv's trace.dat writer with the header and format files of ``raw`` (and two saved
    cmdlines), v7 and small compressed chunks unless told otherwise."""
    meta = TraceMetadata.from_raw_dir(raw, cmdlines=CMDLINES)
    _write_tracedat(
        path,
        buffers,
        meta,
        version=version,
        options=list(extra_options),
        chunk_pages=chunk_pages,
        **kw,
    )


def raw_pages() -> dict[int, bytes]:
    return {cpu: (need_shared(RAW) / f"cpu{cpu}.raw").read_bytes() for cpu in (0, 1)}


def raw_events() -> list[tuple]:
    return [(e.ts, e.cpu, e.pid, e.name, e.fields, e.flags) for e in RawTraceDir(RAW)]


def keys(items: list) -> list[tuple]:
    return [(e.ts, e.cpu, e.pid, e.name, e.fields, e.flags) for e in items]


@pytest.mark.parametrize(
    ("version", "compression"), [(7, "zlib"), (7, "zstd"), (7, "none"), (6, "none")]
)
def test_written_files_decode_like_the_raw_pages(
    tmp_path: Path, version: int, compression: str
) -> None:
    path = tmp_path / "t.dat"
    write_tracedat(path, {"": raw_pages()}, version=version, compression=compression)
    td = TraceDat(path)
    assert (td.version, td.compression, td.cpus, td.clock) == (version, compression, 2, "local")
    items = list(td)
    assert keys(items) == raw_events()
    assert {e.comm for e in items if e.pid == 16092} == {"workload.sh"}
    if compression != "zlib" and shutil.which("trace-cmd"):
        # trace-cmd reads what this writer made the same way (it has no zlib here)
        assert_same_as_report(list(TraceDat(path)), report(path, td.formats))


@pytest.mark.parametrize("version", [6, 7])
def test_instances_are_merged_in_time_order(tmp_path: Path, version: int) -> None:
    pages = raw_pages()
    path = tmp_path / "inst.dat"
    write_tracedat(
        path, {"": {0: pages[0]}, "second": {1: pages[1]}}, version=version, compression="none"
    )
    td = TraceDat(path)
    assert [b.name for b in td.buffers] == ["", "second"]
    assert keys(list(td)) == raw_events()
    assert [e.cpu for e in TraceDat(path, buffer="second")] == [1] * 912


def test_time_offset_and_tsc2nsec_options(tmp_path: Path) -> None:
    path = tmp_path / "off.dat"
    opts = [(7, b"1000\0"), (14, _u("<", "IIQ", 3, 1, 0))]  # OFFSET, TSC2NSEC (x3 >> 1)
    write_tracedat(path, {"": raw_pages()}, extra_options=opts)
    td = TraceDat(path)
    assert (td.ts_offset, td.tsc2nsec) == (1000, (3, 1, 0))
    assert [e.ts for e in td] == [(k[0] * 3 >> 1) + 1000 for k in raw_events()]


def test_zstandard_missing_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "z.dat"
    write_tracedat(path, {"": raw_pages()}, compression="zstd")
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(TraceError, match="needs the 'zstandard' Python package"):
        TraceDat(path)


# ---------------------------------------------------------------------------------------------
# Damage: TraceError naming section and offset; partial=True keeps what was read.


def _copy(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_truncated_v6_data(tmp_path: Path) -> None:
    src = need_shared(TRACEDAT / "sched_v6.dat").read_bytes()
    whole = TraceDat(TRACEDAT / "sched_v6.dat")
    cpu1 = whole.buffers[0].cpus[1]
    cut = cpu1.offset + 5 * 4096 + 1000  # in CPU 1's sixth page
    path = _copy(tmp_path, "cut.dat", src[:cut])
    with pytest.raises(BinaryTraceError, match="truncated") as exc:
        list(TraceDat(path))
    assert exc.value.section == "cpu1 data" and exc.value.offset is not None
    assert f"byte offset {exc.value.offset}" in str(exc.value)

    td = TraceDat(path, partial=True)
    items = list(td)
    full = list(TraceDat(TRACEDAT / "sched_v6.dat"))
    marks = [i for i in items if isinstance(i, LostEvents)]
    assert len(marks) == 1 and marks[0].cpu == 1 and marks[0].count is None
    assert "truncated" in marks[0].reason and str(td.stopped_at) in marks[0].reason
    assert td.stopped_at is not None and cpu1.offset < td.stopped_at <= cut
    assert "truncated" in (td.stop_reason or "")
    got0 = [e for e in items if isinstance(e, TraceEvent) and e.cpu == 0]
    got1 = [e for e in items if isinstance(e, TraceEvent) and e.cpu == 1]
    assert keys(got0) == keys([e for e in full if e.cpu == 0])  # CPU 0 is whole
    full1 = [e for e in full if e.cpu == 1]
    assert 0 < len(got1) < len(full1) and keys(got1) == keys(full1[: len(got1)])
    assert marks[0].ts == got1[-1].ts  # the marker follows CPU 1's last event


def test_corrupt_zstd_chunk(tmp_path: Path) -> None:
    src = bytearray(need_shared(TRACEDAT / "sched_v7_zstd.dat").read_bytes())
    cpu1 = TraceDat(TRACEDAT / "sched_v7_zstd.dat").buffers[0].cpus[1]
    pos = cpu1.offset + 4 + 8 + 200  # inside the first chunk's zstd frame
    src[pos : pos + 64] = b"\xff" * 64
    path = _copy(tmp_path, "bad.dat", bytes(src))
    with pytest.raises(BinaryTraceError, match="does not decompress|past|record") as exc:
        list(TraceDat(path))
    assert "cpu1 data" in str(exc.value)
    td = TraceDat(path, partial=True)
    items = list(td)
    (mark,) = [i for i in items if isinstance(i, LostEvents)]
    assert td.stopped_at is not None and str(td.stopped_at) in mark.reason
    full = list(TraceDat(TRACEDAT / "sched_v7_zstd.dat"))
    got = {c: [e for e in items if isinstance(e, TraceEvent) and e.cpu == c] for c in (0, 1)}
    assert keys(got[0]) == keys([e for e in full if e.cpu == 0])
    full1 = [e for e in full if e.cpu == 1]
    assert len(got[1]) < len(full1) and keys(got[1]) == keys(full1[: len(got[1])])
    assert mark.cpu == 1 and mark.ts == (got[1][-1].ts if got[1] else 0)


def test_corrupt_page_in_uncompressed_v7(tmp_path: Path) -> None:
    src = bytearray(need_shared(TRACEDAT / "sched_v7_nocomp.dat").read_bytes())
    cpu0 = TraceDat(TRACEDAT / "sched_v7_nocomp.dat").buffers[0].cpus[0]
    page = cpu0.offset + 4096
    src[page + 8 : page + 16] = struct.pack("<Q", 9999)  # commit larger than the page
    path = _copy(tmp_path, "bad.dat", bytes(src))
    with pytest.raises(BinaryTraceError, match="commit says 9999") as exc:
        list(TraceDat(path))
    assert exc.value.offset == page and exc.value.section == "cpu0 data page 1"
    td = TraceDat(path, partial=True)
    items = list(td)
    assert td.stopped_at == page
    mark = next(i for i in items if isinstance(i, LostEvents))
    assert mark.cpu == 0 and "no events after this point" in mark.reason


@pytest.mark.parametrize("name", ["sched_v6.dat", "sched_v7_nocomp.dat", "sched_v7_zstd.dat"])
@pytest.mark.parametrize("cut", [5, 12, 30, 1000, 60_000])
def test_truncated_metadata_is_an_error_even_with_partial(
    tmp_path: Path, name: str, cut: int
) -> None:
    path = _copy(tmp_path, "cut.dat", need_shared(TRACEDAT / name).read_bytes()[:cut])
    for partial in (False, True):
        with pytest.raises(TraceError) as exc:
            list(TraceDat(path, partial=partial))
        err = exc.value
        assert isinstance(err, BinaryTraceError), err
        assert "byte offset" in str(err) or err.offset is None
        assert err.section in {
            "magic",  # cut inside it: a truncated trace.dat
            "file header",
            "headers",
            "ftrace event formats",
            "event formats",
            "options",
            "kallsyms",
            "printk formats",
        }, err


def test_v7_without_its_trailing_options(tmp_path: Path) -> None:
    """trace-cmd writes v7's buffer index after the data: cut there, it is an error naming the
    options section (tests/test_tracedat_partial.py: what --partial reads of such files)."""
    src = need_shared(TRACEDAT / "sched_v7_zstd.dat").read_bytes()
    path = _copy(tmp_path, "cut.dat", src[: len(src) - 300])
    with pytest.raises(BinaryTraceError, match="options.*--partial reads") as exc:
        TraceDat(path)
    assert exc.value.section == "options" and exc.value.offset is not None


def test_not_a_tracedat(tmp_path: Path) -> None:
    with pytest.raises(BinaryTraceError, match="bad magic"):
        TraceDat(_copy(tmp_path, "x.dat", b"hello world, not a trace"))
    with pytest.raises(BinaryTraceError, match="unsupported trace.dat version '8'"):
        TraceDat(_copy(tmp_path, "v8.dat", MAGIC + b"8\0\0\x08" + b"\0" * 64))
    with pytest.raises(TraceError, match="cannot open"):
        TraceDat(tmp_path / "missing.dat")
    with pytest.raises(BinaryTraceError, match="file header"):
        TraceDat(_copy(tmp_path, "empty.dat", b""))


def test_iter_tracedat() -> None:
    items = list(iter_tracedat(need_shared(TRACEDAT / "sched_v7_zstd.dat")))
    assert len(items) == 4094 and items[0].name == "print" and items[0].fields["buf"]


@pytest.mark.parametrize(("version", "compression"), [(6, "none"), (7, "zstd"), (7, "none")])
def test_latency_text_buffers(tmp_path: Path, version: int, compression: str) -> None:
    """A latency-format file holds the kernel's text, which the text reader reads."""
    text = need_shared(RECORDED / "ftrace-text" / "opt_latency.txt").read_bytes()
    path = tmp_path / "lat.dat"
    write_tracedat(path, {}, version=version, compression=compression, latency=text)
    td = TraceDat(path)
    assert td.buffers[0].latency
    items = list(td)
    expect = list(TextTraceReader(RECORDED / "ftrace-text" / "opt_latency.txt"))
    assert keys(items) == keys(expect) and len(items) > 10
    assert td.text_reader is not None and td.text_reader.layout == "latency"


@pytest.mark.parametrize("version", [6, 7])
def test_big_endian_files(tmp_path: Path, version: int) -> None:
    """A big-endian kernel's file: every number in the file's byte order, pages too."""
    from test_ring_buffer import PRINT_FORMAT, TEST_FORMAT, PageWriter, kinds_record, print_record

    raw = tmp_path / "raw"
    (raw / "events").mkdir(parents=True)
    (raw / "events" / "test__kinds.format").write_text(TEST_FORMAT)
    (raw / "events" / "ftrace__print.format").write_text(PRINT_FORMAT)
    for name in ("header_page", "header_event"):
        (raw / "events" / name).write_bytes(need_shared(RAW / "events" / name).read_bytes())
    w = PageWriter(">")
    pages = {
        0: w.page(100, [w.data(1, kinds_record(">")), w.data(2, print_record(b"hi\n\0", 9, ">"))]),
        1: w.page(50, [w.data(1, kinds_record(">", pid=16090))], missed=3),
    }
    path = tmp_path / "be.dat"
    write_tracedat(path, {"": pages}, version=version, order=">", raw=raw)
    td = TraceDat(path)
    assert td.byteorder == ">" and td.layout.byteorder == ">"
    items = list(td)
    assert [(type(i).__name__, i.ts, i.cpu) for i in items] == [
        ("LostEvents", 50, 1),
        ("TraceEvent", 51, 1),
        ("TraceEvent", 101, 0),
        ("TraceEvent", 103, 0),
    ]
    assert items[0].count == 3 and items[1].comm == "final_raw.sh"
    assert items[2].fields["dyn"] == "dynamic text" and items[2].fields["nums"] == "1, ff, deadbeef"
    assert items[3].fields == {"ip": 0xFFFFFFFF814AA941, "buf": "hi"}


@pytest.mark.parametrize("name", ["sched_v6.dat", "sched_v7_nocomp.dat", "sched_v7_zstd.dat"])
def test_random_damage_in_the_data_is_never_a_traceback(tmp_path: Path, name: str) -> None:
    """Seeded byte flips in the CPU data: a TraceError at worst; with partial=True the
    options (and so the buffer index) are intact, so reading always completes."""
    src = need_shared(TRACEDAT / name).read_bytes()
    first = min(c.offset for c in TraceDat(TRACEDAT / name).buffers[0].cpus)
    end = max(c.offset + c.size for c in TraceDat(TRACEDAT / name).buffers[0].cpus)
    rnd = random.Random(name)
    path = tmp_path / "fuzz.dat"
    for _ in range(25):
        data = bytearray(src)
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(first, end)] = rnd.randrange(256)
        path.write_bytes(bytes(data))
        with contextlib.suppress(TraceError):
            list(TraceDat(path))
        td = TraceDat(path, partial=True)
        items = list(td)
        marks = [i for i in items if isinstance(i, LostEvents) and i.until_end]
        assert (td.stopped_at is None) == (not marks)  # a spilled page is a loss, not a stop


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b"__print_flags(", b"__print_flagz(", "has no __print_flags table for prev_state"),
        (b"field:int common_pid;", b"field:int commoe_pid;", "has no common_pid field"),
    ],
)
def test_damaged_event_formats_are_refused_before_any_verdict(tmp_path, old, new, message):
    """A damaged format (a compressed section has no checksum: garbage can decompress) must
    not be decoded anyway: without common_pid every pid would be -1, without the state table
    no prev_state would ever read 'S' and every monitor would pass having judged nothing."""
    from pyrv.api import CheckError, CheckOptions, check

    data = need_shared(TRACEDAT / "sched_v7_nocomp.dat").read_bytes()
    assert old in data and len(old) == len(new)
    bad = tmp_path / "bad.dat"
    bad.write_bytes(data.replace(old, new))
    for engine in ("auto", "reference"):
        with pytest.raises((TraceError, CheckError), match=re.escape(message)):
            check(bad, CheckOptions(monitors=["wwnr"], engine=engine))
