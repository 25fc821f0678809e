"""Run by tests/ncf/test_distributed.py under torchrun: train on the planted data, save each rank's weights.

``python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.ncf.ddp_train OUT_DIR``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from recsys.ncf import distributed
from recsys.ncf.training import train
from tests.ncf.conftest import make_planted
from tests.ncf.test_distributed import CONFIG


def main(out: Path) -> None:
    assert distributed.init_from_env(), "run me under torchrun"
    planted = make_planted()
    model = train(CONFIG, planted.user_idx, planted.item_idx, planted.n_users, planted.n_items)
    np.savez(out / f"rank{distributed.rank()}.npz", **model.weights)
    if distributed.is_leader():
        (out / "history.txt").write_text("\n".join(f"{s.stage} {s.epoch} {s.loss} {s.samples}" for s in model.history))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
