"""Readers for the NCF paper's data files (He et al. 2017, github.com/hexiangnan/neural_collaborative_filtering).

- ratings (``*.train.rating``, ``*.test.rating``): ``user\\titem\\trating\\ttimestamp`` per line,
  0-based integer ids;
- negatives (``*.test.negative``): ``(user,item)\\tneg1\\t...\\tnegM`` per line.

Every problem becomes an :class:`recsys.errors.InputError` naming the file, the 1-based line and
the field; a valid file is parsed by pandas' C reader, and only a file that fails it is re-read
line by line to say where.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.errors import InputError

RATING_FIELDS = ("user", "item", "rating", "timestamp")
_PAIR = re.compile(r"^\((-?\d+),(-?\d+)\)$")


@dataclass(frozen=True)
class Ratings:
    """The rows of a ratings file, each array of shape (n,), int64."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.user_idx.shape[0])


@dataclass(frozen=True)
class Negatives:
    """The rows of a negatives file: ``user_idx``, ``item_idx`` shape (n,), ``negative_item_idx`` (n, m)."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    negative_item_idx: np.ndarray


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(str(path), "file not found") from exc
    except UnicodeDecodeError as exc:
        raise InputError(str(path), f"not UTF-8 text ({exc.reason})") from exc
    except OSError as exc:
        raise InputError(str(path), f"cannot read: {exc.strerror}") from exc


def _parse_int(source: str, text: str, row: int, field: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InputError(source, f"expected an integer, got {text!r}", row=row, field=field) from None
    if value < 0 and field != "rating":
        raise InputError(source, f"must be >= 0, got {value}", row=row, field=field)
    return value


def _locate_ratings_error(source: str, text: str) -> InputError:
    for row, line in enumerate(text.splitlines(), start=1):
        parts = line.rstrip("\r").split("\t")
        if len(parts) != len(RATING_FIELDS):
            return InputError(
                source, f"expected {len(RATING_FIELDS)} tab-separated fields, got {len(parts)}", row=row
            )
        for name, part in zip(RATING_FIELDS, parts, strict=True):
            _parse_int(source, part, row, name)
    return InputError(source, "not a ratings file (user, item, rating, timestamp per line)")


def read_ratings(path: str | Path) -> Ratings:
    """Read a ``user\\titem\\trating\\ttimestamp`` file.

    Raises
    ------
    InputError
        Missing or unreadable file, no rows, a line without exactly 4 integer fields, or a negative id.
    """
    path = Path(path)
    source = str(path)
    text = _read_text(path)
    if not text.strip():
        raise InputError(source, "no rows")
    try:
        frame = pd.read_csv(
            path, sep="\t", header=None, names=list(RATING_FIELDS), dtype=np.int64,
            engine="c", skip_blank_lines=False,
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise _locate_ratings_error(source, text) from exc
    if frame.isna().to_numpy().any() or len(frame) != len(text.splitlines()):
        raise _locate_ratings_error(source, text)
    for name in ("user", "item", "timestamp"):
        bad = np.flatnonzero(frame[name].to_numpy() < 0)
        if bad.size:
            raise InputError(source, f"must be >= 0, got {frame[name].iat[bad[0]]}", row=int(bad[0]) + 1, field=name)
    return Ratings(*(frame[name].to_numpy(dtype=np.int64) for name in RATING_FIELDS))


def read_negatives(path: str | Path) -> Negatives:
    """Read a ``(user,item)\\tneg1\\t...\\tnegM`` file; every line must have the same M >= 1.

    Raises
    ------
    InputError
        Missing file, no rows, a malformed ``(user,item)`` head, a non-integer or negative id, or a
        line with a different number of negatives than the first.
    """
    path = Path(path)
    source = str(path)
    lines = _read_text(path).splitlines()
    if not lines or not any(line.strip() for line in lines):
        raise InputError(source, "no rows")
    users, items, negatives = [], [], []
    width = None
    for row, line in enumerate(lines, start=1):
        parts = line.rstrip("\r").split("\t")
        head = _PAIR.match(parts[0].strip())
        if head is None:
            raise InputError(source, f"expected '(user,item)', got {parts[0]!r}", row=row, field="pair")
        users.append(_parse_int(source, head.group(1), row, "user"))
        items.append(_parse_int(source, head.group(2), row, "item"))
        negs = [_parse_int(source, p, row, f"negative {k}") for k, p in enumerate(parts[1:], start=1)]
        if width is None:
            if not negs:
                raise InputError(source, "no negatives after the (user,item) pair", row=row)
            width = len(negs)
        elif len(negs) != width:
            raise InputError(source, f"expected {width} negatives like line 1, got {len(negs)}", row=row)
        negatives.append(negs)
    return Negatives(
        np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64), np.asarray(negatives, dtype=np.int64)
    )
