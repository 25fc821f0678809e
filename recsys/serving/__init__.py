"""The serving domain: what an API process holds in memory and how it makes a list. No HTTP here.

- ``state``: the snapshot (catalogue, counts, the version in memory) and the thread that keeps it
  fresh;
- ``gate``: player protection, first and fail-closed;
- ``catalogue``: the catalogue and its statistics as arrays by slot key;
- ``model``: the version in memory (FAISS index, provisional rows for new slots, a player's logits);
- ``candidates`` and ``ranking``: the recommendation policy, pure (arrays in, arrays out);
- ``lists``: the one flow that makes, logs and counts every list (its two statements run on the
  event loop for ``GET .../recommendations``, or on a blocking connection; the long-session trigger,
  ``recsys.tracker``, runs it inside its own flow: :func:`~recsys.serving.lists.list_flow`);
- ``similar``: similar slots, from the index or from pgvector;
- ``itemknn``: the item-kNN neighbours an experiment's ``itemknn`` arm ranks with (pure, built
  off the request path and kept in the snapshot);
- ``delivery``: what a stream may show of a stored triggered list, checked again at delivery.

``api/`` calls in; this package calls ``recsys.db``, which returns rows and arrays. The pure
modules (``gate``, ``catalogue``, ``model``, ``candidates``, ``ranking``) import no database code
(the import contracts in pyproject.toml).
"""
