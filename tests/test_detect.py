"""open_trace(): every input kind recognised by content, one metadata surface for all readers."""

from __future__ import annotations

import bz2
import contextlib
import dataclasses
import gzip
import lzma
import shutil
from pathlib import Path

import pytest
from conftest import RECORDED, need_shared

from pyrv.sources.detect import RawPagesFile, open_trace, sniff
from pyrv.sources.errors import TraceError
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.formats import FormatSet
from pyrv.sources.ftrace_text import TextTraceReader
from pyrv.sources.ring_buffer import RawTraceDir
from pyrv.sources.tracedat import TraceDat

TEXT = RECORDED / "ftrace-text" / "sched_trace.txt"
ZSTD_DAT = RECORDED / "tracedat" / "sched_v7_zstd.dat"
RAW = RECORDED / "raw"

SURFACE = ("source", "counter_clock", "has_context", "skipped", "dropped_incomplete")


def _surface_ok(reader: object) -> None:
    for name in SURFACE:
        assert hasattr(reader, name), (type(reader).__name__, name)
    assert isinstance(reader.source, str)  # type: ignore[attr-defined]
    assert isinstance(reader.counter_clock, bool)  # type: ignore[attr-defined]
    assert reader.has_context is True  # type: ignore[attr-defined]
    assert reader.skipped == [] and reader.dropped_incomplete == 0  # type: ignore[attr-defined]


def _names(items) -> list[tuple[int, str]]:
    return [(e.ts, e.name) for e in items if isinstance(e, TraceEvent)]


def test_trace_dat_by_content_whatever_its_name(tmp_path: Path) -> None:
    renamed = tmp_path / "trace.txt"  # a misleading name
    shutil.copy(need_shared(ZSTD_DAT), renamed)
    assert sniff(renamed) == "tracedat"
    reader, items = open_trace(renamed)
    assert isinstance(reader, TraceDat)
    got = list(items)
    assert len(got) == 4094
    _surface_ok(reader)
    assert reader.source == str(renamed)


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".log", None),
        (".bin", gzip.compress),
        (".dat", lzma.compress),
        ("", bz2.compress),
        (".txt", "zstd"),
    ],
)
def test_text_plain_and_compressed(tmp_path: Path, suffix: str, compress) -> None:
    data = need_shared(TEXT).read_bytes()
    if compress == "zstd":
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    elif compress is not None:
        data = compress(data)
    path = tmp_path / f"trace{suffix}"
    path.write_bytes(data)
    reader, items = open_trace(path)
    assert isinstance(reader, TextTraceReader)
    got = list(items)
    assert len(got) == 4094
    _surface_ok(reader)
    assert sniff(path) == ("zstd" if compress == "zstd" else "text")


def test_raw_page_directories(tmp_path: Path) -> None:
    reader, items = open_trace(need_shared(RAW))
    assert isinstance(reader, RawTraceDir) and sniff(RAW) == "rawdir"
    assert sum(1 for _ in items) == 1313
    _surface_ok(reader)
    reader, items = open_trace(RAW, prefix="lost_")
    got = list(items)
    assert any(isinstance(i, LostEvents) and i.count == 903 for i in got)
    with pytest.raises(TraceError, match="not one of raw trace pages"):
        open_trace(tmp_path)


def test_the_same_trace_in_every_form_reads_the_same(tmp_path: Path) -> None:
    """The kernel text and the trace.dat files of one buffer give the same events (text has
    microseconds; the binary forms have all the nanoseconds)."""
    text = _names(open_trace(need_shared(TEXT))[1])
    for name in ("sched_v6.dat", "sched_v7_nocomp.dat", "sched_v7_zstd.dat"):
        binary = _names(open_trace(RECORDED / "tracedat" / name)[1])
        assert len(binary) == len(text)
        assert sorted((ts + 500) // 1000 * 1000 for ts, _ in binary) == sorted(ts for ts, _ in text)
        assert sorted(n for _, n in binary) == sorted(n for _, n in text)


def test_lone_raw_pages_file_needs_formats() -> None:
    lone = need_shared(RAW / "lost_cpu0.raw")
    assert sniff(lone) == "binary"
    with pytest.raises(TraceError, match="give its event format files"):
        open_trace(lone)
    reader, items = open_trace(lone, formats_dir=RAW)
    assert isinstance(reader, RawPagesFile) and reader.cpu == 0
    unseen, first = next(items), next(items)  # one CPU's pages: the others are not seen
    assert isinstance(unseen, LostEvents) and unseen.cpu is None and unseen.ts == 0
    assert "only CPU 0's pages are given (lost_cpu0.raw)" in unseen.reason
    assert isinstance(first, LostEvents) and first.count == 903
    _surface_ok(reader)
    reader, items = open_trace(RAW / "cpu1.raw", formats=FormatSet.load(RAW), cpu=5)
    assert {e.cpu for e in items if isinstance(e, TraceEvent)} == {5}


def test_text_options_pass_through(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text(
        need_shared(TEXT).read_text().replace("sched_switch: prev_comm", "sched_switch: ???", 1)
    )
    with pytest.raises(TraceError):
        list(open_trace(bad)[1])
    reader, items = open_trace(bad, skip_bad_lines=True)
    list(items)
    assert len(reader.skipped) == 1


def test_tracedat_options_pass_through() -> None:
    path = need_shared(RECORDED / "tracedat" / "lost_events_instance_tfr.dat")
    reader, items = open_trace(path, buffer="tfr", partial=True)
    assert reader.buffer == "tfr" and reader.partial
    assert sum(1 for i in items if isinstance(i, TraceEvent)) == 385


def test_missing_input() -> None:
    with pytest.raises(TraceError, match="cannot open"):
        open_trace("/nonexistent/trace.dat")


@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress], ids=["gzip", "xz"])
def test_a_truncated_compressed_text_runs_only_monitors_its_readable_part_feeds(
    tmp_path: Path, compress
) -> None:
    """The event scan that picks the monitors stops at the damage with what it read; the parse
    then fails there with the line. No monitor the whole trace cannot feed (the sched monitors
    without their bare tracepoints) may print a verdict from the part before. (bzip2 is left
    out: it decompresses whole 900 kB blocks, so a cut one-block file has no readable part.)"""
    from pyrv.api import CheckOptions, check
    from pyrv.sources.presence import events_present

    text = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt").read_bytes()
    whole = tmp_path / "whole.txt"
    whole.write_bytes(text)
    runnable = {m.name for m in check(whole).monitors}
    cut = tmp_path / "cut"
    cut.write_bytes(compress(text)[:6000])
    assert events_present(cut, ["sched_switch", "sched_set_state_tp"]) == {"sched_switch"}
    recs = []
    with pytest.raises(TraceError, match=r"cut:\d+: cannot read"):
        check(cut, CheckOptions(on_record=recs.append))
    assert {r.monitor for r in recs} <= runnable


def _fifo_fed(tmp_path: Path, data: bytes) -> Path:
    """A named pipe that a thread fills with ``data`` (as ``<(cat file)`` or /dev/stdin do)."""
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), open(fifo, "wb") as w:
            w.write(data)  # a reader that refuses the stream closes it early

    threading.Thread(target=feed, daemon=True).start()
    return fifo


@pytest.mark.parametrize("compress", [lambda b: b, gzip.compress], ids=["plain", "gzip"])
def test_text_on_a_pipe_is_read_once_as_it_comes(tmp_path: Path, compress) -> None:
    """A pipe cannot be read twice: recognising it must not eat its head (which made the
    parse see no context columns, or a gzip stream as binary)."""
    src = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    want = [(e.ts, e.cpu, e.pid, e.name, e.fields) for e in TextTraceReader(src)]
    fifo = _fifo_fed(tmp_path, compress(src.read_bytes()))
    reader, items = open_trace(fifo)
    got = [(e.ts, e.cpu, e.pid, e.name, e.fields) for e in items if isinstance(e, TraceEvent)]
    assert got == want and reader.source == str(fifo)


def test_a_trace_dat_on_a_pipe_is_refused_with_the_reason(tmp_path: Path) -> None:
    src = need_shared(RECORDED / "tracedat" / "sched_v6.dat")
    fifo = _fifo_fed(tmp_path, src.read_bytes()[:65536])
    with pytest.raises(
        TraceError, match=r"a trace.dat file on a pipe \(FIFO\): .*pass the file itself"
    ):
        open_trace(fifo)


# ---------------------------------------------------------------------------------------------
# Compressed binary traces: read from a decompressed copy, with the same verdicts.


def _zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdCompressor().compress(data)


_CODECS = {"gz": gzip.compress, "xz": lzma.compress, "bz2": bz2.compress, "zst": _zstd}


def _run(trace: Path | str, **kw) -> tuple:
    from pyrv.api import CheckOptions, check

    recs, gaps = [], []
    res = check(trace, CheckOptions(on_record=recs.append, on_gap=gaps.append, **kw))
    return res, [r.trace_line() for r in recs], [(g.cpu, g.ts, g.reason) for g in gaps]


@pytest.mark.parametrize("codec", sorted(_CODECS))
@pytest.mark.parametrize("name", ["sched_v6.dat", "sched_v7_zstd.dat"])
@pytest.mark.parametrize("engine", ["reference", "auto"])
def test_a_compressed_trace_dat_reads_as_the_file_itself(
    tmp_path: Path, codec: str, name: str, engine: str
) -> None:
    plain = need_shared(RECORDED / "tracedat" / name)
    packed = tmp_path / f"{name}.{codec}"
    packed.write_bytes(_CODECS[codec](plain.read_bytes()))
    assert sniff(packed) == "compressed tracedat"
    want, got = (_run(t, engine=engine, emit_events=True) for t in (plain, packed))
    assert got[1:] == want[1:] and got[1]  # every record (transitions too) and gap
    assert all(g.source == str(packed) for g in got[0].gaps)  # named by the user's file
    want[0].source = str(packed)
    want[0].gaps = [dataclasses.replace(g, source=str(packed)) for g in want[0].gaps]
    assert got[0] == want[0]


def test_a_compressed_copy_leaves_no_file_behind(tmp_path: Path, monkeypatch) -> None:
    plain = need_shared(RECORDED / "tracedat" / "sched_v6.dat")
    packed = tmp_path / "t.dat.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    spool_dir = tmp_path / "tmp"
    spool_dir.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool_dir))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # TMPDIR is read again
    reader, items = open_trace(packed)
    assert sum(isinstance(i, TraceEvent) for i in items) == 4094  # the file's own count
    assert list(spool_dir.iterdir()) == []  # the copy never had a name there


@pytest.mark.parametrize("codec", ["gz", "zst"])
def test_a_cut_compressed_trace_dat(tmp_path: Path, codec: str) -> None:
    """A compressed stream cut short is an error that says so; with --partial what it still
    holds is verified, and every verdict on it is one the whole file gives."""
    plain = need_shared(RECORDED / "tracedat" / "sched_v6.dat")
    whole = _CODECS[codec](plain.read_bytes())
    cut = tmp_path / f"cut.dat.{codec}"
    cut.write_bytes(whole[: len(whole) * 97 // 100])  # inside the CPU data
    with pytest.raises(TraceError, match="cut short after [0-9]+ decompressed bytes"):
        _run(cut)
    for engine in ("reference", "auto"):
        full = _run(plain, engine=engine, emit_events=True)
        part = _run(cut, engine=engine, partial=True, emit_events=True)
        assert part[0].stopped_at is not None and 0 < part[0].events_read < 4094
        assert part[1] and set(part[1]) <= set(full[1])


def test_a_compressed_raw_pages_file(tmp_path: Path) -> None:
    raw = need_shared(RECORDED / "raw")
    packed = tmp_path / "cpu1.raw.xz"
    packed.write_bytes(lzma.compress((raw / "cpu1.raw").read_bytes()))
    with pytest.raises(TraceError, match="give its event format files"):
        open_trace(packed)
    want = [(type(i).__name__, i.ts) for i in open_trace(raw / "cpu1.raw", formats_dir=raw)[1]]
    reader, items = open_trace(packed, formats_dir=raw)
    assert reader.cpu == 1  # from the name, as for the file itself
    assert [(type(i).__name__, i.ts) for i in items] == want and want


def test_a_corrupt_compressed_stream_is_never_trusted(tmp_path: Path) -> None:
    """gzip checks its data only at its end: a failed check means none of it is known good,
    so even --partial refuses it (a cut stream, by contrast, holds what precedes the cut)."""
    from pyrv.api import CheckOptions, check

    plain = need_shared(RECORDED / "tracedat" / "sched_v6.dat")
    packed = bytearray(gzip.compress(plain.read_bytes()))
    packed[len(packed) // 2] ^= 4
    bad = tmp_path / "bad.dat.gz"
    bad.write_bytes(bytes(packed))
    for partial in (False, True):
        with pytest.raises(TraceError, match="data is corrupt.*none of it can be trusted"):
            check(bad, CheckOptions(partial=partial))


def test_a_stream_cut_in_its_trailer_says_so_with_partial(tmp_path: Path) -> None:
    from pyrv.api import CheckOptions, check

    plain = need_shared(RECORDED / "tracedat" / "sched_v6.dat")
    cut = tmp_path / "trailer.dat.gz"
    cut.write_bytes(gzip.compress(plain.read_bytes())[:-4])  # the size field of the trailer
    with pytest.raises(TraceError, match="cut short after"):
        check(cut, CheckOptions())
    res = check(cut, CheckOptions(partial=True))
    assert res.events_read == 4094  # every byte of the content came through
    assert res.stopped_at == (
        f"byte offset {plain.stat().st_size} (the compressed stream is cut short there)"
    )


@pytest.mark.parametrize("codec", ["gz", "zst", "bz2"])
def test_a_stream_cut_before_its_content_shows(tmp_path: Path, codec: str) -> None:
    plain = need_shared(RECORDED / "tracedat" / "sched_v7_zstd.dat")
    cut = tmp_path / f"cut.dat.{codec}"
    cut.write_bytes(_CODECS[codec](plain.read_bytes())[:12])
    for partial in (False, True):
        with pytest.raises(TraceError, match="compressed stream is cut short after [0-9]+ dec"):
            open_trace(cut, partial=partial)


def test_a_full_temporary_directory_is_not_a_damaged_trace(tmp_path: Path, monkeypatch) -> None:
    import errno
    import io
    import tempfile

    class Full(io.BytesIO):
        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda: Full())
    packed = tmp_path / "t.dat.gz"
    packed.write_bytes(
        gzip.compress(need_shared(RECORDED / "tracedat" / "sched_v6.dat").read_bytes())
    )
    with pytest.raises(TraceError, match="cannot write its decompressed copy in .*No space left"):
        open_trace(packed, partial=True)


def test_a_compressed_trace_dat_on_a_pipe_is_refused_as_a_trace_dat(tmp_path: Path) -> None:
    plain = need_shared(RECORDED / "tracedat" / "sched_v7_zstd.dat")
    fifo = _fifo_fed(tmp_path, gzip.compress(plain.read_bytes()[:65536]))  # fits the pipe
    with pytest.raises(TraceError, match=r"a trace.dat file on a pipe \(FIFO\)"):
        open_trace(fifo)


def test_a_character_device_is_named_as_such() -> None:
    with pytest.raises(TraceError, match="/dev/zero: binary data on a character device: "):
        open_trace("/dev/zero")


# ---------------------------------------------------------------------------------------------
# Which monitors run: decided from what the input holds, and every printed verdict is counted.


def test_lone_pages_with_formats_run_only_monitors_whose_events_have_formats() -> None:
    """``--formats DIR`` gives the pages' event formats, not every event: sssw hooks the bare
    sched_set_state_tp, which no format file describes, so it must not judge the switches
    alone (it did, and its records were printed while the summary left it out)."""
    from pyrv.api import CheckOptions, check

    raw = need_shared(RECORDED / "raw")
    records = []
    opts = CheckOptions(formats_dir=str(raw / "events"), on_record=records.append)
    res = check(raw / "cpu0.raw", opts)
    assert [m.name for m in res.monitors] == ["wwnr", "stall"]
    assert {r.monitor for r in records} <= {"wwnr", "stall"}


def test_a_monitor_whose_records_were_printed_stays_in_the_summary(tmp_path: Path) -> None:
    """The text scan finds ``sched_wakeup:`` in a marker, so stall runs; no wakeup event ever
    comes, so its tasks are switched in from dequeued (an error per the model). Once printed,
    those errors are counted, and a note says which hooked events never occurred."""
    from pyrv.api import CheckOptions, check

    head = "           <...>-{p}     [000] d..2.   10.00000{n}: "
    switch = "sched_switch: prev_comm=t prev_pid={a} prev_prio=120 prev_state=S ==> next_comm=t"
    switch += " next_pid={b} next_prio=120"
    lines = ["# tracer: nop", "#"]
    for n, (a, b) in enumerate([(100, 200), (200, 100), (100, 200), (200, 100)], 1):
        lines.append(head.format(p=a, n=n) + switch.format(a=a, b=b))
    lines.insert(3, head.format(p=200, n=1) + "tracing_mark_write: sched_wakeup: not an event")
    path = tmp_path / "t.txt"
    path.write_text("\n".join(lines) + "\n")
    records, notes = [], []
    res = check(path, CheckOptions(on_record=records.append, on_note=notes.append))
    assert [(m.name, m.violations) for m in res.monitors] == [("stall", 3)]
    assert [r.monitor for r in records] == ["stall"] * 3
    assert any("stall: its hooked events sched:sched_wakeup never occur" in n for n in notes)


def test_another_recordings_page_files_beside_are_named() -> None:
    """recorded/raw holds two recordings (cpuN.raw and lost_cpuN.raw, see its README): the
    directory reads the first; the second is not left out without a word."""
    from pyrv.api import CheckOptions, check

    notes: list[str] = []
    check(need_shared(RAW), CheckOptions(monitors=["wwnr"], on_note=notes.append))
    assert any("not read: lost_cpu0.raw, lost_cpu1.raw" in n for n in notes)


def test_a_text_with_fewer_event_lines_than_its_header_counts_says_so(tmp_path: Path) -> None:
    """sched_trace.txt's header counts 4094 events, one line each; with one wakeup line
    removed the copy is an excerpt or an edited trace, which is said before any verdict
    (stall then finds an error the whole trace does not have)."""
    from pyrv.api import CheckOptions, check

    src = need_shared(RECORDED / "ftrace-text" / "sched_trace.txt")
    assert "entries-in-buffer/entries-written: 4094/4094" in src.read_text()
    lines = src.read_text().splitlines(keepends=True)
    wake = [i for i, ln in enumerate(lines) if " sched_wakeup: " in ln][100]
    cut = tmp_path / "edited.txt"
    cut.write_text("".join(lines[:wake] + lines[wake + 1 :]))
    for path, said in ((src, False), (cut, True)):
        notes: list[str] = []
        check(path, CheckOptions(on_note=notes.append))
        assert (
            any("header says the buffer held 4094 events, but it has 4093" in n for n in notes)
            == said
        )
