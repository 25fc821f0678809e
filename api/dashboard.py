"""The operator dashboard at ``/dashboard``: server-rendered HTML and SVG, no JavaScript, nothing fetched
from the internet (docs/experiments.md, "The dashboard").

Sign-in takes an API key with ``read`` or ``admin`` scope and sets a session cookie (``HttpOnly``,
``SameSite=Strict``, expiring after :data:`SESSION_LIFETIME`; ``Secure`` when the request came over
TLS, directly or through a proxy named by ``RECSYS_TRUSTED_PROXIES``). Signing in and out takes a
same-origin POST (``api.auth.cross_site``): another site cannot sign a browser in with the
attacker's key or sign it out. A key holds at most ``RECSYS_DASHBOARD_MAX_SESSIONS`` sessions, the
oldest ended first (issue 22: 200 sign-ins left 200 rows). Admin actions
(activate a version, start or stop an experiment) need ``admin`` and carry the session's CSRF token
in a hidden field; a page is never cached and may not be framed.
"""

from __future__ import annotations

import hmac
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import MediaType, Request, Response, Router, get, post
from litestar.datastructures import Cookie, State
from litestar.di import NamedDependency, Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath, FromQuery
from litestar.response import Redirect

from api import charts
from api.auth import cross_site, request_scheme
from api.experiments import experiment_out, start_experiment, stop_experiment
from recsys import experiments as domain
from recsys.db import dashboard as store
from recsys.db import experiments as experiment_store
from recsys.db import pipeline_runs, versions
from recsys.db.apikeys import find_key
from recsys.db.experiments import ExperimentError
from recsys.db.versions import VersionError
from recsys.errors import InputError, NotFound
from recsys.experiments import parse_arm
from recsys.metrics import BASELINES, REPLAY_POLICIES, VersionMetrics

Session = NamedDependency[store.DashboardSession]
COOKIE = "recsys_dashboard"
SESSION_LIFETIME = timedelta(hours=8)
"""A working day; signing in again after it is cheap and bounds what a stolen cookie is worth."""
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
PAGES = (("overview", "/dashboard", "Overview"), ("versions", "/dashboard/versions", "Versions"),
         ("runs", "/dashboard/runs", "Pipeline runs"), ("experiments", "/dashboard/experiments", "Experiments"),
         ("players", "/dashboard/players", "Player lookup"))
REPORT_FILE = re.compile(r"[A-Za-z0-9_.-]{1,100}\.(png|svg)")
Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@cache
def templates() -> Environment:
    return Environment(loader=PackageLoader("api", "templates"), autoescape=select_autoescape(default=True))


def page(name: str, status: int = 200, **context: Any) -> Response[str]:
    html = templates().get_template(f"{name}.html").render(pages=PAGES, current=name, **context)
    return Response(html, status_code=status, media_type=MediaType.HTML, headers=HEADERS)


def _session(request: Request) -> store.DashboardSession | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 64:
        return None
    return store.find_session(request.app.state.serving.engine, token)


class SignInRequired(Exception):
    """No live session: the page answers with a redirect to the sign-in form."""


def signed_in(request: Request) -> store.DashboardSession:
    """The ``session`` dependency of every page."""
    session = _session(request)
    if session is None:
        raise SignInRequired
    return session


def to_sign_in(_: Request, __: SignInRequired) -> Response:
    return Redirect("/dashboard/login", status_code=303)


def _admin(request: Request, form: dict[str, str]) -> store.DashboardSession | Response:
    """The session of an admin action whose form carries the session's CSRF token, else a refusal."""
    session = _session(request)
    if session is None:
        return Redirect("/dashboard/login", status_code=303)
    if not hmac.compare_digest(form.get("csrf", "").encode(), session.csrf_token.encode()):
        return page("refused", 403, session=session, message="the form's CSRF token does not match this session; "
                                                             "reload the page and try again")
    if not session.key.allows("admin"):
        return page("refused", 403, session=session, message=f"this needs an admin key; you signed in with "
                                                             f"{', '.join(session.key.scopes)}")
    return session


# --- sign-in ---------------------------------------------------------------------------------------

@get("/dashboard/login", sync_to_thread=False, include_in_schema=False)
def login_form() -> Response[str]:
    return page("login", session=None)


@post("/dashboard/login", sync_to_thread=True, include_in_schema=False)
def login(request: Request, state: State, data: Form) -> Response:
    foreign = cross_site(request)
    if foreign is not None:
        return page("login", 403, session=None, error=_CROSS_SITE.format(what="sign-in", header=foreign))
    engine, config = state.serving.engine, state.serving.settings.serving
    key = find_key(engine, data.get("key", "").strip()[:300])
    if key is None or key.revoked_at is not None:
        return page("login", 401, session=None, error="that API key is unknown or revoked")
    if not key.allows("read"):
        return page("login", 403, session=None, error=f"the dashboard needs a read or admin key; this one has "
                                                      f"{', '.join(key.scopes)}")
    token, _ = store.create_session(engine, key, SESSION_LIFETIME, max_sessions=config.dashboard_max_sessions)
    cookie = _cookie(request, state, token, int(SESSION_LIFETIME.total_seconds()))
    return Redirect("/dashboard", status_code=303, cookies=[cookie])


@post("/dashboard/logout", sync_to_thread=True, include_in_schema=False)
def logout(request: Request, state: State) -> Response:
    foreign = cross_site(request)
    if foreign is not None:
        return page("refused", 403, session=None, message=_CROSS_SITE.format(what="sign-out", header=foreign))
    token = request.cookies.get(COOKIE)
    if token and len(token) <= 64:
        store.end_session(state.serving.engine, token)
    return Redirect("/dashboard/login", status_code=303, cookies=[_cookie(request, state, "", 0)])


_CROSS_SITE = "a {what} must be a same-origin POST from this dashboard's own page; this request came from " \
              "another site ({header})"


def _cookie(request: Request, state: State, token: str, max_age: int) -> Cookie:
    """The session cookie (``token`` "" and ``max_age`` 0 delete it); ``Secure`` when the browser
    reached us over TLS, so it never travels in clear text (issue 22: never set behind a proxy)."""
    secure = request_scheme(request, state.serving.settings.serving.trusted_proxies) == "https"
    return Cookie(key=COOKIE, value=token, path="/dashboard", httponly=True, samesite="strict", secure=secure,
                  max_age=max_age)


# --- pages -----------------------------------------------------------------------------------------



class Cached:
    """A value read at most once per ``seconds`` in this process (``read(*args)``).

    Tabs reloading a page while the API serves lists should not each pay for its figures (issue 22:
    four tabs pushed recommendations' p99 from 13.3 to 25.0 ms). Tabs that find the value expired
    wait for one read (the lock) rather than each reading. ``seconds`` 0: every call reads,
    unserialised. :meth:`clear`: this process changed what it shows.
    """

    def __init__(self, seconds: float, read) -> None:
        self.seconds = seconds
        self._read = read
        self._lock = threading.Lock()
        self._value: Any = None
        self._read_at: float | None = None

    def get(self, *args):
        if self.seconds <= 0:
            return self._read(*args)
        with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= self.seconds:
                self._value = self._read(*args)
                self._read_at = time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._read_at = None


class CountsCache(Cached):
    """The overview's counts of the last 24 hours, ``get(engine)``: ``(lists per hour, funnel)``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds, lambda engine: store.overview_counts(engine, 24))


def _counts(state: State) -> CountsCache:
    cache = state.get("dashboard_counts")
    if cache is None:  # made on first use, so the cache stays this module's business
        cache = state.setdefault("dashboard_counts", CountsCache(state.settings.serving.dashboard_cache_seconds))
    return cache


@get("/dashboard", sync_to_thread=True, include_in_schema=False)
def overview(state: State, session: Session) -> Response:
    engine = state.serving.engine
    active = versions.active_version(engine)
    quality = []
    if active is not None:
        metrics = VersionMetrics.from_json(active.metrics)
        figures = [("this version", metrics.model)]
        figures += [(b.name, metrics.baselines[b.key]) for b in BASELINES if b.key in metrics.baselines]
        quality = [(label, f.hr, f.ndcg) for label, f in figures if f.hr is not None]
    hours, funnel = _counts(state).get(engine)
    reasons = sorted({r for h in hours for r in h.suppressed})
    series = {"served (API)": [h.served - h.triggered for h in hours], "served (trigger)": [h.triggered for h in hours],
              **{f"suppressed: {r}": [h.suppressed.get(r, 0) for h in hours] for r in reasons}}
    return page(
        "overview", session=session, active=active, quality=quality,
        quality_chart=charts.horizontal_bars("HR@10 of the active version and the baselines",
                                             [(label, hr) for label, hr, _ in quality], unit="HR@10 (share of cases)",
                                             scale_max=1.0) if quality else None,
        endpoints=state.metrics.endpoints(), hours=hours,
        totals={"served": sum(h.served for h in hours), "triggered": sum(h.triggered for h in hours),
                "suppressed": sum(sum(h.suppressed.values()) for h in hours)},
        lists_chart=charts.stacked_bars("Lists per hour, last 24 h", [f"{h.hour:%H}" for h in hours], series,
                                        y_unit="lists per hour", x_unit="hour of day (UTC)"),
        funnel=funnel,
        funnel_chart=charts.horizontal_bars("Feedback funnel, last 24 h", [
            ("items served", funnel["served"]), ("impressions", funnel["impressions"]), ("clicks", funnel["clicks"]),
            ("plays", funnel["plays"]), ("dismissals", funnel["dismissals"])], unit="list items"),
        experiment=experiment_store.running(engine),
    )


@get("/dashboard/versions", sync_to_thread=True, include_in_schema=False)
def versions_page(state: State, session: Session) -> Response:
    return _versions(state, session)


def _versions(state: State, session, status: int = 200, error: str | None = None) -> Response:
    listed = versions.list_versions(state.serving.engine, 100)
    shown = next((v for v in listed if v.status == "active"), None) or next(
        (v for v in listed if v.status in ("ready", "retired")), None)
    return page("versions", status, session=session, versions=listed, error=error, quality_of=shown,
                **_quality_tables(shown))


def _quality_tables(version) -> dict[str, Any]:
    """The models page's tables for ``version``: the model and each baseline on its holdout cases
    (``baselines``: label, HR@10, NDCG@10, settings), and the trigger replay (``replay``: label,
    HR@10, NDCG@10; ``replay_facts``: sessions and hours), from its typed metrics."""
    if version is None:
        return {"baselines": [], "replay": [], "replay_facts": None}
    metrics = VersionMetrics.from_json(version.metrics)
    rows = [("this version", metrics.model.hr, metrics.model.ndcg, "")]
    for b in BASELINES:
        figures = metrics.baselines.get(b.key)
        if figures is not None:
            rows.append((b.name, figures.hr, figures.ndcg, ", ".join(f"{k} {v:g}" for k, v in figures.params.items())))
    replay = metrics.replay
    policies = [] if replay is None else [
        (label, replay.policies[key].hr, replay.policies[key].ndcg) for key, label in REPLAY_POLICIES
        if key in replay.policies
    ]
    return {"baselines": [r for r in rows if r[1] is not None], "replay": policies,
            "replay_facts": None if replay is None else (replay.sessions, replay.hours)}


@post("/dashboard/versions/{version_id:int}/activate", sync_to_thread=True, include_in_schema=False)
def activate(request: Request, state: State, version_id: FromPath[int], data: Form) -> Response:
    session = _admin(request, data)
    if isinstance(session, Response):
        return session
    serving = state.serving
    try:
        versions.activate(serving.engine, version_id, force=data.get("force") == "on")
    except VersionError as exc:
        return _versions(state, session, 409, str(exc))
    serving.load_active_version()
    return Redirect("/dashboard/versions", status_code=303)


@get("/dashboard/runs", sync_to_thread=True, include_in_schema=False)
def runs_page(state: State, session: Session) -> Response:
    runs = pipeline_runs.list_runs(state.serving.engine, 100)
    return page("runs", session=session, runs=runs,
                reports={r.id for r in runs if r.report_path and Path(r.report_path).is_file()})


@get("/dashboard/runs/{run_id:int}/{name:str}", sync_to_thread=True, include_in_schema=False)
def run_report(state: State, session: Session, run_id: FromPath[int], name: FromPath[str]) -> Response:
    """A run's HTML report (``report``) or a picture beside it (the report links them relatively)."""
    run = pipeline_runs.get_run(state.serving.engine, run_id)
    report = Path(run.report_path) if run is not None and run.report_path else None
    if name == "report":
        path, media = report, MediaType.HTML
    elif REPORT_FILE.fullmatch(name) and report is not None:
        path, media = report.parent / name, "image/svg+xml" if name.endswith(".svg") else "image/png"
    else:
        path, media = None, None
    if path is None or not path.is_file():
        return page("refused", 404, session=session, message=f"run {run_id} has no file {name!r}")
    return Response(path.read_bytes(), media_type=media, headers=HEADERS)


@get("/dashboard/experiments", sync_to_thread=True, include_in_schema=False)
def experiments_page(state: State, session: Session) -> Response:
    return _experiments(state, session)


def _experiments(state: State, session, status: int = 200, error: str | None = None,
                 form: dict[str, str] | None = None) -> Response:
    engine = state.serving.engine
    shown = _experiment_figures(state).get(state.serving)
    candidates = [v for v in versions.list_versions(engine, 100) if v.status in experiment_store.SERVABLE]
    control = next((v.id for v in candidates if v.status == "active"), None)
    challenger = next((v.id for v in candidates if v.id != control), None)
    example = f"control={control or 12}:50 candidate={challenger or 13}:50"
    return page("experiments", status, session=session, experiments=shown, metrics=domain.METRICS,
                guardrails=domain.GUARDRAILS,
                shown=domain.shown, candidates=candidates, example=example, error=error, form=form or {},
                running=any(e.status == "running" for e, _, _ in shown))


def _experiment_figures(state: State) -> Cached:
    """The experiments page's last 20 experiments with their results and charts, read at most once
    per ``RECSYS_DASHBOARD_CACHE_SECONDS`` (they cost ~150 ms of this process's CPU at 10^7 items,
    which reloading tabs took from the lists it serves); a start or stop from the dashboard clears
    them. ``GET /v1/experiments`` reads afresh."""
    cache = state.get("dashboard_experiments")
    if cache is None:
        cache = state.setdefault("dashboard_experiments",
                                 Cached(state.settings.serving.dashboard_cache_seconds, _read_experiments))
    return cache


def _read_experiments(serving) -> list[tuple]:
    shown = []
    for experiment in experiment_store.list_all(serving.engine, 20):
        out = experiment_out(serving, experiment)
        charts_by_metric = {
            m.key: charts.intervals(
                f"{m.label}: difference to {out.control}",
                [(a.name, *(_scaled(getattr(a.results[m.key], f), m) for f in ("diff", "diff_low", "diff_high")))
                 for a in out.arms[1:]],
                unit=f"difference to control ({'percentage points' if m.unit == '%' else m.unit}), 95 % interval")
            for m in domain.ALL_METRICS
        }
        shown.append((experiment, out, charts_by_metric))
    return shown


def _scaled(x: float | None, metric: domain.Metric) -> float | None:
    return None if x is None else x * 100 if metric.unit == "%" else x


@post("/dashboard/experiments/start", sync_to_thread=True, include_in_schema=False)
def start_form(request: Request, state: State, data: Form) -> Response:
    session = _admin(request, data)
    if isinstance(session, Response):
        return session
    source = "start experiment"
    try:
        arms = [parse_arm(text, source) for text in data.get("arms", "").split()]
        start_experiment(state.serving, data.get("name", "").strip(),
                         [(a.name, a.version_label, a.weight) for a in arms], source,
                         min_effect=data.get("min_effect", "").strip() or None, force=data.get("force") == "on")
        _experiment_figures(state).clear()
    except InputError as exc:
        return _experiments(state, session, 422, str(exc), data)
    except ExperimentError as exc:
        return _experiments(state, session, 409, str(exc), data)
    return Redirect("/dashboard/experiments", status_code=303)


@post("/dashboard/experiments/{name:str}/stop", sync_to_thread=True, include_in_schema=False)
def stop_form(request: Request, state: State, name: FromPath[str], data: Form) -> Response:
    session = _admin(request, data)
    if isinstance(session, Response):
        return session
    try:
        stop_experiment(state.serving, name, data.get("promote") or None, data.get("force") == "on")
        _experiment_figures(state).clear()
    except InputError as exc:
        return _experiments(state, session, 422, str(exc))
    except NotFound as exc:
        return _experiments(state, session, 404, str(exc))
    except (ExperimentError, VersionError) as exc:
        return _experiments(state, session, 409, str(exc))
    return Redirect("/dashboard/experiments", status_code=303)


@get("/dashboard/players", sync_to_thread=True, include_in_schema=False)
def players_page(state: State, session: Session, player_id: FromQuery[str | None] = None) -> Response:
    """Why this list: the player's last lists from the audit log, with version, arm, gate and filters."""
    player_id = (player_id or "").strip()[:128] or None
    lists = None if player_id is None else store.player_lists(state.serving.engine, player_id, 10)
    status = 404 if player_id is not None and lists is None else 200
    return page("players", status, session=session, player_id=player_id, lists=lists, now=datetime.now(UTC))


ROUTES = [Router(
    path="/",
    route_handlers=[login_form, login, logout, overview, versions_page, activate, runs_page, run_report,
                    experiments_page, start_form, stop_form, players_page],
    dependencies={"session": Provide(signed_in, sync_to_thread=True)},
    exception_handlers={SignInRequired: to_sign_in},
)]
