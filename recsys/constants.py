"""Values that both the database schema and the validation of input need: one definition each.

No imports: ``recsys.db.schema`` builds its columns and check constraints from these, and the
domain (``recsys.importing``, ``recsys.events``, ``recsys.synth``, ``api/``) validates against the
same values without importing the database layer.
"""

ID_LENGTH = 128
"""Characters of a casino id (``player_id``, ``slot_id``, ``session_id``, ``event_id``)."""
MARKET_LENGTH = 16
"""Characters of a market code."""
CONTROL_CHARACTERS = "[\x00-\x1f\x7f]"
"""A regular expression: no id or text may hold these (PostgreSQL refuses NUL in text; the others
forge log lines and break CSV exports)."""
VOLATILITIES = ("low", "medium", "high")
EVENT_TYPES = ("start", "heartbeat", "spin", "end")
MODEL_STATUSES = ("training", "ready", "active", "retired", "failed")
TRIGGERS = ("api", "session_threshold")
REASONS = ("similar", "personal", "explore", "popular", "cold_start")
SUPPRESSION_REASONS = ("self_excluded", "cooling_off", "no_consent", "risk_flag", "session_limit", "night_hours")
FEEDBACK_ACTIONS = ("impression", "click", "play", "dismiss")
SCOPES = ("read", "ingest", "admin")

BET = (12, 2)
"""``NUMERIC(precision, scale)`` of a slot's bet limits and of an event's bet and win."""
SESSION_TOTAL = (14, 2)
"""``NUMERIC(precision, scale)`` of a session's total bet and win."""


def numeric_limit(precision_scale: tuple[int, int]) -> float:
    """Values must round below 10^(precision - scale) to fit a ``NUMERIC(precision, scale)`` column."""
    precision, scale = precision_scale
    return float(10 ** (precision - scale))
