"""``recsys experiment start|stop|report|list``: A/B experiments between model versions (docs/experiments.md)."""

from __future__ import annotations

import argparse
import sys

from recsys.settings import Settings

RED, PLAIN = "\033[31m", "\033[0m"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("experiment", help="start, stop or report an A/B experiment between versions")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser(
        "start", help="split the players who pass the protection gate between arms",
        description="Start an experiment. The first arm is the control the others are compared with. "
                    "One experiment runs at a time.",
    )
    start.add_argument("name", help="the experiment's name (letters, digits, '_', '.', '-')")
    start.add_argument("--arm", action="append", required=True, metavar="NAME=VERSION:WEIGHT",
                       help="an arm: a model version id or a baseline strategy ('popularity', 'itemknn') and its "
                            "relative weight, e.g. control=popularity:50; repeat for each arm, the control first")
    start.add_argument("--min-effect", default=None, metavar="LIFT",
                       help="the smallest relative lift in clicks per impression worth finding (default 0.1: "
                            "10 %%); the report gives no verdict before the sample that finds it with 80 %% "
                            "power is reached")
    start.add_argument("--force", action="store_true",
                       help="let an arm serve a version the quality gate refused (logged)")
    stop = actions.add_parser("stop", help="end an experiment, optionally activating an arm's version")
    stop.add_argument("name", help="the experiment's name")
    stop.add_argument("--promote", metavar="ARM", help="activate this arm's version (the normal activation)")
    stop.add_argument("--force", action="store_true",
                      help="promote a version the quality gate refused, or an arm flagged on a protection "
                           "guardrail (logged and recorded)")
    report = actions.add_parser("report", help="per-arm metrics and guardrails with 95%% intervals and the "
                                               "difference to control")
    report.add_argument("name", help="the experiment's name")
    actions.add_parser("list", help="experiments, newest first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import experiments as store
    from recsys.db.engine import create_engine
    from recsys.experiments import DEFAULT_MIN_EFFECT, check_arms, check_min_effect, check_name, parse_arm

    threshold = settings.realtime.threshold_seconds
    engine = create_engine(settings)
    try:
        if args.action == "start":
            name = check_name(args.name, "experiment start", "name")
            arms = check_arms([parse_arm(text) for text in args.arm], "--arm")
            min_effect = DEFAULT_MIN_EFFECT if args.min_effect is None else check_min_effect(args.min_effect,
                                                                                               "--min-effect")
            experiment = store.start(engine, name, arms, min_effect=min_effect, force=args.force)
            print(f"started experiment {experiment.name!r}: "
                  + ", ".join(f"{a.name}=version {a.version_label} (weight {a.weight})" for a in experiment.arms))
        elif args.action == "stop":
            experiment = store.stop(engine, args.name, promote=args.promote, force=args.force,
                                    threshold_seconds=threshold)
            promoted = experiment.arm(args.promote) if args.promote else None
            print(f"stopped experiment {experiment.name!r}"
                  + (f"; activated version {promoted.version_id} (arm {promoted.name})" if promoted else ""))
        elif args.action == "report":
            experiment = store.get(engine, args.name)
            lines = report_lines(experiment, store.outcomes(engine, experiment, threshold), threshold)
            print("\n".join(lines))
        else:
            for e in store.list_all(engine):
                arms = ", ".join(f"{a.name}={a.version_label}:{a.weight}" for a in e.arms)
                print(f"{e.name:<24} {e.status:<8} {e.started_at:%Y-%m-%d %H:%M}  {arms}")
    finally:
        engine.dispose()
    return 0


def report_lines(experiment, outcomes, threshold_seconds: float = 3600.0, *, colour: bool | None = None) -> list[str]:
    """The report as printed: traffic, each metric and guardrail per arm, the sample, and the flags.
    A guardrail flag is red on a terminal (``colour`` None: when stdout is one)."""
    from recsys.experiments import ALL_METRICS, GUARDRAILS, interval, results

    if colour is None:
        colour = sys.stdout.isatty()
    rows = results(outcomes, experiment.min_effect)
    lines = [f"experiment {experiment.name} ({experiment.status}, started {experiment.started_at:%Y-%m-%d %H:%M} UTC"
             + (f", stopped {experiment.stopped_at:%Y-%m-%d %H:%M}" if experiment.stopped_at else "") + ")",
             f"control: {experiment.control.name}; intervals are 95 % (delta method over players); "
             "a difference is arm - control",
             "",
             f"{'arm':<14} {'version':>10} {'weight':>6} {'players':>8} {'lists':>8} {'suppressed':>10} "
             f"{'impressions':>11} {'clicks':>7} {'plays':>7} {'dismissals':>10} {'median min/click':>16}"]
    for r in rows:
        o = r.outcome
        median = "-" if o.median_click_minutes is None else f"{o.median_click_minutes:.1f}"
        arm = experiment.arm(o.arm)
        version = arm.version_label if arm is not None else o.version_id or "popularity"  # or the arm's strategy
        lines.append(f"{o.arm:<14} {version:>10} {o.weight:>6} "
                     f"{o.players:>8} {o.lists:>8} {o.suppressed:>10} {o.impressions:>11} {o.clicks:>7} "
                     f"{o.plays:>7} {o.dismissals:>10} {median:>16}")
    for r in rows[1:]:
        lines.append(f"{r.outcome.arm}: {r.sample.words()}")
    for metric in ALL_METRICS:
        heading = f"{metric.label} ({metric.unit})"
        if metric is GUARDRAILS[0]:
            lines += ["", f"protection guardrails (a candidate worse on one is flagged; continuous play past "
                          f"{threshold_seconds / 60:g} min is long)"]
        if metric.guardrail:
            heading = f"guardrail: {heading}"
        lines += ["", heading,
                  f"  {'arm':<14} {'value [95 % CI]':<30} {'difference to control [95 % CI]':<34} {'p':>7}  verdict"]
        for r in rows:
            e = r.estimates[metric.key]
            p = "-" if e.p_value is None else f"{e.p_value:.4f}"
            lines.append(f"  {r.outcome.arm:<14} {interval(e, metric):<30} "
                         f"{('' if r.is_control else interval(e, metric, diff=True)):<34} "
                         f"{('' if r.is_control else p):>7}  {r.verdict(metric)}")
    flags = [flag for r in rows for flag in r.guardrail_flags()]
    if flags:
        lines.append("")
        for flag in flags:
            text = f"WARNING: {flag}; `stop --promote` refuses this arm without --force"
            lines.append(f"{RED}{text}{PLAIN}" if colour else text)
    return lines
