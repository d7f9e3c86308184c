"""Run the `elcl` console entry point in-process, as a shell would see it."""

from __future__ import annotations

import sys

from elcl.cli.app import main


def run_main(args: list[str], capsys, monkeypatch) -> tuple[int, str]:
    """(exit code, stderr) of ``elcl ARGS``: the one-line errors and exit codes users get."""
    monkeypatch.setattr(sys, "argv", ["elcl", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err
