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
        for name in ("db_pool_size",):
            if getattr(self, name) < 1:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must be at least 1")
        for name in ("score_time_weight", "score_spins_weight", "score_stake_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(PREFIX + name.upper(), str(getattr(self, name)), "must not be negative")
        if not 0 <= self.score_bonus_weight <= 1:
            raise ConfigError("RECSYS_SCORE_BONUS_WEIGHT", str(self.score_bonus_weight), "must be in [0, 1]")
        if self.database_url is not None and not self.database_url.startswith(("postgresql://", "postgres://")):
            raise ConfigError("RECSYS_DATABASE_URL", self.database_url, "must start with postgresql://")

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """``(variable, default, description)`` for every setting, in declaration order."""
        return [
            (PREFIX + f.name.upper(), "" if f.default is None else str(f.default), f.metadata["doc"])
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
        if hint is tuple[str, ...]:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return hint(raw)
    except ValueError as exc:
        raise ConfigError(variable, raw, f"not a valid {getattr(hint, '__name__', hint)} ({exc})") from exc
