"""`yorisoi campaign readout`: each campaign's lift against control (and B against A), its 95 %
interval and the verdict, as `make demo` prints them, in Japanese by default
(docs/campaign-measurement.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

campaign_app = typer.Typer(help="Campaign outcomes (効果測定): lift against control, intervals and verdicts.")

Lang = Annotated[str, typer.Option("--lang", help="ja (default) or en")]
AsJson = Annotated[bool, typer.Option("--json", help="every comparison as JSON instead of lines")]
METRIC_HELP = (
    "only this metric, repeatable (conversion, revenue_per_recipient, ctr, f1_to_f2_90d, f1_to_f2_180d, "
    "subscription_retention_90d, subscription_retention_180d, revenue_365d); default all"
)


def _number(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def readout_dict(r) -> dict:
    """One campaign's readout as plain data (estimates, both intervals, q-value, verdicts)."""
    return {
        "campaign_key": r.campaign_key,
        "campaign": r.campaign,
        "channel": r.channel,
        "sample_ratio": None
        if r.srm is None
        else {"p_value": _number(r.srm.p_value), "flagged": bool(r.srm.flagged), "cause": r.srm.cause_en},
        "comparisons": [
            {
                "metric": c.metric,
                "treatment": c.treatment,
                "control": c.control,
                "method": c.estimate.method,
                "n_treatment": c.estimate.n_treatment,
                "n_control": c.estimate.n_control,
                "mean_treatment": _number(c.estimate.mean_treatment),
                "mean_control": _number(c.estimate.mean_control),
                "difference": _number(c.estimate.diff),
                "ci95": [_number(c.estimate.ci_low), _number(c.estimate.ci_high)],
                "always_valid_ci95": [_number(c.estimate.seq_low), _number(c.estimate.seq_high)],
                "p_value": _number(c.estimate.p_value),
                "q_value": _number(c.q_value),
                "variance_reduction": _number(c.estimate.variance_reduction),
                "verdict": c.verdict.code,
                "verdict_ja": c.verdict.ja,
                "verdict_en": c.verdict.en,
                "more_needed": c.verdict.more_needed,
            }
            for c in r.comparisons
        ],
    }


DESIGNS_HELP = (
    "the assigned splits: JSON {audience: {arm: share}}, or a list of {audience, expected_shares} "
    "(a planted brand's truth/planted_campaigns.json); default: audiences/*.yml"
)


def designs_option(path: Path | None) -> dict[str, dict[str, float]] | None:
    """The --designs file read, or None for the audiences' own splits; a bad file is a usage error."""
    if path is None:
        return None
    from .readout import load_designs

    try:
        return load_designs(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--designs") from None


@campaign_app.command("readout")
def readout_command(
    campaign: Annotated[
        str | None, typer.Argument(help="only campaigns whose key (audience|run|destination) contains this")
    ] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help=METRIC_HELP)] = None,
    warehouse: Annotated[Path | None, typer.Option(help="the warehouse (default: the embedded one)")] = None,
    designs: Annotated[Path | None, typer.Option(help=DESIGNS_HELP)] = None,
    lang: Lang = "ja",
    as_json: AsJson = False,
) -> None:
    """Read out every campaign in marts.campaign_results: the sample-ratio check, each comparison
    with its 95 % interval, and the verdict decided on the always-valid interval."""
    from .. import paths
    from . import readout

    if lang not in ("ja", "en"):
        raise typer.BadParameter("ja or en", param_hint="--lang")
    path = Path(warehouse or paths.warehouse_path())
    if not path.exists():
        raise FileNotFoundError(f"no warehouse at {path}: build it first (make demo, or yorisoi dbt build)")
    split = designs_option(designs)
    import duckdb

    try:
        readouts = readout.read(path, split)
    except duckdb.CatalogException as exc:
        raise FileNotFoundError(
            f"{path} has no campaign marts yet ({str(exc).splitlines()[0]}): "
            "run `yorisoi dbt build --select +tag:campaigns`"
        ) from None
    readouts = [r for r in readouts if campaign is None or campaign in r.campaign_key]
    if as_json:
        typer.echo(json.dumps([readout_dict(r) for r in readouts], ensure_ascii=False, indent=1))
        return
    if not readouts:
        typer.echo("キャンペーンの結果はまだありません。" if lang == "ja" else "No campaign results yet.")
        return
    for line in readout.summary_lines(readouts, lang, metrics=tuple(metric) if metric else None):
        typer.echo(line)
