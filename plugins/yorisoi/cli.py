"""`yorisoi`: the command line of the product (dbt, quality gates, activation, documents, roles,
the operation log). With the kit installed (`pip install yorisoi[kit]`) it also carries the demo's
commands: the synthetic brand, its servers, the demo, benchmarks and evaluations."""

from __future__ import annotations

import typer

from .activation.cli import activation_app
from .audit.cli import audit_app, customer_app
from .docs.cli import docs_app
from .quality.cli import quality_app
from .report.cli import report_app
from .roles import roles_app

app = typer.Typer(
    help="Yorisoi: warehouse-native customer data platform for D2C and mail-order brands.",
    no_args_is_help=True,
)
app.add_typer(audit_app, name="audit")
app.add_typer(customer_app, name="customer")
app.add_typer(roles_app, name="roles")
app.add_typer(docs_app, name="docs")
app.add_typer(quality_app, name="quality")
app.add_typer(activation_app, name="activation")
app.add_typer(report_app, name="report")

try:
    from yorisoi_kit.cli import register as _register_kit
except ModuleNotFoundError as e:  # the kit is optional: a production install has the product only
    if e.name != "yorisoi_kit":
        raise
else:
    _register_kit(app)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt(ctx: typer.Context) -> None:
    """Run dbt on the project in dbt_project/ against the embedded warehouse, e.g.
    `yorisoi dbt build --select +deliverable_customers`. Paths and the match key come from var/."""
    from .transform import run_dbt

    run = run_dbt(list(ctx.args), demo_key=True, raise_on_failure=False)
    raise typer.Exit(0 if run.success else 1)


if __name__ == "__main__":
    app()
