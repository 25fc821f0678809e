"""Leave-one-random-out split of implicit play counts into the NCF files ``recsys evaluate`` reads.

The input is one ``user\\titem\\tcount`` line per (user, item) pair, ids being any integers, with an
optional header line: HetRec 2011's Last.fm ``user_artists.dat`` (``userID\\tartistID\\tweight``,
listening counts) is the case it was written for. Users and items are renumbered ``0..n-1`` in
order of their ids. Then, with one seed:

- **test**: one random pair of every user with at least two pairs is held out
  (``recsys.evaluation.hold_out_one_per_user``); the user's other pairs train. Each test pair gets
  ``negatives`` (99) distinct items the user never played (``sample_test_negatives``).
- **validation**: the same cut again inside the training pairs: one random training pair of every
  user with at least two of them, with its own negatives, again items the user never played (the
  test item included). Settings are chosen here; the test pairs choose nothing.

The validation cut is exactly the one ``recsys evaluate --model ease`` makes to choose EASE's penalty
when it is run on the test files with the same ``--seed``, so both choose on the same cases.

Files written to the output folder (``PREFIX`` is ``--prefix``, ``plays`` by default):

- ``PREFIX.train.rating``, ``PREFIX.test.rating``, ``PREFIX.test.negative``: the test split;
- ``PREFIX.valid.train.rating``, ``PREFIX.valid.test.rating``, ``PREFIX.valid.test.negative``: the
  validation split (its train file is the test split's train file minus the validation pairs);
- ``PREFIX.users.tsv``, ``PREFIX.items.tsv``: ``index\\tid`` of the renumbering.

A rating line is ``user\\titem\\tcount\\t0`` (no timestamps); a negative line ``(user,item)\\tn1...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys.errors import InputError

PLAY_FIELDS = ("user", "item", "count")


@dataclass(frozen=True)
class Plays:
    """The rows of a play-count file, each array of shape (n,), int64, ids as in the file."""

    user_id: np.ndarray
    item_id: np.ndarray
    count: np.ndarray


@dataclass(frozen=True)
class Cut:
    """One split: training pairs (with their counts), held-out cases and their negatives (shape (n, m))."""

    train_user_idx: np.ndarray
    train_item_idx: np.ndarray
    train_count: np.ndarray
    test_user_idx: np.ndarray
    test_item_idx: np.ndarray
    test_count: np.ndarray
    negatives: np.ndarray


@dataclass(frozen=True)
class PlaySplit:
    """The test cut, the validation cut carved from its training pairs, and the renumbering."""

    user_ids: np.ndarray
    """Shape (n_users,): the file's id of user index u."""
    item_ids: np.ndarray
    """Shape (n_items,): the file's id of item index i."""
    test: Cut
    valid: Cut


def read_plays(path: str | Path) -> Plays:
    """Read ``user\\titem\\tcount`` lines (tab-separated integers, CRLF allowed, an optional header).

    Raises
    ------
    InputError
        Missing or unreadable file, no rows, a line without 3 integer fields, a count below 1, or a
        (user, item) pair given twice; naming the 1-based line and the field.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(source, "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(source, f"cannot read: {exc}") from exc
    lines = text.splitlines()
    first = 0
    if lines and not lines[0].split("\t")[0].strip().lstrip("-").isdigit():
        first = 1  # a header such as userID\tartistID\tweight
    rows = []
    for row, line in enumerate(lines[first:], start=first + 1):
        if not line.strip():
            continue
        parts = line.rstrip("\r").split("\t")
        if len(parts) != len(PLAY_FIELDS):
            raise InputError(source, f"expected {len(PLAY_FIELDS)} tab-separated fields, got {len(parts)}", row=row)
        values = []
        for name, part in zip(PLAY_FIELDS, parts, strict=True):
            try:
                values.append(int(part))
            except ValueError:
                raise InputError(source, f"expected an integer, got {part!r}", row=row, field=name) from None
        if values[2] < 1:
            raise InputError(source, f"a play count must be at least 1, got {values[2]}", row=row, field="count")
        rows.append((row, *values))
    if not rows:
        raise InputError(source, "no rows")
    table = np.asarray(rows, dtype=np.int64)
    order = np.lexsort((table[:, 0], table[:, 2], table[:, 1]))
    pairs = table[order]
    twice = np.flatnonzero((pairs[1:, 1] == pairs[:-1, 1]) & (pairs[1:, 2] == pairs[:-1, 2]))
    if twice.size:
        first_row, again = int(pairs[twice[0], 0]), int(pairs[twice[0] + 1, 0])
        raise InputError(source, f"the (user, item) pair of row {first_row} is given again", row=again)
    return Plays(table[:, 1], table[:, 2], table[:, 3])


def split_plays(plays: Plays, seed: int = 0, negatives: int = 99) -> PlaySplit:
    """Renumber, hold out the test pairs, then the validation pairs, and draw their negatives.

    Deterministic for a given ``plays`` and ``seed``. A user with a single pair only trains; one
    with two pairs has a test case but no validation case.
    """
    from recsys.evaluation import hold_out_one_per_user, sample_test_negatives

    user_ids, user_idx = np.unique(plays.user_id, return_inverse=True)
    item_ids, item_idx = np.unique(plays.item_id, return_inverse=True)
    n_items = int(item_ids.shape[0])
    count_of = dict(zip((user_idx * n_items + item_idx).tolist(), plays.count.tolist(), strict=True))

    def cut(train_u: np.ndarray, train_i: np.ndarray) -> Cut:
        rest_u, rest_i, held_u, held_i = hold_out_one_per_user(train_u, train_i, n_items, seed)
        if held_u.size == 0:
            raise InputError("plays", "no user has two pairs to hold one out")
        try:
            negative_idx = sample_test_negatives(user_idx, item_idx, held_u, held_i, n_items, negatives, seed)
        except ValueError as exc:
            raise InputError("plays", f"cannot draw {negatives} never-played items per held-out pair: {exc}") from exc

        def counts(u: np.ndarray, i: np.ndarray) -> np.ndarray:
            return np.asarray([count_of[k] for k in (u * n_items + i).tolist()], dtype=np.int64)

        return Cut(rest_u, rest_i, counts(rest_u, rest_i), held_u, held_i, counts(held_u, held_i), negative_idx)

    test = cut(user_idx.astype(np.int64), item_idx.astype(np.int64))
    valid = cut(test.train_user_idx, test.train_item_idx)
    return PlaySplit(user_ids, item_ids, test, valid)


def write_split(split: PlaySplit, out_dir: str | Path, prefix: str = "plays") -> list[Path]:
    """Write the files listed in the module docstring; each appears whole or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts: dict[str, str] = {}
    for name, part in (("", split.test), (".valid", split.valid)):
        texts[f"{prefix}{name}.train.rating"] = _ratings(part.train_user_idx, part.train_item_idx, part.train_count)
        texts[f"{prefix}{name}.test.rating"] = _ratings(part.test_user_idx, part.test_item_idx, part.test_count)
        texts[f"{prefix}{name}.test.negative"] = "".join(
            f"({u},{i})\t" + "\t".join(map(str, negs)) + "\n"
            for u, i, negs in zip(part.test_user_idx.tolist(), part.test_item_idx.tolist(), part.negatives.tolist(),
                                  strict=True)
        )
    for name, ids in (("users", split.user_ids), ("items", split.item_ids)):
        texts[f"{prefix}.{name}.tsv"] = "".join(f"{k}\t{v}\n" for k, v in enumerate(ids.tolist()))
    written = []
    for name, text in texts.items():
        path = out / name
        partial = path.with_name(path.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written


def _ratings(user_idx: np.ndarray, item_idx: np.ndarray, count: np.ndarray) -> str:
    return "".join(
        f"{u}\t{i}\t{c}\t0\n" for u, i, c in zip(user_idx.tolist(), item_idx.tolist(), count.tolist(), strict=True)
    )
