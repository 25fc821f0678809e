"""The worker's per-epoch log line counts epochs within their stage, and the whole run beside it."""

from __future__ import annotations

from recsys.epoch_log import EpochLog as _EpochLog
from recsys.ncf.config import NCFConfig
from recsys.ncf.history import EpochStats


def test_the_mlp_first_epoch_is_epoch_one_of_its_stage():
    log = _EpochLog(NCFConfig(model="neumf", pretrain=True, gmf_epochs=6, mlp_epochs=6, finetune_epochs=0))
    assert log.total == 12
    lines = []
    for stage in ("gmf", "mlp"):
        for epoch in range(1, 7):
            log.done += 1
            lines.append(log.line(EpochStats(stage, epoch, 6, 0.25, 2.0, 1000, 0.5), eta=10.0))
    assert lines[6] == (
        "epoch 1/6 (mlp; 7/12 of the run): loss 0.2500 HR@10 0.500, 500 samples/s, ETA 10 s"
    )
    assert lines[-1].startswith("epoch 6/6 (mlp; 12/12 of the run)")
    assert lines[0].startswith("epoch 1/6 (gmf; 1/12 of the run)")
