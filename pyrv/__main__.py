"""``python -m pyrv``: the same as the ``pyrv`` command."""

import sys

from pyrv.cli.main import main

sys.exit(main())
