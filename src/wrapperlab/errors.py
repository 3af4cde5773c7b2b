"""The errors a user can cause or meet (bad input, a damaged file, a run that diverged): each is one line naming what
is wrong, and every entry point turns it into that line and exit code 2 (a traceback only with ``--debug``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class UserError(Exception):
    """Something the user can fix; its message is the one line the command line prints."""


class ConfigError(UserError, ValueError):
    """A bad value where it enters: names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        super().__init__(f"{field}: got {value!r}; expected {allowed}")

    def __reduce__(self):  # a worker process's error reaches the parent whole
        return type(self), (self.field, self.value, self.allowed)


class IntegrityError(UserError):
    """A stored file whose bytes are not the ones written (its sha256 differs from the one recorded at write time,
    or it cannot be parsed): named, never used."""

    def __init__(self, path: Path | str, problem: str, remedy: str = "delete it (or its run directory) to recompute",
                 what: str = ""):
        self.path, self.problem, self.remedy, self.what = Path(path), problem, remedy, what
        super().__init__(f"{what + ': ' if what else ''}{path}: {problem}; {remedy}")

    def __reduce__(self):
        return type(self), (self.path, self.problem, self.remedy, self.what)


class DivergedError(UserError):
    """Training produced a non-finite loss, gradient or weight: the run stops there, keeps its last good checkpoint
    and is never marked finished."""

    def __init__(self, step: int, what: str, value: float, lr: float, run: str = ""):
        self.step, self.what, self.value, self.lr, self.run = step, what, value, lr, run
        where = f"{run}: " if run else ""
        super().__init__(f"{where}training diverged at step {step}: {what} {value} (lr {lr:g}); the run is not "
                         f"finished and keeps its last good checkpoint, if any — lower train.lr or check the data")

    def __reduce__(self):
        return type(self), (self.step, self.what, self.value, self.lr, self.run)
