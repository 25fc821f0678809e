"""The one settings object. Every setting is one ``RECSYS_*`` environment variable with a type and default.

Built once where a program starts (the CLI's ``main``, ``create_app``) and passed down; library
functions take explicit arguments. An invalid value fails at start and names the variable.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import ConfigError

PREFIX = "RECSYS_"
SIMILARITY_VECTORS = ("gmf", "concat", "mlp")


def setting(default, doc: str):
    """A dataclass field with the one-line description the README's configuration table shows."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- database -------------------------------------------------------------------------------
    database_url: str | None = setting(
        None, "PostgreSQL URL (postgresql://user:pass@host/db). Unset: start the embedded PostgreSQL."
    )
    data_dir: Path = setting(Path(".recsys"), "Folder of the embedded PostgreSQL, run reports and plots.")
    db_pool_size: int = setting(10, "Connections kept open by each process's pool.")

    # --- consolidation: sessions -> interactions (see recsys/scoring.py for the formula) -----------
    score_time_weight: float = setting(1.0, "Weight of log(1 + minutes played) in an interaction's score.")
    score_spins_weight: float = setting(0.5, "Weight of log(1 + spins) in an interaction's score.")
    score_stake_weight: float = setting(0.25, "Weight of log(1 + total stake) in an interaction's score.")
    score_bonus_weight: float = setting(
        0.3, "Multiplier for bonus/promotion-driven play: forced play says little about taste."
    )
    consolidate_lookback_seconds: int = setting(
        300, "Sessions changed this long before the last watermark are consolidated again (late commits)."
    )

    # --- training worker (recsys train) ----------------------------------------------------------
    train_window_days: int = setting(90, "Days of interactions a training run reads (ending at the latest day).")
    holdout_days: int = setting(3, "Latest days whose newly discovered slots form the evaluation holdout.")
    train_model: str = setting("neumf", "Model trained by the worker: neumf, gmf or mlp.")
    train_factors: int = setting(32, "GMF factors (the MLP tower's embeddings are half its first layer).")
    train_mlp_layers: tuple[int, ...] = setting((64, 32, 16), "MLP tower widths, comma-separated.")
    train_epochs: int = setting(6, "Epochs of the worker's model (casino scale: ~1 min each per 10^7 samples).")
    train_pretrain: bool = setting(
        True, "NeuMF: train GMF and MLP (train_epochs each) and fuse them, as the paper; off: NeuMF from scratch."
    )
    train_user_history: str = setting(
        "only",
        "How a player's vector is made: only (from the slots they played, FISM), add (a free row plus that, "
        "SVD++) or none (a free row, the paper's NCF). docs/training.md has the measurements.",
    )
    train_negatives: int = setting(4, "Sampled negatives per positive.")
    train_batch_size: int = setting(8192, "Largest number of samples per optimizer step.")
    train_min_steps: int = setting(
        200, "Optimizer steps an epoch takes at least: small data sets train in batches below train_batch_size."
    )
    train_optimizer: str = setting("adam", "Optimizer of every training stage: adam (SparseAdam), sgd or adagrad.")
    train_lr: float = setting(0.002, "Learning rate.")
    train_reg: float = setting(0.0, "L2 penalty on the embedding rows a batch touches.")
    train_threads: int = setting(2, "CPU threads torch may use.")
    train_processes: int = setting(
        1, "`recsys pipeline run` trains its stage under torchrun with this many processes (DDP); 1: in-process."
    )
    train_seed: int = setting(0, "Seed of initialisation, negative sampling and the holdout sample.")
    train_early_stopping: bool = setting(
        True, "Keep each stage's best epoch by HR@10 on half the holdout players; metrics use the other half."
    )
    train_weighted: bool = setting(True, "Weight positives by their normalized score (see docs/training.md).")
    eval_max_players: int = setting(20000, "At most this many holdout players are evaluated (sampled).")
    similarity_vector: str = setting(
        "gmf", "Slot vector FAISS indexes: gmf, concat or mlp (docs/training.md; an MLP-only model uses mlp)."
    )
    gate_min_hr: float = setting(0.3, "Quality gate: a version needs at least this HR@10 on the holdout.")
    gate_max_drop: float = setting(0.02, "Quality gate: at most this HR@10 drop against the active version.")
    gate_popularity_margin: float = setting(
        0.0, "Quality gate: a version whose HR@10 is below popularity's by more than this is refused."
    )
    gate_beat_itemknn: bool = setting(
        True, "Quality gate: also refuse a version whose HR@10 is below item-kNN's by more than the margin below."
    )
    gate_itemknn_margin: float = setting(0.0, "Quality gate: how far below item-kNN's HR@10 a version may fall.")
    keep_versions: int = setting(3, "Finished non-active versions whose embeddings are kept.")
    offline_top_n: int = setting(50, "Slots precomputed per player for the offline recommendations.")

    # --- real-time layer: play events, the long-session trigger, feedback ----------------------------
    session_threshold_seconds: float = setting(
        3600.0, "Continuous play (event time) after which the long-session trigger fires, once per session."
    )
    session_pause_seconds: float = setting(600.0, "A gap between events longer than this ends continuous play.")
    session_max_seconds: float = setting(
        10800.0, "Continuous play past this gets no games: the trigger answers with `late_session_action`."
    )
    night_hours: str = setting("", "UTC hours `HH-HH` (e.g. `00-06`) in which the trigger sends no games; empty: off.")
    late_session_action: str = setting(
        "reality_check", "Past the maximum or at night: `reality_check` (an action, no games) or `silent`."
    )
    attribution_window_seconds: float = setting(
        1800.0, "A session started on a recommended slot this soon after its click or impression is attributed."
    )
    stream_keepalive_seconds: float = setting(
        15.0, "An open push stream (SSE) sends a comment line this often, so proxies keep it open."
    )
    event_max_future_seconds: float = setting(
        300.0, "An event's `ts` may lie at most this far after the server's clock (clock skew); later: 422."
    )
    event_max_age_seconds: float = setting(
        604800.0, "An event's `ts` may lie at most this far in the past (7 days of late delivery); earlier: 422."
    )

    # --- serving API (recsys serve; see docs/api.md) ---------------------------------------------
    serve_host: str = setting("127.0.0.1", "Address `recsys serve` listens on.")
    serve_port: int = setting(8000, "Port `recsys serve` listens on.")
    serve_server: str = setting("granian", "ASGI server of `recsys serve`: granian or uvicorn (bench/bench_api.py).")
    serve_workers: int = setting(1, "Server worker processes (each holds its own index).")
    index_factory: str = setting("IDMap,Flat", "FAISS factory string of the similar-slot index (exact inner product).")
    exclude_played: str = setting("ever", "Slots a player played are not recommended: `ever`, or a number of days.")
    exploration_share: float = setting(0.2, "Share of a list's places given to exploration (Thompson sampling).")
    explore_max_impressions: int = setting(200, "Slots with fewer impressions than this (and new ones) are explored.")
    explore_seed: int | None = setting(None, "Seed of the exploration draws (per player); unset: fresh entropy.")
    provider_cap: int = setting(3, "At most this many slots of one provider in a list.")
    blend_weight: float = setting(0.7, "Weight of the model's score against similarity when ranking (0..1).")
    candidate_pool: int = setting(100, "Index neighbours fetched per list before exclusions.")
    popularity_days: int = setting(30, "Days of play behind the popularity (cold-start) list.")
    serving_refresh_seconds: float = setting(
        30.0, "The API reloads its catalogue this often besides NOTIFY (a lost notification heals within it)."
    )
    stats_refresh_seconds: float = setting(
        300.0, "The API recounts popularity and feedback (GROUP BYs over sessions and feedback) this often."
    )
    api_key_cache_seconds: float = setting(5.0, "API keys are cached this long: a revocation takes effect within it.")
    api_key_cache_bytes: int = setting(
        4 << 20, "Memory bound of each process's API key cache (it keeps SHA-256 digests, never the keys)."
    )
    api_key_grace_seconds: float = setting(
        300.0, "While the database is down, `/similar` accepts keys verified this recently (others get 503)."
    )
    api_lock_timeout_ms: int = setting(
        2000, "`lock_timeout` of the API's connections: a request waits this long for a lock, then 503."
    )
    api_statement_timeout_ms: int = setting(
        10000, "`statement_timeout` of the API's connections: a longer statement is cancelled (503)."
    )
    log_synchronous_commit: bool = setting(
        False, "Logging a served list waits for the WAL flush (an fsync); off: a PostgreSQL crash may lose ~0.6 s."
    )

    # --- daily pipeline (recsys pipeline; see docs/pipeline.md) ----------------------------------
    pipeline_at: str = setting("03:00", "UTC time (HH:MM) at which `recsys pipeline schedule` starts the daily run.")
    report_top_providers: int = setting(8, "Providers coloured on the run report's slot map (the others grey).")
    recommendation_retention_days: int = setting(
        400, "Served lists (and their feedback) are kept this many days, then dropped by month; 0: kept forever."
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read ``RECSYS_<FIELD>`` variables; ``overrides`` (field names) win over the environment."""
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            variable = PREFIX + f.name.upper()
            if f.name in overrides:
                values[f.name] = overrides.pop(f.name)
            elif variable in environ:
                values[f.name] = _parse(variable, environ[variable], hints[f.name])
        if overrides:
            raise TypeError(f"unknown settings: {sorted(overrides)}")
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Check values that a type alone does not constrain."""
        for name in (
            "db_pool_size", "train_window_days", "holdout_days", "train_factors", "train_epochs",
            "train_negatives", "train_batch_size", "train_min_steps", "train_threads", "train_processes",
            "eval_max_players",
            "offline_top_n",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be at least 1")
        for name in ("score_time_weight", "score_spins_weight", "score_stake_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must not be negative")
        if not 0 <= self.score_bonus_weight <= 1:
            raise ConfigError("RECSYS_SCORE_BONUS_WEIGHT", str(self.score_bonus_weight), "must be in [0, 1]")
        if self.train_optimizer not in ("adam", "sgd", "adagrad"):
            raise ConfigError("RECSYS_TRAIN_OPTIMIZER", self.train_optimizer, "must be adam, sgd or adagrad")
        if self.train_user_history not in ("only", "add", "none"):
            raise ConfigError("RECSYS_TRAIN_USER_HISTORY", self.train_user_history, "must be only, add or none")
        if self.train_model not in ("neumf", "gmf", "mlp"):
            raise ConfigError("RECSYS_TRAIN_MODEL", self.train_model, "must be neumf, gmf or mlp")
        if not self.train_mlp_layers or self.train_mlp_layers[0] % 2:
            raise ConfigError(
                "RECSYS_TRAIN_MLP_LAYERS", ",".join(map(str, self.train_mlp_layers)), "needs an even first width"
            )
        if self.holdout_days >= self.train_window_days:
            raise ConfigError("RECSYS_HOLDOUT_DAYS", str(self.holdout_days), "must be shorter than the window")
        if self.similarity_vector not in SIMILARITY_VECTORS:
            raise ConfigError(
                "RECSYS_SIMILARITY_VECTOR", self.similarity_vector, f"must be one of {SIMILARITY_VECTORS}"
            )
        for name in ("gate_min_hr", "gate_max_drop", "gate_popularity_margin", "gate_itemknn_margin"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be in [0, 1]")
        if self.keep_versions < 0:
            raise ConfigError("RECSYS_KEEP_VERSIONS", str(self.keep_versions), "must not be negative")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("RECSYS_DATABASE_URL", self.database_url, "must start with postgresql://")
        self._validate_serving()
        self._validate_pipeline()
        self._validate_realtime()

    def _validate_realtime(self) -> None:
        for name in ("session_threshold_seconds", "session_pause_seconds", "attribution_window_seconds",
                     "stream_keepalive_seconds", "event_max_future_seconds", "event_max_age_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be positive")
        if self.session_max_seconds < self.session_threshold_seconds:
            raise ConfigError(
                "RECSYS_SESSION_MAX_SECONDS", str(self.session_max_seconds), "must not be below the threshold"
            )
        if self.late_session_action not in ("reality_check", "silent"):
            raise ConfigError("RECSYS_LATE_SESSION_ACTION", self.late_session_action, "must be reality_check or silent")
        _ = self.night_window  # parses, or raises naming the variable

    @property
    def night_window(self) -> tuple[int, int] | None:
        """``(start_hour, end_hour)`` in UTC of the night hours, or None; the window may wrap midnight."""
        if not self.night_hours.strip():
            return None
        try:
            start, end = (int(part) for part in self.night_hours.split("-"))
        except ValueError:
            raise ConfigError("RECSYS_NIGHT_HOURS", self.night_hours, "must look like 00-06") from None
        if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
            raise ConfigError("RECSYS_NIGHT_HOURS", self.night_hours, "hours must lie in 0..24 and differ")
        return start, end

    def _validate_serving(self) -> None:
        if self.serve_server not in ("granian", "uvicorn"):
            raise ConfigError("RECSYS_SERVE_SERVER", self.serve_server, "must be granian or uvicorn")
        if not 0 < self.serve_port < 65536:
            raise ConfigError("RECSYS_SERVE_PORT", str(self.serve_port), "must be a TCP port (1..65535)")
        for name in ("serve_workers", "provider_cap", "candidate_pool", "popularity_days", "explore_max_impressions"):
            if getattr(self, name) < 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be at least 1")
        for name in ("exploration_share", "blend_weight"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be in [0, 1]")
        for name in ("api_key_cache_bytes", "api_lock_timeout_ms", "api_statement_timeout_ms"):
            if getattr(self, name) < 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be at least 1")
        for name in ("serving_refresh_seconds", "stats_refresh_seconds", "api_key_cache_seconds",
                     "api_key_grace_seconds"):
            if getattr(self, name) < 0:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must not be negative")
        if self.exclude_played != "ever" and not (self.exclude_played.isdigit() and int(self.exclude_played) > 0):
            raise ConfigError("RECSYS_EXCLUDE_PLAYED", self.exclude_played, "must be `ever` or a number of days")
        if not self.index_factory.strip():
            raise ConfigError("RECSYS_INDEX_FACTORY", self.index_factory, "must be a FAISS factory string")

    def _validate_pipeline(self) -> None:
        if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", self.pipeline_at):
            raise ConfigError("RECSYS_PIPELINE_AT", self.pipeline_at, "must be a UTC time HH:MM (00:00 .. 23:59)")
        if self.report_top_providers < 1:
            raise ConfigError("RECSYS_REPORT_TOP_PROVIDERS", str(self.report_top_providers), "must be at least 1")
        if self.recommendation_retention_days < 0:
            raise ConfigError("RECSYS_RECOMMENDATION_RETENTION_DAYS", str(self.recommendation_retention_days),
                              "must not be negative")

    @property
    def exclude_played_days(self) -> int | None:
        """Days of history behind the played-slot exclusion; None for ``ever``."""
        return None if self.exclude_played == "ever" else int(self.exclude_played)

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """``(variable, default, description)`` for every setting, in declaration order."""
        return [
            (PREFIX + f.name.upper(), _show(f.default), f.metadata["doc"])
            for f in dataclasses.fields(cls)
        ]


def _parse(variable: str, raw: str, hint) -> object:
    optional = False
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional, hint = True, args[0]
    if optional and raw.strip() == "":
        return None
    try:
        if hint is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if typing.get_origin(hint) is tuple:
            element = typing.get_args(hint)[0]
            return tuple(element(part.strip()) for part in raw.split(",") if part.strip())
        return hint(raw)
    except ValueError as exc:
        raise ConfigError(variable, raw, f"not a valid {getattr(hint, '__name__', hint)} ({exc})") from exc


def _show(default) -> str:
    if default is None:
        return ""
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return str(default).lower() if isinstance(default, bool) else str(default)


def markdown_table() -> str:
    """The README's configuration table: ``python -m recsys.settings`` prints it."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{v}` | `{d}` | {doc} |" if d else f"| `{v}` | | {doc} |" for v, d, doc in Settings.documentation()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
