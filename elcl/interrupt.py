"""What to tell the user when Ctrl-C stops a command.

Typer turns KeyboardInterrupt into exit code 130 before :func:`elcl.cli.app.main` sees
it, so whoever is writing something registers a note here ("RUN keeps steps 0-1; resume
with ...") and ``main`` prints the innermost one with the exit code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

DEFAULT_NOTE = "every file already written is complete (writes are atomic); the one in progress was discarded"

_notes: list[Callable[[], str]] = []
_last: list[str] = []


@contextmanager
def interrupt_note(note: Callable[[], str]) -> Iterator[None]:
    """While the block runs, a Ctrl-C is reported with ``note()`` (evaluated at that moment)."""
    _notes.append(note)
    try:
        yield
    except KeyboardInterrupt:
        if not _last:  # the innermost block speaks; outer ones see it already set
            _last.append(note())
        raise
    finally:
        _notes.pop()


def reset() -> None:
    _last.clear()


def interrupted_message() -> str:
    """The note of the innermost block a KeyboardInterrupt left, else the default."""
    note = _last[0] if _last else DEFAULT_NOTE
    _last.clear()
    return f"interrupted: {note}"
