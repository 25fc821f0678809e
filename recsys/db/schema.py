"""The schema: SQLAlchemy Core tables, the one source the Alembic migrations are checked against.

Internal integer keys (``players.id``, ``slots.id``) stay inside the database; the casino's own
string ids are ``players.player_id`` and ``slots.slot_id``. Analysts' names for columns are
documented in docs/schema.md.
"""

from __future__ import annotations

import sqlalchemy as sa
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, UUID

from recsys.constants import (
    BET,
    EVENT_TYPES,
    FEEDBACK_ACTIONS,
    ID_LENGTH,
    MARKET_LENGTH,
    MODEL_STATUSES,
    REASONS,
    SCOPES,
    SESSION_TOTAL,
    SUPPRESSION_REASONS,
    TRIGGERS,
    VOLATILITIES,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)



ITEMS_ALIGNED = " AND ".join(f"cardinality({column}) = cardinality(slot_keys)"
                             for column in ("scores", "reasons", "explored"))
"""A logged list's item arrays have one element per item (``recommendations``' check ``items``)."""


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    ]


players = sa.Table(
    "players",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("player_id", sa.String(ID_LENGTH), nullable=False, unique=True),
    sa.Column("market", sa.String(MARKET_LENGTH)),
    sa.Column("registered_at", sa.DateTime(timezone=True)),
    sa.Column("self_excluded_until", sa.DateTime(timezone=True)),
    sa.Column("cooling_off_until", sa.DateTime(timezone=True)),
    # Fail-closed: a player whose consent is unknown is not marketed to.
    sa.Column("marketing_consent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("risk_flag", sa.Boolean, nullable=False, server_default=sa.false()),
    *_timestamps(),
    sa.CheckConstraint("player_id <> ''", name="player_id_not_empty"),
)

slots = sa.Table(
    "slots",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("slot_id", sa.String(ID_LENGTH), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("theme", sa.Text, nullable=False),
    sa.Column("volatility", sa.String(8), nullable=False),
    sa.Column("rtp", sa.Numeric(5, 2), nullable=False, comment="return to player, percent"),
    sa.Column("min_bet", sa.Numeric(*BET), nullable=False),
    sa.Column("max_bet", sa.Numeric(*BET), nullable=False),
    sa.Column("release_date", sa.Date),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column(
        "markets", ARRAY(sa.String(MARKET_LENGTH)), comment="markets where it may be offered; NULL = every market"
    ),
    *_timestamps(),
    sa.CheckConstraint("slot_id <> ''", name="slot_id_not_empty"),
    sa.CheckConstraint(_in("volatility", VOLATILITIES), name="volatility"),
    sa.CheckConstraint("rtp > 0 AND rtp <= 100", name="rtp_percent"),
    sa.CheckConstraint("min_bet >= 0 AND max_bet >= min_bet", name="bet_range"),
    # The slots a list may have to leave out (recsys.db.lists.read_player reads them per list).
    sa.Index(
        "ix_slots_hidden", "id", postgresql_include=["active", "markets"],
        postgresql_where=sa.text("NOT active OR markets IS NOT NULL"),
    ),
)

play_sessions = sa.Table(
    "play_sessions",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("session_id", sa.String(ID_LENGTH), nullable=False, unique=True),
    sa.Column("player_key", sa.BigInteger, sa.ForeignKey("players.id"), nullable=False),
    sa.Column("slot_key", sa.Integer, sa.ForeignKey("slots.id"), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("seconds", sa.Float, nullable=False, server_default="0", comment="continuous play time"),
    sa.Column("spins", sa.Integer, nullable=False, server_default="0"),
    sa.Column("total_bet", sa.Numeric(*SESSION_TOTAL), nullable=False, server_default="0"),
    sa.Column("total_win", sa.Numeric(*SESSION_TOTAL), nullable=False, server_default="0"),
    sa.Column("bonus", sa.Boolean, nullable=False, server_default=sa.false(), comment="bonus/promotion play"),
    # No foreign key: recommendations is partitioned (its key includes created_at); attribution
    # only ever names a logged list (migration 0006).
    sa.Column("recommendation_id", UUID(as_uuid=True)),
    sa.Column("trigger_fired_at", sa.DateTime(timezone=True), comment="when the long-session trigger fired"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("last_event_at >= started_at", name="event_order"),
    sa.CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="non_negative_duration"),
    sa.CheckConstraint("seconds >= 0 AND spins >= 0 AND total_bet >= 0 AND total_win >= 0", name="non_negative"),
    sa.Index(None, "player_key", "slot_key"),
    sa.Index(None, "slot_key"),
    sa.Index(None, "started_at"),
    sa.Index(None, "updated_at"),
    # The play of a list's item (the dashboard's funnel, the experiments' outcomes; migration 0013).
    sa.Index(None, "recommendation_id", "slot_key", postgresql_where=sa.text("recommendation_id IS NOT NULL")),
)

play_events = sa.Table(
    "play_events",
    metadata,
    sa.Column("event_id", sa.String(ID_LENGTH), primary_key=True),
    sa.Column("session_key", sa.BigInteger, sa.ForeignKey("play_sessions.id"), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="event time"),
    sa.Column("bet", sa.Numeric(*BET)),
    sa.Column("win", sa.Numeric(*BET)),
    sa.Column("bonus", sa.Boolean),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint(_in("type", EVENT_TYPES), name="type"),
    sa.CheckConstraint("bet IS NULL OR bet >= 0", name="bet_non_negative"),
    sa.CheckConstraint("win IS NULL OR win >= 0", name="win_non_negative"),
    sa.Index(None, "session_key", "ts"),
)

# One row per player x slot x UTC day of a session's start. Partitioned by month on ``day``
# (recsys.db.consolidation creates partitions as days arrive); history stays cheap to prune.
interactions = sa.Table(
    "interactions",
    metadata,
    sa.Column("player_key", sa.BigInteger, nullable=False),
    sa.Column("slot_key", sa.Integer, nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("sessions", sa.Integer, nullable=False),
    sa.Column("bonus_sessions", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("spins", sa.Integer, nullable=False),
    sa.Column("total_bet", sa.Numeric(16, 2), nullable=False),
    sa.Column("total_win", sa.Numeric(16, 2), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("normalized_score", sa.Float, nullable=False),
    sa.Column("consolidated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.PrimaryKeyConstraint("player_key", "slot_key", "day"),
    sa.CheckConstraint("normalized_score >= 0 AND normalized_score <= 1", name="normalized_unit"),
    sa.CheckConstraint("score >= 0", name="score_non_negative"),
    sa.Index(None, "day"),
    postgresql_partition_by="RANGE (day)",
)

job_watermarks = sa.Table(
    "job_watermarks",
    metadata,
    sa.Column("job", sa.String(64), primary_key=True),
    sa.Column("watermark", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="training"),
    sa.Column("model", sa.String(16), nullable=False, comment="neumf, gmf or mlp"),
    sa.Column("params", JSONB, nullable=False, comment="the NCFConfig that produced it"),
    sa.Column("data_start", sa.Date, comment="first interaction day used"),
    sa.Column("data_end", sa.Date, comment="last interaction day used (holdout included)"),
    sa.Column("holdout_start", sa.Date, comment="first day of the time-based holdout"),
    sa.Column("metrics", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("similarity_vector", sa.String(32), comment="which slot vector FAISS indexes"),
    sa.Column("n_players", sa.Integer),
    sa.Column("n_slots", sa.Integer),
    sa.Column("weights", BYTEA, comment="every non-embedding weight needed to score (npz)"),
    sa.Column("curve_path", sa.Text, comment="training-curve plot"),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("ready_at", sa.DateTime(timezone=True)),
    sa.Column("activated_at", sa.DateTime(timezone=True)),
    sa.Column("retired_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(_in("status", MODEL_STATUSES), name="status"),
    # At most one active version, enforced by the database.
    sa.Index("uq_model_versions_one_active", "status", unique=True, postgresql_where=sa.text("status = 'active'")),
)

player_embeddings = sa.Table(
    "player_embeddings",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("player_key", sa.BigInteger, sa.ForeignKey("players.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False, comment="row of this player in the version's tables"),
    sa.Column("gmf", Vector(), comment="GMF tower embedding"),
    sa.Column("mlp", Vector(), comment="MLP tower embedding"),
    sa.PrimaryKeyConstraint("version_id", "player_key"),
)

slot_embeddings = sa.Table(
    "slot_embeddings",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("slot_key", sa.Integer, sa.ForeignKey("slots.id"), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False, comment="row of this slot in the version's tables"),
    sa.Column("gmf", Vector(), comment="GMF tower embedding"),
    sa.Column("mlp", Vector(), comment="MLP tower embedding"),
    sa.Column("similarity", Vector(), nullable=False, comment="L2-normalised retrieval vector FAISS indexes"),
    sa.Column(
        "provisional",
        sa.Boolean,
        nullable=False,
        server_default=sa.false(),
        comment="built from attributes for a slot added after training",
    ),
    sa.PrimaryKeyConstraint("version_id", "slot_key"),
)

offline_recommendations = sa.Table(
    "offline_recommendations",
    metadata,
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id", ondelete="CASCADE"), nullable=False),
    sa.Column("player_key", sa.BigInteger, sa.ForeignKey("players.id"), nullable=False),
    sa.Column("slot_keys", ARRAY(sa.Integer), nullable=False, comment="best first"),
    sa.Column("scores", ARRAY(sa.Float), nullable=False),
    sa.PrimaryKeyConstraint("version_id", "player_key"),
)

# Partitioned by month of created_at: retention drops whole months (recsys.db.retention); the
# partitions are made by the migration and that module. A list's items are its four arrays, one
# element per item, best first (migration 0015: the log's PostgreSQL CPU per list 0.41 -> 0.31 ms);
# the view ``recommendation_items`` (that migration) gives them one row per item, for reading.
recommendations = sa.Table(
    "recommendations",
    metadata,
    sa.Column("id", UUID(as_uuid=True), nullable=False),
    sa.Column("player_key", sa.BigInteger, sa.ForeignKey("players.id"), nullable=False),
    sa.Column("version_id", sa.Integer, sa.ForeignKey("model_versions.id")),
    sa.Column("trigger", sa.String(32), nullable=False),
    sa.Column("context_slot_key", sa.Integer, sa.ForeignKey("slots.id")),
    sa.Column("session_key", sa.BigInteger, comment="play session that fired a session_threshold trigger"),
    sa.Column("market", sa.String(MARKET_LENGTH)),
    sa.Column("suppressed_reason", sa.String(32), comment="NULL when the gate allowed it"),
    sa.Column("action", sa.String(32), comment="e.g. reality_check instead of games"),
    sa.Column(
        "filters",
        JSONB,
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
        comment="what produced the list: candidate source, exclusions, exploration share, index",
    ),
    sa.Column("experiment_id", sa.Integer, comment="experiment the player was split by (recsys.experiments)"),
    sa.Column("arm", sa.String(64), comment="the experiment's arm that made the list"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("slot_keys", ARRAY(sa.Integer), nullable=False, server_default=sa.text("'{}'"),
              comment="the items' slots, best first (rank = position, from 1); empty for a suppressed list"),
    sa.Column("scores", ARRAY(sa.Float), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("reasons", ARRAY(sa.String(16)), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("explored", ARRAY(sa.Boolean), nullable=False, server_default=sa.text("'{}'")),
    sa.PrimaryKeyConstraint("id", "created_at"),
    sa.CheckConstraint(_in("trigger", TRIGGERS), name="trigger"),
    sa.CheckConstraint(ITEMS_ALIGNED, name="items"),
    sa.CheckConstraint(f"reasons <@ ARRAY[{', '.join(repr(r) for r in REASONS)}]::varchar[]", name="reasons"),
    sa.CheckConstraint(
        f"suppressed_reason IS NULL OR {_in('suppressed_reason', SUPPRESSION_REASONS)}", name="suppressed_reason"
    ),
    sa.Index(None, "player_key", "created_at"),
    sa.Index(None, "created_at"),
    # An experiment's lists without the rest of the log (recsys.db.experiments.outcomes); migration 0009.
    sa.Index("ix_recommendations_experiment", "experiment_id", "arm", "player_key",
             postgresql_where=sa.text("experiment_id IS NOT NULL")),
    postgresql_partition_by="RANGE (created_at)",
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("recommendation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("slot_key", sa.Integer, nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    # A feedback row must name an item of the recommendation it answers: recsys.db.feedback checks
    # it (no foreign key: a list's items are an array of its row, migration 0015).
    sa.UniqueConstraint("recommendation_id", "slot_key", "action"),
    sa.CheckConstraint(_in("action", FEEDBACK_ACTIONS), name="action"),
    sa.Index(None, "slot_key", "action"),
    # The feedback of a time window: a list's feedback arrives after the list (migration 0013).
    sa.Index(None, "received_at"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("prefix", sa.String(16), nullable=False, unique=True, comment="first characters, for lookup"),
    sa.Column("key_hash", sa.String(64), nullable=False, comment="SHA-256 hex of the whole key"),
    sa.Column("scopes", ARRAY(sa.String(16)), nullable=False),
    sa.Column("name", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.CheckConstraint(f"scopes <@ ARRAY[{', '.join(repr(s) for s in SCOPES)}]::varchar[]", name="scopes"),
)

# The synthetic generator's ground truth, so tests can check that the model recovers it.
synth_player_clusters = sa.Table(
    "synth_player_clusters",
    metadata,
    sa.Column("player_key", sa.BigInteger, sa.ForeignKey("players.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("cluster", sa.SmallInteger, nullable=False),
)

synth_slot_clusters = sa.Table(
    "synth_slot_clusters",
    metadata,
    sa.Column("slot_key", sa.Integer, sa.ForeignKey("slots.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("cluster", sa.SmallInteger, nullable=False),
)

PARTITIONED_TABLES = ("interactions", "recommendations")

# --- daily pipeline (recsys.pipeline) --------------------------------------------------------------
PIPELINE_STATUSES = ("running", "succeeded", "refused", "skipped", "failed")

# One row per `recsys pipeline run`. ``version_id`` has no foreign key on purpose: `recsys synth
# --reset` empties model_versions by name, and a run's history outlives the versions it produced.
pipeline_runs = sa.Table(
    "pipeline_runs",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("run_day", sa.Date, nullable=False, comment="UTC day the run started"),
    sa.Column("status", sa.String(16), nullable=False, server_default="running"),
    sa.Column("stage", sa.String(32), comment="stage running now, or the last one entered (the failing one)"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column(
        "stages",
        JSONB,
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
        comment="per stage: seconds and row counts",
    ),
    sa.Column(
        "inputs",
        JSONB,
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
        comment="what the run started from: sessions and their last update, end day, settings digest",
    ),
    sa.Column("version_id", sa.Integer, comment="model version the run produced"),
    sa.Column("error", sa.Text),
    sa.Column("report_path", sa.Text, comment="HTML run report"),
    sa.Column("host", sa.Text),
    sa.Column("pid", sa.Integer),
    sa.CheckConstraint(_in("status", PIPELINE_STATUSES), name="status"),
    # At most one running pipeline, enforced by the database besides the advisory lock.
    sa.Index("uq_pipeline_runs_one_running", "status", unique=True, postgresql_where=sa.text("status = 'running'")),
)

# --- A/B experiments between model versions (recsys.experiments) ---------------------------------
EXPERIMENT_STATUSES = ("running", "stopped")

experiments = sa.Table(
    "experiments",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("status", sa.String(16), nullable=False, server_default="running"),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("stopped_at", sa.DateTime(timezone=True)),
    sa.Column("promoted_arm", sa.String(64), comment="arm whose version was activated when it stopped"),
    sa.Column("min_effect", sa.Float, nullable=False, server_default="0.1",
              comment="relative lift in clicks per impression the sample is sized for (80 % power)"),
    sa.CheckConstraint(_in("status", EXPERIMENT_STATUSES), name="status"),
    sa.CheckConstraint("min_effect > 0 AND min_effect <= 10", name="min_effect_range"),
    sa.CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'", name="name_shape"),
    # One experiment at a time, enforced by the database.
    sa.Index("uq_experiments_one_running", "status", unique=True, postgresql_where=sa.text("status = 'running'")),
)

experiment_arms = sa.Table(
    "experiment_arms",
    metadata,
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("position", sa.SmallInteger, nullable=False, comment="0 = the control arm"),
    sa.Column("name", sa.String(64), nullable=False),
    # No foreign key, as pipeline_runs.version_id: an experiment's history outlives its versions.
    sa.Column("version_id", sa.Integer, comment="model version the arm ranks with; NULL = popularity"),
    sa.Column("weight", sa.Integer, nullable=False, comment="share of the experiment's players, relative"),
    sa.Column("strategy", sa.String(16),
              comment="baseline the arm ranks with (popularity, itemknn); NULL = its model version"),
    sa.PrimaryKeyConstraint("experiment_id", "position"),
    sa.UniqueConstraint("experiment_id", "name"),
    sa.CheckConstraint("weight > 0", name="weight_positive"),
    sa.CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]*$'", name="name_shape"),
    # Exactly one of a version and a strategy (migration 0012).
    sa.CheckConstraint("(version_id IS NULL) = (strategy IS NOT NULL) AND "
                       "(strategy IS NULL OR strategy IN ('popularity', 'itemknn'))", name="strategy"),
)

# An experiment's outcomes rolled up from the log, so that its results cost the same at any size of
# the log (recsys.db.experiment_rollups; migration 0014): one row per list of the experiment, and
# one per player of an arm summed from them.
experiment_list_outcomes = sa.Table(
    "experiment_list_outcomes",
    metadata,
    sa.Column("recommendation_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("player_key", sa.BigInteger, nullable=False),
    sa.Column("suppressed", sa.Boolean, nullable=False, comment="a list without games"),
    sa.Column("reality_check", sa.Boolean, nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("impressions", sa.Integer, nullable=False, comment="items with an impression"),
    sa.Column("clicks", sa.Integer, nullable=False),
    sa.Column("plays", sa.Integer, nullable=False, comment="items with a session attributed to the list"),
    sa.Column("dismissals", sa.Integer, nullable=False),
    sa.Column("click_seconds", ARRAY(sa.Float), nullable=False,
              comment="per clicked item, ascending: seconds of continuous play attributed to it (0 without)"),
    sa.Index(None, "experiment_id", "arm", "player_key"),
)

experiment_player_outcomes = sa.Table(
    "experiment_player_outcomes",
    metadata,
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), nullable=False),
    sa.Column("arm", sa.String(64), nullable=False),
    sa.Column("player_key", sa.BigInteger, nullable=False),
    sa.Column("lists", sa.Integer, nullable=False),
    sa.Column("suppressed", sa.Integer, nullable=False, comment="lists without games"),
    sa.Column("reality_checks", sa.Integer, nullable=False),
    sa.Column("items", sa.Integer, nullable=False),
    sa.Column("impressions", sa.Integer, nullable=False),
    sa.Column("clicks", sa.Integer, nullable=False),
    sa.Column("plays", sa.Integer, nullable=False),
    sa.Column("dismissals", sa.Integer, nullable=False),
    sa.Column("click_minutes", sa.Float, nullable=False, comment="minutes of play attributed to clicked items"),
    sa.Column("long_clicks", sa.Integer, nullable=False,
              comment="clicked items whose play reached experiment_rollups.threshold_seconds"),
    sa.PrimaryKeyConstraint("experiment_id", "arm", "player_key"),
)

# Where each experiment's rollup stands: changes of the log from ``watermark`` on may not be in it
# yet; ``frozen``: a stopped experiment's statistics, stored once nothing more is folded in.
experiment_rollups = sa.Table(
    "experiment_rollups",
    metadata,
    sa.Column("experiment_id", sa.Integer, sa.ForeignKey("experiments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("watermark", sa.DateTime(timezone=True),
              comment="lists created, feedback received and sessions updated from then on are read again; "
                      "NULL: never filled"),
    sa.Column("threshold_seconds", sa.Float, comment="the session threshold long_clicks counts against"),
    sa.Column("medians", JSONB, comment="per arm: the median minutes after a click, as the rows stand"),
    sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("frozen", JSONB, comment="per arm: players, totals, each metric's ratio and variance; NULL: live"),
    sa.Column("frozen_at", sa.DateTime(timezone=True)),
)

# A signed-in dashboard browser. Only the SHA-256 of the cookie's token is stored; the key it signed
# in with is checked again on every request, so revoking the key ends the session.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True, comment="SHA-256 hex of the cookie's token"),
    sa.Column("api_key_id", sa.Integer, sa.ForeignKey("api_keys.id", ondelete="CASCADE"), nullable=False),
    sa.Column("csrf_token", sa.String(64), nullable=False, comment="hidden field every admin form carries"),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index(None, "expires_at"),
)

# The HMAC key that signs the application's notifications (``recsys.db.channels``, migration 0010):
# anyone may LISTEN and send ``NOTIFY``, so a listener trusts only what this key signed. Stored as
# SHA-256's inner and outer pads, so SQL computes HMAC with the core ``sha256()``. No grant to the
# analyst role.
notify_keys = sa.Table(
    "notify_keys",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("inner_pad", sa.LargeBinary, nullable=False),
    sa.Column("outer_pad", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.CheckConstraint("id = 1", name="one_row"),
    comment="HMAC key of the application's notifications, as SHA-256's inner and outer pads; one row, "
    "readable by the application's role only",
)
