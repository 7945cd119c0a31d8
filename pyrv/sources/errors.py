"""The one error type trace sources raise for bad input, so callers never see a raw traceback."""

from __future__ import annotations


class TraceError(ValueError):
    """Input that cannot be read: names the file and (1-based) line so the user can look at it."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.source}: {self.reason}"
        return f"{self.source}:{self.line}: {self.reason}"

    def __reduce__(self) -> tuple[type[TraceError], tuple[str, int | None, str]]:
        return (TraceError, (self.source, self.line, self.reason))
