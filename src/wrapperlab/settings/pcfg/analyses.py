"""Analyses of stored runs: load the run, build its data, call the pure analysis function, store the result.

Results are JSON files under the analysed run's ``analysis/`` directory, addressed by the analysis
config, so asking twice reads the stored answer instead of recomputing it.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np
import torch

from wrapperlab.analysis.probing import ProbeConfig, probe, residuals_at, target_probes
from wrapperlab.analysis.pruning import PruneConfig, check_ks, prune_sweep
from wrapperlab.analysis.rng import random_init_twin
from wrapperlab.analysis.weight_diff import as_dicts, weight_diff
from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, Samples, stream_rng
from wrapperlab.data.tasks import JAILBREAK_FAMILIES, TERMINALS, labels
from wrapperlab.errors import ConfigError
from wrapperlab.files import tensors_digest, weights
from wrapperlab.models.gpt import GPT
from wrapperlab.runs.profiles import validated
from wrapperlab.runs.stage import Artifact, Lab, cached, cached_tensor
from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.settings.pcfg.configs import FinetuneRunConfig
from wrapperlab.settings.pcfg.evaluate import accuracy, finetune_accuracies, finetune_test_sets
from wrapperlab.settings.pcfg.maps import attention_maps
from wrapperlab.settings.pcfg.stages import load_model, pretraining_config

#: code version per analysis: bump one when what it computes changes meaning (runs/stage.py)
# attention 2: the index families' span; probe 2: the last block computed at the read position only
VERSIONS = {"prune": 1, "probe": 2, "attention": 2, "diff": 1, "jailbreak": 1}
#: code version of the random-init controls' cached residuals (bump when the forward or the position read changes)
RESIDUALS_VERSION = 2  # 2: the last block computed at the query positions only (float rounding differs)
#: code version of the random-init controls' cached probe accuracies (bump when probe training changes)
CONTROL_PROBES_VERSION = 1


def _pair_data(store: RunStore, ref: str, pair: FinetuneDataConfig | None) -> tuple[Run, FinetuneDataConfig, FinetuneData]:
    """A run with the (task, O_PT, O_FT) pair it is analysed for: a fine-tuned run's own, or for a pretrained run
    ``pair`` (default: count a -> b) — how a model that was never fine-tuned is analysed like one that was."""
    run = store.resolve(ref)
    if run.kind == "pretrain":
        ft = pair or FinetuneDataConfig()
    else:
        ft = validated(FinetuneRunConfig, run.config()).data
    return run, ft, FinetuneData(PCFGData(pretraining_config(run).data), ft)


def prune_run(lab: Lab, ref: str, cfg: PruneConfig, n_eval: int = 1000, seed: int = 0,
              pair: FinetuneDataConfig | None = None) -> Artifact:
    """Prune a run's model by pretraining-task saliency; accuracies per K (stored, cached). A fine-tuned run is
    pruned for its own pair; a pretrained run (a negative control: e.g. the Scr.+FT pretraining, which never had
    O_PT) for ``pair``."""
    store, say, device = lab.store, lab.say, lab.device
    run, ft, data = _pair_data(store, ref, pair)
    key = {"prune": cfg.model_dump(mode="json"), "n_eval": n_eval, "seed": seed}
    if run.kind == "pretrain":
        if pair is None:
            raise ConfigError("run", ref, "a fine-tuned run (pruning asks what fine-tuning changed; a pretrained "
                                          "negative control is pruned for an explicit pair)")
        key["pair"] = [ft.task, ft.pt_operand, ft.operand]

    def compute() -> dict[str, Any]:
        model = load_model(run).to(device)
        check_ks(model, cfg)
        samples = data.data.sample(cfg.n_samples, stream_rng(seed, "prune"), task=ft.task, operand=ft.pt_operand)
        test_sets = finetune_test_sets(data, n_eval, seed)
        say(f"pruning {run.id}: {cfg.unit} units, K in {list(cfg.ks)}")
        result = prune_sweep(
            model, samples, lambda m: finetune_accuracies(m, data, test_sets=test_sets).as_dict(), cfg,
            reference=run.result().get("before"),
        )
        return result.to_json()

    return cached(run, "prune", key, compute, VERSIONS["prune"])


def probe_run(lab: Lab, ref: str, cfg: ProbeConfig, prompt: str = "pt", seed: int = 0,
              pair: FinetuneDataConfig | None = None) -> Artifact:
    """Probe a run for the counts of O_PT and O_FT at every block, beside a random-init control.

    Inputs are uncorrelated (C_Te = 0) windows asking the ``prompt`` operand's question. A pretrained
    run is probed with ``pair`` (default: the fine-tuning pair O_PT = a, O_FT = b).
    """
    if prompt not in ("pt", "ft"):
        raise ConfigError("prompt", prompt, "pt or ft")
    store, say, device = lab.store, lab.say, lab.device
    run, ft, data = _pair_data(store, ref, pair)
    key = {"probe": cfg.model_dump(mode="json"), "pair": [ft.task, ft.pt_operand, ft.operand], "prompt": prompt, "seed": seed}

    def compute() -> dict[str, Any]:
        model = load_model(run).to(device)
        control = random_init_twin(model, seed + 1)
        ask = ft.pt_operand if prompt == "pt" else ft.operand
        sets = []
        for part, n in (("train", cfg.n_train), ("test", cfg.n_test)):
            windows = data.sample(n, stream_rng(seed, "probe", 0 if part == "train" else 1), c=0.0).windows
            sets.append(data.data.build([ft.task] * n, [ask] * n, windows))
        targets = {
            f"{ft.task}_{op}": (labels(ft.task, op, sets[0].windows), labels(ft.task, op, sets[1].windows))
            for op in (ft.pt_operand, ft.operand)
        }
        say(f"probing {run.id}: {len(targets)} targets x {len(model.blocks) + 1} layers, model and random init")
        twin = control_residuals(store, control, sets)
        named = {**_control_key(control), "samples": [s.digest() for s in sets]}
        return probe(model, control, sets[0], sets[1], targets, cfg, seed, twin,
                     control_probes(store, named, twin, targets, cfg, seed)).to_json()

    return cached(run, "probe", key, compute, VERSIONS["probe"])


def _control_key(control: GPT) -> dict[str, Any]:
    """What names a random-init control by content: its config, its weights' digest, the device kind its forward
    ran on."""
    return {"model": control.cfg.model_dump(mode="json"), "weights": tensors_digest(weights(control)),
            "device": next(control.parameters()).device.type}


def control_residuals(store: RunStore, control: GPT, sets: Sequence[Samples]) -> tuple[torch.Tensor, ...]:
    """A random-init control's residuals on each input set, through the store's cache. Why: every run of one
    architecture probed with one seed on one prior meets the same twin on the same inputs (in the Table 5 grid, each
    pretrained model and its fine-tunings), and the twin's forward passes are half a probe node. Keyed by content —
    the twin's config and weights digest, each set's digest, the device kind, a code version — so a hit is exactly
    what :func:`~wrapperlab.analysis.probing.residuals_at` would compute."""
    base = {**_control_key(control), "code_version": RESIDUALS_VERSION}
    return tuple(cached_tensor(store, "residuals", {**base, "samples": s.digest()}, lambda s=s: residuals_at(control, s))
                 for s in sets)


def control_probes(store: RunStore, twin: dict[str, Any], acts: tuple[torch.Tensor, ...],
                   targets: dict[str, tuple[np.ndarray, np.ndarray]], cfg: ProbeConfig, seed: int) -> dict[str, list[float]]:
    """The random-init control's probe accuracies per target, through the store's cache: the runs that share a twin
    and inputs (:func:`control_residuals`) share its probes too, and training them was half of every probe node's
    probe training. Keyed by the twin, the input sets, the labels (digest), the probe config, the seed and a code
    version, so a hit is what training them would give (each probe problem trains as alone). ``twin``: what names
    the twin and its inputs by content (:func:`_control_key` and the input sets' digests)."""
    names = list(targets)
    labels_digest = hashlib.sha256(b"".join(np.ascontiguousarray(y, dtype=np.int64).tobytes() + b"|"
                                            for name in names for y in targets[name])).hexdigest()
    key = {**twin, "targets": names, "labels": labels_digest, "probe": cfg.model_dump(mode="json"), "seed": seed,
           "code_version": CONTROL_PROBES_VERSION, "residuals_version": RESIDUALS_VERSION}  # trained on those residuals

    def fit_probes() -> torch.Tensor:
        accuracy = target_probes({"random_init": (acts[0], acts[1])}, targets, cfg, seed)
        return torch.tensor([accuracy[name]["random_init"] for name in names], dtype=torch.float64)

    value = cached_tensor(store, "control-probes", key, fit_probes)
    return {name: value[i].tolist() for i, name in enumerate(names)}


def jailbreak_tokens(pt_tasks: Sequence[str], ft: FinetuneDataConfig, field: str, value: Any) -> list[str]:
    """The counting tokens a jailbreak analysis asks through — the ordinary one first, then the jailbreak tokens the
    pretraining had — or a ConfigError on ``field`` where it cannot run: the fine-tuning must count with O_PT = a
    (the jailbreak tokens are pretrained with operand a only) and the pretraining must have had the jailbreak tasks.
    One check for the spec (before anything runs) and the analysis itself."""
    tokens = ["count", *(t for t in pt_tasks if t in JAILBREAK_FAMILIES)]
    if ft.task != "count" or ft.pt_operand not in JAILBREAK_FAMILIES["count_j1"].operands or len(tokens) == 1:
        raise ConfigError(field, value, "a counting fine-tuning of O_PT = a whose pretraining had the jailbreak tasks "
                                        f"(data.tasks with {sorted(JAILBREAK_FAMILIES)}; it had {list(pt_tasks)}, "
                                        f"fine-tuning task {ft.task}, O_PT {ft.pt_operand})")
    return tokens


def jailbreak_run(lab: Lab, ref: str, n_eval: int = 1000, seed: int = 0) -> Artifact:
    """The synthetic jailbreak (App. E.2): a fine-tuned run's accuracy on its pretraining question (count O_PT)
    asked through every counting token its pretraining knew — the ordinary one the fine-tuning used (``count``,
    T_NJ) and the jailbreak tokens seen in pretraining only with O_PT (``count_j1``, ``count_j2``) — on the same
    C_Te = 0 and C_Te = 1 test windows, for the run and for the pretrained model it descends from. The ordinary
    token is each jailbreak token's control: same model, same windows, same answer; only the "prompt" differs."""
    store, say, device = lab.store, lab.say, lab.device
    run, ft, data = _pair_data(store, ref, None)
    tokens = jailbreak_tokens(data.data.config.tasks, ft, "run", ref)
    pretrained = lineage_root(run, "pretrain")
    key = {"n_eval": n_eval, "seed": seed, "tokens": tokens}

    def compute() -> dict[str, Any]:
        say(f"jailbreak tokens on {run.id}: {', '.join(tokens)}")
        sets = finetune_test_sets(data, n_eval, seed)
        out: dict[str, Any] = {"tokens": tokens}
        for which, source in (("finetuned", run), ("pretrained", pretrained)):
            model = load_model(source).to(device)
            out[which] = {f"cte{c:g}": {t: accuracy(model, data.data.build([t] * len(s), [ft.pt_operand] * len(s),
                                                                          s.windows, s.correlated))
                                       for t in tokens} for c, s in sets.items()}
        return out

    return cached(run, "jailbreak", key, compute, VERSIONS["jailbreak"])


def attention_run(lab: Lab, ref: str, n_mass: int = 300, example: int = 0, seed: int = 0,
                  text: str | None = None) -> Artifact:
    """Attention patterns, MLP activations and attention masses on O_PT vs O_FT for one run.

    Inputs ask the pretraining question (O_PT) on uncorrelated windows, so a fine-tuned model and its
    pretrained parent are compared on the same inputs. ``text`` (terminals, one window long) replaces
    the drawn example.
    """
    store, say, device = lab.store, lab.say, lab.device
    run, ft, data = _pair_data(store, ref, None)
    width = data.data.config.window
    if text is not None and (len(text) != width or set(text) - set(TERMINALS)):
        raise ConfigError("text", text[:20] + ("..." if len(text) > 20 else ""), f"{width} letters from {''.join(TERMINALS)}")
    key = {"pair": [ft.task, ft.pt_operand, ft.operand], "n_mass": n_mass, "example": text or example, "seed": seed}

    def compute() -> dict[str, Any]:
        say(f"attention maps of {run.id}")
        model = load_model(run).to(device)
        windows = data.sample(n_mass, stream_rng(seed, "eval", 7), c=0.0).windows
        many = data.data.build([ft.task] * n_mass, [ft.pt_operand] * n_mass, windows)
        chosen = (
            np.array([[TERMINALS.index(ch) for ch in text]], dtype=np.uint8) if text else windows[example : example + 1]
        )
        one = data.data.build([ft.task], [ft.pt_operand], chosen)
        return attention_maps(model, one, many, ft, data.vocab).as_dict()

    return cached(run, "attention", key, compute, VERSIONS["attention"])


def diff_runs(lab: Lab, ref_a: str, ref_b: str) -> Artifact:
    """Weight differences from run A to run B (stored with run B); the SVDs run on ``lab.device`` (in float64, which
    Apple's MPS lacks: there they run on the CPU)."""
    store, say = lab.store, lab.say
    device = "cpu" if lab.device == "mps" else lab.device
    run_a, run_b = store.resolve(ref_a, field="run_a"), store.resolve(ref_b, field="run_b")

    def compute() -> dict[str, Any]:
        say(f"weight diff {run_a.id} -> {run_b.id}")
        return {"from": run_a.id, "matrices": as_dicts(weight_diff(load_model(run_a).to(device), load_model(run_b).to(device)))}

    return cached(run_b, "diff", {"from": run_a.id}, compute, VERSIONS["diff"])
