from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from operators.entity_risk import RiskConfig, RiskWindow
from operators.events import TransactionEvent
from operators.features import Featured
from operators.labels import KnownLabel

SOURCE_DIGEST: str

def update_window(
    window: RiskWindow, items: Sequence[Featured | KnownLabel], kind: str, config: RiskConfig
) -> list[Featured]: ...
def update_windows(
    table: dict[str, Any],
    featured: Sequence[Featured],
    labels: Sequence[KnownLabel],
    kind: str,
    key_of: Callable[[TransactionEvent], str | None],
    config: RiskConfig,
    now: float,
    hot: set[str] | None,
    decoder: msgspec.msgpack.Decoder[RiskWindow],
    new: Callable[[], RiskWindow],
) -> list[Featured]: ...
