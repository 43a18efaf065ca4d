from collections.abc import Mapping, Sequence

from operators.ensemble import EnsembleConfig
from operators.features import Featured
from operators.rules import Blocklists
from operators.rulesets import RuleSet
from operators.scoring import ScoredEvent

SOURCE_DIGEST: str

def rounded(x: float, ndigits: int) -> float: ...
def decide_batch(
    batch: Sequence[Featured],
    scores: Mapping[str, list[float]],
    model_version: str,
    rules: RuleSet,
    blocklists: Blocklists,
    ensemble: EnsembleConfig,
    now: float,
    challenger: tuple[str, Mapping[str, list[float]]] | None = None,
    shadow_rules: RuleSet | None = None,
) -> list[ScoredEvent]: ...
