"""Binary traces as columns: ring-buffer pages decoded into numpy arrays, CPUs merged by time.

The per-event reader (:mod:`pyrv.sources.ring_buffer`) builds one :class:`TraceEvent` per
record; here a compiled page walker (:func:`walk_pages`) reads the same pages into arrays
instead: per row its kind (event, or a page whose missed-events flag is set), raw timestamp,
event id, ``common_pid``, a few integer fields chosen per event id (the *slots*: hook targets,
condition fields, what the continuity check reads), and where the record lies (so that the
reference decoder can decode the rare record whose full fields are needed: a start marker,
the comm of a violation's task, a repeated ``sched_switch``).

Everything the walker needs to know about an event id comes from the reference decoder
itself (:class:`~pyrv.sources.ring_buffer.PageDecoder`): the fixed size it checks, the
``__data_loc`` fields whose bounds it checks, ``common_pid``. The walker makes exactly the
checks the reference makes, in the same order; it never decides what the reference would do
with a damaged page: it reports :data:`DAMAGE` (or :data:`UNSUPPORTED` for input whose
reference behaviour it does not reproduce — a timestamp near 2**63, a stream whose time goes
backwards, an event format with overlapping fields), which raises :class:`Unsupported`, and
the caller hands the whole trace to the reference engine. That hand-over must come before
the first verdict is emitted: the engine holds its verdicts back until every page was read
(or, when there are too many, walks every page first with :meth:`ColumnarTrace.validate`).

Streams are the reference reader's streams in the reference's order (trace.dat: buffers, then
CPUs with data; raw directories: CPU files), read with ``pread`` (nothing stays mapped) in the
same chunks (the chunk boundaries decide whether a stored lost-event count is readable at the
end of a full page) by worker threads running ahead, which also walk them (decompression and
the walker release the GIL, so this runs beside the transition loop); the walked rows stay
in pooled scratch buffers until one C pass (:func:`merge_rows`) copies a batch out of them
in the order ``(timestamp, stream index, position)``, exactly as
:func:`pyrv.sources.merge.merge_by_time` orders them. Memory stays bounded: a batch holds
about :data:`BATCH_ROWS` rows, plus the chunks read ahead (:data:`_AHEAD` per stream) and
the pending rows of at most a few chunks per stream.

The loops (this page walker, the merge and the engine's transition loop) are C, compiled
once with the system's C compiler and loaded with ctypes (:func:`build_native`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import stat
import sys
import tempfile
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from queue import SimpleQueue
from typing import Any

import numpy as np

try:  # BLAKE2 without hashlib, whose OpenSSL binding takes longer to load than a run's key
    from _blake2 import blake2b as _blake2b
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b as _blake2b

#: walker results
OK, NEED_TYPE, DAMAGE, UNSUPPORTED = 0, 1, 2, 3
#: row kinds
ROW_EVENT, ROW_LOST = 0, 1
#: event-id table states
T_UNPREPARED, T_KNOWN, T_UNKNOWN_ID, T_UNSUPPORTED = 0, 1, 2, 3
#: what the walker may leave out of an event id's rows (a :data:`Dropper` decides): nothing;
#: a row whose pid is the one the CPU is known to run (it changes nothing but the count of
#: events read); every row; nothing, but a switch names the task that runs next (the slot
#: of ``next_pid``)
DROP_KEEP, DROP_IF_RUNNING, DROP_ALWAYS, DROP_SWITCH = 0, 1, 2, 3
#: event ids the tables cover (common_type is a u16 on every kernel)
N_TYPES = 1 << 16
#: data_loc checks per event kept in the table
MAX_LOCS = 8
#: timestamps are kept in int64: anything from here up is left to the reference
TS_LIMIT = 1 << 62
#: rows per merged batch (memory is bounded by about this many rows; small enough that a
#: batch is still in the cache when the transition loop reads what the merge wrote)
BATCH_ROWS = 1 << 15
#: pages per chunk, as the reference reads them (TraceDat and iter_cpu_pages: 256)
CHUNK_PAGES = 256


class Unsupported(Exception):
    """The fast path cannot reproduce the reference on this input: use the reference."""


# ---------------------------------------------------------------------------------------------
# Native code: C compiled once per source text with the system's C compiler, loaded with
# ctypes. (numba was the first choice; its start-up — about a second to import it and load
# even cached functions — is more than the whole fast path needs for millions of events.
# Without a compiler the fast path is not available and the reference engine runs.)

_CFLAGS = ["-O3", "-shared", "-fPIC", "-std=c99", "-fno-strict-aliasing"]


def _cache_dir() -> Path:
    base = os.environ.get("PYRV_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pyrv"


def build_native(name: str, source: str) -> ctypes.CDLL:
    """The shared library built from ``source`` (compiled on first use, then cached under
    ``$PYRV_CACHE_DIR`` or ``~/.cache/pyrv``). Raises :class:`Unsupported` when it cannot be
    built (no C compiler)."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise Unsupported("no C compiler (cc) to build the fast path's native code")
    text = "\0".join([source, cc, *_CFLAGS, sys.platform, os.uname().machine])
    key = _blake2b(text.encode(), digest_size=8).hexdigest()
    target = _cache_dir() / f"{name}-{key}.so"
    if not target.exists():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                src = Path(tmp) / f"{name}.c"
                src.write_text(source)
                out = Path(tmp) / f"{name}.so"
                import subprocess  # only to build: not on every run's start-up

                res = subprocess.run(
                    [cc, *_CFLAGS, "-o", str(out), str(src)], capture_output=True, text=True
                )
                if res.returncode != 0:
                    raise Unsupported(f"building the fast path failed: {res.stderr.strip()}")
                os.replace(out, target)
        except OSError as exc:
            raise Unsupported(f"building the fast path failed: {exc}") from None
    try:
        return ctypes.CDLL(str(target))
    except OSError as exc:
        raise Unsupported(f"loading the fast path failed: {exc}") from None


I64, PTR = ctypes.c_int64, ctypes.c_void_p

COLUMNAR_C = r"""
#include <stdint.h>
#include <string.h>

#define OK 0
#define NEED_TYPE 1
#define DAMAGE 2
#define UNSUPPORTED 3
#define ROW_EVENT 0
#define ROW_LOST 1
#define T_UNPREPARED 0
#define T_KNOWN 1
#define T_UNSUPPORTED 3
#define DROP_KEEP 0
#define DROP_IF_RUNNING 1
#define DROP_ALWAYS 2
#define DROP_SWITCH 3
#define N_TYPES 65536
#define MAX_LOCS 8
#define TS_LIMIT ((int64_t)1 << 62)
#define COMMIT_MASK (((int64_t)1 << 27) - 1)
#define MISSED ((int64_t)1 << 31)
#define STORED ((int64_t)1 << 30)
#define TS_MSB (-((int64_t)1 << 59))

static int host_little(void) { const uint16_t one = 1; return *(const uint8_t *)&one == 1; }

static inline uint64_t rdu(const uint8_t *b, int64_t size, int big, int little_host) {
    if (!big && little_host) {  /* the common case: one unaligned load */
        switch (size) {
        case 1: return b[0];
        case 2: { uint16_t x; memcpy(&x, b, 2); return x; }
        case 4: { uint32_t x; memcpy(&x, b, 4); return x; }
        case 8: { uint64_t x; memcpy(&x, b, 8); return x; }
        }
    }
    uint64_t v = 0;
    if (big) { for (int64_t i = 0; i < size; i++) v = (v << 8) | b[i]; }
    else { for (int64_t i = size - 1; i >= 0; i--) v = (v << 8) | b[i]; }
    return v;
}

static inline int64_t rdf(const uint8_t *b, int64_t size, int64_t sgn, int big, int lh) {
    uint64_t v = rdu(b, size, big, lh);
    if (sgn && size < 8 && ((v >> (8 * size - 1)) & 1)) v |= ~(((uint64_t)1 << (8 * size)) - 1);
    return (int64_t)v;
}

#define FAIL(s, at) do { status = (s); info = (at); goto done; } while (0)

/* The pages of buf[lo:hi] (hi plays the reference's len(buf)), checked as
   ring_buffer.PageDecoder.page checks them. out: status, rows, info, last_ts, rows left
   out, the time of the last of them, pages with lost events. Rows are left out as
   tdrop[id] says (only when storing, and never the walk's first): an id's rows always, or
   those whose pid is the one this CPU is known to run, which the continuity check of the
   transition loop would pass without a change; a switch (tnext[id]: the slot of next_pid)
   says who runs next. What this walk has not seen it does not know (run_has). */
void walk_pages(const uint8_t *buf, int64_t lo, int64_t hi, const int64_t *P,
                const int8_t *ttype, const int64_t *tmin, const int64_t *tpid,
                const int64_t *tnloc, const int64_t *tloc, const int64_t *tslot,
                int64_t *tmax, const int8_t *tdrop, const int8_t *tnext, int64_t nslots,
                int64_t last_ts, int64_t store, int8_t *o_kind, int64_t *o_ts, int32_t *o_tid,
                int32_t *o_pid, int64_t *o_val, int32_t *o_roff, int32_t *o_rlen, int64_t cap,
                int64_t *out)
{
    const int64_t psize = P[0], ts_off = P[1], commit_off = P[2], commit_size = P[3];
    const int64_t head = P[4], data_size = P[5], tl_bits = P[7], td_bits = P[8];
    const int64_t max_data = P[9], padding = P[10], extend = P[11], stamp = P[12];
    const int64_t type_at = P[13], type_size = P[14];
    const int big = P[6] != 0, lh = host_little();
    const int64_t tl_mask = ((int64_t)1 << tl_bits) - 1, td_mask = ((int64_t)1 << td_bits) - 1;
    int64_t n = 0, status = OK, info = 0;
    /* rows left out (tdrop), the time of the last one, and the pid the continuity check
       would expect on this CPU, as far as this walk has seen (run_has: known) */
    int64_t dropped = 0, drop_ts = -1, run_has = 0, run_pid = 0, lost_pages = 0;
    for (int64_t base = lo; base < hi; base += psize) {
        if (hi - base < head) FAIL(DAMAGE, base);
        int64_t ts = (int64_t)rdu(buf + base + ts_off, 8, big, lh);
        int64_t commit = (int64_t)rdu(buf + base + commit_off, commit_size, big, lh);
        int64_t size = commit & COMMIT_MASK;
        int64_t start = base + head, end = start + size;
        if (size > data_size || end > hi) FAIL(DAMAGE, base);
        if (ts < 0 || ts >= TS_LIMIT) FAIL(UNSUPPORTED, base);
        if (size == 0 && ts == 0 && commit == 0) FAIL(UNSUPPORTED, base);  /* a zeroed page */
        {   /* bytes past the commit (and its stored count): the reference reports a loss */
            const int64_t last = start + data_size < hi ? start + data_size : hi;
            for (int64_t k = (commit & STORED) ? end + commit_size : end; k < last; k++)
                if (buf[k]) FAIL(UNSUPPORTED, base);
        }
        if (commit & MISSED) {
            int64_t count = -1;
            if ((commit & STORED) && end + commit_size <= hi) {
                count = (int64_t)rdu(buf + end, commit_size, big, lh);
                if (count < 0) FAIL(UNSUPPORTED, end);
                if (count == 0) count = -1;  /* a stored 0 says nothing: unknown */
            }
            if (ts < last_ts) FAIL(UNSUPPORTED, base);
            last_ts = ts;
            run_has = 0;  /* after a loss the running task is not known */
            lost_pages++;
            if (store) {
                if (n >= cap) FAIL(UNSUPPORTED, base);
                o_kind[n] = ROW_LOST; o_ts[n] = ts; o_tid[n] = -1; o_pid[n] = -1;
                for (int64_t k = 0; k < nslots; k++) o_val[n * nslots + k] = 0;
                o_val[n * nslots] = count;
                o_roff[n] = (int32_t)base; o_rlen[n] = 0;
            }
            n++;
        }
        int64_t pos = start;
        while (pos < end) {
            int64_t rec, nxt;
            if (pos + 4 > end) FAIL(DAMAGE, pos);
            int64_t word = (int64_t)rdu(buf + pos, 4, big, lh);
            int64_t tl, delta;
            if (big) { tl = word >> td_bits; delta = word & td_mask; }
            else { tl = word & tl_mask; delta = word >> tl_bits; }
            if (tl > 0 && tl <= max_data) {
                rec = pos + 4; nxt = rec + 4 * tl;
            } else if (tl == 0) {
                if (pos + 8 > end) FAIL(DAMAGE, pos);
                int64_t length = (int64_t)rdu(buf + pos + 4, 4, big, lh) - 4;
                rec = pos + 8;
                nxt = rec + ((length + 3) & ~(int64_t)3);
                if (length < 0) FAIL(DAMAGE, pos);
            } else if (tl == padding) {
                if (delta == 0) break;
                if (pos + 8 > end) break;
                ts += delta;
                if (ts >= TS_LIMIT) FAIL(UNSUPPORTED, pos);
                pos = pos + 4 + (int64_t)rdu(buf + pos + 4, 4, big, lh);
                continue;
            } else if (tl == extend) {
                if (pos + 8 > end) FAIL(UNSUPPORTED, pos);
                ts += ((int64_t)rdu(buf + pos + 4, 4, big, lh) << td_bits) + delta;
                if (ts >= TS_LIMIT) FAIL(UNSUPPORTED, pos);
                pos += 8;
                continue;
            } else if (tl == stamp) {
                if (pos + 8 > end) FAIL(UNSUPPORTED, pos);
                ts = (((int64_t)rdu(buf + pos + 4, 4, big, lh) << td_bits) + delta) | (ts & TS_MSB);
                if (ts < 0 || ts >= TS_LIMIT) FAIL(UNSUPPORTED, pos);
                pos += 8;
                continue;
            } else {
                FAIL(DAMAGE, pos);
            }
            if (nxt > end) FAIL(DAMAGE, pos);
            ts += delta;
            if (ts >= TS_LIMIT) FAIL(UNSUPPORTED, pos);
            if (rec + type_at + type_size > nxt) FAIL(UNSUPPORTED, pos);
            int64_t tid = (int64_t)rdu(buf + rec + type_at, type_size, big, lh);
            if (tid < 0 || tid >= N_TYPES) FAIL(UNSUPPORTED, pos);
            int state = ttype[tid];
            if (state == T_UNPREPARED) FAIL(NEED_TYPE, tid);
            if (state == T_UNSUPPORTED) FAIL(UNSUPPORTED, pos);
            if (state == T_KNOWN) {
                if (rec + tmin[tid] > nxt) FAIL(DAMAGE, pos);
                for (int64_t j = 0; j < tnloc[tid]; j++) {
                    const int64_t *loc = tloc + (tid * MAX_LOCS + j) * 2;
                    int64_t w = (int64_t)rdu(buf + rec + loc[0], 4, big, lh);
                    if (rec + loc[1] + (w & 0xFFFF) + (w >> 16) > nxt) FAIL(DAMAGE, pos);
                }
            }
            if (ts < last_ts) FAIL(UNSUPPORTED, pos);
            last_ts = ts;
            if (store && n >= cap) FAIL(UNSUPPORTED, pos);
            int64_t pid = -1;
            int64_t *mx = tmax + tid * 2 * (nslots + 1), *mn = mx + nslots + 1;
            if (state == T_KNOWN && tpid[tid * 3 + 1] > 0) {
                const int64_t *f = tpid + tid * 3;
                pid = rdf(buf + rec + f[0], f[1], f[2], big, lh);
                if (pid < INT32_MIN || pid > INT32_MAX) FAIL(UNSUPPORTED, pos);
                if (pid > mx[nslots]) mx[nslots] = pid;
                if (pid < mn[nslots]) mn[nslots] = pid;
            }
            for (int64_t k = 0; k < nslots; k++) {
                const int64_t *f = tslot + (tid * nslots + k) * 3;
                int64_t v = 0;
                if (f[1] > 0) {
                    v = rdf(buf + rec + f[0], f[1], f[2], big, lh);
                    if (f[1] == 8 && !f[2] && v < 0) FAIL(UNSUPPORTED, pos);
                    if (v > mx[k]) mx[k] = v;
                    if (v < mn[k]) mn[k] = v;
                }
                if (store) o_val[n * nslots + k] = v;
            }
            const int8_t drop = store ? tdrop[tid] : DROP_KEEP;
            if (drop == DROP_SWITCH && pid >= 0) {
                if (tnext[tid] >= 0) { run_pid = o_val[n * nslots + tnext[tid]]; run_has = 1; }
            } else if (drop == DROP_IF_RUNNING && (n > 0 || dropped > 0)) {
                if (pid < 0 || (run_has && pid == run_pid)) {
                    dropped++; drop_ts = ts; pos = nxt; continue;
                }
                run_pid = pid; run_has = 1;
            } else if (drop == DROP_ALWAYS && (n > 0 || dropped > 0)) {
                dropped++; drop_ts = ts; pos = nxt; continue;
            } else if (drop == DROP_IF_RUNNING && pid >= 0) {
                run_pid = pid; run_has = 1;
            }
            if (store) {
                o_kind[n] = ROW_EVENT; o_ts[n] = ts; o_tid[n] = (int32_t)tid;
                o_pid[n] = (int32_t)pid; o_roff[n] = (int32_t)rec; o_rlen[n] = (int32_t)(nxt - rec);
            }
            n++;
            pos = nxt;
        }
    }
done:
    out[0] = status; out[1] = n; out[2] = info; out[3] = last_ts; out[4] = dropped;
    out[5] = drop_ts; out[6] = lost_pages;
}

/* The rows of R runs (run r: pieces rb[r]..rb[r+1]-1, each a slice of walked columns: kind,
   ts, tid, pid, val addresses and a row count in pc[6 p..6 p+5]) copied out in merged order:
   always the smallest head timestamp first, ties to the lower run (heapq.merge over
   (ts, run, seq)). Per output row also its run's stream, its piece and its row there.
   CPUs interleave in short runs of rows: each step finds the run with the smallest head
   and the head that bounds it (the second smallest), then copies every row of the first
   that still comes before that bound as one block. */
void merge_rows(const int64_t *pc, const int64_t *rb, const int32_t *run_stream, int64_t R,
                int64_t K, int64_t *cur, int8_t *restrict o_kind, int64_t *restrict o_ts,
                int32_t *restrict o_tid, int32_t *restrict o_pid, int64_t *restrict o_val,
                int32_t *restrict o_stream, int32_t *restrict o_src, int32_t *restrict o_loc)
{
    int64_t *piece = cur, *row = cur + R;  /* each run's current piece and row in it */
    int64_t n = 0;
    for (int64_t r = 0; r < R; r++) { piece[r] = rb[r]; row[r] = 0; }
    /* two CPUs (the common case) while both have rows: one row a step, chosen without a
       branch (which CPU comes next is a coin toss to the branch predictor), in stretches
       that cannot run past the end of either current piece */
    while (R == 2 && piece[0] < rb[1] && piece[1] < rb[2]) {
        const int64_t *p0 = pc + 6 * piece[0], *p1 = pc + 6 * piece[1];
        int64_t i0 = row[0], i1 = row[1];
        const int64_t n0 = p0[5], n1 = p1[5];
        const int64_t steps = (n0 - i0) < (n1 - i1) ? (n0 - i0) : (n1 - i1);
        const int8_t *restrict K0 = (const int8_t *)p0[0], *restrict K1 = (const int8_t *)p1[0];
        const int64_t *restrict T0 = (const int64_t *)p0[1], *restrict T1 = (const int64_t *)p1[1];
        const int32_t *restrict D0 = (const int32_t *)p0[2], *restrict D1 = (const int32_t *)p1[2];
        const int32_t *restrict P0 = (const int32_t *)p0[3], *restrict P1 = (const int32_t *)p1[3];
        const int64_t *restrict V0 = (const int64_t *)p0[4], *restrict V1 = (const int64_t *)p1[4];
        const int32_t s0 = run_stream[0], s1 = run_stream[1];
        const int32_t q0 = (int32_t)piece[0], q1 = (int32_t)piece[1];
        for (int64_t k = 0; k < steps; k++, n++) {
            const int64_t t0 = T0[i0], t1 = T1[i1];
            const int64_t take1 = t1 < t0;  /* a tie goes to the lower run */
            const int64_t m = -take1;       /* all ones: run 1 */
            const int32_t m32 = (int32_t)m;
            o_ts[n] = (t1 & m) | (t0 & ~m);
            o_kind[n] = (int8_t)((K1[i1] & m32) | (K0[i0] & ~m32));
            o_tid[n] = (D1[i1] & m32) | (D0[i0] & ~m32);
            o_pid[n] = (P1[i1] & m32) | (P0[i0] & ~m32);
            for (int64_t s = 0; s < K; s++)
                o_val[n * K + s] = (V1[i1 * K + s] & m) | (V0[i0 * K + s] & ~m);
            o_stream[n] = (s1 & m32) | (s0 & ~m32);
            o_src[n] = (q1 & m32) | (q0 & ~m32);
            o_loc[n] = (int32_t)((i1 & m) | (i0 & ~m));
            i0 += 1 - take1; i1 += take1;
        }
        if (i0 >= n0) { piece[0]++; i0 = 0; }
        if (i1 >= n1) { piece[1]++; i1 = 0; }
        row[0] = i0; row[1] = i1;
    }
    for (;;) {
        /* the smallest and second smallest heads by (ts, run): r rises, so ties keep the
           lower run first */
        int64_t b = -1, bt = 0, c = -1, ct = 0;
        for (int64_t r = 0; r < R; r++) {
            const int64_t q = piece[r];
            if (q >= rb[r + 1]) continue;
            const int64_t t = ((const int64_t *)pc[6 * q + 1])[row[r]];
            if (b < 0 || t < bt) { c = b; ct = bt; b = r; bt = t; }
            else if (c < 0 || t < ct) { c = r; ct = t; }
        }
        if (b < 0) return;
        const int64_t q = piece[b], l = row[b], *p = pc + 6 * q, len = p[5];
        const int64_t *restrict T = (const int64_t *)p[1];
        int64_t e = l + 1;  /* the head itself comes first */
        if (c < 0) e = len;
        else if (b < c) while (e < len && T[e] <= ct) e++;  /* a tie goes to the lower run */
        else while (e < len && T[e] < ct) e++;
        const int8_t *restrict kind = (const int8_t *)p[0];
        const int32_t *restrict tid = (const int32_t *)p[2];
        const int32_t *restrict pid = (const int32_t *)p[3];
        const int64_t *restrict val = (const int64_t *)p[4];
        const int32_t stream = run_stream[b];
        for (int64_t k = l; k < e; k++, n++) {
            o_kind[n] = kind[k]; o_ts[n] = T[k]; o_tid[n] = tid[k]; o_pid[n] = pid[k];
            for (int64_t s = 0; s < K; s++) o_val[n * K + s] = val[k * K + s];
            o_stream[n] = stream; o_src[n] = (int32_t)q; o_loc[n] = (int32_t)k;
        }
        if (e >= len) { piece[b]++; row[b] = 0; }
        else row[b] = e;
    }
}
"""

_lib: ctypes.CDLL | None = None


def native() -> ctypes.CDLL:
    """The walker's library (built on first use)."""
    global _lib
    if _lib is None:
        lib = build_native("pyrv_columnar", COLUMNAR_C)
        lib.walk_pages.restype = None
        lib.walk_pages.argtypes = [PTR, I64, I64, *[PTR] * 10, I64, I64, I64, *[PTR] * 7]
        lib.walk_pages.argtypes += [I64, PTR]
        lib.merge_rows.restype = None
        lib.merge_rows.argtypes = [PTR, PTR, PTR, I64, I64, *[PTR] * 9]
        _lib = lib
    return _lib


def available() -> bool:
    """Whether the native code can be built and loaded here."""
    try:
        native()
    except Unsupported:
        return False
    return True


def ptr(a: np.ndarray) -> int:
    """The address of a C-contiguous array's data."""
    assert a.flags.c_contiguous, "native code needs contiguous arrays"
    return a.ctypes.data


# ---------------------------------------------------------------------------------------------
# What the walker needs to know per event id, taken from the reference decoder.


@dataclass
class TypeInfo:
    """One event id as the reference decodes it."""

    tid: int
    decoder: Any  # EventDecoder, None for an id without a format
    name: str
    system: str | None
    slots: list[str] = field(default_factory=list)  # field names in slot order
    int_fields: frozenset[str] = frozenset()  # fields whose decoded value is an int
    str_fields: frozenset[str] = frozenset()  # fields whose decoded value is a str
    slot_specs: dict[str, tuple[int, int, bool]] = field(default_factory=dict)


#: ``plan(info) -> slot field names``, or raises Unsupported (the event cannot be expressed)
SlotPlanner = Callable[[TypeInfo], list[str]]
#: an event id's rule for leaving rows out: (DROP_*, slot of next_pid or -1)
Dropper = Callable[[TypeInfo], tuple[int, int]]


def _struct_int(f: Any) -> bool:
    """The reference reads the field with a struct integer code (see ring_buffer._struct_code)."""
    return (not f.data_loc) and f.size in (1, 2, 4, 8) and f.array_len is None


class TypeTables:
    """The per-event-id arrays the walker reads, filled on demand from the reference decoder."""

    def __init__(
        self, page_decoder: Any, nslots: int, planner: SlotPlanner, dropper: Dropper | None
    ) -> None:
        self.pd = page_decoder
        self.nslots = nslots
        self.planner = planner
        self.dropper = dropper
        self.tdrop = np.zeros(N_TYPES, np.int8)
        self.tnext = np.full(N_TYPES, -1, np.int8)
        self.ttype = np.zeros(N_TYPES, np.int8)
        self.tmin = np.zeros(N_TYPES, np.int64)
        self.tpid = np.zeros((N_TYPES, 3), np.int64)
        self.tnloc = np.zeros(N_TYPES, np.int64)
        self.tloc = np.zeros((N_TYPES, MAX_LOCS, 2), np.int64)
        self.tslot = np.zeros((N_TYPES, nslots, 3), np.int64)
        #: largest, then smallest value seen per event id and slot (each half's last column:
        #: common_pid)
        self.tmax = np.full((N_TYPES, 2 * (nslots + 1)), -1, np.int64)
        self.tmax[:, nslots + 1 :] = np.iinfo(np.int64).max
        self.info: dict[int, TypeInfo] = {}

    def prepare(self, tid: int) -> TypeInfo:
        if tid in self.info:
            return self.info[tid]
        dec = self.pd.decoder(tid)
        if dec is None:
            info = TypeInfo(tid, None, "unknown", None)
            self.info[tid] = info
            self.ttype[tid] = T_UNKNOWN_ID
            info.slots = self._plan(info)
            return info
        fmt = dec.format
        info = TypeInfo(tid, dec, dec.name, dec.system)
        self.info[tid] = info
        try:
            self._fill(tid, info, fmt, dec)
        except Unsupported:
            self.ttype[tid] = T_UNSUPPORTED
            return info
        self.ttype[tid] = T_KNOWN
        return info

    def _plan(self, info: TypeInfo) -> list[str]:
        try:
            slots = self.planner(info)
        except Unsupported:
            self.ttype[info.tid] = T_UNSUPPORTED
            return []
        if slots:  # an id without a format has no fields to read
            self.ttype[info.tid] = T_UNSUPPORTED
        self._drop_rule(info)
        return slots

    def _drop_rule(self, info: TypeInfo) -> None:
        """The id's rule for the walker (set before the id is published as prepared)."""
        if self.dropper is not None:
            rule, nxt = self.dropper(info)
            self.tdrop[info.tid], self.tnext[info.tid] = rule, nxt

    def _fill(self, tid: int, info: TypeInfo, fmt: Any, dec: Any) -> None:
        fields = sorted([*fmt.common_fields, *fmt.fields], key=lambda f: f.offset)
        pos = 0
        for f in fields:  # the reference reads overlapping fields on their own: not here
            if not (f.size == 4 if f.data_loc else f.size != 0):
                continue
            if f.offset < pos:
                raise Unsupported(f"{fmt.name}: overlapping fields")
            pos = f.offset + f.size
        self.tmin[tid] = dec.min_size
        locs = [f for f in fmt.fields if f.data_loc and f.size == 4]
        if len(locs) > MAX_LOCS:
            raise Unsupported(f"{fmt.name}: too many dynamic fields")
        self.tnloc[tid] = len(locs)
        for j, f in enumerate(locs):
            rel = f.offset + f.size if f.type.startswith("__rel_loc") else 0
            self.tloc[tid, j] = (f.offset, rel)
        common = {f.name: f for f in fmt.common_fields}
        cpid = common.get("common_pid")
        if cpid is not None:
            if not _struct_int(cpid):
                raise Unsupported(f"{fmt.name}: common_pid is not an integer")
            self.tpid[tid] = (cpid.offset, cpid.size, int(cpid.signed))
        # what each field decodes to: decode an all-zero record with the reference decoder
        try:
            _pid, _fl, _pr, values = dec.decode(bytes(dec.min_size), 0, dec.min_size)
        except Exception as exc:  # noqa: BLE001 - anything odd: the reference decides
            raise Unsupported(f"{fmt.name}: {exc}") from None
        info.int_fields = frozenset(
            k for k, v in values.items() if isinstance(v, int) and not isinstance(v, bool)
        )
        info.str_fields = frozenset(k for k, v in values.items() if isinstance(v, str))
        by_name = {f.name: f for f in fmt.fields}
        for name, f in by_name.items():
            if _struct_int(f):
                info.slot_specs[name] = (f.offset, f.size, bool(f.signed))
        slots = self.planner(info)
        if len(slots) > self.nslots:
            raise Unsupported(f"{fmt.name}: too many fields to read")
        for k, name in enumerate(slots):
            spec = info.slot_specs.get(name)
            if spec is None:
                raise Unsupported(f"{fmt.name}: field {name} cannot be read as a column")
            self.tslot[tid, k] = (spec[0], spec[1], int(spec[2]))
        info.slots = slots
        self._drop_rule(info)

    def walker_args(self) -> tuple:
        return (self.ttype, self.tmin, self.tpid, self.tnloc, self.tloc, self.tslot, self.tmax,
                self.tdrop, self.tnext)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Streams: where each CPU's pages are, read in the chunks the reference reads them in.


@dataclass
class Chunk:
    """Whole pages ``arr[0:len]`` (the reference's ``buf``); ``pybuf`` holds the same bytes for
    the reference decoder."""

    arr: np.ndarray
    pybuf: bytes


#: a chunk's bytes, produced when called (read, decompress); run ahead in worker threads
ChunkTask = Callable[[], bytes]


@dataclass
class StreamSpec:
    """One CPU of one buffer: the reference's stream of that index."""

    index: int
    cpu: int
    source: str
    tasks: Callable[[], Iterator[ChunkTask]]  # a fresh iterator per call (validate, read)
    carry: bool = False  # v7 compressed: pages continue across chunk boundaries


def _layout_params(layout: Any, type_at: int, type_size: int) -> np.ndarray:
    hp, he = layout.page, layout.event
    if hp.commit_size not in (4, 8):
        raise Unsupported(f"page header commit of {hp.commit_size} bytes")
    if hp.timestamp_offset + 8 > hp.data_offset or hp.commit_offset + hp.commit_size > (
        hp.data_offset
    ):
        raise Unsupported("page header fields outside the header")
    if hp.page_size <= 0:
        raise Unsupported("page size 0")
    return np.array(
        [
            hp.page_size,
            hp.timestamp_offset,
            hp.commit_offset,
            hp.commit_size,
            hp.data_offset,
            hp.data_size,
            int(layout.byteorder == ">"),
            he.type_len_bits,
            he.time_delta_bits,
            he.data_max_type_len,
            he.padding,
            he.time_extend,
            -1 if he.time_stamp is None else he.time_stamp,
            type_at,
            type_size,
        ],
        np.int64,
    )


class _File:
    """A regular file read with pread (nothing of it stays mapped: memory stays flat). The
    descriptor is closed when the object goes away."""

    def __init__(self, path: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDONLY)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Unsupported(f"{path} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        self.size = st.st_size
        self.fd = fd
        weakref.finalize(self, os.close, fd)

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self.fd, size, offset)


def _plain_tasks(f: _File, start: int, end: int, step: int) -> Callable[[], Iterator[ChunkTask]]:
    def gen() -> Iterator[ChunkTask]:
        for lo in range(start, end, step):
            n = min(lo + step, end) - lo
            yield lambda lo=lo, n=n: f.read(lo, n)

    return gen


class _SizedTask:
    """A chunk task that knows the size of its bytes before it runs (a compressed chunk's
    header says it): whether the next chunk starts on a page boundary is known in advance."""

    __slots__ = ("args", "fn", "size")

    def __init__(self, fn: Callable[..., bytes], args: tuple, size: int) -> None:
        self.fn, self.args, self.size = fn, args, size

    def __call__(self) -> bytes:
        return self.fn(*self.args)


#: bytes read at once where the headers of compressed chunks are (a read of its own for every
#: header would give the GIL away, and wait for it, twice per chunk)
_HEADER_WINDOW = 1 << 20


def _compressed_tasks(
    f: _File, offset: int, decompress: Callable[[bytes, int], bytes], order: str, size: int
) -> Callable[[], Iterator[ChunkTask]]:
    """v7 compressed CPU data: ``u32 count`` then ``{u32 csize, u32 size, data}`` chunks, which
    must end where the index's ``size`` says (with or without the count: see TraceDat)."""
    endian = "little" if order == "<" else "big"
    window = [0, b""]  # chunk headers are read from windows of the file, not one read each

    def u32(at: int) -> int:
        start, data = window
        if not start <= at <= start + len(data) - 4:
            window[:] = start, data = at, f.read(at, _HEADER_WINDOW)
        raw = data[at - start : at - start + 4]
        if len(raw) < 4:
            raise Unsupported("compressed data truncated")
        return int.from_bytes(raw, endian)

    def inflate(pos: int, csize: int, usize: int) -> bytes:
        blob = f.read(pos, csize)
        if len(blob) != csize:
            raise Unsupported("compressed chunk truncated")
        try:
            data = decompress(blob, usize)
        except Exception as exc:  # noqa: BLE001 - the reference reports it
            raise Unsupported(f"chunk does not decompress: {exc}") from None
        if len(data) != usize:
            raise Unsupported("chunk decompressed to an unexpected size")
        return data

    def gen() -> Iterator[ChunkTask]:
        pos = offset
        count = u32(pos)
        pos += 4
        for _ in range(count):
            if pos >= offset + size:
                raise Unsupported("more compressed chunks than the buffer index's size holds")
            csize, usize = u32(pos), u32(pos + 4)
            pos += 8
            if usize > 1 << 28:
                raise Unsupported("implausible chunk size")
            yield _SizedTask(inflate, (pos, csize, usize), usize)
            pos += csize
        if pos not in (offset + size, offset + size + 4):
            raise Unsupported("compressed chunks do not end where the buffer index says")

    return gen


#: the walker's out array: status, rows, info, last time, rows left out, time of the last,
#: pages that say events were lost before them
_OUT = 7

#: chunks read/decompressed ahead of the walker, in worker threads
_AHEAD = 16


class _Task:
    """A call run by a :class:`_Pool` thread; :meth:`result` waits for it."""

    __slots__ = ("args", "error", "fn", "lock", "value")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args, self.value, self.error = fn, args, None, None
        self.lock = threading.Lock()
        self.lock.acquire()  # released when done

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits
            self.error = exc
        self.lock.release()

    def result(self) -> Any:
        with self.lock:
            pass
        if self.error is not None:
            raise self.error
        return self.value


class _Pool:
    """Worker threads running calls in the order they were submitted: what
    ThreadPoolExecutor does here, with less per call (and without importing it and logging
    at every start). Leaving the ``with`` block stops the threads; calls not started are
    dropped (nobody waits for them any more)."""

    def __init__(self, workers: int) -> None:
        self.queue: SimpleQueue[_Task | None] = SimpleQueue()
        self.closed = False
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(workers)]
        for t in self.threads:
            t.start()

    def _work(self) -> None:
        while (task := self.queue.get()) is not None:
            if not self.closed:
                task.run()

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Task:
        task = _Task(fn, args)
        self.queue.put(task)
        return task

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.closed = True
        for _ in self.threads:
            self.queue.put(None)
        for t in self.threads:
            t.join()


def _chunks(spec: StreamSpec, pool: _Pool, psize: int) -> Iterator[Chunk]:
    """The stream's chunks, produced ahead by ``pool``, with TraceDat._cpu_items' carrying of
    partial pages across compressed chunks."""
    tasks = spec.tasks()
    pending: deque[_Task] = deque()
    rest = b""
    while True:
        while len(pending) < _AHEAD:
            task = next(tasks, None)
            if task is None:
                break
            pending.append(pool.submit(task))
        if not pending:
            break
        data = pending.popleft().result()
        if not spec.carry:
            yield Chunk(np.frombuffer(data, np.uint8), data)
            continue
        data = rest + data if rest else data
        whole = len(data) - len(data) % psize
        rest = data[whole:]
        if whole < len(data):
            data = data[:whole]
        yield Chunk(np.frombuffer(data, np.uint8), data)
    if rest:
        yield Chunk(np.frombuffer(rest, np.uint8), rest)


# ---------------------------------------------------------------------------------------------
# A trace as columns.

_COLUMNS = ("kind", "ts", "tid", "pid", "val", "roff", "rlen", "seg")
#: the columns a batch joins (the others stay in the pieces: Batch.where)
_JOINED = _COLUMNS[:5]
_NOSEG = np.zeros(0, np.int32)


@dataclass
class Rows:
    """Decoded rows: per stream in stream order, or a batch (streams concatenated)."""

    kind: np.ndarray  # int8: ROW_EVENT or ROW_LOST
    ts: np.ndarray  # int64, raw (the file's OFFSET not applied)
    tid: np.ndarray  # int32 event id (-1: lost row)
    pid: np.ndarray  # int32 common_pid (-1: none)
    val: np.ndarray  # int64 [rows, slots] (lost rows: stored count or -1 in slot 0)
    roff: np.ndarray  # int32 record offset in its chunk
    rlen: np.ndarray  # int32 record length
    seg: np.ndarray  # int32 segment id (which chunk's bytes)

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class Batch:
    """Rows of every stream in merged order.

    ``order`` is None (the rows are in merged order; kept for the engine, which also takes
    rows in another order); ``stream[r]`` the stream of row ``r``; ``segments[seg]`` a
    chunk's bytes. Where a record lies (``roff``, ``rlen``, ``seg``: needed only to decode
    the rare record) stays in the walked pieces: row ``r`` is row ``loc[r]`` of piece
    ``src[r]`` (the merged rows leave those columns empty)."""

    rows: Rows
    order: np.ndarray | None
    stream: np.ndarray
    segments: dict[int, bytes]
    pieces: list[tuple[_Scratch, int, int]] = field(default_factory=list)  # scratch, lo, seg
    src: np.ndarray = field(default_factory=lambda: _NOSEG)
    loc: np.ndarray = field(default_factory=lambda: _NOSEG)

    def where(self, row: int) -> tuple[bytes, int, int]:
        """The bytes, offset and length of the record in row ``row``."""
        scratch, lo, seg = self.pieces[int(self.src[row])]
        at = lo + int(self.loc[row])
        return self.segments[seg], int(scratch.cols[5][at]), int(scratch.cols[6][at])

    def merged(self) -> np.ndarray:
        """Row indices in merged order."""
        return self.order if self.order is not None else np.arange(len(self.rows))


@dataclass
class _Walked:
    """A chunk as a worker thread left it: its bytes, and the rows it walked (None: the main
    thread walks it, because it continues a partial page or meets an event id not prepared
    yet)."""

    data: bytes
    rows: Rows | None
    status: int = OK
    info: int = 0
    scratch: _Scratch | None = None  # where the rows are (back to the pool once merged)
    last_ts: int = -1  # of the chunk's last row, left out or not
    dropped: int = 0  # event rows left out (the first row of a chunk never is)
    drop_ts: int = -1  # the time of the last of them


class _Pending:
    """One stream's decoded rows not yet emitted: a queue of walked chunks, each rows
    ``lo:hi`` of a scratch buffer (never copied until they are merged into a batch)."""

    def __init__(self) -> None:
        #: scratch buffer, first and end row, segment id, the chunk's bytes
        self.pieces: deque[tuple[_Scratch, int, int, int, bytes]] = deque()
        self.n = 0

    def add(self, scratch: _Scratch, rows: int, seg: int, buf: bytes) -> None:
        self.pieces.append((scratch, 0, rows, seg, buf))
        self.n += rows

    @property
    def tail_ts(self) -> int:
        scratch, _lo, hi, _seg, _buf = self.pieces[-1]
        return int(scratch.cols[1][hi - 1])

    def below(self, limit: int | None) -> int:
        """How many pending rows come before ``limit`` (all: None)."""
        if limit is None:
            return self.n
        count = 0
        for scratch, lo, hi, _seg, _buf in self.pieces:
            ts = scratch.cols[1]
            if ts[hi - 1] < limit:
                count += hi - lo
                continue
            return count + int(np.searchsorted(ts[lo:hi], limit, "left"))
        return count

    def take(self, cut: int) -> list[tuple[_Scratch, int, int, int, bytes, bool]]:
        """Remove the first ``cut`` rows: (scratch, lo, hi, segment id, bytes, last) pieces,
        ``last`` when nothing pending uses the scratch buffer any more."""
        out = []
        while cut:
            scratch, lo, hi, seg, buf = self.pieces[0]
            if hi - lo <= cut:
                self.pieces.popleft()
                out.append((scratch, lo, hi, seg, buf, True))
                cut -= hi - lo
                self.n -= hi - lo
                continue
            out.append((scratch, lo, lo + cut, seg, buf, False))
            self.pieces[0] = (scratch, lo + cut, hi, seg, buf)
            self.n -= cut
            cut = 0
        return out


class _Scratch:
    """Walker output columns, from a pool: the rows of one chunk stay in them (no copy) until
    the batch they went into is done, then the buffer is reused."""

    def __init__(self, nslots: int) -> None:
        self.nslots = nslots
        self.cap = 0
        self._grow(1 << 16)

    def _grow(self, cap: int) -> None:
        self.cap = cap
        n = self.nslots
        self.cols = [np.empty(cap, np.int8), np.empty(cap, np.int64), np.empty(cap, np.int32),
                     np.empty(cap, np.int32), np.empty((cap, n), np.int64),
                     np.empty(cap, np.int32), np.empty(cap, np.int32)]  # fmt: skip
        self.ptrs = tuple(ptr(a) for a in self.cols)

    def reserve(self, rows: int) -> None:
        if rows > self.cap:
            self._grow(max(rows, 2 * self.cap))

    def rows(self, n: int) -> Rows:
        """Views of the first ``n`` rows (the segment column is the piece's)."""
        c = self.cols
        return Rows(*(a[:n] for a in c[:5]), c[5][:n], c[6][:n], _NOSEG)


class _StreamReader:
    """One stream's walked chunks, in order, into its pending rows."""

    def __init__(self, trace: ColumnarTrace, spec: StreamSpec, pool: _Pool) -> None:
        self.trace = trace
        self.spec = spec
        self.chunks = trace._walked_chunks(spec, pool)
        self.pending = _Pending()
        self.live = True
        self.last_ts = -1

    @property
    def tail_ts(self) -> int:
        return self.pending.tail_ts

    def fill(self, rows: int) -> None:
        """Take walked chunks until ``rows`` rows are pending or the stream ends."""
        while self.live and self.pending.n < rows:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.live = False
                return
            self.trace._take(chunk, self)

    def grow_one(self) -> None:
        """Decode at least one more row (or find the stream exhausted)."""
        self.fill(self.pending.n + 1)


class ColumnarTrace:
    """A binary trace's streams, validated, then read as merged batches of rows.

    ``streams`` are :class:`StreamSpec` in the reference's stream order; ``page_decoder`` is a
    reference :class:`~pyrv.sources.ring_buffer.PageDecoder` for the trace (its formats,
    layout, cmdlines and printk formats); ``planner`` picks each event id's slot fields;
    ``dropper`` (optional) says which rows of an id the walker may leave out: rows that
    change nothing but the count of events read, which is kept (:attr:`dropped`).

    Chunks are walked by the worker threads that read and decompress them (the walker runs
    without the GIL, beside the transition loop), each with its own table of extremes and
    with a snapshot of the event-id states taken after the last id was prepared: an id
    prepared later, a page continued from the previous chunk or the order across chunks are
    the main thread's to handle, in stream order, exactly as one sequential walk would.
    """

    def __init__(
        self,
        streams: list[StreamSpec],
        page_decoder: Any,
        nslots: int,
        planner: SlotPlanner,
        *,
        batch_rows: int | None = None,
        dropper: Dropper | None = None,
    ) -> None:
        self.streams = streams
        self.pd = page_decoder
        layout = page_decoder.layout
        self.layout = layout
        self.nslots = max(1, nslots)
        self.tables = TypeTables(page_decoder, self.nslots, planner, dropper)
        # common_type is read as PageDecoder reads it (a 1, 2 or 4 byte struct code)
        type_size = page_decoder._type.__self__.size
        self.P = _layout_params(layout, page_decoder._type_at, type_size)
        self.psize = layout.page_size
        self.batch_rows = batch_rows or BATCH_ROWS
        self._out = np.zeros(_OUT, np.int64)
        self._lib = native()
        # the walker's fixed arguments, as addresses (the tables never move)
        t = self.tables
        self._head = (ptr(self.P),)
        self._fixed = tuple(ptr(a) for a in t.walker_args()[1:6])
        self._drops = (ptr(t.tdrop), ptr(t.tnext))
        self._tables = (ptr(t.ttype), *self._fixed, ptr(t.tmax), *self._drops)
        self._outp = ptr(self._out)
        self._seg = 0
        #: event rows the walker left out (``dropper``), and the time of the last of them
        self.dropped, self.drop_ts = 0, -1
        #: rows left out of chunks not merged to the end yet, by segment: (count, last time)
        self._seg_drops: dict[int, tuple[int, int]] = {}
        #: the event-id states the workers walk with (replaced, never changed, on prepare)
        self._states = t.ttype.copy()
        self._local = threading.local()
        self._extremes = [t.tmax]  # the main thread's, then one per worker thread
        self._lock = threading.Lock()
        self._free: deque[_Scratch] = deque()  # scratch buffers to reuse (any thread)
        self._merged: list[_Scratch] = []  # those the current batch's rows are in
        self._batch: dict[str, np.ndarray] | None = None

    @property
    def tmax(self) -> _Extremes:
        """Per event id, the largest value of each slot (last column: ``common_pid``)."""
        return _Extremes(self._extremes, 0, self.nslots + 1, max)

    @property
    def tlow(self) -> _Extremes:
        """Per event id, the smallest value of each slot (last column: ``common_pid``)."""
        return _Extremes(self._extremes, self.nslots + 1, self.nslots + 1, min)

    # -- decoding -------------------------------------------------------------------------------

    def _call_walker(
        self, buf: bytes, hi: int, tables: tuple, last_ts: int, store: tuple | None, out: Any
    ) -> tuple[int, int, int]:
        outs, cap = store if store is not None else ((None,) * 7, 0)
        self._lib.walk_pages(buf, 0, hi, *self._head, *tables, self.nslots, last_ts,
                             int(store is not None), *outs, cap, out.ctypes.data)  # fmt: skip
        return int(out[0]), int(out[1]), int(out[2])

    def _walk(self, chunk: Chunk, last_ts: int) -> tuple[int, int, int]:
        """Check one chunk (nothing stored); (status, rows, info) with ``last_ts`` updated in
        ``self._out[3]``."""
        while True:
            status, rows, info = self._call_walker(
                chunk.pybuf, len(chunk.pybuf), self._tables, last_ts, None, self._out
            )
            if status != NEED_TYPE:
                return status, rows, info
            self._prepare(info)  # walk the chunk again, now that the id is known

    def _prepare(self, tid: int) -> None:
        self.tables.prepare(tid)
        self._states = self.tables.ttype.copy()  # published whole: workers see old or new

    def _walk_rows(self, buf: bytes, hi: int, tables: tuple, out: Any) -> _Walked:
        """Walk ``buf[:hi]`` from no previous time into a scratch buffer of the pool."""
        try:
            scratch = self._free.pop()
        except IndexError:
            scratch = _Scratch(self.nslots)
        scratch.reserve(hi // 8 + hi // self.psize + 8)
        store = (scratch.ptrs, scratch.cap)
        status, n, info = self._call_walker(buf, hi, tables, -1, store, out)
        if status == NEED_TYPE:
            self._free.append(scratch)
            return _Walked(buf, None, status, info)
        last_ts, dropped, drop_ts = (int(x) for x in out[3:6])
        return _Walked(buf, scratch.rows(n), status, info, scratch, last_ts, dropped, drop_ts)

    def _drop(self, walked: _Walked) -> None:
        """A walk not used: its scratch buffer back to the pool."""
        if walked.scratch is not None:
            self._free.append(walked.scratch)
            walked.scratch = None

    def _worker_walk(self, task: ChunkTask, on_page: bool, carry: bool) -> _Walked:
        """In a worker thread: read the chunk, and walk it when it starts on a page (its
        whole pages only, when pages continue across chunks)."""
        data = task()
        if not on_page:
            return _Walked(data, None)
        local = self._local
        if getattr(local, "tmax", None) is None:
            local.tmax = np.full_like(self.tables.tmax, -1)
            local.tmax[:, self.nslots + 1 :] = np.iinfo(np.int64).max
            local.out = np.zeros(_OUT, np.int64)
            with self._lock:
                self._extremes.append(local.tmax)
        states = self._states
        tables = (ptr(states), *self._fixed, ptr(local.tmax), *self._drops)
        hi = len(data) - len(data) % self.psize if carry else len(data)
        walked = self._walk_rows(data, hi, tables, local.out)
        walked.data = data
        return walked

    def _main_walk(self, buf: bytes, hi: int) -> _Walked:
        """Walk on the main thread (the ids it meets are prepared here)."""
        while True:
            walked = self._walk_rows(buf, hi, self._tables, self._out)
            if walked.status != NEED_TYPE:
                return walked
            self._prepare(walked.info)

    def _walked_chunks(self, spec: StreamSpec, pool: _Pool) -> Iterator[_Walked]:
        """The stream's chunks walked (ahead, by ``pool``), with TraceDat._cpu_items' carrying
        of partial pages across compressed chunks."""
        psize = self.psize
        tasks = spec.tasks()
        pending: deque[_Task] = deque()
        rest = b""
        at = 0  # bytes of the stream before the next task's
        while True:
            while len(pending) < _AHEAD:
                task = next(tasks, None)
                if task is None:
                    break
                size = getattr(task, "size", None)
                pending.append(pool.submit(self._worker_walk, task, at % psize == 0, spec.carry))
                at += size or 0
            if not pending:
                break
            walked = pending.popleft().result()
            if not spec.carry:
                yield walked if walked.rows is not None else self._main_walk(*_whole(walked.data))
                continue
            data = rest + walked.data if rest else walked.data
            whole = len(data) - len(data) % psize
            if rest or walked.rows is None:
                self._drop(walked)
                walked = self._main_walk(data, whole)
            rest = data[whole:]
            yield walked
        if rest:
            yield self._main_walk(rest, len(rest))

    def validate(self) -> None:
        """Walk every page of every stream once; raise :class:`Unsupported` at the first page
        the reference would reject or that the fast path would not reproduce."""
        with _Pool(2) as pool:
            for spec in self.streams:
                last = -1
                for chunk in _chunks(spec, pool, self.psize):
                    status, _n, info = self._walk(chunk, last)
                    last = int(self._out[3])
                    if status == DAMAGE:
                        raise Unsupported(f"{spec.source}: damaged page data near offset {info}")
                    if status != OK:
                        raise Unsupported(f"{spec.source}: input the fast path does not reproduce")
                    if self._out[6]:  # the reference skips other CPUs' events inside a loss
                        raise Unsupported(f"{spec.source}: lost pages (the reference judges them)")

    def _take(self, walked: _Walked, reader: _StreamReader) -> None:
        """A walked chunk's rows into the stream's pending rows, in stream order: the checks
        the walker makes across chunks (time never goes backwards) are made here."""
        rows = walked.rows
        assert rows is not None
        source = reader.spec.source
        if len(rows) and int(rows.ts[0]) < reader.last_ts:
            raise Unsupported(f"{source}: input the fast path does not reproduce")
        if walked.status == DAMAGE:
            raise Unsupported(f"{source}: damaged page data")
        if walked.status != OK:
            raise Unsupported(f"{source}: input the fast path does not reproduce")
        if len(rows):
            assert walked.scratch is not None
            reader.last_ts = walked.last_ts
            reader.pending.add(walked.scratch, len(rows), self._seg, walked.data)
            if walked.dropped:  # counted once the chunk's rows are merged (a run may stop)
                self._seg_drops[self._seg] = (walked.dropped, walked.drop_ts)
            self._seg += 1
        else:
            self._drop(walked)

    # -- merged batches -------------------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        """Merged batches of rows, in the reference's item order (each valid until the next
        is asked for: their arrays are reused)."""
        with _Pool(2) as pool:
            readers = [_StreamReader(self, s, pool) for s in self.streams]
            share = max(1, self.batch_rows // max(1, len(readers)))
            while True:
                for r in readers:
                    r.fill(share)
                if not any(r.pending.n for r in readers):
                    return
                while True:
                    live = [r for r in readers if r.live]
                    limit = min(r.tail_ts for r in live) if live else None
                    if limit is None:
                        break
                    if any(r.pending.below(limit) for r in readers):
                        break
                    min(live, key=lambda r: r.tail_ts).grow_one()
                cuts = [r.pending.below(limit) for r in readers]
                yield self._merge(readers, cuts)

    def _merge(self, readers: list[_StreamReader], cuts: list[int]) -> Batch:
        """The next batch: the pending rows before the cuts copied out in merged order, into
        buffers reused from batch to batch (a batch is valid until the next is asked for)."""
        self._free.extend(self._merged)  # the previous batch is done with them
        self._merged = []
        segments: dict[int, bytes] = {}
        pieces: list[tuple[_Scratch, int, int]] = []
        addresses: list[int] = []
        bounds = [0]
        indices = []
        k = self.nslots
        for reader, cut in zip(readers, cuts, strict=True):
            if not cut:
                continue
            for scratch, lo, hi, seg, buf, last in reader.pending.take(cut):
                if last:
                    self._merged.append(scratch)
                    dropped, drop_ts = self._seg_drops.pop(seg, (0, -1))
                    self.dropped += dropped
                    self.drop_ts = max(self.drop_ts, drop_ts)
                pieces.append((scratch, lo, seg))
                kind, ts, tid, pid, val = scratch.ptrs[:5]
                addresses += (kind + lo, ts + 8 * lo, tid + 4 * lo, pid + 4 * lo,
                              val + 8 * k * lo, hi - lo)  # fmt: skip
                segments[seg] = buf
            bounds.append(len(pieces))
            indices.append(reader.spec.index)
        total = sum(cuts)
        out = self._buffers(total)
        pc = np.array(addresses, np.int64)
        rb = np.array(bounds, np.int64)
        runs = np.array(indices, np.int32)
        cur = np.empty(2 * len(indices), np.int64)
        cols = [out[c] for c in ("kind", "ts", "tid", "pid", "val", "stream", "src", "loc")]
        self._lib.merge_rows(ptr(pc), ptr(rb), ptr(runs), len(indices), k, ptr(cur),
                             *(ptr(c) for c in cols))  # fmt: skip
        rows = Rows(*cols[:5], _NOSEG, _NOSEG, _NOSEG)
        return Batch(rows, None, cols[5], segments, pieces, cols[6], cols[7])

    def _buffers(self, rows: int) -> dict[str, np.ndarray]:
        """Views of ``rows`` rows of the batch buffers (grown when a batch is bigger)."""
        bufs = self._batch
        if bufs is None or len(bufs["ts"]) < rows:
            cap = max(rows, 2 * len(bufs["ts"]) if bufs else 0, 1024)
            kinds = (np.int8, np.int64, np.int32, np.int32)
            bufs = {c: np.empty(cap, k) for c, k in zip(_JOINED[:4], kinds, strict=True)}
            bufs["val"] = np.empty((cap, self.nslots), np.int64)
            for c in ("stream", "src", "loc"):
                bufs[c] = np.empty(cap, np.int32)
            self._batch = bufs
        return {c: a[:rows] for c, a in bufs.items()}

    def decode_record(self, batch: Batch, row: int) -> dict[str, Any]:
        """The reference decoder's fields of the event in row ``row`` of ``batch``."""
        return self.record_at(batch, row)()

    def record_at(self, batch: Batch, row: int) -> Callable[[], dict[str, Any]]:
        """:meth:`decode_record` for later (valid after the batch: it holds the bytes)."""
        info = self.tables.info[int(batch.rows.tid[row])]
        buf, rec, size = batch.where(row)
        return lambda: info.decoder.decode(buf, rec, rec + size)[3]


def _whole(data: bytes) -> tuple[bytes, int]:
    return data, len(data)


class _Extremes:
    """``[tid, slot]``: the largest (or smallest) value over the main thread's and every
    worker's table of extremes."""

    def __init__(self, tables: list[np.ndarray], first: int, width: int, pick: Callable) -> None:
        self.tables, self.first, self.width, self.pick = tables, first, width, pick

    def __getitem__(self, key: tuple[int, int]) -> int:
        tid, slot = key
        if not 0 <= slot < self.width:
            raise IndexError(slot)
        col = self.first + slot
        return self.pick(int(t[tid, col]) for t in list(self.tables))


# ---------------------------------------------------------------------------------------------
# Building the streams of a reader the reference opened.


def streams_of(reader: Any) -> tuple[list[StreamSpec], Any]:
    """The streams of a reference reader (TraceDat, RawTraceDir, RawPagesFile) and the
    PageDecoder the reference uses for it. Raises :class:`Unsupported` for anything else."""
    from pyrv.sources.detect import RawPagesFile
    from pyrv.sources.ring_buffer import PageDecoder, RawTraceDir
    from pyrv.sources.tracedat import TraceDat

    if isinstance(reader, TraceDat):
        return _tracedat_streams(reader, PageDecoder)
    if isinstance(reader, RawTraceDir):
        if reader.missing:
            raise Unsupported("CPU page files missing (the reference reports them)")
        pd = PageDecoder(
            reader.formats,
            reader.layout,
            source=reader.source,
            cmdlines=reader.cmdlines,
            printk=reader.printk,
        )
        step = reader.layout.page_size * CHUNK_PAGES
        specs = []
        for i, cf in enumerate(reader.files):
            f = _File(str(cf.path))
            specs.append(StreamSpec(i, cf.cpu, str(cf.path), _plain_tasks(f, 0, f.size, step)))
        return specs, pd
    if isinstance(reader, RawPagesFile):
        raise Unsupported("one CPU's pages alone (the reference reports the unseen CPUs)")
    kind = "text input" if type(reader).__name__ == "TextTraceReader" else type(reader).__name__
    raise Unsupported(f"{kind} (the fast path reads binary traces)")


def _tracedat_streams(td: Any, page_decoder_cls: Any) -> tuple[list[StreamSpec], Any]:
    from pyrv.sources.tracedat import _decompressor

    if td.tsc2nsec:
        raise Unsupported("TSC2NSEC timestamps")
    if abs(td.ts_offset) >= 1 << 62:
        raise Unsupported("huge OFFSET option")
    buffers = td._selected()
    if any(b.latency for b in buffers):
        raise Unsupported("latency text buffer")
    psize = td.layout.page_size
    for b in buffers:
        if b.page_size and b.page_size != psize:
            raise Unsupported("buffer page size differs from header_page")
    pd = page_decoder_cls(
        td.formats,
        td.layout,
        source=td.source,
        cmdlines=td.cmdlines,
        printk=td.printk or None,
    )
    f = _File(td.path)
    decompress = None
    if td.compression != "none":
        _decompressor(td.compression, td.source)  # the reference's error when unavailable
        local = threading.local()  # a decompression context is not thread-safe: one per thread

        def decompress(data: bytes, size: int) -> bytes:
            fn = getattr(local, "fn", None)
            if fn is None:
                fn = local.fn = _decompressor(td.compression, td.source)
            return fn(data, size)

    specs = []
    for buf in buffers:
        if buf.unread or any(cd.truncated for cd in buf.cpus):
            raise Unsupported("truncated CPU data")  # the reference judges nothing after it
        for cd in buf.cpus:
            if not cd.size:
                continue
            if decompress is None:
                if cd.offset + cd.size > f.size:
                    raise Unsupported("truncated CPU data")
                if td.extent_damage(buf, cd) is not None:
                    raise Unsupported("CPU data does not match the buffer index's size")
                tasks = _plain_tasks(f, cd.offset, cd.offset + cd.size, psize * CHUNK_PAGES)
            else:
                tasks = _compressed_tasks(f, cd.offset, decompress, td.byteorder, cd.size)
            specs.append(StreamSpec(len(specs), cd.cpu, td.source, tasks, carry=bool(decompress)))
    return specs, pd
