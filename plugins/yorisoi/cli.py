"""`yorisoi`: the command line of the product (dbt, quality gates, activation, campaign readouts,
documents, roles, the operation log, erasure). With the kit installed (`pip install yorisoi[kit]`) it
also carries the demo's commands: the synthetic brand, its servers, the demo, benchmarks and evaluations."""

from __future__ import annotations

import sys

import typer

from .activation.cli import activation_app
from .audit.cli import audit_app, customer_app
from .docs.cli import docs_app
from .outcomes.cli import campaign_app
from .privacy.cli import privacy_app
from .quality.cli import quality_app
from .report.cli import report_app
from .roles import roles_app
from .sources.cli import ingest_command, sources_app

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
app.add_typer(sources_app, name="sources")
app.add_typer(privacy_app, name="privacy")
app.add_typer(campaign_app, name="campaign")
app.command("ingest")(ingest_command)

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


def expected_errors() -> tuple[type[BaseException], ...]:
    """The project's own error types: a user's input, configuration or a missing build, each with a
    message that says what to do. Imported when an error happens, so a clean run pays nothing."""
    from .activation.delivery.destinations import DestinationBuildError
    from .activation.delivery.destinations.base import DestinationError
    from .activation.delivery.engine import InvalidRecords, SyncError
    from .activation.selection.definitions import AudienceError
    from .activation.selection.membership import MembershipError
    from .privacy.keys import MatchKeyError
    from .quality.suites import SuiteError
    from .report.browser import BrowserError
    from .roles import RolesError
    from .sources.registry import RegistryError
    from .transform import DbtFailed

    return (
        AudienceError,
        BrowserError,
        DbtFailed,
        DestinationBuildError,
        DestinationError,
        FileNotFoundError,
        InvalidRecords,
        MatchKeyError,
        MembershipError,
        PermissionError,
        RegistryError,
        RolesError,
        SuiteError,
        SyncError,
    )


def command_name(argv: list[str]) -> str:
    """`yorisoi activation dry-run` for argv [..., "activation", "dry-run", "cart_abandonment"]."""
    words = ["yorisoi"]
    for arg in argv[1:3]:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words)


def main(argv: list[str] | None = None) -> None:
    """The console script: logs to stderr (stdout carries only the answer, so `--json` pipes), and
    an expected error is one line on stderr, exit 2, instead of a traceback."""
    from .logs import logs_to_stderr

    argv = sys.argv if argv is None else argv
    logs_to_stderr()
    try:
        app(args=argv[1:], prog_name="yorisoi")
    except Exception as e:
        if not isinstance(e, expected_errors()):
            raise
        # several problems (an audience file's fields) are joined with '; ' on the one line
        message = "; ".join(" ".join(line.split()) for line in str(e).splitlines() if line.strip())
        message = message or type(e).__name__
        typer.echo(f"{command_name(argv)}: {message}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
