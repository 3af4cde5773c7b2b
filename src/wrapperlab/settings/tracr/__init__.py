"""The Tracr setting: RASP programs compiled to transformer weights (Counter, Max-identifier), converted to our
GPT and fine-tuned (the paper's §4.1, App. C). Only compilation needs JAX. :data:`SETTING` is the registry's."""

from wrapperlab.settings.base import Setting
from wrapperlab.settings.tracr import nodes, stages

SETTING = Setting(
    name="tracr",
    run_kinds=("tracr-compile", *stages.TUNED_KINDS),
    lr_names=stages.TRACR_LRS,
    axes=nodes.AXES,
    optional_axes=("noise_std",),
    analyses=nodes.ANALYSES,
    expand=nodes.expand,
    run_node=nodes.run_node,
    check=nodes.check_nodes,
    load_model=nodes.load_model,
    versions=stages.VERSIONS,
    report_section="wrapperlab.report.sections.tracr:tracr_section",
    stage_rank={"compile": 0, "finetune": 1, "scrft": 2, "scratch": 2, "reft": 3, "prune": 4, "attention": 4},
    spec_fields=("program",),
)
