"""Stages as functions over the run store: pretrain, fine-tune, evaluate, and the quick demo.

Each stage validates its config, opens its content-addressed run (reusing a finished one, resuming
an interrupted one), trains through the one training loop and writes its result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

from wrapperlab.analysis.evaluate import finetune_accuracies, finetune_test_sets, pretrain_accuracies
from wrapperlab.data.finetune_data import FinetuneData
from wrapperlab.data.samples import PCFGData
from wrapperlab.errors import ConfigError
from wrapperlab.experiments.configs import FinetuneRunConfig, PretrainRunConfig, validated
from wrapperlab.experiments.store import Run, RunStore, lineage_root
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.training.checkpoint import load_weights, save_weights
from wrapperlab.training.config import Runtime
from wrapperlab.training.loop import train

Say = Callable[[str], None]


@dataclass
class StageResult:
    run: Run
    result: dict[str, Any]
    reused: bool


def _stage(kind: str, cfg, store: RunStore, runtime: Runtime, say: Say, compute: Callable[[Run], dict]) -> StageResult:
    """Open the run for ``cfg``; reuse it if finished, else ``compute(run)`` its result and finish it."""
    with store.open(kind, cfg.model_dump(mode="json")) as run:
        if run.done:
            say(f"reusing finished run {run.path}")
            return StageResult(run, run.result(), reused=True)
        run.write_json("runtime.json", runtime.model_dump())
        run.note_compute()
        result = compute(run)
        run.finish(result)
        return StageResult(run, result, reused=False)


def _train(run: Run, model, batches, cfg, runtime: Runtime, evaluate, loss_fn=None):
    return train(
        model, batches, cfg.train, runtime, checkpoint_dir=run.checkpoint_dir, evaluate=evaluate,
        log=run.log_metrics, on_resume=run.truncate_metrics, desc=f"{run.kind} {run.id}", loss_fn=loss_fn,
    )


def pretrain(cfg: PretrainRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print) -> StageResult:
    def compute(run: Run) -> dict:
        say(f"pretraining into {run.path}")
        data = PCFGData(cfg.data)
        torch.manual_seed(cfg.seed)
        model = GPT(cfg.model)
        watch = [("count", op) for op in ("a", "b", "c")] if "count" in cfg.data.tasks else None

        def evaluate(m, step):
            accs = pretrain_accuracies(m, data, n=cfg.eval.n_during, seed=cfg.seed, pairs=watch)
            return {f"acc/{k}": v for k, v in accs.items()}

        state = _train(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, runtime, evaluate)
        save_weights(model, run.weights_path)
        t0 = time.perf_counter()
        accuracy = pretrain_accuracies(model, data, n=cfg.eval.n, seed=cfg.seed)
        return {
            "accuracy": accuracy,
            "steps": state.step,
            "train_seconds": state.seconds,
            "eval_seconds": time.perf_counter() - t0,
            "resumed_from": state.resumed_from,
            "tokens_per_second": state.tokens_per_second,
            "final_loss": state.last_loss,
            "params": model.num_params(),
        }

    return _stage("pretrain", cfg, store, runtime, say, compute)


def load_model(run: Run, field: str = "run") -> GPT:
    """The trained model of a finished run; a corrupt weights file is a clear error."""
    cfg = validated(GPTConfig, pretraining_config(run).model.model_dump(), "model")
    model = load_run_weights(GPT(cfg), run, field)
    model.eval()
    return model


def load_run_weights(model: GPT, run: Run, field: str = "run") -> GPT:
    """``model`` with a run's final weights; a corrupt or foreign weights file is a clear error."""
    try:
        load_weights(model, run.weights_path)
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise ConfigError(field, str(run.path), f"a run with readable weights ({type(e).__name__}: {e})")
    return model


def pretraining_config(run: Run) -> PretrainRunConfig:
    """The pretraining config at the root of a run's lineage (fine-tunes name their parent)."""
    return validated(PretrainRunConfig, lineage_root(run, "pretrain").config())


FINETUNE_KINDS = ("finetune", "reft", "randft", "scrft", "scratch")


def first_steps(metrics: list[dict], thresholds=(0.5, 0.9)) -> dict[str, dict[str, int | None]]:
    """For each accuracy in the log, the first evaluated step at which it reached each threshold."""
    keys = sorted({k for r in metrics for k in r if k.startswith("acc_")})
    return {
        k: {str(t): next((r["step"] for r in metrics if r.get(k, -1) >= t), None) for t in thresholds} for k in keys
    }


def finetune(
    cfg: FinetuneRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print, kind: str = "finetune"
) -> StageResult:
    """Train a run's model further on one (task, operand) pair: fine-tuning, and with other data
    settings reFT (ask O_PT), randFT (ask O_PT, answer O_FT) or, with ``init="random"``, from scratch."""
    if kind not in FINETUNE_KINDS:
        raise ConfigError("kind", kind, f"one of {FINETUNE_KINDS}")
    parent = store.resolve(cfg.parent, field="parent")
    if parent.id != cfg.parent:  # hash over the canonical id, whatever form the user typed
        cfg = cfg.model_copy(update={"parent": parent.id})
    pt_cfg = pretraining_config(parent)
    model = load_model(parent, field="parent")
    if cfg.init == "random":
        torch.manual_seed(cfg.seed)
        model = GPT(model.cfg)
    data = FinetuneData(PCFGData(pt_cfg.data), cfg.data)

    def compute(run: Run) -> dict:
        say(f"{kind}: {parent.id} ({'random init' if cfg.init == 'random' else 'weights'}) into {run.path}")
        during = finetune_test_sets(data, cfg.eval.n_during, cfg.seed)
        final = finetune_test_sets(data, cfg.eval.n, cfg.seed)
        before = finetune_accuracies(model, data, test_sets=final).as_dict()

        def evaluate(m, step):
            return finetune_accuracies(m, data, test_sets=during).as_dict()

        state = _train(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, runtime, evaluate)
        save_weights(model, run.weights_path)
        return {
            "before": before,
            "after": finetune_accuracies(model, data, test_sets=final).as_dict(),
            "first_step_at": first_steps(run.metrics()),
            "steps": state.step,
            "train_seconds": state.seconds,
            "resumed_from": state.resumed_from,
        }

    return _stage(kind, cfg, store, runtime, say, compute)


def evaluate_run(run: Run, n: int = 1000, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Accuracy per (task, operand) and, for a fine-tuned run, the four fine-tuning numbers."""
    model = load_model(run).to(device)
    pt_cfg = pretraining_config(run)
    data = PCFGData(pt_cfg.data)
    out: dict[str, Any] = {"run": run.id, "n": n, "seed": seed, "accuracy": pretrain_accuracies(model, data, n=n, seed=seed)}
    if run.kind in FINETUNE_KINDS:
        ft_cfg = validated(FinetuneRunConfig, run.config())
        out["finetune"] = finetune_accuracies(model, FinetuneData(data, ft_cfg.data), n=n, seed=seed).as_dict()
    return out
