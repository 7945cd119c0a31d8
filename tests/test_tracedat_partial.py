"""A cut trace.dat v7 read with ``partial=True`` (``pyrv check --partial``).

v7 writes each buffer's index (CPU -> data offset) after the data, so a cut file has lost it.
The files are cut at offsets taken from the uncut file's own index: inside a CPU's data, on
its start and end, on compressed chunk boundaries, inside the options after the data. What is
read must be, for every CPU, a prefix of the uncut file's events of that CPU (the uncut decode
is checked against ``trace-cmd report`` in test_tracedat.py): nothing invented, nothing on a
wrong CPU. Every CPU not read to its end gets a gap, and the reader says where it stopped.
"""

from __future__ import annotations

import functools
import re
import struct
from pathlib import Path

import pytest

from pyrv.cli.main import main
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.ring_buffer import BinaryTraceError
from pyrv.sources.tracedat import TraceDat
from pyrv.sources.tracedat_writer import TraceMetadata, cpustat_option, write_tracedat
from tests.conftest import RECORDED, need_shared

TRACEDAT = RECORDED / "tracedat"
RAW = RECORDED / "raw"
SHARED_V7 = [
    TRACEDAT / "sched_v7_zstd.dat",
    TRACEDAT / "sched_v7_nocomp.dat",
    TRACEDAT / "lost_events_instance_tfr.dat",
    RECORDED / "rtapp" / "rt-pipe-faults.dat",
]


def key(e: TraceEvent) -> tuple:
    return (e.ts, e.cpu, e.pid, e.name, e.fields, e.flags)


def by_cpu(items: list) -> dict[int, list[tuple]]:
    out: dict[int, list[tuple]] = {}
    for e in items:
        if isinstance(e, TraceEvent):
            out.setdefault(e.cpu, []).append(key(e))
    return out


def our_marks(items: list) -> dict[int, LostEvents]:
    """The gaps partial reading adds (the file's own losses have a count or another text)."""
    marks = [
        i
        for i in items
        if isinstance(i, LostEvents)
        and i.count is None
        and ("truncated" in i.reason or "not read" in i.reason)
    ]
    out = {m.cpu: m for m in marks}
    assert len(out) == len(marks), "one gap per CPU"
    return out


@functools.lru_cache(maxsize=4)
def uncut(path: Path) -> tuple[list, dict[int, list[tuple]]]:
    """The uncut file's items and its events by CPU."""
    full = list(TraceDat(path))
    return full, by_cpu(full)


def data_ends(path: Path) -> list[tuple[int, int, int, list[int]]]:
    """(cpu, start, end, chunk boundaries) of each CPU's data, from the uncut file's index (the
    end of compressed data from its chunk sizes: trace-cmd's size leaves out the count)."""
    td = TraceDat(path)
    data = path.read_bytes()
    out = []
    for buf in td.buffers:
        for cd in buf.cpus:
            if not cd.size:
                continue
            if td.compression == "none":
                out.append((cd.cpu, cd.offset, cd.offset + cd.size, []))
                continue
            (count,) = struct.unpack_from("<I", data, cd.offset)
            at, bounds = cd.offset + 4, []
            for _ in range(count):
                bounds.append(at)
                at += 8 + struct.unpack_from("<I", data, at)[0]
            out.append((cd.cpu, cd.offset, at, bounds))
    td.close()
    return out


def cuts_for(path: Path) -> list[int]:
    """Offsets to cut at: before, on and inside each CPU's data, on and inside its chunks, at
    the data's end and inside the options after it."""
    out: set[int] = set()
    ends = data_ends(path)
    for _cpu, start, end, bounds in ends:
        out |= {start - 1, start, start + 2, (start + end) // 2, end - 1, end}
        out |= set(bounds[:3]) | {b + 5 for b in bounds[:2]} | {b + 100 for b in bounds[:2]}
    last = max(e for _, _, e, _ in ends)
    out |= {last + 8, last + 30}  # the options section after the data
    return sorted(out)


def check_cut(path: Path, cut: int, tmp_path: Path) -> tuple[TraceDat, list]:
    """Read ``path`` cut at ``cut`` with partial=True and check it against the uncut file."""
    want = uncut(path)[1]
    ends = {(cpu, start): end for cpu, start, end, _ in data_ends(path)}
    cut_path = tmp_path / f"cut{cut}.dat"
    cut_path.write_bytes(path.read_bytes()[:cut])

    with pytest.raises(BinaryTraceError) as exc:
        list(TraceDat(cut_path))
    assert exc.value.section == "options" and exc.value.offset is not None, exc.value
    assert "--partial reads the data before it" in str(exc.value)

    td = TraceDat(cut_path, partial=True)
    items = list(td)
    got, marks = by_cpu(items), our_marks(items)
    assert set(got) <= set(want)
    for cpu, events in got.items():
        assert events == want[cpu][: len(events)], f"CPU {cpu} is not a prefix of the uncut file"
    for (cpu, start), end in ends.items():
        n = len(got.get(cpu, []))
        if end <= cut:
            assert n == len(want[cpu]) and cpu not in marks, (cpu, n)
        else:  # cut inside or before its data: what was read, then a gap
            assert n < len(want[cpu]) or start < cut, (cpu, n)
            assert cpu in marks, f"no gap for CPU {cpu}"
            assert marks[cpu].ts == (got[cpu][-1][0] if n else 0)
    assert td.stopped_at is not None and td.stopped_at <= cut
    assert td.stop_reason is not None and "buffer index" in td.stop_reason
    assert f"byte offset {td.stopped_at}" in td.stop_reason or str(td.stopped_at) in (
        td.stop_reason
    )
    return td, items


@pytest.mark.parametrize("path", SHARED_V7, ids=lambda p: p.name)
def test_shared_v7_files_cut_anywhere_in_and_after_the_data(path: Path, tmp_path: Path) -> None:
    need_shared(path)
    cuts = cuts_for(path)
    assert len(cuts) > 10
    for cut in cuts:
        check_cut(path, cut, tmp_path)


def test_complete_data_cut_in_the_options_reads_everything(tmp_path: Path) -> None:
    path = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    full = list(TraceDat(path))
    end = max(e for _, _, e, _ in data_ends(path))
    td, items = check_cut(path, end + 20, tmp_path)
    assert [key(e) for e in items if isinstance(e, TraceEvent)] == [
        key(e) for e in full if isinstance(e, TraceEvent)
    ]
    assert len(full) == 4094  # the README's count, as trace-cmd report prints it
    assert td.stopped_at == end + 16 and "options at byte offset" in (td.stop_reason or "")


def test_the_cut_cpu_is_known_from_trace_cmds_stats(tmp_path: Path) -> None:
    """Cut inside CPU 1's data: CPU 0's run ends where its chunks say and CPU 1's is the rest."""
    path = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    stats = TraceDat(path).cpustats[""]
    assert (stats[0]["read events"], stats[1]["read events"]) == ("658", "3436")
    (_, _, _, _), (cpu, start, end, bounds) = data_ends(path)
    td, items = check_cut(path, bounds[2] + 50, tmp_path)
    got = by_cpu(items)
    assert len(got[0]) == 658 and 0 < len(got[1]) < 3436
    assert our_marks(items)[1].reason.startswith("truncated or corrupt: cpu1 data at byte")


# ---------------------------------------------------------------------------------------------
# Files pyrv's writer makes: each compression, empty CPUs, no stats, stats that do not fit.


def kernel_counts() -> dict[int, int]:
    """Events per CPU of the raw pages, from the kernel's own stats file read with them."""
    out = {}
    for cpu in (0, 1):
        text = need_shared(RAW / f"stats_cpu{cpu}.txt").read_text()
        out[cpu] = int(
            next(v for k, _, v in (ln.partition(":") for ln in text.splitlines()) if k == "entries")
        )
    assert out == {0: 401, 1: 912}  # as the README and the kernel's trace.txt say
    return out


def stats_after_reading(read: int) -> str:
    """A CPU's ``stats`` as read after draining the buffer: nothing left, ``read`` read."""
    return (
        "entries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\noldest event ts:  0.000000\n"
        f"now ts:  0.000000\ndropped events: 0\nread events: {read}\n"
    )


def written(
    tmp_path: Path,
    compression: str,
    pages: dict[int, bytes],
    cpus: int,
    reads: dict[int, int] | None,
    chunk_pages: int = 3,
) -> Path:
    path = tmp_path / f"w-{compression}-{cpus}-{sorted(pages)}-{reads is not None}.dat"
    options = [cpustat_option(c, stats_after_reading(n)) for c, n in (reads or {}).items()]
    write_tracedat(
        path,
        {"": pages},
        TraceMetadata.from_raw_dir(need_shared(RAW)),
        version=7,
        compression=compression,
        cpus=cpus,
        options=options,
        chunk_pages=chunk_pages,
    )
    return path


def raw(cpu: int) -> bytes:
    return need_shared(RAW / f"cpu{cpu}.raw").read_bytes()


@pytest.mark.parametrize("compression", ["none", "zlib", "zstd"])
def test_written_v7_files_cut_anywhere(compression: str, tmp_path: Path) -> None:
    counts = kernel_counts()
    path = written(tmp_path, compression, {0: raw(0), 1: raw(1)}, 2, counts)
    assert {c: len(v) for c, v in by_cpu(list(TraceDat(path))).items()} == counts
    for cut in cuts_for(path):
        check_cut(path, cut, tmp_path)


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_an_empty_cpu_in_between_is_skipped_by_its_stats(compression: str, tmp_path: Path) -> None:
    """CPUs 0 and 2 have data, CPU 1 none (it takes no space): CPU 2's data follows CPU 0's."""
    counts = kernel_counts()
    path = written(tmp_path, compression, {0: raw(0), 2: raw(1)}, 3, {0: 401, 1: 0, 2: 912})
    (_, _, end0, _), (cpu2, start2, end2, _) = data_ends(path)
    assert cpu2 == 2
    _, items = check_cut(path, (start2 + end2) // 2, tmp_path)
    got = by_cpu(items)
    assert len(got[0]) == counts[0] and 0 < len(got[2]) < counts[1] and 1 not in got


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_without_stats_several_cpus_cannot_be_told_apart(compression: str, tmp_path: Path) -> None:
    path = written(tmp_path, compression, {0: raw(0), 2: raw(1)}, 3, None)
    (_, start0, _, _), (_, start2, end2, _) = data_ends(path)
    for cut in ((start2 + end2) // 2, end2 + 20):
        cut_path = tmp_path / "cut.dat"
        cut_path.write_bytes(path.read_bytes()[:cut])
        td = TraceDat(cut_path, partial=True)
        items = list(td)
        assert by_cpu(items) == {}  # nothing judged as if its CPU were known
        marks = our_marks(items)
        assert set(marks) == {0, 1, 2}
        assert all(f"byte offset {start0}" in m.reason for m in marks.values())
        assert "not attributed to a CPU" in (td.stop_reason or "")


def test_without_stats_complete_compressed_runs_for_every_cpu_are_read(tmp_path: Path) -> None:
    """As many self-delimited runs as CPUs in a complete section: run i is CPU i."""
    path = written(tmp_path, "zlib", {0: raw(0), 1: raw(1)}, 2, None)
    end = max(e for _, _, e, _ in data_ends(path))
    td, items = check_cut(path, end + 10, tmp_path)
    assert by_cpu(items) == by_cpu(list(TraceDat(path)))


def test_one_cpu_needs_no_stats(tmp_path: Path) -> None:
    path = written(tmp_path, "none", {0: raw(0)}, 1, None)
    ((_, start, end, _),) = data_ends(path)
    _, items = check_cut(path, start + 3 * 4096 + 100, tmp_path)
    assert 0 < len(by_cpu(items)[0]) < 401


def test_stats_that_do_not_fit_stop_the_attribution(tmp_path: Path) -> None:
    """The stats say CPU 1 read 5 events, but it has no data: CPU 2's run would be taken for
    CPU 1's. Its event count does not fit, so neither is read."""
    path = written(tmp_path, "zstd", {0: raw(0), 2: raw(1)}, 3, {0: 401, 1: 5, 2: 912})
    _, (_, start2, end2, bounds) = data_ends(path)
    for cut in (bounds[2] + 10, end2 + 20):
        cut_path = tmp_path / "cut.dat"
        cut_path.write_bytes(path.read_bytes()[:cut])
        items = list(TraceDat(cut_path, partial=True))
        got = by_cpu(items)
        assert set(got) == {0} and len(got[0]) == 401
        marks = our_marks(items)
        assert set(marks) == {1, 2} and f"byte offset {start2}" in marks[1].reason


def test_stats_taken_before_reading_are_not_used(tmp_path: Path) -> None:
    """``entries`` not 0: the stats were read before the buffer was drained and say nothing
    about what the file holds."""
    path = tmp_path / "before.dat"
    options = [
        cpustat_option(c, need_shared(RAW / f"stats_cpu{c}.txt").read_text()) for c in (0, 1)
    ]
    write_tracedat(
        path,
        {"": {0: raw(0), 1: raw(1)}},
        TraceMetadata.from_raw_dir(RAW),
        version=7,
        compression="none",
        options=options,
    )
    (_, start0, end0, _), _ = data_ends(path)
    cut_path = tmp_path / "cut.dat"
    cut_path.write_bytes(path.read_bytes()[: end0 + 4096 + 10])
    items = list(TraceDat(cut_path, partial=True))
    assert by_cpu(items) == {} and set(our_marks(items)) == {0, 1}


# ---------------------------------------------------------------------------------------------
# The command line.


def test_check_partial_says_where_reading_stopped(tmp_path: Path, capsys) -> None:
    path = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    (_, _, _, _), (_, start1, end1, _) = data_ends(path)
    cut = (start1 + end1) // 2
    cut_path = tmp_path / "cut.dat"
    cut_path.write_bytes(path.read_bytes()[:cut])
    assert main(["check", str(cut_path)]) == 2
    err = capsys.readouterr().err
    assert "options at byte offset" in err and "--partial" in err and "Traceback" not in err
    # the uncut file has no violation: the cut one must not invent any (CPU 1's lost wakeups
    # would make CPU 0's later switches look like stalls)
    assert main(["check", "--partial", str(cut_path)]) == 0
    out = capsys.readouterr().out
    assert "reading stopped at byte offset" in out and "buffer index" in out
    assert "# gap at" in out and "cpu 1: unknown number of events lost (truncated" in out
    assert "nothing judged after " in out and "(CPU 1's data ends there)" in out
    # binary input has no line numbers: the gap says when, the same instant the summary names
    last = re.search(r"nothing judged after (\d+\.\d{9}) ", out).group(1)
    assert f"# gap at {cut_path}, after {last}: cpu 1: unknown number" in out


def test_a_file_whose_writer_died_in_the_data(tmp_path: Path) -> None:
    """trace-cmd fills in the options' link to the next section only after the data: a
    writer that died in it leaves 0 there. The data without an index is still found."""
    path = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    src = bytearray(path.read_bytes())
    at = src.index(b"\0", 10) + 1 + 2 + 4  # after the version, endianness, long and page size
    at = src.index(b"\0", src.index(b"\0", at) + 1) + 1  # after the compression and version
    (first,) = struct.unpack_from("<Q", src, at)
    (size,) = struct.unpack_from("<Q", src, first + 8)
    struct.pack_into("<Q", src, first + 16 + size - 8, 0)  # the DONE option's next offset
    (_, _, _, _), (_, start1, end1, _) = data_ends(path)
    cut_path = tmp_path / "died.dat"
    cut_path.write_bytes(bytes(src[: (start1 + end1) // 2]))
    with pytest.raises(BinaryTraceError, match="no BUFFER option.*--partial") as exc:
        list(TraceDat(cut_path))
    assert exc.value.section == "options" and exc.value.offset == first + 16 + size
    items = list(TraceDat(cut_path, partial=True))
    want, got = uncut(path)[1], by_cpu(items)
    assert got[0] == want[0] and 0 < len(got[1]) < len(want[1])
    assert got[1] == want[1][: len(got[1])] and set(our_marks(items)) == {1}


def test_a_flyrecord_section_whose_size_was_never_filled_in(tmp_path: Path) -> None:
    """The section's size is written after the data too: 0 there, the data runs to the cut."""
    path = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    src = bytearray(path.read_bytes())
    sec = TraceDat(path).buffers[0].offset
    assert struct.unpack_from("<H", src, sec)[0] == 3  # the flyrecord section's id
    struct.pack_into("<Q", src, sec + 8, 0)
    (_, _, _, _), (_, start1, end1, _) = data_ends(path)
    cut_path = tmp_path / "nosize.dat"
    cut_path.write_bytes(bytes(src[: (start1 + end1) // 2]))
    items = list(TraceDat(cut_path, partial=True))
    want, got = uncut(path)[1], by_cpu(items)
    assert got[0] == want[0] and 0 < len(got[1]) < len(want[1])
    assert got[1] == want[1][: len(got[1])] and set(our_marks(items)) == {1}


@pytest.mark.parametrize("path", SHARED_V7[:2], ids=lambda p: p.name)
def test_a_cut_before_the_first_options_section_reads_nothing_and_says_why(
    path: Path, tmp_path: Path
) -> None:
    """trace-cmd's v7 header ends with the offset of the first options section, which indexes
    the headers and formats and precedes the CPU data (trace-cmd.dat.v7 layout): a file cut
    before it holds no event, so even --partial is an error, naming that section and offset."""
    data = need_shared(path).read_bytes()
    at = data.index(b"\0", 10) + 3  # after the version string, endianness, long size
    at += 4  # page size
    for _ in range(2):  # compression name and version strings
        at = data.index(b"\0", at) + 1
    (first_options,) = struct.unpack_from("<Q", data, at)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(data[: first_options - 100])
    for partial in (False, True):
        with pytest.raises(BinaryTraceError) as info:
            list(TraceDat(cut, partial=partial))
        assert info.value.section == "options" and info.value.offset == first_options
        assert "no event can be read" in info.value.detail


# ---------------------------------------------------------------------------------------------
# Cut after the last section the index knows: trace-cmd writes its strings section (id 15, the
# section descriptions) last, after the options section holding the buffer index.


def indexed_end(data: bytes) -> int:
    """Where the last section the file's index points at ends: the options sections (from the
    header's first one along the DONE links), the metadata sections (options 16-21) and the
    buffer sections (BUFFER option's u64), each ending after its 16-byte header and size."""
    at = data.index(b"\0", 10) + 1 + 2 + 4  # after version, endianness, long and page size
    for _ in range(2):  # compression name and version
        at = data.index(b"\0", at) + 1
    (options,) = struct.unpack_from("<Q", data, at)
    sections = []
    while options:
        sections.append(options)
        (size,) = struct.unpack_from("<Q", data, options + 8)
        pos, end, options = options + 16, options + 16 + size, 0
        while pos < end:
            oid, osize = struct.unpack_from("<HI", data, pos)
            value = struct.unpack_from("<Q", data, pos + 6)[0] if osize >= 8 else None
            if oid == 0:
                options = value
            elif 16 <= oid <= 21 or oid in (3, 22):  # metadata, BUFFER, BUFFER_TEXT
                sections.append(value)
            pos += 6 + osize
    return max(s + 16 + struct.unpack_from("<Q", data, s + 8)[0] for s in sections)


@pytest.mark.parametrize("path", SHARED_V7, ids=lambda p: p.name)
def test_a_cut_in_the_strings_section_after_the_index(path: Path, tmp_path: Path) -> None:
    data = need_shared(path).read_bytes()
    tail = indexed_end(data)
    sid, _, _, size = struct.unpack_from("<HHIQ", data, tail)
    assert sid == 15 and tail + 16 + size == len(data)  # the strings section ends the file
    full = [key(e) for e in uncut(path)[0] if isinstance(e, TraceEvent)]
    for cut in (len(data) - 1, len(data) - 8, tail + 16 + 3, tail + 5):
        cut_path = tmp_path / "cut.dat"
        cut_path.write_bytes(data[:cut])
        # cut in its 16-byte header: named there; after it: where its content starts
        where = tail if cut < tail + 16 else tail + 16
        with pytest.raises(BinaryTraceError) as exc:
            list(TraceDat(cut_path))
        assert (exc.value.section, exc.value.offset) == ("strings", where), cut
        assert f"the file ({cut} bytes) is truncated" in exc.value.detail
        td = TraceDat(cut_path, partial=True)
        items = list(td)  # every event is read, and where the damage is is said
        assert [key(e) for e in items if isinstance(e, TraceEvent)] == full
        assert not our_marks(items)
        assert td.stopped_at == where and "strings" in (td.stop_reason or "")


def test_a_cut_in_the_strings_section_with_the_command_line(tmp_path: Path, capsys) -> None:
    data = need_shared(TRACEDAT / "sched_v7_zstd.dat").read_bytes()
    cut_path = tmp_path / "cut.dat"
    cut_path.write_bytes(data[:-8])
    where = indexed_end(data) + 16
    assert main(["check", str(cut_path)]) == 2
    err = capsys.readouterr().err
    assert f"strings at byte offset {where}" in err and "truncated" in err
    assert "Traceback" not in err
    assert main(["check", "--partial", str(cut_path)]) == 0
    out = capsys.readouterr().out
    assert "4094 events" in out and f"reading stopped at byte offset {where} (strings" in out


def test_a_strings_section_that_does_not_decompress(tmp_path: Path) -> None:
    data = bytearray(need_shared(TRACEDAT / "sched_v7_zstd.dat").read_bytes())
    tail = indexed_end(bytes(data))
    sid, flags, _, _ = struct.unpack_from("<HHIQ", data, tail)
    assert (sid, flags) == (15, 1)  # compressed: u32 csize, u32 size, then the zstd frame
    data[tail + 16 + 8 + 4 : tail + 16 + 8 + 20] = b"\xff" * 16
    path = tmp_path / "bad.dat"
    path.write_bytes(bytes(data))
    with pytest.raises(BinaryTraceError, match="cannot decompress") as exc:
        list(TraceDat(path))
    assert (exc.value.section, exc.value.offset) == ("strings", tail + 16)
    td = TraceDat(path, partial=True)
    assert len([e for e in td if isinstance(e, TraceEvent)]) == 4094
    assert td.stopped_at == tail + 16
