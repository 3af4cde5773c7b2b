"""A live copy of runs' metrics in TensorBoard, for watching a sweep while it trains.

The run's ``metrics.jsonl`` stays the record (the report reads it); the mirror is runtime, never part of a run's
identity, so the same command with or without it computes the same run. Each run writes its own TensorBoard
"run" (``DIR/<run id>``: tags are the metric names, so runs overlay in one chart). A resumed run starts its event
file with a purge marker at the step it resumes from, so the part redone after a kill is not drawn twice; a run
started afresh purges everything an earlier attempt drew. TensorBoard is optional
(``pip install 'wrapperlab[tensorboard]'``); W&B (``wandb sync --sync-tensorboard``) and MLflow can read these
event files.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from wrapperlab.errors import ConfigError
from wrapperlab.runs.store import Run


def check_tensorboard() -> None:
    """At the boundary: the mirror asked for and its writer importable, or one line naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401  (needs the tensorboard package)
    except ImportError:
        raise ConfigError("tensorboard", "a directory",
                          "installed TensorBoard: pip install 'wrapperlab[tensorboard]'") from None


class TensorBoardMirror:
    """What :meth:`Run.log_metrics` and :meth:`Run.truncate_metrics` forward to while a process computes a run."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.writer: Any = None

    def _open(self, purge_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.writer is not None:
            self.writer.close()
        self.writer = SummaryWriter(log_dir=str(self.directory), purge_step=purge_step)

    def restart(self, step: int) -> None:
        """The run keeps its metrics up to ``step`` (-1: none): hide what an earlier attempt drew after it."""
        self._open(purge_step=step + 1 if step >= 0 else 0)

    def log(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            self._open(purge_step=None)
        step = int(record.get("step", 0))
        for key, value in record.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key != "step" and number and math.isfinite(value):
                self.writer.add_scalar(key, value, step)
        self.writer.flush()  # a sweep is watched while it runs

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@contextmanager
def mirrored(run: Run, directory: str | None) -> Iterator[Run]:
    """``run`` with its metrics mirrored to ``directory/<run id>`` while the block runs (nothing when None)."""
    if not directory:
        yield run
        return
    run.mirror = TensorBoardMirror(Path(directory) / run.id)
    try:
        yield run
    finally:
        run.mirror.close()
        run.mirror = None
