"""Options several ``pyrv`` subcommands share, spelled once."""

from __future__ import annotations

import argparse


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


def duration(text: str) -> float:
    """``--duration S``: a positive number of seconds (a usage error otherwise, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: the duration must be a positive number")
    return value
