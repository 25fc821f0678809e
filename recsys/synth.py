"""A synthetic online casino with a known answer: slots, players and play sessions whose tastes cluster.

Pure numpy/pandas, no SQL and no I/O: ``recsys.db.synth_store`` writes what this module generates.
The model (docs/synthetic-data.md has the reasoning and the figures):

* **Catalogue.** ``clusters`` latent taste clusters, each a (theme, volatility) pair with favoured
  providers. Every slot belongs to one cluster; its theme, volatility and provider follow the
  cluster's most of the time. Providers' catalogue shares and slots' popularity follow power laws.
  Some slots are released during the period (they get a burst of trial), a few are disabled, some are
  restricted to a few markets.
* **Players.** Each player belongs to one cluster and has a heavy-tailed activity rate, a stake level,
  a session-length habit and a bonus propensity; a few are self-excluded, cooling off or risk-flagged.
* **Sessions.** A player's sessions are grouped into visits (several slots in one sitting, one after
  the other, never overlapping). Each session goes to a slot of the player's *repertoire*: a few slots
  drawn mostly from the player's cluster (``cluster_affinity``), the rest from the whole catalogue by
  popularity; heavy players have larger repertoires. A small share goes to a recent release instead.

Determinism: the same ``SynthConfig`` gives byte-identical frames. The catalogue is drawn from
``SeedSequence(seed, spawn_key=(0,))`` and the players ``[i * 10_000, (i + 1) * 10_000)`` from
``SeedSequence(seed, spawn_key=(1, i))``, so the output does not depend on how many players are
generated at a time (``block_players``), only on the configuration.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from statistics import NormalDist

import numpy as np
import pandas as pd

from recsys.constants import VOLATILITIES
from recsys.errors import InputError

THEMES = (
    "fruit",
    "egyptian",
    "asian",
    "mythology",
    "adventure",
    "animals",
    "megaways",
    "jackpot",
    "fantasy",
    "irish",
)

# (market, share of players, UTC offset in hours of its evening peak): European-licensed casinos
# with one North American market; offsets move the local-time diurnal curve to UTC.
MARKETS = (
    ("GB", 0.30, 0),
    ("DE", 0.18, 1),
    ("SE", 0.12, 1),
    ("NL", 0.10, 1),
    ("ES", 0.09, 1),
    ("IT", 0.09, 1),
    ("DK", 0.05, 1),
    ("CA-ON", 0.07, -5),
)

# Relative share of visits starting in each local hour 0..23: low before dawn, peak 19-22 h (the
# evening peak every operator reports), a long tail past midnight that night-hours rules care about.
HOURLY_PROFILE = (
    3.0, 2.2, 1.5, 1.0, 0.7, 0.6, 0.7, 1.0, 1.4, 1.8, 2.1, 2.4,
    2.7, 2.8, 2.9, 3.1, 3.4, 3.9, 4.5, 5.0, 5.4, 5.5, 5.0, 4.0,
)  # fmt: skip

# The random stream of players [i * PLAYERS_PER_STREAM, (i + 1) * PLAYERS_PER_STREAM) is
# SeedSequence(seed, spawn_key=(1, i)). A constant, not a setting: changing it changes every casino.
PLAYERS_PER_STREAM = 10_000

SESSION_ID_PREFIX = "ses-"
SESSION_ID_DIGITS = 12

_THEME_WORDS = {
    "fruit": ("Fruit", "Cherry", "Melon", "Lemon", "Berry", "Citrus", "Sevens", "Plum"),
    "egyptian": ("Pharaoh", "Cleopatra", "Sphinx", "Nile", "Scarab", "Pyramid", "Anubis", "Osiris"),
    "asian": ("Dragon", "Panda", "Koi", "Jade", "Lotus", "Tiger", "Lantern", "Shogun"),
    "mythology": ("Zeus", "Olympus", "Odin", "Medusa", "Titan", "Valkyrie", "Hercules", "Poseidon"),
    "adventure": ("Explorer", "Jungle", "Temple", "Treasure", "Voyage", "Quest", "Pirate", "Expedition"),
    "animals": ("Wolf", "Buffalo", "Eagle", "Lion", "Bear", "Rhino", "Gorilla", "Stallion"),
    "megaways": ("Mega", "Cascade", "Avalanche", "Reelstorm", "Multiway", "Tumble", "Chain", "Cluster"),
    "jackpot": ("Jackpot", "Millionaire", "Vault", "Diamond", "Crown", "Bullion", "Bank", "Gold Rush"),
    "fantasy": ("Wizard", "Unicorn", "Fairy", "Elf", "Goblin", "Crystal", "Enchanted", "Spellbook"),
    "irish": ("Leprechaun", "Clover", "Rainbow", "Shamrock", "Celtic", "Lucky", "Emerald", "Blarney"),
}
_NAME_SUFFIXES = (
    "Gold", "Riches", "Deluxe", "Rising", "Legends", "Fortune", "Wilds", "Treasures",
    "Bonanza", "Power", "Blitz", "Kingdom", "Hold and Win", "Reels", "Magic", "Quest",
)  # fmt: skip
_PROVIDER_FIRST = (
    "Nordic", "Golden", "Lucky", "Red", "Blue", "Iron", "Silver", "Wild",
    "Royal", "Neon", "Crystal", "Thunder", "Pixel", "Star", "Polar", "Big",
)  # fmt: skip
_PROVIDER_SECOND = ("Spin", "Reel", "Games", "Play", "Studios", "Gaming", "Labs", "Works", "Forge", "Fox")
_MIN_BETS = (
    (0.01, 0.10),
    (0.02, 0.10),
    (0.05, 0.15),
    (0.10, 0.25),
    (0.20, 0.20),
    (0.25, 0.10),
    (0.50, 0.07),
    (1.00, 0.03),
)
_MAX_BETS = ((10, 0.05), (20, 0.10), (50, 0.20), (100, 0.30), (200, 0.15), (250, 0.10), (500, 0.10))
_DAY = 86_400


@dataclass(frozen=True)
class SynthConfig:
    """Everything that decides the synthetic casino; the same config gives byte-identical data.

    Orders of magnitude come from the product brief's "What real casino data looks like" (PRODUCT.md,
    which is not in this repository); each default says why it was chosen. docs/synthetic-data.md
    lists the resulting figures at casino scale against those orders of magnitude.
    """

    # --- size ------------------------------------------------------------------------------------
    players: int = 10_000
    """Active players (each has at least one session). PRODUCT.md: 10^4-10^6."""

    slots: int = 1_000
    """Slots in the catalogue. PRODUCT.md: a few hundred to ~10,000."""

    days: int = 90
    """Length of the play history; the synthetic "now" is ``start + days`` (midnight UTC)."""

    seed: int = 0
    start: date = date(2025, 1, 1)
    """First day of the history (UTC). Fixed so the library default is deterministic; the CLI
    defaults to ``today - days`` so that a demo casino's history ends today."""

    # --- catalogue -------------------------------------------------------------------------------
    providers: int = 40
    """"Tens of providers"."""

    provider_exponent: float = 1.1
    """Zipf exponent of the providers' catalogue shares: with 40 providers the top 5 hold about half
    the catalogue ("a handful of providers dominate")."""

    provider_popularity: float = 0.5
    """A slot's popularity is multiplied by ``provider_weight ** provider_popularity``: the big
    studios' games are also the most played (their launch marketing)."""

    popularity_exponent: float = 1.0
    """Zipf exponent of slot popularity ("a power law"): with 5,000 slots the top 10 % of slots take
    about three quarters of the sessions, the long tail is rarely played."""

    themes: tuple[str, ...] = THEMES
    rtp_mean: float = 96.0
    """Mean return to player, percent; with ``rtp_sd`` about 90 % of slots lie in 94-97 %."""

    rtp_sd: float = 0.8
    jackpot_rtp_discount: float = 2.0
    """Jackpot slots pay part of the RTP into the jackpot: their base RTP is this much lower."""

    new_release_share: float = 0.05
    """Share of the catalogue released during the period: 250 of 5,000 slots in 90 days is about 20
    new games a week, what a large casino adds."""

    release_burst_days: float = 7.0
    """E-folding time, days, of a new release's burst of trial."""

    trial_share: float = 0.03
    """Share of sessions that go to a recent release (the lobby's "new games" row) instead of the
    player's repertoire, when one was released in the last few ``release_burst_days``."""

    launch_bonus_share: float = 0.5
    """Share of those trial sessions played with launch free spins (bonus play)."""

    inactive_share: float = 0.02
    """Share of slots disabled by the operator (they keep their history)."""

    restricted_share: float = 0.10
    """Share of slots offered in only one to three markets (licensing); ``markets`` is NULL otherwise."""

    # --- tastes ----------------------------------------------------------------------------------
    clusters: int = 12
    """Latent taste clusters, each a (theme, volatility) pair of the 10 x 3 grid: the structure the
    model must recover."""

    cluster_concentration: float = 4.0
    """Dirichlet concentration of the clusters' sizes (shared by players and slots): 4 gives sizes
    from about half to about twice the mean."""

    cluster_affinity: float = 0.8
    """Share of a player's repertoire drawn from their own cluster; the rest follows global
    popularity. Own-cluster play is then about 0.8 + 0.2 / clusters, far above the 1 / clusters of
    random play, while the popular games still reach everyone."""

    theme_fidelity: float = 0.85
    """Probability that a slot's theme is its cluster's theme (otherwise uniform)."""

    volatility_fidelity: float = 0.75
    """Probability that a slot's volatility is its cluster's volatility (otherwise uniform)."""

    provider_affinity: float = 0.4
    """Probability that a slot comes from one of its cluster's two favoured providers."""

    # --- players ---------------------------------------------------------------------------------
    markets: tuple[tuple[str, float, int], ...] = MARKETS
    """(market, share of players, UTC offset in hours)."""

    registered_before_share: float = 0.75
    """Players registered before the period (the rest register during it, uniformly)."""

    history_years: float = 3.0
    """Registrations before the period are uniform over this many years."""

    marketing_consent_share: float = 0.85
    self_excluded_share: float = 0.02
    """Players self-excluded in the period's last 60 days, until 6 months, 1 or 5 years later (UK
    GAMSTOP/Spelpaus durations): always in the future at "now". They have no play after it started."""

    cooling_off_share: float = 0.01
    """Players in a cooling-off period (1 to 6 weeks, LCCP) that started in the last 6 days."""

    risk_flag_share: float = 0.03
    """Players flagged by the operator's harm model; the flag leans towards long, frequent play."""

    # --- activity --------------------------------------------------------------------------------
    mean_daily_sessions: float = 0.11
    """Mean sessions per player per day present, on top of every player's first one. Activity rates
    are log-normal (``activity_sigma``): about 10 sessions per player over 90 days, so 10^6 players
    give about 10^7 sessions; the median player has 4, about 1 % play more than once a day."""

    activity_sigma: float = 1.5
    max_daily_sessions: float = 30.0
    """Cap on a player's activity rate (a whale, not a bot)."""

    sessions_per_visit: float = 2.0
    """Mean sessions per visit: a sitting goes through a slot or two, one after the other."""

    repertoire_exponent: float = 0.7
    """A player with n sessions draws ``ceil(n ** 0.7)`` repertoire slots: 1 session -> 1 slot, 4 -> 3,
    10 -> 6, 100 -> 26, 300 -> 55 ("light players try a few slots, a minority plays dozens"; repeated
    draws of popular slots make the distinct counts a little lower)."""

    favourite_skew: float = 2.0
    """Sessions pick repertoire entry ``floor(r * u ** skew)``: the first (favourite) slot gets
    ``1 / sqrt(r)`` of the sessions, the others less and less."""

    # --- session length and money ----------------------------------------------------------------
    median_session_minutes: float = 8.0
    session_sigma: float = 1.0
    """Log-normal sessions: median 8 minutes, mean about 15; with ``player_length_sigma`` about 3 %
    of sessions last over an hour ("most sessions last minutes, a long tail lasts hours")."""

    player_length_sigma: float = 0.45
    """Spread of players' habitual session length (log scale): some players always play long."""

    min_session_seconds: int = 10
    max_session_hours: float = 12.0
    mean_seconds_per_spin: float = 4.0
    """Seconds per spin, uniform in [0.6, 1.4] x this per session (autoplay ~3 s, manual ~5 s)."""

    median_bet: float = 0.40
    """Median stake per spin, in the casino's currency; log-normal over players (``bet_sigma``) and
    clipped to each slot's bet range."""

    bet_sigma: float = 1.0
    volatility_cv: tuple[float, float, float] = (3.0, 6.0, 12.0)
    """Per-spin coefficient of variation of wins for low/medium/high volatility; a session's total
    win is Gamma-distributed with mean ``rtp * total_bet`` and this spread over its spins."""

    bonus_share: float = 0.10
    """Mean share of bonus/promotion-driven sessions; players' propensities are Beta(0.5, .)
    distributed, so a few bonus hunters play mostly on promotions."""

    def validate(self) -> SynthConfig:
        """Raise ``InputError`` naming the first invalid field; return ``self``."""

        def fail(name: str, message: str) -> None:
            raise InputError("synth config", message, field=name)

        for name in ("players", "slots", "days", "providers", "clusters"):
            if getattr(self, name) < 1:
                fail(name, "must be at least 1")
        if self.slots < self.clusters:
            fail("slots", f"must be at least clusters ({self.clusters}): every cluster needs a slot")
        if self.seed < 0:
            fail("seed", "must not be negative")
        if not self.themes:
            fail("themes", "must not be empty")
        shares = (
            "new_release_share",
            "trial_share",
            "launch_bonus_share",
            "inactive_share",
            "restricted_share",
            "cluster_affinity",
            "theme_fidelity",
            "volatility_fidelity",
            "provider_affinity",
            "registered_before_share",
            "marketing_consent_share",
            "self_excluded_share",
            "cooling_off_share",
            "risk_flag_share",
        )
        for name in shares:
            if not 0 <= getattr(self, name) <= 1:
                fail(name, "must be in [0, 1]")
        if not 0 < self.bonus_share < 1:
            fail("bonus_share", "must be in (0, 1)")
        if self.self_excluded_share + self.cooling_off_share > 1:
            fail("cooling_off_share", "self_excluded_share + cooling_off_share must not exceed 1")
        positive = (
            "provider_exponent",
            "popularity_exponent",
            "release_burst_days",
            "cluster_concentration",
            "history_years",
            "mean_daily_sessions",
            "max_daily_sessions",
            "sessions_per_visit",
            "repertoire_exponent",
            "favourite_skew",
            "median_session_minutes",
            "max_session_hours",
            "mean_seconds_per_spin",
            "median_bet",
            "rtp_mean",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                fail(name, "must be positive")
        for name in (
            "provider_popularity",
            "activity_sigma",
            "session_sigma",
            "player_length_sigma",
            "bet_sigma",
            "rtp_sd",
            "jackpot_rtp_discount",
        ):
            if getattr(self, name) < 0:
                fail(name, "must not be negative")
        if self.sessions_per_visit < 1:
            fail("sessions_per_visit", "must be at least 1")
        if self.min_session_seconds < 1 or self.min_session_seconds > self.max_session_hours * 3600:
            fail("min_session_seconds", "must be at least 1 and below max_session_hours")
        if not self.markets or any(share <= 0 for _, share, _ in self.markets):
            fail("markets", "needs at least one market, each with a positive share")
        if len(self.volatility_cv) != len(VOLATILITIES) or min(self.volatility_cv) <= 0:
            fail("volatility_cv", "needs one positive value per volatility (low, medium, high)")
        return self

    @property
    def start_ts(self) -> int:
        """Unix time (seconds) of the first day's midnight UTC."""
        return int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC).timestamp())

    @property
    def now_ts(self) -> int:
        """Unix time of the synthetic "now", the end of the history."""
        return self.start_ts + self.days * _DAY

    @property
    def now(self) -> datetime:
        return datetime.combine(self.start + timedelta(days=self.days), datetime.min.time(), tzinfo=UTC)

    def replace(self, **changes) -> SynthConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Catalogue:
    """The slots and what sessions need to pick them.

    ``slots`` has the ``slots`` table's columns with ``id`` = slot_key 1..M; ``slot_clusters`` has
    ``slot_key, cluster``. The arrays (shape ``(M,)`` unless said) are indexed by ``slot_key - 1``.
    """

    slots: pd.DataFrame
    slot_clusters: pd.DataFrame
    cluster: np.ndarray
    cluster_weights: np.ndarray
    """Shape ``(clusters,)``: the clusters' sizes, shared by slots and players."""
    popularity: np.ndarray
    """Relative popularity weights (power law)."""
    release_ts: np.ndarray
    """Unix time of the release day's midnight."""
    available: np.ndarray
    """Shape ``(M, markets)``: the slot may be played in that market."""
    volatility: np.ndarray
    """Index into VOLATILITIES."""
    rtp: np.ndarray
    min_bet_cents: np.ndarray
    max_bet_cents: np.ndarray
    # Sampling tables, rows of cumulative probabilities, shape (clusters + 1, M): row c draws from
    # cluster c by popularity, the last row from the whole catalogue; "safe" rows only from slots that
    # every market may play since before the period (a player's favourite).
    choice_cdf: np.ndarray = field(repr=False)
    safe_cdf: np.ndarray = field(repr=False)
    trial_cdf: np.ndarray = field(repr=False)
    """Shape ``(days, n_new)``: per day of the period, recent releases weighted by their burst."""
    trial_slots: np.ndarray = field(repr=False)
    """Shape ``(n_new,)``: slot_key - 1 of the columns of ``trial_cdf``."""


@dataclass(frozen=True)
class PlayerBlock:
    """Consecutive players with their ground-truth clusters and their sessions.

    ``players`` has the ``players`` table's columns (``id`` = player_key); ``player_clusters`` has
    ``player_key, cluster``; ``sessions`` has the ``play_sessions`` columns the generator fills, with
    ``id`` = session key, sorted by player then start.
    """

    players: pd.DataFrame
    player_clusters: pd.DataFrame
    sessions: pd.DataFrame


@dataclass(frozen=True)
class Casino:
    """A whole casino in memory (for small sizes: tests, notebooks)."""

    config: SynthConfig
    slots: pd.DataFrame
    slot_clusters: pd.DataFrame
    players: pd.DataFrame
    player_clusters: pd.DataFrame
    sessions: pd.DataFrame


def generate_casino(config: SynthConfig) -> Casino:
    """Generate everything in memory; for large casinos use ``generate_players`` block by block."""
    catalogue = generate_catalogue(config)
    blocks = list(generate_players(config, catalogue))
    return Casino(
        config=config,
        slots=catalogue.slots,
        slot_clusters=catalogue.slot_clusters,
        players=pd.concat([b.players for b in blocks], ignore_index=True),
        player_clusters=pd.concat([b.player_clusters for b in blocks], ignore_index=True),
        sessions=pd.concat([b.sessions for b in blocks], ignore_index=True),
    )


def session_ids(keys: np.ndarray) -> np.ndarray:
    """The casino's session ids for session keys, shape ``(n,)`` -> fixed-width bytes ``S16``
    (``ses-000000000042``): deterministic and unique, built without a Python loop."""
    keys = np.asarray(keys, dtype=np.int64)
    if len(keys) and keys.max() >= 10**SESSION_ID_DIGITS:
        raise ValueError(f"session key {keys.max()} has more than {SESSION_ID_DIGITS} digits")
    width = len(SESSION_ID_PREFIX) + SESSION_ID_DIGITS
    out = np.empty((len(keys), width), dtype=np.uint8)
    out[:, : len(SESSION_ID_PREFIX)] = np.frombuffer(SESSION_ID_PREFIX.encode(), dtype=np.uint8)
    out[:, len(SESSION_ID_PREFIX) :] = decimal_digits(keys, SESSION_ID_DIGITS)
    return out.view(f"S{width}").ravel()


def decimal_digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded ASCII decimal digits of non-negative integers: shape ``(n,)`` -> ``(n, width)`` uint8."""
    remaining = np.asarray(values, dtype=np.int64).copy()
    out = np.empty((len(remaining), width), dtype=np.uint8)
    for position in range(width - 1, -1, -1):
        np.remainder(remaining, 10, out=out[:, position], casting="unsafe")
        remaining //= 10
    out += ord("0")
    return out


# --- catalogue -----------------------------------------------------------------------------------


def generate_catalogue(config: SynthConfig) -> Catalogue:
    """The slots, their ground-truth clusters and the tables sessions are drawn from."""
    config.validate()
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    n, k = config.slots, config.clusters
    themes = config.themes

    # Clusters: distinct (theme, volatility) pairs while the grid lasts, sizes from a Dirichlet.
    grid = [(t, v) for t in range(len(themes)) for v in range(len(VOLATILITIES))]
    order = rng.permutation(len(grid))
    cluster_theme = np.array([grid[order[c % len(grid)]][0] for c in range(k)])
    cluster_volatility = np.array([grid[order[c % len(grid)]][1] for c in range(k)])
    cluster_weights = rng.dirichlet(np.full(k, config.cluster_concentration))

    provider_weight = _zipf(config.providers, config.provider_exponent)
    provider_names = _provider_names(rng, config.providers)
    favoured = rng.choice(config.providers, size=(k, 2), p=provider_weight)

    # Every cluster gets at least one slot; the rest follow the cluster sizes.
    cluster = rng.permutation(np.concatenate([np.arange(k), rng.choice(k, size=n - k, p=cluster_weights)]))
    theme = np.where(rng.random(n) < config.theme_fidelity, cluster_theme[cluster], rng.integers(len(themes), size=n))
    volatility = np.where(
        rng.random(n) < config.volatility_fidelity,
        cluster_volatility[cluster],
        rng.integers(len(VOLATILITIES), size=n),
    )
    provider = np.where(
        rng.random(n) < config.provider_affinity,
        favoured[cluster, rng.integers(2, size=n)],
        rng.choice(config.providers, size=n, p=provider_weight),
    )
    popularity = (rng.permutation(n) + 1.0) ** -config.popularity_exponent
    popularity *= provider_weight[provider] ** config.provider_popularity
    popularity /= popularity.sum()

    jackpot = np.array([t == "jackpot" for t in themes])[theme]
    rtp = np.round(
        np.clip(rng.normal(config.rtp_mean, config.rtp_sd, n) - config.jackpot_rtp_discount * jackpot, 85.0, 99.5), 2
    )
    min_bet = _pick(rng, _MIN_BETS, n)
    max_bet = _pick(rng, _MAX_BETS, n).astype(float)

    # Releases: established slots over the 8 years before the period, more of them recent; new ones
    # uniformly during it.
    is_new = rng.random(n) < config.new_release_share
    age_days = 30 + np.floor(rng.random(n) ** 1.5 * 8 * 365)
    release_day = np.where(is_new, rng.integers(config.days, size=n), -age_days).astype(np.int64)
    active = rng.random(n) >= config.inactive_share
    n_markets = len(config.markets)
    restricted = rng.random(n) < config.restricted_share
    market_count = rng.integers(1, min(3, n_markets) + 1, size=n)
    market_rank = np.argsort(rng.random((n, n_markets)), axis=1).argsort(axis=1)
    available = ~restricted[:, None] | (market_rank < market_count[:, None])

    # Each cluster's most popular slot is a safe favourite: established, everywhere, active.
    for c in range(k):
        members = np.flatnonzero(cluster == c)
        top = members[np.argmax(popularity[members])]
        is_new[top], active[top], restricted[top], available[top] = False, True, False, True
        release_day[top] = min(release_day[top], -30)
    safe = ~is_new & active & ~restricted

    names = _slot_names(rng, themes, theme)
    slugs = [_slug(provider_names[p]) + "-" + _slug(name) for p, name in zip(provider, names, strict=True)]
    assert len(set(slugs)) == n, "slot ids must be unique"
    market_codes = [code for code, _, _ in config.markets]
    markets = [
        [market_codes[m] for m in np.flatnonzero(row)] if r else None
        for row, r in zip(available, restricted, strict=True)
    ]
    keys = np.arange(1, n + 1, dtype=np.int64)
    slots = pd.DataFrame(
        {
            "id": keys,
            "slot_id": slugs,
            "name": names,
            "provider": [provider_names[p] for p in provider],
            "theme": np.array(themes, dtype=object)[theme],
            "volatility": np.array(VOLATILITIES, dtype=object)[volatility],
            "rtp": rtp,
            "min_bet": min_bet,
            "max_bet": max_bet,
            "release_date": [config.start + timedelta(days=int(d)) for d in release_day],
            "active": active,
            "markets": markets,
        }
    )
    slot_clusters = pd.DataFrame({"slot_key": keys, "cluster": cluster.astype(np.int16)})

    member = cluster[None, :] == np.arange(k)[:, None]
    choice_weights = np.vstack([member * popularity, popularity])
    safe_weights = choice_weights * safe
    release_ts = config.start_ts + release_day * _DAY
    trial_slots = np.flatnonzero(is_new & active)
    age = np.arange(config.days)[:, None] - release_day[trial_slots][None, :]
    trial_weights = np.where(
        age >= 0, popularity[trial_slots] * np.exp(-np.maximum(age, 0) / config.release_burst_days), 0.0
    )
    # Beyond ~5 e-folding times the burst is over: those slots are back in the ordinary draws.
    trial_weights[age > 5 * config.release_burst_days] = 0.0
    return Catalogue(
        slots=slots,
        slot_clusters=slot_clusters,
        cluster=cluster,
        cluster_weights=cluster_weights,
        popularity=popularity,
        release_ts=release_ts,
        available=available,
        volatility=volatility,
        rtp=rtp,
        min_bet_cents=np.rint(min_bet * 100).astype(np.int64),
        max_bet_cents=np.rint(max_bet * 100).astype(np.int64),
        choice_cdf=_cdf_rows(choice_weights),
        safe_cdf=_cdf_rows(safe_weights),
        trial_cdf=_cdf_rows(trial_weights),
        trial_slots=trial_slots,
    )


def _zipf(n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def _pick(rng: np.random.Generator, table: tuple[tuple[float, float], ...], n: int) -> np.ndarray:
    values = np.array([v for v, _ in table])
    p = np.array([w for _, w in table])
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def _provider_names(rng: np.random.Generator, count: int) -> list[str]:
    combos = [f"{a} {b}" for a in _PROVIDER_FIRST for b in _PROVIDER_SECOND]
    order = rng.permutation(len(combos))
    return [
        combos[order[i % len(combos)]] + ("" if i < len(combos) else f" {i // len(combos) + 1}") for i in range(count)
    ]


def _slot_names(rng: np.random.Generator, themes: tuple[str, ...], theme: np.ndarray) -> list[str]:
    """Theme word + suffix (``Pharaoh Riches``); a repeated name becomes a sequel (``Pharaoh Riches 2``)."""
    words = [_THEME_WORDS.get(t, (t.title(),)) for t in themes]
    word_pick = rng.integers(1 << 30, size=len(theme))
    suffix_pick = rng.integers(len(_NAME_SUFFIXES), size=len(theme))
    seen: dict[str, int] = {}
    names = []
    for t, w, s in zip(theme, word_pick, suffix_pick, strict=True):
        base = f"{words[t][w % len(words[t])]} {_NAME_SUFFIXES[s]}"
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base} {seen[base]}")
    return names


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _cdf_rows(weights: np.ndarray) -> np.ndarray:
    """Row-wise cumulative distribution; a row of zeros stays zeros (nothing to draw)."""
    cdf = np.cumsum(weights, axis=1)
    total = cdf[:, -1:] if cdf.shape[1] else np.zeros((len(cdf), 1))
    return np.divide(cdf, total, out=np.zeros_like(cdf), where=total > 0)


def _draw_rows(cdf: np.ndarray, row: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from ``cdf[row[i]]`` with uniform ``u[i]``; one searchsorted per distinct row."""
    out = np.empty(len(row), dtype=np.int64)
    last = cdf.shape[1] - 1
    for r in np.unique(row):
        mask = row == r
        out[mask] = np.minimum(np.searchsorted(cdf[r], u[mask], side="right"), last)
    return out


# --- players and sessions ------------------------------------------------------------------------


def generate_players(
    config: SynthConfig, catalogue: Catalogue, *, block_players: int = 50_000
) -> Iterator[PlayerBlock]:
    """Players and their sessions, ``block_players`` players at a time: memory grows with the block,
    not with the casino. The output does not depend on ``block_players`` (rounded up to a multiple of
    ``PLAYERS_PER_STREAM``). Session keys run 1..S over the whole casino in (player, start) order."""
    config.validate()
    streams_per_block = max(1, math.ceil(block_players / PLAYERS_PER_STREAM))
    n_streams = math.ceil(config.players / PLAYERS_PER_STREAM)
    next_session_key = 1
    for first in range(0, n_streams, streams_per_block):
        parts = []
        for stream in range(first, min(first + streams_per_block, n_streams)):
            part = _generate_stream(config, catalogue, stream, next_session_key)
            next_session_key += len(part.sessions)
            parts.append(part)
        if len(parts) == 1:
            yield parts[0]
        else:
            yield PlayerBlock(
                players=pd.concat([p.players for p in parts], ignore_index=True),
                player_clusters=pd.concat([p.player_clusters for p in parts], ignore_index=True),
                sessions=pd.concat([p.sessions for p in parts], ignore_index=True),
            )


def _generate_stream(config: SynthConfig, cat: Catalogue, stream: int, first_session_key: int) -> PlayerBlock:
    """Players ``[stream * PLAYERS_PER_STREAM, ...)`` from their own random stream, fully vectorized.

    The steps draw from ``rng`` in this order, which the byte-identical output depends on.
    """
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(1, stream)))
    p0 = stream * PLAYERS_PER_STREAM
    n = min(PLAYERS_PER_STREAM, config.players - p0)
    who = _who_they_are(config, cat, rng, n)
    habits = _habits(config, rng, who)
    visit_ts = _visits(rng, who, habits.n_visits)
    sessions = _sessions(config, rng, who, habits, visit_ts)
    slot, trial = _which_slot(config, cat, rng, who, habits, sessions)
    money = _spins_and_money(config, cat, rng, habits, sessions, slot, trial)
    return _frames(config, p0, first_session_key, who, habits, sessions, slot, money)


@dataclass(frozen=True)
class _Who:
    """One stream's players as the casino knows them, arrays of shape (n,); times in epoch seconds."""

    cluster: np.ndarray
    market: np.ndarray  # index into config.markets
    utc_offset: np.ndarray  # hours
    registered: np.ndarray
    consent: np.ndarray
    self_excluded: np.ndarray
    cooling: np.ndarray
    excluded_until: np.ndarray
    cooling_until: np.ndarray
    window_start: np.ndarray  # the player can play from here ...
    window_end: np.ndarray  # ... to here: now, or the start of their self-exclusion / cooling-off


def _who_they_are(config: SynthConfig, cat: Catalogue, rng: np.random.Generator, n: int) -> _Who:
    start, now = config.start_ts, config.now_ts
    cluster = rng.choice(config.clusters, size=n, p=cat.cluster_weights)
    market_share = np.array([s for _, s, _ in config.markets], dtype=float)
    market = rng.choice(len(market_share), size=n, p=market_share / market_share.sum())
    utc_offset = np.array([o for _, _, o in config.markets], dtype=np.int64)[market]
    before = rng.random(n) < config.registered_before_share
    history = config.history_years * 365 * _DAY
    registered = np.where(
        before,
        start - 1 - np.floor(rng.random(n) * history),
        start + np.floor(rng.random(n) * max(now - _DAY - start, 0)),
    ).astype(np.int64)
    consent = rng.random(n) < config.marketing_consent_share
    protection = rng.random(n)
    self_excluded = protection < config.self_excluded_share
    cooling = ~self_excluded & (protection < config.self_excluded_share + config.cooling_off_share)

    # The window in which the player can play: from registration (or the period's start) to now, or
    # to the start of their self-exclusion / cooling-off.
    window_start = np.maximum(registered, start)
    # (registration is at least a day before now, so an hour of play always fits)
    recent = np.maximum(window_start + 3600, now - 60 * _DAY)
    excluded_from = recent + np.floor(rng.random(n) * (now - recent)).astype(np.int64)
    excluded_until = excluded_from + rng.choice([182, 365, 1826], size=n) * _DAY
    cooling_from = np.maximum(now - np.floor(rng.random(n) * 6 * _DAY).astype(np.int64), window_start + 3600)
    cooling_until = cooling_from + rng.choice([7, 14, 30, 42], size=n) * _DAY
    window_end = np.where(self_excluded, excluded_from, np.where(cooling, cooling_from, now))
    return _Who(cluster, market, utc_offset, registered, consent, self_excluded, cooling, excluded_until,
                cooling_until, window_start, window_end)


@dataclass(frozen=True)
class _Habits:
    """How each player plays, arrays of shape (n,)."""

    z_length: np.ndarray  # the player's session-length factor (standard normal)
    risk_flag: np.ndarray
    player_bet: np.ndarray
    bonus_propensity: np.ndarray
    n_sessions: np.ndarray
    n_visits: np.ndarray


def _habits(config: SynthConfig, rng: np.random.Generator, who: _Who) -> _Habits:
    n = who.cluster.size
    z_activity = rng.standard_normal(n)
    z_length = rng.standard_normal(n)
    sigma = config.activity_sigma
    rate = np.minimum(config.mean_daily_sessions * np.exp(sigma * z_activity - sigma**2 / 2), config.max_daily_sessions)
    risk = 0.5 * z_activity + 0.5 * z_length + math.sqrt(0.5) * rng.standard_normal(n)
    risk_flag = risk > _normal_quantile(1 - config.risk_flag_share)
    player_bet = config.median_bet * np.exp(config.bet_sigma * rng.standard_normal(n))
    bonus_b = 0.5 * (1 - config.bonus_share) / config.bonus_share
    bonus_propensity = rng.beta(0.5, bonus_b, size=n)

    present_days = (who.window_end - who.window_start) / _DAY
    n_sessions = 1 + rng.poisson(rate * present_days)
    per_visit = 1 + rng.poisson(config.sessions_per_visit - 1, size=n)
    n_visits = np.ceil(n_sessions / per_visit).astype(np.int64)
    return _Habits(z_length, risk_flag, player_bet, bonus_propensity, n_sessions, n_visits)


def _visits(rng: np.random.Generator, who: _Who, n_visits: np.ndarray) -> np.ndarray:
    """Each visit's time: a day of the player's window and an hour of the local diurnal curve."""
    visit_owner = np.repeat(np.arange(n_visits.size), n_visits)
    first_day = who.window_start // _DAY
    last_day = (who.window_end - 120) // _DAY
    day = first_day[visit_owner] + np.floor(
        rng.random(len(visit_owner)) * (last_day - first_day + 1)[visit_owner]
    ).astype(np.int64)
    hourly = np.cumsum(HOURLY_PROFILE) / np.sum(HOURLY_PROFILE)
    local_seconds = np.searchsorted(hourly, rng.random(len(visit_owner)), side="right") * 3600 + rng.integers(
        3600, size=len(visit_owner)
    )
    visit_ts = day * _DAY + local_seconds - who.utc_offset[visit_owner] * 3600
    return np.clip(visit_ts, who.window_start[visit_owner], who.window_end[visit_owner] - 120)


@dataclass(frozen=True)
class _Sessions:
    """The stream's sessions in (player, start) order, arrays of shape (s,)."""

    owner: np.ndarray  # the player's index in the stream
    started: np.ndarray
    duration: np.ndarray  # seconds

    @property
    def ended(self) -> np.ndarray:
        return self.started + self.duration


def _sessions(
    config: SynthConfig, rng: np.random.Generator, who: _Who, habits: _Habits, visit_ts: np.ndarray
) -> _Sessions:
    """Durations, then one session after the other within each visit, cut at the window's end."""
    n_sessions, n_visits = habits.n_sessions, habits.n_visits
    owner = np.repeat(np.arange(n_sessions.size), n_sessions)
    s = len(owner)
    visit_first = np.concatenate([[0], np.cumsum(n_visits)[:-1]])
    visit = visit_first[owner] + np.floor(rng.random(s) * n_visits[owner]).astype(np.int64)
    log_median = math.log(config.median_session_minutes * 60)
    duration = np.exp(
        log_median + config.player_length_sigma * habits.z_length[owner] + config.session_sigma * rng.standard_normal(s)
    )
    duration = np.clip(np.rint(duration), config.min_session_seconds, config.max_session_hours * 3600).astype(np.int64)
    gap = 5 + np.rint(rng.exponential(40.0, size=s)).astype(np.int64)
    order = np.lexsort((rng.random(s), visit_ts[visit], owner))
    wanted, duration, gap = visit_ts[visit][order], duration[order], gap[order]
    started = _one_after_another(owner, wanted, duration + gap)

    keep = started <= (who.window_end[owner] - 60)
    session_first = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
    keep[session_first] = True  # a player's first session starts at a visit, inside the window
    owner, started, duration = owner[keep], started[keep], duration[keep]
    ended = np.minimum(started + duration, who.window_end[owner])
    return _Sessions(owner, started, ended - started)


def _which_slot(
    config: SynthConfig, cat: Catalogue, rng: np.random.Generator, who: _Who, habits: _Habits, sessions: _Sessions
) -> tuple[np.ndarray, np.ndarray]:
    """Each session's slot (0-based index into the catalogue) and whether it was a launch trial."""
    start, k, n = config.start_ts, config.clusters, who.cluster.size
    owner, started = sessions.owner, sessions.started
    s = len(owner)
    repertoire = np.minimum(np.ceil(habits.n_sessions**config.repertoire_exponent), habits.n_sessions).astype(np.int64)
    entry_owner = np.repeat(np.arange(n), repertoire)
    entry_first = np.concatenate([[0], np.cumsum(repertoire)[:-1]])
    own = rng.random(len(entry_owner)) < config.cluster_affinity
    row = np.where(own, who.cluster[entry_owner], k)
    entries = _draw_rows(cat.choice_cdf, row, rng.random(len(entry_owner)))
    favourite = _draw_rows(cat.safe_cdf, row[entry_first], rng.random(n))
    entries[entry_first] = favourite
    pick = np.floor(repertoire[owner] * rng.random(s) ** config.favourite_skew).astype(np.int64)
    slot = entries[entry_first[owner] + pick]

    trial = rng.random(s) < config.trial_share
    if cat.trial_slots.size:
        session_day = np.clip((started - start) // _DAY, 0, config.days - 1)
        trial &= cat.trial_cdf[session_day, -1] > 0
        chosen = _draw_rows(cat.trial_cdf, session_day[trial], rng.random(int(trial.sum())))
        slot[trial] = cat.trial_slots[chosen]
    else:
        trial[:] = False
    # Not released yet, or not offered in the player's market: the player plays their favourite.
    valid = (cat.release_ts[slot] <= started) & cat.available[slot, who.market[owner]]
    slot = np.where(valid, slot, favourite[owner])
    trial &= valid
    return slot, trial


@dataclass(frozen=True)
class _Money:
    spins: np.ndarray
    total_bet: np.ndarray  # cents
    total_win: np.ndarray  # cents
    bonus: np.ndarray


def _spins_and_money(
    config: SynthConfig, cat: Catalogue, rng: np.random.Generator, habits: _Habits, sessions: _Sessions,
    slot: np.ndarray, trial: np.ndarray,
) -> _Money:
    owner, duration = sessions.owner, sessions.duration
    s = len(owner)
    seconds_per_spin = config.mean_seconds_per_spin * rng.uniform(0.6, 1.4, size=s)
    spins = np.maximum(1, np.floor(duration / seconds_per_spin)).astype(np.int64)
    bet = np.rint(habits.player_bet[owner] * np.exp(0.25 * rng.standard_normal(s)) * 100)
    bet = np.clip(bet, cat.min_bet_cents[slot], cat.max_bet_cents[slot]).astype(np.int64)
    total_bet = spins * bet
    cv = np.asarray(config.volatility_cv)[cat.volatility[slot]]
    shape = spins / cv**2
    total_win = np.rint(rng.gamma(shape, cat.rtp[slot] / 100 * total_bet / shape)).astype(np.int64)
    bonus = rng.random(s) < np.where(trial, config.launch_bonus_share, habits.bonus_propensity[owner])
    return _Money(spins, total_bet, total_win, bonus)


def _frames(
    config: SynthConfig, p0: int, first_session_key: int, who: _Who, habits: _Habits, sessions: _Sessions,
    slot: np.ndarray, money: _Money,
) -> PlayerBlock:
    n, s = who.cluster.size, len(sessions.owner)
    player_keys = np.arange(p0 + 1, p0 + n + 1, dtype=np.int64)
    codes = np.array([code for code, _, _ in config.markets], dtype=object)
    players = pd.DataFrame(
        {
            "id": player_keys,
            "player_id": [f"P{key:08d}" for key in player_keys],
            "market": codes[who.market],
            "registered_at": _timestamps(who.registered),
            "self_excluded_until": _timestamps(who.excluded_until, who.self_excluded),
            "cooling_off_until": _timestamps(who.cooling_until, who.cooling),
            "marketing_consent": who.consent,
            "risk_flag": habits.risk_flag,
        }
    )
    player_clusters = pd.DataFrame({"player_key": player_keys, "cluster": who.cluster.astype(np.int16)})
    session_keys = np.arange(first_session_key, first_session_key + s, dtype=np.int64)
    ended = sessions.ended
    sessions_frame = pd.DataFrame(
        {
            "id": session_keys,
            "session_id": session_ids(session_keys).astype(str),
            "player_key": player_keys[sessions.owner],
            "slot_key": (slot + 1).astype(np.int32),
            "started_at": _timestamps(sessions.started),
            "last_event_at": _timestamps(ended),
            "ended_at": _timestamps(ended),
            "seconds": sessions.duration.astype(np.float64),
            "spins": money.spins,
            "total_bet": money.total_bet / 100,
            "total_win": money.total_win / 100,
            "bonus": money.bonus,
        }
    )
    return PlayerBlock(players=players, player_clusters=player_clusters, sessions=sessions_frame)


def _one_after_another(owner: np.ndarray, wanted: np.ndarray, busy: np.ndarray) -> np.ndarray:
    """Start times so that each player's sessions never overlap, without a loop.

    Sessions are sorted by owner then wanted start; session i wants to start at ``wanted[i]`` and
    keeps the player busy for ``busy[i]`` seconds. Its start is ``max(wanted[i], start[i-1] +
    busy[i-1])``, which unrolls to ``B[i] + max_{j<=i}(wanted[j] - B[j])`` with ``B`` the busy time
    before i: a running maximum, made per player by adding an offset that grows with the owner.
    """
    if len(owner) == 0:
        return wanted.copy()
    total = np.cumsum(busy)
    before = total - busy
    first = np.concatenate([[True], owner[1:] != owner[:-1]])
    before -= np.maximum.accumulate(np.where(first, before, 0))
    offset = owner.astype(np.int64) << 40  # 2**40 s is 35,000 years: larger than any time difference
    return before + np.maximum.accumulate(wanted - before + offset) - offset


def _normal_quantile(p: float) -> float:
    return math.inf if p >= 1 else -math.inf if p <= 0 else NormalDist().inv_cdf(p)


def _timestamps(seconds: np.ndarray, present: np.ndarray | None = None) -> pd.Series:
    """Unix seconds -> timezone-aware UTC timestamps (NaT where ``present`` is False)."""
    values = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    if present is not None:
        values = np.where(present, values, np.datetime64("NaT", "s"))
    return pd.Series(values).dt.tz_localize("UTC")
