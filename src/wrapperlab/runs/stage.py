"""The helpers every setting's stages share: open a content-addressed run and compute it once, train it through
the one training loop with its checkpoints and metrics in the run, and cache an analysis of a finished run.

Both caches are keyed by the config *and* a code version (``version``): a setting bumps the version of a stage
when what that stage computes changes meaning, so a fix never silently reuses a result computed before it.
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn

from wrapperlab.errors import ConfigError, IntegrityError
from wrapperlab.files import atomic_write, atomic_write_text, load_weights
from wrapperlab.runs.mirror import mirrored
from wrapperlab.runs.store import Run, RunStore
from wrapperlab.schema import Result
from wrapperlab.timing import section
from wrapperlab.training.config import Runtime
from wrapperlab.training.loop import Trainee, TrainState, train

Say = Callable[[str], None]


@dataclass
class StageResult:
    run: Run
    result: dict[str, Any]
    reused: bool


@dataclass
class Training:
    """What a stage's compute asks to have trained, and ``finish(state)``: the run's result once it has been (after
    saving the weights). A compute returns one, so that its caller may train it alone (:func:`run_stage`) or stacked
    with other runs' (:func:`run_stages`)."""

    run: Run
    model: nn.Module
    batches: Callable[[int], Any]
    cfg: Any  # the run config; its ``train`` section is what is trained
    evaluate: Callable[[nn.Module, int], dict] | None
    finish: Callable[[TrainState], dict]
    loss_fn: Any = None

    def trainee(self) -> Trainee:
        """The run as the training loop takes it: checkpoints, metrics and resume live in the run."""
        return Trainee(self.model, self.batches, self.cfg.train, self.run.checkpoint_dir, self.evaluate,
                       self.run.log_metrics, self.run.truncate_metrics, f"{self.run.kind} {self.run.id}", self.loss_fn)


#: a stage's compute: its result, or the :class:`Training` that produces it
Compute = Callable[[Run], "dict | Training"]


class StageAsk(NamedTuple):
    """One run a stage asks for: its kind, its config (pydantic), what computes it, and the code version that
    keys it (a change of what the stage computes bumps it, so old results are not reused)."""

    kind: str
    cfg: Any
    compute: Compute
    version: int


def run_stage(ask: StageAsk, store: RunStore, runtime: Runtime, say: Say) -> StageResult:
    """Open the run for ``ask.cfg`` at code ``ask.version``; reuse it if finished, else ``ask.compute(run)`` its
    result (training what it asks for through the one loop) and finish it."""
    return run_stages([ask], store, runtime, say)[0]


def _stackable(asks: list[Training]) -> bool:
    """Whether these trainings can run as one stack: the same computation up to weights, data and lr (see
    training/stacked.py), the token losses, and every run at the same step (a stack moves in lockstep; a run
    killed at another checkpoint than its fellows trains alone)."""
    from wrapperlab.training.checkpoint import read_pointer
    from wrapperlab.training.stacked import check_stackable

    if len(asks) < 2 or any(a.loss_fn is not None for a in asks):
        return False
    try:
        check_stackable([a.model for a in asks], [a.cfg.train for a in asks])
    except ValueError:
        return False
    steps = {(read_pointer(a.run.checkpoint_dir) or {"step": 0})["step"] for a in asks}
    return len(steps) == 1


def run_stages(items: Sequence[StageAsk], store: RunStore, runtime: Runtime, say: Say) -> list[StageResult]:
    """:func:`run_stage` for several runs at once, their trainings
    stacked into one (training/stacked.py) where they are the same computation up to weights, data and lr, else
    trained one after another. Each run is opened, logged, checkpointed and finished as it would be alone, so the
    store cannot tell; locks are taken in one canonical order, so two processes never wait on each other."""
    order = sorted(range(len(items)), key=lambda i: json.dumps(items[i][1].model_dump(mode="json"), sort_keys=True))
    results: dict[int, StageResult] = {}
    with contextlib.ExitStack() as held:
        pending: list[tuple[int, Training]] = []
        for i in order:
            kind, cfg, compute, version = items[i]
            run = held.enter_context(store.open(kind, cfg.model_dump(mode="json"), version=version))
            if run.done and (problem := run.damaged()) is not None:
                say(f"{run.id}: finished, but {problem}; computing it again")
                run.reopen()
            if run.done:
                say(f"reusing finished run {run.path}")
                results[i] = StageResult(run, run.result(), reused=True)
                continue
            record_runtime(run, runtime, say)
            held.enter_context(mirrored(run, runtime.tensorboard))
            run.note_compute()
            out = compute(run)
            if isinstance(out, dict):
                run.finish(out)
                results[i] = StageResult(run, out, reused=False)
                continue
            pending.append((i, out))
        asks = [ask for _, ask in pending]
        if _stackable(asks):
            say(f"training {len(asks)} {asks[0].run.kind} runs as one stack: {', '.join(a.run.id for a in asks)}")
            states = train([a.trainee() for a in asks], runtime, stacked=True)
        else:
            states = [train([a.trainee()], runtime)[0] for a in asks]
        for (i, ask), state in zip(pending, states):
            result = ask.finish(state)
            ask.run.finish(result)
            results[i] = StageResult(ask.run, result, reused=False)
    return [results[i] for i in range(len(items))]


def record_runtime(run: Run, runtime: Runtime, say: Say) -> None:
    """Write ``runtime.json``: the runtime and the torch thread count the run trains with (``threads``; the
    default is this process's), since the weights' last bits depend on it and on the device though the run's id
    does not. A run resumed with another thread count or device says so in one line and keeps what each earlier
    attempt ran with (``earlier``): its weights can then differ in their last bits from an uninterrupted run's."""
    import torch

    now = {**runtime.model_dump(), "threads": runtime.threads or torch.get_num_threads()}
    path = run.path / "runtime.json"
    try:
        before = json.loads(path.read_text()) if path.exists() else None
    except (OSError, ValueError):
        before = None
    earlier = []
    if isinstance(before, dict):
        earlier = [*before.pop("earlier", []), before]
        was = {k: before.get(k) for k in ("threads", "device")}
        if was != {k: now[k] for k in was}:
            say(f"{run.id}: resumed with {now['threads']} threads on {now['device']}, begun with {was['threads']} on "
                f"{was['device']}: its weights' last bits may differ from an uninterrupted run's")
    run.write_json("runtime.json", {**now, "earlier": earlier} if earlier else now)


def load_run_weights(model: nn.Module, run: Run, field: str = "run") -> nn.Module:
    """``model`` with a run's final weights, verified against the digest recorded when they were written: a
    damaged file is an :class:`~wrapperlab.errors.IntegrityError` naming it, and weights of another shape or a
    missing file a :class:`ConfigError` on ``field``."""
    try:
        with section("io"):
            load_weights(model, run.weights_path)
    except IntegrityError as e:  # named as the run the caller asked for (e.g. "parent")
        raise IntegrityError(e.path, e.problem, e.remedy, what=f"{field} {run.id}") from None
    except (ValueError, OSError, RuntimeError) as e:  # a foreign model's weights, or none
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(field, str(run.path), f"a run with readable weights ({type(e).__name__}: {e})") from None
    return model


def first_steps(metrics: list[dict], thresholds=(0.5, 0.9)) -> dict[str, dict[str, int | None]]:
    """For each accuracy in the log, the first evaluated step at which it reached each threshold."""
    keys = sorted({k for r in metrics for k in r if k.startswith("acc_")})
    return {
        k: {str(t): next((r["step"] for r in metrics if r.get(k, -1) >= t), None) for t in thresholds} for k in keys
    }


@dataclass
class Artifact:
    """A stored analysis result: its JSON data and where it lives (figures go beside it)."""

    path: Path  # without suffix
    data: dict[str, Any]
    reused: bool

    @property
    def json_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def png_path(self) -> Path:
        return self.path.with_suffix(".png")


@dataclass(frozen=True)
class Lab:
    """Where an analysis of stored runs works: the store it reads runs from and keeps its results in, the device it
    computes on (not part of a result's key: the numbers agree across devices up to float rounding), and what it
    says while it works."""

    store: RunStore
    say: Say = print
    device: str = "cpu"


class Stored(Result):
    """What :func:`cached` adds to an analysis's own result: its kind, the run it analysed, the key it is stored
    under. A setting's typed analysis records are this plus the analysis's fields."""

    kind: str
    run: str
    key: dict[str, Any]


def cached(run: Run, kind: str, config: dict[str, Any], compute: Callable[[], dict[str, Any]], version: int,
           stage: str = "analysis") -> Artifact:
    """The analysis ``kind`` of ``run`` under ``config`` at code ``version``: read if stored, else computed and
    stored atomically under the run's ``analysis/`` folder. ``stage``: the time-split section its computing counts
    to (an evaluation a child run reuses counts as evaluation, not analysis)."""
    key = {**config, "code_version": version}
    path = run.artifact(kind, key)
    json_path = path.with_suffix(".json")
    if json_path.exists():
        return Artifact(path, json.loads(json_path.read_text()), reused=True)
    # the address under ``key``: a result may carry its own ``config`` (pruning does) and must not overwrite it
    with section(stage):
        data = {"kind": kind, "run": run.id, "key": key, **compute()}
    atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
    return Artifact(path, data, reused=False)


def cached_tensor(store: RunStore, kind: str, key: dict[str, Any], compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A tensor shared by many analyses (a random-init control's activations on one input set): read from the
    store's cache if there, else computed and written atomically. ``key`` must name every input by content (a
    weights digest, a samples digest, a code version), so a hit is the tensor ``compute`` would return. A file
    that cannot be read back (torn by a crash, damaged) is computed again and replaced: it is only a cache."""
    path = store.cache_path(kind, key, ".pt")
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as e:  # torch raises several types for truncated or foreign files
            print(f"wrapperlab: {path} unreadable ({type(e).__name__}); computed again", file=sys.stderr)
    value = compute()
    atomic_write(path, lambda p: torch.save(value, p))
    return value
