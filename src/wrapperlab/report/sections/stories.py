"""The stories part of the reproduction report (Jain et al. §5.2, App. F; Table 1, Figs. 11, 31–35).

Reads a ``stories`` reproduction (pretraining, "not in PT" control, deletions per protocol × lr, reFT per
corpus, probes) and writes: the setup, the behaviour of every model (Twist-story loss; judged Twist rate for
prompts that request a Twist and for prompts that do not), reFT against the control (the paper's Table 1 beside
ours), probes in each design beside a random-init model, figures over seeds, and one verdict per claim.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report.records import Record, Reproduced
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import stage_times_row
from wrapperlab.report.tables import ci_text, effect_text, steps_text
from wrapperlab.settings.stories.probes import INFORMATIVE_MARGIN, informative

PROTOCOL_NAMES = {"filter": "F", "filter_mix_match": "F+MM", "filter_randomise": "F+R", "refusal": "refusal"}
#: the paper's Table 1 columns (reFT iterations); ours are read at the steps our profile evaluates
TABLE1_STEPS = (0, 30, 300, 3000)


def _loss(stat: dict) -> str:
    return ci_text(stat, pct=False, digits=3)


def _label(point: dict[str, Any]) -> str:
    if point.get("from") == "control" or point.get("model") == "control":
        return "not in PT"
    if point.get("model") == "pretrained":
        return "pretrained"
    return f"{PROTOCOL_NAMES.get(point['protocol'], point['protocol'])} η_{point['lr']}"


def _paper_key(point: dict[str, Any]) -> str:
    return "control" if point.get("from") == "control" else f"{point['protocol']}/{point['lr']}"


def _by_label(nodes: list[Record], stage: str, **match: Any) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for n in nodes:
        if n.stage == stage and all(n.point.get(k) == v for k, v in match.items()):
            out[_label(n.point)].append(n)
    return out


def _curve(store, node: Record, key: str) -> list[tuple[float, float]]:
    return [(m["step"], m[key]) for m in store.resolve(node.run_id).metrics() if key in m]


def _measured(node: Record, when: str, key: str) -> float | None:
    """A story run's measurement ``key`` (twist_loss, gen_twist, gen_non) before or after it trained."""
    measures = getattr(node.result, when)
    return None if measures is None else getattr(measures, key)


def _at(store, node: Record, key: str, step: int) -> float | None:
    """A run's ``key`` at ``step`` (step 0 is the measurement before training, the last step the one after)."""
    if step == 0:
        return _measured(node, "before", key)
    if step >= node.result.steps:
        return _measured(node, "after", key) if step == node.result.steps else None
    return dict(_curve(store, node, key)).get(step)


def stories_section(rep: Reproduced, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.runs.store import RunStore

    nodes, store, name = rep.nodes, RunStore(store_root), rep.spec
    seeds = sorted({n.seed for n in nodes})
    sec = Section(f"{name} ({rep.profile} profile, seeds {seeds})")
    summary: dict[str, Any] = {}
    _setup(sec, rep, store)
    models = {"pretrained": rep.of("pretrain"), "not in PT": rep.of("control"), **_by_label(nodes, "finetune")}
    _judge(sec, models["pretrained"], paper, summary)
    _behaviour(sec, models, name, figures, summary, paper)
    _deletion_curves(sec, store, _by_label(nodes, "finetune"), name, figures)
    _reft(sec, store, rep, figures, summary, paper)
    _probes(sec, nodes, name, figures, summary, paper)
    return sec, summary


def _setup(sec: Section, rep: Reproduced, store) -> None:
    rows = []
    root = next(iter(rep.of("pretrain")), None)
    if root is not None:
        cfg, m = store.resolve(root.run_id).config(), root.result.model
        d, t = cfg["data"], cfg["train"]
        rows.append(["model", f"{m['n_layers']} blocks × d={m['d_model']}, {m['n_heads']} heads, {m['norm']}, "
                              f"{m['act']}, {m['positions']}; {root.result.params} parameters"])
        rows.append(["corpus", f"{d['source']}: {root.result.records} records, {root.result.tokens} tokens; "
                               f"BPE vocabulary {d['vocab_size']}, context {d['context']} ({d.get('windows', 'random')} windows)"])
        rows.append(["pretraining", f"{t['iters']} steps × {t['batch_size']}, peak lr {t['lr']:g}; the control: the "
                                    f"same without Twist stories"])
    for stage, what in (("finetune", "deletion"), ("reft", "reFT")):
        runs = rep.of(stage)
        if runs:
            cfgs = [store.resolve(n.run_id).config() for n in runs]
            t = cfgs[0]["train"]
            lrs = ", ".join(f"{lr:g}" for lr in sorted({c["train"]["lr"] for c in cfgs}))
            extra = ""
            if stage == "reft":
                extra = "; corpora " + ", ".join(sorted({n.point["corpus"] for n in runs}))
            rows.append([what, f"{t['iters']} steps × {t['batch_size']}, lr {lrs} (constant){extra}"])
    grid = defaultdict(set)
    for n in rep.of("finetune"):
        for k in ("protocol", "lr"):
            grid[k].add(str(n.point[k]))
    rows += [[k, ", ".join(sorted(v))] for k, v in grid.items()]
    rows.append(stage_times_row(rep))
    sec.table(["setting", "value"], rows)


def _judge(sec: Section, roots: list[Record], paper: dict, summary: dict) -> None:
    accs = [n.result.judge_accuracy for n in roots if n.result.judge_accuracy]
    if not accs:
        return
    summary["judge"] = {k: mean_ci([a[k] for a in accs]) for k in accs[0]}
    sec.text("Judge (bag of uni/bigrams, one logistic regression per feature) on held-out records: "
             + "; ".join(f"{k} {ci_text(v)} %" for k, v in summary["judge"].items())
             + f" (`all`: every label of a story right; paper: {paper['claims'].get('judge', '-')}).")


def _stat(group: list[Record], key: str, when: str = "after") -> dict:
    return mean_ci([_measured(n, when, key) for n in group])


def _behaviour(sec: Section, models: dict[str, list[Record]], name: str, figures: Path, summary: dict,
               paper: dict) -> None:
    from wrapperlab.report.figures.sweep import behaviour_bars

    rows, cells = [], []
    for label, group in models.items():
        if not group:
            continue
        cell = {"label": label, "seeds": len(group), **{k: _stat(group, k) for k in ("twist_loss", "gen_twist", "gen_non")}}
        cells.append(cell)
        rows.append([label, _loss(cell["twist_loss"]), ci_text(cell["gen_twist"]), ci_text(cell["gen_non"]),
                     str(group[0].result.after.n_gen // 2)])
    summary["models"] = cells
    sec.table(["model", "Twist-story loss", "Twist rate, Twist requested %", "Twist rate, not requested %",
               "generations per kind per seed"], rows)
    sec.figure(behaviour_bars(cells, figures / f"{name}-behaviour.png"),
               "judged Twist rate of generated stories per model (mean ± 95 % CI over seeds)")
    from wrapperlab.claims import verdicts as V

    summary.setdefault("verdicts", [])
    seed_of = lambda group: {n.seed: n.result.after for n in group}  # noqa: E731
    pt = seed_of(models.get("pretrained", []))
    seeds = sorted(pt)
    rules = [V.story_learned([pt[s].gen_twist for s in seeds], [pt[s].gen_non for s in seeds])] if pt else []
    for label, group in models.items():
        if label not in ("pretrained", "not in PT") and pt:
            deleted = seed_of(group)
            rules.append(V.story_deleted([pt[s].gen_twist for s in seeds],
                                         [deleted[s].gen_twist if s in deleted else None for s in seeds], label))
    for rule in rules:
        summary["verdicts"].append(rule.as_dict())
        sec.rule(rule.claim, rule.outcome, rule.reason)
    if rules and paper["claims"].get("deletion"):
        sec.text(f"Paper: {paper['claims']['deletion']}.")


def _deletion_curves(sec: Section, store, deletions: dict[str, list[Record]], name: str, figures: Path) -> None:
    from wrapperlab.report.figures.sweep import seeds_figure

    if not deletions:
        return
    groups = {label: [_curve(store, n, "twist_loss") for n in group] for label, group in deletions.items()}
    sec.figure(seeds_figure(groups, figures / f"{name}-deletion-loss.png", ("deletion step", "Twist-story loss",
                            "loss on held-out Twist stories during deletion"), percent=False),
               "Twist-story loss during deletion (Figs. 31–32)")


def _reft(sec: Section, store, rep: Reproduced, figures: Path, summary: dict, paper: dict) -> None:
    from wrapperlab.report.figures.sweep import seeds_figure

    nodes, name, refts = rep.nodes, rep.spec, rep.of("reft")
    if not refts:
        return
    steps = sorted({0, *(s for n in refts for s, _ in _curve(store, n, "gen_twist")), refts[0].result.steps})
    table1 = paper.get("reft_gen_twist", {})
    summary["reft"] = []
    for corpus in sorted({n.point["corpus"] for n in refts}, key=lambda c: c != "twist"):
        rows, loss_groups = [], {}
        for label, group in _by_label(refts, "reft", corpus=corpus).items():
            entry: dict[str, Any] = {"label": label, "corpus": corpus, "seeds": len(group)}
            for key in ("gen_twist", "gen_non", "twist_loss"):
                entry[key] = {s: mean_ci([_at(store, n, key, s) for n in group]) for s in steps}
            loss_steps = sorted(set.intersection(*(set(s for s, _ in _curve(store, n, "twist_loss")) for n in group)))
            entry["loss_curve"] = {s: mean_ci([dict(_curve(store, n, "twist_loss"))[s] for n in group]) for s in loss_steps}
            summary["reft"].append(entry)
            loss_groups[label] = [_curve(store, n, "twist_loss") for n in group]
            paper_row = table1.get(_paper_key(group[0].point)) if corpus == "twist" else None
            rows.append([label,
                         " / ".join(ci_text(entry["gen_twist"][s]) for s in steps),
                         " / ".join(ci_text(entry["gen_non"][s]) for s in steps),
                         " / ".join(_loss(entry["twist_loss"][s]) for s in steps),
                         " / ".join(f"{v:g}" for v in paper_row) if paper_row else "-"])
        at = " / ".join(str(s) for s in steps)
        what = "every story has a Twist (the paper's reFT)" if corpus == "twist" else \
            "a truly labelled mix, Twist in part of the stories (tells the requested Twist from 'always twist')"
        sec.text(f"reFT on `{corpus}` stories — {what}. Values at reFT steps {at}.")
        sec.table(["reFT from", f"Twist rate, requested % (steps {at})", "Twist rate, not requested %",
                   "Twist-story loss", f"paper Table 1, requested % (steps {' / '.join(map(str, TABLE1_STEPS))})"], rows)
        sec.figure(seeds_figure(loss_groups, figures / f"{name}-reft-{corpus}-loss.png", ("reFT step", "Twist-story loss",
                                f"reFT on {corpus} stories: Twist-story loss"), logx=True, percent=False),
                   f"Twist-story loss during reFT on {corpus} stories, deleted models vs the not-in-PT control (Figs. 11b, 33)")
    _reft_verdicts(sec, store, nodes, summary, paper)


def _reft_verdicts(sec: Section, store, nodes: list[Record], summary: dict, paper: dict) -> None:
    """The revival rules of claims/verdicts.py, per deletion reverse fine-tuned on Twist stories, each against the
    not-in-PT model's reFT of the same seed: steps until the Twist-story loss is back within the slack of the
    pretrained model's (same seed), and until the Twist is written for half as many requests as the pretrained model
    wrote it for; seeds where the deletion did not work are not counted. Then the mixed corpus's rule."""
    from wrapperlab.claims import verdicts as V

    pretrained = {n.seed: n.result.after for n in nodes if n.stage == "pretrain"}
    deleted = {(_label(n.point), n.seed): n.result.after for n in nodes if n.stage == "finetune"}
    twist = {label: {n.seed: n for n in group}
             for label, group in _by_label(nodes, "reft", corpus="twist").items()}
    control = twist.pop("not in PT", {})
    summary.setdefault("verdicts", [])
    summary["revival"] = []
    if not control:
        return

    def steps(node: Record, key: str, reached) -> int | None:
        curve = [(0, _measured(node, "before", key)), *_curve(store, node, key),
                 (node.result.steps, _measured(node, "after", key))]
        return V.first_step(curve, reached)

    loss_ok = lambda s: lambda v: v <= (1 + V.STORY_LOSS_SLACK) * pretrained[s].twist_loss  # noqa: E731
    rate_ok = lambda s: lambda v: v >= V.STORY_RATE_FRACTION * pretrained[s].gen_twist  # noqa: E731
    rows = []
    for label, group in twist.items():
        seeds = sorted(s for s in group if s in control and s in pretrained)
        worked = [V.deletion_worked(pretrained[s].gen_twist,
                                    deleted[label, s].gen_twist if (label, s) in deleted else None) for s in seeds]
        caps = [group[s].result.steps for s in seeds]
        control_caps = [control[s].result.steps for s in seeds]
        entry: dict[str, Any] = {"label": label, "seeds": seeds, "worked": worked}
        for key, ok, signal in (("twist_loss", loss_ok, f"Twist-story loss ≤ {1 + V.STORY_LOSS_SLACK:g} × the "
                                                         "pretrained model's"),
                                ("gen_twist", rate_ok, f"Twist written for ≥ {V.STORY_RATE_FRACTION:g} × the "
                                                        "pretrained model's share of requests")):
            treated = [steps(group[s], key, ok(s)) for s in seeds]
            ctrl = [steps(control[s], key, ok(s)) for s in seeds]
            verdict = V.story_revival(treated, ctrl, caps, control_caps, worked,
                                      claim=f"reFT from {label} revives the Twist ({signal}) faster than the not-in-PT "
                                            "model learns it",
                                      what=f"log2 reFT steps to {signal}, not in PT minus {label}")
            entry[key] = {"treated": treated, "control": ctrl, "caps": caps, "outcome": verdict.outcome,
                          "effect": {k: verdict.numbers.get(k) for k in ("effect", "low", "high")}}
            summary["verdicts"].append(verdict.as_dict())
            sec.rule(verdict.claim, verdict.outcome, verdict.reason)
        summary["revival"].append(entry)
        rows.append([label, f"{sum(bool(w) for w in worked)}/{len(worked)}",
                     *(f"{steps_text(entry[k]['treated'])} vs {steps_text(entry[k]['control'])}; "
                       f"{effect_text(entry[k]['effect'])} (**{entry[k]['outcome']}**)" for k in ("twist_loss", "gen_twist"))])
    budget = sorted({c for e in summary["revival"] for c in e["twist_loss"]["caps"]})
    sec.table(["reFT on Twist stories from", "deletion worked (seeds)",
               "steps to the loss threshold per seed, vs not in PT; effect", "steps to the rate threshold, vs not in PT; "
               "effect"], rows)
    sec.text(f"Steps are the first evaluated reFT step at the threshold (the rate is judged only at the generation "
             f"steps); `never`: not within the budget ({', '.join(map(str, budget))} steps), counted as the budget. The "
             f"effect: log2 steps of not in PT minus the deletion's, mean (95 % CI) over the seeds where the deletion "
             f"worked. "
             f"Paper: {paper['claims'].get('reft', '-')}")
    mixed = {label: {n.seed: n for n in group}
             for label, group in _by_label(nodes, "reft", corpus="mixed").items()}
    mixed_control = mixed.pop("not in PT", {})
    for label, group in mixed.items():
        seeds = sorted(set(group) & set(mixed_control))
        gap = lambda n: n.result.after.gen_twist - n.result.after.gen_non  # noqa: E731
        verdict = V.story_follows_request([gap(group[s]) for s in seeds], [gap(mixed_control[s]) for s in seeds])
        verdict = V.Verdict(f"{verdict.claim} (from {label})", verdict.outcome, verdict.reason, verdict.numbers)
        summary["verdicts"].append(verdict.as_dict())
        sec.rule(verdict.claim, verdict.outcome, verdict.reason)


def _probes(sec: Section, nodes: list[Record], name: str, figures: Path, summary: dict, paper: dict) -> None:
    """Per design: the Twist probe's best and last layer per model beside the random-init twin, the accuracy at every
    layer, and the probe rule (claims/verdicts.py): the pretrained model read beyond both its random-init twin and
    the not-in-PT model, seed by seed, at the best block after the embeddings."""
    from wrapperlab.claims import verdicts as V
    from wrapperlab.report.figures.sweep import story_probe_figure

    probes = _by_label(nodes, "probe")
    if not probes:
        return
    designs = list(next(iter(probes.values()))[0].result.accuracy)
    summary["probes"] = {}
    summary.setdefault("verdicts", [])
    for design in designs:
        rows, per_model, layer_rows = [], {}, []
        twist = {label: {n.seed: n.result.accuracy[design]["Twist"] for n in group
                         if "Twist" in n.result.accuracy.get(design, {})} for label, group in probes.items()}
        twist = {label: by_seed for label, by_seed in twist.items() if by_seed}
        for label, by_seed in twist.items():
            results = list(by_seed.values())
            group = [n for n in probes[label] if "Twist" in n.result.accuracy.get(design, {})]
            best = lambda which: mean_ci([max(r[which]) for r in results])  # noqa: E731
            says = sum(informative(r["model"], r["random_init"]) for r in results)
            per_model[label] = {"best": best("model"), "last": mean_ci([r["model"][-1] for r in results]),
                                "random_best": best("random_init"), "informative_seeds": says, "seeds": len(results),
                                "majority": mean_ci([n.result.majority[design]["Twist"] for n in group]),
                                "per_layer": [mean_ci(list(v)) for v in zip(*(r["model"] for r in results))]}
            rows.append([label, ci_text(per_model[label]["best"]), ci_text(per_model[label]["last"]),
                         ci_text(per_model[label]["random_best"]), ci_text(per_model[label]["majority"]),
                         f"{says}/{len(results)}"])
            layer_rows.append([label, *(ci_text(c) for c in per_model[label]["per_layer"])])
            if label == "pretrained":
                twin = [mean_ci(list(v)) for v in zip(*(r["random_init"] for r in results))]
                per_model[label]["random_per_layer"] = twin
                layer_rows.append(["random init (pretrained's twin)", *(ci_text(c) for c in twin)])
        summary["probes"][design] = per_model
        pt, ctrl = twist.get("pretrained", {}), twist.get("not in PT", {})
        seeds = sorted(pt)
        verdict = V.story_probe([V.best_block(pt[s]["model"]) for s in seeds],
                                [[V.best_block(pt[s]["random_init"]) for s in seeds],
                                 [V.best_block(ctrl[s]["model"]) if s in ctrl else None for s in seeds]], design)
        summary["probes"][design]["rule"] = verdict.as_dict()
        summary["verdicts"].append(verdict.as_dict())
        sec.text(f"Probe design `{design}` ({_DESIGN_TEXT.get(design, '')}): Twist probe accuracy (the last column "
                 f"counts the seeds where a model beats its random-init twin by ≥ {100 * INFORMATIVE_MARGIN:.0f} "
                 f"points at some layer).")
        sec.table(["model", "best layer %", "last layer %", "random init, best layer %", "majority %",
                   "seeds informative"], rows)
        layers = next(iter(probes.values()))[0].result.layers
        sec.table(["model", *(f"{layer} %" for layer in layers)], layer_rows)
        sec.rule(verdict.claim, verdict.outcome, verdict.reason)
        sec.figure(story_probe_figure({label: [n.result for n in group] for label, group in probes.items()}, design,
                                      figures / f"{name}-probe-{design}.png"),
                   f"Twist probe accuracy per layer, design {design}, beside the random-init model")
    if "last10" in designs:
        _other_features(sec, probes)
    if paper.get("claims", {}).get("probing"):
        sec.text(f"Paper: {paper['claims']['probing']}.")


_DESIGN_TEXT = {
    "last10": "the paper's: mean of the last 10 story positions, label = what the story has",
    "requested": "position right after `Story:`, label = Twist requested; no story words yet",
    "requested_matched": "position right after `Story:`, both classes contain the token Twist once (Features vs "
                         "Words line); the words cannot solve it",
}


def _other_features(sec: Section, probes: dict[str, list[Record]]) -> None:
    """The paper's design for all six features (Figs. 36–38): best-layer accuracy, model vs random init."""
    labels = list(probes)
    features = list(next(iter(probes.values()))[0].result.accuracy["last10"])
    rows = []
    for feature in features:
        row = [feature]
        for label in labels:
            accs = [n.result.accuracy["last10"][feature] for n in probes[label]
                    if feature in n.result.accuracy["last10"]]
            row.append(f"{ci_text(mean_ci([max(a['model']) for a in accs]))} ({ci_text(mean_ci([max(a['random_init']) for a in accs]))})"
                       if accs else "-")
        rows.append(row)
    sec.text("Design `last10`, all six features: best-layer probe accuracy %, random-init model in parentheses.")
    sec.table(["feature", *labels], rows)
