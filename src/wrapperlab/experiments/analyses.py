"""Analyses of stored runs: load the run, build its data, call the pure analysis function, store the result.

Results are JSON files under the analysed run's ``analysis/`` directory, addressed by the analysis
config, so asking twice reads the stored answer instead of recomputing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from wrapperlab.analysis.evaluate import finetune_accuracies, finetune_test_sets
from wrapperlab.analysis.pruning import PruneConfig, prune_sweep
from wrapperlab.data.finetune_data import FinetuneData
from wrapperlab.data.samples import PCFGData, stream_rng
from wrapperlab.errors import ConfigError
from wrapperlab.experiments.configs import FinetuneRunConfig, validated
from wrapperlab.experiments.pipeline import Say, load_model, pretraining_config
from wrapperlab.experiments.store import Run, RunStore
from wrapperlab.training.checkpoint import atomic_write_text


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


def _cached(run: Run, kind: str, config: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> Artifact:
    path = run.artifact(kind, config)
    json_path = path.with_suffix(".json")
    if json_path.exists():
        return Artifact(path, json.loads(json_path.read_text()), reused=True)
    data = {"kind": kind, "run": run.id, "config": config, **compute()}
    atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
    return Artifact(path, data, reused=False)


def finetuned_run(store: RunStore, ref: str) -> tuple[Run, FinetuneRunConfig, FinetuneData]:
    """A fine-tuned run with its fine-tuning data (which fixes O_PT, O_FT and the relation)."""
    run = store.resolve(ref)
    if run.kind == "pretrain":
        raise ConfigError("run", ref, "a fine-tuned run (pruning asks what fine-tuning changed)")
    cfg = validated(FinetuneRunConfig, run.config())
    data = FinetuneData(PCFGData(pretraining_config(run).data), cfg.data)
    return run, cfg, data


def prune_run(store: RunStore, ref: str, cfg: PruneConfig, n_eval: int = 1000, seed: int = 0, say: Say = print) -> Artifact:
    """Prune a fine-tuned run's model by pretraining-task saliency; accuracies per K (stored, cached)."""
    run, ft_cfg, data = finetuned_run(store, ref)
    key = {"prune": cfg.model_dump(mode="json"), "n_eval": n_eval, "seed": seed}

    def compute() -> dict[str, Any]:
        model = load_model(run)
        samples = data.data.sample(
            cfg.n_samples, stream_rng(seed, "prune"), task=ft_cfg.data.task, operand=ft_cfg.data.pt_operand
        )
        test_sets = finetune_test_sets(data, n_eval, seed)
        say(f"pruning {run.id}: {cfg.unit} units, K in {list(cfg.ks)}")
        result = prune_sweep(
            model, samples, lambda m: finetune_accuracies(m, data, test_sets=test_sets).as_dict(), cfg,
            reference=run.result().get("before"),
        )
        return result.as_dict()

    return _cached(run, "prune", key, compute)
