"""Figures over seeds for the reproduction report, in the spirit of the paper's Figs. 5–9.

Every figure draws each seed as a thin line and their mean (with a 95 % t-interval band where there are
several seeds) as a thick one: with three seeds a reader should see the spread, not only an average.
Curves are ``[(step, value), ...]`` lists, values in [0, 1]; seeds evaluated at different steps are
aligned on the steps they share.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Sequence

from wrapperlab.analysis.stats import mean_ci
from wrapperlab.report.figures.single import METRIC_LABELS, REFT_STYLES, plt, save_figure

Curve = Sequence[tuple[float, float]]


def _wrapped(title: str, width: int = 56) -> str:
    """A title in lines that fit a single-panel figure (cell labels with depth, length and reFT lr run long)."""
    return "\n".join(textwrap.wrap(title, width))


def mean_curve(curves: Sequence[Curve]) -> tuple[list[float], list[float], list[float]]:
    """Steps every curve has, the mean there and its 95 % half-width (0 for one seed)."""
    if not curves:
        return [], [], []
    shared = set.intersection(*(set(s for s, _ in c) for c in curves))
    steps = sorted(shared)
    means, halfs = [], []
    for step in steps:
        stat = mean_ci([dict(c)[step] for c in curves])
        means.append(stat["mean"])
        halfs.append(stat["ci95"] or 0.0)
    return steps, means, halfs


def _seeds(ax, curves: Sequence[Curve], label: str, style: str = "-", color: str | None = None,
           scale: float = 100.0) -> None:
    """Mean curve (thick), 95 % band and one thin line per seed; ``scale`` 100 draws shares as percentages."""
    steps, means, halfs = mean_curve(curves)
    line = ax.plot(steps, [scale * m for m in means], style, label=f"{label} (n={len(curves)})", ms=3, lw=2,
                   color=color)[0]
    if len(curves) > 1:
        ax.fill_between(steps, [scale * (m - h) for m, h in zip(means, halfs)],
                        [scale * (m + h) for m, h in zip(means, halfs)], color=line.get_color(), alpha=0.15, lw=0)
    for c in curves:
        xs, ys = zip(*c) if c else ((), ())
        ax.plot(xs, [scale * y for y in ys], "-", color=line.get_color(), lw=0.6, alpha=0.5)


def _percent_axis(ax, ylabel: str = "accuracy (%)") -> None:
    ax.set_ylim(-3, 103)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def finetune_curves_figure(cells: dict[str, dict[str, list[Curve]]], path: Path) -> Path:
    """Accuracy vs fine-tuning step, one panel per grid cell (Figs. 5, 68–75): Acc O_PT and Acc O_FT on
    correlated (C_Te = 1) and uncorrelated (C_Te = 0) test sets."""
    n = len(cells)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(max(6.5, 4.6 * cols), 3.4 * rows), squeeze=False, sharey=True)
    styles = {"acc_pt_cte0": "-o", "acc_pt_cte1": "--o", "acc_ft_cte0": "-s", "acc_ft_cte1": "--s"}
    for ax, (title, metrics) in zip(axes.flat, cells.items()):
        for metric, style in styles.items():
            if metrics.get(metric):
                _seeds(ax, metrics[metric], METRIC_LABELS[metric], style)
        ax.set_title(_wrapped(title), fontsize=10)
        ax.set_xlabel("fine-tuning step")
        _percent_axis(ax)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("accuracy during fine-tuning: mean over seeds, 95 % band, thin lines = seeds", fontsize=9)
    return save_figure(fig, path)


def behaviour_figure(groups: dict[str, list[dict[str, Any]]], path: Path,
                     pretrained: dict[str, dict[str, Any]] | None = None) -> Path:
    """After fine-tuning, per cell: Acc O_PT and O_FT at C_Te = 0 and 1, mean ± 95 % CI (Fig. 6's reading: how much
    of the pretraining answer survives, per prior and lr). One panel per group (a pretraining: its prior, length or
    depth), each with that pretraining's own Acc O_PT as a dotted line (``pretrained``: group -> mean ± CI) — a grid
    of 36 cells on one axis is unreadable at page width, and a pooled pretrained line hides the prior."""
    metrics = ["acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1"]
    groups = {k: v for k, v in groups.items() if v}
    widest = max((len(v) for v in groups.values()), default=1)
    fig, axes = plt.subplots(len(groups) or 1, 1, figsize=(max(6.0, 1.05 * widest + 2.5), 3.3 * max(1, len(groups))),
                             squeeze=False, sharey=True)
    width = 0.8 / len(metrics)
    for ax, (name, cells) in zip(axes[:, 0], groups.items()):
        for i, metric in enumerate(metrics):
            xs = [j + (i - 1.5) * width for j in range(len(cells))]
            means = [100 * (c[metric]["mean"] or 0.0) for c in cells]
            errs = [100 * (c[metric]["ci95"] or 0.0) for c in cells]
            ax.bar(xs, means, width, yerr=errs, capsize=2, label=METRIC_LABELS[metric])
        line = (pretrained or {}).get(name)
        if line and line.get("mean") is not None:
            ax.axhline(100 * line["mean"], color="black", lw=0.8, ls=":", label="pretrained Acc O_PT")
        labels = [c["label"].removeprefix(f"{name}, ") if name else c["label"] for c in cells]
        ax.set_xticks(range(len(cells)), labels, fontsize=8)
        ax.set_xlim(-0.6, widest - 0.4)  # panels share one x scale
        _percent_axis(ax)
        ax.set_title(f"{name + ': ' if name else ''}after fine-tuning (mean ± 95 % CI over seeds)", fontsize=10)
    axes[0][0].legend(fontsize=7, ncol=3, loc="lower left", bbox_to_anchor=(0, 1.12))
    return save_figure(fig, path)


def seeds_figure(groups: dict[str, list[Curve]], path: Path, labels: tuple[str, str, str], logx: bool = False,
                 threshold: float | None = None, percent: bool = True) -> Path:
    """Several curve families over seeds on one axis (reFT vs Scr.+FT vs Scr., Fig. 9; pruning, Fig. 7), ``labels``
    its (x axis, y axis, title); ``percent=False`` for values that are not shares (losses)."""
    xlabel, ylabel, title = labels
    fig, ax = plt.subplots(figsize=(6, 4))
    scale = 100.0 if percent else 1.0
    for name, curves in groups.items():
        label, style = REFT_STYLES.get(name, (name, "-o"))
        if curves:
            _seeds(ax, curves, label, style, scale=scale)
    if threshold is not None:
        ax.axhline(scale * threshold, color="grey", lw=0.8, ls=":")
    if logx:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
    ax.set_xlabel(xlabel)
    if percent:
        _percent_axis(ax, ylabel)
    else:
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(_wrapped(title), fontsize=10)
    return save_figure(fig, path)


def probe_seeds_figure(results: list[Any], path: Path, title: str, others: dict[str, list[Any]] | None = None) -> Path:
    """Probe accuracy per block over seeds (Fig. 8), the trained model beside its random-init control and ``others``
    (label -> probe results of other models probed the same way: the pretrained model, Fig. 8a; the never-had-it
    model), each with its own seeds' band."""
    target = next(iter(results[0].accuracy))
    layers = results[0].layers

    def curves(which: str, of: list[Any] = results) -> list[Curve]:
        return [list(enumerate(r.accuracy[target][which])) for r in of]

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _seeds(ax, curves("model"), "fine-tuned model", "-o")
    for (label, group), style in zip(((k, v) for k, v in (others or {}).items() if v), ("-.^", ":v", "-.d")):
        _seeds(ax, curves("model", group), label, style)
    _seeds(ax, curves("random_init"), "random init (control)", "--s", color="grey")
    majority = mean_ci([r.majority[target] for r in results])["mean"]
    ax.axhline(100 * majority, color="black", lw=0.8, ls=":", label="majority class")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("probed activation")
    _percent_axis(ax, f"probe accuracy: {target} (%)")
    ax.legend(fontsize=8)
    ax.set_title(_wrapped(title), fontsize=10)
    return save_figure(fig, path)


def behaviour_bars(cells: list[dict[str, Any]], path: Path) -> Path:
    """Per story model: judged Twist rate for prompts that request a Twist and for prompts that do not
    (mean ± 95 % CI over seeds) — the gap between the two bars is the *requested* capability."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(cells) + 2), 3.8))
    for i, (key, label) in enumerate((("gen_twist", "Twist requested"), ("gen_non", "Twist not requested"))):
        xs = [j + (i - 0.5) * 0.38 for j in range(len(cells))]
        ax.bar(xs, [100 * (c[key]["mean"] or 0.0) for c in cells], 0.38,
               yerr=[100 * (c[key]["ci95"] or 0.0) for c in cells], capsize=2, label=label)
    ax.set_xticks(range(len(cells)), [c["label"] for c in cells], fontsize=8)
    _percent_axis(ax, "stories judged to have a Twist (%)")
    ax.legend(fontsize=8)
    ax.set_title("generation score per model", fontsize=10)
    return save_figure(fig, path)


def story_probe_figure(results: dict[str, list[Any]], design: str, path: Path) -> Path:
    """Twist probe accuracy per layer for every probed story model (one colour each, over seeds) and, dashed
    grey, the random-init twin of the pretrained model: a design is only informative above that line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    layers: list[str] = []
    for label, group in results.items():
        group = [r for r in group if "Twist" in r.accuracy.get(design, {})]
        if group:
            layers = group[0].layers
            _seeds(ax, [list(enumerate(r.accuracy[design]["Twist"]["model"])) for r in group], label, "-o")
    random = [r for group in list(results.values())[:1] for r in group if "Twist" in r.accuracy.get(design, {})]
    if random:
        _seeds(ax, [list(enumerate(r.accuracy[design]["Twist"]["random_init"])) for r in random], "random init",
               "--s", color="grey")
    ax.set_xticks(range(len(layers)), layers)
    ax.set_xlabel("probed activation")
    _percent_axis(ax, "Twist probe accuracy (%)")
    ax.legend(fontsize=7)
    ax.set_title(f"probe design {design}", fontsize=10)
    return save_figure(fig, path)
