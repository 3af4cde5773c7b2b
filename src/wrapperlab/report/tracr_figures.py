"""Figures for compiled models: maps labelled by the residual basis, and the Counter study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wrapperlab.report.figures import _save, plt


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
    return _save(fig, path)


def tracr_study_figure(summary: dict[str, Any], path: Path) -> Path:
    """reFT curves (Acc O_PT vs step, log scale) by fine-tuning lr; counting-block attention on a / b
    before vs after fine-tuning per (lr, C_Tr); the best single-weight pruning against the floor."""
    cells = summary["cells"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax = axes[0]
    colors = {}
    for cell in cells:
        if "reft" not in cell:
            continue
        steps, accs = zip(*cell["reft"]["curve"])
        color = colors.setdefault(cell["lr"], f"C{len(colors)}")
        ax.plot([max(s, 0.7) for s in steps], [100 * a for a in accs], "-o", ms=3, color=color,
                label=f"FT at η_{cell['lr']}" if cell["seed"] == cells[0]["seed"] else None)
    for cell in cells:
        if "scratch" in cell:
            steps, accs = zip(*cell["scratch"]["curve"])
            ax.plot([max(s, 0.7) for s in steps], [100 * a for a in accs], "--", color="grey",
                    label="Scr. (random weights)" if cell["seed"] == cells[0]["seed"] else None)
    ax.set_xscale("log")
    ax.set_xlabel("reFT step (log)")
    ax.set_ylabel("Acc O_PT = count(a), C_Te=0 (%)")
    ax.set_title(f"reFT at η_{summary['config']['reft_lr']} from C_Tr=1 models")
    ax.legend(fontsize=8)
    ax = axes[1]
    rows = summary["aggregate"]
    x = np.arange(len(rows))
    for i, (when, token, hatch) in enumerate([("before", "a", ""), ("before", "b", ""), ("after", "a", "//"),
                                              ("after", "b", "//")]):
        vals = [100 * (r.get(f"attn_{when}_{token}") or {}).get("mean", 0) for r in rows]
        ax.bar(x + (i - 1.5) * 0.2, vals, 0.2, hatch=hatch, color="C0" if token == "a" else "C3",
               alpha=0.5 if when == "before" else 0.9, label=f"{when}: on {token}")
    ax.set_xticks(x, [f"η_{r['lr']}\nC_Tr={r['c_tr']:g}" for r in rows], fontsize=8)
    ax.set_ylabel("attention from answer position (%)")
    ax.set_title("block 1 (counting head) attention")
    ax.legend(fontsize=7)
    ax = axes[2]
    searched = [c for c in cells if "weight_search" in c]
    if searched:
        cell = searched[0]
        ws = cell["weight_search"]
        best = ws["best"][0]
        classes = sorted({*ws["histogram_before"], *best["histogram"]}, key=lambda v: (len(v), v))
        xs = np.arange(len(classes))
        total = sum(ws["histogram_before"].values())
        ax.bar(xs - 0.2, [100 * ws["histogram_before"].get(c, 0) / total for c in classes], 0.4, label="after FT")
        ax.bar(xs + 0.2, [100 * best["histogram"].get(c, 0) / total for c in classes], 0.4, label="1 weight pruned")
        ax.set_xticks(xs, classes)
        ax.set_xlabel("predicted count")
        ax.set_ylabel("share of C_Te=0 inputs (%)")
        ax.set_title(f"η_{cell['lr']} C_Tr=1 seed {cell['seed']}: Acc O_PT {100 * ws['baseline']['acc_pt_cte0']:.0f} → "
                     f"{100 * best['acc_pt_cte0']:.0f} % (floor {100 * ws['floor_pt_cte0']:.0f} %)", fontsize=9)
        ax.legend(fontsize=8)
    return _save(fig, path)
