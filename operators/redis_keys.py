"""The Redis keys of the contract (docs/contract.md): each user's latest risk,
written by the job, and the live blocklists it reads."""

from __future__ import annotations

__all__ = ["BLOCKLIST_KEYS", "RISK_KEY"]

RISK_KEY = "fraud:risk:{user_id}"
"""Hash of the user's latest verdict (``score``, ``level``, ``decision``, ``event_id``, ...)."""

BLOCKLIST_KEYS = {
    "countries": "fraud:blocklist:countries",
    "devices": "fraud:blocklist:devices",
    "users": "fraud:blocklist:users",
}
"""Sets of blocked country codes, device ids and user ids."""
