"""Runs on disk, addressed by their content.

A run lives in ``<root>/<kind>-<hash>/`` where the hash is taken over the run's resolved config
(which names its parent run, itself content-addressed). So the same config twice is the same
directory: a finished run is reused, an unfinished one is resumed from its checkpoint.

Layout of a run directory::

    config.json        resolved config plus the stage's ``code_version`` (what the hash is over), written first
    runtime.json       how it was run (device, threads): not part of the identity
    checkpoint/        step-stamped weights + optimiser state + pointer (resumable)
    metrics.jsonl      one JSON object per evaluation
    model.safetensors  final weights
    result.json        headline numbers
    compute.log        one line per process that started computing the run (host, pid, time): an audit trail
    DONE               completion marker, written last

Only this module knows the layout; a lock file keeps two processes from computing one run at once.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any, Iterator

from wrapperlab.errors import ConfigError, DivergedError, IntegrityError
from wrapperlab.files import atomic_write_text, exclusive_lock, read_weights

DONE = "DONE"
#: the key under which config.json records the code version of the stage that computed the run
VERSION_KEY = "code_version"


def finite_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN; readers get null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def run_id(kind: str, config: dict[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return f"{kind}-{hashlib.sha256(canonical.encode()).hexdigest()[:12]}"


def versioned(config: dict[str, Any], version: int) -> dict[str, Any]:
    """What a run's id is hashed over: its config and the code version of the stage computing it."""
    if VERSION_KEY in config:
        raise ConfigError(VERSION_KEY, config[VERSION_KEY], "a key no stage config uses (it is the store's)")
    return {**config, VERSION_KEY: version}


@dataclass
class Run:
    """Handle on one run directory. ``mirror``: where this process also sends the run's metrics while it computes
    it (runs/mirror.py; runtime, not part of the run)."""

    path: Path
    mirror: Any = dataclass_field(default=None, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def kind(self) -> str:
        return self.id.rsplit("-", 1)[0]

    @property
    def done(self) -> bool:
        return (self.path / DONE).exists()

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoint"

    @property
    def weights_path(self) -> Path:
        return self.path / "model.safetensors"

    def stored_config(self) -> dict[str, Any]:
        """config.json as written: the config and the code version (what the id is hashed over)."""
        return json.loads((self.path / "config.json").read_text())

    def config(self) -> dict[str, Any]:
        """The stage config the run was computed with (without the store's code version)."""
        return {k: v for k, v in self.stored_config().items() if k != VERSION_KEY}

    @property
    def code_version(self) -> int | None:
        return self.stored_config().get(VERSION_KEY)

    def result(self) -> dict[str, Any]:
        return json.loads((self.path / "result.json").read_text())

    def metrics(self) -> list[dict[str, Any]]:
        """The evaluation log. A torn last line (a process killed while appending it) is left out; a damaged line
        before it is an :class:`IntegrityError`."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i == len(lines) - 1:
                    break
                raise IntegrityError(path, f"line {i + 1} is not JSON") from None
        return out

    def log_metrics(self, record: dict[str, Any]) -> None:
        """Append one record as one line, whole or not at all: one ``write`` of the line (a kill cannot split a
        system call), and a short write (a full disk) cut back off — a torn line would be dropped on resume, and
        the step it held, before the checkpoint resumed from, never logged again."""
        data = (json.dumps(finite_json(record), allow_nan=False) + "\n").encode()
        fd = os.open(self.path / "metrics.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before = os.fstat(fd).st_size
            try:
                if os.write(fd, data) != len(data):
                    raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "metrics.jsonl"))
            except OSError:
                os.ftruncate(fd, before)
                raise
        finally:
            os.close(fd)
        if self.mirror is not None:
            self.mirror.log(record)

    def truncate_metrics(self, step: int) -> None:
        """Drop records written after ``step`` (they came from the part of a killed run being redone; a run that
        starts from scratch passes -1: nothing of an earlier attempt is kept)."""
        if self.mirror is not None:
            self.mirror.restart(step)
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = [r for r in self.metrics() if r.get("step", 0) <= step]
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))

    def artifact(self, kind: str, config: dict[str, Any]) -> Path:
        """Where an analysis of this run with ``config`` lives (``analysis/<kind>-<hash>``, no suffix).

        Content-addressed like runs: asking for the same analysis twice finds the stored result.
        """
        return self.path / "analysis" / run_id(kind, config)

    def note_compute(self) -> None:
        """Record that this process computes the run (under the run's lock: a resumed run gets a second line)."""
        import socket
        import time

        with open(self.path / "compute.log", "a") as f:
            f.write(f"{socket.gethostname()} {os.getpid()} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")

    def computed_by(self) -> list[str]:
        path = self.path / "compute.log"
        return path.read_text().splitlines() if path.exists() else []

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Strict JSON: a non-finite number (a loss over no samples) is written as null, never as NaN."""
        text = json.dumps(finite_json(data), indent=1, sort_keys=True, allow_nan=False)
        atomic_write_text(self.path / name, text + "\n")

    def damaged(self) -> str | None:
        """Why a finished run cannot be trusted as it stands, or None: its final weights (``model.safetensors``) must
        be there and hold the tensors whose sha256 was recorded when they were written."""
        if not self.weights_path.exists():
            return f"{self.weights_path.name} is missing"
        try:
            read_weights(self.weights_path)
        except (IntegrityError, OSError) as e:
            return getattr(e, "problem", None) or str(e)
        return None

    def reopen(self) -> None:
        """Make a finished run unfinished again (its marker, result, final weights and the analyses stored with it
        removed; its config stays, and training restarts from step 0 with the metrics truncated): how a damaged run
        is recomputed."""
        for name in (DONE, "result.json", self.weights_path.name):
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / "analysis", ignore_errors=True)  # computed from the weights that are gone

    def clear(self) -> None:
        """Remove everything the run directory holds but its lock: a run that can never be resumed (it diverged
        before its first checkpoint) must not look like one that can."""
        for entry in self.path.iterdir():
            if entry.name != ".lock":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)

    def finish(self, result: dict[str, Any]) -> None:
        """Write the result, then the completion marker: a run is finished only once both exist."""
        self.write_json("result.json", result)
        atomic_write_text(self.path / DONE, "")
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)  # the final weights supersede it


class RunStore:
    def __init__(self, root: str | Path = "runs"):
        self.root = Path(root)

    def run_for(self, kind: str, config: dict[str, Any], version: int) -> Run:
        return Run(self.root / run_id(kind, versioned(config, version)))

    @contextmanager
    def open(self, kind: str, config: dict[str, Any], version: int) -> Iterator[Run]:
        """Create (or re-enter) the run for ``config`` computed by code ``version`` and hold its lock while the
        caller computes it. A second process asking for the same run waits here, then finds it finished.
        """
        config = versioned(config, version)
        run = Run(self.root / run_id(kind, config))
        if run.done and not os.access(run.path, os.W_OK):
            # a read-only store serves its finished runs: nothing will be written, so no lock is taken (creating
            # the lock file is what failed, "Permission denied", on a finished run)
            try:
                matches = run.stored_config() == config
            except ValueError:  # torn: it cannot be rewritten here
                matches = False
            if not matches:
                raise ConfigError("run", str(run.path), "a directory whose config.json matches its id")
            yield run
            return
        fresh = not run.path.exists()
        try:
            run.path.mkdir(parents=True, exist_ok=True)
            with exclusive_lock(run.path / ".lock"):
                config_path = run.path / "config.json"
                try:
                    stored = json.loads(config_path.read_text()) if config_path.exists() else None
                except (json.JSONDecodeError, UnicodeDecodeError):
                    stored = None  # torn: the id says what it must hold, so it is written again below
                    print(f"wrapperlab: {config_path} was damaged; rewritten from the run's id", file=sys.stderr)
                if stored is not None and stored != config:
                    raise ConfigError("run", str(run.path), "a directory whose config.json matches its id")
                if stored is None:
                    run.write_json("config.json", config)
                try:
                    yield run
                except DivergedError:
                    # diverged before its first checkpoint: nothing to resume from, and re-running repeats it (the
                    # same seed, the same steps), so no command could finish the directory: it is cleared, under the
                    # lock, leaving the store as if the run had never begun
                    if not run.done and not any(run.checkpoint_dir.glob("*")):
                        run.clear()
                    raise
        except OSError:
            # a full or read-only disk: a run this call created and that holds nothing to resume from is removed,
            # so the store is left as it was (a run with a checkpoint stays, to be resumed once there is room)
            if fresh and run.path.is_dir() and not run.done and not any(run.checkpoint_dir.glob("*")):
                shutil.rmtree(run.path, ignore_errors=True)
            raise

    def find(self, ref: str | os.PathLike, field: str = "run") -> Run:
        """A run directory from an id or a path, finished or not (what ``resume`` continues)."""
        run = next((r for r in (Run(self.root / str(ref)), Run(Path(ref))) if _has_config(r.path)), None)
        if run is None:
            raise ConfigError(field, str(ref), f"a run id or directory with a config.json (under {self.root})")
        return run

    def resolve(self, ref: str | os.PathLike, field: str = "run") -> Run:
        """A finished run from an id, a unique id prefix, or a path; a clear error otherwise."""
        candidates = [Path(ref), self.root / str(ref)]
        path = next((p for p in candidates if _has_config(p)), None)
        if path is None and _is_id_prefix(str(ref)) and self.root.is_dir():
            matches = sorted(p for p in self.root.glob(f"{ref}*") if _has_config(p))
            if len(matches) > 1:
                raise ConfigError(field, str(ref), f"a unique run; it matches {[m.name for m in matches]}")
            path = matches[0] if matches else None
        if path is None:
            raise ConfigError(field, str(ref), f"a run id or run directory (none found under {self.root})")
        run = Run(path)
        try:
            config = run.stored_config()
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(field, str(ref), f"a readable run (config.json is corrupt: {e})")
        if not run.done:
            raise ConfigError(field, str(ref), "a finished run (no DONE marker: it was interrupted; re-run it to resume)")
        if run_id(run.kind, config) != run.id:
            raise ConfigError(field, str(ref), "an intact run (config.json does not match the run id)")
        return run

    def cache_path(self, kind: str, key: dict[str, Any], suffix: str) -> Path:
        """Where an intermediate shared by many runs' analyses lives (``cache/<kind>/<kind>-<hash><suffix>``):
        addressed by ``key``, which must name its inputs by content. Not a run: deleting the folder loses nothing
        but time."""
        return self.root / "cache" / kind / f"{run_id(kind, key)}{suffix}"

    def runs(self) -> list[Run]:
        if not self.root.is_dir():
            return []
        return sorted((Run(p) for p in self.root.iterdir() if _has_config(p)), key=lambda r: r.id)


def _has_config(path: Path) -> bool:
    """Whether ``path`` is a run directory; a name the file system cannot even look up (too long) is not."""
    try:
        return (path / "config.json").is_file()
    except OSError:
        return False


def _is_id_prefix(ref: str) -> bool:
    """A reference that can only be (the start of) a run id: no path, no glob characters."""
    return bool(ref) and len(ref) < 200 and not any(c in ref for c in "/\\*?[]") and ref not in (".", "..")


def lineage_root(run: Run, kind: str, via: tuple[str, ...] | None = None, field: str = "run",
                 expected: str | None = None) -> Run:
    """``run`` itself or the ancestor of ``kind`` it descends from, following each config's ``parent``.

    Every stage family (PCFG, Tracr, stories) finds its root this one way. ``via``: the kinds allowed on the
    way (anything else is a ``ConfigError`` on ``field`` saying ``expected``); the walk is bounded, so a
    hand-edited cycle of parents is an error, not a hang.
    """
    store, root = RunStore(run.path.parent), run
    for _ in range(100):
        if root.kind == kind:
            return root
        if via is not None and root.kind not in via:
            raise ConfigError(field, run.id, expected or f"a run descending from a {kind} run")
        root = store.resolve(root.config()["parent"], field="parent")
    raise ConfigError(field, run.id, "a finite chain of parent runs")
