"""The stories setting: small llama-style models pretrained on TinyStories-Instruct-style records whose features
(Twist, Foreshadowing, ...) are known, a feature deleted by fine-tuning, then revived (the paper's §6).
:data:`SETTING` is the registry's. Its named learning rates live per profile (``stories.lrs`` in profiles.yaml)."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.stories import nodes, stages

SETTING = Setting(
    name="stories",
    run_kinds=stages.STORY_KINDS,
    lr_names={},
    axes=nodes.AXES,
    analyses=nodes.ANALYSES,
    expand=nodes.expand,
    run_node=nodes.run_node,
    check=nodes.check_nodes,
    load_model=nodes.load_model,
    tokenizer=nodes.tokenizer_of,
    versions=stages.VERSIONS,
    report_section="wrapperlab.report.sections.stories:stories_section",
    stage_rank={"pretrain": 0, "control": 0, "finetune": 1, "reft": 3, "probe": 4},
)
