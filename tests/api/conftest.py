"""A small casino with a hand-made model version, the real app over it, and API keys of each scope.

Twenty slots sit on a circle (slot ``s{i}`` at ``18 * i`` degrees), so the neighbours of each are
known: ``s{i +- 1}``, then ``s{i +- 2}`` ... Five providers own four slots each (p0: s1-s4, ...).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from api.app import create_app
from recsys.db import apikeys, versions
from recsys.ncf.config import NCFConfig
from tests.factories import add_player, add_slot

N_SLOTS = 20


@dataclass
class World:
    players: dict[str, int]  # player_id -> key
    slots: dict[str, int]  # slot_id -> key
    version: int
    similarity: np.ndarray  # (N_SLOTS, 4), row i-1 = slot s{i}


def circle(n: int = N_SLOTS, offset_degrees: float = 0.0) -> np.ndarray:
    angles = np.radians(np.arange(n) * 360.0 / n + offset_degrees)
    return np.stack([np.cos(angles), np.sin(angles), np.zeros(n), np.zeros(n)], axis=1).astype(np.float32)


def write_version(engine, players: dict[str, int], slots: dict[str, int], *, seed: int = 0,
                  similarity: np.ndarray | None = None, skip_players=(), activate: bool = True,
                  user_history: bool = False) -> int:
    """A NeuMF version (factors 2, MLP 4-2) with random towers; slot vectors on the circle.

    With ``user_history`` the version also keeps random played-items tables (``item_hist_*``), as a
    model whose players are built from their slots does.
    """
    rng = np.random.default_rng(seed)
    slot_keys = np.array(list(slots.values()))
    player_keys = np.array([key for pid, key in players.items() if pid not in skip_players])
    similarity = circle() if similarity is None else similarity
    config = NCFConfig(model="neumf", factors=2, mlp_layers=(4, 2), user_history="only" if user_history else "none")
    weights = {
        "mlp.0.weight": rng.normal(size=(2, 4)).astype(np.float32),
        "mlp.0.bias": np.zeros(2, np.float32),
        "predict.weight": rng.normal(size=(1, 4)).astype(np.float32),
        "predict.bias": np.zeros(1, np.float32),
    }
    if user_history:
        weights.update({f"item_hist_{t}.weight": rng.normal(size=(slot_keys.size, 2)).astype(np.float32)
                        for t in ("gmf", "mlp")})
    version = versions.create_version(engine, "neumf", config.to_dict())
    versions.write_embeddings(
        engine, version, player_keys,
        {"gmf": rng.normal(size=(player_keys.size, 2)).astype(np.float32),
         "mlp": rng.normal(size=(player_keys.size, 2)).astype(np.float32)},
        slot_keys,
        {"gmf": similarity[:, :2].copy(), "mlp": rng.normal(size=(slot_keys.size, 2)).astype(np.float32)},
        similarity,
    )
    versions.finish_version(engine, version, state={"config": config.to_dict(), "weights": weights},
                            metrics={"hr@10": 0.5}, similarity_vector="gmf", curve_path=None)
    if activate:
        versions.activate(engine, version)
    return version


@pytest.fixture
def world(db) -> World:
    with db.begin() as conn:
        players = {f"p{i}": add_player(conn, f"p{i}", market="GB") for i in range(1, 6)}
        slots = {
            f"s{i}": add_slot(conn, f"s{i}", provider=f"p{(i - 1) // 4}", theme=("fruit", "egypt")[i % 2])
            for i in range(1, N_SLOTS + 1)
        }
    version = write_version(db, players, slots, skip_players=("p3",))  # p3 joined after training
    return World(players, slots, version, circle())


SERVING = {"exploration_share": 0.0, "provider_cap": 100, "explore_seed": 7, "serving_refresh_seconds": 30.0,
           "blend_weight": 0.0,  # similarity alone: lists the tests can predict
           "event_max_age_seconds": 20 * 365 * 86400.0}  # the tests' events carry fixed 2026 times


def start(settings, **changes) -> TestClient:
    """The app over ``settings`` (+ ``changes``), started, waiting until its index is loaded (or 5 s)."""
    client = TestClient(create_app(settings.replace(**{**SERVING, **changes})))
    client.__enter__()
    return client


def wait_until(predicate, timeout: float = 5.0, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture
def make_client(settings):
    clients = []

    def make(ready: bool = True, **changes) -> TestClient:
        client = start(settings, **changes)
        clients.append(client)
        if ready:
            assert wait_until(lambda: client.get("/readyz").status_code == 200), client.get("/readyz").json()
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(world, make_client) -> TestClient:
    return make_client()


@pytest.fixture
def keys(db) -> dict[str, dict[str, str]]:
    """``Authorization`` headers by scope name (``read``, ``ingest``, ``admin``, ``read+ingest``)."""
    out = {}
    for name, scopes in (("read", ["read"]), ("ingest", ["ingest"]), ("admin", ["admin"]),
                         ("read+ingest", ["read", "ingest"])):
        key, _ = apikeys.create_key(db, scopes, name)
        out[name] = {"Authorization": f"Bearer {key}"}
    return out


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"]
    return body
