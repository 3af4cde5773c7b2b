"""Figures for compiled models: maps labelled by the residual basis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wrapperlab.report.figures.single import plt, save_figure


def tracr_maps_figure(maps: dict[str, Any], path: Path) -> Path:
    """Per block: the attention pattern (tokens on both axes) and what the block's MLP writes into the
    residual stream, one column per labelled residual direction (only directions it writes to)."""
    tokens, labels = maps["tokens"], maps["labels"]
    n = len(maps["patterns"])
    fig, axes = plt.subplots(n, 2, figsize=(13, 3.4 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 2.2]})
    for b in range(n):
        ax = axes[b][0]
        pattern = np.asarray(maps["patterns"][b]).mean(0)
        ax.imshow(pattern, cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(tokens)), tokens, fontsize=7, rotation=90)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_title(f"block {b} attention (query rows, key columns)", fontsize=9)
        ax = axes[b][1]
        out = np.asarray(maps["mlp_out"][b])  # (pos, d_model)
        used = np.nonzero(np.abs(out).max(0) > 1e-3)[0]
        if len(used):
            lim = float(np.abs(out[:, used]).max())
            ax.imshow(out[:, used], cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
            ax.set_xticks(range(len(used)), [labels[i] for i in used], fontsize=6, rotation=90)
        else:
            ax.text(0.5, 0.5, "writes nothing", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
        ax.set_yticks(range(len(tokens)), tokens, fontsize=7)
        ax.set_title(f"block {b} MLP output in the residual basis", fontsize=9)
    return save_figure(fig, path)
