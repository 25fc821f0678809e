"""What a training run reports after each epoch (for progress lines, curves and the saved model)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class EpochStats:
    """One finished epoch of one training stage.

    Attributes
    ----------
    stage : str
        ``gmf`` or ``mlp`` (pre-training runs) or the final model's kind.
    epoch : int
        1-based epoch within the stage.
    epochs : int
        Epochs planned for the stage (for an ETA).
    loss : float
        Mean weighted log loss over the epoch's samples, penalty excluded.
    seconds : float
        Wall-clock seconds of the epoch's training (sampling included, evaluation excluded).
    samples : int
        Training samples (positives + negatives) in the epoch.
    hr_at_10 : float or None
        The evaluation callback's HR@10 after the epoch, if one was given.
    eval_seconds : float
        Seconds the evaluation callback took.
    """

    stage: str
    epoch: int
    epochs: int
    loss: float
    seconds: float
    samples: int
    hr_at_10: float | None = None
    eval_seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochStats:
        return cls(**data)
