"""The training run's per-epoch log lines and the epochs early stopping kept."""

from __future__ import annotations

import logging
import time

log = logging.getLogger("recsys.worker")  # the run's own log lines, under the worker's name as before


class EpochLog:
    """Per-epoch log lines: the epoch within its stage and within the whole run
    (``epoch 1/10 (mlp; 31/40 of the run)``), loss, HR@10, rate, and an ETA over every stage's epochs."""

    def __init__(self, config) -> None:
        self.total = config.total_epochs
        self.done = 0
        self.started = time.perf_counter()

    def __call__(self, stats) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        log.info("%s", self.line(stats, eta))

    def line(self, stats, eta: float) -> str:
        hr = "" if stats.hr_at_10 is None else f" HR@10 {stats.hr_at_10:.3f}"
        return (
            f"epoch {stats.epoch}/{stats.epochs} ({stats.stage}; {self.done}/{self.total} of the run): "
            f"loss {stats.loss:.4f}{hr}, {stats.samples_per_second:,.0f} samples/s, ETA {eta:.0f} s"
        )


def kept_epochs(history) -> dict[str, int]:
    """Each stage's best epoch by its validation HR@10 (the first of equals), as early stopping kept it."""
    kept: dict[str, tuple[float, int]] = {}
    for stats in history:
        if stats.hr_at_10 is not None and stats.hr_at_10 > kept.get(stats.stage, (-1.0, 0))[0]:
            kept[stats.stage] = (stats.hr_at_10, stats.epoch)
    return {stage: epoch for stage, (_, epoch) in kept.items()}
