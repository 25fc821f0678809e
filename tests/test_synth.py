"""The synthetic casino: deterministic, and shaped like real casino data (with a known answer)."""

from __future__ import annotations

import math
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from recsys.errors import InputError
from recsys.synth import (
    PLAYERS_PER_STREAM,
    VOLATILITIES,
    Casino,
    SynthConfig,
    decimal_digits,
    generate_casino,
    generate_catalogue,
    generate_players,
    session_ids,
)

CONFIG = SynthConfig(players=2_000, slots=200, days=30, seed=7, start=date(2025, 3, 1))


@pytest.fixture(scope="module")
def casino() -> Casino:
    return generate_casino(CONFIG)


def _frames(casino: Casino) -> dict[str, pd.DataFrame]:
    return {
        "slots": casino.slots,
        "slot_clusters": casino.slot_clusters,
        "players": casino.players,
        "player_clusters": casino.player_clusters,
        "sessions": casino.sessions,
    }


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_frames(casino):
    again = generate_casino(CONFIG)
    for name, frame in _frames(casino).items():
        pd.testing.assert_frame_equal(frame, _frames(again)[name], check_exact=True, obj=name)


def test_a_different_seed_gives_a_different_casino(casino):
    other = generate_casino(CONFIG.replace(seed=8))
    assert not casino.slots["slot_id"].equals(other.slots["slot_id"])
    assert not casino.player_clusters["cluster"].equals(other.player_clusters["cluster"])
    assert len(casino.sessions) != len(other.sessions) or not casino.sessions["started_at"].equals(
        other.sessions["started_at"]
    )


def test_block_size_does_not_change_the_data():
    config = CONFIG.replace(players=PLAYERS_PER_STREAM + 500, slots=100, days=10)
    catalogue = generate_catalogue(config)
    small = list(generate_players(config, catalogue, block_players=PLAYERS_PER_STREAM))
    large = list(generate_players(config, catalogue, block_players=10 * PLAYERS_PER_STREAM))
    assert (len(small), len(large)) == (2, 1)
    for part in ("players", "player_clusters", "sessions"):
        joined = pd.concat([getattr(b, part) for b in small], ignore_index=True)
        pd.testing.assert_frame_equal(joined, getattr(large[0], part), check_exact=True)


# --- keys and consistency -------------------------------------------------------------------------


def test_keys_run_from_one_and_ids_are_unique(casino):
    assert casino.slots["id"].tolist() == list(range(1, CONFIG.slots + 1))
    assert casino.players["id"].tolist() == list(range(1, CONFIG.players + 1))
    assert casino.sessions["id"].tolist() == list(range(1, len(casino.sessions) + 1))
    for frame, column in ((casino.slots, "slot_id"), (casino.players, "player_id"), (casino.sessions, "session_id")):
        assert frame[column].is_unique
        assert frame[column].str.len().between(1, 128).all()
    assert casino.slot_clusters["slot_key"].tolist() == casino.slots["id"].tolist()
    assert casino.player_clusters["player_key"].tolist() == casino.players["id"].tolist()
    assert casino.sessions["player_key"].is_monotonic_increasing
    # every player is active, every cluster has slots
    assert casino.sessions["player_key"].nunique() == CONFIG.players
    assert set(casino.slot_clusters["cluster"]) == set(range(CONFIG.clusters))


def test_sessions_are_consistent_in_time(casino):
    s = casino.sessions
    players = casino.players.set_index("id")
    assert (s["ended_at"] >= s["started_at"]).all()
    assert (s["last_event_at"] == s["ended_at"]).all()
    assert (s["seconds"] == (s["ended_at"] - s["started_at"]).dt.total_seconds()).all()
    assert s["started_at"].min() >= pd.Timestamp(CONFIG.start, tz="UTC")
    assert s["ended_at"].max() <= pd.Timestamp(CONFIG.now)
    assert (s["started_at"].to_numpy() >= players.loc[s["player_key"], "registered_at"].to_numpy()).all()
    # one player never plays two sessions at once
    same_player = s["player_key"].to_numpy()[1:] == s["player_key"].to_numpy()[:-1]
    overlap = s["started_at"].to_numpy()[1:] < s["ended_at"].to_numpy()[:-1]
    assert not (same_player & overlap).any()


def test_sessions_respect_release_dates_and_markets(casino):
    s = casino.sessions
    slots = casino.slots.set_index("id")
    released = pd.to_datetime(slots.loc[s["slot_key"], "release_date"].to_numpy()).tz_localize("UTC")
    assert (s["started_at"].to_numpy() >= released.to_numpy()).all()
    market = casino.players.set_index("id").loc[s["player_key"], "market"].to_numpy()
    allowed = slots.loc[s["slot_key"], "markets"].to_numpy()
    assert all(m is None or p in m for m, p in zip(allowed, market, strict=True))


def test_money_follows_the_slots(casino):
    s = casino.sessions.join(casino.slots.set_index("id"), on="slot_key")
    assert (s["spins"] >= 1).all()
    per_spin = s["total_bet"] / s["spins"]
    assert (per_spin >= s["min_bet"] - 1e-9).all() and (per_spin <= s["max_bet"] + 1e-9).all()
    assert (s["total_win"] >= 0).all()
    cents = s[["total_bet", "total_win"]].to_numpy() * 100
    assert np.allclose(cents, np.rint(cents))
    returned = s["total_win"].sum() / s["total_bet"].sum()
    assert 0.85 < returned < 1.05  # the slots' RTP, up to luck on the high-volatility ones


# --- the shape of the data ------------------------------------------------------------------------


def test_the_catalogue_looks_like_a_casino(casino):
    slots = casino.slots
    assert ((slots["rtp"] >= 94) & (slots["rtp"] <= 97)).mean() > 0.7
    assert set(slots["volatility"]) == set(VOLATILITIES)
    assert set(slots["theme"]) <= set(CONFIG.themes)
    assert (slots["min_bet"] >= 0.01).all() and (slots["min_bet"] <= 1).all() and (slots["max_bet"] >= 10).all()
    released = pd.to_datetime(slots["release_date"])
    assert (released >= pd.Timestamp(CONFIG.start)).sum() > 0
    assert 0 < (~slots["active"]).sum() < 0.1 * len(slots)
    restricted = slots["markets"].dropna()
    assert 0 < len(restricted) < 0.25 * len(slots)
    assert all(1 <= len(m) <= 3 for m in restricted)
    # a handful of providers dominate the catalogue
    assert slots["provider"].value_counts(normalize=True).iloc[:5].sum() > 0.4


def test_popularity_follows_a_power_law(casino):
    counts = casino.sessions["slot_key"].value_counts()
    top = math.ceil(0.1 * CONFIG.slots)
    assert counts.iloc[:top].sum() / len(casino.sessions) > 0.5


def test_players_are_heavy_tailed(casino):
    per_player = casino.sessions.groupby("player_key").size()
    assert per_player.median() <= 4
    top = per_player.sort_values(ascending=False).iloc[: CONFIG.players // 10]
    assert top.sum() / per_player.sum() > 0.4  # the top 10 % of players play over 40 % of sessions
    daily = (per_player >= CONFIG.days).mean()
    assert 0.002 < daily < 0.05  # a minority plays every day
    slots_per_player = casino.sessions.groupby("player_key")["slot_key"].nunique()
    assert slots_per_player.median() <= 2
    assert slots_per_player[per_player >= CONFIG.days].median() >= 6


def test_session_lengths_are_log_normal_with_a_tail_over_an_hour(casino):
    seconds = casino.sessions["seconds"]
    spread = math.hypot(CONFIG.session_sigma, CONFIG.player_length_sigma)
    expected = 1 - NormalDist().cdf(math.log(60 / CONFIG.median_session_minutes) / spread)
    over_an_hour = (seconds > 3600).mean()
    assert 0.01 < expected < 0.06  # "a few per cent" with the defaults
    assert abs(over_an_hour - expected) < 0.3 * expected
    assert abs(seconds.median() / 60 - CONFIG.median_session_minutes) < 1.0


def test_players_mostly_play_their_own_cluster(casino):
    player_cluster = casino.player_clusters.set_index("player_key")["cluster"]
    slot_cluster = casino.slot_clusters.set_index("slot_key")["cluster"]
    s = casino.sessions
    own = (player_cluster.loc[s["player_key"]].to_numpy() == slot_cluster.loc[s["slot_key"]].to_numpy()).mean()
    assert own > 0.65
    assert own > 5 / CONFIG.clusters


def test_bonus_share(casino):
    share = casino.sessions["bonus"].mean()
    most = CONFIG.bonus_share + CONFIG.trial_share * CONFIG.launch_bonus_share
    assert CONFIG.bonus_share - 0.03 < share < most + 0.03


def test_player_protection_shares(casino):
    players = casino.players
    now = pd.Timestamp(CONFIG.now)
    excluded = players["self_excluded_until"].notna()
    cooling = players["cooling_off_until"].notna()
    assert 0.01 < excluded.mean() < 0.035
    assert 0.003 < cooling.mean() < 0.02
    assert not (excluded & cooling).any()
    assert (players.loc[excluded, "self_excluded_until"] > now).all()
    assert (players.loc[cooling, "cooling_off_until"] > now).all()
    assert 0.015 < players["risk_flag"].mean() < 0.05
    assert 0.8 < players["marketing_consent"].mean() < 0.9
    # the harm flag leans towards long sessions
    length = casino.sessions.groupby("player_key")["seconds"].median()
    flagged = players.set_index("id")["risk_flag"]
    assert length[flagged].median() > length[~flagged].median()


def test_new_releases_get_a_burst_of_trial():
    config = CONFIG.replace(slots=400, days=60, new_release_share=0.1)
    casino = generate_casino(config)
    released = pd.to_datetime(casino.slots.set_index("id")["release_date"])
    end = pd.Timestamp(config.start + timedelta(days=config.days))
    # releases with four weeks of history left: compare their first week with their weeks 3-4
    new = released[(released >= pd.Timestamp(config.start)) & (released <= end - pd.Timedelta(days=28))]
    s = casino.sessions[casino.sessions["slot_key"].isin(new.index)]
    age = (s["started_at"].dt.tz_localize(None) - new.loc[s["slot_key"]].to_numpy()).dt.days
    first_week = (age < 7).sum() / 7
    settled = ((age >= 14) & (age < 28)).sum() / 14
    assert first_week > 1.8 * settled > 0


# --- configuration and helpers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"players": 0}, "players"),
        ({"slots": 5, "clusters": 6}, "slots"),
        ({"cluster_affinity": 1.5}, "cluster_affinity"),
    ],
)
def test_invalid_config_names_the_field(change, field):
    with pytest.raises(InputError) as raised:
        CONFIG.replace(**change).validate()
    assert raised.value.field == field


def test_session_ids_and_digits():
    assert session_ids(np.array([1, 42])).tolist() == [b"ses-000000000001", b"ses-000000000042"]
    assert decimal_digits(np.array([0, 7, 12345]), 5).view("S5").ravel().tolist() == [b"00000", b"00007", b"12345"]
