"""The other ranks of a ``torchrun`` training run: they receive the leader's pairs and train in step (DDP).

The leader (rank 0, :func:`recsys.worker.run_training`) holds a :class:`Followers` for the whole run
and hands them the job once its pairs are ready; every other rank runs :func:`follow_training`.
"""

from __future__ import annotations

import numpy as np


def follow_training() -> bool:
    """A torchrun rank other than the leader: receive the leader's pairs and train alongside it.

    Returns False when the leader stopped before training (its own error says why).
    """
    from recsys.ncf import distributed
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.training import train

    job = distributed.broadcast_object()
    if job is None:
        distributed.shutdown()
        return False
    arrays = distributed.broadcast_arrays()
    train(
        NCFConfig.from_dict(job["config"]),
        arrays["user_idx"],
        arrays["item_idx"],
        job["n_players"],
        job["n_slots"],
        weights=arrays["weights"],
        keep_best=job["keep_best"],
    )
    distributed.shutdown()
    return True


class Followers:
    """The other torchrun ranks, waiting in :func:`follow_training` (nothing in a single process).

    :meth:`hand_over` sends them the training job; leaving the ``with`` block without having done so
    (no data, lock held, an error) tells them there is none, so they exit instead of waiting.
    """

    def __init__(self) -> None:
        from recsys.ncf import distributed  # torch: imported when training, not with this module

        self.distributed = distributed
        self.waiting = distributed.active()

    def __enter__(self) -> Followers:
        return self

    def hand_over(
        self, config, n_players: int, n_slots: int, keep_best: bool, arrays: dict[str, np.ndarray | None]
    ) -> None:
        if not self.waiting:
            return
        self.waiting = False
        job = {"config": config.to_dict(), "n_players": n_players, "n_slots": n_slots, "keep_best": keep_best}
        self.distributed.broadcast_object(job)
        self.distributed.broadcast_arrays(arrays)

    def trained(self) -> int:
        """Training is over: leave the process group with the followers; returns how many processes trained."""
        processes = self.distributed.world_size()
        self.distributed.shutdown()
        return processes

    def __exit__(self, *exc_info) -> None:
        if self.waiting:
            self.waiting = False
            self.distributed.broadcast_object(None)
            self.distributed.shutdown()
