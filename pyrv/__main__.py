"""``python -m pyrv``: the same as the ``pyrv`` command."""

import sys

from pyrv.cli import run

sys.exit(run())
