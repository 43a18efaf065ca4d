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
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = ["KeyRing", "KeysFileError", "RateLimiter", "hash_key", "new_key"]


class KeysFileError(ValueError):
    """The keys file is unreadable or malformed (the message names the entry)."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "fsk_" + secrets.token_urlsafe(32)


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
        except OSError as exc:
            raise KeysFileError(f"gateway.keys_file: cannot read {self.path}: {exc}") from exc
        if mtime == self._mtime:
            return
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise KeysFileError(f"gateway.keys_file: {self.path} is not YAML: {exc}") from exc
        by_hash: dict[str, str] = {}
        for i, entry in enumerate(data.get("keys") or []):
            if not isinstance(entry, dict) or not entry.get("name") or not entry.get("sha256"):
                raise KeysFileError(f"gateway.keys_file: keys[{i}] needs a name and a sha256")
            digest = str(entry["sha256"]).lower()
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise KeysFileError(f"gateway.keys_file: keys[{i}].sha256 is not a SHA-256 hex digest")
            if not entry.get("revoked", False):
                by_hash[digest] = str(entry["name"])
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
