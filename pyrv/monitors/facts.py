"""What the trace says about tasks, for the LTL monitors' derived atoms and conditions.

The kernel's LTL monitors read task state directly (``rt_or_dl_task()``, ``PF_KTHREAD``,
``current->prio``); pyrv learns the same facts from the events that show them:

- priority: ``sched_switch`` (prev/next), ``sched_wakeup``/``sched_waking``/``sched_wakeup_new``
  and ``sched_pi_setprio`` (a PI boost) carry the task's current ``prio``; RT means
  ``prio < 100`` (MAX_RT_PRIO; SCHED_DEADLINE is -1), PI boosts included, as in the kernel;
- kernel thread: a task created by ``task_newtask`` with CLONE_UNTRACED (``kernel_thread()``
  always sets it), a child of kthreadd (pid 2) in ``sched_process_fork``, kthreadd itself and
  the idle tasks are kernel threads; a task that enters a system call or takes a user page
  fault is a user thread; otherwise it is unknown (and atoms that need it stay unknown);
- comm: the comm fields of the sched events, for records naming a task other than current.
"""

from __future__ import annotations

from collections.abc import Hashable

from pyrv.monitors.da import task_key
from pyrv.sources.events import TraceEvent

MAX_RT_PRIO = 100
CLONE_UNTRACED = 0x00800000
_PRIO_FIELDS = {
    "sched_switch": (
        ("prev_pid", "prev_prio", "prev_comm"),
        ("next_pid", "next_prio", "next_comm"),
    ),
    "sched_wakeup": (("pid", "prio", "comm"),),
    "sched_waking": (("pid", "prio", "comm"),),
    "sched_wakeup_new": (("pid", "prio", "comm"),),
    "sched_pi_setprio": (("pid", "newprio", "comm"),),
}
_USER_ONLY = frozenset({"sys_enter", "sys_exit", "page_fault_user"})


class TaskFacts:
    """Per-task priority, kernel-thread flag and comm, learned event by event."""

    def __init__(self) -> None:
        self.prio: dict[Hashable, int] = {}
        self.kthread: dict[Hashable, bool] = {}
        self.comm: dict[int, str] = {}

    def learn(self, ev: TraceEvent) -> None:
        f = ev.fields
        for pid_key, prio_key, comm_key in _PRIO_FIELDS.get(ev.name, ()):
            pid, prio = f.get(pid_key), f.get(prio_key)
            if isinstance(pid, int) and isinstance(prio, int):
                self.prio[task_key(pid, ev.cpu)] = prio
                comm = f.get(comm_key)
                if isinstance(comm, str):
                    self.comm[pid] = comm
        if ev.name in _USER_ONLY and ev.pid > 0:
            self.kthread[ev.pid] = False
        elif ev.name == "task_newtask":
            pid, flags = f.get("pid"), f.get("clone_flags")
            if isinstance(pid, int) and isinstance(flags, int):
                self.kthread[pid] = bool(flags & CLONE_UNTRACED)
                if isinstance(f.get("comm"), str):
                    self.comm[pid] = f["comm"]  # type: ignore[assignment]
        elif ev.name == "sched_process_fork":
            child, parent = f.get("child_pid"), f.get("parent_pid", ev.pid)
            if isinstance(child, int) and parent == 2:
                self.kthread[child] = True

    def fact(self, key: Hashable, name: str) -> bool | None:
        """The LTL monitors' fact source: ``rt`` and ``kthread`` (None: the trace has not said)."""
        if name == "rt":
            prio = self.prio.get(key)
            return None if prio is None else prio < MAX_RT_PRIO
        if name == "kthread":
            if isinstance(key, int) and key < 0 or key in (0, 2):
                return True  # the idle tasks and kthreadd
            return self.kthread.get(key)
        return None

    def prio_of(self, pid: int, cpu: int) -> int | None:
        return self.prio.get(task_key(pid, cpu))

    def comm_of(self, pid: int) -> str:
        return self.comm.get(pid, "<...>")
