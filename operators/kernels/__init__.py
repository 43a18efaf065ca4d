"""The hot path's per-event kernels: compiled (Cython) where the package was built with a
C compiler, else their pure-Python references.

Each kernel is a port of a pure function, operation for operation, so both give the same
values to the last bit (tests compare them on generated traffic):

=========================  ============================================  =====================
kernel                     reference                                     compiled module
=========================  ============================================  =====================
``update_profile``         :func:`operators.features.update_profile`     ``kernels/profile.pyx``
``update_window``          :func:`operators.entity_risk.update_window`   ``kernels/windows.pyx``
``windows.update_windows`` ``operators.shards._windows``                 ``kernels/windows.pyx``
``decide_batch``           :func:`operators.scoring.decide_batch`        ``kernels/verdicts.pyx``
``check_batch``            :func:`operators.validation.check_batch`      ``kernels/validation.pyx``
``admit``                  :func:`operators.dedup.admit`                 ``kernels/dedup.pyx``
``forest.path_lengths``    ``models.isolation_forest.ForestArrays``      ``kernels/forest.pyx``
``rows.copy_rows``         ``scored_event_row`` + psycopg's binary COPY  ``kernels/rows.pyx``
``risk.risk_commands``     ``operators.sinks.redis.risk_commands``       ``kernels/risk.pyx``
``featured_matrix``        :func:`operators.features.featured_matrix`    ``kernels/matrix.pyx``
``split_lists``            :func:`operators.routing.split_lists`         ``kernels/routing.pyx``
=========================  ============================================  =====================

A kernel whose reference lives elsewhere (the forest's in ``models``, the COPY rows' in
psycopg, the Redis commands' in the sink, a shard's windows in ``operators.shards``) is
picked there, from its module here: :data:`forest`, :data:`rows`, :data:`risk`,
:data:`windows` (None when not compiled).

A compiled module is used only if it was built from the source beside it (the SHA-256 of
its ``.pyx`` and of the shared ``.pxd`` files is compiled in): after either changes,
``pip install -e .`` builds it again, and until then the reference runs and
:data:`STALE` names the module.

>>> sorted(describe())
['compiled', 'stale', 'unavailable']
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from operators import dedup, entity_risk, features, routing, scoring, validation

__all__ = [
    "COMPILED",
    "STALE",
    "UNAVAILABLE",
    "admit",
    "check_batch",
    "decide_batch",
    "describe",
    "featured_matrix",
    "forest",
    "risk",
    "rows",
    "split_lists",
    "update_profile",
    "update_window",
    "windows",
]

_HERE = Path(__file__).parent
log = logging.getLogger(__name__)

COMPILED: list[str] = []
"""The kernels' modules that are compiled and current."""
STALE: list[str] = []
"""Compiled modules built from another version of their source (not used)."""
UNAVAILABLE: list[str] = []
"""Modules with no compiled build (no C compiler or no Cython at install)."""


def _source_digest(source: Path) -> str:
    """SHA-256 of a kernel's ``.pyx``, then of each shared ``.pxd`` beside it that it
    cimports, in name order: what setup.py compiles into the module (its
    ``source_digest``). Cython rebuilds a module when a ``.pxd`` it cimports changes, so a
    module's digest changes exactly when it is rebuilt."""
    text = source.read_bytes()
    sha = hashlib.sha256(text)
    for shared in sorted(set(re.findall(rb"operators\.kernels\.(\w+) cimport", text))):
        sha.update((source.parent / f"{shared.decode()}.pxd").read_bytes())
    return sha.hexdigest()


def _load(name: str) -> ModuleType | None:
    try:
        module = importlib.import_module(f"operators.kernels.{name}")
    except ImportError:
        UNAVAILABLE.append(name)
        return None
    except Exception as exc:  # a build that cannot start must not stop the job: the reference runs
        log.error(
            "operators.kernels.%s failed to load (%s: %s); running its reference",
            name,
            type(exc).__name__,
            exc,
        )
        UNAVAILABLE.append(name)
        return None
    source = _HERE / f"{name}.pyx"
    if source.exists() and _source_digest(source) != module.SOURCE_DIGEST:
        STALE.append(name)
        return None
    COMPILED.append(name)
    return module


def _pick(module: ModuleType | None, name: str, reference: Callable[..., Any]) -> Callable[..., Any]:
    return getattr(module, name) if module is not None else reference


_profile = _load("profile")
update_profile: Callable[..., features.Featured] = _pick(_profile, "update_profile", features.update_profile)
windows: ModuleType | None = _load("windows")
"""The compiled risk windows, or None: :data:`update_window`, and ``update_windows`` (a
batch through a shard's windows), which ``operators.shards`` picks."""
update_window: Callable[..., list[features.Featured]] = _pick(
    windows, "update_window", entity_risk.update_window
)

_verdicts = _load("verdicts")
decide_batch: scoring.Decider = _pick(_verdicts, "decide_batch", scoring.decide_batch)

_matrix = _load("matrix")
featured_matrix: Callable[..., np.ndarray] = _pick(_matrix, "featured_matrix", features.featured_matrix)

_validation = _load("validation")
check_batch: Callable[..., tuple[list[validation.Accepted], list[validation.DeadLetter]]] = _pick(
    _validation, "check_batch", validation.check_batch
)
_dedup = _load("dedup")
admit: Callable[..., tuple[list[validation.Accepted | validation.DeadLetter], int]] = _pick(
    _dedup, "admit", dedup.admit
)
forest: ModuleType | None = _load("forest")
"""The compiled isolation-forest traversal, or None (``models.isolation_forest`` then runs its own)."""
rows: ModuleType | None = _load("rows")
"""The compiled binary COPY rows of ``scored_events``, or None (the Postgres sink then has
psycopg format :func:`operators.records.scored_event_row`)."""
_routing = _load("routing")
split_lists: Callable[..., list[tuple[str, list[Any]]]] = _pick(_routing, "split_lists", routing.split_lists)
risk: ModuleType | None = _load("risk")
"""The compiled Redis commands of the risk sink, or None (the sink packs them itself)."""


def describe() -> dict[str, list[str]]:
    """Which kernels run compiled, and why the others do not."""
    return {"compiled": list(COMPILED), "stale": list(STALE), "unavailable": list(UNAVAILABLE)}
