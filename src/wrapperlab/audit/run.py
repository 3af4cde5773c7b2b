"""The audit, chained: load (with the gates) -> encode -> measure, seed by seed -> decide; one progress bar with an
ETA over all of it. :func:`run_audit` returns the typed :class:`~wrapperlab.audit.result.AuditResult`;
report/audit.py writes it."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from wrapperlab.audit.config import AuditConfig
from wrapperlab.audit.decide import decide
from wrapperlab.audit.encode import Encoded, answer_majority, check_unknown, context_of, encode
from wrapperlab.audit.estimate import Shape, check_fits, estimate
from wrapperlab.audit.measure import PRUNE_KS, probe_answer, prune_curve, relearn, score, weight_diff
from wrapperlab.audit.models import (
    CausalLM,
    check_distinct,
    check_pair,
    load_model,
    load_tokenizer,
    read_config,
    resolve_dtype,
)
from wrapperlab.audit.result import AuditResult, CurvePoint, Measured, PrunePoint, SeedRow
from wrapperlab.claims import verdicts as V
from wrapperlab.data.capability import Capability, load_capability
from wrapperlab.errors import ConfigError

#: BASE must answer the capability: its true answers at least this much likelier than shuffled ones (nats per answer
#: token; the removal rule's margin) — otherwise there is no removal gap to measure
ANSWERED_MARGIN = V.AUDIT_REMOVED_MARGIN


@dataclass
class Models:
    base: CausalLM
    finetuned: CausalLM
    control: CausalLM | None
    tokenizer: object


def load(base: str | Path, finetuned: str | Path, control: str | Path | None, cfg: AuditConfig) -> Models:
    """The three models, after the gates (one tokenizer, one architecture, a CONTROL that is another model)."""
    paths = {"BASE": Path(base), "FINETUNED": Path(finetuned), **({"CONTROL": Path(control)} if control else {})}
    for role, p in paths.items():
        read_config(p, role)  # a directory that is no model is named before its tokenizer is looked for
    tokenizers = {role: load_tokenizer(p, role) for role, p in paths.items()}
    check_pair(paths, tokenizers)
    dtype = resolve_dtype(cfg.dtype, cfg.device)
    lms = {role: load_model(p, role, dtype, cfg.device) for role, p in paths.items()}
    check_distinct(lms)
    return Models(lms["BASE"], lms["FINETUNED"], lms.get("CONTROL"), tokenizers["BASE"])


def finite_outputs(m: Models, real: Encoded, cfg: AuditConfig) -> dict[str, float]:
    """Every model's mean answer log-prob on the records, each finite before anything is measured: finite weights
    can still overflow (a norm scaled to 1e38), and a NaN model would be relearned, probed and pruned into NaN
    verdicts blamed on the lr. Returned by role, for the capability gate."""
    out = {}
    for lm in (m.base, m.finetuned, m.control):
        if lm is None:
            continue
        out[lm.role] = score(lm, real, cfg.batch_tokens).mean_logprob
        if not math.isfinite(out[lm.role]):
            raise ConfigError(f"{lm.role} {lm.path}", "non-finite answer log-probs (its outputs overflow)",
                              "a model whose outputs are finite numbers")
    return out


def answered(m: Models, real: Encoded, shuffled: Encoded, cap: Capability, cfg: AuditConfig) -> dict[str, float]:
    """The capability gate: BASE has something to remove — its true answers likelier by :data:`ANSWERED_MARGIN` than
    the same prompts with shuffled answers, or, with a CONTROL, than CONTROL finds the true answers (a model that
    never had the capability). Refused in one line otherwise.

    Why the second way: where the capability is a feature of every answer (a Twist in every story), shuffled answers
    still carry it, and a BASE that writes Twist stories well finds them nearly as likely (the quick story model:
    -0.695 vs -0.783 nats/token, under the margin) — the comparison with shuffled answers then cannot tell, while
    the never-had-it CONTROL can (-0.69 vs about -3.5)."""
    scored = finite_outputs(m, real, cfg)
    true = scored[m.base.role]
    other = score(m.base, shuffled, cfg.batch_tokens).mean_logprob
    out = {"true": true, "shuffled": other}
    if m.control is not None:
        out["control"] = scored[m.control.role]
    if not max(true - other, true - out.get("control", math.inf)) >= ANSWERED_MARGIN:
        versus = f", CONTROL {out['control']:.3f} on them" if "control" in out else ""
        raise ConfigError(f"capability {cap.name}", f"BASE: {true:.3f} nats/token on its answers, {other:.3f} on "
                                                    f"shuffled ones{versus}",
                          f"records BASE answers (its own answers at least {ANSWERED_MARGIN:g} nats/token likelier "
                          "than shuffled ones, or than CONTROL finds them)")
    return out


def _steps_to(curve: list[dict], reached) -> int | None:
    return V.first_step([(p["step"], p["logprob"]) for p in curve], reached)


def _share(curve: list[dict], gap: float) -> float | None:
    """The best held-out log-prob gain over K <= PRUNE_K_MAX rows, as a share of ``gap`` (None without a gap)."""
    if not gap > 0:
        return None
    return (max(p["logprob"] for p in curve if p["k"] <= V.PRUNE_K_MAX) - curve[0]["logprob"]) / gap


class Progress:
    """One bar over the whole audit: relearning steps, and a unit for each scoring, probe and pruning K."""

    def __init__(self, cfg: AuditConfig, has_control: bool):
        from tqdm import tqdm

        runs = 3 if has_control else 2
        per_seed = runs * cfg.relearn.steps + 2 + len(PRUNE_KS) * runs
        self.bar = tqdm(total=cfg.seeds * per_seed, desc="audit", disable=not cfg.progress, file=sys.stderr,
                        dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 10.0)

    def tick(self, n: int = 1) -> None:
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


class _Audit:
    """One audit's models, capability, config, progress bar and voice: what every seed's measurements share."""

    def __init__(self, m: Models, cap: Capability, real: Encoded, cfg: AuditConfig, bar: Progress,
                 say: Callable[[str], None]):
        self.m, self.cap, self.real, self.cfg, self.bar, self.say = m, cap, real, cfg, bar, say

    def runs(self, split: tuple[Encoded, Encoded, Encoded, Encoded]) -> dict[str, tuple[CausalLM, Encoded, Encoded]]:
        """The model each relearning run and pruning curve trains or prunes, and its (attack, held-out) records:
        FINETUNED on the real and on the shuffled answers, CONTROL on the real ones."""
        attack, held, never_attack, never_held = split
        m = self.m
        return {"real": (m.finetuned, attack, held), "never_known": (m.finetuned, never_attack, never_held),
                **({"control": (m.control, attack, held)} if m.control is not None else {})}

    def relearning(self, split: tuple[Encoded, Encoded, Encoded, Encoded], gap: float, target: float,
                   seed: int) -> dict:
        """One seed's relearning runs, and the step each reached the revival level."""
        cfg, out = self.cfg, {"diverged": {}}
        for name, (lm, a, h) in self.runs(split).items():
            done = relearn(lm, (a, h), cfg.relearn, seed, self.bar.tick, cfg.batch_tokens)
            out[f"relearn_{name}"] = [CurvePoint(**p) for p in done.curve]
            if done.diverged_at is not None:
                out["diverged"][name] = done.diverged_at
                self.bar.tick(cfg.relearn.steps - done.diverged_at + 1)
            start = done.curve[0]["logprob"]
            reached = (lambda lp: lp - start >= V.AUDIT_REVIVED_SHARE * gap) if name == "never_known" \
                else (lambda lp: lp >= target)  # the twin must gain as much as the real relearning needs to
            out[f"steps_{name}"] = _steps_to(done.curve, reached) if gap > 0 else None
        if self.m.control is not None:
            first = out["relearn_control"][0]
            out["control"] = Measured(logprob=first.logprob, accuracy=first.accuracy)
        return out

    def signatures(self, split: tuple[Encoded, Encoded, Encoded, Encoded], base_lp: float, gap: float,
                   seed: int) -> dict:
        """One seed's probe and pruning measurements (docs/audit.md, "What it measures" 3-4)."""
        m, cfg, (attack, held, _, _) = self.m, self.cfg, split
        twin = m.base.twin(seed)
        models = {"finetuned": m.finetuned, "base": m.base, "random_init": twin,
                  **({"control": m.control} if m.control is not None else {})}
        row: dict = {"probe": probe_answer(models, attack, held, cfg.probe_iters, seed, cfg.batch_tokens)}
        self.bar.tick()
        del twin, models  # the twin's memory back before pruning
        for name, (lm, a, h) in self.runs(split).items():
            curve = prune_curve(lm, a, h, PRUNE_KS, cfg.batch_tokens)
            self.bar.tick(len(PRUNE_KS))
            row[f"prune_{name}"] = [PrunePoint(**p) for p in curve]
            own_gap = gap if name != "control" else base_lp - curve[0]["logprob"]
            row[f"prune_share_{name}"] = _share(curve, own_gap)
        return row

    def seed(self, seed: int) -> SeedRow:
        m, cfg = self.m, self.cfg
        attack_idx, held_idx = self.cap.split(seed, cfg.attack_share)
        never = encode(self.cap.never_known(seed), m.tokenizer, context_of(m.base.config), cfg.chat_template,
                       truncate=True)
        split = (self.real.take(attack_idx), self.real.take(held_idx), never.take(attack_idx), never.take(held_idx))
        base_s, ft_s = score(m.base, split[1], cfg.batch_tokens), score(m.finetuned, split[1], cfg.batch_tokens)
        self.bar.tick()
        gap = base_s.mean_logprob - ft_s.mean_logprob
        target = base_s.mean_logprob - (1 - V.AUDIT_REVIVED_SHARE) * gap  # FINETUNED's level once revived
        self.say(f"seed {seed}: held-out answer log-prob base {base_s.mean_logprob:.3f}, fine-tuned "
                 f"{ft_s.mean_logprob:.3f}")
        row = {"seed": seed, "n_attack": len(attack_idx), "n_held_out": len(held_idx),
               "base": Measured(logprob=base_s.mean_logprob, accuracy=base_s.accuracy),
               "finetuned": Measured(logprob=ft_s.mean_logprob, accuracy=ft_s.accuracy), "gap": gap, "target": target,
               **self.relearning(split, gap, target, seed), **self.signatures(split, base_s.mean_logprob, gap, seed)}
        return SeedRow(**row)


def _shape(m: Models, real: Encoded, cfg: AuditConfig) -> Shape:
    c = m.base.config
    return Shape(m.base.n_params, c.num_hidden_layers, c.hidden_size, c.vocab_size,
                 next(m.base.model.parameters()).element_size(), len(real), float(real.mask.sum()) / len(real),
                 m.control is not None)


def run_audit(base: str | Path, finetuned: str | Path, capability: str | Path, cfg: AuditConfig = AuditConfig(),
              control: str | Path | None = None, say: Callable[[str], None] = print) -> AuditResult:
    """Every measurement and verdict of one audit. ``control``: a model of the same architecture that never had the
    capability (optional; the relearning rule then compares with it)."""
    started = time.perf_counter()
    cap = load_capability(capability, cfg.fields)  # the cheap checks first: a bad line costs no model load
    m = load(base, finetuned, control, cfg)
    n_ctx = context_of(m.base.config)
    real = encode(cap, m.tokenizer, n_ctx, cfg.chat_template)  # every record checked once, named by its line
    check_unknown(real, m.tokenizer, cap, say)
    est = estimate(_shape(m, real, cfg), cfg, cfg.device, next(m.base.model.parameters()).dtype)
    check_fits(est, cfg.device)
    gate = answered(m, real, encode(cap.never_known(0), m.tokenizer, n_ctx, cfg.chat_template, truncate=True),
                    cap, cfg)
    say(est.line(cfg.device))  # after the gates: a refusal is the only line
    bar = Progress(cfg, m.control is not None)
    try:
        audit = _Audit(m, cap, real, cfg, bar, say)
        rows = [audit.seed(seed) for seed in range(cfg.seeds)]
    finally:
        bar.close()
    verdicts, signatures, decisive, verdict = decide(rows, cfg.relearn.steps, answer_majority(real),
                                                     m.control is not None)
    c = m.base.config
    return AuditResult(
        base=str(base), finetuned=str(finetuned), control=None if control is None else str(control),
        capability=str(capability), n_records=len(cap.examples),
        model={"model_type": c.model_type, "n_layers": c.num_hidden_layers, "d_model": c.hidden_size,
               "dtype": str(next(m.base.model.parameters()).dtype).removeprefix("torch."), "device": cfg.device},
        params=m.base.n_params, config={**cfg.model_dump(mode="json"), "prune_ks": list(PRUNE_KS)},
        seeds=rows, weight_diff=weight_diff(m.base, m.finetuned), verdicts=verdicts, signatures=signatures,
        decisive=decisive, verdict=verdict, seconds=time.perf_counter() - started, answered=gate,
        multiple_choice=cap.multiple_choice)

