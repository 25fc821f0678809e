"""``recsys pipeline run|schedule``: the daily cycle once, or every day at a UTC time (docs/pipeline.md).

Exit codes of ``run`` (``schedule`` keeps going whatever a run returns, and exits 0 when stopped):

    0  the new version is active (with --no-activate: passed the gate and is ready, not active), or
       nothing new since the last completed run (skipped)
    1  a stage failed; the message names it and says why (the run row is failed)
    2  bad input or configuration (an invalid RECSYS_* value, a bad --end-day, no database)
    3  the quality gate refused the new version (it stays ready; the active version stays)
    4  another pipeline (or a `recsys train`) is running; this one did nothing
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock

from recsys.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_STAGE_FAILED = 1
EXIT_BAD_INPUT = 2  # also what recsys.cli.main returns for a RecsysError before the run
EXIT_REFUSED = 3
EXIT_BUSY = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pipeline",
        help="the daily cycle: consolidate, train, gate, activate, report (once or on a schedule)",
        description=__doc__.split("\n\n")[0],
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    once = actions.add_parser(
        "run",
        help="run the daily cycle once",
        description="Consolidate new play, train and evaluate a version, gate and activate it, precompute "
        "offline top-N, retire old versions and write an HTML run report. A second run with nothing new "
        "does nothing.",
        epilog="exit codes:\n" + __doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    once.add_argument("--end-day", type=_day, help="last day of the training window, YYYY-MM-DD (default: latest)")
    once.add_argument("--force", action="store_true", help="train even if nothing changed since the last run")
    once.add_argument(
        "--no-activate", dest="activate", action="store_false",
        help="gate the version as usual but leave one that passes ready, not active: a candidate for an "
        "experiment (docs/experiments.md)",
    )
    once.set_defaults(func=run)

    daily = actions.add_parser(
        "schedule",
        help="keep running and start the cycle every day at a UTC time",
        description="Start `recsys pipeline run` every day at --at (UTC). Ctrl-C or SIGTERM stops it; a run "
        "in progress is then marked failed and its version never activated.",
    )
    daily.add_argument("--at", type=_clock, help="UTC time HH:MM (default: RECSYS_PIPELINE_AT)")
    daily.add_argument("--now", action="store_true", help="also run once at start")
    daily.set_defaults(func=schedule)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db.engine import create_engine

    engine = create_engine(settings)
    try:
        with stop_on_sigterm():
            return run_once(engine, settings, end_day=args.end_day, force=args.force, activate=args.activate)
    finally:
        engine.dispose()


def run_once(
    engine, settings: Settings, *, end_day: date | None = None, force: bool = False, activate: bool = True
) -> int:
    """One pipeline run; prints the outcome and returns the exit code (KeyboardInterrupt propagates)."""
    from recsys.pipeline import PipelineBusy, StageFailed, run_pipeline

    try:
        outcome = run_pipeline(engine, settings, end_day=end_day, force=force, activate=activate)
    except PipelineBusy as exc:
        print(f"recsys pipeline: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except StageFailed as exc:
        print(f"recsys pipeline: {exc}", file=sys.stderr)
        return EXIT_STAGE_FAILED
    print(f"pipeline run {outcome.run_id} {outcome.status} in {outcome.seconds:.0f} s: {outcome.message}")
    return EXIT_REFUSED if outcome.status == "refused" else EXIT_OK


def schedule(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db.engine import libpq_url

    at = args.at or _clock(settings.pipeline.at)
    url = libpq_url(settings)  # the embedded server starts once and lives as long as the scheduler
    log.info("pipeline scheduled daily at %s UTC", f"{at:%H:%M}")
    first = args.now
    with stop_on_sigterm():
        try:
            while True:
                if not first:
                    wait_until(next_run_at(datetime.now(UTC), at))
                first = False
                code = _scheduled_run(settings, url)
                log.info("pipeline run ended with exit code %d", code)
        except KeyboardInterrupt:
            log.info("scheduler stopped")
    return EXIT_OK


def _scheduled_run(settings: Settings, url: str) -> int:
    from recsys.db.engine import create_engine
    from recsys.errors import RecsysError

    try:
        engine = create_engine(settings, url)
    except RecsysError as exc:
        log.error("pipeline not started: %s", exc)
        return EXIT_BAD_INPUT
    try:
        return run_once(engine, settings)
    except Exception:
        # A scheduler outlives one bad night (a dropped connection, a full disk): the run row says
        # what happened, the traceback goes to the log, and tomorrow's run starts over.
        log.exception("pipeline run crashed")
        return EXIT_STAGE_FAILED
    finally:
        engine.dispose()


def next_run_at(now: datetime, at: clock) -> datetime:
    """The first ``at`` (UTC) strictly after ``now`` (an aware datetime)."""
    now = now.astimezone(UTC)
    candidate = datetime.combine(now.date(), at, tzinfo=UTC)
    return candidate if candidate > now else candidate + timedelta(days=1)


def wait_until(when: datetime) -> None:
    log.info("next pipeline run at %s UTC (in %s)", f"{when:%Y-%m-%d %H:%M}", _duration(when - datetime.now(UTC)))
    # Short sleeps against the wall clock: a suspended machine or a clock step does not shift the run.
    while (remaining := (when - datetime.now(UTC)).total_seconds()) > 0:
        time.sleep(min(remaining, 30.0))


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM (docker stop, Kubernetes) stops like Ctrl-C: a run in progress is marked failed cleanly."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _duration(delta: timedelta) -> str:
    minutes = max(0, round(delta.total_seconds() / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _clock(text: str) -> clock:
    try:
        hours, minutes = (int(part) for part in text.split(":"))
        return clock(hours, minutes)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a UTC time HH:MM: {text!r}") from exc
