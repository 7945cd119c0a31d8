"""The compiled transition loop: DA monitors run over columns, with the reference's semantics.

What :class:`pyrv.api.Verifier` does per item — the continuity filter
(:class:`~pyrv.sources.continuity.SwitchContinuity`), the start point, the dispatcher's hook
tables (:class:`~pyrv.monitors.dispatch.Dispatcher`) and the DA engine
(:meth:`~pyrv.monitors.da.DAMonitor.handle`: handle/start/start_run, an error deletes the
instance, a loss resets instances) — :func:`run_rows` does per row of a merged batch, over
arrays: an instance's state lives at an index (a task's pid, each CPU's idle task, a CPU
number), "reset every instance" bumps the monitor's epoch, and what must leave as Python
objects (``event_``/``error_`` records, gaps) is written to a log that :class:`FastRun`
replays, in order, through the same callbacks the reference uses. The reference's own
objects finish the job: the gaps go through ``Verifier.lost``, the summaries through
``Verifier.finish``.

A hook condition is evaluated by the reference itself: a record holding the condition's
fields is decoded by the reference decoder and given to the compiled predicate, once per
distinct field value (``prev_state`` has a handful), and the answers are looked up per row.

The run is speculative: records and gaps are built batch by batch but handed out only once
every page was read, so that input the fast path cannot take (found on the way) still goes
to the reference with nothing emitted; past :data:`DEFER_CAP` held-back verdicts (``--events``
on a big trace) every page is checked first and verdicts go out as they come.

What the loop cannot express is refused before anything is emitted (:class:`Unsupported`),
and the caller runs the reference instead: monitors other than plain DA ones, conditions on
the task context (``common_*``) or on fields that are not fixed integers, user reactors,
damaged or unusual input (see :mod:`pyrv.fast.columnar`).
"""

from __future__ import annotations

import ast
import ctypes
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from pyrv.fast.columnar import (
    DROP_ALWAYS,
    DROP_IF_RUNNING,
    DROP_KEEP,
    DROP_SWITCH,
    I64,
    N_TYPES,
    PTR,
    ROW_EVENT,
    Batch,
    ColumnarTrace,
    TypeInfo,
    Unsupported,
    build_native,
    ptr,
    streams_of,
)
from pyrv.monitors.da import DAMonitor, Entry, MonitorType
from pyrv.monitors.hooks import CURRENT, Hook

try:
    from pyrv.monitors.hooks import DERIVED_FIELDS
except ImportError:  # pragma: no cover - older hook module
    DERIVED_FIELDS = {}
from pyrv.monitors.records import Context, Record
from pyrv.sources.continuity import _NOT_JUDGED_SYSTEMS
from pyrv.sources.events import LostEvents

MT_GLOBAL, MT_CPU, MT_TASK = 0, 1, 2
E_HANDLE, E_START, E_START_RUN = 0, 1, 2
TK_CURRENT, TK_SLOT, TK_NEVER, TK_GLOBAL = 0, 1, 2, 3
PK_PID, PK_SLOT, PK_NONE = 0, 1, 2
LOG_EVENT, LOG_ERROR, LOG_PAGE_LOST, LOG_CONT_GAP = 0, 1, 2, 3
RUN_DONE, RUN_LOG_FULL, RUN_BUG, RUN_NEED_COND = 0, 1, 2, 3
LOG_CAP = 1 << 14
#: records and gaps held back while the input is read speculatively; beyond, the input is
#: validated first and then read again, verdicts going out as they come
DEFER_CAP = 1 << 17
#: instance indices: beyond this many pids/CPUs the reference's dicts are better
MAX_KEYS = 1 << 24
#: a single-field condition is looked up in a table when its values are below this
LUT_SIZE = 1 << 16

_MTYPES = {
    MonitorType.GLOBAL: MT_GLOBAL,
    MonitorType.PER_CPU: MT_CPU,
    MonitorType.PER_TASK: MT_TASK,
}
_ENTRIES = {Entry.HANDLE: E_HANDLE, Entry.START: E_START, Entry.START_RUN: E_START_RUN}
#: where sched events name a task and its comm (pyrv.sources.ring_buffer.track_comms)
_MARKER_EVENTS = ("tracing_mark_write", "print")


# ---------------------------------------------------------------------------------------------
# The compiled loop (C, built and loaded by pyrv.fast.columnar.build_native).

ENGINE_C = r"""
#include <stdint.h>

#define ROW_EVENT 0
#define ROW_LOST 1
#define MT_GLOBAL 0
#define MT_CPU 1
#define MT_TASK 2
#define E_HANDLE 0
#define E_START 1
#define TK_CURRENT 0
#define TK_SLOT 1
#define TK_NEVER 2
#define TK_GLOBAL 3
#define PK_PID 0
#define PK_SLOT 1
#define PK_NONE 2
#define LOG_EVENT 0
#define LOG_ERROR 1
#define LOG_PAGE_LOST 2
#define LOG_CONT_GAP 3
#define RUN_DONE 0
#define RUN_LOG_FULL 1
#define RUN_BUG 2
#define RUN_NEED_COND 3

typedef struct {
    /* rows */
    const int8_t *kind; const int64_t *ts; const int32_t *tid; const int32_t *pid;
    const int64_t *val; const int32_t *stream; const int64_t *condbits; const int64_t *order;
    int64_t nslots; const int64_t *stream_cpu;
    /* per event id */
    const int64_t *t_hs, *t_he, *t_seen; const uint8_t *t_judged, *t_switch;
    const int64_t *t_prevk, *t_prevs, *t_nextk, *t_nexts;
    /* hooks */
    const int64_t *h_mon, *h_entry, *h_event, *h_tkind, *h_slot, *h_cond, *h_lut, *h_lslot;
    int8_t *luts; int64_t lut_size;
    /* monitors */
    int64_t M, S, E; const int64_t *m_type; const int16_t *m_fn; const int16_t *m_init;
    const uint8_t *m_emit;
    /* instances */
    int64_t N, C; int16_t *st; int64_t *ep; int64_t *epoch; uint8_t *seen;
    int64_t *m_events, *m_errors, *m_hooked; uint8_t *seen_names;
    /* continuity and start */
    int64_t detect; int64_t *flags; int64_t *running; uint8_t *has_running;
    int64_t *last_sw_ts, *last_sw_pos;
    /* output */
    int64_t *log; int64_t log_cap; uint8_t *mark;
    int64_t *stats;  /* events read, timestamp of the last one */
} Run;

static inline void reset_task(int16_t *restrict st, int64_t N, int64_t C, int64_t m, int64_t q,
                              int64_t cpu) {
    int64_t idx;
    if (q == 0) idx = cpu;
    else if (q > 0) idx = C + q;
    else { idx = -1 - q; if (idx >= C) return; }  /* key -1-c: CPU c's idle task */
    if (idx < N) st[m * N + idx] = -1;
}

/* Merged positions j..n-1 (row order[j], or j without an order). out: status, next
   position, log entries (which name rows). RUN_LOG_FULL: replay the log, call again from the
   returned position (nothing of that row was done). */
void run_rows(Run *rp, int64_t j, int64_t n, int64_t *out) {
    /* a private copy of the struct: its fields stay in registers (no store into an array
       can change them), and so do the two counters */
    Run R = *rp;
    Run *const r = &R;
    /* and every array as a pointer of its own: none overlaps another (restrict) */
    const int8_t *restrict kind_ = rp->kind;
    const int64_t *restrict ts_ = rp->ts;
    const int32_t *restrict tid_ = rp->tid;
    const int32_t *restrict pid_ = rp->pid;
    const int64_t *restrict val_ = rp->val;
    const int32_t *restrict stream_ = rp->stream;
    const int64_t *restrict condbits_ = rp->condbits;
    const int64_t *restrict order_ = rp->order;
    const int64_t *restrict stream_cpu_ = rp->stream_cpu;
    const int64_t *restrict t_hs_ = rp->t_hs;
    const int64_t *restrict t_he_ = rp->t_he;
    const int64_t *restrict t_seen_ = rp->t_seen;
    const uint8_t *restrict t_judged_ = rp->t_judged;
    const uint8_t *restrict t_switch_ = rp->t_switch;
    const int64_t *restrict t_prevk_ = rp->t_prevk;
    const int64_t *restrict t_prevs_ = rp->t_prevs;
    const int64_t *restrict t_nextk_ = rp->t_nextk;
    const int64_t *restrict t_nexts_ = rp->t_nexts;
    const int64_t *restrict h_mon_ = rp->h_mon;
    const int64_t *restrict h_entry_ = rp->h_entry;
    const int64_t *restrict h_event_ = rp->h_event;
    const int64_t *restrict h_tkind_ = rp->h_tkind;
    const int64_t *restrict h_slot_ = rp->h_slot;
    const int64_t *restrict h_cond_ = rp->h_cond;
    const int64_t *restrict h_lut_ = rp->h_lut;
    const int64_t *restrict h_lslot_ = rp->h_lslot;
    int8_t *restrict luts_ = rp->luts;
    const int64_t *restrict m_type_ = rp->m_type;
    const int16_t *restrict m_fn_ = rp->m_fn;
    const int16_t *restrict m_init_ = rp->m_init;
    const uint8_t *restrict m_emit_ = rp->m_emit;
    int16_t *restrict st_ = rp->st;
    int64_t *restrict ep_ = rp->ep;
    int64_t *restrict epoch_ = rp->epoch;
    uint8_t *restrict seen_ = rp->seen;
    int64_t *restrict m_events_ = rp->m_events;
    int64_t *restrict m_errors_ = rp->m_errors;
    int64_t *restrict m_hooked_ = rp->m_hooked;
    uint8_t *restrict seen_names_ = rp->seen_names;
    int64_t *restrict flags_ = rp->flags;
    int64_t *restrict running_ = rp->running;
    uint8_t *restrict has_running_ = rp->has_running;
    int64_t *restrict last_sw_ts_ = rp->last_sw_ts;
    int64_t *restrict last_sw_pos_ = rp->last_sw_pos;
    uint8_t *restrict mark_ = rp->mark;
    int64_t *restrict stats_ = rp->stats;
    int64_t events = stats_[0], last_ts = stats_[1];
    int64_t nlog = 0;
    const int64_t M = r->M, N = r->N, C = r->C, K = r->nslots;
    int64_t *restrict log = r->log;
    int64_t status = RUN_DONE;
    for (; j < n; j++) {
        const int64_t i = order_ ? order_[j] : j;
        int64_t t = tid_[i];
        int64_t need = 1;
        if (kind_[i] == ROW_EVENT) need += t_he_[t] - t_hs_[t];
        if (nlog + need > r->log_cap) { status = RUN_LOG_FULL; break; }
        if (kind_[i] == ROW_EVENT) {  /* conditions not evaluated yet: ask, change nothing */
            for (int64_t h = t_hs_[t]; h < t_he_[t]; h++) {
                int64_t L = h_lut_[h];
                if (L >= 0 && luts_[L * r->lut_size + val_[i * K + h_lslot_[h]]] < 0) {
                    status = RUN_NEED_COND;
                    out[3] = L; out[4] = val_[i * K + h_lslot_[h]];
                    goto done;
                }
            }
            events++;
            last_ts = ts_[i];
        }
        int64_t c = stream_cpu_[stream_[i]];
        if (kind_[i] == ROW_LOST) {
            if (r->detect) has_running_[c] = 0;
            int64_t *e = log + 7 * nlog++;
            e[0] = LOG_PAGE_LOST; e[1] = i;
            for (int64_t m = 0; m < M; m++) {
                if (m_type_[m] == MT_CPU) { if (c < N) st_[m * N + c] = -1; }
                else epoch_[m]++;
            }
            continue;
        }
        int64_t p = pid_[i];
        if (r->detect && t_judged_[t] && p >= 0) {
            int is_sw = t_switch_[t] != 0, obs_ok = 1;
            int64_t obs = p;
            if (is_sw) {
                if (t_prevk_[t] == PK_SLOT) obs = val_[i * K + t_prevs_[t]];
                else if (t_prevk_[t] == PK_NONE) obs_ok = 0;
            }
            if (obs_ok && has_running_[c] && obs != running_[c]) {
                int64_t expected = running_[c];
                int64_t *e = log + 7 * nlog++;
                e[0] = LOG_CONT_GAP; e[1] = i; e[2] = expected; e[3] = obs; e[4] = 0; e[5] = -2;
                if (is_sw && last_sw_pos_[c] != -2 && last_sw_ts_[c] == ts_[i]) {
                    e[4] = 1; e[5] = last_sw_pos_[c];
                }
                for (int64_t m = 0; m < M; m++) {
                    if (m_type_[m] == MT_TASK) {
                        reset_task(st_, N, C, m, expected, c);
                        reset_task(st_, N, C, m, obs, c);
                    }
                    else if (m_type_[m] == MT_CPU) { if (c < N) st_[m * N + c] = -1; }
                    else epoch_[m]++;
                }
            }
            if (is_sw) {
                last_sw_pos_[c] = i; last_sw_ts_[c] = ts_[i];
                if (t_nextk_[t] == PK_SLOT) {
                    running_[c] = val_[i * K + t_nexts_[t]]; has_running_[c] = 1;
                }
            } else if (obs_ok) {
                running_[c] = obs; has_running_[c] = 1;
            }
        }
        if (flags_[0] == 0) {
            if (i != flags_[1]) continue;
            flags_[0] = 1;
            for (int64_t m = 0; m < M; m++) epoch_[m]++;  /* enabling resets every instance */
        }
        if (t_seen_[t] >= 0) seen_names_[t_seen_[t]] = 1;
        int64_t hs = t_hs_[t], he = t_he_[t];
        if (hs >= he) continue;
        for (int64_t m = 0; m < M; m++) mark_[m] = 0;
        for (int64_t h = hs; h < he; h++) {
            int64_t cb = h_cond_[h], L = h_lut_[h];
            if (cb >= 0 && ((condbits_[i] >> cb) & 1) == 0) continue;
            if (L >= 0 && !luts_[L * r->lut_size + val_[i * K + h_lslot_[h]]]) continue;
            int64_t m = h_mon_[h], tk = h_tkind_[h], mt = m_type_[m], idx;
            if (tk == TK_NEVER) continue;
            if (tk == TK_GLOBAL) idx = 0;
            else {
                int64_t ident = tk != TK_CURRENT ? val_[i * K + h_slot_[h]]
                                : mt == MT_TASK ? p : c;
                if (ident < 0) continue;
                idx = mt == MT_TASK ? (ident == 0 ? c : C + ident) : ident;
            }
            if (idx >= N) { status = RUN_BUG; goto done; }
            if (!mark_[m]) { mark_[m] = 1; m_hooked_[m]++; }
            int64_t at = m * N + idx;
            seen_[at] = 1;
            int64_t s;
            if (ep_[at] == epoch_[m] && st_[at] >= 0) s = st_[at];
            else {
                if (h_entry_[h] == E_HANDLE) continue;
                s = m_init_[m]; st_[at] = (int16_t)s; ep_[at] = epoch_[m];
                if (h_entry_[h] == E_START) continue;
            }
            int64_t ev = h_event_[h];
            int64_t nx = m_fn_[(m * r->S + s) * r->E + ev];
            m_events_[m]++;
            if (nx < 0) {
                m_errors_[m]++;
                int64_t *e = log + 7 * nlog++;
                e[0] = LOG_ERROR; e[1] = i; e[2] = m; e[3] = idx; e[4] = s; e[5] = ev;
                st_[at] = -1;
            } else {
                st_[at] = (int16_t)nx;
                if (m_emit_[m]) {
                    int64_t *e = log + 7 * nlog++;
                    e[0] = LOG_EVENT; e[1] = i; e[2] = m; e[3] = idx; e[4] = s; e[5] = ev;
                    e[6] = nx;
                }
            }
        }
    }
done:
    stats_[0] = events; stats_[1] = last_ts;
    out[0] = status; out[1] = j; out[2] = nlog;
}
"""

#: the C struct Run, field by field (pointers as addresses)
_RUN_FIELDS = (
    "kind",
    "ts",
    "tid",
    "pid",
    "val",
    "stream",
    "condbits",
    "order",
    "nslots",
    "stream_cpu",
    "t_hs",
    "t_he",
    "t_seen",
    "t_judged",
    "t_switch",
    "t_prevk",
    "t_prevs",
    "t_nextk",
    "t_nexts",
    "h_mon",
    "h_entry",
    "h_event",
    "h_tkind",
    "h_slot",
    "h_cond",
    "h_lut",
    "h_lslot",
    "luts",
    "lut_size",
    "M",
    "S",
    "E",
    "m_type",
    "m_fn",
    "m_init",
    "m_emit",
    "N",
    "C",
    "st",
    "ep",
    "epoch",
    "seen",
    "m_events",
    "m_errors",
    "m_hooked",
    "seen_names",
    "detect",
    "flags",
    "running",
    "has_running",
    "last_sw_ts",
    "last_sw_pos",
    "log",
    "log_cap",
    "mark",
    "stats",
)
_RUN_SCALARS = {"nslots", "M", "S", "E", "N", "C", "detect", "log_cap", "lut_size"}


class _RunStruct(ctypes.Structure):
    _fields_ = [(f, I64 if f in _RUN_SCALARS else PTR) for f in _RUN_FIELDS]


_engine_lib: ctypes.CDLL | None = None


def _engine() -> ctypes.CDLL:
    global _engine_lib
    if _engine_lib is None:
        lib = build_native("pyrv_engine", ENGINE_C)
        lib.run_rows.restype = None
        lib.run_rows.argtypes = [ctypes.POINTER(_RunStruct), I64, I64, PTR]
        _engine_lib = lib
    return _engine_lib


# ---------------------------------------------------------------------------------------------
# The plan: monitors and hook tables as arrays.


def _condition_names(hook: Hook) -> list[str]:
    tree = ast.parse((hook.when_text or "").strip(), mode="eval")
    return list(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))


def _reactor_is_builtin(mon: DAMonitor) -> bool:
    from pyrv.monitors import reactors

    r = mon.reactor
    rv = mon.rv
    if r is None or (rv is not None and r is rv.nop):
        return True
    if type(r) is reactors.PrintkReactor:
        return True
    return type(r) is reactors.Reactor and getattr(r, "_react", None) is reactors._panic


class Plan:
    """The enabled monitors and their hooks, as the arrays :func:`run_rows` reads."""

    def __init__(self, verifier: Any, track_comms: bool, detect: bool) -> None:
        self.verifier = verifier
        self.monitors: list[DAMonitor] = list(verifier.monitors)
        self.by_event: dict[str, list[tuple[DAMonitor, Hook]]] = verifier.dispatcher.by_event
        self.track_comms = track_comms
        self.detect = detect
        for mon in self.monitors:
            if type(mon) is not DAMonitor:
                raise Unsupported(f"monitor {mon.name} is a {type(mon).__name__}")
            if mon.type not in _MTYPES:
                raise Unsupported(f"monitor {mon.name} is {mon.type.value}")
            if not mon.active():
                raise Unsupported(f"monitor {mon.name} is not active")
            if not _reactor_is_builtin(mon):
                raise Unsupported(f"monitor {mon.name} has a user reactor")
        M = len(self.monitors)
        self.index = {id(m): i for i, m in enumerate(self.monitors)}
        S = max((len(m.model.states) for m in self.monitors), default=1)
        E = max((len(m.model.events) for m in self.monitors), default=1)
        self.m_fn = np.full((max(M, 1), S, E), -1, np.int16)
        self.m_init = np.zeros(max(M, 1), np.int16)
        self.m_type = np.array([_MTYPES[m.type] for m in self.monitors], np.int64)
        self.m_emit = np.array(
            [bool(m.emit_events and m.sink is not None) for m in self.monitors], np.bool_
        )
        for i, m in enumerate(self.monitors):
            self.m_init[i] = m.model.initial
            for s, row in enumerate(m.model.function):
                for e, nxt in enumerate(row):
                    if nxt is not None:
                        self.m_fn[i, s, e] = nxt
        # hooks with conditions: one bit each
        self.cond_bit: dict[int, int] = {}
        self.cond_names: dict[int, list[str]] = {}
        for hooks in self.by_event.values():
            for _mon, hook in hooks:
                if getattr(hook, "action", None) is not None:
                    raise Unsupported("LTL hooks")
                if hook.when is not None and id(hook) not in self.cond_bit:
                    if hook.uses_common or hook.tracepoint in DERIVED_FIELDS:
                        raise Unsupported(f"condition {hook.when_text!r} reads the task context")
                    self.cond_bit[id(hook)] = len(self.cond_bit)
                    self.cond_names[id(hook)] = _condition_names(hook)
        if len(self.cond_bit) > 62:
            raise Unsupported("more than 62 conditional hooks")
        self.names = list(self.by_event)
        self.name_index = {n: i for i, n in enumerate(self.names)}
        self.nslots = max([self._wanted_upper(n) for n in self.by_event] + [2, 1])
        # per event id
        self.t_hs = np.zeros(N_TYPES, np.int64)
        self.t_he = np.zeros(N_TYPES, np.int64)
        self.t_seen = np.full(N_TYPES, -1, np.int64)
        self.t_judged = np.zeros(N_TYPES, np.uint8)
        self.t_switch = np.zeros(N_TYPES, np.uint8)
        self.t_prevk = np.full(N_TYPES, PK_PID, np.int64)
        self.t_prevs = np.zeros(N_TYPES, np.int64)
        self.t_nextk = np.full(N_TYPES, PK_NONE, np.int64)
        self.t_nexts = np.zeros(N_TYPES, np.int64)
        self.t_mark = np.zeros(N_TYPES, np.bool_)
        self.hooks: list[tuple[int, int, int, int, int, int]] = []
        self.hook_objs: list[tuple[DAMonitor, Hook]] = []
        self.key_slots: dict[int, list[tuple[int, int]]] = {}  # tid -> (monitor, slot) keys
        self.key_pid: dict[int, set[int]] = {}  # tid -> monitors keyed by the current pid
        #: (tid, cond bit) -> (hook, slots of the condition's fields, their names)
        self.conds: dict[tuple[int, int], tuple[Hook, list[int], list[str]]] = {}
        self.comm_pairs: dict[int, list[tuple[int, str]]] = {}  # tid -> (pid slot, comm field)
        self.infos: dict[int, TypeInfo] = {}

    def _wanted_upper(self, name: str) -> int:
        fields: set[str] = set()
        for _mon, hook in self.by_event[name]:
            if hook.target not in (None, CURRENT):
                fields.add(hook.target)
            if hook.when is not None:
                fields.update(self.cond_names[id(hook)])
        if name == "sched_switch":
            fields.update(("prev_pid", "next_pid"))
        if self.track_comms:
            from pyrv.sources.ring_buffer import _COMM_SOURCES

            fields.update(pf for pf, _cf in _COMM_SOURCES.get(name, ()))
        return len(fields)

    def hooks_for(self, info: TypeInfo) -> list[tuple[DAMonitor, Hook]]:
        """The hooks the dispatcher runs for this event id (its system filter included)."""
        hooks = self.by_event.get(info.name) or []
        system = info.system
        if system is not None and not all(h.tracepoint.startswith(system + ":") for _, h in hooks):
            hooks = [(m, h) for m, h in hooks if h.tracepoint.startswith(system + ":")]
        return hooks

    def planner(self, info: TypeInfo) -> list[str]:
        """Slots for one event id; fills the per-id tables (TypeTables calls it once per id)."""
        tid = info.tid
        self.infos[tid] = info
        slots: list[str] = []

        def slot(name: str) -> int:
            if name not in info.slot_specs:
                raise Unsupported(f"{info.name}: field {name} is not a fixed integer")
            if name not in slots:
                slots.append(name)
            return slots.index(name)

        if info.decoder is None:
            if info.name in self.by_event:
                raise Unsupported("hooks on events without a format")
            return slots
        all_fields = self._all_fields(info)
        rows = []
        for mon, hook in self.hooks_for(info):
            m = self.index[id(mon)]
            if mon.type is MonitorType.GLOBAL:
                tk, s = TK_GLOBAL, 0
            elif hook.target == CURRENT:
                tk, s = TK_CURRENT, 0
                if mon.type is MonitorType.PER_TASK:
                    self.key_pid.setdefault(tid, set()).add(m)
            elif hook.target in info.int_fields:
                tk, s = TK_SLOT, slot(hook.target)
                self.key_slots.setdefault(tid, []).append((m, s))
            else:
                tk, s = TK_NEVER, 0
            cb = -1
            if hook.when is not None:
                cb = self.cond_bit[id(hook)]
                present = [n for n in self.cond_names[id(hook)] if n in all_fields]
                cslots = [slot(n) for n in present]
                self.conds[(tid, cb)] = (hook, cslots, present)
            rows.append((m, _ENTRIES[hook.entry], hook.model_event, tk, s, cb))
            self.hook_objs.append((mon, hook))
        self.t_hs[tid] = len(self.hooks)
        self.hooks.extend(rows)
        self.t_he[tid] = len(self.hooks)
        if info.name in self.by_event:
            self.t_seen[tid] = self.name_index[info.name]
        system = info.system
        self.t_judged[tid] = system is not None and system not in _NOT_JUDGED_SYSTEMS
        self.t_mark[tid] = info.name in _MARKER_EVENTS
        if info.name == "sched_switch":
            self.t_switch[tid] = 1
            if "prev_pid" not in all_fields:
                self.t_prevk[tid] = PK_PID
            elif "prev_pid" in info.int_fields:
                self.t_prevk[tid], self.t_prevs[tid] = PK_SLOT, slot("prev_pid")
            else:
                self.t_prevk[tid] = PK_NONE
            if "next_pid" in info.int_fields:
                self.t_nextk[tid], self.t_nexts[tid] = PK_SLOT, slot("next_pid")
        if self.track_comms:
            from pyrv.sources.ring_buffer import _COMM_SOURCES

            pairs = []
            for pf, cf in _COMM_SOURCES.get(info.name, ()):
                if pf in info.int_fields and cf in info.str_fields:
                    pairs.append((slot(pf), cf))
            if pairs:
                self.comm_pairs[tid] = pairs
        return slots

    def dropper(self, info: TypeInfo) -> tuple[int, int]:
        """Which rows of this id the walker may leave out (called after :meth:`planner`): those
        that change nothing here but the count of events read. An id no hook runs for is
        read only by the continuity check (see :func:`run_rows`), and only where its pid is
        not the one the CPU is known to run; without that check, not at all. A switch is
        always kept, and tells the walker who runs next."""
        tid = info.tid
        if info.decoder is None:
            return DROP_KEEP, -1
        judged = self.detect and bool(self.t_judged[tid])
        if self.t_switch[tid]:
            nxt = int(self.t_nexts[tid]) if self.t_nextk[tid] == PK_SLOT else -1
            return (DROP_SWITCH, nxt) if judged else (DROP_KEEP, -1)
        if self.t_he[tid] > self.t_hs[tid]:
            return DROP_KEEP, -1
        return (DROP_IF_RUNNING if judged else DROP_ALWAYS), -1

    @staticmethod
    def _all_fields(info: TypeInfo) -> frozenset[str]:
        fmt = info.decoder.format
        return frozenset(f.name for f in fmt.fields)

    def hook_arrays(self) -> tuple[np.ndarray, ...]:
        h = np.array(self.hooks, np.int64).reshape(-1, 6)
        if len(h) == 0:
            h = np.zeros((1, 6), np.int64)
        return tuple(np.ascontiguousarray(h[:, k]) for k in range(6))


# ---------------------------------------------------------------------------------------------
# Conditions: the reference predicate, once per distinct value.


class _Conditions:
    def __init__(self, plan: Plan, byteorder: str) -> None:
        self.plan = plan
        self.endian = "little" if byteorder == "<" else "big"
        self.cache: dict[tuple[int, int], dict[tuple[int, ...], bool]] = {}
        self.luts: dict[tuple[int, int], np.ndarray] = {}
        #: the conditions evaluated here per batch (the others: tables in the C loop)
        self.general = set(plan.conds)
        self._zeros = np.zeros(0, np.int64)

    def evaluate(self, tid: int, hook: Hook, names: list[str], values: tuple[int, ...]) -> bool:
        key = (tid, self.plan.cond_bit[id(hook)])
        cache = self.cache.setdefault(key, {})
        if values not in cache:
            cache[values] = self._eval(tid, hook, names, values)
        return cache[values]

    def _eval(self, tid: int, hook: Hook, names: list[str], values: tuple[int, ...]) -> bool:
        info = self.plan.infos[tid]
        dec = info.decoder
        rec = bytearray(dec.min_size)
        for name, v in zip(names, values, strict=True):
            off, size, signed = info.slot_specs[name]
            rec[off : off + size] = int(v).to_bytes(size, self.endian, signed=signed)
        fields = dec.decode(bytes(rec), 0, len(rec))[3]
        return bool(hook.when(fields))

    def bits(self, batch: Batch) -> np.ndarray:
        rows = batch.rows
        if len(self._zeros) < len(rows):  # one buffer for every batch (no fresh memory each)
            self._zeros = np.zeros(max(len(rows), 2 * len(self._zeros)), np.int64)
        out = self._zeros[: len(rows)]
        if not self.general:
            return out  # all zero: never written
        out[:] = 0
        tids = rows.tid
        wheres: dict[int, np.ndarray] = {}
        for (tid, cb), (hook, cslots, names) in self.plan.conds.items():
            if (tid, cb) not in self.general:
                continue
            where = wheres.get(tid)
            if where is None:
                where = wheres[tid] = np.flatnonzero(tids == tid)
            if len(where) == 0:
                continue
            cache = self.cache.setdefault((tid, cb), {})
            if not cslots:
                key = ()
                if key not in cache:
                    cache[key] = self._eval(tid, hook, names, key)
                if cache[key]:
                    out[where] |= np.int64(1) << np.int64(cb)
                continue
            vals = rows.val[where][:, cslots]
            if len(cslots) == 1 and vals.min() >= 0 and vals.max() < LUT_SIZE:
                lut = self.luts.get((tid, cb))
                if lut is None:
                    lut = self.luts[(tid, cb)] = np.full(LUT_SIZE, -1, np.int8)
                v = vals[:, 0]
                res = lut[v]
                unknown = res < 0
                if unknown.any():
                    for u in np.unique(v[unknown]):
                        lut[u] = self._eval(tid, hook, names, (int(u),))
                    res = lut[v]
                ok = res.astype(bool)
            else:
                uniq, inverse = np.unique(vals, axis=0, return_inverse=True)
                answers = np.zeros(len(uniq), bool)
                for j, u in enumerate(uniq):
                    key = tuple(int(x) for x in u)
                    if key not in cache:
                        cache[key] = self._eval(tid, hook, names, key)
                    answers[j] = cache[key]
                ok = answers[inverse.reshape(-1)]
            out[where[ok]] |= np.int64(1) << np.int64(cb)
        return out


# ---------------------------------------------------------------------------------------------
# The run.


class FastRun:
    """One verification of a binary trace through the columnar path (see :func:`run_fast`)."""

    def __init__(self, verifier: Any, reader: Any, opts: Any) -> None:
        from pyrv.sources.ring_buffer import RawTraceDir

        self.verifier = verifier
        self.reader = reader
        self.opts = opts
        track = isinstance(reader, RawTraceDir) and reader.cmdlines is None
        self.plan = Plan(verifier, track_comms=track, detect=bool(opts.detect_silent_loss))
        specs, pd = streams_of(reader)
        self.specs = specs
        self.pd = pd
        # rows that change nothing but the count of events read are left out by the walker,
        # unless a start point or the comms of the events need every row
        started = opts.start_ts is None and opts.start_marker is None
        dropper = self.plan.dropper if started and not track else None
        self.trace = ColumnarTrace(specs, pd, self.plan.nslots, self.plan.planner, dropper=dropper)
        self.ts_offset = int(getattr(reader, "ts_offset", 0) or 0)
        self.cmdlines: dict[int, str] = pd.cmdlines
        self.track = track
        self.comms: dict[int, str] = {0: "<idle>"}

    # -- setup ----------------------------------------------------------------------------------

    def prepare(self, validate: bool) -> None:
        """Set up the arrays; with ``validate``, walk every page first (raises Unsupported
        before anything else happens). Without, the run is speculative: what it emits is held
        back until the whole input was read, so that a page the fast path cannot take can
        still hand the trace to the reference."""
        self.speculative = not validate
        if validate:
            self.trace.validate()
        cpus = [s.cpu for s in self.specs]
        if any(c < 0 for c in cpus):
            raise Unsupported("negative CPU number")
        self.C = (max(cpus) + 1) if cpus else 1
        plan = self.plan
        M = max(len(plan.monitors), 1)
        self.N = 0
        self.st = np.zeros((M, 0), np.int16)
        self.ep = np.zeros((M, 0), np.int64)
        self.seen = np.zeros((M, 0), np.uint8)
        self.epoch = np.zeros(M, np.int64)
        self.m_events = np.zeros(M, np.int64)
        self.m_errors = np.zeros(M, np.int64)
        self.m_hooked = np.zeros(M, np.int64)
        self.seen_names = np.zeros(max(len(plan.names), 1), np.uint8)
        self.running = np.zeros(self.C, np.int64)
        self.has_running = np.zeros(self.C, np.uint8)
        self.last_sw_ts = np.zeros(self.C, np.int64)
        self.last_sw_pos = np.full(self.C, -2, np.int64)
        #: per CPU, the last sched_switch of the batches before (decoded only when needed)
        self.carried_switch: dict[int, Callable[[], dict[str, Any]]] = {}
        self.mark = np.zeros(M, np.uint8)
        self.stream_cpu = np.array(cpus or [0], np.int64)
        self.conditions = _Conditions(plan, self.trace.layout.byteorder)
        opts = self.opts
        started = opts.start_ts is None and opts.start_marker is None
        self.flags = np.array([1 if started else 0, -1], np.int64)
        self.lib = _engine()
        self.out = np.zeros(5, np.int64)
        self.stats = np.zeros(2, np.int64)
        self.lut_index: dict[tuple[int, int], int] = {}  # (tid, cond bit) -> table
        self.lut_of: list[tuple[int, int]] = []
        self.no_lut: set[tuple[int, int]] = set()  # values outside the table's range
        self.luts = np.full((1, LUT_SIZE), -1, np.int8)
        self.log = np.zeros((LOG_CAP, 7), np.int64)
        self._nhooks = -1
        self.deferred: list[tuple[Any, ...]] = []
        self.struct = _RunStruct()
        for name, value in (
            ("nslots", plan.nslots),
            ("t_hs", plan.t_hs),
            ("t_he", plan.t_he),
            ("t_seen", plan.t_seen),
            ("t_judged", plan.t_judged),
            ("t_switch", plan.t_switch),
            ("t_prevk", plan.t_prevk),
            ("t_prevs", plan.t_prevs),
            ("t_nextk", plan.t_nextk),
            ("t_nexts", plan.t_nexts),
            ("lut_size", LUT_SIZE),
            ("stats", self.stats),
            ("stream_cpu", self.stream_cpu),
            ("M", len(plan.monitors)),
            ("S", plan.m_fn.shape[1]),
            ("E", plan.m_fn.shape[2]),
            ("m_type", plan.m_type),
            ("m_fn", plan.m_fn),
            ("m_init", plan.m_init),
            ("m_emit", plan.m_emit),
            ("C", self.C),
            ("epoch", self.epoch),
            ("m_events", self.m_events),
            ("m_errors", self.m_errors),
            ("m_hooked", self.m_hooked),
            ("seen_names", self.seen_names),
            ("detect", int(plan.detect)),
            ("flags", self.flags),
            ("running", self.running),
            ("has_running", self.has_running),
            ("last_sw_ts", self.last_sw_ts),
            ("last_sw_pos", self.last_sw_pos),
            ("mark", self.mark),
        ):
            setattr(self.struct, name, value if isinstance(value, int) else ptr(value))
        self._refresh()

    def _refresh(self) -> None:
        """Before a batch: hook tables for the event ids met so far, condition tables, and
        room for every instance id the rows decoded so far can name."""
        plan, st = self.plan, self.struct
        tmax, tlow = self.trace.tmax, self.trace.tlow
        for key, lut in self.lut_index.items():  # a value out of the table: evaluate per batch
            tid, cb = key
            slot = plan.conds[key][1][0]
            if key not in self.no_lut and (tlow[tid, slot] < 0 or tmax[tid, slot] >= LUT_SIZE):
                self.no_lut.add(key)
                self._nhooks = -1
            del lut
        if len(plan.hooks) != self._nhooks:
            self._build_hooks()
        need = 1
        for m in range(len(plan.monitors)):
            mt = plan.m_type[m]
            if mt == MT_GLOBAL:
                continue
            top = self.C - 1 if mt == MT_CPU else -1
            for tid, keys in plan.key_slots.items():
                for mm, s in keys:
                    if mm == m:
                        top = max(top, int(tmax[tid, s]))
            for tid, mons in plan.key_pid.items():
                if m in mons:
                    top = max(top, int(tmax[tid, plan.nslots]))
            need = max(need, self.C + max(top, 0) + 1 if mt == MT_TASK else top + 1)
        if need > MAX_KEYS:
            raise Unsupported(f"instance ids up to {need}")
        if need > self.N:
            size = max(need, 2 * self.N, 1024)
            self.st = _widen(self.st, size, -1)
            self.ep = _widen(self.ep, size, -1)
            self.seen = _widen(self.seen, size, 0)
            self.N = size
            st.N, st.st, st.ep, st.seen = size, ptr(self.st), ptr(self.ep), ptr(self.seen)

    def _build_hooks(self) -> None:
        plan, st = self.plan, self.struct
        h = [a.copy() for a in plan.hook_arrays()]
        h_lut = np.full(len(h[0]), -1, np.int64)
        h_lslot = np.zeros(len(h[0]), np.int64)
        tmax, tlow = self.trace.tmax, self.trace.tlow
        for key, (_hook, cslots, _names) in plan.conds.items():
            tid, cb = key
            if len(cslots) != 1 or key in self.no_lut:
                self.conditions.general.add(key)
                continue
            if key not in self.lut_index:
                if tlow[tid, cslots[0]] < 0 or tmax[tid, cslots[0]] >= LUT_SIZE:
                    self.no_lut.add(key)
                    self.conditions.general.add(key)
                    continue
                self.lut_index[key] = len(self.lut_of)
                self.lut_of.append(key)
            rows = [k for k in range(int(plan.t_hs[tid]), int(plan.t_he[tid])) if h[5][k] == cb]
            h_lut[rows] = self.lut_index[key]
            h_lslot[rows] = cslots[0]
            h[5][rows] = -1
            self.conditions.general.discard(key)
        if len(self.lut_of) > len(self.luts):
            luts = np.full((len(self.lut_of), LUT_SIZE), -1, np.int8)
            luts[: len(self.luts)] = self.luts
            self.luts = luts
        # room for at least one whole row: a gap and one record per hook
        widest = int((plan.t_he - plan.t_hs).max()) if plan.hooks else 0
        if widest + 1 > len(self.log):
            self.log = np.zeros((widest + 1, 7), np.int64)
        self.hook_arrays = (*h, h_lut, h_lslot)
        names = ("h_mon", "h_entry", "h_event", "h_tkind", "h_slot", "h_cond", "h_lut", "h_lslot")
        for name, arr in zip(names, self.hook_arrays, strict=True):
            setattr(st, name, ptr(arr))
        st.luts, st.log, st.log_cap = ptr(self.luts), ptr(self.log), len(self.log)
        self._nhooks = len(plan.hooks)

    # -- the batches ----------------------------------------------------------------------------

    def run(self) -> Any:
        v = self.verifier
        cancel = self.opts.cancel
        batches = self.trace.batches()
        for batch in batches:
            self._refresh()
            rows = batch.rows
            ts = rows.ts + self.ts_offset if self.ts_offset else rows.ts
            merged = batch.merged() if (self.flags[0] == 0 or self.track) else None
            if self.flags[0] == 0:
                self.flags[1] = self._start_row(batch, ts, merged)
            condbits = self.conditions.bits(batch)
            comm_index = _CommIndex(self, batch, merged) if self.track else None
            st = self.struct
            columns = (rows.kind, ts, rows.tid, rows.pid, rows.val, batch.stream, condbits)
            for name, col in zip(_RUN_FIELDS[:7], columns, strict=True):
                setattr(st, name, ptr(col))
            st.order = None if batch.order is None else ptr(batch.order)
            j, n = 0, len(rows)
            while True:
                self.lib.run_rows(ctypes.byref(st), j, n, ptr(self.out))
                status, j, nlog = (int(x) for x in self.out[:3])
                if status == RUN_BUG:
                    raise RuntimeError("fast engine: instance index out of range")
                actions = self._collect(batch, ts, nlog, comm_index)
                if self.speculative:
                    self.deferred.extend(actions)
                    if len(self.deferred) > DEFER_CAP:
                        raise _Overflow
                else:
                    self._emit(actions)
                if status == RUN_NEED_COND:
                    self._fill_lut(int(self.out[3]), int(self.out[4]))
                elif status == RUN_DONE:
                    break
            self._end_batch(batch, comm_index)
            if cancel is not None and cancel.is_set():
                batches.close()  # stops the readers
                v.result.interrupted = True
                break
        self._emit(self.deferred)  # the whole input was read: what was held back goes out
        self.deferred = []
        trace = self.trace
        v.result.events_read += int(self.stats[0]) + trace.dropped
        times = [int(self.stats[1])] if self.stats[0] else []
        if trace.dropped:
            times.append(trace.drop_ts + self.ts_offset)
        last_ts = max(times) if times else None
        return self._finish(self.flags[0] == 1, last_ts)

    def _fill_lut(self, lut: int, value: int) -> None:
        tid, cb = self.lut_of[lut]
        hook, _slots, names = self.plan.conds[(tid, cb)]
        self.luts[lut, value] = self.conditions.evaluate(tid, hook, names, (value,))

    def _start_row(self, batch: Batch, ts: np.ndarray, merged: np.ndarray) -> int:
        """The row where the monitors are enabled (start time or marker), -1: not here."""
        opts = self.opts
        rows = batch.rows
        ev = merged[rows.kind[merged] == ROW_EVENT]  # event rows in merged order
        best = len(ev)
        if opts.start_ts is not None:
            hit = np.flatnonzero(ts[ev] >= opts.start_ts)
            if len(hit):
                best = int(hit[0])
        if opts.start_marker is not None:
            for k in np.flatnonzero(self.plan.t_mark[rows.tid[ev]]):
                if k >= best:
                    break
                fields = self.trace.decode_record(batch, int(ev[k]))
                if opts.start_marker in str(fields.get("buf", "")):
                    best = int(k)
                    break
        return int(ev[best]) if best < len(ev) else -1

    # -- what leaves: records and gaps ----------------------------------------------------------

    def _comm(self, row: int, pid: int, comm_index: _CommIndex | None) -> str:
        if comm_index is None:
            return self.cmdlines.get(pid, "<...>")
        return comm_index.comm(row, pid)

    def _collect(
        self, batch: Batch, ts: np.ndarray, nlog: int, comm_index: _CommIndex | None
    ) -> list[tuple[Any, ...]]:
        """The log's entries as the objects the reference hands out: ``("gap", LostEvents)``,
        ``("error", monitor, Record)``, ``("event", monitor, Record)``."""
        out: list[tuple[Any, ...]] = []
        if nlog == 0:
            return out
        rows = batch.rows
        plan = self.plan
        counter = self.verifier.dispatcher.counter_clock
        for entry in self.log[:nlog].tolist():
            what, pos = entry[0], entry[1]
            spec = self.specs[int(batch.stream[pos])]
            cpu = spec.cpu
            if what == LOG_PAGE_LOST:
                # the reference skips other CPUs' events inside a reported loss; this loop
                # does not, so such a trace is the reference's to verify (a validated run
                # has none: validate() refuses them before anything was emitted)
                if not self.speculative:
                    raise RuntimeError("fast engine: lost pages in a validated trace")
                raise Unsupported("lost pages (the reference engine judges around them)")
            if what == LOG_CONT_GAP:
                expected, observed, dup, lpos = entry[2], entry[3], entry[4], entry[5]
                reason = (
                    f"cpu {cpu} was running pid {expected} but pid {observed} "
                    "is running: a sched_switch was lost"
                )
                if dup:
                    carried = self.carried_switch.get(cpu)
                    last = (
                        self.trace.decode_record(batch, lpos)
                        if lpos >= 0
                        else (carried() if carried is not None else None)
                    )
                    if last is not None and last == self.trace.decode_record(batch, pos):
                        reason = (
                            "this sched_switch repeats the one at line 0: "
                            "the trace is corrupt (duplicated lines)"
                        )
                gap = LostEvents(
                    cpu=cpu,
                    count=None,
                    reason=reason,
                    ts=int(ts[pos]),
                    source=spec.source,
                    line=0,
                    pids=(int(expected), int(observed)),
                )
                out.append(("gap", gap))
                continue
            mon = plan.monitors[entry[2]]
            idx, state, event = entry[3], entry[4], entry[5]
            pid = int(rows.pid[pos])
            ctx = Context(int(ts[pos]), cpu, pid, self._comm(pos, pid, comm_index), counter)
            model = mon.model
            ident = self._key_id(mon, idx)
            if what == LOG_ERROR:
                rec = Record(
                    "error", mon.name, ident, model.states[state], model.events[event], None,
                    False, ctx,
                )  # fmt: skip
                out.append(("error", mon, rec))
            else:
                nxt = entry[6]
                rec = Record(
                    "event", mon.name, ident, model.states[state], model.events[event],
                    model.states[nxt], nxt in model.finals, ctx,
                )  # fmt: skip
                out.append(("event", mon, rec))
        return out

    def _emit(self, actions: list[tuple[Any, ...]]) -> None:
        """Hand out records and gaps exactly as the reference does, in order."""
        lost = self.verifier.lost
        for action in actions:
            if action[0] == "gap":
                lost(action[1])
                continue
            _what, mon, rec = action
            if action[0] == "error":
                try:
                    mon.react(rec.reaction_message())  # DA reacts before it writes error_<mon>
                except Exception as exc:
                    exc.add_note(f"reacting to: {rec.trace_line()}")
                    raise
                if mon.sink is not None:
                    mon.sink(rec)
            else:
                mon.sink(rec)

    def _key(self, mon: DAMonitor, idx: int) -> Hashable:
        if mon.type is MonitorType.PER_TASK:
            return -1 - idx if idx < self.C else idx - self.C
        if mon.type is MonitorType.PER_CPU:
            return idx
        return 0

    def _key_id(self, mon: DAMonitor, idx: int) -> int | None:
        if mon.type is not MonitorType.PER_TASK:
            return None
        return 0 if idx < self.C else idx - self.C

    def _end_batch(self, batch: Batch, comm_index: _CommIndex | None) -> None:
        for c in range(self.C):
            pos = int(self.last_sw_pos[c])
            if pos >= 0:
                self.carried_switch[c] = self.trace.record_at(batch, pos)
                self.last_sw_pos[c] = -1
        if comm_index is not None:
            comm_index.carry()

    def _finish(self, started: bool, last_ts: int | None) -> Any:
        v = self.verifier
        plan = self.plan
        for m, mon in enumerate(plan.monitors):
            mon.counts["events"] += int(self.m_events[m])
            mon.counts["errors"] += int(self.m_errors[m])
            mon.seen.update(self._key(mon, int(i)) for i in np.flatnonzero(self.seen[m]))
            live = np.flatnonzero((self.ep[m] == self.epoch[m]) & (self.st[m] >= 0))
            mon.instances.clear()
            mon.instances.update((self._key(mon, int(i)), int(self.st[m, i])) for i in live)
            v.dispatcher.hooked[mon.name] += int(self.m_hooked[m])
        for k, name in enumerate(plan.names):
            if self.seen_names[k]:
                v.dispatcher.seen_events.add(name)
        if v.result.interrupted:
            return v.interrupted(last_ts)
        if started and last_ts is not None and hasattr(v.dispatcher, "finish"):
            v.dispatcher.finish(last_ts)
        return v.finish(started)


class _Overflow(Exception):
    """Too many verdicts to hold back: validate the input first instead."""


def _widen(a: np.ndarray, size: int, fill: int) -> np.ndarray:
    out = np.full((a.shape[0], size), fill, a.dtype)
    out[:, : a.shape[1]] = a
    return out


class _CommIndex:
    """The comm of a task at a row as ring_buffer.track_comms gives it (raw directories
    without saved cmdlines): the last comm a sched event of the trace named for that pid, up
    to and including the row (in merged order); before any, what earlier batches left."""

    def __init__(self, run: FastRun, batch: Batch, merged: np.ndarray) -> None:
        self.run = run
        self.batch = batch
        self.pairs = run.plan.comm_pairs
        self.rank = np.empty(len(merged), np.int64)
        self.rank[merged] = np.arange(len(merged))
        rows = batch.rows
        pids, keys = [], []
        for tid, pairs in self.pairs.items():
            where = np.flatnonzero(rows.tid == tid)
            for order, (s, _cf) in enumerate(pairs):
                p = rows.val[where, s]
                ok = p > 0
                pids.append(p[ok])
                keys.append(self.rank[where[ok]] * 8 + order)  # position, then pair order
        pid = np.concatenate(pids) if pids else np.zeros(0, np.int64)
        key = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        order = np.lexsort((key, pid))
        self.pid, self.key = pid[order], key[order]
        self.merged = merged

    def _comm_at(self, key: int) -> str:
        pos, order = divmod(key, 8)
        row = int(self.merged[pos])
        _slot, cf = self.pairs[int(self.batch.rows.tid[row])][order]
        return self.run.trace.decode_record(self.batch, row)[cf]

    def comm(self, row: int, pid: int) -> str:
        lo = int(np.searchsorted(self.pid, pid, "left"))
        hi = int(np.searchsorted(self.pid, pid, "right"))
        j = int(np.searchsorted(self.key[lo:hi], int(self.rank[row]) * 8 + 7, "right")) - 1
        if j >= 0:
            return self._comm_at(int(self.key[lo + j]))
        return self.run.comms.get(pid, "<...>")

    def carry(self) -> None:
        """Keep each pid's last comm of this batch for the batches after it."""
        if len(self.pid) == 0:
            return
        last = np.flatnonzero(np.append(self.pid[1:] != self.pid[:-1], True))
        for j in last:
            self.run.comms[int(self.pid[j])] = self._comm_at(int(self.key[j]))


def run_fast(verifier: Any, reader: Any, opts: Any, *, strict: bool = False) -> Any:
    """Verify ``reader``'s trace with ``verifier``'s monitors through the columnar path.

    ``verifier`` is a freshly made :class:`pyrv.api.Verifier` (nothing fed yet) and ``reader``
    the reference reader :func:`pyrv.sources.detect.open_trace` returned for the input.
    Returns the :class:`~pyrv.api.CheckResult` (records and gaps went out through the
    options' callbacks on the way, exactly as the reference sends them), or None — before
    anything was emitted — when the fast path cannot reproduce the reference on this input;
    the caller then runs the reference (``verifier.run``). ``strict``: raise
    :class:`~pyrv.fast.columnar.Unsupported` (saying why) instead of returning None.
    """
    try:
        run = FastRun(verifier, reader, opts)
        run.prepare(validate=False)
        return run.run()
    except Unsupported:
        if strict:
            raise
        return None
    except _Overflow:
        pass
    try:  # many verdicts: check every page first, then let them out as they come
        run = FastRun(verifier, reader, opts)
        run.prepare(validate=True)
    except Unsupported:
        if strict:
            raise
        return None
    return run.run()
