"""Figures (PNG, matplotlib Agg) for analysis results, drawn in the spirit of the paper's Figs. 7–9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRIC_LABELS = {
    "acc_pt_cte0": "Acc O_PT, C_Te=0",
    "acc_pt_cte1": "Acc O_PT, C_Te=1",
    "acc_ft_cte0": "Acc O_FT, C_Te=0",
    "acc_ft_cte1": "Acc O_FT, C_Te=1",
}


def save_figure(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def prune_figure(result: dict[str, Any], path: Path) -> Path:
    """Accuracy vs number of pruned units (Fig. 7): pretraining task on top, fine-tuning task below."""
    fig, axes = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True)
    ks = result["ks"]
    ref = result.get("reference") or {}
    for ax, prefix, title in ((axes[0], "acc_pt", "pretraining task (O_PT)"), (axes[1], "acc_ft", "fine-tuning task (O_FT)")):
        for cte, style in (("cte0", "-o"), ("cte1", "--s")):
            key = f"{prefix}_{cte}"
            if key in result["curves"]:
                line = ax.plot(ks, [100 * v for v in result["curves"][key]], style, label=METRIC_LABELS[key], ms=4)
                if key in ref:
                    ax.axhline(100 * ref[key], color=line[0].get_color(), lw=0.8, ls=":", label="pretrained" if cte == "cte0" else None)
        ax.set_ylim(-3, 103)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    cfg = result["config"]["prune"] if "prune" in result["config"] else result["config"]
    axes[1].set_xlabel(f"units pruned (K) — unit: {cfg['unit']}, saliency: {cfg['saliency']}")
    fig.suptitle(f"pruning {result.get('run', '')}", fontsize=10)
    return save_figure(fig, path)


REFT_STYLES = {"reft": ("reFT (from the fine-tuned model)", "-o"), "scr+ft": ("Scr.+FT (never had O_PT)", "--s"),
               "scr": ("Scr. (random init)", ":^")}


def reft_figure(summary: dict[str, Any], path: Path, title: str = "") -> Path:
    """Acc O_PT (C_Te=0) vs reFT step, log-scaled steps (Fig. 9)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, info in summary.items():
        label, style = REFT_STYLES.get(name, (name, "-"))
        steps, acc = zip(*info["curve"]) if info["curve"] else ((), ())
        ax.plot(steps, [100 * a for a in acc], style, label=label, ms=4)
    ax.axhline(90, color="grey", lw=0.8, ls=":")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("reFT step")
    ax.set_ylabel("Acc O_PT, C_Te=0 (%)")
    ax.set_ylim(-3, 103)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "reverse fine-tuning", fontsize=10)
    return save_figure(fig, path)


def probe_figure(result: dict[str, Any], path: Path, title: str = "") -> Path:
    """Probe accuracy per block (Fig. 8), the trained model beside a random-init control."""
    targets = list(result["accuracy"])
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 3.6), sharey=True, squeeze=False)
    x = range(len(result["layers"]))
    for ax, target in zip(axes[0], targets):
        acc = result["accuracy"][target]
        ax.plot(x, [100 * v for v in acc["model"]], "-o", label="model", ms=4)
        ax.plot(x, [100 * v for v in acc["random_init"]], "--s", label="random init (control)", ms=4, color="grey")
        ax.axhline(100 * result["majority"][target], color="black", lw=0.8, ls=":", label="majority class")
        ax.set_xticks(list(x), result["layers"])
        ax.set_title(f"probe target: {target}", fontsize=10)
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("probe accuracy, C_Te=0 (%)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title or "linear probes at the answer-predicting position", fontsize=10)
    return save_figure(fig, path)


def _focus(tokens: list[str], last: int = 56) -> slice:
    """Long sequences: show only the tail (counted window, EOT, ART) so token labels stay readable."""
    return slice(max(0, len(tokens) - last - 2), len(tokens) - 2)  # drop Ans and EOS


def attention_figure(maps: dict[str, dict[str, Any]], path: Path) -> Path:
    """Patterns of every block and head for one input, one row of panels per run (e.g. before | after)."""
    names = list(maps)
    n_layers = len(maps[names[0]]["patterns"])
    n_heads = len(maps[names[0]]["patterns"][0])
    fig, axes = plt.subplots(len(names) * n_layers, n_heads, figsize=(3.2 * n_heads, 3.0 * n_layers * len(names)), squeeze=False)
    for r, name in enumerate(names):
        m = maps[name]
        sl = _focus(m["tokens"])
        labels = m["tokens"][sl]
        for l in range(n_layers):
            for h in range(n_heads):
                ax = axes[r * n_layers + l][h]
                pat = [row[sl] for row in m["patterns"][l][h][sl]]
                ax.imshow(pat, cmap="viridis", vmin=0, vmax=max(0.05, max(map(max, pat))))
                ax.set_title(f"{name}: block {l} head {h}", fontsize=7)
                ticks = range(len(labels))
                ax.set_xticks(ticks, labels, fontsize=3.5, rotation=90)
                ax.set_yticks(ticks, labels, fontsize=3.5)
    return save_figure(fig, path)


def attention_mass_figure(maps: dict[str, dict[str, Any]], path: Path) -> Path:
    """Mean attention from the answer position onto O_PT vs O_FT tokens, per block and head, per run."""
    names = list(maps)
    first = maps[names[0]]
    n_layers, n_heads = len(first["mass_pt"]), len(first["mass_pt"][0])
    fig, axes = plt.subplots(1, n_layers, figsize=(3.4 * n_layers, 3.2), sharey=True, squeeze=False)
    width = 0.8 / (2 * len(names))
    for l, ax in enumerate(axes[0]):
        for i, name in enumerate(names):
            m = maps[name]
            for j, (key, hatch) in enumerate((("mass_pt", ""), ("mass_ft", "//"))):
                offs = [h + (2 * i + j) * width - 0.4 for h in range(n_heads)]
                ax.bar(offs, m[key][l], width, hatch=hatch, label=f"{name}: on {m['operands'][key[-2:]]}", align="edge")
        ax.set_xticks(range(n_heads), [f"h{h}" for h in range(n_heads)])
        ax.set_title(f"block {l}", fontsize=9)
    axes[0][0].set_ylabel("attention mass from ART")
    axes[0][-1].legend(fontsize=7)
    fig.suptitle("where the answer position looks inside the counted window", fontsize=10)
    return save_figure(fig, path)


def mlp_figure(maps: dict[str, dict[str, Any]], path: Path) -> Path:
    """MLP hidden activations (positions x units) for one input, per block, per run."""
    names = list(maps)
    n_layers = len(maps[names[0]]["mlp"])
    fig, axes = plt.subplots(len(names), n_layers, figsize=(3.6 * n_layers, 3.0 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        sl = _focus(maps[name]["tokens"])
        for l in range(n_layers):
            ax = axes[r][l]
            ax.imshow(maps[name]["mlp"][l][sl], aspect="auto", cmap="magma")
            ax.set_title(f"{name}: block {l} MLP", fontsize=8)
            ax.set_xlabel("hidden unit", fontsize=7)
            ax.set_ylabel("position (tail)", fontsize=7)
    return save_figure(fig, path)


def diff_figure(result: dict[str, Any], path: Path) -> Path:
    """Relative change and top-1 energy share per matrix, in model order."""
    mats = result["matrices"]
    names = [m["name"].replace("blocks.", "B") for m in mats]
    fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.28 * len(mats)), 5.5), sharex=True)
    axes[0].bar(range(len(mats)), [m["rel_change"] for m in mats])
    axes[0].set_ylabel("|dW| / |W|")
    axes[0].set_yscale("log")
    axes[1].bar(range(len(mats)), [m["top1_energy"] for m in mats], color="tab:orange")
    axes[1].set_ylabel("top-1 energy share of dW")
    axes[1].set_ylim(0, 1)
    axes[1].set_xticks(range(len(mats)), names, rotation=90, fontsize=7)
    fig.suptitle(f"weight change {result['from']} -> {result['run']}", fontsize=10)
    return save_figure(fig, path)
