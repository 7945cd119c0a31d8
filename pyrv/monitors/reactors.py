"""Reactors: what happens when a monitor finds a violation (kernel ``struct rv_reactor``).

A reactor is a name, a description and a callback taking the formatted reaction message
(e.g. ``"rv: monitor wip does not allow event sched_waking on state preemptive\\n"``). The
registry (:mod:`pyrv.monitors.registry`) lists them and dispatches to the one a monitor selected;
anyone can add one with ``rv.register_reactor(Reactor("mine", "desc", callback))``.

Built-ins, as in the kernel (spec §2): ``nop`` (registered by the core), ``printk`` and ``panic``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from pyrv.monitors.registry import RV

NOP_DESCRIPTION = "no-operation reactor: do nothing."
PRINTK_DESCRIPTION = "prints the exception msg to the kernel message log."
PANIC_DESCRIPTION = "panic the system if an exception is found."

#: Default kernel log path of the printk reactor's optional second output.
KMSG_PATH = "/dev/kmsg"
#: The kernel's printk reactor prints at the default message loglevel (KERN_WARNING).
KMSG_LEVEL_PREFIX = b"<4>"


class RVPanic(Exception):
    """Raised by the ``panic`` reactor: the run must stop, as the kernel would ``panic()``.

    ``message`` (also ``str(exc)``) is the reaction message, newline included.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Reactor:
    """A named reaction. Compared by identity: the registry shows the selected *object*."""

    def __init__(self, name: str, description: str, react: Callable[[str], None]) -> None:
        self.name = name
        self.description = description
        self._react = react

    def react(self, message: str) -> None:
        """Run the reaction for one violation message."""
        self._react(message)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def nop_reactor() -> Reactor:
    """The core's default reactor: does nothing (every monitor starts with it)."""
    return Reactor("nop", NOP_DESCRIPTION, lambda message: None)


class PrintkReactor(Reactor):
    """Writes the message to a text stream and, optionally, to the kernel log.

    The stream gets the message exactly as the kernel's log record shows it (one line).
    ``kmsg`` (True for ``/dev/kmsg``, or a path) adds a ``<4>``-prefixed record to the kernel
    log; if that cannot be written the failure is reported once and kmsg output stops.
    """

    def __init__(
        self, stream: TextIO | None = None, kmsg: bool | str | os.PathLike[str] = False
    ) -> None:
        super().__init__("printk", PRINTK_DESCRIPTION, self._print)
        self.stream = stream  # None: whatever sys.stderr is at reaction time
        self._lock = threading.Lock()
        self._kmsg_fd: int | None = None
        self._kmsg_path: str | None = None
        self.set_kmsg(kmsg)

    def set_kmsg(self, kmsg: bool | str | os.PathLike[str]) -> None:
        """Turn the kernel-log copy on (True or a path) or off (False)."""
        with self._lock:
            self._close_kmsg()
            if kmsg is True:
                self._kmsg_path = KMSG_PATH
            elif kmsg is False:
                self._kmsg_path = None
            else:
                self._kmsg_path = os.fspath(kmsg)

    def _print(self, message: str) -> None:
        line = message if message.endswith("\n") else message + "\n"
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(line)
        stream.flush()
        if self._kmsg_path is not None:
            self._write_kmsg(line)

    def _write_kmsg(self, line: str) -> None:
        with self._lock:
            path = self._kmsg_path
            if path is None:
                return
            try:
                if self._kmsg_fd is None:
                    self._kmsg_fd = os.open(path, os.O_WRONLY | os.O_APPEND)
                os.write(self._kmsg_fd, KMSG_LEVEL_PREFIX + line.encode())
            except OSError as exc:
                # Reported once, then kmsg is off: a reaction must not fail the run.
                self._close_kmsg()
                self._kmsg_path = None
                warnings.warn(
                    f"printk reactor: cannot write {path}: {exc.strerror or exc}; "
                    "kernel log output disabled",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _close_kmsg(self) -> None:
        if self._kmsg_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._kmsg_fd)
            self._kmsg_fd = None


def _panic(message: str) -> None:
    raise RVPanic(message)


def panic_reactor() -> Reactor:
    """Stops the run by raising :class:`RVPanic` (the kernel panics with the message)."""
    return Reactor("panic", PANIC_DESCRIPTION, _panic)


def register_builtin_reactors(
    rv: RV, stream: TextIO | None = None, kmsg: bool | str | os.PathLike[str] = False
) -> None:
    """Register ``printk`` then ``panic`` (Makefile order), after the core's ``nop``."""
    rv.register_reactor(PrintkReactor(stream, kmsg))
    rv.register_reactor(panic_reactor())
