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
_Strategy = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(domain.STRATEGIES)})]


class ArmIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    version: _VersionId | _Strategy  # a model version id, or a baseline strategy: "popularity", "itemknn"
    weight: Annotated[int, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 1_000_000})]


class ExperimentIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Name
    arms: Annotated[list[ArmIn], msgspec.Meta(extra_json_schema={"minItems": 2, "maxItems": 16})]  # control first
    # Relative lift in clicks per impression the sample is sized for (0.1).
    min_effect: Annotated[float, msgspec.Meta(extra_json_schema={"exclusiveMinimum": 0, "maximum": 10})] | None = None


class EstimateOut(msgspec.Struct):
    value: float | None  # a rate (0..1) or minutes
    low: float | None  # 95 % interval
    high: float | None
    diff: float | None  # arm - control; null for the control
    diff_low: float | None
    diff_high: float | None
    p_value: float | None
    verdict: str  # control, better, worse, no difference, no data, too early (before the sample is reached)


class SampleOut(msgspec.Struct):
    min_effect: float  # relative lift in clicks per impression, 80 % power at 95 %
    players: int  # of this arm and the control
    players_needed: int | None  # estimated from the data so far; null before both arms have impressions
    reached: bool  # false: outcome verdicts are "too early"


class ArmOut(msgspec.Struct):
    name: str
    version: int | None  # null: a baseline strategy
    strategy: str  # model (ranks with ``version``), popularity or itemknn
    weight: int
    players: int
    lists: int
    impressions: int
    clicks: int
    plays: int
    dismissals: int
    suppressed: int  # lists without games (protection gate or late-session rule)
    reality_checks: int
    median_click_minutes: float | None  # continuous play after a click; null without clicks
    # click_rate, play_rate, dismiss_rate, minutes_per_click, and the guardrails suppressed_share,
    # reality_checks_per_player, long_play_share
    results: dict[str, EstimateOut]
    sample: SampleOut | None  # null for the control
    guardrail_flags: list[str]  # one sentence per guardrail this arm is worse on than the control


class ExperimentOut(msgspec.Struct):
    name: str
    status: str  # running, stopped
    started_at: datetime
    stopped_at: datetime | None
    promoted_arm: str | None
    control: str
    min_effect: float
    arms: list[ArmOut]


def experiment_out(serving, experiment: domain.Experiment) -> ExperimentOut:
    threshold = serving.settings.realtime.threshold_seconds
    arms = []
    for r in domain.results(store.outcomes(serving.engine, experiment, threshold), experiment.min_effect):
        o = r.outcome
        estimates = {m.key: EstimateOut(*(getattr(r.estimates[m.key], f) for f in (
            "value", "low", "high", "diff", "diff_low", "diff_high", "p_value")), r.verdict(m))
            for m in domain.ALL_METRICS}
        sample = None if r.sample is None else SampleOut(r.sample.min_effect, r.sample.players,
                                                          r.sample.players_needed, r.sample.reached)
        arm = experiment.arm(o.arm)
        strategy = arm.strategy if arm is not None else domain.MODEL if o.version_id is not None else domain.POPULARITY
        arms.append(ArmOut(o.arm, o.version_id, strategy, o.weight, o.players, o.lists, o.impressions, o.clicks,
                           o.plays, o.dismissals, o.suppressed, o.reality_checks, o.median_click_minutes, estimates,
                           sample, r.guardrail_flags()))
    return ExperimentOut(experiment.name, experiment.status, experiment.started_at, experiment.stopped_at,
                         experiment.promoted_arm, experiment.control.name, experiment.min_effect, arms)


def start_experiment(serving, name: str, arms: list[tuple[str, str | int, str | int]], source: str, *,
                     min_effect: float | str | None = None, force: bool = False):
    """Check the name and arms (``(name, version, weight)``) and start the experiment; this process
    loads it at once (the others on the NOTIFY). ``force``: an arm may serve a version the quality
    gate refused."""
    checked = domain.check_arms([domain.make_arm(n, v, w, source) for n, v, w in arms], source)
    effect = domain.DEFAULT_MIN_EFFECT if min_effect is None else domain.check_min_effect(min_effect, source)
    started = store.start(serving.engine, domain.check_name(name, source, "name"), checked, min_effect=effect,
                          force=force)
    serving.load_experiment()
    return started


def stop_experiment(serving, name: str, promote: str | None, force: bool):
    """Stop it; a promotion activates the arm's version, and this process swaps at once."""
    stopped = store.stop(serving.engine, name, promote=promote, force=force,
                         threshold_seconds=serving.settings.realtime.threshold_seconds)
    if promote is not None:
        serving.load_active_version()
    serving.load_experiment()
    return stopped


@get("/v1/experiments", guards=[READ], sync_to_thread=True, tags=["experiments"])
def list_experiments(state: State, limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50) -> list[ExperimentOut]:
    """Experiments, newest first, each with its per-arm results."""
    return [experiment_out(state.serving, e) for e in store.list_all(state.serving.engine, limit)]


@get("/v1/experiments/{name:str}", guards=[READ], sync_to_thread=True, tags=["experiments"])
def get_experiment(state: State, name: FromPath[str]) -> ExperimentOut:
    """One experiment: arms, traffic, metrics and protection guardrails with 95 % intervals (delta
    method over players) against the control, the sample plan, and the guardrail flags."""
    return experiment_out(state.serving, store.get(state.serving.engine, name))


@post("/v1/experiments", guards=[ADMIN], sync_to_thread=True, status_code=201, tags=["experiments"])
def post_experiment(
    state: State,
    body: RawBody,
    force: Annotated[bool, QueryParameter(description="Let an arm serve a version the quality gate refused.")] = False,
) -> ExperimentOut:
    """Start an experiment: ``{"name": ..., "arms": [{"name", "version", "weight"}, ...], "min_effect": 0.1}``,
    control first. A version the quality gate refused serves an arm only with ``?force=true``."""
    data = decode(body, ExperimentIn, SOURCE)
    started = start_experiment(state.serving, data.name, [(a.name, a.version, a.weight) for a in data.arms], SOURCE,
                               min_effect=data.min_effect, force=force)
    return experiment_out(state.serving, started)


documented("post_experiment", "The experiment's name and arms (the first is the control).", ExperimentIn)


@post("/v1/experiments/{name:str}/stop", guards=[ADMIN], sync_to_thread=True, status_code=200,
      tags=["experiments"])
def post_stop(
    state: State,
    name: FromPath[str],
    promote: Annotated[str | None, QueryParameter(max_length=64, description="Activate this arm's version.")] = None,
    force: Annotated[bool, QueryParameter(
        description="Promote a version the quality gate refused, or an arm flagged on a protection guardrail.",
    )] = False,
) -> ExperimentOut:
    """End the running experiment; ``?promote=ARM`` activates that arm's version (the normal
    activation). An arm worse than the control on a protection guardrail is refused (409) unless
    ``force=true``."""
    stopped = stop_experiment(state.serving, name, promote, force)
    return experiment_out(state.serving, stopped)


ROUTES = [list_experiments, get_experiment, post_experiment, post_stop]
