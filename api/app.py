"""The Litestar application: ``create_app(settings)``.

The lifespan opens the database engine and starts the :class:`~recsys.serving.state.ServingState` (catalogue
now, the active version's index in the background, LISTEN for changes); handlers are grouped by
domain, each module listing its ``ROUTES``.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from api import catalogue, dashboard, events, experiments, feedback, health, models, players, recommendations, stream
from api.auth import KeyCache
from api.bodies import refuse_control_characters
from api.metrics import Metrics, metrics_endpoint, metrics_middleware
from api.openapi import allow_options, render_plugins
from api.problems import EXCEPTION_HANDLERS, problem_details_plugin
from recsys.db.engine import create_engine, libpq_url
from recsys.db.lists import GroupCommit
from recsys.db.pool import OnlinePool
from recsys.serving.state import ServingState
from recsys.settings import Settings

ROUTES = [*health.ROUTES, metrics_endpoint, *catalogue.ROUTES, *players.ROUTES, *recommendations.ROUTES,
          *models.ROUTES, *events.ROUTES, *feedback.ROUTES, *stream.ROUTES, *experiments.ROUTES,
          *dashboard.ROUTES]


PARENT_PID = "RECSYS_SERVE_PARENT_PID"
"""The ``recsys serve`` process that started this worker (recsys.cli.serve sets it)."""
PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal this process gets when its parent exits."""


def create_served_app() -> Litestar:
    """The factory ``recsys serve`` hands its server: :func:`create_app` in a worker process that
    first arranges to be killed when the ``recsys serve`` process ends, however it ends. A worker
    that outlived a SIGKILLed parent kept the port and served on (issue 22); granian does not
    watch for that itself."""
    parent = os.environ.get(PARENT_PID)
    if parent and int(parent) != os.getpid():  # a server running in-process has no parent to watch
        die_with_parent(int(parent))
    return create_app()


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent exits (Linux; elsewhere nothing happens). The parent may
    have died before the call: then at once."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def create_app(settings: Settings | None = None) -> Litestar:
    """The API over ``settings`` (default: read from the environment, as ``recsys serve`` workers do)."""
    settings = settings or Settings.from_env()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        url = await anyio.to_thread.run_sync(libpq_url, settings)  # may start the embedded PostgreSQL
        # No check: the API starts while the database is down (/readyz says 503 until it answers).
        engine = create_engine(settings, url, check=False, session_limits=True)
        serving = ServingState(settings, engine, url, metrics)
        app.state.serving = serving
        app.state.pool = OnlinePool.for_api(settings, url)
        await app.state.pool.open()
        app.state.list_log = (GroupCommit(app.state.pool, synchronous_commit=settings.serving.log_synchronous_commit)
                              if settings.serving.log_group_commit else None)
        keys = settings.serving
        app.state.api_keys = KeyCache(engine, keys.api_key_cache_seconds, max_bytes=keys.api_key_cache_bytes,
                                      grace_seconds=keys.api_key_grace_seconds)
        await anyio.to_thread.run_sync(serving.start)
        try:
            yield
        finally:
            await app.state.pool.close()
            await anyio.to_thread.run_sync(serving.stop)
            engine.dispose()

    return Litestar(
        route_handlers=[*allow_options(ROUTES), *ROUTES],
        lifespan=[lifespan],
        state=State({"settings": settings, "metrics": metrics}),
        plugins=[problem_details_plugin()],
        before_request=refuse_control_characters,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[metrics_middleware(metrics)],
        openapi_config=OpenAPIConfig(
            title="recsys",
            version="1",
            description="Real-time slot recommendations for online casinos (docs/api.md).",
            path="/schema",
            render_plugins=render_plugins(),
        ),
    )
