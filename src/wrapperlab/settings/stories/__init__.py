"""The stories setting: small llama-style models pretrained on TinyStories-Instruct-style records whose features
(Twist, Foreshadowing, ...) are known, a feature deleted by fine-tuning, then revived (the paper's §6).
:data:`SETTING` is the registry's."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.stories import nodes, stages

SETTING = Setting(
    name="stories",
    run_kinds=stages.STORY_KINDS,
    lr_names=stages.STORY_LRS,
    axes=nodes.AXES,
    stages=nodes.STAGES,
    analyses=nodes.ANALYSES,
    expand=nodes.expand,
    load_model=nodes.load_model,
    tokenizer=nodes.tokenizer_of,
    versions=stages.VERSIONS,
    report_section="wrapperlab.report.sections.stories:stories_section",
)
