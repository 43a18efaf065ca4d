"""Rule-set versions in Postgres: the store the CLI writes, and the live view the job reads.

``RuleStore`` adds immutable versions and moves the ``active`` and ``shadow``
pointers, each change with an ``audit_log`` row in the same transaction.
``LiveRuleSets`` is the job's provider: it re-reads the pointers at most every
``refresh_s`` (between batches), compiles a version once, and keeps serving the
last good rule sets if Postgres is unreachable. Without any active version the
job scores with the config file's ``rules`` (version None).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from infra.audit import record_audit
from operators import metrics
from operators.refresh import Throttle
from operators.rules import RulesConfig
from operators.rulesets import RuleSet, RuleSetDocument

__all__ = ["LiveRuleSets", "RuleStore", "RuleVersion"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleVersion:
    version: int
    created_at: datetime
    author: str
    comment: str
    digest: str
    document: RuleSetDocument


class RuleStore:
    """Rule-set versions and pointers in the job's Postgres (migration 005)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.database_url, connect_timeout=5)

    def apply(self, document: RuleSetDocument, author: str, comment: str) -> tuple[int, bool]:
        """Store ``document`` as a new version; ``(version, created)``. A document equal to
        an existing version's is not stored twice: that version is returned."""
        digest = document.digest()
        with self._connect() as conn, conn.transaction():
            conn.execute("LOCK TABLE rule_versions IN SHARE ROW EXCLUSIVE MODE")
            same = conn.execute("SELECT version FROM rule_versions WHERE digest = %s", (digest,)).fetchone()
            if same is not None:
                return int(same[0]), False
            row = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM rule_versions").fetchone()
            version = int(row[0]) if row else 1
            conn.execute(
                "INSERT INTO rule_versions (version, author, comment, digest, document) "
                "VALUES (%s, %s, %s, %s, %s)",
                (version, author, comment, digest, Jsonb(document.canonical())),
            )
            after = {"comment": comment, "digest": digest}
            record_audit(conn, author, "rules.apply", f"rules/{version}", None, after)
        return version, True

    def point(self, pointer: str, version: int | None, actor: str) -> int | None:
        """Move ``active`` or ``shadow`` to ``version`` (None: clear the shadow); the previous one."""
        if pointer not in ("active", "shadow"):
            raise ValueError(f"unknown pointer {pointer!r}")
        if version is None and pointer == "active":
            raise ValueError("the active version cannot be cleared, only replaced")
        with self._connect() as conn, conn.transaction():
            if (
                version is not None
                and not conn.execute("SELECT 1 FROM rule_versions WHERE version = %s", (version,)).fetchone()
            ):
                raise LookupError(f"no rule set version {version}")
            prev = conn.execute(
                "SELECT version FROM rule_pointers WHERE name = %s FOR UPDATE", (pointer,)
            ).fetchone()
            before = int(prev[0]) if prev else None
            if version is None:
                conn.execute("DELETE FROM rule_pointers WHERE name = %s", (pointer,))
            else:
                conn.execute(
                    "INSERT INTO rule_pointers (name, version, updated_by) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version, "
                    "updated_at = now(), updated_by = EXCLUDED.updated_by",
                    (pointer, version, actor),
                )
            action = "rules.activate" if pointer == "active" else "rules.shadow"
            record_audit(conn, actor, action, f"rules/{pointer}", {"version": before}, {"version": version})
        return before

    def pointers(self) -> dict[str, int]:
        with self._connect() as conn:
            return {str(n): int(v) for n, v in conn.execute("SELECT name, version FROM rule_pointers")}

    def versions(self) -> list[RuleVersion]:
        with self._connect() as conn:
            rows = conn.execute(f"{_SELECT} ORDER BY version").fetchall()
        return [_version(row) for row in rows]

    def get(self, version: int) -> RuleVersion:
        with self._connect() as conn:
            row = conn.execute(f"{_SELECT} WHERE version = %s", (version,)).fetchone()
        if row is None:
            raise LookupError(f"no rule set version {version}")
        return _version(row)


_SELECT = "SELECT version, created_at, author, comment, digest, document FROM rule_versions"


def _version(row: tuple[Any, ...]) -> RuleVersion:
    return RuleVersion(int(row[0]), row[1], row[2], row[3], row[4], RuleSetDocument.model_validate(row[5]))


class LiveRuleSets:
    """The job's rule sets: ``(active, shadow)``, re-read at most every ``refresh_s``."""

    def __init__(
        self,
        database_url: str | None,
        fallback: RulesConfig,
        refresh_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = RuleStore(database_url) if database_url else None
        self.fallback = RuleSet.from_config(fallback)
        self.throttle = Throttle(refresh_s, clock)
        self._compiled: dict[int, RuleSet] = {}
        self._current: tuple[RuleSet, RuleSet | None] = (self.fallback, None)

    def __call__(self) -> tuple[RuleSet, RuleSet | None]:
        if self.store is not None and self.throttle.due():
            self._refresh(self.store)
        return self._current

    def _refresh(self, store: RuleStore) -> None:
        try:
            pointers = store.pointers()
            active = self._ruleset(store, pointers.get("active"))
            shadow_version = pointers.get("shadow")
            shadow = None if shadow_version is None else self._ruleset(store, shadow_version)
        except (psycopg.Error, OSError, LookupError, ValueError) as exc:
            log.warning("rule sets: keeping version %s, cannot re-read: %s", self._current[0].version, exc)
            return
        before = self._current[0].version
        self._current = (active or self.fallback, shadow)
        if self._current[0].version != before:
            log.info("rule sets: scoring with version %s (was %s)", self._current[0].version, before)
            metrics.RULESET_SWITCHES.inc()
        metrics.RULESET_VERSION.set(-1 if self._current[0].version is None else self._current[0].version)

    def _ruleset(self, store: RuleStore, version: int | None) -> RuleSet | None:
        if version is None:
            return None
        if version not in self._compiled:
            self._compiled[version] = RuleSet.build(store.get(version).document, version)
        return self._compiled[version]
