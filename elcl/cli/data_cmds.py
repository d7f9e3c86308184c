"""`elcl data ...`: fetch corpora, print statistics, evaluate candidate recall."""

from __future__ import annotations

import typer

app = typer.Typer(help="Corpora: fetch, statistics, candidate recall.", no_args_is_help=True)
