"""Entry point of the `elcl` command.

Sub-commands live in their own modules; this one only wires them together and turns
:class:`~elcl.errors.ElclError` into a one-line message with exit code 2.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from elcl import __version__, interrupt
from elcl.cli import (
    data_cmds,
    evaluate_cmd,
    export_cmd,
    fisher_cmd,
    link_cmd,
    migrate_cmd,
    pretrain_cmd,
    prune_cmd,
    sweep_cmd,
    train_cmd,
    update_cmd,
)
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


for _module in (
    train_cmd,
    fisher_cmd,
    evaluate_cmd,
    migrate_cmd,
    pretrain_cmd,
    link_cmd,
    export_cmd,
    prune_cmd,
    update_cmd,
    sweep_cmd,
):
    _module.register(app)


def main() -> None:
    interrupt.reset()
    interrupt.install_sigterm_handler()
    try:
        # Without standalone mode Typer *returns* exit codes (130 after Ctrl-C, a command's
        # typer.Exit code) instead of exiting: they must reach the shell.
        rc = app(standalone_mode=False)
    except ElclError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:  # pragma: no cover - typer control flow
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _exit_interrupted()
    except OSError as exc:
        # A read-only or full output/cache directory: one line naming the path, not a traceback.
        where = exc.filename or "elcl"
        typer.echo(f"error: {where}: {exc.strerror or exc}; check that the directory exists and is writable", err=True)
        sys.exit(2)
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
    if isinstance(rc, int) and rc != 0:
        if rc == 130:
            _exit_interrupted()
        sys.exit(rc)


def _exit_interrupted() -> NoReturn:
    """The note of what was kept, then 130 (Ctrl-C) or 143 (SIGTERM)."""
    code = interrupt.exit_code()
    typer.echo(interrupt.interrupted_message(), err=True)
    sys.exit(code)
