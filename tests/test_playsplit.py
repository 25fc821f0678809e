"""``recsys split-plays`` (recsys/playsplit.py): leave-one-random-out test and validation cuts of play counts."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from recsys.errors import InputError
from recsys.ncf_files import read_negatives, read_ratings
from recsys.playsplit import read_plays, split_plays, write_split

# Users 10 (1 pair), 20 (2 pairs), 30 (3 pairs), 40 (6 pairs), ids out of order, over items 100..129.
ROWS = [(40, 105, 7), (10, 100, 3), (20, 101, 1), (30, 102, 9), (20, 103, 4), (30, 104, 2), (30, 100, 5)]
ROWS += [(40, 100 + k, 10 + k) for k in (6, 7, 8, 9, 29)]


def write_plays(path, rows=ROWS, header=True) -> None:
    lines = (["userID\tartistID\tweight"] if header else []) + [f"{u}\t{i}\t{c}" for u, i, c in rows]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())  # CRLF, as user_artists.dat


def pairs(user_idx, item_idx) -> set[tuple[int, int]]:
    return set(zip(user_idx.tolist(), item_idx.tolist(), strict=True))


def test_one_pair_per_user_held_out_with_never_played_negatives(tmp_path) -> None:
    write_plays(tmp_path / "plays.dat")
    plays = read_plays(tmp_path / "plays.dat")
    assert plays.user_id.tolist()[:3] == [40, 10, 20] and plays.count.tolist()[:3] == [7, 3, 1]
    split = split_plays(plays, seed=0, negatives=5)
    # Renumbered in id order: users 10, 20, 30, 40 -> 0..3; items 100..129 seen: 100..109 and 129.
    assert split.user_ids.tolist() == [10, 20, 30, 40]
    assert split.item_ids.tolist() == [*range(100, 110), 129]
    n_items = split.item_ids.shape[0]
    test, valid = split.test, split.valid

    # Test: one pair of every user with at least two (user 10 has one); valid: every user with two left.
    assert test.test_user_idx.tolist() == [1, 2, 3]
    assert valid.test_user_idx.tolist() == [2, 3]
    all_pairs = {(int(np.searchsorted(split.user_ids, u)), int(np.searchsorted(split.item_ids, i))) for u, i, _ in ROWS}
    held = pairs(test.test_user_idx, test.test_item_idx)
    trained = pairs(test.train_user_idx, test.train_item_idx)
    assert held | trained == all_pairs and not held & trained and len(trained) == len(ROWS) - 3
    validation = pairs(valid.test_user_idx, valid.test_item_idx)
    assert validation <= trained and not validation & held  # carved from the training pairs
    assert pairs(valid.train_user_idx, valid.train_item_idx) == trained - validation

    # Negatives: distinct items the user never played (held-out and validation items included).
    for cut in (test, valid):
        assert cut.negatives.shape == (cut.test_user_idx.shape[0], 5)
        for u, negs in zip(cut.test_user_idx.tolist(), cut.negatives.tolist(), strict=True):
            played = {i for uu, i in all_pairs if uu == u}
            assert len(set(negs)) == 5 and not set(negs) & played and max(negs) < n_items

    # Counts travel with their pairs.
    count = {(u, i): c for u, i, c in ROWS}
    for u, i, c in zip(test.test_user_idx, test.test_item_idx, test.test_count, strict=True):
        assert count[(int(split.user_ids[u]), int(split.item_ids[i]))] == c


def test_the_split_is_deterministic_per_seed(tmp_path) -> None:
    rows = [(u, i, 1 + (u * i) % 7) for u in range(40) for i in range(60) if (u + 3 * i) % 5 == 0]
    write_plays(tmp_path / "plays.dat", rows, header=False)
    plays = read_plays(tmp_path / "plays.dat")

    def files(seed: int, name: str) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in write_split(split_plays(plays, seed, 20), tmp_path / name)}

    first, again, other = files(3, "a"), files(3, "b"), files(4, "c")
    assert first == again
    assert first["plays.test.rating"] != other["plays.test.rating"]
    assert first["plays.valid.test.negative"] != other["plays.valid.test.negative"]
    assert sorted(first) == sorted(
        f"plays.{name}" for name in ("train.rating", "test.rating", "test.negative", "valid.train.rating",
                                     "valid.test.rating", "valid.test.negative", "users.tsv", "items.tsv")
    )
    assert not list((tmp_path / "a").glob("*.partial"))


def test_the_files_read_back_and_the_validation_cut_is_the_one_evaluate_uses_for_ease(tmp_path, capsys) -> None:
    from recsys.cli.evaluate import _run, register

    # 50 users in 10 taste groups over 150 items (99 negatives per case need more than 99 unplayed items).
    rows = [(u, i, 1 + u + i) for u in range(50) for i in range(150) if i % 10 == u % 10 or (i * u) % 37 == 1]
    write_plays(tmp_path / "plays.dat", rows)
    split = split_plays(read_plays(tmp_path / "plays.dat"), seed=5, negatives=99)
    write_split(split, tmp_path, "lf")
    train, test = read_ratings(tmp_path / "lf.train.rating"), read_ratings(tmp_path / "lf.test.rating")
    negatives = read_negatives(tmp_path / "lf.test.negative")
    assert train.user_idx.tolist() == split.test.train_user_idx.tolist()
    assert train.rating.tolist() == split.test.train_count.tolist() and set(train.timestamp.tolist()) == {0}
    assert negatives.negative_item_idx.tolist() == split.test.negatives.tolist()
    assert test.item_idx.tolist() == negatives.item_idx.tolist() == split.test.test_item_idx.tolist()

    import argparse

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    base = ["evaluate", "--train", str(tmp_path / "lf.train.rating"), "--test", str(tmp_path / "lf.test.rating"),
            "--negatives", str(tmp_path / "lf.test.negative"), "--model", "ease", "--json"]
    assert _run(parser.parse_args([*base, "--seed", "5"]), None) == 0
    chosen = json.loads(capsys.readouterr().out)
    # EASE's lambda on the validation files, each grid value by hand: the same figures.
    from recsys.baselines import EASE
    from recsys.evaluation import evaluate_sampled

    n_users, n_items = split.user_ids.shape[0], split.item_ids.shape[0]
    for l2, (hr, ndcg) in chosen["ease_lambda_grid"].items():
        model = EASE(split.valid.train_user_idx, split.valid.train_item_idx, n_users, n_items, l2=float(l2))
        ranked = evaluate_sampled(model, split.valid.test_user_idx, split.valid.test_item_idx, split.valid.negatives)
        assert [hr, ndcg] == [round(ranked.hit_ratio, 4), round(ranked.ndcg, 4)]
    held_out = split.valid.test_user_idx.shape[0]
    assert chosen["ease_lambda_chosen_on"] == f"validation: {held_out} training pairs held out"


@pytest.mark.parametrize(
    ("line", "message", "field"),
    [
        ("7\tx\t3", "expected an integer, got 'x'", "item"),
        ("7\t8\t0", "a play count must be at least 1, got 0", "count"),
        ("7\t8", "expected 3 tab-separated fields, got 2", None),
    ],
)
def test_a_bad_line_is_named(tmp_path, line: str, message: str, field: str | None) -> None:
    (tmp_path / "plays.dat").write_text("userID\tartistID\tweight\n1\t2\t3\n" + line + "\n")
    with pytest.raises(InputError) as caught:
        read_plays(tmp_path / "plays.dat")
    assert caught.value.row == 3 and caught.value.field == field and caught.value.message == message


def test_a_pair_given_twice_is_refused(tmp_path) -> None:
    write_plays(tmp_path / "plays.dat", [(1, 2, 3), (1, 5, 1), (1, 2, 4)])
    with pytest.raises(InputError, match="the \\(user, item\\) pair of row 2 is given again") as caught:
        read_plays(tmp_path / "plays.dat")
    assert caught.value.row == 4


def test_the_command_writes_the_files_and_refuses_bad_input_in_one_line(tmp_path) -> None:
    rows = [(u, i, 2) for u in range(30) for i in range(50) if (u + i) % 4 == 0]
    write_plays(tmp_path / "plays.dat", rows)
    command = [sys.executable, "-m", "recsys", "split-plays", str(tmp_path / "plays.dat"), "--out",
               str(tmp_path / "out"), "--seed", "1", "--negatives", "30", "--prefix", "lastfm"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{len(rows)} pairs of 30 users x 50 items (seed 1)" in done.stdout
    assert "test 30 pairs held out, validation 30 more, 30 negatives each" in done.stdout
    assert read_negatives(tmp_path / "out" / "lastfm.valid.test.negative").negative_item_idx.shape == (30, 30)

    (tmp_path / "bad.dat").write_text("1\t2\t3\n1\t2\t-1\n")
    done = subprocess.run([*command[:4], str(tmp_path / "bad.dat"), *command[5:]], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"recsys split-plays: error: {tmp_path / 'bad.dat'}, row 2, field 'count': a play count must be at least 1, "
        "got -1"
    )
