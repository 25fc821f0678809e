"""``recsys experiment start|stop|report|list``: A/B experiments between model versions (docs/experiments.md)."""

from __future__ import annotations

import argparse

from recsys.settings import Settings


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
                       help="an arm: a model version id (or 'popularity') and its relative weight, e.g. "
                            "control=12:50; repeat for each arm, the control first")
    stop = actions.add_parser("stop", help="end an experiment, optionally activating an arm's version")
    stop.add_argument("name", help="the experiment's name")
    stop.add_argument("--promote", metavar="ARM", help="activate this arm's version (the normal activation)")
    stop.add_argument("--force", action="store_true",
                      help="promote a version the quality gate refused (logged and recorded)")
    report = actions.add_parser("report", help="per-arm rates with 95%% intervals and the difference to control")
    report.add_argument("name", help="the experiment's name")
    actions.add_parser("list", help="experiments, newest first")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.db import experiments as store
    from recsys.db.engine import create_engine
    from recsys.experiments import check_arms, check_name, parse_arm

    engine = create_engine(settings)
    try:
        if args.action == "start":
            name = check_name(args.name, "experiment start", "name")
            arms = check_arms([parse_arm(text) for text in args.arm], "--arm")
            experiment = store.start(engine, name, arms)
            print(f"started experiment {experiment.name!r}: "
                  + ", ".join(f"{a.name}=version {a.version_label} (weight {a.weight})" for a in experiment.arms))
        elif args.action == "stop":
            experiment = store.stop(engine, args.name, promote=args.promote, force=args.force)
            promoted = experiment.arm(args.promote) if args.promote else None
            print(f"stopped experiment {experiment.name!r}"
                  + (f"; activated version {promoted.version_id} (arm {promoted.name})" if promoted else ""))
        elif args.action == "report":
            experiment = store.get(engine, args.name)
            print("\n".join(report_lines(experiment, store.outcomes(engine, experiment))))
        else:
            for e in store.list_all(engine):
                arms = ", ".join(f"{a.name}={a.version_label}:{a.weight}" for a in e.arms)
                print(f"{e.name:<24} {e.status:<8} {e.started_at:%Y-%m-%d %H:%M}  {arms}")
    finally:
        engine.dispose()
    return 0


def report_lines(experiment, outcomes) -> list[str]:
    from recsys.experiments import METRICS, interval, results

    rows = results(outcomes)
    lines = [f"experiment {experiment.name} ({experiment.status}, started {experiment.started_at:%Y-%m-%d %H:%M} UTC"
             + (f", stopped {experiment.stopped_at:%Y-%m-%d %H:%M}" if experiment.stopped_at else "") + ")",
             f"control: {experiment.control.name}; intervals are 95 %; a difference is arm - control",
             "",
             f"{'arm':<14} {'version':>10} {'weight':>6} {'players':>8} {'lists':>8} {'impressions':>11} "
             f"{'clicks':>7} {'plays':>7} {'dismissals':>10}"]
    for r in rows:
        o = r.outcome
        lines.append(f"{o.arm:<14} {('popularity' if o.version_id is None else o.version_id):>10} {o.weight:>6} "
                     f"{o.players:>8} {o.lists:>8} {o.impressions:>11} {o.clicks:>7} {o.plays:>7} {o.dismissals:>10}")
    for metric in METRICS:
        lines += ["", f"{metric.label} ({metric.unit})",
                  f"  {'arm':<14} {'value [95 % CI]':<30} {'difference to control [95 % CI]':<34} {'p':>7}  verdict"]
        for r in rows:
            e = r.estimates[metric.key]
            p = "-" if e.p_value is None else f"{e.p_value:.4f}"
            lines.append(f"  {r.outcome.arm:<14} {interval(e, metric):<30} "
                         f"{('' if r.is_control else interval(e, metric, diff=True)):<34} "
                         f"{('' if r.is_control else p):>7}  {r.verdict(metric)}")
    return lines
