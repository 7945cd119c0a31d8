"""pyrv's bundled DOT models, looked up by monitor name (``wip``, ``sco``, ...).

The files live in ``pyrv/models/files`` (container monitors' models in a sub-directory
named after the container, as in the kernel's ``tools/verification/models``) and are read
through :mod:`importlib.resources`, so lookups work from an installed wheel too.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import pathlib
from importlib import resources
from importlib.resources.abc import Traversable

from pyrv.models.automaton import Automaton
from pyrv.models.dot import DotModel, parse_dot_model

__all__ = ["available_models", "load_model", "model_path"]

_PACKAGE = "pyrv.models"
_FILES = "files"


@functools.cache
def _index() -> dict[str, tuple[str, Traversable]]:
    """Monitor name -> (container, file) for ``files/*.dot`` and ``files/<container>/*.dot``."""
    root = resources.files(_PACKAGE).joinpath(_FILES)
    found: dict[str, tuple[str, Traversable]] = {}
    for entry in root.iterdir():
        container, candidates = (entry.name, entry.iterdir()) if entry.is_dir() else ("", [entry])
        for f in candidates:
            if f.is_file() and f.name.endswith(".dot"):
                name = f.name.removesuffix(".dot")
                if name in found:
                    raise RuntimeError(f"two bundled models are named {name!r}")
                found[name] = (container, f)
    return found


def available_models() -> list[str]:
    """Names of the bundled models, sorted."""
    return sorted(_index())


def _lookup(name: str) -> Traversable:
    """Accept ``sco`` as well as the kernel-style path ``sched/sco`` (container checked)."""
    container, _, key = name.rpartition("/")
    found = _index().get(key)
    if found is None or (container and container != found[0]):
        raise KeyError(
            f"no bundled model named {name!r}; available: {', '.join(available_models())}"
        )
    return found[1]


_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def model_path(name: str) -> pathlib.Path:
    """Filesystem path of a bundled model (extracted to a temporary file if zipped)."""
    res = _lookup(name)
    if isinstance(res, pathlib.Path):
        return res
    return _extracted.enter_context(resources.as_file(res))


def load_model(name: str) -> Automaton:
    """The bundled model of monitor ``name`` as an :class:`Automaton` named ``name``."""
    return load_bundled_dot_model(name).automaton


def load_bundled_dot_model(name: str) -> DotModel:
    """The bundled model with its DOT-level details (HA parts, warnings), parsed once per
    process: bundled files do not change, and every registry built reads them."""
    res = _lookup(name)
    return _parse_bundled(str(res), res.name.removesuffix(".dot"))


@functools.cache
def _parse_bundled(source: str, key: str) -> DotModel:
    res = _lookup(key)
    return parse_dot_model(res.read_bytes(), source=source, name=key)
