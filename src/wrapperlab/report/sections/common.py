"""What every setting's report section shares: the time row of its setup table, the paper's values as text, a
learning rate as the spec named it. Generic: no setting's concept is named here (the tests check)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from wrapperlab.report.records import Reproduced


def lr_text(lr: Any) -> str:
    """A learning rate as the spec named it (``M``), or its number where the spec gave one — never a number turned
    back into a name."""
    return lr if isinstance(lr, str) else f"{lr:g}"


def paper_text(row: dict | None, key: str) -> str:
    if row is None or key not in row:
        return "-"
    value = row[key]
    return " / ".join(f"{v:g}" for v in value) if isinstance(value, list) else f"{value:g}"


def stage_times_row(rep: Reproduced) -> list[str]:
    """The setup table's last row: node wall time summed per stage (over workers), and the call's total."""
    per_stage: dict[str, list[float]] = defaultdict(list)
    for n in rep.nodes:
        per_stage[n.stage].append(n.seconds)
    return ["wall time per stage (s, this call)",
            "; ".join(f"{st}: {sum(v):.0f} ({len(v)} nodes)" for st, v in per_stage.items())
            + f"; total {rep.seconds or 0:.0f}"]
