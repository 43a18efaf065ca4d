from collections.abc import Sequence

from operators.entity_risk import RiskConfig, RiskWindow
from operators.features import Featured
from operators.labels import KnownLabel

SOURCE_DIGEST: str

def update_window(
    window: RiskWindow, items: Sequence[Featured | KnownLabel], kind: str, config: RiskConfig
) -> list[Featured]: ...
