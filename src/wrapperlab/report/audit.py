"""The audit's report: an :class:`~wrapperlab.audit.result.AuditResult` as ``audit.json`` (every number),
``audit.md`` and a self-contained ``audit.html`` with the relearning figure. It renders only: what an audit measures
and decides lives in the ``audit`` package (docs/audit.md).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.audit.result import AuditResult, SeedRow
from wrapperlab.claims import verdicts as V
from wrapperlab.files import atomic_write_text
from wrapperlab.report.render import Section, html_page, markdown_page
from wrapperlab.report.tables import ci_text

INTRO = ("Written by `wrapperlab audit`. Each seed draws its own attack / held-out split of the capability and its "
         "own batch order; numbers are the mean ± 95 % t-interval over seeds. Rules: docs/audit.md.")


def _ci(values: list[float | None], digits: int = 3, pct: bool = False) -> str:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return ci_text(mean_ci(kept), pct=pct, digits=digits) if kept else "n/a"


#: the relearning runs: name (relearn_<name>, steps_<name>), (line style, colour), label
RUNS = (("real", ("-", "C0"), "FINETUNED relearns the real answers"),
        ("never_known", ("--", "C3"), "FINETUNED relearns the never-known twin (answers shuffled)"),
        ("control", (":", "C1"), "CONTROL (never had it) relearns the real answers"))


def _curve(s: SeedRow, name: str):
    return getattr(s, f"relearn_{name}")


def _relearning_figure(result: AuditResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for s in result.seeds:
        for name, style, label in RUNS:
            curve = _curve(s, name)
            if not curve:
                continue
            ax.plot([p.step for p in curve], [p.logprob for p in curve], style[0], color=style[1], alpha=0.8,
                    label=label if s.seed == 0 else None)
        ax.axhline(s.base.logprob, color="C2", lw=0.8, label="BASE" if s.seed == 0 else None)
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)
    ax.set_xlabel("relearning step (attack split; log scale past 1)")
    ax.set_ylabel("held-out answer log-prob (nats/token)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_LAYER = re.compile(r"^(.*?)\.(\d+)\.(.+)$")


def _weight_table(diffs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """‖ΔW‖/‖W‖ per layer (rows) and matrix within a layer (columns, by their names in the model), then the matrices
    outside the layers (embeddings, the unembedding)."""
    per_layer: dict[int, dict[str, float]] = {}
    outside: list[tuple[str, float]] = []
    for d in diffs:
        found = _LAYER.match(d["name"].removesuffix(".weight"))
        if found:
            per_layer.setdefault(int(found.group(2)), {})[found.group(3)] = d["rel_change"]
        else:
            outside.append((d["name"].removesuffix(".weight"), d["rel_change"]))
    matrices = list(dict.fromkeys(m for layer in per_layer.values() for m in layer))
    rows = [[f"L{i}"] + [f"{100 * per_layer[i][m]:.2f}" if m in per_layer[i] else "" for m in matrices]
            for i in sorted(per_layer)]
    rows += [[name, f"{100 * value:.2f}"] + [""] * (len(matrices) - 1) for name, value in outside]
    return ["layer"] + [f"{m} ‖ΔW‖/‖W‖ %" for m in matrices], rows


def _agreement(signature: str, verdict: str) -> str:
    """How a mechanistic signature's outcome stands to the verdict (it never changes the verdict: docs/audit.md)."""
    if signature == V.INCONCLUSIVE or verdict == V.INCONCLUSIVE:
        return "cannot tell"
    agrees = (signature == V.SHOWN) == (verdict == V.WRAPPED)
    return "agrees with the verdict" if agrees else "disagrees with the verdict"


#: probe columns: result key, header
PROBED = (("finetuned", "FINETUNED"), ("base", "BASE"), ("random_init", "random-init twin"), ("control", "CONTROL"))
#: pruning columns: run name, header
PRUNED = (("real", "FINETUNED"), ("never_known", "FINETUNED, never-known twin"), ("control", "CONTROL"))


def _signature_sections(sec: Section, result: AuditResult) -> None:
    """The probe and pruning tables with their rules, each saying whether it agrees with the verdict."""
    seeds, verdict, sig = result.seeds, result.verdict.outcome, result.signatures
    if not sig:  # an audit.json from before the signatures were built
        return
    probed = [(k, h) for k, h in PROBED if k in seeds[0].probe]
    n_layers = len(seeds[0].probe["finetuned"])
    sec.text("Linear probe of the first answer token at the last prompt position, trained on the attack half, held-out "
             "accuracy per layer (B0 = embeddings).")
    sec.table(["layer"] + [f"{h} %" for _, h in probed],
              [[f"B{i}"] + [_ci([s.probe[k][i] for s in seeds], pct=True) for k, _ in probed]
               for i in range(n_layers)])
    v = sig["probe"]
    sec.rule(f"{v.claim} — {_agreement(v.outcome, verdict)}", v.outcome, v.reason)
    pruned = [(k, h) for k, h in PRUNED if getattr(seeds[0], f"prune_{k}") is not None]
    ks = [p.k for p in seeds[0].prune_real]
    sec.text("Pruning: held-out answer log-prob after zeroing the K output rows of the decoder layers' linear maps most "
             "salient for the attack half's answer loss (the twin's column: saliency and scoring on shuffled answers).")
    rows = [[str(k)] + [_ci([getattr(s, f"prune_{key}")[i].logprob for s in seeds]) for key, _ in pruned]
            for i, k in enumerate(ks)]
    rows.append([f"best gain ≤ {V.PRUNE_K_MAX} rows, share of the gap"]
                + [_ci([s.prune_share(key) for s in seeds], pct=True) for key, _ in pruned])
    sec.table(["K rows zeroed"] + [h for _, h in pruned], rows)
    v = sig["pruning"]
    sec.rule(f"{v.claim} — {_agreement(v.outcome, verdict)}", v.outcome, v.reason)


def _setup_text(result: AuditResult) -> str:
    seeds, cfg, m = result.seeds, result.config, result.model
    r = cfg["relearn"]
    how = f"LoRA rank {r['lora']}" if r.get("lora") else "full fine-tuning"
    where = f" on {m.get('device', cfg.get('device', 'cpu'))}" + (f" in {m['dtype']}" if m.get("dtype") else "")
    kind = f"{m['model_type']}, " if m.get("model_type") else ""
    form = " of multiple choice (the right letter's log-prob; accuracy among the letters)" \
        if result.multiple_choice else ""
    return (f"Models: {kind}{result.params:,} parameters, {m['n_layers']} layers × d={m['d_model']}. Capability: "
            f"{result.n_records} records{form}, attack share {cfg['attack_share']:g} ({seeds[0].n_attack} attack / "
            f"{seeds[0].n_held_out} held out). Relearning: {r['steps']} steps of {r['batch_size']} records, lr "
            f"{r['lr']:g}, {how}. Seeds: {len(seeds)}. Wall time: {result.seconds:.0f} s{where}.")


def _relearning_table(sec: Section, result: AuditResult) -> None:
    seeds, steps = result.seeds, result.config["relearn"]["steps"]
    rows = []
    for name, _, label in RUNS:
        if _curve(seeds[0], name):
            per_seed = ["diverged" if name in s.diverged else "never" if getattr(s, f"steps_{name}") is None
                        else str(getattr(s, f"steps_{name}")) for s in seeds]
            rows.append([label, f"{_ci([_curve(s, name)[0].logprob for s in seeds])} → "
                                f"{_ci([_curve(s, name)[-1].logprob for s in seeds])}",
                         f"{_ci([_curve(s, name)[0].accuracy for s in seeds], pct=True)} → "
                         f"{_ci([_curve(s, name)[-1].accuracy for s in seeds], pct=True)}", " / ".join(per_seed)])
    hit = "accuracy" if result.multiple_choice else "exact match"
    sec.table(["relearning run", "held-out log-prob: before → after", f"{hit} %: before → after",
               f"steps to close {100 * V.AUDIT_REVIVED_SHARE:.0f} % of the removal gap, per seed (budget {steps})"],
              rows)


def audit_section(result: AuditResult, out: Path) -> Section:
    """The audit as one report section (its figure written under ``out``)."""
    seeds, verdict = result.seeds, result.verdict
    sec = Section(f"{Path(result.finetuned).name} vs {Path(result.base).name}: {Path(result.capability).name}")
    sec.rule("Verdict: deleted or wrapped", verdict.outcome, verdict.reason)
    sec.text(_setup_text(result))
    roles = ("base", "finetuned", *(["control"] if result.control else []))
    sec.table(["held-out split", "BASE", "FINETUNED"] + (["CONTROL"] if result.control else []),
              [[what, *[_ci([getattr(getattr(s, role), key) for s in seeds], pct=key == "accuracy") for role in roles]]
               for what, key in (("answer log-prob (nats/token)", "logprob"), ("exact match %", "accuracy"))])
    _relearning_table(sec, result)
    for v in result.verdicts.values():
        decides = " (decides the verdict)" if v.claim == result.decisive else ""
        sec.rule(v.claim + decides, v.outcome, v.reason)
    sec.figure(_relearning_figure(result, out / "relearning.png"),
               "Held-out answer log-prob during relearning, one line per seed and run: FINETUNED on the real attack "
               "split (solid), on the never-known twin's (dashed), CONTROL on the real one (dotted); green: BASE")
    _signature_sections(sec, result)
    sec.text("Where the fine-tune wrote: the relative change of each weight matrix, BASE → FINETUNED.")
    sec.table(*_weight_table(result.weight_diff))
    return sec


#: the files of one audit, in the order they are moved into place: ``audit.json`` last, so that its presence says
#: the set beside it is complete
AUDIT_FILES = ("relearning.png", "audit.md", "audit.html", "audit.json")
STAGING = ".audit-staging-"


def write_audit(result: AuditResult, out: str | Path) -> dict[str, Path]:
    """``audit.json``, ``audit.md`` and ``audit.html`` (with ``relearning.png``) under ``out``, as one set: rendered
    into a staging directory beside them and only then moved into place — a kill or a full disk while rendering
    (seconds: the figure, the page) left audit.json from one audit beside audit.md and audit.html from another; now
    it leaves the earlier set as it was, and a kill while the set is swapped in (:func:`_swap_in`) never leaves two
    audits mixed (a staging directory left by a killed process is removed by the next write)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{STAGING}*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING, dir=out))
    try:
        sec = audit_section(result, staging)
        title = "wrapperlab audit: deleted or wrapped?"
        atomic_write_text(staging / "audit.json", json.dumps(result.to_json(), indent=1, default=str))
        atomic_write_text(staging / "audit.md", markdown_page([sec], staging, title, INTRO))
        atomic_write_text(staging / "audit.html", html_page([sec], title, INTRO))
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"json": out / "audit.json", "markdown": out / "audit.md", "html": out / "audit.html"}


def _swap_in(staging: Path, out: Path) -> None:
    """Replace the set in ``out`` by the one in ``staging``: every earlier file removed (audit.json, the mark of a
    complete set, first) before any new one moves in (audit.json last). Moving file by file over the earlier set
    left, after a kill between two moves, audit.json from one audit beside audit.md from another; this way a kill
    in these milliseconds leaves part of one set and no audit.json (a SIGKILL at every step is tested)."""
    for name in reversed(AUDIT_FILES):
        (out / name).unlink(missing_ok=True)
    for name in AUDIT_FILES:
        if (staging / name).exists():
            os.replace(staging / name, out / name)
