"""The one settings object: eight groups of ``RECSYS_*`` environment variables, each group the config
its code takes.

Built once where a program starts (the CLI's ``main``, ``create_app``) and passed down: the worker
takes ``settings.training`` and ``settings.gate``, the tracker ``settings.realtime``, ranking
``settings.ranking``, consolidation ``settings.scoring``. Each field is declared once, with
:func:`setting`: its variable, default, meaning and limits. Validation (a group checks itself when
it is made) and the README's table (:func:`markdown_table`) both read that declaration. An invalid
value fails at start and names the variable.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import re
import types
import typing
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from recsys.errors import ConfigError

PREFIX = "RECSYS_"

Rule = tuple[str, Callable[[typing.Any, typing.Any], bool]]
"""``(phrase, test)``: ``test(value, group)`` is true for an allowed value; ``phrase`` says what is
allowed ("at least 1"), for the README and, as "must be <phrase>", for the error."""


def setting(
    variable: str,
    default,
    doc: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    choices: tuple[str, ...] | None = None,
    rules: tuple[Rule, ...] = (),
):
    """A group's field: its ``RECSYS_*`` variable, default, one-line meaning and limits.

    ``at_least`` / ``above`` / ``at_most`` bound a number, ``choices`` lists a string's values, and
    ``rules`` add checks of their own (they may read the rest of the group). A None value (an
    optional setting left unset) passes every check. The metadata keeps the limits as given
    (``limits``) and every check as a :data:`Rule` (``rules``).
    """
    checks: list[Rule] = []
    if at_least is not None and at_most is not None:
        checks.append((f"in [{at_least:g}, {at_most:g}]", lambda v, _: at_least <= v <= at_most))
    elif at_least is not None:
        phrase = "not negative" if at_least == 0 else f"at least {at_least:g}"
        checks.append((phrase, lambda v, _: v >= at_least))
    elif at_most is not None:
        checks.append((f"at most {at_most:g}", lambda v, _: v <= at_most))
    if above is not None:
        checks.append(("positive" if above == 0 else f"above {above:g}", lambda v, _: v > above))
    if choices is not None:
        checks.append((_or(choices), lambda v, _: v in choices))
    limits = {"at_least": at_least, "above": above, "at_most": at_most, "choices": choices}
    return field(default=default, metadata={
        "variable": variable, "doc": doc, "rules": (*checks, *rules),
        "limits": {name: limit for name, limit in limits.items() if limit is not None},
    })


def _splits(url: str) -> bool:
    """Whether urllib can split ``url`` and read its port: an unclosed ``[`` or a port out of range
    raised ValueError from the first function that parsed it, a traceback (issue 22)."""
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 -- reading .port is the check
    except ValueError:
        return False
    return True


def matches(pattern: str, phrase: str) -> Rule:
    """A rule: the whole value matches ``pattern``."""
    return phrase, lambda v, _: re.fullmatch(pattern, v) is not None


def _or(words: tuple[str, ...]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _reason(phrase: str) -> str:
    return "must not be " + phrase[4:] if phrase.startswith("not ") else "must be " + phrase


class Group:
    """Base of the settings groups: a group checks every field's rules when it is made."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            for phrase, test in f.metadata["rules"]:
                if not test(value, self):
                    raise ConfigError(f.metadata["variable"], _show(value), _reason(phrase))


# --- the groups -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Database(Group):
    """Where the data lives: PostgreSQL (``recsys.db.engine``) and the folder of runs and reports."""

    url: str | None = setting(
        "RECSYS_DATABASE_URL", None,
        "PostgreSQL URL (postgresql://user:pass@host/db). Unset: start the embedded PostgreSQL.",
        rules=(matches(r"(?s)postgres(ql)?://.*", "a postgresql:// (or postgres://) URL"),
               ("a URL whose host and port parse (e.g. [::1] with its bracket closed)", lambda v, _: _splits(v))),
    )
    data_dir: Path = setting(
        "RECSYS_DATA_DIR", Path(".recsys"), "Folder of the embedded PostgreSQL, run reports and plots."
    )
    pool_size: int = setting("RECSYS_DB_POOL_SIZE", 10, "Connections kept open by each process's pool.", at_least=1)


@dataclass(frozen=True)
class Scoring(Group):
    """Consolidation, sessions -> interactions: the weights of the formula in ``recsys.scoring``."""

    time_weight: float = setting(
        "RECSYS_SCORE_TIME_WEIGHT", 1.0, "Weight of log(1 + minutes played) in an interaction's score.", at_least=0
    )
    spins_weight: float = setting(
        "RECSYS_SCORE_SPINS_WEIGHT", 0.5, "Weight of log(1 + spins) in an interaction's score.", at_least=0
    )
    stake_weight: float = setting(
        "RECSYS_SCORE_STAKE_WEIGHT", 0.25, "Weight of log(1 + total stake) in an interaction's score.", at_least=0
    )
    bonus_weight: float = setting(
        "RECSYS_SCORE_BONUS_WEIGHT", 0.3,
        "Multiplier for bonus/promotion-driven play: forced play says little about taste.", at_least=0, at_most=1,
    )
    lookback_seconds: int = setting(
        "RECSYS_CONSOLIDATE_LOOKBACK_SECONDS", 300,
        "Sessions changed this long before the last watermark are consolidated again (late commits).", at_least=0,
    )


def _even_first_width(layers: tuple[int, ...], _) -> bool:
    return bool(layers) and min(layers) >= 1 and layers[0] % 2 == 0


@dataclass(frozen=True)
class Training(Group):
    """The training worker (``recsys train``). A field named like an ``NCFConfig`` field is that
    hyperparameter of every stage the worker trains (``recsys.worker.ncf_config``)."""

    window_days: int = setting(
        "RECSYS_TRAIN_WINDOW_DAYS", 90,
        "Days of interactions a training run reads (ending at the latest day); longer than the holdout.", at_least=2,
    )
    holdout_days: int = setting(
        "RECSYS_HOLDOUT_DAYS", 3, "Latest days whose newly discovered slots form the evaluation holdout.",
        at_least=1, rules=(("shorter than the window (RECSYS_TRAIN_WINDOW_DAYS)", lambda v, g: v < g.window_days),),
    )
    model: str = setting(
        "RECSYS_TRAIN_MODEL", "neumf", "Model trained by the worker.", choices=("neumf", "gmf", "mlp")
    )
    factors: int = setting(
        "RECSYS_TRAIN_FACTORS", 32, "GMF factors (the MLP tower's embeddings are half its first layer).", at_least=1
    )
    mlp_layers: tuple[int, ...] = setting(
        "RECSYS_TRAIN_MLP_LAYERS", (64, 32, 16), "MLP tower widths, comma-separated.",
        rules=(("positive widths with an even first width", _even_first_width),),
    )
    epochs: int = setting(
        "RECSYS_TRAIN_EPOCHS", 6, "Epochs of the worker's model (casino scale: ~1 min each per 10^7 samples).",
        at_least=1,
    )
    pretrain: bool = setting(
        "RECSYS_TRAIN_PRETRAIN", True,
        "NeuMF: train GMF and MLP (train_epochs each) and fuse them, as the paper; off: NeuMF from scratch.",
    )
    user_history: str = setting(
        "RECSYS_TRAIN_USER_HISTORY", "only",
        "How a player's vector is made: only (from the slots they played, FISM), add (a free row plus that, "
        "SVD++) or none (a free row, the paper's NCF). docs/training.md has the measurements.",
        choices=("only", "add", "none"),
    )
    negatives: int = setting("RECSYS_TRAIN_NEGATIVES", 4, "Sampled negatives per positive.", at_least=1)
    batch_size: int = setting(
        "RECSYS_TRAIN_BATCH_SIZE", 8192, "Largest number of samples per optimizer step.", at_least=1
    )
    min_steps: int = setting(
        "RECSYS_TRAIN_MIN_STEPS", 200,
        "Optimizer steps an epoch takes at least: small data sets train in batches below train_batch_size.",
        at_least=1,
    )
    optimizer: str = setting(
        "RECSYS_TRAIN_OPTIMIZER", "adam", "Optimizer of every training stage (adam: SparseAdam).",
        choices=("adam", "sgd", "adagrad"),
    )
    lr: float = setting("RECSYS_TRAIN_LR", 0.002, "Learning rate of every training stage.", above=0)
    reg: float = setting(
        "RECSYS_TRAIN_REG", 0.0, "L2 penalty on the embedding rows a batch touches, in every training stage.",
        at_least=0,
    )
    threads: int = setting("RECSYS_TRAIN_THREADS", 2, "CPU threads torch may use.", at_least=1)
    processes: int = setting(
        "RECSYS_TRAIN_PROCESSES", 1,
        "`recsys pipeline run` trains its stage under torchrun with this many processes (DDP); 1: in-process.",
        at_least=1,
    )
    seed: int = setting("RECSYS_TRAIN_SEED", 0, "Seed of initialisation, negative sampling and the holdout sample.")
    early_stopping: bool = setting(
        "RECSYS_TRAIN_EARLY_STOPPING", True,
        "Keep each stage's best epoch by HR@10 on half the holdout players; metrics use the other half.",
    )
    weighted: bool = setting(
        "RECSYS_TRAIN_WEIGHTED", True, "Weight positives by their normalized score (see docs/training.md)."
    )
    eval_max_players: int = setting(
        "RECSYS_EVAL_MAX_PLAYERS", 20000, "At most this many holdout players are evaluated (sampled).", at_least=1
    )
    ials_player_limit: int = setting(
        "RECSYS_IALS_PLAYER_LIMIT", 1000000,
        "The iALS baseline (and its gate check) runs when the window has fewer players than this; 0 turns it "
        "off (at 10^6 players it would cost about half the daily pipeline: docs/training.md).", at_least=0,
    )
    replay_hours: int = setting(
        "RECSYS_REPLAY_HOURS", 24,
        "Trigger replay: a long session's list is scored against the slots the player newly plays this many "
        "hours after the crossing.", at_least=1,
    )
    similarity_vector: str = setting(
        "RECSYS_SIMILARITY_VECTOR", "cooc",
        "Slot vector FAISS indexes: cooc (co-occurrence of the training pairs) or the model's gmf, concat, mlp "
        "(docs/training.md; an MLP-only model uses mlp).", choices=("cooc", "gmf", "concat", "mlp"),
    )
    keep_versions: int = setting(
        "RECSYS_KEEP_VERSIONS", 3, "Finished non-active versions whose embeddings are kept.", at_least=0
    )
    offline_top_n: int = setting(
        "RECSYS_OFFLINE_TOP_N", 50, "Slots precomputed per player for the offline recommendations.", at_least=1
    )


@dataclass(frozen=True)
class Gate(Group):
    """The quality gate a trained version passes before it becomes active (``recsys.worker``)."""

    min_hr: float = setting(
        "RECSYS_GATE_MIN_HR", 0.3, "Quality gate: a version needs at least this HR@10 on the holdout.",
        at_least=0, at_most=1,
    )
    max_drop: float = setting(
        "RECSYS_GATE_MAX_DROP", 0.02, "Quality gate: at most this HR@10 drop against the active version.",
        at_least=0, at_most=1,
    )
    popularity_margin: float = setting(
        "RECSYS_GATE_POPULARITY_MARGIN", 0.0,
        "Quality gate: a version whose HR@10 is below popularity's by more than this is refused.",
        at_least=0, at_most=1,
    )
    beat_itemknn: bool = setting(
        "RECSYS_GATE_BEAT_ITEMKNN", True,
        "Quality gate: also refuse a version whose HR@10 is below item-kNN's by more than the margin below.",
    )
    itemknn_margin: float = setting(
        "RECSYS_GATE_ITEMKNN_MARGIN", 0.0, "Quality gate: how far below item-kNN's HR@10 a version may fall.",
        at_least=0, at_most=1,
    )
    beat_ials: bool = setting(
        "RECSYS_GATE_BEAT_IALS", True,
        "Quality gate: also refuse a version whose HR@10 is below iALS's by more than the margin below "
        "(where the run measured iALS).",
    )
    ials_margin: float = setting(
        "RECSYS_GATE_IALS_MARGIN", 0.0, "Quality gate: how far below iALS's HR@10 a version may fall.",
        at_least=0, at_most=1,
    )


def night_window(text: str) -> tuple[int, int] | None:
    """``HH-HH`` -> ``(start_hour, end_hour)``; empty -> None. Raises ValueError for anything else."""
    if not text.strip():
        return None
    start, end = (int(part) for part in text.split("-"))
    if not (0 <= start <= 23 and 0 <= end <= 24) or start == end:
        raise ValueError(text)
    return start, end


def _is_night_window(text: str, _) -> bool:
    try:
        night_window(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class RealTime(Group):
    """The real-time layer: play events, the long-session trigger (``recsys.tracker``), feedback, push."""

    threshold_seconds: float = setting(
        "RECSYS_SESSION_THRESHOLD_SECONDS", 3600.0,
        "Continuous play (event time) after which the long-session trigger fires, once per session.", above=0,
    )
    pause_seconds: float = setting(
        "RECSYS_SESSION_PAUSE_SECONDS", 600.0, "A gap between events longer than this ends continuous play.",
        above=0,
    )
    max_seconds: float = setting(
        "RECSYS_SESSION_MAX_SECONDS", 10800.0,
        "Continuous play past this gets no games: the trigger answers with `late_session_action`.",
        rules=(("not below the threshold (RECSYS_SESSION_THRESHOLD_SECONDS)", lambda v, g: v >= g.threshold_seconds),),
    )
    night_hours: str = setting(
        "RECSYS_NIGHT_HOURS", "", "UTC hours `HH-HH` (e.g. `00-06`) in which the trigger sends no games; empty: off.",
        rules=(("empty or UTC hours like 00-06 (0..24, different)", _is_night_window),),
    )
    late_action: str = setting(
        "RECSYS_LATE_SESSION_ACTION", "reality_check",
        "Past the maximum or at night: `reality_check` (an action, no games) or `silent`.",
        choices=("reality_check", "silent"),
    )
    attribution_window_seconds: float = setting(
        "RECSYS_ATTRIBUTION_WINDOW_SECONDS", 1800.0,
        "A session started on a recommended slot this soon after its click or impression is attributed.", above=0,
    )
    stream_keepalive_seconds: float = setting(
        "RECSYS_STREAM_KEEPALIVE_SECONDS", 15.0,
        "An open push stream (SSE) sends a comment line this often, so proxies keep it open.", above=0,
    )
    streams_max: int = setting(
        "RECSYS_STREAMS_MAX", 2000,
        "Open push streams per server process; past it a new stream gets 503 with Retry-After.", at_least=1,
    )
    streams_per_key: int = setting(
        "RECSYS_STREAMS_PER_KEY", 1000,
        "Open push streams per API key in one server process; past it a new one gets 429.", at_least=1,
    )
    event_max_future_seconds: float = setting(
        "RECSYS_EVENT_MAX_FUTURE_SECONDS", 300.0,
        "An event's `ts` may lie at most this far after the server's clock (clock skew); later: 422.", above=0,
    )
    event_max_age_seconds: float = setting(
        "RECSYS_EVENT_MAX_AGE_SECONDS", 604800.0,
        "An event's `ts` may lie at most this far in the past (7 days of late delivery); earlier: 422.", above=0,
    )

    @property
    def night_window(self) -> tuple[int, int] | None:
        """``(start_hour, end_hour)`` in UTC of the night hours, or None; the window may wrap midnight."""
        return night_window(self.night_hours)


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Serving(Group):
    """The serving API (``recsys serve``; docs/api.md): server, snapshot refresh, API keys, timeouts."""

    host: str = setting("RECSYS_SERVE_HOST", "127.0.0.1", "Address `recsys serve` listens on.")
    port: int = setting(
        "RECSYS_SERVE_PORT", 8000, "Port `recsys serve` listens on.",
        rules=(("a TCP port (1..65535)", lambda v, _: 0 < v < 65536),),
    )
    server: str = setting(
        "RECSYS_SERVE_SERVER", "granian", "ASGI server of `recsys serve` (bench/bench_api.py).",
        choices=("granian", "uvicorn"),
    )
    workers: int = setting(
        "RECSYS_SERVE_WORKERS", 1, "Server worker processes (each holds its own index).", at_least=1
    )
    loop: str = setting(
        "RECSYS_SERVE_LOOP", "uvloop",
        "Event loop of `recsys serve`'s workers: uvloop (an online statement's CPU: 0.7x asyncio's), or asyncio.",
        choices=("uvloop", "asyncio"),
    )
    backlog: int = setting(
        "RECSYS_SERVE_BACKLOG", 4096, "Connections the kernel queues before `recsys serve` accepts them.", at_least=1
    )
    max_connections: int = setting(
        "RECSYS_SERVE_MAX_CONNECTIONS", 10000,
        "Connections one worker holds (idle, streams, requests); past it new ones wait (granian) or get 503.",
        at_least=1,
    )
    header_timeout_seconds: float = setting(
        "RECSYS_SERVE_HEADER_TIMEOUT_SECONDS", 5.0,
        "A client must send a request's headers within this; idle keep-alive and slow clients are closed.",
        above=0,
    )
    index_factory: str = setting(
        "RECSYS_INDEX_FACTORY", "IDMap,Flat", "FAISS factory string of the similar-slot index (exact inner product).",
        rules=(matches(r"(?s).*\S.*", "a FAISS factory string"),),
    )
    popularity_days: int = setting(
        "RECSYS_POPULARITY_DAYS", 30, "Days of play behind the popularity (cold-start) list.", at_least=1
    )
    refresh_seconds: float = setting(
        "RECSYS_SERVING_REFRESH_SECONDS", 30.0,
        "The API reloads its catalogue this often besides NOTIFY (a lost notification heals within it), and folds the "
        "running experiment's new lists into its rollup.",
        at_least=0,
    )
    stats_refresh_seconds: float = setting(
        "RECSYS_STATS_REFRESH_SECONDS", 300.0,
        "The API recounts popularity and feedback (GROUP BYs over sessions and feedback) this often.", at_least=0,
    )
    api_key_cache_seconds: float = setting(
        "RECSYS_API_KEY_CACHE_SECONDS", 5.0, "API keys are cached this long: a revocation takes effect within it.",
        at_least=0,
    )
    api_key_cache_bytes: int = setting(
        "RECSYS_API_KEY_CACHE_BYTES", 4 << 20,
        "Memory bound of each process's API key cache (it keeps SHA-256 digests, never the keys).", at_least=1,
    )
    api_key_grace_seconds: float = setting(
        "RECSYS_API_KEY_GRACE_SECONDS", 300.0,
        "While the database is down, `/similar` accepts keys verified this recently (others get 503).", at_least=0,
    )
    lock_timeout_ms: int = setting(
        "RECSYS_API_LOCK_TIMEOUT_MS", 2000,
        "`lock_timeout` of the API's connections: a request waits this long for a lock, then 503.", at_least=1,
    )
    statement_timeout_ms: int = setting(
        "RECSYS_API_STATEMENT_TIMEOUT_MS", 10000,
        "`statement_timeout` of the API's connections: a longer statement is cancelled (503).", at_least=1,
    )
    trusted_proxies: tuple[str, ...] = setting(
        "RECSYS_TRUSTED_PROXIES", (),
        "Reverse proxies (IP addresses or CIDR networks, comma-separated) whose `X-Forwarded-Proto` is believed.",
        rules=(("IP addresses or networks, e.g. 10.0.0.0/8,::1", lambda v, _: all(map(_is_network, v))),),
    )
    dashboard_max_sessions: int = setting(
        "RECSYS_DASHBOARD_MAX_SESSIONS", 10,
        "Dashboard sessions one API key may hold; signing in past it ends the key's oldest.", at_least=1,
    )
    dashboard_cache_seconds: float = setting(
        "RECSYS_DASHBOARD_CACHE_SECONDS", 5.0,
        "The dashboard's overview re-reads its 24-hour counts, and its experiments page their results, at most "
        "this often per process (0: every load).",
        at_least=0,
    )
    log_synchronous_commit: bool = setting(
        "RECSYS_LOG_SYNCHRONOUS_COMMIT", False,
        "Logging a served list waits for the WAL flush (an fsync); off: a PostgreSQL crash may lose ~0.6 s.",
    )
    log_group_commit: bool = setting(
        "RECSYS_LOG_GROUP_COMMIT", False,
        "Log concurrent requests' lists by one statement and one commit (off: each its own; cheaper at 4 connections).",
    )


@dataclass(frozen=True)
class Ranking(Group):
    """How a list is made from the candidates (``recsys.policy``): exclusions, exploration, blending."""

    exclude_played: str = setting(
        "RECSYS_EXCLUDE_PLAYED", "ever", "Slots a player played are not recommended: `ever`, or a number of days.",
        rules=(matches(r"ever|0*[1-9][0-9]*", "`ever` or a number of days"),),
    )
    exploration_share: float = setting(
        "RECSYS_EXPLORATION_SHARE", 0.1,
        "Share of a list's places given to exploration (Thompson sampling; docs/training.md gives its price).",
        at_least=0, at_most=1,
    )
    explore_max_impressions: int = setting(
        "RECSYS_EXPLORE_MAX_IMPRESSIONS", 200, "Slots with fewer impressions than this (and new ones) are explored.",
        at_least=1,
    )
    explore_seed: int | None = setting(
        "RECSYS_EXPLORE_SEED", None, "Seed of the exploration draws (per player); unset: fresh entropy."
    )
    provider_cap: int = setting("RECSYS_PROVIDER_CAP", 3, "At most this many slots of one provider in a list.",
                                at_least=1)
    blend_weight: float = setting(
        "RECSYS_BLEND_WEIGHT", 0.3,
        "Weight of the model's score against similarity when ranking (chosen by the trigger replay, docs/training.md).",
        at_least=0, at_most=1,
    )
    candidate_pool: int = setting(
        "RECSYS_CANDIDATE_POOL", 100, "Index neighbours fetched per list before exclusions.", at_least=1
    )

    @property
    def exclude_played_days(self) -> int | None:
        """Days of history behind the played-slot exclusion; None for ``ever``."""
        return None if self.exclude_played == "ever" else int(self.exclude_played)


@dataclass(frozen=True)
class Pipeline(Group):
    """The daily pipeline (``recsys pipeline``; docs/pipeline.md)."""

    at: str = setting(
        "RECSYS_PIPELINE_AT", "03:00", "UTC time at which `recsys pipeline schedule` starts the daily run.",
        rules=(matches(r"([01][0-9]|2[0-3]):[0-5][0-9]", "a UTC time HH:MM (00:00 .. 23:59)"),),
    )
    report_top_providers: int = setting(
        "RECSYS_REPORT_TOP_PROVIDERS", 8, "Providers coloured on the run report's slot map (the others grey).",
        at_least=1,
    )
    retention_days: int = setting(
        "RECSYS_RECOMMENDATION_RETENTION_DAYS", 400,
        "Served lists (and their feedback) are kept this many days, then dropped by month; 0: kept forever.",
        at_least=0,
    )


# --- the whole ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Every group. ``from_env`` and ``replace`` name a setting by its variable without ``RECSYS_``, in
    lower case (``train_reg`` is ``RECSYS_TRAIN_REG``, ``settings.training.reg``)."""

    database: Database = field(default_factory=Database)
    scoring: Scoring = field(default_factory=Scoring)
    training: Training = field(default_factory=Training)
    gate: Gate = field(default_factory=Gate)
    realtime: RealTime = field(default_factory=RealTime)
    serving: Serving = field(default_factory=Serving)
    ranking: Ranking = field(default_factory=Ranking)
    pipeline: Pipeline = field(default_factory=Pipeline)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> Settings:
        """Read the ``RECSYS_*`` variables; ``overrides`` (named as the class says) win over the environment."""
        environ = os.environ if environ is None else environ
        parsed = {
            key: _parse(variable, environ[variable], hint)
            for key, (_, _, variable, hint) in _index().items()
            if variable in environ
        }
        try:
            return cls().replace(**{**parsed, **overrides})
        except ConfigError as exc:
            key = exc.variable.removeprefix(PREFIX).lower()
            if key in parsed and key not in overrides:  # the text as set, not as parsed (``0``, not ``0.0``)
                raise ConfigError(exc.variable, environ[exc.variable], exc.reason) from None
            raise

    def replace(self, **changes) -> Settings:
        """A copy with some settings changed, each named as the class says (``train_epochs=3``); the
        changed groups check themselves again."""
        index = _index()
        unknown = set(changes) - set(index)
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        grouped: dict[str, dict[str, object]] = {}
        for key, value in changes.items():
            group, name, _, _ = index[key]
            grouped.setdefault(group, {})[name] = value
        return dataclasses.replace(
            self, **{group: dataclasses.replace(getattr(self, group), **values) for group, values in grouped.items()}
        )

    def flat(self, *groups: str) -> dict[str, object]:
        """Every setting of ``groups`` (all without), by its name as the class says (``train_reg``)."""
        return {
            key: getattr(getattr(self, group), name)
            for key, (group, name, _, _) in _index().items()
            if not groups or group in groups
        }

    def environment(self) -> dict[str, str]:
        """Every ``RECSYS_*`` variable with the text that ``from_env`` reads back as these settings."""
        return {PREFIX + key.upper(): _show(value) for key, value in self.flat().items()}

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str, str]]:
        """``(variable, default, allowed, meaning)`` for every setting, group by group in declaration order."""
        rows = []
        for group in dataclasses.fields(cls):
            for f in dataclasses.fields(group.default_factory):
                allowed = "; ".join(phrase for phrase, _ in f.metadata["rules"])
                rows.append((f.metadata["variable"], _show(f.default), allowed, f.metadata["doc"]))
        return rows


@functools.cache
def _index() -> dict[str, tuple[str, str, str, object]]:
    """``key -> (group, field, variable, type)`` for every setting; ``key`` is the variable without the
    prefix, in lower case."""
    index = {}
    for group in dataclasses.fields(Settings):
        cls = group.default_factory
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            variable = f.metadata["variable"]
            index[variable.removeprefix(PREFIX).lower()] = (group.name, f.name, variable, hints[f.name])
    return index


OTHER_VARIABLES = {
    "RECSYS_API_KEY": "recsys simulate's default --api-key",
    "RECSYS_IMPORT_DIR": "docker-compose.yml's import folder",
    "RECSYS_TEST_DATABASE_URL": "the tests' server (tests/conftest.py)",
    "RECSYS_TEST_DATA_DIR": "the tests' embedded server folder (tests/conftest.py)",
}
"""``RECSYS_*`` variables that are read, but not as settings: no warning for them."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One line for each ``RECSYS_*`` variable in ``environ`` that is no setting, naming the nearest
    setting when one is close (a misspelling is otherwise silently ignored: issue 23)."""
    import difflib

    known = [variable for _, _, variable, _ in _index().values()]
    lines = []
    for name in sorted(v for v in environ if v.startswith(PREFIX) and v not in known and v not in OTHER_VARIABLES):
        near = difflib.get_close_matches(name, known, n=1, cutoff=0.8)
        hint = f"did you mean {near[0]}?" if near else "README.md's \"Configuration\" lists the settings"
        lines.append(f"{name} is not a setting; {hint}")
    return lines


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


def _show(value) -> str:
    """A value as its variable's text (None: empty, an optional setting left unset)."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def markdown_table() -> str:
    """The README's configuration table: ``python -m recsys.settings`` prints it."""
    rows = ["| variable | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    rows += [
        f"| `{variable}` | {f'`{default}`' if default else ''} | {allowed} | {doc} |"
        for variable, default, allowed, doc in Settings.documentation()
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
