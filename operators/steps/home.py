"""A key that routes to the worker running the calling thread, for a step that wants its
items to stay on that worker.

Bytewax gives a keyed step's output on the worker that ran the key, and a step without a
key runs where its input is; nothing says which worker that is. The sharded steps note
the last shard key they ran (:func:`note`) by thread, and :func:`here` returns it: any
key one of them ran on this thread routes back to this thread's worker, in whatever
cluster it runs (every batch reaching the output has passed a shard step first, so it is
never a key of another flow run on this thread). Where none has run, ``"0"``: a valid
key, routed wherever Bytewax's hash sends it.

By thread id, not in a ``threading.local``: Bytewax's worker threads are Rust threads
that enter Python for each call, and a thread-local does not outlive the call (seen: every
batch went under ``"0"``).
"""

from __future__ import annotations

import threading

__all__ = ["here", "note"]

_keys: dict[int, str] = {}


def note(key: str) -> None:
    """Remember ``key``, a key this thread's worker just ran."""
    _keys[threading.get_ident()] = key


def here() -> str:
    """The key :func:`note` last remembered on this thread, else ``"0"``."""
    return _keys.get(threading.get_ident(), "0")
