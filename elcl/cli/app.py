"""Entry point of the `elcl` command.

Sub-commands live in their own modules; this one only wires them together and turns
:class:`~elcl.errors.ElclError` into a one-line message with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from elcl import __version__
from elcl.cli import data_cmds, evaluate_cmd, export_cmd, fisher_cmd, link_cmd, train_cmd
from elcl.errors import ElclError

app = typer.Typer(
    help="elcl: continual medical entity linking with EWC and K-FAC penalties.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data_cmds.app, name="data")


@app.command()
def version() -> None:
    """Print the elcl version."""
    typer.echo(__version__)


for _module in (train_cmd, fisher_cmd, evaluate_cmd, link_cmd, export_cmd):
    _module.register(app)


def main() -> None:
    try:
        app(standalone_mode=False)
    except ElclError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Exit,) as exc:  # pragma: no cover - typer control flow
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
