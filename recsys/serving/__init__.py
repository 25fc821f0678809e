"""The serving domain: what an API process holds in memory and how it makes a list. No HTTP here.

- ``state``: the snapshot (catalogue, counts, the version in memory) and the thread that keeps it
  fresh;
- ``gate``: player protection, first and fail-closed;
- ``catalogue``: the catalogue and its statistics as arrays by slot key;
- ``model``: the version in memory (FAISS index, provisional rows for new slots, a player's logits);
- ``candidates`` and ``ranking``: the recommendation policy, pure (arrays in, arrays out);
- ``lists``: the one coroutine that makes, logs and counts every list (its two statements awaited on
  the event loop: ``GET .../recommendations`` on a connection of its own, the long-session trigger,
  ``recsys.tracker``, inside the events transaction: :func:`~recsys.serving.lists.make_list`);
- ``similar``: similar slots, from the index or from pgvector;
- ``itemknn``: the item-kNN neighbours an experiment's ``itemknn`` arm ranks with (pure, built
  off the request path and kept in the snapshot);
- ``delivery``: what a stream may show of a stored triggered list, checked again at delivery.

``api/`` calls in; this package calls ``recsys.db``, which returns rows and arrays. The pure
modules (``gate``, ``catalogue``, ``model``, ``candidates``, ``ranking``) import no database code
(the import contracts in pyproject.toml).
"""
