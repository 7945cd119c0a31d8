"""Shared test helpers: where the project's shared/ material is (beside the clone)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PYRV_SHARED", REPO.parent / "shared"))
RECORDED = SHARED / "traces" / "recorded"
CONFORMANCE = SHARED / "conformance"


#: spec §4.2's wwnr table, transcribed once for the tests that need a small real model
WWNR_TABLE = {
    ("not_running", "switch_in"): "running",
    ("not_running", "wakeup"): "not_running",
    ("running", "switch_out"): "not_running",
}


def need_shared(path: Path) -> Path:
    """Skip (with the reason) when the shared/ material is not beside the checkout.

    In CI (``CI`` set) it is always laid beside the clone, so its absence fails the run
    instead of letting the oracle tests pass by skipping.
    """
    if not path.exists():
        reason = f"{path} not found: set PYRV_SHARED to the project's shared/ directory"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session", autouse=True)
def leave_tracefs_as_found() -> Iterator[None]:
    """A run leaves tracefs as it found it: a mount pyrv made and no pyrv uses any more (its
    users were killed, as the daemon of test_rvfs's stale-mount test) is unmounted at the end,
    with the instances of the killed runs. A mount someone else made is never touched."""
    yield
    if os.geteuid() == 0:
        from pyrv.sources.tracefs import release_abandoned_mount

        release_abandoned_mount()


@pytest.fixture(scope="module")
def tracefs() -> Iterator[object]:
    """The running kernel's tracefs, mounted for the module if nobody has (and left as found);
    skipped, saying why, where it cannot be."""
    from pyrv.sources.tracefs import Tracefs

    if os.geteuid() != 0:
        pytest.skip("the running kernel's tracefs needs root")
    try:
        with Tracefs() as t:
            yield t
    except OSError as exc:
        pytest.skip(f"tracefs cannot be mounted here: {exc}")
