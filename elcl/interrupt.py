"""What to tell the user when Ctrl-C (or a SIGTERM) stops a command.

Typer turns KeyboardInterrupt into exit code 130 before :func:`elcl.cli.app.main` sees
it, so whoever is writing something registers a note here ("RUN keeps steps 0-1; resume
with ...") and ``main`` prints the innermost one with the exit code.

SIGTERM (``kill``, a batch scheduler's time limit, ``timeout``) is turned into
:class:`Terminated`, a KeyboardInterrupt, so the same blocks mark the run
``interrupted`` and release its lock instead of leaving it ``running`` for ever; the
exit code is then 143 (128 + 15), as a shell reports a process killed by SIGTERM.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

DEFAULT_NOTE = "every file already written is complete (writes are atomic); the one in progress was discarded"

_notes: list[Callable[[], str]] = []
_last: list[str] = []
_terminated: list[bool] = []

SIGTERM_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """A SIGTERM, raised where the process happened to be, handled like Ctrl-C."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _terminated.append(True)
    raise Terminated


def install_sigterm_handler() -> None:
    """From now on SIGTERM raises :class:`Terminated` (main thread only, as Python allows)."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def exit_code() -> int:
    """130 after Ctrl-C, 143 after SIGTERM."""
    return SIGTERM_EXIT if _terminated else 130


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
    _terminated.clear()


def interrupted_message() -> str:
    """The note of the innermost block a KeyboardInterrupt left, else the default."""
    note = _last[0] if _last else DEFAULT_NOTE
    _last.clear()
    return f"interrupted: {note}"
