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
from wrapperlab.report.render import Section
from wrapperlab.report.sections.common import stage_times_row
from wrapperlab.report.tables import ci_text
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


def _by_label(nodes: list[dict], stage: str, **match: Any) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for n in nodes:
        if n["stage"] == stage and all(n["point"].get(k) == v for k, v in match.items()):
            out[_label(n["point"])].append(n)
    return out


def _curve(store, node: dict, key: str) -> list[tuple[float, float]]:
    return [(m["step"], m[key]) for m in store.resolve(node["run_id"]).metrics() if key in m]


def _at(store, node: dict, key: str, step: int) -> float | None:
    """A run's ``key`` at ``step`` (step 0 is the measurement before training, the last step the one after)."""
    data = node["data"]
    if step == 0:
        return data["before"][key]
    if step >= data["steps"]:
        return data["after"][key] if step == data["steps"] else None
    return dict(_curve(store, node, key)).get(step)


def stories_section(rep: dict, paper: dict, store_root: Path, figures: Path) -> tuple[Section, dict]:
    from wrapperlab.runs.store import RunStore

    nodes, store, name = rep["nodes"], RunStore(store_root), rep["spec"]
    seeds = sorted({n["point"]["seed"] for n in nodes})
    sec = Section(f"{name} ({rep['profile']} profile, seeds {seeds})")
    summary: dict[str, Any] = {}
    _setup(sec, rep, store)
    models = {"pretrained": [n for n in nodes if n["stage"] == "pretrain"],
              "not in PT": [n for n in nodes if n["stage"] == "control"], **_by_label(nodes, "finetune")}
    _judge(sec, models["pretrained"], paper, summary)
    _behaviour(sec, models, name, figures, summary, paper)
    _deletion_curves(sec, store, _by_label(nodes, "finetune"), name, figures)
    _reft(sec, store, nodes, models, name, figures, summary, paper)
    _probes(sec, nodes, name, figures, summary, paper)
    return sec, summary


def _setup(sec: Section, rep: dict, store) -> None:
    nodes = rep["nodes"]
    rows = []
    root = next((n for n in nodes if n["stage"] == "pretrain"), None)
    if root is not None:
        cfg, m = store.resolve(root["run_id"]).config(), root["data"]["model"]
        d, t = cfg["data"], cfg["train"]
        rows.append(["model", f"{m['n_layers']} blocks × d={m['d_model']}, {m['n_heads']} heads, {m['norm']}, "
                              f"{m['act']}, {m['positions']}; {root['data'].get('params', '?')} parameters"])
        rows.append(["corpus", f"{d['source']}: {root['data']['records']} records, {root['data']['tokens']} tokens; "
                               f"BPE vocabulary {d['vocab_size']}, context {d['context']} ({d.get('windows', 'random')} windows)"])
        rows.append(["pretraining", f"{t['iters']} steps × {t['batch_size']}, peak lr {t['lr']:g}; the control: the "
                                    f"same without Twist stories"])
    for stage, what in (("finetune", "deletion"), ("reft", "reFT")):
        runs = [n for n in nodes if n["stage"] == stage]
        if runs:
            cfgs = [store.resolve(n["run_id"]).config() for n in runs]
            t = cfgs[0]["train"]
            lrs = ", ".join(f"{lr:g}" for lr in sorted({c["train"]["lr"] for c in cfgs}))
            extra = ""
            if stage == "reft":
                extra = "; corpora " + ", ".join(sorted({n["point"]["corpus"] for n in runs}))
            rows.append([what, f"{t['iters']} steps × {t['batch_size']}, lr {lrs} (constant){extra}"])
    grid = defaultdict(set)
    for n in nodes:
        if n["stage"] == "finetune":
            for k in ("protocol", "lr"):
                grid[k].add(str(n["point"][k]))
    rows += [[k, ", ".join(sorted(v))] for k, v in grid.items()]
    rows.append(stage_times_row(rep))
    sec.table(["setting", "value"], rows)


def _judge(sec: Section, roots: list[dict], paper: dict, summary: dict) -> None:
    accs = [n["data"].get("judge_accuracy") for n in roots if n["data"].get("judge_accuracy")]
    if not accs:
        return
    summary["judge"] = {k: mean_ci([a[k] for a in accs]) for k in accs[0]}
    sec.text("Judge (bag of uni/bigrams, one logistic regression per feature) on held-out records: "
             + "; ".join(f"{k} {ci_text(v)} %" for k, v in summary["judge"].items())
             + f" (`all`: every label of a story right; paper: {paper['claims'].get('judge', '-')}).")


def _stat(group: list[dict], key: str, when: str = "after") -> dict:
    return mean_ci([n["data"][when][key] for n in group])


def _behaviour(sec: Section, models: dict[str, list[dict]], name: str, figures: Path, summary: dict,
               paper: dict) -> None:
    from wrapperlab.report.figures.sweep import behaviour_bars

    rows, cells = [], []
    for label, group in models.items():
        if not group:
            continue
        cell = {"label": label, "seeds": len(group), **{k: _stat(group, k) for k in ("twist_loss", "gen_twist", "gen_non")}}
        cells.append(cell)
        rows.append([label, _loss(cell["twist_loss"]), ci_text(cell["gen_twist"]), ci_text(cell["gen_non"]),
                     str(group[0]["data"]["after"]["n_gen"] // 2)])
    summary["models"] = cells
    sec.table(["model", "Twist-story loss", "Twist rate, Twist requested %", "Twist rate, not requested %",
               "generations per kind per seed"], rows)
    sec.figure(behaviour_bars(cells, figures / f"{name}-behaviour.png"),
               "judged Twist rate of generated stories per model (mean ± 95 % CI over seeds)")
    pt = next((c for c in cells if c["label"] == "pretrained"), None)
    if pt is None or pt["gen_twist"]["mean"] is None:
        return
    gap = pt["gen_twist"]["mean"] - (pt["gen_non"]["mean"] or 0)
    sec.verdict("pretraining teaches the requested Twist", gap >= 0.25,
                f"pretrained model writes a Twist for {ci_text(pt['gen_twist'])} % of prompts that ask for one and "
                f"{ci_text(pt['gen_non'])} % of those that do not", words=("learned", "not learned at this scale"))
    by_lr: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if c["label"] not in ("pretrained", "not in PT"):
            by_lr[c["label"].rsplit(" ", 1)[-1]].append(c)
    for lr, deleted in sorted(by_lr.items()):
        # nothing to delete when pretraining did not teach it: "not measured", not a success
        dropped = all((c["gen_twist"]["mean"] or 0) <= 0.5 * pt["gen_twist"]["mean"] for c in deleted) \
            if gap >= 0.25 else None
        sec.verdict(f"deletion at {lr} stops the Twist (every protocol at most half the pretrained rate)", dropped,
                    "; ".join(f"{c['label']}: {ci_text(c['gen_twist'])} % (loss {_loss(c['twist_loss'])})"
                              for c in deleted) + f" vs pretrained {ci_text(pt['gen_twist'])} % (loss "
                    f"{_loss(pt['twist_loss'])}; paper: {paper['claims'].get('deletion', '-')})",
                    words=("shown", "not shown"))


def _deletion_curves(sec: Section, store, deletions: dict[str, list[dict]], name: str, figures: Path) -> None:
    from wrapperlab.report.figures.sweep import seeds_figure

    if not deletions:
        return
    groups = {label: [_curve(store, n, "twist_loss") for n in group] for label, group in deletions.items()}
    sec.figure(seeds_figure(groups, figures / f"{name}-deletion-loss.png", "deletion step", "Twist-story loss",
                            "loss on held-out Twist stories during deletion", percent=False),
               "Twist-story loss during deletion (Figs. 31–32)")


def _reft(sec: Section, store, nodes: list[dict], models: dict, name: str, figures: Path, summary: dict,
          paper: dict) -> None:
    from wrapperlab.report.figures.sweep import seeds_figure

    refts = [n for n in nodes if n["stage"] == "reft"]
    if not refts:
        return
    steps = sorted({0, *(s for n in refts for s, _ in _curve(store, n, "gen_twist")), refts[0]["data"]["steps"]})
    table1 = paper.get("reft_gen_twist", {})
    summary["reft"] = []
    for corpus in sorted({n["point"]["corpus"] for n in refts}, key=lambda c: c != "twist"):
        rows, loss_groups = [], {}
        for label, group in _by_label(refts, "reft", corpus=corpus).items():
            entry: dict[str, Any] = {"label": label, "corpus": corpus, "seeds": len(group)}
            for key in ("gen_twist", "gen_non", "twist_loss"):
                entry[key] = {s: mean_ci([_at(store, n, key, s) for n in group]) for s in steps}
            loss_steps = sorted(set.intersection(*(set(s for s, _ in _curve(store, n, "twist_loss")) for n in group)))
            entry["loss_curve"] = {s: mean_ci([dict(_curve(store, n, "twist_loss"))[s] for n in group]) for s in loss_steps}
            summary["reft"].append(entry)
            loss_groups[label] = [_curve(store, n, "twist_loss") for n in group]
            paper_row = table1.get(_paper_key(group[0]["point"])) if corpus == "twist" else None
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
        sec.figure(seeds_figure(loss_groups, figures / f"{name}-reft-{corpus}-loss.png", "reFT step", "Twist-story loss",
                                f"reFT on {corpus} stories: Twist-story loss", logx=True, percent=False),
                   f"Twist-story loss during reFT on {corpus} stories, deleted models vs the not-in-PT control (Figs. 11b, 33)")
    _reft_verdicts(sec, summary["reft"], paper)


def _reft_verdicts(sec: Section, entries: list[dict], paper: dict) -> None:
    twist = [e for e in entries if e["corpus"] == "twist"]
    control = next((e for e in twist if e["label"] == "not in PT"), None)
    deleted = [e for e in twist if e["label"] != "not in PT"]
    if control and deleted:
        step = min((s for s in control["loss_curve"] if s >= 30), default=max(control["loss_curve"]))
        ctrl = control["loss_curve"][step]["mean"]
        faster = all(e["loss_curve"].get(step, {}).get("mean", ctrl) < ctrl for e in deleted)
        sec.verdict("reFT revives the Twist faster than for a model that never had it", faster,
                    f"Twist-story loss at reFT step {step}: " + "; ".join(
                        f"{e['label']} {_loss(e['loss_curve'][step])}" for e in deleted if step in e["loss_curve"])
                    + f" vs not in PT {_loss(control['loss_curve'][step])} "
                      f"(paper: {paper['claims'].get('reft', '-')})")
    mixed = [e for e in entries if e["corpus"] == "mixed"]
    if mixed:
        end = max(mixed[0]["gen_twist"])
        parts = [f"{e['label']}: requested {ci_text(e['gen_twist'][end])} % vs not requested {ci_text(e['gen_non'][end])} %"
                 for e in mixed]
        conditional = [e for e in mixed if e["label"] != "not in PT" and e["gen_twist"][end]["mean"] is not None
                       and e["gen_twist"][end]["mean"] - (e["gen_non"][end]["mean"] or 0) >= 0.25]
        revived = [e for e in mixed if e["label"] != "not in PT"]
        sec.verdict("after reFT on a mixed corpus the Twist follows the request", bool(conditional) if revived else None,
                    f"at reFT step {end}: " + "; ".join(parts), words=("shown", "not shown"))


def _probes(sec: Section, nodes: list[dict], name: str, figures: Path, summary: dict, paper: dict) -> None:
    from wrapperlab.report.figures.sweep import story_probe_figure

    probes = _by_label(nodes, "probe")
    if not probes:
        return
    designs = list(next(iter(probes.values()))[0]["data"]["accuracy"])
    summary["probes"] = {}
    for design in designs:
        rows, per_model = [], {}
        for label, group in probes.items():
            results = [n["data"] for n in group if "Twist" in n["data"]["accuracy"].get(design, {})]
            if not results:
                continue
            best = lambda which: mean_ci([max(r["accuracy"][design]["Twist"][which]) for r in results])  # noqa: E731
            last = lambda which: mean_ci([r["accuracy"][design]["Twist"][which][-1] for r in results])  # noqa: E731
            says = sum(informative(r["accuracy"][design]["Twist"]["model"], r["accuracy"][design]["Twist"]["random_init"])
                       for r in results)
            per_model[label] = {"best": best("model"), "last": last("model"), "random_best": best("random_init"),
                                "informative_seeds": says, "seeds": len(results),
                                "majority": mean_ci([r["majority"][design]["Twist"] for r in results])}
            rows.append([label, ci_text(per_model[label]["best"]), ci_text(per_model[label]["last"]),
                         ci_text(per_model[label]["random_best"]), ci_text(per_model[label]["majority"]),
                         f"{says}/{len(results)}"])
        summary["probes"][design] = per_model
        verdict = _design_verdict(per_model)
        summary["probes"][design]["verdict"] = verdict
        sec.text(f"Probe design `{design}` ({_DESIGN_TEXT.get(design, '')}): Twist probe accuracy — {verdict} "
                 f"(the last column counts the seeds where a model beats its random-init twin by ≥ "
                 f"{100 * INFORMATIVE_MARGIN:.0f} points at some layer).")
        sec.table(["model", "best layer %", "last layer %", "random init, best layer %", "majority %",
                   "seeds informative"], rows)
        sec.figure(story_probe_figure({label: [n["data"] for n in group] for label, group in probes.items()}, design,
                                      figures / f"{name}-probe-{design}.png"),
                   f"Twist probe accuracy per layer, design {design}, beside the random-init model")
    if "last10" in designs:
        _other_features(sec, probes)
    if paper.get("claims", {}).get("probing"):
        sec.text(f"Paper: {paper['claims']['probing']}.")


def _design_verdict(per_model: dict[str, dict]) -> str:
    """A design speaks about the Twist *capability* only if the pretrained model reads the label better than
    both its random-init twin (else the input's tokens explain it) and the not-in-PT control (else any trained
    story model does, capability or not), each by the margin, at the best layer, averaged over seeds."""
    pt, control = per_model.get("pretrained"), per_model.get("not in PT")
    if pt is None or pt["best"]["mean"] is None:
        return "not measured"
    over_random = pt["best"]["mean"] - pt["random_best"]["mean"]
    numbers = f"pretrained {100 * pt['best']['mean']:.1f} %, random init {100 * pt['random_best']['mean']:.1f} %"
    if control is not None and control["best"]["mean"] is not None:
        numbers += f", not in PT {100 * control['best']['mean']:.1f} %"
        over_control = pt["best"]["mean"] - control["best"]["mean"]
    else:
        over_control = float("inf")
    if over_random < INFORMATIVE_MARGIN:
        return f"UNINFORMATIVE: the random-init model reads it about as well ({numbers})"
    if over_control < INFORMATIVE_MARGIN:
        return f"UNINFORMATIVE about the Twist capability: the not-in-PT model reads it as well ({numbers})"
    return f"informative ({numbers})"


_DESIGN_TEXT = {
    "last10": "the paper's: mean of the last 10 story positions, label = what the story has",
    "requested": "position right after `Story:`, label = Twist requested; no story words yet",
    "requested_matched": "position right after `Story:`, both classes contain the token Twist once (Features vs "
                         "Words line); the words cannot solve it",
}


def _other_features(sec: Section, probes: dict[str, list[dict]]) -> None:
    """The paper's design for all six features (Figs. 36–38): best-layer accuracy, model vs random init."""
    labels = list(probes)
    features = list(next(iter(probes.values()))[0]["data"]["accuracy"]["last10"])
    rows = []
    for feature in features:
        row = [feature]
        for label in labels:
            accs = [n["data"]["accuracy"]["last10"][feature] for n in probes[label]
                    if feature in n["data"]["accuracy"]["last10"]]
            row.append(f"{ci_text(mean_ci([max(a['model']) for a in accs]))} ({ci_text(mean_ci([max(a['random_init']) for a in accs]))})"
                       if accs else "-")
        rows.append(row)
    sec.text("Design `last10`, all six features: best-layer probe accuracy %, random-init model in parentheses.")
    sec.table(["feature", *labels], rows)
