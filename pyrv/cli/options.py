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
