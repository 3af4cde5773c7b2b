"""How the PCFG report names and orders its cells: a pretraining (prior, depth, length), a fine-tuning protocol
(pretraining data mixed in, randFT), the (task, O_PT, O_FT) a reproduction fine-tuned on, and the paper's pretraining
length a spec's stands for. Shared by the PCFG section and its data interventions."""

from __future__ import annotations

from wrapperlab.data.priors import resolve_prior
from wrapperlab.report.records import Reproduced
from wrapperlab.report.sections.grid import cell_label
from wrapperlab.settings.pcfg.nodes import PROTOCOL_AXES, ROOT_AXES

#: the axes besides the prior that a claim is read within (never pooled across): depth, pretraining length, and
#: the fine-tuning protocol (PT data mixed in, randFT)
GROUP_AXES = (*ROOT_AXES[1:], *PROTOCOL_AXES)


def operands(rep: Reproduced) -> tuple[str, str, str]:
    """(task, O_PT, O_FT) of a PCFG reproduction, from the fine-tuning settings its spec used."""
    ft = rep.base.get("finetune", {})
    return ft.get("data.task", "count"), ft.get("data.pt_operand", "a"), ft.get("data.operand", "b")


def root_label(point: dict) -> str:
    """What a pretraining was: its prior, and its depth and length where a spec varies them."""
    parts = [str(point["prior"])] if "prior" in point else []
    parts += [f"{point['blocks']} blocks"] if "blocks" in point else []
    parts += [f"pretrained {point['pt_iters']} steps"] if "pt_iters" in point else []
    return ", ".join(parts)


def protocol_label(point: dict) -> str:
    """How a cell was fine-tuned, where a spec varies it (the paper's App. E data interventions): the share of
    pretraining data mixed in, randFT or plain fine-tuning."""
    parts = [f"PT mix {100 * point['mix_pt']:g} %"] if "mix_pt" in point else []
    parts += ["randFT" if point["randft"] else "plain FT"] if "randft" in point else []
    return ", ".join(parts)


def grid_label(point: dict) -> str:
    """What a cell is besides its lr and C_Tr: its pretraining (root_label) and its fine-tuning protocol."""
    return ", ".join(p for p in (root_label(point), protocol_label(point)) if p)


def pcfg_cell_label(point: dict) -> str:
    return cell_label(point, grid_label(point))


def root_of(point: dict) -> tuple:
    """The pretraining a grid point descends from (its values of the root axes: prior, blocks, pt_iters)."""
    return tuple(point.get(a) for a in ROOT_AXES)


def root_order(key: tuple) -> tuple:
    """Priors from the most skewed (low) down, then depth and length ascending."""
    prior, *rest = key
    return (-resolve_prior(prior)[0], *(v or 0 for v in rest))


def extra_of(point: dict) -> tuple:
    """The axes besides the prior (depth, pretraining length, fine-tuning protocol): the claims are read within one
    value of them."""
    return tuple(point.get(a) for a in GROUP_AXES)


def paper_length(paper: dict, ours: int | None, longest: int | None) -> float | None:
    """The paper's pretraining length our ``ours`` steps stand for: the same fraction of the paper's longest
    pretraining (``paper["pt_iters_longest"]``, 200K) as ``ours`` is of our longest — so a 100- vs 400-step axis
    reads the paper's 50K (Table 6) vs 200K (Table 5). None where the paper or the spec has no length axis."""
    if ours is None or not longest or "pt_iters_longest" not in paper:
        return None
    return paper["pt_iters_longest"] * ours / longest
