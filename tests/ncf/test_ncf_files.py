"""The NCF file readers: valid files parse, malformed ones name the file, row and field."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.ncf_files import read_negatives, read_ratings


def test_reads_ratings(tmp_path) -> None:
    path = tmp_path / "train.rating"
    path.write_text("0\t3\t5\t978300760\n1\t0\t1\t0\n")
    ratings = read_ratings(path)
    assert ratings.user_idx.tolist() == [0, 1]
    assert ratings.item_idx.tolist() == [3, 0]
    assert ratings.rating.tolist() == [5, 1]
    assert ratings.timestamp.dtype == np.int64


@pytest.mark.parametrize(
    ("content", "row", "field", "fragment"),
    [
        ("0\t1\t5\t9\n0\t2\t5\n", 2, None, "4 tab-separated fields, got 3"),
        ("0\t1\t5\t9\n0\t2\t5\t9\t7\n", 2, None, "got 5"),
        ("0\t1\t5\t9\n0\t1\t5\t9\nx\t2\t5\t9\n", 3, "user", "expected an integer"),
        ("0\t1\t5\t9\n0\t-2\t5\t9\n", 2, "item", ">= 0"),
        ("0\t1\t5\t9\n\n0\t2\t5\t9\n", 2, None, "got 1"),
    ],
)
def test_malformed_ratings_name_the_row(tmp_path, content, row, field, fragment) -> None:
    path = tmp_path / "bad.rating"
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_ratings(path)
    assert caught.value.source == str(path)
    assert caught.value.row == row
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_missing_and_empty_files(tmp_path) -> None:
    with pytest.raises(InputError, match="file not found"):
        read_ratings(tmp_path / "nope")
    (tmp_path / "empty").write_text("")
    with pytest.raises(InputError, match="no rows"):
        read_ratings(tmp_path / "empty")


def test_reads_negatives(tmp_path) -> None:
    path = tmp_path / "test.negative"
    path.write_text("(0,5)\t1\t2\t3\n(1,7)\t4\t5\t6\n")
    negatives = read_negatives(path)
    assert negatives.user_idx.tolist() == [0, 1]
    assert negatives.item_idx.tolist() == [5, 7]
    assert negatives.negative_item_idx.tolist() == [[1, 2, 3], [4, 5, 6]]


@pytest.mark.parametrize(
    ("content", "row", "field"),
    [
        ("(0,5)\t1\t2\n0,5\t1\t2\n", 2, "pair"),
        ("(0,5)\t1\t2\n(1,5)\t1\tz\n", 2, "negative 2"),
        ("(0,5)\t1\t2\n(1,5)\t1\n", 2, None),
    ],
)
def test_malformed_negatives_name_the_row(tmp_path, content, row, field) -> None:
    path = tmp_path / "bad.negative"
    path.write_text(content)
    with pytest.raises(InputError) as caught:
        read_negatives(path)
    assert caught.value.row == row
    assert caught.value.field == field
