"""The Litestar application: ``create_app(settings)``.

The lifespan opens the database engine and starts the :class:`~recsys.serving.state.ServingState` (catalogue
now, the active version's index in the background, LISTEN for changes); handlers are grouped by
domain, each module listing its ``ROUTES``.
"""

from __future__ import annotations

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
from recsys.db.pool import AsyncPool
from recsys.serving.state import ServingState
from recsys.settings import Settings

ROUTES = [*health.ROUTES, metrics_endpoint, *catalogue.ROUTES, *players.ROUTES, *recommendations.ROUTES,
          *models.ROUTES, *events.ROUTES, *feedback.ROUTES, *stream.ROUTES, *experiments.ROUTES,
          *dashboard.ROUTES]


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
        app.state.pool = AsyncPool.for_api(settings, url)
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
