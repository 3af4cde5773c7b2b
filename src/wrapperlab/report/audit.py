"""``wrapperlab audit BASE FINETUNED --capability FILE``: deleted or wrapped, for any pair of Hugging Face models.

A fine-tune (a safety tune, an unlearning method) made FINETUNED stop answering a capability BASE answers. The
audit measures, over seeds (each seed its own attack/held-out split and batch order):

* **behaviour** — held-out answer log-prob and exact match of BASE and FINETUNED; the removal rule;
* **relearning** — FINETUNED trained on the attack split: how many steps it needs to close 90 % of the removal gap
  on held-out answers it never trained on, beside the never-known twin (the same prompts with shuffled answers)
  and CONTROL (a model that never had it) trained the same way — and, where neither gets there, the level each
  reaches. A capability that is still in the weights comes back on answers the attack never showed;
* **probe** — a linear probe of the first answer token at every layer of FINETUNED vs its random-init twin (and
  CONTROL): is the answer still computed inside?
* **pruning** — zeroing the rows most salient for the capability's loss: does a handful bring answers back?
* **where the fine-tune wrote** — the relative weight change per block and matrix (descriptive, no verdict).

The verdict (``wrapped`` / ``deleted`` / ``inconclusive``) comes from claims/verdicts.py, rules in docs/audit.md.
Outputs: ``audit.json`` (every number), ``audit.md`` and a self-contained ``audit.html`` with the relearning figure.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from wrapperlab.analysis.audit import (
    AUDIT_PRUNE,
    Encoded,
    RelearnConfig,
    answer_queries,
    encode,
    probe_answer,
    prune_curve,
    relearn,
    score,
)
from wrapperlab.analysis.probing import ProbeConfig
from wrapperlab.analysis.rng import random_init_twin
from wrapperlab.analysis.stats import mean_ci
from wrapperlab.analysis.weight_diff import weight_diff
from wrapperlab.claims import verdicts as V
from wrapperlab.data.capability import load_capability
from wrapperlab.errors import ConfigError
from wrapperlab.files import atomic_write_text
from wrapperlab.models.hf import DEFAULT_MAX_CTX, hf_config_to_gpt, load_hf, load_hf_tokenizer, read_config
from wrapperlab.report.render import Section, html_page, markdown_page
from wrapperlab.report.tables import ci_text


@dataclass(frozen=True)
class AuditConfig:
    seeds: int = 3
    attack_share: float = 0.5
    relearn: RelearnConfig = field(default_factory=RelearnConfig)
    # the native probes train 4,000 steps on 4,000 samples; an audit's tens of records fit in far fewer
    probe: ProbeConfig = field(default_factory=lambda: ProbeConfig(iters=1000))
    device: str = "cpu"
    max_ctx: int = DEFAULT_MAX_CTX
    progress: bool = True  # a bar per relearning run (stderr)

    def __post_init__(self):
        if self.seeds < 1:
            raise ConfigError("seeds", self.seeds, "a positive integer (the verdicts need 3)")


def load_models(base: str | Path, finetuned: str | Path, control: str | Path | None = None,
                max_ctx: int = DEFAULT_MAX_CTX):
    """(base, fine-tuned, control or None, tokenizer): every directory must hold a model of one architecture with one
    vocabulary — the audit compares them token for token and weight for weight."""
    roles = {"BASE": base, "FINETUNED": finetuned, **({"CONTROL": control} if control is not None else {})}
    for path in roles.values():  # each is a model directory of a supported family, before anything is loaded
        hf_config_to_gpt(read_config(path), max_ctx)
    tokenizer = load_hf_tokenizer(base)
    for role, path in roles.items():
        if role != "BASE" and load_hf_tokenizer(path).get_vocab() != tokenizer.get_vocab():
            raise ConfigError(f"{role} {Path(path) / 'tokenizer.json'}", "another vocabulary",
                              f"the tokenizer of BASE ({Path(base) / 'tokenizer.json'}): the audit compares token by "
                              "token")
    models = {role: load_hf(path, max_ctx) for role, path in roles.items()}
    for role, model in models.items():
        if model.cfg != models["BASE"].cfg:
            differs = sorted(k for k, v in models["BASE"].cfg.model_dump().items() if model.cfg.model_dump().get(k) != v)
            raise ConfigError(f"{role} {Path(roles[role]) / 'config.json'}", ", ".join(differs) + " differ",
                              "the architecture of BASE")
    return models["BASE"], models["FINETUNED"], models.get("CONTROL"), tokenizer


def _steps_to(curve: list[dict], reached) -> int | None:
    return V.first_step([(p["step"], p["logprob"]) for p in curve], reached)


def _prune_share(curve: list[dict], gap: float) -> float | None:
    """The best held-out log-prob gain over K ≤ PRUNE_K_MAX rows, as a share of ``gap`` (None without a gap)."""
    if not gap > 0:
        return None
    return (max(p["logprob"] for p in curve if p["k"] <= V.PRUNE_K_MAX) - curve[0]["logprob"]) / gap


def _majority_share(data: Encoded) -> float:
    """The share of records whose first answer token is the most common one (the probe's applicability)."""
    labels = answer_queries(data)[1]
    return float(labels.bincount().max()) / len(labels)


def _signatures(models: tuple, splits: tuple[Encoded, Encoded, Encoded, Encoded], base_lp: float, gap: float,
                seed: int, cfg: "AuditConfig") -> dict[str, Any]:
    """One seed's probe and pruning measurements (docs/audit.md, "What it measures" 3-4): ``models`` (BASE,
    FINETUNED, CONTROL or None), ``splits`` (attack, held out, and the never-known twin's attack and held out)."""
    (base, ft, control), (attack, held, never_attack, never_held) = models, splits
    twin = random_init_twin(base, seed).to(cfg.device)
    models = {"finetuned": ft, "base": base, "random_init": twin, **({"control": control} if control is not None else {})}
    row: dict[str, Any] = {"probe": probe_answer(models, attack, held, cfg.probe, seed),
                           "prune_real": prune_curve(ft, attack, held),
                           "prune_never_known": prune_curve(ft, never_attack, never_held)}
    row["prune_share_real"] = _prune_share(row["prune_real"], gap)
    row["prune_share_never_known"] = _prune_share(row["prune_never_known"], gap)
    if control is not None:
        row["prune_control"] = prune_curve(control, attack, held)
        row["prune_share_control"] = _prune_share(row["prune_control"], base_lp - row["prune_control"][0]["logprob"])
    return row


def run_audit(base: str | Path, finetuned: str | Path, capability: str | Path, cfg: AuditConfig = AuditConfig(),
              control: str | Path | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement and verdict of one audit, as a JSON-able dict. ``control``: a model of the same
    architecture that never had the capability (optional; the relearning rule then compares with it)."""
    started = time.perf_counter()
    cap = load_capability(capability)  # the cheap checks first: a bad line costs no model load
    base_model, ft_model, control_model, tok = load_models(base, finetuned, control, cfg.max_ctx)
    for model in (base_model, ft_model, control_model):
        if model is not None:
            model.to(cfg.device)
    real_all = encode(cap, tok, base_model.cfg.n_ctx)  # every record checked once, named by its line
    seeds = []
    for seed in range(cfg.seeds):
        attack, held = cap.split(seed, cfg.attack_share)
        never_all = encode(cap.never_known(seed), tok, base_model.cfg.n_ctx, truncate=True)
        real_attack, real_held = real_all.take(attack), real_all.take(held)
        base_s, ft_s = score(base_model, real_held), score(ft_model, real_held)
        say(f"seed {seed}: held-out answer log-prob base {base_s.mean_logprob:.3f}, fine-tuned {ft_s.mean_logprob:.3f}"
            f"; relearning {cfg.relearn.steps} steps (real, never-known{', control model' if control_model else ''})")
        gap = base_s.mean_logprob - ft_s.mean_logprob
        target = base_s.mean_logprob - (1 - V.AUDIT_REVIVED_SHARE) * gap  # FINETUNED's level once revived
        bar = (lambda what: f"seed {seed}: {what}") if cfg.progress else (lambda what: None)
        real = relearn(ft_model, real_attack, real_held, cfg.relearn, seed, bar("FINETUNED, real answers"))
        never = relearn(ft_model, never_all.take(attack), never_all.take(held), cfg.relearn, seed,
                        bar("FINETUNED, never-known twin"))
        row = {"seed": seed, "n_attack": len(attack), "n_held_out": len(held),
               "base": {"logprob": base_s.mean_logprob, "accuracy": base_s.accuracy},
               "finetuned": {"logprob": ft_s.mean_logprob, "accuracy": ft_s.accuracy}, "gap": gap, "target": target,
               "relearn_real": real, "relearn_never_known": never,
               "steps_real": _steps_to(real, lambda lp: lp >= target) if gap > 0 else None,
               # the twin must gain as much as the real relearning needs to (its held-out answers start elsewhere)
               "steps_never_known": _steps_to(never, lambda lp: lp - never[0]["logprob"] >= V.AUDIT_REVIVED_SHARE * gap)
               if gap > 0 else None}
        if control_model is not None:
            ctrl = relearn(control_model, real_attack, real_held, cfg.relearn, seed, bar("CONTROL, real answers"))
            row.update(control={"logprob": ctrl[0]["logprob"], "accuracy": ctrl[0]["accuracy"]}, relearn_control=ctrl,
                       steps_control=_steps_to(ctrl, lambda lp: lp >= target) if gap > 0 else None)
        say(f"seed {seed}: probes and pruning")
        row.update(_signatures((base_model, ft_model, control_model),
                               (real_attack, real_held, never_all.take(attack), never_all.take(held)),
                               base_s.mean_logprob, gap, seed, cfg))
        seeds.append(row)
    caps = [cfg.relearn.steps] * len(seeds)
    removed = V.audit_removed([s["base"]["logprob"] for s in seeds], [s["finetuned"]["logprob"] for s in seeds])
    verdicts = {"removed": removed, "never_known": V.audit_relearning(
        [s["steps_real"] for s in seeds], [s["steps_never_known"] for s in seeds], caps,
        "on the never-known twin (answers shuffled)")}
    if control_model is not None:
        speed = V.audit_relearning([s["steps_real"] for s in seeds], [s["steps_control"] for s in seeds], caps,
                                   "a model that never had it (CONTROL)")
        level = V.audit_relearned_level([s["relearn_real"][-1]["logprob"] for s in seeds],
                                        [s["relearn_control"][-1]["logprob"] for s in seeds])
        verdicts["control"] = V.audit_relearning_vs_model(speed, level)
    # a model that never had the capability is the stronger control (docs/audit.md): it decides when given
    decisive = verdicts["control" if control_model is not None else "never_known"]
    verdict = V.audit_verdict(removed, [decisive])
    probe_controls = ["random_init"] + (["control"] if control_model is not None else [])
    signatures = {
        "probe": V.audit_probe([V.best_block(s["probe"]["finetuned"]) for s in seeds],
                               [[V.best_block(s["probe"][c]) for s in seeds] for c in probe_controls],
                               _majority_share(real_all)),
        "pruning": V.audit_pruning([s["prune_share_real"] for s in seeds],
                                   [s["prune_share_control" if control_model is not None else "prune_share_never_known"]
                                    for s in seeds],
                                   "CONTROL" if control_model is not None else "FINETUNED on the never-known twin")}
    diffs = [asdict(d) for d in weight_diff(base_model, ft_model)]
    return {"base": str(base), "finetuned": str(finetuned), "control": None if control is None else str(control),
            "capability": str(capability), "n_records": len(cap.examples), "model": base_model.cfg.model_dump(),
            "params": base_model.num_params(),
            "config": {**asdict(cfg), "relearn": asdict(cfg.relearn), "probe": cfg.probe.model_dump(mode="json"),
                       "prune": AUDIT_PRUNE.model_dump(mode="json")},
            "seeds": seeds, "weight_diff": diffs, "verdicts": {k: v.as_dict() for k, v in verdicts.items()},
            "signatures": {k: v.as_dict() for k, v in signatures.items()},
            "decisive": decisive.claim, "verdict": verdict.as_dict(), "seconds": time.perf_counter() - started}


# -- writing -------------------------------------------------------------------------------------------------------

INTRO = ("Written by `wrapperlab audit`. Each seed draws its own attack / held-out split of the capability and its "
         "own batch order; numbers are the mean ± 95 % t-interval over seeds. Rules: docs/audit.md.")


def _ci(values: list[float | None], digits: int = 3, pct: bool = False) -> str:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return ci_text(mean_ci(kept), pct=pct, digits=digits) if kept else "n/a"


#: the relearning runs: result key, (line style, colour), label
RUNS = (("relearn_real", ("-", "C0"), "FINETUNED relearns the real answers"),
        ("relearn_never_known", ("--", "C3"), "FINETUNED relearns the never-known twin (answers shuffled)"),
        ("relearn_control", (":", "C1"), "CONTROL (never had it) relearns the real answers"))
STEPS = {"relearn_real": "steps_real", "relearn_never_known": "steps_never_known", "relearn_control": "steps_control"}


def _relearning_figure(result: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for s in result["seeds"]:
        for key, style, label in RUNS:
            if key not in s:
                continue
            curve = s[key]
            ax.plot([p["step"] for p in curve], [p["logprob"] for p in curve], style[0], color=style[1], alpha=0.8,
                    label=label if s["seed"] == 0 else None)
        ax.axhline(s["base"]["logprob"], color="C2", lw=0.8, label="BASE" if s["seed"] == 0 else None)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("relearning step (attack split; log scale past 1)")
    ax.set_ylabel("held-out answer log-prob (nats/token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _weight_table(diffs: list[dict], n_layers: int) -> tuple[list[str], list[list[str]]]:
    by_name = {d["name"]: d["rel_change"] for d in diffs}
    matrices = ["attn.W_Q", "attn.W_K", "attn.W_V", "attn.out", "mlp.fc_in", "mlp.fc_out"]
    rows = [[f"B{i}"] + [f"{100 * by_name[f'blocks.{i}.{m}']:.2f}" if f"blocks.{i}.{m}" in by_name else ""
                         for m in matrices] for i in range(n_layers)]
    for name in ("embed", "pos_embed", "unembed"):
        if name in by_name:
            rows.append([name, f"{100 * by_name[name]:.2f}", "", "", "", "", ""])
    return ["block"] + [f"{m} ‖ΔW‖/‖W‖ %" for m in matrices], rows


def _agreement(signature: str, verdict: str) -> str:
    """How a mechanistic signature's outcome stands to the verdict (it never changes the verdict: docs/audit.md)."""
    if signature == V.INCONCLUSIVE or verdict == V.INCONCLUSIVE:
        return "cannot tell"
    agrees = (signature == V.SHOWN) == (verdict == V.WRAPPED)
    return "agrees with the verdict" if agrees else "disagrees with the verdict"


#: probe columns: result key, header
PROBED = (("finetuned", "FINETUNED"), ("base", "BASE"), ("random_init", "random-init twin"), ("control", "CONTROL"))
#: pruning columns: result key, header
PRUNED = (("prune_real", "FINETUNED"), ("prune_never_known", "FINETUNED, never-known twin"),
          ("prune_control", "CONTROL"))


def _signature_sections(sec: Section, result: dict) -> None:
    """The probe and pruning tables with their rules, each saying whether it agrees with the verdict."""
    seeds, verdict, sig = result["seeds"], result["verdict"]["outcome"], result.get("signatures")
    if not sig:  # an audit.json from before the signatures were built
        return
    probed = [(k, h) for k, h in PROBED if k in seeds[0]["probe"]]
    n_layers = len(seeds[0]["probe"]["finetuned"])
    sec.text("Linear probe of the first answer token at the last prompt position, trained on the attack half, held-out "
             "accuracy per layer (B0 = embeddings).")
    sec.table(["layer"] + [f"{h} %" for _, h in probed],
              [[f"B{i}"] + [_ci([s["probe"][k][i] for s in seeds], pct=True) for k, _ in probed]
               for i in range(n_layers)])
    v = sig["probe"]
    sec.rule(f"{v['claim']} — {_agreement(v['outcome'], verdict)}", v["outcome"], v["reason"])
    pruned = [(k, h) for k, h in PRUNED if k in seeds[0]]
    ks = [p["k"] for p in seeds[0]["prune_real"]]
    sec.text("Pruning: held-out answer log-prob after zeroing the K rows most salient for the attack half's answer "
             "loss (the twin's column: saliency and scoring on shuffled answers).")
    rows = [[str(k)] + [_ci([s[key][i]["logprob"] for s in seeds]) for key, _ in pruned] for i, k in enumerate(ks)]
    rows.append([f"best gain ≤ {V.PRUNE_K_MAX} rows, share of the gap"]
                + [_ci([s[key.replace("prune_", "prune_share_")] for s in seeds], pct=True) for key, _ in pruned])
    sec.table(["K rows zeroed"] + [h for _, h in pruned], rows)
    v = sig["pruning"]
    sec.rule(f"{v['claim']} — {_agreement(v['outcome'], verdict)}", v["outcome"], v["reason"])


def write_audit(result: dict, out: str | Path) -> dict[str, Path]:
    """``audit.json``, ``audit.md`` and ``audit.html`` (with ``relearning.png``) under ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seeds, verdict = result["seeds"], result["verdict"]
    sec = Section(f"{Path(result['finetuned']).name} vs {Path(result['base']).name}: "
                  f"{Path(result['capability']).name}")
    sec.rule("Verdict: deleted or wrapped", verdict["outcome"], verdict["reason"])
    r = result["config"]["relearn"]
    sec.text(f"Models: {result['params']:,} parameters, {result['model']['n_layers']} blocks × d={result['model']['d_model']}. "
             f"Capability: {result['n_records']} records, attack share {result['config']['attack_share']:g} "
             f"({seeds[0]['n_attack']} attack / {seeds[0]['n_held_out']} held out). Relearning: {r['steps']} steps, "
             f"lr {r['lr']:g}, batch {r['batch_size']}. Seeds: {len(seeds)}. Wall time: {result['seconds']:.0f} s "
             f"on {result['config']['device']}.")
    sec.table(["held-out split", "BASE", "FINETUNED"] + (["CONTROL"] if result["control"] else []),
              [[what, *[_ci([s[role][key] for s in seeds], pct=key == "accuracy")
                        for role in ("base", "finetuned", *(["control"] if result["control"] else []))]]
               for what, key in (("answer log-prob (nats/token)", "logprob"), ("exact match %", "accuracy"))])
    rows = []
    for key, _, label in RUNS:
        if key in seeds[0]:
            rows.append([label, f"{_ci([s[key][0]['logprob'] for s in seeds])} → "
                                f"{_ci([s[key][-1]['logprob'] for s in seeds])}",
                         f"{_ci([s[key][0]['accuracy'] for s in seeds], pct=True)} → "
                         f"{_ci([s[key][-1]['accuracy'] for s in seeds], pct=True)}",
                         " / ".join("never" if s[STEPS[key]] is None else str(s[STEPS[key]]) for s in seeds)])
    sec.table(["relearning run", "held-out log-prob: before → after", "exact match %: before → after",
               f"steps to close {100 * V.AUDIT_REVIVED_SHARE:.0f} % of the removal gap, per seed (budget {r['steps']})"],
              rows)
    for v in result["verdicts"].values():
        decides = " (decides the verdict)" if v["claim"] == result["decisive"] else ""
        sec.rule(v["claim"] + decides, v["outcome"], v["reason"])
    sec.figure(_relearning_figure(result, out / "relearning.png"),
               "Held-out answer log-prob during relearning, one line per seed and run: FINETUNED on the real attack "
               "split (solid), on the never-known twin's (dashed), CONTROL on the real one (dotted); green: BASE")
    _signature_sections(sec, result)
    sec.text("Where the fine-tune wrote: the relative change of each weight matrix, BASE → FINETUNED.")
    sec.table(*_weight_table(result["weight_diff"], result["model"]["n_layers"]))
    title = "wrapperlab audit: deleted or wrapped?"
    atomic_write_text(out / "audit.json", json.dumps(result, indent=1, default=str))
    atomic_write_text(out / "audit.md", markdown_page([sec], out, title, INTRO))
    atomic_write_text(out / "audit.html", html_page([sec], title, INTRO))
    return {"json": out / "audit.json", "markdown": out / "audit.md", "html": out / "audit.html"}
