"""A/B experiments for operators: ``GET/POST /v1/experiments``, ``GET /v1/experiments/{name}``,
``POST /v1/experiments/{name}/stop`` (docs/experiments.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.datastructures import State
from litestar.params import FromPath, QueryParameter, RawBody

from api.auth import ADMIN, READ
from api.bodies import Name, decode, documented
from recsys import experiments as domain
from recsys.db import experiments as store

SOURCE = "POST /v1/experiments"
_VersionId = Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 2**31 - 1})]
_Popularity = Annotated[str, msgspec.Meta(extra_json_schema={"enum": [domain.POPULARITY]})]


class ArmIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    version: _VersionId | _Popularity  # a model version id, or "popularity"
    weight: Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 1_000_000})]


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    arms: Annotated[list[ArmIn], msgspec.Meta(extra_json_schema={"minItems": 2, "maxItems": 16})]  # control first


class EstimateOut(msgspec.Struct):
    value: float | None  # a rate (0..1) or minutes
    low: float | None  # 95 % interval
    high: float | None
    diff: float | None  # arm - control; null for the control
    diff_low: float | None
    diff_high: float | None
    p_value: float | None
    verdict: str  # control, better, worse, no difference


class ArmOut(msgspec.Struct):
    name: str
    version: int | None  # null: popularity
    weight: int
    players: int
    lists: int
    impressions: int
    clicks: int
    plays: int
    dismissals: int
    results: dict[str, EstimateOut]  # click_rate, play_rate, dismiss_rate, minutes_per_click


class ExperimentOut(msgspec.Struct):
    name: str
    status: str  # running, stopped
    started_at: datetime
    stopped_at: datetime | None
    promoted_arm: str | None
    control: str
    arms: list[ArmOut]


def experiment_out(engine, experiment: domain.Experiment) -> ExperimentOut:
    arms = []
    for r in domain.results(store.outcomes(engine, experiment)):
        o = r.outcome
        estimates = {m.key: EstimateOut(*(getattr(r.estimates[m.key], f) for f in (
            "value", "low", "high", "diff", "diff_low", "diff_high", "p_value")), r.verdict(m)) for m in domain.METRICS}
        arms.append(ArmOut(o.arm, o.version_id, o.weight, o.players, o.lists, o.impressions, o.clicks, o.plays,
                           o.dismissals, estimates))
    return ExperimentOut(experiment.name, experiment.status, experiment.started_at, experiment.stopped_at,
                         experiment.promoted_arm, experiment.control.name, arms)


def start_experiment(serving, name: str, arms: list[tuple[str, str | int, str | int]], source: str):
    """Check the name and arms (``(name, version, weight)``) and start the experiment; this process
    loads it at once (the others on the NOTIFY)."""
    checked = domain.check_arms([domain.make_arm(n, v, w, source) for n, v, w in arms], source)
    started = store.start(serving.engine, domain.check_name(name, source, "name"), checked)
    serving.load_experiment()
    return started


def stop_experiment(serving, name: str, promote: str | None, force: bool):
    """Stop it; a promotion activates the arm's version, and this process swaps at once."""
    stopped = store.stop(serving.engine, name, promote=promote, force=force)
    if promote is not None:
        serving.load_active_version()
    serving.load_experiment()
    return stopped


@get("/v1/experiments", guards=[READ], sync_to_thread=True, tags=["experiments"])
def list_experiments(state: State, limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50) -> list[ExperimentOut]:
    """Experiments, newest first, each with its per-arm results."""
    engine = state.serving.engine
    return [experiment_out(engine, e) for e in store.list_all(engine, limit)]


@get("/v1/experiments/{name:str}", guards=[READ], sync_to_thread=True, tags=["experiments"])
def get_experiment(state: State, name: FromPath[str]) -> ExperimentOut:
    """One experiment: arms, traffic, and rates with 95 % intervals against the control."""
    engine = state.serving.engine
    return experiment_out(engine, store.get(engine, name))


@post("/v1/experiments", guards=[ADMIN], sync_to_thread=True, status_code=201, tags=["experiments"])
def post_experiment(state: State, body: RawBody) -> ExperimentOut:
    """Start an experiment: ``{"name": ..., "arms": [{"name", "version", "weight"}, ...]}``, control first."""
    data = decode(body, ExperimentIn, SOURCE)
    started = start_experiment(state.serving, data.name, [(a.name, a.version, a.weight) for a in data.arms], SOURCE)
    return experiment_out(state.serving.engine, started)


documented("post_experiment", "The experiment's name and arms (the first is the control).", ExperimentIn)


@post("/v1/experiments/{name:str}/stop", guards=[ADMIN], sync_to_thread=True, status_code=200,
      tags=["experiments"])
def post_stop(
    state: State,
    name: FromPath[str],
    promote: Annotated[str | None, QueryParameter(max_length=64, description="Activate this arm's version.")] = None,
    force: Annotated[bool, QueryParameter(description="Promote a version the quality gate refused.")] = False,
) -> ExperimentOut:
    """End the running experiment; ``?promote=ARM`` activates that arm's version (the normal activation)."""
    stopped = stop_experiment(state.serving, name, promote, force)
    return experiment_out(state.serving.engine, stopped)


ROUTES = [list_experiments, get_experiment, post_experiment, post_stop]
