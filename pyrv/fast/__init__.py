"""The columnar fast path for binary traces (trace.dat, raw ring-buffer pages).

:func:`check_fast` is :func:`pyrv.api.check` for one binary input, with the DA monitors run
by a compiled loop over numpy columns (:mod:`pyrv.fast.columnar`, :mod:`pyrv.fast.engine`)
instead of one Python object per event. The result, and every record and gap handed to the
options' callbacks, are the reference's own: anything the fast path cannot reproduce —
text input, monitors other than plain DA ones, conditions on the task context, user
reactors, damaged or unusual pages — is detected before the first verdict and verified by
the reference engine instead.

The columns need ``numpy`` (``pip install 'pyrv[fast]'``); the two loops (page walker,
transition loop) are C, compiled with the system's C compiler on first use and cached in
``~/.cache/pyrv`` (or ``$PYRV_CACHE_DIR``). Without either, :func:`available` is False and
:func:`check_fast` is the reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["NotApplicable", "available", "check_fast", "run_fast"]


def available() -> bool:
    """Whether the fast path can run here: numpy imports and its native code builds (a C
    compiler, once: the library is cached)."""
    try:
        from pyrv.fast.columnar import available as native_available
    except ImportError:  # numpy missing
        return False
    return native_available()


class NotApplicable(Exception):
    """``strict`` was asked and the fast path does not apply: the message says why."""


def run_fast(verifier: Any, reader: Any, opts: Any, *, strict: bool = False) -> Any:
    """See :func:`pyrv.fast.engine.run_fast`: the result, or None when the reference must run
    (decided before anything was emitted; with ``strict``, :class:`NotApplicable` instead)."""
    if not available():
        if strict:
            raise NotApplicable("numpy (pip install 'pyrv[fast]') or a C compiler is missing")
        return None
    from pyrv.fast.columnar import Unsupported
    from pyrv.fast.engine import run_fast as _run

    try:
        return _run(verifier, reader, opts, strict=True)
    except Unsupported as exc:
        if strict:
            raise NotApplicable(str(exc)) from None
        return None


def check_fast(trace: str | Path | Any, opts: Any = None, *, strict: bool = False) -> Any:
    """:func:`pyrv.api.check` through the fast path where it applies (one trace.dat, raw
    directory or raw-pages file, plain DA monitors), the reference engine otherwise; the
    same :class:`~pyrv.api.CheckResult`, records and gaps either way.

    ``strict``: raise :class:`NotApplicable` (before any verdict) instead of running the
    reference, e.g. to benchmark or test the fast path itself.
    """
    from pyrv import api
    from pyrv.sources.continuity import check_time_order
    from pyrv.sources.detect import open_trace, sniff

    opts = opts or api.CheckOptions()
    files = [trace] if isinstance(trace, str | Path) else list(trace)
    why = None
    if len(files) != 1:
        why = "several input files"
    elif not available():
        why = "numpy (pip install 'pyrv[fast]') or a C compiler is missing"
    elif sniff(files[0]) not in ("tracedat", "rawdir", "binary"):
        why = "text input"
    if why is not None:
        if strict:
            raise NotApplicable(why)
        return api.check(trace, opts)
    # what api.check does before it feeds the verifier (same calls, same order, same errors)
    f = files[0]
    defs = api.monitor_definitions(opts)
    label = str(f)
    reader, items = open_trace(
        f, formats_dir=opts.formats_dir, skip_bad_lines=opts.skip_bad_lines, partial=opts.partial
    )
    streams = [api._peeked(items)]
    names, rv = api.select_monitors(opts, defs, api._presence([f], [reader], opts), label)
    if names and not reader.has_context:
        raise api.CheckError(
            f"{label}: the trace has no context columns (written with the nocontext-info "
            "option): monitors need the task, CPU and time of every event"
        )
    verifier = api.Verifier(rv, names, opts, label, counter_clock=reader.counter_clock)
    api._require_context_column(verifier.monitors, streams, label)
    result = run_fast(verifier, reader, opts, strict=strict)
    if result is None:
        result = verifier.run(check_time_order(streams[0]))
    result.skipped_lines = list(reader.skipped)
    result.dropped_incomplete = reader.dropped_incomplete
    stopped = getattr(reader, "stopped_at", None)
    if stopped is not None:
        result.stopped_at = str(stopped)
    return result
