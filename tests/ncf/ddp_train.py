"""Run by tests/ncf/test_distributed.py under torchrun: train on the planted data, save each rank's weights.

``python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.ncf.ddp_train OUT_DIR [MODE,...]``

Each mode (``plain``, ``keep_best``) writes ``OUT_DIR/MODE/``; one launch runs several, so the tests pay
for torchrun's start (two processes importing torch, the rendezvous) once.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from recsys.ncf import distributed
from recsys.ncf.training import train
from tests.ncf.conftest import make_planted
from tests.ncf.test_distributed import CONFIG, KEEP_BEST, scripted_scores


def main(out: Path, modes: list[str]) -> None:
    assert distributed.init_from_env(), "run me under torchrun"
    planted = make_planted()
    for mode in modes:
        (out / mode).mkdir(exist_ok=True)
        run(out / mode, mode, planted)
    distributed.shutdown()


def run(out: Path, mode: str, planted) -> None:
    if mode == "keep_best":  # only the leader judges; every rank must keep the epoch it picks
        model = train(KEEP_BEST, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items,
                      evaluate=scripted_scores(), keep_best=True)
    else:
        model = train(CONFIG, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    np.savez(out / f"rank{distributed.rank()}.npz", **model.weights)
    if distributed.is_leader():
        (out / "history.txt").write_text("\n".join(f"{s.stage} {s.epoch} {s.loss} {s.samples}" for s in model.history))


if __name__ == "__main__":
    main(Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else "plain").split(","))
