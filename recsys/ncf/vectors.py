"""Item ("slot") vectors for similarity search, taken from a trained NCF model.

NeuMF keeps two item embeddings, one per tower, so "the" item vector is a choice:

- ``gmf``: the GMF embedding ``q_i``.
- ``gmf_h``: ``q_i * h`` with ``h`` the GMF part of the predict layer. GMF's logit is
  ``sum_f h_f p_uf q_if``, so ``q_i * h`` is the item's direction in the space the score is
  actually computed in; dimensions the predict layer ignores (h_f near 0) stop counting. With the
  default training (GMF with ``h`` fixed to ones, no fine-tuning after fusion) ``h`` is uniform and
  this equals ``gmf``.
- ``mlp``: the MLP embedding ``q'_i``.
- ``mlp_proj``: ``W_i q'_i``, the item's share of the MLP's first layer (``W [p; q] = W_u p + W_i q``):
  what the tower actually sees of the item.
- ``concat``: ``[q_i / |q_i| ; q'_i / |q'_i|]``, each part normalised so neither tower dominates.
- ``concat_h``: ``gmf_h`` and ``mlp_proj`` normalised and concatenated.

Every kind is returned L2-normalised, so inner product is cosine similarity (FAISS ``IndexFlatIP``).
``bench/bench_similarity.py`` measures the kinds two ways. On ML-1M (is a user's next item in the
top 10 of the previous one?) ``concat`` did best of the kinds by a little (0.108, or 0.130 among
unseen items, against 0.104 / 0.113 for ``gmf``). On a synthetic casino (the share of a slot's 10
nearest slots in its latent cluster, random 0.105) ``gmf`` did best by a lot: 0.816 against 0.793
for ``concat_h``, 0.767 for ``concat`` and 0.582 for ``mlp``; so ``gmf`` is the best model vector
(``RECSYS_SIMILARITY_VECTOR=gmf``). Item-kNN co-occurrence beat every kind on both (0.117 / 0.151 and
0.922) with players as free rows; with players built from their slots (``NCFConfig.user_history``)
the ``gmf`` vectors beat it on the demo casino (0.850 / 0.834 against 0.797 / 0.747, two seeds,
``bench/bench_casino_quality.py``) but not on ML-1M (0.090 against 0.117, the worker's model; every
other kind of that model is below item-kNN there too, docs/training.md). So the worker's default is
``cooc``, co-occurrence vectors of the training pairs (``recsys.baselines.spectral_item_vectors``),
which match or beat item-kNN on both.
"""

from __future__ import annotations

import numpy as np

from recsys.ncf.scoring import TrainedNCF

VECTOR_KINDS = ("gmf", "gmf_h", "mlp", "mlp_proj", "concat", "concat_h")


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def item_vectors(trained: TrainedNCF, kind: str = "gmf") -> np.ndarray:
    """Unit-norm item vectors of one kind.

    Parameters
    ----------
    trained : TrainedNCF
    kind : str
        One of :data:`VECTOR_KINDS`; the GMF kinds need a GMF tower, the MLP kinds an MLP tower.

    Returns
    -------
    np.ndarray, shape (n_items, d), float32, rows of norm 1 (or 0 for an all-zero embedding)
    """
    w = trained.weights
    has_gmf = "item_gmf.weight" in w
    has_mlp = "item_mlp.weight" in w
    needs_gmf = kind in ("gmf", "gmf_h", "concat", "concat_h")
    needs_mlp = kind in ("mlp", "mlp_proj", "concat", "concat_h")
    if kind not in VECTOR_KINDS:
        raise ValueError(f"unknown vector kind {kind!r}; expected one of {VECTOR_KINDS}")
    if (needs_gmf and not has_gmf) or (needs_mlp and not has_mlp):
        raise ValueError(f"vector kind {kind!r} needs a tower that a {trained.config.model} model lacks")

    def gmf_h() -> np.ndarray:
        n = w["item_gmf.weight"].shape[1]
        return w["item_gmf.weight"] * w["predict.weight"][0, :n]

    def mlp_proj() -> np.ndarray:
        if "mlp.0.weight" not in w:
            return w["item_mlp.weight"]
        half = w["item_mlp.weight"].shape[1]
        return w["item_mlp.weight"] @ w["mlp.0.weight"][:, half:].T

    if kind == "gmf":
        return normalize_rows(w["item_gmf.weight"])
    if kind == "gmf_h":
        return normalize_rows(gmf_h())
    if kind == "mlp":
        return normalize_rows(w["item_mlp.weight"])
    if kind == "mlp_proj":
        return normalize_rows(mlp_proj())
    if kind == "concat":
        parts = [normalize_rows(w["item_gmf.weight"]), normalize_rows(w["item_mlp.weight"])]
    else:
        parts = [normalize_rows(gmf_h()), normalize_rows(mlp_proj())]
    return normalize_rows(np.concatenate(parts, axis=1))


def usable_kind(trained: TrainedNCF, kind: str) -> str:
    """``kind`` if ``trained`` has the towers it needs, else the model's own tower (``gmf`` or ``mlp``).

    A GMF-only or MLP-only model has one item embedding, so every kind comes down to that one.
    """
    towers = {"gmf": "item_gmf.weight" in trained.weights, "mlp": "item_mlp.weight" in trained.weights}
    needs = ("gmf", "mlp") if kind in ("concat", "concat_h") else (kind.split("_")[0],)
    if all(towers[t] for t in needs):
        return kind
    return "gmf" if towers["gmf"] else "mlp"


def most_similar(vectors: np.ndarray, item_idx: np.ndarray, k: int = 10) -> np.ndarray:
    """The k items with the highest cosine to each query item, the query itself excluded.

    Parameters
    ----------
    vectors : np.ndarray, shape (n_items, d)
        Unit-norm rows (from :func:`item_vectors`).
    item_idx : np.ndarray, shape (q,)
    k : int

    Returns
    -------
    np.ndarray, shape (q, k), int64, most similar first
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    sims = vectors[item_idx] @ vectors.T
    sims[np.arange(item_idx.shape[0]), item_idx] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
