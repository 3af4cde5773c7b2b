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


def _save(fig, path: Path) -> Path:
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
    return _save(fig, path)
