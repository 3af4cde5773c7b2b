"""Plain-text tables for the terminal (and Markdown, which is the same table with pipes)."""

from __future__ import annotations

from typing import Any, Sequence

Column = tuple[str, str, str]  # (key, header, format: "pct" | "g" | "s")


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    if fmt == "pct":
        return f"{100 * value:.1f}"
    if fmt == "g":
        return f"{value:.4g}"
    return str(value)


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column], markdown: bool = False) -> str:
    cells = [[header for _, header, _ in columns]]
    cells += [[_cell(row.get(key), fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for n, r in enumerate(cells):
        parts = [c.rjust(w) if n and col[2] != "s" else c.ljust(w) for c, w, col in zip(r, widths, columns)]
        lines.append(("| " + " | ".join(parts) + " |") if markdown else "  ".join(parts))
        if n == 0:
            rule = ("|" + "|".join("-" * (w + 2) for w in widths) + "|") if markdown else "  ".join("-" * w for w in widths)
            lines.append(rule)
    return "\n".join(lines)


FINETUNE_COLUMNS: list[Column] = [
    ("model", "model", "s"),
    ("lr", "lr", "g"),
    ("c_tr", "C_Tr", "g"),
    ("acc_ft_cte0", "O_FT C_Te=0 %", "pct"),
    ("acc_ft_cte1", "O_FT C_Te=1 %", "pct"),
    ("acc_pt_cte0", "O_PT C_Te=0 %", "pct"),
    ("acc_pt_cte1", "O_PT C_Te=1 %", "pct"),
]


def ci_text(stat: dict | None, pct: bool = True, digits: int | None = None) -> str:
    """``mean ± ci`` from :func:`wrapperlab.analysis.stats.mean_ci` output ('-' when nothing was measured):
    shares as percentages with one decimal, other values (steps) as integers, or ``digits`` decimals (losses)."""
    if not stat or stat.get("mean") is None:
        return "never" if stat and stat.get("missing") else "-"
    scale = 100 if pct else 1
    places = 1 if pct else (digits or 0)
    text = f"{scale * stat['mean']:.{places}f}"
    if stat.get("ci95") is not None:
        text += f" ± {scale * stat['ci95']:.{places}f}"
    if stat.get("missing"):
        text += f" ({stat['missing']} never)"
    return text


def study_tables(aggregate: list[dict]) -> str:
    """The demo's two tables: the fine-tuning grid, and the wrapper evidence on analysed cells."""
    grid = [{"lr": r["lr"], "c_tr": r["c_tr"], "n": len(r["seeds"]),
             **{k: ci_text(r[k]) for k in ("acc_ft_cte0", "acc_ft_cte1", "acc_pt_cte0", "acc_pt_cte1")}} for r in aggregate]
    if aggregate:
        first = aggregate[0]
        grid.insert(0, {"lr": "pretrained", "c_tr": None, "n": len(first["seeds"]),
                        **{k: ci_text(first[f"pretrained_{k}"]) for k in ("acc_ft_cte0", "acc_ft_cte1", "acc_pt_cte0", "acc_pt_cte1")}})
    cols = [("lr", "lr", "s"), ("c_tr", "C_Tr", "s"), ("n", "seeds", "s"), ("acc_ft_cte0", "O_FT C_Te=0 %", "s"),
            ("acc_ft_cte1", "O_FT C_Te=1 %", "s"), ("acc_pt_cte0", "O_PT C_Te=0 %", "s"), ("acc_pt_cte1", "O_PT C_Te=1 %", "s")]
    out = [text_table(grid, cols)]
    evidence = []
    for r in aggregate:
        if "k_to_half" not in r:
            continue
        evidence.append({
            "lr": r["lr"], "c_tr": r["c_tr"], "after": ci_text(r["acc_pt_cte0"]),
            "k_half": ci_text(r["k_to_half"], pct=False), "k15": ci_text(r.get("prune_pt_k15")),
            "probe": f"{ci_text(r['probe_finetuned_last'])} / {ci_text(r['probe_pretrained_last'])} / {ci_text(r['probe_random_init_last'])}",
            "reft": " / ".join(ci_text(r.get(f"reft_{c}_steps_to_0.9"), pct=False) for c in ("reft", "scr+ft", "scr")
                               if f"reft_{c}_steps_to_0.9" in r),
        })
    if evidence:
        out.append(text_table(evidence, [
            ("lr", "lr", "s"), ("c_tr", "C_Tr", "s"), ("after", "O_PT C_Te=0 after FT %", "s"),
            ("k_half", "K to half of PT acc", "s"), ("k15", "O_PT after pruning 15 %", "s"),
            ("probe", "probe count O_PT, last block: FT / PT / random %", "s"),
            ("reft", "steps to 90 %: reFT / Scr.+FT / Scr.", "s")]))
    return "\n\n".join(out)
