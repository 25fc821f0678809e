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
    assert settings.training.mlp_layers == (32, 16, 8) and settings.ranking.explore_seed is None
    assert Settings.from_env({}).realtime.event_max_age_seconds == 7 * 86400


# The variables deployed configurations set: a name that changes breaks them.
VARIABLES = (
    "DATABASE_URL", "DATA_DIR", "DB_POOL_SIZE", "SCORE_TIME_WEIGHT", "SCORE_SPINS_WEIGHT", "SCORE_STAKE_WEIGHT",
    "SCORE_BONUS_WEIGHT", "CONSOLIDATE_LOOKBACK_SECONDS", "TRAIN_WINDOW_DAYS", "HOLDOUT_DAYS", "TRAIN_MODEL",
    "TRAIN_FACTORS", "TRAIN_MLP_LAYERS", "TRAIN_EPOCHS", "TRAIN_PRETRAIN", "TRAIN_USER_HISTORY", "TRAIN_NEGATIVES",
    "TRAIN_BATCH_SIZE", "TRAIN_MIN_STEPS", "TRAIN_OPTIMIZER", "TRAIN_LR", "TRAIN_REG", "TRAIN_THREADS",
    "TRAIN_PROCESSES", "TRAIN_SEED", "TRAIN_EARLY_STOPPING", "TRAIN_WEIGHTED", "EVAL_MAX_PLAYERS",
    "IALS_PLAYER_LIMIT", "REPLAY_HOURS", "SIMILARITY_VECTOR", "GATE_MIN_HR", "GATE_MAX_DROP",
    "GATE_POPULARITY_MARGIN", "GATE_BEAT_ITEMKNN", "GATE_ITEMKNN_MARGIN", "GATE_BEAT_IALS", "GATE_IALS_MARGIN",
    "KEEP_VERSIONS", "OFFLINE_TOP_N", "SESSION_THRESHOLD_SECONDS", "SESSION_PAUSE_SECONDS",
    "SESSION_MAX_SECONDS", "NIGHT_HOURS", "LATE_SESSION_ACTION", "ATTRIBUTION_WINDOW_SECONDS",
    "STREAM_KEEPALIVE_SECONDS", "STREAMS_MAX", "STREAMS_PER_KEY",
    "EVENT_MAX_FUTURE_SECONDS", "EVENT_MAX_AGE_SECONDS", "SERVE_HOST", "SERVE_PORT",
    "SERVE_SERVER", "SERVE_WORKERS", "SERVE_LOOP", "SERVE_BACKLOG", "SERVE_MAX_CONNECTIONS",
    "SERVE_HEADER_TIMEOUT_SECONDS",
    "INDEX_FACTORY", "EXCLUDE_PLAYED", "EXPLORATION_SHARE",
    "EXPLORE_MAX_IMPRESSIONS", "EXPLORE_SEED", "PROVIDER_CAP", "BLEND_WEIGHT", "CANDIDATE_POOL", "POPULARITY_DAYS",
    "SERVING_REFRESH_SECONDS", "STATS_REFRESH_SECONDS", "API_KEY_CACHE_SECONDS", "API_KEY_CACHE_BYTES",
    "API_KEY_GRACE_SECONDS", "API_LOCK_TIMEOUT_MS", "API_STATEMENT_TIMEOUT_MS", "TRUSTED_PROXIES",
    "DASHBOARD_MAX_SESSIONS", "DASHBOARD_CACHE_SECONDS", "LOG_SYNCHRONOUS_COMMIT", "LOG_GROUP_COMMIT",
    "PIPELINE_AT", "REPORT_TOP_PROVIDERS", "RECOMMENDATION_RETENTION_DAYS",
)


def test_every_variable_keeps_its_name_and_a_setting_is_read_from_it():
    rows = Settings.documentation()
    assert sorted(variable for variable, *_ in rows) == sorted("RECSYS_" + name for name in VARIABLES)
    settings = Settings.from_env({"RECSYS_TRAIN_REG": "0.01", "RECSYS_API_LOCK_TIMEOUT_MS": "500",
                                  "RECSYS_LATE_SESSION_ACTION": "silent", "RECSYS_PIPELINE_AT": "04:30"})
    assert settings.training.reg == 0.01 and settings.serving.lock_timeout_ms == 500
    assert settings.realtime.late_action == "silent" and settings.pipeline.at == "04:30"
    assert settings.replace(train_reg=0.02).training.reg == 0.02 and settings.training.reg == 0.01


def _limit_cases():
    """``(variable, refused, allowed)`` texts just outside and at each declared limit, and for choices."""
    import dataclasses

    for group in dataclasses.fields(Settings):
        for f in dataclasses.fields(group.default_factory):
            variable, limits = f.metadata["variable"], f.metadata["limits"]
            step = 1 if isinstance(f.default, int) else 0.001
            if "at_least" in limits:
                yield variable, limits["at_least"] - step, limits["at_least"]
            if "at_most" in limits:
                yield variable, limits["at_most"] + step, limits["at_most"]
            if "above" in limits:
                yield variable, limits["above"], limits["above"] + step
            for choice in limits.get("choices", ()):
                yield variable, choice.upper() + "x", choice


LIMIT_CASES = list(_limit_cases())


def test_the_declared_limits_cover_the_numbers_and_choices():
    assert len(LIMIT_CASES) >= 60
    assert ("RECSYS_SCORE_BONUS_WEIGHT", 1.001, 1) in LIMIT_CASES
    assert ("RECSYS_EVENT_MAX_AGE_SECONDS", 0, 0.001) in LIMIT_CASES
    assert ("RECSYS_DB_POOL_SIZE", 0, 1) in LIMIT_CASES


@pytest.mark.parametrize(("variable", "refused", "allowed"), LIMIT_CASES)
def test_each_limit_refuses_a_value_just_outside_it_and_takes_the_limit(variable, refused, allowed):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({variable: str(refused)})
    assert info.value.variable == variable and info.value.value == str(refused)
    assert info.value.reason.startswith("must ")
    companions = {"RECSYS_TRAIN_WINDOW_DAYS": {"RECSYS_HOLDOUT_DAYS": "1"}}  # the holdout stays shorter
    settings = Settings.from_env({variable: str(allowed), **companions.get(variable, {})})
    assert settings.flat()[variable.removeprefix("RECSYS_").lower()] == allowed


WIDTHS = "positive widths with an even first width"


@pytest.mark.parametrize(("environ", "variable", "reason"), [
    ({"RECSYS_HOLDOUT_DAYS": "30", "RECSYS_TRAIN_WINDOW_DAYS": "30"}, "RECSYS_HOLDOUT_DAYS",
     "must be shorter than the window (RECSYS_TRAIN_WINDOW_DAYS)"),
    ({"RECSYS_TRAIN_MLP_LAYERS": ""}, "RECSYS_TRAIN_MLP_LAYERS", f"must be {WIDTHS}"),
    ({"RECSYS_TRAIN_MLP_LAYERS": "64,0"}, "RECSYS_TRAIN_MLP_LAYERS", f"must be {WIDTHS}"),
    ({"RECSYS_EXCLUDE_PLAYED": "0"}, "RECSYS_EXCLUDE_PLAYED", "must be `ever` or a number of days"),
    ({"RECSYS_INDEX_FACTORY": "  "}, "RECSYS_INDEX_FACTORY", "must be a FAISS factory string"),
    ({"RECSYS_NIGHT_HOURS": "06-06"}, "RECSYS_NIGHT_HOURS", "must be empty or UTC hours like 00-06 (0..24, different)"),
    ({"RECSYS_NIGHT_HOURS": "23-25"}, "RECSYS_NIGHT_HOURS", "must be empty or UTC hours like 00-06 (0..24, different)"),
    ({"RECSYS_SERVE_PORT": "0"}, "RECSYS_SERVE_PORT", "must be a TCP port (1..65535)"),
    ({"RECSYS_TRAIN_MODEL": "ease"}, "RECSYS_TRAIN_MODEL", "must be neumf, gmf or mlp"),
    ({"RECSYS_KEEP_VERSIONS": "-1"}, "RECSYS_KEEP_VERSIONS", "must not be negative"),
    ({"RECSYS_SESSION_THRESHOLD_SECONDS": "0"}, "RECSYS_SESSION_THRESHOLD_SECONDS", "must be positive"),
])
def test_the_rules_of_a_group_give_known_reasons(environ, variable, reason):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ)
    assert (info.value.variable, info.value.reason) == (variable, reason)


def test_a_group_made_in_code_checks_itself_and_reads_like_its_settings():
    from recsys.settings import Ranking, RealTime

    with pytest.raises(ConfigError, match=r"^RECSYS_EXPLORATION_SHARE='1.5': must be in \[0, 1\]$"):
        Ranking(exploration_share=1.5)
    assert Ranking(exclude_played="30").exclude_played_days == 30 and Ranking().exclude_played_days is None
    assert RealTime(night_hours="22-06").night_window == (22, 6) and RealTime().night_window is None
    assert Settings().ranking == Ranking() and Settings.from_env({}) == Settings()


def test_an_unknown_setting_is_refused_by_name():
    with pytest.raises(TypeError, match="train_rgularization"):
        Settings.from_env({}, train_rgularization=0.1)
    with pytest.raises(TypeError, match="reg"):
        Settings().replace(reg=0.1)  # a field's name is not a setting's: train_reg is


def test_the_readme_table_shows_each_variables_default_and_limits():
    from recsys.settings import markdown_table

    lines = markdown_table().splitlines()
    assert lines[0] == "| variable | default | allowed | meaning |" and len(lines) == 2 + len(VARIABLES)
    assert "| `RECSYS_SCORE_BONUS_WEIGHT` | `0.3` | in [0, 1] | " in markdown_table()
    assert "| `RECSYS_TRAIN_OPTIMIZER` | `adam` | adam, sgd or adagrad | " in markdown_table()
    assert "| `RECSYS_HOLDOUT_DAYS` | `3` | at least 1; shorter than the window (RECSYS_TRAIN_WINDOW_DAYS) | " in (
        markdown_table())
