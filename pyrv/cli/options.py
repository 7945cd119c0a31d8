"""Options several ``pyrv`` subcommands share, spelled once."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

#: the kernel's unsigned long (64-bit kernels); trace time stamps are u64 nanoseconds too
ULONG_MAX = 2**64 - 1
MAX_TRACE_NS = ULONG_MAX


def add_definition_option(p: argparse.ArgumentParser, help_text: str | None = None) -> None:
    """``-d/--definition FILE`` (repeatable): a monitor definition (model + hook table)."""
    p.add_argument(
        "-d",
        "--definition",
        action="append",
        default=[],
        metavar="FILE",
        help=help_text or "a monitor definition file (replaces a built-in of the same name)",
    )


def _ascii(text: str) -> str:
    """A number as typed in a shell: ASCII only, no ``_`` (Python's ``int``, ``float`` and
    ``Decimal`` also take other scripts' digits and ``1_000``)."""
    if not text.isascii() or "_" in text:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (ASCII digits, no '_')")
    return text


def integer(text: str) -> int:
    """An integer option in ASCII digits."""
    try:
        return int(_ascii(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _seconds(text: str) -> float:
    try:
        return float(_ascii(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def duration(text: str) -> float:
    """``--duration S``: a positive number of seconds (a usage error otherwise, exit 2)."""
    value = _seconds(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be a positive number")
    return value


def wait_seconds(text: str) -> float:
    """``--timeout S``: a finite number of seconds, 0 or more (0: do not wait)."""
    value = _seconds(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a timeout is a finite number of seconds >= 0")
    return value


def trace_time_ns(text: str) -> int:
    """``--start SECONDS``: a trace time as printed, in nanoseconds. Read as a decimal, not a
    float, so every printed digit counts; one no trace can have (negative, infinite, NaN,
    past the 64-bit nanosecond clock) is a usage error, not a run that never starts."""
    _ascii(text)
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r}: a trace time is a finite number of seconds")
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: trace times are not negative")
    if value > Decimal(MAX_TRACE_NS).scaleb(-9):
        raise argparse.ArgumentTypeError(
            f"{text!r}: later than any trace time (64-bit nanoseconds end at "
            f"{Decimal(MAX_TRACE_NS).scaleb(-9)} s)"
        )
    return int(value.scaleb(9).to_integral_value())


def int_range(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``; ``what`` says what it counts."""

    def parse(text: str) -> int:
        value = integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: {what} is {low}..{high}")
        return value

    return parse


#: ``--buffer-kb``: tracefs' buffer_size_kb, a nonzero unsigned long the kernel shifts by 10
BUFFER_KB = int_range(1, ULONG_MAX >> 10, "the per-CPU buffer size in KiB")
