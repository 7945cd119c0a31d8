"""Monitoring the running kernel: ``pyrv mon``'s engine, as a Python API.

The kernel's monitors run on the live event stream of pyrv's own tracefs instance
(:mod:`pyrv.sources.tracefs`, :mod:`pyrv.sources.live`), through the same registry,
dispatcher and :class:`~pyrv.api.Verifier` as recorded traces: one engine for both.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType

from pyrv.api import (
    CheckError,
    CheckOptions,
    CheckResult,
    Verifier,
    monitor_definitions,
    select_monitors,
)
from pyrv.monitors.registry import RV
from pyrv.sources.live import LiveTrace
from pyrv.sources.tracefs import Tracefs, TraceInstance

KERNEL = "the running kernel"


@dataclass
class LiveOptions(CheckOptions):
    """A live run: everything :class:`CheckOptions` says, plus how long and how big."""

    duration: float | None = None  # seconds; None: until stopped (Ctrl-C, SIGTERM)
    buffer_kb: int = 4096  # per-CPU ring buffer of pyrv's instance


def tracepoints_to_enable(rv: RV, names: list[str], tracefs: Tracefs) -> list[str]:
    """The hooked tracepoints of the chosen monitors that this kernel has (optional ones
    only where present: they were required before the monitors were chosen)."""
    wanted: list[str] = []
    for mon in rv.monitors():
        if mon.name in names:
            for tp in mon.definition.tracepoints():  # type: ignore[attr-defined]
                if tp not in wanted and tracefs.has_event(tp):
                    wanted.append(tp)
    return wanted


def kernel_presence(tracefs: Tracefs) -> Callable[[str], bool]:
    """Whether the kernel has a trace event of this name (any system)."""
    assert tracefs.path is not None
    events = tracefs.path / "events"

    def present(name: str) -> bool:
        return any(events.glob(f"*/{name}/format"))

    return present


def run_live(
    opts: LiveOptions,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[TraceInstance], None] | None = None,
) -> CheckResult:
    """Monitor the running kernel until ``should_stop()``, the duration, or a stop signal."""
    defs = monitor_definitions(opts)
    deadline = None if opts.duration is None else time.monotonic() + opts.duration
    with _stop_on_signals() as stopped, Tracefs() as tracefs:
        names, rv = select_monitors(opts, defs, kernel_presence(tracefs), KERNEL)
        if not names:
            raise CheckError("no monitor can run on this kernel: none has its events here")
        tps = tracepoints_to_enable(rv, names, tracefs)

        def stop() -> bool:
            return (
                stopped()
                or (deadline is not None and time.monotonic() >= deadline)
                or (should_stop is not None and should_stop())
            )

        with TraceInstance(tracefs, tps, buffer_kb=opts.buffer_kb) as inst:
            if on_start is not None:
                on_start(inst)
            live = LiveTrace(inst, stop)
            verifier = Verifier(rv, names, opts, live.source, counter_clock=False, live=True)
            # close the stream (its trace_pipe_raw fds) before the instance is removed, even
            # when a consumer fails (a closed output pipe, a panic reactor)
            with contextlib.closing(iter(live)) as items:
                return verifier.run(items)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGINT/SIGTERM/SIGHUP ask for a graceful stop (drain, summary, cleanup); a second one
    interrupts at once — the ``with`` blocks still remove the instance."""
    state = {"count": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        state["count"] += 1
        if state["count"] > 1:
            raise KeyboardInterrupt(signal.Signals(signum).name)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield lambda: state["count"] > 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class LiveEngine:
    """The running kernel behind an :class:`RV` whose monitors are enabled from outside (the
    control filesystem): what is enabled is instrumented, what is disabled is not.

    A thread follows the registry: the tracepoints of the enabled monitors' hooks are traced
    in pyrv's own instance; when that set changes (a monitor enabled or disabled through the
    files) the instance is drained, removed and made anew with the new set, and the
    dispatcher is rebuilt. Events are fed under the registry's lock in small batches, as the
    kernel's writes wait for in-flight probes.
    """

    def __init__(
        self,
        rv: RV,
        on_record: Callable[[object], None] | None = None,
        on_gap: Callable[[object], None] | None = None,
        buffer_kb: int = 4096,
        poll_interval: float = 0.05,
    ) -> None:
        self.rv = rv
        self.on_record = on_record
        self.on_gap = on_gap
        self.buffer_kb = buffer_kb
        self.poll_interval = poll_interval
        self._stop = False
        self._thread: object | None = None
        self.error: BaseException | None = None
        self.events = 0
        self.reconfigurations = 0

    def start(self) -> None:
        import threading

        thread = threading.Thread(target=self._run, name="pyrv-live", daemon=True)
        self._thread = thread
        thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop = True
        thread = self._thread
        if thread is not None:
            thread.join(timeout)  # type: ignore[attr-defined]

    def _enabled(self) -> list:
        return [
            m
            for m in self.rv.monitors()
            if m.enabled and getattr(m, "definition", None) is not None
        ]

    @staticmethod
    def inert(rv: RV, tracefs: Tracefs) -> dict[str, list[str]]:
        """Monitors this kernel cannot drive: name -> the required events it lacks. They can
        be enabled (the files behave as on the kernel) but are never fed: half of a monitor's
        hooks would give verdicts about an execution it does not see whole."""
        out = {}
        for m in rv.monitors():
            defn = getattr(m, "definition", None)
            if defn is not None:
                missing = tracefs.missing_events(defn.required_tracepoints())
                if missing:
                    out[m.name] = missing
        return out

    def _run(self) -> None:
        try:
            with Tracefs() as tracefs:
                inert = self.inert(self.rv, tracefs)
                while not self._stop:
                    monitors = [m for m in self._enabled() if m.name not in inert]
                    tps = self._tracepoints(monitors, tracefs)
                    if not tps:
                        time.sleep(self.poll_interval)
                        continue
                    self._session(tracefs, monitors, tps)
        except BaseException as exc:  # reported by the owner (the mount daemon)
            self.error = exc

    @staticmethod
    def _tracepoints(monitors: list, tracefs: Tracefs) -> list[str]:
        wanted: list[str] = []
        for mon in monitors:
            for tp in mon.definition.tracepoints():
                if tp not in wanted and tracefs.has_event(tp):
                    wanted.append(tp)
        return wanted

    def _session(self, tracefs: Tracefs, monitors: list, tps: list[str]) -> None:
        """Trace ``tps`` for ``monitors`` until stopped or the enabled set changes."""
        from pyrv.monitors.dispatch import Dispatcher
        from pyrv.sources.continuity import SwitchContinuity

        names = [m.name for m in monitors]
        self.reconfigurations += 1

        def changed() -> bool:
            now = [m.name for m in self._enabled() if m.name not in inert]
            return self._stop or now != names

        inert = self.inert(self.rv, tracefs)

        for mon in monitors:
            mon.sink = self.on_record
            mon.emit_events = False
        dispatcher = Dispatcher(monitors)
        with TraceInstance(tracefs, tps, buffer_kb=self.buffer_kb, tag="fs") as inst:
            live = LiveTrace(inst, changed, self.poll_interval)
            with contextlib.closing(iter(live)) as items:
                for item in SwitchContinuity().filter(items):
                    with self.rv._lock:  # noqa: SLF001 - the probes' side of rv_interface_lock
                        if hasattr(item, "pids"):
                            dispatcher.lost(item)  # type: ignore[arg-type]
                            if self.on_gap is not None:
                                self.on_gap(item)
                        else:
                            self.events += 1
                            dispatcher.feed(item)  # type: ignore[arg-type]
