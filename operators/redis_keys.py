"""The Redis keys of the contract (docs/contract.md): each user's latest risk,
written by the job, and the live block and allow lists it reads."""

from __future__ import annotations

__all__ = ["ALLOWLIST_KEYS", "BLOCKLIST_KEYS", "LIST_KEYS", "RISK_KEY"]

RISK_KEY = "fraud:risk:{user_id}"
"""Hash of the user's latest verdict (``score``, ``level``, ``decision``, ``event_id``, ...)."""

BLOCKLIST_KEYS = {
    "countries": "fraud:blocklist:countries",
    "devices": "fraud:blocklist:devices",
    "users": "fraud:blocklist:users",
}
"""Sets of blocked country codes, device ids and user ids."""

ALLOWLIST_KEYS = {
    "allowed_users": "fraud:allowlist:users",
    "allowed_devices": "fraud:allowlist:devices",
}
"""Sets of user ids and device ids whose events are approved whatever fires."""

LIST_KEYS = {**BLOCKLIST_KEYS, **ALLOWLIST_KEYS}
"""Every live list by its field name in ``operators.rules.Blocklists``."""
