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


def steps_text(values: Sequence[float | None]) -> str:
    """Steps to a threshold per seed, "never" where a run did not get there: "150 / never / 200"; steps read
    between evaluation points (claims/verdicts.py ``crossing_step``) with one decimal below 100: "14.3 / 17.9"."""
    def one(v: float | None) -> str:
        if v is None:
            return "never"
        if float(v).is_integer():
            return str(int(v))
        return f"{v:.1f}" if v < 100 else f"{v:.0f}"

    return " / ".join(one(v) for v in values)


def effect_text(effect: dict | None) -> str:
    """A rule's paired effect as "+2.3 (+1.1 to +3.5)", or "–" where the rule had too few seeds to compute one."""
    if not effect or not effect.get("effect") or effect["effect"].get("mean") is None or effect.get("low") is None:
        return "–"
    if effect.get("resolution_limited"):  # tied seeds (claims/verdicts.py): a zero width is not certainty
        return f"{effect['effect']['mean']:+.2f} (seeds tied: resolution-limited)"
    return f"{effect['effect']['mean']:+.2f} ({effect['low']:+.2f} to {effect['high']:+.2f})"
