"""The PCFG setting: GPTs pretrained on the cfg3b grammar's task families, fine-tuned with planted spurious
correlations (the paper's §4-5). :data:`SETTING` is what the registry hands out."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.pcfg import analyses, nodes, stages
from wrapperlab.settings.pcfg.configs import LR_NAMES
from wrapperlab.settings.pcfg.options import ANALYSES

SETTING = Setting(
    name="pcfg",
    run_kinds=("pretrain", *stages.FINETUNE_KINDS),
    lr_names=LR_NAMES,
    axes=nodes.AXES,
    optional_axes=nodes.OPTIONAL_AXES,
    stages=nodes.STAGES,
    analyses=ANALYSES,
    expand=nodes.expand,
    load_model=stages.load_model,
    tokenizer=stages.tokenizer_of,
    versions={**stages.VERSIONS, **analyses.VERSIONS},
    report_section="wrapperlab.report.sections.pcfg:pcfg_section",
)
