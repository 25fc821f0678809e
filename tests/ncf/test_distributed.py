"""DDP training under torchrun (2 processes, gloo): the same steps, the same weights, the same quality."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from recsys.evaluation import evaluate_sampled
from recsys.ncf.config import NCFConfig
from recsys.ncf.scoring import TrainedNCF
from recsys.ncf.training import train
from tests.ncf.test_cli_evaluate import run_direct, write_files

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]

# NeuMF with pre-training, every optimizer kind the stages use: SGD (GMF), SparseAdam (MLP), SGD + Adam.
CONFIG = NCFConfig(
    factors=16, mlp_layers=(32, 16, 8), negatives=4, batch_size=256, threads=2, seed=5,
    gmf_optimizer="sgd", gmf_lr=0.05, gmf_epochs=3, mlp_optimizer="adam", mlp_lr=0.01, mlp_epochs=3,
    finetune_optimizer="sgd", finetune_lr=0.01, finetune_epochs=2, init_std=0.1,
)


# Early stopping under DDP: a scripted judge (best epoch 2, stop after 4), seen by the leader only.
KEEP_BEST = CONFIG.replace(model="gmf", gmf_epochs=8, patience=2)


def scripted_scores():
    scores = iter([0.2, 0.6, 0.5, 0.4, 0.9, 0.9, 0.9, 0.9])
    return lambda model: next(scores)


def torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TORCHRUN, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory) -> Path:
    """One torchrun launch training both the plain and the keep-best runs (``plain/``, ``keep_best/``)."""
    out = tmp_path_factory.mktemp("ddp")
    done = torchrun(["-m", "tests.ncf.ddp_train", str(out), "plain,keep_best"], out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_two_processes_take_the_single_process_steps(ddp_runs, planted) -> None:
    tmp_path = ddp_runs / "plain"
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    single = train(CONFIG, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)

    assert ranks[0].keys() == ranks[1].keys() == single.weights.keys()
    for name in single.weights:
        # Replicas stay identical; each equals the one-process model up to the order of float sums.
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        np.testing.assert_allclose(ranks[0][name], single.weights[name], rtol=1e-3, atol=1e-4, err_msg=name)
    history = (tmp_path / "history.txt").read_text().splitlines()
    assert [line.split()[0] for line in history] == ["gmf"] * 3 + ["mlp"] * 3 + ["neumf"] * 2
    assert all(int(line.split()[3]) == 5 * planted.user_idx.size for line in history)

    def hr(weights):
        model = TrainedNCF(CONFIG, weights)
        cases = (planted.test_user_idx, planted.test_item_idx, planted.negative_item_idx)
        return evaluate_sampled(model, *cases).hit_ratio

    assert abs(hr(ranks[0]) - hr(single.weights)) <= 0.01


def test_two_processes_keep_the_epoch_the_leader_picks(ddp_runs, planted) -> None:
    tmp_path = ddp_runs / "keep_best"
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in (0, 1)]
    history = (tmp_path / "history.txt").read_text().splitlines()
    assert [line.split()[:2] for line in history] == [["gmf", str(e)] for e in (1, 2, 3, 4)]
    single = train(KEEP_BEST, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items,
                   evaluate=scripted_scores(), keep_best=True)
    for name in single.weights:
        np.testing.assert_array_equal(ranks[0][name], ranks[1][name], err_msg=name)
        np.testing.assert_allclose(ranks[0][name], single.weights[name], rtol=1e-3, atol=1e-4, err_msg=name)


def test_recsys_evaluate_under_torchrun_reports_once_with_the_same_quality(
    tmp_path, planted, planted_factory, capsys
) -> None:
    files = write_files(tmp_path, planted_factory, with_negatives=True, data=planted)
    args = [*files, "--model", "gmf", "--epochs", "30", "--factors", "16", "--json"]
    code, out = run_direct([*args, "--threads", "1"], capsys)
    assert code == 0
    single = json.loads(out)

    done = torchrun(["-m", "recsys", "evaluate", *args, "--threads", "2"], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = done.stdout.splitlines()  # only rank 0 prints
    ddp = json.loads(line)
    assert (single["processes"], ddp["processes"]) == (1, 2)
    assert single["hr@10"] > 0.6  # popularity: ~0.2 on this data
    assert abs(ddp["hr@10"] - single["hr@10"]) <= 0.03
    assert abs(ddp["ndcg@10"] - single["ndcg@10"]) <= 0.03
