"""One writer per run directory: a lock file naming the process that holds it.

Two `elcl train` processes on one run directory would interleave their metric rows and
overwrite each other's checkpoints. The lock is a file created exclusively
(``O_CREAT | O_EXCL``) holding pid, host and start time. A second process is refused
with the holder's pid; a lock whose process is gone (killed, power loss) is *reported*
as stale with the command that clears it, never broken silently, since a process on
another host cannot be checked from here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from elcl.errors import RunLockedError

LOCK_FILE = ".lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


class RunLock:
    """``with RunLock(run_dir):`` holds the lock for the block; released on any exit."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.held = False

    def acquire(self) -> RunLock:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            raise RunLockedError(self._refusal()) from None
        except OSError as exc:
            raise RunLockedError(
                f"{self.directory}: cannot write the run directory ({exc.strerror or exc}); choose a writable output_dir"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(info) + "\n")
        self.held = True
        return self

    def _refusal(self) -> str:
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host, started = int(info["pid"]), str(info["host"]), str(info.get("started", "?"))
        except (OSError, ValueError, KeyError, TypeError):
            return f"{self.path}: run directory is locked by an unreadable lock file; if no elcl process writes {self.directory}, remove it: rm {self.path}"
        if host == socket.gethostname():
            if _alive(pid):
                return f"{self.path}: run directory is being written by pid {pid} on {host} (since {started}); wait for it to finish or stop it"
            return (
                f"{self.path}: stale lock of pid {pid} on {host} (since {started}), which is no longer running (killed?); "
                f"remove it and resume: rm {self.path} && elcl train --resume {self.directory}"
            )
        return (
            f"{self.path}: run directory is locked by pid {pid} on host {host} (since {started}); "
            f"if that process is gone, remove the lock: rm {self.path}"
        )

    def clear_if_stale(self) -> bool:
        """Remove the lock when its process is gone *on this host* (a killed worker whose run
        a sweep resumes); a live holder or another host's lock is left alone. True when removed."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            pid, host = int(info["pid"]), str(info["host"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if host != socket.gethostname() or _alive(pid):
            return False
        self.path.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:  # noqa: PYI034
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
