"""The one settings object. Every setting is one ``RECSYS_*`` environment variable with a type and default.

Built once where a program starts (the CLI's ``main``, ``create_app``) and passed down; library
functions take explicit arguments. An invalid value fails at start and names the variable.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import ConfigError

PREFIX = "RECSYS_"
SIMILARITY_VECTORS = ("gmf", "mlp", "concat")


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
    train_pretrain: bool = setting(False, "Pre-train GMF and MLP before NeuMF (triples the cost).")
    train_negatives: int = setting(4, "Sampled negatives per positive.")
    train_batch_size: int = setting(8192, "Samples per optimizer step.")
    train_lr: float = setting(0.002, "Learning rate.")
    train_reg: float = setting(0.0, "L2 penalty on the embedding rows a batch touches.")
    train_threads: int = setting(2, "CPU threads torch may use.")
    train_seed: int = setting(0, "Seed of initialisation, negative sampling and the holdout sample.")
    train_weighted: bool = setting(True, "Weight positives by their normalized score (see docs/training.md).")
    eval_max_players: int = setting(20000, "At most this many holdout players are evaluated (sampled).")
    similarity_vector: str = setting("gmf", "Slot vector FAISS indexes: gmf, mlp or concat (measured choice).")
    gate_min_hr: float = setting(0.3, "Quality gate: a version needs at least this HR@10 on the holdout.")
    gate_max_drop: float = setting(0.02, "Quality gate: at most this HR@10 drop against the active version.")
    keep_versions: int = setting(3, "Finished non-active versions whose embeddings are kept.")
    offline_top_n: int = setting(50, "Slots precomputed per player for the offline recommendations.")

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
            "train_negatives", "train_batch_size", "train_threads", "eval_max_players", "offline_top_n",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be at least 1")
        for name in ("score_time_weight", "score_spins_weight", "score_stake_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must not be negative")
        if not 0 <= self.score_bonus_weight <= 1:
            raise ConfigError("RECSYS_SCORE_BONUS_WEIGHT", str(self.score_bonus_weight), "must be in [0, 1]")
        if self.train_model not in ("neumf", "gmf", "mlp"):
            raise ConfigError("RECSYS_TRAIN_MODEL", self.train_model, "must be neumf, gmf or mlp")
        if not self.train_mlp_layers or self.train_mlp_layers[0] % 2:
            raise ConfigError(
                "RECSYS_TRAIN_MLP_LAYERS", ",".join(map(str, self.train_mlp_layers)), "needs an even first width"
            )
        if self.holdout_days >= self.train_window_days:
            raise ConfigError("RECSYS_HOLDOUT_DAYS", str(self.holdout_days), "must be shorter than the window")
        if self.similarity_vector not in SIMILARITY_VECTORS:
            raise ConfigError("RECSYS_SIMILARITY_VECTOR", self.similarity_vector, f"must be one of {SIMILARITY_VECTORS}")
        for name in ("gate_min_hr", "gate_max_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be in [0, 1]")
        if self.keep_versions < 0:
            raise ConfigError("RECSYS_KEEP_VERSIONS", str(self.keep_versions), "must not be negative")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("RECSYS_DATABASE_URL", self.database_url, "must start with postgresql://")

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
