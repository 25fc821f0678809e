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


@pytest.mark.parametrize("model", ["gmf", "pop", "itemknn", "ease"])
def test_json_output_has_the_keys(tmp_path, planted_factory, capsys, model: str) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    code, out = run_direct([*args, "--model", model, "--json", "--epochs", "2", "--factors", "8"], capsys)
    assert code == 0
    result = json.loads(out)
    assert {"hr@10", "ndcg@10", "seconds", "epochs", "model"} <= result.keys()
    assert result["model"] == model
    assert 0.0 <= result["ndcg@10"] <= result["hr@10"] <= 1.0
    assert result["epochs"] == ({"gmf": {"trained": 2, "kept": 2}} if model == "gmf" else {})


def test_neumf_via_python_m_recsys_without_negatives(tmp_path, planted_factory) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=False)
    done = run_cli([*args, "--model", "neumf", "--json", "--epochs", "1", "--gmf-epochs", "1", "--mlp-epochs", "1",
                    "--factors", "8", "--threads", "1"])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "neumf" and result["pretrain_epochs"] == 2
    assert result["epochs"] == {stage: {"trained": 1, "kept": 1} for stage in ("gmf", "mlp", "neumf")}
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


def test_a_pretrained_neumf_reports_the_epochs_of_each_stage(tmp_path, planted_factory, capsys) -> None:
    # The default NeuMF fuses the pre-trained towers without fine-tuning: its own stage trains 0 epochs.
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    code, out = run_direct([*args, "--model", "neumf", "--json", "--gmf-epochs", "2", "--mlp-epochs", "3",
                            "--factors", "8", "--threads", "1"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["epochs"] == {"gmf": {"trained": 2, "kept": 2}, "mlp": {"trained": 3, "kept": 3},
                                "neumf": {"trained": 0, "kept": 0}}
    assert result["pretrain_epochs"] == 5


def test_kept_epochs_follow_the_best_validation_hit_ratio() -> None:
    from recsys.cli.evaluate import stage_epochs
    from recsys.ncf.config import NCFConfig
    from recsys.ncf.history import EpochStats

    def epoch(stage, n, hr):
        return EpochStats(stage, n, 3, 0.5, 1.0, 100, hr)

    history = [epoch("gmf", 1, 0.5), epoch("gmf", 2, 0.7), epoch("gmf", 3, 0.7), epoch("mlp", 1, 0.4),
               epoch("mlp", 2, 0.3)]
    config = NCFConfig(model="neumf", pretrain=True)
    assert stage_epochs(config, history, keep_best=True) == {
        "gmf": {"trained": 3, "kept": 2}, "mlp": {"trained": 2, "kept": 1}, "neumf": {"trained": 0, "kept": 0}
    }
    assert stage_epochs(config, history)["gmf"] == {"trained": 3, "kept": 3}
    assert stage_epochs(NCFConfig(model="gmf"), history[:2]) == {"gmf": {"trained": 2, "kept": 2}}


def test_ease_chooses_its_lambda_on_held_out_training_pairs(tmp_path, planted_factory, capsys) -> None:
    from recsys.baselines import EASE, EASE_L2_GRID, ease_on_grid
    from recsys.evaluation import evaluate_sampled, hold_out_one_per_user, sample_test_negatives

    data = planted_factory(n_users=80, n_items=150, per_user=12, seed=12)
    args = write_files(tmp_path, planted_factory, with_negatives=True, data=data)
    code, out = run_direct([*args, "--model", "ease", "--json", "--seed", "3"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["ease_lambda"] in EASE_L2_GRID
    assert result["ease_lambda_chosen_on"] == "validation: 80 training pairs held out"
    assert set(result["ease_lambda_grid"]) <= {f"{v:g}" for v in EASE_L2_GRID}

    # The same choice made by hand on the held-out pairs alone, then the test figures of the refit.
    n_items = data.n_items
    rest_u, rest_i, held_u, held_i = hold_out_one_per_user(data.user_idx, data.item_idx, n_items, 3)
    negatives = sample_test_negatives(np.concatenate([data.user_idx, data.test_user_idx]),
                                      np.concatenate([data.item_idx, data.test_item_idx]), held_u, held_i,
                                      n_items, 99, 3)

    def judge(model):
        ranked = evaluate_sampled(model, held_u, held_i, negatives)
        return ranked.hit_ratio, ranked.ndcg

    picked, _ = ease_on_grid(rest_u, rest_i, data.n_users, n_items, judge)
    assert result["ease_lambda"] == picked.l2
    refit = EASE(data.user_idx, data.item_idx, data.n_users, n_items, l2=picked.l2)
    expected = evaluate_sampled(refit, data.test_user_idx, data.test_item_idx, data.negative_item_idx)
    assert result["hr@10"] == round(expected.hit_ratio, 4) and result["ndcg@10"] == round(expected.ndcg, 4)
    assert result["hr@10"] > 0.8  # planted clusters: EASE finds them

    code, out = run_direct([*args, "--model", "ease", "--ease-lambda", "77"], capsys)
    assert code == 0 and "lambda 77 (command line)" in out


def test_ials_chooses_its_factors_and_regularisation_on_held_out_training_pairs(tmp_path, planted_factory,
                                                                               capsys) -> None:
    from recsys.baselines import IALS_FACTORS_GRID, IALS_REG_GRID

    data = planted_factory(n_users=80, n_items=150, per_user=12, seed=12)
    args = write_files(tmp_path, planted_factory, with_negatives=True, data=data)
    code, out = run_direct([*args, "--model", "ials", "--json", "--seed", "3"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["ials_chosen_on"] == "validation: 80 training pairs held out"
    # The factors at the middle penalty, then the penalties at the best factors: 5 settings tried.
    assert len(result["ials_grid"]) == len(IALS_FACTORS_GRID) + len(IALS_REG_GRID) - 1
    chosen = f"{result['ials_factors']}/{result['ials_reg']:g}"
    assert result["ials_grid"][chosen] == max(result["ials_grid"].values())
    assert result["hr@10"] > 0.8  # planted clusters: iALS finds them
    code, out = run_direct([*args, "--model", "ials", "--seed", "3"], capsys)
    assert code == 0 and f"{result['ials_factors']} factors, reg {result['ials_reg']:g} (validation" in out


def test_ease_lambda_must_be_positive(tmp_path, planted_factory, capsys) -> None:
    from recsys.errors import InputError

    args = write_files(tmp_path, planted_factory, with_negatives=True)
    with pytest.raises(InputError, match="--ease-lambda must be positive"):
        run_direct([*args, "--model", "ease", "--ease-lambda", "0"], capsys)


def test_one_training_pair_per_user_is_held_out() -> None:
    from recsys.evaluation import hold_out_one_per_user

    users = np.array([0, 0, 0, 1, 2, 2, 2, 2, 3, 3])
    items = np.array([5, 6, 7, 1, 1, 2, 3, 3, 4, 9])  # (2, 3) twice; user 1 has a single pair
    rest_u, rest_i, held_u, held_i = hold_out_one_per_user(users, items, 10, seed=0)
    assert held_u.tolist() == [0, 2, 3]  # user 1 keeps its only pair
    held = set(zip(held_u.tolist(), held_i.tolist(), strict=True))
    rest = set(zip(rest_u.tolist(), rest_i.tolist(), strict=True))
    assert not held & rest
    assert held | rest == set(zip(users.tolist(), items.tolist(), strict=True))
    assert len(rest_u) == 6  # 9 distinct pairs (the duplicate counts once), 3 held out
    draws = {tuple(hold_out_one_per_user(users, items, 10, seed=s)[3].tolist()) for s in range(20)}
    assert len(draws) > 1  # the held-out pair is random, not always the first


def test_user_history_and_set_reach_the_trained_config(tmp_path, planted_factory, capsys) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    code, out = run_direct([*args, "--model", "gmf", "--json", "--epochs", "2", "--factors", "8", "--threads", "1",
                            "--user-history", "only", "--history-alpha", "1.0", "--set", "gmf_lr=0.02",
                            "--set", "negatives=3", "--set", "item_bias=false"], capsys)
    assert code == 0
    config = json.loads(out)["config"]
    assert (config["user_history"], config["history_alpha"], config["gmf_lr"]) == ("only", 1.0, 0.02)
    assert (config["negatives"], config["item_bias"], config["factors"], config["gmf_epochs"]) == (3, False, 8, 2)


def test_the_worker_preset_is_the_model_recsys_train_trains(tmp_path, planted_factory, capsys) -> None:
    from recsys.settings import Settings
    from recsys.worker import ncf_config

    args = write_files(tmp_path, planted_factory, with_negatives=True)
    import argparse

    from recsys.cli import evaluate

    parser = argparse.ArgumentParser()
    evaluate.register(parser.add_subparsers())
    parsed = parser.parse_args(["evaluate", *args, "--preset", "worker", "--json", "--gmf-epochs", "1",
                                "--mlp-epochs", "1", "--threads", "1", "--seed", "4"])
    settings = Settings()
    assert parsed.func(parsed, settings) == 0
    result = json.loads(capsys.readouterr().out)
    n_pairs = len(Path(args[1]).read_text().splitlines())
    expected = ncf_config(settings.training, n_pairs).replace(seed=4, threads=1, gmf_epochs=1, mlp_epochs=1).to_dict()
    assert result["config"] == expected
    assert result["config"]["user_history"] == settings.training.user_history
    assert result["epochs"] == {"gmf": {"trained": 1, "kept": 1}, "mlp": {"trained": 1, "kept": 1},
                                "neumf": {"trained": 0, "kept": 0}}


def test_set_values_are_read_as_their_fields_types() -> None:
    from recsys.cli.evaluate import parse_overrides

    assert parse_overrides(["lr=0.5", "mlp_layers=16,8", "pretrain=False", "patience=none", "factors= 12",
                            "user_history=add"]) == {
        "lr": 0.5, "mlp_layers": (16, 8), "pretrain": False, "patience": None, "factors": 12, "user_history": "add"
    }
    assert parse_overrides(["patience=3"]) == {"patience": 3}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nosuch=1", "expected FIELD=VALUE with FIELD an NCFConfig field, got 'nosuch=1'"),
        ("lr", "expected FIELD=VALUE with FIELD an NCFConfig field, got 'lr'"),
        ("extra=1", "expected FIELD=VALUE with FIELD an NCFConfig field, got 'extra=1'"),
        ("factors=many", "factors: invalid literal for int() with base 10: 'many'"),
        ("pretrain=yes", "pretrain: expected true or false, got 'yes'"),
        ("user_history=maybe", "user_history must be one of ('none', 'add', 'only'), not 'maybe'"),
    ],
)
def test_a_bad_set_is_a_one_line_error_naming_it(tmp_path, planted_factory, override: str, message: str) -> None:
    args = write_files(tmp_path, planted_factory, with_negatives=True)
    done = run_cli([*args, "--model", "gmf", "--set", override])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"recsys evaluate: error: command line, field '--set': {message}"
