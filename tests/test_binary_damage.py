"""Damaged binary traces: what the index promises and what the data holds must agree.

Each file here is a recorded trace with one field corrupted; where reading must stop is
computed from the file's own structure (the BUFFER option's or flyrecord's index, the chunk
headers), never from what pyrv printed. Without ``--partial`` the damage is an error naming
the CPU's data and the byte offset; with it, that CPU's data ends there (a loss until the end
of the trace) and the reader says where it stopped. Both engines give the same answer.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from pyrv.api import CheckOptions, check
from pyrv.sources.events import LostEvents, TraceEvent
from pyrv.sources.ring_buffer import BinaryTraceError
from pyrv.sources.tracedat import TraceDat
from pyrv.sources.tracedat_writer import TraceMetadata, write_tracedat
from tests.conftest import RECORDED, need_shared

TRACEDAT = RECORDED / "tracedat"


def chunk_ends(path: Path, cpu: int) -> tuple[int, list[int]]:
    """(offset of the CPU's chunk count, where each of its chunks ends), from the file."""
    data = path.read_bytes()
    with TraceDat(path) as td:
        cd = next(c for c in td.buffers[0].cpus if c.cpu == cpu)
    (count,) = struct.unpack_from("<I", data, cd.offset)
    at, ends = cd.offset + 4, []
    for _ in range(count):
        at += 8 + struct.unpack_from("<I", data, at)[0]
        ends.append(at)
    return cd.offset, ends


def events_of(path: Path, **kw: object) -> list:
    return list(TraceDat(path, **kw))  # type: ignore[arg-type]


def key(e: TraceEvent) -> tuple:
    return (e.ts, e.cpu, e.pid, e.name, e.fields, e.flags)


def both_engines(path: Path, partial: bool) -> str | object:
    """The reference's result (or error text), after checking the fast path gives the same."""
    out = []
    for engine in ("reference", "auto"):
        try:
            out.append(check(path, CheckOptions(monitors=["wwnr"], partial=partial, engine=engine)))
        except Exception as exc:  # noqa: BLE001 - compared
            out.append(f"{type(exc).__name__}: {exc}")
    assert out[0] == out[1]
    return out[0]


def corrupt(src: Path, dst: Path, at: int, value: bytes) -> Path:
    data = bytearray(src.read_bytes())
    data[at : at + len(value)] = value
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize(("cpu", "count"), [(1, 2), (0, 0), (1, 0), (0, 2)])
def test_a_compressed_chunk_count_that_disagrees_with_the_index(
    cpu: int, count: int, tmp_path: Path
) -> None:
    src = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    start, ends = chunk_ends(src, cpu)
    assert count != len(ends)
    path = corrupt(src, tmp_path / "bad.dat", start, struct.pack("<I", count))
    # too few chunks: reading stops where the last one claimed ends; too many: where the
    # first one the index has no room for would start
    stop = start + 4 if not count else ends[min(count, len(ends)) - 1]
    with pytest.raises(BinaryTraceError) as exc:
        events_of(path)
    assert exc.value.section == f"cpu{cpu} data" and exc.value.offset == stop
    assert "chunk count is corrupt" in exc.value.detail and str(start) in exc.value.detail

    td = TraceDat(path, partial=True)
    items = list(td)
    uncut = [key(e) for e in events_of(src) if isinstance(e, TraceEvent) and e.cpu == cpu]
    got = [key(e) for e in items if isinstance(e, TraceEvent) and e.cpu == cpu]
    assert got == uncut[: len(got)]
    if count < len(ends):
        assert len(got) < len(uncut)
    marks = [i for i in items if isinstance(i, LostEvents) and i.until_end]
    assert [m.cpu for m in marks] == [cpu]
    assert td.stopped_at == stop

    assert "chunk count is corrupt" in str(both_engines(path, partial=False))
    res = both_engines(path, partial=True)  # never a violation; nothing judged is an error
    assert "no event can be judged" in res if isinstance(res, str) else res.violations == 0


def flyrecord_table(path: Path) -> int:
    """Byte offset of a v6 file's flyrecord {u64 offset, u64 size} table."""
    data = path.read_bytes()
    with TraceDat(path) as td:
        at = td.buffers[0].offset
    assert data[at : at + 10] == b"flyrecord\0"
    return at + 10


@pytest.mark.parametrize("grow", [False, True])
def test_an_uncompressed_size_that_disagrees_with_the_pages(grow: bool, tmp_path: Path) -> None:
    src = need_shared(TRACEDAT / "sched_v6.dat")
    table = flyrecord_table(src)
    off0, size0, off1, size1 = struct.unpack_from("<4Q", src.read_bytes(), table)
    if grow:  # CPU 0's size runs into CPU 1's pages: it stops where they start
        path = corrupt(src, tmp_path / "bad.dat", table + 8, struct.pack("<Q", size0 + 8192))
        cpu, stop = 0, off1
    else:  # CPU 1's size leaves out pages the file holds: its data ends where the size says
        path = corrupt(src, tmp_path / "bad.dat", table + 24, struct.pack("<Q", 3 * 4096))
        cpu, stop = 1, off1 + 3 * 4096
    with pytest.raises(BinaryTraceError) as exc:
        events_of(path)
    assert exc.value.section == f"cpu{cpu} data" and exc.value.offset == stop
    assert "the size is corrupt" in exc.value.detail
    td = TraceDat(path, partial=True)
    items = list(td)
    assert [i.cpu for i in items if isinstance(i, LostEvents) and i.until_end] == [cpu]
    assert td.stopped_at == stop
    assert "the size is corrupt" in str(both_engines(path, partial=False))
    assert not isinstance(both_engines(path, partial=True), str)


@pytest.mark.parametrize("name", ["sched_v6.dat", "sched_v7_nocomp.dat", "sched_v7_zstd.dat"])
def test_intact_files_agree_with_their_index(name: str) -> None:
    path = need_shared(TRACEDAT / name)
    assert not any(isinstance(i, LostEvents) and i.until_end for i in events_of(path))


def cpu_events(items: list, cpu: int) -> list[tuple]:
    return [key(e) for e in items if isinstance(e, TraceEvent) and e.cpu == cpu]


def test_time_going_backwards_in_a_trace_dat_ends_that_cpu(tmp_path: Path) -> None:
    src = need_shared(TRACEDAT / "sched_v6.dat")
    off1 = struct.unpack_from("<Q", src.read_bytes(), flyrecord_table(src) + 16)[0]
    psize = 4096
    # the time delta of page 3's first record: its later records run ahead of page 4's time
    at = off1 + 3 * psize + 16 + 3
    data = bytearray(src.read_bytes())
    path = corrupt(src, tmp_path / "ts.dat", at, bytes([data[at] ^ 0xFF]))
    with pytest.raises(BinaryTraceError) as exc:
        events_of(path)
    assert exc.value.section == "cpu1 data page 4"
    assert off1 + 4 * psize <= exc.value.offset < off1 + 5 * psize
    assert "time goes backwards on CPU 1" in exc.value.detail
    td = TraceDat(path, partial=True)
    items = list(td)
    want = cpu_events(events_of(src), 1)
    got = cpu_events(items, 1)
    # neither page 3 nor page 4 can be trusted: what is read ends before them
    assert got == want[: len(got)] and 0 < len(got) < len(want)
    (mark,) = [i for i in items if isinstance(i, LostEvents) and i.until_end]
    assert mark.cpu == 1 and mark.ts == got[-1][0]
    assert td.stopped_at == exc.value.offset
    assert "time goes backwards" in str(both_engines(path, partial=False))
    res = both_engines(path, partial=True)
    assert not isinstance(res, str) and res.violations == 0


def test_time_going_backwards_in_a_raw_directory(tmp_path: Path) -> None:
    import shutil

    from pyrv.sources.ring_buffer import RawTraceDir

    src = need_shared(RECORDED / "raw")
    raw = tmp_path / "raw"
    shutil.copytree(src, raw)
    pages = bytearray((raw / "cpu1.raw").read_bytes())
    pages[5 * 4096 + 3] ^= 0xFF  # page 5's timestamp
    (raw / "cpu1.raw").write_bytes(bytes(pages))
    with pytest.raises(BinaryTraceError) as exc:
        list(RawTraceDir(raw))
    assert exc.value.section == "cpu1 page 5" and 5 * 4096 <= exc.value.offset < 6 * 4096
    assert exc.value.source == str(raw / "cpu1.raw")  # the damaged file, not its directory
    reader = RawTraceDir(raw, partial=True)
    items = list(reader)
    want = cpu_events(list(RawTraceDir(src)), 1)
    got = cpu_events(items, 1)
    assert got == want[: len(got)] and 0 < len(got) < len(want)
    assert reader.stopped_at == exc.value.offset and "time goes backwards" in str(
        reader.stop_reason
    )
    assert "time goes backwards" in str(both_engines(raw, partial=False))
    assert not isinstance(both_engines(raw, partial=True), str)


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_a_trace_dat_cut_inside_its_magic(n: int, tmp_path: Path, capsys) -> None:
    from pyrv.cli.main import main

    path = tmp_path / "cut.dat"
    path.write_bytes(b"\x17\x08\x44tracing6\0"[:n])
    with pytest.raises(BinaryTraceError) as exc:
        TraceDat(path)
    assert exc.value.section == "magic" and exc.value.offset == n
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"magic at byte offset {n}" in err and "truncated trace.dat" in err


def test_a_buffer_option_cpu_the_file_does_not_have(tmp_path: Path) -> None:
    src = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    with TraceDat(src) as td:
        cpus, cds = td.cpus, td.buffers[0].cpus
    data = src.read_bytes()
    # the BUFFER option's {u32 cpu, u64 offset, u64 size} entry of CPU 1, found by its values
    entry = struct.pack("<IQQ", 1, cds[1].offset, cds[1].size)
    at = data.index(entry)
    path = corrupt(src, tmp_path / "bad.dat", at, struct.pack("<I", 0xFF0001))
    with pytest.raises(BinaryTraceError) as exc:
        TraceDat(path)
    assert exc.value.section == "BUFFER option"
    assert f"CPU {0xFF0001} is not one of the file's {cpus} CPUs" in exc.value.detail
    td = TraceDat(path, partial=True)
    items = list(td)
    assert not cpu_events(items, 1)  # its data is not read, and CPU 1 gets a gap from the start
    (gap,) = [i for i in items if isinstance(i, LostEvents) and i.until_end]
    assert gap.cpu == 1 and gap.ts == 0 and "BUFFER option" in gap.reason
    assert "BUFFER option" in str(both_engines(path, partial=False))
    assert "no event can be judged" in str(both_engines(path, partial=True))


@pytest.mark.parametrize("how", ["deleted", "empty"])
def test_a_raw_directory_without_cpu0_says_so(how: str, tmp_path: Path) -> None:
    import shutil

    from pyrv.sources.ring_buffer import RawTraceDir

    raw = tmp_path / "raw"
    shutil.copytree(need_shared(RECORDED / "raw"), raw)
    if how == "deleted":
        (raw / "cpu0.raw").unlink()
    else:
        (raw / "cpu0.raw").write_bytes(b"")
    items = list(RawTraceDir(raw))
    gaps = [i for i in items if isinstance(i, LostEvents) and i.cpu == 0]
    assert len(gaps) == 1 and "CPU 0" in gaps[0].reason and "none of its events" in gaps[0].reason
    # unseen from the start, as a CPU whose data ends at once: CPU 1's events (its tasks also
    # ran on CPU 0, unseen) cannot be judged; wrongly judged, stall made up 34 violations
    assert gaps[0].until_end and gaps[0].ts == 0
    for partial in (False, True):
        res = both_engines(raw, partial=partial)
        assert isinstance(res, str) and "no event can be judged" in res and "CPU 0" in res


@pytest.mark.parametrize("count", [1, 0])
def test_a_buffer_option_cpu_count_that_leaves_cpus_out(count: int, tmp_path: Path) -> None:
    """The option's CPU entries fill its size: a smaller count leaves whole entries unread,
    which would read as CPUs that never ran (a wrong verdict, not a pass)."""
    src = need_shared(TRACEDAT / "sched_v7_zstd.dat")
    with TraceDat(src) as td:
        cds = td.buffers[0].cpus
    assert len(cds) == 2
    data = src.read_bytes()
    first = data.index(struct.pack("<IQQ", cds[0].cpu, cds[0].offset, cds[0].size))
    at = first - 4  # the u32 count stands before the first entry
    assert struct.unpack_from("<I", data, at) == (2,)
    path = corrupt(src, tmp_path / "count.dat", at, struct.pack("<I", count))
    with pytest.raises(BinaryTraceError) as exc:
        TraceDat(path)
    assert exc.value.section == "BUFFER option"
    assert f"room for {2 - count} more" in exc.value.detail
    items = list(TraceDat(path, partial=True))
    assert not cpu_events(items, 1)
    assert any(isinstance(i, LostEvents) and i.until_end and i.cpu == 1 for i in items)
    assert "CPU count is corrupt" in str(both_engines(path, partial=False))
    assert "no event can be judged" in str(both_engines(path, partial=True))


def test_a_single_raw_pages_file_with_partial(tmp_path: Path) -> None:
    """--partial reads a lone page file as it reads the same file in a directory: up to the
    damage, then a loss until the end, and says where it stopped."""
    raw = need_shared(RECORDED / "raw")
    data = bytearray((raw / "cpu1.raw").read_bytes())
    struct.pack_into("<Q", data, 3 * 4096, 1)  # page 3's time stamp goes back to 1 ns
    lone = tmp_path / "cpu1.raw"
    lone.write_bytes(bytes(data))
    with pytest.raises(BinaryTraceError, match="time goes backwards"):
        check(lone, CheckOptions(monitors=["wwnr"], formats_dir=raw))
    res = both_engines_raw(lone, raw)
    assert res.stopped_at is not None and "page 3" in res.stopped_at
    in_dir = tmp_path / "dir"
    (in_dir / "events").parent.mkdir()
    import shutil

    shutil.copytree(raw / "events", in_dir / "events")
    shutil.copy(lone, in_dir / "cpu0.raw")  # as cpu1.raw, CPU 0's file would be missing
    whole = check(in_dir, CheckOptions(monitors=["wwnr"], partial=True))
    assert res.events_read == whole.events_read < 912  # the intact file has 912
    assert res.monitors == whole.monitors


def both_engines_raw(path: Path, formats: Path) -> object:
    out = [
        check(path, CheckOptions(monitors=["wwnr"], partial=True, formats_dir=formats, engine=e))
        for e in ("reference", "auto")
    ]
    assert out[0] == out[1]
    return out[0]


def empty_page(ts: int, commit: int = 0) -> bytes:
    """A 64-bit little-endian 4 KiB ring-buffer page with no records (header_page layout)."""
    return struct.pack("<QQ", ts, commit) + bytes(4096 - 16)


@pytest.mark.parametrize(
    ("version", "compression"), [(6, "none"), (7, "none"), (7, "zlib"), (7, "zstd")]
)
def test_a_damaged_page_is_named_by_its_number_in_the_cpus_stream(
    version: int, compression: str, tmp_path: Path
) -> None:
    """Pages are read in blocks and chunks; the number and offset in a message are the file's:
    page 300 of CPU 0's data, at its byte offset, or in its chunk and where in that chunk."""
    pages = b"".join(empty_page(1000 + i) for i in range(300)) + empty_page(2000, 5000)
    path = tmp_path / "p.dat"
    meta = TraceMetadata.from_raw_dir(need_shared(RECORDED / "raw"))
    write_tracedat(
        path, {"": {0: pages}}, meta, version=version, compression=compression, chunk_pages=64
    )
    with pytest.raises(BinaryTraceError, match="commit says 5000 bytes") as exc:
        events_of(path)
    err = exc.value
    if compression == "none":
        with TraceDat(path) as td:
            start = td.buffers[0].cpus[0].offset
        assert (err.section, err.offset) == ("cpu0 data page 300", start + 300 * 4096)
    else:
        _, ends = chunk_ends(path, 0)  # page 300 is page 44 of the fifth 64-page chunk
        assert err.section == f"cpu0 data page 300, byte {44 * 4096} of the decompressed chunk"
        assert err.offset == ends[3]


def test_one_damaged_page_header_does_not_flip_the_byte_order(tmp_path: Path) -> None:
    """The byte order of a raw directory is not written anywhere: it is guessed from the page
    headers. A first page whose commit word only makes sense big-endian must not make every
    page of every CPU read big-endian; it is the one damaged page."""
    import shutil

    from pyrv.sources.ring_buffer import RawTraceDir

    raw = tmp_path / "raw"
    shutil.copytree(need_shared(RECORDED / "raw"), raw)
    corrupt(raw / "cpu0.raw", raw / "cpu0.raw", 8, b"\xff\xff\xff\xff\0\0\0\0")
    reader = RawTraceDir(raw)
    assert reader.layout.byteorder == "<"
    with pytest.raises(BinaryTraceError, match="commit says 134217727 bytes") as exc:
        list(reader)
    assert (exc.value.source, exc.value.section) == (str(raw / "cpu0.raw"), "cpu0 page 0")
    items = list(RawTraceDir(raw, partial=True))
    assert len(cpu_events(items, 1)) == 912  # CPU 1's events, as the kernel's trace.txt has


@pytest.mark.parametrize(("cpu", "page", "commit"), [(0, 3, 0), (1, 8, 68), (1, 11, 0)])
def test_a_page_whose_commit_word_says_too_little_is_a_loss_not_a_skip(
    cpu: int, page: int, commit: int, tmp_path: Path
) -> None:
    """A commit word zeroed, or cut to the first record: what the page holds past it is not
    read, and that is a reported loss until the next page's time (the page's own for the last
    one); no event of the other CPU inside it is judged, so no verdict is made up (the
    kernel-recorded pages have none) where the page's events are missing. Both engines."""
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(need_shared(RECORDED / "raw"), raw)
    name = f"cpu{cpu}.raw"
    corrupt(raw / name, raw / name, page * 4096 + 8, struct.pack("<Q", commit))
    res = both_engines_raw_dir(raw)
    (gap,) = [g for g in res.gaps if "the page commits" in g.reason]
    assert gap.cpu == cpu and f"cpu{cpu} page {page} at byte offset {page * 4096}" in gap.reason
    data = (raw / name).read_bytes()
    following = (page + 1) * 4096 if (page + 1) * 4096 < len(data) else page * 4096
    assert gap.ts == struct.unpack_from("<Q", data, following)[0]
    assert [m.violations for m in res.monitors] == [0, 0]


@pytest.mark.parametrize("where", ["raw", "v6"])
def test_a_page_zeroed_throughout_is_a_loss(where: str, tmp_path: Path) -> None:
    """No page the kernel hands out is empty or stamped 0: one zero throughout (header too)
    lost its events. Reported until the next page's time, where the skip made up stall
    violations (the kernel-recorded pages have none). Both engines."""
    import shutil

    if where == "raw":
        path = tmp_path / "raw"
        shutil.copytree(need_shared(RECORDED / "raw"), path)
        target, at, cpu, page = path / "cpu1.raw", 3 * 4096, 1, "cpu1 page 3"
    else:
        path = tmp_path / "z.dat"
        shutil.copy(need_shared(TRACEDAT / "sched_v6.dat"), path)
        with TraceDat(path) as td:
            cd = next(c for c in td.buffers[0].cpus if c.cpu == 0)
        target, at, cpu, page = path, cd.offset + 4 * 4096, 0, "cpu0 data page 4"
    following = struct.unpack_from("<Q", target.read_bytes(), at + 4096)[0]
    corrupt(target, target, at, bytes(4096))
    res = both_engines_raw_dir(path)
    (gap,) = [g for g in res.gaps if "zero throughout" in g.reason]
    assert (gap.cpu, gap.ts) == (cpu, following) and f"{page} at byte offset {at}" in gap.reason
    assert [m.violations for m in res.monitors] == [0, 0]


def test_a_stored_lost_count_of_zero_reads_as_unknown_in_both_engines(tmp_path: Path) -> None:
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(need_shared(RECORDED / "raw"), raw)
    data = bytearray((raw / "cpu1.raw").read_bytes())
    commit = struct.unpack_from("<Q", data, 3 * 4096 + 8)[0]
    struct.pack_into("<Q", data, 3 * 4096 + 8, commit | 3 << 30)  # missed, count stored: 0
    (raw / "cpu1.raw").write_bytes(bytes(data))
    res = both_engines_raw_dir(raw)
    (gap,) = [g for g in res.gaps if g.reason.startswith("lost:")]
    assert (gap.cpu, gap.count) == (1, None)


def both_engines_raw_dir(path: Path) -> object:
    out = [
        check(path, CheckOptions(monitors=["wwnr", "stall"], engine=e))
        for e in ("reference", "auto")
    ]
    assert out[0] == out[1]
    return out[0]


# ---------------------------------------------------------------------------------------------
# The file header (trace-formats.md 3.1, 3.3): magic, version\0, endianness, long size, u32 page
# size; v7 then compression\0, its version\0 and the u64 offset of the first options section.


def header_fields(data: bytes) -> dict[str, int]:
    """Byte offsets of the file header's fields, from the file's own strings."""
    out = {"endian": data.index(b"\0", 10) + 1}
    out["page size"] = out["endian"] + 2
    if data[10:11] == b"7":
        at = out["page size"] + 4
        for _ in range(2):  # compression name and version
            at = data.index(b"\0", at) + 1
        out["options offset"] = at
    return out


def header_page_size(data: bytes) -> int:
    """The page size header_page describes: its data field's offset + size. Read from the
    file's headers block: inline in v6, the section the first options section points at in
    v7 (here the first section, decompressed with the file's compression when flagged)."""
    import re

    fields = header_fields(data)
    if "options offset" in fields:
        at = fields["options offset"] + 8  # the first section: HEADER_INFO (id 16)
        sid, flags, _desc, size = struct.unpack_from("<HHIQ", data, at)
        assert sid == 16
        block = data[at + 16 : at + 16 + size]
        if flags & 1:
            import zstandard

            csize, usize = struct.unpack_from("<II", block)
            block = zstandard.ZstdDecompressor().decompress(
                block[8 : 8 + csize], max_output_size=usize
            )
    else:
        block = data[data.index(b"header_page\0") :]
    (size,) = struct.unpack_from("<Q", block, 12)
    text = block[20 : 20 + size].decode()
    m = re.search(r"field: char data;\s*offset:(\d+);\s*size:(\d+);", text)
    assert m, text
    return int(m.group(1)) + int(m.group(2))


V7_FILES = ["sched_v7_zstd.dat", "sched_v7_nocomp.dat"]


def raises_in_metadata(path: Path) -> BinaryTraceError:
    """The error, the same with and without partial (nothing can be read without metadata)."""
    errors = []
    for partial in (False, True):
        with pytest.raises(BinaryTraceError) as exc:
            list(TraceDat(path, partial=partial))
        errors.append(str(exc.value))
    assert errors[0] == errors[1]
    return exc.value


@pytest.mark.parametrize("name", V7_FILES)
@pytest.mark.parametrize("where", ["zero", "inside the header"])
def test_a_first_options_offset_that_cannot_be_one(name: str, where: str, tmp_path: Path) -> None:
    src = need_shared(TRACEDAT / name)
    at = header_fields(src.read_bytes())["options offset"]
    value = 0 if where == "zero" else at - 11  # the page size field: inside the file header
    path = corrupt(src, tmp_path / "bad.dat", at, struct.pack("<Q", value))
    err = raises_in_metadata(path)
    assert (err.section, err.offset) == ("file header", at)
    assert f"the offset of the first options section is {value}" in err.detail
    assert "the offset is invalid" in err.detail and "truncated" not in err.detail
    if value:
        assert f"inside the file header (which ends at byte offset {at + 8})" in err.detail
    assert f"file header at byte offset {at}" in str(both_engines(path, partial=False))


def corrupt_u64(src: Path, tmp_path: Path, at: int, value: int | None) -> tuple[Path, int]:
    """A copy of ``src`` with the u64 at ``at`` set to ``value``, or, for None, with the
    endianness byte flipped (every number then reads big-endian); and the value read there."""
    data = src.read_bytes()
    if value is None:
        path = corrupt(src, tmp_path / "bad.dat", header_fields(data)["endian"], b"\1")
        return path, struct.unpack_from(">Q", data, at)[0]
    return corrupt(src, tmp_path / "bad.dat", at, struct.pack("<Q", value)), value


@pytest.mark.parametrize("name", V7_FILES)
@pytest.mark.parametrize("how", ["2**63", "3 x file size", "past the end", "byte order"])
def test_an_options_offset_past_the_end_is_truncation_only_when_plausible(
    name: str, how: str, tmp_path: Path
) -> None:
    src = need_shared(TRACEDAT / name)
    data = src.read_bytes()
    at = header_fields(data)["options offset"]
    size = len(data)
    value = {"2**63": 1 << 63, "3 x file size": 3 * size, "past the end": size + 100}.get(how)
    path, value = corrupt_u64(src, tmp_path, at, value)
    err = raises_in_metadata(path)
    if how == "past the end":  # a file cut before its first options section looks like this
        assert (err.section, err.offset) == ("options", value)
        assert f"the file ({size} bytes) is truncated (or the offset corrupt)" in err.detail
        return
    assert (err.section, err.offset) == ("file header", at)
    assert f"the offset of the first options section is {value}" in err.detail
    if value >= 1 << 48:
        assert "implausible offset (corrupt header or wrong byte order)" in err.detail
        assert "truncated" not in err.detail
    else:
        assert f"far past the end of the file ({size} bytes)" in err.detail
        assert "the offset is corrupt" in err.detail


@pytest.mark.parametrize(("how", "value"), [("byte order", None), ("size", 1 << 50), ("size", 3)])
def test_a_v6_size_past_the_end_is_truncation_only_when_plausible(
    how: str, value: int | None, tmp_path: Path
) -> None:
    """header_page's u64 size (the first size of a v6 file): flipped byte order, implausible,
    or far past the end of the file."""
    src = need_shared(TRACEDAT / "sched_v6.dat")
    data = src.read_bytes()
    size_at = data.index(b"header_page\0") + 12
    if value is not None and value < 1000:
        value *= len(data)
    path, value = corrupt_u64(src, tmp_path, size_at, value)
    err = raises_in_metadata(path)
    assert (err.section, err.offset) == ("headers", size_at)
    assert f"needs {value} bytes" in err.detail
    if value >= 1 << 48:
        assert "implausible size (corrupt header or wrong byte order)" in err.detail
        assert "truncated" not in err.detail
    else:
        assert "far past the end of the file" in err.detail and "size is corrupt" in err.detail


@pytest.mark.parametrize("name", ["sched_v6.dat", *V7_FILES])
@pytest.mark.parametrize("page_size", [0, 1, 16, 4095, 8192, 1 << 31])
def test_the_file_headers_page_size_must_be_header_pages(
    name: str, page_size: int, tmp_path: Path
) -> None:
    """Both versions check it the same way, against header_page's layout, and name it."""
    src = need_shared(TRACEDAT / name)
    data = src.read_bytes()
    at = header_fields(data)["page size"]
    want = header_page_size(data)
    assert struct.unpack_from("<I", data, at) == (want,)
    path = corrupt(src, tmp_path / "bad.dat", at, struct.pack("<I", page_size))
    err = raises_in_metadata(path)
    assert (err.section, err.offset) == ("file header", at)
    assert f"page size {page_size} " in err.detail and f"the {want} bytes header_page" in (
        err.detail
    )
    if not page_size:
        assert "is invalid" in err.detail


@pytest.mark.parametrize("name", V7_FILES)
@pytest.mark.parametrize("factor", [1, 10])
def test_a_flyrecord_section_size_past_the_end_of_the_file(
    name: str, factor: int, tmp_path: Path
) -> None:
    """The buffer section the BUFFER option points at must lie within the file, as every
    section the index points at; its CPU data (within the file) is still read with partial."""
    src = need_shared(TRACEDAT / name)
    data = src.read_bytes()
    with TraceDat(src) as td:
        sec = td.buffers[0].offset
    assert struct.unpack_from("<H", data, sec) == (3,)  # the flyrecord section's id
    size = factor * len(data)
    path = corrupt(src, tmp_path / "bad.dat", sec + 8, struct.pack("<Q", size))
    with pytest.raises(BinaryTraceError) as exc:
        TraceDat(path)
    assert (exc.value.section, exc.value.offset) == ("flyrecord data", sec + 16)
    assert f"holds {size} bytes" in exc.value.detail
    if factor == 1:
        assert "truncated (or the size corrupt)" in exc.value.detail
    else:
        assert "far past the end of the file" in exc.value.detail
    td = TraceDat(path, partial=True)
    want = [key(e) for e in events_of(src) if isinstance(e, TraceEvent)]
    assert [key(e) for e in td if isinstance(e, TraceEvent)] == want
    assert td.stopped_at == sec + 16
