"""``sokka simulate``: compare supervision strategies in virtual time."""

from __future__ import annotations

import json
from typing import Any

import click

from sokka.core.errors import ValidationError
from sokka.shell.cli.common import DURATION, _json, cli

__all__ = ["simulate"]


@cli.command()
@click.argument(
    "scenario",
    type=click.Choice(
        ["skew", "drift", "pauses", "crashes", "mixed", "store-step", "store-step-back", "demo"]
    ),
)
@click.option("--seed", type=int, default=0, show_default=True, help="The random seed.")
@click.option("--workers", type=click.IntRange(1, 1_000), default=None, help="Worker processes.")
@click.option("--tasks", type=click.IntRange(1, 100_000), default=None, help="Tasks to run.")
@click.option("--lease", type=DURATION, default=None, help="Lease time (e.g. 10s).")
@click.option("--keepalive", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=None, help="Keepalive interval, as a fraction of the lease.")  # fmt: skip
@click.option("--supervisors", type=click.IntRange(1, 100), default=None, help="Supervisors.")
@click.option("--interval", type=DURATION, default=None, help="Supervisor listing interval.")
@click.option("--latency", type=DURATION, default=None, help="One-way store latency.")
@click.option("--skew", type=DURATION, default=None, help="Largest worker/supervisor clock offset.")
@click.option("--drift", type=click.FloatRange(0, 0.5, max_open=True), default=None,
              help="Largest clock drift rate (0.05 = 5%).")  # fmt: skip
@click.option("--crash-prob", type=click.FloatRange(0, 1), default=None,
              help="Probability that a worker crashes during a task.")  # fmt: skip
@click.option("--pause-every", type=DURATION, default=None, help="Mean time between pauses.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Also draw the scenario's sweep (e.g. false revocations by clock skew) "
              "into a PNG (needs the plot extra).")  # fmt: skip
@click.option("--strategy", "strategies", multiple=True,
              type=click.Choice(["observed", "deadline", "store-clock"]),
              help="Only these strategies (repeatable; default: all).")  # fmt: skip
@_json
def simulate(
    scenario: str,
    seed: int,
    workers: int | None,
    tasks: int | None,
    lease: int | None,
    keepalive: float | None,
    supervisors: int | None,
    interval: int | None,
    latency: int | None,
    skew: int | None,
    drift: float | None,
    crash_prob: float | None,
    pause_every: int | None,
    strategies: tuple[str, ...],
    as_json: bool,
    plot: str | None,
) -> None:
    """Compare lease-supervision strategies in a deterministic virtual-time simulation."""
    from sokka.shell import simulation as sim

    # Before the simulation, which can take a while: a plot that cannot be drawn
    # is an error now, not after every number was computed.
    pyplot = _pyplot() if plot is not None else None
    try:
        chosen = sim.scenario_named(
            scenario, workers=workers, tasks=tasks, lease_ms=lease, keepalive=keepalive,
            supervisors=supervisors, interval_ms=interval, latency_ms=latency, skew_ms=skew,
            drift=drift, crash_prob=crash_prob, pause_every_ms=pause_every,
        )  # fmt: skip
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    picked = tuple(s for s in sim.STRATEGIES if not strategies or s in strategies)
    reports = sim.compare(chosen, seed, picked)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in reports], indent=2))
    else:
        click.echo(sim.format_table(scenario, chosen, reports))
    if plot is not None and pyplot is not None:
        _plot(
            pyplot,
            plot,
            scenario,
            sim.SWEEPS[scenario],
            sim.sweep_parameter(scenario, chosen, seed, picked),
        )
        if not as_json:
            click.echo(f"\nwrote {plot}")


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files, no display), or the error
    that says how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValidationError(
            "plot", "needs matplotlib, which is not installed: pip install 'sokka[plot]'"
        ) from None
    return plt


def _plot(
    plt: Any, path: str, scenario: str, plan: Any, points: dict[str, list[tuple[float, float]]]
) -> None:
    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=120)
    styles = {"observed": ("-", 3.0), "deadline": ("-", 1.5), "store-clock": ("--", 1.5)}
    for strategy, series in points.items():
        xs, ys = zip(*series, strict=True)
        style, width = styles.get(strategy, ("-", 1.5))
        axes.plot(xs, ys, style, linewidth=width, marker="o", label=strategy)
    axes.set_xlabel(plan.axis)
    axes.set_ylabel(plan.metric_label)
    axes.set_title(f"sokka simulate {scenario}: {plan.metric_label} by strategy")
    if plan.field == "skew_ms":
        axes.set_xscale("symlog", linthresh=0.01)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
