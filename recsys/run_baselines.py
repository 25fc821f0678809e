"""The baselines every training run measures on the model's own cases: popularity, item-kNN, EASE and
iALS (``recsys.metrics.BASELINES``), each fitted on the run's training pairs, EASE's penalty and
iALS's factors and regularisation chosen on the validation half."""

from __future__ import annotations

import logging

import numpy as np

from recsys.metrics import EASE as EASE_SPEC
from recsys.metrics import IALS as IALS_SPEC
from recsys.metrics import ITEMKNN, POPULARITY, BaselineFigures

log = logging.getLogger("recsys.worker")

Cases = tuple[np.ndarray, np.ndarray, np.ndarray]


def measure_baselines(
    train_u: np.ndarray,
    train_i: np.ndarray,
    n_players: int,
    n_slots: int,
    test: Cases,
    validation: Cases | None,
    *,
    ials: bool = True,
    seed: int = 0,
) -> dict[str, BaselineFigures]:
    """HR@10 / NDCG@10 of each baseline fitted on the training pairs and ranked on the ``test`` cases
    ``(player_idx, slot_idx, negatives)``, the model's own; by ``Baseline.key``, in ``BASELINES`` order.

    EASE's L2 penalty is the best of ``EASE_L2_GRID`` by HR@10 (then NDCG@10) on the ``validation``
    cases, or ``EASE_DEFAULT_L2`` without them; iALS's (factors, reg) likewise from its grids
    (:func:`recsys.baselines.ials_on_grid`), or ``IALS_DEFAULT``. Item-kNN keeps ``ItemKNN``'s
    defaults (50 neighbours, shrink 10), as measured on ML-1M. ``ials=False`` leaves iALS out.
    """
    from recsys.baselines import EASE, EASE_DEFAULT_L2, EASE_L2_GRID, ItemKNN, Popularity, ease_on_grid
    from recsys.evaluation import evaluate_sampled

    def judge(model) -> tuple[float, float]:
        picked = evaluate_sampled(model, *validation)
        return picked.hit_ratio, picked.ndcg

    figures: dict[str, BaselineFigures] = {}
    pop = evaluate_sampled(Popularity(train_u, train_i, n_slots), *test)
    figures[POPULARITY.key] = BaselineFigures(pop.hit_ratio, pop.ndcg)
    knn = ItemKNN(train_u, train_i, n_players, n_slots)
    ranked = evaluate_sampled(knn, *test)
    figures[ITEMKNN.key] = BaselineFigures(ranked.hit_ratio, ranked.ndcg)
    del knn  # an n_slots x n_slots matrix: free it before EASE makes its own
    if validation is None:
        ease = EASE(train_u, train_i, n_players, n_slots, l2=EASE_DEFAULT_L2)
        grid = {}
    else:
        ease, judged = ease_on_grid(train_u, train_i, n_players, n_slots, judge)
        grid = {f"{l2:g}": round(hr, 4) for l2, (hr, _) in judged.items()}
        if ease.l2 == max(EASE_L2_GRID):
            log.warning("EASE's best L2 penalty is the largest tried (%g): a larger one might do better", ease.l2)
    ranked = evaluate_sampled(ease, *test)
    figures[EASE_SPEC.key] = BaselineFigures(ranked.hit_ratio, ranked.ndcg, {"lambda": ease.l2}, grid)
    del ease
    if ials:
        figures[IALS_SPEC.key] = measure_ials(train_u, train_i, n_players, n_slots, test, validation, seed=seed)
    return figures


def measure_ials(
    train_u: np.ndarray,
    train_i: np.ndarray,
    n_players: int,
    n_slots: int,
    test: Cases,
    validation: Cases | None,
    *,
    seed: int = 0,
) -> BaselineFigures:
    """iALS's figures on the ``test`` cases, its (factors, reg) chosen on the ``validation`` cases."""
    from recsys.baselines import IALS, IALS_DEFAULT, IALS_FACTORS_GRID, IALS_REG_GRID, ials_on_grid
    from recsys.evaluation import evaluate_sampled

    if validation is None:
        model = IALS(train_u, train_i, n_players, n_slots, *IALS_DEFAULT, seed=seed)
        grid = {}
    else:

        def judge(candidate) -> tuple[float, float]:
            picked = evaluate_sampled(candidate, *validation)
            return picked.hit_ratio, picked.ndcg

        model, judged = ials_on_grid(train_u, train_i, n_players, n_slots, judge, seed=seed)
        grid = {f"{f}/{reg:g}": round(hr, 4) for (f, reg), (hr, _) in judged.items()}
        if model.factors in (min(IALS_FACTORS_GRID), max(IALS_FACTORS_GRID)) or model.reg in (
            min(IALS_REG_GRID), max(IALS_REG_GRID)):
            log.info("iALS's best setting (%d factors, reg %g) is at the edge of its grid", model.factors, model.reg)
    ranked = evaluate_sampled(model, *test)
    return BaselineFigures(ranked.hit_ratio, ranked.ndcg, {"factors": model.factors, "reg": model.reg}, grid)
