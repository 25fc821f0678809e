"""Offline recommendations: each player's top-N unplayed slots under a trained model (no I/O).

Scoring every player against every slot with the full NeuMF costs ~3 kFLOP a pair, too much at
10^6 x 5x10^3 on two cores. The GMF half is a dot product, so it ranks the whole catalogue with one
matrix product per block of players; the full model then re-ranks the best ``prefilter`` of them.
The re-ranking reuses that GMF score and splits the MLP's first layer, ``W [p; q] = W_u p + W_i q``,
into a player part (once per player) and a slot part (once per slot), so a candidate pair costs one
addition there instead of a matrix-vector product (same logits as ``ncf_logits``, to rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from recsys.ncf.sampling import ObservedPairs
from recsys.ncf.scoring import TrainedNCF, mlp_layer_names


def top_n(
    model: TrainedNCF,
    seen_player_idx: np.ndarray,
    seen_slot_idx: np.ndarray,
    n: int,
    *,
    prefilter: int = 100,
    block: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` unseen slots of every player.

    Parameters
    ----------
    model : TrainedNCF
    seen_player_idx, seen_slot_idx : np.ndarray, shape (s,)
        Pairs to exclude (what the player already played).
    n : int
        List length; fewer candidates than ``n`` leave ``-1`` slots with ``-inf`` scores.
    prefilter : int
        Candidates per player kept from the GMF ranking for the full model to re-rank.
    progress : callable, optional
        Called with the number of players finished after each block.

    Returns
    -------
    slots : np.ndarray, shape (n_players, n), int64
    scores : np.ndarray, shape (n_players, n), float32 (logits, best first)
    """
    n_players, n_slots = model.n_users, model.n_items
    n = min(n, n_slots)
    keep = min(max(prefilter, n), n_slots)
    seen = ObservedPairs(seen_player_idx, seen_slot_idx, n_slots)
    seen_users = seen.keys // n_slots
    w = model.weights
    has_gmf = "user_gmf.weight" in w
    h = w["predict.weight"][0]
    n_gmf = w["user_gmf.weight"].shape[1] if has_gmf else 0
    bias = w["item_bias.weight"][:, 0] if "item_bias.weight" in w else np.zeros(n_slots, dtype=np.float32)
    has_mlp = "user_mlp.weight" in w
    layers = mlp_layer_names(w)
    if has_mlp and layers:
        half = w["user_mlp.weight"].shape[1]
        first = w[f"{layers[0]}.weight"]
        slot_first = w["item_mlp.weight"] @ first[:, half:].T + w[f"{layers[0]}.bias"]  # (n_slots, width)
    elif has_mlp:  # a tower without hidden layers: the predict layer sees [p; q] itself
        half = w["user_mlp.weight"].shape[1]
        slot_mlp = w["item_mlp.weight"] @ h[n_gmf + half :]
    out_slots = np.full((n_players, n), -1, dtype=np.int64)
    out_scores = np.full((n_players, n), -np.inf, dtype=np.float32)
    for start in range(0, n_players, block):
        users = np.arange(start, min(start + block, n_players))
        # GMF part of the logit plus the slot bias, for the whole catalogue.
        if has_gmf:
            coarse = (w["user_gmf.weight"][users] * h[:n_gmf]) @ w["item_gmf.weight"].T + bias
        else:
            coarse = np.tile(bias, (users.shape[0], 1))
        # Mask what each player has played.
        lo = np.searchsorted(seen_users, users, side="left")
        hi = np.searchsorted(seen_users, users, side="right")
        lengths = hi - lo
        rows = np.repeat(np.arange(users.shape[0]), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        coarse[rows, seen.keys[np.repeat(lo, lengths) + offsets] % n_slots] = -np.inf
        if keep < n_slots:
            candidates = np.argpartition(-coarse, keep - 1, axis=1)[:, :keep]
        else:
            candidates = np.broadcast_to(np.arange(n_slots), (users.shape[0], n_slots)).copy()
        fine = np.take_along_axis(coarse, candidates, axis=1)  # -inf where played
        fine += w["predict.bias"][0]
        if "user_bias.weight" in w:
            fine += w["user_bias.weight"][users]
        if has_mlp and layers:
            x = np.maximum((w["user_mlp.weight"][users] @ first[:, :half].T)[:, None, :] + slot_first[candidates], 0.0)
            for name in layers[1:]:
                x = np.maximum(x @ w[f"{name}.weight"].T + w[f"{name}.bias"], 0.0)
            fine += x @ h[n_gmf:]
        elif has_mlp:
            fine += (w["user_mlp.weight"][users] @ h[n_gmf : n_gmf + half])[:, None] + slot_mlp[candidates]
        best = np.argsort(-fine, axis=1, kind="stable")[:, :n]
        chosen = np.take_along_axis(candidates, best, axis=1)
        chosen_scores = np.take_along_axis(fine, best, axis=1)
        chosen[chosen_scores == -np.inf] = -1
        out_slots[users] = chosen
        out_scores[users] = chosen_scores
        if progress is not None:
            progress(users.shape[0])
    return out_slots, out_scores
