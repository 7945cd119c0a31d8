"""The kernel's rv/ control interface as a FUSE filesystem (``pyrv mount``): docs/rvfs.md."""

from pyrv.fs.rvfs import VERDICTS_FILE, RVFs, VerdictLog

__all__ = ["VERDICTS_FILE", "RVFs", "VerdictLog"]
