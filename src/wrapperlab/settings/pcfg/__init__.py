"""The PCFG setting: GPTs pretrained on the cfg3b grammar's task families, fine-tuned with planted spurious
correlations (the paper's §4-5). :data:`SETTING` is what the registry hands out."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.pcfg import analyses, nodes, stages
from wrapperlab.settings.pcfg.configs import LR_NAMES

SETTING = Setting(
    name="pcfg",
    run_kinds=("pretrain", *stages.FINETUNE_KINDS),
    lr_names=LR_NAMES,
    axes=nodes.AXES,
    optional_axes=nodes.OPTIONAL_AXES,
    analyses=nodes.ANALYSES,
    expand=nodes.expand,
    run_node=nodes.run_node,
    load_model=stages.load_model,
    tokenizer=stages.tokenizer_of,
    versions={**stages.VERSIONS, **analyses.VERSIONS},
    report_section="wrapperlab.report.sections.pcfg:pcfg_section",
    stage_rank={"pretrain": 0, "baseline": 1, "scrft": 1, "finetune": 2, "reft": 3, "prune": 4, "probe": 4, "jailbreak": 4},
    run_group=nodes.run_group,
    stack_stages=nodes.STACK_STAGES,
    check=nodes.check_nodes,
)
