"""``recsys simulate``: a live player stream (play events and feedback) against a running API."""

from __future__ import annotations

import argparse
import os

from recsys.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("simulate", help="send simulated play events and feedback to a running API")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API's base URL (default: %(default)s)")
    parser.add_argument("--api-key", default=os.environ.get("RECSYS_API_KEY"),
                        help="a key with the read and ingest scopes (default: RECSYS_API_KEY)")
    parser.add_argument("--rate", type=float, default=200.0, help="play events per second (default 200)")
    parser.add_argument("--duration", type=float, default=60.0, help="wall seconds to run (default 60)")
    parser.add_argument("--speed", type=float, default=60.0, help="event seconds per wall second (default 60)")
    parser.add_argument("--players", type=int, default=5000, help="players to draw from the database")
    parser.add_argument("--trending-slot", help="a slot this simulation makes popular")
    parser.add_argument("--seed", type=int, default=0, help="seed of the players' choices")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.errors import RecsysError

    if not args.api_key:
        raise RecsysError("--api-key (or RECSYS_API_KEY) is required: create one with `recsys apikey create`")
    for name in ("rate", "duration", "speed"):
        if getattr(args, name) <= 0:
            raise RecsysError(f"--{name} must be positive")
    summary = run_simulation(settings, args)
    for line in summary.lines():
        print(line)
    return 0


def run_simulation(settings: Settings, args: argparse.Namespace):
    import asyncio

    from recsys.db.engine import create_engine
    from recsys.db.simulation import simulation_population
    from recsys.simulate import SimulationConfig, simulate

    engine = create_engine(settings)
    try:
        players, slots, weights = simulation_population(engine, args.players, args.seed)
    finally:
        engine.dispose()
    config = SimulationConfig(
        url=args.url, api_key=args.api_key, rate=args.rate, duration=args.duration, speed=args.speed,
        trending_slot=args.trending_slot, seed=args.seed,
    )
    print(f"simulating {args.rate:g} events/s for {args.duration:g} s against {args.url} "
          f"({len(players):,} players, {len(slots):,} slots, event time x{args.speed:g}) ...", flush=True)
    return asyncio.run(simulate(config, players, slots, weights))
