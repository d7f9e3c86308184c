"""One error type for everything a user can get wrong.

The CLI catches :class:`ElclError` and prints its message as a single line with a
non-zero exit code, so every message must name the file/line or config key at fault
and say what was expected.
"""

from __future__ import annotations


class ElclError(Exception):
    """A user-facing error: bad input file, bad config, corrupt checkpoint, ..."""


class CorpusFormatError(ElclError):
    """A corpus file violates its format; the message starts with ``FILE:LINE:``."""

    def __init__(self, path: object, line: int | None, what: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {what}")
        self.path = str(path)
        self.line = line
        self.what = what


class ConfigError(ElclError):
    """A config key is unknown or its value is invalid."""


class CheckpointError(ElclError):
    """A checkpoint or curvature file is missing, corrupt or from another model."""


class DivergedError(ElclError):
    """Training produced a non-finite loss or parameter; the run is marked failed."""


class RunLockedError(ElclError):
    """Another process holds (or a killed one left) the lock of a run directory."""
