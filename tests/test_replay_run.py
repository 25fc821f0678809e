"""The trigger replay of a trained version on a real database: its cases read from the play sessions, every
policy's figures, and the worker's run storing them."""

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from recsys.db import versions
from recsys.db.consolidation import consolidate
from recsys.db.synth_store import write_casino
from recsys.holdout_cases import time_holdout
from recsys.metrics import REPLAY_POLICIES, VersionMetrics
from recsys.replay import counted_cases, replay
from recsys.replay_run import replay_inputs
from recsys.settings import Scoring
from recsys.synth import SynthConfig
from recsys.worker import run_training

CASINO = SynthConfig(players=2000, slots=150, days=30, seed=7, start=date(2026, 1, 1), mean_daily_sessions=1.0,
                     clusters=6)


@pytest.fixture
def casino(db):
    write_casino(db, CASINO)
    consolidate(db, Scoring())
    return db


def test_a_version_replayed_on_the_days_after_it(casino, settings):
    fast = settings.replace(train_model="gmf", similarity_vector="gmf", train_epochs=10, train_lr=0.01,
                            train_factors=16, holdout_days=5, gate_min_hr=0.0, gate_beat_itemknn=False,
                            gate_beat_ials=False, gate_popularity_margin=1.0, ials_player_limit=0,
                            offline_top_n=10)
    outcome = run_training(casino, fast, end_day=date(2026, 1, 23))
    stored = VersionMetrics.from_json(versions.get_version(casino, outcome.version_id).metrics)
    assert stored.replay == outcome.metrics.replay  # stored as measured (None: no case in its holdout days)
    assert "ials" not in stored.baselines  # RECSYS_IALS_PLAYER_LIMIT=0: iALS off

    data = outcome.data
    window = (datetime(2026, 1, 24, tzinfo=UTC), datetime(2026, 1, 31, tzinfo=UTC))
    inputs = replay_inputs(casino, fast, outcome.version_id, data, time_holdout(data, fast.training).train,
                           window=window)
    assert counted_cases(inputs.cases) >= 20, counted_cases(inputs.cases)
    for case in inputs.cases[:50]:
        # Nothing the player had played by the crossing is a target, nor anything the version trained on.
        assert not set(case.target_keys.tolist()) & set(case.played_keys.tolist())
        assert not set(case.target_keys.tolist()) & set(case.hidden_keys.tolist())
        assert case.context_key in case.played_keys
        assert case.towers is None or set(case.towers) == {"gmf"}
    figures = replay(inputs.cases, inputs.world, fast.ranking, draws=2)
    assert list(figures) == [p for p, _ in REPLAY_POLICIES]
    assert all(0.0 <= f.ndcg <= f.hr <= 1.0 for f in figures.values()), figures
    # On planted taste clusters the version's own scores find the next new slot far more often than
    # popularity does.
    assert figures["model"].hr > figures["popularity"].hr, figures
    # Days with no long session give no case.
    empty = replay_inputs(casino, fast, outcome.version_id, data, np.ones(data.n_pairs, dtype=bool),
                          window=(window[1] + timedelta(days=10), window[1] + timedelta(days=11)))
    assert empty.cases == []
