"""The items each user played in training, as bags of embedding rows (FISM / SVD++ user vectors).

A user's vector can be built from the items they played: ``|N(u)|^-alpha * sum_{j in N(u)} y_j``
(Koren 2008's SVD++ implicit part; Kabbur et al. 2013's FISM). A light user then gets a vector from
what the whole population taught about their few items, instead of a free row trained on two or
three positives, and a new user's vector needs no training at all.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.baselines import TrainItems


class PlayedItems:
    """Each user's distinct training items (``recsys.baselines.TrainItems``) as torch tensors.

    Parameters
    ----------
    user_idx, item_idx : np.ndarray, shape (n,)
        Training pairs (a repeated pair counts once).
    n_users, n_items : int
    """

    def __init__(self, user_idx: np.ndarray, item_idx: np.ndarray, n_users: int, n_items: int) -> None:
        train = TrainItems(user_idx, item_idx, n_users, n_items)
        self.n_users = train.n_users
        self.indptr = torch.from_numpy(np.asarray(train.indptr, dtype=np.int64))
        """Shape (n_users + 1,): user u's items are ``items[indptr[u]:indptr[u + 1]]``."""
        self.items = torch.from_numpy(train.items)
        """Shape (distinct pairs,), int64, sorted by user then item."""

    def bags(self, user_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The items of each user as one flat bag list for ``F.embedding_bag``.

        Returns
        -------
        items : torch.Tensor, shape (sum of counts,), int64
        offsets : torch.Tensor, shape (n,), int64
            Where each user's bag starts in ``items``.
        counts : torch.Tensor, shape (n,), int64
        """
        starts = self.indptr[user_idx]
        counts = self.indptr[user_idx + 1] - starts
        offsets = torch.cumsum(counts, 0) - counts
        total = int(counts.sum())
        positions = torch.repeat_interleave(starts - offsets, counts) + torch.arange(total)
        return self.items[positions], offsets, counts
