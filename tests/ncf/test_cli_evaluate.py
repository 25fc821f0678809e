"""``recsys evaluate`` end to end on tiny NCF-format files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


def write_files(tmp_path, make_planted, with_negatives: bool, data=None) -> list[str]:
    """The NCF files of ``data`` (default: a tiny planted set); returns the command-line arguments."""
    data = data or make_planted(n_users=60, n_items=120, per_user=12, seed=11)
    train = tmp_path / "train.rating"
    test = tmp_path / "test.rating"
    train.write_text("".join(f"{u}\t{i}\t1\t0\n" for u, i in zip(data.user_idx, data.item_idx, strict=True)))
    test.write_text("".join(f"{u}\t{i}\t1\t0\n" for u, i in zip(data.test_user_idx, data.test_item_idx, strict=True)))
    args = ["--train", str(train), "--test", str(test)]
    if with_negatives:
        negatives = tmp_path / "test.negative"
        negatives.write_text("".join(
            f"({u},{i})\t" + "\t".join(map(str, row)) + "\n"
            for u, i, row in zip(data.test_user_idx, data.test_item_idx, data.negative_item_idx, strict=True)
        ))
        args += ["--negatives", str(negatives)]
    return args


def run_cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "recsys", "evaluate", *args], capture_output=True, text=True,
                          timeout=120)


def run_direct(args: list[str], capsys) -> tuple[int, str]:
    """Call the command's handler in-process (no Settings needed)."""
    import argparse

    from recsys.cli import evaluate

    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers())
    parsed = parser.parse_args(["evaluate", *args])
    code = parsed.func(parsed, None)
    return code, capsys.readouterr().out


@pytest.mark.parametrize("model", ["gmf", "pop", "itemknn"])
def test_json_output_has_the_keys(tmp_path, planted_factory, capsys, model: str) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    code, out = run_direct([*args, "--model", model, "--json", "--epochs", "2", "--factors", "8"], capsys)
    assert code == 0
    result = json.loads(out)
    assert {"hr@10", "ndcg@10", "seconds", "epochs", "model"} <= result.keys()
    assert result["model"] == model
    assert 0.0 <= result["ndcg@10"] <= result["hr@10"] <= 1.0
    assert result["epochs"] == (2 if model == "gmf" else 0)


def test_neumf_via_python_m_recsys_without_negatives(tmp_path, planted_factory) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=False)
    done = run_cli([*args, "--model", "neumf", "--json", "--epochs", "1", "--gmf-epochs", "1", "--mlp-epochs", "1",
                    "--factors", "8", "--threads", "1"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "neumf" and result["epochs"] == 1 and result["pretrain_epochs"] == 2
    assert result["negatives_per_case"] == 99


def test_bad_file_is_a_one_line_error(tmp_path, planted_factory) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=False)
    train = Path(args[1])
    train.write_text(train.read_text() + "3\tseven\t1\t0\n")
    done = run_cli([*args, "--model", "pop"])
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "train.rating, row" in done.stderr and "field 'item'" in done.stderr


def test_bad_file_raises_input_error_in_process(tmp_path, planted_factory, capsys) -> None:
    from recsys.errors import InputError

    args = write_files(tmp_path, planted_factory, with_negatives=True)
    negatives = Path(args[5])
    lines = negatives.read_text().splitlines()
    lines[4] = "(999,1)\t" + lines[4].split("\t", 1)[1]
    negatives.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught:
        run_direct([*args, "--model", "pop"], capsys)
    assert caught.value.row == 5


def test_text_output(tmp_path, planted_factory, capsys) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    code, out = run_direct([*args, "--model", "pop", "--full"], capsys)
    assert code == 0
    assert out.startswith("pop: HR@10 ")
    assert "full catalogue" in out
    assert np.isfinite(float(out.split()[2]))
