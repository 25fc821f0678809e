"""Settings validation: an invalid value fails at start with a ConfigError naming the variable."""

import pytest

from recsys.errors import ConfigError
from recsys.settings import Settings


@pytest.mark.parametrize(("variable", "value", "reason"), [
    ("RECSYS_DB_POOL_SIZE", "0", "at least 1"),
    ("RECSYS_DB_POOL_SIZE", "many", "not a valid int"),
    ("RECSYS_SCORE_BONUS_WEIGHT", "1.5", "[0, 1]"),
    ("RECSYS_TRAIN_OPTIMIZER", "rmsprop", "adam, sgd or adagrad"),
    ("RECSYS_TRAIN_MLP_LAYERS", "63,32", "even first width"),
    ("RECSYS_DATABASE_URL", "mysql://x", "postgresql://"),
    ("RECSYS_SERVE_PORT", "70000", "TCP port"),
    ("RECSYS_NIGHT_HOURS", "late", "00-06"),
    ("RECSYS_SESSION_MAX_SECONDS", "60.0", "below the threshold"),
    ("RECSYS_EVENT_MAX_AGE_SECONDS", "0.0", "positive"),
    ("RECSYS_EVENT_MAX_FUTURE_SECONDS", "-1.0", "positive"),
    ("RECSYS_API_KEY_CACHE_BYTES", "0", "at least 1"),
    ("RECSYS_API_LOCK_TIMEOUT_MS", "0", "at least 1"),
    ("RECSYS_API_KEY_GRACE_SECONDS", "-5.0", "not be negative"),
    ("RECSYS_PIPELINE_AT", "25:00", "HH:MM"),
    ("RECSYS_TRAIN_PRETRAIN", "perhaps", "true or false"),
])
def test_an_invalid_value_names_its_variable(variable, value, reason):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable and info.value.value == value
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{variable}={value!r}: ")


def test_defaults_are_valid_and_values_are_typed():
    settings = Settings.from_env({"RECSYS_TRAIN_MLP_LAYERS": "32, 16,8", "RECSYS_EXPLORE_SEED": ""})
    assert settings.train_mlp_layers == (32, 16, 8) and settings.explore_seed is None
    assert Settings.from_env({}).event_max_age_seconds == 7 * 86400
