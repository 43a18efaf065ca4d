"""API keys of the HTTP gateway: stored as SHA-256 only, several at once,
revocable by editing the keys file (re-read when it changes), and a token
bucket per key.

Keys file (YAML)::

    keys:
      - name: pos-terminals
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
      - name: old-batch-loader
        sha256: 60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
        revoked: true

Keys are random 32-byte tokens (``new_key``), so a plain SHA-256 is enough: the
point is that a leaked file does not leak usable keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "KeyRing",
    "KeysFileError",
    "RateLimiter",
    "append_key",
    "hash_key",
    "keys_file_text",
    "new_key",
    "parse_keys",
]


class KeysFileError(ValueError):
    """The keys file is unreadable or malformed (the message names the entry)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "fsk_" + secrets.token_urlsafe(32)


_SHAPE = "a mapping `keys:` holding a list of {name, sha256[, revoked]} entries"


def parse_keys(text: str, where: str = "the keys file") -> list[dict[str, Any]]:
    """The entries of a keys file's text, checked; :class:`KeysFileError` names
    ``gateway.keys_file`` and what is wrong.

    >>> parse_keys("keys: []")
    []
    >>> parse_keys("- name: a")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    apps.gateway.keys.KeysFileError: gateway.keys_file: the keys file holds a list, expected a mapping ...
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KeysFileError(f"gateway.keys_file: {where} is not YAML: {exc}") from exc
    if data is None:
        return []
    if not isinstance(data, dict):
        raise KeysFileError(
            f"gateway.keys_file: {where} holds a {_kind(data)}, expected {_SHAPE} "
            "(`fraudstream gateway-key NAME` prints a complete file)"
        )
    entries = data.get("keys") or []
    if not isinstance(entries, list):
        raise KeysFileError(f"gateway.keys_file: {where}: `keys` holds a {_kind(entries)}, expected {_SHAPE}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("sha256"):
            raise KeysFileError(f"gateway.keys_file: {where}: keys[{i}] needs a name and a sha256")
        digest = str(entry["sha256"]).lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise KeysFileError(f"gateway.keys_file: {where}: keys[{i}].sha256 is not a SHA-256 hex digest")
    return entries


def _kind(value: object) -> str:
    return "list" if isinstance(value, list) else "mapping" if isinstance(value, dict) else "plain value"


def keys_file_text(entries: list[dict[str, Any]]) -> str:
    """A complete keys file holding ``entries``.

    >>> print(keys_file_text([{"name": "pos", "sha256": "ab" * 32}]), end="")  # doctest: +ELLIPSIS
    # API keys of `fraudstream gateway` (gateway.keys_file): names and SHA-256 only.
    keys:
    - name: pos
      sha256: abab...
    """
    header = "# API keys of `fraudstream gateway` (gateway.keys_file): names and SHA-256 only.\n"
    return header + yaml.safe_dump({"keys": entries}, sort_keys=False)


def append_key(path: Path, name: str, key: str) -> int:
    """Add ``name`` with the hash of ``key`` to the keys file at ``path`` (created if
    missing; replaced atomically, so a running gateway never reads half a file).
    Returns how many entries it holds now. Comments in the file are not kept."""
    entries = parse_keys(path.read_text(), str(path)) if path.exists() else []
    entries.append({"name": name, "sha256": hash_key(key)})
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(keys_file_text(entries))
    os.replace(tmp, path)
    return len(entries)


EXAMPLE_KEY_SHA256 = "d163ca2bb0c00bb86fe7ff9687d592a04dcc039e1d5e0878df2da1e6f244d661"
"""The hash of ``fsk_example-only-do-not-use``, the key in infra/gateway-keys.example.yaml:
anyone can read it, so the gateway refuses it unless ``gateway.allow_example_key`` (demos)."""


@dataclass
class KeyRing:
    """Names by key hash, from a YAML file re-read whenever its mtime changes."""

    path: Path
    _mtime: float = -1.0
    _by_hash: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._reload()

    def _reload(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
            if mtime == self._mtime:
                return
            text = self.path.read_text()
        except OSError as exc:
            raise KeysFileError(f"gateway.keys_file: cannot read {self.path}: {exc.strerror}") from exc
        by_hash: dict[str, str] = {}
        for entry in parse_keys(text, str(self.path)):
            if not entry.get("revoked", False):
                by_hash[str(entry["sha256"]).lower()] = str(entry["name"])
        self._by_hash, self._mtime = by_hash, mtime

    def name_of(self, key: str | None) -> str | None:
        """The key's name, or None for a missing, unknown or revoked key."""
        with contextlib.suppress(KeysFileError):  # keep the last good keys while the file is broken
            self._reload()
        if not key:
            return None
        digest = hash_key(key)
        for known, name in self._by_hash.items():
            if hmac.compare_digest(known, digest):
                return name
        return None

    def __len__(self) -> int:
        return len(self._by_hash)

    def holds_example_key(self) -> bool:
        """True while the public example key (infra/gateway-keys.example.yaml) is active."""
        return EXAMPLE_KEY_SHA256 in self._by_hash


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key name: ``rate`` per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self._buckets: dict[str, _Bucket] = {}

    def acquire(self, name: str, cost: float = 1.0) -> float:
        """0 when allowed, else the seconds to wait before retrying."""
        now = self.clock()
        b = self._buckets.setdefault(name, _Bucket(self.burst, now))
        b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
        b.at = now
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / self.rate
