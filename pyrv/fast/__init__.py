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

import os
import sys
from pathlib import Path
from typing import Any

if "numpy" not in sys.modules:  # pyrv uses no BLAS: OpenBLAS's idle threads would spin on
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the cores decompression needs

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
    import dataclasses

    from pyrv import api

    opts = dataclasses.replace(opts or api.CheckOptions(), engine="fast" if strict else "auto")
    try:
        return api.check(trace, opts)
    except api.FastEngineUnavailable as exc:
        raise NotApplicable(exc.reason) from None
