"""The PCFG setting's stages over the run store: pretrain, fine-tune (and reFT, randFT, the baselines), evaluate.

Each stage validates its config, opens its content-addressed run (reusing a finished one, resuming
an interrupted one), trains through the one training loop and writes its result.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from wrapperlab.data.finetune_data import FinetuneData
from wrapperlab.data.samples import PCFGData
from wrapperlab.errors import ConfigError
from wrapperlab.files import save_weights
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.runs.profiles import validated
from wrapperlab.runs.stage import (
    Say,
    StageAsk,
    StageResult,
    Training,
    cached,
    first_steps,
    load_run_weights,
    run_stage,
    run_stages,
)
from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.settings.pcfg.configs import FinetuneRunConfig, PretrainRunConfig
from wrapperlab.settings.pcfg.evaluate import accuracy, finetune_accuracies, finetune_test_sets, pretrain_accuracies
from wrapperlab.timing import section
from wrapperlab.training.config import Runtime

#: code version per run kind: bump one when what its stage computes changes meaning (runs/stage.py)
VERSIONS = {"pretrain": 1, "finetune": 1, "reft": 3, "randft": 1, "scrft": 3, "scratch": 3}
#: code version of a parent's stored evaluation on its children's final sets (``analysis/eval-*.json``)
EVAL_VERSION = 1


def pretrain(cfg: PretrainRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print) -> StageResult:
    def compute(run: Run) -> Training:
        say(f"pretraining into {run.path}")
        data = PCFGData(cfg.data)
        torch.manual_seed(cfg.seed)
        model = GPT(cfg.model)
        watch = [("count", op) for op in ("a", "b", "c")] if "count" in cfg.data.tasks else None

        def evaluate(m, step):
            accs = pretrain_accuracies(m, data, n=cfg.eval.n_during, seed=cfg.seed, pairs=watch)
            return {f"acc/{k}": v for k, v in accs.items()}

        def finish(state) -> dict:
            with section("io"):
                save_weights(model, run.weights_path)
            t0 = time.perf_counter()
            with section("eval"):
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

        return Training(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, evaluate, finish)

    return run_stage(StageAsk("pretrain", cfg, compute, VERSIONS["pretrain"]), store, runtime, say)


def load_model(run: Run, field: str = "run") -> GPT:
    """The trained model of a finished run; a corrupt weights file is a clear error."""
    cfg = validated(GPTConfig, pretraining_config(run).model.model_dump(), "model")
    model = load_run_weights(GPT(cfg), run, field)
    model.eval()
    return model


def tokenizer_of(run: Run):
    """A word-level tokenizer over the run's vocabulary (tokens split on spaces: ``"<sos> <C> a 40 <sot> b a ..."``),
    so an exported PCFG model reads the token strings ``wrapperlab data sample`` prints."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    from wrapperlab.data.samples import PCFGData

    vocab = PCFGData(pretraining_config(run).data).vocab
    tok = Tokenizer(models.WordLevel(dict(vocab.index), unk_token="<null>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tok, {"eos_token": "<eos>"}


def pretraining_config(run: Run) -> PretrainRunConfig:
    """The pretraining config at the root of a run's lineage (fine-tunes name their parent)."""
    return validated(PretrainRunConfig, lineage_root(run, "pretrain").config())


FINETUNE_KINDS = ("finetune", "reft", "randft", "scrft", "scratch")
#: runs trained back on the pretraining question: read by one number, so only that one is evaluated during training
REVIVAL_KINDS = ("reft", "scrft", "scratch")
REVIVAL_METRIC = "acc_pt_cte0"


def finetune(
    cfg: FinetuneRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print, kind: str = "finetune"
) -> StageResult:
    """Train a run's model further on one (task, operand) pair: fine-tuning, and with other data
    settings reFT (ask O_PT), randFT (ask O_PT, answer O_FT) or, with ``init="random"``, from scratch."""
    return run_stage(_finetune_stage(cfg, store, say, kind), store, runtime, say)


def finetune_many(cfgs: list[FinetuneRunConfig], store: RunStore, runtime: Runtime = Runtime(), say: Say = print,
                  kind: str = "finetune") -> list[StageResult]:
    """:func:`finetune` for several configs, trained as one stack where they share architecture and step count
    (runs/stage.py: run_stages) — each run as the store would hold it trained alone."""
    return run_stages([_finetune_stage(cfg, store, say, kind) for cfg in cfgs], store, runtime, say)


def _finetune_stage(cfg: FinetuneRunConfig, store: RunStore, say: Say, kind: str) -> StageAsk:
    """The ask of a fine-tuning-like run, for run_stage / run_stages."""
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
        with section("data"):
            during = finetune_test_sets(data, cfg.eval.n_during, cfg.seed)
            final = finetune_test_sets(data, cfg.eval.n, cfg.seed)
            revival = {"during": data.pretraining_view(during[0.0]), "final": data.pretraining_view(final[0.0])}

        def measure(m, which: str) -> dict[str, float]:
            """A run trained back on the pretraining question is read by one number (a quarter of the full
            evaluation; what stop_when reads); every other run by the paper's four."""
            if kind in REVIVAL_KINDS:
                return {REVIVAL_METRIC: accuracy(m, revival[which])}
            return finetune_accuracies(m, data, test_sets=during if which == "during" else final).as_dict()

        def measure_parent() -> dict[str, float]:
            """The starting model's numbers. A parent's weights on the same final sets (by content) score the
            same for every child: the twelve fine-tunings of one pretrained model in the Table 5 grid (C_Tr and the
            learning rate leave the test sets as they are), or the reFTs of one fine-tuned model. So the parent's
            evaluation is stored with the parent and looked up, not recomputed — the same numbers, one evaluation."""
            if cfg.init == "random":
                return measure(model, "final")
            revives = kind in REVIVAL_KINDS
            sets = [revival["final"]] if revives else [final[0.0], final[1.0]]
            key = {"metric": "revival" if revives else "four", "sets": [s.digest() for s in sets]}
            stored = cached(parent, "eval", key, lambda: {"accuracy": measure(model, "final")}, EVAL_VERSION,
                            stage="eval")
            return stored.data["accuracy"]

        with section("eval"):
            before = measure_parent()

        def evaluate(m, step):
            return measure(m, "during")

        def finish(state) -> dict:
            with section("io"):
                save_weights(model, run.weights_path)
            with section("eval"):
                after = measure(model, "final")
            return {
                "before": before,
                "after": after,
                "first_step_at": first_steps(run.metrics()),
                "steps": state.step,
                "stopped_early": state.stopped_early,
                "stop_reason": state.stop_reason,
                "train_seconds": state.seconds,
                "resumed_from": state.resumed_from,
            }

        return Training(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, evaluate, finish)

    return StageAsk(kind, cfg, compute, VERSIONS[kind])


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
