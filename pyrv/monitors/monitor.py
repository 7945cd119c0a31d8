"""What the registry knows of a monitor: ``struct rv_monitor`` (include/linux/rv.h).

The registry (:mod:`pyrv.monitors.registry`) owns the list, the enabled flags, the reactor
selection and the global switches; a monitor brings its name, its description and the three
callbacks ``enable``, ``disable`` and ``reset``. A container is a monitor without callbacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyrv.monitors.reactors import Reactor
    from pyrv.monitors.registry import RV


class Monitor:
    """Base of every registered monitor. Subclasses override the callbacks they have."""

    #: True when enabling takes one of the per-task slots (per-task DA/HA and every LTL monitor).
    uses_task_slot: bool = False
    #: False for a monitor without a reset callback (LTL): ``monitoring_on`` 0->1 skips it.
    has_reset: bool = True
    #: False for containers, which have no enable callback (``rv_is_container_monitor``).
    has_callbacks: bool = True

    def __init__(self, name: str, description: str) -> None:
        self.name = name
        self.description = description
        self.enabled = False
        self.parent: Monitor | None = None
        self.rv: RV | None = None  # set by RV.register_monitor
        self.reactor: Reactor | None = None  # set by the registry; nop by default

    def enable(self) -> None:
        """Start monitoring (kernel ``enable``: init instances, attach probes).

        Raises ``OSError`` with the kernel's errno on failure (EBUSY: no per-task slot).
        """

    def disable(self) -> None:
        """Stop monitoring (kernel ``disable``: detach probes, reset instances, free slots)."""

    def reset(self) -> None:
        """Reset every instance to not-monitoring/initial (used by ``monitoring_on`` 0->1)."""

    def react(self, message: str) -> None:
        """Hand a reaction message to the registry's dispatch (``rv_react``)."""
        if self.rv is not None:
            self.rv.react(self, message)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class Container(Monitor):
    """A monitor that only groups others (``sched``, ``rtapp``, ``deadline``): no callbacks."""

    has_callbacks = False
    has_reset = False
